"""A real uvicorn server for the upload API tests, with its own CIM_HOME, and upload builders."""

from __future__ import annotations

import io
import threading
import zipfile
from pathlib import Path

import geopandas as gpd
import shapely
import testkit
import uvicorn

from api.app import create_app
from cim import auth
from cim.embedded import free_port
from cim.settings import AuthSettings, DatabaseSettings, IngestSettings, Settings


class LiveServer:
    """``create_app`` on uvicorn in a thread, stopped with :meth:`stop`."""

    def __init__(self, db_url: str, home: Path, max_upload_mb: int = 1) -> None:
        settings = Settings(db=DatabaseSettings(database_url=db_url, home=home),
                            auth=AuthSettings(public_read=False), ingest=IngestSettings(max_upload_mb=max_upload_mb))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        testkit.wait_healthy(self.url)

    def stop(self) -> None:
        """Graceful shutdown (runs the app's shutdown hooks)."""
        self.server.should_exit = True
        self.thread.join(30)


def token(conn, role: auth.Role, counties: list[str] | None = None) -> str:
    """A fresh token secret."""
    with conn.cursor() as cur:
        tok = auth.create_token(cur, name=f"api-ingest-{role.value}", role=role, counties=counties or [])
    conn.commit()
    return tok.secret


PRJ_4546 = ('PROJCS["CGCS2000_3_Degree_GK_CM_111E",GEOGCS["GCS_China_Geodetic_Coordinate_System_2000",'
            'DATUM["D_China_2000",SPHEROID["CGCS2000",6378137.0,298.257222101]],PRIMEM["Greenwich",0.0],'
            'UNIT["Degree",0.0174532925199433]],PROJECTION["Gauss_Kruger"],PARAMETER["False_Easting",500000.0],'
            'PARAMETER["False_Northing",0.0],PARAMETER["Central_Meridian",111.0],PARAMETER["Scale_Factor",1.0],'
            'PARAMETER["Latitude_Of_Origin",0.0],UNIT["Meter",1.0]]')


def shapefile_set(tmp: Path, name: str = "JSPOINT", n: int = 5) -> dict[str, bytes]:
    """The parts of a small point shapefile in EPSG:4546 (CJJ 61 point table fields)."""
    x0, y0 = 567300.0, 3213000.0
    gdf = gpd.GeoDataFrame({"WTDH": [f"JS{i}" for i in range(n)], "DMGC": [50.0 + i for i in range(n)],
                            "TZ": ["直线点"] * n},
                           geometry=shapely.points([x0 + 10 * i for i in range(n)], [y0] * n), crs="EPSG:4546")
    out = tmp / name
    out.mkdir(exist_ok=True)
    gdf.to_file(out / f"{name}.shp", engine="pyogrio", encoding="UTF-8")
    return {p.name: p.read_bytes() for p in out.iterdir()}


def zipped(members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip archive holding ``members`` (names used verbatim, so traversal names can be built)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()
