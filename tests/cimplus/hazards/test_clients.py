"""What other software sees of the ledger: the OGC API Features collection read by GDAL, the
vector tiles, and the background rescan the server runs after a real ``cim ingest``."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import geopandas as gpd
import httpx
import mapbox_vector_tile
import pandas as pd
import psycopg2
import pytest
import shapely
from plant import LAT0, LON0, Plant
from pyproj import Transformer

COUNTY = "439601"
CIM = Path(sys.executable).parent / "cim"


@pytest.fixture(scope="module")
def open_and_closed(hz_server):
    """Three grade-D buildings scanned (B01); one entry then closed."""
    conn = psycopg2.connect(hz_server.url)
    plant = Plant(conn, COUNTY)
    for i in range(3):
        plant.building(i * 30.0, 0, i * 30.0 + 10, 10, code=f"K{i}", appraisal_grade="D")
    conn.commit()
    from cim.settings import DatabaseSettings, Settings
    from cimplus.hazards.service import HazardService
    svc = HazardService(Settings(db=DatabaseSettings(database_url=hz_server.url)))
    svc.run_scan(COUNTY, rule_ids=["B01"])
    svc.close()
    with conn.cursor() as cur:
        cur.execute("UPDATE cim.hazard SET status = 'closed' WHERE id = (SELECT min(id) FROM cim.hazard "
                    "WHERE county_code = %s) RETURNING number", (COUNTY,))
        closed = cur.fetchone()[0]
        cur.execute("SELECT number FROM cim.hazard WHERE county_code = %s AND status <> 'closed'", (COUNTY,))
        open_ = {r[0] for r in cur.fetchall()}
    conn.commit()
    conn.close()
    return open_, closed


def test_ogc_collection_read_by_gdal(hz_server, open_and_closed, tmp_path):
    open_, closed = open_and_closed
    auth = hz_server.token("viewer")["Authorization"]
    env = dict(os.environ, GDAL_HTTP_HEADERS=f"Authorization: {auth}")
    info = subprocess.run(["ogrinfo", "-ro", "-so", f"OAPIF:{hz_server.base}/ogc", "hazards"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert info.returncode == 0, info.stderr
    assert "Geometry: Point" in info.stdout and "risk_level" in info.stdout
    out = tmp_path / "hazards.geojson"
    conv = subprocess.run(["ogr2ogr", "-f", "GeoJSON", str(out), f"OAPIF:{hz_server.base}/ogc", "hazards",
                           "-where", f"county_code = '{COUNTY}'"], capture_output=True, text=True, env=env, timeout=120)
    assert conv.returncode == 0, conv.stderr
    feats = json.loads(out.read_text(encoding="utf-8"))["features"]
    got = {f["properties"]["number"]: f["properties"] for f in feats if f["properties"]["county_code"] == COUNTY}
    assert set(got) == open_ and closed not in got              # open entries only
    assert {p["risk_level"] for p in got.values()} == {1} and {p["status"] for p in got.values()} == {"pending"}


def test_vector_tiles_carry_open_entries(hz_server, open_and_closed):
    headers = hz_server.token("viewer")
    z = 16
    x = int((LON0 + 180) / 360 * 2 ** z)
    y = int((1 - math.asinh(math.tan(math.radians(LAT0))) / math.pi) / 2 * 2 ** z)
    res = httpx.get(f"{hz_server.base}/tiles/hazards/{z}/{x}/{y}.mvt", headers=headers)
    assert res.status_code == 200, res.text
    data = res.content
    if res.headers.get("content-encoding") != "gzip" and data[:2] == b"\x1f\x8b":
        import gzip
        data = gzip.decompress(data)
    tile = mapbox_vector_tile.decode(data)
    numbers = {f["properties"]["number"] for f in tile["hazards"]["features"]}
    assert numbers & open_and_closed[0] and open_and_closed[1] not in numbers
    style = httpx.get(f"{hz_server.base}/styles/onemap.json", headers=headers).json()
    layer = next(s for s in style["layers"] if s.get("source-layer") == "hazards")
    assert "#d7191c" in json.dumps(layer["paint"])                    # 一级 红


def _gas_delivery(folder: Path, building_at: tuple[float, float]) -> Path:
    """RQPOINT / RQLINE shapefiles (EPSG:4546, GBK) of a 60 m medium-pressure gas main running
    east through ``building_at`` (easting, northing)."""
    e0, n0 = building_at[0] - 25, building_at[1]
    pts = pd.DataFrame({"物探点号": ["RQ1", "RQ2", "RQ3"], "X": [n0] * 3, "Y": [e0, e0 + 30, e0 + 60],
                        "地面高程": [50.0] * 3, "特征": ["", "", "盖堵"], "附属物": ["阀门", "", ""]})
    lines = pd.DataFrame({"起点点号": ["RQ1", "RQ2"], "终点点号": ["RQ2", "RQ3"], "起点埋深": [1.2, 1.2],
                          "终点埋深": [1.2, 1.2], "管径": ["110", "110"], "材质": ["PE", "PE"],
                          "埋设方式": ["直埋", "直埋"], "压力级制": ["中压B", "中压B"], "建设年代": [2018, 2018]})
    folder.mkdir(parents=True, exist_ok=True)
    gpts = gpd.GeoDataFrame(pts, geometry=shapely.points(pts["Y"], pts["X"]), crs=4546)
    coords = [[(e0, n0), (e0 + 30, n0)], [(e0 + 30, n0), (e0 + 60, n0)]]
    glines = gpd.GeoDataFrame(lines, geometry=[shapely.LineString(c) for c in coords], crs=4546)
    for name, frame in (("RQPOINT", gpts), ("RQLINE", glines)):
        frame.to_file(folder / f"{name}.shp", driver="ESRI Shapefile", engine="pyogrio", encoding="GBK")
    out = folder.parent / "燃气管线.zip"
    with zipfile.ZipFile(out, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f.name)
    return out


def test_background_rescan_after_a_real_ingest(hz_server, tmp_path):
    county = "439602"
    e, n = 567_040.0, 3_214_000.0                                        # EPSG:4546 near 111.69E 29.04N
    to_geo = Transformer.from_crs(4546, 4490, always_xy=True)
    ring = [to_geo.transform(x, y) for x, y in ((e - 5, n - 5), (e + 5, n - 5), (e + 5, n + 5), (e - 5, n + 5),
                                                 (e - 5, n - 5))]
    with psycopg2.connect(hz_server.url) as conn, conn.cursor() as cur:   # the house the new gas main runs under
        cur.execute("INSERT INTO cim.building (code, county_code, geom) VALUES ('ON-THE-MAIN', %s, "
                    "ST_Multi(ST_GeomFromText(%s, 4490)))",
                    (county, "POLYGON((" + ", ".join(f"{x} {y}" for x, y in ring) + "))"))
    delivery = _gas_delivery(tmp_path / "parts", (e, n))
    res = subprocess.run([str(CIM), "ingest", str(delivery), "--county", county, "--json"], capture_output=True,
                         text=True, timeout=300,
                         env=dict(os.environ, CIM_DATABASE_URL=hz_server.url, CIM_HOME=str(tmp_path / "home")))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    loaded = json.loads(res.stdout.strip().splitlines()[-1])
    assert loaded["state"] == "loaded"

    viewer = hz_server.token("viewer")
    deadline = time.monotonic() + 120
    found = []
    while time.monotonic() < deadline and not found:
        found = httpx.get(f"{hz_server.base}/api/hazards", params={"county": county, "rule": "G01"},
                          headers=viewer).json()["features"]
        time.sleep(0.5)
    assert len(found) == 1, "the server did not rescan the county after the delivery"
    entry = httpx.get(f"{hz_server.base}/api/hazards/{found[0]['id']}", headers=viewer).json()
    assert entry["status"] == "pending" and entry["evidence"]["measured"] == pytest.approx(10.0, abs=0.01)
    assert any(r["code"] == "ON-THE-MAIN" for r in entry["facility_refs"])
    tasks = httpx.get(f"{hz_server.base}/api/tasks", params={"kind": "hazards.scan"}, headers=viewer).json()
    scan = next(t for t in tasks if t["args"].get("county") == county)
    assert scan["state"] == "done" and scan["args"]["delivery_id"] == loaded["delivery_id"]
    assert scan["result"]["incremental"] is True and scan["result"]["rules"]["G01"]["new"] == 1
    assert entry["events"][0]["actor"] == f"task:{scan['id']}"
