"""Geometry, building, streetlight and database-backed rules: G01 G02 G03, B01 B02, L01, Q24
(inside the loaded county boundary) and D01 (duplicates of loaded features)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import E0, N0, network, point_geoms, write_shapefile, write_xlsx  # noqa: E402

from ingest.model import Severity  # noqa: E402
from ingest.pipeline import read_delivery  # noqa: E402
from ingest.validate import validate  # noqa: E402

COUNTY = "430702"


def by_rule(report, rule):
    return [f for f in report.findings if f.rule_id == rule]


def _buildings(tmp_path, frame, geoms):
    write_shapefile(tmp_path / "b", "房屋", frame, geoms)
    return read_delivery(tmp_path / "b", county=COUNTY)


def test_g01_repaired_bowtie_and_b01_b02(tmp_path):
    bow = shapely.Polygon([(E0, N0), (E0 + 10, N0 + 10), (E0 + 10, N0), (E0, N0 + 10)])
    ok = shapely.box(E0 + 20, N0, E0 + 30, N0 + 12)
    tiny = shapely.box(E0 + 40, N0, E0 + 41, N0 + 1.5)
    frame = pd.DataFrame({"建筑编号": ["B1", "B2", "B3"], "地上层数": [3, 4, 1], "建筑高度": [9.5, 40.0, 3.0],
                          "结构类型": ["砖混", "框架", "砖混"]})
    d = _buildings(tmp_path, frame, [bow, ok, tiny])
    b = d.batches[0]
    assert b.repaired.tolist() == [True, False, False]
    assert shapely.is_valid(b.frame["geom"].to_numpy()).all()
    r = validate(d)
    g01 = by_rule(r, "G01")
    assert [(x.key, x.severity) for x in g01] == [("B1", Severity.warning)]
    b01 = by_rule(r, "B01")
    assert [(x.key, x.value) for x in b01] == [("B2", 10.0)] and "层高" in b01[0].message_zh
    assert [x.key for x in by_rule(r, "B02")] == ["B3"]
    assert not r.has_errors


def test_g02_empty_coordinates_and_g03_multipart_line(tmp_path):
    pts, lines = network()
    pts["X"] = pts["X"].astype(object)
    pts.loc[2, "X"] = None
    path = write_xlsx(tmp_path / "t.xlsx", {"YSPOINT": pts})
    r = validate(read_delivery(path, county=COUNTY))
    g02 = by_rule(r, "G02")
    assert [(x.row, x.severity) for x in g02] == [(3, Severity.error)]
    multi = shapely.multilinestrings([[(E0, N0), (E0 + 10, N0)], [(E0 + 20, N0), (E0 + 30, N0)]])
    line = pd.DataFrame({"起点点号": ["A"], "终点点号": ["B"], "管径": ["300"], "材质": ["PE"]})
    shp = write_shapefile(tmp_path / "m", "JSLINE", line, [multi])
    r2 = validate(read_delivery(shp))
    assert [x.value for x in by_rule(r2, "G03")] == ["MultiLineString"]


def test_l01_duplicate_pole_numbers(tmp_path):
    frame = pd.DataFrame({"灯杆编号": ["L1", "L2", "L2"], "X": [N0] * 3, "Y": [E0, E0 + 30, E0 + 60]})
    path = write_xlsx(tmp_path / "路灯.xlsx", {"路灯": frame})
    r = validate(read_delivery(path, county=COUNTY))
    assert [x.row for x in by_rule(r, "L01")] == [2, 3]


def _insert_county(conn, code=COUNTY, lon=111.69, lat=29.04, half=0.02):
    with conn.cursor() as cur:
        cur.execute("INSERT INTO cim.admin_area (code, name, level, county_code, geom) VALUES "
                    "(%s, '测试区', 'county', %s, ST_Multi(ST_MakeEnvelope(%s, %s, %s, %s, 4490)))",
                    (code, code, lon - half, lat - half, lon + half, lat + half))


def test_q24_outside_loaded_county_boundary(tmp_path, conn):
    _insert_county(conn)
    pts, lines = network()
    pts.loc[5, "Y"] = pts.loc[5, "Y"] + 8000.0          # 8 km east: outside the 0.04° box
    path = write_xlsx(tmp_path / "t.xlsx", {"YSPOINT": pts})
    d = read_delivery(path, county=COUNTY, conn=conn)
    assert not by_rule(validate(d), "Q24")               # without the database no boundary is known
    q24 = by_rule(validate(d, conn), "Q24")
    assert [(x.key, x.severity) for x in q24] == [("YS6", Severity.error)]


def test_q24_uses_a_delivered_county_boundary(tmp_path):
    sq = shapely.box(E0 - 500, N0 - 500, E0 + 500, N0 + 500)
    write_shapefile(tmp_path / "d", "县界", pd.DataFrame({"行政区划代码": [COUNTY], "名称": ["武陵区"]}), [sq])
    pts, _ = network()
    pts.loc[0, "Y"] = E0 - 3000
    write_shapefile(tmp_path / "d", "YSPOINT", pts, point_geoms(pts))
    r = validate(read_delivery(tmp_path / "d", county=COUNTY))
    assert [x.key for x in by_rule(r, "Q24")] == ["YS1"]


def test_d01_duplicates_of_loaded_features(tmp_path, conn):
    pts, lines = network()
    path = write_xlsx(tmp_path / "t.xlsx", {"YSPOINT": pts})
    d = read_delivery(path, county=COUNTY)
    g = d.batches[0].frame["geom"].iloc[1]
    with conn.cursor() as cur:
        cur.execute("INSERT INTO cim.pipe_point (network, exp_no, county_code, source_layer, geom) VALUES "
                    "('PS', 'OLD7', %s, '旧成果', ST_SetSRID(ST_MakePoint(%s, %s), 4490)) RETURNING id",
                    (COUNTY, g.x, g.y + 1e-7))
        old_id = cur.fetchone()[0]
        cur.execute("INSERT INTO cim.pipe_point (network, exp_no, county_code, source_layer, geom) VALUES "
                    "('PS', 'OLD8', %s, 'YSPOINT', ST_SetSRID(ST_MakePoint(%s, %s), 4490))",
                    (COUNTY, g.x + 1e-4 * 3, g.y))   # same source layer, and far away: ignored
    d01 = by_rule(validate(d, conn), "D01")
    assert [(x.key, x.value, x.severity) for x in d01] == [("YS2", old_id, Severity.warning)]
    assert np.isfinite(d01[0].x)


def test_q22_uses_the_dictionaries_in_the_database(tmp_path, conn):
    pts, lines = network()
    lines["材质"] = "PE"
    lines.loc[0, "材质"] = "XB"                    # a code the seed dictionary does not know
    path = write_xlsx(tmp_path / "t.xlsx", {"YSPOINT": pts, "YSLINE": lines})
    d = read_delivery(path, county=COUNTY)
    assert [x.value for x in by_rule(validate(d), "Q22")] == ["XB"]
    with conn.cursor() as cur:
        cur.execute("INSERT INTO cim.dict_material (code, parent_code, name_zh, extension) "
                    "VALUES ('XB', 'PE', '县里新增材质', true)")
    assert not by_rule(validate(d, conn), "Q22")


def test_g04_one_stray_coordinate_does_not_decide_the_crs(tmp_path):
    pts, lines = network(n_points=8)
    pts.loc[3, "X"] = 0.0                         # a typo: northing 0
    path = write_xlsx(tmp_path / "t.xlsx", {"YSPOINT": pts, "YSLINE": lines})
    d = read_delivery(path, county=COUNTY)
    b = next(x for x in d.batches if x.target == "pipe_point")
    assert b.source_crs == "EPSG:4546" and b.frame["geom"].isna().tolist() == [False] * 3 + [True] + [False] * 4
    r = validate(d)
    g04 = by_rule(r, "G04")
    assert [(x.key, x.severity) for x in g04] == [("YS4", Severity.error)]
    assert not [x for x in by_rule(r, "G02") if x.source_layer == "YSPOINT"]
    assert {x.row for x in by_rule(r, "G02")} == {3, 4}          # the two lines that end at YS4
