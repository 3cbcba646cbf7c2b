/* The durable event queue: spec-kitty compatibility, order, capacity, leases
   across processes, settlement and parking. */
#include "queue.h"
#include "testutil.h"

#include <dirent.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* spec-kitty's own SQL, verbatim from CONTRACT.md §2: the fixture. */
static const char spec_kitty_sql[] =
    "CREATE TABLE IF NOT EXISTS queue (\n"
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "  event_id TEXT UNIQUE NOT NULL,\n"
    "  event_type TEXT NOT NULL,\n"
    "  data TEXT NOT NULL,            -- the whole envelope as JSON\n"
    "  timestamp INTEGER NOT NULL,    -- enqueue time, unix seconds\n"
    "  retry_count INTEGER DEFAULT 0);\n"
    "CREATE INDEX IF NOT EXISTS idx_timestamp ON queue(timestamp);\n"
    "CREATE INDEX IF NOT EXISTS idx_retry ON queue(retry_count);\n";

static const char spec_kitty_insert[] =
    "INSERT OR REPLACE INTO queue (event_id, event_type, data, timestamp) VALUES (?, ?, ?, ?)";

typedef struct fixture {
    char *dir;
    char path[600];
    int64_t now_ms; /* the injected lease clock */
} fixture;

static int64_t fake_clock(void *ctx)
{
    return ((fixture *)ctx)->now_ms;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = sk_test_mkdtemp();
    snprintf(f->path, sizeof f->path, "%s/queue.db", f->dir);
    f->now_ms = 1795000000000;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sk_test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static sk__queue *open_q(fixture *f, int64_t max_events)
{
    sk__queue_opts o = {.max_events = max_events,
                        .durability = SK__DURABILITY_NORMAL,
                        .clock_ms = fake_clock,
                        .clock_ctx = f};
    sk__queue *q = NULL;
    sk__err err = {{0}};
    sk_status s = sk__queue_open(f->path, &o, &q, &err);
    if (s != SK_OK)
        fail_msg("open: %s", err.msg);
    return q;
}

static sk_status enq(sk__queue *q, const char *id, int64_t ts, const char *data, sk__err *err)
{
    sk__queue_item it = {.event_id = id, .event_type = "WPCreated", .data = data, .timestamp = ts};
    return sk__queue_enqueue(q, &it, 1, err);
}

static void enq_ok(sk__queue *q, const char *id, int64_t ts)
{
    sk__err err = {{0}};
    char data[128];
    snprintf(data, sizeof data, "{\"event_id\":\"%s\"}", id);
    if (enq(q, id, ts, data, &err) != SK_OK)
        fail_msg("enqueue %s: %s", id, err.msg);
}

/* Reads up to max rows within max_bytes after the cursor (NULL: from the start) and moves it on. */
static void read_ok(sk__queue *q, size_t max, size_t max_bytes, int64_t *cursor, sk__lease *l)
{
    sk__err err = {{0}};
    int64_t start[2] = {INT64_MIN, INT64_MIN}, *at = cursor ? cursor : start;
    if (sk__queue_peek(q, at[0], at[1], max, max_bytes, l, &err) != SK_OK)
        fail_msg("read: %s", err.msg);
    if (l->count) {
        at[0] = l->rows[l->count - 1].timestamp;
        at[1] = l->rows[l->count - 1].id;
    }
}

static sk__queue_stats stats_of(sk__queue *q)
{
    sk__queue_stats st;
    sk__err err = {{0}};
    assert_int_equal(sk__queue_stats_get(q, &st, &err), SK_OK);
    return st;
}

static void settle_all(sk__queue *q, sk__lease *l, sk__settle_action a, int64_t max_retries)
{
    sk__settlement s[64];
    assert_true(l->count <= SK__ARRAY_LEN(s));
    for (size_t i = 0; i < l->count; i++)
        s[i] = (sk__settlement){.id = l->rows[i].id, .action = a, .reason = "bad payload"};
    sk__err err = {{0}};
    assert_int_equal(sk__queue_settle(q, s, l->count, max_retries, NULL, &err), SK_OK);
}

/* Runs one SQL statement on a separate raw connection (the way spec-kitty would). */
static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("sql: %s", msg);
    sqlite3_close(db);
}

static int64_t raw_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void raw_spec_kitty_insert(const char *path, const char *id, int64_t ts)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, spec_kitty_insert, -1, &st, NULL), SQLITE_OK);
    char data[96];
    snprintf(data, sizeof data, "{\"event_id\":\"%s\",\"by\":\"spec-kitty\"}", id);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, "WPStatusChanged", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, data, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, ts);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* ---- order, dedup, capacity ---------------------------------------------- */

