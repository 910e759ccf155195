"""The embedded default database: a project-local PostgreSQL + PostGIS cluster.

Used when ``CIM_DATABASE_URL`` is unset. The cluster lives under ``$CIM_HOME/pg`` (data,
log, socket and a ``cluster.json`` with port and credentials), uses the system PostgreSQL
binaries, listens on 127.0.0.1 only on a free port (plus the addresses set explicitly in
``CIM_DB_LISTEN``), and runs as an unprivileged OS user when started by root (PostgreSQL
refuses to run as root). It is configured for logical replication, so an instance can publish
to or subscribe from the other tiers (docs/tiers.md); ``pg_hba.conf`` entries for the
replication role are kept in one marked block (:meth:`EmbeddedCluster.set_hba_block`).
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cim.errors import ConfigError, DatabaseUnavailable

log = logging.getLogger(__name__)

DB_NAME = "cim"
DB_SUPERUSER = "cim"
FALLBACK_OS_USER = "cimdb"
LOOPBACK = "127.0.0.1"
HBA_BEGIN = "# BEGIN cim tier: replication role (managed by `cim tier publish`)"
HBA_END = "# END cim tier"
_ADDRESS = re.compile(r"^(\*|[A-Za-z0-9][A-Za-z0-9.:-]{0,252})$")

# Server settings for a 2-core machine serving tiles: small parallelism, no JIT (it only adds
# latency to short tile queries), enough shared buffers to keep a county in memory.
# Logical replication between tiers (PostgreSQL 15 §31.10 configuration settings), sized for a
# province subscribing to ~120 counties directly on a small server:
#   wal_level = logical                  publications need it (WAL archiving needs ≥ replica too);
#   max_replication_slots = 160          on a subscriber: one replication origin per subscription
#                                        (120) plus table-sync reserve; on a publisher: one slot per
#                                        subscriber plus a temporary slot per table-sync worker;
#   max_wal_senders = 32                 a county or city serves its city and province (apply and
#                                        table-sync connections, ≤ 3 each during the initial copy),
#                                        a standby or pg_basebackup: ample headroom;
#   max_logical_replication_workers = 136  120 apply workers + 16 table-sync workers;
#   max_sync_workers_per_subscription = 2  (the default) initial copies run two tables at a time;
#   max_worker_processes = 152           136 replication workers + the launcher + 8 parallel-query
#                                        workers + margin. An idle apply worker holds a few MB.
# WAL: a delivery of 1 M features writes about 1 GB of WAL in one transaction. max_wal_size
# spaces checkpoints beyond one such load; min_wal_size keeps that much of spent WAL files for
# recycling, so the next load does not create and zero-fill new 16 MB segments (wait event
# WALInitWrite) as it goes.
SERVER_CONF = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "100",
    "shared_buffers": "'512MB'",
    "work_mem": "'32MB'",
    "maintenance_work_mem": "'256MB'",
    "effective_cache_size": "'4GB'",
    "max_parallel_workers_per_gather": "2",
    "jit": "off",
    "random_page_cost": "1.1",
    "wal_level": "logical",
    "max_replication_slots": "160",
    "max_wal_senders": "32",
    "max_logical_replication_workers": "136",
    "max_sync_workers_per_subscription": "2",
    "max_worker_processes": "152",
    "max_wal_size": "'2GB'",
    "min_wal_size": "'1GB'",
    "logging_collector": "off",
    "log_min_messages": "warning",
}


@dataclass(frozen=True)
class ClusterInfo:
    """What a client needs to reach the cluster."""

    port: int
    user: str
    password: str
    dbname: str = DB_NAME
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        """libpq URL (password included: the file holding it is mode 600)."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.dbname}"


def find_bindir(explicit: Path | None = None) -> Path:
    """Locate the PostgreSQL server binaries (newest Debian major first, then PATH)."""
    if explicit:
        if (explicit / "initdb").exists():
            return explicit
        raise ConfigError(f"CIM_PG_BINDIR 中没有 initdb：{explicit}", f"no initdb in CIM_PG_BINDIR {explicit}")
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        majors = sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name), reverse=True)
        for major in majors:
            if (major / "bin" / "initdb").exists():
                return major / "bin"
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise DatabaseUnavailable(
        "未找到 PostgreSQL 服务器程序（initdb），请先运行 make demo 或安装 postgresql",
        "PostgreSQL server binaries (initdb) not found; run `make demo` or install postgresql",
    )


def listen_addresses(listen: str | None) -> str:
    """``listen_addresses`` for ``CIM_DB_LISTEN``: 127.0.0.1 always, plus the addresses given.

    Each address is ``*``, a host name or an IP literal; anything else is refused, so the value
    can be written into the server configuration safely.
    """
    out = [LOOPBACK]
    for item in (listen or "").split(","):
        addr = item.strip()
        if not addr or addr in out:
            continue
        if not _ADDRESS.match(addr):
            raise ConfigError(f"CIM_DB_LISTEN 中的地址不合法：{addr[:60]}", f"invalid address in CIM_DB_LISTEN: {addr[:60]}")
        out.append(addr)
    return "*" if "*" in out else ",".join(out)


