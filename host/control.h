/*
 * The control protocol of the background service, both sides in one place:
 * <root>/sync.sock, a unix stream socket, owner-only. One JSON object per line
 * in each direction:
 *   {"cmd":"poke"}    an event was queued: flush soon (no answer)
 *   {"cmd":"status"}  → {"ok":true, "pid":…, "uptime_s":…, "connection":…, …, "metrics":{…}}
 *   {"cmd":"now"}     → {"progress":{…}} lines (the first at once: the request is taken),
 *                       then {"ok":…, "code":…, "summary":{…}, "failures":[…]}; a stopping
 *                       service refuses with SK_ERR_NOT_FOUND (the client drains locally)
 *   {"cmd":"cancel"}  from the client of a `now`: cancels that pass, whose last line then
 *                     comes soon (code SK_ERR_CANCELLED); a client that hangs up cancels it too
 *   {"cmd":"stop"}    → {"ok":true, "pid":…} and the service shuts down
 * A refusal is {"ok":false, "code":<sk_status>, "status":<its name>, "error":<one line>}:
 * clients act on the code, never on the text. A socket that is not ours (owner, mode,
 * peer uid) is reported and never trusted.
 */
#ifndef SK_HOST_CONTROL_H
#define SK_HOST_CONTROL_H

#include "common.h"

#include <jansson.h>

#define SK__CONTROL_SOCKET "sync.sock"

/* ---- transport of lines ---- */

/* Creates, binds (mode 0600) and listens on <root>/sync.sock, replacing a stale file. */
sk_status sk__control_listen(const char *root, int *fd_out, sk__err *err);

/* Non-zero when the peer of a connected socket runs as our uid (or root). */
int sk__control_peer_trusted(int fd);

/* Buffers what was read of a peer's lines across calls. */
typedef struct sk__line_reader {
    char buf[65536];
    size_t len;
} sk__line_reader;

/*
 * Reads one line into a JSON object (new reference). timeout_ms < 0 waits
 * without end; 0 takes only what is buffered. cancel_fd (or -1): when it turns
 * readable first, SK_ERR_CANCELLED. SK_ERR_IO on a closed, malformed or silent
 * peer.
 */
sk_status sk__control_recv(int fd, sk__line_reader *r, int timeout_ms, int cancel_fd,
                           json_t **out, sk__err *err);

/* ---- the server side (daemon.c) ---- */

typedef enum sk__control_verb {
    SK__VERB_UNKNOWN = 0,
    SK__VERB_POKE,
    SK__VERB_STATUS,
    SK__VERB_NOW,
    SK__VERB_CANCEL,
    SK__VERB_STOP
} sk__control_verb;

/* The verb of a request line. */
sk__control_verb sk__control_verb_of(const json_t *msg);

/* The live state a service reports to `status`. */
typedef struct sk__service_status {
    int64_t pid, uptime_s;
    char connection[32];
    char last_sync[32], next_attempt[32]; /* ISO-8601; "": none */
    int64_t consecutive_failures;
    char last_error[512];
    int busy;
    int auth_blocked;
    char auth_reason[512];
    int64_t queue_size, queue_parked;
    int metric_count;
    struct {
        char name[48];
        int64_t value;
    } metrics[SK_METRICS_MAX];
} sk__service_status;

sk_status sk__control_answer_status(int fd, const sk__service_status *st, sk__err *err);
/* A refusal with its status code (busy, unknown verb, ...). */
sk_status sk__control_answer_error(int fd, sk_status code, const char *message, sk__err *err);
sk_status sk__control_answer_stop(int fd, long pid, sk__err *err);
/* One progress line of a `now` pass. */
sk_status sk__control_progress(int fd, const sk_drain_summary *sum, int64_t total, sk__err *err);
/* The last line of a `now` pass; failures: an array of sk__control_failure_json objects. */
sk_status sk__control_answer_now(int fd, sk_status st, const sk_drain_summary *sum,
                                 json_t *failures, const char *error, sk__err *err);
/* One rejected or parked event, as the `now` answer lists it. */
json_t *sk__control_failure_json(const char *event_id, const char *event_type, const char *outcome,
                                 const char *reason);

/* ---- the client side (api.c) ---- */

/*
 * Connects to the service of root. SK_ERR_NOT_FOUND: no service (no socket, or
 * a stale one nobody listens on). SK_ERR_PERMISSION: the socket or its peer is
 * not ours (message says why).
 */
sk_status sk__control_connect(const char *root, int *fd_out, sk__err *err);

/* The live state of the service of root (SK_ERR_NOT_FOUND: none reachable; SK_ERR_PERMISSION:
 * not ours; SK_ERR_IO when mute). */
sk_status sk__control_status(const char *root, sk__service_status *out, sk__err *err);

/*
 * Asks the service of root to drain now and relays its pass: progress lines to
 * hooks->progress, then failures to hooks->failure. When cancel_fd turns
 * readable the service is asked to cancel the pass; without its answer soon,
 * SK_ERR_CANCELLED with *out as of the last progress. SK_ERR_NOT_FOUND when the
 * request reached no service, or a stopping one refused it (drain locally
 * then); SK_ERR_TRANSPORT when the service went away, or took the request and
 * said nothing for 5 s.
 */
sk_status sk__control_now(const char *root, int cancel_fd, const sk_drain_hooks *hooks,
                          sk_drain_summary *out, sk__err *err);

/* Asks the service of root to stop (it answers, then shuts down). */
sk_status sk__control_stop(const char *root, sk__err *err);

/* Fire-and-forget {"cmd":"poke"}; silent when no service runs. */
void sk__control_poke(const char *root);

#endif
