"""Features by location, for other platforms and the map's tools: identify, spatial relation, nearest.

Each function runs the statements of :mod:`layers.query` and returns the answer's GeoJSON
text: the features' GeoJSON comes out of PostgreSQL as text and is spliced in, never decoded
and encoded again (except for nearest, which adds a property). Inputs are in ``srid`` (lon/lat
for the geographic CRSs), distances in metres.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from cim import dbcall
from cim.errors import InvalidInput
from layers import query as lq
from layers.spec import LayerSpec

MAX_LAYERS = 50  # layer ids one request may name
GEOGRAPHIC = 4490


def check_lonlat(x: float, y: float, srid: int) -> None:
    """InvalidInput for a lon/lat point outside ±180 / ±90 (other CRSs are checked by PostGIS)."""
    if srid == GEOGRAPHIC and not (-180 <= x <= 180 and -90 <= y <= 90):
        raise InvalidInput("经纬度超出范围", "longitude/latitude out of range")


def with_members(feature_text: str, **members: Any) -> str:
    """Append top-level members to a Feature's JSON text."""
    extra = ",".join(f"{json.dumps(k)}:{json.dumps(v, ensure_ascii=False)}" for k, v in members.items())
    return feature_text[:-1] + "," + extra + "}"


def feature_collection(features: list[str], **members: Any) -> str:
    """FeatureCollection text around features given as JSON text."""
    head = json.dumps({"type": "FeatureCollection", **members}, ensure_ascii=False)
    return head[:-1] + ',"features":[' + ",".join(features) + "]}"


async def identify(pool: asyncpg.Pool, specs: Sequence[LayerSpec], x: float, y: float, srid: int,
                   tolerance_m: float, limit: int) -> str:
    """Every feature of ``specs`` within ``tolerance_m`` of the point, nearest first (GeoJSON text).

    Each feature carries top-level ``layer``, ``layer_title_zh`` and ``distance_m``. A row in two
    requested layers (a drainage pipe is also a pipeline segment) is listed once, under the more
    specific layer (one with a ``where``).
    """
    check_lonlat(x, y, srid)
    rows = []
    if specs:  # an empty layer list (nothing visible on the map) finds nothing
        sql, args = lq.identify_sql(list(specs), x, y, srid, tolerance_m, limit)
        rows = await dbcall.run(pool, "fetch", sql, *args)
    by_id = {s.id: s for s in specs}
    rows = sorted(rows, key=lambda r: (r["d"], not by_id[r["layer"]].where, r["layer"]))
    seen: set[tuple[str, int]] = set()
    feats = []
    for r in rows:
        key = (by_id[r["layer"]].table, r["id"])
        if key in seen:
            continue
        seen.add(key)
        feats.append(with_members(r["f"], layer=r["layer"], layer_title_zh=by_id[r["layer"]].title_zh,
                                  distance_m=round(r["d"], 3)))
    return feature_collection(feats, numberReturned=len(feats))


async def spatial(pool: asyncpg.Pool, specs: Sequence[LayerSpec], op: str, wkb: bytes, srid: int,
                  distance_m: float | None, cql_text: str | None, limit: int) -> str:
    """Per layer, the features that intersect / lie within / lie within ``distance_m`` of the geometry.

    Text of ``{"layers": {"<id>": FeatureCollection}}``; each collection has ``numberReturned``
    and ``limitReached`` (true when more features matched than ``limit``).
    """
    if op == "dwithin" and distance_m is None:
        raise InvalidInput("op=dwithin 需要 distance_m", "op=dwithin needs distance_m")
    parts = []
    async with pool.acquire() as conn:
        for spec in specs:
            sql, args = lq.spatial_sql(spec, op, wkb, srid, distance_m, cql_text, limit)
            rows = await dbcall.run(conn, "fetch", sql, *args)
            feats = [r["f"] for r in rows[:limit]]
            parts.append(f"{json.dumps(spec.id)}:" + feature_collection(feats, numberReturned=len(feats),
                                                                        limitReached=len(rows) > limit))
    return '{"layers":{' + ",".join(parts) + "}}"


async def nearest(pool: asyncpg.Pool, spec: LayerSpec, x: float, y: float, srid: int, k: int) -> str:
    """The ``k`` nearest features of a layer, nearest first, with ``properties.distance_m`` (GeoJSON text)."""
    check_lonlat(x, y, srid)
    sql, args = lq.nearest_sql(spec, x, y, srid, k)
    rows = await dbcall.run(pool, "fetch", sql, *args)
    feats = []
    for r in rows:
        f = json.loads(r["f"])
        f["properties"]["distance_m"] = round(r["d"], 3)
        f["layer"] = spec.id
        feats.append(json.dumps(f, ensure_ascii=False))
    return feature_collection(feats, numberReturned=len(feats))
