/*
 * The background sync service: the scheduler loop that flushes the queue
 * periodically and soon after each emit, backs off on failures, answers the
 * control socket, and stops within its deadline. Used by `spec-kitty sync
 * daemon` and, in a thread, by the embedding API (sk_service_start), both
 * through api.c. It opens its own handle (sk__sync_open) on the state root.
 *
 * Threads: the loop runs in the caller's thread; each delivery pass runs in a
 * worker thread so that status and stop stay responsive while a batch is in
 * flight. The service opens its own handles on the state root.
 */
#ifndef SK_HOST_DAEMON_H
#define SK_HOST_DAEMON_H

#include "common.h"

typedef struct sk__service sk__service;

typedef struct sk__service_opts {
    int control_socket;    /* listen on <root>/sync.sock */
    int log_stderr;        /* also write log lines to stderr (foreground) */
    int verbose;           /* debug lines too */
    int64_t log_max_bytes; /* rotate sync-daemon.log past this size (<= 0: 1 MiB) */
} sk__service_opts;

/*
 * Takes the service lock of root (<root>/daemon.lock; a lock left by a dead
 * process is free again) and sets the service up. SK_ERR_BUSY when another
 * service runs: the message names its pid.
 */
sk_status sk__service_new(const char *root, const sk__service_opts *opts, sk__service **out,
                          sk__err *err);

/*
 * Runs until stopped; returns SK_OK after a clean shutdown. By then the
 * service has stopped listening, refused a `now` it had not started (its client
 * drains locally) and released the lock: svc only waits for sk__service_free.
 */
sk_status sk__service_run(sk__service *svc, sk__err *err);

/* Asks the loop to stop (async-signal-safe). */
void sk__service_request_stop(sk__service *svc);

/* Asks the loop to stop, giving the batch in flight deadline_ms (< 0: the config's). */
void sk__service_stop(sk__service *svc, int64_t deadline_ms);

/* Asks for a flush soon (an event was queued in this process). Thread-safe. */
void sk__service_poke(sk__service *svc);

/* Seconds since the service started. */
int64_t sk__service_uptime_s(const sk__service *svc);

void sk__service_free(sk__service *svc);

/* Installs SIGTERM/SIGINT handlers: the first stops svc, a second exits at once. */
void sk__service_handle_signals(sk__service *svc);

/*
 * Looks for the service of root: *pid_out is its pid (from <root>/daemon.pid),
 * -1 when one holds the lock but its pid is unknown yet, 0 when none runs.
 * SK_ERR_PERMISSION (SK_ERR_IO) when the lock cannot be read: then nobody can
 * tell, and the caller must not report "not running".
 */
sk_status sk__service_find(const char *root, long *pid_out, sk__err *err);

/* sk__service_find for callers that only act on a running service: 0 on errors too. */
long sk__service_running_pid(const char *root);

#endif
