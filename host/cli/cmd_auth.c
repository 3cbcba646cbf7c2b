/* `spec-kitty auth login|logout|status|refresh`: the CLI over host/auth.c. */
#include "cli.h"


#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char AUTH_USAGE[] =
    "Usage: spec-kitty auth COMMAND [OPTIONS]\n\n"
    "Manages the session with the spec-kitty server (stored owner-only in\n"
    "$SPEC_KITTY_HOME/credentials.json).\n\nCommands:\n"
    "  auth login    log in and store the session\n"
    "  auth logout   remove the stored session\n"
    "  auth status   show the session state, user, team, server and token expiry\n"
    "  auth refresh  renew the access token now (normally automatic)\n\n"
    "`spec-kitty auth COMMAND --help` describes each command.\n"
    "SPEC_KITTY_ACCESS_TOKEN, when set, is used as a static bearer token (CI).\n";

static const char LOGIN_USAGE[] =
    "Usage: spec-kitty auth login [--username USER] [--password-stdin] [--server URL]\n\n"
    "Logs in to the spec-kitty server (POST /api/v1/token/) and stores the session.\n"
    "Without --username the username is asked for; the password is read from the\n"
    "terminal without echo, or from the first line of standard input with\n"
    "--password-stdin. The server is server_url from sync.json (or SPEC_KITTY_SAAS_URL)\n"
    "unless --server is given; plain http is refused except to a loopback address.\n\n"
    "Exit status: 0 logged in, 1 refused or server unreachable, 2 usage or config error.\n";

static const char LOGOUT_USAGE[] = "Usage: spec-kitty auth logout\n\n"
                                   "Removes the stored session (credentials.json).\n";

static const char STATUS_USAGE[] =
    "Usage: spec-kitty auth status [--json]\n\n"
    "Shows the session: state (Authenticated, Session expired, Not authenticated,\n"
    "Static token), user, team, server and when the tokens expire. Never shows a token.\n\n"
    "Exit status: 0 authenticated (or static token), 1 not authenticated or session\n"
    "expired, 2 unusable credentials file or config error.\n";

static const char REFRESH_USAGE[] =
    "Usage: spec-kitty auth refresh\n\n"
    "Renews the access token now with the refresh token (the server rotates it).\n"
    "Exit status: 0 renewed, 1 session expired or server unreachable, 2 config error.\n";

/* The credentials of $SPEC_KITTY_HOME. Returns an exit code. */
static int open_auth(int create_root, sk_auth **a)
{
    char err[1024] = "";
    sk_status st = sk_auth_open(NULL, create_root, a, err, sizeof err);
    if (st != SK_OK) {
        cli_error("%s", err);
        return cli_exit_code(st);
    }
    for (const char *const *w = sk_auth_config_warnings(*a); *w; w++)
        cli_warn("%s", *w);
    return EXIT_OK;
}

/* What read_line returns instead of a length. */
enum { LINE_NONE = -1, LINE_TOO_LONG = -2, LINE_NUL = -3 };

/* Reads one line from fd with read(2), so no stdio buffer keeps a copy. Drops the line
 * end. Returns its length, or LINE_NONE on error/EOF before any byte, LINE_TOO_LONG, or
 * LINE_NUL when it holds a NUL byte (the C string would end there: a password cut short). */
static ssize_t read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    int nul = 0;
    for (;;) {
        char ch;
        ssize_t r = read(fd, &ch, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (n == 0 && !nul)
                return LINE_NONE;
            break;
        }
        if (ch == '\n')
            break;
        if (n + 1 >= cap) {
            explicit_bzero(buf, cap);
            return LINE_TOO_LONG;
        }
        nul |= ch == '\0';
        buf[n++] = ch;
    }
    if (nul) {
        explicit_bzero(buf, cap);
        return LINE_NUL;
    }
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    return (ssize_t)n;
}

/* Prompts on stderr and reads a line from the terminal on stdin with echo off
 * (a signal meanwhile ends the command with the echo back on: see signals.c). */
