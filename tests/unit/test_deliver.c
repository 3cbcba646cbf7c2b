/*
 * The host delivery policy, row by row (CONTRACT.md §3), with a real SQLite
 * queue and the scripted transport loaded through the real loader.
 */
#include "testutil.h"

#include "deliver.h"
#include "engine.h"
#include "event.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct fixture {
    char *dir;
    char lock[1100];
    char record[1024];
    sk__queue *q;
    sk__plugin *p;
    json_t *options;
    sk__plugin_host host;
    char ids[3000][27];
    size_t n;
    int reauth_calls, refreshes;
    sk_status reauth_result;
    atomic_uint auth_gen;       /* the fake credentials' generation */
    atomic_int renew_in_flight; /* this many next batches see the token renewed once they left */
    int64_t waited_ms;
    int failures_rejected, failures_parked;
    char last_reason[512];
    atomic_int cancel;
    int64_t wait_first_ms; /* a Retry-After left by an earlier pass */
    size_t max_batch_events; /* 0: the default */
    int64_t max_events_per_s;
    sk__pass_info info;    /* what the last pass told the scheduler */
    sk__metrics *metrics;  /* counts the passes when set */
    int unknown_hint_warnings;
    /* At each settled batch: the plugin's "requests" so far and the events settled. */
    int64_t sent_at_settle[64], synced_at_settle[64];
    int settles;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = sk_test_mkdtemp();
    snprintf(f->record, sizeof f->record, "%s/record.txt", f->dir);
    snprintf(f->lock, sizeof f->lock, "%s/drain.lock", f->dir);
    char path[1024];
    snprintf(path, sizeof path, "%s/queue.db", f->dir);
    sk__err err = {{0}};
    sk__queue_opts qo = {.durability = SK__DURABILITY_NORMAL};
    assert_int_equal(sk__queue_open(path, &qo, &f->q, &err), SK_OK);
    atomic_init(&f->cancel, 0);
    atomic_init(&f->auth_gen, 0);
    atomic_init(&f->renew_in_flight, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sk__plugin_close(f->p);
    sk__metrics_close(f->metrics);
    sk__queue_close(f->q);
    json_decref(f->options);
    sk_test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* Queues n events with fresh ULIDs (oldest first). */
static void enqueue(fixture *f, size_t n)
{
    sk__queue_item *items = calloc(n, sizeof *items);
    char(*data)[128] = calloc(n, sizeof *data);
    sk__err err = {{0}};
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(sk__ulid_new(f->ids[f->n + i], &err), SK_OK);
        snprintf(data[i], sizeof data[i], "{\"event_id\":\"%s\",\"event_type\":\"T\"}",
                 f->ids[f->n + i]);
        items[i] = (sk__queue_item){f->ids[f->n + i], "T", data[i], 1000};
    }
    assert_int_equal(sk__queue_enqueue(f->q, items, n, &err), SK_OK);
    f->n += n;
    free(items);
    free(data);
}

/* Loads a test transport (scripted, scripted_async) with options (a JSON text;
 * "record" is added). */
static void load_named(fixture *f, const char *name, const char *options)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.so", getenv("SK_TEST_PLUGIN_DIR"), name);
    sk__err err = {{0}};
    assert_int_equal(sk__plugin_open(path, 1, &f->p, &err), SK_OK);
    json_error_t jerr;
    f->options = json_loads(options, 0, &jerr);
    assert_non_null(f->options);
    json_object_set_new(f->options, "record", json_string(f->record));
    f->host = (sk__plugin_host){.options = f->options, .state_root = f->dir};
    assert_int_equal(sk__plugin_start(f->p, &f->host, &err), SK_OK);
}

static void load(fixture *f, const char *options)
{
    load_named(f, "scripted", options);
}

/* The generation a batch leaves with; a renewal "in flight" (by another
 * connection's refresh) lands right after. Called on the sending thread. */
static unsigned auth_generation(void *ctx)
{
    fixture *f = ctx;
    unsigned sent = atomic_load(&f->auth_gen);
    if (atomic_load(&f->renew_in_flight) > 0) {
        atomic_fetch_sub(&f->renew_in_flight, 1);
        atomic_fetch_add(&f->auth_gen, 1);
    }
    return sent;
}

/* Refreshes unless the token changed since the batch left, as the engine's hook does. */
static sk_status reauth(void *ctx, unsigned sent, int *refreshed, sk__err *err)
{
    fixture *f = ctx;
    f->reauth_calls++;
    if (f->reauth_result != SK_OK)
        return sk__fail(err, f->reauth_result, "session expired: run spec-kitty auth login");
    *refreshed = sent == atomic_load(&f->auth_gen);
    if (*refreshed) {
        f->refreshes++;
        atomic_fetch_add(&f->auth_gen, 1);
    }
    return SK_OK;
}

static int fake_wait(void *ctx, int64_t ms)
{
    ((fixture *)ctx)->waited_ms += ms;
    return 0;
}

