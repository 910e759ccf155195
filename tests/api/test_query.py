"""Spatial query endpoints against the known geometry of tests/api/seed.sql."""

from __future__ import annotations

import psycopg2
import pytest
from pyproj import Geod

GEOD = Geod(ellps="GRS80")  # CGCS2000's ellipsoid differs from GRS80 by 0.1 mm in b


def _m(lon1, lat1, lon2, lat2) -> float:
    return GEOD.inv(lon1, lat1, lon2, lat2)[2]


def _codes(features, key="code"):
    return [f["properties"][key] for f in features]


def test_identify_point_in_building(client, seeded):
    r = client.post("/api/query/identify", json={"lon": 100.5021, "lat": 25.0051, "tolerance_m": 5})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    feats = r.json()["features"]
    got = {(f["layer"], f["id"]) for f in feats}
    assert ("buildings", seeded["TB-002"]) in got
    assert ("admin_areas", seeded["990001"]) in got and ("admin_areas", seeded["990001001"]) in got
    assert len(feats) == 3 and all(f["distance_m"] == 0 for f in feats)
    b = next(f for f in feats if f["layer"] == "buildings")
    assert b["layer_title_zh"] == "房屋建筑" and b["properties"]["code"] == "TB-002"
    assert b["geometry"]["type"] == "MultiPolygon"


def test_identify_with_no_layers_finds_nothing(client, seeded):
    r = client.post("/api/query/identify", json={"lon": 100.5021, "lat": 25.0051, "layers": []})
    assert r.status_code == 200 and r.json()["features"] == []
    r = client.post("/api/query/spatial", json={"geometry": {"type": "Point", "coordinates": [100.5, 25]}, "layers": []})
    assert r.status_code == 200 and r.json() == {"layers": {}}


def test_identify_tolerance_in_metres(client, seeded):
    lat = 25.00004  # about 4.4 m north of the JS pipe at lat 25.0000
    expected = _m(100.501, 25.0, 100.501, lat)
    body = {"lon": 100.501, "lat": lat, "tolerance_m": 5, "layers": ["pipeline_segments", "pipeline_points"]}
    feats = client.post("/api/query/identify", json=body).json()["features"]
    assert [(f["layer"], f["id"]) for f in feats] == [("pipeline_segments", seeded["TSEG-JS"])]
    assert abs(feats[0]["distance_m"] - expected) < 0.05
    body["tolerance_m"] = 4
    assert client.post("/api/query/identify", json=body).json()["features"] == []
    # the non-current segment at lat 25.0005 is never found
    body.update(lat=25.0005, tolerance_m=10)
    assert client.post("/api/query/identify", json=body).json()["features"] == []


def test_identify_in_a_projected_crs(client, seeded):
    from pyproj import Transformer
    x, y = Transformer.from_crs(4490, 3857, always_xy=True).transform(100.5021, 25.0051)
    body = {"lon": x, "lat": y, "tolerance_m": 1, "layers": ["buildings"], "crs": "EPSG:3857"}
    feats = client.post("/api/query/identify", json=body).json()["features"]
    assert [f["id"] for f in feats] == [seeded["TB-002"]]


def test_nearest_orders_by_geodesic_distance(client, seeded):
    r = client.post("/api/query/nearest", json={"lon": 100.50125, "lat": 25.003, "layer": "streetlights", "k": 3})
    feats = r.json()["features"]
    assert _codes(feats, "pole_no") == ["LD-006", "LD-007", "LD-005"]
    assert [f["id"] for f in feats] == [seeded["LD-006"], seeded["LD-007"], seeded["LD-005"]]
    for f in feats:
        lon, lat = f["geometry"]["coordinates"]
        assert abs(f["properties"]["distance_m"] - _m(100.50125, 25.003, lon, lat)) < 0.01


