/*
 * nats-jetstream: a spec-kitty transport that publishes every event into a
 * NATS JetStream stream. It is written as a third party writes one: against
 * the installed SDK (spec-kitty/transport.h through pkg-config) and Debian's
 * libnats, nothing else of spec-kitty.
 *
 * Each event is one message on `subject` with the header Nats-Msg-Id set to
 * its event_id, published with js_PublishMsgAsync; JetStream's duplicate
 * window then drops a resend. The per-message ack decides the outcome:
 *
 *   stored                          -> DELIVERED
 *   stored before (Duplicate)       -> DUPLICATE
 *   larger than the stream allows   -> REJECTED_PERMANENT (it will never fit: park it)
 *   another stream or permission
 *   error (limits reached with
 *   discard-new, wrong stream, publish
 *   not permitted, ...)             -> REJECTED (an operator can fix the stream or
 *                                      the account; the host parks the event after
 *                                      its retry limit)
 *   no ack by the deadline, no
 *   responders, connection lost,
 *   cluster between leaders         -> TRANSIENT (kept, sent again, deduplicated)
 *
 * Threads: the host thread publishes (send/submit); libnats' threads deliver
 * acks (on_ack) and connection events; one completer thread of ours finishes
 * batches (all answered, deadline, cancel, connection lost) and calls the
 * host's completion outside our lock. send() is submit() plus a wait, so both
 * paths share every line of the outcome logic.
 */
#include "nj_config.h"

#include <jansson.h>
#include <nats/nats.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NJ_VERSION "1.0.0"
#define NJ_MSG_ID "Nats-Msg-Id"
#define NJ_MAX_IN_FLIGHT 4
/* Longest sleep of the completer: deadlines are checked at least this often. */
#define NJ_TICK_MS 200

/* One accepted batch, from submit until its last message left libnats. */
typedef struct nj_job {
    const sk_batch *batch;
    sk_batch_result *result;
    sk_completion_fn done;
    void *cb_ctx;
    uint32_t unanswered; /* events with no outcome yet (published or not) */
    uint32_t answered;   /* events with an answer from JetStream */
    uint32_t live;       /* messages still owned by libnats (each gets one on_ack) */
    int publishing;      /* submit is still reading batch->events */
    int finished;        /* outcome final: result is no longer ours */
    int done_called;
    int rc;
    char note[160]; /* why events stayed transient, for result->detail */
    struct nj_job *next;
} nj_job;

/* natsMsg* -> (job, index): libnats hands the published message back to on_ack. */
typedef struct nj_slot {
    natsMsg *msg;
    nj_job *job;
    uint32_t index;
} nj_slot;

typedef struct nj_transport {
    const sk_host_api *host;
    nj_config cfg;
    natsOptions *opts;
    natsConnection *nc;
    jsCtx *js;
    int stream_ready;
    pthread_mutex_t conn_mu; /* connecting (host threads only) */

    pthread_mutex_t mu; /* everything below */
    pthread_cond_t wake;
    pthread_t completer;
    int completer_started;
    int stopping;
    nj_job *active; /* accepted, not finished */
    nj_job *ready;  /* finished, completion not yet called (FIFO) */
    nj_job **ready_tail;
    nj_slot *slots;
    size_t slot_mask;
    int64_t live; /* messages owned by libnats */
    int lost;     /* the connection dropped since the active jobs started */
    char permission_error[200];
    atomic_int cancelled;
} nj_transport;

/* Live instances: the last one to go closes libnats and joins its threads. */
static atomic_int nj_instances;

/* ---- the message table (open addressing, backward-shift deletion) ---- */

static size_t slot_home(const nj_transport *t, const natsMsg *m)
{
    uint64_t x = (uint64_t)(uintptr_t)m;
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 32;
    return (size_t)x & t->slot_mask;
}

static int slot_put(nj_transport *t, natsMsg *m, nj_job *j, uint32_t index)
{
    if ((size_t)t->live >= t->slot_mask) /* keep one hole: probes end */
        return -1;
    size_t i = slot_home(t, m);
    while (t->slots[i].msg)
        i = (i + 1) & t->slot_mask;
    t->slots[i] = (nj_slot){m, j, index};
    t->live++;
    j->live++;
    return 0;
}

