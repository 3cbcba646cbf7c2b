/*
 * Event envelopes (CONTRACT.md §1): ULIDs, node id, the Lamport clock file,
 * validation and building of the JSON envelope.
 */
#include "event.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

/* ---------------------------------------------------------------- ULID -- */

/* Crockford base32: digits and letters without I, L, O, U. */
static const char ulid_alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

#define ULID_MAX_MS ((INT64_C(1) << 48) - 1)

/* Bit k (0 = most significant) of a 16-byte big-endian number. */
static unsigned bit_at(const uint8_t bytes[16], unsigned k)
{
    return (bytes[k / 8] >> (7 - k % 8)) & 1u;
}

/*
 * Encodes 128 bits as 26 base32 characters. 26 * 5 = 130, so the number is
 * read as if it had two leading zero bits; the first character is thus 0-7.
 */
static void ulid_encode(const uint8_t bytes[16], char out[27])
{
    for (unsigned c = 0; c < SK__ULID_LEN; c++) {
        unsigned v = 0;
        for (unsigned b = 0; b < 5; b++) {
            unsigned pos = c * 5 + b; /* position in the 130-bit string */
            v = (v << 1) | (pos < 2 ? 0u : bit_at(bytes, pos - 2));
        }
        out[c] = ulid_alphabet[v];
    }
    out[SK__ULID_LEN] = '\0';
}

/* Adds one to an 80-bit big-endian number; returns 0 when it wrapped to zero. */
static int rand80_increment(uint8_t r[10])
{
    for (int i = 9; i >= 0; i--) {
        if (++r[i] != 0)
            return 1;
    }
    return 0;
}

/* A zero-initialised state has produced nothing yet. */
static int ulid_state_used(const sk__ulid_state *st)
{
    if (st->last_ms != 0)
        return 1;
    for (size_t i = 0; i < sizeof st->last_rand; i++) {
        if (st->last_rand[i])
            return 1;
    }
    return 0;
}

sk_status sk__ulid_next(sk__ulid_state *st, int64_t now_ms, sk__random_fn rnd, void *rnd_ctx,
                        char out[27], sk__err *err)
{
    if (now_ms < 0 || now_ms > ULID_MAX_MS)
        return sk__fail(err, SK_ERR_USAGE, "ulid: time %lld ms does not fit in 48 bits",
                        (long long)now_ms);
    uint8_t next_rand[10];
    int64_t ms = now_ms;
    if (ulid_state_used(st) && now_ms <= st->last_ms) {
        /* Same millisecond (or the wall clock stepped back): keep the last
         * time and count up, so ids stay strictly increasing in this process. */
        ms = st->last_ms;
        memcpy(next_rand, st->last_rand, sizeof next_rand);
        if (!rand80_increment(next_rand))
            return sk__fail(err, SK_ERR_BUSY, "ulid: random part exhausted within one millisecond");
    } else {
        sk_status s = rnd(rnd_ctx, next_rand, sizeof next_rand);
        if (s != SK_OK)
            return sk__fail(err, s, "ulid: no random bytes available");
    }
    uint8_t bytes[16];
    for (int i = 0; i < 6; i++)
        bytes[i] = (uint8_t)((uint64_t)ms >> (8 * (5 - i)));
    memcpy(bytes + 6, next_rand, sizeof next_rand);
    ulid_encode(bytes, out);
    st->last_ms = ms;
    memcpy(st->last_rand, next_rand, sizeof next_rand);
    return SK_OK;
}

static sk_status os_random(void *ctx, void *buf, size_t n)
{
    (void)ctx;
    return sk__random_bytes(buf, n, NULL);
}

/* One generator per process. A forked child starts it afresh (ulid_fork_child),
 * so a parent and child counting up from the same state never produce equal
 * ids; no getpid() per id (a system call: 8 % of `emit --file`). */
static pthread_mutex_t ulid_lock = PTHREAD_MUTEX_INITIALIZER;
static sk__ulid_state ulid_shared;

