/* `spec-kitty sync import`: queue the events of file-drop bundles on a connected machine. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const char USAGE[] =
    "Usage: spec-kitty sync import [--keep] [--verify-only] PATH...\n\n"
    "Queues the events of file-drop bundles (written on an air-gapped machine) so\n"
    "that the next sync delivers them. PATH is one bundle (a *.skb folder) or an\n"
    "outbox folder (all its bundles, in order). Each bundle is verified against its\n"
    "manifest before any of its events is queued; a damaged bundle is reported and\n"
    "left where it is. Events already queued are not duplicated, and the server\n"
    "drops duplicates of events it already has.\n\n"
    "Options:\n"
    "  --keep         leave imported bundles in place (default: move them into an\n"
    "                 imported/ folder beside them, so they are not imported twice)\n"
    "  --verify-only  check the bundles, queue nothing\n"
    "  -h, --help     this help\n\n"
    "Exit status: 0 every bundle imported, 1 some bundle was damaged or could not\n"
    "be queued (the others were), 2 usage error.\n";

typedef struct import_tally {
    int verify_only;
    size_t events, bundles;
    int failed;
} import_tally;


/* One bundle done: its line, and the counts of the summary. */
static void on_bundle(void *ctx, const sk_bundle_report *r)
{
    import_tally *t = ctx;
    t->bundles++;
    if (r->status == SK_ERR_CANCELLED) { /* dropped whole: nothing of it is queued */
        cli_error("%s: not imported: interrupted by %s", r->path,
                  cli_signal_name(cli_interrupted()));
        return;
    }
    if (r->status != SK_OK) {
        cli_error("%s: not imported: %s", r->path, r->error);
        t->failed = 1;
        return;
    }
    t->events += (size_t)r->events;
    cli_line(stdout, "%s %s: %lld events (node %s)", t->verify_only ? "verified" : "imported",
             r->bundle_id, (long long)r->events, r->node_id[0] ? r->node_id : "unknown");
    if (r->warning[0])
        cli_warn("%s: imported, but not moved into imported/: %s", r->path, r->warning);
}

int cmd_import(int argc, char **argv)
{
    static const struct option opts[] = {{"keep", no_argument, NULL, 'k'},
                                         {"verify-only", no_argument, NULL, 'v'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int keep = 0, verify_only = 0, c;
    optind = 1;
    while ((c = cli_getopt(argc, argv, "sync import", "h", opts, 1)) != -1) {
        if (c == 'k') {
            keep = 1;
        } else if (c == 'v') {
            verify_only = 1;
        } else if (c == 'h') {
            fputs(USAGE, stdout);
            return EXIT_OK;
        } else {
            return EXIT_USAGE;
        }
    }
    int first = optind;
    if (first == argc) {
        cli_error("sync import: give one or more bundles or outbox folders (see --help)");
        return EXIT_USAGE;
    }
    int code;
    sk_sync *s = cli_open(&code);
    if (!s)
        return code;
    import_tally t = {.verify_only = verify_only};
    unsigned flags = (keep ? SK_IMPORT_KEEP : 0) | (verify_only ? SK_IMPORT_VERIFY_ONLY : 0);
    cli_cancel_scope_begin(s); /* a signal stops the import between bundles */
    for (int i = first; i < argc && !cli_interrupted(); i++) {
        size_t seen = t.bundles;
        sk_status st = sk_import(s, argv[i], flags, on_bundle, &t);
        if (st != SK_OK && st != SK_ERR_CANCELLED && t.bundles == seen) { /* not a bundle folder */
            cli_error("%s", sk_last_error(s));
            t.failed = 1;
        }
    }
    printf("%s %zu events from %zu bundles%s%s\n", verify_only ? "verified" : "queued", t.events,
           t.bundles, t.failed ? " (some bundles failed: see above)" : "",
           cli_interrupted() ? " (interrupted: the other bundles were left as they are)" : "");
    cli_cancel_scope_end();
    sk_close(s);
    return t.failed ? EXIT_FAIL : EXIT_OK;
}
