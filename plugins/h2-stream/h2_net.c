/*
 * h2-stream's byte pipe: TCP (optionally through an HTTP CONNECT proxy), then
 * TLS with ALPN "h2" unless h2c. Every wait polls the caller's wake fd too,
 * so cancel() interrupts a connect at once (name resolution aside).
 */
#include "h2_net.h"

#include "http_common.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* The one line for a server that does not select h2 by ALPN. */
#define H2_NO_H2 "server does not speak HTTP/2; use http-batch"
/* Longest proxy answer head we read before giving up on it. */
#define H2_PROXY_HEAD_MAX 8192

int h2_url_parse(const char *url, h2_url *out, char *err, size_t err_cap)
{
    memset(out, 0, sizeof *out);
    const char *rest;
    if (!strncasecmp(url, "https://", 8)) {
        out->tls = 1;
        rest = url + 8;
    } else if (!strncasecmp(url, "http://", 7)) {
        rest = url + 7;
    } else {
        hc_fmt(err, err_cap, "h2-stream: server_url must start with http:// or https://: %s", url);
        return -1;
    }
    size_t auth_len = strcspn(rest, "/?#");
    const char *at = memchr(rest, '@', auth_len);
    if (at) { /* user info has no place in server_url; never send it anywhere */
        hc_fmt(err, err_cap, "h2-stream: server_url must not hold user:password@");
        return -1;
    }
    const char *host = rest, *host_end, *port = NULL;
    if (*host == '[') {
        host_end = memchr(host, ']', auth_len);
        if (!host_end) {
            hc_fmt(err, err_cap, "h2-stream: server_url has an unclosed [: %s", url);
            return -1;
        }
        host++;
        if (host_end + 1 < rest + auth_len && host_end[1] == ':')
            port = host_end + 2;
    } else {
        host_end = memchr(host, ':', auth_len);
        if (host_end)
            port = host_end + 1;
        else
            host_end = rest + auth_len;
    }
    size_t hl = (size_t)(host_end - host);
    size_t pl = port ? (size_t)(rest + auth_len - port) : 0;
    if (hl == 0 || hl >= sizeof out->host || pl >= sizeof out->port ||
        (port && (pl == 0 || strspn(port, "0123456789") < pl))) {
        hc_fmt(err, err_cap, "h2-stream: server_url has no usable host and port: %s", url);
        return -1;
    }
    memcpy(out->host, host, hl);
    if (port)
        memcpy(out->port, port, pl);
    else
        snprintf(out->port, sizeof out->port, "%s", out->tls ? "443" : "80");
    memcpy(out->authority, rest, auth_len < sizeof out->authority ? auth_len : 0);
    const char *path = rest + auth_len;
    size_t path_len = strcspn(path, "?#");
    while (path_len > 0 && path[path_len - 1] == '/')
        path_len--;
    if (path_len >= sizeof out->prefix || auth_len >= sizeof out->authority) {
        hc_fmt(err, err_cap, "h2-stream: server_url is too long: %s", url);
        return -1;
    }
    memcpy(out->prefix, path, path_len);
    return 0;
}

/* True when no_proxy names host: "*", or a host suffix on a dot boundary. */
static int h2_no_proxy_matches(const char *list, const char *host)
{
    size_t hl = strlen(host);
    while (list && *list) {
        list += strspn(list, ", ");
        size_t n = strcspn(list, ", ");
        const char *item = list;
        if (n > 0 && *item == '.') { /* ".example.com" means the same as "example.com" */
            item++;
            n--;
        }
        if (n == 1 && *item == '*')
            return 1;
        if (n > 0 && n <= hl && !strncasecmp(host + hl - n, item, n) &&
            (n == hl || host[hl - n - 1] == '.'))
            return 1;
        list += strcspn(list, ",");
    }
    return 0;
}

static const char *h2_env(const char *lower, const char *upper)
{
    const char *v = getenv(lower);
    return v && *v ? v : getenv(upper);
}

/* "Basic base64(user:pass)" of a proxy URL's user info, or "" when none. */
static void h2_proxy_basic(const char *info, size_t len, char *out, size_t cap)
{
    out[0] = '\0';
    if (len == 0 || cap < 7 + 4 * ((len + 2) / 3) + 1)
        return;
    memcpy(out, "Basic ", 6);
    EVP_EncodeBlock((unsigned char *)out + 6, (const unsigned char *)info, (int)len);
}

