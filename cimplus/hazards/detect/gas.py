"""Gas rules G01–G04 (domain.md §4.2): under buildings, clearance to buildings, horizontal
clearance on parallel runs, vertical clearance at crossings. Limits come from
``cim/standards/clearances.yaml`` (the file ingest rules Q19–Q21 read).

Distances are outer wall to outer wall: a pipe's outer wall is its centre line ± DN/2
(``diameter_mm``, else ``width_mm``). Candidates come from the GiST indexes in degrees, probed
once per run of gas segments (:func:`_gas_runs`, made once per scan for G01–G04): ``hz_gb`` (gas
segments × buildings within the largest G02 distance, for G01 and G02), ``hz_g03p`` (G03's
parallel candidates) and ``hz_gs`` (touching gas × other segments, for G04); metres are measured
on candidates only, in the county's metric frame; values are compared after rounding to the
millimetre, so a facility planted at exactly the required distance is compliant.
"""

from __future__ import annotations

import math
from typing import Any

import psycopg2.extensions

from cimplus.hazards.config import Rule
from cimplus.hazards.detect import Ctx, evidence_sql, insert, method, variants
from cimplus.hazards.facility import M_PER_DEG_LAT, M_PER_DEG_LON_EQ, code_sql, key_sql, ref_sql

GAS = "RQ"


def _classes(ctx: Ctx, params: dict[str, Any]) -> str:
    """SQL of a gas segment's pressure-class column ``cls`` in the clearance tables (高压 classes
    through ``class_alias``, unknown ones as ``unknown_class``)."""
    c = ctx.clearances
    alias = c.get("class_alias") or {}
    params.update(classes=list(c["pressure_classes"]), alias_from=list(alias), alias_to=list(alias.values()),
                  unknown_class=c.get("unknown_class"))
    return ("coalesce((%(alias_to)s::text[])[array_position(%(alias_from)s::text[], s.pressure_class)], "
            "CASE WHEN s.pressure_class = ANY(%(classes)s) THEN s.pressure_class END, %(unknown_class)s)")


def _gas(ctx: Ctx, params: dict[str, Any], columns: str = "") -> str:
    """Current gas segments of the county in service, with outer radius ``r`` (m) and ``cls``
    (and ``columns``); only this connection's share of them when the scan is sharded: the
    segments whose middle lies in every n-th stripe of RUN_LENGTH_M across the county from west to
    east, so that the runs of :func:`_gas_runs` along the east axis stay whole on one connection."""
    shard = ""
    if ctx.shard:
        params.update(_run_params(ctx), shard_k=ctx.shard[0], shard_n=ctx.shard[1])
        shard = (" AND mod(mod(floor((ST_X(ST_StartPoint(s.geom)) + ST_X(ST_EndPoint(s.geom))) / 2 / %(run_lx)s)"
                 "::bigint, %(shard_n)s) + %(shard_n)s, %(shard_n)s) = %(shard_k)s")
    return (f"SELECT s.*, coalesce(s.diameter_mm, s.width_mm, 0) / 2000.0 AS r, {_classes(ctx, params)} AS cls"
            f"{columns} FROM cim.pipe_segment s WHERE s.county_code = %(county)s AND s.is_current "
            f"AND s.network = 'RQ' AND (s.status IS NULL OR NOT s.status = ANY(%(skip_status)s)){shard}")


def _not_burial(alias: str, param: str) -> str:
    return f"({alias}.burial_type IS NULL OR NOT {alias}.burial_type = ANY(%({param})s))"


def _lookup(cur: psycopg2.extensions.cursor, name: str, columns: str, rows: list[tuple]) -> None:
    """A small temporary lookup table (limits by class …), joined by equality in the rules."""
    cur.execute(f"CREATE TEMP TABLE {name} ({columns}) ON COMMIT DROP")
    if rows:
        marks = ", ".join(["%s"] * len(rows[0]))
        cur.executemany(f"INSERT INTO {name} VALUES ({marks})", rows)
    cur.execute(f"ANALYZE {name}")


#: Gas segments are probed against an index in runs: segments within RUN_ANGLE_DEG of the same
#: axis (east or north), of the same pressure class, whose middles fall in the same RUN_BAND_M wide
#: band across the axis and the same RUN_LENGTH_M long stretch along it, share one index probe
#: with the box of their members grown by the reach of the rule; other segments are runs of their
#: own. Any grouping finds the same pairs (the members are tested one by one afterwards); these
#: sizes only decide the cost.
RUN_ANGLE_DEG = 5.0
RUN_BAND_M = 2.0
RUN_LENGTH_M = 400.0


def _run_params(ctx: Ctx) -> dict[str, float]:
    """Bound values of the run keys: the bands and stretches in degrees, the x scale of the
    direction tests (the cosine of the county's highest latitude, as in G03) and the tangent of
    RUN_ANGLE_DEG."""
    kx = math.cos(math.radians(ctx.frame.lat_max))
    return {"run_kx": kx, "run_tan": math.tan(math.radians(RUN_ANGLE_DEG)),
            "run_bx": RUN_BAND_M / (M_PER_DEG_LON_EQ * kx), "run_by": RUN_BAND_M / M_PER_DEG_LAT,
            "run_lx": RUN_LENGTH_M / (M_PER_DEG_LON_EQ * kx), "run_ly": RUN_LENGTH_M / M_PER_DEG_LAT}


