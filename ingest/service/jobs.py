"""Ingest jobs of the upload API: a table (``cim.ingest_job``) run as background tasks.

A job is created once an upload passed :mod:`ingest.service.upload`'s checks, together with its
task (kind ``ingest.job`` in ``cim.task``, one transaction): whichever server process or host
claims the task (``FOR UPDATE SKIP LOCKED``, :mod:`cim.tasks`) runs :func:`run_task`, which starts
the job in a child process (``python -m ingest.service.jobs``) running :func:`ingest.pipeline.run`
on the stored files with two connections: one for the load transaction and an autocommit one for
the job's state and progress, so a client can poll while the load is still uncommitted. The job
row becomes ``done`` inside the load transaction, so it is done exactly when the delivery is
committed.

A job survives the death of the process that ran it. The child dies with its server process
(``PR_SET_PDEATHSIG`` on Linux; elsewhere a session advisory lock on the job keeps a second child
from starting while the first still holds its connection), its load transaction rolls back, the
task's heartbeat stops and any process's reaper queues it again (or fails it after
:data:`MAX_ATTEMPTS`); the job row follows its task (migration 0110): queued again with the reason,
or failed with it, never stuck in ``loading``. A child that exits abnormally is retried the same way.
Dry runs end in ``awaiting_confirmation``; :func:`confirm` queues the load of the stored files
(re-read and re-validated). Cancelling a running job sets ``cancel_requested``; the child sees it at
its next progress step and rolls back.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg2.extensions

from cim import auth, db, tasks
from cim.errors import CimError, Conflict, IngestRejected, NotFound
from cim.settings import Settings
from ingest import pipeline
from ingest.mapping import county as county_mapping
from ingest.model import UserMapping

log = logging.getLogger(__name__)

RUNNING = ("queued", "reading", "validating", "loading")
MAPPING_FILE = "mapping.json"      # the user's field and value mappings of a job (upload form, re-check)
FINISHED = ("done", "rejected", "failed", "cancelled")
RECHECKABLE = ("awaiting_confirmation", "rejected")   # finished checks whose files are kept to check again
REPORT_FILES = {"json": "report.json", "html": "report.html", "xlsx": "report.xlsx", "csv": "report.csv"}
GROUPS_FILE = "groups.jsonl"       # summary and grouped findings without the findings (the upload panel pages it)
TASK_KIND = "ingest.job"
MAX_ATTEMPTS = 2           # a job whose process died is run once more, then failed with the reason
LOCK_CLASS = 0x43494D4A    # advisory lock class of a running job (the key is hashtext(job id))
EXIT_BUSY = 3              # the child found the job still held by another child
LOCK_WAIT_S = 900.0        # how long a child waits for an earlier child of its job to end
_PHASE = {"read": ("reading", 0, 20), "validate": ("validating", 20, 50), "copy": ("loading", 50, 95),
          "swap": ("loading", 95, 100)}
_COLUMNS = ("id, county_code, profile, dry_run, state, progress, files, work_dir, counts, findings, delivery_id, "
            "outcome, message_zh, message_en, submitted_by, principal, created_at, updated_at, finished_at")


class Cancelled(Exception):
    """Raised inside a running job when it was cancelled; rolls the load back."""


def uploads_dir(settings: Settings) -> Path:
    """Where uploaded files wait for their job: ``$CIM_HOME/uploads``."""
    return settings.db.home_dir / "uploads"


def new_id() -> str:
    """An unguessable job id (32 hex digits)."""
    return uuid.uuid4().hex


def _principal_json(p: auth.Principal) -> str:
    return json.dumps({"name": p.name, "role": p.role.value if p.role else None, "token_id": p.token_id,
                       "counties": sorted(p.counties)})


def _principal(d: dict) -> auth.Principal:
    return auth.Principal(name=d["name"], role=auth.Role(d["role"]) if d.get("role") else None,
                          token_id=d.get("token_id"), counties=frozenset(d.get("counties") or []))


def create(conn: psycopg2.extensions.connection, *, job_id: str, county: str, profile: str | None, dry_run: bool,
           files: list[str], work_dir: Path, principal: auth.Principal, client_addr: str | None) -> None:
    """Insert the job row (state ``queued``) and audit the upload, in one transaction."""
    with db.transaction(conn) as cur:
        cur.execute("INSERT INTO cim.ingest_job (id, county_code, profile, dry_run, files, work_dir, submitted_by, "
                    "token_id, principal, client_addr) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s)",
                    (job_id, county, profile, dry_run, files, str(work_dir), principal.name, principal.token_id,
                     _principal_json(principal), client_addr))
        auth.audit(cur, principal, "ingest.upload", target=f"job:{job_id}", county=county, client_addr=client_addr,
                   detail={"files": files, "dry_run": dry_run, "profile": profile})
        queue(cur, job_id, confirm=False, principal=principal)


def queue(cur: psycopg2.extensions.cursor, job_id: str, *, confirm: bool, principal: auth.Principal) -> int:
    """Queue the task that runs a job (in the caller's transaction); returns the task id."""
    return tasks.enqueue(cur, TASK_KIND, {"job_id": job_id, "confirm": confirm}, dedupe_key=f"{TASK_KIND}:{job_id}",
                         created_by=principal.name, priority=1, max_attempts=MAX_ATTEMPTS)


def get(cur: psycopg2.extensions.cursor, job_id: str) -> dict:
    """One job row as a dict, or :class:`NotFound`."""
    rows = db.fetch_dicts(cur, f"SELECT {_COLUMNS} FROM cim.ingest_job WHERE id = %s", (job_id,))
    if not rows:
        raise NotFound(f"没有入库任务 {job_id}", f"no ingest job {job_id}")
    return rows[0]


def _update(conn, job_id: str, *, finished: bool = False, **values) -> None:
    """Set columns of a job (names from this module only); ``finished`` stamps ``finished_at``."""
    cols = ", ".join(f"{db.quote_ident(k)} = %s" for k in values)
    params = [json.dumps(v, default=str) if isinstance(v, dict) else v for v in values.values()]
    stamp = ", finished_at = now()" if finished else ""
    with conn.cursor() as cur:
        cur.execute(f"UPDATE cim.ingest_job SET {cols}{stamp}, updated_at = now() WHERE id = %s", (*params, job_id))


def cancel(conn: psycopg2.extensions.connection, job_id: str, principal: auth.Principal,
           client_addr: str | None = None) -> str:
    """Cancel a job: at once when queued, awaiting confirmation or rejected (its files are
    dropped), else at its next step."""
    with db.transaction(conn) as cur:
        job = get(cur, job_id)
        auth.authorize(principal, auth.Action.write, county=job["county_code"])
        if job["state"] in FINISHED and job["state"] != "rejected":
            raise Conflict(f"任务已结束（{job['state']}），无法取消", f"the job already ended ({job['state']})")
        cur.execute("UPDATE cim.ingest_job SET state = 'cancelled', finished_at = now(), updated_at = now(), "
                    "message_zh = '已取消，未入库', message_en = 'cancelled; nothing loaded' "
                    "WHERE id = %s AND state IN ('queued', 'awaiting_confirmation', 'rejected') RETURNING state",
                    (job_id,))
        done_now = cur.fetchone() is not None
        tidy = done_now and job["state"] in RECHECKABLE
        if done_now:   # a task not yet claimed never runs; a claimed one finds the job cancelled and tidies up
            cur.execute("UPDATE cim.task SET state = 'cancelled', finished_at = now() "
                        "WHERE dedupe_key = %s AND state = 'queued'", (f"{TASK_KIND}:{job_id}",))
            tidy = tidy or cur.rowcount > 0
        else:
            cur.execute("UPDATE cim.ingest_job SET cancel_requested = true WHERE id = %s", (job_id,))
        auth.audit(cur, principal, "ingest.cancel", target=f"job:{job_id}", county=job["county_code"],
                   client_addr=client_addr, detail={"state": job["state"]})
    if tidy:
        drop_uploads(job)
    return "cancelled" if done_now else "cancelling"


class Children:
    """The job child processes one server runs, so that its stop can end them."""

    def __init__(self) -> None:
        self._running: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._stopping = False

    def start(self, job_id: str, cmd: list[str]) -> subprocess.Popen:
        """Start a child (refused once the server is stopping)."""
        with self._lock:
            if self._stopping:
                raise RuntimeError("服务正在停止 / the server is stopping")
            child = subprocess.Popen(cmd, stdin=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2])
            self._running[job_id] = child
            return child

    def ended(self, job_id: str) -> None:
        """Forget a child that exited."""
        with self._lock:
            self._running.pop(job_id, None)

    def stop(self) -> None:
        """End the running children (their loads roll back; their tasks are retried elsewhere)."""
        with self._lock:
            self._stopping = True
            children = list(self._running.values())
        for child in children:
            child.terminate()