int h2_proxy_for(const h2_url *target, h2_url *proxy, char *proxy_auth, size_t auth_cap,
                 char *err, size_t err_cap)
{
    proxy_auth[0] = '\0';
    if (!target->tls)
        return 0; /* h2c goes to loopback or by explicit choice: never proxied */
    const char *env = h2_env("https_proxy", "HTTPS_PROXY");
    if (!env || !*env || h2_no_proxy_matches(h2_env("no_proxy", "NO_PROXY"), target->host))
        return 0;
    char url[1024];
    const char *spec = strstr(env, "://") ? env : NULL;
    if (spec && strncasecmp(env, "http://", 7) != 0) {
        hc_fmt(err, err_cap, "h2-stream: https_proxy must be an http:// proxy: %s", env);
        return -1;
    }
    hc_fmt(url, sizeof url, "%s%s", spec ? "" : "http://", env);
    char *rest = url + 7;
    size_t auth_len = strcspn(rest, "/?#");
    char *at = memchr(rest, '@', auth_len);
    if (at) {
        h2_proxy_basic(rest, (size_t)(at - rest), proxy_auth, auth_cap);
        memmove(rest, at + 1, strlen(at + 1) + 1);
    }
    if (h2_url_parse(url, proxy, err, err_cap) != 0)
        return -1;
    if (!strchr(proxy->authority, ':') || proxy->authority[strlen(proxy->authority) - 1] == ']')
        snprintf(proxy->port, sizeof proxy->port, "%s", "1080"); /* curl's default */
    return 1;
}

/* Waits for events on fd until the deadline or a cancel. 1 ready, 0 timed out, 2 cancelled. */
static int h2_wait(int fd, short events, const h2_net_opts *o)
{
    for (;;) {
        int64_t left = o->deadline_ms - o->host->now_ms(o->host->host_ctx);
        if (left <= 0)
            return 0;
        struct pollfd pf[2] = {{fd, events, 0}, {o->wake_fd, POLLIN, 0}};
        int n = poll(pf, 2, left > 60000 ? 60000 : (int)left);
        if (n < 0 && errno != EINTR)
            return 0;
        if (n > 0 && pf[1].revents) {
            if (atomic_load(o->cancelled))
                return 2;
            /* Another wake-up (a submit): the I/O loop looks at its pending list before it polls. */
            uint64_t count;
            ssize_t r = read(o->wake_fd, &count, sizeof count);
            (void)r;
        }
        if (n > 0 && pf[0].revents)
            return 1;
    }
}

/* Connects one address, non-blocking. 0 ok, 1 woken, -1 with errno-ish why. */
static int h2_connect_addr(const struct addrinfo *ai, const h2_net_opts *o, int *fd_out,
                           char *why, size_t why_cap)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
    if (fd < 0) {
        hc_fmt(why, why_cap, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        hc_fmt(why, why_cap, "%s", strerror(errno));
        close(fd);
        return -1;
    }
    int w = h2_wait(fd, POLLOUT, o);
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (w == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0) {
        *fd_out = fd;
        return 0;
    }
    close(fd);
    if (w == 2)
        return 1;
    hc_fmt(why, why_cap, "%s", w == 0 ? "connect timed out" : strerror(soerr ? soerr : EIO));
    return -1;
}

/* TCP to host:port, trying each address in turn. 0, 1 woken, -1 with err. */
static int h2_tcp(const h2_url *to, const h2_net_opts *o, int *fd, char *err, size_t err_cap)
{
    struct addrinfo hints, *list = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    int gai = getaddrinfo(to->host, to->port, &hints, &list);
    if (gai != 0) {
        hc_fmt(err, err_cap, "cannot resolve %s: %s", to->host, gai_strerror(gai));
        return -1;
    }
    char why[128] = "no address";
    int rc = -1;
    for (struct addrinfo *ai = list; ai && rc == -1; ai = ai->ai_next)
        rc = h2_connect_addr(ai, o, fd, why, sizeof why);
    freeaddrinfo(list);
    if (rc < 0)
        hc_fmt(err, err_cap, "cannot connect to %s:%s: %s", to->host, to->port, why);
    return rc;
}

/* Writes all of buf to a plain non-blocking socket by the deadline. */
static int h2_write_all(int fd, const char *buf, size_t len, const h2_net_opts *o)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            int w = h2_wait(fd, POLLOUT, o);
            if (w != 1)
                return w == 2 ? 1 : -1;
        } else {
            return -1;
        }
    }
    return 0;
}

