/* The control protocol: socket trust checks, JSON lines, the server's answers, the client verbs. */
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

sk_status sk__control_connect(const char *root, int *fd_out, sk__err *err)
{
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

/* Writes one JSON object as a line, and drops the reference (NULL: out of memory). */
static sk_status send_msg(int fd, json_t *msg, sk__err *err)
{
    char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    if (!text)
        return sk__fail(err, SK_ERR_NOMEM, "out of memory");
    size_t n = strlen(text);
    text[n] = '\n'; /* json_dumps leaves room only for the NUL: reuse it */
    sk_status st = write_all(fd, text, n + 1, err);
    free(text);
    return st;
}

/* Takes one complete line out of r, if there is one: 1 and *out set (NULL when malformed). */
static int take_line(sk__line_reader *r, json_t **out)
{
    char *nl = memchr(r->buf, '\n', r->len);
    if (!nl)
        return 0;
    *nl = '\0';
    json_error_t jerr;
    *out = json_loads(r->buf, 0, &jerr);
    size_t used = (size_t)(nl - r->buf) + 1;
    memmove(r->buf, nl + 1, r->len - used);
    r->len -= used;
    if (*out && !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
    }
    return 1;
}

sk_status sk__control_recv(int fd, sk__line_reader *r, int timeout_ms, int cancel_fd,
                           json_t **out, sk__err *err)
{
    *out = NULL;
    int64_t deadline = sk__mono_ms() + timeout_ms;
    for (;;) {
        if (take_line(r, out))
            return *out ? SK_OK : sk__fail(err, SK_ERR_IO, "control socket: malformed message");
        if (r->len == sizeof r->buf)
            return sk__fail(err, SK_ERR_IO, "control socket: message too long");
        int left = (int)(deadline - sk__mono_ms());
        if (timeout_ms >= 0 && left <= 0)
            return sk__fail(err, SK_ERR_IO, "control socket: no answer in %d ms", timeout_ms);
        struct pollfd pfd[2] = {{.fd = fd, .events = POLLIN}, {.fd = cancel_fd, .events = POLLIN}};
        int pr = poll(pfd, cancel_fd >= 0 ? 2 : 1, timeout_ms < 0 ? -1 : left);
        if (pr < 0 && errno != EINTR)
            return sk__fail(err, SK_ERR_IO, "control socket: %s", strerror(errno));
        if (pr > 0 && cancel_fd >= 0 && pfd[1].revents)
            return sk__fail(err, SK_ERR_CANCELLED, "cancelled");
        if (pr <= 0)
            continue;
        ssize_t got = recv(fd, r->buf + r->len, sizeof r->buf - r->len, MSG_DONTWAIT);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got <= 0)
            return sk__fail(err, SK_ERR_IO, "control socket: the service closed the connection");
        r->len += (size_t)got;
    }
}

/* ---- the server side ---------------------------------------------------- */

sk__control_verb sk__control_verb_of(const json_t *msg)
{
    static const char *const names[] = {
        [SK__VERB_POKE] = "poke", [SK__VERB_STATUS] = "status", [SK__VERB_NOW] = "now",
        [SK__VERB_CANCEL] = "cancel", [SK__VERB_STOP] = "stop"};
    const char *cmd = json_string_value(json_object_get(msg, "cmd"));
    for (size_t i = 1; cmd && i < SK__ARRAY_LEN(names); i++)
        if (strcmp(cmd, names[i]) == 0)
            return (sk__control_verb)i;
    return SK__VERB_UNKNOWN;
}

static json_t *text_json(const char *text)
{
    return text[0] ? json_string(text) : json_null();
}

sk_status sk__control_answer_status(int fd, const sk__service_status *st, sk__err *err)
{
    json_t *metrics = json_object();
    for (int i = 0; i < st->metric_count; i++)
        json_object_set_new(metrics, st->metrics[i].name, json_integer(st->metrics[i].value));
    json_t *msg = json_pack(
        "{s:b, s:I, s:I, s:s, s:o, s:I, s:o, s:o, s:b, s:b, s:o, s:I, s:I, s:o}", "ok", 1, "pid",
        (json_int_t)st->pid, "uptime_s", (json_int_t)st->uptime_s, "connection", st->connection,
        "last_sync", text_json(st->last_sync), "consecutive_failures",
        (json_int_t)st->consecutive_failures, "last_error", text_json(st->last_error),
        "next_attempt", text_json(st->next_attempt), "busy", st->busy, "auth_blocked",
        st->auth_blocked, "auth_reason", text_json(st->auth_reason), "queue_size",
        (json_int_t)st->queue_size, "queue_parked", (json_int_t)st->queue_parked, "metrics",
        metrics);
    return send_msg(fd, msg, err);
}

sk_status sk__control_answer_error(int fd, sk_status code, const char *message, sk__err *err)
{
    return send_msg(fd,
                    json_pack("{s:b, s:s, s:I, s:s}", "ok", 0, "status", sk_strerror(code),
                              "code", (json_int_t)code, "error", message),
                    err);
}

