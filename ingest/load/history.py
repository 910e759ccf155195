"""The history of deliveries: rejected ones recorded, an earlier one restored, the list.

Rows of earlier deliveries stay with ``is_current = false``; :func:`restore` makes one delivery
current again for its scopes in one transaction (audited, data versions bumped by the statement
triggers). A restore is its own operation, so it authorises its principal itself.
"""

from __future__ import annotations

import psycopg2.extensions

from cim import auth
from cim.db import fetch_dicts, quote_ident
from cim.errors import Conflict, NotFound
from ingest.load.scope import NETWORK_SCOPED, lock_county, repoint, retire, settle, split_scope
from ingest.load.transaction import LoadResult, joined, json_text
from ingest.model import Report


def record_rejected(conn: psycopg2.extensions.connection, report: Report, *, principal: auth.Principal,
                    county: str | None = None, client_addr: str | None = None) -> int:
    """Keep a rejected delivery in the history (state ``rejected``, no feature rows); audited."""
    d = report.delivery
    county = county or d.county_code or "000000"
    errors = sum(f.severity.value == "error" for f in report.findings)
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO cim.delivery (county_code, file_name, sha256, size_bytes, profile, layers, source_crs, "
            "encoding, counts, state, submitted_by, finished_at, message) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, 'rejected', %s, now(), %s) RETURNING id",
            (county, d.file_name, d.sha256, d.size_bytes, joined([b.profile_id for b in d.batches]),
             sorted({b.target for b in d.batches}), joined([b.source_crs for b in d.batches]),
             joined([b.encoding for b in d.batches]), json_text(d.counts()), principal.name,
             f"{errors} errors / 个错误"))
        did = cur.fetchone()[0]
        auth.audit(cur, principal, "ingest.reject", target=f"delivery:{did}", county=county,
                   client_addr=client_addr, detail={"file": d.file_name, "sha256": d.sha256, "errors": errors})
    conn.commit()
    return did


def restore(conn: psycopg2.extensions.connection, delivery_id: int, *, principal: auth.Principal,
            client_addr: str | None = None) -> LoadResult:
    """Make an earlier delivery current again for its scopes, in one transaction (audited)."""
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL statement_timeout = 0")
            rows = fetch_dicts(cur, "SELECT id, county_code, state, layers, counts FROM cim.delivery WHERE id = %s",
                               (delivery_id,))
            if not rows:
                raise NotFound(f"没有成果 {delivery_id}", f"no delivery {delivery_id}")
            d = rows[0]
            auth.authorize(principal, auth.Action.write, county=d["county_code"])
            if d["state"] not in ("current", "superseded"):
                raise Conflict(f"成果 {delivery_id} 状态为 {d['state']}，无法恢复",
                               f"delivery {delivery_id} is {d['state']} and cannot be restored")
            lock_county(cur, d["county_code"])
            touched: set[int] = set()
            for scope in d["layers"]:
                target, network = split_scope(scope)
                touched.update(retire(cur, target, d["county_code"], network, delivery_id))
                net_sql, params = ("AND network = %s", (delivery_id, network)) if network else ("", (delivery_id,))
                cur.execute(f"UPDATE cim.{quote_ident(target)} SET is_current = true "
                            f"WHERE delivery_id = %s AND NOT is_current {net_sql}", params)
            cur.execute("UPDATE cim.delivery SET state = 'current' WHERE id = %s", (delivery_id,))
            pipe_nets = sorted({n for t, n in map(split_scope, d["layers"]) if n and t in NETWORK_SCOPED})
            if pipe_nets:
                repoint(cur, d["county_code"], pipe_nets, include=delivery_id)
            superseded = settle(cur, touched - {delivery_id})
            auth.audit(cur, principal, "ingest.restore", target=f"delivery:{delivery_id}",
                       county=d["county_code"], client_addr=client_addr,
                       detail={"scopes": d["layers"], "superseded": superseded})
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return LoadResult(delivery_id, "current", dict(d["counts"] or {}), list(d["layers"]), superseded, None,
                      f"已恢复成果 {delivery_id}", f"restored delivery {delivery_id}")


def list_deliveries(cur: psycopg2.extensions.cursor, county: str | None = None, limit: int = 100) -> list[dict]:
    """Deliveries, newest first (optionally of one county)."""
    return fetch_dicts(
        cur, "SELECT id, county_code, file_name, sha256, state, layers, counts, profile, source_crs, encoding, "
             "submitted_by, submitted_at, finished_at, message FROM cim.delivery "
             "WHERE %(county)s::text IS NULL OR county_code = %(county)s ORDER BY id DESC LIMIT %(limit)s",
        {"county": county, "limit": limit})
