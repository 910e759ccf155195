"""Background tasks: a queue in the database, claimed by worker threads of any server process.

Why in the database: several server processes (``cim serve --workers N``) and several hosts
share one database; a task claimed with ``FOR UPDATE SKIP LOCKED`` runs in exactly one of them,
survives the death of the process that took it (its heartbeat stops, :func:`reap` queues it
again or fails it with the reason) and is visible to every process (``GET`` of its state).
Table ``cim.task`` (migration 0060).

A task has a ``kind`` (``hazards.scan``, ``healthcheck.run``, ``county.changed`` …) and JSON
``args``. Handlers are registered by the composition root (the API) per kind: this module knows
none of them. A handler is a plain function ``handler(ctx) -> result`` run in a worker thread;
``ctx`` gives its args, a progress reporter and a cancellation check. Its result (a JSON-able
dict) is stored; a :class:`cim.errors.CimError` it raises fails the task with the bilingual
message (no retry: the input is wrong); any other exception is retried up to ``max_attempts``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extensions

from cim.errors import CimError, NotFound

log = logging.getLogger(__name__)

CHANNEL = "cim_task"
STALE_AFTER_S = 60.0       # a running task without a heartbeat for this long lost its worker
HEARTBEAT_S = 5.0
LIVE_FACTOR = 10           # a task of a worker whose connection is still open is reaped only this much later
_COLUMNS = ("id, kind, dedupe_key, args, state, priority, attempts, max_attempts, run_after, progress, message, "
            "result, error, worker, created_by, created_at, started_at, heartbeat_at, finished_at")


def worker_name() -> str:
    """``host:pid`` of this process (recorded on the tasks it runs)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def enqueue(cur: psycopg2.extensions.cursor, kind: str, args: dict[str, Any] | None = None, *,
            dedupe_key: str | None = None, created_by: str = "system", priority: int = 0,
            max_attempts: int = 3, delay_s: float = 0.0) -> int:
    """Queue a task in the caller's transaction; returns its id.

    With ``dedupe_key``, a task of that key already queued (not yet started) is returned instead
    of a new one.
    """
    cur.execute(
        "INSERT INTO cim.task (kind, dedupe_key, args, created_by, priority, max_attempts, run_after) "
        "VALUES (%s, %s, %s::jsonb, %s, %s, %s, now() + make_interval(secs => %s)) "
        "ON CONFLICT (dedupe_key) WHERE state = 'queued' DO NOTHING RETURNING id",
        (kind, dedupe_key, json.dumps(args or {}, ensure_ascii=False, default=str), created_by, priority,
         max_attempts, float(delay_s)))
    row = cur.fetchone()
    if row is not None:
        return int(row[0])
    cur.execute("SELECT id FROM cim.task WHERE dedupe_key = %s AND state = 'queued'", (dedupe_key,))
    found = cur.fetchone()
    if found is None:   # it started between the two statements: queue a fresh one
        return enqueue(cur, kind, args, dedupe_key=dedupe_key, created_by=created_by, priority=priority,
                       max_attempts=max_attempts, delay_s=delay_s)
    return int(found[0])


def get(cur: psycopg2.extensions.cursor, task_id: int) -> dict[str, Any]:
    """One task as a dict, or :class:`NotFound`."""
    cur.execute(f"SELECT {_COLUMNS} FROM cim.task WHERE id = %s", (task_id,))
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"没有后台任务 {task_id}", f"no background task {task_id}")
    return dict(zip([c.strip() for c in _COLUMNS.split(",")], row, strict=True))


