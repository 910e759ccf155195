"""Linked tiers end to end: two county clusters publish, the province cluster subscribes.

A delivery ingested at a county reaches the province (its OGC items and its cached vector tiles
follow), the counties' rows never overwrite each other, the province refuses local writes to
them, every county stands on its own DEM in 3D, and a stopped county turns red and recovers.
"""

from __future__ import annotations

import json
import math
import os
import subprocess

import httpx
import mapbox_vector_tile
import numpy as np
import psycopg2
import pytest
from pyproj import Transformer

from cim import tiers
from cim.auth import CLI_PRINCIPAL
from cim.errors import Conflict, DatabaseUnavailable, InvalidInput
from cim.tiers import ID_BLOCK, JS_SAFE_INTEGER, id_base
from tests.ingest.fixtures import line_geoms, network, point_geoms, write_shapefile, zip_folder
from tests.tiers import kit
from tests.tiers.conftest import CIM, wait_for
from tests.tiles3d.checks import parse_glb, walk

pytestmark = pytest.mark.timeout(300)


def _rows(inst, sql: str, params: tuple = ()) -> list[tuple]:
    conn = inst.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def _contents(doc: dict) -> list[str]:
    return [t["content"]["uri"] for t, _, _ in walk(doc["root"]) if "content" in t]


def _one(conn, sql: str, params: tuple = ()):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
    conn.rollback()
    return row[0] if row else None


def _all(conn, sql: str, params: tuple = ()) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    conn.rollback()
    return rows


def _tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    x = int((lon + 180) / 360 * 2 ** z)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * 2 ** z)
    return x, y


_SNAPSHOT = {
    "delivery": "SELECT id, state, layers, counts FROM cim.delivery WHERE county_code = %s ORDER BY id",
    "building": "SELECT id, code, name, delivery_id, is_current, ST_AsEWKB(geom) FROM cim.building WHERE county_code = %s ORDER BY id",
    "pipe_point": "SELECT id, exp_no, delivery_id, is_current, ST_AsEWKB(geom) FROM cim.pipe_point WHERE county_code = %s ORDER BY id",
    "pipe_segment": "SELECT id, start_point_id, end_point_id, delivery_id, is_current FROM cim.pipe_segment "
                    "WHERE county_code = %s ORDER BY id",
    "admin_area": "SELECT id, code, name, ST_AsEWKB(geom) FROM cim.admin_area WHERE county_code = %s ORDER BY id",
}


def _snapshot(inst, county: str) -> dict:
    return {t: [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in _rows(inst, sql, (county,))]
            for t, sql in _SNAPSHOT.items()}


def _in_sync(net, county_inst) -> bool:
    return _snapshot(net.province, county_inst.code) == _snapshot(county_inst, county_inst.code)


def test_each_instance_numbers_rows_in_its_own_block(tiers_net):
    net = tiers_net
    for inst in (net.a, net.b, net.province):
        assert net.province.scalar("SELECT 1") == 1
        code, base = inst.scalar("SELECT code FROM cim.tier_instance"), id_base(inst.code)
        assert code == inst.code
        conn = inst.connect()
        try:
            with conn.cursor() as cur:
                for seq_of in ("delivery", "building", "pipe_point", "pipe_segment", "dem"):
                    cur.execute("SELECT s.seqmin, s.seqmax FROM pg_sequence s "
                                "WHERE s.seqrelid = pg_get_serial_sequence(%s, 'id')::regclass", (f"cim.{seq_of}",))
                    assert cur.fetchone() == (base + 1, base + ID_BLOCK - 1), (inst.code, seq_of)
        finally:
            conn.close()
    for county in net.counties:
        base = id_base(county.code)
        for table in ("delivery", "building", "pipe_point", "pipe_segment", "admin_area"):
            lo, hi, n = county.scalar(f"SELECT ARRAY[min(id), max(id), count(*)] FROM cim.{table}")
            assert n > 0 and base < lo <= hi < base + ID_BLOCK and hi <= JS_SAFE_INTEGER, (county.code, table)
        # the publication carries the county's rows only, by a row filter on county_code
        filters = _rows(county, "SELECT tablename, rowfilter FROM pg_publication_tables WHERE pubname = %s",
                        (f"cim_{county.code}",))
        assert {t for t, _ in filters} >= {"delivery", "building", "pipe_point", "pipe_segment", "dem", "dem_file",
                                           "tier_heartbeat"}
        assert all(f"'{county.code}%'" in f for _, f in filters), filters


