/*
 * The durable event queue: <state root>/queue.db, SQLite in WAL mode.
 *
 * Compatible with spec-kitty's own offline queue table (CONTRACT.md §2): a file
 * created and filled with spec-kitty's SQL opens unchanged, and rows inserted
 * later with spec-kitty's four-column insert stay valid. The engine adds its
 * columns with defaults (migration in place, idempotent):
 *   state       0 = ready, 1 = parked (not retried automatically)
 *   lease_owner, lease_until  a per-row lease of earlier engines' drainers ('' / 0 = none):
 *               this one drains under the drain lock and never leases, but leaves
 *               a row under a live lease to its holder
 *   last_error  the last reason it was rejected or parked
 *
 * Delivery order is (timestamp, id). Many processes may use one file at once:
 * every write is its own transaction (BEGIN IMMEDIATE) with a busy timeout.
 * One sk__queue handle is for one thread at a time (the connection is opened
 * without SQLite's mutex); open one handle per thread or process instead.
 */
#ifndef SK_HOST_QUEUE_H
#define SK_HOST_QUEUE_H

#include "common.h"

typedef struct sk__queue sk__queue;

/* Our status for an SQLite result code (busy, out of memory, I/O, else SK_ERR_DB). */
sk_status sk__sqlite_status(int rc);

typedef enum sk__durability {
    SK__DURABILITY_FULL = 0,  /* synchronous=FULL: a committed event survives power loss */
    SK__DURABILITY_NORMAL = 1 /* synchronous=NORMAL: survives a crash of the process, may lose
                                 the last commits on power loss */
} sk__durability;

typedef struct sk__queue_opts {
    int64_t max_events; /* capacity; <= 0 means 100000 */
    sk__durability durability;
    int busy_timeout_ms; /* <= 0 means 10000 */
    /* Wall clock in unix ms for leases; NULL means sk__wall_ms. Tests inject one
       to expire leases without sleeping. */
    int64_t (*clock_ms)(void *ctx);
    void *clock_ctx;
} sk__queue_opts;

/*
 * Opens (creating if needed, mode 0600) and migrates the queue file. opts may
 * be NULL (all defaults). The migration runs inside BEGIN IMMEDIATE, so
 * processes opening one file at the same time are safe; an up-to-date file
 * is not written at all.
 */
sk_status sk__queue_open(const char *path, const sk__queue_opts *opts, sk__queue **out,
                         sk__err *err);
void sk__queue_close(sk__queue *q);

/* Gives back the page cache of an idle handle (the service, between flushes). */
void sk__queue_release_memory(sk__queue *q);

/* spec-kitty's own schema of the file, verbatim (CONTRACT.md §2). */
extern const char sk__queue_spec_kitty_schema[];

/* One event to enqueue: the envelope JSON and its identity. */
typedef struct sk__queue_item {
    const char *event_id;
    const char *event_type;
    const char *data;  /* the whole envelope as JSON */
    int64_t timestamp; /* enqueue time, unix seconds */
} sk__queue_item;

/*
 * Enqueues n events in one transaction (all or none), INSERT OR REPLACE by
 * event_id. Refuses with SK_ERR_QUEUE_FULL (nothing written) when the rows in
 * the queue (ready and parked: parked rows still take room until delivered)
 * plus the new ones would exceed max_events; an event_id already queued
 * replaces its row and takes no extra room. event_id must be 1..SK__QUEUE_ID_CAP-1 chars
 * (SK_ERR_INVALID_EVENT otherwise). Committed before return.
 */
sk_status sk__queue_enqueue(sk__queue *q, const sk__queue_item *items, size_t n, sk__err *err);

/*
 * The same in steps, for more events than fit in memory at once: begin (n:
 * the events that will come, for the capacity check, 0 when not known yet;
 * takes the write lock), add them in any number of calls, then end with the
 * status so far and the events added: commits when it and the capacity check
 * are SK_OK, else rolls back and returns the failure. end must follow a
 * begin that succeeded; after a failed begin it returns s unchanged.
 */
sk_status sk__queue_enqueue_begin(sk__queue *q, size_t n, sk__err *err);
sk_status sk__queue_enqueue_add(sk__queue *q, const sk__queue_item *items, size_t n, sk__err *err);
sk_status sk__queue_enqueue_end(sk__queue *q, sk_status s, size_t n, sk__err *err);

