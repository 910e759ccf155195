"""The demo county through the platform's real ingest path: the readers and validator find
exactly the planted defects, and `cim ingest` loads every file (re-ingest is a no-op)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cim import standards
from demo.generate import generate
from ingest.pipeline import read_deliveries, read_delivery
from ingest.validate import validate

COUNTY = "430703"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo_ingest")
    return out, generate(out, seed=11)


def _matches(finding, defect: dict) -> bool:
    """A finding reports a planted defect: same rule and layer, key naming the same feature."""
    if finding.rule_id != defect["rule_id"] or finding.key is None:
        return False
    parts = set(defect["key"].split("-"))
    return finding.key == defect["key"] or finding.key in parts


def test_validation_finds_exactly_the_planted_defects(demo):
    out, manifest = demo
    findings = []
    for name in manifest["ingest_order"]:
        if name.endswith(".tif"):
            continue
        delivery = read_delivery(out / name, county=COUNTY)
        shp = [b for b in delivery.batches if name.endswith(".zip")]
        assert all(b.encoding == "GBK" and b.source_crs == "EPSG:4546" for b in shp), name
        if name.endswith(".zip"):
            assert any(n.topic == "encoding" and "1252" in n.message_en for n in delivery.notes)
        findings += [(name, f) for f in validate(delivery).findings]
    assert [f for _, f in findings if f.severity.value == "error"] == []
    for d in manifest["defects"]:
        hits = [f for name, f in findings if name == d["file"] and _matches(f, d)]
        assert hits, f"planted {d['rule_id']} {d['key']} not reported"
    assert {f.rule_id for _, f in findings} == {d["rule_id"] for d in manifest["defects"]}


def test_pipe_networks_together_keep_their_horizontal_clearances(demo, monkeypatch):
    """Read as one delivery, the gas mains sit beside telecom ducts and lighting cables (1.5–2.5 m
    apart) and other pipes: no Q21 finding, although the rule examines those pairs."""
    out, _ = demo
    files = [out / n for n in ("排水管线.zip", "给水管线.zip", "燃气管线.zip", "路灯管线.zip", "通信管线成果表.xlsx")]
    delivery = read_deliveries(files, county=COUNTY)
    assert {b.network for b in delivery.batches if b.target == "pipe_segment"} == {"PS", "JS", "RQ", "DL", "TX"}
    assert [f for f in validate(delivery).findings if f.rule_id == "Q21"] == []
    # with a 3 m limit for 中压B gas beside telecom ducts (a bureau's own copy of the standards
    # tables, CIM_STANDARDS_DIR) the same pairs are reported
    tables = yaml.safe_load((standards.HERE / "clearances.yaml").read_text(encoding="utf-8"))
    tables["gas_horizontal"]["conduit"]["TX"]["ZB"] = 3.0
    wide = out / "standards-wide"
    wide.mkdir()
    (wide / "clearances.yaml").write_text(yaml.safe_dump(tables, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv(standards.ENV_VAR, str(wide))
    found = [f for f in validate(delivery).findings if f.rule_id == "Q21"]
    assert found and all(f.source_layer == "RQLINE" and "TX" in f.message_zh and 1.4 < f.value < 2.7 for f in found)


def test_error_variant_is_rejected_by_validation(tmp_path):
    manifest = generate(tmp_path, seed=11, defects="errors")
    report = validate(read_delivery(tmp_path / "给水管线.zip", county=COUNTY))
    errors = {f.rule_id for f in report.findings if f.severity.value == "error"}
    planted = {d["rule_id"] for d in manifest["defects"] if d["severity"] == "error" and d["file"] == "给水管线.zip"}
    assert report.has_errors and planted <= errors


def test_cim_ingest_loads_the_demo_county(cli, conn, tmp_path):
    out = tmp_path / "demo"
    cli("demo", "generate", "--out", str(out), "--seed", "11", check=True)
    manifest = json.loads((out / "demo_manifest.json").read_text(encoding="utf-8"))
    for name in manifest["ingest_order"]:
        res = cli("ingest", str(out / name), "--county", COUNTY)
        assert res.returncode == 0, f"{name}: {res.stdout}\n{res.stderr}"
    counts = {}
    layers = [name for f in manifest["files"] for name in f.get("layers", {})]
    with conn.cursor() as cur:
        for table in ("admin_area", "pipe_point", "pipe_segment", "building", "green_space", "streetlight"):
            cur.execute(f"SELECT count(*) FROM cim.{table} WHERE county_code = %s AND is_current "
                        "AND source_layer = ANY(%s)", (COUNTY, layers))
            counts[table] = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM cim.dem")
        dems = cur.fetchone()[0]
        cur.execute("SELECT DISTINCT node_type FROM cim.pipe_point WHERE is_current AND network = 'PS'")
        node_types = {r[0] for r in cur.fetchall()}
        cur.execute("SELECT min(ST_X(geom)), max(ST_X(geom)), min(ST_Y(geom)), max(ST_Y(geom)) "
                    "FROM cim.pipe_point WHERE county_code = %s AND is_current", (COUNTY,))
        x0, x1, y0, y1 = cur.fetchone()
    c = manifest["counts"]
    assert counts == {"admin_area": c["admin_areas"], "pipe_point": c["pipe_points"],
                      "pipe_segment": c["pipe_segments"], "building": c["buildings"],
                      "green_space": c["green_spaces"], "streetlight": c["streetlights"]}
    assert dems >= 1
    assert {"manhole", "inlet", "outfall", "pump_station"} <= node_types
    assert 111.64 < x0 < x1 < 111.74 and 29.0 < y0 < y1 < 29.08
    # the same bytes again: recognised by sha256, nothing loaded
    again = cli("ingest", str(out / "排水管线.zip"), "--county", COUNTY)
    assert again.returncode == 0 and "sha256" in again.stdout + again.stderr
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM cim.pipe_segment WHERE county_code = %s AND is_current", (COUNTY,))
        assert cur.fetchone()[0] == c["pipe_segments"]


def test_cim_ingest_refuses_the_error_variant(cli, conn, tmp_path):
    out = tmp_path / "rejected"
    cli("demo", "generate", "--out", str(out), "--seed", "12", "--defects", "errors", check=True)

    def js_rows() -> int:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM cim.pipe_segment WHERE network = 'JS' AND is_current")
            return cur.fetchone()[0]

    before = js_rows()
    res = cli("ingest", str(out / "给水管线.zip"), "--county", COUNTY, "--report", str(tmp_path / "r.json"))
    assert res.returncode == 1, res.stdout + res.stderr
    assert js_rows() == before
    rules = {f["rule_id"] for f in json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["findings"]}
    assert {"Q01", "Q05"} <= rules


def test_files_read_in_chunks_give_the_same_findings(demo, conn, db_url, tmp_path):
    """Each demo file checked in a dry run read in chunks of 300 rows (a chunk's optional text
    column can be empty throughout where the next holds values) gives the findings of the whole
    file read at once."""
    from cim.auth import CLI_PRINCIPAL
    from cim.settings import DatabaseSettings, IngestSettings, Settings
    from ingest import pipeline

    def run(path: Path, chunk_rows: int) -> list[dict]:
        settings = Settings(db=DatabaseSettings(database_url=db_url, home=tmp_path / "home"),
                            ingest=IngestSettings(archive_dir=tmp_path / "archive", chunk_rows=chunk_rows))
        outcome = pipeline.run(conn, [path], settings=settings, principal=CLI_PRINCIPAL, county=COUNTY, dry_run=True)
        return [f.to_dict() for f in outcome.report.findings]

    out, manifest = demo
    for name in manifest["ingest_order"]:
        if name.endswith(".zip"):
            assert run(out / name, 300) == run(out / name, 1_000_000), name
