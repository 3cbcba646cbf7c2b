/*
 * Internal helpers shared by every host module. Internal symbols use the
 * sk__ prefix (double underscore); public ones sk_ (see include/spec-kitty).
 */
#ifndef SK_HOST_COMMON_H
#define SK_HOST_COMMON_H

#include <spec-kitty/sync.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* A one-line error message travelling next to an sk_status. */
typedef struct sk__err {
    char msg[768];
} sk__err;

/* Copies src into dst (cap bytes); a text too long keeps its head and its tail around "…"
 * (the end of a message usually says what is wrong), cutting no UTF-8 character. */
void sk__fit_text(char *dst, size_t cap, const char *src);

/* Formats the message into err (if non-NULL) and returns status. A message too long for it
 * keeps its head and its tail around "…": the fact at the end outlives a long path. */
sk_status sk__fail(sk__err *err, sk_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Clears err. */
void sk__err_clear(sk__err *err);

/* Wall clock, milliseconds since the epoch. */
int64_t sk__wall_ms(void);
/* Monotonic clock, milliseconds. */
int64_t sk__mono_ms(void);
/* Sleeps ms milliseconds (the rest again after a signal). */
void sk__sleep_ms(int64_t ms);
/* fsync of a file or folder by its path. */
sk_status sk__fsync_path(const char *path, sk__err *err);
/* Makes *arr (of *cap elements of elem bytes) hold at least need elements,
 * doubling; returns 0 when out of memory (*arr unchanged). */
int sk__grow(void **arr, size_t *cap, size_t need, size_t elem);
/* The time ms from now on clock, for pthread_cond_timedwait and the like. */
struct timespec sk__deadline_in(clockid_t clock, int64_t ms);

/*
 * Opens a file for reading that someone else may have planted: a symbolic
 * link is refused (we must not read, or echo, a file of their choosing), and
 * so is anything but a regular file (a FIFO would block). *sb gets its fstat.
 * SK_ERR_NOT_FOUND when it is missing; every refusal is one line naming path.
 */
struct stat;
sk_status sk__open_regular(const char *path, int *fd_out, struct stat *sb, sk__err *err);

/* Writes ISO-8601 UTC with milliseconds, e.g. 2026-11-25T09:18:44.123Z (cap >= 25). */
void sk__iso8601_ms(int64_t wall_ms, char *buf, size_t cap);

/* Fills buf with n cryptographically random bytes (getrandom). */
sk_status sk__random_bytes(void *buf, size_t n, sk__err *err);

/* Resolves the state root: explicit, else $SPEC_KITTY_HOME, else ~/.spec-kitty. */
sk_status sk__state_root_resolve(const char *explicit_root, char *out, size_t cap, sk__err *err);

/* Creates dir (and parents) with mode 0700 if missing; does not chmod existing. */
sk_status sk__mkdirs_owner(const char *dir, sk__err *err);

/* Joins dir and name into out ("dir/name"). Fails when it does not fit. */
sk_status sk__path_join(char *out, size_t cap, const char *dir, const char *name, sk__err *err);

/*
 * Writes data to path atomically: a temporary file in the same folder with
 * the given mode, fdatasync (when sync_data), rename over path, and fsync
 * of the folder (when sync_data).
 */
sk_status sk__write_file_atomic(const char *path, const void *data, size_t len, int mode,
                                int sync_data, sk__err *err);

/*
 * Reads fd to its end into a malloc'd NUL-terminated *out (path names it in
 * messages). max > 0 refuses more than about max bytes (SK_ERR_CONFIG "too
 * large"). A failure wipes what was read: credentials go through here.
 */
sk_status sk__read_fd(int fd, const char *path, size_t max, char **out, size_t *len, sk__err *err);

/* The state files (sync.json, clock.json, ...) are a few KiB: a larger one is refused. */
#define SK__STATE_FILE_MAX ((size_t)1 << 20)

/* Reads a whole file (NUL-terminated; symbolic links followed). *out is
   malloc'd. SK_ERR_NOT_FOUND if missing; anything but a regular file (a
   folder, a FIFO, /dev/zero) is refused as sk__open_regular refuses it, and
   more than SK__STATE_FILE_MAX bytes is SK_ERR_CONFIG "too large". */
sk_status sk__read_file(const char *path, char **out, size_t *len, sk__err *err);

/*
 * Reads the lines of fd one at a time, holding at most one line (max bytes,
 * plus its newline) in memory however long the input: a line longer than max
 * is refused by number without reading the rest of it.
 */
typedef struct sk__line_stream {
    int fd;
    const char *name; /* names the input in messages */
    size_t max;       /* longest line accepted, without its newline */
    char *buf;        /* unread bytes are buf[start, end) */
    size_t cap, start, end;
    size_t line_no; /* 1-based number of the line last returned */
    int eof;
} sk__line_stream;

/* A stream of fd's lines of at most max bytes; name is kept, not copied. */
void sk__line_stream_init(sk__line_stream *ls, int fd, const char *name, size_t max);

/*
 * The next line, NUL-terminated in place and without its newline (the last
 * line may lack one); it stays valid until the next call. SK_ERR_NOT_FOUND
 * at the end of the input; SK_ERR_INVALID_EVENT when the line (ls->line_no)
 * is longer than max ("line longer than ..."); SK_ERR_IO, SK_ERR_NOMEM.
 */
sk_status sk__line_stream_next(sk__line_stream *ls, char **line, size_t *len, sk__err *err);
void sk__line_stream_free(sk__line_stream *ls);

/* Writes n bytes as 2n lowercase hex digits and a NUL into out. */
void sk__hex(const void *data, size_t n, char *out);

/* SHA-256 of data as 64 lowercase hex digits (out: 65 bytes). */
void sk__sha256_hex(const void *data, size_t n, char out[65]);

/* v in decimal, written backwards so that it ends just before end (no NUL;
   20 bytes at most); returns its first byte. A tenth of snprintf's cost. */
char *sk__i64_text(int64_t v, char *end);

/* snprintf into a fixed buffer; returns non-zero when it was truncated. */
int sk__fmt(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define SK__ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
/* A macro's value as a string literal: SK__STR(SK__QUEUE_ID_MAX) is "63". */
#define SK__STR_(x) #x
#define SK__STR(x) SK__STR_(x)

#endif
