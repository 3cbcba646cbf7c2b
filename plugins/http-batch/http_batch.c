/*
 * http-batch: the transport that POSTs each batch as one gzip'd JSON request
 * to {server_url}/api/v1/events/batch/ (CONTRACT.md §3) over libcurl.
 *
 * A pool of options.connections slots (default 2), each an easy handle inside
 * its own multi handle, so each keep-alive connection stays alive across
 * batches and cancel() can wake every poll from any thread at once; plus one
 * slot for probes, which may overlap a send.
 *
 * Threads: submit() hands a batch to an idle slot's worker thread (started on
 * the slot's first batch, joined by destroy), which sends it as send() does
 * and calls the completion with no lock held. With N slots, N batches are in
 * flight at once, so the server stores one while the next is on the wire.
 * send() borrows an idle slot and runs on the caller's thread. p->mu guards
 * which slot is busy and the jobs handed over; a slot's connection belongs to
 * whoever marked it busy.
 */
#include "http_common.h"

#include <spec-kitty/transport.h>

#include <curl/curl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define HB_VERSION "1.0.0"
#define HB_PROTOCOL_HEADER HC_PROTOCOL_HEADER ": " HC_PROTOCOL_VERSION
/* Longest single poll wait; cancel() wakes the poll sooner. */
#define HB_POLL_MAX_MS 1000
/* Longest wait of send() for a free connection between looks at cancel and the deadline. */
#define HB_SLOT_WAIT_MS 50

/* Every option the plugin reads: hb_option_defs is what the host shows (ABI 1.1,
 * `spec-kitty sync plugins`), hb_limits the integer defaults and ranges the parser
 * checks, in the same order; the unknown-key warning uses the names. README.md
 * documents them. */
enum {
    HB_OPT_GZIP,
    HB_OPT_CONNECT,
    HB_OPT_TIMEOUT,
    HB_OPT_CONNECTIONS,
    HB_OPT_CA,
    HB_OPT_INSECURE,
    HB_OPT_COUNT
};

#define HB_STR_(x) #x
#define HB_STR(x) HB_STR_(x)
#define HB_GZIP_DEFAULT 6
#define HB_CONNECT_DEFAULT 10000
#define HB_TIMEOUT_DEFAULT 60000
#define HB_CONNECTIONS_DEFAULT 2
#define HB_CONNECTIONS_MAX 8

static const sk_option_def hb_option_defs[HB_OPT_COUNT + 1] = {
    [HB_OPT_GZIP] = {"gzip_level", "integer", HB_STR(HB_GZIP_DEFAULT),
                     "zlib level of the request body (0..9)"},
    [HB_OPT_CONNECT] = {"connect_timeout_ms", "integer", HB_STR(HB_CONNECT_DEFAULT),
                        "TCP+TLS connect timeout"},
    [HB_OPT_TIMEOUT] = {"timeout_ms", "integer", HB_STR(HB_TIMEOUT_DEFAULT),
                        "whole request timeout"},
    [HB_OPT_CONNECTIONS] = {"connections", "integer", HB_STR(HB_CONNECTIONS_DEFAULT),
                            "keep-alive connections, one batch in flight on each (1..8)"},
    [HB_OPT_CA] = {"ca_file", "string", "", "PEM bundle of a private CA to trust"},
    [HB_OPT_INSECURE] = {"insecure", "boolean", "false",
                         "true disables TLS verification (warned)"},
    [HB_OPT_COUNT] = {NULL, NULL, NULL, NULL},
};

typedef struct hb_option {
    int64_t dflt, min, max; /* integer options only */
} hb_option;

static const hb_option hb_limits[HB_OPT_COUNT] = {
    [HB_OPT_GZIP] = {HB_GZIP_DEFAULT, 0, 9},
    [HB_OPT_CONNECT] = {HB_CONNECT_DEFAULT, 1, 86400000},
    [HB_OPT_TIMEOUT] = {HB_TIMEOUT_DEFAULT, 1, 86400000},
    [HB_OPT_CONNECTIONS] = {HB_CONNECTIONS_DEFAULT, 1, HB_CONNECTIONS_MAX},
};

/* One libcurl transfer slot: a multi handle holding one easy handle. */
typedef struct hb_conn {
    CURLM *multi;
    CURL *easy;
    int index;              /* 0-based slot number, for logs */
    hc_buf body;            /* gzip request body, reused across batches */
    hc_buf response;        /* body of the last answer (up to HC_RESPONSE_KEEP_MAX) */
    int response_truncated; /* the answer was longer than we keep */
    int connected_before;   /* for the reconnects metric */
    curl_socket_t sock;     /* the last socket libcurl opened for this slot */
    char errbuf[CURL_ERROR_SIZE];
} hb_conn;

