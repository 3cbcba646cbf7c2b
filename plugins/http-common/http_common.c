/*
 * The wire format both HTTP transports share: gzip request body, Retry-After,
 * and the mapping of every answer in CONTRACT.md §3 to outcomes and hints,
 * all pure; plus the small helpers both plugins need that do touch the outside
 * (host upcalls for credentials, options and logs, the ca_file access check).
 */
#include "http_common.h"

#include <cjson/cJSON.h>
#include <libdeflate.h>

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* Rejection categories that will not change on a retry (CONTRACT.md §3). */
static const char *const hc_permanent_categories[] = {
    "project_not_admitted",
    "project_not_consented",
    "project_refused",
};

void hc_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(cv, mu, &ts);
}

void hc_fmt(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    if (cap == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

int hc_buf_reserve(hc_buf *buf, size_t extra)
{
    if (extra <= buf->cap - buf->len)
        return 0;
    size_t cap = buf->cap ? buf->cap : 4096;
    while (cap - buf->len < extra) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    unsigned char *grown = realloc(buf->data, cap);
    if (!grown)
        return -1;
    buf->data = grown;
    buf->cap = cap;
    return 0;
}

int hc_buf_append(hc_buf *buf, const void *bytes, size_t n)
{
    if (n == 0)
        return 0;
    if (hc_buf_reserve(buf, n) != 0)
        return -1;
    memcpy(buf->data + buf->len, bytes, n);
    buf->len += n;
    return 0;
}

int hc_buf_append_capped(hc_buf *buf, const void *bytes, size_t n, size_t cap)
{
    return buf->len + n > cap || hc_buf_append(buf, bytes, n) != 0;
}

void hc_buf_free(hc_buf *buf)
{
    free(buf->data);
    buf->data = NULL;
    buf->len = buf->cap = 0;
}

int hc_events_json(const sk_batch *batch, hc_buf *out)
{
    static const char head[] = "{\"events\":[";
    static const char tail[] = "]}";
    /* head, tail, a comma between events, the events: reserved once, exactly. */
    size_t size = sizeof head - 1 + sizeof tail - 1 + (batch->count ? batch->count - 1 : 0);
    for (uint32_t i = 0; i < batch->count; i++)
        size += batch->events[i].json_len;
    out->len = 0;
    if (hc_buf_reserve(out, size) != 0)
        return -1;
    unsigned char *at = out->data;
    memcpy(at, head, sizeof head - 1);
    at += sizeof head - 1;
    for (uint32_t i = 0; i < batch->count; i++) {
        if (i > 0)
            *at++ = ',';
        memcpy(at, batch->events[i].json, batch->events[i].json_len);
        at += batch->events[i].json_len;
    }
    memcpy(at, tail, sizeof tail - 1);
    out->len = size;
    return 0;
}

/*
 * One libdeflate call over the whole body: ~2x zlib's streaming deflate at
 * level 1 and 1.5x at 6, and smaller from level 3 up (bench/gzip).
 */
int hc_gzip(const void *bytes, size_t n, int level, hc_buf *out)
{
    struct libdeflate_compressor *c = libdeflate_alloc_compressor(level);
    int rc = -1;
    out->len = 0;
    if (c && hc_buf_reserve(out, libdeflate_gzip_compress_bound(c, n)) == 0) {
        out->len = libdeflate_gzip_compress(c, bytes, n, out->data, out->cap);
        rc = out->len ? 0 : -1;
    }
    libdeflate_free_compressor(c);
    return rc;
}

int hc_gzip_events(const sk_batch *batch, int level, hc_buf *out)
{
    hc_buf json = {0};
    int rc = hc_events_json(batch, &json) == 0 ? hc_gzip(json.data, json.len, level, out) : -1;
    hc_buf_free(&json);
    return rc;
}

/* Month number 0..11 of a three-letter English name, or -1. */
static int hc_month(const char *name)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    for (int m = 0; m < 12; m++)
        if (!strncasecmp(name, months + 3 * m, 3) && name[3] == '\0')
            return m;
    return -1;
}

/*
 * Parses an HTTP-date in the three forms RFC 9110 §5.6.7 asks a recipient to
 * accept: IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", RFC 850 "Sunday,
 * 06-Nov-94 08:49:37 GMT" and asctime "Sun Nov  6 08:49:37 1994". Always UTC.
 */
static int hc_http_date(const char *text, time_t *out)
{
    char wday[16], mon[4], zone[4];
    int d, y, hh, mm, ss, used = 0;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (sscanf(text, "%15[A-Za-z], %2d %3s %4d %2d:%2d:%2d %3s%n", wday, &d, mon, &y, &hh, &mm,
               &ss, zone, &used) == 8 ||
        sscanf(text, "%15[A-Za-z], %2d-%3s-%2d %2d:%2d:%2d %3s%n", wday, &d, mon, &y, &hh, &mm,
               &ss, zone, &used) == 8) {
        if (strcmp(zone, "GMT") != 0)
            return -1;
        if (y < 100) /* RFC 850's two-digit year: the nearest century (RFC 9110) */
            y += y < 70 ? 2000 : 1900;
    } else if (sscanf(text, "%15[A-Za-z] %3s %2d %2d:%2d:%2d %4d%n", wday, mon, &d, &hh, &mm, &ss,
                      &y, &used) != 7) {
        return -1;
    }
    /* Nothing may follow the date, and the month must be a real one. */
    tm.tm_mon = hc_month(mon);
    if (text[used] != '\0' || tm.tm_mon < 0 || d < 1 || d > 31 || hh > 23 || mm > 59 || ss > 60)
        return -1;
    tm.tm_mday = d;
    tm.tm_year = y - 1900;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    time_t when = timegm(&tm);
    if (when == (time_t)-1)
        return -1;
    *out = when;
    return 0;
}

int hc_retry_after_ms(const char *value, time_t now, int64_t *ms)
{
    if (!value)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    size_t len = strlen(value);
    while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t'))
        len--;
    if (len == 0)
        return -1;
    size_t digits = strspn(value, "0123456789");
    if (digits >= len) {
        /* delta-seconds; stop accumulating once past the cap (no overflow). */
        int64_t total = 0;
        for (size_t i = 0; i < len && total <= HC_RETRY_AFTER_CAP_MS; i++)
            total = total * 10 + (value[i] - '0') * 1000;
        *ms = total < HC_RETRY_AFTER_CAP_MS ? total : HC_RETRY_AFTER_CAP_MS;
        return 0;
    }
    char date[128];
    if (len >= sizeof date)
        return -1;
    memcpy(date, value, len);
    date[len] = '\0';
    time_t when;
    if (hc_http_date(date, &when) != 0)
        return -1;
    int64_t delta = ((int64_t)when - (int64_t)now) * 1000;
    *ms = delta < 0 ? 0 : delta > HC_RETRY_AFTER_CAP_MS ? HC_RETRY_AFTER_CAP_MS : delta;
    return 0;
}

sk_outcome hc_status_outcome(const char *status, const char *category)
{
    if (!status)
        return SK_OUTCOME_TRANSIENT;
    if (!strcasecmp(status, "success") || !strcasecmp(status, "accepted") ||
        !strcasecmp(status, "warning"))
        return SK_OUTCOME_DELIVERED;
    if (!strcasecmp(status, "duplicate"))
        return SK_OUTCOME_DUPLICATE;
    if (!strcasecmp(status, "pending") || !strcasecmp(status, "queued"))
        return SK_OUTCOME_PENDING;
    if (!strcasecmp(status, "rejected") || !strcasecmp(status, "error")) {
        for (size_t i = 0; category && i < sizeof hc_permanent_categories / sizeof(char *); i++)
            if (!strcmp(category, hc_permanent_categories[i]))
                return SK_OUTCOME_REJECTED_PERMANENT;
        return SK_OUTCOME_REJECTED;
    }
    return SK_OUTCOME_TRANSIENT;
}

/*
 * Copies server text into a fixed buffer as one printable line: control
 * characters become spaces, runs of spaces collapse, and truncation never
 * splits a UTF-8 sequence (the host prints these strings).
 */
static void hc_copy_line(char *dst, size_t cap, const char *src, size_t len)
{
    size_t o = 0;
    if (cap == 0)
        return;
    for (size_t i = 0; i < len && o + 1 < cap; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c < 0x20 || c == 0x7f)
            c = ' ';
        if (c == ' ' && (o == 0 || dst[o - 1] == ' '))
            continue;
        dst[o++] = (char)c;
    }
    /* Drop a cut multi-byte sequence: back up to its lead byte if incomplete. */
    size_t lead = o;
    while (lead > 0 && ((unsigned char)dst[lead - 1] & 0xc0) == 0x80)
        lead--;
    if (lead > 0 && ((unsigned char)dst[lead - 1] & 0x80)) {
        unsigned char b = (unsigned char)dst[lead - 1];
        size_t need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
        if (o - (lead - 1) < need)
            o = lead - 1;
    }
    while (o > 0 && dst[o - 1] == ' ')
        o--;
    dst[o] = '\0';
}

