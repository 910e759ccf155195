"""Map tools in the browser: geodesic measures, area statistics, pipe cross-section, GeoJSON export."""

from __future__ import annotations

import json
import re

import pytest
from pyproj import Geod

from tests.web.conftest import click_lonlat, open_map, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
CGCS2000 = Geod(a=6378137.0, f=1 / 298.257222101)
VIEW = "16/27.2/111.5"  # the result panel takes 420 px: zoom 16 keeps the whole test street in view


def _sketch(page, points: list[tuple[float, float]]) -> None:
    # measure and statistics open the side panel, which narrows the map: let MapLibre take the
    # new size before projecting the points to pixels
    page.wait_for_timeout(100)
    page.wait_for_function("""() => { const m = window.cim.map;
        return Math.abs(m.getCanvas().clientWidth - m.getContainer().clientWidth) < 1; }""")
    wait_idle(page)
    for lon, lat in points[:-1]:
        click_lonlat(page, lon, lat)
        page.wait_for_timeout(250)
    click_lonlat(page, *points[-1], double=True)


def _sketched_coords(page) -> list[list[float]]:
    """Vertices of the finished sketch, as the map holds them."""
    data = page.evaluate("window.cim.map.getSource('cim-draw').serialize().data")
    geom = next(f["geometry"] for f in data["features"] if f["geometry"]["type"] != "Point")
    return geom["coordinates"] if geom["type"] == "LineString" else geom["coordinates"][0]


def _number(text: str) -> float:
    return float(re.search(r"[\d,]+(?:\.\d+)?", text).group(0).replace(",", ""))


def test_measure_distance_and_area_are_geodesic(page, web_server, artifacts):
    open_map(page, web_server, view=VIEW)
    page.locator('#tools [data-tool="distance"]').click()
    _sketch(page, [(111.4980, 27.2003), (111.5000, 27.1998), (111.5020, 27.2003)])
    text = page.locator("#measure-result").inner_text()
    coords = _sketched_coords(page)
    expected = sum(CGCS2000.inv(*coords[i - 1], *coords[i])[2] for i in range(1, len(coords)))
    assert "距离" in text and "米" in text
    assert abs(_number(text) - expected) < 0.02, (text, expected)

    page.locator('#tools [data-tool="area"]').click()
    _sketch(page, [(111.4980, 27.2012), (111.5020, 27.2012), (111.5020, 27.1990), (111.4980, 27.1990)])
    text = page.locator("#measure-result").inner_text()
    ring = _sketched_coords(page)
    area, _ = CGCS2000.polygon_area_perimeter([c[0] for c in ring[:-1]], [c[1] for c in ring[:-1]])
    page.screenshot(path=str(artifacts / "web_measure_area.png"))
    assert "面积" in text
    shown = _number(text)
    # shown in ha when ≥ 1 ha (three decimals)
    value_m2 = shown * 1e4 if "公顷" in text else shown
    assert abs(value_m2 - abs(area)) <= max(0.1, abs(area) * 1e-5) + (5 if "公顷" in text else 0), (text, area)


def test_statistics_of_a_sketched_polygon(page, web_server, artifacts):
    if not web_server.has("POST", "/api/query/stats"):
        pytest.skip("POST /api/query/stats is not in the API yet")
    open_map(page, web_server, view=VIEW)
    page.locator('#tools [data-tool="stats"]').click()
    _sketch(page, [(111.4970, 27.2014), (111.5026, 27.2014), (111.5026, 27.1996), (111.4970, 27.1996)])
    table = page.locator("#stats-counts")
    table.wait_for(timeout=20_000)
    page.screenshot(path=str(artifacts / "web_stats.png"))
    rows = dict(zip(table.locator("th").all_inner_texts(), table.locator("td").all_inner_texts(), strict=True))
    assert len(_sketched_coords(page)) == 5, _sketched_coords(page)  # 4 vertices, closed
    assert rows.get("房屋建筑") == "4", rows
    assert rows.get("路灯") == "5", rows
    body = page.locator("#panel-body").inner_text()
    assert "管线长度（按类别）" in body and "给水" in body and "住宅" in body


def test_cross_section_draws_the_pipes_to_scale(page, web_server, artifacts):
    if not web_server.has("POST", "/api/query/section"):
        pytest.skip("POST /api/query/section is not in the API yet")
    open_map(page, web_server, view="19/27.2/111.5")
    page.locator('#tools [data-tool="section"]').click()
    _sketch(page, [(111.5000, 27.19965), (111.5000, 27.20025)])
    chart = page.locator("#panel-body svg.section-chart")
    chart.wait_for(timeout=20_000)
    page.locator("#panel").screenshot(path=str(artifacts / "web_section.png"))
    networks = sorted(chart.locator(".pipe").evaluate_all("els => els.map((e) => e.dataset.network)"))
    assert networks == ["DL", "JS", "PS", "RQ"]
    labels = " ".join(chart.locator(".pipe-label").all_text_contents())
    assert "DN300" in labels and "球墨铸铁" in labels and "600×400" in labels
    # round pipes are circles; the 800 mm drain is drawn larger than the 160 mm gas main
    radii = chart.locator("circle.pipe").evaluate_all(
        "els => Object.fromEntries(els.map((e) => [e.dataset.network, Number(e.getAttribute('r'))]))")
    assert radii["PS"] > 4 * radii["RQ"]
    assert chart.locator("rect.pipe").count() == 1
    # the deepest pipe (drain, invert 2.5 m below ground) is drawn lowest
    ys = chart.locator("circle.pipe").evaluate_all(
        "els => Object.fromEntries(els.map((e) => [e.dataset.network, Number(e.getAttribute('cy'))]))")
    assert ys["PS"] > ys["JS"] > 0


def test_export_view_features_as_geojson(page, web_server):
    if not web_server.has("GET", "/ogc/collections/{collectionId}/items"):
        pytest.skip("OGC API Features items are not in the API yet")
    open_map(page, web_server, view=VIEW)
    page.locator("#btn-export").click()
    page.locator("#export-layer").select_option("buildings")
    with page.expect_download(timeout=30_000) as dl:
        page.locator("#export-run").click()
    doc = json.loads(open(dl.value.path(), encoding="utf-8").read())
    assert doc["type"] == "FeatureCollection"
    assert sorted(f["properties"]["code"] for f in doc["features"]) == ["WB-001", "WB-002", "WB-003", "WB-004"]
    assert dl.value.suggested_filename.startswith("buildings_") and dl.value.suggested_filename.endswith(".geojson")
