/*
 * http-batch transport: the real plugin .so, loaded through the fake host,
 * talking to a scripted HTTP/1.1 peer on loopback. The answer mapping it
 * shares with h2-stream is tested on its own in test_http_common.c.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fakehost.h"
#include "testutil.h"

/* The unit-test glob links each test with testutil.c and fakehost.c only, so
 * the scripted peer is compiled in here. */
#include "http_peer.c"

#include "http_common.h" /* HC_RETRY_AFTER_CAP_MS */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SECRET "Bearer s3cr3t-t0ken-value"

/* ---------- fixture: peer + fake host + loaded plugin ---------- */

typedef struct fixture {
    sk_peer *peer;
    sk_fakehost *fh;
    const sk_transport_desc *d;
    void *dl;
    void *self;
    char url[128];
    const char *values[8];
    char *tmpdir; /* removed by fx_close when set */
} fixture;

/* Creates the plugin against url with options; asserts create succeeds. */
static void fx_open_url(fixture *f, const char *url, const char *options)
{
    snprintf(f->url, sizeof f->url, "%s", url);
    const char *values[] = {"server_url", f->url, "version", "9.9.9-test", NULL};
    memcpy(f->values, values, sizeof values);
    f->fh = sk_fakehost_new(options, f->values);
    sk_fakehost_set_auth(f->fh, SECRET);
    f->d = sk_fakehost_load_plugin("http-batch", &f->dl);
    char err[256] = "";
    int rc = f->d->create(sk_fakehost_api(f->fh), &f->self, err, sizeof err);
    if (rc != 0)
        fail_msg("create failed: %s", err);
}

static void fx_open(fixture *f, const sk_peer_reply *script, int n, const char *options)
{
    memset(f, 0, sizeof *f);
    f->peer = sk_peer_start(script, n);
    char url[128];
    /* A trailing slash on server_url must not double the path's slash. */
    snprintf(url, sizeof url, "%s/", sk_peer_url(f->peer));
    fx_open_url(f, url, options);
}

static void fx_close(fixture *f)
{
    if (f->self)
        f->d->destroy(f->self);
    /* Nothing we did may ever put the bearer into a log line. */
    if (f->fh)
        assert_false(sk_fakehost_logged(f->fh, "s3cr3t"));
    sk_fakehost_free(f->fh);
    sk_peer_stop(f->peer);
    if (f->tmpdir) {
        sk_test_rmtree(f->tmpdir);
        free(f->tmpdir);
    }
}

static int fx_send(fixture *f, sk_tbatch *t)
{
    return f->d->send(f->self, &t->batch, &t->result);
}

/* Sends a 2-event batch against a one-reply script; returns the rc. */
static int send_one_reply(fixture *f, sk_tbatch **t, int status, const char *headers, const char *body)
{
    sk_peer_reply r = {SK_PEER_RESPOND, status, headers, body};
    fx_open(f, &r, 1, NULL);
    *t = sk_tbatch_new(2, 5000);
    return fx_send(f, *t);
}

static void assert_all_transient(const sk_tbatch *t)
{
    for (uint32_t i = 0; i < t->n; i++)
        assert_int_equal(t->res[i].outcome, SK_OUTCOME_TRANSIENT);
}

/* ---------- success mapping and the request itself ---------- */

static void test_each_per_event_status_maps_to_its_outcome(void **state)
{
    (void)state;
    sk_tbatch *t = sk_tbatch_new(11, 5000);
    char body[4096];
    snprintf(body, sizeof body,
             "{\"results\":["
             "{\"event_id\":\"%s\",\"status\":\"success\"},"
             "{\"event_id\":\"%s\",\"status\":\"accepted\"},"
             "{\"event_id\":\"%s\",\"status\":\"warning\",\"error_message\":\"old schema\"},"
             "{\"event_id\":\"%s\",\"status\":\"duplicate\"},"
             "{\"event_id\":\"%s\",\"status\":\"pending\"},"
             "{\"event_id\":\"%s\",\"status\":\"queued\"},"
             "{\"event_id\":\"%s\",\"status\":\"rejected\",\"error_message\":\"bad wp_id\"},"
             "{\"event_id\":\"%s\",\"status\":\"error\",\"error_message\":\"db down\"},"
             "{\"event_id\":\"%s\",\"status\":\"rejected\",\"error_category\":"
             "\"project_not_consented\",\"error_message\":\"no consent\"},"
             "{\"event_id\":\"%s\",\"status\":\"mystery\",\"error_message\":\"huh\"}"
             "]}",
             t->ids[0], t->ids[1], t->ids[2], t->ids[3], t->ids[4], t->ids[5], t->ids[6], t->ids[7],
             t->ids[8], t->ids[9]);
    sk_peer_reply r = {SK_PEER_RESPOND, 200, NULL, body};
    fixture f;
    fx_open(&f, &r, 1, NULL);
    assert_int_equal(fx_send(&f, t), SK_TRANSPORT_OK);
    assert_int_equal(t->result.status_code, 200);
    const int want[] = {SK_OUTCOME_DELIVERED, SK_OUTCOME_DELIVERED, SK_OUTCOME_DELIVERED,
                        SK_OUTCOME_DUPLICATE, SK_OUTCOME_PENDING,   SK_OUTCOME_PENDING,
                        SK_OUTCOME_REJECTED,  SK_OUTCOME_REJECTED,  SK_OUTCOME_REJECTED_PERMANENT,
                        SK_OUTCOME_TRANSIENT, SK_OUTCOME_TRANSIENT /* missing from results */};
    for (uint32_t i = 0; i < t->n; i++)
        assert_int_equal(t->res[i].outcome, want[i]);
    assert_string_equal(t->res[6].message, "bad wp_id");
    assert_string_equal(t->res[7].message, "db down");
    assert_string_equal(t->res[8].message, "no consent");
    assert_string_equal(t->res[9].message, "huh");
    assert_string_equal(t->res[10].message, "");
    assert_int_equal(t->result.hints, SK_HINT_NONE);
    assert_non_null(strstr(t->result.detail, "2 of 11 events missing"));
    sk_tbatch_free(t);
    fx_close(&f);
}

