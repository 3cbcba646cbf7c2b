/* File-drop bundle reader: verify everything first, then deliver. */
#include "bundle.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* One verified line of the data file. */
typedef struct bundle_line {
    char *json; /* inside the inflated text, NUL-terminated in place */
    size_t len;
    char *event_id;   /* malloc'd */
    json_t *envelope; /* the parsed line, kept for the callback (NULL when only verifying) */
} bundle_line;

/* Everything read from one bundle; released by bundle_free. */
typedef struct bundle {
    const char *path;
    char manifest_path[4096];
    char data_path[4096];
    char *data; /* the gzip file */
    size_t data_len;
    char *text; /* inflated NDJSON */
    size_t text_len;
    bundle_line *lines;
    int keep_envelopes; /* a callback wants the parsed lines */
    size_t nlines;
} bundle;

static void bundle_free(bundle *b)
{
    free(b->data);
    free(b->text);
    for (size_t i = 0; i < b->nlines; i++) {
        free(b->lines[i].event_id);
        json_decref(b->lines[i].envelope);
    }
    free(b->lines);
}

/* Copies a string member of the manifest into out; missing/wrong type fails
 * unless optional (then out is ""). */
static sk_status manifest_string(const bundle *b, json_t *m, const char *key, char *out, size_t cap,
                                 int optional, sk__err *err)
{
    json_t *v = json_object_get(m, key);
    out[0] = '\0';
    if ((!v || json_is_null(v)) && optional)
        return SK_OK;
    if (!json_is_string(v) || json_string_length(v) == 0)
        return sk__fail(err, SK_ERR_INVALID_EVENT, "%s: \"%s\" missing or not a string",
                        b->manifest_path, key);
    if (sk__fmt(out, cap, "%s", json_string_value(v)))
        return sk__fail(err, SK_ERR_INVALID_EVENT, "%s: \"%s\" too long", b->manifest_path, key);
    return SK_OK;
}