def run_task(settings: Settings, ctx: tasks.TaskContext, children: Children) -> dict[str, Any]:
    """Task handler of ``ingest.job``: run the job in a child process and wait for it.

    A child that ends abnormally (killed, crashed, or the job still held by an earlier child)
    raises, so the task is retried while attempts remain and then fails with the reason, which
    the job row takes over (migration 0110).
    """
    job_id, confirm = str(ctx.args["job_id"]), bool(ctx.args.get("confirm"))
    cmd = [sys.executable, "-m", "ingest.service.jobs", job_id, "--parent", str(os.getpid())]
    child = children.start(job_id, cmd + (["--confirm"] if confirm else []))
    try:
        child.communicate(settings.model_dump_json().encode(), timeout=None)
    finally:
        children.ended(job_id)
    if child.returncode == EXIT_BUSY:
        raise RuntimeError("任务仍由另一个入库进程持有 / the job is still held by another ingest process")
    if child.returncode != 0:
        raise RuntimeError(f"入库进程意外结束（退出码 {child.returncode}） / "
                           f"the ingest process ended unexpectedly (exit code {child.returncode})")
    status = db.connect(settings.db, autocommit=True, application_name="cim-ingest-status")
    try:
        with status.cursor() as cur:
            job = get(cur, job_id)
    finally:
        status.close()
    if job["state"] in FINISHED and job["state"] not in RECHECKABLE:
        drop_uploads(job)             # a rejected job keeps its files to be re-checked (or cancelled)
    return {"job_id": job_id, "state": job["state"], "delivery_id": job["delivery_id"]}


