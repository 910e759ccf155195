"""The 3D view in headless Chromium (SwiftShader WebGL): both tilesets load, picking returns the
feature's metadata, identify shows it, underground mode, and 2D ↔ 3D keeps the view."""

from __future__ import annotations

import pytest

from tests.web.conftest import open_map
from tests.web.pixels import decode_png

pytestmark = [pytest.mark.browser, pytest.mark.timeout(400)]


@pytest.fixture(autouse=True)
def _patient(page):
    """Software WebGL renders a frame in seconds on a busy machine, and a click or a screenshot
    waits for the page between frames: give actions 90 s instead of Playwright's 30 s."""
    page.set_default_timeout(90_000)


def _open_3d(page):
    page.locator("#btn-3d").click()
    page.wait_for_function("""() => { const v = window.cim.view3d;
        return v && v.status.buildings && v.status.pipelines; }""", timeout=120_000)
    # every tile needed for the view is loaded and rendered
    page.wait_for_function("""() => { const v = window.cim.view3d;
        return Object.values(v.tilesets).every((t) => t.tilesLoaded); }""", timeout=120_000)
    # and the globe surface itself, which hides what lies below it until underground mode
    page.wait_for_function("() => window.cim.view3d.viewer.scene.globe.tilesLoaded", timeout=120_000)
    page.wait_for_timeout(500)


def _pick_centre(page):
    """Properties of the 3D Tiles feature at the canvas centre (null when nothing is there)."""
    return page.evaluate("""() => {
        const v = window.cim.view3d, C = window.Cesium, scene = v.viewer.scene;
        scene.render();
        const c = scene.canvas;
        const f = scene.pick(new C.Cartesian2(c.clientWidth / 2, c.clientHeight / 2));
        if (!(f instanceof C.Cesium3DTileFeature)) return null;
        const props = {};
        for (const id of f.getPropertyIds()) props[id] = f.getProperty(id);
        return {tileset: Object.keys(v.tilesets).find((k) => v.tilesets[k] === f.tileset), props};
    }""")


def _cyan(png: bytes) -> int:
    """Pixels of the 给水 (JS, CJJ 61 cyan) pipe, however shaded: red low, green and blue high."""
    img = decode_png(png).astype(int)
    return int(((img[..., 0] < 110) & (img[..., 1] > 150) & (img[..., 2] > 150)).sum())


def test_3d_view_loads_both_tilesets_and_identifies_a_building(page, web_server, artifacts):
    if not web_server.has("GET", "/3dtiles/{layer}/tileset.json"):
        pytest.skip("3D Tiles endpoints are not in the API yet")
    open_map(page, web_server, view="18/27.20098/111.4994")  # straight down over WB-002
    _open_3d(page)
    page.screenshot(path=str(artifacts / "web_3d_buildings.png"))
    status = page.evaluate("window.cim.view3d.status")
    assert status == {"buildings": "loaded", "pipelines": "loaded"}
    picked = _pick_centre(page)
    assert picked and picked["tileset"] == "buildings", picked
    assert "WB-002" in picked["props"].values()
    # identify on click shows the tile metadata with the catalogue's Chinese labels
    box = page.locator("#globe").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.locator("#identify3d").wait_for(timeout=20_000)
    text = page.locator("#identify3d").inner_text()
    assert "WB-002" in text and "建筑编号" in text
    assert [e for e in page.errors if "favicon" not in e] == [], page.errors


def test_underground_mode_shows_the_pipes(page, web_server, artifacts):
    if not web_server.has("GET", "/3dtiles/{layer}/tileset.json"):
        pytest.skip("3D Tiles endpoints are not in the API yet")
    open_map(page, web_server, view="20/27.19990/111.5")  # straight down over the 给水 main
    _open_3d(page)
    # the model stands on the globe, so the pipes lie under its opaque surface
    top = page.evaluate("""(() => { const C = window.Cesium, t = window.cim.view3d.tilesets.pipelines;
        return C.Cartographic.fromCartesian(t.boundingSphere.center).height; })()""")
    assert top < 0, top
    before = _cyan(page.locator("#globe").screenshot())
    page.locator("#underground").check()
    globe = page.evaluate("""(() => { const g = window.cim.view3d.viewer.scene.globe;
        return {on: g.translucency.enabled, alpha: g.translucency.frontFaceAlpha, depth: g.depthTestAgainstTerrain}; })()""")
    assert globe == {"on": True, "alpha": 0.35, "depth": False}
    page.wait_for_timeout(800)
    after = _cyan(page.locator("#globe").screenshot())
    assert after > before + 500, (before, after)  # the 给水 main shows through the ground
    picked = _pick_centre(page)
    assert picked and picked["tileset"] == "pipelines" and picked["props"].get("code") == "JSL-0001", picked
    box = page.locator("#globe").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.locator("#identify3d").wait_for(timeout=20_000)
    text = page.locator("#identify3d").inner_text()
    assert "管段编号" in text and "JSL-0001" in text and "球墨铸铁（QM）" in text
    page.screenshot(path=str(artifacts / "web_3d_underground.png"))


def test_switching_2d_3d_keeps_the_view(page, web_server):
    open_map(page, web_server, view="17.5/27.2003/111.4991/30/40")
    before = page.evaluate("(() => { const m = window.cim.map; return {c: m.getCenter().toArray(), z: m.getZoom(), b: m.getBearing(), p: m.getPitch()}; })()")
    page.locator("#btn-3d").click()
    page.wait_for_function("!!(window.cim.view3d && window.cim.view3d.viewer)", timeout=120_000)
    page.wait_for_timeout(1000)
    page.locator("#btn-3d").click()  # back to 2D
    page.wait_for_function("!document.getElementById('map').hidden")
    after = page.evaluate("(() => { const m = window.cim.map; return {c: m.getCenter().toArray(), z: m.getZoom(), b: m.getBearing(), p: m.getPitch()}; })()")
    assert abs(after["c"][0] - before["c"][0]) < 2e-5 and abs(after["c"][1] - before["c"][1]) < 2e-5, (before, after)
    assert abs(after["z"] - before["z"]) < 0.05
    assert abs(((after["b"] - before["b"] + 180) % 360) - 180) < 0.5
    assert abs(after["p"] - before["p"]) < 0.5
