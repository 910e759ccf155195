"""3D Tiles and DEM endpoints over real HTTP (uvicorn): media types, CORS, ETag, errors, freshness."""

from __future__ import annotations

import struct
import time
import zlib

import httpx
import numpy as np
import psycopg2

from tiles.threed.build import build_folder
from tiles3d.checks import parse_glb, tileset_problems, walk
from tiles3d.conftest import validate_gltf


def _contents(doc: dict) -> list[str]:
    return [t["content"]["uri"] for t, _, _ in walk(doc["root"]) if "content" in t]


def test_tilesets_and_contents_served(server, tmp_path):
    with httpx.Client(base_url=server, timeout=60) as c:
        for layer in ("buildings", "pipelines"):
            r = c.get(f"/3dtiles/{layer}/tileset.json", headers={"Origin": "http://example.org"})
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("application/json")
            assert r.headers["access-control-allow-origin"] in ("*", "http://example.org")
            etag = r.headers["etag"]
            doc = r.json()
            assert tileset_problems(doc) == []
            assert c.get(f"/3dtiles/{layer}/tileset.json", headers={"If-None-Match": etag}).status_code == 304
            uris = _contents(doc)
            assert len(uris) > 1
            files = []
            for i, uri in enumerate(uris[:4]):
                g = c.get(f"/3dtiles/{layer}/{uri}")
                assert g.status_code == 200 and g.headers["content-type"] == "model/gltf-binary"
                assert g.headers["etag"]
                gltf, _ = parse_glb(g.content)
                assert "EXT_structural_metadata" in gltf["extensionsUsed"]
                files.append(tmp_path / f"{layer}-{i}.glb")
                files[-1].write_bytes(g.content)
            assert all(rep["errors"] == 0 for rep in validate_gltf(files))


def test_conditional_answers_follow_the_tile_rule(server):
    """Tileset and content answer If-None-Match (a list, a weak tag) with 304 and the validators of
    the 200, by the same rule as the vector tiles (api.tile_answer)."""
    with httpx.Client(base_url=server, timeout=60) as c:
        ts = c.get("/3dtiles/pipelines/tileset.json")
        glb = c.get(f"/3dtiles/pipelines/{_contents(ts.json())[0]}")
        for full in (ts, glb):
            assert full.status_code == 200 and full.headers["cache-control"] == "no-cache"
            etag = full.headers["etag"]
            for inm in (etag, f'"nope", {etag}', "W/" + etag):
                r = c.get(full.request.url, headers={"If-None-Match": inm})
                assert r.status_code == 304 and r.content == b""
                assert (r.headers["etag"], r.headers["cache-control"]) == (etag, "no-cache")
            assert c.get(full.request.url, headers={"If-None-Match": '"nope"'}).content == full.content
        assert ts.headers["etag"] != glb.headers["etag"]


def test_errors_are_bilingual_404(server):
    with httpx.Client(base_url=server, timeout=30) as c:
        r = c.get("/3dtiles/roads/tileset.json")
        assert r.status_code == 404 and r.json()["message_zh"] and r.json()["message_en"]
        r = c.get("/3dtiles/buildings/content/9/999/999.glb")
        assert r.status_code == 404 and "message_en" in r.json()
        r = c.get("/3dtiles/buildings/content/a/b/c.glb")
        assert r.status_code == 404


