"""County upload in the browser: token, files, profile, dry run, progress, report, confirm.

The deliveries are small streetlight shapefiles (EPSG:4490) written here with geopandas into
the empty upload-test county 990003, so the other browser tests' data stay as seeded.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import psycopg2
import pytest
import testkit
from shapely.geometry import Point

from cim.auth import Role, create_token
from tests.web.conftest import open_map, submit_upload

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
COUNTY = "990003"


def _delivery(folder: Path, rows: list[dict]) -> list[str]:
    """A streetlight shapefile (all its parts) in CGCS2000 lon/lat; returns the part paths."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = gpd.GeoDataFrame([{k: v for k, v in r.items() if k != "lonlat"} for r in rows],
                             geometry=[Point(*r["lonlat"]) for r in rows], crs="EPSG:4490")
    frame.to_file(folder / "LUDENG.shp", encoding="UTF-8")
    return sorted(str(p) for p in folder.iterdir() if p.stem == "LUDENG")


@pytest.fixture(scope="module")
def uploader(web_server) -> str:
    return testkit.token(web_server.db_url, Role.uploader, [COUNTY], name="web upload test")


def _current_lights(db_url: str) -> list[str]:
    conn = psycopg2.connect(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pole_no FROM cim.streetlight WHERE county_code = %s AND is_current ORDER BY pole_no",
                        (COUNTY,))
            return [r[0] for r in cur.fetchall()]
    finally:
        conn.close()


def _upload(page, token: str, files: list[str], profile: str | None) -> None:
    submit_upload(page, token, COUNTY, files, profile)


def test_upload_dry_run_then_confirm(page, web_server, uploader, artifacts, tmp_path):
    if not web_server.has("POST", "/api/ingest"):
        pytest.skip("POST /api/ingest is not in the API yet")
    files = _delivery(tmp_path / "ok", [
        {"DGBH": f"UL-00{i}", "DLMC": "东环路", "GG": 10.0, "lonlat": (111.530 + i * 0.0005, 27.2005)} for i in range(1, 4)])
    open_map(page, web_server, view="16/27.2/111.53")
    _upload(page, uploader, files, "streetlight")
    state = page.locator("#upload-progress .job-state")
    page.wait_for_function("""() => { const s = document.querySelector('#upload-progress .job-state');
        return s && ['awaiting_confirmation', 'rejected', 'failed', 'done'].includes(s.dataset.state); }""", timeout=120_000)
    page.locator("#upload-report h3").wait_for(timeout=20_000)
    page.locator("#panel").screenshot(path=str(artifacts / "web_upload_dry_run.png"))
    assert state.get_attribute("data-state") == "awaiting_confirmation", page.locator("#upload-progress").inner_text()
    assert _current_lights(web_server.db_url) == []  # a dry run writes no features
    # the report links are offered; confirm loads the delivery
    assert page.locator("#upload-report .links a").count() >= 1
    page.locator("#upload-confirm").click()
    page.wait_for_function("document.querySelector('#upload-progress .job-state')?.dataset.state === 'done'", timeout=120_000)
    page.locator("#panel").screenshot(path=str(artifacts / "web_upload_done.png"))
    assert _current_lights(web_server.db_url) == ["UL-001", "UL-002", "UL-003"]
    # the token stays in this browser session only
    assert page.evaluate("sessionStorage.getItem('cim.token')") == uploader
    assert page.evaluate("localStorage.getItem('cim.token')") is None


def test_upload_report_groups_findings_and_zooms_to_them(page, web_server, uploader, artifacts, tmp_path):
    if not web_server.has("POST", "/api/ingest"):
        pytest.skip("POST /api/ingest is not in the API yet")
    files = _delivery(tmp_path / "bad", [
        {"DGBH": "UL-101", "DLMC": "东环路", "GG": 10.0, "lonlat": (111.5400, 27.2100)},
        {"DGBH": None, "DLMC": "东环路", "GG": 10.0, "lonlat": (111.5410, 27.2110)},
        {"DGBH": "UL-103", "DLMC": "东环路", "GG": 10.0, "lonlat": (111.7000, 27.3000)},  # outside the county
    ])
    open_map(page, web_server, view="14/27.2/111.5")
    _upload(page, uploader, files, None)  # profile auto-detected
    page.locator("#upload-groups tr.group").first.wait_for(timeout=120_000)
    page.locator("#panel").screenshot(path=str(artifacts / "web_upload_report.png"))
    groups = page.locator("#upload-groups tr.group").evaluate_all(
        "els => els.map((e) => [e.dataset.rule, e.dataset.layer, e.cells[3].textContent, e.cells[4].textContent])")
    assert len(groups) == len({tuple(g) for g in groups}) >= 1  # one row per rule × layer × field × value
    assert page.locator("#upload-fix-first li").count() >= 1   # rejected: what to fix first
    page.locator("#upload-groups tr.zoomable").first.click()
    page.wait_for_function("!window.cim.map.isMoving() && window.cim.map.getZoom() >= 17.9", timeout=20_000)
    c = page.evaluate("window.cim.map.getCenter().toArray()")
    assert any(abs(c[0] - x) < 1e-4 and abs(c[1] - y) < 1e-4 for x, y in [(111.5410, 27.2110), (111.7, 27.3)]), c


def test_upload_cancel_writes_nothing(page, web_server, uploader, tmp_path):
    if not web_server.has("POST", "/api/ingest/{job_id}/cancel"):
        pytest.skip("POST /api/ingest/{job}/cancel is not in the API yet")
    before = _current_lights(web_server.db_url)
    files = _delivery(tmp_path / "cancel", [
        {"DGBH": "UC-001", "DLMC": "北环路", "GG": 9.0, "lonlat": (111.5450, 27.2150)}])
    open_map(page, web_server, view="15/27.2/111.54")
    _upload(page, uploader, files, "streetlight")
    page.locator("#upload-cancel").wait_for(timeout=120_000)
    page.locator("#upload-cancel").click()
    page.wait_for_function("document.querySelector('#upload-progress .job-state')?.dataset.state === 'cancelled'",
                           timeout=60_000)
    assert page.locator("#upload-confirm").count() == 0
    assert _current_lights(web_server.db_url) == before
