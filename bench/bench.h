/*
 * Shared by the benchmark programs: the envelope they store (a realistic
 * WPStatusChanged, ~450 bytes, numbered so that every event_id is distinct),
 * so that bench_queue, bench_floor and bench_gzip work on the same rows, and
 * the removal of a queue file with its WAL.
 */
#ifndef SK_BENCH_H
#define SK_BENCH_H

#include <stdio.h>
#include <unistd.h>

typedef struct bench_envelope {
    char id[32];
    char data[640];
    long long timestamp; /* unix seconds: 1000 events per second */
} bench_envelope;

static inline void bench_envelope_make(bench_envelope *e, long i)
{
    snprintf(e->id, sizeof e->id, "01JBENCH%018ld", i);
    snprintf(e->data, sizeof e->data,
             "{\"event_id\":\"%.31s\",\"event_type\":\"WPStatusChanged\",\"aggregate_id\":\"WP%02ld\","
             "\"aggregate_type\":\"WorkPackage\",\"payload\":{\"wp_id\":\"WP%02ld\","
             "\"previous_status\":\"doing\",\"new_status\":\"for_review\",\"changed_by\":"
             "\"agent-claude\",\"feature_slug\":\"042-durable-queue-benchmark\"},\"node_id\":"
             "\"a1b2c3d4e5f6\",\"lamport_clock\":%ld,\"causation_id\":null,\"timestamp\":"
             "\"2026-11-26T10:00:00.000Z\",\"team_slug\":\"local\",\"schema_version\":\"3.0.0\"}",
             e->id, i % 100, i % 100, i + 1);
    e->timestamp = 1795000000 + i / 1000;
}

/* Removes the SQLite file at path and its -wal and -shm files. */
static inline void bench_remove_db(const char *path)
{
    char p[4200];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

#endif
