/* The control socket: listen, connect with trust checks, JSON lines. */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static sk_status socket_path(const char *root, struct sockaddr_un *addr, sk__err *err)
{
    memset(addr, 0, sizeof *addr);
    addr->sun_family = AF_UNIX;
    if (sk__fmt(addr->sun_path, sizeof addr->sun_path, "%s/%s", root, SK__CONTROL_SOCKET))
        return sk__fail(err, SK_ERR_USAGE,
                        "state root path too long for a unix socket (%zu bytes max): %s",
                        sizeof addr->sun_path - sizeof SK__CONTROL_SOCKET - 1, root);
    return SK_OK;
}

sk_status sk__control_listen(const char *root, int *fd_out, sk__err *err)
{
    struct sockaddr_un addr;
    sk_status st = socket_path(root, &addr, err);
    if (st != SK_OK)
        return st;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return sk__fail(err, SK_ERR_IO, "socket: %s", strerror(errno));
    /* The caller holds the service lock, so a leftover socket file is stale. */
    unlink(addr.sun_path);
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&addr, sizeof addr);
    umask(old);
    if (rc != 0 || chmod(addr.sun_path, 0600) != 0 || listen(fd, 64) != 0) {
        int saved = errno;
        close(fd);
        return sk__fail(err, SK_ERR_IO, "cannot listen on %s: %s", addr.sun_path, strerror(saved));
    }
    *fd_out = fd;
    return SK_OK;
}

int sk__control_peer_trusted(int fd)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
        return 0;
    return cred.uid == geteuid() || cred.uid == 0;
}

sk_status sk__control_connect(const char *root, int timeout_ms, int *fd_out, sk__err *err)
{
    (void)timeout_ms;
    struct sockaddr_un addr;
    sk_status st = socket_path(root, &addr, err);
    if (st != SK_OK)
        return st;
    struct stat sb;
    if (lstat(addr.sun_path, &sb) != 0) {
        if (errno == ENOENT)
            return sk__fail(err, SK_ERR_NOT_FOUND, "no background service (%s absent)",
                            addr.sun_path);
        return sk__fail(err, errno == EACCES ? SK_ERR_PERMISSION : SK_ERR_IO, /* another user's */
                        "cannot reach the control socket %s: %s", addr.sun_path, strerror(errno));
    }
    if (!S_ISSOCK(sb.st_mode))
        return sk__fail(err, SK_ERR_PERMISSION, "%s is not a socket: not trusted", addr.sun_path);
    if (sb.st_uid != geteuid() || (sb.st_mode & 0077))
        return sk__fail(err, SK_ERR_PERMISSION,
                        "foreign control socket %s (owner uid %u, mode %03o): not trusted",
                        addr.sun_path, (unsigned)sb.st_uid, (unsigned)(sb.st_mode & 0777));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return sk__fail(err, SK_ERR_IO, "socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        int saved = errno;
        close(fd);
        if (saved == ECONNREFUSED || saved == ENOENT)
            return sk__fail(err, SK_ERR_NOT_FOUND, "stale control socket %s (no service)",
                            addr.sun_path);
        return sk__fail(err, SK_ERR_IO, "cannot connect to %s: %s", addr.sun_path, strerror(saved));
    }
    if (!sk__control_peer_trusted(fd)) {
        close(fd);
        return sk__fail(err, SK_ERR_PERMISSION,
                        "control socket %s is served by another user: not trusted", addr.sun_path);
    }
    *fd_out = fd;
    return SK_OK;
}

static sk_status write_all(int fd, const char *p, size_t n, sk__err *err)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            if (poll(&pfd, 1, 5000) <= 0)
                return sk__fail(err, SK_ERR_IO, "control socket: write timed out");
            continue;
        }
        if (w < 0)
            return sk__fail(err, SK_ERR_IO, "control socket: %s", strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    return SK_OK;
}

sk_status sk__control_send(int fd, const json_t *msg, sk__err *err)
{
    char *text = json_dumps(msg, JSON_COMPACT);
    if (!text)
        return sk__fail(err, SK_ERR_NOMEM, "out of memory");
    size_t n = strlen(text);
    text[n] = '\n'; /* json_dumps leaves room only for the NUL: reuse it */
    sk_status st = write_all(fd, text, n + 1, err);
    free(text);
    return st;
}

sk_status sk__control_recv(int fd, sk__line_reader *r, int timeout_ms, json_t **out, sk__err *err)
{
    *out = NULL;
    int64_t deadline = sk__mono_ms() + timeout_ms;
    for (;;) {
        char *nl = memchr(r->buf, '\n', r->len);
        if (nl) {
            *nl = '\0';
            json_error_t jerr;
            *out = json_loads(r->buf, 0, &jerr);
            size_t used = (size_t)(nl - r->buf) + 1;
            memmove(r->buf, nl + 1, r->len - used);
            r->len -= used;
            if (!*out || !json_is_object(*out)) {
                json_decref(*out);
                *out = NULL;
                return sk__fail(err, SK_ERR_IO, "control socket: malformed message");
            }
            return SK_OK;
        }
        if (r->len == sizeof r->buf)
            return sk__fail(err, SK_ERR_IO, "control socket: message too long");
        int left = (int)(deadline - sk__mono_ms());
        if (timeout_ms >= 0 && left <= 0)
            return sk__fail(err, SK_ERR_IO, "control socket: no answer in %d ms", timeout_ms);
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, timeout_ms < 0 ? -1 : left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        ssize_t got = recv(fd, r->buf + r->len, sizeof r->buf - r->len, 0);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got <= 0)
            return sk__fail(err, SK_ERR_IO, "control socket: the service closed the connection");
        r->len += (size_t)got;
    }
}

void sk__control_poke(const char *root)
{
    struct sockaddr_un addr;
    if (socket_path(root, &addr, NULL) != SK_OK)
        return;
    struct stat sb;
    if (lstat(addr.sun_path, &sb) != 0 || !S_ISSOCK(sb.st_mode) || sb.st_uid != geteuid())
        return;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0 && sk__control_peer_trusted(fd)) {
        static const char poke[] = "{\"cmd\":\"poke\"}\n";
        ssize_t w = send(fd, poke, sizeof poke - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w; /* best effort: the periodic flush catches up anyway */
    }
    close(fd);
}

sk_status sk__control_status(const char *root, int timeout_ms, json_t **answer, sk__err *err)
{
    *answer = NULL;
    int fd;
    sk_status st = sk__control_connect(root, timeout_ms, &fd, err);
    if (st != SK_OK)
        return st;
    json_t *req = json_pack("{s:s}", "cmd", "status");
    sk__line_reader *r = calloc(1, sizeof *r); /* 64 KiB: not on a thread's stack */
    st = req && r ? sk__control_send(fd, req, err) : sk__fail(err, SK_ERR_NOMEM, "out of memory");
    if (st == SK_OK)
        st = sk__control_recv(fd, r, timeout_ms, answer, err);
    free(r);
    json_decref(req);
    close(fd);
    return st;
}
