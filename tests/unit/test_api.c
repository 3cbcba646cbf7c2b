/*
 * The public API as the CLI and embedders use it, with the scripted transport
 * and a real service (in a thread of this process, with its control socket):
 * a drain goes through a running service, status shows the service and its
 * transport's counters, parked events come back with retry, the service is
 * found, stopped, and refused twice.
 */
#include "testutil.h"

#include <spec-kitty/sync.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void write_config(const char *root, const char *options)
{
    char path[1024], config[2048];
    snprintf(path, sizeof path, "%s/sync.json", root);
    snprintf(config, sizeof config,
             "{\"transport\": {\"plugin\": \"%s/scripted.so\", \"options\": %s},"
             " \"schedule\": {\"min_batch_interval_ms\": 0, \"shutdown_deadline_ms\": 200,"
             " \"interval_s\": 3600}}",
             getenv("SK_TEST_PLUGIN_DIR"), options);
    sk_test_write_file(path, config);
}

static sk_sync *open_root(const char *root)
{
    sk_sync *s = NULL;
    char err[512] = "";
    if (sk_open(root, &s, err, sizeof err) != SK_OK)
        fail_msg("sk_open: %s", err);
    return s;
}

static void emit_n(sk_sync *s, int n)
{
    for (int i = 0; i < n; i++) {
        char id[27];
        assert_int_equal(sk_emit(s, "FeatureCompleted", "f1", NULL,
                                 "{\"feature_slug\":\"f1\",\"total_wps\":1}", NULL, id),
                         SK_OK);
    }
}

static int64_t queued(sk_sync *s)
{
    sk_queue_info qi;
    assert_int_equal(sk_queue_info_get(s, &qi), SK_OK);
    return qi.size;
}

/* The service of a root, run by sk_service_run in a thread as `sync daemon run` runs it. */
typedef struct runner {
    const char *root;
    sk_status st;
    long ready_pid;
    char err[512];
    pthread_t thread;
} runner;

static void on_ready(void *ctx, long pid)
{
    __atomic_store_n(&((runner *)ctx)->ready_pid, pid, __ATOMIC_RELEASE);
}

static void *run_service(void *arg)
{
    runner *r = arg;
    sk_service_options o = {.control_socket = 1, .ready = on_ready, .ready_ctx = r};
    r->st = sk_service_run(r->root, &o, r->err, sizeof r->err);
    return NULL;
}

static void start_runner(runner *r, const char *root)
{
    memset(r, 0, sizeof *r);
    r->root = root;
    assert_int_equal(pthread_create(&r->thread, NULL, run_service, r), 0);
    for (int i = 0; i < 500 && !__atomic_load_n(&r->ready_pid, __ATOMIC_ACQUIRE); i++)
        usleep(10 * 1000);
    assert_int_equal(__atomic_load_n(&r->ready_pid, __ATOMIC_ACQUIRE), (long)getpid());
}

static void stop_runner(runner *r)
{
    long pid = 0;
    char err[512] = "";
    assert_int_equal(sk_service_shutdown(r->root, 10000, &pid, err, sizeof err), SK_OK);
    assert_int_equal(pid, (long)getpid());
    pthread_join(r->thread, NULL);
    assert_int_equal(r->st, SK_OK);
}

static void drain_goes_through_a_running_service_and_status_shows_it(void **state)
{
    (void)state;
    char *root = sk_test_mkdtemp();
    write_config(root, "{\"max_events\": 1000}");
    runner r;
    start_runner(&r, root);
    sk_sync *s = open_root(root);
    emit_n(s, 3);
    sk_drain_summary sum;
    int via_service = 0;
    assert_int_equal(sk_sync_drain(s, NULL, &sum, &via_service), SK_OK);
    assert_true(via_service);
    assert_int_equal(queued(s), 0);
    sk_sync_state st;
    assert_int_equal(sk_state_get(s, &st), SK_OK);
    assert_true(st.service_running);
    assert_int_equal(st.service_pid, (long)getpid());
    assert_string_equal(st.connection, "Connected");
    assert_true(st.last_sync[0] != '\0');
    int requests = 0;
    for (int i = 0; i < st.metric_count; i++)
        if (strcmp(st.metrics[i].name, "requests") == 0)
            requests = (int)st.metrics[i].value;
    assert_true(requests >= 1); /* the scripted transport counts its sends */
    sk_close(s);
    stop_runner(&r);
    sk_test_rmtree(root);
    free(root);
}

