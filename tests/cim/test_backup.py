"""`cim backup` and `cim restore` on the real cluster: a small real delivery and a DEM loaded
through the ingest path, backed up while another session keeps writing, restored into fresh
databases under another $CIM_HOME, compared table by table, and served by the real app (the
same vector tiles and 3D Tiles as the source). Refusals: a non-empty target without --force,
a damaged backup, unusable arguments.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import httpx
import mapbox_vector_tile
import psycopg2
import pytest

from cim.auth import CLI_PRINCIPAL
from cim.backup import DUMP, MANIFEST, compare_tables, sha256_file, table_digests
from cim.embedded import EmbeddedCluster
from cim.migrate import MIGRATIONS_DIR, migrate
from cim.settings import AuthSettings, DatabaseSettings, Settings, TileSettings
from tests.conftest import CIM_BIN, ROOT

COUNTY = "430703"
DELIVERIES = ("房屋建筑调查.zip", "给水管线.zip")
TILE_LAYERS = "buildings,pipeline_segments,pipeline_points"

# A table created at run time (not by a migration), with values whose text depends on session
# settings: the manifest must find it and checksum it the same way on both sides.
PROBE_SQL = """
CREATE TABLE cim.backup_probe (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(),
                               ratio double precision, raw bytea, note text, span interval);
INSERT INTO cim.backup_probe (at, ratio, raw, note, span) VALUES
  ('2024-02-29 23:59:59.123456+08', 0.1, '\\x00ff10', '隐患台账 ledger', '1 day 02:03:04'),
  ('1999-12-31 16:00:00+00', -1e-300, NULL, NULL, NULL),
  (now(), 1.0 / 3, '\\x', E'line\\nbreak, "quoted" (paren)', '-3 months');
"""


def _run(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("CIM_DATABASE_URL", "CIM_HOME")}
    return subprocess.run([str(CIM_BIN), *args], capture_output=True, text=True, env={**base, **env},
                          timeout=timeout, cwd=ROOT)


def _env(url: str | None, home: Path) -> dict:
    return {"CIM_HOME": str(home), **({"CIM_DATABASE_URL": url} if url else {})}


def _settings(url: str, home: Path) -> Settings:
    return Settings(db=DatabaseSettings(database_url=url, home=home))


def _sets(manifest: dict, settings: Settings) -> dict:
    """The manifest's path columns with this host's folders (what restore verifies with)."""
    from cim.backup import file_set, set_root
    return {name: (str(set_root(file_set(name), settings)), info["references"])
            for name, info in manifest["file_sets"].items()}


def _digests(url: str, sets: dict, *, drop_restore_audit: bool = False) -> dict:
    """Table digests of a database; optionally as if the restore's own audit row were not there."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            if drop_restore_audit:
                cur.execute("DELETE FROM cim.audit_log WHERE action = 'restore'")
                assert cur.rowcount == 1
            return table_digests(cur, sets)
    finally:
        conn.rollback()
        conn.close()


def _scalar(url: str, sql: str, params: tuple = ()):
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params or None)
            return cur.fetchone()[0]
    finally:
        conn.close()


