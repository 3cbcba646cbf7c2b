/*
 * The control protocol, both sides: a real unix socket under a scratch state
 * root, the client verbs of control.c against a peer that answers with the
 * server encoders of control.c, line by line.
 */
#include "testutil.h"

#include "control.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* A one-client service stand-in: accepts, reads one request, runs the script. */
typedef struct peer {
    char *root;
    int listen_fd;
    sk__control_verb got;    /* the verb of the first request */
    sk__control_verb second; /* the verb of a second request, if the script reads one */
    int script;              /* what to answer, see serve() */
    pthread_t thread;
} peer;

enum { ANSWER_STATUS, ANSWER_NOW_BUSY, ANSWER_NOW_WITH_PROGRESS, WAIT_FOR_CANCEL, SAY_NOTHING };

static void *serve(void *arg)
{
    peer *p = arg;
    int fd;
    while ((fd = accept(p->listen_fd, NULL, NULL)) < 0)
        usleep(1000);
    sk__line_reader r = {.len = 0};
    json_t *msg = NULL;
    sk__err err;
    if (sk__control_recv(fd, &r, 5000, -1, &msg, &err) != SK_OK)
        goto done;
    p->got = sk__control_verb_of(msg);
    json_decref(msg);
    if (p->script == ANSWER_STATUS) {
        sk__service_status st = {.pid = 4242, .uptime_s = 61, .consecutive_failures = 2,
                                 .busy = 1, .queue_size = 7, .metric_count = 2};
        snprintf(st.connection, sizeof st.connection, "Reconnecting");
        snprintf(st.last_error, sizeof st.last_error, "HTTP 503");
        snprintf(st.next_attempt, sizeof st.next_attempt, "2026-11-25T09:18:44.123Z");
        snprintf(st.metrics[0].name, sizeof st.metrics[0].name, "requests");
        st.metrics[0].value = 12;
        snprintf(st.metrics[1].name, sizeof st.metrics[1].name, "bytes_sent");
        st.metrics[1].value = 34567;
        sk__control_answer_status(fd, &st, &err);
    } else if (p->script == ANSWER_NOW_BUSY) {
        sk__control_answer_error(fd, SK_ERR_BUSY, "another `sync now` is already draining", &err);
    } else if (p->script == ANSWER_NOW_WITH_PROGRESS) {
        sk_drain_summary sum = {.synced = 3, .batches = 1};
        sk__control_progress(fd, &sum, 10, &err);
        sum = (sk_drain_summary){.synced = 9, .rejected = 1, .batches = 2};
        json_t *failures = json_array();
        json_array_append_new(failures,
                              sk__control_failure_json("01J0000000000000000000000A", "T",
                                                       "rejected", "bad payload"));
        sk__control_answer_now(fd, SK_OK, &sum, failures, "", &err);
        json_decref(failures);
    } else if (p->script == SAY_NOTHING) { /* takes the request, then waits for the hang-up */
        sk__control_recv(fd, &r, 20000, -1, &msg, &err);
        json_decref(msg);
    } else { /* WAIT_FOR_CANCEL: a pass that ends only when its client cancels */
        if (sk__control_recv(fd, &r, 5000, -1, &msg, &err) == SK_OK) {
            p->second = sk__control_verb_of(msg);
            json_decref(msg);
            sk_drain_summary none = {0};
            json_t *failures = json_array();
            sk__control_answer_now(fd, SK_ERR_CANCELLED, &none, failures, "cancelled", &err);
            json_decref(failures);
        }
    }
done:
    close(fd);
    return NULL;
}

static peer *start_peer(int script)
{
    peer *p = calloc(1, sizeof *p);
    p->root = sk_test_mkdtemp();
    p->script = script;
    sk__err err = {{0}};
    assert_int_equal(sk__control_listen(p->root, &p->listen_fd, &err), SK_OK);
    assert_int_equal(pthread_create(&p->thread, NULL, serve, p), 0);
    return p;
}

static void stop_peer(peer *p)
{
    pthread_join(p->thread, NULL);
    close(p->listen_fd);
    sk_test_rmtree(p->root);
    free(p->root);
    free(p);
}

static void status_round_trips_every_field_and_the_transport_counters(void **state)
{
    (void)state;
    peer *p = start_peer(ANSWER_STATUS);
    sk__service_status st;
    sk__err err = {{0}};
    assert_int_equal(sk__control_status(p->root, &st, &err), SK_OK);
    stop_peer(p);
    assert_int_equal(st.pid, 4242);
    assert_int_equal(st.uptime_s, 61);
    assert_string_equal(st.connection, "Reconnecting");
    assert_int_equal(st.consecutive_failures, 2);
    assert_string_equal(st.last_error, "HTTP 503");
    assert_string_equal(st.next_attempt, "2026-11-25T09:18:44.123Z");
    assert_string_equal(st.last_sync, "");
    assert_true(st.busy);
    assert_int_equal(st.queue_size, 7);
    assert_int_equal(st.metric_count, 2);
    int requests = -1, bytes = -1;
    for (int i = 0; i < st.metric_count; i++) {
        if (strcmp(st.metrics[i].name, "requests") == 0)
            requests = (int)st.metrics[i].value;
        if (strcmp(st.metrics[i].name, "bytes_sent") == 0)
            bytes = (int)st.metrics[i].value;
    }
    assert_int_equal(requests, 12);
    assert_int_equal(bytes, 34567);
}

typedef struct seen {
    int progress_calls;
    int64_t last_total, last_synced;
    int failures;
    char reason[64];
} seen;

static void on_progress(void *ctx, const sk_drain_summary *so_far, int64_t total)
{
    seen *s = ctx;
    s->progress_calls++;
    s->last_total = total;
    s->last_synced = so_far->synced;
}

