/* The public embedding API (include/spec-kitty/sync.h) over the host modules. */
#include "engine.h"
#include "control.h"
#include "daemon.h"
#include "event.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
        s->log(s->log_ctx, level, plugin, line);
}

sk_status sk__sync_queue_open(const sk_sync *s, sk__queue **out, sk__err *err)
{
    char path[PATH_MAX + 16];
    sk__queue_opts qo = {.max_events = s->cfg->queue_max_events,
                         .durability = s->cfg->queue_durability};
    snprintf(path, sizeof path, "%s/queue.db", s->root);
    return sk__queue_open(path, &qo, out, err);
}

sk_status sk_open(const char *state_root, sk_sync **out, char *errbuf, size_t err_cap)
{
    *out = NULL;
    sk_sync *s = calloc(1, sizeof *s);
    sk__err err = {{0}};
    sk_status st = s ? SK_OK : sk__fail(&err, SK_ERR_NOMEM, "out of memory");
    if (st == SK_OK)
        pthread_mutex_init(&s->plugin_mu, NULL);
    if (st == SK_OK)
        st = sk__state_root_resolve(state_root, s->root, sizeof s->root, &err);
    if (st == SK_OK)
        st = sk__mkdirs_owner(s->root, &err);
    if (st == SK_OK)
        snprintf(s->drain_lock, sizeof s->drain_lock, "%s/drain.lock", s->root);
    if (st == SK_OK)
        st = sk__config_load(s->root, &s->cfg, &err);
    if (st == SK_OK)
        st = sk__auth_open(s->root, s->cfg, &s->auth, &err);
    if (st == SK_OK)
        st = sk__node_id_cached(s->root, s->node_id, &err);
    if (st == SK_OK)
        st = sk__sync_queue_open(s, &s->q, &err);
    if (st != SK_OK) {
        if (errbuf && err_cap)
            snprintf(errbuf, err_cap, "%s", err.msg);
        sk_close(s);
        return st;
    }
    sk__auth_team_slug(s->auth, s->team_slug, sizeof s->team_slug);
    atomic_init(&s->cancel, 0);
    sk__sched_policy policy = sk__sync_sched_policy(s);
    sk__sched_init(&s->sched, &policy, NULL, NULL); /* loaded when asked for: emit never is */
    *out = s;
    return SK_OK;
}

/* Detaches the transport from the handle, so sk_sync_cancel no longer reaches it. */
static sk__plugin *take_plugin(sk_sync *s)
{
    pthread_mutex_lock(&s->plugin_mu);
    sk__plugin *p = s->plugin;
    s->plugin = NULL;
    pthread_mutex_unlock(&s->plugin_mu);
    return p;
}

void sk_close(sk_sync *s)
{
    if (!s)
        return;
    if (s->service)
        sk_service_stop(s, -1);
    sk__plugin_close(take_plugin(s));
    pthread_mutex_destroy(&s->plugin_mu);
    sk__queue_close(s->q);
    sk__auth_close(s->auth);
    sk__config_free(s->cfg);
    free(s);
}

const char *sk_last_error(const sk_sync *s)
{
    return s ? s->err.msg : "";
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

/* Tells a running service that events wait: in this process directly, else over its socket. */
static void poke_service(sk_sync *s)
{
    if (s->service)
        sk__service_poke(s->service);
    else
        sk__control_poke(s->root);
}

/* Adds validated envelopes to the enqueue in progress (serialised here). */
static sk_status enqueue_add_envelopes(sk_sync *s, json_t **envs, size_t n, sk__err *err)
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
        st = sk__queue_enqueue_add(s->q, items, n, err);
    for (size_t i = 0; texts && i < n; i++)
        free(texts[i]);
    free(texts);
    free(items);
    return st;
}

sk_status sk__sync_enqueue_envelopes(sk_sync *s, json_t **envs, size_t n, sk__err *err)
{
    if (n == 0)
        return SK_OK;
    sk_status st = sk__queue_enqueue_begin(s->q, n, err);
    if (st == SK_OK)
        st = enqueue_add_envelopes(s, envs, n, err);
    st = sk__queue_enqueue_end(s->q, st, n, err);
    if (st == SK_OK)
        poke_service(s);
    return st;
}

/* Reserves n Lamport values and stamps the envelopes that need one (built ones). */
static sk_status stamp_clock(sk_sync *s, json_t **envs, const int *needs, size_t n, sk__err *err)
{
    size_t want = 0;
    for (size_t i = 0; i < n; i++)
        want += needs[i] != 0;
    if (want == 0)
        return SK_OK;
    int64_t first = 0;
    sk_status st = sk__clock_tick(s->root, s->node_id, (int64_t)want,
                                  s->cfg->queue_durability == SK__DURABILITY_FULL, &first, err);
    for (size_t i = 0; st == SK_OK && i < n; i++)
        if (needs[i])
            json_object_set_new(envs[i], "lamport_clock", json_integer(first++));
    return st;
}

