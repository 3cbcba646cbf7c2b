/*
 * h2-stream transport: the real plugin .so, loaded through the fake host,
 * against the real receiver behind nghttpx (scripts/receiver-up.sh): several
 * batches in flight and BUSY beyond them, GOAWAY, cancel with streams in
 * flight, a stalled stream reset at its deadline, a CONNECT proxy; against
 * the scripted HTTP/1.1 TLS peer: a server without h2 refused.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fakehost.h"
#include "http_common.h"
#include "testutil.h"

#include "http_peer.c"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SECRET "Bearer h2-s3cr3t-t0ken-value"

/* ---------- the receiver behind nghttpx ---------- */

typedef struct rx {
    char *dir;
    char url[128]; /* the receiver itself (admin endpoints) */
    char tls[128];
    char h2c[128];
    char ca[512];
} rx;

static const char *source_dir(void)
{
    static char dir[1024];
    /* SK_TEST_FIXTURES is <source>/tests/fixtures */
    snprintf(dir, sizeof dir, "%s/../..", SK_TEST_FIXTURES);
    return dir;
}

static void env_value(const char *file, const char *key, char *out, size_t cap)
{
    FILE *f = fopen(file, "r");
    assert_non_null(f);
    char line[1024];
    size_t kl = strlen(key);
    out[0] = '\0';
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == '=') {
            line[strcspn(line, "\n")] = '\0';
            snprintf(out, cap, "%s", line + kl + 1);
        }
    fclose(f);
    assert_true(out[0] != '\0');
}

static void rx_up(rx *r, const char *nghttpx_flags)
{
    memset(r, 0, sizeof *r);
    r->dir = sk_test_mkdtemp();
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "RECEIVER_NGHTTPX_FLAGS='%s' SK_PREFIX='%s' bash '%s/scripts/receiver-up.sh' '%s' "
             "--faults --quiet >/dev/null",
             nghttpx_flags ? nghttpx_flags : "", getenv("SK_BUILD_DIR"), source_dir(), r->dir);
    assert_int_equal(system(cmd), 0);
    char env[1100];
    snprintf(env, sizeof env, "%s/receiver.env", r->dir);
    env_value(env, "RECEIVER_URL", r->url, sizeof r->url);
    env_value(env, "RECEIVER_TLS_URL", r->tls, sizeof r->tls);
    env_value(env, "RECEIVER_H2C_URL", r->h2c, sizeof r->h2c);
    env_value(env, "RECEIVER_CA", r->ca, sizeof r->ca);
}

static void rx_down(rx *r)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "bash '%s/scripts/receiver-down.sh' '%s' >/dev/null 2>&1",
             source_dir(), r->dir);
    assert_int_equal(system(cmd), 0);
    sk_test_rmtree(r->dir);
    free(r->dir);
}

/* The receiver most tests share (the GOAWAY test starts its own). */
static rx shared;

static int group_setup(void **state)
{
    (void)state;
    rx_up(&shared, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    rx_down(&shared);
    return 0;
}

/* Drops the fault rules a test left (each test starts clean). */
static int rx_clear(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "curl -sf -o /dev/null -X DELETE '%s/api/v1/receiver/faults'",
             shared.url);
    return system(cmd);
}

static void rx_fault(const rx *r, const char *json)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "curl -sf -o /dev/null -H 'Content-Type: application/json' -d '%s' "
             "'%s/api/v1/receiver/faults'",
             json, r->url);
    assert_int_equal(system(cmd), 0);
}

/* One number of the receiver's stats (a jq path such as .events_stored). */
static long rx_stat(const rx *r, const char *path)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "curl -sf '%s/api/v1/receiver/stats' | jq -r '%s // 0'", r->url,
             path);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    long v = -1;
    assert_int_equal(fscanf(f, "%ld", &v), 1);
    pclose(f);
    return v;
}

/* ---------- the plugin through the fake host ---------- */

typedef struct fixture {
    sk_fakehost *fh;
    const sk_transport_desc *d;
    void *dl;
    void *self;
    char url[256];
    const char *values[8];
} fixture;

static int fx_try(fixture *f, const char *url, const char *options, char *err, size_t cap)
{
    memset(f, 0, sizeof *f);
    snprintf(f->url, sizeof f->url, "%s", url);
    const char *values[] = {"server_url", f->url, "version", "9.9.9-test", NULL};
    memcpy(f->values, values, sizeof values);
    f->fh = sk_fakehost_new(options, f->values);
    sk_fakehost_set_auth(f->fh, SECRET);
    f->d = sk_fakehost_load_plugin("h2-stream", &f->dl);
    return f->d->create(sk_fakehost_api(f->fh), &f->self, err, cap);
}

