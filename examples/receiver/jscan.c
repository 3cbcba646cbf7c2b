/* JSON scanning and tree building for batch bodies; see jscan.h. */
#include "jscan.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct scanner {
    const char *s;
    size_t len, pos;
    const char *err; /* first error, with its offset in pos */
} scanner;

static int fail(scanner *c, const char *why)
{
    if (!c->err)
        c->err = why;
    return -1;
}

static inline void skip_ws(scanner *c)
{
    if (c->pos < c->len && (unsigned char)c->s[c->pos] > ' ')
        return; /* the common case in compact JSON */
    while (c->pos < c->len) {
        char ch = c->s[c->pos];
        if (ch != ' ' && ch != '\n' && ch != '\r' && ch != '\t')
            return;
        c->pos++;
    }
}

/* Length of the well-formed UTF-8 sequence at p (lead byte >= 0x80), 0 if bad. */
static size_t utf8_seq(const unsigned char *p, size_t avail)
{
    size_t n;
    unsigned cp;
    if (p[0] >= 0xC2 && p[0] <= 0xDF) {
        n = 2;
        cp = p[0] & 0x1F;
    } else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
        n = 3;
        cp = p[0] & 0x0F;
    } else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
        n = 4;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    /* Overlong forms, UTF-16 surrogates and values past U+10FFFF are invalid. */
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

size_t rcv__utf8_len(const char *s, size_t avail)
{
    return avail ? utf8_seq((const unsigned char *)s, avail) : 0;
}

static int is_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* Checks one escape after a backslash at i; returns its length past i, 0 if bad. */
static size_t escape_len(const char *s, size_t len, size_t i)
{
    if (i + 1 >= len)
        return 0;
    char ch = s[i + 1];
    if (ch == 'u')
        return i + 5 < len && is_hex(s[i + 2]) && is_hex(s[i + 3]) && is_hex(s[i + 4]) &&
                       is_hex(s[i + 5])
                   ? 6
                   : 0;
    return strchr("\"\\/bfnrt", ch) && ch ? 2 : 0;
}

/* plain_ascii[b]: byte b needs no attention inside a string (printable
 * ASCII other than '"' and '\\'). Filled once by init_tables. */
static unsigned char plain_ascii[256];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void init_tables(void)
{
    for (int b = 0x20; b < 0x80; b++)
        plain_ascii[b] = b != '"' && b != '\\';
}

/* True when none of the 8 bytes at p is '"', '\\', a control character or
 * non-ASCII (the usual "has a zero byte" bit trick, per condition). */
static int plain8(const unsigned char *p)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t v;
    memcpy(&v, p, sizeof v);
    uint64_t q = v ^ (ones * '"'), b = v ^ (ones * '\\');
    uint64_t special = ((q - ones) & ~q) | ((b - ones) & ~b) | ((v - ones * 0x20) & ~v) | v;
    return (special & highs) == 0;
}

/* Scans the string at pos (a '"'); *escaped tells whether it holds escapes. */
static int scan_string(scanner *c, int *escaped)
{
    const unsigned char *s = (const unsigned char *)c->s;
    size_t i = c->pos + 1;
    *escaped = 0;
    while (i < c->len) {
        /* Fast path over plain ASCII, the bulk of any event: 8 bytes at a
         * time while none needs attention, then byte by byte. */
        while (i + 8 <= c->len && plain8(s + i))
            i += 8;
        while (i < c->len && plain_ascii[s[i]])
            i++;
        if (i >= c->len)
            break;
        unsigned char ch = s[i];
        if (ch == '"') {
            c->pos = i + 1;
            return 0;
        }
        size_t n = 1;
        if (ch == '\\') {
            *escaped = 1;
            n = escape_len(c->s, c->len, i);
        } else if (ch < 0x20) {
            n = 0;
        } else if (ch >= 0x80) {
            n = utf8_seq(s + i, c->len - i);
        }
        if (n == 0) {
            c->pos = i;
            return fail(c, "invalid character or escape in string");
        }
        i += n;
    }
    c->pos = i;
    return fail(c, "unterminated string");
}

