"""The admin areas of a run, prepared once: ``{areas}`` of every formula.

One temporary table per run transaction holds the current admin areas of the run's counties and
levels with what the formulas need besides the layers: the geometry in the run's metric CRS, the
area, the resident population of the run's year and the built-up area (建成区) inside the area.
Lengths and areas are measured in the CGCS2000 3° Gauss-Krüger zone of the run's counties
(EPSG:4534–4554, the plane survey deliveries come in), so a formula and a GeoPandas check give
the same numbers.

Features meet areas through the areas cut into small pieces, once per run and only when a statement
needs them (:meth:`AreaSet.ensure`; a line or polygon layer with a stored membership set of the run,
:mod:`cimplus.healthcheck.membership`, needs none): ``ST_Subdivide`` of each
area (``hc_piece``) and of its built-up part (``hc_bpiece``) into polygons of at most ``PIECE_VERTICES``
vertices, each table with a spatial index. Each piece takes the lines or polygons whose bounding box
meets it (``&&``; for a layer an index scan of its table, the piece held prepared); a piece that
covers one takes it whole (a rectangular piece by comparing exact bounds, else ``ST_Covers``), and
only one that crosses a piece's edge is cut (``ST_Intersection``) by it
(``{area_parts:p:m}``, ``{builtup_parts:p:m}``), so lengths and areas are exact and most features
need no overlay at all. Points, and buildings by the centre of their bounding box (the rule the 3D
Tiles use to place a building), meet the areas through ``hc_pcell``, a grid of about ``CELLS``
cells laid over the pieces' bounding boxes (``{join_area:b:m}``): one row per (cell, area), wholly
inside or carrying the pieces that meet the cell, so a million buildings are assigned to every
area of three levels by one hash join, with a point-in-polygon test only near a boundary.

Population: an area's own row of the latest upload for the latest year not after the run's year;
an area without one gets the sum of its child areas when every child has one (a county from its
streets, a street from its communities).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import psycopg2.extensions

from cim.errors import NotFound
from cimplus.healthcheck.template import AREAS_TABLE, BUILTUP_PIECES_TABLE, PIECES_TABLE, POINT_CELLS_TABLE, Scope

PIECE_VERTICES = 256     # most vertices of a piece of an area (ST_Subdivide)
CELLS = 4_096            # cells of the point-membership grid over the run's extent (about)


@dataclass
class AreaSet:
    """What :func:`prepare` found."""

    counties: list[str]
    srid: int
    deg_per_m: float
    count: int
    population: dict[str, Any] = field(default_factory=dict)   # inputs used (ids, years, areas covered)
    builtup: dict[str, Any] = field(default_factory=dict)
    cell_deg: float = 0.001
    built: set[str] = field(default_factory=set)     # temp structures built so far (hc_piece, …)

    def scope(self, year: int, ledger_present: bool = False,
              part_sets: dict[tuple[str, str], int] | None = None) -> Scope:
        """The values the templates of a run over these areas use."""
        return Scope(self.counties, year, self.srid, self.deg_per_m, ledger_present, self.cell_deg,
                     dict(part_sets or {}))

    def ensure(self, cur: psycopg2.extensions.cursor, needs: set[str]) -> None:
        """Build the structures an expanded statement reads (its ``needs``) that are not built yet:
        the area pieces, the built-up pieces, the point grid (which is laid over the area pieces)."""
        if POINT_CELLS_TABLE in needs:
            needs = needs | {PIECES_TABLE}
        for name, build in ((PIECES_TABLE, lambda: _pieces(cur, "hc_piece", "geom")),
                            (BUILTUP_PIECES_TABLE, lambda: _pieces(cur, "hc_bpiece", "builtup_geom")),
                            (POINT_CELLS_TABLE, lambda: _point_cells(cur, self.cell_deg))):
            if name in needs and name not in self.built:
                build()
                self.built.add(name)


def metric_srid(lon: float) -> int:
    """EPSG code of the CGCS2000 3° Gauss-Krüger zone (no zone prefix) whose central meridian is
    nearest ``lon``: EPSG:4534 (75°E) … EPSG:4554 (135°E)."""
    cm = 3 * round(lon / 3)
    cm = min(max(cm, 75), 135)
    return 4534 + (cm - 75) // 3


def counties_in_scope(cur: psycopg2.extensions.cursor, county: str | None) -> list[str]:
    """The county codes a run covers: the one asked for, or every county with current admin areas."""
    if county:
        cur.execute("SELECT 1 FROM cim.admin_area WHERE is_current AND county_code = %s LIMIT 1", (county,))
        if cur.fetchone() is None:
            raise NotFound(f"行政区 {county} 没有已入库的行政区划", f"county {county} has no admin areas loaded")
        return [county]
    cur.execute("SELECT DISTINCT county_code FROM cim.admin_area WHERE is_current ORDER BY 1")
    found = [r[0] for r in cur.fetchall()]
    if not found:
        raise NotFound("没有已入库的行政区划，无法开展体检", "no admin areas are loaded: nothing to check")
    return found


# What prepare reads before it creates {areas}, in one round trip: the extent of the areas of the
# chosen levels, every current area's parent, the population rows and the built-up uploads in force.
_FACTS_SQL = """
SELECT ST_X(ST_Centroid(x.e)), greatest(abs(ST_YMax(x.e)), abs(ST_YMin(x.e))), ST_XMax(x.e) - ST_XMin(x.e),
       ST_YMax(x.e) - ST_YMin(x.e),
       (SELECT json_agg(json_build_array(a.code, a.parent_code)) FROM cim.admin_area a
         WHERE a.is_current AND a.county_code = ANY(%(counties)s)),
       (SELECT json_agg(json_build_array(p.code, p.population, p.year, p.input_id)) FROM (
          SELECT DISTINCT ON (p.code) p.code, p.population, p.year, p.input_id FROM cim.healthcheck_population p
           WHERE p.code IN (SELECT a.code FROM cim.admin_area a WHERE a.is_current AND a.county_code = ANY(%(counties)s))
             AND p.year <= %(year)s ORDER BY p.code, p.year DESC, p.input_id DESC) p),
       (SELECT json_agg(json_build_array(b.county_code, b.year, b.input_id) ORDER BY b.county_code) FROM (
          SELECT DISTINCT ON (b.county_code) b.county_code, b.year, b.input_id FROM cim.healthcheck_builtup b
           WHERE b.county_code = ANY(%(counties)s) AND b.year <= %(year)s
           ORDER BY b.county_code, b.year DESC, b.input_id DESC) b)
  FROM (SELECT ST_Extent(geom)::geometry AS e FROM cim.admin_area
         WHERE is_current AND county_code = ANY(%(counties)s) AND level = ANY(%(levels)s)) x"""

# {areas} in one statement: the metric geometry and area; the population resolved by prepare; the
# built-up part (an area inside the built-up area keeps its own geometries, one crossing it is cut).
_AREAS_SQL = """
CREATE TEMP TABLE hc_area ON COMMIT DROP AS
SELECT a.id, a.code, a.name, a.level, a.parent_code, a.county_code, a.geom, m.gm, ST_Area(m.gm) AS area_m2,
       p.population, p.pop_year, u.g AS builtup_geom, u.gm AS builtup_gm, ST_Area(u.gm) AS builtup_m2
  FROM cim.admin_area a
  CROSS JOIN LATERAL (SELECT ST_Transform(a.geom, %(srid)s) AS gm) m
  LEFT JOIN unnest(%(pop_codes)s::text[], %(pop)s::float8[], %(pop_years)s::smallint[])
       p(code, population, pop_year) ON p.code = a.code
  LEFT JOIN (unnest(%(builtup_inputs)s::bigint[], %(builtup_counties)s::text[], %(builtup_years)s::smallint[])
             k(input_id, county_code, year)
             JOIN cim.healthcheck_builtup b ON (b.input_id, b.county_code, b.year) = (k.input_id, k.county_code, k.year))
       ON k.county_code = a.county_code
  LEFT JOIN LATERAL (SELECT ST_Covers(b.geom, a.geom) AS whole OFFSET 0) w ON b.geom IS NOT NULL
  LEFT JOIN LATERAL (SELECT CASE WHEN w.whole THEN a.geom
                                 ELSE ST_Multi(ST_CollectionExtract(ST_Intersection(a.geom, b.geom), 3)) END AS c
                      OFFSET 0) x ON b.geom IS NOT NULL
  LEFT JOIN LATERAL (SELECT x.c AS g, CASE WHEN w.whole THEN m.gm ELSE ST_Transform(x.c, %(srid)s) END AS gm
                      OFFSET 0) u ON NOT ST_IsEmpty(x.c)
 WHERE a.is_current AND a.county_code = ANY(%(counties)s) AND a.level = ANY(%(levels)s)
   AND (%(only)s::text IS NULL OR a.code = %(only)s);
