/*
 * The transport plugin loader: finds a plugin file, checks that it can be
 * trusted, dlopens it (RTLD_NOW | RTLD_LOCAL), negotiates the ABI and creates
 * an instance with the host's upcall table.
 *
 * A loaded plugin is never dlclose()d: its destroy() joins its threads, but the
 * libraries it pulled in (libcurl, OpenSSL) may have registered exit handlers,
 * and unloading them under those handlers crashes at exit.
 */
#ifndef SK_HOST_PLUGIN_H
#define SK_HOST_PLUGIN_H

#include "common.h"

#include <jansson.h>
#include <spec-kitty/transport.h>

/* What the host lends a plugin instance: values and callbacks behind the upcalls. */
typedef struct sk__plugin_host {
    const char *server_url;
    const char *state_root;
    const char *node_id;
    json_t *options; /* borrowed transport.options object */
    /* Receives plugin log lines (already formatted). Thread-safe. May be NULL. */
    void (*log)(void *ctx, sk_log_level level, const char *plugin, const char *line);
    /* Writes the Authorization header value; see sk_host_api.auth_header. May be NULL. */
    size_t (*auth_header)(void *ctx, char *buf, size_t cap);
    void *ctx;
} sk__plugin_host;

typedef struct sk__plugin sk__plugin;

/*
 * Resolves a configured plugin name to a file: an absolute path is used as is;
 * a bare name NAME is looked for as NAME.so in each folder of plugin_path (a
 * JSON array, may be NULL), then SPEC_KITTY_PLUGIN_PATH (colon-separated), then
 * the install folder. Not found: SK_ERR_PLUGIN listing every place looked at.
 */
sk_status sk__plugin_find(const char *name, const json_t *plugin_path, char *out, size_t cap,
                          sk__err *err);

/*
 * Opens the plugin file for ABI major abi_major: trust checks (the file and
 * every folder above it not writable by group or others unless a root-owned
 * sticky folder, all owned by root or by us), dlopen, entry
 * symbol, descriptor checks. Every refusal is one line naming the file.
 */
sk_status sk__plugin_open(const char *path, int abi_major, sk__plugin **out, sk__err *err);

/* The negotiated descriptor (fields past the plugin's struct_size read as zero). */
const sk_transport_desc *sk__plugin_desc(const sk__plugin *p);
const char *sk__plugin_path(const sk__plugin *p);

/* Creates the plugin instance. host must outlive the instance. */
sk_status sk__plugin_start(sk__plugin *p, const sk__plugin_host *host, sk__err *err);

/* The running instance (for send/submit/cancel/probe), NULL before start. */
void *sk__plugin_self(const sk__plugin *p);

/* A named counter the plugin reported through metric_add. */
int64_t sk__plugin_metric(sk__plugin *p, const char *name);

/* Destroys the instance (joins its threads) and frees the loader state. */
void sk__plugin_close(sk__plugin *p);

/* One entry of a plugin folder scan, for `spec-kitty sync plugins`. */
typedef struct sk__plugin_listing {
    const char *file;
    const sk_transport_desc *desc; /* NULL when broken */
    const char *error;             /* why it is broken, or NULL */
} sk__plugin_listing;
typedef void (*sk__plugin_list_fn)(void *ctx, const sk__plugin_listing *entry);

/* Calls fn for every *.so in the search folders (first occurrence of a name wins). */
void sk__plugin_list(const json_t *plugin_path, int abi_major, sk__plugin_list_fn fn, void *ctx);

#endif