def test_initial_copy_brought_both_counties_intact(tiers_net):
    net = tiers_net
    for county in net.counties:
        wait_for(lambda c=county: _in_sync(net, c), 30, f"the province never matched {county.code}")
        snap = _snapshot(net.province, county.code)
        assert len(snap["building"]) == 5 and len(snap["pipe_point"]) == 6 and len(snap["admin_area"]) == 1
    ids = {c.code: {r[0] for r in _rows(net.province, "SELECT id FROM cim.building WHERE county_code = %s", (c.code,))}
           for c in net.counties}
    assert not ids["430703"] & ids["430721"]
    # segments still meet their own county's points at the province
    orphans = net.province.scalar("SELECT count(*) FROM cim.pipe_segment s LEFT JOIN cim.pipe_point p "
                                  "ON p.id = s.start_point_id AND p.county_code = s.county_code WHERE p.id IS NULL")
    assert orphans == 0


def _network_zip(tmp, lon: float, lat: float, prefix: str):
    """A CJJ 61 YS network (points + lines shapefiles, GBK, EPSG:4546) starting at lon/lat, zipped."""
    e0, n0 = Transformer.from_crs(4490, 4546, always_xy=True).transform(lon, lat)
    pts, lines = network(prefix=prefix, e0=e0, n0=n0)
    folder = tmp / prefix
    write_shapefile(folder, f"{prefix}POINT", pts, point_geoms(pts))
    write_shapefile(folder, f"{prefix}LINE", lines, line_geoms(pts, lines))
    return zip_folder(folder, tmp / f"{prefix}.zip")


def test_county_delivery_reaches_the_province_items_and_tiles(tiers_net, tmp_path):
    net, county = tiers_net, tiers_net.b
    lon, lat = 111.7065, 29.0420
    x, y = _tile(lon + 0.0007, lat, 16)
    tile_url = f"{net.province.api}/tiles/pipeline_points/16/{x}/{y}.mvt"
    bbox = f"{lon - 0.001},{lat - 0.001},{lon + 0.003},{lat + 0.001}"
    with httpx.Client(timeout=30) as http:
        before = http.get(tile_url)
        assert before.status_code == 204   # nothing there yet, and now cached under the current versions
        assert http.get(tile_url).headers["etag"] == before.headers["etag"]
        versions = http.get(f"{net.province.api}/api/versions").json()
        items = http.get(f"{net.province.api}/ogc/collections/pipeline_points/items", params={"bbox": bbox}).json()
        assert items["features"] == []
        tileset_url = f"{net.province.api}/3dtiles/pipelines/tileset.json"
        tileset_before = http.get(tileset_url)
        assert tileset_before.status_code in (200, 404), tileset_before.text

        def found(q: str) -> set:
            res = http.get(f"{net.province.api}/api/search", params={"q": q, "layers": "pipeline_points"})
            assert res.status_code == 200, res.text
            return {r["id"] for r in res.json()["results"]}

        res = county.cli("ingest", str(_network_zip(tmp_path, lon, lat, "YS")), "--county", county.code)
        assert "YS" in county.scalar("SELECT string_agg(exp_no, ',') FROM cim.pipe_point WHERE is_current "
                                     "AND exp_no LIKE 'YS%%'"), res.stdout
        new_ids = {r[0] for r in _rows(county, "SELECT id FROM cim.pipe_point WHERE exp_no LIKE 'YS%%' AND is_current")}
        delivery_id = county.scalar("SELECT max(id) FROM cim.delivery WHERE state = 'current'")

        def arrived():
            fc = http.get(f"{net.province.api}/ogc/collections/pipeline_points/items", params={"bbox": bbox}).json()
            return {f["id"] for f in fc["features"]} == new_ids

        wait_for(arrived, 30, "the county's delivery never reached the province's OGC items")
        after = http.get(tile_url)
        assert after.status_code == 200 and after.headers["etag"] != before.headers["etag"]
        features = mapbox_vector_tile.decode(after.content)["pipeline_points"]["features"]
        assert {f["id"] for f in features} <= new_ids and len(features) >= 1
        moved = http.get(f"{net.province.api}/api/versions").json()
        assert moved["pipeline_points"] > versions["pipeline_points"]
        assert moved["pipeline_segments"] > versions["pipeline_segments"]
        assert moved["buildings"] == versions["buildings"]    # scopes the delivery did not touch keep theirs
        # the province's search finds the new points, and its 3D Tiles of the pipelines are rebuilt
        exp_no = county.scalar("SELECT exp_no FROM cim.pipe_point WHERE id = %s", (min(new_ids),))
        assert min(new_ids) in found(exp_no)
        tileset_after = http.get(tileset_url)
        assert tileset_after.status_code == 200, tileset_after.text
        assert tileset_before.status_code == 404 or tileset_after.headers["etag"] != tileset_before.headers["etag"]
    # the province follows the county's change like a local load: county.changed is queued
    assert net.province.scalar("SELECT count(*) FROM cim.task WHERE kind = 'county.changed' "
                               "AND (args->>'delivery_id')::bigint = %s", (delivery_id,)) == 1
    wait_for(lambda: _in_sync(net, county), 30, "the province's copy of the county differs")


