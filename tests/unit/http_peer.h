/*
 * A scripted HTTP/1.1 peer for unit tests: a thread listening on
 * 127.0.0.1:<ephemeral>, answering each request with the next reply of a
 * script and recording what it received (request line, headers, body, and
 * the gunzipped body). Keeps connections alive, so tests can count them.
 */
#ifndef SK_HTTP_PEER_H
#define SK_HTTP_PEER_H

#include <stddef.h>

typedef enum sk_peer_action {
    SK_PEER_RESPOND = 0, /* send the reply */
    SK_PEER_HANG = 1,    /* never answer; keep the connection open until stop */
    SK_PEER_CLOSE = 2    /* close the connection without answering */
} sk_peer_action;

typedef struct sk_peer_reply {
    sk_peer_action action;
    int status;          /* HTTP status of the reply */
    const char *headers; /* extra header lines, each ending in "\r\n", or NULL */
    const char *body;    /* reply body or NULL (empty) */
} sk_peer_reply;

typedef struct sk_peer_request {
    char method[16];
    char target[512];
    char *head;          /* the header lines as received, NUL-terminated */
    unsigned char *body; /* the body as received */
    size_t body_len;
    char *plain; /* the body gunzipped (Content-Encoding: gzip) or copied; NUL-terminated */
    size_t plain_len;
    int gunzip_failed; /* non-zero when the gzip body did not decode */
    int connection;    /* 0-based index of the TCP connection it came on */
} sk_peer_request;

typedef struct sk_peer sk_peer;

/* Starts the peer. Request i gets script[i]; past the end, the last entry
 * repeats. The script is copied (its strings must outlive the peer). */
sk_peer *sk_peer_start(const sk_peer_reply *script, int count);
/* Like sk_peer_start, over TLS (HTTP/1.1): the peer makes a fresh key and a
 * self-signed certificate for IP 127.0.0.1 and writes the certificate (PEM)
 * to cert_path, for use as a private CA. */
sk_peer *sk_peer_start_tls(const sk_peer_reply *script, int count, const char *cert_path);
/* Stops the thread, closes every socket, frees everything. */
void sk_peer_stop(sk_peer *peer);
/* "http[s]://127.0.0.1:<port>" (valid until stop). */
const char *sk_peer_url(const sk_peer *peer);
/* TCP connections accepted so far. */
int sk_peer_connections(sk_peer *peer);
/* Complete requests received so far. */
int sk_peer_requests(sk_peer *peer);
/* Waits until at least n requests arrived or timeout_ms passed; returns the count. */
int sk_peer_wait_requests(sk_peer *peer, int n, int timeout_ms);
/* Request i (0-based), valid until stop; NULL if not received. */
const sk_peer_request *sk_peer_request_at(sk_peer *peer, int i);
/* Copies header name's value (case-insensitive name) into buf; returns buf, or NULL if absent. */
const char *sk_peer_header(const sk_peer_request *req, const char *name, char *buf, size_t cap);
/* A loopback TCP port with nothing listening (bound, then closed). */
int sk_peer_closed_port(void);

#endif
