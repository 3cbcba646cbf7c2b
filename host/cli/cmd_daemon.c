/* `spec-kitty sync daemon start|run|stop`: the background sync service. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The longest `stop --timeout`: a day (the wait is in milliseconds, an int64). */
#define STOP_TIMEOUT_MAX_S 86400

static const char USAGE[] =
    "Usage: spec-kitty sync daemon start [--verbose]\n"
    "       spec-kitty sync daemon run [--verbose]\n"
    "       spec-kitty sync daemon stop [--timeout SECONDS]\n\n"
    "The background sync service flushes the queue every schedule.interval_s while\n"
    "events wait and soon after each emit, backs off on failures, and honours the\n"
    "server's Retry-After. One service per state root.\n\n"
    "  start   detach and run in the background (pid and lock in the state root)\n"
    "  run     run in the foreground, logging to stderr too (for systemd)\n"
    "  stop    ask the service to stop; it lets the batch in flight finish until\n"
    "          schedule.shutdown_deadline_ms, then cancels it. Waits for it to exit,\n"
    "          at most --timeout seconds (default 30, up to 86400; \"0.5\" is half a second).\n\n"
    "Log: <state root>/sync-daemon.log (rotated at 1 MiB). `spec-kitty sync status`\n"
    "shows the live state of a running service.\n";

/* Options of `sync daemon start|run` (argv[0] is the subcommand): -1 on a usage error. */
static int parse_verbose(int argc, char **argv, int *verbose)
{
    static const struct option opts[] = {{"verbose", no_argument, NULL, 'v'}, {NULL, 0, NULL, 0}};
    char cmd[32];
    snprintf(cmd, sizeof cmd, "sync daemon %s", argv[0]);
    int c;
    optind = 1;
    while ((c = cli_getopt(argc, argv, cmd, "v", opts, 0)) != -1) {
        if (c != 'v')
            return -1;
        *verbose = 1;
    }
    return 0;
}

static int resolve_root(char *root, size_t cap)
{
    char err[1024];
    if (sk_state_root_resolve(NULL, root, cap, err, sizeof err) != SK_OK) {
        cli_error("%s", err);
        return -1;
    }
    return 0;
}

static int daemon_run(int verbose)
{
    char root[PATH_MAX];
    if (resolve_root(root, sizeof root))
        return EXIT_USAGE;
    sk_service_options o = {
        .control_socket = 1, .log_stderr = 1, .verbose = verbose, .handle_signals = 1};
    char err[1024] = "";
    sk_status st = sk_service_run(root, &o, err, sizeof err);
    if (st != SK_OK)
        cli_error("%s", err);
    return st == SK_OK ? EXIT_OK : st == SK_ERR_BUSY ? EXIT_FAIL : cli_exit_code(st);
}

/* Tells the parent of `start` that the service runs: "ok <pid>". */
static void report_ready(void *ctx, long pid)
{
    int *fd = ctx;
    char msg[64];
    int n = snprintf(msg, sizeof msg, "ok %ld", pid);
    ssize_t w = write(*fd, msg, (size_t)n);
    (void)w;
    close(*fd);
    *fd = -1; /* the number may be reused: never write to it again */
}

/* Child side of `start`: detach, run, and tell the parent "ok <pid>" or "err <status> <why>". */
static void daemon_child(const char *root, int verbose, int report_fd)
{
    setsid();
    if (fork() > 0)
        _exit(0); /* the grandchild is not a session leader: it cannot regain a terminal */
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0) {
        dup2(devnull, STDIN_FILENO);
        dup2(devnull, STDOUT_FILENO);
        dup2(devnull, STDERR_FILENO);
    }
    if (chdir("/") != 0)
        _exit(1);
    sk_service_options o = {.control_socket = 1,
                            .verbose = verbose,
                            .handle_signals = 1,
                            .ready = report_ready,
                            .ready_ctx = &report_fd};
    char err[1024] = "";
    sk_status st = sk_service_run(root, &o, err, sizeof err);
    if (st != SK_OK && report_fd >= 0) { /* failed before ready: the parent still listens */
        char msg[1100];
        int n = snprintf(msg, sizeof msg, "err %d %s", (int)st, err);
        ssize_t w = write(report_fd, msg, (size_t)n);
        (void)w;
    }
    _exit(st == SK_OK ? 0 : 1);
}

