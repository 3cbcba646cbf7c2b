/* `spec-kitty sync daemon start|run|stop`: the background sync service. */
#include "cli.h"
#include "control.h"
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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
    "          schedule.shutdown_deadline_ms, then cancels it. Waits for it to exit.\n\n"
    "Log: <state root>/sync-daemon.log (rotated at 1 MiB). `spec-kitty sync status`\n"
    "shows the live state of a running service.\n";

static int parse_verbose(int argc, char **argv, int *verbose)
{
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--verbose") == 0 || strcmp(argv[i], "-v") == 0)
            *verbose = 1;
        else {
            cli_error("sync daemon %s: unexpected argument \"%s\"", argv[1], argv[i]);
            return -1;
        }
    }
    return 0;
}

static int resolve_root(char *root, size_t cap)
{
    sk__err err;
    if (sk__state_root_resolve(NULL, root, cap, &err) != SK_OK ||
        sk__mkdirs_owner(root, &err) != SK_OK) {
        cli_error("%s", err.msg);
        return -1;
    }
    return 0;
}

static int daemon_run(int verbose)
{
    char root[PATH_MAX];
    if (resolve_root(root, sizeof root))
        return EXIT_USAGE;
    sk__service_opts o = {.control_socket = 1, .log_stderr = 1, .verbose = verbose};
    sk__service *svc;
    sk__err err = {{0}};
    sk_status st = sk__service_new(root, &o, &svc, &err);
    if (st == SK_ERR_BUSY) {
        cli_error("%s (pid %ld)", err.msg, sk__service_running_pid(root));
        return EXIT_FAIL;
    }
    if (st != SK_OK) {
        cli_error("%s", err.msg);
        return cli_exit_code(st);
    }
    sk__service_handle_signals(svc);
    st = sk__service_run(svc, &err);
    sk__service_free(svc);
    return st == SK_OK ? EXIT_OK : EXIT_FAIL;
}

/* Child side of `start`: detach, set up, tell the parent, run. */
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
    sk__service_opts o = {.control_socket = 1, .verbose = verbose};
    sk__service *svc;
    sk__err err = {{0}};
    char msg[1024];
    if (sk__service_new(root, &o, &svc, &err) != SK_OK) {
        int n = snprintf(msg, sizeof msg, "err %s", err.msg);
        ssize_t w = write(report_fd, msg, (size_t)n);
        (void)w;
        _exit(1);
    }
    sk__service_handle_signals(svc);
    int n = snprintf(msg, sizeof msg, "ok %ld", (long)getpid());
    ssize_t w = write(report_fd, msg, (size_t)n);
    (void)w;
    close(report_fd);
    sk__service_run(svc, &err);
    sk__service_free(svc);
    _exit(0);
}

static int daemon_start(int verbose)
{
    char root[PATH_MAX];
    if (resolve_root(root, sizeof root))
        return EXIT_USAGE;
    long running = sk__service_running_pid(root);
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
    char msg[1024] = "";
    ssize_t n = read(p[0], msg, sizeof msg - 1);
    close(p[0]);
    msg[n > 0 ? n : 0] = '\0';
    if (strncmp(msg, "ok ", 3) == 0) {
        printf("sync service started (pid %s, log %s/sync-daemon.log)\n", msg + 3, root);
        return EXIT_OK;
    }
    if (strstr(msg, "already runs")) { /* lost a race with another start: one service */
        long winner = -1;
        for (int i = 0; i < 100 && (winner = sk__service_running_pid(root)) < 0; i++)
            usleep(10 * 1000); /* the winner writes its pid file just after taking the lock */
        printf("sync service already running (pid %ld)\n", winner);
        return EXIT_OK;
    }
    cli_error("the sync service did not start: %s", n > 4 ? msg + 4 : "it exited at once");
    return EXIT_FAIL;
}

static int daemon_stop(int argc, char **argv)
{
    double timeout_s = 30;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            char *end;
            timeout_s = strtod(argv[++i], &end);
            if (*end || timeout_s <= 0) {
                cli_error("sync daemon stop: --timeout wants seconds > 0, got \"%s\"", argv[i]);
                return EXIT_USAGE;
            }
        } else {
            cli_error("sync daemon stop: unexpected argument \"%s\"", argv[i]);
            return EXIT_USAGE;
        }
    }
    char root[PATH_MAX];
    if (resolve_root(root, sizeof root))
        return EXIT_USAGE;
    long pid;
    sk__err err;
    if (sk__service_find(root, &pid, &err) != SK_OK) {
        cli_error("sync daemon stop: %s", err.msg);
        return EXIT_FAIL;
    }
    if (pid == 0) {
        printf("sync service not running\n");
        return EXIT_OK;
    }
    int fd;
    int64_t t0 = sk__mono_ms();
    if (sk__control_connect(root, 2000, &fd, &err) == SK_OK) {
        json_t *req = json_pack("{s:s}", "cmd", "stop");
        sk__control_send(fd, req, &err);
        json_decref(req);
        close(fd);
    } else if (pid > 0 && kill((pid_t)pid, SIGTERM) != 0) { /* no usable socket: signal it */
        cli_error("sync daemon stop: cannot stop the sync service (pid %ld): %s; kill: %s", pid,
                  err.msg, strerror(errno));
        return EXIT_FAIL;
    }
    while (sk__service_running_pid(root) != 0) {
        if (sk__mono_ms() - t0 > (int64_t)(timeout_s * 1000)) {
            cli_error("sync service (pid %ld) still running after %.0f s", pid, timeout_s);
            return EXIT_FAIL;
        }
        usleep(20 * 1000);
    }
    printf("sync service stopped (pid %ld, %.1f s)\n", pid, (double)(sk__mono_ms() - t0) / 1000);
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
        return parse_verbose(argc, argv, &verbose) ? EXIT_USAGE : daemon_start(verbose);
    if (strcmp(argv[1], "run") == 0)
        return parse_verbose(argc, argv, &verbose) ? EXIT_USAGE : daemon_run(verbose);
    if (strcmp(argv[1], "stop") == 0)
        return daemon_stop(argc, argv);
    cli_error("unknown command \"sync daemon %s\" (try `spec-kitty sync daemon --help`)", argv[1]);
    return EXIT_USAGE;
}
