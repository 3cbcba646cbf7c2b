/*
 * file-drop transport: each batch becomes one bundle in an outbox folder, for
 * machines with no network path to the server. A bundle is a folder
 * <outbox>/<bundle-id>.skb/ holding events.ndjson.gz (the envelopes, one per
 * line, gzip) and manifest.json (count, first/last event id, sha256 of the
 * data file). It is built in <outbox>/.tmp-<bundle-id>/, fsynced and renamed,
 * so a reader sees a whole bundle or none. The writer holds a lock on its temp
 * folder, so the temp folder of a killed writer (nobody's lock) is told apart from
 * one being written, and removed at the next create. README.md is the format's spec;
 * host/bundle.c reads it on the connected machine.
 *
 * Built against the public headers only (include/spec-kitty/transport.h and
 * bundle_format.h, which it shares with the reader): the host's internal
 * helpers are not reachable from here, which is why this file has its own
 * small ones.
 */
#include <spec-kitty/bundle_format.h>
#include <spec-kitty/transport.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <libdeflate.h>

#define FD_NAME "file-drop"
#define FD_VERSION "1.0.0"

/* Option defaults; README.md "Options" documents each key. */
#define FD_DEFAULT_GZIP_LEVEL 6
#define FD_DEFAULT_FSYNC 1

/* Where the file system has no locks (flock fails), a temp folder this old is taken
 * for the leftover of a killed writer. */
#define FD_STALE_TMP_SECONDS 3600
/* Events written between two looks at cancel() and the deadline. */
#define FD_CHECK_EVERY 128
/* Envelopes larger than this are refused. */
#define FD_MAX_EVENT_BYTES (256u * 1024 * 1024)
#define FD_MAX_EVENT_ID 128
/* host/bundle.h sk__bundle_info holds up to this many chars of node_id. */
#define FD_MAX_NODE_ID 64
/* A JSON string literal of n chars takes at most 6n + 3 bytes (\u00XX escapes). */
#define FD_JSON_CAP(n) (6 * (n) + 3)
/* First sizes of a part's buffers; both grow to what a batch needs. */
#define FD_IN_CAP (256 * 1024)
#define FD_OUT_CAP (64 * 1024)
#define FD_MAX_THREADS 16
#define FD_DEFAULT_MAX_THREADS 4
/* Below this many events per part a thread costs more than it saves. */
#define FD_MIN_PART_EVENTS 200
/* "20261126T094608123Z-9f3ac1d2": 19 chars of UTC time, '-', 8 hex. */
#define FD_ID_TIME_LEN 19
#define FD_ID_CAP 48
#define FD_PATH_CAP 4096

typedef enum fd_rc { FD_OK = 0, FD_ERR, FD_CANCELLED, FD_LATE } fd_rc;

typedef struct fd_plugin fd_plugin;

/* One slice of a batch, compressed into its own gzip member (on its own
 * thread when there are several). The buffers live as long as the plugin.
 * Whole-buffer libdeflate: the slice's lines are gathered, then compressed in
 * one call, ~1.5-2x faster than zlib's deflate at the same level (bench/gzip). */
typedef struct fd_part {
    fd_plugin *p;
    const sk_batch *batch;
    const sk_batch_result *result;
    uint32_t from, to; /* events [from, to) */
    struct libdeflate_compressor *zc;
    unsigned char *in; /* the slice's envelopes, each + '\n' */
    size_t in_len, in_cap;
    unsigned char *out; /* the finished gzip member */
    size_t out_len, out_cap;
    uint64_t raw_bytes;
    fd_rc rc;
    char detail[SK_BATCH_DETAIL_MAX];
} fd_part;

struct fd_plugin {
    const sk_host_api *host;
    char outbox[FD_PATH_CAP];
    const char *node_id; /* host-owned, lives as long as we do; may be NULL */
    int gzip_level;
    int fsync;
    int threads;
    atomic_int cancelled;
    int64_t last_id_ms; /* bundle ids carry strictly increasing ms: names sort in order */
    EVP_MD_CTX *md;
    fd_part parts[FD_MAX_THREADS];
};

/* One bundle being written. */
typedef struct fd_bundle {
    const char *outbox; /* for messages */
    char id[FD_ID_CAP];
    char tmp_name[FD_ID_CAP + 8];
    char final_name[FD_ID_CAP + 8];
    int64_t created_ms;
    int outbox_fd, data_fd, manifest_fd;
    int tmp_fd; /* the temp folder, locked (LOCK_EX) from its creation until closed */
    int tmp_made, committed;
    int parts; /* compressed parts (p->parts[0..parts-1]) */
    uint64_t data_bytes, raw_bytes;
    uint32_t count;
    const char *first_id, *last_id;
    unsigned char sha[32];
} fd_bundle;

