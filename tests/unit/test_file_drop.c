/*
 * The file-drop transport, loaded as a real plugin through the fake host:
 * every bundle it writes must verify with host/bundle.c, bundle names must
 * sort in delivery order, and any failure must keep every event queued.
 */
#include "bundle.h"
#include "fakehost.h"
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NODE_ID "3f9a1c2b7d4e"

typedef struct fixture {
    char *root; /* state_root */
    const char *values[7];
    sk_fakehost *fh;
    void *dl;
    const sk_transport_desc *d;
    void *self;
    char outbox[1024];
} fixture;

/* A batch with its envelopes, ids and result storage. */
typedef struct tbatch {
    sk_batch b;
    sk_event *ev;
    char **json;
    char (*ids)[27];
    sk_batch_result r;
} tbatch;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    fx->d = sk_fakehost_load_plugin("file-drop", &fx->dl); /* first: fails before any mkdtemp */
    fx->root = sk_test_mkdtemp();
    fx->values[0] = "state_root";
    fx->values[1] = fx->root;
    fx->values[2] = "node_id";
    fx->values[3] = NODE_ID;
    fx->values[4] = NULL;
    snprintf(fx->outbox, sizeof fx->outbox, "%s/outbox", fx->root);
    *state = fx;
    return 0;
}

static void close_plugin(fixture *fx)
{
    if (fx->self)
        fx->d->destroy(fx->self);
    fx->self = NULL;
    sk_fakehost_free(fx->fh);
    fx->fh = NULL;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    close_plugin(fx);
    sk_test_rmtree(fx->root);
    free(fx->root);
    free(fx);
    return 0;
}

/* Creates an instance with these options; fails the test if create fails. */
static void open_plugin(fixture *fx, const char *options)
{
    close_plugin(fx);
    fx->fh = sk_fakehost_new(options, fx->values);
    char err[256] = "";
    int rc = fx->d->create(sk_fakehost_api(fx->fh), &fx->self, err, sizeof err);
    if (rc != 0)
        fail_msg("create: %s", err);
}

/* Event id number i: a valid, sortable ULID-shaped string. */
static void event_id(char out[27], long i)
{
    snprintf(out, 27, "01JDX%021ld", i);
}

/* n envelopes shaped like CONTRACT.md §1, numbered from first. */
static tbatch *batch_new(long first, uint32_t n)
{
    tbatch *t = calloc(1, sizeof *t);
    t->ev = calloc(n, sizeof *t->ev);
    t->json = calloc(n, sizeof *t->json);
    t->ids = calloc(n, sizeof *t->ids);
    t->r.events = calloc(n, sizeof *t->r.events);
    static const char *const states[] = {"planned", "doing", "for_review", "done"};
    for (uint32_t k = 0; k < n; k++) {
        long i = first + (long)k;
        event_id(t->ids[k], i);
        char buf[1024];
        int len = snprintf(
            buf, sizeof buf,
            "{\"event_id\":\"%s\",\"event_type\":\"WPStatusChanged\",\"aggregate_id\":\"WP%02ld\","
            "\"aggregate_type\":\"WorkPackage\",\"payload\":{\"wp_id\":\"WP%02ld\","
            "\"previous_status\":\"%s\",\"new_status\":\"%s\",\"changed_by\":\"agent-%ld\","
            "\"feature_slug\":\"042-offline-sync\"},\"node_id\":\"" NODE_ID "\","
            "\"lamport_clock\":%ld,\"causation_id\":null,\"timestamp\":"
            "\"2026-11-26T09:%02ld:%02ld.%03ldZ\",\"team_slug\":\"local\"}",
            t->ids[k], i % 97, i % 97, states[i % 4], states[(i + 1) % 4], i % 13, i + 1,
            (i / 60000) % 60, (i / 1000) % 60, i % 1000);
        t->json[k] = strdup(buf);
        t->ev[k] = (sk_event){t->ids[k], t->json[k], (size_t)len};
    }
    t->b = (sk_batch){.struct_size = sizeof(sk_batch),
                      .count = n,
                      .events = t->ev,
                      .deadline_ms = 0,
                      .batch_seq = (uint64_t)first};
    t->r.struct_size = sizeof(sk_batch_result);
    t->r.count = n;
    return t;
}

