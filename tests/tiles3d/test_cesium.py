"""Both tilesets load in CesiumJS (npm cesium) in Debian's headless Chromium, over real HTTP.

The page is served from a second origin (a static server with CesiumJS), so the tilesets also
cross CORS. The test waits until Cesium reports all visible tiles loaded and asserts: no
``tileFailed`` event, no console error or page exception, at least one content per tileset
loaded, and per-feature metadata readable (EXT_structural_metadata ``id`` and ``layer``), every
declared property included: a STRING property a tile's property table leaves out (empty for all
its features) reads as its class default "".
"""

from __future__ import annotations

import functools
import json
import threading
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tiles3d.checks import parse_glb
from tiles3d.conftest import ROOT, free_port

CESIUM_BUILD = ROOT / "web" / "node_modules" / "cesium" / "Build" / "Cesium"
CLASS_OF_LAYER = {"buildings": "building", "pipeline_segments": "pipe_segment", "pipeline_points": "pipe_point"}

PAGE = """<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<script>window.CESIUM_BASE_URL = '/Cesium/';</script>
<script src="/Cesium/Cesium.js"></script>
<link rel="stylesheet" href="/Cesium/Widgets/widgets.css">
<style>html,body,#c{margin:0;width:100%;height:100%;overflow:hidden}</style></head>
<body><div id="c"></div><script>
window.result = null;
(async () => {
  const out = {failed: [], loaded: {}, features: {}, errors: []};
  try {
    const widget = new Cesium.CesiumWidget('c', {baseLayer: false, skyBox: false, skyAtmosphere: false,
                                                 requestRenderMode: false});
    widget.scene.globe.baseColor = Cesium.Color.DARKSLATEGRAY;
    const sets = {};
    for (const layer of ['buildings', 'pipelines']) {
      const ts = await Cesium.Cesium3DTileset.fromUrl(API + '/3dtiles/' + layer + '/tileset.json',
                                                      {maximumScreenSpaceError: 4});
      out.loaded[layer] = 0;
      out.features[layer] = [];
      ts.tileFailed.addEventListener((e) => out.failed.push(layer + ': ' + e.url + ' ' + e.message));
      ts.tileLoad.addEventListener((tile) => {
        out.loaded[layer] += 1;
        const c = tile.content;
        if (c.featuresLength > 0) {
          const f = c.getFeature(0);
          const props = {};
          for (const id of f.getPropertyIds()) props[id] = f.getProperty(id);
          out.features[layer].push({id: f.getProperty('id'), layer: f.getProperty('layer'), n: c.featuresLength,
                                    url: c.url, props});
        }
      });
      widget.scene.primitives.add(ts);
      sets[layer] = ts;
    }
    const bs = Cesium.BoundingSphere.union(sets.buildings.boundingSphere, sets.pipelines.boundingSphere);
    widget.camera.flyToBoundingSphere(bs, {duration: 0,
      offset: new Cesium.HeadingPitchRange(0, -0.8, bs.radius * 1.5)});
    const done = (ts) => new Promise((res) => {
      const check = () => ts.tilesLoaded ? res() : setTimeout(check, 200);
      setTimeout(check, 500);
    });
    await Promise.all([done(sets.buildings), done(sets.pipelines)]);
    await new Promise((r) => setTimeout(r, 500));
  } catch (e) { out.errors.push(String(e && e.stack || e)); }
  window.result = out;
})();
</script></body></html>"""


@pytest.fixture(scope="module")
def page_origin(tmp_path_factory, server):
    root = tmp_path_factory.mktemp("cesium-page")
    (root / "Cesium").symlink_to(CESIUM_BUILD, target_is_directory=True)
    (root / "index.html").write_text(PAGE.replace("API + ", json.dumps(server) + " + "), encoding="utf-8")
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.browser
def test_cesium_loads_both_tilesets(page_origin, server, artifacts, browser):
    assert (CESIUM_BUILD / "Cesium.js").is_file(), "npm cesium is required (web/node_modules)"
    context = browser.new_context(viewport={"width": 1024, "height": 700})   # the session's browser (tests/conftest.py)
    try:
        page = context.new_page()
        console, requests = [], []
        page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        page.on("request", lambda r: requests.append(r.url) if "/3dtiles/" in r.url else None)
        page.goto(page_origin + "/index.html")
        page.wait_for_function("window.result !== null", timeout=240_000)
        result = page.evaluate("window.result")
        page.screenshot(path=str(artifacts / "tiles3d-cesium.png"))
    finally:
        context.close()
    assert result["errors"] == [], result["errors"]
    assert result["failed"] == [], result["failed"]
    assert console == [], console
    for layer in ("buildings", "pipelines"):
        assert result["loaded"][layer] >= 1, result
        assert any(f"/3dtiles/{layer}/content/" in u for u in requests)
        feats = result["features"][layer]
        assert feats and all(isinstance(f["id"], (int, float)) and f["id"] > 0 for f in feats)
    omitted = 0
    for layer in ("buildings", "pipelines"):
        for f in result["features"][layer]:
            with urllib.request.urlopen(f["url"]) as resp:
                gltf, _ = parse_glb(resp.read())
            meta = gltf["extensions"]["EXT_structural_metadata"]
            cls = CLASS_OF_LAYER[f["layer"]]
            table = next(t for t in meta["propertyTables"] if t["class"] == cls)
            declared = meta["schema"]["classes"][cls]["properties"]
            assert set(f["props"]) == set(declared), (f["url"], set(declared) - set(f["props"]))
            strings = [n for n, cp in declared.items() if cp["type"] == "STRING"]
            assert all(isinstance(f["props"][n], str) for n in strings), f   # numbers at noData read as null
            for name in set(declared) - set(table["properties"]):
                assert f["props"][name] == "", (f["url"], name)
                omitted += 1
    assert omitted > 0, "the seeded tiles must leave some all-empty STRING property out of a property table"
    assert {f["layer"] for f in result["features"]["buildings"]} == {"buildings"}
    assert {f["layer"] for f in result["features"]["pipelines"]} <= {"pipeline_segments", "pipeline_points"}
