/*
 * The embedding API (include/spec-kitty/sync.h) as a host program uses it:
 * the service runs in a thread of this process, an sk_emit is delivered
 * without any sync call, and sk_service_stop returns within its deadline.
 */
#include "testutil.h"

#include <spec-kitty/sync.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(embedded_service_delivers_an_emit_without_a_sync_call),
        cmocka_unit_test(embedded_service_stops_within_its_deadline_and_keeps_events),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
