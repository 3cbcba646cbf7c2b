/*
 * spec-kitty sync — transport plugin ABI, version 1.
 *
 * This header is the one contract between the host (libspec-kitty-sync) and a
 * transport plugin. A plugin is a shared object built against this header only.
 * It exports exactly one symbol, SK_TRANSPORT_ENTRY_V1, and keeps everything
 * else hidden (-fvisibility=hidden).
 *
 * Versioning
 *   - The entry symbol's name carries the ABI major. A host that supports
 *     several majors resolves the symbol of the major the config asks for.
 *   - Both directions (the descriptor a plugin returns, the host upcall table
 *     the host passes) begin with struct_size, abi_major, abi_minor.
 *   - The host refuses a plugin whose major differs from its own or whose
 *     minor is newer than its own. Minors only ever append fields at the end
 *     of a struct, so each side reads min(struct_size, what it knows).
 *
 * Policy in the host, mechanism in the plugin
 *   A plugin moves bytes and reports, per event, what happened. Retries,
 *   backoff, batching, auth refresh and the queue belong to the host.
 *
 * Threading contract (summary; each call repeats its own)
 *   - create/destroy: called once each, from the host's control thread.
 *   - send: called from one host thread at a time; it may block until the
 *     batch's deadline. It is never called concurrently with itself.
 *   - submit (optional, SK_CAP_ASYNC): called from one host thread at a time;
 *     the plugin may run its own threads and call the completion callback from
 *     any of them, exactly once per accepted batch.
 *   - cancel: may be called from ANY thread, at any time between create and
 *     destroy, also while send/submit/probe run on another thread. It must be
 *     async-signal-unsafe-free of locks the other call holds for long: it only
 *     sets a flag / wakes a poll.
 *   - probe (optional): like send.
 *   - Host upcalls are thread-safe and may be called from plugin threads.
 *   - destroy is called only after every send/probe returned and every
 *     accepted async batch completed (or was cancelled and completed). The
 *     host never dlclose()s a plugin whose threads may still run: destroy must
 *     join every thread the plugin started.
 */
#ifndef SPEC_KITTY_TRANSPORT_H
#define SPEC_KITTY_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SK_TRANSPORT_ABI_MAJOR 1
#define SK_TRANSPORT_ABI_MINOR 3

/* The one exported symbol of an ABI-1 plugin. */
#define SK_TRANSPORT_ENTRY_V1 spec_kitty_transport_v1
#define SK_TRANSPORT_ENTRY_V1_NAME "spec_kitty_transport_v1"

#if defined(__GNUC__)
#define SK_TRANSPORT_EXPORT __attribute__((visibility("default")))
#else
#define SK_TRANSPORT_EXPORT
#endif

/* What happened to one event. Values are part of the ABI. */
typedef enum sk_outcome {
    SK_OUTCOME_DELIVERED = 0,          /* stored by the server: leaves the queue */
    SK_OUTCOME_DUPLICATE = 1,          /* server already had it: leaves the queue */
    SK_OUTCOME_PENDING = 2,            /* accepted, still in flight server-side */
    SK_OUTCOME_REJECTED = 3,           /* refused; retried later, counts a retry */
    SK_OUTCOME_REJECTED_PERMANENT = 4, /* refused for good: parked */
    SK_OUTCOME_TRANSIENT = 5           /* not known to be delivered: kept, no penalty */
} sk_outcome;

/* Batch-level hints, a bit set in sk_batch_result.hints. Values are ABI. A host
 * ignores bits it does not know (it logs them once) and applies the outcomes. */
enum sk_batch_hint {
    SK_HINT_NONE = 0,
    SK_HINT_RETRY_AFTER = 1u << 0,       /* wait at least retry_after_ms before the next send */
    SK_HINT_REAUTHENTICATE = 1u << 1,    /* the credentials were refused (HTTP 401) */
    SK_HINT_TOO_LARGE = 1u << 2,         /* the batch is too big: the host halves it */
    SK_HINT_POISONED = 1u << 3,          /* one bad event, unnamed: the host bisects */
    SK_HINT_PROTOCOL_MISMATCH = 1u << 4  /* stop; detail holds the server's guidance */
};