def test_spatial_intersects_within_dwithin_and_filter(client, seeded):
    poly = {"type": "Polygon", "coordinates": [[[100.5005, 25.004], [100.5035, 25.004], [100.5035, 25.006],
                                                [100.5005, 25.006], [100.5005, 25.004]]]}
    out = client.post("/api/query/spatial", json={"geometry": poly, "layers": ["buildings"]}).json()
    fc = out["layers"]["buildings"]
    assert sorted(_codes(fc["features"])) == ["TB-001", "TB-002", "TB-003"]
    assert fc["numberReturned"] == 3 and fc["limitReached"] is False
    out = client.post("/api/query/spatial", json={"geometry": poly, "layers": ["buildings"],
                                                  "filter": "use_code = 'ZZ' AND height_m > 7"}).json()
    assert sorted(_codes(out["layers"]["buildings"]["features"])) == ["TB-002", "TB-003"]
    half = {"type": "Polygon", "coordinates": [[[100.5005, 25.004], [100.5021, 25.004], [100.5021, 25.006],
                                                [100.5005, 25.006], [100.5005, 25.004]]]}
    out = client.post("/api/query/spatial", json={"geometry": half, "op": "within", "layers": ["buildings"]}).json()
    assert _codes(out["layers"]["buildings"]["features"]) == ["TB-001"]  # TB-002 only partly inside
    pt = {"type": "Point", "coordinates": [100.5002, 25.0031]}
    out = client.post("/api/query/spatial", json={"geometry": pt, "op": "dwithin", "distance_m": 12,
                                                  "layers": ["streetlights", "buildings"]}).json()
    assert _codes(out["layers"]["streetlights"]["features"], "pole_no") == ["LD-001"]
    assert out["layers"]["buildings"]["features"] == []
    out = client.post("/api/query/spatial", json={"geometry": poly, "layers": ["buildings"], "limit": 2}).json()
    assert out["layers"]["buildings"]["numberReturned"] == 2 and out["layers"]["buildings"]["limitReached"] is True


def test_section_crossings_elevations_and_ground(client, seeded):
    line = {"type": "LineString", "coordinates": [[100.501, 24.9995], [100.501, 25.0025]]}
    r = client.post("/api/query/section", json={"line": line})
    assert r.status_code == 200, r.text
    out = r.json()
    assert abs(out["length_m"] - _m(100.501, 24.9995, 100.501, 25.0025)) < 0.05
    pipes = out["pipes"]
    assert [p["id"] for p in pipes] == [seeded["TSEG-JS"], seeded["TSEG-YS"], seeded["TSEG-RQ"]]
    js, ys, rq = pipes
    assert js["network"] == "JS" and js["network_zh"] == "给水" and js["material_zh"] == "聚乙烯塑料"
    assert js["diameter_mm"] == 300 and js["color"].startswith("#") and js["layer"] == "pipeline_segments"
    assert abs(js["distance_m"] - _m(100.501, 24.9995, 100.501, 25.0)) < 0.05
    assert (js["z_top"], js["z_centre"], js["z_bottom"], js["depth_m"], js["ground_z"]) == (99.2, 99.05, 98.9, 1.3, 100.5)
    assert ys["width_mm"] == 1000 and ys["height_mm"] == 800 and ys["material_zh"] == "混凝土"
    assert (ys["z_bottom"], ys["z_centre"], ys["z_top"], ys["depth_m"], ys["ground_z"]) == (97.9, 98.3, 98.7, 3.1, 101.0)
    assert abs(ys["distance_m"] - _m(100.501, 24.9995, 100.501, 25.001)) < 0.05
    assert (rq["z_top"], rq["z_centre"], rq["z_bottom"], rq["depth_m"]) == (99.28, 99.2, 99.12, 1.3)
    ground = out["ground"]
    assert ground[0]["distance_m"] == 0 and abs(ground[-1]["distance_m"] - out["length_m"]) < 0.01
    assert len(ground) >= 11 and all(100.0 <= g["z"] <= 101.5 for g in ground)
    # the drainage layer alone: only the YS pipe, attributed to drainage_pipes
    out = client.post("/api/query/section", json={"line": line, "layers": ["drainage_pipes"]}).json()
    assert [(p["id"], p["layer"]) for p in out["pipes"]] == [(seeded["TSEG-YS"], "drainage_pipes")]
    both = client.post("/api/query/section", json={"line": line, "layers": ["pipeline_segments", "gas_pipes"]}).json()
    assert [p["layer"] for p in both["pipes"]] == ["pipeline_segments", "pipeline_segments", "gas_pipes"]


