/* Fault rules, poison ids and the rate limiter; see faults.h. */
#include "faults.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct rule {
    rcv__fault f;
    int remaining;
    struct rule *next;
} rule;

struct rcv__faults {
    pthread_mutex_t lock;
    rule *head;
    json_t *poison; /* object used as a set of event ids */
};

static const char *const endpoint_names[] = {"", "batch", "token", "refresh", "health"};

rcv__faults *rcv__faults_new(void)
{
    rcv__faults *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    pthread_mutex_init(&f->lock, NULL);
    f->poison = json_object();
    return f;
}

/* Frees the rule list starting at r. */
static void free_rules(rule *r)
{
    while (r) {
        rule *next = r->next;
        rcv__fault_clear(&r->f);
        free(r);
        r = next;
    }
}

void rcv__faults_free(rcv__faults *f)
{
    if (!f)
        return;
    free_rules(f->head);
    json_decref(f->poison);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

void rcv__fault_clear(rcv__fault *fault)
{
    free(fault->body);
    free(fault->error);
    free(fault->upgrade_guidance);
    memset(fault, 0, sizeof *fault);
}

/* Copies an optional string member; -1 when present but not a string. */
static int opt_string(const json_t *spec, const char *key, char **out)
{
    const json_t *v = json_object_get(spec, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return -1;
    *out = strdup(json_string_value(v));
    return *out ? 0 : -1;
}

/* Parses "endpoint" (default batch). */
static int parse_endpoint(const json_t *spec, rcv__endpoint *ep)
{
    const json_t *v = json_object_get(spec, "endpoint");
    *ep = RCV_EP_BATCH;
    if (!v)
        return 0;
    for (int i = RCV_EP_BATCH; i <= RCV_EP_HEALTH; i++) {
        if (json_is_string(v) && strcmp(json_string_value(v), endpoint_names[i]) == 0) {
            *ep = (rcv__endpoint)i;
            return 0;
        }
    }
    return -1;
}

/* Parses "retry_after": seconds (integer) and "retry_after_format". */
static int parse_retry_after(const json_t *spec, rcv__fault *f)
{
    const json_t *v = json_object_get(spec, "retry_after");
    const json_t *fmt = json_object_get(spec, "retry_after_format");
    f->retry_after = -1;
    if (v && (!json_is_integer(v) || json_integer_value(v) < 0))
        return -1;
    if (v)
        f->retry_after = json_integer_value(v);
    if (fmt && !(json_is_string(fmt) && (strcmp(json_string_value(fmt), "seconds") == 0 ||
                                         strcmp(json_string_value(fmt), "date") == 0)))
        return -1;
    f->retry_after_date = fmt && strcmp(json_string_value(fmt), "date") == 0;
    return 0;
}

/* Parses "details": absent/false, true or "list", "string". */
static int parse_details(const json_t *spec, rcv__fault *f)
{
    const json_t *v = json_object_get(spec, "details");
    if (!v || json_is_false(v) || json_is_null(v))
        return 0;
    if (json_is_true(v) || (json_is_string(v) && strcmp(json_string_value(v), "list") == 0))
        f->details = 1;
    else if (json_is_string(v) && strcmp(json_string_value(v), "string") == 0)
        f->details = 2;
    else
        return -1;
    return 0;
}

/* Reads an optional non-negative integer member into *out. */
static int opt_int(const json_t *spec, const char *key, int64_t max, int64_t *out)
{
    const json_t *v = json_object_get(spec, key);
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
        return -1;
    *out = json_integer_value(v);
    return 0;
}

/* Fills r from spec; returns the name of the bad member or NULL. */
static const char *parse_rule(const json_t *spec, rule *r)
{
    int64_t status = 0, count = 1;
    if (!json_is_object(spec))
        return "fault (not an object)";
    if (parse_endpoint(spec, &r->f.endpoint))
        return "endpoint";
    if (opt_int(spec, "status", 599, &status) || (status != 0 && status < 200))
        return "status";
    if (opt_int(spec, "count", 1000000, &count) || count < 1)
        return "count";
    if (opt_int(spec, "delay_ms", 600000, &r->f.delay_ms))
        return "delay_ms";
    const json_t *drop = json_object_get(spec, "drop");
    if (drop && !json_is_boolean(drop))
        return "drop";
    r->f.drop = json_is_true(drop);
    if (parse_retry_after(spec, &r->f))
        return "retry_after";
    if (parse_details(spec, &r->f))
        return "details";
    if (opt_string(spec, "body", &r->f.body) || opt_string(spec, "error", &r->f.error) ||
        opt_string(spec, "upgrade_guidance", &r->f.upgrade_guidance))
        return "body/error/upgrade_guidance";
    r->f.status = (int)status;
    r->remaining = (int)count;
    return NULL;
}

int rcv__faults_push(rcv__faults *f, const json_t *spec, char *msg, size_t cap)
{
    rule *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    const char *bad = parse_rule(spec, r);
    if (bad) {
        snprintf(msg, cap, "invalid fault: %s", bad);
        free_rules(r);
        return -1;
    }
    pthread_mutex_lock(&f->lock);
    rule **tail = &f->head;
    while (*tail)
        tail = &(*tail)->next;
    *tail = r;
    pthread_mutex_unlock(&f->lock);
    return 0;
}

/* strdup that keeps NULL. */
static char *dup_opt(const char *s)
{
    return s ? strdup(s) : NULL;
}

int rcv__faults_take(rcv__faults *f, rcv__endpoint ep, rcv__fault *out)
{
    int taken = 0;
    pthread_mutex_lock(&f->lock);
    for (rule **p = &f->head; *p; p = &(*p)->next) {
        rule *r = *p;
        if (r->f.endpoint != ep)
            continue;
        *out = r->f;
        out->body = dup_opt(r->f.body);
        out->error = dup_opt(r->f.error);
        out->upgrade_guidance = dup_opt(r->f.upgrade_guidance);
        if (--r->remaining == 0) {
            *p = r->next;
            r->next = NULL;
            free_rules(r);
        }
        taken = 1;
        break;
    }
    pthread_mutex_unlock(&f->lock);
    return taken;
}

int rcv__faults_poison(rcv__faults *f, const char *event_id)
{
    pthread_mutex_lock(&f->lock);
    int rc = json_object_set_new(f->poison, event_id, json_true());
    pthread_mutex_unlock(&f->lock);
    return rc;
}

int rcv__faults_is_poison(rcv__faults *f, const char *event_id)
{
    pthread_mutex_lock(&f->lock);
    int hit = json_object_size(f->poison) > 0 && json_object_get(f->poison, event_id) != NULL;
    pthread_mutex_unlock(&f->lock);
    return hit;
}

void rcv__faults_reset(rcv__faults *f)
{
    pthread_mutex_lock(&f->lock);
    free_rules(f->head);
    f->head = NULL;
    json_object_clear(f->poison);
    pthread_mutex_unlock(&f->lock);
}

/* The JSON description of one queued rule. */
static json_t *rule_json(const rule *r)
{
    static const char *const details[] = {"none", "list", "string"};
    json_t *o =
        json_pack("{s:s, s:i, s:i, s:I, s:b, s:s}", "endpoint", endpoint_names[r->f.endpoint],
                  "status", r->f.status, "remaining", r->remaining, "delay_ms",
                  (json_int_t)r->f.delay_ms, "drop", r->f.drop, "details", details[r->f.details]);
    if (o && r->f.retry_after >= 0) {
        json_object_set_new(o, "retry_after", json_integer(r->f.retry_after));
        json_object_set_new(o, "retry_after_format",
                            json_string(r->f.retry_after_date ? "date" : "seconds"));
    }
    return o;
}

json_t *rcv__faults_json(rcv__faults *f)
{
    json_t *list = json_array(), *poison = json_array();
    pthread_mutex_lock(&f->lock);
    for (rule *r = f->head; r; r = r->next)
        json_array_append_new(list, rule_json(r));
    const char *key;
    json_t *v;
    json_object_foreach(f->poison, key, v)
    {
        json_array_append_new(poison, json_string(key));
    }
    pthread_mutex_unlock(&f->lock);
    return json_pack("{s:o, s:o}", "faults", list, "poison", poison);
}

/* ---- rate limiter ---- */

struct rcv__ratelimit {
    pthread_mutex_t lock;
    int64_t interval_ms;
    json_t *last; /* client key -> last accepted batch time (ms) */
};

rcv__ratelimit *rcv__ratelimit_new(int64_t interval_ms)
{
    rcv__ratelimit *rl = calloc(1, sizeof *rl);
    if (!rl)
        return NULL;
    pthread_mutex_init(&rl->lock, NULL);
    rl->interval_ms = interval_ms;
    rl->last = json_object();
    return rl;
}

void rcv__ratelimit_free(rcv__ratelimit *rl)
{
    if (!rl)
        return;
    json_decref(rl->last);
    pthread_mutex_destroy(&rl->lock);
    free(rl);
}

int rcv__ratelimit_check(rcv__ratelimit *rl, const char *key, int64_t now_ms, int64_t *wait_ms)
{
    if (rl->interval_ms <= 0)
        return 0;
    pthread_mutex_lock(&rl->lock);
    json_t *prev = json_object_get(rl->last, key);
    int64_t next = prev ? json_integer_value(prev) + rl->interval_ms : now_ms;
    int limited = now_ms < next;
    if (limited)
        *wait_ms = next - now_ms;
    else
        json_object_set_new(rl->last, key, json_integer(now_ms));
    pthread_mutex_unlock(&rl->lock);
    return limited;
}
