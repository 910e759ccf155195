"""Builders for the tier tests: small deliveries of two neighbouring counties and their DEMs.

鼎城区 (430703) lies west of 安乡县 (430721) in these tests: each county's admin polygon, buildings
and pipes sit in its own half of a 0.04° × 0.02° box around 111.70E 29.04N. The two DEMs both cover
the whole box but stand at different elevations (50 m and 500 m), so a feature placed by its own
county's DEM and one placed by "whatever DEM covers the spot" differ by 450 m.
"""

from __future__ import annotations

import hashlib
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import shapely
from rasterio.transform import from_origin

from ingest.model import Delivery, LayerBatch, Report

WEST, SOUTH, EAST, NORTH = 111.68, 29.03, 111.72, 29.05
SPLIT = 111.70                              # 430703 west of it, 430721 east
GROUND = {"430703": 50.0, "430721": 500.0}  # elevations of the counties' DEMs
ORIGIN = {"430703": 111.685, "430721": 111.705}


def admin_area(county: str, name: str) -> LayerBatch:
    """The county's polygon (level county), with its province and city codes as parents."""
    west = WEST if county == "430703" else SPLIT
    frame = pd.DataFrame({"code": [county], "parent_code": [county[:4] + "00"], "name": [name], "level": ["county"],
                          "geom": [shapely.box(west, SOUTH, west + (SPLIT - WEST), NORTH)]})
    return LayerBatch("admin_area", "XZQ", "test", frame)


def buildings(county: str, n: int, *, tag: str, row: int = 0) -> LayerBatch:
    """``n`` small buildings named ``<tag>-<i>`` in a row inside the county (no ground_z: the DEM places them)."""
    x0 = ORIGIN[county]
    lat = 29.036 + row * 0.002
    xs = x0 + np.arange(n) * 3e-4
    frame = pd.DataFrame({
        "code": [f"{tag}-{i}" for i in range(n)],
        "name": [f"{tag}-{i}" for i in range(n)],
        "floors_above": pd.array([4] * n, dtype="Int64"),
        "height_m": np.full(n, 12.0),
        "geom": shapely.box(xs, lat, xs + 1.5e-4, lat + 1.5e-4),
    })
    return LayerBatch("building", "房屋", "test", frame)


def pipes(county: str, n: int, *, network: str = "JS", tag: str = "P") -> list[LayerBatch]:
    """A straight main of ``n`` points and ``n - 1`` segments along the county's row of buildings."""
    x0 = ORIGIN[county]
    xs = x0 + np.arange(n) * 2e-4
    lat = 29.0345
    pts = pd.DataFrame({"exp_no": [f"{tag}{i}" for i in range(n)], "ground_z": np.full(n, np.nan),
                        "feature": ["直线点"] * n, "geom": shapely.points(xs, np.full(n, lat))})
    coords = np.stack([np.column_stack([xs[:-1], np.full(n - 1, lat)]), np.column_stack([xs[1:], np.full(n - 1, lat)])], 1)
    segs = pd.DataFrame({"start_exp_no": [f"{tag}{i}" for i in range(n - 1)],
                         "end_exp_no": [f"{tag}{i + 1}" for i in range(n - 1)],
                         "diameter_mm": np.full(n - 1, 300.0), "material": ["PE"] * (n - 1),
                         "geom": shapely.linestrings(coords)})
    return [LayerBatch("pipe_point", f"{network}POINT", "test", pts, network=network),
            LayerBatch("pipe_segment", f"{network}LINE", "test", segs, network=network)]


def delivery(tmp: Path, batches: list[LayerBatch], county: str) -> Report:
    """A report without findings for a delivery whose (random) original is written under ``tmp``."""
    name = f"{county}-{time.monotonic_ns()}.zip"
    path = tmp / name
    path.write_bytes(random.randbytes(64))
    data = path.read_bytes()
    d = Delivery(path=path, file_name=name, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data),
                 county_code=county, batches=batches)
    return Report(d)


def write_dem(path: Path, ground: float) -> Path:
    """A DEM over the whole test box: flat at ``ground`` m with a 30 m hill in the middle of each half."""
    res = 0.0002
    w, h = int(round((EAST - WEST) / res)), int(round((NORTH - SOUTH) / res))
    lon = WEST + (np.arange(w) + 0.5) * res
    lat = NORTH - (np.arange(h) + 0.5) * res
    z = np.full((h, w), ground, "float32")
    for cx in (111.69, 111.71):
        d2 = (lon[None, :] - cx) ** 2 + (lat[:, None] - 29.045) ** 2
        z += (30 * np.exp(-d2 / (2 * 0.002 ** 2))).astype("float32")
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype="float32", crs="EPSG:4490",
                       transform=from_origin(WEST, NORTH, res, res), nodata=-9999.0) as dst:
        dst.write(z, 1)
    return path