static void test_request_is_gzip_events_with_required_headers(void **state)
{
    (void)state;
    sk_tbatch *t = sk_tbatch_new(3, 5000);
    char body[1024];
    snprintf(body, sizeof body, "{\"results\":[{\"event_id\":\"%s\",\"status\":\"success\"}]}",
             t->ids[0]);
    sk_peer_reply r = {SK_PEER_RESPOND, 200, NULL, body};
    fixture f;
    fx_open(&f, &r, 1, NULL);
    assert_int_equal(fx_send(&f, t), SK_TRANSPORT_OK);
    const sk_peer_request *q = sk_peer_request_at(f.peer, 0);
    assert_non_null(q);
    assert_string_equal(q->method, "POST");
    assert_string_equal(q->target, "/api/v1/events/batch/");
    assert_false(q->gunzip_failed);
    char want[4096];
    snprintf(want, sizeof want, "{\"events\":[%s,%s,%s]}", t->json[0], t->json[1], t->json[2]);
    assert_int_equal(q->plain_len, strlen(want));
    assert_memory_equal(q->plain, want, q->plain_len);
    char v[256];
    assert_string_equal(sk_peer_header(q, "Content-Type", v, sizeof v), "application/json");
    assert_string_equal(sk_peer_header(q, "Content-Encoding", v, sizeof v), "gzip");
    assert_string_equal(sk_peer_header(q, "X-Spec-Kitty-Sync-Protocol", v, sizeof v), "2.0");
    assert_string_equal(sk_peer_header(q, "User-Agent", v, sizeof v), "spec-kitty-sync/9.9.9-test");
    assert_string_equal(sk_peer_header(q, "Authorization", v, sizeof v), SECRET);
    assert_null(sk_peer_header(q, "Expect", v, sizeof v));
    assert_int_equal(sk_fakehost_metric(f.fh, "requests"), 1);
    assert_int_equal(sk_fakehost_metric(f.fh, "bytes_sent"), (long long)q->body_len);
    assert_true(q->body_len < q->plain_len); /* actually compressed */
    sk_tbatch_free(t);
    fx_close(&f);
}

static void test_no_credentials_sends_no_authorization(void **state)
{
    (void)state;
    sk_peer_reply r = {SK_PEER_RESPOND, 401, NULL, "{\"detail\":\"no token\"}"};
    fixture f;
    fx_open(&f, &r, 1, NULL);
    sk_fakehost_set_auth(f.fh, "");
    sk_tbatch *t = sk_tbatch_new(1, 5000);
    assert_int_equal(fx_send(&f, t), SK_TRANSPORT_OK);
    assert_true(t->result.hints & SK_HINT_REAUTHENTICATE);
    char v[64];
    assert_null(sk_peer_header(sk_peer_request_at(f.peer, 0), "Authorization", v, sizeof v));
    sk_tbatch_free(t);
    fx_close(&f);
}

static void test_auth_value_with_line_break_is_refused(void **state)
{
    (void)state;
    sk_peer_reply r = {SK_PEER_RESPOND, 200, NULL, "{\"results\":[]}"};
    fixture f;
    fx_open(&f, &r, 1, NULL);
    sk_fakehost_set_auth(f.fh, "Bearer abc\r\nX-Injected: 1");
    sk_tbatch *t = sk_tbatch_new(1, 5000);
    assert_int_equal(fx_send(&f, t), SK_TRANSPORT_FAILED);
    assert_non_null(strstr(t->result.detail, "line break"));
    assert_int_equal(sk_peer_requests(f.peer), 0);
    sk_tbatch_free(t);
    fx_close(&f);
}

static void test_two_batches_reuse_one_connection(void **state)
{
    (void)state;
    sk_peer_reply r = {SK_PEER_RESPOND, 200, NULL, "{\"results\":[]}"};
    fixture f;
    fx_open(&f, &r, 1, NULL);
    for (int i = 0; i < 3; i++) {
        sk_tbatch *t = sk_tbatch_new(2, 5000);
        assert_int_equal(fx_send(&f, t), SK_TRANSPORT_FAILED); /* empty results: all transient */
        assert_int_equal(t->result.status_code, 200);
        sk_tbatch_free(t);
    }
    assert_int_equal(sk_peer_requests(f.peer), 3);
    assert_int_equal(sk_peer_connections(f.peer), 1);
    assert_int_equal(sk_fakehost_metric(f.fh, "requests"), 3);
    assert_int_equal(sk_fakehost_metric(f.fh, "connects"), 1);
    assert_int_equal(sk_fakehost_metric(f.fh, "reconnects"), 0);
    fx_close(&f);
}

static void test_server_closing_the_connection_counts_a_reconnect(void **state)
{
    (void)state;
    sk_peer_reply r[] = {
        {SK_PEER_RESPOND, 200, "Connection: close\r\n", "{\"results\":[]}"},
        {SK_PEER_RESPOND, 200, NULL, "{\"results\":[]}"},
    };
    fixture f;
    fx_open(&f, r, 2, NULL);
    for (int i = 0; i < 2; i++) {
        sk_tbatch *t = sk_tbatch_new(1, 5000);
        fx_send(&f, t);
        assert_int_equal(t->result.status_code, 200);
        sk_tbatch_free(t);
    }
    assert_int_equal(sk_peer_connections(f.peer), 2);
    assert_int_equal(sk_fakehost_metric(f.fh, "reconnects"), 1);
    fx_close(&f);
}

/* ---------- batch-level answers ---------- */

static void test_400_details_list_rejects_named_events_only(void **state)
{
    (void)state;
    fixture f;
    sk_tbatch *t = sk_tbatch_new(3, 5000);
    char body[1024];
    snprintf(body, sizeof body,
             "{\"error\":\"validation failed\",\"details\":["
             "{\"event_id\":\"%s\",\"error\":\"missing payload.wp_id\"},"
             "{\"event_id\":\"%s\",\"reason\":\"bad lamport_clock\"}]}",
             t->ids[0], t->ids[2]);
    sk_peer_reply r = {SK_PEER_RESPOND, 400, NULL, body};
    fx_open(&f, &r, 1, NULL);
    assert_int_equal(fx_send(&f, t), SK_TRANSPORT_OK);
    assert_int_equal(t->result.status_code, 400);
    assert_int_equal(t->res[0].outcome, SK_OUTCOME_REJECTED);
    assert_int_equal(t->res[1].outcome, SK_OUTCOME_TRANSIENT);
    assert_int_equal(t->res[2].outcome, SK_OUTCOME_REJECTED);
    assert_string_equal(t->res[0].message, "missing payload.wp_id");
    assert_string_equal(t->res[2].message, "bad lamport_clock");
    assert_false(t->result.hints & SK_HINT_POISONED);
    sk_tbatch_free(t);
    fx_close(&f);
}

