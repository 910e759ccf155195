"""Scans: run the automatic rules over a county and bring the ledger in line with what they find.

One scan is one transaction (serialised per county by an advisory lock):

1. every selected rule writes its findings into ``hz_find`` (set-based SQL, :mod:`detect`);
2. findings get their rule key (rule + sorted facility keys), duplicates go, and the markers
   their street and community from ``cim.admin_area``;
3. each finding is matched with the newest entry of its rule key and classified
   (:data:`OUTCOMES`); entries of the scanned rules that no finding matches have their
   condition cleared;
4. the ledger is written with set-based statements, each change with its event row, and the
   scan is recorded. A dry run stops after step 3 and rolls back: it writes nothing.

Idempotence: an open entry with the same rule and facilities is updated (evidence, geometry,
facility ids refreshed; never a second entry); an entry whose condition is gone is marked 条件已消除
(``condition_cleared``) for verification, never closed; a dismissed (不成立) entry stays dismissed
unless the new evidence differs materially (rules.yaml ``material``), and then a new entry
linked to it is made; a closed (已销号) entry whose condition comes back (it had been seen cleared,
or the evidence differs materially) gets a new linked entry.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg2.extensions

from cim.errors import InvalidInput, NotFound
from cimplus.hazards import changes, config
from cimplus.hazards.detect import FIND_COLUMNS, FIND_DDL, Ctx, load_methods
from cimplus.hazards.facility import county_frame

log = logging.getLogger(__name__)

#: how a finding relates to the ledger
OUTCOMES = ("new", "updated", "unchanged", "cleared")
_LOCK = 4490_0012   # advisory lock class of scans (second key: the county)


@dataclass
class RuleCounts:
    """What a scan did for one rule."""

    mode: str = "full"          # full | focus | skip
    findings: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    cleared: int = 0
    recurred: int = 0           # of `new`: linked to a closed or dismissed entry
    seconds: float = 0.0


@dataclass
class ScanReport:
    """A scan's result, per rule."""

    county: str
    dry_run: bool
    incremental: bool
    scan_id: int | None = None
    seconds: float = 0.0
    frame: str = ""
    rules: dict[str, RuleCounts] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)   # seconds: plan, rules, findings, reconcile, write

    def totals(self) -> dict[str, int]:
        """Sums over the rules."""
        return {k: sum(getattr(r, k) for r in self.rules.values()) for k in ("findings", *OUTCOMES, "recurred")}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (CLI ``--json``, task results)."""
        out = asdict(self)
        out["totals"] = self.totals()
        return out


def select_rules(rule_ids: list[str] | None, ruleset: config.RuleSet | None = None) -> list[config.Rule]:
    """The enabled rules, or the named ones (unknown or disabled ids are an input error)."""
    ruleset = ruleset or config.rules()
    if not rule_ids:
        return ruleset.enabled()
    out = []
    for rid in rule_ids:
        rule = ruleset.rules.get(rid.strip().upper())
        if rule is None or not rule.enabled:
            raise InvalidInput(f"没有启用的隐患规则 {rid}", f"no enabled hazard rule {rid}",
                               rules=[r.id for r in ruleset.enabled()])
        out.append(rule)
    return out


def counties(cur: psycopg2.extensions.cursor) -> list[str]:
    """Counties with current data (deliveries or rows)."""
    cur.execute("SELECT DISTINCT county_code FROM cim.delivery WHERE state = 'current' "
                "UNION SELECT DISTINCT county_code FROM cim.pipe_segment WHERE is_current "
                "UNION SELECT DISTINCT county_code FROM cim.pipe_point WHERE is_current "
                "UNION SELECT DISTINCT county_code FROM cim.building WHERE is_current ORDER BY 1")
    return [r[0] for r in cur.fetchall()]


def scan(conn: psycopg2.extensions.connection, county: str, *, rule_ids: list[str] | None = None,
         dry_run: bool = False, incremental: bool = False, delivery_id: int | None = None, actor: str = "system",
         timezone: str = "Asia/Shanghai", timeout_s: int = 900, ruleset: config.RuleSet | None = None,
         connect: Callable[[], psycopg2.extensions.connection] | None = None, workers: int = 1) -> ScanReport:
    """Scan one county (see the module docstring); ``incremental`` evaluates only what changed
    since each rule last ran (:mod:`changes`). Commits unless ``dry_run``.

    With ``connect`` and ``workers`` > 1, rules run whole are spread over that many database
    connections (rules sharing a candidate table stay together, :func:`partition`); the findings
    of the other connections are copied into this one's before they are reconciled."""
    if not (county.isdigit() and len(county) == 6):
        raise InvalidInput(f"县级行政区代码须为 6 位数字：{county}", f"a county code has 6 digits: {county}")
    ruleset = ruleset or config.rules()
    rules = select_rules(rule_ids, ruleset)
    methods = load_methods()
    started = time.monotonic()
    report = ScanReport(county, dry_run, incremental)
    if conn.autocommit:
        conn.autocommit = False
    else:
        conn.rollback()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('statement_timeout', %s, true)", (str(int(timeout_s) * 1000),))
            frame = county_frame(cur, county)
            if frame is None:
                raise NotFound(f"行政区 {county} 没有现势数据", f"county {county} has no current data")
        if not dry_run:
            conn.commit()            # the frame definition, for every later scan
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('statement_timeout', %s, true)", (str(int(timeout_s) * 1000),))
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK, int(county)))
            cur.execute("SELECT extract(year FROM now() AT TIME ZONE %s)::int", (timezone,))
            row = cur.fetchone()
            assert row is not None  # a SELECT without FROM returns one row
            year = int(row[0])
            cur.execute(FIND_DDL + changes.DDL)
            ctx = Ctx(county, frame, year, ruleset)
            report.frame = f"EPSG:{frame.srid} {frame.proj}" if frame.srid < 600000 else frame.proj
            clock = time.monotonic()
            report.phases["frame"] = round(clock - started, 3)
            plan = _plan(cur, ctx, rules, methods, incremental)
            clock = _lap(report, "plan", clock)
            for rule in rules:
                report.rules.setdefault(rule.id, RuleCounts()).mode = plan[rule.id]["mode"]
            run = [r for r in rules if plan[r.id]["mode"] != "skip"]
            whole = [r for r in run if plan[r.id]["mode"] == "full"]
            focus = [r for r in run if plan[r.id]["mode"] == "focus"]
            n = workers if connect is not None and not frame.new else 1
            groups = partition(whole, methods, n)
            shards = len(groups) if len(groups) > 1 and any(methods[r.method].shardable for r in whole) else 0
            with ThreadPoolExecutor(max(1, len(groups) - 1), thread_name_prefix="hz-scan") as pool:
                # without ``connect`` there is one group (n is 1), so nothing runs elsewhere
                remote = [pool.submit(_run_elsewhere, connect, ctx, g, methods, timeout_s,
                                      (k, shards) if shards else None)
                          for k, g in enumerate(groups) if k > 0 and connect is not None]
                here = Ctx(county, frame, year, ruleset, ctx.clearances, ctx.aging, shard=(0, shards)) if shards else ctx
                _run_here(cur, here, groups[0], methods, report)
                _run_here(cur, ctx, focus, methods, report)
                for fut in remote:
                    data, seconds = fut.result()
                    cur.copy_expert(f"COPY hz_find ({', '.join(FIND_COLUMNS)}) FROM STDIN", data)
                    for rule_id, sec in seconds.items():
                        report.rules[rule_id].seconds = max(report.rules[rule_id].seconds, sec)
            clock = _lap(report, "rules", clock)
            if run:
                _finish_findings(cur, county)
                clock = _lap(report, "findings", clock)
                _reconcile(cur, ctx, run, plan, report, actor=actor, dry_run=dry_run)
                clock = _lap(report, "reconcile", clock)
            if not dry_run:
                for rule in run:
                    changes.record(cur, county, rule.id, plan[rule.id]["now"])
                report.scan_id = _record_scan(cur, report, rules, actor, delivery_id)
        if dry_run:
            conn.rollback()
        else:
            conn.commit()
        _lap(report, "commit", clock)
    except BaseException:
        conn.rollback()
        raise
    report.seconds = round(time.monotonic() - started, 3)
    log.info("hazard scan %s: %s", county, report.totals())
    return report


