/*
 * spec-kitty-transport-check PLUGIN.so [OPTIONS_JSON]
 *
 * Conformance checker for any transport: loads the plugin through the host's
 * own loader (trust checks, ABI negotiation), starts it with the given
 * transport.options, sends one batch of three valid events (and submits three
 * more when it is asynchronous, probes when it can), and checks what a host
 * relies on: outcomes are known values, the result is filled as the return
 * code says, an accepted submit completes exactly once by its deadline, a
 * probe answers a known state in time, cancel() returns at once, destroy()
 * returns. It delivers real events to wherever the plugin sends them: point it
 * at a test server.
 */
#include "event.h"
#include "plugin.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int failures;

static void check(int ok, const char *what)
{
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    failures += !ok;
}

static void log_line(void *ctx, sk_log_level level, const char *plugin, const char *line)
{
    (void)ctx;
    printf("     [%s %d] %s\n", plugin, (int)level, line);
}

/* n valid envelopes, built by the host's own event builder. */
static int make_events(sk_event *evs, char ids[][SK__ULID_LEN + 1], char *texts[], int n)
{
    sk__err err = {{0}};
    for (int i = 0; i < n; i++) {
        json_t *payload =
            json_pack("{s:s, s:I}", "feature_slug", "conformance", "total_wps", (json_int_t)i);
        sk__event_fields f = {
            .event_type = "FeatureCompleted", .aggregate_id = "conformance", .payload = payload};
        json_t *env = NULL;
        sk_status st = sk__event_build(&f, i + 1, "000000000000", "local", &env, &err);
        json_decref(payload);
        if (st != SK_OK) {
            fprintf(stderr, "cannot build a test event: %s\n", err.msg);
            return -1;
        }
        texts[i] = json_dumps(env, JSON_COMPACT);
        snprintf(ids[i], sizeof ids[i], "%s", json_string_value(json_object_get(env, "event_id")));
        json_decref(env);
        evs[i] = (sk_event){ids[i], texts[i], strlen(texts[i])};
    }
    return 0;
}

/* Checks the outcomes of one answered batch. */
static void check_outcomes(const sk_event_result *res, int n, int rc, const char *call)
{
    int known = 1, delivered = 0;
    char what[128];
    for (int i = 0; i < n; i++) {
        known &= res[i].outcome >= SK_OUTCOME_DELIVERED && res[i].outcome <= SK_OUTCOME_TRANSIENT;
        delivered += res[i].outcome == SK_OUTCOME_DELIVERED;
        known &= memchr(res[i].message, '\0', sizeof res[i].message) != NULL;
    }
    snprintf(what, sizeof what,
             "%s: every outcome is a known value and every message is terminated", call);
    check(known, what);
    snprintf(what, sizeof what, "%s: a failed batch reports nothing delivered", call);
    check(rc == SK_TRANSPORT_OK || delivered == 0, what);
}

/* One batch of three events with its result, every outcome transient (as the host sends it). */
typedef struct trial {
    sk_event_result res[3];
    sk_batch_result r;
    sk_batch b;
} trial;

static void trial_init(trial *t, const sk_event *evs, uint64_t seq)
{
    for (int i = 0; i < 3; i++)
        t->res[i] = (sk_event_result){.outcome = SK_OUTCOME_TRANSIENT};
    t->r = (sk_batch_result){.struct_size = sizeof t->r, .count = 3, .events = t->res};
    t->b = (sk_batch){.struct_size = sizeof t->b,
                      .count = 3,
                      .events = evs,
                      .deadline_ms = sk__mono_ms() + 30000,
                      .batch_seq = seq};
}

/* The completion of the submitted batch: counts its calls. */
typedef struct completion {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;
    int rc;
} completion;

static void on_done(void *ctx, int rc, sk_batch_result *result)
{
    (void)result;
    completion *c = ctx;
    pthread_mutex_lock(&c->mu);
    c->calls++;
    c->rc = rc;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static int completion_calls(completion *c)
{
    pthread_mutex_lock(&c->mu);
    int n = c->calls;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* SK_CAP_ASYNC: submit returns at once, and the completion comes exactly once
 * (by the deadline), or never when submit did not accept the batch. */
static void check_submit(sk__plugin *p, const sk_event *evs)
{
    trial t;
    trial_init(&t, evs, 2);
    completion c = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    int64_t t0 = sk__mono_ms();
    int rc = sk__plugin_submit(p, &t.b, &t.r, on_done, &c);
    printf("     submit returned %d in %lld ms\n", rc, (long long)(sk__mono_ms() - t0));
    check(rc == SK_TRANSPORT_OK || rc == SK_TRANSPORT_BUSY || rc == SK_TRANSPORT_FAILED ||
              rc == SK_TRANSPORT_CANCELLED,
          "submit returns OK, BUSY, FAILED or CANCELLED");
    if (rc == SK_TRANSPORT_OK) {
        pthread_mutex_lock(&c.mu);
        while (c.calls == 0 && sk__mono_ms() < t.b.deadline_ms + 1000) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&c.cv, &c.mu, &ts);
        }
        pthread_mutex_unlock(&c.mu);
        printf("     completion %d after %lld ms: %s\n", c.rc, (long long)(sk__mono_ms() - t0),
               t.r.detail[0] ? t.r.detail : "(no detail)");
        check(completion_calls(&c) == 1, "the completion comes by the batch deadline");
        check_outcomes(t.res, 3, c.rc, "submit");
    }
    nanosleep(&(struct timespec){.tv_nsec = 200000000L}, NULL); /* a second call would show */
    check(completion_calls(&c) == (rc == SK_TRANSPORT_OK), "the completion comes at most once, "
                                                           "and only for an accepted batch");
}

