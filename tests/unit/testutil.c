#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "testutil.h"

#include "fakehost.h"    /* sk_test_now_ms */
#include "http_common.h" /* hc_cond_wait_ms */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

char *sk_test_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/sk-test-XXXXXX", base && *base ? base : "/tmp");
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    return strdup(dir);
}

void sk_test_rmtree(const char *path)
{
    if (!path || !*path || strcmp(path, "/") == 0)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        execlp("rm", "rm", "-rf", "--", path, (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
}

void sk_test_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

void sk_test_done_log_init(sk_test_done_log *l)
{
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
}

void sk_test_done_log_destroy(sk_test_done_log *l)
{
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
}

void sk_test_on_done(void *ctx, int rc, sk_batch_result *result)
{
    (void)result;
    sk_test_done_tag *t = ctx;
    if (t->tag < 0 || t->tag >= SK_TEST_DONE_TAGS) { /* not a cmocka assert: not our thread */
        fprintf(stderr, "sk_test_on_done: tag %d out of range\n", t->tag);
        abort();
    }
    sk_test_done_log *l = t->log;
    pthread_mutex_lock(&l->mu);
    l->rc[t->tag] = rc;
    l->at_ms[t->tag] = sk_test_now_ms();
    l->times[t->tag]++;
    l->calls++;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

/* Non-zero once tags first .. first + n - 1 have each completed. Under l->mu. */
static int each_done_locked(const sk_test_done_log *l, int first, int n)
{
    for (int i = first; i < first + n; i++)
        if (l->times[i] < 1)
            return 0;
    return 1;
}

int sk_test_done_wait(sk_test_done_log *l, int n, int timeout_ms)
{
    int64_t until = sk_test_now_ms() + timeout_ms;
    pthread_mutex_lock(&l->mu);
    while (l->calls < n && sk_test_now_ms() < until)
        hc_cond_wait_ms(&l->cv, &l->mu, 20);
    int calls = l->calls;
    pthread_mutex_unlock(&l->mu);
    return calls;
}

void sk_test_done_wait_each(sk_test_done_log *l, int first, int n, int timeout_ms)
{
    assert_true(first >= 0 && first + n <= SK_TEST_DONE_TAGS);
    int64_t until = sk_test_now_ms() + timeout_ms;
    pthread_mutex_lock(&l->mu);
    while (!each_done_locked(l, first, n) && sk_test_now_ms() <= until)
        hc_cond_wait_ms(&l->cv, &l->mu, 20);
    int times[SK_TEST_DONE_TAGS];
    memcpy(times, l->times, sizeof times);
    pthread_mutex_unlock(&l->mu);
    for (int i = first; i < first + n; i++)
        assert_int_equal(times[i], 1);
}
