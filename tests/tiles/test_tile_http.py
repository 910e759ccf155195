"""Tile HTTP behaviour: ETag/304, cache invalidation by data version, bad input, OGC Tiles, TileJSON, style, glyphs."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import mapbox_vector_tile
import psycopg2
import pytest

from tests.tiles.conftest import KNOWN_LAT, KNOWN_LON
from tests.tiles.test_tile_content import tile_of

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = ROOT / "web" / "node_modules" / ".bin" / "gl-style-validate"


def test_etag_and_304(http):
    x, y = tile_of(111.205, 27.105, 17)
    url = f"/tiles/buildings/17/{x}/{y}.mvt"
    first = http.get(url)
    etag = first.headers["etag"]
    assert first.status_code == 200 and etag.startswith('"')
    assert "max-age=" in first.headers["cache-control"]
    again = http.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert http.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


def _known_tile(http, z=18):
    x, y = tile_of(KNOWN_LON + 0.0001, KNOWN_LAT + 0.0001, z)
    return http.get(f"/tiles/buildings/{z}/{x}/{y}.mvt")


def test_cache_follows_data_version(http, tile_data):
    before = _known_tile(http)
    assert _known_tile(http).headers["etag"] == before.headers["etag"]  # served from the cache
    conn = psycopg2.connect(tile_data)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE cim.building SET name = '改名大楼' WHERE code = 'KNOWN-1'")
        # the new data version arrives by NOTIFY (or the 1 s poll); no purge is ever called
        deadline = time.monotonic() + 10
        after = _known_tile(http)
        while after.headers["etag"] == before.headers["etag"] and time.monotonic() < deadline:
            time.sleep(0.05)
            after = _known_tile(http)
        feats = mapbox_vector_tile.decode(after.content)["buildings"]["features"]
        assert [f["properties"]["name"] for f in feats] == ["改名大楼"]
        # an insert shows up the same way
        with conn, conn.cursor() as cur:
            cur.execute("INSERT INTO cim.building (code, name, county_code, geom) VALUES ('KNOWN-2', '新楼', '430521', "
                        "ST_Multi(ST_MakeEnvelope(%s, %s, %s, %s, 4490)))",
                        (KNOWN_LON + 0.0003, KNOWN_LAT, KNOWN_LON + 0.0004, KNOWN_LAT + 0.0001))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            codes = {f["properties"]["code"] for f in
                     mapbox_vector_tile.decode(_known_tile(http, 17).content)["buildings"]["features"]}
            if "KNOWN-2" in codes:
                break
            time.sleep(0.05)
        assert {"KNOWN-1", "KNOWN-2"} <= codes
    finally:
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE cim.building SET name = '测试大楼' WHERE code = 'KNOWN-1'")
            cur.execute("DELETE FROM cim.building WHERE code = 'KNOWN-2'")
        conn.close()


@pytest.mark.parametrize("url,status", [
    ("/tiles/buildings/16/abc/1.mvt", 400),
    ("/tiles/buildings/-1/0/0.mvt", 400),
    ("/tiles/buildings/25/0/0.mvt", 400),
    ("/tiles/buildings/3/8/0.mvt", 400),
    ("/tiles/buildings/3/0/99999999.mvt", 400),
    ("/tiles/nosuchlayer/16/0/0.mvt", 404),
    ("/tiles/buildings,nosuch/16/0/0.mvt", 404),
    ("/tiles/,/16/0/0.mvt", 400),
    ("/tiles/nosuchlayer.json", 404),
    ("/ogc/collections/nosuch/tiles", 404),
    ("/ogc/collections/buildings/tiles/WebMercatorQuad/5/0/0", 404),
    ("/ogc/collections/buildings/tiles/WebMercatorQuad/16/x/0", 400),
    ("/ogc/tileMatrixSets/WorldCRS84Quad", 404),
    ("/fonts/Noto%20Sans%20CJK%20SC%20Regular/0-254.pbf", 400),
    ("/fonts/Noto%20Sans%20CJK%20SC%20Regular/65536-65791.pbf", 400),
    ("/pmtiles/nosuch/1/0/0.mvt", 404),
    ("/pmtiles/..%2Fetc/1/0/0.mvt", 404),
])
def test_bad_input_is_bilingual_4xx(http, url, status):
    r = http.get(url)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["message_zh"] and body["message_en"] and body["code"]


def test_reads_need_a_token_without_public_read(tile_data):
    import httpx

    from cim import auth
    from tests.tiles.conftest import start_server

    base, srv = start_server(tile_data, public_read=False)
    try:
        x, y = tile_of(KNOWN_LON + 0.0001, KNOWN_LAT + 0.0001, 18)
        for path in (f"/tiles/buildings/18/{x}/{y}.mvt", "/styles/onemap.json", "/tiles/buildings.json",
                     "/ogc/collections/buildings/tiles"):
            r = httpx.get(base + path)
            assert r.status_code == 401 and r.json()["message_en"]
        conn = psycopg2.connect(tile_data)
        try:
            with conn, conn.cursor() as cur:
                token = auth.create_token(cur, name="tile-viewer", role=auth.Role.viewer).secret
        finally:
            conn.close()
        auth_header = {"Authorization": f"Bearer {token}"}
        # the tile adapter verifies the token once (api.deps.principal_of, the same as the routes'
        # dependency) and then uses the verified one; a wrong token is refused (the route answers 401)
        answers = [httpx.get(base + f"/tiles/buildings/18/{x}/{y}.mvt", headers=auth_header) for _ in range(3)]
        assert [r.status_code for r in answers] == [200, 200, 200]
        assert len({r.content for r in answers}) == 1 and answers[0].content
        for _ in range(2):
            r = httpx.get(base + f"/tiles/buildings/18/{x}/{y}.mvt", headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401 and r.json()["message_zh"]
    finally:
        srv.should_exit = True


@pytest.mark.parametrize("path", ["/tiles/buildings,pipeline_segments/{z}/{x}/{y}.mvt",
                                  "/ogc/collections/buildings/tiles/WebMercatorQuad/{z}/{y}/{x}"])
def test_fast_path_answers_like_the_route(http, path):
    """Tile GETs are answered by the fast path (api.routers.tiles.TileFastPath); a CORS request
    (Origin header) goes through the framework route. Both give the same status, bytes and headers."""
    cases = [(17, *tile_of(111.205, 27.105, 17)), (16, *tile_of(111.21, 27.11, 16)),
             (17, *tile_of(100.0, 20.0, 17))]  # the last one is empty: 204
    for z, x, y in cases:
        url = path.format(z=z, x=x, y=y)
        for encoding in ("gzip", "identity"):
            fast = http.get(url, headers={"Accept-Encoding": encoding})
            route = http.get(url, headers={"Accept-Encoding": encoding, "Origin": "http://example.test"})
            assert fast.status_code == route.status_code and fast.status_code in (200, 204)
            assert fast.content == route.content
            for name in ("etag", "cache-control", "content-type", "content-encoding"):
                assert fast.headers.get(name) == route.headers.get(name), name
            vary = {v.strip() for v in route.headers["vary"].split(",")}
            assert vary == {"Accept-Encoding", "Origin"}  # CORS adds Origin to the route's answer
            assert fast.headers["vary"] == "Accept-Encoding"
            assert "access-control-allow-origin" in route.headers  # the route did answer the CORS request
            assert "access-control-allow-origin" not in fast.headers
        assert http.get(url, headers={"If-None-Match": fast.headers["etag"]}).status_code == 304
    assert cases and fast.status_code == 204


@pytest.mark.parametrize("origin", [None, "http://example.test"], ids=["adapter", "route"])
def test_conditional_answers_carry_the_validators_of_the_200(http, origin):
    """Both paths answer If-None-Match (a list, a weak tag) with 304 and the ETag, Cache-Control and
    Vary of the 200; an empty tile is 204 with the same validators and answers 304 the same way."""
    cors = {"Origin": origin} if origin else {}
    for z, lon, lat in ((17, 111.205, 27.105), (17, 100.0, 20.0)):
        x, y = tile_of(lon, lat, z)
        url = f"/tiles/buildings/{z}/{x}/{y}.mvt"
        full = http.get(url, headers=cors)
        assert full.status_code in (200, 204)
        etag = full.headers["etag"]
        for inm in (etag, f'"nope", {etag}', "W/" + etag):
            r = http.get(url, headers={"If-None-Match": inm, **cors})
            assert r.status_code == 304 and r.content == b""
            for name in ("etag", "cache-control", "vary"):
                assert r.headers[name] == full.headers[name], name
        assert http.get(url, headers={"If-None-Match": '"nope"', **cors}).status_code == full.status_code
    assert full.status_code == 204 and full.headers["cache-control"].startswith("public, max-age=")


def test_ogc_tiles(http):
    sets = http.get("/ogc/collections/buildings/tiles").json()
    assert sets["tilesets"][0]["tileMatrixSetURI"].endswith("/WebMercatorQuad")
    ts = http.get("/ogc/collections/buildings/tiles/WebMercatorQuad").json()
    assert ts["dataType"] == "vector" and ts["crs"].endswith("/3857")
    limits = {lim["tileMatrix"]: lim for lim in ts["tileMatrixSetLimits"]}
    assert set(limits) == {str(z) for z in range(13, 23)}
    item = next(link for link in ts["links"] if link["rel"] == "item")
    assert item["href"].endswith("/{tileMatrix}/{tileRow}/{tileCol}")
    x, y = tile_of(KNOWN_LON + 0.0001, KNOWN_LAT + 0.0001, 18)
    lim = limits["18"]
    assert lim["minTileCol"] <= x <= lim["maxTileCol"] and lim["minTileRow"] <= y <= lim["maxTileRow"]
    r = http.get(f"/ogc/collections/buildings/tiles/WebMercatorQuad/18/{y}/{x}")  # row (y) before col (x)
    assert r.status_code == 200
    assert mapbox_vector_tile.decode(r.content)["buildings"]["features"][0]["properties"]["code"] == "KNOWN-1"
    tms = http.get("/ogc/tileMatrixSets").json()
    assert tms["tileMatrixSets"][0]["id"] == "WebMercatorQuad"
    wmq = http.get("/ogc/tileMatrixSets/WebMercatorQuad").json()
    assert wmq["tileMatrices"][0]["matrixWidth"] == 1 and wmq["tileMatrices"][18]["matrixWidth"] == 2 ** 18


def test_tilejson(http):
    tj = http.get("/tiles/buildings,pipeline_segments.json").json()
    assert tj["tilejson"] == "3.0.0"
    assert tj["tiles"][0].endswith("/tiles/buildings,pipeline_segments/{z}/{x}/{y}.mvt")
    assert tj["minzoom"] == 12 and tj["maxzoom"] == 22
    w, s, e, n = tj["bounds"]
    assert w == pytest.approx(111.2, abs=1e-3) and n == pytest.approx(KNOWN_LAT + 0.0002, abs=1e-4)
    layers = {v["id"]: v for v in tj["vector_layers"]}
    assert layers["buildings"]["fields"]["floors_above"] == "Number"
    assert layers["pipeline_segments"]["fields"]["network"] == "String"


def test_style_is_valid_maplibre(http, tmp_path):
    style = http.get("/styles/onemap.json").json()
    assert style["version"] == 8
    assert style["sources"]["onemap"]["url"].endswith(".json")
    ids = [layer["id"] for layer in style["layers"]]
    assert "buildings" in ids and "buildings-outline" in ids and "buildings-label" in ids
    pipes = next(layer for layer in style["layers"] if layer["id"] == "pipeline_segments")
    color = pipes["paint"]["line-color"]
    # CJJ 61 colours: water supply cyan, gas magenta, power red
    assert color[0] == "match" and color[color.index("JS") + 1] == "#00ffff" and color[color.index("RQ") + 1] == "#ff00ff"
    label = next(layer for layer in style["layers"] if layer["id"] == "buildings-label")
    assert label["layout"]["text-field"] == ["to-string", ["get", "name"]]
    assert pipes["metadata"] == {"cim:layer": "pipeline_segments", "cim:group": "pipelines", "cim:group_zh": "地下管线",
                                 "cim:title_zh": "地下管线(全部)", "cim:title_en": "Pipelines (all networks)"}
    # the source's TileJSON covers every layer used by the style
    tj = http.get(style["sources"]["onemap"]["url"].replace(str(http.base_url).rstrip("/"), "")).json()
    source_layers = {v["id"] for v in tj["vector_layers"]}
    assert {layer["source-layer"] for layer in style["layers"] if "source-layer" in layer} <= source_layers
    path = tmp_path / "style.json"
    path.write_text(json.dumps(style, ensure_ascii=False))
    if not VALIDATOR.exists():
        pytest.fail(f"{VALIDATOR} missing: run `make web` (npm ci in web/)")
    res = subprocess.run([str(VALIDATOR), str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_glyphs_offline(http):
    style = http.get("/styles/onemap.json").json()
    font = next(layer for layer in style["layers"] if layer["type"] == "symbol")["layout"]["text-font"][0]
    for rng in ("0-255", "26880-27135"):  # Latin, and the CJK block holding 楼 (U+697C)
        r = http.get(f"/fonts/{font}/{rng}.pbf")
        assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
        assert font.encode() in r.content and rng.encode() in r.content
        assert len(r.content) > 10_000  # real SDF bitmaps, not an empty stack
    glyphs = _decode_glyphs(http.get(f"/fonts/{font}/26880-27135.pbf").content)
    lou = glyphs[0x697C]
    assert lou["width"] > 10 and lou["height"] > 10 and lou["advance"] >= 20
    assert len(lou["bitmap"]) == (lou["width"] + 6) * (lou["height"] + 6)
    assert max(lou["bitmap"]) > 192 > min(lou["bitmap"])  # inside and outside the edge (192)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = out = 0
    while True:
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        if b < 0x80:
            return out, i
        shift += 7


def _fields(buf: bytes):
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        if key & 7 == 0:
            val, i = _varint(buf, i)
        else:
            n, i = _varint(buf, i)
            val, i = buf[i:i + n], i + n
        yield key >> 3, val


def _decode_glyphs(pbf: bytes) -> dict[int, dict]:
    """Minimal reader of the glyphs protobuf (stacks = 1; glyphs = 3; id, bitmap, width, height, left, top, advance)."""
    names = {1: "id", 2: "bitmap", 3: "width", 4: "height", 5: "left", 6: "top", 7: "advance"}
    out = {}
    for num, stack in _fields(pbf):
        assert num == 1
        for fnum, glyph in _fields(stack):
            if fnum == 3:
                g = {names[k]: v for k, v in _fields(glyph)}
                out[g["id"]] = g
    return out