/* Capabilities, a bit set in sk_transport_desc.capabilities. */
enum sk_transport_capability {
    SK_CAP_SYNC = 1u << 0,      /* implements send */
    SK_CAP_ASYNC = 1u << 1,     /* implements submit (several batches in flight) */
    SK_CAP_PROBE = 1u << 2,     /* implements probe */
    SK_CAP_STREAMING = 1u << 3, /* delivers with low latency over a live connection */
    SK_CAP_OFFLINE = 1u << 4    /* writes locally (no network), e.g. file-drop */
};

typedef enum sk_log_level {
    SK_LOG_ERROR = 0,
    SK_LOG_WARN = 1,
    SK_LOG_INFO = 2,
    SK_LOG_DEBUG = 3
} sk_log_level;

/* Return codes of plugin calls. */
typedef enum sk_transport_rc {
    SK_TRANSPORT_OK = 0,        /* results filled in */
    SK_TRANSPORT_FAILED = 1,    /* nothing known about the events: all transient; detail says why */
    SK_TRANSPORT_BUSY = 2,      /* submit: too many batches in flight, try after a completion */
    SK_TRANSPORT_CANCELLED = 3, /* cancel() was called: all transient */
    SK_TRANSPORT_UNSUPPORTED = 4
} sk_transport_rc;

typedef enum sk_probe_state {
    SK_PROBE_CONNECTED = 0,
    SK_PROBE_NOT_AUTHENTICATED = 1,
    SK_PROBE_SERVER_UNAVAILABLE = 2,
    SK_PROBE_UNREACHABLE = 3
} sk_probe_state;

#define SK_EVENT_MESSAGE_MAX 256
#define SK_BATCH_DETAIL_MAX 1024
#define SK_BATCH_CODE_MAX 64

/* One queued event as the plugin sees it: the envelope, already serialised. */
typedef struct sk_event {
    const char *event_id; /* 26-char ULID, NUL-terminated */
    const char *json;     /* the whole envelope as compact JSON, NUL-terminated */
    size_t json_len;      /* strlen(json) */
} sk_event;

typedef struct sk_batch {
    uint32_t struct_size;
    uint32_t count;          /* number of events, >= 1 */
    const sk_event *events;  /* count entries, in delivery order */
    int64_t deadline_ms;     /* on the host's monotonic clock (host->now_ms) */
    uint64_t batch_seq;      /* host-assigned, unique within a process; for logs */
} sk_batch;

/* Per-event answer. The host pre-fills outcome = SK_OUTCOME_TRANSIENT. */
typedef struct sk_event_result {
    int32_t outcome;                     /* an sk_outcome */
    char message[SK_EVENT_MESSAGE_MAX];  /* server's reason for rejected events, or "" */
} sk_event_result;

typedef struct sk_batch_result {
    uint32_t struct_size;
    uint32_t hints;              /* sk_batch_hint bits */
    int64_t retry_after_ms;      /* with SK_HINT_RETRY_AFTER */
    int32_t status_code;         /* transport-level code (HTTP status), 0 when none */
    uint32_t count;              /* == batch->count */
    sk_event_result *events;     /* count entries, host-owned */
    char detail[SK_BATCH_DETAIL_MAX]; /* human text: server guidance, OS error, ... */

    /* --- ABI 1.2 --- (a host of ABI 1.0 or 1.1 allocates less: check with
     * SK_BATCH_RESULT_HAS(result, error_code) before writing) */

    /* The server's machine-readable error, e.g. "client-too-old" with
     * SK_HINT_PROTOCOL_MISMATCH; "" when none. The host pre-fills "". */
    char error_code[SK_BATCH_CODE_MAX];
} sk_batch_result;

/* True when the host's result (of struct_size bytes) has room for field. */
#define SK_BATCH_RESULT_HAS(result, field)                                                     \
    ((result)->struct_size >= offsetof(sk_batch_result, field) + sizeof((result)->field))

/*
 * Upcalls the host offers the plugin. Every function is thread-safe.
 * host_ctx is passed back as the first argument of each.
 */
typedef struct sk_host_api {
    uint32_t struct_size;
    uint16_t abi_major;
    uint16_t abi_minor;
    void *host_ctx;

    /* Log one line (no newline needed). Never pass secrets. */
    void (*log)(void *host_ctx, sk_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 3, 4)))
