/* Scheduler: backoff, Retry-After, spacing, periodic flushes, persisted state. */
#include "testutil.h"

#include "scheduler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* 2026-11-25T09:18:44.000Z: a realistic wall time for every test. */
#define T0 INT64_C(1795598324000)

/* Injected clock and random source: a fixed draw, or a splitmix64 stream. */
typedef struct fake_env {
    int64_t now;
    uint64_t fixed;
    int use_stream;
    uint64_t stream;
} fake_env;

static int64_t fake_now(void *ctx)
{
    return ((fake_env *)ctx)->now;
}

static uint64_t splitmix(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static uint64_t fake_random(void *ctx)
{
    fake_env *f = ctx;
    return f->use_stream ? splitmix(&f->stream) : f->fixed;
}

/* A scheduler with the default policy on a fake env. */
static void init_fake(sk__sched *s, fake_env *f, uint64_t fixed)
{
    memset(f, 0, sizeof *f);
    f->now = T0;
    f->fixed = fixed;
    sk__sched_env env = {.now_wall_ms = fake_now, .random_u64 = fake_random, .ctx = f};
    sk__sched_policy p = sk__sched_policy_default();
    assert_int_equal(sk__sched_init(s, &p, &env, NULL), SK_OK);
}

static void test_defaults_match_the_contract(void **state)
{
    (void)state;
    sk__sched_policy p = sk__sched_policy_default();
    assert_int_equal(p.interval_ms, 300000);
    assert_int_equal(p.backoff_min_ms, 500);
    assert_int_equal(p.backoff_max_ms, 30000);
    assert_int_equal(p.min_batch_interval_ms, 5000);
    assert_int_equal(sk__sched_policy_check(&p, NULL), SK_OK);
}

static void test_clock_and_random_are_injected(void **state)
{
    (void)state;
    sk__sched s;
    fake_env f;
    init_fake(&s, &f, 0);
    f.now = T0 + 42;
    assert_int_equal(sk__sched_now(&s), T0 + 42);
    /* NULL env: the real clock and getrandom. */
    sk__sched real;
    assert_int_equal(sk__sched_init(&real, NULL, NULL, NULL), SK_OK);
    int64_t before = sk__wall_ms();
    int64_t now = sk__sched_now(&real);
    assert_true(now >= before && now <= sk__wall_ms());
    uint64_t a = real.env.random_u64(real.env.ctx), b = real.env.random_u64(real.env.ctx);
    assert_true(a != b); /* equal 64-bit draws: 2^-64 */
}

static void test_bad_policy_is_refused_naming_the_field(void **state)
{
    (void)state;
    sk__sched_policy p = sk__sched_policy_default();
    p.backoff_max_ms = 100;
    sk__err err;
    sk__sched s;
    assert_int_equal(sk__sched_init(&s, &p, NULL, &err), SK_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "backoff_max_ms"));
    /* Still usable: fresh with the default policy. */
    assert_int_equal(s.policy.backoff_max_ms, 30000);
    p = sk__sched_policy_default();
    p.interval_ms = 0;
    assert_int_equal(sk__sched_policy_check(&p, &err), SK_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "interval_ms"));
}

static void test_backoff_doubles_from_min_to_cap(void **state)
{
    (void)state;
    sk__sched_policy p = sk__sched_policy_default();
    const int64_t want[] = {500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000};
    for (size_t i = 0; i < SK__ARRAY_LEN(want); i++) {
        /* The highest draw gives the full base d, the lowest d/2. */
        assert_int_equal(sk__sched_backoff_delay(&p, (int64_t)i + 1, UINT64_MAX), want[i]);
        assert_int_equal(sk__sched_backoff_delay(&p, (int64_t)i + 1, 0), want[i] / 2);
    }
    /* Through the state machine: each failure plans now + the next delay. */
    sk__sched s;
    fake_env f;
    init_fake(&s, &f, UINT64_MAX);
    for (size_t i = 0; i < SK__ARRAY_LEN(want); i++) {
        f.now += 100000;
        sk__sched_on_failure(&s, f.now, 0, "HTTP 503", 0);
        assert_int_equal(s.consecutive_failures, (int64_t)i + 1);
        assert_int_equal(s.next_attempt_wall_ms - f.now, want[i]);
    }
}

static void test_backoff_never_overflows_on_long_streaks(void **state)
{
    (void)state;
    sk__sched_policy p = sk__sched_policy_default();
    assert_int_equal(sk__sched_backoff_delay(&p, 64, UINT64_MAX), 30000);
    assert_int_equal(sk__sched_backoff_delay(&p, INT64_MAX, UINT64_MAX), 30000);
    p.backoff_max_ms = INT64_MAX;
    assert_true(sk__sched_backoff_delay(&p, 200, UINT64_MAX) > 0);
}