static void test_rows_are_read_fifo_by_timestamp_then_id(void **state)
{
    fixture *f = *state;
    sk__queue *q = open_q(f, 0);
    enq_ok(q, "E-late", 300);
    enq_ok(q, "E-early-2", 100); /* same timestamp as E-early-1, inserted first */
    enq_ok(q, "E-early-1", 100);
    enq_ok(q, "E-mid", 200);
    sk__lease l = {0};
    read_ok(q, 10, 0, NULL, &l);
    assert_int_equal(l.count, 4);
    assert_string_equal(l.rows[0].event_id, "E-early-2");
    assert_string_equal(l.rows[1].event_id, "E-early-1");
    assert_string_equal(l.rows[2].event_id, "E-mid");
    assert_string_equal(l.rows[3].event_id, "E-late");
    assert_string_equal(l.rows[3].event_type, "WPCreated");
    assert_string_equal(l.rows[3].data, "{\"event_id\":\"E-late\"}");
    assert_int_equal(l.rows[3].data_len, strlen(l.rows[3].data));
    assert_true(l.rows[0].id < l.rows[1].id);
    sk__lease_free_rows(&l);
    sk__queue_close(q);
}

static void test_same_event_id_is_one_row_with_the_latest_data(void **state)
{
    fixture *f = *state;
    sk__queue *q = open_q(f, 0);
    sk__err err = {{0}};
    assert_int_equal(enq(q, "E1", 100, "{\"v\":1}", &err), SK_OK);
    assert_int_equal(enq(q, "E1", 100, "{\"v\":2}", &err), SK_OK);
    sk__queue_item two[2] = {{"E2", "WPCreated", "{\"v\":1}", 101},
                             {"E2", "WPCreated", "{\"v\":3}", 101}};
    assert_int_equal(sk__queue_enqueue(q, two, 2, &err), SK_OK);
    assert_int_equal(stats_of(q).ready, 2);
    sk__lease l = {0};
    read_ok(q, 10, 0, NULL, &l);
    assert_int_equal(l.count, 2);
    assert_string_equal(l.rows[0].data, "{\"v\":2}");
    assert_string_equal(l.rows[1].data, "{\"v\":3}");
    sk__lease_free_rows(&l);
    sk__queue_close(q);
}

static void test_large_batch_keeps_order_and_the_last_duplicate_wins(void **state)
{
    fixture *f = *state;
    sk__queue *q = open_q(f, 0);
    enum { N = 75 }; /* two multi-row chunks and a remainder */
    sk__queue_item items[N];
    char ids[N][16], data[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "D%02d", i % 50);
        snprintf(data[i], sizeof data[i], "{\"n\":%d}", i);
        items[i] = (sk__queue_item){ids[i], "WPCreated", data[i], 1000 + i % 50};
    }
    sk__err err = {{0}};
    assert_int_equal(sk__queue_enqueue(q, items, N, &err), SK_OK);
    assert_int_equal(stats_of(q).ready, 50);
    sk__lease l = {0};
    read_ok(q, 100, 0, NULL, &l);
    assert_int_equal(l.count, 50);
    assert_string_equal(l.rows[0].event_id, "D00");
    assert_string_equal(l.rows[0].data, "{\"n\":50}");  /* replaced by the later copy */
    assert_string_equal(l.rows[30].data, "{\"n\":30}"); /* no later copy */
    assert_string_equal(l.rows[49].event_id, "D49");
    sk__lease_free_rows(&l);
    sk__queue_close(q);
}

static void test_full_queue_refuses_with_message_and_writes_nothing(void **state)
{
    fixture *f = *state;
    sk__queue *q = open_q(f, 3);
    enq_ok(q, "E1", 100);
    enq_ok(q, "E2", 100);
    sk__queue_item two[2] = {{"E3", "WPCreated", "{}", 101}, {"E4", "WPCreated", "{}", 101}};
    sk__err err = {{0}};
    assert_int_equal(sk__queue_enqueue(q, two, 2, &err), SK_ERR_QUEUE_FULL);
    assert_non_null(strstr(err.msg, "queue full: 2 of max 3 events"));
    assert_non_null(strstr(err.msg, "2 new event(s) refused"));
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM queue"), 2);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM queue WHERE event_id = 'E3'"), 0);
    enq_ok(q, "E3", 101); /* exactly at capacity is fine */
    err.msg[0] = '\0';
    assert_int_equal(enq(q, "E4", 102, "{}", &err), SK_ERR_QUEUE_FULL);
    assert_non_null(strstr(err.msg, "queue full: 3 of max 3 events"));
    enq_ok(q, "E2", 100); /* replacing a queued event takes no room */
    assert_int_equal(stats_of(q).ready, 3);
    sk__queue_close(q);
}

