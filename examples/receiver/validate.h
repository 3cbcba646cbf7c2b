/*
 * Event validation for the receiver, behind one function. It delegates to
 * the host's sk__event_validate() so that the rules exist once.
 */
#ifndef RCV_VALIDATE_H
#define RCV_VALIDATE_H

#include <jansson.h>
#include <stddef.h>

/*
 * Checks one envelope against CONTRACT.md §1 (sk__event_validate: the
 * envelope fields and the required payload fields of the eight classic
 * types; unknown types pass). Returns 0 when valid; otherwise -1 with a
 * one-line reason naming the field in msg (e.g. "payload.new_status: missing").
 * It runs inside the batch arena (jalloc.h): it must not keep Jansson values.
 */
int receiver_validate_event(const json_t *ev, char *msg, size_t cap);

#endif
