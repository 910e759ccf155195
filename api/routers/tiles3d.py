"""3D Tiles of the buildings and the underground pipelines (contract: docs/api-contract.md "3D Tiles").

`/3dtiles/{layer}/tileset.json` and `/3dtiles/{layer}/content/{level}/{x}/{y}.glb`, layer =
``buildings`` or ``pipelines``. Bytes come from :class:`tiles.threed.service.ThreeDService`
(built folder when current, else planned and rendered on demand); this module speaks HTTP only:
ETag / If-None-Match (304), ``Cache-Control: no-cache`` (clients revalidate, the data version is
in the ETag), media types ``application/json`` and ``model/gltf-binary``. CORS comes from the app.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from api import deps
from cim import db
from cim.auth import Action
from cim.errors import NotFound
from tiles.threed.service import MEDIA, ThreeDService

router = APIRouter(tags=["3D Tiles / 三维瓦片"], dependencies=[Depends(deps.require(Action.read))])
_NUM = re.compile(r"^\d{1,7}$")


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


def _respond(request: Request, body: bytes | Path, etag: str, media: str) -> Response:
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    inm = request.headers.get("if-none-match")
    if inm and etag in {t.strip() for t in inm.split(",")}:
        return Response(status_code=304, headers=headers)
    if isinstance(body, Path):
        return FileResponse(body, media_type=media, headers=headers)
    return Response(body, media_type=media, headers=headers)


def _versions(request: Request, layer: str) -> dict[str, int]:
    """Data versions of the layer's tables, from the server's watcher (no database round trip)."""
    return request.app.state.versions.mapping(_service(request).source_tables(layer))


@router.get("/3dtiles/{layer}/tileset.json", summary="三维瓦片集 / 3D Tiles 1.1 tileset",
            responses={200: {"content": {"application/json": {}}}, 404: {"description": "unknown or empty layer"}})
async def tileset(request: Request, layer: str) -> Response:
    """Tileset of `buildings` (LOD1 blocks) or `pipelines` (tubes, wells, appurtenances), quadtree with ADD."""
    versions = _versions(request, layer)
    body, etag = await run_in_threadpool(_service(request).tileset, layer, versions)
    return _respond(request, body, etag, MEDIA["json"])


@router.get("/3dtiles/{layer}/content/{level}/{x}/{y}.{ext}", summary="三维瓦片内容 / tile content (GLB)",
            responses={200: {"content": {"model/gltf-binary": {}}}, 404: {"description": "no such tile"}})
async def content(request: Request, layer: str, level: str, x: str, y: str, ext: str) -> Response:
    """GLB with EXT_mesh_features ids and an EXT_structural_metadata property table per feature kind."""
    if not (_NUM.match(level) and _NUM.match(x) and _NUM.match(y)):
        raise NotFound("三维瓦片地址无效", "invalid 3D tile address")
    versions = _versions(request, layer)
    body, etag = await run_in_threadpool(_service(request).content, layer, versions, f"{int(level)}/{int(x)}/{int(y)}",
                                         ext)
    return _respond(request, body, etag, MEDIA.get(ext, "application/octet-stream"))


def register(app: FastAPI) -> None:
    """Mount this router and close the service's connections on shutdown."""
    app.include_router(router)

    async def close(app: FastAPI) -> None:
        svc = getattr(app.state, "tiles3d", None)
        if svc is not None:
            svc.close()

    app.state.shutdown_hooks.append(close)
