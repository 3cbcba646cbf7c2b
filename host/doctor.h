/*
 * `sync doctor`: checks a damaged queue.db and salvages what can be read.
 *
 * The check runs SQLite's integrity check, then reads every row it can: the
 * table is walked by rowid, and a read that fails (a damaged page) is skipped
 * by seeking past the damaged range, so one bad page does not end the walk.
 * The indexes name rows the walk could not reach: each is looked up on its
 * own, and those that still cannot be read are counted as lost (with their
 * event_id when the event_id index knows it).
 *
 * The repair copies every readable row into a fresh file with the normal
 * schema and puts it in place of queue.db; the damaged file (and its WAL) is
 * kept beside it as queue.db.damaged-<UTC time>, never deleted. It refuses
 * while the service runs, a drain holds the drain lock, or another process
 * has queue.db open; a process that opened the old file meanwhile finds it
 * moved at its next write (see queue.c) instead of writing into it.
 */
#ifndef SK_HOST_DOCTOR_H
#define SK_HOST_DOCTOR_H

#include "common.h"
#include "queue.h"

#include <limits.h>

/* The public report (sync.h); its lost ids have room for any queued id. */
typedef sk_doctor_report sk__doctor_report;
_Static_assert(sizeof *((sk__doctor_report *)0)->lost_ids == SK__QUEUE_ID_CAP,
               "a lost id holds any queued id");

/*
 * Checks <root>/queue.db without writing to it. SK_OK with report->damaged
 * set or not; an error only when the check itself could not run (no queue).
 */
sk_status sk__doctor_check(const char *root, sk__doctor_report *report, sk__err *err);

/*
 * Checks, and when damaged, copies every readable row into a fresh queue.db
 * (see the top of this file). A healthy queue is left as it is. SK_ERR_BUSY
 * when the service, a drain or another process holds the queue; nothing is
 * changed on any error.
 */
sk_status sk__doctor_repair(const char *root, sk__doctor_report *report, sk__err *err);

void sk__doctor_report_free(sk__doctor_report *report);

#endif
