"""Coordinate systems: ESRI .prj without EPSG, GK zones with and without the zone prefix,
swapped X/Y, inference without .prj (zone prefix, county longitude from the prefix table or
from loaded admin areas), and refusal of a CRS whose area of use does not hold the data."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import shapely
from pyproj import CRS

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import E0, ESRI_CGCS2000_GEO, ESRI_GK_CM111, N0, line_geoms, network, point_geoms, write_shapefile  # noqa: E402

from cim.errors import CrsError  # noqa: E402
from ingest.mapping.crsdetect import identify, longitude_for_county, resolve  # noqa: E402
from ingest.pipeline import read_delivery  # noqa: E402
from ingest.readers.vector import parse_prj  # noqa: E402

LON, LAT = 111.6878, 29.0409       # where (E0, N0) lies in EPSG:4546


def _first_point(d):
    b = next(b for b in d.batches if b.target == "pipe_point")
    g = b.frame["geom"].iloc[0]
    return b, g.x, g.y


def _write_points(folder, pts, geoms=None, **kw):
    return write_shapefile(folder, "YSPOINT", pts, point_geoms(pts) if geoms is None else geoms, **kw)


def test_esri_gk_wkt_without_epsg(tmp_path):
    pts, _ = network(n_points=3)
    shp = _write_points(tmp_path, pts, prj=ESRI_GK_CM111)
    assert "AUTHORITY" not in shp.with_suffix(".prj").read_text()
    b, x, y = _first_point(read_delivery(shp))
    assert b.source_crs == "EPSG:4546"
    assert (x, y) == pytest.approx((LON, LAT), abs=1e-4)


def test_esri_cgcs2000_geographic(tmp_path):
    pts, _ = network(n_points=3)
    geoms = shapely.points(np.full(3, LON) + np.arange(3) * 1e-4, np.full(3, LAT))
    shp = _write_points(tmp_path, pts, geoms, prj=ESRI_CGCS2000_GEO)
    b, x, y = _first_point(read_delivery(shp))
    assert b.source_crs == "EPSG:4490" and (x, y) == pytest.approx((LON, LAT), abs=1e-9)
    assert identify(parse_prj(ESRI_CGCS2000_GEO)) == (4490, None)


@pytest.mark.parametrize(("datum", "width", "prefixed", "epsg"), [
    ("CGCS2000", 3, False, 4546), ("CGCS2000", 3, True, 4525), ("CGCS2000", 6, True, 4497),
    ("Xian1980", 3, False, 2381), ("Beijing1954", 3, True, 2412)])
def test_gk_zones_identified_from_stripped_wkt(datum, width, prefixed, epsg):
    crs = CRS.from_epsg(epsg)
    stripped = parse_prj(crs.to_wkt("WKT1_ESRI"))
    code, zone = identify(stripped)
    assert code == epsg and zone.datum == datum and zone.prefixed == prefixed
    assert zone.width == width or (not prefixed and zone.central_meridian % 3 == 0)


def test_swapped_xy_in_a_shapefile(tmp_path):
    pts, _ = network(n_points=3)
    swapped = shapely.points(pts["X"].to_numpy(float), pts["Y"].to_numpy(float))   # x = northing
    d = read_delivery(_write_points(tmp_path, pts, swapped, epsg=4546))
    b, x, y = _first_point(d)
    assert (x, y) == pytest.approx((LON, LAT), abs=1e-4)
    assert any(n.topic == "axes" for n in d.notes)


def test_missing_prj_with_zone_prefixed_eastings(tmp_path):
    pts, _ = network(n_points=3)
    geoms = shapely.points(pts["Y"].to_numpy(float) + 37_000_000, pts["X"].to_numpy(float))
    d = read_delivery(_write_points(tmp_path, pts, geoms, epsg=None))
    b, x, y = _first_point(d)
    assert b.source_crs == "EPSG:4525"
    assert (x, y) == pytest.approx((LON, LAT), abs=1e-4)
    note = next(n for n in d.notes if n.topic == "crs")
    assert "带号 37" in note.message_zh and "zone prefix 37" in note.message_en


def test_missing_prj_plain_eastings_need_the_county(tmp_path):
    pts, _ = network(n_points=3)
    shp = _write_points(tmp_path, pts, epsg=None)
    with pytest.raises(CrsError) as exc:
        read_delivery(shp)
    assert "county" in exc.value.en
    d = read_delivery(shp, county="430702")
    b, x, y = _first_point(d)
    assert b.source_crs == "EPSG:4546" and (x, y) == pytest.approx((LON, LAT), abs=1e-4)
    assert any("111.6" in n.message_en for n in d.notes if n.topic == "crs")


def test_zone_inference_picks_the_zone_that_fits_the_eastings():
    # eastings west of the CM 111 strip's centre belong to CM 108 for a county near 109.6E
    x = np.array([640_000.0, 641_000.0])     # ≈ 109.45E in CM 108
    y = np.array([3_200_000.0, 3_201_000.0])
    r = resolve(None, x, y, layer="t", county_lon=109.6)
    assert r.label == "EPSG:4545"


def test_declared_plain_zone_with_prefixed_data_is_repaired(tmp_path):
    pts, _ = network(n_points=3)
    geoms = shapely.points(pts["Y"].to_numpy(float) + 37_000_000, pts["X"].to_numpy(float))
    d = read_delivery(_write_points(tmp_path, pts, geoms, epsg=4546))
    b, x, y = _first_point(d)
    assert b.source_crs == "EPSG:4525" and (x, y) == pytest.approx((LON, LAT), abs=1e-4)


def test_utm_declared_but_web_mercator_metres_is_refused(tmp_path):
    pts, _ = network(n_points=3)
    geoms = shapely.points(np.full(3, 12_433_000.0) + np.arange(3), np.full(3, 3_380_000.0))
    shp = _write_points(tmp_path, pts, geoms, epsg=32649)
    with pytest.raises(CrsError) as exc:
        read_delivery(shp)
    assert "EPSG:32649" in exc.value.en and "does not contain" in exc.value.en and exc.value.zh


def test_projected_coordinates_near_zero_are_refused(tmp_path):
    pts, _ = network(n_points=3)
    geoms = shapely.points(np.arange(3) * 10.0, np.arange(3) * 10.0)
    with pytest.raises(CrsError):
        read_delivery(_write_points(tmp_path, pts, geoms, epsg=4546))


def test_unknown_prj_and_meaningless_coordinates(tmp_path):
    pts, _ = network(n_points=3)
    shp = _write_points(tmp_path, pts, prj="PROJCS[nonsense")
    with pytest.raises(CrsError):
        read_delivery(shp)
    geoms = shapely.points(np.arange(3) * 10.0, np.arange(3) * 10.0)
    with pytest.raises(CrsError) as exc:
        read_delivery(_write_points(tmp_path / "b", pts, geoms, epsg=None), county="430702")
    assert "unknown" in exc.value.en


def test_swapped_xy_point_table(tmp_path):
    """A CSV whose X column holds eastings (not the Chinese convention) is swapped back."""
    pts, lines = network(n_points=3)
    pts = pts.rename(columns={"X": "Y", "Y": "X"})
    pts.to_csv(tmp_path / "YSPOINT.csv", index=False)
    d = read_delivery(tmp_path / "YSPOINT.csv", county="430702")
    b, x, y = _first_point(d)
    assert (x, y) == pytest.approx((LON, LAT), abs=1e-4)


def test_county_longitude_from_loaded_admin_area(conn):
    assert longitude_for_county("430702") == pytest.approx(111.6)     # prefix table (常德)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO cim.admin_area (code, name, level, county_code, geom) VALUES "
                    "('439999', '测试县', 'county', '439999', "
                    "ST_Multi(ST_MakeEnvelope(109.0, 28.0, 109.4, 28.4, 4490)))")
    assert longitude_for_county("439999", conn) == pytest.approx(109.2)
    assert longitude_for_county("439999") == pytest.approx(111.7)       # province prefix without the DB


def test_lines_keep_their_source_crs(tmp_path):
    pts, lines = network(n_points=3)
    shp = write_shapefile(tmp_path, "YSLINE", lines, line_geoms(pts, lines), prj=ESRI_GK_CM111)
    d = read_delivery(shp)
    assert d.batches[0].source_crs == "EPSG:4546"
    assert d.batches[0].source_geom is not None
    assert shapely.get_coordinates(d.batches[0].source_geom)[0] == pytest.approx([E0, N0])


# --- Xian 1980 / Beijing 1954 → CGCS2000 (ingest/datum_shifts.yaml) -----------------------------

XIAN80_CM111 = 2382          # Xian 1980 / 3-degree Gauss-Kruger CM 111E


def _xian_delivery(tmp_path):
    pts, _ = network(n_points=3)
    return _write_points(tmp_path, pts, prj=CRS.from_epsg(XIAN80_CM111).to_wkt("WKT1_ESRI"))


def _shifts(tmp_path, text: str):
    from cim.settings import IngestSettings
    path = tmp_path / "shifts.yaml"
    path.write_text(text, encoding="utf-8")
    return IngestSettings(datum_shifts=path)


def _bound(p):
    """pyproj's own Bursa-Wolf route (BoundCRS on both sides) as the reference."""
    from pyproj import Transformer
    from pyproj.crs import BoundCRS
    from pyproj.crs.coordinate_operation import ToWGS84Transformation

    src, dst = CRS.from_epsg(XIAN80_CM111), CRS.from_epsg(4490)
    b_src = BoundCRS(src, CRS.from_epsg(4326), ToWGS84Transformation(src.geodetic_crs, *p))
    b_dst = BoundCRS(dst, CRS.from_epsg(4326), ToWGS84Transformation(dst.geodetic_crs, 0, 0, 0, 0, 0, 0, 0))
    return Transformer.from_crs(b_src, b_dst, always_xy=True)


