"""Fixtures of the 3D Tiles tests: a database of their own, seeded by SQL, with a real DEM.

The database is created beside the session's test database (same server) so the seeded
buildings and pipes never disturb other test modules that count rows.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import psycopg2
import pytest
import rasterio
import testkit
from rasterio.transform import from_origin

from cim.auth import CLI_PRINCIPAL

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VALIDATOR_JS = HERE / "validate_gltf.mjs"


def write_dem(path: Path, *, epsg: int = 4490) -> Path:
    """A 200 × 200 DEM over the seeded area: a slope from 50 m (west) to 60 m (east), and a 60 m hill
    at 111.445E 27.210N, south-west of the buildings."""
    w, n, res = 111.440, 27.245, 0.0002
    z = np.tile(np.linspace(50, 60, 200, dtype="float32"), (200, 1))
    lon = w + (np.arange(200) + 0.5) * res
    lat = n - (np.arange(200) + 0.5) * res
    d2 = (lon[None, :] - 111.445) ** 2 + (lat[:, None] - 27.210) ** 2
    z += (60 * np.exp(-d2 / (2 * 0.002 ** 2))).astype("float32")
    z[0, 0] = -9999.0
    with rasterio.open(path, "w", driver="GTiff", width=200, height=200, count=1, dtype="float32",
                       crs=f"EPSG:{epsg}", transform=from_origin(w, n, res, res), nodata=-9999.0) as dst:
        dst.write(z, 1)
    return path


@pytest.fixture(scope="session")
def t3d_home(tmp_path_factory) -> Path:
    """A CIM_HOME for the 3D tests (DEM copies, built tilesets)."""
    return tmp_path_factory.mktemp("cim-home-3d")


@pytest.fixture(scope="session")
def t3d_url(make_database, t3d_home):
    """URL of a migrated database seeded with buildings, pipes, wells and a DEM."""
    url = make_database("cim_t3d")
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute((HERE / "seed.sql").read_text(encoding="utf-8"))
        conn.commit()
        from ingest.dem import store_dem
        store_dem(conn, write_dem(t3d_home / "terrain.tif"), principal=CLI_PRINCIPAL, home=t3d_home)
    finally:
        conn.close()
    yield url


@pytest.fixture
def t3d_conn(t3d_url):
    """A connection to the seeded 3D database, rolled back afterwards."""
    with testkit.connection(t3d_url) as c:
        yield c


def validate_gltf(paths: list[Path]) -> list[dict]:
    """Run the Khronos glTF validator (npm gltf-validator, validateBytes) on GLB files."""
    node = shutil.which("node")
    assert node, "node is required for gltf-validator"
    res = subprocess.run([node, str(VALIDATOR_JS), *map(str, paths)], capture_output=True, text=True,
                         cwd=ROOT / "web", timeout=600)
    assert res.returncode in (0, 1), res.stderr
    return json.loads(res.stdout)


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server(t3d_url, t3d_home):
    """The real app on uvicorn (public reads on) serving the seeded database; yields the base URL."""
    import uvicorn

    from api.app import create_app
    from cim.settings import AuthSettings, DatabaseSettings, Settings, TileSettings

    settings = Settings(db=DatabaseSettings(database_url=t3d_url, home=t3d_home),
                        auth=AuthSettings(public_read=True), tiles=TileSettings(threed_dir=t3d_home / "3dtiles"))
    app = create_app(settings)
    app.state.tiles3d_per_tile = 60   # several tiles from the small seed (the specs say 1000 / 2000)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)
