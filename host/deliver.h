/*
 * The host's delivery policy (CONTRACT.md §3), transport-agnostic: read a
 * batch from the queue, hand it to the transport, and turn per-event outcomes
 * and batch hints into queue changes. Halving on "too large", bisection on
 * "poisoned", one re-authentication on 401 (none for a batch that left before
 * another one's refresh: it is resent with the new token), Retry-After (by the scheduler's
 * rules), protocol mismatch.
 *
 * One loop: a pass holds the drain lock of the state root (one drainer at a
 * time) and reads rows after a cursor without marking them, so it sends each
 * event at most once (splits aside). The answer to one batch settles in one
 * queue transaction: deletes, rejections and parking together.
 *
 * The seam for asynchronous transports: each batch is an "in flight" unit
 * (deliver.c: inflight_prepare → inflight_start → inflight_complete →
 * inflight_finish). inflight_complete(f, rc) is the completion, called once
 * per batch from any thread (today by the thread that ran sk__plugin_send);
 * inflight_finish(ps, f) settles one batch result on the pass's thread and may
 * be called per completion in any order. A submit path adds slots (up to
 * sk__plugin_async_slots) and hands inflight_complete to sk__plugin_submit.
 */
#ifndef SK_HOST_DELIVER_H
#define SK_HOST_DELIVER_H

#include "common.h"
#include "metrics.h"
#include "plugin.h"
#include "queue.h"
#include "scheduler.h"

#include <stdatomic.h>

typedef struct sk__deliver_opts {
    size_t max_batch_events;
    size_t max_batch_bytes;
    int64_t max_retries;
    int64_t batch_timeout_ms; /* deadline of one send */
    int64_t max_batches;      /* 0: until the queue is drained */
    int64_t max_events_per_s; /* 0: no limit; else batches are paced to this rate */
    int64_t wait_first_ms;    /* an earlier Retry-After still running: waited out before the
                                 first batch, or the pass stops unsent (see the scheduler) */
    sk__sched_policy sched;   /* the Retry-After rules */
    /* The drain lock: the pass holds an exclusive flock on this file, so one
     * drainer per state root runs at a time. Required. */
    const char *drain_lock_path;
    /* The engine's choice of transport, made by the scheduler's owner (not read here):
     * passes go through the fallback transport, after probing the streaming one if
     * probe_first. */
    int in_fallback, probe_first;
} sk__deliver_opts;

/* Fills opts with the defaults used by `sync now` (drain_lock_path still to set). */
void sk__deliver_opts_default(sk__deliver_opts *opts);

typedef struct sk__deliver_hooks {
    /* The generation of the credentials a batch leaves with, taken just before the
     * transport may read its Authorization header; any thread. NULL: no auth. */
    unsigned (*auth_generation)(void *auth_ctx);
    /* On 401 for a batch that left under generation sent: renew the credentials
     * unless they changed since. SK_OK means resend; *refreshed says whether they
     * were renewed for this batch (0: they already were, by another batch, or
     * as read from another process's refresh). NULL: no auth. */
    sk_status (*reauthenticate)(void *auth_ctx, unsigned sent, int *refreshed, sk__err *err);
    void *auth_ctx;
    /* After each batch, with the running summary and the events waiting at the start. */
    void (*progress)(void *ctx, const sk_drain_summary *so_far, int64_t total);
    /* An event was rejected or parked: what ("rejected", "parked") and the server's reason. */
    void (*failure)(void *ctx, const char *event_id, const char *event_type, const char *what,
                    const char *reason);
    /* Sleeps ms (for Retry-After); returns non-zero when cancelled meanwhile. NULL: nanosleep. */
    int (*wait_ms)(void *ctx, int64_t ms);
    void *ctx;
    atomic_int *cancel;   /* set to non-zero (and cancel the plugin) to stop; may be NULL */
    sk__metrics *metrics; /* counts what each batch did (sync metrics); may be NULL */
} sk__deliver_hooks;

/*
 * Runs one delivery pass. Returns SK_OK when the pass finished (queue drained
 * or max_batches sent), else why it stopped: SK_ERR_TRANSPORT (server or
 * network; sum->retry_after_ms may say how long to wait), SK_ERR_PROTOCOL,
 * SK_ERR_AUTH / SK_ERR_SESSION_EXPIRED (from reauthenticate), SK_ERR_CANCELLED,
 * SK_ERR_DB. sum->stop_reason holds the one-line reason; info (may be NULL)
 * what the scheduler needs besides. Nothing is lost on any path: rows not
 * delivered stay queued.
 */
sk_status sk__deliver_pass(sk__queue *q, sk__plugin *p, const sk__deliver_opts *opts,
                           const sk__deliver_hooks *hooks, sk_drain_summary *sum,
                           sk__pass_info *info, sk__err *err);

#endif
