/* POST /api/v1/events/batch/ (CONTRACT.md §3). */
#include "receiver.h"
#include "jalloc.h"
#include "jscan.h"
#include "event.h"

#include "common.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <libdeflate.h>

enum { INFLATE_OK = 0, INFLATE_TOO_LARGE = 1, INFLATE_BAD = 2 };

/*
 * Gunzips in[0..len) into a new buffer of at most limit bytes (*out, *out_len,
 * NUL-terminated). Truncated or corrupt input, or bytes after the gzip stream,
 * are INFLATE_BAD. Whole-buffer libdeflate (~2x zlib's inflate on a batch,
 * bench/gzip): the trailer states the size, so one allocation, of that size
 * when it is within the limit (a truncated body's "trailer" is noise, so a
 * size past the limit is only believed once the output really passes it).
 */
static int gunzip(const char *in, size_t len, size_t limit, char **out, size_t *out_len)
{
    size_t cap = limit;
    if (len >= 4) {
        const unsigned char *t = (const unsigned char *)in + len - 4;
        size_t size = (size_t)t[0] | (size_t)t[1] << 8 | (size_t)t[2] << 16 | (size_t)t[3] << 24;
        cap = size < limit ? size : limit;
    }
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    char *buf = d ? malloc(cap + 1) : NULL;
    size_t used = 0, got = 0;
    enum libdeflate_result rc =
        buf ? libdeflate_gzip_decompress_ex(d, in, len, buf, cap, &used, &got) : LIBDEFLATE_BAD_DATA;
    libdeflate_free_decompressor(d);
    /* Out of room below the limit: more output than the trailer states, a
       corrupt stream (or one past 4 GiB, refused either way). */
    int result = rc == LIBDEFLATE_SUCCESS && used == len                   ? INFLATE_OK
                 : rc == LIBDEFLATE_INSUFFICIENT_SPACE && buf && cap == limit ? INFLATE_TOO_LARGE
                                                                        : INFLATE_BAD;
    if (result != INFLATE_OK) {
        free(buf);
        return result;
    }
    buf[got] = '\0';
    *out = buf;
    *out_len = got;
    return INFLATE_OK;
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

/*
 * Undoes the Content-Encoding: *out is the gunzipped body (caller frees) or
 * NULL for identity. Returns 0, or -1 after filling rep with 400/413.
 */
static int decode_encoding(rcv__app *app, const rcv__request *rq, char **out, size_t *len,
                           rcv__reply *rep)
{
    const char *enc = rq->content_encoding;
    *out = NULL;
    *len = rq->body_len;
    if (!enc || strcasecmp(enc, "identity") == 0)
        return 0;
    if (strcasecmp(enc, "gzip") != 0 && strcasecmp(enc, "x-gzip") != 0) {
        rcv__reply_error(rep, 400, "unsupported Content-Encoding (use gzip or identity)");
        return -1;
    }
    int rc = gunzip(rq->body, rq->body_len, (size_t)app->cfg.max_body_bytes, out, len);
    if (rc == INFLATE_TOO_LARGE)
        rcv__reply_error(rep, 413, "request body too large once decompressed");
    else if (rc != INFLATE_OK)
        rcv__reply_error(rep, 400, "invalid gzip body (corrupt or truncated)");
    return rc == INFLATE_OK ? 0 : -1;
}

json_t *rcv__batch_decode(rcv__app *app, const rcv__request *rq, rcv__reply *rep)
{
    char *plain = NULL;
    size_t len = 0;
    if (decode_encoding(app, rq, &plain, &len, rep) != 0)
        return NULL;
    json_t *root = json_loadb(plain ? plain : rq->body, len, 0, NULL);
    free(plain);
    return root;
}

/* A growable text buffer for the results document. */
typedef struct textbuf {
    char *p;
    size_t len, cap;
    int oom;
} textbuf;

static void text_add(textbuf *t, const char *s, size_t n)
{
    if (t->oom)
        return;
    if (t->len + n + 1 > t->cap) {
        size_t ncap = (t->cap + n + 1) * 2;
        char *np = realloc(t->p, ncap);
        if (!np) {
            t->oom = 1;
            return;
        }
        t->p = np;
        t->cap = ncap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

static void text_str(textbuf *t, const char *s)
{
    text_add(t, s, strlen(s));
}

/*
 * Appends s as a JSON string literal (quotes, escapes). Bytes that are not
 * UTF-8 become U+FFFD: error texts quote event values cut at a byte count,
 * possibly inside a character, and one such byte would make the whole
 * results document unreadable to the client.
 */
static void text_json_string(textbuf *t, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    text_add(t, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        size_t utf8 = ch >= 0x80 ? rcv__utf8_len(s + i, n - i) : 0;
        if (utf8) {
            i += utf8 - 1;
            continue;
        }
        if (ch >= 0x20 && ch < 0x80 && ch != '"' && ch != '\\')
            continue;
        text_add(t, s + run, i - run);
        char esc[7] = {'\\', (char)ch, 0};
        if (ch >= 0x80) {
            memcpy(esc, "\\ufffd", 7);
        } else if (ch < 0x20) {
            esc[1] = 'u';
            memcpy(esc + 2, "00", 2);
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 15];
        }
        text_add(t, esc, strlen(esc));
        run = i + 1;
    }
    text_add(t, s + run, n - run);
    text_add(t, "\"", 1);
}

/* Appends the event_id of ev (a string, else null). */
static void text_event_id(textbuf *t, const json_t *ev)
{
    const json_t *id = json_object_get(ev, "event_id");
    if (json_is_string(id))
        text_json_string(t, json_string_value(id), json_string_length(id));
    else
        text_str(t, "null");
}

/* Per-batch working state: one parsed tree per event, the rows to store. */
typedef struct batch {
    size_t n;
    rcv__span *spans;
    json_t **events;     /* NULL where the event could not be decoded */
    char (*errors)[160]; /* errors[i][0] != 0: event i is invalid */
    rcv__row *rows;
    char (*ids)[SK__EVENT_ID_MAX]; /* ids[r]: the normal form of rows[r].event_id */
    size_t nrows;
    int poison;
} batch;

static void batch_free(batch *b)
{
    for (size_t i = 0; b->events && i < b->n; i++)
        json_decref(b->events[i]);
    free(b->events);
    free(b->errors);
    free(b->rows);
    free(b->ids);
    free(b->spans);
    rcv__jalloc_reset(); /* the event trees lived in this thread's arena */
}

/* Builds and validates every event; valid ones become rows (data = the bytes received). */
static int batch_prepare(rcv__app *app, batch *b, const char *body)
{
    b->events = calloc(b->n + 1, sizeof *b->events);
    b->errors = calloc(b->n + 1, sizeof *b->errors);
    b->rows = calloc(b->n + 1, sizeof *b->rows);
    b->ids = calloc(b->n + 1, sizeof *b->ids);
    if (!b->events || !b->errors || !b->rows || !b->ids)
        return -1;
    /* The trees are read-only until batch_free: build them in the arena. */
    rcv__jalloc_enter();
    for (size_t i = 0; i < b->n; i++) {
        const char *text = body + b->spans[i].off;
        json_t *ev = b->events[i] = rcv__scan_build(text, b->spans[i].len);
        if (!ev) {
            snprintf(b->errors[i], sizeof b->errors[i],
                     "event: undecodable (string escape or "
                     "number out of range)");
            continue;
        }
        const char *id = json_string_value(json_object_get(ev, "event_id"));
        if (id && rcv__faults_is_poison(app->faults, id))
            b->poison = 1;
        sk__err verr;
        if (sk__event_validate(ev, &verr) != SK_OK) { /* the host's rules: one set for both */
            snprintf(b->errors[i], sizeof b->errors[i], "%.159s", verr.msg);
            continue;
        }
        /* Stored (and deduplicated) by the normal form of the id, as the server does;
         * the results echo the id as the client sent it. */
        sk__event_id_normalize(id, b->ids[b->nrows]);
        rcv__row *row = &b->rows[b->nrows];
        row->event_id = b->ids[b->nrows++];
        row->event_type = json_string_value(json_object_get(ev, "event_type"));
        row->team_slug = json_string_value(json_object_get(ev, "team_slug"));
        row->data = text;
        row->data_len = b->spans[i].len;
    }
    rcv__jalloc_leave();
    return 0;
}

/* --strict: 400 with details for the invalid events, nothing stored. */
static int strict_reject(batch *b, rcv__reply *rep)
{
    json_t *details = json_array();
    for (size_t i = 0; i < b->n; i++) {
        if (!b->errors[i][0])
            continue;
        json_t *id = json_object_get(b->events[i], "event_id");
        /* Copies (not references): the event trees die with the arena. */
        json_t *id_copy = json_is_string(id) ? json_string(json_string_value(id)) : json_null();
        json_array_append_new(details,
                              json_pack("{s:o, s:s}", "event_id", id_copy, "error", b->errors[i]));
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

/* Writes the 200 results (in event order) as text and updates the stats. */
static void batch_results(rcv__app *app, batch *b, rcv__reply *rep)
{
    textbuf t = {0};
    int64_t ok = 0, dup = 0, bad = 0;
    size_t r = 0;
    text_str(&t, "{\"results\":[");
    for (size_t i = 0; i < b->n; i++) {
        text_str(&t, i ? ",{\"event_id\":" : "{\"event_id\":");
        text_event_id(&t, b->events[i]);
        if (b->errors[i][0]) {
            text_str(&t, ",\"status\":\"rejected\",\"error_message\":");
            text_json_string(&t, b->errors[i], strlen(b->errors[i]));
            text_str(&t, "}");
            bad++;
        } else if (b->rows[r++].inserted) {
            text_str(&t, ",\"status\":\"success\"}");
            ok++;
        } else {
            text_str(&t, ",\"status\":\"duplicate\"}");
            dup++;
        }
    }
    text_str(&t, "]}");
    if (t.oom) {
        free(t.p);
        rcv__reply_error(rep, 500, "out of memory");
        return;
    }
    rcv__stats_batch(&app->stats, (int64_t)b->n, ok, dup, bad);
    rep->status = 200;
    rep->raw = t.p;
}

/* Validates, stores and answers the events found in body. */
static void store_batch(rcv__app *app, batch *b, const char *body, rcv__reply *rep)
{
    char msg[256];
    if (batch_prepare(app, b, body) != 0) {
        rcv__reply_error(rep, 500, "out of memory");
    } else if (b->poison) {
        rcv__reply_error(rep, 400, "batch rejected");
    } else if (app->cfg.strict && strict_reject(b, rep) > 0) {
        rcv__stats_batch(&app->stats, 0, 0, 0, 0);
    } else if (rcv__store_insert_batch(app->store, b->rows, b->nrows, sk__wall_ms(), msg,
                                       sizeof msg) != 0) {
        rcv__reply_error(rep, 503, "%s", msg);
        rep->retry_after = 1;
    } else {
        batch_results(app, b, rep);
    }
}

/* Decodes (gzip/identity), scans and stores the body; fills rep. */
static void process_body(rcv__app *app, const rcv__request *rq, rcv__reply *rep)
{
    const char *plain = rq->body;
    size_t len = rq->body_len;
    char *inflated = NULL;
    if (decode_encoding(app, rq, &inflated, &len, rep) != 0)
        return;
    if (inflated)
        plain = inflated;
    batch b = {0};
    char msg[160];
    int rc = rcv__scan_batch(plain, len, &b.spans, &b.n, msg, sizeof msg);
    if (rc == RCV_SCAN_SYNTAX)
        rcv__reply_error(rep, 400, "malformed JSON: %s", msg);
    else if (rc == RCV_SCAN_NO_EVENTS)
        rcv__reply_error(rep, 400, "body must be a JSON object with an \"events\" array");
    else if (rc != RCV_SCAN_OK)
        rcv__reply_error(rep, 500, "out of memory");
    else if ((int64_t)b.n > app->cfg.max_events)
        rcv__reply_error(rep, 400, "too many events: %zu > %lld per batch", b.n,
                         (long long)app->cfg.max_events);
    else {
        rep->events = (int)b.n;
        store_batch(app, &b, plain, rep);
    }
    batch_free(&b);
    free(inflated);
}

json_t *rcv__protocol_refusal(const char *error_code, const char *description,
                              const char *guidance)
{
    return json_pack("{s:s, s:s, s:{s:s, s:s}, s:s, s:s}", "error_code", error_code,
                     "error_description", description, "sync_protocol", "supported", "2.x",
                     "upgrade_guidance", guidance, "error", description, "upgrade_guidance",
                     guidance);
}

/*
 * Copies at most max bytes of the header value s into out (max + 1 bytes) as
 * UTF-8: whole characters only, and a byte that begins none becomes U+FFFD.
 * Header values are bytes (HTTP passes obs-text), and json_pack refuses a
 * string that is not UTF-8: the answer would go out as "{}".
 */
static void header_quote(const char *s, size_t max, char *out)
{
    static const char replacement[] = "\xef\xbf\xbd";
    size_t o = 0;
    for (size_t i = 0; s[i];) {
        unsigned char ch = (unsigned char)s[i];
        size_t n = ch < 0x80 ? 1 : rcv__utf8_len(s + i, strnlen(s + i, 4));
        size_t len = n ? n : sizeof replacement - 1;
        if (o + len > max)
            break;
        memcpy(out + o, n ? s + i : replacement, len);
        o += len;
        i += n ? n : 1;
    }
    out[o] = '\0';
}

/* 412 when the client names a protocol other than 2.x: too old below 2, too
 * new above, unparseable when the header holds no major version. */
static int protocol_refused(const rcv__request *rq, rcv__reply *rep)
{
    const char *p = rq->protocol;
    if (!p || strncmp(p, "2.", 2) == 0 || strcmp(p, "2") == 0)
        return 0;
    char *end = NULL;
    long major = isdigit((unsigned char)*p) ? strtol(p, &end, 10) : -1;
    int parsed = end && end != p && (*end == '\0' || *end == '.');
    char quoted[33], description[160];
    header_quote(p, sizeof quoted - 1, quoted);
    snprintf(description, sizeof description, "client sync protocol \"%s\" is %s", quoted,
             !parsed     ? "not a version"
             : major < 2 ? "older than 2.0"
                         : "newer than 2.x");
    rep->status = 412;
    rep->body = rcv__protocol_refusal(!parsed ? "client-protocol-unparseable"
                                      : major < 2 ? "client-too-old"
                                                  : "client-too-new",
                                      description,
                                      "this server speaks sync protocol 2.x; install a spec-kitty "
                                      "release that sends X-Spec-Kitty-Sync-Protocol: 2.0");
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
    process_body(app, rq, rep);
}
