/* `spec-kitty sync now`, and the commands around delivery: plugins, parked, retry. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char NOW_USAGE[] =
    "Usage: spec-kitty sync now [--json] [--report FILE]\n\n"
    "Delivers the whole queue now through the configured transport, in batches of\n"
    "schedule.max_batch_events. Shows a progress bar on a terminal, then one summary\n"
    "line and the reasons for anything rejected or parked.\n\n"
    "Options:\n"
    "  --json         print the summary as JSON\n"
    "  --report FILE  write every rejected or parked event with its reason as JSON\n"
    "                 (and, when the server stopped the pass with an error code, a last\n"
    "                 entry {\"outcome\": \"stopped\", \"reason\", \"error_code\"}); a file is\n"
    "                 replaced whole (through a link, the file it names), a device or\n"
    "                 FIFO written into, /dev/stdout written after the summary; a folder,\n"
    "                 a link to nothing, or a folder missing or not writable is refused\n"
    "                 before the pass\n"
    "  -h, --help     this help\n\n"
    "Ctrl+C (SIGINT) or SIGTERM cancels the transfer in flight at once: what the\n"
    "server acknowledged is settled, the rest stays queued, and the summary says\n"
    "\"(interrupted)\". Through the service, only this client's pass is cancelled.\n"
    "A second signal exits at once.\n\n"
    "Exit status: 0 nothing remains undelivered (pending events aside), 1 events\n"
    "remain (server unreachable, rejected, ...), 2 config or plugin error,\n"
    "130 interrupted (SIGINT), 143 terminated (SIGTERM).\n";

#define MAX_SHOWN_FAILURES 20

typedef struct now_ctx {
    int tty;
    json_t *failures; /* [{event_id, event_type, what, reason}] */
} now_ctx;

static void on_failure(void *ctx, const char *event_id, const char *event_type, const char *what,
                       const char *reason)
{
    now_ctx *n = ctx;
    json_array_append_new(
        n->failures, json_pack("{s:o, s:o, s:s, s:o}", "event_id", cli_json_text(event_id),
                               "event_type", cli_json_text(event_type ? event_type : ""), "outcome",
                               what, "reason", cli_json_text(reason ? reason : "")));
}

static void on_progress(void *ctx, const sk_drain_summary *s, int64_t total)
{
    now_ctx *n = ctx;
    if (!n->tty)
        return;
    int64_t done = s->synced + s->duplicates + s->pending + s->rejected + s->parked;
    int width = 30, filled = total > 0 ? (int)(done * width / total) : width;
    if (filled > width)
        filled = width;
    fprintf(stderr, "\r[%.*s%*s] %lld/%lld", filled, "##############################",
            width - filled, "", (long long)done, (long long)total);
    fflush(stderr);
}

static void print_summary(const sk_drain_summary *s, const now_ctx *n)
{
    if (n->tty)
        fputs("\r\033[K", stderr);
    printf("Synced: %lld  Duplicates: %lld  Pending: %lld  Rejected: %lld  Parked: %lld  "
           "Remaining: %lld%s\n",
           (long long)s->synced, (long long)s->duplicates, (long long)s->pending,
           (long long)s->rejected, (long long)s->parked, (long long)s->remaining,
           cli_interrupted() ? "  (interrupted)" : "");
    size_t count = json_array_size(n->failures);
    for (size_t i = 0; i < count && i < MAX_SHOWN_FAILURES; i++) {
        json_t *f = json_array_get(n->failures, i);
        cli_line(stdout, "  %s %s: %s", json_string_value(json_object_get(f, "outcome")),
                 json_string_value(json_object_get(f, "event_id")),
                 json_string_value(json_object_get(f, "reason")));
    }
    if (count > MAX_SHOWN_FAILURES)
        printf("  ... and %zu more (see --report)\n", count - MAX_SHOWN_FAILURES);
}

static json_t *summary_json(const sk_drain_summary *s, sk_status st, const now_ctx *n)
{
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}", "synced",
                          (json_int_t)s->synced, "duplicates", (json_int_t)s->duplicates, "pending",
                          (json_int_t)s->pending, "rejected", (json_int_t)s->rejected, "parked",
                          (json_int_t)s->parked, "remaining", (json_int_t)s->remaining, "batches",
                          (json_int_t)s->batches, "retry_after_ms", (json_int_t)s->retry_after_ms,
                          "stop_reason", cli_json_text_or_null(s->stop_reason), "stop_code",
                          cli_json_text_or_null(s->stop_code));
    json_object_set_new(o, "status", json_string(sk_strerror(st)));
    if (cli_interrupted())
        json_object_set_new(o, "interrupted", json_string(cli_signal_name(cli_interrupted())));
    json_object_set(o, "failures", n->failures);
    return o;
}

/* --report must name a file that can be written, checked before the pass: the report of a
 * pass cannot be had again. A usage error is printed; returns 0 when the name is usable. */
