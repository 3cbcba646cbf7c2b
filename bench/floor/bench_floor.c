/*
 * The floor: what SQLite itself does on this machine with the queue's
 * schema, so that every engine figure can be read as a fraction of it.
 *
 * For each schema, on a fresh file with the engine's settings (WAL;
 * synchronous=FULL for the insert, NORMAL for the deletes as the engine
 * settles) but an 8 MiB page cache (the engine keeps 64 pages, which cost
 * this plain row-by-row delete ~15 % more CPU and the engine's drain nothing
 * measurable): N envelopes inserted with spec-kitty's four-column insert
 * in one transaction, then read oldest first and deleted in transactions of
 * 1000 rows (one SELECT ... LIMIT 1000, one DELETE by id per row). Schemas:
 *   spec-kitty  CONTRACT.md §2 verbatim (sk__queue_spec_kitty_schema): the
 *               table, its unique event_id index, idx_timestamp and idx_retry
 *               (four b-trees);
 *   engine      the file sk__queue_open makes (host/queue.c as built), read
 *               and written with the same plain statements, so the difference
 *               is the engine's columns and indexes alone.
 * Usage: bench_floor [N] (default 100000). Prints one line per schema and a
 * last line "floor: insert=R read_delete=R" (spec-kitty's rates, events/s).
 *
 * bench_floor --one PATH: the floor of one `sync emit` process, to be timed
 * from outside: open PATH (spec-kitty's schema, WAL, synchronous=FULL, no
 * checkpoint on close, as the engine opens it: SQLite's default checkpoint
 * and WAL delete at close measured ~38 ms a process here), insert one
 * envelope with the four-column insert, commit, close; nothing else.
 *
 * bench_floor --count PATH: the floor of `sync status`, to be timed the same
 * way: open the queue at PATH as the engine does (WAL, no checkpoint on
 * close), count its rows with spec-kitty's `size()` query, close.
 */
#include "bench.h"
#include "queue.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BATCH 1000

typedef struct rates {
    double insert, read_delete;         /* events per wall second */
    double insert_cpu, read_delete_cpu; /* CPU microseconds per event */
} rates;

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void check(sqlite3 *db, int rc, const char *what)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "bench_floor: %s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
}

static void exec(sqlite3 *db, const char *sql)
{
    check(db, sqlite3_exec(db, sql, NULL, NULL, NULL), sql);
}

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    check(db, sqlite3_prepare_v2(db, sql, -1, &st, NULL), sql);
    return st;
}

static void step_done(sqlite3 *db, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    check(db, rc == SQLITE_DONE ? SQLITE_OK : rc, what);
    sqlite3_reset(st);
}

/* Envelopes first .. first + n - 1, with spec-kitty's four-column insert. */
static void insert_envelopes(sqlite3 *db, long first, long n)
{
    sqlite3_stmt *ins =
        prepare(db, "INSERT OR REPLACE INTO queue "
                    "(event_id, event_type, data, timestamp) VALUES (?1, ?2, ?3, ?4)");
    bench_envelope e;
    for (long i = first; i < first + n; i++) {
        bench_envelope_make(&e, i);
        sqlite3_bind_text(ins, 1, e.id, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 2, "WPStatusChanged", -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 3, e.data, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 4, e.timestamp);
        step_done(db, ins, "insert");
    }
    sqlite3_finalize(ins);
}

static void insert_all(sqlite3 *db, long n)
{
    exec(db, "PRAGMA synchronous=FULL; BEGIN IMMEDIATE");
    insert_envelopes(db, 0, n);
    exec(db, "COMMIT");
}

/* Reads up to BATCH rows oldest first, touching every column a drain sends,
   and deletes them in the same transaction. Returns the rows done. */
static long drain_batch(sqlite3 *db, sqlite3_stmt *sel, sqlite3_stmt *del)
{
    static long long ids[BATCH];
    long n = 0;
    size_t bytes = 0;
    exec(db, "BEGIN IMMEDIATE");
    int rc;
    while ((rc = sqlite3_step(sel)) == SQLITE_ROW) {
        ids[n++] = sqlite3_column_int64(sel, 0);
        bytes += (size_t)sqlite3_column_bytes(sel, 1) + (size_t)sqlite3_column_bytes(sel, 2) +
                 (size_t)sqlite3_column_bytes(sel, 3) + (size_t)sqlite3_column_int64(sel, 4);
    }
    check(db, rc, "select");
    sqlite3_reset(sel);
    for (long i = 0; i < n; i++) {
        sqlite3_bind_int64(del, 1, ids[i]);
        step_done(db, del, "delete");
    }
    exec(db, "COMMIT");
    return bytes ? n : 0;
}