class EmbeddedCluster:
    """Create, start, stop and describe the project-local cluster under ``home``.

    ``listen`` adds addresses to 127.0.0.1 (``CIM_DB_LISTEN``); ``extra_conf`` overrides server
    settings (tests run several small clusters side by side).
    """

    def __init__(self, home: Path, bindir: Path | None = None, os_user: str | None = None, *,
                 listen: str | None = None, extra_conf: dict[str, str] | None = None) -> None:
        self.listen = listen_addresses(listen)
        self.extra_conf = dict(extra_conf or {})
        self.home = Path(home).expanduser().resolve()
        self.root = self.home / "pg"
        self.data = self.root / "data"
        self.run_dir = self.root / "run"
        self.info_file = self.root / "cluster.json"
        self._bindir = bindir
        self._os_user = os_user

    # -- paths and users -------------------------------------------------------------------

    @property
    def bindir(self) -> Path:
        """PostgreSQL binaries in use."""
        if self._bindir is None or not (self._bindir / "initdb").exists():
            self._bindir = find_bindir(self._bindir)
        return self._bindir

    def _run_as(self) -> str | None:
        """OS user to run the server as: None when not root, else an unprivileged account."""
        if os.geteuid() != 0:
            return None
        if self._os_user:
            return self._os_user
        for name in ("postgres", FALLBACK_OS_USER):
            try:
                pwd.getpwnam(name)
                return name
            except KeyError:
                continue
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        FALLBACK_OS_USER], check=True)
        return FALLBACK_OS_USER

    def _cmd(self, args: list[str]) -> list[str]:
        user = self._run_as()
        return ["runuser", "-u", user, "--", *args] if user else args

    def _prepare_dirs(self) -> None:
        """Create the directories and hand them to the server's OS user.

        Parent directories need search permission for that user, so ``home`` and ``root`` are
        made world-traversable (not readable); data and run stay private to the server.
        """
        for d in (self.home, self.root, self.run_dir):
            d.mkdir(parents=True, exist_ok=True)
        user = self._run_as()
        if user:
            ent = pwd.getpwnam(user)
            for d in (self.root, self.run_dir):
                os.chown(d, ent.pw_uid, ent.pw_gid)
            for d in (self.home, self.root):
                os.chmod(d, os.stat(d).st_mode | 0o011)
            probe = subprocess.run(["runuser", "-u", user, "--", "test", "-w", str(self.root)])
            if probe.returncode != 0:
                raise DatabaseUnavailable(
                    f"数据库用户 {user} 无法访问 {self.root}，请把 CIM_HOME 放在它可访问的目录",
                    f"database OS user {user} cannot reach {self.root}; put CIM_HOME somewhere it can traverse",
                )
        self.run_dir.chmod(0o700)

    # -- lifecycle -------------------------------------------------------------------------

    def info(self) -> ClusterInfo | None:
        """Stored connection info, or None before the cluster was created."""
        if not self.info_file.exists():
            return None
        raw = json.loads(self.info_file.read_text())
        return ClusterInfo(port=raw["port"], user=raw["user"], password=raw["password"], dbname=raw["dbname"])

    def _write_info(self, info: ClusterInfo) -> None:
        tmp = self.info_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"port": info.port, "user": info.user, "password": info.password,
                                   "dbname": info.dbname}))
        tmp.chmod(0o600)
        tmp.replace(self.info_file)

    def exists(self) -> bool:
        """True once initdb has run."""
        return (self.data / "PG_VERSION").exists()

    def is_running(self) -> bool:
        """Ask pg_ctl whether the server is up."""
        if not self.exists():
            return False
        res = subprocess.run(self._cmd([str(self.bindir / "pg_ctl"), "status", "-D", str(self.data)]),
                             capture_output=True, text=True)
        return res.returncode == 0

    def init(self) -> ClusterInfo:
        """Run initdb with a random superuser password (idempotent)."""
        self._prepare_dirs()
        info = self.info()
        if self.exists() and info:
            return info
        password = secrets.token_urlsafe(24)
        pwfile = self.root / "pwfile"
        pwfile.write_text(password + "\n")
        user = self._run_as()
        if user:
            ent = pwd.getpwnam(user)
            os.chown(pwfile, ent.pw_uid, ent.pw_gid)
        pwfile.chmod(0o600)
        try:
            res = subprocess.run(self._cmd([
                str(self.bindir / "initdb"), "-D", str(self.data), "-U", DB_SUPERUSER,
                "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
                f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions",
            ]), capture_output=True, text=True)
        finally:
            pwfile.unlink(missing_ok=True)
        if res.returncode != 0:
            raise DatabaseUnavailable("initdb 失败：" + res.stderr[-500:], "initdb failed: " + res.stderr[-500:])
        info = ClusterInfo(port=free_port(), user=DB_SUPERUSER, password=password)
        self._write_info(info)
        return info

    def _write_conf(self, port: int) -> None:
        conf = dict(SERVER_CONF, port=str(port), unix_socket_directories=f"'{self.run_dir}'",
                    listen_addresses=f"'{self.listen}'")
        conf.update(self.extra_conf)
        text = "".join(f"{k} = {v}\n" for k, v in conf.items())
        target = self.data / "cim.conf"
        self._write_as_server_user(target, text)
        main = self.data / "postgresql.conf"
        if "include_if_exists = 'cim.conf'" not in main.read_text():
            self._write_as_server_user(main, main.read_text() + "\ninclude_if_exists = 'cim.conf'\n")

    def _write_as_server_user(self, path: Path, text: str) -> None:
        path.write_text(text)
        user = self._run_as()
        if user:
            ent = pwd.getpwnam(user)
            os.chown(path, ent.pw_uid, ent.pw_gid)

    def start(self) -> ClusterInfo:
        """Create if needed, start on a free port, and make sure the database has PostGIS."""
        info = self.init()
        if not self.is_running():
            if not port_is_free(info.port):
                info = ClusterInfo(port=free_port(), user=info.user, password=info.password, dbname=info.dbname)
                self._write_info(info)
            self._write_conf(info.port)
            self._prepare_dirs()
            res = subprocess.run(self._cmd([
                str(self.bindir / "pg_ctl"), "start", "-D", str(self.data), "-w", "-t", "60",
                "-l", str(self.root / "server.log"),
            ]), capture_output=True, text=True)
            if res.returncode != 0:
                tail = self._log_tail()
                raise DatabaseUnavailable("本地数据库启动失败：" + tail, "local database failed to start: " + tail)
        self._ensure_database(info)
        return info

    def _log_tail(self) -> str:
        try:
            return (self.root / "server.log").read_text(errors="replace")[-800:]
        except OSError:
            return ""

    def _ensure_database(self, info: ClusterInfo) -> None:
        import psycopg2

        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(host=info.host, port=info.port, user=info.user,
                                        password=info.password, dbname="postgres", connect_timeout=5)
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (info.dbname,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{info.dbname}"')
        conn.close()
        conn = psycopg2.connect(info.url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        conn.close()

    def stop(self) -> bool:
        """Stop the server (fast shutdown). Returns False if it was not running."""
        if not self.is_running():
            return False
        subprocess.run(self._cmd([str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data), "-m", "fast",
                                  "-w", "-t", "60"]), check=True, capture_output=True)
        return True

    def destroy(self) -> None:
        """Stop and delete the cluster (tests only)."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def listen_addresses(self) -> list[str]:
        """Addresses the running server reports it listens on."""
        conf = (self.data / "cim.conf").read_text() if (self.data / "cim.conf").exists() else ""
        m = re.search(r"listen_addresses = '([^']*)'", conf)
        return [a.strip() for a in m.group(1).split(",")] if m else []

    def restart_needed(self) -> bool:
        """True when the running server's configuration differs from what a start would write
        (e.g. ``CIM_DB_LISTEN`` changed): listen addresses are read at server start only."""
        return self.is_running() and self.listen_addresses() != self.listen.split(",")

    def set_hba_block(self, lines: list[str]) -> None:
        """Replace the managed block of ``pg_hba.conf`` with ``lines`` and reload the server.

        The block is appended after initdb's entries (which only admit local and loopback
        connections), so it only adds the remote addresses given to the replication role.
        """
        path = self.data / "pg_hba.conf"
        text = path.read_text()
        if HBA_BEGIN in text:
            head, _, rest = text.partition(HBA_BEGIN)
            _, _, tail = rest.partition(HBA_END)
            text = head.rstrip("\n") + "\n" + tail.lstrip("\n")
        if lines:
            text = text.rstrip("\n") + "\n" + "\n".join([HBA_BEGIN, *lines, HBA_END]) + "\n"
        self._write_as_server_user(path, text)
        if self.is_running():
            subprocess.run(self._cmd([str(self.bindir / "pg_ctl"), "reload", "-D", str(self.data)]),
                           check=True, capture_output=True)

    def hba_block(self) -> list[str]:
        """Lines of the managed block of ``pg_hba.conf``."""
        text = (self.data / "pg_hba.conf").read_text() if (self.data / "pg_hba.conf").exists() else ""
        if HBA_BEGIN not in text:
            return []
        body = text.partition(HBA_BEGIN)[2].partition(HBA_END)[0]
        return [line for line in body.splitlines() if line.strip()]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port.

    SO_REUSEADDR as PostgreSQL sets it: connections of a just-stopped server left in TIME_WAIT do
    not count, so a restarted cluster keeps its port (subscribers of other tiers connect to it).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