static ssize_t read_secret(const char *prompt, char *buf, size_t cap)
{
    fputs(prompt, stderr);
    fflush(stderr);
    int quiet = cli_tty_echo_off(STDIN_FILENO) == 0;
    ssize_t n = read_line(STDIN_FILENO, buf, cap);
    if (quiet)
        cli_tty_restore();
    fputc('\n', stderr);
    return n;
}

typedef struct login_args {
    const char *username;
    const char *server;
    int password_stdin;
} login_args;

/* Parses login options; returns EXIT_OK or EXIT_USAGE (message printed). */
static int parse_login(int argc, char **argv, login_args *la)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char **slot = strncmp(arg, "--username", 10) == 0 ? &la->username
                            : strncmp(arg, "--server", 8) == 0  ? &la->server
                                                                : NULL;
        size_t flag_len = slot == &la->username ? 10 : 8;
        if (strcmp(arg, "--password-stdin") == 0) {
            la->password_stdin = 1;
        } else if (slot && arg[flag_len] == '=') {
            *slot = arg + flag_len + 1;
        } else if (slot && arg[flag_len] == '\0' && i + 1 < argc) {
            *slot = argv[++i];
        } else {
            cli_error("auth login: unexpected argument \"%s\" (see --help)", arg);
            return EXIT_USAGE;
        }
    }
    return EXIT_OK;
}

/* Why a line read for what ("password") is unusable: read_line returned n <= 0. */
static const char *line_fault(const char *what, ssize_t n)
{
    static char text[64];
    snprintf(text, sizeof text,
             n == LINE_TOO_LONG ? "the %s is too long"
             : n == LINE_NUL    ? "the %s holds a NUL byte"
                                : "no %s given",
             what);
    return text;
}

