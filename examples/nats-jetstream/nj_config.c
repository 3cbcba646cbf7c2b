/*
 * nats-jetstream's options: the table the host shows, and the parser it drives.
 */
#include "nj_config.h"
#include "nj_creds.h"
#include "nj_file.h"

#include <jansson.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define NJ_DEFAULT_SERVER "nats://127.0.0.1:4222"
#define NJ_DEFAULT_SUBJECT "spec-kitty.events." NJ_SLUG_FIELD
#define NJ_DEFAULT_STREAM "SPEC_KITTY_EVENTS"

/* The integer options: key, default, range, help. X-macro: one line each feeds both
 * the table below (default as text) and the parser (default as a number). */
#define NJ_INT_OPTIONS(X)                                                                          \
    X(publish_timeout_ms, 5000, 1, 3600000,                                                        \
      "wait for one message's ack (never past the batch deadline)")                                \
    X(connect_timeout_ms, 2000, 1, 600000, "connect timeout per server")                           \
    X(max_pending, 4000, 1, 1000000,                                                               \
      "published messages awaiting their ack; beyond it submit answers BUSY")                      \
    X(duplicate_window_s, 120, 1, 604800, "create_stream: JetStream's duplicate window")           \
    X(replicas, 1, 1, 5, "create_stream: replica count (more than 1 needs a cluster)")

#define NJ_INT_DEF(key, dflt, lo, hi, help) {#key, "integer", #dflt, help},

const sk_option_def nj_options[] = {
    {"servers", "list", "[\"" NJ_DEFAULT_SERVER "\"]",
     "NATS server URLs (a JSON list, or one comma-separated string); a cluster takes several; "
     "a tls:// URL requires TLS"},
    {"subject", "string", NJ_DEFAULT_SUBJECT,
     "subject of each event; " NJ_SLUG_FIELD " becomes the envelope's team_slug"},
    {"stream", "string", NJ_DEFAULT_STREAM,
     "stream expected to store the subject (a message stored elsewhere is rejected)"},
    {"credentials_file", "string", "", "NATS .creds file (JWT + NKey seed); owner-only"},
    {"token_file", "string", "", "file holding a NATS auth token; owner-only"},
    {"tls_ca", "string", "", "PEM CA bundle to verify the servers; setting it requires TLS"},
    {"create_stream", "boolean", "false", "create the stream when it does not exist"},
    NJ_INT_OPTIONS(NJ_INT_DEF){NULL, NULL, NULL, NULL},
};

void nj_fmt(char *buf, size_t cap, const char *fmt, ...)
{
    if (!cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

void nj_config_free(nj_config *c)
{
    for (int i = 0; i < c->nservers; i++)
        free(c->servers[i]);
    free(c->servers);
    free(c->subject);
    free(c->stream);
    free(c->credentials_file);
    if (c->token)
        explicit_bzero(c->token, strlen(c->token));
    free(c->token);
    free(c->tls_ca);
}

static int add_server(nj_config *c, const char *url, size_t len)
{
    while (len && (*url == ' ' || *url == '\t'))
        url++, len--;
    while (len && (url[len - 1] == ' ' || url[len - 1] == '\t'))
        len--;
    if (!len)
        return 0;
    char **grown = realloc(c->servers, (size_t)(c->nservers + 1) * sizeof *grown);
    if (!grown)
        return -1;
    c->servers = grown;
    if (!(c->servers[c->nservers] = strndup(url, len)))
        return -1;
    c->nservers++;
    return 0;
}

/* servers: a JSON list of URLs, or one string of comma-separated URLs. */
static int read_servers(const sk_host_api *h, nj_config *c, char *err, size_t cap)
{
    json_t *all = json_loads(h->option_json(h->host_ctx), 0, NULL);
    json_t *v = json_object_get(all, "servers");
    int rc = 0;
    if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            if (!json_is_string(item)) {
                nj_fmt(err, cap, NJ_NAME ": options.servers[%zu] is not a string", i);
                rc = -1;
                break;
            }
            rc = add_server(c, json_string_value(item), json_string_length(item));
            if (rc)
                break;
        }
    } else if (json_is_string(v)) {
        for (const char *p = json_string_value(v); rc == 0;) {
            const char *comma = strchr(p, ',');
            rc = add_server(c, p, comma ? (size_t)(comma - p) : strlen(p));
            if (!comma)
                break;
            p = comma + 1;
        }
    } else if (v) {
        nj_fmt(err, cap, NJ_NAME ": options.servers must be a list of URLs or a string");
        rc = -1;
    }
    json_decref(all);
    if (rc == 0 && c->nservers == 0)
        rc = add_server(c, NJ_DEFAULT_SERVER, strlen(NJ_DEFAULT_SERVER));
    if (rc && !err[0])
        nj_fmt(err, cap, NJ_NAME ": out of memory");
    return rc;
}

/* libnats reads a tls:// URL as a plain one unless TLS is asked for: ask. */
static int wants_tls(const nj_config *c)
{
    if (c->tls_ca)
        return 1;
    for (int i = 0; i < c->nservers; i++)
        if (strncasecmp(c->servers[i], "tls://", 6) == 0)
            return 1;
    return 0;
}

/* Reads one integer option and checks its range. 0, or -1 with err. */
static int int_option(const sk_host_api *h, const char *key, int64_t dflt, int64_t lo, int64_t hi,
                      int64_t *out, char *err, size_t cap)
{
    *out = h->option_int(h->host_ctx, key, dflt);
    if (*out < lo || *out > hi) {
        nj_fmt(err, cap, NJ_NAME ": options.%s must be %lld..%lld, not %lld", key, (long long)lo,
               (long long)hi, (long long)*out);
        return -1;
    }
    return 0;
}

static char *string_option(const sk_host_api *h, const char *key, const char *dflt)
{
    const char *v = h->option_string(h->host_ctx, key, dflt);
    return v && *v ? strdup(v) : NULL;
}

#define NJ_INT_READ(key, dflt, lo, hi, help)                                                       \
    if (int_option(h, #key, dflt, lo, hi, &c->key, err, cap))                                      \
        return -1;

int nj_config_read(const sk_host_api *h, nj_config *c, char *err, size_t cap)
{
    if (read_servers(h, c, err, cap))
        return -1;
    NJ_INT_OPTIONS(NJ_INT_READ)
    c->create_stream = h->option_bool(h->host_ctx, "create_stream", 0);
    c->subject = string_option(h, "subject", NJ_DEFAULT_SUBJECT);
    c->stream = string_option(h, "stream", NJ_DEFAULT_STREAM);
    c->credentials_file = string_option(h, "credentials_file", NULL);
    c->tls_ca = string_option(h, "tls_ca", NULL);
    if (!c->subject || !c->stream || strlen(c->subject) > 256) {
        nj_fmt(err, cap,
               NJ_NAME ": options.subject (at most 256 bytes) and options.stream "
                       "must not be empty");
        return -1;
    }
    /* libnats reads it at create: a FIFO would hang that */
    if (c->tls_ca && nj_file_check(c->tls_ca, NJ_NAME ": options.tls_ca", NJ_FILE_PUBLIC, err, cap))
        return -1;
    c->require_tls = wants_tls(c);
    if (c->credentials_file &&
        nj_creds_check(c->credentials_file, NJ_NAME ": options.credentials_file", err, cap))
        return -1;
    const char *token_file = h->option_string(h->host_ctx, "token_file", NULL);
    if (token_file && *token_file &&
        nj_token_read(token_file, NJ_NAME ": options.token_file", &c->token, err, cap))
        return -1;
    return 0;
}