/* Reads a non-negative integer member of the manifest. */
static sk_status manifest_count(const bundle *b, json_t *m, const char *key, int64_t *out,
                                sk__err *err)
{
    json_t *v = json_object_get(m, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return sk__fail(err, SK_ERR_INVALID_EVENT,
                        "%s: \"%s\" missing or not a non-negative integer", b->manifest_path, key);
    *out = (int64_t)json_integer_value(v);
    return SK_OK;
}

/* Checks the format, version and data file name of a parsed manifest. */
static sk_status manifest_check_format(const bundle *b, json_t *m, sk__bundle_info *info,
                                       sk__err *err)
{
    json_t *fmt = json_object_get(m, "format");
    if (!json_is_string(fmt) || strcmp(json_string_value(fmt), SK_BUNDLE_FORMAT) != 0)
        return sk__fail(err, SK_ERR_INVALID_EVENT, "%s: \"format\" is not \"%s\"", b->manifest_path,
                        SK_BUNDLE_FORMAT);
    json_t *ver = json_object_get(m, "format_version");
    if (!json_is_integer(ver) || json_integer_value(ver) < 1)
        return sk__fail(err, SK_ERR_INVALID_EVENT, "%s: \"format_version\" missing or invalid",
                        b->manifest_path);
    if (json_integer_value(ver) > SK_BUNDLE_FORMAT_VERSION)
        return sk__fail(err, SK_ERR_PROTOCOL,
                        "%s: format_version %" JSON_INTEGER_FORMAT
                        " is newer than this reader (%d): upgrade spec-kitty",
                        b->manifest_path, json_integer_value(ver), SK_BUNDLE_FORMAT_VERSION);
    info->format_version = (int)json_integer_value(ver);
    json_t *file = json_object_get(m, "data_file");
    if (!json_is_string(file) || strcmp(json_string_value(file), SK_BUNDLE_DATA_FILE) != 0)
        return sk__fail(err, SK_ERR_INVALID_EVENT, "%s: \"data_file\" is not \"%s\"",
                        b->manifest_path, SK_BUNDLE_DATA_FILE);
    return SK_OK;
}

/* Fills info from the manifest's members; every required one must be there. */
static sk_status manifest_fields(const bundle *b, json_t *m, sk__bundle_info *info, sk__err *err)
{
    sk_status st = manifest_check_format(b, m, info, err);
    if (st == SK_OK)
        st = manifest_string(b, m, "bundle_id", info->bundle_id, sizeof info->bundle_id, 0, err);
    if (st == SK_OK)
        st = manifest_string(b, m, "node_id", info->node_id, sizeof info->node_id, 1, err);
    if (st == SK_OK)
        st = manifest_string(b, m, "created_at", info->created_at, sizeof info->created_at, 0, err);
    if (st == SK_OK)
        st = manifest_string(b, m, "producer", info->producer, sizeof info->producer, 1, err);
    if (st == SK_OK)
        st = manifest_count(b, m, "event_count", &info->event_count, err);
    if (st == SK_OK)
        st = manifest_string(b, m, "first_event_id", info->first_event_id,
                             sizeof info->first_event_id, 0, err);
    if (st == SK_OK)
        st = manifest_string(b, m, "last_event_id", info->last_event_id, sizeof info->last_event_id,
                             0, err);
    if (st == SK_OK)
        st = manifest_count(b, m, "data_bytes", &info->data_bytes, err);
    if (st == SK_OK)
        st = manifest_count(b, m, "uncompressed_bytes", &info->uncompressed_bytes, err);
    if (st == SK_OK)
        st = manifest_string(b, m, "data_sha256", info->data_sha256, sizeof info->data_sha256, 0,
                             err);
    if (st == SK_OK && strlen(info->data_sha256) != 64)
        st = sk__fail(err, SK_ERR_INVALID_EVENT, "%s: \"data_sha256\" is not 64 hex digits",
                      b->manifest_path);
    if (st == SK_OK && info->data_bytes > 2 * SK__BUNDLE_MAX_UNCOMPRESSED)
        st = sk__fail(err, SK_ERR_INVALID_EVENT,
                      "%s: data_bytes %" PRId64 " exceeds the reader's limit %" PRId64,
                      b->manifest_path, info->data_bytes, 2 * SK__BUNDLE_MAX_UNCOMPRESSED);
    if (st == SK_OK && info->uncompressed_bytes > SK__BUNDLE_MAX_UNCOMPRESSED)
        st = sk__fail(err, SK_ERR_INVALID_EVENT,
                      "%s: uncompressed_bytes %" PRId64 " exceeds the reader's limit %" PRId64,
                      b->manifest_path, info->uncompressed_bytes, SK__BUNDLE_MAX_UNCOMPRESSED);
    return st;
}

/* Reads a whole file of the bundle (no link followed, a regular file only:
 * sk__open_regular). want_size >= 0: the size the manifest gives, checked
 * before reading (a damaged bundle should not make us read a huge file);
 * < 0: the manifest itself, which may be no larger than SK__BUNDLE_MANIFEST_MAX. */
static sk_status read_bundle_file(const char *path, char **out, size_t *len, int64_t want_size,
                                  sk__err *err)
{
    int fd = -1;
    struct stat sb;
    sk_status st = sk__open_regular(path, &fd, &sb, err);
    if (st != SK_OK)
        return st;
    if (want_size >= 0 && sb.st_size != want_size)
        st = sk__fail(err, SK_ERR_INVALID_EVENT,
                      "%s: %lld bytes, manifest says %" PRId64 " (truncated or altered)", path,
                      (long long)sb.st_size, want_size);
    else if (want_size < 0 && sb.st_size > SK__BUNDLE_MANIFEST_MAX)
        st = sk__fail(err, SK_ERR_INVALID_EVENT,
                      "%s: %lld bytes, more than a manifest's %d (not a bundle's manifest)", path,
                      (long long)sb.st_size, SK__BUNDLE_MANIFEST_MAX);
    else /* a file that grows while read stops at about twice the bound ("too large") */
        st = sk__read_fd(fd, path, want_size < 0 ? SK__BUNDLE_MANIFEST_MAX + 1 : 0, out, len, err);
    close(fd);
    return st;
}

/* Reads and checks manifest.json. */
static sk_status read_manifest(bundle *b, sk__bundle_info *info, sk__err *err)
{
    char *text = NULL;
    size_t len = 0;
    sk_status st = read_bundle_file(b->manifest_path, &text, &len, -1, err);
    if (st == SK_ERR_NOT_FOUND)
        return sk__fail(err, st, "%s: missing (not a complete bundle)", b->manifest_path);
    if (st != SK_OK)
        return st;
    json_error_t jerr;
    json_t *m = json_loadb(text, len, 0, &jerr);
    free(text);
    if (!m)
        return sk__fail(err, SK_ERR_INVALID_EVENT, "%s: not valid JSON (line %d: %s)",
                        b->manifest_path, jerr.line, jerr.text);
    if (!json_is_object(m))
        st = sk__fail(err, SK_ERR_INVALID_EVENT, "%s: not a JSON object", b->manifest_path);
    else
        st = manifest_fields(b, m, info, err);
    json_decref(m);
    return st;
}

/* Reads the data file and checks its size and sha256 against the manifest. */
static sk_status read_data(bundle *b, const sk__bundle_info *info, sk__err *err)
{
    sk_status st = read_bundle_file(b->data_path, &b->data, &b->data_len, info->data_bytes, err);
    if (st == SK_ERR_NOT_FOUND)
        return sk__fail(err, st, "%s: missing", b->data_path);
    if (st != SK_OK)
        return st;
    if ((int64_t)b->data_len != info->data_bytes)
        return sk__fail(err, SK_ERR_INVALID_EVENT,
                        "%s: %zu bytes, manifest says %" PRId64 " (truncated or altered)",
                        b->data_path, b->data_len, info->data_bytes);
    char hex[65];
    sk__sha256_hex(b->data, b->data_len, hex);
    if (strcasecmp(hex, info->data_sha256) != 0)
        return sk__fail(err, SK_ERR_INVALID_EVENT,
                        "%s: sha256 %s does not match the manifest's %s (corrupt or altered)",
                        b->data_path, hex, info->data_sha256);
    return SK_OK;
}

/* Runs inflate over all input, into at most cap bytes of b->text. Accepts
 * several concatenated gzip members, as gzip(1) does. */
static sk_status inflate_all(bundle *b, z_stream *zs, size_t cap, sk__err *err)
{
    for (;;) {
        int zrc = inflate(zs, Z_NO_FLUSH);
        if (zrc == Z_STREAM_END && zs->avail_in == 0)
            return SK_OK;
        if (zrc == Z_STREAM_END) {
            inflateReset(zs);
            continue;
        }
        if (zs->avail_out == 0)
            return sk__fail(err, SK_ERR_INVALID_EVENT,
                            "%s: inflates to more than the manifest's uncompressed_bytes %zu",
                            b->data_path, cap);
        if (zrc == Z_BUF_ERROR || (zrc == Z_OK && zs->avail_in == 0))
            return sk__fail(err, SK_ERR_INVALID_EVENT, "%s: gzip data ends early (truncated)",
                            b->data_path);
        if (zrc != Z_OK)
            return sk__fail(err, zrc == Z_MEM_ERROR ? SK_ERR_NOMEM : SK_ERR_INVALID_EVENT,
                            "%s: corrupt gzip data (%s)", b->data_path,
                            zs->msg ? zs->msg : "zlib error");
    }
}

/* Inflates the data file into b->text and checks its length. */
static sk_status inflate_data(bundle *b, const sk__bundle_info *info, sk__err *err)
{
    size_t cap = (size_t)info->uncompressed_bytes;
    /* One spare byte: an inflate that fills it has produced too much. */
    b->text = malloc(cap + 1);
    if (!b->text)
        return sk__fail(err, SK_ERR_NOMEM, "%s: out of memory inflating", b->data_path);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 15 + 16) != Z_OK)
        return sk__fail(err, SK_ERR_NOMEM, "%s: cannot start inflate", b->data_path);
    zs.next_in = (Bytef *)b->data;
    zs.avail_in = (uInt)b->data_len;
    zs.next_out = (Bytef *)b->text;
    zs.avail_out = (uInt)cap + 1;
    sk_status st = b->data_len == 0 ? sk__fail(err, SK_ERR_INVALID_EVENT, "%s: empty", b->data_path)
                                    : inflate_all(b, &zs, cap, err);
    b->text_len = (cap + 1) - zs.avail_out;
    inflateEnd(&zs);
    if (st == SK_OK && b->text_len > cap)
        st = sk__fail(err, SK_ERR_INVALID_EVENT,
                      "%s: inflates to more than the manifest's uncompressed_bytes %zu",
                      b->data_path, cap);
    if (st == SK_OK && b->text_len < cap)
        st = sk__fail(err, SK_ERR_INVALID_EVENT,
                      "%s: inflates to %zu bytes, manifest says %zu (truncated or altered)",
                      b->data_path, b->text_len, cap);
    if (st == SK_OK)
        b->text[b->text_len] = '\0';
    return st;
}

