/*
 * The file-drop bundle reader (sk__bundle_read) on a real bundle folder built
 * from the input:
 *
 *   byte 0   flags: bit 0 gzip the events here (else the bytes below are the
 *            data file as is: raw gzip for the reader's inflate);
 *            bit 1 fix the manifest's data_bytes and data_sha256 (and, with
 *            bit 0, uncompressed_bytes and event_count) to match the data, so
 *            inputs get past the checksums to the lines;
 *            bit 2 verify only (`sync import --verify-only`: no callback),
 *            else each event goes through sk__event_accept as import's does
 *   then     manifest.json text, FZ_SPLIT, the events (or data file) bytes
 */
#include "bundle.h"
#include "common.h"
#include "event.h"
#include "fuzz_util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FZ_SPLIT "\n--events--\n"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char bundle_dir[512], manifest_path[600], data_path[600];

static void paths_init(void)
{
    if (bundle_dir[0])
        return;
    snprintf(bundle_dir, sizeof bundle_dir, "%s/01JAAAAAAAAAAAAAAAAAAAAAA1.skb", fz_scratch_dir());
    if (mkdir(bundle_dir, 0700) != 0)
        abort();
    snprintf(manifest_path, sizeof manifest_path, "%s/" SK_BUNDLE_MANIFEST_FILE, bundle_dir);
    snprintf(data_path, sizeof data_path, "%s/" SK_BUNDLE_DATA_FILE, bundle_dir);
}

static size_t count_newlines(const uint8_t *p, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += p[i] == '\n';
    return c;
}

/* The manifest with its size/hash fields set to match the data (malloc'd), or
 * NULL when the text is not a JSON object (it is then written as given). */
static char *fix_manifest(const char *text, const uint8_t *file, size_t file_len,
                          const uint8_t *events, size_t events_len, int gzipped)
{
    json_t *m = json_loads(text, 0, NULL);
    if (!json_is_object(m)) {
        json_decref(m);
        return NULL;
    }
    char hex[65];
    sk__sha256_hex(file, file_len, hex);
    json_object_set_new(m, "data_bytes", json_integer((json_int_t)file_len));
    json_object_set_new(m, "data_sha256", json_string(hex));
    if (gzipped) {
        json_object_set_new(m, "uncompressed_bytes", json_integer((json_int_t)events_len));
        json_object_set_new(m, "event_count",
                            json_integer((json_int_t)count_newlines(events, events_len)));
    }
    char *out = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    return out;
}

/* What import's callback does with each event (host/import.c: collect): its ids
 * normalised and the envelope validated; a refusal stops the import. */
/* What the reader handed to on_event: how many events, and the status of the one refused. */
typedef struct handed {
    size_t seen;
    sk_status refused;
} handed;

static sk_status on_event(void *ctx, const char *event_id, json_t *envelope, const char *json,
                         size_t len)
{
    FZ_CHECK(json_is_object(envelope), "an event handed out unparsed");
    handed *h = ctx;
    FZ_CHECK(h->refused == SK_OK, "an event handed out after one was refused");
    FZ_CHECK(event_id && *event_id, "an event without an id handed out");
    FZ_CHECK(strlen(json) == len, "an event's length is not its text's");
    h->seen++;
    sk__err err = {{0}};
    h->refused = sk__event_accept(envelope, &err);
    FZ_CHECK(h->refused == SK_OK || err.msg[0], "a refused event must come with a message");
    return h->refused;
}

/* Writes the bundle folder's two files from the input (see the top of this file). */
static void write_bundle(const uint8_t *data, size_t size)
{
    int gzip_here = data[0] & 1, fix = data[0] & 2;
    char *rest = fz_cstr(data + 1, size - 1);
    char *split = memmem(rest, size - 1, FZ_SPLIT, strlen(FZ_SPLIT));
    size_t manifest_len = split ? (size_t)(split - rest) : size - 1;
    const uint8_t *events = (const uint8_t *)rest + size - 1; /* none without FZ_SPLIT */
    if (split) {
        *split = '\0';
        events = (const uint8_t *)split + strlen(FZ_SPLIT);
    }
    size_t events_len = (size_t)((const uint8_t *)rest + size - 1 - events);
    uint8_t *packed = NULL;
    const uint8_t *file = events;
    size_t file_len = events_len;
    if (gzip_here) {
        file_len = fz_gzip(events, events_len, 6, &packed); /* one member, as file-drop writes */
        file = packed;
    }
    char *fixed = fix ? fix_manifest(rest, file, file_len, events, events_len, gzip_here) : NULL;
    if (fixed)
        fz_write_file(manifest_path, fixed, strlen(fixed));
    else
        fz_write_file(manifest_path, rest, manifest_len);
    fz_write_file(data_path, file, file_len);
    free(fixed);
    free(packed);
    free(rest);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    paths_init();
    write_bundle(data, size);
    int verify_only = (data[0] & 4) != 0;
    sk__bundle_info info;
    sk__err err = {{0}};
    handed h = {0, SK_OK};
    sk_status st = sk__bundle_read(bundle_dir, verify_only ? NULL : on_event, &h, &info, &err);
    if (st == SK_OK)
        FZ_CHECK(verify_only || (int64_t)h.seen == info.event_count,
                 "events handed out differ from the manifest");
    else if (h.refused != SK_OK) /* the callback refused an event: the reading stopped there */
        FZ_CHECK(st == h.refused && (int64_t)h.seen <= info.event_count,
                 "a refusal by the callback must end the reading with its status");
    else
        FZ_CHECK(h.seen == 0 && err.msg[0], "a refused bundle must hand out nothing and say why");
    return 0;
}