static void on_failure(void *ctx, const char *id, const char *type, const char *what,
                       const char *reason)
{
    (void)id;
    (void)type;
    fixture *f = ctx;
    if (strcmp(what, "parked") == 0)
        f->failures_parked++;
    else
        f->failures_rejected++;
    snprintf(f->last_reason, sizeof f->last_reason, "%s", reason);
}

static void requests_of(void *ctx, const sk__plugin_metric *m)
{
    int64_t *requests = ctx;
    if (strcmp(m->name, "requests") == 0)
        *requests = m->value;
}

static void on_progress(void *ctx, const sk_drain_summary *so_far, int64_t total)
{
    (void)total;
    fixture *f = ctx;
    if (f->settles >= 64)
        return;
    int64_t requests = 0;
    sk__plugin_each_metric(f->p, requests_of, &requests);
    f->sent_at_settle[f->settles] = requests;
    f->synced_at_settle[f->settles++] = so_far->synced;
}

static sk_status pass(fixture *f, int64_t max_retries, sk_drain_summary *sum, sk__err *err)
{
    sk__deliver_opts o;
    sk__deliver_opts_default(&o);
    o.max_retries = max_retries;
    o.drain_lock_path = f->lock;
    o.wait_first_ms = f->wait_first_ms;
    if (f->max_batch_events)
        o.max_batch_events = f->max_batch_events;
    o.max_events_per_s = f->max_events_per_s;
    sk__deliver_hooks h = {.auth_generation = auth_generation,
                           .reauthenticate = reauth,
                           .auth_ctx = f,
                           .failure = on_failure,
                           .wait_ms = fake_wait,
                           .ctx = f,
                           .cancel = &f->cancel,
                           .metrics = f->metrics,
                           .progress = on_progress};
    return sk__deliver_pass(f->q, f->p, &o, &h, sum, &f->info, err);
}

static sk__queue_stats stats(fixture *f)
{
    sk__queue_stats s;
    sk__err err;
    assert_int_equal(sk__queue_stats_get(f->q, &s, &err), SK_OK);
    return s;
}

/* Lines in the record file (events handed to the transport), and how many distinct ids. */
static size_t recorded(fixture *f, size_t *distinct)
{
    char cmd[1200], buf[64];
    snprintf(cmd, sizeof cmd, "cut -d' ' -f2 '%s' 2>/dev/null | sort | uniq | wc -l", f->record);
    FILE *p = popen(cmd, "r");
    assert_non_null(fgets(buf, sizeof buf, p));
    pclose(p);
    *distinct = (size_t)atol(buf);
    snprintf(cmd, sizeof cmd, "cat '%s' 2>/dev/null | wc -l", f->record);
    p = popen(cmd, "r");
    assert_non_null(fgets(buf, sizeof buf, p));
    pclose(p);
    return (size_t)atol(buf);
}

static void delivered_events_leave_the_queue_in_batches(void **state)
{
    fixture *f = *state;
    enqueue(f, 2500);
    load(f, "{}");
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_OK);
    assert_int_equal(sum.synced, 2500);
    assert_int_equal(sum.batches, 3);
    assert_int_equal(sum.remaining, 0);
    assert_int_equal(stats(f).ready, 0);
    size_t distinct, lines = recorded(f, &distinct);
    assert_int_equal(lines, 2500);
    assert_int_equal(distinct, 2500);
}

static void duplicates_leave_the_queue_and_are_counted(void **state)
{
    fixture *f = *state;
    enqueue(f, 10);
    char opts[512];
    snprintf(opts, sizeof opts, "{\"outcomes\": {\"%s\": \"duplicate\", \"%s\": \"duplicate\"}}",
             f->ids[2], f->ids[7]);
    load(f, opts);
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_OK);
    assert_int_equal(sum.synced, 8);
    assert_int_equal(sum.duplicates, 2);
    assert_int_equal(stats(f).ready, 0);
}

static void pending_stays_without_penalty_and_is_sent_once_per_pass(void **state)
{
    fixture *f = *state;
    enqueue(f, 5);
    char opts[512];
    snprintf(opts, sizeof opts, "{\"outcomes\": {\"%s\": \"pending\"}}", f->ids[1]);
    load(f, opts);
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_OK);
    assert_int_equal(sum.synced, 4);
    assert_int_equal(sum.pending, 1);
    assert_int_equal(sum.remaining, 1);
    assert_int_equal(stats(f).leased, 0); /* given back at the end of the pass */
    size_t distinct, lines = recorded(f, &distinct);
    assert_int_equal(lines, 5);
    assert_int_equal(f->failures_rejected + f->failures_parked, 0);
}