static pthread_once_t ulid_once = PTHREAD_ONCE_INIT;

static void ulid_fork_prepare(void)
{
    pthread_mutex_lock(&ulid_lock);
}

static void ulid_fork_parent(void)
{
    pthread_mutex_unlock(&ulid_lock);
}

static void ulid_fork_child(void)
{
    memset(&ulid_shared, 0, sizeof ulid_shared);
    pthread_mutex_unlock(&ulid_lock);
}

/* Holding the lock across fork() keeps a child from inheriting it locked by a
 * thread that does not exist there. */
static void ulid_register_fork_handlers(void)
{
    pthread_atfork(ulid_fork_prepare, ulid_fork_parent, ulid_fork_child);
}

sk_status sk__ulid_new(char out[27], sk__err *err)
{
    pthread_once(&ulid_once, ulid_register_fork_handlers);
    pthread_mutex_lock(&ulid_lock);
    sk_status s = sk__ulid_next(&ulid_shared, sk__wall_ms(), os_random, NULL, out, err);
    pthread_mutex_unlock(&ulid_lock);
    return s;
}

int sk__ulid_valid(const char *s)
{
    if (!s)
        return 0;
    size_t i = 0;
    for (; s[i]; i++) {
        if (i >= SK__ULID_LEN || !strchr(ulid_alphabet, s[i]))
            return 0;
    }
    return i == SK__ULID_LEN;
}

/* ------------------------------------------------------------- node id -- */

/* node_id of the text "<hostname>:<username>": the first 12 hex digits of its sha256. */
static void hash_name(const char *name, char out[13])
{
    char hex[65];
    sk__sha256_hex(name, strlen(name), hex);
    snprintf(out, 13, "%.12s", hex);
}

void sk__node_id_from(const char *hostname, const char *username, char out[13])
{
    char input[1024];
    int n = snprintf(input, sizeof input, "%s:%s", hostname, username);
    out[0] = '\0';
    /* A name too long to hash in full would give a wrong id: leave it empty. */
    if (n >= 0 && (size_t)n < sizeof input)
        hash_name(input, out);
}

/* "<hostname>:<username>", the text node ids are hashed from. */
static sk_status node_name(char *buf, size_t cap, sk__err *err)
{
    char host[256];
    if (gethostname(host, sizeof host) != 0)
        return sk__fail(err, SK_ERR_IO, "node id: gethostname: %s", strerror(errno));
    host[sizeof host - 1] = '\0';
    uid_t uid = geteuid();
    struct passwd *pw = getpwuid(uid);
    const char *user = pw && pw->pw_name && *pw->pw_name ? pw->pw_name : getenv("USER");
    /* A container's user often has no name at all: its number is as stable. */
    char number[32];
    if (!user || !*user) {
        snprintf(number, sizeof number, "uid%lu", (unsigned long)uid);
        user = number;
    }
    if (sk__fmt(buf, cap, "%s:%s", host, user))
        return sk__fail(err, SK_ERR_INTERNAL, "node id: name too long: %s:%s", host, user);
    return SK_OK;
}

sk_status sk__node_id(char out[13], sk__err *err)
{
    char name[1024];
    out[0] = '\0';
    sk_status st = node_name(name, sizeof name, err);
    if (st != SK_OK)
        return st;
    hash_name(name, out);
    if (!out[0])
        return sk__fail(err, SK_ERR_INTERNAL, "node id: cannot hash \"%s\"", name);
    return SK_OK;
}

