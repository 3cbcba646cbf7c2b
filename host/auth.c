/* Authentication: credentials store, login, logout, single-flight token refresh. */
#include "auth.h"
#include "curl_lazy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define RESPONSE_MAX (1024 * 1024)
#define CONNECT_TIMEOUT_S 10L
#define TOTAL_TIMEOUT_S 30L

const char *sk__auth_state_name(sk__auth_state state)
{
    switch (state) {
    case SK__AUTH_OK:
        return "Authenticated";
    case SK__AUTH_EXPIRED:
        return "Session expired";
    case SK__AUTH_STATIC:
        return "Static token";
    case SK__AUTH_NONE:
        break;
    }
    return "Not authenticated";
}

/* ---- credentials.json -------------------------------------------------- */

void sk__creds_wipe(sk__creds *c)
{
    explicit_bzero(c, sizeof *c);
}

/* A token we can send: n bytes of visible ASCII. The access token goes into an
 * Authorization header, where a line break would end it (the transports refuse to build such
 * a request, so every send would fail until the next login); the refresh token is held to
 * the same rule. Checked where a token comes in: the token endpoint's answer, and
 * credentials.json (an older build's, or edited by hand). */
static int token_sendable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] > '~')
            return 0;
    return 1;
}

#define TOKEN_RULE "a space, control character or non-ASCII byte (a bearer token is visible ASCII)"

/* Copies a JSON string member into dst; absent or null leaves dst "". Non-zero on a
 * wrong type or a value that does not fit (the caller names the key). */
static int copy_member(json_t *o, const char *key, char *dst, size_t cap)
{
    dst[0] = '\0';
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v) || json_string_length(v) >= cap)
        return 1;
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

/* Reads an expiry stored as unix seconds; absent means 0 (unknown). */
static int expiry_member(json_t *o, const char *key, int64_t *out_ms)
{
    json_t *v = json_object_get(o, key);
    *out_ms = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > INT64_MAX / 1000)
        return 1;
    *out_ms = (int64_t)json_integer_value(v) * 1000;
    return 0;
}

static sk_status creds_from_json(const char *path, json_t *o, sk__creds *c, sk__err *err)
{
    static const struct {
        const char *key;
        size_t off, cap;
    } strings[] = {
        {"server_url", offsetof(sk__creds, server_url), sizeof c->server_url},
        {"username", offsetof(sk__creds, username), sizeof c->username},
        {"team_slug", offsetof(sk__creds, team_slug), sizeof c->team_slug},
        {"access_token", offsetof(sk__creds, access), sizeof c->access},
        {"refresh_token", offsetof(sk__creds, refresh), sizeof c->refresh},
    };
    if (!json_is_object(o))
        return sk__fail(err, SK_ERR_CONFIG, "%s: expected a JSON object", path);
    for (size_t i = 0; i < SK__ARRAY_LEN(strings); i++)
        if (copy_member(o, strings[i].key, (char *)c + strings[i].off, strings[i].cap))
            return sk__fail(err, SK_ERR_CONFIG, "%s: %s: expected a string (of sane length)", path,
                            strings[i].key);
    if (!token_sendable(c->access, strlen(c->access)) ||
        !token_sendable(c->refresh, strlen(c->refresh)))
        return sk__fail(err, SK_ERR_CONFIG, "%s: a token holds " TOKEN_RULE ": log in again", path);
    if (expiry_member(o, "access_expires_at", &c->access_expires_ms) ||
        expiry_member(o, "refresh_expires_at", &c->refresh_expires_ms))
        return sk__fail(err, SK_ERR_CONFIG, "%s: *_expires_at: expected unix seconds", path);
    json_t *exp = json_object_get(o, "session_expired");
    if (exp && !json_is_boolean(exp))
        return sk__fail(err, SK_ERR_CONFIG, "%s: session_expired: expected a boolean", path);
    c->session_expired = exp && json_is_true(exp);
    return SK_OK;
}

/* Describes why a mode is unsafe: "readable by others", "writable by group", ... */
static void describe_unsafe_mode(mode_t m, char *buf, size_t cap)
{
    const char *verb = (m & 044) ? "readable" : (m & 022) ? "writable" : "accessible";
    mode_t bits = (m & 044) ? (m & 044) : (m & 022) ? (m & 022) : (m & 011);
    snprintf(buf, cap, "%s by %s", verb, (bits & 007) ? "others" : "group");
}

/* Refuses what another user could read or swap (st: the opened regular file's
 * stat): foreign owners, group/other bits. */
static sk_status check_private(const char *path, const struct stat *st, sk__err *err)
{
    if (st->st_uid != geteuid())
        return sk__fail(err, SK_ERR_PERMISSION,
                        "%s belongs to uid %u, not to you (uid %u): remove it and log in again",
                        path, (unsigned)st->st_uid, (unsigned)geteuid());
    if (st->st_mode & 077) {
        char what[64];
        describe_unsafe_mode(st->st_mode, what, sizeof what);
        return sk__fail(err, SK_ERR_PERMISSION, "%s is %s (mode %03o): run chmod 600 %s", path,
                        what, (unsigned)(st->st_mode & 0777), path);
    }
    return SK_OK;
}

