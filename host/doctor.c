/* `sync doctor`: the integrity check and salvage of queue.db (see doctor.h). */
#include "doctor.h"
#include "daemon.h"
#include "queue.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* One salvage: the damaged file, where rows go (NULL when only checking),
   the ids the walk read and the rows it could not. */
typedef struct salvage {
    sqlite3 *src;
    sqlite3_stmt *walk, *probe, *one, *ins;
    int64_t *got; /* ids read by the walk, ascending */
    size_t got_n, got_cap;
    struct miss {
        int64_t id;
        char event_id[SK__QUEUE_ID_CAP];
    } *miss; /* rows an index names that the walk did not read */
    size_t miss_n, miss_cap;
    size_t lost_cap; /* of r->lost_ids */
    sk__doctor_report *r;
} salvage;

/* A failed read that means damage (skip it), not a failure of the salvage itself. */
static int is_damage(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_NOMEM:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_INTERRUPT:
        return 0;
    default:
        return 1;
    }
}

static sk_status sql_fail(sqlite3 *db, sk__err *err, int rc, const char *file, const char *what)
{
    return sk__fail(err, sk__sqlite_status(rc), "%s: %s: %s", file, what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

/* ---- the integrity check --------------------------------------------------- */

/* Counts the problem lines of one integrity_check row (it may hold several,
   under a "*** in database main ***" heading), keeping the first. */
static void add_problems(sk__doctor_report *r, const char *text)
{
    while (text && *text) {
        size_t len = strcspn(text, "\n");
        if (len && strncmp(text, "ok", len) != 0 && strncmp(text, "*** ", 4) != 0 &&
            r->problems++ == 0)
            snprintf(r->first_problem, sizeof r->first_problem, "%.*s", (int)len, text);
        text += len + (text[len] == '\n');
    }
}

static void integrity_check(sqlite3 *db, sk__doctor_report *r)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check(100)", -1, &st, NULL);
    if (rc == SQLITE_OK)
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            add_problems(r, (const char *)sqlite3_column_text(st, 0));
    if (rc != SQLITE_DONE && r->problems++ == 0)
        snprintf(r->first_problem, sizeof r->first_problem, "%s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    r->damaged = r->problems > 0;
}

/* ---- reading rows ---------------------------------------------------------- */

/* The columns copied, in the order the insert takes them. A file only
   spec-kitty's CLI wrote lacks ours: their defaults stand in. Leases are not
   copied: they belong to drainers of the old file. */
static sk_status select_columns(sqlite3 *db, char *buf, size_t cap, sk__err *err)
{
    int has_state = 0, has_error = 0;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT name FROM pragma_table_info('queue')", -1, &st, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        has_state |= name && strcmp(name, "state") == 0;
        has_error |= name && strcmp(name, "last_error") == 0;
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE && rc != SQLITE_OK)
        return sql_fail(db, err, rc, "queue.db", "schema");
    snprintf(buf, cap, "id, event_id, event_type, data, timestamp, retry_count, %s, %s",
             has_state ? "state" : "0", has_error ? "last_error" : "NULL");
    return SK_OK;
}

static sk_status prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, const char *file,
                         sk__err *err)
{
    int rc = sqlite3_prepare_v2(db, sql, -1, st, NULL);
    return rc == SQLITE_OK ? SK_OK : sql_fail(db, err, rc, file, "prepare");
}

static sk_status prepare_reads(salvage *sv, sk__err *err)
{
    char cols[200], sql[400];
    sk_status s = select_columns(sv->src, cols, sizeof cols, err);
    if (s == SK_OK) {
        snprintf(sql, sizeof sql, "SELECT %s FROM queue WHERE id >= ?1 ORDER BY id", cols);
        s = prepare(sv->src, sql, &sv->walk, "queue.db", err);
    }
    if (s == SK_OK) {
        snprintf(sql, sizeof sql, "SELECT %s FROM queue WHERE id = ?1", cols);
        s = prepare(sv->src, sql, &sv->one, "queue.db", err);
    }
    /* Reads the key only: succeeds when the page holding it can be parsed. */
    if (s == SK_OK)
        s = prepare(sv->src, "SELECT id FROM queue WHERE id >= ?1 ORDER BY id LIMIT 1",
                    &sv->probe, "queue.db", err);
    return s;
}

