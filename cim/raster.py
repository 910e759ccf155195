"""Digital elevation model access: find the current DEM and sample it at many points at once.

The DEM is a GeoTIFF registered in ``cim.dem`` (``ingest.dem.store_dem`` copies it under
``$CIM_HOME/dem/``). Heights are whatever the raster holds (normally 1985 National Height Datum,
metres). Sampling is vectorised: the query points are transformed into the raster CRS with one
pyproj call and read from the band array with numpy (bilinear by default, nearest on request).
Points outside the raster or on nodata cells give NaN.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import numpy as np
import psycopg2.extensions
import rasterio
from pyproj import Transformer

_LOCK = threading.Lock()


_CURRENT_SQL = ("SELECT id, name, file_path, srid, min_z, max_z, loaded_at, ST_XMin(bounds) AS w, "
                "ST_YMin(bounds) AS s, ST_XMax(bounds) AS e, ST_YMax(bounds) AS n "
                "FROM cim.dem WHERE is_current ORDER BY id DESC LIMIT 1")


def _dem(row: dict) -> dict:
    bounds = [row.pop(k) for k in ("w", "s", "e", "n")]
    return {**row, "bounds": bounds}


def current_dem(cur: psycopg2.extensions.cursor) -> dict | None:
    """The current DEM row (id, name, file_path, srid, min_z, max_z, loaded_at, bounds as
    [w, s, e, n] in EPSG:4490) or None."""
    cur.execute(_CURRENT_SQL)
    row = cur.fetchone()
    if row is None:
        return None
    return _dem(dict(zip([d[0] for d in cur.description], row, strict=True)))


async def current_dem_async(conn) -> dict | None:
    """:func:`current_dem` on an asyncpg connection or pool (the API's request path)."""
    row = await conn.fetchrow(_CURRENT_SQL)
    return None if row is None else _dem(dict(row))


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> tuple[np.ndarray, object, object]:
    """Band 1 as float64 with nodata → NaN, the affine transform and the CRS (cached per file)."""
    with rasterio.open(path) as src:
        band = src.read(1, masked=True).astype("float64")
        return np.ma.filled(band, np.nan), src.transform, src.crs


def read_dem(path: Path | str) -> tuple[np.ndarray, object, object]:
    """Elevation array (NaN for nodata), affine transform and CRS of a DEM file."""
    p = str(path)
    with _LOCK:
        return _load(p, Path(p).stat().st_mtime)


def _resolve(conn_or_path) -> str | None:
    if isinstance(conn_or_path, (str, Path)):
        return str(conn_or_path)
    with conn_or_path.cursor() as cur:
        dem = current_dem(cur)
    if dem is None or not Path(dem["file_path"]).is_file():
        return None
    return dem["file_path"]


def sample_array(data: np.ndarray, transform, crs, lons, lats, *, method: str = "bilinear") -> np.ndarray:
    """Sample an elevation array at lon/lat points (EPSG:4490 axis order lon, lat)."""
    lons = np.asarray(lons, dtype="float64").ravel()
    lats = np.asarray(lats, dtype="float64").ravel()
    xs, ys = lons, lats
    if crs is not None and crs.to_epsg() not in (4490, 4326):
        tr = Transformer.from_crs(4490, crs, always_xy=True)
        xs, ys = tr.transform(lons, lats)
    inv = ~transform  # fractional pixel coordinates (col, row) of the points
    xs, ys = np.asarray(xs), np.asarray(ys)
    cols, rows = inv.a * xs + inv.b * ys + inv.c, inv.d * xs + inv.e * ys + inv.f
    h, w = data.shape
    out = np.full(lons.shape, np.nan)
    if method == "nearest":
        ci, ri = np.floor(cols).astype(np.int64), np.floor(rows).astype(np.int64)
        ok = (ci >= 0) & (ci < w) & (ri >= 0) & (ri < h)
        out[ok] = data[ri[ok], ci[ok]]
        return out
    # Bilinear between pixel centres (centre of pixel i is at i + 0.5), clamped at the edges.
    fc, fr = cols - 0.5, rows - 0.5
    inside = (cols >= 0) & (cols <= w) & (rows >= 0) & (rows <= h)
    c0 = np.clip(np.floor(fc), 0, w - 1).astype(np.int64)
    r0 = np.clip(np.floor(fr), 0, h - 1).astype(np.int64)
    c1, r1 = np.minimum(c0 + 1, w - 1), np.minimum(r0 + 1, h - 1)
    tc, tr_ = np.clip(fc - c0, 0, 1), np.clip(fr - r0, 0, 1)
    c0, c1, r0, r1 = (a[inside] for a in (c0, c1, r0, r1))
    tc, tr_ = tc[inside], tr_[inside]
    top = data[r0, c0] * (1 - tc) + data[r0, c1] * tc
    bottom = data[r1, c0] * (1 - tc) + data[r1, c1] * tc
    out[inside] = top * (1 - tr_) + bottom * tr_
    return out


def sample_dem(conn_or_path, lons, lats, *, method: str = "bilinear") -> np.ndarray | None:
    """Elevations at lon/lat points from the current DEM (a connection) or a DEM file (a path).

    Returns a float array (NaN outside the raster or on nodata) or None when no DEM is loaded.
    ``method`` is ``"bilinear"`` (default) or ``"nearest"``.
    """
    path = _resolve(conn_or_path)
    if path is None:
        return None
    data, transform, crs = read_dem(path)
    return sample_array(data, transform, crs, lons, lats, method=method)
