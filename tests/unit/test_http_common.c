/*
 * http-common: the request body and the mapping of the server's answers
 * (CONTRACT.md §3) that http-batch and h2-stream share. Pure functions, so
 * every answer shape is tested here without a server; each plugin's own test
 * checks that its answers go through this mapping.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fakehost.h"
#include "testutil.h"

/* peer_decode (gunzip + JSON) checks the body the way the scripted peer does. */
#include "http_peer.c"

#include "http_common.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void test_wire_retry_after_forms(void **state)
{
    (void)state;
    int64_t ms = -1;
    time_t now = 1764147600; /* Wed, 26 Nov 2025 09:00:00 GMT */
    assert_int_equal(hc_retry_after_ms("120", now, &ms), 0);
    assert_int_equal(ms, 120000);
    assert_int_equal(hc_retry_after_ms("  0 ", now, &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(hc_retry_after_ms("Wed, 26 Nov 2025 09:01:30 GMT", now, &ms), 0);
    assert_int_equal(ms, 90000);
    assert_int_equal(hc_retry_after_ms("Wed, 26 Nov 2025 08:00:00 GMT", now, &ms), 0);
    assert_int_equal(ms, 0); /* in the past: retry now */
    assert_int_equal(hc_retry_after_ms("Sun, 06 Nov 2033 08:49:37 GMT", now, &ms), 0);
    assert_int_equal(ms, HC_RETRY_AFTER_CAP_MS);
    assert_int_equal(hc_retry_after_ms("99999999999999999999999", now, &ms), 0);
    assert_int_equal(ms, HC_RETRY_AFTER_CAP_MS);
    assert_int_equal(hc_retry_after_ms("soon", now, &ms), -1);
    assert_int_equal(hc_retry_after_ms("", now, &ms), -1);
    assert_int_equal(hc_retry_after_ms("-5", now, &ms), -1);
    assert_int_equal(hc_retry_after_ms(NULL, now, &ms), -1);
}

static void test_wire_retry_after_obsolete_date_forms(void **state)
{
    (void)state;
    int64_t ms = -1;
    time_t now = 1764147600; /* Wed, 26 Nov 2025 09:00:00 GMT */
    /* RFC 9110 asks a recipient to accept RFC 850 and asctime dates too. */
    assert_int_equal(hc_retry_after_ms("Wednesday, 26-Nov-25 09:00:45 GMT", now, &ms), 0);
    assert_int_equal(ms, 45000);
    assert_int_equal(hc_retry_after_ms("Wed Nov 26 09:02:00 2025", now, &ms), 0);
    assert_int_equal(ms, 120000);
    assert_int_equal(hc_retry_after_ms("Wed, 26 Nov 2025 09:01:30 CET", now, &ms), -1);
    assert_int_equal(hc_retry_after_ms("Wed, 26 Foo 2025 09:01:30 GMT", now, &ms), -1);
    assert_int_equal(hc_retry_after_ms("Wed, 26 Nov 2025 09:01:30 GMT x", now, &ms), -1);
    assert_int_equal(hc_retry_after_ms("Wed, 26 Nov 2025 25:01:30 GMT", now, &ms), -1);
}

static void test_wire_gzip_round_trips_large_batches(void **state)
{
    (void)state;
    sk_tbatch *t = sk_tbatch_new(1000, 5000);
    hc_buf out = {0};
    for (int level = 0; level <= 9; level += 9) {
        assert_int_equal(hc_gzip_events(&t->batch, level, &out), 0);
        sk_peer_request req = {.body = out.data, .body_len = out.len};
        peer_decode(&req, 1);
        assert_false(req.gunzip_failed);
        json_error_t jerr;
        json_t *doc = json_loadb(req.plain, req.plain_len, 0, &jerr);
        assert_non_null(doc);
        assert_int_equal(json_array_size(json_object_get(doc, "events")), 1000);
        assert_non_null(memmem(req.plain, req.plain_len, t->json[999], t->events[999].json_len));
        json_decref(doc);
        free(req.plain);
    }
    hc_buf_free(&out);
    sk_tbatch_free(t);
}

static void test_wire_maps_results_in_any_order(void **state)
{
    (void)state;
    sk_tbatch *t = sk_tbatch_new(1000, 5000);
    hc_buf body = {0};
    hc_buf_append(&body, "{\"results\":[", 12);
    for (int i = 999; i >= 0; i--) {
        char entry[128];
        int n = snprintf(entry, sizeof entry, "%s{\"event_id\":\"%s\",\"status\":\"%s\"}",
                         i == 999 ? "" : ",", t->ids[i], i % 2 ? "duplicate" : "success");
        hc_buf_append(&body, entry, (size_t)n);
    }
    hc_buf_append(&body, "]}", 2);
    hc_answer a = {200, (const char *)body.data, body.len, NULL, NULL, 0};
    assert_int_equal(hc_map_answer(&a, &t->batch, &t->result), SK_TRANSPORT_OK);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(t->res[i].outcome, i % 2 ? SK_OUTCOME_DUPLICATE : SK_OUTCOME_DELIVERED);
    assert_string_equal(t->result.detail, "");
    hc_buf_free(&body);
    sk_tbatch_free(t);
}

/* An answer in the batch's order, but for two entries swapped, one missing and
   one naming an event not sent: each entry reaches its own event whether it
   stands in its place or not. */
static void test_wire_maps_results_in_order_with_some_out_of_place(void **state)
{
    (void)state;
    sk_tbatch *t = sk_tbatch_new(1000, 5000);
    hc_buf body = {0};
    hc_buf_append(&body, "{\"results\":[", 12);
    for (int k = 0; k < 1000; k++) {
        int i = k == 10 ? 501 : k == 501 ? 10 : k;
        const char *id = k == 700 ? "01J0STRANGER0000000000000" : t->ids[i];
        char entry[128];
        int n = snprintf(entry, sizeof entry, "%s{\"event_id\":\"%s\",\"status\":\"%s\"}",
                         k ? "," : "", id, i % 2 ? "duplicate" : "success");
        hc_buf_append(&body, entry, (size_t)n);
    }
    hc_buf_append(&body, "]}", 2);
    hc_answer a = {200, (const char *)body.data, body.len, NULL, NULL, 0};
    assert_int_equal(hc_map_answer(&a, &t->batch, &t->result), SK_TRANSPORT_OK);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(t->res[i].outcome, i == 700 ? SK_OUTCOME_TRANSIENT
                                            : i % 2  ? SK_OUTCOME_DUPLICATE
                                                     : SK_OUTCOME_DELIVERED);
    assert_string_equal(t->result.detail, "HTTP 200: 1 of 1000 events missing from the results "
                                          "or with an unknown status; 1 results name events "
                                          "not sent");
    hc_buf_free(&body);
    sk_tbatch_free(t);
}

/* A 200 whose body is one JSON object or array in valid UTF-8 maps entry by
   entry; anything else (bad UTF-8, bytes after the value, a bare string) is
   no answer: every event stays transient, the detail says non-JSON. */
static void test_wire_only_a_whole_valid_json_body_is_an_answer(void **state)
{
    (void)state;
    sk_tbatch *t = sk_tbatch_new(2, 5000);
    char ok[512], bad[4][600];
#define ENTRIES "[{\"event_id\":\"%s\",\"status\":\"success\",\"error_message\":\"%s\"}," \
                "{\"event_id\":\"%s\",\"status\":\"duplicate\"}]"
    snprintf(ok, sizeof ok, ENTRIES, t->ids[0], "caf\xc3\xa9", t->ids[1]);
    snprintf(bad[0], sizeof bad[0], ENTRIES, t->ids[0], "caf\xe9", t->ids[1]); /* Latin-1 */
    snprintf(bad[1], sizeof bad[1], ENTRIES, t->ids[0], "\xed\xa0\x80", t->ids[1]); /* surrogate */
#undef ENTRIES
    snprintf(bad[2], sizeof bad[2], "%s]", ok);
    snprintf(bad[3], sizeof bad[3], "\"%s\"", t->ids[0]);
    hc_answer a = {200, ok, strlen(ok), NULL, NULL, 0};
    assert_int_equal(hc_map_answer(&a, &t->batch, &t->result), SK_TRANSPORT_OK);
    assert_int_equal(t->res[0].outcome, SK_OUTCOME_DELIVERED);
    assert_int_equal(t->res[1].outcome, SK_OUTCOME_DUPLICATE);
    for (int i = 0; i < 4; i++) {
        a.body = bad[i];
        a.body_len = strlen(bad[i]);
        assert_int_equal(hc_map_answer(&a, &t->batch, &t->result), SK_TRANSPORT_FAILED);
        assert_int_equal(t->res[0].outcome, SK_OUTCOME_TRANSIENT);
        assert_int_equal(t->res[1].outcome, SK_OUTCOME_TRANSIENT);
        assert_non_null(strstr(t->result.detail, "non-JSON answer without a results list"));
    }
    /* Whitespace after the value is still one value. */
    snprintf(bad[0], sizeof bad[0], "%s \r\n", ok);
    a.body = bad[0];
    a.body_len = strlen(bad[0]);
    assert_int_equal(hc_map_answer(&a, &t->batch, &t->result), SK_TRANSPORT_OK);
    assert_int_equal(t->res[1].outcome, SK_OUTCOME_DUPLICATE);
    sk_tbatch_free(t);
}

static void test_wire_messages_are_one_line_and_cut_on_utf8_boundaries(void **state)
{
    (void)state;
    sk_tbatch *t = sk_tbatch_new(1, 5000);
    /* 300 two-byte characters: the 256-byte message must end on a whole one. */
    char msg[1024] = "";
    for (int i = 0; i < 300; i++)
        strcat(msg, "\xc3\xa9");
    char body[2048];
    snprintf(body, sizeof body,
             "{\"results\":[{\"event_id\":\"%s\",\"status\":\"rejected\","
             "\"error_message\":\"line1\\nline2 %s\"}]}",
             t->ids[0], msg);
    hc_answer a = {200, body, strlen(body), NULL, NULL, 0};
    assert_int_equal(hc_map_answer(&a, &t->batch, &t->result), SK_TRANSPORT_OK);
    const char *m = t->res[0].message;
    assert_int_equal(strncmp(m, "line1 line2 ", 12), 0);
    assert_null(strchr(m, '\n'));
    size_t len = strlen(m);
    assert_true(len < SK_EVENT_MESSAGE_MAX);
    assert_int_equal((len - 12) % 2, 0); /* whole é characters only */
    assert_int_equal((unsigned char)m[len - 1], 0xa9);
    sk_tbatch_free(t);
}

static void test_wire_redact(void **state)
{
    (void)state;
    char text[128] = "a abcdefgh b abcdefghabcdefgh c";
    hc_redact(text, "abcdefgh");
    assert_string_equal(text, "a *** b ****** c");
    char short_secret[] = "the key is abc";
    hc_redact(short_secret, "abc");
    assert_string_equal(short_secret, "the key is abc");
    hc_redact(short_secret, NULL);
    assert_string_equal(short_secret, "the key is abc");
}

/* A server that quotes the bearer token where the text is cut (the detail
   and the messages have caps) must not leave its first bytes in them. */
static void test_wire_redact_strikes_a_token_cut_at_the_end(void **state)
{
    (void)state;
    static const char token[] = "tok-0123456789abcdef0123456789abcdef";
    sk_tbatch *t = sk_tbatch_new(1, 5000);
    char pad[1200], body[1600];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    /* 401: the server's text is cut to fit the detail, inside the token. */
    snprintf(body, sizeof body, "{\"detail\":\"%.*s %s\"}", SK_BATCH_DETAIL_MAX - 48, pad, token);
    hc_answer a = {401, body, strlen(body), NULL, NULL, 0};
    hc_map_kept_answer(&a, 0, &t->batch, &t->result);
    assert_non_null(strstr(t->result.detail, " tok-0123"));
    hc_redact_result(&t->result, token);
    const char *d = t->result.detail;
    assert_string_equal(d + strlen(d) - 4, " ***");
    /* 200: a rejected event's message is cut inside the token. */
    snprintf(body, sizeof body,
             "{\"results\":[{\"event_id\":\"%s\",\"status\":\"rejected\","
             "\"error_message\":\"%.*s %s\"}]}",
             t->ids[0], SK_EVENT_MESSAGE_MAX - 20, pad, token);
    a = (hc_answer){200, body, strlen(body), NULL, NULL, 0};
    hc_map_kept_answer(&a, 0, &t->batch, &t->result);
    hc_redact_result(&t->result, token);
    const char *m = t->res[0].message;
    assert_string_equal(m + strlen(m) - 4, " ***");
    /* The whole token is struck as before; a text that merely ends like its
       first 7 bytes is left alone. */
    char text[64] = "token tok-0123456789abcdef0123456789abcdef ends tok-012";
    hc_redact(text, token);
    assert_string_equal(text, "token *** ends tok-012");
    sk_tbatch_free(t);
}

static void test_wire_status_table(void **state)
{
    (void)state;
    assert_int_equal(hc_status_outcome("SUCCESS", NULL), SK_OUTCOME_DELIVERED);
    assert_int_equal(hc_status_outcome("rejected", "project_not_admitted"),
                     SK_OUTCOME_REJECTED_PERMANENT);
    assert_int_equal(hc_status_outcome("error", "project_refused"),
                     SK_OUTCOME_REJECTED_PERMANENT);
    assert_int_equal(hc_status_outcome("rejected", "schema"), SK_OUTCOME_REJECTED);
    /* A category alone does not make a delivered event permanent. */
    assert_int_equal(hc_status_outcome("success", "project_refused"), SK_OUTCOME_DELIVERED);
    assert_int_equal(hc_status_outcome(NULL, NULL), SK_OUTCOME_TRANSIENT);
    assert_int_equal(hc_status_outcome("", NULL), SK_OUTCOME_TRANSIENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_retry_after_forms),
        cmocka_unit_test(test_wire_retry_after_obsolete_date_forms),
        cmocka_unit_test(test_wire_gzip_round_trips_large_batches),
        cmocka_unit_test(test_wire_maps_results_in_any_order),
        cmocka_unit_test(test_wire_maps_results_in_order_with_some_out_of_place),
        cmocka_unit_test(test_wire_only_a_whole_valid_json_body_is_an_answer),
        cmocka_unit_test(test_wire_messages_are_one_line_and_cut_on_utf8_boundaries),
        cmocka_unit_test(test_wire_redact),
        cmocka_unit_test(test_wire_redact_strikes_a_token_cut_at_the_end),
        cmocka_unit_test(test_wire_status_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