static void rejected_is_retried_then_parked_after_max_retries(void **state)
{
    fixture *f = *state;
    enqueue(f, 3);
    char opts[512];
    snprintf(opts, sizeof opts, "{\"outcomes\": {\"%s\": \"rejected\"}}", f->ids[0]);
    load(f, opts);
    sk_drain_summary sum;
    sk__err err = {{0}};
    for (int i = 0; i < 2; i++) { /* max_retries 2: two rejections keep it queued */
        assert_int_equal(pass(f, 2, &sum, &err), SK_OK);
        assert_int_equal(sum.rejected, 1);
        assert_int_equal(sum.parked, 0);
        assert_int_equal(stats(f).ready, 1);
    }
    assert_int_equal(pass(f, 2, &sum, &err), SK_OK);
    assert_int_equal(sum.rejected, 0);
    assert_int_equal(sum.parked, 1);
    assert_int_equal(stats(f).ready, 0);
    assert_int_equal(stats(f).parked, 1);
    assert_string_equal(f->last_reason, "scripted rejected");
    size_t distinct, lines = recorded(f, &distinct);
    assert_int_equal(lines, 3 + 2); /* each rejected pass sent it once */
}

static void permanent_rejection_parks_at_once(void **state)
{
    fixture *f = *state;
    enqueue(f, 4);
    char opts[512];
    snprintf(opts, sizeof opts, "{\"outcomes\": {\"%s\": \"permanent\"}}", f->ids[3]);
    load(f, opts);
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_OK);
    assert_int_equal(sum.synced, 3);
    assert_int_equal(sum.parked, 1);
    assert_int_equal(stats(f).parked, 1);
    assert_int_equal(f->failures_parked, 1);
}

static void transport_failure_stops_the_pass_and_keeps_everything(void **state)
{
    fixture *f = *state;
    enqueue(f, 1500);
    load(f, "{\"steps\": [{\"rc\": \"failed\", \"detail\": \"connection refused\"}]}");
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_ERR_TRANSPORT);
    assert_string_equal(sum.stop_reason, "connection refused");
    assert_int_equal(sum.synced, 0);
    assert_int_equal(sum.remaining, 1500);
    assert_int_equal(sum.batches, 1);
    assert_int_equal(stats(f).leased, 0);
    /* The next pass delivers everything. */
    assert_int_equal(pass(f, 20, &sum, &err), SK_OK);
    assert_int_equal(sum.synced, 1500);
}

static void all_transient_answer_stops_the_pass(void **state)
{
    fixture *f = *state;
    enqueue(f, 20);
    load(f, "{\"steps\": [{\"outcome\": \"transient\", \"detail\": \"403 forbidden\"}]}");
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_ERR_TRANSPORT);
    assert_string_equal(sum.stop_reason, "403 forbidden");
    assert_int_equal(stats(f).ready, 20);
}

static void too_large_batches_are_halved_until_they_fit(void **state)
{
    fixture *f = *state;
    enqueue(f, 1000);
    char opts[512];
    snprintf(opts, sizeof opts, "{\"max_events\": 300, \"too_large_ids\": [\"%s\"]}", f->ids[600]);
    load(f, opts);
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_OK);
    assert_int_equal(sum.synced, 999);
    assert_int_equal(sum.parked, 1); /* still too large alone */
    assert_non_null(strstr(f->last_reason, "too large"));
    assert_int_equal(stats(f).parked, 1);
    assert_true(sum.batches > 4);
}

static sk__metrics_counts counted(fixture *f)
{
    sk__metrics_counts c;
    sk__err err = {{0}};
    assert_int_equal(sk__metrics_load(f->metrics, &c, &err), SK_OK);
    return c;
}

static void metrics_count_each_batch_once_splits_and_failures_included(void **state)
{
    fixture *f = *state;
    sk__err err = {{0}};
    assert_int_equal(sk__metrics_open(f->dir, &f->metrics, &err), SK_OK);
    enqueue(f, 1000);
    char opts[512];
    snprintf(opts, sizeof opts,
             "{\"max_events\": 300, \"too_large_ids\": [\"%s\"], \"outcomes\": {\"%s\": "
             "\"duplicate\"}}",
             f->ids[600], f->ids[10]);
    load(f, opts);
    sk_drain_summary sum;
    assert_int_equal(pass(f, 20, &sum, &err), SK_OK);
    sk__metrics_counts c = counted(f);
    /* The halves of a batch too large are counted by their own answers, once. */
    assert_int_equal(c.delivered, sum.synced);
    assert_int_equal(c.duplicates, sum.duplicates);
    assert_int_equal(c.delivered + c.duplicates, 999);
    assert_int_equal(c.parked, 1);
    assert_int_equal(c.batches, sum.batches);
    assert_int_equal(c.retries, 0);
    assert_int_equal(c.latency_count, 999);
    int64_t in_buckets = 0;
    for (int i = 0; i <= SK__METRICS_LATENCY_BUCKETS; i++)
        in_buckets += c.latency_bucket[i];
    assert_int_equal(in_buckets, 999);
    /* The plugin's counter is summed; its level (metric_set) is no counter. */
    int requests = 0;
    for (size_t i = 0; i < c.ntransport; i++) {
        assert_string_not_equal(c.transport[i].name, "last_batch_events");
        requests += strcmp(c.transport[i].name, "requests") == 0;
    }
    assert_int_equal(requests, 1);
    sk__metrics_counts_free(&c);

    /* A batch that fails as a whole is a retry, and delivers nothing. */
    enqueue(f, 10);
    sk__plugin_close(f->p);
    json_decref(f->options);
    load(f, "{\"steps\": [{\"rc\": \"failed\", \"detail\": \"connection refused\"}]}");
    assert_int_equal(pass(f, 20, &sum, &err), SK_ERR_TRANSPORT);
    c = counted(f);
    assert_int_equal(c.retries, 1);
    assert_int_equal(c.delivered + c.duplicates, 999);
    sk__metrics_counts_free(&c);
}

