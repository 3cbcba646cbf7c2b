/*
 * libmicrohttpd glue: one thread per connection (so a delayed answer only
 * holds its own connection), bodies buffered up to --max-body-bytes, routing,
 * fault application, one log line per request.
 */
#include "receiver.h"

#include "common.h"
#include "jalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Per-request state, from the first callback to the completion callback. */
typedef struct conn_req {
    rcv__request rq;
    char method[16];
    char path[256];
    char *buf;
    size_t len, cap;
    int64_t t0;
    int answered;
    int status, events, fault, drop;
    rcv__endpoint ep;
} conn_req;

typedef void (*handler_fn)(rcv__app *, const rcv__request *, rcv__reply *);

/* The routes; paths are compared without their trailing slash. */
static const struct route {
    const char *path;
    const char *method; /* NULL: the handler checks */
    rcv__endpoint ep;
    handler_fn fn;
    int prefix;
} routes[] = {
    {"/api/v1/events/batch", "POST", RCV_EP_BATCH, rcv__handle_batch, 0},
    {"/api/v1/token", "POST", RCV_EP_TOKEN, rcv__handle_token, 0},
    {"/api/v1/token/refresh", "POST", RCV_EP_REFRESH, rcv__handle_refresh, 0},
    {"/api/v1/sync/health", "GET", RCV_EP_HEALTH, rcv__handle_health, 0},
    {"/api/v1/receiver/stats", "GET", RCV_EP_NONE, rcv__handle_stats, 0},
    {"/api/v1/receiver/", NULL, RCV_EP_NONE, rcv__handle_admin, 1},
};

/* Finds the route for path (trailing slash ignored), or NULL. */
static const struct route *find_route(const char *path)
{
    size_t len = strlen(path);
    if (len > 1 && path[len - 1] == '/')
        len--;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const struct route *r = &routes[i];
        size_t rl = strlen(r->path);
        if (r->prefix ? strncmp(path, r->path, rl) == 0
                      : (len == rl && strncmp(path, r->path, rl) == 0))
            return r;
    }
    return NULL;
}

/* Fills the peer address fields of rq. */
static void peer_of(struct MHD_Connection *c, rcv__request *rq)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    snprintf(rq->client, sizeof rq->client, "?");
    if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, rq->client, sizeof rq->client);
        rq->loopback = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    } else if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, rq->client, sizeof rq->client);
        rq->loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
    }
}

/* Creates the request state on the first callback. */
static conn_req *req_new(struct MHD_Connection *c, const char *url, const char *method)
{
    conn_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->t0 = sk__mono_ms();
    snprintf(r->method, sizeof r->method, "%s", method);
    snprintf(r->path, sizeof r->path, "%s", url);
    r->rq.method = r->method;
    r->rq.path = r->path;
    r->rq.content_type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    r->rq.content_encoding = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Encoding");
    r->rq.authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    r->rq.protocol = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Spec-Kitty-Sync-Protocol");
    peer_of(c, &r->rq);
    return r;
}

/* Buffers an upload chunk; beyond the limit the bytes are counted, not kept. */
static void req_take_body(conn_req *r, const char *data, size_t n, size_t limit)
{
    if (r->rq.body_too_large || r->len + n > limit) {
        r->rq.body_too_large = 1;
        return;
    }
    if (r->len + n + 1 > r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 64 * 1024;
        while (ncap < r->len + n + 1)
            ncap *= 2;
        char *nb = realloc(r->buf, ncap);
        if (!nb) {
            r->rq.body_too_large = 1; /* answered as 413: we cannot hold it */
            return;
        }
        r->buf = nb;
        r->cap = ncap;
    }
    memcpy(r->buf + r->len, data, n);
    r->len += n;
    r->buf[r->len] = '\0';
}

/* Waits ms unless the server is stopping. */
static void delay(rcv__app *app, int64_t ms)
{
    struct timespec until = sk__deadline_in(CLOCK_REALTIME, ms);
    pthread_mutex_lock(&app->stop_lock);
    while (!app->stopping &&
           pthread_cond_timedwait(&app->stop_cond, &app->stop_lock, &until) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&app->stop_lock);
}

/* A response that stops half-way: the body reader fails after half the bytes. */
typedef struct drop_body {
    char *text;
    size_t len;
} drop_body;

