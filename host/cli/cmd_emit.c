/* `spec-kitty sync emit`: queue one event, or NDJSON lines in one transaction. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char USAGE[] =
    "Usage: spec-kitty sync emit --type TYPE --aggregate-id ID [--aggregate-type T]\n"
    "                            [--payload JSON] [--causation-id ID] [SCHEMA OPTIONS]\n"
    "       spec-kitty sync emit --file FILE [SCHEMA OPTIONS]  (FILE '-' reads standard input)\n\n"
    "Builds an event envelope (ULID, Lamport clock, node id), validates it by the\n"
    "rules of its vocabulary and queues it durably before returning; prints the\n"
    "new event_id.\n"
    "With --file, every line is one event: a full envelope (it has \"event_id\") or\n"
    "{\"event_type\", \"aggregate_id\", \"aggregate_type\"?, \"payload\"?, \"causation_id\"?}\n"
    "(a short line with \"schema_version\", or --schema 3, builds a current envelope).\n"
    "All lines are queued in one transaction, or none: each bad line is reported\n"
    "by number. A line may hold up to 1 MiB (the largest envelope the server takes).\n\n"
    "Options:\n"
    "  -t, --type TYPE           event type, e.g. WPStatusChanged\n"
    "  -a, --aggregate-id ID     e.g. WP01 or a mission slug\n"
    "      --aggregate-type T    WorkPackage, Mission, ... (default: from the type)\n"
    "  -p, --payload JSON        payload object (default {})\n"
    "      --causation-id ID     the action that caused this event (ULID or UUID)\n"
    "  -f, --file FILE           NDJSON events\n"
    "  -h, --help                this help\n\n"
    "Schema options (default: emit.* of sync.json):\n"
    "      --schema N            1 the classic vocabulary, 3 the current one (3.0.0)\n"
    "      --correlation-id ID   (current) default: the causation id, else the event id\n"
    "      --project-uuid UUID   (current) the project; without it the event stays local\n"
    "      --project-slug SLUG   (current)\n"
    "      --build-id ID         (current)\n\n"
    "Exit status: 0 queued, 1 not queued (queue full, I/O) or queued but its id could\n"
    "not be written to standard output, 2 invalid event or usage.\n";

static void line_error(void *ctx, size_t line_no, const char *message)
{
    cli_error("%s:%zu: %s", (const char *)ctx, line_no, message); /* message may quote the line */
}

static int emit_file(sk_sync *s, const char *file, const sk_event_spec *defaults)
{
    int stdin_input = strcmp(file, "-") == 0;
    int fd = stdin_input ? STDIN_FILENO : open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int saved = errno; /* cli_error may change errno */
        cli_error("cannot open %s: %s", file, strerror(saved));
        return saved == ENOENT ? EXIT_USAGE : EXIT_FAIL;
    }
    struct stat st_file;
    if (!stdin_input && fstat(fd, &st_file) == 0 && S_ISDIR(st_file.st_mode)) {
        close(fd); /* a folder named where a file belongs: the command line's mistake */
        cli_error("cannot read %s: it is a directory, not a file of events", file);
        return EXIT_USAGE;
    }
    size_t count = 0;
    const char *shown = stdin_input ? "<stdin>" : file;
    sk_status st = sk_emit_ndjson(s, fd, shown, defaults, line_error, (void *)shown, &count);
    if (!stdin_input)
        close(fd);
    if (st != SK_OK) {
        cli_error("%s", sk_last_error(s));
        return cli_exit_code(st);
    }
    printf("queued %zu event%s\n", count, count == 1 ? "" : "s");
    return EXIT_OK;
}

int cmd_emit(int argc, char **argv)
{
    static const struct option opts[] = {
        {"type", required_argument, NULL, 't'},
        {"aggregate-id", required_argument, NULL, 'a'},
        {"aggregate-type", required_argument, NULL, 'A'},
        {"payload", required_argument, NULL, 'p'},
        {"causation-id", required_argument, NULL, 'c'},
        {"file", required_argument, NULL, 'f'},
        {"schema", required_argument, NULL, 'S'},
        {"correlation-id", required_argument, NULL, 'C'},
        {"project-uuid", required_argument, NULL, 'U'},
        {"project-slug", required_argument, NULL, 'P'},
        {"build-id", required_argument, NULL, 'B'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    sk_event_spec ev = {0};
    const char *file = NULL;
    int c;
    optind = 1;
    while ((c = cli_getopt(argc, argv, "sync emit", "t:a:p:f:h", opts, 0)) != -1) {
        switch (c) {
        case 't':
            ev.event_type = optarg;
            break;
        case 'a':
            ev.aggregate_id = optarg;
            break;
        case 'A':
            ev.aggregate_type = optarg;
            break;
        case 'p':
            ev.payload_json = optarg;
            break;
        case 'c':
            ev.causation_id = optarg;
            break;
        case 'f':
            file = optarg;
            break;
        case 'S':
            if (strcmp(optarg, "1") != 0 && strcmp(optarg, "3") != 0) {
                cli_error("sync emit: --schema %s: expected 1 (classic) or 3 (current)", optarg);
                return EXIT_USAGE;
            }
            ev.schema = atoi(optarg);
            break;
        case 'C':
            ev.correlation_id = optarg;
            break;
        case 'U':
            ev.project_uuid = optarg;
            break;
        case 'P':
            ev.project_slug = optarg;
            break;
        case 'B':
            ev.build_id = optarg;
            break;
        case 'h':
            fputs(USAGE, stdout);
            return EXIT_OK;
        default:
            return EXIT_USAGE;
        }
    }
    if (file ? (ev.event_type || ev.aggregate_id || ev.aggregate_type || ev.payload_json ||
                ev.causation_id)
             : (!ev.event_type || !ev.aggregate_id)) {
        cli_error("sync emit: give --type and --aggregate-id, or --file (see --help)");
        return EXIT_USAGE;
    }
    int code;
    sk_sync *s = cli_open(&code);
    if (!s)
        return code;
    if (file) {
        code = emit_file(s, file, &ev);
    } else {
        char id[27];
        sk_status st = sk_emit_event(s, &ev, id);
        if (st == SK_OK)
            puts(id);
        else
            cli_error("%s", sk_last_error(s));
        code = cli_exit_code(st);
    }
    sk_close(s);
    return code;
}