/* Removes m's entry into *out; 0 when m is not in the table. */
static int slot_take(nj_transport *t, const natsMsg *m, nj_slot *out)
{
    size_t i = slot_home(t, m);
    while (t->slots[i].msg && t->slots[i].msg != m)
        i = (i + 1) & t->slot_mask;
    if (!t->slots[i].msg)
        return 0;
    *out = t->slots[i];
    for (size_t j = (i + 1) & t->slot_mask; t->slots[j].msg; j = (j + 1) & t->slot_mask) {
        size_t home = slot_home(t, t->slots[j].msg);
        /* Move j into the hole at i unless its home lies cyclically in (i, j]. */
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            t->slots[i] = t->slots[j];
            i = j;
        }
    }
    t->slots[i] = (nj_slot){0};
    t->live--;
    out->job->live--;
    return 1;
}

/* ---- jobs ---- */

/* Frees j once its completion ran and libnats returned its last message. */
static void job_release_locked(nj_job *j)
{
    if (j->done_called && j->live == 0 && !j->publishing)
        free(j);
}

static void job_unlink_locked(nj_transport *t, nj_job *j)
{
    for (nj_job **p = &t->active; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            return;
        }
}

/* Makes j's outcome final and queues its completion (under mu). */
static void job_finish_locked(nj_transport *t, nj_job *j, int rc)
{
    if (j->finished)
        return;
    job_unlink_locked(t, j);
    j->finished = 1;
    j->rc = rc;
    sk_batch_result *r = j->result;
    if (rc == SK_TRANSPORT_OK && j->answered == 0) {
        /* Nothing is known about any event: say so as a failure the host shows. */
        j->rc = SK_TRANSPORT_FAILED;
        for (uint32_t i = 0; i < r->count; i++)
            r->events[i].outcome = SK_OUTCOME_TRANSIENT;
    }
    if (j->rc == SK_TRANSPORT_CANCELLED)
        nj_fmt(r->detail, sizeof r->detail, "cancelled");
    else if (j->note[0])
        nj_fmt(r->detail, sizeof r->detail, "%u of %u events answered by JetStream; %s",
               j->answered, r->count, j->note);
    j->next = NULL;
    *t->ready_tail = j;
    t->ready_tail = &j->next;
    pthread_cond_broadcast(&t->wake);
}

/* Finishes every active job whose deadline passed, or all of them after cancel
 * or a lost connection. A job still being published is left to submit. */
static void jobs_expire_locked(nj_transport *t, int64_t now)
{
    int cancelled = atomic_load(&t->cancelled);
    nj_job *j = t->active;
    while (j) {
        nj_job *next = j->next;
        if (!j->publishing) {
            if (cancelled)
                job_finish_locked(t, j, SK_TRANSPORT_CANCELLED);
            else if (t->lost || now >= j->batch->deadline_ms) {
                if (!j->note[0])
                    nj_fmt(j->note, sizeof j->note, "%s",
                           t->lost ? "the connection to NATS was lost"
                                   : "no ack from JetStream by the batch deadline");
                job_finish_locked(t, j, SK_TRANSPORT_OK);
            }
        }
        j = next;
    }
    if (!t->active)
        t->lost = 0; /* the next batch starts on whatever connection libnats has now */
}

static int64_t nj_next_deadline_locked(const nj_transport *t)
{
    int64_t next = INT64_MAX;
    for (const nj_job *j = t->active; j; j = j->next)
        if (j->batch->deadline_ms < next)
            next = j->batch->deadline_ms;
    return next;
}

static void cond_wait_ms(pthread_cond_t *c, pthread_mutex_t *m, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(c, m, &ts);
}

