"""Geometry rules: repaired (G01), empty (G02), wrong type (G03), outside the county (Q24),
building storey height (B01) and footprint (B02)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import shapely

from cim.schema import feature_table
from ingest.mapping.geometry import metric_geometry
from ingest.model import LayerBatch
from ingest.validation.core import Ctx, fmt, key_column

# a Polygon is stored as a one-part MultiPolygon, a LineString as a one-part MultiLineString
_TYPE_IDS = {"Point": (0,), "LineString": (1,), "MultiLineString": (1, 5), "MultiPolygon": (3, 6)}


def check_geometry(ctx: Ctx, batch: LayerBatch) -> None:
    """G01, G02, G03 on one batch."""
    g = batch.geometries()
    keys = key_column(batch)
    keyv = keys.to_numpy() if keys is not None else np.full(len(g), None, dtype=object)
    empty = shapely.is_missing(g) | shapely.is_empty(g)
    far = batch.outliers if batch.outliers is not None else np.zeros(len(g), dtype=bool)
    rows = np.flatnonzero(far)
    if len(rows):
        ctx.emit("G04", batch, rows, key=keyv[rows],
                 zh="坐标远离本图层其他要素（超过 200 km 或 2°），疑为录入错误，未定位",
                 en="coordinates lie far from the rest of the layer (over 200 km or 2 degrees); likely a typing "
                    "error, not located")
    rows = np.flatnonzero(empty & ~far)
    if len(rows):
        ctx.emit("G02", batch, rows, key=keyv[rows],
                 zh=fmt("第 {r} 行没有几何（坐标为空或无法连接起止点）", r=batch.frame["source_row"].to_numpy()[rows]),
                 en=fmt("row {r} has no geometry (empty coordinates or unresolvable end points)",
                        r=batch.frame["source_row"].to_numpy()[rows]))
    want = _TYPE_IDS[feature_table(batch.target).geometry]
    wrong = ~empty & ~np.isin(shapely.get_type_id(g), want)
    rows = np.flatnonzero(wrong)
    if len(rows):
        types = shapely.get_type_id(g[rows])
        names = np.array(["Point", "LineString", "LinearRing", "Polygon", "MultiPoint", "MultiLineString",
                          "MultiPolygon", "GeometryCollection"], dtype=object)[types]
        ctx.emit("G03", batch, rows, key=keyv[rows], value=names,
                 zh=fmt("几何类型 {t} 不符合目标表（多段线不能合并为一条线等）", t=names),
                 en=fmt("geometry type {t} does not fit the target table (e.g. a multi-part line)", t=names))
    if batch.repaired is not None and batch.repaired.any():
        rows = np.flatnonzero(batch.repaired)
        ctx.emit("G01", batch, rows, key=keyv[rows],
                 zh="几何无效（自相交等），已用 make_valid 修复", en="invalid geometry (self-intersection …) repaired "
                 "with make_valid")


def county_boundary(ctx: Ctx):
    """The county polygon (EPSG:4490): loaded admin areas first, else the delivered county area."""
    loaded = loaded_boundary(ctx)
    return loaded if loaded is not None else admin_boundary(ctx)


def loaded_boundary(ctx: Ctx):
    """The county polygon (EPSG:4490) of the loaded admin areas, or None."""
    county = ctx.delivery.county_code
    if not county or ctx.conn is None:
        return None
    with ctx.conn.cursor() as cur:
        cur.execute("SELECT ST_AsBinary(ST_Union(geom)) FROM cim.admin_area "
                    "WHERE code = %s AND level = 'county' AND is_current", (county,))
        row = cur.fetchone()
    if row and row[0] is not None:
        return shapely.from_wkb(bytes(row[0]))
    return None


def admin_boundary(ctx: Ctx):
    """The county polygon (EPSG:4490) of the first delivered admin-area batch that holds it, or None."""
    county = ctx.delivery.county_code
    if not county:
        return None
    for b in ctx.delivery.batches:
        if b.target == "admin_area":
            sel = (b.frame["code"] == county) & (b.frame["level"] == "county")
            geoms = b.frame.loc[sel, "geom"].dropna().to_numpy()
            if len(geoms):
                return shapely.union_all(geoms)
    return None


def county_area(ctx: Ctx, boundary):
    """The county boundary buffered by Q24's ``buffer_m``, prepared for intersection tests."""
    buf_deg = float(ctx.param("Q24", "buffer_m", 200.0)) / 111_000.0
    area = shapely.buffer(boundary, buf_deg)
    shapely.prepare(area)
    return area


