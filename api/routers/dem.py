"""The digital elevation models: whether any is loaded, and hillshade tiles of all of them.

- `GET /api/dem` → `{"loaded", "bounds": [w, s, e, n] | null (union of every current DEM), "name",
  "min_z", "max_z", "loaded_at" (of the newest), "dems": [{"id", "county_code", "name", "bounds",
  "min_z", "max_z", "loaded_at"}]}` when one is loaded — one current DEM per county (a city or province holds several);
- `GET /tiles/hillshade/{z}/{x}/{y}.png` → transparent PNG of every current DEM (404 when none is
  loaded), ETag per set of DEMs, cached in memory (an LRU of encoded tiles).
Storing a DEM is an ingest (`cim ingest dem.tif --county CODE`, :func:`ingest.dem.store_dem`).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from api import deps
from cim import db, raster
from cim.auth import Action
from cim.errors import InvalidInput, NotFound
from tiles.hillshade import hillshade_tile

router = APIRouter(tags=["DEM / 高程"], dependencies=[Depends(deps.require(Action.read))])
_CACHE_TILES = 2048
_lock = threading.Lock()


async def _current(request: Request) -> list[dict]:
    return await raster.current_dems_async(request.app.state.pool)


def _paths(request: Request, dems: list[dict]) -> list[str]:
    """Readable files of the DEMs, oldest first (a DEM received from a lower tier is written out on first use)."""
    conn = db.connect(request.app.state.settings.db, application_name="cim-api")
    try:
        with conn.cursor() as cur:
            paths = [raster.dem_path(cur, d) for d in reversed(dems)]
    finally:
        conn.close()
    missing = [d["name"] for d, p in zip(reversed(dems), paths, strict=True) if p is None]
    if missing:
        raise NotFound(f"高程模型文件缺失：{', '.join(missing)}，请重新入库 DEM",
                       f"DEM file missing: {', '.join(missing)}; store the DEM again")
    return [p for p in paths if p]


@router.get("/api/dem", summary="高程模型状态 / DEM status")
async def dem_status(request: Request) -> dict:
    """Whether a DEM is loaded, the union of the current DEMs' extents in EPSG:4490 lon/lat, and each of them."""
    dems = await _current(request)
    if not dems:
        return {"loaded": False, "bounds": None}
    b = [d["bounds"] for d in dems]
    newest = dems[0]
    return {"loaded": True, "bounds": [min(x[0] for x in b), min(x[1] for x in b), max(x[2] for x in b), max(x[3] for x in b)],
            "id": newest["id"], "name": newest["name"], "min_z": min((d["min_z"] for d in dems if d["min_z"] is not None),
                                                                      default=None),
            "max_z": max((d["max_z"] for d in dems if d["max_z"] is not None), default=None),
            "loaded_at": newest["loaded_at"].isoformat(),
            "dems": [{"id": d["id"], "county_code": d["county_code"] or None, "name": d["name"], "bounds": d["bounds"],
                      "min_z": d["min_z"], "max_z": d["max_z"], "loaded_at": d["loaded_at"].isoformat()} for d in dems]}


@router.get("/tiles/hillshade/{z}/{x}/{y}.png", summary="地形晕渲瓦片 / hillshade tile",
            responses={200: {"content": {"image/png": {}}}, 404: {"description": "no DEM loaded / 未加载高程模型"}})
async def hillshade(request: Request, z: int, x: int, y: int) -> Response:
    """Hillshade of the current DEMs in Web Mercator XYZ addressing (256 px, transparent PNG)."""
    if not (0 <= z <= 22 and 0 <= x < 2 ** z and 0 <= y < 2 ** z):
        raise InvalidInput(f"瓦片坐标越界：{z}/{x}/{y}", f"tile address out of range: {z}/{x}/{y}")
    dems = await _current(request)
    if not dems:
        raise NotFound("尚未加载高程模型（DEM）", "no DEM is loaded")
    ids = "-".join(str(d["id"]) for d in dems)
    etag = f'"dem{hashlib.sha256(ids.encode()).hexdigest()[:16]}-{z}-{x}-{y}"'
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={request.app.state.settings.tiles.cache_max_age_s}"}
    if etag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers=headers)
    cache: OrderedDict = request.app.state.hillshade_cache
    key = (ids, z, x, y)
    with _lock:
        png = cache.get(key)
        if png is not None:
            cache.move_to_end(key)
    if png is None:
        paths = request.app.state.hillshade_paths.get(ids)
        if paths is None:
            if len(request.app.state.hillshade_paths) > 64:
                request.app.state.hillshade_paths.clear()
            paths = request.app.state.hillshade_paths[ids] = await run_in_threadpool(_paths, request, dems)
        png = await run_in_threadpool(hillshade_tile, paths, z, x, y)
        with _lock:
            cache[key] = png
            while len(cache) > _CACHE_TILES:
                cache.popitem(last=False)
    return Response(png, media_type="image/png", headers=headers)


def register(app: FastAPI) -> None:
    """Mount this router with its tile cache."""
    app.state.hillshade_cache = OrderedDict()
    app.state.hillshade_paths = {}
    app.include_router(router)
