/*
 * Jansson allocation hooks with a per-thread bump arena. Parsing a batch
 * builds ~20 small json_t per event; from malloc that was a third of the
 * receiver's CPU. Between rcv__jalloc_enter() and rcv__jalloc_leave() the
 * calling thread's Jansson allocations come from its arena; freeing them is
 * a no-op and rcv__jalloc_reset() recycles the whole arena at once.
 *
 * Outside that window the hooks are plain malloc/free, so free() on what
 * Jansson returns (json_dumps) stays valid. Inside it, Jansson memory must
 * not outlive rcv__jalloc_reset() nor be passed to free().
 */
#ifndef RCV_JALLOC_H
#define RCV_JALLOC_H

#include <jansson.h>
#include <stddef.h>

/* Installs the hooks; call once at start-up before any Jansson use. */
void rcv__jalloc_install(void);

/* Routes this thread's Jansson allocations to its arena / back to the heap. */
void rcv__jalloc_enter(void);
void rcv__jalloc_leave(void);

/* Recycles this thread's arena; every value built inside it must be dead. */
void rcv__jalloc_reset(void);

/* Jansson's free hook: no-op for this thread's arena memory, free() otherwise. */
void rcv__jalloc_free(void *p);

#endif
