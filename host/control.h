/*
 * The background service's control socket: <root>/sync.sock, a unix stream
 * socket, owner-only. One JSON object per line in each direction:
 *   {"cmd":"poke"}    an event was queued: flush soon (no answer)
 *   {"cmd":"status"}  → {"ok":true, "pid":…, "uptime_s":…, "connection":…, …}
 *   {"cmd":"now"}     → {"progress":{…}} lines, then {"ok":…, "summary":{…}, "failures":[…]}
 *   {"cmd":"cancel"}  from the client of a `now`: cancels that pass, whose last line then
 *                     comes soon ("status":"cancelled"); a client that hangs up cancels it too
 *   {"cmd":"stop"}    → {"ok":true} and the service shuts down
 * A socket that is not ours (owner, mode, peer uid) is reported and never trusted.
 */
#ifndef SK_HOST_CONTROL_H
#define SK_HOST_CONTROL_H

#include "common.h"

#include <jansson.h>

#define SK__CONTROL_SOCKET "sync.sock"

/* Creates, binds (mode 0600) and listens on <root>/sync.sock, replacing a stale file. */
sk_status sk__control_listen(const char *root, int *fd_out, sk__err *err);

/*
 * Connects to the service of root. SK_ERR_NOT_FOUND: no service (no socket, or
 * a stale one nobody listens on). SK_ERR_PERMISSION: the socket or its peer is
 * not ours (message says why). timeout_ms bounds every later read/write.
 */
sk_status sk__control_connect(const char *root, int timeout_ms, int *fd_out, sk__err *err);

/* Writes one JSON object as a line. */
sk_status sk__control_send(int fd, const json_t *msg, sk__err *err);

/* Reads one line into a JSON object (new reference); buffers across calls in buf. */
typedef struct sk__line_reader {
    char buf[65536];
    size_t len;
} sk__line_reader;
sk_status sk__control_recv(int fd, sk__line_reader *r, int timeout_ms, json_t **out, sk__err *err);

/* {"cmd":"status"} to the service of root: its answer (new reference) when it runs and
 * answers within timeout_ms; SK_ERR_NOT_FOUND when none runs. */
sk_status sk__control_status(const char *root, int timeout_ms, json_t **answer, sk__err *err);

/* Fire-and-forget {"cmd":"poke"}; silent when no service runs. */
void sk__control_poke(const char *root);

/* Non-zero when the peer of a connected socket runs as our uid (or root). */
int sk__control_peer_trusted(int fd);

#endif