static sk_status add_lost(salvage *sv, const char *event_id, sk__err *err)
{
    sv->r->rows_lost++;
    if (!event_id || !*event_id)
        return SK_OK;
    sk__doctor_report *r = sv->r;
    if (!sk__grow((void **)&r->lost_ids, &sv->lost_cap, r->lost_ids_count + 1, sizeof *r->lost_ids))
        return sk__fail(err, SK_ERR_NOMEM, "out of memory");
    snprintf(r->lost_ids[r->lost_ids_count++], sizeof *r->lost_ids, "%s", event_id);
    return SK_OK;
}

/* Copies the statement's current row (or counts it, when only checking). A
   row missing a required field cannot be queued again: it counts as lost. */
static sk_status take_row(salvage *sv, sqlite3_stmt *st, sk__err *err)
{
    const char *eid = (const char *)sqlite3_column_text(st, 1);
    for (int i = 1; i <= 4; i++)
        if (sqlite3_column_type(st, i) == SQLITE_NULL)
            return add_lost(sv, eid, err);
    if (sv->ins) {
        for (int i = 0; i < 8; i++)
            sqlite3_bind_value(sv->ins, i + 1, sqlite3_column_value(st, i));
        sqlite3 *dst = sqlite3_db_handle(sv->ins);
        int rc = sqlite3_step(sv->ins);
        sqlite3_reset(sv->ins);
        if (rc != SQLITE_DONE)
            return sql_fail(dst, err, rc, "the fresh queue.db", "insert");
        if (sqlite3_changes(dst) == 0) /* an event_id twice: the first one stays */
            return add_lost(sv, eid, err);
    }
    sv->r->rows_readable++;
    sv->r->bytes_readable += sqlite3_column_bytes(st, 3);
    return SK_OK;
}

/* Reads the key at or after `from`: 1 readable (*id set, or INT64_MAX past the
   end), 0 damaged. */
static int probe(salvage *sv, int64_t from, int64_t *id)
{
    sqlite3_bind_int64(sv->probe, 1, from);
    int rc = sqlite3_step(sv->probe);
    *id = rc == SQLITE_ROW ? sqlite3_column_int64(sv->probe, 0) : INT64_MAX;
    sqlite3_reset(sv->probe);
    return rc == SQLITE_ROW || rc == SQLITE_DONE;
}

/*
 * A walk from `from` failed before it read a row. Returns where to go on:
 * past the one unreadable row when its key can still be read, else the first
 * key whose page reads again (steps doubling from the damage, then halving
 * back), INT64_MAX when none does.
 */
static int64_t skip_damage(salvage *sv, int64_t from)
{
    int64_t id;
    if (probe(sv, from, &id))
        return id == INT64_MAX ? INT64_MAX : id + 1;
    /* Queue ids are positive (AUTOINCREMENT): a search from below 0 starts at 0,
       which lands on the same damaged first page. */
    int64_t lo = from < 0 ? 0 : from, hi = lo;
    for (int64_t step = 1;; step *= 2) {
        if (lo > INT64_MAX - step)
            return INT64_MAX;
        hi = lo + step;
        if (probe(sv, hi, &id))
            break;
        lo = hi;
        if (step > INT64_MAX / 2)
            return INT64_MAX;
    }
    while (hi - lo > 1) { /* lo fails, hi reads */
        int64_t mid = lo + (hi - lo) / 2;
        if (probe(sv, mid, &id))
            hi = mid;
        else
            lo = mid;
    }
    return hi;
}