static void poisoned_batch_is_bisected_to_the_bad_event(void **state)
{
    fixture *f = *state;
    enqueue(f, 1000);
    char opts[512];
    snprintf(opts, sizeof opts, "{\"poison\": [\"%s\"]}", f->ids[437]);
    load(f, opts);
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_OK);
    assert_int_equal(sum.synced, 999);
    assert_int_equal(sum.rejected, 1);
    assert_int_equal(stats(f).ready, 1);
    assert_non_null(strstr(f->last_reason, "400 without details"));
    /* Bisection: about 2*log2(1000) sends, not 1000. */
    assert_true(sum.batches <= 25);
}

static void reauthenticate_refreshes_once_and_resends_once(void **state)
{
    fixture *f = *state;
    enqueue(f, 10);
    load(f, "{\"steps\": [{\"hints\": [\"reauthenticate\"]}]}");
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_OK);
    assert_int_equal(f->reauth_calls, 1);
    assert_int_equal(f->refreshes, 1);
    assert_int_equal(sum.synced, 10);
}

static void second_401_after_refresh_stops_not_authenticated(void **state)
{
    fixture *f = *state;
    enqueue(f, 10);
    load(f, "{\"steps\": [{\"hints\": [\"reauthenticate\"]}, {\"hints\": [\"reauthenticate\"]}]}");
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_ERR_AUTH);
    assert_int_equal(f->reauth_calls, 1);
    assert_int_equal(stats(f).ready, 10);
}

static void expired_session_stops_with_the_refresh_error(void **state)
{
    fixture *f = *state;
    enqueue(f, 3);
    f->reauth_result = SK_ERR_SESSION_EXPIRED;
    load(f, "{\"steps\": [{\"hints\": [\"reauthenticate\"]}]}");
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_ERR_SESSION_EXPIRED);
    assert_non_null(strstr(sum.stop_reason, "spec-kitty auth login"));
    assert_int_equal(stats(f).ready, 3);
}

/* Another batch's refresh landed while this one was out with the old token. */
static void a_401_for_a_token_renewed_since_the_batch_left_resends_without_refreshing(void **state)
{
    fixture *f = *state;
    enqueue(f, 10);
    atomic_store(&f->renew_in_flight, 1);
    load(f, "{\"steps\": [{\"hints\": [\"reauthenticate\"]}]}");
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_OK);
    assert_int_equal(f->reauth_calls, 1);
    assert_int_equal(f->refreshes, 0);
    assert_int_equal(sum.synced, 10);
}

/* The transport read the header after the renewal: the new token was the one refused. */
static void a_renewed_token_refused_too_costs_one_extra_resend_then_one_refresh(void **state)
{
    fixture *f = *state;
    enqueue(f, 10);
    atomic_store(&f->renew_in_flight, 1);
    load(f, "{\"steps\": [{\"hints\": [\"reauthenticate\"]}, {\"hints\": [\"reauthenticate\"]}]}");
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_OK);
    assert_int_equal(f->refreshes, 1);
    assert_int_equal(sum.synced, 10);
    size_t distinct;
    assert_int_equal(recorded(f, &distinct), 30); /* sent, resent, resent after the refresh */
}

static void resends_after_a_401_end_with_the_refreshed_token_never_a_loop(void **state)
{
    fixture *f = *state;
    enqueue(f, 10);
    atomic_store(&f->renew_in_flight, 1);
    load(f, "{\"steps\": [{\"hints\": [\"reauthenticate\"]}, {\"hints\": [\"reauthenticate\"]},"
            " {\"hints\": [\"reauthenticate\"]}]}");
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_ERR_AUTH);
    assert_int_equal(f->refreshes, 1);
    size_t distinct;
    assert_int_equal(recorded(f, &distinct), 30);
    assert_int_equal(stats(f).ready, 10);
}

