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

/*
 * Drains the whole queue now: through a running sync service when one answers
 * on the state root's control socket, else here through the configured
 * transport (see sk_sync_drain). A Retry-After a server gave an earlier pass is
 * honoured: waited out when short, else the pass stops unsent.
 */
SK_API sk_status sk_sync_now(sk_sync *sync, sk_progress_fn progress, void *progress_ctx,
                             sk_drain_summary *out);

/*
 * Asks the work running on this handle (sk_sync_now, a connectivity probe,
 * sk_import, sk_emit_ndjson) to stop soon: the transport's cancel is called
 * at once, so a transfer in flight is aborted; sk_sync_now then settles what
 * the server already acknowledged and returns SK_ERR_CANCELLED. Nothing else
 * is lost: the rest stays queued (sk_emit_ndjson queues none of its lines).
 * Sticky: later work of these kinds on this handle is cancelled too (open a
 * new one).
 * Thread-safe and meant to be called from another thread while the work runs;
 * not async-signal-safe (a signal handler wakes a thread that calls it).
 */
SK_API void sk_sync_cancel(sk_sync *sync);

/* An event the server refused: outcome is "rejected" (retried later) or "parked". */
typedef void (*sk_failure_fn)(void *ctx, const char *event_id, const char *event_type,
                              const char *outcome, const char *reason);

typedef struct sk_drain_hooks {
    sk_progress_fn progress; /* may be NULL */
    sk_failure_fn failure;   /* may be NULL */
    void *ctx;
} sk_drain_hooks;

/*
 * sk_sync_now with every rejected or parked event reported. When a sync
 * service runs for the state root (its control socket answers), the service
 * drains and this call relays its progress, so every caller gets the same
 * pass: one drainer at a time, the scheduler's Retry-After honoured.
 * *via_service (may be NULL) tells which way it went. sk_sync_cancel cancels
 * this caller's pass only; the service's own schedule goes on.
 */
SK_API sk_status sk_sync_drain(sk_sync *sync, const sk_drain_hooks *hooks, sk_drain_summary *out,
                               int *via_service);

/* ---- what the library logs ----------------------------------------------- */

/* level: 0 error, 1 warning, 2 info, 3 debug; source: a plugin's name, NULL for the library. */
typedef void (*sk_log_fn)(void *ctx, int level, const char *source, const char *line);

/* Where the handle's log lines go (plugin lines, warnings); NULL drops them. */
SK_API void sk_set_log(sk_sync *sync, sk_log_fn fn, void *ctx);

/* Warnings about sync.json (unknown keys, ...) found at sk_open: NULL-terminated, never NULL. */
SK_API const char *const *sk_config_warnings(const sk_sync *sync);

/* One key of sync.json: name ("schedule.interval_s"), type, one line of help. */
typedef struct sk_config_key {
    const char *name;
    const char *type;
    const char *help;
} sk_config_key;

/* The keys of sync.json, in table order (sk_config_key_get for i < the count). */
SK_API size_t sk_config_key_count(void);
SK_API void sk_config_key_get(size_t i, sk_config_key *out);

/*
 * The effective value of key i on this handle as compact JSON text (free() it;
 * NULL when out of memory) and where it came from: "default", "file", "environment".
 */
SK_API char *sk_config_value(const sk_sync *sync, size_t i, const char **source);

/* The sync.json this handle read (or would have); *exists (may be NULL): whether it exists. */
SK_API const char *sk_config_file(const sk_sync *sync, int *exists);

/* The state root this handle opened (absolute). */
SK_API const char *sk_state_root(const sk_sync *sync);

/* ---- status ------------------------------------------------------------ */

#define SK_METRICS_MAX 16

/* What `spec-kitty sync status` shows. Texts are "" when unknown or none. */
typedef struct sk_sync_state {
    sk_queue_info queue;
    char connection[32];          /* "Offline", "Connected", "Reconnecting", "OfflineBatchMode" */
    char last_sync[32];           /* ISO-8601 UTC with ms ("2026-11-25T09:18:44.123Z"); "": never */
    int64_t consecutive_failures;
    char last_error[512];
    char next_attempt[32];        /* while failing: the next attempt, ISO-8601; "": none planned */
    char state_warning[800];      /* the persisted scheduler state was corrupt and ignored */
    int service_running;
    int64_t service_pid;
    int64_t service_uptime_s;
    char service_note[1024];      /* why the service could not be asked */
    char auth_state[32];          /* "Authenticated", "Session expired", "Not authenticated", ... */
    int session_expired;
    char username[256];
    char team_slug[128];
    char server_url[1024];
    char transport_plugin[1024];
    int64_t transport_abi;
    char config_file[1024];
    int config_exists;
    /* Counters the service's transport reported (bytes_sent, requests, ...), since it loaded. */
    int metric_count;
    struct {
        char name[48];
        int64_t value;
    } metrics[SK_METRICS_MAX];
    int64_t refused_full;       /* events refused because the queue was full (metrics.db) */
    char refused_full_last[32]; /* ISO-8601 of the last refusal; "": never */
} sk_sync_state;

