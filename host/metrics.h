/*
 * Metrics: counters that outlive the process that counted them (<state root>/metrics.db,
 * SQLite), and their rendering in the Prometheus text format for `spec-kitty sync
 * metrics` and the service's node_exporter textfile (metrics.textfile in sync.json).
 *
 * Every process that delivers (sync now, the service) or refuses an event adds to
 * the same counters, each batch in one small transaction of its own: a crash may lose
 * the counts of the batch in flight, never the events (those are in queue.db).
 */
#ifndef SK_HOST_METRICS_H
#define SK_HOST_METRICS_H

#include "common.h"
#include "queue.h"

typedef struct sk__metrics sk__metrics;

/* Opens (creating) <state_root>/metrics.db, to count. */
sk_status sk__metrics_open(const char *state_root, sk__metrics **out, sk__err *err);
/* Opens it read only, to show the counts: reading writes nothing. SK_ERR_NOT_FOUND
   while nothing has been counted yet. */
sk_status sk__metrics_open_reader(const char *state_root, sk__metrics **out, sk__err *err);
void sk__metrics_close(sk__metrics *m);

/* Upper bounds of the emit->acknowledged latency buckets, in seconds (+Inf implied).
 * Events carry their enqueue time in whole seconds. */
#define SK__METRICS_LATENCY_BUCKETS 10
extern const int64_t sk__metrics_latency_le_s[SK__METRICS_LATENCY_BUCKETS];

/* What one batch did. */
typedef struct sk__metrics_batch {
    int64_t delivered, duplicates, rejected, parked;
    int failed;                /* the attempt failed as a whole: it will be retried */
    const int64_t *enqueued_s; /* enqueue times of the acknowledged events */
    size_t acknowledged;       /* entries in enqueued_s */
    int64_t now_ms;            /* when the answer came */
} sk__metrics_batch;

/* A transport's own counter (metric_add). */
typedef struct sk__metrics_transport {
    const char *transport; /* plugin name */
    const char *name;      /* counter name as the plugin gave it */
    int64_t value;
    uint64_t instance; /* the plugin load that counted it (recording only) */
} sk__metrics_transport;

/*
 * Adds one batch, in one transaction, with the transport's counters as the plugin
 * instance reports them (running totals since it was loaded): the handle remembers
 * what it already added per load, so only the growth since its last record is
 * counted, and a new load counts from 0.
 */
sk_status sk__metrics_record(sk__metrics *m, const sk__metrics_batch *b,
                             const sk__metrics_transport *t, size_t nt, sk__err *err);

/* Counts n events refused because the queue was full, at now_ms. */
sk_status sk__metrics_refused_full(sk__metrics *m, int64_t n, int64_t now_ms, sk__err *err);

/* The counters as they stand. */
typedef struct sk__metrics_counts {
    int64_t delivered, duplicates, rejected, parked, refused_full, batches, retries;
    int64_t refused_full_last_ms;                            /* 0: never */
    int64_t latency_bucket[SK__METRICS_LATENCY_BUCKETS + 1]; /* per bucket, last is +Inf */
    int64_t latency_sum_ms, latency_count;
    sk__metrics_transport *transport; /* owned: free with sk__metrics_counts_free */
    size_t ntransport;
} sk__metrics_counts;

/* Reads the counters; a NULL handle (nothing counted yet) reads all 0. */
sk_status sk__metrics_load(sk__metrics *m, sk__metrics_counts *out, sk__err *err);
void sk__metrics_counts_free(sk__metrics_counts *c);

/* What is measured at the time of rendering. */
typedef struct sk__metrics_gauges {
    int64_t queue_events, parked_events, oldest_age_s;
    int service_up;
    int64_t service_uptime_s;
} sk__metrics_gauges;

/* The Prometheus text exposition (version 0.0.4), malloc'd; NULL when out of memory. */
char *sk__metrics_render(const sk__metrics_counts *c, const sk__metrics_gauges *g);

/*
 * The exposition of everything at now_ms: the counters of m, the queue's gauges from q
 * and the service's state (service_up, its uptime). *out is malloc'd.
 */
sk_status sk__metrics_text(sk__metrics *m, sk__queue *q, int service_up, int64_t uptime_s,
                           int64_t now_ms, char **out, sk__err *err);

/* Writes text to path atomically (readable by others: node_exporter runs as its own user). */
sk_status sk__metrics_write_textfile(const char *path, const char *text, sk__err *err);

#endif
