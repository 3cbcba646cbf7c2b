/*
 * The public API (include/spec-kitty/sync.h): every sk_* function is here, a
 * thin layer over the host modules. The CLI uses nothing else.
 */
#include "control.h"
#include "daemon.h"
#include "doctor.h"
#include "engine.h"
#include "import.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Copies an internal error into a caller's buffer. */
static sk_status give_error(sk_status st, const sk__err *err, char *buf, size_t cap)
{
    if (st != SK_OK && buf && cap)
        snprintf(buf, cap, "%s", err->msg);
    return st;
}

/* ---- the handle --------------------------------------------------------- */

sk_status sk_open(const char *state_root, sk_sync **out, char *errbuf, size_t err_cap)
{
    sk__err err = {{0}};
    return give_error(sk__sync_open(state_root, out, &err), &err, errbuf, err_cap);
}

void sk_close(sk_sync *s)
{
    if (!s)
        return;
    if (s->service)
        sk_service_stop(s, -1);
    sk__sync_close(s);
}

const char *sk_last_error(const sk_sync *s)
{
    return s ? s->err.msg : "";
}

void sk_set_log(sk_sync *s, sk_log_fn fn, void *ctx)
{
    s->log = fn;
    s->log_ctx = ctx;
}

const char *const *sk_config_warnings(const sk_sync *s)
{
    static const char *const none[] = {NULL};
    return s->cfg->warnings ? (const char *const *)s->cfg->warnings : none;
}

size_t sk_config_key_count(void)
{
    return sk__config_key_count();
}

void sk_config_key_get(size_t i, sk_config_key *out)
{
    sk__config_key_info k;
    sk__config_key_describe(i, &k);
    *out = (sk_config_key){k.name, k.type, k.help};
}

char *sk_config_value(const sk_sync *s, size_t i, const char **source)
{
    sk__config_source src;
    json_t *v = sk__config_value_json(s->cfg, i, &src);
    char *text = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(v);
    if (source)
        *source = sk__config_source_name(src);
    return text;
}

const char *sk_config_file(const sk_sync *s, int *exists)
{
    if (exists)
        *exists = s->cfg->file_exists;
    return s->cfg->path;
}

const char *sk_state_root(const sk_sync *s)
{
    return s->root;
}

sk_status sk_state_root_resolve(const char *state_root, char *out, size_t cap, char *errbuf,
                                size_t err_cap)
{
    sk__err err = {{0}};
    sk_status st = sk__state_root_resolve(state_root, out, cap, &err);
    if (st == SK_OK)
        st = sk__mkdirs_owner(out, &err);
    return give_error(st, &err, errbuf, err_cap);
}

/* ---- events ------------------------------------------------------------- */

