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
                      polygon's bounding box) as ``m``: ``m.area_id`` is the area's id
                      (:mod:`cimplus.healthcheck.areas`, the membership grid);
``{area_parts:src}``  a derived table of the rows of layer (or CTE) ``src`` (columns ``id``, ``geom``)
                      cut by area: every column of the row plus ``area_id``, ``part`` (the row's
                      geometry inside that area, EPSG:4490), ``measure`` (the whole row's metric
                      length or area) and ``share`` (the fraction of it inside the area), so
                      ``sum(share * measure)`` is the exact length or area inside each area;
``{builtup_parts:src}`` the same, cut by the built-up part of each area;
``{hazard_ledger}``   open entries of the hazard ledger (a ``geom`` column) when its table exists
                      at run time, else an empty set.

Values are psycopg2 named parameters ``%(name)s``: the indicator's ``params`` (radii, size
classes, codes), plus ``year``, ``srid`` (the metric CRS of the run), ``deg_per_m`` (degrees per
metre along a parallel at the run's highest latitude: pads a bounding-box test) and
``counties``. Identifiers come only from the catalogue and the table model and pass through
:func:`cim.db.quote_ident`.
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
CELLS_TABLE = "pg_temp.hc_cell"
BUILTUP_CELLS_TABLE = "pg_temp.hc_bcell"
_ALIAS = re.compile(r"^[a-z_][a-z0-9_]*$")
# {area_parts:src} / {builtup_parts:src}. The rows and the cell keys their bounding boxes span are
# materialised first (a row once per key it spans, so no self-join on the row id is left for the
# planner to turn into a nested loop), so the planner joins plain relations on one hashed key, i * 1000003 + j (a
# bigint whose two halves do not cancel in PostgreSQL's hash of int8; a lateral
# generate_series of unknown size misleads it). A row's metric length or area (`measure`) is computed
# once; its `share` in an area is 1 in a cell wholly inside, else the ratio of the cut to the whole
# measured in EPSG:4490 with longitudes scaled by cos(latitude): the projection is conformal, so over
# one feature it is a similarity and the ratio is the metric one (to about 1e-6). A straight segment
# in a boundary cell whose part of the area is convex is decided by its two end points and one
# distance test (no GEOS overlay); only a segment that crosses the boundary is cut.
PARTS_SQL = """(WITH _f AS MATERIALIZED (
  SELECT s.*, x._i0, x._j0, x._i1 = x._i0 AND x._j1 = x._j0 AS _one,
         CASE WHEN x._i1 = x._i0 AND x._j1 = x._j0 THEN ARRAY[x._i0::bigint * 1000003 + x._j0]
              ELSE ARRAY(SELECT gi::bigint * 1000003 + gj FROM generate_series(x._i0, x._i1) gi,
                                                               generate_series(x._j0, x._j1) gj) END AS _keys,
         cos(radians((ST_YMin(s.geom) + ST_YMax(s.geom)) * 0.5)) AS _k,
         CASE ST_Dimension(s.geom) WHEN 1 THEN ST_Length(ST_Transform(s.geom, %(srid)s))
                                   WHEN 2 THEN ST_Area(ST_Transform(s.geom, %(srid)s)) END AS measure
    FROM {relation} s
    CROSS JOIN LATERAL (SELECT floor(ST_XMin(s.geom) / %(_cell)s)::int AS _i0, floor(ST_XMax(s.geom) / %(_cell)s)::int AS _i1,
                               floor(ST_YMin(s.geom) / %(_cell)s)::int AS _j0, floor(ST_YMax(s.geom) / %(_cell)s)::int AS _j1
                        OFFSET 0) x
), _fc AS MATERIALIZED (
  SELECT f.*, unnest(f._keys) AS _key FROM _f f
)
SELECT f.*, c.area_id, coalesce(x._cut, f.geom) AS part,
       CASE WHEN x._cut IS NULL THEN 1.0 WHEN ST_IsEmpty(x._cut) THEN 0.0
            WHEN ST_Dimension(f.geom) = 1 THEN ST_Length(ST_Scale(x._cut, f._k, 1)) / nullif(ST_Length(ST_Scale(f.geom, f._k, 1)), 0)
            ELSE ST_Area(x._cut) / nullif(ST_Area(f.geom), 0) END AS share
  FROM _fc f JOIN {cells} c ON c.k = f._key
  CROSS JOIN LATERAL (SELECT CASE
      WHEN c.inside AND f._one THEN NULL
      WHEN c.inside AND ST_Dimension(f.geom) = 1 THEN ST_ClipByBox2D(f.geom, ST_MakeEnvelope(
           c.i * %(_cell)s, c.j * %(_cell)s, (c.i + 1) * %(_cell)s, (c.j + 1) * %(_cell)s, 4490)::box2d)
      WHEN c.inside THEN ST_Intersection(f.geom, ST_MakeEnvelope(
           c.i * %(_cell)s, c.j * %(_cell)s, (c.i + 1) * %(_cell)s, (c.j + 1) * %(_cell)s, 4490))
      WHEN f._one AND c.convex AND ST_NPoints(f.geom) = 2 AND ST_Dimension(f.geom) = 1
           AND ST_Intersects(c.clip, ST_StartPoint(f.geom)) AND ST_Intersects(c.clip, ST_EndPoint(f.geom)) THEN NULL
      WHEN NOT ST_DWithin(c.clip, f.geom, 0) THEN 'GEOMETRYCOLLECTION EMPTY'::geometry
      WHEN f._one AND ST_Covers(c.clip, f.geom) THEN NULL
      ELSE ST_Intersection(f.geom, c.clip) END AS _cut OFFSET 0) x)"""

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

    def params(self) -> dict[str, Any]:
        """The scope's bound values."""
        return {"year": self.year, "srid": self.srid, "deg_per_m": self.deg_per_m, "counties": list(self.counties),
                "_cell": self.cell_deg}


@dataclass
class Expanded:
    """An executable statement: SQL text with ``%(name)s`` placeholders and their values."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)


class Expander:
    """Expands templates against one layer catalogue, one scope and the catalogue's parameters."""

    def __init__(self, layers: Catalog, catalogue: Catalogue, scope: Scope) -> None:
        self.layers = layers
        self.catalogue = catalogue
        self.scope = scope

    def expand(self, template: str, ind: Indicator) -> Expanded:
        """The template with every placeholder replaced; parameters bound."""
        params: dict[str, Any] = {**self.catalogue.params_of(ind), **self.scope.params()}
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
                return self._join_area(arg)
            if name in ("area_parts", "builtup_parts"):
                return self._parts(arg, CELLS_TABLE if name == "area_parts" else BUILTUP_CELLS_TABLE, name, bind)
            return self._layer(name, bind)

        sql = PLACEHOLDER.sub(replace, template)
        return Expanded(sql, params)

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
        return (f"JOIN {CELLS_TABLE} {m} ON {m}.k = {key} "
                f"AND ({m}.inside OR ST_Intersects({m}.clip, ST_SetSRID(ST_MakePoint({x}, {y}), 4490)))")

    def _parts(self, arg: str | None, table: str, name: str, bind) -> str:
        source = arg or ""
        if not _ALIAS.match(source):
            raise ConfigError(f"占位符无效：{{{name}:{arg}}}（应为 {{{name}:图层或 CTE}}）",
                              f"invalid placeholder {{{name}:{arg}}} (use {{{name}:layer_or_cte}})")
        relation = self._layer(source, bind) if source in {s.id for s in self.layers.public()} else quote_ident(source)
        return PARTS_SQL.format(relation=relation, cells=table)

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
    cur.execute("SELECT to_regclass(%s)", (f"{quote_ident(schema)}.{quote_ident(table)}",))
    row = cur.fetchone()
    assert row is not None  # SELECT of a function: one row
    if row[0] is None:
        return False, f"{led.table} does not exist"
    cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
                (schema, table))
    columns = {r[0] for r in cur.fetchall()}
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
