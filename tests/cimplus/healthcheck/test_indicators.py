"""Every indicator of the shipped catalogue on the fixture county (conftest.py) against values
worked out by hand, missing inputs reported per indicator and per area, thresholds and directions.

Run 2024 comes first: the inputs are of 2025, so it must say they are missing (never a zero).
Run 2025 has them.
"""

from __future__ import annotations

import json
import math

import pytest

from tests.cimplus.healthcheck.conftest import COUNTY, K1, K2, K3, S1, S2, _values

AREAS = (COUNTY, S1, S2, K1, K2, K3)
NC = None   # not computed in that area (the reason is checked separately)
LIT_R2 = 40 + 2 * math.sqrt(20 ** 2 - 10 ** 2)   # L5 on the centre line, L6 10 m off it, reach 20 m

# indicator → {area: value}, run of 2025 (population K1 1000, K2 2000, county 5000; built-up x ≤ 1500)
EXPECTED = {
    "structural_hazard_homes": {COUNTY: 3, S1: 2, S2: 1, K1: 2, K2: 0, K3: 1},          # B1 C, B2 D | B5 C
    "gas_hazard_homes": {COUNTY: 1, S1: 0, S2: 1, K1: 0, K2: 0, K3: 1},                 # B7, 1.5 m from Ga (1990)
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
    assert run["inputs"]["hazard_ledger"]["used"] is False
    assert {"building", "pipe_segment", "road", "streetlight", "green_space", "admin_area"} <= set(run["data_versions"])
    assert run_2025["indicators"]["aged_share_gas"]["seconds"] >= 0
