"""Delivery profiles: shipped YAML validated, CJJ 61 layer-name detection for every network,
the drainage census tables, a user profile directory (CIM_INGEST_PROFILES) with a foreign
stormwater inventory in feet and inches, and targets.yaml against the live schema."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import network, point_geoms, write_shapefile, write_xlsx  # noqa: E402

from cim.errors import ConfigError, InvalidInput  # noqa: E402
from cim.schema import TABLES  # noqa: E402
from ingest.mapping.profile import PROFILE_DIR, detect, load_profiles, map_fields, match_columns  # noqa: E402
from ingest.pipeline import read_delivery  # noqa: E402

POINT_FIELDS = ["物探点号", "X", "Y", "地面高程", "特征", "附属物"]
LINE_FIELDS = ["起点点号", "终点点号", "起点埋深", "终点埋深", "管径", "材质"]


def test_shipped_profiles_load():
    profiles = load_profiles()
    assert {"cjj61-pipeline", "drainage-census", "gas", "buildings", "green-space", "streetlight", "admin-area",
            "us-stormwater"} <= set(profiles)
    targets = {spec.target for p in profiles.values() for spec in p.layers}
    assert targets == set(TABLES)
    for p in profiles.values():                       # every mapped column exists in its target table
        for spec in p.layers:
            cols = set(TABLES[spec.target].kinds())
            assert set(spec.fields) <= cols, (p.id, spec.id, set(spec.fields) - cols)
            assert set(spec.defaults) <= cols


@pytest.mark.parametrize(("layer", "kind", "network", "subtype"), [
    ("YSPOINT", "point", "PS", "YS"), ("WSLINE", "line", "PS", "WS"), ("RQLINE", "line", "RQ", None),
    ("JSPOINT", "point", "JS", None), ("GDLINE", "line", "DL", "GD"), ("LDLINE", "line", "DL", "LD"),
    ("XXPOINT", "point", "TX", "XX"), ("HSLINE", "line", "PS", "HS"), ("TRPOINT", "point", "RQ", "TR"),
    ("RLLINE", "line", "RL", None), ("GYPOINT", "point", "GY", None), ("QTLINE", "line", "QT", None),
    ("DLPOINT", "point", "DL", None), ("TXLINE", "line", "TX", None), ("PSPOINT", "point", "PS", None),
    ("F26_YSPoint", "point", "PS", "YS"), ("雨水管点", "point", "PS", "YS"), ("给水管线", "line", "JS", None)])
def test_cjj61_layer_names(tmp_path, layer, kind, network, subtype):
    profiles = load_profiles()
    fields = POINT_FIELDS if kind == "point" else LINE_FIELDS
    m = detect(layer, fields, kind, profiles)
    assert m is not None and m.profile.id == "cjj61-pipeline"
    assert m.spec.target == ("pipe_point" if kind == "point" else "pipe_segment")
    pts, lines = network_frames()
    frame = pts if kind == "point" else lines
    path = write_xlsx(tmp_path / f"{layer}.xlsx", {layer: frame})
    d = read_delivery(path, county="430702")
    b = d.batches[0]
    assert (b.frame["network"].iloc[0], b.subtype) == (network, subtype)


def network_frames():
    return network(n_points=3)


@pytest.mark.parametrize(("alias", "column"), [("WTDH", "exp_no"), ("EXP_NO", "exp_no"), ("Exp_No", "exp_no"),
                                               ("DMGC", "ground_z"), ("High", "ground_z"), ("TZD", "feature"),
                                               ("Feature", "feature"), ("FSW", "appurtenance"),
                                               ("Subsid", "appurtenance"), ("JDS", "well_depth")])
def test_point_aliases(alias, column):
    spec = load_profiles()["cjj61-pipeline"].layer("point")
    assert match_columns(spec, [alias])[column] == alias


@pytest.mark.parametrize(("alias", "column"), [("QDDH", "start_exp_no"), ("QD_ID", "start_exp_no"),
                                               ("ZDDH", "end_exp_no"), ("ZD_ID", "end_exp_no"),
                                               ("QDMS", "start_depth"), ("ZDMS", "end_depth"), ("QDGC", "start_z"),
                                               ("ZDGC", "end_z"), ("GJ", "diameter_mm"), ("CZ", "material"),
                                               ("MSFS", "burial_type"), ("YL", "pressure_class")])
def test_line_aliases(alias, column):
    spec = load_profiles()["cjj61-pipeline"].layer("line")
    assert match_columns(spec, [alias])[column] == alias


def test_field_mapping_names_the_rule_that_matched():
    """Each target column with its delivered field and the profile rule that found it: a listed
    alias, the column's own name, or a listed name cut at a DBF field name's 10 bytes."""
    spec = load_profiles()["cjj61-pipeline"].layer("point")
    found = {f.column: (f.source, f.rule, f.confidence) for f in map_fields(spec, ["物探点", "DMGC", "Invert_Z", "备注"])}
    assert found == {"exp_no": ("物探点", "dbf_cut", 1.0), "ground_z": ("DMGC", "alias", 1.0),
                     "invert_z": ("Invert_Z", "column", 1.0)}


def test_each_batch_carries_its_layer_mapping(tmp_path):
    """The mapping stage's decision per layer travels with the batch and reads as JSON."""
    pts, lines = network(n_points=3)
    path = write_xlsx(tmp_path / "ys.xlsx", {"YSPOINT": pts, "YSLINE": lines})
    detected = {b.source_layer: b for b in read_delivery(path, county="430702").batches}
    m = detected["YSPOINT"].mapping
    assert (m.source_layer, m.profile_id, m.spec_id, m.target, m.decided_by) == (
        "YSPOINT", "cjj61-pipeline", "point", "pipe_point", "detected")
    assert m.score >= 10 and m.columns == detected["YSPOINT"].field_map and m.columns["exp_no"] == "物探点号"
    assert {f.rule for f in m.fields} == {"alias"}
    assert detected["YSLINE"].mapping.columns["start_exp_no"] == "起点点号"
    as_json = json.loads(json.dumps(m.to_dict(), ensure_ascii=False))
    assert as_json["fields"][0] == {"column": "exp_no", "source": "物探点号", "rule": "alias", "confidence": 1.0}
    given = read_delivery(path, county="430702", profile="cjj61-pipeline").batches[0].mapping
    assert given.decided_by == "given" and given.columns == m.columns


