"""The background-task queue (cim/tasks.py, migration 0060) on the real database, with real
worker threads and a real process killed with SIGKILL while it runs a task."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psycopg2
import pytest

from cim import tasks
from cim.errors import InvalidInput


@pytest.fixture
def queue(make_database):
    """A fresh migrated database per test: the queue starts empty."""
    return make_database("cim_tasks")


def _enqueue(url, kind, args=None, **kw):
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            return tasks.enqueue(cur, kind, args, **kw)
    finally:
        conn.close()


def _task(url, task_id):
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            return tasks.get(cur, task_id)
    finally:
        conn.close()


def test_claims_skip_locked_and_dedupe(queue):
    a = _enqueue(queue, "demo.a", {"n": 1}, dedupe_key="k:1")
    assert _enqueue(queue, "demo.a", {"n": 2}, dedupe_key="k:1") == a       # still queued: the same task
    b = _enqueue(queue, "demo.a", {"n": 3})
    c1, c2 = psycopg2.connect(queue), psycopg2.connect(queue)
    try:
        first = tasks.claim(c1, ["demo.a"], "w1")
        second = tasks.claim(c2, ["demo.a"], "w2")
        assert {first.id, second.id} == {a, b} and tasks.claim(c1, ["demo.a"], "w1") is None
        assert tasks.claim(c1, ["other.kind"], "w1") is None
        # asked for again while it runs: one more run afterwards
        again = _enqueue(queue, "demo.a", {"n": 4}, dedupe_key="k:1")
        assert again not in (a, b)
        assert tasks.finish(c1, first, {"ok": True})
        row = _task(queue, first.id)
        assert row["state"] == "done" and row["result"] == {"ok": True} and row["worker"] == "w1"
    finally:
        c1.close()
        c2.close()


def test_a_reaped_claim_does_not_take_a_late_result(queue):
    """A worker that was only slow (its heartbeat late, its task reaped and claimed again by
    another) cannot finish or fail the task it lost; the new claim's result stands."""
    task_id = _enqueue(queue, "demo.slow", max_attempts=3)
    c1, c2 = psycopg2.connect(queue), psycopg2.connect(queue)
    try:
        slow = tasks.claim(c1, ["demo.slow"], "w1")
        with c1.cursor() as cur:
            cur.execute("UPDATE cim.task SET heartbeat_at = now() - interval '1 hour' WHERE id = %s", (task_id,))
        c1.commit()
        assert tasks.reap(c2, stale_after_s=60) == [task_id]
        again = tasks.claim(c2, ["demo.slow"], "w2")
        assert again is not None and again.id == task_id and again.attempts == 2
        assert tasks.fail(c1, slow, "late failure", retry=False) is None
        assert not tasks.finish(c1, slow, {"late": True})
        assert _task(queue, task_id)["state"] == "running"
        assert tasks.finish(c2, again, {"ok": True})
        row = _task(queue, task_id)
        assert row["state"] == "done" and row["result"] == {"ok": True} and row["worker"] == "w2"
    finally:
        c1.close()
        c2.close()


def test_a_late_heartbeat_of_a_live_worker_is_not_reaped(queue):
    """A worker whose heartbeat is late while its dispatcher connection is open (a saturated
    machine) keeps its task; once that connection closes (the process died), the task is reaped;
    a connection left open by a vanished host delays that only up to ten times the limit."""
    task_id = _enqueue(queue, "demo.late")
    live = psycopg2.connect(queue, application_name=tasks.dispatcher_name("host-a:42"))
    other = psycopg2.connect(queue)
    try:
        assert tasks.claim(live, ["demo.late"], "host-a:42").id == task_id
        with other.cursor() as cur:
            cur.execute("UPDATE cim.task SET heartbeat_at = now() - interval '30 seconds' WHERE id = %s", (task_id,))
        other.commit()
        assert tasks.reap(other, stale_after_s=5) == []
        assert _task(queue, task_id)["state"] == "running"
        assert tasks.reap(other, stale_after_s=2) == [task_id]        # 30 s > 10 × 2 s: reaped all the same
        assert tasks.claim(live, ["demo.late"], "host-a:42").id == task_id
        with other.cursor() as cur:
            cur.execute("UPDATE cim.task SET heartbeat_at = now() - interval '30 seconds' WHERE id = %s", (task_id,))
        other.commit()
        live.close()
        deadline = time.monotonic() + 10          # the backend of the closed connection ends
        while tasks.reap(other, stale_after_s=5) != [task_id]:
            assert time.monotonic() < deadline, "a task of a closed worker connection was never reaped"
            time.sleep(0.1)
        assert _task(queue, task_id)["state"] == "queued"
    finally:
        live.close()
        other.close()