ANALYZE hc_area;
SELECT count(*), ST_XMax(ST_Extent(geom)) - ST_XMin(ST_Extent(geom)), ST_YMax(ST_Extent(geom)) - ST_YMin(ST_Extent(geom))
  FROM hc_area"""


def prepare(cur: psycopg2.extensions.cursor, counties: list[str], levels: list[str], year: int,
            only_code: str | None = None) -> AreaSet:
    """Create ``{areas}`` (dropped at the end of the transaction) and fill it: two round trips (what
    it needs to know, then the table), so a run on a busy server waits for few replies."""
    cur.execute(_FACTS_SQL, {"counties": counties, "levels": levels, "year": year})
    row = cur.fetchone()
    assert row is not None  # an aggregate without GROUP BY returns one row
    lon, max_lat, _, _, parents, pop_found, builtup_found = row
    if lon is None:
        raise NotFound("所选行政区级别没有行政区划", "no admin areas of the chosen levels")
    srid = metric_srid(lon)
    deg_per_m = 1.0 / (111_320.0 * math.cos(math.radians(min(float(max_lat) + 0.5, 85.0))))
    pop_rows, population = _population(dict(parents or []), pop_found or [])
    used = [tuple(r) for r in builtup_found or []]
    builtup = {"input_ids": sorted({int(r[2]) for r in used}), "years": sorted({int(r[1]) for r in used}),
               "counties": [r[0] for r in used]}
    cur.execute(f"DROP TABLE IF EXISTS {AREAS_TABLE}, {PIECES_TABLE}, {BUILTUP_PIECES_TABLE}, {POINT_CELLS_TABLE};"
                + _AREAS_SQL,
                {"srid": srid, "counties": counties, "levels": levels, "only": only_code,
                 "pop_codes": [r[0] for r in pop_rows], "pop": [r[1] for r in pop_rows],
                 "pop_years": [r[2] for r in pop_rows], "builtup_inputs": [int(r[2]) for r in used],
                 "builtup_counties": [r[0] for r in used], "builtup_years": [int(r[1]) for r in used]})
    made = cur.fetchone()
    assert made is not None  # an aggregate without GROUP BY returns one row
    count, width, height = made
    return AreaSet(counties, srid, deg_per_m, int(count), population, builtup, _cell_size(width, height))


def _cell_size(width: float | None, height: float | None) -> float:
    """Side in degrees of the cells of the point grid: about ``CELLS`` cells over the areas' extent
    (the extent of their pieces too)."""
    w, h = (float(width), float(height)) if width is not None and height is not None else (0.0, 0.0)
    return min(max(math.sqrt(max(w * h, 1e-12) / CELLS), 0.0001), 0.05)


def _pieces(cur: psycopg2.extensions.cursor, table: str, column: str) -> None:
    """The areas (``hc_piece`` from ``geom``) or their built-up parts (``hc_bpiece`` from
    ``builtup_geom``) subdivided into pieces of at most ``PIECE_VERTICES`` vertices (EPSG:4490),
    indexed with SP-GiST (a quad-tree: fewer box tests per probe than a GiST over a few hundred
    large boxes) and analysed: one row per piece with its area's id, its exact bounds (x0, y0, x1,
    y1) and ``rect``, true when the piece fills its bounding box (most pieces inside an area: a
    feature whose bounds lie within such a piece's bounds lies in it, no geometric test needed).
    The pieces of one area do not overlap (they share edges only)."""
    cur.execute(
        f"CREATE TEMP TABLE {table} ON COMMIT DROP AS "
        f"SELECT p.area_id, p.geom, ST_XMin(p.geom) AS x0, ST_YMin(p.geom) AS y0, ST_XMax(p.geom) AS x1, "
        f"       ST_YMax(p.geom) AS y1, abs(ST_Area(p.geom) - (ST_XMax(p.geom) - ST_XMin(p.geom)) "
        f"           * (ST_YMax(p.geom) - ST_YMin(p.geom))) <= 1e-12 * ST_Area(p.geom) AS rect "
        f"  FROM (SELECT a.id AS area_id, ST_Subdivide(a.{column}, %s) AS geom "
        f"          FROM hc_area a WHERE a.{column} IS NOT NULL AND NOT ST_IsEmpty(a.{column})) p",
        (PIECE_VERTICES,))
    cur.execute(f"CREATE INDEX ON {table} USING spgist (geom)")
    cur.execute(f"ANALYZE {table}")


def _point_cells(cur: psycopg2.extensions.cursor, cell: float) -> None:
    """The point-membership grid ``hc_pcell``: square cells of ``cell`` degrees over the run's
    extent; one row per (cell, area) whose pieces meet the cell, keyed by ``k = i * 1000003 + j``,
    with ``inside`` (a piece covers the whole cell: a point there needs no test) or else the pieces
    of that area meeting the cell collected in ``geom``. A point hash-joins to the rows of its cell
    and meets each area once. Only bounding-box arithmetic and one covers/intersects test per
    (cell, piece) pair; no overlay."""
    cur.execute(
        "CREATE TEMP TABLE hc_pcell ON COMMIT DROP AS "
        "SELECT g.k, g.area_id, g.inside, CASE WHEN g.inside THEN NULL WHEN cardinality(g.gs) = 1 THEN g.gs[1] "
        "                                      ELSE ST_Collect(g.gs) END AS geom FROM ("
        "SELECT x.k, x.area_id, bool_or(x.inside) AS inside, array_agg(x.geom) FILTER (WHERE NOT x.inside) AS gs "
        "  FROM (SELECT gi::bigint * 1000003 + gj AS k, gi, gj, p.area_id, p.geom, p.rect, c.inside "
        "          FROM hc_piece p "
        "          CROSS JOIN LATERAL generate_series(floor(p.x0 / %(c)s)::int, floor(p.x1 / %(c)s)::int) gi "
        "          CROSS JOIN LATERAL generate_series(floor(p.y0 / %(c)s)::int, floor(p.y1 / %(c)s)::int) gj "
        "          CROSS JOIN LATERAL (SELECT CASE WHEN p.rect THEN gi * %(c)s >= p.x0 AND (gi + 1) * %(c)s <= p.x1 "
        "                                                AND gj * %(c)s >= p.y0 AND (gj + 1) * %(c)s <= p.y1 "
        "              ELSE ST_Covers(p.geom, ST_MakeEnvelope(gi * %(c)s, gj * %(c)s, (gi + 1) * %(c)s, "
        "                                                     (gj + 1) * %(c)s, 4490)) END AS inside OFFSET 0) c) x "
        " WHERE x.inside OR x.rect OR ST_Intersects(x.geom, ST_MakeEnvelope("
        "       x.gi * %(c)s, x.gj * %(c)s, (x.gi + 1) * %(c)s, (x.gj + 1) * %(c)s, 4490)) "
        " GROUP BY x.k, x.area_id) g", {"c": cell})
    cur.execute("ANALYZE hc_pcell")


def _population(parent: dict[str, str | None],
                found: list[list[Any]]) -> tuple[list[tuple[str, float, int]], dict[str, Any]]:
    """The population of each area (own row, else the sum of all children) as (code, population,
    year) rows, and which uploads were used. ``parent``: code → parent code of every current area;
    ``found``: (code, population, year, input id) of the latest own row of each area."""
    own = {code: (float(pop), int(y), int(iid)) for code, pop, y, iid in found}
    children: dict[str, list[str]] = {}
    for code, par in parent.items():
        if par:
            children.setdefault(par, []).append(code)
    value: dict[str, tuple[float, int] | None] = {}

    def resolve(code: str, depth: int = 0) -> tuple[float, int] | None:
        if code in value:
            return value[code]
        if code in own:
            value[code] = own[code][:2]
        elif children.get(code) and depth < 6:
            kids = [resolve(k, depth + 1) for k in children[code]]
            value[code] = (sum(k[0] for k in kids), max(k[1] for k in kids)) if all(kids) else None  # type: ignore
        else:
            value[code] = None
        return value[code]

    rows = [(code, *v) for code in parent if (v := resolve(code)) is not None]
    return rows, {"input_ids": sorted({v[2] for v in own.values()}), "years": sorted({v[1] for v in own.values()}),
                  "areas_with_rows": len(own), "areas_with_population": len(rows)}
