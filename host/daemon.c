/* The background sync service: scheduler loop, worker thread, control socket, shutdown. */
#include "daemon.h"
#include "control.h"
#include "engine.h"

#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_CLIENTS 32
#define LOG_FILE "sync-daemon.log"
#define LOCK_FILE "daemon.lock"
#define PID_FILE "daemon.pid"

enum job { JOB_NONE, JOB_BACKGROUND, JOB_NOW };

typedef struct client {
    int fd;
    sk__line_reader reader;
} client;

struct sk__service {
    sk__service_opts opts;
    sk_sync *s;          /* used by the worker thread only */
    sk__queue *status_q; /* used by the loop thread only */
    int lock_fd, listen_fd, inotify_fd;
    int wake[2]; /* self-pipe: 'w' worker done, 's' stop, 'p' poke */
    FILE *log;
    char log_path[PATH_MAX + 32];
    pthread_mutex_t log_mu;
    int64_t started_ms;
    int poked;
    atomic_int stop; /* set by signal handlers, the control socket and sk_service_stop's thread */
    client clients[MAX_CLIENTS];
    int nclients;
    /* the worker */
    pthread_t worker;
    enum job job;
    int now_fd;      /* client waiting for a `now` drain, or -1 (loop thread only) */
    int now_orphan;  /* that client hung up mid-drain: close now_fd when the drain ends */
    int progress_fd; /* the worker's copy of now_fd for its progress lines; -1 once a
                        send failed. Set before the worker starts, read after it joined. */
    int now_wanted;
    int now_cancelled; /* its client cancelled the `now` pass (or went away): reset the transport */
    int64_t deadline_ms;    /* shutdown deadline; < 0: the config's */
    sk__deliver_opts wopts; /* set by the loop thread before the worker starts */
    sk_drain_summary wsum;
    sk__pass_info winfo;
    sk_status wst;
    char werr[768];
    json_t *failures;

    /* The loop thread's metrics handle, to write metrics.textfile (NULL: not configured). */
    sk__metrics *metrics;
    int64_t metrics_due_ms;
};

static sk__service *signal_target;

/* ---- log ---------------------------------------------------------------- */

