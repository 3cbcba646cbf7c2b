/* Internal helpers: errors, clocks, paths, atomic files. */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pwd.h>
#include <sha2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Puts the head and the tail of full (len bytes) into msg around "…", cutting no UTF-8
 * character in two. */
static void fit_message(char *msg, size_t cap, const char *full, size_t len)
{
    static const char mark[] = "\xe2\x80\xa6"; /* U+2026 */
    size_t head = (cap - sizeof mark) / 2;
    const char *tail = full + len - head;
    while (head > 0 && ((unsigned char)full[head] & 0xC0) == 0x80)
        head--;
    while (((unsigned char)*tail & 0xC0) == 0x80)
        tail++;
    snprintf(msg, cap, "%.*s%s%s", (int)head, full, mark, tail);
}

void sk__fit_text(char *dst, size_t cap, const char *src)
{
    size_t len = strlen(src);
    if (len < cap)
        memcpy(dst, src, len + 1);
    else
        fit_message(dst, cap, src, len);
}

sk_status sk__fail(sk__err *err, sk_status status, const char *fmt, ...)
{
    if (!err)
        return status;
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    if (n >= (int)sizeof err->msg) { /* the end says what is wrong: keep it */
        char *full = malloc((size_t)n + 1);
        if (full && vsnprintf(full, (size_t)n + 1, fmt, again) == n)
            fit_message(err->msg, sizeof err->msg, full, (size_t)n);
        free(full);
    }
    va_end(again);
    va_end(ap);
    return status;
}

void sk__err_clear(sk__err *err)
{
    if (err)
        err->msg[0] = '\0';
}

int sk__fmt(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= cap;
}

char *sk__i64_text(int64_t v, char *end)
{
    /* Negative numbers are built from negative remainders: INT64_MIN has no positive twin. */
    int64_t rest = v;
    do {
        int64_t r = rest % 10;
        *--end = (char)('0' + (r < 0 ? -r : r));
        rest /= 10;
    } while (rest != 0);
    if (v < 0)
        *--end = '-';
    return end;
}

void sk__hex(const void *data, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

void sk__sha256_hex(const void *data, size_t n, char out[65])
{
    SHA2_CTX ctx;
    uint8_t md[SHA256_DIGEST_LENGTH];
    SHA256Init(&ctx);
    SHA256Update(&ctx, data, n);
    SHA256Final(md, &ctx);
    sk__hex(md, sizeof md, out);
}

int64_t sk__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sk__mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sk__sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int sk__grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 1;
    size_t ncap = *cap ? *cap * 2 : 64;
    while (ncap < need)
        ncap *= 2;
    void *p = realloc(*arr, ncap * elem);
    if (!p)
        return 0;
    *arr = p;
    *cap = ncap;
    return 1;
}

struct timespec sk__deadline_in(clockid_t clock, int64_t ms)
{
    struct timespec t;
    clock_gettime(clock, &t);
    t.tv_sec += (time_t)(ms / 1000);
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

void sk__iso8601_ms(int64_t wall_ms, char *buf, size_t cap)
{
    time_t secs = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(wall_ms % 1000));
}

sk_status sk__random_bytes(void *buf, size_t n, sk__err *err)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return sk__fail(err, SK_ERR_IO, "getrandom: %s", strerror(errno));
        }
        p += got;
        n -= (size_t)got;
    }
    return SK_OK;
}

sk_status sk__path_join(char *out, size_t cap, const char *dir, const char *name, sk__err *err)
{
    if (sk__fmt(out, cap, "%s/%s", dir, name))
        return sk__fail(err, SK_ERR_USAGE, "path too long: %s/%s", dir, name);
    return SK_OK;
}

sk_status sk__state_root_resolve(const char *explicit_root, char *out, size_t cap, sk__err *err)
{
    const char *root = explicit_root;
    if (!root || !*root)
        root = getenv("SPEC_KITTY_HOME");
    if (root && *root) {
        if (sk__fmt(out, cap, "%s", root))
            return sk__fail(err, SK_ERR_USAGE, "state root path too long: %s", root);
        return SK_OK;
    }
    const char *home = getenv("HOME");
    if (!home || !*home) {
        struct passwd *pw = getpwuid(getuid());
        home = pw ? pw->pw_dir : NULL;
    }
    if (!home)
        return sk__fail(err, SK_ERR_CONFIG, "cannot find the home folder: set SPEC_KITTY_HOME");
    return sk__path_join(out, cap, home, ".spec-kitty", err);
}