sk_status sk__creds_load(const char *path, sk__creds *out, sk__err *err)
{
    memset(out, 0, sizeof *out);
    int fd;
    struct stat sb;
    sk_status opened = sk__open_regular(path, &fd, &sb, err);
    if (opened != SK_OK)
        return opened;
    char *text = NULL;
    sk_status st = check_private(path, &sb, err);
    if (st == SK_OK)
        st = sk__read_fd(fd, path, RESPONSE_MAX, &text, NULL, err);
    close(fd);
    if (st != SK_OK)
        return st;
    st = sk__creds_parse(path, text, out, err);
    explicit_bzero(text, strlen(text));
    free(text);
    return st;
}

sk_status sk__creds_parse(const char *path, const char *text, sk__creds *out, sk__err *err)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    if (!root)
        return sk__fail(err, SK_ERR_CONFIG, "%s:%d:%d: %s (remove it and log in again)", path,
                        jerr.line, jerr.column, jerr.text);
    sk_status st = creds_from_json(path, root, out, err);
    json_decref(root);
    if (st != SK_OK)
        sk__creds_wipe(out);
    return st;
}

static int set_text(json_t *o, const char *key, const char *value)
{
    return value[0] ? json_object_set_new(o, key, json_string(value)) : 0;
}

static int set_expiry(json_t *o, const char *key, int64_t ms)
{
    return ms > 0 ? json_object_set_new(o, key, json_integer(ms / 1000)) : 0;
}

sk_status sk__creds_save(const char *path, const sk__creds *c, sk__err *err)
{
    char now[32];
    sk__iso8601_ms(sk__wall_ms(), now, sizeof now);
    json_t *o = json_object();
    int bad = !o;
    bad = bad || json_object_set_new(o, "version", json_integer(1));
    bad = bad || set_text(o, "server_url", c->server_url);
    bad = bad || set_text(o, "username", c->username);
    bad = bad || set_text(o, "team_slug", c->team_slug);
    bad = bad || set_text(o, "access_token", c->access);
    bad = bad || set_expiry(o, "access_expires_at", c->access_expires_ms);
    bad = bad || set_text(o, "refresh_token", c->refresh);
    bad = bad || set_expiry(o, "refresh_expires_at", c->refresh_expires_ms);
    bad = bad || json_object_set_new(o, "session_expired", json_boolean(c->session_expired));
    bad = bad || json_object_set_new(o, "updated_at", json_string(now));
    char *text = bad ? NULL : json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!text)
        return sk__fail(err, SK_ERR_NOMEM, "out of memory writing %s", path);
    size_t len = strlen(text);
    sk_status st = sk__write_file_atomic(path, text, len, 0600, 1, err);
    explicit_bzero(text, len);
    free(text);
    return st;
}

/* ---- token answers, states, URLs ---------------------------------------- */

/* A lifetime in seconds from an integer, a real or a numeric string; 0 when absent/invalid. */
static int64_t lifetime_of(json_t *v)
{
    if (json_is_integer(v))
        return json_integer_value(v) > 0 ? (int64_t)json_integer_value(v) : 0;
    if (json_is_real(v))
        return json_real_value(v) >= 1 && json_real_value(v) < 1e12 ? (int64_t)json_real_value(v)
                                                                    : 0;
    if (!json_is_string(v))
        return 0;
    const char *s = json_string_value(v);
    char *end;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    while (*end == ' ')
        end++;
    return (end != s && *end == '\0' && errno == 0 && n > 0) ? (int64_t)n : 0;
}

static int64_t lifetime_ms(json_t *o, const char *key, const char *alt, int64_t dflt_s)
{
    int64_t s = lifetime_of(json_object_get(o, key));
    if (s == 0)
        s = lifetime_of(json_object_get(o, alt));
    if (s == 0 || s > INT64_MAX / 4000)
        s = dflt_s;
    return s * 1000;
}