/* Skips a run of digits; returns how many. */
static size_t digits(scanner *c)
{
    size_t start = c->pos;
    while (c->pos < c->len && c->s[c->pos] >= '0' && c->s[c->pos] <= '9')
        c->pos++;
    return c->pos - start;
}

/* Scans a number per the JSON grammar. */
static int scan_number(scanner *c)
{
    if (c->pos < c->len && c->s[c->pos] == '-')
        c->pos++;
    size_t start = c->pos;
    size_t n = digits(c);
    if (n == 0 || (n > 1 && c->s[start] == '0'))
        return fail(c, "invalid number");
    if (c->pos < c->len && c->s[c->pos] == '.') {
        c->pos++;
        if (digits(c) == 0)
            return fail(c, "invalid number");
    }
    if (c->pos < c->len && (c->s[c->pos] == 'e' || c->s[c->pos] == 'E')) {
        c->pos++;
        if (c->pos < c->len && (c->s[c->pos] == '+' || c->s[c->pos] == '-'))
            c->pos++;
        if (digits(c) == 0)
            return fail(c, "invalid number");
    }
    return 0;
}

/* Scans a string, number or literal at pos. */
static int scan_scalar(scanner *c)
{
    static const char *const literals[] = {"true", "false", "null"};
    char ch = c->s[c->pos];
    int escaped;
    if (ch == '"')
        return scan_string(c, &escaped);
    if (ch == '-' || (ch >= '0' && ch <= '9'))
        return scan_number(c);
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(literals[i]);
        if (c->len - c->pos >= n && memcmp(c->s + c->pos, literals[i], n) == 0) {
            c->pos += n;
            return 0;
        }
    }
    return fail(c, "unexpected character");
}

/* Scans `"key" :` at pos (after whitespace); the key span lands in *key. */
static int member_key(scanner *c, rcv__span *key, int *escaped)
{
    skip_ws(c);
    if (c->pos >= c->len || c->s[c->pos] != '"')
        return fail(c, "expected a member name");
    size_t start = c->pos;
    if (scan_string(c, escaped) != 0)
        return -1;
    key->off = start + 1;
    key->len = c->pos - start - 2;
    skip_ws(c);
    if (c->pos >= c->len || c->s[c->pos] != ':')
        return fail(c, "expected ':'");
    c->pos++;
    return 0;
}

/* After a value inside containers: handles ',' and closers. 1 = done, 0 = next value. */
static int after_value(scanner *c, char *stack, int *depth)
{
    rcv__span key;
    int escaped;
    while (*depth > 0) {
        skip_ws(c);
        if (c->pos >= c->len)
            return fail(c, "unexpected end of input");
        char ch = c->s[c->pos++];
        char open = stack[*depth - 1];
        if (ch == ',')
            return open == '{' ? member_key(c, &key, &escaped) : 0;
        if (ch != (open == '{' ? '}' : ']')) {
            c->pos--;
            return fail(c, "expected ',' or a closing bracket");
        }
        (*depth)--;
    }
    return 1;
}

/* Skips one complete value at pos, iteratively (deep nesting cannot overflow the stack). */
static int skip_value(scanner *c)
{
    char stack[RCV_SCAN_MAX_DEPTH];
    int depth = 0;
    for (;;) {
        skip_ws(c);
        if (c->pos >= c->len)
            return fail(c, "unexpected end of input");
        char ch = c->s[c->pos];
        if (ch == '{' || ch == '[') {
            if (depth == RCV_SCAN_MAX_DEPTH)
                return fail(c, "nesting too deep");
            stack[depth++] = ch;
            c->pos++;
            skip_ws(c);
            rcv__span key;
            int escaped;
            if (c->pos < c->len && c->s[c->pos] == (ch == '{' ? '}' : ']')) {
                c->pos++;
                depth--;
            } else if (ch == '{') {
                if (member_key(c, &key, &escaped) != 0)
                    return -1;
                continue;
            } else {
                continue;
            }
        } else if (scan_scalar(c) != 0) {
            return -1;
        }
        int rc = after_value(c, stack, &depth);
        if (rc < 0)
            return -1;
        if (rc == 1)
            return 0;
    }
}

