/*
 * Event envelopes (CONTRACT.md §1): ULIDs, the Lamport clock, node id,
 * validation and building of the JSON envelope.
 */
#ifndef SK_HOST_EVENT_H
#define SK_HOST_EVENT_H

#include "common.h"

#include <jansson.h>

#define SK__ULID_LEN 26

/* ULID generator: time in ms + 80 random bits; monotonic within one
 * millisecond in one process (thread-safe). clock_ms/random are injectable. */
typedef sk_status (*sk__random_fn)(void *ctx, void *buf, size_t n);

/* Writes a new ULID into out (27 bytes) using the wall clock and getrandom. */
sk_status sk__ulid_new(char out[27], sk__err *err);

/* Same with injected time/randomness (for tests). state holds the monotonic
 * last value; zero-initialise it. Within one millisecond (or when now_ms goes
 * back) the 80-bit random part is incremented; if it would overflow, returns
 * SK_ERR_BUSY and leaves state and out unchanged. now_ms outside 48 bits:
 * SK_ERR_USAGE. */
typedef struct sk__ulid_state {
    int64_t last_ms;
    uint8_t last_rand[10];
} sk__ulid_state;
sk_status sk__ulid_next(sk__ulid_state *st, int64_t now_ms, sk__random_fn rnd, void *rnd_ctx,
                        char out[27], sk__err *err);

/* True when s is a 26-char Crockford base32 ULID. */
int sk__ulid_valid(const char *s);

/* node_id: first 12 lowercase hex chars of sha256("<hostname>:<username>"). */
sk_status sk__node_id(char out[13], sk__err *err);
/* out is "" when "<hostname>:<username>" is longer than 1 KiB or cannot be hashed. */
void sk__node_id_from(const char *hostname, const char *username, char out[13]);
/*
 * The same, remembered in <state_root>/node-id next to the name it was hashed
 * from: a short process (one emit) then never initialises OpenSSL, which cost
 * it about 1.5 ms. Recomputed whenever the host or user name changes.
 */
sk_status sk__node_id_cached(const char *state_root, char out[13], sk__err *err);

/*
 * Lamport clock in <root>/clock.json ({"value": N, "node_id": "...",
 * "updated_at": "..."}), locked with flock on <root>/clock.lock so that
 * concurrent processes never get the same value. Reserves n consecutive values
 * and returns the first one in *first (first event ever = 1). sync_data:
 * fdatasync the file and fsync the folder. A damaged clock.json is
 * SK_ERR_CONFIG naming the file (never a silent reset to 0).
 */
sk_status sk__clock_tick(const char *state_root, const char *node_id, int64_t n, int sync_data,
                         int64_t *first, sk__err *err);

/* Fields of a new event before it becomes an envelope. */
typedef struct sk__event_fields {
    const char *event_type;
    const char *aggregate_id;
    const char *aggregate_type; /* NULL: derived from the type */
    json_t *payload;            /* borrowed; NULL = {} */
    const char *causation_id;   /* NULL = null */
} sk__event_fields;

/*
 * Validates an envelope per CONTRACT.md §1 (and the required payload fields of
 * the eight classic types). On failure returns SK_ERR_INVALID_EVENT with a
 * message naming the field, e.g. "payload.new_status: missing".
 */
sk_status sk__event_validate(const json_t *envelope, sk__err *err);

/* Default aggregate_type for a type (WorkPackage for WP*, Feature otherwise...). */
const char *sk__event_default_aggregate_type(const char *event_type);

/*
 * Builds a new envelope (new reference) from fields: event_id (ULID),
 * lamport_clock, node_id, team_slug, timestamp now. Validates it.
 */
sk_status sk__event_build(const sk__event_fields *f, int64_t lamport, const char *node_id,
                          const char *team_slug, json_t **out, sk__err *err);

#endif
