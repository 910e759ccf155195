"""Health, the layer catalogue and data versions."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request

from api import deps
from cim.auth import Action, Principal

router = APIRouter(tags=["meta / 元数据"])


@router.get("/health", summary="健康检查 / health check")
async def health(request: Request) -> dict:
    """Liveness plus a database round trip (for the province's platform monitor)."""
    async with request.app.state.pool.acquire() as conn:
        version = await conn.fetchval("SELECT postgis_lib_version()")
    return {"status": "ok", "postgis": version}


@router.get("/api/layers", summary="图层目录 / layer catalogue")
async def layers(request: Request, who: Principal = Depends(deps.require(Action.read))) -> list[dict]:
    """Every public layer with titles, attributes (Chinese labels), zooms and style."""
    return [spec.model_dump(exclude={"table", "where", "id_column"}) for spec in deps.catalog(request).public()]


@router.get("/api/versions", summary="图层数据版本 / data versions")
async def versions(request: Request, who: Principal = Depends(deps.require(Action.read))) -> dict:
    """Data version of every public layer (bumped by every change to its table)."""
    async with request.app.state.pool.acquire() as conn:
        rows = await conn.fetch("SELECT source_table, version FROM cim.data_version")
    by_table = {r["source_table"]: r["version"] for r in rows}
    return {s.id: by_table.get(s.table_name, 0) for s in deps.catalog(request).public()}


def register(app: FastAPI) -> None:
    """Mount this router."""
    app.include_router(router)