/* Checks one line is a JSON object with a string event_id; keeps the id, and
 * the parsed line when it is to be handed out (so nobody parses it again). */
static sk_status check_line(bundle *b, bundle_line *line, size_t lineno, sk__err *err)
{
    json_error_t jerr;
    json_t *ev = json_loadb(line->json, line->len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *id = json_is_object(ev) ? json_object_get(ev, "event_id") : NULL;
    if (!json_is_string(id) || json_string_length(id) == 0) {
        json_decref(ev);
        return sk__fail(err, SK_ERR_INVALID_EVENT, "%s: line %zu is not an envelope (%s)",
                        b->data_path, lineno, ev ? "no string event_id" : jerr.text);
    }
    line->event_id = strdup(json_string_value(id));
    if (b->keep_envelopes)
        line->envelope = ev;
    else
        json_decref(ev);
    return line->event_id ? SK_OK : sk__fail(err, SK_ERR_NOMEM, "%s: out of memory", b->data_path);
}

/* Counts the lines of the inflated text against the manifest, before any
 * allocation sized by it. */
static sk_status count_lines(bundle *b, const sk__bundle_info *info, sk__err *err)
{
    if (b->text_len > 0 && b->text[b->text_len - 1] != '\n')
        return sk__fail(err, SK_ERR_INVALID_EVENT, "%s: last line is not terminated (truncated)",
                        b->data_path);
    /* A NUL would cut a line short of its newline for every string function
     * behind us (the JSON parser, the queue): no envelope holds one. */
    const char *nul = memchr(b->text, '\0', b->text_len);
    size_t n = 0;
    for (const char *p = b->text; (p = memchr(p, '\n', b->text_len - (size_t)(p - b->text))); p++) {
        if (nul && nul < p)
            return sk__fail(err, SK_ERR_INVALID_EVENT, "%s: line %zu holds a NUL byte",
                            b->data_path, n + 1);
        n++;
    }
    if ((int64_t)n != info->event_count)
        return sk__fail(err, SK_ERR_INVALID_EVENT, "%s: holds %zu events, manifest says %" PRId64,
                        b->data_path, n, info->event_count);
    return SK_OK;
}

/* Splits the text into lines, checks each, and the first/last ids. */
static sk_status index_lines(bundle *b, const sk__bundle_info *info, sk__err *err)
{
    sk_status st = count_lines(b, info, err);
    if (st != SK_OK)
        return st;
    size_t n = (size_t)info->event_count;
    b->lines = calloc(n ? n : 1, sizeof *b->lines);
    if (!b->lines)
        return sk__fail(err, SK_ERR_NOMEM, "%s: out of memory", b->data_path);
    char *p = b->text;
    for (size_t i = 0; i < n; i++) {
        char *nl = memchr(p, '\n', b->text_len - (size_t)(p - b->text));
        *nl = '\0';
        b->lines[i].json = p;
        b->lines[i].len = (size_t)(nl - p);
        b->nlines = i + 1;
        if ((st = check_line(b, &b->lines[i], i + 1, err)) != SK_OK)
            return st;
        p = nl + 1;
    }
    if (n > 0 && strcmp(b->lines[0].event_id, info->first_event_id) != 0)
        return sk__fail(err, SK_ERR_INVALID_EVENT, "%s: first event is %s, manifest says %s",
                        b->data_path, b->lines[0].event_id, info->first_event_id);
    if (n > 0 && strcmp(b->lines[n - 1].event_id, info->last_event_id) != 0)
        return sk__fail(err, SK_ERR_INVALID_EVENT, "%s: last event is %s, manifest says %s",
                        b->data_path, b->lines[n - 1].event_id, info->last_event_id);
    return SK_OK;
}

/* Verifies the whole bundle: manifest, data file, inflated lines. */
static sk_status bundle_verify(bundle *b, sk__bundle_info *info, sk__err *err)
{
    struct stat stb;
    if (lstat(b->path, &stb) != 0)
        return sk__fail(err, errno == ENOENT ? SK_ERR_NOT_FOUND : SK_ERR_IO, "%s: %s", b->path,
                        strerror(errno));
    if (S_ISLNK(stb.st_mode))
        return sk__fail(err, SK_ERR_PERMISSION, "%s: a symbolic link: refused", b->path);
    if (!S_ISDIR(stb.st_mode))
        return sk__fail(err, SK_ERR_INVALID_EVENT, "%s: not a bundle folder", b->path);
    if (sk__path_join(b->manifest_path, sizeof b->manifest_path, b->path, SK_BUNDLE_MANIFEST_FILE,
                      err) != SK_OK ||
        sk__path_join(b->data_path, sizeof b->data_path, b->path, SK_BUNDLE_DATA_FILE, err) !=
            SK_OK)
        return SK_ERR_USAGE;
    sk_status st = read_manifest(b, info, err);
    if (st == SK_OK)
        st = read_data(b, info, err);
    if (st == SK_OK)
        st = inflate_data(b, info, err);
    if (st == SK_OK)
        st = index_lines(b, info, err);
    return st;
}

sk_status sk__bundle_read(const char *bundle_path, sk__bundle_event_fn fn, void *ctx,
                          sk__bundle_info *info, sk__err *err)
{
    sk__bundle_info local;
    if (!info)
        info = &local;
    memset(info, 0, sizeof *info);
    sk__err_clear(err);
    bundle b = {.path = bundle_path, .keep_envelopes = fn != NULL};
    sk_status st = bundle_verify(&b, info, err);
    for (size_t i = 0; st == SK_OK && fn && i < b.nlines; i++)
        st = fn(ctx, b.lines[i].event_id, b.lines[i].envelope, b.lines[i].json, b.lines[i].len);
    bundle_free(&b);
    return st;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* True for "<something>.skb" not starting with '.' (temp folders do). */
/* Appends a copy of name to the growing list. */
static sk_status list_push(char ***names, size_t *count, size_t *cap, const char *name)
{
    if (*count == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        char **grown = realloc(*names, ncap * sizeof *grown);
        if (!grown)
            return SK_ERR_NOMEM;
        *names = grown;
        *cap = ncap;
    }
    char *copy = strdup(name);
    if (!copy)
        return SK_ERR_NOMEM;
    (*names)[(*count)++] = copy;
    return SK_OK;
}

sk_status sk__bundle_list(const char *outbox, char ***names, size_t *count, sk__err *err)
{
    *names = NULL;
    *count = 0;
    DIR *d = opendir(outbox);
    if (!d)
        return sk__fail(err, errno == ENOENT ? SK_ERR_NOT_FOUND : SK_ERR_IO,
                        "cannot open outbox %s: %s", outbox, strerror(errno));
    size_t cap = 0;
    sk_status st = SK_OK;
    struct dirent *e;
    while (st == SK_OK && (e = readdir(d)) != NULL) {
        struct stat sb;
        if (!sk_bundle_is_name(e->d_name) || fstatat(dirfd(d), e->d_name, &sb, 0) != 0 ||
            !S_ISDIR(sb.st_mode))
            continue;
        st = list_push(names, count, &cap, e->d_name);
    }
    closedir(d);
    if (st != SK_OK) {
        sk__bundle_list_free(*names, *count);
        *names = NULL;
        *count = 0;
        return sk__fail(err, st, "out of memory listing %s", outbox);
    }
    if (*count > 1)
        qsort(*names, *count, sizeof **names, cmp_names);
    return SK_OK;
}

void sk__bundle_list_free(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}