sk_status sk__auth_apply_token_response(sk__creds *c, const char *body, int64_t now_ms,
                                        sk__err *err)
{
    json_t *o = json_loads(body ? body : "", 0, NULL);
    json_t *access = json_object_get(o, "access");
    json_t *refresh = json_object_get(o, "refresh");
    json_t *team = json_object_get(o, "team_slug");
    sk_status st = SK_OK;
    if (!json_is_object(o) || !json_is_string(access) || json_string_length(access) == 0)
        st = sk__fail(err, SK_ERR_PROTOCOL, "the token endpoint answered without an access token");
    else if (json_string_length(access) >= sizeof c->access ||
             (json_is_string(refresh) && json_string_length(refresh) >= sizeof c->refresh))
        st = sk__fail(err, SK_ERR_PROTOCOL, "the token endpoint answered an oversized token");
    else if (!token_sendable(json_string_value(access), json_string_length(access)) ||
             (json_is_string(refresh) &&
              !token_sendable(json_string_value(refresh), json_string_length(refresh))))
        st = sk__fail(err, SK_ERR_PROTOCOL, "the token endpoint answered a token with " TOKEN_RULE);
    if (st != SK_OK) {
        json_decref(o);
        return st;
    }
    memcpy(c->access, json_string_value(access), json_string_length(access) + 1);
    c->access_expires_ms =
        now_ms + lifetime_ms(o, "access_lifetime", "expires_in", SK__AUTH_DEFAULT_ACCESS_S);
    /* Rotation: a new refresh token replaces the old one, which the server now refuses. */
    if (json_is_string(refresh) && json_string_length(refresh) > 0) {
        memcpy(c->refresh, json_string_value(refresh), json_string_length(refresh) + 1);
        c->refresh_expires_ms = now_ms + lifetime_ms(o, "refresh_lifetime", "refresh_expires_in",
                                                     SK__AUTH_DEFAULT_REFRESH_S);
    }
    if (json_is_string(team) && json_string_length(team) > 0 &&
        json_string_length(team) < sizeof c->team_slug)
        memcpy(c->team_slug, json_string_value(team), json_string_length(team) + 1);
    c->session_expired = 0;
    json_decref(o);
    return SK_OK;
}

sk__auth_state sk__creds_state(const sk__creds *c, int64_t now_ms)
{
    if (c->session_expired)
        return SK__AUTH_EXPIRED;
    if (!c->access[0] && !c->refresh[0])
        return SK__AUTH_NONE;
    if (c->refresh[0])
        return (c->refresh_expires_ms == 0 || c->refresh_expires_ms > now_ms) ? SK__AUTH_OK
                                                                              : SK__AUTH_EXPIRED;
    /* No refresh token: the session lasts as long as the access token. */
    return (c->access_expires_ms == 0 || c->access_expires_ms > now_ms) ? SK__AUTH_OK
                                                                        : SK__AUTH_EXPIRED;
}

int sk__auth_needs_refresh(const sk__creds *c, int64_t now_ms)
{
    if (sk__creds_state(c, now_ms) != SK__AUTH_OK || !c->refresh[0])
        return 0;
    if (!c->access[0])
        return 1;
    return c->access_expires_ms != 0 && c->access_expires_ms - now_ms < SK__AUTH_REFRESH_MARGIN_MS;
}

static int host_is_loopback(const char *host)
{
    char h[256];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    if (n >= sizeof h)
        return 0;
    memcpy(h, host, n);
    h[n] = '\0';
    if (strcasecmp(h, "localhost") == 0 || strcasecmp(h, "localhost.") == 0)
        return 1;
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, h, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, h, &v6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&v6) || (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
    return 0;
}

/* Checks url; *loopback (may be NULL) says whether its host is a loopback address. */
static sk_status url_check(const char *url, int *loopback, sk__err *err)
{
    const sk__curl_api *C = sk__curl(err);
    if (!C)
        return SK_ERR_INTERNAL;
    CURLU *u = C->url();
    char *scheme = NULL, *host = NULL;
    sk_status st = SK_OK;
    if (!u)
        return sk__fail(err, SK_ERR_NOMEM, "out of memory");
    if (C->url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        C->url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        C->url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
        st = sk__fail(err, SK_ERR_CONFIG, "server URL \"%s\" is not a valid http(s) URL", url);
    int lo = st == SK_OK && host_is_loopback(host);
    if (st == SK_OK && strcasecmp(scheme, "https") != 0) {
        if (strcasecmp(scheme, "http") != 0)
            st = sk__fail(err, SK_ERR_CONFIG, "server URL \"%s\": only https (or http on loopback)",
                          url);
        else if (!lo)
            st = sk__fail(err, SK_ERR_CONFIG,
                          "refusing to send credentials to %s over plain http: use https "
                          "(plain http is allowed only to 127.0.0.0/8, ::1 and localhost)",
                          url);
    }
    if (loopback)
        *loopback = lo;
    C->free(scheme);
    C->free(host);
    C->url_cleanup(u);
    return st;
}

sk_status sk__auth_url_allowed(const char *url, sk__err *err)
{
    return url_check(url, NULL, err);
}

/* ---- HTTP (libcurl) ---------------------------------------------------- */

typedef struct body_buf {
    char *data;
    size_t len;
} body_buf;

static size_t collect_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    body_buf *b = ud;
    size_t n = size * nmemb;
    if (b->len + n > RESPONSE_MAX)
        return 0; /* aborts the transfer: no token answer is that large */
    char *grown = realloc(b->data, b->len + n + 1);
    if (!grown)
        return 0;
    memcpy(grown + b->len, ptr, n);
    b->len += n;
    grown[b->len] = '\0';
    b->data = grown;
    return n;
}