/* Asks the proxy for a tunnel to target; reads its answer head byte by byte
 * (so no byte of the tunnel is consumed). 0, 1 woken, -1 with err. */
static int h2_tunnel(int fd, const h2_url *target, const char *proxy_auth, const h2_net_opts *o,
                     char *err, size_t err_cap)
{
    char req[1024];
    int is_v6 = strchr(target->host, ':') != NULL;
    hc_fmt(req, sizeof req, "CONNECT %s%s%s:%s HTTP/1.1\r\nHost: %s%s%s:%s\r\n%s%s%s\r\n",
           is_v6 ? "[" : "", target->host, is_v6 ? "]" : "", target->port, is_v6 ? "[" : "",
           target->host, is_v6 ? "]" : "", target->port, *proxy_auth ? "Proxy-Authorization: " : "",
           proxy_auth, *proxy_auth ? "\r\n" : "");
    int rc = h2_write_all(fd, req, strlen(req), o);
    explicit_bzero(req, sizeof req);
    if (rc != 0) {
        hc_fmt(err, err_cap, "proxy: could not send CONNECT");
        return rc;
    }
    char head[H2_PROXY_HEAD_MAX];
    size_t len = 0;
    while (len < 4 || memcmp(head + len - 4, "\r\n\r\n", 4) != 0) {
        if (len + 1 >= sizeof head) {
            hc_fmt(err, err_cap, "proxy: answer head too long");
            return -1;
        }
        ssize_t n = recv(fd, head + len, 1, 0);
        if (n == 1) {
            len++;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            int w = h2_wait(fd, POLLIN, o);
            if (w != 1) {
                hc_fmt(err, err_cap, "proxy: no answer to CONNECT");
                return w == 2 ? 1 : -1;
            }
        } else {
            hc_fmt(err, err_cap, "proxy closed the connection during CONNECT");
            return -1;
        }
    }
    head[len] = '\0';
    int status = 0;
    if (sscanf(head, "HTTP/%*d.%*d %d", &status) != 1 || status < 200 || status > 299) {
        head[strcspn(head, "\r\n")] = '\0';
        hc_fmt(err, err_cap, "proxy refused the tunnel to %s:%s: %s", target->host, target->port,
               head);
        return -1;
    }
    return 0;
}

/* One line for the OpenSSL error queue (emptied), or fallback. */
static void h2_ssl_error(char *out, size_t cap, const char *fallback)
{
    unsigned long e = ERR_get_error();
    if (e) {
        char text[256];
        ERR_error_string_n(e, text, sizeof text);
        hc_fmt(out, cap, "%s", text);
    } else {
        hc_fmt(out, cap, "%s", fallback);
    }
    ERR_clear_error();
}

/* Names what the server's certificate failed, and what to configure. */
static void h2_verify_error(SSL *ssl, char *err, size_t err_cap)
{
    long v = SSL_get_verify_result(ssl);
    hc_fmt(err, err_cap,
           "TLS: certificate verification failed: %s (a private CA? set "
           "transport.options.ca_file in sync.json)",
           X509_verify_cert_error_string(v));
}

/* TLS handshake on fd with SNI, host name checks and ALPN h2. 0, 1 woken, -1 with err. */
static int h2_tls(h2_pipe *pp, const h2_url *target, const h2_net_opts *o, char *err,
                  size_t err_cap)
{
    pp->ssl = SSL_new(o->tls);
    if (!pp->ssl || SSL_set_fd(pp->ssl, pp->fd) != 1) {
        h2_ssl_error(err, err_cap, "TLS: cannot set up the connection");
        return -1;
    }
    unsigned char addr[16];
    int is_ip = inet_pton(AF_INET, target->host, addr) == 1 ||
                inet_pton(AF_INET6, target->host, addr) == 1;
    if (!is_ip)
        SSL_set_tlsext_host_name(pp->ssl, target->host);
    if (!o->insecure) {
        X509_VERIFY_PARAM *param = SSL_get0_param(pp->ssl);
        int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, target->host)
                       : X509_VERIFY_PARAM_set1_host(param, target->host, 0);
        if (ok != 1) {
            h2_ssl_error(err, err_cap, "TLS: cannot set the expected host name");
            return -1;
        }
    }
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(pp->ssl);
        if (r == 1)
            break;
        int e = SSL_get_error(pp->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            int w = h2_wait(pp->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, o);
            if (w == 1)
                continue;
            if (w == 0)
                hc_fmt(err, err_cap, "TLS handshake timed out");
            return w == 2 ? 1 : -1;
        }
        if (SSL_get_verify_result(pp->ssl) != X509_V_OK) {
            h2_verify_error(pp->ssl, err, err_cap);
        } else if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL) {
            /* RFC 7301 §3.2: a server with no protocol in common ends the handshake. */
            ERR_clear_error();
            hc_fmt(err, err_cap, "%s", H2_NO_H2);
        } else {
            char why[256];
            h2_ssl_error(why, sizeof why, "connection closed during the handshake");
            hc_fmt(err, err_cap, "TLS handshake with %s failed: %s", target->host, why);
        }
        return -1;
    }
    const unsigned char *proto = NULL;
    unsigned int proto_len = 0;
    SSL_get0_alpn_selected(pp->ssl, &proto, &proto_len);
    if (proto_len != 2 || memcmp(proto, "h2", 2) != 0) {
        hc_fmt(err, err_cap, "%s", H2_NO_H2);
        return -1;
    }
    return 0;
}

