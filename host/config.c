/* The sync config: one table of keys drives parsing, defaults and `sync config`. */
#include "config.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

typedef enum key_type { T_STRING, T_INT, T_DURABILITY, T_OBJECT, T_STRLIST } key_type;

typedef struct key_def {
    const char *name;
    key_type type;
    size_t offset;      /* of the field in sk__config */
    const char *dflt_s; /* T_STRING / T_DURABILITY */
    int64_t dflt_i;     /* T_INT */
    int64_t min, max;   /* T_INT range */
    const char *help;
} key_def;

#define F(field) offsetof(sk__config, field)

static const key_def KEYS[] = {
    {"server_url", T_STRING, F(server_url), "", 0, 0, 0,
     "base URL of the spec-kitty server (SPEC_KITTY_SAAS_URL overrides)"},
    {"transport.plugin", T_STRING, F(transport_plugin), "http-batch", 0, 0, 0,
     "transport plugin: a name looked up in the plugin path, or an absolute path to a .so"},
    {"transport.abi", T_INT, F(transport_abi), NULL, 1, 1, 1,
     "transport ABI major the plugin must speak"},
    {"transport.options", T_OBJECT, F(transport_options), NULL, 0, 0, 0,
     "options handed to the plugin as they are"},
    {"transport.fallback", T_STRING, F(transport_fallback), "", 0, 0, 0,
     "plugin the service sends through while a streaming transport (h2-stream) fails, named like "
     "transport.plugin and given the same transport.options (\"\": no fallback)"},
    {"transport.fallback_after", T_INT, F(transport_fallback_after), NULL, 3, 1, 1000,
     "failed passes in a row of the streaming transport before the fallback takes over"},
    {"transport.fallback_url", T_STRING, F(transport_fallback_url), "", 0, 0, 0,
     "server URL of the fallback transport (\"\": server_url)"},
    {"plugin_path", T_STRLIST, F(plugin_path), NULL, 0, 0, 0,
     "folders searched for transport plugins before SPEC_KITTY_PLUGIN_PATH and the install dir"},
    {"queue.max_events", T_INT, F(queue_max_events), NULL, 100000, 1, 100000000,
     "capacity of the local queue; a new event beyond it is refused with a warning"},
    {"queue.durability", T_DURABILITY, F(queue_durability), "full", 0, 0, 0,
     "full: a queued event survives power loss; normal: may lose the last events on power loss"},
    {"schedule.interval_s", T_INT, F(interval_s), NULL, 300, 1, 86400,
     "background flush period while the queue is non-empty"},
    {"schedule.max_batch_events", T_INT, F(max_batch_events), NULL, 1000, 1, 1000,
     "events per batch (the server accepts at most 1000)"},
    {"schedule.max_batch_bytes", T_INT, F(max_batch_bytes), NULL, 900000, 1024, 1073741824,
     "uncompressed JSON bytes per batch"},
    {"schedule.min_batch_interval_ms", T_INT, F(min_batch_interval_ms), NULL, 5000, 0, 3600000,
     "background flushes send at most one batch per this interval"},
    {"schedule.max_events_per_s", T_INT, F(max_events_per_s), NULL, 0, 0, 100000000,
     "events sent per second at most, a token bucket of one batch (0: no limit)"},
    {"schedule.backoff_min_ms", T_INT, F(backoff_min_ms), NULL, 500, 1, 3600000,
     "first delay after a failure; doubles on each further failure"},
    {"schedule.backoff_max_ms", T_INT, F(backoff_max_ms), NULL, 30000, 1, 86400000,
     "longest delay between failed attempts"},
    {"schedule.max_retries", T_INT, F(max_retries), NULL, 20, 0, 1000000,
     "rejections of one event before it is parked"},
    {"schedule.shutdown_deadline_ms", T_INT, F(shutdown_deadline_ms), NULL, 5000, 0, 600000,
     "how long a stopping service lets the in-flight batch finish before cancelling it"},
    {"emit.schema", T_INT, F(emit_schema), NULL, 1, 1, 3,
     "envelopes `sync emit` builds: 1 the classic vocabulary, 3 the current one (schema_version "
     "3.0.0)"},
    {"emit.project_uuid", T_STRING, F(emit_project_uuid), "", 0, 0, 0,
     "project_uuid of current envelopes (\"\": null, the events stay local)"},
    {"emit.project_slug", T_STRING, F(emit_project_slug), "", 0, 0, 0,
     "project_slug of current envelopes (\"\": null)"},
    {"emit.build_id", T_STRING, F(emit_build_id), "", 0, 0, 0, "build_id of current envelopes"},
    {"metrics.textfile", T_STRING, F(metrics_textfile), "", 0, 0, 0,
     "file the service keeps the Prometheus metrics in, for node_exporter's textfile collector "
     "(\"\": none)"},
    {"metrics.interval_s", T_INT, F(metrics_interval_s), NULL, 60, 1, 86400,
     "how often the service rewrites metrics.textfile (it also does after each pass)"},
};