def _gas_runs(cur: psycopg2.extensions.cursor, ctx: Ctx, params: dict[str, Any], near: str = "") -> tuple[str, bool]:
    """This connection's gas segments in service (:func:`_gas`), restricted by ``near`` (a focused
    rescan, :func:`_near`), and their runs; returns the name of the runs table, whose members are
    in the table of that name + ``m``, and whether there are runs (a focused rescan's few segments
    are probed one by one):

    - members: ``id, geom, cls, r, burial_type``, the end points in degrees (``x0, y0, x1, y1``),
      ``axis`` (``x``, ``y``, or ``-`` for a segment alone), ``run``, the middle ``t`` of the end
      points along the run's axis and how far the member's box reaches from it along the axis
      (``half``; both 0 for a segment alone), indexed by (run, t): a candidate of a long run is
      tested only against the members whose stretch along the axis it can reach;
    - runs along an axis: ``run``, ``axis``, ``cls``, the largest radius ``r`` and ``half``, the
      smallest member id ``min_id``, the box of its members' geometries (``box``) and of their end
      points (``bx0, by0, bx1, by1``), and a line near all members in degrees with x scaled by
      ``run_kx``: through the mean of their middles ``(lx, ly)`` along the sum of their directions
      ``(ux, uy)`` (a unit vector; NULL when the sum is zero), every member end point within
      ``dev`` of it.

    The whole county's runs are made once per scan and shared by G01–G04; a restricted set is made
    anew and dropped by the caller (:func:`_drop_runs`)."""
    params.update(_run_params(ctx))
    if near:
        cur.execute(f"""
            CREATE TEMP TABLE hz_runvm ON COMMIT DROP AS
            SELECT g.id, g.geom, g.cls, g.r, g.burial_type, ST_X(ST_StartPoint(g.geom)) AS x0,
                   ST_Y(ST_StartPoint(g.geom)) AS y0, ST_X(ST_EndPoint(g.geom)) AS x1, ST_Y(ST_EndPoint(g.geom)) AS y1,
                   '-'::text AS axis
            FROM ({_gas(ctx, params)}{near}) g WHERE g.cls IS NOT NULL
        """, params)
        return "hz_runv", False
    name = f"hz_run{ctx.shard[0] if ctx.shard else ''}"
    if name in ctx.cache:
        return name, True
    cur.execute(f"""
        CREATE TEMP TABLE {name}m ON COMMIT DROP AS
        SELECT m.id, m.geom, m.cls, m.r, m.burial_type, m.x0, m.y0, m.x1, m.y1,
               dense_rank() OVER (ORDER BY k.axis, m.cls, k.rp, k.rq) AS run, k.axis, k.t, k.half
        FROM (SELECT g.id, g.geom, g.cls, g.r, g.burial_type, ST_X(ST_StartPoint(g.geom)) AS x0,
                     ST_Y(ST_StartPoint(g.geom)) AS y0, ST_X(ST_EndPoint(g.geom)) AS x1, ST_Y(ST_EndPoint(g.geom)) AS y1
              FROM ({_gas(ctx, params)}) g WHERE g.cls IS NOT NULL OFFSET 0) m
        CROSS JOIN LATERAL (
            SELECT abs(m.y1 - m.y0) <= %(run_tan)s * abs(m.x1 - m.x0) * %(run_kx)s AS east,
                   abs(m.x1 - m.x0) * %(run_kx)s <= %(run_tan)s * abs(m.y1 - m.y0) AS north) f
        CROSS JOIN LATERAL (
            SELECT CASE WHEN f.east THEN 'x' WHEN f.north THEN 'y' ELSE '-' END AS axis,
                   CASE WHEN f.east THEN floor((m.y0 + m.y1) / 2 / %(run_by)s)
                        WHEN f.north THEN floor((m.x0 + m.x1) / 2 / %(run_bx)s) ELSE m.id END::bigint AS rp,
                   CASE WHEN f.east THEN floor((m.x0 + m.x1) / 2 / %(run_lx)s)
                        WHEN f.north THEN floor((m.y0 + m.y1) / 2 / %(run_ly)s) ELSE 0 END::bigint AS rq,
                   CASE WHEN f.east THEN (m.x0 + m.x1) / 2 WHEN f.north THEN (m.y0 + m.y1) / 2 ELSE 0 END AS t,
                   CASE WHEN f.east THEN greatest(ST_XMax(m.geom) - (m.x0 + m.x1) / 2, (m.x0 + m.x1) / 2 - ST_XMin(m.geom))
                        WHEN f.north THEN greatest(ST_YMax(m.geom) - (m.y0 + m.y1) / 2, (m.y0 + m.y1) / 2 - ST_YMin(m.geom))
                        ELSE 0 END AS half
            OFFSET 0) k;
        CREATE INDEX ON {name}m (run, t);
        CREATE TEMP TABLE {name} ON COMMIT DROP AS
        WITH a AS (
            SELECT m.run, min(m.axis) AS axis, min(m.cls) AS cls, max(m.r) AS r, min(m.id) AS min_id,
                   max(m.half) AS half, ST_Extent(m.geom)::geometry AS box, min(least(m.x0, m.x1)) AS bx0,
                   min(least(m.y0, m.y1)) AS by0, max(greatest(m.x0, m.x1)) AS bx1, max(greatest(m.y0, m.y1)) AS by1,
                   avg(m.x0 + m.x1) / 2 * %(run_kx)s AS lx, avg(m.y0 + m.y1) / 2 AS ly,
                   sum(CASE WHEN CASE WHEN m.axis = 'y' THEN m.y1 < m.y0 ELSE m.x1 < m.x0 END
                            THEN m.x0 - m.x1 ELSE m.x1 - m.x0 END) * %(run_kx)s AS sx,
                   sum(CASE WHEN CASE WHEN m.axis = 'y' THEN m.y1 < m.y0 ELSE m.x1 < m.x0 END
                            THEN m.y0 - m.y1 ELSE m.y1 - m.y0 END) AS sy
            FROM {name}m m WHERE m.axis <> '-' GROUP BY m.run),
        l AS (
            SELECT a.*, CASE WHEN n.len > 0 THEN a.sx / n.len END AS ux, CASE WHEN n.len > 0 THEN a.sy / n.len END AS uy
            FROM a CROSS JOIN LATERAL (SELECT sqrt(a.sx * a.sx + a.sy * a.sy) AS len) n)
        SELECT l.run, l.axis, l.cls, l.r, l.min_id, l.half, l.box, l.bx0, l.by0, l.bx1, l.by1, l.lx, l.ly, l.ux, l.uy,
               max(greatest(abs((m.x0 * %(run_kx)s - l.lx) * l.uy - (m.y0 - l.ly) * l.ux),
                            abs((m.x1 * %(run_kx)s - l.lx) * l.uy - (m.y1 - l.ly) * l.ux))) AS dev
        FROM l JOIN {name}m m ON m.run = l.run
        GROUP BY l.run, l.axis, l.cls, l.r, l.min_id, l.half, l.box, l.bx0, l.by0, l.bx1, l.by1, l.lx, l.ly, l.ux, l.uy
    """, params)
    ctx.cache[name] = True
    return name, True


def _drop_runs(cur: psycopg2.extensions.cursor, name: str) -> None:
    """Drop a restricted set of segments (the whole county's runs stay for the other rules)."""
    if name == "hz_runv":
        cur.execute("DROP TABLE hz_runvm")


# --- gas × buildings (G01, G02) --------------------------------------------------------------

