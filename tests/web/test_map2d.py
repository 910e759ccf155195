"""The 2D map in headless Chromium: loads cleanly, draws the layers, layer tree and legend work.

Pixel checks read the screenshot of the map canvas and look for the colours the catalogue
gives the layers (CJJ 61 network colours, the residential building fill) blended with their
opacity over the style's background.
"""

from __future__ import annotations

import re

import pytest
from pyproj import Transformer

from tests.web.conftest import open_map, wait_idle
from tests.web.pixels import blend, count_near, decode_png

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def _map_pixels(page, artifacts, name):
    png = page.locator("#map").screenshot()
    (artifacts / name).write_bytes(png)
    return decode_png(png)


def _style_color(page, layer_id: str, prop: str, value: str, default_bg: str = "#f4f2ee"):
    """Colour for value `value` from the style's match expression plus the layer opacity and background."""
    info = page.evaluate("""([id, prop]) => {
        const m = window.cim.map; const st = m.getStyle();
        const bg = st.layers.find((l) => l.type === 'background');
        return {color: m.getPaintProperty(id, prop + '-color'), opacity: m.getPaintProperty(id, prop + '-opacity'),
                bg: bg ? m.getPaintProperty(bg.id, 'background-color') : null};
    }""", [layer_id, prop])
    color = info["color"]
    if isinstance(color, list):
        pairs = dict(zip(color[2:-1:2], color[3:-1:2], strict=True))
        color = pairs.get(value, color[-1])
    bg = info["bg"] if isinstance(info["bg"], str) and info["bg"].startswith("#") else default_bg
    return blend(color, float(info["opacity"] or 1), bg)


def _toggle(page, layer_id: str, on: bool) -> None:
    box = page.locator(f'#layertree input[data-layer="{layer_id}"]')
    if box.count() and box.is_checked() != on:
        box.click()


def test_page_loads_without_console_errors(page, web_server, artifacts):
    open_map(page, web_server)
    page.screenshot(path=str(artifacts / "web_2d_page.png"))
    assert page.errors == [], (page.errors, page.failed)
    assert page.locator("#topbar h1").inner_text() == "CIM 一张图"
    # the layer tree lists the catalogue layers in Chinese, grouped
    tree = page.locator("#layertree").inner_text()
    for title in ("房屋建筑", "地下管线(全部)", "园林绿地", "行政区划"):
        assert title in tree
    # one switch per CJJ 61 network under the all-network pipeline layer
    for code in ("JS", "PS", "RQ", "DL", "TX"):
        assert page.locator(f'#layertree input[data-network="{code}"]').count() == 1
    # the legend comes from the style: the residential colour is labelled with its dictionary name
    legend = page.locator("#legend").inner_text()
    assert "住宅" in legend and "房屋建筑" in legend
    # thematic duplicates of the all-network pipe layers start off, the rest on
    for layer in ("drainage_pipes", "gas_pipes"):
        assert not page.locator(f'#layertree input[data-layer="{layer}"]').is_checked()
    for layer in ("buildings", "pipeline_segments", "green_spaces", "admin_areas"):
        assert page.locator(f'#layertree input[data-layer="{layer}"]').is_checked()
    # the cursor read-out gives CGCS2000 lon/lat and the GK 111°E coordinates
    page.mouse.move(700, 400)
    coords = page.locator("#coords").inner_text()
    assert "CGCS2000" in coords and "GK 111°E" in coords
    # the Gauss-Krüger figures agree with PROJ's CGCS2000 / 3-degree GK CM 111E (EPSG:4546)
    lon, lat, x, y = (float(v) for v in re.search(
        r"([\d.]+)°E ([\d.]+)°N.*X=([\d.]+) Y=([\d.]+)", coords).groups())
    east, north = Transformer.from_crs(4490, 4546, always_xy=True).transform(lon, lat)
    assert abs(east - y) < 0.2 and abs(north - x) < 0.2, (coords, east, north)  # lon/lat shown to 1e-6°