def test_worker_runs_handlers_and_records_failures(queue):
    seen = []

    def ok(ctx):
        ctx.progress(50, "half way")
        seen.append(ctx.args["x"])
        return {"double": ctx.args["x"] * 2}

    def bad_input(ctx):
        raise InvalidInput("参数不对", "bad argument")

    def crash(ctx):
        raise RuntimeError("boom")

    worker = tasks.Worker(queue, {"t.ok": ok, "t.bad": bad_input, "t.crash": crash}, threads=2, poll_s=0.2)
    worker.start()
    try:
        ids = [_enqueue(queue, "t.ok", {"x": 21}), _enqueue(queue, "t.bad"),
               _enqueue(queue, "t.crash", max_attempts=2)]
        done = [tasks.wait(queue, i, timeout_s=60) for i in ids]
    finally:
        worker.stop()
    assert done[0]["state"] == "done" and done[0]["result"] == {"double": 42} and done[0]["progress"] == 100
    assert done[0]["message"] == "half way" and seen == [21]
    assert done[1]["state"] == "failed" and done[1]["attempts"] == 1 and "bad argument" in done[1]["error"]
    assert done[2]["state"] == "failed" and done[2]["attempts"] == 2 and "boom" in done[2]["error"]


def test_a_task_survives_the_death_of_its_process(queue, tmp_path):
    """A worker process killed with SIGKILL mid-task: its heartbeat stops, the task is queued
    again and another worker finishes it."""
    task_id = _enqueue(queue, "t.slow", {"x": 1})
    started = tmp_path / "started"
    code = textwrap.dedent(f"""
        import time, pathlib
        from cim import tasks
        def slow(ctx):
            pathlib.Path({str(started)!r}).write_text("1")
            time.sleep(600)
        w = tasks.Worker({queue!r}, {{"t.slow": slow}}, poll_s=0.1)
        w.start()
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert started.exists()
        assert _task(queue, task_id)["state"] == "running"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(1.5)
    conn = psycopg2.connect(queue)
    try:
        assert tasks.reap(conn, stale_after_s=1.0) == [task_id]
    finally:
        conn.close()
    row = _task(queue, task_id)
    assert row["state"] == "queued" and "stopped responding" in row["error"]
    worker = tasks.Worker(queue, {"t.slow": lambda ctx: {"finished": True}}, poll_s=0.1)
    worker.start()
    try:
        row = tasks.wait(queue, task_id, timeout_s=30)
    finally:
        worker.stop()
    assert row["state"] == "done" and row["attempts"] == 2 and row["result"] == {"finished": True}


def test_a_current_delivery_queues_one_county_change(queue):
    conn = psycopg2.connect(queue)
    try:
        with conn, conn.cursor() as cur:
            ids = []
            for _ in range(2):
                cur.execute("INSERT INTO cim.delivery (county_code, file_name, sha256, state, submitted_by) "
                            "VALUES ('430703', 'a.zip', repeat('a', 64), 'loading', 'test') RETURNING id")
                ids.append(cur.fetchone()[0])
            cur.execute("UPDATE cim.delivery SET state = 'current' WHERE id = ANY(%s)", (ids,))
            cur.execute("UPDATE cim.delivery SET state = 'current' WHERE id = %s", (ids[0],))  # no change: nothing
            cur.execute("SELECT kind, dedupe_key, args->>'county', state FROM cim.task")
            rows = cur.fetchall()
        assert rows == [("county.changed", "county.changed:430703", "430703", "queued")]
        with conn, conn.cursor() as cur:        # a rolled-back load queues nothing
            cur.execute("INSERT INTO cim.delivery (county_code, file_name, sha256, state, submitted_by) "
                        "VALUES ('430521', 'b.zip', repeat('b', 64), 'current', 'test')")
            conn.rollback()
            cur.execute("SELECT count(*) FROM cim.task WHERE args->>'county' = '430521'")
            assert cur.fetchone()[0] == 0
    finally:
        conn.close()
