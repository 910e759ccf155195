"""Gas rules G01–G06 on planted geometry: a positive case, a negative case and the boundary at
exactly the required value (compliant) for each; crossings are never parallel runs."""

from __future__ import annotations

import pytest
from conftest import entries

GAS = dict(pressure_class="ZB", diameter_mm=100, material="PE", install_year=2020, start_depth=1.2, end_depth=1.2,
           z_ref="centre")


def findings(run_scan, conn, county, rule):
    run_scan(rule_ids=[rule])
    return entries(conn, county, rule)


def test_g01_gas_under_building(plant, hz_conn, county, run_scan):
    plant.building(0, 0, 10, 10, code="UNDER")
    under = plant.segment("RQ", (-5, 5), (15, 5), **GAS)                 # 10 m under the footprint
    plant.building(30, 0, 40, 10, code="TOUCH")
    plant.segment("RQ", (20, 5), (30, 5), **GAS)                         # ends exactly on the wall: not under
    plant.building(60, 0, 70, 10, code="AERIAL")
    plant.segment("RQ", (55, 5), (75, 5), **{**GAS, "burial_type": "JK"})  # aerial: passes over
    plant.building(90, 0, 100, 10, code="BESIDE")
    plant.segment("RQ", (85, -3), (105, -3), **GAS)                      # beside it: G02's business
    hz_conn.commit()
    found = findings(run_scan, hz_conn, county, "G01")
    assert len(found) == 1, [f["title"] for f in found]
    f = found[0]
    assert f["evidence"]["measured"] == 10.0 and f["evidence"]["required"] == 0
    assert {r["table"] for r in f["facility_refs"]} == {"pipe_segment", "building"}
    assert under in [r["id"] for r in f["facility_refs"]]
    assert f["hazard_class"] == "major" and f["risk_level"] == 1 and f["status"] == "pending"


@pytest.mark.parametrize("cls,wall,clear,required,found", [
    ("ZA", None, 1.2, 1.5, True),      # 中压A: 1.5 m to the foundation
    ("ZA", None, 1.5, 1.5, False),     # exactly the required distance: compliant
    ("ZA", None, 1.499, 1.5, True),
    ("ZA", None, 2.0, 1.5, False),
    # the 中压 reduction (1.0 m) needs protective measures, which the record cannot state: a wall
    # thickness, however thick, does not qualify
    ("ZA", 8.0, 1.2, 1.5, True),
    ("ZA", 20.0, 1.2, 1.5, True),
    ("CGB", 20.0, 4.0, 5.0, True),     # 次高压B: the 3.0 m reduction needs protection too
    ("DY", None, 0.7, 0.7, False),     # 低压 0.7 m, no reduction
    ("DY", None, 0.65, 0.7, True),
    ("CGA", None, 7.0, 13.5, True),    # 次高压A 13.5 m to the outer wall
    ("CGA", 9.4, 7.0, 13.5, True),     # wall below 9.5 mm: no reduction
    ("CGA", 9.5, 7.0, 6.5, False),     # wall ≥ 9.5 mm: 6.5 m
    ("CGA", 9.5, 6.5, 6.5, False),     # … at exactly 6.5 m
    ("CGA", 9.5, 6.499, 6.5, True),
    ("CGA", 10.0, 6.4, 6.5, True),
    ("CGA", 11.8, 3.0, 6.5, True),     # wall below 11.9 mm: still 6.5 m
    ("CGA", 11.9, 3.0, 3.0, False),    # wall ≥ 11.9 mm: 3.0 m, at exactly 3.0 m
    ("CGA", 11.9, 2.999, 3.0, True),
    ("GA", None, 13.0, 13.5, True),    # 高压 held to the 次高压A column
])
def test_g02_clearance_to_buildings(plant, hz_conn, county, run_scan, cls, wall, clear, required, found):
    plant.building(0, 0, 20, 10, code="HOUSE")
    r = 0.1                                                              # DN 200: outer wall 0.1 m off the axis
    plant.segment("RQ", (-5, -clear - r), (25, -clear - r),
                  **{**GAS, "pressure_class": cls, "diameter_mm": 200, "wall_thickness_mm": wall})
    hz_conn.commit()
    got = findings(run_scan, hz_conn, county, "G02")
    assert bool(got) is found, [g["evidence"] for g in got]
    if found:
        ev = got[0]["evidence"]
        assert ev["measured"] == pytest.approx(clear, abs=0.0015)
        assert ev["required"] == required and ev["measured"] < ev["required"]
        reduced = required < ev["inputs"]["standard_m"]
        assert ev["inputs"]["reduction"] is reduced and ev["inputs"]["required_basis"].startswith("reduced") is reduced
        assert ev["inputs"].get("reduction_condition") == ({"wall_mm": 11.9 if required == 3.0 else 9.5}
                                                           if reduced else None)


