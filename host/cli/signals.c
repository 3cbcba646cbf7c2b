/*
 * Ctrl+C and SIGTERM for the command-line tool.
 *
 * Outside a cancel scope a signal ends the command at once with 128+signal:
 * everything it wrote is either committed (SQLite, atomic files) or not.
 * Inside one (`sync now`, `status --check`, `import`), the first signal wakes a
 * watcher thread that calls sk_sync_cancel() on the scope's handle, and the
 * command winds down itself: it settles what the server acknowledged, prints
 * its summary, closes the scope and returns. A second signal, or a scope still
 * open CLI_CANCEL_GRACE_MS after the first (a transport that ignores cancel),
 * exits at once. The terminal's echo is put back on every path.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* How long a cancelled command may take to settle and print before it is ended. */
#define CLI_CANCEL_GRACE_MS 900

static atomic_int caught;              /* the first signal, 0 before (lock-free: handler-safe) */
static volatile sig_atomic_t in_scope; /* a cancel scope is open */
static volatile sig_atomic_t tty_saved;
static struct termios tty_state;
static int tty_fd = -1;
static int wake_pipe[2] = {-1, -1}; /* made with the watcher; written once by the handler */

static pthread_mutex_t scope_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t scope_ended; /* on CLOCK_MONOTONIC, set up with the watcher */
static sk_sync *scope_sync; /* under scope_mu */
static int scope_open;      /* under scope_mu */
static int watcher_started;

static void restore_tty(void)
{
    if (tty_saved)
        tcsetattr(tty_fd, TCSAFLUSH, &tty_state); /* async-signal-safe */
}

static void exit_now(int sig)
{
    restore_tty();
    _exit(128 + sig);
}

static void on_signal(int sig)
{
    /* One exchange: of two signals handled at once on two threads, one is second. */
    if (atomic_exchange(&caught, sig) != 0 || !in_scope)
        exit_now(sig);
    int saved = errno;
    ssize_t w = write(wake_pipe[1], "!", 1);
    (void)w;
    errno = saved;
}

void cli_signals_init(void)
{
    /* No SA_RESTART: a blocking call returns EINTR and the command looks at cli_interrupted().
     * Installed even when the shell started us with SIGINT ignored (a background job), so
     * that `kill -INT` reaches a script's `spec-kitty sync now &` too. */
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* A reader that went away (`| head -1`) shows as EPIPE on stdout: main ends quietly. */
    signal(SIGPIPE, SIG_IGN);
}

static void *watch(void *arg)
{
    (void)arg;
    struct pollfd p = {.fd = wake_pipe[0], .events = POLLIN};
    while (poll(&p, 1, -1) < 0 && errno == EINTR)
        ;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until); /* the condition waits on CLOCK_MONOTONIC */
    until.tv_sec += CLI_CANCEL_GRACE_MS / 1000;
    until.tv_nsec += (CLI_CANCEL_GRACE_MS % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&scope_mu);
    if (scope_sync)
        sk_sync_cancel(scope_sync);
    int rc = 0;
    while (scope_open && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&scope_ended, &scope_mu, &until);
    int stuck = scope_open;
    pthread_mutex_unlock(&scope_mu);
    if (stuck)
        exit_now(atomic_load(&caught)); /* the cancelled work did not wind down in time */
    return NULL; /* it did: the command prints, closes and exits by itself */
}

/* Starts the watcher (and its pipe: only commands with a cancel scope need them)
 * with the signals blocked, so the handler never runs on it. */
static void start_watcher(void)
{
    if (watcher_started || (wake_pipe[0] < 0 && pipe2(wake_pipe, O_CLOEXEC) != 0))
        return;
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&scope_ended, &ca);
    pthread_condattr_destroy(&ca);
    pthread_t t;
    if (pthread_create(&t, NULL, watch, NULL) == 0) {
        pthread_detach(t);
        watcher_started = 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void cli_cancel_scope_begin(sk_sync *s)
{
    start_watcher();
    pthread_mutex_lock(&scope_mu);
    scope_sync = s;
    scope_open = 1;
    pthread_mutex_unlock(&scope_mu);
    in_scope = watcher_started;
}

void cli_cancel_scope_end(void)
{
    in_scope = 0;
    pthread_mutex_lock(&scope_mu);
    scope_sync = NULL;
    scope_open = 0;
    if (watcher_started) /* else the condition was never initialised */
        pthread_cond_signal(&scope_ended);
    pthread_mutex_unlock(&scope_mu);
}

int cli_interrupted(void)
{
    return atomic_load(&caught);
}

int cli_interrupt_fd(void)
{
    return wake_pipe[0];
}

const char *cli_signal_name(int sig)
{
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal";
}

int cli_tty_echo_off(int fd)
{
    struct termios quiet;
    if (tcgetattr(fd, &quiet) != 0)
        return -1;
    tty_state = quiet;
    tty_fd = fd;
    atomic_signal_fence(memory_order_release); /* the handler sees both before tty_saved */
    tty_saved = 1;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    return tcsetattr(fd, TCSAFLUSH, &quiet);
}

void cli_tty_restore(void)
{
    restore_tty();
    tty_saved = 0;
}