int h2_pipe_open(const h2_url *target, const h2_net_opts *o, h2_pipe *pp, char *err,
                 size_t err_cap)
{
    h2_url proxy;
    char proxy_auth[512];
    pp->fd = -1;
    pp->ssl = NULL;
    int via = h2_proxy_for(target, &proxy, proxy_auth, sizeof proxy_auth, err, err_cap);
    int rc = via < 0 ? -1 : h2_tcp(via ? &proxy : target, o, &pp->fd, err, err_cap);
    if (rc == 0 && via)
        rc = h2_tunnel(pp->fd, target, proxy_auth, o, err, err_cap);
    explicit_bzero(proxy_auth, sizeof proxy_auth);
    if (rc == 0 && o->tls)
        rc = h2_tls(pp, target, o, err, err_cap);
    if (rc != 0)
        h2_pipe_close(pp);
    return rc;
}

void h2_pipe_close(h2_pipe *pp)
{
    if (pp->ssl)
        SSL_free(pp->ssl); /* no close_notify: the peer sees GOAWAY or the FIN */
    if (pp->fd >= 0)
        close(pp->fd);
    pp->ssl = NULL;
    pp->fd = -1;
}

/* Maps an SSL_read/SSL_write return to our convention. */
static long h2_ssl_rc(h2_pipe *pp, int r, const char *what, char *why, size_t why_cap)
{
    if (r > 0)
        return r;
    int e = SSL_get_error(pp->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    if (e == SSL_ERROR_ZERO_RETURN)
        hc_fmt(why, why_cap, "server closed the connection");
    else
        h2_ssl_error(why, why_cap, what);
    return -1;
}

long h2_pipe_read(h2_pipe *pp, void *buf, size_t cap, char *why, size_t why_cap)
{
    if (pp->ssl) {
        ERR_clear_error();
        return h2_ssl_rc(pp, SSL_read(pp->ssl, buf, (int)(cap > INT32_MAX ? INT32_MAX : cap)),
                         "connection lost", why, why_cap);
    }
    ssize_t n = recv(pp->fd, buf, cap, 0);
    if (n > 0)
        return (long)n;
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    hc_fmt(why, why_cap, "%s", n == 0 ? "server closed the connection" : strerror(errno));
    return -1;
}

long h2_pipe_write(h2_pipe *pp, const void *buf, size_t len, char *why, size_t why_cap)
{
    if (pp->ssl) {
        ERR_clear_error();
        return h2_ssl_rc(pp, SSL_write(pp->ssl, buf, (int)(len > INT32_MAX ? INT32_MAX : len)),
                         "connection lost", why, why_cap);
    }
    ssize_t n = send(pp->fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0)
        return (long)n;
    if (errno == EAGAIN || errno == EINTR)
        return 0;
    hc_fmt(why, why_cap, "%s", strerror(errno));
    return -1;
}

int h2_pipe_pending(const h2_pipe *pp)
{
    return pp->ssl && SSL_pending(pp->ssl) > 0;
}

SSL_CTX *h2_tls_context(const char *ca_file, int insecure, char *err, size_t err_cap)
{
    static const unsigned char alpn[] = "\x02h2";
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        h2_ssl_error(err, err_cap, "TLS: cannot create a context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION); /* RFC 9113 §9.2 */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_verify(ctx, insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1 || SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1) != 0) {
        char why[256];
        h2_ssl_error(why, sizeof why, "cannot load");
        hc_fmt(err, err_cap, "h2-stream: TLS trust store %s: %s", ca_file ? ca_file : "(system)",
               why);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}