#endif
        ;
    /* Monotonic clock in milliseconds; deadlines use it. */
    int64_t (*now_ms)(void *host_ctx);
    /* The plugin's own transport.options. Missing keys or wrong types return
     * the default. option_json returns the whole object as compact JSON. */
    const char *(*option_string)(void *host_ctx, const char *key, const char *dflt);
    int64_t (*option_int)(void *host_ctx, const char *key, int64_t dflt);
    int (*option_bool)(void *host_ctx, const char *key, int dflt);
    const char *(*option_json)(void *host_ctx);
    /* Host values: "server_url", "state_root", "node_id", "version". NULL if unknown.
     * The returned string lives as long as the plugin instance. */
    const char *(*host_value)(void *host_ctx, const char *key);
    /* Writes the current Authorization header value (e.g. "Bearer abc") into
     * buf, NUL-terminated; returns its length, 0 when there are no credentials,
     * or the needed size when cap is too small. Never log it. */
    size_t (*auth_header)(void *host_ctx, char *buf, size_t cap);
    /* Adds delta (>= 0) to a named counter (bytes_sent, requests, reconnects, ...):
     * a total that only grows, summed across runs and exported as a counter. */
    void (*metric_add)(void *host_ctx, const char *name, int64_t delta);

    /* --- ABI 1.3 --- (a host of ABI 1.0 to 1.2 passes a shorter table: check
     * with SK_HOST_API_HAS(host, metric_set) before calling) */

    /* Sets a named level to value (streams_in_flight, connections_open): how
     * much there is now, shown by `spec-kitty sync status` while the plugin
     * runs; never summed, never exported as a counter. */
    void (*metric_set)(void *host_ctx, const char *name, int64_t value);
} sk_host_api;

/* True when the host's upcall table (of struct_size bytes) has field. */
#define SK_HOST_API_HAS(api, field)                                                           \
    ((api)->struct_size >= offsetof(sk_host_api, field) + sizeof((api)->field))

/* One option key of a plugin (since ABI 1.1): shown by `spec-kitty sync plugins`
 * and the docs, so that help text and parser live next to each other. */
typedef struct sk_option_def {
    const char *name;  /* key in transport.options, e.g. "gzip_level" */
    const char *type;  /* "string", "integer", "boolean", ... */
    const char *dflt;  /* default, as text */
    const char *help;  /* one line */
} sk_option_def;

/* Completion of an async batch: exactly once per accepted submit, from any thread.
 * After completions the host submits into the room they freed before it settles
 * them: a plugin that frees a batch's room before calling done() stays busy. */
typedef void (*sk_completion_fn)(void *cb_ctx, int rc, sk_batch_result *result);

typedef struct sk_transport_desc {
    uint32_t struct_size;    /* sizeof(sk_transport_desc) the plugin was built with */
    uint16_t abi_major;      /* SK_TRANSPORT_ABI_MAJOR the plugin was built with */
    uint16_t abi_minor;      /* SK_TRANSPORT_ABI_MINOR the plugin was built with */
    const char *name;        /* short name, e.g. "file-drop" */
    const char *version;     /* plugin version, e.g. "1.0.0" */
    const char *description; /* one line */
    uint32_t capabilities;   /* sk_transport_capability bits */
    uint32_t max_in_flight;  /* async: batches accepted at once (>= 1) */

    /* Creates an instance. host stays valid until destroy. On failure returns
     * non-zero and writes one line into err. Control thread. */
    int (*create)(const sk_host_api *host, void **self, char *err, size_t err_cap);
    /* Frees the instance; joins the plugin's threads. Control thread. */
    void (*destroy)(void *self);
    /* Sends one batch synchronously; fills result->events[i].outcome and the
     * hints. Returns an sk_transport_rc. Must return by batch->deadline_ms or
     * promptly after cancel(). One host thread at a time. */
    int (*send)(void *self, const sk_batch *batch, sk_batch_result *result);
    /* Optional (SK_CAP_ASYNC). Accepts a batch for sending and returns at once:
     * SK_TRANSPORT_OK (done() will be called exactly once, result and batch stay
     * valid until then) or SK_TRANSPORT_BUSY / FAILED (done() is not called).
     * One host thread at a time; done() from any thread. */
    int (*submit)(void *self, const sk_batch *batch, sk_batch_result *result,
                  sk_completion_fn done, void *cb_ctx);
    /* Aborts what is in flight: send/probe return soon with
     * SK_TRANSPORT_CANCELLED, async batches complete with it. Any thread. */
    void (*cancel)(void *self);
    /* Optional (SK_CAP_PROBE). Checks connectivity by the deadline; writes a
     * one-line reason. Returns an sk_probe_state. Like send. */
    int (*probe)(void *self, int64_t deadline_ms, char *reason, size_t reason_cap);

    /* --- ABI 1.1 --- (a 1.0 plugin's struct_size ends before this line) */

    /* The plugin's option keys, terminated by an entry whose name is NULL; may be NULL. */
    const sk_option_def *options;
} sk_transport_desc;

