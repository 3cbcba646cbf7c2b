/* Counters behind GET /api/v1/receiver/stats. */
#include "receiver.h"

#include "common.h"

#include <stdio.h>

void rcv__stats_batch(rcv__stats *s, int64_t received, int64_t success, int64_t duplicates,
                      int64_t rejected)
{
    pthread_mutex_lock(&s->lock);
    s->batches++;
    s->events_received += received;
    s->success += success;
    s->duplicates += duplicates;
    s->rejected += rejected;
    pthread_mutex_unlock(&s->lock);
}

void rcv__stats_response(rcv__stats *s, int status, int fault, int is_batch)
{
    pthread_mutex_lock(&s->lock);
    s->requests++;
    s->batch_requests += is_batch;
    s->faults_injected += fault;
    if (status >= 100 && status < 600)
        s->http_status[status]++;
    pthread_mutex_unlock(&s->lock);
}

/* {"200": n, ...} for the statuses seen. Caller holds the lock. */
static json_t *status_counts(const rcv__stats *s)
{
    json_t *o = json_object();
    for (int code = 100; code < 600; code++) {
        if (s->http_status[code] == 0)
            continue;
        char key[8];
        snprintf(key, sizeof key, "%d", code);
        json_object_set_new(o, key, json_integer(s->http_status[code]));
    }
    return o;
}

json_t *rcv__stats_json(rcv__app *app)
{
    rcv__stats *s = &app->stats;
    int64_t stored = rcv__store_count(app->store);
    pthread_mutex_lock(&s->lock);
    json_t *o = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:{s:I, s:I, s:I}, s:I}",
        "events_stored", (json_int_t)stored, "events_received", (json_int_t)s->events_received,
        "success", (json_int_t)s->success, "duplicates", (json_int_t)s->duplicates, "rejected",
        (json_int_t)s->rejected, "batches", (json_int_t)s->batches, "batch_requests",
        (json_int_t)s->batch_requests, "requests", (json_int_t)s->requests, "faults_injected",
        (json_int_t)s->faults_injected, "http_status", status_counts(s), "event_status", "success",
        (json_int_t)s->success, "duplicate", (json_int_t)s->duplicates, "rejected",
        (json_int_t)s->rejected, "uptime_ms", (json_int_t)(sk__wall_ms() - app->started_ms));
    pthread_mutex_unlock(&s->lock);
    return o;
}
