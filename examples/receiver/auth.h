/*
 * Users and tokens for the receiver. The users file is JSON:
 *   {"version": 1, "users": {"<name>": {"team_slug": "...",
 *     "algorithm": "pbkdf2-sha256", "iterations": N,
 *     "salt": "<hex>", "hash": "<hex>"}}}
 * Tokens are 256-bit random strings (getrandom), handed out once and kept
 * only as SHA-256 hashes (see store.h).
 */
#ifndef RCV_AUTH_H
#define RCV_AUTH_H

#include <jansson.h>
#include <stddef.h>

#define RCV_TOKEN_CHARS 64 /* hex of 32 random bytes */

/* Loads the users file. Returns 0 with a new reference in *users, or -1 with msg. */
int rcv__users_load(const char *path, json_t **users, char *msg, size_t cap);

/*
 * Adds or replaces user name (team slug team) with password in the users
 * file at path, creating it; the file is written atomically with mode 0600.
 */
int rcv__users_add(const char *path, const char *name, const char *team, const char *password,
                   char *msg, size_t cap);

/*
 * Checks name/password against users (as loaded). Returns 0 and copies the
 * user's team slug into team when they match, -1 otherwise.
 */
int rcv__users_check(const json_t *users, const char *name, const char *password, char *team,
                     size_t team_cap);

/* Writes a new random token (RCV_TOKEN_CHARS + NUL) into out. */
int rcv__token_new(char out[RCV_TOKEN_CHARS + 1]);

/* SHA-256 of a token string, the only form in which tokens are stored. */
void rcv__token_hash(const char *token, unsigned char out[32]);

#endif