def test_counties_never_overwrite_each_other(tiers_net):
    net = tiers_net
    # both counties replace their buildings with a delivery of the same names
    new = {c.code: c.load([kit.buildings(c.code, 4, tag="SAME", row=1)]) for c in net.counties}
    for c in net.counties:
        wait_for(lambda c=c: net.province.scalar("SELECT state FROM cim.delivery WHERE id = %s", (new[c.code],)) == "current",
                 30, f"delivery {new[c.code]} of {c.code} never became current at the province")
        wait_for(lambda c=c: _in_sync(net, c), 30, f"the province's copy of {c.code} differs")
    rows = _rows(net.province, "SELECT county_code, id, name, delivery_id FROM cim.building WHERE is_current ORDER BY id")
    by = {code: [r for r in rows if r[0] == code] for code in ("430703", "430721")}
    for code, mine in by.items():
        assert [r[2] for r in mine] == [f"SAME-{i}" for i in range(4)]
        assert {r[3] for r in mine} == {new[code]}
        assert all(id_base(code) < r[1] < id_base(code) + ID_BLOCK for r in mine)
    assert not {r[1] for r in by["430703"]} & {r[1] for r in by["430721"]}
    # each county's earlier buildings are superseded at the province exactly as at home
    for c in net.counties:
        assert _rows(net.province, "SELECT id, state FROM cim.delivery WHERE county_code = %s ORDER BY id", (c.code,)) \
            == _rows(c, "SELECT id, state FROM cim.delivery WHERE county_code = %s ORDER BY id", (c.code,))