static void fx_open(fixture *f, const char *url, const char *options)
{
    char err[256] = "";
    if (fx_try(f, url, options, err, sizeof err) != 0)
        fail_msg("create failed: %s", err);
}

static void fx_close(fixture *f)
{
    if (f->self)
        f->d->destroy(f->self);
    assert_false(sk_fakehost_logged(f->fh, "s3cr3t"));
    sk_fakehost_free(f->fh);
    dlclose(f->dl);
}

/* Options JSON trusting the receiver's test CA, plus extra members ("" for none). */
static const char *tls_options(const rx *r, const char *extra)
{
    static char buf[1024];
    snprintf(buf, sizeof buf, "{\"ca_file\": \"%s\"%s%s}", r->ca, *extra ? ", " : "", extra);
    return buf;
}

static void assert_all(const sk_tbatch *t, sk_outcome outcome)
{
    for (uint32_t i = 0; i < t->n; i++)
        assert_int_equal(t->res[i].outcome, outcome);
}

/* ---------- tests ---------- */

static void test_batches_in_flight_together_and_busy_beyond_the_slots(void **state)
{
    (void)state;
    rx *r = &shared;
    long stored0 = rx_stat(r, ".events_stored");
    /* The first four answers take 1.5 s: all four streams stay busy meanwhile. */
    rx_fault(r, "{\"endpoint\": \"batch\", \"delay_ms\": 1500, \"count\": 4}");
    fixture f;
    fx_open(&f, r->tls, tls_options(r, "\"max_streams\": 4"));
    sk_tbatch *t[5];
    sk_test_done_log log;
    sk_test_done_log_init(&log);
    sk_test_done_tag tags[5] = {{&log, 0}, {&log, 1}, {&log, 2}, {&log, 3}, {&log, 4}};
    for (int i = 0; i < 5; i++)
        t[i] = sk_tbatch_new_from((uint32_t)(100 * i), 10, 20000);
    int64_t t0 = sk_test_now_ms();
    for (int i = 0; i < 4; i++)
        assert_int_equal(
            f.d->submit(f.self, &t[i]->batch, &t[i]->result, sk_test_on_done, &tags[i]),
            SK_TRANSPORT_OK);
    assert_int_equal(f.d->submit(f.self, &t[4]->batch, &t[4]->result, sk_test_on_done, &tags[4]),
                     SK_TRANSPORT_BUSY);
    sk_test_done_wait_each(&log, 0, 4, 15000);
    /* In flight together: four 1.5 s answers end well before 4 x 1.5 s. */
    int64_t last = 0;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(log.rc[i], SK_TRANSPORT_OK);
        assert_all(t[i], SK_OUTCOME_DELIVERED);
        last = log.at_ms[i] > last ? log.at_ms[i] : last;
    }
    assert_in_range(last - t0, 1400, 5500);
    /* A slot is free again. */
    assert_int_equal(f.d->submit(f.self, &t[4]->batch, &t[4]->result, sk_test_on_done, &tags[4]),
                     SK_TRANSPORT_OK);
    sk_test_done_wait_each(&log, 4, 1, 15000);
    assert_int_equal(log.rc[4], SK_TRANSPORT_OK);
    assert_int_equal(sk_fakehost_metric(f.fh, "connects"), 1);
    assert_int_equal(sk_fakehost_metric(f.fh, "requests"), 5);
    /* The gauges `sync status` shows: one connection up, nothing in flight now. */
    assert_int_equal(sk_fakehost_metric(f.fh, "connections_open"), 1);
    assert_int_equal(sk_fakehost_metric(f.fh, "streams_in_flight"), 0);
    fx_close(&f);
    assert_int_equal(rx_stat(r, ".events_stored"), stored0 + 50);
    for (int i = 0; i < 5; i++)
        sk_tbatch_free(t[i]);
    sk_test_done_log_destroy(&log);
}

static void test_goaway_sends_what_follows_on_a_new_connection(void **state)
{
    (void)state;
    rx r;
    rx_up(&r, "--frontend-max-requests=2");
    fixture f;
    fx_open(&f, r.h2c, "{}");
    for (uint32_t i = 0; i < 6; i++) {
        sk_tbatch *t = sk_tbatch_new_from(1000 + 10 * i, 10, 20000);
        assert_int_equal(f.d->send(f.self, &t->batch, &t->result), SK_TRANSPORT_OK);
        assert_all(t, SK_OUTCOME_DELIVERED);
        sk_tbatch_free(t);
    }
    assert_true(sk_fakehost_metric(f.fh, "goaways") >= 2);
    assert_true(sk_fakehost_metric(f.fh, "reconnects") >= 2);
    assert_true(sk_fakehost_logged(f.fh, "server sent GOAWAY"));
    fx_close(&f);
    assert_int_equal(rx_stat(&r, ".events_stored"), 60);
    assert_int_equal(rx_stat(&r, ".duplicates"), 0);
    rx_down(&r);
}