/* Options of one JSON POST: TLS verified, bounded in time, no redirects, no signals. */
static void set_post_options(const sk__curl_api *C, CURL *c, const char *url, const char *ca_file,
                             const char *body, struct curl_slist *headers, body_buf *out,
                             char *ebuf)
{
    int loopback = 0;
    url_check(url, &loopback, NULL);
    C->easy_setopt(c, CURLOPT_URL, url);
    C->easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    C->easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    C->easy_setopt(c, CURLOPT_POSTFIELDS, body);
    C->easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    C->easy_setopt(c, CURLOPT_WRITEFUNCTION, collect_body);
    C->easy_setopt(c, CURLOPT_WRITEDATA, out);
    C->easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
    C->easy_setopt(c, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    C->easy_setopt(c, CURLOPT_TIMEOUT, TOTAL_TIMEOUT_S);
    C->easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    C->easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    C->easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    C->easy_setopt(c, CURLOPT_USERAGENT, "spec-kitty/" SK_VERSION);
    /* A proxy cannot reach our loopback, and must not see a plain-http password. */
    if (loopback)
        C->easy_setopt(c, CURLOPT_NOPROXY, "*");
    if (ca_file && *ca_file)
        C->easy_setopt(c, CURLOPT_CAINFO, ca_file);
}

static sk_status curl_post_json(void *ctx, const char *url, const char *ca_file, const char *body,
                                long *http_status, char **response, sk__err *err)
{
    (void)ctx;
    *response = NULL;
    *http_status = 0;
    const sk__curl_api *C = sk__curl(err);
    if (!C)
        return SK_ERR_INTERNAL;
    CURL *c = C->easy_init();
    struct curl_slist *h = C->slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *h2 = h ? C->slist_append(h, "Accept: application/json") : NULL;
    if (!c || !h2) {
        C->slist_free_all(h);
        C->easy_cleanup(c);
        return sk__fail(err, SK_ERR_NOMEM, "out of memory");
    }
    char ebuf[CURL_ERROR_SIZE] = "";
    body_buf out = {0};
    set_post_options(C, c, url, ca_file, body, h2, &out, ebuf);
    CURLcode rc = C->easy_perform(c);
    sk_status st = SK_OK;
    if (rc != CURLE_OK)
        st = sk__fail(err, SK_ERR_TRANSPORT, "cannot reach %s: %s%s", url,
                      ebuf[0] ? ebuf : C->easy_strerror(rc),
                      rc == CURLE_PEER_FAILED_VERIFICATION
                          ? " (a private CA? set transport.options.ca_file in sync.json)"
                          : "");
    else
        C->easy_getinfo(c, CURLINFO_RESPONSE_CODE, http_status);
    C->slist_free_all(h2);
    C->easy_cleanup(c);
    if (st != SK_OK) {
        free(out.data);
        return st;
    }
    *response = out.data ? out.data : strdup("");
    return *response ? SK_OK : sk__fail(err, SK_ERR_NOMEM, "out of memory");
}

/* ---- the handle --------------------------------------------------------- */

struct sk__auth {
    pthread_mutex_t mu; /* guards everything below it */
    const sk__config *cfg;
    char path[PATH_MAX + 32];
    char lock_path[PATH_MAX + 32];
    char ca_file[PATH_MAX];
    char static_token[SK__AUTH_TOKEN_MAX]; /* SPEC_KITTY_ACCESS_TOKEN, "" when unset */
    sk__creds creds;                       /* as last read or written */
    sk_status load_status;                 /* of the last read: OK, NOT_FOUND, ... */
    sk__err load_err;
    struct stat seen; /* identity of the file creds came from */
    int seen_valid;
    atomic_uint generation; /* bumped whenever the access token in memory changes */
    sk__auth_http_fn http;
    void *http_ctx;
    sk__auth_clock_fn clock;
    void *clock_ctx;
};

static int64_t default_clock(void *ctx)
{
    (void)ctx;
    return sk__wall_ms();
}

static int64_t now_of(sk__auth *a)
{
    return a->clock(a->clock_ctx);
}

static int same_file(const struct stat *x, const struct stat *y)
{
    return x->st_dev == y->st_dev && x->st_ino == y->st_ino && x->st_size == y->st_size &&
           x->st_mode == y->st_mode && x->st_uid == y->st_uid &&
           x->st_mtim.tv_sec == y->st_mtim.tv_sec && x->st_mtim.tv_nsec == y->st_mtim.tv_nsec &&
           x->st_ctim.tv_sec == y->st_ctim.tv_sec && x->st_ctim.tv_nsec == y->st_ctim.tv_nsec;
}

/* Replaces the in-memory credentials, bumping the generation when the access token changed. */
static void adopt_creds(sk__auth *a, const sk__creds *c)
{
    if (strcmp(a->creds.access, c->access) != 0)
        atomic_fetch_add(&a->generation, 1);
    sk__creds_wipe(&a->creds);
    a->creds = *c;
}

/* Re-reads credentials.json when it changed on disk (always when force). Holds a->mu. */
static void reload_locked(sk__auth *a, int force)
{
    struct stat st;
    sk__creds fresh;
    memset(&fresh, 0, sizeof fresh);
    if (lstat(a->path, &st) != 0) {
        a->load_status = errno == ENOENT ? sk__fail(&a->load_err, SK_ERR_NOT_FOUND, "no session")
                                         : sk__fail(&a->load_err, SK_ERR_IO, "cannot stat %s: %s",
                                                    a->path, strerror(errno));
        a->seen_valid = 0;
        adopt_creds(a, &fresh);
        return;
    }
    if (!force && a->seen_valid && same_file(&st, &a->seen))
        return;
    a->load_status = sk__creds_load(a->path, &fresh, &a->load_err);
    if (a->load_status != SK_OK)
        sk__creds_wipe(&fresh);
    adopt_creds(a, &fresh);
    sk__creds_wipe(&fresh);
    a->seen = st;
    a->seen_valid = 1;
}

/* Stores c in memory and on disk (the caller holds a->mu and auth.lock). */
static sk_status store_locked(sk__auth *a, const sk__creds *c, sk__err *err)
{
    adopt_creds(a, c);
    sk_status st = sk__creds_save(a->path, c, err);
    struct stat now;
    if (st == SK_OK && lstat(a->path, &now) == 0) {
        a->seen = now;
        a->seen_valid = 1;
        a->load_status = SK_OK;
    }
    return st;
}

static int take_file_lock(sk__auth *a, sk__err *err)
{
    int fd = open(a->lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        sk__fail(err, SK_ERR_IO, "cannot open %s: %s", a->lock_path, strerror(errno));
        return -1;
    }
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            sk__fail(err, SK_ERR_IO, "cannot lock %s: %s", a->lock_path, strerror(errno));
            close(fd);
            return -1;
        }
    }
    return fd;
}