def test_the_province_refuses_local_writes_to_replicated_rows(tiers_net, tmp_path):
    prov = tiers_net.province
    before = _snapshot(prov, "430703")
    refused = [
        "INSERT INTO cim.building (county_code, name, geom) VALUES "
        "('430703', 'x', ST_Multi(ST_Buffer(ST_SetSRID(ST_MakePoint(111.69, 29.04), 4490), 0.0001)))",
        "UPDATE cim.building SET name = 'changed' WHERE county_code = '430703'",
        "DELETE FROM cim.pipe_segment WHERE county_code = '430703'",
        "UPDATE cim.delivery SET state = 'superseded' WHERE county_code = '430703'",
        "TRUNCATE cim.building CASCADE",
    ]
    for sql in refused:
        conn = prov.connect()
        try:
            with pytest.raises(psycopg2.errors.InsufficientPrivilege) as err, conn.cursor() as cur:
                cur.execute(sql)
            assert "read-only" in str(err.value) or "TRUNCATE is refused" in str(err.value)
        finally:
            conn.close()
    # the ingest refuses a subscribed county (exit 1, bilingual), for deliveries and DEMs
    res = prov.cli("ingest", str(_network_zip(tmp_path, 111.688, 29.042, "WS")), "--county", "430703", check=False)
    assert res.returncode != 0 and "只读" in res.stderr and "read-only" in res.stderr, res.stderr
    res = prov.cli("ingest", str(kit.write_dem(tmp_path / "dem.tif", 10.0)), "--county", "430721", check=False)
    assert res.returncode != 0 and "read-only" in res.stderr
    assert _snapshot(prov, "430703") == before
    # the province's own rows stay writable
    own = prov.load([kit.buildings("430703", 2, tag="PROV")], county="430000")
    assert prov.scalar("SELECT state FROM cim.delivery WHERE id = %s", (own,)) == "current"
    assert id_base("430000") < own < id_base("430000") + ID_BLOCK


def test_each_county_stands_on_its_own_ground(tiers_net, tmp_path):
    net, prov = tiers_net, tiers_net.province
    shas = {}
    for c in net.counties:   # a county platform's DEM is its county's (no --county needed)
        c.cli("ingest", str(kit.write_dem(tmp_path / f"dem-{c.code}.tif", kit.GROUND[c.code])))
        shas[c.code] = c.scalar("SELECT sha256 FROM cim.dem WHERE is_current AND county_code = %s", (c.code,))
        assert shas[c.code]
    wait_for(lambda: prov.scalar("SELECT count(*) FROM cim.dem WHERE is_current") == 2
             and prov.scalar("SELECT count(DISTINCT sha256) FROM cim.dem_file") == 2, 30,
             "the DEMs never reached the province")
    with httpx.Client(base_url=prov.api, timeout=120) as http:
        dem = http.get("/api/dem").json()
        assert sorted(d["county_code"] for d in dem["dems"]) == ["430703", "430721"]
        doc = http.get("/3dtiles/buildings/tileset.json").json()
        ground: dict[int, float] = {}
        for uri in _contents(doc):
            gltf, binary = parse_glb(http.get(f"/3dtiles/buildings/{uri}").content)
            table = gltf["extensions"]["EXT_structural_metadata"]["propertyTables"][0]
            props = gltf["extensions"]["EXT_structural_metadata"]["schema"]["classes"][table["class"]]["properties"]
            assert props["id"]["componentType"] == "FLOAT64"     # ids of the blocks exceed 2^32
            col = {}
            for name in ("id", "ground_z_3d"):
                view = gltf["bufferViews"][table["properties"][name]["values"]]
                col[name] = np.frombuffer(binary, "<f8", table["count"], view["byteOffset"])
            ground.update(zip(col["id"].astype("i8").tolist(), col["ground_z_3d"].tolist(), strict=True))
        # the hill of each DEM makes the tiles over it shaded
        for lon in (111.69, 111.71):
            x, y = _tile(lon, 29.045, 15)
            r = http.get(f"/tiles/hillshade/15/{x}/{y}.png")
            assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    counties = dict(_rows(prov, "SELECT id, county_code FROM cim.building WHERE is_current"))
    assert set(ground) == set(counties)
    for fid, z in ground.items():   # the province's own buildings (430000) have no DEM: ground 0
        assert z == pytest.approx(kit.GROUND.get(counties[fid], 0.0), abs=0.5), (fid, counties[fid], z)
    # the province wrote each DEM it received to its own home, checked against the sha256
    for sha in shas.values():
        assert (prov.home / "dem" / f"{sha}.tif").is_file()
    # a new DEM of one county replaces that county's only
    net.a.cli("ingest", str(kit.write_dem(tmp_path / "dem-a2.tif", 60.0)))
    wait_for(lambda: prov.scalar("SELECT count(*) FROM cim.dem WHERE is_current AND county_code = '430703' "
                                 "AND max_z < 100") == 1, 30, "the new DEM never reached the province")
    assert prov.scalar("SELECT sha256 FROM cim.dem WHERE is_current AND county_code = '430721'") == shas["430721"]


