"""SQL of the spatial query API (identify, spatial, nearest, section, stats) and of search.

Distances and tolerances are metres on the CGCS2000 ellipsoid (geography casts). So that the
GiST index on the storage column still serves every query, the search area is first expanded
in degrees (``&&`` with an expanded box: a cheap index test) and then refined exactly with
``ST_DWithin`` on geography. Inputs are moved into EPSG:4490; columns are never transformed.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import shapely
import shapely.errors
import shapely.geometry
import yaml

from cim.crs import STORAGE_SRID
from cim.errors import InvalidInput
from layers import cql2
from layers.spec import LayerSpec
from layers.sqlbuild import Params, base_where, col, feature_sql, geom_col, table_sql

CLASSES_FILE = Path(__file__).parent / "query_classes.yaml"
MAX_VERTICES = 50_000
# metres per degree of latitude, rounded down so that the degree box always covers the metres
_M_PER_DEG = 110_000.0


@lru_cache(maxsize=1)
def classes() -> dict[str, Any]:
    """Class breaks used by the statistics (data: layers/query_classes.yaml)."""
    found: dict[str, Any] = yaml.safe_load(CLASSES_FILE.read_text(encoding="utf-8"))
    return found


def input_geometry(geojson: dict[str, Any], *, allowed: tuple[str, ...] | None = None) -> bytes:
    """Validate a posted GeoJSON geometry and return it as WKB (x/y order, made valid)."""
    try:
        geom = shapely.geometry.shape(geojson)
    except Exception as exc:  # shapely raises several types for malformed GeoJSON
        raise InvalidInput("GeoJSON 几何无效", "invalid GeoJSON geometry") from exc
    if allowed and geom.geom_type not in allowed:
        raise InvalidInput(f"几何类型须为 {'/'.join(allowed)}，实为 {geom.geom_type}",
                           f"geometry must be {'/'.join(allowed)}, got {geom.geom_type}")
    if geom.is_empty:
        raise InvalidInput("几何为空", "the geometry is empty")
    if shapely.get_num_coordinates(geom) > MAX_VERTICES:
        raise InvalidInput(f"几何顶点超过 {MAX_VERTICES} 个", f"the geometry has more than {MAX_VERTICES} vertices")
    if not all(abs(v) < 1e9 for v in geom.bounds) or any(v != v for v in geom.bounds):
        raise InvalidInput("几何坐标超出范围", "geometry coordinates out of range")
    if not geom.is_valid:
        try:
            geom = shapely.make_valid(geom)
        except shapely.errors.GEOSException as exc:
            raise InvalidInput("几何无效且无法修复", "invalid geometry that cannot be repaired") from exc
    return shapely.to_wkb(shapely.force_2d(geom))


def geom_param(params: Params, wkb: bytes, srid: int) -> str:
    """SQL of a posted geometry moved into the storage CRS."""
    return f"ST_Transform(ST_SetSRID(ST_GeomFromWKB({params.add(wkb, 'bytea')}), {params.add(srid, 'int')}), {STORAGE_SRID})"


def point_param(params: Params, x: float, y: float, srid: int) -> str:
    """SQL of a posted point moved into the storage CRS."""
    return (f"ST_Transform(ST_SetSRID(ST_MakePoint({params.add(float(x), 'float8')}, {params.add(float(y), 'float8')}), "
            f"{params.add(srid, 'int')}), {STORAGE_SRID})")


def degree_margin(geom_sql: str, metres: str) -> str:
    """Degrees covering ``metres`` around a geometry at its highest latitude (for ``&&`` boxes)."""
    return (f"({metres} / {_M_PER_DEG} / greatest(cos(radians(least(greatest(abs(ST_YMax({geom_sql})), "
            f"abs(ST_YMin({geom_sql}))), 89))), 0.01))")


def _within_metres(spec: LayerSpec, g: str, metres: str) -> str:
    return (f"{geom_col(spec)} && ST_Expand({g}, {degree_margin(g, metres)}) "
            f"AND ST_DWithin({geom_col(spec)}::geography, {g}::geography, {metres})")


def identify_sql(specs: list[LayerSpec], x: float, y: float, srid: int, tolerance_m: float,
                 limit: int) -> tuple[str, list[Any]]:
    """Features of several layers within ``tolerance_m`` of a point, nearest first.

    Rows: (layer, id, feature GeoJSON text, distance in metres).
    """
    params = Params()
    p = "(SELECT g FROM p)"
    tol = params.add(float(tolerance_m), "float8")
    parts = []
    for spec in specs:
        conds = base_where(spec, params) + [_within_metres(spec, p, tol)]
        parts.append(f"SELECT {params.add(spec.id, 'text')} AS layer, {col(spec, spec.id_column)}::bigint AS id, "
                     f"{feature_sql(spec, geom_col(spec), list(spec.attributes))} AS f, "
                     f"ST_Distance({geom_col(spec)}::geography, {p}::geography) AS d "
                     f"FROM {table_sql(spec)} t WHERE {' AND '.join(conds)}")
    point = point_param(params, x, y, srid)
    sql = (f"WITH p AS MATERIALIZED (SELECT {point} AS g) SELECT layer, id, f, d FROM ("
           + " UNION ALL ".join(parts) + f") x ORDER BY d, layer LIMIT {params.add(limit, 'bigint')}")
    return sql, params.values


def spatial_sql(spec: LayerSpec, op: str, wkb: bytes, srid: int, distance_m: float | None,
                cql_text: str | None, limit: int) -> tuple[str, list[Any]]:
    """Features of one layer that intersect / lie within / lie within a distance of a geometry.

    Rows: (feature GeoJSON text); at most ``limit + 1`` so the caller can tell truncation.
    """
    params = Params()
    g = "(SELECT g FROM q)"
    conds = base_where(spec, params)
    if op == "intersects":
        conds.append(f"ST_Intersects({geom_col(spec)}, {g})")
    elif op == "within":
        conds.append(f"ST_Within({geom_col(spec)}, {g})")
    elif op == "dwithin":
        conds.append(_within_metres(spec, g, params.add(float(distance_m or 0), "float8")))
    else:
        raise InvalidInput(f"不支持的空间关系 {op}", f"unsupported spatial operator {op}")
    if cql_text:
        conds.append(cql2.compile_request(spec, params, cql_text, "cql2-text", 4326, False))
    geom = geom_param(params, wkb, srid)
    sql = (f"WITH q AS MATERIALIZED (SELECT {geom} AS g) SELECT {feature_sql(spec, geom_col(spec), list(spec.attributes))} AS f "
           f"FROM {table_sql(spec)} t WHERE {' AND '.join(conds)} ORDER BY {col(spec, spec.id_column)} "
           f"LIMIT {params.add(limit + 1, 'bigint')}")
    return sql, params.values


def nearest_sql(spec: LayerSpec, x: float, y: float, srid: int, k: int) -> tuple[str, list[Any]]:
    """The k nearest features: KNN (``<->``, index-assisted) candidates, then geodesic order.

    Rows: (feature GeoJSON text, distance in metres).
    """
    params = Params()
    point = point_param(params, x, y, srid)
    conds = base_where(spec, params)
    cand = params.add(k * 4 + 20, "bigint")
    sql = (f"SELECT f, ST_Distance(g::geography, {point}::geography) AS d FROM ("
           f"SELECT {feature_sql(spec, geom_col(spec), list(spec.attributes))} AS f, {geom_col(spec)} AS g, "
           f"{col(spec, spec.id_column)} AS id FROM {table_sql(spec)} t WHERE {' AND '.join(conds)} "
           f"ORDER BY {geom_col(spec)} <-> {point} LIMIT {cand}) c ORDER BY d, id LIMIT {params.add(k, 'bigint')}")
    return sql, params.values


def section_sql(specs: list[LayerSpec], wkb: bytes, srid: int) -> tuple[str, list[Any]]:
    """Pipes crossing a line: one row per crossing with the attributes needed for elevations.

    ``t_seg`` is the crossing's fraction along the pipe (start → end), ``along_m`` its geodesic
    distance from the start of the drawn line. Each pipe is attributed to the most specific of
    the requested layers (a layer with a ``where`` before the all-networks layer).
    """
    params = Params()
    table = table_sql(specs[0])
    ordered = sorted(specs, key=lambda s: (not s.where, s.order))
    cases, anys = [], []
    for spec in ordered:
        cond = " AND ".join(base_where(spec, params, alias="s"))
        cases.append(f"WHEN {cond} THEN {params.add(spec.id, 'text')}")
        anys.append(f"({cond})")
    line = geom_param(params, wkb, srid)
    sql = f"""
