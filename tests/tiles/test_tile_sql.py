"""Compiled tile SQL: GiST index use, bound parameters, byte-budget helpers; PMTiles export round trip."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import re
import subprocess

import asyncpg
import mapbox_vector_tile
import psycopg2
import pytest
from pmtiles.reader import MmapSource, Reader, all_tiles

from cim.settings import TileSettings
from layers.catalog import load_catalog
from tests import aio
from tests.conftest import CIM_BIN
from tests.tiles.conftest import KNOWN_LAT, KNOWN_LON
from tests.tiles.test_tile_content import tile_of
from tiles.mvt import (
    FIRST_FILTER_PARAM,
    LINEAR_FROM_ZOOM,
    TileCompiler,
    _fragment,
    cap_for_budget,
    layer_stats,
    to_web_mercator,
)


@pytest.fixture
def cim(tile_data):
    """Run ``cim …`` against the tile test database."""
    def run(*args: str, check: bool = False) -> subprocess.CompletedProcess:
        env = dict(os.environ, CIM_DATABASE_URL=tile_data)
        res = subprocess.run([str(CIM_BIN), *args], capture_output=True, text=True, env=env, timeout=600)
        if check:
            assert res.returncode == 0, res.stdout + res.stderr
        return res
    return run


def _plans(url: str, queries: list, seqscan: bool = True, generic: bool = False) -> list[str]:
    async def run() -> list[str]:
        conn = await asyncpg.connect(url)
        try:
            if not seqscan:
                await conn.execute("SET enable_seqscan = off")
            if generic:  # what the tile pool runs (plan_cache_mode = force_generic_plan)
                await conn.execute("SET plan_cache_mode = force_generic_plan")
            if generic:
                return [await _generic_plan(conn, q) for q in queries]
            return [json.dumps(await conn.fetchval("EXPLAIN (FORMAT JSON) " + q.sql, *q.args)) for q in queries]
        finally:
            await conn.close()
    return aio.run(run())


_names = itertools.count()


async def _generic_plan(conn, q) -> str:
    """EXPLAIN of the statement as the tile pool runs it: SQL PREPARE, generic plan, EXECUTE."""
    types = ["int", "int", "int", "bigint", "float8", "float8"]
    types += ["text[]" if isinstance(v, list) else "text" for v in q.args[6:]]
    name = f"tile_stmt_{next(_names)}"
    await conn.execute(f"PREPARE {name}({', '.join(types)}) AS {q.sql}")
    def lit(v) -> str:  # test-only literals from our own compiled arguments (ints, floats, catalogue codes)
        if isinstance(v, list):
            return "ARRAY[" + ", ".join(lit(x) for x in v) + "]"
        return "'" + v.replace("'", "''") + "'" if isinstance(v, str) else repr(v)

    literals = ", ".join(lit(v) for v in q.args)
    plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON, VERBOSE) EXECUTE {name}({literals})")
    return json.dumps(plan)


def _compiled():
    compiler = TileCompiler.from_catalog(load_catalog(), TileSettings())
    for lid, layer in compiler.layers.items():
        spec = layer.spec
        for z in sorted({spec.minzoom, max(spec.minzoom, 16), 17, spec.maxzoom}):  # every generalisation band
            x, y = tile_of(111.205, 27.105, z)
            q = compiler.query((lid,), z, x, y)
            assert "ST_TileEnvelope($1, $2, $3" in q.sql and q.args[:3] == (z, x, y)  # bound, not inlined
            yield lid, z, re.compile(rf"Index Name.{{0,8}}{spec.table_name}_\w*geom\w*_idx"), q


# Layers of a few admin-area rows, where no plan needs an index: admin_areas (one row in the seed)
# and healthcheck (the view of the latest run's values on the admin areas; no run in the seed).
AREA_LAYERS = ("admin_areas", "healthcheck")


def test_tile_queries_pick_the_gist_index(tile_data):
    """At z >= 17 (a tile is ~2 % of the 2 km seed) the planner itself chooses the index."""
    cases = [c for c in _compiled() if c[1] >= 17 and c[0] not in AREA_LAYERS]
    for (lid, z, index, _), plan in zip(cases, _plans(tile_data, [c[3] for c in cases]), strict=True):
        assert index.search(plan), f"{lid} z{z} does not use a GiST index on geom: {plan[:400]}"


def test_generic_plans_use_the_gist_index(tile_data):
    """The tile pool plans each statement once (generic plan): the index condition takes the bound envelope."""
    cases = [c for c in _compiled() if c[1] >= 16 and c[0] not in AREA_LAYERS]
    for (lid, z, index, _), plan in zip(cases, _plans(tile_data, [c[3] for c in cases], generic=True), strict=True):
        assert index.search(plan), f"{lid} z{z} generic plan does not use a GiST index: {plan[:400]}"
        assert "st_tileenvelope($1" in plan.lower()  # really the generic plan: parameters, not constants


def test_every_band_filters_the_raw_column(tile_data):
    """In every band the planner sees ``geom && <envelope>``, the envelope computed once per statement
    (ST_TileEnvelope transformed into the column SRID): index-compatible, the column never transformed.

    (Low-zoom tiles cover the whole seed, where a sequential scan is the right plan, so the test
    looks at the predicate rather than the chosen scan.)
    """
    cases = list(_compiled())
    for (lid, z, _, _), plan in zip(cases, _plans(tile_data, [c[3] for c in cases]), strict=True):
        doc = json.loads(plan)
        doc = json.loads(doc) if isinstance(doc, str) else doc
        conds = [n.get("Index Cond", "") + n.get("Filter", "") + n.get("Join Filter", "") for n in _nodes(doc[0]["Plan"])]
        assert any(re.search(r"\((\w+\.)?geom && __b\.e\)", c) for c in conds), f"{lid} z{z}: {conds}"
        assert not any("st_transform(geom" in c.lower() for c in conds)
    # the envelope is the only place where ST_TileEnvelope is transformed, once, in the subquery __b
    sql = cases[0][3].sql
    assert sql.count("ST_Transform(ST_TileEnvelope($1, $2, $3, margin") == 1 and " OFFSET 0) __b" in sql


def _rings(geometry: dict) -> list:
    """Polygon rings of a decoded MVT geometry, each rotated to start at its smallest vertex."""
    polys = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
    out = []
    for poly in polys:
        for ring in poly:
            pts = [tuple(p) for p in ring[:-1]]
            i = pts.index(min(pts))
            out.append(pts[i:] + pts[:i])
    return sorted(out)


@pytest.mark.parametrize("layer,table", [("buildings", "building"), ("green_spaces", "green_space")])
def test_unclipped_polygons_equal_st_asmvtgeom(tile_data, layer, table):
    """Polygons wholly inside tile + buffer skip ST_AsMVTGeom (scale, snap, orient in SQL): the
    decoded rings equal ST_AsMVTGeom's, vertex for vertex (a ring may start elsewhere)."""
    compiler = TileCompiler.from_catalog(load_catalog(), TileSettings())
    ref_sql = (f"SELECT ST_AsMVT(t, 'ref', 4096, 'g', 'id') FROM (SELECT id, ST_AsMVTGeom(geom, "
               f"ST_Transform(ST_TileEnvelope($1, $2, $3), 4490)::box2d, 4096, 64, true) AS g "
               f"FROM cim.{table} WHERE geom && ST_Transform(ST_TileEnvelope($1, $2, $3, "
               f"margin => 64.0 / 4096), 4490) AND is_current) t")

    async def run() -> int:
        conn = await asyncpg.connect(tile_data)
        compared = 0
        try:
            for z in (15, 16, 17, 18):
                x, y = tile_of(111.2052, 27.1053, z)
                q = compiler.query((layer,), z, x, y)
                ours = mapbox_vector_tile.decode(await conn.fetchval(q.sql, *q.args))[layer]["features"]
                ref = {f["id"]: f["geometry"]
                       for f in mapbox_vector_tile.decode(await conn.fetchval(ref_sql, z, x, y))["ref"]["features"]}
                assert ours
                for f in ours:
                    assert _rings(f["geometry"]) == _rings(ref[f["id"]]), (z, f["id"])
                    compared += 1
        finally:
            await conn.close()
        return compared

    assert aio.run(run()) > 100


