"""Q21 (平行净距不足): parallel runs closer in plan than GB 50028 表6.3.3-1 (domain.md §4.2),
on small generated deliveries: a gas main beside a water main, a telecom duct, a drain or
another gas main."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import E0, N0, write_xlsx  # noqa: E402

from ingest.model import Severity  # noqa: E402
from ingest.pipeline import read_delivery  # noqa: E402
from ingest.validate import validate  # noqa: E402
from ingest.validation.core import RULES_PATH  # noqa: E402

COUNTY = "430702"


def pipe(prefix: str, north, east, dn: int, *, material: str = "PE", burial: str = "直埋", **extra):
    """Point and line tables of one straight pipe through the given points (X = northing)."""
    north = [float(v) for v in north] if hasattr(north, "__len__") else [float(north)] * len(east)
    n = len(east)
    pts = pd.DataFrame({"物探点号": [f"{prefix}{k + 1}" for k in range(n)], "X": north, "Y": [float(e) for e in east],
                        "地面高程": [50.0] * n, "特征": ["盖堵"] + ["直线点"] * (n - 2) + ["盖堵"], "附属物": [""] * n})
    lines = pd.DataFrame({"起点点号": pts["物探点号"].iloc[:-1].to_list(), "终点点号": pts["物探点号"].iloc[1:].to_list(),
                          "起点埋深": 1.0, "终点埋深": 1.0, "起点高程": 49.0, "终点高程": 49.0, "管径": str(dn),
                          "材质": material, "埋设方式": burial, **extra})
    return pts, lines


def water(north=N0):
    """A DN200 water main running 60 m east."""
    return pipe("JS", north, [E0, E0 + 30, E0 + 60], 200, material="球墨铸铁")


def gas(north, pressure="中压B", dn=160, east=None, prefix="RQ"):
    """A gas main beside the water main, shifted 5 m east."""
    return pipe(prefix, north, east or [E0 + 5, E0 + 35, E0 + 65], dn, 压力级制=pressure)


def run(tmp_path, rules_path=None, **layers):
    sheets = {}
    for prefix, (pts, lines) in layers.items():
        sheets[f"{prefix}POINT"], sheets[f"{prefix}LINE"] = pts, lines
    path = write_xlsx(tmp_path / f"t{len(list(tmp_path.glob('*.xlsx')))}.xlsx", sheets)
    return validate(read_delivery(path, county=COUNTY), rules_path=rules_path)


def q21(report):
    return [f for f in report.findings if f.rule_id == "Q21"]


def test_gas_too_close_to_water(tmp_path):
    """Centres 0.6 m apart, DN160 and DN200: 0.6 − 0.08 − 0.10 = 0.42 m < 0.5 m (中压B)."""
    r = run(tmp_path, JS=water(), RQ=gas(N0 + 0.6))
    f = q21(r)
    assert {(x.key, x.row) for x in f} == {("RQ1-RQ2", 1), ("RQ2-RQ3", 2)}
    assert all(x.severity is Severity.warning and x.source_layer == "RQLINE" for x in f)
    assert all(x.value == pytest.approx(0.42, abs=1e-6) for x in f)
    first = [x for x in f if x.key == "RQ1-RQ2"]
    assert any("JS1-JS2" in x.message_zh and "小于 0.5 m" in x.message_zh and "中压B" in x.message_zh for x in first)
    assert any("JS1-JS2" in x.message_en and "minimum 0.5 m" in x.message_en and "medium pressure B" in x.message_en
               for x in first)
    assert all(x.x is not None and x.y is not None for x in f)
    # the 5 m where RQ1-RQ2 runs beside JS2-JS3 is a parallel run as well; a 1 m overlap is not
    assert [x.message_en.split(" m parallel")[0] for x in first] in (["runs 25", "runs 5"], ["runs 5", "runs 25"])
    assert not [x for x in r.findings if x.severity is Severity.error]


def test_gas_far_enough_from_water(tmp_path):
    """Centres 1.0 m apart: 0.82 m clear, more than 0.5 m."""
    assert q21(run(tmp_path, JS=water(), RQ=gas(N0 + 1.0))) == []


def test_crossing_pipes_are_not_parallel_runs(tmp_path):
    # a gas pipe crossing the water main at right angles
    assert q21(run(tmp_path, JS=water(), RQ=pipe("RQ", [N0 - 20, N0 + 20], [E0 + 15, E0 + 15], 160,
                                                 压力级制="中压B"))) == []
    # nearly parallel (1°) and within 0.5 m over 50 m, but the two lines cross in plan
    assert q21(run(tmp_path, JS=water(), RQ=gas([N0 - 0.5, N0 + 0.5], east=[E0 + 5, E0 + 55]))) == []
    # touching at a shared end point (a fitting joining two networks' records) is no run either
    assert q21(run(tmp_path, JS=water(), RQ=gas([N0, N0 + 0.3], east=[E0 + 60, E0 + 30]))) == []


def test_limit_depends_on_the_gas_pressure_class(tmp_path):
    """0.82 m clear from water: enough for 中压B (0.5 m), not for 次高压B (1.0 m) or 次高压A (1.5 m)."""
    assert q21(run(tmp_path, JS=water(), RQ=gas(N0 + 1.0, "中压B"))) == []
    sub_b = q21(run(tmp_path, JS=water(), RQ=gas(N0 + 1.0, "次高压B")))
    assert len(sub_b) == 3 and all(x.value == pytest.approx(0.82) and "小于 1 m" in x.message_zh for x in sub_b)
    sub_a = q21(run(tmp_path, JS=water(), RQ=gas(N0 + 1.0, "次高压A")))
    assert len(sub_a) == 3 and all("1.5 m" in x.message_zh and "次高压A" in x.message_zh for x in sub_a)
    # 高压 is not a column of the table: checked against the strictest one (次高压A)
    high = q21(run(tmp_path, JS=water(), RQ=gas(N0 + 1.0, "高压")))
    assert len(high) == 3 and all("minimum 1.5 m" in x.message_en for x in high)


def test_pressure_class_against_a_drain(tmp_path):
    """A DN400 drain 1.4 m from a DN160 gas main: 1.12 m clear, enough for 低压 (1.0 m), not 中压B (1.2 m)."""
    ys = pipe("YS", N0, [E0, E0 + 30, E0 + 60], 400, material="钢筋混凝土")
    assert q21(run(tmp_path, YS=ys, RQ=gas(N0 + 1.4, "低压"))) == []
    f = q21(run(tmp_path, YS=ys, RQ=gas(N0 + 1.4, "中压B")))
    assert f and all(x.value == pytest.approx(1.12) and "1.2 m" in x.message_zh for x in f)


def test_telecom_in_ducts_needs_more_room_than_buried_cable(tmp_path):
    """0.87 m clear from a Φ110 telecom run: enough beside a buried cable (0.5 m), not a duct bank (1.0 m)."""
    buried = pipe("TX", N0, [E0, E0 + 30, E0 + 60], 110, material="铜", burial="直埋")
    ducts = pipe("TX", N0, [E0, E0 + 30, E0 + 60], 110, material="PVC", burial="管块")
    assert q21(run(tmp_path, TX=buried, RQ=gas(N0 + 1.005))) == []
    f = q21(run(tmp_path, TX=ducts, RQ=gas(N0 + 1.005)))
    assert f and all(x.value == pytest.approx(0.87) and "TX" in x.message_zh and "1 m" in x.message_zh for x in f)


def both(a, b):
    """Two pipes in one point table and one line table."""
    return pd.concat([a[0], b[0]], ignore_index=True), pd.concat([a[1], b[1]], ignore_index=True)


def test_gas_pipes_side_by_side(tmp_path):
    """Two gas mains: DN160 and DN110 0.55 m apart leave 0.415 m (≥ 0.4 m for DN ≤ 300);
    DN160 and DN400 0.7 m apart leave 0.42 m (< 0.5 m for DN > 300)."""
    main = gas(N0, dn=160)
    assert q21(run(tmp_path, RQ=both(main, gas(N0 + 0.55, dn=110, prefix="RQ1")))) == []
    f = q21(run(tmp_path, RQ=both(main, gas(N0 + 0.7, dn=400, prefix="RQ1"))))
    assert f and all(x.value == pytest.approx(0.42) and "燃气管之间" in x.message_zh and "0.5 m" in x.message_zh
                     for x in f)
    assert {x.source_layer for x in f} == {"RQLINE"}


def test_other_pairs_and_thresholds_come_from_rules_yaml(tmp_path):
    """No limit for water beside a drain unless rules.yaml lists the pair; angle and run length
    are parameters too."""
    ys = pipe("YS", N0 + 1.2, [E0, E0 + 30, E0 + 60], 400, material="钢筋混凝土")
    assert q21(run(tmp_path, JS=water(), YS=ys)) == []
    rules = yaml.safe_load(RULES_PATH.read_text(encoding="utf-8"))
    rules["Q21"]["params"]["pairs"] = {"JS-PS": 1.0}
    custom = tmp_path / "pairs.yaml"
    custom.write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    f = q21(run(tmp_path, custom, JS=water(), YS=ys))
    assert f and all(x.value == pytest.approx(0.9) and "JS-PS" in x.message_zh for x in f)
    assert {x.source_layer for x in f} <= {"JSLINE", "YSLINE"}
    rules["Q21"]["params"]["min_run_m"] = 40.0      # no common stretch is that long
    longer = tmp_path / "longer.yaml"
    longer.write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    assert q21(run(tmp_path, longer, JS=water(), YS=ys)) == []


# --- against what is already loaded -----------------------------------------------------------

def _load(conn, tmp_path, county, **layers):
    """Read, validate and load a delivery of the given pipes for ``county``."""
    from loadkit import load

    from cim import auth

    sheets = {}
    for prefix, (pts, lines) in layers.items():
        sheets[f"{prefix}POINT"], sheets[f"{prefix}LINE"] = pts, lines
    path = write_xlsx(tmp_path / f"l{len(list(tmp_path.glob('*.xlsx')))}.xlsx", sheets)
    report = validate(read_delivery(path, county=county), conn=conn)
    return load(conn, report, principal=auth.Principal(name="test", role=auth.Role.admin))


def _county():
    import random
    return f"43{random.randint(1000, 9999)}"


def test_new_gas_main_beside_a_loaded_water_main(tmp_path, conn):
    """A gas-only delivery is checked against the water main loaded before it: the finding is on
    the new gas segment and names the loaded one by its point numbers and id."""
    county = _county()
    loaded = _load(conn, tmp_path, county, JS=water())
    assert loaded.state == "current"
    sheets = {"RQPOINT": gas(N0 + 0.6)[0], "RQLINE": gas(N0 + 0.6)[1]}
    path = write_xlsx(tmp_path / "gas.xlsx", sheets)
    f = q21(validate(read_delivery(path, county=county), conn=conn))
    assert {(x.key, x.source_layer) for x in f} == {("RQ1-RQ2", "RQLINE"), ("RQ2-RQ3", "RQLINE")}
    assert all(x.value == pytest.approx(0.42, abs=0.002) for x in f)     # UTM frame: within 2 mm
    assert any("JS1-JS2（已入库 #" in x.message_zh and "中压B" in x.message_zh for x in f)
    assert any("JS1-JS2 (loaded #" in x.message_en for x in f)
    # without a database, or a metre further away, nothing to report
    assert q21(validate(read_delivery(path, county=county))) == []
    far = write_xlsx(tmp_path / "far.xlsx", {"RQPOINT": gas(N0 + 1.6)[0], "RQLINE": gas(N0 + 1.6)[1]})
    assert q21(validate(read_delivery(far, county=county), conn=conn)) == []


def test_a_network_being_replaced_is_not_its_own_neighbour(tmp_path, conn):
    """A new water delivery replaces the loaded water network, so it is not checked against it;
    another county's pipes are not looked at either."""
    county = _county()
    _load(conn, tmp_path, county, RQ=gas(N0 + 0.6))
    again = write_xlsx(tmp_path / "js.xlsx", {"JSPOINT": water()[0], "JSLINE": water()[1]})
    # the gas main stays current beside the new water main: found from the water side
    f = q21(validate(read_delivery(again, county=county), conn=conn))
    assert {x.key for x in f} == {"JS1-JS2", "JS2-JS3"} and all("RQ" in x.message_zh for x in f)
    # the same delivery for another county sees nothing loaded
    assert q21(validate(read_delivery(again, county=_county()), conn=conn)) == []
    # a gas delivery replacing the gas main is not checked against the gas main it replaces
    gas_again = write_xlsx(tmp_path / "rq.xlsx", {"RQPOINT": gas(N0 + 5)[0], "RQLINE": gas(N0 + 5)[1]})
    assert q21(validate(read_delivery(gas_again, county=county), conn=conn)) == []