/* `emit --file` learns how many events it queues only at the end: begin is told 0,
   and the end still refuses what does not fit, writing nothing. */
static void test_enqueue_counted_at_the_end_still_refuses_a_full_queue(void **state)
{
    fixture *f = *state;
    sk__queue *q = open_q(f, 3);
    enq_ok(q, "E1", 100);
    sk__queue_item three[3] = {{"E2", "WPCreated", "{}", 101},
                               {"E3", "WPCreated", "{}", 101},
                               {"E4", "WPCreated", "{}", 101}};
    sk__err err = {{0}};
    assert_int_equal(sk__queue_enqueue_begin(q, 0, &err), SK_OK);
    assert_int_equal(sk__queue_enqueue_add(q, three, 3, &err), SK_OK);
    assert_int_equal(sk__queue_enqueue_end(q, SK_OK, 3, &err), SK_ERR_QUEUE_FULL);
    assert_non_null(strstr(err.msg, "queue full: 1 of max 3 events"));
    assert_non_null(strstr(err.msg, "3 new event(s) refused"));
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM queue"), 1);
    assert_int_equal(sk__queue_enqueue_begin(q, 0, &err), SK_OK); /* two fit */
    assert_int_equal(sk__queue_enqueue_add(q, three, 2, &err), SK_OK);
    assert_int_equal(sk__queue_enqueue_end(q, SK_OK, 2, &err), SK_OK);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM queue"), 3);
    sk__queue_close(q);
}

/* Open descriptors of SQLite temp files ("etilqs_...", unlinked at once). */
static int sqlite_temp_files_open(void)
{
    int found = 0;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    for (struct dirent *de; (de = readdir(d));) {
        char link[300], target[4096];
        snprintf(link, sizeof link, "/proc/self/fd/%s", de->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n > 0) {
            target[n] = '\0';
            found += strstr(target, "etilqs_") != NULL;
        }
    }
    closedir(d);
    return found;
}

/* A big enqueue keeps its statement journal in memory: in a temp file it cost
   as many write calls as the WAL itself. */
static void test_big_enqueue_writes_no_temp_file(void **state)
{
    fixture *f = *state;
    sk__queue *q = open_q(f, 0);
    enum { N = 3000 };
    static char ids[N][16], data[N][512];
    static sk__queue_item items[N];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "T%05d", i);
        memset(data[i], 'x', sizeof data[i] - 1);
        memcpy(data[i], "\"", 1);
        memcpy(data[i] + sizeof data[i] - 2, "\"", 2);
        items[i] = (sk__queue_item){ids[i], "WPCreated", data[i], 1000 + i};
    }
    sk__err err = {{0}};
    assert_int_equal(sk__queue_enqueue_begin(q, N, &err), SK_OK);
    assert_int_equal(sk__queue_enqueue_add(q, items, N, &err), SK_OK);
    assert_int_equal(sqlite_temp_files_open(), 0);
    assert_int_equal(sk__queue_enqueue_end(q, SK_OK, N, &err), SK_OK);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM queue"), N);
    sk__queue_close(q);
}

static void test_invalid_items_are_refused_and_nothing_written(void **state)
{
    fixture *f = *state;
    sk__queue *q = open_q(f, 0);
    sk__queue_item items[2] = {{"E1", "WPCreated", "{}", 1},
                               {"0123456789012345678901234567890123456789012345678901234567890123",
                                "WPCreated", "{}", 1}}; /* 64 characters: one too many */
    sk__err err = {{0}};
    assert_int_equal(sk__queue_enqueue(q, items, 2, &err), SK_ERR_INVALID_EVENT);
    items[1].event_id = "";
    assert_int_equal(sk__queue_enqueue(q, items, 2, &err), SK_ERR_INVALID_EVENT);
    items[1].event_id = "E2";
    items[1].data = NULL;
    assert_int_equal(sk__queue_enqueue(q, items, 2, &err), SK_ERR_INVALID_EVENT);
    assert_int_equal(stats_of(q).ready, 0);
    sk__queue_close(q);
}

/* ---- spec-kitty compatibility and migration ------------------------------ */

