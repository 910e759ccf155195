"""Counties on their own ground in the 3D view: two counties of one instance whose DEMs stand
800 m and 50 m high and overlap completely, so a terrain drawn from "whatever DEM covers the spot"
or a tileset lowered by one offset would bury or float one of them.

- ``GET /api/dem/heights/{level}/{x}/{y}``: each point of the grid on the DEM of the county that
  holds it (the newer DEM elsewhere, 0 outside every DEM); bad addresses and sizes are 400 with a
  bilingual message; ETag and 304;
- the 3D view in headless Chromium: the terrain drawn under each county's buildings is that
  county's DEM, the buildings' bases (sampled roof minus height, and the picked feature's
  ``ground_z_3d``) meet it within 2 m, and no tileset is moved.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx
import numpy as np
import psycopg2
import pytest
import rasterio
from rasterio.transform import from_origin

from cim.auth import CLI_PRINCIPAL
from ingest.dem import store_dem
from tests.web.conftest import WebServer, open_map

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

# Both counties inside terrain tile 10/1659/356 (lon 111.6211..111.7969, lat 27.2461..27.4219).
WEST, SPLIT, EAST, SOUTH, NORTH = 111.64, 111.67, 111.70, 27.30, 27.34
AREAS = {"990021": (WEST, SPLIT), "990022": (SPLIT, EAST)}          # west, east of each county
DEM_BOX = (111.635, 27.295, 111.705, 27.345)                        # both DEMs cover both counties
BASE = {"990021": 50.0, "990022": 800.0}
RISE_PER_DEG = 500.0                                                # 30 m eastwards across the box
TILE = (10, 1659, 356)
HEIGHT_M = 20.0
CENTRES = {"990021": (111.655, 27.32), "990022": (111.685, 27.32)}


def dem_height(county: str, lon):
    """The elevation each county's DEM holds: its base plus a uniform rise eastwards."""
    return BASE[county] + RISE_PER_DEG * (np.asarray(lon) - DEM_BOX[0])


def _write_dem(path: Path, county: str) -> Path:
    res = 0.0005
    w, s, e, n = DEM_BOX
    cols, rows = int(round((e - w) / res)), int(round((n - s) / res))
    lon = w + (np.arange(cols) + 0.5) * res
    z = np.repeat(dem_height(county, lon)[None, :], rows, axis=0).astype("float32")
    with rasterio.open(path, "w", driver="GTiff", width=cols, height=rows, count=1, dtype="float32", crs="EPSG:4490",
                       transform=from_origin(w, n, res, res), nodata=-9999.0) as dst:
        dst.write(z, 1)
    return path


@pytest.fixture(scope="module")
def terrain_server(make_database, web_dist):
    """Two counties in one database, each with a row of buildings, a water main and its own DEM
    (the east one stored last)."""
    url = make_database("cim_web_terrain")
    home = Path(tempfile.mkdtemp(prefix="cim-web-terrain-", dir="/tmp"))
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            for code, (w, e) in AREAS.items():
                cur.execute("INSERT INTO cim.admin_area (code, parent_code, name, level, county_code, geom) VALUES "
                            "(%s, '990000', %s, 'county', %s, ST_Multi(ST_MakeEnvelope(%s, %s, %s, %s, 4490)))",
                            (code, f"地形测试县{code[-1]}", code, w, SOUTH, e, NORTH))
                cx, cy = CENTRES[code]
                for i, dx in enumerate((-0.002, 0.0, 0.002)):   # 40 m squares, no ground_z: the DEM places them
                    x = cx + dx
                    cur.execute("INSERT INTO cim.building (code, name, height_m, floors_above, county_code, geom) VALUES "
                                "(%s, %s, %s, 6, %s, ST_Multi(ST_MakeEnvelope(%s, %s, %s, %s, 4490)))",
                                (f"T{code}-{i}", f"地形测试楼{code}-{i}", HEIGHT_M, code,
                                 x - 0.0002, cy - 0.0002, x + 0.0002, cy + 0.0002))
                cur.execute("INSERT INTO cim.pipe_segment (network, subtype, code, start_exp_no, end_exp_no, start_depth, "
                            "end_depth, diameter_mm, material, county_code, geom) VALUES ('JS', 'JP', %s, 'A', 'B', 1.2, 1.2, "
                            "300, 'QM', %s, "
                            "ST_SetSRID(ST_MakeLine(ST_MakePoint(%s, %s), ST_MakePoint(%s, %s)), 4490))",
                            (f"TJ{code}", code, cx - 0.004, cy - 0.0005, cx + 0.004, cy - 0.0005))
        conn.commit()
        for code in AREAS:
            store_dem(conn, _write_dem(home / f"dem-{code}.tif", code), principal=CLI_PRINCIPAL, home=home, county=code)
    finally:
        conn.close()
    server = WebServer(url, web_dist, home).start()
    yield server
    server.stop()