/* Walks the table by rowid, skipping the ranges that cannot be read. */
static sk_status walk_table(salvage *sv, sk__err *err)
{
    int64_t next = INT64_MIN;
    while (next != INT64_MAX) {
        int64_t last = 0;
        int read_any = 0, rc;
        sk_status s = SK_OK;
        sqlite3_bind_int64(sv->walk, 1, next);
        while (s == SK_OK && (rc = sqlite3_step(sv->walk)) == SQLITE_ROW) {
            last = sqlite3_column_int64(sv->walk, 0);
            read_any = 1;
            if (!sk__grow((void **)&sv->got, &sv->got_cap, sv->got_n + 1, sizeof *sv->got))
                s = sk__fail(err, SK_ERR_NOMEM, "out of memory");
            else
                sv->got[sv->got_n++] = last;
            if (s == SK_OK)
                s = take_row(sv, sv->walk, err);
        }
        sqlite3_reset(sv->walk);
        if (s != SK_OK)
            return s;
        if (rc == SQLITE_DONE)
            break;
        if (!is_damage(rc))
            return sql_fail(sv->src, err, rc, "queue.db", "read");
        next = read_any ? (last == INT64_MAX ? INT64_MAX : last + 1) : skip_damage(sv, next);
    }
    return SK_OK;
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int was_read(const salvage *sv, int64_t id)
{
    return sv->got_n && bsearch(&id, sv->got, sv->got_n, sizeof id, cmp_id) != NULL;
}

/* Every index (a covering scan reads no table page) names rows; keeps those the
   walk did not read. A damaged index ends its own scan only. */
static sk_status collect_misses(salvage *sv, sk__err *err)
{
    static const char *const scans[] = {
        "SELECT id, event_id FROM queue INDEXED BY sqlite_autoindex_queue_1 ORDER BY event_id",
        "SELECT id, NULL FROM queue INDEXED BY idx_timestamp ORDER BY timestamp",
        "SELECT id, NULL FROM queue INDEXED BY idx_retry ORDER BY retry_count",
        "SELECT id, NULL FROM queue INDEXED BY sk_idx_ready ORDER BY state, timestamp",
    };
    for (size_t i = 0; i < SK__ARRAY_LEN(scans); i++) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(sv->src, scans[i], -1, &st, NULL) != SQLITE_OK) {
            sqlite3_finalize(st); /* no such index (or no schema): nothing to learn */
            continue;
        }
        while (sqlite3_step(st) == SQLITE_ROW) {
            int64_t id = sqlite3_column_int64(st, 0);
            if (was_read(sv, id))
                continue;
            if (!sk__grow((void **)&sv->miss, &sv->miss_cap, sv->miss_n + 1, sizeof *sv->miss)) {
                sqlite3_finalize(st);
                return sk__fail(err, SK_ERR_NOMEM, "out of memory");
            }
            struct miss *m = &sv->miss[sv->miss_n++];
            m->id = id;
            const char *eid = (const char *)sqlite3_column_text(st, 1);
            snprintf(m->event_id, sizeof m->event_id, "%s", eid ? eid : "");
        }
        sqlite3_finalize(st);
    }
    return SK_OK;
}

