/* Users file (PBKDF2-SHA256 via OpenSSL) and opaque tokens; see auth.h. */
#include "auth.h"

#include "common.h"
#include "jalloc.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>

#define PBKDF2_ITERATIONS 200000
#define SALT_BYTES 16
#define HASH_BYTES 32

/* Lowercase hex of n bytes into out (2n + 1). */
static void to_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Decodes exactly n bytes of hex; -1 when hex is not that. */
static int from_hex(const char *hex, unsigned char *out, size_t n)
{
    if (!hex || strlen(hex) != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (unsigned char)v;
    }
    return 0;
}

/* PBKDF2-HMAC-SHA256 of password with salt. */
static int derive(const char *password, const unsigned char *salt, size_t salt_len, int iter,
                  unsigned char out[HASH_BYTES])
{
    return PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len, iter,
                             EVP_sha256(), HASH_BYTES, out) == 1
               ? 0
               : -1;
}

int rcv__users_load(const char *path, json_t **users, char *msg, size_t cap)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        snprintf(msg, cap, "%s: %s", path, jerr.text);
        return -1;
    }
    if (!json_is_object(json_object_get(root, "users"))) {
        snprintf(msg, cap, "%s: no \"users\" object", path);
        json_decref(root);
        return -1;
    }
    *users = root;
    return 0;
}

/* Builds the file entry for a password: fresh salt, PBKDF2 hash. */
static json_t *make_entry(const char *team, const char *password)
{
    unsigned char salt[SALT_BYTES], hash[HASH_BYTES];
    char salt_hex[2 * SALT_BYTES + 1], hash_hex[2 * HASH_BYTES + 1];
    sk__err err;
    if (sk__random_bytes(salt, sizeof salt, &err) != SK_OK ||
        derive(password, salt, sizeof salt, PBKDF2_ITERATIONS, hash) != 0)
        return NULL;
    to_hex(salt, sizeof salt, salt_hex);
    to_hex(hash, sizeof hash, hash_hex);
    OPENSSL_cleanse(hash, sizeof hash);
    return json_pack("{s:s, s:s, s:i, s:s, s:s}", "team_slug", team, "algorithm", "pbkdf2-sha256",
                     "iterations", PBKDF2_ITERATIONS, "salt", salt_hex, "hash", hash_hex);
}

int rcv__users_add(const char *path, const char *name, const char *team, const char *password,
                   char *msg, size_t cap)
{
    json_t *root = NULL;
    /* Only a file that is really absent starts afresh: one we cannot read is an error. */
    if (access(path, F_OK) == 0 || errno != ENOENT) {
        if (rcv__users_load(path, &root, msg, cap) != 0)
            return -1;
    } else {
        root = json_pack("{s:i, s:{}}", "version", 1, "users");
    }
    json_t *entry = make_entry(team, password);
    int rc = -1;
    if (root && entry && json_object_set_new(json_object_get(root, "users"), name, entry) == 0) {
        entry = NULL;
        char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
        sk__err err;
        if (text && sk__write_file_atomic(path, text, strlen(text), 0600, 1, &err) == SK_OK)
            rc = 0;
        else
            snprintf(msg, cap, "%s", text ? err.msg : "out of memory");
        free(text);
    } else {
        snprintf(msg, cap, "cannot build the user entry");
    }
    json_decref(entry);
    json_decref(root);
    return rc;
}

int rcv__users_check(const json_t *users, const char *name, const char *password, char *team,
                     size_t team_cap)
{
    const json_t *u = json_object_get(json_object_get(users, "users"), name);
    unsigned char salt[SALT_BYTES], want[HASH_BYTES], got[HASH_BYTES];
    json_int_t iter = json_integer_value(json_object_get(u, "iterations"));
    if (!u || iter < 1 || iter > 10000000 ||
        from_hex(json_string_value(json_object_get(u, "salt")), salt, sizeof salt) != 0 ||
        from_hex(json_string_value(json_object_get(u, "hash")), want, sizeof want) != 0 ||
        derive(password, salt, sizeof salt, (int)iter, got) != 0)
        return -1;
    /* Constant time, so the comparison does not leak how much matched. */
    int same = CRYPTO_memcmp(want, got, sizeof got) == 0;
    OPENSSL_cleanse(got, sizeof got);
    if (!same)
        return -1;
    const char *t = json_string_value(json_object_get(u, "team_slug"));
    snprintf(team, team_cap, "%s", t ? t : "local");
    return 0;
}

int rcv__token_new(char out[RCV_TOKEN_CHARS + 1])
{
    unsigned char raw[RCV_TOKEN_CHARS / 2];
    sk__err err;
    if (sk__random_bytes(raw, sizeof raw, &err) != SK_OK)
        return -1;
    to_hex(raw, sizeof raw, out);
    OPENSSL_cleanse(raw, sizeof raw);
    return 0;
}

void rcv__token_hash(const char *token, unsigned char out[32])
{
    unsigned int len = 32;
    EVP_Digest(token, strlen(token), out, &len, EVP_sha256(), NULL);
}
