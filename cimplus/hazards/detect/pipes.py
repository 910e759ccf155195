"""Rules on single pipe segments of any network: cover depth (G05, D09) and aging under
国办发〔2022〕22号 (G06, W01, H01, D10). Limits come from ``cim/standards/clearances.yaml``
(``cover``) and ``cim/standards/aging.yaml`` (``networks``)."""

from __future__ import annotations

import re
from typing import Any

import psycopg2.extensions
from psycopg2.extras import Json

from cim.db import quote_ident
from cim.errors import ConfigError
from cimplus.hazards.config import Rule
from cimplus.hazards.detect import Ctx, evidence_sql, insert, method, variants
from cimplus.hazards.facility import code_sql, key_sql, ref_sql


def _network(rule: Rule) -> str:
    net = str(rule.params.get("network") or "")
    if not re.match(r"^[A-Z]{2}$", net):
        raise ConfigError(f"规则 {rule.id} 缺少管线类别 network", f"rule {rule.id} needs a two-letter network")
    return net


def _segments(params: dict[str, Any], network: str, skip_burial: list[str]) -> str:
    params.update(network=network, skip_burial=list(skip_burial))
    return ("SELECT s.*, coalesce(s.diameter_mm, s.height_mm, 0) / 2000.0 AS r FROM cim.pipe_segment s "
            "WHERE s.county_code = %(county)s AND s.is_current AND s.network = %(network)s "
            "AND (s.status IS NULL OR NOT s.status = ANY(%(skip_status)s)) "
            "AND (s.burial_type IS NULL OR NOT s.burial_type = ANY(%(skip_burial)s))")


def road_polygons(cur: psycopg2.extensions.cursor, ctx: Ctx) -> tuple[str, bool] | None:
    """``(cim.<roads.table>, lines)`` when the model holds roads with the configured columns and
    the county has current ones; ``lines`` when they are centre lines (a width decides the
    carriageway), else polygons."""
    roads = ctx.rules.roads
    if roads is None:
        return None
    cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = 'cim' AND table_name = %s",
                (roads.table,))
    cols = {r[0] for r in cur.fetchall()}
    if not {roads.geometry, roads.class_column} <= cols:
        return None
    table = f"cim.{quote_ident(roads.table)}"
    current = " AND is_current" if "is_current" in cols else ""
    county = " AND county_code = %s" if "county_code" in cols else ""
    cur.execute(f"SELECT GeometryType({quote_ident(roads.geometry)}) FROM {table} WHERE true{current}{county} LIMIT 1",
                (ctx.county,) if county else None)
    row = cur.fetchone()
    if row is None:
        return None
    return table, "LINE" in str(row[0]).upper()