def test_xian80_without_parameters_says_so(tmp_path):
    from pyproj import Transformer
    d = read_delivery(_xian_delivery(tmp_path), county="430702")
    b, x, y = _first_point(d)
    assert b.source_crs == f"EPSG:{XIAN80_CM111}"
    ballpark = Transformer.from_crs(CRS.from_epsg(XIAN80_CM111), CRS.from_epsg(4490), always_xy=True)
    assert (x, y) == pytest.approx(ballpark.transform(E0, N0), abs=1e-9)
    notes = [n for n in d.notes if n.topic == "crs" and "西安80" in n.message_zh]
    assert notes and "未配置" in notes[0].message_zh and "ballpark" in notes[0].message_en


def test_xian80_seven_parameters_for_the_county(tmp_path):
    p = [-15.8, 137.2, 62.4, 0.5, -1.2, 0.8, 2.1]
    settings = _shifts(tmp_path, "Xian1980:\n  - counties: ['4307']\n    source: 测试参数\n"
                                 f"    helmert7: {p}\n")
    shp = _xian_delivery(tmp_path)
    d = read_delivery(shp, county="430702", settings=settings)
    _, x, y = _first_point(d)
    assert (x, y) == pytest.approx(_bound(p).transform(E0, N0), abs=1e-9)     # sub-millimetre
    assert any("七参数" in n.message_zh and "测试参数" in n.message_zh for n in d.notes)
    # metres, not centimetres, from the ballpark: the parameters matter
    from pyproj import Transformer
    bx, by = Transformer.from_crs(CRS.from_epsg(XIAN80_CM111), CRS.from_epsg(4490), always_xy=True).transform(E0, N0)
    assert abs(x - bx) * 97_000 > 5 or abs(y - by) * 111_000 > 5
    # coordinate-frame rotations are the position-vector ones with the opposite sign
    cf = _shifts(tmp_path, "Xian1980:\n  - counties: ['4307']\n    source: t\n    convention: coordinate_frame\n"
                           f"    helmert7: {p[:3] + [-v for v in p[3:6]] + p[6:]}\n")
    _, x2, y2 = _first_point(read_delivery(shp, county="430702", settings=cf))
    assert (x2, y2) == pytest.approx((x, y), abs=1e-9)
    # another county: no parameters
    other = read_delivery(shp, county="440103", settings=settings)
    assert any("未配置" in n.message_zh for n in other.notes)


