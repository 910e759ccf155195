"""Pipe cross-section (剖切) along a drawn line: the pipes it crosses and the ground profile.

:func:`section` runs its statements on one connection (the line's samples with their
pipe-point ground estimate, the crossings, and the current DEMs and their files) and samples the DEMs in a
worker thread; everything else is arithmetic on the rows:

- elevations of a crossing are interpolated along the pipe at the crossing point, from the
  surveyed end elevations (``start_z`` / ``end_z``) or, where only depths were surveyed, from the
  ground minus the depth (CJJ 61 records either); ``z_ref`` says whether they refer to the top,
  the centre or the invert of the section, whose height is ``height_mm`` or ``diameter_mm``;
- the ground is the newest current DEM covering the point where one is loaded, else the ground
  elevations of the pipe ends (``cim.pipe_point.ground_z``, or ``z + depth``) interpolated along
  the pipe, and for the profile an inverse-distance weighting of the nearest pipe points
  (``ground_source`` says which: ``dem`` or ``pipe_points``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from cim import dbcall, raster
from cim.errors import InvalidInput
from layers import query as lq
from layers.spec import LayerSpec

log = logging.getLogger(__name__)

MAX_LENGTH_M = 20_000
PIPE_TABLE = "cim.pipe_segment"
# section offsets (top, centre, bottom) from the recorded elevation, in section heights, per z_ref
_OFFSETS = {"top": (0.0, -0.5, -1.0), "invert": (1.0, 0.5, 0.0), "centre": (0.5, 0.0, -0.5)}


def check_layers(specs: Sequence[LayerSpec]) -> None:
    """InvalidInput unless every layer is a pipe segment layer (only pipes have a cross-section)."""
    bad = [s.id for s in specs if s.table != PIPE_TABLE]
    if bad:
        raise InvalidInput(f"剖切只适用于管段图层：{', '.join(bad)}",
                           f"section applies to pipe segment layers only: {', '.join(bad)}")


def default_samples(length_m: float) -> int:
    """Ground profile samples: one every 5 m, at least 11 and at most 201."""
    return int(min(201, max(11, length_m / 5 + 1)))


def hex_color(color: str | None) -> str | None:
    """'r,g,b' from the network dictionary → '#rrggbb' (a '#…' colour is kept, anything else dropped)."""
    if not color:
        return None
    try:
        r, g, b = (int(v) for v in color.split(","))
        return f"#{r:02x}{g:02x}{b:02x}"
    except ValueError:
        return color if color.startswith("#") else None


def lerp(a: float | None, b: float | None, t: float) -> float | None:
    """``a`` → ``b`` at fraction ``t``; one missing end gives the other, both missing give None."""
    if a is None and b is None:
        return None
    if a is None or b is None:
        return a if b is None else b
    return a + (b - a) * t


def _r3(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def _end_ground(ground: float | None, z: float | None, depth: float | None) -> float | None:
    """Ground at a pipe end: the point's surveyed ground, else elevation + depth."""
    if ground is not None:
        return ground
    return z + depth if z is not None and depth is not None else None


