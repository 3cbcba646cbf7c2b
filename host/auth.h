/*
 * Authentication: the credentials store (<state root>/credentials.json, owner
 * only), login, logout, and token refresh against the server's token
 * endpoints (CONTRACT.md §4).
 *
 * One sk__auth handle serves one state root. The header and refresh verbs are
 * thread-safe; refresh is single-flight across threads (a mutex) and across
 * processes (flock on <state root>/auth.lock, then a re-read of the file), so
 * two drainers never spend the same rotating refresh token twice.
 *
 * Tokens and passwords never appear in an error message.
 */
#ifndef SK_HOST_AUTH_H
#define SK_HOST_AUTH_H

#include "common.h"
#include "config.h"

#define SK__AUTH_TOKEN_MAX 4096
#define SK__AUTH_DEFAULT_ACCESS_S 900
#define SK__AUTH_DEFAULT_REFRESH_S (7 * 24 * 3600)
/* Refresh proactively when the access token has less than this left. */
#define SK__AUTH_REFRESH_MARGIN_MS 60000

typedef enum sk__auth_state {
    SK__AUTH_NONE = 0,    /* "Not authenticated": no credentials */
    SK__AUTH_OK = 1,      /* "Authenticated": a refresh token that is still valid */
    SK__AUTH_EXPIRED = 2, /* "Session expired": the user must log in again */
    SK__AUTH_STATIC = 3   /* "Static token": SPEC_KITTY_ACCESS_TOKEN, never refreshed */
} sk__auth_state;

/* The human name of a state ("Authenticated", "Session expired", ...). */
const char *sk__auth_state_name(sk__auth_state state);

/* What credentials.json holds. Expiry times are wall clock, ms since the epoch (0: none). */
typedef struct sk__creds {
    char server_url[1024];
    char username[256];
    char team_slug[128];
    char access[SK__AUTH_TOKEN_MAX];  /* "" when none */
    char refresh[SK__AUTH_TOKEN_MAX]; /* "" when none */
    int64_t access_expires_ms;
    int64_t refresh_expires_ms;
    int session_expired; /* the server ended the session: tokens dropped, names kept */
} sk__creds;

/*
 * Reads credentials from path. SK_ERR_NOT_FOUND when missing; SK_ERR_PERMISSION
 * when the file is a symlink, not ours, or open to group/others (the message
 * names the chmod that fixes it); SK_ERR_CONFIG when it is not valid JSON.
 */
sk_status sk__creds_load(const char *path, sk__creds *out, sk__err *err);

/* The parsing half of sk__creds_load: text is the file's content, path only
 * names it in messages. SK_ERR_CONFIG when it is not valid credentials JSON. */
sk_status sk__creds_parse(const char *path, const char *text, sk__creds *out, sk__err *err);

/* Writes credentials to path atomically with mode 0600 (data and folder fsynced). */
sk_status sk__creds_save(const char *path, const sk__creds *c, sk__err *err);

/* Wipes the tokens held in c. */
void sk__creds_wipe(sk__creds *c);

/*
 * Applies a 200 answer of the token (or refresh) endpoint to c: new access
 * token, new refresh token when given (rotation), lifetimes (numbers or
 * numeric strings; defaults 900 s / 7 days when absent), team_slug when given.
 * SK_ERR_PROTOCOL when the body is not JSON or lacks "access".
 */
sk_status sk__auth_apply_token_response(sk__creds *c, const char *body, int64_t now_ms,
                                        sk__err *err);

/* The state c is in at now_ms (not considering SPEC_KITTY_ACCESS_TOKEN). */
sk__auth_state sk__creds_state(const sk__creds *c, int64_t now_ms);

/* Non-zero when c should be refreshed before use: a valid session whose access
 * token is missing or expires within SK__AUTH_REFRESH_MARGIN_MS of now_ms. */
int sk__auth_needs_refresh(const sk__creds *c, int64_t now_ms);

/*
 * SK_OK when credentials may be sent to url: https, or http to a loopback host
 * (127.0.0.0/8, ::1, localhost). SK_ERR_CONFIG with a message otherwise.
 */
sk_status sk__auth_url_allowed(const char *url, sk__err *err);

typedef struct sk__auth sk__auth;

/*
 * Opens the credentials of state_root. cfg (borrowed, must outlive the handle)
 * gives server_url and transport.options.ca_file. Never fails because of the
 * credentials file itself: an unusable file (unsafe mode, corrupt) is reported
 * by sk__auth_info and sk__auth_refresh, and sends no header.
 */
sk_status sk__auth_open(const char *state_root, const sk__config *cfg, sk__auth **out,
                        sk__err *err);