def drop_uploads(job: dict) -> None:
    """Remove the uploaded files of a finished job (loaded ones are archived); keep its reports."""
    work = Path(job["work_dir"])
    for name in job["files"]:
        (work / name).unlink(missing_ok=True)
    try:
        work.rmdir()                      # only when nothing (no report) is left in it
    except OSError:
        pass


def run_job(settings: Settings, job_id: str, confirm: bool) -> int:
    """Run one job in this process (the child started by :func:`run_task`); returns the exit code.

    The job's advisory lock is held on the status connection for the whole run: a second child
    (a retry while an earlier child still holds its connection) waits for it, then finds the job
    ended or runs it; it returns :data:`EXIT_BUSY` if the lock stays held for :data:`LOCK_WAIT_S`.
    """
    status = db.connect(settings.db, autocommit=True, application_name="cim-ingest-status")
    try:
        if not _lock_job(status, job_id):
            return EXIT_BUSY
        with status.cursor() as cur:
            job = get(cur, job_id)
            if job["state"] not in RUNNING:
                return 0  # cancelled, finished, or a dry run awaiting confirmation: nothing to do
            # an earlier attempt that died left reading / validating / loading: it loaded nothing
            cur.execute("UPDATE cim.ingest_job SET worker_pid = %s, state = 'queued', progress = 0, "
                        "updated_at = now() WHERE id = %s", (os.getpid(), job_id))
        work = db.connect(settings.db, application_name="cim-ingest")
        with work.cursor() as cur:   # a backend whose child died mid-statement stops soon, not at its end
            cur.execute("SET client_connection_check_interval = 2000")
        work.commit()
        try:
            _execute(settings, job, status, work, confirm)
        finally:
            work.close()
    finally:
        status.close()
    return 0