/* Checks equal-jitter bounds for one policy over extreme and many random draws. */
static void check_jitter_bounds(const sk__sched_policy *p)
{
    uint64_t stream = 42;
    for (int64_t n = 1; n <= 16; n++) {
        int64_t d = sk__sched_backoff_delay(p, n, UINT64_MAX);
        int64_t lo = d - d / 2; /* ceil(d/2) */
        assert_int_equal(sk__sched_backoff_delay(p, n, 0), lo);
        int64_t seen_min = INT64_MAX, seen_max = 0;
        for (int i = 0; i < 5000; i++) {
            int64_t delay = sk__sched_backoff_delay(p, n, splitmix(&stream));
            assert_true(delay >= lo && delay <= d);
            assert_true(delay >= p->backoff_min_ms - p->backoff_min_ms / 2);
            assert_true(delay <= p->backoff_max_ms);
            seen_min = delay < seen_min ? delay : seen_min;
            seen_max = delay > seen_max ? delay : seen_max;
        }
        /* The draws spread over the range rather than sticking to one end. */
        if (d >= 1000) {
            assert_true(seen_min < lo + d / 20);
            assert_true(seen_max > d - d / 20);
        }
    }
}

static void test_jitter_bounds_hold_over_many_draws(void **state)
{
    (void)state;
    sk__sched_policy p = sk__sched_policy_default();
    check_jitter_bounds(&p);
    /* Odd values exercise the rounding of d/2. */
    p.backoff_min_ms = 333;
    p.backoff_max_ms = 10001;
    check_jitter_bounds(&p);
    p.backoff_min_ms = 1;
    p.backoff_max_ms = 1;
    check_jitter_bounds(&p);
}

static void test_success_resets_backoff(void **state)
{
    (void)state;
    sk__sched s;
    fake_env f;
    init_fake(&s, &f, UINT64_MAX);
    for (int i = 0; i < 6; i++)
        sk__sched_on_failure(&s, f.now, 0, "HTTP 502", 0);
    assert_int_equal(s.next_attempt_wall_ms - f.now, 16000);
    f.now += 20000;
    sk__sched_on_success(&s, f.now, 0);
    assert_int_equal(s.consecutive_failures, 0);
    assert_string_equal(s.last_error, "");
    assert_int_equal(s.last_success_wall_ms, f.now);
    assert_int_equal(s.connection, SK__CONN_CONNECTED);
    f.now += 1000;
    sk__sched_on_failure(&s, f.now, 0, "HTTP 502", 0);
    assert_int_equal(s.consecutive_failures, 1);
    assert_int_equal(s.next_attempt_wall_ms - f.now, 500);
}

static void test_failure_records_reason_truncated(void **state)
{
    (void)state;
    sk__sched s;
    fake_env f;
    init_fake(&s, &f, 0);
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    sk__sched_on_failure(&s, f.now, 0, big, 0);
    assert_int_equal(strlen(s.last_error), sizeof s.last_error - 1);
    sk__sched_on_failure(&s, f.now, 0, NULL, 0);
    assert_string_equal(s.last_error, "");
    assert_int_equal(s.last_attempt_wall_ms, f.now);
}

static void test_retry_after_is_a_floor(void **state)
{
    (void)state;
    sk__sched s;
    fake_env f;
    init_fake(&s, &f, UINT64_MAX);
    /* Larger than the first backoff (500) and than the spacing (5000). */
    sk__sched_on_failure(&s, f.now, 7000, "HTTP 429", 0);
    assert_int_equal(sk__sched_next_due(&s, f.now, 1, 1), f.now + 7000);
    assert_int_equal(sk__sched_explicit_due(&s, f.now), f.now + 7000);
    /* Larger than the backoff cap: still honoured, for sync now too. */
    f.now += 10000;
    sk__sched_on_failure(&s, f.now, 120000, "HTTP 503", 0);
    assert_int_equal(sk__sched_next_due(&s, f.now, 1, 0), f.now + 120000);
    assert_int_equal(sk__sched_explicit_due(&s, f.now + 1000), f.now + 120000);
    /* Once it has passed, sync now may go at once. */
    assert_int_equal(sk__sched_explicit_due(&s, f.now + 120001), f.now + 120001);
}

static void test_retry_after_seen_without_failure_is_kept(void **state)
{
    (void)state;
    sk__sched s;
    fake_env f;
    init_fake(&s, &f, 0);
    sk__sched_note_retry_after(&s, f.now, 60000);
    sk__sched_note_retry_after(&s, f.now, 1000); /* an earlier floor does not shorten it */
    assert_int_equal(s.retry_after_until_wall_ms, f.now + 60000);
    assert_int_equal(sk__sched_next_due(&s, f.now, 1, 1), f.now + 60000);
    sk__sched_note_retry_after(&s, f.now, -5); /* none given */
    assert_int_equal(s.retry_after_until_wall_ms, f.now + 60000);
}

static void test_retry_after_is_capped(void **state)
{
    (void)state;
    sk__sched s;
    fake_env f;
    init_fake(&s, &f, 0);
    sk__sched_on_failure(&s, f.now, INT64_MAX, "HTTP 503", 0);
    assert_int_equal(s.retry_after_until_wall_ms, f.now + s.policy.retry_after_max_ms);
    assert_int_equal(sk__sched_explicit_due(&s, f.now), f.now + s.policy.retry_after_max_ms);
}

