"""Real OGC API – Features clients work unchanged: GDAL's OAPIF driver and OWSLib."""

from __future__ import annotations

import json
import shutil
import subprocess

import psycopg2
import pytest
from owslib.ogcapi.features import Features

pytestmark = pytest.mark.skipif(shutil.which("ogrinfo") is None, reason="gdal-bin is not installed")


def _db_count(db_url: str, sql: str) -> int:
    conn = psycopg2.connect(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_ogrinfo_lists_collections(server):
    res = subprocess.run(["ogrinfo", "-ro", "-q", f"OAPIF:{server}/ogc"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    for layer in ("buildings", "pipeline_segments", "drainage_nodes", "streetlights", "admin_areas", "green_spaces"):
        assert f": {layer}" in res.stdout


def test_ogrinfo_layer_summary(server, seeded):
    res = subprocess.run(["ogrinfo", "-ro", "-so", f"OAPIF:{server}/ogc", "streetlights"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "pole_no" in res.stdout and "Geometry: Point" in res.stdout


def test_ogr2ogr_pages_through_a_whole_layer(server, seeded, db_url, tmp_path):
    out = tmp_path / "lights.geojson"
    res = subprocess.run(["ogr2ogr", "-f", "GeoJSON", str(out), f"OAPIF:{server}/ogc", "streetlights",
                          "-oo", "PAGE_SIZE=5"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    got = json.loads(out.read_text())["features"]
    expected = _db_count(db_url, "SELECT count(*) FROM cim.streetlight WHERE is_current")
    assert len(got) == expected >= 12
    poles = {f["properties"]["pole_no"] for f in got}
    assert {f"LD-{i:03d}" for i in range(1, 13)} <= poles


def test_ogr2ogr_with_spatial_filter_and_where(server, seeded, tmp_path):
    out = tmp_path / "b.geojson"
    res = subprocess.run(["ogr2ogr", "-f", "GeoJSON", str(out), f"OAPIF:{server}/ogc", "buildings",
                          "-spat", "100.49", "24.99", "100.52", "25.02", "-where", "use_code = 'ZZ'"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    codes = sorted(f["properties"]["code"] for f in json.loads(out.read_text())["features"])
    assert codes == ["TB-001", "TB-002", "TB-003"]


def test_owslib_collections_items_and_paging(server, seeded, db_url):
    api = Features(f"{server}/ogc")
    ids = [c["id"] for c in api.collections()["collections"]]
    assert "buildings" in ids and "streetlights" in ids
    assert "buildings" in api.feature_collections()
    assert api.collection("buildings")["title"] == "房屋建筑"
    assert "height_m" in api.collection_queryables("buildings")["properties"]
    fc = api.collection_items("buildings", bbox=[100.49, 24.99, 100.52, 25.02], limit=3)
    assert fc["numberMatched"] == 5 and fc["numberReturned"] == 3
    # page through all streetlights with offset/limit as OWSLib users do
    expected = _db_count(db_url, "SELECT count(*) FROM cim.streetlight WHERE is_current")
    seen, offset = [], 0
    while True:
        page = api.collection_items("streetlights", limit=4, offset=offset)
        seen += [f["id"] for f in page["features"]]
        if not any(link["rel"] == "next" for link in page["links"]):
            break
        offset += 4
    assert len(seen) == len(set(seen)) == expected
    one = api.collection_item("streetlights", str(seeded["LD-007"]))
    assert one["properties"]["pole_no"] == "LD-007"


def test_owslib_crs_and_filter_parameters(server, seeded):
    api = Features(f"{server}/ogc")
    fc = api.collection_items("streetlights", bbox=[100.49, 24.99, 100.52, 25.02], limit=1,
                              crs="http://www.opengis.net/def/crs/EPSG/0/4490")
    assert fc["features"][0]["geometry"]["coordinates"] == [25.003, 100.5002]  # EPSG axis order: lat, lon
    fc = api.collection_items("buildings", bbox=[100.49, 24.99, 100.52, 25.02], filter="height_m > 20")
    assert sorted(f["properties"]["code"] for f in fc["features"]) == ["TB-004", "TB-005"]
