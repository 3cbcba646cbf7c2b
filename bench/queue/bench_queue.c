/*
 * Queue benchmark: single-event and batched enqueue, stats with a full
 * queue, a lease+settle drain in batches of 1000, and the refusal path at
 * capacity. Prints one line per figure. Usage: bench_queue [folder]
 * (default: a fresh folder under $TMPDIR or /tmp, removed afterwards).
 */
#include "queue.h"
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BATCH 1000
#define FILL 100000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds of this process: on a shared machine, wall time also counts
   waiting for a core, CPU time does not. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, sk_status s, const sk__err *err)
{
    fprintf(stderr, "bench_queue: %s: %s (%s)\n", what, sk_strerror(s), err->msg);
    exit(1);
}

/* Event number i as a queue item (e keeps its strings). */
static void event_make(bench_envelope *e, sk__queue_item *it, long i)
{
    bench_envelope_make(e, i);
    it->event_id = e->id;
    it->event_type = "WPStatusChanged";
    it->data = e->data;
    it->timestamp = e->timestamp;
}

static sk__queue *open_queue(const char *path, sk__durability d, int64_t max)
{
    sk__queue_opts o = {.max_events = max, .durability = d};
    sk__queue *q = NULL;
    sk__err err = {{0}};
    sk_status s = sk__queue_open(path, &o, &q, &err);
    if (s != SK_OK)
        die("open", s, &err);
    return q;
}

/* Fills q with events [first, first + count) in transactions of BATCH. */
static double fill(sk__queue *q, long first, long count)
{
    static bench_envelope ev[BATCH];
    static sk__queue_item it[BATCH];
    sk__err err = {{0}};
    double t0 = now_s();
    for (long done = 0; done < count; done += BATCH) {
        long n = count - done < BATCH ? count - done : BATCH;
        for (long i = 0; i < n; i++)
            event_make(&ev[i], &it[i], first + done + i);
        sk_status s = sk__queue_enqueue(q, it, (size_t)n, &err);
        if (s != SK_OK)
            die("enqueue batch", s, &err);
    }
    return now_s() - t0;
}

static void bench_single(const char *path, sk__durability d, const char *name, long count)
{
    sk__queue *q = open_queue(path, d, 1000000);
    sk__queue_stats before;
    sk__err serr = {{0}};
    if (sk__queue_stats_get(q, &before, &serr) != SK_OK)
        die("stats", SK_ERR_DB, &serr);
    bench_envelope ev;
    sk__queue_item it;
    sk__err err = {{0}};
    double t0 = now_s();
    for (long i = 0; i < count; i++) {
        event_make(&ev, &it, 10000000 + i);
        sk_status s = sk__queue_enqueue(q, &it, 1, &err);
        if (s != SK_OK)
            die("enqueue single", s, &err);
    }
    double dt = now_s() - t0;
    printf("enqueue single, durability=%s, 1 event/tx, %lld already queued: %ld events in "
           "%.3f s = %.0f events/s\n",
           name, (long long)before.ready, count, dt, (double)count / dt);
    sk__queue_close(q);
}

/* What one `spec-kitty` command pays to emit: open, enqueue one, close. */
static void bench_open_enqueue_close(const char *path, long count)
{
    bench_envelope ev;
    sk__queue_item it;
    sk__err err = {{0}};
    double t0 = now_s();
    for (long i = 0; i < count; i++) {
        sk__queue *q = open_queue(path, SK__DURABILITY_FULL, 1000000);
        event_make(&ev, &it, 30000000 + i);
        sk_status s = sk__queue_enqueue(q, &it, 1, &err);
        if (s != SK_OK)
            die("enqueue", s, &err);
        sk__queue_close(q);
    }
    double dt = now_s() - t0;
    printf("open+enqueue(1)+close, durability=full: %.2f ms per event\n", dt / (double)count * 1e3);
}

static void bench_stats(const char *path)
{
    sk__queue *q = open_queue(path, SK__DURABILITY_FULL, 0);
    sk__queue_stats st;
    sk__err err = {{0}};
    const int rounds = 1000;
    double t0 = now_s();
    for (int i = 0; i < rounds; i++) {
        sk_status s = sk__queue_stats_get(q, &st, &err);
        if (s != SK_OK)
            die("stats", s, &err);
    }
    double dt = now_s() - t0;
    sk__queue_close(q);
    /* What `sync status` pays: open (no migration needed), stats, close. */
    double c0 = now_s();
    q = open_queue(path, SK__DURABILITY_FULL, 0);
    sk_status s = sk__queue_stats_get(q, &st, &err);
    sk__queue_close(q);
    double cold = now_s() - c0;
    if (s != SK_OK)
        die("stats", s, &err);
    printf("stats_get with %lld ready: %.1f us per call; open+stats+close %.2f ms\n",
           (long long)st.ready, dt / rounds * 1e6, cold * 1e3);
}

