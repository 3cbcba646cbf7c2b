/*
 * A scripted transport for tests: answers each outcome and batch hint on
 * demand, so every row of the host's delivery policy is testable without a
 * network. Built against transport.h only, like any third-party plugin.
 *
 * options (all optional):
 *   "steps":  [ {rc, hints, retry_after_ms, detail, outcome, status_code}, ... ]  one per send()
 *             rc: "ok" | "failed" | "cancelled"; hints: ["retry_after", "reauthenticate",
 *             "too_large", "poisoned", "protocol_mismatch", or raw bits as a number];
 *             outcome: for every event
 *   "outcomes": {"<event_id>": "rejected" | "permanent" | "pending" | "duplicate" | "transient"}
 *   "poison":  ["<event_id>", ...]   a batch holding one answers POISONED (unless alone: rejected)
 *   "max_events": N                  a batch with more events answers TOO_LARGE
 *   "too_large_ids": [...]           a batch holding one answers TOO_LARGE
 *   "record": "/path"                appends "<batch_seq> <event_id>\n" for every event sent
 *   "hang_ms": N                     each send waits N ms (cancel() cuts it short)
 *
 * Built a second time as scripted_async (SCRIPTED_ASYNC): SK_CAP_ASYNC, submit()
 * answers like send() but holds the completion for a worker thread, which
 * completes held batches in REVERSE submit order once "slots" (default 4) are
 * held and one more submit was answered BUSY (metric "busy"), or 300 ms pass
 * without a submit (the tail of a drain; long enough for a loaded machine). "hold": true keeps every completion until cancel(),
 * which completes them all CANCELLED at once.
 *
 * Built a third time as scripted_stream (SCRIPTED_STREAM): SK_CAP_STREAMING and
 * SK_CAP_PROBE, a stand-in for h2-stream whose server is up only while the file
 * "online_file" exists: until then every send fails (nothing recorded) and the
 * probe answers unreachable. It records to "stream_record" instead of "record",
 * so a test tells its sends from those of a scripted fallback.
 */
#include <spec-kitty/transport.h>

#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef SCRIPTED_ASYNC
#include <pthread.h>
#endif

#ifdef SCRIPTED_ASYNC
/* A submitted batch whose completion is held back. */
typedef struct held {
    struct held *next;
    sk_batch_result *r;
    sk_completion_fn done;
    void *ctx;
    int rc;
} held;
#endif

typedef struct scripted {
    const sk_host_api *host;
    json_t *opts;
    size_t step;
    atomic_int cancelled;
#ifdef SCRIPTED_ASYNC
    pthread_t worker;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    held *held; /* newest first: completing from the head reverses the order */
    int nheld;
    int stop;
    int64_t last_submit_ms;
    int busy_seen; /* a submit was answered BUSY since the last release */
#endif
} scripted;

#ifdef SCRIPTED_ASYNC
static void *async_worker(void *arg);
#endif

static int create(const sk_host_api *host, void **self, char *err, size_t cap)
{
    scripted *s = calloc(1, sizeof *s);
    json_error_t jerr;
    if (!s) {
        snprintf(err, cap, "out of memory");
        return 1;
    }
    s->host = host;
    s->opts = json_loads(host->option_json(host->host_ctx), 0, &jerr);
    if (!s->opts) {
        snprintf(err, cap, "options: %s", jerr.text);
        free(s);
        return 1;
    }
    atomic_init(&s->cancelled, 0);
#ifdef SCRIPTED_ASYNC
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_create(&s->worker, NULL, async_worker, s);
#endif
    *self = s;
    return 0;
}

static void destroy(void *self)
{
    scripted *s = self;
#ifdef SCRIPTED_ASYNC
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->worker, NULL);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
#endif
    json_decref(s->opts);
    free(s);
}

static int outcome_of(const char *name)
{
    static const char *names[] = {"delivered", "duplicate", "pending",
                                  "rejected",  "permanent", "transient"};
    for (int i = 0; i < 6; i++)
        if (name && strcmp(name, names[i]) == 0)
            return i;
    return SK_OUTCOME_DELIVERED;
}

static uint32_t hints_of(const json_t *list)
{
    static const char *names[] = {"retry_after", "reauthenticate", "too_large", "poisoned",
                                  "protocol_mismatch"};
    uint32_t bits = 0;
    size_t i;
    json_t *h;
    json_array_foreach(list, i, h)
    {
        if (json_is_integer(h)) /* raw bits, for hints a host may not know */
            bits |= (uint32_t)json_integer_value(h);
        for (int b = 0; b < 5; b++)
            if (json_is_string(h) && strcmp(json_string_value(h), names[b]) == 0)
                bits |= 1u << b;
    }
    return bits;
}

