/*
 * --nagle: the clients' side of the server behaves like a plain Python
 * `http.server`: Nagle's algorithm stays on (no TCP_NODELAY) and every
 * response leaves in two writes, the header block and then the body. With a
 * kept-alive connection the body then waits for the client's ACK of the
 * headers, which a client may delay (~40 ms on Linux): the case a client
 * must cope with (issue 16).
 *
 * libmicrohttpd manages TCP_NODELAY/TCP_CORK itself and sends a response in
 * one write, so it cannot show that; instead a relay listens on the public
 * address and forwards to the HTTP server on a private loopback port.
 * Bytes are relayed unchanged; only the write pattern differs.
 */
#include "receiver.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct relay {
    int client, server;
} relay;

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Forwards what the server wrote, splitting it after the header block when
   the body came along in the same read: headers and body leave in separate
   writes, as from http.server (a header block read alone is written alone). */
static int write_split(int fd, const char *p, size_t n)
{
    const char *end = memmem(p, n, "\r\n\r\n", 4);
    size_t first = end ? (size_t)(end - p) + 4 : n;
    return write_all(fd, p, first) != 0 ? -1 : write_all(fd, p + first, n - first);
}

static void *relay_run(void *arg)
{
    relay r = *(relay *)arg;
    free(arg);
    enum { CAP = 256 * 1024 };
    char *buf = malloc(CAP);
    struct pollfd pf[2] = {{.fd = r.client, .events = POLLIN}, {.fd = r.server, .events = POLLIN}};
    while (buf && poll(pf, 2, -1) >= 0) {
        int from_client = (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
        int from = from_client ? r.client : r.server;
        if (!from_client && !(pf[1].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        ssize_t n = recv(from, buf, CAP, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || (from_client ? write_all(r.server, buf, (size_t)n)
                                   : write_split(r.client, buf, (size_t)n)) != 0)
            break;
    }
    free(buf);
    close(r.client);
    close(r.server);
    return NULL;
}

typedef struct relay_listener {
    int fd;
    struct sockaddr_storage server;
    socklen_t server_len;
} relay_listener;

/* Accepts clients for ever, one detached relay thread each. */
static void *accept_run(void *arg)
{
    relay_listener *l = arg;
    for (;;) {
        int c = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE)
                continue;
            return NULL;
        }
        int off = 0, on = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &off, sizeof off); /* Nagle on: the point */
        int s = socket(l->server.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        relay *r = malloc(sizeof *r);
        pthread_t t;
        if (s < 0 || !r || connect(s, (struct sockaddr *)&l->server, l->server_len) != 0) {
            close(c);
            if (s >= 0)
                close(s);
            free(r);
            continue;
        }
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on); /* the private hop adds nothing */
        *r = (relay){.client = c, .server = s};
        if (pthread_create(&t, NULL, relay_run, r) != 0) {
            close(c);
            close(s);
            free(r);
            continue;
        }
        pthread_detach(t);
    }
}

int rcv__nagle_relay_start(const struct sockaddr *public_addr, socklen_t public_len,
                           const struct sockaddr *server, socklen_t server_len, int *port)
{
    relay_listener *l = calloc(1, sizeof *l);
    if (!l)
        return -1;
    int on = 1;
    l->fd = socket(public_addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memcpy(&l->server, server, server_len);
    l->server_len = server_len;
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    pthread_t t;
    if (l->fd < 0 || setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        bind(l->fd, public_addr, public_len) != 0 || listen(l->fd, 128) != 0 ||
        getsockname(l->fd, (struct sockaddr *)&bound, &blen) != 0 ||
        pthread_create(&t, NULL, accept_run, l) != 0) {
        int e = errno;
        if (l->fd >= 0)
            close(l->fd);
        free(l);
        errno = e;
        return -1;
    }
    pthread_detach(t);
    *port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                              : ((struct sockaddr_in *)&bound)->sin_port);
    return 0; /* the listener lives until the process exits */
}
