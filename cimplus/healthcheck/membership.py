"""Stored membership of line and polygon features in the admin areas, kept current between runs.

The length of pipes or roads and the area of parks inside each admin area (``{area_parts:layer}``)
or inside its built-up part (``{builtup_parts:layer}``) need every feature cut by every area it
meets (three levels of areas: about three parts per feature), most of an indicator's time. The result only changes
when the features, the admin areas or the built-up input change, so it is stored once per feature
table for every indicator over that table (migration 0082: ``cim.healthcheck_part_set`` and
``cim.healthcheck_part``), computed by the very statement a run would otherwise run itself
(:data:`cimplus.healthcheck.template.PARTS_SQL`) over all current rows of the table.

A set is keyed by its counties, table, kind (``area`` / ``builtup``), metric CRS and built-up
inputs, and stamped with the data versions (``cim.data_version``) of the table and of
``cim.admin_area`` it was computed from, and with :data:`METHOD`. :func:`usable` gives a run only
the sets whose stamp equals the versions of its own snapshot, so a set is never read after a
delivery or an admin-area change it does not reflect: the run then cuts the features itself, with
the same result.

:func:`refresh` is the maintenance: before a run takes its snapshot, it computes in a transaction
of its own every set the run's catalogue reads that is missing or stale, then :func:`prune` deletes
the sets no run can use again (stale versions). After a delivery the task worker re-runs every
county checked before (docs/healthcheck.md), so the refresh usually happens there, in the
background, and a user's run finds the sets current.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any

import psycopg2.extensions

from cim import versions
from cim.db import quote_ident
from cim.schema import TABLES
from cimplus.healthcheck import areas
from cimplus.healthcheck.catalog import ADMIN_LEVELS, Indicator, placeholders
from cimplus.healthcheck.template import BUILTUP_PIECES_TABLE, PART_KINDS, PARTS_SQL, PIECES_TABLE
from layers.catalog import Catalog

log = logging.getLogger(__name__)

#: How the stored parts are cut (PARTS_SQL over pieces of ``areas.PIECE_VERTICES`` vertices). A
#: different method makes every older set unusable.
METHOD = 1
_LOCK = "cim.healthcheck_part"   # advisory lock key (hashtext, with the counties) of a scope's refreshes


def sources(indicators: Iterable[Indicator], layers: Catalog) -> set[tuple[str, str]]:
    """(table, kind) of every ``{area_parts:layer}`` / ``{builtup_parts:layer}`` of the indicators whose
    layer reads a feature table of schema ``cim``: the sets a run of them can read."""
    known = {s.id: s for s in layers.public()}
    out = set()
    for ind in indicators:
        for name, arg in placeholders((ind.formula or "") + "\n" + (ind.features or "")):
            spec = known.get(arg or "")
            if name in PART_KINDS and spec is not None and spec.schema_name == "cim" and spec.table_name in TABLES:
                out.add((spec.table_name, PART_KINDS[name]))
    return out


def _inputs(area_set: areas.AreaSet, kind: str) -> list[int]:
    return sorted(int(i) for i in area_set.builtup.get("input_ids", [])) if kind == "builtup" else []


def _stamp(current: dict[str, int], table: str) -> dict[str, int]:
    return {table: current.get(table, 0), "admin_area": current.get("admin_area", 0)}


def usable(cur: psycopg2.extensions.cursor, area_set: areas.AreaSet,
           wanted: set[tuple[str, str]]) -> tuple[dict[tuple[str, str], int], list[dict[str, Any]]]:
    """The stored sets a run over ``area_set`` can read in the current snapshot: (table, kind) → set
    id, and a description of each (id, table, kind, versions, built_at) for the run's record."""
    if not wanted:
        return {}, []
    current = versions.read(cur, sorted({t for t, _ in wanted} | {"admin_area"}))
    cur.execute("SELECT id, source_table, kind, builtup_inputs, versions, built_at FROM cim.healthcheck_part_set "
                " WHERE counties = %s::varchar[] AND srid = %s AND method = %s",
                (sorted(area_set.counties), area_set.srid, METHOD))
    found: dict[tuple[str, str], int] = {}
    described = []
    for set_id, table, kind, inputs, stamp, built_at in cur.fetchall():
        if ((table, kind) in wanted and [int(i) for i in inputs] == _inputs(area_set, kind)
                and (kind == "area" or inputs) and stamp == _stamp(current, table)):
            found[(table, kind)] = int(set_id)
            described.append({"set_id": int(set_id), "table": table, "kind": kind, "versions": stamp,
                              "builtup_inputs": [int(i) for i in inputs], "built_at": built_at.isoformat()})
    return found, sorted(described, key=lambda d: (d["table"], d["kind"]))


