/* Auth: credentials file, token answers, URL rule, refresh decisions and single flight. */
#include "testutil.h"

#include "auth.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define T0 INT64_C(1795598324000) /* 2026-11-25T09:18:44Z */

/* ---- a fake token server with rotating refresh tokens ---------------------- */

typedef struct fake_server {
    pthread_mutex_t mu;
    int login_calls, refresh_calls;
    int network_down;
    int generation;
    char valid_refresh[64]; /* the one refresh token the server accepts */
    char last_url[256], last_ca[256], last_body[1024];
} fake_server;

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Issues access A<n> / refresh R<n>, with lifetimes as strings like some servers send. */
static char *issue_tokens(fake_server *f)
{
    char *out = malloc(256);
    f->generation++;
    snprintf(f->valid_refresh, sizeof f->valid_refresh, "R%d", f->generation);
    snprintf(out, 256,
             "{\"access\":\"A%d\",\"refresh\":\"R%d\",\"access_lifetime\":\"900\","
             "\"refresh_lifetime\":3600,\"team_slug\":\"acme\"}",
             f->generation, f->generation);
    return out;
}

static sk_status fake_http(void *ctx, const char *url, const char *ca_file, const char *body,
                           long *status, char **response, sk__err *err)
{
    fake_server *f = ctx;
    pthread_mutex_lock(&f->mu);
    snprintf(f->last_url, sizeof f->last_url, "%s", url);
    snprintf(f->last_ca, sizeof f->last_ca, "%s", ca_file ? ca_file : "");
    snprintf(f->last_body, sizeof f->last_body, "%s", body);
    json_t *req = json_loads(body, 0, NULL);
    sk_status st = SK_OK;
    *response = NULL;
    if (f->network_down) {
        st = sk__fail(err, SK_ERR_TRANSPORT, "cannot reach %s: connection refused", url);
    } else if (ends_with(url, "/api/v1/token/refresh/")) {
        f->refresh_calls++;
        const char *r = json_string_value(json_object_get(req, "refresh"));
        int ok = r && strcmp(r, f->valid_refresh) == 0;
        *status = ok ? 200 : 401;
        *response = ok ? issue_tokens(f) : strdup("{\"detail\":\"Token is invalid\"}");
    } else if (ends_with(url, "/api/v1/token/")) {
        f->login_calls++;
        const char *pw = json_string_value(json_object_get(req, "password"));
        int ok = pw && strcmp(pw, "s3cret-pw") == 0;
        *status = ok ? 200 : 401;
        *response = ok ? issue_tokens(f) : strdup("{\"detail\":\"No active account\"}");
    } else {
        *status = 404;
        *response = strdup("{}");
    }
    json_decref(req);
    pthread_mutex_unlock(&f->mu);
    return st;
}

static int64_t fake_clock(void *ctx)
{
    return *(int64_t *)ctx;
}

/* ---- fixtures ------------------------------------------------------------ */

typedef struct fixture {
    char *root;
    char path[600];
    sk__config *cfg;
    fake_server server;
    int64_t now;
} fixture;

static sk__config *config_with(const char *json)
{
    sk__config *cfg = NULL;
    sk__err err = {{0}};
    assert_int_equal(sk__config_parse("sync.json", json, &cfg, &err), SK_OK);
    return cfg;
}

static int setup(void **state)
{
    unsetenv("SPEC_KITTY_SAAS_URL");
    unsetenv("SPEC_KITTY_ACCESS_TOKEN");
    fixture *fx = calloc(1, sizeof *fx);
    fx->root = sk_test_mkdtemp();
    snprintf(fx->path, sizeof fx->path, "%s/credentials.json", fx->root);
    fx->cfg = config_with("{\"server_url\": \"http://127.0.0.1:8000/\", "
                          "\"transport\": {\"options\": {\"ca_file\": \"/etc/private-ca.pem\"}}}");
    pthread_mutex_init(&fx->server.mu, NULL);
    fx->now = T0;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    unsetenv("SPEC_KITTY_ACCESS_TOKEN");
    sk__config_free(fx->cfg);
    sk_test_rmtree(fx->root);
    free(fx->root);
    pthread_mutex_destroy(&fx->server.mu);
    free(fx);
    return 0;
}

static sk__auth *open_auth(fixture *fx)
{
    sk__auth *a = NULL;
    sk__err err = {{0}};
    assert_int_equal(sk__auth_open(fx->root, fx->cfg, &a, &err), SK_OK);
    sk__auth_set_http(a, fake_http, &fx->server);
    sk__auth_set_clock(a, fake_clock, &fx->now);
    return a;
}

