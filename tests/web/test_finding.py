"""Finding things in the browser: identify popup, search box, admin-area picker."""

from __future__ import annotations

import pytest

from tests.web.conftest import click_lonlat, open_map

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def test_identify_shows_the_clicked_building(page, web_server, artifacts):
    if not web_server.has("POST", "/api/query/identify"):
        pytest.skip("POST /api/query/identify is not in the API yet")
    open_map(page, web_server)
    click_lonlat(page, 111.4994, 27.20098)  # centre of WB-002 幸福小区1栋
    popup = page.locator(".identify-popup .identify")
    popup.wait_for(timeout=20_000)
    page.locator(".identify-feature").first.wait_for()
    page.screenshot(path=str(artifacts / "web_identify.png"))
    # city objects before the admin areas that contain every click
    first = page.locator(".identify-feature").first
    assert first.get_attribute("data-layer") == "buildings"
    layers = [s.get_attribute("data-layer") for s in page.locator(".identify-feature").all()]
    assert "admin_areas" in layers and layers.index("admin_areas") > layers.index("buildings")
    text = first.inner_text()
    # Chinese labels from the catalogue, values from the seeded row, codes with dictionary names
    assert "建筑编号" in text and "WB-002" in text
    assert "名称" in text and "幸福小区1栋" in text
    assert "地上层数" in text and "11" in text
    assert "住宅（ZZ）" in text
    assert page.errors == [], (page.errors, page.failed)


def test_identify_lists_every_pipe_at_the_click(page, web_server):
    if not web_server.has("POST", "/api/query/identify"):
        pytest.skip("POST /api/query/identify is not in the API yet")
    open_map(page, web_server, view="20/27.20005/111.5")
    click_lonlat(page, 111.5, 27.19990)  # on the 给水 main
    page.locator(".identify-feature").first.wait_for(timeout=20_000)
    texts = page.locator(".identify-feature").all_inner_texts()
    assert any("JSL-0001" in t and "球墨铸铁（QM）" in t for t in texts), texts


def test_search_finds_a_building_and_zooms_to_it(page, web_server, artifacts):
    if not web_server.has("GET", "/api/search"):
        pytest.skip("GET /api/search is not in the API yet")
    open_map(page, web_server, view="14/27.19/111.49")
    page.locator("#search-input").fill("幸福小区")
    item = page.locator('#search-results li[data-layer="buildings"]').first
    item.wait_for(timeout=20_000)
    assert "幸福小区1栋" in item.inner_text()
    item.click()
    page.wait_for_function("""() => { const c = window.cim.map.getCenter();
        return Math.abs(c.lng - 111.4994) < 0.0003 && Math.abs(c.lat - 27.20098) < 0.0003 && !window.cim.map.isMoving(); }""",
                           timeout=20_000)
    assert window_zoom(page) >= 16
    page.screenshot(path=str(artifacts / "web_search.png"))
    # a survey point number is searchable too
    page.locator("#search-input").fill("YS0002")
    page.locator("#search-results li").first.wait_for(timeout=20_000)
    assert "YS0002" in page.locator("#search-results").inner_text()


def window_zoom(page) -> float:
    return page.evaluate("window.cim.map.getZoom()")


def test_admin_picker_zooms_to_the_street(page, web_server):
    if not web_server.has("GET", "/ogc/collections/{collectionId}/items"):
        pytest.skip("OGC API Features items are not in the API yet")
    open_map(page, web_server, view="12/27.0/111.0")
    picker = page.locator("#admin-picker")
    label = next(t for t in picker.locator("option").all_inner_texts() if "城关街道" in t)
    picker.select_option(label=label)
    page.wait_for_function("!window.cim.map.isMoving()", timeout=20_000)
    page.wait_for_timeout(800)
    b = page.evaluate("(() => { const b = window.cim.map.getBounds(); return [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]; })()")
    # the street is 111.48..111.50 x 27.18..27.22: the view now frames it
    assert b[0] <= 111.48 + 1e-3 and b[2] >= 111.50 - 1e-3 and b[1] <= 27.18 + 1e-3 and b[3] >= 27.22 - 1e-3
    assert b[2] - b[0] < 0.2
