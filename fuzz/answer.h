/*
 * A server's answer to a batch POST, as the answer harnesses read it from
 * fuzz input. One text format serves every HTTP transport plugin, so a
 * plugin's mapping (answer → outcomes, hints) is one more small harness:
 *
 *   STATUS\n                  decimal HTTP status, e.g. "412"
 *   Name: value\n ...         headers (Retry-After, Location, others ignored)
 *   \n
 *   body                      every remaining byte, as received
 *
 * Input without the blank line is all headers and no body.
 */
#ifndef SK_FUZZ_ANSWER_H
#define SK_FUZZ_ANSWER_H

#include <spec-kitty/transport.h>

#include <stddef.h>
#include <stdint.h>

typedef struct fz_answer {
    long status;
    const char *retry_after; /* NULL when absent */
    const char *location;    /* NULL when absent */
    const char *body;        /* NULL when empty; exactly body_len bytes, no NUL after them
                                (plugins keep the body in a plain byte buffer) */
    size_t body_len;
    char *storage;   /* owned copy of the head the header pointers point into */
    char *body_copy; /* owned */
} fz_answer;

/* Splits data into an answer (never fails: odd input gives odd fields). */
void fz_answer_parse(const uint8_t *data, size_t size, fz_answer *out);
void fz_answer_free(fz_answer *a);

/* The batch every answer harness sends: FZ_BATCH_EVENTS events with fixed ids
 * (01JAAAAAAAAAAAAAAAAAAAAAA1, ...A2, ...A3), as the seed answers name them. */
#define FZ_BATCH_EVENTS 3
const sk_batch *fz_answer_batch(void);

/* A result for that batch, pre-filled as the host does (every event transient). */
void fz_answer_result_init(sk_batch_result *r, sk_event_result *events);

/* Aborts unless r is a well-formed result for fz_answer_batch(). */
void fz_answer_result_check(const sk_batch_result *r, int rc);

#endif
