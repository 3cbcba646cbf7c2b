/*
 * Scheduler: decides WHEN the host attempts to send, never sends anything.
 *
 * A pure state machine over injected time and randomness: the background
 * daemon and `sync now` report what happened (success, failure, Retry-After,
 * auth blocked) and ask when the next attempt is due. The only I/O is the
 * persisted state file <state_root>/sync-state.json, so a restart neither
 * forgets a server's Retry-After nor resets a failure streak.
 *
 * Not thread-safe: one owner drives a sk__sched at a time. Two processes
 * (daemon and CLI) saving the same file is last-writer-wins, never torn.
 *
 * Timing rules, in wall-clock milliseconds since the epoch:
 *
 * Backoff ("equal jitter", AWS Architecture Blog "Exponential Backoff And
 * Jitter"): after the n-th consecutive failure (n >= 1) the base is
 *     d = min(backoff_max_ms, backoff_min_ms * 2^(n-1))
 * and the delay is ceil(d/2) + uniform[0, floor(d/2)], so
 *     ceil(d/2) <= delay <= d,
 * hence always ceil(backoff_min_ms/2) <= delay <= backoff_max_ms. Half the
 * base is kept so retries never collapse to zero; the random half spreads
 * many clients apart. A success resets the streak.
 *
 * Retry-After: a floor. After a server asked to wait w ms, no attempt
 * (background or explicit) is due before now + w, even when w exceeds the
 * backoff cap. w is capped at retry_after_max_ms against broken servers.
 *
 * Background flushes (daemon):
 *   - queue empty or auth blocked: idle (INT64_MAX);
 *   - failing: due at the backoff time (a poke does not bring it forward);
 *   - otherwise due at last flush + interval_ms, or now when poked (an event
 *     was emitted), when the previous batch left more events waiting, or when
 *     nothing was ever attempted;
 *   - then floored by Retry-After and by batch spacing: at most one attempt
 *     per min_batch_interval_ms (so background retries are spaced at least
 *     that far apart even while the backoff is still shorter). A streaming
 *     transport has no batch spacing: an emitted event leaves at once, bounded
 *     by the transport's slots, max_events_per_s and the server's Retry-After.
 * Explicit `sync now`: due now, floored only by Retry-After (a wait up to
 * retry_wait_max_ms is waited out first; a longer one stops it unsent).
 *
 * Inside a pass, a Retry-After up to retry_wait_max_ms is waited out and the
 * batch resent, at most retry_waits_max times; a longer one (or one more) stops
 * the pass and becomes the floor above. One cap, retry_after_max_ms, bounds
 * every server-given wait.
 *
 * A background pass sends one batch (batch spacing paces the rest); an
 * explicit one, or any pass of a streaming transport, drains the queue.
 *
 * A due time is never earlier than now, and no stored time delays an attempt
 * longer than its own maximum wait beyond now (so a wall clock that jumped
 * backwards cannot stall sync).
 *
 * Connection state (shown by `sync status`):
 *   Offline           nothing attempted yet, or the server was never reached
 *                     in the current failure streak (network down);
 *   Connected         the last attempt succeeded;
 *   Reconnecting      failing, fewer than reconnect_attempts_max in a row;
 *   OfflineBatchMode  gave up reconnecting quickly (reconnect_attempts_max
 *                     failures in a row) or auth is blocked: events stay
 *                     queued and go out in batches once the server is back;
 *                     or passes go through the fallback transport (below).
 *
 * Fallback (transport.fallback): after fallback_after failed passes in a row
 * of a streaming transport that can probe, passes go through the fallback
 * transport and the state is OfflineBatchMode whatever they do; the engine
 * probes the streaming transport before a pass once backoff_max_ms passed
 * since the last probe (sk__sched_probe_due: a server that stays down costs
 * a pass at most one probe per maximum, not a probe's wait each), and a probe
 * that connects ends the fallback (Connected). Backoff and spacing are
 * unchanged. With nothing to send, a pass (a probe only) is still due
 * backoff_max_ms after the last probe, so an idle service finds its
 * connection again.
 */
#ifndef SK_HOST_SCHEDULER_H
#define SK_HOST_SCHEDULER_H

#include "common.h"

#include <stdint.h>

/* File name of the persisted state under the state root. */
#define SK__SCHED_STATE_FILE "sync-state.json"

typedef struct sk__sched_policy {
    int64_t interval_ms;            /* periodic flush when the queue is non-empty; 300000 */
    int64_t backoff_min_ms;         /* first backoff base; 500 */
    int64_t backoff_max_ms;         /* backoff cap; 30000 */
    int64_t min_batch_interval_ms;  /* background spacing between attempts; 5000 */
    int64_t retry_after_max_ms;     /* largest Retry-After honoured; 3600000 */
    int64_t reconnect_attempts_max; /* failures in a row before OfflineBatchMode; 10 */
    int64_t retry_wait_max_ms;      /* longest Retry-After waited out inside a pass; 120000 */
    int64_t retry_waits_max;        /* Retry-After waits in one pass before it stops; 10 */
    int64_t empty_pass_pause_ms;    /* after a background pass that found nothing; 1000 */
    int64_t fallback_after;         /* failed streaming passes before the fallback; 0: none */
} sk__sched_policy;

