"""Instance identity on one database: the one-time renumbering into the id block, the sequences,
the single heartbeat writer, and the command-line refusals (no second cluster needed)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import psycopg2
import pytest

from cim import heartbeat, tiers
from cim.auth import CLI_PRINCIPAL
from cim.embedded import free_port, listen_addresses
from cim.errors import ConfigError, Conflict, DatabaseUnavailable, InvalidInput, NotFound
from ingest.dem import store_dem
from tests.ingest import loadkit as loader
from tests.tiers import kit

CIM = str(Path(sys.executable).parent / "cim")
ROOT = Path(__file__).resolve().parents[2]


def _cli(url: str, *args: str, home: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, CIM_DATABASE_URL=url)
    if home:
        env["CIM_HOME"] = str(home)
    return subprocess.run([CIM, *args], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)


def _one(conn, sql: str, params: tuple = ()):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
    conn.rollback()
    return row


def test_existing_rows_move_into_the_block_once(make_database, tmp_path):
    url = make_database("cim_tier_ids")
    conn = psycopg2.connect(url)
    try:
        first = loader.load(conn, kit.delivery(tmp_path, [*kit.pipes("430703", 5, tag="P"),
                                                          kit.buildings("430703", 3, tag="B")], "430703"),
                            principal=CLI_PRINCIPAL).delivery_id
        with conn.cursor() as cur:
            cur.execute("INSERT INTO cim.ingest_job (id, county_code, files, work_dir, submitted_by, delivery_id, state) "
                        "VALUES (%s, '430703', '{a.zip}', '/tmp', 'test', %s, 'done')", ("ab" * 16, first))
        conn.commit()
        store_dem(conn, kit.write_dem(tmp_path / "dem.tif", 50.0), principal=CLI_PRINCIPAL, home=tmp_path)
        assert _one(conn, "SELECT county_code FROM cim.dem WHERE is_current")[0] == ""   # the instance's DEM
        old = {r[0]: r[1:] for r in _rows(conn, "SELECT exp_no, id FROM cim.pipe_point")}
        assert max(v[0] for v in old.values()) < tiers.ID_BLOCK

        res = tiers.init(conn, "430703", "鼎城区", principal=CLI_PRINCIPAL)
        base = tiers.id_base("430703")
        assert res["renumbered"]["pipe_point"] == 5 and res["renumbered"]["delivery"] == 1
        assert res["renumbered"]["ingest_job.delivery_id"] == 1        # a foreign key of another table follows
        moved = {r[0]: r[1] for r in _rows(conn, "SELECT exp_no, id FROM cim.pipe_point")}
        assert moved == {k: v[0] + base for k, v in old.items()}
        # every reference still meets its row: segment ends by survey point number, deliveries, jobs
        bad = _one(conn, "SELECT count(*) FROM cim.pipe_segment s JOIN cim.pipe_point a ON a.id = s.start_point_id "
                         "JOIN cim.pipe_point b ON b.id = s.end_point_id WHERE a.exp_no <> s.start_exp_no "
                         "OR b.exp_no <> s.end_exp_no")[0]
        assert bad == 0 and _one(conn, "SELECT count(*) FROM cim.pipe_segment")[0] == 4
        assert _one(conn, "SELECT count(*) FROM cim.building WHERE delivery_id = %s", (first + base,))[0] == 3
        assert _one(conn, "SELECT delivery_id FROM cim.ingest_job")[0] == first + base
        assert _one(conn, "SELECT county_code FROM cim.dem WHERE is_current")[0] == "430703"  # now the county's
        # new rows continue inside the block; ids never change again
        second = loader.load(conn, kit.delivery(tmp_path, [kit.buildings("430703", 2, tag="C")], "430703"),
                             principal=CLI_PRINCIPAL).delivery_id
        assert second == first + base + 1
        lo, hi = _one(conn, "SELECT min(id), max(id) FROM cim.building")
        assert base < lo and hi == base + 5 and hi < tiers.JS_SAFE_INTEGER
        with pytest.raises(psycopg2.errors.ForeignKeyViolation), conn.cursor() as cur:
            cur.execute("UPDATE cim.delivery SET id = id + 100 WHERE id = %s", (second,))
        conn.rollback()
        # again with the same code: nothing moves; another code is refused
        assert tiers.init(conn, "430703", "鼎城区", principal=CLI_PRINCIPAL)["renumbered"] == {}
        with pytest.raises(Conflict):
            tiers.init(conn, "430721", "安乡县", principal=CLI_PRINCIPAL)
        res = _cli(url, "tier", "init", "430721", "--name", "安乡县")
        assert res.returncode == 1 and "430703" in res.stderr
        audit = _one(conn, "SELECT count(*) FROM cim.audit_log WHERE action = 'tier.init'")[0]
        assert audit == 2
    finally:
        conn.close()


def _rows(conn, sql: str) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql)
        rows = cur.fetchall()
    conn.rollback()
    return rows


def test_codes_and_blocks():
    assert tiers.level_of("430000") == "province" and tiers.prefix_of("430000") == "43"
    assert tiers.level_of("430700") == "city" and tiers.prefix_of("430700") == "4307"
    assert tiers.level_of("430703") == "county" and tiers.prefix_of("430703") == "430703"
    # the largest code's block still ends below 2^53 (JavaScript numbers, GeoJSON and MVT ids)
    assert tiers.id_base("829999") + tiers.ID_BLOCK - 1 < 2 ** 53
    assert tiers.id_base("110000") + tiers.ID_BLOCK <= tiers.id_base("110001")
    for bad in ("4307", "000000", "990000", "43070x", "4307031"):
        with pytest.raises(InvalidInput):
            tiers.validate_code(bad)


def test_refusals_before_and_after_an_identity(make_database):
    url = make_database("cim_tier_cli")
    res = _cli(url, "tier", "init", "12345", "--name", "x")
    assert res.returncode == 2 and "430703" in res.stderr           # the message shows a valid example
    res = _cli(url, "tier", "publish")
    assert res.returncode == 1 and "cim tier init" in res.stderr     # no identity yet
    conn = psycopg2.connect(url)
    try:
        with pytest.raises(Conflict, match="cim tier init"):
            tiers.subscribe(conn, "postgresql://u:p@127.0.0.1:1/cim", "430703", principal=CLI_PRINCIPAL)
        tiers.init(conn, "430100", "长沙市", principal=CLI_PRINCIPAL)
        with pytest.raises(InvalidInput, match="postgresql://"):
            tiers.subscribe(conn, "http://example.org/", "430703", principal=CLI_PRINCIPAL)
        with pytest.raises(InvalidInput, match="itself"):
            tiers.subscribe(conn, "postgresql://u:p@127.0.0.1:1/cim", "430100", principal=CLI_PRINCIPAL)
        with pytest.raises(DatabaseUnavailable):                   # nothing listens there
            tiers.subscribe(conn, f"postgresql://u:p@127.0.0.1:{free_port()}/cim", "430103", principal=CLI_PRINCIPAL)
        with pytest.raises(NotFound):
            tiers.drop_subscription(conn, "no_such_subscription", principal=CLI_PRINCIPAL)
        out = tiers.describe(conn)
        assert out["identity"]["level"] == "city" and out["identity"]["prefix"] == "4301"
        assert out["subscriptions"] == [] and out["publication"] is None
    finally:
        conn.close()


def test_one_heartbeat_per_interval_however_many_processes_beat(make_database):
    url = make_database("cim_tier_beat")
    conn = psycopg2.connect(url)
    assert heartbeat.beat(conn, interval_s=30) is False                    # no identity: nothing to say
    tiers.init(conn, "430721", "安乡县", principal=CLI_PRINCIPAL)
    conn.close()
    start, results = threading.Barrier(6), []

    def worker():
        c = psycopg2.connect(url)
        try:
            start.wait()
            results.append(heartbeat.beat(c, interval_s=30))
        finally:
            c.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]
    conn = psycopg2.connect(url)
    try:
        row = _one(conn, "SELECT county_code, level, software_version, dict_hash, interval_s, received_at "
                         "FROM cim.tier_heartbeat")
        assert row[:2] == ("430721", "county") and row[2] and len(row[3]) == 32 and row[4] == 30 and row[5] is None
        assert heartbeat.beat(conn, interval_s=30) is False                # fresh: the next one waits
        assert heartbeat.beat(conn, interval_s=0.001) is True              # due again
        # the status of an instance without lower tiers lists nobody
        with conn.cursor() as cur:
            from cim.settings import TierSettings
            doc = heartbeat.status(cur, TierSettings())
        assert doc["self"]["code"] == "430721" and doc["instances"] == [] and doc["self"]["heartbeat"]
    finally:
        conn.close()


def test_listen_addresses_only_as_set():
    assert listen_addresses(None) == "127.0.0.1"
    assert listen_addresses("") == "127.0.0.1"
    assert listen_addresses("10.2.0.5, 127.0.0.1") == "127.0.0.1,10.2.0.5"
    assert listen_addresses("cim-county.example.org") == "127.0.0.1,cim-county.example.org"
    assert listen_addresses("*") == "*"
    for bad in ("10.0.0.1'; ssl=off", "a b", "-x"):
        with pytest.raises(ConfigError):
            listen_addresses(bad)
    assert tiers.hba_lines("cim", ["10.2.0.0/24", "192.168.1.7"], ssl=True) == [
        "hostssl cim cim_replicator 10.2.0.0/24 scram-sha-256", "hostssl cim cim_replicator 192.168.1.7/32 scram-sha-256"]
    with pytest.raises(InvalidInput):
        tiers.hba_lines("cim", ["10.2.0.0/33"], ssl=False)
