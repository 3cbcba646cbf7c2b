#include "answer.h"
#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Returns the value of "Name: value" when line names name, else NULL. */
static const char *header_value(char *line, const char *name)
{
    size_t n = strlen(name);
    if (strncasecmp(line, name, n) != 0 || line[n] != ':')
        return NULL;
    char *v = line + n + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    return v;
}

void fz_answer_parse(const uint8_t *data, size_t size, fz_answer *out)
{
    memset(out, 0, sizeof *out);
    out->storage = malloc(size + 1);
    if (!out->storage)
        abort();
    memcpy(out->storage, data, size);
    out->storage[size] = '\0';
    char *p = out->storage, *end = out->storage + size;
    out->status = strtol(p, NULL, 10);
    int first = 1;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *next = nl ? nl + 1 : end;
        if (nl)
            *nl = '\0';
        if (!first && p == nl) { /* the blank line: the body follows */
            p = next;
            out->body_len = (size_t)(end - p);
            out->body_copy = out->body_len ? malloc(out->body_len) : NULL;
            if (out->body_len && !out->body_copy)
                abort();
            if (out->body_len)
                memcpy(out->body_copy, p, out->body_len);
            out->body = out->body_copy;
            return;
        }
        const char *v;
        if (!first && (v = header_value(p, "Retry-After")))
            out->retry_after = v;
        else if (!first && (v = header_value(p, "Location")))
            out->location = v;
        first = 0;
        p = next;
    }
}

void fz_answer_free(fz_answer *a)
{
    free(a->storage);
    free(a->body_copy);
    a->storage = a->body_copy = NULL;
}

static const char *const IDS[FZ_BATCH_EVENTS] = {
    "01JAAAAAAAAAAAAAAAAAAAAAA1", "01JAAAAAAAAAAAAAAAAAAAAAA2", "01JAAAAAAAAAAAAAAAAAAAAAA3"};

const sk_batch *fz_answer_batch(void)
{
    static char json[FZ_BATCH_EVENTS][160];
    static sk_event events[FZ_BATCH_EVENTS];
    static sk_batch batch;
    if (batch.count == 0) {
        for (int i = 0; i < FZ_BATCH_EVENTS; i++) {
            int n = snprintf(json[i], sizeof json[i],
                             "{\"event_id\":\"%s\",\"event_type\":\"WPCreated\"}", IDS[i]);
            events[i] = (sk_event){IDS[i], json[i], (size_t)n};
        }
        batch = (sk_batch){sizeof batch, FZ_BATCH_EVENTS, events, 0, 1};
    }
    return &batch;
}

void fz_answer_result_init(sk_batch_result *r, sk_event_result *events)
{
    memset(r, 0, sizeof *r);
    memset(events, 0, FZ_BATCH_EVENTS * sizeof *events);
    r->struct_size = sizeof *r;
    r->count = FZ_BATCH_EVENTS;
    r->events = events;
    for (int i = 0; i < FZ_BATCH_EVENTS; i++)
        events[i].outcome = SK_OUTCOME_TRANSIENT;
}

static int terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

void fz_answer_result_check(const sk_batch_result *r, int rc)
{
    FZ_CHECK(rc == SK_TRANSPORT_OK || rc == SK_TRANSPORT_FAILED, "unknown return code");
    FZ_CHECK(r->count == FZ_BATCH_EVENTS, "result count changed");
    FZ_CHECK(terminated(r->detail, sizeof r->detail), "detail not NUL-terminated");
    FZ_CHECK((r->hints & ~(uint32_t)0x1f) == 0, "unknown hint bits");
    if (r->hints & SK_HINT_RETRY_AFTER)
        FZ_CHECK(r->retry_after_ms >= 0, "negative Retry-After");
    int all_transient = 1;
    for (uint32_t i = 0; i < r->count; i++) {
        const sk_event_result *e = &r->events[i];
        FZ_CHECK(e->outcome >= SK_OUTCOME_DELIVERED && e->outcome <= SK_OUTCOME_TRANSIENT,
                 "outcome out of range");
        FZ_CHECK(terminated(e->message, sizeof e->message), "message not NUL-terminated");
        all_transient &= e->outcome == SK_OUTCOME_TRANSIENT;
    }
    if (rc == SK_TRANSPORT_FAILED)
        FZ_CHECK(all_transient && r->hints == 0, "FAILED while the answer told something");
}
