/*
 * A fast, allocation-free JSON syntax checker for batch bodies, and a
 * builder of json_t trees from checked text. Jansson's parser costs ~11 µs
 * per event (mostly allocation); this path keeps the receiver well above
 * 200 000 events/s while the validator still sees an ordinary json_t.
 */
#ifndef RCV_JSCAN_H
#define RCV_JSCAN_H

#include <jansson.h>
#include <stddef.h>

#define RCV_SCAN_MAX_DEPTH 256

/* A byte range inside the body. */
typedef struct rcv__span {
    size_t off;
    size_t len;
} rcv__span;

enum { RCV_SCAN_OK = 0, RCV_SCAN_SYNTAX = -1, RCV_SCAN_NO_EVENTS = -2, RCV_SCAN_NOMEM = -3 };

/*
 * Checks that s[0..len) is exactly one JSON object (RFC 8259, UTF-8,
 * nesting at most RCV_SCAN_MAX_DEPTH) and records the span of every element
 * of its "events" array in *spans (malloc'd, *n entries). Returns
 * RCV_SCAN_OK, RCV_SCAN_SYNTAX with a message naming the offset,
 * RCV_SCAN_NO_EVENTS when there is no "events" array, or RCV_SCAN_NOMEM.
 */
int rcv__scan_batch(const char *s, size_t len, rcv__span **spans, size_t *n, char *msg, size_t cap);

/* The length of the valid UTF-8 character at s (at most avail bytes), or 0
 * when s does not start with one (ASCII included: callers test < 0x80 first). */
size_t rcv__utf8_len(const char *s, size_t avail);

/*
 * Builds the json_t for the checked JSON value s[0..len) (new reference).
 * Returns NULL when Jansson would refuse a part of it (an integer out of
 * range, a string escape such as \u0000).
 */
json_t *rcv__scan_build(const char *s, size_t len);

#endif
