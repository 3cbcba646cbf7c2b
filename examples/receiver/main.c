/* spec-kitty-receiver: command line, user management, start-up. */
#include "receiver.h"

#include "common.h"
#include "jalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROG "spec-kitty-receiver"
#define EXIT_USAGE 2

static const char usage_text[] =
    "Usage: " PROG " [options]\n"
    "       " PROG " --users FILE --add-user NAME [--team SLUG]   (password on stdin)\n"
    "\n"
    "A local server for the spec-kitty sync contract (events batch, token, refresh, health).\n"
    "\n"
    "  --listen HOST:PORT          address to listen on (default 127.0.0.1:8765; port 0 picks\n"
    "                              a free port; the URL is printed)\n"
    "  --db FILE                   SQLite file for events and token hashes\n"
    "                              (default receiver.db)\n"
    "  --users FILE                users file (JSON, PBKDF2-SHA256 password hashes)\n"
    "  --add-user NAME             add or update NAME in --users, read the password from\n"
    "                              stdin, write the file (mode 0600) and exit\n"
    "  --team SLUG                 team_slug of the user being added (default local)\n"
    "  --no-auth                   accept requests without tokens (demos)\n"
    "  --access-ttl S              access token lifetime in seconds (default 900)\n"
    "  --refresh-ttl S             refresh token lifetime in seconds (default 604800)\n"
    "  --max-events-per-batch N    more events in one batch answer 400 (default 1000)\n"
    "  --max-body-bytes N          larger bodies, raw or decompressed, answer 413\n"
    "                              (default 16777216)\n"
    "  --rate-limit-ms N           one batch per N ms per client, else 429 (default 0 = off)\n"
    "  --strict                    an invalid event fails its whole batch: 400 with details\n"
    "                              (default: it is answered rejected, the rest is stored)\n"
    "  --faults                    enable the fault-injection admin endpoints\n"
    "  --quiet                     no per-request log lines\n"
    "  --nagle                     answer like a server with Nagle's algorithm on: no\n"
    "                              TCP_NODELAY, header and body in two writes (tests)\n"
    "  --help                      show this help\n";

/* Prints a one-line usage error and returns the usage exit code. */
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, PROG ": %s (see --help)\n", msg);
    return EXIT_USAGE;
}

/* Parses a whole decimal integer in [min, max]: digits only (strtoll alone would also take
 * leading blanks and a sign, so "-0" was a port). */
static int parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (!*s || s[strspn(s, "0123456789")] != '\0')
        return -1;
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Parses HOST:PORT or [V6]:PORT into cfg. */
static int parse_listen(const char *s, rcv__config *cfg)
{
    const char *colon = strrchr(s, ':');
    int64_t port = 0;
    if (!colon || parse_int(colon + 1, 0, 65535, &port) != 0)
        return -1;
    const char *host = s;
    size_t len = (size_t)(colon - s);
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        host++;
        len -= 2;
    }
    if (len == 0 || len >= sizeof cfg->listen_host)
        return -1;
    memcpy(cfg->listen_host, host, len);
    cfg->listen_host[len] = '\0';
    unsigned char addr[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, cfg->listen_host, addr) != 1 &&
        inet_pton(AF_INET6, cfg->listen_host, addr) != 1)
        return -1; /* numeric addresses only: no resolver surprises */
    cfg->listen_port = (int)port;
    return 0;
}

typedef struct cli {
    rcv__config cfg;
    const char *add_user;
    const char *team;
    int help;
} cli;

enum {
    OPT_LISTEN = 256,
    OPT_DB,
    OPT_USERS,
    OPT_ADD_USER,
    OPT_TEAM,
    OPT_NO_AUTH,
    OPT_ACCESS_TTL,
    OPT_REFRESH_TTL,
    OPT_MAX_EVENTS,
    OPT_MAX_BODY,
    OPT_RATE,
    OPT_STRICT,
    OPT_FAULTS,
    OPT_QUIET,
    OPT_NAGLE,
    OPT_HELP,
};

static const struct option options[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"db", required_argument, NULL, OPT_DB},
    {"users", required_argument, NULL, OPT_USERS},
    {"add-user", required_argument, NULL, OPT_ADD_USER},
    {"team", required_argument, NULL, OPT_TEAM},
    {"no-auth", no_argument, NULL, OPT_NO_AUTH},
    {"access-ttl", required_argument, NULL, OPT_ACCESS_TTL},
    {"refresh-ttl", required_argument, NULL, OPT_REFRESH_TTL},
    {"max-events-per-batch", required_argument, NULL, OPT_MAX_EVENTS},
    {"max-body-bytes", required_argument, NULL, OPT_MAX_BODY},
    {"rate-limit-ms", required_argument, NULL, OPT_RATE},
    {"strict", no_argument, NULL, OPT_STRICT},
    {"faults", no_argument, NULL, OPT_FAULTS},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"nagle", no_argument, NULL, OPT_NAGLE},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* Applies one numeric option; a value out of its range is a usage error naming both. */