/* Appends a span to the growable list. */
static int push_span(rcv__span **spans, size_t *n, size_t *cap, size_t off, size_t len)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 256;
        rcv__span *ns = realloc(*spans, ncap * sizeof *ns);
        if (!ns)
            return -1;
        *spans = ns;
        *cap = ncap;
    }
    (*spans)[(*n)++] = (rcv__span){off, len};
    return 0;
}

/* Scans the "events" array at pos, recording its elements. */
static int scan_events(scanner *c, rcv__span **spans, size_t *n, size_t *cap)
{
    skip_ws(c);
    if (c->pos >= c->len || c->s[c->pos] != '[')
        return skip_value(c) == 0 ? RCV_SCAN_NO_EVENTS : RCV_SCAN_SYNTAX;
    c->pos++;
    *n = 0; /* a repeated "events" member replaces the earlier one, as in Jansson */
    skip_ws(c);
    if (c->pos < c->len && c->s[c->pos] == ']') {
        c->pos++;
        return RCV_SCAN_OK;
    }
    for (;;) {
        skip_ws(c);
        size_t start = c->pos;
        if (skip_value(c) != 0)
            return RCV_SCAN_SYNTAX;
        if (push_span(spans, n, cap, start, c->pos - start) != 0)
            return RCV_SCAN_NOMEM;
        skip_ws(c);
        char ch = c->pos < c->len ? c->s[c->pos++] : '\0';
        if (ch == ']')
            return RCV_SCAN_OK;
        if (ch != ',') {
            fail(c, "expected ',' or ']' in \"events\"");
            return RCV_SCAN_SYNTAX;
        }
    }
}

/* Scans the members of the top-level object (after its '{'). */
static int scan_members(scanner *c, rcv__span **spans, size_t *n, int *found)
{
    size_t cap = 0;
    skip_ws(c);
    if (c->pos < c->len && c->s[c->pos] == '}') {
        c->pos++;
        return RCV_SCAN_OK;
    }
    for (;;) {
        rcv__span key;
        int escaped, rc = RCV_SCAN_OK;
        if (member_key(c, &key, &escaped) != 0)
            return RCV_SCAN_SYNTAX;
        if (!escaped && key.len == 6 && memcmp(c->s + key.off, "events", 6) == 0) {
            rc = scan_events(c, spans, n, &cap);
            *found = rc == RCV_SCAN_OK;
            rc = rc == RCV_SCAN_NO_EVENTS ? RCV_SCAN_OK : rc;
        } else if (skip_value(c) != 0) {
            rc = RCV_SCAN_SYNTAX;
        }
        if (rc != RCV_SCAN_OK)
            return rc;
        skip_ws(c);
        char ch = c->pos < c->len ? c->s[c->pos++] : '\0';
        if (ch == '}')
            return RCV_SCAN_OK;
        if (ch != ',') {
            fail(c, "expected ',' or '}'");
            return RCV_SCAN_SYNTAX;
        }
    }
}

