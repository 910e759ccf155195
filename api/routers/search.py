"""Search over the catalogue's searchable attributes, and the code dictionaries.

``GET /api/search?q=&limit=``: case-insensitive contains match (prefix matches first) over
every searchable attribute of the public layers (building codes, names, addresses, survey
point numbers, pole numbers, admin names): :mod:`layers.search`.
``GET /api/dictionaries/{table}``: rows of a ``cim.dict_*`` table that exists: :mod:`cim.dictionaries`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query, Request

from api import deps
from cim import dictionaries
from cim.auth import Action, Principal
from layers import search as layer_search

router = APIRouter(tags=["search / 搜索"])
READ = Depends(deps.require(Action.read))


EX_SEARCH = {"results": [{"layer": "buildings", "layer_title_zh": "房屋建筑", "id": 3844,
                          "label": "鼎城区演示镇人民路15号（桃源商业楼27号）", "match_field": "address",
                          "value": "鼎城区演示镇人民路15号", "bbox": [111.68950302, 29.0348032, 111.69010138, 29.03526705],
                          "center": [111.6898, 29.035]}]}
EX_DICT = [{"code": "JS", "parent_code": None, "name_zh": "给水", "name_en": "Water supply",
            "attrs": {"level": "class", "number": 1, "color": "0,255,255"}}]


@router.get("/api/search", summary="要素搜索 / search features by code, name, address",
            responses={200: {"content": {"application/json": {"example": EX_SEARCH}}}})
async def search(request: Request,
                 q: Annotated[str, Query(description="搜索文本（编号、名称、地址、物探点号、灯杆编号…）", examples=["幸福路"])],
                 limit: Annotated[int, Query(ge=1, le=100, description="最多返回条数")] = 20,
                 layers: Annotated[str | None, Query(description="限定图层 id，逗号分隔")] = None,
                 who: Principal = READ) -> dict:
    """Features whose searchable attributes contain ``q`` with their bbox and a point to fly to."""
    ids = [i.strip() for i in layers.split(",") if i.strip()] if layers else None
    specs = deps.catalog(request).select(ids)
    return {"results": await layer_search.search(deps.pool(request), specs, q, limit)}


@router.get("/api/dictionaries/{table}", summary="代码字典 / code dictionary",
            responses={200: {"content": {"application/json": {"example": EX_DICT}}}})
async def dictionary(request: Request, table: str, who: Principal = READ) -> list[dict]:
    """Rows of a ``cim.dict_*`` table: ``[{code, parent_code, name_zh, name_en, attrs}]``."""
    return await dictionaries.rows(deps.pool(request), table)


def register(app: FastAPI) -> None:
    """Mount this router (the dictionaries route only when no other router serves it)."""
    taken = {getattr(r, "path", None) for r in app.router.routes}
    app.include_router(router)
    if "/api/dictionaries/{table}" in taken:
        app.router.routes[:] = [r for r in app.router.routes if getattr(r, "endpoint", None) is not dictionary]