static void a_token_renewed_twice_under_one_batch_stops_not_authenticated(void **state)
{
    fixture *f = *state;
    enqueue(f, 10);
    atomic_store(&f->renew_in_flight, 2);
    load(f, "{\"steps\": [{\"hints\": [\"reauthenticate\"]}, {\"hints\": [\"reauthenticate\"]}]}");
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_ERR_AUTH);
    assert_int_equal(f->reauth_calls, 2);
    assert_int_equal(f->refreshes, 0);
    assert_non_null(strstr(sum.stop_reason, "spec-kitty auth login"));
    assert_int_equal(stats(f).ready, 10);
}

static void protocol_mismatch_stops_with_the_server_text(void **state)
{
    fixture *f = *state;
    enqueue(f, 3);
    load(f, "{\"steps\": [{\"hints\": [\"protocol_mismatch\"], \"detail\": \"upgrade to 3.x\"}]}");
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_ERR_PROTOCOL);
    assert_non_null(strstr(sum.stop_reason, "upgrade to 3.x"));
    assert_int_equal(stats(f).ready, 3);
}

static void retry_after_is_waited_out_then_resent(void **state)
{
    fixture *f = *state;
    enqueue(f, 5);
    load(f, "{\"steps\": [{\"hints\": [\"retry_after\"], \"retry_after_ms\": 1500}]}");
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_OK);
    assert_int_equal(f->waited_ms, 1500);
    assert_int_equal(sum.retry_after_ms, 1500);
    assert_int_equal(sum.synced, 5);
}

static void retry_after_of_zero_waits_the_backoff_minimum_before_resending(void **state)
{
    fixture *f = *state;
    enqueue(f, 5);
    load(f, "{\"steps\": [{\"hints\": [\"retry_after\"], \"retry_after_ms\": 0},"
            " {\"hints\": [\"retry_after\"], \"retry_after_ms\": 0}]}");
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_OK);
    sk__deliver_opts o;
    sk__deliver_opts_default(&o);
    assert_true(o.sched.backoff_min_ms > 0);
    assert_int_equal(f->waited_ms, 2 * o.sched.backoff_min_ms);
    assert_int_equal(sum.synced, 5);
}

static void capture_log(void *ctx, sk_log_level level, const char *plugin, const char *line)
{
    (void)plugin;
    fixture *f = ctx;
    if (level == SK_LOG_WARN && strstr(line, "unknown"))
        f->unknown_hint_warnings++;
}

static void unknown_hints_are_logged_once_and_the_outcomes_still_apply(void **state)
{
    fixture *f = *state;
    f->max_batch_events = 2;
    enqueue(f, 6);
    load(f, "{\"steps\": [{\"hints\": [64], \"outcome\": \"delivered\"},"
            " {\"hints\": [64], \"outcome\": \"delivered\"}]}");
    f->host.log = capture_log;
    f->host.ctx = f;
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_OK);
    assert_int_equal(sum.synced, 6);
    assert_int_equal(stats(f).ready, 0);
    assert_int_equal(f->unknown_hint_warnings, 1);
}

static void long_retry_after_stops_the_pass(void **state)
{
    fixture *f = *state;
    enqueue(f, 5);
    load(f, "{\"steps\": [{\"hints\": [\"retry_after\"], \"retry_after_ms\": 3600000}]}");
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_ERR_TRANSPORT);
    assert_int_equal(f->waited_ms, 0);
    assert_int_equal(sum.retry_after_ms, 3600000);
    assert_non_null(strstr(sum.stop_reason, "wait 3600 s"));
    assert_int_equal(stats(f).ready, 5);
}

static void transport_failure_without_an_answer_tells_the_scheduler_unreachable(void **state)
{
    fixture *f = *state;
    enqueue(f, 3);
    load(f, "{\"steps\": [{\"rc\": \"failed\", \"detail\": \"connection refused\"},"
            " {\"rc\": \"failed\", \"status_code\": 502, \"detail\": \"bad gateway\"}]}");
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_ERR_TRANSPORT);
    assert_true(f->info.unreachable);
    assert_int_equal(pass(f, 20, &sum, &err), SK_ERR_TRANSPORT);
    assert_false(f->info.unreachable); /* a status came back: something answered */
    assert_int_equal(stats(f).ready, 3);
}

static void earlier_retry_after_is_waited_out_before_the_first_batch(void **state)
{
    fixture *f = *state;
    enqueue(f, 4);
    load(f, "{}");
    f->wait_first_ms = 1500;
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_OK);
    assert_int_equal(f->waited_ms, 1500);
    assert_int_equal(sum.synced, 4);
    assert_false(f->info.deferred);
}

static void earlier_retry_after_beyond_what_a_pass_waits_defers_it_unsent(void **state)
{
    fixture *f = *state;
    enqueue(f, 4);
    load(f, "{}");
    f->wait_first_ms = 900000;
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_ERR_TRANSPORT);
    assert_true(f->info.deferred);
    assert_int_equal(f->waited_ms, 0);
    assert_int_equal(sum.batches, 0);
    assert_int_equal(sum.remaining, 4);
    assert_non_null(strstr(sum.stop_reason, "wait 900 s"));
    size_t distinct;
    assert_int_equal(recorded(f, &distinct), 0);
}