/* A session as a login at T0 would leave it: A1/R1, the server accepting R1. */
static void seed_session(fixture *fx, int64_t access_left_ms)
{
    sk__creds c;
    memset(&c, 0, sizeof c);
    strcpy(c.server_url, "http://127.0.0.1:8000");
    strcpy(c.username, "alice");
    strcpy(c.team_slug, "acme");
    strcpy(c.access, "A1");
    strcpy(c.refresh, "R1");
    c.access_expires_ms = fx->now + access_left_ms;
    c.refresh_expires_ms = fx->now + 3600 * 1000;
    sk__err err = {{0}};
    assert_int_equal(sk__creds_save(fx->path, &c, &err), SK_OK);
    fx->server.generation = 1;
    strcpy(fx->server.valid_refresh, "R1");
}

static void assert_header(sk__auth *a, const char *want)
{
    char buf[256];
    size_t n = sk__auth_header(a, buf, sizeof buf);
    assert_string_equal(buf, want);
    assert_int_equal(n, strlen(want));
}

static char *file_text(const char *path)
{
    char *text = NULL;
    sk__err err = {{0}};
    assert_int_equal(sk__read_file(path, &text, NULL, &err), SK_OK);
    return text;
}

/* ---- credentials file ---------------------------------------------------- */

static void test_credentials_round_trip(void **state)
{
    fixture *fx = *state;
    seed_session(fx, 900 * 1000);
    sk__creds c;
    sk__err err = {{0}};
    assert_int_equal(sk__creds_load(fx->path, &c, &err), SK_OK);
    assert_string_equal(c.server_url, "http://127.0.0.1:8000");
    assert_string_equal(c.username, "alice");
    assert_string_equal(c.team_slug, "acme");
    assert_string_equal(c.access, "A1");
    assert_string_equal(c.refresh, "R1");
    assert_int_equal(c.access_expires_ms, T0 + 900 * 1000);
    assert_int_equal(c.refresh_expires_ms, T0 + 3600 * 1000);
    assert_int_equal(c.session_expired, 0);
}

