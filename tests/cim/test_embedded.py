"""The embedded cluster: created, started, reports its URL, listens on 127.0.0.1 only, stops."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg2
import pytest

from cim.embedded import EmbeddedCluster

CIM = str(Path(sys.executable).parent / "cim")


@pytest.fixture
def home():
    d = Path(tempfile.mkdtemp(prefix="cim-home-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    EmbeddedCluster(d).destroy()
    shutil.rmtree(d, ignore_errors=True)


def _run(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CIM_DATABASE_URL"}
    env["CIM_HOME"] = str(home)
    return subprocess.run([CIM, "db", *args], capture_output=True, text=True, env=env, timeout=300)


def test_cli_lifecycle(home):
    up = _run(home, "up")
    assert up.returncode == 0, up.stderr
    assert "0001_core.sql" in up.stdout

    status = _run(home, "status", "--json")
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert info["running"] is True and info["external"] is False
    assert info["listen"] == ["127.0.0.1"]
    assert all(info["migrations"].values())

    url = _run(home, "url").stdout.strip()
    assert url.startswith("postgresql://cim:") and "@127.0.0.1:" in url
    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute("SHOW listen_addresses")
        assert cur.fetchone()[0] == "127.0.0.1"
        cur.execute("SELECT current_user, postgis_lib_version() IS NOT NULL")
        assert cur.fetchone() == ("cim", True)
        cur.execute("SELECT count(*) FROM cim.dict_network")
        assert cur.fetchone()[0] > 8
    conn.close()

    port = info["port"]
    # nothing answers on the machine's other addresses
    for addr in _non_loopback_addresses():
        with socket.socket() as s:
            s.settimeout(1)
            assert s.connect_ex((addr, port)) != 0, f"cluster reachable on {addr}"

    # credentials stay private to the operator
    assert (home / "pg" / "cluster.json").stat().st_mode & 0o077 == 0

    again = _run(home, "up")  # idempotent
    assert again.returncode == 0 and "up to date" in again.stdout

    down = _run(home, "down")
    assert down.returncode == 0 and "stopped" in down.stdout
    stopped = _run(home, "status", "--json")
    assert json.loads(stopped.stdout)["running"] is False and stopped.returncode == 1
    assert _run(home, "down").stdout.strip().endswith("not running")

    restarted = _run(home, "up")  # data survives a restart
    assert restarted.returncode == 0
    assert json.loads(_run(home, "status", "--json").stdout)["running"] is True


def test_runs_unprivileged_when_root(home):
    cluster = EmbeddedCluster(home)
    cluster.start()
    pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
    uid = os.stat(f"/proc/{pid}").st_uid
    if os.geteuid() == 0:
        assert uid != 0
    else:
        assert uid == os.geteuid()
    assert cluster.stop() is True


def test_url_without_cluster_is_a_clear_error(home):
    res = _run(home, "url")
    assert res.returncode == 2
    assert "cim db up" in res.stderr and "本地数据库" in res.stderr


def test_external_url_is_used_and_cluster_untouched(home, db_url):
    env = dict(os.environ, CIM_HOME=str(home), CIM_DATABASE_URL=db_url)
    res = subprocess.run([CIM, "db", "status", "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["external"] is True
    assert not (home / "pg").exists()


def _non_loopback_addresses() -> list[str]:
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    return [a for a in out if ":" not in a and not a.startswith("127.")]