typedef struct canceller {
    fixture *f;
    int64_t at_ms;
} canceller;

static void *cancel_thread(void *arg)
{
    canceller *k = arg;
    k->at_ms = sk_test_now_ms();
    k->f->d->cancel(k->f->self);
    return NULL;
}

static void test_cancel_from_another_thread_ends_streams_in_flight(void **state)
{
    (void)state;
    rx *r = &shared;
    rx_fault(r, "{\"endpoint\": \"batch\", \"delay_ms\": 3000, \"count\": 3}");
    fixture f;
    fx_open(&f, r->tls, tls_options(r, ""));
    sk_tbatch *t[3];
    sk_test_done_log log;
    sk_test_done_log_init(&log);
    sk_test_done_tag tags[3] = {{&log, 0}, {&log, 1}, {&log, 2}};
    for (int i = 0; i < 3; i++) {
        t[i] = sk_tbatch_new_from((uint32_t)(2000 + 10 * i), 10, 60000);
        assert_int_equal(
            f.d->submit(f.self, &t[i]->batch, &t[i]->result, sk_test_on_done, &tags[i]),
            SK_TRANSPORT_OK);
    }
    /* Wait until the three streams are open, then a little for them to reach the server
     * (whose answers take 3 s). */
    for (int i = 0; i < 200 && sk_fakehost_metric(f.fh, "requests") < 3; i++)
        usleep(10000);
    usleep(300000);
    canceller k = {&f, 0};
    pthread_t th;
    pthread_create(&th, NULL, cancel_thread, &k);
    pthread_join(th, NULL);
    sk_test_done_wait_each(&log, 0, 3, 5000);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(log.rc[i], SK_TRANSPORT_CANCELLED);
        assert_all(t[i], SK_OUTCOME_TRANSIENT);
        /* The promise is 100 ms; a loaded test machine gets slack. */
        assert_in_range(log.at_ms[i] - k.at_ms, 0, 1000);
    }
    sk_tbatch *later = sk_tbatch_new_from(2100, 1, 5000);
    assert_int_equal(f.d->send(f.self, &later->batch, &later->result), SK_TRANSPORT_CANCELLED);
    fx_close(&f);
    for (int i = 0; i < 3; i++)
        sk_tbatch_free(t[i]);
    sk_tbatch_free(later);
    sk_test_done_log_destroy(&log);
}

static void test_a_stalled_stream_is_reset_at_its_deadline(void **state)
{
    (void)state;
    rx *r = &shared;
    rx_fault(r, "{\"endpoint\": \"batch\", \"delay_ms\": 3000}");
    fixture f;
    fx_open(&f, r->h2c, "{\"timeout_ms\": 800}");
    sk_tbatch *t = sk_tbatch_new_from(3000, 5, 60000);
    int64_t t0 = sk_test_now_ms();
    assert_int_equal(f.d->send(f.self, &t->batch, &t->result), SK_TRANSPORT_FAILED);
    assert_in_range(sk_test_now_ms() - t0, 700, 5000);
    assert_all(t, SK_OUTCOME_TRANSIENT);
    assert_non_null(strstr(t->result.detail, "stream reset"));
    assert_int_equal(sk_fakehost_metric(f.fh, "streams_reset"), 1);
    /* The connection itself is fine: the next batch goes on it. */
    sk_tbatch *u = sk_tbatch_new_from(3100, 5, 60000);
    assert_int_equal(f.d->send(f.self, &u->batch, &u->result), SK_TRANSPORT_OK);
    assert_all(u, SK_OUTCOME_DELIVERED);
    assert_int_equal(sk_fakehost_metric(f.fh, "connects"), 1);
    fx_close(&f);
    sk_tbatch_free(t);
    sk_tbatch_free(u);
}