/* "" in the config means "not set". */
static const char *config_or_null(const char *value)
{
    return value && *value ? value : NULL;
}

/* The builder's fields of spec, with sync.json's emit.* for what it leaves out. */
static sk__event_fields event_fields(const sk_sync *s, const sk_event_spec *spec, json_t *payload)
{
    const sk__config *c = s->cfg;
    return (sk__event_fields){
        .event_type = spec->event_type,
        .aggregate_id = spec->aggregate_id,
        .aggregate_type = spec->aggregate_type,
        .payload = payload,
        .causation_id = spec->causation_id,
        .schema = spec->schema ? spec->schema : (int)c->emit_schema,
        .correlation_id = spec->correlation_id,
        .project_uuid = spec->project_uuid ? spec->project_uuid
                                           : config_or_null(c->emit_project_uuid),
        .project_slug = spec->project_slug ? spec->project_slug
                                           : config_or_null(c->emit_project_slug),
        .build_id = spec->build_id ? spec->build_id : c->emit_build_id,
    };
}

sk_status sk_emit_event(sk_sync *s, const sk_event_spec *spec, char event_id_out[27])
{
    sk__err err = {{0}};
    json_t *payload = NULL, *env = NULL;
    sk_status st = spec->schema == 0 || spec->schema == 1 || spec->schema == 3
                       ? parse_payload(spec->payload_json, &payload, &err)
                       : sk__fail(&err, SK_ERR_USAGE, "schema %d: expected 1 (classic) or 3 (current)",
                                  spec->schema);
    sk__event_fields f = event_fields(s, spec, payload);
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

sk_status sk_emit(sk_sync *s, const char *event_type, const char *aggregate_id,
                  const char *aggregate_type, const char *payload_json, const char *causation_id,
                  char event_id_out[27])
{
    sk_event_spec spec = {.event_type = event_type,
                          .aggregate_id = aggregate_id,
                          .aggregate_type = aggregate_type,
                          .payload_json = payload_json,
                          .causation_id = causation_id};
    return sk_emit_event(s, &spec, event_id_out);
}

/* A string member of a line, or dflt. */
static const char *line_string_or(const json_t *obj, const char *key, const char *dflt)
{
    const char *v = json_string_value(json_object_get(obj, key));
    return v ? v : dflt;
}

sk_status sk__sync_line_envelope(const sk_sync *s, const char *line, size_t len,
                                 const sk_event_spec *defaults, json_t **out, int *needs_clock,
                                 sk__err *err)
{
    *out = NULL;
    *needs_clock = 0;
    if (memchr(line, '\0', len))
        return sk__fail(err, SK_ERR_INVALID_EVENT, "holds a NUL byte");
    json_error_t jerr;
    json_t *obj = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!obj)
        return sk__fail(err, SK_ERR_INVALID_EVENT, "not valid JSON (column %d: %s)", jerr.column,
                        jerr.text);
    if (!json_is_object(obj)) {
        json_decref(obj);
        return sk__fail(err, SK_ERR_INVALID_EVENT, "expected a JSON object");
    }
    sk_status st;
    if (json_object_get(obj, "event_id")) {
        st = sk__event_accept(obj, err);
        if (st == SK_OK)
            *out = json_incref(obj);
    } else {
        *needs_clock = 1;
        json_t *payload = json_object_get(obj, "payload");
        sk_event_spec spec = *defaults;
        spec.event_type = line_string_or(obj, "event_type", line_string_or(obj, "type", NULL));
        spec.aggregate_id = line_string_or(obj, "aggregate_id", NULL);
        spec.aggregate_type = line_string_or(obj, "aggregate_type", NULL);
        spec.causation_id = line_string_or(obj, "causation_id", NULL);
        if (json_object_get(obj, "schema_version"))
            spec.schema = 3;
        spec.correlation_id = line_string_or(obj, "correlation_id", spec.correlation_id);
        spec.project_uuid = line_string_or(obj, "project_uuid", spec.project_uuid);
        spec.project_slug = line_string_or(obj, "project_slug", spec.project_slug);
        spec.build_id = line_string_or(obj, "build_id", spec.build_id);
        sk__event_fields f = event_fields(s, &spec, payload);
        if (payload && !json_is_object(payload))
            st = sk__fail(err, SK_ERR_INVALID_EVENT, "payload: expected a JSON object");
        else if (!f.event_type)
            st = sk__fail(err, SK_ERR_INVALID_EVENT, "event_type: missing");
        else if (!f.aggregate_id)
            st = sk__fail(err, SK_ERR_INVALID_EVENT, "aggregate_id: missing");
        else
            st = sk__event_build(&f, 0, s->node_id, s->team_slug, out, err);
    }
    json_decref(obj);
    return st;
}