def list_tasks(cur: psycopg2.extensions.cursor, *, kind: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Newest tasks first (optionally of one kind)."""
    cur.execute(f"SELECT {_COLUMNS} FROM cim.task WHERE %(kind)s::text IS NULL OR kind = %(kind)s "
                "ORDER BY id DESC LIMIT %(limit)s", {"kind": kind, "limit": limit})
    names = [c.strip() for c in _COLUMNS.split(",")]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def cancel(cur: psycopg2.extensions.cursor, task_id: int) -> str:
    """Cancel a queued task, or ask a running one to stop (its handler checks); returns the state."""
    cur.execute("UPDATE cim.task SET state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END, "
                "finished_at = CASE WHEN state = 'queued' THEN now() ELSE finished_at END, "
                "message = CASE WHEN state = 'running' THEN 'cancel requested' ELSE message END "
                "WHERE id = %s RETURNING state", (task_id,))
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"没有后台任务 {task_id}", f"no background task {task_id}")
    return str(row[0])


@dataclass
class Task:
    """A claimed task."""

    id: int
    kind: str
    args: dict[str, Any]
    attempts: int
    max_attempts: int
    created_by: str
    worker: str = ""


def claim(conn: psycopg2.extensions.connection, kinds: Iterable[str], worker: str) -> Task | None:
    """Take the next queued task of these kinds (highest priority, oldest first), or None."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE cim.task t SET state = 'running', attempts = t.attempts + 1, started_at = now(), "
            "heartbeat_at = now(), worker = %s, error = NULL "
            "FROM (SELECT id FROM cim.task WHERE state = 'queued' AND kind = ANY(%s) AND run_after <= now() "
            "      ORDER BY priority DESC, id FOR UPDATE SKIP LOCKED LIMIT 1) n "
            "WHERE t.id = n.id RETURNING t.id, t.kind, t.args, t.attempts, t.max_attempts, t.created_by",
            (worker, list(kinds)))
        row = cur.fetchone()
    conn.commit()
    if row is None:
        return None
    return Task(int(row[0]), row[1], row[2] or {}, int(row[3]), int(row[4]), row[5], worker)


_OWNED = "id = %s AND state = 'running' AND worker = %s AND attempts = %s"
"""The claim a result belongs to: a task reaped from a worker that was only slow (and perhaps
claimed again elsewhere) no longer takes that worker's late result."""


def finish(conn: psycopg2.extensions.connection, task: Task, result: dict[str, Any] | None) -> bool:
    """Mark a claimed task done with its result; False when the claim was lost (reaped meanwhile)."""
    with conn.cursor() as cur:
        cur.execute(f"UPDATE cim.task SET state = 'done', progress = 100, result = %s::jsonb, finished_at = now(), "
                    f"heartbeat_at = now() WHERE {_OWNED}",
                    (json.dumps(result or {}, ensure_ascii=False, default=str), task.id, task.worker, task.attempts))
        owned = cur.rowcount == 1
    conn.commit()
    return owned


def fail(conn: psycopg2.extensions.connection, task: Task, error: str, *, retry: bool) -> str | None:
    """Fail a claimed task, or queue it again (with a growing delay) while attempts remain; returns
    the state, or None when the claim was lost (the task was reaped meanwhile)."""
    again = retry and task.attempts < task.max_attempts
    with conn.cursor() as cur:
        cur.execute(f"UPDATE cim.task SET state = %s, error = %s, "
                    f"finished_at = CASE WHEN %s THEN NULL ELSE now() END, "
                    f"run_after = now() + make_interval(secs => %s) WHERE {_OWNED} RETURNING state",
                    ("queued" if again else "failed", error[:2000], again, 2.0 ** task.attempts,
                     task.id, task.worker, task.attempts))
        row = cur.fetchone()
    conn.commit()
    return None if row is None else str(row[0])


_STALE = ("state = 'running' AND heartbeat_at < now() - make_interval(secs => %s) "
          "AND (heartbeat_at < now() - make_interval(secs => %s) OR NOT EXISTS ("
          "     SELECT 1 FROM pg_stat_activity a WHERE a.datname = current_database() "
          "     AND a.application_name = left('cim-task ' || cim.task.worker, 63)))")
"""A running task whose worker is gone: no heartbeat for ``stale_after_s`` and the worker's
dispatcher connection closed (a dead process's connection closes with it), or no heartbeat for
:data:`LIVE_FACTOR` times as long (a host that vanished may leave its connection open for a while)."""


def dispatcher_name(worker: str) -> str:
    """The ``application_name`` of a worker's dispatcher connection: its sign of life."""
    return f"cim-task {worker}"[:63]