/*
 * Fills out from the queue, the persisted scheduler state, the credentials and
 * the config, and with the live state of a running service when one answers.
 */
SK_API sk_status sk_state_get(sk_sync *sync, sk_sync_state *out);

typedef struct sk_probe_result {
    char state[32];   /* "Connected", "Not authenticated", "Server unavailable",
                         "Unreachable", "OfflineBatchMode", "Unknown", "Transport error" */
    char reason[512];
    int healthy;      /* Connected, or a transport that works offline */
} sk_probe_result;

/* Asks the transport whether the server answers, within timeout_ms. Cancelled by sk_sync_cancel. */
SK_API sk_status sk_probe(sk_sync *sync, int64_t timeout_ms, sk_probe_result *out);

/* ---- parked events ------------------------------------------------------- */

/* One parked event; return non-zero to stop the listing. */
typedef int (*sk_parked_fn)(void *ctx, const char *event_id, const char *event_type,
                            int64_t timestamp, int64_t retry_count, const char *reason);

/* Lists parked events, oldest first. */
SK_API sk_status sk_parked_each(sk_sync *sync, sk_parked_fn fn, void *ctx);

/* Puts parked events back in the queue (event_ids NULL: all). *moved = how many. */
SK_API sk_status sk_retry_parked(sk_sync *sync, const char *const *event_ids, size_t n,
                                 int64_t *moved);

/* ---- import -------------------------------------------------------------- */

/* One bad line of an NDJSON input (1-based line number). */
typedef void (*sk_line_error_fn)(void *ctx, size_t line_no, const char *message);

/*
 * Enqueues every NDJSON line of fd (name names it in messages) in one
 * transaction, or none: full envelopes as they are, short lines
 * {event_type, aggregate_id, ...} built with defaults (may be NULL) like
 * sk_emit_event. Each bad line goes to on_error, then SK_ERR_INVALID_EVENT.
 * sk_sync_cancel stops it between lines: SK_ERR_CANCELLED, nothing queued.
 */
SK_API sk_status sk_emit_ndjson(sk_sync *sync, int fd, const char *name,
                                const sk_event_spec *defaults, sk_line_error_fn on_error,
                                void *ctx, size_t *count);

#define SK_IMPORT_KEEP 1u        /* leave imported bundles in place */
#define SK_IMPORT_VERIFY_ONLY 2u /* check the bundles, queue nothing */

/* What became of one bundle. */
typedef struct sk_bundle_report {
    const char *path;
    sk_status status;    /* SK_OK imported (or verified); SK_ERR_CANCELLED: not read to the end */
    const char *error;   /* why not, "" on success */
    const char *warning; /* imported, but not moved aside: why; "" otherwise */
    const char *bundle_id;
    const char *node_id; /* "" when unknown */
    int64_t events;
} sk_bundle_report;
typedef void (*sk_bundle_fn)(void *ctx, const sk_bundle_report *report);

/*
 * Queues the events of file-drop bundles: path is one bundle (a *.skb folder)
 * or an outbox folder (all its bundles, in order). Each bundle is verified
 * against its manifest before any of its events is queued, and reported to fn.
 * Returns SK_OK when every bundle went in, SK_ERR_CANCELLED after
 * sk_sync_cancel (the rest is left as it is), else the first failure; a path
 * that is no bundle or outbox is reported by sk_last_error only.
 */
SK_API sk_status sk_import(sk_sync *sync, const char *path, unsigned flags, sk_bundle_fn fn,
                           void *ctx);

/* ---- transports ------------------------------------------------------------ */

struct sk_option_def; /* transport.h */

/* A transport plugin found in the search folders. */
typedef struct sk_plugin_info {
    const char *file;
    const char *error; /* it cannot be loaded: why; the fields below are then NULL / 0 */
    const char *name;
    const char *version;
    const char *description;
    unsigned abi_major, abi_minor;
    size_t struct_size; /* of the descriptor the plugin was built with */
    uint32_t capabilities;
    const struct sk_option_def *options; /* NULL-name terminated, or NULL */
} sk_plugin_info;

/* Calls fn for every plugin in plugin_path, SPEC_KITTY_PLUGIN_PATH and the install folder. */
SK_API void sk_plugins_each(sk_sync *sync, void (*fn)(void *ctx, const sk_plugin_info *info),
                            void *ctx);

/* ---- the background service ---------------------------------------------- */

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

typedef struct sk_service_options {
    int control_socket;    /* listen on <root>/sync.sock */
    int log_stderr;        /* also write log lines to stderr */
    int verbose;           /* debug lines too */
    int handle_signals;    /* SIGTERM/SIGINT stop it (a second one exits at once) */
    /* Called once the service holds its lock and runs (may be NULL). */
    void (*ready)(void *ctx, long pid);
    void *ready_ctx;
} sk_service_options;

/*
 * Runs the service of state_root (NULL: the default root) in the calling
 * thread until it is stopped (a signal, `spec-kitty sync daemon stop`).
 * SK_ERR_BUSY when another service runs for the root. err gets one line.
 */