void sk__auth_close(sk__auth *a);

/*
 * Writes "Bearer <access token>" into buf (NUL-terminated) and returns its
 * length; 0 when there is nothing to send (no session, session expired, file
 * unusable, credentials for another server); the needed size (> cap - 1) when
 * cap is too small. Refreshes first when the access token expires within 60 s
 * (errors there are swallowed: the 401 path reports them). Thread-safe.
 */
size_t sk__auth_header(sk__auth *a, char *buf, size_t cap);

/*
 * The generation of the access token sk__auth_header hands out: it changes
 * whenever that token does (a refresh here, or another process's once read). A
 * caller takes it before a request can read its header, so that a 401 for the
 * request can tell a token since renewed from the one in use. Thread-safe,
 * lock-free.
 */
unsigned sk__auth_generation(sk__auth *a);

/*
 * Refreshes the session after the server refused a request that left under
 * generation sent (a 401). When the access token changed since, the request
 * most likely carried the old one: nothing is spent, *refreshed (may be NULL)
 * is 0, and the caller resends with the current token (should that one be
 * refused, the resend's 401 comes under the current generation and refreshes).
 * Else it refreshes, single-flight: when another process refreshed since this
 * handle last loaded the access token, adopts that token instead of refreshing
 * again; *refreshed is 1. Returns SK_OK (resend), SK_ERR_SESSION_EXPIRED (the
 * server refused the refresh token: credentials marked expired, the user must
 * log in), SK_ERR_AUTH (not logged in, or a static token that cannot be
 * refreshed), SK_ERR_TRANSPORT (network or server error: credentials
 * untouched, retry later), SK_ERR_PERMISSION (unsafe file). Thread-safe.
 */
sk_status sk__auth_refresh_after(sk__auth *a, unsigned sent, int *refreshed, sk__err *err);

/* Refreshes the session now: sk__auth_refresh_after with the current generation. */
sk_status sk__auth_refresh(sk__auth *a, sk__err *err);

/* Copies the team slug of the session into buf ("local" without one). Thread-safe. */
void sk__auth_team_slug(sk__auth *a, char *buf, size_t cap);

typedef struct sk__auth_info {
    sk__auth_state state;
    char username[256];
    char team_slug[128];   /* "" when unknown */
    char server_url[1024]; /* of the session; the config's when there is none */
    char config_server_url[1024];
    int server_mismatch;        /* the session belongs to another server than the config's */
    int64_t access_expires_ms;  /* 0 when unknown */
    int64_t refresh_expires_ms; /* 0 when unknown */
    char credentials_path[4200];
} sk__auth_info;

/*
 * Describes the session for `auth status` / `sync status`. Returns the error of
 * an unusable credentials file (SK_ERR_PERMISSION with the chmod hint, or
 * SK_ERR_CONFIG); out is filled as far as known in every case. Thread-safe.
 */
sk_status sk__auth_info_get(sk__auth *a, sk__auth_info *out, sk__err *err);

/*
 * Logs in: POST {server}/api/v1/token/ with username and password, then
 * stores the session in credentials.json. server_url NULL or "" means the
 * config's. SK_ERR_CONFIG: no server URL, or plain http to a non-loopback
 * host; SK_ERR_AUTH: invalid credentials (401); SK_ERR_TRANSPORT: network or
 * server error; SK_ERR_PROTOCOL: an answer that is not a token.
 */
sk_status sk__auth_login(sk__auth *a, const char *server_url, const char *username,
                         const char *password, sk__err *err);

/* The checks of sk__auth_login that need no network (server URL present and
 * allowed), so the CLI can refuse before asking for a password. */
sk_status sk__auth_login_check(sk__auth *a, const char *server_url, sk__err *err);

/* Removes credentials.json. *removed says whether there was one. */
sk_status sk__auth_logout(sk__auth *a, int *removed, sk__err *err);

/* --- Seams for tests ---------------------------------------------------- */

/*
 * POSTs a JSON body to url; *http_status gets the answer code, *response a
 * malloc'd NUL-terminated body. Returns SK_ERR_TRANSPORT when no answer came.
 */
typedef sk_status (*sk__auth_http_fn)(void *ctx, const char *url, const char *ca_file,
                                      const char *body, long *http_status, char **response,
                                      sk__err *err);
typedef int64_t (*sk__auth_clock_fn)(void *ctx);

/* Replaces the HTTP client (default: libcurl) and the wall clock (default: sk__wall_ms). */
void sk__auth_set_http(sk__auth *a, sk__auth_http_fn fn, void *ctx);
void sk__auth_set_clock(sk__auth *a, sk__auth_clock_fn fn, void *ctx);

#endif
