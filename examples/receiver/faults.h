/*
 * Fault injection (only with --faults) and the per-client rate limiter.
 * Faults are a FIFO of rules; each request to a rule's endpoint consumes one
 * use of the rule at the head for that endpoint. Thread-safe.
 */
#ifndef RCV_FAULTS_H
#define RCV_FAULTS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Endpoints a fault can target. */
typedef enum rcv__endpoint {
    RCV_EP_NONE = 0,
    RCV_EP_BATCH,
    RCV_EP_TOKEN,
    RCV_EP_REFRESH,
    RCV_EP_HEALTH,
} rcv__endpoint;

/* One fault as applied to one request (strings owned; rcv__fault_clear frees). */
typedef struct rcv__fault {
    rcv__endpoint endpoint;
    int status;           /* 0: answer normally (then delay/drop may still apply) */
    int64_t delay_ms;     /* wait this long before answering */
    int drop;             /* close the connection half-way through the response */
    int64_t retry_after;  /* seconds; -1 = no Retry-After header */
    int retry_after_date; /* send Retry-After as an HTTP-date */
    int details;          /* 400: 0 none, 1 list, 2 list inside a JSON string */
    char *body;           /* raw body to send instead of the default, or NULL */
    char *error;          /* "error" text, or NULL for the default */
    char *upgrade_guidance;
} rcv__fault;

typedef struct rcv__faults rcv__faults;

rcv__faults *rcv__faults_new(void);
void rcv__faults_free(rcv__faults *f);

/* Queues the rule described by spec (see README.md). -1 with msg if invalid. */
int rcv__faults_push(rcv__faults *f, const json_t *spec, char *msg, size_t cap);

/* Takes one use of the first rule for ep into *out. 1 taken, 0 none. */
int rcv__faults_take(rcv__faults *f, rcv__endpoint ep, rcv__fault *out);
void rcv__fault_clear(rcv__fault *fault);

/* Marks event_id as poison: a batch holding it gets 400 without details. */
int rcv__faults_poison(rcv__faults *f, const char *event_id);
int rcv__faults_is_poison(rcv__faults *f, const char *event_id);

/* Drops every rule and poison mark. */
void rcv__faults_reset(rcv__faults *f);

/* {"faults": [rule...], "poison": [id...]} (new reference). */
json_t *rcv__faults_json(rcv__faults *f);

/* Rate limiter: one batch per interval_ms per client key. */
typedef struct rcv__ratelimit rcv__ratelimit;
rcv__ratelimit *rcv__ratelimit_new(int64_t interval_ms);
void rcv__ratelimit_free(rcv__ratelimit *rl);

/*
 * Returns 0 and records now_ms when key may send a batch now; otherwise 1
 * with the milliseconds to wait in *wait_ms. Always 0 when interval_ms is 0.
 */
int rcv__ratelimit_check(rcv__ratelimit *rl, const char *key, int64_t now_ms, int64_t *wait_ms);

#endif
