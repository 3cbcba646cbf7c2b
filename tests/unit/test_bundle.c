/*
 * The bundle reader (host/bundle.c): a bundle written by the real file-drop
 * plugin reads back exactly; every kind of damage gets one clear error naming
 * the file, and no event of a damaged bundle is ever handed out.
 */
#include "bundle.h"
#include "fakehost.h"
#include "testutil.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define NODE_ID "0badc0ffee42"
#define EVENTS 600

typedef struct fixture {
    char *root;
    char outbox[1024];
    char bundle[1200]; /* the one bundle the plugin wrote */
    char manifest[1300];
    char data[1300];
    char *json[EVENTS]; /* what was sent, in order */
    char ids[EVENTS][27];
} fixture;

static void event_id(char out[27], long i)
{
    snprintf(out, 27, "01JDY%021ld", i);
}

/* Sends EVENTS envelopes through the real plugin (3 threads: 3 gzip members). */
static void write_bundle_with_plugin(fixture *fx)
{
    const char *values[] = {"state_root", fx->root, "node_id", NODE_ID, NULL};
    sk_fakehost *fh = sk_fakehost_new("{\"fsync\": false, \"threads\": 3}", values);
    void *dl, *self = NULL;
    const sk_transport_desc *d = sk_fakehost_load_plugin("file-drop", &dl);
    char err[256];
    assert_int_equal(d->create(sk_fakehost_api(fh), &self, err, sizeof err), 0);
    sk_event *ev = calloc(EVENTS, sizeof *ev);
    sk_event_result *res = calloc(EVENTS, sizeof *res);
    for (int i = 0; i < EVENTS; i++) {
        event_id(fx->ids[i], i);
        char buf[512];
        snprintf(buf, sizeof buf,
                 "{\"event_id\":\"%s\",\"event_type\":\"HistoryAdded\",\"aggregate_id\":\"WP%02d\","
                 "\"payload\":{\"wp_id\":\"WP%02d\",\"entry_type\":\"note\",\"entry_content\":"
                 "\"step %d done\"},\"lamport_clock\":%d}",
                 fx->ids[i], i % 50, i % 50, i, i + 1);
        fx->json[i] = strdup(buf);
        ev[i] = (sk_event){fx->ids[i], fx->json[i], strlen(fx->json[i])};
    }
    sk_batch b = {.struct_size = sizeof b, .count = EVENTS, .events = ev};
    sk_batch_result r = {.struct_size = sizeof r, .count = EVENTS, .events = res};
    assert_int_equal(d->send(self, &b, &r), SK_TRANSPORT_OK);
    d->destroy(self);
    sk_fakehost_free(fh);
    free(ev);
    free(res);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    fx->root = sk_test_mkdtemp();
    snprintf(fx->outbox, sizeof fx->outbox, "%s/outbox", fx->root);
    write_bundle_with_plugin(fx);
    char **names;
    size_t n;
    sk__err err;
    assert_int_equal(sk__bundle_list(fx->outbox, &names, &n, &err), SK_OK);
    assert_int_equal(n, 1);
    snprintf(fx->bundle, sizeof fx->bundle, "%s/%s", fx->outbox, names[0]);
    sk__bundle_list_free(names, n);
    snprintf(fx->manifest, sizeof fx->manifest, "%s/manifest.json", fx->bundle);
    snprintf(fx->data, sizeof fx->data, "%s/events.ndjson.gz", fx->bundle);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    sk_test_rmtree(fx->root);
    free(fx->root);
    for (int i = 0; i < EVENTS; i++)
        free(fx->json[i]);
    free(fx);
    return 0;
}

/* Counts the events handed out; stops with stop_status after stop_after. */
typedef struct counter {
    int n;
    int stop_after;
    sk_status stop_status;
    const fixture *fx; /* when set: each event must match what was sent */
} counter;

static sk_status count_event(void *ctx, const char *id, json_t *envelope, const char *json,
                             size_t len)
{
    assert_non_null(json_object_get(envelope, "event_id"));
    counter *c = ctx;
    if (c->fx) {
        assert_string_equal(id, c->fx->ids[c->n]);
        assert_int_equal(len, strlen(c->fx->json[c->n]));
        assert_string_equal(json, c->fx->json[c->n]);
    }
    c->n++;
    return c->stop_after && c->n == c->stop_after ? c->stop_status : SK_OK;
}

