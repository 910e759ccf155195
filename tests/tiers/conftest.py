"""Three embedded clusters linked as tiers: two counties and the province above them.

- 鼎城区 ``430703`` and 安乡县 ``430721``: county instances, each publishing its model;
- 湖南省 ``430000``: the province, subscribed to both counties directly.

Each instance is a real :class:`cim.embedded.EmbeddedCluster` (wal_level = logical) under a
home of its own, given its identity, publication and subscriptions by the real ``cim tier``
commands, and served by the real app (uvicorn in a thread, public reads, short heartbeat
thresholds so a stopped county turns red within seconds). Start-up cost is kept small: one
cluster is created and migrated, stopped and copied for the other two (same catalogue, own
ports and identities), with small shared buffers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import pytest
import testkit

from cim.auth import CLI_PRINCIPAL
from cim.embedded import EmbeddedCluster, free_port
from cim.migrate import prepare_database
from cim.settings import (
    ApiSettings,
    AuthSettings,
    DatabaseSettings,
    IngestSettings,
    Settings,
    TierSettings,
    TileSettings,
)
from cim.tiers import REPLICATED
from tests.ingest import loadkit as loader
from tests.tiers import kit
from tests.web.conftest import page, web_dist  # noqa: F401 - fixtures for the browser test

ROOT = Path(__file__).resolve().parents[2]
CIM = str(Path(sys.executable).parent / "cim")
SMALL = {"shared_buffers": "'64MB'", "max_parallel_workers_per_gather": "0", "max_sync_workers_per_subscription": "4"}
TIER = TierSettings(heartbeat_s=0.5, amber_after_s=3, red_after_s=6, lag_amber_s=3, lag_red_s=6)
COUNTIES = {"430703": "鼎城区", "430721": "安乡县"}
PROVINCE = ("430000", "湖南省")


@dataclass
class Instance:
    """One platform: its cluster, home, database URL and (once started) its API."""

    code: str
    name: str
    home: Path
    cluster: EmbeddedCluster
    url: str = ""
    api: str = ""
    server: object = None
    thread: threading.Thread | None = None
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cim-tier-files-", dir="/tmp")))

    def connect(self):
        """A new psycopg2 connection (caller closes it)."""
        return psycopg2.connect(self.url)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """``cim …`` against this instance's embedded cluster (CIM_HOME)."""
        env = {k: v for k, v in os.environ.items() if k != "CIM_DATABASE_URL"}
        env["CIM_HOME"] = str(self.home)
        res = subprocess.run([CIM, *args], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
        if check and res.returncode != 0:
            raise AssertionError(f"cim {' '.join(args)} at {self.code} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res

    def load(self, batches, county: str | None = None) -> int:
        """Load a delivery through the real loader; returns its id."""
        conn = self.connect()
        try:
            res = loader.load(conn, kit.delivery(self.tmp, batches, county or self.code), principal=CLI_PRINCIPAL,
                              archive_dir=self.home / "archive")
        finally:
            conn.close()
        return res.delivery_id

    def scalar(self, sql: str, params: tuple = ()):
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                row = cur.fetchone()
            return row[0] if row else None
        finally:
            conn.close()

    def start_api(self, dist: Path) -> None:
        import uvicorn

        from api.app import create_app

        port = free_port()
        settings = Settings(db=DatabaseSettings(database_url=self.url, home=self.home, pool_max=4),
                            auth=AuthSettings(public_read=True), api=ApiSettings(web_root=dist, port=port, task_threads=1),
                            ingest=IngestSettings(archive_dir=self.home / "archive"),
                            tiles=TileSettings(threed_dir=self.home / "3dtiles"), tier=TIER)
        self.server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                                    log_level="error", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        self.api = f"http://127.0.0.1:{port}"
        wait_for(lambda: _healthy(self.api), 60, f"the API of {self.code} did not start")

    def stop_api(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            self.thread.join(timeout=15)


_healthy = testkit.healthy


def wait_for(check, timeout_s: float, message: str, poll_s: float = 0.2):
    """Poll ``check()`` until it returns something truthy (returned) or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(poll_s)


@dataclass
class Tiers:
    """The three linked instances."""

    a: Instance
    b: Instance
    province: Instance
    urls: dict[str, str]

    @property
    def counties(self) -> list[Instance]:
        return [self.a, self.b]


def _clone(template: Path, home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o755)
    subprocess.run(["cp", "-a", str(template / "pg"), str(home / "pg")], check=True)


@pytest.fixture(scope="session")
def tiers_net(web_dist):  # noqa: F811 - the browser test's fixture
    """Two county instances and the province, linked by ``cim tier``, each with its API running."""
    root = Path(tempfile.mkdtemp(prefix="cim-tiers-", dir="/tmp"))
    root.chmod(0o755)
    homes = {code: root / code for code in (*COUNTIES, PROVINCE[0])}
    first = homes[PROVINCE[0]]
    first.mkdir()
    first.chmod(0o755)
    template = EmbeddedCluster(first, extra_conf=SMALL)
    prepare_database(template.start().url)
    template.stop()
    for code in COUNTIES:
        _clone(first, homes[code])
    inst = {}
    for code, home in homes.items():
        cluster = EmbeddedCluster(home, extra_conf=SMALL)
        name = COUNTIES.get(code) or PROVINCE[1]
        inst[code] = Instance(code, name, home, cluster, url=cluster.start().url)
    a, b, prov = inst["430703"], inst["430721"], inst[PROVINCE[0]]
    pool = ThreadPoolExecutor(3)   # the commands of different instances run side by side
    try:
        list(pool.map(lambda i: i.cli("tier", "init", i.code, "--name", i.name), inst.values()))
        for c in (a, b):   # each county's model before it publishes: the initial copy brings it
            c.load([kit.admin_area(c.code, c.name)])
            c.load([kit.buildings(c.code, 5, tag=f"B{c.code}"), *kit.pipes(c.code, 6, tag=f"J{c.code}-")])
        urls = {}
        for c, res in zip((a, b), pool.map(lambda c: c.cli("tier", "publish", "--json"), (a, b)), strict=True):
            out = json.loads(res.stdout)
            assert out["password"] and out["port"] == c.cluster.info().port
            urls[c.code] = out["url"]
        list(pool.map(lambda c: prov.cli("tier", "subscribe", urls[c.code], "--county", c.code, "--wait", "0"), (a, b)))
        list(pool.map(lambda i: i.start_api(web_dist), inst.values()))
        wait_for(lambda: prov.scalar("SELECT count(*) = 2 * %s AND bool_and(srsubstate = 'r') FROM pg_subscription_rel",
                                     (len(REPLICATED),)), 90, "the initial copy did not finish")
        yield Tiers(a, b, prov, urls)
    finally:
        list(pool.map(lambda i: i.stop_api(), inst.values()))
        pool.shutdown()
        prov.cluster.destroy()   # the subscriber first: its workers stop calling the publishers
        list(ThreadPoolExecutor(2).map(lambda c: c.cluster.destroy(), (a, b)))
        for i in inst.values():
            shutil.rmtree(i.tmp, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