def _lap(report: ScanReport, phase: str, since: float) -> float:
    now = time.monotonic()
    report.phases[phase] = round(now - since, 3)
    return now


def partition(rules: list[config.Rule], methods: dict, workers: int) -> list[list[config.Rule]]:
    """Spread whole-county rules over ``workers`` connections. Shardable rules (the gas pair
    rules) go to every connection, each evaluating its share of the gas segments; the other rules
    form units (rules sharing a candidate table stay together) that go heaviest first to the
    lightest connection. The first group runs on the scan's own connection."""
    split = [r for r in rules if methods[r.method].shardable]
    units: dict[str, list[config.Rule]] = {}
    for r in rules:
        if not methods[r.method].shardable:
            units.setdefault(methods[r.method].shares or f"rule:{r.id}", []).append(r)
    count = max(1, min(workers, len(units) + (workers if split else 0)))
    bins: list[list[config.Rule]] = [list(split) for _ in range(count)]
    each = sum(methods[r.method].weight for r in split) / count
    load = [each] * count
    for unit in sorted(units.values(), key=lambda u: -sum(methods[r.method].weight for r in u)):
        i = load.index(min(load))
        bins[i].extend(unit)
        load[i] += sum(methods[r.method].weight for r in unit)
    return bins


def _run_here(cur: psycopg2.extensions.cursor, ctx: Ctx, rules: list[config.Rule], methods: dict,
              report: ScanReport) -> None:
    for rule in rules:
        t0 = time.monotonic()
        methods[rule.method].run(cur, ctx, rule)
        report.rules[rule.id].seconds = round(time.monotonic() - t0, 3)