static int report_target_check(const char *path)
{
    cli_output out;
    const char *bad = cli_output_target(path, &out);
    if (!bad)
        return 0;
    cli_error("sync now: --report \"%s\": %s", path, bad);
    return -1;
}

/* The line that ends an interrupted `sync now`. */
static void say_interrupted(int via_service)
{
    cli_error("sync interrupted by %s: %s", cli_signal_name(cli_interrupted()),
              via_service ? "the service cancelled this pass (its own schedule goes on); the "
                            "rest stays queued"
                          : "what the server acknowledged is settled, the rest stays queued");
}

int cmd_now(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"report", required_argument, NULL, 'r'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int json = 0, c;
    const char *report = NULL;
    optind = 1;
    while ((c = cli_getopt(argc, argv, "sync now", "h", opts, 0)) != -1) {
        if (c == 'j')
            json = 1;
        else if (c == 'r')
            report = optarg;
        else if (c == 'h') {
            fputs(NOW_USAGE, stdout);
            return EXIT_OK;
        } else {
            return EXIT_USAGE;
        }
    }
    if (report && report_target_check(report) != 0)
        return EXIT_USAGE;
    int code;
    sk_sync *s = cli_open(&code);
    if (!s)
        return code;
    now_ctx n = {.tty = !json && isatty(STDERR_FILENO), .failures = json_array()};
    sk_drain_summary sum = {0};
    cli_cancel_scope_begin(s);
    sk_drain_hooks h = {.progress = on_progress, .failure = on_failure, .ctx = &n};
    int via_service = 0;
    sk_status st = sk_sync_drain(s, &h, &sum, &via_service);
    if (st == SK_ERR_PLUGIN || st == SK_ERR_PERMISSION || st == SK_ERR_CONFIG) {
        cli_error("%s", sum.stop_reason[0] ? sum.stop_reason : sk_last_error(s));
        json_decref(n.failures);
        cli_cancel_scope_end();
        sk_close(s);
        return EXIT_USAGE;
    }
    if (json)
        code = cli_print_json(summary_json(&sum, st, &n));
    else
        print_summary(&sum, &n);
    if (cli_interrupted())
        say_interrupted(via_service);
    else if (st != SK_OK)
        cli_error("sync stopped: %s", sum.stop_reason[0] ? sum.stop_reason : sk_last_error(s));
    if (report && sum.stop_code[0]) /* the server's reason for stopping the pass, for scripts */
        json_array_append_new(n.failures, json_pack("{s:s, s:o, s:o}", "outcome", "stopped",
                                                    "reason", cli_json_text(sum.stop_reason),
                                                    "error_code", cli_json_text(sum.stop_code)));
    if (report) {
        char why[512];
        if (cli_write_json_file(report, n.failures, why, sizeof why) != 0) {
            cli_error("cannot write the report: %s", why);
            code = EXIT_FAIL;
        }
    }
    json_decref(n.failures);
    /* Pending events are accepted server-side: they alone do not make the pass a failure. */
    if (st != SK_OK || sum.remaining > sum.pending)
        code = EXIT_FAIL;
    cli_cancel_scope_end();
    sk_close(s);
    return code;
}

/* ---- plugins ------------------------------------------------------------ */

static const char PLUGINS_USAGE[] =
    "Usage: spec-kitty sync plugins [--json]\n\n"
    "Lists the transport plugins found in plugin_path, SPEC_KITTY_PLUGIN_PATH and\n"
    "the install folder: name, version, ABI, capabilities and file; a plugin that\n"
    "cannot be loaded is listed with the reason.\n";

static json_t *caps_json(uint32_t caps)
{
    static const struct {
        uint32_t bit;
        const char *name;
    } names[] = {{SK_CAP_SYNC, "sync"},
                 {SK_CAP_ASYNC, "async"},
                 {SK_CAP_PROBE, "probe"},
                 {SK_CAP_STREAMING, "streaming"},
                 {SK_CAP_OFFLINE, "offline"}};
    json_t *a = json_array();
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (caps & names[i].bit)
            json_array_append_new(a, json_string(names[i].name));
    return a;
}

static void collect_plugin(void *ctx, const sk_plugin_info *e)
{
    json_t *o;
    if (!e->error) {
        char abi[16];
        snprintf(abi, sizeof abi, "%u.%u", e->abi_major, e->abi_minor);
        json_t *options = json_array();
        for (const sk_option_def *d = e->options; d && d->name; d++)
            json_array_append_new(options,
                                  json_pack("{s:o, s:o, s:o, s:o}", "name", cli_json_text(d->name),
                                            "type", cli_json_text(d->type ? d->type : ""),
                                            "default", cli_json_text(d->dflt ? d->dflt : ""),
                                            "help", cli_json_text(d->help ? d->help : "")));
        o = json_pack("{s:o, s:o, s:s, s:o, s:o, s:o, s:o}", "name", cli_json_text(e->name),
                      "version", cli_json_text(e->version), "abi", abi, "description",
                      cli_json_text(e->description), "capabilities", caps_json(e->capabilities),
                      "file", cli_json_text(e->file), "options", options);
    } else {
        o = json_pack("{s:o, s:o}", "file", cli_json_text(e->file), "error",
                      cli_json_text(e->error));
    }
    json_array_append_new(ctx, o);
}

