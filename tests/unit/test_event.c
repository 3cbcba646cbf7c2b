/* Event envelopes: ULIDs, node id, the Lamport clock file, validation, building. */
#include "testutil.h"

#include "event.h"

#include <pthread.h>
#include <stdatomic.h>
#include <pwd.h>
#include <stdio.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* Injected randomness: a fixed byte pattern, counting how often it is asked. */
typedef struct fixed_random {
    uint8_t fill;
    int calls;
} fixed_random;

static sk_status fixed_rnd(void *ctx, void *buf, size_t n)
{
    fixed_random *r = ctx;
    r->calls++;
    memset(buf, r->fill, n);
    return SK_OK;
}

static sk_status failing_rnd(void *ctx, void *buf, size_t n)
{
    (void)ctx;
    (void)buf;
    (void)n;
    return SK_ERR_IO;
}

/* ------------------------------------------------------------ ULID ---- */

static void ulid_new_is_26_crockford_chars(void **state)
{
    (void)state;
    for (int i = 0; i < 1000; i++) {
        char id[27];
        sk__err err;
        assert_int_equal(sk__ulid_new(id, &err), SK_OK);
        assert_int_equal(strlen(id), 26);
        assert_true(strspn(id, crockford) == 26);
        /* 128 bits in 130: the leading character holds only 3 bits. */
        assert_true(id[0] >= '0' && id[0] <= '7');
        assert_true(sk__ulid_valid(id));
    }
}

static void ulid_valid_rejects_other_alphabets_and_lengths(void **state)
{
    (void)state;
    assert_true(sk__ulid_valid("01ARZ3NDEKTSV4RRFFQ69G5FAV"));
    assert_false(sk__ulid_valid(NULL));
    assert_false(sk__ulid_valid(""));
    assert_false(sk__ulid_valid("01ARZ3NDEKTSV4RRFFQ69G5FA"));   /* 25 */
    assert_false(sk__ulid_valid("01ARZ3NDEKTSV4RRFFQ69G5FAVV")); /* 27 */
    assert_false(sk__ulid_valid("01arz3ndektsv4rrffq69g5fav"));  /* lowercase */
    assert_false(sk__ulid_valid("01ARZ3NDEKTSV4RRFFQ69G5FAI"));  /* I */
    assert_false(sk__ulid_valid("01ARZ3NDEKTSV4RRFFQ69G5FAL"));  /* L */
    assert_false(sk__ulid_valid("01ARZ3NDEKTSV4RRFFQ69G5FAO"));  /* O */
    assert_false(sk__ulid_valid("01ARZ3NDEKTSV4RRFFQ69G5FAU"));  /* U */
    assert_false(sk__ulid_valid("01ARZ3NDEKTSV4RRFFQ69G5FA-"));
}

static void ulid_encodes_known_vectors(void **state)
{
    (void)state;
    char id[27];
    sk__ulid_state st = {0};
    fixed_random zeros = {0x00, 0};
    assert_int_equal(sk__ulid_next(&st, 0, fixed_rnd, &zeros, id, NULL), SK_OK);
    assert_string_equal(id, "00000000000000000000000000");

    /* Time part of the ULID spec's example: 1469918176385 ms -> "01ARYZ6S41". */
    sk__ulid_state st2 = {0};
    assert_int_equal(sk__ulid_next(&st2, 1469918176385, fixed_rnd, &zeros, id, NULL), SK_OK);
    assert_memory_equal(id, "01ARYZ6S41", 10);
    assert_string_equal(id + 10, "0000000000000000");

    sk__ulid_state st3 = {0};
    fixed_random ones = {0xff, 0};
    assert_int_equal(sk__ulid_next(&st3, (INT64_C(1) << 48) - 1, fixed_rnd, &ones, id, NULL),
                     SK_OK);
    assert_string_equal(id, "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
}

static void ulid_lexicographic_order_is_time_order(void **state)
{
    (void)state;
    fixed_random hi = {0xff, 0}, lo = {0x00, 0};
    int64_t times[] = {
        1, 2, 31, 32, 1000, 1469918176385, 1700000000000, 1700000000001, (INT64_C(1) << 48) - 2};
    char prev[27] = "";
    for (size_t i = 0; i < SK__ARRAY_LEN(times); i++) {
        /* Largest random part at the earlier time, smallest at the later one:
         * only the time decides the order. */
        char a[27], b[27];
        sk__ulid_state s1 = {0}, s2 = {0};
        assert_int_equal(sk__ulid_next(&s1, times[i], fixed_rnd, &hi, a, NULL), SK_OK);
        assert_int_equal(sk__ulid_next(&s2, times[i] + 1, fixed_rnd, &lo, b, NULL), SK_OK);
        assert_true(strcmp(a, b) < 0);
        if (prev[0])
            assert_true(strcmp(prev, a) < 0);
        memcpy(prev, b, sizeof prev);
    }
}

static void ulid_monotonic_within_one_ms(void **state)
{
    (void)state;
    sk__ulid_state st = {0};
    fixed_random r = {0x10, 0};
    char prev[27], id[27];
    assert_int_equal(sk__ulid_next(&st, 1700000000000, fixed_rnd, &r, prev, NULL), SK_OK);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(sk__ulid_next(&st, 1700000000000, fixed_rnd, &r, id, NULL), SK_OK);
        assert_true(strcmp(prev, id) < 0);
        assert_memory_equal(prev, id, 10); /* same time part */
        memcpy(prev, id, sizeof prev);
    }
    /* Randomness drawn once: the same millisecond counts up instead. */
    assert_int_equal(r.calls, 1);
    /* The 80-bit part went up by exactly 100 (0x10 + 100 has no carry). */
    assert_int_equal(st.last_rand[9], 0x10 + 100);

    /* A later millisecond draws fresh randomness. */
    assert_int_equal(sk__ulid_next(&st, 1700000000001, fixed_rnd, &r, id, NULL), SK_OK);
    assert_int_equal(r.calls, 2);
    assert_true(strcmp(prev, id) < 0);
}

