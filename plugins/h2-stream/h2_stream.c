/*
 * h2-stream: each batch is one POST stream to the batch endpoint (CONTRACT.md
 * §3) on one long-lived HTTP/2 connection, several streams in flight.
 *
 * Threads: the host calls submit/send/probe from one thread at a time and
 * cancel from any; the plugin's own I/O thread owns every connection and the
 * nghttp2 sessions. The two meet only in the pending list under `mu`; the I/O
 * thread calls completions with no lock held, so a completion may submit.
 */
#include "h2_net.h"

#include "http_common.h"

#include <spec-kitty/transport.h>

#include <nghttp2/nghttp2.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define H2_VERSION "1.0.0"
#define H2_MAX_CONNS 4       /* the current one and those draining after a GOAWAY */
#define H2_READ_CHUNK 65536
#define H2_STREAM_WINDOW (1 << 20)    /* per stream: a 1000-event answer in one go */
#define H2_CONN_WINDOW (16 << 20)

/* nghttp2 >= 1.60 deprecates the ssize_t API in favour of its *2 twins. */
#if NGHTTP2_VERSION_NUM >= 0x013c00
typedef nghttp2_ssize h2_ssize;
typedef nghttp2_data_provider2 h2_provider;
#define h2_mem_send nghttp2_session_mem_send2
#define h2_mem_recv nghttp2_session_mem_recv2
#define h2_submit_request nghttp2_submit_request2
#else
typedef ssize_t h2_ssize;
typedef nghttp2_data_provider h2_provider;
#define h2_mem_send nghttp2_session_mem_send
#define h2_mem_recv nghttp2_session_mem_recv
#define h2_submit_request nghttp2_submit_request
#endif

/* The option table: `spec-kitty sync plugins` shows it, create parses it. */
enum {
    O_GZIP,
    O_GZIP_MIN,
    O_CONNECT,
    O_TIMEOUT,
    O_CA,
    O_INSECURE,
    O_H2C,
    O_STREAMS,
    O_PING_IDLE,
    O_PING_TIMEOUT,
    O_COUNT
};

static const sk_option_def h2_options[O_COUNT + 1] = {
    [O_GZIP] = {"gzip_level", "integer", "6", "zlib level of the request body (0..9)"},
    [O_GZIP_MIN] = {"gzip_min_bytes", "integer", "0",
                    "bodies under this many bytes go uncompressed (0: always gzip)"},
    [O_CONNECT] = {"connect_timeout_ms", "integer", "10000", "TCP + proxy + TLS connect timeout"},
    [O_TIMEOUT] = {"timeout_ms", "integer", "60000",
                   "a stream unanswered after this is reset (the batch deadline also applies)"},
    [O_CA] = {"ca_file", "string", "", "PEM bundle of a private CA to trust"},
    [O_INSECURE] = {"insecure", "boolean", "false", "true disables TLS verification (warned)"},
    [O_H2C] = {"h2c", "boolean", "false",
               "cleartext HTTP/2 (prior knowledge) to a non-loopback http:// server_url"},
    [O_STREAMS] = {"max_streams", "integer", "8",
                   "batches in flight at once (the server's limit also applies)"},
    [O_PING_IDLE] = {"ping_idle_s", "integer", "30", "PING after this much silence (0: never)"},
    [O_PING_TIMEOUT] = {"ping_timeout_ms", "integer", "10000",
                        "drop the connection when a PING is not answered in time"},
    [O_COUNT] = {NULL, NULL, NULL, NULL},
};

/* Ranges of the integer options (min, max), by the same index. */
static const int64_t h2_ranges[O_COUNT][2] = {
    [O_GZIP] = {0, 9},           [O_GZIP_MIN] = {0, 1 << 30}, [O_CONNECT] = {1, 86400000},
    [O_TIMEOUT] = {1, 86400000}, [O_STREAMS] = {1, 256},      [O_PING_IDLE] = {0, 86400},
    [O_PING_TIMEOUT] = {1, 600000},
};

typedef enum h2_kind { H2_BATCH, H2_PROBE } h2_kind;

typedef struct h2_conn h2_conn;
typedef struct h2_plugin h2_plugin;

/* One accepted batch (or probe) from submit to its completion. */
typedef struct h2_job {
    struct h2_job *next;
    h2_kind kind;
    const sk_batch *batch;
    sk_batch_result *result;
    sk_completion_fn done;
    void *cb_ctx;
    int64_t deadline_ms;
    int64_t started_ms;
    char *auth; /* Authorization value, wiped at the end */
    hc_buf body;
    size_t body_off;
    int gzip;
    /* the stream (I/O thread only) */
    h2_conn *conn;
    int32_t stream_id;
    long status;
    int ended; /* the whole answer arrived */
    hc_buf answer;
    int truncated;
    char retry_after[64];
    char location[256];
    int rc; /* for a batch without an answer */
    int unreachable;
    char why[SK_BATCH_DETAIL_MAX];
} h2_job;

/* One HTTP/2 connection (I/O thread only). */
struct h2_conn {
    h2_plugin *p;
    h2_pipe pipe;
    nghttp2_session *session;
    hc_buf out; /* bytes nghttp2 produced that the socket has not taken yet */
    size_t out_off;
    int goaway;  /* no new streams on it */
    int dead;    /* close it: why says why */
    int64_t last_read_ms;
    int64_t ping_sent_ms; /* 0: no PING outstanding */
    char why[256];
};

struct h2_plugin {
    const sk_host_api *host;
    h2_url url;
    char batch_path[600];
    char health_path[600];
    char user_agent[80];
    int64_t opt[O_COUNT];
    SSL_CTX *tls;
    int wake_fd;
    pthread_t thread;
    int thread_started;
    atomic_int cancelled;