/* The completer: finishes expired jobs and calls completions outside the lock. */
static void *completer_main(void *arg)
{
    nj_transport *t = arg;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        int64_t now = t->host->now_ms(t->host->host_ctx);
        jobs_expire_locked(t, now);
        while (t->ready) {
            nj_job *j = t->ready;
            t->ready = j->next;
            if (!t->ready)
                t->ready_tail = &t->ready;
            pthread_mutex_unlock(&t->mu);
            j->done(j->cb_ctx, j->rc, j->result);
            pthread_mutex_lock(&t->mu);
            j->done_called = 1;
            job_release_locked(j);
        }
        if (t->stopping && !t->active)
            break;
        if (!t->active) { /* idle: no deadline to watch, no wake-ups */
            pthread_cond_wait(&t->wake, &t->mu);
            continue;
        }
        int64_t wait = nj_next_deadline_locked(t) - now;
        cond_wait_ms(&t->wake, &t->mu, wait < 1 ? 1 : wait > NJ_TICK_MS ? NJ_TICK_MS : wait);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* ---- acks ---- */

static int js_error_transient(jsErrCode code)
{
    switch ((int)code) {
    case JSClusterIncompleteErr:
    case JSClusterNoPeersErr:
    case JSClusterNotAssignedErr:
    case JSClusterNotAvailErr:
    case JSClusterNotLeaderErr:
    case JSRaftGeneralErr:
        return 1; /* the cluster is electing or moving the stream: it passes */
    default:
        return 0;
    }
}

/* Writes one event's outcome from its ack (under mu, job not finished). */
static void record_ack(nj_transport *t, nj_job *j, uint32_t i, const jsPubAck *pa,
                       const jsPubAckErr *pae)
{
    sk_event_result *e = &j->result->events[i];
    if (pa) {
        e->outcome = pa->Duplicate ? SK_OUTCOME_DUPLICATE : SK_OUTCOME_DELIVERED;
        j->answered++;
        t->permission_error[0] = '\0'; /* publishing is permitted (again) */
        return;
    }
    const char *text = pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err);
    if (pae->Err == NATS_TIMEOUT && t->permission_error[0]) {
        /* The server drops a message it does not permit and says so on the connection. */
        e->outcome = SK_OUTCOME_REJECTED;
        nj_fmt(e->message, sizeof e->message, "%s", t->permission_error);
        j->answered++;
    } else if (pae->Err == NATS_ERR && pae->ErrCode && !js_error_transient(pae->ErrCode)) {
        e->outcome = pae->ErrCode == JSStreamMessageExceedsMaximumErr
                         ? SK_OUTCOME_REJECTED_PERMANENT
                         : SK_OUTCOME_REJECTED;
        nj_fmt(e->message, sizeof e->message, "JetStream error %d: %s", (int)pae->ErrCode, text);
        j->answered++;
    } else {
        nj_fmt(j->note, sizeof j->note, "%s%s", text,
               pae->Err == NATS_NO_RESPONDERS
                   ? " (no stream on the subject, or its leader is being elected)"
                   : "");
    }
}

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    nj_transport *t = closure;
    nj_slot s;
    pthread_mutex_lock(&t->mu);
    if (slot_take(t, msg, &s)) {
        nj_job *j = s.job;
        if (!j->finished) {
            record_ack(t, j, s.index, pa, pae);
            if (--j->unanswered == 0 && !j->publishing)
                job_finish_locked(t, j, SK_TRANSPORT_OK);
        } else {
            job_release_locked(j);
        }
    }
    pthread_mutex_unlock(&t->mu);
    natsMsg_Destroy(msg);
}

/* ---- connection events (libnats' callback thread) ---- */

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    nj_transport *t = closure;
    pthread_mutex_lock(&t->mu);
    t->lost = 1;
    pthread_cond_broadcast(&t->wake);
    pthread_mutex_unlock(&t->mu);
}

/* Asynchronous errors of the connection. A publish permission violation comes once
 * per message: it is kept for the outcome of the messages it drops, logged once. */