def _lock_job(status, job_id: str) -> bool:
    """Take the job's advisory lock, waiting up to :data:`LOCK_WAIT_S` for an earlier child that
    still holds it (one whose task was reaped while it ran on, or whose backend has not yet seen
    it die); False if it is still held then."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        with status.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (LOCK_CLASS, job_id))
            locked = cur.fetchone()
        if locked and locked[0]:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


def _execute(settings: Settings, job: dict, status, work, confirm: bool) -> None:
    job_id, work_dir = job["id"], Path(job["work_dir"])
    last: list[Any] = [0.0, "", 0]        # time, state and percentage last written
    lock = threading.Lock()

    def progress(phase: str, done: int, total: int) -> None:
        # Called from the reading thread and from the loader thread (rows are written while
        # later layers are read), so the percentage only ever grows and the state follows it.
        state, lo, hi = _PHASE.get(phase, ("loading", 50, 95))
        if phase == "swap" and done > 0:
            return  # committed: the job row was set inside the transaction
        now = time.monotonic()
        pct = int(min(lo + (hi - lo) * (done / total if total else 1), 99))
        with lock:
            if pct < last[2]:
                pct, state = last[2], last[1]
            if state == last[1] and now - last[0] <= 0.5 and done < total:
                return
            last[:] = [now, state, pct]
        with status.cursor() as cur:
            cur.execute("UPDATE cim.ingest_job SET state = %s, progress = %s, updated_at = now() "
                        "WHERE id = %s RETURNING cancel_requested", (state, pct, job_id))
            row = cur.fetchone()
        if row and row[0]:
            raise Cancelled(job_id)

    def mark_done(cur, result) -> None:  # inside the load transaction: done iff committed
        _update(cur.connection, job_id, state="done", progress=100, finished=True, delivery_id=result.delivery_id,
                outcome="loaded", counts=result.counts, message_zh=result.message_zh, message_en=result.message_en)

    try:
        outcome = pipeline.run(
            work, [work_dir / f for f in job["files"]], settings=settings,
            principal=_principal(job["principal"]), profile=job["profile"], county=job["county_code"],
            dry_run=job["dry_run"] and not confirm,
            reports=[work_dir / f for f in (*REPORT_FILES.values(), GROUPS_FILE)],
            progress=progress, on_commit=mark_done, user=read_mapping(work_dir))
    except Cancelled:
        _update(status, job_id, state="cancelled", finished=True, message_zh="已取消，未入库",
                message_en="cancelled; nothing loaded")
        return
    except CimError as exc:
        state = "rejected" if isinstance(exc, IngestRejected) else "failed"
        _update(status, job_id, state=state, progress=100, finished=True, message_zh=exc.zh, message_en=exc.en)
        return
    except Exception:
        log.exception("ingest job %s failed", job_id)
        _update(status, job_id, state="failed", progress=100, finished=True,
                message_zh="入库任务内部错误，数据库未改动，请联系管理员",
                message_en="internal error in the ingest job; nothing was loaded, contact the administrator")
        return
    summary = outcome.summary()
    state = {"loaded": "done", "duplicate": "done", "dry_run": "awaiting_confirmation"}.get(outcome.state,
                                                                                           "rejected")
    zh, en = summary["message_zh"], summary["message_en"]
    if outcome.state == "dry_run":
        zh, en = "试运行质检通过，确认后入库", "dry run clean; confirm to load"
    elif outcome.state == "rejected":
        zh, en = "质检发现错误，成果未入库，详见报告", "validation found errors; nothing loaded, see the report"
    _update(status, job_id, state=state, progress=100, counts=summary["counts"], findings=summary["findings"],
            delivery_id=outcome.delivery_id, outcome=outcome.state, message_zh=zh, message_en=en,
            finished=state != "awaiting_confirmation")


def read_mapping(work_dir: Path) -> UserMapping | None:
    """The user's mapping stored with a job, or None."""
    path = work_dir / MAPPING_FILE
    if not path.is_file():
        return None
    return UserMapping.from_dict(json.loads(path.read_text(encoding="utf-8")), source="上传时指定的映射")


def write_mapping(work_dir: Path, mapping: UserMapping | None) -> None:
    """Store the user's mapping with a job (none: remove it)."""
    path = work_dir / MAPPING_FILE
    if mapping:
        path.write_text(json.dumps(mapping.to_dict(), ensure_ascii=False), encoding="utf-8")
    else:
        path.unlink(missing_ok=True)