static void test_background_batches_are_spaced(void **state)
{
    (void)state;
    sk__sched s;
    fake_env f;
    init_fake(&s, &f, 0);
    sk__sched_on_success(&s, f.now, 1); /* a full batch: more events wait */
    assert_int_equal(sk__sched_batch_allowed_at(&s), f.now + 5000);
    assert_int_equal(sk__sched_next_due(&s, f.now + 1, 1, 0), f.now + 5000);
    assert_int_equal(sk__sched_next_due(&s, f.now + 1, 1, 1), f.now + 5000);
    assert_int_equal(sk__sched_next_due(&s, f.now + 6000, 1, 0), f.now + 6000);
    /* sync now bypasses the spacing. */
    assert_int_equal(sk__sched_explicit_due(&s, f.now + 1), f.now + 1);
    /* A quick failure is also spaced for background retries. */
    sk__sched_on_failure(&s, f.now + 6000, 0, "timeout", 1);
    assert_int_equal(sk__sched_next_due(&s, f.now + 6000, 1, 0), f.now + 11000);
}

static void test_a_streaming_transport_sends_an_emitted_event_at_once(void **state)
{
    (void)state;
    sk__sched s;
    fake_env f;
    init_fake(&s, &f, 0);
    /* The scheduler learns from a pass that its transport streams. */
    sk_drain_summary sent = {.batches = 1, .synced = 1};
    sk__pass_info info = {.streaming = 1};
    sk__sched_record_pass(&s, f.now, SK_OK, &sent, &info);
    assert_true(s.streaming);
    /* No batch spacing: the poke of an emit is due at once... */
    assert_int_equal(sk__sched_next_due(&s, f.now + 1, 1, 1), f.now + 1);
    /* ...still floored by the server's Retry-After and by the backoff. */
    sk__sched_note_retry_after(&s, f.now + 1, 3000);
    assert_int_equal(sk__sched_next_due(&s, f.now + 2, 1, 1), f.now + 3001);
    sk__sched_on_failure(&s, f.now + 4000, 0, "HTTP 503", 0);
    assert_true(sk__sched_next_due(&s, f.now + 4001, 1, 1) >= f.now + 4000 + 250);
}

static void test_idle_queue_has_no_due_time(void **state)
{
    (void)state;
    sk__sched s;
    fake_env f;
    init_fake(&s, &f, 0);
    assert_true(sk__sched_next_due(&s, f.now, 0, 0) == INT64_MAX);
    assert_true(sk__sched_next_due(&s, f.now, 0, 1) == INT64_MAX);
    sk__sched_on_failure(&s, f.now, 0, "HTTP 500", 0);
    assert_true(sk__sched_next_due(&s, f.now, 0, 0) == INT64_MAX);
    /* With events waiting, a fresh scheduler flushes at once. */
    sk__sched fresh;
    init_fake(&fresh, &f, 0);
    assert_int_equal(sk__sched_next_due(&fresh, f.now, 1, 0), f.now);
}

static void test_periodic_flush_follows_the_interval(void **state)
{
    (void)state;
    sk__sched s;
    fake_env f;
    init_fake(&s, &f, 0);
    sk__sched_on_success(&s, f.now, 0);
    assert_int_equal(sk__sched_next_due(&s, f.now + 10000, 1, 0), f.now + 300000);
    assert_int_equal(sk__sched_next_due(&s, f.now + 400000, 1, 0), f.now + 400000);
}

static void test_poke_makes_flush_due_now(void **state)
{
    (void)state;
    sk__sched s;
    fake_env f;
    init_fake(&s, &f, UINT64_MAX);
    sk__sched_on_success(&s, f.now, 0);
    int64_t later = f.now + 60000;
    assert_int_equal(sk__sched_next_due(&s, later, 1, 1), later);
    /* ...but not while backing off. */
    sk__sched_on_failure(&s, later, 0, "HTTP 500", 0);
    for (int i = 0; i < 4; i++)
        sk__sched_on_failure(&s, later, 0, "HTTP 500", 0);
    assert_int_equal(sk__sched_next_due(&s, later + 1, 1, 1), later + 8000);
}

static void test_auth_block_stops_background_until_cleared(void **state)
{
    (void)state;
    sk__sched s;
    fake_env f;
    init_fake(&s, &f, 0);
    sk__sched_on_auth_blocked(&s, "session expired: run spec-kitty auth login");
    assert_true(sk__sched_next_due(&s, f.now, 1, 1) == INT64_MAX);
    assert_int_equal(s.connection, SK__CONN_OFFLINE_BATCH);
    assert_string_equal(s.auth_reason, "session expired: run spec-kitty auth login");
    /* An explicit sync still runs and reports the auth problem to the user. */
    assert_int_equal(sk__sched_explicit_due(&s, f.now), f.now);
    sk__sched_clear_auth_blocked(&s);
    assert_false(s.auth_blocked);
    assert_int_equal(s.connection, SK__CONN_OFFLINE);
    assert_int_equal(sk__sched_next_due(&s, f.now, 1, 1), f.now);
    /* A success also proves auth works again. */
    sk__sched_on_auth_blocked(&s, "no login");
    sk__sched_on_success(&s, f.now, 0);
    assert_false(s.auth_blocked);
    assert_string_equal(s.auth_reason, "");
}