static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)sub;
    nj_transport *t = closure;
    const char *text = NULL;
    natsConnection_GetLastError(nc, &text);
    int repeated = 0;
    if (err == NATS_NOT_PERMITTED && text && strstr(text, "Publish")) {
        pthread_mutex_lock(&t->mu);
        repeated = strncmp(t->permission_error, text, sizeof t->permission_error - 1) == 0;
        nj_fmt(t->permission_error, sizeof t->permission_error, "%s", text);
        pthread_mutex_unlock(&t->mu);
    }
    if (!repeated)
        t->host->log(t->host->host_ctx, SK_LOG_WARN, "%s", text ? text : natsStatus_GetText(err));
}

/* ---- connecting ---- */

/* "what: libnats' last error", without the "(file.c:123): " it starts with. */
static void nats_text(char *buf, size_t cap, natsStatus s, const char *what)
{
    natsStatus last = NATS_OK;
    const char *text = nats_GetLastError(&last);
    if (text && *text == '(' && strstr(text, "): "))
        text = strstr(text, "): ") + 3;
    nj_fmt(buf, cap, "%s: %s", what, text && *text ? text : natsStatus_GetText(s));
}

/* Why connecting failed, in a line that says what to check when it was TLS. */
static void connect_error_text(const nj_transport *t, natsStatus s, char *err, size_t cap)
{
    const char *ca = t->cfg.tls_ca;
    if (s == NATS_SECURE_CONNECTION_WANTED) {
        nj_fmt(err, cap, "cannot connect to NATS: the server does not offer TLS, which %s requires",
               ca ? "options.tls_ca" : "a tls:// URL in options.servers");
        return;
    }
    char why[SK_BATCH_DETAIL_MAX];
    nats_text(why, sizeof why, s, "cannot connect to NATS");
    if (s != NATS_SSL_ERROR) {
        nj_fmt(err, cap, "%s", why);
        return;
    }
    /* Most often the certificate: signed by another CA, or for another host. */
    nj_fmt(err, cap,
           "%s (TLS: the server's certificate must be signed by a CA in %s%s and name the "
           "host of its URL)",
           why, ca ? "options.tls_ca " : "the system's trust store", ca ? ca : "");
}

/* Builds the stream's subject filter: {team_slug} becomes a wildcard token. */
static char *stream_subject(const char *subject)
{
    const char *at = strstr(subject, NJ_SLUG_FIELD);
    if (!at)
        return strdup(subject);
    size_t head = (size_t)(at - subject), tail = strlen(at + strlen(NJ_SLUG_FIELD));
    char *s = malloc(head + 1 + tail + 1);
    if (s)
        sprintf(s, "%.*s*%s", (int)head, subject, at + strlen(NJ_SLUG_FIELD));
    return s;
}

/* create_stream: adds the stream; an existing one is kept as it is. */
static int ensure_stream(nj_transport *t, char *err, size_t cap)
{
    char *subject = stream_subject(t->cfg.subject);
    if (!subject) {
        nj_fmt(err, cap, "out of memory");
        return -1;
    }
    const char *subjects[] = {subject};
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = t->cfg.stream;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Replicas = t->cfg.replicas;
    sc.Duplicates = t->cfg.duplicate_window_s * 1000000000LL; /* nanoseconds */
    jsErrCode code = 0;
    jsStreamInfo *si = NULL;
    natsStatus s = js_AddStream(&si, t->js, &sc, NULL, &code);
    jsStreamInfo_Destroy(si);
    free(subject);
    if (s == NATS_OK || code == JSStreamNameExistErr)
        return 0;
    nats_text(err, cap, s, "cannot create the stream");
    return -1;
}

static void disconnect(nj_transport *t)
{
    jsCtx_Destroy(t->js);
    natsConnection_Destroy(t->nc);
    t->js = NULL;
    t->nc = NULL;
    t->stream_ready = 0;
}