struct hb_plugin;

/* A batch connection and the worker that sends async batches on it. Fields
 * after conn are under the plugin's mu. */
typedef struct hb_slot {
    hb_conn conn;
    struct hb_plugin *p;
    int busy;    /* a send() or a job owns conn */
    int started; /* thread runs (joined by destroy) */
    pthread_t thread;
    pthread_cond_t wake; /* a job came, or stop */
    /* The job handed over by submit(); batch NULL when none waits. */
    const sk_batch *batch;
    sk_batch_result *result;
    sk_completion_fn done;
    void *cb_ctx;
} hb_slot;

typedef struct hb_plugin {
    const sk_host_api *host;
    char *batch_url;
    char *health_url;
    char *user_agent;
    char *ca_file;
    int gzip_level;
    long connect_timeout_ms;
    long timeout_ms;
    int insecure;
    /* Set by cancel() from any thread; final for this instance. */
    atomic_int cancelled;
    int nslots; /* options.connections */
    hb_slot slots[HB_CONNECTIONS_MAX];
    hb_conn probe_conn;
    pthread_mutex_t mu;
    pthread_cond_t freed; /* a slot became idle */
    int stop;             /* under mu: destroy asks the workers to end */
} hb_plugin;

/* How a transfer ended, beyond libcurl's own code. */
typedef enum hb_end { HB_END_DONE, HB_END_CANCELLED, HB_END_DEADLINE } hb_end;

static int64_t hb_now(const hb_plugin *p)
{
    return p->host->now_ms(p->host->host_ctx);
}

static void hb_copy(char *dst, size_t cap, const char *src)
{
    if (cap == 0)
        return;
    hc_fmt(dst, cap, "%s", src ? src : "");
}

/* Returns a malloc'd "a" + "b"; NULL on out-of-memory. */
static char *hb_concat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (s) {
        memcpy(s, a, la);
        memcpy(s + la, b, lb + 1);
    }
    return s;
}

/* libcurl write callback: keeps the answer up to the cap, drains the rest. */
static size_t hb_on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    hb_conn *c = arg;
    size_t n = size * nmemb;
    if (hc_buf_append_capped(&c->response, data, n, HC_RESPONSE_KEEP_MAX))
        c->response_truncated = 1;
    return n;
}

/* libcurl socket callback: remembers the socket, for hb_on_header. */
static int hb_on_socket(void *arg, curl_socket_t fd, curlsocktype purpose)
{
    (void)purpose;
    ((hb_conn *)arg)->sock = fd;
    return CURL_SOCKOPT_OK;
}

/*
 * libcurl header callback: at the blank line ending the header block, ACK at
 * once. A server with Nagle's algorithm on (a plain Python http.server)
 * writes the body after the headers and holds it until they are ACKed, and
 * on a kept-alive connection Linux delays that ACK by ~40 ms: per batch
 * (bench/README.md, "Nagle"). TCP_QUICKACK sends the pending ACK now.
 */
static size_t hb_on_header(char *line, size_t size, size_t nmemb, void *arg)
{
    size_t n = size * nmemb;
#ifdef TCP_QUICKACK
    hb_conn *c = arg;
    if ((n == 2 && line[0] == '\r') || (n == 1 && line[0] == '\n')) {
        int one = 1;
        (void)setsockopt(c->sock, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
    }
#else
    (void)line, (void)arg;
#endif
    return n;
}

/* libcurl progress callback: a second way out of a transfer after cancel(). */
static int hb_on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                          curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return atomic_load(&((hb_plugin *)arg)->cancelled) ? 1 : 0;
}