static void test_connection_state_follows_outcomes(void **state)
{
    (void)state;
    sk__sched s;
    fake_env f;
    init_fake(&s, &f, 0);
    assert_int_equal(s.connection, SK__CONN_OFFLINE);
    sk__sched_on_failure(&s, f.now, 0, "connection refused", 1);
    assert_int_equal(s.connection, SK__CONN_OFFLINE); /* never reached the server */
    sk__sched_on_failure(&s, f.now, 0, "HTTP 503", 0);
    assert_int_equal(s.connection, SK__CONN_RECONNECTING);
    sk__sched_on_success(&s, f.now, 0);
    assert_int_equal(s.connection, SK__CONN_CONNECTED);
    sk__sched_on_failure(&s, f.now, 0, "connection refused", 1);
    assert_int_equal(s.connection, SK__CONN_RECONNECTING);
    while (s.consecutive_failures < s.policy.reconnect_attempts_max - 1) {
        sk__sched_on_failure(&s, f.now, 0, "connection refused", 1);
        assert_int_equal(s.connection, SK__CONN_RECONNECTING);
    }
    sk__sched_on_failure(&s, f.now, 0, "connection refused", 1);
    assert_int_equal(s.connection, SK__CONN_OFFLINE_BATCH);
}

static void test_connection_state_names(void **state)
{
    (void)state;
    assert_string_equal(sk__sched_connection_name(SK__CONN_OFFLINE), "Offline");
    assert_string_equal(sk__sched_connection_name(SK__CONN_CONNECTED), "Connected");
    assert_string_equal(sk__sched_connection_name(SK__CONN_RECONNECTING), "Reconnecting");
    assert_string_equal(sk__sched_connection_name(SK__CONN_OFFLINE_BATCH), "OfflineBatchMode");
    assert_string_equal(sk__sched_connection_name((sk__conn_state)99), "Unknown");
    sk__conn_state c;
    assert_int_equal(sk__sched_connection_parse("OfflineBatchMode", &c), 0);
    assert_int_equal(c, SK__CONN_OFFLINE_BATCH);
    assert_int_equal(sk__sched_connection_parse("Reconnecting", &c), 0);
    assert_int_equal(c, SK__CONN_RECONNECTING);
    assert_int_equal(sk__sched_connection_parse("offline", &c), -1);
}

static void test_clock_jumping_back_does_not_stall(void **state)
{
    (void)state;
    sk__sched s;
    fake_env f;
    init_fake(&s, &f, 0);
    sk__sched_on_success(&s, f.now, 0);
    int64_t back = f.now - INT64_C(86400000); /* the wall clock went a day back */
    assert_int_equal(sk__sched_next_due(&s, back, 1, 0), back + 300000);
    assert_int_equal(sk__sched_next_due(&s, back, 1, 1), back + 5000);
    sk__sched_on_failure(&s, f.now, 0, "HTTP 500", 0);
    assert_true(sk__sched_next_due(&s, back, 1, 0) <= back + s.policy.retry_after_max_ms);
}

/* Fresh temp state root for persistence tests. */
static char *make_root(void)
{
    return sk_test_mkdtemp();
}

static void test_state_round_trips_across_restart(void **state)
{
    (void)state;
    char *root = make_root();
    sk__sched s;
    fake_env f;
    init_fake(&s, &f, 12345);
    sk__sched_on_success(&s, f.now - 50000, 0);
    for (int i = 0; i < 3; i++)
        sk__sched_on_failure(&s, f.now + 123, 90000, "HTTP 429: slow down \"please\"", 0);
    sk__sched_on_auth_blocked(&s, "token refresh refused");
    sk__sched_clear_auth_blocked(&s);
    sk__err err;
    assert_int_equal(sk__sched_save(&s, root, &err), SK_OK);

    char path[4096];
    snprintf(path, sizeof path, "%s/sync-state.json", root);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* A "restart": a new scheduler with another env loads the file. */
    sk__sched back;
    fake_env f2;
    init_fake(&back, &f2, 0);
    assert_int_equal(sk__sched_load(&back, root, &err), SK_OK);
    assert_int_equal(back.consecutive_failures, 3);
    assert_int_equal(back.next_attempt_wall_ms, s.next_attempt_wall_ms);
    assert_int_equal(back.last_attempt_wall_ms, f.now + 123);
    assert_int_equal(back.last_success_wall_ms, f.now - 50000);
    assert_int_equal(back.retry_after_until_wall_ms, f.now + 123 + 90000);
    assert_string_equal(back.last_error, "HTTP 429: slow down \"please\"");
    assert_int_equal(back.connection, s.connection);
    assert_int_equal(back.auth_blocked, 0);
    /* The server's wait survives the restart. */
    assert_int_equal(sk__sched_next_due(&back, f.now + 200, 1, 1), f.now + 123 + 90000);

    /* And a blocked session survives too. */
    sk__sched_on_auth_blocked(&s, "session expired");
    assert_int_equal(sk__sched_save(&s, root, &err), SK_OK);
    assert_int_equal(sk__sched_load(&back, root, &err), SK_OK);
    assert_true(back.auth_blocked);
    assert_string_equal(back.auth_reason, "session expired");
    assert_int_equal(back.connection, SK__CONN_OFFLINE_BATCH);
    sk_test_rmtree(root);
    free(root);
}

