"""The digital elevation models: whether any is loaded, and hillshade tiles of all of them.

- `GET /api/dem` → `{"loaded", "bounds": [w, s, e, n] | null (union of every current DEM), "name",
  "min_z", "max_z", "loaded_at" (of the newest), "dems": [{"id", "county_code", "name", "bounds",
  "min_z", "max_z", "loaded_at"}]}` — one current DEM per county (a city or province holds several);
- `GET /tiles/hillshade/{z}/{x}/{y}.png` → transparent PNG of every current DEM (404 when none is
  loaded), ETag per set of DEMs, cached in memory (:class:`tiles.hillshade.HillshadeTiles`),
  answered by :mod:`api.tile_answer`;
- `GET /api/dem/heights/{level}/{x}/{y}?size=65` → the ground heights of a terrain tile of the
  geographic tiling scheme (CesiumJS ``GeographicTilingScheme``: 2 × 1 tiles at level 0) as
  ``size`` × ``size`` little-endian float32, rows north to south, edges included: each point on
  the DEM of the county whose area holds it (:func:`cim.raster.terrain_tile_async`), 0 where no
  DEM gives a height. The 3D view's terrain; ETag from the admin-area and DEM data versions.
Storing a DEM is an ingest (`cim ingest dem.tif --county CODE`, :func:`ingest.dem.store_dem`).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request, Response

from api import deps, tile_answer
from cim import raster
from cim.auth import Action
from cim.schema import DEM_VERSION_KEY
from tiles.hillshade import HillshadeTiles

router = APIRouter(tags=["DEM / 高程"], dependencies=[Depends(deps.require(Action.read))])
# clients revalidate every time: the data versions are in the ETag, so a 304 costs nothing
HEIGHTS = tile_answer.TileKind.revalidate("application/octet-stream")


@router.get("/api/dem", summary="高程模型状态 / DEM status")
async def dem_status(request: Request) -> dict:
    """Whether a DEM is loaded, the union of the current DEMs' extents in EPSG:4490 lon/lat, and each of them."""
    return raster.summary(await raster.current_dems_async(deps.pool(request)))


@router.get("/tiles/hillshade/{z}/{x}/{y}.png", summary="地形晕渲瓦片 / hillshade tile",
            responses={200: {"content": {"image/png": {}}}, 404: {"description": "no DEM loaded / 未加载高程模型"}})
async def hillshade(request: Request, z: int, x: int, y: int) -> Response:
    """Hillshade of the current DEMs in Web Mercator XYZ addressing (256 px, transparent PNG)."""
    tiles: HillshadeTiles = request.app.state.hillshade
    pool = deps.pool(request)
    dems, etag = await tiles.current(pool, z, x, y)

    async def png() -> bytes:
        return await tiles.tile(pool, dems, z, x, y)

    return tile_answer.response(await tile_answer.answer(request.app.state.png_kind, etag, request.headers, png))


@router.get("/api/dem/heights/{level}/{x}/{y}", summary="地形高程瓦片 / terrain heights of a tile",
            responses={200: {"content": {"application/octet-stream": {}}}, 400: {"description": "bad address or size"}})
async def heights(request: Request, level: int, x: int, y: int, size: int = 65) -> Response:
    """Ground heights (m, float32 little-endian, rows north to south, edges included) of a
    geographic terrain tile, each point from its own county's DEM; 0 where no DEM covers it."""
    raster.terrain_tile_bounds(level, x, y, size)
    admin, dem = request.app.state.versions.of(("admin_area", DEM_VERSION_KEY))
    etag = f'"ground-{admin}-{dem}-{level}-{x}-{y}-{size}"'

    async def body() -> bytes:
        return await raster.terrain_tile_async(deps.pool(request), level, x, y, size)

    return tile_answer.response(await tile_answer.answer(HEIGHTS, etag, request.headers, body))


def register(app: FastAPI) -> None:
    """Mount this router with its tile cache."""
    app.state.hillshade = HillshadeTiles()
    app.state.png_kind = tile_answer.TileKind.public("image/png", app.state.settings.tiles.cache_max_age_s)
    app.include_router(router)