def _grid(level: int, x: int, y: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    span = 180.0 / 2 ** level
    w, n = -180.0 + x * span, 90.0 - y * span
    return np.meshgrid(np.linspace(w, w + span, size), np.linspace(n, n - span, size))


def test_heights_endpoint_gives_each_county_its_own_ground(terrain_server):
    with httpx.Client(base_url=terrain_server.url, timeout=60) as http:
        size = 129
        r = http.get(f"/api/dem/heights/{TILE[0]}/{TILE[1]}/{TILE[2]}", params={"size": size})
        assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
        z = np.frombuffer(r.content, "<f4").reshape(size, size)
        lons, lats = _grid(*TILE, size)
        in_lat = (lats > SOUTH + 1e-6) & (lats < NORTH - 1e-6)
        checked = 0
        for code, (w, e) in AREAS.items():
            inside = in_lat & (lons > w + 1e-6) & (lons < e - 1e-6)
            assert inside.sum() > 200
            np.testing.assert_allclose(z[inside], dem_height(code, lons[inside]), atol=0.01)
            checked += int(inside.sum())
        # outside both counties but on the DEMs: the newer DEM (the east county's); outside every DEM: 0
        w, s, e, n = DEM_BOX
        on_dems = (lons > w + 0.001) & (lons < e - 0.001) & (lats > s + 0.001) & (lats < n - 0.001)
        between = on_dems & ~((lons >= WEST) & (lons <= EAST) & (lats >= SOUTH) & (lats <= NORTH))
        np.testing.assert_allclose(z[between], dem_height("990022", lons[between]), atol=0.01)
        off = (lons < w - 0.001) | (lons > e + 0.001) | (lats < s - 0.001) | (lats > n + 0.001)
        assert off.sum() > size * size // 2 and not z[off].any()
        # the same tile again: 304 by its ETag
        again = http.get(f"/api/dem/heights/{TILE[0]}/{TILE[1]}/{TILE[2]}", params={"size": size},
                         headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304
        # a tile far from every DEM is flat ellipsoid
        far = http.get("/api/dem/heights/3/0/0", params={"size": 5})
        assert far.status_code == 200 and np.frombuffer(far.content, "<f4").tolist() == [0.0] * 25
        for path, params in (("/api/dem/heights/3/16/0", {}), ("/api/dem/heights/3/0/8", {}),
                             ("/api/dem/heights/23/0/0", {}), ("/api/dem/heights/3/0/0", {"size": 1}),
                             ("/api/dem/heights/3/0/0", {"size": 500})):
            bad = http.get(path, params=params)
            assert bad.status_code == 400, (path, params, bad.status_code)
            body = bad.json()
            assert body["message_zh"] and body["message_en"], body


def _wait_3d(page) -> None:
    """Both tilesets loaded and every tile of the view rendered, tiles and globe."""
    page.wait_for_function("""() => { const v = window.cim.view3d;
        return v && v.status.buildings && v.status.pipelines; }""", timeout=180_000)
    page.wait_for_function("""() => { const v = window.cim.view3d; v.viewer.scene.requestRender();
        return Object.values(v.tilesets).every((t) => t.tilesLoaded) && v.viewer.scene.globe.tilesLoaded; }""",
                           timeout=180_000, polling=500)
    page.wait_for_timeout(500)


_MEASURE = """([lon, lat]) => {
    const v = window.cim.view3d, C = window.Cesium, scene = v.viewer.scene;
    scene.render();
    const here = C.Cartographic.fromDegrees(lon, lat);
    const ground = scene.globe.getHeight(here);                       // the terrain drawn here
    const top = scene.sampleHeightSupported ? scene.sampleHeight(here) : undefined;   // roof of what stands here
    const c = scene.canvas;
    const f = scene.pick(new C.Cartesian2(c.clientWidth / 2, c.clientHeight / 2));
    const picked = f instanceof C.Cesium3DTileFeature
        ? {code: f.getProperty('code'), ground_z_3d: f.getProperty('ground_z_3d'), height_3d: f.getProperty('height_3d')} : null;
    const moved = Object.values(v.tilesets).some((t) => !C.Matrix4.equals(t.modelMatrix, C.Matrix4.IDENTITY));
    return {ground, top, picked, moved, terrain: !!v.terrain};
}"""


def test_each_county_stands_on_its_own_ground_in_3d(terrain_server, page, artifacts):
    page.set_default_timeout(120_000)
    lon, lat = CENTRES["990021"]
    open_map(page, terrain_server, view=f"17/{lat}/{lon}")
    page.locator("#btn-3d").click()
    for code in ("990021", "990022"):
        lon, lat = CENTRES[code]
        if code != "990021":   # straight down over the other county's middle building
            page.evaluate("([lon, lat]) => window.cim.view3d.setView({center: [lon, lat], zoom: 17, bearing: 0, pitch: 0}, "
                          "document.getElementById('globe').clientHeight)", [lon, lat])
        _wait_3d(page)
        m = page.evaluate(_MEASURE, [lon, lat])
        want = float(dem_height(code, lon))
        assert m["terrain"] and not m["moved"], m
        assert m["ground"] == pytest.approx(want, abs=2.0), (code, m)        # the county's own DEM is drawn here
        assert m["picked"] and m["picked"]["code"] == f"T{code}-1", (code, m)
        assert m["picked"]["ground_z_3d"] == pytest.approx(m["ground"], abs=2.0), (code, m)
        assert m["top"] is not None, m
        assert m["top"] - HEIGHT_M == pytest.approx(m["ground"], abs=2.0), (code, m)   # the drawn base meets the ground
        page.screenshot(path=str(artifacts / f"web_3d_terrain_{code}.png"))
    assert [e for e in page.errors if "favicon" not in e] == [], page.errors
