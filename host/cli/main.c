/* `spec-kitty`: the command-line client of libspec-kitty-sync. */
#include "cli.h"

#include <string.h>

static const cli_cmd SYNC_CMDS[] = {
    {"emit", cmd_emit, "queue an event (or NDJSON lines with --file)"},
    {"now", cmd_now, "deliver the whole queue now"},
    {"status", cmd_status, "show queue, connection, last sync, auth and transport"},
    {"config", cmd_config, "show the effective config and where each value came from"},
    {"plugins", cmd_plugins, "list the transport plugins found"},
    {"parked", cmd_parked, "list parked events and why they were parked"},
    {"retry", cmd_retry, "put parked events back in the queue"},
    {"import", cmd_import, "queue the events of file-drop bundles (air-gapped machines)"},
    {"daemon", cmd_daemon, "start, run or stop the background sync service"},
    {"doctor", cmd_doctor, "check the queue file; --repair salvages a damaged one"},
    {"metrics", cmd_metrics, "print the metrics in the Prometheus text format"},
};

static void usage(FILE *f)
{
    fputs("Usage: spec-kitty sync COMMAND [OPTIONS]\n"
          "       spec-kitty auth login|logout|status|refresh [OPTIONS]\n"
          "       spec-kitty --version | --help\n\n"
          "Keeps spec-kitty events in a durable local queue and delivers them to the\n"
          "team's spec-kitty server through a transport plugin.\n\nCommands:\n",
          f);
    for (size_t i = 0; i < CLI_ARRAY_LEN(SYNC_CMDS); i++)
        fprintf(f, "  sync %-9s %s\n", SYNC_CMDS[i].name, SYNC_CMDS[i].summary);
    fputs("\n`spec-kitty sync COMMAND --help` describes each command.\n\n"
          "Environment:\n"
          "  SPEC_KITTY_HOME         state root (default ~/.spec-kitty)\n"
          "  SPEC_KITTY_SAAS_URL     server URL (overrides server_url in sync.json)\n"
          "  SPEC_KITTY_PLUGIN_PATH  extra folders with transport plugins (colon-separated)\n"
          "  SPEC_KITTY_ACCESS_TOKEN static bearer token (CI), no refresh\n"
          "  NO_COLOR                no colour even on a terminal\n\n"
          "Exit status: 0 success, 1 operational failure (events remain, server\n"
          "unreachable, ...), 2 usage, config or plugin error, 130 interrupted (SIGINT),\n"
          "143 terminated (SIGTERM).\n",
          f);
}

static int run(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        if (argc > 2) {
            cli_error("--version: unexpected argument \"%s\" (see --help)", argv[2]);
            return EXIT_USAGE;
        }
        printf("spec-kitty %s (transport ABI %d.%d)\n", SK_VERSION, SK_TRANSPORT_ABI_MAJOR,
               SK_TRANSPORT_ABI_MINOR);
        return EXIT_OK;
    }
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    if (strcmp(argv[1], "auth") == 0)
        return cmd_auth(argc - 1, argv + 1);
    if (strcmp(argv[1], "sync") != 0) {
        cli_error("unknown command \"%s\" (try `spec-kitty --help`)", argv[1]);
        return EXIT_USAGE;
    }
    if (argc < 3 || strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0) {
        usage(argc < 3 ? stderr : stdout);
        return argc < 3 ? EXIT_USAGE : EXIT_OK;
    }
    for (size_t i = 0; i < CLI_ARRAY_LEN(SYNC_CMDS); i++)
        if (strcmp(argv[2], SYNC_CMDS[i].name) == 0)
            return SYNC_CMDS[i].run(argc - 2, argv + 2);
    cli_error("unknown command \"sync %s\" (try `spec-kitty sync --help`)", argv[2]);
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    cli_stdio_init(); /* before anything opens a descriptor */
    cli_signals_init();
    int code = cli_stdout_close(run(argc, argv));
    int sig = cli_interrupted();
    return sig ? 128 + sig : code;
}