/* SK_CAP_PROBE: a known state by the deadline, the reason terminated. */
static void check_probe(sk__plugin *p)
{
    char reason[256];
    memset(reason, 'x', sizeof reason);
    int64_t t0 = sk__mono_ms();
    int state = sk__plugin_probe(p, t0 + 10000, reason, sizeof reason);
    int terminated = memchr(reason, '\0', sizeof reason) != NULL;
    printf("     probe returned %d in %lld ms: %s\n", state, (long long)(sk__mono_ms() - t0),
           terminated ? reason : "(unterminated)");
    check(state >= SK_PROBE_CONNECTED && state <= SK_PROBE_UNREACHABLE,
          "probe returns a known state");
    check(terminated, "the probe's reason is terminated");
    check(sk__mono_ms() - t0 <= 11000, "probe returns by its deadline");
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3 || strcmp(argv[1], "--help") == 0) {
        fputs("Usage: spec-kitty-transport-check PLUGIN.so [OPTIONS_JSON]\n"
              "Loads a transport like the host does and checks its ABI behaviour.\n"
              "Exit status: 0 conformant, 1 a check failed, 2 usage or load error.\n",
              argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    json_error_t jerr;
    json_t *options = json_loads(argc == 3 ? argv[2] : "{}", 0, &jerr);
    if (!json_is_object(options)) {
        fprintf(stderr, "spec-kitty-transport-check: OPTIONS_JSON: %s\n",
                options ? "expected an object" : jerr.text);
        json_decref(options);
        return 2;
    }
    sk__plugin *p = NULL;
    sk__err err = {{0}};
    if (sk__plugin_open(argv[1], SK_TRANSPORT_ABI_MAJOR, &p, &err) != SK_OK) {
        fprintf(stderr, "spec-kitty-transport-check: %s\n", err.msg);
        json_decref(options);
        return 2;
    }
    sk_plugin_info d;
    sk__plugin_describe(p, &d);
    printf("%s %s (ABI %u.%u), capabilities 0x%x\n", d.name, d.version, d.abi_major, d.abi_minor,
           d.capabilities);
    check(*d.description, "has a description");
    sk__plugin_host host = {.server_url = getenv("SPEC_KITTY_SAAS_URL"),
                            .state_root = "/tmp",
                            .node_id = "000000000000",
                            .options = options,
                            .log = log_line};
    sk_event evs[6]; /* three for send, three for submit */
    char ids[6][SK__ULID_LEN + 1], *texts[6] = {0};
    if (sk__plugin_start(p, &host, &err) != SK_OK || make_events(evs, ids, texts, 6) != 0) {
        if (err.msg[0])
            fprintf(stderr, "spec-kitty-transport-check: %s\n", err.msg);
        sk__plugin_close(p);
        json_decref(options);
        for (int i = 0; i < 6; i++)
            free(texts[i]);
        return 2;
    }
    trial t;
    trial_init(&t, evs, 1);
    int64_t t0 = sk__mono_ms();
    int rc = sk__plugin_send(p, &t.b, &t.r);
    printf("     send returned %d in %lld ms: %s\n", rc, (long long)(sk__mono_ms() - t0),
           t.r.detail[0] ? t.r.detail : "(no detail)");
    check(rc >= SK_TRANSPORT_OK && rc <= SK_TRANSPORT_UNSUPPORTED, "send returns a known code");
    check(sk__mono_ms() - t0 <= 31000, "send returns by the batch deadline");
    check_outcomes(t.res, 3, rc, "send");
    check(memchr(t.r.detail, '\0', sizeof t.r.detail) != NULL, "detail is terminated");
    if (d.capabilities & SK_CAP_ASYNC)
        check_submit(p, evs + 3);
    if (d.capabilities & SK_CAP_PROBE)
        check_probe(p);
    t0 = sk__mono_ms();
    sk__plugin_cancel(p);
    check(sk__mono_ms() - t0 < 100, "cancel returns at once");
    sk__plugin_close(p); /* destroy: must join the plugin's threads */
    check(1, "destroy returns");
    for (int i = 0; i < 6; i++)
        free(texts[i]);
    json_decref(options);
    printf("%s\n", failures ? "NOT CONFORMANT" : "conformant");
    return failures ? 1 : 0;
}
