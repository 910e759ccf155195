"""Third-party datasets no profile was written for (generated here, small and realistic): a US
county stormwater inventory in two field-name styles (US_NODE/DS_NODE, INVERT_UP/INVERT_DN,
DIAMETER in a North Carolina State Plane CRS; UPSTRUCT/DNSTRUCT, UPINVERT/DNINVERT, SIZE1 in a
Texas one; feet and inches, RCP/PVC, 'Curb Inlet'), and a national boundary dataset with
省名/省代码, 市名/市代码, 县名/县代码 and towns with NAME/PAC. With the closest profile named by
``--profile`` and without, neither is refused: the report shows per layer and field the proposals
with their confidence and reason; after the user's mappings (``--map`` / ``--map-value`` or the
upload API) they validate and load, and the mapping saved for the county keeps fields that mean
different things in different layers apart."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx
import psycopg2
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: sibling helpers
from apikit import LiveServer, token  # noqa: E402
from fixtures import US_STORM_STYLES, write_national_boundaries, write_us_stormwater  # noqa: E402
from loadkit import county_code  # noqa: E402

from cim.auth import Role  # noqa: E402
from ingest.mapping import county as county_mapping  # noqa: E402
from ingest.pipeline import read_delivery  # noqa: E402
from ingest.report import report_dict  # noqa: E402
from ingest.validate import validate  # noqa: E402


def _rows(batch) -> dict[str, dict]:
    return {r["source_field"]: r for r in batch.mapping.rows()}


@pytest.mark.parametrize("profile", [None, "us-stormwater"])
@pytest.mark.parametrize("style", ["node", "struct"])
def test_us_stormwater_inventory_gets_proposals_not_a_refusal(tmp_path, style, profile):
    st = US_STORM_STYLES[style]
    d = read_delivery(write_us_stormwater(tmp_path / style, style), county="430702", profile=profile)
    by = {b.source_layer: b for b in d.batches}
    assert set(by) == {"Inlets", "Conduits"}
    inlets, conduits = by["Inlets"], by["Conduits"]
    assert (inlets.target, conduits.target) == ("pipe_point", "pipe_segment")
    assert inlets.profile_id == conduits.profile_id == "us-stormwater"
    assert inlets.network == conduits.network == "PS" and inlets.source_crs == f"EPSG:{st['crs']}"

    rows = _rows(conduits)
    expected = {"FACILITYID": "code", st["start"]: "start_exp_no", st["end"]: "end_exp_no", st["inv_up"]: "start_z",
                st["inv_dn"]: "end_z", st["size"]: "diameter_mm", "MATERIAL": "material"}
    assert {k: rows[k]["target"] for k in expected} == expected
    proposed = {k: r for k, r in rows.items() if r["how"] == "proposed"}
    assert st["inv_dn"] in proposed and all(0.6 <= r["confidence"] < 1 and r["reason"] for r in proposed.values())
    assert "end+invert" in proposed[st["inv_dn"]]["reason"]                  # not US_INVERT, however alike
    assert proposed[st["inv_dn"]]["samples"] and rows["MATERIAL"]["how"] == "alias"
    # inches and feet as the profile declares them
    assert sorted(set(conduits.frame["diameter_mm"].round(1))) == [381.0, 457.2, 609.6]
    assert conduits.frame["start_z"].between(90, 100).all() and conduits.frame["end_z"].between(90, 100).all()

    irows = _rows(inlets)
    assert (irows["FACILITYID"]["target"], irows["RIMELEV"]["target"]) == ("exp_no", "ground_z")
    assert (irows["INLETTYPE"]["target"], irows["INLETTYPE"]["how"]) == ("appurtenance", "proposed")
    assert "us_structure" in irows["INLETTYPE"]["reason"] and irows["OWNEDBY"]["target"] == "owner"
    assert set(inlets.frame["appurtenance"]) == {"雨水箅"}

    report = validate(d)
    errors = {(f.rule_id, f.value) for f in report.findings if f.severity.value == "error"}
    assert errors == {("Q22", "CPP")}                           # the one material the profile does not list
    layer = next(x for x in report_dict(report)["summary"]["layers"] if x["source_layer"] == "Conduits")
    assert {m["how"] for m in layer["mapping"]} >= {"alias", "proposed"}
    near = [v for v in layer["value_mappings"] if v["value"] == "CPP"]
    assert near and near[0]["how"] == "proposed" and "未采用" in near[0]["reason"]   # shown, never applied


def test_us_inventory_with_a_chinese_profile_named_is_read_with_a_units_note(tmp_path):
    d = read_delivery(write_us_stormwater(tmp_path / "dc", "node"), county="430702", profile="drainage-census")
    by = {b.source_layer: b for b in d.batches}
    assert by["Inlets"].profile_id == "drainage-census" and by["Conduits"].profile_id == "us-stormwater"
    assert _rows(by["Inlets"])["RIMELEV"]["target"] == "ground_z"
    feet = [n for n in d.notes if n.topic == "units"]
    assert len(feet) == 1 and "RIMELEV→ground_z" in feet[0].message_zh and "us-stormwater" in feet[0].message_en


@pytest.mark.parametrize(("style", "profile"), [("node", None), ("struct", "us-stormwater")])
def test_us_inventory_loads_after_the_users_value_mapping(cli, conn, tmp_path, style, profile):
    county = county_code()
    path = write_us_stormwater(tmp_path / style, style)
    args = ["ingest", str(path), "--county", county, *(["--profile", profile] if profile else [])]
    res = cli(*args, "--dry-run", "--report", str(tmp_path / "r.json"))
    assert res.returncode == 1, res.stdout + res.stderr                     # rejected, not refused (2)
    data = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert data["summary"]["fix_first"][0]["rule_id"] == "Q22"
    assert data["summary"]["fix_first"][0]["top_values"][0]["value"] == "CPP"

    res = cli(*args, "--map-value", "material:CPP=PE", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), count(DISTINCT appurtenance), min(ground_z) FROM cim.pipe_point "
                    "WHERE county_code = %s AND is_current AND network = 'PS'", (county,))
        n, kinds, ground = cur.fetchone()
        assert (n, kinds) == (18, 1) and 90 < ground < 100
        cur.execute("SELECT material, count(*), count(start_point_id), count(end_point_id), min(diameter_mm) "
                    "FROM cim.pipe_segment WHERE county_code = %s AND is_current GROUP BY 1 ORDER BY 1", (county,))
        by_material = {r[0]: r[1:] for r in cur.fetchall()}
    assert sum(v[0] for v in by_material.values()) == 15 and by_material["PE"][0] == 3
    assert all(v[0] == v[1] == v[2] for v in by_material.values())          # both ends resolved to inlets
    assert min(v[3] for v in by_material.values()) == pytest.approx(381.0)


@pytest.mark.parametrize("profile", [None, "admin-area"])
def test_national_boundaries_get_levels_codes_and_parents(tmp_path, profile):
    d = read_delivery(write_national_boundaries(tmp_path / "b"), county="430702", profile=profile)
    by = {b.source_layer: b for b in d.batches}
    assert set(by) == {"市级行政区", "县级行政区", "乡镇街道"} and {b.target for b in d.batches} == {"admin_area"}
    city, county, town = by["市级行政区"], by["县级行政区"], by["乡镇街道"]
    assert city.mapping.decided_by == "proposed" and "市级" in city.mapping.reason
    rows = _rows(city)
    assert {k: (rows[k]["target"], rows[k]["how"]) for k in ("市代码", "市名", "省代码", "省名")} == {
        "市代码": ("code", "proposed"), "市名": ("name", "proposed"), "省代码": ("parent_code", "proposed"),
        "省名": (None, "unmapped")}
    assert all(rows[k]["confidence"] >= 0.6 and rows[k]["reason"] for k in ("市代码", "市名", "省代码"))
    assert list(city.frame["code"]) == ["430100", "430700"] and set(city.frame["level"]) == {"city"}
    assert set(city.frame["parent_code"]) == {"430000"}
    rows = _rows(county)
    assert {k: rows[k]["target"] for k in ("县代码", "县名", "市代码", "省代码")} == {
        "县代码": "code", "县名": "name", "市代码": "parent_code", "省代码": None}
    assert list(county.frame["parent_code"]) == ["430100", "430100", "430700", "430700"]
    assert set(county.frame["level"]) == {"county"} and list(county.frame["code"])[:2] == ["430102", "430103"]
    assert _rows(town)["PAC"]["how"] == "unmapped" and set(town.frame["level"]) == {"street"}
    report = validate(d)
    assert {(f.rule_id, f.source_layer) for f in report.findings if f.severity.value == "error"} == {
        ("Q23", "乡镇街道")}                                          # the towns' code: the user must say


@pytest.fixture(scope="module")
def api(db_url, tmp_path_factory):
    county = county_code()
    conn = psycopg2.connect(db_url)
    secret = token(conn, Role.uploader, [county])
    conn.close()
    srv = LiveServer(db_url, tmp_path_factory.mktemp("cim-home-third-party"), max_upload_mb=16)
    yield {"url": srv.url, "db_url": db_url, "county": county, "hdr": {"Authorization": f"Bearer {secret}"}}
    srv.stop()


def _wait(api, job_id) -> dict:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        job = httpx.get(f"{api['url']}/api/ingest/{job_id}", headers=api["hdr"], timeout=30).json()
        if job["state"] in ("done", "rejected", "failed", "cancelled", "awaiting_confirmation"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def _layers(api, job) -> dict[str, dict[str, dict]]:
    rep = httpx.get(api["url"] + f"/api/ingest/{job['job_id']}/groups", headers=api["hdr"]).json()
    return {lay["source_layer"]: {m["source_field"]: m for m in lay["mapping"]} for lay in rep["summary"]["layers"]}


def test_national_boundaries_load_over_the_api_and_the_county_keeps_per_layer_mappings(api, tmp_path):
    path = write_national_boundaries(tmp_path / "nb")
    res = httpx.post(api["url"] + "/api/ingest", files={"file": (path.name, path.read_bytes())},
                     data={"county": api["county"], "dry_run": "true"}, headers=api["hdr"])
    job_id = res.json()["job_id"]
    job = _wait(api, job_id)
    assert job["state"] == "rejected", job                                 # the towns have no code yet
    res = httpx.post(f"{api['url']}/api/ingest/{job_id}/recheck", headers=api["hdr"],
                     content=json.dumps({"fields": {"PAC": "code"}}))
    assert res.status_code == 202, res.text
    job = _wait(api, job_id)
    assert job["state"] == "awaiting_confirmation", job
    assert _layers(api, job)["乡镇街道"]["PAC"]["how"] == "user"
    assert httpx.post(f"{api['url']}/api/ingest/{job_id}/confirm", headers=api["hdr"]).status_code == 202
    assert _wait(api, job_id)["state"] == "done"

    conn = psycopg2.connect(api["db_url"])
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT level, count(*), min(code), min(parent_code) FROM cim.admin_area "
                        "WHERE county_code = %s AND is_current GROUP BY 1 ORDER BY 1", (api["county"],))
            assert cur.fetchall() == [("city", 2, "430100", "430000"), ("county", 4, "430102", "430100"),
                                      ("street", 8, "430102001", None)]
            cur.execute("SELECT mapping FROM cim.county_mapping WHERE county_code = %s ORDER BY version DESC LIMIT 1",
                        (api["county"],))
            saved = cur.fetchone()[0]["fields"]
    finally:
        conn.close()
    # 市代码 is the city layer's code and the county layer's parent code: kept per layer
    assert saved["市级行政区::市代码"] == "code" and saved["县级行政区::市代码"] == "parent_code"
    assert saved["PAC"] == "code" and saved["县代码"] == "code" and saved["县名"] == "name"
    assert saved["市级行政区::市名"] == "name" and "市名" not in saved     # 市名 stays unmapped in the county layer

    # the county's next delivery of the dataset maps every layer as confirmed, without a mapping
    res = httpx.post(api["url"] + "/api/ingest", files={"file": ("nb2.zip", path.read_bytes())},
                     data={"county": api["county"], "dry_run": "true"}, headers=api["hdr"])
    job = _wait(api, res.json()["job_id"])
    layers = _layers(api, job)
    assert (layers["市级行政区"]["市代码"]["target"], layers["市级行政区"]["市代码"]["how"]) == ("code", "user")
    assert layers["县级行政区"]["市代码"]["target"] == "parent_code" and layers["乡镇街道"]["PAC"]["target"] == "code"
    assert county_mapping.from_report({"summary": {"layers": [
        {"source_layer": name, "mapping": list(rows.values())} for name, rows in layers.items()]}}).fields == saved
