"""Drainage rules (network PS, domain.md §4.4): reverse slope (D01), smaller pipe downstream
(D02), storm/sewer cross-connections and sewage outfalls (D03), outfalls below the receiving
water without a flap gate (D04), missing covers and anti-fall nets (D06).

Flow runs from a segment's start to its end unless 流向 (``flow_dir``) is −1, as ingest reads
it (ingest/validation/drainage.py); nodes are the pipe points a segment's ends refer to
(``start_point_id`` / ``end_point_id``, resolved by the loader).
"""

from __future__ import annotations

import psycopg2.extensions

from cimplus.hazards.config import Rule
from cimplus.hazards.detect import Ctx, evidence_sql, insert, method, variants
from cimplus.hazards.facility import code_sql, key_sql, ref_sql

_PS = ("SELECT s.*, CASE WHEN s.flow_dir = -1 THEN s.end_point_id ELSE s.start_point_id END AS up, "
       "CASE WHEN s.flow_dir = -1 THEN s.start_point_id ELSE s.end_point_id END AS down, "
       "CASE WHEN s.flow_dir = -1 THEN s.end_z ELSE s.start_z END AS z_up, "
       "CASE WHEN s.flow_dir = -1 THEN s.start_z ELSE s.end_z END AS z_down, "
       "CASE WHEN s.flow_dir = -1 THEN s.end_exp_no ELSE s.start_exp_no END AS no_up, "
       "CASE WHEN s.flow_dir = -1 THEN s.start_exp_no ELSE s.end_exp_no END AS no_down, "
       "coalesce(s.diameter_mm, sqrt(4 * s.width_mm * s.height_mm / pi())) AS size "
       "FROM cim.pipe_segment s WHERE s.county_code = %(county)s AND s.is_current AND s.network = 'PS' "
       "AND (s.status IS NULL OR NOT s.status = ANY(%(skip_status)s))")
_NODES = ("SELECT p.* FROM cim.pipe_point p WHERE p.county_code = %(county)s AND p.is_current AND p.network = 'PS'")


@method("reverse_slope", inputs=lambda r: ["pipe_segment:PS"], focusable=True)
def reverse_slope(cur: psycopg2.extensions.cursor, ctx: Ctx, rule: Rule) -> None:
    """D01: the elevation rises along the flow by more than ``tolerance_m`` (the offset between a
    segment's reference and its invert is the same at both ends, so any reference serves)."""
    params = ctx.base(rule)
    params["tol"] = float(rule.params.get("tolerance_m", 0.01))
    inputs = ("jsonb_build_object('upstream', s.no_up, 'downstream', s.no_down, 'z_up', s.z_up, 'z_down', s.z_down, "
              "'z_ref', s.z_ref, 'flow_dir', s.flow_dir, 'tolerance_m', %(tol)s)")
    [extra] = variants(ctx, rule, {"s": ["pipe_segment:PS"]}, params)
    insert(cur, f"""
        WITH s AS ({_PS}{extra})
        SELECT NULL::text AS grade, jsonb_build_array({ref_sql('pipe_segment', 's')}) AS refs,
               ARRAY[{key_sql('pipe_segment', 's')}] AS keys, s.geom AS geom,
               ST_LineInterpolatePoint(s.geom, 0.5) AS marker, x.rise AS measured,
               {evidence_sql('x.rise', '%(tol)s', 'm', '<=', inputs, "'quantity', 'rise_along_flow'")} AS evidence,
               format('%%s：%%s 管段 %%s 沿水流方向高程升高 %%s m（%%s %%s → %%s %%s）', %(rule_zh)s::text, s.subtype,
                      {code_sql('pipe_segment', 's')}, x.rise, s.no_up, s.z_up, s.no_down, s.z_down) AS title,
               s.road AS location, NULL::text AS community_code
        FROM s CROSS JOIN LATERAL (SELECT round((s.z_down - s.z_up)::numeric, 3)::float8 AS rise) x
        WHERE x.rise > %(tol)s
    """, params)