/* Injected clock and randomness; tests pass fakes, production the defaults. */
typedef struct sk__sched_env {
    int64_t (*now_wall_ms)(void *ctx);
    uint64_t (*random_u64)(void *ctx);
    void *ctx;
} sk__sched_env;

typedef enum sk__conn_state {
    SK__CONN_OFFLINE = 0,
    SK__CONN_CONNECTED = 1,
    SK__CONN_RECONNECTING = 2,
    SK__CONN_OFFLINE_BATCH = 3
} sk__conn_state;

/*
 * Scheduler state. Callers read the fields (status display) but change them
 * only through the functions below. Wall times are 0 when "never".
 */
typedef struct sk__sched {
    sk__sched_policy policy;
    sk__sched_env env;
    int64_t consecutive_failures;
    int64_t next_attempt_wall_ms; /* earliest background attempt; 0: none planned */
    int64_t last_attempt_wall_ms;
    int64_t last_success_wall_ms;
    int64_t retry_after_until_wall_ms;
    char last_error[512];
    sk__conn_state connection;
    int auth_blocked;
    char auth_reason[512];
    int64_t paused_until_wall_ms; /* a background pass found nothing to send (not persisted) */
    int streaming; /* the transport streams (SK_CAP_STREAMING): no batch spacing (not persisted) */
    int fallback;  /* passes go through the fallback transport until a probe connects */
    int64_t probe_due_wall_ms; /* in fallback: when the next probe is due (not persisted) */
} sk__sched;

/* The documented defaults (CONTRACT.md section 5). */
sk__sched_policy sk__sched_policy_default(void);

/* Checks a policy (positive durations, min <= max). SK_ERR_CONFIG naming the bad field. */
sk_status sk__sched_policy_check(const sk__sched_policy *policy, sk__err *err);

/* Real clock (sk__wall_ms) and getrandom. */
sk__sched_env sk__sched_env_default(void);

/*
 * Fresh state (Offline, no failures, nothing planned) with the given policy
 * and env (NULL env: the defaults). Fails with SK_ERR_CONFIG on a bad policy,
 * leaving s fresh with the default policy.
 */
sk_status sk__sched_init(sk__sched *s, const sk__sched_policy *policy, const sk__sched_env *env,
                         sk__err *err);

/* The injected clock's current wall time. */
int64_t sk__sched_now(const sk__sched *s);

/*
 * Pure backoff: the jittered delay after the n-th consecutive failure
 * (failures >= 1) for a random draw r (see bounds above). r = 0 gives the
 * lowest delay ceil(d/2), r = UINT64_MAX the highest, d.
 */
int64_t sk__sched_backoff_delay(const sk__sched_policy *policy, int64_t failures, uint64_t r);

/*
 * An attempt succeeded at now: resets the backoff, clears the error and an
 * auth block, Connected. more_waiting: the batch was full, so events wait
 * behind it and the flush goes on at batch spacing; otherwise the next
 * periodic flush is now + interval.
 */
void sk__sched_on_success(sk__sched *s, int64_t now, int more_waiting);

/*
 * An attempt failed at now: one more consecutive failure, next attempt at
 * now + max(backoff delay, retry_after_ms). retry_after_ms <= 0: the server
 * gave none. reason (may be NULL) becomes last_error, truncated; it must not
 * hold secrets. unreachable: the server was not reached at all (DNS,
 * refused, timeout) rather than answering with an error.
 */
void sk__sched_on_failure(sk__sched *s, int64_t now, int64_t retry_after_ms, const char *reason,
                          int unreachable);

/*
 * Records a server's Retry-After seen outside a failure (e.g. during a
 * drain): nothing is due before now + retry_after_ms. Keeps a later floor.
 */
void sk__sched_note_retry_after(sk__sched *s, int64_t now, int64_t retry_after_ms);

/* Not authenticated (no login, session expired): background flushes stop until cleared. */
void sk__sched_on_auth_blocked(sk__sched *s, const char *reason);
/* Login succeeded: background flushes may resume. */
void sk__sched_clear_auth_blocked(sk__sched *s);

/* Earliest background attempt allowed by batch spacing alone (0 when nothing was attempted). */
int64_t sk__sched_batch_allowed_at(const sk__sched *s);

/*
 * Background: wall time of the next attempt (>= now), or INT64_MAX when
 * idle. queue_nonempty: events are waiting. poked: an event was emitted
 * since the last attempt.
 */
int64_t sk__sched_next_due(const sk__sched *s, int64_t now, int queue_nonempty, int poked);

/* In fallback: non-zero when a pass at now probes the streaming transport first
 * (an explicit `sync now` always does). */
