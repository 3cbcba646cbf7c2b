/*
 * I/O errors and allocation failures the tests cannot cause with a disk: the
 * Nth file write/sync/truncate of SQLite fails (once, or from then on like a
 * full disk), or the Nth allocation (SQLite's or ours) returns NULL. For
 * N = 1, 2, 3, ... until the operation runs without reaching the fault, an emit
 * and a delivery pass (scripted transport) must return an error, not crash,
 * and leave the queue intact: it passes SQLite's integrity check, holds every
 * event acknowledged as queued, and only delivered events have left it.
 */
#include "faults.h"
#include "testutil.h"

#include "deliver.h"
#include "engine.h"
#include "event.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The fault modes every operation is run under. */
static const struct mode {
    fault_kind kind;
    int sticky;
    const char *name;
} MODES[] = {
    {FAULT_IO, 0, "one I/O error"},
    {FAULT_IO, 1, "disk full from then on"},
    {FAULT_MALLOC, 0, "one allocation failure"},
    {FAULT_MALLOC, 1, "every allocation failing from then on"},
};

/* N stops here at the latest: an operation making more is a test bug. */
#define MAX_N 100000

static sqlite3 *open_check(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static int64_t query_int(sqlite3 *db, const char *sql, const char *arg)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (arg)
        sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void assert_intact(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
}

/* ---- emit ---------------------------------------------------------------- */

static void emit_under(const struct mode *m)
{
    char *root = sk_test_mkdtemp();
    char path[1100], errbuf[512];
    snprintf(path, sizeof path, "%s/queue.db", root);
    if (m->kind == FAULT_MALLOC) { /* no fsync to fail here: spare the disk a few hundred */
        char cfg[1100];
        snprintf(cfg, sizeof cfg, "%s/sync.json", root);
        sk_test_write_file(cfg, "{\"queue\": {\"durability\": \"normal\"}}");
    }
    sk_sync *s = NULL;
    assert_int_equal(sk_open(root, &s, errbuf, sizeof errbuf), SK_OK);
    sqlite3 *chk = open_check(path);
    int64_t queued = 0, failed = 0;
    long n;
    for (n = 1; n < MAX_N; n++) {
        char id[27] = "";
        fault_arm(m->kind, n, m->sticky);
        sk_status st = sk_emit(s, "FeatureCompleted", "f1", NULL,
                               "{\"feature_slug\":\"f1\",\"total_wps\":1}", NULL, id);
        int hit = fault_disarm();
        if (st == SK_OK) {
            queued++;
            assert_int_equal(query_int(chk, "SELECT count(*) FROM queue WHERE event_id = ?1", id), 1);
        } else {
            failed++;
            assert_true(sk_last_error(s)[0] != '\0');
        }
        /* All or nothing: a failed emit left no row, a successful one exactly one. */
        assert_int_equal(query_int(chk, "SELECT count(*) FROM queue", NULL), queued);
        assert_intact(chk);
        if (!hit) {
            if (st != SK_OK)
                fail_msg("emit failed without a fault (after one at %ld): %s", n - 1,
                         sk_last_error(s));
            break;
        }
    }
    assert_true(n < MAX_N);
    assert_true(failed > 0);
    print_message("emit, %s: %ld fault points, %lld failed cleanly\n", m->name, n - 1,
                  (long long)failed);
    sqlite3_close(chk);
    sk_close(s);
    sk_test_rmtree(root);
    free(root);
}

static void emit_fails_cleanly_at_every_write_error(void **state)
{
    (void)state;
    emit_under(&MODES[0]);
    emit_under(&MODES[1]);
}

static void emit_fails_cleanly_at_every_allocation_failure(void **state)
{
    (void)state;
    emit_under(&MODES[2]);
    emit_under(&MODES[3]);
}

/* ---- a delivery pass --------------------------------------------------- */

#define EVENTS 8

typedef struct settle_fixture {
    char *dir;
    char path[1100], record[1100], lock[1100];
    char ids[EVENTS][27];
    sk__queue *q;
    sk__plugin *p;
    json_t *options;
    sk__plugin_host host;
    sqlite3 *chk;
} settle_fixture;

/* Events 0..EVENTS-1; 1 is rejected (retried), 2 refused for good (parked),
   3 pending: those three must stay whatever happens. */
static int is_kept_outcome(int i)
{
    return i >= 1 && i <= 3;
}

static void settle_setup(settle_fixture *f)
{
    sk__err err = {{0}};
    f->dir = sk_test_mkdtemp();
    snprintf(f->path, sizeof f->path, "%s/queue.db", f->dir);
    snprintf(f->record, sizeof f->record, "%s/record.txt", f->dir);
    snprintf(f->lock, sizeof f->lock, "%s/drain.lock", f->dir);
    sk__queue_opts qo = {.durability = SK__DURABILITY_NORMAL};
    assert_int_equal(sk__queue_open(f->path, &qo, &f->q, &err), SK_OK);
    for (int i = 0; i < EVENTS; i++)
        assert_int_equal(sk__ulid_new(f->ids[i], &err), SK_OK);
    char opts[1024], path[1100];
    snprintf(opts, sizeof opts,
             "{\"outcomes\": {\"%s\": \"rejected\", \"%s\": \"permanent\", \"%s\": \"pending\"}}",
             f->ids[1], f->ids[2], f->ids[3]);
    f->options = json_loads(opts, 0, NULL);
    assert_non_null(f->options);
    json_object_set_new(f->options, "record", json_string(f->record));
    snprintf(path, sizeof path, "%s/scripted.so", getenv("SK_TEST_PLUGIN_DIR"));
    assert_int_equal(sk__plugin_open(path, 1, &f->p, &err), SK_OK);
    f->host = (sk__plugin_host){.options = f->options, .state_root = f->dir};
    assert_int_equal(sk__plugin_start(f->p, &f->host, &err), SK_OK);
    f->chk = open_check(f->path);
}

static void settle_teardown(settle_fixture *f)
{
    sqlite3_close(f->chk);
    sk__plugin_close(f->p);
    sk__queue_close(f->q);
    json_decref(f->options);
    sk_test_rmtree(f->dir);
    free(f->dir);
}

/* The same EVENTS ready events, and no record of sends. */
static void settle_refill(settle_fixture *f)
{
    assert_int_equal(sqlite3_exec(f->chk, "DELETE FROM queue", NULL, NULL, NULL), SQLITE_OK);
    sk__queue_item items[EVENTS];
    char data[EVENTS][128];
    for (int i = 0; i < EVENTS; i++) {
        snprintf(data[i], sizeof data[i], "{\"event_id\":\"%s\",\"event_type\":\"T\"}", f->ids[i]);
        items[i] = (sk__queue_item){f->ids[i], "T", data[i], 1000 + i};
    }
    sk__err err = {{0}};
    assert_int_equal(sk__queue_enqueue(f->q, items, EVENTS, &err), SK_OK);
    FILE *rec = fopen(f->record, "w");
    assert_non_null(rec);
    fclose(rec);
}

/* Whether the transport was handed event i. */
static int was_sent(const settle_fixture *f, int i)
{
    FILE *rec = fopen(f->record, "r");
    char line[128];
    int sent = 0;
    while (rec && !sent && fgets(line, sizeof line, rec))
        sent = strstr(line, f->ids[i]) != NULL;
    if (rec)
        fclose(rec);
    return sent;
}

static void assert_settled_sanely(settle_fixture *f)
{
    assert_intact(f->chk);
    for (int i = 0; i < EVENTS; i++) {
        int64_t in_queue =
            query_int(f->chk, "SELECT count(*) FROM queue WHERE event_id = ?1", f->ids[i]);
        assert_true(in_queue <= 1);
        /* Only an event the server took may leave; refused and pending ones never do. */
        if (!in_queue) {
            assert_true(was_sent(f, i));
            assert_false(is_kept_outcome(i));
        }
    }
}

static void settle_under(const struct mode *m)
{
    settle_fixture f;
    memset(&f, 0, sizeof f);
    settle_setup(&f);
    long n;
    int64_t failed = 0;
    for (n = 1; n < MAX_N; n++) {
        settle_refill(&f);
        sk__deliver_opts o;
        sk__deliver_opts_default(&o);
        o.max_batch_events = 3; /* several batches, so a fault can fall between them */
        o.drain_lock_path = f.lock;
        sk_drain_summary sum;
        sk__err err = {{0}};
        fault_arm(m->kind, n, m->sticky);
        sk_status st = sk__deliver_pass(f.q, f.p, &o, NULL, &sum, NULL, &err);
        int hit = fault_disarm();
        if (st != SK_OK) {
            failed++;
            assert_true(err.msg[0] != '\0');
        }
        assert_settled_sanely(&f);
        if (!hit) {
            assert_int_equal(st, SK_OK);
            assert_int_equal(sum.synced, EVENTS - 3);
            break;
        }
    }
    assert_true(n < MAX_N);
    assert_true(failed > 0);
    print_message("delivery pass, %s: %ld fault points, %lld failed cleanly\n", m->name, n - 1,
                  (long long)failed);
    settle_teardown(&f);
}

static void delivery_fails_cleanly_at_every_write_error(void **state)
{
    (void)state;
    settle_under(&MODES[0]);
    settle_under(&MODES[1]);
}

static void delivery_fails_cleanly_at_every_allocation_failure(void **state)
{
    (void)state;
    settle_under(&MODES[2]);
    settle_under(&MODES[3]);
}

int main(void)
{
    fault_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(emit_fails_cleanly_at_every_write_error),
        cmocka_unit_test(emit_fails_cleanly_at_every_allocation_failure),
        cmocka_unit_test(delivery_fails_cleanly_at_every_write_error),
        cmocka_unit_test(delivery_fails_cleanly_at_every_allocation_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
