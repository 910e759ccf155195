"""The admin areas of a run, prepared once: ``{areas}`` of every formula.

One temporary table per run transaction holds the current admin areas of the run's counties and
levels with what the formulas need besides the layers: the geometry in the run's metric CRS, the
area, the resident population of the run's year and the built-up area (建成区) inside the area.
Lengths and areas are measured in the CGCS2000 3° Gauss-Krüger zone of the run's counties
(EPSG:4534–4554, the plane survey deliveries come in), so a formula and a GeoPandas check give
the same numbers.

Features meet areas through grids of cells of ``cell_deg`` degrees, one over the areas and one over
their built-up parts: each (cell, area) pair is stored once, as wholly inside the area or with the
part of the area inside the cell. A point, or a building by the centre of its bounding box (the
rule the 3D Tiles use to place a building), in an inside cell needs no geometric test at all, one
near a boundary is tested against a polygon of a few vertices (``{join_area:b:m}``); a line or a
polygon is cut into its parts per cell and area (``{area_parts:p:m}``, ``{builtup_parts:p:m}``),
whole when it lies in one inside cell, clipped by the cell box or the cell's part of the area
otherwise, so lengths and areas are exact. A million buildings are assigned to every area of three
levels in one hash join instead of three million point-in-polygon probes.

Population: an area's own row of the latest upload for the latest year not after the run's year;
an area without one gets the sum of its child areas when every child has one (a county from its
streets, a street from its communities).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import psycopg2.extensions
import psycopg2.extras

from cim.errors import NotFound
from cimplus.healthcheck.template import AREAS_TABLE, Scope

CELLS = 100_000          # cells of the membership grid over the run's extent (about)


@dataclass
class AreaSet:
    """What :func:`prepare` found."""

    counties: list[str]
    srid: int
    deg_per_m: float
    count: int
    cell_deg: float = 0.001
    population: dict[str, Any] = field(default_factory=dict)   # inputs used (ids, years, areas covered)
    builtup: dict[str, Any] = field(default_factory=dict)

    def scope(self, year: int, ledger_present: bool = False) -> Scope:
        """The values the templates of a run over these areas use."""
        return Scope(self.counties, year, self.srid, self.deg_per_m, ledger_present, self.cell_deg)


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


def prepare(cur: psycopg2.extensions.cursor, counties: list[str], levels: list[str], year: int,
            only_code: str | None = None) -> AreaSet:
    """Create ``{areas}`` (dropped at the end of the transaction) and fill it."""
    cur.execute("SELECT ST_X(c), ST_Y(c), greatest(abs(ST_YMax(e)), abs(ST_YMin(e))) FROM "
                "(SELECT ST_Centroid(ST_Extent(geom)::geometry) c, ST_Extent(geom)::geometry e FROM cim.admin_area "
                " WHERE is_current AND county_code = ANY(%s) AND level = ANY(%s)) x", (counties, levels))
    row = cur.fetchone()
    assert row is not None  # an aggregate without GROUP BY returns one row
    lon, _lat, max_lat = row
    if lon is None:
        raise NotFound("所选行政区级别没有行政区划", "no admin areas of the chosen levels")
    srid = metric_srid(lon)
    deg_per_m = 1.0 / (111_320.0 * math.cos(math.radians(min(float(max_lat) + 0.5, 85.0))))
    cur.execute(f"DROP TABLE IF EXISTS {AREAS_TABLE}")
    cur.execute(
        "CREATE TEMP TABLE hc_area ON COMMIT DROP AS "
        "SELECT a.id, a.code, a.name, a.level, a.parent_code, a.county_code, a.geom, "
        "       ST_Transform(a.geom, %(srid)s) AS gm, NULL::float8 AS area_m2, NULL::float8 AS population, "
        "       NULL::smallint AS pop_year, NULL::geometry AS builtup_geom, NULL::geometry AS builtup_gm, "
        "       NULL::float8 AS builtup_m2 "
        "  FROM cim.admin_area a "
        " WHERE a.is_current AND a.county_code = ANY(%(counties)s) AND a.level = ANY(%(levels)s) "
        "   AND (%(only)s::text IS NULL OR a.code = %(only)s)",
        {"srid": srid, "counties": counties, "levels": levels, "only": only_code})
    cur.execute("UPDATE hc_area SET area_m2 = ST_Area(gm)")
    count = cur.rowcount
    population = _population(cur, counties, year)
    builtup = _builtup(cur, counties, year, srid)
    cur.execute("CREATE INDEX ON hc_area USING gist (geom)")
    cur.execute("CREATE INDEX ON hc_area USING gist (gm)")
    cur.execute("ANALYZE hc_area")
    cell = _cells(cur)
    return AreaSet(counties, srid, deg_per_m, count, cell, population, builtup)


def _cells(cur: psycopg2.extensions.cursor) -> float:
    """The grids of the areas (``hc_cell``) and of their built-up parts (``hc_bcell``): about 10^5
    cells over the run's extent, 0.0002°–0.05° wide. Each (cell, area) pair is one row: ``inside``
    (the cell lies wholly in the area) or the part of the area inside the cell (``clip``). No
    index: the templates hash-join features to cells on (i, j)."""
    cur.execute("SELECT ST_XMax(e) - ST_XMin(e), ST_YMax(e) - ST_YMin(e) FROM "
                "(SELECT ST_Extent(geom)::geometry AS e FROM hc_area) x")
    row = cur.fetchone()
    assert row is not None  # an aggregate without GROUP BY returns one row
    w, h = row
    cell = min(max(math.sqrt(max(float(w) * float(h), 1e-12) / CELLS), 0.0002), 0.05)
    for table, column in (("hc_cell", "geom"), ("hc_bcell", "builtup_geom")):
        cur.execute(
            f"CREATE TEMP TABLE {table} ON COMMIT DROP AS "
            f"SELECT x.*, x.i::bigint * 1000003 + x.j AS k, "
            f"       x.clip IS NOT NULL AND abs(ST_Area(ST_ConvexHull(x.clip)) - ST_Area(x.clip)) "
            f"                              <= 1e-9 * ST_Area(x.clip) AS convex "
            f"  FROM (SELECT a.id AS area_id, g.i, g.j, c.inside, CASE WHEN c.inside THEN NULL "
            f"               ELSE ST_Intersection(g.geom, a.{column}) END AS clip "
            f"          FROM hc_area a CROSS JOIN LATERAL ST_SquareGrid(%s, a.{column}) g "
            f"          CROSS JOIN LATERAL (SELECT ST_Covers(a.{column}, g.geom) AS inside) c "
            f"         WHERE a.{column} IS NOT NULL AND (c.inside OR ST_Intersects(g.geom, a.{column}))) x", (cell,))
        cur.execute(f"ANALYZE {table}")
    return cell


def _population(cur: psycopg2.extensions.cursor, counties: list[str], year: int) -> dict[str, Any]:
    """Fill population (own row, else the sum of all children) and say which uploads were used."""
    cur.execute("SELECT code, parent_code FROM cim.admin_area WHERE is_current AND county_code = ANY(%s)", (counties,))
    parent = dict(cur.fetchall())
    cur.execute(
        "SELECT DISTINCT ON (p.code) p.code, p.population, p.year, p.input_id FROM cim.healthcheck_population p "
        " WHERE p.code = ANY(%s) AND p.year <= %s ORDER BY p.code, p.year DESC, p.input_id DESC",
        (list(parent), year))
    own = {code: (float(pop), int(y), int(iid)) for code, pop, y, iid in cur.fetchall()}
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
    if rows:
        psycopg2.extras.execute_values(
            cur, "UPDATE hc_area a SET population = v.p, pop_year = v.y FROM (VALUES %s) v(code, p, y) "
                 "WHERE a.code = v.code", rows, template="(%s, %s::float8, %s::smallint)")
    return {"input_ids": sorted({v[2] for v in own.values()}), "years": sorted({v[1] for v in own.values()}),
            "areas_with_rows": len(own), "areas_with_population": len(rows)}


def _builtup(cur: psycopg2.extensions.cursor, counties: list[str], year: int, srid: int) -> dict[str, Any]:
    """Fill the built-up area inside each area from the latest upload per county (year ≤ the run's)."""
    cur.execute(
        "CREATE TEMP TABLE hc_builtup ON COMMIT DROP AS "
        "SELECT DISTINCT ON (b.county_code) b.county_code, b.year, b.input_id, b.geom "
        "  FROM cim.healthcheck_builtup b WHERE b.county_code = ANY(%s) AND b.year <= %s "
        " ORDER BY b.county_code, b.year DESC, b.input_id DESC", (counties, year))
    cur.execute("SELECT county_code, year, input_id FROM hc_builtup ORDER BY 1")
    used = cur.fetchall()
    cur.execute(
        "UPDATE hc_area a SET builtup_geom = x.g, builtup_gm = ST_Transform(x.g, %s), "
        "       builtup_m2 = ST_Area(ST_Transform(x.g, %s)) FROM ("
        "  SELECT a2.id, CASE WHEN ST_Covers(b.geom, a2.geom) THEN a2.geom "
        "                     ELSE ST_Multi(ST_CollectionExtract(ST_Intersection(a2.geom, b.geom), 3)) END AS g "
        "    FROM hc_area a2 JOIN hc_builtup b ON b.county_code = a2.county_code) x "
        " WHERE a.id = x.id AND NOT ST_IsEmpty(x.g)", (srid, srid))
    cur.execute("DROP TABLE hc_builtup")
    return {"input_ids": sorted({r[2] for r in used}), "years": sorted({r[1] for r in used}),
            "counties": [r[0] for r in used]}