/* Reading must fail with status, a message holding both needles, and no event. */
static void expect_bad(const char *bundle, sk_status status, const char *file, const char *what)
{
    counter c = {0};
    sk__err err;
    sk_status st = sk__bundle_read(bundle, count_event, &c, NULL, &err);
    if (st != status || !strstr(err.msg, file) || !strstr(err.msg, what))
        fail_msg("status %d (want %d), message \"%s\" (want \"%s\" and \"%s\")", st, status,
                 err.msg, file, what);
    assert_int_equal(c.n, 0);
}

/* Sets (or with value NULL removes) one manifest member. */
static void manifest_set(const fixture *fx, const char *key, json_t *value)
{
    json_error_t jerr;
    json_t *m = json_load_file(fx->manifest, 0, &jerr);
    assert_non_null(m);
    if (value)
        json_object_set_new(m, key, value);
    else
        json_object_del(m, key);
    assert_int_equal(json_dump_file(m, fx->manifest, JSON_INDENT(2)), 0);
    json_decref(m);
}

static char *slurp(const char *path, size_t *len)
{
    char *buf;
    sk__err err;
    assert_int_equal(sk__read_file(path, &buf, len, &err), SK_OK);
    return buf;
}

static void spill(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* Makes the manifest's size and sha256 agree with the data file as it is now,
 * so that a test reaches the checks behind them. */
static void manifest_match_data(const fixture *fx)
{
    size_t len;
    char *data = slurp(fx->data, &len);
    unsigned char md[32];
    unsigned int mdlen;
    assert_true(EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL));
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    manifest_set(fx, "data_bytes", json_integer((json_int_t)len));
    manifest_set(fx, "data_sha256", json_string(hex));
    free(data);
}

/* Replaces the data file with the gzip of text and fixes the manifest to match
 * it (count, sizes, sha256), so only the content itself can be wrong. */
static void craft_data_len(const fixture *fx, const char *text, size_t len, int count,
                           const char *first, const char *last)
{
    uLong bound = compressBound((uLong)len) + 64;
    unsigned char *out = malloc(bound);
    z_stream zs = {0};
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = (Bytef *)text;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)bound;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    spill(fx->data, out, zs.total_out);
    deflateEnd(&zs);
    free(out);
    manifest_set(fx, "event_count", json_integer(count));
    manifest_set(fx, "uncompressed_bytes", json_integer((json_int_t)len));
    manifest_set(fx, "first_event_id", json_string(first));
    manifest_set(fx, "last_event_id", json_string(last));
    manifest_match_data(fx);
}

static void craft_data(const fixture *fx, const char *text, int count, const char *first,
                       const char *last)
{
    craft_data_len(fx, text, strlen(text), count, first, last);
}

static void test_good_bundle_reads_every_event_in_order(void **state)
{
    fixture *fx = *state;
    counter c = {.fx = fx};
    sk__bundle_info info;
    sk__err err;
    sk_status st = sk__bundle_read(fx->bundle, count_event, &c, &info, &err);
    if (st != SK_OK)
        fail_msg("%s", err.msg);
    assert_int_equal(c.n, EVENTS);
    assert_int_equal(info.format_version, SK_BUNDLE_FORMAT_VERSION);
    assert_int_equal(info.event_count, EVENTS);
    assert_string_equal(info.node_id, NODE_ID);
    assert_string_equal(info.first_event_id, fx->ids[0]);
    assert_string_equal(info.last_event_id, fx->ids[EVENTS - 1]);
    assert_memory_equal(info.producer, "file-drop ", 10);
    assert_true(strstr(fx->bundle, info.bundle_id) != NULL);
    size_t raw = 0;
    for (int i = 0; i < EVENTS; i++)
        raw += strlen(fx->json[i]) + 1;
    assert_int_equal(info.uncompressed_bytes, raw);
    struct stat sb;
    assert_int_equal(stat(fx->data, &sb), 0);
    assert_int_equal(info.data_bytes, sb.st_size);
    /* Verify-only reads too. */
    assert_int_equal(sk__bundle_read(fx->bundle, NULL, NULL, NULL, &err), SK_OK);
}

static void test_truncated_data_file_is_refused(void **state)
{
    fixture *fx = *state;
    struct stat sb;
    assert_int_equal(stat(fx->data, &sb), 0);
    assert_int_equal(truncate(fx->data, sb.st_size / 2), 0);
    expect_bad(fx->bundle, SK_ERR_INVALID_EVENT, "events.ndjson.gz", "truncated");
}