static void batch_free(tbatch *t)
{
    for (uint32_t k = 0; k < t->b.count; k++)
        free(t->json[k]);
    free(t->json);
    free(t->ev);
    free(t->ids);
    free(t->r.events);
    free(t);
}

/* Sends the batch (outcomes pre-filled TRANSIENT, as the host does). */
static int send_batch(fixture *fx, tbatch *t)
{
    for (uint32_t k = 0; k < t->b.count; k++)
        t->r.events[k] = (sk_event_result){.outcome = SK_OUTCOME_TRANSIENT};
    t->r.detail[0] = '\0';
    return fx->d->send(fx->self, &t->b, &t->r);
}

static void assert_all(const tbatch *t, int outcome)
{
    for (uint32_t k = 0; k < t->b.count; k++)
        assert_int_equal(t->r.events[k].outcome, outcome);
}

/* Collects what the reader hands out and checks it against expectations. */
typedef struct collect {
    int any_ids;  /* when set: ids are not checked */
    long next;    /* the event number expected next */
    long n;       /* events seen */
    tbatch *want; /* when set: the exact envelope bytes expected, in order */
} collect;

static sk_status on_event(void *ctx, const char *id, json_t *envelope, const char *json,
                          size_t len)
{
    (void)envelope;
    collect *c = ctx;
    char want_id[27];
    event_id(want_id, c->next);
    if (!c->any_ids)
        assert_string_equal(id, want_id);
    if (c->want) {
        assert_int_equal(len, c->want->ev[c->n].json_len);
        assert_memory_equal(json, c->want->ev[c->n].json, len);
    }
    c->next++;
    c->n++;
    return SK_OK;
}

/* Reads every bundle of the outbox in listed order; returns the count. */
static size_t read_outbox(const char *outbox, collect *c)
{
    char **names;
    size_t n;
    sk__err err;
    assert_int_equal(sk__bundle_list(outbox, &names, &n, &err), SK_OK);
    for (size_t i = 0; i < n; i++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", outbox, names[i]);
        sk__bundle_info info;
        sk_status st = sk__bundle_read(path, on_event, c, &info, &err);
        if (st != SK_OK)
            fail_msg("%s: %s", names[i], err.msg);
        assert_string_equal(info.node_id, NODE_ID);
    }
    sk__bundle_list_free(names, n);
    return n;
}

/* Entries of a folder other than . and ..; -1 when it cannot be opened. */
static int count_entries(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
            strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            n++;
    closedir(d);
    return n;
}

static void test_descriptor_fields(void **state)
{
    fixture *fx = *state;
    const sk_transport_desc *d = fx->d;
    assert_int_equal(d->struct_size, sizeof(sk_transport_desc));
    assert_int_equal(d->abi_major, SK_TRANSPORT_ABI_MAJOR);
    assert_int_equal(d->abi_minor, SK_TRANSPORT_ABI_MINOR);
    assert_string_equal(d->name, "file-drop");
    assert_true(d->version && d->version[0]);
    assert_true(d->description && d->description[0]);
    assert_int_equal(d->capabilities, SK_CAP_SYNC | SK_CAP_OFFLINE);
    assert_true(d->max_in_flight >= 1);
    assert_non_null(d->create);
    assert_non_null(d->destroy);
    assert_non_null(d->send);
    assert_non_null(d->cancel);
    assert_null(d->submit);
    assert_null(d->probe);
    /* ABI 1.1: every option the README documents, with a default and help. */
    static const char *const keys[] = {"outbox", "gzip_level", "fsync", "threads"};
    assert_non_null(d->options);
    size_t n = 0;
    for (const sk_option_def *o = d->options; o->name; o++, n++) {
        assert_true(n < 4);
        assert_string_equal(o->name, keys[n]);
        assert_true(o->type && o->dflt && o->help && o->help[0]);
    }
    assert_int_equal(n, 4);
}

