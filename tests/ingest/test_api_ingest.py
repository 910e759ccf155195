"""Upload API jobs over real HTTP: dry run → reports → confirm → loaded; direct load; rejection;
cancel; access to jobs; a job whose process died is retried once, then failed with the reason; a
new server process leaves the jobs other processes run alone."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import httpx
import psycopg2
import pytest
import testkit

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: sibling helpers
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "ingest"))
from apikit import LiveServer, token  # noqa: E402
from loadkit import snapshot  # noqa: E402
from synth import counts, lines_frame, points_frame, write_delivery  # noqa: E402

from cim.auth import Role  # noqa: E402

COUNTY = "430523"


@pytest.fixture(scope="module")
def jobs_db(make_database):
    """A database of this module's own: upload jobs are tasks any server on the database may claim,
    so no server of another test module (with another CIM_HOME) may share it."""
    return make_database("cim_ingest_jobs")


@pytest.fixture
def conn(jobs_db):
    """A connection to this module's database, rolled back and closed afterwards."""
    with testkit.connection(jobs_db) as c:
        yield c


@pytest.fixture(scope="module")
def api(jobs_db, tmp_path_factory):
    db_url = jobs_db
    home = tmp_path_factory.mktemp("cim-home-jobs")
    conn = psycopg2.connect(db_url)
    toks = {"uploader": token(conn, Role.uploader, [COUNTY]), "other": token(conn, Role.uploader, ["430599"]),
            "admin": token(conn, Role.admin)}
    conn.close()
    data = tmp_path_factory.mktemp("api-deliveries")
    files = {"a": write_delivery(data, points=200, buildings=30, name="a.zip"),
             "b": write_delivery(data, points=80, buildings=10, name="b.zip"),
             "big": write_delivery(data, points=60_000, buildings=30_000, name="big.zip")}
    pts, lines = points_frame(40), lines_frame(40)
    pts.loc[5, "WTDH"] = pts.loc[4, "WTDH"]
    parts = data / "dup"
    parts.mkdir()
    pts.to_file(parts / "JSPOINT.shp", engine="pyogrio", encoding="GBK")
    lines.to_file(parts / "JSLINE.shp", engine="pyogrio", encoding="GBK")
    files["dup"] = [parts / f"{stem}.{ext}" for stem in ("JSPOINT", "JSLINE") for ext in ("shp", "shx", "dbf", "prj",
                                                                                          "cpg")]
    srv = LiveServer(db_url, home, max_upload_mb=64)
    yield {"url": srv.url, "home": home, "db_url": db_url, "files": files, **toks}
    srv.stop()


def _hdr(api, who="uploader") -> dict:
    return {"Authorization": f"Bearer {api[who]}"}


def _upload(api, paths, who="uploader", **data) -> dict:
    paths = paths if isinstance(paths, list) else [paths]
    files = [("file", (p.name, p.read_bytes())) for p in paths]
    res = httpx.post(api["url"] + "/api/ingest", files=files, data={"county": COUNTY, **data}, headers=_hdr(api, who),
                     timeout=60)
    assert res.status_code == 202, res.text
    body = res.json()
    assert body["status_url"] == f"/api/ingest/{body['job_id']}"
    return body


def _wait(api, job_id, states=("done", "rejected", "failed", "cancelled", "awaiting_confirmation"),
          who="uploader") -> dict:
    deadline = time.monotonic() + 300
    seen = [0]
    while time.monotonic() < deadline:
        job = httpx.get(f"{api['url']}/api/ingest/{job_id}", headers=_hdr(api, who), timeout=30).json()
        if job["state"] in states:
            return job
        # rows are written while later layers are read: the progress still only grows
        assert seen[-1] <= job["progress"] <= 100, (seen, job)
        seen.append(job["progress"])
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_dry_run_reports_then_confirm_loads(api, conn):
    job = _upload(api, api["files"]["a"], dry_run="true")
    state = _wait(api, job["job_id"])
    assert state["state"] == "awaiting_confirmation", state
    assert state["counts"] == counts(200, 30) and state["delivery_id"] is None
    assert state["message_zh"] and state["message_en"]
    got = {}
    for fmt, ctype in (("json", "application/json"), ("html", "text/html"), ("xlsx", "spreadsheetml")):
        res = httpx.get(api["url"] + state["links"][fmt], headers=_hdr(api))
        assert res.status_code == 200 and ctype in res.headers["content-type"], fmt
        got[fmt] = res
    assert "summary" in got["json"].json() and got["xlsx"].content[:2] == b"PK"
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM cim.delivery WHERE county_code = %s", (COUNTY,))
        assert cur.fetchone()[0] == 0
    conn.rollback()

    res = httpx.post(f"{api['url']}/api/ingest/{job['job_id']}/confirm", headers=_hdr(api))
    assert res.status_code == 202, res.text
    done = _wait(api, job["job_id"], ("done", "rejected", "failed"))
    assert done["state"] == "done" and done["progress"] == 100 and done["delivery_id"], done
    with conn.cursor() as cur:
        cur.execute("SELECT state, counts FROM cim.delivery WHERE id = %s", (done["delivery_id"],))
        assert cur.fetchone() == ("current", counts(200, 30))
        cur.execute("SELECT action FROM cim.audit_log WHERE target IN (%s, %s) ORDER BY id",
                    (f"job:{job['job_id']}", f"delivery:{done['delivery_id']}"))
        assert [r[0] for r in cur.fetchall()] == ["ingest.upload", "ingest.confirm", "ingest.load"]
    conn.rollback()
    again = httpx.post(f"{api['url']}/api/ingest/{job['job_id']}/confirm", headers=_hdr(api))
    assert again.status_code == 409 and again.json()["message_en"]
    # the upload itself is dropped once archived; the reports stay downloadable
    job_dir = api["home"] / "uploads" / job["job_id"]
    deadline = time.monotonic() + 60  # removed by the runner once the job's process has exited
    while (job_dir / "a.zip").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not (job_dir / "a.zip").exists() and (job_dir / "report.html").is_file()
    assert httpx.get(api["url"] + done["links"]["xlsx"], headers=_hdr(api)).status_code == 200
    assert list((api["home"] / "archive").glob("*/a.zip"))


