"""HEAD answers like GET without a body; wrong methods on API paths get the API's own 405."""

from __future__ import annotations

import httpx

from cim.settings import ApiSettings, AuthSettings


def test_head_and_wrong_methods(live_app, tmp_path):
    web = tmp_path / "web"
    (web / "cesium").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>一张图</title>", encoding="utf-8")
    (web / "app.js").write_text("console.log(1)")
    (web / "cesium" / "Cesium.js").write_text("// cesium")
    base = live_app(auth=AuthSettings(public_read=True), api=ApiSettings(web_root=web))

    get = httpx.get(base + "/ogc/collections/buildings/items?limit=1")
    head = httpx.head(base + "/ogc/collections/buildings/items?limit=1")
    assert get.status_code == head.status_code == 200
    assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"]

    wrong = httpx.delete(base + "/api/query/identify")
    assert wrong.status_code == 405
    assert "POST" in wrong.headers["allow"]
    assert wrong.json()["message_zh"]

    assert httpx.get(base + "/api/nothing-here").json()["code"] == "http_404"
    assert "一张图" in httpx.get(base + "/").text
    assert httpx.get(base + "/app.js").text == "console.log(1)"
    assert httpx.get(base + "/cesium/Cesium.js").status_code == 200
    assert httpx.head(base + "/").status_code == 200


def test_json_and_web_assets_are_compressed(live_app, tmp_path):
    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("<!doctype html><title>一张图</title>", encoding="utf-8")
    (web / "app.js").write_text("const a = 1;\n" * 2000)
    base = live_app(auth=AuthSettings(public_read=True), api=ApiSettings(web_root=web))
    js = httpx.get(base + "/app.js", headers={"Accept-Encoding": "gzip"})
    assert js.headers["content-encoding"] == "gzip" and js.text.startswith("const a")
    layers = httpx.get(base + "/api/layers", headers={"Accept-Encoding": "gzip"})
    assert layers.headers["content-encoding"] == "gzip" and layers.json()
    plain = httpx.get(base + "/api/layers", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.json() == layers.json()