sk_status sk__mkdirs_owner(const char *dir, sk__err *err)
{
    char buf[4096];
    if (sk__fmt(buf, sizeof buf, "%s", dir))
        return sk__fail(err, SK_ERR_USAGE, "path too long: %s", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return sk__fail(err, SK_ERR_IO, "cannot create %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0700) != 0 && errno != EEXIST)
        return sk__fail(err, SK_ERR_IO, "cannot create %s: %s", buf, strerror(errno));
    struct stat st;
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
        return sk__fail(err, SK_ERR_IO, "%s is not a folder", buf);
    return SK_OK;
}

sk_status sk__fsync_path(const char *path, sk__err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sk__fail(err, SK_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    if (rc != 0)
        return sk__fail(err, SK_ERR_IO, "fsync %s: %s", path, strerror(saved));
    return SK_OK;
}

static sk_status fsync_dir_of(const char *path, sk__err *err)
{
    char copy[4096];
    if (sk__fmt(copy, sizeof copy, "%s", path))
        return sk__fail(err, SK_ERR_USAGE, "path too long: %s", path);
    return sk__fsync_path(dirname(copy), err);
}

sk_status sk__write_file_atomic(const char *path, const void *data, size_t len, int mode,
                                int sync_data, sk__err *err)
{
    char tmp[4200];
    unsigned char rnd[6];
    if (sk__random_bytes(rnd, sizeof rnd, err) != SK_OK)
        return SK_ERR_IO;
    if (sk__fmt(tmp, sizeof tmp, "%s.tmp-%02x%02x%02x%02x%02x%02x", path, rnd[0], rnd[1], rnd[2],
                rnd[3], rnd[4], rnd[5]))
        return sk__fail(err, SK_ERR_USAGE, "path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return sk__fail(err, SK_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int saved = errno;
            close(fd);
            unlink(tmp);
            return sk__fail(err, SK_ERR_IO, "cannot write %s: %s", path, strerror(saved));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fchmod(fd, (mode_t)mode) != 0 || (sync_data && fdatasync(fd) != 0)) {
        int saved = errno;
        close(fd);
        unlink(tmp);
        return sk__fail(err, SK_ERR_IO, "cannot write %s: %s", path, strerror(saved));
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        int saved = errno;
        unlink(tmp);
        return sk__fail(err, SK_ERR_IO, "cannot replace %s: %s", path, strerror(saved));
    }
    return sync_data ? fsync_dir_of(path, err) : SK_OK;
}

sk_status sk__read_fd(int fd, const char *path, size_t max, char **out, size_t *len, sk__err *err)
{
    *out = NULL;
    size_t cap = 4096, used = 0;
    char *buf = malloc(cap);
    if (!buf)
        return sk__fail(err, SK_ERR_NOMEM, "out of memory reading %s", path);
    for (;;) {
        if (used + 1 >= cap) {
            char *grown = !max || cap < max ? realloc(buf, cap * 2) : NULL;
            if (!grown) {
                explicit_bzero(buf, used);
                free(buf);
                return max && cap >= max
                           ? sk__fail(err, SK_ERR_CONFIG, "%s: too large", path)
                           : sk__fail(err, SK_ERR_NOMEM, "out of memory reading %s", path);
            }
            buf = grown;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + used, cap - used - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int saved = errno;
            explicit_bzero(buf, used); /* it may hold a secret: leave no copy behind */
            free(buf);
            return sk__fail(err, SK_ERR_IO, "cannot read %s: %s", path, strerror(saved));
        }
        if (r == 0)
            break;
        used += (size_t)r;
    }
    buf[used] = '\0';
    *out = buf;
    if (len)
        *len = used;
    return SK_OK;
}

/* sk__open_regular, with extra open flags (O_NOFOLLOW there). O_NONBLOCK: a FIFO
   must not block the open; regular files ignore it. */
static sk_status open_regular(const char *path, int flags, int *fd_out, struct stat *sb,
                              sk__err *err)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | flags);
    if (fd < 0 && errno == ENOENT)
        return sk__fail(err, SK_ERR_NOT_FOUND, "%s: no such file", path);
    if (fd < 0 && errno == ELOOP && (flags & O_NOFOLLOW))
        return sk__fail(err, SK_ERR_PERMISSION, "%s: a symbolic link: refused", path);
    if (fd < 0)
        return sk__fail(err, SK_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    if (fstat(fd, sb) != 0 || !S_ISREG(sb->st_mode)) {
        close(fd);
        return sk__fail(err, SK_ERR_PERMISSION, "%s: not a regular file: refused", path);
    }
    *fd_out = fd;
    return SK_OK;
}

sk_status sk__read_file(const char *path, char **out, size_t *len, sk__err *err)
{
    *out = NULL;
    int fd = -1;
    struct stat sb;
    sk_status st = open_regular(path, 0, &fd, &sb, err); /* a FIFO or /dev/zero: refused */
    if (st != SK_OK)
        return st;
    st = sk__read_fd(fd, path, SK__STATE_FILE_MAX, out, len, err);
    close(fd);
    return st;
}

void sk__line_stream_init(sk__line_stream *ls, int fd, const char *name, size_t max)
{
    *ls = (sk__line_stream){.fd = fd, .name = name, .max = max};
}

/* Hands out buf[start, start+len) as a line and moves past it and its newline. */
static sk_status line_stream_take(sk__line_stream *ls, size_t len, size_t skip, char **line,
                                  size_t *out_len, sk__err *err)
{
    ls->line_no++;
    if (len > ls->max && ls->max % (1u << 20) == 0)
        return sk__fail(err, SK_ERR_INVALID_EVENT, "line longer than %zu MiB", ls->max >> 20);
    if (len > ls->max)
        return sk__fail(err, SK_ERR_INVALID_EVENT, "line longer than %zu bytes", ls->max);
    *line = ls->buf + ls->start;
    (*line)[len] = '\0';
    *out_len = len;
    ls->start += len + skip;
    return SK_OK;
}

/* Makes room for more input: drops what was handed out, grows up to max + 2
 * bytes (a whole line, its newline and a NUL). */
static sk_status line_stream_room(sk__line_stream *ls, sk__err *err)
{
    if (ls->start > 0) { /* buf is NULL before the first read */
        memmove(ls->buf, ls->buf + ls->start, ls->end - ls->start);
        ls->end -= ls->start;
        ls->start = 0;
    }
    if (ls->end + 1 < ls->cap)
        return SK_OK;
    size_t limit = ls->max + 2, cap = ls->cap ? ls->cap * 2 : 65536;
    char *grown = realloc(ls->buf, cap < limit ? cap : limit);
    if (!grown)
        return sk__fail(err, SK_ERR_NOMEM, "out of memory reading %s", ls->name);
    ls->buf = grown;
    ls->cap = cap < limit ? cap : limit;
    return SK_OK;
}

sk_status sk__line_stream_next(sk__line_stream *ls, char **line, size_t *len, sk__err *err)
{
    for (;;) {
        size_t pending = ls->end - ls->start;
        char *nl = pending ? memchr(ls->buf + ls->start, '\n', pending) : NULL;
        if (nl)
            return line_stream_take(ls, (size_t)(nl - (ls->buf + ls->start)), 1, line, len, err);
        if (ls->eof && pending == 0)
            return SK_ERR_NOT_FOUND;
        if (ls->eof || pending > ls->max) /* the last line, or one already too long */
            return line_stream_take(ls, pending, 0, line, len, err);
        sk_status st = line_stream_room(ls, err);
        if (st != SK_OK)
            return st;
        ssize_t r = read(ls->fd, ls->buf + ls->end, ls->cap - ls->end - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return sk__fail(err, SK_ERR_IO, "cannot read %s: %s", ls->name, strerror(errno));
        ls->eof = r == 0;
        ls->end += (size_t)r;
    }
}

void sk__line_stream_free(sk__line_stream *ls)
{
    free(ls->buf);
    ls->buf = NULL;
}

const char *sk_strerror(sk_status status)
{
    static const char *const names[] = {
        [SK_OK] = "ok",
        [SK_ERR_USAGE] = "usage error",
        [SK_ERR_CONFIG] = "configuration error",
        [SK_ERR_IO] = "I/O error",
        [SK_ERR_DB] = "queue database error",
        [SK_ERR_INVALID_EVENT] = "invalid event",
        [SK_ERR_QUEUE_FULL] = "queue full",
        [SK_ERR_NOMEM] = "out of memory",
        [SK_ERR_PLUGIN] = "transport plugin error",
        [SK_ERR_AUTH] = "not authenticated",
        [SK_ERR_SESSION_EXPIRED] = "session expired",
        [SK_ERR_TRANSPORT] = "transport failure",
        [SK_ERR_PROTOCOL] = "protocol mismatch",
        [SK_ERR_BUSY] = "busy",
        [SK_ERR_NOT_FOUND] = "not found",
        [SK_ERR_CANCELLED] = "cancelled",
        [SK_ERR_PERMISSION] = "unsafe permissions",
        [SK_ERR_INTERNAL] = "internal error",
    };
    if ((unsigned)status < SK__ARRAY_LEN(names) && names[status])
        return names[status];
    return "unknown status";
}

sk_status sk__open_regular(const char *path, int *fd_out, struct stat *sb, sk__err *err)
{
    return open_regular(path, O_NOFOLLOW, fd_out, sb, err);
}
