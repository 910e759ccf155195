"""Every indicator of the shipped catalogue on the fixture county (conftest.py) against values
worked out by hand, missing inputs reported per indicator and per area, thresholds and directions.

Run 2024 comes first: the inputs are of 2025, so it must say they are missing (never a zero).
Run 2025 has them.
"""

from __future__ import annotations

import json
import math

import psycopg2
import pytest
import yaml
from pydantic import ValidationError
from pyproj import Transformer

from cimplus.healthcheck.catalog import Ledger
from cimplus.healthcheck.service import HealthCheck
from layers.catalog import load_catalog
from tests.cimplus.healthcheck.conftest import COUNTY, K1, K2, K3, S1, S2, _values

AREAS = (COUNTY, S1, S2, K1, K2, K3)
NC = None   # not computed in that area (the reason is checked separately)
LIT_R2 = 40 + 2 * math.sqrt(20 ** 2 - 10 ** 2)   # L5 on the centre line, L6 10 m off it, reach 20 m

# indicator → {area: value}, run of 2025 (population K1 1000, K2 2000, county 5000; built-up x ≤ 1500)
EXPECTED = {
    "structural_hazard_homes": {COUNTY: 3, S1: 2, S2: 1, K1: 2, K2: 0, K3: 1},          # B1 C, B2 D | B5 C
    # B7 1.5 m from Ga (1990); open gas entries of the ledger 1 m from B3, B4 (条件已消除), 1.5 m from B5
    # (a gas station) and 1 m from B7 (counted once); not B1 (closed; an open one 3 m off), B8 (dismissed),
    # B2 (a water entry) or the shop B6
    "gas_hazard_homes": {COUNTY: 4, S1: 2, S2: 2, K1: 1, K2: 1, K3: 2},
    "energy_retrofit_homes": {COUNTY: 2, S1: 2, S2: 0, K1: 2, K2: 0, K3: 0},            # B1 1995, B3 era 2
    "ageing_retrofit_homes": {COUNTY: 3, S1: 2, S2: 1, K1: 1, K2: 1, K3: 1},            # B1, B4, B5 (B3 has a lift)
    "park_service_coverage": {COUNTY: 100 * 550 / 800, S1: 100 * 550 / 600, S2: 0.0, K1: 90.0, K2: 100.0, K3: 0.0},
    "park_area_per_capita": {COUNTY: 13500 / 5000, S1: 12500 / 3000, S2: NC, K1: 2.5, K2: 5.0, K3: NC},
    "comprehensive_park_per_capita": {COUNTY: 2.0, S1: 10000 / 3000, S2: NC, K1: 0.0, K2: 5.0, K3: NC},
    "community_park_per_capita": {COUNTY: 0.5, S1: 2500 / 3000, S2: NC, K1: 2.5, K2: 0.0, K3: NC},
    "green_space_ratio": {COUNTY: 100 * 18500 / 1.5e6, S1: 1.25, S2: 1.2, K1: 0.5, K2: 2.0, K3: 1.2},
    "drainage_density_ys": {COUNTY: 1.4 / 1.5, S1: 0.9, S2: 1.0, K1: 1.8, K2: 0.0, K3: 1.0},
    "drainage_density_ws": {COUNTY: 0.5 / 1.5, S1: 0.5, S2: 0.0, K1: 0.0, K2: 1.0, K3: 0.0},
    "drainage_density_hs": {COUNTY: 0.2 / 1.5, S1: 0.0, S2: 0.4, K1: 0.0, K2: 0.0, K3: 0.4},
    "combined_sewer_share": {COUNTY: 100 * 200 / 2400, S1: 0.0, S2: 20.0, K1: 0.0, K2: 0.0, K3: 20.0},
    "aged_share_gas": {COUNTY: 100 * 400 / 900, S1: 50.0, S2: 100 / 3, K1: 50.0, K2: NC, K3: 100 / 3},
    "aged_share_water": {COUNTY: 75.0, S1: 75.0, S2: NC, K1: 75.0, K2: NC, K3: NC},
    "aged_share_drainage": {COUNTY: 100 * 1300 / 2400, S1: 100 * 900 / 1400, S2: 40.0, K1: 100.0, K2: 0.0, K3: 40.0},
    "aged_share_heating": {a: NC for a in AREAS},
    "gas_renewal_completion": {COUNTY: 100 / 3, S1: 0.0, S2: 200 / 3, K1: 0.0, K2: NC, K3: 200 / 3},
    "streetlight_on_rate_main": {COUNTY: 75.0, S1: 75.0, S2: NC, K1: 75.0, K2: NC, K3: NC},
    "streetlight_on_rate_minor": {COUNTY: 75.0, S1: NC, S2: 75.0, K1: NC, K2: NC, K3: 75.0},
    "streetlight_coverage": {COUNTY: 100 * (120 + LIT_R2 + 20) / 1900, S1: 12.0, S2: 100 * (LIT_R2 + 20) / 900,
                             K1: 12.0, K2: NC, K3: 100 * (LIT_R2 + 20) / 900},
    "road_network_density": {COUNTY: 1.7 / 1.5, S1: 1.0, S2: 1.4, K1: 2.0, K2: 0.0, K3: 1.4},
    "new_residential_over_80m": {COUNTY: 2, S1: 1, S2: 1, K1: 0, K2: 1, K3: 1},         # B4 90 m, B5 28 × 3 m
    "cim_3d_coverage": {COUNTY: 4.0, S1: 5.0, S2: 2.0, K1: 8.0, K2: 2.0, K3: 2.0},
}
REASONS = {("park_area_per_capita", K3): "no_population", ("park_area_per_capita", S2): "no_population",
           ("aged_share_gas", K2): "no_pipes", ("aged_share_heating", COUNTY): "no_pipes",
           ("gas_renewal_completion", K2): "no_renewal_need", ("streetlight_on_rate_main", K3): "no_lights",
           ("streetlight_coverage", K2): "no_roads"}
