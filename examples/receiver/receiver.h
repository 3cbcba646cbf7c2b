/*
 * spec-kitty-receiver: a small server speaking the spec-kitty sync contract
 * (CONTRACT.md §3–4). Handlers work on an rcv__request and fill an
 * rcv__reply; only http.c knows libmicrohttpd.
 */
#ifndef RCV_RECEIVER_H
#define RCV_RECEIVER_H

#include "auth.h"
#include "faults.h"
#include "store.h"

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Everything the command line sets. */
typedef struct rcv__config {
    char listen_host[64];
    int listen_port;
    const char *db_path;
    const char *users_path;
    int no_auth;
    int faults;
    int strict;
    int quiet;
    int64_t access_ttl_s;
    int64_t refresh_ttl_s;
    int64_t max_events;
    int64_t max_body_bytes;
    int64_t rate_limit_ms;
    int nagle; /* --nagle: answer as a server with Nagle's algorithm on (nagle.c) */
} rcv__config;

/* Counters since start (the stats endpoint). */
typedef struct rcv__stats {
    pthread_mutex_t lock;
    int64_t requests, batch_requests, batches, events_received;
    int64_t success, duplicates, rejected, faults_injected;
    int64_t http_status[600];
} rcv__stats;

typedef struct rcv__app {
    rcv__config cfg;
    rcv__store *store;
    json_t *users; /* NULL with --no-auth */
    rcv__faults *faults;
    rcv__ratelimit *ratelimit;
    rcv__stats stats;
    int64_t started_ms;
    pthread_mutex_t stop_lock;
    pthread_cond_t stop_cond;
    int stopping;
} rcv__app;

/* One request as the handlers see it (all strings borrowed). */
typedef struct rcv__request {
    const char *method;
    const char *path;
    const char *content_type;
    const char *content_encoding;
    const char *authorization;
    const char *protocol; /* X-Spec-Kitty-Sync-Protocol */
    const char *body;
    size_t body_len;
    int body_too_large; /* more than --max-body-bytes arrived */
    char client[64];    /* peer address */
    int loopback;       /* the peer is 127.0.0.0/8 or ::1 */
} rcv__request;

/* What to answer. body (owned) is sent as JSON unless raw (owned) is set. */
typedef struct rcv__reply {
    int status;
    json_t *body;
    char *raw;
    int64_t retry_after; /* seconds, -1 none */
    int retry_after_date;
    int64_t delay_ms;
    int drop;
    int events; /* events in the batch, for the log */
    int fault;  /* the answer was injected */
} rcv__reply;

/* Sets rep to status with {"error": fmt...}. */
void rcv__reply_error(rcv__reply *rep, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Checks the Bearer token of rq (always passes with --no-auth). Returns 0
 * and fills user/team, or 1 after setting rep to 401.
 */
int rcv__authenticate(rcv__app *app, const rcv__request *rq, char *user, size_t user_cap,
                      char *team, size_t team_cap, rcv__reply *rep);

/* POST /api/v1/events/batch/ */
void rcv__handle_batch(rcv__app *app, const rcv__request *rq, rcv__reply *rep);

/* A 412 body in the current shape (CONTRACT.md §3): error_code,
 * error_description and sync_protocol.upgrade_guidance, with the older
 * top-level error and upgrade_guidance kept for older clients. */
json_t *rcv__protocol_refusal(const char *error_code, const char *description,
                              const char *guidance);
/* POST /api/v1/token/ and /api/v1/token/refresh/ */
void rcv__handle_token(rcv__app *app, const rcv__request *rq, rcv__reply *rep);
void rcv__handle_refresh(rcv__app *app, const rcv__request *rq, rcv__reply *rep);
/* GET /api/v1/sync/health/ */
void rcv__handle_health(rcv__app *app, const rcv__request *rq, rcv__reply *rep);
/* GET /api/v1/receiver/stats */
void rcv__handle_stats(rcv__app *app, const rcv__request *rq, rcv__reply *rep);
/* /api/v1/receiver/faults, /poison, /tokens/expire (only with --faults) */
void rcv__handle_admin(rcv__app *app, const rcv__request *rq, rcv__reply *rep);

/* Turns an injected fault into a reply (status, body, headers). */
void rcv__fault_reply(const rcv__fault *f, rcv__reply *rep);
/* For an injected 400 with details: lists every event of the batch in rq. */
void rcv__fault_details(rcv__app *app, const rcv__fault *f, const rcv__request *rq,
                        rcv__reply *rep);

/*
 * Decodes a batch body per Content-Encoding (gzip or identity) and parses
 * it. Returns the root (new reference) or NULL after filling rep (400/413).
 */
json_t *rcv__batch_decode(rcv__app *app, const rcv__request *rq, rcv__reply *rep);

/* Stats updates. */
void rcv__stats_batch(rcv__stats *s, int64_t received, int64_t success, int64_t duplicates,
                      int64_t rejected);
void rcv__stats_response(rcv__stats *s, int status, int fault, int is_batch);
json_t *rcv__stats_json(rcv__app *app);

/* Runs the HTTP server until SIGINT/SIGTERM. Returns 0, or -1 with msg. */
int rcv__serve(rcv__app *app, char *msg, size_t cap);

/* --nagle: listens on public_addr and relays each client to server, Nagle's
   algorithm on towards the client and every response in two writes. Sets
   *port to the port listened on. Returns 0, or -1 with errno. */
int rcv__nagle_relay_start(const struct sockaddr *public_addr, socklen_t public_len,
                           const struct sockaddr *server, socklen_t server_len, int *port);

#endif
