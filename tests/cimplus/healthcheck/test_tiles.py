"""The catalogue layer ``healthcheck`` (view cim.healthcheck_latest) in the vector tiles: a tile of the
fixture county served over HTTP by the real app, decoded, carries the values of the latest run, and
after a change and a new run the same tile carries the new run's values (the tile cache follows the
runs through the data versions).

The county has a database of its own (test_membership.County): the runs made here never become
the latest values other tests read.
"""

from __future__ import annotations

import math

import httpx
import mapbox_vector_tile
import psycopg2
import pytest

from cim.settings import AuthSettings, DatabaseSettings
from tests.cimplus.healthcheck.conftest import COUNTY, K1
from tests.cimplus.healthcheck.test_indicators import EXPECTED
from tests.cimplus.healthcheck.test_membership import County


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """XYZ tile containing a lon/lat."""
    n = 1 << z
    return int((lon + 180) / 360 * n), int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)


def county_tile(url: str) -> tuple[int, int, int]:
    """The deepest tile (z ≤ 14) holding the whole county."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) AS e "
                        "FROM cim.admin_area WHERE code = %s AND is_current) x", (COUNTY,))
            x0, y0, x1, y1 = cur.fetchone()
    finally:
        conn.close()
    for z in range(14, 0, -1):
        if tile_of(x0, y1, z) == tile_of(x1, y0, z):
            return (z, *tile_of(x0, y1, z))
    raise AssertionError("the county spans tiles at every zoom")


def run_rows(url: str, run_id: int) -> dict[tuple[str, str], dict]:
    """The stored values of a run by (indicator, area code)."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT indicator, area_code, area_level, state, value, threshold, op, pass, class_no, color "
                        "FROM cim.healthcheck_value WHERE run_id = %s", (run_id,))
            cols = [c.name for c in cur.description]
            return {(r[0], r[1]): dict(zip(cols, r, strict=True)) for r in cur.fetchall()}
    finally:
        conn.close()


def tile_features(base: str, z: int, x: int, y: int) -> dict[tuple[str, str], dict]:
    """The decoded ``healthcheck`` features of a tile by (indicator, area code)."""
    res = httpx.get(f"{base}/tiles/healthcheck/{z}/{x}/{y}.mvt", timeout=60)
    assert res.status_code == 200, res.text
    assert res.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    tile = mapbox_vector_tile.decode(res.content)
    assert list(tile) == ["healthcheck"]
    feats = tile["healthcheck"]["features"]
    got = {(f["properties"]["indicator"], f["properties"]["area_code"]): f["properties"] for f in feats}
    assert len(got) == len(feats)                          # one feature per area and indicator
    return got


def assert_carries(got: dict[tuple[str, str], dict], run_id: int, rows: dict[tuple[str, str], dict]) -> None:
    """Every value of the run is in the tile with its state, value, target, judgement and class colour."""
    assert set(got) == set(rows)
    for key, row in rows.items():
        props = got[key]
        assert props["run_id"] == run_id and props["year"] == 2025, key
        assert props["state"] == row["state"] and props["area_level"] == row["area_level"], key
        if row["value"] is None:                           # MVT carries no nulls
            assert "value" not in props, key
        else:
            assert props["value"] == pytest.approx(row["value"], rel=1e-12, abs=1e-12), key
        want = "not_computed" if row["state"] != "computed" else {True: "pass", False: "fail", None: "none"}[row["pass"]]
        assert props["pass_state"] == want, key
        assert props.get("pass") == row["pass"] and props.get("color") == row["color"], key
        assert props.get("class_no") == row["class_no"], key
        assert props.get("threshold") == row["threshold"] and props.get("op") == row["op"], key


def test_tiles_carry_the_latest_run(make_database, tmp_path, live_app):
    county = County(make_database("cim_hc_tiles"), tmp_path)
    first = county.run()
    base = live_app(auth=AuthSettings(public_read=True), db=DatabaseSettings(database_url=county.url))
    z, x, y = county_tile(county.url)
    rows = run_rows(county.url, first["run_id"])
    assert len(rows) == 6 * len(EXPECTED)                  # county, two streets, three communities
    got = tile_features(base, z, x, y)
    assert_carries(got, first["run_id"], rows)
    assert got[("structural_hazard_homes", K1)]["value"] == 2 and got[("structural_hazard_homes", K1)]["pass_state"] == "fail"
    assert got[("park_service_coverage", K1)]["value"] == pytest.approx(90.0, rel=1e-6)

    # B3 (a dwelling in K1) appraised D: the next run counts three; the same tile now carries that run
    county.execute("UPDATE cim.building SET appraisal_grade = 'D' WHERE code = 'B3'")
    second = county.run()
    assert second["run_id"] > first["run_id"]
    again = tile_features(base, z, x, y)
    assert_carries(again, second["run_id"], run_rows(county.url, second["run_id"]))
    assert again[("structural_hazard_homes", K1)]["value"] == 3