sk_status sk__node_id_cached(const char *state_root, char out[13], sk__err *err)
{
    char name[1024], path[4200], *text = NULL;
    sk_status st = node_name(name, sizeof name, err);
    if (st != SK_OK || sk__path_join(path, sizeof path, state_root, "node-id", err) != SK_OK)
        return st != SK_OK ? st : SK_ERR_USAGE;
    /* "<12 hex> <hostname>:<username>\n": valid while the name is the same. */
    if (sk__read_file(path, &text, NULL, NULL) == SK_OK && strlen(text) > 13 && text[12] == ' ' &&
        strcspn(text, " ") == 12 && strncmp(text + 13, name, strlen(name)) == 0 &&
        text[13 + strlen(name)] == '\n') {
        memcpy(out, text, 12);
        out[12] = '\0';
        free(text);
        return SK_OK;
    }
    free(text);
    hash_name(name, out); /* the name is at hand: no second gethostname/getpwuid */
    if (!out[0])
        return sk__fail(err, SK_ERR_INTERNAL, "node id: cannot hash \"%s\"", name);
    char line[1100];
    int n = snprintf(line, sizeof line, "%s %s\n", out, name);
    sk__err ignored;
    sk__write_file_atomic(path, line, (size_t)n, 0600, 0, &ignored); /* a cache: best effort */
    return SK_OK;
}

/* ------------------------------------------------------- Lamport clock -- */

/* Opens and exclusively locks <root>/clock.lock, waiting at most wait_ms for
   another holder (polled: flock has no timeout of its own); returns the fd. */
static sk_status clock_lock(const char *root, int64_t wait_ms, int *fd_out, sk__err *err)
{
    char path[4096];
    if (sk__path_join(path, sizeof path, root, "clock.lock", err) != SK_OK)
        return SK_ERR_USAGE;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return sk__fail(err, SK_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    int64_t deadline = sk__mono_ms() + wait_ms;
    int64_t pause_ms = 1;
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e == EWOULDBLOCK && sk__mono_ms() < deadline) {
            sk__sleep_ms(pause_ms);
            pause_ms = pause_ms < 16 ? pause_ms * 2 : pause_ms;
            continue;
        }
        if (e == EINTR)
            continue;
        close(fd);
        if (e == EWOULDBLOCK)
            return sk__fail(err, SK_ERR_BUSY,
                            "%s: another spec-kitty process has held the Lamport clock for %lld s "
                            "(an emit --file still reading, or a stopped one); nothing queued",
                            path, (long long)(wait_ms / 1000));
        return sk__fail(err, SK_ERR_IO, "cannot lock %s: %s", path, strerror(e));
    }
    *fd_out = fd;
    return SK_OK;
}

/*
 * Reads the current value from clock.json (0 when the file does not exist).
 * A damaged file is an error, never a silent reset: restarting from 0 would
 * hand out values already used.
 */
static sk_status clock_read(const char *path, int64_t *value, sk__err *err)
{
    char *text = NULL;
    sk_status s = sk__read_file(path, &text, NULL, err);
    if (s == SK_ERR_NOT_FOUND) {
        *value = 0;
        return SK_OK;
    }
    if (s != SK_OK)
        return s;
    json_error_t jerr;
    json_t *doc = json_loads(text, 0, &jerr);
    free(text);
    const char *why = NULL;
    json_t *v = doc ? json_object_get(doc, "value") : NULL;
    if (!doc)
        why = jerr.text;
    else if (!json_is_object(doc))
        why = "not a JSON object";
    else if (!v)
        why = "\"value\" is missing";
    else if (!json_is_integer(v) || json_integer_value(v) < 0)
        why = "\"value\" is not an integer >= 0";
    if (why) {
        sk__fail(err, SK_ERR_CONFIG,
                 "Lamport clock file %s is corrupt (%s); repair its \"value\" (never lower "
                 "it) or move the file aside",
                 path, why);
        json_decref(doc);
        return SK_ERR_CONFIG;
    }
    *value = (int64_t)json_integer_value(v);
    json_decref(doc);
    return SK_OK;
}

/* Rewrites clock.json with the new value (mode 0600, atomically). */
static sk_status clock_write(const char *path, int64_t value, const char *node_id, int sync_data,
                             sk__err *err)
{
    char now[32];
    sk__iso8601_ms(sk__wall_ms(), now, sizeof now);
    json_t *doc = json_pack("{s:I,s:s,s:s}", "value", (json_int_t)value, "node_id", node_id,
                            "updated_at", now);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text)
        return sk__fail(err, SK_ERR_NOMEM, "cannot encode %s", path);
    sk_status s = sk__write_file_atomic(path, text, strlen(text), 0600, sync_data, err);
    free(text);
    return s;
}

