/* `spec-kitty sync status`: what is queued, how the connection is, what is configured. */
#include "cli.h"
#include "control.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char USAGE[] =
    "Usage: spec-kitty sync status [--json] [--check]\n\n"
    "Shows the queue size, parked events, the oldest event's age, the connection\n"
    "state, the last sync, the background service, auth, server URL, transport\n"
    "plugin and config file.\n\n"
    "Options:\n"
    "  --json      machine-readable output (stable keys)\n"
    "  --check     also probe the server through the transport (exit 1 unless Connected)\n"
    "  -h, --help  this help\n\n"
    "Exit status: 0; 1 when the session expired, or --check found no connection.\n";

typedef struct status_view {
    sk_queue_info qi;
    const char *connection;
    char last_sync[32]; /* ISO-8601, "" for never */
    int64_t failures;
    const char *last_error; /* "" when none */
    char next_attempt[32];  /* "" when none planned */
    int background_running;
    int64_t pid, uptime_s;
    char connection_buf[32], last_error_buf[512];
    const char *background_note; /* why the service could not be asked, or NULL */
    const char *check_state;     /* --check: probe result name, NULL when not asked */
    char check_reason[512];
    const char *auth_state;
    sk__auth_info auth;
    const char *server_url;
    const char *plugin;
    int64_t abi;
    const char *config_file;
    int config_exists;
} status_view;

/* The session state ("Authenticated", "Session expired", ...); an unusable
 * credentials file reads "Not authenticated" here (`auth status` explains it). */
static const char *auth_state(sk_sync *s, sk__auth_info *info)
{
    sk__auth_info_get(s->auth, info, NULL);
    return sk__auth_state_name(info->state);
}

static void print_json(const status_view *v)
{
    json_t *o = json_object();
    json_object_set_new(o, "queue",
                        json_pack("{s:I, s:I, s:I}", "size", (json_int_t)v->qi.size, "parked",
                                  (json_int_t)v->qi.parked, "oldest_timestamp",
                                  (json_int_t)v->qi.oldest_timestamp));
    json_object_set_new(o, "connection", json_string(v->connection));
    json_object_set_new(o, "last_sync", v->last_sync[0] ? json_string(v->last_sync) : json_null());
    json_object_set_new(o, "failures",
                        json_pack("{s:I, s:s?, s:s?}", "consecutive", (json_int_t)v->failures,
                                  "last_error", v->last_error[0] ? v->last_error : NULL,
                                  "next_attempt", v->next_attempt[0] ? v->next_attempt : NULL));
    json_t *bg = json_pack("{s:b}", "running", v->background_running);
    if (v->background_running)
        json_object_update_new(bg, json_pack("{s:I, s:I}", "pid", (json_int_t)v->pid, "uptime_s",
                                             (json_int_t)v->uptime_s));
    if (v->background_note)
        json_object_set_new(bg, "note", json_string(v->background_note));
    json_object_set_new(o, "background", bg);
    json_object_set_new(o, "auth",
                        json_pack("{s:s, s:s?, s:s?}", "state", v->auth_state, "username",
                                  v->auth.username[0] ? v->auth.username : NULL, "team_slug",
                                  v->auth.team_slug[0] ? v->auth.team_slug : NULL));
    json_object_set_new(o, "server_url", json_string(v->server_url));
    json_object_set_new(o, "transport",
                        json_pack("{s:s, s:I}", "plugin", v->plugin, "abi", (json_int_t)v->abi));
    json_object_set_new(o, "config_file", json_string(v->config_file));
    if (v->check_state)
        json_object_set_new(
            o, "check",
            json_pack("{s:s, s:s}", "state", v->check_state, "reason", v->check_reason));
    cli_print_json(o);
}

static void row(int color, const char *key, const char *value)
{
    if (color)
        printf("\033[1m%-12s\033[0m %s\n", key, value);
    else
        printf("%-12s %s\n", key, value);
}