static int cmp_miss(const void *a, const void *b)
{
    const struct miss *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

/* Reads each missed row on its own: what still fails is lost. */
static sk_status reread_misses(salvage *sv, sk__err *err)
{
    if (sv->miss_n)
        qsort(sv->miss, sv->miss_n, sizeof *sv->miss, cmp_miss);
    sk_status s = SK_OK;
    for (size_t i = 0; s == SK_OK && i < sv->miss_n; i++) {
        const struct miss *m = &sv->miss[i];
        const char *eid = m->event_id;
        while (i + 1 < sv->miss_n && sv->miss[i + 1].id == m->id) /* named by several indexes */
            if (!*eid)
                eid = sv->miss[++i].event_id;
            else
                i++;
        sqlite3_bind_int64(sv->one, 1, m->id);
        int rc = sqlite3_step(sv->one);
        if (rc == SQLITE_ROW)
            s = take_row(sv, sv->one, err);
        else if (rc != SQLITE_DONE) /* DONE: a stale index entry, no row behind it */
            s = is_damage(rc) ? add_lost(sv, eid, err) : sql_fail(sv->src, err, rc, "queue.db", "read");
        sqlite3_reset(sv->one);
    }
    return s;
}

/* The whole salvage: walk, then the rows only the indexes still know. */
static sk_status salvage_rows(salvage *sv, sk__err *err)
{
    sk_status s = prepare_reads(sv, err);
    if (s != SK_OK) {
        /* No schema can be read, so no row either: a repair gives an empty queue. */
        sv->r->damaged = 1;
        return SK_OK;
    }
    s = walk_table(sv, err);
    if (s == SK_OK)
        s = collect_misses(sv, err);
    if (s == SK_OK)
        s = reread_misses(sv, err);
    return s;
}

static void salvage_free(salvage *sv)
{
    sqlite3_finalize(sv->walk);
    sqlite3_finalize(sv->probe);
    sqlite3_finalize(sv->one);
    sqlite3_finalize(sv->ins);
    free(sv->got);
    free(sv->miss);
}

/* ---- files ------------------------------------------------------------------ */

typedef struct queue_files {
    char db[PATH_MAX], wal[PATH_MAX + 8], shm[PATH_MAX + 8], fresh[PATH_MAX + 16];
    char fresh_wal[PATH_MAX + 24], fresh_shm[PATH_MAX + 24], drain_lock[PATH_MAX];
} queue_files;

static sk_status files_init(const char *root, queue_files *f, sk__err *err)
{
    sk_status s = sk__path_join(f->db, sizeof f->db, root, "queue.db", err);
    if (s == SK_OK)
        s = sk__path_join(f->drain_lock, sizeof f->drain_lock, root, "drain.lock", err);
    if (s == SK_OK) {
        snprintf(f->wal, sizeof f->wal, "%s-wal", f->db);
        snprintf(f->shm, sizeof f->shm, "%s-shm", f->db);
        snprintf(f->fresh, sizeof f->fresh, "%s.repair", f->db);
        snprintf(f->fresh_wal, sizeof f->fresh_wal, "%s-wal", f->fresh);
        snprintf(f->fresh_shm, sizeof f->fresh_shm, "%s-shm", f->fresh);
    }
    return s;
}

static int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
}

/* Opens the queue file as it is: no migration, no checkpoint when closing
   (a checkpoint would write into the damaged file). */