def test_pinyin_delivery_with_code_translations(tmp_path):
    pts, lines = network(prefix="RQ", n_points=4)
    pts = pts.rename(columns={"物探点号": "WTDH", "地面高程": "DMGC", "特征": "TZD", "附属物": "FSW"})
    lines = lines.rename(columns={"起点点号": "QDDH", "终点点号": "ZDDH", "起点埋深": "QDMS", "终点埋深": "ZDMS",
                                  "管径": "GJ", "材质": "CZ", "埋设方式": "MSFS"})
    lines["CZ"] = ["钢", "聚乙烯塑料", "灰口铸铁"]
    lines["YL"] = ["中压A", "低压", "次高压B"]
    lines["GJ"] = ["DN200", "Φ110", "1200×800"]
    d = read_delivery(write_xlsx(tmp_path / "rq.xlsx", {"RQPOINT": pts, "RQLINE": lines}), county="430702")
    seg = next(b for b in d.batches if b.target == "pipe_segment").frame
    assert list(seg["material"]) == ["G", "PE", "ZT-HK"]
    assert list(seg["pressure_class"]) == ["ZA", "DY", "CGB"]
    assert seg["diameter_mm"].tolist()[:2] == [200.0, 110.0] and np.isnan(seg["diameter_mm"].iloc[2])
    assert (seg["width_mm"].iloc[2], seg["height_mm"].iloc[2]) == (1200.0, 800.0)
    assert (seg["z_ref"] == "top").all()