sk_status sk__clock_hold(const char *state_root, int64_t wait_ms, sk__clock *c, sk__err *err)
{
    c->fd = -1;
    c->value = 0;
    if (sk__path_join(c->path, sizeof c->path, state_root, "clock.json", err) != SK_OK)
        return SK_ERR_USAGE;
    sk_status s = clock_lock(state_root, wait_ms, &c->fd, err);
    if (s == SK_OK && (s = clock_read(c->path, &c->value, err)) != SK_OK)
        sk__clock_release(c);
    return s;
}

sk_status sk__clock_use(sk__clock *c, int64_t n, const char *node_id, int sync_data, sk__err *err)
{
    assert(c->fd >= 0);
    if (n < 1)
        return sk__fail(err, SK_ERR_USAGE, "clock: must reserve at least one value");
    if (!node_id)
        return sk__fail(err, SK_ERR_USAGE, "clock: node id missing");
    if (c->value > INT64_MAX - n)
        return sk__fail(err, SK_ERR_CONFIG, "Lamport clock in %s would overflow", c->path);
    sk_status s = clock_write(c->path, c->value + n, node_id, sync_data, err);
    if (s == SK_OK)
        c->value += n;
    return s;
}

void sk__clock_release(sk__clock *c)
{
    if (c->fd >= 0)
        close(c->fd); /* releases the flock */
    c->fd = -1;
}

sk_status sk__clock_tick(const char *state_root, const char *node_id, int64_t n, int sync_data,
                         int64_t *first, sk__err *err)
{
    /* Critical section: read, bump, rewrite. Nothing else happens under the lock. */
    sk__clock c;
    sk_status s = sk__clock_hold(state_root, SK__CLOCK_WAIT_MS, &c, err);
    if (s != SK_OK)
        return s;
    int64_t before = c.value;
    s = sk__clock_use(&c, n, node_id, sync_data, err);
    sk__clock_release(&c);
    if (s == SK_OK)
        *first = before + 1;
    return s;
}

/* ------------------------------------------------------------ building -- */

const char *sk__event_default_aggregate_type(const char *event_type)
{
    static const struct {
        const char *prefix;
        const char *aggregate;
    } by_prefix[] = {
        {"WP", "WorkPackage"},
        {"HistoryAdded", "WorkPackage"},
        {"ErrorLogged", "WorkPackage"},
        {"DependencyResolved", "WorkPackage"},
        {"MissionDossier", "MissionDossier"}, /* before "Mission": longer prefix wins */
        {"Mission", "Mission"},
        {"Build", "Build"},
    };
    if (event_type) {
        for (size_t i = 0; i < SK__ARRAY_LEN(by_prefix); i++) {
            if (strncmp(event_type, by_prefix[i].prefix, strlen(by_prefix[i].prefix)) == 0)
                return by_prefix[i].aggregate;
        }
    }
    return "Feature";
}

/* Sets obj[key] to the string val; a NULL val leaves the key out (validation
 * then reports it missing). */
static sk_status set_string(json_t *obj, const char *key, const char *val, sk__err *err)
{
    if (!val)
        return SK_OK;
    json_t *s = json_string(val);
    if (!s)
        return sk__fail(err, SK_ERR_INVALID_EVENT, "%s: not valid UTF-8", key);
    if (json_object_set_new(obj, key, s) != 0)
        return sk__fail(err, SK_ERR_NOMEM, "%s: out of memory", key);
    return SK_OK;
}