int rcv__scan_batch(const char *s, size_t len, rcv__span **spans, size_t *n, char *msg, size_t cap)
{
    /* The string scan reads the table too: concurrent batches (HTTP/2 streams
     * through nghttpx) raced its first fill with a read. */
    pthread_once(&tables_once, init_tables);
    scanner c = {.s = s, .len = len};
    int found = 0, rc;
    *spans = NULL;
    *n = 0;
    skip_ws(&c);
    if (c.pos >= c.len || s[c.pos] != '{') {
        /* Not an object: still tell a syntax error from a wrong shape. */
        rc = skip_value(&c) == 0 ? RCV_SCAN_NO_EVENTS : RCV_SCAN_SYNTAX;
    } else {
        c.pos++;
        rc = scan_members(&c, spans, n, &found);
    }
    if (rc == RCV_SCAN_OK) {
        skip_ws(&c);
        if (c.pos != c.len) {
            fail(&c, "trailing characters after the JSON value");
            rc = RCV_SCAN_SYNTAX;
        } else if (!found) {
            rc = RCV_SCAN_NO_EVENTS;
        }
    }
    if (rc == RCV_SCAN_SYNTAX)
        snprintf(msg, cap, "%s at byte %zu", c.err ? c.err : "syntax error", c.pos);
    if (rc != RCV_SCAN_OK) {
        free(*spans);
        *spans = NULL;
        *n = 0;
    }
    return rc;
}

/* ---- building json_t from checked text ---- */

static json_t *build_value(scanner *c, int depth);

/* Lets Jansson decode the (checked) value s[start..pos): the rare, slow path. */
static json_t *load_slice(scanner *c, size_t start)
{
    return json_loadb(c->s + start, c->pos - start, JSON_DECODE_ANY, NULL);
}

/* Builds an object; only the top two levels are built here, deeper ones by Jansson. */
static json_t *build_object(scanner *c, int depth)
{
    size_t start = c->pos;
    if (depth >= 2) {
        skip_value(c);
        return load_slice(c, start);
    }
    json_t *obj = json_object();
    c->pos++;
    skip_ws(c);
    if (c->s[c->pos] == '}') {
        c->pos++;
        return obj;
    }
    for (;;) {
        rcv__span key;
        int escaped;
        member_key(c, &key, &escaped);
        json_t *v = escaped ? NULL : build_value(c, depth + 1);
        if (!v || json_object_setn_new_nocheck(obj, c->s + key.off, key.len, v) != 0) {
            /* Escaped names (rare): let Jansson do the whole object. */
            json_decref(obj);
            c->pos = start;
            skip_value(c);
            return load_slice(c, start);
        }
        skip_ws(c);
        if (c->s[c->pos++] == '}')
            return obj;
    }
}

/* Builds a number the way Jansson would (integer unless it has . e E). */
static json_t *build_number(scanner *c)
{
    size_t start = c->pos;
    scan_number(c);
    char buf[64];
    size_t n = c->pos - start;
    if (n >= sizeof buf || memchr(c->s + start, '.', n) || memchr(c->s + start, 'e', n) ||
        memchr(c->s + start, 'E', n))
        return load_slice(c, start);
    memcpy(buf, c->s + start, n);
    buf[n] = '\0';
    errno = 0;
    long long v = strtoll(buf, NULL, 10);
    return errno ? NULL : json_integer(v);
}

static json_t *build_value(scanner *c, int depth)
{
    skip_ws(c);
    size_t start = c->pos;
    char ch = c->s[c->pos];
    int escaped;
    switch (ch) {
    case '{':
        return build_object(c, depth);
    case '[':
        skip_value(c);
        return load_slice(c, start);
    case '"':
        scan_string(c, &escaped);
        return escaped ? load_slice(c, start)
                       : json_stringn_nocheck(c->s + start + 1, c->pos - start - 2);
    case 't':
        c->pos += 4;
        return json_true();
    case 'f':
        c->pos += 5;
        return json_false();
    case 'n':
        c->pos += 4;
        return json_null();
    default:
        return build_number(c);
    }
}

json_t *rcv__scan_build(const char *s, size_t len)
{
    pthread_once(&tables_once, init_tables);
    scanner c = {.s = s, .len = len};
    return build_value(&c, 0);
}