@pytest.fixture(scope="module")
def blank_database(db_url):
    """Factory of databases with nothing in them (not even PostGIS), dropped after the module.

    ``make(prefix, *extensions, owned=True)`` builds what a managed PostgreSQL hands over: a
    database owned by an ordinary role (no superuser), with the extensions already created by the
    administrator in ``public``; the URL then logs in as that role.
    """
    admin = psycopg2.connect(db_url)
    admin.autocommit = True
    names: list[str] = []
    roles: list[str] = []

    def make(prefix: str, *extensions: str, owned: bool = False) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        parts = urlparse(db_url)
        with admin.cursor() as cur:
            if owned:
                role, password = f"{name}_owner", uuid.uuid4().hex
                cur.execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER PASSWORD %s', (password,))
                roles.append(role)
                cur.execute(f'CREATE DATABASE "{name}" OWNER "{role}"')
            else:
                cur.execute(f'CREATE DATABASE "{name}"')
        names.append(name)
        url = urlunparse(parts._replace(path="/" + name))
        if extensions:
            conn = psycopg2.connect(url)
            conn.autocommit = True
            with conn.cursor() as cur:
                for ext in extensions:
                    cur.execute(f'CREATE EXTENSION "{ext}" SCHEMA public')
            conn.close()
        if owned:
            url = urlunparse(parts._replace(path="/" + name, netloc=f"{role}:{password}@{parts.hostname}:{parts.port}"))
        return url

    yield make
    with admin.cursor() as cur:
        for name in names:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        for role in roles:
            cur.execute(f'DROP ROLE IF EXISTS "{role}"')
    admin.close()


@pytest.fixture(scope="module")
def source(make_database, tmp_path_factory):
    """A database and $CIM_HOME holding two real deliveries (buildings, water pipes) and a DEM of
    the demo county, loaded through the ingest pipeline, plus a token and the probe table."""
    from demo.generate import generate
    from ingest import pipeline
    from ingest.dem import store_dem

    url = make_database("cim_bk_src")
    home = tmp_path_factory.mktemp("bk-src-home")
    demo = tmp_path_factory.mktemp("bk-demo")
    generate(demo, seed=7, scale=0.2, buildings=60)
    settings = _settings(url, home)
    conn = psycopg2.connect(url)
    try:
        for name in DELIVERIES:
            outcome = pipeline.run(conn, [demo / name], settings=settings, principal=CLI_PRINCIPAL, county=COUNTY)
            assert outcome.state == "loaded", (name, outcome.state)
        store_dem(conn, demo / "dem.tif", principal=CLI_PRINCIPAL, home=home)
        with conn.cursor() as cur:
            cur.execute(PROBE_SQL)
        conn.commit()
    finally:
        conn.close()
    res = _run("token", "create", "--role", "viewer", "--name", "backup-test", env=_env(url, home))
    assert res.returncode == 0, res.stderr
    return url, home


@pytest.fixture(scope="module")
def backup_dir(source, tmp_path_factory):
    """`cim backup` of the source, taken while another session keeps inserting rows."""
    url, home = source
    out = tmp_path_factory.mktemp("bk-out") / "backup"
    stop = threading.Event()
    written = []

    def writer() -> None:
        conn = psycopg2.connect(url)
        conn.autocommit = True
        with conn.cursor() as cur:
            while not stop.is_set():
                cur.execute("INSERT INTO cim.backup_probe (ratio, note) VALUES (random(), 'during backup')")
                written.append(1)
        conn.close()

    before = _scalar(url, "SELECT count(*) FROM cim.backup_probe")
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        res = _run("backup", str(out), "--json", env=_env(url, home))
    finally:
        stop.set()
        thread.join(10)
    assert res.returncode == 0, res.stderr
    after = _scalar(url, "SELECT count(*) FROM cim.backup_probe")
    summary = json.loads(res.stdout)
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    assert summary["tables"] == len(manifest["tables"]) and written
    assert before <= manifest["tables"]["cim.backup_probe"]["rows"] <= after
    return out, manifest


# --- backup --------------------------------------------------------------------------------------