static void test_save_is_owner_only_even_over_a_0644_file_and_umask_0(void **state)
{
    fixture *fx = *state;
    sk_test_write_file(fx->path, "{}");
    chmod(fx->path, 0644);
    mode_t old = umask(0);
    seed_session(fx, 1000);
    umask(old);
    struct stat st;
    assert_int_equal(stat(fx->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* No temporary file is left next to it. */
    char cmd[700];
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 1", fx->root);
    assert_int_equal(system(cmd), 0);
}

static void expect_refused(const char *path, mode_t mode, const char *what)
{
    chmod(path, mode);
    sk__creds c;
    sk__err err = {{0}};
    assert_int_equal(sk__creds_load(path, &c, &err), SK_ERR_PERMISSION);
    assert_non_null(strstr(err.msg, what));
    assert_non_null(strstr(err.msg, "chmod 600"));
    assert_non_null(strstr(err.msg, path));
    assert_null(strstr(err.msg, "A1")); /* no token in the message */
}

static void test_file_open_to_group_or_others_is_refused_with_chmod_hint(void **state)
{
    fixture *fx = *state;
    seed_session(fx, 1000);
    expect_refused(fx->path, 0644, "is readable by others (mode 644)");
    expect_refused(fx->path, 0640, "is readable by group (mode 640)");
    expect_refused(fx->path, 0602, "is writable by others (mode 602)");
}

static void test_symlinked_credentials_are_refused(void **state)
{
    fixture *fx = *state;
    char real[700];
    snprintf(real, sizeof real, "%s/elsewhere.json", fx->root);
    seed_session(fx, 1000);
    assert_int_equal(rename(fx->path, real), 0);
    assert_int_equal(symlink(real, fx->path), 0);
    sk__creds c;
    sk__err err = {{0}};
    assert_int_equal(sk__creds_load(fx->path, &c, &err), SK_ERR_PERMISSION);
    assert_non_null(strstr(err.msg, "symbolic link"));
}

static void test_corrupt_credentials_are_a_config_error_naming_the_file(void **state)
{
    fixture *fx = *state;
    sk_test_write_file(fx->path, "{\"access_token\": ");
    chmod(fx->path, 0600);
    sk__creds c;
    sk__err err = {{0}};
    assert_int_equal(sk__creds_load(fx->path, &c, &err), SK_ERR_CONFIG);
    assert_non_null(strstr(err.msg, fx->path));
}

/* A token that could not be sent (edited by hand, or written by an older build) is a
 * config error when the file is read, not a failure of every send later. */
static void test_stored_token_that_is_not_visible_ascii_is_a_config_error(void **state)
{
    fixture *fx = *state;
    static const char *const files[] = {
        "{\"access_token\": \"acc\\r\\nX-Injected: 1\"}",
        "{\"access_token\": \"ok\", \"refresh_token\": \"re fresh\"}",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        sk_test_write_file(fx->path, files[i]);
        chmod(fx->path, 0600);
        sk__creds c;
        sk__err err = {{0}};
        assert_int_equal(sk__creds_load(fx->path, &c, &err), SK_ERR_CONFIG);
        assert_non_null(strstr(err.msg, fx->path));
        assert_non_null(strstr(err.msg, "visible ASCII"));
    }
}

/* ---- token answers --------------------------------------------------------- */

static void test_lifetimes_may_arrive_as_strings(void **state)
{
    (void)state;
    sk__creds c;
    memset(&c, 0, sizeof c);
    sk__err err = {{0}};
    assert_int_equal(sk__auth_apply_token_response(
                         &c,
                         "{\"access\":\"a\",\"refresh\":\"r\",\"access_lifetime\":\"120\","
                         "\"refresh_lifetime\":\"7200\",\"team_slug\":\"t1\"}",
                         T0, &err),
                     SK_OK);
    assert_string_equal(c.access, "a");
    assert_string_equal(c.refresh, "r");
    assert_string_equal(c.team_slug, "t1");
    assert_int_equal(c.access_expires_ms, T0 + 120 * 1000);
    assert_int_equal(c.refresh_expires_ms, T0 + 7200 * 1000);
}

static void test_lifetime_aliases_and_defaults(void **state)
{
    (void)state;
    sk__creds c;
    memset(&c, 0, sizeof c);
    sk__err err = {{0}};
    assert_int_equal(
        sk__auth_apply_token_response(&c,
                                      "{\"access\":\"a\",\"refresh\":\"r\",\"expires_in\":300,"
                                      "\"refresh_expires_in\":\"600\"}",
                                      T0, &err),
        SK_OK);
    assert_int_equal(c.access_expires_ms, T0 + 300 * 1000);
    assert_int_equal(c.refresh_expires_ms, T0 + 600 * 1000);
    /* Absent, or garbage: 900 s and 7 days. */
    assert_int_equal(
        sk__auth_apply_token_response(
            &c, "{\"access\":\"b\",\"refresh\":\"r2\",\"expires_in\":\"soon\"}", T0, &err),
        SK_OK);
    assert_int_equal(c.access_expires_ms, T0 + 900 * 1000);
    assert_int_equal(c.refresh_expires_ms, T0 + 7 * 24 * 3600 * INT64_C(1000));
}

static void test_answer_without_new_refresh_keeps_the_old_one(void **state)
{
    (void)state;
    sk__creds c;
    memset(&c, 0, sizeof c);
    strcpy(c.refresh, "keep-me");
    strcpy(c.team_slug, "acme");
    c.refresh_expires_ms = T0 + 5000;
    sk__err err = {{0}};
    assert_int_equal(sk__auth_apply_token_response(&c, "{\"access\":\"new\"}", T0, &err), SK_OK);
    assert_string_equal(c.refresh, "keep-me");
    assert_int_equal(c.refresh_expires_ms, T0 + 5000);
    assert_string_equal(c.team_slug, "acme");
}

static void test_answer_without_access_is_a_protocol_error(void **state)
{
    (void)state;
    sk__creds c;
    memset(&c, 0, sizeof c);
    sk__err err = {{0}};
    assert_int_equal(sk__auth_apply_token_response(&c, "{\"refresh\":\"r\"}", T0, &err),
                     SK_ERR_PROTOCOL);
    assert_int_equal(sk__auth_apply_token_response(&c, "<html>", T0, &err), SK_ERR_PROTOCOL);
    assert_string_equal(c.refresh, "");
}

/* A token is sent in a header: one that could break it is refused when it arrives, and
 * the credentials keep what they had. */
static void test_token_that_is_not_visible_ascii_is_a_protocol_error(void **state)
{
    (void)state;
    static const char *const answers[] = {
        "{\"access\":\"acc\\r\\nX-Injected: 1\"}",
        "{\"access\":\"acc ess\"}",
        "{\"access\":\"acc\\u00e9\"}",
        "{\"access\":\"ok\",\"refresh\":\"ref\\nresh\"}",
    };
    for (size_t i = 0; i < sizeof answers / sizeof answers[0]; i++) {
        sk__creds c;
        memset(&c, 0, sizeof c);
        strcpy(c.access, "old-access");
        strcpy(c.refresh, "old-refresh");
        sk__err err = {{0}};
        assert_int_equal(sk__auth_apply_token_response(&c, answers[i], T0, &err), SK_ERR_PROTOCOL);
        assert_non_null(strstr(err.msg, "visible ASCII"));
        assert_string_equal(c.access, "old-access");
        assert_string_equal(c.refresh, "old-refresh");
    }
    sk__creds c;
    memset(&c, 0, sizeof c);
    sk__err err = {{0}};
    assert_int_equal(sk__auth_apply_token_response(
                         &c, "{\"access\":\"eyJ0.eyJz-_~+/=\",\"refresh\":\"r.1\"}", T0, &err),
                     SK_OK);
    assert_string_equal(c.access, "eyJ0.eyJz-_~+/=");
}

/* ---- decisions ------------------------------------------------------------- */

static void test_proactive_refresh_decision_uses_a_60s_margin(void **state)
{
    (void)state;
    sk__creds c;
    memset(&c, 0, sizeof c);
    strcpy(c.access, "a");
    strcpy(c.refresh, "r");
    c.access_expires_ms = T0 + 61000;
    c.refresh_expires_ms = T0 + 3600000;
    assert_int_equal(sk__auth_needs_refresh(&c, T0), 0);
    assert_int_equal(sk__auth_needs_refresh(&c, T0 + 2000), 1);
    assert_int_equal(sk__auth_needs_refresh(&c, T0 + 100000), 1); /* already expired */
    c.refresh_expires_ms = T0 + 1000;                             /* session itself is over */
    assert_int_equal(sk__creds_state(&c, T0 + 2000), SK__AUTH_EXPIRED);
    assert_int_equal(sk__auth_needs_refresh(&c, T0 + 2000), 0);
}

static void test_header_refreshes_proactively_with_injected_clock(void **state)
{
    fixture *fx = *state;
    seed_session(fx, 120 * 1000);
    sk__auth *a = open_auth(fx);
    assert_header(a, "Bearer A1");
    assert_int_equal(fx->server.refresh_calls, 0);
    fx->now += 61 * 1000; /* 59 s left */
    assert_header(a, "Bearer A2");
    assert_int_equal(fx->server.refresh_calls, 1);
    assert_string_equal(fx->server.last_url, "http://127.0.0.1:8000/api/v1/token/refresh/");
    assert_string_equal(fx->server.last_ca, "/etc/private-ca.pem");
    /* Rotation: the new refresh token is on disk before anyone uses it. */
    sk__creds c;
    sk__err err = {{0}};
    assert_int_equal(sk__creds_load(fx->path, &c, &err), SK_OK);
    assert_string_equal(c.refresh, "R2");
    assert_int_equal(c.access_expires_ms, fx->now + 900 * 1000);
    sk__auth_close(a);
}

static void test_url_rule_https_or_loopback_only(void **state)
{
    (void)state;
    static const char *ok[] = {"https://sync.example.com", "https://10.0.0.1:8443/base/",
                               "http://127.0.0.1:8000",    "http://127.9.9.9",
                               "http://localhost:9",       "http://LOCALHOST/",
                               "http://[::1]:8000/"};
    static const char *refused[] = {"http://sync.example.com",
                                    "http://10.0.0.1:8000",
                                    "http://128.0.0.1",
                                    "http://localhost.example.com",
                                    "ftp://127.0.0.1",
                                    "not a url",
                                    "http://[::2]/"};
    sk__err err = {{0}};
    for (size_t i = 0; i < SK__ARRAY_LEN(ok); i++)
        assert_int_equal(sk__auth_url_allowed(ok[i], &err), SK_OK);
    for (size_t i = 0; i < SK__ARRAY_LEN(refused); i++) {
        assert_int_equal(sk__auth_url_allowed(refused[i], &err), SK_ERR_CONFIG);
        assert_true(strlen(err.msg) > 0);
    }
    sk__auth_url_allowed("http://sync.example.com", &err);
    assert_non_null(strstr(err.msg, "https"));
}

/* ---- the handle ------------------------------------------------------------ */

static void test_static_token_from_environment(void **state)
{
    fixture *fx = *state;
    setenv("SPEC_KITTY_ACCESS_TOKEN", "ci-token", 1);
    sk__auth *a = open_auth(fx);
    assert_header(a, "Bearer ci-token");
    sk__auth_info info;
    assert_int_equal(sk__auth_info_get(a, &info, NULL), SK_OK);
    assert_int_equal(info.state, SK__AUTH_STATIC);
    assert_string_equal(sk__auth_state_name(info.state), "Static token");
    sk__err err = {{0}};
    assert_int_equal(sk__auth_refresh(a, &err), SK_ERR_AUTH);
    assert_non_null(strstr(err.msg, "SPEC_KITTY_ACCESS_TOKEN"));
    assert_null(strstr(err.msg, "ci-token"));
    assert_int_equal(fx->server.refresh_calls, 0);
    char small[8];
    assert_int_equal(sk__auth_header(a, small, sizeof small), strlen("Bearer ci-token") + 1);
    sk__auth_close(a);
}

static void test_no_session_sends_nothing_and_team_is_local(void **state)
{
    fixture *fx = *state;
    sk__auth *a = open_auth(fx);
    assert_header(a, "");
    char team[64];
    sk__auth_team_slug(a, team, sizeof team);
    assert_string_equal(team, "local");
    sk__auth_info info;
    assert_int_equal(sk__auth_info_get(a, &info, NULL), SK_OK);
    assert_int_equal(info.state, SK__AUTH_NONE);
    assert_string_equal(info.server_url, "http://127.0.0.1:8000/");
    sk__err err = {{0}};
    assert_int_equal(sk__auth_refresh(a, &err), SK_ERR_AUTH);
    assert_non_null(strstr(err.msg, "spec-kitty auth login"));
    sk__auth_close(a);
}

static void test_login_stores_an_owner_only_session(void **state)
{
    fixture *fx = *state;
    sk__auth *a = open_auth(fx);
    sk__err err = {{0}};
    assert_int_equal(sk__auth_login(a, NULL, "alice", "s3cret-pw", &err), SK_OK);
    assert_string_equal(fx->server.last_url, "http://127.0.0.1:8000/api/v1/token/");
    assert_non_null(strstr(fx->server.last_body, "\"username\":\"alice\""));
    struct stat st;
    assert_int_equal(stat(fx->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    sk__auth_info info;
    assert_int_equal(sk__auth_info_get(a, &info, NULL), SK_OK);
    assert_int_equal(info.state, SK__AUTH_OK);
    assert_string_equal(info.username, "alice");
    assert_string_equal(info.team_slug, "acme");
    assert_string_equal(info.server_url, "http://127.0.0.1:8000");
    assert_int_equal(info.access_expires_ms, T0 + 900 * 1000);
    assert_int_equal(info.refresh_expires_ms, T0 + 3600 * 1000);
    char team[64];
    sk__auth_team_slug(a, team, sizeof team);
    assert_string_equal(team, "acme");
    assert_header(a, "Bearer A1");
    char *text = file_text(fx->path);
    assert_null(strstr(text, "s3cret-pw"));
    free(text);
    sk__auth_close(a);
}

static void test_login_with_bad_password_is_refused_clearly(void **state)
{
    fixture *fx = *state;
    sk__auth *a = open_auth(fx);
    sk__err err = {{0}};
    assert_int_equal(sk__auth_login(a, NULL, "alice", "wrong-pw", &err), SK_ERR_AUTH);
    assert_non_null(strstr(err.msg, "invalid username or password"));
    assert_null(strstr(err.msg, "wrong-pw"));
    assert_int_equal(access(fx->path, F_OK), -1);
    sk__auth_close(a);
}

static void test_login_refuses_plain_http_to_a_remote_host(void **state)
{
    fixture *fx = *state;
    sk__auth *a = open_auth(fx);
    sk__err err = {{0}};
    assert_int_equal(sk__auth_login(a, "http://sync.example.com", "alice", "s3cret-pw", &err),
                     SK_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "plain http"));
    assert_int_equal(fx->server.login_calls, 0);
    /* The same check is available before asking for a password. */
    assert_int_equal(sk__auth_login_check(a, "http://sync.example.com", &err), SK_ERR_CONFIG);
    assert_int_equal(sk__auth_login_check(a, "http://[::1]:9/", &err), SK_OK);
    assert_int_equal(sk__auth_login_check(a, NULL, &err), SK_OK); /* the config's loopback URL */
    sk__auth_close(a);
}

static void test_login_without_server_url_names_the_key_and_variable(void **state)
{
    fixture *fx = *state;
    sk__config_free(fx->cfg);
    fx->cfg = config_with("{}");
    sk__auth *a = open_auth(fx);
    sk__err err = {{0}};
    assert_int_equal(sk__auth_login(a, NULL, "alice", "s3cret-pw", &err), SK_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "server_url"));
    assert_non_null(strstr(err.msg, "SPEC_KITTY_SAAS_URL"));
    sk__auth_close(a);
}

/* TLS would wait for ever on a FIFO: a ca_file that is not a regular file is refused
   before anything is sent, at login (before the password prompt) and at refresh. */
static void test_ca_file_that_is_not_a_regular_file_is_refused_before_sending(void **state)
{
    fixture *fx = *state;
    seed_session(fx, 900 * 1000);
    sk__config_free(fx->cfg);
    fx->cfg = config_with("{\"server_url\": \"http://127.0.0.1:8000/\", "
                          "\"transport\": {\"options\": {\"ca_file\": \"/dev/zero\"}}}");
    sk__auth *a = open_auth(fx);
    sk__err err = {{0}};
    assert_int_equal(sk__auth_login_check(a, NULL, &err), SK_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "ca_file /dev/zero is not a regular file"));
    assert_int_equal(sk__auth_refresh(a, &err), SK_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "ca_file /dev/zero is not a regular file"));
    assert_int_equal(fx->server.refresh_calls + fx->server.login_calls, 0);
    sk__auth_close(a);
}