/* Connects (once; libnats reconnects by itself afterwards). 0, or -1 with err. */
static int nj_connect(nj_transport *t, char *err, size_t cap, natsStatus *status)
{
    *status = NATS_OK;
    if (!t->nc) {
        natsStatus s = natsConnection_Connect(&t->nc, t->opts);
        if (s != NATS_OK) {
            *status = s;
            connect_error_text(t, s, err, cap);
            t->nc = NULL;
            return -1;
        }
        jsOptions jo;
        jsOptions_Init(&jo);
        jo.PublishAsync.MaxPending = t->cfg.max_pending;
        jo.PublishAsync.AckHandler = on_ack;
        jo.PublishAsync.AckHandlerClosure = t;
        /* A batch larger than max_pending is paced by its acks rather than cut short. */
        jo.PublishAsync.StallWait = t->cfg.publish_timeout_ms;
        jo.Wait = t->cfg.publish_timeout_ms;
        s = natsConnection_JetStream(&t->js, t->nc, &jo);
        if (s != NATS_OK) {
            *status = s;
            nats_text(err, cap, s, "no JetStream context");
            disconnect(t);
            return -1;
        }
    }
    if (t->cfg.create_stream && !t->stream_ready) {
        if (ensure_stream(t, err, cap) != 0)
            return -1;
        t->stream_ready = 1;
    }
    return 0;
}

/* ---- publishing ---- */

/* Reads the top-level team_slug in place when the key occurs exactly once in the
 * compact envelope (then it is the top-level one) as null or a string without escapes.
 * 1 when done; 0 leaves it to a full parse (which costs ~7 us per envelope). */
static int slug_in_place(const char *json, char *buf, size_t cap)
{
    static const char key[] = "\"team_slug\":";
    const char *at = strstr(json, key);
    const char *v = at ? at + sizeof key - 1 : NULL;
    if (!v || strstr(v, key))
        return 0;
    if (strncmp(v, "null", 4) == 0) {
        nj_fmt(buf, cap, "local");
        return 1;
    }
    const char *end = *v == '"' ? strchr(v + 1, '"') : NULL;
    if (!end || memchr(v + 1, '\\', (size_t)(end - v - 1)))
        return 0;
    nj_fmt(buf, cap, "%.*s", (int)(end - v - 1), v + 1);
    return 1;
}

/* The envelope's team_slug as one subject token ("local" when null or absent). */
static void team_token(const sk_event *ev, char *buf, size_t cap)
{
    if (!slug_in_place(ev->json, buf, cap)) {
        json_t *env = json_loadb(ev->json, ev->json_len, 0, NULL);
        const char *slug = json_string_value(json_object_get(env, "team_slug"));
        nj_fmt(buf, cap, "%s", slug ? slug : "");
        json_decref(env);
    }
    if (!*buf)
        nj_fmt(buf, cap, "local");
    for (char *c = buf; *c; c++)
        if (*c == '.' || *c == '*' || *c == '>' || *c <= ' ' || *c == 0x7f)
            *c = '_';
}

static void event_subject(const nj_transport *t, const sk_event *ev, char *buf, size_t cap)
{
    const char *at = strstr(t->cfg.subject, NJ_SLUG_FIELD);
    if (!at) {
        nj_fmt(buf, cap, "%s", t->cfg.subject);
        return;
    }
    char token[128];
    team_token(ev, token, sizeof token);
    nj_fmt(buf, cap, "%.*s%s%s", (int)(at - t->cfg.subject), t->cfg.subject, token,
           at + strlen(NJ_SLUG_FIELD));
}

/* Publishes event i of j. 0 when libnats owns the message, else -1 with j->note. */
static int publish_one(nj_transport *t, nj_job *j, uint32_t i)
{
    const sk_event *ev = &j->batch->events[i];
    char subject[512];
    event_subject(t, ev, subject, sizeof subject);
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subject, NULL, ev->json, (int)ev->json_len);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, NJ_MSG_ID, ev->event_id);
    if (s != NATS_OK) {
        natsMsg_Destroy(m);
        nats_text(j->note, sizeof j->note, s, "cannot build a message");
        return -1;
    }
    int64_t left = j->batch->deadline_ms - t->host->now_ms(t->host->host_ctx);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = left < 1 ? 1 : left < t->cfg.publish_timeout_ms ? left : t->cfg.publish_timeout_ms;
    po.ExpectStream = t->cfg.stream;
    pthread_mutex_lock(&t->mu);
    int full = slot_put(t, m, j, i);
    pthread_mutex_unlock(&t->mu);
    if (full) {
        natsMsg_Destroy(m);
        nj_fmt(j->note, sizeof j->note, "too many messages awaiting their ack");
        return -1;
    }
    natsMsg *owned = m;
    s = js_PublishMsgAsync(t->js, &owned, &po);
    if (s == NATS_OK)
        return 0;
    nj_slot gone;
    pthread_mutex_lock(&t->mu);
    slot_take(t, m, &gone); /* a failed publish never reaches on_ack */
    pthread_mutex_unlock(&t->mu);
    natsMsg_Destroy(m);
    nats_text(j->note, sizeof j->note, s, "publish failed");
    return -1;
}