static void ulid_stays_increasing_when_the_clock_steps_back(void **state)
{
    (void)state;
    sk__ulid_state st = {0};
    fixed_random r = {0x42, 0};
    char a[27], b[27];
    assert_int_equal(sk__ulid_next(&st, 1700000005000, fixed_rnd, &r, a, NULL), SK_OK);
    assert_int_equal(sk__ulid_next(&st, 1700000000000, fixed_rnd, &r, b, NULL), SK_OK);
    assert_true(strcmp(a, b) < 0);
    assert_int_equal(st.last_ms, 1700000005000);
}

static void ulid_random_overflow_is_an_error(void **state)
{
    (void)state;
    sk__ulid_state st = {0};
    fixed_random ones = {0xff, 0};
    char id[27] = "untouched";
    sk__err err;
    assert_int_equal(sk__ulid_next(&st, 5000, fixed_rnd, &ones, id, &err), SK_OK);
    char before[27];
    memcpy(before, id, sizeof before);
    assert_int_equal(sk__ulid_next(&st, 5000, fixed_rnd, &ones, id, &err), SK_ERR_BUSY);
    assert_non_null(strstr(err.msg, "exhausted"));
    assert_string_equal(id, before);         /* nothing written */
    assert_int_equal(st.last_rand[0], 0xff); /* state not wrapped */
    /* The next millisecond is fine again. */
    assert_int_equal(sk__ulid_next(&st, 5001, fixed_rnd, &ones, id, &err), SK_OK);
    assert_true(strcmp(before, id) < 0);
}

static void ulid_rejects_time_outside_48_bits_and_random_failure(void **state)
{
    (void)state;
    sk__ulid_state st = {0};
    fixed_random r = {0, 0};
    char id[27];
    sk__err err;
    assert_int_equal(sk__ulid_next(&st, -1, fixed_rnd, &r, id, &err), SK_ERR_USAGE);
    assert_int_equal(sk__ulid_next(&st, INT64_C(1) << 48, fixed_rnd, &r, id, &err), SK_ERR_USAGE);
    assert_non_null(strstr(err.msg, "48 bits"));
    assert_int_equal(sk__ulid_next(&st, 1, failing_rnd, NULL, id, &err), SK_ERR_IO);
    assert_int_equal(st.last_ms, 0);
}

#define UNIQ_PER_THREAD 500000

static void *make_ids(void *arg)
{
    char(*ids)[27] = arg;
    for (int i = 0; i < UNIQ_PER_THREAD; i++) {
        if (sk__ulid_new(ids[i], NULL) != SK_OK)
            ids[i][0] = '\0';
    }
    return NULL;
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, 27);
}

static void ulid_a_million_ids_from_two_threads_are_unique(void **state)
{
    (void)state;
    char(*ids)[27] = malloc(2 * (size_t)UNIQ_PER_THREAD * 27);
    assert_non_null(ids);
    pthread_t t1, t2;
    assert_int_equal(pthread_create(&t1, NULL, make_ids, ids), 0);
    assert_int_equal(pthread_create(&t2, NULL, make_ids, ids + UNIQ_PER_THREAD), 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    /* Each thread sees its own ids strictly increasing (the shared generator). */
    for (int t = 0; t < 2; t++) {
        char(*part)[27] = ids + t * UNIQ_PER_THREAD;
        for (int i = 1; i < UNIQ_PER_THREAD; i++)
            assert_true(memcmp(part[i - 1], part[i], 27) < 0);
    }
    qsort(ids, 2 * (size_t)UNIQ_PER_THREAD, 27, cmp_id);
    size_t dups = 0;
    for (size_t i = 1; i < 2 * (size_t)UNIQ_PER_THREAD; i++)
        dups += memcmp(ids[i - 1], ids[i], 27) == 0;
    assert_int_equal(dups, 0);
    assert_true(sk__ulid_valid(ids[0]));
    free(ids);
}

/* One fork: the child's first id right after fork against the parent's. */
static int fork_ids_differ(void)
{
    char before[27], mine[27], theirs[27] = "";
    int fds[2];
    assert_int_equal(sk__ulid_new(before, NULL), SK_OK);
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char child_id[27] = "";
        sk__ulid_new(child_id, NULL);
        ssize_t w = write(fds[1], child_id, sizeof child_id);
        _exit(w == (ssize_t)sizeof child_id ? 0 : 1);
    }
    assert_int_equal(sk__ulid_new(mine, NULL), SK_OK);
    assert_int_equal(read(fds[0], theirs, sizeof theirs), (ssize_t)sizeof theirs);
    int st;
    waitpid(pid, &st, 0);
    close(fds[0]);
    close(fds[1]);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return strcmp(mine, theirs) != 0;
}

static void ulid_forked_child_does_not_repeat_parent_ids(void **state)
{
    (void)state;
    /* Without the per-process reset, parent and child both count up from the
     * same state: equal ids whenever both run in the pre-fork millisecond.
     * Twenty tries make "never in the same millisecond" practically impossible. */
    for (int i = 0; i < 20; i++)
        assert_true(fork_ids_differ());
}

static atomic_int hammer_stop; /* read by the hammer thread */

static void *hammer_ids(void *arg)
{
    (void)arg;
    char id[27];
    while (!hammer_stop)
        sk__ulid_new(id, NULL);
    return NULL;
}

static void ulid_fork_while_another_thread_generates_does_not_deadlock(void **state)
{
    (void)state;
    hammer_stop = 0;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, hammer_ids, NULL), 0);
    for (int i = 0; i < 50; i++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            alarm(5); /* a child stuck on an inherited lock dies of SIGALRM */
            char id[27];
            _exit(sk__ulid_new(id, NULL) == SK_OK && sk__ulid_valid(id) ? 0 : 1);
        }
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
    hammer_stop = 1;
    pthread_join(t, NULL);
}

/* --------------------------------------------------------- node id ---- */

static void node_id_matches_known_sha256_vector(void **state)
{
    (void)state;
    char out[13];
    /* Expected from: printf 'host:user' | sha256sum
     *   -> 2e1a29e6f4ef54b9cd66471b5a7b3b00c608f865df8b0429f10af512ae023a4e */
    sk__node_id_from("host", "user", out);
    assert_string_equal(out, "2e1a29e6f4ef");
    /* printf 'build-box-7:alice' | sha256sum -> 0c9ec29d5a510b1a... */
    sk__node_id_from("build-box-7", "alice", out);
    assert_string_equal(out, "0c9ec29d5a51");
}