    pthread_mutex_t mu; /* guards the fields down to the I/O thread's own */
    pthread_cond_t cond; /* a completion happened */
    h2_job *pending;
    int open_batches; /* accepted, not yet completed */
    int slots;        /* batches allowed in flight now */
    int stop;

    /* I/O thread only */
    h2_job *queue;    /* taken from pending, waiting for a stream */
    h2_job *active;   /* on a stream */
    h2_job *finished; /* to complete with no lock held */
    h2_conn *conns[H2_MAX_CONNS];
    int nconns;
    long connects;
    int64_t streams_open, conns_open; /* levels, reported with metric_set */
    /* Bytes moved since the last h2_report_bytes: the host's metric_add takes a
     * lock and looks the name up, too much per DATA chunk or socket write. */
    int64_t bytes_sent;
    int64_t bytes_received;
    unsigned char rbuf[H2_READ_CHUNK];
};

static int64_t h2_now(const h2_plugin *p)
{
    return p->host->now_ms(p->host->host_ctx);
}

static void h2_metric(const h2_plugin *p, const char *name, int64_t delta)
{
    p->host->metric_add(p->host->host_ctx, name, delta);
}

/* Moves a level by delta and reports it (a host older than ABI 1.3 takes no levels). */
static void h2_level(const h2_plugin *p, const char *name, int64_t *level, int64_t delta)
{
    *level += delta;
    if (SK_HOST_API_HAS(p->host, metric_set))
        p->host->metric_set(p->host->host_ctx, name, *level);
}

/* Hands the byte counts gathered since the last call to the host. */
static void h2_report_bytes(h2_plugin *p)
{
    if (p->bytes_sent)
        h2_metric(p, "bytes_sent", p->bytes_sent);
    if (p->bytes_received)
        h2_metric(p, "bytes_received", p->bytes_received);
    p->bytes_sent = p->bytes_received = 0;
}

static void h2_wake(const h2_plugin *p)
{
    uint64_t one = 1;
    ssize_t n = write(p->wake_fd, &one, sizeof one);
    (void)n; /* a full counter already wakes the poll */
}

static void h2_push(h2_job **list, h2_job *j)
{
    j->next = NULL;
    while (*list)
        list = &(*list)->next;
    *list = j;
}

static void h2_unlink(h2_job **list, h2_job *j)
{
    for (; *list; list = &(*list)->next)
        if (*list == j) {
            *list = j->next;
            return;
        }
}

/* ---------- completion ---------- */

/* Ends j without an answer: rc and a one-line why; it goes to the finished list. */
static void h2_fail(h2_plugin *p, h2_job *j, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void h2_fail(h2_plugin *p, h2_job *j, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->why, sizeof j->why, fmt, ap);
    va_end(ap);
    j->rc = rc;
    j->ended = 0;
    h2_push(&p->finished, j);
}

/* Detaches j from its stream (nothing nghttp2 calls later reaches it). */
static void h2_detach(h2_plugin *p, h2_job *j)
{
    if (j->conn)
        h2_level(p, "streams_in_flight", &p->streams_open, -1);
    h2_unlink(&p->active, j);
    if (j->conn && j->conn->session)
        nghttp2_session_set_stream_user_data(j->conn->session, j->stream_id, NULL);
    j->conn = NULL;
}

/* The probe's state from its answer (or its failure), with the reason line. */
typedef struct h2_probe_wait {
    int done;
    int state;
    char *reason;
    size_t reason_cap;
} h2_probe_wait;

static void h2_finish_probe(h2_plugin *p, h2_job *j)
{
    h2_probe_wait *w = j->cb_ctx;
    int state;
    if (!j->ended) {
        hc_fmt(w->reason, w->reason_cap, "%s", j->why);
        state = j->unreachable || j->rc == SK_TRANSPORT_CANCELLED ? SK_PROBE_UNREACHABLE
                                                                  : SK_PROBE_SERVER_UNAVAILABLE;
    } else {
        /* An answer's status is final, so at least 200 (see h2_on_header). */
        char url[sizeof p->url.authority + sizeof p->health_path + 16];
        hc_fmt(url, sizeof url, "%s://%s%s", p->url.tls ? "https" : "http", p->url.authority,
               p->health_path);
        state = hc_probe_answer(j->status, j->truncated ? NULL : (const char *)j->answer.data,
                                j->answer.len, "HTTP/2", url, w->reason, w->reason_cap);
    }
    hc_redact(w->reason, hc_auth_secret(j->auth));
    pthread_mutex_lock(&p->mu);
    w->state = state;
    w->done = 1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
}

/* Fills the batch's result from its answer, or as transient with why. Returns rc. */
static int h2_batch_result(h2_plugin *p, h2_job *j)
{
    int rc = j->rc;
    if (j->ended) {
        hc_answer a = {j->status,
                       (const char *)j->answer.data,
                       j->answer.len,
                       j->retry_after[0] ? j->retry_after : NULL,
                       j->location[0] ? j->location : NULL,
                       time(NULL)};
        rc = hc_map_kept_answer(&a, j->truncated, j->batch, j->result);
    } else {
        hc_result_transient(j->batch, j->result, j->why);
    }
    hc_redact_result(j->result, hc_auth_secret(j->auth));
    p->host->log(p->host->host_ctx, SK_LOG_DEBUG,
                 "h2-stream: batch %llu, %u events, %zu bytes%s: HTTP %d in %lld ms (%s)",
                 (unsigned long long)j->batch->batch_seq, j->batch->count, j->body.len,
                 j->gzip ? " gzip" : "", (int)j->result->status_code,
                 (long long)(h2_now(p) - j->started_ms),
                 j->result->detail[0] ? j->result->detail : "ok");
    return rc;
}

