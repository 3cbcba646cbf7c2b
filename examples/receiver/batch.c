/* POST /api/v1/events/batch/ (CONTRACT.md §3). */
#include "receiver.h"
#include "validate.h"

#include "common.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

enum { INFLATE_OK = 0, INFLATE_TOO_LARGE = 1, INFLATE_BAD = 2 };

/*
 * Gunzips in[0..len) into a new buffer of at most limit bytes (*out, *out_len,
 * NUL-terminated). Truncated or corrupt input, or bytes after the gzip stream,
 * are INFLATE_BAD.
 */
static int gunzip(const char *in, size_t len, size_t limit, char **out, size_t *out_len)
{
    z_stream z = {0};
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
        return INFLATE_BAD;
    size_t cap = len * 8 + 1024 < limit + 1 ? len * 8 + 1024 : limit + 1;
    char *buf = malloc(cap);
    int rc = buf ? Z_OK : Z_MEM_ERROR;
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    while (rc == Z_OK) {
        if (z.total_out == cap - 1) {
            if (cap > limit) {
                rc = Z_BUF_ERROR;
                break;
            }
            size_t ncap = cap * 2 > limit + 1 ? limit + 1 : cap * 2;
            char *nbuf = realloc(buf, ncap);
            if (!nbuf) {
                rc = Z_MEM_ERROR;
                break;
            }
            buf = nbuf;
            cap = ncap;
        }
        z.next_out = (Bytef *)buf + z.total_out;
        z.avail_out = (uInt)(cap - 1 - z.total_out);
        rc = inflate(&z, Z_NO_FLUSH);
        if (rc == Z_BUF_ERROR && z.avail_in == 0)
            break; /* input ended before the stream did */
        if (rc == Z_BUF_ERROR)
            rc = Z_OK;
    }
    int result = INFLATE_BAD;
    if (rc == Z_STREAM_END && z.avail_in == 0) {
        result = INFLATE_OK;
        buf[z.total_out] = '\0';
        *out_len = z.total_out;
        *out = buf;
        buf = NULL;
    } else if (rc == Z_BUF_ERROR && z.total_out >= limit) {
        result = INFLATE_TOO_LARGE;
    }
    inflateEnd(&z);
    free(buf);
    return result;
}

/* True when the Content-Type names JSON (parameters such as charset allowed). */
static int is_json_type(const char *ct)
{
    static const char want[] = "application/json";
    if (!ct || strncasecmp(ct, want, sizeof want - 1) != 0)
        return 0;
    char next = ct[sizeof want - 1];
    return next == '\0' || next == ';' || next == ' ';
}

json_t *rcv__batch_decode(rcv__app *app, const rcv__request *rq, rcv__reply *rep)
{
    const char *enc = rq->content_encoding;
    char *plain = NULL;
    size_t plain_len = rq->body_len;
    if (enc && strcasecmp(enc, "gzip") != 0 && strcasecmp(enc, "x-gzip") != 0 &&
        strcasecmp(enc, "identity") != 0) {
        rcv__reply_error(rep, 400, "unsupported Content-Encoding (use gzip or identity)");
        return NULL;
    }
    if (enc && strcasecmp(enc, "identity") != 0) {
        int rc =
            gunzip(rq->body, rq->body_len, (size_t)app->cfg.max_body_bytes, &plain, &plain_len);
        if (rc == INFLATE_TOO_LARGE) {
            rcv__reply_error(rep, 413, "request body too large once decompressed");
            return NULL;
        }
        if (rc != INFLATE_OK) {
            rcv__reply_error(rep, 400, "invalid gzip body (corrupt or truncated)");
            return NULL;
        }
    }
    json_error_t jerr;
    json_t *root = json_loadb(plain ? plain : rq->body, plain_len, 0, &jerr);
    free(plain);
    if (!root)
        rcv__reply_error(rep, 400, "malformed JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                         jerr.column);
    return root;
}

/* Returns the events array of root, or NULL after filling rep with 400. */
static json_t *events_of(rcv__app *app, json_t *root, rcv__reply *rep)
{
    json_t *events = json_object_get(root, "events");
    if (!json_is_array(events)) {
        rcv__reply_error(rep, 400, "body must be a JSON object with an \"events\" array");
        return NULL;
    }
    if ((int64_t)json_array_size(events) > app->cfg.max_events) {
        rcv__reply_error(rep, 400, "too many events: %zu > %lld per batch", json_array_size(events),
                         (long long)app->cfg.max_events);
        return NULL;
    }
    return events;
}

/* True when a poison event_id is in the batch. */
static int has_poison(rcv__app *app, json_t *events)
{
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev)
    {
        const char *id = json_string_value(json_object_get(ev, "event_id"));
        if (id && rcv__faults_is_poison(app->faults, id))
            return 1;
    }
    return 0;
}