def test_beijing54_plane_four_parameters(tmp_path):
    """Plane 4-parameter set: X' = dx + (1+m)(X cos a − Y sin a), Y' = dy + (1+m)(X sin a + Y cos a)
    in the zone, then the CGCS2000 zone of the same central meridian."""
    import math

    from pyproj import Transformer
    settings = _shifts(tmp_path, "Beijing1954:\n  - counties: ['430702']\n    source: 四参数\n"
                                 "    plane4: {dx: -42.3, dy: 118.9, rotation_arcsec: 1.2, scale_ppm: -3.4}\n")
    pts, _ = network(n_points=3)
    east, north = E0 + 37_000_000, N0
    geoms = shapely.points(np.full(3, east) + np.arange(3) * 10.0, np.full(3, north))
    shp = _write_points(tmp_path, pts, geoms, prj=CRS.from_epsg(2413).to_wkt("WKT1_ESRI"))  # Beijing 1954 zone 37
    d = read_delivery(shp, county="430702", settings=settings)
    _, x, y = _first_point(d)
    a, k = math.radians(1.2 / 3600), 1 - 3.4e-6
    n2 = -42.3 + k * (north * math.cos(a) - east * math.sin(a))
    e2 = 118.9 + k * (north * math.sin(a) + east * math.cos(a))
    ref = Transformer.from_crs(CRS.from_epsg(4525), CRS.from_epsg(4490), always_xy=True).transform(e2, n2)
    assert (x, y) == pytest.approx(ref, abs=1e-9)
    assert any("平面四参数" in n.message_zh for n in d.notes)


def test_invalid_datum_shift_file_is_a_config_error(tmp_path):
    from cim.errors import ConfigError
    bad = _shifts(tmp_path, "Xian1980:\n  - counties: ['43']\n    source: x\n    helmert7: [1, 2, 3]\n")
    with pytest.raises(ConfigError):
        read_delivery(_xian_delivery(tmp_path), county="430702", settings=bad)