static void test_spec_kitty_file_opens_unchanged_and_its_rows_drain(void **state)
{
    fixture *f = *state;
    raw_exec(f->path, spec_kitty_sql);
    raw_spec_kitty_insert(f->path, "01JSK00000000000000000002", 200);
    raw_spec_kitty_insert(f->path, "01JSK00000000000000000001", 100);
    raw_exec(f->path, "UPDATE queue SET retry_count = 2 WHERE timestamp = 200");

    sk__queue *q = open_q(f, 0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pragma_table_info('queue') WHERE "
                                      "name IN ('state','lease_owner','lease_until','last_error')"),
                     4);
    sk__queue_stats st = stats_of(q);
    assert_int_equal(st.ready, 2);
    assert_int_equal(st.oldest_timestamp, 100);
    sk__lease l = {0};
    read_ok(q, 10, 0, NULL, &l);
    assert_int_equal(l.count, 2);
    assert_string_equal(l.rows[0].event_id, "01JSK00000000000000000001");
    assert_string_equal(l.rows[0].data,
                        "{\"event_id\":\"01JSK00000000000000000001\",\"by\":\"spec-kitty\"}");
    assert_string_equal(l.rows[1].event_type, "WPStatusChanged");
    assert_int_equal(l.rows[1].retry_count, 2);
    settle_all(q, &l, SK__SETTLE_DELETE, 5);
    sk__lease_free_rows(&l);
    assert_int_equal(stats_of(q).ready, 0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM queue"), 0);
    sk__queue_close(q);
}

static void test_migration_twice_changes_nothing(void **state)
{
    fixture *f = *state;
    raw_exec(f->path, spec_kitty_sql);
    sk__queue_close(open_q(f, 0));
    int64_t version = raw_int(f->path, "PRAGMA schema_version");
    int64_t objects = raw_int(f->path, "SELECT count(*) FROM sqlite_master");
    sk__queue_close(open_q(f, 0));
    assert_int_equal(raw_int(f->path, "PRAGMA schema_version"), version);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master"), objects);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pragma_table_info('queue')"), 10);
    /* spec-kitty running its CREATE ... IF NOT EXISTS again is harmless too. */
    raw_exec(f->path, spec_kitty_sql);
    assert_int_equal(raw_int(f->path, "PRAGMA schema_version"), version);
}

/* A queue.db as engines before 2026-12 left it: sk_idx_ready on every row. */
static const char old_engine_sql[] =
    "ALTER TABLE queue ADD COLUMN state INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE queue ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE queue ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE queue ADD COLUMN last_error TEXT;"
    "CREATE INDEX sk_idx_ready ON queue(state, timestamp);"
    "CREATE INDEX sk_idx_lease ON queue(lease_until, lease_owner) WHERE lease_until > 0;";

/* The event_ids in spec-kitty's drain order, joined by spaces. */
static void spec_kitty_order(const char *path, char *out, size_t cap)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT event_id FROM queue ORDER BY timestamp, id",
                                        -1, &st, NULL),
                     SQLITE_OK);
    size_t len = 0;
    out[0] = '\0';
    while (sqlite3_step(st) == SQLITE_ROW)
        len += (size_t)snprintf(out + len, cap - len, "%s%s", len ? " " : "",
                                (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void test_old_engine_file_loses_its_full_index_and_keeps_rows_and_order(void **state)
{
    fixture *f = *state;
    raw_exec(f->path, spec_kitty_sql);
    raw_exec(f->path, old_engine_sql);
    raw_spec_kitty_insert(f->path, "E3", 300);
    raw_spec_kitty_insert(f->path, "E1", 100);
    raw_spec_kitty_insert(f->path, "E2b", 200);
    raw_spec_kitty_insert(f->path, "E2a", 200);
    raw_spec_kitty_insert(f->path, "P", 50);
    raw_exec(f->path, "UPDATE queue SET state = 1, last_error = 'refused' WHERE event_id = 'P'");
    char before[128], after[128];
    spec_kitty_order(f->path, before, sizeof before);

    sk__queue *q = open_q(f, 0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE type = 'index' "
                                      "AND name = 'sk_idx_ready'"),
                     0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE type = 'index' "
                                      "AND name LIKE 'sk_idx_%' AND sql LIKE '%WHERE%'"),
                     2); /* the engine's indexes are both partial */
    spec_kitty_order(f->path, after, sizeof after);
    assert_string_equal(after, before);
    assert_string_equal(after, "P E1 E2b E2a E3");
    sk__queue_stats st = stats_of(q);
    assert_int_equal(st.ready, 4);
    assert_int_equal(st.parked, 1);
    assert_int_equal(st.oldest_timestamp, 100);
    sk__lease l = {0};
    sk__err err = {{0}};
    assert_int_equal(sk__queue_peek(q, 0, 0, 10, 0, &l, &err), SK_OK);
    assert_int_equal(l.count, 4);
    assert_string_equal(l.rows[0].event_id, "E1");
    assert_string_equal(l.rows[1].event_id, "E2b");
    assert_string_equal(l.rows[2].event_id, "E2a");
    assert_string_equal(l.rows[3].event_id, "E3");
    sk__lease_free_rows(&l);
    sk__queue_close(q);
    /* An engine from before (sk_idx_ready again) and this one can take turns. */
    raw_exec(f->path, "CREATE INDEX sk_idx_ready ON queue(state, timestamp)");
    sk__queue_close(open_q(f, 0));
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name = "
                                      "'sk_idx_ready'"),
                     0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM queue"), 5);
}