def test_drainage_census_tables(tmp_path):
    wells = pd.DataFrame({"检查井编号": ["W1", "W2", "W3"], "类别": ["雨水", "污水", "合流"], "X": [3214000.0] * 3,
                          "Y": [567000.0, 567030.0, 567060.0], "地面高程": [50.0, 49.9, 49.8],
                          "井底高程": [48.0, 47.9, 47.8], "防坠网": ["有", "无", "是"]})
    pipes = pd.DataFrame({"起点井编号": ["W1", "W2"], "终点井编号": ["W2", "W3"], "类别": ["雨水", "污水"],
                          "起点管底高程": [48.0, 47.9], "终点管底高程": [47.9, 47.8], "管径": [400, 500],
                          "材质": ["2", "5"], "流向": ["+", "-"]})
    outfalls = pd.DataFrame({"排放口编号": ["O1"], "类别": ["雨水"], "排入水体": ["沅江"], "X": [3214000.0],
                             "Y": [567090.0]})
    path = write_xlsx(tmp_path / "普查.xlsx", {"检查井": wells, "排水管": pipes, "排放口": outfalls})
    d = read_delivery(path, county="430702")
    by = {b.source_layer: b for b in d.batches}
    w = by["检查井"].frame
    assert list(w["subtype"]) == ["YS", "WS", "HS"] and set(w["network"]) == {"PS"}
    assert list(w["node_type"]) == ["manhole"] * 3 and list(w["anti_fall_net"]) == [True, False, True]
    p = by["排水管"].frame
    assert list(p["material"]) == ["T-GJ", "PE-HD"] and list(p["flow_dir"]) == [1, -1]
    assert (p["z_ref"] == "invert").all() and by["排水管"].geometry_built
    assert by["排放口"].frame["node_type"].iloc[0] == "outfall"
    assert by["排放口"].frame["receiving_water"].iloc[0] == "沅江"


def test_other_profiles_detected(tmp_path):
    sq = shapely.box(567000, 3214000, 567010, 3214012)
    bld = pd.DataFrame({"建筑编号": ["B1"], "地上层数": [3], "建筑高度": [9.5], "结构类型": ["砖混"],
                        "建成年份": ["1995年"], "用途": ["住宅"]})
    write_shapefile(tmp_path / "d", "房屋", bld, [sq])
    green = pd.DataFrame({"绿地编号": ["G-1"], "名称": ["滨江公园"], "绿地类别": ["社区公园"]})
    write_shapefile(tmp_path / "d", "绿地", green, [sq])
    light = pd.DataFrame({"灯杆编号": ["L1"], "光源类型": ["LED"], "状态": ["完好"], "杆高": [10]})
    write_shapefile(tmp_path / "d", "路灯", light, [shapely.Point(567000, 3214000)])
    adm = pd.DataFrame({"行政区划代码": ["430702"], "名称": ["武陵区"]})
    write_shapefile(tmp_path / "d", "县界", adm, [sq])
    d = read_delivery(tmp_path / "d", county="430702")
    by = {b.target: b.frame for b in d.batches}
    b = by["building"]
    assert (b["structure_type"].iloc[0], b["build_year"].iloc[0], b["build_era"].iloc[0], b["use_code"].iloc[0]) == (
        "QT", 1995, "3", "ZZ")
    # read as delivered; stored as the MultiPolygon column wants (ingest.load.rows, chunk by chunk)
    from ingest.load.rows import geometries
    assert b["geom"].iloc[0].geom_type == "Polygon"
    assert geometries(next(x for x in d.batches if x.target == "building"), "building")[0].geom_type == "MultiPolygon"
    g = by["green_space"]
    assert (g["subclass_code"].iloc[0], g["class_code"].iloc[0]) == ("G12", "G1")
    s = by["streetlight"]
    assert (s["lamp_type"].iloc[0], s["status"].iloc[0], s["pole_height_m"].iloc[0]) == ("LED", "normal", 10.0)
    assert by["admin_area"]["level"].iloc[0] == "county"