WITH l AS MATERIALIZED (SELECT {line} AS g),
hit AS (
  SELECT s.id, CASE {' '.join(cases)} END AS layer, s.network, s.subtype, s.material, s.diameter_mm, s.width_mm,
         s.height_mm, s.start_z, s.end_z, s.start_depth, s.end_depth, s.z_ref, s.start_point_id, s.end_point_id,
         s.geom, (ST_Dump(ST_Intersection(s.geom, l.g))).geom AS part
  FROM {table} s, l
  WHERE s.geom && l.g AND ST_Intersects(s.geom, l.g) AND ({' OR '.join(anys)})
), x AS (
  SELECT hit.*, CASE WHEN GeometryType(part) = 'POINT' THEN part ELSE ST_StartPoint(ST_GeometryN(part, 1)) END AS p
  FROM hit
)
SELECT x.id, x.layer, x.network, x.subtype, x.material, x.diameter_mm, x.width_mm, x.height_mm, x.start_z, x.end_z,
       x.start_depth, x.end_depth, x.z_ref, ST_X(x.p) AS lon, ST_Y(x.p) AS lat,
       ST_LineLocatePoint(x.geom, x.p) AS t_seg,
       ST_Length(ST_LineSubstring(l.g, 0, ST_LineLocatePoint(l.g, x.p))::geography) AS along_m,
       a.ground_z AS ground_start, b.ground_z AS ground_end,
       dn.name_zh AS network_zh, dm.name_zh AS material_zh,
       coalesce(ds.attrs ->> 'color', dn.attrs ->> 'color') AS color