static void one_answer_settles_deletes_rejections_and_parking_together(void **state)
{
    fixture *f = *state;
    enqueue(f, 6);
    char opts[512];
    snprintf(opts, sizeof opts,
             "{\"outcomes\": {\"%s\": \"rejected\", \"%s\": \"permanent\", \"%s\": "
             "\"pending\"}}",
             f->ids[1], f->ids[3], f->ids[5]);
    load(f, opts);
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_OK);
    assert_int_equal(sum.batches, 1);
    assert_int_equal(sum.synced, 3);
    assert_int_equal(sum.rejected, 1);
    assert_int_equal(sum.parked, 1);
    assert_int_equal(sum.pending, 1);
    assert_int_equal(f->failures_rejected + f->failures_parked, 2);
    sk__queue_stats qs = stats(f);
    assert_int_equal(qs.ready, 2); /* the rejected one (retried later) and the pending one */
    assert_int_equal(qs.parked, 1);
}

static void *cancel_soon(void *arg)
{
    fixture *f = arg;
    usleep(100 * 1000);
    atomic_store(&f->cancel, 1);
    sk__plugin_cancel(f->p);
    return NULL;
}

static void cancel_stops_a_hanging_send_and_keeps_everything(void **state)
{
    fixture *f = *state;
    enqueue(f, 5);
    load(f, "{\"hang_ms\": 60000}");
    pthread_t t;
    pthread_create(&t, NULL, cancel_soon, f);
    sk_drain_summary sum;
    sk__err err = {{0}};
    int64_t t0 = sk__mono_ms();
    assert_int_equal(pass(f, 20, &sum, &err), SK_ERR_CANCELLED);
    assert_true(sk__mono_ms() - t0 < 5000);
    pthread_join(t, NULL);
    assert_int_equal(stats(f).ready, 5);
    assert_int_equal(stats(f).leased, 0);
}

static void two_drainer_processes_never_send_the_same_event(void **state)
{
    fixture *f = *state;
    enqueue(f, 3000);
    char dbpath[1024];
    snprintf(dbpath, sizeof dbpath, "%s/queue.db", f->dir);
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            fixture child = *f;
            sk__err err;
            sk__queue_opts qo = {.durability = SK__DURABILITY_NORMAL};
            if (sk__queue_open(dbpath, &qo, &child.q, &err) != SK_OK)
                _exit(3);
            child.p = NULL;
            child.options = NULL;
            load(&child, "{}");
            sk__deliver_opts o;
            sk__deliver_opts_default(&o);
            o.max_batch_events = 100;
            o.drain_lock_path = child.lock;
            sk_drain_summary sum;
            sk_status st = sk__deliver_pass(child.q, child.p, &o, NULL, &sum, NULL, &err);
            _exit(st == SK_OK ? 0 : 4);
        }
    }
    for (int k = 0; k < 2; k++) {
        int ws;
        waitpid(kids[k], &ws, 0);
        assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    }
    size_t distinct, lines = recorded(f, &distinct);
    assert_int_equal(distinct, 3000);
    assert_int_equal(lines, 3000); /* nobody sent an event twice */
    assert_int_equal(stats(f).ready, 0);
}


/* ---- the async path (scripted_async: completions held, given back in reverse) ---- */

static void metric_of(void *ctx, const sk__plugin_metric *m)
{
    int64_t *want = ctx;
    if (strcmp(m->name, "busy") == 0)
        *want = m->value;
}

static void async_completions_out_of_order_settle_each_batch_once(void **state)
{
    fixture *f = *state;
    enqueue(f, 40);
    f->max_batch_events = 5;
    load_named(f, "scripted_async", "{\"slots\": 4}");
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_OK);
    assert_int_equal(sum.synced, 40);
    assert_int_equal(sum.batches, 8);
    assert_int_equal(stats(f).ready, 0);
    size_t distinct, lines = recorded(f, &distinct);
    assert_int_equal(lines, 40); /* each event sent once */
    assert_int_equal(distinct, 40);
    /* Four in flight filled the plugin: the host heard BUSY and waited for a completion. */
    int64_t busy = 0;
    sk__plugin_each_metric(f->p, metric_of, &busy);
    assert_true(busy >= 1);
}

/* A transport with room for one batch gets the next as soon as it completes one, not
 * after the host settled it: by each settle but the last, at least one more batch
 * was sent. */
static void async_next_batch_goes_before_the_completed_one_settles(void **state)
{
    fixture *f = *state;
    enqueue(f, 20);
    f->max_batch_events = 5;
    load_named(f, "scripted_async", "{\"slots\": 1}");
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_OK);
    assert_int_equal(sum.synced, 20);
    assert_int_equal(f->settles, 4);
    for (int k = 0; k < 3; k++) {
        assert_int_equal(f->synced_at_settle[k], 5 * (k + 1));
        assert_true(f->sent_at_settle[k] >= k + 2);
    }
    assert_int_equal(f->sent_at_settle[3], 4);
}