static void hc_copy_cstr(char *dst, size_t cap, const char *src)
{
    hc_copy_line(dst, cap, src, strlen(src));
}

/* Non-zero when s[0..len) is well-formed UTF-8 (no overlongs, surrogates or
   values past U+10FFFF): an answer that is not is no JSON (RFC 8259 §8.1),
   and its strings would reach the host's messages. */
static int hc_utf8_valid(const unsigned char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        unsigned c = s[i];
        size_t n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
                                                       : c >= 0xf0 && c <= 0xf4   ? 4
                                                                                  : 0;
        if (n == 0 || len - i < n)
            return 0;
        for (size_t k = 1; k < n; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
        unsigned c1 = n > 1 ? s[i + 1] : 0x80;
        if ((c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 > 0x9f) || (c == 0xf0 && c1 < 0x90) ||
            (c == 0xf4 && c1 > 0x8f))
            return 0;
        i += n;
    }
    return 1;
}

/*
 * Parses JSON text (cJSON: ~0.2 µs per result entry where Jansson took ~1 µs,
 * mostly its allocations; bench/README.md). NULL unless the whole text is
 * one JSON value in valid UTF-8, and an object or array unless any_value.
 * Free with cJSON_Delete.
 */
static cJSON *hc_parse(const char *body, size_t len, int any_value)
{
    if (!body || !len || !hc_utf8_valid((const unsigned char *)body, len))
        return NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    while (root && end < body + len && strchr(" \t\r\n", *end) && *end)
        end++;
    if (root && (end != body + len || /* something after the value */
                 (!any_value && !cJSON_IsObject(root) && !cJSON_IsArray(root)))) {
        cJSON_Delete(root);
        root = NULL;
    }
    return root;
}