@method("cover_depth", inputs=lambda r: [f"pipe_segment:{r.params.get('network')}"], focusable=True)
def cover_depth(cur: psycopg2.extensions.cursor, ctx: Ctx, rule: Rule) -> None:
    """G05 / D09: cover from the ground to the pipe's outer top, at both ends, below the minimum
    of the cover table. The depth at an end (埋深, to the segment's elevation reference) is the
    recorded one, else the end point's ground elevation minus the segment's elevation; the top is
    r above a centre and 2r above an invert. Under a carriageway (a road polygon of a
    carriageway class, when the model has roads) the carriageway value applies, elsewhere
    ``other``; the evidence says which and whether roads were available."""
    net = _network(rule)
    table = ctx.clearances["cover"].get(net)
    if not table:
        raise ConfigError(f"clearances.yaml 没有 {net} 的覆土要求", f"clearances.yaml has no cover for {net}")
    params = ctx.base(rule)
    segs = _segments(params, net, rule.params.get("skip_burial_types") or [])
    found = road_polygons(cur, ctx)
    params.update(carriageway=float(table.get("carriageway", table["other"])), other=float(table["other"]),
                  road_source=f"cim.{ctx.rules.roads.table}" if found and ctx.rules.roads else None)
    if found:
        roads, lines = found
        r = ctx.rules.roads
        assert r is not None
        geom, cls = quote_ident(r.geometry), quote_ident(r.class_column)
        params["cw_classes"] = list(r.carriageway_classes)
        if lines:
            # half the carriageway in metres, in the county's metric frame; a degree prefilter
            # through the GiST index with the widest road of any class
            known = [v for v in r.default_width_m.values()] or [0.0]
            params.update(cw_share=r.carriageway_share, cw_default=Json(r.default_width_m),
                          cw_deg=ctx.frame.deg(max(known + [100.0]) * r.carriageway_share))
            width = f"rd.{quote_ident(r.width_column)}" if r.width_column else "NULL::float8"
            half = (f"coalesce({width}, (%(cw_default)s::jsonb ->> rd.{cls})::float8, 0) "
                    f"* %(cw_share)s / 2")
            is_cw = (f"EXISTS (SELECT 1 FROM {roads} rd WHERE ST_DWithin(rd.{geom}, s.geom, %(cw_deg)s) "
                     f"AND rd.{cls} = ANY(%(cw_classes)s) AND rd.county_code = %(county)s AND rd.is_current "
                     f"AND ST_DWithin(ST_Transform(rd.{geom}, %(srid)s), ST_Transform(s.geom, %(srid)s), {half}))")
        else:
            is_cw = (f"EXISTS (SELECT 1 FROM {roads} rd WHERE rd.{geom} && s.geom "
                     f"AND ST_Intersects(rd.{geom}, s.geom) AND rd.{cls} = ANY(%(cw_classes)s))")
    else:
        is_cw = "false"
    top = "CASE s.z_ref WHEN 'top' THEN 0 WHEN 'invert' THEN 2 * s.r ELSE s.r END"
    inputs = ("jsonb_build_object('cover_basis', c.basis, 'road_source', %(road_source)s::text, "
              "'start_cover_m', c.c0, 'end_cover_m', c.c1, 'start_depth', s.start_depth, 'end_depth', s.end_depth, "
              "'z_ref', s.z_ref, 'diameter_mm', coalesce(s.diameter_mm, s.height_mm), "
              "'pressure_class', s.pressure_class, 'burial_type', s.burial_type)")
    [extra] = variants(ctx, rule, {"s": [f"pipe_segment:{net}"]}, params)
    insert(cur, f"""
        WITH s AS ({segs}{extra})
        SELECT NULL::text AS grade, jsonb_build_array({ref_sql('pipe_segment', 's')}) AS refs,
               ARRAY[{key_sql('pipe_segment', 's')}] AS keys, s.geom AS geom,
               CASE WHEN c.c1 IS NULL OR c.c0 <= c.c1 THEN ST_StartPoint(s.geom) ELSE ST_EndPoint(s.geom) END AS marker,
               c.cover AS measured,
               {evidence_sql('c.cover', 'c.required', 'm', '>=', inputs)} AS evidence,
               format('%%s：%%s 管段 %%s 覆土 %%s m，要求 ≥ %%s m（%%s）', %(rule_zh)s::text, s.network,
                      {code_sql('pipe_segment', 's')}, c.cover, c.required,
                      CASE c.basis WHEN 'carriageway' THEN '车行道' ELSE '非车行道' END) AS title,
               s.road AS location, NULL::text AS community_code
        FROM s
        LEFT JOIN cim.pipe_point sp ON sp.id = s.start_point_id
        LEFT JOIN cim.pipe_point ep ON ep.id = s.end_point_id
        CROSS JOIN LATERAL (
            SELECT x.c0, x.c1, round(least(x.c0, x.c1)::numeric, 3)::float8 AS cover, b.basis,
                   CASE b.basis WHEN 'carriageway' THEN %(carriageway)s ELSE %(other)s END AS required
            FROM (SELECT round((coalesce(s.start_depth, sp.ground_z - s.start_z) - {top})::numeric, 3)::float8 AS c0,
                         round((coalesce(s.end_depth, ep.ground_z - s.end_z) - {top})::numeric, 3)::float8 AS c1) x,
                 (SELECT CASE WHEN {is_cw} THEN 'carriageway' ELSE 'other' END AS basis) b) c
        WHERE c.cover IS NOT NULL AND c.cover < c.required
    """, params)


