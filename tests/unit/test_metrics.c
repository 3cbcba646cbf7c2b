/* Metrics: counters kept in metrics.db across processes, and their Prometheus text. */
#include "testutil.h"

#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* 2026-11-25T09:18:44.000Z */
#define T0 INT64_C(1795598324000)

static int setup(void **state)
{
    *state = sk_test_mkdtemp();
    return 0;
}

static int teardown(void **state)
{
    sk_test_rmtree(*state);
    free(*state);
    return 0;
}

static sk__metrics *open_in(const char *root)
{
    sk__metrics *m = NULL;
    sk__err err = {{0}};
    assert_int_equal(sk__metrics_open(root, &m, &err), SK_OK);
    return m;
}

/* Renders what root's counters hold with the given gauges. */
static char *render_root(const char *root, const sk__metrics_gauges *g)
{
    sk__metrics *m = open_in(root);
    sk__metrics_counts c;
    sk__err err = {{0}};
    assert_int_equal(sk__metrics_load(m, &c, &err), SK_OK);
    char *text = sk__metrics_render(&c, g);
    assert_non_null(text);
    sk__metrics_counts_free(&c);
    sk__metrics_close(m);
    return text;
}

static void assert_line(const char *text, const char *line)
{
    char *want = malloc(strlen(line) + 3);
    assert_non_null(want);
    sprintf(want, "\n%s\n", line);
    if (!strstr(text, want))
        fail_msg("no line \"%s\" in:\n%s", line, text);
    free(want);
}

static void test_batches_add_up_across_handles(void **state)
{
    const char *root = *state;
    int64_t enq[] = {T0 / 1000 - 2, T0 / 1000 - 100, T0 / 1000 - 7200};
    sk__metrics_batch b = {.delivered = 2,
                           .duplicates = 1,
                           .rejected = 4,
                           .parked = 1,
                           .enqueued_s = enq,
                           .acknowledged = 3,
                           .now_ms = T0};
    sk__metrics_transport t[] = {{"http-batch", "bytes_sent", 1000, 1},
                                 {"http-batch", "reconnects", 1, 1},
                                 {"http-batch", "requests", 1, 1}};
    sk__err err = {{0}};
    /* Two processes, each with its own handle on the same file. */
    sk__metrics *a = open_in(root), *b2 = open_in(root);
    assert_int_equal(sk__metrics_record(a, &b, t, 3, &err), SK_OK);
    sk__metrics_batch failed = {.failed = 1, .now_ms = T0};
    assert_int_equal(sk__metrics_record(b2, &failed, t + 2, 1, &err), SK_OK);
    sk__metrics_close(a);
    sk__metrics_close(b2);

    sk__metrics_gauges g = {.queue_events = 5, .parked_events = 1, .oldest_age_s = 30};
    char *text = render_root(root, &g);
    assert_line(text, "spec_kitty_sync_queue_events 5");
    assert_line(text, "spec_kitty_sync_oldest_event_age_seconds 30");
    assert_line(text, "spec_kitty_sync_events_delivered_total 2");
    assert_line(text, "spec_kitty_sync_events_duplicate_total 1");
    assert_line(text, "spec_kitty_sync_events_rejected_total 4");
    assert_line(text, "spec_kitty_sync_events_parked_total 1");
    assert_line(text, "spec_kitty_sync_batches_total 2");
    assert_line(text, "spec_kitty_sync_retries_total 1");
    assert_line(text, "spec_kitty_sync_sent_bytes_total 1000");
    assert_line(text, "spec_kitty_sync_reconnects_total 1");
    assert_line(text, "spec_kitty_sync_transport_requests_total{transport=\"http-batch\"} 2");
    assert_line(text, "# TYPE spec_kitty_sync_transport_bytes_sent_total counter");
    /* 2 s, 100 s and 2 h: the buckets are cumulative. */
    assert_line(text, "spec_kitty_sync_delivery_latency_seconds_bucket{le=\"1\"} 0");
    assert_line(text, "spec_kitty_sync_delivery_latency_seconds_bucket{le=\"5\"} 1");
    assert_line(text, "spec_kitty_sync_delivery_latency_seconds_bucket{le=\"300\"} 2");
    assert_line(text, "spec_kitty_sync_delivery_latency_seconds_bucket{le=\"21600\"} 3");
    assert_line(text, "spec_kitty_sync_delivery_latency_seconds_bucket{le=\"+Inf\"} 3");
    assert_line(text, "spec_kitty_sync_delivery_latency_seconds_sum 7302.000");
    assert_line(text, "spec_kitty_sync_delivery_latency_seconds_count 3");
    assert_line(text, "spec_kitty_sync_service_up 0");
    free(text);
}