/* A member of obj (the first of that name), or NULL. */
static const cJSON *hc_get(const cJSON *obj, const char *key)
{
    return cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
}

/* A string member of obj, or NULL. */
static const char *hc_str(const cJSON *obj, const char *key)
{
    const cJSON *v = hc_get(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The first human-readable error field of a JSON error body, or NULL. */
static const char *hc_error_field(const cJSON *root)
{
    static const char *const keys[] = {"error", "detail", "message", "error_message"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *s = hc_str(root, keys[i]);
        if (s && *s)
            return s;
    }
    return NULL;
}

/* The server text of an answer whose body is already parsed (root may be NULL). */
static void hc_server_text_of(const cJSON *root, const char *body, size_t len, char *out,
                              size_t cap)
{
    const char *field = cJSON_IsObject(root) ? hc_error_field(root) : NULL;
    if (field)
        hc_copy_cstr(out, cap, field);
    else
        hc_copy_line(out, cap, body ? body : "", body ? len : 0);
}

void hc_server_text(const char *body, size_t len, char *out, size_t cap)
{
    if (cap == 0)
        return;
    cJSON *root = hc_parse(body, len, 0);
    hc_server_text_of(root, body, len, out, cap);
    cJSON_Delete(root);
}

int hc_probe_answer(long status, const char *body, size_t len, const char *protocol,
                    const char *url, char *reason, size_t reason_cap)
{
    char text[256];
    hc_server_text(body, len, text, sizeof text);
    hc_fmt(reason, reason_cap, "%s %ld from %s%s%s", protocol, status, url,
           status >= 300 && *text ? ": " : "", status >= 300 ? text : "");
    if (status >= 200 && status < 300)
        return SK_PROBE_CONNECTED;
    if (status == 401 || status == 403)
        return SK_PROBE_NOT_AUTHENTICATED;
    return SK_PROBE_SERVER_UNAVAILABLE;
}

/*
 * Finds the batch positions an answer entry names. A server that answers in
 * the batch's order names, in its k-th entry, the event at position k: that
 * is checked first, with one comparison. Any other entry is looked up among
 * the events sorted by id, sorted only when the first such entry comes, so a
 * 1000-entry answer maps in O(n) in order and O(n log n) in any other.
 */
typedef struct hc_index_entry {
    const char *id;
    uint32_t pos;
} hc_index_entry;

typedef struct hc_index {
    const sk_batch *batch;
    hc_index_entry *sorted; /* once an entry came out of order; NULL before */
    int unsorted;           /* out of memory for sorting: a linear scan */
} hc_index;

static int hc_index_cmp(const void *a, const void *b)
{
    return strcmp(((const hc_index_entry *)a)->id, ((const hc_index_entry *)b)->id);
}

static void hc_index_sort(hc_index *ix)
{
    const sk_batch *batch = ix->batch;
    ix->sorted = malloc(sizeof *ix->sorted * (batch->count ? batch->count : 1));
    if (!ix->sorted) {
        ix->unsorted = 1;
        return;
    }
    for (uint32_t i = 0; i < batch->count; i++) {
        ix->sorted[i].id = batch->events[i].event_id;
        ix->sorted[i].pos = i;
    }
    qsort(ix->sorted, batch->count, sizeof *ix->sorted, hc_index_cmp);
}

static void hc_index_free(hc_index *ix)
{
    free(ix->sorted);
}

/*
 * Calls fn for the batch position an answer entry names: `at`, the entry's
 * own place in the answer, when the event there has that id (an answer in
 * order); otherwise every position holding the id (normally one). Returns
 * how many positions matched.
 */
typedef void (*hc_visit_fn)(sk_batch_result *result, uint32_t pos, void *arg);

static int hc_index_visit(hc_index *ix, const char *id, uint32_t at, hc_visit_fn fn,
                          sk_batch_result *result, void *arg)
{
    int hits = 0;
    if (!id)
        return 0;
    if (at < ix->batch->count && !strcmp(ix->batch->events[at].event_id, id)) {
        fn(result, at, arg);
        return 1;
    }
    if (!ix->sorted && !ix->unsorted)
        hc_index_sort(ix);
    if (ix->unsorted) {
        for (uint32_t i = 0; i < ix->batch->count; i++)
            if (!strcmp(ix->batch->events[i].event_id, id)) {
                fn(result, i, arg);
                hits++;
            }
        return hits;
    }
    hc_index_entry key = {id, 0};
    const hc_index_entry *hit =
        bsearch(&key, ix->sorted, ix->batch->count, sizeof key, hc_index_cmp);
    if (!hit)
        return 0;
    const hc_index_entry *first = hit;
    while (first > ix->sorted && !strcmp(first[-1].id, id))
        first--;
    const hc_index_entry *end = ix->sorted + ix->batch->count;
    for (const hc_index_entry *e = first; e < end && !strcmp(e->id, id); e++) {
        fn(result, e->pos, arg);
        hits++;
    }
    return hits;
}

/* An outcome and the server's words about it, applied to one position. */
typedef struct hc_verdict {
    sk_outcome outcome;
    const char *message;
} hc_verdict;

static void hc_apply_verdict(sk_batch_result *result, uint32_t pos, void *arg)
{
    const hc_verdict *v = arg;
    result->events[pos].outcome = v->outcome;
    hc_copy_cstr(result->events[pos].message, SK_EVENT_MESSAGE_MAX, v->message ? v->message : "");
}

/* Every event transient with no message, no hints: nothing known yet. */
static void hc_result_reset(const sk_batch *batch, sk_batch_result *result, long status)
{
    uint32_t n = result->count < batch->count ? result->count : batch->count;
    for (uint32_t i = 0; i < n; i++) {
        result->events[i].outcome = SK_OUTCOME_TRANSIENT;
        result->events[i].message[0] = '\0';
    }
    result->hints = SK_HINT_NONE;
    result->retry_after_ms = 0;
    result->status_code = (int32_t)status;
    result->detail[0] = '\0';
}

/* Writes "HTTP <status>: <what>" (or just the status) into result->detail. */
static void hc_detail(sk_batch_result *result, long status, const char *what)
{
    char line[SK_BATCH_DETAIL_MAX];
    if (what && *what)
        hc_fmt(line, sizeof line, "HTTP %ld: %s", status, what);
    else
        hc_fmt(line, sizeof line, "HTTP %ld", status);
    hc_copy_cstr(result->detail, sizeof result->detail, line);
}

/* The error text of a results/details entry: error_message, error or reason. */
static const char *hc_entry_reason(const cJSON *entry, char **owned)
{
    static const char *const keys[] = {"error_message", "error", "reason", "message"};
    *owned = NULL;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const cJSON *v = hc_get(entry, keys[i]);
        if (cJSON_IsString(v))
            return v->valuestring;
        if (cJSON_IsObject(v) || cJSON_IsArray(v)) {
            /* Validation errors often come structured; keep them readable. */
            *owned = cJSON_PrintUnformatted(v);
            return *owned;
        }
    }
    return NULL;
}

/* 2xx: map {"results": [...]} (or a bare list) entry by entry. */
static void hc_map_results(const cJSON *root, hc_index *ix, long status,
                           sk_batch_result *result, const char *body, size_t len)
{
    const cJSON *results = cJSON_IsArray(root) ? root : hc_get(root, "results");
    if (!cJSON_IsArray(results)) {
        char text[SK_BATCH_DETAIL_MAX / 2];
        hc_copy_line(text, sizeof text, body ? body : "", body ? len : 0);
        char what[SK_BATCH_DETAIL_MAX];
        hc_fmt(what, sizeof what, "%s answer without a results list: %s",
                   root ? "JSON" : "non-JSON", text);
        hc_detail(result, status, what);
        return;
    }
    const cJSON *entry;
    unsigned strangers = 0;
    uint32_t at = 0;
    cJSON_ArrayForEach(entry, results)
    {
        const char *status_text = hc_str(entry, "status");
        char *owned;
        hc_verdict v = {hc_status_outcome(status_text, hc_str(entry, "error_category")),
                        hc_entry_reason(entry, &owned)};
        if (!v.message && v.outcome == SK_OUTCOME_REJECTED_PERMANENT)
            v.message = hc_str(entry, "error_category");
        if (hc_index_visit(ix, hc_str(entry, "event_id"), at++, hc_apply_verdict, result, &v) == 0)
            strangers++;
        cJSON_free(owned);
    }
    unsigned unknown = 0;
    for (uint32_t k = 0; k < ix->batch->count; k++)
        unknown += result->events[k].outcome == SK_OUTCOME_TRANSIENT;
    if (unknown || strangers) {
        char what[160];
        hc_fmt(what, sizeof what,
                   "%u of %u events missing from the results or with an unknown status", unknown,
                   ix->batch->count);
        size_t n = strlen(what);
        if (strangers)
            hc_fmt(what + n, sizeof what - n, "; %u results name events not sent", strangers);
        hc_detail(result, status, what);
    }
}

/* The details member of a 400 body: a list, or a string holding a JSON
   list, parsed into *owned (free with cJSON_Delete). */
static const cJSON *hc_details(const cJSON *root, cJSON **owned)
{
    const cJSON *d = hc_get(root, "details");
    *owned = NULL;
    if (cJSON_IsString(d))
        return *owned = hc_parse(d->valuestring, strlen(d->valuestring), 1);
    return d;
}

/* 400: reject the events the details name; none named means a poisoned batch. */
static void hc_map_bad_request(const cJSON *root, hc_index *ix, sk_batch_result *result,
                               const char *server_text)
{
    cJSON *parsed;
    const cJSON *details = hc_details(root, &parsed);
    int named = 0;
    /* A list of entries, or one entry sent bare instead of in a list. */
    const cJSON *entry = cJSON_IsArray(details)    ? details->child
                         : cJSON_IsObject(details) ? details
                                                   : NULL;
    for (; entry; entry = cJSON_IsArray(details) ? entry->next : NULL) {
        char *owned;
        hc_verdict v = {SK_OUTCOME_REJECTED, hc_entry_reason(entry, &owned)};
        if (!v.message)
            v.message = "rejected by the server";
        /* Details name the events at fault, in no order of the batch's. */
        named += hc_index_visit(ix, hc_str(entry, "event_id"), UINT32_MAX, hc_apply_verdict,
                                result, &v);
        cJSON_free(owned);
    }
    cJSON_Delete(parsed);
    if (named == 0) {
        result->hints |= SK_HINT_POISONED;
        char what[SK_BATCH_DETAIL_MAX];
        hc_fmt(what, sizeof what, "bad request naming no event of the batch%s%s",
                   *server_text ? ": " : "", server_text);
        hc_detail(result, 400, what);
    } else {
        hc_detail(result, 400, server_text);
    }
}

/* The first non-empty string of a JSON body at key, or in its object parent.key. */
static const char *hc_nonempty(const cJSON *root, const char *parent, const char *key)
{
    const char *s = hc_str(parent ? hc_get(root, parent) : root, key);
    return s && *s ? s : NULL;
}

/*
 * 412 (CONTRACT.md §3), in both shapes: the guidance first (the current
 * shape's sync_protocol.upgrade_guidance, else the older top-level one), then
 * the description (error_description, else the older error); the current
 * shape's error_code goes to the host as it is.
 */
static void hc_map_protocol_mismatch(const cJSON *root, sk_batch_result *result,
                                     const char *server_text)
{
    const char *guidance = hc_nonempty(root, "sync_protocol", "upgrade_guidance");
    if (!guidance)
        guidance = hc_nonempty(root, NULL, "upgrade_guidance");
    const char *description = hc_nonempty(root, NULL, "error_description");
    if (!description)
        description = hc_nonempty(root, NULL, "error");
    char what[SK_BATCH_DETAIL_MAX];
    if (guidance && description && strcmp(guidance, description) != 0)
        hc_fmt(what, sizeof what, "%s (%s)", guidance, description);
    else
        hc_fmt(what, sizeof what, "%s",
                   guidance       ? guidance
                   : description  ? description
                   : *server_text ? server_text
                                  : "sync protocol mismatch");
    result->hints |= SK_HINT_PROTOCOL_MISMATCH;
    hc_detail(result, 412, what);
    const char *code = hc_nonempty(root, NULL, "error_code");
    if (code && SK_BATCH_RESULT_HAS(result, error_code))
        hc_copy_cstr(result->error_code, sizeof result->error_code, code);
}

/* 408, 429, 5xx: transient; a Retry-After becomes a hint. */
static void hc_map_retryable(const hc_answer *a, sk_batch_result *result,
                             const char *server_text)
{
    int64_t ms;
    if (a->retry_after && hc_retry_after_ms(a->retry_after, a->now, &ms) == 0) {
        result->hints |= SK_HINT_RETRY_AFTER;
        result->retry_after_ms = ms;
    }
    hc_detail(result, a->status, server_text);
}

static int hc_mentions_too_large(const char *text)
{
    return strcasestr(text, "too large") != NULL;
}

/* SK_TRANSPORT_OK when the answer said something beyond "all transient". */
static int hc_answer_rc(const sk_batch *batch, const sk_batch_result *result)
{
    if (result->hints)
        return SK_TRANSPORT_OK;
    for (uint32_t i = 0; i < batch->count; i++)
        if (result->events[i].outcome != SK_OUTCOME_TRANSIENT)
            return SK_TRANSPORT_OK;
    return SK_TRANSPORT_FAILED;
}

int hc_map_answer(const hc_answer *a, const sk_batch *batch, sk_batch_result *result)
{
    hc_result_reset(batch, result, a->status);
    cJSON *root = hc_parse(a->body, a->body_len, 0);
    char text[SK_BATCH_DETAIL_MAX - 32];
    hc_server_text_of(root, a->body, a->body_len, text, sizeof text);
    hc_index ix = {.batch = batch};
    long st = a->status;
    if (st >= 200 && st < 300) {
        hc_map_results(root, &ix, st, result, a->body, a->body_len);
    } else if (st == 413 || (st >= 400 && st < 500 && hc_mentions_too_large(text))) {
        result->hints |= SK_HINT_TOO_LARGE;
        hc_detail(result, st, *text ? text : "batch too large");
    } else if (st == 400) {
        hc_map_bad_request(root, &ix, result, text);
    } else if (st == 401) {
        result->hints |= SK_HINT_REAUTHENTICATE;
        hc_detail(result, st, *text ? text : "credentials refused");
    } else if (st == 412) {
        hc_map_protocol_mismatch(root, result, text);
    } else if (st == 408 || st == 429 || st >= 500) {
        hc_map_retryable(a, result, text);
    } else if (st >= 300 && st < 400 && a->location) {
        /* Redirects are not followed: the bearer must not travel elsewhere. */
        char what[SK_BATCH_DETAIL_MAX];
        hc_fmt(what, sizeof what, "redirected to %s (not followed; check server_url)",
                   a->location);
        hc_detail(result, st, what);
    } else {
        /* 403 and anything unexpected: keep the events, show the server's words. */
        hc_detail(result, st, text);
    }
    hc_index_free(&ix);
    cJSON_Delete(root);
    return hc_answer_rc(batch, result);
}

int hc_map_kept_answer(const hc_answer *answer, int truncated, const sk_batch *batch,
                       sk_batch_result *result)
{
    hc_answer a = *answer;
    if (truncated)
        a.body_len = 0;
    int rc = hc_map_answer(&a, batch, result);
    if (truncated && a.status >= 200 && a.status < 300)
        hc_fmt(result->detail, sizeof result->detail, "HTTP %ld: answer over %u bytes ignored",
               a.status, HC_RESPONSE_KEEP_MAX);
    return rc;
}

void hc_redact(char *text, const char *secret)
{
    size_t n = secret ? strlen(secret) : 0;
    if (n < 8)
        return; /* too short to tell a token from ordinary words */
    for (char *hit = strstr(text, secret); hit; hit = strstr(hit + 3, secret)) {
        memcpy(hit, "***", 3);
        memmove(hit + 3, hit + n, strlen(hit + n) + 1);
    }
    /* Server texts are cut to fit the detail and the messages: a cut inside
     * the token leaves its first bytes at the very end. */
    size_t len = strlen(text);
    for (size_t k = (n - 1 < len ? n - 1 : len); k >= 8; k--) {
        if (memcmp(text + len - k, secret, k) == 0) {
            memcpy(text + len - k, "***", 4);
            break;
        }
    }
}

void hc_redact_result(sk_batch_result *result, const char *secret)
{
    hc_redact(result->detail, secret);
    for (uint32_t i = 0; i < result->count; i++)
        hc_redact(result->events[i].message, secret);
}

void hc_free_secret(char *text)
{
    if (text) {
        explicit_bzero(text, strlen(text));
        free(text);
    }
}

const char *hc_auth_secret(const char *auth_value)
{
    if (!auth_value)
        return NULL;
    const char *space = strrchr(auth_value, ' ');
    return space ? space + 1 : auth_value;
}

int hc_auth_value(const sk_host_api *host, char **out, const char **why)
{
    size_t cap = 2048;
    *out = NULL;
    for (int attempt = 0; attempt < 2; attempt++) {
        char *value = calloc(1, cap);
        if (!value) {
            *why = "out of memory";
            return -1;
        }
        size_t n = host->auth_header(host->host_ctx, value, cap);
        if (n < cap && n > 0 && strpbrk(value, "\r\n")) {
            hc_free_secret(value);
            *why = "the Authorization header value holds a line break";
            return -1;
        }
        if (n < cap) {
            if (n > 0)
                *out = value;
            else
                free(value);
            return 0;
        }
        hc_free_secret(value);
        cap = n + 1; /* the host said how much it needs */
    }
    *why = "the Authorization header value keeps growing";
    return -1;
}

int hc_is_loopback(const char *host)
{
    return !strcasecmp(host, "localhost") || !strncmp(host, "127.", 4) || !strcmp(host, "::1") ||
           !strcmp(host, "[::1]");
}

void hc_result_transient(const sk_batch *batch, sk_batch_result *result, const char *why)
{
    hc_result_reset(batch, result, 0);
    hc_fmt(result->detail, sizeof result->detail, "%s", why ? why : "");
}

int hc_refuse(const sk_batch *batch, sk_batch_result *result, int rc, const char *why)
{
    hc_result_transient(batch, result, why);
    return rc;
}

int hc_ca_file_option(const sk_host_api *host, const char *plugin, char **out, char *err,
                      size_t err_cap)
{
    const char *ca = host->option_string(host->host_ctx, "ca_file", NULL);
    *out = NULL;
    if (!ca || !*ca)
        return 0;
    struct stat st;
    if (access(ca, R_OK) != 0) {
        hc_fmt(err, err_cap, "%s: options.ca_file %s is not readable", plugin, ca);
        return -1;
    }
    if (stat(ca, &st) != 0 || !S_ISREG(st.st_mode)) { /* TLS would wait on a FIFO for ever */
        hc_fmt(err, err_cap, "%s: options.ca_file %s is not a regular file", plugin, ca);
        return -1;
    }
    if (!(*out = strdup(ca))) {
        hc_fmt(err, err_cap, "%s: out of memory", plugin);
        return -1;
    }
    return 0;
}

void hc_warn_unknown_options(const sk_host_api *host, const sk_option_def *defs,
                             const char *plugin)
{
    cJSON *all = cJSON_Parse(host->option_json(host->host_ctx));
    const cJSON *object = cJSON_IsObject(all) ? all : NULL;
    const cJSON *option;
    cJSON_ArrayForEach(option, object)
    {
        const sk_option_def *d = defs;
        while (d->name && strcmp(d->name, option->string))
            d++;
        if (!d->name)
            host->log(host->host_ctx, SK_LOG_WARN, "%s: unknown option \"%s\" ignored", plugin,
                      option->string);
    }
    cJSON_Delete(all);
}