static void drop_file_lock(int fd)
{
    flock(fd, LOCK_UN);
    close(fd);
}

/* Strips trailing slashes so that "https://x/" and "https://x" name one server. */
static void trim_url(const char *url, char *out, size_t cap)
{
    snprintf(out, cap, "%s", url ? url : "");
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '/')
        out[--n] = '\0';
}

/* The session may be used with the configured server (no config URL: any). */
static int server_matches(const sk__auth *a)
{
    char want[1024], have[1024];
    trim_url(a->cfg ? a->cfg->server_url : "", want, sizeof want);
    trim_url(a->creds.server_url, have, sizeof have);
    return !want[0] || strcmp(want, have) == 0;
}

static sk_status endpoint(const char *server_url, const char *suffix, char *out, size_t cap,
                          sk__err *err)
{
    char base[1024];
    trim_url(server_url, base, sizeof base);
    if (sk__fmt(out, cap, "%s%s", base, suffix))
        return sk__fail(err, SK_ERR_CONFIG, "server URL too long");
    return SK_OK;
}

static sk_status session_expired(sk__err *err)
{
    return sk__fail(err, SK_ERR_SESSION_EXPIRED,
                    "session expired \xe2\x80\x94 run `spec-kitty auth login`");
}

/* The server ended the session: drop the tokens, keep who and where. */
static sk_status mark_expired_locked(sk__auth *a, sk__err *err)
{
    sk__creds c = a->creds;
    explicit_bzero(c.access, sizeof c.access);
    explicit_bzero(c.refresh, sizeof c.refresh);
    c.access_expires_ms = c.refresh_expires_ms = 0;
    c.session_expired = 1;
    sk__err werr;
    sk_status st = store_locked(a, &c, &werr);
    sk__creds_wipe(&c);
    if (st != SK_OK)
        return sk__fail(err, SK_ERR_SESSION_EXPIRED,
                        "session expired \xe2\x80\x94 run `spec-kitty auth login` (%s)", werr.msg);
    return session_expired(err);
}

/* Frees a string that held a secret (a request or an answer with tokens). */
static void wipe_free(char *text)
{
    if (text) {
        explicit_bzero(text, strlen(text));
        free(text);
    }
}

/* transport.options.ca_file, when set and there, must be a regular file: TLS
   would wait for ever on a FIFO. (A missing one is libcurl's to report.) */
static sk_status ca_file_check(const sk__auth *a, sk__err *err)
{
    struct stat st;
    if (a->ca_file[0] && stat(a->ca_file, &st) == 0 && !S_ISREG(st.st_mode))
        return sk__fail(err, SK_ERR_CONFIG, "transport.options.ca_file %s is not a regular file",
                        a->ca_file);
    return SK_OK;
}

/*
 * POSTs the JSON object o (taken over) to url; the request text is wiped as soon
 * as it is sent. *resp (wipe_free it) and *code are the answer.
 */