int sk__sched_probe_due(const sk__sched *s, int64_t now, int explicit_pass);

/* Explicit `sync now`: wall time (>= now) it may start; bypasses backoff and spacing. */
int64_t sk__sched_explicit_due(const sk__sched *s, int64_t now);

/* Batches one pass may send: 0 (until drained) when explicit or streaming, 1 for a
 * background one. */
int64_t sk__sched_pass_batches(int explicit_pass, int streaming);

/*
 * Inside a pass: non-zero when the server's wait of ms, the waits-th of the
 * pass, is to be waited out (then the batch is resent); 0 when the pass stops
 * and leaves the wait to the scheduler (sk__sched_record_pass).
 */
int sk__sched_waits_in_pass(const sk__sched_policy *policy, int64_t ms, int64_t waits);

/* What a delivery pass tells the scheduler besides its status and summary. */
typedef struct sk__pass_info {
    int unreachable;   /* no server answered (the transport failed with no status) */
    int deferred;      /* stopped before sending: an earlier Retry-After still runs */
    int may_fall_back; /* a streaming transport that can probe, with a fallback configured */
    int streaming;     /* the pass's transport streams (SK_CAP_STREAMING) */
    int probed;        /* the streaming transport was probed before this pass */
    int back_online;   /* that probe connected */
} sk__pass_info;

/*
 * Folds a finished pass into the state at now: success, failure (with the
 * pass's Retry-After and reason), auth blocked, and the fallback's start
 * (fallback_after failures in a row with may_fall_back) and end (back_online,
 * even when the pass is then cancelled or sends nothing). A cancelled or deferred pass,
 * and one that sent nothing and failed nothing, change nothing. Returns
 * non-zero when the state changed (so it is worth saving).
 */
int sk__sched_record_pass(sk__sched *s, int64_t now, sk_status st, const sk_drain_summary *sum,
                          const sk__pass_info *info);

/*
 * sk__sched_record_pass on the persisted state: re-reads state_root's file
 * first (another process may have written it), records, and saves when it
 * changed. A corrupt file is replaced (its warning is in err); s holds the
 * result either way.
 */
sk_status sk__sched_record_pass_file(sk__sched *s, const char *state_root, sk_status st,
                                     const sk_drain_summary *sum, const sk__pass_info *info,
                                     sk__err *err);

/* A background pass found nothing to send though rows seemed ready: pause briefly. */
void sk__sched_on_empty_pass(sk__sched *s, int64_t now);

/*
 * Shutdown of the service (monotonic ms): the batch in flight gets the grace
 * period, then it is cancelled, and a transport that ignores the cancel gets
 * SK__SHUTDOWN_CANCEL_GRACE_MS more before the service leaves without it.
 */
#define SK__SHUTDOWN_CANCEL_GRACE_MS 1000
typedef struct sk__shutdown {
    int64_t deadline_ms;
    int cancelled;
} sk__shutdown;
typedef enum sk__shutdown_step {
    SK__SHUTDOWN_WAIT = 0,   /* wait up to *wait_ms for the batch in flight */
    SK__SHUTDOWN_CANCEL = 1, /* cancel it now (then keep waiting) */
    SK__SHUTDOWN_ABANDON = 2 /* the transport ignored the cancel: leave without it */
} sk__shutdown_step;
void sk__shutdown_begin(sk__shutdown *sd, int64_t now_ms, int64_t grace_ms);
sk__shutdown_step sk__shutdown_next(sk__shutdown *sd, int64_t now_ms, int64_t *wait_ms);

/* "Offline", "Connected", "Reconnecting", "OfflineBatchMode"; "Unknown" otherwise. */
const char *sk__sched_connection_name(sk__conn_state state);
/* Parses a name from sk__sched_connection_name. Returns 0 on success, -1 if unknown. */
int sk__sched_connection_parse(const char *name, sk__conn_state *out);

/*
 * Writes <state_root>/sync-state.json atomically (mode 0600, fsynced):
 *   {"version": 1, "consecutive_failures": N,
 *    "next_attempt", "last_attempt", "last_success", "retry_after_until":
 *        ISO-8601 UTC with milliseconds ("2026-11-25T09:18:44.123Z") or null for never,
 *    "last_error": string or null, "connection": a connection name,
 *    "auth_blocked": bool, "auth_reason": string or null, "fallback": bool}
 * ISO strings keep the file readable by people and jq; milliseconds round-trip exactly.
 */
sk_status sk__sched_save(const sk__sched *s, const char *state_root, sk__err *err);

/*
 * Replaces s's state (not its policy or env) with the persisted one. A
 * missing file leaves s fresh and returns SK_OK. A file that is not valid
 * JSON, or a key of the wrong type or value, returns SK_ERR_IO with a
 * message naming the file; s is then fresh (the caller warns and goes on).
 * Absent keys take their fresh values (older or newer writers).
 */
sk_status sk__sched_load(sk__sched *s, const char *state_root, sk__err *err);

#endif