def test_user_profile_directory_with_foreign_stormwater(tmp_path, monkeypatch):
    user_dir = tmp_path / "profiles"
    user_dir.mkdir()
    data = yaml.safe_load((PROFILE_DIR / "us_stormwater.yaml").read_text(encoding="utf-8"))
    data["id"] = "my-city-storm"
    (user_dir / "my_city.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("CIM_INGEST_PROFILES", str(user_dir))
    assert "my-city-storm" in load_profiles()
    # NC State Plane (US feet, EPSG:2264): structures and pipes with up/downstream ids
    e0, n0 = 2_030_000.0, 740_000.0
    st = pd.DataFrame({"FacilityID": ["MH-1", "MH-2", "OF-1"], "StructType": ["MH", "CB", "OF"],
                       "RimElev": [300.0, 298.0, 295.0], "InvertElev": [294.0, 292.5, 290.0]})
    pts = shapely.points([e0, e0 + 100, e0 + 200], [n0, n0, n0])
    write_shapefile(tmp_path / "d", "SW_Structures", st, pts, epsg=2264)
    pipes = pd.DataFrame({"UpstreamID": ["MH-1", "MH-2"], "DownstreamID": ["MH-2", "OF-1"],
                          "Diameter": [18, 24], "Material": ["RCP", "HDPE"], "Length": [100.0, 100.0],
                          "UpstreamInvert": [294.0, 292.5], "DownstreamInvert": [292.6, 290.0]})
    write_xlsx(tmp_path / "d" / "SW_Pipes.xlsx", {"SW_Pipes": pipes})
    d = read_delivery(tmp_path / "d", profile="my-city-storm")
    by = {b.target: b for b in d.batches}
    seg = by["pipe_segment"].frame
    assert seg["diameter_mm"].tolist() == pytest.approx([457.2, 609.6])          # inches → mm
    assert seg["length_m"].tolist() == pytest.approx([30.48, 30.48])             # feet → m
    assert seg["start_z"].iloc[0] == pytest.approx(294.0 * 0.3048)
    assert list(seg["material"]) == ["T-GJ", "PE-HD"] and (seg["flow_dir"] == 1).all()
    assert by["pipe_segment"].geometry_built and by["pipe_segment"].source_unit_m == pytest.approx(0.3048, rel=1e-5)  # US survey foot
    pt = by["pipe_point"].frame
    assert list(pt["appurtenance"]) == ["检查井", "雨水箅", "出水口"]
    assert list(pt["node_type"]) == ["manhole", "inlet", "outfall"]
    assert pt["geom"].iloc[0].x == pytest.approx(-79.0, abs=3)            # North Carolina
    assert by["pipe_point"].source_crs == "EPSG:2264"


def test_invalid_profile_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "bad"
    bad.mkdir()
    src = yaml.safe_load((PROFILE_DIR / "streetlight.yaml").read_text(encoding="utf-8"))
    src["layers"][0]["colour"] = "red"                    # unknown key: extra="forbid"
    (bad / "x.yaml").write_text(yaml.safe_dump(src, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("CIM_INGEST_PROFILES", str(bad))
    with pytest.raises(ConfigError) as exc:
        load_profiles()
    assert "x.yaml" in exc.value.en
    monkeypatch.setenv("CIM_INGEST_PROFILES", str(tmp_path / "missing"))
    with pytest.raises(ConfigError):
        load_profiles()


def test_unknown_profile_name(tmp_path):
    pts, _ = network(n_points=3)
    shp = write_shapefile(tmp_path, "YSPOINT", pts, point_geoms(pts))
    with pytest.raises(InvalidInput):
        read_delivery(shp, profile="no-such-profile")


def test_profiles_dir_is_data_only():
    assert all(p.suffix in (".yaml", ".yml") for p in PROFILE_DIR.iterdir() if p.is_file())
    assert shutil.which("true")      # sanity: environment usable