static int numeric_option(int opt, const char *arg, rcv__config *cfg)
{
    const struct {
        int opt;
        int64_t min, max;
        int64_t *field;
    } numbers[] = {
        {OPT_ACCESS_TTL, 1, 100L * 365 * 86400, &cfg->access_ttl_s},
        {OPT_REFRESH_TTL, 1, 100L * 365 * 86400, &cfg->refresh_ttl_s},
        {OPT_MAX_EVENTS, 1, 1000000, &cfg->max_events},
        {OPT_MAX_BODY, 1, (int64_t)1 << 32, &cfg->max_body_bytes},
        {OPT_RATE, 0, 86400000, &cfg->rate_limit_ms},
    };
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
        if (numbers[i].opt != opt)
            continue;
        if (parse_int(arg, numbers[i].min, numbers[i].max, numbers[i].field) == 0)
            return 0;
        const char *name = "?";
        for (const struct option *o = options; o->name; o++)
            if (o->val == opt)
                name = o->name;
        return usage_error("--%s wants a whole number from %lld to %lld, got '%s'", name,
                           (long long)numbers[i].min, (long long)numbers[i].max, arg);
    }
    return usage_error("unknown option");
}

/* --add-user NAME and --team SLUG: names in a JSON file, so non-empty UTF-8. */
static int name_option(const char *flag, const char *arg)
{
    json_t *probe = json_string(arg);
    json_decref(probe);
    if (!arg[0] || !probe)
        return usage_error("%s wants a non-empty UTF-8 name, got '%s'", flag, arg);
    return 0;
}

/* Applies one option to c. Returns 0 or a usage-error exit code. */
static int apply_option(int opt, const char *arg, cli *c)
{
    switch (opt) {
    case OPT_LISTEN:
        return parse_listen(arg, &c->cfg)
                   ? usage_error("--listen wants IP:PORT (numeric IPv4 or [IPv6]), got '%s'", arg)
                   : 0;
    case OPT_DB:
        c->cfg.db_path = arg;
        return 0;
    case OPT_USERS:
        c->cfg.users_path = arg;
        return 0;
    case OPT_ADD_USER:
        c->add_user = arg;
        return name_option("--add-user", arg);
    case OPT_TEAM:
        c->team = arg;
        return name_option("--team", arg);
    case OPT_NO_AUTH:
        c->cfg.no_auth = 1;
        return 0;
    case OPT_STRICT:
        c->cfg.strict = 1;
        return 0;
    case OPT_FAULTS:
        c->cfg.faults = 1;
        return 0;
    case OPT_QUIET:
        c->cfg.quiet = 1;
        return 0;
    case OPT_NAGLE:
        c->cfg.nagle = 1;
        return 0;
    case OPT_HELP:
        c->help = 1;
        return 0;
    default:
        return numeric_option(opt, arg, &c->cfg);
    }
}

/* Parses argv into c. Returns 0 or the exit code to use. */
static int parse_args(int argc, char **argv, cli *c)
{
    snprintf(c->cfg.listen_host, sizeof c->cfg.listen_host, "127.0.0.1");
    c->cfg.listen_port = 8765;
    c->cfg.db_path = "receiver.db";
    c->cfg.access_ttl_s = 900;
    c->cfg.refresh_ttl_s = 7 * 86400;
    c->cfg.max_events = 1000;
    c->cfg.max_body_bytes = 16 * 1024 * 1024;
    c->team = "local";
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        if (opt == '?')
            return usage_error("unknown or incomplete option '%s'", argv[optind - 1]);
        int rc = apply_option(opt == 'h' ? OPT_HELP : opt, optarg, c);
        if (rc)
            return rc;
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (c->add_user && !c->cfg.users_path)
        return usage_error("--add-user needs --users FILE");
    if (!c->help && !c->add_user && !c->cfg.no_auth && !c->cfg.users_path)
        return usage_error("give --users FILE (or --no-auth for a demo)");
    return 0;
}

/* The longest password `spec-kitty auth login` sends: a longer one could never log in. */
#define PASSWORD_MAX 1023

