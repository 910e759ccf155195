"""The engineering tables of cim/standards: cited, complete, and the ones ingest validation uses."""

from __future__ import annotations

import pytest

from cim import standards
from cim.errors import ConfigError
from ingest.validation.core import load_rules


def _tables(doc: dict) -> list[tuple[str, dict]]:
    return [(k, v) for k, v in doc.items() if isinstance(v, dict) and ("clause" in v or "tag" in v)]


def test_every_table_cites_its_clause_and_tag():
    for name in ("clearances", "aging"):
        doc = standards.table(name)
        rows = _tables(doc) + _tables(doc.get("networks", {})) + _tables(doc.get("cover", {}))
        assert rows
        for key, row in rows:
            assert row.get("clause") and row.get("tag"), (name, key)


def test_aging_networks_and_gas_columns():
    aging = standards.aging()["networks"]
    assert set(aging) == {"RQ", "JS", "PS", "RL"}
    assert "ZT-HK" in aging["RQ"]["always"] and aging["RQ"]["min_years"] == 20 and aging["JS"]["min_years"] == 30
    c = standards.clearances()
    assert list(c["pressure_classes"]) == ["DY", "ZB", "ZA", "CGB", "CGA"]
    for row in c["gas_horizontal"]["direct"].values():
        assert set(row) == set(c["pressure_classes"])


def test_ingest_rules_read_the_standards_tables():
    rules = load_rules()
    c = standards.clearances()
    assert rules["Q21"].params["gas"] == c["gas_horizontal"]["direct"]
    assert rules["Q21"].params["max_angle_deg"] == c["parallel_run"]["max_angle_deg"]
    assert rules["Q21"].params["loaded_reach_m"] == 20.0          # the rule's own parameter stays
    assert rules["Q20"].params["pairs"] == c["vertical"]["pairs"]
    assert rules["Q19"].params["min_cover_m"] == {"RQ": c["cover"]["RQ"]["other"]}


def test_a_bureau_copy_overrides_and_a_broken_one_is_refused(tmp_path, monkeypatch):
    (tmp_path / "aging.yaml").write_text("networks: {RQ: {clause: x, tag: I, min_years: 15}}\n", encoding="utf-8")
    monkeypatch.setenv(standards.ENV_VAR, str(tmp_path))
    assert standards.aging()["networks"]["RQ"]["min_years"] == 15
    assert "gas_building" in standards.clearances()          # not overridden: the shipped file
    (tmp_path / "clearances.yaml").write_text("vertical: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        standards.clearances()
