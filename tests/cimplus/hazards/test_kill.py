"""kill -9 of the server during a transition: the entry keeps its old state and gets no event,
never one without the other; the same transition done again commits the new state with its
event. The transition is held at its event insert by a table lock taken here, after its
UPDATE of the entry has run, and the server process is killed there."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg2
import testkit
from test_workflow import make_entry

from cim import auth
from cim.auth import Role

ROOT = Path(__file__).resolve().parents[3]


def _start(url: str, home: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (home / f"server-{port}.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "api.app:factory", "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "warning"], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT,
                            env=dict(os.environ, CIM_DATABASE_URL=url, CIM_HOME=str(home), CIM_API_TASK_THREADS="0",
                                     CIM_PUBLIC_READ="false"))
    base = f"http://127.0.0.1:{port}"
    try:
        testkit.wait_healthy(base, proc=proc, log=home / f"server-{port}.log")
    except RuntimeError:
        proc.kill()
        raise
    return proc, base


def _state(conn, hid: int) -> tuple:
    with conn.cursor() as cur:
        cur.execute("SELECT status, version, location, (SELECT count(*) FROM cim.hazard_event WHERE hazard_id = h.id), "
                    "(SELECT count(*) FROM cim.audit_log WHERE target = 'hazard:' || h.id) FROM cim.hazard h WHERE id = %s",
                    (hid,))
        row = cur.fetchone()
    conn.rollback()
    return row


def test_kill_9_during_a_transition(hz_url, hz_conn, county, tmp_path):
    e = make_entry(hz_conn, county, "registered")
    with hz_conn.cursor() as cur:
        tok = auth.create_token(cur, name="kill-test", role=Role.inspector, counties=[county])
    hz_conn.commit()
    headers = {"Authorization": f"Bearer {tok.secret}"}
    body = {"action": "start", "version": e["version"], "fields": {"measures": "更换", "budget": 1000,
            "responsible_person": "甲", "deadline": "2031-01-01", "reviewer": "乙"}}
    before = _state(hz_conn, e["id"])
    proc, base = _start(hz_url, tmp_path)
    blocker = psycopg2.connect(hz_url)
    watcher = psycopg2.connect(hz_url)
    watcher.autocommit = True
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE cim.hazard_event IN SHARE ROW EXCLUSIVE MODE")   # the event insert waits here
        answers: list = []

        def call() -> None:
            try:
                answers.append(httpx.post(f"{base}/api/hazards/{e['id']}/transition", json=body, headers=headers,
                                          timeout=60).status_code)
            except httpx.HTTPError as exc:
                answers.append(type(exc).__name__)

        thread = threading.Thread(target=call)
        thread.start()
        backend = None
        deadline = time.monotonic() + 30
        with watcher.cursor() as cur:
            while backend is None and time.monotonic() < deadline:
                cur.execute("SELECT a.pid FROM pg_stat_activity a WHERE a.application_name = 'cim-hazards' "
                            "AND a.wait_event_type = 'Lock' AND a.query ILIKE 'INSERT INTO cim.hazard_event%%'")
                row = cur.fetchone()
                backend = row[0] if row else None
                time.sleep(0.05)
            assert backend, "the transition never reached its event insert"
            cur.execute("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                        "WHERE l.pid = %s AND c.relname = 'hazard' AND l.mode = 'RowExclusiveLock' AND l.granted",
                        (backend,))
            assert cur.fetchone()[0] == 1                                # its UPDATE of the entry has run
        proc.kill()                                                      # SIGKILL mid-transaction
        proc.wait(10)
        blocker.rollback()                                               # the orphaned backend may go on …
        with watcher.cursor() as cur:                                    # … until it finds its client gone
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (backend,))
                if cur.fetchone()[0] == 0:
                    break
                time.sleep(0.1)
        thread.join(30)
        assert answers and answers[0] != 200
        assert _state(hz_conn, e["id"]) == before                       # old state, no event, no audit row
    finally:
        blocker.close()
        watcher.close()
        if proc.poll() is None:
            proc.kill()

    proc, base = _start(hz_url, tmp_path)                                # the same transition, nobody in the way
    try:
        res = httpx.post(f"{base}/api/hazards/{e['id']}/transition", json=body, headers=headers, timeout=60)
        assert res.status_code == 200, res.text
    finally:
        proc.kill()
        proc.wait(10)
    status, version, _, events, audits = _state(hz_conn, e["id"])
    assert (status, version, events, audits) == ("rectifying", before[1] + 1, 1, 1)   # new state with its event