def _run_elsewhere(connect: Callable[[], psycopg2.extensions.connection], ctx: Ctx, rules: list[config.Rule],
                   methods: dict, timeout_s: int, shard: tuple[int, int] | None) -> tuple[io.StringIO, dict[str, float]]:
    """Run whole-county rules on another connection; returns their findings (COPY text) and
    seconds per rule. Nothing is written there: its temporary tables go with its rollback."""
    conn = connect()
    try:
        conn.autocommit = False
        seconds = {}
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('statement_timeout', %s, true)", (str(int(timeout_s) * 1000),))
            cur.execute(FIND_DDL + changes.DDL)
            mine = Ctx(ctx.county, ctx.frame, ctx.year, ctx.rules, ctx.clearances, ctx.aging, shard=shard)
            for rule in rules:
                t0 = time.monotonic()
                methods[rule.method].run(cur, mine, rule)
                seconds[rule.id] = round(time.monotonic() - t0, 3)
            data = io.StringIO()
            cur.copy_expert(f"COPY hz_find ({', '.join(FIND_COLUMNS)}) TO STDOUT", data)
            data.seek(0)
        conn.rollback()
        return data, seconds
    finally:
        conn.close()


def _plan(cur: psycopg2.extensions.cursor, ctx: Ctx, rules: list[config.Rule], methods: dict,
          incremental: bool) -> dict[str, dict[str, Any]]:
    """Per rule: mode (full / focus / skip) and the deliveries now current in its scopes."""
    scopes = {r.id: methods[r.method].inputs(r) for r in rules}
    now = {s: changes.current_deliveries(cur, ctx.county, s) for s in {s for v in scopes.values() for s in v}}
    plan: dict[str, dict[str, Any]] = {}
    last = changes.seen(cur, ctx.county, [r.id for r in rules]) if incremental else {}
    diffs: dict[tuple[str, tuple[int, ...]], changes.Diff] = {}
    for rule in rules:
        states = {s: now[s] for s in scopes[rule.id]}
        entry: dict[str, Any] = {"mode": "full", "now": states}
        plan[rule.id] = entry
        if not incremental:
            continue
        before = {s: last.get((rule.id, s)) for s in states}
        moved = [s for s in states if before[s] != states[s] or changes.UNKNOWN in states[s]]
        if not moved:
            entry["mode"] = "skip"
            continue
        if not methods[rule.method].focusable or any(before[s] is None or changes.UNKNOWN in states[s] for s in moved):
            continue
        focus = set()
        for s in moved:
            key = (s, tuple(before[s] or ()))
            if key not in diffs:
                diffs[key] = changes.diff(cur, ctx.county, s, states[s], before[s] or [])
            d = diffs[key]
            if d.total and d.changed > changes.FOCUS_MAX_SHARE * d.total:
                break
            focus.add(s)
        else:
            entry["mode"] = "focus"
            ctx.focus[rule.id] = focus
    if diffs:
        cur.execute("CREATE INDEX ON hz_rows (key); ANALYZE hz_focus; ANALYZE hz_rows")
    return plan