/* Writes a one-line message into detail (SK_BATCH_DETAIL_MAX) and returns FD_ERR. */
__attribute__((format(printf, 2, 3))) static fd_rc fd_fail(char *detail, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, SK_BATCH_DETAIL_MAX, fmt, ap);
    va_end(ap);
    return FD_ERR;
}

static int64_t fd_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* UTC "YYYYMMDDTHHMMSSmmmZ" (FD_ID_TIME_LEN chars): sorts like the time, and
 * has no ':' so bundles copy onto FAT/exFAT sticks. */
static void fd_id_time(int64_t ms, char out[FD_ID_CAP])
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(out, FD_ID_CAP, "%Y%m%dT%H%M%S", &tm);
    snprintf(out + n, FD_ID_CAP - n, "%03dZ", (int)(ms % 1000));
}

/* The time part of a bundle name back in ms, or -1 when it has none. */
static int64_t fd_id_parse_ms(const char *name)
{
    int y, mo, d, h, mi, s, ms, used = 0;
    if (sscanf(name, "%4d%2d%2dT%2d%2d%2d%3dZ%n", &y, &mo, &d, &h, &mi, &s, &ms, &used) != 7 ||
        used != FD_ID_TIME_LEN)
        return -1;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = s};
    time_t secs = timegm(&tm);
    return secs < 0 ? -1 : (int64_t)secs * 1000 + ms;
}

/* Next bundle id: time strictly after the last one (even if the clock steps
 * back), plus 32 random bits so two processes sharing an outbox never clash. */
static void fd_next_id(fd_plugin *p, fd_bundle *b)
{
    int64_t now = fd_wall_ms();
    int64_t ms = now > p->last_id_ms ? now : p->last_id_ms + 1;
    p->last_id_ms = ms;
    b->created_ms = now;
    uint32_t rnd;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        rnd = (uint32_t)getpid() ^ (uint32_t)now;
    char t[FD_ID_CAP];
    fd_id_time(ms, t);
    snprintf(b->id, sizeof b->id, "%.19s-%08x", t, (unsigned)rnd);
    snprintf(b->tmp_name, sizeof b->tmp_name, SK_BUNDLE_TMP_PREFIX "%s", b->id);
    snprintf(b->final_name, sizeof b->final_name, "%s" SK_BUNDLE_SUFFIX, b->id);
}

/* Removes a temp folder of a writer that died (the two files we put there). */
static void fd_remove_tmp(int outbox_fd, const char *tmp_name)
{
    char path[FD_ID_CAP + 64 + 256];
    snprintf(path, sizeof path, "%s/" SK_BUNDLE_DATA_FILE, tmp_name);
    unlinkat(outbox_fd, path, 0);
    snprintf(path, sizeof path, "%s/" SK_BUNDLE_MANIFEST_FILE, tmp_name);
    unlinkat(outbox_fd, path, 0);
    unlinkat(outbox_fd, tmp_name, AT_REMOVEDIR);
}

/* True when the temp folder name was left by a writer that died: nobody holds its
 * lock (the kernel drops a lock with its process). Where locks fail, by age. */
static int fd_tmp_orphaned(int outbox_fd, const char *name, time_t now)
{
    struct stat st;
    int fd = openat(outbox_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    int orphaned = flock(fd, LOCK_EX | LOCK_NB) == 0 ||
                   (errno != EWOULDBLOCK && st.st_mtime + FD_STALE_TMP_SECONDS < now);
    close(fd);
    return orphaned;
}

/* At create: learns the newest bundle's time (so ids keep increasing across
 * restarts and clock steps) and removes the temp folders of dead writers. Temp
 * folders are judged only under an exclusive lock on the outbox, which writers
 * hold shared from mkdir until they hold their folder's lock (fd_bundle_begin):
 * otherwise a folder just made would look dead. Best effort. */
static void fd_scan_outbox(fd_plugin *p)
{
    DIR *d = opendir(p->outbox);
    if (!d)
        return;
    time_t now = time(NULL);
    int judge = flock(dirfd(d), LOCK_EX | LOCK_NB) == 0 || errno != EWOULDBLOCK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, SK_BUNDLE_TMP_PREFIX, strlen(SK_BUNDLE_TMP_PREFIX)) == 0) {
            if (judge && fd_tmp_orphaned(dirfd(d), e->d_name, now))
                fd_remove_tmp(dirfd(d), e->d_name);
        } else if (sk_bundle_is_name(e->d_name)) {
            int64_t ms = fd_id_parse_ms(e->d_name);
            if (ms > p->last_id_ms)
                p->last_id_ms = ms;
        }
    }
    closedir(d); /* drops the outbox lock */
}