static void test_batch_becomes_bundle_that_verifies(void **state)
{
    fixture *fx = *state;
    open_plugin(fx, NULL);
    tbatch *t = batch_new(0, 25);
    assert_int_equal(send_batch(fx, t), SK_TRANSPORT_OK);
    assert_all(t, SK_OUTCOME_DELIVERED);
    collect c = {.want = t};
    assert_int_equal(read_outbox(fx->outbox, &c), 1);
    assert_int_equal(c.n, 25);
    struct stat st;
    assert_int_equal(stat(fx->outbox, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(sk_fakehost_metric(fx->fh, "bundles_written"), 1);
    assert_true(sk_fakehost_metric(fx->fh, "bytes_sent") > 0);
    batch_free(t);
}

static void test_names_sort_in_delivery_order_across_instances(void **state)
{
    fixture *fx = *state;
    long next = 0;
    for (int inst = 0; inst < 3; inst++) {
        open_plugin(fx, "{\"fsync\": false}");
        for (int i = 0; i < 40; i++) {
            tbatch *t = batch_new(next, 3);
            assert_int_equal(send_batch(fx, t), SK_TRANSPORT_OK);
            assert_all(t, SK_OUTCOME_DELIVERED);
            next += 3;
            batch_free(t);
        }
    }
    collect c = {0};
    assert_int_equal(read_outbox(fx->outbox, &c), 120);
    assert_int_equal(c.n, next);
    assert_int_equal(count_entries(fx->outbox, ".tmp-"), 0);
    assert_int_equal(count_entries(fx->outbox, ""), 120);
}

static void test_ids_continue_after_newest_existing_bundle(void **state)
{
    fixture *fx = *state;
    /* A bundle from a clock far ahead: new bundles must still sort after it. */
    assert_int_equal(mkdir(fx->outbox, 0700), 0);
    char future[1200];
    snprintf(future, sizeof future, "%s/20990101T000000000Z-00000000.skb", fx->outbox);
    assert_int_equal(mkdir(future, 0700), 0);
    open_plugin(fx, "{\"fsync\": false}");
    tbatch *t = batch_new(0, 2);
    assert_int_equal(send_batch(fx, t), SK_TRANSPORT_OK);
    char **names;
    size_t n;
    sk__err err;
    assert_int_equal(sk__bundle_list(fx->outbox, &names, &n, &err), SK_OK);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "20990101T000000000Z-00000000.skb");
    assert_memory_equal(names[1], "20990101T000000001Z-", 20);
    sk__bundle_list_free(names, n);
    batch_free(t);
}

/* Sends one batch that must fail and checks nothing was lost or left. */
static void expect_transient_failure(fixture *fx, const char *os_text)
{
    tbatch *t = batch_new(0, 10);
    assert_int_equal(send_batch(fx, t), SK_TRANSPORT_FAILED);
    assert_all(t, SK_OUTCOME_TRANSIENT);
    if (!strstr(t->r.detail, os_text))
        fail_msg("detail \"%s\" lacks \"%s\"", t->r.detail, os_text);
    assert_true(sk_fakehost_logged(fx->fh, os_text));
    batch_free(t);
}

static void test_outbox_under_a_regular_file_keeps_events(void **state)
{
    fixture *fx = *state;
    char file[1100], opts[1300];
    snprintf(file, sizeof file, "%s/plain-file", fx->root);
    sk_test_write_file(file, "not a folder\n");
    snprintf(opts, sizeof opts, "{\"outbox\": \"%s/outbox\"}", file);
    open_plugin(fx, opts);
    expect_transient_failure(fx, strerror(ENOTDIR));
}

static void test_outbox_with_missing_parent_keeps_events(void **state)
{
    fixture *fx = *state;
    char opts[1300], parent[1100];
    snprintf(parent, sizeof parent, "%s/no-such-parent", fx->root);
    snprintf(opts, sizeof opts, "{\"outbox\": \"%s/outbox\"}", parent);
    open_plugin(fx, opts);
    expect_transient_failure(fx, strerror(ENOENT));
    struct stat st;
    assert_int_not_equal(stat(parent, &st), 0); /* only the outbox itself is created */
}

static void test_outbox_that_is_a_file_keeps_events(void **state)
{
    fixture *fx = *state;
    sk_test_write_file(fx->outbox, "x");
    open_plugin(fx, NULL);
    expect_transient_failure(fx, strerror(ENOTDIR));
}

static void test_write_error_mid_bundle_leaves_nothing(void **state)
{
    fixture *fx = *state;
    open_plugin(fx, NULL);
    /* Random payloads do not compress: the data file outgrows the file size
     * limit, so write() fails part-way like on a full disk (EFBIG here). */
    tbatch *t = batch_new(0, 200);
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    srand(7);
    for (uint32_t k = 0; k < t->b.count; k++) {
        char noise[401];
        for (int r = 0; r < 400; r++)
            noise[r] = alnum[rand() % 62];
        noise[400] = '\0';
        free(t->json[k]);
        t->json[k] = malloc(512);
        int len =
            snprintf(t->json[k], 512, "{\"event_id\":\"%s\",\"noise\":\"%s\"}", t->ids[k], noise);
        t->ev[k].json = t->json[k];
        t->ev[k].json_len = (size_t)len;
    }
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, small = {4096, 4096};
    getrlimit(RLIMIT_FSIZE, &old);
    small.rlim_max = old.rlim_max;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    int rc = send_batch(fx, t);
    setrlimit(RLIMIT_FSIZE, &old);
    assert_int_equal(rc, SK_TRANSPORT_FAILED);
    assert_all(t, SK_OUTCOME_TRANSIENT);
    assert_non_null(strstr(t->r.detail, strerror(EFBIG)));
    assert_int_equal(count_entries(fx->outbox, ""), 0); /* no temp, no bundle */
    /* The same batch goes through once the disk has room again. */
    assert_int_equal(send_batch(fx, t), SK_TRANSPORT_OK);
    assert_all(t, SK_OUTCOME_DELIVERED);
    collect c = {.want = t};
    assert_int_equal(read_outbox(fx->outbox, &c), 1);
    batch_free(t);
}

static void test_cancel_before_send_writes_nothing(void **state)
{
    fixture *fx = *state;
    open_plugin(fx, NULL);
    fx->d->cancel(fx->self);
    tbatch *t = batch_new(0, 5);
    assert_int_equal(send_batch(fx, t), SK_TRANSPORT_CANCELLED);
    assert_all(t, SK_OUTCOME_TRANSIENT);
    assert_true(count_entries(fx->outbox, "") <= 0);
    batch_free(t);
}

static void test_passed_deadline_writes_nothing(void **state)
{
    fixture *fx = *state;
    open_plugin(fx, NULL);
    const sk_host_api *api = sk_fakehost_api(fx->fh);
    tbatch *t = batch_new(0, 5);
    t->b.deadline_ms = api->now_ms(api->host_ctx) - 1;
    assert_int_equal(send_batch(fx, t), SK_TRANSPORT_FAILED);
    assert_all(t, SK_OUTCOME_TRANSIENT);
    assert_non_null(strstr(t->r.detail, "deadline"));
    assert_true(count_entries(fx->outbox, "") <= 0);
    batch_free(t);
}

static void test_deadline_passing_mid_batch_writes_nothing(void **state)
{
    fixture *fx = *state;
    open_plugin(fx, NULL);
    const sk_host_api *api = sk_fakehost_api(fx->fh);
    tbatch *t = batch_new(0, 20000); /* tens of ms of gzip, far beyond 1 ms */
    t->b.deadline_ms = api->now_ms(api->host_ctx) + 1;
    assert_int_equal(send_batch(fx, t), SK_TRANSPORT_FAILED);
    assert_all(t, SK_OUTCOME_TRANSIENT);
    assert_non_null(strstr(t->r.detail, "deadline"));
    assert_true(count_entries(fx->outbox, "") <= 0);
    batch_free(t);
}

typedef struct canceller {
    fixture *fx;
    atomic_int go;
} canceller;

static void *cancel_soon(void *arg)
{
    canceller *c = arg;
    while (!atomic_load(&c->go))
        ;
    c->fx->d->cancel(c->fx->self);
    return NULL;
}

static void test_cancel_from_another_thread_stops_a_send(void **state)
{
    fixture *fx = *state;
    open_plugin(fx, NULL);
    tbatch *t = batch_new(0, 100000); /* hundreds of ms of gzip: cancel lands inside */
    canceller c = {.fx = fx};
    pthread_t tid;
    assert_int_equal(pthread_create(&tid, NULL, cancel_soon, &c), 0);
    atomic_store(&c.go, 1);
    int rc = send_batch(fx, t);
    pthread_join(tid, NULL);
    assert_int_equal(rc, SK_TRANSPORT_CANCELLED);
    assert_all(t, SK_OUTCOME_TRANSIENT);
    assert_true(count_entries(fx->outbox, "") <= 0);
    batch_free(t);
}

static void test_envelope_with_line_break_is_parked(void **state)
{
    fixture *fx = *state;
    open_plugin(fx, "{\"fsync\": false}");
    tbatch *t = batch_new(0, 3);
    t->json[1][5] = '\n'; /* inside the "event_id" key: cannot be one NDJSON line */
    assert_int_equal(send_batch(fx, t), SK_TRANSPORT_OK);
    assert_int_equal(t->r.events[0].outcome, SK_OUTCOME_DELIVERED);
    assert_int_equal(t->r.events[1].outcome, SK_OUTCOME_REJECTED_PERMANENT);
    assert_non_null(strstr(t->r.events[1].message, "line break"));
    assert_int_equal(t->r.events[2].outcome, SK_OUTCOME_DELIVERED);
    char **names;
    size_t n;
    sk__err err;
    assert_int_equal(sk__bundle_list(fx->outbox, &names, &n, &err), SK_OK);
    assert_int_equal(n, 1);
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", fx->outbox, names[0]);
    sk__bundle_info info;
    assert_int_equal(sk__bundle_read(path, NULL, NULL, &info, &err), SK_OK);
    assert_int_equal(info.event_count, 2);
    assert_string_equal(info.first_event_id, t->ids[0]);
    assert_string_equal(info.last_event_id, t->ids[2]);
    sk__bundle_list_free(names, n);
    batch_free(t);
}

/* At create, the temp folders of dead writers go (nobody holds their lock, however
 * young), and one a live writer holds stays. */
static void test_dead_writers_temp_folders_removed_live_ones_kept(void **state)
{
    fixture *fx = *state;
    char p[1200];
    assert_int_equal(mkdir(fx->outbox, 0700), 0);
    snprintf(p, sizeof p, "%s/.tmp-old", fx->outbox);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/.tmp-old/events.ndjson.gz", fx->outbox);
    sk_test_write_file(p, "partial");
    snprintf(p, sizeof p, "%s/.tmp-old", fx->outbox);
    struct timespec old[2] = {{time(NULL) - 7200, 0}, {time(NULL) - 7200, 0}};
    assert_int_equal(utimensat(AT_FDCWD, p, old, 0), 0);
    snprintf(p, sizeof p, "%s/.tmp-dead", fx->outbox);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/.tmp-dead/manifest.json", fx->outbox);
    sk_test_write_file(p, "{");
    snprintf(p, sizeof p, "%s/.tmp-live", fx->outbox);
    assert_int_equal(mkdir(p, 0700), 0);
    int live = open(p, O_RDONLY | O_DIRECTORY);
    assert_true(live >= 0);
    assert_int_equal(flock(live, LOCK_EX), 0);
    open_plugin(fx, NULL);
    assert_int_equal(count_entries(fx->outbox, ".tmp-old"), 0);
    assert_int_equal(count_entries(fx->outbox, ".tmp-dead"), 0);
    assert_int_equal(count_entries(fx->outbox, ".tmp-live"), 1);
    close(live);
    collect c = {0};
    assert_int_equal(read_outbox(fx->outbox, &c), 0); /* a temp folder is never a bundle */
}

/* A writer killed with SIGKILL at any moment leaves whole bundles (which all
 * verify) and at most temp folders the reader ignores, which the next writer's
 * create removes. The child announces
 * each send through a pipe; the kill follows after a delay that walks across
 * the duration of one send round by round, so it lands in every phase. */
static void test_kill_9_leaves_whole_bundles_or_temp_entries(void **state)
{
    fixture *fx = *state;
    enum { ROUNDS = 40 };
    /* How long one send takes here (sanitizers are slow): the kills spread over it. */
    open_plugin(fx, "{\"fsync\": false}");
    tbatch *probe = batch_new(0, 1000);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(send_batch(fx, probe), SK_TRANSPORT_OK);
    clock_gettime(CLOCK_MONOTONIC, &b);
    batch_free(probe);
    close_plugin(fx);
    long send_ns = (b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec);
    for (int round = 0; round < ROUNDS; round++) {
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            open_plugin(fx, "{\"fsync\": false}");
            for (long i = 0;; i++) {
                tbatch *t = batch_new(i * 1000, 1000);
                if (write(pfd[1], "x", 1) != 1 || send_batch(fx, t) != SK_TRANSPORT_OK)
                    _exit(3);
                batch_free(t);
            }
        }
        close(pfd[1]);
        char buf[4];
        assert_int_equal(read(pfd[0], buf, 1), 1);
        /* 0 .. 1.2 x one send after the child announced it */
        long wait_ns = (long)((double)send_ns * 1.2 * round / ROUNDS);
        struct timespec delay = {wait_ns / 1000000000L, wait_ns % 1000000000L};
        nanosleep(&delay, NULL);
        kill(pid, SIGKILL);
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        close(pfd[0]);
    }
    collect c = {.any_ids = 1};
    size_t bundles = read_outbox(fx->outbox, &c); /* every listed bundle verifies */
    assert_true(bundles >= 1);
    assert_int_equal(c.n, (long)bundles * 1000);
    int tmp = count_entries(fx->outbox, ".tmp-");
    assert_int_equal(count_entries(fx->outbox, ""), (int)bundles + tmp);
    printf("# kill -9 x%d: %zu whole bundles, %d temp folders left\n", ROUNDS, bundles, tmp);
    open_plugin(fx, "{\"fsync\": false}");
    assert_int_equal(count_entries(fx->outbox, ".tmp-"), 0);
    assert_int_equal(count_entries(fx->outbox, ""), (int)bundles);
}