sk_status sk__control_answer_stop(int fd, long pid, sk__err *err)
{
    return send_msg(fd, json_pack("{s:b, s:I}", "ok", 1, "pid", (json_int_t)pid), err);
}

/* The summary as the protocol carries it (stop_reason, stop_code null when empty). */
static json_t *summary_json(const sk_drain_summary *s)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s?, s:s?}", "synced",
                     (json_int_t)s->synced, "duplicates", (json_int_t)s->duplicates, "pending",
                     (json_int_t)s->pending, "rejected", (json_int_t)s->rejected, "parked",
                     (json_int_t)s->parked, "remaining", (json_int_t)s->remaining, "batches",
                     (json_int_t)s->batches, "retry_after_ms", (json_int_t)s->retry_after_ms,
                     "stop_reason", s->stop_reason[0] ? s->stop_reason : NULL, "stop_code",
                     s->stop_code[0] ? s->stop_code : NULL);
}

sk_status sk__control_progress(int fd, const sk_drain_summary *sum, int64_t total, sk__err *err)
{
    json_t *prog = summary_json(sum);
    json_object_set_new(prog, "total", json_integer(total));
    return send_msg(fd, json_pack("{s:o}", "progress", prog), err);
}

sk_status sk__control_answer_now(int fd, sk_status st, const sk_drain_summary *sum,
                                 json_t *failures, const char *error, sk__err *err)
{
    json_t *msg = json_pack("{s:b, s:s, s:I, s:o, s:O}", "ok", st == SK_OK, "status",
                            sk_strerror(st), "code", (json_int_t)st, "summary", summary_json(sum),
                            "failures", failures);
    if (msg && st != SK_OK)
        json_object_set_new(msg, "error", json_string(error));
    return send_msg(fd, msg, err);
}

json_t *sk__control_failure_json(const char *event_id, const char *event_type, const char *outcome,
                                 const char *reason)
{
    return json_pack("{s:s, s:s, s:s, s:s}", "event_id", event_id, "event_type",
                     event_type ? event_type : "", "outcome", outcome, "reason",
                     reason ? reason : "");
}

/* ---- the client side ---------------------------------------------------- */

/* A string member copied into a fixed buffer ("" when absent). */
static void copy_member(const json_t *o, const char *key, char *dst, size_t cap)
{
    const char *v = json_string_value(json_object_get(o, key));
    snprintf(dst, cap, "%s", v ? v : "");
}

static int64_t int_member(const json_t *o, const char *key)
{
    return (int64_t)json_integer_value(json_object_get(o, key));
}

/* The status code of a final answer: SK_OK when "ok", else its "code". */
static sk_status answer_code(const json_t *msg)
{
    if (json_is_true(json_object_get(msg, "ok")))
        return SK_OK;
    sk_status code = (sk_status)int_member(msg, "code");
    return code != SK_OK ? code : SK_ERR_INTERNAL;
}

/*
 * Connects, sends {"cmd": verb} and returns the connection (closed by the
 * caller). A failure before the request went out (no socket, a stale one, a
 * state root too long for a socket address, a refused write) reads
 * SK_ERR_NOT_FOUND: no service has it. SK_ERR_PERMISSION stays.
 */
static sk_status request(const char *root, const char *verb, int *fd, sk__err *err)
{
    sk_status st = sk__control_connect(root, fd, err);
    if (st == SK_OK) {
        st = send_msg(*fd, json_pack("{s:s}", "cmd", verb), err);
        if (st != SK_OK)
            close(*fd);
    }
    if (st == SK_OK || st == SK_ERR_PERMISSION || st == SK_ERR_NOT_FOUND)
        return st;
    char why[sizeof err->msg]; /* err->msg is rewritten below */
    snprintf(why, sizeof why, "%s", err->msg);
    return sk__fail(err, SK_ERR_NOT_FOUND, "no background service reachable: %s", why);
}

sk_status sk__control_status(const char *root, sk__service_status *out, sk__err *err)
{
    memset(out, 0, sizeof *out);
    int fd;
    sk_status st = request(root, "status", &fd, err);
    if (st != SK_OK)
        return st;
    sk__line_reader r = {.len = 0};
    json_t *msg = NULL;
    st = sk__control_recv(fd, &r, 2000, -1, &msg, err);
    close(fd);
    if (st == SK_OK && (st = answer_code(msg)) != SK_OK)
        sk__fail(err, st, "%s", json_string_value(json_object_get(msg, "error")));
    if (st == SK_OK) {
        out->pid = int_member(msg, "pid");
        out->uptime_s = int_member(msg, "uptime_s");
        copy_member(msg, "connection", out->connection, sizeof out->connection);
        copy_member(msg, "last_sync", out->last_sync, sizeof out->last_sync);
        copy_member(msg, "next_attempt", out->next_attempt, sizeof out->next_attempt);
        out->consecutive_failures = int_member(msg, "consecutive_failures");
        copy_member(msg, "last_error", out->last_error, sizeof out->last_error);
        out->busy = json_is_true(json_object_get(msg, "busy"));
        out->auth_blocked = json_is_true(json_object_get(msg, "auth_blocked"));
        copy_member(msg, "auth_reason", out->auth_reason, sizeof out->auth_reason);
        out->queue_size = int_member(msg, "queue_size");
        out->queue_parked = int_member(msg, "queue_parked");
        const char *name;
        json_t *v;
        json_object_foreach(json_object_get(msg, "metrics"), name, v)
        {
            if (out->metric_count == SK_METRICS_MAX)
                break;
            snprintf(out->metrics[out->metric_count].name, sizeof out->metrics[0].name, "%s",
                     name);
            out->metrics[out->metric_count++].value = (int64_t)json_integer_value(v);
        }
    }
    json_decref(msg);
    return st;
}

