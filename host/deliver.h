/*
 * The host's delivery policy (CONTRACT.md §3), transport-agnostic: lease a
 * batch from the queue, hand it to the transport, and turn per-event outcomes
 * and batch hints into queue changes. Halving on "too large", bisection on
 * "poisoned", one re-authentication on 401, Retry-After, protocol mismatch.
 *
 * Rows the pass has tried and that stay queued (pending, transient, rejected)
 * remain leased by this drainer until the pass ends, so one pass sends each
 * event at most once (splits aside) and two drainers never send the same row.
 */
#ifndef SK_HOST_DELIVER_H
#define SK_HOST_DELIVER_H

#include "common.h"
#include "plugin.h"
#include "queue.h"

#include <stdatomic.h>

typedef struct sk__deliver_opts {
    size_t max_batch_events;
    size_t max_batch_bytes;
    int64_t max_retries;
    int64_t batch_timeout_ms; /* deadline of one send */
    int64_t
        max_retry_wait_ms; /* a Retry-After up to this is waited out in the pass; longer stops it */
    int64_t max_batches;   /* 0: until the queue is drained */
    int64_t lease_ms;      /* how long a leased row stays ours if we die */
    /* When set: the pass holds an exclusive flock on this file and reads rows
     * without leasing them (sk__queue_peek): one drainer per state root at a
     * time, and no row is written but the settled ones. NULL: per-row leases,
     * so several drainers may run at once. */
    const char *drain_lock_path;
} sk__deliver_opts;

/* Fills opts with the defaults used by `sync now`. */
void sk__deliver_opts_default(sk__deliver_opts *opts);

typedef struct sk__deliver_hooks {
    /* On 401: refresh the credentials; SK_OK means resend once. NULL: no auth. */
    sk_status (*reauthenticate)(void *ctx, sk__err *err);
    /* After each batch, with the running summary and the events waiting at the start. */
    void (*progress)(void *ctx, const sk_drain_summary *so_far, int64_t total);
    /* An event was rejected or parked: what ("rejected", "parked") and the server's reason. */
    void (*failure)(void *ctx, const char *event_id, const char *event_type, const char *what,
                    const char *reason);
    /* Sleeps ms (for Retry-After); returns non-zero when cancelled meanwhile. NULL: nanosleep. */
    int (*wait_ms)(void *ctx, int64_t ms);
    void *ctx;
    atomic_int *cancel; /* set to non-zero (and call the plugin's cancel) to stop; may be NULL */
} sk__deliver_hooks;

/*
 * Runs one delivery pass. Returns SK_OK when the pass finished (queue drained
 * or max_batches sent), else why it stopped: SK_ERR_TRANSPORT (server or
 * network; sum->retry_after_ms may say how long to wait), SK_ERR_PROTOCOL,
 * SK_ERR_AUTH / SK_ERR_SESSION_EXPIRED (from reauthenticate), SK_ERR_CANCELLED,
 * SK_ERR_DB. sum->stop_reason holds the one-line reason. Nothing is lost on any
 * path: rows not delivered stay queued.
 */
sk_status sk__deliver_pass(sk__queue *q, sk__plugin *p, const sk__deliver_opts *opts,
                           const sk__deliver_hooks *hooks, sk_drain_summary *sum, sk__err *err);

/*
 * The summary as a JSON object, in the key order `sync now --json` prints
 * (stop_reason null when empty); the control socket carries the same object.
 */
json_t *sk__drain_summary_json(const sk_drain_summary *sum);
/* Reads such an object back (missing keys read as 0 / ""). */
void sk__drain_summary_from_json(const json_t *o, sk_drain_summary *sum);
/* One rejected or parked event, as `--report` and the control socket list it. */
json_t *sk__drain_failure_json(const char *event_id, const char *event_type, const char *what,
                               const char *reason);

/* A lease owner token naming this process ("<pid>.<start time>.<random>"). */
sk_status sk__drainer_token(char *out, size_t cap, sk__err *err);
/* Non-zero when the process that made token is still running (or it cannot tell). */
int sk__drainer_alive(const char *token);

#endif