@method("smaller_downstream", inputs=lambda r: ["pipe_segment:PS", "pipe_point:PS"])
def smaller_downstream(cur: psycopg2.extensions.cursor, ctx: Ctx, rule: Rule) -> None:
    """D02: at a node, an outgoing segment smaller (round size, or the equivalent round size of a
    W×H section) than the largest incoming one by more than ``tolerance_mm``."""
    params = ctx.base(rule)
    params["tol"] = float(rule.params.get("tolerance_mm", 0.5))
    inputs = ("jsonb_build_object('node', n.exp_no, 'downstream_size_mm', round(s.size::numeric, 1), "
              "'largest_inflow_mm', round(i.in_max::numeric, 1), 'largest_inflow', i.in_code)")
    insert(cur, f"""
        WITH s AS ({_PS}),
        i AS (SELECT DISTINCT ON (down) down AS node, size AS in_max,
                     coalesce(code, start_exp_no || '→' || end_exp_no) AS in_code
              FROM s WHERE size IS NOT NULL AND down IS NOT NULL ORDER BY down, size DESC, id)
        SELECT NULL::text AS grade,
               jsonb_build_array({ref_sql('pipe_segment', 's')}, {ref_sql('pipe_point', 'n')}) AS refs,
               ARRAY[{key_sql('pipe_segment', 's')}, {key_sql('pipe_point', 'n')}] AS keys,
               n.geom AS geom, n.geom AS marker, round(s.size::numeric, 1)::float8 AS measured,
               {evidence_sql('round(s.size::numeric, 1)', 'round(i.in_max::numeric, 1)', 'mm', '>=', inputs)} AS evidence,
               format('%%s：点 %%s 下游管段 %%s 管径 %%s mm 小于上游最大管径 %%s mm', %(rule_zh)s::text, n.exp_no,
                      {code_sql('pipe_segment', 's')}, round(s.size::numeric), round(i.in_max::numeric)) AS title,
               coalesce(n.road, s.road) AS location, NULL::text AS community_code
        FROM s JOIN i ON i.node = s.up JOIN cim.pipe_point n ON n.id = s.up
        WHERE s.size IS NOT NULL AND s.size < i.in_max - %(tol)s
    """, params)


@method("cross_connection", inputs=lambda r: ["pipe_segment:PS", "pipe_point:PS"])
def cross_connection(cur: psycopg2.extensions.cursor, ctx: Ctx, rule: Rule) -> None:
    """D03: a node where storm (YS) and sewer (WS) segments meet, or a segment of one system
    ending on a point of the other (combined HS is allowed) → ``cross_connection``; a sewage
    outfall (WS, or 排放口类别 in ``sewer_outfall_kinds``) discharging into a receiving water →
    ``sewer_outfall``. One finding per node, both kinds listed when both hold."""
    params = ctx.base(rule)
    params["sewer_kinds"] = list(rule.params.get("sewer_outfall_kinds") or [])
    inputs = "jsonb_build_object('kinds', k.kinds, 'subtypes', k.subtypes, 'point_subtype', n.subtype, " \
             "'outfall_kind', n.outfall_kind, 'receiving_water', n.receiving_water)"
    insert(cur, f"""
        WITH s AS ({_PS}),
        ends AS (SELECT start_point_id AS node, subtype FROM s WHERE subtype IN ('YS', 'WS')
                 UNION ALL SELECT end_point_id, subtype FROM s WHERE subtype IN ('YS', 'WS')),
        mixed AS (SELECT e.node, array_agg(DISTINCT e.subtype ORDER BY e.subtype) AS subtypes
                  FROM ends e JOIN cim.pipe_point p ON p.id = e.node
                  GROUP BY e.node, p.subtype
                  HAVING count(DISTINCT e.subtype) > 1
                      OR bool_or(p.subtype IN ('YS', 'WS') AND p.subtype <> e.subtype)),
        outfalls AS (SELECT p.id AS node FROM ({_NODES}) p
                     WHERE p.node_type = 'outfall' AND nullif(trim(p.receiving_water), '') IS NOT NULL
                       AND (p.subtype = 'WS' OR p.outfall_kind = ANY(%(sewer_kinds)s))),
        k AS (SELECT node, array_agg(kind ORDER BY kind) AS kinds, max(subtypes) AS subtypes
              FROM (SELECT node, 'cross_connection' AS kind, subtypes::text AS subtypes FROM mixed
                    UNION ALL SELECT node, 'sewer_outfall', NULL FROM outfalls) x GROUP BY node)
        SELECT CASE WHEN 'sewer_outfall' = ANY(k.kinds) THEN 'sewer_outfall' ELSE 'cross_connection' END AS grade,
               jsonb_build_array({ref_sql('pipe_point', 'n')}) AS refs, ARRAY[{key_sql('pipe_point', 'n')}] AS keys,
               n.geom AS geom, n.geom AS marker, NULL::float8 AS measured,
               {evidence_sql("to_jsonb(k.kinds)", "'null'::jsonb", '', '=', inputs)} AS evidence,
               format('%%s：点 %%s %%s', %(rule_zh)s::text, n.exp_no,
                      concat_ws('；', CASE WHEN 'cross_connection' = ANY(k.kinds) THEN '雨污管道在此相接（' || k.subtypes || '）' END,
                                CASE WHEN 'sewer_outfall' = ANY(k.kinds) THEN '污水排放口直排 ' || n.receiving_water END)) AS title,
               n.road AS location, NULL::text AS community_code
        FROM k JOIN cim.pipe_point n ON n.id = k.node
        WHERE n.county_code = %(county)s AND n.is_current
    """, params)