static void test_refresh_rotates_and_stores_the_new_refresh_token(void **state)
{
    fixture *fx = *state;
    seed_session(fx, 900 * 1000);
    sk__auth *a = open_auth(fx);
    sk__err err = {{0}};
    assert_int_equal(sk__auth_refresh(a, &err), SK_OK);
    assert_string_equal(fx->server.last_body, "{\"refresh\":\"R1\"}");
    assert_header(a, "Bearer A2");
    assert_int_equal(sk__auth_refresh(a, &err), SK_OK);
    assert_string_equal(fx->server.last_body, "{\"refresh\":\"R2\"}");
    assert_header(a, "Bearer A3");
    assert_int_equal(fx->server.refresh_calls, 2);
    sk__auth_close(a);
}

static void test_refused_refresh_ends_the_session_but_keeps_who_and_where(void **state)
{
    fixture *fx = *state;
    seed_session(fx, 900 * 1000);
    strcpy(fx->server.valid_refresh, "revoked-elsewhere");
    sk__auth *a = open_auth(fx);
    sk__err err = {{0}};
    assert_int_equal(sk__auth_refresh(a, &err), SK_ERR_SESSION_EXPIRED);
    assert_non_null(strstr(err.msg, "run `spec-kitty auth login`"));
    sk__creds c;
    assert_int_equal(sk__creds_load(fx->path, &c, &err), SK_OK);
    assert_int_equal(c.session_expired, 1);
    assert_string_equal(c.username, "alice");
    assert_string_equal(c.server_url, "http://127.0.0.1:8000");
    assert_string_equal(c.access, "");
    assert_string_equal(c.refresh, "");
    assert_header(a, "");
    char team[64];
    sk__auth_team_slug(a, team, sizeof team);
    assert_string_equal(team, "acme");
    sk__auth_info info;
    assert_int_equal(sk__auth_info_get(a, &info, NULL), SK_OK);
    assert_string_equal(sk__auth_state_name(info.state), "Session expired");
    /* Nothing left to try: no second request. */
    assert_int_equal(sk__auth_refresh(a, &err), SK_ERR_SESSION_EXPIRED);
    assert_int_equal(fx->server.refresh_calls, 1);
    sk__auth_close(a);
}

