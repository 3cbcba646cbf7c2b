#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fakehost.h"
#include "testutil.h"

#include <dlfcn.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FH_MAX_LOG 256
#define FH_MAX_METRICS 32

struct sk_fakehost {
    sk_host_api api;
    pthread_mutex_t mu;
    json_t *options;
    char *options_text;
    const char *const *values;
    char auth[1024];
    char *log[FH_MAX_LOG];
    int nlog;
    char *metric_name[FH_MAX_METRICS];
    long long metric_value[FH_MAX_METRICS];
    int nmetrics;
};

static void fh_log(void *ctx, sk_log_level level, const char *fmt, ...)
{
    sk_fakehost *fh = ctx;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&fh->mu);
    if (fh->nlog < FH_MAX_LOG)
        fh->log[fh->nlog++] = strdup(line);
    pthread_mutex_unlock(&fh->mu);
    if (getenv("SK_TEST_VERBOSE"))
        fprintf(stderr, "[plugin %d] %s\n", (int)level, line);
}

static int64_t fh_now_ms(void *ctx)
{
    (void)ctx;
    return sk_test_now_ms();
}

static const char *fh_option_string(void *ctx, const char *key, const char *dflt)
{
    sk_fakehost *fh = ctx;
    json_t *v = json_object_get(fh->options, key);
    return json_is_string(v) ? json_string_value(v) : dflt;
}

static int64_t fh_option_int(void *ctx, const char *key, int64_t dflt)
{
    sk_fakehost *fh = ctx;
    json_t *v = json_object_get(fh->options, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

static int fh_option_bool(void *ctx, const char *key, int dflt)
{
    sk_fakehost *fh = ctx;
    json_t *v = json_object_get(fh->options, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static const char *fh_option_json(void *ctx)
{
    return ((sk_fakehost *)ctx)->options_text;
}

static const char *fh_host_value(void *ctx, const char *key)
{
    sk_fakehost *fh = ctx;
    for (const char *const *kv = fh->values; kv && kv[0]; kv += 2)
        if (strcmp(kv[0], key) == 0)
            return kv[1];
    return NULL;
}

static size_t fh_auth_header(void *ctx, char *buf, size_t cap)
{
    sk_fakehost *fh = ctx;
    pthread_mutex_lock(&fh->mu);
    size_t n = strlen(fh->auth);
    if (n > 0 && n < cap)
        memcpy(buf, fh->auth, n + 1);
    pthread_mutex_unlock(&fh->mu);
    return n < cap ? n : n + 1;
}

/* Adds delta to metric name, or sets it to delta when set (a level). */
static void fh_metric(sk_fakehost *fh, const char *name, int64_t delta, int set)
{
    pthread_mutex_lock(&fh->mu);
    int i = 0;
    while (i < fh->nmetrics && strcmp(fh->metric_name[i], name) != 0)
        i++;
    if (i == fh->nmetrics && i < FH_MAX_METRICS) {
        fh->metric_name[i] = strdup(name);
        fh->metric_value[i] = 0;
        fh->nmetrics++;
    }
    if (i < fh->nmetrics)
        fh->metric_value[i] = set ? delta : fh->metric_value[i] + delta;
    pthread_mutex_unlock(&fh->mu);
}

static void fh_metric_add(void *ctx, const char *name, int64_t delta)
{
    fh_metric(ctx, name, delta, 0);
}

static void fh_metric_set(void *ctx, const char *name, int64_t value)
{
    fh_metric(ctx, name, value, 1);
}

sk_fakehost *sk_fakehost_new(const char *options_json, const char *const *values)
{
    sk_fakehost *fh = calloc(1, sizeof *fh);
    assert_non_null(fh);
    pthread_mutex_init(&fh->mu, NULL);
    json_error_t jerr;
    fh->options = json_loads(options_json ? options_json : "{}", 0, &jerr);
    assert_non_null(fh->options);
    fh->options_text = json_dumps(fh->options, JSON_COMPACT);
    fh->values = values;
    fh->api.struct_size = sizeof fh->api;
    fh->api.abi_major = SK_TRANSPORT_ABI_MAJOR;
    fh->api.abi_minor = SK_TRANSPORT_ABI_MINOR;
    fh->api.host_ctx = fh;
    fh->api.log = fh_log;
    fh->api.now_ms = fh_now_ms;
    fh->api.option_string = fh_option_string;
    fh->api.option_int = fh_option_int;
    fh->api.option_bool = fh_option_bool;
    fh->api.option_json = fh_option_json;
    fh->api.host_value = fh_host_value;
    fh->api.auth_header = fh_auth_header;
    fh->api.metric_add = fh_metric_add;
    fh->api.metric_set = fh_metric_set;
    return fh;
}

void sk_fakehost_free(sk_fakehost *fh)
{
    if (!fh)
        return;
    for (int i = 0; i < fh->nlog; i++)
        free(fh->log[i]);
    for (int i = 0; i < fh->nmetrics; i++)
        free(fh->metric_name[i]);
    json_decref(fh->options);
    free(fh->options_text);
    pthread_mutex_destroy(&fh->mu);
    free(fh);
}

const sk_host_api *sk_fakehost_api(sk_fakehost *fh)
{
    return &fh->api;
}

void sk_fakehost_set_auth(sk_fakehost *fh, const char *header)
{
    pthread_mutex_lock(&fh->mu);
    snprintf(fh->auth, sizeof fh->auth, "%s", header ? header : "");
    pthread_mutex_unlock(&fh->mu);
}

int sk_fakehost_logged(sk_fakehost *fh, const char *needle)
{
    int found = 0;
    pthread_mutex_lock(&fh->mu);
    for (int i = 0; i < fh->nlog && !found; i++)
        found = strstr(fh->log[i], needle) != NULL;
    pthread_mutex_unlock(&fh->mu);
    return found;
}

long long sk_fakehost_metric(sk_fakehost *fh, const char *name)
{
    long long v = 0;
    pthread_mutex_lock(&fh->mu);
    for (int i = 0; i < fh->nmetrics; i++)
        if (strcmp(fh->metric_name[i], name) == 0)
            v = fh->metric_value[i];
    pthread_mutex_unlock(&fh->mu);
    return v;
}

const sk_transport_desc *sk_fakehost_load_plugin(const char *name, void **handle)
{
    const char *build = getenv("SK_BUILD_DIR");
    assert_non_null(build);
    char path[1024];
    snprintf(path, sizeof path, "%s/lib/spec-kitty/transports/%s.so", build, name);
    *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!*handle)
        fail_msg("dlopen %s: %s", path, dlerror());
    sk_transport_entry_v1_fn entry =
        (sk_transport_entry_v1_fn)dlsym(*handle, SK_TRANSPORT_ENTRY_V1_NAME);
    assert_non_null(entry);
    const sk_transport_desc *d = entry(SK_TRANSPORT_ABI_MINOR);
    assert_non_null(d);
    return d;
}

int64_t sk_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

sk_tbatch *sk_tbatch_new(uint32_t n, int64_t in_ms)
{
    return sk_tbatch_new_from(0, n, in_ms);
}

sk_tbatch *sk_tbatch_new_from(uint32_t first, uint32_t n, int64_t in_ms)
{
    sk_tbatch *t = calloc(1, sizeof *t);
    t->n = n;
    t->ids = calloc(n, sizeof *t->ids);
    t->json = calloc(n, sizeof *t->json);
    t->events = calloc(n, sizeof *t->events);
    t->res = calloc(n, sizeof *t->res);
    for (uint32_t i = 0; i < n; i++) {
        snprintf(t->ids[i], sizeof t->ids[i], "01JBQ7ZR5N8M0000000000%04u", (first + i) % 10000);
        char buf[512];
        int len = snprintf(buf, sizeof buf,
                           "{\"event_id\":\"%s\",\"event_type\":\"WPStatusChanged\","
                           "\"aggregate_id\":\"WP%02u\",\"aggregate_type\":\"WorkPackage\","
                           "\"payload\":{\"wp_id\":\"WP%02u\",\"previous_status\":\"planned\","
                           "\"new_status\":\"doing\",\"note\":\"caf\xc3\xa9 \\u00e9\"},"
                           "\"node_id\":\"0123456789ab\",\"lamport_clock\":%u,"
                           "\"causation_id\":null,\"timestamp\":\"2026-11-26T09:00:00Z\","
                           "\"team_slug\":\"local\"}",
                           t->ids[i], i % 100, i % 100, first + i + 1);
        t->json[i] = strdup(buf);
        t->events[i] = (sk_event){t->ids[i], t->json[i], (size_t)len};
        t->res[i].outcome = SK_OUTCOME_TRANSIENT;
    }
    t->batch = (sk_batch){sizeof t->batch, n, t->events, sk_test_now_ms() + in_ms, 7};
    t->result = (sk_batch_result){.struct_size = sizeof t->result, .count = n, .events = t->res};
    return t;
}

void sk_tbatch_free(sk_tbatch *t)
{
    for (uint32_t i = 0; i < t->n; i++)
        free(t->json[i]);
    free(t->ids);
    free(t->json);
    free(t->events);
    free(t->res);
    free(t);
}