def refresh(conn: psycopg2.extensions.connection, counties: list[str], year: int, wanted: set[tuple[str, str]],
            timeout_ms: int = 0) -> dict[str, Any]:
    """Compute the sets ``wanted`` for a run of ``counties`` and ``year`` that are missing or stale (a
    REPEATABLE READ transaction of its own, committed), then delete the sets no run can use any more.
    Returns what was done: ``{seconds, refreshed: [{table, kind, set_id, parts, seconds}], current: n}``.

    Refreshes of one scope (the same counties) take turns on an advisory lock taken before the
    snapshot, so one that waited sees the set the other stored and adds none; refreshes of other
    counties run side by side. They only add sets; deleting the unusable ones is a READ COMMITTED
    statement of its own (:func:`prune`), so concurrent refreshes never conflict over a row."""
    t0 = time.monotonic()
    done: list[dict[str, Any]] = []
    fresh = 0
    counties = sorted(counties)
    if not wanted:
        return {"seconds": 0.0, "refreshed": done, "current": 0}
    key = f"{_LOCK}:{','.join(counties)}"
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
    conn.commit()
    try:
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("SELECT set_config('statement_timeout', %s, true)", (str(timeout_ms),))
            # each piece probes the features once: caching probes by geometry (Memoize) only costs here
            cur.execute("SET LOCAL enable_memoize = off")
            area_set = areas.prepare(cur, counties, list(ADMIN_LEVELS), year)
            current = versions.read(cur, sorted({t for t, _ in wanted} | {"admin_area"}))
            sets, _ = usable(cur, area_set, wanted)
            for table, kind in sorted(wanted):
                inputs = _inputs(area_set, kind)
                if (table, kind) in sets:
                    fresh += 1
                elif kind == "area" or inputs:
                    done.append(_build(cur, area_set, table, kind, inputs, _stamp(current, table)))
            if done:     # a new set's id is not in the statistics yet: analysed now, so the next run plans it
                cur.execute("ANALYZE cim.healthcheck_part_set, cim.healthcheck_part")
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
        conn.commit()
    pruned = prune(conn) if done else 0
    out = {"seconds": round(time.monotonic() - t0, 3), "refreshed": done, "current": fresh, "pruned": pruned}
    if done:
        log.info("healthcheck parts of %s refreshed in %.2f s: %s", ",".join(counties), out["seconds"],
                 ", ".join(f"{d['table']}/{d['kind']} {d['parts']}" for d in done))
    return out


def prune(conn: psycopg2.extensions.connection) -> int:
    """Delete the sets (and their parts) no run can use any more: another method, or data versions
    older than the current ones. READ COMMITTED, committed; returns how many sets went."""
    table_version, admin_version = versions.version_sql("s.source_table"), versions.version_sql("'admin_area'")
    try:
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            cur.execute(
                "WITH gone AS (DELETE FROM cim.healthcheck_part_set s WHERE s.method <> %s "
                f"  OR s.versions <> jsonb_build_object(s.source_table, {table_version}, 'admin_area', {admin_version}) "
                "  RETURNING s.id), "
                "parts AS (DELETE FROM cim.healthcheck_part p USING gone WHERE p.set_id = gone.id) "
                "SELECT count(*) FROM gone", (METHOD,))
            row = cur.fetchone()
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return int(row[0]) if row else 0


def _build(cur: psycopg2.extensions.cursor, area_set: areas.AreaSet, table: str, kind: str, inputs: list[int],
           stamp: dict[str, int]) -> dict[str, Any]:
    """Add the set (counties, table, kind, srid, inputs) computed now and stamped ``stamp``."""
    t0 = time.monotonic()
    counties = sorted(area_set.counties)
    cur.execute("INSERT INTO cim.healthcheck_part_set (counties, source_table, kind, srid, builtup_inputs, method, "
                "versions) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb) RETURNING id",
                (counties, table, kind, area_set.srid, inputs, METHOD, json.dumps(stamp)))
    row = cur.fetchone()
    assert row is not None  # INSERT … RETURNING
    set_id = int(row[0])
    pieces = PIECES_TABLE if kind == "area" else BUILTUP_PIECES_TABLE
    area_set.ensure(cur, {pieces})
    network = "t.network" if TABLES[table].network_scoped else "NULL::varchar(2)"
    relation = (f"(SELECT t.id, t.geom, {network} AS _network FROM cim.{quote_ident(table)} t "
                f"WHERE t.is_current AND t.county_code = ANY(%(counties)s))")
    # stored in (network, feature) order, the order of the index runs read them by
    cur.execute("INSERT INTO cim.healthcheck_part (set_id, feature_id, network, area_id, measure, share, part) "
                "SELECT %(set_id)s, p.id, p._network, p.area_id, p.measure, p.share, CASE WHEN p._cut THEN p.part END "
                f"  FROM {PARTS_SQL.format(relation=relation, pieces=pieces)} p ORDER BY p._network, p.id",
                {"set_id": set_id, "counties": counties, "srid": area_set.srid})
    parts = cur.rowcount
    seconds = round(time.monotonic() - t0, 3)
    cur.execute("UPDATE cim.healthcheck_part_set SET parts = %s, seconds = %s WHERE id = %s", (parts, seconds, set_id))
    return {"table": table, "kind": kind, "set_id": set_id, "parts": parts, "seconds": seconds}