NEEDS_INPUT = {"park_area_per_capita", "comprehensive_park_per_capita", "community_park_per_capita",
               "green_space_ratio", "drainage_density_ys", "drainage_density_ws", "drainage_density_hs",
               "road_network_density", "cim_3d_coverage"}


def test_every_indicator_has_a_hand_value():
    from cimplus.healthcheck.catalog import load

    assert {i.id for i in load().indicators} == set(EXPECTED)


@pytest.mark.parametrize("indicator", sorted(EXPECTED))
def test_value_by_hand(values_2025, indicator):
    got = values_2025
    for area, want in EXPECTED[indicator].items():
        v = got[(indicator, area)]
        if want is NC:
            assert v["state"] == "not_computed" and v["value"] is None, (indicator, area, v)
            assert v["reason_zh"] and v["reason_en"]
        else:
            assert v["state"] == "computed", (indicator, area, v)
            assert v["value"] == pytest.approx(want, rel=1e-3, abs=1e-6), (indicator, area, v["value"], want)


def test_reasons_per_area(values_2025):
    got = values_2025
    for (indicator, area), code in REASONS.items():
        assert got[(indicator, area)]["reason_code"] == code


def test_missing_inputs_are_reported_not_zero(hc_cli, run_2024):
    """The inputs are of 2025: the 2024 run has none and says so for each indicator needing them."""
    got = _values(hc_cli, run_2024["run_id"])
    for indicator in NEEDS_INPUT:
        skipped = run_2024["indicators"][indicator]["skipped"]
        assert skipped["code"] == "missing_input", indicator
        assert "缺少输入数据" in skipped["zh"] and "missing input" in skipped["en"]
        for area in AREAS:
            v = got[(indicator, area)]
            assert v["state"] == "not_computed" and v["value"] is None and v["reason_code"] == "missing_input"
    # the indicators that need no input are computed in 2024 too
    assert got[("structural_hazard_homes", K1)]["value"] == 2


def test_thresholds_and_directions(hc_cli, run_2024, values_2025):
    got = values_2025
    assert got[("park_service_coverage", K1)]["pass"] is True            # 90 % > 80 %
    assert got[("park_service_coverage", K3)]["pass"] is False
    assert got[("park_service_coverage", K1)]["op"] == ">" and got[("park_service_coverage", K1)]["threshold"] == 80
    assert got[("structural_hazard_homes", K2)]["pass"] is True          # 0 ≤ 0
    assert got[("structural_hazard_homes", K1)]["pass"] is False
    assert got[("streetlight_on_rate_main", K1)]["pass"] is False        # 75 % < 98 %
    assert got[("combined_sewer_share", K3)]["pass"] is None              # no threshold: not judged
    assert got[("park_area_per_capita", K3)]["pass"] is None              # not computed: not judged
    # a yearly target: 80 % in 2024, 100 % from 2025
    before = _values(hc_cli, run_2024["run_id"])
    assert before[("gas_renewal_completion", K3)]["threshold"] == 80
    assert got[("gas_renewal_completion", K3)]["threshold"] == 100