/* Sets the options every request of this slot shares. Returns 0 or -1. */
static int hb_conn_init(hb_plugin *p, hb_conn *c)
{
    c->multi = curl_multi_init();
    c->easy = curl_easy_init();
    if (!c->multi || !c->easy)
        return -1;
    CURL *e = c->easy;
    int bad = 0;
    bad += CURLE_OK != curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    /* Cancel during a slow DNS lookup must not wait for the resolver thread
     * (libcurl >= 7.87; without it, cancel waits for getaddrinfo). */
    (void)curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L);
    bad += CURLE_OK != curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    bad += CURLE_OK != curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    bad += CURLE_OK != curl_easy_setopt(e, CURLOPT_USERAGENT, p->user_agent);
    bad += CURLE_OK != curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    bad += CURLE_OK != curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    bad += CURLE_OK != curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, p->insecure ? 0L : 1L);
    bad += CURLE_OK != curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, p->insecure ? 0L : 2L);
    if (p->ca_file)
        bad += CURLE_OK != curl_easy_setopt(e, CURLOPT_CAINFO, p->ca_file);
    bad += CURLE_OK != curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, hb_on_body);
    bad += CURLE_OK != curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    c->sock = CURL_SOCKET_BAD;
    bad += CURLE_OK != curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, hb_on_socket);
    bad += CURLE_OK != curl_easy_setopt(e, CURLOPT_SOCKOPTDATA, c);
    bad += CURLE_OK != curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, hb_on_header);
    bad += CURLE_OK != curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    bad += CURLE_OK != curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, hb_on_progress);
    bad += CURLE_OK != curl_easy_setopt(e, CURLOPT_XFERINFODATA, p);
    bad += CURLE_OK != curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    bad += CURLE_OK != curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
    return bad ? -1 : 0;
}

static void hb_conn_free(hb_conn *c)
{
    if (c->easy)
        curl_easy_cleanup(c->easy);
    if (c->multi)
        curl_multi_cleanup(c->multi);
    hc_buf_free(&c->body);
    hc_buf_free(&c->response);
}

/* Overwrites header values before freeing: the list holds the bearer token. */
static void hb_headers_free(struct curl_slist *list)
{
    for (struct curl_slist *n = list; n; n = n->next)
        explicit_bzero(n->data, strlen(n->data));
    curl_slist_free_all(list);
}

/*
 * Gets the host's Authorization value as a malloc'd "Authorization: <value>"
 * line in *out (NULL when there are no credentials). Returns 0, or -1 with
 * why when the value is unusable.
 */
static int hb_auth_line(const hb_plugin *p, char **out, const char **why)
{
    char *value = NULL;
    *out = NULL;
    if (hc_auth_value(p->host, &value, why) != 0)
        return -1;
    if (value) {
        *out = hb_concat("Authorization: ", value);
        hc_free_secret(value);
        if (!*out) {
            *why = "out of memory";
            return -1;
        }
    }
    return 0;
}

/* Appends line to *list; on failure frees the whole list, sets it NULL, returns -1. */
static int hb_append(struct curl_slist **list, const char *line)
{
    struct curl_slist *grown = curl_slist_append(*list, line);
    if (!grown) {
        hb_headers_free(*list);
        *list = NULL;
        return -1;
    }
    *list = grown;
    return 0;
}

/* The request headers (POST or GET); NULL with why on failure. */
static struct curl_slist *hb_headers(const hb_plugin *p, int post, const char **why)
{
    static const char *const common[] = {HB_PROTOCOL_HEADER, "Accept: application/json"};
    static const char *const post_only[] = {
        "Content-Type: application/json", "Content-Encoding: gzip",
        "Expect:", /* no 100-continue round trip: the body is small and ours */
    };
    struct curl_slist *list = NULL;
    int bad = 0;
    for (size_t i = 0; !bad && i < sizeof common / sizeof common[0]; i++)
        bad = hb_append(&list, common[i]);
    for (size_t i = 0; !bad && post && i < sizeof post_only / sizeof post_only[0]; i++)
        bad = hb_append(&list, post_only[i]);
    char *auth = NULL;
    *why = "out of memory";
    if (!bad && hb_auth_line(p, &auth, why) != 0)
        bad = 1;
    if (!bad && auth)
        bad = hb_append(&list, auth);
    hc_free_secret(auth);
    if (bad) {
        hb_headers_free(list);
        return NULL;
    }
    return list;
}

/*
 * Runs the slot's prepared transfer until done, cancel() or the deadline.
 * *code gets libcurl's result when it finished.
 */
static hb_end hb_run(hb_plugin *p, hb_conn *c, int64_t deadline_ms, CURLcode *code)
{
    hb_end end = HB_END_DONE;
    *code = CURLE_OK;
    c->response.len = 0;
    c->response_truncated = 0;
    c->errbuf[0] = '\0';
    if (curl_multi_add_handle(c->multi, c->easy) != CURLM_OK) {
        *code = CURLE_FAILED_INIT;
        return HB_END_DONE;
    }
    for (;;) {
        int running = 0;
        CURLMcode mc = curl_multi_perform(c->multi, &running);
        if (atomic_load(&p->cancelled)) {
            end = HB_END_CANCELLED;
            break;
        }
        if (mc != CURLM_OK) {
            *code = CURLE_FAILED_INIT;
            hb_copy(c->errbuf, sizeof c->errbuf, curl_multi_strerror(mc));
            break;
        }
        if (!running) {
            int left_msgs;
            CURLMsg *msg = curl_multi_info_read(c->multi, &left_msgs);
            if (msg && msg->msg == CURLMSG_DONE)
                *code = msg->data.result;
            break;
        }
        int64_t left = deadline_ms - hb_now(p);
        if (left <= 0) {
            end = HB_END_DEADLINE;
            break;
        }
        int wait = left < HB_POLL_MAX_MS ? (int)left : HB_POLL_MAX_MS;
        curl_multi_poll(c->multi, NULL, 0, wait, NULL);
    }
    /* Removing an unfinished transfer closes its connection; a finished one stays cached. */
    curl_multi_remove_handle(c->multi, c->easy);
    return end;
}