def building_limits(clearances: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per pressure-class column: the standard distance to a building (``std``), what it is
    measured to (``basis``) and the reduction steps (``steps``: ``{distance, cond, value}``, the
    reduced distance and the one condition a pipe must meet for it, e.g. ``wall_mm`` 9.5 or
    ``protection`` true). :class:`ConfigError` for a step that is not a distance with one condition."""
    from cim.errors import ConfigError

    gb = clearances["gas_building"]
    red = gb.get("reductions") or {}
    out: dict[str, dict[str, Any]] = {}
    for basis in ("foundation", "outer_wall"):
        for cls, value in (gb.get(basis) or {}).items():
            out[cls] = {"std": float(value), "basis": basis, "steps": []}
    for cls, entry in out.items():
        for step in red.get(cls) or []:
            conds = {k: v for k, v in step.items() if k != "distance"} if isinstance(step, dict) else {}
            value = next(iter(conds.values()), None)
            if (not isinstance(step, dict) or "distance" not in step or len(conds) != 1
                    or not isinstance(value, bool | int | float) or value is False):
                raise ConfigError(f"clearances.yaml gas_building.reductions.{cls} 的每一级须为 距离 + 一个条件：{step}",
                                  f"clearances.yaml gas_building.reductions.{cls}: each step is a distance and one "
                                  f"condition (a minimum or true): {step}")
            [(cond, value)] = conds.items()
            entry["steps"].append({"distance": float(step["distance"]), "cond": str(cond), "value": value})
    return out


def reduction_columns(rule: Rule) -> dict[str, tuple[str, bool]]:
    """G02's ``reduction_columns``: condition → (the pipe_segment column stating it, whether it
    is a flag); :class:`ConfigError` for a column the segment table lacks or of the wrong kind
    (a flag needs a boolean column, a minimum a number)."""
    from cim.errors import ConfigError
    from cim.schema import feature_table

    table = feature_table("pipe_segment")
    out: dict[str, tuple[str, bool]] = {}
    for cond, name in (rule.params.get("reduction_columns") or {}).items():
        col = table.column(str(name))
        if col is None or col.kind not in ("bool", "int", "float"):
            raise ConfigError(f"规则 {rule.id} 的 reduction_columns.{cond} 不是管段的数值或布尔字段：{name}",
                              f"rule {rule.id}: reduction_columns.{cond} is not a numeric or boolean "
                              f"pipe_segment column: {name}")
        out[str(cond)] = (col.name, col.kind == "bool")
    return out


def gas_building_pairs(cur: psycopg2.extensions.cursor, ctx: Ctx, rule: Rule) -> None:
    """``hz_gb (gid, bid, hit)``: gas segments in service × current buildings within the largest
    distance of the segment's class (+ its radius); ``hit``: the centre line meets the footprint.
    The building index is probed once per run of gas segments along an axis (:func:`_gas_runs`),
    each candidate then tested against the members of the run; other segments probe it one by one.
    Made once per scan (G01 and G02 read the same
    inputs, so they share their focus too)."""
    if "hz_gb" in ctx.cache:
        return
    limits = building_limits(ctx.clearances)
    # reach: the largest distance of the class, standard or reduced
    _lookup(cur, "hz_gblim", "cls text PRIMARY KEY, std float8, basis text, reach float8",
            [(c, v["std"], v["basis"], max([v["std"], *(x["distance"] for x in v["steps"])]))
             for c, v in limits.items()])
    params = ctx.base(rule)
    params["dpm"] = ctx.frame.deg(1.0)
    cur.execute("CREATE TEMP TABLE hz_gb (gid bigint, bid bigint, hit boolean) ON COMMIT DROP")
    for extra in variants(ctx, rule, {"g": ["pipe_segment:RQ"], "b": ["building"]}, params):
        runs, grouped = _gas_runs(cur, ctx, params, _near(cur, ctx, params, extra) if "%(focus_g)s" in extra else "")
        # reach: the largest distance of the class + the radius (of the run, of the member), in degrees
        if grouped:
            cur.execute(f"""
                INSERT INTO hz_gb
                SELECT g.id, b.id, ST_Intersects(b.geom, g.geom)
                FROM (SELECT r.run, b.id, b.geom FROM {runs} r JOIN hz_gblim l ON l.cls = r.cls
                      JOIN cim.building b
                        ON b.geom && ST_Expand(r.box, (l.reach + r.r) * %(dpm)s)
                      WHERE b.county_code = %(county)s AND b.is_current OFFSET 0) b
                JOIN {runs}m g ON g.run = b.run
                JOIN hz_gblim l ON l.cls = g.cls
                CROSS JOIN LATERAL (SELECT (l.reach + g.r) * %(dpm)s AS reach) x
                WHERE b.geom && ST_Expand(g.geom, x.reach) AND ST_DWithin(b.geom, g.geom, x.reach) {extra}
            """, params)
        # segments alone probe with their own box
        cur.execute(f"""
            INSERT INTO hz_gb
            SELECT g.id, b.id, ST_Intersects(b.geom, g.geom)
            FROM {runs}m g JOIN hz_gblim l ON l.cls = g.cls
            JOIN cim.building b ON ST_DWithin(b.geom, g.geom, (l.reach + g.r) * %(dpm)s)
            WHERE g.axis = '-' AND b.county_code = %(county)s AND b.is_current {extra}
        """, params)
        _drop_runs(cur, runs)
    cur.execute("CREATE INDEX ON hz_gb (gid); ANALYZE hz_gb")
    ctx.cache["hz_gb"] = True


@method("gas_under_building", inputs=lambda r: ["pipe_segment:RQ", "building"], focusable=True, shares="hz_gb",
        weight=6, shardable=True)
def gas_under_building(cur: psycopg2.extensions.cursor, ctx: Ctx, rule: Rule) -> None:
    """G01: a gas segment (not aerial) whose centre line runs under a building footprint; the
    finding is the part under the footprint, measured as its length."""
    gas_building_pairs(cur, ctx, rule)
    params = ctx.base(rule)
    params["skip_burial"] = list(rule.params.get("skip_burial_types") or [])
    inputs = ("jsonb_build_object('pressure_class', g.pressure_class, 'diameter_mm', g.diameter_mm, "
              "'material', g.material, 'burial_type', g.burial_type, 'building_code', b.code, "
              "'floors_above', b.floors_above)")
    insert(cur, f"""
        WITH x AS MATERIALIZED (
            SELECT p.gid, p.bid, ST_CollectionExtract(ST_Intersection(g.geom, b.geom), 2) AS part
            FROM hz_gb p JOIN cim.pipe_segment g ON g.id = p.gid JOIN cim.building b ON b.id = p.bid
            WHERE p.hit AND {_not_burial('g', 'skip_burial')}),
        y AS MATERIALIZED (
            SELECT x.*, round(ST_Length(ST_Transform(x.part, %(srid)s))::numeric, 3)::float8 AS len,
                   ST_ClosestPoint(x.part, ST_Centroid(x.part)) AS marker
            FROM x WHERE NOT ST_IsEmpty(x.part))
        SELECT NULL::text AS grade,
               jsonb_build_array({ref_sql('pipe_segment', 'g')}, {ref_sql('building', 'b')}) AS refs,
               ARRAY[{key_sql('pipe_segment', 'g')}, {key_sql('building', 'b')}] AS keys,
               y.part AS geom, y.marker AS marker, y.len AS measured,
               {evidence_sql('y.len', '0', 'm', '=', inputs, "'quantity', 'length_under_footprint'")} AS evidence,
               format('%%s：燃气管段 %%s 穿越房屋 %%s 下方 %%s m', %(rule_zh)s::text, {code_sql('pipe_segment', 'g')},
                      {code_sql('building', 'b')}, y.len) AS title,
               coalesce(b.address, g.road) AS location, b.community_code AS community_code
        FROM y JOIN cim.pipe_segment g ON g.id = y.gid JOIN cim.building b ON b.id = y.bid
        WHERE y.len > 0
    """, params)


@method("gas_building_clearance", inputs=lambda r: ["pipe_segment:RQ", "building"], focusable=True,
        shares="hz_gb", weight=2, shardable=True)
def gas_building_clearance(cur: psycopg2.extensions.cursor, ctx: Ctx, rule: Rule) -> None:
    """G02: the outer wall of a gas pipe closer to a building footprint than its pressure class
    allows (GB 50028 表6.3.3-1). A reduced distance (``gas_building.reductions``) applies only
    where the segment meets the step's condition through the column ``reduction_columns`` maps
    it to (a minimum: the column at least the value; a flag: the column true); among the steps
    met, the smallest distance. A condition without a column is never met. Pipes under the
    building are G01's."""
    from cim.db import quote_ident
    from cim.errors import ConfigError

    columns = reduction_columns(rule)
    steps = []
    for cls, lim in building_limits(ctx.clearances).items():
        for x in lim["steps"]:
            if x["cond"] not in columns:
                continue
            flag = columns[x["cond"]][1]
            if flag is not (x["value"] is True):
                raise ConfigError(f"clearances.yaml 的减小条件 {x['cond']} 与规则 {rule.id} 的字段类型不符",
                                  f"reduction condition {x['cond']} ({x['value']}) does not suit the "
                                  f"{'boolean' if flag else 'numeric'} column of rule {rule.id}")
            steps.append((cls, x["distance"], x["cond"], None if flag else float(x["value"])))
    _lookup(cur, "hz_gbred", "cls text, distance float8, cond text, val float8", steps)
    gas_building_pairs(cur, ctx, rule)
    params = ctx.base(rule)
    params.update(skip_burial=list(rule.params.get("skip_burial_types") or []), dpm=ctx.frame.deg(1.0))
    met = []
    for i, (cond, (name, flag)) in enumerate(sorted(columns.items())):
        params[f"cond{i}"] = cond
        test = f"g.{quote_ident(name)} IS TRUE" if flag else f"g.{quote_ident(name)} >= s.val"
        met.append(f"(s.cond = %(cond{i})s AND {test})")
    inputs = ("jsonb_build_object('pressure_class', g.pressure_class, 'class_column', l.cls, 'diameter_mm', "
              "g.diameter_mm, 'wall_thickness_mm', g.wall_thickness_mm, 'reduction', q.red IS NOT NULL, "
              "'required_basis', CASE WHEN q.red IS NOT NULL THEN 'reduced_' || l.basis ELSE l.basis END, "
              "'standard_m', l.std, 'building_code', b.code, 'centre_distance_m', round(d.centre::numeric, 3)) "
              "|| CASE WHEN q.red IS NOT NULL THEN jsonb_build_object('reduction_condition', "
              "jsonb_build_object(q.cond, coalesce(to_jsonb(q.val), 'true'::jsonb))) ELSE '{}'::jsonb END")
    insert(cur, f"""
        WITH g AS ({_gas(ctx, params)})
        SELECT NULL::text AS grade,
               jsonb_build_array({ref_sql('pipe_segment', 'g')}, {ref_sql('building', 'b')}) AS refs,
               ARRAY[{key_sql('pipe_segment', 'g')}, {key_sql('building', 'b')}] AS keys,
               ST_ShortestLine(g.geom, b.geom) AS geom, ST_ClosestPoint(g.geom, b.geom) AS marker,
               d.clear AS measured,
               {evidence_sql('d.clear', 'q.required', 'm', '>=', inputs)} AS evidence,
               format('%%s：燃气管段 %%s 外壁距房屋 %%s %%s m，要求 ≥ %%s m', %(rule_zh)s::text,
                      {code_sql('pipe_segment', 'g')}, {code_sql('building', 'b')}, d.clear, q.required) AS title,
               coalesce(b.address, g.road) AS location, b.community_code AS community_code
        FROM hz_gb p JOIN g ON g.id = p.gid JOIN hz_gblim l ON l.cls = g.cls
        JOIN cim.building b ON b.id = p.bid
        LEFT JOIN LATERAL (SELECT s.distance, s.cond, s.val FROM hz_gbred s
                           WHERE s.cls = l.cls AND ({' OR '.join(met) or 'false'})
                           ORDER BY s.distance, s.cond LIMIT 1) r ON true
        CROSS JOIN LATERAL (SELECT r.distance AS red, r.cond, r.val, coalesce(r.distance, l.std) AS required) q
        CROSS JOIN LATERAL (
            SELECT c.centre, round((c.centre - g.r)::numeric, 3)::float8 AS clear
            FROM (SELECT ST_Distance(ST_Transform(g.geom, %(srid)s), ST_Transform(b.geom, %(srid)s)) AS centre) c) d
        WHERE NOT p.hit AND {_not_burial('g', 'skip_burial')}
          AND ST_DWithin(b.geom, g.geom, (q.required + g.r) * %(dpm)s) AND d.clear < q.required
    """, params)


