/*
 * Envelope validation: the host's rules (host/event.c, sk__event_validate),
 * so the engine and the receiver accept exactly the same events.
 */
#include "validate.h"

#include "event.h"

#include <stdio.h>

int receiver_validate_event(const json_t *ev, char *msg, size_t cap)
{
    sk__err err;
    sk__err_clear(&err);
    if (sk__event_validate(ev, &err) == SK_OK)
        return 0;
    snprintf(msg, cap, "%s", err.msg[0] ? err.msg : "invalid event");
    return -1;
}