/* Gets username and password from the options, stdin or the terminal. */
static int login_inputs(const login_args *la, char *user, size_t ucap, char *pw, size_t pcap)
{
    int tty = isatty(STDIN_FILENO);
    if (la->username) {
        if ((size_t)snprintf(user, ucap, "%s", la->username) >= ucap) {
            cli_error("auth login: username too long");
            return EXIT_USAGE;
        }
    } else if (tty && !la->password_stdin) {
        fputs("Username: ", stderr);
        fflush(stderr);
        ssize_t n = read_line(STDIN_FILENO, user, ucap);
        if (n <= 0) {
            cli_error("auth login: %s", line_fault("username", n));
            return EXIT_USAGE;
        }
    } else {
        cli_error("auth login: give --username USER (no terminal to ask on)");
        return EXIT_USAGE;
    }
    ssize_t n;
    if (la->password_stdin)
        n = read_line(STDIN_FILENO, pw, pcap);
    else if (tty)
        n = read_secret("Password: ", pw, pcap);
    else {
        cli_error("auth login: no terminal to read the password from: use --password-stdin");
        return EXIT_USAGE;
    }
    if (n <= 0) {
        cli_error("auth login: %s", line_fault("password", n));
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

static void print_logged_in(sk_auth *a)
{
    sk_auth_info info;
    sk_auth_info_get(a, &info);
    cli_line(stdout, "Logged in to %s as %s%s%s%s.", info.server_url, info.username,
             info.team_slug[0] ? " (team " : "", info.team_slug, info.team_slug[0] ? ")" : "");
    if (info.server_mismatch)
        cli_warn("sync.json points to %s: events go there, not to this session's server",
                 info.config_server_url);
}

static int auth_login(int argc, char **argv)
{
    if (cli_wants_help(argc, argv, LOGIN_USAGE))
        return EXIT_OK;
    login_args la = {0};
    sk_auth *a = NULL;
    char user[256], pw[1024];
    int code = parse_login(argc, argv, &la);
    if (code == EXIT_OK)
        code = open_auth(1, &a);
    /* Refuse a missing or plain-http server before anyone types a password. */
    sk_status st = code == EXIT_OK ? sk_auth_login_check(a, la.server) : SK_OK;
    if (st != SK_OK) {
        cli_error("%s", sk_auth_last_error(a));
        code = cli_exit_code(st);
    }
    if (code == EXIT_OK)
        code = login_inputs(&la, user, sizeof user, pw, sizeof pw);
    if (code == EXIT_OK) {
        st = sk_auth_login(a, la.server, user, pw);
        explicit_bzero(pw, sizeof pw);
        if (st != SK_OK)
            cli_error("%s", sk_auth_last_error(a));
        else
            print_logged_in(a);
        code = cli_exit_code(st);
    }
    explicit_bzero(pw, sizeof pw);
    sk_auth_close(a);
    return code;
}

/* For subcommands without arguments: --help, refusal of anything else, then open_auth.
 * *a stays NULL when the caller should just return the code. */
static int open_no_args(int argc, char **argv, const char *usage, const char *name, sk_auth **a)
{
    if (cli_wants_help(argc, argv, usage))
        return EXIT_OK;
    if (argc > 1) {
        cli_error("auth %s: unexpected argument \"%s\"", name, argv[1]);
        return EXIT_USAGE;
    }
    int code = open_auth(0, a);
    if (code != EXIT_OK)
        *a = NULL;
    return code;
}

static int auth_logout(int argc, char **argv)
{
    sk_auth *a = NULL;
    int code = open_no_args(argc, argv, LOGOUT_USAGE, "logout", &a);
    if (!a)
        return code;
    int removed = 0;
    sk_status st = sk_auth_logout(a, &removed);
    char why[1024];
    snprintf(why, sizeof why, "%s", sk_auth_last_error(a));
    sk_auth_info info;
    sk_auth_info_get(a, &info);
    if (st != SK_OK) {
        cli_error("%s", why);
        code = cli_exit_code(st);
    } else if (removed) {
        printf("Logged out: removed %s.\n", info.credentials_path);
    } else {
        printf("Not logged in (no %s).\n", info.credentials_path);
    }
    if (st == SK_OK && info.state == SK_AUTH_STATIC)
        printf("SPEC_KITTY_ACCESS_TOKEN is still set and is still used.\n");
    sk_auth_close(a);
    return code;
}

/* ISO-8601 UTC to the second: expiry times are whole seconds in the file. */
static void iso_seconds(int64_t ms, char *buf, size_t cap)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* "2026-11-26T10:15:03Z (in 14m 59s)" or "... (expired 2m ago)". */
static void describe_expiry(int64_t at_ms, char *buf, size_t cap)
{
    if (at_ms <= 0) {
        snprintf(buf, cap, "unknown");
        return;
    }
    char iso[32], age[32];
    iso_seconds(at_ms, iso, sizeof iso);
    int64_t left = (at_ms - (int64_t)time(NULL) * 1000) / 1000;
    cli_format_age(left >= 0 ? left : -left, age, sizeof age);
    snprintf(buf, cap, "%s (%s %s%s)", iso, left >= 0 ? "in" : "expired", age,
             left >= 0 ? "" : " ago");
}

static json_t *iso_or_null(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char iso[32];
    iso_seconds(ms, iso, sizeof iso);
    return json_string(iso);
}

static int print_status_json(const sk_auth_info *info)
{
    json_t *o = json_object();
    json_object_set_new(o, "state", cli_json_text(info->state_name));
    json_object_set_new(o, "username", cli_json_text_or_null(info->username));
    json_object_set_new(o, "team_slug", cli_json_text_or_null(info->team_slug));
    json_object_set_new(o, "server_url", cli_json_text_or_null(info->server_url));
    json_object_set_new(o, "access_expires_at", iso_or_null(info->access_expires_ms));
    json_object_set_new(o, "refresh_expires_at", iso_or_null(info->refresh_expires_ms));
    json_object_set_new(o, "credentials_file", cli_json_text(info->credentials_path));
    json_object_set_new(o, "server_mismatch", json_boolean(info->server_mismatch));
    return cli_print_json(o);
}

static void row(const char *label, const char *value)
{
    cli_line(stdout, "%-15s %s", label, value && *value ? value : "-");
}

static void print_status_text(const sk_auth_info *info)
{
    char buf[128];
    row("State:", info->state_name);
    row("User:", info->username);
    row("Team:", info->team_slug);
    row("Server:", info->server_url);
    if (info->state == SK_AUTH_OK) {
        describe_expiry(info->access_expires_ms, buf, sizeof buf);
        row("Access token:", buf);
        describe_expiry(info->refresh_expires_ms, buf, sizeof buf);
        row("Refresh token:", buf);
    }
    row("Credentials:", info->credentials_path);
    if (info->server_mismatch) {
        putchar('\n');
        cli_line(stdout, "This session is for %s, but sync.json points to %s: log in there.",
                 info->server_url, info->config_server_url);
    }
    if (info->state == SK_AUTH_EXPIRED)
        printf("\nSession expired \xe2\x80\x94 run `spec-kitty auth login`.\n");
    else if (info->state == SK_AUTH_NONE)
        printf("\nRun `spec-kitty auth login` to log in.\n");
    else if (info->state == SK_AUTH_STATIC)
        printf("\nUsing SPEC_KITTY_ACCESS_TOKEN (never refreshed).\n");
}

static int auth_status(int argc, char **argv)
{
    if (cli_wants_help(argc, argv, STATUS_USAGE))
        return EXIT_OK;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") != 0) {
            cli_error("auth status: unexpected argument \"%s\" (see --help)", argv[i]);
            return EXIT_USAGE;
        }
        json = 1;
    }
    sk_auth *a = NULL;
    int code = open_auth(0, &a);
    if (code != EXIT_OK)
        return code;
    sk_auth_info info;
    sk_status st = sk_auth_info_get(a, &info);
    if (st != SK_OK) {
        cli_error("%s", sk_auth_last_error(a));
        code = cli_exit_code(st);
    } else {
        int printed = EXIT_OK;
        if (json)
            printed = print_status_json(&info);
        else
            print_status_text(&info);
        code = (info.state == SK_AUTH_OK || info.state == SK_AUTH_STATIC) ? printed : EXIT_FAIL;
    }
    sk_auth_close(a);
    return code;
}

