"""The evaluation methods of the automatic rules: set-based PostGIS SQL over one county.

Every method writes its findings into the scan's temporary table ``hz_find`` (one row per
finding: rule, grade, facility references and keys, geometry, marker, measured value, evidence,
title) with one ``INSERT … SELECT``; nothing is fetched row by row into Python. Methods read only
the county's current rows (``is_current``, ``county_code``). Pair rules find candidates with
the GiST indexes in the storage CRS (``&&`` on degree-expanded boxes) and measure metres only on
those candidates, in the county's metric frame (:mod:`cimplus.hazards.facility`).

A method declares the input scopes it reads (``building``, ``pipe_segment:RQ`` …): a rescan after
a delivery runs only the rules whose scopes changed. Methods marked ``focusable`` can also be
restricted to the rows that changed (``hz_focus``) and the facilities near them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg2.extensions

from cim import standards
from cimplus.hazards.config import Rule, RuleSet
from cimplus.hazards.facility import Frame

#: Columns of the findings table, in insert order.
FIND_COLUMNS = ("rule_id", "grade", "refs", "keys", "geom", "marker", "measured", "evidence", "title", "location",
                "community_code")

FIND_DDL = """
CREATE TEMP TABLE hz_find (
    rule_id text NOT NULL, grade text, refs jsonb NOT NULL, keys text[] NOT NULL,
    geom geometry NOT NULL, marker geometry NOT NULL, measured double precision, evidence jsonb NOT NULL,
    title text NOT NULL, location text, community_code text, street_code text, rule_key text
) ON COMMIT DROP;
CREATE TEMP TABLE hz_focus (scope text NOT NULL, id bigint NOT NULL) ON COMMIT DROP;
"""


@dataclass
class Ctx:
    """What every method needs: the county, its frame, the reference year and the standards."""

    county: str
    frame: Frame
    year: int
    rules: RuleSet
    clearances: dict[str, Any] = field(default_factory=standards.clearances)
    aging: dict[str, Any] = field(default_factory=standards.aging)
    focus: dict[str, set[str]] = field(default_factory=dict)   # rule id → scopes with focus rows
    cache: dict[str, Any] = field(default_factory=dict)          # temp tables shared by rules of one scan
    shard: tuple[int, int] | None = None   # (k, n): this connection evaluates the k-th of n shares of the gas segments

    def base(self, rule: Rule) -> dict[str, Any]:
        """Bound values every statement of a rule uses."""
        return {"county": self.county, "rule": rule.id, "rule_zh": rule.name_zh, "clause": rule.clause,
                "srid": self.frame.srid, "skip_status": list(self.rules.skip_status)}


Runner = Callable[[psycopg2.extensions.cursor, Ctx, Rule], None]


@dataclass(frozen=True)
class Method:
    """An evaluation method."""

    name: str
    run: Runner
    inputs: Callable[[Rule], list[str]]
    focusable: bool = False
    shares: str | None = None   # methods sharing a candidate table run on the same connection
    weight: float = 0.5         # relative cost of a whole-county run (to spread rules over connections)
    shardable: bool = False     # a whole-county run may be split over connections by gas segment


METHODS: dict[str, Method] = {}


def method(name: str, inputs: Callable[[Rule], list[str]], focusable: bool = False, shares: str | None = None,
           weight: float = 0.5, shardable: bool = False) -> Callable[[Runner], Runner]:
    """Register an evaluation method under ``name`` (the ``method`` of rules.yaml)."""

    def deco(fn: Runner) -> Runner:
        METHODS[name] = Method(name, fn, inputs, focusable, shares, weight, shardable)
        return fn

    return deco


def insert(cur: psycopg2.extensions.cursor, select_sql: str, params: dict[str, Any]) -> int:
    """``INSERT INTO hz_find`` the rows of a SELECT producing :data:`FIND_COLUMNS` but the rule id
    (bound as ``rule``); returns the count."""
    cols = ", ".join(FIND_COLUMNS)
    cur.execute(f"INSERT INTO hz_find ({cols}) SELECT %(rule)s, {', '.join(FIND_COLUMNS[1:])} FROM ({select_sql}) q",
                params)
    return cur.rowcount


def variants(ctx: Ctx, rule: Rule, sides: dict[str, list[str]], params: dict[str, Any]) -> list[str]:
    """The restrictions a pair rule runs under: ``['']`` for the whole county, else one
    ``AND alias.id IN (changed rows)`` per side that has changed rows (``sides``: row alias →
    the scopes it is read from). The pairs of all variants together are every pair with at
    least one changed member; duplicates are removed after the methods ran."""
    focus = ctx.focus.get(rule.id)
    if not focus:
        return [""]
    out = []
    for alias, scopes in sides.items():
        hit = sorted(set(scopes) & focus)
        if hit:
            params[f"focus_{alias}"] = hit
            out.append(f" AND {alias}.id IN (SELECT id FROM hz_focus WHERE scope = ANY(%(focus_{alias})s))")
    return out


def evidence_sql(measured: str, required: str, unit: str, comparison: str, inputs: str, extra: str = "") -> str:
    """SQL text of the evidence object: measured vs required, the inputs, the clause."""
    more = f", {extra}" if extra else ""
    return (f"jsonb_build_object('measured', {measured}, 'required', {required}, 'unit', '{unit}', "
            f"'comparison', '{comparison}', 'inputs', {inputs}, 'clause', %(clause)s::text{more})")


def load_methods() -> dict[str, Method]:
    """Every method (importing the modules registers them)."""
    from cimplus.hazards.detect import buildings, drainage, gas, pipes  # noqa: F401

    return METHODS
