/*
 * Scripted HTTP/1.1 peer for unit tests (see http_peer.h). One thread polls
 * the listening socket, the clients and a stop pipe; requests are parsed
 * with Content-Length framing (what libcurl sends for a sized POST).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "http_peer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define PEER_MAX_CLIENTS 16

typedef struct peer_client {
    int fd;         /* -1 when the slot is free */
    SSL *ssl;       /* TLS peers only */
    int handshaken; /* TLS handshake finished */
    int index;      /* connection number */
    int hanging;    /* a HANG reply: read and drop until the client goes */
    char *buf;
    size_t len, cap;
} peer_client;

struct sk_peer {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int listen_fd;
    int stop_pipe[2];
    SSL_CTX *tls; /* NULL: plain HTTP */
    char url[64];
    sk_peer_reply *script;
    int script_len;
    peer_client clients[PEER_MAX_CLIENTS];
    int connections;
    sk_peer_request **requests;
    int nrequests;
};

static void peer_die(const char *what)
{
    fprintf(stderr, "http_peer: %s: %s\n", what, strerror(errno));
    abort();
}

/* Gunzips in into req->plain; a non-gzip body is copied as is. */
static void peer_decode(sk_peer_request *req, int gzip)
{
    if (!gzip) {
        req->plain = malloc(req->body_len + 1);
        memcpy(req->plain, req->body, req->body_len);
        req->plain[req->body_len] = '\0';
        req->plain_len = req->body_len;
        return;
    }
    size_t cap = req->body_len * 8 + 1024;
    req->plain = malloc(cap);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    inflateInit2(&zs, 15 + 16);
    zs.next_in = req->body;
    zs.avail_in = (uInt)req->body_len;
    int zr;
    do {
        if (req->plain_len + 1 >= cap) {
            cap *= 2;
            req->plain = realloc(req->plain, cap);
        }
        zs.next_out = (Bytef *)req->plain + req->plain_len;
        zs.avail_out = (uInt)(cap - 1 - req->plain_len);
        zr = inflate(&zs, Z_NO_FLUSH);
        req->plain_len = cap - 1 - zs.avail_out;
    } while (zr == Z_OK);
    req->gunzip_failed = zr != Z_STREAM_END || zs.avail_in != 0;
    inflateEnd(&zs);
    req->plain[req->plain_len] = '\0';
}

const char *sk_peer_header(const sk_peer_request *req, const char *name, char *buf, size_t cap)
{
    size_t n = strlen(name);
    for (const char *line = req->head; line && *line;) {
        const char *eol = strstr(line, "\r\n");
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (len > n && line[n] == ':' && strncasecmp(line, name, n) == 0) {
            const char *v = line + n + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t vlen = (size_t)(line + len - v);
            if (vlen >= cap)
                vlen = cap - 1;
            memcpy(buf, v, vlen);
            buf[vlen] = '\0';
            return buf;
        }
        line = eol ? eol + 2 : NULL;
    }
    return NULL;
}

/* Writes all of data (the socket is non-blocking; TLS when c->ssl). */
static void peer_write_all(peer_client *c, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n;
        int again;
        if (c->ssl) {
            int w = SSL_write(c->ssl, data, len > INT32_MAX ? INT32_MAX : (int)len);
            n = w;
            again = w <= 0 && (SSL_get_error(c->ssl, w) == SSL_ERROR_WANT_WRITE ||
                               SSL_get_error(c->ssl, w) == SSL_ERROR_WANT_READ);
        } else {
            n = send(c->fd, data, len, MSG_NOSIGNAL);
            again = n < 0 && (errno == EAGAIN || errno == EINTR);
        }
        if (again) {
            struct pollfd p = {c->fd, POLLOUT | POLLIN, 0};
            poll(&p, 1, 100);
            continue;
        }
        if (n <= 0)
            return; /* the client left; nothing to do */
        data += n;
        len -= (size_t)n;
    }
}

static void peer_reply(peer_client *c, const sk_peer_reply *r)
{
    const char *body = r->body ? r->body : "";
    const char *extra = r->headers ? r->headers : "";
    int typed = strcasestr(extra, "content-type:") != NULL;
    size_t cap = strlen(body) + strlen(extra) + 256;
    char *msg = malloc(cap);
    int n =
        snprintf(msg, cap, "HTTP/1.1 %d Scripted\r\nContent-Length: %zu\r\n%s%s\r\n%s", r->status,
                 strlen(body), typed ? "" : "Content-Type: application/json\r\n", extra, body);
    peer_write_all(c, msg, (size_t)n);
    free(msg);
}

static void peer_close_client(peer_client *c)
{
    SSL_free(c->ssl);
    c->ssl = NULL;
    c->handshaken = 0;
    close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
    c->hanging = 0;
}

/* Content-Length of a header block (0 when absent). */
static size_t peer_content_length(const char *head)
{
    const char *p = strcasestr(head, "\r\ncontent-length:");
    return p ? strtoul(p + 17, NULL, 10) : 0;
}

