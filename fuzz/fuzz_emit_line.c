/*
 * `spec-kitty sync emit --file`: each NDJSON line → an envelope, validated
 * (sk__event_from_line, the function sk__sync_emit_ndjson calls per line,
 * with the defaults of a handle opened on a scratch state root, as the CLI
 * has them when no option is given). What is accepted must still validate after the trip
 * through text that the queue and the server give it, and the text the queue gets
 * (sk__event_text) must be Jansson's compact dump byte for byte.
 */
#include "engine.h"
#include "event.h"
#include "fuzz_util.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sk__line_defaults defaults;

/* A Lamport value as a long-lived clock has them. */
#define FZ_CLOCK ((json_int_t)1 << 40)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    sk_sync *s;
    sk__err err = {{0}};
    if (sk__sync_open(fz_scratch_dir(), &s, &err) != SK_OK)
        fz_fail(err.msg, __FILE__, __LINE__);
    sk__sync_line_defaults(s, NULL, &defaults); /* the handle stays open: defaults borrow it */
    return 0;
}

static void one_line(const char *line, size_t len)
{
    json_t *env = NULL;
    int needs_clock = 0;
    sk__err err = {{0}};
    if (sk__event_from_line(line, len, &defaults, &env, &needs_clock, &err) != SK_OK) {
        FZ_CHECK(env == NULL && err.msg[0], "a refused line must come with a message");
        return;
    }
    /* emit_line stamps a built envelope with the held clock's next value. */
    if (needs_clock)
        FZ_CHECK(json_object_set_new(env, "lamport_clock", json_integer(FZ_CLOCK)) == 0,
                 "out of memory");
    char *text = json_dumps(env, JSON_COMPACT);
    FZ_CHECK(text != NULL, "an accepted envelope cannot be written out");
    size_t n = strlen(text);
    char *ours = malloc(n + 1);
    FZ_CHECK(ours != NULL, "out of memory");
    FZ_CHECK(sk__event_text(env, ours, n + 1) == n && memcmp(ours, text, n) == 0,
             "sk__event_text differs from Jansson's compact dump");
    free(ours);
    json_t *back = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    FZ_CHECK(back != NULL, "an accepted envelope does not read back");
    sk__err verr = {{0}};
    FZ_CHECK(sk__event_validate(back, &verr) == SK_OK, "an accepted envelope fails validation");
    json_decref(back);
    free(text);
    json_decref(env);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Split as sk__sync_emit_ndjson's line stream does: on '\n' only, so a
     * NUL byte stays inside its line; each line NUL-terminated, blank ones
     * (spaces, tabs, CRs up to the end or a NUL) skipped. */
    char *text = fz_cstr(data, size);
    char *end = text + size;
    for (char *p = text; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)((nl ? nl : end) - p);
        p[len] = '\0';
        if (strspn(p, " \t\r") != len)
            one_line(p, len);
        p += len + 1;
    }
    free(text);
    return 0;
}