static rates measure(const char *path, long n)
{
    sqlite3 *db = NULL;
    check(db, sqlite3_open(path, &db), path);
    exec(db, "PRAGMA journal_mode=WAL; PRAGMA cache_size=-8192");
    exec(db, sk__queue_spec_kitty_schema); /* a no-op on the engine's file */
    rates r;
    double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    insert_all(db, n);
    double w1 = clock_s(CLOCK_MONOTONIC), c1 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    r.insert = (double)n / (w1 - w0);
    r.insert_cpu = (c1 - c0) / (double)n * 1e6;

    exec(db, "PRAGMA synchronous=NORMAL");
    sqlite3_stmt *sel = prepare(db, "SELECT id, event_id, event_type, data, retry_count FROM queue "
                                    "ORDER BY timestamp, id LIMIT 1000");
    sqlite3_stmt *del = prepare(db, "DELETE FROM queue WHERE id = ?1");
    long done = 0, got;
    while ((got = drain_batch(db, sel, del)) > 0)
        done += got;
    double w2 = clock_s(CLOCK_MONOTONIC), c2 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    if (done != n) {
        fprintf(stderr, "bench_floor: %s: drained %ld of %ld rows\n", path, done, n);
        exit(1);
    }
    r.read_delete = (double)n / (w2 - w1);
    r.read_delete_cpu = (c2 - c1) / (double)n * 1e6;
    sqlite3_finalize(sel);
    sqlite3_finalize(del);
    sqlite3_close(db);
    return r;
}

/* The queue's b-trees (the table and its indexes; sqlite_sequence aside),
   as "N b-trees" or "N b-trees, P of them partial". */
static void btrees(const char *path, char *out, size_t cap)
{
    sqlite3 *db = NULL;
    check(db, sqlite3_open(path, &db), path);
    sqlite3_stmt *st = prepare(db, "SELECT count(*), sum(sql LIKE '%WHERE%') FROM sqlite_master "
                                   "WHERE tbl_name = 'queue' AND type IN ('table', 'index')");
    check(db, sqlite3_step(st), "sqlite_master");
    int n = sqlite3_column_int(st, 0), partial = sqlite3_column_int(st, 1);
    if (partial)
        snprintf(out, cap, "%d b-trees, %d of them partial", n, partial);
    else
        snprintf(out, cap, "%d b-trees", n);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void report(const char *name, const char *path, const rates *r, const rates *floor)
{
    char trees[64];
    btrees(path, trees, sizeof trees);
    printf("%-10s (%s): insert %.0f/s (%.1f us CPU each, %.0f%% of floor), "
           "read+delete %.0f/s (%.1f us CPU each, %.0f%% of floor)\n",
           name, trees, r->insert, r->insert_cpu, 100 * r->insert / floor->insert, r->read_delete,
           r->read_delete_cpu, 100 * r->read_delete / floor->read_delete);
}

/* One durable insert in a process of its own (--one). */
static int one_insert(const char *path)
{
    sqlite3 *db = NULL;
    check(db, sqlite3_open(path, &db), path);
    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL");
    exec(db, sk__queue_spec_kitty_schema);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts); /* a new id each run */
    insert_envelopes(db, (long)(ts.tv_sec % 100000) * 1000000000L + ts.tv_nsec, 1);
    return sqlite3_close(db) == SQLITE_OK ? 0 : 1;
}

/* One count of the rows in a process of its own (--count). */
static int count_rows(const char *path)
{
    sqlite3 *db = NULL;
    check(db, sqlite3_open(path, &db), path);
    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    exec(db, "PRAGMA journal_mode=WAL; PRAGMA cache_size=64; SELECT COUNT(*) FROM queue");
    return sqlite3_close(db) == SQLITE_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--one") == 0)
        return one_insert(argv[2]);
    if (argc == 3 && strcmp(argv[1], "--count") == 0)
        return count_rows(argv[2]);
    long n = argc > 1 ? atol(argv[1]) : 100000;
    if (n <= 0) {
        fprintf(stderr,
                "usage: bench_floor [N] | bench_floor --one PATH | bench_floor --count PATH\n");
        return 2;
    }
    char dir[4096], path[4200];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/sk-bench-floor-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        return perror("mkdtemp"), 1;
    snprintf(path, sizeof path, "%s/queue.db", dir);

    rates spec = measure(path, n);
    report("spec-kitty", path, &spec, &spec);
    bench_remove_db(path);

    sk__queue *q = NULL;
    sk__err err = {{0}};
    if (sk__queue_open(path, NULL, &q, &err) != SK_OK) {
        fprintf(stderr, "bench_floor: %s\n", err.msg);
        return 1;
    }
    sk__queue_close(q);
    rates eng = measure(path, n);
    report("engine", path, &eng, &spec);
    bench_remove_db(path);
    rmdir(dir);
    printf("floor: insert=%.0f read_delete=%.0f\n", spec.insert, spec.read_delete);
    return 0;
}