static void summary_from_json(const json_t *o, sk_drain_summary *s)
{
    *s = (sk_drain_summary){.synced = int_member(o, "synced"),
                            .duplicates = int_member(o, "duplicates"),
                            .pending = int_member(o, "pending"),
                            .rejected = int_member(o, "rejected"),
                            .parked = int_member(o, "parked"),
                            .remaining = int_member(o, "remaining"),
                            .batches = int_member(o, "batches"),
                            .retry_after_ms = int_member(o, "retry_after_ms")};
    copy_member(o, "stop_reason", s->stop_reason, sizeof s->stop_reason);
    copy_member(o, "stop_code", s->stop_code, sizeof s->stop_code);
}

/* How long a client that asked the service to cancel waits for the pass's last line. */
#define CANCEL_ANSWER_MS 700
/* How long a `now` waits for the service's first line (it acknowledges at once). */
#define FIRST_ANSWER_MS 5000

/* The final answer of a `now`: summary, failures to the hook, its status. */
static sk_status take_now_answer(const json_t *msg, const sk_drain_hooks *hooks,
                                 sk_drain_summary *out)
{
    summary_from_json(json_object_get(msg, "summary"), out);
    const char *error = json_string_value(json_object_get(msg, "error"));
    if (!out->stop_reason[0] && error)
        snprintf(out->stop_reason, sizeof out->stop_reason, "%s", error);
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(msg, "failures"), i, f)
    {
        if (hooks && hooks->failure)
            hooks->failure(hooks->ctx, json_string_value(json_object_get(f, "event_id")),
                           json_string_value(json_object_get(f, "event_type")),
                           json_string_value(json_object_get(f, "outcome")),
                           json_string_value(json_object_get(f, "reason")));
    }
    return answer_code(msg);
}

sk_status sk__control_now(const char *root, int cancel_fd, const sk_drain_hooks *hooks,
                          sk_drain_summary *out, sk__err *err)
{
    memset(out, 0, sizeof *out);
    int fd;
    sk_status st = request(root, "now", &fd, err);
    if (st != SK_OK)
        return st;
    sk__line_reader r = {.len = 0};
    json_t *msg = NULL;
    int give_up = -1; /* after a cancel: how long the answer may still take */
    int heard = 0;    /* a line came: the service took the request */
    int64_t asked = sk__mono_ms();
    for (;;) {
        int wait = give_up >= 0 ? give_up : heard ? -1 : FIRST_ANSWER_MS;
        st = sk__control_recv(fd, &r, wait, give_up < 0 ? cancel_fd : -1, &msg, err);
        heard |= st == SK_OK;
        if (st == SK_ERR_CANCELLED) { /* ask the service; its answer follows soon */
            send_msg(fd, json_pack("{s:s}", "cmd", "cancel"), err); /* gone: cancelled already */
            give_up = CANCEL_ANSWER_MS;
            continue;
        }
        json_t *prog = st == SK_OK ? json_object_get(msg, "progress") : NULL;
        if (!prog)
            break;
        summary_from_json(prog, out);
        if (hooks && hooks->progress)
            hooks->progress(hooks->ctx, out, int_member(prog, "total"));
        json_decref(msg);
        msg = NULL;
    }
    close(fd);
    if (st == SK_OK) {
        st = take_now_answer(msg, hooks, out);
        json_decref(msg);
        return st == SK_OK ? SK_OK : sk__fail(err, st, "%s", out->stop_reason);
    }
    char why[sizeof err->msg]; /* err->msg is rewritten below */
    snprintf(why, sizeof why, "%s", err->msg);
    if (give_up >= 0)
        st = sk__fail(err, SK_ERR_CANCELLED, "cancelled (the service did not confirm in time)");
    else if (!heard && sk__mono_ms() - asked >= FIRST_ANSWER_MS)
        st = sk__fail(err, SK_ERR_TRANSPORT,
                      "the sync service took the `now` request but did not answer in %d s",
                      FIRST_ANSWER_MS / 1000);
    else
        st = sk__fail(err, SK_ERR_TRANSPORT, "lost the sync service: %s", why);
    sk__fit_text(out->stop_reason, sizeof out->stop_reason, err->msg);
    return st;
}

sk_status sk__control_stop(const char *root, sk__err *err)
{
    int fd;
    sk_status st = request(root, "stop", &fd, err);
    if (st == SK_OK)
        close(fd); /* the service stops whether we read its answer or not */
    return st;
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