def test_crossing_a_loaded_pipe_too_close_vertically(tmp_path, conn):
    """Q20 against a loaded pipe: a new water main crossing a loaded drain 0.3 m above it (0.40 m
    needed between water and drainage)."""
    county = _county()
    drain = pipe("YS", N0, [E0, E0 + 30], 300, material="混凝土")
    drain[1]["起点高程"] = drain[1]["终点高程"] = 48.0          # drain invert: its top at 48.30
    _load(conn, tmp_path, county, YS=drain)
    js = pipe("JS", [N0 - 20, N0 + 20], [E0 + 15, E0 + 15], 200, material="PE")
    js[1]["起点高程"] = js[1]["终点高程"] = 48.8                 # water main top: its bottom at 48.60
    path = write_xlsx(tmp_path / "js.xlsx", {"JSPOINT": js[0], "JSLINE": js[1]})
    q20 = [x for x in validate(read_delivery(path, county=county), conn=conn).findings if x.rule_id == "Q20"]
    assert len(q20) == 1 and q20[0].source_layer == "JSLINE" and q20[0].key == "JS1-JS2"
    assert q20[0].value == pytest.approx(0.3, abs=0.005) and "YS1-YS2（已入库 #" in q20[0].message_zh


def test_only_networks_with_a_limit_between_them_are_measured():
    """Q21 measures the segments of the networks that have a limit with a network of the
    delivery: water alone has none (its limits are against gas), gas has one with gas."""
    from ingest.validation.clearance import _partnered

    assert _partnered({"JS"}, {"JS", "RL"}, {}) == set()
    assert _partnered({"JS", "RQ"}, {"JS"}, {}) == {"JS", "RQ"}
    assert _partnered({"RQ"}, set(), {}) == {"RQ"}
    assert _partnered({"PS", "JS", "DL"}, set(), {("PS", "PS"): 0.15, ("DL", "JS"): 0.5}) == {"PS", "JS", "DL"}
    assert _partnered({"PS", "TX"}, set(), {("JS", "TX"): 0.15}) == set()