static void h2_job_free(h2_job *j)
{
    hc_free_secret(j->auth);
    hc_buf_free(&j->body);
    hc_buf_free(&j->answer);
    free(j);
}

/*
 * Completes every finished job, with no lock held (a completion may submit).
 * The byte counts go first, so a completed batch's bytes are counted; this
 * runs before every poll, at the end of each turn and at destroy.
 */
static void h2_complete_finished(h2_plugin *p)
{
    h2_report_bytes(p);
    while (p->finished) {
        h2_job *j = p->finished;
        p->finished = j->next;
        if (j->kind == H2_PROBE) {
            h2_finish_probe(p, j);
        } else {
            int rc = h2_batch_result(p, j);
            pthread_mutex_lock(&p->mu);
            p->open_batches--;
            pthread_cond_broadcast(&p->cond);
            pthread_mutex_unlock(&p->mu);
            j->done(j->cb_ctx, rc, j->result);
        }
        h2_job_free(j);
    }
}

/* ---------- nghttp2 callbacks (I/O thread, inside mem_recv/mem_send) ---------- */

static h2_job *h2_stream_job(nghttp2_session *s, int32_t stream_id)
{
    return nghttp2_session_get_stream_user_data(s, stream_id);
}

static h2_ssize h2_read_body(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t len,
                             uint32_t *flags, nghttp2_data_source *src, void *user)
{
    (void)src, (void)user;
    /* Looked up by stream, not through src: a job reset at its deadline is gone. */
    h2_job *j = h2_stream_job(s, stream_id);
    if (!j)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t n = j->body.len - j->body_off;
    if (n > len)
        n = len;
    memcpy(buf, j->body.data + j->body_off, n);
    j->body_off += n;
    if (j->body_off == j->body.len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (h2_ssize)n;
}

static int h2_on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                        size_t name_len, const uint8_t *value, size_t value_len, uint8_t flags,
                        void *user)
{
    (void)flags, (void)user;
    h2_job *j = frame->hd.type == NGHTTP2_HEADERS ? h2_stream_job(s, frame->hd.stream_id) : NULL;
    if (!j)
        return 0;
    char *dst = NULL;
    size_t cap = 0;
    if (name_len == 7 && !memcmp(name, ":status", 7)) {
        char num[8] = "";
        memcpy(num, value, value_len < sizeof num - 1 ? value_len : sizeof num - 1);
        long st = strtol(num, NULL, 10);
        j->status = st >= 200 ? st : 0; /* 1xx are interim: the final one follows */
    } else if (name_len == 11 && !memcmp(name, "retry-after", 11)) {
        dst = j->retry_after, cap = sizeof j->retry_after;
    } else if (name_len == 8 && !memcmp(name, "location", 8)) {
        dst = j->location, cap = sizeof j->location;
    }
    if (dst && value_len < cap) {
        memcpy(dst, value, value_len);
        dst[value_len] = '\0';
    }
    return 0;
}

static int h2_on_data(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data,
                      size_t len, void *user)
{
    (void)flags;
    h2_conn *c = user;
    c->p->bytes_received += (int64_t)len;
    h2_job *j = h2_stream_job(s, stream_id);
    if (j && hc_buf_append_capped(&j->answer, data, len, HC_RESPONSE_KEEP_MAX))
        j->truncated = 1;
    return 0;
}

static int h2_on_frame(nghttp2_session *s, const nghttp2_frame *frame, void *user)
{
    h2_conn *c = user;
    h2_plugin *p = c->p;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
            h2_job *j = h2_stream_job(s, frame->hd.stream_id);
            if (j && j->status)
                j->ended = 1;
        }
        break;
    case NGHTTP2_GOAWAY:
        /* Streams above last_stream_id are closed REFUSED_STREAM by nghttp2. */
        c->goaway = 1;
        h2_metric(p, "goaways", 1);
        p->host->log(p->host->host_ctx, SK_LOG_INFO,
                     "h2-stream: server sent GOAWAY (%s, last stream %d): new streams go to a "
                     "new connection",
                     nghttp2_http2_strerror(frame->goaway.error_code),
                     (int)frame->goaway.last_stream_id);
        break;
    case NGHTTP2_PING:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK)
            c->ping_sent_ms = 0;
        break;
    case NGHTTP2_SETTINGS: {
        uint32_t server = nghttp2_session_get_remote_settings(
            s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
        int64_t slots = server < (uint32_t)p->opt[O_STREAMS] ? (int64_t)server : p->opt[O_STREAMS];
        pthread_mutex_lock(&p->mu);
        p->slots = slots < 1 ? 1 : (int)slots;
        pthread_mutex_unlock(&p->mu);
        break;
    }
    default:
        break;
    }
    return 0;
}

static int h2_on_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code, void *user)
{
    h2_conn *c = user;
    h2_plugin *p = c->p;
    h2_job *j = h2_stream_job(s, stream_id);
    if (!j)
        return 0;
    h2_detach(p, j);
    if (j->ended) {
        h2_push(&p->finished, j);
    } else if (error_code == NGHTTP2_REFUSED_STREAM) {
        h2_metric(p, "streams_refused", 1);
        h2_fail(p, j, SK_TRANSPORT_FAILED, "stream refused by the server (not processed)");
    } else {
        h2_fail(p, j, SK_TRANSPORT_FAILED, "stream closed before the answer (%s)",
                nghttp2_http2_strerror(error_code));
    }
    return 0;
}

