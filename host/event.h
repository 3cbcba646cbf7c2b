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

/*
 * The clock held across a longer piece of work (`emit --file`): hold locks
 * clock.lock and reads the value; while it is held, the values after
 * c->value are this process's to stamp. use records n of them as handed out
 * (clock.json rewritten, c->value advanced), release unlocks. Released
 * without a use, the clock is left as it was. sk__clock_tick is hold, use,
 * release. hold waits at most wait_ms for another process's hold, then fails
 * with SK_ERR_BUSY naming clock.lock: an `emit --file` holds the clock for
 * its whole reading, and one stopped there (Ctrl+Z) must not hang every emit.
 */
#define SK__CLOCK_WAIT_MS 10000 /* as long as the queue's busy timeout */
typedef struct sk__clock {
    int fd; /* the locked clock.lock, -1 when not held */
    int64_t value;
    char path[4096]; /* clock.json */
} sk__clock;
sk_status sk__clock_hold(const char *state_root, int64_t wait_ms, sk__clock *c, sk__err *err);
sk_status sk__clock_use(sk__clock *c, int64_t n, const char *node_id, int sync_data, sk__err *err);
void sk__clock_release(sk__clock *c);

/* The schema_version current envelopes carry (CONTRACT.md §1b). */
#define SK__EVENT_SCHEMA_CURRENT "3.0.0"

/* Fields of a new event before it becomes an envelope. */
typedef struct sk__event_fields {
    const char *event_type;
    const char *aggregate_id;
    const char *aggregate_type; /* NULL: derived from the type */
    json_t *payload;            /* borrowed; NULL = {} */
    const char *causation_id;   /* NULL = null */
    /* Which vocabulary: 0 or 1 classic (§1), 3 current (§1b). The fields below
     * go into current envelopes only. */
    int schema;
    const char *correlation_id; /* NULL: causation_id, else the new event_id */
    const char *project_uuid;   /* NULL = null (the event stays local) */
    const char *project_slug;   /* NULL = null */
    const char *build_id;       /* NULL = "" */
} sk__event_fields;

/*
 * Validates an envelope: with schema_version 3.x by the current rules
 * (CONTRACT.md §1b), without it by the classic ones (§1): envelope fields,
 * the required payload fields of each known type and their value rules.
 * Types a vocabulary does not know pass when well-formed. Ids may be in any
 * form sk__event_id_normalize accepts for the vocabulary. On failure returns
 * SK_ERR_INVALID_EVENT with a message naming the field, e.g.
 * "payload.new_status: missing".
 */
sk_status sk__event_validate(const json_t *envelope, sk__err *err);

/* Longest normalised id (a hyphenated UUID) with its NUL. */
#define SK__EVENT_ID_MAX 37

typedef enum sk__id_form { SK__ID_INVALID = 0, SK__ID_ULID, SK__ID_UUID } sk__id_form;

/*
 * The id forms spec-kitty accepts and how it normalises them: a ULID in either
 * case (upper-cased; I, L, O and U refused), a hyphenated UUID (lower-cased)
 * or 32 bare hex digits (hyphenated, lower-cased). out gets the normal form,
 * or "" for SK__ID_INVALID.
 */
sk__id_form sk__event_id_normalize(const char *in, char out[SK__EVENT_ID_MAX]);

/* Rewrites event_id, causation_id, correlation_id and project_uuid in their
 * normal form, so the queue's dedup by event_id sees one id however it was
 * written. Ids that cannot be normalised are left for validation to report. */
sk_status sk__event_normalize_ids(json_t *envelope, sk__err *err);

/* What every way in takes an envelope by: its ids normalised, then validated. */
sk_status sk__event_accept(json_t *envelope, sk__err *err);

/* Default aggregate_type for a type (WorkPackage for WP*, Feature otherwise...). */
const char *sk__event_default_aggregate_type(const char *event_type);

/*
 * Builds a new envelope (new reference) from fields: event_id (ULID),
 * lamport_clock, node_id, team_slug, timestamp now, and for schema 3 the
 * current envelope's fields. Normalises the ids given and validates it.
 */
sk_status sk__event_build(const sk__event_fields *f, int64_t lamport, const char *node_id,
                          const char *team_slug, json_t **out, sk__err *err);

/* The builder's fields of a public event spec (payload parsed by the caller). */
sk__event_fields sk__event_fields_of(const sk_event_spec *spec, json_t *payload);

/* What a short NDJSON line leaves out: the caller's defaults, config values already filled in. */
typedef struct sk__line_defaults {
    sk_event_spec spec; /* schema 1 or 3; project fields, build_id as the config gives them */
    const char *node_id;
    const char *team_slug;
} sk__line_defaults;

/* The longest NDJSON line taken: the largest envelope the server accepts. */
#define SK__EVENT_MAX_LINE ((size_t)1 << 20)

/*
 * One NDJSON line (len bytes, no newline) → an envelope (new reference in
 * *out), validated. A full envelope (it has event_id) is taken as it is, ids
 * normalised (sk__event_accept); a short one {event_type, aggregate_id,
 * aggregate_type?, payload?, causation_id?, ...} is built with d (a line with
 * schema_version builds a current envelope) and *needs_clock is set: its
 * lamport_clock is still 0. d NULL: short lines are refused. needs_clock may
 * be NULL then. SK_ERR_INVALID_EVENT with a message otherwise (a NUL byte in
 * the line included).
 */
sk_status sk__event_from_line(const char *line, size_t len, const sk__line_defaults *d,
                              json_t **out, int *needs_clock, sk__err *err);

/*
 * Reserves one Lamport value per envelope with needs[i] set (in one clock
 * write under state_root) and stamps them in order. sync_data: fsync the clock.
 */
sk_status sk__event_stamp_clock(const char *state_root, const char *node_id, int sync_data,
                                json_t **envs, const int *needs, size_t n, sk__err *err);

/*
 * An envelope (any JSON value) as compact JSON text into buf: byte for byte
 * what json_dumpb(JSON_COMPACT) writes, at about a quarter of its cost
 * (Jansson checks each object for a loop through a hash table of "%p" keys
 * and decodes every string's UTF-8 again; an envelope is built or parsed:
 * a tree of valid strings). Returns the length of the whole text, more than
 * cap when it did not fit (then buf holds its first cap bytes; no NUL is
 * written), or 0 for a value Jansson cannot write either.
 */
size_t sk__event_text(const json_t *envelope, char *buf, size_t cap);

#endif