def test_g02_reductions_need_a_mapped_column(hz_url, plant, hz_conn, county, run_scan):
    """The conditions of the reductions are met only through the columns the rule maps them to:
    without ``reduction_columns`` a 12 mm 次高压A wall gets no reduction; a column that cannot
    state a condition is refused."""
    import psycopg2

    from cim.errors import ConfigError
    from cimplus.hazards import config, scan

    plant.building(0, 0, 20, 10, code="HOUSE")
    plant.segment("RQ", (-5, -3.1), (25, -3.1),
                  **{**GAS, "pressure_class": "CGA", "diameter_mm": 200, "wall_thickness_mm": 12.0})
    hz_conn.commit()
    assert findings(run_scan, hz_conn, county, "G02") == []             # the shipped rule: 3.0 m at 3.0 m

    shipped = config.rules()

    def ruleset(columns: dict) -> config.RuleSet:
        g02 = shipped.rules["G02"]
        rule = g02.model_copy(update={"params": {**g02.params, "reduction_columns": columns}})
        return shipped.model_copy(update={"rules": {**shipped.rules, "G02": rule}})

    conn = psycopg2.connect(hz_url)
    try:
        scan.scan(conn, county, rule_ids=["G02"], ruleset=ruleset({}))
        got = entries(hz_conn, county, "G02")
        assert len(got) == 1 and got[0]["evidence"]["required"] == 13.5
        assert got[0]["evidence"]["inputs"]["reduction"] is False
        assert "reduction_condition" not in got[0]["evidence"]["inputs"]
        for columns, error in (({"wall_mm": "material"}, "reduction_columns.wall_mm"),      # a text column
                               ({"wall_mm": "no_such_column"}, "reduction_columns.wall_mm"),
                               ({"protection": "diameter_mm"}, "protection")):              # a flag needs a bool
            with pytest.raises(ConfigError, match=error):
                scan.scan(conn, county, rule_ids=["G02"], ruleset=ruleset(columns))
    finally:
        conn.close()


@pytest.mark.parametrize("other,offset,found", [
    (dict(network="JS", diameter_mm=100), 0.35, True),       # 中压B ↔ 给水 0.5 m
    (dict(network="JS", diameter_mm=100), 0.50, False),      # exactly 0.5 m
    (dict(network="JS", diameter_mm=100), 0.80, False),
    (dict(network="PS", diameter_mm=300), 1.10, True),       # ↔ 排水 1.2 m
    (dict(network="DL", diameter_mm=100, burial_type="GG"), 0.9, True),   # power in a trench: 1.0 m
    (dict(network="DL", diameter_mm=100), 0.9, False),       # directly buried power: 0.5 m
    (dict(network="RQ", diameter_mm=400, pressure_class="ZB"), 0.45, True),  # gas-gas, DN > 300: 0.5 m
    (dict(network="RQ", diameter_mm=100, pressure_class="ZB"), 0.45, False),  # gas-gas, DN ≤ 300: 0.4 m
])
def test_g03_parallel_runs(plant, hz_conn, county, run_scan, other, offset, found):
    plant.segment("RQ", (0, 0), (30, 0), **GAS)
    props = dict(other)
    net = props.pop("network")
    r_other = props["diameter_mm"] / 2000
    plant.segment(net, (0, 0.05 + offset + r_other), (30, 0.05 + offset + r_other), **props)
    hz_conn.commit()
    got = findings(run_scan, hz_conn, county, "G03")
    assert bool(got) is found, [g["evidence"] for g in got]
    if found:
        assert got[0]["evidence"]["measured"] == pytest.approx(offset, abs=0.0015)
        assert got[0]["evidence"]["inputs"]["run_m"] == 30.0


