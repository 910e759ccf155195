"""Shared fixtures: a real, throwaway PostGIS for the whole test session.

By default the suite starts its own embedded cluster in a temporary directory and deletes it
afterwards. With ``CIM_TEST_DATABASE_URL`` set (a server where we may create databases) it
creates a temporary database there instead and drops it afterwards.

Fixtures for everyone:
- ``db_url``: URL of the migrated, seeded test database (also exported as
  ``CIM_DATABASE_URL`` so CLI subprocesses use it);
- ``db_settings``: a ``DatabaseSettings`` pointing at it;
- ``conn``: a psycopg2 connection, rolled back and closed after the test;
- ``cli``: run the ``cim`` program as a subprocess against the test database;
- ``artifacts``: ``tests/artifacts/`` for screenshots and reports a person may want to see.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg2
import pytest
import testkit

from cim.embedded import EmbeddedCluster
from cim.migrate import prepare_database
from cim.settings import DatabaseSettings

ROOT = Path(__file__).resolve().parent.parent
CIM_BIN = Path(sys.executable).parent / "cim"


def _external_database(base_url: str):
    name = f"cim_test_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(base_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    parts = urlparse(base_url)
    url = urlunparse(parts._replace(path="/" + name))

    def drop() -> None:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()

    return url, drop


@pytest.fixture(scope="session")
def test_cluster_home():
    """Directory of the session's embedded cluster (None when an external server is used)."""
    if os.environ.get("CIM_TEST_DATABASE_URL"):
        yield None
        return
    home = Path(tempfile.mkdtemp(prefix="cim-test-", dir="/tmp"))
    home.chmod(0o755)
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def db_url(test_cluster_home):
    """A migrated, seeded PostGIS database for the session."""
    external = os.environ.get("CIM_TEST_DATABASE_URL")
    cluster = None
    if external:
        url, cleanup = _external_database(external)
    else:
        cluster = EmbeddedCluster(test_cluster_home)
        url = cluster.start().url
        cleanup = cluster.destroy
    prepare_database(url)
    old = os.environ.get("CIM_DATABASE_URL")
    os.environ["CIM_DATABASE_URL"] = url
    yield url
    if old is None:
        os.environ.pop("CIM_DATABASE_URL", None)
    else:
        os.environ["CIM_DATABASE_URL"] = old
    cleanup()


@pytest.fixture
def db_settings(db_url) -> DatabaseSettings:
    """Settings pointing at the test database."""
    return DatabaseSettings(database_url=db_url)


@pytest.fixture
def conn(db_url):
    """A connection to the test database; uncommitted work is rolled back afterwards."""
    with testkit.connection(db_url) as c:
        yield c


@pytest.fixture
def cli(db_url):
    """Run ``cim …`` as a subprocess against the test database."""

    def run(*args: str, **kw) -> subprocess.CompletedProcess:
        return testkit.run_cim(db_url, *args, **kw)

    return run


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Folder for test artefacts (screenshots, reports)."""
    d = ROOT / "tests" / "artifacts"
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def live_app(db_url):
    """Start the real app on uvicorn on a free port; returns a function ``start(**settings) -> base_url``.

    Keyword arguments override settings groups, e.g. ``start(auth=AuthSettings(public_read=True))``;
    ``db=DatabaseSettings(...)`` serves another database than the session's. Servers are stopped
    after the test.
    """
    from api.app import create_app
    from cim.settings import AuthSettings, Settings

    servers = []

    def start(**groups) -> str:
        groups.setdefault("auth", AuthSettings(public_read=False))
        groups.setdefault("db", DatabaseSettings(database_url=db_url))
        settings = Settings(**groups)
        srv = testkit.serve(create_app(settings))
        servers.append(srv)
        return srv.url

    yield start
    for srv in servers:
        srv.stop(10)


@pytest.fixture(scope="session")
def make_database(db_url):
    """Factory for extra migrated databases on the test server, dropped at the end of the session.

    Suites that seed data of their own (tiles, 3D Tiles, web) use one so the counts other suites
    see in the shared test database stay untouched.
    """
    admin = psycopg2.connect(db_url)
    admin.autocommit = True
    names: list[str] = []

    def make(prefix: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        names.append(name)
        url = urlunparse(urlparse(db_url)._replace(path="/" + name))
        prepare_database(url)
        return url

    yield make
    with admin.cursor() as cur:
        for name in names:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.close()


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-dev-shm-usage"]


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium under Playwright, headless with software WebGL: the one browser of the
    session (Playwright's synchronous API keeps an event loop running in the main thread, so a
    second ``sync_playwright()`` in the same session would fail)."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail("Chromium from Debian (/usr/bin/chromium) is required: scripts/sysdeps.sh installs it")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()