/* ---------- connections ---------- */

static void h2_conn_kill(h2_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void h2_conn_kill(h2_conn *c, const char *fmt, ...)
{
    if (c->dead)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof c->why, fmt, ap);
    va_end(ap);
    c->dead = 1;
}

static nghttp2_session *h2_session_new(h2_conn *c)
{
    nghttp2_session_callbacks *cb;
    nghttp2_session *s = NULL;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        return NULL;
    nghttp2_session_callbacks_set_on_header_callback(cb, h2_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2_on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, h2_on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2_on_close);
    int rc = nghttp2_session_client_new(&s, cb, c);
    nghttp2_session_callbacks_del(cb);
    if (rc != 0)
        return NULL;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
    };
    if (nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
        nghttp2_session_set_local_window_size(s, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW) != 0) {
        nghttp2_session_del(s);
        return NULL;
    }
    return s;
}

/* Opens a connection (I/O thread; blocks until connected, failed or cancelled). */
static h2_conn *h2_conn_open(h2_plugin *p, int64_t deadline_ms, int *woken, char *err,
                             size_t err_cap)
{
    h2_conn *c = calloc(1, sizeof *c);
    if (!c) {
        hc_fmt(err, err_cap, "out of memory");
        return NULL;
    }
    c->p = p;
    h2_net_opts o = {p->tls, (int)p->opt[O_INSECURE], p->wake_fd, &p->cancelled, deadline_ms,
                     p->host};
    int rc = h2_pipe_open(&p->url, &o, &c->pipe, err, err_cap);
    *woken = rc == 1;
    if (rc == 0 && !(c->session = h2_session_new(c))) {
        hc_fmt(err, err_cap, "cannot set up the HTTP/2 session");
        rc = -1;
    }
    if (rc != 0) {
        h2_pipe_close(&c->pipe);
        free(c);
        return NULL;
    }
    c->last_read_ms = h2_now(p);
    h2_metric(p, "connects", 1);
    h2_level(p, "connections_open", &p->conns_open, 1);
    if (p->connects++ > 0)
        h2_metric(p, "reconnects", 1);
    p->host->log(p->host->host_ctx, SK_LOG_DEBUG, "h2-stream: connected to %s (%s)",
                 p->url.authority, p->url.tls ? "TLS, ALPN h2" : "h2c");
    return c;
}

/* Ends every job on c (it is gone: transient, nothing known), frees c. */
static void h2_conn_free(h2_plugin *p, h2_conn *c, int rc)
{
    for (h2_job *j = p->active, *next; j; j = next) {
        next = j->next;
        if (j->conn != c)
            continue;
        h2_detach(p, j);
        if (j->ended)
            h2_push(&p->finished, j);
        else
            h2_fail(p, j, rc, "%s", rc == SK_TRANSPORT_CANCELLED ? "cancelled" : c->why);
    }
    if (c->session)
        nghttp2_session_del(c->session);
    h2_pipe_close(&c->pipe);
    h2_level(p, "connections_open", &p->conns_open, -1);
    hc_buf_free(&c->out);
    free(c);
}

/* Writes what nghttp2 has to send, as far as the socket takes it. */
static void h2_conn_flush(h2_conn *c)
{
    while (!c->dead) {
        if (c->out_off < c->out.len) {
            char why[160];
            long n = h2_pipe_write(&c->pipe, c->out.data + c->out_off, c->out.len - c->out_off,
                                   why, sizeof why);
            if (n < 0)
                h2_conn_kill(c, "connection lost while sending: %s", why);
            if (n <= 0)
                return;
            c->p->bytes_sent += n;
            c->out_off += (size_t)n;
            continue;
        }
        c->out.len = c->out_off = 0;
        const uint8_t *data;
        h2_ssize n = h2_mem_send(c->session, &data);
        if (n < 0)
            h2_conn_kill(c, "HTTP/2 error: %s", nghttp2_strerror((int)n));
        if (n <= 0)
            return;
        if (hc_buf_append(&c->out, data, (size_t)n) != 0)
            h2_conn_kill(c, "out of memory");
    }
}

/* Reads what the socket has and feeds it to nghttp2 (callbacks run here). */
static void h2_conn_read(h2_conn *c)
{
    unsigned char *buf = c->p->rbuf; /* the I/O thread is the only reader */
    while (!c->dead) {
        char why[160];
        long n = h2_pipe_read(&c->pipe, buf, sizeof c->p->rbuf, why, sizeof why);
        if (n < 0)
            h2_conn_kill(c, "connection lost: %s", why);
        if (n <= 0)
            return;
        c->last_read_ms = h2_now(c->p);
        h2_ssize used = h2_mem_recv(c->session, buf, (size_t)n);
        if (used < 0)
            h2_conn_kill(c, "HTTP/2 protocol error: %s", nghttp2_strerror((int)used));
    }
}

/* The connection new streams go to, or NULL. */
static h2_conn *h2_current(h2_plugin *p)
{
    for (int i = 0; i < p->nconns; i++)
        if (!p->conns[i]->goaway && !p->conns[i]->dead)
            return p->conns[i];
    return NULL;
}

/* ---------- streams ---------- */

static nghttp2_nv h2_nv(const char *name, const char *value, uint8_t flags)
{
    nghttp2_nv nv = {(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value), flags};
    return nv;
}