static int auth_refresh(int argc, char **argv)
{
    sk_auth *a = NULL;
    int code = open_no_args(argc, argv, REFRESH_USAGE, "refresh", &a);
    if (!a)
        return code;
    sk_status st = sk_auth_refresh(a);
    if (st != SK_OK) {
        cli_error("%s", sk_auth_last_error(a));
        code = cli_exit_code(st);
    } else {
        sk_auth_info info;
        char buf[128];
        sk_auth_info_get(a, &info);
        describe_expiry(info.access_expires_ms, buf, sizeof buf);
        printf("Session renewed; access token valid until %s.\n", buf);
    }
    sk_auth_close(a);
    return code;
}

static const cli_cmd AUTH_CMDS[] = {
    {"login", auth_login, NULL},
    {"logout", auth_logout, NULL},
    {"status", auth_status, NULL},
    {"refresh", auth_refresh, NULL},
};

int cmd_auth(int argc, char **argv)
{
    if (argc < 2) {
        fputs(AUTH_USAGE, stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(AUTH_USAGE, stdout);
        return EXIT_OK;
    }
    for (size_t i = 0; i < CLI_ARRAY_LEN(AUTH_CMDS); i++)
        if (strcmp(argv[1], AUTH_CMDS[i].name) == 0)
            return AUTH_CMDS[i].run(argc - 1, argv + 1);
    cli_error("unknown command \"auth %s\" (try `spec-kitty auth --help`)", argv[1]);
    return EXIT_USAGE;
}