def test_summary_counts_and_inputs_recorded(hc_cli, run_2025):
    res = hc_cli("healthcheck", "list", "--json")
    runs = {r["id"]: r for r in json.loads(res.stdout)}
    run = runs[run_2025["run_id"]]
    assert run["state"] == "done" and run["year"] == 2025 and run["counties"] == [COUNTY]
    assert run["summary"]["values"] == 6 * len(EXPECTED)
    assert run["inputs"]["population"]["years"] == [2025] and run["inputs"]["builtup"]["counties"] == [COUNTY]
    assert run["inputs"]["hazard_ledger"] == {"table": "cim.hazard", "used": True, "note": "used"}
    assert {"building", "pipe_segment", "road", "streetlight", "green_space", "admin_area",
            "hazard"} <= set(run["data_versions"])
    assert run["data_versions"]["hazard"] > 0        # the seeded entries bumped it
    assert run_2025["indicators"]["aged_share_gas"]["seconds"] >= 0


@pytest.mark.parametrize(("area", "codes"), [(K1, ["B3"]), (K2, ["B4"]), (K3, ["B5", "B7"]),
                                             (COUNTY, ["B3", "B4", "B5", "B7"])])
def test_gas_hazard_homes_from_the_ledger(hc_url, run_2025, area, codes):
    """The dwellings counted are those near an open gas entry of the ledger (or an aged gas pipe): not
    those near a closed or dismissed entry, an open entry out of reach, or an entry of another kind."""
    hc = HealthCheck(load_catalog())
    conn = psycopg2.connect(hc_url)
    try:
        got = hc.features(conn, run_2025["run_id"], "gas_hazard_homes", area)
    finally:
        conn.close()
    assert got["count"] == len(codes) and not got["data_changed"]
    assert sorted(f["properties"]["code"] for f in got["features"]["features"]) == codes


def test_ledger_filter_is_the_open_gas_entries():
    """The catalogue's filter names the ledger's open statuses and its gas facility types, as
    cimplus/hazards/ledger.yaml defines them."""
    from cimplus.hazards.config import LEDGER_FILE
    from cimplus.healthcheck.catalog import load

    vocab = yaml.safe_load(LEDGER_FILE.read_text(encoding="utf-8"))
    led = load().hazard_ledger
    assert led is not None and led.table == "cim.hazard" and led.geometry == "shape"
    assert set(led.where["status"]) == {s for s, d in vocab["statuses"].items() if d["open"]}
    assert set(led.where["facility_type"]) == {f for f in vocab["facility_types"] if f.startswith("gas_")}


@pytest.mark.parametrize("where", [{"status; DROP TABLE x": "open"}, {"Status": "open"}, {"h.status": ["open"]}])
def test_ledger_filter_columns_are_plain_names(where):
    with pytest.raises(ValidationError):
        Ledger.model_validate({"table": "cim.hazard", "geometry": "shape", "where": where})