static sk_status open_src(const queue_files *f, int flags, sqlite3 **db, sk__err *err)
{
    *db = NULL;
    if (access(f->db, F_OK) != 0)
        return sk__fail(err, SK_ERR_NOT_FOUND, "%s: %s", f->db, strerror(errno));
    int rc = sqlite3_open_v2(f->db, db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        sk_status s = sql_fail(*db, err, rc, f->db, "open");
        sqlite3_close(*db);
        *db = NULL;
        return s;
    }
    sqlite3_db_config(*db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    sqlite3_busy_timeout(*db, 2000);
    return SK_OK;
}

/* Sizes and the integrity check of the open file. */
static void check_file(sqlite3 *src, const queue_files *f, sk__doctor_report *r)
{
    r->file_bytes = file_size(f->db) + file_size(f->wal);
    integrity_check(src, r);
}

/* Reads every readable row of src into ins (NULL: counts only). */
static sk_status salvage_into(sqlite3 *src, sqlite3_stmt *ins, sk__doctor_report *r,
                              sk__err *err)
{
    salvage sv = {.src = src, .ins = ins, .r = r};
    sk_status s = salvage_rows(&sv, err);
    sv.ins = NULL; /* the caller's */
    salvage_free(&sv);
    return s;
}

sk_status sk__doctor_check(const char *root, sk__doctor_report *r, sk__err *err)
{
    memset(r, 0, sizeof *r);
    queue_files f;
    sqlite3 *db = NULL;
    sk_status s = files_init(root, &f, err);
    if (s == SK_OK)
        s = open_src(&f, SQLITE_OPEN_READONLY, &db, err);
    if (s == SK_OK) {
        check_file(db, &f, r);
        s = salvage_into(db, NULL, r, err);
    }
    sqlite3_close(db);
    return s;
}

void sk__doctor_report_free(sk__doctor_report *r)
{
    if (r) {
        free(r->lost_ids);
        r->lost_ids = NULL;
        r->lost_ids_count = 0;
    }
}

/* ---- repair ----------------------------------------------------------------- */

static void remove_fresh(const queue_files *f)
{
    unlink(f->fresh);
    unlink(f->fresh_wal);
    unlink(f->fresh_shm);
}

/* No drain may run meanwhile: the drain lock, held until the repair ends. */
static sk_status lock_drains(const queue_files *f, int *fd, sk__err *err)
{
    *fd = open(f->drain_lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (*fd < 0)
        return sk__fail(err, SK_ERR_IO, "cannot open %s: %s", f->drain_lock, strerror(errno));
    if (flock(*fd, LOCK_EX | LOCK_NB) == 0)
        return SK_OK;
    close(*fd);
    *fd = -1;
    return sk__fail(err, SK_ERR_BUSY,
                    "a drain (`spec-kitty sync now`) is running: repair when it has ended");
}

/*
 * Keeps queue.db to this connection alone: in exclusive locking mode the first
 * read locks the file itself, which every other connection needs (even to
 * read), so none can write into the file being replaced. BUSY when another
 * process has it open. Any other failure is damage, which the salvage reports.
 */
static sk_status take_exclusive(sqlite3 *db, sk__err *err)
{
    int rc = sqlite3_exec(db, "PRAGMA locking_mode=EXCLUSIVE; SELECT count(*) FROM sqlite_master",
                          NULL, NULL, NULL);
    if ((rc & 0xff) != SQLITE_BUSY)
        return SK_OK;
    return sk__fail(err, SK_ERR_BUSY,
                    "queue.db is open in another process (an emit, a status or a drain): "
                    "repair when it is done");
}

/* Builds f->fresh with the normal schema and every readable row of src. */
static sk_status build_fresh(sqlite3 *src, const queue_files *f, sk__doctor_report *r,
                             sk__err *err)
{
    remove_fresh(f); /* left by a repair that was interrupted */
    sk__queue *fq = NULL;
    sk_status s = sk__queue_open(f->fresh, NULL, &fq, err);
    sk__queue_close(fq);
    sqlite3 *dst = NULL;
    sqlite3_stmt *ins = NULL;
    if (s == SK_OK) {
        int rc = sqlite3_open_v2(f->fresh, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(dst, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        s = rc == SQLITE_OK ? SK_OK : sql_fail(dst, err, rc, f->fresh, "open");
    }
    if (s == SK_OK)
        s = prepare(dst,
                    "INSERT OR IGNORE INTO queue (id, event_id, event_type, data, timestamp, "
                    "retry_count, state, last_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    &ins, f->fresh, err);
    if (s == SK_OK)
        s = salvage_into(src, ins, r, err);
    sqlite3_finalize(ins);
    if (s == SK_OK) {
        /* The last connection to close folds the WAL into the file and deletes it. */
        int rc = sqlite3_exec(dst, "COMMIT", NULL, NULL, NULL);
        s = rc == SQLITE_OK ? SK_OK : sql_fail(dst, err, rc, f->fresh, "commit");
    }
    if (dst && sqlite3_close(dst) != SQLITE_OK && s == SK_OK)
        s = sk__fail(err, SK_ERR_IO, "%s: cannot close", f->fresh);
    if (s == SK_OK && access(f->fresh_wal, F_OK) == 0)
        s = sk__fail(err, SK_ERR_IO, "%s: its WAL was not folded in", f->fresh);
    if (s == SK_OK)
        s = sk__fsync_path(f->fresh, err);
    if (s != SK_OK)
        remove_fresh(f);
    return s;
}

/* A second name for the damaged file (and its WAL): queue.db.damaged-<UTC time>. */
static sk_status keep_damaged(const queue_files *f, sk__doctor_report *r, sk__err *err)
{
    char stamp[32], wal[PATH_MAX + 80];
    time_t now = time(NULL);
    struct tm tm;
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", gmtime_r(&now, &tm));
    for (int n = 1;; n++) {
        if (n == 1)
            snprintf(r->kept_as, sizeof r->kept_as, "%s.damaged-%s", f->db, stamp);
        else
            snprintf(r->kept_as, sizeof r->kept_as, "%s.damaged-%s-%d", f->db, stamp, n);
        if (link(f->db, r->kept_as) == 0)
            break;
        if (errno != EEXIST || n == 100)
            return sk__fail(err, SK_ERR_IO, "cannot keep the damaged file as %s: %s", r->kept_as,
                            strerror(errno));
    }
    snprintf(wal, sizeof wal, "%s-wal", r->kept_as);
    if (file_size(f->wal) > 0 && link(f->wal, wal) != 0) {
        int e = errno;
        unlink(r->kept_as); /* queue.db still names the file */
        return sk__fail(err, SK_ERR_IO, "cannot keep the damaged WAL as %s: %s", wal, strerror(e));
    }
    return SK_OK;
}

/* Puts the fresh file in place. Its WAL and index must not meet the old
   ones, so those go first (the WAL is kept beside the damaged file). */
static sk_status swap_in(const queue_files *f, const char *root, sk__doctor_report *r,
                         sk__err *err)
{
    sk_status s = keep_damaged(f, r, err);
    if (s != SK_OK)
        return s;
    unlink(f->wal);
    unlink(f->shm);
    if (rename(f->fresh, f->db) != 0) {
        int e = errno;
        char wal[PATH_MAX + 80];
        snprintf(wal, sizeof wal, "%s-wal", r->kept_as);
        if (link(wal, f->wal) == 0) /* gives the old file its WAL back */
            unlink(wal);
        unlink(r->kept_as);
        return sk__fail(err, SK_ERR_IO, "cannot move %s to %s: %s", f->fresh, f->db, strerror(e));
    }
    r->repaired = 1;
    return sk__fsync_path(root, err);
}

sk_status sk__doctor_repair(const char *root, sk__doctor_report *r, sk__err *err)
{
    memset(r, 0, sizeof *r);
    queue_files f;
    sk_status s = files_init(root, &f, err);
    if (s != SK_OK)
        return s;
    long pid = 0;
    s = sk__service_find(root, &pid, err); /* unsure whether one runs: no repair */
    if (s != SK_OK)
        return s;
    if (pid != 0)
        return sk__fail(err, SK_ERR_BUSY,
                        "the sync service runs (pid %ld): stop it first with "
                        "`spec-kitty sync daemon stop`",
                        pid);
    int lock_fd = -1;
    sqlite3 *src = NULL;
    s = lock_drains(&f, &lock_fd, err);
    if (s == SK_OK)
        s = open_src(&f, SQLITE_OPEN_READWRITE, &src, err);
    if (s == SK_OK)
        s = take_exclusive(src, err);
    if (s == SK_OK) {
        check_file(src, &f, r);
        s = r->damaged ? build_fresh(src, &f, r, err) : salvage_into(src, NULL, r, err);
    }
    if (s == SK_OK && r->damaged)
        s = swap_in(&f, root, r, err);
    sqlite3_close(src); /* after the swap: until then no other process can open it */
    if (lock_fd >= 0)
        close(lock_fd);
    return s;
}