static void print_table(const status_view *v)
{
    int color = cli_color(stdout);
    char buf[1024], age[64];
    if (v->qi.size > 0 && v->qi.oldest_timestamp > 0) {
        cli_format_age(sk__wall_ms() / 1000 - v->qi.oldest_timestamp, age, sizeof age);
        snprintf(buf, sizeof buf, "%lld event%s waiting, %lld parked (oldest %s ago)",
                 (long long)v->qi.size, v->qi.size == 1 ? "" : "s", (long long)v->qi.parked, age);
    } else {
        snprintf(buf, sizeof buf, "%lld events waiting, %lld parked", (long long)v->qi.size,
                 (long long)v->qi.parked);
    }
    row(color, "Queue", buf);
    row(color, "Connection", v->connection);
    row(color, "Last sync", v->last_sync[0] ? v->last_sync : "Never");
    if (v->failures > 0) {
        snprintf(buf, sizeof buf, "%lld in a row; last: %s", (long long)v->failures, v->last_error);
        row(color, "Failures", buf);
        if (v->next_attempt[0])
            row(color, "Next try", v->next_attempt);
    }
    if (v->background_running) {
        char up[64];
        cli_format_age(v->uptime_s, up, sizeof up);
        snprintf(buf, sizeof buf, "Running (pid %lld, up %s)", (long long)v->pid, up);
        row(color, "Background", buf);
    } else {
        snprintf(buf, sizeof buf, "Stopped%s%s", v->background_note ? " — " : "",
                 v->background_note ? v->background_note : "");
        row(color, "Background", buf);
    }
    if (v->auth.state == SK__AUTH_EXPIRED) {
        row(color, "Auth", "Session expired — run `spec-kitty auth login`");
    } else if (v->auth.username[0]) {
        snprintf(buf, sizeof buf, "%s (%s%s%s)", v->auth_state, v->auth.username,
                 v->auth.team_slug[0] ? ", team " : "", v->auth.team_slug);
        row(color, "Auth", buf);
    } else {
        row(color, "Auth", v->auth_state);
    }
    row(color, "Server", *v->server_url ? v->server_url : "(not set)");
    snprintf(buf, sizeof buf, "%s (ABI %lld)", v->plugin, (long long)v->abi);
    row(color, "Transport", buf);
    snprintf(buf, sizeof buf, "%s%s", v->config_file,
             v->config_exists ? "" : " (not found: defaults)");
    row(color, "Config", buf);
    if (v->check_state) {
        snprintf(buf, sizeof buf, "%s%s%s", v->check_state, v->check_reason[0] ? " — " : "",
                 v->check_reason);
        row(color, "Check", buf);
    }
}

/* --check: asks the transport to probe the server. Returns non-zero unless Connected. */
static int probe_server(sk_sync *s, status_view *v)
{
    static const char *names[] = {"Connected", "Not authenticated", "Server unavailable",
                                  "Unreachable"};
    sk__plugin *p;
    if (sk__sync_transport(s, &p) != SK_OK) {
        v->check_state = "Transport error";
        snprintf(v->check_reason, sizeof v->check_reason, "%s", sk_last_error(s));
        return 1;
    }
    int st = sk__plugin_probe(p, sk__mono_ms() + 10000, v->check_reason, sizeof v->check_reason);
    if (st == SK__PROBE_NONE) {
        int offline = (sk__plugin_caps(p) & SK_CAP_OFFLINE) != 0;
        v->check_state = offline ? "OfflineBatchMode" : "Unknown";
        return !offline;
    }
    v->check_state = st >= 0 && st <= SK_PROBE_UNREACHABLE ? names[st] : "Unknown";
    if (cli_interrupted()) {
        v->check_state = "Interrupted";
        snprintf(v->check_reason, sizeof v->check_reason, "probe cancelled by %s",
                 cli_signal_name(cli_interrupted()));
    }
    return st != SK_PROBE_CONNECTED;
}