FROM x CROSS JOIN l
LEFT JOIN cim.pipe_point a ON a.id = x.start_point_id
LEFT JOIN cim.pipe_point b ON b.id = x.end_point_id
LEFT JOIN cim.dict_network dn ON dn.code = x.network
LEFT JOIN cim.dict_network ds ON ds.code = x.subtype
LEFT JOIN cim.dict_material dm ON dm.code = x.material
ORDER BY along_m, x.id"""
    return sql, params.values


def line_samples_sql(wkb: bytes, srid: int, samples: int, radius_m: float = 300.0) -> tuple[str, list[Any]]:
    """Evenly spaced samples along a line with the line's geodesic length and, per sample, the
    inverse-distance-weighted ground elevation of the nearest (≤ 4, within ``radius_m``) pipe
    points (the ground profile when no DEM is loaded).

    Rows: (fraction, lon, lat, length_m, idw_z or NULL).
    """
    params = Params()
    line = geom_param(params, wkb, srid)
    n = params.add(samples, "int")
    r = params.add(radius_m, "float8")
    sql = f"""
WITH l AS MATERIALIZED (SELECT {line} AS g),
s AS (SELECT i::float8 / ({n} - 1) AS f, ST_LineInterpolatePoint(l.g, i::float8 / ({n} - 1)) AS p,
             ST_Length(l.g::geography) AS len
      FROM l, generate_series(0, {n} - 1) AS i)
SELECT s.f, ST_X(s.p) AS lon, ST_Y(s.p) AS lat, s.len,
       (SELECT sum(k.z / (k.d * k.d)) / sum(1 / (k.d * k.d)) FROM (
          SELECT pp.ground_z AS z, greatest(ST_Distance(pp.geom::geography, s.p::geography), 0.5) AS d
          FROM cim.pipe_point pp
          WHERE pp.is_current AND pp.ground_z IS NOT NULL
            AND pp.geom && ST_Expand(s.p, {degree_margin('s.p', r)})
            AND ST_DWithin(pp.geom::geography, s.p::geography, {r})
          ORDER BY pp.geom <-> s.p LIMIT 4) k) AS idw_z