def test_stats_admin_area(client, seeded, db_url):
    out = client.post("/api/query/stats", json={"admin_code": "990001"}).json()
    conn = psycopg2.connect(db_url)
    with conn.cursor() as cur:
        cur.execute("SELECT ST_Area(geom::geography) FROM cim.admin_area WHERE code = '990001'")
        area = cur.fetchone()[0]
    conn.close()
    assert abs(out["area_m2"] - area) < 1
    c = out["counts"]
    assert (c["buildings"], c["streetlights"], c["pipeline_segments"], c["drainage_pipes"], c["gas_pipes"]) == (5, 12, 3, 1, 1)
    assert (c["pipeline_points"], c["drainage_nodes"], c["gas_points"], c["green_spaces"], c["admin_areas"]) == (6, 2, 2, 2, 2)
    seg = _m(100.500, 25.0, 100.502, 25.0)
    pl = out["pipe_length_m"]
    assert abs(pl["by_network"]["JS"] - seg) < 0.5 and abs(pl["by_network"]["PS"] - _m(100.5, 25.001, 100.502, 25.001)) < 0.5
    assert abs(pl["by_material"]["PE"] - 2 * seg) < 1 and set(pl["by_material"]) == {"PE", "T"}
    assert set(pl["by_diameter_class"]) == {"<300", "300-600", ">=1000"}
    assert abs(out["green_area_m2"]["by_class"]["G1"] - 201.9 * 221.6) < 200
    assert out["building_area_m2"]["by_use"] == {"ZZ": 6000.0, "JY": 9000.0}
    r = client.post("/api/query/stats", json={"admin_code": "999999"})
    assert r.status_code == 404 and r.json()["message_zh"]


def test_stats_polygon_clips_lengths(client, seeded):
    poly = {"type": "Polygon", "coordinates": [[[100.499, 24.9995], [100.501, 24.9995], [100.501, 25.0025],
                                                [100.499, 25.0025], [100.499, 24.9995]]]}
    out = client.post("/api/query/stats", json={"geometry": poly}).json()
    half = _m(100.500, 25.0, 100.501, 25.0)
    assert abs(out["pipe_length_m"]["by_network"]["JS"] - half) < 0.5
    assert abs(out["pipe_length_m"]["total"] - 3 * half) < 1.5
    assert out["counts"]["buildings"] == 0 and out["counts"]["pipeline_points"] == 3


@pytest.mark.parametrize("path,body", [
    ("identify", {"lon": "x", "lat": 25}), ("identify", {"lon": 500, "lat": 25}), ("identify", {"lat": 25}),
    ("identify", {"lon": 100, "lat": 25, "tolerance_m": -1}), ("identify", {"lon": 100, "lat": 25, "layers": ["nope"]}),
    ("identify", {"lon": 100, "lat": 25, "crs": "EPSG:99999"}), ("identify", {"lon": 100, "lat": 25, "extra": 1}),
    ("identify", {"lon": 100, "lat": 25, "layers": ["buildings"] * 51}),
    ("spatial", {"geometry": {"type": "Polygon", "coordinates": [[1, 2]]}}), ("spatial", {"geometry": {"type": "Blob"}}),
    ("spatial", {"geometry": {"type": "Point", "coordinates": [100, 25]}, "op": "touches"}),
    ("spatial", {"geometry": {"type": "Point", "coordinates": [100, 25]}, "op": "dwithin"}),
    ("spatial", {"geometry": {"type": "Point", "coordinates": [100, 25]}, "layers": ["buildings"], "filter": "nope = 1"}),
    ("spatial", {"geometry": {"type": "Point", "coordinates": [100, 25]}, "limit": 0}),
    ("spatial", {"geometry": {"type": "Point", "coordinates": [1e20, 25]}}),
    ("nearest", {"lon": 100, "lat": 25, "layer": "nope"}), ("nearest", {"lon": 100, "lat": 25, "layer": "buildings", "k": 0}),
    ("section", {"line": {"type": "Point", "coordinates": [100, 25]}}),
    ("section", {"line": {"type": "LineString", "coordinates": [[100, 25], [100.1, 25.1]]}, "layers": ["buildings"]}),
    ("section", {"line": {"type": "LineString", "coordinates": [[100, 25], [101, 26]]}}),
    ("stats", {}), ("stats", {"admin_code": "x1"}),
    ("stats", {"admin_code": "990001", "geometry": {"type": "Point", "coordinates": [1, 2]}}),
    ("stats", {"geometry": {"type": "LineString", "coordinates": [[1, 2], [3, 4]]}}),
])
def test_bad_query_input_is_4xx_bilingual(client, path, body):
    r = client.post(f"/api/query/{path}", json=body)
    assert r.status_code in (400, 404), (path, body, r.status_code, r.text[:300])
    assert r.json()["message_zh"] and r.json()["message_en"]