/* Live state from a running service; leaves v as it is when none answers. */
static void ask_service(sk_sync *s, status_view *v, char *note, size_t note_cap)
{
    int fd;
    sk__err err;
    sk_status st = sk__control_connect(s->root, 1000, &fd, &err);
    if (st == SK_ERR_PERMISSION) {
        snprintf(note, note_cap, "%s", err.msg);
        v->background_note = note;
    }
    if (st != SK_OK)
        return;
    json_t *req = json_pack("{s:s}", "cmd", "status"), *msg = NULL;
    sk__line_reader r = {.len = 0};
    if (sk__control_send(fd, req, &err) == SK_OK &&
        sk__control_recv(fd, &r, 2000, &msg, &err) == SK_OK &&
        json_is_true(json_object_get(msg, "ok"))) {
        v->background_running = 1;
        v->pid = json_integer_value(json_object_get(msg, "pid"));
        v->uptime_s = json_integer_value(json_object_get(msg, "uptime_s"));
        const char *c = json_string_value(json_object_get(msg, "connection"));
        snprintf(v->connection_buf, sizeof v->connection_buf, "%s", c ? c : "Offline");
        v->connection = v->connection_buf;
        const char *last = json_string_value(json_object_get(msg, "last_sync"));
        snprintf(v->last_sync, sizeof v->last_sync, "%s", last ? last : "");
        v->failures = json_integer_value(json_object_get(msg, "consecutive_failures"));
        const char *le = json_string_value(json_object_get(msg, "last_error"));
        snprintf(v->last_error_buf, sizeof v->last_error_buf, "%s", le ? le : "");
        v->last_error = v->last_error_buf;
        const char *next = json_string_value(json_object_get(msg, "next_attempt"));
        snprintf(v->next_attempt, sizeof v->next_attempt, "%s",
                 next && v->failures > 0 ? next : "");
    } else {
        snprintf(note, note_cap, "the service did not answer: %s", err.msg);
        v->background_note = note;
    }
    json_decref(req);
    json_decref(msg);
    close(fd);
}

int cmd_status(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"check", no_argument, NULL, 'c'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int json = 0, check = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'j')
            json = 1;
        else if (c == 'c')
            check = 1;
        else if (c == 'h') {
            fputs(USAGE, stdout);
            return EXIT_OK;
        } else {
            fputs("Try `spec-kitty sync status --help`.\n", stderr);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        cli_error("sync status: unexpected argument \"%s\"", argv[optind]);
        return EXIT_USAGE;
    }
    int code;
    sk_sync *s = cli_open(&code);
    if (!s)
        return code;
    const char *warning = sk__sync_load_sched(s);
    if (warning)
        cli_warn("%s", warning);
    status_view v = {.connection = sk__sched_connection_name(s->sched.connection),
                     .failures = s->sched.consecutive_failures,
                     .last_error = s->sched.last_error,
                     .auth_state = NULL,
                     .server_url = s->cfg->server_url,
                     .plugin = s->cfg->transport_plugin,
                     .abi = s->cfg->transport_abi,
                     .config_file = s->cfg->path,
                     .config_exists = s->cfg->file_exists};
    if (s->sched.last_success_wall_ms > 0)
        sk__iso8601_ms(s->sched.last_success_wall_ms, v.last_sync, sizeof v.last_sync);
    if (s->sched.consecutive_failures > 0 && s->sched.next_attempt_wall_ms > 0)
        sk__iso8601_ms(s->sched.next_attempt_wall_ms, v.next_attempt, sizeof v.next_attempt);
    v.auth_state = auth_state(s, &v.auth);
    char note[1024];
    ask_service(s, &v, note, sizeof note);
    sk_status st = sk_queue_info_get(s, &v.qi);
    if (st != SK_OK) {
        cli_error("%s", sk_last_error(s));
        sk_close(s);
        return cli_exit_code(st);
    }
    cli_cancel_scope_begin(s); /* a signal cancels the probe; what is known is still shown */
    int unhealthy = check ? probe_server(s, &v) : 0;
    if (json)
        print_json(&v);
    else
        print_table(&v);
    cli_cancel_scope_end();
    sk_close(s);
    /* An expired session needs the user: say so in the exit code too. */
    if (v.auth.state == SK__AUTH_EXPIRED)
        unhealthy = 1;
    return unhealthy ? EXIT_FAIL : EXIT_OK;
}