def _finish_findings(cur: psycopg2.extensions.cursor, county: str) -> None:
    """Rule keys, duplicates removed (a pair found from both sides), admin codes of the markers."""
    cur.execute("UPDATE hz_find SET keys = ARRAY(SELECT DISTINCT unnest(keys) ORDER BY 1)")
    cur.execute("UPDATE hz_find SET rule_key = rule_id || '|' || array_to_string(keys, '|')")
    cur.execute("DELETE FROM hz_find a USING hz_find b WHERE a.rule_key = b.rule_key AND a.ctid > b.ctid")
    cur.execute("CREATE INDEX ON hz_find (rule_key); ANALYZE hz_find")
    cur.execute("""
        UPDATE hz_find f SET community_code = a.code
        FROM cim.admin_area a
        WHERE f.community_code IS NULL AND a.county_code = %(county)s AND a.is_current AND a.level = 'community'
          AND a.geom && f.marker AND ST_Intersects(a.geom, f.marker)
    """, {"county": county})
    cur.execute("""
        UPDATE hz_find f SET street_code = coalesce(
            (SELECT c.parent_code FROM cim.admin_area c WHERE c.code = f.community_code AND c.is_current
               AND c.level = 'community' LIMIT 1),
            (SELECT a.code FROM cim.admin_area a WHERE a.county_code = %(county)s AND a.is_current AND a.level = 'street'
               AND a.geom && f.marker AND ST_Intersects(a.geom, f.marker) LIMIT 1))
    """, {"county": county})