/* Sets the per-request timeouts: the configured ones, never past the deadline. */
static void hb_set_timeouts(const hb_plugin *p, hb_conn *c, int64_t left_ms)
{
    long total = p->timeout_ms < left_ms ? p->timeout_ms : (long)left_ms;
    long connect = p->connect_timeout_ms < total ? p->connect_timeout_ms : total;
    curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, total);
    curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT_MS, connect);
}

/* One line on why a transfer produced no HTTP answer. A certificate that does not
 * verify says what to configure: a private CA is the usual cause, and the user
 * sees only this line (ca_file is the configured one, or NULL). */
static void hb_transport_error(const hb_conn *c, const char *ca_file, hb_end end, CURLcode code,
                               int64_t limit_ms, int deadline_bound, char *out, size_t cap)
{
    long proxy_status = 0;
    char *url = NULL;
    if (end == HB_END_CANCELLED)
        hb_copy(out, cap, "cancelled");
    else if (code == CURLE_PEER_FAILED_VERIFICATION)
        hc_fmt(out, cap, "TLS: %s%s", c->errbuf[0] ? c->errbuf : curl_easy_strerror(code),
                   ca_file ? " (did the CA in transport.options.ca_file sign the server's "
                             "certificate?)"
                           : " (a private CA? set transport.options.ca_file in sync.json)");
    else if (end == HB_END_DEADLINE || code == CURLE_OPERATION_TIMEDOUT)
        hc_fmt(out, cap, "%s after %lld ms%s%s",
                   deadline_bound ? "batch deadline reached" : "request timed out",
                   (long long)limit_ms, c->errbuf[0] ? ": " : "", c->errbuf);
    else if (curl_easy_getinfo(c->easy, CURLINFO_HTTP_CONNECTCODE, &proxy_status) == CURLE_OK &&
             proxy_status >= 300 &&
             curl_easy_getinfo(c->easy, CURLINFO_EFFECTIVE_URL, &url) == CURLE_OK)
        /* curl's own words ("Failure when receiving data from the peer") hide who refused. */
        hc_fmt(out, cap, "proxy refused CONNECT to %s (HTTP %ld): check https_proxy and no_proxy",
               url ? url : "the server", proxy_status);
    else if (c->errbuf[0] && strstr(c->errbuf, curl_easy_strerror(code)))
        hb_copy(out, cap, c->errbuf); /* already says it: no "X: ... X" */
    else
        hc_fmt(out, cap, "%s%s%s", curl_easy_strerror(code), c->errbuf[0] ? ": " : "",
                   c->errbuf);
}

/* Adds the metrics of the transfer just run on batch slot c (upcalls are thread-safe;
 * connected_before is the slot's own). */
static void hb_count(hb_plugin *p, hb_conn *c)
{
    const sk_host_api *h = p->host;
    curl_off_t sent = 0;
    long connects = 0;
    curl_easy_getinfo(c->easy, CURLINFO_SIZE_UPLOAD_T, &sent);
    curl_easy_getinfo(c->easy, CURLINFO_NUM_CONNECTS, &connects);
    h->metric_add(h->host_ctx, "requests", 1);
    h->metric_add(h->host_ctx, "bytes_sent", (int64_t)sent);
    if (connects > 0) {
        h->metric_add(h->host_ctx, "connects", connects);
        if (c->connected_before)
            h->metric_add(h->host_ctx, "reconnects", connects);
        c->connected_before = 1;
    }
}