#undef F

/* The durability names, indexed by sk__durability. */
static const char *const DURABILITY_NAMES[] = {
    [SK__DURABILITY_FULL] = "full", [SK__DURABILITY_NORMAL] = "normal"};

/* Parses a durability name; -1 when it is neither. */
static int durability_parse(const char *name)
{
    for (size_t i = 0; name && i < SK__ARRAY_LEN(DURABILITY_NAMES); i++)
        if (strcmp(name, DURABILITY_NAMES[i]) == 0)
            return (int)i;
    return -1;
}

static const char *type_name(key_type t)
{
    switch (t) {
    case T_STRING:
        return "string";
    case T_INT:
        return "integer";
    case T_DURABILITY:
        return "\"full\" or \"normal\"";
    case T_OBJECT:
        return "object";
    case T_STRLIST:
        return "list of strings";
    }
    return "?";
}

size_t sk__config_key_count(void)
{
    return SK__ARRAY_LEN(KEYS);
}

void sk__config_key_describe(size_t i, sk__config_key_info *info)
{
    info->name = KEYS[i].name;
    info->type = type_name(KEYS[i].type);
    info->help = KEYS[i].help;
    info->min = KEYS[i].min;
    info->max = KEYS[i].max;
}

const char *sk__config_source_name(sk__config_source src)
{
    return src == SK__SRC_FILE ? "file" : src == SK__SRC_ENV ? "environment" : "default";
}

static void *field(sk__config *cfg, const key_def *k)
{
    return (char *)cfg + k->offset;
}

static const void *cfield(const sk__config *cfg, const key_def *k)
{
    return (const char *)cfg + k->offset;
}

static int set_string(char **slot, const char *value)
{
    char *copy = strdup(value);
    if (!copy)
        return -1;
    free(*slot);
    *slot = copy;
    return 0;
}

static sk_status apply_defaults(sk__config *cfg, sk__err *err)
{
    for (size_t i = 0; i < SK__ARRAY_LEN(KEYS); i++) {
        const key_def *k = &KEYS[i];
        int bad = 0;
        switch (k->type) {
        case T_STRING:
            bad = set_string(field(cfg, k), k->dflt_s);
            break;
        case T_INT:
            *(int64_t *)field(cfg, k) = k->dflt_i;
            break;
        case T_DURABILITY:
            *(sk__durability *)field(cfg, k) = (sk__durability)durability_parse(k->dflt_s);
            break;
        case T_OBJECT:
            bad = !(*(json_t **)field(cfg, k) = json_object());
            break;
        case T_STRLIST:
            bad = !(*(json_t **)field(cfg, k) = json_array());
            break;
        }
        if (bad)
            return sk__fail(err, SK_ERR_NOMEM, "out of memory reading the config");
    }
    return SK_OK;
}

static int is_string_list(const json_t *v)
{
    size_t i;
    json_t *item;
    if (!json_is_array(v))
        return 0;
    json_array_foreach(v, i, item) if (!json_is_string(item)) return 0;
    return 1;
}