/* Sets obj[key] to the string val, or to null when val is NULL. */
static sk_status set_string_or_null(json_t *obj, const char *key, const char *val, sk__err *err)
{
    if (val)
        return set_string(obj, key, val, err);
    if (json_object_set_new(obj, key, json_null()) != 0)
        return sk__fail(err, SK_ERR_NOMEM, "%s: out of memory", key);
    return SK_OK;
}

/* The fields only a current envelope (§1b) has. */
static sk_status fill_current(json_t *env, const sk__event_fields *f, const char *event_id,
                              sk__err *err)
{
    const char *correlation = f->correlation_id  ? f->correlation_id
                              : f->causation_id ? f->causation_id
                                                : event_id;
    sk_status s = set_string(env, "schema_version", SK__EVENT_SCHEMA_CURRENT, err);
    if (s == SK_OK)
        s = set_string(env, "build_id", f->build_id ? f->build_id : "", err);
    if (s == SK_OK)
        s = set_string(env, "correlation_id", correlation, err);
    if (s == SK_OK)
        s = set_string_or_null(env, "project_uuid", f->project_uuid, err);
    if (s == SK_OK)
        s = set_string_or_null(env, "project_slug", f->project_slug, err);
    return s;
}

/* The envelope's timestamp, now: formatted once per millisecond per thread (a
 * file's thousands of events a second need not each run gmtime and snprintf). */
static void timestamp_now(char out[32])
{
    static __thread int64_t last_ms = -1;
    static __thread char last[32];
    int64_t ms = sk__wall_ms();
    if (ms != last_ms) {
        sk__iso8601_ms(ms, last, sizeof last);
        last_ms = ms;
    }
    memcpy(out, last, sizeof last);
}

/* Fills the envelope's fields in CONTRACT.md order. */
static sk_status fill_envelope(json_t *env, const sk__event_fields *f, const char *event_id,
                               int64_t lamport, const char *node_id, const char *team_slug,
                               sk__err *err)
{
    char now[32];
    timestamp_now(now);
    const char *agg =
        f->aggregate_type ? f->aggregate_type : sk__event_default_aggregate_type(f->event_type);
    if (f->schema == 3 && !f->aggregate_type && strcmp(agg, "Feature") == 0)
        agg = "Mission"; /* the current vocabulary has missions where features were */
    sk_status s = set_string(env, "event_id", event_id, err);
    if (s == SK_OK)
        s = set_string(env, "event_type", f->event_type, err);
    if (s == SK_OK)
        s = set_string(env, "aggregate_id", f->aggregate_id, err);
    if (s == SK_OK)
        s = set_string(env, "aggregate_type", agg, err);
    /* The envelope holds a reference to the caller's payload (not a copy). */
    if (s == SK_OK &&
        json_object_set_new(env, "payload", f->payload ? json_incref(f->payload) : json_object()))
        s = sk__fail(err, SK_ERR_NOMEM, "payload: out of memory");
    if (s == SK_OK)
        s = set_string(env, "node_id", node_id, err);
    if (s == SK_OK && json_object_set_new(env, "lamport_clock", json_integer(lamport)) != 0)
        s = sk__fail(err, SK_ERR_NOMEM, "lamport_clock: out of memory");
    if (s == SK_OK)
        s = set_string_or_null(env, "causation_id", f->causation_id, err);
    if (s == SK_OK)
        s = set_string(env, "timestamp", now, err);
    if (s == SK_OK)
        s = set_string(env, "team_slug", team_slug ? team_slug : "local", err);
    if (s == SK_OK && f->schema == 3)
        s = fill_current(env, f, event_id, err);
    return s;
}

sk_status sk__event_build(const sk__event_fields *f, int64_t lamport, const char *node_id,
                          const char *team_slug, json_t **out, sk__err *err)
{
    *out = NULL;
    char event_id[SK__ULID_LEN + 1];
    sk_status s = sk__ulid_new(event_id, err);
    if (s != SK_OK)
        return s;
    json_t *env = json_object();
    if (!env)
        return sk__fail(err, SK_ERR_NOMEM, "event: out of memory");
    s = fill_envelope(env, f, event_id, lamport, node_id, team_slug, err);
    if (s == SK_OK)
        s = sk__event_accept(env, err); /* the ids given (causation, ...) in their normal form */
    if (s != SK_OK) {
        json_decref(env);
        return s;
    }
    *out = env;
    return SK_OK;
}