static void test_400_details_as_json_string_rejects_named_events(void **state)
{
    (void)state;
    fixture f;
    sk_tbatch *t = sk_tbatch_new(2, 5000);
    char body[1024];
    snprintf(body, sizeof body,
             "{\"details\":\"[{\\\"event_id\\\": \\\"%s\\\", \\\"error\\\": \\\"bad type\\\"}]\"}",
             t->ids[1]);
    sk_peer_reply r = {SK_PEER_RESPOND, 400, NULL, body};
    fx_open(&f, &r, 1, NULL);
    assert_int_equal(fx_send(&f, t), SK_TRANSPORT_OK);
    assert_int_equal(t->res[0].outcome, SK_OUTCOME_TRANSIENT);
    assert_int_equal(t->res[1].outcome, SK_OUTCOME_REJECTED);
    assert_string_equal(t->res[1].message, "bad type");
    assert_int_equal(t->result.hints, SK_HINT_NONE);
    sk_tbatch_free(t);
    fx_close(&f);
}

static void test_400_without_details_is_poisoned(void **state)
{
    (void)state;
    fixture f;
    sk_tbatch *t;
    assert_int_equal(send_one_reply(&f, &t, 400, NULL, "{\"error\":\"Invalid JSON\"}"),
                     SK_TRANSPORT_OK);
    assert_int_equal(t->result.hints, SK_HINT_POISONED);
    assert_all_transient(t);
    assert_non_null(strstr(t->result.detail, "Invalid JSON"));
    sk_tbatch_free(t);
    fx_close(&f);
}

static void test_401_asks_to_reauthenticate(void **state)
{
    (void)state;
    fixture f;
    sk_tbatch *t;
    assert_int_equal(send_one_reply(&f, &t, 401, NULL, "{\"detail\":\"Token expired\"}"),
                     SK_TRANSPORT_OK);
    assert_int_equal(t->result.hints, SK_HINT_REAUTHENTICATE);
    assert_int_equal(t->result.status_code, 401);
    assert_all_transient(t);
    sk_tbatch_free(t);
    fx_close(&f);
}

static void test_echoed_token_never_reaches_detail_or_log(void **state)
{
    (void)state;
    sk_peer_reply r = {SK_PEER_RESPOND, 401, NULL,
                       "{\"detail\":\"token s3cr3t-t0ken-value is expired\"}"};
    fixture f;
    fx_open(&f, &r, 1, NULL);
    sk_tbatch *t = sk_tbatch_new(1, 5000);
    assert_int_equal(fx_send(&f, t), SK_TRANSPORT_OK);
    assert_string_equal(t->result.detail, "HTTP 401: token *** is expired");
    char reason[256];
    assert_int_equal(f.d->probe(f.self, sk_test_now_ms() + 5000, reason, sizeof reason),
                     SK_PROBE_NOT_AUTHENTICATED);
    assert_non_null(strstr(reason, "token *** is expired"));
    sk_tbatch_free(t);
    fx_close(&f); /* also asserts nothing logged holds the token */
}

static void test_403_is_transient_with_server_text(void **state)
{
    (void)state;
    fixture f;
    sk_tbatch *t;
    assert_int_equal(send_one_reply(&f, &t, 403, NULL, "{\"error\":\"team acme is not yours\"}"),
                     SK_TRANSPORT_FAILED);
    assert_int_equal(t->result.hints, SK_HINT_NONE);
    assert_int_equal(t->result.status_code, 403);
    assert_all_transient(t);
    assert_string_equal(t->result.detail, "HTTP 403: team acme is not yours");
    sk_tbatch_free(t);
    fx_close(&f);
}

static void test_408_is_transient(void **state)
{
    (void)state;
    fixture f;
    sk_tbatch *t;
    assert_int_equal(send_one_reply(&f, &t, 408, NULL, ""), SK_TRANSPORT_FAILED);
    assert_int_equal(t->result.status_code, 408);
    assert_int_equal(t->result.hints, SK_HINT_NONE);
    assert_all_transient(t);
    sk_tbatch_free(t);
    fx_close(&f);
}

static void test_412_is_protocol_mismatch_with_guidance(void **state)
{
    (void)state;
    fixture f;
    sk_tbatch *t;
    assert_int_equal(send_one_reply(&f, &t, 412, NULL,
                                    "{\"error\":\"protocol 2.0 unsupported\","
                                    "\"upgrade_guidance\":\"pip install -U spec-kitty\"}"),
                     SK_TRANSPORT_OK);
    assert_int_equal(t->result.hints, SK_HINT_PROTOCOL_MISMATCH);
    /* The older shape: guidance first, then the error; no code. */
    assert_string_equal(t->result.detail,
                        "HTTP 412: pip install -U spec-kitty (protocol 2.0 unsupported)");
    assert_string_equal(t->result.error_code, "");
    assert_all_transient(t);
    sk_tbatch_free(t);
    fx_close(&f);
}

static void test_412_current_shape_prefers_sync_protocol_guidance_and_keeps_the_code(void **state)
{
    (void)state;
    fixture f;
    sk_tbatch *t;
    assert_int_equal(send_one_reply(&f, &t, 412, NULL,
                                    "{\"error_code\":\"client-too-old\","
                                    "\"error_description\":\"client 1.0 is older than 2.0\","
                                    "\"sync_protocol\":{\"upgrade_guidance\":\"upgrade to 3.1\"},"
                                    "\"error\":\"old text\",\"upgrade_guidance\":\"old guidance\"}"),
                     SK_TRANSPORT_OK);
    assert_int_equal(t->result.hints, SK_HINT_PROTOCOL_MISMATCH);
    assert_string_equal(t->result.detail,
                        "HTTP 412: upgrade to 3.1 (client 1.0 is older than 2.0)");
    assert_string_equal(t->result.error_code, "client-too-old");
    assert_all_transient(t);
    sk_tbatch_free(t);
    fx_close(&f);
}

static void test_413_is_too_large(void **state)
{
    (void)state;
    fixture f;
    sk_tbatch *t;
    assert_int_equal(send_one_reply(&f, &t, 413, "Content-Type: text/html\r\n",
                                    "<html>Request Entity Too Large</html>"),
                     SK_TRANSPORT_OK);
    assert_int_equal(t->result.hints, SK_HINT_TOO_LARGE);
    assert_all_transient(t);
    sk_tbatch_free(t);
    fx_close(&f);
}

static void test_4xx_saying_too_large_is_too_large(void **state)
{
    (void)state;
    fixture f;
    sk_tbatch *t;
    assert_int_equal(
        send_one_reply(&f, &t, 400, NULL, "{\"error\":\"Batch too large: 1000 > 500 events\"}"),
        SK_TRANSPORT_OK);
    assert_int_equal(t->result.hints, SK_HINT_TOO_LARGE);
    assert_non_null(strstr(t->result.detail, "1000 > 500"));
    sk_tbatch_free(t);
    fx_close(&f);
}

static void test_429_retry_after_seconds(void **state)
{
    (void)state;
    fixture f;
    sk_tbatch *t;
    assert_int_equal(send_one_reply(&f, &t, 429, "Retry-After: 17\r\n", "{\"detail\":\"slow\"}"),
                     SK_TRANSPORT_OK);
    assert_int_equal(t->result.hints, SK_HINT_RETRY_AFTER);
    assert_int_equal(t->result.retry_after_ms, 17000);
    assert_int_equal(t->result.status_code, 429);
    assert_all_transient(t);
    sk_tbatch_free(t);
    fx_close(&f);
}

static void test_429_retry_after_http_date(void **state)
{
    (void)state;
    char header[128], date[64];
    time_t when = time(NULL) + 120;
    struct tm tm;
    gmtime_r(&when, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    snprintf(header, sizeof header, "Retry-After: %s\r\n", date);
    fixture f;
    sk_tbatch *t;
    assert_int_equal(send_one_reply(&f, &t, 429, header, ""), SK_TRANSPORT_OK);
    assert_int_equal(t->result.hints, SK_HINT_RETRY_AFTER);
    assert_in_range(t->result.retry_after_ms, 110000, 121000);
    sk_tbatch_free(t);
    fx_close(&f);
}

static void test_503_with_retry_after_and_500_without(void **state)
{
    (void)state;
    sk_peer_reply r[] = {
        {SK_PEER_RESPOND, 503, "Retry-After: 99999999\r\n", "maintenance"},
        {SK_PEER_RESPOND, 500, NULL, "Internal Server Error"},
    };
    fixture f;
    fx_open(&f, r, 2, NULL);
    sk_tbatch *t = sk_tbatch_new(2, 5000);
    assert_int_equal(fx_send(&f, t), SK_TRANSPORT_OK);
    assert_int_equal(t->result.hints, SK_HINT_RETRY_AFTER);
    assert_int_equal(t->result.retry_after_ms, HC_RETRY_AFTER_CAP_MS); /* capped at 24 h */
    assert_int_equal(t->result.status_code, 503);
    assert_all_transient(t);
    assert_int_equal(fx_send(&f, t), SK_TRANSPORT_FAILED);
    assert_int_equal(t->result.hints, SK_HINT_NONE);
    assert_int_equal(t->result.status_code, 500);
    assert_string_equal(t->result.detail, "HTTP 500: Internal Server Error");
    assert_all_transient(t);
    sk_tbatch_free(t);
    fx_close(&f);
}

static void test_non_json_and_misshapen_200_are_transient(void **state)
{
    (void)state;
    sk_peer_reply r[] = {
        {SK_PEER_RESPOND, 200, "Content-Type: text/html\r\n", "<html>captive portal</html>"},
        {SK_PEER_RESPOND, 200, NULL, "{\"results\":\"all good\"}"},
        {SK_PEER_RESPOND, 200, NULL, "{\"results\":[{\"event_id\":42,\"status\":\"success\"}]}"},
    };
    fixture f;
    fx_open(&f, r, 3, NULL);
    sk_tbatch *t = sk_tbatch_new(2, 5000);
    assert_int_equal(fx_send(&f, t), SK_TRANSPORT_FAILED);
    assert_all_transient(t);
    assert_non_null(strstr(t->result.detail, "captive portal"));
    assert_int_equal(fx_send(&f, t), SK_TRANSPORT_FAILED);
    assert_all_transient(t);
    assert_non_null(strstr(t->result.detail, "without a results list"));
    assert_int_equal(fx_send(&f, t), SK_TRANSPORT_FAILED);
    assert_all_transient(t);
    assert_non_null(strstr(t->result.detail, "2 of 2 events missing"));
    sk_tbatch_free(t);
    fx_close(&f);
}

static void test_redirect_is_not_followed(void **state)
{
    (void)state;
    fixture f;
    sk_tbatch *t;
    assert_int_equal(send_one_reply(&f, &t, 301, "Location: https://elsewhere.example/x\r\n", ""),
                     SK_TRANSPORT_FAILED);
    assert_int_equal(t->result.status_code, 301);
    assert_non_null(strstr(t->result.detail, "https://elsewhere.example/x"));
    assert_int_equal(sk_peer_requests(f.peer), 1);
    sk_tbatch_free(t);
    fx_close(&f);
}

/* ---------- failures without an answer, cancel, deadline ---------- */

static void test_connection_refused_is_transient_with_detail(void **state)
{
    (void)state;
    fixture f;
    memset(&f, 0, sizeof f);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", sk_peer_closed_port());
    fx_open_url(&f, url, NULL);
    sk_tbatch *t = sk_tbatch_new(2, 5000);
    assert_int_equal(fx_send(&f, t), SK_TRANSPORT_FAILED);
    assert_all_transient(t);
    assert_int_equal(t->result.status_code, 0);
    assert_non_null(strcasestr(t->result.detail, "connect"));
    sk_tbatch_free(t);
    fx_close(&f);
}

static void test_server_closing_without_answer_is_transient(void **state)
{
    (void)state;
    sk_peer_reply r = {SK_PEER_CLOSE, 0, NULL, NULL};
    fixture f;
    fx_open(&f, &r, 1, NULL);
    sk_tbatch *t = sk_tbatch_new(2, 5000);
    assert_int_equal(fx_send(&f, t), SK_TRANSPORT_FAILED);
    assert_all_transient(t);
    assert_true(strlen(t->result.detail) > 0);
    sk_tbatch_free(t);
    fx_close(&f);
}

typedef struct send_job {
    fixture *f;
    sk_tbatch *t;
    int rc;
    int64_t returned_at;
} send_job;

static void *send_thread(void *arg)
{
    send_job *j = arg;
    j->rc = fx_send(j->f, j->t);
    j->returned_at = sk_test_now_ms();
    return NULL;
}

static void test_cancel_aborts_a_hanging_send_quickly(void **state)
{
    (void)state;
    sk_peer_reply r = {SK_PEER_HANG, 0, NULL, NULL};
    fixture f;
    fx_open(&f, &r, 1, NULL);
    send_job job = {&f, sk_tbatch_new(2, 30000), -1, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, send_thread, &job), 0);
    assert_int_equal(sk_peer_wait_requests(f.peer, 1, 5000), 1); /* the request is in flight */
    int64_t t0 = sk_test_now_ms();
    f.d->cancel(f.self);
    pthread_join(th, NULL);
    int64_t took = job.returned_at - t0;
    print_message("cancel -> send returned in %lld ms\n", (long long)took);
    assert_int_equal(job.rc, SK_TRANSPORT_CANCELLED);
    assert_in_range(took, 0, 499);
    assert_all_transient(job.t);
    /* cancel() is final: a later send returns at once without a request. */
    assert_int_equal(fx_send(&f, job.t), SK_TRANSPORT_CANCELLED);
    assert_int_equal(sk_peer_requests(f.peer), 1);
    sk_tbatch_free(job.t);
    fx_close(&f);
}

static void test_send_returns_by_the_batch_deadline(void **state)
{
    (void)state;
    sk_peer_reply r = {SK_PEER_HANG, 0, NULL, NULL};
    fixture f;
    fx_open(&f, &r, 1, NULL);
    sk_tbatch *t = sk_tbatch_new(2, 300);
    int64_t t0 = sk_test_now_ms();
    assert_int_equal(fx_send(&f, t), SK_TRANSPORT_FAILED);
    int64_t took = sk_test_now_ms() - t0;
    assert_in_range(took, 250, 700);
    assert_all_transient(t);
    assert_non_null(strstr(t->result.detail, "deadline"));
    /* A batch whose deadline already passed is not sent at all. */
    t->batch.deadline_ms = sk_test_now_ms() - 1;
    assert_int_equal(fx_send(&f, t), SK_TRANSPORT_FAILED);
    assert_int_equal(sk_peer_requests(f.peer), 1);
    sk_tbatch_free(t);
    fx_close(&f);
}

static void test_timeout_option_bounds_a_request(void **state)
{
    (void)state;
    sk_peer_reply r = {SK_PEER_HANG, 0, NULL, NULL};
    fixture f;
    fx_open(&f, &r, 1, "{\"timeout_ms\": 200}");
    sk_tbatch *t = sk_tbatch_new(1, 10000);
    int64_t t0 = sk_test_now_ms();
    assert_int_equal(fx_send(&f, t), SK_TRANSPORT_FAILED);
    assert_in_range(sk_test_now_ms() - t0, 150, 700);
    assert_non_null(strstr(t->result.detail, "timed out"));
    sk_tbatch_free(t);
    fx_close(&f);
}

/* ---------- submit: batches in flight on several connections ---------- */

static int fx_submit(fixture *f, sk_tbatch *t, sk_test_done_tag *tag)
{
    return f->d->submit(f->self, &t->batch, &t->result, sk_test_on_done, tag);
}

static void test_two_batches_are_in_flight_at_once_on_two_connections(void **state)
{
    (void)state;
    sk_peer_reply r = {SK_PEER_HANG, 0, NULL, NULL}; /* no request is ever answered */
    fixture f;
    fx_open(&f, &r, 1, NULL); /* connections: the default, 2 */
    sk_test_done_log log;
    sk_test_done_log_init(&log);
    sk_test_done_tag tags[3] = {{&log, 0}, {&log, 1}, {&log, 2}};
    sk_tbatch *t[3] = {sk_tbatch_new_from(0, 2, 30000), sk_tbatch_new_from(2, 2, 30000),
                       sk_tbatch_new_from(4, 2, 30000)};
    assert_int_equal(fx_submit(&f, t[0], &tags[0]), SK_TRANSPORT_OK);
    assert_int_equal(fx_submit(&f, t[1], &tags[1]), SK_TRANSPORT_OK);
    assert_int_equal(fx_submit(&f, t[2], &tags[2]), SK_TRANSPORT_BUSY); /* both connections busy */
    /* The peer holds the second request while the first is still unanswered. */
    assert_int_equal(sk_peer_wait_requests(f.peer, 2, 5000), 2);
    assert_int_equal(sk_test_done_wait(&log, 1, 0), 0);
    const sk_peer_request *a = sk_peer_request_at(f.peer, 0), *b = sk_peer_request_at(f.peer, 1);
    assert_int_not_equal(a->connection, b->connection);
    assert_int_equal(sk_peer_connections(f.peer), 2);
    assert_true(strstr(a->plain, t[0]->ids[0]) || strstr(a->plain, t[1]->ids[0]));
    f.d->cancel(f.self); /* wakes both connections' polls */
    assert_int_equal(sk_test_done_wait(&log, 2, 5000), 2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(log.times[i], 1);
        assert_int_equal(log.rc[i], SK_TRANSPORT_CANCELLED);
        assert_all_transient(t[i]);
    }
    /* After cancel: refused at once, no completion. */
    assert_int_equal(fx_submit(&f, t[2], &tags[2]), SK_TRANSPORT_CANCELLED);
    assert_int_equal(sk_test_done_wait(&log, 3, 100), 2);
    /* Counted per connection from two threads: two first connects, no reconnect. */
    assert_int_equal(sk_fakehost_metric(f.fh, "requests"), 2);
    assert_int_equal(sk_fakehost_metric(f.fh, "connects"), 2);
    assert_int_equal(sk_fakehost_metric(f.fh, "reconnects"), 0);
    fx_close(&f); /* destroy joins both workers */
    for (int i = 0; i < 3; i++)
        sk_tbatch_free(t[i]);
    sk_test_done_log_destroy(&log);
}

/* Submits n batches, as many in flight as the plugin takes, each answered; returns
 * the connections the peer saw. */
static int submit_all(const char *options, int n)
{
    sk_peer_reply r = {SK_PEER_RESPOND, 200, NULL, "{\"results\":[]}"};
    fixture f;
    fx_open(&f, &r, 1, options);
    sk_test_done_log log;
    sk_test_done_log_init(&log);
    sk_test_done_tag tags[8];
    sk_tbatch *t[8];
    assert_true(n <= 8);
    int next = 0;
    while (next < n) {
        tags[next] = (sk_test_done_tag){&log, next};
        t[next] = sk_tbatch_new_from((uint32_t)(2 * next), 2, 5000);
        int rc = fx_submit(&f, t[next], &tags[next]);
        if (rc == SK_TRANSPORT_OK) {
            next++;
            continue;
        }
        assert_int_equal(rc, SK_TRANSPORT_BUSY);
        sk_tbatch_free(t[next]);
        pthread_mutex_lock(&log.mu);
        int seen = log.calls;
        pthread_mutex_unlock(&log.mu);
        assert_true(sk_test_done_wait(&log, seen + 1, 5000) > seen); /* a slot frees */
    }
    assert_int_equal(sk_test_done_wait(&log, n, 5000), n);
    for (int i = 0; i < n; i++) {
        assert_int_equal(log.times[i], 1);
        assert_int_equal(log.rc[i], SK_TRANSPORT_FAILED); /* empty results: all transient */
        assert_int_equal(t[i]->result.status_code, 200);
        sk_tbatch_free(t[i]);
    }
    int connections = sk_peer_connections(f.peer);
    assert_int_equal(sk_fakehost_metric(f.fh, "requests"), n);
    assert_int_equal(sk_fakehost_metric(f.fh, "connects"), connections);
    assert_int_equal(sk_fakehost_metric(f.fh, "reconnects"), 0);
    fx_close(&f);
    sk_test_done_log_destroy(&log);
    return connections;
}