/* A response header's value (last response of the transfer), or NULL. */
static const char *hb_header(CURL *e, const char *name)
{
    struct curl_header *h = NULL;
    if (curl_easy_header(e, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK || !h)
        return NULL;
    return h->value;
}

/* The bearer token inside the request headers (for redaction), or NULL. */
static const char *hb_secret(const struct curl_slist *headers)
{
    static const char prefix[] = "Authorization: ";
    for (; headers; headers = headers->next)
        if (strncmp(headers->data, prefix, sizeof prefix - 1) == 0)
            return hc_auth_secret(headers->data + sizeof prefix - 1);
    return NULL;
}

/*
 * Turns a finished transfer into the result. An error answer that arrived
 * while the upload was still running (an early 413, say) still counts.
 */
static int hb_send_result(hb_plugin *p, hb_conn *c, const sk_batch *batch, sk_batch_result *result,
                          hb_end end, CURLcode code, int64_t started, int64_t left)
{
    long status = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    int answered = end == HB_END_DONE && status != 0 &&
                   (code == CURLE_OK ||
                    (status >= 400 && (code == CURLE_SEND_ERROR || code == CURLE_RECV_ERROR)));
    if (!answered) {
        char line[SK_BATCH_DETAIL_MAX];
        hb_transport_error(c, p->ca_file, end, code, hb_now(p) - started, left <= p->timeout_ms,
                           line, sizeof line);
        return hc_refuse(batch, result,
                         end == HB_END_CANCELLED ? SK_TRANSPORT_CANCELLED : SK_TRANSPORT_FAILED,
                         line);
    }
    const char *location = NULL;
    curl_easy_getinfo(c->easy, CURLINFO_REDIRECT_URL, &location);
    hc_answer answer = {status,
                        (const char *)c->response.data,
                        code == CURLE_OK ? c->response.len : 0, /* cut short: no answer body */
                        hb_header(c->easy, "Retry-After"),
                        location,
                        time(NULL)};
    return hc_map_kept_answer(&answer, c->response_truncated, batch, result);
}

/*
 * Sends one batch on slot c, which the caller owns (send() and every worker
 * run this). rc OK when the answer told something, FAILED when nothing is
 * known (all transient), CANCELLED after cancel().
 */
static int hb_send_on(hb_plugin *p, hb_conn *c, const sk_batch *batch, sk_batch_result *result)
{
    if (result->count != batch->count || batch->count == 0)
        return hc_refuse(batch, result, SK_TRANSPORT_FAILED, "result and batch sizes differ");
    if (atomic_load(&p->cancelled))
        return hc_refuse(batch, result, SK_TRANSPORT_CANCELLED, "cancelled");
    int64_t left = batch->deadline_ms - hb_now(p);
    if (left <= 0)
        return hc_refuse(batch, result, SK_TRANSPORT_FAILED,
                         "batch deadline passed before sending");
    if (hc_gzip_events(batch, p->gzip_level, &c->body) != 0)
        return hc_refuse(batch, result, SK_TRANSPORT_FAILED, "could not compress the batch");
    const char *why = NULL;
    struct curl_slist *headers = hb_headers(p, 1, &why);
    if (!headers)
        return hc_refuse(batch, result, SK_TRANSPORT_FAILED, why);

    curl_easy_setopt(c->easy, CURLOPT_URL, p->batch_url);
    curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, (const char *)c->body.data);
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body.len);
    hb_set_timeouts(p, c, left);
    int64_t started = hb_now(p);
    CURLcode code;
    hb_end end = hb_run(p, c, batch->deadline_ms, &code);
    curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, NULL);
    hb_count(p, c);
    int rc = hb_send_result(p, c, batch, result, end, code, started, left);
    hc_redact_result(result, hb_secret(headers));
    hb_headers_free(headers);
    p->host->log(p->host->host_ctx, SK_LOG_DEBUG,
                 "http-batch: batch %llu on connection %d, %u events, %zu bytes gzip: HTTP %d "
                 "in %lld ms (%s)",
                 (unsigned long long)batch->batch_seq, c->index, batch->count, c->body.len,
                 (int)result->status_code, (long long)(hb_now(p) - started),
                 result->detail[0] ? result->detail : "ok");
    return rc;
}

/* The idle slot with the lowest index (its connection is the likeliest to be
 * alive), or NULL when all are busy. mu held. */
static hb_slot *hb_idle_slot(hb_plugin *p)
{
    for (int i = 0; i < p->nslots; i++)
        if (!p->slots[i].busy)
            return &p->slots[i];
    return NULL;
}

/* Gives slot s back to the pool. mu held. */
static void hb_release_locked(hb_plugin *p, hb_slot *s)
{
    s->busy = 0;
    pthread_cond_broadcast(&p->freed);
}

/* Sends one batch synchronously (see transport.h) on a slot borrowed from the
 * pool; async batches may hold every slot: waits for one until the deadline. */