def test_malformed_json_body_is_400(client):
    r = client.post("/api/query/identify", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["message_en"]


def test_openapi_documents_query_examples(client):
    spec = client.get("/openapi.json").json()
    for path in ("identify", "spatial", "nearest", "section", "stats"):
        op = spec["paths"][f"/api/query/{path}"]["post"]
        content = op["responses"]["200"]["content"]
        assert any(media.get("example") for media in content.values()), path
    schemas = spec["components"]["schemas"]
    for name in ("IdentifyRequest", "SpatialRequest", "NearestRequest", "SectionRequest", "StatsRequest"):
        assert schemas[name].get("examples"), name


def test_identify_lists_a_row_of_overlapping_layers_once(client, seeded):
    body = {"lon": 100.501, "lat": 25.001, "tolerance_m": 1, "layers": ["pipeline_segments", "drainage_pipes"]}
    feats = client.post("/api/query/identify", json=body).json()["features"]
    assert [(f["layer"], f["id"]) for f in feats] == [("drainage_pipes", seeded["TSEG-YS"])]


def test_section_ground_from_the_dem(client, seeded, db_url, tmp_path):
    """With a current DEM the ground profile and the ground at each crossing come from it."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_bounds

    path = tmp_path / "dem.tif"
    w, s, e, n, size = 100.49, 24.99, 100.52, 25.02, 300
    rows = np.arange(size, dtype="float32")[:, None]  # row 0 is the north edge
    data = (150.0 + (size - 1 - rows) * 0.1 + np.zeros((size, size), dtype="float32")).astype("float32")
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="float32", crs="EPSG:4490",
                       transform=from_bounds(w, s, e, n, size, size)) as dst:
        dst.write(data, 1)
    conn = psycopg2.connect(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM cim.dem WHERE is_current")
            previous = [r[0] for r in cur.fetchall()]
            cur.execute("UPDATE cim.dem SET is_current = false WHERE is_current")
            cur.execute("INSERT INTO cim.dem (name, file_path, sha256, srid, crs_wkt, width, height, resolution_x, "
                        "resolution_y, bounds, loaded_by) VALUES ('test', %s, repeat('0', 64), 4490, 'EPSG:4490', %s, %s, "
                        "0.0001, 0.0001, ST_MakeEnvelope(%s, %s, %s, %s, 4490), 'test') RETURNING id",
                        (str(path), size, size, w, s, e, n))
            mine = cur.fetchone()[0]
        conn.commit()
        line = {"type": "LineString", "coordinates": [[100.501, 24.9995], [100.501, 25.0025]]}
        out = client.post("/api/query/section", json={"line": line}).json()
        assert out["ground_source"] == "dem"
        # bilinear value of the north-rising ramp: 150 + 0.1 per 0.0001° north of the south edge, minus half a pixel
        expected = lambda lat: 150.0 + (lat - s) / 0.0001 * 0.1 - 0.05  # noqa: E731
        assert abs(out["ground"][0]["z"] - expected(24.9995)) < 0.02
        assert abs(out["ground"][-1]["z"] - expected(25.0025)) < 0.02
        js = out["pipes"][0]
        assert abs(js["ground_z"] - expected(25.0)) < 0.02 and js["z_top"] == 99.2  # elevations stay the surveyed ones
    finally:
        with conn.cursor() as cur:
            cur.execute("DELETE FROM cim.dem WHERE id = %s", (mine,))
            if previous:
                cur.execute("UPDATE cim.dem SET is_current = true WHERE id = ANY(%s)", (previous,))
        conn.commit()
        conn.close()