def test_g03_needs_a_parallel_run_never_a_crossing(plant, hz_conn, county, run_scan):
    plant.segment("RQ", (0, 0), (30, 0), **GAS)
    plant.segment("JS", (15, -10), (15.5, 10), diameter_mm=100)          # crosses: G04's business, never G03
    plant.segment("JS", (40, 0.2), (60, 0.2), diameter_mm=100)           # close but no common stretch
    plant.segment("RQ", (100, 0), (130, 0), **GAS)
    plant.segment("JS", (100, 0.3), (101.5, 0.3), diameter_mm=100)       # common stretch 1.5 m < 2 m
    plant.segment("RQ", (200, 0), (230, 0), **GAS)
    plant.segment("JS", (200, 0.3), (220, 0.3 + 20 * 0.84), diameter_mm=100)   # 40° apart
    plant.segment("RQ", (300, 0), (330, 0), **GAS)
    plant.segment("JS", (310, -0.2), (320, 0.2), diameter_mm=100)       # shallow crossing within 30°
    hz_conn.commit()
    assert findings(run_scan, hz_conn, county, "G03") == []


def _g04_evidence(run_scan, hz_conn, county, gap: float, found: bool) -> dict | None:
    """Commit the planted pipes, scan G04 and check that a finding exists exactly when ``found``,
    measuring ``gap`` against 0.15 m; its evidence (None when not found)."""
    hz_conn.commit()
    got = findings(run_scan, hz_conn, county, "G04")
    assert bool(got) is found, [g["evidence"] for g in got]
    if not found:
        return None
    ev = got[0]["evidence"]
    assert ev["measured"] == pytest.approx(gap, abs=0.0015) and ev["required"] == 0.15
    return ev


@pytest.mark.parametrize("gap,found", [(0.10, True), (0.15, False), (0.30, False)])
def test_g04_vertical_clearance_at_crossings(plant, hz_conn, county, run_scan, gap, found):
    # gas DN100 centre at 10.0 (top 10.05); water DN200 recorded by its invert: centre = invert + 0.1
    plant.segment("RQ", (0, 0), (30, 0), **{**GAS, "start_z": 10.0, "end_z": 10.0})
    invert = 10.05 + gap
    plant.segment("JS", (15, -10), (15, 10), diameter_mm=200, start_z=invert - 0.1, end_z=invert + 0.1,
                  z_ref="invert")                                        # interpolated at the crossing: invert
    ev = _g04_evidence(run_scan, hz_conn, county, gap, found)
    if found:
        assert ev["inputs"]["other_centre_z"] == pytest.approx(invert + 0.1, abs=1e-3)
        assert "z_from_depth" not in ev["inputs"]                       # every elevation recorded


@pytest.mark.parametrize("gap,found", [(0.10, True), (0.15, False), (0.149, True)])
def test_g04_elevations_from_ground_and_depth(plant, hz_conn, county, run_scan, gap, found):
    # depth-only survey: gas DN100 (centre reference) 1.2 m deep under ground 11.2 / 11.4 →
    # centre 10.0 / 10.2, 10.1 at the crossing (top 10.15); water DN200 by its invert, start
    # elevation recorded, end from ground − depth, interpolated to invert = 10.15 + gap
    plant.segment("RQ", (0, 0), (30, 0), **{**GAS, "start_depth": 1.2, "end_depth": 1.2,
                                             "start_ground_z": 11.2, "end_ground_z": 11.4})
    invert = 10.15 + gap
    plant.segment("JS", (15, -10), (15, 10), diameter_mm=200, z_ref="invert", start_z=invert - 0.1,
                  end_ground_z=12.5, end_depth=12.5 - (invert + 0.1))
    ev = _g04_evidence(run_scan, hz_conn, county, gap, found)
    if found:
        assert ev["inputs"]["gas_centre_z"] == pytest.approx(10.1, abs=1e-3)
        assert ev["inputs"]["other_centre_z"] == pytest.approx(invert + 0.1, abs=1e-3)
        assert ev["inputs"]["z_from_depth"] == ["gas_start", "gas_end", "other_end"]