def reap(conn: psycopg2.extensions.connection, stale_after_s: float = STALE_AFTER_S) -> list[int]:
    """Running tasks whose worker is gone (:data:`_STALE`): queued again while attempts remain, else failed.

    A worker that is alive but late with its heartbeat (a busy database, a saturated machine)
    keeps its tasks: its dispatcher connection is still open.

    Returns their ids. Any process may call this; it is idempotent.
    """
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE cim.task SET state = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END, "
            "finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE now() END, "
            "error = '工作进程 ' || coalesce(worker, '?') || ' 已停止响应 / worker ' || coalesce(worker, '?') "
            "        || ' stopped responding' "
            f"WHERE {_STALE} "
            "AND NOT EXISTS (SELECT 1 FROM cim.task q WHERE q.state = 'queued' AND q.dedupe_key = cim.task.dedupe_key) "
            "RETURNING id", (float(stale_after_s), float(stale_after_s) * LIVE_FACTOR))
        ids = [int(r[0]) for r in cur.fetchall()]
        # a stale task whose key is queued again already: the queued one will do the work
        cur.execute(
            "UPDATE cim.task SET state = 'failed', finished_at = now(), "
            "error = '工作进程已停止响应，同类任务已重新排队 / worker stopped; a newer task of the same key is queued' "
            f"WHERE {_STALE} RETURNING id", (float(stale_after_s), float(stale_after_s) * LIVE_FACTOR))
        ids += [int(r[0]) for r in cur.fetchall()]
    conn.commit()
    return ids


class TaskContext:
    """What a handler sees: the task, its args, progress reporting and cancellation."""

    def __init__(self, task: Task, url: str) -> None:
        self.task = task
        self.args = task.args
        self._url = url
        self._cancel = threading.Event()

    def progress(self, percent: int, message: str | None = None) -> None:
        """Report progress (0–100) and an optional message; also notices a cancel request."""
        conn = psycopg2.connect(self._url, application_name="cim-task")
        try:
            with conn, conn.cursor() as cur:
                cur.execute("UPDATE cim.task SET progress = greatest(progress, %s), message = coalesce(%s, message), "
                            f"heartbeat_at = now() WHERE {_OWNED} RETURNING message = 'cancel requested'",
                            (max(0, min(100, int(percent))), message, self.task.id, self.task.worker,
                             self.task.attempts))
                row = cur.fetchone()
                if row and row[0]:
                    self._cancel.set()
        finally:
            conn.close()

    def cancelled(self) -> bool:
        """True once a cancel was requested (seen at the last progress report or heartbeat)."""
        return self._cancel.is_set()


Handler = Callable[[TaskContext], dict[str, Any] | None]


