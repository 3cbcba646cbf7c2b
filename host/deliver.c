/* The host's delivery policy: outcomes and hints → queue changes. */
#include "deliver.h"
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/file.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void sk__deliver_opts_default(sk__deliver_opts *o)
{
    o->max_batch_events = (size_t)sk__config_default_int("schedule.max_batch_events");
    o->max_batch_bytes = (size_t)sk__config_default_int("schedule.max_batch_bytes");
    o->max_retries = sk__config_default_int("schedule.max_retries");
    o->batch_timeout_ms = 90000;
    o->max_batches = 0;
    o->max_events_per_s = 0;
    o->wait_first_ms = 0;
    o->sched = sk__sched_policy_default();
    o->drain_lock_path = NULL;
}

/*
 * Takes the drain lock, waiting while another drainer holds it, but not past a
 * cancel. *fd_out is the descriptor whose close releases it.
 */
static sk_status take_drain_lock(const char *path, atomic_int *cancel, int *fd_out, sk__err *err)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return sk__fail(err, SK_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        sk_status st = SK_OK;
        if (errno != EWOULDBLOCK && errno != EINTR)
            st = sk__fail(err, SK_ERR_IO, "cannot lock %s: %s", path, strerror(errno));
        else if (cancel && atomic_load(cancel))
            st = sk__fail(err, SK_ERR_CANCELLED, "cancelled while waiting for another drain");
        if (st != SK_OK) {
            close(fd);
            return st;
        }
        struct timespec ts = {0, 20 * 1000000L}; /* another drain runs: poll for its end */
        nanosleep(&ts, NULL);
    }
    *fd_out = fd;
    return SK_OK;
}

/* ---- one pass ----------------------------------------------------------- */

typedef struct pass {
    sk__queue *q;
    sk__plugin *p;
    const sk__deliver_opts *o;
    const sk__deliver_hooks *h;
    sk_drain_summary *sum;
    sk__pass_info *info;
    sk__err *err;
    /* This batch's resends after a 401 (cleared once a batch is taken): one after a
     * refresh made for it, and one before, when the token had changed since it left. */
    int reauth_refreshed, reauth_resent;
    int64_t retry_waits; /* Retry-After waits in this pass; a server that never relents stops it */
    uint64_t seq;
    int64_t pace_next_ms; /* the rate limit: the next batch may leave then (monotonic) */
    sk_status stop;
    int64_t total;
    sk_drain_summary counted; /* the part of *sum already added to the metrics */
    int64_t *acked;           /* enqueue times of the acknowledged rows not yet added */
    size_t nacked, acked_cap;
} pass;

static int cancelled(const pass *ps)
{
    return ps->h && ps->h->cancel && atomic_load(ps->h->cancel);
}