static int listed(const json_t *list, const char *id)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i,
                       v) if (json_is_string(v) && strcmp(json_string_value(v), id) == 0) return 1;
    return 0;
}

#ifdef SCRIPTED_STREAM
#define RECORD_KEY "stream_record"
#else
#define RECORD_KEY "record"
#endif

static void record(scripted *s, const sk_batch *b)
{
    const char *path = json_string_value(json_object_get(s->opts, RECORD_KEY));
    FILE *f = path ? fopen(path, "a") : NULL;
    if (!f)
        return;
    for (uint32_t i = 0; i < b->count; i++)
        fprintf(f, "%llu %s\n", (unsigned long long)b->batch_seq, b->events[i].event_id);
    fclose(f);
}

static int wait_or_cancel(scripted *s, int64_t ms, int64_t deadline_ms)
{
    int64_t until = s->host->now_ms(s->host->host_ctx) + ms;
    while (!atomic_load(&s->cancelled)) {
        int64_t now = s->host->now_ms(s->host->host_ctx);
        if (now >= until || now >= deadline_ms)
            return 0;
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 1;
}

/* Applies the next scripted step, if any; returns 1 when it decided the answer. */
static int apply_step(scripted *s, const sk_batch *b, sk_batch_result *r, int *rc)
{
    json_t *step = json_array_get(json_object_get(s->opts, "steps"), s->step);
    if (!step)
        return 0;
    s->step++;
    const char *rcs = json_string_value(json_object_get(step, "rc"));
    *rc = rcs && strcmp(rcs, "failed") == 0      ? SK_TRANSPORT_FAILED
          : rcs && strcmp(rcs, "cancelled") == 0 ? SK_TRANSPORT_CANCELLED
                                                 : SK_TRANSPORT_OK;
    r->hints = hints_of(json_object_get(step, "hints"));
    r->retry_after_ms = json_integer_value(json_object_get(step, "retry_after_ms"));
    r->status_code = (int32_t)json_integer_value(json_object_get(step, "status_code"));
    const char *detail = json_string_value(json_object_get(step, "detail"));
    snprintf(r->detail, sizeof r->detail, "%s", detail ? detail : "");
    int outcome = outcome_of(json_string_value(json_object_get(step, "outcome")));
    if (!json_object_get(step, "outcome") && r->hints)
        outcome = SK_OUTCOME_TRANSIENT;
    for (uint32_t i = 0; i < b->count; i++)
        r->events[i].outcome = outcome;
    return 1;
}

#ifdef SCRIPTED_STREAM
/* The stand-in server is up while the online_file exists. */
static int online(const scripted *s)
{
    const char *path = json_string_value(json_object_get(s->opts, "online_file"));
    return path && access(path, F_OK) == 0;
}

static int probe(void *self, int64_t deadline_ms, char *reason, size_t cap)
{
    (void)deadline_ms;
    int up = online(self);
    snprintf(reason, cap, "scripted_stream: %s", up ? "online" : "offline");
    return up ? SK_PROBE_CONNECTED : SK_PROBE_UNREACHABLE;
}
#endif

static int send_batch(void *self, const sk_batch *b, sk_batch_result *r)
{
    scripted *s = self;
    if (atomic_load(&s->cancelled))
        return SK_TRANSPORT_CANCELLED;
#ifdef SCRIPTED_STREAM
    if (!online(s)) {
        snprintf(r->detail, sizeof r->detail, "scripted_stream: offline");
        return SK_TRANSPORT_FAILED;
    }
#endif
    record(s, b);
    int64_t hang = json_integer_value(json_object_get(s->opts, "hang_ms"));
    if (hang > 0 && wait_or_cancel(s, hang, b->deadline_ms))
        return SK_TRANSPORT_CANCELLED;
    s->host->metric_add(s->host->host_ctx, "requests", 1);
    if (SK_HOST_API_HAS(s->host, metric_set)) /* a level: never a counter in metrics.db */
        s->host->metric_set(s->host->host_ctx, "last_batch_events", b->count);
    int rc = SK_TRANSPORT_OK;
    if (apply_step(s, b, r, &rc))
        return rc;
    json_t *max = json_object_get(s->opts, "max_events");
    int too_large = json_is_integer(max) && b->count > (uint32_t)json_integer_value(max);
    int poisoned = 0;
    for (uint32_t i = 0; i < b->count; i++) {
        const char *id = b->events[i].event_id;
        too_large |= listed(json_object_get(s->opts, "too_large_ids"), id);
        poisoned |= listed(json_object_get(s->opts, "poison"), id);
        const char *o =
            json_string_value(json_object_get(json_object_get(s->opts, "outcomes"), id));
        r->events[i].outcome = outcome_of(o);
        if (o)
            snprintf(r->events[i].message, sizeof r->events[i].message, "scripted %s", o);
    }
    if (too_large) {
        r->hints = SK_HINT_TOO_LARGE;
        snprintf(r->detail, sizeof r->detail, "scripted: batch of %u is too large", b->count);
    } else if (poisoned) {
        r->hints = SK_HINT_POISONED;
        snprintf(r->detail, sizeof r->detail, "scripted: bad event in batch");
    }
    if (r->hints)
        for (uint32_t i = 0; i < b->count; i++)
            r->events[i].outcome = SK_OUTCOME_TRANSIENT;
    return SK_TRANSPORT_OK;
}

static void cancel(void *self)
{
    scripted *s = self;
    atomic_store(&s->cancelled, 1);
#ifdef SCRIPTED_ASYNC
    pthread_mutex_lock(&s->mu);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
#endif
}

#ifdef SCRIPTED_ASYNC
static int64_t opt_int(const scripted *s, const char *key, int64_t dflt)
{
    json_t *v = json_object_get(s->opts, key);
    return json_is_integer(v) ? json_integer_value(v) : dflt;
}

/* Time to complete what is held: cancel, a full set, or a quiet moment. */
static int release_due(scripted *s, int64_t now)
{
    if (!s->nheld)
        return 0;
    if (atomic_load(&s->cancelled))
        return 1;
    if (json_is_true(json_object_get(s->opts, "hold")))
        return 0;
    /* A full set goes once a submit was refused BUSY, so that a host filling its
     * slots always meets BUSY; a quiet moment releases whatever is held. */
    return (s->nheld >= opt_int(s, "slots", 4) && s->busy_seen) || now - s->last_submit_ms >= 300;
}

static void *async_worker(void *arg)
{
    scripted *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        int64_t now = s->host->now_ms(s->host->host_ctx);
        if (!release_due(s, now)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 5 * 1000000L;
            ts.tv_sec += ts.tv_nsec / 1000000000L;
            ts.tv_nsec %= 1000000000L;
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
            continue;
        }
        held *list = s->held;
        s->held = NULL;
        s->nheld = 0;
        s->busy_seen = 0;
        int cancelled = atomic_load(&s->cancelled);
        pthread_mutex_unlock(&s->mu);
        while (list) { /* newest first: the reverse of the submit order */
            held *h = list;
            list = h->next;
            h->done(h->ctx, cancelled ? SK_TRANSPORT_CANCELLED : h->rc, h->r);
            free(h);
        }
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static int submit_batch(void *self, const sk_batch *b, sk_batch_result *r, sk_completion_fn done,
                        void *ctx)
{
    scripted *s = self;
    if (atomic_load(&s->cancelled))
        return SK_TRANSPORT_CANCELLED;
    pthread_mutex_lock(&s->mu);
    int busy = s->nheld >= opt_int(s, "slots", 4);
    s->busy_seen |= busy;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (busy) {
        s->host->metric_add(s->host->host_ctx, "busy", 1);
        return SK_TRANSPORT_BUSY;
    }
    held *h = calloc(1, sizeof *h);
    if (!h)
        return SK_TRANSPORT_FAILED;
    *h = (held){.r = r, .done = done, .ctx = ctx, .rc = send_batch(self, b, r)};
    pthread_mutex_lock(&s->mu);
    h->next = s->held;
    s->held = h;
    s->nheld++;
    s->last_submit_ms = s->host->now_ms(s->host->host_ctx);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return SK_TRANSPORT_OK;
}
#endif

static const sk_option_def OPTIONS[] = {
    {"steps", "array", "[]", "answers for successive sends"},
    {"outcomes", "object", "{}", "per-event outcome by event_id"},
    {"record", "string", "", "file that receives every event sent"},
    {NULL, NULL, NULL, NULL},
};

static const sk_transport_desc DESC = {
    .struct_size = sizeof(sk_transport_desc),
    .abi_major = SK_TRANSPORT_ABI_MAJOR,
    .abi_minor = SK_TRANSPORT_ABI_MINOR,
#ifdef SCRIPTED_ASYNC
    .name = "scripted_async",
    .capabilities = SK_CAP_SYNC | SK_CAP_ASYNC,
    .max_in_flight = 8,
    .submit = submit_batch,
#elif defined(SCRIPTED_STREAM)
    .name = "scripted_stream",
    .capabilities = SK_CAP_SYNC | SK_CAP_STREAMING | SK_CAP_PROBE,
    .probe = probe,
#else
    .name = "scripted",
    .capabilities = SK_CAP_SYNC,
#endif
    .version = "1.0.0",
    .description = "answers outcomes and hints on demand (tests)",
    .create = create,
    .destroy = destroy,
    .send = send_batch,
    .cancel = cancel,
    .options = OPTIONS,
};

SK_TRANSPORT_DEFINE_ENTRY_V1(DESC)