static void test_server_without_h2_is_refused_with_one_line(void **state)
{
    (void)state;
    char *dir = sk_test_mkdtemp();
    char cert[1100];
    snprintf(cert, sizeof cert, "%s/peer.pem", dir);
    sk_peer_reply ok = {SK_PEER_RESPOND, 200, NULL, "{\"results\": []}"};
    sk_peer *peer = sk_peer_start_tls(&ok, 1, cert);
    char options[1400];
    snprintf(options, sizeof options, "{\"ca_file\": \"%s\"}", cert);
    fixture f;
    fx_open(&f, sk_peer_url(peer), options);
    sk_tbatch *t = sk_tbatch_new(3, 10000);
    assert_int_equal(f.d->send(f.self, &t->batch, &t->result), SK_TRANSPORT_FAILED);
    assert_string_equal(t->result.detail, "server does not speak HTTP/2; use http-batch");
    assert_all(t, SK_OUTCOME_TRANSIENT);
    char reason[256];
    assert_int_equal(f.d->probe(f.self, sk_test_now_ms() + 10000, reason, sizeof reason),
                     SK_PROBE_UNREACHABLE);
    assert_string_equal(reason, "server does not speak HTTP/2; use http-batch");
    /* No HTTP/2 byte reached it: not even the connection preface as a "request". */
    assert_int_equal(sk_peer_requests(peer), 0);
    fx_close(&f);
    sk_tbatch_free(t);
    sk_peer_stop(peer);
    sk_test_rmtree(dir);
    free(dir);
}

/* A one-connection-at-a-time HTTP CONNECT proxy on loopback. */
typedef struct proxy {
    int listen_fd;
    int port;
    pthread_t thread;
    char first_request[256];
    int tunnels;
} proxy;