static void log_rotate_if_needed(sk__service *svc)
{
    int64_t cap = svc->opts.log_max_bytes > 0 ? svc->opts.log_max_bytes : 1 << 20;
    if (!svc->log || ftell(svc->log) < cap)
        return;
    char old[PATH_MAX + 40];
    snprintf(old, sizeof old, "%s.1", svc->log_path);
    fclose(svc->log);
    rename(svc->log_path, old);
    int fd = open(svc->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    svc->log = fd >= 0 ? fdopen(fd, "a") : NULL;
}

static void slog(sk__service *svc, sk_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void slog(sk__service *svc, sk_log_level level, const char *fmt, ...)
{
    if (level > SK_LOG_INFO && !svc->opts.verbose)
        return;
    static const char *names[] = {"error", "warn", "info", "debug"};
    char line[1200], ts[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    sk__iso8601_ms(sk__wall_ms(), ts, sizeof ts);
    pthread_mutex_lock(&svc->log_mu);
    log_rotate_if_needed(svc);
    if (svc->log) {
        fprintf(svc->log, "%s %-5s %s\n", ts, names[level], line);
        fflush(svc->log);
    }
    if (svc->opts.log_stderr)
        fprintf(stderr, "%s %-5s %s\n", ts, names[level], line);
    pthread_mutex_unlock(&svc->log_mu);
}

static void plugin_log(void *ctx, int level, const char *plugin, const char *line)
{
    slog(ctx, (sk_log_level)level, "%s: %s", plugin, line);
}

/* ---- lock --------------------------------------------------------------- */

sk_status sk__service_find(const char *root, long *pid_out, sk__err *err)
{
    *pid_out = 0;
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/" LOCK_FILE, root);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block */
    if (fd < 0 && errno == ENOENT)
        return SK_OK;
    if (fd < 0) /* another user's state root: we cannot tell, so do not say "not running" */
        return sk__fail(err, errno == EACCES || errno == EPERM ? SK_ERR_PERMISSION : SK_ERR_IO,
                        "cannot check for a sync service: %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return sk__fail(err, SK_ERR_PERMISSION,
                        "cannot check for a sync service: %s: not a regular file: refused", path);
    }
    int held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd);
    if (!held)
        return SK_OK;
    snprintf(path, sizeof path, "%s/" PID_FILE, root);
    char *text = NULL;
    long pid = 0;
    if (sk__read_file(path, &text, NULL, NULL) == SK_OK)
        pid = strtol(text, NULL, 10);
    free(text);
    *pid_out = pid > 0 ? pid : -1;
    return SK_OK;
}

long sk__service_running_pid(const char *root)
{
    long pid;
    return sk__service_find(root, &pid, NULL) == SK_OK ? pid : 0;
}

static sk_status take_lock(sk__service *svc, sk__err *err)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/" LOCK_FILE, svc->s->root);
    svc->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (svc->lock_fd < 0)
        return sk__fail(err, SK_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    if (flock(svc->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        /* Not ours: forget the descriptor, so that freeing svc leaves the winner's pid file. */
        close(svc->lock_fd);
        svc->lock_fd = -1;
        return sk__fail(err, SK_ERR_BUSY, "a sync service already runs for %s", svc->s->root);
    }
    char pidtext[32];
    int n = snprintf(pidtext, sizeof pidtext, "%ld\n", (long)getpid());
    snprintf(path, sizeof path, "%s/" PID_FILE, svc->s->root);
    return sk__write_file_atomic(path, pidtext, (size_t)n, 0600, 0, err);
}

/* ---- setup -------------------------------------------------------------- */

sk_status sk__service_new(const char *root, const sk__service_opts *opts, sk__service **out,
                          sk__err *err)
{
    *out = NULL;
    sk__service *svc = calloc(1, sizeof *svc);
    if (!svc)
        return sk__fail(err, SK_ERR_NOMEM, "out of memory");
    svc->opts = *opts;
    svc->lock_fd = svc->listen_fd = svc->inotify_fd = svc->now_fd = svc->progress_fd = -1;
    svc->deadline_ms = -1;
    svc->wake[0] = svc->wake[1] = -1;
    pthread_mutex_init(&svc->log_mu, NULL);
    sk_status st = sk__sync_open(root, &svc->s, err);
    if (st != SK_OK)
        goto fail;
    st = take_lock(svc, err);
    if (st != SK_OK)
        goto fail;
    snprintf(svc->log_path, sizeof svc->log_path, "%s/" LOG_FILE, svc->s->root);
    int lfd = open(svc->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    svc->log = lfd >= 0 ? fdopen(lfd, "a") : NULL;
    st = sk__sync_queue_open(svc->s, &svc->status_q, err);
    if (st == SK_OK && svc->s->cfg->metrics_textfile[0])
        st = sk__metrics_open(svc->s->root, &svc->metrics, err);
    if (st == SK_OK && pipe2(svc->wake, O_CLOEXEC | O_NONBLOCK) != 0)
        st = sk__fail(err, SK_ERR_IO, "pipe: %s", strerror(errno));
    if (st == SK_OK && opts->control_socket)
        st = sk__control_listen(svc->s->root, &svc->listen_fd, err);
    if (st != SK_OK)
        goto fail;
    /* Watch the state root for credentials.json being replaced (login, refresh). */
    svc->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (svc->inotify_fd >= 0)
        inotify_add_watch(svc->inotify_fd, svc->s->root, IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE);
    svc->s->log = plugin_log;
    svc->s->log_ctx = svc;
    const char *warning = sk__sync_load_sched(svc->s);
    if (warning)
        slog(svc, SK_LOG_WARN, "%s", warning);
    svc->started_ms = sk__mono_ms();
    svc->poked = 1; /* look at the queue once at start */
    *out = svc;
    return SK_OK;
fail:
    sk__service_free(svc);
    return st;
}

/* Removes the state root's file name and closes *fd (once). */
static void close_and_unlink(const sk__service *svc, const char *name, int *fd)
{
    if (*fd < 0)
        return;
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/%s", svc->s->root, name);
    unlink(path);
    close(*fd);
    *fd = -1;
}

/* Stops listening: from now on a client finds no service (and drains locally). */
static void close_listener(sk__service *svc)
{
    close_and_unlink(svc, SK__CONTROL_SOCKET, &svc->listen_fd);
}

static void close_clients(sk__service *svc)
{
    for (int i = 0; i < svc->nclients; i++)
        close(svc->clients[i].fd);
    svc->nclients = 0;
}

/* Gives up the service lock (closing the pid file releases it): the state root has no
 * service any more. */
static void release_lock(sk__service *svc)
{
    close_and_unlink(svc, PID_FILE, &svc->lock_fd);
}

void sk__service_free(sk__service *svc)
{
    if (!svc)
        return;
    close_clients(svc);
    close_listener(svc);
    release_lock(svc);
    if (svc->inotify_fd >= 0)
        close(svc->inotify_fd);
    for (int i = 0; i < 2; i++)
        if (svc->wake[i] >= 0)
            close(svc->wake[i]);
    sk__queue_close(svc->status_q);
    sk__metrics_close(svc->metrics);
    sk__sync_close(svc->s);
    if (svc->log)
        fclose(svc->log);
    json_decref(svc->failures);
    pthread_mutex_destroy(&svc->log_mu);
    if (signal_target == svc)
        signal_target = NULL;
    free(svc);
}

/* ---- signals and pokes -------------------------------------------------- */

static void wake(sk__service *svc, char what)
{
    ssize_t w = write(svc->wake[1], &what, 1);
    (void)w; /* a full pipe already holds a wake-up */
}

void sk__service_request_stop(sk__service *svc)
{
    svc->stop = 1;
    wake(svc, 's');
}

void sk__service_stop(sk__service *svc, int64_t deadline_ms)
{
    svc->deadline_ms = deadline_ms;
    sk__service_request_stop(svc);
}

int64_t sk__service_uptime_s(const sk__service *svc)
{
    return (sk__mono_ms() - svc->started_ms) / 1000;
}

/* Rewrites metrics.textfile (when configured) and schedules the next time. */
static void write_textfile(sk__service *svc)
{
    if (!svc->metrics)
        return;
    svc->metrics_due_ms = sk__wall_ms() + svc->s->cfg->metrics_interval_s * 1000;
    char *text = NULL;
    sk__err err;
    const char *file = svc->s->cfg->metrics_textfile;
    if (sk__metrics_text(svc->metrics, svc->status_q, 1, sk__service_uptime_s(svc), sk__wall_ms(),
                         &text, &err) != SK_OK ||
        sk__metrics_write_textfile(file, text, &err) != SK_OK)
        slog(svc, SK_LOG_WARN, "metrics.textfile %s: %s", file, err.msg);
    free(text);
}

void sk__service_poke(sk__service *svc)
{
    wake(svc, 'p');
}

static void on_signal(int sig)
{
    (void)sig;
    if (!signal_target)
        return;
    if (signal_target->stop)
        _exit(1); /* second signal: at once; leased rows return to the queue later */
    sk__service_request_stop(signal_target);
}

void sk__service_handle_signals(sk__service *svc)
{
    signal_target = svc;
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* ---- the worker --------------------------------------------------------- */

static void now_progress(void *ctx, const sk_drain_summary *sum, int64_t total)
{
    sk__service *svc = ctx;
    sk__err err;
    if (svc->progress_fd >= 0 && sk__control_progress(svc->progress_fd, sum, total, &err) != SK_OK)
        svc->progress_fd = -1; /* the client went away: the loop thread cancels the pass */
}

static void now_failure(void *ctx, const char *id, const char *type, const char *what,
                        const char *reason)
{
    sk__service *svc = ctx;
    json_array_append_new(svc->failures, sk__control_failure_json(id, type, what, reason));
    slog(svc, SK_LOG_WARN, "event %s %s: %s", id, what, reason ? reason : "");
}

static void *worker_main(void *arg)
{
    sk__service *svc = arg;
    sk__deliver_hooks h = {.failure = now_failure,
                           .progress = svc->job == JOB_NOW ? now_progress : NULL,
                           .ctx = svc,
                           .cancel = &svc->s->cancel};
    svc->werr[0] = '\0';
    svc->wst = sk__sync_deliver(svc->s, &svc->wopts, &h, &svc->wsum, &svc->winfo);
    if (svc->wst != SK_OK)
        snprintf(svc->werr, sizeof svc->werr, "%s",
                 svc->wsum.stop_reason[0] ? svc->wsum.stop_reason : svc->s->err.msg);
    wake(svc, 'w');
    return NULL;
}

static void start_job(sk__service *svc, enum job job)
{
    svc->job = job;
    /* The worker writes to its own copy: now_fd stays the loop thread's, which
     * closes it (see drop_client and finish_job). */
    svc->progress_fd = job == JOB_NOW ? svc->now_fd : -1;
    json_decref(svc->failures);
    svc->failures = json_array();
    atomic_store(&svc->s->cancel, 0);
    sk__sync_deliver_opts(svc->s, job == JOB_NOW, &svc->wopts);
    int rc = pthread_create(&svc->worker, NULL, worker_main, svc);
    if (rc == 0)
        return;
    char why[128];
    snprintf(why, sizeof why, "cannot start a worker thread: %s", strerror(rc));
    slog(svc, SK_LOG_ERROR, "%s", why);
    svc->job = JOB_NONE;
    if (job == JOB_NOW) { /* its client waits for a last line */
        sk__err err;
        sk__control_answer_error(svc->now_fd, SK_ERR_INTERNAL, why, &err);
        svc->now_fd = -1;
    } else { /* try again after a pause, not at once */
        sk__sched_on_empty_pass(&svc->s->sched, sk__sched_now(&svc->s->sched));
    }
}

/* The last line a `now` client gets: how its pass ended. */
static void answer_now(int fd, sk_status st, const sk_drain_summary *sum, json_t *failures,
                       const char *error)
{
    sk__err err;
    sk__control_answer_now(fd, st, sum, failures, error, &err);
}

/*
 * The client of a `now` pass asked to cancel it, or went away (Ctrl+C, kill -9):
 * a pass nobody waits for stops now, the service's own schedule goes on. A pass
 * not started yet is dropped. Returns non-zero when a running pass was cancelled
 * (its answer follows when the worker returns).
 */
static int cancel_now(sk__service *svc)
{
    if (svc->now_wanted)
        slog(svc, SK_LOG_INFO, "sync-now request cancelled by its client before it started");
    svc->now_wanted = 0;
    if (svc->job != JOB_NOW)
        return 0;
    if (!svc->now_cancelled)
        slog(svc, SK_LOG_INFO, "sync-now pass cancelled by its client");
    svc->now_cancelled = 1;
    sk__sync_cancel(svc->s);
    return 1;
}

/* Says when passes move to the fallback transport or back (was: before the pass). */
static void log_fallback_change(sk__service *svc, int was)
{
    const sk__config *c = svc->s->cfg;
    if (svc->s->sched.fallback && !was)
        slog(svc, SK_LOG_WARN,
             "%s failed %lld passes in a row: sending through %s (OfflineBatchMode)",
             c->transport_plugin, (long long)svc->s->sched.consecutive_failures,
             c->transport_fallback);
    else if (!svc->s->sched.fallback && was)
        slog(svc, SK_LOG_INFO, "%s answers again: streaming through it (Connected)",
             c->transport_plugin);
}

/* The worker finished: fold its result into the scheduler and answer a `now` client. */
static void finish_job(sk__service *svc)
{
    pthread_join(svc->worker, NULL);
    const sk_drain_summary *sum = &svc->wsum;
    int fell_back = svc->s->sched.fallback;
    sk__sync_record_pass(svc->s, svc->wst, sum, &svc->winfo);
    log_fallback_change(svc, fell_back);
    write_textfile(svc); /* after each pass */
    if (sum->batches > 0 || svc->wst != SK_OK)
        slog(svc, svc->wst == SK_OK ? SK_LOG_INFO : SK_LOG_WARN,
             "%s pass: synced %lld, duplicates %lld, pending %lld, rejected %lld, parked %lld, "
             "remaining %lld%s%s",
             svc->job == JOB_NOW ? "sync-now" : "background", (long long)sum->synced,
             (long long)sum->duplicates, (long long)sum->pending, (long long)sum->rejected,
             (long long)sum->parked, (long long)sum->remaining, svc->wst ? "; stopped: " : "",
             svc->wst ? svc->werr : "");
    /* Only a `now` job owns the waiting client: a `now` asked for while a
     * background batch ran is still waiting for its own job. */
    if (svc->job == JOB_NOW) {
        if (svc->now_fd >= 0 && !svc->now_orphan)
            answer_now(svc->now_fd, svc->wst, sum, svc->failures, svc->werr);
        if (svc->now_orphan && svc->now_fd >= 0)
            close(svc->now_fd);
        svc->now_orphan = 0;
        svc->now_fd = -1;
        if (svc->now_cancelled) /* the transport's cancel is final: the next pass loads it anew */
            sk__sync_cancel_reset(svc->s);
        svc->now_cancelled = 0;
    }
    if (svc->job == JOB_BACKGROUND && sum->batches == 0)
        sk__sched_on_empty_pass(&svc->s->sched, sk__sched_now(&svc->s->sched)); /* do not spin */
    svc->job = JOB_NONE;
}

/* ---- control socket ----------------------------------------------------- */

static void drop_client(sk__service *svc, int i)
{
    if (svc->clients[i].fd == svc->now_fd) /* a `now` client that hangs up cancels its pass */
        cancel_now(svc);
    /* The worker may still be writing progress to a `now` client: close it after the job. */
    if (svc->clients[i].fd == svc->now_fd && svc->job == JOB_NOW)
        svc->now_orphan = 1;
    else
        close(svc->clients[i].fd);
    if (svc->clients[i].fd == svc->now_fd && svc->job != JOB_NOW)
        svc->now_fd = -1;
    svc->clients[i] = svc->clients[--svc->nclients];
}

static void add_metric(void *ctx, const sk__plugin_metric *m)
{
    sk__service_status *st = ctx;
    if (st->metric_count == SK_METRICS_MAX)
        return;
    snprintf(st->metrics[st->metric_count].name, sizeof st->metrics[0].name, "%s", m->name);
    st->metrics[st->metric_count++].value = m->value;
}

static void answer_status(sk__service *svc, int fd)
{
    sk__queue_stats qs = {0};
    sk__err err;
    sk__queue_stats_get(svc->status_q, &qs, &err);
    const sk__sched *sc = &svc->s->sched;
    sk__service_status st = {
        .pid = (int64_t)getpid(),
        .uptime_s = sk__service_uptime_s(svc),
        .consecutive_failures = sc->consecutive_failures,
        .busy = svc->job != JOB_NONE,
        .auth_blocked = sc->auth_blocked,
        .queue_size = qs.ready,
        .queue_parked = qs.parked,
    };
    snprintf(st.connection, sizeof st.connection, "%s", sk__sched_connection_name(sc->connection));
    if (sc->last_success_wall_ms > 0)
        sk__iso8601_ms(sc->last_success_wall_ms, st.last_sync, sizeof st.last_sync);
    if (sc->next_attempt_wall_ms > 0)
        sk__iso8601_ms(sc->next_attempt_wall_ms, st.next_attempt, sizeof st.next_attempt);
    snprintf(st.last_error, sizeof st.last_error, "%s", sc->last_error);
    snprintf(st.auth_reason, sizeof st.auth_reason, "%s", sc->auth_reason);
    sk__sync_each_metric(svc->s, add_metric, &st);
    sk__control_answer_status(fd, &st, &err);
}

/* A stopping service takes no `now`: on this code its client drains locally. */
static void refuse_now_stopping(int fd)
{
    sk__err err;
    sk__control_answer_error(fd, SK_ERR_NOT_FOUND, "the sync service is stopping", &err);
}

/* A `now` is taken: the client hears so at once, though the pass may wait for the worker. */
static void ack_now(sk__service *svc, int fd)
{
    sk__queue_stats qs = {0};
    sk__err err;
    sk__queue_stats_get(svc->status_q, &qs, &err);
    sk_drain_summary none = {.remaining = qs.ready};
    sk__control_progress(fd, &none, qs.ready, &err);
}

static void handle_message(sk__service *svc, int i, json_t *msg)
{
    int fd = svc->clients[i].fd;
    sk__err err;
    switch (sk__control_verb_of(msg)) {
    case SK__VERB_POKE:
        svc->poked = 1;
        break;
    case SK__VERB_STATUS:
        answer_status(svc, fd);
        break;
    case SK__VERB_NOW:
        if (svc->stop) {
            refuse_now_stopping(fd);
        } else if (svc->now_wanted || svc->job == JOB_NOW) {
            sk__control_answer_error(fd, SK_ERR_BUSY,
                                     "another `sync now` is already draining through the service",
                                     &err);
        } else {
            svc->now_wanted = 1; /* starts when the worker is free: one drainer at a time */
            svc->now_fd = fd;
            ack_now(svc, fd);
        }
        break;
    case SK__VERB_CANCEL:
        if (fd == svc->now_fd && !cancel_now(svc)) { /* not started: answer at once */
            sk_drain_summary none = {0};
            json_t *failures = json_array();
            answer_now(fd, SK_ERR_CANCELLED, &none, failures, "cancelled before it started");
            json_decref(failures);
            svc->now_fd = -1;
        }
        break;
    case SK__VERB_STOP:
        sk__control_answer_stop(fd, (long)getpid(), &err);
        slog(svc, SK_LOG_INFO, "stop requested over the control socket");
        svc->stop = 1;
        break;
    case SK__VERB_UNKNOWN:
        sk__control_answer_error(fd, SK_ERR_USAGE, "unknown or missing cmd", &err);
        break;
    }
}

static void read_client(sk__service *svc, int i)
{
    client *c = &svc->clients[i];
    ssize_t got = recv(c->fd, c->reader.buf + c->reader.len, sizeof c->reader.buf - c->reader.len,
                       MSG_DONTWAIT);
    if (got <= 0) {
        if (got == 0 || (errno != EAGAIN && errno != EINTR))
            drop_client(svc, i);
        return;
    }
    c->reader.len += (size_t)got;
    for (;;) {
        if (!memchr(c->reader.buf, '\n', c->reader.len)) {
            if (c->reader.len == sizeof c->reader.buf)
                drop_client(svc, i);
            return;
        }
        json_t *msg = NULL;
        sk__err err;
        if (sk__control_recv(c->fd, &c->reader, 0, -1, &msg, &err) != SK_OK) {
            drop_client(svc, i);
            return;
        }
        handle_message(svc, i, msg);
        json_decref(msg);
    }
}

static void accept_clients(sk__service *svc)
{
    for (;;) {
        int fd = accept4(svc->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            return;
        if (!sk__control_peer_trusted(fd) || svc->nclients == MAX_CLIENTS) {
            slog(svc, SK_LOG_WARN, "control socket: refused a connection (%s)",
                 svc->nclients == MAX_CLIENTS ? "too many clients" : "peer of another user");
            close(fd);
            continue;
        }
        svc->clients[svc->nclients].fd = fd;
        svc->clients[svc->nclients].reader.len = 0;
        svc->nclients++;
    }
}

static void drain_wake_pipe(sk__service *svc, int *worker_done)
{
    char buf[64];
    ssize_t n;
    while ((n = read(svc->wake[0], buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == 'w')
                *worker_done = 1;
            else if (buf[i] == 'p')
                svc->poked = 1;
        }
}

static void check_credentials_change(sk__service *svc)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;
    int changed = 0;
    while ((n = read(svc->inotify_fd, buf, sizeof buf)) > 0)
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            if (ev->len && strcmp(ev->name, "credentials.json") == 0)
                changed = 1;
            p += sizeof *ev + ev->len;
        }
    if (changed && svc->s->sched.auth_blocked) {
        slog(svc, SK_LOG_INFO, "credentials changed: resuming");
        sk__sched_clear_auth_blocked(&svc->s->sched);
        sk__err err;
        sk__sched_save(&svc->s->sched, svc->s->root, &err);
        svc->poked = 1;
    }
}

/* ---- the loop ----------------------------------------------------------- */

/* When the next background attempt is due (wall ms), or INT64_MAX. */
static int64_t next_due(sk__service *svc, int64_t now)
{
    sk__queue_stats qs = {0};
    sk__err err;
    if (sk__queue_stats_get(svc->status_q, &qs, &err) != SK_OK) {
        slog(svc, SK_LOG_ERROR, "%s", err.msg);
        return now + 5000;
    }
    return sk__sched_next_due(&svc->s->sched, now, qs.ready - qs.leased > 0, svc->poked);
}

/* Going idle: give the queue caches and freed heap back to the system. */
static void shrink_when_idle(sk__service *svc)
{
    sk__queue_release_memory(svc->status_q);
    sk__queue_release_memory(svc->s->q);
    malloc_trim(0);
}

static int poll_timeout(int64_t due, int64_t now)
{
    if (due == INT64_MAX)
        return -1; /* idle: nothing wakes us but a poke, a client or a signal */
    int64_t ms = due - now;
    return ms <= 0 ? 0 : ms > 3600000 ? 3600000 : (int)ms;
}

/* Waits for the in-flight pass at shutdown: until the deadline, then cancel. */
static void shutdown_worker(sk__service *svc)
{
    if (svc->job == JOB_NONE)
        return;
    int64_t grace = svc->deadline_ms >= 0 ? svc->deadline_ms : svc->s->cfg->shutdown_deadline_ms;
    sk__shutdown sd;
    sk__shutdown_begin(&sd, sk__mono_ms(), grace);
    slog(svc, SK_LOG_INFO, "stopping: letting the batch in flight finish (up to %lld ms)",
         (long long)grace);
    for (int done = 0; !done;) {
        int64_t wait;
        switch (sk__shutdown_next(&sd, sk__mono_ms(), &wait)) {
        case SK__SHUTDOWN_CANCEL:
            slog(svc, SK_LOG_WARN, "shutdown deadline reached: cancelling the batch in flight");
            sk__sync_cancel(svc->s); /* under the handle's plugin lock: no race with the worker */
            break;
        case SK__SHUTDOWN_ABANDON:
            slog(svc, SK_LOG_ERROR, "the transport ignored cancel: exiting without it");
            return; /* never hang: the process exits; nothing it read is lost */
        case SK__SHUTDOWN_WAIT:
            break;
        }
        struct pollfd pfd = {.fd = svc->wake[0], .events = POLLIN};
        poll(&pfd, 1, (int)wait);
        drain_wake_pipe(svc, &done);
    }
    finish_job(svc);
}

sk_status sk__service_run(sk__service *svc, sk__err *err)
{
    (void)err;
    slog(svc, SK_LOG_INFO, "service started (pid %ld, transport %s, server %s)", (long)getpid(),
         svc->s->cfg->transport_plugin,
         svc->s->cfg->server_url[0] ? svc->s->cfg->server_url : "(not set)");
    write_textfile(svc);
    while (!svc->stop) {
        int64_t now = sk__wall_ms();
        int64_t due = INT64_MAX;
        if (svc->metrics && svc->metrics_due_ms <= now)
            write_textfile(svc); /* every metrics.interval_s, a pass running or not */
        if (svc->job == JOB_NONE) {
            if (svc->now_wanted) {
                svc->now_wanted = 0;
                start_job(svc, JOB_NOW);
                continue;
            }
            due = next_due(svc, now);
            if (due <= now) {
                svc->poked = 0;
                start_job(svc, JOB_BACKGROUND);
                continue;
            }
        }
        struct pollfd fds[3 + MAX_CLIENTS];
        int nf = 0;
        fds[nf++] = (struct pollfd){.fd = svc->wake[0], .events = POLLIN};
        fds[nf++] = (struct pollfd){.fd = svc->listen_fd, .events = POLLIN};
        fds[nf++] = (struct pollfd){.fd = svc->inotify_fd, .events = POLLIN};
        for (int i = 0; i < svc->nclients; i++)
            fds[nf++] = (struct pollfd){.fd = svc->clients[i].fd, .events = POLLIN};
        int idle = svc->job == JOB_NONE && due == INT64_MAX; /* the metrics timer aside */
        int timeout = svc->job != JOB_NONE ? -1 : poll_timeout(due, now);
        if (svc->metrics && (timeout < 0 || svc->metrics_due_ms - now < timeout))
            timeout = poll_timeout(svc->metrics_due_ms, now);
        if (idle)
            shrink_when_idle(svc);
        int pr = poll(fds, (nfds_t)nf, timeout);
        if (pr < 0 && errno != EINTR)
            slog(svc, SK_LOG_ERROR, "poll: %s", strerror(errno));
        if (pr <= 0)
            continue;
        int worker_done = 0;
        if (fds[0].revents)
            drain_wake_pipe(svc, &worker_done);
        if (worker_done)
            finish_job(svc);
        if (fds[2].revents)
            check_credentials_change(svc);
        for (int i = svc->nclients - 1; i >= 0; i--)
            if (fds[3 + i].revents && i < svc->nclients)
                read_client(svc, i);
        if (fds[1].revents)
            accept_clients(svc);
    }
    close_listener(svc);
    if (svc->now_wanted) { /* never started */
        refuse_now_stopping(svc->now_fd);
        svc->now_wanted = 0;
        svc->now_fd = -1;
    }
    shutdown_worker(svc);
    for (int i = svc->nclients - 1; i >= 0; i--) /* answer what they asked meanwhile */
        read_client(svc, i);
    close_clients(svc);
    release_lock(svc);
    slog(svc, SK_LOG_INFO, "service stopped");
    return SK_OK;
}
