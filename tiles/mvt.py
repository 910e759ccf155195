"""Mapbox Vector Tile SQL, compiled once per layer from the catalogue.

Every layer spec becomes a small set of SQL fragments at start-up (one per zoom band of its
generalisation), each producing the layer's ``ST_AsMVT`` bytes with the tile address bound as
``$1, $2, $3 = z, x, y`` and an override of the feature cap as ``$4``. A composite tile of several layers is ONE
statement that concatenates the layers' MVT bytes (an MVT is a list of independent layer
messages, Mapbox Vector Tile spec 2.1 §4.1), so the SQL text depends only on the set of layers
and their zoom bands: asyncpg prepares it once per connection and reuses it for every tile.

Techniques (see the team's peer study): the tile envelope is transformed into the column's SRID
(``geom && ST_Transform(ST_TileEnvelope(z,x,y, margin => buffer/extent), srid)``) so the GiST
index does the filtering and the column is transformed only for output; generalisation works
on the clipped tile-space geometry (snap and simplify in tile units, drop sub-pixel parts,
polygons as centroids below ``centroid_below``); a ``LIMIT`` caps features per layer per tile.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from cim.db import qualified, quote_ident
from cim.errors import InvalidInput, NotFound
from cim.settings import TileSettings
from layers.catalog import Catalog
from layers.spec import LayerSpec
from layers.sqlbuild import where_conditions

MAX_ZOOM = 24
WEB_MERCATOR = 3857
SAME_AS_WGS84 = {4490}
GEOGRAPHIC = {4326, 4490}  # lon/lat columns: sub-pixel pre-filter in degrees
# From this zoom on, lon/lat geometries are mapped onto the tile grid linearly between the tile's
# corner coordinates instead of being projected row by row. Longitude is linear in Web Mercator;
# latitude deviates from linear by at most extent·π·sin(lat)/(4·2^z) tile units inside a tile,
# i.e. < 0.16 units (1/50 px) at z14 below 54° N — below the integer grid MVT coordinates use.
LINEAR_FROM_ZOOM = 14
FIRST_FILTER_PARAM = 7  # $1..$3 tile, $4 cap, $5/$6 pixel size; spec filter values from $7  # geographic CRSs whose PROJ operation to 3857 has no datum shift
# MapLibre draws a tile 512 px wide; one screen pixel is extent/512 tile units.
TILE_PX = 512


@dataclass(frozen=True)
class Band:
    """How a layer is generalised in one zoom band."""

    centroid: bool
    simplify: bool
    full_attributes: bool = True
    label: bool = True
    linear: bool = False


@dataclass
class CompiledLayer:
    """SQL fragments of one layer, one per generalisation band, plus their bound filter values."""

    spec: LayerSpec
    fragments: dict[Band, str]
    where_values: list

    def band(self, z: int) -> Band:
        """Generalisation band of zoom ``z``."""
        g = self.spec.generalisation
        polygon = self.spec.geometry.type in ("Polygon", "MultiPolygon")
        centroid = bool(polygon and g.centroid_below is not None and z < g.centroid_below)
        simplify = bool(g.simplify_below is not None and z < g.simplify_below and not centroid)
        full = not centroid and (g.attributes_below is None or z >= g.attributes_below)
        label = self.spec.style.label_minzoom is None or z >= self.spec.style.label_minzoom
        linear = self.spec.geometry.srid in GEOGRAPHIC and z >= LINEAR_FROM_ZOOM
        return Band(centroid, simplify, full, label, linear)

    def in_range(self, z: int) -> bool:
        """True when the layer is drawn at zoom ``z``."""
        return self.spec.minzoom <= z <= self.spec.maxzoom


def to_web_mercator(expr: str, srid: int) -> str:
    """SQL moving a geometry expression of ``srid`` to EPSG:3857 for output.

    For CGCS2000 (EPSG:4490) PROJ's only operation to EPSG:3857 is a ballpark (zero) offset to
    WGS 84 followed by the Web Mercator projection, so relabelling the coordinates as EPSG:4326
    gives identical output while taking PostGIS's cheaper 4326 → 3857 path
    (tests/tiles/test_tile_sql.py checks the equality); measured about 30 % less transform time.
    """
    if srid == WEB_MERCATOR:
        return expr
    if srid in SAME_AS_WGS84:
        return f"ST_Transform(ST_SetSRID({expr}, 4326), {WEB_MERCATOR})"
    return f"ST_Transform({expr}, {WEB_MERCATOR})"


def _select_list(spec: LayerSpec, band: Band) -> list[str]:
    """Exposed attributes; reduced bands keep only what the style draws (colour, and the label once shown)."""
    names = [a.name for a in spec.attributes]
    if not band.full_attributes:
        keep = {spec.style.color_by, spec.style.label if band.label else None} - {None}
        names = [n for n in names if n in keep]
    out = []
    for name in names:
        attr = spec.attribute(name)
        col = quote_ident(name)
        # dates are not an MVT value type: send ISO text
        out.append(f"{col}::text AS {col}" if attr and attr.type == "date" else col)
    return out


def _fragment(spec: LayerSpec, band: Band, settings: TileSettings, first_param: int) -> str:
    """SQL returning the layer's MVT bytes for tile ($1,$2,$3); $4 lowers the feature cap.

    $5 and $6 are the width and height of one screen pixel in degrees at the tile (for the
    sub-pixel pre-filter of geographic columns); filter values of ``spec.where`` are bound from
    ``$first_param`` on.
    """
    extent, buffer = settings.extent, settings.buffer
    geom = quote_ident(spec.geometry.column)
    srid = int(spec.geometry.srid)
    px = extent / TILE_PX
    src = f"ST_Centroid({geom})" if band.centroid else geom
    if band.linear:
        # lon/lat straight onto the tile grid (see LINEAR_FROM_ZOOM): no per-row projection
        bounds = f"ST_Transform(ST_TileEnvelope($1, $2, $3), {srid})::box2d"
        out = src
    else:
        bounds = "ST_TileEnvelope($1, $2, $3)"
        out = to_web_mercator(src, srid)
    kind = spec.geometry.type
    polygon, line = kind in ("Polygon", "MultiPolygon"), kind in ("LineString", "MultiLineString")
    mvt = f"ST_AsMVTGeom({out}, __p.bounds, {extent}, {buffer}, true)"
    if band.simplify:
        # generalise on the clipped tile-space geometry: tolerance of one screen pixel; two-point
        # lines and four-corner polygons (most survey pipes and plots) have nothing to simplify
        least = 5 if polygon else 2
        mvt = (f"CASE WHEN ST_NPoints({geom}) > {least} THEN "
               f"ST_SimplifyPreserveTopology(ST_SnapToGrid({mvt}, {px / 2}), {px}) ELSE {mvt} END")
    elif polygon and not band.centroid:
        # a polygon wholly inside the tile and its buffer needs no clipping: scaled onto the tile
        # grid, snapped to integers and oriented as MVT wants (exterior ring clockwise on screen),
        # it is what ST_AsMVTGeom returns without the polygon clipper's validation pass, which
        # costs twice as much (tests/tiles/test_tile_sql.py compares the two)
        inside = (f"ST_ForcePolygonCCW(ST_SnapToGrid("
                  f"ST_Affine({out}, __p.sx, 0, 0, __p.sy, __p.tx, __p.ty), 1))")
        mvt = f"CASE WHEN {geom} @ __p.envelope THEN {inside} ELSE {mvt} END"
    envelope = f"ST_Transform(ST_TileEnvelope($1, $2, $3, margin => {buffer / extent}), {srid})"
    conds = [f"{geom} && __p.envelope"]
    conds.append("is_current")
    g = spec.generalisation
    geographic = srid in GEOGRAPHIC
    # sub-pixel features: below the linear zooms, dropped by their stored bounding box before any
    # transform or clipping (that is where most features are tiny); from there on, measured on
    # the tile-space geometry, which costs one function call per row instead of four
    prefilter = geographic and not band.linear
    if prefilter:
        dx, dy = f"(ST_XMax({geom}) - ST_XMin({geom}))", f"(ST_YMax({geom}) - ST_YMin({geom}))"
        if polygon and g.min_area_px and not band.centroid:
            conds.append(f"{dx} * {dy} >= {float(g.min_area_px)} * $5::float8 * $6::float8")
        if line and g.min_length_px:
            conds.append(f"GREATEST({dx} / $5::float8, {dy} / $6::float8) >= {float(g.min_length_px)}")
    placeholders = itertools.count(first_param)
    conds += where_conditions(spec, None, lambda _value, _pg_type: f"${next(placeholders)}")
    cols = _select_list(spec, band)
    inner_cols = ", ".join([f"{quote_ident(spec.id_column)} AS __id", *cols, f"{mvt} AS __geom"])
    outer_cols = ", ".join(["__id", *[c.split(" AS ")[-1] for c in cols], "__geom"])
    keep = ["__geom IS NOT NULL"]
    if not prefilter and not band.centroid and polygon:
        # (snapping may leave a tiny polygon empty; ST_AsMVTGeom returns NULL for those)
        keep.append(f"ST_Area(__geom) >= {g.min_area_px * px * px}" if g.min_area_px else "NOT ST_IsEmpty(__geom)")
    if not prefilter and g.min_length_px and line:
        keep.append(f"ST_Length(__geom) >= {g.min_length_px * px}")
    # OFFSET 0 keeps q a separate plan node: without it PostgreSQL pulls q up and evaluates the
    # MVT geometry expression once for the WHERE below and again for the output. The tile
    # envelope and bounds are computed once per statement in __p (OFFSET 0 again: pulled up, a
    # generic plan would evaluate ST_Transform(ST_TileEnvelope(...)) once per row)
    name = spec.id.replace("'", "")
    cap = int(spec.max_features or settings.max_features)
    return (f"(SELECT COALESCE(ST_AsMVT(t, '{name}', {extent}, '__geom', '__id'), ''::bytea) FROM ("
            f"SELECT {outer_cols} FROM (SELECT {inner_cols} FROM "
            f"({_params(envelope, bounds, extent)}) __p, {qualified(spec.table)} "
            f"WHERE {' AND '.join(conds)} OFFSET 0) q WHERE {' AND '.join(keep)} "
            f"LIMIT LEAST({cap}, $4::bigint)) t)")


def _params(envelope: str, bounds: str, extent: int) -> str:
    """One row per statement: the filter envelope (column SRID, with buffer), the tile bounds of
    ST_AsMVTGeom and the affine map of those bounds onto the tile grid (y pointing down)."""
    w, h = "(ST_XMax(b) - ST_XMin(b))", "(ST_YMax(b) - ST_YMin(b))"
    return (f"SELECT e AS envelope, b AS bounds, {extent} / {w} AS sx, -{extent} / {h} AS sy, "
            f"-ST_XMin(b) * {extent} / {w} AS tx, ST_YMax(b) * {extent} / {h} AS ty "
            f"FROM (SELECT {envelope} AS e, {bounds} AS b OFFSET 0) __b OFFSET 0")


def compile_layer(spec: LayerSpec, settings: TileSettings) -> CompiledLayer:
    """Compile every generalisation band of one layer (filter values bound from $7)."""
    layer = CompiledLayer(spec, {}, list(spec.where.values()))
    bands = {layer.band(z) for z in range(spec.minzoom, spec.maxzoom + 1)}
    for band in bands:
        layer.fragments[band] = _fragment(spec, band, settings, first_param=FIRST_FILTER_PARAM)
    return layer


def _renumber(fragment: str, count: int, offset: int) -> str:
    """Shift the filter placeholders $7.. of a fragment by ``offset`` (highest first)."""
    base = FIRST_FILTER_PARAM
    for i in range(count - 1, -1, -1):
        fragment = fragment.replace(f"${base + i}", f"${base + offset + i}")
    return fragment


@dataclass
class TileQuery:
    """Ready-to-run statement for one tile: SQL text (stable per layer set and band) and its values."""

    sql: str
    args: tuple
    layers: tuple[str, ...]


@dataclass
class TileCompiler:
    """All layers compiled at start-up; builds (and remembers) the composite statements."""

    settings: TileSettings
    layers: dict[str, CompiledLayer]
    _composites: dict[tuple, str] = field(default_factory=dict)

    @classmethod
    def from_catalog(cls, catalog: Catalog, settings: TileSettings) -> TileCompiler:
        """Compile every public layer of the catalogue."""
        return cls(settings, {s.id: compile_layer(s, settings) for s in catalog.public()})

    def parse_layers(self, text: str) -> tuple[str, ...]:
        """``a,b,c`` → known layer ids in request order, duplicates removed; unknown → NotFound."""
        ids = [p.strip() for p in text.split(",") if p.strip()]
        if not ids:
            raise InvalidInput("未指定图层", "no layer given")
        if len(ids) > 32:
            raise InvalidInput("一次最多请求 32 个图层", "at most 32 layers per tile")
        unknown = [i for i in ids if i not in self.layers]
        if unknown:
            raise NotFound(f"没有图层 {', '.join(unknown)}", f"no layer {', '.join(unknown)}")
        return tuple(dict.fromkeys(ids))

    def query(self, layer_ids: tuple[str, ...], z: int, x: int, y: int, cap: int | None = None) -> TileQuery | None:
        """Statement for a tile of these layers; None when no layer is drawn at ``z``.

        ``cap`` (bound as $4) lowers every layer's feature cap, used to bring an oversized tile
        under the byte budget.
        """
        check_tile(z, x, y)
        chosen = [self.layers[i] for i in layer_ids if self.layers[i].in_range(z)]
        if not chosen:
            return None
        key = tuple((c.spec.id, c.band(z)) for c in chosen)
        sql = self._composites.get(key)
        if sql is None:
            parts, offset = [], 0
            for c in chosen:
                frag = c.fragments[c.band(z)]
                parts.append(_renumber(frag, len(c.where_values), offset))
                offset += len(c.where_values)
            # the FROM names $5/$6 so every statement takes the same leading parameters
            sql = "SELECT " + " || ".join(parts) + " FROM (SELECT $5::float8, $6::float8) AS params"
            self._composites[key] = sql
        values = [v for c in chosen for v in c.where_values]
        limit = cap if cap is not None else 1 << 31
        px_w, px_h = pixel_degrees(z, y)
        return TileQuery(sql, (z, x, y, max(1, int(limit)), px_w, px_h, *values), tuple(c.spec.id for c in chosen))


def pixel_degrees(z: int, y: int) -> tuple[float, float]:
    """Width (degrees of longitude) and height (degrees of latitude) of one screen pixel at the tile's centre."""
    n = 1 << z
    width = 360.0 / (n * TILE_PX)
    lat = math.atan(math.sinh(math.pi * (1 - 2 * (y + 0.5) / n)))
    return width, width * math.cos(lat)