static void proxy_pipe(int a, int b)
{
    char buf[16384];
    struct pollfd pf[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
    while (poll(pf, 2, 10000) > 0) {
        for (int i = 0; i < 2; i++) {
            if (!pf[i].revents)
                continue;
            ssize_t n = read(pf[i].fd, buf, sizeof buf);
            if (n <= 0 || write(pf[1 - i].fd, buf, (size_t)n) != n)
                return;
        }
    }
}

static void *proxy_main(void *arg)
{
    proxy *px = arg;
    int fd;
    while ((fd = accept(px->listen_fd, NULL, NULL)) >= 0) {
        char head[4096];
        size_t len = 0;
        while (len < sizeof head - 1 && (len < 4 || memcmp(head + len - 4, "\r\n\r\n", 4)))
            if (read(fd, head + len, 1) == 1)
                len++;
            else
                break;
        head[len] = '\0';
        if (!px->tunnels)
            snprintf(px->first_request, sizeof px->first_request, "%.*s",
                     (int)strcspn(head, "\r\n"), head);
        px->tunnels++;
        int port = 0;
        int up = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (sscanf(head, "CONNECT 127.0.0.1:%d", &port) == 1) {
            sa.sin_port = htons((uint16_t)port);
            if (connect(up, (struct sockaddr *)&sa, sizeof sa) == 0) {
                const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
                if (write(fd, ok, sizeof ok - 1) == (ssize_t)(sizeof ok - 1))
                    proxy_pipe(fd, up);
            }
        }
        close(up);
        close(fd);
    }
    return NULL;
}

static void proxy_start(proxy *px)
{
    memset(px, 0, sizeof *px);
    px->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    assert_int_equal(bind(px->listen_fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(px->listen_fd, 4), 0);
    getsockname(px->listen_fd, (struct sockaddr *)&sa, &sl);
    px->port = ntohs(sa.sin_port);
    pthread_create(&px->thread, NULL, proxy_main, px);
}

static void proxy_stop(proxy *px)
{
    shutdown(px->listen_fd, SHUT_RDWR);
    close(px->listen_fd);
    pthread_join(px->thread, NULL);
}

static void test_https_proxy_tunnels_and_no_proxy_bypasses(void **state)
{
    (void)state;
    rx *r = &shared;
    long stored0 = rx_stat(r, ".events_stored");
    proxy px;
    proxy_start(&px);
    char env[64];
    snprintf(env, sizeof env, "http://127.0.0.1:%d", px.port);
    setenv("https_proxy", env, 1);
    unsetenv("no_proxy");
    unsetenv("NO_PROXY");
    fixture f;
    fx_open(&f, r->tls, tls_options(r, ""));
    sk_tbatch *t = sk_tbatch_new_from(4000, 5, 20000);
    assert_int_equal(f.d->send(f.self, &t->batch, &t->result), SK_TRANSPORT_OK);
    assert_all(t, SK_OUTCOME_DELIVERED);
    fx_close(&f);
    char expect[128 + 32];
    snprintf(expect, sizeof expect, "CONNECT %.120s HTTP/1.1", r->tls + strlen("https://"));
    assert_string_equal(px.first_request, expect);
    assert_int_equal(px.tunnels, 1);
    /* no_proxy naming the host: straight there. */
    setenv("no_proxy", "localhost, 127.0.0.1", 1);
    fx_open(&f, r->tls, tls_options(r, ""));
    sk_tbatch *u = sk_tbatch_new_from(4100, 5, 20000);
    assert_int_equal(f.d->send(f.self, &u->batch, &u->result), SK_TRANSPORT_OK);
    fx_close(&f);
    assert_int_equal(px.tunnels, 1);
    unsetenv("https_proxy");
    proxy_stop(&px);
    assert_int_equal(rx_stat(r, ".events_stored"), stored0 + 10);
    sk_tbatch_free(t);
    sk_tbatch_free(u);
}

/* gzip_min_bytes is the smallest body that goes gzip'd: at that size it is, one byte short
 * it goes as it is (the debug line of each request says which). */
static void test_gzip_from_gzip_min_bytes_on(void **state)
{
    (void)state;
    rx *r = &shared;
    sk_tbatch *t = sk_tbatch_new_from(9000, 1, 20000);
    hc_buf json = {0};
    assert_int_equal(hc_events_json(&t->batch, &json), 0);
    size_t len = json.len;
    hc_buf_free(&json);
    for (size_t above = 0; above < 2; above++) {
        char extra[64], plain[64];
        snprintf(extra, sizeof extra, "\"gzip_min_bytes\": %zu", len + above);
        snprintf(plain, sizeof plain, "1 events, %zu bytes: HTTP 200", len);
        fixture f;
        fx_open(&f, r->tls, tls_options(r, extra));
        assert_int_equal(f.d->send(f.self, &t->batch, &t->result), SK_TRANSPORT_OK);
        assert_int_equal(sk_fakehost_logged(f.fh, " gzip: HTTP 200"), above == 0);
        assert_int_equal(sk_fakehost_logged(f.fh, plain), above == 1);
        fx_close(&f);
    }
    sk_tbatch_free(t);
}

static void test_probe_and_options(void **state)
{
    (void)state;
    rx *r = &shared;
    fixture f;
    fx_open(&f, r->tls, tls_options(r, "\"gzip_levle\": 3"));
    char reason[256];
    assert_int_equal(f.d->probe(f.self, sk_test_now_ms() + 10000, reason, sizeof reason),
                     SK_PROBE_CONNECTED);
    assert_true(sk_fakehost_logged(f.fh, "unknown option \"gzip_levle\""));
    /* The table names every key the plugin reads: none of them is "unknown". */
    assert_non_null(f.d->options);
    int n = 0;
    for (const sk_option_def *o = f.d->options; o->name; o++, n++)
        assert_true(o->type && o->dflt && o->help && *o->help);
    assert_int_equal(n, 10);
    fx_close(&f);
    char err[256] = "";
    assert_int_not_equal(fx_try(&f, "http://192.0.2.1:8080", "{}", err, sizeof err), 0);
    assert_non_null(strstr(err, "set transport.options.h2c to true"));
    sk_fakehost_free(f.fh);
    dlclose(f.dl);
    assert_int_not_equal(fx_try(&f, r->tls, "{\"max_streams\": 0}", err, sizeof err), 0);
    assert_string_equal(err, "h2-stream: options.max_streams must be 1..256, not 0");
    sk_fakehost_free(f.fh);
    dlclose(f.dl);
}

int main(void)
{
    /* The scripted TLS peer writes session tickets to a client that may be gone. */
    signal(SIGPIPE, SIG_IGN);
    unsetenv("https_proxy");
    unsetenv("HTTPS_PROXY");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_batches_in_flight_together_and_busy_beyond_the_slots, rx_clear),
        cmocka_unit_test_teardown(test_goaway_sends_what_follows_on_a_new_connection, rx_clear),
        cmocka_unit_test_teardown(test_cancel_from_another_thread_ends_streams_in_flight, rx_clear),
        cmocka_unit_test_teardown(test_a_stalled_stream_is_reset_at_its_deadline, rx_clear),
        cmocka_unit_test_teardown(test_server_without_h2_is_refused_with_one_line, rx_clear),
        cmocka_unit_test_teardown(test_https_proxy_tunnels_and_no_proxy_bypasses, rx_clear),
        cmocka_unit_test_teardown(test_gzip_from_gzip_min_bytes_on, rx_clear),
        cmocka_unit_test_teardown(test_probe_and_options, rx_clear),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