static ssize_t drop_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    drop_body *d = cls;
    size_t half = d->len / 2 ? d->len / 2 : 1;
    if (pos >= half)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t n = half - (size_t)pos < max ? half - (size_t)pos : max;
    memcpy(buf, d->text + pos, n);
    return (ssize_t)n;
}

static void drop_free(void *cls)
{
    drop_body *d = cls;
    free(d->text);
    free(d);
}

/* Builds the MHD response for rep's body; takes ownership of text. */
static struct MHD_Response *make_response(const rcv__reply *rep, char *text, size_t len)
{
    if (!rep->drop)
        return MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    drop_body *d = malloc(sizeof *d);
    if (!d) {
        free(text);
        return NULL;
    }
    d->text = text;
    d->len = len;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(len, 1024, drop_reader, d, drop_free);
    if (!resp)
        drop_free(d);
    return resp;
}

/* Adds Retry-After in seconds or as an HTTP-date. */
static void add_retry_after(struct MHD_Response *resp, const rcv__reply *rep)
{
    char value[64];
    if (rep->retry_after < 0)
        return;
    if (rep->retry_after_date) {
        time_t at = time(NULL) + (time_t)rep->retry_after;
        struct tm tm;
        gmtime_r(&at, &tm);
        strftime(value, sizeof value, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    } else {
        snprintf(value, sizeof value, "%lld", (long long)rep->retry_after);
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, value);
}

/* Sends rep on c and records what was sent for the log. Frees rep's body. */
static enum MHD_Result send_reply(rcv__app *app, struct MHD_Connection *c, conn_req *r,
                                  rcv__reply *rep)
{
    if (rep->delay_ms > 0)
        delay(app, rep->delay_ms);
    char *text = rep->raw;
    if (!text)
        text = rep->body ? json_dumps(rep->body, JSON_COMPACT) : strdup("{}");
    json_decref(rep->body);
    if (!text)
        return MHD_NO;
    struct MHD_Response *resp = make_response(rep, text, strlen(text));
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    add_retry_after(resp, rep);
    r->status = rep->status;
    r->events = rep->events;
    r->fault = rep->fault;
    r->drop = rep->drop;
    r->answered = 1;
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)rep->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Routes a fully received request, applying any queued fault. */
static enum MHD_Result answer(rcv__app *app, struct MHD_Connection *c, conn_req *r)
{
    rcv__reply rep = {.retry_after = -1};
    r->rq.body = r->buf ? r->buf : "";
    r->rq.body_len = r->len;
    const struct route *rt = find_route(r->path);
    rcv__fault fault = {0};
    int faulted = 0;
    if (rt)
        r->ep = rt->ep;
    if (!rt) {
        rcv__reply_error(&rep, 404, "no such endpoint");
    } else if (rt->method && strcmp(rt->method, r->method) != 0) {
        rcv__reply_error(&rep, 405, "method not allowed (use %s)", rt->method);
    } else if (app->cfg.faults && rt->ep != RCV_EP_NONE &&
               rcv__faults_take(app->faults, rt->ep, &fault)) {
        faulted = 1;
    }
    if (faulted && fault.status) {
        rcv__fault_reply(&fault, &rep);
        rcv__fault_details(app, &fault, &r->rq, &rep);
    } else if (rt && !rep.status) {
        rt->fn(app, &r->rq, &rep);
        if (faulted) { /* delay/drop around a normal answer */
            rep.delay_ms = fault.delay_ms;
            rep.drop = fault.drop;
            rep.fault = 1;
        }
    }
    rcv__fault_clear(&fault);
    if (!rep.status)
        rcv__reply_error(&rep, 500, "internal error");
    return send_reply(app, c, r, &rep);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    rcv__app *app = cls;
    conn_req *r = *con_cls;
    (void)version;
    if (!r) {
        r = req_new(c, url, method);
        if (!r)
            return MHD_NO;
        *con_cls = r;
        /* A body over the limit is read and dropped, then answered 413: an
         * early answer would make a proxy in front (nghttpx) reset the stream
         * instead of passing the 413 on. */
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!r->answered)
            req_take_body(r, upload_data, *upload_data_size, (size_t)app->cfg.max_body_bytes);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->answered)
        return MHD_YES;
    return answer(app, c, r);
}

