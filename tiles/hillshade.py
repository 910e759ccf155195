"""Hillshade raster tiles of the current DEMs in Web Mercator (XYZ, 256 px, transparent PNG).

Every current DEM (one per county, plus the instance's own) is resampled onto the tile grid (plus
a one-pixel margin for the gradient) with ``rasterio.warp.reproject`` (bilinear), the newer drawn
over the older where they overlap, so the counties of a city or province shade seamlessly. The
joined elevations are shaded from central-difference slopes and aspects with the standard formula
(sun azimuth 315°, altitude 45°; slope from ground distances, i.e. Mercator pixel size ×
cos(latitude)), and written as black (shadow) or white (sunlit slope) with an alpha that grows
with the difference from flat ground, so the tile shades the map below it and is transparent on
flat ground, outside every DEM and on nodata.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import struct
import threading
import zlib
from collections import OrderedDict
from typing import cast

import numpy as np
from rasterio.crs import CRS
from rasterio.transform import from_bounds
from rasterio.warp import Resampling, reproject

from cim.errors import InvalidInput, NotFound
from cim.raster import current_dems_async, dem_paths_async, read_dem

SIZE = 256
MAX_ZOOM = 22
ORIGIN = 20037508.342789244
MERCATOR = CRS.from_epsg(3857)


def png_rgba(rgba: np.ndarray) -> bytes:
    """Encode an (h, w, 4) uint8 array as PNG (8-bit RGBA, filter 0, zlib)."""
    h, w, _ = rgba.shape
    raw = b"".join(b"\0" + rgba[r].tobytes() for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


EMPTY_PNG = png_rgba(np.zeros((SIZE, SIZE, 4), "u1"))


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """Web Mercator bounds (xmin, ymin, xmax, ymax) of an XYZ tile."""
    span = 2 * ORIGIN / 2 ** z
    return -ORIGIN + x * span, ORIGIN - (y + 1) * span, -ORIGIN + (x + 1) * span, ORIGIN - y * span


def shade(z: np.ndarray, cell_m: float, azimuth: float = 315.0, altitude: float = 45.0) -> np.ndarray:
    """Illumination 0..1 of an elevation grid with square cells of ``cell_m`` metres (NaN stays NaN)."""
    dzdy, dzdx = np.gradient(z, cell_m)
    dzdy = -dzdy                                    # rows grow southwards
    slope = np.arctan(np.hypot(dzdx, dzdy))
    aspect = np.arctan2(dzdy, -dzdx)
    zen, az = math.radians(90 - altitude), math.radians(360 - azimuth + 90)
    out = np.cos(zen) * np.cos(slope) + np.sin(zen) * np.sin(slope) * np.cos(az - aspect)
    return np.clip(out, 0, 1)


def hillshade_tile(paths: str | list[str], z: int, x: int, y: int) -> bytes:
    """PNG hillshade of the DEM files (oldest first; later ones drawn over earlier ones) for tile
    z/x/y, transparent outside every DEM."""
    xmin, ymin, xmax, ymax = tile_bounds(z, x, y)
    px = (xmax - xmin) / SIZE
    dst = np.full((SIZE + 2, SIZE + 2), np.nan, "f8")
    dst_transform = from_bounds(xmin - px, ymin - px, xmax + px, ymax + px, SIZE + 2, SIZE + 2)
    for path in [paths] if isinstance(paths, str) else paths:
        try:
            data, transform, crs = read_dem(path)
        except OSError as exc:
            raise NotFound("高程模型文件缺失，请重新入库 DEM", "the DEM file is missing; store the DEM again") from exc
        layer = np.full_like(dst, np.nan)
        reproject(source=data, destination=layer, src_transform=transform, src_crs=crs, src_nodata=np.nan,
                  dst_transform=dst_transform, dst_crs=MERCATOR, dst_nodata=np.nan, resampling=Resampling.bilinear)
        dst = np.where(np.isnan(layer), dst, layer)
    if np.isnan(dst).all():
        return EMPTY_PNG
    lat = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * (y + 0.5) / 2 ** z))))
    illum = shade(dst, px * math.cos(math.radians(lat)))[1:-1, 1:-1]
    flat = math.cos(math.radians(45.0))              # illumination of flat ground
    lit = illum > flat
    strength = np.where(lit, (illum - flat) / (1 - flat), (flat - illum) / flat)
    alpha = np.where(np.isnan(illum), 0, np.clip(strength, 0, 1) * 180)
    rgba = np.zeros((SIZE, SIZE, 4), "u1")
    rgba[..., :3] = np.where(lit, 255, 0)[..., None]  # white on slopes facing the sun, black in shadow
    rgba[..., 3] = alpha.astype("u1")
    return png_rgba(rgba)


def check_address(z: int, x: int, y: int) -> None:
    """InvalidInput for a tile address outside the XYZ matrix (zoom 0–22)."""
    if not (0 <= z <= MAX_ZOOM and 0 <= x < 2 ** z and 0 <= y < 2 ** z):
        raise InvalidInput(f"瓦片坐标越界：{z}/{x}/{y}", f"tile address out of range: {z}/{x}/{y}")


class HillshadeTiles:
    """Hillshade tiles of the current DEMs: rendered in a worker thread, kept in an LRU of PNGs.

    Entries are keyed by the set of current DEM ids, so storing a DEM (here or in a county whose
    rows replicate here) makes new keys (and new ETags); old ones age out. The files of a set of
    DEMs are resolved once per set (a DEM received from a lower tier is written out on first use).
    """

    def __init__(self, max_tiles: int = 2048) -> None:
        self.max_tiles = max_tiles
        self._cache: OrderedDict[tuple[str, int, int, int], bytes] = OrderedDict()
        self._paths: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(dems: list[dict]) -> str:
        return "-".join(str(d["id"]) for d in dems)

    async def current(self, conn, z: int, x: int, y: int) -> tuple[list[dict], str]:
        """The current DEMs (newest first) and the tile's ETag; InvalidInput for a bad address,
        NotFound without a DEM."""
        check_address(z, x, y)
        dems = await current_dems_async(conn)
        if not dems:
            raise NotFound("尚未加载高程模型（DEM）", "no DEM is loaded")
        digest = hashlib.sha256(self._key(dems).encode()).hexdigest()[:16]
        return dems, f'"dem{digest}-{z}-{x}-{y}"'

    async def _files(self, conn, dems: list[dict]) -> list[str]:
        """Readable files of ``dems``, oldest first; NotFound naming the DEMs whose file is missing."""
        key = self._key(dems)
        with self._lock:
            paths = self._paths.get(key)
        if paths is not None:
            return paths
        oldest = list(reversed(dems))
        found = await dem_paths_async(conn, oldest)
        missing = [d["name"] for d, p in zip(oldest, found, strict=True) if p is None]
        if missing:
            raise NotFound(f"高程模型文件缺失：{', '.join(missing)}，请重新入库 DEM",
                           f"DEM file missing: {', '.join(missing)}; store the DEM again")
        files = cast(list[str], found)  # no None left: a missing file raised above
        with self._lock:
            if len(self._paths) > 64:
                self._paths.clear()
            self._paths[key] = files
        return files

    async def tile(self, conn, dems: list[dict], z: int, x: int, y: int) -> bytes:
        """PNG of tile z/x/y of ``dems`` (cached, else rendered in a worker thread)."""
        key = (self._key(dems), z, x, y)
        with self._lock:
            png = self._cache.get(key)
            if png is not None:
                self._cache.move_to_end(key)
                return png
        png = await asyncio.to_thread(hillshade_tile, await self._files(conn, dems), z, x, y)
        with self._lock:
            self._cache[key] = png
            while len(self._cache) > self.max_tiles:
                self._cache.popitem(last=False)
        return png