/* Why the password line (len bytes, its line end dropped) cannot be stored, or NULL. The
 * whole line counts: it used to be cut at 1023 bytes or at a NUL byte, without a word. */
static const char *password_fault(const char *line, ssize_t len)
{
    json_t *probe = len > 0 ? json_string(line) : NULL;
    json_decref(probe);
    if (len < 0)
        return "no password on stdin";
    if (len == 0)
        return "the password must not be empty";
    if (strlen(line) != (size_t)len)
        return "the password holds a NUL byte";
    if (len > PASSWORD_MAX)
        return "the password is longer than 1023 bytes (more than spec-kitty auth login sends)";
    return probe ? NULL : "the password is not valid UTF-8";
}

/* The first line of stdin without its line end, NUL-terminated in buf: its length, or -1
 * when stdin is empty. Reading stops at cap - 1 bytes, so a line longer than any password
 * (or /dev/zero) costs no more than that. */
static ssize_t read_first_line(char *buf, size_t cap)
{
    size_t len = 0;
    int ch = 0;
    while (len < cap - 1 && (ch = getchar()) != EOF && ch != '\n')
        buf[len++] = (char)ch;
    while (len > 0 && buf[len - 1] == '\r')
        len--;
    buf[len] = '\0';
    return len == 0 && ch == EOF ? -1 : (ssize_t)len;
}

/* --add-user: reads the password (the first line of stdin) and updates the users file. */
static int add_user(const cli *c)
{
    char line[PASSWORD_MAX + 3]; /* the longest password, a CR, and one byte too many */
    ssize_t len = read_first_line(line, sizeof line);
    const char *fault = password_fault(line, len);
    char msg[512];
    int rc =
        fault ? -1 : rcv__users_add(c->cfg.users_path, c->add_user, c->team, line, msg, sizeof msg);
    explicit_bzero(line, sizeof line);
    if (rc != 0) {
        fprintf(stderr, PROG ": %s\n", fault ? fault : msg);
        return 1;
    }
    printf("user %s (team %s) written to %s\n", c->add_user, c->team, c->cfg.users_path);
    return 0;
}

/* What --help and --add-user printed must have reached stdout (not /dev/full). */
static int output_written(int rc)
{
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout))
        return rc;
    fprintf(stderr, PROG ": cannot write to standard output: %s\n",
            errno ? strerror(errno) : "write error");
    return 1;
}

/* Opens what the server needs; -1 with msg on failure. */
static int app_open(rcv__app *app, char *msg, size_t cap)
{
    pthread_mutex_init(&app->stats.lock, NULL);
    pthread_mutex_init(&app->stop_lock, NULL);
    pthread_cond_init(&app->stop_cond, NULL);
    app->started_ms = sk__wall_ms();
    if (!app->cfg.no_auth && rcv__users_load(app->cfg.users_path, &app->users, msg, cap) != 0)
        return -1;
    app->faults = rcv__faults_new();
    app->ratelimit = rcv__ratelimit_new(app->cfg.rate_limit_ms);
    if (!app->faults || !app->ratelimit) {
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    return rcv__store_open(app->cfg.db_path, &app->store, msg, cap);
}

static void app_close(rcv__app *app)
{
    rcv__store_close(app->store);
    rcv__faults_free(app->faults);
    rcv__ratelimit_free(app->ratelimit);
    json_decref(app->users);
    pthread_mutex_destroy(&app->stats.lock);
    pthread_mutex_destroy(&app->stop_lock);
    pthread_cond_destroy(&app->stop_cond);
}

int main(int argc, char **argv)
{
    rcv__jalloc_install(); /* before any Jansson allocation */
    /* Batch buffers (~0.5 MB each) are allocated per request: keep them on the
     * heap and do not hand freed memory back to the kernel, or every batch
     * pays for fresh zeroed pages. */
    mallopt(M_MMAP_THRESHOLD, 64 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);
    cli c = {0};
    int rc = parse_args(argc, argv, &c);
    if (rc)
        return rc;
    if (c.help) {
        fputs(usage_text, stdout);
        return output_written(0);
    }
    if (c.add_user)
        return output_written(add_user(&c));
    setvbuf(stdout, NULL, _IOLBF, 0); /* one log line at a time, even into a file */
    static rcv__app app;
    app.cfg = c.cfg;
    char msg[512];
    rc = app_open(&app, msg, sizeof msg) == 0 && rcv__serve(&app, msg, sizeof msg) == 0 ? 0 : 1;
    if (rc)
        fprintf(stderr, PROG ": %s\n", msg);
    app_close(&app);
    return rc;
}
