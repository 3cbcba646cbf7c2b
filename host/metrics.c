/* Counters in <state root>/metrics.db and their Prometheus text rendering. */
#include "metrics.h"

#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const int64_t sk__metrics_latency_le_s[SK__METRICS_LATENCY_BUCKETS] = {
    1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 24 * 3600, 7 * 24 * 3600};

/* The statements every record runs, prepared once per handle. */
enum { ST_ADD, ST_RAISE, ST_ADD_TRANSPORT, ST_COUNT };

static const char *const STATEMENTS[ST_COUNT] = {
    [ST_ADD] = "INSERT INTO counters VALUES (?1, ?2) "
               "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
    [ST_RAISE] = "INSERT INTO counters VALUES (?1, ?2) "
                 "ON CONFLICT(name) DO UPDATE SET value = max(value, excluded.value)",
    [ST_ADD_TRANSPORT] = "INSERT INTO transport_counters VALUES (?1, ?2, ?3) "
                         "ON CONFLICT(transport, name) DO UPDATE SET value = value + "
                         "excluded.value",
};

struct sk__metrics {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    char path[PATH_MAX];
    sk__metrics_transport *seen; /* the transport running totals already added (owned strings) */
    size_t nseen, seen_cap;
};

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) "
    "WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS transport_counters (transport TEXT NOT NULL, name TEXT NOT NULL, "
    "value INTEGER NOT NULL, PRIMARY KEY (transport, name)) WITHOUT ROWID;";

static sk_status db_fail(sk__metrics *m, sk__err *err, const char *what)
{
    return sk__fail(err, SK_ERR_IO, "%s: %s: %s", m->path, what, sqlite3_errmsg(m->db));
}