static int hb_send(void *self, const sk_batch *batch, sk_batch_result *result)
{
    hb_plugin *p = self;
    hb_slot *s = NULL;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        s = hb_idle_slot(p);
        int64_t left = batch->deadline_ms - hb_now(p);
        if (s || atomic_load(&p->cancelled) || left <= 0)
            break;
        /* short steps: the host's clock may be its own */
        hc_cond_wait_ms(&p->freed, &p->mu, left < HB_SLOT_WAIT_MS ? left : HB_SLOT_WAIT_MS);
    }
    if (s)
        s->busy = 1;
    pthread_mutex_unlock(&p->mu);
    if (!s && atomic_load(&p->cancelled))
        return hc_refuse(batch, result, SK_TRANSPORT_CANCELLED, "cancelled");
    if (!s)
        return hc_refuse(batch, result, SK_TRANSPORT_FAILED,
                         "batch deadline reached while every connection was busy");
    int rc = hb_send_on(p, &s->conn, batch, result);
    pthread_mutex_lock(&p->mu);
    hb_release_locked(p, s);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

/*
 * A slot's worker: sends each job handed over by submit() on the slot's
 * connection, frees the slot, then completes the batch with no lock held (the
 * completion may submit again, and the host may submit the next batch the
 * moment it sees this one complete, so the slot is free by then).
 */
static void *hb_worker(void *arg)
{
    hb_slot *s = arg;
    hb_plugin *p = s->p;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!s->batch && !p->stop)
            pthread_cond_wait(&s->wake, &p->mu);
        if (!s->batch)
            break;
        const sk_batch *batch = s->batch;
        sk_batch_result *result = s->result;
        sk_completion_fn done = s->done;
        void *cb_ctx = s->cb_ctx;
        s->batch = NULL;
        pthread_mutex_unlock(&p->mu);
        int rc = hb_send_on(p, &s->conn, batch, result);
        pthread_mutex_lock(&p->mu);
        hb_release_locked(p, s);
        pthread_mutex_unlock(&p->mu);
        done(cb_ctx, rc, result);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Accepts a batch for an idle connection's worker (see transport.h): BUSY when
 * every connection has a batch in flight. */
static int hb_submit(void *self, const sk_batch *batch, sk_batch_result *result,
                     sk_completion_fn done, void *cb_ctx)
{
    hb_plugin *p = self;
    if (result->count != batch->count || batch->count == 0)
        return hc_refuse(batch, result, SK_TRANSPORT_FAILED, "result and batch sizes differ");
    if (atomic_load(&p->cancelled))
        return hc_refuse(batch, result, SK_TRANSPORT_CANCELLED, "cancelled");
    int rc = SK_TRANSPORT_BUSY;
    pthread_mutex_lock(&p->mu);
    hb_slot *s = hb_idle_slot(p);
    if (s && !s->started)
        s->started = pthread_create(&s->thread, NULL, hb_worker, s) == 0;
    if (s && s->started) {
        s->busy = 1;
        s->batch = batch;
        s->result = result;
        s->done = done;
        s->cb_ctx = cb_ctx;
        pthread_cond_signal(&s->wake);
        rc = SK_TRANSPORT_OK;
    } else if (s) {
        rc = SK_TRANSPORT_FAILED;
    }
    pthread_mutex_unlock(&p->mu);
    if (rc == SK_TRANSPORT_FAILED)
        return hc_refuse(batch, result, rc, "could not start a thread for the connection");
    return rc;
}

/* True for libcurl errors that mean the server was never reached. */
static int hb_unreachable(CURLcode code, hb_conn *c)
{
    switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
        return 1;
    case CURLE_OPERATION_TIMEDOUT: {
        /* Timed out before the TCP connection stood: unreachable, not slow. */
        curl_off_t connect_us = 0;
        curl_easy_getinfo(c->easy, CURLINFO_CONNECT_TIME_T, &connect_us);
        return connect_us == 0;
    }
    default:
        return 0;
    }
}

/* Classifies a finished probe transfer and writes its one-line reason. */
static int hb_probe_state(hb_plugin *p, hb_end end, CURLcode code, int64_t started, int64_t left,
                          char *reason, size_t reason_cap)
{
    hb_conn *c = &p->probe_conn;
    long status = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    if (end != HB_END_DONE || code != CURLE_OK || status == 0) {
        char line[SK_BATCH_DETAIL_MAX];
        hb_transport_error(c, p->ca_file, end, code, hb_now(p) - started, left <= p->timeout_ms,
                           line, sizeof line);
        hb_copy(reason, reason_cap, line);
        if (end == HB_END_DONE && code != CURLE_OK && !hb_unreachable(code, c))
            return SK_PROBE_SERVER_UNAVAILABLE;
        return SK_PROBE_UNREACHABLE;
    }
    return hc_probe_answer(status, c->response_truncated ? NULL : (const char *)c->response.data,
                           c->response.len, "HTTP", p->health_url, reason, reason_cap);
}

