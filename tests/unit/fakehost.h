/*
 * A real sk_host_api for tests that load a transport plugin directly: options
 * come from a JSON text, log lines are kept for assertions, the auth header is
 * whatever the test sets. Not thread-hostile: every upcall takes a mutex.
 */
#ifndef SK_FAKEHOST_H
#define SK_FAKEHOST_H

#include <spec-kitty/transport.h>

typedef struct sk_fakehost sk_fakehost;

/* options_json: the plugin's transport.options ("{}" if NULL). values: NULL-
 * terminated key, value pairs for host_value ("server_url", "state_root", ...). */
sk_fakehost *sk_fakehost_new(const char *options_json, const char *const *values);
void sk_fakehost_free(sk_fakehost *fh);
/* The upcall table to hand to create(). Valid until free. */
const sk_host_api *sk_fakehost_api(sk_fakehost *fh);
/* Sets the Authorization header value the plugin will get ("" = none). */
void sk_fakehost_set_auth(sk_fakehost *fh, const char *header);
/* Non-zero when some logged line contains needle. */
int sk_fakehost_logged(sk_fakehost *fh, const char *needle);
/* The sum of a metric's deltas so far. */
long long sk_fakehost_metric(sk_fakehost *fh, const char *name);

/* Loads <SK_BUILD_DIR>/lib/spec-kitty/transports/<name>.so (RTLD_NOW|RTLD_LOCAL) and
 * returns its ABI-1 descriptor; *handle gets the dlopen handle. Fails the test if absent. */
const sk_transport_desc *sk_fakehost_load_plugin(const char *name, void **handle);

/* The monotonic clock the fake host's now_ms reads, in milliseconds. */
int64_t sk_test_now_ms(void);

/* A batch as a host hands it to a plugin, with its result slots. */
typedef struct sk_tbatch {
    uint32_t n;
    char (*ids)[27];
    char **json;
    sk_event *events;
    sk_event_result *res;
    sk_batch batch;
    sk_batch_result result;
} sk_tbatch;

/* n events with distinct ULID-shaped ids and small envelopes; deadline in_ms from now. */
sk_tbatch *sk_tbatch_new(uint32_t n, int64_t in_ms);
void sk_tbatch_free(sk_tbatch *t);

#endif