static void async_failed_batch_stops_the_pass_and_the_others_still_settle(void **state)
{
    fixture *f = *state;
    enqueue(f, 40);
    f->max_batch_events = 5;
    /* The second of four batches in flight fails; the other three were delivered. */
    load_named(f, "scripted_async",
               "{\"slots\": 4, \"steps\": [{}, {\"rc\": \"failed\", \"detail\": \"boom\"}]}");
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_ERR_TRANSPORT);
    assert_string_equal(sum.stop_reason, "boom");
    /* The batches beside it (three at least; more when the first completed before the
     * failure did, as under a slow sanitizer) settle; the failed one stays queued. */
    assert_true(sum.synced >= 15 && sum.synced <= 35);
    assert_int_equal(sum.synced % 5, 0);
    assert_int_equal(stats(f).ready, 40 - sum.synced);
    size_t distinct, lines = recorded(f, &distinct);
    assert_int_equal(lines, (size_t)sum.synced + 5); /* each sent once, the failed one too */
    assert_int_equal(distinct, lines);
}

static void async_poisoned_batch_is_bisected_beside_the_others(void **state)
{
    fixture *f = *state;
    enqueue(f, 40);
    f->max_batch_events = 8;
    char opts[256];
    snprintf(opts, sizeof opts, "{\"slots\": 3, \"poison\": [\"%s\"]}", f->ids[13]);
    load_named(f, "scripted_async", opts);
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_OK);
    assert_int_equal(sum.synced, 39);
    assert_int_equal(sum.rejected, 1);
    sk__queue_stats qs = stats(f);
    assert_int_equal(qs.ready, 1);
    size_t distinct;
    recorded(f, &distinct);
    assert_int_equal(distinct, 40);
}

static void max_events_per_s_paces_the_batches(void **state)
{
    fixture *f = *state;
    enqueue(f, 30);
    f->max_batch_events = 10;
    f->max_events_per_s = 10; /* a batch of 10 per second */
    load_named(f, "scripted_async", "{\"slots\": 4}");
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_OK);
    assert_int_equal(sum.synced, 30);
    /* Batch k may leave k seconds after the first. The fake wait lets no time pass,
     * so the waits before batches 2 and 3 are 1 s and 2 s; real time in between
     * (a loaded machine) only shortens them. */
    assert_in_range(f->waited_ms, 1500, 3000);
}

static void *cancel_when_in_flight(void *arg)
{
    fixture *f = arg;
    size_t distinct;
    for (int i = 0; i < 500 && recorded(f, &distinct) < 20; i++)
        usleep(10 * 1000);
    atomic_store(&f->cancel, 1);
    sk__plugin_cancel(f->p);
    return NULL;
}

static void async_cancel_completes_the_batches_in_flight_and_keeps_them(void **state)
{
    fixture *f = *state;
    enqueue(f, 40);
    f->max_batch_events = 5;
    load_named(f, "scripted_async", "{\"slots\": 4, \"hold\": true}");
    pthread_t t;
    pthread_create(&t, NULL, cancel_when_in_flight, f);
    sk_drain_summary sum;
    sk__err err = {{0}};
    assert_int_equal(pass(f, 20, &sum, &err), SK_ERR_CANCELLED);
    pthread_join(t, NULL);
    assert_int_equal(sum.synced, 0);
    assert_int_equal(stats(f).ready, 40);
    size_t distinct, lines = recorded(f, &distinct);
    assert_int_equal(lines, 20); /* four batches were in flight, no more were handed over */
}

/* ---- through the engine: a real session whose token endpoint is faked ------- */

typedef struct token_server {
    int refresh_posts;
    int issued; /* R<issued> is the one refresh token accepted (rotation) */
} token_server;

static sk_status token_endpoint(void *ctx, const char *url, const char *ca_file, const char *body,
                                long *status, char **response, sk__err *err)
{
    (void)ca_file;
    (void)err;
    token_server *t = ctx;
    char want[64];
    snprintf(want, sizeof want, "{\"refresh\":\"R%d\"}", t->issued);
    *status = 401;
    *response = malloc(128);
    snprintf(*response, 128, "{}");
    if (strstr(url, "/api/v1/token/refresh/"))
        t->refresh_posts++;
    if (strstr(url, "/api/v1/token/refresh/") && strcmp(body, want) == 0) {
        t->issued++;
        *status = 200;
        snprintf(*response, 128, "{\"access\":\"A%d\",\"refresh\":\"R%d\"}", t->issued, t->issued);
    }
    return SK_OK;
}

/* http-batch's default: two connections, so two batches leave with the token before
 * the server revokes it and both come back 401. The first refreshes; the second left
 * before that refresh and is resent with the new token, spending nothing. */