def test_refresh_after_an_upgrade(tiers_net):
    """``cim tier refresh``: the county re-publishes (same password), the province refreshes its subscriptions."""
    net = tiers_net
    out = json.loads(net.a.cli("tier", "refresh", "--json").stdout)
    assert out["republished"] is True and out["subscriptions"] == [] and "tier_heartbeat" in out["tables"]
    conn = net.province.connect()
    try:
        res = tiers.refresh(conn, principal=CLI_PRINCIPAL)
    finally:
        conn.close()
    assert res["republished"] is False and res["failed"] == {}
    assert res["subscriptions"] == ["cim_430000_from_430703", "cim_430000_from_430721"]
    for county in net.counties:
        wait_for(lambda c=county: _in_sync(net, c), 30, f"the province's copy of {county.code} differs after refresh")


def test_a_second_subscriber_then_drop(tiers_net, make_database):
    """A city database (on another cluster) subscribes to the same county, then drops it with its rows."""
    net, county = tiers_net, tiers_net.a
    url = make_database("cim_tier_city")
    env = {**{k: v for k, v in os.environ.items() if k != "CIM_HOME"}, "CIM_DATABASE_URL": url}

    def cim(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([CIM, *args], capture_output=True, text=True, env=env, timeout=300)

    conn = psycopg2.connect(url)
    try:
        tiers.init(conn, "430700", "常德市", principal=CLI_PRINCIPAL)
        # re-publishing keeps the password unless asked; a network may be let in through pg_hba
        out = json.loads(county.cli("tier", "publish", "--allow", "10.20.30.0/24", "--json").stdout)
        assert out["password"] is None and "hostssl" not in out["pg_hba"]["applied"][0]
        assert county.scalar("SELECT count(*) FROM pg_hba_file_rules WHERE 'cim_replicator' = ANY(user_name) "
                             "AND address = '10.20.30.0' AND error IS NULL") == 1
        wrong = net.urls[county.code].replace("cim_replicator:", "cim_replicator:x")
        with pytest.raises(DatabaseUnavailable, match="password"):
            tiers.subscribe(conn, wrong, county.code, principal=CLI_PRINCIPAL)
        with pytest.raises(InvalidInput, match="430703"):            # the URL leads to another county
            tiers.subscribe(conn, net.urls[county.code], "430721", principal=CLI_PRINCIPAL)
        res = cim("tier", "subscribe", net.urls[county.code], "--county", county.code, "--wait", "60", "--json")
        assert res.returncode == 0, res.stderr
        sub = json.loads(res.stdout)
        assert sub["name"] == "cim_430700_from_430703" and sub["copied"] is True
        with pytest.raises(Conflict):                                # its rows come by one subscription only
            tiers.subscribe(conn, net.urls[county.code], county.code, principal=CLI_PRINCIPAL, name="again")
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM cim.building WHERE county_code = '430703'")
            assert cur.fetchone()[0] == county.scalar("SELECT count(*) FROM cim.building")
        conn.rollback()
        # the city re-publishes what it receives (PostgreSQL 15 has no origin filter): a change of the
        # county, applied here by the subscription, is decoded into the city's own publication
        tiers.publish(conn, principal=CLI_PRINCIPAL)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_create_logical_replication_slot('cim_cascade_probe', 'pgoutput')")
        conn.autocommit = False
        try:
            did = county.load([kit.buildings(county.code, 2, tag="CASCADE", row=3)])
            wait_for(lambda: _one(conn, "SELECT count(*) FROM cim.delivery WHERE id = %s AND state = 'current'",
                                  (did,)), 30, "the county's delivery never reached the city")

            def decoded() -> list[bytes]:
                # the apply worker commits with synchronous_commit = off: its WAL is flushed (and
                # decodable) a moment after its rows are visible
                rows = _all(conn, "SELECT data FROM pg_logical_slot_peek_binary_changes('cim_cascade_probe', NULL, "
                                  "NULL, 'proto_version', '1', 'publication_names', 'cim_430700')")
                messages = [bytes(r[0]) for r in rows]
                return messages if sum(m[:1] == b"I" for m in messages) >= 3 else []

            messages = wait_for(decoded, 30, "the county's change was not decoded into the city's publication")
            assert any(m[:1] == b"R" and b"building" in m for m in messages)
            assert any(m[:1] == b"R" and b"delivery" in m for m in messages)
        finally:
            conn.rollback()
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT pg_drop_replication_slot('cim_cascade_probe')")
            conn.autocommit = False
        listed = json.loads(cim("tier", "list", "--json").stdout)
        assert [s["name"] for s in listed["subscriptions"]] == ["cim_430700_from_430703"]
        assert listed["status"]["instances"][0]["code"] == "430703"
        assert cim("tier", "drop", "cim_430700_from_430703", "--purge").returncode == 0
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM cim.building WHERE county_code = '430703'")
            assert cur.fetchone()[0] == 0
            cur.execute("SELECT count(*) FROM pg_subscription")
            assert cur.fetchone()[0] == 0
        conn.rollback()
        # a restored backup records its subscription (cim.tier_subscription) but PostgreSQL has none
        # (a dump holds no subscriptions): --replace takes the stale record's place
        with conn.cursor() as cur:
            cur.execute("INSERT INTO cim.tier_subscription (name, county_code, prefix, publication, publisher, created_by) "
                        "VALUES ('cim_430700_from_430703', '430703', '430703', 'cim_430703', 'restored', 'test')")
        conn.commit()
        refused = cim("tier", "subscribe", net.urls[county.code], "--county", county.code, "--json")
        assert refused.returncode == 1 and "cim_430700_from_430703" in refused.stderr
        res = cim("tier", "subscribe", net.urls[county.code], "--county", county.code, "--replace", "--wait", "60", "--json")
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["copied"] is True
        assert _one(conn, "SELECT count(*) FROM cim.building WHERE county_code = '430703'") == \
            county.scalar("SELECT count(*) FROM cim.building")
        assert _all(conn, "SELECT name, publisher <> 'restored' FROM cim.tier_subscription") == \
            [("cim_430700_from_430703", True)]
        assert cim("tier", "drop", "cim_430700_from_430703", "--purge").returncode == 0
    finally:
        conn.close()
    assert county.scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'cim_430700_from_430703'") == 0
    assert county.scalar("SELECT count(*) FROM pg_replication_slots") == 1   # the province's


def _status(net, code: str) -> dict:
    doc = httpx.get(f"{net.province.api}/api/tiers", timeout=10).json()
    return next(i for i in doc["instances"] if i["code"] == code)


def test_a_stopped_county_turns_red_and_recovers(tiers_net):
    net = tiers_net
    doc = httpx.get(f"{net.province.api}/api/tiers", timeout=10).json()
    assert doc["self"]["code"] == "430000" and doc["self"]["level"] == "province"
    assert {i["code"] for i in doc["instances"]} == {"430703", "430721"}
    for code in ("430703", "430721"):
        item = wait_for(lambda code=code: (s := _status(net, code))["status"] == "green" and s, 20, f"{code} not green")
        assert item["software_version"] and item["level"] == "county" and item["lag_s"] is not None
        assert item["last_delivery_id"] and item["data_versions"]["building"] > 1
        assert item["subscription"]["running"] and item["subscription"]["tables_ready"] == item["subscription"]["tables"]
        assert item["bbox"] is not None
    net.b.cluster.stop()
    try:
        red = wait_for(lambda: (s := _status(net, "430721"))["status"] == "red" and s, 40, "a stopped county never turned red")
        assert any("heartbeat" in r["en"] for r in red["reasons"])
        assert _status(net, "430703")["status"] == "green"
    finally:
        net.b.cluster.start()
    wait_for(lambda: _status(net, "430721")["status"] == "green", 60, "the restarted county never turned green again")
