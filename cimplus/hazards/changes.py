"""What changed in a county since a rule last looked: the incremental part of rescans.

Each rule reads some *scopes* (``building``, ``pipe_segment:RQ`` …: the units a delivery
replaces, ingest/load.py). ``cim.hazard_scan_state`` keeps, per county, rule and scope, the
deliveries whose rows were current when the rule last ran. A rescan compares them with the
deliveries current now:

- no scope of the rule changed → the rule is skipped (its entries stand);
- a scope changed and the rule is *focusable* (the pair rules G01–G04, whose cost is the big
  spatial join) → the rows of the new deliveries are compared with the rows the rule saw, by
  facility key and content digest; the rule then runs only for pairs with a changed row, and only
  entries naming a changed facility can be updated or cleared;
- otherwise (no state yet, rows loaded outside a delivery, most rows changed, or a rule that is
  cheap to run whole) → the rule runs over the whole county.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg2.extensions

from cim.db import quote_ident
from cimplus.hazards.facility import hash_sql, key_sql

#: a scope whose current rows include rows loaded outside any delivery: always "changed"
UNKNOWN = -1
#: above this share of changed rows a focused run costs more than a whole one
FOCUS_MAX_SHARE = 0.3


def split(scope: str) -> tuple[str, str | None]:
    """``pipe_segment:RQ`` → (``pipe_segment``, ``RQ``); ``building`` → (``building``, None)."""
    table, _, net = scope.partition(":")
    return table, (net or None)


def current_deliveries(cur: psycopg2.extensions.cursor, county: str, scope: str) -> list[int]:
    """Deliveries whose rows of ``scope`` are current in the county (sorted; :data:`UNKNOWN`
    when some current rows belong to no delivery)."""
    table, net = split(scope)
    t = f"cim.{quote_ident(table)}"
    net_sql = " AND x.network = %(net)s" if net else ""
    params = {"county": county, "scope": scope, "net": net}
    cur.execute(f"SELECT d.id FROM cim.delivery d WHERE d.county_code = %(county)s AND %(scope)s = ANY(d.layers) "
                f"AND EXISTS (SELECT 1 FROM {t} x WHERE x.delivery_id = d.id AND x.is_current{net_sql}) ORDER BY d.id",
                params)
    ids = [int(r[0]) for r in cur.fetchall()]
    cur.execute(f"SELECT EXISTS (SELECT 1 FROM {t} x WHERE x.delivery_id IS NULL AND x.county_code = %(county)s "
                f"AND x.is_current{net_sql})", params)
    row = cur.fetchone()
    assert row is not None  # SELECT EXISTS returns one row
    if row[0]:
        ids.insert(0, UNKNOWN)
    return ids


def seen(cur: psycopg2.extensions.cursor, county: str, rule_ids: list[str]) -> dict[tuple[str, str], list[int]]:
    """(rule, scope) → deliveries the rule last saw."""
    cur.execute("SELECT rule_id, scope, delivery_ids FROM cim.hazard_scan_state WHERE county_code = %s "
                "AND rule_id = ANY(%s)", (county, rule_ids))
    return {(r[0], r[1]): sorted(int(v) for v in r[2]) for r in cur.fetchall()}


def record(cur: psycopg2.extensions.cursor, county: str, rule_id: str, states: dict[str, list[int]]) -> None:
    """Remember the deliveries a rule saw."""
    for scope, ids in states.items():
        cur.execute("INSERT INTO cim.hazard_scan_state (county_code, rule_id, scope, delivery_ids, scanned_at) "
                    "VALUES (%s, %s, %s, %s, now()) ON CONFLICT (county_code, rule_id, scope) "
                    "DO UPDATE SET delivery_ids = EXCLUDED.delivery_ids, scanned_at = now()",
                    (county, rule_id, scope, ids))


@dataclass
class Diff:
    """Rows of one scope that changed between two sets of deliveries."""

    scope: str
    changed: int = 0      # new rows that differ from what the rule saw (hz_focus)
    removed: int = 0      # keys the rule saw that are gone or changed
    total: int = 0        # current rows of the scope


def diff(cur: psycopg2.extensions.cursor, county: str, scope: str, now: list[int], before: list[int]) -> Diff:
    """Compare the rows of ``now`` with those of ``before`` (same scope) by facility key and
    content digest. Rows of ``now`` that differ go into ``hz_focus``; the keys of every changed
    or removed facility into ``hz_focus_keys``; every current row's key and id into ``hz_rows``
    (to refresh the ids of entries whose facility did not change)."""
    table, net = split(scope)
    t = f"cim.{quote_ident(table)}"
    net_sql = " AND x.network = %(net)s" if net else ""
    params = {"county": county, "net": net, "now": now, "before": before, "scope": scope}
    cur.execute(f"""
        CREATE TEMP TABLE hz_d ON COMMIT DROP AS
        SELECT 'n'::text AS side, x.id, {key_sql(table, 'x')} AS key, {hash_sql(table, 'x')} AS h
        FROM {t} x WHERE x.county_code = %(county)s AND x.delivery_id = ANY(%(now)s) AND x.is_current{net_sql}
        UNION ALL
        SELECT 'o', x.id, {key_sql(table, 'x')}, {hash_sql(table, 'x')}
        FROM {t} x WHERE x.county_code = %(county)s AND x.delivery_id = ANY(%(before)s){net_sql}
    """, params)
    cur.execute("""
        WITH n AS (SELECT * FROM hz_d WHERE side = 'n'), o AS (SELECT * FROM hz_d WHERE side = 'o'),
        changed AS (SELECT n.id, n.key FROM n WHERE NOT EXISTS (SELECT 1 FROM o WHERE o.key = n.key AND o.h = n.h)),
        removed AS (SELECT o.key FROM o WHERE NOT EXISTS (SELECT 1 FROM n WHERE n.key = o.key AND n.h = o.h)),
        f AS (INSERT INTO hz_focus (scope, id) SELECT %(scope)s, id FROM changed RETURNING id),
        k AS (INSERT INTO hz_focus_keys (key) SELECT key FROM changed UNION SELECT key FROM removed RETURNING key)
        SELECT (SELECT count(*) FROM f), (SELECT count(*) FROM removed), (SELECT count(*) FROM n)
    """, params)
    row = cur.fetchone()
    assert row is not None  # a SELECT of scalar subqueries returns one row
    changed, removed, total = (int(v) for v in row)
    cur.execute("INSERT INTO hz_rows (key, id) SELECT key, id FROM hz_d WHERE side = 'n'")
    cur.execute("DROP TABLE hz_d")
    return Diff(scope, changed, removed, total)


DDL = """
CREATE TEMP TABLE hz_focus_keys (key text NOT NULL) ON COMMIT DROP;
CREATE TEMP TABLE hz_rows (key text NOT NULL, id bigint NOT NULL) ON COMMIT DROP;
"""