/* Refuses a batch before anything was sent: the host keeps every event. */
static int refuse(sk_batch_result *result, int rc, const char *why)
{
    nj_fmt(result->detail, sizeof result->detail, "%s", why);
    return rc;
}

static int nj_submit(void *self, const sk_batch *batch, sk_batch_result *result,
                     sk_completion_fn done, void *cb_ctx)
{
    nj_transport *t = self;
    if (atomic_load(&t->cancelled))
        return refuse(result, SK_TRANSPORT_CANCELLED, "cancelled");
    char err[SK_BATCH_DETAIL_MAX];
    natsStatus cs;
    pthread_mutex_lock(&t->conn_mu);
    int rc = nj_connect(t, err, sizeof err, &cs);
    pthread_mutex_unlock(&t->conn_mu);
    if (rc != 0)
        return refuse(result, SK_TRANSPORT_FAILED, err);
    if (natsConnection_Status(t->nc) != NATS_CONN_STATUS_CONNECTED)
        return refuse(result, SK_TRANSPORT_FAILED, "not connected to NATS (reconnecting)");
    nj_job *j = calloc(1, sizeof *j);
    if (!j)
        return refuse(result, SK_TRANSPORT_FAILED, "out of memory");
    *j = (nj_job){.batch = batch,
                  .result = result,
                  .done = done,
                  .cb_ctx = cb_ctx,
                  .unanswered = batch->count,
                  .publishing = 1};
    pthread_mutex_lock(&t->mu);
    int in_flight = 0;
    for (nj_job *a = t->active; a; a = a->next)
        in_flight++;
    /* Backpressure: the async-publish pending limit, checked before anything is sent. */
    if (in_flight >= NJ_MAX_IN_FLIGHT ||
        (t->live > 0 && t->live + batch->count > t->cfg.max_pending)) {
        pthread_mutex_unlock(&t->mu);
        free(j);
        return refuse(result, SK_TRANSPORT_BUSY, "too many messages awaiting their ack");
    }
    j->next = t->active;
    t->active = j;
    pthread_mutex_unlock(&t->mu);

    uint32_t sent = 0;
    while (sent < batch->count && !atomic_load(&t->cancelled) && publish_one(t, j, sent) == 0)
        sent++;
    /* No flush here: libnats' flusher thread writes at once, and a flush would wait for
     * the server's PONG, which a hung server never sends. */
    pthread_mutex_lock(&t->mu);
    j->unanswered -= batch->count - sent; /* never sent: stay transient */
    j->publishing = 0;
    if (sent == 0) {
        /* Nothing left this process: no completion, the host keeps the batch. */
        job_unlink_locked(t, j);
        pthread_mutex_unlock(&t->mu);
        rc = atomic_load(&t->cancelled) ? refuse(result, SK_TRANSPORT_CANCELLED, "cancelled")
                                        : refuse(result, SK_TRANSPORT_FAILED, j->note);
        free(j);
        return rc;
    }
    if (j->unanswered == 0)
        job_finish_locked(t, j, SK_TRANSPORT_OK);
    pthread_cond_broadcast(&t->wake);
    pthread_mutex_unlock(&t->mu);
    return SK_TRANSPORT_OK;
}

/* send(): submit, then wait for the completion. */
typedef struct nj_waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int rc;
} nj_waiter;