/* Size of a descriptor built against ABI 1.0: everything before `options`. */
#define SK_TRANSPORT_DESC_SIZE_1_0 offsetof(sk_transport_desc, options)

/*
 * The entry point. The host passes its own ABI minor so that a plugin may
 * adapt; the plugin returns its static descriptor (never NULL on success).
 */
typedef const sk_transport_desc *(*sk_transport_entry_v1_fn)(uint16_t host_abi_minor);

/*
 * Defines the entry point of a plugin whose descriptor does not depend on the
 * host's minor (the usual case: a host reads only up to the plugin's
 * struct_size): `SK_TRANSPORT_DEFINE_ENTRY_V1(my_desc)` at file scope.
 */
#define SK_TRANSPORT_DEFINE_ENTRY_V1(desc)                                                     \
    SK_TRANSPORT_EXPORT const sk_transport_desc *SK_TRANSPORT_ENTRY_V1(uint16_t host_abi_minor) \
    {                                                                                          \
        (void)host_abi_minor;                                                                  \
        return &(desc);                                                                        \
    }

/* Pin the ABI: changing any of these is a major version bump. */
#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(SK_OUTCOME_DELIVERED == 0 && SK_OUTCOME_DUPLICATE == 1 && SK_OUTCOME_PENDING == 2 &&
                   SK_OUTCOME_REJECTED == 3 && SK_OUTCOME_REJECTED_PERMANENT == 4 &&
                   SK_OUTCOME_TRANSIENT == 5,
               "sk_outcome values are ABI");
_Static_assert(SK_HINT_RETRY_AFTER == 1 && SK_HINT_REAUTHENTICATE == 2 && SK_HINT_TOO_LARGE == 4 &&
                   SK_HINT_POISONED == 8 && SK_HINT_PROTOCOL_MISMATCH == 16,
               "sk_batch_hint values are ABI");
_Static_assert(SK_TRANSPORT_OK == 0 && SK_TRANSPORT_FAILED == 1 && SK_TRANSPORT_BUSY == 2 &&
                   SK_TRANSPORT_CANCELLED == 3 && SK_TRANSPORT_UNSUPPORTED == 4,
               "sk_transport_rc values are ABI");
_Static_assert(SK_PROBE_CONNECTED == 0 && SK_PROBE_UNREACHABLE == 3, "sk_probe_state values are ABI");
_Static_assert(offsetof(sk_transport_desc, struct_size) == 0 &&
                   offsetof(sk_transport_desc, abi_major) == 4 &&
                   offsetof(sk_transport_desc, abi_minor) == 6,
               "descriptor header is ABI");
_Static_assert(offsetof(sk_host_api, struct_size) == 0 && offsetof(sk_host_api, abi_major) == 4 &&
                   offsetof(sk_host_api, abi_minor) == 6,
               "host table header is ABI");
_Static_assert(sizeof(sk_event_result) == 4 + SK_EVENT_MESSAGE_MAX, "sk_event_result layout is ABI");
_Static_assert(offsetof(sk_batch_result, error_code) ==
                   offsetof(sk_batch_result, detail) + SK_BATCH_DETAIL_MAX,
               "ABI 1.2 appends error_code after detail");
_Static_assert(offsetof(sk_host_api, metric_set) ==
                   offsetof(sk_host_api, metric_add) + sizeof(void (*)(void)),
               "ABI 1.3 appends metric_set after metric_add");
#endif

#ifdef __cplusplus
}
#endif
#endif /* SPEC_KITTY_TRANSPORT_H */