static void test_refresh_token_expired_by_clock_needs_no_request(void **state)
{
    fixture *fx = *state;
    seed_session(fx, 900 * 1000);
    fx->now += 3601 * 1000;
    sk__auth *a = open_auth(fx);
    sk__err err = {{0}};
    assert_int_equal(sk__auth_refresh(a, &err), SK_ERR_SESSION_EXPIRED);
    assert_int_equal(fx->server.refresh_calls, 0);
    assert_header(a, "");
    sk__auth_close(a);
}

static void test_network_error_during_refresh_leaves_credentials_untouched(void **state)
{
    fixture *fx = *state;
    seed_session(fx, 900 * 1000);
    char *before = file_text(fx->path);
    fx->server.network_down = 1;
    sk__auth *a = open_auth(fx);
    sk__err err = {{0}};
    assert_int_equal(sk__auth_refresh(a, &err), SK_ERR_TRANSPORT);
    char *after = file_text(fx->path);
    assert_string_equal(before, after);
    assert_header(a, "Bearer A1");
    free(before);
    free(after);
    sk__auth_close(a);
}

static void test_refresh_adopts_a_token_another_process_refreshed(void **state)
{
    fixture *fx = *state;
    seed_session(fx, 900 * 1000);
    sk__auth *first = open_auth(fx);
    sk__auth *second = open_auth(fx); /* loaded A1 too, like a second drainer */
    sk__err err = {{0}};
    assert_int_equal(sk__auth_refresh(first, &err), SK_OK);
    /* second saw A1 refused; R1 is spent: refreshing again would end the session. */
    assert_int_equal(sk__auth_refresh(second, &err), SK_OK);
    assert_int_equal(fx->server.refresh_calls, 1);
    assert_header(second, "Bearer A2");
    sk__auth_close(first);
    sk__auth_close(second);
}

