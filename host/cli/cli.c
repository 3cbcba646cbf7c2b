/* Shared helpers of the command-line tool. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cli_exit_code(sk_status st)
{
    switch (st) {
    case SK_OK:
        return EXIT_OK;
    case SK_ERR_USAGE:
    case SK_ERR_CONFIG:
    case SK_ERR_PLUGIN:
    case SK_ERR_PERMISSION:
    case SK_ERR_INVALID_EVENT:
        return EXIT_USAGE;
    default:
        return EXIT_FAIL;
    }
}

/* C0 but tab, DEL, and C1 (U+0080 to U+009F: both of its UTF-8 bytes) become '?'. */
void cli_make_printable(char *text)
{
    for (unsigned char *p = (unsigned char *)text; *p; p++) {
        if (*p == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F) {
            *p++ = '?';
            *p = '?';
        } else if ((*p < 0x20 && *p != '\t') || *p == 0x7F) {
            *p = '?';
        }
    }
}

__attribute__((format(printf, 3, 0))) static void vline(FILE *f, const char *prefix,
                                                        const char *fmt, va_list ap)
{
    char *text = NULL;
    if (vasprintf(&text, fmt, ap) < 0) {
        fprintf(f, "%s(out of memory)\n", prefix);
        return;
    }
    cli_make_printable(text);
    fprintf(f, "%s%s\n", prefix, text);
    free(text);
}

void cli_line(FILE *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline(f, "", fmt, ap);
    va_end(ap);
}

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline(stderr, "spec-kitty: ", fmt, ap);
    va_end(ap);
}

void cli_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline(stderr, "spec-kitty: warning: ", fmt, ap);
    va_end(ap);
}

static void print_plugin_log(void *ctx, int level, const char *plugin, const char *line)
{
    (void)ctx;
    if (level <= SK_LOG_WARN || getenv("SPEC_KITTY_VERBOSE"))
        cli_line(stderr, "spec-kitty: %s%s%s%s",
                 level == SK_LOG_ERROR  ? "error: "
                 : level == SK_LOG_WARN ? "warning: "
                                        : "",
                 plugin ? plugin : "", plugin ? ": " : "", line);
}

sk_sync *cli_open(int *code)
{
    char err[1024] = "";
    sk_sync *s = NULL;
    sk_status st = sk_open(NULL, &s, err, sizeof err);
    if (st != SK_OK) {
        cli_error("%s", err);
        *code = cli_exit_code(st);
        return NULL;
    }
    for (const char *const *w = sk_config_warnings(s); *w; w++)
        cli_warn("%s", *w);
    sk_set_log(s, print_plugin_log, NULL);
    *code = EXIT_OK;
    return s;
}

/* Writes all of text to fd: 0, else -1 with errno. */
static int write_all(int fd, const char *text, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, text, len);
        if (w < 0 && errno == EINTR && !cli_interrupted())
            continue;
        if (w <= 0) {
            errno = w < 0 ? errno : EIO;
            return -1;
        }
        text += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Into an existing file that is no regular one (/dev/null, a FIFO, a terminal): there is
 * nothing to replace, the text goes straight in. 0, else -1 with errno. */
static int write_in_place(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int ok = write_all(fd, text, strlen(text)) == 0;
    int saved = errno;
    if (close(fd) != 0 && ok) {
        ok = 0;
        saved = errno;
    }
    errno = saved;
    return ok ? 0 : -1;
}

/* A new owner-only file beside path, renamed over it: a reader sees the old text or the new,
 * never half. O_EXCL: the name is guessable, so one planted there (a link in /tmp) is not
 * followed. 0, else -1 with errno. */
static int replace_atomically(const char *path, const char *text)
{
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid()) >= sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int ok = write_all(fd, text, strlen(text)) == 0 && fsync(fd) == 0;
    int saved = errno;
    if (close(fd) != 0 && ok) {
        ok = 0;
        saved = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = 0;
        saved = errno;
    }
    if (!ok)
        unlink(tmp);
    errno = saved;
    return ok ? 0 : -1;
}