/* Against a peer that never answers: how many batches submit() takes before BUSY
 * (each then in flight on its own connection), all completed by cancel. */
static int accepted_at_once(const char *options)
{
    sk_peer_reply r = {SK_PEER_HANG, 0, NULL, NULL};
    fixture f;
    fx_open(&f, &r, 1, options);
    sk_test_done_log log;
    sk_test_done_log_init(&log);
    sk_test_done_tag tags[9];
    sk_tbatch *t[9];
    int n = 0, rc = SK_TRANSPORT_OK;
    while (rc == SK_TRANSPORT_OK && n < 9) {
        tags[n] = (sk_test_done_tag){&log, n};
        t[n] = sk_tbatch_new_from((uint32_t)(2 * n), 2, 30000);
        rc = fx_submit(&f, t[n], &tags[n]);
        n++;
    }
    assert_int_equal(rc, SK_TRANSPORT_BUSY);
    int accepted = n - 1;
    assert_int_equal(sk_peer_wait_requests(f.peer, accepted, 5000), accepted);
    assert_int_equal(sk_peer_connections(f.peer), accepted);
    f.d->cancel(f.self);
    assert_int_equal(sk_test_done_wait(&log, accepted, 5000), accepted);
    fx_close(&f);
    for (int i = 0; i < n; i++)
        sk_tbatch_free(t[i]);
    sk_test_done_log_destroy(&log);
    return accepted;
}

static void test_connections_1_keeps_one_connection_and_one_batch_in_flight(void **state)
{
    (void)state;
    assert_int_equal(accepted_at_once("{\"connections\": 1}"), 1);
    assert_int_equal(submit_all("{\"connections\": 1}", 6), 1);
}

static void test_keep_alive_connections_persist_across_async_batches(void **state)
{
    (void)state;
    assert_int_equal(accepted_at_once(NULL), 2); /* the default */
    assert_int_equal(accepted_at_once("{\"connections\": 3}"), 3);
    /* However many batches: never more connections than that, none reopened. */
    assert_in_range(submit_all("{\"connections\": 3}", 8), 1, 3);
}

/* A completion that submits the next batch: the slot it frees is free already. */
typedef struct chain {
    fixture *f;
    sk_tbatch *next;
    sk_test_done_tag *next_tag;
    int submit_rc;
} chain;

static void on_done_submit(void *ctx, int rc, sk_batch_result *result)
{
    (void)rc, (void)result;
    chain *c = ctx;
    c->submit_rc = fx_submit(c->f, c->next, c->next_tag);
}

static void test_completion_may_submit_on_the_connection_it_frees(void **state)
{
    (void)state;
    sk_peer_reply r = {SK_PEER_RESPOND, 200, NULL, "{\"results\":[]}"};
    fixture f;
    fx_open(&f, &r, 1, "{\"connections\": 1}");
    sk_test_done_log log;
    sk_test_done_log_init(&log);
    sk_test_done_tag second = {&log, 0};
    sk_tbatch *t1 = sk_tbatch_new_from(0, 2, 5000), *t2 = sk_tbatch_new_from(2, 2, 5000);
    chain c = {&f, t2, &second, -1};
    assert_int_equal(f.d->submit(f.self, &t1->batch, &t1->result, on_done_submit, &c),
                     SK_TRANSPORT_OK);
    assert_int_equal(sk_test_done_wait(&log, 1, 5000), 1); /* t2 completed: it was accepted */
    assert_int_equal(c.submit_rc, SK_TRANSPORT_OK);
    assert_int_equal(sk_peer_requests(f.peer), 2);
    assert_int_equal(sk_peer_connections(f.peer), 1);
    fx_close(&f);
    sk_tbatch_free(t1);
    sk_tbatch_free(t2);
    sk_test_done_log_destroy(&log);
}

static void test_send_borrows_an_idle_connection_or_waits_until_its_deadline(void **state)
{
    (void)state;
    sk_peer_reply r[] = {{SK_PEER_HANG, 0, NULL, NULL},
                         {SK_PEER_RESPOND, 200, NULL, "{\"results\":[]}"}};
    fixture f;
    fx_open(&f, r, 2, NULL);
    sk_test_done_log log;
    sk_test_done_log_init(&log);
    sk_test_done_tag tag = {&log, 0};
    sk_tbatch *t1 = sk_tbatch_new_from(0, 2, 30000), *t2 = sk_tbatch_new_from(2, 2, 5000);
    assert_int_equal(fx_submit(&f, t1, &tag), SK_TRANSPORT_OK);
    assert_int_equal(sk_peer_wait_requests(f.peer, 1, 5000), 1);
    /* One connection hangs: send() goes out on the other and is answered. */
    assert_int_equal(fx_send(&f, t2), SK_TRANSPORT_FAILED);
    assert_int_equal(t2->result.status_code, 200);
    assert_int_not_equal(sk_peer_request_at(f.peer, 1)->connection,
                         sk_peer_request_at(f.peer, 0)->connection);
    assert_int_equal(sk_test_done_wait(&log, 1, 0), 0);
    f.d->cancel(f.self);
    assert_int_equal(sk_test_done_wait(&log, 1, 5000), 1);
    assert_int_equal(log.rc[0], SK_TRANSPORT_CANCELLED);
    fx_close(&f);

    /* With connections: 1 held by a hanging batch, send() gives up at its deadline. */
    fx_open(&f, r, 1, "{\"connections\": 1}");
    sk_test_done_log_destroy(&log);
    sk_test_done_log_init(&log);
    assert_int_equal(fx_submit(&f, t1, &tag), SK_TRANSPORT_OK);
    assert_int_equal(sk_peer_wait_requests(f.peer, 1, 5000), 1);
    sk_tbatch *t3 = sk_tbatch_new_from(4, 2, 300);
    assert_int_equal(fx_send(&f, t3), SK_TRANSPORT_FAILED);
    assert_non_null(strstr(t3->result.detail, "every connection was busy"));
    assert_all_transient(t3);
    assert_int_equal(sk_peer_requests(f.peer), 1);
    f.d->cancel(f.self);
    assert_int_equal(sk_test_done_wait(&log, 1, 5000), 1);
    fx_close(&f);
    sk_tbatch_free(t1);
    sk_tbatch_free(t2);
    sk_tbatch_free(t3);
    sk_test_done_log_destroy(&log);
}