/* Two requests left with A1 and both came back 401 (a revocation): one refresh. */
static void test_a_401_for_a_token_already_renewed_spends_no_refresh_token(void **state)
{
    fixture *fx = *state;
    seed_session(fx, 900 * 1000);
    sk__auth *a = open_auth(fx);
    sk__err err = {{0}};
    unsigned left_with_a1 = sk__auth_generation(a);
    int refreshed = -1;
    assert_int_equal(sk__auth_refresh_after(a, left_with_a1, &refreshed, &err), SK_OK);
    assert_int_equal(refreshed, 1);
    assert_header(a, "Bearer A2");
    assert_int_equal(sk__auth_refresh_after(a, left_with_a1, &refreshed, &err), SK_OK);
    assert_int_equal(refreshed, 0);
    assert_int_equal(fx->server.refresh_calls, 1);
    assert_header(a, "Bearer A2");
    /* A2 refused in turn (a request that read it) is refreshed. */
    assert_int_equal(sk__auth_refresh_after(a, sk__auth_generation(a), &refreshed, &err), SK_OK);
    assert_int_equal(refreshed, 1);
    assert_int_equal(fx->server.refresh_calls, 2);
    assert_header(a, "Bearer A3");
    sk__auth_close(a);
}

static void test_generation_follows_a_token_another_process_refreshed(void **state)
{
    fixture *fx = *state;
    seed_session(fx, 900 * 1000);
    sk__auth *first = open_auth(fx);
    sk__auth *second = open_auth(fx);
    sk__err err = {{0}};
    unsigned left_with_a1 = sk__auth_generation(second);
    assert_int_equal(sk__auth_refresh(first, &err), SK_OK);
    assert_header(second, "Bearer A2"); /* read from the file */
    assert_true(sk__auth_generation(second) != left_with_a1);
    int refreshed = -1;
    assert_int_equal(sk__auth_refresh_after(second, left_with_a1, &refreshed, &err), SK_OK);
    assert_int_equal(refreshed, 0);
    assert_int_equal(fx->server.refresh_calls, 1);
    sk__auth_close(first);
    sk__auth_close(second);
}

