"""Building rules (domain.md §2.12, §4.5): appraisal grade C/D (B01) and commercial self-built
houses of three or more floors without an appraisal (B02)."""

from __future__ import annotations

import psycopg2.extensions

from cimplus.hazards.config import Rule
from cimplus.hazards.detect import Ctx, evidence_sql, insert, method, variants
from cimplus.hazards.facility import code_sql, key_sql, ref_sql

_BUILDINGS = "SELECT b.* FROM cim.building b WHERE b.county_code = %(county)s AND b.is_current"


def _select(title: str, grade: str, measured: str, evidence: str) -> str:
    return f"""
        SELECT {grade} AS grade, jsonb_build_array({ref_sql('building', 'b')}) AS refs,
               ARRAY[{key_sql('building', 'b')}] AS keys, b.geom AS geom, ST_PointOnSurface(b.geom) AS marker,
               {measured} AS measured, {evidence} AS evidence,
               format('%%s：房屋 %%s %%s', %(rule_zh)s::text, {code_sql('building', 'b')}, {title}) AS title,
               b.address AS location, b.community_code AS community_code
        FROM ({_BUILDINGS}) b"""


@method("building_appraisal", inputs=lambda r: ["building"], focusable=True)
def building_appraisal(cur: psycopg2.extensions.cursor, ctx: Ctx, rule: Rule) -> None:
    """B01: a building whose safety appraisal is one of ``grades`` (C 局部危房, D 整体危房); the
    grade picks the class and level (rules.yaml ``grades``)."""
    params = ctx.base(rule)
    params["grades"] = [str(g) for g in (rule.params.get("grades") or ["C", "D"])]
    inputs = ("jsonb_build_object('grade', b.appraisal_grade, 'structure_type', b.structure_type, "
              "'build_year', b.build_year, 'floors_above', b.floors_above, 'use_code', b.use_code)")
    ev = evidence_sql("to_jsonb(b.appraisal_grade)", "to_jsonb('A/B'::text)", "", "in", inputs)
    [extra] = variants(ctx, rule, {"b": ["building"]}, params)
    insert(cur, _select("'安全鉴定 ' || b.appraisal_grade || ' 级'", "b.appraisal_grade::text", "NULL::float8", ev)
           + " WHERE b.appraisal_grade = ANY(%(grades)s)" + extra, params)


@method("self_built_commercial", inputs=lambda r: ["building"], focusable=True)
def self_built_commercial(cur: psycopg2.extensions.cursor, ctx: Ctx, rule: Rule) -> None:
    """B02: a self-built house (自建房) of ``min_floors`` or more floors above ground used
    commercially (用途 in ``commercial_use_codes``) with no safety appraisal recorded."""
    params = ctx.base(rule)
    params.update(min_floors=int(rule.params.get("min_floors", 3)),
                  uses=[str(u) for u in (rule.params.get("commercial_use_codes") or [])])
    inputs = ("jsonb_build_object('use_code', b.use_code, 'floors_above', b.floors_above, 'self_built', b.self_built, "
              "'appraisal_grade', b.appraisal_grade, 'min_floors', %(min_floors)s)")
    ev = evidence_sql("to_jsonb(b.floors_above)", "to_jsonb(%(min_floors)s)", "层", "<", inputs,
                      "'quantity', 'floors_above_without_appraisal'")
    insert(cur, _select("'经营性自建房 ' || b.floors_above || ' 层，未做安全鉴定'", "NULL::text",
                        "b.floors_above::float8", ev)
           + " WHERE b.self_built AND b.floors_above >= %(min_floors)s AND b.use_code = ANY(%(uses)s)"
             " AND b.appraisal_grade IS NULL" + variants(ctx, rule, {"b": ["building"]}, params)[0], params)