/* Checks GET {server_url}/api/v1/sync/health/ with the bearer (see transport.h). */
static int hb_probe(void *self, int64_t deadline_ms, char *reason, size_t reason_cap)
{
    hb_plugin *p = self;
    if (atomic_load(&p->cancelled)) {
        hb_copy(reason, reason_cap, "cancelled");
        return SK_PROBE_UNREACHABLE;
    }
    int64_t left = deadline_ms - hb_now(p);
    if (left <= 0) {
        hb_copy(reason, reason_cap, "probe deadline passed before connecting");
        return SK_PROBE_UNREACHABLE;
    }
    const char *why = NULL;
    struct curl_slist *headers = hb_headers(p, 0, &why);
    if (!headers) {
        hb_copy(reason, reason_cap, why);
        return SK_PROBE_UNREACHABLE;
    }
    hb_conn *c = &p->probe_conn;
    curl_easy_setopt(c->easy, CURLOPT_URL, p->health_url);
    curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c->easy, CURLOPT_HTTPGET, 1L);
    hb_set_timeouts(p, c, left);
    int64_t started = hb_now(p);
    CURLcode code;
    hb_end end = hb_run(p, c, deadline_ms, &code);
    curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, NULL);
    int state = hb_probe_state(p, end, code, started, left, reason, reason_cap);
    if (reason_cap > 0)
        hc_redact(reason, hb_secret(headers));
    hb_headers_free(headers);
    return state;
}

/* Aborts what is in flight and every later call: sets the flag, wakes every poll.
 * The multi handles live from create to destroy, so this needs no lock. */
static void hb_cancel(void *self)
{
    hb_plugin *p = self;
    atomic_store(&p->cancelled, 1);
    for (int i = 0; i < p->nslots; i++)
        curl_multi_wakeup(p->slots[i].conn.multi);
    curl_multi_wakeup(p->probe_conn.multi);
}

static void hb_destroy(void *self)
{
    hb_plugin *p = self;
    if (!p)
        return;
    /* Every batch completed before destroy (transport.h): the workers wait for jobs. */
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    for (int i = 0; i < p->nslots; i++)
        pthread_cond_signal(&p->slots[i].wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < HB_CONNECTIONS_MAX; i++) {
        hb_slot *s = &p->slots[i];
        if (s->started)
            pthread_join(s->thread, NULL);
        pthread_cond_destroy(&s->wake);
        hb_conn_free(&s->conn);
    }
    hb_conn_free(&p->probe_conn);
    pthread_cond_destroy(&p->freed);
    pthread_mutex_destroy(&p->mu);
    free(p->batch_url);
    free(p->health_url);
    free(p->user_agent);
    free(p->ca_file);
    free(p);
    curl_global_cleanup();
}

/* Warns when the bearer would cross the network in clear text. */
static void hb_warn_plain_http(const sk_host_api *h, const char *url)
{
    if (strncasecmp(url, "http://", 7) != 0)
        return;
    CURLU *u = curl_url();
    char *host = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        if (!hc_is_loopback(host))
            h->log(h->host_ctx, SK_LOG_WARN,
                   "http-batch: server_url uses plain http to %s: credentials travel unencrypted",
                   host);
    }
    curl_free(host);
    curl_url_cleanup(u);
}

/* Reads integer option which into *out, checking its range. Returns 0, or -1 with err. */
static int hb_int_option(const sk_host_api *h, int which, int64_t *out, char *err, size_t err_cap)
{
    const hb_option *o = &hb_limits[which];
    const char *key = hb_option_defs[which].name;
    int64_t v = h->option_int(h->host_ctx, key, o->dflt);
    if (v < o->min || v > o->max) {
        hc_fmt(err, err_cap, "http-batch: options.%s must be %lld..%lld, not %lld", key,
                   (long long)o->min, (long long)o->max, (long long)v);
        return -1;
    }
    *out = v;
    return 0;
}

