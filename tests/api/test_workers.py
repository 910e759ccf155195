"""``cim serve --workers 2`` on one database: both processes answer, the tile cache of each follows a
data-version change made through the other, and the task a delivery queues runs once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg2
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: sibling helpers
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "ingest"))
from conftest import _free_port, seed_known  # noqa: E402
from synth import write_delivery  # noqa: E402

from cim import auth  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CIM = Path(sys.executable).parent / "cim"
COUNTY = "430524"
TILE = "/tiles/buildings/14/13275/6887.mvt"


class ServeProcess:
    """``cim serve --workers N`` as a subprocess (uvicorn's supervisor and N worker processes)."""

    def __init__(self, db_url: str, home: Path, workers: int, **env: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home / f"serve-{self.port}.log"
        self.proc = subprocess.Popen(
            [str(CIM), "serve", "--workers", str(workers), "--port", str(self.port)], cwd=ROOT,
            env=dict(os.environ, CIM_DATABASE_URL=db_url, CIM_HOME=str(home), CIM_PUBLIC_READ="true", **env),
            stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        self.processes: set[str] = set()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(self.processes) < workers:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                self.processes.add(httpx.get(self.url + "/health", timeout=5).json()["process"])
            except httpx.HTTPError:
                time.sleep(0.2)
        assert len(self.processes) == workers, f"answered: {self.processes}\n{self.log.read_text()[-3000:]}"

    def stop(self) -> None:
        """SIGTERM to the supervisor: it stops its workers (each runs the app's shutdown hooks)."""
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def workers_db(make_database):
    url = make_database("cim_workers")
    seed_known(url)
    return url


def _etags(url: str, processes: set[str], per_process: int = 5) -> dict[str, set[str]]:
    """ETag of the tile as each process answers it, over fresh connections until every process
    answered ``per_process`` times (the kernel picks the process of each new connection)."""
    seen: dict[str, set[str]] = {}
    count: dict[str, int] = {}
    for _ in range(400):
        with httpx.Client(base_url=url, timeout=30) as c:
            proc = c.get("/health").json()["process"]
            res = c.get(TILE)
            assert res.status_code in (200, 204), res.text
            seen.setdefault(proc, set()).add(res.headers["etag"])
            count[proc] = count.get(proc, 0) + 1
        if all(count.get(p, 0) >= per_process for p in processes):
            break
    return seen


def test_two_worker_processes_follow_versions_and_run_tasks_once(workers_db, tmp_path):
    conn = psycopg2.connect(workers_db)
    with conn.cursor() as cur:
        uploader = auth.create_token(cur, name="workers-uploader", role=auth.Role.uploader, counties=[COUNTY]).secret
    conn.commit()
    delivery = write_delivery(tmp_path / "data", points=120, buildings=40, name="workers.zip")
    srv = ServeProcess(workers_db, tmp_path, 2)
    try:
        before = _etags(srv.url, srv.processes)
        assert set(before) == srv.processes, "both processes answer on the one port"
        assert len({e for tags in before.values() for e in tags}) == 1, before

        res = httpx.post(srv.url + "/api/ingest", files=[("file", (delivery.name, delivery.read_bytes()))],
                         data={"county": COUNTY}, headers={"Authorization": f"Bearer {uploader}"}, timeout=60)
        assert res.status_code == 202, res.text
        job_url = srv.url + res.json()["status_url"]
        deadline = time.monotonic() + 180
        job = httpx.get(job_url, headers={"Authorization": f"Bearer {uploader}"}).json()
        while job["state"] not in ("done", "rejected", "failed") and time.monotonic() < deadline:
            time.sleep(0.3)
            job = httpx.get(job_url, headers={"Authorization": f"Bearer {uploader}"}).json()
        assert job["state"] == "done", job

        # every process's version watcher saw the load (NOTIFY, else its 1 s poll): new ETag everywhere
        old = next(iter(next(iter(before.values()))))
        deadline = time.monotonic() + 10
        after = _etags(srv.url, srv.processes)
        while any(old in tags for tags in after.values()) and time.monotonic() < deadline:
            time.sleep(0.5)
            after = _etags(srv.url, srv.processes)
        assert set(after) == srv.processes
        assert all(tags and old not in tags for tags in after.values()), after
        assert len({e for tags in after.values() for e in tags}) == 1, after

        # the county.changed task the new delivery queued ran once, in one of the two processes
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with conn.cursor() as cur:
                cur.execute("SELECT state, attempts, worker FROM cim.task WHERE kind = 'county.changed' "
                            "AND args->>'delivery_id' = %s", (str(job["delivery_id"]),))
                rows = cur.fetchall()
            conn.rollback()
            if rows and rows[0][0] == "done":
                break
            time.sleep(0.2)
        assert len(rows) == 1 and rows[0][:2] == ("done", 1), rows
        assert rows[0][2] in srv.processes
        # and the rescans it queued (hazard scan, health check of the county) ran once each
        follow = ("hazards.scan", "healthcheck.run")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with conn.cursor() as cur:
                cur.execute("SELECT kind, state, attempts, worker FROM cim.task WHERE kind = ANY(%s) "
                            "AND args->>'county' = %s ORDER BY kind", (list(follow), COUNTY))
                rows = cur.fetchall()
            conn.rollback()
            if len(rows) >= len(follow) and all(r[1] in ("done", "failed") for r in rows):
                break
            time.sleep(0.3)
        assert [r[0] for r in rows] == sorted(follow), rows
        assert all(r[1:3] == ("done", 1) and r[3] in srv.processes for r in rows), rows
    finally:
        srv.stop()
        conn.close()
    assert srv.proc.returncode == 0, srv.log.read_text()[-3000:]