# --- gas × other pipes (G03, G04) ------------------------------------------------------------

def horizontal_tables(clearances: dict[str, Any]) -> dict[str, Any]:
    """The horizontal clearance tables and the parallel-run definition."""
    gh, run = clearances["gas_horizontal"], clearances["parallel_run"]
    gg = gh.get("gas_gas") or {}
    return {"direct": gh.get("direct") or {}, "conduit": gh.get("conduit") or {},
            "conduit_types": list(gh.get("conduit_burial_types") or []),
            "skip_types": list(gh.get("skip_burial_types") or []),
            "small": float(gg.get("small_m", 0.4)), "large": float(gg.get("large_m", 0.5)),
            "cut": float(gg.get("large_above_dn_mm", 300)),
            "max_angle_deg": float(run["max_angle_deg"]), "min_run_m": float(run["min_run_m"]),
            "touch_m": float(run["touch_m"])}


def _segment_reach(ctx: Ctx) -> dict[str, float]:
    """Largest horizontal limit per pressure-class column (gas-gas included)."""
    t = horizontal_tables(ctx.clearances)
    out = {}
    for cls in ctx.clearances["pressure_classes"]:
        vals = [float(v[cls]) for table in (t["direct"], t["conduit"]) for v in table.values() if cls in v]
        out[cls] = max([*vals, t["large"]])
    return out


def _pair_networks(ctx: Ctx) -> list[str]:
    nets = set()
    for r in ctx.rules.rules.values():
        if r.method in ("gas_parallel_clearance", "gas_crossing_clearance"):
            nets |= {str(n) for n in r.params.get("networks") or []}
    return sorted(nets)


def _pipe_kinds(cur: psycopg2.extensions.cursor, ctx: Ctx) -> list[tuple[str, bool, bool, bool, float]]:
    """The kinds of current pipe the gas pair rules meet in the county (networks of G03 and G04,
    and gas): network, in a conduit, of a burial type G03 leaves out, of a status out of service,
    and the largest radius of that kind (m). One pass over the county's pipes, once per scan."""
    if "hz_kinds" not in ctx.cache:
        t = horizontal_tables(ctx.clearances)
        cur.execute("""
            SELECT network, coalesce(burial_type = ANY(%(conduit)s), false), coalesce(burial_type = ANY(%(skip)s), false),
                   coalesce(status = ANY(%(skip_status)s), false), max(coalesce(diameter_mm, width_mm, 0)) / 2000.0
            FROM cim.pipe_segment WHERE county_code = %(county)s AND is_current AND network = ANY(%(nets)s)
            GROUP BY 1, 2, 3, 4
        """, {"conduit": t["conduit_types"], "skip": t["skip_types"], "skip_status": list(ctx.rules.skip_status),
              "county": ctx.county, "nets": sorted({*_pair_networks(ctx), GAS})})
        ctx.cache["hz_kinds"] = [(str(n), bool(c), bool(k), bool(st), float(r)) for n, c, k, st, r in cur.fetchall()]
    return list(ctx.cache["hz_kinds"])


def _span(cur: psycopg2.extensions.cursor, ctx: Ctx) -> float:
    """The largest box margin of any gas pair (G03, G04) in degrees: boxes within it of a changed
    other pipe hold every gas segment that can pair with it (box distance is symmetric). For
    focused rescans."""
    kinds = _pipe_kinds(cur, ctx)
    nets = set(_pair_networks(ctx))
    rmax = max([r for n, _, _, _, r in kinds if n in nets], default=0.0)
    rgas = max([r for n, _, _, _, r in kinds if n == GAS], default=0.0)
    reach = max(_segment_reach(ctx).values(), default=0.0)
    return (reach + max(rmax, rgas) + rmax) * ctx.frame.deg(1.0)


def _near(cur: psycopg2.extensions.cursor, ctx: Ctx, params: dict[str, Any], extra: str) -> str:
    """In a focused rescan, the gas segments (alias ``s``) worth probing under the restriction
    ``extra`` of :func:`variants`: those that changed, or lie within the largest pair margin
    (:func:`_span`) of a changed other pipe; all of them otherwise."""
    if "%(focus_g)s" in extra:
        return " AND s.id IN (SELECT id FROM hz_focus WHERE scope = ANY(%(focus_g)s))"
    if "%(focus_o)s" in extra:
        params["span"] = _span(cur, ctx)
        return (" AND s.id IN (SELECT c.id FROM hz_focus f JOIN cim.pipe_segment x ON x.id = f.id "
                "JOIN cim.pipe_segment c ON c.geom && ST_Expand(x.geom, %(span)s) "
                "WHERE f.scope = ANY(%(focus_o)s) AND c.network = 'RQ')")
    return ""


