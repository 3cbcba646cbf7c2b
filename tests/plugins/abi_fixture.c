/*
 * One source, several broken or old plugins (chosen with FIXTURE_*), for the
 * loader's refusal tests. Each is a minimal print-nothing transport.
 */
#include <spec-kitty/transport.h>

#include <stdlib.h>

static int create(const sk_host_api *host, void **self, char *err, size_t cap)
{
    (void)host;
    (void)err;
    (void)cap;
    *self = malloc(1);
    return *self ? 0 : 1;
}

static void destroy(void *self)
{
    free(self);
}

#if !defined(FIXTURE_NO_SEND)
static int send_batch(void *self, const sk_batch *b, sk_batch_result *r)
{
    (void)self;
    for (uint32_t i = 0; i < b->count; i++)
        r->events[i].outcome = SK_OUTCOME_DELIVERED;
    return SK_TRANSPORT_OK;
}
#endif

static void cancel(void *self)
{
    (void)self;
}

#if defined(FIXTURE_OLD_MINOR)
/* Built as ABI 1.0: the descriptor ends before the 1.1 `options` field. */
#define DESC_SIZE SK_TRANSPORT_DESC_SIZE_1_0
#define DESC_MINOR 0
#elif defined(FIXTURE_SMALL)
#define DESC_SIZE 16
#define DESC_MINOR 0
#else
#define DESC_SIZE sizeof(sk_transport_desc)
#define DESC_MINOR SK_TRANSPORT_ABI_MINOR
#endif
#if defined(FIXTURE_WRONG_MAJOR)
#define DESC_MAJOR 2
#else
#define DESC_MAJOR SK_TRANSPORT_ABI_MAJOR
#endif
#if defined(FIXTURE_NEWER_MINOR)
#undef DESC_MINOR
#define DESC_MINOR 9
#endif

static const sk_transport_desc DESC = {
    .struct_size = DESC_SIZE,
    .abi_major = DESC_MAJOR,
    .abi_minor = DESC_MINOR,
    .name = FIXTURE_NAME,
    .version = "0.0.1",
    .description = "ABI fixture",
    .capabilities = SK_CAP_SYNC,
    .create = create,
    .destroy = destroy,
#if !defined(FIXTURE_NO_SEND)
    .send = send_batch,
#endif
    .cancel = cancel,
};

#if defined(FIXTURE_NO_SYMBOL)
SK_TRANSPORT_EXPORT const sk_transport_desc *spec_kitty_transport_v0(uint16_t host_abi_minor)
#else
SK_TRANSPORT_EXPORT const sk_transport_desc *SK_TRANSPORT_ENTRY_V1(uint16_t host_abi_minor)
#endif
{
    (void)host_abi_minor;
    return &DESC;
}
