"""Statistics (区域统计) inside a polygon or an administrative area.

:func:`stats` runs the statements of :func:`layers.query.stats_sql` on one connection (area,
counts per layer, pipe lengths, green areas, building floor areas; each starts from the same
area) and folds their rows into the answer: pipe lengths summed by network, by material and by
diameter class (class breaks are data: ``layers/query_classes.yaml``), green area by class,
building floor area and counts by use. Lengths and areas are geodesic (m, m²) and clipped to
the area; a building counts where its point on surface lies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import asyncpg

from cim import dbcall
from cim.errors import InvalidInput, NotFound
from layers import query as lq
from layers.spec import LayerSpec

_PIPE_KEYS = (("by_network", "network"), ("by_material", "material"), ("by_diameter_class", "dia_class"))


def check_area(has_geometry: bool, admin_code: str | None) -> None:
    """InvalidInput unless exactly one of a polygon or an admin code is given."""
    if has_geometry == (admin_code is not None):
        raise InvalidInput("须给出 geometry 或 admin_code 之一", "give exactly one of geometry or admin_code")


def pipe_lengths(rows: Iterable[Mapping[str, Any]]) -> dict:
    """Pipe length (m, 2 decimals) by network, material and diameter class, plus the total."""
    by: dict[str, dict[str, float]] = {key: {} for key, _ in _PIPE_KEYS}
    for r in rows:
        for key, column in _PIPE_KEYS:
            by[key][r[column]] = by[key].get(r[column], 0.0) + (r["length_m"] or 0.0)
    out: dict[str, Any] = {k: {c: round(v, 2) for c, v in sorted(d.items())} for k, d in by.items()}
    out["total"] = round(sum(by["by_network"].values()), 2)
    return out


def green_areas(rows: Sequence[Mapping[str, Any]]) -> dict:
    """Green area (m², 1 decimal) by class code, plus the total."""
    return {"by_class": {r["class_code"]: round(r["area_m2"], 1) for r in rows},
            "total": round(sum(r["area_m2"] for r in rows), 1)}


def building_areas(rows: Sequence[Mapping[str, Any]]) -> dict:
    """Building floor area and count by use code, the footprint total and the floor-area total."""
    return {"by_use": {r["use_code"]: round(r["area_m2"], 1) for r in rows},
            "count_by_use": {r["use_code"]: r["n"] for r in rows},
            "footprint_total": round(sum(r["footprint_m2"] for r in rows), 1),
            "total": round(sum(r["area_m2"] for r in rows), 1)}


async def stats(pool: asyncpg.Pool, specs: Sequence[LayerSpec], wkb: bytes | None, srid: int,
                admin_code: str | None) -> dict:
    """Statistics of ``specs`` inside the polygon ``wkb`` (in ``srid``) or the admin area ``admin_code``.

    Returns ``{"area_m2", "counts", "pipe_length_m", "green_area_m2", "building_area_m2",
    "diameter_classes"}``; NotFound for an unknown admin code.
    """
    check_area(wkb is not None, admin_code)
    stmts = lq.stats_sql(list(specs), wkb, srid, admin_code)
    async with pool.acquire() as conn:
        area = await dbcall.run(conn, "fetchrow", stmts["area"][0], *stmts["area"][1])
        if not area["found"]:
            raise NotFound(f"没有行政区划 {admin_code}", f"no administrative area {admin_code}")
        rows = {name: await dbcall.run(conn, "fetch", sql, *args)
                for name, (sql, args) in stmts.items() if name != "area"}
    return {"area_m2": round(area["area_m2"], 1),
            "counts": {r["layer"]: r["n"] for r in rows["counts"]},
            "pipe_length_m": pipe_lengths(rows["pipes"]),
            "green_area_m2": green_areas(rows["green"]),
            "building_area_m2": building_areas(rows["buildings"]),
            "diameter_classes": lq.classes()["diameter_classes"]}