def _pipes(*tables):
    """Several pipes of one network as one point table and one line table."""
    return pd.concat([t[0] for t in tables], ignore_index=True), pd.concat([t[1] for t in tables], ignore_index=True)


def test_strips_of_the_plane_find_what_one_tree_finds(tmp_path, monkeypatch):
    """Q20 and Q21 look for pairs a strip of the plane at a time (a tree over a whole network of
    500 000 segments holds 170 MB): cut into strips of three segments, with pipes that run
    through many strips, the findings are those of one tree over everything."""
    from ingest.validation import clearance

    east = [E0 + 20 * k for k in range(11)]                          # 200 m mains, east–west
    gas_mains = _pipes(*(gas(N0 + 20 * k, east=east, prefix=f"RQ{k}-") for k in range(4)))
    crossing = [pipe(f"JS{k}-", [N0 - 10 + 20 * m for m in range(5)], [E0 + 15 + 30 * k] * 5, 200)
                for k in range(6)]                                   # north–south, each crossing every main
    beside = pipe("JSP-", N0 + 0.6, [E0 + 5 + 20 * k for k in range(10)], 200)   # 0.6 m from the first main
    layers = {"RQ": gas_mains, "JS": _pipes(*crossing, beside)}

    def found(report):
        return sorted((f.rule_id, f.source_layer, f.row, f.message_zh) for f in report.findings
                      if f.rule_id in ("Q20", "Q21"))

    whole = found(run(tmp_path, **layers))
    monkeypatch.setattr(clearance, "_STRIP", 3)
    strips = found(run(tmp_path, **layers))
    assert strips == whole
    assert {r for r, *_ in whole} == {"Q20", "Q21"}
    assert sum(r == "Q20" for r, *_ in whole) >= 24                  # 6 × 4 crossings, each named once


