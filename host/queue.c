/*
 * The durable event queue on SQLite (see queue.h and CONTRACT.md §2).
 *
 * Layout: spec-kitty's `queue` table, plus four columns and two partial
 * indexes of ours. Every index costs every insert and every delete of a
 * drain, so ours hold only the rows their queries look for: sk_idx_parked
 * the parked rows (few), sk_idx_lease the rows under a lease (none outside
 * a drain). Ready rows are walked oldest first on spec-kitty's own
 * idx_timestamp (the rowid, = id, ends every index entry, so it orders by
 * timestamp, id), skipping the few parked ones.
 */
#include "queue.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

/* Cached statements; the SQL for each is in stmt_sql[] below. */
enum {
    Q_BEGIN,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_SYNC_NORMAL,
    Q_SYNC_FULL,
    Q_INSERT,
    Q_INSERT_MANY,
    Q_ID_SPAN,
    Q_COUNT,
    Q_PARKED_COUNT,
    Q_PEEK_SCAN,
    Q_PARK_UNFIT,
    Q_DELETE,
    Q_RELEASE,
    Q_REJECT,
    Q_PARK,
    Q_STATS,
    Q_PARKED_EACH,
    Q_UNPARK_ALL,
    Q_UNPARK_ONE,
    Q_TEMP_MEMORY,
    Q_TEMP_DEFAULT,
    Q_CACHE_WALK,
    Q_CACHE_DEFAULT,
    Q__COUNT
};

/* Pages of a handle's page cache (see configure), and while a count walks an index. */
#define QUEUE_CACHE_PAGES "64"
#define QUEUE_CACHE_WALK_PAGES "8"

static const char *const stmt_sql[Q__COUNT] = {
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_SYNC_NORMAL] = "PRAGMA synchronous=NORMAL",
    [Q_SYNC_FULL] = "PRAGMA synchronous=FULL",
    /* An enqueue's statement journal in memory (see sk__queue_enqueue_begin). */
    [Q_TEMP_MEMORY] = "PRAGMA temp_store=MEMORY",
    [Q_TEMP_DEFAULT] = "PRAGMA temp_store=DEFAULT",
    /* A count reads every page of an index once, never more than its depth at a
       time: cache slots beyond that are only fresh memory to fault in (~45 page
       faults, ~1 ms of `sync status` with 100 000 queued). */
    [Q_CACHE_WALK] = "PRAGMA cache_size=" QUEUE_CACHE_WALK_PAGES,
    [Q_CACHE_DEFAULT] = "PRAGMA cache_size=" QUEUE_CACHE_PAGES,
    /* spec-kitty's own four-column insert: our columns take their defaults. */
    [Q_INSERT] = "INSERT OR REPLACE INTO queue (event_id, event_type, data, timestamp) "
                 "VALUES (?1, ?2, ?3, ?4)",
    /* Two single-aggregate subqueries: each is one b-tree seek. */
    [Q_ID_SPAN] = "SELECT (SELECT min(id) FROM queue), (SELECT max(id) FROM queue)",
    [Q_COUNT] = "SELECT count(*) FROM queue",
    [Q_PARKED_COUNT] = "SELECT count(*) FROM queue WHERE state = 1",
    /* The walk of a drainer holding the drain lock: from a cursor, no marks. Rows
       under a live lease (of an earlier engine's drainer) are left to it. The
       cursor (timestamp, id) is two index ranges: a row value seeks on the
       timestamp only, so each walk stepped again over every row of the
       cursor's second still in flight (events of a burst share it): 2x the
       walk's instructions with two batches in flight (callgrind). */
    [Q_PEEK_SCAN] = "SELECT id, event_id, event_type, data, retry_count, timestamp FROM queue "
                    "WHERE state = 0 AND lease_until <= ?1 AND timestamp = ?2 AND id > ?3 "
                    "UNION ALL "
                    "SELECT id, event_id, event_type, data, retry_count, timestamp FROM queue "
                    "WHERE state = 0 AND lease_until <= ?1 AND timestamp > ?2 "
                    "ORDER BY 6, 1",
    /* Batch statements take their row ids as one JSON array (?1): one
       statement per batch instead of one per row (cursors are opened once
       and stay positioned; ~10% faster drains, measured). */
    [Q_PARK_UNFIT] = "UPDATE queue SET state = 1, last_error = ?2, lease_owner = '', "
                     "lease_until = 0 WHERE id = ?1",
    /* Rows read under the drain lock carry no lease: lease_owner = '' leaves an
       earlier engine's leased row to its holder. */
    [Q_DELETE] = "DELETE FROM queue WHERE id IN (SELECT value FROM json_each(?1)) "
                 "AND lease_owner = ''",
    [Q_RELEASE] = "UPDATE queue SET lease_owner = '', lease_until = 0 "
                  "WHERE id IN (SELECT value FROM json_each(?1)) AND lease_owner = ''",
    /* SET expressions see the old values, so both uses of retry_count agree. */
    [Q_REJECT] = "UPDATE queue SET retry_count = coalesce(retry_count, 0) + 1, "
                 "state = (coalesce(retry_count, 0) + 1 > ?3), last_error = ?2, "
                 "lease_owner = '', lease_until = 0 "
                 "WHERE id = ?1 AND lease_owner = '' RETURNING state",
    [Q_PARK] = "UPDATE queue SET state = 1, last_error = ?2, lease_owner = '', lease_until = 0 "
               "WHERE id = ?1 AND lease_owner = ''",
    /* One statement, so one snapshot; count(*) without WHERE counts b-tree
       pages, not rows. Parked rows never hold a lease (parking clears it). */
    [Q_STATS] = "SELECT (SELECT count(*) FROM queue), "
                "(SELECT count(*) FROM queue WHERE state = 1), "
                "(SELECT count(*) FROM queue WHERE lease_until > 0 AND lease_until > ?1), "
                "(SELECT min(timestamp) FROM queue WHERE state = 0)",
    [Q_PARKED_EACH] = "SELECT event_id, event_type, timestamp, retry_count, last_error "
                      "FROM queue WHERE state = 1 ORDER BY timestamp, id",
    [Q_UNPARK_ALL] = "UPDATE queue SET state = 0, retry_count = 0 WHERE state = 1",
    [Q_UNPARK_ONE] = "UPDATE queue SET state = 0, retry_count = 0 "
                     "WHERE state = 1 AND event_id = ?1",
};

