/* Token, refresh, health, stats and admin endpoints; shared reply helpers. */
#include "receiver.h"

#include "common.h"
#include "jalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void rcv__reply_error(rcv__reply *rep, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_decref(rep->body);
    rep->status = status;
    rep->body = json_pack("{s:s}", "error", msg);
}

int rcv__authenticate(rcv__app *app, const rcv__request *rq, char *user, size_t user_cap,
                      char *team, size_t team_cap, rcv__reply *rep)
{
    if (app->cfg.no_auth) {
        snprintf(user, user_cap, "anonymous");
        snprintf(team, team_cap, "local");
        return 0;
    }
    const char *h = rq->authorization;
    if (!h || strncasecmp(h, "Bearer ", 7) != 0 || strlen(h + 7) != RCV_TOKEN_CHARS) {
        rcv__reply_error(rep, 401, "authentication required (Authorization: Bearer <access>)");
        return 1;
    }
    unsigned char hash[32];
    rcv__token_hash(h + 7, hash);
    if (rcv__store_token_find(app->store, hash, RCV_TOKEN_ACCESS, 0, sk__wall_ms(), user, user_cap,
                              team, team_cap) != 0) {
        rcv__reply_error(rep, 401, "access token expired or unknown");
        return 1;
    }
    return 0;
}

/* Parses the request body as a JSON object, or fills rep with 400. */
static json_t *json_body(const rcv__request *rq, rcv__reply *rep)
{
    json_error_t jerr;
    json_t *o = rq->body_too_large ? NULL : json_loadb(rq->body, rq->body_len, 0, &jerr);
    if (!json_is_object(o)) {
        json_decref(o);
        rcv__reply_error(rep, 400, "body must be a JSON object");
        return NULL;
    }
    return o;
}

/* Issues a new access/refresh pair for user and writes the 200 reply. */
static void issue_tokens(rcv__app *app, const char *user, const char *team, rcv__reply *rep)
{
    char access[RCV_TOKEN_CHARS + 1], refresh[RCV_TOKEN_CHARS + 1];
    unsigned char ha[32], hr[32];
    int64_t now = sk__wall_ms();
    if (rcv__token_new(access) != 0 || rcv__token_new(refresh) != 0) {
        rcv__reply_error(rep, 500, "no randomness for tokens");
        return;
    }
    rcv__token_hash(access, ha);
    rcv__token_hash(refresh, hr);
    if (rcv__store_token_put(app->store, ha, RCV_TOKEN_ACCESS, user, team,
                             now + app->cfg.access_ttl_s * 1000) != 0 ||
        rcv__store_token_put(app->store, hr, RCV_TOKEN_REFRESH, user, team,
                             now + app->cfg.refresh_ttl_s * 1000) != 0) {
        rcv__reply_error(rep, 503, "cannot store the session");
        return;
    }
    rep->status = 200;
    rep->body = json_pack(
        "{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s}", "access", access, "refresh", refresh,
        "token_type", "Bearer", "access_lifetime", (json_int_t)app->cfg.access_ttl_s, "expires_in",
        (json_int_t)app->cfg.access_ttl_s, "refresh_lifetime", (json_int_t)app->cfg.refresh_ttl_s,
        "refresh_expires_in", (json_int_t)app->cfg.refresh_ttl_s, "team_slug", team);
}

void rcv__handle_token(rcv__app *app, const rcv__request *rq, rcv__reply *rep)
{
    json_t *o = json_body(rq, rep);
    if (!o)
        return;
    const char *user = json_string_value(json_object_get(o, "username"));
    const char *pass = json_string_value(json_object_get(o, "password"));
    char team[128] = "local";
    if (!user || !pass || !*user)
        rcv__reply_error(rep, 400, "username and password are required");
    else if (!app->cfg.no_auth && rcv__users_check(app->users, user, pass, team, sizeof team) != 0)
        rcv__reply_error(rep, 401, "invalid credentials");
    else
        issue_tokens(app, user, team, rep);
    json_decref(o);
}