def test_g04_skips_ends_without_elevation_or_ground_and_depth(plant, hz_conn, county, run_scan):
    # each gas pipe below meets a water pipe at the very same elevation (a clash, were it known),
    # but has an end with neither an elevation nor both a ground elevation and a depth
    water = dict(diameter_mm=200, start_z=10.0, end_z=10.0)
    plant.segment("RQ", (0, 0), (30, 0), **{**GAS, "start_depth": None, "end_depth": None,
                                             "start_ground_z": 11.2, "end_ground_z": 11.2})      # no depth
    plant.segment("JS", (15, -10), (15, 10), **water)
    plant.segment("RQ", (100, 0), (130, 0), **{**GAS, "start_depth": 1.2, "end_depth": 1.2})   # no ground
    plant.segment("JS", (115, -10), (115, 10), **water)
    plant.segment("RQ", (200, 0), (230, 0), **{**GAS, "start_z": 10.0, "end_depth": 1.2,
                                               "end_ground_z": None})                           # one end lacks both
    plant.segment("JS", (215, -10), (215, 10), **water)
    plant.segment("RQ", (300, 0), (330, 0), **{**GAS, "start_depth": 1.2, "end_depth": 1.2,
                                               "start_ground_z": 11.2, "end_ground_z": 11.2})
    plant.segment("JS", (315, -10), (315, 10), diameter_mm=200, start_z=10.0)                  # the other pipe lacks both
    plant.segment("RQ", (400, 0), (430, 0), **{**GAS, "start_depth": 1.2, "end_depth": 1.2,
                                               "start_ground_z": 11.2, "end_ground_z": 11.2})
    clash = plant.segment("JS", (415, -10), (415, 10), **water)                                  # control: derived, found
    hz_conn.commit()
    got = findings(run_scan, hz_conn, county, "G04")
    assert [[r["id"] for r in g["facility_refs"] if r["network"] == "JS"] for g in got] == [[clash]]
    assert got[0]["evidence"]["inputs"]["z_from_depth"] == ["gas_start", "gas_end"]


def test_g04_touching_ends_are_not_crossings(plant, hz_conn, county, run_scan):
    plant.segment("RQ", (0, 0), (30, 0), **{**GAS, "start_z": 10.0, "end_z": 10.0})
    plant.segment("JS", (30, 0), (30, 10), diameter_mm=200, start_z=10.0, end_z=10.0)   # meets at an end
    hz_conn.commit()
    assert findings(run_scan, hz_conn, county, "G04") == []


@pytest.mark.parametrize("depth,found", [(0.6, True), (0.65, False), (0.95, False)])
def test_g05_cover_without_roads(plant, hz_conn, county, run_scan, depth, found):
    # centre reference, DN100: cover = depth − 0.05; the non-carriageway minimum is 0.6 m
    plant.segment("RQ", (0, 0), (30, 0), **{**GAS, "start_depth": depth, "end_depth": depth + 0.5})
    hz_conn.commit()
    got = findings(run_scan, hz_conn, county, "G05")
    assert bool(got) is found
    if found:
        ev = got[0]["evidence"]
        assert ev["measured"] == pytest.approx(depth - 0.05) and ev["required"] == 0.6
        assert ev["inputs"]["cover_basis"] == "other" and ev["inputs"]["road_source"] is None


def test_g05_cover_under_a_carriageway(plant, hz_conn, county, run_scan):
    # road centre lines (cim.road, 道路中心线): a 主干路 of 30 m red-line width along y = 0 has a
    # carriageway of 30 × 0.6 = 18 m (rules.yaml roads), so 9 m either side of the line
    from plant import geo
    from shapely.geometry import LineString

    with hz_conn.cursor() as cur:
        cur.execute("INSERT INTO cim.road (road_class, width_m, county_code, geom) "
                    "VALUES ('ZG', 30, %s, ST_Multi(ST_GeomFromEWKT(%s))), ('XQ', 30, %s, ST_Multi(ST_GeomFromEWKT(%s)))",
                    (county, geo(LineString([(-10, 0), (40, 0)])), county, geo(LineString([(-10, 100), (40, 100)]))))
    try:
        plant.segment("RQ", (0, 5), (30, 5), **{**GAS, "start_depth": 0.85, "end_depth": 0.85})    # cover 0.8 < 0.9
        plant.segment("RQ", (0, 12), (30, 12), **{**GAS, "start_depth": 0.85, "end_depth": 0.85})  # beyond 9 m
        plant.segment("RQ", (0, 100), (30, 100), **{**GAS, "start_depth": 0.85, "end_depth": 0.85})  # 小区路
        hz_conn.commit()
        got = findings(run_scan, hz_conn, county, "G05")
        assert len(got) == 1
        assert got[0]["evidence"]["inputs"]["cover_basis"] == "carriageway"
        assert got[0]["evidence"]["required"] == 0.9 and got[0]["evidence"]["inputs"]["road_source"] == "cim.road"
    finally:
        with hz_conn.cursor() as cur:
            cur.execute("DELETE FROM cim.road WHERE county_code = %s", (county,))
        hz_conn.commit()