static void a_second_service_for_a_root_is_refused_busy(void **state)
{
    (void)state;
    char *root = sk_test_mkdtemp();
    write_config(root, "{}");
    runner r;
    start_runner(&r, root);
    long pid = 0;
    char err[512] = "";
    assert_int_equal(sk_service_pid(root, &pid, err, sizeof err), SK_OK);
    assert_int_equal(pid, (long)getpid());
    sk_service_options o = {.control_socket = 1};
    assert_int_equal(sk_service_run(root, &o, err, sizeof err), SK_ERR_BUSY);
    assert_non_null(strstr(err, "already runs"));
    sk_sync *s = open_root(root);
    assert_int_equal(sk_service_start(s, 0), SK_ERR_BUSY);
    sk_close(s);
    stop_runner(&r);
    assert_int_equal(sk_service_pid(root, &pid, err, sizeof err), SK_OK);
    assert_int_equal(pid, 0);
    assert_int_equal(sk_service_shutdown(root, 1000, &pid, err, sizeof err), SK_OK);
    assert_int_equal(pid, 0); /* nothing ran: nothing to stop */
    sk_test_rmtree(root);
    free(root);
}

static void count_failure(void *ctx, const char *event_id, const char *event_type,
                          const char *outcome, const char *reason)
{
    (void)event_id, (void)event_type, (void)reason;
    assert_string_equal(outcome, "parked");
    (*(int *)ctx)++;
}

static void drain_without_a_service_runs_here_and_reports_failures(void **state)
{
    (void)state;
    char *root = sk_test_mkdtemp();
    write_config(root, "{\"steps\": [{\"outcome\": \"permanent\"}]}");
    sk_sync *s = open_root(root);
    emit_n(s, 2);
    int failures = 0;
    sk_drain_hooks h = {.failure = count_failure, .ctx = &failures};
    sk_drain_summary sum;
    int via_service = 1;
    assert_int_equal(sk_sync_drain(s, &h, &sum, &via_service), SK_OK);
    assert_false(via_service);
    assert_int_equal(sum.parked, 2);
    assert_int_equal(failures, 2);
    assert_int_equal(queued(s), 0);
    sk_close(s);
    sk_test_rmtree(root);
    free(root);
}

static int count_parked(void *ctx, const char *event_id, const char *event_type,
                        int64_t timestamp, int64_t retry_count, const char *reason)
{
    (void)event_id, (void)event_type, (void)timestamp, (void)retry_count;
    assert_non_null(reason);
    (*(int *)ctx)++;
    return 0;
}

static void parked_events_are_listed_and_come_back_with_retry(void **state)
{
    (void)state;
    char *root = sk_test_mkdtemp();
    write_config(root, "{\"steps\": [{\"outcome\": \"permanent\"}]}");
    sk_sync *s = open_root(root);
    emit_n(s, 3);
    sk_drain_summary sum;
    assert_int_equal(sk_sync_now(s, NULL, NULL, &sum), SK_OK);
    int parked = 0;
    assert_int_equal(sk_parked_each(s, count_parked, &parked), SK_OK);
    assert_int_equal(parked, 3);
    int64_t moved = 0;
    assert_int_equal(sk_retry_parked(s, NULL, 0, &moved), SK_OK);
    assert_int_equal(moved, 3);
    assert_int_equal(queued(s), 3);
    sk_close(s);
    sk_test_rmtree(root);
    free(root);
}

/* Lines in a file; 0 when it does not exist. */
static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    int n = 0, c;
    while (f && (c = fgetc(f)) != EOF)
        n += c == '\n';
    if (f)
        fclose(f);
    return n;
}

static void expect_connection(sk_sync *s, const char *want)
{
    sk_sync_state st;
    assert_int_equal(sk_state_get(s, &st), SK_OK);
    assert_string_equal(st.connection, want);
}

static void streaming_transport_falls_back_and_comes_back_when_its_probe_connects(void **state)
{
    (void)state;
    char *root = sk_test_mkdtemp();
    const char *dir = getenv("SK_TEST_PLUGIN_DIR");
    char path[1024], config[4096], online[1024], streamed[1024], batched[1024];
    snprintf(online, sizeof online, "%s/online", root);
    snprintf(streamed, sizeof streamed, "%s/streamed", root);
    snprintf(batched, sizeof batched, "%s/batched", root);
    snprintf(path, sizeof path, "%s/sync.json", root);
    snprintf(config, sizeof config,
             "{\"transport\": {\"plugin\": \"%s/scripted_stream.so\","
             " \"fallback\": \"%s/scripted.so\", \"fallback_after\": 2,"
             " \"options\": {\"online_file\": \"%s\", \"stream_record\": \"%s\","
             " \"record\": \"%s\"}}}",
             dir, dir, online, streamed, batched);
    sk_test_write_file(path, config);
    sk_sync *s = open_root(root);
    emit_n(s, 3);
    sk_drain_summary sum;
    /* The stand-in server is down: two failed passes, then the fallback takes over. */
    assert_int_not_equal(sk_sync_now(s, NULL, NULL, &sum), SK_OK);
    expect_connection(s, "Offline");
    assert_int_not_equal(sk_sync_now(s, NULL, NULL, &sum), SK_OK);
    expect_connection(s, "OfflineBatchMode");
    assert_int_equal(queued(s), 3);
    assert_int_equal(sk_sync_now(s, NULL, NULL, &sum), SK_OK);
    assert_int_equal(queued(s), 0);
    assert_int_equal(count_lines(batched), 3);
    assert_int_equal(count_lines(streamed), 0);
    expect_connection(s, "OfflineBatchMode");
    /* Up again: the probe before the next pass connects, and it streams. */
    sk_test_write_file(online, "up\n");
    emit_n(s, 2);
    assert_int_equal(sk_sync_now(s, NULL, NULL, &sum), SK_OK);
    assert_int_equal(queued(s), 0);
    assert_int_equal(count_lines(streamed), 2);
    assert_int_equal(count_lines(batched), 3);
    expect_connection(s, "Connected");
    sk_close(s);
    sk_test_rmtree(root);
    free(root);
}

