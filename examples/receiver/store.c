/* SQLite storage for the receiver; see store.h. */
#include "store.h"
#include "common.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct rcv__store {
    sqlite3 *db;
    pthread_mutex_t lock;
    sqlite3_stmt *insert_event;
    sqlite3_stmt *begin, *commit, *rollback;
    sqlite3_stmt *token_put, *token_get, *token_del;
    int64_t count;
    /* Background checkpointer: its own connection, so fsync never runs
     * inside a batch commit. */
    sqlite3 *ckpt_db;
    pthread_t ckpt_thread;
    int ckpt_running, stopping;
    pthread_mutex_t ckpt_lock;
    pthread_cond_t ckpt_cond;
};

/*
 * Durability: WAL with synchronous=NORMAL survives a crash of the receiver
 * (every committed batch is in the WAL); a power loss may lose the last
 * commits. That matches what a client can observe from a server anyway.
 */
static const char schema[] = "PRAGMA journal_mode=WAL;"
                             "PRAGMA synchronous=NORMAL;"
                             "PRAGMA cache_size=-65536;"
                             "PRAGMA journal_size_limit=67108864;"
                             "PRAGMA wal_autocheckpoint=0;" /* the checkpointer thread does it */
                             "CREATE TABLE IF NOT EXISTS events ("
                             "  id INTEGER PRIMARY KEY,"
                             "  event_id TEXT UNIQUE NOT NULL,"
                             "  event_type TEXT NOT NULL,"
                             "  team_slug TEXT,"
                             "  data TEXT NOT NULL,"
                             "  received_at INTEGER NOT NULL);"
                             "CREATE TABLE IF NOT EXISTS tokens ("
                             "  hash BLOB PRIMARY KEY,"
                             "  kind INTEGER NOT NULL,"
                             "  username TEXT NOT NULL,"
                             "  team_slug TEXT NOT NULL,"
                             "  expires_at INTEGER NOT NULL);";

/* Prepares every statement the store uses. */
static int prepare_all(rcv__store *st)
{
    struct {
        sqlite3_stmt **stmt;
        const char *sql;
    } list[] = {
        {&st->insert_event, "INSERT OR IGNORE INTO events(event_id, event_type, team_slug, data, "
                            "received_at) VALUES (?, ?, ?, ?, ?)"},
        {&st->begin, "BEGIN IMMEDIATE"},
        {&st->commit, "COMMIT"},
        {&st->rollback, "ROLLBACK"},
        {&st->token_put, "INSERT OR REPLACE INTO tokens(hash, kind, username, team_slug, "
                         "expires_at) VALUES (?, ?, ?, ?, ?)"},
        {&st->token_get, "SELECT username, team_slug, expires_at FROM tokens WHERE hash = ? AND "
                         "kind = ?"},
        {&st->token_del, "DELETE FROM tokens WHERE hash = ?"},
    };
    for (size_t i = 0; i < sizeof(list) / sizeof(list[0]); i++) {
        if (sqlite3_prepare_v3(st->db, list[i].sql, -1, SQLITE_PREPARE_PERSISTENT, list[i].stmt,
                               NULL) != SQLITE_OK)
            return -1;
    }
    return 0;
}

/* Reads the current number of events into st->count. */
static int load_count(rcv__store *st)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(st->db, "SELECT count(*) FROM events", -1, &q, NULL) != SQLITE_OK)
        return -1;
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        st->count = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return rc == SQLITE_ROW ? 0 : -1;
}

/* Every 500 ms, copies committed WAL frames into the database (PASSIVE:
 * never waits for the writer); the WAL restarts once fully copied. */