static void test_relative_outbox_lives_under_state_root(void **state)
{
    fixture *fx = *state;
    open_plugin(fx, "{\"outbox\": \"drops\", \"gzip_level\": 1}");
    tbatch *t = batch_new(0, 4);
    assert_int_equal(send_batch(fx, t), SK_TRANSPORT_OK);
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/drops", fx->root);
    collect c = {.want = t};
    assert_int_equal(read_outbox(dir, &c), 1);
    batch_free(t);
}

static void test_bad_gzip_level_is_refused_at_create(void **state)
{
    fixture *fx = *state;
    fx->fh = sk_fakehost_new("{\"gzip_level\": 12}", fx->values);
    char err[256] = "";
    void *self = NULL;
    assert_int_not_equal(fx->d->create(sk_fakehost_api(fx->fh), &self, err, sizeof err), 0);
    assert_null(self);
    assert_non_null(strstr(err, "gzip_level"));
}

static void test_overlong_node_id_is_refused_at_create(void **state)
{
    fixture *fx = *state;
    fx->values[3] = "0123456789012345678901234567890123456789012345678901234567890123456789";
    fx->fh = sk_fakehost_new(NULL, fx->values);
    char err[256] = "";
    void *self = NULL;
    assert_int_not_equal(fx->d->create(sk_fakehost_api(fx->fh), &self, err, sizeof err), 0);
    assert_null(self);
    assert_non_null(strstr(err, "node_id"));
}