@method("aging", inputs=lambda r: [f"pipe_segment:{r.params.get('network')}"], focusable=True)
def aging(cur: psycopg2.extensions.cursor, ctx: Ctx, rule: Rule) -> None:
    """G06 / W01 / H01 / D10: 22号 renewal criteria per network (aging.yaml). A material renewed
    whatever its age → grade ``material``; age (reference year − install year) at least
    ``min_years`` for the listed materials (all when none are listed) → ``age`` (a candidate: 22号
    wants an assessment before renewal); install year unknown for a pipe the age test would
    cover → ``unknown_year`` (年代不详, for field verification)."""
    net = _network(rule)
    crit = (ctx.aging.get("networks") or {}).get(net)
    if not crit:
        raise ConfigError(f"aging.yaml 没有 {net} 的更新改造标准", f"aging.yaml has no criteria for {net}")
    params = ctx.base(rule)
    segs = _segments(params, net, [])
    params.update(always=list(crit.get("always") or []), materials=list(crit.get("materials") or []),
                  any_material=not crit.get("materials"), min_years=crit.get("min_years"),
                  unknown=bool(crit.get("unknown_year")), year=ctx.year)
    covered = "(%(any_material)s OR s.material = ANY(%(materials)s) OR s.material IS NULL)"
    inputs = ("jsonb_build_object('criterion', a.grade, 'material', s.material, 'install_year', s.install_year, "
              "'age_years', %(year)s - s.install_year, 'reference_year', %(year)s, 'min_years', %(min_years)s)")
    [extra] = variants(ctx, rule, {"s": [f"pipe_segment:{net}"]}, params)
    insert(cur, f"""
        WITH s AS ({segs}{extra})
        SELECT a.grade, jsonb_build_array({ref_sql('pipe_segment', 's')}) AS refs,
               ARRAY[{key_sql('pipe_segment', 's')}] AS keys, s.geom AS geom,
               ST_LineInterpolatePoint(s.geom, 0.5) AS marker,
               CASE a.grade WHEN 'age' THEN (%(year)s - s.install_year)::float8 END AS measured,
               {evidence_sql("CASE a.grade WHEN 'age' THEN to_jsonb(%(year)s - s.install_year) "
                             "WHEN 'material' THEN to_jsonb(s.material) END",
                             "CASE a.grade WHEN 'age' THEN to_jsonb(%(min_years)s) END",
                             "a", "<", inputs)} AS evidence,
               format('%%s：%%s 管段 %%s %%s', %(rule_zh)s::text, s.network, {code_sql('pipe_segment', 's')},
                      CASE a.grade WHEN 'material' THEN '材质 ' || s.material || ' 须更新改造'
                                   WHEN 'age' THEN '已运行 ' || (%(year)s - s.install_year) || ' 年（≥ '
                                                   || %(min_years)s || ' 年），须评估'
                                   ELSE '建设年代不详，须现场核实' END) AS title,
               s.road AS location, NULL::text AS community_code
        FROM s
        CROSS JOIN LATERAL (
            SELECT CASE WHEN s.material = ANY(%(always)s) THEN 'material'
                        WHEN s.install_year IS NOT NULL AND %(min_years)s::int IS NOT NULL
                             AND %(year)s - s.install_year >= %(min_years)s AND {covered} THEN 'age'
                        WHEN s.install_year IS NULL AND %(unknown)s AND {covered} THEN 'unknown_year'
                   END AS grade) a
        WHERE a.grade IS NOT NULL
    """, params)