/* Logs the request and frees its state. */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    rcv__app *app = cls;
    conn_req *r = *con_cls;
    (void)c;
    if (!r)
        return;
    if (r->status)
        rcv__stats_response(&app->stats, r->status, r->fault, r->ep == RCV_EP_BATCH);
    if (!app->cfg.quiet) {
        char when[32], extra[64] = "";
        sk__iso8601_ms(sk__wall_ms(), when, sizeof when);
        if (r->ep == RCV_EP_BATCH)
            snprintf(extra, sizeof extra, " events=%d", r->events);
        /* One line per request; never the headers (they may hold tokens). */
        printf("%s %s %s %s %d %lldms%s%s%s\n", when, r->rq.client, r->method, r->path, r->status,
               (long long)(sk__mono_ms() - r->t0), extra,
               r->fault ? (r->drop ? " fault=drop" : " fault") : "",
               toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted");
    }
    free(r->buf);
    free(r);
    *con_cls = NULL;
}

/* Fills addr from host (numeric IPv4 or IPv6) and port. */
static int make_addr(const char *host, int port, struct sockaddr_storage *addr, int *v6)
{
    memset(addr, 0, sizeof *addr);
    struct sockaddr_in *in = (struct sockaddr_in *)addr;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)addr;
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        *v6 = 0;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *v6 = 1;
        return 0;
    }
    return -1;
}

/* Starts the --nagle relay on the public address in front of the HTTP
   server's private port (*port: in, the server's; out, the public one). */
static int nagle_front(const struct sockaddr_storage *pub, struct sockaddr_storage *http, int v6,
                       int *port)
{
    socklen_t len = v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (v6)
        ((struct sockaddr_in6 *)http)->sin6_port = htons((uint16_t)*port);
    else
        ((struct sockaddr_in *)http)->sin_port = htons((uint16_t)*port);
    return rcv__nagle_relay_start((const struct sockaddr *)pub, len, (struct sockaddr *)http, len,
                                  port);
}

/* Blocks until SIGINT or SIGTERM (blocked in every thread beforehand). */
static void wait_for_signal(const sigset_t *set)
{
    int sig = 0;
    while (sigwait(set, &sig) != 0)
        ;
}

int rcv__serve(rcv__app *app, char *msg, size_t cap)
{
    struct sockaddr_storage addr;
    int v6 = 0;
    if (make_addr(app->cfg.listen_host, app->cfg.listen_port, &addr, &v6) != 0) {
        snprintf(msg, cap, "--listen: %s is not a numeric IP address", app->cfg.listen_host);
        return -1;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* MHD's threads inherit the mask */
    signal(SIGPIPE, SIG_IGN);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_AUTO | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    /* --nagle: the HTTP server moves to a private loopback port behind the relay. */
    struct sockaddr_storage http_addr = addr;
    if (app->cfg.nagle)
        make_addr(v6 ? "::1" : "127.0.0.1", 0, &http_addr, &v6);
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, app, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&http_addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, app, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)120, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(256 * 1024),
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)512, MHD_OPTION_END);
    if (!d) {
        snprintf(msg, cap, "cannot listen on %s:%d: %s", app->cfg.listen_host, app->cfg.listen_port,
                 strerror(errno));
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    int port = info ? info->port : app->cfg.listen_port;
    if (app->cfg.nagle && nagle_front(&addr, &http_addr, v6, &port) != 0) {
        snprintf(msg, cap, "cannot listen on %s:%d: %s", app->cfg.listen_host, app->cfg.listen_port,
                 strerror(errno));
        MHD_stop_daemon(d);
        return -1;
    }
    printf("spec-kitty-receiver listening on http://%s%s%s:%d\n", v6 ? "[" : "",
           app->cfg.listen_host, v6 ? "]" : "", port);
    fflush(stdout);
    wait_for_signal(&set);
    pthread_mutex_lock(&app->stop_lock);
    app->stopping = 1; /* wakes delayed answers so the threads can be joined */
    pthread_cond_broadcast(&app->stop_cond);
    pthread_mutex_unlock(&app->stop_lock);
    MHD_stop_daemon(d);
    printf("spec-kitty-receiver stopped\n");
    return 0;
}