static void test_manifest_strings_are_escaped(void **state)
{
    fixture *fx = *state;
    fx->values[3] = "node \"q\" \\ \t";
    open_plugin(fx, "{\"fsync\": false}");
    tbatch *t = batch_new(0, 2);
    assert_int_equal(send_batch(fx, t), SK_TRANSPORT_OK);
    char **names;
    size_t n;
    sk__err err;
    assert_int_equal(sk__bundle_list(fx->outbox, &names, &n, &err), SK_OK);
    assert_int_equal(n, 1);
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", fx->outbox, names[0]);
    sk__bundle_info info;
    if (sk__bundle_read(path, NULL, NULL, &info, &err) != SK_OK)
        fail_msg("%s", err.msg);
    assert_string_equal(info.node_id, "node \"q\" \\ \t");
    sk__bundle_list_free(names, n);
    batch_free(t);
}

static double elapsed_ms(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

/* The plugin's share of a `sync now` drain: 100 x 1000-event batches with the
 * defaults (gzip 6, fsync on). Prints events/s; asserts every one landed. */
static void test_throughput_of_1000_event_batches(void **state)
{
    fixture *fx = *state;
    /* SK_FILE_DROP_BENCH_OPTIONS: other plugin options to measure, e.g. threads. */
    const char *opts = getenv("SK_FILE_DROP_BENCH_OPTIONS");
    open_plugin(fx, opts ? opts : NULL);
    enum { BATCHES = 100, PER = 1000 };
    tbatch *t[BATCHES];
    size_t raw = 0;
    for (int i = 0; i < BATCHES; i++) {
        t[i] = batch_new((long)i * PER, PER);
        for (int k = 0; k < PER; k++)
            raw += t[i]->ev[k].json_len + 1;
    }
    struct timespec a, b, ca, cb;
    clock_gettime(CLOCK_MONOTONIC, &a);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ca);
    for (int i = 0; i < BATCHES; i++)
        assert_int_equal(send_batch(fx, t[i]), SK_TRANSPORT_OK);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cb);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ms = elapsed_ms(&a, &b), cpu_ms = elapsed_ms(&ca, &cb);
    long long bytes = sk_fakehost_metric(fx->fh, "bytes_sent");
    printf("# file-drop send: %d events in %.1f ms wall = %.0f events/s; %.1f ms CPU (all threads)"
           " = %.1f us/event (1000-event batches, options %s; %.0f B/envelope, gzip ratio %.1fx)\n",
           BATCHES * PER, ms, BATCHES * PER / (ms / 1e3), cpu_ms, cpu_ms * 1e3 / (BATCHES * PER),
           opts ? opts : "default: gzip 6, fsync on", (double)raw / (BATCHES * PER),
           (double)raw / (double)bytes);
    for (int i = 0; i < BATCHES; i++) {
        assert_all(t[i], SK_OUTCOME_DELIVERED);
        batch_free(t[i]);
    }
    collect c = {0};
    assert_int_equal(read_outbox(fx->outbox, &c), BATCHES);
    assert_int_equal(c.n, BATCHES * PER);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_descriptor_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_becomes_bundle_that_verifies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_sort_in_delivery_order_across_instances, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ids_continue_after_newest_existing_bundle, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_outbox_under_a_regular_file_keeps_events, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_outbox_with_missing_parent_keeps_events, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_outbox_that_is_a_file_keeps_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_error_mid_bundle_leaves_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cancel_before_send_writes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_passed_deadline_writes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_passing_mid_batch_writes_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cancel_from_another_thread_stops_a_send, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_envelope_with_line_break_is_parked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_writers_temp_folders_removed_live_ones_kept,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_9_leaves_whole_bundles_or_temp_entries, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_relative_outbox_lives_under_state_root, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_gzip_level_is_refused_at_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlong_node_id_is_refused_at_create, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_manifest_strings_are_escaped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_throughput_of_1000_event_batches, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
