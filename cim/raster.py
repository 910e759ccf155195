"""Digital elevation models: the current DEM of each county, their files, and sampling at many points.

DEMs are GeoTIFFs registered in ``cim.dem`` (``ingest.dem.store_dem`` copies them under
``$CIM_HOME/dem/<sha256>.tif``). Each county has at most one current DEM (``county_code``); a
DEM registered without a county (``''``) serves the whole instance, for the features of a county
without one of its own. A county's DEM never stands in for another county's: a city or province
holding several counties places each county's features on that county's ground
(:func:`sample_by_county`). Heights are whatever the raster holds (normally 1985 National Height
Datum, metres). Sampling is vectorised: the query points are transformed into the raster CRS with
one pyproj call and read from the band array with numpy (bilinear by default, nearest on request).
Points outside a raster or on nodata cells give NaN.

The ground of places
    The 3D view draws its terrain from the same rule that places features: a point inside a
    county's area stands on that county's DEM (:func:`ground_of_places`,
    :func:`terrain_tile_async` serves it as heightmap tiles), so each county's buildings meet
    the ground drawn under them even where the DEMs of neighbouring counties overlap.

Files of DEMs received from lower-tier instances
    A DEM file is not in the database, so an instance that publishes keeps the bytes of its
    area's current DEMs in ``cim.dem_file`` (:func:`publish_dem_files`), which replicates with the
    registrations. A subscriber writes them back to ``<dem_dir>/<sha256>.tif`` (its
    ``cim.tier_instance.dem_dir``) the first time a reader needs that DEM (:func:`dem_path`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt
import psycopg2.extensions
import rasterio
import shapely
from pyproj import Transformer

from cim.dbcall import AsyncConn
from cim.errors import InvalidInput

log = logging.getLogger(__name__)
_LOCK = threading.Lock()
PART_BYTES = 8 * 1024 * 1024
INSTANCE = ""   # county_code of a DEM serving the whole instance

_CURRENT_SQL = ("SELECT d.id, d.county_code, d.name, d.file_path, d.sha256, d.srid, d.min_z, d.max_z, d.loaded_at, "
                "ST_XMin(d.bounds), ST_YMin(d.bounds), ST_XMax(d.bounds), ST_YMax(d.bounds) "
                "FROM cim.dem d WHERE d.is_current ORDER BY d.id DESC")
_FIELDS = ("id", "county_code", "name", "file_path", "sha256", "srid", "min_z", "max_z", "loaded_at")


def _row(row: Sequence[Any]) -> dict[str, Any]:
    out = dict(zip(_FIELDS, row[:9], strict=True))
    out["bounds"] = [float(v) for v in row[9:13]]
    return out


def current_dems(cur: psycopg2.extensions.cursor) -> list[dict[str, Any]]:
    """Every current DEM (one per county, plus the instance's own), newest first."""
    cur.execute(_CURRENT_SQL)
    return [_row(r) for r in cur.fetchall()]


async def current_dems_async(conn: AsyncConn | asyncpg.Pool) -> list[dict[str, Any]]:
    """:func:`current_dems` on an asyncpg connection or pool."""
    return [_row(tuple(r)) for r in await conn.fetch(_CURRENT_SQL)]


def current_dem(cur: psycopg2.extensions.cursor, county: str | None = None) -> dict[str, Any] | None:
    """The current DEM of ``county`` (else the instance's), or the newest of all when no county is named."""
    dems = current_dems(cur)
    if county is None:
        return dems[0] if dems else None
    by = {d["county_code"]: d for d in dems}
    return by.get(county) or by.get(INSTANCE)


def summary(dems: list[dict[str, Any]]) -> dict[str, Any]:
    """``GET /api/dem``: whether a DEM is loaded, the union of the current DEMs' extents, the
    newest one's name and time, the elevation range, and each DEM."""
    if not dems:
        return {"loaded": False, "bounds": None}
    b = [d["bounds"] for d in dems]
    newest = dems[0]
    lows = [d["min_z"] for d in dems if d["min_z"] is not None]
    highs = [d["max_z"] for d in dems if d["max_z"] is not None]
    return {"loaded": True, "bounds": [min(x[0] for x in b), min(x[1] for x in b), max(x[2] for x in b), max(x[3] for x in b)],
            "id": newest["id"], "name": newest["name"], "min_z": min(lows, default=None), "max_z": max(highs, default=None),
            "loaded_at": newest["loaded_at"].isoformat(),
            "dems": [{"id": d["id"], "county_code": d["county_code"] or None, "name": d["name"], "bounds": d["bounds"],
                      "min_z": d["min_z"], "max_z": d["max_z"], "loaded_at": d["loaded_at"].isoformat()} for d in dems]}


# --- files ---------------------------------------------------------------------------------------

def _dem_dir(cur: psycopg2.extensions.cursor) -> Path | None:
    cur.execute("SELECT dem_dir FROM cim.tier_instance")
    row = cur.fetchone()
    return Path(row[0]) if row and row[0] else None


def dem_path(cur: psycopg2.extensions.cursor, dem: dict[str, Any]) -> str | None:
    """A readable file of ``dem``: this instance's copy ``<dem_dir>/<sha256>.tif``, written from the
    replicated bytes when it is missing, else the registered ``file_path``; None when neither exists."""
    local_dir = _dem_dir(cur)
    if local_dir is not None:
        local = local_dir / f"{dem['sha256']}.tif"
        if local.is_file():
            return str(local)
        try:
            if _materialise(cur, dem, local):
                return str(local)
        except OSError as exc:   # an unwritable dem_dir: fall back to the registered path
            log.warning("cannot write DEM %s to %s: %s", dem["sha256"][:12], local_dir, exc)
    path = Path(dem["file_path"])
    return str(path) if path.is_file() else None


def _materialise(cur: psycopg2.extensions.cursor, dem: dict[str, Any], target: Path) -> bool:
    """Write the replicated parts of ``dem`` to ``target`` (checked against its sha256); False
    when they are not (all) here yet."""
    cur.execute("SELECT count(*), max(parts) FROM cim.dem_file WHERE county_code = %s AND sha256 = %s",
                (dem["county_code"], dem["sha256"]))
    row = cur.fetchone()
    assert row is not None  # an aggregate without GROUP BY returns one row
    have, parts = row
    if not parts or have != parts:
        return False

    def chunks() -> Iterator[bytes]:
        for part in range(parts):
            cur.execute("SELECT data FROM cim.dem_file WHERE county_code = %s AND sha256 = %s AND part = %s",
                        (dem["county_code"], dem["sha256"], part))
            part_row = cur.fetchone()
            assert part_row is not None  # counted above: every part is present
            yield bytes(part_row[0])

    return _write_parts(target, dem["sha256"], chunks())


def _write_parts(target: Path, sha256: str, chunks: Iterable[bytes]) -> bool:
    """Write ``chunks`` to ``target`` through a temporary file, kept only when its sha256 matches."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
    digest = hashlib.sha256()
    with tmp.open("wb") as fh:
        for data in chunks:
            digest.update(data)
            fh.write(data)
    if digest.hexdigest() != sha256:
        tmp.unlink(missing_ok=True)
        return False
    os.replace(tmp, target)
    return True


async def dem_paths_async(conn: AsyncConn | asyncpg.Pool, dems: list[dict[str, Any]]) -> list[str | None]:
    """:func:`dem_path` of each of ``dems`` on an asyncpg connection or pool (the API's request
    path); replicated bytes are written out in a worker thread."""
    local_dir = await conn.fetchval("SELECT dem_dir FROM cim.tier_instance")
    out: list[str | None] = []
    for dem in dems:
        path = None
        if local_dir:
            local = Path(local_dir) / f"{dem['sha256']}.tif"
            if local.is_file():
                path = str(local)
            else:
                rows = await conn.fetch("SELECT parts, data FROM cim.dem_file WHERE county_code = $1 AND sha256 = $2 "
                                        "ORDER BY part", dem["county_code"], dem["sha256"])
                if rows and len(rows) == rows[0]["parts"]:
                    try:
                        if await asyncio.to_thread(_write_parts, local, dem["sha256"], [bytes(r["data"]) for r in rows]):
                            path = str(local)
                    except OSError as exc:   # an unwritable dem_dir: fall back to the registered path
                        log.warning("cannot write DEM %s to %s: %s", dem["sha256"][:12], local_dir, exc)
        if path is None and Path(dem["file_path"]).is_file():
            path = dem["file_path"]
        out.append(path)
    return out


def store_dem_file(cur: psycopg2.extensions.cursor, county: str, sha256: str, path: Path | str) -> int:
    """Put the bytes of a DEM file into ``cim.dem_file`` in parts (replaced if present); returns the parts."""
    size = Path(path).stat().st_size
    parts = max(1, -(-size // PART_BYTES))
    cur.execute("DELETE FROM cim.dem_file WHERE county_code = %s AND sha256 = %s", (county, sha256))
    with open(path, "rb") as fh:
        for part in range(parts):
            cur.execute("INSERT INTO cim.dem_file (county_code, sha256, part, parts, data) VALUES (%s, %s, %s, %s, %s)",
                        (county, sha256, part, parts, psycopg2.Binary(fh.read(PART_BYTES))))
    return parts


def publish_dem_files(cur: psycopg2.extensions.cursor, prefix: str) -> list[str]:
    """Keep in ``cim.dem_file`` the bytes of exactly the current DEMs of the counties under ``prefix``
    (the ones this instance holds the file of); returns the counties whose bytes were added."""
    cur.execute("DELETE FROM cim.dem_file f WHERE starts_with(f.county_code, %s) AND NOT EXISTS (SELECT 1 FROM cim.dem d "
                "WHERE d.is_current AND d.county_code = f.county_code AND d.sha256 = f.sha256)", (prefix,))
    added = []
    for dem in current_dems(cur):
        if not dem["county_code"].startswith(prefix) or not dem["county_code"]:
            continue
        cur.execute("SELECT 1 FROM cim.dem_file WHERE county_code = %s AND sha256 = %s LIMIT 1",
                    (dem["county_code"], dem["sha256"]))
        if cur.fetchone() is None and Path(dem["file_path"]).is_file():
            store_dem_file(cur, dem["county_code"], dem["sha256"], dem["file_path"])
            added.append(dem["county_code"])
    return added


def publishes(cur: psycopg2.extensions.cursor, county: str) -> bool:
    """True when this instance publishes the rows of ``county`` (so its DEM bytes must travel)."""
    cur.execute("SELECT EXISTS (SELECT 1 FROM cim.tier_instance i JOIN pg_publication p ON p.pubname = 'cim_' || i.code "
                "WHERE starts_with(%s, cim.tier_prefix(i.code)))", (county,))
    row = cur.fetchone()
    assert row is not None
    return bool(row[0])


# --- reading and sampling ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
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


def sample_array(data: np.ndarray, transform: Any, crs: Any, lons: npt.ArrayLike, lats: npt.ArrayLike, *, method: str = "bilinear") -> np.ndarray:
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


def _sample_file(path: str, lons: npt.ArrayLike, lats: npt.ArrayLike, method: str) -> np.ndarray:
    data, transform, crs = read_dem(path)
    return sample_array(data, transform, crs, lons, lats, method=method)


def sample_dem(conn_or_path: psycopg2.extensions.connection | str | Path, lons: npt.ArrayLike, lats: npt.ArrayLike, *, method: str = "bilinear") -> np.ndarray | None:
    """Elevations at lon/lat points from a DEM file (a path) or the current DEMs (a connection).

    With a connection each point takes the newest current DEM that covers it (whatever its
    county): the ground of a place, e.g. along a cross-section. Features are placed by
    :func:`sample_by_county` instead. Returns a float array (NaN where no DEM covers a point or
    on nodata) or None when no DEM is loaded. ``method`` is ``"bilinear"`` or ``"nearest"``.
    """
    if isinstance(conn_or_path, (str, Path)):
        return _sample_file(str(conn_or_path), lons, lats, method)
    with conn_or_path.cursor() as cur:
        paths = [dem_path(cur, d) for d in current_dems(cur)]
    return _sample_paths(paths, lons, lats, method)


async def sample_dem_async(conn: AsyncConn | asyncpg.Pool, lons: npt.ArrayLike, lats: npt.ArrayLike, *, method: str = "bilinear") -> np.ndarray | None:
    """:func:`sample_dem` of the current DEMs on an asyncpg connection or pool; the files are
    read in a worker thread. OSError when a DEM file cannot be read."""
    paths = await dem_paths_async(conn, await current_dems_async(conn))
    return await asyncio.to_thread(_sample_paths, paths, lons, lats, method)


def _sample_paths(paths: list[str | None], lons: npt.ArrayLike, lats: npt.ArrayLike, method: str) -> np.ndarray | None:
    """Each point from the first of ``paths`` (newest first) that has a value there; None when no
    path is readable."""
    readable = [p for p in paths if p]
    if not readable:
        return None
    lons = np.asarray(lons, dtype="float64").ravel()
    lats = np.asarray(lats, dtype="float64").ravel()
    out = np.full(lons.shape, np.nan)
    for path in readable:
        todo = np.isnan(out)
        if not todo.any():
            break
        out[todo] = _sample_file(path, lons[todo], lats[todo], method)
    return out


def sample_by_county(conn: psycopg2.extensions.connection, counties: npt.ArrayLike, lons: npt.ArrayLike,
                     lats: npt.ArrayLike, *, method: str = "bilinear") -> np.ndarray | None:
    """Elevations of features at lon/lat points, each from the current DEM of its own county
    (``counties[i]``), else from the instance's DEM; NaN where that DEM does not cover the point.
    None when no DEM is loaded at all."""
    lons = np.asarray(lons, dtype="float64").ravel()
    lats = np.asarray(lats, dtype="float64").ravel()
    counties = np.asarray(counties, dtype=object).ravel()
    with conn.cursor() as cur:
        dems = current_dems(cur)
        if not dems:
            return None
        by = {d["county_code"]: d for d in dems}
        paths: dict[str, str | None] = {}
        for county in sorted({str(c) for c in counties}):
            dem = by.get(county) or by.get(INSTANCE)
            paths[county] = dem_path(cur, dem) if dem else None
    return _by_county(paths, counties, lons, lats, method)


def _by_county(paths: dict[str, str | None], counties: np.ndarray, lons: np.ndarray, lats: np.ndarray,
               method: str) -> np.ndarray:
    """Each point from the DEM file of its county (``paths``: county → file); NaN for a point of
    a county without one."""
    out = np.full(lons.shape, np.nan)
    for county, path in paths.items():
        sel = counties == county
        if path and sel.any():
            out[sel] = _sample_file(path, lons[sel], lats[sel], method)
    return out


# --- the ground of places (terrain for the 3D view) ---------------------------------------------------

TERRAIN_MAX_LEVEL = 22
TERRAIN_MAX_SIZE = 129
_AREAS_SQL = ("SELECT code, ST_AsBinary(ST_ClipByBox2D(geom, ST_MakeEnvelope($1, $2, $3, $4, 4490))) FROM cim.admin_area "
              "WHERE is_current AND level = 'county' AND geom && ST_MakeEnvelope($1, $2, $3, $4, 4490) ORDER BY code")


def terrain_tile_bounds(level: int, x: int, y: int, size: int) -> tuple[float, float, float, float]:
    """Lon/lat bounds (w, s, e, n) of tile ``level/x/y`` of the geographic tiling scheme (2 × 1
    tiles at level 0, CesiumJS's ``GeographicTilingScheme``); InvalidInput for an address outside
    it or a grid ``size`` outside 2…129."""
    if not (0 <= level <= TERRAIN_MAX_LEVEL and 0 <= x < 2 ** (level + 1) and 0 <= y < 2 ** level):
        raise InvalidInput(f"地形瓦片坐标越界：{level}/{x}/{y}", f"terrain tile address out of range: {level}/{x}/{y}")
    if not 2 <= size <= TERRAIN_MAX_SIZE:
        raise InvalidInput(f"高程格网边长须在 2 到 {TERRAIN_MAX_SIZE} 之间：{size}",
                           f"the height grid size must be 2 to {TERRAIN_MAX_SIZE}: {size}")
    span = 180.0 / 2 ** level
    return -180.0 + x * span, 90.0 - (y + 1) * span, -180.0 + (x + 1) * span, 90.0 - y * span


async def terrain_tile_async(conn: AsyncConn | asyncpg.Pool, level: int, x: int, y: int, size: int) -> bytes:
    """Ground heights of a ``size`` × ``size`` grid over terrain tile ``level/x/y``: little-endian
    float32, rows from north to south, the first and last row and column on the tile's edges (a
    CesiumJS heightmap). Each point takes the ground its county's features stand on
    (:func:`ground_of_places`), 0 (the ellipsoid) where no DEM gives one."""
    west, south, east, north = terrain_tile_bounds(level, x, y, size)
    lons, lats = np.meshgrid(np.linspace(west, east, size), np.linspace(north, south, size))
    heights = np.zeros(size * size)
    dems = await current_dems_async(conn)
    if any(b[0] <= east and b[2] >= west and b[1] <= north and b[3] >= south for b in (d["bounds"] for d in dems)):
        areas = [(r[0], bytes(r[1])) for r in await conn.fetch(_AREAS_SQL, west, south, east, north) if r[1]]
        paths = await dem_paths_async(conn, dems)
        heights = await asyncio.to_thread(ground_of_places, dems, paths, areas, lons.ravel(), lats.ravel())
    return heights.astype("<f4").tobytes()


def ground_of_places(dems: list[dict[str, Any]], paths: list[str | None], areas: list[tuple[str, bytes]],
                     lons: npt.ArrayLike, lats: npt.ArrayLike) -> np.ndarray:
    """The ground at lon/lat points, by the rule that places features (:func:`sample_by_county`):
    a point inside a county's area (``areas``: code and WKB) takes that county's DEM, else the
    instance's; a point outside every county area takes the newest DEM covering it. 0 where the
    chosen DEM gives no value, so the terrain under each county is the ground its features stand
    on, even where several counties' DEMs overlap. ``paths`` are the files of ``dems``."""
    lons = np.asarray(lons, dtype="float64").ravel()
    lats = np.asarray(lats, dtype="float64").ravel()
    by = {d["county_code"]: p for d, p in zip(dems, paths, strict=True)}
    county = np.full(lons.shape, None, dtype=object)
    placed = np.zeros(lons.shape, dtype=bool)
    for code, wkb in areas:
        inside = ~placed & shapely.intersects_xy(shapely.from_wkb(wkb), lons, lats)
        county[inside] = code
        placed |= inside
    out = _by_county({code: by[code] if code in by else by.get(INSTANCE) for code, _ in areas}, county,
                     lons, lats, "bilinear")
    rest = ~placed
    if rest.any():
        found = _sample_paths(paths, lons[rest], lats[rest], "bilinear")
        if found is not None:
            out[rest] = found
    out[np.isnan(out)] = 0.0
    return out