/* Schema and statements of a handle that counts. */
static sk_status prepare_writer(sk__metrics *m, sk__err *err)
{
    /* Several processes count at once (sync now, the service, emit). */
    sqlite3_busy_timeout(m->db, 10000);
    if (sqlite3_exec(m->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL,
                     NULL) != SQLITE_OK ||
        sqlite3_exec(m->db, SCHEMA, NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(m, err, "schema");
    for (int i = 0; i < ST_COUNT; i++)
        if (sqlite3_prepare_v3(m->db, STATEMENTS[i], -1, SQLITE_PREPARE_PERSISTENT, &m->st[i],
                               NULL) != SQLITE_OK)
            return db_fail(m, err, "prepare");
    return SK_OK;
}

static sk_status metrics_open(const char *state_root, int writable, sk__metrics **out,
                              sk__err *err)
{
    *out = NULL;
    sk__metrics *m = calloc(1, sizeof *m);
    if (!m)
        return sk__fail(err, SK_ERR_NOMEM, "out of memory");
    sk_status s = sk__path_join(m->path, sizeof m->path, state_root, "metrics.db", err);
    struct stat sb;
    int exists = s == SK_OK && stat(m->path, &sb) == 0;
    if (s == SK_OK && !exists && !writable)
        s = sk__fail(err, SK_ERR_NOT_FOUND, "%s: no counters yet", m->path);
    else if (exists && !S_ISREG(sb.st_mode)) /* a FIFO would block the open for ever */
        s = sk__fail(err, SK_ERR_PERMISSION, "%s: not a regular file: refused", m->path);
    int flags = writable ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY;
    if (s == SK_OK && sqlite3_open_v2(m->path, &m->db, flags, NULL) != SQLITE_OK)
        s = db_fail(m, err, "open");
    if (s == SK_OK && writable)
        s = prepare_writer(m, err);
    else if (s == SK_OK)
        sqlite3_busy_timeout(m->db, 1000);
    if (s != SK_OK) {
        sk__metrics_close(m);
        return s;
    }
    *out = m;
    return SK_OK;
}

sk_status sk__metrics_open(const char *state_root, sk__metrics **out, sk__err *err)
{
    return metrics_open(state_root, 1, out, err);
}

sk_status sk__metrics_open_reader(const char *state_root, sk__metrics **out, sk__err *err)
{
    return metrics_open(state_root, 0, out, err);
}

static void transport_free(sk__metrics_transport *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free((char *)t[i].transport);
        free((char *)t[i].name);
    }
    free(t);
}

void sk__metrics_close(sk__metrics *m)
{
    if (!m)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(m->st[i]);
    sqlite3_close(m->db);
    transport_free(m->seen, m->nseen);
    free(m);
}

/* The running total of (transport, name) already added, creating it at 0, and back
 * at 0 for a new load of the plugin; NULL: no memory. */
static sk__metrics_transport *seen(sk__metrics *m, const sk__metrics_transport *t)
{
    for (size_t i = 0; i < m->nseen; i++)
        if (strcmp(m->seen[i].transport, t->transport) == 0 &&
            strcmp(m->seen[i].name, t->name) == 0) {
            if (m->seen[i].instance != t->instance)
                m->seen[i] = (sk__metrics_transport){m->seen[i].transport, m->seen[i].name, 0,
                                                     t->instance};
            return &m->seen[i];
        }
    if (!sk__grow((void **)&m->seen, &m->seen_cap, m->nseen + 1, sizeof *m->seen))
        return NULL;
    sk__metrics_transport *n = &m->seen[m->nseen];
    *n = (sk__metrics_transport){strdup(t->transport), strdup(t->name), 0, t->instance};
    if (!n->transport || !n->name) {
        free((char *)n->transport);
        free((char *)n->name);
        return NULL;
    }
    m->nseen++;
    return n;
}

/* Growth of a running total since the last record; a counter never falls, so a plugin
 * that lowered one (older plugins counted levels with metric_add) adds nothing. */
static int64_t growth(int64_t now, int64_t before)
{
    return now > before ? now - before : 0;
}

/* Runs a prepared statement on one row of values (text, text or number, number). */
static int run(sqlite3_stmt *st, const char *a, const char *b, int64_t value)
{
    int col = 1;
    sqlite3_bind_text(st, col++, a, -1, SQLITE_STATIC);
    if (b)
        sqlite3_bind_text(st, col++, b, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, col, value);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* Adds delta to a counter. */
static int add(sk__metrics *m, const char *name, int64_t delta)
{
    return delta == 0 ? 0 : run(m->st[ST_ADD], name, NULL, delta);
}

/* Index of the latency bucket of an event acknowledged after age_ms. */
static int bucket_of(int64_t age_ms)
{
    int i = 0;
    while (i < SK__METRICS_LATENCY_BUCKETS && age_ms > sk__metrics_latency_le_s[i] * 1000)
        i++;
    return i;
}

static int record_locked(sk__metrics *m, const sk__metrics_batch *b, const sk__metrics_transport *t,
                         size_t nt, sk__metrics_transport **was)
{
    int64_t buckets[SK__METRICS_LATENCY_BUCKETS + 1] = {0}, sum_ms = 0;
    for (size_t i = 0; i < b->acknowledged; i++) {
        int64_t age = b->now_ms - b->enqueued_s[i] * 1000;
        age = age < 0 ? 0 : age; /* a clock step back */
        buckets[bucket_of(age)]++;
        sum_ms += age;
    }
    int bad = add(m, "batches", 1) || add(m, "retries", b->failed) ||
              add(m, "delivered", b->delivered) || add(m, "duplicates", b->duplicates) ||
              add(m, "rejected", b->rejected) || add(m, "parked", b->parked) ||
              add(m, "latency_sum_ms", sum_ms) || add(m, "latency_count", (int64_t)b->acknowledged);
    for (int i = 0; !bad && i <= SK__METRICS_LATENCY_BUCKETS; i++) {
        char name[32];
        snprintf(name, sizeof name, "latency_bucket_%d", i);
        bad = add(m, name, buckets[i]);
    }
    for (size_t i = 0; !bad && i < nt; i++) {
        bad = !(was[i] = seen(m, &t[i]));
        int64_t delta = bad ? 0 : growth(t[i].value, was[i]->value);
        bad = bad || (delta != 0 && run(m->st[ST_ADD_TRANSPORT], t[i].transport, t[i].name, delta));
    }
    return bad;
}

/* Ends the transaction: commits unless the counting went bad. */
static sk_status tx_end(sk__metrics *m, int bad, sk__err *err)
{
    if (bad) {
        sqlite3_exec(m->db, "ROLLBACK", NULL, NULL, NULL);
        return db_fail(m, err, "count");
    }
    if (sqlite3_exec(m->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        sk_status s = db_fail(m, err, "commit");
        sqlite3_exec(m->db, "ROLLBACK", NULL, NULL, NULL);
        return s;
    }
    return SK_OK;
}

static sk_status tx_begin(sk__metrics *m, sk__err *err)
{
    return sqlite3_exec(m->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK
               ? SK_OK
               : db_fail(m, err, "begin");
}

sk_status sk__metrics_record(sk__metrics *m, const sk__metrics_batch *b,
                             const sk__metrics_transport *t, size_t nt, sk__err *err)
{
    sk__metrics_transport **was = calloc(nt ? nt : 1, sizeof *was);
    if (!was)
        return sk__fail(err, SK_ERR_NOMEM, "out of memory");
    sk_status s = tx_begin(m, err);
    if (s == SK_OK)
        s = tx_end(m, record_locked(m, b, t, nt, was), err);
    for (size_t i = 0; s == SK_OK && i < nt; i++)
        was[i]->value += growth(t[i].value, was[i]->value); /* added for good once committed */
    free(was);
    return s;
}

sk_status sk__metrics_refused_full(sk__metrics *m, int64_t n, int64_t now_ms, sk__err *err)
{
    sk_status s = tx_begin(m, err);
    if (s != SK_OK)
        return s;
    return tx_end(
        m, add(m, "refused_full", n) || run(m->st[ST_RAISE], "refused_full_last_ms", NULL, now_ms),
        err);
}

/* The slot of a counter name in c, or NULL for a name this version does not know. */
static int64_t *slot(sk__metrics_counts *c, const char *name)
{
    static const struct {
        const char *name;
        size_t offset;
    } FIXED[] = {
        {"delivered", offsetof(sk__metrics_counts, delivered)},
        {"duplicates", offsetof(sk__metrics_counts, duplicates)},
        {"rejected", offsetof(sk__metrics_counts, rejected)},
        {"parked", offsetof(sk__metrics_counts, parked)},
        {"refused_full", offsetof(sk__metrics_counts, refused_full)},
        {"refused_full_last_ms", offsetof(sk__metrics_counts, refused_full_last_ms)},
        {"batches", offsetof(sk__metrics_counts, batches)},
        {"retries", offsetof(sk__metrics_counts, retries)},
        {"latency_sum_ms", offsetof(sk__metrics_counts, latency_sum_ms)},
        {"latency_count", offsetof(sk__metrics_counts, latency_count)},
    };
    for (size_t i = 0; i < SK__ARRAY_LEN(FIXED); i++)
        if (strcmp(name, FIXED[i].name) == 0)
            return (int64_t *)((char *)c + FIXED[i].offset);
    int i;
    if (sscanf(name, "latency_bucket_%d", &i) == 1 && i >= 0 && i <= SK__METRICS_LATENCY_BUCKETS)
        return &c->latency_bucket[i];
    return NULL;
}

static int load_transport(sqlite3 *db, sk__metrics_counts *c)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT transport, name, value FROM transport_counters "
                           "ORDER BY name, transport",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (!sk__grow((void **)&c->transport, &cap, c->ntransport + 1, sizeof *c->transport))
            break;
        char *tr = strdup((const char *)sqlite3_column_text(st, 0));
        char *name = strdup((const char *)sqlite3_column_text(st, 1));
        if (!tr || !name) {
            free(tr);
            free(name);
            break;
        }
        c->transport[c->ntransport++] =
            (sk__metrics_transport){tr, name, sqlite3_column_int64(st, 2), 0};
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

sk_status sk__metrics_load(sk__metrics *m, sk__metrics_counts *out, sk__err *err)
{
    memset(out, 0, sizeof *out);
    if (!m)
        return SK_OK;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(m->db, "SELECT name, value FROM counters", -1, &st, NULL) != SQLITE_OK)
        return db_fail(m, err, "read");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t *v = slot(out, (const char *)sqlite3_column_text(st, 0));
        if (v)
            *v = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE || load_transport(m->db, out)) {
        sk_status s = db_fail(m, err, "read");
        sk__metrics_counts_free(out);
        return s;
    }
    return SK_OK;
}

void sk__metrics_counts_free(sk__metrics_counts *c)
{
    transport_free(c->transport, c->ntransport);
    c->transport = NULL;
    c->ntransport = 0;
}

/* ---- rendering -------------------------------------------------------------- */

#define PREFIX "spec_kitty_sync_"

static void family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP " PREFIX "%s %s\n# TYPE " PREFIX "%s %s\n", name, help, name, type);
}

static void sample(FILE *f, const char *name, const char *type, const char *help, int64_t v)
{
    family(f, name, type, help);
    fprintf(f, PREFIX "%s %lld\n", name, (long long)v);
}

/* A plugin's counter name as a metric name part: [a-z0-9_], lower case. */
static void metric_part(char *out, size_t cap, const char *name)
{
    size_t i = 0;
    for (; name[i] && i + 1 < cap; i++) {
        char ch = name[i];
        out[i] = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ? ch
                 : ch >= 'A' && ch <= 'Z'                             ? (char)(ch - 'A' + 'a')
                                                                      : '_';
    }
    out[i] = '\0';
}

/* A label value (backslash, double quote and newline escaped) or, without quote, a
 * HELP text (backslash and newline). */
static void escaped(FILE *f, const char *v, int quote)
{
    for (; *v; v++) {
        if (*v == '\\' || (quote && *v == '"'))
            fputc('\\', f);
        if (*v == '\n')
            fputs("\\n", f);
        else
            fputc(*v, f);
    }
}

/* Sum of one transport counter over every transport. */
static int64_t transport_sum(const sk__metrics_counts *c, const char *name)
{
    int64_t v = 0;
    for (size_t i = 0; i < c->ntransport; i++)
        if (strcmp(c->transport[i].name, name) == 0)
            v += c->transport[i].value;
    return v;
}

static void render_latency(FILE *f, const sk__metrics_counts *c)
{
    family(f, "delivery_latency_seconds", "histogram",
           "Time from emit (enqueue, whole seconds) to the server's acknowledgement.");
    int64_t cumulative = 0;
    for (int i = 0; i <= SK__METRICS_LATENCY_BUCKETS; i++) {
        cumulative += c->latency_bucket[i];
        if (i < SK__METRICS_LATENCY_BUCKETS)
            fprintf(f, PREFIX "delivery_latency_seconds_bucket{le=\"%lld\"} %lld\n",
                    (long long)sk__metrics_latency_le_s[i], (long long)cumulative);
        else
            fprintf(f, PREFIX "delivery_latency_seconds_bucket{le=\"+Inf\"} %lld\n",
                    (long long)cumulative);
    }
    fprintf(f, PREFIX "delivery_latency_seconds_sum %lld.%03lld\n",
            (long long)(c->latency_sum_ms / 1000), (long long)(c->latency_sum_ms % 1000));
    fprintf(f, PREFIX "delivery_latency_seconds_count %lld\n", (long long)c->latency_count);
}

/* Each transport counter as its own family, spec_kitty_sync_transport_NAME_total{transport}.
 * c->transport is sorted by name, so a family's samples are together. */
static void render_transport(FILE *f, const sk__metrics_counts *c)
{
    char prev[160] = "";
    for (size_t i = 0; i < c->ntransport; i++) {
        char part[128], name[160];
        metric_part(part, sizeof part, c->transport[i].name);
        snprintf(name, sizeof name, "transport_%s_total", part);
        if (strcmp(name, prev) != 0) {
            fprintf(f, "# HELP " PREFIX "%s Counter \"", name);
            escaped(f, c->transport[i].name, 0);
            fprintf(f, "\" reported by the transport plugin.\n# TYPE " PREFIX "%s counter\n", name);
            snprintf(prev, sizeof prev, "%s", name);
        }
        fprintf(f, PREFIX "%s{transport=\"", name);
        escaped(f, c->transport[i].transport, 1);
        fprintf(f, "\"} %lld\n", (long long)c->transport[i].value);
    }
}

char *sk__metrics_render(const sk__metrics_counts *c, const sk__metrics_gauges *g)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    sample(f, "queue_events", "gauge", "Events waiting in the queue (parked excluded).",
           g->queue_events);
    sample(f, "parked_events", "gauge", "Events parked (not retried automatically).",
           g->parked_events);
    sample(f, "oldest_event_age_seconds", "gauge", "Age of the oldest waiting event (0: none).",
           g->oldest_age_s);
    sample(f, "events_delivered_total", "counter", "Events the server stored.", c->delivered);
    sample(f, "events_duplicate_total", "counter", "Events the server already had.", c->duplicates);
    sample(f, "events_rejected_total", "counter", "Event rejections (each retried later).",
           c->rejected);
    sample(f, "events_parked_total", "counter", "Events parked after rejections.", c->parked);
    sample(f, "events_refused_full_total", "counter",
           "New events refused because the queue was full.", c->refused_full);
    family(f, "last_refused_full_timestamp_seconds", "gauge",
           "When an event was last refused because the queue was full (0: never).");
    fprintf(f, PREFIX "last_refused_full_timestamp_seconds %lld.%03lld\n",
            (long long)(c->refused_full_last_ms / 1000),
            (long long)(c->refused_full_last_ms % 1000));
    sample(f, "batches_total", "counter", "Batches handed to the transport.", c->batches);
    sample(f, "retries_total", "counter", "Batches that failed as a whole and are tried again.",
           c->retries);
    sample(f, "sent_bytes_total", "counter", "Bytes the transports sent.",
           transport_sum(c, "bytes_sent"));
    sample(f, "reconnects_total", "counter", "Connections the transports had to open again.",
           transport_sum(c, "reconnects"));
    render_transport(f, c);
    render_latency(f, c);
    sample(f, "service_up", "gauge", "1 when the background service runs.", g->service_up);
    sample(f, "service_uptime_seconds", "gauge", "How long the background service has run.",
           g->service_uptime_s);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

sk_status sk__metrics_text(sk__metrics *m, sk__queue *q, int service_up, int64_t uptime_s,
                           int64_t now_ms, char **out, sk__err *err)
{
    *out = NULL;
    sk__queue_stats qs;
    sk__metrics_counts c;
    sk_status s = sk__queue_stats_get(q, &qs, err);
    if (s != SK_OK || (s = sk__metrics_load(m, &c, err)) != SK_OK)
        return s;
    int64_t age = qs.oldest_timestamp > 0 ? now_ms / 1000 - qs.oldest_timestamp : 0;
    sk__metrics_gauges g = {qs.ready, qs.parked, age < 0 ? 0 : age, service_up, uptime_s};
    *out = sk__metrics_render(&c, &g);
    sk__metrics_counts_free(&c);
    return *out ? SK_OK : sk__fail(err, SK_ERR_NOMEM, "out of memory");
}

sk_status sk__metrics_write_textfile(const char *path, const char *text, sk__err *err)
{
    /* node_exporter reads a whole file or nothing: a rename never shows half of one. */
    return sk__write_file_atomic(path, text, strlen(text), 0644, 0, err);
}