const char *cli_output_target(const char *path, cli_output *out)
{
    struct stat st, so;
    if (!*path || path[strlen(path) - 1] == '/')
        return "wants a file name";
    if (stat(path, &st) == 0) {
        if (fstat(STDOUT_FILENO, &so) == 0 && st.st_dev == so.st_dev && st.st_ino == so.st_ino) {
            out->way = CLI_OUTPUT_STDOUT; /* /dev/stdout, or the file stdout goes to */
            return NULL;
        }
        if (S_ISDIR(st.st_mode))
            return "is a directory";
        if (!S_ISREG(st.st_mode)) { /* renaming over /dev/null would replace the device */
            out->way = CLI_OUTPUT_INTO;
            snprintf(out->file, sizeof out->file, "%s", path);
            return NULL;
        }
        if (!realpath(path, out->file)) /* through a link: the file it names is replaced */
            return strerror(errno);
    } else if (errno != ENOENT) {
        return strerror(errno);
    } else if (lstat(path, &st) == 0) {
        return "a link to a file that does not exist";
    } else if ((size_t)snprintf(out->file, sizeof out->file, "%s", path) >= sizeof out->file) {
        return strerror(ENAMETOOLONG);
    }
    out->way = CLI_OUTPUT_REPLACE;
    char dir[PATH_MAX];
    const char *slash = strrchr(out->file, '/');
    snprintf(dir, sizeof dir, "%.*s",
             slash ? (slash == out->file ? 1 : (int)(slash - out->file)) : 1,
             slash ? out->file : ".");
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return "no folder to write it in";
    if (access(dir, W_OK | X_OK) != 0)
        return strerror(errno);
    return NULL;
}

int cli_write_json_file(const char *path, const json_t *v, char *why, size_t cap)
{
    cli_output out;
    const char *bad = cli_output_target(path, &out);
    if (bad) {
        snprintf(why, cap, "%s: %s", path, bad);
        return -1;
    }
    char *json = json_dumps(v, JSON_INDENT(2)), *text = NULL;
    if (json && asprintf(&text, "%s\n", json) < 0)
        text = NULL;
    free(json);
    if (!text) {
        snprintf(why, cap, "%s: out of memory", path);
        return -1;
    }
    int rc;
    if (out.way == CLI_OUTPUT_STDOUT) { /* in order with what stdout already holds */
        rc = fputs(text, stdout) < 0 || fflush(stdout) != 0 ? -1 : 0;
    } else if (out.way == CLI_OUTPUT_INTO) {
        fflush(stdout); /* a terminal or pipe shared with stdout gets the text in order */
        rc = write_in_place(out.file, text);
    } else {
        rc = replace_atomically(out.file, text);
    }
    if (rc != 0)
        snprintf(why, cap, "%s: %s", path, strerror(errno));
    free(text);
    return rc;
}

int cli_color(FILE *f)
{
    const char *nc = getenv("NO_COLOR");
    return isatty(fileno(f)) && !(nc && *nc);
}

/* Reports the argument getopt_long refused: it returned c (':' or '?') on the argument it was
 * at, argv[at], and optind moved past it unless the fault is inside a cluster ("-xj"). */
static void report_bad_option(char **argv, int at, const char *cmd, int c)
{
    const char *arg = optind > at ? argv[optind - 1] : argv[optind];
    if (strncmp(arg, "--", 2) != 0) { /* a short option, maybe inside a cluster */
        cli_error(c == ':' ? "%s: option \"-%c\" needs a value (see --help)"
                           : "%s: unknown option \"-%c\" (see --help)",
                  cmd, optopt);
        return;
    }
    int name_len = (int)strcspn(arg, "=");
    if (c == ':')
        cli_error("%s: option \"%s\" needs a value (see --help)", cmd, arg);
    else if (optopt != 0) /* a known flag given "=VALUE" */
        cli_error("%s: option \"%.*s\" takes no value (see --help)", cmd, name_len, arg);
    else
        cli_error("%s: unknown or ambiguous option \"%.*s\" (see --help)", cmd, name_len, arg);
}

int cli_getopt(int argc, char **argv, const char *cmd, const char *shortopts,
               const struct option *longopts, int operands)
{
    char spec[64]; /* a leading ':' tells a missing value from an unknown option */
    snprintf(spec, sizeof spec, ":%s", shortopts);
    opterr = 0;
    int at = optind;
    int c = getopt_long(argc, argv, spec, longopts, NULL);
    if (c == ':' || c == '?') {
        report_bad_option(argv, at, cmd, c);
        return '?';
    }
    if (c == -1 && !operands && optind < argc) {
        cli_error("%s: unexpected argument \"%s\" (see --help)", cmd, argv[optind]);
        return '?';
    }
    return c;
}

int cli_parse_seconds(const char *text, double min, double max, double *out)
{
    static const char digits[] = "0123456789";
    size_t whole = strspn(text, digits), frac = 0;
    const char *end = text + whole;
    if (*end == '.') {
        frac = strspn(end + 1, digits);
        end += 1 + frac;
    }
    if (*end || whole + frac == 0)
        return -1;
    double v = strtod(text, NULL); /* the C locale: '.' is the decimal point */
    if (!(v >= min && v <= max))
        return -1;
    *out = v;
    return 0;
}

