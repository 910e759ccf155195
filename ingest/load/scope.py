"""Layer scopes and the current rows in them: what a delivery replaces, and what a restore brings back.

A delivery replaces, for its county, every *scope* it contains. The scope of a pipeline batch is
``(county, target table, network)`` (``pipe_point:PS``, ``pipe_segment:RQ``): a gas delivery
never retires the water network. Every other target is scoped by ``(county, target table)``
(``building``, ``green_space`` …). The scopes of a delivery are kept in ``cim.delivery.layers``.
Used inside the load transaction (:mod:`ingest.load.transaction`) and by a restore
(:mod:`ingest.load.history`), both under the county's advisory lock.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import psycopg2.extensions

from cim.db import quote_ident
from cim.errors import InvalidInput
from cim.schema import FEATURE_TABLES, TABLES
from ingest.keys import point_ids
from ingest.load import rows
from ingest.model import Delivery, LayerBatch

NETWORK_SCOPED = frozenset(t.name for t in TABLES.values() if t.network_scoped)


def _networks(batch: LayerBatch) -> list[str]:
    if "network" in batch.frame.columns:
        vals = batch.frame["network"].dropna().unique().tolist()
        if vals:
            return sorted(str(v) for v in vals)
    if batch.network:
        return [batch.network]
    raise InvalidInput(f"管线图层 {batch.source_layer} 未给出管线类别（network）",
                       f"pipeline layer {batch.source_layer} has no network code")


def scopes(delivery: Delivery) -> list[str]:
    """Every scope the delivery replaces, sorted (e.g. ``building``, ``pipe_point:JS``)."""
    out: set[str] = set()
    for b in delivery.batches:
        if b.target in NETWORK_SCOPED:
            out.update(f"{b.target}:{n}" for n in _networks(b))
        else:
            out.add(b.target)
    return sorted(out)


def split_scope(scope: str) -> tuple[str, str | None]:
    """``pipe_point:JS`` → (``pipe_point``, ``JS``); ``building`` → (``building``, None)."""
    target, _, network = scope.partition(":")
    if target not in TABLES:
        raise InvalidInput(f"未知的图层范围 {scope}", f"unknown layer scope {scope}")
    return target, network or None


def lock_county(cur: psycopg2.extensions.cursor, county: str) -> None:
    """Serialise loads and restores of one county (transaction-level advisory lock)."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtext('cim.ingest'), hashtext(%s))", (county,))


def retire(cur, target: str, county: str, network: str | None, keep: int) -> list[int]:
    """Mark the current rows of one scope of ``county`` not current, except those of delivery
    ``keep``; return the deliveries they belonged to.

    The rows are found through the county's current deliveries (the ``delivery_id`` indexes)
    and, for rows no delivery wrote, the ``*_undelivered_idx`` indexes (migration 0120), so a
    load reads no other county's rows."""
    cur.execute("SELECT id FROM cim.delivery WHERE county_code = %s AND state = 'current' AND id <> %s",
                (county, keep))
    holders = [r[0] for r in cur.fetchall()]
    table = f"cim.{quote_ident(target)}"
    net_sql, net = ("AND network = %s", (network,)) if network else ("", ())
    cur.execute(f"WITH u AS (UPDATE {table} SET is_current = false WHERE is_current AND county_code = %s "
                f"AND (delivery_id = ANY(%s) OR delivery_id IS NULL) {net_sql} RETURNING delivery_id) "
                f"SELECT DISTINCT delivery_id FROM u WHERE delivery_id IS NOT NULL", (county, holders, *net))
    return [r[0] for r in cur.fetchall()]


def repoint(cur, county: str, networks: list[str], *, exclude: int | None = None,
             include: int | None = None) -> int:
    """Make the county's current segments of ``networks`` refer to the current point of each of
    their point numbers (the first by id when a number repeats), where they refer to another.

    Needed when the points of a network change without its segments: a point-only delivery, or
    a restore. Segments whose point numbers have no current point keep their reference (the
    point of their own survey). Only segments of the current deliveries holding those scopes
    are read (index on ``delivery_id``; ``exclude`` a delivery whose segments are resolved
    already, ``include`` one being restored); the new ids are worked out in pandas and written
    by primary key, so no plan depends on the statistics of rows written in this transaction.
    Returns the number of segments changed.
    """
    scopes_ = [f"pipe_segment:{n}" for n in networks]
    cur.execute("SELECT id FROM cim.delivery WHERE county_code = %s AND (state = 'current' OR id = %s) "
                "AND id IS DISTINCT FROM %s AND layers && %s::text[]", (county, include, exclude, scopes_))
    holders = [r[0] for r in cur.fetchall()]
    if not holders:
        return 0
    cur.execute("SELECT id, network, start_exp_no, end_exp_no, start_point_id, end_point_id FROM cim.pipe_segment "
                "WHERE delivery_id = ANY(%s) AND is_current AND network = ANY(%s)", (holders, networks))
    seg = pd.DataFrame(cur.fetchall(), columns=["id", "network", "start_exp_no", "end_exp_no", "sp", "ep"])
    if seg.empty:
        return 0
    pts = rows.current_points(cur, county, networks)
    old, new = {}, {}
    for end in ("start", "end"):
        old[end] = seg[f"{end[0]}p"].fillna(-1).to_numpy(dtype=np.int64)      # -1: no reference
        found = point_ids(pts, seg["network"].to_numpy(dtype=object), seg[f"{end}_exp_no"].to_numpy(dtype=object))
        new[end] = np.where(found >= 0, found, old[end])
    changed = np.flatnonzero((new["start"] != old["start"]) | (new["end"] != old["end"]))
    if not len(changed):
        return 0
    refs = [[int(v) if v >= 0 else None for v in new[end][changed]] for end in ("start", "end")]
    cur.execute("UPDATE cim.pipe_segment s SET start_point_id = v.sp, end_point_id = v.ep "
                "FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS v(id, sp, ep) WHERE s.id = v.id",
                ([int(i) for i in seg["id"].to_numpy()[changed]], *refs))
    return len(changed)


def settle(cur, delivery_ids: set[int]) -> list[int]:
    """Deliveries among ``delivery_ids`` left without current rows become ``superseded``."""
    if not delivery_ids:
        return []
    alive = " OR ".join(f"EXISTS (SELECT 1 FROM cim.{quote_ident(t)} x WHERE x.delivery_id = d.id AND x.is_current)"
                        for t in FEATURE_TABLES)
    cur.execute(f"UPDATE cim.delivery d SET state = 'superseded' WHERE d.id = ANY(%s) AND d.state = 'current' "
                f"AND NOT ({alive}) RETURNING d.id", (sorted(delivery_ids),))
    return sorted(r[0] for r in cur.fetchall())
