/* `spec-kitty sync status`: what is queued, how the connection is, what is configured. */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
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

/* What the command shows: the library's state, and the probe when --check asked for it. */
typedef struct status_view {
    sk_sync_state st;
    int checked;
    sk_probe_result check;
} status_view;

/* A counter of the service's transport, -1 when it reported none of that name. */
static int64_t metric(const sk_sync_state *st, const char *name)
{
    for (int i = 0; i < st->metric_count; i++)
        if (strcmp(st->metrics[i].name, name) == 0)
            return st->metrics[i].value;
    return -1;
}

/* "Connected (HTTP/2, 3 streams in flight)": the live connection of a streaming
 * transport (one that reports connections_open and streams_in_flight). */
static void connection_text(const sk_sync_state *st, char *out, size_t cap)
{
    int64_t open = metric(st, "connections_open"), streams = metric(st, "streams_in_flight");
    if (strcmp(st->connection, "Connected") == 0 && open > 0 && streams >= 0)
        snprintf(out, cap, "%s (HTTP/2, %lld stream%s in flight)", st->connection,
                 (long long)streams, streams == 1 ? "" : "s");
    else
        snprintf(out, cap, "%s", st->connection);
}

/* The transport's counters; their names come from the plugin, which may be anyone's. */
static json_t *metrics_json(const sk_sync_state *st)
{
    json_t *m = json_object();
    for (int i = 0; i < st->metric_count; i++) {
        json_t *name = cli_json_text(st->metrics[i].name);
        if (name)
            json_object_set_new(m, json_string_value(name), json_integer(st->metrics[i].value));
        json_decref(name);
    }
    return m;
}

static int print_json(const status_view *v)
{
    const sk_sync_state *st = &v->st;
    json_t *o = json_object();
    json_object_set_new(o, "queue",
                        json_pack("{s:I, s:I, s:I}", "size", (json_int_t)st->queue.size, "parked",
                                  (json_int_t)st->queue.parked, "oldest_timestamp",
                                  (json_int_t)st->queue.oldest_timestamp));
    json_object_set_new(o, "refused_full",
                        json_pack("{s:I, s:o}", "count", (json_int_t)st->refused_full, "last",
                                  cli_json_text_or_null(st->refused_full_last)));
    json_object_set_new(o, "connection", cli_json_text(st->connection));
    json_object_set_new(o, "last_sync", cli_json_text_or_null(st->last_sync));
    json_object_set_new(o, "failures",
                        json_pack("{s:I, s:o, s:o}", "consecutive",
                                  (json_int_t)st->consecutive_failures, "last_error",
                                  cli_json_text_or_null(st->last_error), "next_attempt",
                                  cli_json_text_or_null(st->next_attempt)));
    json_t *bg = json_pack("{s:b}", "running", st->service_running);
    if (st->service_running)
        json_object_update_new(bg, json_pack("{s:I, s:I, s:o}", "pid", (json_int_t)st->service_pid,
                                             "uptime_s", (json_int_t)st->service_uptime_s,
                                             "transport_metrics", metrics_json(st)));
    if (st->service_note[0])
        json_object_set_new(bg, "note", cli_json_text(st->service_note));
    json_object_set_new(o, "background", bg);
    json_object_set_new(o, "auth",
                        json_pack("{s:o, s:o, s:o}", "state", cli_json_text(st->auth_state),
                                  "username", cli_json_text_or_null(st->username), "team_slug",
                                  cli_json_text_or_null(st->team_slug)));
    json_object_set_new(o, "server_url", cli_json_text(st->server_url));
    json_object_set_new(o, "transport",
                        json_pack("{s:o, s:I}", "plugin", cli_json_text(st->transport_plugin),
                                  "abi", (json_int_t)st->transport_abi));
    char detail[128];
    connection_text(st, detail, sizeof detail);
    json_object_set_new(o, "connection_detail", cli_json_text(detail));
    json_object_set_new(o, "config_file", cli_json_text(st->config_file));
    if (v->checked)
        json_object_set_new(o, "check",
                            json_pack("{s:o, s:o}", "state", cli_json_text(v->check.state),
                                      "reason", cli_json_text(v->check.reason)));
    return cli_print_json(o);
}

#define KEY_COLS 13 /* "%-12s " */

/* Columns of the terminal on stdout; 0 when it is not one (output to a file or a
 * pipe keeps one line per row, for scripts). */
static int term_columns(void)
{
    struct winsize ws;
    if (!isatty(STDOUT_FILENO))
        return 0;
    return ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
}

/* Prints "Key         value". On a terminal a long value (an error message) wraps at
 * spaces with its continuation lines under the value, not under the key. */
/* How the table is printed: bold keys, and the terminal's width (0: not a terminal). */
typedef struct table {
    int color, cols;
} table;

static void row(const table *t, const char *key, const char *text)
{
    char *copy = strdup(text);
    const char *value = copy ? copy : "(out of memory)";
    if (copy) /* a server's error message must not drive the terminal */
        cli_make_printable(copy);
    printf(t->color ? "\033[1m%-12s\033[0m " : "%-12s ", key);
    int cols = t->cols;
    size_t avail = cols > KEY_COLS + 20 ? (size_t)(cols - KEY_COLS) : 0;
    while (avail && strlen(value) > avail) {
        size_t cut = avail;
        while (cut > 0 && value[cut] != ' ')
            cut--;
        if (cut == 0) /* one long word: break it, but never inside a UTF-8 character */
            for (cut = avail; cut > 1 && ((unsigned char)value[cut] & 0xC0) == 0x80;)
                cut--;
        printf("%.*s\n%*s", (int)cut, value, KEY_COLS, "");
        value += cut;
        while (*value == ' ')
            value++;
    }
    printf("%s\n", value);
    free(copy);
}