static void test_truncated_gzip_is_refused_even_with_a_matching_manifest(void **state)
{
    fixture *fx = *state;
    struct stat sb;
    assert_int_equal(stat(fx->data, &sb), 0);
    assert_int_equal(truncate(fx->data, sb.st_size - 20), 0);
    manifest_match_data(fx);
    expect_bad(fx->bundle, SK_ERR_INVALID_EVENT, "events.ndjson.gz", "gzip data ends early");
}

static void test_corrupt_gzip_is_refused_even_with_a_matching_manifest(void **state)
{
    fixture *fx = *state;
    size_t len;
    char *data = slurp(fx->data, &len);
    data[len - 6] ^= 0x5a; /* inside the last member's CRC-32 */
    spill(fx->data, data, len);
    free(data);
    manifest_match_data(fx);
    expect_bad(fx->bundle, SK_ERR_INVALID_EVENT, "events.ndjson.gz", "corrupt gzip data");
}

static void test_altered_data_fails_the_sha256(void **state)
{
    fixture *fx = *state;
    size_t len;
    char *data = slurp(fx->data, &len);
    data[len / 2] ^= 0x01;
    spill(fx->data, data, len);
    free(data);
    expect_bad(fx->bundle, SK_ERR_INVALID_EVENT, "events.ndjson.gz", "does not match");
}

static void test_wrong_sha256_in_manifest_is_refused(void **state)
{
    fixture *fx = *state;
    manifest_set(fx, "data_sha256",
                 json_string("0000000000000000000000000000000000000000000000000000000000000000"));
    expect_bad(fx->bundle, SK_ERR_INVALID_EVENT, "events.ndjson.gz", "sha256");
}

static void test_count_mismatch_is_refused(void **state)
{
    fixture *fx = *state;
    manifest_set(fx, "event_count", json_integer(EVENTS - 1));
    expect_bad(fx->bundle, SK_ERR_INVALID_EVENT, "events.ndjson.gz",
               "holds 600 events, manifest says 599");
}

static void test_first_or_last_id_mismatch_is_refused(void **state)
{
    fixture *fx = *state;
    manifest_set(fx, "first_event_id", json_string(fx->ids[1]));
    expect_bad(fx->bundle, SK_ERR_INVALID_EVENT, "events.ndjson.gz", "first event is");
    manifest_set(fx, "first_event_id", json_string(fx->ids[0]));
    manifest_set(fx, "last_event_id", json_string(fx->ids[0]));
    expect_bad(fx->bundle, SK_ERR_INVALID_EVENT, "events.ndjson.gz", "last event is");
}

static void test_missing_manifest_is_an_incomplete_bundle(void **state)
{
    fixture *fx = *state;
    assert_int_equal(unlink(fx->manifest), 0);
    expect_bad(fx->bundle, SK_ERR_NOT_FOUND, "manifest.json", "missing");
}

static void test_malformed_manifest_is_refused(void **state)
{
    fixture *fx = *state;
    sk_test_write_file(fx->manifest, "{\"format\": \"spec-kitty-bundle\", \"event_count\": ");
    expect_bad(fx->bundle, SK_ERR_INVALID_EVENT, "manifest.json", "not valid JSON");
    sk_test_write_file(fx->manifest, "[1, 2]");
    expect_bad(fx->bundle, SK_ERR_INVALID_EVENT, "manifest.json", "not a JSON object");
}

/* A manifest is a few hundred bytes: a huge one is refused by its size, not read. */
static void test_oversized_manifest_is_refused_unread(void **state)
{
    fixture *fx = *state;
    size_t len = SK__BUNDLE_MANIFEST_MAX + 1;
    char *big = malloc(len);
    assert_non_null(big);
    memset(big, ' ', len);
    big[0] = '{';
    big[len - 1] = '}';
    spill(fx->manifest, big, len);
    free(big);
    expect_bad(fx->bundle, SK_ERR_INVALID_EVENT, "manifest.json", "more than a manifest's 65536");
}

static void test_manifest_without_a_field_is_refused(void **state)
{
    fixture *fx = *state;
    manifest_set(fx, "data_sha256", NULL);
    expect_bad(fx->bundle, SK_ERR_INVALID_EVENT, "manifest.json", "\"data_sha256\" missing");
}

static void test_newer_format_version_asks_for_an_upgrade(void **state)
{
    fixture *fx = *state;
    manifest_set(fx, "format_version", json_integer(2));
    expect_bad(fx->bundle, SK_ERR_PROTOCOL, "manifest.json", "format_version 2");
}

