/* Small helpers shared by the CMocka unit tests. */
#ifndef SK_TESTUTIL_H
#define SK_TESTUTIL_H

#include <spec-kitty/transport.h>

#include <pthread.h>
#include <stddef.h>

/* CMocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <cmocka.h>

/* Creates a fresh private temporary folder; returns its path (static storage per call slot). */
char *sk_test_mkdtemp(void);
/* Removes a folder tree (rm -rf). */
void sk_test_rmtree(const char *path);
/* Writes a text file. */
void sk_test_write_file(const char *path, const char *text);

/* ---- the completions a plugin reports for its submitted batches ---- */

#define SK_TEST_DONE_TAGS 16

/* What the completions of one test's async batches said, by tag. Read the
 * arrays after a wait that saw the completions; calls changes under mu. */
typedef struct sk_test_done_log {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;                        /* completions so far */
    int rc[SK_TEST_DONE_TAGS];        /* the rc of each tag's completion */
    int times[SK_TEST_DONE_TAGS];     /* completions per tag: must end at exactly one */
    int64_t at_ms[SK_TEST_DONE_TAGS]; /* when each tag's completion came (sk_test_now_ms) */
} sk_test_done_log;

/* The context to pass to submit with sk_test_on_done: which log, which tag. */
typedef struct sk_test_done_tag {
    sk_test_done_log *log;
    int tag; /* 0 .. SK_TEST_DONE_TAGS - 1 */
} sk_test_done_tag;

void sk_test_done_log_init(sk_test_done_log *l);
void sk_test_done_log_destroy(sk_test_done_log *l);
/* An sk_completion_fn: records rc and the time under the tag ctx (an sk_test_done_tag)
 * names. Called on the plugin's thread. */
void sk_test_on_done(void *ctx, int rc, sk_batch_result *result);
/* Waits until n completions came in all or timeout_ms passed; returns their count. */
int sk_test_done_wait(sk_test_done_log *l, int n, int timeout_ms);
/* Waits until tags first .. first + n - 1 each completed, at most timeout_ms, then
 * asserts that each completed exactly once. */
void sk_test_done_wait_each(sk_test_done_log *l, int first, int n, int timeout_ms);

#endif