static void test_four_column_insert_after_migration_is_read(void **state)
{
    fixture *f = *state;
    sk__queue *q = open_q(f, 0);
    enq_ok(q, "E-ours", 150);
    raw_spec_kitty_insert(f->path, "E-theirs", 100);
    assert_int_equal(raw_int(f->path, "SELECT state FROM queue WHERE event_id = 'E-theirs'"), 0);
    sk__queue_stats st = stats_of(q);
    assert_int_equal(st.ready, 2);
    assert_int_equal(st.oldest_timestamp, 100);
    sk__lease l = {0};
    read_ok(q, 10, 0, NULL, &l);
    assert_int_equal(l.count, 2);
    assert_string_equal(l.rows[0].event_id, "E-theirs");
    assert_int_equal(l.rows[0].retry_count, 0);
    sk__lease_free_rows(&l);
    sk__queue_close(q);
}

static void test_created_file_is_owner_only_and_wal(void **state)
{
    fixture *f = *state;
    sk__queue_close(open_q(f, 0));
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    sqlite3_close(db);
}

static void test_both_durability_modes_open_and_keep_events(void **state)
{
    fixture *f = *state;
    sk__durability modes[2] = {SK__DURABILITY_FULL, SK__DURABILITY_NORMAL};
    for (int i = 0; i < 2; i++) {
        sk__queue_opts o = {.durability = modes[i]};
        sk__queue *q = NULL;
        sk__err err = {{0}};
        assert_int_equal(sk__queue_open(f->path, &o, &q, &err), SK_OK);
        enq_ok(q, i == 0 ? "E-full" : "E-normal", 100 + i);
        sk__queue_close(q);
    }
    sk__queue *q = NULL;
    sk__err err = {{0}};
    assert_int_equal(sk__queue_open(f->path, NULL, &q, &err), SK_OK);
    assert_int_equal(stats_of(q).ready, 2);
    sk__queue_close(q);
    sk__queue_opts bad = {.durability = (sk__durability)7};
    assert_int_equal(sk__queue_open(f->path, &bad, &q, &err), SK_ERR_USAGE);
    assert_null(q);
}

static void test_open_reports_a_missing_folder_and_a_file_that_is_no_database(void **state)
{
    fixture *f = *state;
    char bad[700];
    snprintf(bad, sizeof bad, "%s/no-such-folder/queue.db", f->dir);
    sk__queue *q = NULL;
    sk__err err = {{0}};
    assert_int_equal(sk__queue_open(bad, NULL, &q, &err), SK_ERR_IO);
    assert_non_null(strstr(err.msg, "no-such-folder"));
    assert_null(q);
    sk_test_write_file(f->path, "this is not an SQLite database, just some text long enough\n");
    err.msg[0] = '\0';
    assert_int_equal(sk__queue_open(f->path, NULL, &q, &err), SK_ERR_DB);
    assert_non_null(strstr(err.msg, "queue.db"));
    assert_null(q);
}

/* ---- several processes ---------------------------------------------------- */

/* Child: opens the (maybe not yet existing) file and enqueues `count` single
   events, one transaction each. Exit status 0 on success. */
static int child_enqueue(const char *path, int who, int count)
{
    sk__queue_opts o = {.durability = SK__DURABILITY_FULL};
    sk__queue *q = NULL;
    sk__err err = {{0}};
    if (sk__queue_open(path, &o, &q, &err) != SK_OK)
        return 1;
    for (int i = 0; i < count; i++) {
        char id[32], data[64];
        snprintf(id, sizeof id, "P%d-%04d", who, i);
        snprintf(data, sizeof data, "{\"n\":%d}", i);
        sk__queue_item it = {id, "WPCreated", data, 1000 + i};
        if (sk__queue_enqueue(q, &it, 1, &err) != SK_OK)
            return 2;
    }
    sk__queue_close(q);
    return 0;
}

static void wait_children(pid_t *pids, int n)
{
    for (int i = 0; i < n; i++) {
        int st = 0;
        assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
}

static void test_concurrent_writer_processes_lose_and_duplicate_nothing(void **state)
{
    fixture *f = *state;
    enum { PROCS = 4, EACH = 500 };
    pid_t pids[PROCS];
    /* The file does not exist yet: the children also race creation and migration. */
    for (int i = 0; i < PROCS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0)
            _exit(child_enqueue(f->path, i, EACH));
    }
    wait_children(pids, PROCS);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM queue"), PROCS * EACH);
    assert_int_equal(raw_int(f->path, "SELECT count(DISTINCT event_id) FROM queue"), PROCS * EACH);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM queue WHERE event_id LIKE 'P3-%'"),
                     EACH);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pragma_table_info('queue')"), 10);
}

