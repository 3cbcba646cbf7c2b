/*
 * http-common: what the HTTP transports (http-batch over libcurl, h2-stream
 * over nghttp2) share, so that the contract is mapped in one place: the
 * request body, and the server's answer (CONTRACT.md §3) onto ABI outcomes
 * and hints. The mapping is pure (no I/O, no clock reads) so it can be tested
 * in isolation; the few helpers that reach out (the host's upcalls, the
 * ca_file check, logging) say so. A static library linked into each plugin
 * (hidden there).
 */
#ifndef SK_HTTP_COMMON_H
#define SK_HTTP_COMMON_H

#include <spec-kitty/transport.h>

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* The endpoints and the protocol header of CONTRACT.md §3, relative to server_url. */
#define HC_BATCH_PATH "/api/v1/events/batch/"
#define HC_HEALTH_PATH "/api/v1/sync/health/"
#define HC_PROTOCOL_HEADER "X-Spec-Kitty-Sync-Protocol"
#define HC_PROTOCOL_HEADER_LC "x-spec-kitty-sync-protocol" /* HTTP/2 wants lower case */
#define HC_PROTOCOL_VERSION "2.0"
/* create()'s error when the host has no server URL for the plugin. */
#define HC_NO_SERVER_URL                                                                           \
    "server_url is not set: put \"server_url\" in sync.json or set SPEC_KITTY_SAAS_URL"
/* Answers beyond this are drained but not kept: a results list is ~100 B/event. */
#define HC_RESPONSE_KEEP_MAX (8u << 20)

/* Retry-After values beyond this are clamped: a day is already "come back later". */
#define HC_RETRY_AFTER_CAP_MS (24LL * 3600 * 1000)

/* snprintf that truncates silently (messages are allowed to be cut). */
void hc_fmt(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Waits on cv (mu held) for a signal or at most ms milliseconds of the real-time clock. */
void hc_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t ms);

/* A growable byte buffer. Zero-initialise; free with hc_buf_free. */
typedef struct hc_buf {
    unsigned char *data;
    size_t len;
    size_t cap;
} hc_buf;

/* Ensures room for extra more bytes; returns 0, or -1 when memory runs out (buf unchanged). */
int hc_buf_reserve(hc_buf *buf, size_t extra);
/* Appends n bytes; returns 0, or -1 when memory runs out (buf unchanged). */
int hc_buf_append(hc_buf *buf, const void *bytes, size_t n);
/* Appends n bytes unless that takes buf past cap bytes or memory runs out;
   returns 1 when the bytes were dropped (the answer is truncated), else 0. */
int hc_buf_append_capped(hc_buf *buf, const void *bytes, size_t n, size_t cap);
void hc_buf_free(hc_buf *buf);

/*
 * Writes {"events":[<json 0>,<json 1>,...]} into out (replacing its
 * contents), its exact size reserved once. The envelopes are copied byte for
 * byte: they are compact JSON already. Returns 0, or -1 when memory runs out.
 */
int hc_events_json(const sk_batch *batch, hc_buf *out);

/*
 * Writes the gzip of bytes[0..n) into out (replacing its contents). level is
 * a gzip level 0..9 (libdeflate's, which compare with zlib's). Returns 0, or
 * -1 on a compression or memory failure.
 */
int hc_gzip(const void *bytes, size_t n, int level, hc_buf *out);

/* hc_events_json gzip'd by hc_gzip into out. Returns 0, or -1 as they do. */
int hc_gzip_events(const sk_batch *batch, int level, hc_buf *out);

/*
 * Parses a Retry-After value: delta seconds or an HTTP-date (compared with
 * now, Unix seconds). Stores milliseconds in [0, HC_RETRY_AFTER_CAP_MS].
 * Returns 0, or -1 when the value is neither form.
 */
int hc_retry_after_ms(const char *value, time_t now, int64_t *ms);

/*
 * Maps one per-event status of a 200 answer to an outcome. category is the
 * entry's error_category or NULL. Unknown or NULL status gives TRANSIENT.
 */
sk_outcome hc_status_outcome(const char *status, const char *category);

