/*
 * The options of the nats-jetstream transport: one table gives each key its type,
 * default, range and help line; the host shows it (sk_transport_desc.options) and
 * nj_config_read parses by it, so the two cannot drift.
 */
#ifndef NJ_CONFIG_H
#define NJ_CONFIG_H

#include <spec-kitty/transport.h>

#include <stdint.h>

#define NJ_NAME "nats-jetstream"
/* In `subject`: replaced by the envelope's team_slug. */
#define NJ_SLUG_FIELD "{team_slug}"

typedef struct nj_config {
    char **servers; /* nservers URLs, at least one */
    int nservers;
    char *subject;
    char *stream;
    char *credentials_file; /* NULL when unset */
    char *token;            /* read from token_file; NULL when unset; never logged */
    char *tls_ca;           /* NULL when unset */
    int require_tls;        /* tls_ca set, or a tls:// URL among servers */
    int64_t publish_timeout_ms;
    int64_t connect_timeout_ms;
    int64_t max_pending;
    int64_t duplicate_window_s;
    int64_t replicas;
    int create_stream;
} nj_config;

/* The option table, terminated by a NULL name. */
extern const sk_option_def nj_options[];

/* Reads and checks the plugin's options into c (zeroed by the caller). 0, or -1
 * with one line in err naming the option at fault; nj_config_free either way. */
int nj_config_read(const sk_host_api *h, nj_config *c, char *err, size_t cap);
void nj_config_free(nj_config *c);

/* snprintf that tolerates cap 0. */
void nj_fmt(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