def test_direct_load_survives_client_disconnect_and_same_file_is_a_no_op(api, conn):
    with httpx.Client(base_url=api["url"]) as client:  # the client goes away right after the 202
        res = client.post("/api/ingest", files={"file": ("b.zip", api["files"]["b"].read_bytes())},
                          data={"county": COUNTY}, headers=_hdr(api))
        job_id = res.json()["job_id"]
    done = _wait(api, job_id)
    assert done["state"] == "done" and done["outcome"] == "loaded", done
    dup = _wait(api, _upload(api, api["files"]["b"])["job_id"])
    assert dup["state"] == "done" and dup["outcome"] == "duplicate" and dup["delivery_id"] == done["delivery_id"]
    assert "sha256" in dup["message_en"]


def test_rejected_upload_of_loose_shapefiles(api, conn):
    job = _wait(api, _upload(api, api["files"]["dup"])["job_id"])
    assert job["state"] == "rejected" and job["findings"]["error"] >= 1, job
    rep = httpx.get(api["url"] + job["links"]["json"], headers=_hdr(api)).json()
    assert any(f["severity"] == "error" and f["key"] == "JS5" for f in rep["findings"])


def test_cancel_awaiting_job_and_access_to_jobs(api):
    job = _upload(api, api["files"]["a"], dry_run="true")
    _wait(api, job["job_id"])
    other = httpx.get(f"{api['url']}/api/ingest/{job['job_id']}", headers=_hdr(api, "other"))
    assert other.status_code == 403 and other.json()["message_zh"]
    assert httpx.get(f"{api['url']}/api/ingest/{job['job_id']}").status_code == 401
    res = httpx.post(f"{api['url']}/api/ingest/{job['job_id']}/cancel", headers=_hdr(api))
    assert res.status_code == 200 and res.json()["state"] == "cancelled"
    assert _wait(api, job["job_id"])["state"] == "cancelled"
    assert httpx.post(f"{api['url']}/api/ingest/{job['job_id']}/confirm", headers=_hdr(api)).status_code == 409
    assert httpx.post(f"{api['url']}/api/ingest/{job['job_id']}/cancel", headers=_hdr(api)).status_code == 409


def test_cancel_while_loading_rolls_back(api, conn):
    before = snapshot(conn)
    job_id = _upload(api, api["files"]["big"])["job_id"]
    state = _wait(api, job_id, ("loading", "done", "rejected", "failed"))
    assert state["state"] == "loading", state
    res = httpx.post(f"{api['url']}/api/ingest/{job_id}/cancel", headers=_hdr(api))
    assert res.status_code == 200 and res.json()["state"] == "cancelling"
    final = _wait(api, job_id, ("done", "rejected", "failed", "cancelled"))
    assert final["state"] == "cancelled" and final["delivery_id"] is None, final
    assert snapshot(conn) == before