/* Per-batch working state. */
typedef struct batch {
    size_t n;
    char (*errors)[160]; /* errors[i][0] != 0: event i is invalid */
    rcv__row *rows;
    size_t *row_of; /* index into rows for valid events */
    size_t nrows;
    char *arena; /* compact JSON of the valid events, back to back */
    size_t arena_len, arena_cap;
} batch;

static void batch_free(batch *b)
{
    free(b->errors);
    free(b->rows);
    free(b->row_of);
    free(b->arena);
}

/* Appends the compact JSON of ev to the arena; returns its offset or -1. */
static long long arena_dump(batch *b, const json_t *ev)
{
    for (;;) {
        size_t room = b->arena_cap - b->arena_len;
        size_t need = json_dumpb(ev, b->arena + b->arena_len, room, JSON_COMPACT);
        if (need == 0)
            return -1;
        if (need <= room) {
            long long off = (long long)b->arena_len;
            b->arena_len += need;
            return off;
        }
        size_t ncap = (b->arena_cap + need) * 2;
        char *na = realloc(b->arena, ncap);
        if (!na)
            return -1;
        b->arena = na;
        b->arena_cap = ncap;
    }
}

/* Validates every event and serialises the valid ones into rows. */
static int batch_prepare(batch *b, json_t *events)
{
    b->n = json_array_size(events);
    b->errors = calloc(b->n + 1, sizeof *b->errors);
    b->rows = calloc(b->n + 1, sizeof *b->rows);
    b->row_of = calloc(b->n + 1, sizeof *b->row_of);
    b->arena_cap = 512 * b->n + 1024;
    b->arena = malloc(b->arena_cap);
    if (!b->errors || !b->rows || !b->row_of || !b->arena)
        return -1;
    size_t *offsets = b->row_of; /* offsets first, rebased below */
    for (size_t i = 0; i < b->n; i++) {
        json_t *ev = json_array_get(events, i);
        if (receiver_validate_event(ev, b->errors[i], sizeof b->errors[i]) != 0)
            continue;
        long long off = arena_dump(b, ev);
        if (off < 0)
            return -1;
        rcv__row *row = &b->rows[b->nrows];
        row->event_id = json_string_value(json_object_get(ev, "event_id"));
        row->event_type = json_string_value(json_object_get(ev, "event_type"));
        row->team_slug = json_string_value(json_object_get(ev, "team_slug"));
        offsets[b->nrows] = (size_t)off;
        b->nrows++;
    }
    for (size_t r = 0; r < b->nrows; r++) {
        size_t end = r + 1 < b->nrows ? offsets[r + 1] : b->arena_len;
        b->rows[r].data = b->arena + offsets[r];
        b->rows[r].data_len = end - offsets[r];
    }
    return 0;
}

/* event_id of ev as JSON (a string or null). */
static json_t *id_json(json_t *ev)
{
    json_t *id = json_object_get(ev, "event_id");
    return json_is_string(id) ? json_incref(id) : json_null();
}

/* --strict: 400 with details for the invalid events, nothing stored. */
static int strict_reject(batch *b, json_t *events, rcv__reply *rep)
{
    json_t *details = json_array();
    for (size_t i = 0; i < b->n; i++) {
        if (b->errors[i][0])
            json_array_append_new(details, json_pack("{s:o, s:s}", "event_id",
                                                     id_json(json_array_get(events, i)), "error",
                                                     b->errors[i]));
    }
    size_t bad = json_array_size(details);
    if (bad == 0) {
        json_decref(details);
        return 0;
    }
    rep->status = 400;
    rep->body = json_pack("{s:s, s:o}", "error", "some events are invalid", "details", details);
    return (int)bad;
}

