"""The upload panel's report at scale in headless Chromium: a delivery with a few thousand
findings (generated here: 3 660 buildings of the upload-test county 990003 whose 结构类型 holds
60 values no dictionary knows, 120 down to 2 rows each, and 100 negative floor counts) is shown
as the server grouped it (GET /api/ingest/{job}/groups): the verdict, what to fix first, the
biggest groups first a page at a time, links to the full reports. The page never requests the
full list of findings (report.json / report.csv). A group click zooms the map to its extent."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import httpx
import numpy as np
import psycopg2
import pytest
import testkit
import shapely

from cim.auth import Role, create_token
from tests.web.conftest import open_map, submit_upload

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
COUNTY = "990003"
VALUES = 60                                  # distinct unknown structure values: 60 Q22 groups
SIZES = [2 * (VALUES - k) for k in range(VALUES)]   # 120, 118, … 2 rows: 3 660 buildings
NEGATIVE = 100                               # rows with a negative floor count (F03)


def _delivery(folder: Path) -> list[str]:
    """Buildings in a grid over the south of the county (111.52–111.56 E, 27.18–27.20 N, away from
    the other upload tests' buildings), EPSG:4490."""
    folder.mkdir(parents=True, exist_ok=True)
    values = np.repeat([f"结构{k:02d}" for k in range(VALUES)], SIZES)
    n = len(values)
    i = np.arange(n)
    x, y = 111.5215 + (i % 122) * 0.0003, 27.1815 + (i // 122) * 0.0006
    floors = np.where((i % 36 == 0) & (i < 36 * NEGATIVE), -1, 3)
    frame = gpd.GeoDataFrame({"建筑编号": [f"WG-{k}" for k in i], "地上层数": floors, "结构类型": values},
                             geometry=shapely.box(x, y, x + 0.0002, y + 0.0002), crs="EPSG:4490")
    frame.to_file(folder / "JZ_buildings.shp", encoding="UTF-8")
    return sorted(str(p) for p in folder.iterdir() if p.stem == "JZ_buildings")


@pytest.fixture(scope="module")
def uploader(web_server) -> str:
    return testkit.token(web_server.db_url, Role.uploader, [COUNTY], name="web groups test")


def test_panel_shows_groups_biggest_first_and_never_the_full_list(page, web_server, uploader, artifacts, tmp_path):
    if not web_server.has("GET", "/api/ingest/{job_id}/groups"):
        pytest.skip("GET /api/ingest/{job}/groups is not in the API yet")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    open_map(page, web_server, view="13/27.2/111.54")
    submit_upload(page, uploader, COUNTY, _delivery(tmp_path / "many"))
    page.locator("#upload-groups").wait_for(timeout=180_000)
    assert page.locator("#upload-progress .job-state").get_attribute("data-state") == "rejected"
    page.locator("#panel").screenshot(path=str(artifacts / "web_upload_groups.png"))

    # the server's answer: the same groups the panel shows
    job_id = next(u.split("/api/ingest/")[1].split("/")[0] for u in requests if "/groups?" in u)
    api = httpx.get(f"{web_server.url}/api/ingest/{job_id}/groups", params={"limit": 500},
                    headers={"Authorization": f"Bearer {uploader}"}, timeout=30).json()
    total = api["groups_total"]
    assert total == VALUES + 1 == len(api["groups"])                 # 60 Q22 values and one F03 group
    assert sum(g["count"] for g in api["groups"]) == api["summary"]["findings_total"] == sum(SIZES) + NEGATIVE

    # verdict and what to fix first: the biggest error first
    assert page.locator("#upload-report p.verdict").get_attribute("data-accepted") == "false"
    first = page.locator("#upload-fix-first li").first
    assert first.get_attribute("data-rule") == "Q22" and first.get_attribute("data-count") == str(sum(SIZES))
    assert "结构00 ×120" in first.inner_text()

    # the first page of groups, biggest first, then the rest on demand
    rows = page.locator("#upload-groups tr.group")
    assert page.locator("#upload-groups").get_attribute("data-total") == str(total)
    assert rows.count() == 50
    counts = [int(c) for c in rows.evaluate_all("els => els.map((e) => e.dataset.count)")]
    assert counts == sorted(counts, reverse=True) and counts[0] == 120
    assert [g["count"] for g in api["groups"][:50]] == counts
    top = rows.first
    assert "结构00" in top.inner_text() and "Q22" in top.inner_text() and "…" in top.inner_text()
    page.locator("#upload-groups-more").click()
    page.wait_for_function(f"document.querySelectorAll('#upload-groups tr.group').length === {total}")
    assert page.locator("#upload-groups-more").is_hidden()

    # links to every full report; none of them was fetched, nor the full JSON
    formats = page.locator("#upload-report .links a").evaluate_all("els => els.map((e) => e.dataset.format)")
    assert set(formats) == {"json", "html", "xlsx", "csv"}
    assert [u for u in requests if "/report." in u] == []
    assert sum("/groups?" in u for u in requests) == 2

    # a group zooms the map to its extent
    ext = api["groups"][0]["extent"]
    top.click()
    page.wait_for_function("""([x0, y0, x1, y1]) => { const m = window.cim.map, c = m.getCenter(), e = 1e-6;
        return !m.isMoving() && c.lng >= x0 - e && c.lng <= x1 + e && c.lat >= y0 - e && c.lat <= y1 + e; }""",
                           arg=ext, timeout=20_000)
    (w, s), (e, n) = page.evaluate("window.cim.map.getBounds().toArray()")
    assert w <= ext[0] and e >= ext[2] and s <= ext[1] and n >= ext[3], ((w, s, e, n), ext)    # all of it in view