class Worker:
    """Runs the tasks of the registered kinds in this process, on ``threads`` handler threads.

    One dispatcher thread holds the process's only long-lived connection: it LISTENs on
    :data:`CHANNEL` (a new task wakes it at once; otherwise it polls every ``poll_s``), claims a
    task whenever a handler thread is free, writes the heartbeat of this process's running tasks
    every :data:`HEARTBEAT_S` (at most a quarter of ``stale_after_s``) and reaps the tasks of dead
    processes (no heartbeat for ``stale_after_s``; every process sharing a database should use the
    same value). A handler thread opens a
    connection only to record its task's end. ``stop()`` lets running handlers finish.
    """

    def __init__(self, url: str, handlers: dict[str, Handler], *, threads: int = 1, poll_s: float = 2.0,
                 name: str | None = None, stale_after_s: float = STALE_AFTER_S) -> None:
        self.url = url
        self.handlers = dict(handlers)
        self.threads = max(1, threads)
        self.poll_s = poll_s
        self.stale_after_s = stale_after_s
        self.heartbeat_s = min(HEARTBEAT_S, stale_after_s / 4)
        self.name = name or worker_name()
        self._stop = threading.Event()
        self._slots = threading.Semaphore(self.threads)
        self._running: set[int] = set()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the dispatcher and the handler threads."""
        if not self.handlers:
            return
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="cim-task")
        self._thread = threading.Thread(target=self._dispatch, name="cim-task-dispatch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking tasks; wait for running handlers up to ``timeout`` seconds."""
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _dispatch(self) -> None:
        import select

        conn = None
        last_beat = 0.0
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg2.connect(self.url, application_name=dispatcher_name(self.name))
                    conn.autocommit = True
                    with conn.cursor() as cur:
                        # a heartbeat need not wait for the WAL of a large load ahead of it to reach the disk
                        cur.execute("SET synchronous_commit = off")
                        cur.execute(f"LISTEN {CHANNEL}")
                if time.monotonic() - last_beat >= self.heartbeat_s:
                    self._beat(conn)
                    last_beat = time.monotonic()
                while not self._stop.is_set() and self._slots.acquire(blocking=False):
                    task = claim(conn, self.handlers, self.name)
                    if task is None:
                        self._slots.release()
                        break
                    self._running.add(task.id)
                    assert self._pool is not None
                    self._pool.submit(self._execute, task)
                watched: list[psycopg2.extensions.connection | socket.socket] = [conn, self._wake_r]
                ready = select.select(watched, [], [], min(self.poll_s, self.heartbeat_s))[0]
                if self._wake_r in ready:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                if conn in ready:
                    conn.poll()
                    conn.notifies.clear()
            except (psycopg2.Error, OSError) as exc:
                log.warning("task worker: %s", exc)
                if conn is not None:
                    conn.close()
                conn = None
                self._stop.wait(self.poll_s)
        if conn is not None:
            conn.close()

    def _beat(self, conn: psycopg2.extensions.connection) -> None:
        if self._running:
            with conn.cursor() as cur:
                cur.execute("UPDATE cim.task SET heartbeat_at = now() WHERE id = ANY(%s) AND state = 'running' "
                            "AND worker = %s", (sorted(self._running), self.name))
        reap(conn, self.stale_after_s)

    def _execute(self, task: Task) -> None:
        ctx = TaskContext(task, self.url)
        error: str | None = None
        retry = False
        result: dict[str, Any] | None = None
        try:
            result = self.handlers[task.kind](ctx)
        except CimError as exc:
            log.info("task %s (%s) failed: %s", task.id, task.kind, exc)
            error = f"{exc.zh} / {exc.en}"
        except Exception as exc:  # noqa: BLE001 - any fault of a handler is recorded on its task
            log.exception("task %s (%s) raised", task.id, task.kind)
            error, retry = f"{type(exc).__name__}: {exc}", True
        try:
            if error is None:
                self._record(lambda c: finish(c, task, result))
            else:
                self._record(lambda c: fail(c, task, error, retry=retry))
        finally:
            self._running.discard(task.id)
            self._slots.release()
            self._wake()

    def _record(self, write: Callable[[psycopg2.extensions.connection], object]) -> None:
        conn = psycopg2.connect(self.url, application_name="cim-task")
        try:
            write(conn)
        except psycopg2.Error as exc:   # the heartbeat stops: the task is reaped and retried
            log.warning("task worker: recording a result failed: %s", exc)
        finally:
            conn.close()


def wait(url: str, task_id: int, timeout_s: float = 60.0, poll_s: float = 0.1) -> dict[str, Any]:
    """Block until a task is done, failed or cancelled (for CLIs and tests); returns it."""
    deadline = time.monotonic() + timeout_s
    conn = psycopg2.connect(url, application_name="cim-task-wait")
    try:
        while True:
            with conn.cursor() as cur:
                row = get(cur, task_id)
            conn.rollback()
            if row["state"] in ("done", "failed", "cancelled") or time.monotonic() > deadline:
                return row
            time.sleep(poll_s)
    finally:
        conn.close()


def json_safe(row: dict[str, Any]) -> dict[str, Any]:
    """A task row with timestamps as ISO text (for JSON answers)."""
    out = dict(row)
    for k, v in out.items():
        if hasattr(v, "isoformat"):
            out[k] = v.isoformat()
    return out

