/* Shared bits of the `spec-kitty` command-line tool: exit codes, output, opening the engine. */
#ifndef SK_CLI_H
#define SK_CLI_H

#include <spec-kitty/sync.h>
#include <spec-kitty/transport.h>

#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>

#define CLI_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Exit codes: documented in `spec-kitty --help`. */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

typedef struct cli_cmd {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} cli_cmd;

/* Maps a library status to the exit code (usage/config/plugin errors → 2, else 1). */
int cli_exit_code(sk_status st);

/* Prints "spec-kitty: MESSAGE" to stderr, as one line of printable text (see cli_line). */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Prints one line to f: the formatted text and a newline. Text from outside (a server's
 * reason, a bundle's node id, a plugin's error, a line of an events file) cannot control the
 * terminal or break the line: each control character in it (C0 but tab, DEL, C1) is shown
 * as '?'. fmt itself must not end in a newline.
 */
void cli_line(FILE *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same in place, for text printed another way. */
void cli_make_printable(char *text);

/* Opens the engine at $SPEC_KITTY_HOME (prints config warnings, errors). NULL on failure, *code
 * set. */
sk_sync *cli_open(int *code);

/*
 * For commands whose only option is --json: handles --help (NULL, *code 0),
 * refuses other arguments (NULL, *code 2), else opens the engine like cli_open.
 */
sk_sync *cli_open_listing(int argc, char **argv, const char *usage, const char *name, int *json,
                          int *code);

/* Where a file the user names for our output (`sync now --report FILE`) is written. */
typedef enum cli_output_way {
    CLI_OUTPUT_REPLACE, /* a regular file (new, or the one a link names): replaced atomically */
    CLI_OUTPUT_INTO,    /* a device, FIFO or terminal: written into, never replaced */
    CLI_OUTPUT_STDOUT,  /* the file stdout already writes to (/dev/stdout): through stdout */
} cli_output_way;
typedef struct cli_output {
    cli_output_way way;
    char file[PATH_MAX]; /* REPLACE: the file to replace; INTO: the path to open */
} cli_output;

/* Resolves path for cli_write_json_file, so that a name that cannot be written is refused
 * before the work whose output it is: NULL, or what is wrong with it ("is a directory", "a
 * link to a file that does not exist", "Permission denied" for the folder, ...). */
const char *cli_output_target(const char *path, cli_output *out);

/* Writes v as indented JSON and a newline to path, as cli_output_target resolves it; -1 with
 * why on failure. */
int cli_write_json_file(const char *path, const json_t *v, char *why, size_t cap);

/* Non-zero when stdout (fd) is a terminal and NO_COLOR is unset. */
int cli_color(FILE *f);

/*
 * getopt_long for the command named cmd ("sync emit"), called in a loop after `optind = 1`.
 * Returns the option's value, or -1 when the options are done (operands from argv[optind]).
 * A usage error is one line naming the argument at fault (unknown or ambiguous option,
 * missing value, value given to a flag) and returns '?'. With operands == 0, any operand
 * left after the options is such an error too.
 */
int cli_getopt(int argc, char **argv, const char *cmd, const char *shortopts,
               const struct option *longopts, int operands);

/* A number of seconds as a user writes it, "30" or "0.5", within [min, max]: 0, else -1 (a
 * sign, an exponent, hex, inf, nan, blanks or trailing junk, which strtod would all take). */
int cli_parse_seconds(const char *text, double min, double max, double *out);

/* Standard option parsing: returns 1 when argv asks for --help (prints usage to stdout). */
int cli_wants_help(int argc, char **argv, const char *usage);

/* Prints a JSON value to stdout, indented, with a newline, and frees it. NULL (out of memory
 * while building it) is an error line instead: returns EXIT_OK or EXIT_FAIL. */
int cli_print_json(json_t *v);

/*
 * A JSON string of text the tool did not write itself: a path, a server's or a plugin's
 * message, a row another program put in queue.db. Bytes that are not UTF-8 become U+FFFD,
 * so that `--json` never drops a key, a row or the whole document (Jansson refuses such
 * strings). NULL gives null; cli_json_text_or_null gives null for "" too.
 */
json_t *cli_json_text(const char *text);
json_t *cli_json_text_or_null(const char *text);

/* ---- standard streams ---------------------------------------------------------------- */

/* Called first by main: a standard descriptor the caller closed is held by /dev/null opened
 * the wrong way round, so no file, pipe or socket of ours ever gets number 0, 1 or 2 (our
 * output would land in it) and using the closed stream still fails as it would have. */
void cli_stdio_init(void);
/* Called last by main: flushes and closes stdout. Output that could not be written (a full
 * disk, /dev/full, a closed descriptor) is one error line and turns an exit code of 0 into 1;
 * a reader that went away (EPIPE, `| head -1`) ends quietly with the code unchanged. */
int cli_stdout_close(int code);

/* Human-readable age, e.g. "3m 12s". */
void cli_format_age(int64_t seconds, char *buf, size_t cap);

/* ---- signals (signals.c) ----------------------------------------------------------------
 * SIGINT/SIGTERM end a command with exit status 128+signal (130, 143). Outside a cancel scope
 * at once; inside one the first signal cancels the scope's work (sk_sync_cancel) and the
 * command winds down and prints what it did; a second signal exits at once. */

/* Installs the handlers (no SA_RESTART) and ignores SIGPIPE. Called first by main. */
void cli_signals_init(void);
/* Opens a cancel scope; s (may be NULL) is the handle whose work a signal cancels. */
void cli_cancel_scope_begin(sk_sync *s);
/* Closes it: s may be closed after this returns. */
void cli_cancel_scope_end(void);
/* The signal that interrupted the command (SIGINT, SIGTERM), or 0. */
int cli_interrupted(void);
/* Readable once a signal arrived (it stays readable): poll it beside a blocking wait. */
int cli_interrupt_fd(void);
/* "SIGINT", "SIGTERM". */
const char *cli_signal_name(int sig);
/* Turns echo off on the terminal fd until cli_tty_restore(); a signal restores it too.
 * Returns -1 when fd is not a terminal. */
int cli_tty_echo_off(int fd);
void cli_tty_restore(void);

/* Subcommands. */
int cmd_emit(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_now(int argc, char **argv);
int cmd_plugins(int argc, char **argv);
int cmd_parked(int argc, char **argv);
int cmd_retry(int argc, char **argv);
int cmd_daemon(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_doctor(int argc, char **argv);
int cmd_metrics(int argc, char **argv);
/* `spec-kitty auth SUBCOMMAND` (argv[0] is "auth"). */
int cmd_auth(int argc, char **argv);

#endif
