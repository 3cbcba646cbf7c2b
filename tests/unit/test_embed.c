/*
 * The embedding API (include/spec-kitty/sync.h) as a host program uses it:
 * the service runs in a thread of this process, an sk_emit is delivered
 * without any sync call, sk_service_stop returns within its deadline, and
 * sk_sync_cancel from another thread ends an sk_sync_now stuck in the transport.
 */
#include "testutil.h"

#include <spec-kitty/sync.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static sk_sync *open_with_scripted(const char *root, const char *options)
{
    char path[1024], config[2048];
    snprintf(path, sizeof path, "%s/sync.json", root);
    snprintf(config, sizeof config,
             "{\"transport\": {\"plugin\": \"%s/scripted.so\", \"options\": %s},"
             " \"schedule\": {\"min_batch_interval_ms\": 0, \"shutdown_deadline_ms\": 200}}",
             getenv("SK_TEST_PLUGIN_DIR"), options);
    sk_test_write_file(path, config);
    sk_sync *s = NULL;
    char err[512] = "";
    if (sk_open(root, &s, err, sizeof err) != SK_OK)
        fail_msg("sk_open: %s", err);
    return s;
}

static int64_t queued(sk_sync *s)
{
    sk_queue_info qi;
    assert_int_equal(sk_queue_info_get(s, &qi), SK_OK);
    return qi.size;
}

static void embedded_service_delivers_an_emit_without_a_sync_call(void **state)
{
    (void)state;
    char *root = sk_test_mkdtemp();
    sk_sync *s = open_with_scripted(root, "{}");
    assert_int_equal(sk_service_start(s, 0), SK_OK);
    assert_int_equal(sk_service_start(s, 0), SK_ERR_BUSY); /* one per handle */
    char id[27];
    assert_int_equal(sk_emit(s, "FeatureCompleted", "f1", NULL,
                             "{\"feature_slug\":\"f1\",\"total_wps\":1}", NULL, id),
                     SK_OK);
    int64_t t0 = mono_ms();
    while (queued(s) > 0 && mono_ms() - t0 < 5000)
        usleep(10 * 1000);
    assert_int_equal(queued(s), 0);
    assert_int_equal(sk_service_stop(s, 1000), SK_OK);
    sk_close(s);
    sk_test_rmtree(root);
    free(root);
}

static void embedded_service_stops_within_its_deadline_and_keeps_events(void **state)
{
    (void)state;
    char *root = sk_test_mkdtemp();
    sk_sync *s = open_with_scripted(root, "{\"hang_ms\": 60000}");
    assert_int_equal(sk_service_start(s, 0), SK_OK);
    char id[27];
    assert_int_equal(sk_emit(s, "FeatureCompleted", "f1", NULL,
                             "{\"feature_slug\":\"f1\",\"total_wps\":1}", NULL, id),
                     SK_OK);
    usleep(300 * 1000); /* the batch is now hanging in the transport */
    int64_t t0 = mono_ms();
    assert_int_equal(sk_service_stop(s, 300), SK_OK);
    assert_true(mono_ms() - t0 < 300 + 1500); /* deadline, then cancel */
    assert_int_equal(queued(s), 1);
    sk_close(s);
    sk_test_rmtree(root);
    free(root);
}

typedef struct canceller {
    sk_sync *s;
    int64_t after_ms;
    int64_t at; /* mono ms when it cancelled */
} canceller;

static void *cancel_later(void *arg)
{
    canceller *c = arg;
    usleep((useconds_t)c->after_ms * 1000);
    c->at = mono_ms();
    sk_sync_cancel(c->s);
    return NULL;
}

static void emit_one(sk_sync *s)
{
    char id[27];
    assert_int_equal(sk_emit(s, "FeatureCompleted", "f1", NULL,
                             "{\"feature_slug\":\"f1\",\"total_wps\":1}", NULL, id),
                     SK_OK);
}

