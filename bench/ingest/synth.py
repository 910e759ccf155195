"""A synthetic county delivery of any size, written the way a survey contractor hands it over.

One zip with three ESRI Shapefile sets in CGCS2000 3° GK CM 111E (EPSG:4546) with ``.prj``,
GBK DBFs with a ``.cpg``, CJJ 61 layer names and pinyin field names:

- ``JSPOINT``: water-supply points on a street grid (物探点号 WTDH, 地面高程 DMGC, 特征 TZ …);
- ``JSLINE``: segments joining consecutive points of each row, plus one column joining the rows,
  so the network is one tree (``points - 1`` segments) with consistent ends;
- ``房屋``: square building footprints with floors, height and structure.

Used by ``bench/ingest/run.py`` (100k of each) and by the kill test (a smaller delivery).
Vectorised with numpy + shapely + pyogrio; no per-feature Python loop.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

X0, Y0 = 560000.0, 3205000.0      # EPSG:4546 metres, near 29.0N 111.6E
STEP = 12.0                       # metres between pipeline points along a street


def _grid(n: int) -> tuple[np.ndarray, np.ndarray, int]:
    cols = max(2, int(math.sqrt(n)))
    idx = np.arange(n)
    return X0 + (idx % cols) * STEP, Y0 + (idx // cols) * STEP, cols


def _ends(n_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end point indexes of the segment tree: along each row, down the first column."""
    _, _, cols = _grid(n_points)
    idx = np.arange(n_points)
    along = idx[(idx % cols != cols - 1) & (idx + 1 < n_points)]
    return (np.concatenate([along, np.arange(0, n_points - cols, cols)]),
            np.concatenate([along + 1, np.arange(cols, n_points, cols)]))


def points_frame(n: int) -> gpd.GeoDataFrame:
    """``n`` water points on a grid of streets; 特征 (TZ) matches each point's connections."""
    x, y, _ = _grid(n)
    ground = _ground(x, y)
    starts, ends = _ends(n)
    degree = np.bincount(np.concatenate([starts, ends]), minlength=n)
    return gpd.GeoDataFrame({
        "WTDH": np.char.add("JS", np.arange(1, n + 1).astype(str)),
        "TZ": np.select([degree == 3, degree >= 4], ["三通", "四通"], "直线点"),
        "DMGC": ground,
        "MS": np.round(1.2 + (np.arange(n) % 5) * 0.1, 2),
        "SZDL": np.where(np.arange(n) % 2 == 0, "建设路", "人民路"),
        "QSDW": "县自来水公司",
    }, geometry=shapely.points(x, y), crs="EPSG:4546")


def _ground(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.round(45.0 + 0.002 * (x - X0) + 0.001 * (y - Y0), 3)


def lines_frame(n_points: int, *, elevations: bool = False) -> gpd.GeoDataFrame:
    """The tree of segments over :func:`points_frame`: along each row, and down the first column.

    ``elevations``: each end also carries its pipe elevation (起点高程 QDGC, 终点高程 ZDGC), ground
    minus depth at its point, which makes every segment of the network subject to the elevation
    rules (closure at each end, one elevation per point, vertical clearance at crossings)."""
    x, y, _ = _grid(n_points)
    starts, ends = _ends(n_points)
    coords = np.stack([np.column_stack([x[starts], y[starts]]), np.column_stack([x[ends], y[ends]])], axis=1)
    n = len(starts)
    depth = np.full(n, 1.2)
    z = ({"QDGC": np.round(_ground(x[starts], y[starts]) - depth, 3), "ZDGC": np.round(_ground(x[ends], y[ends]) - depth, 3)}
         if elevations else {})
    return gpd.GeoDataFrame({
        "QDDH": np.char.add("JS", (starts + 1).astype(str)),
        "ZDDH": np.char.add("JS", (ends + 1).astype(str)),
        "QDMS": depth, "ZDMS": np.full(n, 1.3) if not elevations else depth, **z,
        "GJ": np.where(np.arange(n) % 3 == 0, 300, 200).astype(np.int32),
        "CZ": np.where(np.arange(n) % 2 == 0, "球墨铸铁管", "PE管"),
        "MSFS": "直埋式",
        "JSND": 2015,
        "QSDW": "县自来水公司",
    }, geometry=shapely.linestrings(coords), crs="EPSG:4546")


def buildings_frame(n: int) -> gpd.GeoDataFrame:
    """``n`` 10 m square footprints north of the pipe grid."""
    cols = max(1, int(math.sqrt(n)))
    idx = np.arange(n)
    x = X0 + (idx % cols) * 16.0
    y = Y0 + 8000.0 + (idx // cols) * 16.0
    floors = 1 + idx % 12
    return gpd.GeoDataFrame({
        "FWBH": np.char.add("FW", np.arange(1, n + 1).astype(str)),
        "DSCS": floors.astype(np.int32),
        "JZGD": np.round(floors * 3.0 + 0.5, 1),
        "JGLX": np.where(floors > 6, "钢筋混凝土", "砖混"),
        "FWYT": "住宅",
        "JCNF": 1990 + idx % 30,
    }, geometry=shapely.box(x, y, x + 10.0, y + 10.0), crs="EPSG:4546")


def write_delivery(out: Path, *, points: int, buildings: int, name: str = "synthetic_delivery.zip") -> Path:
    """Write the zip (reused when it exists with the same sizes); return its path."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / name
    stamp = out / (name + ".sizes")
    sizes = f"{points} {buildings}"
    if target.exists() and stamp.exists() and stamp.read_text() == sizes:
        return target
    parts = out / (name + ".parts")
    parts.mkdir(exist_ok=True)
    layers = {"JSPOINT": points_frame(points), "JSLINE": lines_frame(points)}
    if buildings:
        layers["房屋"] = buildings_frame(buildings)
    for layer, frame in layers.items():
        frame.to_file(parts / f"{layer}.shp", engine="pyogrio", encoding="GBK")
    tmp = target.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for p in sorted(parts.iterdir()):
            zf.write(p, p.name)
    tmp.replace(target)
    stamp.write_text(sizes)
    return target


def counts(points: int, buildings: int) -> dict[str, int]:
    """Feature counts of a delivery written with these sizes."""
    return {"pipe_point": points, "pipe_segment": len(lines_frame(points)), "building": buildings}


if __name__ == "__main__":
    import sys

    print(write_delivery(Path(sys.argv[1]), points=int(sys.argv[2]), buildings=int(sys.argv[3])))
    print(pd.Series(counts(int(sys.argv[2]), int(sys.argv[3]))).to_string())