/* A token that changed because the session ended is no token to resend with. */
static void test_a_401_after_the_session_ended_meanwhile_reports_it(void **state)
{
    fixture *fx = *state;
    seed_session(fx, 900 * 1000);
    strcpy(fx->server.valid_refresh, "revoked-elsewhere");
    sk__auth *a = open_auth(fx);
    sk__err err = {{0}};
    unsigned left_with_a1 = sk__auth_generation(a);
    assert_int_equal(sk__auth_refresh_after(a, left_with_a1, NULL, &err), SK_ERR_SESSION_EXPIRED);
    assert_int_equal(sk__auth_refresh_after(a, left_with_a1, NULL, &err), SK_ERR_SESSION_EXPIRED);
    assert_int_equal(fx->server.refresh_calls, 1);
    sk__auth_close(a);
}

typedef struct racer {
    sk__auth *a;
    sk_status st;
} racer;

static void *race_refresh(void *arg)
{
    racer *r = arg;
    sk__err err = {{0}};
    r->st = sk__auth_refresh(r->a, &err);
    return NULL;
}

static void test_concurrent_drainers_spend_the_refresh_token_once(void **state)
{
    fixture *fx = *state;
    seed_session(fx, 900 * 1000);
    enum { N = 6 };
    racer r[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++)
        r[i].a = open_auth(fx); /* one handle each: separate flock descriptions */
    for (int i = 0; i < N; i++)
        pthread_create(&t[i], NULL, race_refresh, &r[i]);
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].st, SK_OK);
        assert_header(r[i].a, "Bearer A2");
        sk__auth_close(r[i].a);
    }
    assert_int_equal(fx->server.refresh_calls, 1);
}

static void *race_shared(void *arg)
{
    racer *r = arg;
    sk__err err = {{0}};
    char buf[64];
    sk__auth_header(r->a, buf, sizeof buf);
    r->st = sk__auth_refresh(r->a, &err);
    return NULL;
}

static void test_threads_sharing_a_handle_keep_the_session_alive(void **state)
{
    fixture *fx = *state;
    seed_session(fx, 900 * 1000);
    sk__auth *a = open_auth(fx);
    enum { N = 8 };
    racer r[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        r[i].a = a;
        pthread_create(&t[i], NULL, race_shared, &r[i]);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(r[i].st, SK_OK); /* never a spent refresh token */
    }
    sk__auth_info info;
    assert_int_equal(sk__auth_info_get(a, &info, NULL), SK_OK);
    assert_int_equal(info.state, SK__AUTH_OK);
    assert_true(fx->server.refresh_calls >= 1 && fx->server.refresh_calls <= N);
    sk__auth_close(a);
}

static void test_header_picks_up_a_login_from_another_process(void **state)
{
    fixture *fx = *state;
    sk__auth *daemon = open_auth(fx);
    assert_header(daemon, "");
    sk__auth *cli = open_auth(fx);
    sk__err err = {{0}};
    assert_int_equal(sk__auth_login(cli, NULL, "alice", "s3cret-pw", &err), SK_OK);
    assert_header(daemon, "Bearer A1");
    sk__auth_close(cli);
    sk__auth_close(daemon);
}