def test_crossings_decided_from_turn_signs_are_those_geos_finds():
    """Q20's crossing test (turn signs with a rounding bound, GEOS for the pairs the bound leaves
    open) against GEOS's ``crosses`` on segments built to be hard: shared ends, T-junctions,
    collinear overlaps, ends a rounding error off the other line, projected coordinates."""
    from ingest.validation.clearance import _crosses, _lines

    rng = np.random.default_rng(11)
    n = 20_000
    p = rng.uniform(0, 50, (n, 2)) + [560_000.0, 3_205_000.0]
    q = p + rng.uniform(-30, 30, (n, 2))
    a = np.column_stack([p, q])
    b = np.column_stack([rng.uniform(0, 50, (n, 2)) + [560_000.0, 3_205_000.0],
                         rng.uniform(0, 50, (n, 2)) + [560_000.0, 3_205_000.0]])
    k = n // 5
    b[:k, :2] = a[:k, 2:]                                      # sharing an end
    t = rng.uniform(0.1, 0.9, (k, 1))
    mid = a[k:2 * k, :2] + t * (a[k:2 * k, 2:] - a[k:2 * k, :2])
    b[k:2 * k, :2] = mid                                       # a T: one end on the other line
    b[2 * k:3 * k] = a[2 * k:3 * k] + np.tile(0.25 * (a[2 * k:3 * k, 2:] - a[2 * k:3 * k, :2]), 2)   # collinear
    b[3 * k:4 * k, :2] = mid + rng.choice([-1e-9, 0.0, 1e-9], (k, 2))   # a rounding error off the line
    la, lb = _lines(a), _lines(b)
    assert (_crosses(a, b, la, lb) == shapely.crosses(la, lb)).all()
    assert shapely.crosses(la, lb).sum() > 1000
