/*
 * Two queue handles on one file in one process (the service keeps one for its
 * worker and one for status) while other processes come and go: the WAL
 * survives and every handle's writes stay visible to everyone. (The daemon
 * integration test is what caught a handle dropping the other's POSIX locks.)
 */
#include "testutil.h"

#include "queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void enqueue_one(sk__queue *q, const char *id)
{
    sk__err err = {{0}};
    sk__queue_item it = {id, "T", "{}", 1};
    assert_int_equal(sk__queue_enqueue(q, &it, 1, &err), SK_OK);
}

static void second_handle_in_process_keeps_the_first_ones_locks(void **state)
{
    (void)state;
    char *dir = sk_test_mkdtemp();
    char path[1024], wal[1100];
    snprintf(path, sizeof path, "%s/queue.db", dir);
    snprintf(wal, sizeof wal, "%s-wal", path);
    sk__err err = {{0}};
    sk__queue *a = NULL, *b = NULL;
    assert_int_equal(sk__queue_open(path, NULL, &a, &err), SK_OK);
    enqueue_one(a, "01AAAAAAAAAAAAAAAAAAAAAAAA");
    assert_int_equal(sk__queue_open(path, NULL, &b, &err), SK_OK);
    pid_t kid = fork();
    if (kid == 0) { /* another process opens, writes and closes: it must not think it is alone */
        sk__queue *c = NULL;
        if (sk__queue_open(path, NULL, &c, &err) != SK_OK)
            _exit(2);
        sk__queue_item it = {"01BBBBBBBBBBBBBBBBBBBBBBBB", "T", "{}", 2};
        int rc = sk__queue_enqueue(c, &it, 1, &err) == SK_OK ? 0 : 3;
        sk__queue_close(c);
        _exit(rc);
    }
    int ws;
    waitpid(kid, &ws, 0);
    assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    assert_int_equal(access(wal, F_OK), 0); /* the WAL is still there for a and b */
    enqueue_one(a, "01CCCCCCCCCCCCCCCCCCCCCCCC");
    sk__queue_stats st;
    assert_int_equal(sk__queue_stats_get(b, &st, &err), SK_OK);
    assert_int_equal(st.ready, 3);
    kid = fork();
    if (kid == 0) { /* a fresh process sees a's last write */
        sk__queue *c = NULL;
        sk__queue_stats cs;
        if (sk__queue_open(path, NULL, &c, &err) != SK_OK ||
            sk__queue_stats_get(c, &cs, &err) != SK_OK)
            _exit(2);
        _exit(cs.ready == 3 ? 0 : 4);
    }
    waitpid(kid, &ws, 0);
    assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    sk__queue_close(b);
    sk__queue_close(a);
    sk_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(second_handle_in_process_keeps_the_first_ones_locks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
