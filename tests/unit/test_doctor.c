/*
 * `sync doctor` on real SQLite files with pages overwritten: what is counted
 * readable and lost for each kind of damage, what the repair keeps; and a
 * queue handle whose file was replaced meanwhile writes nothing.
 */
#include "testutil.h"

#include "doctor.h"
#include "event.h"
#include "queue.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EVENTS 600

typedef struct fixture {
    char *root;
    char path[1100];
    char ids[EVENTS][27];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->root = sk_test_mkdtemp();
    snprintf(f->path, sizeof f->path, "%s/queue.db", f->root);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sk_test_rmtree(f->root);
    free(f->root);
    free(f);
    return 0;
}

/* Queues EVENTS events; every 100th carries 12 KB (overflow pages). Then
   folds the WAL into the file, so damage to the file is damage to the queue. */
static void fill(fixture *f)
{
    sk__queue *q = NULL;
    sk__err err = {{0}};
    assert_int_equal(sk__queue_open(f->path, NULL, &q, &err), SK_OK);
    static char data[EVENTS][12400];
    sk__queue_item items[EVENTS];
    for (int i = 0; i < EVENTS; i++) {
        assert_int_equal(sk__ulid_new(f->ids[i], &err), SK_OK);
        int pad = i % 100 == 50 ? 12000 : 100;
        snprintf(data[i], sizeof data[i], "{\"event_id\":\"%s\",\"pad\":\"%0*d\"}", f->ids[i], pad,
                 i);
        items[i] = (sk__queue_item){f->ids[i], "T", data[i], 1000 + i};
    }
    assert_int_equal(sk__queue_enqueue(q, items, EVENTS, &err), SK_OK);
    sk__queue_close(q);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
}

/* The nth page (0-based, in file order) of b-tree `name` with pagetype `type`. */
static int64_t page_of(fixture *f, const char *name, const char *type, int nth)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT pageno FROM dbstat WHERE name = ?1 AND "
                                        "pagetype = ?2 ORDER BY pageno LIMIT 1 OFFSET ?3",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, type, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, nth);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t page = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return page;
}

/* Overwrites one 4 KiB page with a byte pattern that is no b-tree page. */
static void garble(fixture *f, int64_t page)
{
    char junk[4096];
    memset(junk, 0xA5, sizeof junk);
    int fd = open(f->path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, junk, sizeof junk, (off_t)(page - 1) * 4096), (ssize_t)sizeof junk);
    close(fd);
}

