/*
 * The receiver's SQLite file: received events (event_id unique) and the
 * hashes of issued tokens. One connection, serialised by a mutex; every
 * function is thread-safe.
 */
#ifndef RCV_STORE_H
#define RCV_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct rcv__store rcv__store;

/* One event to insert; outcome is set by rcv__store_insert_batch. */
typedef struct rcv__row {
    const char *event_id;
    const char *event_type;
    const char *team_slug;
    const char *data; /* the envelope as compact JSON */
    size_t data_len;
    int inserted; /* out: 1 stored, 0 duplicate (already stored) */
} rcv__row;

/* Opens (creating if needed) the database at path. WAL, synchronous=NORMAL. */
int rcv__store_open(const char *path, rcv__store **out, char *msg, size_t cap);
void rcv__store_close(rcv__store *st);

/* Number of stored events. */
int64_t rcv__store_count(rcv__store *st);

/* Inserts rows in one transaction (received_at = now_ms). Returns 0, or -1
 * (nothing stored) with msg. */
int rcv__store_insert_batch(rcv__store *st, rcv__row *rows, size_t n, int64_t now_ms, char *msg,
                            size_t cap);

/* Token kinds. */
enum { RCV_TOKEN_ACCESS = 1, RCV_TOKEN_REFRESH = 2 };

/* Records a token by its SHA-256 hash. */
int rcv__store_token_put(rcv__store *st, const unsigned char hash[32], int kind, const char *user,
                         const char *team, int64_t expires_at_ms);

/*
 * Looks a token up (take=0) or atomically looks it up and deletes it
 * (take=1, for refresh rotation). Returns 0 and fills user/team when a
 * token of that kind exists and is not expired at now_ms, 1 otherwise.
 */
int rcv__store_token_find(rcv__store *st, const unsigned char hash[32], int kind, int take,
                          int64_t now_ms, char *user, size_t user_cap, char *team, size_t team_cap);

/* Makes every token of kind (0 = all kinds) expire now. Returns the count. */
int rcv__store_tokens_expire(rcv__store *st, int kind, int64_t now_ms);

#endif
