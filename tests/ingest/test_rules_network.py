"""Network and field rules (domain.md §2.13): each rule fires on a generated defect and stays
quiet on the clean network."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import E0, N0, line_geoms, network, point_geoms, write_shapefile, write_xlsx  # noqa: E402

from ingest.model import Severity  # noqa: E402
from ingest.pipeline import read_delivery  # noqa: E402
from ingest.validate import validate  # noqa: E402

COUNTY = "430702"


def run(tmp_path, pts, lines, prefix="YS", name="t.xlsx"):
    path = write_xlsx(tmp_path / name, {f"{prefix}POINT": pts, f"{prefix}LINE": lines})
    return validate(read_delivery(path, county=COUNTY))


def by_rule(report, rule):
    return [f for f in report.findings if f.rule_id == rule]


def test_clean_network_has_no_findings(tmp_path):
    pts, lines = network()
    report = run(tmp_path, pts, lines)
    assert report.findings == [] and not report.has_errors


def test_q01_duplicate_point_numbers(tmp_path):
    pts, lines = network()
    pts.loc[3, "物探点号"] = "YS3"
    f = by_rule(run(tmp_path, pts, lines), "Q01")
    assert {(x.key, x.row) for x in f} == {("YS3", 3), ("YS3", 4)}
    assert all(x.severity is Severity.error and "YS3" in x.message_zh and x.x is not None for x in f)


def test_q02_q03_point_table_consistency(tmp_path):
    pts, lines = network()
    pts["图上点号"] = pts["物探点号"]
    pts.loc[1, "图上点号"] = "YS200"
    pts.loc[2, "特征"] = "三通"               # 附属物 检查井 is also filled
    r = run(tmp_path, pts, lines)
    assert [(x.key, x.value) for x in by_rule(r, "Q02")] == [("YS2", "YS200")]
    q03 = by_rule(r, "Q03")
    assert [x.key for x in q03] == ["YS3"] and q03[0].severity is Severity.error


def test_q04_duplicate_coordinates(tmp_path):
    pts, lines = network()
    pts.loc[4, ["X", "Y"]] = pts.loc[3, ["X", "Y"]].to_numpy()
    assert {x.key for x in by_rule(run(tmp_path, pts, lines), "Q04")} == {"YS4", "YS5"}


def test_q05_missing_point_and_q06_orphan(tmp_path):
    pts, lines = network()
    lines.loc[4, "终点点号"] = "YS99"
    r = run(tmp_path, pts, lines)
    q05 = by_rule(r, "Q05")
    assert [(x.key, x.field, x.row) for x in q05] == [("YS99", "终点点号", 5)]
    assert q05[0].severity is Severity.error
    assert [x.key for x in by_rule(r, "Q06")] == ["YS6"]     # the outfall is no longer used
    assert by_rule(r, "G02")                                  # the line could not be built


def test_q05_without_point_table_is_a_warning(tmp_path):
    _, lines = network()
    pts, _ = network()
    shp = write_shapefile(tmp_path, "YSLINE", lines, line_geoms(pts, lines))
    r = validate(read_delivery(shp))
    q05 = by_rule(r, "Q05")
    assert len(q05) == 1 and q05[0].severity is Severity.warning


def test_q07_q08_start_equals_end_and_duplicates(tmp_path):
    pts, lines = network()
    extra = lines.iloc[[1]].copy()
    extra[["起点点号", "终点点号"]] = extra[["终点点号", "起点点号"]].to_numpy()   # reversed duplicate
    same = lines.iloc[[0]].copy()
    same["终点点号"] = same["起点点号"]
    lines = pd.concat([lines, extra, same], ignore_index=True)
    r = run(tmp_path, pts, lines)
    assert [x.row for x in by_rule(r, "Q08")] == [2, 6]
    q07 = by_rule(r, "Q07")
    assert [(x.row, x.key) for x in q07] == [(7, "YS1")] and q07[0].severity is Severity.error


def test_q09_line_end_off_its_point(tmp_path):
    pts, lines = network()
    geoms = line_geoms(pts, lines)
    coords = shapely.get_coordinates(geoms)
    coords[1] += [0.05, 0.0]            # end of segment 1: 5 cm away from YS2
    coords[3] += [0.005, 0.0]           # end of segment 2: 5 mm (within 0.01 m)
    moved = shapely.set_coordinates(geoms.copy(), coords)
    d = tmp_path / "d"
    write_shapefile(d, "YSPOINT", pts, point_geoms(pts))
    write_shapefile(d, "YSLINE", lines, moved)
    r = validate(read_delivery(d))
    q09 = by_rule(r, "Q09")
    assert [(x.row, x.key) for x in q09] == [(1, "YS2")]
    assert q09[0].value == pytest.approx(0.05, abs=1e-3)       # measured in metres in EPSG:4546


def test_q10_elevation_closure_and_q11(tmp_path):
    pts, lines = network()
    lines.loc[2, "起点埋深"] = 1.8            # ground − depth ≠ invert by 0.3 m
    lines.loc[1, "终点高程"] = lines.loc[1, "终点高程"] + 0.2   # YS3 gets two inverts from equal pipes
    r = run(tmp_path, pts, lines)
    q10 = by_rule(r, "Q10")
    assert {(x.row, x.key) for x in q10} == {(3, "YS3"), (2, "YS3")}
    assert [x.key for x in by_rule(r, "Q11")] == ["YS3"]


def test_q12_segment_length_bounds(tmp_path):
    pts, lines = network(spacing=80.0)
    r = run(tmp_path, pts, lines)
    q12 = by_rule(r, "Q12")
    assert len(q12) == 5 and all(x.value == pytest.approx(80.0, abs=0.01) for x in q12)


def test_q13_q19_gas_slope_and_depths(tmp_path):
    pts, lines = network(prefix="RQ")
    lines["材质"] = "钢"
    lines["压力级制"] = "中压A"
    lines.loc[0, "终点高程"] = lines.loc[0, "起点高程"] + 25.0      # 40° incline over 30 m
    lines.loc[1, "起点埋深"] = 0.4                                    # cover below 0.6 m
    lines.loc[2, "终点埋深"] = -0.5                                   # negative, buried
    lines.loc[3, "终点埋深"] = 12.0                                   # deeper than 10 m
    r = run(tmp_path, pts, lines, prefix="RQ")
    assert [x.row for x in by_rule(r, "Q13")] == [1]
    assert sorted((x.row, x.field) for x in by_rule(r, "Q19")) == [(2, "起点埋深"), (3, "终点埋深"), (4, "终点埋深")]


def test_q14_connection_counts(tmp_path):
    pts, lines = network()
    pts.loc[2, ["特征", "附属物"]] = ["三通", ""]          # YS3 has only two segments
    pts.loc[5, "特征"] = "出水口"
    r = run(tmp_path, pts, lines)
    q14 = by_rule(r, "Q14")
    assert [(x.key, x.value) for x in q14] == [("YS3", "三通")] and "应为 3" in q14[0].message_zh


def test_q22_q23_f02_fields_and_dictionaries(tmp_path):
    pts, lines = network()
    lines.loc[0, "材质"] = "金子"             # not a material
    lines.loc[1, "材质"] = ""                 # mandatory value missing
    lines.loc[2, "埋设方式"] = "飞行"         # not a burial type
    pts["地面高程"] = pts["地面高程"].astype(object)
    pts.loc[1, "地面高程"] = "abc"            # unparsable number
    pts.loc[3, "附属物"] = "神秘井"           # unknown appurtenance name
    r = run(tmp_path, pts, lines)
    q22 = by_rule(r, "Q22")
    assert sorted((x.row, x.field, x.value) for x in q22) == [(1, "材质", "金子"), (3, "埋设方式", "飞行")]
    assert all(x.severity is Severity.error for x in q22)
    q23 = by_rule(r, "Q23")
    assert ("材质", 2) in {(x.field, x.row) for x in q23} and ("地面高程", 2) in {(x.field, x.row) for x in q23}
    assert [(x.field, x.value) for x in by_rule(r, "F02")] == [("地面高程", "abc")]
    assert [x.value for x in by_rule(r, "Q22P")] == ["神秘井"]
    assert r.has_errors


def test_q23_missing_mandatory_field(tmp_path):
    pts, lines = network()
    r = run(tmp_path, pts, lines.drop(columns=["材质"]))
    q23 = [x for x in by_rule(r, "Q23") if x.row is None]
    assert len(q23) == 1 and "材质" in q23[0].message_zh and q23[0].source_layer == "YSLINE"


def test_q27_diameter_material(tmp_path):
    pts, lines = network(prefix="JS")
    lines["材质"] = "PE"
    lines.loc[0, "管径"] = "800"
    r = run(tmp_path, pts, lines, prefix="JS")
    assert [(x.row, x.value) for x in by_rule(r, "Q27")] == [(1, 800.0)]


def test_f01_unknown_network(tmp_path):
    pts, lines = network()
    path = write_xlsx(tmp_path / "t.xlsx", {"管点成果": pts})
    r = validate(read_delivery(path, county=COUNTY))
    f01 = by_rule(r, "F01")
    assert len(f01) == len(pts) and f01[0].severity is Severity.error


def test_rules_file_controls_severity_and_thresholds(tmp_path):
    import yaml

    from ingest.validation.core import RULES_PATH
    rules = yaml.safe_load(RULES_PATH.read_text(encoding="utf-8"))
    rules["Q12"]["params"]["max_m"] = 20.0
    rules["Q12"]["severity"] = "error"
    rules["Q17"]["enabled"] = False
    custom = tmp_path / "rules.yaml"
    custom.write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    pts, lines = network()
    path = write_xlsx(tmp_path / "t.xlsx", {"YSPOINT": pts, "YSLINE": lines})
    r = validate(read_delivery(path, county=COUNTY), rules_path=custom)
    assert len(by_rule(r, "Q12")) == 5 and r.has_errors
    assert np.all([x.severity is Severity.error for x in by_rule(r, "Q12")])


def test_f03_database_constraints(tmp_path):
    pts, lines = network()
    pts["点符号代码"] = ["520122010", "52012201", None, None, None, None]    # 9 characters do not fit char(8)
    lines["流向"] = ["+", "2", "+", "+", "+"]
    r = run(tmp_path, pts, lines)
    f03 = by_rule(r, "F03")
    assert sorted((x.source_layer, x.field, str(x.value)) for x in f03) == [
        ("YSLINE", "流向", "2"), ("YSPOINT", "点符号代码", "520122010")]
    assert all(x.severity is Severity.error for x in f03)


def test_q20_vertical_clearance_at_crossings(tmp_path):
    ys_pts, ys_lines = network(prefix="YS", n_points=3)               # invert 48.5 → 48.2, DN300, east
    js = pd.DataFrame({"物探点号": ["JS1", "JS2"], "X": [N0 - 20, N0 + 20], "Y": [E0 + 15, E0 + 15],
                       "地面高程": [50.0, 50.0], "特征": ["", ""], "附属物": ["阀门", "阀门"]})
    js_lines = pd.DataFrame({"起点点号": ["JS1"], "终点点号": ["JS2"], "起点埋深": [1.0], "终点埋深": [1.0],
                             "起点高程": [49.0], "终点高程": [49.0], "管径": ["200"], "材质": ["PE"]})
    d = tmp_path / "a"
    d.mkdir()
    path = write_xlsx(d / "t.xlsx", {"YSPOINT": ys_pts, "YSLINE": ys_lines, "JSPOINT": js, "JSLINE": js_lines})
    r = validate(read_delivery(path, county=COUNTY))
    # YS centre at the crossing ≈ 48.425 + 0.15; JS centre = 49.0 − 0.1; clear ≈ 0.325 − 0.25 = 0.075 m
    q20 = by_rule(r, "Q20")
    assert len(q20) == 1 and q20[0].value == pytest.approx(0.075, abs=0.005)
    js_lines["起点高程"] = js_lines["终点高程"] = 49.5
    path = write_xlsx(d / "u.xlsx", {"YSPOINT": ys_pts, "YSLINE": ys_lines, "JSPOINT": js, "JSLINE": js_lines})
    assert not by_rule(validate(read_delivery(path, county=COUNTY)), "Q20")


def test_q20_pair_table(tmp_path):
    """Water over a drain needs 0.40 m (GB 50289): a 0.3 m clearance is flagged, JS–JS is not."""
    ys_pts, ys_lines = network(prefix="YS", n_points=3)
    js = pd.DataFrame({"物探点号": ["JS1", "JS2"], "X": [N0 - 20, N0 + 20], "Y": [E0 + 15, E0 + 15],
                       "地面高程": [50.0, 50.0], "特征": ["", ""], "附属物": ["阀门", "阀门"]})
    js_lines = pd.DataFrame({"起点点号": ["JS1"], "终点点号": ["JS2"], "起点埋深": [1.0], "终点埋深": [1.0],
                             "起点高程": [49.225], "终点高程": [49.225], "管径": ["200"], "材质": ["PE"]})
    path = write_xlsx(tmp_path / "t.xlsx", {"YSPOINT": ys_pts, "YSLINE": ys_lines, "JSPOINT": js, "JSLINE": js_lines})
    q20 = by_rule(validate(read_delivery(path, county=COUNTY)), "Q20")
    assert len(q20) == 1 and q20[0].value == pytest.approx(0.3, abs=0.005) and "0.4" in q20[0].message_zh


def _ends_tables():
    P = pd.DataFrame({"network": ["JS", "JS", "PS"], "subtype": [None, None, "YS"], "exp_no": ["A", "B", "C"],
                      "feature": ["三通", None, "检查井"], "appurtenance": [None, None, None],
                      "node_type": [None, None, "井"], "ground_z": [10.0, 11.0, 12.0]})
    S = pd.DataFrame({"network": ["JS", "PS"], "subtype": [None, "YS"], "start_exp_no": ["A", "C"],
                      "end_exp_no": ["B", "X"], "start_depth": [1.0, 2.0], "end_depth": [1.5, np.nan],
                      "start_z": [9.0, 10.0], "end_z": [9.5, 9.0], "z_ref": ["center", "invert"],
                      "diameter_mm": [100.0, 300.0], "bi": np.array([0, 1], dtype=np.int32),
                      "row": np.array([4, 7], dtype=np.int32)})
    return P, S


@pytest.mark.parametrize("numbers", ["text", "mixed"])
def test_segment_ends_are_built_only_for_the_ends_a_rule_selects(numbers):
    """The ends of the network rules (start ends, then end ends) with the columns of their
    segment and of the point each lies on, as categoricals (point numbers all text) or as
    delivered values (point numbers that are not all text)."""
    from ingest.validation.network import Ends, _categorical

    P, S = _ends_tables()
    if numbers == "mixed":
        S["start_exp_no"] = pd.Series([17, "C"], dtype=object)
    _categorical(P, S)                             # as gather() leaves the tables
    ends = Ends(P, S, np.array([0, 2, 1, -1], dtype=np.int32))
    cols = ["end", "exp_no", "network", "subtype", "depth", "z", "z_ref", "diameter_mm", "ground_z", "feature",
            "node_type", "p_subtype"]
    table = ends.frame(np.ones(4, dtype=bool), cols)

    def values(c):
        return [None if pd.isna(v) else v for v in table[c].astype(object)]

    assert table.index.tolist() == [0, 1, 2, 3] and values("bi") == [0, 1, 0, 1] and values("row") == [4, 7, 4, 7]
    assert values("end") == ["start", "start", "end", "end"]
    assert values("exp_no") == [17 if numbers == "mixed" else "A", "C", "B", "X"]
    assert values("network") == ["JS", "PS", "JS", "PS"] and values("subtype") == [None, "YS", None, "YS"]
    assert values("depth") == [1.0, 2.0, 1.5, None] and values("z") == [9.0, 10.0, 9.5, 9.0]
    assert values("z_ref") == ["center", "invert", "center", "invert"]
    assert values("diameter_mm") == [100.0, 300.0, 100.0, 300.0]
    assert values("ground_z") == [10.0, 12.0, 11.0, None] and values("feature") == ["三通", "检查井", None, None]
    assert values("node_type") == [None, "井", None, None] and values("p_subtype") == [None, "YS", None, None]
    some = ends.frame(np.array([False, True, False, True]), ["exp_no", "ground_z"])
    assert some.index.tolist() == [1, 3] and some["exp_no"].astype(object).tolist() == ["C", "X"]
    assert some["row"].tolist() == [7, 7] and some["ground_z"].iloc[0] == 12.0 and np.isnan(some["ground_z"].iloc[1])
    assert ends.found.tolist() == [True, True, True, False] and len(ends) == 4


def test_repeated_keys_and_the_sorted_lookup_agree_with_pandas():
    """The network rules find repeated (network, point number) pairs, coordinates and segments
    by sorting integer keys, and segment ends by binary search: the same rows pandas' hash tables
    give (NaN coordinates equal nothing; values that are not numbers are left to pandas, where
    missing values equal one another)."""
    from ingest.validation.network import _repeated, _Sorted

    rng = np.random.default_rng(7)
    a, b = rng.integers(0, 50, 2000), rng.integers(-1, 3, 2000)
    x = rng.integers(0, 30, 2000).astype(float)
    x[::17] = np.nan
    pairs = pd.DataFrame({"a": a, "b": b})
    assert (_repeated([a, b]) == pairs.duplicated(keep=False).to_numpy()).all()
    assert (_repeated([a, b], first=True) == ~pairs.duplicated().to_numpy()).all()
    coords = pd.DataFrame({"a": a, "x": x}).duplicated(keep=False).to_numpy()
    assert (_repeated([a, x]) == (coords & ~np.isnan(x))).all()
    values = pd.MultiIndex.from_arrays([np.array(["JS", "JS", None, None, "PS"], dtype=object),
                                        np.array([1, 1, "A", "A", 1], dtype=object)])
    assert _repeated([values]).tolist() == [True, True, True, True, False]
    assert _repeated([values], first=True).tolist() == [True, False, True, False, True]
    assert _repeated([np.zeros(0, dtype=np.int64)]).tolist() == []
    keys = rng.permutation(np.unique(a * 10 + b))
    query = np.r_[keys[::3], [-5, 10**6], keys[1::4]]
    assert (_Sorted(keys).get_indexer(query) == pd.Index(keys).get_indexer(query)).all()
    assert _Sorted(np.zeros(0, dtype=np.int64)).get_indexer(np.array([1, 2])).tolist() == [-1, -1]