/* ---------- TLS ---------- */

typedef enum tls_trust { TRUST_DEFAULT, TRUST_CA_FILE, TRUST_INSECURE } tls_trust;

/* Opens the plugin against a TLS peer with a fresh self-signed certificate. */
static void fx_open_tls(fixture *f, const sk_peer_reply *r, tls_trust trust)
{
    memset(f, 0, sizeof *f);
    f->tmpdir = sk_test_mkdtemp();
    char cert[512], options[640] = "{}";
    snprintf(cert, sizeof cert, "%s/ca.pem", f->tmpdir);
    f->peer = sk_peer_start_tls(r, 1, cert);
    if (trust == TRUST_CA_FILE)
        snprintf(options, sizeof options, "{\"ca_file\": \"%s\"}", cert);
    else if (trust == TRUST_INSECURE)
        snprintf(options, sizeof options, "{\"insecure\": true}");
    fx_open_url(f, sk_peer_url(f->peer), options);
}

static void test_tls_is_verified_by_default(void **state)
{
    (void)state;
    sk_peer_reply r = {SK_PEER_RESPOND, 200, NULL, "{\"results\":[]}"};
    fixture f;
    fx_open_tls(&f, &r, TRUST_DEFAULT);
    sk_tbatch *t = sk_tbatch_new(1, 5000);
    assert_int_equal(fx_send(&f, t), SK_TRANSPORT_FAILED);
    assert_int_equal(t->result.status_code, 0);
    assert_non_null(strcasestr(t->result.detail, "certificate"));
    /* The user sees only this line: it names the option that fixes a private CA. */
    assert_non_null(strstr(t->result.detail, "set transport.options.ca_file"));
    char reason[256];
    assert_int_equal(f.d->probe(f.self, sk_test_now_ms() + 5000, reason, sizeof reason),
                     SK_PROBE_UNREACHABLE);
    assert_int_equal(sk_peer_requests(f.peer), 0); /* nothing, not even the token, was sent */
    sk_tbatch_free(t);
    fx_close(&f);
}

static void test_tls_with_a_private_ca_file(void **state)
{
    (void)state;
    sk_tbatch *t = sk_tbatch_new(1, 5000);
    char body[256];
    snprintf(body, sizeof body, "{\"results\":[{\"event_id\":\"%s\",\"status\":\"success\"}]}",
             t->ids[0]);
    sk_peer_reply r = {SK_PEER_RESPOND, 200, NULL, body};
    fixture f;
    fx_open_tls(&f, &r, TRUST_CA_FILE);
    assert_int_equal(fx_send(&f, t), SK_TRANSPORT_OK);
    assert_int_equal(t->res[0].outcome, SK_OUTCOME_DELIVERED);
    char v[128];
    const sk_peer_request *q = sk_peer_request_at(f.peer, 0);
    assert_string_equal(sk_peer_header(q, "Authorization", v, sizeof v), SECRET);
    assert_false(q->gunzip_failed);
    char reason[256];
    assert_int_equal(f.d->probe(f.self, sk_test_now_ms() + 5000, reason, sizeof reason),
                     SK_PROBE_CONNECTED);
    assert_false(sk_fakehost_logged(f.fh, "NOT verified"));
    sk_tbatch_free(t);
    fx_close(&f);
}

static void test_tls_insecure_works_and_warns(void **state)
{
    (void)state;
    sk_peer_reply r = {SK_PEER_RESPOND, 200, NULL, "{\"results\":[]}"};
    fixture f;
    fx_open_tls(&f, &r, TRUST_INSECURE);
    sk_tbatch *t = sk_tbatch_new(1, 5000);
    fx_send(&f, t);
    assert_int_equal(t->result.status_code, 200);
    assert_true(sk_fakehost_logged(f.fh, "NOT verified"));
    sk_tbatch_free(t);
    fx_close(&f);
}

/* ---------- probe ---------- */

static void test_probe_states(void **state)
{
    (void)state;
    sk_peer_reply r[] = {
        {SK_PEER_RESPOND, 200, NULL, "{\"status\":\"ok\"}"},
        {SK_PEER_RESPOND, 401, NULL, "{\"detail\":\"expired\"}"},
        {SK_PEER_RESPOND, 403, NULL, "{\"detail\":\"forbidden\"}"},
        {SK_PEER_RESPOND, 503, NULL, "down for maintenance"},
        {SK_PEER_CLOSE, 0, NULL, NULL},
    };
    const int want[] = {SK_PROBE_CONNECTED, SK_PROBE_NOT_AUTHENTICATED, SK_PROBE_NOT_AUTHENTICATED,
                        SK_PROBE_SERVER_UNAVAILABLE, SK_PROBE_SERVER_UNAVAILABLE};
    fixture f;
    fx_open(&f, r, 5, NULL);
    char reason[256];
    for (int i = 0; i < 5; i++) {
        reason[0] = '\0';
        assert_int_equal(f.d->probe(f.self, sk_test_now_ms() + 5000, reason, sizeof reason), want[i]);
        assert_true(strlen(reason) > 0);
        assert_null(strchr(reason, '\n'));
    }
    const sk_peer_request *q = sk_peer_request_at(f.peer, 0);
    assert_string_equal(q->method, "GET");
    assert_string_equal(q->target, "/api/v1/sync/health/");
    char v[128];
    assert_string_equal(sk_peer_header(q, "Authorization", v, sizeof v), SECRET);
    fx_close(&f);
}

static void test_probe_of_a_closed_port_is_unreachable(void **state)
{
    (void)state;
    fixture f;
    memset(&f, 0, sizeof f);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", sk_peer_closed_port());
    fx_open_url(&f, url, NULL);
    char reason[256] = "";
    assert_int_equal(f.d->probe(f.self, sk_test_now_ms() + 5000, reason, sizeof reason),
                     SK_PROBE_UNREACHABLE);
    assert_true(strlen(reason) > 0);
    fx_close(&f);
}

typedef struct probe_job {
    fixture *f;
    int state;
    int64_t returned_at;
} probe_job;