/*
 * The pid of the service that holds the lock of root (0: none). One that took
 * the lock an instant ago writes its pid file just after: wait for it a while.
 */
static long running_pid(const char *root)
{
    long pid = 0;
    char err[1024];
    for (int i = 0; i < 500 && sk_service_pid(root, &pid, err, sizeof err) == SK_OK && pid < 0;
         i++)
        usleep(10 * 1000);
    return pid;
}

static int daemon_start(int verbose)
{
    char root[PATH_MAX];
    if (resolve_root(root, sizeof root))
        return EXIT_USAGE;
    long running = running_pid(root);
    if (running) {
        printf("sync service already running (pid %ld)\n", running);
        return EXIT_OK;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        cli_error("pipe: %s", strerror(errno));
        return EXIT_FAIL;
    }
    pid_t pid = fork();
    if (pid < 0) {
        cli_error("fork: %s", strerror(errno));
        return EXIT_FAIL;
    }
    if (pid == 0) {
        close(p[0]);
        daemon_child(root, verbose, p[1]);
    }
    close(p[1]);
    waitpid(pid, NULL, 0);
    char msg[1200] = "";
    ssize_t n = read(p[0], msg, sizeof msg - 1);
    close(p[0]);
    msg[n > 0 ? n : 0] = '\0';
    if (strncmp(msg, "ok ", 3) == 0) {
        printf("sync service started (pid %s, log %s/sync-daemon.log)\n", msg + 3, root);
        return EXIT_OK;
    }
    int code = 0, used = 0;
    if (sscanf(msg, "err %d %n", &code, &used) == 1 && code == SK_ERR_BUSY) {
        /* lost a race with another start: one service */
        printf("sync service already running (pid %ld)\n", running_pid(root));
        return EXIT_OK;
    }
    cli_error("the sync service did not start: %s", used ? msg + used : "it exited at once");
    return EXIT_FAIL;
}

static int daemon_stop(int argc, char **argv)
{
    static const struct option opts[] = {{"timeout", required_argument, NULL, 't'},
                                         {NULL, 0, NULL, 0}};
    double timeout_s = 30;
    int c;
    optind = 1;
    while ((c = cli_getopt(argc, argv, "sync daemon stop", "", opts, 0)) != -1) {
        if (c != 't')
            return EXIT_USAGE;
        if (cli_parse_seconds(optarg, 0.001, STOP_TIMEOUT_MAX_S, &timeout_s) != 0) {
            cli_error("sync daemon stop: --timeout wants seconds from 0.001 to %d, got \"%s\"",
                      STOP_TIMEOUT_MAX_S, optarg);
            return EXIT_USAGE;
        }
    }
    char root[PATH_MAX], err[1024];
    if (resolve_root(root, sizeof root))
        return EXIT_USAGE;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long pid;
    sk_status st = sk_service_shutdown(root, (int64_t)(timeout_s * 1000), &pid, err, sizeof err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (st != SK_OK) {
        cli_error("%s%s", st == SK_ERR_BUSY ? "" : "sync daemon stop: ", err);
        return EXIT_FAIL;
    }
    if (pid == 0) {
        printf("sync service not running\n");
        return EXIT_OK;
    }
    printf("sync service stopped (pid %ld, %.1f s)\n", pid,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return EXIT_OK;
}

int cmd_daemon(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    if (cli_wants_help(argc, argv, USAGE))
        return EXIT_OK;
    int verbose = 0;
    if (strcmp(argv[1], "start") == 0)
        return parse_verbose(argc - 1, argv + 1, &verbose) ? EXIT_USAGE : daemon_start(verbose);
    if (strcmp(argv[1], "run") == 0)
        return parse_verbose(argc - 1, argv + 1, &verbose) ? EXIT_USAGE : daemon_run(verbose);
    if (strcmp(argv[1], "stop") == 0)
        return daemon_stop(argc - 1, argv + 1);
    cli_error("unknown command \"sync daemon %s\" (try `spec-kitty sync daemon --help`)", argv[1]);
    return EXIT_USAGE;
}