static void waiter_done(void *ctx, int rc, sk_batch_result *result)
{
    (void)result;
    nj_waiter *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->done = 1;
    w->rc = rc;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static int nj_send(void *self, const sk_batch *batch, sk_batch_result *result)
{
    nj_transport *t = self;
    nj_waiter w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    int rc;
    /* BUSY here means async batches hold the pending limit: wait for them. */
    while ((rc = nj_submit(t, batch, result, waiter_done, &w)) == SK_TRANSPORT_BUSY &&
           t->host->now_ms(t->host->host_ctx) < batch->deadline_ms) {
        pthread_mutex_lock(&t->mu);
        cond_wait_ms(&t->wake, &t->mu, 50);
        pthread_mutex_unlock(&t->mu);
    }
    if (rc != SK_TRANSPORT_OK)
        return rc == SK_TRANSPORT_BUSY ? SK_TRANSPORT_FAILED : rc;
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    return w.rc;
}

static int nj_probe(void *self, int64_t deadline_ms, char *reason, size_t reason_cap)
{
    nj_transport *t = self;
    if (atomic_load(&t->cancelled)) {
        nj_fmt(reason, reason_cap, "cancelled");
        return SK_PROBE_UNREACHABLE;
    }
    natsStatus cs;
    pthread_mutex_lock(&t->conn_mu);
    int rc = nj_connect(t, reason, reason_cap, &cs);
    pthread_mutex_unlock(&t->conn_mu);
    if (rc != 0)
        return cs == NATS_CONNECTION_AUTH_FAILED || cs == NATS_NOT_PERMITTED
                   ? SK_PROBE_NOT_AUTHENTICATED
               : cs == NATS_OK ? SK_PROBE_SERVER_UNAVAILABLE
                               : SK_PROBE_UNREACHABLE;
    jsOptions jo;
    jsOptions_Init(&jo);
    int64_t left = deadline_ms - t->host->now_ms(t->host->host_ctx);
    jo.Wait = left < 1 ? 1 : left;
    jsStreamInfo *si = NULL;
    jsErrCode code = 0;
    natsStatus s = js_GetStreamInfo(&si, t->js, t->cfg.stream, &jo, &code);
    if (s == NATS_OK) {
        nj_fmt(reason, reason_cap, "stream %s holds %llu messages", t->cfg.stream,
               (unsigned long long)si->State.Msgs);
        jsStreamInfo_Destroy(si);
        return SK_PROBE_CONNECTED;
    }
    if (code == JSStreamNotFoundErr)
        nj_fmt(reason, reason_cap, "stream %s does not exist (create it, or set create_stream)",
               t->cfg.stream);
    else
        nats_text(reason, reason_cap, s, "JetStream does not answer");
    return SK_PROBE_SERVER_UNAVAILABLE;
}

/* Ends what is in flight: the completer finishes every batch as cancelled. */
static void nj_cancel(void *self)
{
    nj_transport *t = self;
    atomic_store(&t->cancelled, 1);
    pthread_cond_broadcast(&t->wake);
}

/* libnats options from the config. 0, or -1 with err. */
static int build_nats_options(nj_transport *t, char *err, size_t cap)
{
    nj_config *c = &t->cfg;
    natsStatus s = natsOptions_Create(&t->opts);
    if (s == NATS_OK)
        s = natsOptions_SetServers(t->opts, (const char **)c->servers, c->nservers);
    if (s == NATS_OK)
        s = natsOptions_SetName(t->opts, "spec-kitty " NJ_NAME);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(t->opts, c->connect_timeout_ms);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(t->opts, -1); /* a service keeps its connection */
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(t->opts, 250);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(t->opts, on_disconnected, t);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(t->opts, on_error, t);
    if (s == NATS_OK && c->credentials_file)
        s = natsOptions_SetUserCredentialsFromFiles(t->opts, c->credentials_file, NULL);
    if (s == NATS_OK && c->token)
        s = natsOptions_SetToken(t->opts, c->token);
    if (s == NATS_OK && c->require_tls)
        s = natsOptions_SetSecure(t->opts, true);
    if (s == NATS_OK && c->tls_ca &&
        natsOptions_LoadCATrustedCertificates(t->opts, c->tls_ca) != NATS_OK) {
        nj_fmt(err, cap, NJ_NAME ": options.tls_ca %s holds no PEM CA certificate", c->tls_ca);
        return -1;
    }
    if (s != NATS_OK) {
        nats_text(err, cap, s, NJ_NAME ": bad options");
        return -1;
    }
    return 0;
}

static void nj_destroy(void *self)
{
    nj_transport *t = self;
    if (!t)
        return;
    if (t->completer_started) {
        pthread_mutex_lock(&t->mu);
        t->stopping = 1;
        pthread_cond_broadcast(&t->wake);
        pthread_mutex_unlock(&t->mu);
        pthread_join(t->completer, NULL);
    }
    disconnect(t);
    natsOptions_Destroy(t->opts);
    /* Join libnats' own threads (the host may unload this code after we return) once
     * no other instance uses the library. Should they not end, t stays allocated:
     * a late callback must not find it freed. */
    if (atomic_fetch_sub(&nj_instances, 1) == 1 && nats_CloseAndWait(5000) != NATS_OK) {
        t->host->log(t->host->host_ctx, SK_LOG_WARN, "libnats threads did not end");
        return;
    }
    /* Jobs whose messages libnats still held are ours again. */
    for (size_t i = 0; t->slots && i <= t->slot_mask; i++) {
        nj_slot *s = &t->slots[i];
        if (s->msg && --s->job->live == 0 && s->job->done_called)
            free(s->job);
    }
    free(t->slots);
    nj_config_free(&t->cfg);
    pthread_mutex_destroy(&t->conn_mu);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->wake);
    free(t);
}