static void *probe_thread(void *arg)
{
    probe_job *j = arg;
    char reason[128];
    j->state = j->f->d->probe(j->f->self, sk_test_now_ms() + 30000, reason, sizeof reason);
    j->returned_at = sk_test_now_ms();
    return NULL;
}

static void test_cancel_aborts_a_hanging_probe(void **state)
{
    (void)state;
    sk_peer_reply r = {SK_PEER_HANG, 0, NULL, NULL};
    fixture f;
    fx_open(&f, &r, 1, NULL);
    probe_job job = {&f, -1, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, probe_thread, &job), 0);
    assert_int_equal(sk_peer_wait_requests(f.peer, 1, 5000), 1);
    int64_t t0 = sk_test_now_ms();
    f.d->cancel(f.self);
    pthread_join(th, NULL);
    assert_int_equal(job.state, SK_PROBE_UNREACHABLE);
    assert_in_range(job.returned_at - t0, 0, 499);
    fx_close(&f);
}

/* ---------- create and options ---------- */

static void test_create_refuses_bad_configuration(void **state)
{
    (void)state;
    void *dl;
    const sk_transport_desc *d = sk_fakehost_load_plugin("http-batch", &dl);
    assert_int_equal(d->capabilities, SK_CAP_SYNC | SK_CAP_ASYNC | SK_CAP_PROBE);
    assert_int_equal(d->max_in_flight, 8);
    assert_string_equal(d->name, "http-batch");
    const char *none[] = {NULL};
    const char *ftp[] = {"server_url", "ftp://x", NULL};
    const char *ok[] = {"server_url", "https://sync.example", NULL};
    struct {
        const char *const *values;
        const char *options;
        const char *needle;
    } cases[] = {
        {none, NULL, "server_url"},
        {ftp, NULL, "http"},
        {ok, "{\"gzip_level\": 12}", "gzip_level"},
        {ok, "{\"timeout_ms\": 0}", "timeout_ms"},
        {ok, "{\"connections\": 0}", "connections must be 1..8"},
        {ok, "{\"connections\": 9}", "connections must be 1..8"},
        {ok, "{\"ca_file\": \"/nonexistent/ca.pem\"}", "ca_file"},
        {ok, "{\"ca_file\": \"/dev/zero\"}", "ca_file /dev/zero is not a regular file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sk_fakehost *fh = sk_fakehost_new(cases[i].options, cases[i].values);
        void *self = (void *)1;
        char err[256] = "";
        assert_int_not_equal(d->create(sk_fakehost_api(fh), &self, err, sizeof err), 0);
        assert_null(self);
        assert_non_null(strstr(err, cases[i].needle));
        sk_fakehost_free(fh);
    }
}

static void test_insecure_and_unknown_options_are_warned(void **state)
{
    (void)state;
    sk_peer_reply r = {SK_PEER_RESPOND, 200, NULL, "{}"};
    fixture f;
    fx_open(&f, &r, 1, "{\"insecure\": true, \"gzip_levle\": 3}");
    assert_true(sk_fakehost_logged(f.fh, "NOT verified"));
    assert_true(sk_fakehost_logged(f.fh, "gzip_levle"));
    fx_close(&f);
    fx_open(&f, &r, 1, "{\"gzip_level\": 0}");
    assert_false(sk_fakehost_logged(f.fh, "NOT verified"));
    assert_false(sk_fakehost_logged(f.fh, "unknown option"));
    fx_close(&f);
}

int main(void)
{
    /* The peer is on loopback: a proxy from the environment must not intercept it. */
    setenv("no_proxy", "127.0.0.1,localhost", 1);
    setenv("NO_PROXY", "127.0.0.1,localhost", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_per_event_status_maps_to_its_outcome),
        cmocka_unit_test(test_request_is_gzip_events_with_required_headers),
        cmocka_unit_test(test_no_credentials_sends_no_authorization),
        cmocka_unit_test(test_auth_value_with_line_break_is_refused),
        cmocka_unit_test(test_two_batches_reuse_one_connection),
        cmocka_unit_test(test_server_closing_the_connection_counts_a_reconnect),
        cmocka_unit_test(test_400_details_list_rejects_named_events_only),
        cmocka_unit_test(test_400_details_as_json_string_rejects_named_events),
        cmocka_unit_test(test_400_without_details_is_poisoned),
        cmocka_unit_test(test_401_asks_to_reauthenticate),
        cmocka_unit_test(test_echoed_token_never_reaches_detail_or_log),
        cmocka_unit_test(test_403_is_transient_with_server_text),
        cmocka_unit_test(test_408_is_transient),
        cmocka_unit_test(test_412_is_protocol_mismatch_with_guidance),
        cmocka_unit_test(test_412_current_shape_prefers_sync_protocol_guidance_and_keeps_the_code),
        cmocka_unit_test(test_413_is_too_large),
        cmocka_unit_test(test_4xx_saying_too_large_is_too_large),
        cmocka_unit_test(test_429_retry_after_seconds),
        cmocka_unit_test(test_429_retry_after_http_date),
        cmocka_unit_test(test_503_with_retry_after_and_500_without),
        cmocka_unit_test(test_non_json_and_misshapen_200_are_transient),
        cmocka_unit_test(test_redirect_is_not_followed),
        cmocka_unit_test(test_connection_refused_is_transient_with_detail),
        cmocka_unit_test(test_server_closing_without_answer_is_transient),
        cmocka_unit_test(test_cancel_aborts_a_hanging_send_quickly),
        cmocka_unit_test(test_send_returns_by_the_batch_deadline),
        cmocka_unit_test(test_timeout_option_bounds_a_request),
        cmocka_unit_test(test_two_batches_are_in_flight_at_once_on_two_connections),
        cmocka_unit_test(test_connections_1_keeps_one_connection_and_one_batch_in_flight),
        cmocka_unit_test(test_keep_alive_connections_persist_across_async_batches),
        cmocka_unit_test(test_completion_may_submit_on_the_connection_it_frees),
        cmocka_unit_test(test_send_borrows_an_idle_connection_or_waits_until_its_deadline),
        cmocka_unit_test(test_tls_is_verified_by_default),
        cmocka_unit_test(test_tls_with_a_private_ca_file),
        cmocka_unit_test(test_tls_insecure_works_and_warns),
        cmocka_unit_test(test_probe_states),
        cmocka_unit_test(test_probe_of_a_closed_port_is_unreachable),
        cmocka_unit_test(test_cancel_aborts_a_hanging_probe),
        cmocka_unit_test(test_create_refuses_bad_configuration),
        cmocka_unit_test(test_insecure_and_unknown_options_are_warned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