static void print_queue(const table *t, const sk_queue_info *qi)
{
    char buf[256], age[64];
    if (qi->size > 0 && qi->oldest_timestamp > 0) {
        cli_format_age((int64_t)time(NULL) - qi->oldest_timestamp, age, sizeof age);
        snprintf(buf, sizeof buf, "%lld event%s waiting, %lld parked (oldest %s ago)",
                 (long long)qi->size, qi->size == 1 ? "" : "s", (long long)qi->parked, age);
    } else {
        snprintf(buf, sizeof buf, "%lld events waiting, %lld parked", (long long)qi->size,
                 (long long)qi->parked);
    }
    row(t, "Queue", buf);
}

static void print_background(const table *t, const sk_sync_state *st)
{
    char buf[1200], up[64];
    if (st->service_running) {
        cli_format_age(st->service_uptime_s, up, sizeof up);
        snprintf(buf, sizeof buf, "Running (pid %lld, up %s)", (long long)st->service_pid, up);
    } else {
        snprintf(buf, sizeof buf, "Stopped%s%s", st->service_note[0] ? " — " : "",
                 st->service_note);
    }
    row(t, "Background", buf);
    for (int i = 0; i < st->metric_count; i++) {
        snprintf(buf, sizeof buf, "%s %lld", st->metrics[i].name, (long long)st->metrics[i].value);
        row(t, i == 0 ? "Transport io" : "", buf);
    }
}

static void print_table(const status_view *v)
{
    const sk_sync_state *st = &v->st;
    table t = {cli_color(stdout), term_columns()};
    char buf[2400];
    print_queue(&t, &st->queue);
    if (st->refused_full > 0) { /* nothing is dropped silently */
        snprintf(buf, sizeof buf, "%lld event%s (queue full), last %s", (long long)st->refused_full,
                 st->refused_full == 1 ? "" : "s", st->refused_full_last);
        row(&t, "Refused", buf);
    }
    connection_text(st, buf, sizeof buf);
    row(&t, "Connection", buf);
    row(&t, "Last sync", st->last_sync[0] ? st->last_sync : "Never");
    if (st->consecutive_failures > 0) {
        snprintf(buf, sizeof buf, "%lld in a row; last: %s", (long long)st->consecutive_failures,
                 st->last_error);
        row(&t, "Failures", buf);
        if (st->next_attempt[0])
            row(&t, "Next try", st->next_attempt);
    }
    print_background(&t, st);
    if (st->session_expired) {
        row(&t, "Auth", "Session expired — run `spec-kitty auth login`");
    } else if (st->username[0]) {
        snprintf(buf, sizeof buf, "%s (%s%s%s)", st->auth_state, st->username,
                 st->team_slug[0] ? ", team " : "", st->team_slug);
        row(&t, "Auth", buf);
    } else {
        row(&t, "Auth", st->auth_state);
    }
    row(&t, "Server", st->server_url[0] ? st->server_url : "(not set)");
    snprintf(buf, sizeof buf, "%s (ABI %lld)", st->transport_plugin, (long long)st->transport_abi);
    int64_t reconnects = metric(st, "reconnects");
    if (reconnects > 0)
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), ", %lld reconnect%s",
                 (long long)reconnects, reconnects == 1 ? "" : "s");
    row(&t, "Transport", buf);
    snprintf(buf, sizeof buf, "%s%s", st->config_file,
             st->config_exists ? "" : " (not found: defaults)");
    row(&t, "Config", buf);
    if (v->checked) {
        snprintf(buf, sizeof buf, "%s%s%s", v->check.state, v->check.reason[0] ? " — " : "",
                 v->check.reason);
        row(&t, "Check", buf);
    }
}

/* --check: asks the transport to probe the server. Returns non-zero unless healthy. */
static int probe_server(sk_sync *s, status_view *v)
{
    v->checked = 1;
    sk_probe(s, 10000, &v->check);
    if (cli_interrupted()) {
        snprintf(v->check.state, sizeof v->check.state, "Interrupted");
        snprintf(v->check.reason, sizeof v->check.reason, "probe cancelled by %s",
                 cli_signal_name(cli_interrupted()));
        return 1;
    }
    return !v->check.healthy;
}

int cmd_status(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"check", no_argument, NULL, 'c'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int json = 0, check = 0, c;
    optind = 1;
    while ((c = cli_getopt(argc, argv, "sync status", "h", opts, 0)) != -1) {
        if (c == 'j')
            json = 1;
        else if (c == 'c')
            check = 1;
        else if (c == 'h') {
            fputs(USAGE, stdout);
            return EXIT_OK;
        } else {
            return EXIT_USAGE;
        }
    }
    int code;
    sk_sync *s = cli_open(&code);
    if (!s)
        return code;
    status_view v;
    memset(&v, 0, sizeof v);
    sk_status st = sk_state_get(s, &v.st);
    if (v.st.state_warning[0])
        cli_warn("%s", v.st.state_warning);
    if (st != SK_OK) {
        cli_error("%s", sk_last_error(s));
        sk_close(s);
        return cli_exit_code(st);
    }
    int unhealthy = 0;
    if (check) { /* a signal cancels the probe; what is known is still shown */
        cli_cancel_scope_begin(s);
        unhealthy = probe_server(s, &v);
        cli_cancel_scope_end();
    }
    int printed = EXIT_OK;
    if (json)
        printed = print_json(&v);
    else
        print_table(&v);
    sk_close(s);
    /* An expired session needs the user: say so in the exit code too. */
    if (v.st.session_expired)
        unhealthy = 1;
    return unhealthy ? EXIT_FAIL : printed;
}