static void *checkpointer(void *arg)
{
    rcv__store *st = arg;
    pthread_mutex_lock(&st->ckpt_lock);
    while (!st->stopping) {
        struct timespec until = sk__deadline_in(CLOCK_REALTIME, 500);
        pthread_cond_timedwait(&st->ckpt_cond, &st->ckpt_lock, &until);
        if (st->stopping)
            break;
        pthread_mutex_unlock(&st->ckpt_lock);
        sqlite3_wal_checkpoint_v2(st->ckpt_db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_lock(&st->ckpt_lock);
    }
    pthread_mutex_unlock(&st->ckpt_lock);
    return NULL;
}

/* Opens the checkpointer's connection and starts its thread. */
static int start_checkpointer(rcv__store *st, const char *path)
{
    if (sqlite3_open_v2(path, &st->ckpt_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_busy_timeout(st->ckpt_db, 1000) != SQLITE_OK ||
        /* Reading the header makes this connection see WAL mode; until then
         * a checkpoint call does nothing. */
        sqlite3_exec(st->ckpt_db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    if (pthread_create(&st->ckpt_thread, NULL, checkpointer, st) != 0)
        return -1;
    st->ckpt_running = 1;
    return 0;
}

int rcv__store_open(const char *path, rcv__store **out, char *msg, size_t cap)
{
    rcv__store *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    pthread_mutex_init(&st->lock, NULL);
    pthread_mutex_init(&st->ckpt_lock, NULL);
    pthread_cond_init(&st->ckpt_cond, NULL);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &st->db, flags, NULL) != SQLITE_OK ||
        sqlite3_busy_timeout(st->db, 5000) != SQLITE_OK ||
        sqlite3_exec(st->db, schema, NULL, NULL, NULL) != SQLITE_OK || prepare_all(st) != 0 ||
        load_count(st) != 0 || start_checkpointer(st, path) != 0) {
        snprintf(msg, cap, "%s: %s", path, st->db ? sqlite3_errmsg(st->db) : "out of memory");
        rcv__store_close(st);
        return -1;
    }
    *out = st;
    return 0;
}

void rcv__store_close(rcv__store *st)
{
    if (!st)
        return;
    if (st->ckpt_running) {
        pthread_mutex_lock(&st->ckpt_lock);
        st->stopping = 1;
        pthread_cond_signal(&st->ckpt_cond);
        pthread_mutex_unlock(&st->ckpt_lock);
        pthread_join(st->ckpt_thread, NULL);
    }
    sqlite3_close(st->ckpt_db);
    sqlite3_stmt *all[] = {st->insert_event, st->begin,     st->commit,   st->rollback,
                           st->token_put,    st->token_get, st->token_del};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        sqlite3_finalize(all[i]);
    sqlite3_close(st->db); /* the last connection checkpoints and removes the WAL */
    pthread_mutex_destroy(&st->lock);
    pthread_mutex_destroy(&st->ckpt_lock);
    pthread_cond_destroy(&st->ckpt_cond);
    free(st);
}

int64_t rcv__store_count(rcv__store *st)
{
    pthread_mutex_lock(&st->lock);
    int64_t n = st->count;
    pthread_mutex_unlock(&st->lock);
    return n;
}

/* Runs a statement without results and resets it. */
static int run(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* Inserts one row; sets row->inserted. Caller holds the lock and a transaction. */
static int insert_row(rcv__store *st, rcv__row *row, int64_t now_ms)
{
    sqlite3_stmt *s = st->insert_event;
    sqlite3_bind_text(s, 1, row->event_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, row->event_type, -1, SQLITE_STATIC);
    if (row->team_slug)
        sqlite3_bind_text(s, 3, row->team_slug, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 3);
    sqlite3_bind_text(s, 4, row->data, (int)row->data_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, now_ms);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_DONE)
        return -1;
    row->inserted = sqlite3_changes(st->db) > 0;
    return 0;
}

int rcv__store_insert_batch(rcv__store *st, rcv__row *rows, size_t n, int64_t now_ms, char *msg,
                            size_t cap)
{
    pthread_mutex_lock(&st->lock);
    int rc = run(st->begin);
    int64_t added = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = insert_row(st, &rows[i], now_ms);
        added += rows[i].inserted;
    }
    if (rc == 0)
        rc = run(st->commit);
    if (rc != 0) {
        snprintf(msg, cap, "database: %s", sqlite3_errmsg(st->db));
        if (!sqlite3_get_autocommit(st->db))
            run(st->rollback);
    } else {
        st->count += added;
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int rcv__store_token_put(rcv__store *st, const unsigned char hash[32], int kind, const char *user,
                         const char *team, int64_t expires_at_ms)
{
    pthread_mutex_lock(&st->lock);
    sqlite3_stmt *s = st->token_put;
    sqlite3_bind_blob(s, 1, hash, 32, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, kind);
    sqlite3_bind_text(s, 3, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, team, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, expires_at_ms);
    int rc = run(s);
    sqlite3_clear_bindings(s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

/* Copies column col of s into buf (truncating). */
static void copy_col(sqlite3_stmt *s, int col, char *buf, size_t cap)
{
    const unsigned char *v = sqlite3_column_text(s, col);
    snprintf(buf, cap, "%s", v ? (const char *)v : "");
}

int rcv__store_token_find(rcv__store *st, const unsigned char hash[32], int kind, int take,
                          int64_t now_ms, char *user, size_t user_cap, char *team, size_t team_cap)
{
    pthread_mutex_lock(&st->lock);
    sqlite3_stmt *s = st->token_get;
    sqlite3_bind_blob(s, 1, hash, 32, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, kind);
    int found = 0;
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int64(s, 2) > now_ms) {
        found = 1;
        copy_col(s, 0, user, user_cap);
        copy_col(s, 1, team, team_cap);
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (found && take) {
        /* A refresh token is single-use: deleting it under the lock means two
         * concurrent refreshes cannot both succeed. */
        sqlite3_bind_blob(st->token_del, 1, hash, 32, SQLITE_STATIC);
        found = run(st->token_del) == 0 && sqlite3_changes(st->db) == 1;
        sqlite3_clear_bindings(st->token_del);
    }
    pthread_mutex_unlock(&st->lock);
    return found ? 0 : 1;
}

int rcv__store_tokens_expire(rcv__store *st, int kind, int64_t now_ms)
{
    pthread_mutex_lock(&st->lock);
    sqlite3_stmt *s = NULL;
    int n = -1;
    if (sqlite3_prepare_v2(st->db,
                           "UPDATE tokens SET expires_at = ?1 WHERE (?2 = 0 OR kind = ?2) "
                           "AND expires_at > ?1",
                           -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, now_ms);
        sqlite3_bind_int(s, 2, kind);
        if (sqlite3_step(s) == SQLITE_DONE)
            n = sqlite3_changes(st->db);
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->lock);
    return n;
}