int cli_wants_help(int argc, char **argv, const char *usage)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return 1;
        }
    }
    return 0;
}

int cli_print_json(json_t *v)
{
    char *text = v ? json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(v);
    if (!text) {
        cli_error("cannot build the JSON output: out of memory");
        return EXIT_FAIL;
    }
    puts(text);
    free(text);
    return EXIT_OK;
}

/* The length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF), 0 when there is none. */
static size_t utf8_sequence(const unsigned char *p)
{
    unsigned char lo = 0x80, hi = 0xBF;
    size_t n;
    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xC2 && p[0] <= 0xDF)
        n = 2;
    else if (p[0] >= 0xE0 && p[0] <= 0xEF)
        n = 3;
    else if (p[0] >= 0xF0 && p[0] <= 0xF4)
        n = 4;
    else
        return 0;
    if (p[0] == 0xE0)
        lo = 0xA0;
    else if (p[0] == 0xED)
        hi = 0x9F;
    else if (p[0] == 0xF0)
        lo = 0x90;
    else if (p[0] == 0xF4)
        hi = 0x8F;
    if (p[1] < lo || p[1] > hi) /* the terminating NUL fails here, or below */
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

json_t *cli_json_text(const char *text)
{
    if (!text)
        return json_null();
    json_t *v = json_string(text);
    if (v)
        return v;
    const unsigned char *p = (const unsigned char *)text;
    char *clean = malloc(strlen(text) * 3 + 1), *out = clean; /* each byte may become 3 */
    if (!clean)
        return NULL;
    while (*p) {
        size_t n = utf8_sequence(p);
        if (n) {
            memcpy(out, p, n);
            out += n;
            p += n;
        } else {
            memcpy(out, "\xEF\xBF\xBD", 3); /* U+FFFD REPLACEMENT CHARACTER */
            out += 3;
            p++;
        }
    }
    *out = '\0';
    v = json_string(clean);
    free(clean);
    return v;
}

json_t *cli_json_text_or_null(const char *text)
{
    return text && text[0] ? cli_json_text(text) : json_null();
}

void cli_stdio_init(void)
{
    for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++) {
        if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
            continue;
        /* The lowest free number is fd (the ones below are open by now). */
        int held = open("/dev/null", fd == STDIN_FILENO ? O_WRONLY : O_RDONLY);
        if (held >= 0 && held != fd) {
            dup2(held, fd);
            close(held);
        }
    }
}

/* A pipe on stdout whose reader has gone: poll says POLLERR. For an earlier failed write
 * whose errno is lost by the time stdout is closed. */
static int stdout_reader_gone(void)
{
    struct pollfd p = {.fd = STDOUT_FILENO, .events = POLLOUT};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLERR);
}

int cli_stdout_close(int code)
{
    errno = 0;
    int failed = fflush(stdout) != 0 || ferror(stdout);
    int why = errno;
    int gone = why == EPIPE || (failed && why == 0 && stdout_reader_gone());
    if (fclose(stdout) != 0 && !failed) {
        failed = 1;
        why = errno;
    }
    if (!failed || gone)
        return code;
    cli_error("cannot write to standard output: %s", why ? strerror(why) : "write error");
    return code == EXIT_OK ? EXIT_FAIL : code;
}

void cli_format_age(int64_t s, char *buf, size_t cap)
{
    if (s < 60)
        snprintf(buf, cap, "%llds", (long long)s);
    else if (s < 3600)
        snprintf(buf, cap, "%lldm %llds", (long long)(s / 60), (long long)(s % 60));
    else if (s < 86400)
        snprintf(buf, cap, "%lldh %lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
    else
        snprintf(buf, cap, "%lldd %lldh", (long long)(s / 86400), (long long)(s % 86400 / 3600));
}

sk_sync *cli_open_listing(int argc, char **argv, const char *usage, const char *name, int *json,
                          int *code)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    char cmd[64];
    snprintf(cmd, sizeof cmd, "sync %s", name);
    *json = 0;
    *code = EXIT_OK;
    optind = 1;
    int c;
    while ((c = cli_getopt(argc, argv, cmd, "h", opts, 0)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            return NULL;
        }
        if (c != 'j') {
            *code = EXIT_USAGE;
            return NULL;
        }
        *json = 1;
    }
    return cli_open(code);
}
