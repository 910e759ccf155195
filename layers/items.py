"""OGC API – Features answers of one layer: a page of items, one item, the layer's size and extent.

The statements come from :mod:`layers.features`; this module runs them and does the counting
rules of the paging:

- ``numberMatched`` is exact below :data:`layers.features.EXACT_COUNT_CAP` matches (the page's
  statement counts up to the cap); above it, the layer's row estimate scaled by the share of
  its extent that the bbox covers, never fewer than the pages seen so far plus one while a next
  page exists, and exact again on the last page (offset + returned);
- a layer's row estimate and extent (:class:`LayerStats`) come from the planner (``EXPLAIN``)
  and ``ST_EstimatedExtent``, counted exactly for layers below :data:`EXACT_LAYER_MAX` rows,
  and are kept for :data:`STATS_TTL_S` seconds; once they expire, one refresh per layer runs
  while the expired figures keep answering (an exact count of 100k rows takes 0.1–0.2 s, which
  every concurrent request that found the figures expired used to pay at once).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass

import asyncpg

from cim import dbcall
from layers import features as lf
from layers.spec import Attribute, LayerSpec

log = logging.getLogger(__name__)

STATS_TTL_S = 60.0
EXACT_LAYER_MAX = 100_000  # layers estimated below this many rows are counted exactly for stats
_ESTIMATED_EXTENT = ("SELECT ST_XMin(b) w, ST_YMin(b) s, ST_XMax(b) e, ST_YMax(b) n FROM "
                     "(SELECT ST_EstimatedExtent($1::text, $2::text, $3::text) AS b) x")


class LayerStats:
    """Row estimate and CRS84 extent of each layer, refreshed at most every :data:`STATS_TTL_S`."""

    def __init__(self, ttl_s: float = STATS_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._cache: dict[str, dict] = {}
        self._refreshing: dict[str, asyncio.Task] = {}

    async def get(self, pool: asyncpg.Pool, spec: LayerSpec) -> dict:
        """``{"at", "rows", "bbox": [w, s, e, n] | None}`` of the layer's current rows.

        Fresh figures are answered from memory. Expired ones start a refresh unless one is
        already running for the layer, and are answered meanwhile; only the first request for a
        layer waits, and requests arriving together share the one statement.
        """
        hit = self._cache.get(spec.id)
        if hit and time.monotonic() - hit["at"] < self.ttl_s:
            return hit
        task = self._refreshing.get(spec.id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._refresh(pool, spec))
            self._refreshing[spec.id] = task
            task.add_done_callback(lambda t, key=spec.id: self._refreshed(key, t))
        if hit:
            return hit
        return await asyncio.shield(task)

    def _refreshed(self, key: str, task: asyncio.Task) -> None:
        self._refreshing.pop(key, None)
        if not task.cancelled() and task.exception() is not None:  # waiters, if any, get it too
            log.warning("layer stats of %s not refreshed: %s", key, task.exception())

    async def _refresh(self, pool: asyncpg.Pool, spec: LayerSpec) -> dict:
        now = time.monotonic()
        explain, exact, args = lf.layer_stats_sql(spec)
        async with pool.acquire() as conn:
            plan = await dbcall.run(conn, "fetchval", explain, *args)
            plan = json.loads(plan) if isinstance(plan, str) else plan
            estimate = int(plan[0]["Plan"]["Plan Rows"])
            bbox = None
            if estimate < EXACT_LAYER_MAX:
                row = await dbcall.run(conn, "fetchrow", exact, *args)
                estimate = int(row["n"])
                if row["w"] is not None:
                    bbox = [row["w"], row["s"], row["e"], row["n_"]]
            else:
                ext = await dbcall.run(conn, "fetchrow", _ESTIMATED_EXTENT,
                                       spec.schema_name, spec.table_name, spec.geometry.column)
                if ext and ext["w"] is not None:
                    bbox = [ext["w"], ext["s"], ext["e"], ext["n"]]
        hit = {"at": now, "rows": estimate, "bbox": bbox}
        self._cache[spec.id] = hit
        return hit


def number_matched(req: lf.ItemsRequest, capped: int, stats: dict) -> int:
    """Exact when below the cap, else the layer estimate scaled by the bbox's share of the extent."""
    if capped < lf.EXACT_COUNT_CAP:
        return capped
    share = 1.0
    ext = stats.get("bbox")
    if req.bbox is not None and ext and not req.bbox_crs.transform:
        w, s, e, n = req.bbox
        iw, ih = min(e, ext[2]) - max(w, ext[0]), min(n, ext[3]) - max(s, ext[1])
        area = max(ext[2] - ext[0], 1e-9) * max(ext[3] - ext[1], 1e-9)
        share = max(iw, 0) * max(ih, 0) / area if iw > 0 and ih > 0 else 0.0
    return max(capped, int(stats["rows"] * min(share, 1.0)))


@dataclass(frozen=True)
class Page:
    """One page of items: the features joined as GeoJSON text, and the paging counts."""

    features: str
    returned: int
    matched: int
    has_next: bool


async def page(pool: asyncpg.Pool, req: lf.ItemsRequest, stats: LayerStats) -> Page:
    """The page ``req`` asks for, in one statement (plus the layer's stats above the exact-count cap)."""
    sql, args = lf.items_sql(req)
    row = await dbcall.run(pool, "fetchrow", sql, *args)
    capped, returned = int(row["n"]), int(row["returned"])
    exact = capped < lf.EXACT_COUNT_CAP
    matched = number_matched(req, capped, {} if exact else await stats.get(pool, req.spec))
    has_next = (req.offset + returned < matched) if exact else returned == req.limit
    if has_next:  # an estimate never claims fewer features than the pages seen so far plus one
        matched = max(matched, req.offset + returned + 1)
    elif not exact and returned:  # the last page of a large result: the count is known
        matched = req.offset + returned
    return Page(row["features"] or "", returned, matched, has_next)


async def item(pool: asyncpg.Pool, spec: LayerSpec, fid: int, out: lf.CrsChoice,
               attrs: list[Attribute] | None = None) -> str | None:
    """One current feature's GeoJSON text by id, or None."""
    sql, args = lf.item_sql(spec, fid, out, attrs)
    return await dbcall.run(pool, "fetchval", sql, *args)