/* Stores one file value into its field, checking type and range. */
static sk_status apply_value(sk__config *cfg, const key_def *k, json_t *v, sk__err *err)
{
    const char *path = cfg->path;
    switch (k->type) {
    case T_STRING:
        if (!json_is_string(v))
            break;
        return set_string(field(cfg, k), json_string_value(v))
                   ? sk__fail(err, SK_ERR_NOMEM, "out of memory")
                   : SK_OK;
    case T_INT:
        if (!json_is_integer(v))
            break;
        if (json_integer_value(v) < k->min || json_integer_value(v) > k->max)
            return sk__fail(err, SK_ERR_CONFIG,
                            "%s: %s: %lld is out of range (expected %lld to %lld)", path, k->name,
                            (long long)json_integer_value(v), (long long)k->min, (long long)k->max);
        *(int64_t *)field(cfg, k) = json_integer_value(v);
        return SK_OK;
    case T_DURABILITY: {
        int d = durability_parse(json_string_value(v));
        if (d < 0)
            break;
        *(sk__durability *)field(cfg, k) = (sk__durability)d;
        return SK_OK;
    }
    case T_OBJECT:
    case T_STRLIST:
        if (k->type == T_OBJECT ? !json_is_object(v) : !is_string_list(v))
            break;
        json_decref(*(json_t **)field(cfg, k));
        *(json_t **)field(cfg, k) = json_incref(v);
        return SK_OK;
    }
    return sk__fail(err, SK_ERR_CONFIG, "%s: %s: expected %s", path, k->name, type_name(k->type));
}

static sk_status add_warning(sk__config *cfg, const char *line)
{
    size_t n = 0;
    while (cfg->warnings && cfg->warnings[n])
        n++;
    char **grown = realloc(cfg->warnings, (n + 2) * sizeof *grown);
    if (!grown)
        return SK_ERR_NOMEM;
    cfg->warnings = grown;
    grown[n] = strdup(line);
    grown[n + 1] = NULL;
    return grown[n] ? SK_OK : SK_ERR_NOMEM;
}

/* Finds the table entry "section.key" (or a top-level "key"). */
static const key_def *find_key(const char *section, const char *key, size_t *index)
{
    char full[256];
    snprintf(full, sizeof full, "%s%s%s", section ? section : "", section ? "." : "", key);
    for (size_t i = 0; i < SK__ARRAY_LEN(KEYS); i++) {
        if (strcmp(KEYS[i].name, full) == 0) {
            *index = i;
            return &KEYS[i];
        }
    }
    return NULL;
}

int64_t sk__config_default_int(const char *key)
{
    size_t i;
    const key_def *k = find_key(NULL, key, &i);
    assert(k && k->type == T_INT && "an integer key of the table");
    return k && k->type == T_INT ? k->dflt_i : 0;
}

/* A section is the part before the dot of some key in the table ("queue" of "queue.durability"). */
static int is_section(const char *key)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < SK__ARRAY_LEN(KEYS); i++)
        if (strncmp(KEYS[i].name, key, n) == 0 && KEYS[i].name[n] == '.')
            return 1;
    return 0;
}

static sk_status apply_object(sk__config *cfg, const char *section, json_t *obj, sk__err *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        size_t idx;
        if (!section && is_section(key)) {
            if (!json_is_object(v))
                return sk__fail(err, SK_ERR_CONFIG, "%s: %s: expected object", cfg->path, key);
            sk_status st = apply_object(cfg, key, v, err);
            if (st != SK_OK)
                return st;
            continue;
        }
        const key_def *k = find_key(section, key, &idx);
        if (!k) {
            char line[1024];
            snprintf(line, sizeof line, "%s: unknown key \"%s%s%s\" (ignored)", cfg->path,
                     section ? section : "", section ? "." : "", key);
            if (add_warning(cfg, line) != SK_OK)
                return sk__fail(err, SK_ERR_NOMEM, "out of memory");
            continue;
        }
        sk_status st = apply_value(cfg, k, v, err);
        if (st != SK_OK)
            return st;
        cfg->sources[idx] = SK__SRC_FILE;
    }
    return SK_OK;
}

static sk_status apply_env(sk__config *cfg, sk__err *err)
{
    const char *url = getenv("SPEC_KITTY_SAAS_URL");
    if (url && *url) {
        size_t idx = 0;
        const key_def *k = find_key(NULL, "server_url", &idx);
        assert(k != NULL); /* a key of the table */
        (void)k;
        if (set_string(&cfg->server_url, url))
            return sk__fail(err, SK_ERR_NOMEM, "out of memory");
        cfg->sources[idx] = SK__SRC_ENV;
    }
    return SK_OK;
}