void rcv__handle_refresh(rcv__app *app, const rcv__request *rq, rcv__reply *rep)
{
    json_t *o = json_body(rq, rep);
    if (!o)
        return;
    const char *token = json_string_value(json_object_get(o, "refresh"));
    char user[128], team[128];
    unsigned char hash[32];
    if (!token) {
        rcv__reply_error(rep, 400, "\"refresh\" is required");
    } else {
        rcv__token_hash(token, hash);
        /* take=1: the refresh token is consumed, so a second use is refused. */
        if (rcv__store_token_find(app->store, hash, RCV_TOKEN_REFRESH, 1, sk__wall_ms(), user,
                                  sizeof user, team, sizeof team) != 0)
            rcv__reply_error(rep, 401, "refresh token expired, unknown or already used");
        else
            issue_tokens(app, user, team, rep);
    }
    json_decref(o);
}

void rcv__handle_health(rcv__app *app, const rcv__request *rq, rcv__reply *rep)
{
    char user[128], team[128];
    if (rcv__authenticate(app, rq, user, sizeof user, team, sizeof team, rep) != 0)
        return;
    rep->status = 200;
    rep->body = json_pack("{s:s, s:s, s:s}", "status", "ok", "protocol", "2.0", "team_slug", team);
}

void rcv__handle_stats(rcv__app *app, const rcv__request *rq, rcv__reply *rep)
{
    (void)rq;
    rep->status = 200;
    rep->body = rcv__stats_json(app);
}

/* POST /api/v1/receiver/faults: one rule, an array, or {"faults": [...]}. */
static void admin_push(rcv__app *app, const rcv__request *rq, rcv__reply *rep)
{
    json_error_t jerr;
    json_t *o = json_loadb(rq->body, rq->body_len, 0, &jerr);
    json_t *list = json_is_array(o) ? o : json_object_get(o, "faults");
    char msg[256];
    size_t queued = 0;
    if (!o) {
        rcv__reply_error(rep, 400, "malformed JSON: %s", jerr.text);
    } else if (list) {
        size_t i;
        json_t *spec;
        json_array_foreach(list, i, spec)
        {
            if (rcv__faults_push(app->faults, spec, msg, sizeof msg) != 0)
                break;
            queued++;
        }
        if (!json_is_array(list) || queued < json_array_size(list))
            rcv__reply_error(rep, 400, "%s (rule %zu; %zu queued)",
                             json_is_array(list) ? msg : "\"faults\" must be an array", queued,
                             queued);
    } else if (rcv__faults_push(app->faults, o, msg, sizeof msg) != 0) {
        rcv__reply_error(rep, 400, "%s", msg);
    } else {
        queued = 1;
    }
    if (!rep->status) {
        rep->status = 200;
        rep->body = json_pack("{s:I}", "queued", (json_int_t)queued);
    }
    json_decref(o);
}

/* POST /api/v1/receiver/poison {"event_id": "..."} */
static void admin_poison(rcv__app *app, const rcv__request *rq, rcv__reply *rep)
{
    json_t *o = json_body(rq, rep);
    const char *id = json_string_value(json_object_get(o, "event_id"));
    if (o && !id)
        rcv__reply_error(rep, 400, "\"event_id\" is required");
    else if (id && rcv__faults_poison(app->faults, id) == 0) {
        rep->status = 200;
        rep->body = json_pack("{s:s}", "poisoned", id);
    }
    json_decref(o);
}

/* POST /api/v1/receiver/tokens/expire {"kind": "access"|"refresh"|"all"} */
static void admin_expire(rcv__app *app, const rcv__request *rq, rcv__reply *rep)
{
    json_t *o = json_body(rq, rep);
    const char *kind = json_string_value(json_object_get(o, "kind"));
    int k = -1;
    if (!kind || strcmp(kind, "all") == 0)
        k = 0;
    else if (strcmp(kind, "access") == 0)
        k = RCV_TOKEN_ACCESS;
    else if (strcmp(kind, "refresh") == 0)
        k = RCV_TOKEN_REFRESH;
    if (o && k < 0)
        rcv__reply_error(rep, 400, "\"kind\" must be access, refresh or all");
    else if (o) {
        rep->status = 200;
        rep->body =
            json_pack("{s:i}", "expired", rcv__store_tokens_expire(app->store, k, sk__wall_ms()));
    }
    json_decref(o);
}