static void test_missing_data_file_is_refused(void **state)
{
    fixture *fx = *state;
    assert_int_equal(unlink(fx->data), 0);
    expect_bad(fx->bundle, SK_ERR_NOT_FOUND, "events.ndjson.gz", "missing");
}

static void test_line_that_is_not_an_envelope_is_refused(void **state)
{
    fixture *fx = *state;
    char text[256];
    snprintf(text, sizeof text, "{\"event_id\":\"%s\"}\n[1]\n{\"event_id\":\"%s\"}\n", fx->ids[0],
             fx->ids[2]);
    craft_data(fx, text, 3, fx->ids[0], fx->ids[2]);
    expect_bad(fx->bundle, SK_ERR_INVALID_EVENT, "events.ndjson.gz", "line 2 is not an envelope");
}

static void test_unterminated_last_line_is_refused(void **state)
{
    fixture *fx = *state;
    char text[256];
    snprintf(text, sizeof text, "{\"event_id\":\"%s\"}\n{\"event_id\":\"%s\"}", fx->ids[0],
             fx->ids[1]);
    craft_data(fx, text, 2, fx->ids[0], fx->ids[1]);
    expect_bad(fx->bundle, SK_ERR_INVALID_EVENT, "events.ndjson.gz", "not terminated");
}

/* Lines were counted by newline and split at the first NUL or newline: a NUL
 * before a newline left the split without a newline to cut at (a crash). */
static void test_nul_byte_in_a_line_is_refused(void **state)
{
    fixture *fx = *state;
    char text[256];
    int n = snprintf(text, sizeof text, "{\"event_id\":\"%s\"}\n{\"event_id\":\"%s\"}x\n",
                     fx->ids[0], fx->ids[1]);
    text[n - 2] = '\0'; /* the x */
    craft_data_len(fx, text, (size_t)n, 2, fx->ids[0], fx->ids[1]);
    expect_bad(fx->bundle, SK_ERR_INVALID_EVENT, "events.ndjson.gz", "line 2 holds a NUL byte");
}

/* Replaces a file of the bundle with a symbolic link to a secret file. */
static void link_to_secret(const fixture *fx, const char *file, char *secret, size_t cap)
{
    snprintf(secret, cap, "%s/secret", fx->root);
    sk_test_write_file(secret, "hunter2:x:0:0:root:/root:/bin/bash\n");
    assert_int_equal(unlink(file), 0);
    assert_int_equal(symlink(secret, file), 0);
}

static void expect_link_refused(const fixture *fx, const char *file)
{
    counter c = {0};
    sk__err err;
    assert_int_equal(sk__bundle_read(fx->bundle, count_event, &c, NULL, &err), SK_ERR_PERMISSION);
    if (!strstr(err.msg, file) || !strstr(err.msg, "symbolic link") || strstr(err.msg, "hunter2"))
        fail_msg("message \"%s\" should name %s as a symbolic link, and echo nothing of it",
                 err.msg, file);
    assert_int_equal(c.n, 0);
}

static void test_symlinked_manifest_is_refused_unread(void **state)
{
    fixture *fx = *state;
    char secret[1100];
    link_to_secret(fx, fx->manifest, secret, sizeof secret);
    expect_link_refused(fx, fx->manifest);
}

static void test_symlinked_data_file_is_refused(void **state)
{
    fixture *fx = *state;
    size_t len;
    char *data = slurp(fx->data, &len);
    char secret[1100];
    link_to_secret(fx, fx->data, secret, sizeof secret);
    spill(secret, data, len); /* the real data behind the link: only the link is wrong */
    free(data);
    expect_link_refused(fx, fx->data);
}

static void test_symlinked_bundle_folder_is_refused(void **state)
{
    fixture *fx = *state;
    char moved[1300];
    snprintf(moved, sizeof moved, "%s/elsewhere", fx->root);
    assert_int_equal(rename(fx->bundle, moved), 0);
    assert_int_equal(symlink(moved, fx->bundle), 0);
    expect_bad(fx->bundle, SK_ERR_PERMISSION, fx->bundle, "a symbolic link: refused");
}

/* A FIFO would block the reader forever. */
static void test_manifest_that_is_not_a_regular_file_is_refused(void **state)
{
    fixture *fx = *state;
    assert_int_equal(unlink(fx->manifest), 0);
    assert_int_equal(mkfifo(fx->manifest, 0600), 0);
    expect_bad(fx->bundle, SK_ERR_PERMISSION, "manifest.json", "not a regular file");
}