/* Child: waits until the parent closes the pipe, then opens (migrates) the file. */
static int child_open_after(int gate_fd, const char *path)
{
    char c;
    while (read(gate_fd, &c, 1) > 0)
        ;
    sk__queue *q = NULL;
    sk__err err = {{0}};
    if (sk__queue_open(path, NULL, &q, &err) != SK_OK)
        return 1;
    sk__queue_stats st;
    int ok = sk__queue_stats_get(q, &st, &err) == SK_OK && st.ready == 3;
    sk__queue_close(q);
    return ok ? 0 : 2;
}

static void test_processes_racing_to_migrate_a_spec_kitty_file_all_succeed(void **state)
{
    fixture *f = *state;
    raw_exec(f->path, spec_kitty_sql);
    for (int i = 0; i < 3; i++) {
        char id[8];
        snprintf(id, sizeof id, "E%d", i);
        raw_spec_kitty_insert(f->path, id, 100 + i);
    }
    enum { PROCS = 6 };
    int gate[2];
    assert_int_equal(pipe(gate), 0);
    pid_t pids[PROCS];
    for (int i = 0; i < PROCS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            close(gate[1]);
            _exit(child_open_after(gate[0], f->path));
        }
    }
    close(gate[0]);
    close(gate[1]); /* all children start at once */
    wait_children(pids, PROCS);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pragma_table_info('queue')"), 10);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE type = 'index' "
                                      "AND name LIKE 'sk_idx_%'"),
                     2);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM queue WHERE state = 0"), 3);
}

/* Child: drains in small batches, logging every leased event_id to out. */
/* A drain reads every batch into the same lease: the second read, larger
   than the first (its text buffer must move), still hands out each row's own
   type and data, and the lease's storage is reused rather than given back. */
static void test_a_lease_read_again_holds_the_new_rows_texts(void **state)
{
    fixture *f = *state;
    sk__queue *q = open_q(f, 0);
    sk__err err = {{0}};
    char id[32], data[4096];
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof id, "e%02d", i);
        int pad = i < 4 ? 1 : 1000 + i; /* the later rows are far larger */
        snprintf(data, sizeof data, "{\"n\":%d,\"pad\":\"%0*d\"}", i, pad, 0);
        sk__queue_item it = {.event_id = id,
                             .event_type = i % 2 ? "WPCreated" : "FeatureCompleted",
                             .data = data,
                             .timestamp = 1795000000};
        assert_int_equal(sk__queue_enqueue(q, &it, 1, &err), SK_OK);
    }
    sk__lease l = {0};
    int64_t cursor[2] = {INT64_MIN, INT64_MIN};
    read_ok(q, 4, 0, cursor, &l);
    assert_int_equal(l.count, 4);
    size_t cap_small = l.text_cap;
    read_ok(q, 36, 0, cursor, &l);
    assert_int_equal(l.count, 36);
    assert_true(l.text_cap > cap_small);
    for (size_t k = 0; k < l.count; k++) {
        int i = (int)k + 4;
        snprintf(id, sizeof id, "e%02d", i);
        snprintf(data, sizeof data, "{\"n\":%d,\"pad\":\"%0*d\"}", i, 1000 + i, 0);
        assert_string_equal(l.rows[k].event_id, id);
        assert_string_equal(l.rows[k].event_type, i % 2 ? "WPCreated" : "FeatureCompleted");
        assert_string_equal(l.rows[k].data, data);
        assert_int_equal(l.rows[k].data_len, strlen(data));
    }
    char *kept = l.text;
    sk__lease_clear(&l);
    assert_int_equal(l.count, 0);
    read_ok(q, 2, 0, NULL, &l); /* fits: no new allocation */
    assert_ptr_equal(l.text, kept);
    assert_string_equal(l.rows[1].data, "{\"n\":1,\"pad\":\"0\"}");
    sk__lease_free_rows(&l);
    assert_null(l.text);
    sk__queue_close(q);
}

