"""A `cim ingest` process killed with SIGKILL in the middle of its load leaves the database exactly
as before (rows, data versions, delivery rows), and a re-run then succeeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: sibling helpers
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "ingest"))
from loadkit import county_code, snapshot  # noqa: E402
from synth import counts, write_delivery  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CIM = Path(sys.executable).parent / "cim"
POINTS, BUILDINGS = 60_000, 30_000


def _loading_backend(cur) -> tuple[int, str] | None:
    """The ingest backend once its transaction has written (an xid) and is staging or swapping rows."""
    cur.execute("SELECT pid, query FROM pg_stat_activity WHERE application_name = 'cim-ingest' "
                "AND backend_xid IS NOT NULL AND state = 'active' "
                "AND (query ILIKE 'COPY%%' OR query ILIKE 'INSERT INTO cim.\"%%' OR query ILIKE 'WITH u AS%%')")
    row = cur.fetchone()
    return (row[0], row[1][:60]) if row else None


def _wait_backend_gone(cur, deadline: float) -> None:
    while time.monotonic() < deadline:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cim-ingest'")
        if cur.fetchone()[0] == 0:
            return
        time.sleep(0.05)
    raise AssertionError("the killed loader's backend did not go away")


@pytest.mark.slow
def test_sigkill_mid_load_changes_nothing_and_rerun_succeeds(db_url, cli, conn, tmp_path_factory, tmp_path):
    data = tmp_path_factory.mktemp("kill-delivery")
    small = write_delivery(data, points=200, buildings=50, name="baseline.zip")
    big = write_delivery(data, points=POINTS, buildings=BUILDINGS, name="big.zip")
    county = county_code()
    env = {"CIM_HOME": str(tmp_path)}
    base = cli("ingest", str(small), "--county", county, "--json", env=env)
    assert base.returncode == 0, base.stderr
    before = snapshot(conn)

    proc = subprocess.Popen([str(CIM), "ingest", str(big), "--county", county], cwd=ROOT,
                            env=dict(os.environ, CIM_DATABASE_URL=db_url, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watch = psycopg2.connect(db_url)
    watch.autocommit = True
    cur = watch.cursor()
    seen = None
    deadline = time.monotonic() + 600
    while seen is None and proc.poll() is None and time.monotonic() < deadline:
        seen = _loading_backend(cur)
        if seen is None:
            time.sleep(0.01)
    assert seen is not None, f"never saw the load in progress (exit {proc.poll()}): {proc.communicate()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    _wait_backend_gone(cur, time.monotonic() + 120)
    watch.close()

    after = snapshot(conn)
    assert after == before, f"killed during {seen[1]!r}"

    rerun = cli("ingest", str(big), "--county", county, "--json", env=env)
    assert rerun.returncode == 0, rerun.stderr
    with conn.cursor() as c:
        c.execute("SELECT id, counts FROM cim.delivery WHERE county_code = %s AND state = 'current'", (county,))
        rows = c.fetchall()
    conn.rollback()
    assert len(rows) == 1 and rows[0][1] == counts(POINTS, BUILDINGS)
