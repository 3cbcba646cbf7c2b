/* `spec-kitty sync metrics`: the Prometheus text exposition, for scrapers and people. */
#include "cli.h"

#include <stdlib.h>

static const char USAGE[] =
    "Usage: spec-kitty sync metrics\n\n"
    "Prints the metrics in the Prometheus text format: queue size, parked events, the\n"
    "oldest event's age, events delivered / duplicate / rejected / parked / refused\n"
    "because the queue was full, batches, retries, bytes sent, reconnects, the\n"
    "transport's own counters, the emit-to-acknowledged latency histogram and the\n"
    "service's state. Counters cover every process that delivered from this state\n"
    "root (<state root>/metrics.db). The service keeps the same in metrics.textfile\n"
    "(sync.json) for node_exporter's textfile collector.\n";

int cmd_metrics(int argc, char **argv)
{
    int code;
    if (cli_wants_help(argc, argv, USAGE))
        return EXIT_OK;
    if (argc > 1) {
        cli_error("sync metrics: unexpected argument \"%s\" (see --help)", argv[1]);
        return EXIT_USAGE;
    }
    sk_sync *s = cli_open(&code);
    if (!s)
        return code;
    char *text = NULL;
    sk_status st = sk_metrics_text(s, &text);
    if (st == SK_OK)
        fputs(text, stdout);
    else
        cli_error("sync metrics: %s", sk_last_error(s));
    free(text);
    sk_close(s);
    return cli_exit_code(st);
}