/* Builds the 200 results in event order and updates the stats. */
static void batch_results(rcv__app *app, batch *b, json_t *events, rcv__reply *rep)
{
    json_t *results = json_array();
    int64_t ok = 0, dup = 0, bad = 0;
    size_t r = 0;
    for (size_t i = 0; i < b->n; i++) {
        json_t *ev = json_array_get(events, i);
        json_t *res;
        if (b->errors[i][0]) {
            res = json_pack("{s:o, s:s, s:s}", "event_id", id_json(ev), "status", "rejected",
                            "error_message", b->errors[i]);
            bad++;
        } else {
            int stored = b->rows[r++].inserted;
            res = json_pack("{s:o, s:s}", "event_id", id_json(ev), "status",
                            stored ? "success" : "duplicate");
            stored ? ok++ : dup++;
        }
        json_array_append_new(results, res);
    }
    rcv__stats_batch(&app->stats, (int64_t)b->n, ok, dup, bad);
    rep->status = 200;
    rep->body = json_pack("{s:o}", "results", results);
}

/* Validates, stores and answers one parsed batch. */
static void store_batch(rcv__app *app, json_t *events, rcv__reply *rep)
{
    batch b = {0};
    char msg[256];
    if (batch_prepare(&b, events) != 0) {
        rcv__reply_error(rep, 500, "out of memory");
    } else if (app->cfg.strict && strict_reject(&b, events, rep) > 0) {
        rcv__stats_batch(&app->stats, 0, 0, 0, 0);
    } else if (rcv__store_insert_batch(app->store, b.rows, b.nrows, sk__wall_ms(), msg,
                                       sizeof msg) != 0) {
        rcv__reply_error(rep, 503, "%s", msg);
        rep->retry_after = 1;
    } else {
        batch_results(app, &b, events, rep);
    }
    batch_free(&b);
}

/* 412 when the client names a protocol other than 2.x. */
static int protocol_refused(const rcv__request *rq, rcv__reply *rep)
{
    if (!rq->protocol || strncmp(rq->protocol, "2.", 2) == 0 || strcmp(rq->protocol, "2") == 0)
        return 0;
    rep->status = 412;
    rep->body =
        json_pack("{s:s, s:s}", "error", "unsupported sync protocol version", "upgrade_guidance",
                  "this server speaks sync protocol 2.x; install a spec-kitty release "
                  "that sends X-Spec-Kitty-Sync-Protocol: 2.0");
    return 1;
}

void rcv__handle_batch(rcv__app *app, const rcv__request *rq, rcv__reply *rep)
{
    char user[128], team[128];
    if (rcv__authenticate(app, rq, user, sizeof user, team, sizeof team, rep) != 0 ||
        protocol_refused(rq, rep))
        return;
    if (rq->body_too_large) {
        rcv__reply_error(rep, 413, "request body too large (limit %lld bytes)",
                         (long long)app->cfg.max_body_bytes);
        return;
    }
    if (!is_json_type(rq->content_type)) {
        rcv__reply_error(rep, 400, "Content-Type must be application/json");
        return;
    }
    int64_t wait_ms = 0;
    const char *key = app->cfg.no_auth ? rq->client : user;
    if (rcv__ratelimit_check(app->ratelimit, key, sk__mono_ms(), &wait_ms)) {
        rcv__reply_error(rep, 429, "rate limit: one batch per %lld ms",
                         (long long)app->cfg.rate_limit_ms);
        rep->retry_after = (wait_ms + 999) / 1000;
        return;
    }
    json_t *root = rcv__batch_decode(app, rq, rep);
    json_t *events = root ? events_of(app, root, rep) : NULL;
    if (events) {
        rep->events = (int)json_array_size(events);
        if (has_poison(app, events))
            rcv__reply_error(rep, 400, "batch rejected");
        else
            store_batch(app, events, rep);
    }
    json_decref(root);
}
