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

:func:`refresh` is the maintenance: before a run takes its snapshot, it brings every set the run's
catalogue reads that is missing or stale up to date, in a transaction of its own. A stale set of
the same admin areas is **updated in place**: each part records the row version (``xmin``) of the
feature it was cut from (migration 0130), so the refresh deletes the parts whose row is no longer
current as it was cut (closed by a delivery, deleted, re-activated, renumbered) and cuts only the
current rows the set does not hold; a delivery of one network costs the cutting of that network's
new rows, a change of one row a few index probes. Runs inside older snapshots keep reading the set
as it was (MVCC). A set is built anew, from all current rows of its table, when there is none or
the admin areas changed. Then :func:`prune` deletes the sets no refresh can update any more
(another method, older admin areas). After a delivery the task worker re-runs every county
checked before (docs/healthcheck.md), so the refresh usually happens there, in the background, and
a user's run finds the sets current.
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
_LOCK = "cim.healthcheck_part:"   # advisory lock key (hashtext, with the counties) of a scope's refreshes
WORK_MEM = "256MB"                     # a set's parts joined with the table's rows, and sorted, stay in memory
DIFF_TABLE = "pg_temp.hc_diff"         # an update in place: the features gone from the set and the rows to cut
CHANGED_TABLE = "pg_temp.hc_changed"   # the current rows an update in place cuts


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


def _scope_sets(cur: psycopg2.extensions.cursor, area_set: areas.AreaSet) -> list[tuple]:
    """The stored sets of the scope of ``area_set`` (its counties, metric CRS, :data:`METHOD` and, for
    kind ``builtup``, its built-up inputs), oldest first: (id, table, kind, inputs, stamp, built_at)."""
    cur.execute("SELECT id, source_table, kind, builtup_inputs, versions, built_at FROM cim.healthcheck_part_set "
                " WHERE counties = %s::varchar[] AND srid = %s AND method = %s ORDER BY id",
                (sorted(area_set.counties), area_set.srid, METHOD))
    return [(int(set_id), table, kind, [int(i) for i in inputs], stamp, built_at)
            for set_id, table, kind, inputs, stamp, built_at in cur.fetchall()
            if inputs == _inputs(area_set, kind) and (kind == "area" or inputs)]


def usable(cur: psycopg2.extensions.cursor, area_set: areas.AreaSet,
           wanted: set[tuple[str, str]]) -> tuple[dict[tuple[str, str], int], list[dict[str, Any]]]:
    """The stored sets a run over ``area_set`` can read in the current snapshot: (table, kind) → set
    id, and a description of each (id, table, kind, versions, built_at) for the run's record."""
    if not wanted:
        return {}, []
    current = versions.read(cur, sorted({t for t, _ in wanted} | {"admin_area"}))
    found: dict[tuple[str, str], int] = {}
    described = []
    for set_id, table, kind, inputs, stamp, built_at in _scope_sets(cur, area_set):
        if (table, kind) in wanted and stamp == _stamp(current, table):
            found[(table, kind)] = set_id
            described.append({"set_id": set_id, "table": table, "kind": kind, "versions": stamp,
                              "builtup_inputs": inputs, "built_at": built_at.isoformat()})
    return found, sorted(described, key=lambda d: (d["table"], d["kind"]))


def lock_key(counties: Iterable[str]) -> str:
    """The advisory lock key (``hashtext`` of it) a scope's refreshes take turns on; :func:`prune`
    builds the same text from a set's sorted counties."""
    return _LOCK + ",".join(sorted(counties))