def gas_segment_pairs(cur: psycopg2.extensions.cursor, ctx: Ctx, rule: Rule) -> None:
    """``hz_gs``: gas segments in service × other segments in service (networks of G03 and G04)
    whose boxes meet (only such pairs can cross), with both segments' end points in degrees
    (``gx0, gy0, gx1, gy1`` / ``ox0 …``) for the crossing test of G04, ``simple``: both are
    straight two-point segments (the crossing test is then arithmetic on the end points, else
    GEOS). The pipe index is probed once per run of gas segments along an axis (:func:`_gas_runs`)
    with the run's box, each candidate then tested against the members it can reach; other
    segments probe it one by one. Once per scan. In a
    focused rescan only gas segments that changed, or lie within the largest pair margin of a
    changed other pipe, are probed."""
    if "hz_gs" in ctx.cache:
        return
    params = ctx.base(rule)
    params["nets"] = _pair_networks(ctx)
    others = ("o.network AS onet, o.burial_type AS oburial, coalesce(o.diameter_mm, o.width_mm, 0) / 2000.0 AS orr")
    quals = ("o.county_code = %(county)s AND o.is_current AND o.network = ANY(%(nets)s) "
             "AND (o.status IS NULL OR NOT o.status = ANY(%(skip_status)s))")
    cur.execute("CREATE TEMP TABLE hz_gs (gid bigint, oid bigint, simple boolean, gcls text, gr float8, "
                "orr float8, gburial text, onet text, oburial text, gx0 float8, gy0 float8, gx1 float8, gy1 float8, "
                "ox0 float8, oy0 float8, ox1 float8, oy1 float8) ON COMMIT DROP")
    sides = {"g": ["pipe_segment:RQ"], "o": [f"pipe_segment:{n}" for n in params["nets"]]}
    for extra in variants(ctx, rule, sides, params):
        runs, grouped = _gas_runs(cur, ctx, params, _near(cur, ctx, params, extra))
        if grouped:
            cur.execute(f"""
                INSERT INTO hz_gs
                SELECT g.id, o.id, ST_NPoints(g.geom) = 2 AND ST_NPoints(o.geom) = 2, g.cls, g.r, o.orr, g.burial_type,
                       o.onet, o.oburial, g.x0, g.y0, g.x1, g.y1, ST_X(ST_StartPoint(o.geom)), ST_Y(ST_StartPoint(o.geom)),
                       ST_X(ST_EndPoint(o.geom)), ST_Y(ST_EndPoint(o.geom))
                FROM (SELECT c.*, CASE c.axis WHEN 'x' THEN ST_XMin(c.geom) ELSE ST_YMin(c.geom) END - c.half AS tlo,
                             CASE c.axis WHEN 'x' THEN ST_XMax(c.geom) ELSE ST_YMax(c.geom) END + c.half AS thi
                      FROM (SELECT r.run, r.axis, r.half, o.id, o.geom, {others}
                            FROM {runs} r JOIN cim.pipe_segment o ON o.geom && r.box
                            WHERE {quals} AND (o.network <> 'RQ' OR o.id > r.min_id) OFFSET 0) c OFFSET 0) o
                CROSS JOIN LATERAL (SELECT * FROM {runs}m g WHERE g.run = o.run AND g.t BETWEEN o.tlo AND o.thi OFFSET 0) g
                WHERE o.id <> g.id AND (o.onet <> 'RQ' OR o.id > g.id) AND o.geom && g.geom {extra}
            """, params)
        # segments alone probe with their own box
        cur.execute(f"""
            INSERT INTO hz_gs
            SELECT g.id, o.id, ST_NPoints(g.geom) = 2 AND ST_NPoints(o.geom) = 2, g.cls, g.r, o.orr, g.burial_type,
                   o.onet, o.oburial, g.x0, g.y0, g.x1, g.y1, ST_X(ST_StartPoint(o.geom)), ST_Y(ST_StartPoint(o.geom)),
                   ST_X(ST_EndPoint(o.geom)), ST_Y(ST_EndPoint(o.geom))
            FROM {runs}m g
            CROSS JOIN LATERAL (SELECT o.id, o.geom, {others} FROM cim.pipe_segment o
                                WHERE o.geom && g.geom AND {quals} AND o.id <> g.id
                                  AND (o.network <> 'RQ' OR o.id > g.id) OFFSET 0) o
            WHERE g.axis = '-' {extra}
        """, params)
        _drop_runs(cur, runs)
    ctx.cache["hz_gs"] = True