int cmd_plugins(int argc, char **argv)
{
    int json, code;
    sk_sync *s = cli_open_listing(argc, argv, PLUGINS_USAGE, "plugins", &json, &code);
    if (!s)
        return code;
    json_t *list = json_array();
    sk_plugins_each(s, collect_plugin, list);
    if (json) {
        code = cli_print_json(list);
    } else {
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e)
        {
            if (json_object_get(e, "error")) {
                cli_line(stdout, "%-12s BROKEN  %s", "-",
                         json_string_value(json_object_get(e, "error")));
                continue;
            }
            char *caps = json_dumps(json_object_get(e, "capabilities"), JSON_COMPACT);
            cli_line(stdout, "%-12s %-8s ABI %s  %-22s %s",
                     json_string_value(json_object_get(e, "name")),
                     json_string_value(json_object_get(e, "version")),
                     json_string_value(json_object_get(e, "abi")), caps ? caps : "",
                     json_string_value(json_object_get(e, "file")));
            free(caps);
        }
        if (json_array_size(list) == 0)
            puts("no transport plugins found");
        json_decref(list);
    }
    sk_close(s);
    return code;
}

/* ---- parked / retry ----------------------------------------------------- */

static const char PARKED_USAGE[] =
    "Usage: spec-kitty sync parked [--json]\n\n"
    "Lists parked events (not retried automatically) with the reason each was\n"
    "parked. `spec-kitty sync retry` puts them back in the queue.\n";

static int collect_parked(void *ctx, const char *event_id, const char *event_type,
                          int64_t timestamp, int64_t retry_count, const char *last_error)
{
    json_array_append_new(
        ctx,
        json_pack("{s:o, s:o, s:I, s:I, s:o}", "event_id", cli_json_text(event_id), "event_type",
                  cli_json_text(event_type), "timestamp", (json_int_t)timestamp, "retry_count",
                  (json_int_t)retry_count, "reason", cli_json_text(last_error ? last_error : "")));
    return 0;
}

int cmd_parked(int argc, char **argv)
{
    int json, code;
    sk_sync *s = cli_open_listing(argc, argv, PARKED_USAGE, "parked", &json, &code);
    if (!s)
        return code;
    json_t *list = json_array();
    sk_status st = sk_parked_each(s, collect_parked, list);
    if (st != SK_OK) {
        cli_error("%s", sk_last_error(s));
        code = cli_exit_code(st);
    } else if (json) {
        code = cli_print_json(json_incref(list));
    } else {
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e)
            cli_line(stdout, "%s  %-18s retries %-3lld %s",
                     json_string_value(json_object_get(e, "event_id")),
                     json_string_value(json_object_get(e, "event_type")),
                     (long long)json_integer_value(json_object_get(e, "retry_count")),
                     json_string_value(json_object_get(e, "reason")));
        printf("%zu parked event%s\n", json_array_size(list),
               json_array_size(list) == 1 ? "" : "s");
    }
    json_decref(list);
    sk_close(s);
    return code;
}

static const char RETRY_USAGE[] =
    "Usage: spec-kitty sync retry --all | EVENT_ID...\n\n"
    "Puts parked events back in the queue with their retry count reset; the next\n"
    "sync delivers them.\n";

int cmd_retry(int argc, char **argv)
{
    static const struct option opts[] = {
        {"all", no_argument, NULL, 'a'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int all = 0, c;
    optind = 1;
    while ((c = cli_getopt(argc, argv, "sync retry", "h", opts, 1)) != -1) {
        if (c == 'h') {
            fputs(RETRY_USAGE, stdout);
            return EXIT_OK;
        }
        if (c != 'a')
            return EXIT_USAGE;
        all = 1;
    }
    int64_t given = argc - optind; /* the event ids */
    if (all == (given > 0)) {
        cli_error("sync retry: give --all or one or more event ids%s (see --help)",
                  all ? ", not both" : "");
        return EXIT_USAGE;
    }
    int code;
    sk_sync *s = cli_open(&code);
    if (!s)
        return code;
    int64_t moved = 0;
    sk_status st =
        sk_retry_parked(s, all ? NULL : (const char *const *)argv + optind, (size_t)given, &moved);
    if (st != SK_OK) {
        cli_error("%s", sk_last_error(s));
        code = cli_exit_code(st);
    } else {
        printf("%lld event%s back in the queue\n", (long long)moved, moved == 1 ? "" : "s");
        if (!all && moved < given) {
            cli_error("%lld of the given events were not parked", (long long)(given - moved));
            code = EXIT_FAIL;
        }
    }
    sk_close(s);
    return code;
}
