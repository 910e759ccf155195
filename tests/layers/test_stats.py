"""Statistics (layers.stats) called without HTTP, on the planted features of county 990001."""

from __future__ import annotations

import psycopg2
import pytest
from pyproj import Geod

from cim.errors import InvalidInput, NotFound
from layers import query as lq
from layers import stats
from layers.catalog import load_catalog

GEOD = Geod(ellps="GRS80")


def _m(lon1, lat1, lon2, lat2) -> float:
    return GEOD.inv(lon1, lat1, lon2, lat2)[2]


def test_stats_of_an_admin_area(on_pool, seeded, db_url):
    out = on_pool(stats.stats, load_catalog().public(), None, 4490, "990001")
    conn = psycopg2.connect(db_url)
    with conn.cursor() as cur:
        cur.execute("SELECT ST_Area(geom::geography) FROM cim.admin_area WHERE code = '990001'")
        area = cur.fetchone()[0]
    conn.close()
    assert abs(out["area_m2"] - area) < 1
    c = out["counts"]
    assert (c["buildings"], c["streetlights"], c["pipeline_segments"], c["drainage_pipes"], c["gas_pipes"]) == (5, 12, 3, 1, 1)
    seg = _m(100.500, 25.0, 100.502, 25.0)
    pl = out["pipe_length_m"]
    assert abs(pl["by_network"]["JS"] - seg) < 0.5 and abs(pl["by_network"]["RQ"] - _m(100.5, 25.002, 100.502, 25.002)) < 0.5
    assert set(pl["by_material"]) == {"PE", "T"} and set(pl["by_diameter_class"]) == {"<300", "300-600", ">=1000"}
    assert pl["total"] == pytest.approx(sum(pl["by_network"].values()), abs=0.02)
    assert pl["total"] == pytest.approx(sum(pl["by_material"].values()), abs=0.02)
    b = out["building_area_m2"]
    assert b["by_use"] == {"ZZ": 6000.0, "JY": 9000.0} and b["count_by_use"] == {"ZZ": 3, "JY": 2} and b["total"] == 15000.0
    assert out["green_area_m2"]["total"] == pytest.approx(sum(out["green_area_m2"]["by_class"].values()), abs=0.2)
    assert [cl["id"] for cl in out["diameter_classes"]][0] == "<300"


def test_stats_of_a_polygon_clip_lengths(on_pool, seeded):
    poly = {"type": "Polygon", "coordinates": [[[100.499, 24.9995], [100.501, 24.9995], [100.501, 25.0025],
                                                [100.499, 25.0025], [100.499, 24.9995]]]}
    out = on_pool(stats.stats, load_catalog().public(), lq.input_geometry(poly), 4490, None)
    half = _m(100.500, 25.0, 100.501, 25.0)
    assert abs(out["pipe_length_m"]["by_network"]["JS"] - half) < 0.5
    assert abs(out["pipe_length_m"]["total"] - 3 * half) < 1.5
    assert out["counts"]["buildings"] == 0 and out["counts"]["pipeline_points"] == 3
    assert out["building_area_m2"] == {"by_use": {}, "count_by_use": {}, "footprint_total": 0, "total": 0}


def test_stats_refuse_unknown_areas_and_ambiguous_requests(on_pool, seeded):
    with pytest.raises(NotFound) as missing:
        on_pool(stats.stats, load_catalog().public(), None, 4490, "999999")
    assert "999999" in missing.value.zh
    with pytest.raises(InvalidInput):
        stats.check_area(True, "990001")
    with pytest.raises(InvalidInput):
        stats.check_area(False, None)


def test_pipe_lengths_fold_rows_by_network_material_and_class():
    rows = [{"network": "JS", "material": "PE", "dia_class": "<300", "length_m": 10.004},
            {"network": "JS", "material": "GT", "dia_class": "300-600", "length_m": 5.0},
            {"network": "PS", "material": "PE", "dia_class": "<300", "length_m": None}]
    out = stats.pipe_lengths(rows)
    assert out == {"by_network": {"JS": 15.0, "PS": 0.0}, "by_material": {"GT": 5.0, "PE": 10.0},
                   "by_diameter_class": {"300-600": 5.0, "<300": 10.0}, "total": 15.0}
    assert list(out["by_material"]) == ["GT", "PE"]  # sorted keys
