/*
 * h2-stream's byte pipe: where server_url points, the TCP connection (through
 * an HTTP CONNECT proxy when the environment says so), TLS with ALPN "h2",
 * and non-blocking reads and writes on the result. No HTTP/2 here.
 */
#ifndef H2_NET_H
#define H2_NET_H

#include <spec-kitty/transport.h>

#include <openssl/ssl.h>

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* server_url, taken apart. */
typedef struct h2_url {
    int tls;          /* https:// */
    char host[256];   /* without brackets */
    char port[8];     /* "443" when the URL names none */
    char authority[300]; /* host[:port] as the :authority header wants it */
    char prefix[512]; /* path before the API paths, without a trailing slash */
} h2_url;

/* Parses http(s)://host[:port][/prefix]. Returns 0, or -1 with err. */
int h2_url_parse(const char *url, h2_url *out, char *err, size_t err_cap);

/* The proxy for target per https_proxy/HTTPS_PROXY and no_proxy/NO_PROXY
 * (comma list of host suffixes, or "*"), parsed into proxy. Returns 1 when
 * one applies, 0 when none, -1 with err when the variable is malformed. */
int h2_proxy_for(const h2_url *target, h2_url *proxy, char *proxy_auth, size_t auth_cap,
                 char *err, size_t err_cap);

/* What a connect needs to know beyond the target. */
typedef struct h2_net_opts {
    SSL_CTX *tls;       /* NULL for h2c */
    int insecure;       /* no certificate or host name check */
    int wake_fd;        /* readable and *cancelled: give up at once */
    atomic_int *cancelled;
    int64_t deadline_ms;
    const sk_host_api *host; /* its clock */
} h2_net_opts;

/* An open byte pipe: a socket, and TLS on it unless h2c. */
typedef struct h2_pipe {
    int fd;
    SSL *ssl;
} h2_pipe;

/*
 * Connects to target (through its proxy, if any), sets TCP_NODELAY, and over
 * TLS checks the certificate and that the server chose "h2" by ALPN. The
 * socket is left non-blocking. Returns 0, 1 when cancelled, or -1 with
 * one line in err (for a server without h2: "server does not speak HTTP/2;
 * use http-batch").
 */
int h2_pipe_open(const h2_url *target, const h2_net_opts *o, h2_pipe *pipe, char *err,
                 size_t err_cap);
void h2_pipe_close(h2_pipe *pipe);

/* Non-blocking I/O: bytes moved (> 0), 0 when it would block, -1 on an error
 * or (read) the end of the stream, with why. */
long h2_pipe_read(h2_pipe *pipe, void *buf, size_t cap, char *why, size_t why_cap);
long h2_pipe_write(h2_pipe *pipe, const void *buf, size_t len, char *why, size_t why_cap);
/* True when a read may return data without the socket becoming readable. */
int h2_pipe_pending(const h2_pipe *pipe);

/* A TLS context for ALPN h2 that verifies against ca_file or the system store
 * (or nothing, when insecure). NULL with err on failure. */
SSL_CTX *h2_tls_context(const char *ca_file, int insecure, char *err, size_t err_cap);

#endif