static sk_status post_secret(sk__auth *a, const char *url, json_t *o, long *code, char **resp,
                             sk__err *err)
{
    *code = 0;
    *resp = NULL;
    if (ca_file_check(a, err) != SK_OK) {
        json_decref(o);
        return SK_ERR_CONFIG;
    }
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!body)
        return sk__fail(err, SK_ERR_NOMEM, "out of memory (or a value that is not valid UTF-8)");
    sk_status st = a->http(a->http_ctx, url, a->ca_file, body, code, resp, err);
    wipe_free(body);
    return st;
}

/* POSTs the refresh token and applies the answer. Holds a->mu and auth.lock. */
static sk_status post_refresh_locked(sk__auth *a, sk__err *err)
{
    char url[1200];
    sk_status st = endpoint(a->creds.server_url, "/api/v1/token/refresh/", url, sizeof url, err);
    if (st == SK_OK)
        st = url_check(url, NULL, err);
    if (st != SK_OK)
        return st;
    long code;
    char *resp;
    st = post_secret(a, url, json_pack("{s:s}", "refresh", a->creds.refresh), &code, &resp, err);
    if (st == SK_OK && code == 401)
        st = mark_expired_locked(a, err);
    else if (st == SK_OK && code != 200)
        st = sk__fail(err, SK_ERR_TRANSPORT, "token refresh: %s answered HTTP %ld", url, code);
    else if (st == SK_OK) {
        sk__creds c = a->creds;
        st = sk__auth_apply_token_response(&c, resp, now_of(a), err);
        if (st == SK_OK)
            st = store_locked(a, &c, err);
        sk__creds_wipe(&c);
    }
    wipe_free(resp);
    return st;
}

/* SK_OK when the loaded session can be refreshed, else why not. Holds a->mu. */
static sk_status check_refreshable(sk__auth *a, int64_t now, sk__err *err)
{
    sk__auth_state state = sk__creds_state(&a->creds, now);
    if (a->load_status == SK_ERR_NOT_FOUND || (a->load_status == SK_OK && state == SK__AUTH_NONE))
        return sk__fail(err, SK_ERR_AUTH, "not logged in: run `spec-kitty auth login`");
    if (a->load_status != SK_OK)
        return sk__fail(err, a->load_status, "%s", a->load_err.msg);
    if (state == SK__AUTH_EXPIRED)
        return session_expired(err);
    if (!server_matches(a))
        return sk__fail(err, SK_ERR_AUTH,
                        "the session is for %s but server_url is %s: run `spec-kitty auth login`",
                        a->creds.server_url, a->cfg->server_url);
    return SK_OK;
}

/*
 * Refreshes unless someone else already did. stale: the access token the
 * caller saw refused (NULL: a proactive refresh, done only while still needed).
 * Holds a->mu; takes auth.lock and re-reads the file under it, so that of two
 * processes holding the same refresh token only the first spends it.
 */
static sk_status refresh_locked(sk__auth *a, const char *stale, sk__err *err)
{
    if (a->static_token[0])
        return sk__fail(err, SK_ERR_AUTH,
                        "the static token in SPEC_KITTY_ACCESS_TOKEN was refused and cannot be "
                        "refreshed: replace it");
    int fd = take_file_lock(a, err);
    if (fd < 0)
        return SK_ERR_IO;
    reload_locked(a, 1);
    int64_t now = now_of(a);
    sk_status st = check_refreshable(a, now, err);
    int done_elsewhere = stale ? (a->creds.access[0] && strcmp(a->creds.access, stale) != 0)
                               : !sk__auth_needs_refresh(&a->creds, now);
    if (st == SK_OK && !done_elsewhere)
        st = a->creds.refresh[0] ? post_refresh_locked(a, err)
                                 : mark_expired_locked(a, err); /* nothing to renew it with */
    drop_file_lock(fd);
    return st;
}

sk_status sk__auth_open(const char *state_root, const sk__config *cfg, sk__auth **out, sk__err *err)
{
    *out = NULL;
    sk__auth *a = calloc(1, sizeof *a);
    if (!a)
        return sk__fail(err, SK_ERR_NOMEM, "out of memory");
    if (sk__fmt(a->path, sizeof a->path, "%s/credentials.json", state_root) ||
        sk__fmt(a->lock_path, sizeof a->lock_path, "%s/auth.lock", state_root)) {
        free(a);
        return sk__fail(err, SK_ERR_USAGE, "state root path too long: %s", state_root);
    }
    pthread_mutex_init(&a->mu, NULL);
    a->cfg = cfg;
    json_t *ca = cfg ? json_object_get(cfg->transport_options, "ca_file") : NULL;
    if (json_is_string(ca))
        snprintf(a->ca_file, sizeof a->ca_file, "%s", json_string_value(ca));
    const char *tok = getenv("SPEC_KITTY_ACCESS_TOKEN");
    if (tok && *tok)
        snprintf(a->static_token, sizeof a->static_token, "%s", tok);
    a->http = curl_post_json;
    a->clock = default_clock;
    reload_locked(a, 1);
    *out = a;
    return SK_OK;
}