def recheck(conn: psycopg2.extensions.connection, job_id: str, mapping: UserMapping, principal: auth.Principal,
            client_addr: str | None = None) -> dict:
    """Run a finished check again on the stored files with the user's mapping, as a dry run, and
    queue its task (one transaction; audited ``ingest.recheck``)."""
    county_mapping.check(mapping)
    with db.transaction(conn) as cur:
        job = get(cur, job_id)
        auth.authorize(principal, auth.Action.write, county=job["county_code"])
        cur.execute("UPDATE cim.ingest_job SET state = 'queued', progress = 0, dry_run = true, outcome = NULL, "
                    "message_zh = NULL, message_en = NULL, finished_at = NULL, principal = %s::jsonb, "
                    "updated_at = now() WHERE id = %s AND state = ANY(%s) AND delivery_id IS NULL RETURNING id",
                    (_principal_json(principal), job_id, list(RECHECKABLE)))
        if cur.fetchone() is None:
            raise Conflict(f"任务状态为 {job['state']}，只有已完成质检、未入库的任务可重新质检",
                           f"the job is {job['state']}; only a finished check that loaded nothing can be re-checked")
        auth.audit(cur, principal, "ingest.recheck", target=f"job:{job_id}", county=job["county_code"],
                   client_addr=client_addr, detail=mapping.to_dict())
        work_dir = Path(job["work_dir"])
        write_mapping(work_dir, mapping)
        for name in (*REPORT_FILES.values(), GROUPS_FILE):
            (work_dir / name).unlink(missing_ok=True)
        queue(cur, job_id, confirm=False, principal=principal)
    return job


def confirm(conn: psycopg2.extensions.connection, job_id: str, principal: auth.Principal,
            client_addr: str | None = None) -> dict:
    """Turn a clean dry run into a load and queue its task (one transaction). The mapping the dry
    run used beyond the profile's rules (proposals the user accepted, the user's own mappings) is
    saved as the county's mapping in the same transaction, unless it is already the county's newest."""
    with db.transaction(conn) as cur:
        job = get(cur, job_id)
        auth.authorize(principal, auth.Action.write, county=job["county_code"])
        cur.execute("UPDATE cim.ingest_job SET state = 'queued', progress = 0, principal = %s::jsonb, "
                    "updated_at = now() WHERE id = %s AND state = 'awaiting_confirmation' RETURNING id",
                    (_principal_json(principal), job_id))
        if cur.fetchone() is None:
            raise Conflict(f"任务状态为 {job['state']}，只有试运行通过的任务可确认",
                           f"the job is {job['state']}; only a clean dry run awaiting confirmation can be confirmed")
        auth.audit(cur, principal, "ingest.confirm", target=f"job:{job_id}", county=job["county_code"],
                   client_addr=client_addr)
        report = Path(job["work_dir"]) / REPORT_FILES["json"]
        used = county_mapping.from_report_file(report) if report.is_file() else UserMapping()
        saved = county_mapping.latest(cur, job["county_code"])
        if used and (saved is None or saved.to_dict() != used.to_dict()):
            county_mapping.save(cur, job["county_code"], used, principal=principal, source_job=job_id,
                                client_addr=client_addr)
        queue(cur, job_id, confirm=True, principal=principal)
    return job


def _die_with(parent: int) -> bool:
    """Ask the kernel to kill this process when its parent dies (Linux); False if it already has."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    return os.getppid() == parent


def main(argv: list[str] | None = None) -> int:
    """Child entry: ``python -m ingest.service.jobs JOB_ID [--parent PID] [--confirm]`` with the
    settings JSON on stdin."""
    logging.basicConfig(level=os.environ.get("CIM_LOG_LEVEL", "WARNING"),
                         format="%(levelname)s %(name)s: %(message)s")
    args = sys.argv[1:] if argv is None else argv
    if "--parent" in args and not _die_with(int(args[args.index("--parent") + 1])):
        return 1
    settings = Settings.model_validate_json(sys.stdin.read())
    return run_job(settings, args[0], "--confirm" in args[1:])


if __name__ == "__main__":
    sys.exit(main())