/*
 * Takes one complete request off the front of c->buf, records it and acts on
 * the script. Returns 1 when a request was handled, 0 when more bytes are needed.
 */
static int peer_take_request(sk_peer *peer, peer_client *c)
{
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t head_len = (size_t)(end - c->buf) + 2;
    char *head = strndup(c->buf, head_len);
    size_t body_len = peer_content_length(head);
    if (c->len < head_len + 2 + body_len) {
        free(head);
        return 0;
    }
    sk_peer_request *req = calloc(1, sizeof *req);
    sscanf(head, "%15s %511s", req->method, req->target);
    char *first_eol = strstr(head, "\r\n");
    req->head = strdup(first_eol + 2);
    free(head);
    req->body = malloc(body_len + 1);
    memcpy(req->body, c->buf + head_len + 2, body_len);
    req->body_len = body_len;
    char enc[32];
    peer_decode(req, sk_peer_header(req, "Content-Encoding", enc, sizeof enc) &&
                         !strcasecmp(enc, "gzip"));
    req->connection = c->index;
    size_t used = head_len + 2 + body_len;
    memmove(c->buf, c->buf + used, c->len - used);
    c->len -= used;

    pthread_mutex_lock(&peer->mu);
    int i = peer->nrequests;
    peer->requests = realloc(peer->requests, sizeof *peer->requests * (size_t)(i + 1));
    peer->requests[i] = req;
    peer->nrequests++;
    pthread_cond_broadcast(&peer->cond);
    pthread_mutex_unlock(&peer->mu);

    const sk_peer_reply *r = &peer->script[i < peer->script_len ? i : peer->script_len - 1];
    if (r->action == SK_PEER_RESPOND)
        peer_reply(c, r);
    else if (r->action == SK_PEER_HANG)
        c->hanging = 1;
    else
        peer_close_client(c);
    return c->fd >= 0 && !c->hanging;
}

/* Reads what is there: n > 0 bytes, 0 for "nothing yet", -1 when the client is gone. */
static ssize_t peer_recv(peer_client *c, char *buf, size_t cap)
{
    if (!c->ssl) {
        ssize_t n = recv(c->fd, buf, cap, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
        return n > 0 ? n : -1;
    }
    if (!c->handshaken) {
        int r = SSL_accept(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
        }
        c->handshaken = 1;
    }
    int r = SSL_read(c->ssl, buf, (int)cap);
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

/* Drains the client's socket (TLS may hold more than one poll event shows). */
static void peer_read_client(sk_peer *peer, peer_client *c)
{
    char chunk[16384];
    for (;;) {
        ssize_t n = peer_recv(c, chunk, sizeof chunk);
        if (n < 0) {
            peer_close_client(c);
            return;
        }
        if (n == 0)
            return;
        if (c->hanging)
            continue;
        if (c->len + (size_t)n > c->cap) {
            c->cap = (c->len + (size_t)n) * 2;
            c->buf = realloc(c->buf, c->cap);
        }
        memcpy(c->buf + c->len, chunk, (size_t)n);
        c->len += (size_t)n;
        while (peer_take_request(peer, c))
            ;
        if (c->fd < 0)
            return;
    }
}

static void peer_accept(sk_peer *peer)
{
    int fd = accept4(peer->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    for (int i = 0; i < PEER_MAX_CLIENTS; i++) {
        if (peer->clients[i].fd < 0) {
            pthread_mutex_lock(&peer->mu);
            peer->clients[i].fd = fd;
            peer->clients[i].index = peer->connections++;
            if (peer->tls) {
                peer->clients[i].ssl = SSL_new(peer->tls);
                SSL_set_fd(peer->clients[i].ssl, fd);
            }
            pthread_mutex_unlock(&peer->mu);
            return;
        }
    }
    close(fd);
}

static void *peer_main(void *arg)
{
    sk_peer *peer = arg;
    for (;;) {
        struct pollfd fds[PEER_MAX_CLIENTS + 2];
        int who[PEER_MAX_CLIENTS + 2];
        int n = 0;
        fds[n] = (struct pollfd){peer->stop_pipe[0], POLLIN, 0};
        who[n++] = -2;
        fds[n] = (struct pollfd){peer->listen_fd, POLLIN, 0};
        who[n++] = -1;
        for (int i = 0; i < PEER_MAX_CLIENTS; i++)
            if (peer->clients[i].fd >= 0) {
                fds[n] = (struct pollfd){peer->clients[i].fd, POLLIN, 0};
                who[n++] = i;
            }
        if (poll(fds, (nfds_t)n, -1) < 0 && errno != EINTR)
            peer_die("poll");
        if (fds[0].revents)
            return NULL;
        for (int k = 1; k < n; k++) {
            if (!fds[k].revents)
                continue;
            if (who[k] == -1)
                peer_accept(peer);
            else if (peer->clients[who[k]].fd == fds[k].fd)
                peer_read_client(peer, &peer->clients[who[k]]);
        }
    }
}

/* Starts the peer; tls NULL for plain HTTP (the peer owns tls). */
static sk_peer *peer_start(const sk_peer_reply *script, int count, SSL_CTX *tls)
{
    sk_peer *peer = calloc(1, sizeof *peer);
    pthread_mutex_init(&peer->mu, NULL);
    pthread_cond_init(&peer->cond, NULL);
    peer->script = malloc(sizeof *script * (size_t)count);
    memcpy(peer->script, script, sizeof *script * (size_t)count);
    peer->script_len = count;
    peer->tls = tls;
    for (int i = 0; i < PEER_MAX_CLIENTS; i++)
        peer->clients[i].fd = -1;
    peer->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (peer->listen_fd < 0)
        peer_die("socket");
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t salen = sizeof sa;
    if (bind(peer->listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(peer->listen_fd, 16) != 0 ||
        getsockname(peer->listen_fd, (struct sockaddr *)&sa, &salen) != 0)
        peer_die("bind/listen");
    snprintf(peer->url, sizeof peer->url, "%s://127.0.0.1:%d", tls ? "https" : "http",
             ntohs(sa.sin_port));
    if (pipe2(peer->stop_pipe, O_CLOEXEC) != 0)
        peer_die("pipe");
    if (pthread_create(&peer->thread, NULL, peer_main, peer) != 0)
        peer_die("pthread_create");
    return peer;
}

sk_peer *sk_peer_start(const sk_peer_reply *script, int count)
{
    return peer_start(script, count, NULL);
}

/* A fresh P-256 key and a self-signed certificate for IP 127.0.0.1, valid a day. */
static X509 *peer_self_signed(EVP_PKEY **key_out)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (!key || !x)
        peer_die("key/cert");
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL));
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"127.0.0.1", -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *san = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, "IP:127.0.0.1");
    if (!san || !X509_add_ext(x, san, -1) || !X509_sign(x, key, EVP_sha256()))
        peer_die("sign");
    X509_EXTENSION_free(san);
    *key_out = key;
    return x;
}