@method("outfall_backflow", inputs=lambda r: ["pipe_point:PS"], focusable=True)
def outfall_backflow(cur: psycopg2.extensions.cursor, ctx: Ctx, rule: Rule) -> None:
    """D04: an outfall whose invert lies below the receiving water (the first recorded level of
    ``levels``: normal, then flood) and that has no flap gate recorded (拍门 not 是)."""
    params = ctx.base(rule)
    levels = [str(v) for v in (rule.params.get("levels") or ["normal_water_z", "flood_water_z"])]
    allowed = {"normal_water_z", "flood_water_z"}
    levels = [v for v in levels if v in allowed] or ["normal_water_z"]
    level = "coalesce(" + ", ".join(f"p.{v}" for v in levels) + ")"
    basis = "CASE " + " ".join(f"WHEN p.{v} IS NOT NULL THEN '{v}'" for v in levels) + " END"
    [extra] = variants(ctx, rule, {"p": ["pipe_point:PS"]}, params)
    inputs = (f"jsonb_build_object('invert_z', p.invert_z, 'level_basis', {basis}, 'normal_water_z', p.normal_water_z, "
              "'flood_water_z', p.flood_water_z, 'flap_gate', p.flap_gate, 'receiving_water', p.receiving_water)")
    insert(cur, f"""
        SELECT NULL::text AS grade, jsonb_build_array({ref_sql('pipe_point', 'p')}) AS refs,
               ARRAY[{key_sql('pipe_point', 'p')}] AS keys, p.geom AS geom, p.geom AS marker,
               x.below AS measured,
               {evidence_sql('x.below', '0', 'm', '<=', inputs, "'quantity', 'invert_below_water'")} AS evidence,
               format('%%s：排放口 %%s 管底低于%%s水位 %%s m，未设拍门', %(rule_zh)s::text, p.exp_no,
                      coalesce(p.receiving_water, '受纳水体'), x.below) AS title,
               p.road AS location, NULL::text AS community_code
        FROM ({_NODES}) p
        CROSS JOIN LATERAL (SELECT round(({level} - p.invert_z)::numeric, 3)::float8 AS below) x
        WHERE p.node_type = 'outfall' AND p.invert_z IS NOT NULL AND x.below > 0 AND p.flap_gate IS NOT TRUE {extra}
    """, params)


@method("manhole_safety", inputs=lambda r: ["pipe_point:PS"], focusable=True)
def manhole_safety(cur: psycopg2.extensions.cursor, ctx: Ctx, rule: Rule) -> None:
    """D06: a manhole whose cover is recorded missing (井盖规格 in ``missing_cover_values``) →
    ``missing_cover``; one recorded without an anti-fall net (防坠网 否) → ``no_anti_fall_net``."""
    params = ctx.base(rule)
    params["missing"] = [str(v) for v in (rule.params.get("missing_cover_values") or [])]
    [extra] = variants(ctx, rule, {"p": ["pipe_point:PS"]}, params)
    inputs = "jsonb_build_object('kinds', k.kinds, 'well_cover', p.well_cover, 'anti_fall_net', p.anti_fall_net)"
    insert(cur, f"""
        SELECT CASE WHEN 'missing_cover' = ANY(k.kinds) THEN 'missing_cover' ELSE 'no_anti_fall_net' END AS grade,
               jsonb_build_array({ref_sql('pipe_point', 'p')}) AS refs, ARRAY[{key_sql('pipe_point', 'p')}] AS keys,
               p.geom AS geom, p.geom AS marker, NULL::float8 AS measured,
               {evidence_sql("to_jsonb(k.kinds)", "'null'::jsonb", '', '=', inputs)} AS evidence,
               format('%%s：检查井 %%s %%s', %(rule_zh)s::text, p.exp_no,
                      concat_ws('，', CASE WHEN 'missing_cover' = ANY(k.kinds) THEN '井盖缺失' END,
                                CASE WHEN 'no_anti_fall_net' = ANY(k.kinds) THEN '未安装防坠网' END)) AS title,
               p.road AS location, NULL::text AS community_code
        FROM ({_NODES}) p
        CROSS JOIN LATERAL (
            SELECT array_remove(ARRAY[CASE WHEN trim(p.well_cover) = ANY(%(missing)s) THEN 'missing_cover' END,
                                      CASE WHEN p.anti_fall_net IS FALSE THEN 'no_anti_fall_net' END], NULL) AS kinds) k
        WHERE (p.node_type = 'manhole' OR p.appurtenance = '检查井') AND cardinality(k.kinds) > 0 {extra}
    """, params)