static void test_max_bytes_limits_a_read_but_one_row_is_always_taken(void **state)
{
    fixture *f = *state;
    sk__queue *q = open_q(f, 0);
    char big[101];
    memset(big, 'x', 100);
    big[100] = '\0';
    sk__err err = {{0}};
    for (int i = 0; i < 4; i++) {
        char id[8];
        snprintf(id, sizeof id, "E%d", i);
        assert_int_equal(enq(q, id, 100 + i, big, &err), SK_OK);
    }
    sk__lease l = {0};
    int64_t cursor[2] = {INT64_MIN, INT64_MIN};
    read_ok(q, 10, 250, cursor, &l);
    assert_int_equal(l.count, 2);
    assert_string_equal(l.rows[1].event_id, "E1");
    read_ok(q, 10, 50, cursor, &l); /* frees the previous rows first */
    assert_int_equal(l.count, 1);
    assert_string_equal(l.rows[0].event_id, "E2");
    assert_int_equal(l.rows[0].data_len, 100);
    read_ok(q, 10, 0, cursor, &l);
    assert_int_equal(l.count, 1);
    assert_string_equal(l.rows[0].event_id, "E3");
    sk__lease_free_rows(&l);
    sk__queue_close(q);
}

static void test_foreign_row_with_overlong_event_id_is_parked_not_sent(void **state)
{
    fixture *f = *state;
    sk__queue *q = open_q(f, 0);
    raw_spec_kitty_insert(
        f->path, "an-event-id-far-longer-than-sixty-three-characters-which-no-id-form-has", 100);
    enq_ok(q, "E1", 200);
    sk__lease l = {0};
    read_ok(q, 10, 0, NULL, &l);
    assert_int_equal(l.count, 1);
    assert_string_equal(l.rows[0].event_id, "E1");
    assert_int_equal(stats_of(q).parked, 1);
    sk__lease_free_rows(&l);
    sk__queue_close(q);
}

/* ---- settlement, parking -------------------------------------------------- */

typedef struct parked_list {
    int n;
    char ids[8][32];
    char why[8][64];
    int64_t retries[8];
} parked_list;

static int collect_parked(void *ctx, const char *event_id, const char *event_type, int64_t ts,
                          int64_t retry_count, const char *last_error)
{
    parked_list *p = ctx;
    (void)event_type;
    (void)ts;
    snprintf(p->ids[p->n], sizeof p->ids[0], "%s", event_id);
    snprintf(p->why[p->n], sizeof p->why[0], "%s", last_error ? last_error : "(null)");
    p->retries[p->n] = retry_count;
    p->n++;
    return p->n >= 8;
}

static void test_settle_deletes_releases_rejects_and_parks(void **state)
{
    fixture *f = *state;
    sk__queue *q = open_q(f, 0);
    const char *ids[4] = {"E-del", "E-rel", "E-rej", "E-park"};
    for (int i = 0; i < 4; i++)
        enq_ok(q, ids[i], 100 + i);
    sk__lease l = {0};
    read_ok(q, 10, 0, NULL, &l);
    assert_int_equal(l.count, 4);
    sk__settlement s[4] = {{l.rows[0].id, SK__SETTLE_DELETE, NULL},
                           {l.rows[1].id, SK__SETTLE_RELEASE, NULL},
                           {l.rows[2].id, SK__SETTLE_REJECT, "schema mismatch"},
                           {l.rows[3].id, SK__SETTLE_PARK, "project_not_admitted"}};
    int64_t parked = -1;
    sk__err err = {{0}};
    assert_int_equal(sk__queue_settle(q, s, 4, 3, &parked, &err), SK_OK);
    assert_int_equal(parked, 1);
    sk__queue_stats st = stats_of(q);
    assert_int_equal(st.ready, 2);
    assert_int_equal(st.parked, 1);
    assert_int_equal(st.leased, 0);
    assert_int_equal(st.oldest_timestamp, 101);
    assert_int_equal(raw_int(f->path, "SELECT retry_count FROM queue WHERE event_id = 'E-rej'"), 1);
    assert_int_equal(raw_int(f->path, "SELECT retry_count FROM queue WHERE event_id = 'E-rel'"), 0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM queue WHERE event_id = 'E-rej' "
                                      "AND last_error = 'schema mismatch'"),
                     1);
    read_ok(q, 10, 0, NULL, &l); /* released and rejected rows come back */
    assert_int_equal(l.count, 2);
    assert_string_equal(l.rows[0].event_id, "E-rel");
    assert_int_equal(l.rows[1].retry_count, 1);
    parked_list p = {0};
    assert_int_equal(sk__queue_each_parked(q, collect_parked, &p, &err), SK_OK);
    assert_int_equal(p.n, 1);
    assert_string_equal(p.ids[0], "E-park");
    assert_string_equal(p.why[0], "project_not_admitted");
    sk__lease_free_rows(&l);
    sk__queue_close(q);
}