void sk__auth_close(sk__auth *a)
{
    if (!a)
        return;
    pthread_mutex_destroy(&a->mu);
    explicit_bzero(a, sizeof *a);
    free(a);
}

void sk__auth_set_http(sk__auth *a, sk__auth_http_fn fn, void *ctx)
{
    pthread_mutex_lock(&a->mu);
    a->http = fn ? fn : curl_post_json;
    a->http_ctx = ctx;
    pthread_mutex_unlock(&a->mu);
}

void sk__auth_set_clock(sk__auth *a, sk__auth_clock_fn fn, void *ctx)
{
    pthread_mutex_lock(&a->mu);
    a->clock = fn ? fn : default_clock;
    a->clock_ctx = ctx;
    pthread_mutex_unlock(&a->mu);
}

static size_t format_bearer(const char *token, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "Bearer %s", token);
    if (n < 0)
        return 0;
    return (size_t)n < cap ? (size_t)n : (size_t)n + 1;
}

size_t sk__auth_header(sk__auth *a, char *buf, size_t cap)
{
    if (cap)
        buf[0] = '\0';
    if (a->static_token[0])
        return format_bearer(a->static_token, buf, cap);
    pthread_mutex_lock(&a->mu);
    reload_locked(a, 0);
    size_t n = 0;
    if (a->load_status == SK_OK && server_matches(a)) {
        sk__err ignored;
        if (sk__auth_needs_refresh(&a->creds, now_of(a)))
            refresh_locked(a, NULL, &ignored); /* failures surface on the 401 path */
        if (a->load_status == SK_OK && sk__creds_state(&a->creds, now_of(a)) == SK__AUTH_OK &&
            a->creds.access[0])
            n = format_bearer(a->creds.access, buf, cap);
    }
    pthread_mutex_unlock(&a->mu);
    return n;
}

unsigned sk__auth_generation(sk__auth *a)
{
    return atomic_load(&a->generation);
}

sk_status sk__auth_refresh_after(sk__auth *a, unsigned sent, int *refreshed, sk__err *err)
{
    pthread_mutex_lock(&a->mu);
    /* Renewed since the request left (a refresh here, or one read from the file):
     * refreshing again would spend a refresh token to replace a token nobody refused. */
    int renewed = !a->static_token[0] && atomic_load(&a->generation) != sent &&
                  a->load_status == SK_OK && a->creds.access[0];
    sk_status st = SK_OK;
    if (!renewed) {
        char stale[SK__AUTH_TOKEN_MAX];
        memcpy(stale, a->creds.access, sizeof stale);
        st = refresh_locked(a, stale, err);
        explicit_bzero(stale, sizeof stale);
    }
    pthread_mutex_unlock(&a->mu);
    if (refreshed)
        *refreshed = !renewed;
    return st;
}

sk_status sk__auth_refresh(sk__auth *a, sk__err *err)
{
    /* Taken before waiting on the mutex: if another thread replaces the token while we
     * wait, the token our request was refused with is already gone. */
    return sk__auth_refresh_after(a, sk__auth_generation(a), NULL, err);
}

void sk__auth_team_slug(sk__auth *a, char *buf, size_t cap)
{
    pthread_mutex_lock(&a->mu);
    reload_locked(a, 0);
    const char *team =
        a->load_status == SK_OK && a->creds.team_slug[0] ? a->creds.team_slug : "local";
    snprintf(buf, cap, "%s", team);
    pthread_mutex_unlock(&a->mu);
}

sk_status sk__auth_info_get(sk__auth *a, sk__auth_info *out, sk__err *err)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&a->mu);
    reload_locked(a, 0);
    const sk__creds *c = &a->creds;
    const char *cfg_url = a->cfg && a->cfg->server_url ? a->cfg->server_url : "";
    snprintf(out->credentials_path, sizeof out->credentials_path, "%s", a->path);
    snprintf(out->config_server_url, sizeof out->config_server_url, "%s", cfg_url);
    snprintf(out->server_url, sizeof out->server_url, "%s",
             c->server_url[0] ? c->server_url : cfg_url);
    snprintf(out->username, sizeof out->username, "%s", c->username);
    snprintf(out->team_slug, sizeof out->team_slug, "%s", c->team_slug);
    out->state = a->load_status == SK_OK ? sk__creds_state(c, now_of(a)) : SK__AUTH_NONE;
    if (out->state == SK__AUTH_OK) {
        out->access_expires_ms = c->access_expires_ms;
        out->refresh_expires_ms = c->refresh_expires_ms;
    }
    out->server_mismatch = a->load_status == SK_OK && c->server_url[0] && !server_matches(a);
    if (a->static_token[0])
        out->state = SK__AUTH_STATIC;
    sk_status st = SK_OK;
    if (a->load_status != SK_OK && a->load_status != SK_ERR_NOT_FOUND)
        st = sk__fail(err, a->load_status, "%s", a->load_err.msg);
    pthread_mutex_unlock(&a->mu);
    return st;
}