static void test_uncompressed_size_must_match(void **state)
{
    fixture *fx = *state;
    char text[256];
    snprintf(text, sizeof text, "{\"event_id\":\"%s\"}\n", fx->ids[0]);
    craft_data(fx, text, 1, fx->ids[0], fx->ids[0]);
    counter c = {0};
    sk__err err;
    assert_int_equal(sk__bundle_read(fx->bundle, count_event, &c, NULL, &err), SK_OK);
    assert_int_equal(c.n, 1); /* the crafted bundle itself is fine */
    manifest_set(fx, "uncompressed_bytes", json_integer((json_int_t)strlen(text) - 1));
    expect_bad(fx->bundle, SK_ERR_INVALID_EVENT, "events.ndjson.gz", "inflates to more than");
    manifest_set(fx, "uncompressed_bytes", json_integer((json_int_t)strlen(text) + 5));
    expect_bad(fx->bundle, SK_ERR_INVALID_EVENT, "events.ndjson.gz", "manifest says");
}

static void test_callback_status_stops_the_reading(void **state)
{
    fixture *fx = *state;
    counter c = {.stop_after = 3, .stop_status = SK_ERR_CANCELLED};
    sk__err err;
    assert_int_equal(sk__bundle_read(fx->bundle, count_event, &c, NULL, &err), SK_ERR_CANCELLED);
    assert_int_equal(c.n, 3);
}

static void test_path_that_is_not_a_bundle(void **state)
{
    fixture *fx = *state;
    char p[1300];
    snprintf(p, sizeof p, "%s/nope.skb", fx->outbox);
    expect_bad(p, SK_ERR_NOT_FOUND, "nope.skb", strerror(ENOENT));
    expect_bad(fx->data, SK_ERR_INVALID_EVENT, "events.ndjson.gz", "not a bundle folder");
}

static void test_list_sorts_bundles_and_ignores_the_rest(void **state)
{
    fixture *fx = *state;
    char dir[1100], p[1300];
    snprintf(dir, sizeof dir, "%s/box", fx->root);
    char **names;
    size_t n;
    sk__err err;
    assert_int_equal(sk__bundle_list(dir, &names, &n, &err), SK_ERR_NOT_FOUND);
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(sk__bundle_list(dir, &names, &n, &err), SK_OK);
    assert_int_equal(n, 0);
    sk__bundle_list_free(names, n);
    static const char *const dirs[] = {"20261126T100000002Z-00000002.skb",
                                       "20261126T100000001Z-00000009.skb",
                                       ".tmp-20261126T100000003Z-00000001", ".hidden.skb", "other"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, dirs[i]);
        assert_int_equal(mkdir(p, 0700), 0);
    }
    snprintf(p, sizeof p, "%s/20261126T100000000Z-00000000.skb", dir);
    sk_test_write_file(p, "a file, not a bundle folder");
    snprintf(p, sizeof p, "%s/notes.txt", dir);
    sk_test_write_file(p, "hello");
    assert_int_equal(sk__bundle_list(dir, &names, &n, &err), SK_OK);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "20261126T100000001Z-00000009.skb");
    assert_string_equal(names[1], "20261126T100000002Z-00000002.skb");
    sk__bundle_list_free(names, n);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_good_bundle_reads_every_event_in_order),
        T(test_truncated_data_file_is_refused),
        T(test_truncated_gzip_is_refused_even_with_a_matching_manifest),
        T(test_corrupt_gzip_is_refused_even_with_a_matching_manifest),
        T(test_altered_data_fails_the_sha256),
        T(test_wrong_sha256_in_manifest_is_refused),
        T(test_count_mismatch_is_refused),
        T(test_first_or_last_id_mismatch_is_refused),
        T(test_missing_manifest_is_an_incomplete_bundle),
        T(test_malformed_manifest_is_refused),
        T(test_oversized_manifest_is_refused_unread),
        T(test_manifest_without_a_field_is_refused),
        T(test_newer_format_version_asks_for_an_upgrade),
        T(test_missing_data_file_is_refused),
        T(test_line_that_is_not_an_envelope_is_refused),
        T(test_unterminated_last_line_is_refused),
        T(test_nul_byte_in_a_line_is_refused),
        T(test_symlinked_manifest_is_refused_unread),
        T(test_symlinked_data_file_is_refused),
        T(test_symlinked_bundle_folder_is_refused),
        T(test_manifest_that_is_not_a_regular_file_is_refused),
        T(test_uncompressed_size_must_match),
        T(test_callback_status_stops_the_reading),
        T(test_path_that_is_not_a_bundle),
        T(test_list_sorts_bundles_and_ignores_the_rest),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