def _reconcile(cur: psycopg2.extensions.cursor, ctx: Ctx, rules: list[config.Rule], plan: dict[str, dict[str, Any]],
               report: ScanReport, *, actor: str, dry_run: bool) -> None:
    """Classify findings against the ledger, then (unless a dry run) write the outcome."""
    led = config.ledger()
    rule_meta = [{"rule_id": r.id, "focus": plan[r.id]["mode"] == "focus", "tol": r.material.tolerance,
                  "keys": r.material.keys, "facility_type": r.facility_type,
                  "grades": {g: list(r.grade(g)) for g in [None, *r.grades]}} for r in rules]
    p = {"county": ctx.county, "open": led.open_statuses, "meta": json.dumps(rule_meta),
         "actor": actor, "rules": [r.id for r in rules]}
    cur.execute("""
        CREATE TEMP TABLE hz_rule ON COMMIT DROP AS
        SELECT m ->> 'rule_id' AS rule_id, (m ->> 'focus')::boolean AS focus, (m ->> 'tol')::float8 AS tol,
               ARRAY(SELECT jsonb_array_elements_text(m -> 'keys')) AS keys, m ->> 'facility_type' AS facility_type,
               m -> 'grades' AS grades
        FROM jsonb_array_elements(%(meta)s::jsonb) m;
        ANALYZE hz_rule;
        CREATE TEMP TABLE hz_last ON COMMIT DROP AS
        SELECT DISTINCT ON (h.rule_key) h.id, h.rule_key, h.rule_id, h.status, h.evidence, h.condition_cleared,
               h.facility_keys, h.facility_refs, h.shape, h.number
        FROM cim.hazard h
        WHERE h.county_code = %(county)s AND h.source = 'rule' AND h.rule_id = ANY(%(rules)s)
        ORDER BY h.rule_key, h.id DESC;
        CREATE INDEX ON hz_last (rule_key);
        ANALYZE hz_last;
    """, p)
    material = ("((r.tol IS NOT NULL AND jsonb_typeof(l.evidence -> 'measured') = 'number' "
                "  AND jsonb_typeof(f.evidence -> 'measured') = 'number' "
                "  AND abs((l.evidence ->> 'measured')::float8 - (f.evidence ->> 'measured')::float8) > r.tol) "
                " OR (jsonb_typeof(f.evidence -> 'measured') IS DISTINCT FROM jsonb_typeof(l.evidence -> 'measured')) "
                " OR EXISTS (SELECT 1 FROM unnest(r.keys) k "
                "            WHERE (l.evidence -> 'inputs' -> k) IS DISTINCT FROM (f.evidence -> 'inputs' -> k)))")
    cur.execute(f"""
        CREATE TEMP TABLE hz_class ON COMMIT DROP AS
        SELECT f.*, l.id AS entry_id, l.status AS entry_status, l.number AS entry_number,
               l.evidence AS old_evidence, l.condition_cleared AS old_cleared,
               r.facility_type, (coalesce(r.grades -> f.grade, r.grades -> 'null') ->> 0) AS hazard_class,
               (coalesce(r.grades -> f.grade, r.grades -> 'null') ->> 1)::smallint AS risk_level,
               CASE WHEN l.id IS NULL THEN 'new'
                    WHEN l.status = ANY(%(open)s) THEN
                        CASE WHEN l.evidence = f.evidence AND NOT l.condition_cleared
                                  AND ST_AsEWKB(l.shape) = ST_AsEWKB(f.geom) THEN 'unchanged' ELSE 'updated' END
                    WHEN l.status = 'dismissed' THEN CASE WHEN {material} THEN 'recur' ELSE 'kept' END
                    ELSE CASE WHEN l.condition_cleared OR {material} THEN 'recur' ELSE 'kept' END
               END AS outcome
        FROM hz_find f JOIN hz_rule r ON r.rule_id = f.rule_id
        LEFT JOIN hz_last l ON l.rule_key = f.rule_key;
        CREATE TEMP TABLE hz_gone ON COMMIT DROP AS
        SELECT l.* FROM hz_last l JOIN hz_rule r ON r.rule_id = l.rule_id
        WHERE NOT l.condition_cleared AND (l.status = ANY(%(open)s) OR l.status = 'closed')
          AND (NOT r.focus OR l.facility_keys && ARRAY(SELECT key FROM hz_focus_keys))
          AND NOT EXISTS (SELECT 1 FROM hz_find f WHERE f.rule_key = l.rule_key);
        CREATE INDEX ON hz_class (entry_id);
        ANALYZE hz_class;
        ANALYZE hz_gone;
    """, p)
    cur.execute("SELECT rule_id, outcome, count(*) FROM hz_class GROUP BY 1, 2")
    for rule_id, outcome, n in cur.fetchall():
        c = report.rules[rule_id]
        c.findings += n
        if outcome in ("new", "recur"):
            c.new += n
            c.recurred += n if outcome == "recur" else 0
        elif outcome == "kept":
            c.unchanged += n
        else:
            setattr(c, outcome, getattr(c, outcome) + n)
    cur.execute("SELECT rule_id, count(*) FROM hz_gone WHERE status = ANY(%(open)s) GROUP BY 1", p)
    for rule_id, n in cur.fetchall():
        report.rules[rule_id].cleared += n
    if dry_run:
        return
    _write_new(cur, ctx, p)
    _write_updates(cur, p)
    _refresh_refs(cur, {**p, "focused": [r.id for r in rules if plan[r.id]["mode"] == "focus"]})