/* Opens j's stream on c. */
static void h2_start(h2_plugin *p, h2_conn *c, h2_job *j)
{
    char length[24];
    nghttp2_nv nv[12];
    size_t n = 0;
    int post = j->kind == H2_BATCH;
    nv[n++] = h2_nv(":method", post ? "POST" : "GET", 0);
    nv[n++] = h2_nv(":scheme", p->url.tls ? "https" : "http", 0);
    nv[n++] = h2_nv(":authority", p->url.authority, 0);
    nv[n++] = h2_nv(":path", post ? p->batch_path : p->health_path, 0);
    nv[n++] = h2_nv("user-agent", p->user_agent, 0);
    nv[n++] = h2_nv("accept", "application/json", 0);
    nv[n++] = h2_nv(HC_PROTOCOL_HEADER_LC, HC_PROTOCOL_VERSION, 0);
    if (post) {
        snprintf(length, sizeof length, "%zu", j->body.len);
        nv[n++] = h2_nv("content-type", "application/json", 0);
        nv[n++] = h2_nv("content-length", length, 0);
        if (j->gzip)
            nv[n++] = h2_nv("content-encoding", "gzip", 0);
    }
    if (j->auth) /* never into the HPACK table: the token stays out of shared state */
        nv[n++] = h2_nv("authorization", j->auth, NGHTTP2_NV_FLAG_NO_INDEX);
    h2_provider body = {.source = {.ptr = NULL}, .read_callback = h2_read_body};
    int32_t id = h2_submit_request(c->session, NULL, nv, n, post ? &body : NULL, j);
    if (id < 0) {
        h2_fail(p, j, SK_TRANSPORT_FAILED, "cannot open a stream: %s", nghttp2_strerror(id));
        return;
    }
    j->conn = c;
    j->stream_id = id;
    h2_push(&p->active, j);
    h2_metric(p, "requests", 1);
    h2_level(p, "streams_in_flight", &p->streams_open, 1);
}

/* Ends the queued jobs with why (the connection could not be made). */
static void h2_fail_queue(h2_plugin *p, int rc, int unreachable, const char *why)
{
    while (p->queue) {
        h2_job *j = p->queue;
        p->queue = j->next;
        j->unreachable = unreachable;
        h2_fail(p, j, rc, "%s", why);
    }
}

/* Puts the queued jobs on streams, connecting first when needed. */
static void h2_dispatch(h2_plugin *p)
{
    if (!p->queue)
        return;
    h2_conn *c = h2_current(p);
    if (!c && p->nconns < H2_MAX_CONNS) {
        int64_t deadline = h2_now(p) + p->opt[O_CONNECT];
        for (h2_job *j = p->queue; j; j = j->next)
            if (j->deadline_ms < deadline)
                deadline = j->deadline_ms;
        char err[SK_BATCH_DETAIL_MAX - 64];
        int woken = 0;
        c = h2_conn_open(p, deadline, &woken, err, sizeof err);
        if (!c && woken && atomic_load(&p->cancelled))
            return; /* the cancel path ends them */
        if (!c) {
            p->host->log(p->host->host_ctx, SK_LOG_DEBUG, "h2-stream: %s", err);
            h2_fail_queue(p, SK_TRANSPORT_FAILED, 1, err);
            return;
        }
        p->conns[p->nconns++] = c;
    }
    if (!c) {
        h2_fail_queue(p, SK_TRANSPORT_FAILED, 0, "too many connections still draining");
        return;
    }
    while (p->queue) {
        h2_job *j = p->queue;
        p->queue = j->next;
        h2_start(p, c, j);
    }
}

/* Resets streams and drops queued jobs past their deadline. */
static void h2_expire(h2_plugin *p, int64_t now)
{
    for (h2_job *j = p->queue, *next; j; j = next) {
        next = j->next;
        if (j->deadline_ms <= now) {
            h2_unlink(&p->queue, j);
            h2_fail(p, j, SK_TRANSPORT_FAILED, "batch deadline reached before sending");
        }
    }
    for (h2_job *j = p->active, *next; j; j = next) {
        next = j->next;
        if (j->deadline_ms > now || j->ended)
            continue;
        nghttp2_submit_rst_stream(j->conn->session, NGHTTP2_FLAG_NONE, j->stream_id,
                                  NGHTTP2_CANCEL);
        h2_detach(p, j);
        h2_metric(p, "streams_reset", 1);
        h2_fail(p, j, SK_TRANSPORT_FAILED, "batch deadline reached after %lld ms: stream reset",
                (long long)(now - j->started_ms));
    }
}

/* PING on silence; a PING left unanswered drops the connection. */
static void h2_keepalive(h2_plugin *p, int64_t now)
{
    h2_conn *c = h2_current(p);
    if (!c || p->opt[O_PING_IDLE] == 0)
        return;
    if (c->ping_sent_ms && now - c->ping_sent_ms >= p->opt[O_PING_TIMEOUT]) {
        h2_conn_kill(c, "no answer to PING within %lld ms", (long long)p->opt[O_PING_TIMEOUT]);
    } else if (!c->ping_sent_ms && now - c->last_read_ms >= p->opt[O_PING_IDLE] * 1000) {
        if (nghttp2_submit_ping(c->session, NGHTTP2_FLAG_NONE, NULL) == 0) {
            c->ping_sent_ms = now;
            h2_metric(p, "pings", 1);
        }
    }
}

