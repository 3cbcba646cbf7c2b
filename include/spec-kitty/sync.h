/*
 * spec-kitty sync — embedding API of libspec-kitty-sync.
 *
 * Everything public starts with sk_ (types, functions) or SK_ (constants).
 * Functions return an sk_status; sk_strerror() names it, and
 * sk_last_error() gives the one-line message of the last failure on a handle.
 * Nothing in the library prints.
 */
#ifndef SPEC_KITTY_SYNC_H
#define SPEC_KITTY_SYNC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define SK_API __attribute__((visibility("default")))
#else
#define SK_API
#endif

#define SK_VERSION "0.1.0"

typedef enum sk_status {
    SK_OK = 0,
    SK_ERR_USAGE = 1,           /* bad argument */
    SK_ERR_CONFIG = 2,          /* sync.json or environment is wrong */
    SK_ERR_IO = 3,              /* file system error */
    SK_ERR_DB = 4,              /* SQLite error */
    SK_ERR_INVALID_EVENT = 5,   /* the event fails validation; nothing queued */
    SK_ERR_QUEUE_FULL = 6,      /* queue.max_events reached; nothing queued */
    SK_ERR_NOMEM = 7,
    SK_ERR_PLUGIN = 8,          /* transport could not be loaded */
    SK_ERR_AUTH = 9,            /* not authenticated */
    SK_ERR_SESSION_EXPIRED = 10,/* refresh refused: log in again */
    SK_ERR_TRANSPORT = 11,      /* the server or network failed */
    SK_ERR_PROTOCOL = 12,       /* server speaks another protocol version */
    SK_ERR_BUSY = 13,           /* another process holds what was asked for */
    SK_ERR_NOT_FOUND = 14,
    SK_ERR_CANCELLED = 15,
    SK_ERR_PERMISSION = 16,     /* a file's owner or mode is unsafe */
    SK_ERR_INTERNAL = 17
} sk_status;

/* Stable name of a status, e.g. "queue full". Never NULL. */
SK_API const char *sk_strerror(sk_status status);

typedef struct sk_sync sk_sync;

/*
 * Opens the state root (NULL: $SPEC_KITTY_HOME, else ~/.spec-kitty), creating
 * it owner-only, reading sync.json and opening (migrating) queue.db.
 * On failure *out is NULL and err (if given) holds one line.
 */
SK_API sk_status sk_open(const char *state_root, sk_sync **out, char *err, size_t err_cap);
SK_API void sk_close(sk_sync *sync);

/* One-line message of the last failure on this handle ("" if none). */
SK_API const char *sk_last_error(const sk_sync *sync);

/*
 * sk_emit_event with the vocabulary and project of sync.json: aggregate_type
 * may be NULL (derived from the type), payload_json NULL means {},
 * causation_id NULL means null.
 */
SK_API sk_status sk_emit(sk_sync *sync, const char *event_type, const char *aggregate_id,
                         const char *aggregate_type, const char *payload_json,
                         const char *causation_id, char event_id_out[27]);

/*
 * One event for sk_emit_event. Zero-initialise it, then set what you need.
 * Ids may be written in any form spec-kitty accepts (a ULID in either case;
 * for current envelopes also a UUID, hyphenated or bare): they are queued in
 * their normal form.
 */
typedef struct sk_event_spec {
    const char *event_type;     /* required, e.g. "WPStatusChanged" */
    const char *aggregate_id;   /* required, e.g. "WP01" */
    const char *aggregate_type; /* NULL: derived from the type */
    const char *payload_json;   /* NULL: {} */
    const char *causation_id;   /* NULL: null */
    int schema;                 /* 0: emit.schema of sync.json; 1 classic; 3 current (3.0.0) */
    /* Current envelopes only; NULL takes emit.* of sync.json: */
    const char *correlation_id; /* NULL: the causation id, else the event's own id */
    const char *project_uuid;
    const char *project_slug;
    const char *build_id;
} sk_event_spec;

/*
 * Builds, validates (by the rules of the envelope's vocabulary) and durably
 * enqueues one event, committed before return. On success event_id_out
 * (27 bytes) holds the new ULID.
 */
SK_API sk_status sk_emit_event(sk_sync *sync, const sk_event_spec *event, char event_id_out[27]);

typedef struct sk_queue_info {
    int64_t size;              /* events waiting (not parked) */
    int64_t parked;            /* events parked (not retried automatically) */
    int64_t oldest_timestamp;  /* enqueue time of the oldest waiting event, unix s; 0 if none */
} sk_queue_info;

SK_API sk_status sk_queue_info_get(sk_sync *sync, sk_queue_info *out);

/*
 * The metrics in the Prometheus text format (queue gauges, delivery counters kept in
 * <state root>/metrics.db by every process that delivers, the latency histogram, the
 * service's state): *text_out is malloc'd, free() it.
 */
SK_API sk_status sk_metrics_text(sk_sync *sync, char **text_out);

/* Events refused because the queue was full: how many, and when last (unix ms; 0: never). */
SK_API sk_status sk_refused_full_get(sk_sync *sync, int64_t *count, int64_t *last_ms);

typedef struct sk_drain_summary {
    int64_t synced;      /* delivered */
    int64_t duplicates;  /* server already had them */
    int64_t pending;     /* accepted, in flight server-side */
    int64_t rejected;    /* refused this pass, will be retried */
    int64_t parked;      /* parked this pass */
    int64_t remaining;   /* still waiting after the pass (parked excluded) */
    int64_t batches;
    int64_t retry_after_ms; /* largest server-requested wait seen */
    char stop_reason[512];  /* why the pass stopped early, "" if it did not */
    char stop_code[64];     /* the server's error code for it (e.g. "client-too-old"), or "" */
} sk_drain_summary;

/* Progress callback: called after each batch with the running summary. */
typedef void (*sk_progress_fn)(void *ctx, const sk_drain_summary *so_far, int64_t total);

/* Drains the whole queue now through the configured transport. */
SK_API sk_status sk_sync_now(sk_sync *sync, sk_progress_fn progress, void *progress_ctx,
                             sk_drain_summary *out);

/*
 * Asks the work running on this handle (sk_sync_now, a connectivity probe) to
 * stop soon: the transport's cancel is called at once, so a transfer in flight
 * is aborted; sk_sync_now then settles what the server already acknowledged
 * and returns SK_ERR_CANCELLED. Nothing else is lost: the rest stays queued.
 * Sticky: later delivery on this handle is cancelled too (open a new one).
 * Thread-safe and meant to be called from another thread while the work runs;
 * not async-signal-safe (a signal handler wakes a thread that calls it).
 */
SK_API void sk_sync_cancel(sk_sync *sync);

/*
 * Runs the background sync service (the same scheduler as `spec-kitty sync
 * daemon`) in a thread of this process: periodic flushes, a flush soon after
 * each sk_emit on this handle, backoff, rate limits. With control_socket the
 * service also listens on <state root>/sync.sock, so `spec-kitty sync status`
 * and emits from other processes reach it. One service per state root:
 * SK_ERR_BUSY when another process runs one.
 */
SK_API sk_status sk_service_start(sk_sync *sync, int control_socket);

/*
 * Stops the service: no new batches; the batch in flight gets deadline_ms
 * (< 0: schedule.shutdown_deadline_ms) and is then cancelled. Everything not
 * delivered stays queued. sk_close() calls it too.
 */
SK_API sk_status sk_service_stop(sk_sync *sync, int64_t deadline_ms);

#ifdef __cplusplus
}
#endif
#endif /* SPEC_KITTY_SYNC_H */