def test_park_service_coverage_against_shapely(hc_url, values_2025, run_2025):
    """公园绿地服务半径覆盖率 recomputed with shapely from the fixture's geometries, as the formula
    defines it: parks (class or subclass in park_classes) measured in the run's metric CRS, those of
    at least min_park_m2 buffered by large_radius_m (≥ large_park_m2) or small_radius_m with
    buffer_segments segments a quarter circle, the buffers united; per area, the residential
    footprints whose bounding-box centre lies in it (EPSG:4490), their metric area and the part of it
    inside the served area."""
    from shapely import transform, union_all, wkt
    from shapely.geometry import Point

    from cimplus.healthcheck.catalog import load
    from tests.cimplus.healthcheck.conftest import ADMIN, BUILDINGS, GREEN

    cat = load()
    p = cat.params_of(cat.get("park_service_coverage"))
    conn = psycopg2.connect(hc_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT metric_srid FROM cim.healthcheck_run WHERE id = %s", (run_2025["run_id"],))
            srid = cur.fetchone()[0]
    finally:
        conn.close()
    stored = Transformer.from_crs("EPSG:4546", "EPSG:4490", always_xy=True).transform     # as the fixture is stored
    metric = Transformer.from_crs("EPSG:4490", f"EPSG:{srid}", always_xy=True).transform  # ST_Transform(geom, srid)

    def geo(text: str):
        return transform(wkt.loads(text), stored, interleaved=False)

    parks = [transform(geo(w), metric, interleaved=False) for _, cls, sub, w in GREEN
             if cls in p["park_classes"] or sub in p["park_classes"]]
    served = union_all([g.buffer(p["large_radius_m"] if g.area >= p["large_park_m2"] else p["small_radius_m"],
                                 quad_segs=p["buffer_segments"]) for g in parks if g.area >= p["min_park_m2"]])
    homes = [geo(b[-1]) for b in BUILDINGS if b[1] in p["residential_uses"]]
    partial = 0
    for code, *_, area_wkt in ADMIN:
        area = geo(area_wkt)
        mine = [transform(h, metric, interleaved=False) for h in homes
                if area.intersects(Point((h.bounds[0] + h.bounds[2]) / 2, (h.bounds[1] + h.bounds[3]) / 2))]
        m2 = sum(h.area for h in mine)
        covered = sum(h.intersection(served).area for h in mine)
        partial += any(0 < h.intersection(served).area < h.area for h in mine)
        v = values_2025[("park_service_coverage", code)]
        assert v["state"] == "computed" and m2 > 0, (code, v)
        assert v["denominator"] == pytest.approx(m2, rel=1e-9), code
        assert v["numerator"] == pytest.approx(covered, rel=1e-6, abs=1e-6), (code, v["numerator"], covered)
        assert v["value"] == pytest.approx(100 * covered / m2, rel=1e-6, abs=1e-6), (code, v["value"], 100 * covered / m2)
    assert partial > 0          # a footprint the served area cuts (B8, in K1, its county and its street)


def test_validate_plans_the_ledger_filter(hc_cli, tmp_path):
    """`cim healthcheck validate` plans the gas count with the ledger read: the shipped filter plans,
    a filter whose value cannot compare with its column does not."""
    from cimplus.healthcheck.catalog import DEFAULT_FILE

    ok = hc_cli("healthcheck", "validate")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    raw = yaml.safe_load(DEFAULT_FILE.read_text(encoding="utf-8"))
    raw["hazard_ledger"]["where"]["risk_level"] = ["1", "2"]           # a smallint column
    bad = tmp_path / "indicators.yaml"
    bad.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    res = hc_cli("healthcheck", "validate", env={"CIM_HEALTHCHECK_INDICATORS": str(bad)})
    assert res.returncode == 1 and "gas_hazard_homes" in res.stderr, res.stdout + res.stderr


def test_closing_a_ledger_entry_takes_its_dwelling_out(make_database, tmp_path):
    """Accepting and closing (销号) the open gas entry by B3: the features behind the run's value say the
    ledger changed and no longer hold B3; the next run counts one dwelling less in K1."""
    from tests.cimplus.healthcheck.test_membership import PRINCIPAL, County

    county = County(make_database("cim_hc_ledger"), tmp_path)
    first = county.run()
    assert first["values"][("gas_hazard_homes", K1)] == 1 and first["values"][("gas_hazard_homes", COUNTY)] == 4

    def behind(run_id: int) -> dict:
        conn = psycopg2.connect(county.url)
        try:
            return county.hc.features(conn, run_id, "gas_hazard_homes", K1)
        finally:
            conn.close()

    before = behind(first["run_id"])
    assert [f["properties"]["code"] for f in before["features"]["features"]] == ["B3"] and not before["data_changed"]
    county.execute("UPDATE cim.hazard SET status = 'closed', verify_result = '合格', closed_by = %s, closed_at = now(), "
                   "version = version + 1 WHERE number = %s", (PRINCIPAL.name, f"{COUNTY}-2025-0001"))
    after = behind(first["run_id"])
    assert after["count"] == 0 and after["data_changed"]
    second = county.run()
    assert second["values"][("gas_hazard_homes", K1)] == 0 and second["values"][("gas_hazard_homes", COUNTY)] == 3
    assert second["data_versions"]["hazard"] > first["data_versions"]["hazard"]
