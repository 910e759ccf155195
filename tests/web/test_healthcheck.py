"""The 城市体检 panel in the browser: runs computed on a real PostGIS, the panel over real HTTP.

A database of its own: the web-test county (seed.sql) split into three streets, with pre-2000
dwellings added between two runs (2024, 2025), so 需要进行节能改造的住宅数量 is known by hand per
street (2024 → 2025): 城关街道 (west half) 1 → 1, 南区街道 (south-east) 1 → 2, 北区街道 (north-east) 0 → 0.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx
import psycopg2
import pytest

from cim.auth import Principal
from cimplus.healthcheck.service import HealthCheck
from layers.catalog import load_catalog
from tests.web.conftest import HERE, WebServer, click_lonlat, open_map, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

IND = "energy_retrofit_homes"
W, SE, NE = "990002001", "990002002", "990002003"
# street → pre-2000 dwellings in the 2024 run and in the 2025 run
EXPECTED = {2024: {W: 1, SE: 1, NE: 0}, 2025: {W: 1, SE: 2, NE: 0}}
EXTRA = """
INSERT INTO cim.admin_area (code, parent_code, name, level, county_code, geom) VALUES
 ('990002002', '990002', '南区街道', 'street', '990002', ST_Multi(ST_MakeEnvelope(111.50, 27.18, 111.52, 27.20, 4490))),
 ('990002003', '990002', '北区街道', 'street', '990002', ST_Multi(ST_MakeEnvelope(111.50, 27.20, 111.52, 27.22, 4490)));
INSERT INTO cim.building (code, name, floors_above, height_m, build_year, use_code, county_code, geom) VALUES
 ('WH-1', '西街老宿舍', 5, 15.0, 1995, 'ZZ', '990002', ST_Multi(ST_MakeEnvelope(111.4900, 27.1900, 111.4904, 27.19036, 4490))),
 ('WH-2', '南街老宿舍', 4, 12.0, 1985, 'ZZ', '990002', ST_Multi(ST_MakeEnvelope(111.5100, 27.1900, 111.5104, 27.19036, 4490)));
"""
LATER = """
INSERT INTO cim.building (code, name, floors_above, height_m, build_year, use_code, county_code, geom) VALUES
 ('WH-3', '南街职工楼', 6, 18.0, 1992, 'ZZ', '990002', ST_Multi(ST_MakeEnvelope(111.5120, 27.1900, 111.5124, 27.19036, 4490)));
