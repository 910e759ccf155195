"""Health, the layer catalogue and data versions."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request

from api import deps
from cim import health as liveness
from cim.auth import Action, Principal

router = APIRouter(tags=["meta / 元数据"])


@router.get("/health", summary="健康检查 / health check")
async def health(request: Request) -> dict:
    """Liveness plus a database round trip (for the province's platform monitor)."""
    return await liveness.check(deps.pool(request))


@router.get("/api/layers", summary="图层目录 / layer catalogue")
async def layers(request: Request, who: Principal = Depends(deps.require(Action.read))) -> list[dict]:
    """Every public layer with titles, attributes (Chinese labels), zooms and style."""
    return [spec.model_dump(exclude={"table", "where", "id_column", "versions"}) for spec in deps.catalog(request).public()]


@router.get("/api/versions", summary="图层数据版本 / data versions")
async def versions(request: Request, who: Principal = Depends(deps.require(Action.read))) -> dict:
    """Data version of every public layer: it grows with every change to the tables the layer
    follows (the sum of their counters, so any change shows). Answered from the server's version
    watcher, as tiles are, without a database round trip."""
    return deps.catalog(request).versions(request.app.state.versions.versions)


def register(app: FastAPI) -> None:
    """Mount this router."""
    app.include_router(router)
