/*
 * Event validation for the receiver: one function, so that it can be
 * replaced by the host's sk__event_validate() and the rules exist once.
 */
#ifndef RCV_VALIDATE_H
#define RCV_VALIDATE_H

#include <jansson.h>
#include <stddef.h>

/*
 * Checks one envelope against CONTRACT.md §1: the required envelope fields and
 * the required payload fields of the eight classic event types (unknown types
 * are accepted, as newer servers know more). Returns 0 when valid; otherwise
 * -1 with a one-line reason naming the field in msg (e.g.
 * "payload.new_status: missing").
 */
int receiver_validate_event(const json_t *ev, char *msg, size_t cap);

#endif