static void one_revoked_token_costs_one_refresh_with_two_batches_in_flight(void **state)
{
    (void)state;
    char *root = sk_test_mkdtemp();
    char path[1200], config[2048];
    snprintf(path, sizeof path, "%s/sync.json", root);
    snprintf(config, sizeof config,
             "{\"server_url\": \"http://127.0.0.1:9\", \"transport\": {\"plugin\": "
             "\"%s/scripted_async.so\", \"options\": {\"slots\": 2, \"steps\": [{\"hints\": "
             "[\"reauthenticate\"]}, {\"hints\": [\"reauthenticate\"]}]}}, \"schedule\": "
             "{\"max_batch_events\": 1}}",
             getenv("SK_TEST_PLUGIN_DIR"));
    sk_test_write_file(path, config);
    sk__creds c = {
        .server_url = "http://127.0.0.1:9", .username = "alice", .access = "A1", .refresh = "R1"};
    c.access_expires_ms = sk__wall_ms() + 3600 * 1000;
    c.refresh_expires_ms = sk__wall_ms() + 7200 * 1000;
    snprintf(path, sizeof path, "%s/credentials.json", root);
    sk__err err = {{0}};
    assert_int_equal(sk__creds_save(path, &c, &err), SK_OK);

    sk_sync *s = NULL;
    char errbuf[512] = "";
    assert_int_equal(sk_open(root, &s, errbuf, sizeof errbuf), SK_OK);
    token_server t = {.issued = 1};
    sk__auth_set_http(s->auth, token_endpoint, &t);
    char id[27];
    for (int i = 0; i < 2; i++)
        assert_int_equal(sk_emit(s, "FeatureCompleted", "f1", NULL,
                                 "{\"feature_slug\":\"f1\",\"total_wps\":1}", NULL, id),
                         SK_OK);
    sk_drain_summary sum;
    assert_int_equal(sk_sync_now(s, NULL, NULL, &sum), SK_OK);
    assert_int_equal(t.refresh_posts, 1);
    assert_int_equal(sum.synced, 2);
    assert_int_equal(sum.batches, 4); /* each sent, refused, resent */
    char header[64];
    sk__auth_header(s->auth, header, sizeof header);
    assert_string_equal(header, "Bearer A2");
    sk_close(s);
    sk_test_rmtree(root);
    free(root);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(delivered_events_leave_the_queue_in_batches),
        T(duplicates_leave_the_queue_and_are_counted),
        T(pending_stays_without_penalty_and_is_sent_once_per_pass),
        T(rejected_is_retried_then_parked_after_max_retries),
        T(permanent_rejection_parks_at_once),
        T(transport_failure_stops_the_pass_and_keeps_everything),
        T(all_transient_answer_stops_the_pass),
        T(too_large_batches_are_halved_until_they_fit),
        T(metrics_count_each_batch_once_splits_and_failures_included),
        T(poisoned_batch_is_bisected_to_the_bad_event),
        T(reauthenticate_refreshes_once_and_resends_once),
        T(second_401_after_refresh_stops_not_authenticated),
        T(expired_session_stops_with_the_refresh_error),
        T(a_401_for_a_token_renewed_since_the_batch_left_resends_without_refreshing),
        T(a_renewed_token_refused_too_costs_one_extra_resend_then_one_refresh),
        T(resends_after_a_401_end_with_the_refreshed_token_never_a_loop),
        T(a_token_renewed_twice_under_one_batch_stops_not_authenticated),
        T(protocol_mismatch_stops_with_the_server_text),
        T(retry_after_is_waited_out_then_resent),
        T(retry_after_of_zero_waits_the_backoff_minimum_before_resending),
        T(unknown_hints_are_logged_once_and_the_outcomes_still_apply),
        T(long_retry_after_stops_the_pass),
        T(cancel_stops_a_hanging_send_and_keeps_everything),
        T(transport_failure_without_an_answer_tells_the_scheduler_unreachable),
        T(earlier_retry_after_is_waited_out_before_the_first_batch),
        T(earlier_retry_after_beyond_what_a_pass_waits_defers_it_unsent),
        T(one_answer_settles_deletes_rejections_and_parking_together),
        T(two_drainer_processes_never_send_the_same_event),
        T(async_completions_out_of_order_settle_each_batch_once),
        T(async_next_batch_goes_before_the_completed_one_settles),
        T(async_failed_batch_stops_the_pass_and_the_others_still_settle),
        T(async_poisoned_batch_is_bisected_beside_the_others),
        T(async_cancel_completes_the_batches_in_flight_and_keeps_them),
        cmocka_unit_test(one_revoked_token_costs_one_refresh_with_two_batches_in_flight),
        T(max_events_per_s_paces_the_batches),
    };
    return cmocka_run_group_tests_name("delivery under the drain lock, pipelined", tests, NULL,
                                       NULL);
}
