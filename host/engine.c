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

/* Detaches a transport from the handle, so sk__sync_cancel no longer reaches it. */
static sk__plugin *take_plugin(sk_sync *s, sk__plugin **slot)
{
    pthread_mutex_lock(&s->plugin_mu);
    sk__plugin *p = *slot;
    *slot = NULL;
    pthread_mutex_unlock(&s->plugin_mu);
    return p;
}

/* Closes both transports (the next pass loads them again). */
static void close_transports(sk_sync *s)
{
    sk__plugin_close(take_plugin(s, &s->plugin));
    sk__plugin_close(take_plugin(s, &s->fallback));
}

void sk__sync_close(sk_sync *s)
{
    if (!s)
        return;
    close_transports(s);
    sk__metrics_close(s->metrics);
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

sk__metrics *sk__sync_metrics(sk_sync *s, sk__err *err)
{
    pthread_mutex_lock(&s->plugin_mu);
    sk__err ignored;
    if (!s->metrics && sk__metrics_open(s->root, &s->metrics, err ? err : &ignored) != SK_OK)
        s->metrics = NULL;
    sk__metrics *m = s->metrics;
    pthread_mutex_unlock(&s->plugin_mu);
    return m;
}

/* Tells a running service that events wait: its callback in this process, else its socket. */
static void notify_service(sk_sync *s)
{
    if (s->on_enqueue)
        s->on_enqueue(s->on_enqueue_ctx);
    else
        sk__control_poke(s->root);
}

/*
 * Envelopes on their way into the queue: serialised as soon as each is
 * accepted (its json_t can go at once), event_id, event_type and text one
 * after the other in one buffer that is reused chunk after chunk, so a long
 * run allocates nothing per event.
 */
#define CHUNK_EVENTS 1000
#define CHUNK_BYTES ((size_t)4 << 20) /* flushed past this, whatever the count */

typedef struct env_chunk {
    char *buf;
    size_t len, cap;
    size_t n;
    size_t at[CHUNK_EVENTS]; /* where each envelope's event_id starts in buf */
    sk__queue_item items[CHUNK_EVENTS];
} env_chunk;

/* Makes room for need more bytes in c->buf. */
static sk_status chunk_reserve(env_chunk *c, size_t need, sk__err *err)
{
    size_t cap = c->cap;
    if (c->len + need <= cap)
        return SK_OK;
    if (!sk__grow((void **)&c->buf, &cap, c->len + need, 1))
        return sk__fail(err, SK_ERR_NOMEM, "out of memory");
    c->cap = cap;
    return SK_OK;
}

/* Serialises a validated envelope into the chunk; *full when it must be flushed now. */
static sk_status chunk_put(env_chunk *c, const json_t *env, int *full, sk__err *err)
{
    const char *id = json_string_value(json_object_get(env, "event_id"));
    const char *type = json_string_value(json_object_get(env, "event_type"));
    if (!id || !type)
        return sk__fail(err, SK_ERR_INVALID_EVENT, "event_id and event_type are required");
    size_t id_len = strlen(id) + 1, type_len = strlen(type) + 1, text_len = 512;
    for (;;) { /* sk__event_text says how long the text is when it did not fit */
        sk_status st = chunk_reserve(c, id_len + type_len + text_len + 1, err);
        if (st != SK_OK)
            return st;
        char *text = c->buf + c->len + id_len + type_len;
        size_t room = c->cap - c->len - id_len - type_len - 1;
        size_t got = sk__event_text(env, text, room);
        if (got == 0)
            return sk__fail(err, SK_ERR_NOMEM, "event %s: cannot serialise it", id);
        if (got > room) {
            text_len = got;
            continue;
        }
        text[got] = '\0';
        memcpy(c->buf + c->len, id, id_len);
        memcpy(c->buf + c->len + id_len, type, type_len);
        c->at[c->n++] = c->len;
        c->len += id_len + type_len + got + 1;
        *full = c->n == CHUNK_EVENTS || c->len >= CHUNK_BYTES;
        return SK_OK;
    }
}

/* Adds the chunk's envelopes to the enqueue in progress and empties it. */
static sk_status chunk_flush(sk_sync *s, env_chunk *c, sk__err *err)
{
    int64_t now_s = sk__wall_ms() / 1000;
    for (size_t i = 0; i < c->n; i++) {
        const char *id = c->buf + c->at[i];
        const char *type = id + strlen(id) + 1;
        c->items[i] = (sk__queue_item){id, type, type + strlen(type) + 1, now_s};
    }
    sk_status st = c->n ? sk__queue_enqueue_add(s->q, c->items, c->n, err) : SK_OK;
    c->n = c->len = 0;
    return st;
}

/* Adds validated envelopes to the enqueue in progress. */
static sk_status enqueue_add_envelopes(sk_sync *s, json_t **envs, size_t n, sk__err *err)
{
    env_chunk *c = malloc(sizeof *c); /* ~40 KB: only the parts used are touched */
    if (!c)
        return sk__fail(err, SK_ERR_NOMEM, "out of memory");
    c->buf = NULL;
    c->len = c->cap = c->n = 0;
    sk_status st = SK_OK;
    int full = 0;
    for (size_t i = 0; st == SK_OK && i < n; i++)
        if ((st = chunk_put(c, envs[i], &full, err)) == SK_OK && full)
            st = chunk_flush(s, c, err);
    if (st == SK_OK)
        st = chunk_flush(s, c, err);
    free(c->buf);
    free(c);
    return st;
}

/* Ends the enqueue of n events begun with sk__queue_enqueue_begin: the service is told
 * of what was queued, and a refusal for a full queue is counted (never dropped silently). */
static sk_status enqueue_end(sk_sync *s, sk_status st, size_t n, sk__err *err)
{
    st = sk__queue_enqueue_end(s->q, st, n, err);
    if (st == SK_OK)
        notify_service(s);
    sk__metrics *m;
    sk__err ignored;
    if (st == SK_ERR_QUEUE_FULL && (m = sk__sync_metrics(s, NULL)))
        sk__metrics_refused_full(m, (int64_t)n, sk__wall_ms(), &ignored);
    return st;
}

sk_status sk__sync_enqueue_envelopes(sk_sync *s, json_t **envs, size_t n, sk__err *err)
{
    if (n == 0)
        return SK_OK;
    sk_status st = sk__queue_enqueue_begin(s->q, n, err);
    if (st == SK_OK)
        st = enqueue_add_envelopes(s, envs, n, err);
    return enqueue_end(s, st, n, err);
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

/*
 * `emit --file` reads its input once, in bounded memory: the Lamport clock is
 * held from the first line to the last (other emitters wait for it), each
 * line is built, stamped with the next value, serialised and added to one
 * queue transaction in chunks. At the end the clock file gets the last value
 * and the transaction commits; a bad line rolls everything back, the clock
 * untouched. A pipe is copied to an unlinked file in the state root first,
 * so a slow writer never keeps the clock and the queue locked.
 */
typedef struct emit_run {
    sk_sync *s;
    const char *name;
    sk__line_defaults d; /* what short lines leave out */
    sk__clock clock;     /* held while the lines are read */
    size_t n, want;      /* events, and those stamped from the clock */
    size_t bad;
    FILE *copy; /* a pipe's lines are copied here, not built yet */
    env_chunk chunk;
} emit_run;

/* Reading stops past queue.max_events events, before building one more. */
static sk_status emit_room(const emit_run *e, sk__err *err)
{
    if (e->n < (size_t)e->s->cfg->queue_max_events)
        return SK_OK;
    return sk__fail(err, SK_ERR_QUEUE_FULL,
                    "%s: more than queue.max_events (%zu) events; nothing queued", e->name, e->n);
}

/* One non-blank line: built, checked and added to the transaction (checked only
 * once a line was bad, to report every bad line). */
static sk_status emit_line(emit_run *e, const char *line, size_t len, size_t line_no,
                           sk_line_error_fn on_error, void *ctx, sk__err *err)
{
    sk_status st = emit_room(e, err);
    if (st != SK_OK)
        return st;
    json_t *env = NULL;
    int needs = 0;
    sk__err lerr = {{0}};
    if (sk__event_from_line(line, len, &e->d, &env, &needs, &lerr) != SK_OK) {
        e->bad++;
        if (on_error)
            on_error(ctx, line_no, lerr.msg);
        return SK_OK;
    }
    e->n++;
    int full = 0;
    if (needs && json_object_set_new(env, "lamport_clock",
                                     json_integer(e->clock.value + (json_int_t)++e->want)) != 0)
        st = sk__fail(err, SK_ERR_NOMEM, "out of memory");
    if (st == SK_OK && !e->bad && (st = chunk_put(&e->chunk, env, &full, err)) == SK_OK && full)
        st = chunk_flush(e->s, &e->chunk, err);
    json_decref(env);
    return st;
}

/* One line of a pipe copied aside as it is (blank ones too: the line numbers stay). */
static sk_status emit_copy(emit_run *e, const char *line, size_t len, int blank, sk__err *err)
{
    sk_status st = blank ? SK_OK : emit_room(e, err);
    if (st != SK_OK)
        return st;
    e->n += !blank;
    if (fwrite(line, 1, len, e->copy) != len || putc('\n', e->copy) == EOF)
        return sk__fail(err, SK_ERR_IO, "cannot copy %s aside: %s", e->name, strerror(errno));
    return SK_OK;
}

/* Reads every line of fd through emit_line, or emit_copy while e->copy is set;
 * the end of the input is SK_OK. */
static sk_status emit_read(emit_run *e, int fd, sk_line_error_fn on_error, void *ctx, sk__err *err)
{
    sk__line_stream ls;
    sk__line_stream_init(&ls, fd, e->name, SK__EVENT_MAX_LINE);
    sk_status st;
    char *line;
    size_t len;
    while ((st = sk__line_stream_next(&ls, &line, &len, err)) == SK_OK) {
        int blank = strspn(line, " \t\r") == len;
        if (atomic_load(&e->s->cancel)) /* sk_sync_cancel: the transaction rolls back */
            st = sk__fail(err, SK_ERR_CANCELLED, "%s: cancelled; nothing queued", e->name);
        else if (e->copy)
            st = emit_copy(e, line, len, blank, err);
        else if (!blank)
            st = emit_line(e, line, len, ls.line_no, on_error, ctx, err);
        if (st != SK_OK)
            break;
    }
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

/* Copies a pipe to an unlinked file in the state root (lines checked for length and
 * counted, nothing built); *out reads the copy from its start. */
static sk_status emit_spool(emit_run *e, int fd, sk_line_error_fn on_error, void *ctx, int *out,
                            sk__err *err)
{
    int tmp = open(e->s->root, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    e->copy = tmp >= 0 ? fdopen(tmp, "w+") : NULL;
    if (!e->copy) {
        int saved = errno;
        if (tmp >= 0)
            close(tmp);
        return sk__fail(err, SK_ERR_IO, "cannot make a file in %s to hold %s: %s", e->s->root,
                        e->name, strerror(saved));
    }
    sk_status st = emit_read(e, fd, on_error, ctx, err);
    if (st == SK_OK && (fflush(e->copy) != 0 || lseek(tmp, 0, SEEK_SET) < 0))
        st = sk__fail(err, SK_ERR_IO, "cannot copy %s aside: %s", e->name, strerror(errno));
    *out = tmp;
    e->n = e->bad = 0;
    return st;
}

/* The reading itself, clock held and transaction open; ends both. */
static sk_status emit_locked(emit_run *e, int fd, sk_line_error_fn on_error, void *ctx,
                             sk__err *err)
{
    sk_sync *s = e->s;
    sk_status st = sk__clock_hold(s->root, SK__CLOCK_WAIT_MS, &e->clock, err);
    if (st != SK_OK)
        return st;
    st = sk__queue_enqueue_begin(s->q, 0, err); /* the count is known at the end */
    if (st == SK_OK) {
        st = emit_read(e, fd, on_error, ctx, err);
        if (st == SK_OK && e->bad)
            st = sk__fail(err, SK_ERR_INVALID_EVENT, "%zu of %zu lines are invalid; nothing queued",
                          e->bad, e->bad + e->n);
        if (st == SK_OK)
            st = chunk_flush(s, &e->chunk, err);
        /* The clock file first: a crash before the commit then leaves a gap in the
         * clock, never a value handed out twice. */
        if (st == SK_OK && e->want)
            st = sk__clock_use(&e->clock, (int64_t)e->want, s->node_id,
                               s->cfg->queue_durability == SK__DURABILITY_FULL, err);
        st = e->n ? enqueue_end(s, st, e->n, err) : sk__queue_enqueue_end(s->q, st, 0, err);
    }
    sk__clock_release(&e->clock);
    return st;
}

sk_status sk__sync_emit_ndjson(sk_sync *s, int fd, const char *name, const sk_event_spec *defaults,
                               sk_line_error_fn on_error, void *ctx, size_t *count_out)
{
    sk__err err = {{0}};
    emit_run *e = malloc(sizeof *e);
    if (!e) {
        sk__fail(&err, SK_ERR_NOMEM, "out of memory");
        set_error(s, &err);
        return SK_ERR_NOMEM;
    }
    *e = (emit_run){.s = s, .name = name};
    sk__sync_line_defaults(s, defaults, &e->d);
    int input = fd;
    sk_status st =
        lseek(fd, 0, SEEK_CUR) >= 0 ? SK_OK : emit_spool(e, fd, on_error, ctx, &input, &err);
    FILE *copy = e->copy;
    e->copy = NULL;
    if (st == SK_OK)
        st = emit_locked(e, input, on_error, ctx, &err);
    if (copy)
        fclose(copy);
    size_t n = e->n;
    free(e->chunk.buf);
    free(e);
    if (count_out)
        *count_out = st == SK_OK ? n : 0;
    if (st != SK_OK)
        set_error(s, &err);
    return st;
}

/* Loads and starts plugin name with the host values h (once per handle): *slot is
 * set under plugin_mu, so sk__sync_cancel reaches it. */
static sk_status load_transport(sk_sync *s, const char *name, sk__plugin_host *h,
                                sk__plugin **slot, sk__plugin **out)
{
    if (*slot) {
        *out = *slot;
        return SK_OK;
    }
    char path[PATH_MAX];
    sk_status st = sk__plugin_find(name, s->cfg->plugin_path, path, sizeof path, &s->err);
    sk__plugin *p = NULL;
    if (st == SK_OK)
        st = sk__plugin_open(path, (int)s->cfg->transport_abi, &p, &s->err);
    if (st != SK_OK)
        return st;
    st = sk__plugin_start(p, h, &s->err);
    if (st != SK_OK) {
        sk__plugin_close(p);
        return st;
    }
    pthread_mutex_lock(&s->plugin_mu);
    *slot = p;
    /* A cancel that came while the plugin loaded found nothing to call. */
    if (atomic_load(&s->cancel))
        sk__plugin_cancel(p);
    pthread_mutex_unlock(&s->plugin_mu);
    *out = p;
    return SK_OK;
}

/* The host values lent to a transport of this handle, talking to url. */
static sk__plugin_host plugin_host(sk_sync *s, const char *url)
{
    return (sk__plugin_host){.server_url = url,
                             .state_root = s->root,
                             .node_id = s->node_id,
                             .options = s->cfg->transport_options,
                             .log = forward_log,
                             .auth_header = session_auth_header,
                             .ctx = s};
}

sk_status sk__sync_transport(sk_sync *s, sk__plugin **out)
{
    if (!s->plugin)
        s->phost = plugin_host(s, s->cfg->server_url);
    return load_transport(s, s->cfg->transport_plugin, &s->phost, &s->plugin, out);
}

/* The fallback transport, with the same options, sending to transport.fallback_url. */
static sk_status fallback_transport(sk_sync *s, sk__plugin **out)
{
    const sk__config *c = s->cfg;
    if (!s->fallback)
        s->fallback_host =
            plugin_host(s, c->transport_fallback_url[0] ? c->transport_fallback_url : c->server_url);
    return load_transport(s, c->transport_fallback, &s->fallback_host, &s->fallback, out);
}

/* Failed passes of p may hand over to the fallback: it streams, it can say when it is
 * back (probe), and a fallback is configured. */
static int may_fall_back(const sk_sync *s, const sk__plugin *p)
{
    uint32_t need = SK_CAP_STREAMING | SK_CAP_PROBE;
    return s->cfg->transport_fallback[0] && (sk__plugin_caps(p) & need) == need;
}

/* How long the streaming transport's probe may take before a fallback pass. */
#define FALLBACK_PROBE_MS 2000

/*
 * In fallback: *p (the streaming transport) is kept when its probe, if due,
 * connects (info->back_online), else replaced by the fallback transport. A
 * fallback the config no longer allows ends at once.
 */
static sk_status choose_transport(sk_sync *s, const sk__deliver_opts *o, sk__plugin **p,
                                   sk__pass_info *info)
{
    if (!o->in_fallback)
        return SK_OK;
    if (!may_fall_back(s, *p)) {
        info->back_online = 1;
        return SK_OK;
    }
    if (o->probe_first) {
        char reason[256];
        info->probed = 1;
        info->back_online = sk__plugin_probe(*p, sk__mono_ms() + FALLBACK_PROBE_MS, reason,
                                             sizeof reason) == SK_PROBE_CONNECTED;
    }
    return info->back_online ? SK_OK : fallback_transport(s, p);
}

void sk__sync_each_metric(sk_sync *s, sk__plugin_metric_fn fn, void *ctx)
{
    pthread_mutex_lock(&s->plugin_mu);
    if (s->plugin) /* the streaming transport's, also while the fallback sends */
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
    if (s->fallback)
        sk__plugin_cancel(s->fallback);
    pthread_mutex_unlock(&s->plugin_mu);
}

void sk__sync_cancel_reset(sk_sync *s)
{
    close_transports(s);
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
    p.fallback_after = s->cfg->transport_fallback_after; /* may_fall_back asks for a fallback */
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
    o->max_batches = sk__sched_pass_batches(explicit_pass, s->sched.streaming);
    o->max_events_per_s = s->cfg->max_events_per_s;
    int64_t now = sk__sched_now(&s->sched);
    if (explicit_pass) /* background passes are due only once it passed */
        o->wait_first_ms = sk__sched_explicit_due(&s->sched, now) - now;
    o->in_fallback = s->sched.fallback;
    o->probe_first = s->sched.fallback && sk__sched_probe_due(&s->sched, now, explicit_pass);
}

/* Which access token a batch leaves with (see sk__auth_generation). */
static unsigned auth_generation(void *ctx)
{
    sk_sync *s = ctx;
    return sk__auth_generation(s->auth);
}

/* On a 401: refresh the session unless the token changed since the batch left
 * (single-flight with every other batch and drainer). */
static sk_status reauthenticate(void *ctx, unsigned sent, int *refreshed, sk__err *err)
{
    sk_sync *s = ctx;
    return sk__auth_refresh_after(s->auth, sent, refreshed, err);
}

sk_status sk__sync_deliver(sk_sync *s, const sk__deliver_opts *opts, const sk__deliver_hooks *hooks,
                           sk_drain_summary *out, sk__pass_info *info)
{
    sk__plugin *p;
    memset(out, 0, sizeof *out);
    sk__pass_info probe = {0}; /* the pass below starts its info afresh */
    sk_status st = sk__sync_transport(s, &p);
    if (st == SK_OK)
        st = choose_transport(s, opts, &p, &probe);
    *info = probe;
    if (st != SK_OK) {
        sk__fit_text(out->stop_reason, sizeof out->stop_reason, s->err.msg);
        return st;
    }
    sk__deliver_hooks h = hooks ? *hooks : (sk__deliver_hooks){0};
    h.auth_generation = auth_generation;
    h.reauthenticate = reauthenticate;
    h.auth_ctx = s;
    h.metrics = sk__sync_metrics(s, NULL); /* best effort: delivery never depends on it */
    /* Known once the transport is loaded: a streaming one drains every pass (the
       scheduler learns it from the pass's info, on the thread that owns it). */
    int streaming = (sk__plugin_caps(p) & SK_CAP_STREAMING) != 0;
    sk__deliver_opts o = *opts;
    o.max_batches = streaming ? sk__sched_pass_batches(0, 1) : o.max_batches;
    st = sk__deliver_pass(s->q, p, &o, &h, out, info, &s->err);
    info->streaming = streaming;
    info->may_fall_back = p != s->fallback && may_fall_back(s, p);
    info->probed = probe.probed;
    info->back_online = probe.back_online;
    return st;
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