static void config_keys_values_and_sources_are_public(void **state)
{
    (void)state;
    char *root = sk_test_mkdtemp();
    write_config(root, "{}");
    sk_sync *s = open_root(root);
    int exists = 0;
    assert_non_null(strstr(sk_config_file(s, &exists), "sync.json"));
    assert_true(exists);
    int found = 0;
    for (size_t i = 0; i < sk_config_key_count(); i++) {
        sk_config_key k;
        sk_config_key_get(i, &k);
        if (strcmp(k.name, "schedule.interval_s") != 0)
            continue;
        const char *source = NULL;
        char *text = sk_config_value(s, i, &source);
        assert_string_equal(text, "3600");
        assert_string_equal(source, "file");
        free(text);
        found = 1;
    }
    assert_true(found);
    assert_null(sk_config_warnings(s)[0]);
    sk_close(s);
    sk_test_rmtree(root);
    free(root);
}

static void probe_of_a_transport_without_one_says_so(void **state)
{
    (void)state;
    char *root = sk_test_mkdtemp();
    write_config(root, "{}");
    sk_sync *s = open_root(root);
    sk_probe_result r;
    assert_int_equal(sk_probe(s, 1000, &r), SK_OK);
    assert_string_equal(r.state, "Unknown");
    assert_false(r.healthy);
    assert_non_null(strstr(r.reason, "cannot probe"));
    sk_close(s);
    sk_test_rmtree(root);
    free(root);
}

/* An embedder's sk_sync_cancel stops sk_emit_ndjson: nothing of the file is queued, the
 * clock is not advanced. (Cancelled before the call: the flag is sticky, checked per line.) */
static void emit_ndjson_is_cancelled_whole(void **state)
{
    (void)state;
    char *root = sk_test_mkdtemp();
    write_config(root, "{}");
    sk_sync *s = open_root(root);
    emit_n(s, 2);
    char path[1024];
    snprintf(path, sizeof path, "%s/events.ndjson", root);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 100; i++)
        fprintf(f, "{\"event_type\":\"FeatureCompleted\",\"aggregate_id\":\"f1\","
                   "\"payload\":{\"feature_slug\":\"f1\",\"total_wps\":1}}\n");
    fclose(f);
    sk_sync_cancel(s);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    size_t n = 7;
    assert_int_equal(sk_emit_ndjson(s, fd, "events.ndjson", NULL, NULL, NULL, &n),
                     SK_ERR_CANCELLED);
    close(fd);
    assert_int_equal(n, 0);
    assert_non_null(strstr(sk_last_error(s), "cancelled; nothing queued"));
    assert_int_equal(queued(s), 2);
    sk_close(s);
    s = open_root(root); /* a new handle: emits again, the clock where the two left it */
    long clock = -1;
    fd = open(path, O_RDONLY);
    assert_int_equal(sk_emit_ndjson(s, fd, "events.ndjson", NULL, NULL, NULL, &n), SK_OK);
    close(fd);
    assert_int_equal(n, 100);
    assert_int_equal(queued(s), 102);
    snprintf(path, sizeof path, "%s/clock.json", root);
    f = fopen(path, "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "{\"value\":%ld", &clock), 1);
    fclose(f);
    assert_int_equal(clock, 102);
    sk_close(s);
    sk_test_rmtree(root);
    free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(drain_goes_through_a_running_service_and_status_shows_it),
        cmocka_unit_test(a_second_service_for_a_root_is_refused_busy),
        cmocka_unit_test(streaming_transport_falls_back_and_comes_back_when_its_probe_connects),
        cmocka_unit_test(drain_without_a_service_runs_here_and_reports_failures),
        cmocka_unit_test(parked_events_are_listed_and_come_back_with_retry),
        cmocka_unit_test(config_keys_values_and_sources_are_public),
        cmocka_unit_test(probe_of_a_transport_without_one_says_so),
        cmocka_unit_test(emit_ndjson_is_cancelled_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
