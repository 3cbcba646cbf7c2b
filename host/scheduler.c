/* Scheduler: when to attempt a flush (see scheduler.h for the rules). */
#include "scheduler.h"
#include "config.h"

#include <assert.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const conn_names[] = {
    [SK__CONN_OFFLINE] = "Offline",
    [SK__CONN_CONNECTED] = "Connected",
    [SK__CONN_RECONNECTING] = "Reconnecting",
    [SK__CONN_OFFLINE_BATCH] = "OfflineBatchMode",
};

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* a + b without signed overflow (b >= 0). */
static int64_t add_sat(int64_t a, int64_t b)
{
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

/* Copies src (NULL: "") into a fixed buffer, truncating. */
static void copy_text(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

sk__sched_policy sk__sched_policy_default(void)
{
    sk__sched_policy p = {
        .interval_ms = sk__config_default_int("schedule.interval_s") * 1000,
        .backoff_min_ms = sk__config_default_int("schedule.backoff_min_ms"),
        .backoff_max_ms = sk__config_default_int("schedule.backoff_max_ms"),
        .min_batch_interval_ms = sk__config_default_int("schedule.min_batch_interval_ms"),
        .retry_after_max_ms = 3600000,
        .reconnect_attempts_max = 10,
        .retry_wait_max_ms = 120000,
        .retry_waits_max = 10,
        .empty_pass_pause_ms = 1000,
        .fallback_after = 0,
    };
    return p;
}

sk_status sk__sched_policy_check(const sk__sched_policy *p, sk__err *err)
{
    if (p->interval_ms <= 0)
        return sk__fail(err, SK_ERR_CONFIG, "scheduler: interval_ms must be > 0");
    if (p->backoff_min_ms <= 0)
        return sk__fail(err, SK_ERR_CONFIG, "scheduler: backoff_min_ms must be > 0");
    if (p->backoff_max_ms < p->backoff_min_ms)
        return sk__fail(err, SK_ERR_CONFIG, "scheduler: backoff_max_ms must be >= backoff_min_ms");
    if (p->min_batch_interval_ms < 0)
        return sk__fail(err, SK_ERR_CONFIG, "scheduler: min_batch_interval_ms must be >= 0");
    if (p->retry_after_max_ms < 0)
        return sk__fail(err, SK_ERR_CONFIG, "scheduler: retry_after_max_ms must be >= 0");
    if (p->reconnect_attempts_max < 1)
        return sk__fail(err, SK_ERR_CONFIG, "scheduler: reconnect_attempts_max must be >= 1");
    if (p->retry_wait_max_ms < 0 || p->retry_waits_max < 0 || p->empty_pass_pause_ms < 0)
        return sk__fail(err, SK_ERR_CONFIG, "scheduler: in-pass waits must be >= 0");
    if (p->fallback_after < 0)
        return sk__fail(err, SK_ERR_CONFIG, "scheduler: fallback_after must be >= 0");
    return SK_OK;
}

static int64_t default_now(void *ctx)
{
    (void)ctx;
    return sk__wall_ms();
}

/* getrandom, falling back to a clock-seeded mix: jitter needs spread, not secrecy. */
static uint64_t default_random(void *ctx)
{
    (void)ctx;
    uint64_t r;
    if (sk__random_bytes(&r, sizeof r, NULL) == SK_OK)
        return r;
    r = (uint64_t)sk__mono_ms() + 0x9e3779b97f4a7c15u;
    r = (r ^ (r >> 30)) * 0xbf58476d1ce4e5b9u;
    r = (r ^ (r >> 27)) * 0x94d049bb133111ebu;
    return r ^ (r >> 31);
}

sk__sched_env sk__sched_env_default(void)
{
    sk__sched_env env = {.now_wall_ms = default_now, .random_u64 = default_random, .ctx = NULL};
    return env;
}

/* Resets the persisted part of the state to "nothing known yet". */
static void reset_state(sk__sched *s)
{
    s->consecutive_failures = 0;
    s->next_attempt_wall_ms = 0;
    s->last_attempt_wall_ms = 0;
    s->last_success_wall_ms = 0;
    s->retry_after_until_wall_ms = 0;
    s->last_error[0] = '\0';
    s->connection = SK__CONN_OFFLINE;
    s->auth_blocked = 0;
    s->auth_reason[0] = '\0';
    s->fallback = 0;
}

sk_status sk__sched_init(sk__sched *s, const sk__sched_policy *policy, const sk__sched_env *env,
                         sk__err *err)
{
    memset(s, 0, sizeof *s);
    s->policy = sk__sched_policy_default();
    s->env = env ? *env : sk__sched_env_default();
    reset_state(s);
    if (policy) {
        sk_status st = sk__sched_policy_check(policy, err);
        if (st != SK_OK)
            return st;
        s->policy = *policy;
    }
    return SK_OK;
}

int64_t sk__sched_now(const sk__sched *s)
{
    return s->env.now_wall_ms(s->env.ctx);
}

/* Backoff base for the n-th failure: min doubled n-1 times, capped (no overflow). */
static int64_t backoff_base(const sk__sched_policy *p, int64_t failures)
{
    int64_t d = p->backoff_min_ms;
    for (int64_t i = 1; i < failures && d < p->backoff_max_ms; i++)
        d = d > p->backoff_max_ms / 2 ? p->backoff_max_ms : d * 2;
    return min64(d, p->backoff_max_ms);
}

int64_t sk__sched_backoff_delay(const sk__sched_policy *p, int64_t failures, uint64_t r)
{
    int64_t d = backoff_base(p, failures < 1 ? 1 : failures);
    uint64_t half = (uint64_t)(d / 2);
    /* Multiply-shift maps r onto [0, half] without modulo bias, monotone in r. */
    uint64_t spread = (uint64_t)(((unsigned __int128)r * (half + 1)) >> 64);
    int64_t delay = (d - (int64_t)half) + (int64_t)spread;
    assert(delay >= d - (int64_t)half && delay <= d && delay <= p->backoff_max_ms);
    return delay;
}

/* Clamps a server-given wait to [0, retry_after_max_ms]. */
static int64_t clamp_retry_after(const sk__sched *s, int64_t retry_after_ms)
{
    if (retry_after_ms <= 0)
        return 0;
    return min64(retry_after_ms, s->policy.retry_after_max_ms);
}

void sk__sched_note_retry_after(sk__sched *s, int64_t now, int64_t retry_after_ms)
{
    int64_t wait = clamp_retry_after(s, retry_after_ms);
    if (wait > 0)
        s->retry_after_until_wall_ms = max64(s->retry_after_until_wall_ms, add_sat(now, wait));
}

void sk__sched_on_success(sk__sched *s, int64_t now, int more_waiting)
{
    s->consecutive_failures = 0;
    s->last_attempt_wall_ms = now;
    s->last_success_wall_ms = now;
    s->last_error[0] = '\0';
    s->connection = s->fallback ? SK__CONN_OFFLINE_BATCH : SK__CONN_CONNECTED;
    s->auth_blocked = 0;
    s->auth_reason[0] = '\0';
    /* More waiting: continue right away; batch spacing still paces it. */
    s->next_attempt_wall_ms = more_waiting ? now : add_sat(now, s->policy.interval_ms);
}

/* Connection state while failing, given whether this failure reached the server. */
static sk__conn_state failing_state(const sk__sched *s, int unreachable)
{
    if (s->auth_blocked || s->fallback ||
        s->consecutive_failures >= s->policy.reconnect_attempts_max)
        return SK__CONN_OFFLINE_BATCH;
    if (unreachable && s->connection == SK__CONN_OFFLINE)
        return SK__CONN_OFFLINE;
    return SK__CONN_RECONNECTING;
}

void sk__sched_on_failure(sk__sched *s, int64_t now, int64_t retry_after_ms, const char *reason,
                          int unreachable)
{
    if (s->consecutive_failures < INT64_MAX)
        s->consecutive_failures++;
    s->last_attempt_wall_ms = now;
    copy_text(s->last_error, sizeof s->last_error, reason);
    uint64_t r = s->env.random_u64(s->env.ctx);
    int64_t delay = sk__sched_backoff_delay(&s->policy, s->consecutive_failures, r);
    int64_t wait = max64(delay, clamp_retry_after(s, retry_after_ms));
    s->next_attempt_wall_ms = add_sat(now, wait);
    sk__sched_note_retry_after(s, now, retry_after_ms);
    s->connection = failing_state(s, unreachable);
}

void sk__sched_on_auth_blocked(sk__sched *s, const char *reason)
{
    s->auth_blocked = 1;
    copy_text(s->auth_reason, sizeof s->auth_reason, reason);
    s->connection = SK__CONN_OFFLINE_BATCH;
}

void sk__sched_clear_auth_blocked(sk__sched *s)
{
    if (!s->auth_blocked)
        return;
    s->auth_blocked = 0;
    s->auth_reason[0] = '\0';
    /* Until the next attempt tells more, fall back to what the streak says. */
    if (s->consecutive_failures == 0)
        s->connection = SK__CONN_OFFLINE;
    else
        s->connection = failing_state(s, 0);
}

int64_t sk__sched_batch_allowed_at(const sk__sched *s)
{
    if (s->last_attempt_wall_ms <= 0)
        return 0;
    return add_sat(s->last_attempt_wall_ms, s->policy.min_batch_interval_ms);
}

/*
 * A stored time t, but never more than horizon beyond now: a wall clock
 * that jumped backwards must not leave t stranded far in the future.
 */
static int64_t bounded(int64_t t, int64_t now, int64_t horizon)
{
    return min64(t, add_sat(now, horizon));
}

/* The Retry-After floor as seen at now. */
static int64_t retry_after_floor(const sk__sched *s, int64_t now)
{
    return bounded(s->retry_after_until_wall_ms, now, s->policy.retry_after_max_ms);
}

int64_t sk__sched_next_due(const sk__sched *s, int64_t now, int queue_nonempty, int poked)
{
    if (s->auth_blocked || (!queue_nonempty && !s->fallback))
        return INT64_MAX;
    const sk__sched_policy *p = &s->policy;
    if (!queue_nonempty) /* in fallback, idle: only the probe of the streaming transport */
        return max64(now, bounded(s->probe_due_wall_ms, now, p->backoff_max_ms));
    int64_t due;
    if (s->consecutive_failures > 0)
        due =
            bounded(s->next_attempt_wall_ms, now, max64(p->backoff_max_ms, p->retry_after_max_ms));
    else if (poked)
        due = now;
    else
        due = bounded(s->next_attempt_wall_ms, now, p->interval_ms);
    if (!s->streaming)
        due = max64(due, bounded(sk__sched_batch_allowed_at(s), now, p->min_batch_interval_ms));
    due = max64(due, retry_after_floor(s, now));
    due = max64(due, bounded(s->paused_until_wall_ms, now, p->empty_pass_pause_ms));
    return max64(due, now);
}

int sk__sched_probe_due(const sk__sched *s, int64_t now, int explicit_pass)
{
    return explicit_pass || now >= s->probe_due_wall_ms;
}

int64_t sk__sched_explicit_due(const sk__sched *s, int64_t now)
{
    return max64(now, retry_after_floor(s, now));
}

int64_t sk__sched_pass_batches(int explicit_pass, int streaming)
{
    return explicit_pass || streaming ? 0 : 1;
}

int sk__sched_waits_in_pass(const sk__sched_policy *p, int64_t ms, int64_t waits)
{
    return min64(ms, p->retry_after_max_ms) <= p->retry_wait_max_ms && waits <= p->retry_waits_max;
}

/* The streaming transport answered again: passes leave the fallback. */
static int leave_fallback(sk__sched *s)
{
    if (!s->fallback)
        return 0;
    s->fallback = 0;
    s->connection = s->auth_blocked ? SK__CONN_OFFLINE_BATCH : SK__CONN_CONNECTED;
    return 1;
}

/* Failed streaming passes in a row reached fallback_after: the next go through the fallback. */
static void enter_fallback_if_due(sk__sched *s, int64_t now, const sk__pass_info *info)
{
    if (!info || !info->may_fall_back || s->policy.fallback_after <= 0 ||
        s->consecutive_failures < s->policy.fallback_after)
        return;
    s->fallback = 1;
    s->connection = SK__CONN_OFFLINE_BATCH;
    s->probe_due_wall_ms = add_sat(now, s->policy.backoff_max_ms);
}

int sk__sched_record_pass(sk__sched *s, int64_t now, sk_status st, const sk_drain_summary *sum,
                          const sk__pass_info *info)
{
    if (info)
        s->streaming = info->streaming;
    int changed = info && info->back_online ? leave_fallback(s) : 0;
    if (s->fallback && info && info->probed) /* in vain: the next probe one maximum later */
        s->probe_due_wall_ms = add_sat(now, s->policy.backoff_max_ms);
    if (st == SK_ERR_CANCELLED || (info && info->deferred))
        return changed;
    if (st == SK_OK) {
        if (sum->batches == 0)
            return changed;
        /* A Retry-After met in the pass was waited out before the server took the batch. */
        sk__sched_on_success(s, now, sum->remaining > sum->pending);
    } else if (st == SK_ERR_AUTH || st == SK_ERR_SESSION_EXPIRED) {
        sk__sched_on_auth_blocked(s, sum->stop_reason);
    } else {
        /* Nothing sent (plugin, queue or lock errors): the server was not reached either. */
        int unreachable = sum->batches == 0 || (info && info->unreachable);
        sk__sched_on_failure(s, now, sum->retry_after_ms, sum->stop_reason, unreachable);
        enter_fallback_if_due(s, now, info);
    }
    return 1;
}

sk_status sk__sched_record_pass_file(sk__sched *s, const char *state_root, sk_status st,
                                     const sk_drain_summary *sum, const sk__pass_info *info,
                                     sk__err *err)
{
    sk_status load = sk__sched_load(s, state_root, err); /* corrupt: s is fresh, and replaced */
    if (!sk__sched_record_pass(s, sk__sched_now(s), st, sum, info))
        return load;
    sk__err serr;
    sk_status save = sk__sched_save(s, state_root, load == SK_OK ? err : &serr);
    return load != SK_OK ? load : save;
}

void sk__sched_on_empty_pass(sk__sched *s, int64_t now)
{
    s->paused_until_wall_ms = add_sat(now, s->policy.empty_pass_pause_ms);
}

void sk__shutdown_begin(sk__shutdown *sd, int64_t now_ms, int64_t grace_ms)
{
    sd->deadline_ms = add_sat(now_ms, max64(grace_ms, 0));
    sd->cancelled = 0;
}

sk__shutdown_step sk__shutdown_next(sk__shutdown *sd, int64_t now_ms, int64_t *wait_ms)
{
    *wait_ms = max64(sd->deadline_ms - now_ms, 0);
    if (*wait_ms > 0)
        return SK__SHUTDOWN_WAIT;
    if (sd->cancelled)
        return SK__SHUTDOWN_ABANDON;
    sd->cancelled = 1;
    sd->deadline_ms = add_sat(now_ms, SK__SHUTDOWN_CANCEL_GRACE_MS);
    *wait_ms = SK__SHUTDOWN_CANCEL_GRACE_MS;
    return SK__SHUTDOWN_CANCEL;
}

const char *sk__sched_connection_name(sk__conn_state state)
{
    if ((unsigned)state < SK__ARRAY_LEN(conn_names))
        return conn_names[state];
    return "Unknown";
}

int sk__sched_connection_parse(const char *name, sk__conn_state *out)
{
    for (size_t i = 0; i < SK__ARRAY_LEN(conn_names); i++) {
        if (strcmp(name, conn_names[i]) == 0) {
            *out = (sk__conn_state)i;
            return 0;
        }
    }
    return -1;
}

/* ---- persistence ---- */

/* JSON value for a wall time: ISO-8601 string, or null for "never" (0). */
static json_t *time_to_json(int64_t wall_ms)
{
    if (wall_ms <= 0)
        return json_null();
    char iso[40];
    sk__iso8601_ms(wall_ms, iso, sizeof iso);
    return json_string(iso);
}

/* JSON value for an optional text: null when empty. */
static json_t *text_to_json(const char *text)
{
    return text[0] ? json_string(text) : json_null();
}

/* Builds the document described in scheduler.h; NULL when out of memory. */
static json_t *state_to_json(const sk__sched *s)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int bad = 0;
    bad |= json_object_set_new(o, "version", json_integer(1));
    bad |= json_object_set_new(o, "consecutive_failures", json_integer(s->consecutive_failures));
    bad |= json_object_set_new(o, "next_attempt", time_to_json(s->next_attempt_wall_ms));
    bad |= json_object_set_new(o, "last_attempt", time_to_json(s->last_attempt_wall_ms));
    bad |= json_object_set_new(o, "last_success", time_to_json(s->last_success_wall_ms));
    bad |= json_object_set_new(o, "last_error", text_to_json(s->last_error));
    bad |= json_object_set_new(o, "retry_after_until", time_to_json(s->retry_after_until_wall_ms));
    bad |=
        json_object_set_new(o, "connection", json_string(sk__sched_connection_name(s->connection)));
    bad |= json_object_set_new(o, "auth_blocked", json_boolean(s->auth_blocked));
    bad |= json_object_set_new(o, "auth_reason", text_to_json(s->auth_reason));
    bad |= json_object_set_new(o, "fallback", json_boolean(s->fallback));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

sk_status sk__sched_save(const sk__sched *s, const char *state_root, sk__err *err)
{
    char path[4096];
    sk_status st = sk__path_join(path, sizeof path, state_root, SK__SCHED_STATE_FILE, err);
    if (st != SK_OK)
        return st;
    json_t *doc = state_to_json(s);
    char *text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(doc);
    if (!text)
        return sk__fail(err, SK_ERR_NOMEM, "out of memory writing %s", path);
    /* A trailing newline for people who cat the file. */
    size_t len = strlen(text);
    char *line = malloc(len + 2);
    if (!line) {
        free(text);
        return sk__fail(err, SK_ERR_NOMEM, "out of memory writing %s", path);
    }
    memcpy(line, text, len);
    line[len] = '\n';
    free(text);
    st = sk__write_file_atomic(path, line, len + 1, 0600, 1, err);
    free(line);
    return st;
}

/*
 * Parses the exact form sk__iso8601_ms writes. Strict by round trip: the
 * parsed time must format back to the same text, which rejects out-of-range
 * fields (month 13, Feb 30) that timegm would silently normalise.
 */
static int iso_to_ms(const char *text, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int ms = 0, used = 0;
    if (sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &used) != 7 ||
        text[used] != '\0')
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t secs = timegm(&tm);
    if (secs <= 0)
        return -1;
    int64_t wall = (int64_t)secs * 1000 + ms;
    char again[40];
    sk__iso8601_ms(wall, again, sizeof again);
    if (strcmp(again, text) != 0)
        return -1;
    *out = wall;
    return 0;
}

/* Reads an optional time key: absent or null is 0 ("never"). Returns -1 when malformed. */
static int json_time(json_t *o, const char *key, int64_t *out)
{
    json_t *v = json_object_get(o, key);
    *out = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return -1;
    return iso_to_ms(json_string_value(v), out);
}

/* Reads an optional text key into a fixed buffer: absent or null is "". */
static int json_text(json_t *o, const char *key, char *dst, size_t cap)
{
    json_t *v = json_object_get(o, key);
    dst[0] = '\0';
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return -1;
    copy_text(dst, cap, json_string_value(v));
    return 0;
}

/* Fills the state part of s from a parsed document; names the bad key in *bad_key. */
static int state_from_json(sk__sched *s, json_t *o, const char **bad_key)
{
    json_t *v;
    *bad_key = "document";
    if (!json_is_object(o))
        return -1;
    *bad_key = "consecutive_failures";
    v = json_object_get(o, "consecutive_failures");
    if (v && (!json_is_integer(v) || json_integer_value(v) < 0))
        return -1;
    s->consecutive_failures = v ? json_integer_value(v) : 0;
    static const struct {
        const char *key;
        size_t offset;
    } times[] = {
        {"next_attempt", offsetof(sk__sched, next_attempt_wall_ms)},
        {"last_attempt", offsetof(sk__sched, last_attempt_wall_ms)},
        {"last_success", offsetof(sk__sched, last_success_wall_ms)},
        {"retry_after_until", offsetof(sk__sched, retry_after_until_wall_ms)},
    };
    for (size_t i = 0; i < SK__ARRAY_LEN(times); i++) {
        *bad_key = times[i].key;
        if (json_time(o, times[i].key, (int64_t *)((char *)s + times[i].offset)) != 0)
            return -1;
    }
    *bad_key = "last_error";
    if (json_text(o, "last_error", s->last_error, sizeof s->last_error) != 0)
        return -1;
    *bad_key = "auth_reason";
    if (json_text(o, "auth_reason", s->auth_reason, sizeof s->auth_reason) != 0)
        return -1;
    *bad_key = "auth_blocked";
    v = json_object_get(o, "auth_blocked");
    if (v && !json_is_boolean(v))
        return -1;
    s->auth_blocked = v ? json_is_true(v) : 0;
    *bad_key = "fallback";
    v = json_object_get(o, "fallback");
    if (v && !json_is_boolean(v))
        return -1;
    s->fallback = v ? json_is_true(v) : 0;
    *bad_key = "connection";
    v = json_object_get(o, "connection");
    if (v && (!json_is_string(v) ||
              sk__sched_connection_parse(json_string_value(v), &s->connection) != 0))
        return -1;
    return 0;
}

sk_status sk__sched_load(sk__sched *s, const char *state_root, sk__err *err)
{
    reset_state(s);
    char path[4096];
    sk_status st = sk__path_join(path, sizeof path, state_root, SK__SCHED_STATE_FILE, err);
    if (st != SK_OK)
        return st;
    char *text = NULL;
    size_t len = 0;
    st = sk__read_file(path, &text, &len, err);
    if (st == SK_ERR_NOT_FOUND) {
        sk__err_clear(err);
        return SK_OK;
    }
    if (st != SK_OK)
        return st;
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, 0, &jerr);
    free(text);
    if (!doc)
        return sk__fail(err, SK_ERR_IO, "%s: corrupt scheduler state: %s (line %d)", path,
                        jerr.text, jerr.line);
    const char *bad_key = NULL;
    int rc = state_from_json(s, doc, &bad_key);
    json_decref(doc);
    if (rc != 0) {
        reset_state(s);
        return sk__fail(err, SK_ERR_IO, "%s: corrupt scheduler state: bad \"%s\"", path, bad_key);
    }
    return SK_OK;
}
