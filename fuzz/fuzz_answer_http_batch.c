/*
 * http-batch: a server's answer (status, headers, body) → outcomes and hints,
 * as hb_send_result and hb_send_on take it (plugins/http-common): the kept
 * body mapped by hc_map_kept_answer, then the bearer token struck out of
 * every text the host will print. The same answer to the health GET goes
 * through hc_probe_answer, as `sync doctor` and `sync status` take it.
 */
#include "answer.h"
#include "fuzz_util.h"
#include "http_common.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The token the answers may echo (seeds quote it); long enough to be redacted. */
#define FZ_SECRET "fz-access-token-0123456789"

/* The token is neither in text nor, cut short by a cap, at its end (8 bytes
 * and more of it: as much as a whole token hc_redact would strike out). */
static void check_redacted(const char *text, size_t cap)
{
    FZ_CHECK(memchr(text, '\0', cap) != NULL, "text not NUL-terminated");
    FZ_CHECK(strstr(text, FZ_SECRET) == NULL, "the bearer token left in a printed text");
    size_t len = strlen(text);
    for (size_t k = 8; k < sizeof FZ_SECRET - 1 && k <= len; k++)
        FZ_CHECK(memcmp(text + len - k, FZ_SECRET, k) != 0,
                 "the start of the bearer token left at the end of a cut text");
}

static void probe(const fz_answer *a)
{
    char reason[512];
    int state = hc_probe_answer(a->status, a->body, a->body_len, "HTTP/1.1",
                                "http://127.0.0.1:8765/api/v1/health/", reason, sizeof reason);
    FZ_CHECK(state == SK_PROBE_CONNECTED || state == SK_PROBE_NOT_AUTHENTICATED ||
                 state == SK_PROBE_SERVER_UNAVAILABLE,
             "probe state out of range");
    hc_redact(reason, FZ_SECRET);
    check_redacted(reason, sizeof reason);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_answer a;
    fz_answer_parse(data, size, &a);
    hc_answer ans = {a.status, a.body, a.body_len, a.retry_after, a.location, 1780000000};
    sk_batch_result r;
    sk_event_result events[FZ_BATCH_EVENTS];
    fz_answer_result_init(&r, events);
    int rc = hc_map_kept_answer(&ans, 0, fz_answer_batch(), &r);
    fz_answer_result_check(&r, rc);
    hc_redact_result(&r, FZ_SECRET);
    check_redacted(r.detail, sizeof r.detail);
    for (uint32_t i = 0; i < r.count; i++)
        check_redacted(r.events[i].message, sizeof r.events[i].message);
    probe(&a);
    fz_answer_free(&a);
    return 0;
}