static void test_saved_file_is_readable_json(void **state)
{
    (void)state;
    char *root = make_root();
    sk__sched s;
    fake_env f;
    init_fake(&s, &f, 0);
    sk__sched_on_success(&s, T0, 0);
    assert_int_equal(sk__sched_save(&s, root, NULL), SK_OK);
    char path[4096], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/sync-state.json", root);
    assert_int_equal(sk__read_file(path, &text, &len, NULL), SK_OK);
    assert_non_null(strstr(text, "\"last_success\": \"2026-11-25T09:18:44.000Z\""));
    assert_non_null(strstr(text, "\"connection\": \"Connected\""));
    assert_non_null(strstr(text, "\"last_error\": null"));
    assert_non_null(strstr(text, "\"retry_after_until\": null"));
    free(text);
    sk_test_rmtree(root);
    free(root);
}

static void test_missing_state_file_starts_fresh(void **state)
{
    (void)state;
    char *root = make_root();
    sk__sched s;
    fake_env f;
    init_fake(&s, &f, 0);
    sk__sched_on_failure(&s, f.now, 5000, "x", 0);
    sk__err err;
    assert_int_equal(sk__sched_load(&s, root, &err), SK_OK);
    assert_int_equal(s.consecutive_failures, 0);
    assert_int_equal(s.retry_after_until_wall_ms, 0);
    assert_int_equal(s.connection, SK__CONN_OFFLINE);
    sk_test_rmtree(root);
    free(root);
}

/* Writes text as the state file and expects load to fail naming the file and what. */
static void expect_corrupt(const char *root, const char *text, const char *what)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/sync-state.json", root);
    sk_test_write_file(path, text);
    sk__sched s;
    fake_env f;
    init_fake(&s, &f, 0);
    sk__err err;
    assert_int_equal(sk__sched_load(&s, root, &err), SK_ERR_IO);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, what));
    /* The caller goes on with a fresh state. */
    assert_int_equal(s.consecutive_failures, 0);
    assert_int_equal(s.next_attempt_wall_ms, 0);
    assert_int_equal(s.connection, SK__CONN_OFFLINE);
}

static void test_corrupt_state_file_is_an_error_naming_the_file(void **state)
{
    (void)state;
    char *root = make_root();
    expect_corrupt(root, "{\"consecutive_failures\": 3, \"next_att", "corrupt");
    expect_corrupt(root, "[1, 2]", "document");
    expect_corrupt(root, "{\"consecutive_failures\": \"three\"}", "consecutive_failures");
    expect_corrupt(root, "{\"consecutive_failures\": -1}", "consecutive_failures");
    expect_corrupt(root, "{\"next_attempt\": \"2026-13-01T00:00:00.000Z\"}", "next_attempt");
    expect_corrupt(root, "{\"last_success\": \"yesterday\"}", "last_success");
    expect_corrupt(root, "{\"retry_after_until\": 17}", "retry_after_until");
    expect_corrupt(root, "{\"connection\": \"Sleeping\"}", "connection");
    expect_corrupt(root, "{\"auth_blocked\": \"yes\"}", "auth_blocked");
    expect_corrupt(root, "{\"fallback\": 1}", "fallback");
    sk_test_rmtree(root);
    free(root);
}

/* ---- passes, in-pass waits, shutdown ---- */

static sk_drain_summary summary(int64_t batches, int64_t remaining, int64_t retry_after_ms,
                                const char *reason)
{
    sk_drain_summary sum = {.batches = batches, .remaining = remaining,
                            .retry_after_ms = retry_after_ms};
    snprintf(sum.stop_reason, sizeof sum.stop_reason, "%s", reason);
    return sum;
}

static void test_pass_the_server_never_answered_leaves_the_connection_offline(void **state)
{
    (void)state;
    sk__sched s;
    fake_env f;
    init_fake(&s, &f, 0);
    sk_drain_summary sum = summary(1, 3, 0, "Connection refused");
    sk__pass_info info = {.unreachable = 1};
    assert_true(sk__sched_record_pass(&s, f.now, SK_ERR_TRANSPORT, &sum, &info));
    assert_int_equal(s.connection, SK__CONN_OFFLINE);
    assert_int_equal(s.consecutive_failures, 1);
    assert_string_equal(s.last_error, "Connection refused");
    info.unreachable = 0; /* the server answered with an error: it is there */
    sum = summary(1, 3, 0, "HTTP 503");
    assert_true(sk__sched_record_pass(&s, f.now, SK_ERR_TRANSPORT, &sum, &info));
    assert_int_equal(s.connection, SK__CONN_RECONNECTING);
}

static void test_retry_after_waited_out_in_a_pass_sets_no_floor(void **state)
{
    (void)state;
    sk__sched s;
    fake_env f;
    init_fake(&s, &f, 0);
    sk_drain_summary sum = summary(2, 0, 2000, "");
    assert_true(sk__sched_record_pass(&s, f.now, SK_OK, &sum, NULL));
    assert_int_equal(s.connection, SK__CONN_CONNECTED);
    assert_int_equal(sk__sched_explicit_due(&s, f.now), f.now);
}

static void test_pass_stopped_by_retry_after_floors_the_next_explicit_pass(void **state)
{
    (void)state;
    sk__sched s;
    fake_env f;
    init_fake(&s, &f, 0);
    sk_drain_summary sum = summary(1, 5, 900000, "the server asked to wait 900 s");
    assert_true(sk__sched_record_pass(&s, f.now, SK_ERR_TRANSPORT, &sum, NULL));
    assert_int_equal(sk__sched_explicit_due(&s, f.now + 1000), f.now + 900000);
}