static void node_id_hashes_this_host_and_user(void **state)
{
    (void)state;
    char got[13], want[13], host[256];
    sk__err err;
    assert_int_equal(sk__node_id(got, &err), SK_OK);
    assert_int_equal(strlen(got), 12);
    assert_true(strspn(got, "0123456789abcdef") == 12);
    assert_int_equal(gethostname(host, sizeof host), 0);
    struct passwd *pw = getpwuid(geteuid());
    const char *user = pw ? pw->pw_name : getenv("USER");
    assert_non_null(user);
    sk__node_id_from(host, user, want);
    assert_string_equal(got, want);
}

/* ----------------------------------------------------- Lamport clock ---- */

static char *read_text(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text = NULL;
    if (sk__read_file(path, &text, NULL, NULL) != SK_OK)
        return NULL;
    return text;
}

static void clock_first_value_is_one_and_reservations_are_consecutive(void **state)
{
    (void)state;
    char *root = sk_test_mkdtemp();
    int64_t first = -1;
    sk__err err;
    assert_int_equal(sk__clock_tick(root, "abcdef012345", 1, 0, &first, &err), SK_OK);
    assert_int_equal(first, 1);
    assert_int_equal(sk__clock_tick(root, "abcdef012345", 3, 0, &first, &err), SK_OK);
    assert_int_equal(first, 2); /* reserved 2, 3, 4 */
    assert_int_equal(sk__clock_tick(root, "abcdef012345", 1, 1, &first, &err), SK_OK);
    assert_int_equal(first, 5);
    assert_int_equal(sk__clock_tick(root, "abcdef012345", 0, 0, &first, &err), SK_ERR_USAGE);
    sk_test_rmtree(root);
    free(root);
}

static void clock_file_holds_value_node_and_time_owner_only(void **state)
{
    (void)state;
    char *root = sk_test_mkdtemp();
    int64_t first;
    assert_int_equal(sk__clock_tick(root, "0123456789ab", 7, 0, &first, NULL), SK_OK);
    char *text = read_text(root, "clock.json");
    assert_non_null(text);
    json_t *doc = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(doc);
    assert_int_equal(json_integer_value(json_object_get(doc, "value")), 7);
    assert_string_equal(json_string_value(json_object_get(doc, "node_id")), "0123456789ab");
    const char *at = json_string_value(json_object_get(doc, "updated_at"));
    assert_non_null(at);
    /* 2026-11-25T09:18:44.123Z */
    assert_int_equal(strlen(at), 24);
    assert_true(at[4] == '-' && at[10] == 'T' && at[19] == '.' && at[23] == 'Z');
    json_decref(doc);

    char path[1024];
    struct stat st;
    snprintf(path, sizeof path, "%s/clock.json", root);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    snprintf(path, sizeof path, "%s/clock.lock", root);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    sk_test_rmtree(root);
    free(root);
}

static void clock_continues_from_an_existing_file(void **state)
{
    (void)state;
    char *root = sk_test_mkdtemp();
    char path[1024];
    snprintf(path, sizeof path, "%s/clock.json", root);
    /* As written by spec-kitty's own CLI, with another node id. */
    sk_test_write_file(path, "{\"value\": 41, \"node_id\": \"ffffffffffff\", "
                             "\"updated_at\": \"2026-01-01T00:00:00+00:00\"}\n");
    int64_t first;
    assert_int_equal(sk__clock_tick(root, "0123456789ab", 1, 0, &first, NULL), SK_OK);
    assert_int_equal(first, 42);
    sk_test_rmtree(root);
    free(root);
}