def test_backup_covers_every_table_and_file(source, backup_dir):
    url, home = source
    out, manifest = backup_dir
    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute("SELECT table_schema || '.' || table_name FROM information_schema.tables "
                    "WHERE table_schema IN ('cim', 'cim_meta') AND table_type = 'BASE TABLE'")
        live = {r[0] for r in cur.fetchall()}
        cur.execute("SELECT count(*) FROM cim.building")
        buildings = cur.fetchone()[0]
        cur.execute("SELECT file_path, sha256 FROM cim.dem")
        dem_path, dem_sha = cur.fetchone()
        cur.execute("SELECT archive_path FROM cim.delivery WHERE state = 'current'")
        archived = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT actor, ok, detail FROM cim.audit_log WHERE action = 'backup' ORDER BY id DESC LIMIT 1")
        actor, ok, detail = cur.fetchone()
        cur.execute("SELECT version FROM cim_meta.schema_migration ORDER BY 1")
        versions = [r[0] for r in cur.fetchall()]
    conn.close()

    assert set(manifest["tables"]) == live and "cim.backup_probe" in live      # discovered at run time
    assert manifest["tables"]["cim.building"]["rows"] == buildings > 0
    assert manifest["tables"]["cim.api_token"]["rows"] == 1
    assert manifest["schemas"] == ["cim", "cim_meta"]
    assert [m["version"] for m in manifest["migrations"]] == versions
    assert manifest["server"]["postgis"] and manifest["server"]["postgres"].startswith("15")
    assert manifest["software"]["version"] and manifest["created_at"] and manifest["warnings"] == []

    assert (out / DUMP).read_bytes()[:5] == b"PGDMP"                          # pg_dump custom format
    assert manifest["database"]["sha256"] == sha256_file(out / DUMP)
    dem_rel = Path(dem_path).relative_to(home / "dem").as_posix()
    assert manifest["file_sets"]["dem"]["files"][dem_rel]["sha256"] == dem_sha
    assert sha256_file(out / "files" / "dem" / dem_rel) == dem_sha
    assert len(archived) == len(DELIVERIES)
    for path in archived:
        rel = Path(path).relative_to(home / "archive").as_posix()
        assert manifest["file_sets"]["archive"]["files"][rel]["sha256"] == sha256_file(Path(path))
    assert actor.startswith("cli:") and ok and detail["tables"] == len(live)


def test_backup_refuses_unusable_targets(source, backup_dir, tmp_path):
    url, home = source
    out, _ = backup_dir
    res = _run("backup", str(out), env=_env(url, home))                       # not empty
    assert res.returncode == 2 and "must be new or empty" in res.stderr and "新目录或空目录" in res.stderr
    res = _run("backup", str(home / "archive" / "bk"), env=_env(url, home))   # inside a backed-up folder
    assert res.returncode == 2 and "inside the backed-up folder" in res.stderr
    res = _run("backup", str(tmp_path / "cim.tar"), env=_env(url, home))
    assert res.returncode == 2 and "directory, not an archive" in res.stderr
    dead = urlunparse(urlparse(url)._replace(netloc=f"cim:x@127.0.0.1:{_closed_port()}"))
    res = _run("backup", str(tmp_path / "b"), env=_env(dead, home))
    assert res.returncode == 2 and "cannot connect" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b.partial-*"))


def _closed_port() -> int:
    from cim.embedded import free_port
    return free_port()


# --- restore -------------------------------------------------------------------------------------

