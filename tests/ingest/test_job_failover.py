"""``cim serve --workers 2``: a server process killed with SIGKILL while its upload job loads. The job's
child dies with it (its load rolls back), the other process (or the one the supervisor starts again)
reaps the task and runs the job again: the delivery is loaded once and the job ends done."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg2
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: sibling helpers
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "ingest"))
from apikit import token  # noqa: E402
from synth import write_delivery  # noqa: E402

from cim.auth import Role  # noqa: E402
from cim.embedded import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CIM = Path(sys.executable).parent / "cim"
COUNTY = "430526"


def _processes(url: str, want: int, timeout: float = 90) -> set[str]:
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < want and time.monotonic() < deadline:
        try:
            seen.add(httpx.get(url + "/health", timeout=5).json()["process"])
        except httpx.HTTPError:
            time.sleep(0.2)
    return seen


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_sigkill_of_the_server_process_running_a_job(make_database, tmp_path_factory, tmp_path):
    db_url = make_database("cim_failover")      # no server of another test module may claim its job
    conn = psycopg2.connect(db_url)
    uploader = token(conn, Role.uploader, [COUNTY])
    delivery = write_delivery(tmp_path_factory.mktemp("failover"), points=60_000, buildings=30_000, name="big.zip")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([str(CIM), "serve", "--workers", "2", "--port", str(port)], cwd=ROOT,
                            env=dict(os.environ, CIM_DATABASE_URL=db_url, CIM_HOME=str(tmp_path),
                                     CIM_API_TASK_STALE_S="3"),
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        first = _processes(url, 2)
        assert len(first) == 2, log.read_text()[-3000:]
        res = httpx.post(url + "/api/ingest", files=[("file", (delivery.name, delivery.read_bytes()))],
                         data={"county": COUNTY}, headers={"Authorization": f"Bearer {uploader}"}, timeout=120)
        assert res.status_code == 202, res.text
        job_id = res.json()["job_id"]

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:          # wait until a server process's child is loading
            with conn.cursor() as cur:
                cur.execute("SELECT j.state, j.worker_pid, t.worker, t.state FROM cim.ingest_job j "
                            "JOIN cim.task t ON t.kind = 'ingest.job' AND t.args->>'job_id' = j.id WHERE j.id = %s",
                            (job_id,))
                row = cur.fetchone()
            conn.rollback()
            if row and row[0] == "loading" and row[3] == "running":
                break
            assert row is None or row[0] not in ("done", "failed", "rejected"), row
            time.sleep(0.05)
        _, child, worker, _ = row
        server_pid = int(worker.rsplit(":", 1)[1])
        assert worker in first and _alive(child)
        os.kill(server_pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(server_pid) and time.monotonic() < deadline:   # reaped by uvicorn's supervisor
            time.sleep(0.1)
        assert not _alive(server_pid)

        deadline = time.monotonic() + 20            # the job's child dies with its server process
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child), "the job's child outlived its server process"

        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            job = httpx.get(f"{url}/api/ingest/{job_id}", headers={"Authorization": f"Bearer {uploader}"},
                            timeout=30).json()
            if job["state"] in ("done", "failed", "rejected", "cancelled"):
                break
            time.sleep(0.5)
        assert job["state"] == "done", (job["message_en"], log.read_text()[-3000:])
        deadline = time.monotonic() + 60            # the task is recorded once the child has exited
        while time.monotonic() < deadline:
            with conn.cursor() as cur:
                cur.execute("SELECT state, attempts, worker FROM cim.task WHERE kind = 'ingest.job' "
                            "AND args->>'job_id' = %s", (job_id,))
                tasks = cur.fetchall()
            conn.rollback()
            if tasks and tasks[0][0] != "running":
                break
            time.sleep(0.2)
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM cim.delivery WHERE county_code = %s AND state = 'current'", (COUNTY,))
            current = cur.fetchall()
            cur.execute("SELECT count(*) FROM cim.building WHERE county_code = %s", (COUNTY,))
            buildings = cur.fetchone()[0]
        conn.rollback()
        assert len(tasks) == 1 and tasks[0][:2] == ("done", 2), tasks
        assert current == [(job["delivery_id"],)] and buildings == 30_000
        after = _processes(url, 2)                  # uvicorn's supervisor started a new process
        assert len(after) == 2 and tasks[0][2] in after, (tasks, after)
    finally:
        proc.terminate()
        proc.wait(60)
        with conn.cursor() as cur:
            for table in ("pipe_segment", "pipe_point", "building"):
                cur.execute(f"DELETE FROM cim.{table} WHERE county_code = %s", (COUNTY,))
        conn.commit()
        conn.close()