/* Reads and checks the options into p. Returns 0, or -1 with err. */
static int hb_read_options(hb_plugin *p, char *err, size_t err_cap)
{
    const sk_host_api *h = p->host;
    int64_t level, connect, total, connections;
    if (hb_int_option(h, HB_OPT_GZIP, &level, err, err_cap) ||
        hb_int_option(h, HB_OPT_CONNECT, &connect, err, err_cap) ||
        hb_int_option(h, HB_OPT_TIMEOUT, &total, err, err_cap) ||
        hb_int_option(h, HB_OPT_CONNECTIONS, &connections, err, err_cap))
        return -1;
    p->gzip_level = (int)level;
    p->nslots = (int)connections;
    p->connect_timeout_ms = (long)connect;
    p->timeout_ms = (long)total;
    p->insecure = h->option_bool(h->host_ctx, hb_option_defs[HB_OPT_INSECURE].name, 0);
    if (hc_ca_file_option(h, "http-batch", &p->ca_file, err, err_cap) != 0)
        return -1;
    return 0;
}

/* Builds the endpoint URLs from server_url (trailing slashes dropped). */
static int hb_read_urls(hb_plugin *p, char *err, size_t err_cap)
{
    const sk_host_api *h = p->host;
    const char *server = h->host_value(h->host_ctx, "server_url");
    if (!server || !*server) {
        hb_copy(err, err_cap, "http-batch: " HC_NO_SERVER_URL);
        return -1;
    }
    if (strncasecmp(server, "http://", 7) && strncasecmp(server, "https://", 8)) {
        hc_fmt(err, err_cap, "http-batch: server_url must start with http:// or https://: %s",
                   server);
        return -1;
    }
    char *base = strdup(server);
    if (!base) {
        hb_copy(err, err_cap, "http-batch: out of memory");
        return -1;
    }
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        base[--n] = '\0';
    p->batch_url = hb_concat(base, HC_BATCH_PATH);
    p->health_url = hb_concat(base, HC_HEALTH_PATH);
    free(base);
    const char *version = h->host_value(h->host_ctx, "version");
    p->user_agent = hb_concat("spec-kitty-sync/", version && *version ? version : "unknown");
    if (!p->batch_url || !p->health_url || !p->user_agent) {
        hb_copy(err, err_cap, "http-batch: out of memory");
        return -1;
    }
    hb_warn_plain_http(h, server);
    return 0;
}

static int hb_create(const sk_host_api *host, void **self, char *err, size_t err_cap)
{
    *self = NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        hb_copy(err, err_cap, "http-batch: libcurl initialisation failed");
        return -1;
    }
    hb_plugin *p = calloc(1, sizeof *p);
    if (!p) {
        curl_global_cleanup();
        hb_copy(err, err_cap, "http-batch: out of memory");
        return -1;
    }
    p->host = host;
    atomic_init(&p->cancelled, 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->freed, NULL);
    for (int i = 0; i < HB_CONNECTIONS_MAX; i++) {
        p->slots[i].p = p;
        p->slots[i].conn.index = i;
        pthread_cond_init(&p->slots[i].wake, NULL);
    }
    if (hb_read_urls(p, err, err_cap) || hb_read_options(p, err, err_cap)) {
        hb_destroy(p);
        return -1;
    }
    int bad = hb_conn_init(p, &p->probe_conn);
    for (int i = 0; i < p->nslots; i++)
        bad = bad || hb_conn_init(p, &p->slots[i].conn);
    if (bad) {
        hb_copy(err, err_cap, "http-batch: could not set up libcurl handles");
        hb_destroy(p);
        return -1;
    }
    hc_warn_unknown_options(host, hb_option_defs, "http-batch");
    if (p->insecure)
        host->log(host->host_ctx, SK_LOG_WARN,
                  "http-batch: options.insecure is true: TLS certificates are NOT verified; "
                  "anyone on the path can read and alter the sync traffic");
    *self = p;
    return 0;
}

static const sk_transport_desc hb_desc = {
    .struct_size = sizeof(sk_transport_desc),
    .abi_major = SK_TRANSPORT_ABI_MAJOR,
    .abi_minor = SK_TRANSPORT_ABI_MINOR,
    .name = "http-batch",
    .version = HB_VERSION,
    .description = "HTTP(S) batch POST of gzip'd events to the spec-kitty server (libcurl)",
    .capabilities = SK_CAP_SYNC | SK_CAP_ASYNC | SK_CAP_PROBE,
    .max_in_flight = HB_CONNECTIONS_MAX, /* the live bound is options.connections: BUSY beyond */
    .create = hb_create,
    .destroy = hb_destroy,
    .send = hb_send,
    .submit = hb_submit,
    .cancel = hb_cancel,
    .probe = hb_probe,
    .options = hb_option_defs,
};

SK_TRANSPORT_DEFINE_ENTRY_V1(hb_desc)