def _parallel_pairs(cur: psycopg2.extensions.cursor, ctx: Ctx, rule: Rule, params: dict[str, Any]) -> None:
    """``hz_g03p (gid, oid)``: the pairs of a gas segment and another pipe that may run parallel
    closer than their limit (a superset of G03's findings), from degree-space tests only.

    The pipe index is probed once per run of gas segments (:func:`_gas_runs`) with the run's box
    grown by the reach of its class: the largest limit + radius over the kinds of pipe the county
    has (network, in a conduit or not), + the run's largest radius. A candidate pipe is kept for the
    run when its direction is within max_angle + 3° + RUN_ANGLE_DEG of the run's axis (for a run
    along one), its box comes within the limit of the pair (+ both radii) of the run's box, per axis
    in degrees, and it comes that close to the run's line (+ the members' largest distance from it);
    then for each member of the run it can reach along the axis: the same box test with the
    member's own box and radius, directions within max_angle + 3°, a common stretch of at least
    min_run − 1 m, and the other pipe not clearly compliant: its nearer end (a lower bound of the
    offset along the common stretch, the lines not crossing) closer than the largest limit of the
    pair + 5 cm.
    Margins are far above the frame's distortion inside a county (x scaled by the cosine of the
    county's highest latitude: a scaled unit is at least 110 574 m)."""
    t = horizontal_tables(ctx.clearances)
    lat = math.radians(ctx.frame.lat_max)
    params.update(dx=ctx.frame.deg_x(1.0), dy=ctx.frame.deg_y(1.0),
                  kx=math.cos(lat), cos_pre=math.cos(math.radians(min(89.0, t["max_angle_deg"] + 3.0))),
                  cos_run2=math.cos(math.radians(min(89.0, t["max_angle_deg"] + 3.0 + RUN_ANGLE_DEG + 0.5))) ** 2,
                  m_low=110_574.0 * 0.999, run_pre=(t["min_run_m"] - 1.0) / 110_574.0 / 0.999)
    classes = list(ctx.clearances["pressure_classes"])
    nets = list(params["nets"])
    maxlim: dict[tuple[str, str, bool], float | None] = {}   # the largest limit that can apply to a pair
    for cls in classes:
        for net in {*t["direct"], *t["conduit"]}:
            direct = (t["direct"].get(net) or {}).get(cls)
            conduit = (t["conduit"].get(net) or {}).get(cls, direct)
            maxlim.update({(cls, net, False): direct, (cls, net, True): conduit})
        maxlim.update({(cls, GAS, False): t["large"], (cls, GAS, True): t["large"]})
    # the kinds of other pipe the county has that G03 compares with: network, in a conduit or not,
    # largest radius
    kinds = [(n, conduit, r) for n, conduit, skipped, out, r in _pipe_kinds(cur, ctx)
             if n in nets and not skipped and not out]
    # per class: the reach of a probe (the largest limit + radius over those kinds) and the limits
    # by the other pipe's network (its position in ``nets``; conduit ones after the direct ones)
    rows = []
    for cls in classes:
        reach = [float(lim) + float(r) for net, conduit, r in kinds
                 if (lim := maxlim.get((cls, net, conduit))) is not None]
        lims = [maxlim.get((cls, net, conduit)) for conduit in (False, True) for net in nets]
        if reach:
            rows.append((cls, max(reach), lims))
    _lookup(cur, "hz_g03reach", "cls text PRIMARY KEY, reach float8, lims float8[]", rows)
    params["nnets"] = len(nets)
    quals = ("o.county_code = %(county)s AND o.is_current AND o.network = ANY(%(nets)s) "
             "AND (o.status IS NULL OR NOT o.status = ANY(%(skip_status)s)) "
             "AND (o.burial_type IS NULL OR NOT o.burial_type = ANY(%(skip)s))")
    cur.execute("CREATE TEMP TABLE hz_g03p (gid bigint, oid bigint) ON COMMIT DROP")
    sides = {"g": ["pipe_segment:RQ"], "o": [f"pipe_segment:{n}" for n in params["nets"]]}
    for extra in variants(ctx, rule, sides, params):
        runs, grouped = _gas_runs(cur, ctx, params, _near(cur, ctx, params, extra))
        # candidates per run along an axis: the index probe, then the direction, box and line tests
        # on the end points
        if grouped:
            cur.execute(f"""
                CREATE TEMP TABLE hz_g03c ON COMMIT DROP AS
                SELECT c.run, c.id, c.onet, c.orr, q.limit_m, e.ox0, e.oy0, e.ox1, e.oy1,
                       CASE c.axis WHEN 'x' THEN least(e.ox0, e.ox1) - q.m * %(dx)s
                                   ELSE least(e.oy0, e.oy1) - q.m * %(dy)s END - c.half AS tlo,
                       CASE c.axis WHEN 'x' THEN greatest(e.ox0, e.ox1) + q.m * %(dx)s
                                   ELSE greatest(e.oy0, e.oy1) + q.m * %(dy)s END + c.half AS thi
                FROM (SELECT r.*, x.lims, o.id, o.geom AS ogeom, o.network AS onet, o.burial_type AS oburial,
                             coalesce(o.diameter_mm, o.width_mm, 0) / 2000.0 AS orr
                      FROM {runs} r JOIN hz_g03reach x ON x.cls = r.cls
                      JOIN cim.pipe_segment o
                        ON o.geom && ST_Expand(r.box, (x.reach + r.r + 0.001) * %(dx)s,
                                               (x.reach + r.r + 0.001) * %(dy)s)
                      WHERE {quals} AND (o.network <> 'RQ' OR o.id > r.min_id) OFFSET 0) c
                CROSS JOIN LATERAL (
                    SELECT * FROM (SELECT ST_X(ST_StartPoint(c.ogeom)) AS ox0, ST_Y(ST_StartPoint(c.ogeom)) AS oy0,
                                          ST_X(ST_EndPoint(c.ogeom)) AS ox1, ST_Y(ST_EndPoint(c.ogeom)) AS oy1
                                   OFFSET 0) e0
                    CROSS JOIN LATERAL (SELECT (e0.ox1 - e0.ox0) * %(run_kx)s AS ex, e0.oy1 - e0.oy0 AS ey) d
                    WHERE CASE c.axis WHEN 'x' THEN d.ex * d.ex ELSE d.ey * d.ey END
                          >= %(cos_run2)s * (d.ex * d.ex + d.ey * d.ey)
                    OFFSET 0) e
                CROSS JOIN LATERAL (
                    SELECT z.limit_m, z.limit_m + c.r + c.orr + 0.001 AS m,
                           (e.ox0 * %(run_kx)s - c.lx) * c.uy - (e.oy0 - c.ly) * c.ux AS d0,
                           (e.ox1 * %(run_kx)s - c.lx) * c.uy - (e.oy1 - c.ly) * c.ux AS d1
                    FROM (SELECT c.lims[array_position(%(nets)s::text[], c.onet::text)
                                        + CASE WHEN c.oburial = ANY(%(conduit_types)s) THEN %(nnets)s ELSE 0 END]
                                 AS limit_m) z
                    OFFSET 0) q
                WHERE least(e.ox0, e.ox1) <= c.bx1 + q.m * %(dx)s AND greatest(e.ox0, e.ox1) >= c.bx0 - q.m * %(dx)s
                  AND least(e.oy0, e.oy1) <= c.by1 + q.m * %(dy)s AND greatest(e.oy0, e.oy1) >= c.by0 - q.m * %(dy)s
                  AND (c.ux IS NULL OR q.d0 * q.d1 <= 0 OR least(abs(q.d0), abs(q.d1)) <= c.dev + q.m / %(m_low)s)
            """, params)
        # per member (g) and candidate (o: id, onet, orr, limit_m, ox0, oy0, ox1, oy1)
        member = f"""
            CROSS JOIN LATERAL (SELECT o.limit_m + g.r + o.orr + 0.001 AS m OFFSET 0) q
            CROSS JOIN LATERAL (
                SELECT (g.x1 - g.x0) * %(kx)s AS gx, g.y1 - g.y0 AS gy,
                       (o.ox1 - o.ox0) * %(kx)s AS ox, o.oy1 - o.oy0 AS oy,
                       (o.ox0 - g.x0) * %(kx)s AS ax, o.oy0 - g.y0 AS ay,
                       (o.ox1 - g.x0) * %(kx)s AS bx, o.oy1 - g.y0 AS by) v
            CROSS JOIN LATERAL (SELECT sqrt(v.gx * v.gx + v.gy * v.gy) AS lg, sqrt(v.ox * v.ox + v.oy * v.oy) AS lo) n
            WHERE o.id <> g.id AND (o.onet <> 'RQ' OR o.id > g.id)
              AND (g.burial_type IS NULL OR NOT g.burial_type = ANY(%(skip)s))
              AND least(o.ox0, o.ox1) <= greatest(g.x0, g.x1) + q.m * %(dx)s
              AND greatest(o.ox0, o.ox1) >= least(g.x0, g.x1) - q.m * %(dx)s
              AND least(o.oy0, o.oy1) <= greatest(g.y0, g.y1) + q.m * %(dy)s
              AND greatest(o.oy0, o.oy1) >= least(g.y0, g.y1) - q.m * %(dy)s
              AND n.lg > 0 AND n.lo > 0
              AND abs(v.gx * v.ox + v.gy * v.oy) >= %(cos_pre)s * n.lg * n.lo
              AND least(n.lg, greatest(v.ax * v.gx + v.ay * v.gy, v.bx * v.gx + v.by * v.gy) / n.lg)
                  - greatest(0.0, least(v.ax * v.gx + v.ay * v.gy, v.bx * v.gx + v.by * v.gy) / n.lg) >= %(run_pre)s
              AND ((v.gx * v.ay - v.gy * v.ax) * (v.gx * v.by - v.gy * v.bx) <= 0
                   OR least(abs(v.gx * v.ay - v.gy * v.ax), abs(v.gx * v.by - v.gy * v.bx)) / n.lg * %(m_low)s
                      - g.r - o.orr < o.limit_m + 0.05) {extra}"""
        if grouped:
            cur.execute(f"""
                INSERT INTO hz_g03p
                SELECT g.id, o.id FROM hz_g03c o
                CROSS JOIN LATERAL (SELECT * FROM {runs}m g WHERE g.run = o.run AND g.t BETWEEN o.tlo AND o.thi
                                    OFFSET 0) g
                {member};
                DROP TABLE hz_g03c
            """, params)
        # segments alone probe with their own box
        cur.execute(f"""
            INSERT INTO hz_g03p
            SELECT g.id, o.id FROM {runs}m g JOIN hz_g03reach x ON x.cls = g.cls
            CROSS JOIN LATERAL (
                SELECT c.id, c.onet, c.orr, z.limit_m, e.ox0, e.oy0, e.ox1, e.oy1
                FROM (SELECT o.id, o.geom, o.network AS onet, o.burial_type AS oburial,
                             coalesce(o.diameter_mm, o.width_mm, 0) / 2000.0 AS orr
                      FROM cim.pipe_segment o
                      WHERE o.geom && ST_Expand(g.geom, (x.reach + g.r + 0.001) * %(dx)s, (x.reach + g.r + 0.001) * %(dy)s)
                        AND {quals} AND o.id <> g.id AND (o.network <> 'RQ' OR o.id > g.id) OFFSET 0) c
                CROSS JOIN LATERAL (SELECT ST_X(ST_StartPoint(c.geom)) AS ox0, ST_Y(ST_StartPoint(c.geom)) AS oy0,
                                           ST_X(ST_EndPoint(c.geom)) AS ox1, ST_Y(ST_EndPoint(c.geom)) AS oy1 OFFSET 0) e
                CROSS JOIN LATERAL (
                    SELECT x.lims[array_position(%(nets)s::text[], c.onet::text)
                                  + CASE WHEN c.oburial = ANY(%(conduit_types)s) THEN %(nnets)s ELSE 0 END] AS limit_m
                    OFFSET 0) z
                OFFSET 0) o
            {member} AND g.axis = '-'
        """, params)
        _drop_runs(cur, runs)


@method("gas_parallel_clearance", inputs=lambda r: ["pipe_segment:RQ", *(f"pipe_segment:{n}" for n in
                                                                        r.params.get("networks") or [])],
        focusable=True, weight=14, shardable=True)