static void clock_corrupt_file_is_an_error_naming_it(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{not json", "[]", "{\"node_id\": \"x\"}", "{\"value\": -3}", "{\"value\": \"12\"}", ""};
    for (size_t i = 0; i < SK__ARRAY_LEN(bad); i++) {
        char *root = sk_test_mkdtemp();
        char path[1024];
        snprintf(path, sizeof path, "%s/clock.json", root);
        sk_test_write_file(path, bad[i]);
        int64_t first = -1;
        sk__err err;
        assert_int_equal(sk__clock_tick(root, "0123456789ab", 1, 0, &first, &err), SK_ERR_CONFIG);
        assert_non_null(strstr(err.msg, path));
        assert_non_null(strstr(err.msg, "corrupt"));
        assert_int_equal(first, -1);
        /* Left as it was: no silent reset to 0. */
        char *text = read_text(root, "clock.json");
        assert_string_equal(text, bad[i]);
        free(text);
        sk_test_rmtree(root);
        free(root);
    }
}

static void clock_missing_root_is_an_io_error(void **state)
{
    (void)state;
    int64_t first;
    sk__err err;
    assert_int_equal(
        sk__clock_tick("/nonexistent/sk-no-such-root", "0123456789ab", 1, 0, &first, &err),
        SK_ERR_IO);
    assert_non_null(strstr(err.msg, "clock.lock"));
}

/* Child body: one tick while the parent holds the clock; writes the value to fd. */
static void tick_once(const char *root, int fd)
{
    int64_t v = 0;
    if (sk__clock_tick(root, "0123456789ab", 1, 0, &v, NULL) != SK_OK)
        _exit(2);
    _exit(write(fd, &v, sizeof v) == (ssize_t)sizeof v ? 0 : 3);
}

/* `emit --file` holds the clock over its whole reading: another process's tick
 * waits for the release and gets the values after those used; a release without
 * a use leaves the file as it was. */
static void clock_held_makes_other_ticks_wait_and_unused_changes_nothing(void **state)
{
    (void)state;
    char *root = sk_test_mkdtemp();
    int64_t first;
    assert_int_equal(sk__clock_tick(root, "0123456789ab", 5, 0, &first, NULL), SK_OK);
    char *before = read_text(root, "clock.json");
    sk__clock c;
    sk__err err;
    assert_int_equal(sk__clock_hold(root, SK__CLOCK_WAIT_MS, &c, &err), SK_OK);
    assert_int_equal(c.value, 5);
    sk__clock_release(&c); /* nothing used */
    char *after = read_text(root, "clock.json");
    assert_string_equal(after, before);
    free(before);
    free(after);

    assert_int_equal(sk__clock_hold(root, SK__CLOCK_WAIT_MS, &c, &err), SK_OK);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        close(c.fd); /* the parent's lock, inherited: the child must not hold it too */
        tick_once(root, fds[1]);
    }
    close(fds[1]);
    struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 300), 0); /* the child waits while the clock is held */
    assert_int_equal(sk__clock_use(&c, 1000, "0123456789ab", 0, &err), SK_OK);
    assert_int_equal(c.value, 1005);
    sk__clock_release(&c);
    int64_t v = 0;
    assert_int_equal(read(fds[0], &v, sizeof v), (ssize_t)sizeof v);
    assert_int_equal(v, 1006);
    close(fds[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    sk_test_rmtree(root);
    free(root);
}

/* A hold that waits past its bound is refused, naming clock.lock, instead of hanging behind
 * a holder that never lets go (an `emit --file` stopped with Ctrl+Z). Each hold is its own
 * open file description, so two in one process exclude each other as two processes do. */
static void clock_held_too_long_is_busy_naming_the_lock(void **state)
{
    (void)state;
    char *root = sk_test_mkdtemp();
    sk__clock held, other;
    sk__err err;
    assert_int_equal(sk__clock_hold(root, SK__CLOCK_WAIT_MS, &held, &err), SK_OK);
    int64_t t0 = sk__mono_ms();
    assert_int_equal(sk__clock_hold(root, 200, &other, &err), SK_ERR_BUSY);
    int64_t waited = sk__mono_ms() - t0;
    assert_in_range(waited, 200, 200 + 2000);
    assert_non_null(strstr(err.msg, "clock.lock"));
    assert_non_null(strstr(err.msg, "nothing queued"));
    assert_int_equal(other.fd, -1);
    sk__clock_release(&held);
    assert_int_equal(sk__clock_hold(root, 200, &other, &err), SK_OK); /* free again */
    sk__clock_release(&other);
    sk_test_rmtree(root);
    free(root);
}

#define TICKERS 4
#define TICKS 500

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Child body: tick TICKS times, one value at a time, write them to fd. */
static void ticker(const char *root, int fd)
{
    int64_t vals[TICKS];
    for (int i = 0; i < TICKS; i++) {
        if (sk__clock_tick(root, "0123456789ab", 1, 0, &vals[i], NULL) != SK_OK)
            _exit(2);
    }
    _exit(write(fd, vals, sizeof vals) == (ssize_t)sizeof vals ? 0 : 3);
}

static void clock_concurrent_processes_never_share_a_value(void **state)
{
    (void)state;
    char *root = sk_test_mkdtemp();
    int fds[TICKERS][2];
    pid_t pids[TICKERS];
    for (int p = 0; p < TICKERS; p++) {
        assert_int_equal(pipe(fds[p]), 0);
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            close(fds[p][0]);
            ticker(root, fds[p][1]);
        }
        close(fds[p][1]);
    }
    static int64_t all[TICKERS * TICKS];
    for (int p = 0; p < TICKERS; p++) {
        size_t want = sizeof(int64_t) * TICKS, got = 0;
        char *dst = (char *)&all[p * TICKS];
        while (got < want) {
            ssize_t r = read(fds[p][0], dst + got, want - got);
            assert_true(r > 0);
            got += (size_t)r;
        }
        close(fds[p][0]);
        int st;
        assert_int_equal(waitpid(pids[p], &st, 0), pids[p]);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
    qsort(all, TICKERS * TICKS, sizeof all[0], cmp_i64);
    for (int i = 0; i < TICKERS * TICKS; i++)
        assert_int_equal(all[i], i + 1); /* distinct and contiguous from 1 */
    int64_t next;
    assert_int_equal(sk__clock_tick(root, "0123456789ab", 1, 0, &next, NULL), SK_OK);
    assert_int_equal(next, TICKERS * TICKS + 1);
    sk_test_rmtree(root);
    free(root);
}

/* ------------------------------------------------------------ text ---- */

/* The queue stores what sk__event_text writes: it must be Jansson's compact dump,
 * byte for byte, whatever the value holds. */
static void event_text_is_jansson_compact_dump_byte_for_byte(void **state)
{
    (void)state;
    static const char *const docs[] = {
        "{}",
        "[]",
        "{\"a\":\"\",\"b\":[],\"c\":{},\"d\":[[],[{}]]}",
        "{\"event_id\":\"01HZX3V5Q8C6M0T7J4K2N9R1S0\",\"lamport_clock\":12,\"causation_id\":null,"
        "\"payload\":{\"force\":true,\"off\":false,\"n\":-7,\"deps\":[\"WP01\",\"WP02\"]}}",
        "{\"esc\":\"q\\\" b\\\\ s/ \\b\\f\\n\\r\\t \\u0001\\u001f \\u007f\"}",
        "{\"nul\":\"a\\u0000b\"}",
        "{\"utf8\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 \\u2028\",\"\xc3\xa9\":\"key\"}",
        "{\"max\":9223372036854775807,\"min\":-9223372036854775808,\"zero\":0,\"neg\":-10}",
        "{\"r\":1.5,\"big\":1e300,\"small\":-2.5e-8,\"third\":0.3333333333333333,\"nz\":-0.0}",
        "[1,\"two\",null,[true,false],{\"x\":[]}]",
        "\"a bare string\"",
        "42",
    };
    for (size_t i = 0; i < SK__ARRAY_LEN(docs); i++) {
        json_error_t jerr;
        json_t *v = json_loads(docs[i], JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        if (!v)
            fail_msg("doc %zu: %s", i, jerr.text);
        char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        assert_non_null(want);
        size_t want_len = strlen(want);
        char got[512];
        assert_int_equal(sk__event_text(v, got, sizeof got), want_len);
        assert_memory_equal(got, want, want_len);
        /* Too small a buffer: the length still comes back, the start is written. */
        memset(got, '#', sizeof got);
        assert_int_equal(sk__event_text(v, got, want_len / 2), want_len);
        assert_memory_equal(got, want, want_len / 2);
        assert_int_equal(got[want_len / 2], '#');
        free(want);
        json_decref(v);
    }
}

/* ------------------------------------------------------- validation ---- */

/* A valid WPStatusChanged envelope; callers break one field. */
static json_t *valid_envelope(void)
{
    json_t *env = json_loads("{\"event_id\": \"01HZX3V5Q8C6M0T7J4K2N9R1S0\","
                             " \"event_type\": \"WPStatusChanged\", \"aggregate_id\": \"WP01\","
                             " \"aggregate_type\": \"WorkPackage\","
                             " \"payload\": {\"wp_id\": \"WP01\", \"previous_status\": \"planned\","
                             "   \"new_status\": \"doing\"},"
                             " \"node_id\": \"0123456789ab\", \"lamport_clock\": 3,"
                             " \"causation_id\": null, \"timestamp\": \"2026-11-25T09:18:44.123Z\","
                             " \"team_slug\": \"local\"}",
                             0, NULL);
    assert_non_null(env);
    return env;
}

/* Asserts that env fails validation with exactly the message want; frees env. */
static void expect_invalid(json_t *env, const char *want)
{
    sk__err err = {{0}};
    assert_int_equal(sk__event_validate(env, &err), SK_ERR_INVALID_EVENT);
    assert_string_equal(err.msg, want);
    json_decref(env);
}

static void validate_accepts_a_complete_envelope(void **state)
{
    (void)state;
    json_t *env = valid_envelope();
    sk__err err;
    assert_int_equal(sk__event_validate(env, &err), SK_OK);
    /* Newer optional fields with the right types are fine too (without
     * schema_version the envelope stays a classic one). */
    json_object_set_new(env, "project_uuid", json_string("6f1c..."));
    json_object_set_new(env, "project_slug", json_string("demo"));
    json_object_set_new(env, "build_id", json_string("b-1"));
    json_object_set_new(env, "correlation_id", json_string("01HZX3V5Q8C6M0T7J4K2N9R1S0"));
    json_object_set_new(env, "causation_id", json_string("01HZX3V5Q8C6M0T7J4K2N9R1S1"));
    json_object_set_new(env, "lamport_clock", json_integer(0));
    assert_int_equal(sk__event_validate(env, &err), SK_OK);
    json_decref(env);
    expect_invalid(json_array(), "event: expected a JSON object");
    expect_invalid(NULL, "event: expected a JSON object");
}

static void validate_names_each_missing_required_field(void **state)
{
    (void)state;
    static const char *const required[] = {"event_id",       "event_type", "aggregate_id",
                                           "aggregate_type", "payload",    "node_id",
                                           "lamport_clock",  "timestamp",  "team_slug"};
    for (size_t i = 0; i < SK__ARRAY_LEN(required); i++) {
        json_t *env = valid_envelope();
        json_object_del(env, required[i]);
        char want[128];
        snprintf(want, sizeof want, "%s: missing", required[i]);
        expect_invalid(env, want);
    }
    /* causation_id may be absent. */
    json_t *env = valid_envelope();
    json_object_del(env, "causation_id");
    assert_int_equal(sk__event_validate(env, NULL), SK_OK);
    json_decref(env);
}

static void validate_names_each_wrongly_typed_field(void **state)
{
    (void)state;
    static const struct {
        const char *field;
        const char *value; /* JSON */
        const char *want;
    } cases[] = {
        {"event_id", "\"not-a-ulid\"",
         "event_id: expected a ULID (26 Crockford base32 characters)"},
        {"event_id", "42", "event_id: expected a ULID (26 Crockford base32 characters)"},
        {"event_id", "\"01hzx3v5q8c6m0t7j4k2n9r1sl\"",
         "event_id: expected a ULID (26 Crockford base32 characters)"},
        {"event_id", "\"6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f\"",
         "event_id: expected a ULID (26 Crockford base32 characters)"},
        {"event_type", "\"\"",
         "event_type: expected a name (a letter, then letters, digits, '_' or '.')"},
        {"event_type", "\"WP Status\"",
         "event_type: expected a name (a letter, then letters, digits, '_' or '.')"},
        {"event_type", "7",
         "event_type: expected a name (a letter, then letters, digits, '_' or '.')"},
        {"aggregate_id", "\"\"", "aggregate_id: expected a non-empty string"},
        {"aggregate_id", "1", "aggregate_id: expected a non-empty string"},
        {"aggregate_type", "\"X\"", "aggregate_type: \"X\" is not WorkPackage or Feature"},
        {"aggregate_type", "\"Mission\"",
         "aggregate_type: \"Mission\" is not WorkPackage or Feature"},
        {"aggregate_type", "null", "aggregate_type: expected a string"},
        {"payload", "[]", "payload: expected an object"},
        {"payload", "\"{}\"", "payload: expected an object"},
        {"node_id", "5", "node_id: expected a non-empty string"},
        {"lamport_clock", "-1", "lamport_clock: expected an integer >= 0"},
        {"lamport_clock", "1.5", "lamport_clock: expected an integer >= 0"},
        {"lamport_clock", "\"3\"", "lamport_clock: expected an integer >= 0"},
        {"causation_id", "\"nope\"", "causation_id: expected a ULID or null"},
        {"causation_id", "17", "causation_id: expected a ULID or null"},
        {"timestamp", "1700000000", "timestamp: expected an ISO-8601 date-time"},
        {"timestamp", "\"yesterday\"", "timestamp: \"yesterday\" is not an ISO-8601 date-time"},
        {"timestamp", "\"2026-13-01T00:00:00Z\"",
         "timestamp: \"2026-13-01T00:00:00Z\" is not an ISO-8601 date-time"},
        {"team_slug", "\"\"", "team_slug: expected a non-empty string"},
        {"team_slug", "null", "team_slug: expected a non-empty string"},
        {"schema_version", "3", "schema_version: expected \"3.x\""},
        {"schema_version", "\"2.0.0\"", "schema_version: \"2.0.0\" is not \"3.x\""},
        {"project_uuid", "true", "project_uuid: expected a string or null"},
        {"project_slug", "[]", "project_slug: expected a string or null"},
        {"build_id", "{}", "build_id: expected a string"},
        {"correlation_id", "1", "correlation_id: expected a ULID or null"},
    };
    for (size_t i = 0; i < SK__ARRAY_LEN(cases); i++) {
        json_t *env = valid_envelope();
        json_t *v = json_loads(cases[i].value, JSON_DECODE_ANY, NULL);
        assert_non_null(v);
        json_object_set_new(env, cases[i].field, v);
        expect_invalid(env, cases[i].want);
    }
}

/* One classic type with a valid payload; each listed field is required. */
typedef struct classic_case {
    const char *type;
    const char *aggregate_type;
    const char *payload;
    const char *required[4];
} classic_case;

static const classic_case classic_cases[] = {
    {"WPStatusChanged",
     "WorkPackage",
     "{\"wp_id\": \"WP01\", \"previous_status\": \"for_review\", \"new_status\": \"done\","
     " \"changed_by\": \"user\", \"feature_slug\": null}",
     {"wp_id", "previous_status", "new_status"}},
    {"WPCreated",
     "WorkPackage",
     "{\"wp_id\": \"WP02\", \"title\": \"Queue\", \"feature_slug\": \"001-sync\","
     " \"dependencies\": [\"WP01\"]}",
     {"wp_id", "title", "feature_slug"}},
    {"WPAssigned",
     "WorkPackage",
     "{\"wp_id\": \"WP02\", \"agent_id\": \"claude\", \"phase\": \"review\", \"retry_count\": 1}",
     {"wp_id", "agent_id", "phase"}},
    {"FeatureCreated",
     "Feature",
     "{\"feature_slug\": \"001-sync\", \"feature_number\": \"001\", \"target_branch\": \"main\","
     " \"wp_count\": 4}",
     {"feature_slug", "feature_number", "target_branch", "wp_count"}},
    {"FeatureCompleted",
     "Feature",
     "{\"feature_slug\": \"001-sync\", \"total_wps\": 4}",
     {"feature_slug", "total_wps"}},
    {"HistoryAdded",
     "WorkPackage",
     "{\"wp_id\": \"WP01\", \"entry_type\": \"note\", \"entry_content\": \"started\"}",
     {"wp_id", "entry_type", "entry_content"}},
    {"ErrorLogged",
     "WorkPackage",
     "{\"error_type\": \"runtime\", \"error_message\": \"boom\", \"wp_id\": null}",
     {"error_type", "error_message"}},
    {"DependencyResolved",
     "WorkPackage",
     "{\"wp_id\": \"WP02\", \"dependency_wp_id\": \"WP01\", \"resolution_type\": \"completed\"}",
     {"wp_id", "dependency_wp_id", "resolution_type"}},
};

static json_t *classic_envelope(const classic_case *c)
{
    json_t *env = valid_envelope();
    json_object_set_new(env, "event_type", json_string(c->type));
    json_object_set_new(env, "aggregate_type", json_string(c->aggregate_type));
    json_t *payload = json_loads(c->payload, 0, NULL);
    assert_non_null(payload);
    json_object_set_new(env, "payload", payload);
    return env;
}

static void validate_checks_required_payload_fields_of_the_classic_types(void **state)
{
    (void)state;
    for (size_t i = 0; i < SK__ARRAY_LEN(classic_cases); i++) {
        const classic_case *c = &classic_cases[i];
        json_t *env = classic_envelope(c);
        sk__err err;
        if (sk__event_validate(env, &err) != SK_OK)
            fail_msg("%s: %s", c->type, err.msg);
        json_decref(env);
        for (size_t f = 0; f < SK__ARRAY_LEN(c->required) && c->required[f]; f++) {
            env = classic_envelope(c);
            json_object_del(json_object_get(env, "payload"), c->required[f]);
            char want[128];
            snprintf(want, sizeof want, "payload.%s: missing", c->required[f]);
            expect_invalid(env, want);
        }
    }
    /* Same rules are not applied to another type's payload. */
    json_t *env = classic_envelope(&classic_cases[0]);
    json_object_set_new(env, "event_type", json_string("WPCreated"));
    expect_invalid(env, "payload.title: missing");
}

static void validate_checks_payload_values_of_the_classic_types(void **state)
{
    (void)state;
    static const struct {
        size_t case_index;
        const char *field;
        const char *value;
        const char *want;
    } cases[] = {
        {0, "new_status", "\"in_progress\"",
         "payload.new_status: unknown value \"in_progress\" (expected planned, doing, for_review "
         "or done)"},
        {0, "previous_status", "\"blocked\"",
         "payload.previous_status: unknown value \"blocked\" (expected planned, doing, "
         "for_review or done)"},
        {0, "new_status", "3", "payload.new_status: expected a string"},
        {0, "wp_id", "\"\"", "payload.wp_id: \"\" is not a work package id like WP01"},
        {0, "wp_id", "\"WP1\"", "payload.wp_id: \"WP1\" is not a work package id like WP01"},
        {0, "wp_id", "\"WP001\"", "payload.wp_id: \"WP001\" is not a work package id like WP01"},
        {0, "feature_slug", "5", "payload.feature_slug: expected a string or null"},
        {1, "dependencies", "\"WP01\"",
         "payload.dependencies: expected a list of work package ids like WP01"},
        {1, "dependencies", "[\"WP01\", \"wp2\"]",
         "payload.dependencies: expected a list of work package ids like WP01"},
        {2, "phase", "\"planning\"",
         "payload.phase: unknown value \"planning\" (expected implementation or review)"},
        {2, "retry_count", "-1", "payload.retry_count: expected an integer >= 0"},
        {3, "wp_count", "\"4\"", "payload.wp_count: expected an integer >= 0"},
        {3, "feature_number", "null",
         "payload.feature_number: expected three digits as a string, like \"001\""},
        {3, "feature_number", "\"1\"",
         "payload.feature_number: \"1\" is not three digits as a string, like \"001\""},
        {3, "feature_number", "1",
         "payload.feature_number: expected three digits as a string, like \"001\""},
        {3, "feature_slug", "\"sync\"",
         "payload.feature_slug: \"sync\" is not a slug like 001-my-feature"},
        {3, "feature_slug", "\"001-Sync\"",
         "payload.feature_slug: \"001-Sync\" is not a slug like 001-my-feature"},
        {3, "created_at", "\"2026-02-30 x\"",
         "payload.created_at: \"2026-02-30 x\" is not an ISO-8601 date-time"},
        {4, "total_wps", "-2", "payload.total_wps: expected an integer >= 0"},
        {5, "entry_content", "\"\"", "payload.entry_content: expected a non-empty string"},
        {5, "entry_type", "\"memo\"",
         "payload.entry_type: unknown value \"memo\" (expected note, review, error or comment)"},
        {6, "error_message", "null", "payload.error_message: expected a non-empty string"},
        {6, "error_type", "\"disk\"",
         "payload.error_type: unknown value \"disk\" (expected validation, runtime, network, auth "
         "or unknown)"},
        {6, "wp_id", "\"7\"", "payload.wp_id: \"7\" is not a work package id like WP01, or null"},
        {7, "resolution_type", "[]", "payload.resolution_type: expected a string"},
        {7, "resolution_type", "\"dropped\"",
         "payload.resolution_type: unknown value \"dropped\" (expected completed, skipped or "
         "merged)"},
        {7, "dependency_wp_id", "\"WPX1\"",
         "payload.dependency_wp_id: \"WPX1\" is not a work package id like WP01"},
    };
    for (size_t i = 0; i < SK__ARRAY_LEN(cases); i++) {
        json_t *env = classic_envelope(&classic_cases[cases[i].case_index]);
        json_t *v = json_loads(cases[i].value, JSON_DECODE_ANY, NULL);
        assert_non_null(v);
        json_object_set_new(json_object_get(env, "payload"), cases[i].field, v);
        expect_invalid(env, cases[i].want);
    }
    /* Every status and phase value is accepted. */
    static const char *const statuses[] = {"planned", "doing", "for_review", "done"};
    for (size_t i = 0; i < SK__ARRAY_LEN(statuses); i++) {
        json_t *env = classic_envelope(&classic_cases[0]);
        json_object_set_new(json_object_get(env, "payload"), "new_status",
                            json_string(statuses[i]));
        assert_int_equal(sk__event_validate(env, NULL), SK_OK);
        json_decref(env);
    }
    json_t *env = classic_envelope(&classic_cases[2]);
    json_object_set_new(json_object_get(env, "payload"), "phase", json_string("implementation"));
    assert_int_equal(sk__event_validate(env, NULL), SK_OK);
    json_decref(env);
}

static void validate_accepts_unknown_well_formed_types(void **state)
{
    (void)state;
    static const char *const agg[] = {"Mission", "Build", "MissionDossier", "Feature"};
    for (size_t i = 0; i < SK__ARRAY_LEN(agg); i++) {
        json_t *env = valid_envelope();
        json_object_set_new(env, "event_type", json_string("MissionDossierArtifactIndexed"));
        json_object_set_new(env, "aggregate_type", json_string(agg[i]));
        json_object_set_new(env, "payload", json_pack("{s:i}", "anything", 1));
        assert_int_equal(sk__event_validate(env, NULL), SK_OK);
        json_decref(env);
    }
    json_t *env = valid_envelope();
    json_object_set_new(env, "event_type", json_string("spec_kitty.custom.Thing2"));
    json_object_set_new(env, "payload", json_object());
    assert_int_equal(sk__event_validate(env, NULL), SK_OK);
    json_decref(env);
}

/* ---------------------------------------------------------- building ---- */

static void default_aggregate_type_follows_the_event_type(void **state)
{
    (void)state;
    assert_string_equal(sk__event_default_aggregate_type("WPStatusChanged"), "WorkPackage");
    assert_string_equal(sk__event_default_aggregate_type("WPCreated"), "WorkPackage");
    assert_string_equal(sk__event_default_aggregate_type("HistoryAdded"), "WorkPackage");
    assert_string_equal(sk__event_default_aggregate_type("ErrorLogged"), "WorkPackage");
    assert_string_equal(sk__event_default_aggregate_type("DependencyResolved"), "WorkPackage");
    assert_string_equal(sk__event_default_aggregate_type("FeatureCreated"), "Feature");
    assert_string_equal(sk__event_default_aggregate_type("FeatureCompleted"), "Feature");
    assert_string_equal(sk__event_default_aggregate_type("MissionCreated"), "Mission");
    assert_string_equal(sk__event_default_aggregate_type("MissionDossierArtifactIndexed"),
                        "MissionDossier");
    assert_string_equal(sk__event_default_aggregate_type("BuildRegistered"), "Build");
    assert_string_equal(sk__event_default_aggregate_type("SomethingElse"), "Feature");
    assert_string_equal(sk__event_default_aggregate_type(NULL), "Feature");
}

static void build_fills_identity_clock_time_and_team(void **state)
{
    (void)state;
    json_t *payload = json_pack("{s:s,s:s,s:s}", "wp_id", "WP01", "previous_status", "planned",
                                "new_status", "doing");
    sk__event_fields f = {
        .event_type = "WPStatusChanged", .aggregate_id = "WP01", .payload = payload};
    json_t *env = NULL;
    sk__err err;
    int64_t before = sk__wall_ms();
    assert_int_equal(sk__event_build(&f, 17, "0123456789ab", NULL, &env, &err), SK_OK);
    assert_non_null(env);
    assert_true(sk__ulid_valid(json_string_value(json_object_get(env, "event_id"))));
    assert_string_equal(json_string_value(json_object_get(env, "event_type")), "WPStatusChanged");
    assert_string_equal(json_string_value(json_object_get(env, "aggregate_id")), "WP01");
    assert_string_equal(json_string_value(json_object_get(env, "aggregate_type")), "WorkPackage");
    assert_true(json_equal(json_object_get(env, "payload"), payload));
    assert_string_equal(json_string_value(json_object_get(env, "node_id")), "0123456789ab");
    assert_int_equal(json_integer_value(json_object_get(env, "lamport_clock")), 17);
    assert_true(json_is_null(json_object_get(env, "causation_id")));
    assert_string_equal(json_string_value(json_object_get(env, "team_slug")), "local");
    assert_null(json_object_get(env, "correlation_id"));
    const char *ts = json_string_value(json_object_get(env, "timestamp"));
    char lo[32];
    sk__iso8601_ms(before, lo, sizeof lo);
    assert_non_null(ts);
    assert_int_equal(strlen(ts), 24);
    assert_true(strcmp(ts, lo) >= 0 && ts[23] == 'Z');
    assert_int_equal(json_object_size(env), 10);
    json_decref(env);

    /* Given values win over the defaults. */
    sk__event_fields g = {.event_type = "FeatureCompleted",
                          .aggregate_id = "001-sync",
                          .aggregate_type = "WorkPackage",
                          .payload =
                              json_pack("{s:s,s:i}", "feature_slug", "001-sync", "total_wps", 3),
                          .causation_id = "01HZX3V5Q8C6M0T7J4K2N9R1S0"};
    assert_int_equal(sk__event_build(&g, 0, "0123456789ab", "acme", &env, &err), SK_OK);
    assert_string_equal(json_string_value(json_object_get(env, "aggregate_type")), "WorkPackage");
    assert_string_equal(json_string_value(json_object_get(env, "causation_id")),
                        "01HZX3V5Q8C6M0T7J4K2N9R1S0");
    assert_string_equal(json_string_value(json_object_get(env, "team_slug")), "acme");
    json_decref(env);
    json_decref(g.payload);
    json_decref(payload);
}

static void build_refuses_an_invalid_event(void **state)
{
    (void)state;
    json_t *env = (json_t *)1;
    sk__err err;
    sk__event_fields f = {.event_type = "WPStatusChanged", .aggregate_id = "WP01"};
    assert_int_equal(sk__event_build(&f, 1, "0123456789ab", "local", &env, &err),
                     SK_ERR_INVALID_EVENT);
    assert_null(env);
    assert_string_equal(err.msg, "payload.wp_id: missing");

    sk__event_fields g = {.event_type = "Custom", .aggregate_id = NULL};
    assert_int_equal(sk__event_build(&g, 1, "0123456789ab", "local", &env, &err),
                     SK_ERR_INVALID_EVENT);
    assert_string_equal(err.msg, "aggregate_id: missing");

    sk__event_fields h = {.event_type = "Custom", .aggregate_id = "x", .causation_id = "bad"};
    assert_int_equal(sk__event_build(&h, 1, "0123456789ab", "local", &env, &err),
                     SK_ERR_INVALID_EVENT);
    assert_string_equal(err.msg, "causation_id: expected a ULID or null");

    sk__event_fields k = {.event_type = "Custom", .aggregate_id = "\xff\xfe"};
    assert_int_equal(sk__event_build(&k, 1, "0123456789ab", "local", &env, &err),
                     SK_ERR_INVALID_EVENT);
    assert_string_equal(err.msg, "aggregate_id: not valid UTF-8");
}

/* The cached node id equals the computed one, and a stale or damaged cache is recomputed. */
static void node_id_cache_matches_and_refreshes(void **state)
{
    (void)state;
    char *root = sk_test_mkdtemp();
    char want[13], got[13], path[1024];
    sk__err err = {{0}};
    assert_int_equal(sk__node_id(want, &err), SK_OK);
    assert_int_equal(sk__node_id_cached(root, got, &err), SK_OK); /* computes, writes */
    assert_string_equal(got, want);
    snprintf(path, sizeof path, "%s/node-id", root);
    assert_int_equal(access(path, F_OK), 0);
    assert_int_equal(sk__node_id_cached(root, got, &err), SK_OK); /* reads */
    assert_string_equal(got, want);
    sk_test_write_file(path, "aaaaaaaaaaaa otherhost:otheruser\n"); /* another machine's */
    assert_int_equal(sk__node_id_cached(root, got, &err), SK_OK);
    assert_string_equal(got, want);
    sk_test_write_file(path, "garbage");
    assert_int_equal(sk__node_id_cached(root, got, &err), SK_OK);
    assert_string_equal(got, want);
    char *text = NULL;
    assert_int_equal(sk__read_file(path, &text, NULL, &err), SK_OK);
    assert_memory_equal(text, want, 12); /* rewritten */
    free(text);
    sk_test_rmtree(root);
    free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(node_id_cache_matches_and_refreshes),
        cmocka_unit_test(ulid_new_is_26_crockford_chars),
        cmocka_unit_test(ulid_valid_rejects_other_alphabets_and_lengths),
        cmocka_unit_test(ulid_encodes_known_vectors),
        cmocka_unit_test(ulid_lexicographic_order_is_time_order),
        cmocka_unit_test(ulid_monotonic_within_one_ms),
        cmocka_unit_test(ulid_stays_increasing_when_the_clock_steps_back),
        cmocka_unit_test(ulid_random_overflow_is_an_error),
        cmocka_unit_test(ulid_rejects_time_outside_48_bits_and_random_failure),
        cmocka_unit_test(ulid_a_million_ids_from_two_threads_are_unique),
        cmocka_unit_test(ulid_forked_child_does_not_repeat_parent_ids),
        cmocka_unit_test(ulid_fork_while_another_thread_generates_does_not_deadlock),
        cmocka_unit_test(node_id_matches_known_sha256_vector),
        cmocka_unit_test(node_id_hashes_this_host_and_user),
        cmocka_unit_test(clock_first_value_is_one_and_reservations_are_consecutive),
        cmocka_unit_test(clock_file_holds_value_node_and_time_owner_only),
        cmocka_unit_test(clock_continues_from_an_existing_file),
        cmocka_unit_test(clock_corrupt_file_is_an_error_naming_it),
        cmocka_unit_test(clock_missing_root_is_an_io_error),
        cmocka_unit_test(clock_concurrent_processes_never_share_a_value),
        cmocka_unit_test(clock_held_makes_other_ticks_wait_and_unused_changes_nothing),
        cmocka_unit_test(clock_held_too_long_is_busy_naming_the_lock),
        cmocka_unit_test(event_text_is_jansson_compact_dump_byte_for_byte),
        cmocka_unit_test(validate_accepts_a_complete_envelope),
        cmocka_unit_test(validate_names_each_missing_required_field),
        cmocka_unit_test(validate_names_each_wrongly_typed_field),
        cmocka_unit_test(validate_checks_required_payload_fields_of_the_classic_types),
        cmocka_unit_test(validate_checks_payload_values_of_the_classic_types),
        cmocka_unit_test(validate_accepts_unknown_well_formed_types),
        cmocka_unit_test(default_aggregate_type_follows_the_event_type),
        cmocka_unit_test(build_fills_identity_clock_time_and_team),
        cmocka_unit_test(build_refuses_an_invalid_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