def _kill_loading_child(api, conn, job_id, after_pid=None) -> int:
    """Wait until a child (other than ``after_pid``) is loading the job, SIGKILL it; returns its pid."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        with conn.cursor() as cur:
            cur.execute("SELECT state, worker_pid FROM cim.ingest_job WHERE id = %s", (job_id,))
            state, pid = cur.fetchone()
        conn.rollback()
        if state == "loading" and pid and pid != after_pid:
            os.kill(pid, signal.SIGKILL)  # the child process doing the load dies mid-transaction
            return pid
        assert state not in ("done", "rejected", "failed", "cancelled"), state
        time.sleep(0.05)
    raise AssertionError("the job never reached loading")


def test_killed_job_process_is_retried_then_failed_and_loads_nothing(api, conn):
    before = snapshot(conn)
    job_id = _upload(api, api["files"]["big"])["job_id"]
    first = _kill_loading_child(api, conn, job_id)
    # the task is queued again with the reason; the job follows it
    deadline = time.monotonic() + 60
    job = _wait(api, job_id, ("loading", "queued", "reading", "validating"))
    while "queued again" not in (job["message_en"] or "") and time.monotonic() < deadline:
        time.sleep(0.1)
        job = _wait(api, job_id, ("loading", "queued", "reading", "validating"))
    assert "exit code -9" in job["message_en"] and "重新排队" in job["message_zh"], job
    _kill_loading_child(api, conn, job_id, after_pid=first)
    final = _wait(api, job_id, ("done", "rejected", "failed", "cancelled"))
    assert final["state"] == "failed" and "unexpectedly" in final["message_en"] and final["message_zh"], final
    with conn.cursor() as cur:
        cur.execute("SELECT state, attempts, error FROM cim.task WHERE kind = 'ingest.job' AND args->>'job_id' = %s",
                    (job_id,))
        rows = cur.fetchall()
    conn.rollback()
    assert len(rows) == 1 and rows[0][:2] == ("failed", 2) and "exit code -9" in rows[0][2], rows
    deadline = time.monotonic() + 60  # the server ends the dead client's backend
    while snapshot(conn) != before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert snapshot(conn) == before


def test_dead_process_job_fails_with_reason_and_live_ones_are_left_alone(api, tmp_path):
    db_url = api["db_url"]
    conn = psycopg2.connect(db_url)
    ids = ("a" * 32, "b" * 32, "c" * 32)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO cim.ingest_job (id, county_code, state, progress, files, work_dir, submitted_by) "
                    "VALUES (%s, %s, 'loading', 60, '{x.zip}', %s, 'test'), "
                    "(%s, %s, 'awaiting_confirmation', 100, '{y.zip}', %s, 'test'), "
                    "(%s, %s, 'loading', 40, '{z.zip}', %s, 'test')",
                    (ids[0], COUNTY, str(tmp_path), ids[1], COUNTY, str(tmp_path), ids[2], COUNTY, str(tmp_path)))
        # a's process died on its last attempt (stale heartbeat); c's process on another host is alive
        cur.execute("INSERT INTO cim.task (kind, dedupe_key, args, state, attempts, max_attempts, started_at, "
                    "heartbeat_at, worker) VALUES "
                    "('ingest.job', 'ingest.job:' || %s, jsonb_build_object('job_id', %s), 'running', 2, 2, "
                    " now() - interval '1 hour', now() - interval '1 hour', 'gone-host:1'), "
                    "('ingest.job', 'ingest.job:' || %s, jsonb_build_object('job_id', %s), 'running', 1, 2, "
                    " now(), now() + interval '1 hour', 'other-host:1')", (ids[0], ids[0], ids[2], ids[2]))
    conn.commit()
    srv = LiveServer(db_url, tmp_path)  # another server process joins: its reaper sees the dead one's task
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with conn.cursor() as cur:
                cur.execute("SELECT id, state, message_en FROM cim.ingest_job WHERE id IN %s ORDER BY id", (ids,))
                rows = cur.fetchall()
            conn.rollback()
            if rows[0][1] == "failed":
                break
            time.sleep(0.2)
        assert rows[0][1] == "failed" and "stopped responding" in rows[0][2] and "gone-host:1" in rows[0][2], rows
        assert rows[1][1] == "awaiting_confirmation"
        assert rows[2][1] == "loading", "a job another live process runs is not touched"
    finally:
        srv.stop()
        with conn.cursor() as cur:
            cur.execute("UPDATE cim.task SET state = 'cancelled' WHERE args->>'job_id' = %s", (ids[2],))
            cur.execute("DELETE FROM cim.ingest_job WHERE id IN %s", (ids,))
        conn.commit()
        conn.close()


def test_job_failing_before_validation_links_no_reports(api, tmp_path):
    bad = tmp_path / "broken.geojson"
    bad.write_text('{"type":')
    job = _upload(api, bad, dry_run="true")
    state = _wait(api, job["job_id"])
    assert state["state"] in ("failed", "rejected")
    assert state["links"] == {}
    assert str(api["home"]) not in state["message_zh"] + state["message_en"]
    work = Path(api["home"]) / "uploads" / job["job_id"]
    deadline = time.monotonic() + 20          # the runner tidies up once the job process has exited
    while work.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not work.exists(), sorted(p.name for p in work.iterdir())