def test_new_data_changes_the_tileset(server, t3d_url):
    with httpx.Client(base_url=server, timeout=60) as c:
        before = c.get("/3dtiles/buildings/tileset.json")
        conn = psycopg2.connect(t3d_url)
        try:
            with conn, conn.cursor() as cur:
                cur.execute("INSERT INTO cim.building (code, floors_above, county_code, geom) VALUES ('B-NEW', 30, "
                            "'430521', ST_Multi(ST_MakeEnvelope(111.47, 27.25, 111.4702, 27.2502, 4490))) RETURNING id")
                new_id = cur.fetchone()[0]
            # the new data version reaches the server's watcher by NOTIFY (or its 1 s poll), as for
            # vector tiles: no request reads cim.data_version itself
            after = c.get("/3dtiles/buildings/tileset.json")
            deadline = time.monotonic() + 10
            while after.headers["etag"] == before.headers["etag"] and time.monotonic() < deadline:
                time.sleep(0.05)
                after = c.get("/3dtiles/buildings/tileset.json")
            assert after.headers["etag"] != before.headers["etag"]
            doc = after.json()
            assert doc["extras"]["cim:features"] == before.json()["extras"]["cim:features"] + 1
            # the new building is in exactly one served content
            found = 0
            for uri in _contents(doc):
                gltf, binary = parse_glb(c.get(f"/3dtiles/buildings/{uri}").content)
                table = gltf["extensions"]["EXT_structural_metadata"]["propertyTables"][0]
                view = gltf["bufferViews"][table["properties"]["id"]["values"]]
                found += int(new_id in np.frombuffer(binary, "<u4", table["count"], view["byteOffset"]))
            assert found == 1
        finally:
            with conn, conn.cursor() as cur:
                cur.execute("DELETE FROM cim.building WHERE code = 'B-NEW'")
            conn.close()


def test_built_folder_served_while_current(server, t3d_url, t3d_home):
    build_folder(t3d_url, "pipelines", t3d_home / "3dtiles" / "pipelines", workers=1, per_tile=60)
    with httpx.Client(base_url=server, timeout=60) as c:
        served = c.get("/3dtiles/pipelines/tileset.json").json()
    built = (t3d_home / "3dtiles" / "pipelines" / "tileset.json").read_bytes()
    import json
    assert served == json.loads(built)


def _png_rgba(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    pos, idat = 8, b""
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        if data[pos + 4:pos + 8] == b"IDAT":
            idat += data[pos + 8:pos + 8 + n]
        pos += 12 + n
    return np.frombuffer(zlib.decompress(idat), "u1").reshape(h, w * 4 + 1)[:, 1:].reshape(h, w, 4)


def _png_alpha(data: bytes) -> np.ndarray:
    return _png_rgba(data)[..., 3]


def test_dem_status_and_hillshade(server, t3d_url):
    with httpx.Client(base_url=server, timeout=60) as c:
        st = c.get("/api/dem").json()
        assert st["loaded"] is True
        w, s, e, n = st["bounds"]
        assert abs(w - 111.44) < 1e-6 and abs(n - 27.245) < 1e-6
        # z15 tile over the hill of the test DEM → shaded pixels; far away → all transparent
        import math
        lon, lat, z = 111.445, 27.210, 15
        x = int((lon + 180) / 360 * 2 ** z)
        y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * 2 ** z)
        r = c.get(f"/tiles/hillshade/{z}/{x}/{y}.png")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        rgba = _png_rgba(r.content)
        shaded = rgba[..., 3] > 20
        assert shaded.mean() > 0.1
        assert (shaded & (rgba[..., 0] == 255)).any() and (shaded & (rgba[..., 0] == 0)).any()  # lit and shadow
        assert c.get(f"/tiles/hillshade/{z}/{x}/{y}.png", headers={"If-None-Match": r.headers["etag"]}).status_code == 304
        far = c.get("/tiles/hillshade/15/0/0.png")
        assert far.status_code == 200 and (_png_alpha(far.content) == 0).all()
        assert c.get("/tiles/hillshade/3/99/0.png").status_code == 400
        conn = psycopg2.connect(t3d_url)
        try:
            with conn, conn.cursor() as cur:
                cur.execute("UPDATE cim.dem SET is_current = false")
            assert c.get("/api/dem").json() == {"loaded": False, "bounds": None}
            gone = c.get(f"/tiles/hillshade/{z}/{x}/{y}.png")
            assert gone.status_code == 404 and gone.json()["message_zh"]
        finally:
            with conn, conn.cursor() as cur:
                cur.execute("UPDATE cim.dem SET is_current = true WHERE id = (SELECT max(id) FROM cim.dem)")
            conn.close()
