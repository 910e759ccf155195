"""API test fixtures: known geometry in the test database and a real uvicorn server.

- ``seeded``: inserts ``tests/api/seed.sql`` (test county 990001) once for this package and
  deletes those rows afterwards; yields a dict of ids by code;
- ``server``: ``uvicorn --factory api.app:factory`` on a free port against the test database
  with public reads on; yields its base URL;
- ``start_server``: start another server with extra environment (e.g. a tiny statement timeout).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg2
import pytest
import testkit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TEST_COUNTY = "990001"
_TABLES = ("pipe_segment", "pipe_point", "building", "streetlight", "green_space", "admin_area")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def delete_seed(url: str) -> None:
    """Remove the rows of seed.sql (test county 990001)."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            for table in _TABLES:
                cur.execute(f"DELETE FROM cim.{table} WHERE county_code = %s", (TEST_COUNTY,))
        conn.commit()
    finally:
        conn.close()


def seed_known(url: str) -> dict[str, int]:
    """Insert seed.sql (after removing any earlier copy); returns {code or exp_no or pole_no: id}."""
    delete_seed(url)
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute((HERE / "seed.sql").read_text(encoding="utf-8"))
            ids: dict[str, int] = {}
            for sql in ("SELECT code, id FROM cim.building WHERE county_code = %s",
                        "SELECT code, id FROM cim.pipe_segment WHERE county_code = %s",
                        "SELECT exp_no, id FROM cim.pipe_point WHERE county_code = %s",
                        "SELECT pole_no, id FROM cim.streetlight WHERE county_code = %s",
                        "SELECT code, id FROM cim.green_space WHERE county_code = %s",
                        "SELECT code, id FROM cim.admin_area WHERE county_code = %s"):
                cur.execute(sql, (TEST_COUNTY,))
                ids.update(dict(cur.fetchall()))
            cur.execute("ANALYZE cim.building; ANALYZE cim.pipe_segment; ANALYZE cim.pipe_point; "
                        "ANALYZE cim.streetlight; ANALYZE cim.green_space; ANALYZE cim.admin_area")
        conn.commit()
    finally:
        conn.close()
    return ids


@pytest.fixture(scope="package")
def seeded(db_url) -> dict:
    """Known features (see seed.sql); returns {code or exp_no or pole_no: id}."""
    yield seed_known(db_url)
    delete_seed(db_url)


class Server:
    """A running uvicorn process."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"cim-api-test-{self.port}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "api.app:factory", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "warning"],
            cwd=ROOT, env=dict(os.environ, **env), stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        try:
            testkit.wait_healthy(self.url, proc=self.proc, log=self.log)
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate the process."""
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="package")
def start_server(db_url):
    """Factory: start a server with extra environment; all are stopped at the end."""
    started: list[Server] = []

    def start(**env: str) -> Server:
        srv = Server({"CIM_DATABASE_URL": db_url, "CIM_PUBLIC_READ": "true", **env})
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="package")
def server(seeded, start_server) -> str:
    """Base URL of a server with public reads on, over the seeded database."""
    return start_server().url


@pytest.fixture
def client(server):
    """httpx client bound to the server."""
    with httpx.Client(base_url=server, timeout=60) as c:
        yield c
