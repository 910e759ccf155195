"""The digital elevation model: whether one is loaded, and hillshade tiles of it.

- `GET /api/dem` → `{"loaded", "bounds": [w, s, e, n] | null, "name", "min_z", "max_z", "loaded_at"}`;
- `GET /tiles/hillshade/{z}/{x}/{y}.png` → transparent PNG (404 when no DEM is loaded), ETag per
  DEM, cached in memory (:class:`tiles.hillshade.HillshadeTiles`), answered by :mod:`api.tile_answer`.
Storing a DEM is an ingest (`cim ingest dem.tif`, :func:`ingest.dem.store_dem`).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request, Response

from api import deps, tile_answer
from cim import raster
from cim.auth import Action
from tiles.hillshade import HillshadeTiles

router = APIRouter(tags=["DEM / 高程"], dependencies=[Depends(deps.require(Action.read))])


@router.get("/api/dem", summary="高程模型状态 / DEM status")
async def dem_status(request: Request) -> dict:
    """Whether a DEM is loaded and its extent in EPSG:4490 lon/lat."""
    dem = await raster.current_dem_async(deps.pool(request))
    if dem is None:
        return {"loaded": False, "bounds": None}
    return {"loaded": True, "bounds": dem["bounds"], "id": dem["id"], "name": dem["name"],
            "min_z": dem["min_z"], "max_z": dem["max_z"], "loaded_at": dem["loaded_at"].isoformat()}


@router.get("/tiles/hillshade/{z}/{x}/{y}.png", summary="地形晕渲瓦片 / hillshade tile",
            responses={200: {"content": {"image/png": {}}}, 404: {"description": "no DEM loaded / 未加载高程模型"}})
async def hillshade(request: Request, z: int, x: int, y: int) -> Response:
    """Hillshade of the current DEM in Web Mercator XYZ addressing (256 px, transparent PNG)."""
    tiles: HillshadeTiles = request.app.state.hillshade
    dem, etag = await tiles.current(deps.pool(request), z, x, y)

    async def png() -> bytes:
        return await tiles.tile(dem, z, x, y)

    return tile_answer.response(await tile_answer.answer(request.app.state.png_kind, etag, request.headers, png))


def register(app: FastAPI) -> None:
    """Mount this router with its tile cache."""
    app.state.hillshade = HillshadeTiles()
    app.state.png_kind = tile_answer.TileKind.public("image/png", app.state.settings.tiles.cache_max_age_s)
    app.include_router(router)