static void test_cancelled_deferred_and_empty_passes_change_nothing(void **state)
{
    (void)state;
    sk__sched s;
    fake_env f;
    init_fake(&s, &f, 0);
    sk_drain_summary sum = summary(1, 5, 0, "cancelled");
    assert_false(sk__sched_record_pass(&s, f.now, SK_ERR_CANCELLED, &sum, NULL));
    sk__pass_info deferred = {.deferred = 1};
    sum = summary(0, 5, 600000, "the server asked to wait 600 s");
    assert_false(sk__sched_record_pass(&s, f.now, SK_ERR_TRANSPORT, &sum, &deferred));
    sum = summary(0, 0, 0, "");
    assert_false(sk__sched_record_pass(&s, f.now, SK_OK, &sum, NULL));
    assert_int_equal(s.consecutive_failures, 0);
    assert_int_equal(s.last_attempt_wall_ms, 0);
    assert_int_equal(s.connection, SK__CONN_OFFLINE);
}

static void test_auth_failure_of_a_pass_blocks_background_flushes(void **state)
{
    (void)state;
    sk__sched s;
    fake_env f;
    init_fake(&s, &f, 0);
    sk_drain_summary sum = summary(1, 5, 0, "session expired");
    assert_true(sk__sched_record_pass(&s, f.now, SK_ERR_SESSION_EXPIRED, &sum, NULL));
    assert_true(s.auth_blocked);
    assert_int_equal(sk__sched_next_due(&s, f.now, 1, 1), INT64_MAX);
}

/* A scheduler whose policy falls back after 3 failed streaming passes. */
static void init_fallback(sk__sched *s, fake_env *f)
{
    init_fake(s, f, 0);
    s->policy.fallback_after = 3;
}

static void test_streaming_failures_in_a_row_start_the_fallback(void **state)
{
    (void)state;
    sk__sched s;
    fake_env f;
    init_fallback(&s, &f);
    sk_drain_summary sum = summary(1, 5, 0, "Connection refused");
    sk__pass_info info = {.unreachable = 1, .may_fall_back = 1};
    for (int i = 1; i <= 2; i++) {
        assert_true(sk__sched_record_pass(&s, f.now, SK_ERR_TRANSPORT, &sum, &info));
        assert_false(s.fallback);
        assert_int_not_equal(s.connection, SK__CONN_OFFLINE_BATCH);
    }
    int64_t before = s.next_attempt_wall_ms;
    assert_true(sk__sched_record_pass(&s, f.now, SK_ERR_TRANSPORT, &sum, &info));
    assert_true(s.fallback);
    assert_int_equal(s.connection, SK__CONN_OFFLINE_BATCH);
    assert_true(s.next_attempt_wall_ms > before); /* the backoff still spaces the attempts */
}

static void test_no_fallback_without_policy_or_for_a_transport_that_cannot(void **state)
{
    (void)state;
    sk__sched s;
    fake_env f;
    sk_drain_summary sum = summary(1, 5, 0, "Connection refused");
    init_fake(&s, &f, 0); /* fallback_after 0: none configured */
    sk__pass_info info = {.may_fall_back = 1};
    for (int i = 0; i < 5; i++)
        sk__sched_record_pass(&s, f.now, SK_ERR_TRANSPORT, &sum, &info);
    assert_false(s.fallback);
    assert_int_equal(s.connection, SK__CONN_RECONNECTING);
    init_fallback(&s, &f); /* not streaming, or no probe: the engine says it cannot */
    info.may_fall_back = 0;
    for (int i = 0; i < 5; i++)
        sk__sched_record_pass(&s, f.now, SK_ERR_TRANSPORT, &sum, &info);
    assert_false(s.fallback);
    assert_int_equal(s.connection, SK__CONN_RECONNECTING);
}

static void test_fallback_passes_stay_offline_batch_mode_until_back_online(void **state)
{
    (void)state;
    sk__sched s;
    fake_env f;
    init_fallback(&s, &f);
    s.fallback = 1;
    s.connection = SK__CONN_OFFLINE_BATCH;
    s.consecutive_failures = 3;
    sk_drain_summary sum = summary(1, 0, 0, "");
    sk__pass_info info = {0}; /* a pass through the fallback transport */
    assert_true(sk__sched_record_pass(&s, f.now, SK_OK, &sum, &info));
    assert_int_equal(s.connection, SK__CONN_OFFLINE_BATCH);
    assert_int_equal(s.consecutive_failures, 0);
    assert_true(s.fallback);
    sum = summary(1, 5, 0, "HTTP 503"); /* the fallback failing keeps the mode too */
    assert_true(sk__sched_record_pass(&s, f.now, SK_ERR_TRANSPORT, &sum, &info));
    assert_int_equal(s.connection, SK__CONN_OFFLINE_BATCH);
    assert_true(s.fallback);
    /* The probe connected; the pass then found nothing to send: Connected all the same. */
    info.back_online = 1;
    sum = summary(0, 0, 0, "");
    assert_true(sk__sched_record_pass(&s, f.now, SK_OK, &sum, &info));
    assert_false(s.fallback);
    assert_int_equal(s.connection, SK__CONN_CONNECTED);
    info.back_online = 0;
    sum = summary(1, 0, 0, "");
    assert_true(sk__sched_record_pass(&s, f.now, SK_OK, &sum, &info));
    assert_int_equal(s.connection, SK__CONN_CONNECTED);
}

