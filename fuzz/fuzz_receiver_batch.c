/*
 * The reference receiver's batch endpoint (rcv__handle_batch) on a body from
 * the input, with the receiver's own allocator hooks and an in-memory store:
 *
 *   byte 0   bits 0-1 Content-Encoding: 0 none, 1 "identity", 2 "gzip" with
 *            the bytes below as is, 3 "gzip" after gzipping them here;
 *            bit 2 --strict (400 with details instead of per-event results);
 *            bit 3 the text up to the first '\n' is the request's
 *            X-Spec-Kitty-Sync-Protocol value (else "2.0", what clients send)
 *   then     the body
 */
#include "jalloc.h"
#include "receiver.h"

#include "fuzz_util.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reopen the store now and then: every new valid event adds a row. */
#define FZ_STORE_INPUTS 4096

static rcv__app app;

static void store_reopen(void)
{
    char msg[256];
    rcv__store_close(app.store);
    app.store = NULL;
    if (rcv__store_open(":memory:", &app.store, msg, sizeof msg) != 0)
        fz_fail(msg, __FILE__, __LINE__);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    rcv__jalloc_install(); /* as the receiver's main does, before any Jansson use */
    app.cfg.no_auth = 1;
    app.cfg.max_events = 1000;
    app.cfg.max_body_bytes = 1 << 20;
    pthread_mutex_init(&app.stats.lock, NULL);
    app.faults = rcv__faults_new();
    app.ratelimit = rcv__ratelimit_new(0);
    if (!app.faults || !app.ratelimit)
        abort();
    store_reopen();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const encodings[] = {NULL, "identity", "gzip", "gzip"};
    static unsigned inputs;
    if (size < 1)
        return 0;
    if (++inputs % FZ_STORE_INPUTS == 0)
        store_reopen();
    int enc = data[0] & 3;
    app.cfg.strict = (data[0] & 4) != 0;
    const uint8_t *rest = data + 1;
    size_t rest_len = size - 1;
    char *protocol = NULL;
    if (data[0] & 8) { /* a header value holds no newline; MHD ends it at a NUL */
        const uint8_t *nl = memchr(rest, '\n', rest_len);
        size_t n = nl ? (size_t)(nl - rest) : rest_len;
        protocol = fz_cstr(rest, n);
        rest += nl ? n + 1 : n;
        rest_len -= nl ? n + 1 : n;
    }
    uint8_t *packed = NULL;
    /* An exact-size copy: the server's body buffer has no NUL after it. */
    size_t body_len = rest_len;
    uint8_t *body = malloc(body_len ? body_len : 1);
    if (!body)
        abort();
    memcpy(body, rest, body_len);
    if (enc == 3) {
        body_len = fz_gzip(rest, rest_len, 1, &packed);
        free(body);
        body = packed;
    }
    rcv__request rq = {.method = "POST",
                       .path = "/api/v1/events/batch/",
                       .content_type = "application/json",
                       .content_encoding = encodings[enc],
                       .protocol = protocol ? protocol : "2.0",
                       .body = (const char *)body,
                       .body_len = body_len,
                       .client = "127.0.0.1",
                       .loopback = 1};
    rcv__reply rep = {.retry_after = -1};
    rcv__handle_batch(&app, &rq, &rep);
    FZ_CHECK(rep.status == 200 || rep.status == 400 || rep.status == 412 || rep.status == 413,
             "the batch endpoint answered neither 200, 400, 412 nor 413");
    FZ_CHECK(rep.status != 412 || protocol, "412 to the protocol clients send");
    FZ_CHECK((rep.status == 200) == (rep.raw != NULL), "a 200 comes with the results text");
    /* An error without a body goes out as "{}": the client learns nothing. */
    FZ_CHECK(rep.raw || json_is_object(rep.body), "an error answer without its JSON body");
    if (rep.status == 412)
        FZ_CHECK(json_is_string(json_object_get(rep.body, "error_code")),
                 "a 412 without its error_code");
    if (rep.raw) {
        json_t *doc = json_loads(rep.raw, 0, NULL);
        FZ_CHECK(json_is_array(json_object_get(doc, "results")), "200 without a results array");
        json_decref(doc);
    }
    json_decref(rep.body);
    free(rep.raw);
    free(body);
    free(protocol);
    return 0;
}
