"""Indicator SQL templates → executable SQL with every value bound.

A formula is written against the layer catalogue, not against tables: ``{buildings}`` stands for
the current rows of layer ``buildings`` in the run's counties, filtered by the spec's ``where``
(built by :func:`layers.sqlbuild.where_conditions`, the one builder of a spec's filter), so a
formula means the same rows the map, the features API and the tiles show. Placeholders:

``{<layer id>}``      a derived table of the layer's current rows in the run's counties;
``{areas}``           the admin areas of the run (:mod:`cimplus.healthcheck.areas`): id, code,
                      name, level, parent_code, county_code, geom (EPSG:4490), gm (metric),
                      area_m2, population, pop_year, builtup_gm, builtup_m2;
``{aged:alias}``      the 国办发〔2022〕22号 renewal criteria of the network named by the
                      indicator's ``network`` parameter (``cim/standards/aging.yaml``, shared
                      with the hazard rules) as a predicate on the pipe segment row ``alias``;
``{join_area:b:m}``   ``JOIN`` of the areas holding feature row ``b`` (a point, or the centre of a
                      polygon's bounding box) as ``m``: ``m.area_id`` is the area's id, once per
                      area (:mod:`cimplus.healthcheck.areas`, a hash join on the point-membership
                      grid of the area pieces);
``{area_parts:src}``  a derived table of the rows of layer (or CTE) ``src`` (columns ``id``, ``geom``)
                      cut by area: every column of the row plus ``area_id``, ``part`` (the row's
                      geometry inside that area, EPSG:4490), ``measure`` (the whole row's metric
                      length or area) and ``share`` (the fraction of it inside the area), so
                      ``sum(share * measure)`` is the exact length or area inside each area.
                      For a layer, read from the run's stored set for the layer's table
                      (:mod:`cimplus.healthcheck.membership`) when its data versions are the run's;
                      otherwise (a CTE, or no such set) cut on the fly. A condition of the formula
                      on the row's columns (``WHERE p.network = …``) filters the layer's rows first;
``{builtup_parts:src}`` the same, cut by the built-up part of each area;
``{hazard_ledger}``   the open entries of the hazard ledger as the catalogue's ``hazard_ledger``
                      names them (table, geometry column, filter: ``cim.hazard``'s open gas
                      entries in the shipped file), one ``geom`` column, when the table and the
                      columns exist at run time, else an empty set.

Values are psycopg2 named parameters ``%(name)s``: the indicator's ``params`` (radii, size
classes, codes), plus ``year``, ``srid`` (the metric CRS of the run), ``deg_per_m`` (degrees per
metre along a parallel at the run's highest latitude: pads a bounding-box test) and
``counties``. Identifiers come only from the catalogue and the table model and pass through
:func:`cim.db.quote_ident`.

An expanded statement names the temporary structures of the run it reads (``needs``: the area
pieces, the point grid), which :meth:`cimplus.healthcheck.areas.AreaSet.ensure` builds on first use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import psycopg2.extensions

from cim import standards
from cim.db import quote_ident
from cim.errors import ConfigError
from cim.schema import TABLES
from cimplus.healthcheck.catalog import PLACEHOLDER, Catalogue, Indicator, Ledger, placeholders
from layers.catalog import Catalog
from layers.sqlbuild import where_conditions

AREAS_TABLE = "pg_temp.hc_area"
PIECES_TABLE = "pg_temp.hc_piece"
BUILTUP_PIECES_TABLE = "pg_temp.hc_bpiece"
POINT_CELLS_TABLE = "pg_temp.hc_pcell"
_ALIAS = re.compile(r"^[a-z_][a-z0-9_]*$")
# {area_parts:src} / {builtup_parts:src} cut on the fly. Each piece of an area takes the rows whose
# bounding box meets it (for a layer, an index scan of the layer's table per piece): the pieces are
# the outer side of the join, so the piece stays the same from one row to the next and PostGIS tests
# the rows against it prepared (built once per piece and kept while the piece repeats: ST_Intersects
# and ST_Covers of a short line against a prepared piece of a few hundred vertices take about a
# microsecond, against an unprepared one several). A piece that covers the row takes it whole (share
# 1, no overlay; a rectangular piece by comparing exact bounds, no GEOS call); only a row crossing a
# piece's edge is cut, and its `share` there is the ratio of the cut to the whole measured in
# EPSG:4490 with longitudes scaled by cos(latitude) (over one feature the projection is a similarity,
# so the ratio is the metric one to about 1e-6); `measure` is the row's metric length or area. The
# pieces of an area do not overlap, so summing share * measure over them is exact. `_cut` is true
# where the row was cut (`part` is then the cut). A condition of the formula on the row's columns is
# pushed down to the layer's scan.
PARTS_SQL = """(SELECT f.*, g.measure, c.area_id, coalesce(x._cut, f.geom) AS part, x._cut IS NOT NULL AS _cut,
       CASE WHEN x._cut IS NULL THEN 1.0 WHEN ST_IsEmpty(x._cut) THEN 0.0
            WHEN ST_Dimension(f.geom) = 1 THEN ST_Length(ST_Scale(x._cut, g._k, 1)) / nullif(ST_Length(ST_Scale(f.geom, g._k, 1)), 0)
            ELSE ST_Area(x._cut) / nullif(ST_Area(f.geom), 0) END AS share
  FROM {pieces} c
  JOIN {relation} f ON f.geom && c.geom
  CROSS JOIN LATERAL (SELECT c.rect AND ST_XMin(f.geom) >= c.x0 AND ST_XMax(f.geom) <= c.x1
                             AND ST_YMin(f.geom) >= c.y0 AND ST_YMax(f.geom) <= c.y1 AS _in OFFSET 0) b
  CROSS JOIN LATERAL (SELECT CASE WHEN b._in OR ST_Covers(c.geom, f.geom) THEN NULL
                                  ELSE ST_Intersection(f.geom, c.geom) END AS _cut OFFSET 0) x
  CROSS JOIN LATERAL (
    SELECT cos(radians((ST_YMin(f.geom) + ST_YMax(f.geom)) * 0.5)) AS _k,
           CASE ST_Dimension(f.geom) WHEN 1 THEN ST_Length(ST_Transform(f.geom, %(srid)s))
                                     WHEN 2 THEN ST_Area(ST_Transform(f.geom, %(srid)s)) END AS measure OFFSET 0) g
 WHERE b._in OR ST_Intersects(c.geom, f.geom))"""

# {area_parts:layer} / {builtup_parts:layer} from a maintained set (cimplus/healthcheck/membership.py,
# migration 0082): the layer's rows joined by id to the parts stored for their table, restricted to the
# run's areas. The same columns as PARTS_SQL, computed by it when the set was refreshed. For a pipe
# table the join also matches the network, so a layer or formula fixing the network
# (`p.network = 'PS'`) reads only that network's parts through the index.
STORED_PARTS_SQL = """(SELECT f.*, m.measure, m.area_id, coalesce(m.part, f.geom) AS part, m.part IS NOT NULL AS _cut,
       m.share
  FROM {relation} f
  JOIN cim.healthcheck_part m ON m.feature_id = f.id{network}
  JOIN {areas} _a ON _a.id = m.area_id
 WHERE m.set_id = {set_id})"""

#: The kind of stored set (cim.healthcheck_part_set.kind) each parts placeholder reads.
PART_KINDS = {"area_parts": "area", "builtup_parts": "builtup"}

BUILT_INS = {"areas", "aged", "hazard_ledger", "join_area", "area_parts", "builtup_parts"}


@dataclass
class Scope:
    """What a run covers and the values every template may use."""

    counties: list[str]
    year: int
    srid: int
    deg_per_m: float
    ledger_present: bool = False
    cell_deg: float = 0.001
    part_sets: dict[tuple[str, str], int] = field(default_factory=dict)  # (table, kind) → usable stored set

    def params(self) -> dict[str, Any]:
        """The scope's bound values."""
        return {"year": self.year, "srid": self.srid, "deg_per_m": self.deg_per_m, "counties": list(self.counties),
                "_cell": self.cell_deg}