def test_layers_render_in_the_canvas(page, web_server, artifacts):
    open_map(page, web_server)
    for layer in ("drainage_pipes", "gas_pipes", "drainage_nodes", "gas_points", "pipeline_points", "streetlights"):
        _toggle(page, layer, False)
    wait_idle(page)
    img = _map_pixels(page, artifacts, "web_2d_layers.png")
    js = _style_color(page, "pipeline_segments", "line", "JS")
    rq = _style_color(page, "pipeline_segments", "line", "RQ")
    ps = _style_color(page, "pipeline_segments", "line", "PS")
    house = _style_color(page, "buildings", "fill", "ZZ")
    assert count_near(img, js) > 100, f"no 给水 cyan {js} in the canvas"
    assert count_near(img, rq) > 100, f"no 燃气 magenta {rq} in the canvas"
    assert count_near(img, ps) > 100, f"no 排水 brown {ps} in the canvas"
    assert count_near(img, house, tol=14) > 400, f"no residential building fill {house} in the canvas"

    # switching the 给水 network off in the tree removes its colour from the canvas
    page.locator('#layertree input[data-network="JS"]').click()
    wait_idle(page)
    img = _map_pixels(page, artifacts, "web_2d_no_js.png")
    assert count_near(img, js) < 5
    assert count_near(img, rq) > 100

    # opacity 0 on buildings removes the building fill
    page.locator('#layertree input[data-opacity="buildings"]').fill("0")
    wait_idle(page)
    img = _map_pixels(page, artifacts, "web_2d_buildings_transparent.png")
    assert count_near(img, house, tol=14) < 20


def test_english_switch(page, web_server):
    open_map(page, web_server)
    page.locator("#btn-lang").click()
    assert page.locator("#topbar h1").inner_text() == "CIM One Map"
    assert "Buildings" in page.locator("#layertree").inner_text()
    assert page.locator("#search-input").get_attribute("placeholder").startswith("Search")
    page.locator("#btn-lang").click()
    assert "房屋建筑" in page.locator("#layertree").inner_text()


def test_settings_custom_basemap_url(page, web_server, artifacts):
    """A basemap URL saved in Settings becomes a raster layer under the data, listed in the tree."""
    open_map(page, web_server)
    page.locator("#btn-settings").click()
    # any XYZ template works; here a JPEG our own server ships (CesiumJS assets), whatever z/x/y
    template = f"{web_server.url}/cesium/Assets/Textures/moonSmall.jpg?tile={{z}}/{{x}}/{{y}}"
    page.locator("#settings-basemap").fill(template)
    requested = []
    page.on("request", lambda r: requested.append(r.url) if "moonSmall.jpg?tile=" in r.url else None)
    with page.expect_navigation():
        page.locator("#panel-body button").click()
    page.wait_for_function("document.body.dataset.ready === 'true'", timeout=60_000)
    wait_idle(page)
    layers = page.evaluate("window.cim.map.getStyle().layers.map((l) => l.id)")
    assert "basemap-custom" in layers
    assert layers.index("basemap-custom") < layers.index("buildings")  # below the data
    assert page.evaluate("localStorage.getItem('cim.basemap')") == template
    assert "自定义底图" in page.locator("#layertree").inner_text()
    # 256 px raster tiles one zoom level above the 512 px map zoom
    assert any("tile=18/" in u for u in requested), requested[:5]
    page.screenshot(path=str(artifacts / "web_2d_custom_basemap.png"))
    assert page.errors == [], page.errors


def test_without_a_view_in_the_url_the_map_fits_the_data(page, web_server):
    page.goto(web_server.url + "/")
    page.wait_for_function("document.body.dataset.ready === 'true'", timeout=60_000)
    page.wait_for_function("""() => { const c = window.cim.map.getCenter();
        return c.lng > 111.47 && c.lng < 111.57 && c.lat > 27.17 && c.lat < 27.23; }""", timeout=30_000)
    b = page.evaluate("(() => { const b = window.cim.map.getBounds(); return [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]; })()")
    # the test counties (111.48..111.56 × 27.18..27.22) are in view, and not as a speck
    assert b[0] <= 111.485 and b[2] >= 111.555 and b[2] - b[0] < 0.5, b
    page.wait_for_function("/^#\\d/.test(window.location.hash)")  # the view is now in the URL