static void test_session_for_another_server_is_not_sent(void **state)
{
    fixture *fx = *state;
    seed_session(fx, 900 * 1000);
    sk__config_free(fx->cfg);
    fx->cfg = config_with("{\"server_url\": \"https://other.example.com\"}");
    sk__auth *a = open_auth(fx);
    assert_header(a, "");
    sk__auth_info info;
    assert_int_equal(sk__auth_info_get(a, &info, NULL), SK_OK);
    assert_int_equal(info.server_mismatch, 1);
    assert_string_equal(info.server_url, "http://127.0.0.1:8000");
    /* A 401 from the configured server is not fixed by refreshing the other session. */
    sk__err err = {{0}};
    assert_int_equal(sk__auth_refresh(a, &err), SK_ERR_AUTH);
    assert_non_null(strstr(err.msg, "https://other.example.com"));
    assert_non_null(strstr(err.msg, "spec-kitty auth login"));
    assert_int_equal(fx->server.refresh_calls, 0);
    sk__auth_close(a);
}

static void test_unsafe_file_is_reported_and_not_used(void **state)
{
    fixture *fx = *state;
    seed_session(fx, 900 * 1000);
    chmod(fx->path, 0644);
    sk__auth *a = open_auth(fx);
    assert_header(a, "");
    sk__auth_info info;
    sk__err err = {{0}};
    assert_int_equal(sk__auth_info_get(a, &info, &err), SK_ERR_PERMISSION);
    assert_non_null(strstr(err.msg, "chmod 600"));
    assert_int_equal(sk__auth_refresh(a, &err), SK_ERR_PERMISSION);
    assert_int_equal(fx->server.refresh_calls, 0);
    chmod(fx->path, 0600); /* fixed: picked up without reopening */
    assert_header(a, "Bearer A1");
    sk__auth_close(a);
}

static void test_logout_removes_the_session(void **state)
{
    fixture *fx = *state;
    seed_session(fx, 900 * 1000);
    sk__auth *a = open_auth(fx);
    assert_header(a, "Bearer A1");
    int removed = 0;
    sk__err err = {{0}};
    assert_int_equal(sk__auth_logout(a, &removed, &err), SK_OK);
    assert_int_equal(removed, 1);
    assert_int_equal(access(fx->path, F_OK), -1);
    assert_header(a, "");
    sk__auth_info info;
    assert_int_equal(sk__auth_info_get(a, &info, NULL), SK_OK);
    assert_int_equal(info.state, SK__AUTH_NONE);
    assert_int_equal(sk__auth_logout(a, &removed, &err), SK_OK);
    assert_int_equal(removed, 0);
    sk__auth_close(a);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_credentials_round_trip),
        T(test_save_is_owner_only_even_over_a_0644_file_and_umask_0),
        T(test_file_open_to_group_or_others_is_refused_with_chmod_hint),
        T(test_symlinked_credentials_are_refused),
        T(test_corrupt_credentials_are_a_config_error_naming_the_file),
        T(test_stored_token_that_is_not_visible_ascii_is_a_config_error),
        T(test_lifetimes_may_arrive_as_strings),
        T(test_lifetime_aliases_and_defaults),
        T(test_answer_without_new_refresh_keeps_the_old_one),
        T(test_answer_without_access_is_a_protocol_error),
        T(test_token_that_is_not_visible_ascii_is_a_protocol_error),
        T(test_proactive_refresh_decision_uses_a_60s_margin),
        T(test_header_refreshes_proactively_with_injected_clock),
        T(test_url_rule_https_or_loopback_only),
        T(test_static_token_from_environment),
        T(test_no_session_sends_nothing_and_team_is_local),
        T(test_login_stores_an_owner_only_session),
        T(test_login_with_bad_password_is_refused_clearly),
        T(test_login_refuses_plain_http_to_a_remote_host),
        T(test_login_without_server_url_names_the_key_and_variable),
        T(test_ca_file_that_is_not_a_regular_file_is_refused_before_sending),
        T(test_refresh_rotates_and_stores_the_new_refresh_token),
        T(test_refused_refresh_ends_the_session_but_keeps_who_and_where),
        T(test_refresh_token_expired_by_clock_needs_no_request),
        T(test_network_error_during_refresh_leaves_credentials_untouched),
        T(test_refresh_adopts_a_token_another_process_refreshed),
        T(test_a_401_for_a_token_already_renewed_spends_no_refresh_token),
        T(test_generation_follows_a_token_another_process_refreshed),
        T(test_a_401_after_the_session_ended_meanwhile_reports_it),
        T(test_concurrent_drainers_spend_the_refresh_token_once),
        T(test_threads_sharing_a_handle_keep_the_session_alive),
        T(test_header_picks_up_a_login_from_another_process),
        T(test_session_for_another_server_is_not_sent),
        T(test_unsafe_file_is_reported_and_not_used),
        T(test_logout_removes_the_session),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
