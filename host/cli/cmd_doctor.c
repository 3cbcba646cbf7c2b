/* `spec-kitty sync doctor`: checks queue.db and, with --repair, salvages a damaged one. */
#include "cli.h"

#include <getopt.h>
#include <limits.h>
#include <string.h>

static const char DOCTOR_USAGE[] =
    "Usage: spec-kitty sync doctor [--repair] [--json]\n\n"
    "Checks the queue (<state root>/queue.db) with SQLite's integrity check and\n"
    "reads every event it can, skipping damaged pages: how many events are\n"
    "readable, and how many the indexes name that cannot be read (lost).\n\n"
    "With --repair, a damaged queue is replaced by a fresh queue.db holding every\n"
    "readable event; the damaged file is kept beside it as\n"
    "queue.db.damaged-<UTC time> (with its -wal), never deleted. The repair refuses\n"
    "while the sync service runs, a `sync now` drains, or another process has the\n"
    "queue open. A healthy queue is left as it is.\n\n"
    "Options:\n"
    "  --repair    copy the readable events into a fresh queue.db\n"
    "  --json      print the report as JSON (lost event ids included)\n"
    "  -h, --help  this help\n\n"
    "Exit status: 0 healthy or repaired, 1 damage found (without --repair) or the\n"
    "repair could not be done, 2 usage.\n";

static void format_bytes(int64_t n, char *buf, size_t cap)
{
    if (n < 10 * 1024)
        snprintf(buf, cap, "%lld bytes", (long long)n);
    else if (n < 10 * 1024 * 1024)
        snprintf(buf, cap, "%.1f KiB", (double)n / 1024);
    else
        snprintf(buf, cap, "%.1f MiB", (double)n / (1024 * 1024));
}

static json_t *report_json(const sk_doctor_report *r, const char *status, const char *file)
{
    json_t *lost = json_array();
    for (size_t i = 0; i < r->lost_ids_count; i++)
        json_array_append_new(lost, cli_json_text(r->lost_ids[i]));
    return json_pack("{s:s, s:o, s:I, s:o?, s:I, s:I, s:I, s:I, s:o, s:o?}", "status", status,
                     "file", cli_json_text(file), "problems", (json_int_t)r->problems,
                     "first_problem", r->problems ? cli_json_text(r->first_problem) : NULL,
                     "file_bytes", (json_int_t)r->file_bytes, "rows_readable",
                     (json_int_t)r->rows_readable, "bytes_readable", (json_int_t)r->bytes_readable,
                     "rows_lost", (json_int_t)r->rows_lost, "lost_event_ids", lost, "kept_as",
                     r->repaired ? cli_json_text(r->kept_as) : NULL);
}

static void print_report(const sk_doctor_report *r, int repair)
{
    char bytes[32];
    format_bytes(r->bytes_readable, bytes, sizeof bytes);
    if (!r->damaged) {
        printf("queue.db is healthy: %lld events (%s)\n", (long long)r->rows_readable, bytes);
        return;
    }
    cli_line(stdout, "queue.db %s damaged: %lld problem%s, the first: %s",
             r->repaired ? "was" : "is", (long long)r->problems, r->problems == 1 ? "" : "s",
             r->first_problem);
    printf("  readable  %lld events (%s)%s\n", (long long)r->rows_readable, bytes,
           r->repaired ? ", copied into a fresh queue.db" : "");
    printf("  lost      %lld events (named by an index, unreadable%s)\n", (long long)r->rows_lost,
           r->lost_ids_count ? "; --json lists their ids" : "");
    if (r->repaired)
        printf("the damaged file is kept as %s\n", r->kept_as);
    else if (!repair)
        printf("run `spec-kitty sync doctor --repair` to copy the readable events into a fresh "
               "queue.db (the damaged file is kept beside it)\n");
}

int cmd_doctor(int argc, char **argv)
{
    static const struct option opts[] = {{"repair", no_argument, NULL, 'r'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int json = 0, repair = 0, c;
    optind = 1;
    while ((c = cli_getopt(argc, argv, "sync doctor", "h", opts, 0)) != -1) {
        switch (c) {
        case 'j':
            json = 1;
            break;
        case 'r':
            repair = 1;
            break;
        case 'h':
            fputs(DOCTOR_USAGE, stdout);
            return EXIT_OK;
        default:
            return EXIT_USAGE;
        }
    }
    char err[1024] = "";
    sk_doctor_report r;
    sk_status st = sk_doctor(NULL, repair, &r, err, sizeof err);
    if (st == SK_ERR_NOT_FOUND) {
        char *slash = strrchr(r.queue_file, '/');
        printf("no queue.db in %.*s yet: nothing to check\n",
               slash ? (int)(slash - r.queue_file) : 0, r.queue_file);
        return EXIT_OK;
    }
    if (st != SK_OK) {
        cli_error("sync doctor: %s", err);
        sk_doctor_report_free(&r);
        return cli_exit_code(st);
    }
    const char *status = r.repaired ? "repaired" : r.damaged ? "damaged" : "healthy";
    int printed = EXIT_OK;
    if (json)
        printed = cli_print_json(report_json(&r, status, r.queue_file));
    else
        print_report(&r, repair);
    sk_doctor_report_free(&r);
    return r.damaged && !r.repaired ? EXIT_FAIL : printed;
}