/* ---- envelopes from NDJSON lines, clock stamping ------------------------ */

sk__event_fields sk__event_fields_of(const sk_event_spec *spec, json_t *payload)
{
    return (sk__event_fields){.event_type = spec->event_type,
                              .aggregate_id = spec->aggregate_id,
                              .aggregate_type = spec->aggregate_type,
                              .payload = payload,
                              .causation_id = spec->causation_id,
                              .schema = spec->schema,
                              .correlation_id = spec->correlation_id,
                              .project_uuid = spec->project_uuid,
                              .project_slug = spec->project_slug,
                              .build_id = spec->build_id};
}

/* A string member of a line, or dflt. */
static const char *line_string_or(const json_t *obj, const char *key, const char *dflt)
{
    const char *v = json_string_value(json_object_get(obj, key));
    return v ? v : dflt;
}

/* Builds a short line's envelope: its own fields over the defaults. */
static sk_status build_short(const json_t *obj, const sk__line_defaults *d, json_t **out,
                             sk__err *err)
{
    json_t *payload = json_object_get(obj, "payload");
    const sk_event_spec *spec = &d->spec;
    sk_event_spec own = {
        .event_type = line_string_or(obj, "event_type", line_string_or(obj, "type", NULL)),
        .aggregate_id = line_string_or(obj, "aggregate_id", NULL),
        .aggregate_type = line_string_or(obj, "aggregate_type", NULL),
        .causation_id = line_string_or(obj, "causation_id", NULL),
        .schema = json_object_get(obj, "schema_version") ? 3 : spec->schema,
        .correlation_id = line_string_or(obj, "correlation_id", spec->correlation_id),
        .project_uuid = line_string_or(obj, "project_uuid", spec->project_uuid),
        .project_slug = line_string_or(obj, "project_slug", spec->project_slug),
        .build_id = line_string_or(obj, "build_id", spec->build_id),
    };
    sk__event_fields f = sk__event_fields_of(&own, payload);
    if (payload && !json_is_object(payload))
        return sk__fail(err, SK_ERR_INVALID_EVENT, "payload: expected a JSON object");
    if (!f.event_type)
        return sk__fail(err, SK_ERR_INVALID_EVENT, "event_type: missing");
    if (!f.aggregate_id)
        return sk__fail(err, SK_ERR_INVALID_EVENT, "aggregate_id: missing");
    return sk__event_build(&f, 0, d->node_id, d->team_slug, out, err);
}

sk_status sk__event_from_line(const char *line, size_t len, const sk__line_defaults *d,
                              json_t **out, int *needs_clock, sk__err *err)
{
    *out = NULL;
    if (needs_clock)
        *needs_clock = 0;
    if (memchr(line, '\0', len))
        return sk__fail(err, SK_ERR_INVALID_EVENT, "holds a NUL byte");
    json_error_t jerr;
    json_t *obj = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!obj)
        return sk__fail(err, SK_ERR_INVALID_EVENT, "not valid JSON (column %d: %s)", jerr.column,
                        jerr.text);
    sk_status st;
    if (!json_is_object(obj)) {
        st = sk__fail(err, SK_ERR_INVALID_EVENT, "expected a JSON object");
    } else if (json_object_get(obj, "event_id")) {
        st = sk__event_accept(obj, err);
        if (st == SK_OK)
            *out = json_incref(obj);
    } else if (!d) {
        st = sk__fail(err, SK_ERR_INVALID_EVENT, "event_id: missing");
    } else {
        st = build_short(obj, d, out, err);
        if (st == SK_OK && needs_clock)
            *needs_clock = 1;
    }
    json_decref(obj);
    return st;
}