def test_g06_aging_gas(plant, hz_conn, county, run_scan, svc):
    import datetime as dt
    year = dt.date.today().year
    grey = plant.segment("RQ", (0, 0), (30, 0), **{**GAS, "material": "ZT-HK", "install_year": year - 2})
    old = plant.segment("RQ", (0, 10), (30, 10), **{**GAS, "material": "G", "install_year": year - 20})
    plant.segment("RQ", (0, 20), (30, 20), **{**GAS, "material": "G", "install_year": year - 19})
    unknown = plant.segment("RQ", (0, 30), (30, 30), **{**GAS, "material": "PE", "install_year": None})
    plant.segment("RQ", (0, 40), (30, 40), **{**GAS, "material": "QM", "install_year": None})   # not a 22号 age case
    hz_conn.commit()
    got = {f["facility_refs"][0]["id"]: f for f in findings(run_scan, hz_conn, county, "G06")}
    assert set(got) == {grey, old, unknown}
    assert got[grey]["evidence"]["inputs"]["criterion"] == "material" and got[grey]["risk_level"] == 2
    assert got[old]["evidence"]["measured"] == 20 and got[old]["risk_level"] == 3
    assert got[unknown]["evidence"]["inputs"]["criterion"] == "unknown_year" and got[unknown]["risk_level"] == 4
    assert "年代不详" in got[unknown]["title"]


def test_gas_pair_rules_along_long_mains(plant, hz_conn, county, run_scan, settings):
    """Mains of many segments (east, north and diagonal, across the scan's east-west stripes):
    each finding belongs to the segment it is about, compliant neighbours and crossings along the
    mains are not findings, and a scan on one connection finds exactly what a scan on two finds."""
    from cim.settings import HazardSettings
    from cimplus.hazards.service import HazardService

    east = [plant.segment("RQ", (40 * k, 0), (40 * (k + 1), 0), **GAS) for k in range(25)]    # 0 … 1000 m
    north = [plant.segment("RQ", (1200, 40 * k), (1200, 40 * (k + 1)), **GAS) for k in range(10)]
    diag = [plant.segment("RQ", (1400 + 30 * k, 17.32 * k), (1400 + 30 * (k + 1), 17.32 * (k + 1)), **GAS)
            for k in range(5)]                                                   # 30° from east
    plant.segment("PS", (-5, 1.5), (1005, 1.5), diameter_mm=300)                # 1.3 m clear ≥ 1.2: compliant
    for x in (200, 400, 600, 800):
        plant.segment("JS", (x, -20), (x, 20), diameter_mm=100)                 # crossings
    under = [plant.building(125, -5, 135, 5, code="UNDER-E"), plant.building(1195, 205, 1205, 215, code="UNDER-N")]
    near = plant.building(445, 0.65, 475, 10.65, code="NEAR")                   # 0.6 m from the wall of east[11]
    plant.building(700, 1.05, 720, 11, code="CLEAR")                            # 1.0 m: compliant
    js = [plant.segment("JS", (45, -0.45), (75, -0.45), diameter_mm=100),       # 0.35 m clear of east[1]
          plant.segment("JS", (385, -0.45), (415, -0.45), diameter_mm=100),     # across east[9] / east[10]
          plant.segment("JS", (1200.45, 285), (1200.45, 315), diameter_mm=100),  # north[7]
          plant.segment("JS", (1430 - 0.225, 17.32 + 0.39), (1460 - 0.225, 34.64 + 0.39), diameter_mm=100)]  # diag[1]
    hz_conn.commit()

    run_scan(rule_ids=["G01", "G02", "G03"])
    got = {(e["rule_id"], frozenset(r["id"] for r in e["facility_refs"])) for e in entries(hz_conn, county)}
    assert got == {("G01", frozenset({east[3], under[0]})), ("G01", frozenset({north[5], under[1]})),
                   ("G02", frozenset({east[11], near})),
                   ("G03", frozenset({east[1], js[0]})), ("G03", frozenset({east[9], js[1]})),
                   ("G03", frozenset({east[10], js[1]})), ("G03", frozenset({north[7], js[2]})),
                   ("G03", frozenset({diag[1], js[3]}))}

    one = HazardService(settings.model_copy(update={"hazards": HazardSettings(scan_workers=1)}))
    two = HazardService(settings.model_copy(update={"hazards": HazardSettings(scan_workers=2)}))
    try:
        for s in (one, two):
            totals = s.run_scan(county, rule_ids=["G01", "G02", "G03"]).totals()
            assert (totals["findings"], totals["unchanged"], totals["new"], totals["cleared"]) == (8, 8, 0, 0)
    finally:
        one.close()
        two.close()