static int nj_create(const sk_host_api *host, void **self, char *err, size_t err_cap)
{
    *self = NULL;
    nj_transport *t = calloc(1, sizeof *t);
    if (!t) {
        nj_fmt(err, err_cap, NJ_NAME ": out of memory");
        return -1;
    }
    t->host = host;
    atomic_fetch_add(&nj_instances, 1);
    atomic_init(&t->cancelled, 0);
    pthread_mutex_init(&t->conn_mu, NULL);
    pthread_mutex_init(&t->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->wake, &ca);
    pthread_condattr_destroy(&ca);
    t->ready_tail = &t->ready;
    /* Opened by every instance, so that the last one's nj_destroy always has a library
     * to close, even when this one fails on its options before libnats was used. */
    if (nats_Open(-1) != NATS_OK) {
        nj_fmt(err, err_cap, NJ_NAME ": libnats does not start");
        nj_destroy(t);
        return -1;
    }
    if (nj_config_read(host, &t->cfg, err, err_cap) || build_nats_options(t, err, err_cap)) {
        nj_destroy(t);
        return -1;
    }
    size_t cap = 16;
    while (cap < (size_t)t->cfg.max_pending * 2 + 2)
        cap *= 2;
    t->slots = calloc(cap, sizeof *t->slots);
    t->slot_mask = cap - 1;
    if (!t->slots || pthread_create(&t->completer, NULL, completer_main, t) != 0) {
        nj_fmt(err, err_cap, NJ_NAME ": out of memory");
        nj_destroy(t);
        return -1;
    }
    t->completer_started = 1;
    *self = t;
    return 0;
}

static const sk_transport_desc nj_desc = {
    .struct_size = sizeof(sk_transport_desc),
    .abi_major = SK_TRANSPORT_ABI_MAJOR,
    .abi_minor = SK_TRANSPORT_ABI_MINOR,
    .name = NJ_NAME,
    .version = NJ_VERSION,
    .description = "publishes each event to a NATS JetStream stream, deduplicated by event_id",
    .capabilities = SK_CAP_SYNC | SK_CAP_ASYNC | SK_CAP_STREAMING | SK_CAP_PROBE,
    .max_in_flight = NJ_MAX_IN_FLIGHT,
    .create = nj_create,
    .destroy = nj_destroy,
    .send = nj_send,
    .submit = nj_submit,
    .cancel = nj_cancel,
    .probe = nj_probe,
    .options = nj_options,
};

SK_TRANSPORT_DEFINE_ENTRY_V1(nj_desc)