/* Rows per multi-row insert: one statement per 32 rows costs about half of
   one per row (measured), and 128 parameters stay far below SQLite's limit. */
#define INSERT_CHUNK 32

/* spec-kitty's schema, verbatim (CONTRACT.md §2): a no-op on its files. */
const char sk__queue_spec_kitty_schema[] =
    "CREATE TABLE IF NOT EXISTS queue (\n"
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "  event_id TEXT UNIQUE NOT NULL,\n"
    "  event_type TEXT NOT NULL,\n"
    "  data TEXT NOT NULL,\n"
    "  timestamp INTEGER NOT NULL,\n"
    "  retry_count INTEGER DEFAULT 0);\n"
    "CREATE INDEX IF NOT EXISTS idx_timestamp ON queue(timestamp);\n"
    "CREATE INDEX IF NOT EXISTS idx_retry ON queue(retry_count);\n";

/* Our columns; defaults make spec-kitty's four-column insert a ready row. */
static const struct {
    const char *name;
    const char *ddl;
} engine_columns[] = {
    {"state", "ALTER TABLE queue ADD COLUMN state INTEGER NOT NULL DEFAULT 0"},
    {"lease_owner", "ALTER TABLE queue ADD COLUMN lease_owner TEXT NOT NULL DEFAULT ''"},
    {"lease_until", "ALTER TABLE queue ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0"},
    {"last_error", "ALTER TABLE queue ADD COLUMN last_error TEXT"},
};

/* Older engines kept sk_idx_ready (state, timestamp), an entry for every
   row: idx_timestamp gives the same order, and without it a drain deletes
   ~20 % faster (bench/floor), so opening drops it. */
static const char engine_indexes[] =
    "DROP INDEX IF EXISTS sk_idx_ready;\n"
    "CREATE INDEX IF NOT EXISTS sk_idx_parked ON queue(timestamp) WHERE state = 1;\n"
    "CREATE INDEX IF NOT EXISTS sk_idx_lease ON queue(lease_until, lease_owner) "
    "WHERE lease_until > 0;\n";

/*
 * The schema is complete (opening then writes nothing) when a select of the
 * engine's 4 columns compiles and the 4 indexes are there, the retired one
 * not. Compiling the select reads the schema SQLite loads anyway; asking
 * pragma_table_info instead cost ~0.5 ms of every process (one emit, status).
 */
static const char schema_columns[] =
    "SELECT state, lease_owner, lease_until, last_error FROM queue";
static const char schema_indexes[] =
    "SELECT (SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'queue' AND "
    "name IN ('idx_timestamp', 'idx_retry', 'sk_idx_parked', 'sk_idx_lease')) + "
    "(SELECT count(*) = 0 FROM sqlite_master WHERE name = 'sk_idx_ready')";
#define SCHEMA_INDEXES_EXPECTED 5

struct sk__queue {
    sqlite3 *db;
    int64_t max_events;
    int full_sync; /* durability full: enqueues are fsynced at commit */
    int64_t (*clock_ms)(void *ctx);
    void *clock_ctx;
    sqlite3_stmt *stmt[Q__COUNT];
    char *ids; /* JSON array of row ids for the batch statements, reused */
    size_t ids_len, ids_cap;
    /* An enqueue in progress (room_start .. room_end): the rows before it
       (an upper bound unless exact) and whether the end must count. */
    int64_t room_before;
    int room_exact_needed;
};

/* SQLite says "unable to open database file" or "readonly database" whatever
   the cause: names the file or folder that cannot be written, and why. */
static void why_unwritable(const char *file, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (!file || !*file)
        return;
    if (access(file, W_OK) != 0 && errno != ENOENT) {
        snprintf(buf, cap, " (%s: %s)", file, strerror(errno));
        return;
    }
    char dir[PATH_MAX];
    const char *slash = strrchr(file, '/');
    if (!slash || sk__fmt(dir, sizeof dir, "%.*s", (int)(slash - file), file))
        return;
    if (access(dir[0] ? dir : "/", W_OK) != 0)
        snprintf(buf, cap, " (%s: %s)", dir[0] ? dir : "/", strerror(errno));
}

sk_status sk__sqlite_status(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return SK_ERR_BUSY;
    case SQLITE_NOMEM:
        return SK_ERR_NOMEM;
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
        return SK_ERR_IO;
    default:
        return SK_ERR_DB;
    }
}

