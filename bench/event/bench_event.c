/*
 * Micro-benchmark of host/event.c: how much of the emit latency budget
 * (one whole CLI process <= 5 ms) the envelope work takes.
 * Usage: bench_event [events] [ticks] [state_root]
 */
#include "event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Prints median, p99 and max of n samples in microseconds (sorts them). */
static void report(const char *what, int64_t *ns, size_t n)
{
    qsort(ns, n, sizeof ns[0], cmp_i64);
    printf("%-34s n=%-7zu median %8.2f us  p99 %8.2f us  max %8.2f us\n", what, n, ns[n / 2] / 1e3,
           ns[n * 99 / 100] / 1e3, ns[n - 1] / 1e3);
}

/* One WPStatusChanged envelope: build (ULID, validate) and serialise. */
static int build_one(int64_t lamport, const char *node_id)
{
    json_t *payload = json_pack("{s:s,s:s,s:s,s:s}", "wp_id", "WP01", "previous_status", "planned",
                                "new_status", "doing", "changed_by", "bench");
    sk__event_fields f = {
        .event_type = "WPStatusChanged", .aggregate_id = "WP01", .payload = payload};
    json_t *env = NULL;
    sk__err err;
    sk_status s = sk__event_build(&f, lamport, node_id, "local", &env, &err);
    char *text = s == SK_OK ? json_dumps(env, JSON_COMPACT) : NULL;
    free(text);
    json_decref(env);
    json_decref(payload);
    return s == SK_OK && text ? 0 : -1;
}

static int bench_ids_and_builds(size_t events, const char *node_id)
{
    int64_t *ns = malloc(events * sizeof *ns);
    if (!ns)
        return 1;
    for (size_t i = 0; i < events; i++) {
        char id[27];
        int64_t t0 = now_ns();
        if (sk__ulid_new(id, NULL) != SK_OK)
            return 1;
        ns[i] = now_ns() - t0;
    }
    report("ulid_new", ns, events);
    for (size_t i = 0; i < events; i++) {
        int64_t t0 = now_ns();
        if (build_one((int64_t)i + 1, node_id) != 0)
            return 1;
        ns[i] = now_ns() - t0;
    }
    report("event_build+validate+dump", ns, events);
    free(ns);
    return 0;
}

static int bench_ticks(size_t ticks, const char *root, const char *node_id, int sync_data)
{
    int64_t *ns = malloc(ticks * sizeof *ns);
    if (!ns)
        return 1;
    for (size_t i = 0; i < ticks; i++) {
        int64_t first;
        sk__err err;
        int64_t t0 = now_ns();
        if (sk__clock_tick(root, node_id, 1, sync_data, &first, &err) != SK_OK) {
            fprintf(stderr, "clock: %s\n", err.msg);
            return 1;
        }
        ns[i] = now_ns() - t0;
    }
    report(sync_data ? "clock_tick (sync_data=1)" : "clock_tick (sync_data=0)", ns, ticks);
    free(ns);
    return 0;
}

int main(int argc, char **argv)
{
    size_t events = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
    size_t ticks = argc > 2 ? strtoul(argv[2], NULL, 10) : 2000;
    char tmpl[] = "/tmp/sk-bench-event-XXXXXX";
    const char *root = argc > 3 ? argv[3] : mkdtemp(tmpl);
    char node_id[13];
    if (!root || events == 0 || ticks == 0 || sk__node_id(node_id, NULL) != SK_OK)
        return 2;
    printf("state root %s\n", root);
    int rc = bench_ids_and_builds(events, node_id) || bench_ticks(ticks, root, node_id, 0) ||
             bench_ticks(ticks / 10 ? ticks / 10 : 1, root, node_id, 1);
    if (argc <= 3) {
        char path[4200];
        snprintf(path, sizeof path, "%s/clock.json", root);
        unlink(path);
        snprintf(path, sizeof path, "%s/clock.lock", root);
        unlink(path);
        rmdir(root);
    }
    return rc;
}
