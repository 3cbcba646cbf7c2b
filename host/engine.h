/*
 * The sk_sync handle behind the public API: one state root, its config, its
 * queue, the node identity and (loaded on first use) the transport plugin.
 * The CLI reaches these internals through the accessors below.
 */
#ifndef SK_HOST_ENGINE_H
#define SK_HOST_ENGINE_H

#include "auth.h"
#include "common.h"
#include "config.h"
#include "deliver.h"
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
    sk__plugin *plugin;
    sk__plugin_host phost;
    /* Where plugin log lines go (the CLI prints them); NULL: dropped. */
    void (*log)(void *ctx, sk_log_level level, const char *plugin, const char *line);
    void *log_ctx;
    atomic_int cancel;
    sk__sched sched;             /* persisted scheduler state, as loaded at open */
    char sched_warning[800];     /* why a corrupt sync-state.json was ignored, or "" */
    struct sk__service *service; /* the embedded service, if sk_service_start ran */
    pthread_t service_thread;
};

/* Opens another handle on the state root's queue, with the config's options
 * (a handle is for one thread: the service keeps a second one for status). */
sk_status sk__sync_queue_open(const sk_sync *s, sk__queue **out, sk__err *err);

/* Loads and starts the configured transport (once per handle). */
sk_status sk__sync_transport(sk_sync *s, sk__plugin **out);

/* Fields of one event line of `emit --file`: a full envelope (has "event_id"),
 * or the short form {event_type, aggregate_id, aggregate_type?, payload?, causation_id?}. */
typedef void (*sk__line_error_fn)(void *ctx, size_t line_no, const char *message);

/*
 * One line of `emit --file` (NUL-terminated, no newline) → an envelope (new
 * reference in *out), validated. A full envelope (it has event_id) is taken as
 * it is, ids normalised; a short one is built like sk_emit_event, with defaults
 * for what the line leaves out (a line with schema_version builds a current
 * envelope); *needs_clock then (lamport_clock still 0). SK_ERR_INVALID_EVENT
 * with a message otherwise.
 */
sk_status sk__sync_line_envelope(const sk_sync *s, const char *line, const sk_event_spec *defaults,
                                 json_t **out, int *needs_clock, sk__err *err);

/*
 * Enqueues every NDJSON line of text in one transaction, or none: each bad line
 * is reported through on_error (1-based line numbers) and then SK_ERR_INVALID_EVENT
 * is returned. Blank lines are skipped. Short-form lines are built like
 * sk_emit_event with defaults (schema, project, build) for what they leave out.
 * *count_out = events queued.
 */
sk_status sk__sync_emit_ndjson(sk_sync *s, const char *text, const sk_event_spec *defaults,
                               sk__line_error_fn on_error, void *ctx, size_t *count_out);

/* Enqueues validated envelopes in one transaction (all or none) and pokes a running service. */
sk_status sk__sync_enqueue_envelopes(sk_sync *s, json_t **envs, size_t n, sk__err *err);

/* Runs a delivery pass with hooks (sync now, daemon). */
sk_status sk__sync_deliver(sk_sync *s, const sk__deliver_opts *opts, const sk__deliver_hooks *hooks,
                           sk_drain_summary *out);

/*
 * Records the outcome of a delivery pass in <root>/sync-state.json (re-read
 * first, so a concurrent writer's newer state is not rolled back).
 */
void sk__sync_record_pass(sk_sync *s, sk_status st, const sk_drain_summary *sum);

/*
 * Loads the persisted scheduler state (sync-state.json) into s->sched. Returns
 * a warning line when the file was corrupt and a fresh state is used, else NULL.
 */
const char *sk__sync_load_sched(sk_sync *s);

/* The scheduler policy the config asks for. */
sk__sched_policy sk__sync_sched_policy(const sk_sync *s);

/* Delivery options derived from the config. */
void sk__sync_deliver_opts(const sk_sync *s, sk__deliver_opts *opts);

#endif