/* What the server answered, as the mapping needs it. */
typedef struct hc_answer {
    long status;      /* HTTP status */
    const char *body; /* response body, may be NULL */
    size_t body_len;
    const char *retry_after; /* Retry-After header value or NULL */
    const char *location;    /* where a 3xx points, or NULL */
    time_t now;              /* wall clock, Unix seconds (for HTTP-date) */
} hc_answer;

/*
 * Fills result from an HTTP answer to a batch POST: every event's outcome
 * and message (TRANSIENT unless the answer says otherwise), hints,
 * retry_after_ms, status_code and a one-line detail. Returns SK_TRANSPORT_OK
 * when the answer told something (an outcome other than transient, or a
 * hint), else SK_TRANSPORT_FAILED (all transient, detail says why).
 */
int hc_map_answer(const hc_answer *answer, const sk_batch *batch, sk_batch_result *result);

/*
 * hc_map_answer for a body kept with hc_buf_append_capped: when truncated,
 * the body is ignored (half a JSON document is no answer) and a 2xx answer's
 * detail says it was over HC_RESPONSE_KEEP_MAX bytes.
 */
int hc_map_kept_answer(const hc_answer *answer, int truncated, const sk_batch *batch,
                       sk_batch_result *result);

/*
 * The probe state of an answer to GET HC_HEALTH_PATH: 2xx connected, 401/403
 * not authenticated, anything else server unavailable. Writes the reason
 * "<protocol> <status> from <url>", then ": <server text>" from 300 up (body
 * NULL when it was not kept).
 */
int hc_probe_answer(long status, const char *body, size_t len, const char *protocol,
                    const char *url, char *reason, size_t reason_cap);

/*
 * Writes the server's human text of an error body into out (cap bytes, one
 * line, control characters replaced): the JSON "error"/"detail"/"message"
 * string when there is one, else the body itself. "" for an empty body.
 */
void hc_server_text(const char *body, size_t len, char *out, size_t cap);

/*
 * Replaces every occurrence of secret in text with "***" (in place; text only
 * shrinks), and the secret's first 8 or more bytes when text ends with them
 * (a text cut short inside it). Secrets shorter than 8 bytes are left alone.
 */
void hc_redact(char *text, const char *secret);

/*
 * Gets the host's Authorization header value (auth_header upcall) as a
 * malloc'd string in *out, NULL when there are no credentials. Returns 0, or
 * -1 with why when the value is unusable (a line break) or memory runs out.
 * Free it with hc_free_secret.
 */
int hc_auth_value(const sk_host_api *host, char **out, const char **why);
/* Wipes and frees a string that may hold the bearer (NULL is fine). */
void hc_free_secret(char *text);
/* The token inside an Authorization value ("Bearer abc" -> "abc"), or NULL. */
const char *hc_auth_secret(const char *auth_value);
/* Redacts secret from the result's detail and every event message. */
void hc_redact_result(sk_batch_result *result, const char *secret);

/* Every event transient with no message, no hints, status 0, detail why:
 * nothing is known about the batch. */
void hc_result_transient(const sk_batch *batch, sk_batch_result *result, const char *why);
/* hc_result_transient, then returns rc: a batch ended with nothing known
 * (refused before sending, or no answer). */
int hc_refuse(const sk_batch *batch, sk_batch_result *result, int rc, const char *why);

/*
 * Reads options.ca_file (a private CA's PEM bundle) into *out (malloc'd, NULL
 * when unset or ""). Returns 0, or -1 with one line in err naming the plugin
 * when the file is not readable or memory runs out.
 */
int hc_ca_file_option(const sk_host_api *host, const char *plugin, char **out, char *err,
                      size_t err_cap);

/*
 * Logs one warning per key of the options object (option_json upcall) that
 * defs does not name (typos): "<plugin>: unknown option "<key>" ignored".
 * defs ends with a NULL name.
 */
void hc_warn_unknown_options(const sk_host_api *host, const sk_option_def *defs,
                             const char *plugin);

/* True for a loopback host name or address: localhost, 127.x.y.z, ::1 or [::1]. */
int hc_is_loopback(const char *host);

#endif