def refresh(conn: psycopg2.extensions.connection, counties: list[str], year: int, wanted: set[tuple[str, str]],
            timeout_ms: int = 0) -> dict[str, Any]:
    """Bring the sets ``wanted`` for a run of ``counties`` and ``year`` that are missing or stale up
    to date (a REPEATABLE READ transaction of its own, committed): a stale set of the current admin
    areas in place, else a new set; then delete the sets no refresh can update any more. Returns
    what was done: ``{seconds, refreshed: [{table, kind, set_id, mode, parts, changed, dropped,
    seconds}], current: n, pruned: n}`` (``changed``: the rows an update cut; None for a build, which
    cuts every current row).

    Refreshes of one scope (the same counties) take turns on an advisory lock taken before the
    snapshot, so one that waited sees the set the other stored or updated and changes nothing;
    refreshes of other counties run side by side and never touch each other's sets. Deleting the
    sets no refresh can update is a READ COMMITTED statement of its own (:func:`prune`) that skips
    the sets of a scope being refreshed."""
    t0 = time.monotonic()
    done: list[dict[str, Any]] = []
    fresh = 0
    counties = sorted(counties)
    if not wanted:
        return {"seconds": 0.0, "refreshed": done, "current": 0}
    key = lock_key(counties)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
    conn.commit()
    try:
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("SELECT set_config('statement_timeout', %s, true), set_config('work_mem', %s, true)",
                        (str(timeout_ms), WORK_MEM))
            # each piece probes the features once: caching probes by geometry (Memoize) only costs here
            cur.execute("SET LOCAL enable_memoize = off")
            area_set = areas.prepare(cur, counties, list(ADMIN_LEVELS), year)
            current = versions.read(cur, sorted({t for t, _ in wanted} | {"admin_area"}))
            # (table, kind) → the newest stored set cut from the current admin areas, and its stamp
            stored = {(table, kind): (set_id, stamp) for set_id, table, kind, _, stamp, _ in _scope_sets(cur, area_set)
                      if stamp.get("admin_area") == current.get("admin_area", 0)}
            for table, kind in sorted(wanted):
                inputs = _inputs(area_set, kind)
                set_id, stamp = stored.get((table, kind), (None, None))
                if stamp == _stamp(current, table):
                    fresh += 1
                elif set_id is not None:
                    done.append(_update(cur, area_set, set_id, table, kind, _stamp(current, table)))
                elif kind == "area" or inputs:
                    done.append(_build(cur, area_set, table, kind, inputs, _stamp(current, table)))
            if any(d["mode"] == "build" for d in done):   # a new set's id is not in the statistics yet:
                # analysed now, so the next run plans it
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
                 ", ".join(f"{d['table']}/{d['kind']} {d['mode']} {d['parts']} parts" for d in done))
    return out


def prune(conn: psycopg2.extensions.connection) -> int:
    """Delete the sets (and their parts) no refresh can update any more: another method, or cut from
    admin areas older than the current ones; a set whose table changed since stays, the base of its
    scope's next refresh. A scope being refreshed (its advisory lock held) is skipped. READ
    COMMITTED, committed; returns how many sets went."""
    admin_version = versions.version_sql("'admin_area'")
    try:
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            cur.execute(
                "WITH gone AS (DELETE FROM cim.healthcheck_part_set s "
                f" WHERE (s.method <> %s OR (s.versions -> 'admin_area') <> to_jsonb({admin_version})) "
                "   AND pg_try_advisory_xact_lock(hashtext(%s || array_to_string(s.counties, ','))) "
                "  RETURNING s.id), "
                "parts AS (DELETE FROM cim.healthcheck_part p USING gone WHERE p.set_id = gone.id) "
                "SELECT count(*) FROM gone", (METHOD, _LOCK))
            row = cur.fetchone()
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return int(row[0]) if row else 0


def _build(cur: psycopg2.extensions.cursor, area_set: areas.AreaSet, table: str, kind: str, inputs: list[int],
           stamp: dict[str, int]) -> dict[str, Any]:
    """Add the set (counties, table, kind, srid, inputs) computed now from every current row of the
    table and stamped ``stamp``."""
    t0 = time.monotonic()
    counties = sorted(area_set.counties)
    cur.execute("INSERT INTO cim.healthcheck_part_set (counties, source_table, kind, srid, builtup_inputs, method, "
                "versions) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb) RETURNING id",
                (counties, table, kind, area_set.srid, inputs, METHOD, json.dumps(stamp)))
    row = cur.fetchone()
    assert row is not None  # INSERT … RETURNING
    set_id = int(row[0])
    relation = (f"(SELECT t.id, t.geom, {_network(table)} AS _network, t.xmin AS _xmin FROM cim.{quote_ident(table)} t "
                f"WHERE t.is_current AND t.county_code = ANY(%(counties)s))")
    parts = _insert(cur, area_set, set_id, kind, relation)
    seconds = round(time.monotonic() - t0, 3)
    cur.execute("UPDATE cim.healthcheck_part_set SET parts = %s, seconds = %s WHERE id = %s", (parts, seconds, set_id))
    return {"table": table, "kind": kind, "set_id": set_id, "mode": "build", "parts": parts, "changed": None,
            "dropped": 0, "seconds": seconds}