static sk_status stop_pass(pass *ps, sk_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static sk_status stop_pass(pass *ps, sk_status st, const char *fmt, ...)
{
    if (ps->stop != SK_OK) /* the first reason is the one the user needs */
        return sk__fail(ps->err, ps->stop, "%s", ps->sum->stop_reason);
    ps->stop = st;
    va_list ap;
    va_start(ap, fmt);
    char *text = NULL;
    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    va_end(ap);
    sk__fit_text(ps->sum->stop_reason, sizeof ps->sum->stop_reason, text ? text : "out of memory");
    free(text);
    return sk__fail(ps->err, st, "%s", ps->sum->stop_reason);
}

static int wait_ms(pass *ps, int64_t ms)
{
    if (ps->h && ps->h->wait_ms)
        return ps->h->wait_ms(ps->h->ctx, ms);
    int64_t until = sk__mono_ms() + ms;
    while (!cancelled(ps)) {
        int64_t left = until - sk__mono_ms();
        if (left <= 0)
            return 0;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (left > 50 ? 50 : left) * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 1;
}

/* A server's wait of ms: waited out (SK_OK: send again) or the pass stops, by the scheduler's rules. */
static sk_status retry_after(pass *ps, int64_t ms)
{
    if (ms > ps->sum->retry_after_ms)
        ps->sum->retry_after_ms = ms;
    if (!sk__sched_waits_in_pass(&ps->o->sched, ms, ++ps->retry_waits))
        return stop_pass(ps, SK_ERR_TRANSPORT, "the server asked to wait %lld s before retrying",
                         (long long)((ms + 999) / 1000));
    if (wait_ms(ps, ms))
        return stop_pass(ps, SK_ERR_CANCELLED, "%s", "cancelled");
    return SK_OK;
}

static void report(pass *ps, const sk__queue_row *row, const char *what, const char *reason)
{
    if (ps->h && ps->h->failure)
        ps->h->failure(ps->h->ctx, row->event_id, row->event_type, what, reason);
}

/* Counts and reports one settled row. */
static void count_settled(pass *ps, const sk__queue_row *row, const sk__settlement *s, int dup)
{
    if (s->action == SK__SETTLE_DELETE) {
        if (dup)
            ps->sum->duplicates++;
        else
            ps->sum->synced++;
        return;
    }
    /* The queue parks a rejected row once its retry count passes max_retries. */
    int parked = s->action == SK__SETTLE_PARK || row->retry_count + 1 > ps->o->max_retries;
    if (parked)
        ps->sum->parked++;
    else
        ps->sum->rejected++;
    report(ps, row, parked ? "parked" : "rejected", s->reason);
}

/*
 * Applies what the server said of n rows (rows[i] becomes s[i]; dup[i]: a
 * deletion of a duplicate) in one transaction, then counts and reports them.
 */
static sk_status settle(pass *ps, const sk__queue_row *const *rows, const sk__settlement *s,
                        const int *dup, size_t n)
{
    if (n && sk__queue_settle(ps->q, s, n, ps->o->max_retries, NULL, ps->err) != SK_OK)
        return stop_pass(ps, SK_ERR_DB, "queue: %s", ps->err->msg);
    for (size_t i = 0; i < n; i++)
        count_settled(ps, rows[i], &s[i], dup[i]);
    /* For the latency histogram; without memory the metrics lack these few, nothing else. */
    if (ps->h && ps->h->metrics &&
        sk__grow((void **)&ps->acked, &ps->acked_cap, ps->nacked + n, sizeof *ps->acked))
        for (size_t i = 0; i < n; i++)
            if (s[i].action == SK__SETTLE_DELETE)
                ps->acked[ps->nacked++] = rows[i]->timestamp;
    return SK_OK;
}

/* One row refused on its own (too large alone, the poisoned one). */
static sk_status refuse_row(pass *ps, const sk__queue_row *row, sk__settle_action action,
                            const char *reason)
{
    sk__settlement s = {row->id, action, reason};
    int dup = 0;
    return settle(ps, &row, &s, &dup, 1);
}

/* Applies the per-event outcomes of a batch the transport answered, in one transaction. */
static sk_status apply_outcomes(pass *ps, const sk__queue_row *rows, size_t n,
                                const sk_batch_result *r)
{
    sk__settlement *s = calloc(n, sizeof *s);
    const sk__queue_row **which = calloc(n, sizeof *which);
    int *dup = calloc(n, sizeof *dup);
    size_t ns = 0, transient = 0;
    sk_status st = s && which && dup ? SK_OK
                                     : stop_pass(ps, SK_ERR_NOMEM, "%s",
                                                 "out of memory settling a batch");
    for (size_t i = 0; i < n && st == SK_OK; i++) {
        const sk_event_result *e = &r->events[i];
        sk__settlement x = {rows[i].id, SK__SETTLE_DELETE, NULL};
        switch (e->outcome) {
        case SK_OUTCOME_DELIVERED:
            break;
        case SK_OUTCOME_DUPLICATE:
            dup[ns] = 1;
            break;
        case SK_OUTCOME_PENDING:
            ps->sum->pending++; /* the cursor moves past it: retried by a later pass */
            continue;
        case SK_OUTCOME_REJECTED:
            x.action = SK__SETTLE_REJECT;
            x.reason = e->message[0] ? e->message : "rejected by the server";
            break;
        case SK_OUTCOME_REJECTED_PERMANENT:
            x.action = SK__SETTLE_PARK;
            x.reason = e->message[0] ? e->message : "refused for good by the server";
            break;
        default:
            transient++;
            continue;
        }
        which[ns] = &rows[i];
        s[ns++] = x;
    }
    if (st == SK_OK)
        st = settle(ps, which, s, dup, ns);
    free(s);
    free(which);
    free(dup);
    if (st == SK_OK && transient == n && n > 0)
        return stop_pass(ps, SK_ERR_TRANSPORT, "%s",
                         r->detail[0] ? r->detail : "the transport delivered nothing");
    return st;
}

static sk_status send_rows(pass *ps, sk__queue_row *rows, size_t n);

/* Sends rows in two halves (too large, poisoned). */
static sk_status split(pass *ps, sk__queue_row *rows, size_t n)
{
    size_t half = n / 2;
    sk_status st = send_rows(ps, rows, half);
    return st == SK_OK ? send_rows(ps, rows + half, n - half) : st;
}

/*
 * A 401 for rows, sent under credentials generation sent: refresh once, resend
 * once. A batch that left before another one's refresh is resent with the new
 * token without refreshing again (should that token be refused too, the
 * resend's 401 refreshes), so one revoked token costs one refresh however many
 * batches carried it, and a batch is sent at most three times.
 */
static sk_status reauthenticate(pass *ps, sk__queue_row *rows, size_t n, unsigned sent)
{
    static const char refused[] =
        "the server refused the credentials (401): run `spec-kitty auth login`";
    const sk__deliver_hooks *h = ps->h;
    if (ps->reauth_refreshed || !h || !h->reauthenticate)
        return stop_pass(ps, SK_ERR_AUTH, "%s", refused);
    int refreshed = 0;
    sk__err aerr = {{0}};
    sk_status st = h->reauthenticate(h->auth_ctx, sent, &refreshed, &aerr);
    if (st != SK_OK)
        return stop_pass(ps, st, "%s", aerr.msg);
    if (!refreshed && ps->reauth_resent) /* renewed under it twice: never a loop */
        return stop_pass(ps, SK_ERR_AUTH, "%s", refused);
    ps->reauth_refreshed |= refreshed;
    ps->reauth_resent |= !refreshed;
    return send_rows(ps, rows, n);
}

static sk_status on_hints(pass *ps, sk__queue_row *rows, size_t n, const sk_batch_result *r,
                          unsigned auth_sent)
{
    if (r->hints & SK_HINT_PROTOCOL_MISMATCH) {
        snprintf(ps->sum->stop_code, sizeof ps->sum->stop_code, "%s", r->error_code);
        return stop_pass(ps, SK_ERR_PROTOCOL, "the server refused this client's protocol: %s",
                         r->detail[0] ? r->detail : "(no guidance given)");
    }
    if (r->hints & SK_HINT_REAUTHENTICATE)
        return reauthenticate(ps, rows, n, auth_sent);
    if (r->hints & SK_HINT_TOO_LARGE) {
        if (n > 1)
            return split(ps, rows, n);
        char why[SK_BATCH_DETAIL_MAX + 64];
        snprintf(why, sizeof why, "too large for the server even alone%s%s",
                 r->detail[0] ? ": " : "", r->detail);
        return refuse_row(ps, &rows[0], SK__SETTLE_PARK, why);
    }
    if (r->hints & SK_HINT_POISONED) {
        if (n > 1)
            return split(ps, rows, n);
        return refuse_row(ps, &rows[0], SK__SETTLE_REJECT,
                          "the server refused the batch because of this event (400 without "
                          "details)");
    }
    if (r->hints & SK_HINT_RETRY_AFTER) {
        /* "Retry-After: 0" (or none) would resend at once: wait the backoff minimum at least. */
        int64_t floor = ps->o->sched.backoff_min_ms;
        sk_status st = retry_after(ps, r->retry_after_ms > floor ? r->retry_after_ms : floor);
        return st == SK_OK ? send_rows(ps, rows, n) : st;
    }
    return SK_OK;
}

/*
 * schedule.max_events_per_s, a token bucket holding one batch: a batch of n
 * events leaves no earlier than the previous one's time plus n / rate, so the
 * rate holds over any stretch longer than one batch.
 */
static void pace(pass *ps, size_t n)
{
    int64_t rate = ps->o->max_events_per_s;
    if (rate <= 0)
        return;
    int64_t now = sk__mono_ms();
    if (ps->pace_next_ms > now)
        wait_ms(ps, ps->pace_next_ms - now);
    int64_t from = ps->pace_next_ms > now ? ps->pace_next_ms : now;
    ps->pace_next_ms = from + (int64_t)n * 1000 / rate;
}

/* One batch handed to the transport: what was sent, and the answer once completed. */
typedef struct inflight {
    pass *ps;
    sk__queue_row *rows;
    size_t n;
    sk_event *evs;
    sk_event_result *res;
    sk_batch_result *r;
    sk_batch b;
    unsigned auth_sent; /* the credentials' generation when it left (see inflight_stamp) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done; /* under mu: the completion came */
    int rc;   /* an sk_transport_rc, once done */
    int threaded;
    pthread_t thread;
    struct completions *all; /* async: the drain's lock and signal (NULL on the sync path) */
} inflight;

/* The async drain's meeting point: completions from the plugin's threads. */
typedef struct completions {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t count;   /* completions so far */
    int64_t extra;   /* completions of a batch that was already complete: a plugin bug */
} completions;

static void inflight_free(inflight *f)
{
    free(f->evs);
    free(f->res);
    free(f->r);
    f->evs = NULL;
    f->res = NULL;
    f->r = NULL;
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
}

/* Builds the batch of rows[0..n); every outcome starts transient. */
static sk_status inflight_prepare(pass *ps, inflight *f, sk__queue_row *rows, size_t n)
{
    *f = (inflight){.ps = ps, .rows = rows, .n = n};
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->evs = calloc(n, sizeof *f->evs);
    f->res = calloc(n, sizeof *f->res);
    f->r = calloc(1, sizeof *f->r);
    if (!f->evs || !f->res || !f->r) {
        inflight_free(f);
        return stop_pass(ps, SK_ERR_NOMEM, "%s", "out of memory building a batch");
    }
    for (size_t i = 0; i < n; i++) {
        f->evs[i] = (sk_event){rows[i].event_id, rows[i].data, rows[i].data_len};
        f->res[i].outcome = SK_OUTCOME_TRANSIENT;
    }
    f->b = (sk_batch){.struct_size = sizeof f->b,
                      .count = (uint32_t)n,
                      .events = f->evs,
                      .deadline_ms = sk__mono_ms() + ps->o->batch_timeout_ms,
                      .batch_seq = ++ps->seq};
    f->r->struct_size = sizeof *f->r;
    f->r->count = (uint32_t)n;
    f->r->events = f->res;
    return SK_OK;
}

/* Records a completion in f: the first one counts; a second is a plugin bug, not an answer. */
static int inflight_mark_done(inflight *f, int rc)
{
    int again = f->done;
    if (!again) {
        f->rc = rc;
        f->done = 1;
    }
    return again;
}

/*
 * The completion of one batch (an sk_completion_fn): once per batch, from any
 * thread. On the async path everything happens under the drain's lock, and
 * nothing of f or the drain is touched after it is released: the drain may
 * settle, reuse or leave as soon as it sees the batch done.
 */
static void inflight_complete(void *ctx, int rc, sk_batch_result *result)
{
    (void)result; /* always f->r: the host's own */
    inflight *f = ctx;
    completions *all = f->all;
    if (all) {
        pthread_mutex_lock(&all->mu);
        all->extra += inflight_mark_done(f, rc);
        all->count++;
        pthread_cond_broadcast(&all->cv);
        pthread_mutex_unlock(&all->mu);
        return;
    }
    pthread_mutex_lock(&f->mu);
    inflight_mark_done(f, rc);
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

/*
 * Notes which credentials f leaves with, before the transport can read its
 * header: a 401 for it then refreshes only if no other batch's did meanwhile.
 */
static void inflight_stamp(inflight *f)
{
    const sk__deliver_hooks *h = f->ps->h;
    f->auth_sent = h && h->auth_generation ? h->auth_generation(h->auth_ctx) : 0;
}

/* Sends f on the calling thread and completes it. */
static void inflight_run(inflight *f)
{
    inflight_stamp(f);
    inflight_complete(f, sk__plugin_send(f->ps->p, &f->b, f->r), f->r);
}

static void *inflight_thread(void *arg)
{
    inflight_run(arg);
    return NULL;
}

/* Starts sending f on its own thread; falls back to sending it here. */
static void inflight_start(inflight *f)
{
    pace(f->ps, f->n);
    f->threaded = pthread_create(&f->thread, NULL, inflight_thread, f) == 0;
    if (!f->threaded)
        inflight_run(f);
}

/* Waits for f's completion. */
static void inflight_wait(inflight *f)
{
    pthread_mutex_lock(&f->mu);
    while (!f->done)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
    if (f->threaded)
        pthread_join(f->thread, NULL);
    f->threaded = 0;
}

/* A plain answer: every outcome can be applied without sending anything again. */
static int inflight_plain(const inflight *f)
{
    return f->rc == SK_TRANSPORT_OK && sk__plugin_hints(f->ps->p, f->r) == SK_HINT_NONE;
}

typedef struct transport_totals {
    const char *transport;
    sk__metrics_transport *t;
    size_t n, cap;
} transport_totals;

/* The plugin's counters; its levels are no counts (status shows them live). */
static void collect_total(void *ctx, const sk__plugin_metric *m)
{
    transport_totals *tt = ctx;
    if (!m->level && sk__grow((void **)&tt->t, &tt->cap, tt->n + 1, sizeof *tt->t))
        tt->t[tt->n++] = (sk__metrics_transport){tt->transport, m->name, m->value, m->instance};
}

/* Adds what one batch did to the metrics (a split batch's halves were added by their
 * own finish). A failure to count is not the pass's: the queue is settled either way. */
static void count_batch(pass *ps, int failed)
{
    if (!ps->h || !ps->h->metrics)
        return;
    const sk_drain_summary *before = &ps->counted;
    sk__metrics_batch b = {.delivered = ps->sum->synced - before->synced,
                           .duplicates = ps->sum->duplicates - before->duplicates,
                           .rejected = ps->sum->rejected - before->rejected,
                           .parked = ps->sum->parked - before->parked,
                           .failed = failed,
                           .enqueued_s = ps->acked,
                           .acknowledged = ps->nacked,
                           .now_ms = sk__wall_ms()};
    transport_totals tt = {.transport = sk__plugin_name(ps->p)};
    sk__plugin_each_metric(ps->p, collect_total, &tt);
    sk__err ignored;
    sk__metrics_record(ps->h->metrics, &b, tt.t, tt.n, &ignored);
    free(tt.t);
    ps->nacked = 0;
    ps->counted = *ps->sum;
}

/*
 * Settles one completed batch on the pass's thread (may send again: halving,
 * bisection, re-auth, Retry-After). A transport failure without a
 * transport-level status means no server answered: the scheduler's
 * "unreachable".
 */
static sk_status inflight_finish(pass *ps, inflight *f)
{
    ps->sum->batches++;
    sk_status st;
    if (f->rc == SK_TRANSPORT_CANCELLED || (f->rc != SK_TRANSPORT_OK && cancelled(ps))) {
        st = stop_pass(ps, SK_ERR_CANCELLED, "%s", "cancelled");
    } else if (f->rc != SK_TRANSPORT_OK) {
        ps->info->unreachable = f->r->status_code == 0;
        st = stop_pass(ps, SK_ERR_TRANSPORT, "%s",
                       f->r->detail[0] ? f->r->detail : "the transport failed without a reason");
    } else if (sk__plugin_hints(ps->p, f->r) != SK_HINT_NONE) {
        st = on_hints(ps, f->rows, f->n, f->r, f->auth_sent);
    } else {
        st = apply_outcomes(ps, f->rows, f->n, f->r);
    }
    /* "Refresh once, resend once" holds per batch: a batch the server took
     * with the refreshed token earns the next 401 its own refresh. */
    if (f->rc == SK_TRANSPORT_OK && !(f->r->hints & SK_HINT_REAUTHENTICATE))
        ps->reauth_refreshed = ps->reauth_resent = 0;
    count_batch(ps, f->rc != SK_TRANSPORT_OK && st == SK_ERR_TRANSPORT);
    inflight_free(f);
    return st;
}

/* Sends rows[0..n) as one batch and applies what came back, splitting as told. */
static sk_status send_rows(pass *ps, sk__queue_row *rows, size_t n)
{
    if (cancelled(ps))
        return stop_pass(ps, SK_ERR_CANCELLED, "%s", "cancelled");
    inflight f;
    sk_status st = inflight_prepare(ps, &f, rows, n);
    if (st != SK_OK)
        return st;
    inflight_run(&f);
    return inflight_finish(ps, &f);
}

/* Reads the next batch after the cursor and moves the cursor past it. 0: nothing more. */
static int peek_next(pass *ps, int64_t *cts, int64_t *cid, sk__lease *rows)
{
    if (ps->stop != SK_OK)
        return 0;
    if (cancelled(ps)) { /* also before the first batch: a cancelled pass never reads "done" */
        stop_pass(ps, SK_ERR_CANCELLED, "%s", "cancelled");
        return 0;
    }
    sk_status st = sk__queue_peek(ps->q, *cts, *cid, ps->o->max_batch_events,
                                  ps->o->max_batch_bytes, rows, ps->err);
    if (st != SK_OK) {
        stop_pass(ps, st, "queue: %s", ps->err->msg);
        return 0;
    }
    if (rows->count == 0)
        return 0;
    *cts = rows->rows[rows->count - 1].timestamp;
    *cid = rows->rows[rows->count - 1].id;
    return 1;
}

static void after_batch(pass *ps, sk__lease *rows)
{
    sk__lease_clear(rows); /* its storage serves the next batch but one */
    if (ps->h && ps->h->progress)
        ps->h->progress(ps->h->ctx, ps->sum, ps->total);
}

/*
 * The drain, two batches deep: while the transport sends batch k+1 on a
 * thread, this thread settles batch k and reads batch k+2, so SQLite and the
 * transport work at the same time. A batch whose answer needs more sending
 * (hints, failures) is handled before the next one starts, so the transport
 * never sees two calls at once.
 */
static void drain(pass *ps)
{
    sk__lease lz[2] = {{0}};
    inflight fl[2];
    int64_t cts = INT64_MIN, cid = INT64_MIN, started = 0, limit = ps->o->max_batches;
    int cur = 0, busy = peek_next(ps, &cts, &cid, &lz[cur]);
    if (busy && inflight_prepare(ps, &fl[cur], lz[cur].rows, lz[cur].count) == SK_OK) {
        inflight_start(&fl[cur]);
        started++;
    } else {
        busy = 0;
    }
    while (busy) {
        int nxt = 1 - cur;
        int more = (!limit || started < limit) && peek_next(ps, &cts, &cid, &lz[nxt]);
        inflight_wait(&fl[cur]);
        int overlap = more && inflight_plain(&fl[cur]);
        if (overlap && inflight_prepare(ps, &fl[nxt], lz[nxt].rows, lz[nxt].count) == SK_OK) {
            inflight_start(&fl[nxt]); /* sent while batch `cur` is settled below */
            started++;
            inflight_finish(ps, &fl[cur]);
            after_batch(ps, &lz[cur]);
            cur = nxt;
            continue;
        }
        inflight_finish(ps, &fl[cur]); /* may send again: nothing else is in flight */
        after_batch(ps, &lz[cur]);
        busy = more && ps->stop == SK_OK &&
               inflight_prepare(ps, &fl[nxt], lz[nxt].rows, lz[nxt].count) == SK_OK;
        if (busy) {
            inflight_start(&fl[nxt]);
            started++;
            cur = nxt;
        }
    }
    sk__lease_free_rows(&lz[0]);
    sk__lease_free_rows(&lz[1]);
}

/* ---- the async drain (SK_CAP_ASYNC) -------------------------------------- */

/* Batches the host keeps in flight at most; the plugin may take fewer (BUSY). */
#define SK__DELIVER_MAX_INFLIGHT 16

typedef enum slot_state { SLOT_FREE, SLOT_READY, SLOT_SENT } slot_state;

/* One batch of the async drain: its rows and its flight. */
typedef struct async_slot {
    slot_state state;
    int completed; /* SENT and complete when this round of the drain began */
    sk__lease rows;
    inflight f;
} async_slot;

/* Whether the plugin completed the slot's batch (its completion writes under all->mu). */
static int slot_done(async_slot *sl, completions *all)
{
    pthread_mutex_lock(&all->mu);
    int done = sl->f.done;
    pthread_mutex_unlock(&all->mu);
    return done;
}

/* Hands a prepared batch to the plugin: 1 when it is on its way (or refused,
 * which completes it at once), 0 when the plugin is BUSY (retried after a completion). */
static int async_submit(pass *ps, async_slot *sl, completions *all)
{
    sl->f.all = all;
    inflight_stamp(&sl->f);
    int rc = sk__plugin_submit(ps->p, &sl->f.b, sl->f.r, inflight_complete, &sl->f);
    if (rc == SK_TRANSPORT_BUSY)
        return 0;
    sl->state = SLOT_SENT;
    if (rc != SK_TRANSPORT_OK)
        inflight_complete(&sl->f, rc, sl->f.r); /* no completion follows: this is it */
    return 1;
}

/* Frees a slot: settles its answer, or leaves its rows queued as they are. */
static void async_release(pass *ps, async_slot *sl, int settle)
{
    if (settle) {
        inflight_finish(ps, &sl->f);
        after_batch(ps, &sl->rows);
    } else {
        inflight_free(&sl->f);
        sk__lease_clear(&sl->rows);
    }
    sl->state = SLOT_FREE;
}

/*
 * Notes which batches had completed when this round began, and returns how
 * many of them wait with an answer that needs more sending. Only those are
 * settled this round, after the transport got its room back (see drain_async).
 */
static int async_round(async_slot *sl, uint32_t n, completions *all)
{
    int held = 0;
    for (uint32_t k = 0; k < n; k++) {
        sl[k].completed = sl[k].state == SLOT_SENT && slot_done(&sl[k], all);
        held += sl[k].completed && !inflight_plain(&sl[k].f);
    }
    return held;
}

/*
 * Settles what had completed when the round began, in any order: a plain
 * answer at once; an answer that needs more sending (hints, failures) only
 * once nothing else is in flight, as the synchronous drain does (*held counts
 * those still waiting). After the pass stopped, only plain answers are
 * settled (their events are delivered); the rest stay queued.
 */
static void async_settle(pass *ps, async_slot *sl, uint32_t n, int *held)
{
    int flying = 0;
    *held = 0;
    for (uint32_t k = 0; k < n; k++) {
        if (sl[k].state != SLOT_SENT)
            continue;
        if (!sl[k].completed) /* or completed since the round began: the next round's */
            flying++;
        else if (inflight_plain(&sl[k].f))
            async_release(ps, &sl[k], 1);
        else if (ps->stop != SK_OK)
            async_release(ps, &sl[k], 0);
        else
            (*held)++;
    }
    for (uint32_t k = 0; k < n && *held && !flying; k++)
        if (sl[k].state == SLOT_SENT) {
            async_release(ps, &sl[k], 1); /* may send again: nothing else is in flight */
            (*held)--;
        }
}

/* Submits the batch refused as BUSY first, then reads and submits new ones into free
 * slots, until the plugin is full or nothing waits. */
static void async_fill(pass *ps, async_slot *sl, uint32_t n, completions *all, int64_t *cts,
                       int64_t *cid, int64_t *started)
{
    for (uint32_t k = 0; k < n && ps->stop == SK_OK; k++)
        if (sl[k].state == SLOT_READY && !async_submit(ps, &sl[k], all))
            return; /* still BUSY: the rest waits for a completion */
    for (uint32_t k = 0; k < n && ps->stop == SK_OK; k++) {
        if (sl[k].state != SLOT_FREE)
            continue;
        if (ps->o->max_batches && *started >= ps->o->max_batches)
            return;
        if (!peek_next(ps, cts, cid, &sl[k].rows))
            return;
        if (inflight_prepare(ps, &sl[k].f, sl[k].rows.rows, sl[k].rows.count) != SK_OK) {
            sk__lease_clear(&sl[k].rows);
            return;
        }
        sl[k].state = SLOT_READY;
        (*started)++;
        pace(ps, sl[k].f.n); /* once per batch: a BUSY resubmit is not charged again */
        if (!async_submit(ps, &sl[k], all))
            return;
    }
}

/*
 * The drain of an async transport: several batches in flight through
 * sk__plugin_submit, completions from the plugin's threads, each settled
 * exactly once on this thread in whatever order they come. Each round first
 * gives the transport the room its completions freed, then settles them. Rows
 * emitted while the pass runs are read after the cursor, so a streaming
 * transport sends them in the same pass.
 */
static void drain_async(pass *ps, uint32_t slots)
{
    uint32_t n = slots < SK__DELIVER_MAX_INFLIGHT ? slots : SK__DELIVER_MAX_INFLIGHT;
    async_slot sl[SK__DELIVER_MAX_INFLIGHT];
    memset(sl, 0, sizeof sl);
    completions all = {.count = 0};
    pthread_mutex_init(&all.mu, NULL);
    pthread_cond_init(&all.cv, NULL);
    int64_t cts = INT64_MIN, cid = INT64_MIN, started = 0;
    for (;;) {
        pthread_mutex_lock(&all.mu);
        int64_t seen = all.count;
        pthread_mutex_unlock(&all.mu);
        /* The transport's room first: its completions freed it, and settling takes
         * a while (a transport with one connection would idle meanwhile). */
        if (!async_round(sl, n, &all))
            async_fill(ps, sl, n, &all, &cts, &cid, &started);
        int held;
        async_settle(ps, sl, n, &held);
        if (!held)
            async_fill(ps, sl, n, &all, &cts, &cid, &started);
        int flying = 0;
        int ready = 0;
        for (uint32_t k = 0; k < n; k++) {
            flying += sl[k].state == SLOT_SENT;
            ready += sl[k].state == SLOT_READY;
        }
        if (!flying) {
            if (ready) /* BUSY with nothing in flight: it would never end */
                stop_pass(ps, SK_ERR_TRANSPORT, "%s",
                          "the transport refused a batch as busy with nothing in flight");
            break;
        }
        pthread_mutex_lock(&all.mu);
        while (all.count == seen)
            pthread_cond_wait(&all.cv, &all.mu);
        pthread_mutex_unlock(&all.mu);
    }
    for (uint32_t k = 0; k < n; k++) {
        if (sl[k].state == SLOT_READY)
            async_release(ps, &sl[k], 0);
        sk__lease_free_rows(&sl[k].rows);
    }
    if (all.extra)
        stop_pass(ps, SK_ERR_TRANSPORT, "the transport completed a batch %lld extra time(s)",
                  (long long)all.extra);
    pthread_cond_destroy(&all.cv);
    pthread_mutex_destroy(&all.mu);
}

/* Holds the drain lock, reads what waits, and drains it. */
static void drain_locked(pass *ps)
{
    int lock_fd = -1;
    sk_status st = take_drain_lock(ps->o->drain_lock_path, ps->h ? ps->h->cancel : NULL, &lock_fd,
                                   ps->err);
    sk__queue_stats qs;
    if (st == SK_OK)
        st = sk__queue_stats_get(ps->q, &qs, ps->err);
    if (st != SK_OK)
        stop_pass(ps, st, "%s", ps->err->msg);
    else {
        ps->total = qs.ready;
        uint32_t slots = sk__plugin_async_slots(ps->p);
        if (slots > 0)
            drain_async(ps, slots);
        else
            drain(ps);
    }
    if (lock_fd >= 0)
        close(lock_fd); /* releases the drain lock */
}

sk_status sk__deliver_pass(sk__queue *q, sk__plugin *p, const sk__deliver_opts *o,
                           const sk__deliver_hooks *h, sk_drain_summary *sum, sk__pass_info *info,
                           sk__err *err)
{
    memset(sum, 0, sizeof *sum);
    sk__pass_info none;
    pass ps = {.q = q, .p = p, .o = o, .h = h, .sum = sum, .info = info ? info : &none,
               .err = err, .stop = SK_OK};
    *ps.info = (sk__pass_info){0};
    if (!o->drain_lock_path)
        stop_pass(&ps, SK_ERR_INTERNAL, "%s", "a delivery pass needs the drain lock");
    else if (o->wait_first_ms > 0 && retry_after(&ps, o->wait_first_ms) != SK_OK)
        ps.info->deferred = ps.stop != SK_ERR_CANCELLED; /* nothing was attempted */
    else
        drain_locked(&ps);
    sk__queue_stats qs;
    sk__err rerr;
    if (sk__queue_stats_get(q, &qs, &rerr) == SK_OK)
        sum->remaining = qs.ready;
    free(ps.acked);
    if (ps.stop != SK_OK)
        sk__fail(err, ps.stop, "%s", sum->stop_reason);
    return ps.stop;
}