/*
 * `emit --file` reads its input twice, so that memory stays bounded whatever
 * its size: the first pass checks every line and counts the events (nothing
 * kept), the clock values are reserved for all of them at once, and the
 * second pass builds the envelopes again and enqueues them in chunks, all in
 * one transaction. Input that cannot be read twice (a pipe) is copied to an
 * unlinked file in the state root during the first pass.
 */
#define EMIT_CHUNK 1000

typedef struct emit_pass {
    sk_sync *s;
    const char *name;
    const sk_event_spec *defaults;
    size_t n, want; /* events, and those that need a clock value */
    size_t bad;
    FILE *copy;     /* first pass: where the lines are copied, or NULL */
    int second;     /* the enqueue pass */
    int64_t clock;  /* the next reserved value (second pass) */
    json_t *chunk[EMIT_CHUNK];
    size_t chunk_n;
} emit_pass;

static sk_status emit_flush(emit_pass *e, sk__err *err)
{
    sk_status st = enqueue_add_envelopes(e->s, e->chunk, e->chunk_n, err);
    for (size_t i = 0; i < e->chunk_n; i++)
        json_decref(e->chunk[i]);
    e->chunk_n = 0;
    return st;
}

static sk_status emit_copy(FILE *copy, const char *line, size_t len, sk__err *err)
{
    if (fwrite(line, 1, len, copy) != len || putc('\n', copy) == EOF)
        return sk__fail(err, SK_ERR_IO, "cannot copy the input aside: %s", strerror(errno));
    return SK_OK;
}

/* One non-blank line: counted (first pass) or enqueued (second pass). */
static sk_status emit_line(emit_pass *e, const char *line, size_t len, size_t line_no,
                           sk__line_error_fn on_error, void *ctx, sk__err *err)
{
    if (e->n == (size_t)e->s->cfg->queue_max_events)
        return sk__fail(err, SK_ERR_QUEUE_FULL,
                        "%s: more than queue.max_events (%zu) events; nothing queued", e->name,
                        e->n);
    if (e->copy && emit_copy(e->copy, line, len, err) != SK_OK)
        return SK_ERR_IO;
    json_t *env = NULL;
    int needs = 0;
    sk__err lerr = {{0}};
    if (sk__sync_line_envelope(e->s, line, len, e->defaults, &env, &needs, &lerr) != SK_OK) {
        if (e->second) /* valid on the first reading */
            return sk__fail(err, SK_ERR_IO, "%s changed while it was read; nothing queued", e->name);
        e->bad++;
        if (on_error)
            on_error(ctx, line_no, lerr.msg);
        return SK_OK;
    }
    e->n++;
    e->want += needs != 0;
    if (!e->second) {
        json_decref(env);
        return SK_OK;
    }
    if (needs)
        json_object_set_new(env, "lamport_clock", json_integer(e->clock++));
    e->chunk[e->chunk_n++] = env;
    return e->chunk_n == EMIT_CHUNK ? emit_flush(e, err) : SK_OK;
}

/* Reads every line of fd through emit_line; the end of the input is SK_OK. */
static sk_status emit_read(emit_pass *e, int fd, sk__line_error_fn on_error, void *ctx,
                           sk__err *err)
{
    sk__line_stream ls;
    sk__line_stream_init(&ls, fd, e->name, SK__EMIT_MAX_LINE);
    sk_status st;
    char *line;
    size_t len;
    while ((st = sk__line_stream_next(&ls, &line, &len, err)) == SK_OK)
        if (strspn(line, " \t\r") != len &&
            (st = emit_line(e, line, len, ls.line_no, on_error, ctx, err)) != SK_OK)
            break;
    if (st == SK_ERR_INVALID_EVENT) { /* a line too long: reading stopped there */
        e->bad++;
        if (on_error)
            on_error(ctx, ls.line_no, err->msg);
        st = sk__fail(err, SK_ERR_INVALID_EVENT,
                      "%s: line %zu is too long; nothing queued (reading stopped there)", e->name,
                      ls.line_no);
    } else if (st == SK_ERR_NOT_FOUND) { /* the end of the input */
        st = SK_OK;
    }
    sk__line_stream_free(&ls);
    return st;
}

/* The second reading's input: fd again from where it started, else the copy. */
static sk_status emit_rewind(int fd, off_t start, FILE *copy, const char *name, int *out,
                             sk__err *err)
{
    *out = copy ? fileno(copy) : fd;
    if ((copy && fflush(copy) != 0) || lseek(*out, copy ? 0 : start, SEEK_SET) < 0)
        return sk__fail(err, SK_ERR_IO, "%s: cannot read it again: %s", name, strerror(errno));
    return SK_OK;
}