def _tiles(url: str) -> list[tuple[int, int, int]]:
    """z15/z16 tiles over the loaded buildings and pipes."""
    w, s, e, n = (float(v) for v in _scalar(url, """
        SELECT ARRAY[ST_XMin(b), ST_YMin(b), ST_XMax(b), ST_YMax(b)] FROM (
          SELECT ST_Extent(geom) AS b FROM (SELECT geom FROM cim.building UNION ALL
                                            SELECT geom FROM cim.pipe_segment) g) x"""))
    out = []
    for z in (15, 16):
        n_ = 1 << z
        x0, x1 = int((w + 180) / 360 * n_), int((e + 180) / 360 * n_)
        y0 = int((1 - math.asinh(math.tan(math.radians(n))) / math.pi) / 2 * n_)
        y1 = int((1 - math.asinh(math.tan(math.radians(s))) / math.pi) / 2 * n_)
        out += [(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]
    return out[:40]


def _features(resp: httpx.Response) -> dict:
    if resp.status_code == 204:
        return {}
    assert resp.status_code == 200, resp.text
    decoded = mapbox_vector_tile.decode(resp.content)
    return {layer: sorted(json.dumps(f, sort_keys=True, default=str) for f in body["features"])
            for layer, body in decoded.items()}


def _contents(node: dict) -> list[str]:
    found = [node["content"]["uri"]] if "content" in node else []
    for child in node.get("children", []):
        found += _contents(child)
    return found


def _serve(live_app, url: str, home: Path) -> str:
    return live_app(db=DatabaseSettings(database_url=url, home=home), auth=AuthSettings(public_read=True),
                    tiles=TileSettings(threed_dir=home / "3dtiles"))


def test_round_trip_into_a_fresh_database_under_another_home(source, backup_dir, blank_database, live_app,
                                                             tmp_path):
    src_url, src_home = source
    out, manifest = backup_dir
    # a managed-server-like target: an ordinary role owning the database, PostGIS and pg_trgm
    # created by the administrator in public (the source has pg_trgm in cim)
    target = blank_database("cim_bk_rt", "postgis", "pg_trgm", owned=True)
    assert not _scalar(target, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    home = tmp_path / "restored-home"
    res = _run("restore", str(out), "--json", env=_env(target, home))
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert result["migrations_applied"] == [] and result["files"] == {"archive": 2, "dem": 1}
    assert set(result["paths_rewritten"]) == {"cim.dem.file_path", "cim.delivery.archive_path"}

    # counts and checksums identical (the restore adds only its own audit row)
    settings = _settings(target, home)
    after = _digests(target, _sets(manifest, settings), drop_restore_audit=True)
    assert compare_tables(manifest["tables"], after) == []
    assert _scalar(target, "SELECT count(*) FROM cim.audit_log WHERE action = 'restore' AND ok") == 1

    # file paths point at the restored copies, which hold the same bytes
    dem_path, dem_sha = _scalar(target, "SELECT ARRAY[file_path, sha256] FROM cim.dem WHERE is_current")
    assert Path(dem_path).parent == home / "dem" and sha256_file(Path(dem_path)) == dem_sha
    for path in _scalar(target, "SELECT array_agg(archive_path) FROM cim.delivery WHERE archive_path IS NOT NULL"):
        assert Path(path).is_relative_to(home / "archive") and Path(path).is_file()
    assert not list(home.rglob(".restore-*"))

    # the search index follows pg_trgm where the target has it
    assert _scalar(target, """
        SELECT n.nspname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_opclass o ON o.oid = i.indclass[0] JOIN pg_namespace n ON n.oid = o.opcnamespace
        WHERE c.relname = 'building_search_trgm_idx'""") == "public"

    # migrating a same-version restore changes nothing
    res = _run("db", "migrate", env=_env(target, home))
    assert res.returncode == 0 and "up to date" in res.stdout, res.stderr
    assert compare_tables(manifest["tables"], _digests(target, _sets(manifest, settings),
                                                       drop_restore_audit=True)) == []

    # the server starts on the restored database and serves the same tiles
    a, b = _serve(live_app, src_url, src_home), _serve(live_app, target, home)
    with httpx.Client(timeout=120) as http:
        seen = 0
        for z, x, y in _tiles(src_url):
            ra = http.get(f"{a}/tiles/{TILE_LAYERS}/{z}/{x}/{y}.mvt")
            rb = http.get(f"{b}/tiles/{TILE_LAYERS}/{z}/{x}/{y}.mvt")
            assert ra.status_code == rb.status_code
            fa = _features(ra)
            assert fa == _features(rb), (z, x, y)
            seen += sum(len(v) for v in fa.values())
        assert seen > 0
        for layer in ("buildings", "pipelines"):
            ta = http.get(f"{a}/3dtiles/{layer}/tileset.json")
            tb = http.get(f"{b}/3dtiles/{layer}/tileset.json")
            assert ta.status_code == tb.status_code == 200 and ta.json() == tb.json()
            uris = _contents(ta.json()["root"])
            assert uris
            for uri in uris[:3]:
                ga = http.get(f"{a}/3dtiles/{layer}/{uri}")
                gb = http.get(f"{b}/3dtiles/{layer}/{uri}")
                assert ga.status_code == gb.status_code == 200 and ga.content == gb.content


def test_restore_refuses_a_non_empty_database(source, backup_dir):
    url, home = source
    out, manifest = backup_dir
    before = _digests(url, _sets(manifest, _settings(url, home)))
    res = _run("restore", str(out), env=_env(url, home))
    assert res.returncode == 1, res.stderr
    assert "not empty" in res.stderr and "不是空的" in res.stderr and "--force" in res.stderr
    assert _digests(url, _sets(manifest, _settings(url, home))) == before


def test_force_replaces_a_database_and_stale_3d_builds(backup_dir, make_database, tmp_path):
    out, manifest = backup_dir
    target = make_database("cim_bk_force")        # migrated: platform tables exist
    conn = psycopg2.connect(target)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO cim.building (code, county_code, geom) VALUES ('LEFTOVER', '430000', "
                    "ST_Multi(ST_MakeEnvelope(111, 27, 111.0001, 27.0001, 4490)))")
    conn.commit()
    conn.close()
    home = tmp_path / "home"
    marker = home / "3dtiles" / "buildings" / "build.json"
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"versions": {"building": 2}, "format": "glb", "tiles": 1}))

    res = _run("restore", str(out), "--force", env=_env(target, home))
    assert res.returncode == 0, res.stderr
    assert "WARNING" in res.stderr and "--force" in res.stderr
    assert compare_tables(manifest["tables"], _digests(target, _sets(manifest, _settings(target, home)),
                                                       drop_restore_audit=True)) == []
    assert _scalar(target, "SELECT count(*) FROM cim.building WHERE code = 'LEFTOVER'") == 0
    assert not marker.exists()