sk_status sk__event_stamp_clock(const char *state_root, const char *node_id, int sync_data,
                                json_t **envs, const int *needs, size_t n, sk__err *err)
{
    size_t want = 0;
    for (size_t i = 0; i < n; i++)
        want += needs[i] != 0;
    if (want == 0)
        return SK_OK;
    int64_t first = 0;
    sk_status st = sk__clock_tick(state_root, node_id, (int64_t)want, sync_data, &first, err);
    for (size_t i = 0; st == SK_OK && i < n; i++)
        if (needs[i])
            json_object_set_new(envs[i], "lamport_clock", json_integer(first++));
    return st;
}

/* ---- the envelope as text ----------------------------------------------- */

/* Where sk__event_text writes: bytes past cap are counted, not written. */
typedef struct text_out {
    char *buf;
    size_t cap, len;
} text_out;

static void out_bytes(text_out *o, const char *s, size_t n)
{
    if (o->len < o->cap)
        memcpy(o->buf + o->len, s, n < o->cap - o->len ? n : o->cap - o->len);
    o->len += n;
}

/* A JSON string: quotes, backslashes and control characters escaped as Jansson
 * escapes them; everything else (valid UTF-8 in a json_t) as it is. */
static void out_string(text_out *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    out_bytes(o, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        out_bytes(o, s + run, i - run);
        run = i + 1;
        const char *short_form = ch == '"'    ? "\\\""
                                 : ch == '\\' ? "\\\\"
                                 : ch == '\b' ? "\\b"
                                 : ch == '\f' ? "\\f"
                                 : ch == '\n' ? "\\n"
                                 : ch == '\r' ? "\\r"
                                 : ch == '\t' ? "\\t"
                                              : NULL;
        char u[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
        if (short_form)
            out_bytes(o, short_form, 2);
        else
            out_bytes(o, u, sizeof u);
    }
    out_bytes(o, s + run, n - run);
    out_bytes(o, "\"", 1);
}

static void out_integer(text_out *o, json_int_t v)
{
    char digits[24], *end = digits + sizeof digits;
    const char *p = sk__i64_text((int64_t)v, end);
    out_bytes(o, p, (size_t)(end - p));
}

static int out_value(text_out *o, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        out_bytes(o, "{", 1);
        int first = 1;
        for (void *it = json_object_iter((json_t *)v); it;
             it = json_object_iter_next((json_t *)v, it)) {
            out_bytes(o, ",", first ? 0 : 1);
            first = 0;
            out_string(o, json_object_iter_key(it), json_object_iter_key_len(it));
            out_bytes(o, ":", 1);
            if (out_value(o, json_object_iter_value(it)) != 0)
                return -1;
        }
        out_bytes(o, "}", 1);
        return 0;
    }
    case JSON_ARRAY:
        out_bytes(o, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                out_bytes(o, ",", 1);
            if (out_value(o, json_array_get(v, i)) != 0)
                return -1;
        }
        out_bytes(o, "]", 1);
        return 0;
    case JSON_STRING:
        out_string(o, json_string_value(v), json_string_length(v));
        return 0;
    case JSON_INTEGER:
        out_integer(o, json_integer_value(v));
        return 0;
    case JSON_REAL: { /* rare in events: Jansson's own formatting */
        char real[64];
        size_t n = json_dumpb(v, real, sizeof real, JSON_ENCODE_ANY);
        if (n == 0 || n > sizeof real)
            return -1;
        out_bytes(o, real, n);
        return 0;
    }
    case JSON_TRUE:
        out_bytes(o, "true", 4);
        return 0;
    case JSON_FALSE:
        out_bytes(o, "false", 5);
        return 0;
    case JSON_NULL:
        out_bytes(o, "null", 4);
        return 0;
    }
    return -1;
}

size_t sk__event_text(const json_t *envelope, char *buf, size_t cap)
{
    text_out o = {buf, cap, 0};
    return envelope && out_value(&o, envelope) == 0 ? o.len : 0;
}
