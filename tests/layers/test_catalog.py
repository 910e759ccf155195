"""Every layer spec validates, and `cim layers validate` checks specs against the live database."""

from __future__ import annotations

import shutil

import pytest
import yaml

from cim.errors import ConfigError
from layers.catalog import CATALOG_DIR, load_catalog, validate_against_db

PUBLIC_IDS = {"buildings", "pipeline_points", "pipeline_segments", "drainage_nodes", "drainage_pipes",
              "gas_points", "gas_pipes", "green_spaces", "streetlights", "admin_areas"}


def test_catalogue_has_the_public_ids():
    catalog = load_catalog()
    assert {s.id for s in catalog.public()} >= PUBLIC_IDS


def test_specs_match_the_database(conn):
    with conn.cursor() as cur:
        assert validate_against_db(cur, load_catalog()) == []


def test_cli_validate(cli):
    res = cli("layers", "validate")
    assert res.returncode == 0, res.stderr
    assert "valid" in res.stdout


def test_pipeline_colours_follow_cjj61():
    spec = load_catalog().get("pipeline_segments")
    assert spec.style.colors["JS"] == "#00ffff"
    assert spec.style.colors["RQ"] == "#ff00ff"
    assert spec.style.colors["DL"] == "#ff0000"
    assert spec.style.colors["PS"] == "#4c3926"


def _copy_catalog(tmp_path):
    for f in CATALOG_DIR.glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def test_unknown_key_is_rejected(tmp_path):
    d = _copy_catalog(tmp_path)
    raw = yaml.safe_load((d / "buildings.yaml").read_text())
    raw["colour"] = "#ff0000"
    (d / "buildings.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    with pytest.raises(ConfigError) as err:
        load_catalog(d)
    assert "buildings.yaml" in err.value.en


def test_wrong_column_and_srid_are_reported(tmp_path, conn):
    d = _copy_catalog(tmp_path)
    raw = yaml.safe_load((d / "streetlights.yaml").read_text())
    raw["attributes"].append({"name": "no_such_column", "label_zh": "无", "label_en": "none"})
    raw["geometry"]["srid"] = 4326
    (d / "streetlights.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    # a column the table model (cim/schema.py) does not have is refused when the catalogue loads
    with pytest.raises(ConfigError, match="no_such_column"):
        load_catalog(d)
    raw["attributes"].pop()
    raw["attributes"][0]["type"] = "float"          # pole_no is text in the table model
    (d / "streetlights.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    with pytest.raises(ConfigError, match="pole_no is text"):
        load_catalog(d)
    raw["attributes"][0]["type"] = "text"
    (d / "streetlights.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    with conn.cursor() as cur:                      # what only the live database knows
        problems = validate_against_db(cur, load_catalog(d))
    assert any("SRID is 4490" in p for p in problems)


def test_duplicate_ids_are_rejected(tmp_path):
    d = _copy_catalog(tmp_path)
    shutil.copy(d / "buildings.yaml", d / "buildings_copy.yaml")
    with pytest.raises(ConfigError):
        load_catalog(d)
