"""The tile cache after real ingests: a delivery loaded with `cim ingest` shows up in the next
tile, and a replacing delivery retires the old pipes from the tiles, with no purge ever called.

The server runs with its tile cache on; the deliveries are the survey shapefiles county teams
hand over (CJJ 61 YSPOINT / YSLINE, GBK, EPSG:4546), loaded through the CLI.
"""

from __future__ import annotations

import os
import subprocess
import time

import httpx
import mapbox_vector_tile
import pytest
from pyproj import Transformer

from tests.conftest import CIM_BIN
from tests.ingest.fixtures import E0, N0, line_geoms, network, point_geoms, write_network_shapefiles, write_shapefile
from tests.tiles.conftest import start_server
from tests.tiles.test_tile_content import tile_of

Z = 16
SHIFT_M = 3000.0  # the replacing delivery lies 3 km further east


@pytest.fixture(scope="module")
def ingest_server(make_database):
    url = make_database("cim_tiles_ingest")
    base, srv = start_server(url, cache_mb=64)
    yield url, base
    srv.should_exit = True


def _tiles_of_network(e0: float) -> set[tuple[int, int]]:
    """Tiles at zoom Z holding the points of the fixture network starting at easting ``e0``."""
    to_lonlat = Transformer.from_crs(4546, 4490, always_xy=True)
    out = set()
    for k in range(6):  # fixtures.network(): 6 points 30 m apart, running east
        lon, lat = to_lonlat.transform(e0 + 30.0 * k, N0)
        out.add(tile_of(lon, lat, Z))
    return out


def _segments(base: str, tiles: set[tuple[int, int]]) -> tuple[set, list[str]]:
    """Feature ids of pipeline segments in these tiles, and the tiles' ETags."""
    ids, etags = set(), []
    with httpx.Client(base_url=base, timeout=30) as http:
        for x, y in sorted(tiles):
            r = http.get(f"/tiles/pipeline_segments/{Z}/{x}/{y}.mvt")
            assert r.status_code in (200, 204), r.text
            etags.append(r.headers["etag"])
            if r.status_code == 200:
                ids |= {f["id"] for f in mapbox_vector_tile.decode(r.content)["pipeline_segments"]["features"]}
    return ids, etags


def _wait_for(base: str, tiles: set, predicate, timeout: float = 15.0) -> set:
    deadline = time.monotonic() + timeout
    ids, _ = _segments(base, tiles)
    while not predicate(ids) and time.monotonic() < deadline:
        time.sleep(0.1)
        ids, _ = _segments(base, tiles)
    return ids


def _ingest(url: str, folder, home) -> None:
    env = dict(os.environ, CIM_DATABASE_URL=url, CIM_HOME=str(home))
    res = subprocess.run([str(CIM_BIN), "ingest", str(folder), "--county", "430703"], capture_output=True,
                         text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr


def test_ingest_refreshes_cached_tiles(ingest_server, tmp_path):
    url, base = ingest_server
    old_tiles, new_tiles = _tiles_of_network(E0), _tiles_of_network(E0 + SHIFT_M)
    assert not old_tiles & new_tiles

    # before any delivery: empty tiles, now in the cache
    ids, etags_empty = _segments(base, old_tiles)
    assert ids == set()
    assert _segments(base, old_tiles)[1] == etags_empty  # same key: served from the cache

    first = tmp_path / "first"
    write_network_shapefiles(first, "YS")
    _ingest(url, first, tmp_path / "home")
    ids = _wait_for(base, old_tiles, lambda s: len(s) == 5)
    assert len(ids) == 5  # the 5 segments of the delivery, in the tiles that were cached empty
    assert _segments(base, old_tiles)[1] != etags_empty

    # a second delivery of the same county and network replaces the first one
    second = tmp_path / "second"
    pts, lines = network(prefix="YS", e0=E0 + SHIFT_M)
    write_shapefile(second, "YSPOINT", pts, point_geoms(pts))
    write_shapefile(second, "YSLINE", lines, line_geoms(pts, lines))
    _ingest(url, second, tmp_path / "home")
    new_ids = _wait_for(base, new_tiles, lambda s: len(s) == 5)
    assert len(new_ids) == 5 and not new_ids & ids
    # the old location no longer shows the retired pipes: no stale tile, no purge
    assert _wait_for(base, old_tiles, lambda s: not s) == set()