/* When the loop must run again without I/O: a deadline or a PING, or -1. */
static int h2_poll_timeout(h2_plugin *p, int64_t now)
{
    int64_t next = INT64_MAX;
    for (h2_job *j = p->active; j; j = j->next)
        if (!j->ended && j->deadline_ms < next)
            next = j->deadline_ms;
    h2_conn *c = h2_current(p);
    if (c && p->opt[O_PING_IDLE] > 0) {
        int64_t at = c->ping_sent_ms ? c->ping_sent_ms + p->opt[O_PING_TIMEOUT]
                                     : c->last_read_ms + p->opt[O_PING_IDLE] * 1000;
        if (at < next)
            next = at;
    }
    if (next == INT64_MAX)
        return -1;
    int64_t wait = next - now;
    return wait <= 0 ? 0 : wait > 600000 ? 600000 : (int)wait;
}

/* Closes connections that died or have nothing left to do after a GOAWAY. */
static void h2_reap(h2_plugin *p)
{
    for (int i = 0; i < p->nconns;) {
        h2_conn *c = p->conns[i];
        int idle = !nghttp2_session_want_read(c->session) &&
                   !nghttp2_session_want_write(c->session) && c->out_off == c->out.len;
        if (!c->dead && !idle) {
            i++;
            continue;
        }
        if (!c->dead)
            hc_fmt(c->why, sizeof c->why, "connection closed");
        p->host->log(p->host->host_ctx, SK_LOG_DEBUG, "h2-stream: connection closed: %s", c->why);
        h2_conn_free(p, c, SK_TRANSPORT_FAILED);
        p->conns[i] = p->conns[--p->nconns];
    }
}

/* After cancel(): every job ends CANCELLED, every connection closes. */
static void h2_cancel_all(h2_plugin *p)
{
    while (p->nconns > 0)
        h2_conn_free(p, p->conns[--p->nconns], SK_TRANSPORT_CANCELLED);
    h2_fail_queue(p, SK_TRANSPORT_CANCELLED, 0, "cancelled");
}

/* One turn of the I/O thread: returns 0 to go on, 1 to stop. */
static int h2_turn(h2_plugin *p)
{
    pthread_mutex_lock(&p->mu);
    int stop = p->stop;
    while (p->pending) {
        h2_job *j = p->pending;
        p->pending = j->next;
        h2_push(&p->queue, j);
    }
    pthread_mutex_unlock(&p->mu);
    if (stop)
        return 1;
    if (atomic_load(&p->cancelled))
        h2_cancel_all(p);
    int64_t now = h2_now(p);
    h2_expire(p, now);
    h2_dispatch(p);
    h2_keepalive(p, now);
    for (int i = 0; i < p->nconns; i++)
        h2_conn_flush(p->conns[i]);
    h2_reap(p);
    h2_complete_finished(p);

    struct pollfd pf[1 + H2_MAX_CONNS];
    pf[0] = (struct pollfd){p->wake_fd, POLLIN, 0};
    int timeout = h2_poll_timeout(p, h2_now(p));
    /* A submit while connecting spent its wake-up in h2_wait: its job waits here. */
    pthread_mutex_lock(&p->mu);
    if (p->pending)
        timeout = 0;
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nconns; i++) {
        h2_conn *c = p->conns[i];
        short ev = POLLIN;
        if (c->out_off < c->out.len || nghttp2_session_want_write(c->session))
            ev |= POLLOUT;
        if (h2_pipe_pending(&c->pipe))
            timeout = 0;
        pf[1 + i] = (struct pollfd){c->pipe.fd, ev, 0};
    }
    int nfds = 1 + p->nconns;
    if (poll(pf, (nfds_t)nfds, timeout) < 0 && errno != EINTR)
        return 0;
    if (pf[0].revents) {
        uint64_t count;
        ssize_t n = read(p->wake_fd, &count, sizeof count);
        (void)n;
    }
    for (int i = 0; i < nfds - 1; i++) {
        h2_conn *c = p->conns[i];
        if (pf[1 + i].revents & (POLLIN | POLLERR | POLLHUP) || h2_pipe_pending(&c->pipe))
            h2_conn_read(c);
        h2_conn_flush(c);
    }
    h2_reap(p);
    h2_complete_finished(p);
    return 0;
}

static void *h2_io_main(void *arg)
{
    h2_plugin *p = arg;
    /* A write to a closed TLS socket must fail with EPIPE, not kill the host:
     * SIGPIPE from a write goes to the writing thread, here held back. */
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, NULL);
    while (h2_turn(p) == 0)
        ;
    return NULL;
}

/* ---------- the ABI ---------- */

/* Builds the request body: the JSON, gzip'd when it reaches gzip_min_bytes. */
static int h2_body(const h2_plugin *p, const sk_batch *batch, h2_job *j)
{
    if (hc_events_json(batch, &j->body) != 0)
        return -1;
    j->gzip = j->body.len >= (size_t)p->opt[O_GZIP_MIN];
    if (!j->gzip)
        return 0;
    hc_buf packed = {0};
    if (hc_gzip(j->body.data, j->body.len, (int)p->opt[O_GZIP], &packed) != 0) {
        hc_buf_free(&packed);
        return -1;
    }
    hc_buf_free(&j->body);
    j->body = packed;
    return 0;
}

/* A new job with its deadline (the batch's, bounded by timeout_ms) and credentials. */
static h2_job *h2_job_new(h2_plugin *p, h2_kind kind, int64_t deadline_ms, const char **why)
{
    h2_job *j = calloc(1, sizeof *j);
    *why = "out of memory";
    if (!j)
        return NULL;
    j->kind = kind;
    j->started_ms = h2_now(p);
    j->deadline_ms = deadline_ms;
    if (j->started_ms + p->opt[O_TIMEOUT] < j->deadline_ms)
        j->deadline_ms = j->started_ms + p->opt[O_TIMEOUT];
    if (hc_auth_value(p->host, &j->auth, why) != 0) {
        h2_job_free(j);
        return NULL;
    }
    return j;
}

