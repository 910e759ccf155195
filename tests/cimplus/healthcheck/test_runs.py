"""Runs of the fixture county (conftest.py): immutability, this year against last year, the
features behind a value, the report files opened and read back, and the HTTP interface (a run as
a background task, its values, the report, the latest values as the OGC layer read by GDAL)."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import psycopg2
import pytest
from openpyxl import load_workbook

from cim import auth
from cim.auth import Role
from cim.settings import AuthSettings, DatabaseSettings
from cimplus.healthcheck.service import HealthCheck
from layers.catalog import load_catalog
from tests.cimplus.healthcheck.conftest import COUNTY, K1, K2, K3, S1, _values


@pytest.mark.parametrize("sql", [
    "UPDATE cim.healthcheck_value SET value = 99 WHERE run_id = %s",
    "DELETE FROM cim.healthcheck_value WHERE run_id = %s",
    "UPDATE cim.healthcheck_run SET year = 2030 WHERE id = %s",
    "UPDATE cim.healthcheck_run SET state = 'failed' WHERE id = %s",
    "DELETE FROM cim.healthcheck_run WHERE id = %s",
    "INSERT INTO cim.healthcheck_value (run_id, indicator, area_code, area_name, area_level, county_code, state, "
    "value) VALUES (%s, 'x', '430799', 'x', 'county', '430799', 'computed', 1)",
])
def test_a_finished_run_is_immutable(hc_url, run_2025, sql):
    conn = psycopg2.connect(hc_url)
    try:
        with conn.cursor() as cur, pytest.raises(psycopg2.Error) as err:
            cur.execute(sql, (run_2025["run_id"],))
        assert "城市体检" in str(err.value)
    finally:
        conn.rollback()
        conn.close()


def test_compare_with_last_year(hc_cli, run_2024, run_2025):
    res = hc_cli("healthcheck", "compare", str(run_2025["run_id"]), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["previous_run_id"] == run_2024["run_id"] and out["year"] == 2025 and out["previous_year"] == 2024
    rows = {(r["indicator"], r["area_code"]): r for r in out["rows"]}
    same = rows[("structural_hazard_homes", K1)]
    assert (same["value"], same["previous_value"], same["change"], same["trend"]) == (2, 2, 0, "unchanged")
    # needs the 2025 inputs: not computed in 2024, so not comparable
    assert rows[("green_space_ratio", K1)]["previous_value"] is None
    assert rows[("green_space_ratio", K1)]["trend"] == "not_comparable"
    # the yearly target moved (80 % → 100 %) but the values did not
    assert rows[("gas_renewal_completion", K3)]["trend"] == "unchanged"
    # the values answer carries last year's value too
    assert _values(hc_cli, run_2025["run_id"])[("structural_hazard_homes", K1)]["previous"]["value"] == 2


def test_features_behind_a_value(hc_url, run_2025):
    hc = HealthCheck(load_catalog())
    conn = psycopg2.connect(hc_url)
    try:
        got = hc.features(conn, run_2025["run_id"], "structural_hazard_homes", K1)
        assert got["layer"] == "buildings" and got["count"] == 2 and not got["data_changed"]
        assert sorted(f["properties"]["code"] for f in got["features"]["features"]) == ["B1", "B2"]
        none = hc.features(conn, run_2025["run_id"], "structural_hazard_homes", K2)
        assert none["count"] == 0 and none["features"]["features"] == []
    finally:
        conn.close()


def test_report_files(hc_cli, run_2025, tmp_path):
    xlsx = tmp_path / "体检报告.xlsx"
    res = hc_cli("healthcheck", "report", str(run_2025["run_id"]), "--out", str(xlsx))
    assert res.returncode == 0, res.stderr
    wb = load_workbook(xlsx)
    assert wb.sheetnames[:4] == ["说明", "县（区）", "街道（乡镇）", "社区（村）"]
    ws = wb["社区（村）"]
    header = [c.value for c in ws[4]]
    col = {code: header.index(code) + 1 for code in (K1, K2, K3)}
    row = {ws.cell(r, 1).value: r for r in range(5, ws.max_row + 1)}
    r = row["structural_hazard_homes"]
    assert ws.cell(r, col[K1]).value == 2 and ws.cell(r, col[K1]).fill.fgColor.rgb.endswith("FFC7CE")   # failing
    assert ws.cell(r, col[K2]).value == 0 and ws.cell(r, col[K2]).fill.fgColor.rgb.endswith("C6EFCE")   # passing
    assert ws.cell(r, 9).value == 2                                                                     # failing areas
    nc = ws.cell(row["park_area_per_capita"], col[K3])
    assert nc.value == "未计算" and "常住人口" in nc.comment.text
    html = tmp_path / "体检报告.html"
    assert hc_cli("healthcheck", "report", str(run_2025["run_id"]), "--out", str(html)).returncode == 0
    text = html.read_text(encoding="utf-8")
    assert "存在结构安全隐患的住宅数量" in text and "<svg" in text and "桃园社区" in text


def test_http_run_report_and_ogc_layer(live_app, hc_url, run_2025, tmp_path):
    conn = psycopg2.connect(hc_url)
    with conn.cursor() as cur:
        admin = auth.create_token(cur, name="hc-admin", role=Role.admin).secret
    conn.commit()
    conn.close()
    base = live_app(auth=AuthSettings(public_read=True), db=DatabaseSettings(database_url=hc_url))
    bearer = {"Authorization": f"Bearer {admin}"}
    assert httpx.post(f"{base}/api/healthcheck/runs", json={"county": COUNTY}).status_code == 401
    bad = httpx.post(f"{base}/api/healthcheck/runs", json={"county": COUNTY, "levels": ["city"]}, headers=bearer)
    assert bad.status_code == 400 and bad.json()["message_zh"]
    started = httpx.post(f"{base}/api/healthcheck/runs", json={"county": COUNTY, "year": 2025, "levels": ["street"]},
                         headers=bearer)
    assert started.status_code == 202, started.text
    task = started.json()["task_id"]
    deadline = time.monotonic() + 240
    row = httpx.get(f"{base}/api/tasks/{task}").json()
    while row["state"] not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.5)
        row = httpx.get(f"{base}/api/tasks/{task}").json()
    assert row["state"] == "done", row
    run_id = row["result"]["run_id"]
    listed = httpx.get(f"{base}/api/healthcheck/runs", params={"task_id": task}).json()
    assert [r["id"] for r in listed] == [run_id] and listed[0]["levels"] == ["street"]
    got = httpx.get(f"{base}/api/healthcheck/runs/{run_id}", params={"indicator": "structural_hazard_homes"}).json()
    assert {v["area_code"]: v["value"] for v in got["values"]} == {S1: 2, "430799002": 1}
    assert all(v["previous"]["value"] is not None for v in got["values"])     # against 2024
    assert httpx.get(f"{base}/api/healthcheck/runs/{run_id}", params={"level": "city"}).status_code == 400
    assert httpx.get(f"{base}/api/healthcheck/runs/999999").status_code == 404
    report = httpx.get(f"{base}/api/healthcheck/runs/{run_id}/report.xlsx")
    assert report.status_code == 200 and report.content[:2] == b"PK"
    assert "attachment" in report.headers["content-disposition"]
    page = httpx.get(f"{base}/api/healthcheck/runs/{run_id}/report.html")
    assert page.status_code == 200 and "<svg" in page.text
    classes = httpx.get(f"{base}/api/healthcheck/runs/{run_id}/classes",
                        params={"indicator": "structural_hazard_homes", "level": "street"}).json()
    assert classes["structural_hazard_homes"]["street"]["classes"]

    # the latest values per area as a catalogue layer, read with GDAL's OGC API Features driver
    # (ogr2ogr in a process of its own): streets from the HTTP run, the county and communities from run_2025
    out = tmp_path / "healthcheck.geojson"
    res = subprocess.run(["ogr2ogr", "-f", "GeoJSON", str(out), f"OAPIF:{base}/ogc", "healthcheck"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    feats = json.loads(out.read_text(encoding="utf-8"))["features"]
    rows = {(f["properties"]["indicator"], f["properties"]["area_code"]): f["properties"] for f in feats}
    assert len(feats) == 6 * 24                       # county, two streets, three communities
    assert rows[("structural_hazard_homes", S1)]["run_id"] == run_id
    assert rows[("structural_hazard_homes", K1)]["run_id"] == run_2025["run_id"]
    assert rows[("structural_hazard_homes", K1)]["value"] == 2
    assert rows[("structural_hazard_homes", K1)]["pass_state"] == "fail"
    assert rows[("structural_hazard_homes", K2)]["pass_state"] == "pass"
    assert all(f["geometry"]["type"] == "MultiPolygon" for f in feats)