FROM s ORDER BY s.f"""
    return sql, params.values


def area_sql(params: Params, wkb: bytes | None, srid: int, admin_code: str | None) -> str:
    """SQL of the statistics area: a posted polygon or the union of an admin area's polygons."""
    if admin_code is not None:
        return (f"(SELECT ST_Union(geom) FROM cim.admin_area WHERE is_current AND code = "
                f"{params.add(admin_code, 'text')})")
    assert wkb is not None, "area_sql needs a polygon or an admin code"
    return geom_param(params, wkb, srid)


def stats_sql(specs: list[LayerSpec], wkb: bytes | None, srid: int, admin_code: str | None) -> dict[str, tuple[str, list[Any]]]:
    """Statements of the statistics: area, counts per layer, pipe lengths, green and building areas.

    Every statement starts from the same area CTE ``a`` (one row, NULL geometry when the admin
    code is unknown). Lengths and areas are clipped to the polygon; buildings are counted by
    their point on surface so a building on the boundary counts once.
    """
    out: dict[str, tuple[str, list[Any]]] = {}

    def head(params: Params) -> str:
        return f"WITH a AS MATERIALIZED (SELECT {area_sql(params, wkb, srid, admin_code)} AS g) "

    p = Params()
    out["area"] = (head(p) + "SELECT g IS NOT NULL AS found, ST_Area(g::geography) AS area_m2 FROM a", p.values)

    p = Params()
    h = head(p)
    parts = []
    for spec in specs:
        conds = base_where(spec, p) + [f"ST_Intersects({geom_col(spec)}, (SELECT g FROM a))"]
        parts.append(f"SELECT {p.add(spec.id, 'text')} AS layer, count(*) AS n FROM {table_sql(spec)} t "
                     f"WHERE {' AND '.join(conds)}")
    out["counts"] = (h + " UNION ALL ".join(parts), p.values)

    p = Params()
    h = head(p)
    breaks = classes()["diameter_classes"]
    case = " ".join(f"WHEN dia < {p.add(float(c['max_mm']), 'float8')} THEN {p.add(c['id'], 'text')}"
                    for c in breaks if c.get("max_mm") is not None)
    last = next((c["id"] for c in breaks if c.get("max_mm") is None), "other")
    out["pipes"] = (h + f"""
SELECT network, coalesce(material, 'unknown') AS material,
       CASE WHEN dia IS NULL THEN 'unknown' {case} ELSE {p.add(last, 'text')} END AS dia_class, sum(len) AS length_m
FROM (SELECT t.network, t.material, coalesce(t.diameter_mm, greatest(t.width_mm, t.height_mm)) AS dia,
             CASE WHEN ST_CoveredBy(t.geom, a.g) THEN ST_Length(t.geom::geography)
                  ELSE ST_Length(ST_Intersection(t.geom, a.g)::geography) END AS len
      FROM cim.pipe_segment t, a WHERE t.is_current AND ST_Intersects(t.geom, a.g)) x
GROUP BY 1, 2, 3""", p.values)

    p = Params()
    out["green"] = (head(p) + """
SELECT coalesce(t.class_code, 'unknown') AS class_code,
       sum(ST_Area((CASE WHEN ST_CoveredBy(t.geom, a.g) THEN t.geom ELSE ST_Intersection(t.geom, a.g) END)::geography)) AS area_m2
FROM cim.green_space t, a WHERE t.is_current AND ST_Intersects(t.geom, a.g) GROUP BY 1""", p.values)

    p = Params()
    out["buildings"] = (head(p) + """
SELECT coalesce(t.use_code, 'unknown') AS use_code, count(*) AS n,
       sum(coalesce(t.building_area_m2, ST_Area(t.geom::geography) * greatest(coalesce(t.floors_above, 1), 1))) AS area_m2,
       sum(ST_Area(t.geom::geography)) AS footprint_m2
FROM cim.building t, a WHERE t.is_current AND t.geom && a.g AND ST_Intersects(ST_PointOnSurface(t.geom), a.g)
GROUP BY 1""", p.values)
    return out