"""


def _exec(url: str, sql: str) -> None:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
        conn.commit()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def hc_server(make_database, web_dist):
    """The app over a database with two finished runs (2024 before WH-3 was recorded, 2025 after)."""
    url = make_database("cim_web_hc")
    _exec(url, (HERE / "seed.sql").read_text(encoding="utf-8") + EXTRA)
    hc = HealthCheck(load_catalog())
    who = Principal(name="test", role=None)
    runs = {}
    for year, later in ((2024, LATER), (2025, None)):
        conn = psycopg2.connect(url)
        try:
            runs[year] = hc.run(conn, county="990002", year=year, levels=["county", "street"], principal=who)["run_id"]
        finally:
            conn.close()
        if later:
            _exec(url, later)
    home = Path(tempfile.mkdtemp(prefix="cim-web-hc-", dir="/tmp"))
    server = WebServer(url, web_dist, home).start()
    server.runs = runs
    yield server
    server.stop()


def _open(page, server) -> dict:
    open_map(page, server)
    page.click("#btn-healthcheck")
    page.wait_for_function("(document.getElementById('panel-body').dataset.ready || '').length > 0", timeout=60_000)
    page.select_option("#hc-indicator", IND)
    page.wait_for_function(f"(document.getElementById('panel-body').dataset.ready || '').endsWith(':street:{IND}')")
    page.wait_for_function("document.querySelectorAll('#hc-table tbody tr').length === 3")
    # the choropleth drawn and the map at rest (the panel zooms to the areas once): all three streets
    # rendered (a street cut by tile edges is several rendered features, so count distinct codes),
    # and clicks by coordinates land where they are meant to
    page.wait_for_function("""() => { const m = window.cim.map; return !m.isMoving() && m.getLayer('hc-areas-fill')
        && new Set(m.queryRenderedFeatures({ layers: ['hc-areas-fill'] }).map((f) => f.properties.code)).size === 3; }""",
        timeout=60_000)
    wait_idle(page)
    return httpx.get(f"{server.url}/api/healthcheck/runs/{server.runs[2025]}",
                     params={"indicator": IND, "level": "street"}).json()


def test_choropleth_classes_chart_and_table(page, hc_server):
    answer = _open(page, hc_server)
    assert answer["run"]["year"] == 2025 and page.input_value("#hc-run") == str(hc_server.runs[2025])
    stored = {v["area_code"]: v for v in answer["values"]}
    assert {c: v["value"] for c, v in stored.items()} == EXPECTED[2025]
    # the threshold is "≤ 0 栋": the north-east street passes, the others fail
    assert {c: v["pass"] for c, v in stored.items()} == {W: False, SE: False, NE: True}

    drawn = page.evaluate("""() => Object.fromEntries(window.cim.map.getSource('hc-areas').serialize().data.features
        .map((f) => [f.properties.code, [f.properties.color, f.properties.verdict]]))""")
    assert drawn == {c: [v["color"], "pass" if v["pass"] else "fail"] for c, v in stored.items()}
    # the run's classes for this indicator and level, the legend lists them, every colour drawn is one of them
    classes = answer["run"]["classes"][IND]["street"]["classes"]
    legend = page.eval_on_selector_all("#hc-legend .legend-item", "els => els.map((e) => e.dataset.color)")
    assert legend == [c["color"] for c in classes]
    assert {v["color"] for v in stored.values()} <= set(legend)
    assert stored[NE]["color"] in {c["color"] for c in classes if c["pass"]}
    assert stored[SE]["color"] in {c["color"] for c in classes if c["pass"] is False}
    # rendered: the fill layer shows the three streets with these colours
    rendered = page.evaluate("""() => window.cim.map.queryRenderedFeatures({layers: ['hc-areas-fill']})
        .map((f) => [f.properties.code, f.layer.paint['fill-color']])""")
    assert {code for code, _ in rendered} == {W, SE, NE}

    # ranked best first (fewer is better): 北区 0, then 城关 1, 南区 2; last year's values and the change
    rows = page.eval_on_selector_all("#hc-table tbody tr", "els => els.map((e) => [e.dataset.code, "
                                     "[...e.cells].map((c) => c.textContent)])")
    assert [r[0] for r in rows] == [NE, W, SE]
    by_code = dict(rows)
    assert by_code[SE][2].startswith("2") and by_code[SE][3] == "不达标" and by_code[SE][4] == "1"
    assert by_code[SE][5].startswith("+1") and "变差" in by_code[SE][5]
    assert by_code[NE][3] == "达标"

    # charts: ECharts drew the bars (one per area) and the trend over the two years
    page.wait_for_function("document.getElementById('hc-chart').dataset.bars === '3'")
    page.wait_for_function("document.getElementById('hc-trend').dataset.years === '2024,2025'")
    assert page.locator("#hc-chart canvas").count() == 1 and page.locator("#hc-trend canvas").count() == 1
    bars = page.evaluate("""async () => { const ec = document.getElementById('hc-chart');
        const canvas = ec.querySelector('canvas'); const ctx = canvas.getContext('2d');
        const d = ctx.getImageData(0, 0, canvas.width, canvas.height).data; let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && !(d[i] > 240 && d[i + 1] > 240 && d[i + 2] > 240)) n++;
        return n; }""")
    assert bars > 500
    # the report links point at this run's files, and they are served
    href = page.get_attribute("#hc-report-xlsx", "href")
    assert href == f"/api/healthcheck/runs/{hc_server.runs[2025]}/report.xlsx"
    got = httpx.get(hc_server.url + href)
    assert got.status_code == 200 and got.content[:2] == b"PK"
    assert not page.errors, page.errors


def test_click_area_shows_values_and_features(page, hc_server):
    _open(page, hc_server)
    click_lonlat(page, 111.5150, 27.1850)          # inside 南区街道, away from the buildings
    page.wait_for_selector("#hc-area-value")
    assert "990002002" in page.text_content("#hc-detail h3")
    value = page.text_content("#hc-area-value")
    assert "2 栋" in value and "不达标" in value
    assert page.locator(".identify-popup").count() == 0            # identify waits while the panel is open
    chosen = page.eval_on_selector("#hc-detail tr.chosen", "e => [...e.cells].map((c) => c.textContent)")
    assert chosen[1] == "2 栋" and chosen[2] == "<= 0" and chosen[4] == "1"
    # the trend follows the chosen area: one line
    page.wait_for_function("document.getElementById('hc-trend').dataset.lines === '1'")

    page.click("#hc-show-features")
    page.wait_for_selector("#hc-features-count")
    assert page.get_attribute("#hc-features-count", "data-n") == "2"
    shown = page.evaluate("""() => window.cim.map.getSource('cim-highlight').serialize().data.features
        .map((f) => f.properties.code).sort()""")
    assert shown == ["WH-2", "WH-3"]
    assert sorted(page.eval_on_selector_all(".hc-feature-list li", "els => els.map((e) => e.textContent)")) == ["WH-2", "WH-3"]

    # against the 2024 run explicitly: the same change
    page.select_option("#hc-compare", str(hc_server.runs[2024]))
    page.wait_for_function(f"document.querySelector('#hc-table')?.parentElement.dataset.compareRun === '{hc_server.runs[2024]}'")
    row = page.eval_on_selector(f"#hc-table tr[data-code='{SE}']", "e => [...e.cells].map((c) => c.textContent)")
    assert row[4] == "1" and row[5].startswith("+1")
    assert not page.errors, page.errors


def test_panel_without_runs_says_so(page, web_server):
    """The shared web-test database has no run: the panel says how to make one."""
    open_map(page, web_server)
    page.click("#btn-healthcheck")
    page.wait_for_selector(".hc-empty")
    assert "cim healthcheck run" in page.text_content(".hc-empty")
