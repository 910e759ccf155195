"""The roads layer: a 道路中心线 shapefile as county bureaus deliver it (GBK, Chinese field names,
EPSG:4546, a two-part polyline) goes through `cim ingest` into cim.road, and the vector tiles and
OGC API Features serve it with the CJJ 37 class codes."""

from __future__ import annotations

import os
import subprocess

import httpx
import mapbox_vector_tile
import pandas as pd
import psycopg2
import pytest
import shapely
from pyproj import Transformer

from tests.conftest import CIM_BIN
from tests.ingest.fixtures import E0, N0, write_shapefile
from tests.tiles.conftest import start_server
from tests.tiles.test_tile_content import tile_of

COUNTY = "430703"
ROADS = pd.DataFrame({
    "道路名称": ["武陵大道", "朗州路", "人民路", "永安街", "育英巷"],
    "道路等级": ["快速路", "主干路", "次干道", "支路", "4"],      # a synonym and a numeric class code
    "道路宽度": [50.0, 40.0, 24.0, 12.0, 9.0],
    "车道数": [8, 6, 4, 2, 2],
})
GEOMS = [
    shapely.LineString([(E0, N0), (E0 + 800, N0)]),
    shapely.LineString([(E0, N0), (E0, N0 + 600)]),
    shapely.LineString([(E0 + 400, N0), (E0 + 400, N0 + 600)]),
    shapely.LineString([(E0, N0 + 300), (E0 + 800, N0 + 300)]),
    shapely.MultiLineString([[(E0 + 100, N0 + 100), (E0 + 200, N0 + 100)],      # two parts, not joined
                             [(E0 + 250, N0 + 100), (E0 + 350, N0 + 100)]]),
]
CODES = {"武陵大道": "KS", "朗州路": "ZG", "人民路": "CG", "永安街": "ZL", "育英巷": "ZL"}


@pytest.fixture(scope="module")
def roads_db(make_database, tmp_path_factory):
    url = make_database("cim_roads")
    folder = tmp_path_factory.mktemp("roads") / "道路中心线"
    write_shapefile(folder, "道路中心线", ROADS, GEOMS)
    env = dict(os.environ, CIM_DATABASE_URL=url, CIM_HOME=str(folder.parent / "home"))
    res = subprocess.run([str(CIM_BIN), "ingest", str(folder), "--county", COUNTY, "--json"], capture_output=True,
                         text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    return url


def test_roads_shapefile_is_ingested_with_class_codes(roads_db):
    conn = psycopg2.connect(roads_db)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT name, road_class, width_m, lanes, ST_GeometryType(geom), ST_NumGeometries(geom), "
                        "ST_SRID(geom), source_layer, is_current FROM cim.road WHERE county_code = %s", (COUNTY,))
            rows = {r[0]: r[1:] for r in cur.fetchall()}
            cur.execute("SELECT ST_Length(ST_Transform(geom, 4546)) FROM cim.road WHERE name = '育英巷'")
            length = cur.fetchone()[0]
            cur.execute("SELECT state, layers FROM cim.delivery")
            deliveries = cur.fetchall()
    finally:
        conn.close()
    assert {name: r[0] for name, r in rows.items()} == CODES
    assert rows["武陵大道"][1:3] == (50.0, 8)
    assert all(r[3] == "ST_MultiLineString" and r[5] == 4490 and r[6] == "道路中心线" and r[7] for r in rows.values())
    assert rows["育英巷"][4] == 2 and rows["朗州路"][4] == 1
    assert length == pytest.approx(200.0, abs=0.01)
    assert deliveries == [("current", ["road"])]


def test_a_road_cannot_point_at_a_missing_delivery_nor_keep_one_alive(roads_db):
    conn = psycopg2.connect(roads_db)
    try:
        with conn.cursor() as cur:
            with pytest.raises(psycopg2.errors.ForeignKeyViolation) as err:
                cur.execute("INSERT INTO cim.road (name, county_code, delivery_id, geom) VALUES "
                            "('x', '430703', 999999, ST_Multi(ST_GeomFromText('LINESTRING(111 29, 111.1 29)', 4490)))")
            assert err.value.diag.constraint_name == "road_delivery_id_fkey"
        conn.rollback()
        with conn.cursor() as cur:
            with pytest.raises(psycopg2.errors.ForeignKeyViolation) as err:
                cur.execute("DELETE FROM cim.delivery")
            assert "road" in str(err.value)
        conn.rollback()
    finally:
        conn.close()


def test_roads_in_vector_tiles_and_features(roads_db):
    base, srv = start_server(roads_db)
    try:
        lon, lat = Transformer.from_crs(4546, 4490, always_xy=True).transform(E0 + 400, N0 + 300)
        x, y = tile_of(lon, lat, 15)
        with httpx.Client(base_url=base, timeout=30) as http:
            r = http.get(f"/tiles/roads/15/{x}/{y}.mvt")
            assert r.status_code == 200, r.text
            feats = mapbox_vector_tile.decode(r.content)["roads"]["features"]
            assert {f["properties"]["name"] for f in feats} == set(CODES)
            assert {f["properties"]["road_class"] for f in feats} == set(CODES.values())
            style = http.get("/styles/onemap.json").json()
            items = http.get("/ogc/collections/roads/items", params={"limit": 50}).json()
            assert items["numberMatched"] == 5
            assert {f["properties"]["road_class"] for f in items["features"]} == {"KS", "ZG", "CG", "ZL"}
            layers = {spec["id"]: spec for spec in http.get("/api/layers").json()}
            assert layers["roads"]["style"]["colors"]["ZG"] and layers["roads"]["geometry"]["type"] == "MultiLineString"
    finally:
        srv.should_exit = True
    assert any(layer.get("source-layer") == "roads" for layer in style["layers"])