/* Syncs the folder that holds path, so that a new entry there (the outbox
 * we just created) survives a power loss like the bundles inside it. */
static fd_rc fd_sync_parent(const char *path, char *detail)
{
    char parent[FD_PATH_CAP];
    snprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    if (slash == parent)
        slash[1] = '\0'; /* "/outbox" lives in "/" */
    else if (slash)
        *slash = '\0';
    else
        snprintf(parent, sizeof parent, ".");
    int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = fd < 0 ? -1 : fsync(fd);
    int saved = errno;
    if (fd >= 0)
        close(fd);
    if (rc != 0)
        return fd_fail(detail, "cannot sync %s after creating the outbox: %s", parent,
                       strerror(saved));
    return FD_OK;
}

/* Opens the outbox, creating it (0700, parent must exist) when missing. */
static fd_rc fd_open_outbox(fd_plugin *p, int *out, char *detail)
{
    int fd = open(p->outbox, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        if (mkdir(p->outbox, 0700) != 0 && errno != EEXIST)
            return fd_fail(detail, "cannot create outbox %s: %s", p->outbox, strerror(errno));
        if (p->fsync && fd_sync_parent(p->outbox, detail) != FD_OK)
            return FD_ERR;
        fd = open(p->outbox, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (fd < 0)
        return fd_fail(detail, "cannot open outbox %s: %s", p->outbox, strerror(errno));
    *out = fd;
    return FD_OK;
}

/* Looks at cancel() and the batch deadline (<= 0: none). */
static fd_rc fd_check(fd_plugin *p, const sk_batch *batch, char *detail)
{
    if (atomic_load(&p->cancelled)) {
        fd_fail(detail, "cancelled before the bundle was durable");
        return FD_CANCELLED;
    }
    if (batch->deadline_ms > 0 && p->host->now_ms(p->host->host_ctx) >= batch->deadline_ms) {
        fd_fail(detail, "deadline reached before the bundle was durable");
        return FD_LATE;
    }
    return FD_OK;
}

static fd_rc fd_write_all(int fd, const void *data, size_t len, const fd_bundle *b,
                          const char *file, char *detail)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return fd_fail(detail, "cannot write %s/%s/%s: %s", b->outbox, b->tmp_name, file,
                           strerror(errno));
        p += w;
        len -= (size_t)w;
    }
    return FD_OK;
}

/* Syncs (when asked) and closes a file of the bundle; *fd is -1 after. */
static fd_rc fd_close_file(fd_plugin *p, int *fd, const fd_bundle *b, const char *file,
                           char *detail)
{
    int rc = p->fsync ? fdatasync(*fd) : 0;
    int saved = errno;
    if (close(*fd) != 0 && rc == 0) {
        rc = -1;
        saved = errno;
    }
    *fd = -1;
    if (rc != 0)
        return fd_fail(detail, "cannot sync %s/%s/%s: %s", b->outbox, b->tmp_name, file,
                       strerror(saved));
    return FD_OK;
}

/* Creates the temp folder, locked as ours (see fd_scan_outbox), and opens its
 * data file. Lock failures are ignored: then only age marks a folder dead. */