static sk_status check_consistency(const sk__config *cfg, sk__err *err)
{
    if (cfg->backoff_min_ms > cfg->backoff_max_ms)
        return sk__fail(err, SK_ERR_CONFIG,
                        "%s: schedule.backoff_min_ms (%lld) is larger than schedule.backoff_max_ms "
                        "(%lld)",
                        cfg->path, (long long)cfg->backoff_min_ms, (long long)cfg->backoff_max_ms);
    if (cfg->emit_schema == 2)
        return sk__fail(err, SK_ERR_CONFIG, "%s: emit.schema: expected 1 (classic) or 3 (current)",
                        cfg->path);
    if (!*cfg->transport_plugin)
        return sk__fail(err, SK_ERR_CONFIG, "%s: transport.plugin: must not be empty", cfg->path);
    return SK_OK;
}

sk_status sk__config_parse(const char *path, const char *text, sk__config **out, sk__err *err)
{
    *out = NULL;
    sk__config *cfg = calloc(1, sizeof *cfg);
    if (!cfg || !(cfg->path = strdup(path)) ||
        !(cfg->sources = calloc(SK__ARRAY_LEN(KEYS), sizeof *cfg->sources))) {
        sk__config_free(cfg);
        return sk__fail(err, SK_ERR_NOMEM, "out of memory reading %s", path);
    }
    sk_status st = apply_defaults(cfg, err);
    json_t *root = NULL;
    if (st == SK_OK && text) {
        cfg->file_exists = 1;
        json_error_t jerr;
        root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
        if (!root)
            st = sk__fail(err, SK_ERR_CONFIG, "%s:%d:%d: %s", path, jerr.line, jerr.column,
                          jerr.text);
        else if (!json_is_object(root))
            st = sk__fail(err, SK_ERR_CONFIG, "%s: expected a JSON object at the top level", path);
        else
            st = apply_object(cfg, NULL, root, err);
    }
    json_decref(root);
    if (st == SK_OK)
        st = apply_env(cfg, err);
    if (st == SK_OK)
        st = check_consistency(cfg, err);
    if (st != SK_OK) {
        sk__config_free(cfg);
        return st;
    }
    *out = cfg;
    return SK_OK;
}

sk_status sk__config_load(const char *state_root, sk__config **out, sk__err *err)
{
    char path[4096];
    if (sk__path_join(path, sizeof path, state_root, "sync.json", err) != SK_OK)
        return SK_ERR_USAGE;
    char *text = NULL;
    sk__err rerr;
    sk_status st = sk__read_file(path, &text, NULL, &rerr);
    if (st != SK_OK && st != SK_ERR_NOT_FOUND)
        return sk__fail(err, SK_ERR_CONFIG, "%s", rerr.msg);
    st = sk__config_parse(path, text, out, err);
    free(text);
    return st;
}

void sk__config_free(sk__config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < SK__ARRAY_LEN(KEYS); i++) {
        const key_def *k = &KEYS[i];
        if (k->type == T_STRING)
            free(*(char **)field(cfg, k));
        else if (k->type == T_OBJECT || k->type == T_STRLIST)
            json_decref(*(json_t **)field(cfg, k));
    }
    for (size_t i = 0; cfg->warnings && cfg->warnings[i]; i++)
        free(cfg->warnings[i]);
    free(cfg->warnings);
    free(cfg->sources);
    free(cfg->path);
    free(cfg);
}

json_t *sk__config_value_json(const sk__config *cfg, size_t i, sk__config_source *src)
{
    const key_def *k = &KEYS[i];
    if (src)
        *src = cfg->sources[i];
    switch (k->type) {
    case T_STRING:
        return json_string(*(char *const *)cfield(cfg, k));
    case T_INT:
        return json_integer(*(const int64_t *)cfield(cfg, k));
    case T_DURABILITY:
        return json_string(DURABILITY_NAMES[*(const sk__durability *)cfield(cfg, k)]);
    case T_OBJECT:
    case T_STRLIST:
        return json_deep_copy(*(json_t *const *)cfield(cfg, k));
    }
    return json_null();
}