/* A short, single-line reason from an error answer ("detail" or "error"), never echoing
 * the password. */
static void server_reason(const char *body, const char *password, char *out, size_t cap)
{
    out[0] = '\0';
    json_t *o = json_loads(body ? body : "", 0, NULL);
    json_t *d = json_object_get(o, "detail");
    if (!json_is_string(d))
        d = json_object_get(o, "error");
    if (json_is_string(d) && !(password[0] && strstr(json_string_value(d), password))) {
        snprintf(out, cap, ": %.200s", json_string_value(d));
        for (char *p = out; *p; p++)
            if (*p == '\n' || *p == '\r' || *p == '\t')
                *p = ' ';
    }
    json_decref(o);
}

/* POSTs the login and turns the answer into credentials in *c. */
static sk_status post_login(sk__auth *a, const char *url, const char *username,
                            const char *password, sk__creds *c, sk__err *err)
{
    json_t *user = json_string(username), *secret = json_string(password);
    if (!user || !secret) { /* Jansson takes UTF-8 only: say which value, not "out of memory" */
        json_decref(user);
        json_decref(secret);
        return sk__fail(err, SK_ERR_USAGE, "%s: not valid UTF-8", user ? "password" : "username");
    }
    long code;
    char *resp;
    sk_status st = post_secret(
        a, url, json_pack("{s:o, s:o}", "username", user, "password", secret), &code, &resp, err);
    char reason[256] = "";
    if (st == SK_OK && code != 200)
        server_reason(resp, password, reason, sizeof reason);
    if (st == SK_OK && code == 401)
        st = sk__fail(err, SK_ERR_AUTH, "login refused: invalid username or password");
    else if (st == SK_OK && (code == 400 || code == 403))
        st = sk__fail(err, SK_ERR_AUTH, "login refused (HTTP %ld)%s", code, reason);
    else if (st == SK_OK && code != 200)
        st = sk__fail(err, SK_ERR_TRANSPORT, "login failed: %s answered HTTP %ld%s", url, code,
                      reason);
    else if (st == SK_OK)
        st = sk__auth_apply_token_response(c, resp, now_of(a), err);
    wipe_free(resp);
    return st;
}

/* The server a login goes to: the explicit one, else the config's ("" when neither). */
static const char *login_server(const sk__auth *a, const char *server_url)
{
    if (server_url && *server_url)
        return server_url;
    return a->cfg && a->cfg->server_url ? a->cfg->server_url : "";
}

sk_status sk__auth_login_check(sk__auth *a, const char *server_url, sk__err *err)
{
    const char *server = login_server(a, server_url);
    if (!*server)
        return sk__fail(err, SK_ERR_CONFIG,
                        "no server URL: set \"server_url\" in %s, or SPEC_KITTY_SAAS_URL, or pass "
                        "--server URL",
                        a->cfg && a->cfg->path ? a->cfg->path : "sync.json");
    sk_status st = url_check(server, NULL, err);
    return st == SK_OK ? ca_file_check(a, err) : st; /* before the password is asked */
}

sk_status sk__auth_login(sk__auth *a, const char *server_url, const char *username,
                         const char *password, sk__err *err)
{
    sk_status st = sk__auth_login_check(a, server_url, err);
    if (st != SK_OK)
        return st;
    const char *server = login_server(a, server_url);
    if (!username || !*username)
        return sk__fail(err, SK_ERR_USAGE, "a username is required");
    char url[1200];
    st = endpoint(server, "/api/v1/token/", url, sizeof url, err);
    if (st != SK_OK)
        return st;
    sk__creds c;
    memset(&c, 0, sizeof c);
    trim_url(server, c.server_url, sizeof c.server_url);
    if (sk__fmt(c.username, sizeof c.username, "%s", username))
        return sk__fail(err, SK_ERR_USAGE, "username too long");
    st = post_login(a, url, username, password ? password : "", &c, err);
    if (st == SK_OK) {
        pthread_mutex_lock(&a->mu);
        int fd = take_file_lock(a, err);
        st = fd < 0 ? SK_ERR_IO : store_locked(a, &c, err);
        if (fd >= 0)
            drop_file_lock(fd);
        pthread_mutex_unlock(&a->mu);
    }
    sk__creds_wipe(&c);
    return st;
}

sk_status sk__auth_logout(sk__auth *a, int *removed, sk__err *err)
{
    *removed = 0;
    pthread_mutex_lock(&a->mu);
    int fd = take_file_lock(a, err);
    sk_status st = fd < 0 ? SK_ERR_IO : SK_OK;
    if (st == SK_OK && unlink(a->path) == 0)
        *removed = 1;
    else if (st == SK_OK && errno != ENOENT)
        st = sk__fail(err, SK_ERR_IO, "cannot remove %s: %s", a->path, strerror(errno));
    if (fd >= 0)
        drop_file_lock(fd);
    reload_locked(a, 1);
    pthread_mutex_unlock(&a->mu);
    return st;
}
