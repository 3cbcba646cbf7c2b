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

/* Creates the plugin instance. host must outlive the instance. */
sk_status sk__plugin_start(sk__plugin *p, const sk__plugin_host *host, sk__err *err);

/*
 * The verbs. Nothing but this module calls into a plugin's descriptor: the
 * threading contract of transport.h is kept here, in one place.
 */

/* What a plugin says of itself (its negotiated descriptor), for listings and checks. */
void sk__plugin_describe(const sk__plugin *p, sk_plugin_info *out);

/* The plugin's short name ("http-batch") and its sk_transport_capability bits. */
const char *sk__plugin_name(const sk__plugin *p);
uint32_t sk__plugin_caps(const sk__plugin *p);

/*
 * Sends one batch and waits for the answer: send() for a plugin with
 * SK_CAP_SYNC, else submit() and its completion. Returns an sk_transport_rc;
 * r->events[i] hold the outcomes. One caller at a time (never concurrently
 * with itself or with sk__plugin_submit).
 */
int sk__plugin_send(sk__plugin *p, const sk_batch *b, sk_batch_result *r);

/*
 * The hints of an answer that the host acts on. Bits it does not know (a
 * newer or a buggy plugin) are ignored, with a warning on the plugin's log the
 * first time.
 */
uint32_t sk__plugin_hints(sk__plugin *p, const sk_batch_result *r);

/*
 * The async path (SK_CAP_ASYNC): how many batches the plugin takes in flight
 * through sk__plugin_submit, 0 when it has no async path.
 */
uint32_t sk__plugin_async_slots(const sk__plugin *p);

/*
 * Hands one batch to an async plugin and returns at once. SK_TRANSPORT_OK:
 * done(ctx, rc, r) follows exactly once, from any thread, and b and r must
 * stay valid until then. SK_TRANSPORT_BUSY (all slots taken) or FAILED: done
 * is not called. SK_TRANSPORT_UNSUPPORTED without an async path.
 */
int sk__plugin_submit(sk__plugin *p, const sk_batch *b, sk_batch_result *r, sk_completion_fn done,
                      void *ctx);

/* Aborts what is in flight (final for the instance). Any thread, any time after start. */
void sk__plugin_cancel(sk__plugin *p);

/* sk__plugin_probe's answer when the plugin has no probe (SK_CAP_PROBE). */
#define SK__PROBE_NONE (-1)

/*
 * Asks the plugin whether its server answers, by deadline_ms (host monotonic
 * clock): an sk_probe_state with a one-line reason, or SK__PROBE_NONE (the
 * reason then says the transport cannot probe).
 */
int sk__plugin_probe(sk__plugin *p, int64_t deadline_ms, char *reason, size_t cap);

/* One value the plugin reported: a counter (metric_add, a running total since this
   load) or a level (metric_set). */
typedef struct sk__plugin_metric {
    const char *name;
    int64_t value;
    int level;
    uint64_t instance; /* serial of the load in this process: a new one starts from 0 */
} sk__plugin_metric;
typedef void (*sk__plugin_metric_fn)(void *ctx, const sk__plugin_metric *m);

/* Calls fn for each value the plugin reported (name order of first use). */
void sk__plugin_each_metric(sk__plugin *p, sk__plugin_metric_fn fn, void *ctx);

/* Destroys the instance (joins its threads) and frees the loader state. */
void sk__plugin_close(sk__plugin *p);

typedef void (*sk__plugin_list_fn)(void *ctx, const sk_plugin_info *entry);

/* Calls fn for every *.so in the search folders (first occurrence of a name wins). */
void sk__plugin_list(const json_t *plugin_path, int abi_major, sk__plugin_list_fn fn, void *ctx);

#endif
