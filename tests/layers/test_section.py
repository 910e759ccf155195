"""Pipe cross-section (layers.section) called without HTTP: planted pipes, with a DEM and without."""

from __future__ import annotations

import contextlib

import numpy as np
import psycopg2
import pytest
import rasterio
from pyproj import Geod
from rasterio.transform import from_bounds

from cim.errors import InvalidInput
from layers import query as lq
from layers import section
from layers.catalog import load_catalog

GEOD = Geod(ellps="GRS80")
LINE = {"type": "LineString", "coordinates": [[100.501, 24.9995], [100.501, 25.0025]]}
W, S, E, N, SIZE = 100.49, 24.99, 100.52, 25.02, 300  # the test DEM: a ramp rising 0.1 m per pixel northwards


def _m(lon1, lat1, lon2, lat2) -> float:
    return GEOD.inv(lon1, lat1, lon2, lat2)[2]


def _ramp(lat: float) -> float:
    """Bilinear value of the ramp DEM at a latitude (pixel centres half a pixel in)."""
    return 150.0 + (lat - S) / 0.0001 * 0.1 - 0.05


@contextlib.contextmanager
def current_dem(db_url, path):
    """Make ``path`` (or nothing, for None) the current DEM; restore the previous state afterwards."""
    conn = psycopg2.connect(db_url)
    mine = None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM cim.dem WHERE is_current")
            previous = [r[0] for r in cur.fetchall()]
            cur.execute("UPDATE cim.dem SET is_current = false WHERE is_current")
            if path is not None:
                cur.execute("INSERT INTO cim.dem (name, file_path, sha256, srid, crs_wkt, width, height, resolution_x, "
                            "resolution_y, bounds, loaded_by) VALUES ('test', %s, repeat('0', 64), 4490, 'EPSG:4490', "
                            "%s, %s, 0.0001, 0.0001, ST_MakeEnvelope(%s, %s, %s, %s, 4490), 'test') RETURNING id",
                            (str(path), SIZE, SIZE, W, S, E, N))
                mine = cur.fetchone()[0]
        conn.commit()
        yield
    finally:
        with conn.cursor() as cur:
            if mine is not None:
                cur.execute("DELETE FROM cim.dem WHERE id = %s", (mine,))
            if previous:
                cur.execute("UPDATE cim.dem SET is_current = true WHERE id = ANY(%s)", (previous,))
        conn.commit()
        conn.close()


def _write_ramp(path):
    rows = np.arange(SIZE, dtype="float32")[:, None]  # row 0 is the north edge
    data = (150.0 + (SIZE - 1 - rows) * 0.1 + np.zeros((SIZE, SIZE), dtype="float32")).astype("float32")
    with rasterio.open(path, "w", driver="GTiff", width=SIZE, height=SIZE, count=1, dtype="float32", crs="EPSG:4490",
                       transform=from_bounds(W, S, E, N, SIZE, SIZE)) as dst:
        dst.write(data, 1)
    return path


def _pipes_layer():
    return load_catalog().select(["pipeline_segments"])


def test_section_without_a_dem_uses_the_pipe_points(on_pool, seeded, db_url):
    with current_dem(db_url, None):
        out = on_pool(section.section, _pipes_layer(), lq.input_geometry(LINE), 4490)
    assert out["ground_source"] == "pipe_points"
    assert abs(out["length_m"] - _m(100.501, 24.9995, 100.501, 25.0025)) < 0.05
    js, ys, rq = out["pipes"]
    assert [p["id"] for p in out["pipes"]] == [seeded["TSEG-JS"], seeded["TSEG-YS"], seeded["TSEG-RQ"]]
    # top reference, 300 mm: z interpolated half way (98.8 → 99.6), ground from the points (100 → 101)
    assert (js["z_top"], js["z_centre"], js["z_bottom"], js["depth_m"], js["ground_z"]) == (99.2, 99.05, 98.9, 1.3, 100.5)
    # invert reference, 800 mm high box: bottom = recorded z
    assert (ys["z_bottom"], ys["z_centre"], ys["z_top"], ys["depth_m"], ys["ground_z"]) == (97.9, 98.3, 98.7, 3.1, 101.0)
    # centre reference, 160 mm
    assert (rq["z_top"], rq["z_centre"], rq["z_bottom"], rq["depth_m"]) == (99.28, 99.2, 99.12, 1.3)
    assert js["color"] == "#00ffff" and js["network_zh"] == "给水" and ys["layer"] == "pipeline_segments"
    assert abs(ys["distance_m"] - _m(100.501, 24.9995, 100.501, 25.001)) < 0.05
    ground = out["ground"]
    assert len(ground) == section.default_samples(out["length_m"]) and ground[0]["distance_m"] == 0
    assert abs(ground[-1]["distance_m"] - out["length_m"]) < 0.01
    assert all(100.0 <= g["z"] <= 101.5 for g in ground)  # weighted between the planted points' ground