/* Maps an SQLite result code to our status and formats one line. */
static sk_status db_fail(sk__queue *q, sk__err *err, int rc, const char *what)
{
    sk_status st = sk__sqlite_status(rc);
    const char *detail = q && q->db ? sqlite3_errmsg(q->db) : sqlite3_errstr(rc);
    char why[PATH_MAX + 64] = "";
    if ((rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB)
        snprintf(why, sizeof why, " (run `spec-kitty sync doctor`)");
    else if (st == SK_ERR_IO && q && q->db)
        why_unwritable(sqlite3_db_filename(q->db, "main"), why, sizeof why);
    return sk__fail(err, st, "queue.db: %s: %s%s", what, detail, why);
}

static int64_t queue_now_ms(const sk__queue *q)
{
    return q->clock_ms ? q->clock_ms(q->clock_ctx) : sk__wall_ms();
}

/* The Q_INSERT_MANY text: the four-column insert with INSERT_CHUNK rows. */
static const char *insert_many_sql(char *buf, size_t cap)
{
    size_t len = (size_t)snprintf(buf, cap,
                                  "INSERT OR REPLACE INTO queue "
                                  "(event_id, event_type, data, timestamp) VALUES ");
    for (int i = 0; i < INSERT_CHUNK && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s(?, ?, ?, ?)", i ? ", " : "");
    return buf;
}

/* Returns the cached statement `which`, preparing it on first use. */
static sk_status stmt_get(sk__queue *q, int which, sqlite3_stmt **out, sk__err *err)
{
    if (!q->stmt[which]) {
        char buf[64 + INSERT_CHUNK * 16];
        const char *sql =
            which == Q_INSERT_MANY ? insert_many_sql(buf, sizeof buf) : stmt_sql[which];
        int rc =
            sqlite3_prepare_v3(q->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &q->stmt[which], NULL);
        if (rc != SQLITE_OK)
            return db_fail(q, err, rc, "prepare");
    }
    *out = q->stmt[which];
    return SK_OK;
}

/* Runs a statement that returns no rows (or whose rows we ignore) once. */
static sk_status stmt_run(sk__queue *q, sqlite3_stmt *st, const char *what, sk__err *err)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SK_OK : db_fail(q, err, rc, what);
}

static sk_status run_cached(sk__queue *q, int which, const char *what, sk__err *err)
{
    sqlite3_stmt *st = NULL;
    sk_status s = stmt_get(q, which, &st, err);
    return s != SK_OK ? s : stmt_run(q, st, what, err);
}

/* Non-zero when the file this handle opened is no longer queue.db (renamed or
   unlinked: `sync doctor --repair` put a fresh one in its place). */
static int file_moved(sk__queue *q)
{
    int moved = 0;
    return sqlite3_file_control(q->db, "main", SQLITE_FCNTL_HAS_MOVED, &moved) == SQLITE_OK &&
           moved;
}

/* Takes the write lock. A handle whose file was replaced writes nothing: its
   rows would land in the file kept aside, not in the queue. */
static sk_status tx_begin(sk__queue *q, sk__err *err)
{
    /* A rollback that failed (out of memory) left a transaction open: end it
       now, or this handle could never write again. */
    if (!sqlite3_get_autocommit(q->db))
        run_cached(q, Q_ROLLBACK, "rollback", NULL);
    sk_status s = run_cached(q, Q_BEGIN, "begin", err);
    if (s != SK_OK || !file_moved(q))
        return s;
    run_cached(q, Q_ROLLBACK, "rollback", NULL);
    return sk__fail(err, SK_ERR_BUSY,
                    "queue.db was replaced (`spec-kitty sync doctor --repair`) while this "
                    "process had it open: nothing written, run the command again");
}

/* Commits; on failure rolls back so the connection is usable again. */
static sk_status tx_commit(sk__queue *q, sk__err *err)
{
    sk_status s = run_cached(q, Q_COMMIT, "commit", err);
    if (s != SK_OK && !sqlite3_get_autocommit(q->db))
        run_cached(q, Q_ROLLBACK, "rollback", NULL);
    return s;
}

/* Ends a transaction: commit when s is SK_OK, else roll back and keep s. */
static sk_status tx_end(sk__queue *q, sk_status s, sk__err *err)
{
    if (s == SK_OK)
        return tx_commit(q, err);
    if (!sqlite3_get_autocommit(q->db))
        run_cached(q, Q_ROLLBACK, "rollback", NULL);
    return s;
}

/* Reads one integer from a single-row query on the cached statement. */
static sk_status query_int(sk__queue *q, int which, int64_t *out, sk__err *err)
{
    sqlite3_stmt *st = NULL;
    sk_status s = stmt_get(q, which, &st, err);
    if (s != SK_OK)
        return s;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? SK_OK : db_fail(q, err, rc, "count");
}

/* ---- open and migrate ---------------------------------------------------- */

/*
 * Creates the file owner-only if it does not exist yet (SQLite would use
 * 0644; the -wal and -shm files inherit the database file's mode). An
 * existing file is not opened here: closing any descriptor of a file drops
 * every POSIX lock this process holds on it, so another open connection would
 * silently lose its SQLite locks and a third process could delete the WAL
 * under it.
 */
static sk_status create_private(const char *path, sk__err *err)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST)
        return SK_OK;
    if (fd < 0)
        return sk__fail(err, SK_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    close(fd);
    return SK_OK;
}

/* Switches to WAL. Changing the journal mode needs an exclusive lock that the
   busy handler does not always wait for, so retry until the busy timeout. */
static sk_status enable_wal(sk__queue *q, int timeout_ms, sk__err *err)
{
    for (int waited = 0;; waited += 5) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(q->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
        int is_wal = 0;
        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            const char *mode = (const char *)sqlite3_column_text(st, 0);
            is_wal = mode && strcmp(mode, "wal") == 0;
            rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
        if (rc == SQLITE_OK && is_wal)
            return SK_OK;
        if (rc == SQLITE_OK)
            return sk__fail(err, SK_ERR_DB, "queue.db: cannot switch to WAL mode");
        if ((rc & 0xff) != SQLITE_BUSY || waited >= timeout_ms)
            return db_fail(q, err, rc, "journal_mode=WAL");
        sk__sleep_ms(5);
    }
}