sk_status sk_emit_event(sk_sync *s, const sk_event_spec *spec, char event_id_out[27])
{
    return sk__sync_emit(s, spec, event_id_out);
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

sk_status sk_emit_ndjson(sk_sync *s, int fd, const char *name, const sk_event_spec *defaults,
                         sk_line_error_fn on_error, void *ctx, size_t *count)
{
    return sk__sync_emit_ndjson(s, fd, name, defaults, on_error, ctx, count);
}

sk_status sk_import(sk_sync *s, const char *path, unsigned flags, sk_bundle_fn fn, void *ctx)
{
    return sk__sync_import(s, path, flags, fn, ctx);
}

/* ---- the queue ------------------------------------------------------------ */

sk_status sk_queue_info_get(sk_sync *s, sk_queue_info *out)
{
    sk__queue_stats qs;
    sk_status st = sk__queue_stats_get(s->q, &qs, &s->err);
    if (st == SK_OK)
        *out = (sk_queue_info){qs.ready, qs.parked, qs.oldest_timestamp};
    return st;
}

sk_status sk_parked_each(sk_sync *s, sk_parked_fn fn, void *ctx)
{
    return sk__queue_each_parked(s->q, fn, ctx, &s->err);
}

sk_status sk_retry_parked(sk_sync *s, const char *const *event_ids, size_t n, int64_t *moved)
{
    return sk__queue_unpark(s->q, event_ids, n, moved, &s->err);
}

/* ---- delivery -------------------------------------------------------------- */

void sk_sync_cancel(sk_sync *s)
{
    if (s)
        sk__sync_cancel(s);
}

/* A warning on the handle's log (the library never prints). */
static void warn(sk_sync *s, const char *line)
{
    if (s->log)
        s->log(s->log_ctx, SK_LOG_WARN, NULL, line);
}

sk_status sk_sync_drain(sk_sync *s, const sk_drain_hooks *hooks, sk_drain_summary *out,
                        int *via_service)
{
    sk__err err = {{0}};
    sk_status st = sk__control_now(s->root, s->cancel_pipe[0], hooks, out, &err);
    if (st == SK_ERR_PERMISSION)
        warn(s, err.msg);
    int relayed = st != SK_ERR_NOT_FOUND && st != SK_ERR_PERMISSION;
    if (via_service)
        *via_service = relayed;
    if (!relayed) {
        sk__deliver_hooks h = {0};
        if (hooks)
            h = (sk__deliver_hooks){
                .progress = hooks->progress, .failure = hooks->failure, .ctx = hooks->ctx};
        return sk__sync_drain(s, &h, out);
    }
    sk_queue_info qi;
    if (st == SK_ERR_CANCELLED && sk_queue_info_get(s, &qi) == SK_OK)
        out->remaining = qi.size; /* the service may not have said how far it got */
    if (st != SK_OK)
        sk__fail(&s->err, st, "%s", err.msg);
    return st;
}

sk_status sk_sync_now(sk_sync *s, sk_progress_fn progress, void *progress_ctx,
                      sk_drain_summary *out)
{
    sk_drain_hooks h = {.progress = progress, .ctx = progress_ctx};
    return sk_sync_drain(s, &h, out, NULL);
}

/* ---- status -------------------------------------------------------------- */

/* What the handle itself knows: persisted scheduler state, credentials, config. */
static void local_state(sk_sync *s, sk_sync_state *out)
{
    const char *warning = sk__sync_load_sched(s);
    snprintf(out->state_warning, sizeof out->state_warning, "%s", warning ? warning : "");
    const sk__sched *sc = &s->sched;
    snprintf(out->connection, sizeof out->connection, "%s",
             sk__sched_connection_name(sc->connection));
    if (sc->last_success_wall_ms > 0)
        sk__iso8601_ms(sc->last_success_wall_ms, out->last_sync, sizeof out->last_sync);
    out->consecutive_failures = sc->consecutive_failures;
    snprintf(out->last_error, sizeof out->last_error, "%s", sc->last_error);
    if (sc->consecutive_failures > 0 && sc->next_attempt_wall_ms > 0)
        sk__iso8601_ms(sc->next_attempt_wall_ms, out->next_attempt, sizeof out->next_attempt);
    sk__auth_info info;
    sk__auth_info_get(s->auth, &info, NULL); /* unusable credentials read "Not authenticated" */
    snprintf(out->auth_state, sizeof out->auth_state, "%s", sk__auth_state_name(info.state));
    out->session_expired = info.state == SK__AUTH_EXPIRED;
    snprintf(out->username, sizeof out->username, "%s", info.username);
    snprintf(out->team_slug, sizeof out->team_slug, "%s", info.team_slug);
    snprintf(out->server_url, sizeof out->server_url, "%s", s->cfg->server_url);
    snprintf(out->transport_plugin, sizeof out->transport_plugin, "%s",
             s->cfg->transport_plugin);
    out->transport_abi = s->cfg->transport_abi;
    snprintf(out->config_file, sizeof out->config_file, "%s", s->cfg->path);
    out->config_exists = s->cfg->file_exists;
    sk__metrics *m = NULL;
    sk__metrics_counts c;
    sk__err ignored; /* unreadable counters leave the refusals at 0; the state is still shown */
    if (sk__metrics_open_reader(s->root, &m, &ignored) == SK_OK &&
        sk__metrics_load(m, &c, &ignored) == SK_OK) {
        out->refused_full = c.refused_full;
        if (c.refused_full_last_ms > 0)
            sk__iso8601_ms(c.refused_full_last_ms, out->refused_full_last,
                           sizeof out->refused_full_last);
        sk__metrics_counts_free(&c);
    }
    sk__metrics_close(m);
}

/* The live state of a running service over what the handle knows; a note when it is mute. */
static void service_state(sk_sync *s, sk_sync_state *out)
{
    sk__service_status live;
    sk__err err = {{0}};
    sk_status st = sk__control_status(s->root, &live, &err);
    if (st == SK_ERR_NOT_FOUND)
        return;
    if (st != SK_OK) {
        snprintf(out->service_note, sizeof out->service_note, "%s%s",
                 st == SK_ERR_PERMISSION ? "" : "the service did not answer: ", err.msg);
        return;
    }
    out->service_running = 1;
    out->service_pid = live.pid;
    out->service_uptime_s = live.uptime_s;
    snprintf(out->connection, sizeof out->connection, "%s",
             live.connection[0] ? live.connection : "Offline");
    snprintf(out->last_sync, sizeof out->last_sync, "%s", live.last_sync);
    out->consecutive_failures = live.consecutive_failures;
    snprintf(out->last_error, sizeof out->last_error, "%s", live.last_error);
    snprintf(out->next_attempt, sizeof out->next_attempt, "%s",
             live.consecutive_failures > 0 ? live.next_attempt : "");
    out->metric_count = live.metric_count;
    memcpy(out->metrics, live.metrics, sizeof out->metrics);
}

sk_status sk_state_get(sk_sync *s, sk_sync_state *out)
{
    memset(out, 0, sizeof *out);
    local_state(s, out);
    service_state(s, out);
    return sk_queue_info_get(s, &out->queue);
}

sk_status sk_metrics_text(sk_sync *s, char **text_out)
{
    *text_out = NULL;
    sk__metrics *m = NULL; /* none yet: every counter reads 0 */
    sk_status st = sk__metrics_open_reader(s->root, &m, &s->err);
    if (st != SK_OK && st != SK_ERR_NOT_FOUND)
        return st;
    int up = s->service != NULL;
    int64_t uptime = up ? sk__service_uptime_s(s->service) : 0;
    sk__service_status live;
    sk__err ignored;
    if (!up && sk__control_status(s->root, &live, &ignored) == SK_OK) {
        up = 1;
        uptime = live.uptime_s;
    }
    st = sk__metrics_text(m, s->q, up, uptime, sk__wall_ms(), text_out, &s->err);
    sk__metrics_close(m);
    return st;
}

sk_status sk_probe(sk_sync *s, int64_t timeout_ms, sk_probe_result *out)
{
    static const char *const names[] = {"Connected", "Not authenticated", "Server unavailable",
                                        "Unreachable"};
    memset(out, 0, sizeof *out);
    sk__plugin *p;
    sk_status st = sk__sync_transport(s, &p);
    if (st != SK_OK) {
        snprintf(out->state, sizeof out->state, "Transport error");
        sk__fit_text(out->reason, sizeof out->reason, s->err.msg);
        return st;
    }
    int r = sk__plugin_probe(p, sk__mono_ms() + timeout_ms, out->reason, sizeof out->reason);
    if (r == SK__PROBE_NONE) { /* a transport that works offline needs no server */
        out->healthy = (sk__plugin_caps(p) & SK_CAP_OFFLINE) != 0;
        snprintf(out->state, sizeof out->state, "%s", out->healthy ? "OfflineBatchMode" : "Unknown");
        return SK_OK;
    }
    snprintf(out->state, sizeof out->state, "%s",
             r >= 0 && r <= SK_PROBE_UNREACHABLE ? names[r] : "Unknown");
    out->healthy = r == SK_PROBE_CONNECTED;
    return SK_OK;
}

void sk_plugins_each(sk_sync *s, void (*fn)(void *ctx, const sk_plugin_info *info), void *ctx)
{
    sk__plugin_list(s->cfg->plugin_path, (int)s->cfg->transport_abi, fn, ctx);
}

/* ---- the service ------------------------------------------------------------ */

static void *service_thread(void *arg)
{
    sk__service *svc = arg;
    sk__err err;
    sk__service_run(svc, &err);
    return NULL;
}

static void poke_service(void *ctx)
{
    sk__service_poke(ctx);
}

sk_status sk_service_start(sk_sync *s, int control_socket)
{
    if (s->service)
        return sk__fail(&s->err, SK_ERR_BUSY, "the service already runs in this process");
    sk__service_opts o = {.control_socket = control_socket};
    sk__service *svc;
    sk_status st = sk__service_new(s->root, &o, &svc, &s->err);
    if (st != SK_OK)
        return st;
    if (pthread_create(&s->service_thread, NULL, service_thread, svc) != 0) {
        sk__service_free(svc);
        return sk__fail(&s->err, SK_ERR_INTERNAL, "cannot start the service thread");
    }
    s->service = svc;
    s->on_enqueue = poke_service; /* this handle's emits reach it without the socket */
    s->on_enqueue_ctx = svc;
    return SK_OK;
}

sk_status sk_service_stop(sk_sync *s, int64_t deadline_ms)
{
    sk__service *svc = s->service;
    if (!svc)
        return SK_OK;
    s->on_enqueue = NULL;
    sk__service_stop(svc, deadline_ms);
    pthread_join(s->service_thread, NULL);
    sk__service_free(svc);
    s->service = NULL;
    return SK_OK;
}

/* A state root given or the default, resolved (not created). */
static sk_status root_of(const char *state_root, char *out, size_t cap, sk__err *err)
{
    return sk__state_root_resolve(state_root, out, cap, err);
}

sk_status sk_service_run(const char *state_root, const sk_service_options *opt, char *errbuf,
                         size_t err_cap)
{
    sk__service_opts o = {.control_socket = opt->control_socket,
                          .log_stderr = opt->log_stderr,
                          .verbose = opt->verbose};
    sk__service *svc;
    sk__err err = {{0}};
    sk_status st = sk__service_new(state_root, &o, &svc, &err);
    char root[PATH_MAX];
    if (st == SK_ERR_BUSY && root_of(state_root, root, sizeof root, NULL) == SK_OK) {
        sk__err busy = err;
        sk__fail(&err, st, "%.700s (pid %ld)", busy.msg, sk__service_running_pid(root));
    }
    if (st != SK_OK)
        return give_error(st, &err, errbuf, err_cap);
    if (opt->handle_signals)
        sk__service_handle_signals(svc);
    if (opt->ready)
        opt->ready(opt->ready_ctx, (long)getpid());
    st = sk__service_run(svc, &err);
    sk__service_free(svc);
    return give_error(st, &err, errbuf, err_cap);
}

sk_status sk_service_pid(const char *state_root, long *pid, char *errbuf, size_t err_cap)
{
    char root[PATH_MAX];
    sk__err err = {{0}};
    *pid = 0;
    sk_status st = root_of(state_root, root, sizeof root, &err);
    if (st == SK_OK)
        st = sk__service_find(root, pid, &err);
    return give_error(st, &err, errbuf, err_cap);
}

sk_status sk_service_shutdown(const char *state_root, int64_t timeout_ms, long *pid, char *errbuf,
                              size_t err_cap)
{
    char root[PATH_MAX];
    sk__err err = {{0}};
    *pid = 0;
    sk_status st = root_of(state_root, root, sizeof root, &err);
    if (st == SK_OK)
        st = sk__service_find(root, pid, &err);
    if (st != SK_OK || *pid == 0)
        return give_error(st, &err, errbuf, err_cap);
    sk__err why = {{0}};
    if (sk__control_stop(root, &why) != SK_OK && *pid > 0 && kill((pid_t)*pid, SIGTERM) != 0)
        return give_error(sk__fail(&err, SK_ERR_IO,
                                   "cannot stop the sync service (pid %ld): %s; kill: %s", *pid,
                                   why.msg, strerror(errno)),
                          &err, errbuf, err_cap);
    int64_t until = sk__mono_ms() + timeout_ms;
    while (sk__service_running_pid(root) != 0) {
        if (sk__mono_ms() > until)
            return give_error(sk__fail(&err, SK_ERR_BUSY,
                                       "sync service (pid %ld) still running after %.0f s", *pid,
                                       (double)timeout_ms / 1000),
                              &err, errbuf, err_cap);
        usleep(20 * 1000);
    }
    return SK_OK;
}

/* ---- credentials ---------------------------------------------------------- */

struct sk_auth {
    sk__config *cfg;
    sk__auth *a;
    sk__err err;
};

_Static_assert((int)SK_AUTH_NONE == (int)SK__AUTH_NONE && (int)SK_AUTH_OK == (int)SK__AUTH_OK &&
                   (int)SK_AUTH_EXPIRED == (int)SK__AUTH_EXPIRED &&
                   (int)SK_AUTH_STATIC == (int)SK__AUTH_STATIC,
               "public and internal auth states agree");

sk_status sk_auth_open(const char *state_root, int create_root, sk_auth **out, char *errbuf,
                       size_t err_cap)
{
    char root[PATH_MAX];
    sk__err err = {{0}};
    *out = NULL;
    sk_auth *h = calloc(1, sizeof *h);
    sk_status st = h ? sk__state_root_resolve(state_root, root, sizeof root, &err)
                     : sk__fail(&err, SK_ERR_NOMEM, "out of memory");
    if (st == SK_OK && create_root)
        st = sk__mkdirs_owner(root, &err);
    if (st == SK_OK)
        st = sk__config_load(root, &h->cfg, &err);
    if (st == SK_OK)
        st = sk__auth_open(root, h->cfg, &h->a, &err);
    if (st != SK_OK) {
        sk_auth_close(h);
        return give_error(st, &err, errbuf, err_cap);
    }
    *out = h;
    return SK_OK;
}

void sk_auth_close(sk_auth *h)
{
    if (!h)
        return;
    sk__auth_close(h->a);
    sk__config_free(h->cfg);
    free(h);
}

const char *sk_auth_last_error(const sk_auth *h)
{
    return h ? h->err.msg : "";
}

const char *const *sk_auth_config_warnings(const sk_auth *h)
{
    static const char *const none[] = {NULL};
    return h->cfg->warnings ? (const char *const *)h->cfg->warnings : none;
}

sk_status sk_auth_info_get(sk_auth *h, sk_auth_info *out)
{
    sk__auth_info in;
    sk_status st = sk__auth_info_get(h->a, &in, &h->err);
    *out = (sk_auth_info){.state = (sk_auth_state)in.state,
                          .server_mismatch = in.server_mismatch,
                          .access_expires_ms = in.access_expires_ms,
                          .refresh_expires_ms = in.refresh_expires_ms};
    snprintf(out->state_name, sizeof out->state_name, "%s", sk__auth_state_name(in.state));
    snprintf(out->username, sizeof out->username, "%s", in.username);
    snprintf(out->team_slug, sizeof out->team_slug, "%s", in.team_slug);
    snprintf(out->server_url, sizeof out->server_url, "%s", in.server_url);
    snprintf(out->config_server_url, sizeof out->config_server_url, "%s", in.config_server_url);
    snprintf(out->credentials_path, sizeof out->credentials_path, "%s", in.credentials_path);
    return st;
}

sk_status sk_auth_login_check(sk_auth *h, const char *server_url)
{
    return sk__auth_login_check(h->a, server_url, &h->err);
}

sk_status sk_auth_login(sk_auth *h, const char *server_url, const char *username,
                        const char *password)
{
    return sk__auth_login(h->a, server_url, username, password, &h->err);
}

sk_status sk_auth_logout(sk_auth *h, int *removed)
{
    return sk__auth_logout(h->a, removed, &h->err);
}

sk_status sk_auth_refresh(sk_auth *h)
{
    return sk__auth_refresh(h->a, &h->err);
}

/* ---- queue health ------------------------------------------------------------ */

sk_status sk_doctor(const char *state_root, int repair, sk_doctor_report *out, char *errbuf,
                    size_t err_cap)
{
    char root[PATH_MAX];
    sk__err err = {{0}};
    memset(out, 0, sizeof *out);
    sk_status st = sk__state_root_resolve(state_root, root, sizeof root, &err);
    if (st == SK_OK)
        st = repair ? sk__doctor_repair(root, out, &err) : sk__doctor_check(root, out, &err);
    if (st == SK_OK || st == SK_ERR_NOT_FOUND)
        snprintf(out->queue_file, sizeof out->queue_file, "%s/queue.db", root);
    return give_error(st, &err, errbuf, err_cap);
}

void sk_doctor_report_free(sk_doctor_report *r)
{
    sk__doctor_report_free(r);
}