static void bench_full_refusal(const char *path)
{
    sk__queue *q = open_queue(path, SK__DURABILITY_FULL, FILL);
    bench_envelope ev;
    sk__queue_item it;
    sk__err err = {{0}};
    const int rounds = 200;
    double t0 = now_s();
    for (int i = 0; i < rounds; i++) {
        event_make(&ev, &it, 20000000 + i);
        if (sk__queue_enqueue(q, &it, 1, &err) != SK_ERR_QUEUE_FULL)
            die("expected queue full", SK_ERR_INTERNAL, &err);
    }
    double dt = now_s() - t0;
    printf("enqueue refused at capacity (%d rows): %.1f us per call\n", FILL, dt / rounds * 1e6);
    sk__queue_close(q);
}

static double lease_time, settle_time;

/* One read+settle(DELETE) round, as a drain under the drain lock does; returns rows drained. */
static size_t drain_batch(sk__queue *q, sk__lease *lease, sk__settlement *set)
{
    sk__err err = {{0}};
    double t0 = now_s();
    sk_status s = sk__queue_peek(q, INT64_MIN, INT64_MIN, BATCH, 0, lease, &err);
    double t1 = now_s();
    lease_time += t1 - t0;
    if (s != SK_OK)
        die("read", s, &err);
    for (size_t i = 0; i < lease->count; i++)
        set[i] = (sk__settlement){.id = lease->rows[i].id, .action = SK__SETTLE_DELETE};
    s = sk__queue_settle(q, set, lease->count, 5, NULL, &err);
    if (s != SK_OK)
        die("settle", s, &err);
    settle_time += now_s() - t1;
    return lease->count;
}

static void bench_drain(const char *path, sk__durability d, const char *name)
{
    sk__queue *q = open_queue(path, d, 0);
    static sk__settlement set[BATCH];
    sk__lease lease = {0};
    size_t total = 0, n, batches = 0;
    lease_time = settle_time = 0;
    double t0 = now_s(), c0 = cpu_s();
    while ((n = drain_batch(q, &lease, set)) > 0) {
        total += n;
        batches++;
    }
    double dt = now_s() - t0, cpu = cpu_s() - c0;
    sk__lease_free_rows(&lease);
    printf("drain read+settle, durability=%s, batches of %d: %zu events in %.3f s = %.0f "
           "events/s, %.2f ms per batch (read %.2f ms, settle %.2f ms; CPU %.2f ms)\n",
           name, BATCH, total, dt, (double)total / dt, dt / (double)batches * 1e3,
           lease_time / (double)batches * 1e3, settle_time / (double)batches * 1e3,
           cpu / (double)batches * 1e3);
    sk__queue_close(q);
}

int main(int argc, char **argv)
{
    char dir[4096], path[4200];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/sk-bench-queue-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (argc > 1)
        snprintf(dir, sizeof dir, "%s", argv[1]);
    else if (!mkdtemp(dir))
        return perror("mkdtemp"), 1;
    snprintf(path, sizeof path, "%s/queue.db", dir);

    bench_remove_db(path);
    bench_single(path, SK__DURABILITY_FULL, "full", 5000);
    bench_single(path, SK__DURABILITY_NORMAL, "normal", 5000);
    bench_open_enqueue_close(path, 200);
    bench_remove_db(path);

    sk__queue *q = open_queue(path, SK__DURABILITY_FULL, 1000000);
    double c0 = cpu_s();
    double dt = fill(q, 0, FILL);
    double cpu = cpu_s() - c0;
    printf("enqueue batched, durability=full, %d events/tx: %d events in %.3f s = %.0f "
           "events/s (CPU %.3f s = %.0f events/CPU-s)\n",
           BATCH, FILL, dt, FILL / dt, cpu, FILL / cpu);
    sk__queue_close(q);

    bench_stats(path);
    bench_full_refusal(path);
    bench_single(path, SK__DURABILITY_FULL, "full", 2000);
    bench_drain(path, SK__DURABILITY_FULL, "full");

    q = open_queue(path, SK__DURABILITY_NORMAL, 1000000);
    fill(q, FILL, FILL);
    sk__queue_close(q);
    bench_drain(path, SK__DURABILITY_NORMAL, "normal");

    bench_remove_db(path);
    if (argc <= 1)
        rmdir(dir);
    return 0;
}