static fd_rc fd_bundle_begin(fd_plugin *p, fd_bundle *b, char *detail)
{
    if (fd_open_outbox(p, &b->outbox_fd, detail) != FD_OK)
        return FD_ERR;
    fd_next_id(p, b);
    (void)flock(b->outbox_fd, LOCK_SH);
    int made = mkdirat(b->outbox_fd, b->tmp_name, 0700) == 0;
    int saved = errno;
    if (made) {
        b->tmp_fd = openat(b->outbox_fd, b->tmp_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (b->tmp_fd >= 0)
            (void)flock(b->tmp_fd, LOCK_EX | LOCK_NB);
    }
    (void)flock(b->outbox_fd, LOCK_UN);
    if (!made)
        return fd_fail(detail, "cannot create %s/%s: %s", p->outbox, b->tmp_name, strerror(saved));
    b->tmp_made = 1;
    if (b->tmp_fd < 0)
        return fd_fail(detail, "cannot open %s/%s: %s", p->outbox, b->tmp_name, strerror(errno));
    char path[sizeof b->tmp_name + sizeof SK_BUNDLE_DATA_FILE + 1];
    snprintf(path, sizeof path, "%s/" SK_BUNDLE_DATA_FILE, b->tmp_name);
    b->data_fd = openat(b->outbox_fd, path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (b->data_fd < 0)
        return fd_fail(detail, "cannot create %s/%s: %s", p->outbox, path, strerror(errno));
    return FD_OK;
}

/* Grows *buf (capacity *cap) to hold at least need bytes. */
static int fd_reserve(unsigned char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap * 2 > need ? *cap * 2 : need;
    unsigned char *grown = realloc(*buf, ncap);
    if (!grown)
        return -1;
    *buf = grown;
    *cap = ncap;
    return 0;
}

/* Appends bytes to the part's input. */
static fd_rc fd_part_feed(fd_part *pt, const void *data, size_t len)
{
    if (fd_reserve(&pt->in, &pt->in_cap, pt->in_len + len) != 0)
        return fd_fail(pt->detail, "out of memory compressing the batch");
    memcpy(pt->in + pt->in_len, data, len);
    pt->in_len += len;
    pt->raw_bytes += len;
    return FD_OK;
}

/* Compresses the part's input into one gzip member in pt->out. */
static fd_rc fd_part_compress(fd_part *pt)
{
    size_t bound = libdeflate_gzip_compress_bound(pt->zc, pt->in_len);
    if (fd_reserve(&pt->out, &pt->out_cap, bound) != 0)
        return fd_fail(pt->detail, "out of memory compressing the batch");
    pt->out_len = libdeflate_gzip_compress(pt->zc, pt->in, pt->in_len, pt->out, pt->out_cap);
    return pt->out_len ? FD_OK : fd_fail(pt->detail, "gzip failed (output past its bound)");
}

/* Compresses the part's screened-in envelopes, each plus '\n', into one
 * gzip member; sets pt->rc. Looks at cancel/deadline now and then. */
static void fd_part_run(fd_part *pt)
{
    pt->in_len = pt->out_len = 0;
    pt->raw_bytes = 0;
    pt->rc = FD_OK;
    for (uint32_t i = pt->from; i < pt->to && pt->rc == FD_OK; i++) {
        if ((i - pt->from) % FD_CHECK_EVERY == FD_CHECK_EVERY - 1 &&
            (pt->rc = fd_check(pt->p, pt->batch, pt->detail)) != FD_OK)
            return;
        if (pt->result->events[i].outcome != SK_OUTCOME_TRANSIENT)
            continue;
        const sk_event *ev = &pt->batch->events[i];
        pt->rc = fd_part_feed(pt, ev->json, ev->json_len);
        if (pt->rc == FD_OK)
            pt->rc = fd_part_feed(pt, "\n", 1);
    }
    if (pt->rc == FD_OK)
        pt->rc = fd_part_compress(pt);
}

static void *fd_part_thread(void *arg)
{
    fd_part_run(arg);
    return NULL;
}

/* Starts a helper thread for a part with every signal blocked, so the host's
 * signal handling keeps to its own threads. Returns 0 on success. */
static int fd_part_start(fd_part *pt, pthread_t *tid)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(tid, NULL, fd_part_thread, pt);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* Splits the batch into up to p->threads parts and compresses them in
 * parallel (part 0 on the calling thread). *parts gets the number of parts;
 * returns the first failing part's rc (its detail copied) or FD_OK. */
static fd_rc fd_compress(fd_plugin *p, const sk_batch *batch, const sk_batch_result *result,
                         char *detail, int *parts)
{
    uint32_t n = batch->count;
    int k = (int)(n / FD_MIN_PART_EVENTS) < p->threads ? (int)(n / FD_MIN_PART_EVENTS) : p->threads;
    if (k < 1)
        k = 1;
    pthread_t tids[FD_MAX_THREADS];
    int started[FD_MAX_THREADS] = {0};
    for (int j = 0; j < k; j++) {
        fd_part *pt = &p->parts[j];
        pt->batch = batch;
        pt->result = result;
        pt->from = (uint32_t)((uint64_t)n * (uint64_t)j / (uint64_t)k);
        pt->to = (uint32_t)((uint64_t)n * (uint64_t)(j + 1) / (uint64_t)k);
        if (j > 0)
            started[j] = fd_part_start(pt, &tids[j]) == 0;
    }
    fd_part_run(&p->parts[0]);
    for (int j = 1; j < k; j++) {
        if (started[j])
            pthread_join(tids[j], NULL);
        else
            fd_part_run(&p->parts[j]); /* no thread to be had: do it here */
    }
    *parts = k;
    for (int j = 0; j < k; j++)
        if (p->parts[j].rc != FD_OK) {
            snprintf(detail, SK_BATCH_DETAIL_MAX, "%s", p->parts[j].detail);
            return p->parts[j].rc;
        }
    return FD_OK;
}

/* Why an event cannot be one NDJSON line, or NULL when it can. */
static const char *fd_event_problem(const sk_event *ev)
{
    if (!ev->event_id || !ev->event_id[0] || strlen(ev->event_id) > FD_MAX_EVENT_ID)
        return "file-drop: event_id missing or too long";
    if (!ev->json || ev->json_len < 2 || ev->json[0] != '{' || ev->json[ev->json_len - 1] != '}')
        return "file-drop: envelope is not a JSON object";
    if (ev->json_len > FD_MAX_EVENT_BYTES)
        return "file-drop: envelope too large";
    if (memchr(ev->json, '\n', ev->json_len))
        return "file-drop: envelope contains a line break";
    return NULL;
}

/* Parks events that would break the bundle's line format; returns how many
 * are left to write. The rest keep outcome TRANSIENT until the commit. */
static uint32_t fd_screen(const sk_batch *batch, sk_batch_result *result)
{
    uint32_t ok = 0;
    for (uint32_t i = 0; i < batch->count; i++) {
        sk_event_result *r = &result->events[i];
        const char *why = fd_event_problem(&batch->events[i]);
        r->outcome = why ? SK_OUTCOME_REJECTED_PERMANENT : SK_OUTCOME_TRANSIENT;
        snprintf(r->message, sizeof r->message, "%s", why ? why : "");
        ok += why == NULL;
    }
    return ok;
}

/* Writes events.ndjson.gz: the compressed parts' gzip members in order (one gzip
 * stream of several members, RFC 1952), hashed as written. fd_commit syncs it. */
static fd_rc fd_write_events(fd_plugin *p, fd_bundle *b, const sk_batch *batch,
                             const sk_batch_result *result, char *detail)
{
    EVP_DigestInit_ex(p->md, EVP_sha256(), NULL);
    for (int j = 0; j < b->parts; j++) {
        const fd_part *pt = &p->parts[j];
        if (fd_write_all(b->data_fd, pt->out, pt->out_len, b, SK_BUNDLE_DATA_FILE, detail) != FD_OK)
            return FD_ERR;
        EVP_DigestUpdate(p->md, pt->out, pt->out_len);
        b->data_bytes += pt->out_len;
        b->raw_bytes += pt->raw_bytes;
    }
    EVP_DigestFinal_ex(p->md, b->sha, NULL);
    for (uint32_t i = 0; i < batch->count; i++) {
        if (result->events[i].outcome != SK_OUTCOME_TRANSIENT)
            continue;
        if (!b->first_id)
            b->first_id = batch->events[i].event_id;
        b->last_id = batch->events[i].event_id;
        b->count++;
    }
    return FD_OK;
}

/* Writes s as a JSON string literal (or null) into out; -1 when it does not fit. */
static int fd_json_string(char *out, size_t cap, const char *s)
{
    if (!s)
        return snprintf(out, cap, "null") >= (int)cap ? -1 : 0;
    size_t n = 0;
    if (cap < 3)
        return -1;
    out[n++] = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        int el;
        if (c == '"' || c == '\\')
            el = snprintf(esc, sizeof esc, "\\%c", c);
        else if (c < 0x20)
            el = snprintf(esc, sizeof esc, "\\u%04x", c);
        else
            el = snprintf(esc, sizeof esc, "%c", c);
        if (n + (size_t)el + 2 > cap)
            return -1;
        memcpy(out + n, esc, (size_t)el);
        n += (size_t)el;
    }
    out[n++] = '"';
    out[n] = '\0';
    return 0;
}

/* Renders manifest.json (README.md "Manifest"). */
static fd_rc fd_render_manifest(const fd_plugin *p, const fd_bundle *b, char *text, size_t cap,
                                char *detail)
{
    char node[FD_JSON_CAP(FD_MAX_NODE_ID)], first[FD_JSON_CAP(FD_MAX_EVENT_ID)];
    char last[sizeof first], created[32], hex[65];
    if (fd_json_string(node, sizeof node, p->node_id) ||
        fd_json_string(first, sizeof first, b->first_id) ||
        fd_json_string(last, sizeof last, b->last_id))
        return fd_fail(detail, "manifest of %s: a field does not fit", b->id);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", b->sha[i]);
    time_t secs = (time_t)(b->created_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t cn = strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(created + cn, sizeof created - cn, ".%03dZ", (int)(b->created_ms % 1000));
    int n = snprintf(text, cap,
                     "{\n"
                     "  \"format\": \"" SK_BUNDLE_FORMAT "\",\n"
                     "  \"format_version\": %d,\n"
                     "  \"bundle_id\": \"%s\",\n"
                     "  \"node_id\": %s,\n"
                     "  \"created_at\": \"%s\",\n"
                     "  \"producer\": \"" FD_NAME " " FD_VERSION "\",\n"
                     "  \"event_count\": %u,\n"
                     "  \"first_event_id\": %s,\n"
                     "  \"last_event_id\": %s,\n"
                     "  \"data_file\": \"" SK_BUNDLE_DATA_FILE "\",\n"
                     "  \"data_bytes\": %llu,\n"
                     "  \"data_sha256\": \"%s\",\n"
                     "  \"uncompressed_bytes\": %llu\n"
                     "}\n",
                     SK_BUNDLE_FORMAT_VERSION, b->id, node, created, (unsigned)b->count, first, last,
                     (unsigned long long)b->data_bytes, hex, (unsigned long long)b->raw_bytes);
    if (n < 0 || (size_t)n >= cap)
        return fd_fail(detail, "manifest of %s does not fit", b->id);
    return FD_OK;
}

static fd_rc fd_write_manifest(fd_plugin *p, fd_bundle *b, char *detail)
{
    char text[4096]; /* fits the widest fields (FD_JSON_CAP) with room to spare */
    if (fd_render_manifest(p, b, text, sizeof text, detail) != FD_OK)
        return FD_ERR;
    char path[sizeof b->tmp_name + sizeof SK_BUNDLE_MANIFEST_FILE + 1];
    snprintf(path, sizeof path, "%s/" SK_BUNDLE_MANIFEST_FILE, b->tmp_name);
    b->manifest_fd = openat(b->outbox_fd, path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (b->manifest_fd < 0)
        return fd_fail(detail, "cannot create %s/%s: %s", p->outbox, path, strerror(errno));
    return fd_write_all(b->manifest_fd, text, strlen(text), b, SK_BUNDLE_MANIFEST_FILE, detail);
}

/* Makes the bundle visible and durable: sync both files (together, so one
 * journal commit tends to cover both), the temp folder (their entries), rename
 * it to its final name, sync the outbox (the rename). */
static fd_rc fd_commit(fd_plugin *p, fd_bundle *b, char *detail)
{
    if (fd_close_file(p, &b->data_fd, b, SK_BUNDLE_DATA_FILE, detail) != FD_OK ||
        fd_close_file(p, &b->manifest_fd, b, SK_BUNDLE_MANIFEST_FILE, detail) != FD_OK)
        return FD_ERR;
    if (p->fsync && fsync(b->tmp_fd) != 0)
        return fd_fail(detail, "cannot sync %s/%s: %s", p->outbox, b->tmp_name, strerror(errno));
    if (renameat(b->outbox_fd, b->tmp_name, b->outbox_fd, b->final_name) != 0)
        return fd_fail(detail, "cannot rename %s/%s to %s: %s", p->outbox, b->tmp_name,
                       b->final_name, strerror(errno));
    b->committed = 1;
    /* If this fails the bundle exists but may not survive power loss: its events
     * stay queued and may arrive twice, which the server's dedup absorbs. */
    if (p->fsync && fsync(b->outbox_fd) != 0)
        return fd_fail(detail, "cannot sync outbox %s after writing %s: %s", p->outbox,
                       b->final_name, strerror(errno));
    return FD_OK;
}

/* Closes what is open; removes the temp folder unless it was renamed. */
static void fd_bundle_end(fd_bundle *b)
{
    if (b->data_fd >= 0)
        close(b->data_fd);
    if (b->manifest_fd >= 0)
        close(b->manifest_fd);
    if (b->tmp_made && !b->committed)
        fd_remove_tmp(b->outbox_fd, b->tmp_name);
    if (b->tmp_fd >= 0)
        close(b->tmp_fd); /* after the removal: no scan may take it for a dead writer's */
    if (b->outbox_fd >= 0)
        close(b->outbox_fd);
}

static void fd_set_all(const sk_batch *batch, sk_batch_result *result, int from, int to)
{
    for (uint32_t i = 0; i < batch->count; i++)
        if (from < 0 || result->events[i].outcome == from)
            result->events[i].outcome = to;
}

/* Turns the internal result into outcomes, metrics, a log line and an rc. */
static int fd_finish(fd_plugin *p, const fd_bundle *b, const sk_batch *batch,
                     sk_batch_result *result, fd_rc rc)
{
    const sk_host_api *h = p->host;
    if (rc == FD_OK) {
        fd_set_all(batch, result, SK_OUTCOME_TRANSIENT, SK_OUTCOME_DELIVERED);
        h->metric_add(h->host_ctx, "bundles_written", 1);
        h->metric_add(h->host_ctx, "bytes_sent", (int64_t)b->data_bytes);
        h->log(h->host_ctx, SK_LOG_DEBUG, "wrote %s (%u events, %llu bytes)", b->final_name,
               (unsigned)b->count, (unsigned long long)b->data_bytes);
        return SK_TRANSPORT_OK;
    }
    fd_set_all(batch, result, -1, SK_OUTCOME_TRANSIENT);
    if (rc == FD_CANCELLED)
        return SK_TRANSPORT_CANCELLED;
    h->log(h->host_ctx, SK_LOG_WARN, "batch %llu kept queued: %s",
           (unsigned long long)batch->batch_seq, result->detail);
    return SK_TRANSPORT_FAILED;
}

/* send: one batch -> one durable bundle; DELIVERED only after the outbox
 * fsync. Any failure leaves no visible bundle and every event TRANSIENT. */
static int fd_send(void *self, const sk_batch *batch, sk_batch_result *result)
{
    fd_plugin *p = self;
    result->detail[0] = '\0';
    result->hints = SK_HINT_NONE;
    result->status_code = 0;
    fd_bundle b = {
        .outbox = p->outbox, .outbox_fd = -1, .data_fd = -1, .manifest_fd = -1, .tmp_fd = -1};
    fd_rc rc = fd_check(p, batch, result->detail);
    if (rc != FD_OK)
        return fd_finish(p, &b, batch, result, rc);
    if (fd_screen(batch, result) == 0)
        return SK_TRANSPORT_OK; /* nothing writable: every event was parked */
    /* Compress first, in memory: the temp folder then exists only for the
     * short write, and a cancel during compression touches no file. */
    rc = fd_compress(p, batch, result, result->detail, &b.parts);
    if (rc == FD_OK)
        rc = fd_bundle_begin(p, &b, result->detail);
    if (rc == FD_OK)
        rc = fd_write_events(p, &b, batch, result, result->detail);
    if (rc == FD_OK)
        rc = fd_write_manifest(p, &b, result->detail);
    if (rc == FD_OK)
        rc = fd_check(p, batch, result->detail);
    if (rc == FD_OK)
        rc = fd_commit(p, &b, result->detail);
    fd_bundle_end(&b);
    return fd_finish(p, &b, batch, result, rc);
}

/* cancel: sticky. Any thread; only sets a flag that send looks at. */
static void fd_cancel(void *self)
{
    fd_plugin *p = self;
    atomic_store(&p->cancelled, 1);
}

static void fd_destroy(void *self)
{
    fd_plugin *p = self;
    if (!p)
        return;
    for (int j = 0; j < FD_MAX_THREADS; j++) {
        fd_part *pt = &p->parts[j];
        libdeflate_free_compressor(pt->zc);
        free(pt->in);
        free(pt->out);
    }
    EVP_MD_CTX_free(p->md);
    free(p);
}

/* Resolves the outbox: the option (relative paths under state_root), else
 * <state_root>/outbox. */
static int fd_resolve_outbox(fd_plugin *p, char *err, size_t err_cap)
{
    const sk_host_api *h = p->host;
    const char *opt = h->option_string(h->host_ctx, "outbox", NULL);
    const char *root = h->host_value(h->host_ctx, "state_root");
    int n;
    if (opt && opt[0] == '/')
        n = snprintf(p->outbox, sizeof p->outbox, "%s", opt);
    else if (root && root[0])
        n = snprintf(p->outbox, sizeof p->outbox, "%s/%s", root, opt && opt[0] ? opt : "outbox");
    else {
        snprintf(err, err_cap, "no absolute \"outbox\" option and no state_root");
        return -1;
    }
    if (n < 0 || (size_t)n >= sizeof p->outbox) {
        snprintf(err, err_cap, "outbox path too long");
        return -1;
    }
    return 0;
}

static int fd_read_options(fd_plugin *p, char *err, size_t err_cap)
{
    const sk_host_api *h = p->host;
    if (fd_resolve_outbox(p, err, err_cap) != 0)
        return -1;
    int64_t level = h->option_int(h->host_ctx, "gzip_level", FD_DEFAULT_GZIP_LEVEL);
    if (level < 0 || level > 9) {
        snprintf(err, err_cap, "gzip_level must be 0..9, got %lld", (long long)level);
        return -1;
    }
    p->gzip_level = (int)level;
    p->fsync = h->option_bool(h->host_ctx, "fsync", FD_DEFAULT_FSYNC) != 0;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int64_t dflt = cpus < 1 ? 1 : cpus > FD_DEFAULT_MAX_THREADS ? FD_DEFAULT_MAX_THREADS : cpus;
    int64_t threads = h->option_int(h->host_ctx, "threads", dflt);
    if (threads < 1 || threads > FD_MAX_THREADS) {
        snprintf(err, err_cap, "threads must be 1..%d, got %lld", FD_MAX_THREADS,
                 (long long)threads);
        return -1;
    }
    p->threads = (int)threads;
    p->node_id = h->host_value(h->host_ctx, "node_id");
    if (p->node_id && strlen(p->node_id) > FD_MAX_NODE_ID) {
        snprintf(err, err_cap, "node_id longer than %d characters", FD_MAX_NODE_ID);
        return -1;
    }
    return 0;
}

/* Allocates the compressor state and buffers of every part up front. */
static int fd_parts_init(fd_plugin *p)
{
    for (int j = 0; j < p->threads; j++) {
        fd_part *pt = &p->parts[j];
        pt->p = p;
        pt->in = malloc(FD_IN_CAP);
        pt->in_cap = FD_IN_CAP;
        pt->out = malloc(FD_OUT_CAP);
        pt->out_cap = FD_OUT_CAP;
        pt->zc = libdeflate_alloc_compressor(p->gzip_level);
        if (!pt->in || !pt->out || !pt->zc)
            return -1;
    }
    return 0;
}

/* create: reads the options, prepares the compressor, scans the outbox.
 * The outbox itself is created at the first send, so a missing folder shows
 * up as a transient batch failure rather than a plugin that cannot load. */
static int fd_create(const sk_host_api *host, void **self, char *err, size_t err_cap)
{
    *self = NULL;
    fd_plugin *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, err_cap, "out of memory");
        return 1;
    }
    p->host = host;
    atomic_init(&p->cancelled, 0);
    if (fd_read_options(p, err, err_cap) != 0) {
        fd_destroy(p);
        return 1;
    }
    p->md = EVP_MD_CTX_new();
    if (!p->md || fd_parts_init(p) != 0) {
        snprintf(err, err_cap, "out of memory");
        fd_destroy(p);
        return 1;
    }
    fd_scan_outbox(p);
    *self = p;
    return 0;
}

/* The defaults and limits above, as text: the table cannot drift from the parser. */
#define FD_STR_(x) #x
#define FD_STR(x) FD_STR_(x)

/* The option keys (ABI 1.1): what `spec-kitty sync plugins` shows; README.md
 * "Options" says the same at length. fd_read_options parses them. */
static const sk_option_def fd_options[] = {
    {"outbox", "string", "<state_root>/outbox",
     "folder the bundles go to; relative = under state_root; created 0700 if missing"},
    {"gzip_level", "integer", FD_STR(FD_DEFAULT_GZIP_LEVEL), "gzip level 0..9 of events.ndjson.gz"},
    {"fsync", "boolean", FD_DEFAULT_FSYNC ? "true" : "false",
     "sync each bundle before reporting it delivered (false weakens the guarantee)"},
    {"threads", "integer", "CPUs, at most " FD_STR(FD_DEFAULT_MAX_THREADS),
     "threads compressing one batch (1.." FD_STR(FD_MAX_THREADS) ")"},
    {NULL, NULL, NULL, NULL},
};

static const sk_transport_desc fd_desc = {
    .struct_size = sizeof(sk_transport_desc),
    .abi_major = SK_TRANSPORT_ABI_MAJOR,
    .abi_minor = SK_TRANSPORT_ABI_MINOR,
    .name = FD_NAME,
    .version = FD_VERSION,
    .description = "atomic gzip NDJSON bundles in an outbox folder, for air-gapped machines",
    .capabilities = SK_CAP_SYNC | SK_CAP_OFFLINE,
    .max_in_flight = 1,
    .create = fd_create,
    .destroy = fd_destroy,
    .send = fd_send,
    .submit = NULL,
    .cancel = fd_cancel,
    .probe = NULL,
    .options = fd_options,
};

/* A 1.0 host reads only up to its struct size: it never sees the options table. */
SK_TRANSPORT_DEFINE_ENTRY_V1(fd_desc)