def crossing(row: Mapping[str, Any], ground_dem: float | None) -> dict[str, Any]:
    """Elevations of one crossing, interpolated along the pipe at the crossing.

    ``z_ref`` says which part of the section the recorded elevations and depths refer to
    (top / centre / invert, centre when unknown); the section height is ``height_mm`` or
    ``diameter_mm``. ``depth_m`` is the recorded depth interpolated at the crossing (same
    reference); a missing elevation or depth is derived from the other and the ground.
    """
    t = float(row["t_seg"] or 0)
    z = lerp(row["start_z"], row["end_z"], t)
    depth = lerp(row["start_depth"], row["end_depth"], t)
    ground = ground_dem
    if ground is None:
        ground = lerp(_end_ground(row["ground_start"], row["start_z"], row["start_depth"]),
                      _end_ground(row["ground_end"], row["end_z"], row["end_depth"]), t)
    if z is None and depth is not None and ground is not None:
        z = ground - depth
    if depth is None and z is not None and ground is not None:
        depth = ground - z
    size = (row["height_mm"] or row["diameter_mm"] or 0) / 1000.0
    top = centre = bottom = None
    if z is not None:
        offsets = _OFFSETS.get(row["z_ref"], _OFFSETS["centre"])
        top, centre, bottom = (round(z + o * size, 3) for o in offsets)
    return {"id": row["id"], "layer": row["layer"], "network": row["network"], "network_zh": row["network_zh"],
            "subtype": row["subtype"], "diameter_mm": row["diameter_mm"], "width_mm": row["width_mm"],
            "height_mm": row["height_mm"], "material": row["material"], "material_zh": row["material_zh"],
            "distance_m": _r3(row["along_m"]), "z_top": top, "z_centre": centre, "z_bottom": bottom,
            "depth_m": _r3(depth), "ground_z": _r3(ground), "z_ref": row["z_ref"], "color": hex_color(row["color"]),
            "lon": round(row["lon"], 8), "lat": round(row["lat"], 8)}


def ground_profile(samples: Sequence[Mapping[str, Any]], dem: Sequence[float | None], length_m: float) -> list[dict[str, Any]]:
    """Ground at each sample: the DEM where it has a value, else the pipe points' estimate."""
    out = []
    for s, zd in zip(samples, dem, strict=True):
        z = zd if zd is not None else s["idw_z"]
        out.append({"distance_m": round(s["f"] * length_m, 3), "z": _r3(z)})
    return out


async def dem_heights(conn: dbcall.AsyncConn, lons: list[float], lats: list[float]) -> list[float | None] | None:
    """Ground elevations from the current DEMs (each point from the newest DEM covering it, whatever
    its county; None where none has a value), or None without a DEM.

    A DEM registered but unreadable (file moved away) counts as none, so the section still
    answers from the pipe points.
    """
    if not lons:
        return None
    try:
        values = await raster.sample_dem_async(conn, lons, lats)
    except OSError as exc:
        log.warning("DEM unreadable, section ground from pipe points: %s", exc)
        return None
    if values is None:
        return None
    return [None if math.isnan(v) else float(v) for v in values]


async def section(pool: asyncpg.Pool, specs: Sequence[LayerSpec], wkb: bytes, srid: int,
                  samples: int | None = None) -> dict[str, Any]:
    """Pipes of ``specs`` crossing the line ``wkb`` (in ``srid``) and the ground profile along it.

    Returns ``{"length_m", "ground_source", "ground": [{distance_m, z}], "pipes": [crossing]}``,
    pipes ordered by distance along the line. InvalidInput for a non-pipe layer or a line
    longer than :data:`MAX_LENGTH_M`.
    """
    check_layers(specs)
    async with pool.acquire() as conn:
        sql, args = lq.line_samples_sql(wkb, srid, 2)
        length = (await dbcall.run(conn, "fetch", sql, *args))[0]["len"]
        if length > MAX_LENGTH_M:
            raise InvalidInput(f"剖切线长度超过 {MAX_LENGTH_M // 1000} 公里",
                               f"the section line is longer than {MAX_LENGTH_M // 1000} km")
        sql, args = lq.line_samples_sql(wkb, srid, samples or default_samples(length))
        points = await dbcall.run(conn, "fetch", sql, *args)
        sql, args = lq.section_sql(list(specs), wkb, srid)
        rows = await dbcall.run(conn, "fetch", sql, *args)
        dem = await dem_heights(conn, [s["lon"] for s in points] + [r["lon"] for r in rows],
                                [s["lat"] for s in points] + [r["lat"] for r in rows])
    dem_ground = dem[:len(points)] if dem else [None] * len(points)
    dem_cross = dem[len(points):] if dem else [None] * len(rows)
    return {"length_m": round(length, 3),
            "ground_source": "dem" if any(v is not None for v in dem_ground) else "pipe_points",
            "ground": ground_profile(points, dem_ground, length),
            "pipes": [crossing(r, zd) for r, zd in zip(rows, dem_cross, strict=True)]}
