/* The sync handle: config, queue, credentials, transport, delivery and enqueueing. */
#include "engine.h"
#include "control.h"
#include "event.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void set_error(sk_sync *s, const sk__err *err)
{
    if (s && err && err != &s->err)
        snprintf(s->err.msg, sizeof s->err.msg, "%s", err->msg);
}

/* The Authorization header of the session (refreshed when due); see sk__auth_header. */
static size_t session_auth_header(void *ctx, char *buf, size_t cap)
{
    sk_sync *s = ctx;
    return sk__auth_header(s->auth, buf, cap);
}

static void forward_log(void *ctx, sk_log_level level, const char *plugin, const char *line)
{
    sk_sync *s = ctx;
    if (s->log)
        s->log(s->log_ctx, (int)level, plugin, line);
}

sk_status sk__sync_queue_open(const sk_sync *s, sk__queue **out, sk__err *err)
{
    char path[PATH_MAX + 16];
    sk__queue_opts qo = {.max_events = s->cfg->queue_max_events,
                         .durability = s->cfg->queue_durability};
    snprintf(path, sizeof path, "%s/queue.db", s->root);
    return sk__queue_open(path, &qo, out, err);
}

sk_status sk__sync_open(const char *state_root, sk_sync **out, sk__err *err)
{
    *out = NULL;
    sk_sync *s = calloc(1, sizeof *s);
    if (!s)
        return sk__fail(err, SK_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&s->plugin_mu, NULL);
    atomic_init(&s->cancel, 0);
    s->cancel_pipe[0] = s->cancel_pipe[1] = -1;
    sk_status st = sk__state_root_resolve(state_root, s->root, sizeof s->root, err);
    if (st == SK_OK)
        st = sk__mkdirs_owner(s->root, err);
    if (st == SK_OK)
        snprintf(s->drain_lock, sizeof s->drain_lock, "%s/drain.lock", s->root);
    if (st == SK_OK && pipe2(s->cancel_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        st = sk__fail(err, SK_ERR_IO, "pipe: %s", strerror(errno));
    if (st == SK_OK)
        st = sk__config_load(s->root, &s->cfg, err);
    if (st == SK_OK)
        st = sk__auth_open(s->root, s->cfg, &s->auth, err);
    if (st == SK_OK)
        st = sk__node_id_cached(s->root, s->node_id, err);
    if (st == SK_OK)
        st = sk__sync_queue_open(s, &s->q, err);
    if (st != SK_OK) {
        sk__sync_close(s);
        return st;
    }
    sk__auth_team_slug(s->auth, s->team_slug, sizeof s->team_slug);
    sk__sched_policy policy = sk__sync_sched_policy(s);
    sk__sched_init(&s->sched, &policy, NULL, NULL); /* loaded when asked for: emit never is */
    *out = s;
    return SK_OK;
}

/* Detaches the transport from the handle, so sk__sync_cancel no longer reaches it. */
static sk__plugin *take_plugin(sk_sync *s)
{
    pthread_mutex_lock(&s->plugin_mu);
    sk__plugin *p = s->plugin;
    s->plugin = NULL;
    pthread_mutex_unlock(&s->plugin_mu);
    return p;
}

void sk__sync_close(sk_sync *s)
{
    if (!s)
        return;
    sk__plugin_close(take_plugin(s));
    pthread_mutex_destroy(&s->plugin_mu);
    for (int i = 0; i < 2; i++)
        if (s->cancel_pipe[i] >= 0)
            close(s->cancel_pipe[i]);
    sk__queue_close(s->q);
    sk__auth_close(s->auth);
    sk__config_free(s->cfg);
    free(s);
}

static sk_status parse_payload(const char *payload_json, json_t **out, sk__err *err)
{
    *out = NULL;
    if (!payload_json)
        return SK_OK;
    json_error_t jerr;
    *out = json_loads(payload_json, JSON_REJECT_DUPLICATES, &jerr);
    if (!*out)
        return sk__fail(err, SK_ERR_INVALID_EVENT, "payload: not valid JSON (column %d: %s)",
                        jerr.column, jerr.text);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return sk__fail(err, SK_ERR_INVALID_EVENT, "payload: expected a JSON object");
    }
    return SK_OK;
}

/* Tells a running service that events wait: its callback in this process, else its socket. */
static void notify_service(sk_sync *s)
{
    if (s->on_enqueue)
        s->on_enqueue(s->on_enqueue_ctx);
    else
        sk__control_poke(s->root);
}

sk_status sk__sync_enqueue_envelopes(sk_sync *s, json_t **envs, size_t n, sk__err *err)
{
    sk__queue_item *items = calloc(n ? n : 1, sizeof *items);
    char **texts = calloc(n ? n : 1, sizeof *texts);
    sk_status st = items && texts ? SK_OK : sk__fail(err, SK_ERR_NOMEM, "out of memory");
    int64_t now_s = sk__wall_ms() / 1000;
    for (size_t i = 0; st == SK_OK && i < n; i++) {
        texts[i] = json_dumps(envs[i], JSON_COMPACT);
        if (!texts[i]) {
            st = sk__fail(err, SK_ERR_NOMEM, "out of memory");
            break;
        }
        items[i] = (sk__queue_item){json_string_value(json_object_get(envs[i], "event_id")),
                                    json_string_value(json_object_get(envs[i], "event_type")),
                                    texts[i], now_s};
    }
    if (st == SK_OK)
        st = sk__queue_enqueue(s->q, items, n, err);
    if (st == SK_OK)
        notify_service(s);
    for (size_t i = 0; texts && i < n; i++)
        free(texts[i]);
    free(texts);
    free(items);
    return st;
}

/* "" in the config means "not set". */
static const char *config_or_null(const char *value)
{
    return value && *value ? value : NULL;
}

/* spec with sync.json's emit.* for what it leaves out. */
static sk_event_spec spec_with_config(const sk_sync *s, const sk_event_spec *spec)
{
    const sk__config *c = s->cfg;
    sk_event_spec r = *spec;
    r.schema = spec->schema ? spec->schema : (int)c->emit_schema;
    r.project_uuid = spec->project_uuid ? spec->project_uuid : config_or_null(c->emit_project_uuid);
    r.project_slug = spec->project_slug ? spec->project_slug : config_or_null(c->emit_project_slug);
    r.build_id = spec->build_id ? spec->build_id : c->emit_build_id;
    return r;
}

void sk__sync_line_defaults(const sk_sync *s, const sk_event_spec *defaults, sk__line_defaults *out)
{
    sk_event_spec none = {0};
    *out = (sk__line_defaults){spec_with_config(s, defaults ? defaults : &none), s->node_id,
                               s->team_slug};
}

/* Stamps the envelopes that need a Lamport value (built ones), in order. */
static sk_status stamp_clock(sk_sync *s, json_t **envs, const int *needs, size_t n, sk__err *err)
{
    return sk__event_stamp_clock(s->root, s->node_id,
                                 s->cfg->queue_durability == SK__DURABILITY_FULL, envs, needs, n,
                                 err);
}

sk_status sk__sync_emit(sk_sync *s, const sk_event_spec *spec, char event_id_out[27])
{
    sk__err err = {{0}};
    json_t *payload = NULL, *env = NULL;
    sk_status st = spec->schema == 0 || spec->schema == 1 || spec->schema == 3
                       ? parse_payload(spec->payload_json, &payload, &err)
                       : sk__fail(&err, SK_ERR_USAGE, "schema %d: expected 1 (classic) or 3 (current)",
                                  spec->schema);
    sk_event_spec full = spec_with_config(s, spec);
    sk__event_fields f = sk__event_fields_of(&full, payload);
    if (st == SK_OK) /* validated with a placeholder clock, so a bad event burns no value */
        st = sk__event_build(&f, 0, s->node_id, s->team_slug, &env, &err);
    int needs = 1;
    if (st == SK_OK)
        st = stamp_clock(s, &env, &needs, 1, &err);
    if (st == SK_OK)
        st = sk__sync_enqueue_envelopes(s, &env, 1, &err);
    if (st == SK_OK && event_id_out)
        snprintf(event_id_out, 27, "%s", json_string_value(json_object_get(env, "event_id")));
    json_decref(payload);
    json_decref(env);
    if (st != SK_OK)
        set_error(s, &err);
    return st;
}

/* Grows the two arrays of sk__sync_emit_ndjson to hold one more event. */
static sk_status emit_room(json_t ***envs, int **needs, size_t n, size_t *cap, sk__err *err)
{
    size_t envs_cap = *cap, needs_cap = *cap; /* both grow alike; *cap moves when both did */
    if (!sk__grow((void **)envs, &envs_cap, n + 1, sizeof **envs) ||
        !sk__grow((void **)needs, &needs_cap, n + 1, sizeof **needs))
        return sk__fail(err, SK_ERR_NOMEM, "out of memory");
    *cap = envs_cap;
    return SK_OK;
}

sk_status sk__sync_emit_ndjson(sk_sync *s, int fd, const char *name, const sk_event_spec *defaults,
                               sk_line_error_fn on_error, void *ctx, size_t *count_out)
{
    size_t cap = 0, n = 0, bad = 0;
    json_t **envs = NULL;
    int *needs = NULL;
    sk__err err = {{0}};
    sk__line_defaults d;
    sk__sync_line_defaults(s, defaults, &d);
    sk__line_stream ls;
    sk__line_stream_init(&ls, fd, name, SK__EVENT_MAX_LINE);
    sk_status st;
    char *line;
    size_t len;
    while ((st = sk__line_stream_next(&ls, &line, &len, &err)) == SK_OK) {
        if (strspn(line, " \t\r") == len)
            continue;
        if (n == (size_t)s->cfg->queue_max_events) {
            st = sk__fail(&err, SK_ERR_QUEUE_FULL,
                          "%s: more than queue.max_events (%zu) events; nothing queued", name, n);
            break;
        }
        if ((st = emit_room(&envs, &needs, n, &cap, &err)) != SK_OK)
            break;
        sk__err lerr = {{0}};
        if (sk__event_from_line(line, len, &d, &envs[n], &needs[n], &lerr) == SK_OK) {
            n++;
        } else {
            bad++;
            if (on_error)
                on_error(ctx, ls.line_no, lerr.msg);
        }
    }
    if (st == SK_ERR_INVALID_EVENT) { /* a line too long: reading stopped there */
        bad++;
        if (on_error)
            on_error(ctx, ls.line_no, err.msg);
        st = sk__fail(&err, SK_ERR_INVALID_EVENT,
                      "%s: line %zu is too long; nothing queued (reading stopped there)", name,
                      ls.line_no);
    } else if (st == SK_ERR_NOT_FOUND) { /* the end of the input */
        st = bad ? sk__fail(&err, SK_ERR_INVALID_EVENT,
                            "%zu of %zu lines are invalid; nothing queued", bad, bad + n)
                 : SK_OK;
    }
    sk__line_stream_free(&ls);
    if (st == SK_OK)
        st = stamp_clock(s, envs, needs, n, &err);
    if (st == SK_OK && n)
        st = sk__sync_enqueue_envelopes(s, envs, n, &err);
    for (size_t i = 0; i < n; i++)
        json_decref(envs[i]);
    free(envs);
    free(needs);
    if (count_out)
        *count_out = st == SK_OK ? n : 0;
    if (st != SK_OK)
        set_error(s, &err);
    return st;
}

sk_status sk__sync_transport(sk_sync *s, sk__plugin **out)
{
    if (s->plugin) {
        *out = s->plugin;
        return SK_OK;
    }
    char path[PATH_MAX];
    sk_status st =
        sk__plugin_find(s->cfg->transport_plugin, s->cfg->plugin_path, path, sizeof path, &s->err);
    sk__plugin *p = NULL;
    if (st == SK_OK)
        st = sk__plugin_open(path, (int)s->cfg->transport_abi, &p, &s->err);
    if (st != SK_OK)
        return st;
    s->phost = (sk__plugin_host){.server_url = s->cfg->server_url,
                                 .state_root = s->root,
                                 .node_id = s->node_id,
                                 .options = s->cfg->transport_options,
                                 .log = forward_log,
                                 .auth_header = session_auth_header,
                                 .ctx = s};
    st = sk__plugin_start(p, &s->phost, &s->err);
    if (st != SK_OK) {
        sk__plugin_close(p);
        return st;
    }
    pthread_mutex_lock(&s->plugin_mu);
    s->plugin = p;
    /* A cancel that came while the plugin loaded found nothing to call. */
    if (atomic_load(&s->cancel))
        sk__plugin_cancel(p);
    pthread_mutex_unlock(&s->plugin_mu);
    *out = p;
    return SK_OK;
}

void sk__sync_each_metric(sk_sync *s, void (*fn)(void *ctx, const char *name, int64_t value),
                          void *ctx)
{
    pthread_mutex_lock(&s->plugin_mu);
    if (s->plugin)
        sk__plugin_each_metric(s->plugin, fn, ctx);
    pthread_mutex_unlock(&s->plugin_mu);
}

void sk__sync_cancel(sk_sync *s)
{
    atomic_store(&s->cancel, 1);
    ssize_t w = write(s->cancel_pipe[1], "c", 1);
    (void)w; /* a full pipe is readable already */
    pthread_mutex_lock(&s->plugin_mu);
    if (s->plugin)
        sk__plugin_cancel(s->plugin);
    pthread_mutex_unlock(&s->plugin_mu);
}

void sk__sync_cancel_reset(sk_sync *s)
{
    sk__plugin_close(take_plugin(s));
    char buf[64];
    while (read(s->cancel_pipe[0], buf, sizeof buf) > 0)
        ;
    atomic_store(&s->cancel, 0);
}

const char *sk__sync_load_sched(sk_sync *s)
{
    sk__err err;
    s->sched_warning[0] = '\0';
    if (sk__sched_load(&s->sched, s->root, &err) != SK_OK)
        snprintf(s->sched_warning, sizeof s->sched_warning, "%s (starting fresh)", err.msg);
    return s->sched_warning[0] ? s->sched_warning : NULL;
}

sk__sched_policy sk__sync_sched_policy(const sk_sync *s)
{
    sk__sched_policy p = sk__sched_policy_default();
    p.interval_ms = s->cfg->interval_s * 1000;
    p.backoff_min_ms = s->cfg->backoff_min_ms;
    p.backoff_max_ms = s->cfg->backoff_max_ms;
    p.min_batch_interval_ms = s->cfg->min_batch_interval_ms;
    return p;
}

void sk__sync_record_pass(sk_sync *s, sk_status st, const sk_drain_summary *sum,
                          const sk__pass_info *info)
{
    sk__err err;
    s->sched_warning[0] = '\0'; /* best effort: the state only feeds status and timing */
    if (sk__sched_record_pass_file(&s->sched, s->root, st, sum, info, &err) == SK_ERR_IO)
        snprintf(s->sched_warning, sizeof s->sched_warning, "%s (starting fresh)", err.msg);
}

void sk__sync_deliver_opts(const sk_sync *s, int explicit_pass, sk__deliver_opts *o)
{
    sk__deliver_opts_default(o);
    o->max_batch_events = (size_t)s->cfg->max_batch_events;
    o->max_batch_bytes = (size_t)s->cfg->max_batch_bytes;
    o->max_retries = s->cfg->max_retries;
    o->drain_lock_path = s->drain_lock;
    o->sched = s->sched.policy;
    o->max_batches = sk__sched_pass_batches(explicit_pass);
    int64_t now = sk__sched_now(&s->sched);
    if (explicit_pass) /* background passes are due only once it passed */
        o->wait_first_ms = sk__sched_explicit_due(&s->sched, now) - now;
}

/* On a 401: refresh the session (single-flight with every other drainer). */
static sk_status reauthenticate(void *ctx, sk__err *err)
{
    sk_sync *s = ctx;
    return sk__auth_refresh(s->auth, err);
}

sk_status sk__sync_deliver(sk_sync *s, const sk__deliver_opts *opts, const sk__deliver_hooks *hooks,
                           sk_drain_summary *out, sk__pass_info *info)
{
    sk__plugin *p;
    memset(out, 0, sizeof *out);
    *info = (sk__pass_info){0};
    sk_status st = sk__sync_transport(s, &p);
    if (st != SK_OK) {
        snprintf(out->stop_reason, sizeof out->stop_reason, "%s", s->err.msg);
        return st;
    }
    sk__deliver_hooks h = hooks ? *hooks : (sk__deliver_hooks){0};
    h.reauthenticate = reauthenticate;
    h.auth_ctx = s;
    return sk__deliver_pass(s->q, p, opts, &h, out, info, &s->err);
}

sk_status sk__sync_drain(sk_sync *s, const sk__deliver_hooks *hooks, sk_drain_summary *out)
{
    sk__sync_load_sched(s);
    sk__deliver_opts o;
    sk__sync_deliver_opts(s, 1, &o);
    sk__deliver_hooks h = hooks ? *hooks : (sk__deliver_hooks){0};
    h.cancel = &s->cancel;
    sk__pass_info info;
    sk_status st = sk__sync_deliver(s, &o, &h, out, &info);
    sk__sync_record_pass(s, st, out, &info);
    return st;
}