SK_API sk_status sk_service_run(const char *state_root, const sk_service_options *options,
                                char *err, size_t err_cap);

/*
 * The pid of the service running for state_root: 0 none, -1 one holds the
 * lock but its pid is not written yet. SK_ERR_PERMISSION / SK_ERR_IO when
 * nobody can tell (another user's root): never read that as "not running".
 */
SK_API sk_status sk_service_pid(const char *state_root, long *pid, char *err, size_t err_cap);

/*
 * Asks the service of state_root to stop (over its control socket, else with
 * SIGTERM) and waits up to timeout_ms for it to exit. *pid = the service's
 * (0: none ran). SK_ERR_BUSY when it still runs after timeout_ms.
 */
SK_API sk_status sk_service_shutdown(const char *state_root, int64_t timeout_ms, long *pid,
                                     char *err, size_t err_cap);

/*
 * Resolves a state root (NULL: $SPEC_KITTY_HOME, else ~/.spec-kitty) into out
 * and creates it owner-only.
 */
SK_API sk_status sk_state_root_resolve(const char *state_root, char *out, size_t cap, char *err,
                                       size_t err_cap);

/* ---- credentials (no queue needed) -------------------------------------- */

typedef struct sk_auth sk_auth;

/*
 * Opens the credentials of a state root (NULL: the default) with its sync.json,
 * without touching the queue; create_root: make the root if missing.
 */
SK_API sk_status sk_auth_open(const char *state_root, int create_root, sk_auth **out, char *err,
                              size_t err_cap);
SK_API void sk_auth_close(sk_auth *auth);
/* One-line message of the last failure ("" if none). */
SK_API const char *sk_auth_last_error(const sk_auth *auth);
/* Warnings about sync.json, as sk_config_warnings. */
SK_API const char *const *sk_auth_config_warnings(const sk_auth *auth);

typedef enum sk_auth_state {
    SK_AUTH_NONE = 0,    /* "Not authenticated": no credentials */
    SK_AUTH_OK = 1,      /* "Authenticated": a refresh token that is still valid */
    SK_AUTH_EXPIRED = 2, /* "Session expired": log in again */
    SK_AUTH_STATIC = 3   /* "Static token": SPEC_KITTY_ACCESS_TOKEN, never refreshed */
} sk_auth_state;

typedef struct sk_auth_info {
    sk_auth_state state;
    char state_name[32];
    char username[256];
    char team_slug[128];   /* "" when unknown */
    char server_url[1024]; /* of the session; the config's when there is none */
    char config_server_url[1024];
    int server_mismatch;        /* the session belongs to another server than the config's */
    int64_t access_expires_ms;  /* unix ms; 0 when unknown */
    int64_t refresh_expires_ms; /* unix ms; 0 when unknown */
    char credentials_path[4200];
} sk_auth_info;

/* Describes the session; an unusable credentials file is an error (SK_ERR_PERMISSION, ...). */
SK_API sk_status sk_auth_info_get(sk_auth *auth, sk_auth_info *out);
/* Refuses a missing or plain-http server (server_url NULL: the config's) before a password is asked. */
SK_API sk_status sk_auth_login_check(sk_auth *auth, const char *server_url);
/* Logs in with a password; the credentials are saved owner-only. */
SK_API sk_status sk_auth_login(sk_auth *auth, const char *server_url, const char *username,
                               const char *password);
/* Removes the credentials file; *removed: whether there was one. */
SK_API sk_status sk_auth_logout(sk_auth *auth, int *removed);
/* Renews the access token now (single-flight with every other process). */
SK_API sk_status sk_auth_refresh(sk_auth *auth);

/* ---- queue health -------------------------------------------------------- */

/* What `spec-kitty sync doctor` found in queue.db. */
typedef struct sk_doctor_report {
    int damaged;              /* the integrity check found problems */
    int64_t problems;         /* its problem lines (counted up to 100) */
    char first_problem[256];  /* the first of them */
    int64_t file_bytes;       /* queue.db and its WAL */
    int64_t rows_readable;    /* rows read whole */
    int64_t bytes_readable;   /* their envelopes' bytes */
    int64_t rows_lost;        /* rows an index names that could not be read */
    char (*lost_ids)[64];     /* event_ids of lost rows, where an index knows them */
    size_t lost_ids_count;
    int repaired;             /* a fresh queue.db is in place */
    char kept_as[4160];       /* where the damaged file was kept (repair) */
    char queue_file[4200];    /* the queue.db looked at (also when it does not exist) */
} sk_doctor_report;

/*
 * Checks queue.db of state_root (NULL: the default) without a handle (a
 * damaged file may not open); with repair, also salvages what is readable
 * into a fresh queue.db, keeping the damaged file. Free with sk_doctor_report_free.
 */
SK_API sk_status sk_doctor(const char *state_root, int repair, sk_doctor_report *out, char *err,
                           size_t err_cap);
SK_API void sk_doctor_report_free(sk_doctor_report *report);

#ifdef __cplusplus
}
#endif
#endif /* SPEC_KITTY_SYNC_H */