/* Hands j to the I/O thread. */
static void h2_enqueue(h2_plugin *p, h2_job *j)
{
    pthread_mutex_lock(&p->mu);
    h2_push(&p->pending, j);
    pthread_mutex_unlock(&p->mu);
    h2_wake(p);
}

static int h2_submit(void *self, const sk_batch *batch, sk_batch_result *result,
                     sk_completion_fn done, void *cb_ctx)
{
    h2_plugin *p = self;
    if (result->count != batch->count || batch->count == 0)
        return hc_refuse(batch, result, SK_TRANSPORT_FAILED, "result and batch sizes differ");
    if (atomic_load(&p->cancelled))
        return hc_refuse(batch, result, SK_TRANSPORT_CANCELLED, "cancelled");
    if (batch->deadline_ms <= h2_now(p))
        return hc_refuse(batch, result, SK_TRANSPORT_FAILED,
                         "batch deadline passed before sending");
    pthread_mutex_lock(&p->mu);
    int busy = p->open_batches >= p->slots;
    if (!busy)
        p->open_batches++; /* the slot is ours from here */
    pthread_mutex_unlock(&p->mu);
    if (busy)
        return SK_TRANSPORT_BUSY;
    const char *why = NULL;
    h2_job *j = h2_job_new(p, H2_BATCH, batch->deadline_ms, &why);
    if (j && h2_body(p, batch, j) != 0) {
        why = "could not build the request body";
        h2_job_free(j);
        j = NULL;
    }
    if (!j) {
        pthread_mutex_lock(&p->mu);
        p->open_batches--;
        pthread_mutex_unlock(&p->mu);
        return hc_refuse(batch, result, SK_TRANSPORT_FAILED, why);
    }
    j->batch = batch;
    j->result = result;
    j->done = done;
    j->cb_ctx = cb_ctx;
    h2_enqueue(p, j);
    return SK_TRANSPORT_OK;
}

/* send() is submit() and a wait: the same streams serve a host without the async path. */
typedef struct h2_send_wait {
    int done;
    int rc;
    h2_plugin *p;
} h2_send_wait;

static void h2_send_done(void *cb_ctx, int rc, sk_batch_result *result)
{
    (void)result;
    h2_send_wait *w = cb_ctx;
    pthread_mutex_lock(&w->p->mu);
    w->rc = rc;
    w->done = 1;
    pthread_cond_broadcast(&w->p->cond);
    pthread_mutex_unlock(&w->p->mu);
}

/* Waits on the completion condition until *flag or the deadline; mu held. */
static void h2_wait_locked(h2_plugin *p, const int *flag, int64_t deadline_ms)
{
    while (!*flag) {
        int64_t left = deadline_ms - h2_now(p);
        if (left <= 0)
            return;
        /* bounded steps: the host's clock may be its own */
        hc_cond_wait_ms(&p->cond, &p->mu, left < 100 ? left : 100);
    }
}

