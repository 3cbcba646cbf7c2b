/*
 * nj_creds_check: a .creds file has its user JWT and its NKey seed, found by the
 * marker lines nats tooling writes around each:
 *
 *   -----BEGIN NATS USER JWT-----
 *   eyJ0eXAi...
 *   ------END NATS USER JWT------
 *   (advice lines)
 *   -----BEGIN USER NKEY SEED-----
 *   SUAM...
 *   ------END USER NKEY SEED------
 *
 * libnats takes the JWT from the first such block and the seed from the second,
 * whatever their labels say; so the labels must come in that order.
 */
#define _GNU_SOURCE /* memmem */
#include "nj_creds.h"
#include "nj_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What one line of the file is. A marker line starts and ends with "---". */
typedef enum nj_line {
    NJ_LINE_TEXT,
    NJ_LINE_BEGIN_JWT,
    NJ_LINE_BEGIN_SEED,
    NJ_LINE_BEGIN_OTHER,
    NJ_LINE_END,
} nj_line;

/* One block as found: its BEGIN line, and whether one value line and an END line
 * followed. kind NJ_LINE_TEXT: no such block. */
typedef struct nj_block {
    nj_line kind;
    enum { NJ_BLOCK_EMPTY, NJ_BLOCK_UNCLOSED, NJ_BLOCK_WHOLE } shape;
} nj_block;

static int has(const char *s, size_t n, const char *label)
{
    return memmem(s, n, label, strlen(label)) != NULL;
}

static nj_line classify(const char *s, size_t n)
{
    if (n < 6 || memcmp(s, "---", 3) != 0 || memcmp(s + n - 3, "---", 3) != 0)
        return NJ_LINE_TEXT;
    if (has(s, n, "BEGIN NATS USER JWT"))
        return NJ_LINE_BEGIN_JWT;
    if (has(s, n, "BEGIN USER NKEY SEED"))
        return NJ_LINE_BEGIN_SEED;
    return has(s, n, "BEGIN") ? NJ_LINE_BEGIN_OTHER : NJ_LINE_END;
}

/* The next line from *p (blanks and a '\r' trimmed at both ends) in *line, *len;
 * 0 at the end of the text. */
static int next_line(const char **p, const char *end, const char **line, size_t *len)
{
    if (*p >= end)
        return 0;
    const char *eol = memchr(*p, '\n', (size_t)(end - *p));
    const char *s = *p, *e = eol ? eol : end;
    *p = eol ? eol + 1 : end;
    while (s < e && (*s == ' ' || *s == '\t' || *s == '\r'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        e--;
    *line = s;
    *len = (size_t)(e - s);
    return 1;
}

/* Finds the first two blocks of text. Returns 0 when the text has no visible line. */
static int scan_blocks(const char *text, size_t size, nj_block out[2])
{
    const char *p = text, *line;
    size_t len;
    int nblocks = 0, visible = 0, has_value = 0;
    nj_block *open = NULL; /* the block whose END line is awaited */
    memset(out, 0, 2 * sizeof *out);
    while (next_line(&p, text + size, &line, &len)) {
        if (!len)
            continue;
        visible = 1;
        nj_line kind = classify(line, len);
        if (open && kind == NJ_LINE_TEXT && !has_value) {
            has_value = 1;
            continue;
        }
        if (open) { /* a marker, or a second value line, ends it */
            open->shape = !has_value            ? NJ_BLOCK_EMPTY
                          : kind == NJ_LINE_END ? NJ_BLOCK_WHOLE
                                                : NJ_BLOCK_UNCLOSED;
            open = NULL;
        }
        if (kind == NJ_LINE_TEXT || kind == NJ_LINE_END)
            continue;
        if (nblocks == 2)
            break;
        open = &out[nblocks++];
        open->kind = kind;
        has_value = 0;
    }
    if (open)
        open->shape = has_value ? NJ_BLOCK_UNCLOSED : NJ_BLOCK_EMPTY;
    return visible;
}

/* What is wrong with the blocks found, said after the path; NULL when nothing is. */
static const char *blocks_fault(const nj_block b[2])
{
    if (b[0].kind != NJ_LINE_BEGIN_JWT)
        return "has no user JWT (its first block must be -----BEGIN NATS USER JWT-----)";
    if (b[0].shape == NJ_BLOCK_EMPTY)
        return "has an empty user JWT block";
    if (b[0].shape == NJ_BLOCK_UNCLOSED)
        return "has a user JWT block that is not one line between BEGIN and END lines";
    if (b[1].kind != NJ_LINE_BEGIN_SEED)
        return "has no NKey seed (a -----BEGIN USER NKEY SEED----- block after the JWT)";
    if (b[1].shape == NJ_BLOCK_EMPTY)
        return "has an empty NKey seed block";
    if (b[1].shape == NJ_BLOCK_UNCLOSED)
        return "has an NKey seed block that is not one line between BEGIN and END lines";
    return NULL;
}

#define NJ_CREDS_TOO_LARGE NJ_TOO_LARGE(NJ_CREDS_MAX_KIB, "a .creds file")

int nj_creds_check(const char *path, const char *what, char *err, size_t cap)
{
    int fd = nj_file_open(path, what, NJ_FILE_SECRET, err, cap);
    if (fd < 0)
        return -1;
    int failed = 0; /* errno of a failed read */
    const char *fault = NULL;
    size_t len = 0;
    char *text = malloc(NJ_CREDS_MAX_BYTES + 1); /* a byte over the bound: a longer file shows */
    if (!text)
        fault = "cannot be read: out of memory";
    else if (nj_file_read(fd, text, NJ_CREDS_MAX_BYTES + 1, &len) != 0)
        failed = errno;
    else if (len > NJ_CREDS_MAX_BYTES)
        fault = NJ_CREDS_TOO_LARGE;
    close(fd);
    if (text && !fault && !failed) {
        nj_block blocks[2];
        fault = scan_blocks(text, len, blocks) ? blocks_fault(blocks) : "is empty";
    }
    if (text) {
        explicit_bzero(text, len);
        free(text);
    }
    if (failed)
        snprintf(err, cap, "%s %s: %s", what, path, strerror(failed));
    else if (fault)
        snprintf(err, cap, "%s %s %s", what, path, fault);
    return failed || fault ? -1 : 0;
}