def _nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def test_tile_sql_is_stable_per_layer_set():
    compiler = TileCompiler.from_catalog(load_catalog(), TileSettings())
    a = compiler.query(("buildings", "gas_pipes"), 16, 1, 2)
    b = compiler.query(("buildings", "gas_pipes"), 17, 100, 200)
    assert a.sql == b.sql  # one prepared statement for every tile of the same bands
    assert a.args[:3] == (16, 1, 2) and "RQ" in a.args
    centroid = compiler.query(("buildings",), 14, 1, 2)
    assert "ST_Centroid" in centroid.sql and "ST_Centroid" not in a.sql


def test_layer_stats_and_cap():
    tile = mapbox_vector_tile.encode([
        {"name": "a", "features": [{"geometry": "POINT(1 1)", "properties": {"k": i}} for i in range(10)]},
        {"name": "b", "features": [{"geometry": "POINT(2 2)", "properties": {}}]},
    ])
    stats = layer_stats(tile)
    assert [(n, c) for n, _, c in stats] == [("a", 10), ("b", 1)]
    assert sum(b for _, b, _ in stats) < len(tile) + 1
    total = sum(b for _, b, _ in stats)
    assert cap_for_budget(stats, total) == 10
    assert cap_for_budget(stats, total // 2) < 10


@pytest.mark.slow
def test_pmtiles_export_round_trip(tile_data, cim, tmp_path):
    out = tmp_path / "county.pmtiles"
    res = cim("tiles", "export", "--layers", "buildings,pipeline_segments", "--zoom", "15-17", "--out", str(out),
              "--workers", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "tiles" in res.stdout
    with open(out, "rb") as f:
        get = MmapSource(f)
        reader = Reader(get)
        header = reader.header()
        assert header["min_zoom"] == 15 and header["max_zoom"] == 17
        meta = reader.metadata()
        assert {v["id"] for v in meta["vector_layers"]} == {"buildings", "pipeline_segments"}
        x, y = tile_of(KNOWN_LON + 0.0001, KNOWN_LAT + 0.0001, 17)
        tile = mapbox_vector_tile.decode(gzip.decompress(reader.get(17, x, y)))
        assert [f["properties"]["code"] for f in tile["buildings"]["features"]] == ["KNOWN-1"]
        zooms = {zxy[0] for zxy, _ in all_tiles(get)}
        assert zooms == {15, 16, 17}


def test_export_bad_input_exit_codes(tile_data, cim, tmp_path):
    res = cim("tiles", "export", "--layers", "nosuch", "--zoom", "15", "--out", str(tmp_path / "x.pmtiles"))
    assert res.returncode == 2 and "nosuch" in res.stderr
    res = cim("tiles", "export", "--layers", "buildings", "--zoom", "16-10", "--out", str(tmp_path / "x.pmtiles"))
    assert res.returncode == 2 and "zoom" in res.stderr
    assert not (tmp_path / "x.pmtiles").exists()


def test_server_serves_exported_archive(tile_data, cim, tmp_path):
    import httpx

    from tests.tiles.conftest import start_server

    out = tmp_path / "demo.pmtiles"
    cim("tiles", "export", "--layers", "buildings", "--zoom", "17-18", "--out", str(out), "--quiet",
        check=True)
    base, srv = start_server(tile_data, pmtiles=tmp_path)
    try:
        x, y = tile_of(KNOWN_LON + 0.0001, KNOWN_LAT + 0.0001, 18)
        r = httpx.get(f"{base}/pmtiles/demo/18/{x}/{y}.mvt")
        assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
        assert mapbox_vector_tile.decode(r.content)["buildings"]["features"][0]["properties"]["code"] == "KNOWN-1"
        # the same answer rules as the live tiles: inflated for clients without gzip, 304 by ETag
        plain = httpx.get(f"{base}/pmtiles/demo/18/{x}/{y}.mvt", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers and plain.content == r.content
        again = httpx.get(f"{base}/pmtiles/demo/18/{x}/{y}.mvt", headers={"If-None-Match": f'"x", {r.headers["etag"]}'})
        assert again.status_code == 304 and again.headers["cache-control"] == r.headers["cache-control"]
        assert httpx.get(f"{base}/pmtiles/demo/3/0/0.mvt").status_code == 204
        part = httpx.get(f"{base}/pmtiles/demo.pmtiles", headers={"Range": "bytes=0-126"})
        assert part.status_code == 206 and part.content[:7] == b"PMTiles" and len(part.content) == 127
    finally:
        srv.should_exit = True


def test_cgcs2000_output_equals_the_exact_transform(tile_data):
    """The fast 4490 → 3857 path (relabel as 4326) gives the same coordinates as ST_Transform from 4490."""
    conn = psycopg2.connect(tile_data)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT max(ST_HausdorffDistance(ST_Transform(geom, 3857), " + to_web_mercator("geom", 4490) +
                        ")), count(*) FROM (SELECT geom FROM cim.building ORDER BY id LIMIT 5000) s")
            worst, n = cur.fetchone()
    finally:
        conn.close()
    assert n == 5000 and worst < 1e-6  # metres


@pytest.mark.parametrize("layer,z", [("buildings", 15), ("buildings", 18), ("pipeline_segments", 14), ("streetlights", 16)])
def test_linear_lonlat_mapping_matches_the_projection(tile_data, layer, z):
    """From LINEAR_FROM_ZOOM on, mapping lon/lat linearly onto the tile equals projecting each row (±1 unit)."""
    import dataclasses

    compiler = TileCompiler.from_catalog(load_catalog(), TileSettings())
    compiled = compiler.layers[layer]
    band = compiled.band(z)
    assert band.linear and z >= LINEAR_FROM_ZOOM
    x, y = tile_of(111.205, 27.105, z)
    q = compiler.query((layer,), z, x, y)
    exact_sql = "SELECT " + _fragment(compiled.spec, dataclasses.replace(band, linear=False), TileSettings(),
                                      FIRST_FILTER_PARAM) + " FROM (SELECT $5::float8, $6::float8) AS params"
    assert "ST_Transform(ST_SetSRID" in exact_sql and "ST_Transform(ST_SetSRID" not in q.sql

    async def run():
        conn = await asyncpg.connect(tile_data)
        try:
            return await conn.fetchval(q.sql, *q.args), await conn.fetchval(exact_sql, *q.args)
        finally:
            await conn.close()

    linear, exact = (mapbox_vector_tile.decode(t)[layer]["features"] for t in aio.run(run()))
    assert len(linear) == len(exact) > 0
    by_id = {f["id"]: f for f in exact}
    worst = 0
    for f in linear:
        a, b = _flat(f["geometry"]["coordinates"]), _flat(by_id[f["id"]]["geometry"]["coordinates"])
        assert len(a) == len(b)
        worst = max([worst, *(abs(p - r) for p, r in zip(a, b, strict=True))])
    assert worst <= 1


def _flat(coords) -> list[float]:
    if isinstance(coords, (int, float)):
        return [coords]
    return [v for c in coords for v in _flat(c)]


def test_cli_tile_sizes_over_the_seed(cim):
    res = cim("tiles", "sizes", "--zoom", "14-16")
    assert res.returncode == 0, res.stdout + res.stderr
    lines = [line for line in res.stdout.splitlines() if line.startswith("z")]
    assert [line.split()[0] for line in lines] == ["z14", "z15", "z16"]
    largest_kb = [float(line.split("largest")[1].split("KB")[0]) for line in lines]
    assert all(0 < kb <= 500 for kb in largest_kb)
    bad = cim("tiles", "sizes", "--zoom", "x")
    assert bad.returncode == 2 and "zoom" in bad.stderr