static void test_an_idle_service_in_fallback_probes_again_after_the_backoff_maximum(void **state)
{
    (void)state;
    sk__sched s;
    fake_env f;
    init_fallback(&s, &f);
    s.policy.backoff_max_ms = 30000;
    assert_int_equal(sk__sched_next_due(&s, f.now, 0, 0), INT64_MAX); /* idle, streaming */
    sk_drain_summary sum = summary(1, 5, 0, "Connection refused");
    sk__pass_info info = {.unreachable = 1, .may_fall_back = 1};
    for (int i = 0; i < 3; i++)
        sk__sched_record_pass(&s, f.now, SK_ERR_TRANSPORT, &sum, &info);
    assert_true(s.fallback);
    /* Nothing to send: a pass (the probe) is due after the backoff maximum, not never. */
    assert_int_equal(sk__sched_next_due(&s, f.now, 0, 0), f.now + 30000);
    f.now += 30000;
    assert_int_equal(sk__sched_next_due(&s, f.now, 0, 0), f.now);
    /* That empty pass probed without success: the next probe is one maximum later. */
    sum = summary(0, 0, 0, "");
    sk__pass_info fell_back = {.probed = 1};
    sk__sched_record_pass(&s, f.now, SK_OK, &sum, &fell_back);
    assert_true(s.fallback);
    assert_int_equal(sk__sched_next_due(&s, f.now, 0, 0), f.now + 30000);
    /* The probe connected: idle again means no pass at all. */
    fell_back.back_online = 1;
    assert_true(sk__sched_record_pass(&s, f.now, SK_OK, &sum, &fell_back));
    assert_false(s.fallback);
    assert_int_equal(sk__sched_next_due(&s, f.now, 0, 0), INT64_MAX);
}

static void test_fallback_passes_probe_once_per_backoff_maximum(void **state)
{
    (void)state;
    sk__sched s;
    fake_env f;
    init_fallback(&s, &f);
    s.policy.backoff_max_ms = 30000;
    sk_drain_summary failed = summary(1, 5, 0, "Connection refused");
    sk__pass_info info = {.unreachable = 1, .may_fall_back = 1};
    for (int i = 0; i < 3; i++)
        sk__sched_record_pass(&s, f.now, SK_ERR_TRANSPORT, &failed, &info);
    assert_true(s.fallback);
    /* Entering the fallback followed failed passes: the first probe is one maximum away. */
    assert_false(sk__sched_probe_due(&s, f.now, 0));
    assert_false(sk__sched_probe_due(&s, f.now + 29999, 0));
    assert_true(sk__sched_probe_due(&s, f.now, 1)); /* `sync now` asks for the best path */
    /* Passes through the fallback meanwhile do not probe, and move nothing. */
    f.now += 10000;
    sk_drain_summary sent = summary(1, 0, 0, "");
    sent.synced = 5;
    sk__pass_info fell_back = {0};
    sk__sched_record_pass(&s, f.now, SK_OK, &sent, &fell_back);
    assert_false(sk__sched_probe_due(&s, f.now + 19999, 0));
    assert_true(sk__sched_probe_due(&s, f.now + 20000, 0));
    /* A pass that probed in vain: the next probe one maximum after it. */
    f.now += 20000;
    fell_back.probed = 1;
    sk__sched_record_pass(&s, f.now, SK_OK, &sent, &fell_back);
    assert_false(sk__sched_probe_due(&s, f.now + 29999, 0));
    assert_true(sk__sched_probe_due(&s, f.now + 30000, 0));
}

static void test_fallback_survives_a_restart(void **state)
{
    (void)state;
    char *root = make_root();
    sk__sched s, back;
    fake_env f;
    init_fallback(&s, &f);
    init_fallback(&back, &f);
    s.fallback = 1;
    s.connection = SK__CONN_OFFLINE_BATCH;
    sk__err err;
    assert_int_equal(sk__sched_save(&s, root, &err), SK_OK);
    assert_int_equal(sk__sched_load(&back, root, &err), SK_OK);
    assert_true(back.fallback);
    assert_int_equal(back.connection, SK__CONN_OFFLINE_BATCH);
    s.fallback = 0;
    assert_int_equal(sk__sched_save(&s, root, &err), SK_OK);
    assert_int_equal(sk__sched_load(&back, root, &err), SK_OK);
    assert_false(back.fallback);
    sk_test_rmtree(root);
    free(root);
}

static void test_in_pass_waits_follow_one_cap_and_a_count(void **state)
{
    (void)state;
    sk__sched_policy p = sk__sched_policy_default();
    assert_true(sk__sched_waits_in_pass(&p, 2000, 1));
    assert_true(sk__sched_waits_in_pass(&p, p.retry_wait_max_ms, p.retry_waits_max));
    assert_false(sk__sched_waits_in_pass(&p, p.retry_wait_max_ms + 1, 1));
    assert_false(sk__sched_waits_in_pass(&p, 2000, p.retry_waits_max + 1));
    p.retry_after_max_ms = 60000; /* the cap on server waits bounds in-pass waits too */
    assert_true(sk__sched_waits_in_pass(&p, 24LL * 3600 * 1000, 1));
    assert_int_equal(sk__sched_pass_batches(1, 0), 0);
    assert_int_equal(sk__sched_pass_batches(0, 0), 1);
    assert_int_equal(sk__sched_pass_batches(0, 1), 0); /* a streaming transport drains */
}