def _update(cur: psycopg2.extensions.cursor, area_set: areas.AreaSet, set_id: int, table: str, kind: str,
            stamp: dict[str, int]) -> dict[str, Any]:
    """Bring the stored set ``set_id`` (cut from the current admin areas) up to the current rows of
    its table and stamp it ``stamp``: delete the parts whose row is no longer current as it was cut
    (the row's xmin differs, or it is closed or gone), then cut the current rows it does not hold."""
    t0 = time.monotonic()
    params = {"set_id": set_id, "counties": sorted(area_set.counties)}
    source = f"cim.{quote_ident(table)}"
    # one pass over the set's parts and the current rows: a part whose (feature, row version) is not a
    # current row is gone; a current row no part holds is to cut
    cur.execute(f"DROP TABLE IF EXISTS {DIFF_TABLE}, {CHANGED_TABLE}")
    cur.execute(f"CREATE TEMP TABLE {DIFF_TABLE.split('.')[1]} ON COMMIT DROP AS "
                "SELECT DISTINCT t.id, m.feature_id AS gone, m.network AS gone_network "
                "  FROM (SELECT feature_id, feature_xmin, network FROM cim.healthcheck_part WHERE set_id = %(set_id)s) m "
                f" FULL JOIN (SELECT t.id, t.xmin AS _xmin FROM {source} t "
                "              WHERE t.is_current AND t.county_code = ANY(%(counties)s)) t "
                "   ON t.id = m.feature_id AND t._xmin = m.feature_xmin "
                " WHERE t.id IS NULL OR m.feature_id IS NULL", params)
    same_network = "m.network = d.gone_network" if TABLES[table].network_scoped else "m.network IS NULL"
    cur.execute(f"DELETE FROM cim.healthcheck_part m USING {DIFF_TABLE} d "
                f" WHERE m.set_id = %(set_id)s AND {same_network} AND m.feature_id = d.gone", params)
    dropped = cur.rowcount
    cur.execute(f"CREATE TEMP TABLE {CHANGED_TABLE.split('.')[1]} ON COMMIT DROP AS "
                f"SELECT t.id, t.geom, {_network(table)} AS _network, t.xmin AS _xmin "
                f"  FROM {DIFF_TABLE} d JOIN {source} t ON t.id = d.id", params)
    changed = cur.rowcount
    added = 0
    if changed:
        cur.execute(f"CREATE INDEX ON {CHANGED_TABLE} USING gist (geom)")
        cur.execute(f"ANALYZE {CHANGED_TABLE}")
        added = _insert(cur, area_set, set_id, kind, CHANGED_TABLE)
    seconds = round(time.monotonic() - t0, 3)
    cur.execute("UPDATE cim.healthcheck_part_set SET versions = %s::jsonb, parts = parts - %s + %s, seconds = %s, "
                "built_at = now() WHERE id = %s RETURNING parts", (json.dumps(stamp), dropped, added, seconds, set_id))
    row = cur.fetchone()
    assert row is not None  # UPDATE … RETURNING of the set the refresh found
    return {"table": table, "kind": kind, "set_id": set_id, "mode": "update", "parts": int(row[0]),
            "changed": changed, "dropped": dropped, "seconds": seconds}


def _network(table: str) -> str:
    return "t.network" if TABLES[table].network_scoped else "NULL::varchar(2)"


def _insert(cur: psycopg2.extensions.cursor, area_set: areas.AreaSet, set_id: int, kind: str, relation: str) -> int:
    """Cut the rows of ``relation`` (id, geom, _network, _xmin) by the areas (or their built-up parts)
    and add the parts to set ``set_id``; how many were added."""
    pieces = PIECES_TABLE if kind == "area" else BUILTUP_PIECES_TABLE
    area_set.ensure(cur, {pieces})
    # stored in (network, feature) order, the order of the index runs read them by
    cur.execute("INSERT INTO cim.healthcheck_part (set_id, feature_id, network, area_id, measure, share, part, "
                "feature_xmin) "
                "SELECT %(set_id)s, p.id, p._network, p.area_id, p.measure, p.share, CASE WHEN p._cut THEN p.part END, "
                f"       p._xmin FROM {PARTS_SQL.format(relation=relation, pieces=pieces)} p ORDER BY p._network, p.id",
                {"set_id": set_id, "counties": sorted(area_set.counties), "srid": area_set.srid})
    return int(cur.rowcount)
