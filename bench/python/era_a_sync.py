#!/usr/bin/env python3
"""A model of spec-kitty's era-A Python client draining its offline queue (`sync now`).

    era_a_sync.py QUEUE_DB SERVER_URL TOKEN

Drains the whole `queue` table of QUEUE_DB (spec-kitty's schema, CONTRACT.md section 2) to
SERVER_URL's batch endpoint, then prints the events sent and the seconds taken. Exit status 0
when the queue is empty at the end, 1 otherwise. Used by bench/cli/run.sh (issue 16: the C
engine's `sync now` against Python's era-A client, same receiver, same run).

What it models, and where from. Written for this repository from a reading of spec-kitty's
public source (github.com/Priivacy-ai/spec-kitty), not copied from it:
  - src/specify_cli/sync/batch.py and src/specify_cli/sync/queue.py at commit
    61ff8822a206c2cc187fcc45dae1362dc86fd1ad (2026-02-03): batch.py as first written in
    ed732f7794e1f8ca6281d547e95bcb66bc36688f, queue.py with the `timestamp, id` drain order.
    Both files are unchanged up to dcb97eae93b9e20658b4eecebf1f1f03be3602c5 (2026-02-04), where
    `spec-kitty sync now` drains through sync_all_queued_events(batch_size=1000,
    show_progress=False) in sync/background.py. The next change to batch.py (0cf3f906f,
    2026-02-12) adds error categorisation and reports; era A is the version before it.

The behaviour kept, step for step:
  - while `SELECT COUNT(*) FROM queue` is above zero, one batch:
  - read: `SELECT event_id, data FROM queue ORDER BY timestamp ASC, id ASC LIMIT 1000`, each
    `data` parsed with json.loads (parked or retried rows are not skipped: there is no parking);
  - body: json.dumps({"events": [...]}) with the default separators, UTF-8, then
    gzip.compress at its default level (9);
  - one requests.post per batch (no Session: a new TCP connection each time), timeout 60 s,
    to SERVER_URL + "/api/v1/events/batch/" with Authorization: Bearer, Content-Encoding: gzip
    and Content-Type: application/json (no X-Spec-Kitty-Sync-Protocol header in that era);
  - 200: each entry of "results": status "success" or "duplicate" is delivered, any other
    status an error; events missing from the results are left alone. The delivered rows are
    deleted in one `DELETE ... WHERE event_id IN (...)` and committed; the errors get
    `retry_count = retry_count + 1` in one UPDATE, committed;
  - any other HTTP status, a timeout, a connection error or a bad answer: every event of the
    batch gets retry_count + 1;
  - the drain stops when a batch delivered nothing but had errors;
  - every queue operation opens its own sqlite3 connection and closes it, as OfflineQueue does.

Differences from the upstream client:
  - only the drain: no typer/rich CLI, no background service object and its lock, no
    credentials file or token refresh (TOKEN is given), no progress output (`sync now` passed
    show_progress=False). So the model starts faster than the real CLI would: it imports
    sqlite3, json, gzip and requests only.
  - it keeps counts, not the lists of event ids and error messages that BatchSyncResult keeps
    (the ids of one batch are still collected for its DELETE/UPDATE).
  - a non-JSON answer to a 200 or 400 counts as a failed batch here; upstream reaches the same
    retry_count + 1 through its catch-all `except Exception`.
"""

import gzip
import json
import sqlite3
import sys
import time

import requests

BATCH_SIZE = 1000
TIMEOUT_S = 60
DELIVERED = ("success", "duplicate")


class Queue:
    """spec-kitty's queue table, one short-lived connection per operation."""

    def __init__(self, path):
        self.path = path

    def _run(self, sql, args=(), write=False):
        conn = sqlite3.connect(self.path)
        try:
            cur = conn.execute(sql, args)
            if write:
                conn.commit()
                return None
            return cur.fetchall()
        finally:
            conn.close()

    def count(self):
        return self._run("SELECT COUNT(*) FROM queue")[0][0]

    def oldest(self, limit):
        rows = self._run(
            "SELECT event_id, data FROM queue ORDER BY timestamp ASC, id ASC LIMIT ?", (limit,)
        )
        return [json.loads(data) for _event_id, data in rows]

    def _by_ids(self, sql_head, ids):
        if ids:
            marks = ",".join(["?"] * len(ids))
            self._run(f"{sql_head} WHERE event_id IN ({marks})", ids, write=True)

    def delete(self, ids):
        self._by_ids("DELETE FROM queue", ids)

    def bump_retry(self, ids):
        self._by_ids("UPDATE queue SET retry_count = retry_count + 1", ids)


def send_batch(queue, url, token, events):
    """One batch: returns (delivered, duplicates, errors)."""
    body = gzip.compress(json.dumps({"events": events}).encode("utf-8"))
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Encoding": "gzip",
        "Content-Type": "application/json",
    }
    ids = [e.get("event_id") for e in events]
    try:
        answer = requests.post(url, data=body, headers=headers, timeout=TIMEOUT_S)
        if answer.status_code != 200:
            raise RuntimeError(f"HTTP {answer.status_code}")
        results = answer.json().get("results", [])
    except Exception:  # noqa: BLE001 - the era-A client treats every failure alike
        queue.bump_retry(ids)
        return 0, 0, len(ids)
    done, failed, dups = [], [], 0
    for entry in results:
        status = entry.get("status")
        if status in DELIVERED:
            done.append(entry.get("event_id"))
            dups += status == "duplicate"
        else:
            failed.append(entry.get("event_id"))
    queue.delete(done)
    queue.bump_retry(failed)
    return len(done) - dups, dups, len(failed)


def main(argv):
    if len(argv) != 4:
        print("usage: era_a_sync.py QUEUE_DB SERVER_URL TOKEN", file=sys.stderr)
        return 2
    queue = Queue(argv[1])
    url = argv[2].rstrip("/") + "/api/v1/events/batch/"
    token = argv[3]
    synced = dups = errors = batches = 0
    t0 = time.perf_counter()
    while queue.count() > 0:
        events = queue.oldest(BATCH_SIZE)
        s, d, e = send_batch(queue, url, token, events)
        batches += 1
        synced, dups, errors = synced + s, dups + d, errors + e
        if s + d == 0 and e > 0:
            break
    seconds = time.perf_counter() - t0
    left = queue.count()
    sent = synced + dups
    rate = sent / seconds if seconds > 0 else 0.0
    print(
        f"era-A model: {sent} events sent in {seconds:.3f} s = {rate:.0f} events/s "
        f"({batches} batches; {synced} synced, {dups} duplicates, {errors} errors, {left} left)"
    )
    return 0 if left == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