static int h2_send(void *self, const sk_batch *batch, sk_batch_result *result)
{
    h2_plugin *p = self;
    h2_send_wait w = {0, SK_TRANSPORT_FAILED, p};
    int rc;
    /* Async batches may hold every slot: wait for one until the deadline. */
    while ((rc = h2_submit(self, batch, result, h2_send_done, &w)) == SK_TRANSPORT_BUSY) {
        int never = 0;
        pthread_mutex_lock(&p->mu);
        h2_wait_locked(p, &never, h2_now(p) + 50);
        pthread_mutex_unlock(&p->mu);
        if (h2_now(p) >= batch->deadline_ms)
            return hc_refuse(batch, result, SK_TRANSPORT_FAILED,
                             "batch deadline reached while every stream was busy");
    }
    if (rc != SK_TRANSPORT_OK)
        return rc;
    /* The I/O thread ends the job by its deadline or on cancel: wait without one. */
    pthread_mutex_lock(&p->mu);
    while (!w.done)
        pthread_cond_wait(&p->cond, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return w.rc;
}

static int h2_probe(void *self, int64_t deadline_ms, char *reason, size_t reason_cap)
{
    h2_plugin *p = self;
    char scratch[8];
    h2_probe_wait w = {0, SK_PROBE_UNREACHABLE, reason_cap ? reason : scratch,
                       reason_cap ? reason_cap : sizeof scratch};
    if (atomic_load(&p->cancelled)) {
        hc_fmt(w.reason, w.reason_cap, "cancelled");
        return SK_PROBE_UNREACHABLE;
    }
    const char *why = NULL;
    h2_job *j = h2_job_new(p, H2_PROBE, deadline_ms, &why);
    if (!j) {
        hc_fmt(w.reason, w.reason_cap, "%s", why);
        return SK_PROBE_UNREACHABLE;
    }
    j->cb_ctx = &w;
    h2_enqueue(p, j);
    pthread_mutex_lock(&p->mu);
    while (!w.done)
        pthread_cond_wait(&p->cond, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return w.state;
}

/* Any thread: the flag, then a wake-up; the I/O thread ends everything at once. */
static void h2_cancel(void *self)
{
    h2_plugin *p = self;
    atomic_store(&p->cancelled, 1);
    h2_wake(p);
}

static void h2_destroy(void *self)
{
    h2_plugin *p = self;
    if (!p)
        return;
    if (p->thread_started) {
        pthread_mutex_lock(&p->mu);
        p->stop = 1;
        pthread_mutex_unlock(&p->mu);
        h2_wake(p);
        pthread_join(p->thread, NULL);
    }
    while (p->nconns > 0)
        h2_conn_free(p, p->conns[--p->nconns], SK_TRANSPORT_CANCELLED);
    h2_complete_finished(p);
    if (p->wake_fd >= 0)
        close(p->wake_fd);
    if (p->tls)
        SSL_CTX_free(p->tls);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* ---------- create ---------- */

/* Reads the options of the table into p->opt, checking ranges, and ca_file into
 * *ca_file (malloc'd, NULL when unset: create needs it once). 0, or -1 with err. */
static int h2_read_options(h2_plugin *p, char **ca_file, char *err, size_t err_cap)
{
    const sk_host_api *h = p->host;
    for (int i = 0; i < O_COUNT; i++) {
        const sk_option_def *o = &h2_options[i];
        if (!strcmp(o->type, "boolean")) {
            p->opt[i] = h->option_bool(h->host_ctx, o->name, !strcmp(o->dflt, "true"));
        } else if (!strcmp(o->type, "integer")) {
            int64_t v = h->option_int(h->host_ctx, o->name, strtoll(o->dflt, NULL, 10));
            if (v < h2_ranges[i][0] || v > h2_ranges[i][1]) {
                hc_fmt(err, err_cap, "h2-stream: options.%s must be %lld..%lld, not %lld",
                       o->name, (long long)h2_ranges[i][0], (long long)h2_ranges[i][1],
                       (long long)v);
                return -1;
            }
            p->opt[i] = v;
        }
    }
    if (hc_ca_file_option(h, "h2-stream", ca_file, err, err_cap) != 0)
        return -1;
    return 0;
}

/* Where to connect and what to ask for; h2c only where it is safe or asked for. */
static int h2_read_server(h2_plugin *p, char *err, size_t err_cap)
{
    const sk_host_api *h = p->host;
    const char *server = h->host_value(h->host_ctx, "server_url");
    if (!server || !*server) {
        hc_fmt(err, err_cap, "h2-stream: " HC_NO_SERVER_URL);
        return -1;
    }
    if (h2_url_parse(server, &p->url, err, err_cap) != 0)
        return -1;
    int plain_remote = !p->url.tls && !hc_is_loopback(p->url.host);
    if (plain_remote && !p->opt[O_H2C]) {
        hc_fmt(err, err_cap,
               "h2-stream: server_url %s is plain http:// to a non-loopback host; use https:// "
               "or set transport.options.h2c to true",
               server);
        return -1;
    }
    if (plain_remote)
        h->log(h->host_ctx, SK_LOG_WARN,
               "h2-stream: h2c to %s: credentials travel unencrypted", p->url.host);
    hc_fmt(p->batch_path, sizeof p->batch_path, "%s%s", p->url.prefix, HC_BATCH_PATH);
    hc_fmt(p->health_path, sizeof p->health_path, "%s%s", p->url.prefix, HC_HEALTH_PATH);
    const char *version = h->host_value(h->host_ctx, "version");
    hc_fmt(p->user_agent, sizeof p->user_agent, "spec-kitty-sync/%s",
           version && *version ? version : "unknown");
    return 0;
}

static int h2_create(const sk_host_api *host, void **self, char *err, size_t err_cap)
{
    *self = NULL;
    h2_plugin *p = calloc(1, sizeof *p);
    if (!p) {
        hc_fmt(err, err_cap, "h2-stream: out of memory");
        return -1;
    }
    p->host = host;
    p->wake_fd = -1;
    atomic_init(&p->cancelled, 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cond, NULL);
    char *ca_file = NULL;
    int bad = h2_read_options(p, &ca_file, err, err_cap) || h2_read_server(p, err, err_cap);
    if (!bad && p->url.tls &&
        !(p->tls = h2_tls_context(ca_file, (int)p->opt[O_INSECURE], err, err_cap)))
        bad = 1;
    free(ca_file);
    if (bad) {
        h2_destroy(p);
        return -1;
    }
    p->slots = (int)p->opt[O_STREAMS];
    p->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->wake_fd < 0 || pthread_create(&p->thread, NULL, h2_io_main, p) != 0) {
        hc_fmt(err, err_cap, "h2-stream: cannot start the I/O thread: %s", strerror(errno));
        h2_destroy(p);
        return -1;
    }
    p->thread_started = 1;
    hc_warn_unknown_options(host, h2_options, "h2-stream");
    if (p->opt[O_INSECURE] && p->url.tls)
        host->log(host->host_ctx, SK_LOG_WARN,
                  "h2-stream: options.insecure is true: TLS certificates are NOT verified; "
                  "anyone on the path can read and alter the sync traffic");
    *self = p;
    return 0;
}

static const sk_transport_desc h2_desc = {
    .struct_size = sizeof(sk_transport_desc),
    .abi_major = SK_TRANSPORT_ABI_MAJOR,
    .abi_minor = SK_TRANSPORT_ABI_MINOR,
    .name = "h2-stream",
    .version = H2_VERSION,
    .description = "batches as concurrent streams on one HTTP/2 connection (nghttp2, OpenSSL)",
    .capabilities = SK_CAP_SYNC | SK_CAP_ASYNC | SK_CAP_STREAMING | SK_CAP_PROBE,
    .max_in_flight = 256, /* the live bound is max_streams and the server's: BUSY beyond */
    .create = h2_create,
    .destroy = h2_destroy,
    .send = h2_send,
    .submit = h2_submit,
    .cancel = h2_cancel,
    .probe = h2_probe,
    .options = h2_options,
};

SK_TRANSPORT_DEFINE_ENTRY_V1(h2_desc)
