/*
 * The sk_sync handle behind the public API (api.c): one state root, its
 * config, its queue, the node identity and (loaded on first use) the
 * transport plugin. The service (daemon.c) opens its own handle with
 * sk__sync_open; nothing here calls into the service: an enqueue tells it
 * through the on_enqueue callback.
 */
#ifndef SK_HOST_ENGINE_H
#define SK_HOST_ENGINE_H

#include "auth.h"
#include "common.h"
#include "config.h"
#include "deliver.h"
#include "event.h"
#include "plugin.h"
#include "queue.h"
#include "scheduler.h"

#include <limits.h>
#include <pthread.h>

struct sk_sync {
    char root[PATH_MAX];
    char drain_lock[PATH_MAX + 16]; /* <root>/drain.lock: one drainer at a time */
    sk__config *cfg;
    sk__queue *q;
    char node_id[13];
    char team_slug[128];
    sk__auth *auth; /* credentials.json / SPEC_KITTY_ACCESS_TOKEN */
    sk__err err;
    sk__plugin *plugin;   /* set and cleared under plugin_mu: sk_sync_cancel reads it */
    sk__plugin *fallback; /* transport.fallback, loaded when first needed; same rules */
    pthread_mutex_t plugin_mu;
    sk__plugin_host phost;
    sk__plugin_host fallback_host; /* phost with transport.fallback_url */
    /* Where plugin log lines go (the CLI prints them); NULL: dropped. */
    sk_log_fn log;
    void *log_ctx;
    /* Called after each enqueue (an in-process service); NULL: poke <root>/sync.sock. */
    void (*on_enqueue)(void *ctx);
    void *on_enqueue_ctx;
    atomic_int cancel;
    int cancel_pipe[2]; /* readable once cancelled: a wait on a socket polls it too */
    sk__sched sched;             /* persisted scheduler state, as loaded at open */
    char sched_warning[800];     /* why a corrupt sync-state.json was ignored, or "" */
    struct sk__service *service; /* the embedded service, if sk_service_start ran */
    pthread_t service_thread;
    sk__metrics *metrics; /* metrics.db, opened when first needed (under plugin_mu) */
};

/* Opens a handle on a state root (NULL: the default); one line in err on failure. */
sk_status sk__sync_open(const char *state_root, sk_sync **out, sk__err *err);
/* Closes a handle (its transport too); a service running on it must be stopped first. */
void sk__sync_close(sk_sync *s);

/* Builds, validates and enqueues one event (sk_emit_event). */
sk_status sk__sync_emit(sk_sync *s, const sk_event_spec *spec, char event_id_out[27]);

/* Calls fn for each value (counter or level) the handle's transport reported (none before
 * it loaded). */
void sk__sync_each_metric(sk_sync *s, sk__plugin_metric_fn fn, void *ctx);

/* Cancels the work on the handle (sk_sync_cancel): flag, cancel pipe, the transport's cancel. */
void sk__sync_cancel(sk_sync *s);

/* The handle's metrics (opened on first use); NULL (and why in err, may be NULL) when
 * metrics.db cannot be opened. */
sk__metrics *sk__sync_metrics(sk_sync *s, sk__err *err);

/* Opens another handle on the state root's queue, with the config's options
 * (a handle is for one thread: the service keeps a second one for status). */
sk_status sk__sync_queue_open(const sk_sync *s, sk__queue **out, sk__err *err);

/* Loads and starts the configured transport (once per handle). */
sk_status sk__sync_transport(sk_sync *s, sk__plugin **out);

/*
 * Undoes sk_sync_cancel once nothing runs on the handle: a plugin's cancel is
 * final for its instance, so the transport is closed (the next pass loads it
 * again) and the cancel flag cleared. The service uses it after a pass its
 * client cancelled.
 */
void sk__sync_cancel_reset(sk_sync *s);

/* What short NDJSON lines take on this handle: defaults (may be NULL), then sync.json's emit.*. */
void sk__sync_line_defaults(const sk_sync *s, const sk_event_spec *defaults, sk__line_defaults *out);

/*
 * Enqueues every NDJSON line read from fd (name names it in messages) in one
 * transaction, or none: each bad line is reported through on_error (1-based
 * line numbers) and then SK_ERR_INVALID_EVENT is returned. Blank lines are
 * skipped. Lines become envelopes as sk__event_from_line makes them (defaults
 * may be NULL; sync.json's emit.* fill what they leave out). Memory stays
 * bounded whatever the input: the input is read once, each envelope
 * serialised and added to the transaction in chunks, while the Lamport clock
 * is held (other emitters wait) so the file's values are consecutive; the
 * clock file is written once at the end, before the commit, and not at all
 * when a line is bad. A pipe is copied to an unlinked file in the state root
 * first. Reading stops at a line longer than SK__EVENT_MAX_LINE, and at more
 * events than queue.max_events (SK_ERR_QUEUE_FULL). The reading holds the
 * queue's write lock. *count_out = events queued.
 */
sk_status sk__sync_emit_ndjson(sk_sync *s, int fd, const char *name, const sk_event_spec *defaults,
                               sk_line_error_fn on_error, void *ctx, size_t *count_out);

/* Enqueues validated envelopes in one transaction (all or none) and pokes a running service. */
sk_status sk__sync_enqueue_envelopes(sk_sync *s, json_t **envs, size_t n, sk__err *err);

/*
 * Runs a delivery pass through the handle's transport, refreshing the session
 * on a 401. While the scheduler says fallback, the transport is probed first:
 * connected, the pass goes through it (info->back_online); otherwise through
 * transport.fallback. Records nothing: the caller folds the result into the scheduler
 * (sk__sync_record_pass) on the thread that owns s->sched.
 */
sk_status sk__sync_deliver(sk_sync *s, const sk__deliver_opts *opts, const sk__deliver_hooks *hooks,
                           sk_drain_summary *out, sk__pass_info *info);

/*
 * An explicit pass (`sync now` without a service): the persisted scheduler
 * state is read first (a running Retry-After is honoured), the whole queue is
 * drained, and the pass is recorded. Cancelled by sk_sync_cancel.
 */
sk_status sk__sync_drain(sk_sync *s, const sk__deliver_hooks *hooks, sk_drain_summary *out);

/*
 * Records the outcome of a delivery pass in s->sched and <root>/sync-state.json
 * (re-read first, so a concurrent writer's newer state is not rolled back).
 */
void sk__sync_record_pass(sk_sync *s, sk_status st, const sk_drain_summary *sum,
                          const sk__pass_info *info);

/*
 * Loads the persisted scheduler state (sync-state.json) into s->sched. Returns
 * a warning line when the file was corrupt and a fresh state is used, else NULL.
 */
const char *sk__sync_load_sched(sk_sync *s);

/* The scheduler policy the config asks for. */
sk__sched_policy sk__sync_sched_policy(const sk_sync *s);

/*
 * Delivery options derived from the config and the scheduler: an explicit
 * pass drains the queue after a running Retry-After, a background one sends
 * one batch.
 */
void sk__sync_deliver_opts(const sk_sync *s, int explicit_pass, sk__deliver_opts *opts);

#endif