static void on_failure(void *ctx, const char *id, const char *type, const char *outcome,
                       const char *reason)
{
    (void)id, (void)type;
    seen *s = ctx;
    s->failures++;
    snprintf(s->reason, sizeof s->reason, "%s %s", outcome, reason);
}

static void now_relays_progress_then_the_summary_and_each_failure(void **state)
{
    (void)state;
    peer *p = start_peer(ANSWER_NOW_WITH_PROGRESS);
    seen s = {0};
    sk_drain_hooks h = {.progress = on_progress, .failure = on_failure, .ctx = &s};
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(sk__control_now(p->root, -1, &h, &sum, &err), SK_OK);
    stop_peer(p);
    assert_int_equal(s.progress_calls, 1);
    assert_int_equal(s.last_total, 10);
    assert_int_equal(s.last_synced, 3);
    assert_int_equal(sum.synced, 9);
    assert_int_equal(sum.rejected, 1);
    assert_int_equal(sum.batches, 2);
    assert_int_equal(s.failures, 1);
    assert_string_equal(s.reason, "rejected bad payload");
}

static void a_refusal_reaches_the_client_as_its_status_code(void **state)
{
    (void)state;
    peer *p = start_peer(ANSWER_NOW_BUSY);
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(sk__control_now(p->root, -1, NULL, &sum, &err), SK_ERR_BUSY);
    assert_int_equal(p->got, SK__VERB_NOW);
    stop_peer(p);
    assert_non_null(strstr(sum.stop_reason, "already draining"));
}

static void a_cancelled_client_asks_the_service_and_gets_its_answer(void **state)
{
    (void)state;
    peer *p = start_peer(WAIT_FOR_CANCEL);
    int cancel[2];
    assert_int_equal(pipe(cancel), 0);
    assert_int_equal(write(cancel[1], "c", 1), 1); /* cancelled before the service answered */
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(sk__control_now(p->root, cancel[0], NULL, &sum, &err), SK_ERR_CANCELLED);
    pthread_join(p->thread, NULL);
    p->thread = pthread_self();
    assert_int_equal(p->got, SK__VERB_NOW);
    assert_int_equal(p->second, SK__VERB_CANCEL);
    close(p->listen_fd);
    sk_test_rmtree(p->root);
    free(p->root);
    free(p);
    close(cancel[0]);
    close(cancel[1]);
}

static void a_service_that_never_answers_now_is_an_error_not_a_hang(void **state)
{
    (void)state;
    peer *p = start_peer(SAY_NOTHING);
    sk_drain_summary sum;
    sk__err err = {{0}};
    int64_t t0 = sk__mono_ms();
    assert_int_equal(sk__control_now(p->root, -1, NULL, &sum, &err), SK_ERR_TRANSPORT);
    assert_true(sk__mono_ms() - t0 < 15000);
    assert_non_null(strstr(err.msg, "did not answer"));
    stop_peer(p);
}

static void a_request_that_cannot_be_sent_finds_no_service(void **state)
{
    (void)state;
    char *root = sk_test_mkdtemp();
    char longroot[400];
    snprintf(longroot, sizeof longroot, "%s/%0200d", root, 0); /* beyond sun_path */
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(sk__control_now(longroot, -1, NULL, &sum, &err), SK_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "too long"));
    sk_test_rmtree(root);
    free(root);
}

static void no_service_is_not_found_and_a_foreign_socket_is_not_trusted(void **state)
{
    (void)state;
    char *root = sk_test_mkdtemp();
    sk__service_status st;
    sk__err err = {{0}};
    assert_int_equal(sk__control_status(root, &st, &err), SK_ERR_NOT_FOUND);
    int fd;
    assert_int_equal(sk__control_listen(root, &fd, &err), SK_OK);
    char path[1200];
    snprintf(path, sizeof path, "%s/" SK__CONTROL_SOCKET, root);
    assert_int_equal(chmod(path, 0666), 0);
    assert_int_equal(sk__control_status(root, &st, &err), SK_ERR_PERMISSION);
    assert_non_null(strstr(err.msg, "not trusted"));
    close(fd);
    sk_test_rmtree(root);
    free(root);
}

static void verbs_are_recognised_and_anything_else_is_unknown(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        sk__control_verb verb;
    } cases[] = {{"{\"cmd\":\"poke\"}", SK__VERB_POKE},     {"{\"cmd\":\"status\"}", SK__VERB_STATUS},
                 {"{\"cmd\":\"now\"}", SK__VERB_NOW},       {"{\"cmd\":\"cancel\"}", SK__VERB_CANCEL},
                 {"{\"cmd\":\"stop\"}", SK__VERB_STOP},     {"{\"cmd\":\"STOP\"}", SK__VERB_UNKNOWN},
                 {"{\"cmd\":7}", SK__VERB_UNKNOWN},         {"{}", SK__VERB_UNKNOWN}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *msg = json_loads(cases[i].text, 0, NULL);
        assert_int_equal(sk__control_verb_of(msg), cases[i].verb);
        json_decref(msg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(status_round_trips_every_field_and_the_transport_counters),
        cmocka_unit_test(now_relays_progress_then_the_summary_and_each_failure),
        cmocka_unit_test(a_refusal_reaches_the_client_as_its_status_code),
        cmocka_unit_test(a_cancelled_client_asks_the_service_and_gets_its_answer),
        cmocka_unit_test(a_service_that_never_answers_now_is_an_error_not_a_hang),
        cmocka_unit_test(a_request_that_cannot_be_sent_finds_no_service),
        cmocka_unit_test(no_service_is_not_found_and_a_foreign_socket_is_not_trusted),
        cmocka_unit_test(verbs_are_recognised_and_anything_else_is_unknown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