def gas_parallel_clearance(cur: psycopg2.extensions.cursor, ctx: Ctx, rule: Rule) -> None:
    """G03: a gas pipe and another pipe running parallel (directions at most ``max_angle_deg``
    apart, a common stretch of ``min_run_m``) closer than the horizontal table along at least
    ``min_run_m`` of that stretch. Pipes that touch or cross (closer than ``touch_m``) are not a
    run, so crossings are never reported here. Segments are straight lines between their ends,
    as in ingest rule Q21."""
    t = horizontal_tables(ctx.clearances)
    nets = [str(n) for n in (rule.params.get("networks") or [])]
    params = ctx.base(rule)
    classes = list(ctx.clearances["pressure_classes"])
    rows = [(cls, net, False, float(v[cls])) for net, v in t["direct"].items() for cls in classes if cls in v]
    rows += [(cls, net, True, float(v[cls])) for net, v in t["conduit"].items() for cls in classes if cls in v]
    _lookup(cur, "hz_gslim", "cls text, net text, conduit boolean, limit_m float8", rows)
    params.update(nets=nets, skip=t["skip_types"], conduit_types=t["conduit_types"], small=t["small"],
                  large=t["large"], cut=t["cut"], run=t["min_run_m"], touch=t["touch_m"],
                  cos_max=math.cos(math.radians(t["max_angle_deg"])))
    _parallel_pairs(cur, ctx, rule, params)
    cls_sql = _classes(ctx, params)
    cur.execute(f"""
        CREATE TEMP TABLE hz_g03x ON COMMIT DROP AS
        SELECT s.id, s.network, s.burial_type, coalesce(s.diameter_mm, s.width_mm) AS dn,
               coalesce(s.diameter_mm, s.width_mm, 0) / 2000.0 AS r, {cls_sql} AS cls, ST_X(t.a) AS sx, ST_Y(t.a) AS sy,
               ST_X(t.b) AS ex, ST_Y(t.b) AS ey
        FROM (SELECT gid AS id FROM hz_g03p UNION SELECT oid FROM hz_g03p) ids
        JOIN LATERAL (SELECT * FROM cim.pipe_segment x WHERE x.id = ids.id) s ON true
        CROSS JOIN LATERAL (SELECT ST_Transform(ST_StartPoint(s.geom), %(srid)s) AS a,
                                   ST_Transform(ST_EndPoint(s.geom), %(srid)s) AS b) t;
        CREATE UNIQUE INDEX ON hz_g03x (id); ANALYZE hz_g03x; ANALYZE hz_g03p
    """, params)
    # one pass over the pairs; each LATERAL step is evaluated once per pair (OFFSET 0) and drops
    # the pair as soon as a condition of the parallel run fails
    cur.execute("""
        CREATE TEMP TABLE hz_g03m ON COMMIT DROP AS
        SELECT p.gid, p.oid, i.cls, i.sx, i.sy, i.ex, i.ey, i.r AS ri, j.r AS rj, j.network AS onet,
               j.sx AS jsx, j.sy AS jsy, j.ex AS jex, j.ey AS jey, u.ux, u.uy, c.cos, c.t0, c.t1, c.n0, c.n1,
               w.lo, w.hi, o.o_lo, o.o_hi, lim.limit_m, k.c_lo, k.c_hi,
               CASE WHEN greatest(k.c_lo, k.c_hi) < lim.limit_m THEN w.hi - w.lo
                    WHEN least(k.c_lo, k.c_hi) >= lim.limit_m THEN 0.0
                    ELSE (w.hi - w.lo) * (lim.limit_m + i.r + j.r - least(o.o_lo, o.o_hi)) / abs(o.o_hi - o.o_lo)
               END AS close
        FROM hz_g03p p JOIN hz_g03x i ON i.id = p.gid JOIN hz_g03x j ON j.id = p.oid
        CROSS JOIN LATERAL (
            SELECT (i.ex - i.sx) / l.len_i AS ux, (i.ey - i.sy) / l.len_i AS uy, l.len_i, l.len_j
            FROM (SELECT sqrt((i.ex - i.sx) ^ 2 + (i.ey - i.sy) ^ 2) AS len_i,
                         sqrt((j.ex - j.sx) ^ 2 + (j.ey - j.sy) ^ 2) AS len_j) l
            WHERE l.len_i > 0 AND l.len_j > 0 OFFSET 0) u
        CROSS JOIN LATERAL (
            SELECT * FROM (SELECT abs(u.ux * (j.ex - j.sx) + u.uy * (j.ey - j.sy)) / u.len_j AS cos,
                                  (j.sx - i.sx) * u.ux + (j.sy - i.sy) * u.uy AS t0,
                                  (j.ex - i.sx) * u.ux + (j.ey - i.sy) * u.uy AS t1,
                                  u.ux * (j.sy - i.sy) - u.uy * (j.sx - i.sx) AS n0,
                                  u.ux * (j.ey - i.sy) - u.uy * (j.ex - i.sx) AS n1) c0
            WHERE c0.cos >= %(cos_max)s AND c0.t1 <> c0.t0 OFFSET 0) c
        CROSS JOIN LATERAL (
            SELECT * FROM (SELECT greatest(0.0, least(c.t0, c.t1)) AS lo, least(u.len_i, greatest(c.t0, c.t1)) AS hi) w0
            WHERE w0.hi - w0.lo >= %(run)s OFFSET 0) w
        CROSS JOIN LATERAL (
            SELECT CASE WHEN j.network = 'RQ' THEN
                            CASE WHEN greatest(i.dn, j.dn) > %(cut)s THEN %(large)s ELSE %(small)s END
                        ELSE coalesce((SELECT l.limit_m FROM hz_gslim l WHERE l.cls = i.cls AND l.net = j.network
                                         AND l.conduit AND j.burial_type = ANY(%(conduit_types)s)),
                                      (SELECT l.limit_m FROM hz_gslim l WHERE l.cls = i.cls AND l.net = j.network
                                         AND NOT l.conduit)) END AS limit_m OFFSET 0) lim
        CROSS JOIN LATERAL (
            SELECT abs(c.n0 + (w.lo - c.t0) * (c.n1 - c.n0) / (c.t1 - c.t0)) AS o_lo,
                   abs(c.n0 + (w.hi - c.t0) * (c.n1 - c.n0) / (c.t1 - c.t0)) AS o_hi OFFSET 0) o
        CROSS JOIN LATERAL (
            SELECT round((o.o_lo - i.r - j.r)::numeric, 3)::float8 AS c_lo,
                   round((o.o_hi - i.r - j.r)::numeric, 3)::float8 AS c_hi OFFSET 0) k
        WHERE lim.limit_m IS NOT NULL AND least(k.c_lo, k.c_hi) < lim.limit_m
    """, params)
    inputs = ("jsonb_build_object('pressure_class', g.pressure_class, 'class_column', m.cls, 'diameter_mm', "
              "g.diameter_mm, 'other_network', o.network, 'other_burial_type', o.burial_type, "
              "'other_diameter_mm', coalesce(o.diameter_mm, o.width_mm), 'run_m', round(m.close::numeric, 1), "
              "'angle_deg', round(degrees(acos(least(1.0, m.cos)))::numeric, 1))")
    insert(cur, f"""
        WITH p AS (
            SELECT f.*, f.sx + f.ux * f.tm AS px, f.sy + f.uy * f.tm AS py,
                   f.n0 + (f.tm - f.t0) * (f.n1 - f.n0) / (f.t1 - f.t0) AS off
            FROM (SELECT m.*, CASE WHEN m.c_lo <= m.c_hi THEN m.lo ELSE m.hi END AS tm FROM hz_g03m m
                  WHERE m.close >= %(run)s
                    AND ST_Distance(ST_MakeLine(ST_MakePoint(m.sx, m.sy), ST_MakePoint(m.ex, m.ey)),
                                    ST_MakeLine(ST_MakePoint(m.jsx, m.jsy), ST_MakePoint(m.jex, m.jey))) > %(touch)s) f)
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


@method("gas_crossing_clearance", inputs=lambda r: ["pipe_segment:RQ", *(f"pipe_segment:{n}" for n in
                                                                        r.params.get("networks") or [])],
        focusable=True, shares="hz_gs", weight=4, shardable=True)
def gas_crossing_clearance(cur: psycopg2.extensions.cursor, ctx: Ctx, rule: Rule) -> None:
    """G04: where a gas pipe crosses another pipe in plan (interiors cross; ends touching the
    other pipe, within 1 mm, do not), each pipe's elevation is interpolated along it, moved from
    its reference (top / invert / centre) to the centre with its size, and the vertical clear
    distance outer wall to outer wall is compared with the GB 50289 vertical table (as ingest rule
    Q20 computes it).

    An end without a recorded elevation (``start_z`` / ``end_z``) takes the ground elevation of
    its point (``pipe_point.ground_z``) minus the segment's burial depth at that end
    (``start_depth`` / ``end_depth``, to the same reference); the evidence lists such ends
    (``z_from_depth``). A pair with an end that has neither is not evaluated."""
    gas_segment_pairs(cur, ctx, rule)
    v = ctx.clearances["vertical"]
    nets = [str(n) for n in (rule.params.get("networks") or [])]
    params = ctx.base(rule)
    _lookup(cur, "hz_vlim", "pair text PRIMARY KEY, limit_m float8",
            [(str(k), float(val)) for k, val in (v.get("pairs") or {}).items()])
    # an end closer than 1 mm to the other pipe is a connection (T-junction), not a crossing
    params.update(nets=nets, default_m=float(v["default_m"]), tol=ctx.frame.deg(0.001))
    centre = ("(x.{a}z0 + {t} * (x.{a}z1 - x.{a}z0) + CASE {a}.z_ref WHEN 'invert' THEN {r} "
              "WHEN 'top' THEN -{r} ELSE 0 END)")
    # an end's elevation at the segment's reference: recorded, else ground of its point − burial depth
    ends = {f"{a}z{i}": (f"{a}.{end}_z", f"{a}{end[0]}.ground_z - {a}.{end}_depth", f"{side}_{end}")
            for a, side in (("g", "gas"), ("o", "other")) for i, end in enumerate(("start", "end"))}
    elevations = ", ".join(f"coalesce({z}, {d}) AS {n}" for n, (z, d, _) in ends.items())
    derived = ", ".join(f"CASE WHEN {z} IS NULL THEN '{label}' END" for z, _, label in ends.values())
    inputs = ("jsonb_build_object('other_network', o.network, 'gas_centre_z', round(z.za::numeric, 3), "
              "'other_centre_z', round(z.zb::numeric, 3), 'gas_diameter_mm', coalesce(g.diameter_mm, g.height_mm), "
              "'other_diameter_mm', coalesce(o.diameter_mm, o.height_mm), 'gas_z_ref', g.z_ref, 'other_z_ref', o.z_ref, "
              "'pair', z.pair) || CASE WHEN cardinality(z.derived) > 0 "
              "THEN jsonb_build_object('z_from_depth', to_jsonb(z.derived)) ELSE '{}'::jsonb END")
    insert(cur, f"""
        WITH c AS MATERIALIZED (
            SELECT p.*, (p.gx1 - p.gx0) * (p.oy0 - p.gy0) - (p.gy1 - p.gy0) * (p.ox0 - p.gx0) AS d1,
                   (p.gx1 - p.gx0) * (p.oy1 - p.gy0) - (p.gy1 - p.gy0) * (p.ox1 - p.gx0) AS d2,
                   (p.ox1 - p.ox0) * (p.gy0 - p.oy0) - (p.oy1 - p.oy0) * (p.gx0 - p.ox0) AS d3,
                   (p.ox1 - p.ox0) * (p.gy1 - p.oy0) - (p.oy1 - p.oy0) * (p.gx1 - p.ox0) AS d4,
                   sqrt((p.gx1 - p.gx0) ^ 2 + (p.gy1 - p.gy0) ^ 2) AS lg, sqrt((p.ox1 - p.ox0) ^ 2 + (p.oy1 - p.oy0) ^ 2) AS lo
            FROM hz_gs p WHERE p.onet = ANY(%(nets)s)),
        x AS MATERIALIZED (
            SELECT c.gid, c.oid, e.*,
                   CASE WHEN c.simple THEN ST_SetSRID(ST_MakePoint(c.gx0 + (c.gx1 - c.gx0) * c.d3 / (c.d3 - c.d4),
                                                                   c.gy0 + (c.gy1 - c.gy0) * c.d3 / (c.d3 - c.d4)), 4490)
                        ELSE ST_Centroid(ST_Intersection(g.geom, o.geom)) END AS pt
            FROM c JOIN cim.pipe_segment g ON g.id = c.gid JOIN cim.pipe_segment o ON o.id = c.oid
            LEFT JOIN cim.pipe_point gs ON gs.id = g.start_point_id AND g.start_z IS NULL
            LEFT JOIN cim.pipe_point ge ON ge.id = g.end_point_id AND g.end_z IS NULL
            LEFT JOIN cim.pipe_point os ON os.id = o.start_point_id AND o.start_z IS NULL
            LEFT JOIN cim.pipe_point oe ON oe.id = o.end_point_id AND o.end_z IS NULL
            CROSS JOIN LATERAL (SELECT {elevations}, array_remove(ARRAY[{derived}], NULL) AS derived OFFSET 0) e
            WHERE e.gz0 IS NOT NULL AND e.gz1 IS NOT NULL AND e.oz0 IS NOT NULL AND e.oz1 IS NOT NULL
              AND CASE WHEN c.simple THEN c.d1 * c.d2 < 0 AND c.d3 * c.d4 < 0
                                          AND least(abs(c.d1), abs(c.d2)) > %(tol)s * c.lg
                                          AND least(abs(c.d3), abs(c.d4)) > %(tol)s * c.lo
                       ELSE ST_Crosses(g.geom, o.geom) END),
        z AS MATERIALIZED (
            SELECT x.*, zz.za, zz.zb, zz.pair, round((abs(zz.za - zz.zb) - zz.ra - zz.rb)::numeric, 3)::float8 AS clear
            FROM x JOIN cim.pipe_segment g ON g.id = x.gid JOIN cim.pipe_segment o ON o.id = x.oid
            CROSS JOIN LATERAL (
                SELECT {centre.format(a='g', t='f.ta', r='f.ra')} AS za, {centre.format(a='o', t='f.tb', r='f.rb')} AS zb,
                       f.ra, f.rb, least(g.network, o.network) || '-' || greatest(g.network, o.network) AS pair
                FROM (SELECT ST_LineLocatePoint(g.geom, x.pt) AS ta, ST_LineLocatePoint(o.geom, x.pt) AS tb,
                             coalesce(g.diameter_mm, g.height_mm, 0) / 2000.0 AS ra,
                             coalesce(o.diameter_mm, o.height_mm, 0) / 2000.0 AS rb OFFSET 0) f) zz)
        SELECT NULL::text AS grade,
               jsonb_build_array({ref_sql('pipe_segment', 'g')}, {ref_sql('pipe_segment', 'o')}) AS refs,
               ARRAY[{key_sql('pipe_segment', 'g')}, {key_sql('pipe_segment', 'o')}] AS keys,
               z.pt AS geom, z.pt AS marker, z.clear AS measured,
               {evidence_sql('z.clear', 'l.limit_m', 'm', '>=', inputs)} AS evidence,
               format('%%s：燃气管段 %%s 与 %%s 管段 %%s 交叉处垂直净距 %%s m，要求 ≥ %%s m', %(rule_zh)s::text,
                      {code_sql('pipe_segment', 'g')}, o.network, {code_sql('pipe_segment', 'o')}, z.clear,
                      l.limit_m) AS title,
               coalesce(g.road, o.road) AS location, NULL::text AS community_code
        FROM z JOIN cim.pipe_segment g ON g.id = z.gid JOIN cim.pipe_segment o ON o.id = z.oid
        CROSS JOIN LATERAL (SELECT coalesce((SELECT v.limit_m FROM hz_vlim v WHERE v.pair = z.pair), %(default_m)s)
                            AS limit_m) l
        WHERE z.clear < l.limit_m
    """, params)