static sk_status exec_sql(sk__queue *q, const char *sql, const char *what, sk__err *err)
{
    int rc = sqlite3_exec(q->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? SK_OK : db_fail(q, err, rc, what);
}

static sk_status schema_complete(sk__queue *q, int *complete, sk__err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(q->db, schema_columns, -1, &st, NULL);
    sqlite3_finalize(st);
    *complete = 0;
    if (rc == SQLITE_ERROR) /* no such table or column: the migration adds it */
        return SK_OK;
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(q->db, schema_indexes, -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *complete = sqlite3_column_int(st, 0) == SCHEMA_INDEXES_EXPECTED;
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? SK_OK : db_fail(q, err, rc, "schema check");
}

static sk_status column_exists(sk__queue *q, const char *name, int *exists, sk__err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(q->db, "SELECT 1 FROM pragma_table_info('queue') WHERE name = ?1",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        *exists = rc == SQLITE_ROW;
        rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? SK_OK : db_fail(q, err, rc, "schema check");
}

/* Body of the migration; the caller holds the write lock. Each step checks
   first, so a file another opener already migrated is left as it is. */
static sk_status migrate_locked(sk__queue *q, sk__err *err)
{
    sk_status s = exec_sql(q, sk__queue_spec_kitty_schema, "create table", err);
    for (size_t i = 0; s == SK_OK && i < SK__ARRAY_LEN(engine_columns); i++) {
        int exists = 0;
        s = column_exists(q, engine_columns[i].name, &exists, err);
        if (s == SK_OK && !exists)
            s = exec_sql(q, engine_columns[i].ddl, "add column", err);
    }
    return s == SK_OK ? exec_sql(q, engine_indexes, "create index", err) : s;
}

/* Brings the schema up to date; a no-op (read only) when it already is. */
static sk_status migrate(sk__queue *q, sk__err *err)
{
    int complete = 0;
    sk_status s = schema_complete(q, &complete, err);
    if (s != SK_OK || complete)
        return s;
    s = tx_begin(q, err);
    if (s != SK_OK)
        return s;
    return tx_end(q, migrate_locked(q, err), err);
}

static sk_status configure(sk__queue *q, const sk__queue_opts *o, int timeout_ms, sk__err *err)
{
    sqlite3_busy_timeout(q->db, timeout_ms);
    sk_status s = enable_wal(q, timeout_ms, err);
    if (s != SK_OK)
        return s;
    const char *sync = o->durability == SK__DURABILITY_NORMAL ? "PRAGMA synchronous=NORMAL"
                                                              : "PRAGMA synchronous=FULL";
    s = exec_sql(q, sync, "synchronous", err);
    /* A small page cache (64 pages): with 8 MiB, every page a count reads
       landed in fresh heap memory, and the page faults of `sync status`
       counting 100 000 rows cost more than the count; a drain or an
       `emit --file` of 100 000 events measured as fast with 64 pages, at 11
       MB peak RSS instead of 19. The operating system caches the file anyway.
       Cap the WAL file left on disk. No mmap: mapped pages of a large queue
       count in the process's resident memory, and it measured no faster than
       the page cache here. The WAL auto-checkpoint stays at SQLite's 1000
       pages: a larger one measured no faster and would make the last closer
       (one emit, `sync status`) checkpoint more. */
    if (s == SK_OK)
        s = exec_sql(q,
                     "PRAGMA cache_size=" QUEUE_CACHE_PAGES "; PRAGMA journal_size_limit=67108864",
                     "pragmas", err);
    return s == SK_OK ? migrate(q, err) : s;
}

sk_status sk__queue_open(const char *path, const sk__queue_opts *opts, sk__queue **out,
                         sk__err *err)
{
    static const sk__queue_opts defaults = {0};
    const sk__queue_opts *o = opts ? opts : &defaults;
    *out = NULL;
    if (!path || !*path)
        return sk__fail(err, SK_ERR_USAGE, "queue path is empty");
    if (o->durability != SK__DURABILITY_FULL && o->durability != SK__DURABILITY_NORMAL)
        return sk__fail(err, SK_ERR_USAGE, "unknown durability %d", (int)o->durability);
    sk_status s = create_private(path, err);
    if (s != SK_OK)
        return s;
    sk__queue *q = calloc(1, sizeof *q);
    if (!q)
        return sk__fail(err, SK_ERR_NOMEM, "out of memory");
    q->max_events = o->max_events > 0 ? o->max_events : 100000;
    q->full_sync = o->durability == SK__DURABILITY_FULL;
    q->clock_ms = o->clock_ms;
    q->clock_ctx = o->clock_ctx;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path, &q->db, flags, NULL);
    if (rc != SQLITE_OK) {
        s = sk__fail(err, rc == SQLITE_NOMEM ? SK_ERR_NOMEM : SK_ERR_IO, "cannot open %s: %s", path,
                     q->db ? sqlite3_errmsg(q->db) : sqlite3_errstr(rc));
    } else {
        /* The last connection to close would checkpoint the WAL into the file and
           delete it: several fsyncs that every short-lived `spec-kitty` process
           (one emit) would pay. The WAL's auto-checkpoint moves pages instead. */
        sqlite3_db_config(q->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
        s = configure(q, o, o->busy_timeout_ms > 0 ? o->busy_timeout_ms : 10000, err);
    }
    /* Prepared now, so a rollback needs no allocation when memory runs out. */
    sqlite3_stmt *rollback = NULL;
    if (s == SK_OK)
        s = stmt_get(q, Q_ROLLBACK, &rollback, err);
    if (s != SK_OK) {
        sk__queue_close(q);
        return s;
    }
    *out = q;
    return SK_OK;
}

void sk__queue_release_memory(sk__queue *q)
{
    if (q && q->db)
        sqlite3_db_release_memory(q->db);
}

/* A WAL past this many bytes is folded back into the file when a handle closes. */
#define WAL_FOLD_BYTES (256 << 10)

/*
 * Connections close without a checkpoint (see queue_open), so a big write
 * (a batch enqueue, a drain) would leave a big WAL behind, and the next
 * process to open the file first rebuilds its index by reading every frame
 * of it: `sync status` went from 10 ms to 60 ms after a 100 000-event emit.
 * So a handle that leaves a big WAL folds it in and truncates it; busy
 * readers make it give up at once rather than wait.
 */
static void fold_big_wal(sk__queue *q)
{
    const char *db = sqlite3_db_filename(q->db, "main");
    char wal[4200];
    struct stat st;
    if (!db || sk__fmt(wal, sizeof wal, "%s-wal", db) || stat(wal, &st) != 0 ||
        st.st_size < WAL_FOLD_BYTES || file_moved(q)) /* that WAL is another file's now */
        return;
    sqlite3_busy_timeout(q->db, 0);
    sqlite3_wal_checkpoint_v2(q->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
}

void sk__queue_close(sk__queue *q)
{
    if (!q)
        return;
    for (int i = 0; i < Q__COUNT; i++)
        sqlite3_finalize(q->stmt[i]);
    fold_big_wal(q);
    sqlite3_close(q->db);
    free(q->ids);
    free(q);
}

/* ---- enqueue ------------------------------------------------------------- */

static sk_status item_check(const sk__queue_item *it, size_t i, sk__err *err)
{
    if (!it->event_id || !it->event_type || !it->data)
        return sk__fail(err, SK_ERR_INVALID_EVENT,
                        "event %zu: event_id, event_type and data are required", i);
    size_t len = strlen(it->event_id);
    if (len == 0 || len >= sizeof(((sk__queue_row *)0)->event_id))
        return sk__fail(err, SK_ERR_INVALID_EVENT, "event %zu: event_id must be 1..%d chars", i,
                        SK__QUEUE_ID_MAX);
    return SK_OK;
}

/* Binds one item to parameters base+1 .. base+4. The caller's strings outlive
   the statement's run, so SQLite need not copy them. */
static void bind_item(sqlite3_stmt *st, int base, const sk__queue_item *it)
{
    sqlite3_bind_text(st, base + 1, it->event_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, base + 2, it->event_type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, base + 3, it->data, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, base + 4, it->timestamp);
}

/* Inserts the items in order (a later duplicate replaces an earlier one):
   whole chunks with the multi-row statement, the rest one by one. */
static sk_status insert_items(sk__queue *q, const sk__queue_item *items, size_t n, sk__err *err)
{
    sqlite3_stmt *st = NULL;
    sk_status s = SK_OK;
    size_t i = 0;
    if (n >= INSERT_CHUNK)
        s = stmt_get(q, Q_INSERT_MANY, &st, err);
    for (; s == SK_OK && i + INSERT_CHUNK <= n; i += INSERT_CHUNK) {
        for (int k = 0; k < INSERT_CHUNK; k++)
            bind_item(st, 4 * k, &items[i + (size_t)k]);
        s = stmt_run(q, st, "insert", err);
    }
    if (s == SK_OK && i < n)
        s = stmt_get(q, Q_INSERT, &st, err);
    for (; s == SK_OK && i < n; i++) {
        bind_item(st, 0, &items[i]);
        s = stmt_run(q, st, "insert", err);
    }
    return s;
}

/* Cheap upper bound on the rows: ids are distinct integers, so there are at
   most max(id) - min(id) + 1 rows. Two b-tree seeks, whatever the queue size;
   as the queue drains oldest first (and ids grow) the span stays close to the
   count, so the exact count is only needed near capacity. */
static sk_status rows_upper_bound(sk__queue *q, int64_t *bound, sk__err *err)
{
    sqlite3_stmt *st = NULL;
    sk_status s = stmt_get(q, Q_ID_SPAN, &st, err);
    if (s != SK_OK)
        return s;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *bound = sqlite3_column_type(st, 0) == SQLITE_NULL
                     ? 0
                     : sqlite3_column_int64(st, 1) - sqlite3_column_int64(st, 0) + 1;
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? SK_OK : db_fail(q, err, rc, "count");
}

static sk_status refuse_full(sk__queue *q, int64_t rows, size_t n, sk__err *err)
{
    int64_t parked = 0;
    if (query_int(q, Q_PARKED_COUNT, &parked, NULL) != SK_OK)
        parked = 0;
    return sk__fail(err, SK_ERR_QUEUE_FULL,
                    "queue full: %lld of max %lld events (%lld parked); %zu new event(s) "
                    "refused: deliver with `spec-kitty sync now`, unpark or raise "
                    "queue.max_events",
                    (long long)rows, (long long)q->max_events, (long long)parked, n);
}

/* Capacity, first half: n events are coming; the caller holds the write
   lock. When the quick bound cannot prove there is room, the rows are
   counted exactly now and again once inserted (room_end). */
static sk_status room_start(sk__queue *q, size_t n, sk__err *err)
{
    sk_status s = rows_upper_bound(q, &q->room_before, err);
    if (s == SK_OK && q->room_before + (int64_t)n > q->max_events)
        s = query_int(q, Q_COUNT, &q->room_before, err);
    q->room_exact_needed = s == SK_OK && q->room_before + (int64_t)n > q->max_events;
    return s;
}

/* Capacity, second half, after the n inserts (replacements take no room):
   too many rows means the caller rolls back. n may be more than begin was
   told (a reading that counts as it goes): the bound is checked again. */
static sk_status room_end(sk__queue *q, size_t n, sk__err *err)
{
    if (!q->room_exact_needed && q->room_before + (int64_t)n <= q->max_events)
        return SK_OK; /* room proven at the start */
    int64_t after = 0;
    sk_status s = query_int(q, Q_COUNT, &after, err);
    if (s == SK_OK && after > q->max_events) {
        int64_t before = after - (int64_t)n; /* exact unless rows were replaced */
        s = refuse_full(q, q->room_exact_needed ? q->room_before : before > 0 ? before : 0, n, err);
    }
    return s;
}

static sk_status items_check(const sk__queue_item *items, size_t n, sk__err *err)
{
    sk_status s = SK_OK;
    for (size_t i = 0; s == SK_OK && i < n; i++)
        s = item_check(&items[i], i, err);
    return s;
}

sk_status sk__queue_enqueue(sk__queue *q, const sk__queue_item *items, size_t n, sk__err *err)
{
    if (n == 0)
        return SK_OK;
    sk_status s = sk__queue_enqueue_begin(q, n, err);
    if (s == SK_OK)
        s = sk__queue_enqueue_add(q, items, n, err);
    return sk__queue_enqueue_end(q, s, n, err);
}

/*
 * A multi-row insert needs a statement journal (a row failing half-way must
 * undo the statement's earlier rows): ~12 pages per statement, which SQLite
 * keeps in memory up to 64 KiB and then in a temp file for the rest of the
 * transaction. 100 000 events wrote 46 000 pages there, twice the syscalls
 * of the WAL itself. With temp_store=MEMORY at BEGIN (the pager decides
 * then) the journal stays in memory, one statement's pages at a time; the
 * setting is put back once the transaction ends, so other transactions of
 * the handle are left as they were.
 */
static void temp_store_memory(sk__queue *q, int on)
{
    run_cached(q, on ? Q_TEMP_MEMORY : Q_TEMP_DEFAULT, "temp_store", NULL); /* best effort */
}

sk_status sk__queue_enqueue_begin(sk__queue *q, size_t n, sk__err *err)
{
    temp_store_memory(q, 1);
    sk_status s = tx_begin(q, err);
    if (s == SK_OK && (s = room_start(q, n, err)) != SK_OK)
        tx_end(q, s, NULL);
    if (s != SK_OK)
        temp_store_memory(q, 0);
    return s;
}

sk_status sk__queue_enqueue_add(sk__queue *q, const sk__queue_item *items, size_t n, sk__err *err)
{
    sk_status s = items_check(items, n, err);
    return s == SK_OK ? insert_items(q, items, n, err) : s;
}

sk_status sk__queue_enqueue_end(sk__queue *q, sk_status s, size_t n, sk__err *err)
{
    if (sqlite3_get_autocommit(q->db))
        return s; /* begin failed: nothing open */
    if (s == SK_OK)
        s = room_end(q, n, err);
    s = tx_end(q, s, err);
    temp_store_memory(q, 0);
    return s;
}

/* ---- stats --------------------------------------------------------------- */

sk_status sk__queue_stats_get(sk__queue *q, sk__queue_stats *out, sk__err *err)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = NULL;
    sk_status s = stmt_get(q, Q_STATS, &st, err);
    if (s != SK_OK)
        return s;
    run_cached(q, Q_CACHE_WALK, "cache size", NULL); /* failing costs only time */
    sqlite3_bind_int64(st, 1, queue_now_ms(q));
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        int64_t total = sqlite3_column_int64(st, 0);
        out->parked = sqlite3_column_int64(st, 1);
        out->ready = total - out->parked;
        out->leased = sqlite3_column_int64(st, 2);
        out->oldest_timestamp = sqlite3_column_int64(st, 3); /* NULL reads as 0 */
    }
    sqlite3_reset(st);
    run_cached(q, Q_CACHE_DEFAULT, "cache size", NULL);
    return rc == SQLITE_ROW ? SK_OK : db_fail(q, err, rc, "stats");
}

/* ---- lease --------------------------------------------------------------- */

void sk__lease_clear(sk__lease *lease)
{
    if (!lease)
        return;
    lease->count = 0;
    lease->text_len = 0;
}

void sk__lease_free_rows(sk__lease *lease)
{
    if (!lease)
        return;
    free(lease->rows);
    free(lease->text);
    *lease = (sk__lease){0};
}

/* Appends n bytes and a NUL to the lease's text buffer. */
static int text_add(sk__lease *lease, const void *p, size_t n)
{
    if (!sk__grow((void **)&lease->text, &lease->text_cap, lease->text_len + n + 1, 1))
        return 0;
    if (n)
        memcpy(lease->text + lease->text_len, p, n);
    lease->text[lease->text_len + n] = '\0';
    lease->text_len += n + 1;
    return 1;
}

/* Copies the scan's current row into *row, its texts to the end of the
   lease's buffer; the pointers are set once the scan is over (text_point),
   as the buffer may still move. */
static sk_status row_copy(sqlite3_stmt *st, sk__lease *lease, sk__queue_row *row, sk__err *err)
{
    memset(row, 0, sizeof *row);
    row->id = sqlite3_column_int64(st, 0);
    const unsigned char *eid = sqlite3_column_text(st, 1);
    memcpy(row->event_id, eid, (size_t)sqlite3_column_bytes(st, 1) + 1);
    const void *type = sqlite3_column_text(st, 2);
    row->event_type_len = (size_t)sqlite3_column_bytes(st, 2);
    const void *data = sqlite3_column_text(st, 3);
    row->data_len = (size_t)sqlite3_column_bytes(st, 3);
    row->retry_count = sqlite3_column_int64(st, 4);
    row->timestamp = sqlite3_column_int64(st, 5);
    size_t mark = lease->text_len;
    if (!text_add(lease, type, row->event_type_len) || !text_add(lease, data, row->data_len)) {
        lease->text_len = mark;
        return sk__fail(err, SK_ERR_NOMEM, "out of memory");
    }
    return SK_OK;
}

/* Points every row at its texts, laid out in row order by row_copy. */
static void text_point(sk__lease *lease)
{
    char *p = lease->text;
    for (size_t i = 0; i < lease->count; i++) {
        sk__queue_row *row = &lease->rows[i];
        row->event_type = p;
        p += row->event_type_len + 1;
        row->data = p;
        p += row->data_len + 1;
    }
}

/* Limits of one lease call while scanning. */
typedef struct lease_scan {
    size_t max_events, max_bytes, bytes;
    int64_t *unfit; /* ids of rows whose event_id is too long to carry */
    size_t unfit_count, unfit_cap;
} lease_scan;

/* Takes the scan's current row if it fits. *stop is set when the scan should end. */
static sk_status scan_take(sqlite3_stmt *st, lease_scan *ls, sk__lease *lease, int *stop,
                           sk__err *err)
{
    const unsigned char *eid = sqlite3_column_text(st, 1); /* text first, then its length */
    size_t eid_len = (size_t)sqlite3_column_bytes(st, 1);
    if (eid == NULL || eid_len >= sizeof lease->rows[0].event_id) {
        if (!sk__grow((void **)&ls->unfit, &ls->unfit_cap, ls->unfit_count + 1, sizeof(int64_t)))
            return sk__fail(err, SK_ERR_NOMEM, "out of memory");
        ls->unfit[ls->unfit_count++] = sqlite3_column_int64(st, 0);
        return SK_OK;
    }
    size_t len = (size_t)sqlite3_column_bytes(st, 3);
    if (ls->max_bytes && lease->count > 0 && ls->bytes + len > ls->max_bytes) {
        *stop = 1;
        return SK_OK;
    }
    if (!sk__grow((void **)&lease->rows, &lease->rows_cap, lease->count + 1, sizeof *lease->rows))
        return sk__fail(err, SK_ERR_NOMEM, "out of memory");
    sk_status s = row_copy(st, lease, &lease->rows[lease->count], err);
    if (s != SK_OK)
        return s;
    lease->count++;
    ls->bytes += len;
    *stop = lease->count >= ls->max_events;
    return SK_OK;
}

/* Steps a bound scan statement, copying the rows that fit; resets it. */
static sk_status scan_rows(sk__queue *q, sqlite3_stmt *st, lease_scan *ls, sk__lease *lease,
                           const char *what, sk__err *err)
{
    sk_status s = SK_OK;
    int rc = SQLITE_DONE, stop = 0;
    while (s == SK_OK && !stop && (rc = sqlite3_step(st)) == SQLITE_ROW)
        s = scan_take(st, ls, lease, &stop, err);
    sqlite3_reset(st);
    if (s == SK_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        s = db_fail(q, err, rc, what);
    return s;
}

/* ---- row id lists (JSON arrays bound to the batch statements) ------------ */

static void ids_reset(sk__queue *q)
{
    q->ids_len = 0;
}

/* Appends one id; the array is opened on the first and closed by ids_bind. */
static sk_status ids_add(sk__queue *q, int64_t id, sk__err *err)
{
    if (!sk__grow((void **)&q->ids, &q->ids_cap, q->ids_len + 24, 1))
        return sk__fail(err, SK_ERR_NOMEM, "out of memory");
    char digits[24], *end = digits + sizeof digits;
    const char *p = sk__i64_text(id, end);
    q->ids[q->ids_len] = q->ids_len ? ',' : '[';
    memcpy(q->ids + q->ids_len + 1, p, (size_t)(end - p));
    q->ids_len += 1 + (size_t)(end - p);
    return SK_OK;
}

/* Closes the array and binds it as ?1 (the buffer stays valid until the next
   ids_reset, which is after the statement ran). */
static sk_status ids_bind(sk__queue *q, sqlite3_stmt *st, sk__err *err)
{
    if (!sk__grow((void **)&q->ids, &q->ids_cap, q->ids_len + 2, 1))
        return sk__fail(err, SK_ERR_NOMEM, "out of memory");
    q->ids[q->ids_len] = ']';
    q->ids[q->ids_len + 1] = '\0';
    sqlite3_bind_text(st, 1, q->ids, (int)q->ids_len + 1, SQLITE_STATIC);
    return SK_OK;
}

/* Parks the rows a scan found but cannot carry (event_id too long). */
static sk_status park_unfit(sk__queue *q, const lease_scan *ls, sk__err *err)
{
    sqlite3_stmt *st = NULL;
    sk_status s = ls->unfit_count ? stmt_get(q, Q_PARK_UNFIT, &st, err) : SK_OK;
    for (size_t i = 0; s == SK_OK && i < ls->unfit_count; i++) {
        sqlite3_bind_int64(st, 1, ls->unfit[i]);
        sqlite3_bind_text(st, 2,
                          "event_id longer than " SK__STR(SK__QUEUE_ID_MAX) " characters: cannot be "
                          "sent",
                          -1, SQLITE_STATIC);
        s = stmt_run(q, st, "park", err);
    }
    return s;
}

sk_status sk__queue_peek(sk__queue *q, int64_t after_timestamp, int64_t after_id, size_t max_events,
                         size_t max_bytes, sk__lease *lease, sk__err *err)
{
    sk__lease_clear(lease);
    if (max_events == 0)
        return sk__fail(err, SK_ERR_USAGE, "peek: max_events must be > 0");
    lease_scan ls = {.max_events = max_events, .max_bytes = max_bytes};
    sqlite3_stmt *st = NULL;
    sk_status s = stmt_get(q, Q_PEEK_SCAN, &st, err);
    if (s != SK_OK)
        return s;
    sqlite3_bind_int64(st, 1, queue_now_ms(q));
    sqlite3_bind_int64(st, 2, after_timestamp);
    sqlite3_bind_int64(st, 3, after_id);
    s = scan_rows(q, st, &ls, lease, "peek", err);
    if (s == SK_OK && ls.unfit_count && (s = tx_begin(q, err)) == SK_OK)
        s = tx_end(q, park_unfit(q, &ls, err), err); /* rare: park what cannot be carried */
    free(ls.unfit);
    if (s != SK_OK)
        sk__lease_clear(lease);
    else
        text_point(lease);
    return s;
}

/* ---- settle -------------------------------------------------------------- */

/* REJECT or PARK of one row (rare, and each has its own reason). *parked is
   incremented when the row got parked. */
static sk_status settle_one(sk__queue *q, const sk__settlement *x, int64_t max_retries,
                            int64_t *parked, sk__err *err)
{
    int reject = x->action == SK__SETTLE_REJECT;
    sqlite3_stmt *st = NULL;
    sk_status s = stmt_get(q, reject ? Q_REJECT : Q_PARK, &st, err);
    if (s != SK_OK)
        return s;
    sqlite3_bind_int64(st, 1, x->id);
    sqlite3_bind_text(st, 2, x->reason, -1, SQLITE_STATIC); /* NULL binds NULL */
    if (reject)
        sqlite3_bind_int64(st, 3, max_retries);
    int rc = sqlite3_step(st);
    int now_parked = rc == SQLITE_ROW && sqlite3_column_int(st, 0) == 1;
    if (rc == SQLITE_ROW)
        rc = sqlite3_step(st); /* RETURNING gives one row; finish the statement */
    if (rc == SQLITE_DONE && !reject)
        now_parked = sqlite3_changes(q->db) > 0;
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return db_fail(q, err, rc, "settle");
    *parked += now_parked;
    return SK_OK;
}

/* Applies every settlement with `action` (DELETE or RELEASE) in one statement. */
static sk_status settle_batch(sk__queue *q, const sk__settlement *x, size_t n,
                              sk__settle_action action, sk__err *err)
{
    sk_status s = SK_OK;
    ids_reset(q);
    for (size_t i = 0; s == SK_OK && i < n; i++)
        if (x[i].action == action)
            s = ids_add(q, x[i].id, err);
    if (s != SK_OK || q->ids_len == 0)
        return s;
    sqlite3_stmt *st = NULL;
    s = stmt_get(q, action == SK__SETTLE_DELETE ? Q_DELETE : Q_RELEASE, &st, err);
    if (s == SK_OK && (s = ids_bind(q, st, err)) == SK_OK)
        s = stmt_run(q, st, "settle", err);
    return s;
}

static sk_status settle_locked(sk__queue *q, const sk__settlement *x, size_t n, int64_t max_retries,
                               int64_t *parked, sk__err *err)
{
    sk_status s = settle_batch(q, x, n, SK__SETTLE_DELETE, err);
    if (s == SK_OK)
        s = settle_batch(q, x, n, SK__SETTLE_RELEASE, err);
    for (size_t i = 0; s == SK_OK && i < n; i++)
        if (x[i].action == SK__SETTLE_REJECT || x[i].action == SK__SETTLE_PARK)
            s = settle_one(q, &x[i], max_retries, parked, err);
    return s;
}

sk_status sk__queue_settle(sk__queue *q, const sk__settlement *s, size_t n, int64_t max_retries,
                           int64_t *parked_out, sk__err *err)
{
    int64_t parked = 0;
    if (parked_out)
        *parked_out = 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned)s[i].action > SK__SETTLE_PARK)
            return sk__fail(err, SK_ERR_USAGE, "settle: unknown action %d", (int)s[i].action);
    if (n == 0)
        return SK_OK;
    /* Settling needs no fsync of its own: losing one to a power cut only sends
     * delivered events again (the server drops duplicates), and the next
     * enqueue's fsync covers it anyway. A drain saves one fsync per batch. */
    if (q->full_sync)
        run_cached(q, Q_SYNC_NORMAL, "synchronous", NULL);
    sk_status st = tx_begin(q, err);
    if (st == SK_OK)
        st = tx_end(q, settle_locked(q, s, n, max_retries, &parked, err), err);
    if (q->full_sync)
        run_cached(q, Q_SYNC_FULL, "synchronous", NULL);
    if (st == SK_OK && parked_out)
        *parked_out = parked;
    return st;
}

/* ---- parked rows --------------------------------------------------------- */

sk_status sk__queue_each_parked(sk__queue *q, sk__parked_fn fn, void *ctx, sk__err *err)
{
    sqlite3_stmt *st = NULL;
    sk_status s = stmt_get(q, Q_PARKED_EACH, &st, err);
    if (s != SK_OK)
        return s;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *eid = (const char *)sqlite3_column_text(st, 0);
        const char *type = (const char *)sqlite3_column_text(st, 1);
        const char *why = (const char *)sqlite3_column_text(st, 4);
        if (fn(ctx, eid ? eid : "", type ? type : "", sqlite3_column_int64(st, 2),
               sqlite3_column_int64(st, 3), why) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SK_OK : db_fail(q, err, rc, "parked");
}

static sk_status unpark_locked(sk__queue *q, const char *const *ids, size_t n, int64_t *count,
                               sk__err *err)
{
    sqlite3_stmt *st = NULL;
    if (!ids || n == 0) {
        sk_status s = stmt_get(q, Q_UNPARK_ALL, &st, err);
        if (s == SK_OK && (s = stmt_run(q, st, "unpark", err)) == SK_OK)
            *count = sqlite3_changes(q->db);
        return s;
    }
    sk_status s = stmt_get(q, Q_UNPARK_ONE, &st, err);
    for (size_t i = 0; s == SK_OK && i < n; i++) {
        sqlite3_bind_text(st, 1, ids[i] ? ids[i] : "", -1, SQLITE_STATIC);
        if ((s = stmt_run(q, st, "unpark", err)) == SK_OK)
            *count += sqlite3_changes(q->db);
    }
    return s;
}

sk_status sk__queue_unpark(sk__queue *q, const char *const *event_ids, size_t n, int64_t *count_out,
                           sk__err *err)
{
    int64_t count = 0;
    if (count_out)
        *count_out = 0;
    sk_status s = tx_begin(q, err);
    if (s != SK_OK)
        return s;
    s = tx_end(q, unpark_locked(q, event_ids, n, &count, err), err);
    if (s == SK_OK && count_out)
        *count_out = count;
    return s;
}