def test_section_with_a_dem_takes_the_ground_from_it(on_pool, seeded, db_url, tmp_path):
    with current_dem(db_url, _write_ramp(tmp_path / "dem.tif")):
        out = on_pool(section.section, _pipes_layer(), lq.input_geometry(LINE), 4490, samples=7)
    assert out["ground_source"] == "dem" and len(out["ground"]) == 7
    assert abs(out["ground"][0]["z"] - _ramp(24.9995)) < 0.02 and abs(out["ground"][-1]["z"] - _ramp(25.0025)) < 0.02
    js, ys, rq = out["pipes"]
    assert abs(js["ground_z"] - _ramp(25.0)) < 0.02 and abs(ys["ground_z"] - _ramp(25.001)) < 0.02
    # surveyed elevations and depths stay as recorded; only the ground comes from the DEM
    assert (js["z_top"], js["depth_m"], ys["z_bottom"], rq["z_centre"]) == (99.2, 1.3, 97.9, 99.2)


def test_an_unreadable_dem_falls_back_to_the_pipe_points(on_pool, seeded, db_url, tmp_path):
    with current_dem(db_url, tmp_path / "moved-away.tif"):
        out = on_pool(section.section, _pipes_layer(), lq.input_geometry(LINE), 4490)
    assert out["ground_source"] == "pipe_points" and out["pipes"][0]["ground_z"] == 100.5


def test_section_refuses_other_layers_and_long_lines(on_pool, seeded):
    with pytest.raises(InvalidInput) as bad:
        on_pool(section.section, load_catalog().select(["buildings"]), lq.input_geometry(LINE), 4490)
    assert "buildings" in bad.value.en and bad.value.zh
    far = {"type": "LineString", "coordinates": [[100.0, 25.0], [100.3, 25.0]]}  # ~30 km
    with pytest.raises(InvalidInput) as long:
        on_pool(section.section, _pipes_layer(), lq.input_geometry(far), 4490)
    assert "20 km" in long.value.en


def _row(**kw):
    row = {"id": 1, "layer": "pipeline_segments", "network": "PS", "network_zh": "排水", "subtype": None,
           "diameter_mm": None, "width_mm": None, "height_mm": None, "material": None, "material_zh": None,
           "along_m": 12.34567, "lon": 100.5, "lat": 25.0, "color": "76,57,38", "t_seg": 0.25,
           "start_z": None, "end_z": None, "start_depth": None, "end_depth": None,
           "ground_start": None, "ground_end": None, "z_ref": None}
    row.update(kw)
    return row


def test_crossing_elevations_by_reference_and_derived_values():
    # invert at 10.0 → 11.0, a quarter along: 10.25; DN 1000: top one metre above
    r = section.crossing(_row(start_z=10.0, end_z=11.0, z_ref="invert", diameter_mm=1000), None)
    assert (r["z_bottom"], r["z_centre"], r["z_top"]) == (10.25, 10.75, 11.25) and r["color"] == "#4c3926"
    # height_mm wins over diameter_mm; top reference
    r = section.crossing(_row(start_z=10.0, end_z=10.0, z_ref="top", diameter_mm=1000, height_mm=400), None)
    assert (r["z_top"], r["z_centre"], r["z_bottom"]) == (10.0, 9.8, 9.6)
    # unknown reference counts as centre
    r = section.crossing(_row(start_z=10.0, end_z=10.0, z_ref="xyz", diameter_mm=200), None)
    assert (r["z_top"], r["z_centre"], r["z_bottom"]) == (10.1, 10.0, 9.9)
    # depths only: z = ground − depth, ground from the points' ground (or z + depth), or from the DEM
    r = section.crossing(_row(start_depth=2.0, end_depth=3.0, ground_start=100.0, ground_end=104.0, z_ref="top"), None)
    assert (r["ground_z"], r["depth_m"], r["z_top"]) == (101.0, 2.25, 98.75)
    r = section.crossing(_row(start_depth=2.0, end_depth=3.0, ground_start=100.0, ground_end=104.0, z_ref="top"), 120.0)
    assert (r["ground_z"], r["z_top"]) == (120.0, 117.75)
    # elevations only, ground from z + depth at the ends
    r = section.crossing(_row(start_z=98.0, end_z=98.0, start_depth=2.0, end_depth=None, z_ref="top"), None)
    assert (r["ground_z"], r["depth_m"]) == (100.0, 2.0)
    # nothing surveyed: no elevations, no invented numbers
    r = section.crossing(_row(), None)
    assert (r["z_top"], r["z_centre"], r["z_bottom"], r["depth_m"], r["ground_z"]) == (None, None, None, None, None)
    assert r["distance_m"] == 12.346


def test_small_helpers():
    assert section.hex_color("0,255,255") == "#00ffff" and section.hex_color("#123456") == "#123456"
    assert section.hex_color("teal") is None and section.hex_color(None) is None
    assert section.lerp(1.0, 3.0, 0.5) == 2.0 and section.lerp(None, 3.0, 0.5) == 3.0 and section.lerp(None, None, 0.5) is None
    assert section.default_samples(10) == 11 and section.default_samples(100) == 21 and section.default_samples(5000) == 201
