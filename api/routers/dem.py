"""The digital elevation model: whether one is loaded, and hillshade tiles of it.

- `GET /api/dem` → `{"loaded", "bounds": [w, s, e, n] | null, "name", "min_z", "max_z", "loaded_at"}`;
- `GET /tiles/hillshade/{z}/{x}/{y}.png` → transparent PNG (404 when no DEM is loaded), ETag per
  DEM, cached in memory (an LRU of encoded tiles).
Storing a DEM is an ingest (`cim ingest dem.tif`, :func:`ingest.dem.store_dem`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from api import deps
from cim.auth import Action
from cim.errors import InvalidInput, NotFound
from tiles.hillshade import hillshade_tile

router = APIRouter(tags=["DEM / 高程"], dependencies=[Depends(deps.require(Action.read))])
_CACHE_TILES = 2048
_lock = threading.Lock()


async def _current(request: Request) -> dict | None:
    async with request.app.state.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT id, name, file_path, min_z, max_z, loaded_at, ST_XMin(bounds) w, ST_YMin(bounds) s, "
            "ST_XMax(bounds) e, ST_YMax(bounds) n FROM cim.dem WHERE is_current ORDER BY id DESC LIMIT 1")
    return dict(row) if row else None


@router.get("/api/dem", summary="高程模型状态 / DEM status")
async def dem_status(request: Request) -> dict:
    """Whether a DEM is loaded and its extent in EPSG:4490 lon/lat."""
    dem = await _current(request)
    if dem is None:
        return {"loaded": False, "bounds": None}
    return {"loaded": True, "bounds": [dem["w"], dem["s"], dem["e"], dem["n"]], "id": dem["id"], "name": dem["name"],
            "min_z": dem["min_z"], "max_z": dem["max_z"], "loaded_at": dem["loaded_at"].isoformat()}


@router.get("/tiles/hillshade/{z}/{x}/{y}.png", summary="地形晕渲瓦片 / hillshade tile",
            responses={200: {"content": {"image/png": {}}}, 404: {"description": "no DEM loaded / 未加载高程模型"}})
async def hillshade(request: Request, z: int, x: int, y: int) -> Response:
    """Hillshade of the current DEM in Web Mercator XYZ addressing (256 px, transparent PNG)."""
    if not (0 <= z <= 22 and 0 <= x < 2 ** z and 0 <= y < 2 ** z):
        raise InvalidInput(f"瓦片坐标越界：{z}/{x}/{y}", f"tile address out of range: {z}/{x}/{y}")
    dem = await _current(request)
    if dem is None:
        raise NotFound("尚未加载高程模型（DEM）", "no DEM is loaded")
    etag = f'"dem{dem["id"]}-{z}-{x}-{y}"'
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={request.app.state.settings.tiles.cache_max_age_s}"}
    if etag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers=headers)
    cache: OrderedDict = request.app.state.hillshade_cache
    key = (dem["id"], z, x, y)
    with _lock:
        png = cache.get(key)
        if png is not None:
            cache.move_to_end(key)
    if png is None:
        png = await run_in_threadpool(hillshade_tile, dem["file_path"], z, x, y)
        with _lock:
            cache[key] = png
            while len(cache) > _CACHE_TILES:
                cache.popitem(last=False)
    return Response(png, media_type="image/png", headers=headers)


def register(app: FastAPI) -> None:
    """Mount this router with its tile cache."""
    app.state.hillshade_cache = OrderedDict()
    app.include_router(router)