def _write_new(cur: psycopg2.extensions.cursor, ctx: Ctx, p: dict[str, Any]) -> None:
    """New entries (待核实) with gap-free numbers, each with its 'detect' event."""
    cur.execute("SELECT count(*) FROM hz_class WHERE outcome IN ('new', 'recur')")
    row = cur.fetchone()
    assert row is not None  # an aggregate returns one row
    n = int(row[0])
    if not n:
        return
    year = ctx.year
    cur.execute("INSERT INTO cim.hazard_counter AS c (county_code, year, last) VALUES (%s, %s, %s) "
                "ON CONFLICT (county_code, year) DO UPDATE SET last = c.last + EXCLUDED.last RETURNING c.last",
                (ctx.county, year, n))
    row = cur.fetchone()
    assert row is not None  # INSERT … ON CONFLICT DO UPDATE … RETURNING returns the row
    base = int(row[0]) - n
    cur.execute("""
        WITH src AS (
            SELECT c.*, row_number() OVER (ORDER BY c.rule_id, c.rule_key) AS seq FROM hz_class c
            WHERE c.outcome IN ('new', 'recur')),
        ins AS (
            INSERT INTO cim.hazard (number, source, rule_id, rule_key, facility_type, facility_refs, facility_keys,
                                    province_code, city_code, county_code, street_code, community_code, title, location,
                                    hazard_class, risk_level, found_by, status, evidence, previous_id, scanned_at,
                                    shape, geom)
            SELECT %(county)s || '-' || %(year)s || '-' || lpad((%(base)s + s.seq)::text, 5, '0'), 'rule', s.rule_id,
                   s.rule_key, s.facility_type, s.refs, s.keys, left(%(county)s, 2) || '0000',
                   left(%(county)s, 4) || '00', %(county)s, s.street_code, s.community_code, s.title, s.location,
                   s.hazard_class, s.risk_level, %(actor)s, 'pending', s.evidence, s.entry_id, now(),
                   ST_SetSRID(s.geom, 4490), ST_SetSRID(s.marker, 4490)
            FROM src s ORDER BY s.seq
            RETURNING id, previous_id, rule_id)
        INSERT INTO cim.hazard_event (hazard_id, actor, role, action, from_status, to_status, comment, changes, version)
        SELECT ins.id, %(actor)s, 'system', 'detect', NULL, 'pending',
               CASE WHEN ins.previous_id IS NULL THEN '自动规则 ' || ins.rule_id || ' 发现'
                    ELSE '自动规则 ' || ins.rule_id || ' 再次发现（关联 ' || prev.number || '，' ||
                         CASE prev.status WHEN 'dismissed' THEN '不成立后证据实质变化' ELSE '销号后复发' END || '）' END,
               '{}'::jsonb, 1
        FROM ins LEFT JOIN cim.hazard prev ON prev.id = ins.previous_id
    """, {**p, "year": year, "base": base})


def _write_updates(cur: psycopg2.extensions.cursor, p: dict[str, Any]) -> None:
    """Updated open entries, cleared conditions, each with its event."""
    cur.execute("""
        WITH u AS (
            UPDATE cim.hazard h SET evidence = c.evidence, shape = ST_SetSRID(c.geom, 4490),
                   geom = ST_SetSRID(c.marker, 4490), facility_refs = c.refs, title = c.title,
                   location = coalesce(h.location, c.location),
                   street_code = coalesce(c.street_code, h.street_code),
                   community_code = coalesce(c.community_code, h.community_code),
                   hazard_class = CASE WHEN h.status = 'pending' THEN c.hazard_class ELSE h.hazard_class END,
                   risk_level = CASE WHEN h.status = 'pending' THEN c.risk_level ELSE h.risk_level END,
                   condition_cleared = false, cleared_at = NULL, version = h.version + 1, updated_at = now(),
                   scanned_at = now()
            FROM hz_class c WHERE c.outcome = 'updated' AND h.id = c.entry_id
            RETURNING h.id, h.status, h.version, c.old_evidence, c.evidence AS new_evidence, c.old_cleared)
        INSERT INTO cim.hazard_event (hazard_id, actor, role, action, from_status, to_status, comment, changes, version)
        SELECT u.id, %(actor)s, 'system', 'rescan', u.status, u.status,
               CASE WHEN u.old_cleared THEN '复查扫描：条件再次出现' ELSE '复查扫描：证据更新' END,
               jsonb_strip_nulls(jsonb_build_object(
                   'measured', CASE WHEN u.old_evidence -> 'measured' IS DISTINCT FROM u.new_evidence -> 'measured'
                                    THEN jsonb_build_array(u.old_evidence -> 'measured', u.new_evidence -> 'measured') END,
                   'required', CASE WHEN u.old_evidence -> 'required' IS DISTINCT FROM u.new_evidence -> 'required'
                                    THEN jsonb_build_array(u.old_evidence -> 'required', u.new_evidence -> 'required') END,
                   'inputs', CASE WHEN u.old_evidence -> 'inputs' IS DISTINCT FROM u.new_evidence -> 'inputs'
                                  THEN jsonb_build_array(u.old_evidence -> 'inputs', u.new_evidence -> 'inputs') END,
                   'condition_cleared', CASE WHEN u.old_cleared THEN jsonb_build_array(true, false) END)),
               u.version
        FROM u
    """, p)
    cur.execute("""
        WITH u AS (
            UPDATE cim.hazard h SET condition_cleared = true, cleared_at = now(), version = h.version + 1,
                   updated_at = now(), scanned_at = now()
            FROM hz_gone g WHERE h.id = g.id
            RETURNING h.id, h.status, h.version)
        INSERT INTO cim.hazard_event (hazard_id, actor, role, action, from_status, to_status, comment, changes, version)
        SELECT u.id, %(actor)s, 'system', 'condition_cleared', u.status, u.status,
               '复查扫描未再发现该隐患条件（条件已消除，待核实）', jsonb_build_object('condition_cleared',
               jsonb_build_array(false, true)), u.version
        FROM u
    """, p)