static void test_refused_full_counts_and_keeps_the_last_time(void **state)
{
    const char *root = *state;
    sk__metrics *m = open_in(root);
    sk__err err = {{0}};
    assert_int_equal(sk__metrics_refused_full(m, 3, T0 + 5000, &err), SK_OK);
    /* A process whose clock lags does not move the last time back. */
    assert_int_equal(sk__metrics_refused_full(m, 1, T0, &err), SK_OK);
    sk__metrics_counts c;
    assert_int_equal(sk__metrics_load(m, &c, &err), SK_OK);
    assert_int_equal(c.refused_full, 4);
    assert_int_equal(c.refused_full_last_ms, T0 + 5000);
    sk__metrics_counts_free(&c);
    sk__metrics_close(m);
    sk__metrics_gauges g = {.service_up = 1, .service_uptime_s = 42};
    char *text = render_root(root, &g);
    assert_line(text, "spec_kitty_sync_events_refused_full_total 4");
    assert_line(text, "spec_kitty_sync_last_refused_full_timestamp_seconds 1795598329.000");
    assert_line(text, "spec_kitty_sync_service_uptime_seconds 42");
    free(text);
}

static void test_transport_running_totals_count_their_growth_once(void **state)
{
    const char *root = *state;
    sk__metrics *m = open_in(root);
    sk__metrics_batch b = {.now_ms = T0};
    sk__err err = {{0}};
    sk__metrics_transport t = {"http-batch", "bytes_sent", 1000, 1};
    assert_int_equal(sk__metrics_record(m, &b, &t, 1, &err), SK_OK);
    t.value = 1500; /* the same plugin instance, 500 more */
    assert_int_equal(sk__metrics_record(m, &b, &t, 1, &err), SK_OK);
    assert_int_equal(sk__metrics_record(m, &b, &t, 1, &err), SK_OK); /* nothing new */
    t.value = 1200; /* fell in the same instance (a level sent as a counter): nothing */
    assert_int_equal(sk__metrics_record(m, &b, &t, 1, &err), SK_OK);
    t.value = 1600; /* past the highest seen: 100 more */
    assert_int_equal(sk__metrics_record(m, &b, &t, 1, &err), SK_OK);
    t = (sk__metrics_transport){"http-batch", "bytes_sent", 2000, 2}; /* loaded again: from 0 */
    assert_int_equal(sk__metrics_record(m, &b, &t, 1, &err), SK_OK);
    sk__metrics_counts c;
    assert_int_equal(sk__metrics_load(m, &c, &err), SK_OK);
    assert_int_equal(c.ntransport, 1);
    assert_int_equal(c.transport[0].value, 3600);
    assert_int_equal(c.batches, 6);
    sk__metrics_counts_free(&c);
    sk__metrics_close(m);
}

static void test_transport_names_and_labels_are_escaped(void **state)
{
    const char *root = *state;
    sk__metrics *m = open_in(root);
    sk__metrics_transport t[] = {{"my\"plug\\in", "Queue-Depth.max", 7, 1}};
    sk__metrics_batch b = {.now_ms = T0};
    sk__err err = {{0}};
    assert_int_equal(sk__metrics_record(m, &b, t, 1, &err), SK_OK);
    sk__metrics_close(m);
    sk__metrics_gauges g = {0};
    char *text = render_root(root, &g);
    assert_line(
        text, "spec_kitty_sync_transport_queue_depth_max_total{transport=\"my\\\"plug\\\\in\"} 7");
    free(text);
}

static void test_textfile_is_replaced_whole_and_world_readable(void **state)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/sk.prom", (const char *)*state);
    sk__err err = {{0}};
    assert_int_equal(sk__metrics_write_textfile(path, "a 1\n", &err), SK_OK);
    assert_int_equal(sk__metrics_write_textfile(path, "a 2\n", &err), SK_OK);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(sk__read_file(path, &text, &len, &err), SK_OK);
    assert_string_equal(text, "a 2\n");
    free(text);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    /* A folder that is not there: one line naming the file. */
    snprintf(path, sizeof path, "%s/missing/sk.prom", (const char *)*state);
    assert_int_not_equal(sk__metrics_write_textfile(path, "a 1\n", &err), SK_OK);
    assert_non_null(strstr(err.msg, "missing"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_batches_add_up_across_handles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_full_counts_and_keeps_the_last_time, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_transport_running_totals_count_their_growth_once,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_transport_names_and_labels_are_escaped, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_textfile_is_replaced_whole_and_world_readable, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