sk_peer *sk_peer_start_tls(const sk_peer_reply *script, int count, const char *cert_path)
{
    EVP_PKEY *key = NULL;
    X509 *cert = peer_self_signed(&key);
    FILE *f = fopen(cert_path, "w");
    if (!f || !PEM_write_X509(f, cert) || fclose(f) != 0)
        peer_die("write cert");
    SSL_CTX *tls = SSL_CTX_new(TLS_server_method());
    if (!tls || SSL_CTX_use_certificate(tls, cert) != 1 || SSL_CTX_use_PrivateKey(tls, key) != 1)
        peer_die("SSL_CTX");
    X509_free(cert);
    EVP_PKEY_free(key);
    return peer_start(script, count, tls);
}

void sk_peer_stop(sk_peer *peer)
{
    if (!peer)
        return;
    if (write(peer->stop_pipe[1], "x", 1) != 1)
        peer_die("write");
    pthread_join(peer->thread, NULL);
    for (int i = 0; i < PEER_MAX_CLIENTS; i++)
        if (peer->clients[i].fd >= 0)
            peer_close_client(&peer->clients[i]);
    close(peer->listen_fd);
    close(peer->stop_pipe[0]);
    close(peer->stop_pipe[1]);
    for (int i = 0; i < peer->nrequests; i++) {
        free(peer->requests[i]->head);
        free(peer->requests[i]->body);
        free(peer->requests[i]->plain);
        free(peer->requests[i]);
    }
    free(peer->requests);
    free(peer->script);
    SSL_CTX_free(peer->tls);
    pthread_cond_destroy(&peer->cond);
    pthread_mutex_destroy(&peer->mu);
    free(peer);
}

const char *sk_peer_url(const sk_peer *peer)
{
    return peer->url;
}

int sk_peer_connections(sk_peer *peer)
{
    pthread_mutex_lock(&peer->mu);
    int n = peer->connections;
    pthread_mutex_unlock(&peer->mu);
    return n;
}

int sk_peer_requests(sk_peer *peer)
{
    pthread_mutex_lock(&peer->mu);
    int n = peer->nrequests;
    pthread_mutex_unlock(&peer->mu);
    return n;
}

int sk_peer_wait_requests(sk_peer *peer, int n, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&peer->mu);
    while (peer->nrequests < n)
        if (pthread_cond_timedwait(&peer->cond, &peer->mu, &until) != 0)
            break;
    int got = peer->nrequests;
    pthread_mutex_unlock(&peer->mu);
    return got;
}

const sk_peer_request *sk_peer_request_at(sk_peer *peer, int i)
{
    pthread_mutex_lock(&peer->mu);
    const sk_peer_request *r = i >= 0 && i < peer->nrequests ? peer->requests[i] : NULL;
    pthread_mutex_unlock(&peer->mu);
    return r;
}

int sk_peer_closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t salen = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &salen) != 0)
        peer_die("closed port");
    close(fd);
    return ntohs(sa.sin_port);
}
