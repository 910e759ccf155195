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
_ALIAS = re.compile(r"^[a-z_][a-z0-9_]*$")
BUILT_INS = {"areas", "aged", "hazard_ledger"}


@dataclass
class Scope:
    """What a run covers and the values every template may use."""

    counties: list[str]
    year: int
    srid: int
    deg_per_m: float
    ledger_present: bool = False

    def params(self) -> dict[str, Any]:
        """The scope's bound values."""
        return {"year": self.year, "srid": self.srid, "deg_per_m": self.deg_per_m, "counties": list(self.counties)}


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
    if cur.fetchone()[0] is None:
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