static void test_reject_parks_only_after_max_retries_are_used(void **state)
{
    fixture *f = *state;
    sk__queue *q = open_q(f, 0);
    enq_ok(q, "E1", 100);
    sk__lease l = {0};
    int64_t parked = 0;
    sk__err err = {{0}};
    for (int attempt = 1; attempt <= 4; attempt++) {
        read_ok(q, 10, 0, NULL, &l);
        assert_int_equal(l.count, 1); /* max_retries 3: 3 retries after the first send */
        assert_int_equal(l.rows[0].retry_count, attempt - 1);
        sk__settlement s = {l.rows[0].id, SK__SETTLE_REJECT, "rejected"};
        assert_int_equal(sk__queue_settle(q, &s, 1, 3, &parked, &err), SK_OK);
        assert_int_equal(parked, attempt == 4);
    }
    read_ok(q, 10, 0, NULL, &l);
    assert_int_equal(l.count, 0);
    sk__queue_stats st = stats_of(q);
    assert_int_equal(st.parked, 1);
    assert_int_equal(st.ready, 0);
    assert_int_equal(st.oldest_timestamp, 0);
    parked_list p = {0};
    assert_int_equal(sk__queue_each_parked(q, collect_parked, &p, &err), SK_OK);
    assert_int_equal(p.retries[0], 4);
    sk__lease_free_rows(&l);
    sk__queue_close(q);
}

static void park_all(sk__queue *q, int n)
{
    for (int i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof id, "E%d", i);
        enq_ok(q, id, 100 + i);
    }
    sk__lease l = {0};
    read_ok(q, 64, 0, NULL, &l);
    assert_int_equal(l.count, (size_t)n);
    settle_all(q, &l, SK__SETTLE_PARK, 5);
    sk__lease_free_rows(&l);
    assert_int_equal(stats_of(q).parked, n);
}

static void test_unpark_by_id_then_all_resets_retries(void **state)
{
    fixture *f = *state;
    sk__queue *q = open_q(f, 0);
    park_all(q, 3);
    raw_exec(f->path, "UPDATE queue SET retry_count = 7");
    const char *one[2] = {"E1", "no-such-event"};
    int64_t moved = -1;
    sk__err err = {{0}};
    assert_int_equal(sk__queue_unpark(q, one, 2, &moved, &err), SK_OK);
    assert_int_equal(moved, 1);
    sk__lease l = {0};
    read_ok(q, 10, 0, NULL, &l);
    assert_int_equal(l.count, 1);
    assert_string_equal(l.rows[0].event_id, "E1");
    assert_int_equal(l.rows[0].retry_count, 0);
    assert_int_equal(sk__queue_unpark(q, NULL, 0, &moved, &err), SK_OK);
    assert_int_equal(moved, 2);
    sk__queue_stats st = stats_of(q);
    assert_int_equal(st.parked, 0);
    assert_int_equal(st.ready, 3);
    assert_int_equal(sk__queue_unpark(q, NULL, 0, &moved, &err), SK_OK);
    assert_int_equal(moved, 0);
    sk__lease_free_rows(&l);
    sk__queue_close(q);
}

static void test_each_parked_lists_oldest_first_and_stops_on_request(void **state)
{
    fixture *f = *state;
    sk__queue *q = open_q(f, 0);
    park_all(q, 10);
    parked_list p = {0};
    sk__err err = {{0}};
    assert_int_equal(sk__queue_each_parked(q, collect_parked, &p, &err), SK_OK);
    assert_int_equal(p.n, 8); /* collect_parked asks to stop at 8 */
    assert_string_equal(p.ids[0], "E0");
    assert_string_equal(p.ids[7], "E7");
    assert_string_equal(p.why[3], "bad payload");
    sk__queue_close(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rows_are_read_fifo_by_timestamp_then_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_event_id_is_one_row_with_the_latest_data, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_large_batch_keeps_order_and_the_last_duplicate_wins,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_queue_refuses_with_message_and_writes_nothing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_enqueue_counted_at_the_end_still_refuses_a_full_queue,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_enqueue_writes_no_temp_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_items_are_refused_and_nothing_written, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_spec_kitty_file_opens_unchanged_and_its_rows_drain,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_twice_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_old_engine_file_loses_its_full_index_and_keeps_rows_and_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_four_column_insert_after_migration_is_read, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_created_file_is_owner_only_and_wal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_both_durability_modes_open_and_keep_events, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_open_reports_a_missing_folder_and_a_file_that_is_no_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writer_processes_lose_and_duplicate_nothing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_processes_racing_to_migrate_a_spec_kitty_file_all_succeed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_lease_read_again_holds_the_new_rows_texts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_max_bytes_limits_a_read_but_one_row_is_always_taken,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_row_with_overlong_event_id_is_parked_not_sent,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_settle_deletes_releases_rejects_and_parks, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reject_parks_only_after_max_retries_are_used, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unpark_by_id_then_all_resets_retries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_each_parked_lists_oldest_first_and_stops_on_request,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