def check_inside_county(ctx: Ctx, boundary, batches: Iterable[LayerBatch] | None = None) -> None:
    """Q24: features outside the county boundary (buffered by ``buffer_m``), in ``batches``
    (every batch of the delivery unless given)."""
    if boundary is None or ctx.rule("Q24") is None:
        return
    area = county_area(ctx, boundary)
    for b in ctx.delivery.batches if batches is None else batches:
        inside_county(ctx, b, area)


def inside_county(ctx: Ctx, b: LayerBatch, area) -> None:
    """Q24 on one batch; ``area`` from :func:`county_area`."""
    if ctx.rule("Q24") is None or b.target == "admin_area" or not len(b):
        return
    g = b.geometries()
    present = ~(shapely.is_missing(g) | shapely.is_empty(g))
    outside = present.copy()
    outside[present] = ~shapely.intersects(area, g[present])
    rows = np.flatnonzero(outside)
    if len(rows):
        keys = key_column(b)
        ctx.emit("Q24", b, rows, key=keys.to_numpy()[rows] if keys is not None else None,
                 zh=f"要素位于县域 {ctx.delivery.county_code} 范围之外（坐标系或 X/Y 是否有误？）",
                 en=f"feature lies outside county {ctx.delivery.county_code} (wrong CRS or swapped X/Y?)")


def check_buildings(ctx: Ctx, batch: LayerBatch) -> None:
    """B01 storey height = height / floors above ground outside [min, max]; B02 tiny footprints."""
    f = batch.frame
    keys = key_column(batch)
    keyv = keys.to_numpy() if keys is not None else np.full(len(f), None, dtype=object)
    h = f["height_m"].to_numpy(dtype=float)
    n = f["floors_above"].astype("float64").to_numpy()
    lo, hi = float(ctx.param("B01", "min_storey_m", 2.2)), float(ctx.param("B01", "max_storey_m", 6.0))
    with np.errstate(all="ignore"):
        per = h / n
    bad = np.isfinite(per) & (n > 0) & ((per < lo) | (per > hi))
    rows = np.flatnonzero(bad)
    if len(rows):
        ctx.emit("B01", batch, rows, key=keyv[rows], field_name="height_m/floors_above", value=per[rows].round(2),
                 zh=fmt("高度 {h} m / 地上 {n} 层 = 层高 {p} m，超出 [{lo}, {hi}] m", h=h[rows], n=n[rows].astype(int),
                        p=per[rows], lo=lo, hi=hi),
                 en=fmt("height {h} m over {n} floors = {p} m per storey, outside [{lo}, {hi}] m", h=h[rows],
                        n=n[rows].astype(int), p=per[rows], lo=lo, hi=hi))
    if ctx.rule("B02") is not None and len(f):
        area = shapely.area(metric_geometry(batch))
        small = np.isfinite(area) & (area > 0) & (area < float(ctx.param("B02", "min_area_m2", 4.0)))
        rows = np.flatnonzero(small)
        ctx.emit("B02", batch, rows, key=keyv[rows], value=area[rows].round(2),
                 zh=fmt("建筑占地面积仅 {a} m²", a=area[rows]), en=fmt("footprint of only {a} m²", a=area[rows]))