def _refresh_refs(cur: psycopg2.extensions.cursor, p: dict[str, Any]) -> None:
    """Facility ids of open entries follow re-delivered rows: unchanged findings carry the new ids;
    entries of focused rules outside the changed area get them from the re-delivered rows' keys.
    Each entry whose references change gets a new version and a ``refs`` event with the old and
    new references."""
    event = """
        INSERT INTO cim.hazard_event (hazard_id, actor, role, action, from_status, to_status, comment, changes, version)
        SELECT u.id, %(actor)s, 'system', 'refs', u.status, u.status, '复查扫描：设施重新交付，引用随新记录更新',
               jsonb_build_object('facility_refs', jsonb_build_array(u.old_refs, u.facility_refs)), u.version
        FROM u"""
    cur.execute("""
        WITH u AS (
            UPDATE cim.hazard h SET facility_refs = c.refs, version = h.version + 1, updated_at = now()
            FROM hz_class c, cim.hazard old
            WHERE c.outcome IN ('unchanged', 'kept') AND h.id = c.entry_id AND old.id = h.id
              AND h.facility_refs IS DISTINCT FROM c.refs
            RETURNING h.id, h.status, h.version, h.facility_refs, old.facility_refs AS old_refs)
    """ + event, p)
    if not p["focused"]:
        return
    cur.execute("""
        WITH u AS (
            UPDATE cim.hazard h SET facility_refs = x.refs, version = h.version + 1, updated_at = now()
            FROM (SELECT h2.id, h2.facility_refs AS old_refs,
                         jsonb_agg(CASE WHEN m.id IS NULL THEN e ELSE jsonb_set(e, '{id}', to_jsonb(m.id)) END
                                   ORDER BY o) AS refs
                  FROM cim.hazard h2
                  CROSS JOIN LATERAL jsonb_array_elements(h2.facility_refs) WITH ORDINALITY AS a(e, o)
                  LEFT JOIN hz_rows m ON m.key = a.e ->> 'key'
                  WHERE h2.county_code = %(county)s AND h2.rule_id = ANY(%(focused)s) AND h2.status = ANY(%(open)s)
                    AND NOT EXISTS (SELECT 1 FROM hz_class c WHERE c.entry_id = h2.id)
                  GROUP BY h2.id, h2.facility_refs) x
            WHERE h.id = x.id AND h.facility_refs IS DISTINCT FROM x.refs
            RETURNING h.id, h.status, h.version, h.facility_refs, x.old_refs)
    """ + event, p)


def _record_scan(cur: psycopg2.extensions.cursor, report: ScanReport, rules: list[config.Rule], actor: str,
                 delivery_id: int | None) -> int:
    counts = {rid: asdict(c) for rid, c in report.rules.items()}
    cur.execute("INSERT INTO cim.hazard_scan (county_code, mode, rules, actor, delivery_id, counts, started_at) "
                "VALUES (%s, %s, %s, %s, %s, %s::jsonb, now()) RETURNING id",
                (report.county, "incremental" if report.incremental else "full", [r.id for r in rules], actor,
                 delivery_id, json.dumps(counts)))
    row = cur.fetchone()
    assert row is not None  # INSERT … RETURNING returns the row
    return int(row[0])
