"""Search over the catalogue's searchable attributes, and the code dictionaries.

``GET /api/search?q=&limit=``: case-insensitive contains match (prefix matches first) over
every searchable attribute of the public layers (building codes, names, addresses, survey
point numbers, pole numbers, admin names); the pattern is bound with ``%`` and ``_`` escaped.
``GET /api/dictionaries/{table}``: rows of a ``cim.dict_*`` table that exists.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query, Request

from api import dbcall, deps
from cim.auth import Action, Principal
from cim.db import quote_ident
from cim.errors import InvalidInput, NotFound
from layers import query as lq

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
    text = q.strip()
    if not 1 <= len(text) <= 100:
        raise InvalidInput("q 须为 1–100 个字符", "q must be 1 to 100 characters")
    cat = deps.catalog(request)
    specs = [cat.get(i.strip()) for i in layers.split(",") if i.strip()] if layers else cat.public()
    sql, args = lq.search_sql(specs, text, limit)
    if not sql:
        return {"results": []}
    async with request.app.state.pool.acquire() as conn:
        rows = await dbcall.run(conn, "fetch", sql, *args)
    titles = {s.id: s for s in specs}
    seen: set[tuple[str, int]] = set()
    results = []
    # a row in several layers (e.g. a drainage node also in pipeline_points) is listed once,
    # under the most specific layer (one with a `where`)
    rows = sorted(rows, key=lambda r: (r["rank"], len(r["value"] or ""), not titles[r["layer"]].where, r["layer"], r["id"]))
    for r in rows:
        spec = titles[r["layer"]]
        key = (spec.table, r["id"])
        if key in seen:
            continue
        seen.add(key)
        label = r["value"] if not r["extra"] or r["extra"] == r["value"] else f"{r['value']}（{r['extra']}）"
        results.append({"layer": spec.id, "layer_title_zh": spec.title_zh, "id": r["id"], "label": label,
                        "match_field": r["match_field"], "value": r["value"],
                        "bbox": [r["w"], r["s"], r["e"], r["n"]], "center": [r["cx"], r["cy"]]})
        if len(results) >= limit:
            break
    return {"results": results}


@router.get("/api/dictionaries/{table}", summary="代码字典 / code dictionary",
            responses={200: {"content": {"application/json": {"example": EX_DICT}}}})
async def dictionary(request: Request, table: str, who: Principal = READ) -> list[dict]:
    """Rows of a ``cim.dict_*`` table: ``[{code, parent_code, name_zh, name_en, attrs}]``."""
    if not table.startswith("dict_") or len(table) > 63 or not table.replace("_", "").isalnum() or not table.isascii():
        raise NotFound(f"没有字典 {table}", f"no dictionary {table}")
    async with request.app.state.pool.acquire() as conn:
        exists = await conn.fetchval(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = 'cim' AND table_name = $1", table)
        if not exists:
            raise NotFound(f"没有字典 {table}", f"no dictionary {table}")
        rows = await dbcall.run(conn, "fetch", f"SELECT code, parent_code, name_zh, name_en, attrs::text AS attrs "
                                               f"FROM cim.{quote_ident(table)} ORDER BY code")
    return [{"code": r["code"], "parent_code": r["parent_code"], "name_zh": r["name_zh"], "name_en": r["name_en"],
             "attrs": json.loads(r["attrs"]) if r["attrs"] else {}} for r in rows]


def register(app: FastAPI) -> None:
    """Mount this router (the dictionaries route only when no other router serves it)."""
    taken = {getattr(r, "path", None) for r in app.router.routes}
    app.include_router(router)
    if "/api/dictionaries/{table}" in taken:
        app.router.routes[:] = [r for r in app.router.routes if getattr(r, "endpoint", None) is not dictionary]
