"""3D Tiles of the buildings and the underground pipelines (contract: docs/api-contract.md "3D Tiles").

`/3dtiles/{layer}/tileset.json` and `/3dtiles/{layer}/content/{level}/{x}/{y}.glb`, layer =
``buildings`` or ``pipelines``. Bytes come from :class:`tiles.threed.service.ThreeDService`
(built folder when current, else planned and rendered on demand); the answer (ETag known from the
data versions before any work, If-None-Match → 304, ``Cache-Control: no-cache`` so clients
revalidate) is decided by :mod:`api.tile_answer`, as for vector tiles. Media types
``application/json`` and ``model/gltf-binary``. CORS comes from the app.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from api import deps, tile_answer
from cim import db
from cim.auth import Action
from cim.errors import NotFound
from tiles.threed.service import MEDIA, ThreeDService

router = APIRouter(tags=["3D Tiles / 三维瓦片"], dependencies=[Depends(deps.require(Action.read))])
_NUM = re.compile(r"^\d{1,7}$")
# clients revalidate every time: the data versions are in the ETag, so a 304 costs nothing
TILESET = tile_answer.TileKind.revalidate(MEDIA["json"])
GLB = tile_answer.TileKind.revalidate(MEDIA["glb"])


def _service(request: Request) -> ThreeDService:
    svc = getattr(request.app.state, "tiles3d", None)
    if svc is None:
        settings = request.app.state.settings
        folder = settings.tiles.threed_dir or settings.db.home_dir / "3dtiles"
        svc = ThreeDService(db.resolve_url(settings.db), folder, request.app.state.catalog,
                            cache_mb=max(16, settings.tiles.cache_mb // 4),
                            per_tile=getattr(request.app.state, "tiles3d_per_tile", None))
        request.app.state.tiles3d = svc
    return svc


def _versions(request: Request, layer: str) -> dict[str, int]:
    """Data versions of the layer's tables, from the server's watcher (no database round trip)."""
    return request.app.state.versions.mapping(_service(request).source_tables(layer))


@router.get("/3dtiles/{layer}/tileset.json", summary="三维瓦片集 / 3D Tiles 1.1 tileset",
            responses={200: {"content": {"application/json": {}}}, 404: {"description": "unknown or empty layer"}})
async def tileset(request: Request, layer: str) -> Response:
    """Tileset of `buildings` (LOD1 blocks) or `pipelines` (tubes, wells, appurtenances), quadtree with ADD."""
    svc, versions = _service(request), _versions(request, layer)

    async def body() -> bytes | Path:
        return await run_in_threadpool(svc.tileset, layer, versions)

    return tile_answer.response(await tile_answer.answer(TILESET, svc.etag(layer, versions), request.headers, body))


@router.get("/3dtiles/{layer}/content/{level}/{x}/{y}.{ext}", summary="三维瓦片内容 / tile content (GLB)",
            responses={200: {"content": {"model/gltf-binary": {}}}, 404: {"description": "no such tile"}})
async def content(request: Request, layer: str, level: str, x: str, y: str, ext: str) -> Response:
    """GLB with EXT_mesh_features ids and an EXT_structural_metadata property table per feature kind."""
    if not (_NUM.match(level) and _NUM.match(x) and _NUM.match(y)):
        raise NotFound("三维瓦片地址无效", "invalid 3D tile address")
    svc, versions, key = _service(request), _versions(request, layer), f"{int(level)}/{int(x)}/{int(y)}"

    async def body() -> bytes | Path:
        return await run_in_threadpool(svc.content, layer, versions, key, ext)

    return tile_answer.response(await tile_answer.answer(GLB, svc.etag(layer, versions, key, ext), request.headers, body))


def register(app: FastAPI) -> None:
    """Mount this router and close the service's connections on shutdown."""
    app.include_router(router)

    async def close(app: FastAPI) -> None:
        svc = getattr(app.state, "tiles3d", None)
        if svc is not None:
            svc.close()

    app.state.shutdown_hooks.append(close)
