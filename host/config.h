/*
 * The sync config: <state root>/sync.json (Jansson) plus environment overrides.
 *
 * Every key is optional and declared once, in the table in config.c, with its
 * type, default and help text: the parser, `spec-kitty sync config` and the
 * documentation all read that table, so they cannot drift apart.
 */
#ifndef SK_HOST_CONFIG_H
#define SK_HOST_CONFIG_H

#include "common.h"
#include "queue.h"

#include <jansson.h>

typedef enum sk__config_source {
    SK__SRC_DEFAULT = 0,
    SK__SRC_FILE = 1,
    SK__SRC_ENV = 2
} sk__config_source;

typedef struct sk__config {
    char *path; /* the sync.json that was read (or would be) */
    int file_exists;
    char *server_url;       /* "" when not configured */
    char *transport_plugin; /* name looked up in the plugin path, or an absolute path */
    int64_t transport_abi;
    json_t *transport_options; /* object, owned */
    char *transport_fallback;  /* "" when none */
    int64_t transport_fallback_after;
    char *transport_fallback_url; /* "": server_url */
    json_t *plugin_path;          /* array of strings, owned */
    int64_t queue_max_events;
    sk__durability queue_durability;
    int64_t interval_s;
    int64_t max_batch_events;
    int64_t max_batch_bytes;
    int64_t min_batch_interval_ms;
    int64_t max_events_per_s; /* 0: no limit */
    int64_t backoff_min_ms;
    int64_t backoff_max_ms;
    int64_t max_retries;
    int64_t shutdown_deadline_ms;
    int64_t emit_schema;     /* 1 classic, 3 current envelopes */
    char *emit_project_uuid; /* "" = null */
    char *emit_project_slug; /* "" = null */
    char *emit_build_id;
    char *metrics_textfile; /* "" = none */
    int64_t metrics_interval_s;
    sk__config_source *sources; /* one per key, in table order */
    char **warnings;            /* unknown keys etc., NULL-terminated */
} sk__config;

/*
 * Loads <state_root>/sync.json (a missing file means all defaults) and applies
 * the environment (SPEC_KITTY_SAAS_URL). Errors are SK_ERR_CONFIG with one line:
 * "FILE:LINE:COL: TEXT" for malformed JSON, "FILE: KEY: expected TYPE" for a
 * wrong type or value. Unknown keys become warnings, not errors.
 */
sk_status sk__config_load(const char *state_root, sk__config **out, sk__err *err);
void sk__config_free(sk__config *cfg);

/* Same, from a text (tests); path is only used in messages. */
sk_status sk__config_parse(const char *path, const char *text, sk__config **out, sk__err *err);

/* The default of an integer key ("schedule.max_retries"): the one place host defaults live. */
int64_t sk__config_default_int(const char *key);

/* Number of keys in the table. */
size_t sk__config_key_count(void);

/* Describes key i: name ("schedule.interval_s"), type name, help text, range. */
typedef struct sk__config_key_info {
    const char *name;
    const char *type;
    const char *help;
    int64_t min, max; /* range of an integer key (equal to 0 otherwise) */
} sk__config_key_info;
void sk__config_key_describe(size_t i, sk__config_key_info *info);

/* The effective value of key i as a new JSON reference, and where it came from. */
json_t *sk__config_value_json(const sk__config *cfg, size_t i, sk__config_source *src);

const char *sk__config_source_name(sk__config_source src);

#endif