@dataclass
class Expanded:
    """An executable statement: SQL text with ``%(name)s`` placeholders and their values."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)
    needs: set[str] = field(default_factory=set)    # temp structures of the run it reads (hc_piece, …)


class Expander:
    """Expands templates against one layer catalogue, one scope and the catalogue's parameters."""

    def __init__(self, layers: Catalog, catalogue: Catalogue, scope: Scope) -> None:
        self.layers = layers
        self.catalogue = catalogue
        self.scope = scope

    def expand(self, template: str, ind: Indicator) -> Expanded:
        """The template with every placeholder replaced; parameters bound."""
        params: dict[str, Any] = {**self.catalogue.params_of(ind), **self.scope.params()}
        needs: set[str] = set()
        counter = [0]

        def bind(value: Any, pg_type: str) -> str:
            counter[0] += 1
            name = f"_w{counter[0]}"
            params[name] = value
            return f"%({name})s::{pg_type}"

        def replace(m: re.Match) -> str:
            name, arg = m.group(1), m.group(2)
            if name == "areas":
                return AREAS_TABLE
            if name == "aged":
                return self._aged(arg, params)
            if name == "hazard_ledger":
                return self._ledger(bind)
            if name == "join_area":
                needs.update((PIECES_TABLE, POINT_CELLS_TABLE))
                return self._join_area(arg)
            if name in ("area_parts", "builtup_parts"):
                return self._parts(arg, name, bind, needs)
            return self._layer(name, bind)

        sql = PLACEHOLDER.sub(replace, template)
        return Expanded(sql, params, needs)

    def _layer(self, layer_id: str, bind) -> str:
        spec = self.layers.get(layer_id)
        conds = ["t.is_current", *where_conditions(spec, "t", bind)]
        if spec.schema_name == "cim" and spec.table_name in TABLES:
            conds.append(f"t.county_code = ANY({bind(list(self.scope.counties), 'text[]')})")
        table = f"{quote_ident(spec.schema_name)}.{quote_ident(spec.table_name)}"
        return f"(SELECT t.* FROM {table} t WHERE {' AND '.join(conds)})"

    def _aged(self, alias: str | None, params: dict[str, Any]) -> str:
        net = params.get("network")
        rules = standards.aging()["networks"].get(net) if isinstance(net, str) else None
        if rules is None or not alias or not _ALIAS.match(alias):
            raise ConfigError(f"老化判定占位符 {{aged:{alias}}} 需要行别名和 aging.yaml 中的管网参数 network（现为 {net}）",
                              f"{{aged:{alias}}} needs a row alias and a `network` param of aging.yaml (got {net})")
        a = quote_ident(alias)
        parts = []
        if rules.get("always"):
            params["_aged_always"] = list(rules["always"])
            parts.append(f"{a}.material = ANY(%(_aged_always)s::text[])")
        if rules.get("min_years") is not None:
            params["_aged_years"] = int(rules["min_years"])
            age = f"{a}.install_year IS NOT NULL AND %(year)s - {a}.install_year >= %(_aged_years)s"
            if rules.get("materials"):
                params["_aged_materials"] = list(rules["materials"])
                age += f" AND {a}.material = ANY(%(_aged_materials)s::text[])"
            parts.append(f"({age})")
        return "(" + (" OR ".join(parts) or "false") + ")"

    def _join_area(self, arg: str | None) -> str:
        feature, _, alias = (arg or "").partition(":")
        if not _ALIAS.match(feature) or not _ALIAS.match(alias):
            raise ConfigError(f"区域归属占位符无效：{{join_area:{arg}}}（应为 {{join_area:要素别名:区域别名}}）",
                              f"invalid placeholder {{join_area:{arg}}} (use {{join_area:feature_alias:area_alias}})")
        f, m = quote_ident(feature), quote_ident(alias)
        x = f"((ST_XMin({f}.geom) + ST_XMax({f}.geom)) * 0.5)"
        y = f"((ST_YMin({f}.geom) + ST_YMax({f}.geom)) * 0.5)"
        key = f"(floor({x} / %(_cell)s)::bigint * 1000003 + floor({y} / %(_cell)s)::bigint)"
        return (f"JOIN {POINT_CELLS_TABLE} {m} ON {m}.k = {key} "
                f"AND ({m}.inside OR ST_Intersects({m}.geom, ST_SetSRID(ST_MakePoint({x}, {y}), 4490)))")

    def _parts(self, arg: str | None, name: str, bind, needs: set[str]) -> str:
        """A layer's rows from the run's stored set for its table when there is one, else (a CTE, or no
        usable set) cut on the fly against the pieces."""
        source = arg or ""
        if not _ALIAS.match(source):
            raise ConfigError(f"占位符无效：{{{name}:{arg}}}（应为 {{{name}:图层或 CTE}}）",
                              f"invalid placeholder {{{name}:{arg}}} (use {{{name}:layer_or_cte}})")
        kind = PART_KINDS[name]
        if source in {s.id for s in self.layers.public()}:
            relation = self._layer(source, bind)
            spec = self.layers.get(source)
            set_id = self.scope.part_sets.get((spec.table_name, kind)) if spec.schema_name == "cim" else None
            if set_id is not None:
                network = " AND m.network = f.network" if TABLES[spec.table_name].network_scoped else ""
                return STORED_PARTS_SQL.format(relation=relation, areas=AREAS_TABLE, set_id=bind(set_id, "bigint"),
                                               network=network)
        else:
            relation = quote_ident(source)
        pieces = PIECES_TABLE if kind == "area" else BUILTUP_PIECES_TABLE
        needs.add(pieces)
        return PARTS_SQL.format(relation=relation, pieces=pieces)

    def _ledger(self, bind) -> str:
        led = self.catalogue.hazard_ledger
        if led is None or not self.scope.ledger_present:
            return "(SELECT NULL::geometry AS geom WHERE false)"
        schema, table = led.table.split(".", 1)
        conds = []
        for column, value in led.where.items():
            ref = f"h.{quote_ident(column)}"
            if isinstance(value, list):
                conds.append(f"{ref} = ANY({bind(list(value), 'text[]')})")
            else:
                conds.append(f"{ref} = {bind(value, 'text')}")
        where = " WHERE " + " AND ".join(conds) if conds else ""
        return (f"(SELECT h.{quote_ident(led.geometry)} AS geom FROM {quote_ident(schema)}.{quote_ident(table)} h"
                f"{where})")


