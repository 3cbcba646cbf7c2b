/* Arena allocation for Jansson; see jalloc.h. */
#include "jalloc.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_SIZE (1024 * 1024)

typedef struct block {
    struct block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} block;

typedef struct arena {
    block *blocks; /* the first is the one being filled */
    int active;
} arena;

static pthread_key_t arena_key; /* only for the destructor at thread exit */
static pthread_once_t arena_once = PTHREAD_ONCE_INIT;
static _Thread_local arena *my; /* fast access on every allocation */

/* Frees a thread's arena when the thread (a connection) ends. */
static void arena_destroy(void *p)
{
    arena *a = p;
    while (a && a->blocks) {
        block *next = a->blocks->next;
        free(a->blocks);
        a->blocks = next;
    }
    free(a);
}

static void make_key(void)
{
    pthread_key_create(&arena_key, arena_destroy);
}

/* This thread's arena, created on first use (NULL when out of memory). */
static arena *my_arena(void)
{
    if (my)
        return my;
    pthread_once(&arena_once, make_key);
    arena *a = calloc(1, sizeof *a);
    if (a && pthread_setspecific(arena_key, a) != 0) {
        free(a);
        a = NULL;
    }
    my = a;
    return a;
}

/* Bump-allocates n bytes (tag included) from a, adding a block when full. */
static unsigned char *arena_take(arena *a, size_t n)
{
    block *b = a->blocks;
    if (!b || b->used + n > b->cap) {
        size_t cap = n > BLOCK_SIZE ? n : BLOCK_SIZE;
        block *nb = malloc(sizeof *nb + cap);
        if (!nb)
            return NULL;
        nb->used = 0;
        nb->cap = cap;
        nb->next = b;
        a->blocks = b = nb;
    }
    unsigned char *p = b->data + b->used;
    b->used += n;
    return p;
}

/* True when p lies in one of this thread's arena blocks. Arena values never
 * leave their thread, so other threads' arenas need no look. */
static int in_my_arena(const void *p)
{
    const unsigned char *q = p;
    for (const block *b = my ? my->blocks : NULL; b; b = b->next) {
        if (q >= b->data && q < b->data + b->cap)
            return 1;
    }
    return 0;
}

/* Outside an arena window this is plain malloc, so free() stays valid on
 * anything Jansson hands out there (json_dumps text, for instance). */
static void *hook_malloc(size_t n)
{
    if (my && my->active) {
        void *p = arena_take(my, ((n ? n : 1) + 15) & ~(size_t)15);
        if (p)
            return p;
    }
    return malloc(n);
}

void rcv__jalloc_free(void *ptr)
{
    if (ptr && !in_my_arena(ptr))
        free(ptr);
    /* Arena memory goes back all at once in rcv__jalloc_reset. */
}

void rcv__jalloc_install(void)
{
    pthread_once(&arena_once, make_key);
    json_set_alloc_funcs(hook_malloc, rcv__jalloc_free);
}

void rcv__jalloc_enter(void)
{
    arena *a = my_arena();
    if (a)
        a->active = 1;
}

void rcv__jalloc_leave(void)
{
    arena *a = my_arena();
    if (a)
        a->active = 0;
}

void rcv__jalloc_reset(void)
{
    arena *a = my_arena();
    if (!a || !a->blocks)
        return;
    /* Keep one block for the next batch; oversized or extra blocks go back. */
    block *keep = a->blocks;
    while (keep->next) {
        block *next = keep->next;
        keep->next = next->next;
        free(next);
    }
    if (keep->cap > BLOCK_SIZE) {
        free(keep);
        a->blocks = NULL;
        return;
    }
    keep->used = 0;
}
