"""Drainage (D01–D04, D06, D09, D10), water and heat aging (W01, H01) and building rules (B01,
B02) on planted rows: positive, negative and the boundary value for each."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import entries

YEAR = dt.date.today().year


def findings(run_scan, conn, county, rule):
    run_scan(rule_ids=[rule])
    return entries(conn, county, rule)


def drain(plant, a, b, *, z0, z1, size=300, **kw):
    return plant.segment("PS", a, b, subtype=kw.pop("subtype", "YS"), diameter_mm=size, start_z=z0, end_z=z1,
                         z_ref="invert", material="T-GJ", install_year=YEAR - 5, start_depth=1.5, end_depth=1.5, **kw)


@pytest.mark.parametrize("rise,found", [(0.02, True), (0.01, False), (-0.05, False)])
def test_d01_reverse_slope(plant, hz_conn, county, run_scan, rise, found):
    drain(plant, (0, 0), (30, 0), z0=10.0, z1=10.0 + rise)
    hz_conn.commit()
    got = findings(run_scan, hz_conn, county, "D01")
    assert bool(got) is found
    if found:
        assert got[0]["evidence"]["measured"] == pytest.approx(rise)


def test_d01_follows_the_recorded_flow_direction(plant, hz_conn, county, run_scan):
    drain(plant, (0, 0), (30, 0), z0=10.0, z1=10.5, flow_dir=-1)           # flows end → start: falls 0.5 m
    drain(plant, (0, 10), (30, 10), z0=10.5, z1=10.0, flow_dir=-1)         # flows end → start: rises 0.5 m
    hz_conn.commit()
    got = findings(run_scan, hz_conn, county, "D01")
    assert len(got) == 1 and got[0]["evidence"]["measured"] == pytest.approx(0.5)


@pytest.mark.parametrize("down,found", [(300, True), (400, False), (399.6, False)])
def test_d02_smaller_pipe_downstream(plant, hz_conn, county, run_scan, down, found):
    node = plant.point("PS", (30, 0), exp_no="N1", subtype="YS", node_type="manhole")
    drain(plant, (0, 0), (30, 0), z0=10.2, z1=10.1, size=400, end_point_id=node, end_exp_no="N1")
    drain(plant, (30, 20), (30, 0), z0=10.3, z1=10.1, size=200, end_point_id=node, end_exp_no="N1")
    drain(plant, (30, 0), (60, 0), z0=10.0, z1=9.9, size=down, start_point_id=node, start_exp_no="N1")
    hz_conn.commit()
    got = findings(run_scan, hz_conn, county, "D02")
    assert bool(got) is found
    if found:
        assert got[0]["evidence"]["measured"] == 300 and got[0]["evidence"]["required"] == 400
        assert {r["table"] for r in got[0]["facility_refs"]} == {"pipe_segment", "pipe_point"}


def test_d03_cross_connections_and_sewage_outfalls(plant, hz_conn, county, run_scan):
    mixed = plant.point("PS", (30, 0), exp_no="M1", subtype="YS", node_type="manhole")
    drain(plant, (0, 0), (30, 0), z0=10.2, z1=10.1, end_point_id=mixed, end_exp_no="M1")
    drain(plant, (30, 0), (60, 0), z0=10.0, z1=9.9, subtype="WS", start_point_id=mixed, start_exp_no="M1")
    clean = plant.point("PS", (30, 50), exp_no="C1", subtype="YS", node_type="manhole")
    drain(plant, (0, 50), (30, 50), z0=10.2, z1=10.1, end_point_id=clean, end_exp_no="C1")
    drain(plant, (30, 50), (60, 50), z0=10.0, z1=9.9, start_point_id=clean, start_exp_no="C1")
    sewage = plant.point("PS", (100, 0), exp_no="O1", subtype="WS", node_type="outfall", receiving_water="沅江",
                         outfall_kind="污水")
    plant.point("PS", (100, 50), exp_no="O2", subtype="YS", node_type="outfall", receiving_water="沅江",
                outfall_kind="雨水")                                     # storm outfall: allowed
    hz_conn.commit()
    got = {f["facility_refs"][0]["id"]: f for f in findings(run_scan, hz_conn, county, "D03")}
    assert set(got) == {mixed, sewage}
    assert got[mixed]["evidence"]["inputs"]["kinds"] == ["cross_connection"] and got[mixed]["risk_level"] == 3
    assert got[sewage]["evidence"]["inputs"]["kinds"] == ["sewer_outfall"] and got[sewage]["risk_level"] == 2


@pytest.mark.parametrize("invert,gate,found", [(10.0, None, True), (10.0, True, False), (10.5, None, False),
                                               (10.0, False, True)])
def test_d04_outfall_backflow(plant, hz_conn, county, run_scan, invert, gate, found):
    plant.point("PS", (0, 0), subtype="YS", node_type="outfall", invert_z=invert, normal_water_z=10.5,
                flood_water_z=12.0, flap_gate=gate, receiving_water="沅江")
    hz_conn.commit()
    got = findings(run_scan, hz_conn, county, "D04")
    assert bool(got) is found
    if found:
        assert got[0]["evidence"]["measured"] == pytest.approx(0.5)
        assert got[0]["evidence"]["inputs"]["level_basis"] == "normal_water_z"


def test_d06_manhole_cover_and_anti_fall_net(plant, hz_conn, county, run_scan):
    no_net = plant.point("PS", (0, 0), subtype="YS", node_type="manhole", well_cover="Φ700", anti_fall_net=False)
    missing = plant.point("PS", (10, 0), subtype="YS", node_type="manhole", well_cover="缺失", anti_fall_net=False)
    plant.point("PS", (20, 0), subtype="YS", node_type="manhole", well_cover="Φ700", anti_fall_net=True)
    plant.point("PS", (30, 0), subtype="YS", node_type="manhole", well_cover="Φ700")   # not recorded: not a finding
    hz_conn.commit()
    got = {f["facility_refs"][0]["id"]: f for f in findings(run_scan, hz_conn, county, "D06")}
    assert set(got) == {no_net, missing}
    assert got[missing]["hazard_class"] == "major" and got[missing]["risk_level"] == 1
    assert got[missing]["evidence"]["inputs"]["kinds"] == ["missing_cover", "no_anti_fall_net"]
    assert got[no_net]["risk_level"] == 3


@pytest.mark.parametrize("depth,found", [(0.8, True), (0.9, False)])
def test_d09_drain_cover(plant, hz_conn, county, run_scan, depth, found):
    # DN400 by its invert: cover = depth − 0.4; the non-carriageway minimum is 0.5 m
    plant.segment("PS", (0, 0), (30, 0), subtype="YS", diameter_mm=400, z_ref="invert", start_depth=depth,
                  end_depth=depth + 0.3, start_z=10.0, end_z=9.9)
    hz_conn.commit()
    got = findings(run_scan, hz_conn, county, "D09")
    assert bool(got) is found
    if found:
        assert got[0]["evidence"]["measured"] == pytest.approx(depth - 0.4)


@pytest.mark.parametrize("rule,network,material,age,criterion", [
    ("W01", "JS", "SM", 1, "material"),        # asbestos: always
    ("W01", "JS", "T", 1, "material"),         # cement / concrete
    ("W01", "JS", "QM", 30, "age"),            # ≥ 30 years
    ("W01", "JS", "QM", 29, None),
    ("H01", "RL", "G", 20, "age"),             # heat ≥ 20 years
    ("H01", "RL", "G", 19, None),
    ("D10", "PS", "T-PK", 3, "material"),      # flat-joint concrete
    ("D10", "PS", "T-GJ", 50, "age"),
    ("D10", "PS", "T-GJ", 49, None),
    ("W01", "JS", "QM", None, "unknown_year"),
])
def test_aging_water_heat_drainage(plant, hz_conn, county, run_scan, rule, network, material, age, criterion):
    plant.segment(network, (0, 0), (30, 0), diameter_mm=200, material=material,
                  install_year=None if age is None else YEAR - age)
    hz_conn.commit()
    got = findings(run_scan, hz_conn, county, rule)
    assert [g["evidence"]["inputs"]["criterion"] for g in got] == ([criterion] if criterion else [])


def test_b01_appraisal_grades(plant, hz_conn, county, run_scan):
    d = plant.building(0, 0, 10, 10, appraisal_grade="D")
    c = plant.building(20, 0, 30, 10, appraisal_grade="C")
    plant.building(40, 0, 50, 10, appraisal_grade="B")
    plant.building(60, 0, 70, 10)
    hz_conn.commit()
    got = {f["facility_refs"][0]["id"]: f for f in findings(run_scan, hz_conn, county, "B01")}
    assert set(got) == {c, d}
    assert (got[d]["hazard_class"], got[d]["risk_level"]) == ("major", 1)
    assert (got[c]["hazard_class"], got[c]["risk_level"]) == ("general", 2)


def test_b02_commercial_self_built_houses(plant, hz_conn, county, run_scan):
    hit = plant.building(0, 0, 10, 10, self_built=True, floors_above=3, use_code="CY")       # exactly three floors
    plant.building(20, 0, 30, 10, self_built=True, floors_above=2, use_code="CY")            # below the threshold
    plant.building(40, 0, 50, 10, self_built=True, floors_above=5, use_code="ZZ")            # not commercial
    plant.building(60, 0, 70, 10, self_built=True, floors_above=5, use_code="ZS", appraisal_grade="B")  # appraised
    plant.building(80, 0, 90, 10, self_built=False, floors_above=5, use_code="PF")           # not self-built
    hz_conn.commit()
    got = findings(run_scan, hz_conn, county, "B02")
    assert [g["facility_refs"][0]["id"] for g in got] == [hit]
    assert got[0]["evidence"]["inputs"]["use_code"] == "CY"


def test_admin_codes_of_findings(plant, hz_conn, county, run_scan):
    street = county + "001"
    community = street + "001"
    plant.admin(street, "street", -100, -100, 100, 100, parent=county)
    plant.admin(community, "community", -50, -50, 50, 50, parent=street)
    plant.building(0, 0, 10, 10, appraisal_grade="D")
    hz_conn.commit()
    run_scan(rule_ids=["B01"])
    with hz_conn.cursor() as cur:
        cur.execute("SELECT province_code, city_code, street_code, community_code FROM cim.hazard WHERE county_code = %s",
                    (county,))
        assert cur.fetchone() == (county[:2] + "0000", county[:4] + "00", street, community)