def check_tile(z: int, x: int, y: int) -> None:
    """Reject tile addresses outside the WebMercatorQuad matrix of zoom ``z``."""
    if not 0 <= z <= MAX_ZOOM:
        raise InvalidInput(f"缩放级别 {z} 超出范围 0–{MAX_ZOOM}", f"zoom {z} outside 0–{MAX_ZOOM}")
    n = 1 << z
    if not (0 <= x < n and 0 <= y < n):
        raise InvalidInput(f"瓦片 {z}/{x}/{y} 超出该级别范围 (0–{n - 1})",
                           f"tile {z}/{x}/{y} outside the tile matrix (0–{n - 1})")


def bounds_query(spec: LayerSpec) -> tuple[str, tuple]:
    """SQL (and bound values) for the lon/lat extent of a layer's current rows."""
    geom = quote_ident(spec.geometry.column)
    args: list[Any] = []

    def bind(value: Any, _pg_type: str) -> str:
        args.append(value)
        return f"${len(args)}"

    conds = ["is_current", *where_conditions(spec, None, bind)]
    sql = (f"SELECT ST_XMin(e) AS xmin, ST_YMin(e) AS ymin, ST_XMax(e) AS xmax, ST_YMax(e) AS ymax FROM ("
           f"SELECT ST_Extent(ST_Transform({geom}, 4490))::geometry AS e FROM {qualified(spec.table)} "
           f"WHERE {' AND '.join(conds)}) b")
    return sql, tuple(args)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def layer_stats(tile: bytes) -> list[tuple[str, int, int]]:
    """(layer name, bytes, feature count) of each layer of an MVT, read without decoding geometry.

    Walks the protobuf wire format of MVT 2.1 (tile.layers = 3; layer.name = 1,
    layer.features = 2) and skips everything else by its length.
    """
    out, i = [], 0
    while i < len(tile):
        key, i = _varint(tile, i)
        if key & 7 != 2:
            raise ValueError("unexpected MVT field")
        size, i = _varint(tile, i)
        end = i + size
        if key >> 3 == 3:
            name, count, j = "", 0, i
            while j < end:
                k, j = _varint(tile, j)
                wire = k & 7
                if wire == 0:
                    _, j = _varint(tile, j)
                    continue
                if wire != 2:
                    raise ValueError("unexpected MVT wire type")
                n, j = _varint(tile, j)
                if k >> 3 == 1:
                    name = tile[j:j + n].decode()
                elif k >> 3 == 2:
                    count += 1
                j += n
            out.append((name, size, count))
        i = end
    return out


def cap_for_budget(stats: list[tuple[str, int, int]], budget: int) -> int:
    """Largest per-layer feature cap whose estimated tile size fits ``budget`` bytes.

    A layer of ``b`` bytes and ``n`` features is assumed to shrink to ``b * min(1, cap / n)``.
    """
    def size(cap: int) -> float:
        return sum(b * min(1.0, cap / n) if n else b for _, b, n in stats)

    lo, hi = 1, max((n for _, _, n in stats), default=1)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if size(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo
