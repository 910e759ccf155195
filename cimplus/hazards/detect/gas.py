"""Gas rules G01–G04 (domain.md §4.2): under buildings, clearance to buildings, horizontal
clearance on parallel runs, vertical clearance at crossings. Limits come from
``cim/standards/clearances.yaml`` (the file ingest rules Q19–Q21 read).

Distances are outer wall to outer wall: a pipe's outer wall is its centre line ± DN/2
(``diameter_mm``, else ``width_mm``). Candidates come from the GiST indexes in degrees; metres
are measured on candidates only, in the county's metric frame; values are compared after
rounding to the millimetre, so a facility planted at exactly the required distance is compliant.
"""

from __future__ import annotations

import json
import math
from typing import Any

import psycopg2.extensions

from cimplus.hazards.config import Rule
from cimplus.hazards.detect import Ctx, evidence_sql, insert, method, variants
from cimplus.hazards.facility import code_sql, key_sql, ref_sql

GAS = "RQ"


def _gas(ctx: Ctx, rule: Rule, params: dict[str, Any], skip_burial: list[str]) -> str:
    """Current gas segments of the county in service, with outer radius ``r`` (m) and the
    pressure-class column ``cls`` of the clearance tables."""
    c = ctx.clearances
    params.update(skip_burial=list(skip_burial), classes=list(c["pressure_classes"]),
                  alias=json.dumps(c.get("class_alias") or {}), unknown_class=c.get("unknown_class"))
    return ("SELECT s.*, coalesce(s.diameter_mm, s.width_mm, 0) / 2000.0 AS r, "
            "coalesce(%(alias)s::jsonb ->> s.pressure_class, "
            "         CASE WHEN s.pressure_class = ANY(%(classes)s) THEN s.pressure_class END, %(unknown_class)s) AS cls "
            "FROM cim.pipe_segment s WHERE s.county_code = %(county)s AND s.is_current AND s.network = 'RQ' "
            "AND (s.status IS NULL OR NOT s.status = ANY(%(skip_status)s)) "
            "AND (s.burial_type IS NULL OR NOT s.burial_type = ANY(%(skip_burial)s))")


def _others(alias: str) -> str:
    """Filter of the other pipe of a pair: the county's current segments in service."""
    a = alias
    return (f"{a}.county_code = %(county)s AND {a}.is_current "
            f"AND ({a}.status IS NULL OR NOT {a}.status = ANY(%(skip_status)s)) "
            f"AND ({a}.burial_type IS NULL OR NOT {a}.burial_type = ANY(%(skip_burial)s))")


# --- G01 ----------------------------------------------------------------------------------

@method("gas_under_building", inputs=lambda r: ["pipe_segment:RQ", "building"], focusable=True)
def gas_under_building(cur: psycopg2.extensions.cursor, ctx: Ctx, rule: Rule) -> None:
    """G01: a gas segment (not aerial) whose centre line runs under a building footprint; the
    finding is the part under the footprint, measured as its length."""
    params = ctx.base(rule)
    gas = _gas(ctx, rule, params, rule.params.get("skip_burial_types") or [])
    inputs = ("jsonb_build_object('pressure_class', g.pressure_class, 'diameter_mm', g.diameter_mm, "
              "'material', g.material, 'burial_type', g.burial_type, 'building_code', b.code, "
              "'floors_above', b.floors_above)")
    for extra in variants(ctx, rule, {"g": ["pipe_segment:RQ"], "b": ["building"]}, params):
        insert(cur, f"""
            WITH g AS ({gas})
            SELECT NULL::text AS grade,
                   jsonb_build_array({ref_sql('pipe_segment', 'g')}, {ref_sql('building', 'b')}) AS refs,
                   ARRAY[{key_sql('pipe_segment', 'g')}, {key_sql('building', 'b')}] AS keys,
                   i.part AS geom, ST_ClosestPoint(i.part, ST_Centroid(i.part)) AS marker, x.len AS measured,
                   {evidence_sql('x.len', '0', 'm', '=', inputs, "'quantity', 'length_under_footprint'")} AS evidence,
                   format('%%s：燃气管段 %%s 穿越房屋 %%s 下方 %%s m', %(rule_zh)s::text, {code_sql('pipe_segment', 'g')},
                          {code_sql('building', 'b')}, x.len) AS title,
                   coalesce(b.address, g.road) AS location, b.community_code AS community_code
            FROM g JOIN cim.building b ON b.geom && g.geom AND ST_Intersects(b.geom, g.geom)
            CROSS JOIN LATERAL (SELECT ST_CollectionExtract(ST_Intersection(g.geom, b.geom), 2) AS part) i
            CROSS JOIN LATERAL (SELECT round(ST_Length(ST_Transform(i.part, %(srid)s))::numeric, 3)::float8 AS len) x
            WHERE b.county_code = %(county)s AND b.is_current AND NOT ST_IsEmpty(i.part) AND x.len > 0 {extra}
        """, params)


# --- G02 ----------------------------------------------------------------------------------

def building_limits(clearances: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per pressure-class column: the standard distance to a building (``std``), what it is
    measured to (``basis``), and the reduced distance (``red``) or wall-thickness steps
    (``wall``: [[min wall mm, distance], …], thickest first) of the reductions."""
    gb = clearances["gas_building"]
    red = gb.get("reductions") or {}
    out: dict[str, dict[str, Any]] = {}
    for basis in ("foundation", "outer_wall"):
        for cls, value in (gb.get(basis) or {}).items():
            out[cls] = {"std": float(value), "basis": basis}
    for cls, entry in out.items():
        if cls in red:
            entry["red"] = float(red[cls])
        steps = red.get(f"{cls}_wall_mm")
        if steps:
            entry["wall"] = sorted(([float(t), float(v)] for t, v in steps), reverse=True)
    return out


@method("gas_building_clearance", inputs=lambda r: ["pipe_segment:RQ", "building"], focusable=True)
def gas_building_clearance(cur: psycopg2.extensions.cursor, ctx: Ctx, rule: Rule) -> None:
    """G02: the outer wall of a gas pipe closer to a building footprint than its pressure class
    allows (GB 50028 表6.3.3-1); a reduction applies only where the record qualifies (its wall
    thickness is recorded; for 次高压A the thickness picks the step). Pipes under the building
    are G01's."""
    from cim.db import quote_ident
    from cim.schema import feature_table

    params = ctx.base(rule)
    gas = _gas(ctx, rule, params, rule.params.get("skip_burial_types") or [])
    needs = str(rule.params.get("reduction_needs") or "wall_thickness_mm")
    if feature_table("pipe_segment").column(needs) is None:
        from cim.errors import ConfigError
        raise ConfigError(f"规则 {rule.id} 的 reduction_needs 不是管段字段：{needs}",
                          f"rule {rule.id}: reduction_needs is not a pipe_segment column: {needs}")
    need_col = f"g.{quote_ident(needs)}"
    params.update(limits=json.dumps(building_limits(ctx.clearances)), dpm=ctx.frame.deg(1.0))
    inputs = ("jsonb_build_object('pressure_class', g.pressure_class, 'class_column', g.cls, 'diameter_mm', "
              "g.diameter_mm, 'wall_thickness_mm', g.wall_thickness_mm, 'reduction', l.red IS NOT NULL, "
              "'required_basis', CASE WHEN l.red IS NOT NULL THEN 'reduced_' || l.basis ELSE l.basis END, "
              "'standard_m', l.std, 'building_code', b.code, 'centre_distance_m', round(d.centre::numeric, 3))")
    for extra in variants(ctx, rule, {"g": ["pipe_segment:RQ"], "b": ["building"]}, params):
        insert(cur, f"""
            WITH g AS ({gas})
            SELECT NULL::text AS grade,
                   jsonb_build_array({ref_sql('pipe_segment', 'g')}, {ref_sql('building', 'b')}) AS refs,
                   ARRAY[{key_sql('pipe_segment', 'g')}, {key_sql('building', 'b')}] AS keys,
                   ST_ShortestLine(g.geom, b.geom) AS geom, ST_ClosestPoint(g.geom, b.geom) AS marker,
                   d.clear AS measured,
                   {evidence_sql('d.clear', 'l.required', 'm', '>=', inputs)} AS evidence,
                   format('%%s：燃气管段 %%s 外壁距房屋 %%s %%s m，要求 ≥ %%s m', %(rule_zh)s::text,
                          {code_sql('pipe_segment', 'g')}, {code_sql('building', 'b')}, d.clear, l.required) AS title,
                   coalesce(b.address, g.road) AS location, b.community_code AS community_code
            FROM g
            CROSS JOIN LATERAL (
                SELECT (lim ->> 'std')::float8 AS std, lim ->> 'basis' AS basis,
                       CASE WHEN {need_col} IS NULL THEN NULL
                            WHEN lim ? 'wall' THEN (SELECT (w ->> 1)::float8 FROM jsonb_array_elements(lim -> 'wall') w
                                                    WHERE g.wall_thickness_mm >= (w ->> 0)::float8
                                                    ORDER BY (w ->> 0)::float8 DESC LIMIT 1)
                            ELSE (lim ->> 'red')::float8 END AS red
                FROM (SELECT %(limits)s::jsonb -> g.cls AS lim) x) l0
            CROSS JOIN LATERAL (SELECT l0.std, l0.basis, l0.red, coalesce(l0.red, l0.std) AS required) l
            JOIN cim.building b ON ST_DWithin(b.geom, g.geom, (l.std + g.r) * %(dpm)s)
            CROSS JOIN LATERAL (
                SELECT c.centre, round((c.centre - g.r)::numeric, 3)::float8 AS clear
                FROM (SELECT ST_Distance(ST_Transform(g.geom, %(srid)s), ST_Transform(b.geom, %(srid)s)) AS centre) c) d
            WHERE l.std IS NOT NULL AND b.county_code = %(county)s AND b.is_current
              AND NOT ST_Intersects(b.geom, g.geom) AND d.clear < l.required {extra}
        """, params)


# --- G03 ----------------------------------------------------------------------------------

def horizontal_tables(clearances: dict[str, Any]) -> dict[str, Any]:
    """The horizontal clearance tables and the parallel-run definition, as one bound value."""
    gh, run = clearances["gas_horizontal"], clearances["parallel_run"]
    gg = gh.get("gas_gas") or {}
    return {"direct": gh.get("direct") or {}, "conduit": gh.get("conduit") or {},
            "conduit_types": list(gh.get("conduit_burial_types") or []),
            "skip_types": list(gh.get("skip_burial_types") or []),
            "small": float(gg.get("small_m", 0.4)), "large": float(gg.get("large_m", 0.5)),
            "cut": float(gg.get("large_above_dn_mm", 300)),
            "max_angle_deg": float(run["max_angle_deg"]), "min_run_m": float(run["min_run_m"]),
            "touch_m": float(run["touch_m"])}


def _reach(tables: dict[str, Any], classes: list[str]) -> dict[str, float]:
    """Largest horizontal limit per pressure-class column (gas-gas included)."""
    out = {}
    for cls in classes:
        vals = [float(v[cls]) for t in (tables["direct"], tables["conduit"]) for v in t.values() if cls in v]
        out[cls] = max([*vals, tables["large"]])
    return out


def _max_radius(cur: psycopg2.extensions.cursor, ctx: Ctx, nets: list[str]) -> float:
    cur.execute("SELECT coalesce(max(coalesce(diameter_mm, width_mm)), 0) / 2000.0 FROM cim.pipe_segment "
                "WHERE county_code = %s AND is_current AND network = ANY(%s)", (ctx.county, nets))
    return float(cur.fetchone()[0])


@method("gas_parallel_clearance", inputs=lambda r: ["pipe_segment:RQ", *(f"pipe_segment:{n}" for n in
                                                                        r.params.get("networks") or [])],
        focusable=True)
def gas_parallel_clearance(cur: psycopg2.extensions.cursor, ctx: Ctx, rule: Rule) -> None:
    """G03: a gas pipe and another pipe running parallel (directions at most ``max_angle_deg``
    apart, a common stretch of ``min_run_m``) closer than the horizontal table along at least
    ``min_run_m`` of that stretch. Pipes that touch or cross (closer than ``touch_m``) are not a
    run, so crossings are never reported here. Segments are straight lines between their ends,
    as in ingest rule Q21."""
    tables = horizontal_tables(ctx.clearances)
    nets = [str(n) for n in (rule.params.get("networks") or [])]
    params = ctx.base(rule)
    gas = _gas(ctx, rule, params, tables["skip_types"])
    classes = list(ctx.clearances["pressure_classes"])
    params.update(tables=json.dumps(tables), nets=nets, reach=json.dumps(_reach(tables, classes)),
                  rmax=_max_radius(cur, ctx, nets), dpm=ctx.frame.deg(1.0),
                  cos_max=math.cos(math.radians(tables["max_angle_deg"])), run=tables["min_run_m"],
                  touch=tables["touch_m"])
    cur.execute("CREATE TEMP TABLE hz_g03p (gid bigint, oid bigint) ON COMMIT DROP")
    others = [f"pipe_segment:{n}" for n in nets]
    for extra in variants(ctx, rule, {"g": ["pipe_segment:RQ"], "o": others}, params):
        cur.execute(f"""
            INSERT INTO hz_g03p
            WITH g AS ({gas})
            SELECT g.id, o.id FROM g
            JOIN cim.pipe_segment o
              ON ST_DWithin(o.geom, g.geom, ((%(reach)s::jsonb ->> g.cls)::float8 + g.r + %(rmax)s) * %(dpm)s)
            WHERE {_others('o')} AND o.network = ANY(%(nets)s) AND o.id <> g.id
              AND (o.network <> 'RQ' OR o.id > g.id) {extra}
        """, params)
    cur.execute("""
        CREATE TEMP TABLE hz_g03x ON COMMIT DROP AS
        SELECT s.id, s.network, s.burial_type, coalesce(s.diameter_mm, s.width_mm) AS dn,
               coalesce(s.diameter_mm, s.width_mm, 0) / 2000.0 AS r,
               coalesce(%(alias)s::jsonb ->> s.pressure_class,
                        CASE WHEN s.pressure_class = ANY(%(classes)s) THEN s.pressure_class END, %(unknown_class)s) AS cls,
               ST_X(t.a) AS sx, ST_Y(t.a) AS sy, ST_X(t.b) AS ex, ST_Y(t.b) AS ey
        FROM cim.pipe_segment s
        CROSS JOIN LATERAL (SELECT ST_Transform(ST_StartPoint(s.geom), %(srid)s) AS a,
                                   ST_Transform(ST_EndPoint(s.geom), %(srid)s) AS b) t
        WHERE s.id IN (SELECT gid FROM hz_g03p UNION SELECT oid FROM hz_g03p)
    """, params)
    inputs = ("jsonb_build_object('pressure_class', g.pressure_class, 'class_column', m.cls, 'diameter_mm', "
              "g.diameter_mm, 'other_network', o.network, 'other_burial_type', o.burial_type, "
              "'other_diameter_mm', coalesce(o.diameter_mm, o.width_mm), 'run_m', round(m.close::numeric, 1), "
              "'angle_deg', round(degrees(acos(least(1.0, m.cos)))::numeric, 1))")
    insert(cur, f"""
        WITH pairs AS (
            SELECT p.gid, p.oid, i.cls, i.sx, i.sy, i.ex, i.ey, i.r AS ri, i.dn AS dni,
                   j.network AS onet, j.burial_type AS oburial,
                   j.sx AS jsx, j.sy AS jsy, j.ex AS jex, j.ey AS jey, j.r AS rj, j.dn AS dnj
            FROM (SELECT DISTINCT gid, oid FROM hz_g03p) p
            JOIN hz_g03x i ON i.id = p.gid JOIN hz_g03x j ON j.id = p.oid),
        a AS (
            SELECT q.*, l.len_i, (q.ex - q.sx) / l.len_i AS ux, (q.ey - q.sy) / l.len_i AS uy, l.len_j
            FROM pairs q
            CROSS JOIN LATERAL (SELECT sqrt((q.ex - q.sx) ^ 2 + (q.ey - q.sy) ^ 2) AS len_i,
                                       sqrt((q.jex - q.jsx) ^ 2 + (q.jey - q.jsy) ^ 2) AS len_j) l
            WHERE l.len_i > 0 AND l.len_j > 0),
        b AS (
            SELECT a.*, abs(a.ux * (a.jex - a.jsx) + a.uy * (a.jey - a.jsy)) / a.len_j AS cos,
                   (a.jsx - a.sx) * a.ux + (a.jsy - a.sy) * a.uy AS t0,
                   (a.jex - a.sx) * a.ux + (a.jey - a.sy) * a.uy AS t1,
                   a.ux * (a.jsy - a.sy) - a.uy * (a.jsx - a.sx) AS n0,
                   a.ux * (a.jey - a.sy) - a.uy * (a.jex - a.sx) AS n1
            FROM a),
        c AS (
            SELECT b.*, greatest(0.0, least(b.t0, b.t1)) AS lo, least(b.len_i, greatest(b.t0, b.t1)) AS hi
            FROM b WHERE b.cos >= %(cos_max)s AND b.t1 <> b.t0),
        d AS (
            SELECT c.*, abs(c.n0 + (c.lo - c.t0) * (c.n1 - c.n0) / (c.t1 - c.t0)) AS o_lo,
                   abs(c.n0 + (c.hi - c.t0) * (c.n1 - c.n0) / (c.t1 - c.t0)) AS o_hi,
                   CASE WHEN c.onet = 'RQ' THEN
                            CASE WHEN greatest(c.dni, c.dnj) > (t.v ->> 'cut')::float8 THEN (t.v ->> 'large')::float8
                                 ELSE (t.v ->> 'small')::float8 END
                        WHEN c.oburial IN (SELECT jsonb_array_elements_text(t.v -> 'conduit_types'))
                             AND (t.v -> 'conduit' -> c.onet ->> c.cls) IS NOT NULL
                            THEN (t.v -> 'conduit' -> c.onet ->> c.cls)::float8
                        ELSE (t.v -> 'direct' -> c.onet ->> c.cls)::float8 END AS limit_m
            FROM c CROSS JOIN (SELECT %(tables)s::jsonb AS v) t
            WHERE c.hi - c.lo >= %(run)s),
        m AS (
            SELECT d.*, lc.c_lo, lc.c_hi,
                   CASE WHEN greatest(lc.c_lo, lc.c_hi) < d.limit_m THEN d.hi - d.lo
                        WHEN least(lc.c_lo, lc.c_hi) >= d.limit_m THEN 0.0
                        ELSE (d.hi - d.lo) * (d.limit_m + d.ri + d.rj - least(d.o_lo, d.o_hi))
                             / abs(d.o_hi - d.o_lo) END AS close
            FROM d
            CROSS JOIN LATERAL (SELECT round((d.o_lo - d.ri - d.rj)::numeric, 3)::float8 AS c_lo,
                                       round((d.o_hi - d.ri - d.rj)::numeric, 3)::float8 AS c_hi) lc
            WHERE d.limit_m IS NOT NULL),
        f AS (
            SELECT m.*, CASE WHEN m.c_lo <= m.c_hi THEN m.lo ELSE m.hi END AS tm
            FROM m WHERE m.close >= %(run)s
              AND ST_Distance(ST_MakeLine(ST_MakePoint(m.sx, m.sy), ST_MakePoint(m.ex, m.ey)),
                              ST_MakeLine(ST_MakePoint(m.jsx, m.jsy), ST_MakePoint(m.jex, m.jey))) > %(touch)s),
        p AS (
            SELECT f.*, f.sx + f.ux * f.tm AS px, f.sy + f.uy * f.tm AS py,
                   f.n0 + (f.tm - f.t0) * (f.n1 - f.n0) / (f.t1 - f.t0) AS off
            FROM f)
        SELECT NULL::text AS grade,
               jsonb_build_array({ref_sql('pipe_segment', 'g')}, {ref_sql('pipe_segment', 'o')}) AS refs,
               ARRAY[{key_sql('pipe_segment', 'g')}, {key_sql('pipe_segment', 'o')}] AS keys,
               ST_Transform(ST_SetSRID(ST_MakeLine(ST_MakePoint(m.px, m.py),
                                                   ST_MakePoint(m.px - m.uy * m.off, m.py + m.ux * m.off)), %(srid)s),
                            4490) AS geom,
               ST_Transform(ST_SetSRID(ST_MakePoint(m.px - m.uy * m.off / 2, m.py + m.ux * m.off / 2), %(srid)s),
                            4490) AS marker,
               least(m.c_lo, m.c_hi) AS measured,
               {evidence_sql('least(m.c_lo, m.c_hi)', 'm.limit_m', 'm', '>=', inputs)} AS evidence,
               format('%%s：燃气管段 %%s 与 %%s 管段 %%s 平行 %%s m，净距 %%s m，要求 ≥ %%s m', %(rule_zh)s::text,
                      {code_sql('pipe_segment', 'g')}, o.network, {code_sql('pipe_segment', 'o')},
                      round(m.close::numeric, 1), least(m.c_lo, m.c_hi), m.limit_m) AS title,
               coalesce(g.road, o.road) AS location, NULL::text AS community_code
        FROM p m JOIN cim.pipe_segment g ON g.id = m.gid JOIN cim.pipe_segment o ON o.id = m.oid
    """, params)


# --- G04 ----------------------------------------------------------------------------------

@method("gas_crossing_clearance", inputs=lambda r: ["pipe_segment:RQ", *(f"pipe_segment:{n}" for n in
                                                                        r.params.get("networks") or [])],
        focusable=True)
def gas_crossing_clearance(cur: psycopg2.extensions.cursor, ctx: Ctx, rule: Rule) -> None:
    """G04: where a gas pipe crosses another pipe in plan (interiors cross; touching ends do
    not), each pipe's elevation is interpolated along it, moved from its reference (top / invert /
    centre) to the centre with its size, and the vertical clear distance outer wall to outer wall
    is compared with the GB 50289 vertical table (as ingest rule Q20 computes it)."""
    v = ctx.clearances["vertical"]
    nets = [str(n) for n in (rule.params.get("networks") or [])]
    params = ctx.base(rule)
    gas = _gas(ctx, rule, params, [])
    params.update(nets=nets, pairs=json.dumps(v.get("pairs") or {}), default_m=float(v["default_m"]))
    centre = ("({a}.start_z + {t} * ({a}.end_z - {a}.start_z) + CASE {a}.z_ref WHEN 'invert' THEN {r} "
              "WHEN 'top' THEN -{r} ELSE 0 END)")
    inputs = ("jsonb_build_object('other_network', o.network, 'gas_centre_z', round(z.za::numeric, 3), "
              "'other_centre_z', round(z.zb::numeric, 3), 'gas_diameter_mm', coalesce(g.diameter_mm, g.height_mm), "
              "'other_diameter_mm', coalesce(o.diameter_mm, o.height_mm), 'gas_z_ref', g.z_ref, 'other_z_ref', o.z_ref, "
              "'pair', z.pair)")
    for extra in variants(ctx, rule, {"g": ["pipe_segment:RQ"], "o": [f"pipe_segment:{n}" for n in nets]}, params):
        insert(cur, f"""
            WITH g AS ({gas})
            SELECT NULL::text AS grade,
                   jsonb_build_array({ref_sql('pipe_segment', 'g')}, {ref_sql('pipe_segment', 'o')}) AS refs,
                   ARRAY[{key_sql('pipe_segment', 'g')}, {key_sql('pipe_segment', 'o')}] AS keys,
                   x.pt AS geom, x.pt AS marker, z.clear AS measured,
                   {evidence_sql('z.clear', 'z.limit_m', 'm', '>=', inputs)} AS evidence,
                   format('%%s：燃气管段 %%s 与 %%s 管段 %%s 交叉处垂直净距 %%s m，要求 ≥ %%s m', %(rule_zh)s::text,
                          {code_sql('pipe_segment', 'g')}, o.network, {code_sql('pipe_segment', 'o')}, z.clear,
                          z.limit_m) AS title,
                   coalesce(g.road, o.road) AS location, NULL::text AS community_code
            FROM g JOIN cim.pipe_segment o ON o.geom && g.geom AND ST_Crosses(g.geom, o.geom)
            CROSS JOIN LATERAL (SELECT ST_Centroid(ST_Intersection(g.geom, o.geom)) AS pt) x0
            CROSS JOIN LATERAL (SELECT x0.pt, ST_LineLocatePoint(g.geom, x0.pt) AS ta,
                                       ST_LineLocatePoint(o.geom, x0.pt) AS tb,
                                       coalesce(g.diameter_mm, g.height_mm, 0) / 2000.0 AS ra,
                                       coalesce(o.diameter_mm, o.height_mm, 0) / 2000.0 AS rb) x
            CROSS JOIN LATERAL (
                SELECT zz.za, zz.zb, zz.pair,
                       round((abs(zz.za - zz.zb) - x.ra - x.rb)::numeric, 3)::float8 AS clear,
                       coalesce((%(pairs)s::jsonb ->> zz.pair)::float8, %(default_m)s) AS limit_m
                FROM (SELECT {centre.format(a='g', t='x.ta', r='x.ra')} AS za, {centre.format(a='o', t='x.tb', r='x.rb')} AS zb,
                             least(g.network, o.network) || '-' || greatest(g.network, o.network) AS pair) zz) z
            WHERE {_others('o')} AND o.network = ANY(%(nets)s)
              AND (o.network <> 'RQ' OR o.id > g.id)
              AND g.start_z IS NOT NULL AND g.end_z IS NOT NULL AND o.start_z IS NOT NULL AND o.end_z IS NOT NULL
              AND z.clear < z.limit_m {extra}
        """, params)
