"""Decoded tiles: layers, counts, properties, generalisation, empty tiles, byte budget."""

from __future__ import annotations

import gzip
import math

import mapbox_vector_tile
import pytest

from tests.tiles.conftest import BBOX, KNOWN_LAT, KNOWN_LON


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """XYZ tile containing a lon/lat."""
    n = 1 << z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def decode(resp) -> dict:
    """Decode an MVT response body (httpx already undid Content-Encoding: gzip)."""
    return mapbox_vector_tile.decode(resp.content)


def test_known_building_tile(http):
    x, y = tile_of(KNOWN_LON + 0.0001, KNOWN_LAT + 0.0001, 18)
    r = http.get(f"/tiles/buildings/18/{x}/{y}.mvt")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    tile = decode(r)
    assert list(tile) == ["buildings"]
    feats = tile["buildings"]["features"]
    # the superseded copy (is_current = false) at the same place is not served
    assert len(feats) == 1
    props = feats[0]["properties"]
    assert props["code"] == "KNOWN-1" and props["name"] == "测试大楼"
    assert props["floors_above"] == 12 and props["height_m"] == pytest.approx(36.5)
    assert props["use_code"] == "YL"
    assert isinstance(feats[0]["id"], int) and feats[0]["id"] > 0
    assert feats[0]["geometry"]["type"] == "Polygon"
    # only exposed attributes travel: no lineage columns
    assert "delivery_id" not in props and "is_current" not in props and "source_row" not in props


def test_composite_layers_named_by_id(http):
    x, y = tile_of(111.205, 27.105, 16)
    r = http.get(f"/tiles/buildings,pipeline_segments,drainage_pipes,gas_pipes,streetlights/16/{x}/{y}.mvt")
    assert r.status_code == 200
    tile = decode(r)
    assert set(tile) == {"buildings", "pipeline_segments", "drainage_pipes", "gas_pipes", "streetlights"}
    # spec filters (where network = ...) are applied per layer
    assert {f["properties"]["network"] for f in tile["drainage_pipes"]["features"]} == {"PS"}
    assert {f["properties"]["network"] for f in tile["gas_pipes"]["features"]} == {"RQ"}
    assert {f["properties"]["network"] for f in tile["pipeline_segments"]["features"]} == {"JS", "PS", "RQ"}
    # a z16 tile (~540 m) over the dense grid holds thousands of buildings
    assert len(tile["buildings"]["features"]) > 1000


def test_layer_zoom_ranges_and_centroids(http):
    x, y = tile_of(111.205, 27.105, 14)
    tile = decode(http.get(f"/tiles/buildings,pipeline_points/14/{x}/{y}.mvt"))
    # pipeline_points start at z15; buildings are centroids below z15 with style attributes only
    assert "pipeline_points" not in tile
    feats = tile["buildings"]["features"]
    assert feats and all(f["geometry"]["type"] == "Point" for f in feats)
    assert set(feats[0]["properties"]) <= {"use_code", "name"}
    # below every layer's minzoom the composite is empty: 204
    x, y = tile_of(111.205, 27.105, 12)
    assert http.get(f"/tiles/buildings,pipeline_points/12/{x}/{y}.mvt").status_code == 204


def test_empty_tile_is_204(http):
    x, y = tile_of(-70.0, -30.0, 16)
    r = http.get(f"/tiles/buildings/16/{x}/{y}.mvt")
    assert r.status_code == 204 and r.content == b""
    assert r.headers.get("etag")


def test_gzip_only_when_accepted(http):
    x, y = tile_of(111.205, 27.105, 17)
    url = f"/tiles/buildings/17/{x}/{y}.mvt"
    zipped = http.get(url, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    plain = http.get(url, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.content == zipped.content  # httpx decoded the gzip body
    raw = http.get(url, headers={"Accept-Encoding": "gzip"}).stream
    assert raw is not None
    assert len(gzip.compress(plain.content)) < len(plain.content)


def test_no_tile_over_budget_z10_to_z18(http):
    """Every tile covering the seeded extent, all layers, z10–z18: ≤ 500 KB."""
    layers = ",".join(http.get("/api/layers").json()[i]["id"] for i in range(len(http.get("/api/layers").json())))
    biggest = 0
    for z in range(10, 19):
        x0, y0 = tile_of(BBOX[0], BBOX[3], z)
        x1, y1 = tile_of(BBOX[2], BBOX[1], z)
        for x in range(x0, x1 + 1):
            for y in range(y0, y1 + 1):
                r = http.get(f"/tiles/{layers}/{z}/{x}/{y}.mvt", headers={"Accept-Encoding": "identity"})
                assert r.status_code in (200, 204)
                biggest = max(biggest, len(r.content))
                assert len(r.content) <= 500 * 1024, f"{z}/{x}/{y} is {len(r.content)} bytes"
    assert biggest > 100 * 1024  # the seed is dense enough for the budget to matter


def test_attribute_bands(http):
    """Below generalisation.attributes_below only the styled attributes travel; from there on all exposed ones."""
    x, y = tile_of(111.205, 27.105, 15)
    t15 = decode(http.get(f"/tiles/buildings,pipeline_segments/15/{x}/{y}.mvt"))
    assert {k for f in t15["buildings"]["features"] for k in f["properties"]} == {"use_code"}  # label from z17
    assert t15["buildings"]["features"][0]["geometry"]["type"] == "Polygon"
    assert "diameter_mm" in t15["pipeline_segments"]["features"][0]["properties"]
    x, y = tile_of(111.205, 27.105, 14)
    t14 = decode(http.get(f"/tiles/pipeline_segments/14/{x}/{y}.mvt"))
    assert {k for f in t14["pipeline_segments"]["features"] for k in f["properties"]} <= {"network"}
    x, y = tile_of(111.205, 27.105, 16)
    t16 = decode(http.get(f"/tiles/buildings/16/{x}/{y}.mvt"))
    assert {"code", "floors_above", "use_code", "address"} <= set(t16["buildings"]["features"][0]["properties"])