def escape_like(text: str) -> str:
    """Escape ``\\``, ``%`` and ``_`` for a LIKE/ILIKE pattern (escape character ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_LABEL_EXTRA = ("name", "road_name", "road", "address")
# Columns of the trigram index of each large table (migration 0020_search_trgm.sql), in order.
TRGM_COLUMNS = {
    "cim.building": ("address", "code", "name"),
    "cim.pipe_point": ("exp_no", "facility_uid", "pump_name", "road"),
    "cim.pipe_segment": ("code", "end_exp_no", "road", "start_exp_no"),
    "cim.streetlight": ("pole_no", "road_name"),
}


def trgm_expression(spec: LayerSpec, alias: str = "t") -> str | None:
    """The indexed search text of the layer's table, when it covers every searchable attribute."""
    cols = TRGM_COLUMNS.get(spec.table)
    fields = {a.name for a in spec.attributes if a.searchable}
    if not cols or not fields <= set(cols):
        return None
    return " || E'\\x1f' || ".join(f"coalesce({col(spec, c, alias)}, '')" for c in cols)


def search_sql(specs: list[LayerSpec], q: str, limit: int) -> tuple[str, list[Any]]:
    """Case-insensitive contains search over the searchable attributes of the layers.

    Rows: (layer, id, match_field, value, extra, rank, w, s, e, n, cx, cy); prefix matches
    rank first. Layers without searchable attributes are skipped.
    """
    params = Params()
    contains = params.add("%" + escape_like(q) + "%", "text")
    prefix = params.add(escape_like(q) + "%", "text")
    per_layer = params.add(limit * 2, "bigint")
    parts = []
    for spec in specs:
        fields = [a.name for a in spec.attributes if a.searchable]
        if not fields:
            continue
        refs = [(f, f"{col(spec, f)}::text") for f in fields]
        match = "CASE " + " ".join(f"WHEN {r} ILIKE {contains} THEN {params.add(f, 'text')}" for f, r in refs) + " END"
        value = "CASE " + " ".join(f"WHEN {r} ILIKE {contains} THEN {r}" for f, r in refs) + " END"
        rank = "CASE WHEN " + " OR ".join(f"{r} ILIKE {prefix}" for _, r in refs) + " THEN 0 ELSE 1 END"
        extra_name = next((n for n in _LABEL_EXTRA if spec.attribute(n) is not None), None)
        extra = f"{col(spec, extra_name)}::text" if extra_name else "NULL::text"
        conds = base_where(spec, params)
        indexed = trgm_expression(spec)
        if indexed:  # narrow with the trigram index first (a superset of the matches)
            conds.append(f"({indexed}) ILIKE {contains}")
        conds.append("(" + " OR ".join(f"{r} ILIKE {contains}" for _, r in refs) + ")")
        parts.append(f"(SELECT {params.add(spec.id, 'text')} AS layer, {col(spec, spec.id_column)} AS id, {match} AS match_field, "
                     f"{value} AS value, {extra} AS extra, {rank} AS rank, {geom_col(spec)} AS geom "
                     f"FROM {table_sql(spec)} t WHERE {' AND '.join(conds)} ORDER BY 6, length({value}), 2 LIMIT {per_layer})")
    if not parts:
        return "", []
    sql = ("SELECT layer, id, match_field, value, extra, rank, ST_XMin(geom) AS w, ST_YMin(geom) AS s, ST_XMax(geom) AS e, "
           "ST_YMax(geom) AS n, ST_X(ST_PointOnSurface(geom)) AS cx, ST_Y(ST_PointOnSurface(geom)) AS cy FROM ("
           + " UNION ALL ".join(parts) + f") x ORDER BY rank, length(value), layer, id LIMIT {params.add(limit * 3, 'bigint')}")
    return sql, params.values