/* An unlinked file in the state root to hold input that cannot be read twice. */
static sk_status emit_copy_open(emit_pass *e, const char *root, sk__err *err)
{
    int fd = open(root, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    e->copy = fd >= 0 ? fdopen(fd, "w+") : NULL;
    if (e->copy)
        return SK_OK;
    int saved = errno;
    if (fd >= 0)
        close(fd);
    return sk__fail(err, SK_ERR_IO, "cannot make a file in %s to hold %s: %s", root, e->name,
                    strerror(saved));
}

/* The second pass: reserves the clock values, then enqueues in one transaction. */
static sk_status emit_enqueue(emit_pass *e, int fd, sk__err *err)
{
    size_t n = e->n, want = e->want;
    int64_t first = 0;
    sk_status st = want ? sk__clock_tick(e->s->root, e->s->node_id, (int64_t)want,
                                         e->s->cfg->queue_durability == SK__DURABILITY_FULL,
                                         &first, err)
                        : SK_OK;
    if (st != SK_OK)
        return st;
    *e = (emit_pass){.s = e->s, .name = e->name, .defaults = e->defaults, .second = 1,
                     .clock = first};
    st = sk__queue_enqueue_begin(e->s->q, n, err);
    if (st == SK_OK)
        st = emit_read(e, fd, NULL, NULL, err);
    if (st == SK_OK && e->chunk_n)
        st = emit_flush(e, err);
    if (st == SK_OK && (e->n != n || e->want != want))
        st = sk__fail(err, SK_ERR_IO, "%s changed while it was read; nothing queued", e->name);
    for (size_t i = 0; i < e->chunk_n; i++)
        json_decref(e->chunk[i]);
    st = sk__queue_enqueue_end(e->s->q, st, n, err);
    if (st == SK_OK)
        poke_service(e->s);
    return st;
}

sk_status sk__sync_emit_ndjson(sk_sync *s, int fd, const char *name, const sk_event_spec *defaults,
                               sk__line_error_fn on_error, void *ctx, size_t *count_out)
{
    sk__err err = {{0}};
    emit_pass *e = calloc(1, sizeof *e);
    if (!e) {
        sk__fail(&err, SK_ERR_NOMEM, "out of memory");
        set_error(s, &err);
        return SK_ERR_NOMEM;
    }
    *e = (emit_pass){.s = s, .name = name, .defaults = defaults};
    off_t start = lseek(fd, 0, SEEK_CUR);
    sk_status st = start >= 0 ? SK_OK : emit_copy_open(e, s->root, &err);
    if (st == SK_OK)
        st = emit_read(e, fd, on_error, ctx, &err);
    if (st == SK_OK && e->bad)
        st = sk__fail(&err, SK_ERR_INVALID_EVENT, "%zu of %zu lines are invalid; nothing queued",
                      e->bad, e->bad + e->n);
    int again = -1;
    size_t n = e->n;
    FILE *copy = e->copy;
    if (st == SK_OK && n && (st = emit_rewind(fd, start, copy, name, &again, &err)) == SK_OK)
        st = emit_enqueue(e, again, &err);
    if (copy)
        fclose(copy);
    free(e);
    if (count_out)
        *count_out = st == SK_OK ? n : 0;
    if (st != SK_OK)
        set_error(s, &err);
    return st;
}

sk_status sk_queue_info_get(sk_sync *s, sk_queue_info *out)
{
    sk__queue_stats qs;
    sk_status st = sk__queue_stats_get(s->q, &qs, &s->err);
    if (st == SK_OK)
        *out = (sk_queue_info){qs.ready, qs.parked, qs.oldest_timestamp};
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

void sk_sync_cancel(sk_sync *s)
{
    if (!s)
        return;
    atomic_store(&s->cancel, 1);
    pthread_mutex_lock(&s->plugin_mu);
    if (s->plugin)
        sk__plugin_cancel(s->plugin);
    pthread_mutex_unlock(&s->plugin_mu);
}

void sk__sync_cancel_reset(sk_sync *s)
{
    sk__plugin_close(take_plugin(s));
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

typedef struct progress_adapter {
    sk_progress_fn fn;
    void *ctx;
} progress_adapter;

static void adapt_progress(void *ctx, const sk_drain_summary *so_far, int64_t total)
{
    progress_adapter *a = ctx;
    a->fn(a->ctx, so_far, total);
}

sk_status sk_sync_now(sk_sync *s, sk_progress_fn progress, void *progress_ctx,
                      sk_drain_summary *out)
{
    progress_adapter a = {progress, progress_ctx};
    sk__deliver_hooks h = {.progress = progress ? adapt_progress : NULL, .ctx = &a};
    return sk__sync_drain(s, &h, out);
}
