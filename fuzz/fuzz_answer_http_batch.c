/* http-batch: a server's answer (status, headers, body) → outcomes and hints (plugins/http-common). */
#include "answer.h"
#include "http_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_answer a;
    fz_answer_parse(data, size, &a);
    hc_answer ans = {a.status, a.body, a.body_len, a.retry_after, a.location, 1780000000};
    sk_batch_result r;
    sk_event_result events[FZ_BATCH_EVENTS];
    fz_answer_result_init(&r, events);
    int rc = hc_map_answer(&ans, fz_answer_batch(), &r);
    fz_answer_result_check(&r, rc);
    fz_answer_free(&a);
    return 0;
}
