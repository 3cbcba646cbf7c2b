/*
 * A complete spec-kitty transport in a few dozen lines: it writes every event
 * of a batch as one line to a file (options.path, default standard error) and
 * reports each one delivered. Copy this file to start your own transport:
 * keep the entry point, fill in send(), and describe your options.
 */
#include <spec-kitty/transport.h>

#include <stdio.h>
#include <stdlib.h>

typedef struct printer {
    FILE *out;
    int owned;
} printer;

static int create(const sk_host_api *host, void **self, char *err, size_t err_cap)
{
    printer *p = calloc(1, sizeof *p);
    const char *path = host->option_string(host->host_ctx, "path", NULL);
    if (!p) {
        snprintf(err, err_cap, "out of memory");
        return 1;
    }
    p->out = path ? fopen(path, "a") : stderr;
    p->owned = path != NULL;
    if (!p->out) {
        snprintf(err, err_cap, "cannot open %s", path);
        free(p);
        return 1;
    }
    *self = p;
    return 0;
}

static void destroy(void *self)
{
    printer *p = self;
    if (p->owned)
        fclose(p->out);
    free(p);
}

/* Synchronous: every event is written, then reported; a write error leaves all transient. */
static int send_batch(void *self, const sk_batch *batch, sk_batch_result *result)
{
    printer *p = self;
    for (uint32_t i = 0; i < batch->count; i++)
        fprintf(p->out, "%s\n", batch->events[i].json);
    if (fflush(p->out) != 0) {
        snprintf(result->detail, sizeof result->detail, "write failed");
        return SK_TRANSPORT_FAILED;
    }
    for (uint32_t i = 0; i < batch->count; i++)
        result->events[i].outcome = SK_OUTCOME_DELIVERED;
    return SK_TRANSPORT_OK;
}

static void cancel(void *self)
{
    (void)self; /* send never blocks for long: nothing to interrupt */
}

static const sk_option_def OPTIONS[] = {
    {"path", "string", "(standard error)", "file the events are appended to, one per line"},
    {NULL, NULL, NULL, NULL},
};

static const sk_transport_desc DESC = {
    .struct_size = sizeof(sk_transport_desc),
    .abi_major = SK_TRANSPORT_ABI_MAJOR,
    .abi_minor = SK_TRANSPORT_ABI_MINOR,
    .name = "print",
    .version = "1.0.0",
    .description = "writes each event as one JSON line (SDK template)",
    .capabilities = SK_CAP_SYNC,
    .create = create,
    .destroy = destroy,
    .send = send_batch,
    .cancel = cancel,
    .options = OPTIONS,
};

SK_TRANSPORT_DEFINE_ENTRY_V1(DESC)