def ledger_present(cur: psycopg2.extensions.cursor, led: Ledger | None) -> tuple[bool, str]:
    """Whether the hazard ledger's table (and the columns the catalogue names) exist now."""
    if led is None:
        return False, "not configured"
    schema, table = led.table.split(".", 1)
    cur.execute("SELECT r.oid IS NOT NULL, array(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = r.oid "
                "AND a.attnum > 0 AND NOT a.attisdropped) FROM (SELECT to_regclass(%s) AS oid) r",
                (f"{quote_ident(schema)}.{quote_ident(table)}",))
    row = cur.fetchone()
    assert row is not None  # SELECT of a function: one row
    if not row[0]:
        return False, f"{led.table} does not exist"
    columns = set(row[1])
    missing = sorted({led.geometry, *led.where} - columns)
    if missing:
        return False, f"{led.table} lacks {missing}"
    return True, "used"


def problems(catalogue: Catalogue, layers: Catalog) -> list[str]:
    """Placeholders and layers of the catalogue that the layer catalogue or the standards do not know."""
    out = []
    known = {s.id for s in layers.public()}
    nets = set(standards.aging()["networks"])
    for ind in catalogue.indicators:
        for name in [*ind.requires.layers, *([ind.layer] if ind.layer else [])]:
            if name not in known:
                out.append(f"{ind.id}: layer {name} is not in the layer catalogue")
        for text in (ind.formula, ind.features):
            for name, arg in placeholders(text or ""):
                if name == "aged":
                    net = catalogue.params_of(ind).get("network")
                    if net not in nets or not _ALIAS.match(arg or ""):
                        out.append(f"{ind.id}: {{aged:{arg}}} needs a row alias and a `network` param of aging.yaml")
                elif name not in BUILT_INS and name not in known:
                    out.append(f"{ind.id}: {{{name}}} is not a layer of the catalogue")
    return out