static void cancel_from_another_thread_ends_a_hanging_sync_now_and_keeps_events(void **state)
{
    (void)state;
    char *root = sk_test_mkdtemp();
    sk_sync *s = open_with_scripted(root, "{\"hang_ms\": 60000}");
    emit_one(s);
    canceller c = {.s = s, .after_ms = 300};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, cancel_later, &c), 0);
    sk_drain_summary sum;
    assert_int_equal(sk_sync_now(s, NULL, NULL, &sum), SK_ERR_CANCELLED);
    int64_t took = mono_ms() - c.at;
    pthread_join(t, NULL);
    assert_true(took < 1000);
    assert_int_equal(sum.synced, 0);
    assert_int_equal(sum.remaining, 1);
    assert_int_equal(queued(s), 1);
    /* Sticky: the handle delivers nothing more; a new handle does. */
    assert_int_equal(sk_sync_now(s, NULL, NULL, &sum), SK_ERR_CANCELLED);
    assert_int_equal(queued(s), 1);
    sk_close(s);
    sk_test_rmtree(root);
    free(root);
}

static void cancel_before_sync_now_sends_nothing(void **state)
{
    (void)state;
    char *root = sk_test_mkdtemp();
    sk_sync *s = open_with_scripted(root, "{}");
    emit_one(s);
    sk_sync_cancel(s); /* the transport is not loaded yet: the flag alone must hold */
    sk_drain_summary sum;
    assert_int_equal(sk_sync_now(s, NULL, NULL, &sum), SK_ERR_CANCELLED);
    assert_int_equal(sum.batches, 0);
    assert_int_equal(queued(s), 1);
    sk_close(s);
    s = open_with_scripted(root, "{}");
    assert_int_equal(sk_sync_now(s, NULL, NULL, &sum), SK_OK);
    assert_int_equal(queued(s), 0);
    sk_close(s);
    sk_test_rmtree(root);
    free(root);
}

static void sync_now_honours_a_retry_after_an_earlier_pass_was_told(void **state)
{
    (void)state;
    char *root = sk_test_mkdtemp();
    sk_sync *s = open_with_scripted(
        root, "{\"steps\": [{\"hints\": [\"retry_after\"], \"retry_after_ms\": 900000}]}");
    emit_one(s);
    sk_drain_summary sum;
    assert_int_equal(sk_sync_now(s, NULL, NULL, &sum), SK_ERR_TRANSPORT);
    assert_int_equal(sum.batches, 1);
    sk_close(s);
    /* A new handle (another process, a later run) reads the wait from the state root. */
    s = open_with_scripted(root, "{}");
    int64_t t0 = mono_ms();
    assert_int_equal(sk_sync_now(s, NULL, NULL, &sum), SK_ERR_TRANSPORT);
    assert_true(mono_ms() - t0 < 5000); /* not waited out: far beyond what a pass waits */
    assert_int_equal(sum.batches, 0);
    assert_int_equal(sum.remaining, 1);
    assert_true(sum.retry_after_ms > 890000 && sum.retry_after_ms <= 900000);
    assert_non_null(strstr(sum.stop_reason, "the server asked to wait"));
    assert_int_equal(queued(s), 1);
    sk_close(s);
    sk_test_rmtree(root);
    free(root);
}

static void a_service_stopped_over_its_socket_leaves_sync_now_to_drain_locally(void **state)
{
    (void)state;
    char *root = sk_test_mkdtemp();
    sk_sync *s = open_with_scripted(root, "{}");
    assert_int_equal(sk_service_start(s, 1), SK_OK);
    long pid = 0;
    char err[512] = "";
    assert_int_equal(sk_service_shutdown(root, 3000, &pid, err, sizeof err), SK_OK);
    assert_int_equal(pid, (long)getpid());
    emit_one(s);
    alarm(30); /* a `now` sent to the stopped service would wait for ever */
    sk_drain_summary sum;
    assert_int_equal(sk_sync_now(s, NULL, NULL, &sum), SK_OK);
    alarm(0);
    assert_int_equal(sum.synced, 1);
    assert_int_equal(queued(s), 0);
    assert_int_equal(sk_service_stop(s, 1000), SK_OK);
    sk_close(s);
    sk_test_rmtree(root);
    free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(embedded_service_delivers_an_emit_without_a_sync_call),
        cmocka_unit_test(embedded_service_stops_within_its_deadline_and_keeps_events),
        cmocka_unit_test(cancel_from_another_thread_ends_a_hanging_sync_now_and_keeps_events),
        cmocka_unit_test(cancel_before_sync_now_sends_nothing),
        cmocka_unit_test(sync_now_honours_a_retry_after_an_earlier_pass_was_told),
        cmocka_unit_test(a_service_stopped_over_its_socket_leaves_sync_now_to_drain_locally),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