void rcv__handle_admin(rcv__app *app, const rcv__request *rq, rcv__reply *rep)
{
    const char *p = rq->path + strlen("/api/v1/receiver/");
    int post = strcmp(rq->method, "POST") == 0;
    if (!app->cfg.faults) {
        rcv__reply_error(rep, 404, "fault injection is off (start with --faults)");
    } else if (!rq->loopback) {
        rcv__reply_error(rep, 403, "admin endpoints answer loopback clients only");
    } else if (strcmp(p, "faults") == 0 && post) {
        admin_push(app, rq, rep);
    } else if (strcmp(p, "faults") == 0 && strcmp(rq->method, "GET") == 0) {
        rep->status = 200;
        rep->body = rcv__faults_json(app->faults);
    } else if (strcmp(p, "faults") == 0 && strcmp(rq->method, "DELETE") == 0) {
        rcv__faults_reset(app->faults);
        rep->status = 200;
        rep->body = json_pack("{s:b}", "cleared", 1);
    } else if (strcmp(p, "poison") == 0 && post) {
        admin_poison(app, rq, rep);
    } else if (strcmp(p, "tokens/expire") == 0 && post) {
        admin_expire(app, rq, rep);
    } else {
        rcv__reply_error(rep, 405, "method not allowed");
    }
}

/* Default body of an injected status. */
static json_t *fault_body(const rcv__fault *f)
{
    const char *err = f->error;
    if (!err)
        err = f->status == 413   ? "request entity too large"
              : f->status == 401 ? "access token expired or unknown"
              : f->status == 403 ? "forbidden"
              : f->status == 412 ? "client sync protocol not supported"
              : f->status == 429 ? "too many requests"
              : f->status >= 500 ? "injected server error"
                                 : "bad request";
    if (f->status == 412)
        return rcv__protocol_refusal("client-too-old", err,
                                     f->upgrade_guidance ? f->upgrade_guidance
                                                         : "upgrade spec-kitty to the latest "
                                                           "release");
    return json_pack("{s:s}", "error", err);
}

/* Details for an injected 400: every event of the batch, as a list or a string. */
static json_t *fault_details(rcv__app *app, const rcv__fault *f, const rcv__request *rq)
{
    json_t *list = json_array();
    rcv__reply scratch = {0};
    json_t *root = rcv__batch_decode(app, rq, &scratch);
    json_decref(scratch.body);
    size_t i;
    json_t *ev;
    json_array_foreach(json_object_get(root, "events"), i, ev)
    {
        json_t *id = json_object_get(ev, "event_id");
        if (json_is_string(id))
            json_array_append_new(list, json_pack("{s:O, s:s}", "event_id", id, "error",
                                                  "rejected by fault injection"));
    }
    json_decref(root);
    if (f->details == 1)
        return list;
    char *text = json_dumps(list, JSON_COMPACT);
    json_decref(list);
    json_t *s = json_string(text ? text : "[]");
    free(text);
    return s;
}

void rcv__fault_reply(const rcv__fault *f, rcv__reply *rep)
{
    rep->fault = 1;
    rep->status = f->status;
    rep->retry_after = f->retry_after;
    rep->retry_after_date = f->retry_after_date;
    rep->delay_ms = f->delay_ms;
    rep->drop = f->drop;
    if (f->body) {
        rep->raw = strdup(f->body);
        return;
    }
    rep->body = fault_body(f);
}

void rcv__fault_details(rcv__app *app, const rcv__fault *f, const rcv__request *rq, rcv__reply *rep)
{
    if (f->status == 400 && f->details && rep->body)
        json_object_set_new(rep->body, "details", fault_details(app, f, rq));
}