def test_a_damaged_backup_is_refused_and_nothing_is_written(backup_dir, blank_database, tmp_path):
    out, manifest = backup_dir
    target = blank_database("cim_bk_bad")
    home = tmp_path / "home"
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    zipped = next((bad / "files" / "archive").rglob("*.zip"))
    data = bytearray(zipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    zipped.write_bytes(bytes(data))

    for args in (("restore", str(bad)), ("restore", str(bad), "--check")):
        res = _run(*args, env=_env(target, home))
        assert res.returncode == 1, res.stderr
        assert "damaged or was altered" in res.stderr and "已损坏或被改动" in res.stderr
        assert zipped.name in res.stderr
    assert _scalar(target, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'cim%'") == 0
    assert not list(home.rglob("*.zip")) and not list(home.rglob(".restore-*"))

    shutil.copyfile(out / "files" / "archive" / zipped.relative_to(bad / "files" / "archive"), zipped)
    dump = bytearray((bad / DUMP).read_bytes())                              # a damaged dump
    dump[len(dump) // 2] ^= 0xFF
    (bad / DUMP).write_bytes(bytes(dump))
    res = _run("restore", str(bad), env=_env(target, home))
    assert res.returncode == 1 and DUMP in res.stderr

    (bad / MANIFEST).write_text("{not json", encoding="utf-8")
    res = _run("restore", str(bad), env=_env(target, home))
    assert res.returncode == 2 and "not valid JSON" in res.stderr
    res = _run("restore", str(tmp_path / "nowhere"), env=_env(target, home))
    assert res.returncode == 2 and "no such backup directory" in res.stderr
    assert _scalar(target, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'cim%'") == 0


def test_a_restore_differing_from_its_manifest_fails_and_force_redoes_it(backup_dir, blank_database, tmp_path):
    """The manifest itself carries no checksum of its own: an edited row count passes the file check,
    and the table check after pg_restore catches it."""
    out, manifest = backup_dir
    edited = tmp_path / "edited"
    shutil.copytree(out, edited)
    wrong = json.loads((edited / MANIFEST).read_text(encoding="utf-8"))
    wrong["tables"]["cim.building"]["rows"] += 1
    (edited / MANIFEST).write_text(json.dumps(wrong), encoding="utf-8")
    target = blank_database("cim_bk_mismatch")
    home = tmp_path / "home"

    res = _run("restore", str(edited), env=_env(target, home))
    assert res.returncode == 1, res.stderr
    assert "cim.building" in res.stderr and "differs from the backup manifest" in res.stderr
    assert "--force" in res.stderr and "与备份清单不一致" in res.stderr
    assert _scalar(target, "SELECT count(*) FROM cim.audit_log WHERE action = 'restore' AND NOT ok") == 1

    res = _run("restore", str(out), env=_env(target, home))            # not empty any more
    assert res.returncode == 1 and "--force" in res.stderr
    res = _run("restore", str(out), "--force", env=_env(target, home))
    assert res.returncode == 0, res.stderr
    assert compare_tables(manifest["tables"], _digests(target, _sets(manifest, _settings(target, home)),
                                                       drop_restore_audit=True)) == []


def test_an_older_backup_is_migrated_on_restore(make_database, blank_database, tmp_path):
    """A backup taken before the newest migrations: restored as it was, then migrated."""
    old = tmp_path / "migrations"
    old.mkdir()
    files = sorted(MIGRATIONS_DIR.glob("*.sql"))
    for f in files[:-1]:
        shutil.copyfile(f, old / f.name)
    source = blank_database("cim_bk_old_src")
    conn = psycopg2.connect(source)
    with conn.cursor() as cur:
        cur.execute("CREATE EXTENSION postgis")
    conn.commit()
    migrate(conn, old)
    conn.close()
    home = tmp_path / "home"
    res = _run("backup", str(tmp_path / "old-backup"), env=_env(source, home))
    assert res.returncode == 0, res.stderr

    target = blank_database("cim_bk_old_dst")
    res = _run("restore", str(tmp_path / "old-backup"), "--json", env=_env(target, tmp_path / "home2"))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["migrations_applied"] == [files[-1].name]
    status = _run("db", "status", "--json", env=_env(target, tmp_path / "home2"))
    assert all(json.loads(status.stdout)["migrations"].values())


def test_embedded_cluster_round_trip(backup_dir):
    """With CIM_DATABASE_URL unset, restore creates and starts the embedded cluster, and a backup
    of it holds the same tables (plus the restore's audit row)."""
    out, manifest = backup_dir
    home = Path(tempfile.mkdtemp(prefix="cim-bk-home-", dir="/tmp"))
    home.chmod(0o755)
    try:
        res = _run("restore", str(out), env=_env(None, home))
        assert res.returncode == 0, res.stderr
        assert "creating the local cluster" in res.stderr and (home / "pg" / "cluster.json").exists()
        res = _run("backup", str(home.parent / f"{home.name}-again"), env=_env(None, home))
        assert res.returncode == 0, res.stderr
        again = json.loads((home.parent / f"{home.name}-again" / MANIFEST).read_text(encoding="utf-8"))
        assert again["source"]["embedded"] is True
        problems = compare_tables(manifest["tables"], again["tables"])
        assert problems == [next(p for p in problems if p.startswith("cim.audit_log:"))]
        assert again["tables"]["cim.audit_log"]["rows"] == manifest["tables"]["cim.audit_log"]["rows"] + 1
        assert {k: set(v["files"]) for k, v in again["file_sets"].items()} == \
               {k: set(v["files"]) for k, v in manifest["file_sets"].items()}
    finally:
        EmbeddedCluster(home).destroy()
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(home.parent / f"{home.name}-again", ignore_errors=True)