static int64_t rows_in(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM queue", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static sk__doctor_report check(fixture *f)
{
    sk__doctor_report r;
    sk__err err = {{0}};
    assert_int_equal(sk__doctor_check(f->root, &r, &err), SK_OK);
    return r;
}

static void healthy_queue_is_reported_healthy_and_left_alone(void **state)
{
    fixture *f = *state;
    fill(f);
    sk__doctor_report r = check(f);
    assert_false(r.damaged);
    assert_int_equal(r.rows_readable, EVENTS);
    assert_int_equal(r.rows_lost, 0);
    sk__err err = {{0}};
    assert_int_equal(sk__doctor_repair(f->root, &r, &err), SK_OK);
    assert_false(r.repaired);
    assert_string_equal(r.kept_as, "");
}

static void a_damaged_table_page_loses_only_its_rows(void **state)
{
    fixture *f = *state;
    fill(f);
    garble(f, page_of(f, "queue", "leaf", 10));
    sk__doctor_report r = check(f);
    assert_true(r.damaged);
    assert_true(r.rows_lost > 0 && r.rows_lost < 40);
    assert_int_equal(r.rows_readable + r.rows_lost, EVENTS);
    assert_int_equal((int64_t)r.lost_ids_count, r.rows_lost);
    sk__doctor_report_free(&r);
}

static void damaged_pages_at_both_ends_and_in_the_middle_are_skipped(void **state)
{
    fixture *f = *state;
    fill(f);
    garble(f, page_of(f, "queue", "leaf", 0));
    garble(f, page_of(f, "queue", "leaf", 7));
    garble(f, page_of(f, "queue", "leaf", 8));
    garble(f, page_of(f, "queue", "leaf", 30));
    sk__doctor_report r = check(f);
    assert_true(r.damaged);
    assert_int_equal(r.rows_readable + r.rows_lost, EVENTS);
    assert_true(r.rows_readable > EVENTS / 2);
    sk__doctor_report_free(&r);
}

static void a_damaged_overflow_page_loses_that_event_alone(void **state)
{
    fixture *f = *state;
    fill(f);
    /* The first page of its chain: the last one's content has no check at all. */
    garble(f, page_of(f, "queue", "overflow", 0));
    sk__doctor_report r = check(f);
    assert_true(r.damaged);
    assert_int_equal(r.rows_lost, 1);
    assert_int_equal(r.rows_readable, EVENTS - 1);
    sk__doctor_report_free(&r);
}

static void a_damaged_index_loses_nothing_and_the_repair_rebuilds_it(void **state)
{
    fixture *f = *state;
    fill(f);
    garble(f, page_of(f, "idx_timestamp", "leaf", 1));
    sk__doctor_report r = check(f);
    assert_true(r.damaged);
    assert_int_equal(r.rows_lost, 0);
    assert_int_equal(r.rows_readable, EVENTS);
    sk__err err = {{0}};
    assert_int_equal(sk__doctor_repair(f->root, &r, &err), SK_OK);
    assert_true(r.repaired);
    assert_int_equal(rows_in(f->path), EVENTS);
    assert_false(check(f).damaged);
    struct stat st;
    assert_int_equal(stat(r.kept_as, &st), 0);
}

static void a_damaged_root_page_still_names_the_lost_events(void **state)
{
    fixture *f = *state;
    fill(f);
    garble(f, page_of(f, "queue", "internal", 0));
    sk__doctor_report r = check(f);
    assert_true(r.damaged);
    assert_int_equal(r.rows_readable, 0);
    assert_int_equal(r.rows_lost, EVENTS);
    assert_int_equal(r.lost_ids_count, EVENTS);
    sk__doctor_report_free(&r);
}

static void repair_copies_every_readable_row_and_keeps_the_damaged_file(void **state)
{
    fixture *f = *state;
    fill(f);
    garble(f, page_of(f, "queue", "leaf", 12));
    sk__doctor_report before = check(f);
    sk__doctor_report_free(&before);
    sk__doctor_report r;
    sk__err err = {{0}};
    assert_int_equal(sk__doctor_repair(f->root, &r, &err), SK_OK);
    assert_true(r.repaired);
    assert_int_equal(r.rows_readable, before.rows_readable);
    assert_int_equal(rows_in(f->path), before.rows_readable);
    struct stat st;
    assert_int_equal(stat(r.kept_as, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* The fresh file is an ordinary queue: it opens, takes events and drains. */
    sk__queue *q = NULL;
    assert_int_equal(sk__queue_open(f->path, NULL, &q, &err), SK_OK);
    sk__queue_item it = {"01ARZ3NDEKTSV4RRFFQ69G5FAV", "T", "{}", 5000};
    assert_int_equal(sk__queue_enqueue(q, &it, 1, &err), SK_OK);
    sk__queue_close(q);
    assert_int_equal(rows_in(f->path), before.rows_readable + 1);
    sk__doctor_report_free(&r);
}

static void repair_refuses_while_a_handle_holds_the_queue(void **state)
{
    fixture *f = *state;
    fill(f);
    garble(f, page_of(f, "queue", "leaf", 12));
    sk__queue *q = NULL;
    sk__err err = {{0}};
    assert_int_equal(sk__queue_open(f->path, NULL, &q, &err), SK_OK);
    sk__doctor_report r;
    assert_int_equal(sk__doctor_repair(f->root, &r, &err), SK_ERR_BUSY);
    assert_non_null(strstr(err.msg, "open in another process"));
    assert_false(r.repaired);
    sk__queue_close(q);
}

static void a_handle_whose_file_was_replaced_writes_nothing(void **state)
{
    fixture *f = *state;
    sk__queue *q = NULL;
    sk__err err = {{0}};
    assert_int_equal(sk__queue_open(f->path, NULL, &q, &err), SK_OK);
    sqlite3 *db = NULL; /* the schema into the file itself, so the renamed file is whole */
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    char kept[1200];
    snprintf(kept, sizeof kept, "%s.kept", f->path);
    assert_int_equal(rename(f->path, kept), 0);
    sk__queue_item it = {"01ARZ3NDEKTSV4RRFFQ69G5FAV", "T", "{}", 5000};
    assert_int_equal(sk__queue_enqueue(q, &it, 1, &err), SK_ERR_BUSY);
    assert_non_null(strstr(err.msg, "queue.db was replaced"));
    sk__queue_close(q);
    assert_int_equal(rows_in(kept), 0);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(healthy_queue_is_reported_healthy_and_left_alone),
        T(a_damaged_table_page_loses_only_its_rows),
        T(damaged_pages_at_both_ends_and_in_the_middle_are_skipped),
        T(a_damaged_overflow_page_loses_that_event_alone),
        T(a_damaged_index_loses_nothing_and_the_repair_rebuilds_it),
        T(a_damaged_root_page_still_names_the_lost_events),
        T(repair_copies_every_readable_row_and_keeps_the_damaged_file),
        T(repair_refuses_while_a_handle_holds_the_queue),
        T(a_handle_whose_file_was_replaced_writes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