static void test_empty_background_pass_pauses_the_next_one_briefly(void **state)
{
    (void)state;
    sk__sched s;
    fake_env f;
    init_fake(&s, &f, 0);
    assert_int_equal(sk__sched_next_due(&s, f.now, 1, 1), f.now);
    sk__sched_on_empty_pass(&s, f.now);
    assert_int_equal(sk__sched_next_due(&s, f.now, 1, 1), f.now + s.policy.empty_pass_pause_ms);
}

static void test_shutdown_waits_then_cancels_then_abandons(void **state)
{
    (void)state;
    sk__shutdown sd;
    int64_t wait;
    sk__shutdown_begin(&sd, 1000, 5000);
    assert_int_equal(sk__shutdown_next(&sd, 1000, &wait), SK__SHUTDOWN_WAIT);
    assert_int_equal(wait, 5000);
    assert_int_equal(sk__shutdown_next(&sd, 4000, &wait), SK__SHUTDOWN_WAIT);
    assert_int_equal(wait, 2000);
    assert_int_equal(sk__shutdown_next(&sd, 6000, &wait), SK__SHUTDOWN_CANCEL);
    assert_int_equal(wait, SK__SHUTDOWN_CANCEL_GRACE_MS);
    assert_int_equal(sk__shutdown_next(&sd, 6500, &wait), SK__SHUTDOWN_WAIT);
    assert_int_equal(sk__shutdown_next(&sd, 6000 + SK__SHUTDOWN_CANCEL_GRACE_MS, &wait),
                     SK__SHUTDOWN_ABANDON);
    sk__shutdown_begin(&sd, 1000, 0); /* no grace: cancel at once */
    assert_int_equal(sk__shutdown_next(&sd, 1000, &wait), SK__SHUTDOWN_CANCEL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_match_the_contract),
        cmocka_unit_test(test_clock_and_random_are_injected),
        cmocka_unit_test(test_bad_policy_is_refused_naming_the_field),
        cmocka_unit_test(test_backoff_doubles_from_min_to_cap),
        cmocka_unit_test(test_backoff_never_overflows_on_long_streaks),
        cmocka_unit_test(test_jitter_bounds_hold_over_many_draws),
        cmocka_unit_test(test_success_resets_backoff),
        cmocka_unit_test(test_failure_records_reason_truncated),
        cmocka_unit_test(test_retry_after_is_a_floor),
        cmocka_unit_test(test_retry_after_seen_without_failure_is_kept),
        cmocka_unit_test(test_retry_after_is_capped),
        cmocka_unit_test(test_background_batches_are_spaced),
        cmocka_unit_test(test_a_streaming_transport_sends_an_emitted_event_at_once),
        cmocka_unit_test(test_idle_queue_has_no_due_time),
        cmocka_unit_test(test_periodic_flush_follows_the_interval),
        cmocka_unit_test(test_poke_makes_flush_due_now),
        cmocka_unit_test(test_auth_block_stops_background_until_cleared),
        cmocka_unit_test(test_connection_state_follows_outcomes),
        cmocka_unit_test(test_connection_state_names),
        cmocka_unit_test(test_clock_jumping_back_does_not_stall),
        cmocka_unit_test(test_state_round_trips_across_restart),
        cmocka_unit_test(test_saved_file_is_readable_json),
        cmocka_unit_test(test_missing_state_file_starts_fresh),
        cmocka_unit_test(test_corrupt_state_file_is_an_error_naming_the_file),
        cmocka_unit_test(test_pass_the_server_never_answered_leaves_the_connection_offline),
        cmocka_unit_test(test_retry_after_waited_out_in_a_pass_sets_no_floor),
        cmocka_unit_test(test_pass_stopped_by_retry_after_floors_the_next_explicit_pass),
        cmocka_unit_test(test_cancelled_deferred_and_empty_passes_change_nothing),
        cmocka_unit_test(test_auth_failure_of_a_pass_blocks_background_flushes),
        cmocka_unit_test(test_streaming_failures_in_a_row_start_the_fallback),
        cmocka_unit_test(test_no_fallback_without_policy_or_for_a_transport_that_cannot),
        cmocka_unit_test(test_fallback_passes_stay_offline_batch_mode_until_back_online),
        cmocka_unit_test(test_an_idle_service_in_fallback_probes_again_after_the_backoff_maximum),
        cmocka_unit_test(test_fallback_passes_probe_once_per_backoff_maximum),
        cmocka_unit_test(test_fallback_survives_a_restart),
        cmocka_unit_test(test_in_pass_waits_follow_one_cap_and_a_count),
        cmocka_unit_test(test_empty_background_pass_pauses_the_next_one_briefly),
        cmocka_unit_test(test_shutdown_waits_then_cancels_then_abandons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