typedef struct sk__queue_stats {
    int64_t ready; /* waiting to be sent (leased ones included) */
    int64_t parked;
    int64_t leased;           /* ready rows currently under a live lease */
    int64_t oldest_timestamp; /* of ready rows; 0 when none */
} sk__queue_stats;

sk_status sk__queue_stats_get(sk__queue *q, sk__queue_stats *out, sk__err *err);

/* Room for an event_id in a row: a ULID (26), a hyphenated UUID (36), and
 * some margin for what other writers of queue.db use. */
#define SK__QUEUE_ID_MAX 63
#define SK__QUEUE_ID_CAP (SK__QUEUE_ID_MAX + 1)

/* One row read for delivery. Strings point into the sk__lease holding it and
   stay valid until its next peek, clear or free. */
typedef struct sk__queue_row {
    int64_t id;
    char event_id[SK__QUEUE_ID_CAP];
    char *event_type;
    size_t event_type_len;
    char *data;
    size_t data_len;
    int64_t retry_count;
    int64_t timestamp; /* enqueue time (filled by sk__queue_peek) */
} sk__queue_row;

/* The rows of one batch, as sk__queue_peek read them. The storage (the row
   array, and one buffer holding every row's texts) is kept for the next peek
   into the same lease: a drain allocates per lease, not per row. */
typedef struct sk__lease {
    sk__queue_row *rows;
    size_t count;
    size_t rows_cap;
    char *text;
    size_t text_len, text_cap;
} sk__lease;

/*
 * For a drainer that holds the drain lock (so no other drainer runs): reads up
 * to max_events ready rows after the cursor (timestamp, id), oldest first,
 * whose data adds up to at most max_bytes (at least one row is always taken,
 * even if larger; 0 means no byte limit), WITHOUT marking them: no row is
 * written. The scan stops at the first row that does not fit, so order is
 * kept. Rows of a previous call in *lease are replaced (its storage is
 * reused). A row whose
 * event_id is longer than SK__QUEUE_ID_MAX chars (written by someone else)
 * cannot be carried and is parked with a reason instead. An empty result
 * (count 0) means nothing more is ready.
 */
sk_status sk__queue_peek(sk__queue *q, int64_t after_timestamp, int64_t after_id, size_t max_events,
                         size_t max_bytes, sk__lease *lease, sk__err *err);

/* Forgets the rows (count becomes 0) but keeps the storage for the next peek. */
void sk__lease_clear(sk__lease *lease);

/* Frees the rows and the storage; the lease is empty and may be used again. */
void sk__lease_free_rows(sk__lease *lease);

typedef enum sk__settle_action {
    SK__SETTLE_DELETE = 0,  /* delivered or duplicate: remove */
    SK__SETTLE_RELEASE = 1, /* transient/pending: give back, no penalty */
    SK__SETTLE_REJECT = 2,  /* retry_count + 1; parked when the new retry_count >
                               max_retries (strictly greater: max_retries = 3 allows
                               3 retries after the first attempt, 4 sends in all) */
    SK__SETTLE_PARK = 3     /* park now */
} sk__settle_action;

typedef struct sk__settlement {
    int64_t id; /* row id from the lease */
    sk__settle_action action;
    const char *reason; /* stored in last_error for REJECT/PARK; may be NULL */
} sk__settlement;

/*
 * Applies the outcomes of one batch in one transaction (deletes, releases,
 * rejections and parking together). Rows under another drainer's live lease
 * are left alone. *parked_out (may be NULL) receives how many rows were
 * parked by this call (PARK, or REJECT past max_retries).
 */
sk_status sk__queue_settle(sk__queue *q, const sk__settlement *s, size_t n, int64_t max_retries,
                           int64_t *parked_out, sk__err *err);

/* Parked rows, for `sync parked`. Calls fn for each (oldest first); stops if fn returns non-zero.
 * fn must not call back into q. last_error may be NULL. */
typedef int (*sk__parked_fn)(void *ctx, const char *event_id, const char *event_type,
                             int64_t timestamp, int64_t retry_count, const char *last_error);
sk_status sk__queue_each_parked(sk__queue *q, sk__parked_fn fn, void *ctx, sk__err *err);

/* Puts parked rows back (retry_count 0): event_ids NULL/n==0 means all. *count_out = rows moved. */
sk_status sk__queue_unpark(sk__queue *q, const char *const *event_ids, size_t n, int64_t *count_out,
                           sk__err *err);

#endif
