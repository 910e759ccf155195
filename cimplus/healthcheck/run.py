"""A health-check run: every indicator for every admin area of the chosen levels, stored immutably.

:func:`start` records the run (state ``running``, its scope and the indicator definitions it will
use) and returns its id at once, so a caller (a background task) can show it. :func:`compute`
first brings the stored membership of features in areas up to date where it is stale
(:func:`cimplus.healthcheck.membership.refresh`, a transaction of its own), then reads in one
REPEATABLE READ transaction, so the data versions it records are those of the
rows it read: it prepares the areas (:mod:`cimplus.healthcheck.areas`), checks each indicator's
required layers and inputs, runs each indicator as ONE statement over all areas (a failing
formula marks only its indicator not computed, under a savepoint), judges every value against
the threshold of the run's year, computes the choropleth classes per level; then, in a transaction
of its own (so runs side by side never conflict), inserts the values and closes the run as ``done``. Any other failure closes it as ``failed`` with the reason.
Triggers (migration 0081) keep a finished run and its values from ever changing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from cim import auth, db, versions
from cim.errors import CimError, InvalidInput, NotFound
from cimplus.healthcheck import areas, judge, membership
from cimplus.healthcheck.catalog import ADMIN_LEVELS, Catalogue, Indicator
from cimplus.healthcheck.template import Expander, ledger_present
from layers.catalog import Catalog

log = logging.getLogger(__name__)

RUN_TIMEOUT_MS = 30 * 60 * 1000        # one run may read a whole city; requests keep their own timeout
RUN_WORK_MEM = "256MB"                 # hashes and sorts of a million memberships stay in memory
Progress = Callable[[int, str], None]


@dataclass
class Outcome:
    """One indicator's rows before judging: per area id, the formula's columns."""

    rows: dict[int, dict[str, Any]]
    skipped: tuple[str, str, str] | None = None     # (reason code, zh, en) when not computed at all
    seconds: float = 0.0


def check_request(year: int | None, levels: list[str] | None, catalogue: Catalogue) -> tuple[int, list[str]]:
    """The run's year (default: this year) and levels (default: the catalogue's), validated."""
    year = year or dt.date.today().year
    if not 1949 <= year <= 2100:
        raise InvalidInput(f"体检年份 {year} 无效（1949–2100）", f"year {year} is not valid (1949–2100)")
    chosen = list(dict.fromkeys(levels or catalogue.levels))
    bad = [lv for lv in chosen if lv not in ADMIN_LEVELS]
    if bad or not chosen:
        raise InvalidInput(f"行政区级别无效：{bad}（可选 county、street、community）",
                           f"invalid admin levels {bad} (choose from county, street, community)")
    return year, chosen


def start(conn: psycopg2.extensions.connection, catalogue: Catalogue, *, county: str | None, year: int | None,
          levels: list[str] | None, principal: auth.Principal, task_id: int | None = None,
          client_addr: str | None = None) -> int:
    """Record a new run (state ``running``) for the scope; audited. Returns its id."""
    year, levels = check_request(year, levels, catalogue)
    with db.transaction(conn) as cur:
        close_stale(cur)
        counties = areas.counties_in_scope(cur, county)
        cur.execute("INSERT INTO cim.healthcheck_run (year, counties, levels, task_id, catalogue, catalogue_sha, "
                    "created_by) VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s) RETURNING id",
                    (year, counties, levels, task_id, json.dumps(catalogue.snapshot(), ensure_ascii=False),
                     catalogue.sha256(), principal.name))
        row = cur.fetchone()
        assert row is not None  # INSERT … RETURNING
        run_id = int(row[0])
        auth.audit(cur, principal, "healthcheck.run", target=f"healthcheck_run:{run_id}", county=county,
                   client_addr=client_addr, detail={"year": year, "levels": levels, "counties": counties,
                                                    "catalogue": catalogue.source, "task_id": task_id})
    return run_id


def close_stale(cur: psycopg2.extensions.cursor) -> list[int]:
    """Runs left ``running`` by a session that no longer exists (a killed process): closed as failed."""
    cur.execute("UPDATE cim.healthcheck_run SET state = 'failed', finished_at = now(), "
                "error = '计算该运行的进程已停止 / the process computing this run stopped' "
                "WHERE state = 'running' AND backend_pid NOT IN (SELECT pid FROM pg_stat_activity) RETURNING id")
    return [int(r[0]) for r in cur.fetchall()]


def compute(conn: psycopg2.extensions.connection, run_id: int, catalogue: Catalogue, layers: Catalog,
            progress: Progress | None = None) -> dict[str, Any]:
    """Compute and store a started run; returns its summary. A failure closes the run as failed."""
    began = time.monotonic()
    with conn.cursor() as cur:
        cur.execute("SELECT year, counties, levels, state FROM cim.healthcheck_run WHERE id = %s", (run_id,))
        row = cur.fetchone()
    conn.rollback()
    if row is None:
        raise NotFound(f"没有体检运行 {run_id}", f"no health-check run {run_id}")
    year, counties, levels, state = row
    if state != "running":
        raise InvalidInput(f"体检运行 {run_id} 已结束（{state}）", f"health-check run {run_id} has finished ({state})")
    try:
        upkeep = refresh_parts(conn, catalogue, layers, list(counties), int(year))
        summary = _compute(conn, run_id, catalogue, layers, int(year), list(counties), list(levels), progress, began,
                           upkeep)
    except BaseException as exc:
        conn.rollback()
        _fail(conn, run_id, exc, began)
        raise
    return summary


def refresh_parts(conn: psycopg2.extensions.connection, catalogue: Catalogue, layers: Catalog, counties: list[str],
                  year: int) -> dict[str, Any]:
    """Refresh the stored sets a run of the catalogue reads; a database error there is recorded and
    the run goes on (it then cuts the features itself)."""
    try:
        return membership.refresh(conn, counties, year, membership.sources(catalogue.indicators, layers), RUN_TIMEOUT_MS)
    except psycopg2.Error as exc:
        conn.rollback()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("healthcheck parts refresh failed: %s", first)
        return {"seconds": None, "refreshed": [], "error": first}


def _compute(conn, run_id: int, catalogue: Catalogue, layers: Catalog, year: int, counties: list[str],
             levels: list[str], progress: Progress | None, began: float, upkeep: dict[str, Any]) -> dict[str, Any]:
    with conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur.execute("SELECT set_config('statement_timeout', %s, true), set_config('work_mem', %s, true)",
                    (str(RUN_TIMEOUT_MS), RUN_WORK_MEM))
        area_set = areas.prepare(cur, counties, levels, year)
        present, ledger_note = ledger_present(cur, catalogue.hazard_ledger)
        part_sets, sets_used = membership.usable(cur, area_set, membership.sources(catalogue.indicators, layers))
        scope = area_set.scope(year, present, part_sets)
        expander = Expander(layers, catalogue, scope)
        area_rows = _areas(cur)
        tables = _tables(catalogue, layers)
        if present and catalogue.hazard_ledger:
            tables.add(catalogue.hazard_ledger.version_key)
        data_versions = versions.read(cur, sorted(tables))
        results: dict[str, Outcome] = {}
        for i, ind in enumerate(catalogue.indicators):
            if progress:
                progress(5 + int(85 * i / max(len(catalogue.indicators), 1)), f"run {run_id}: {ind.id}")
            results[ind.id] = _indicator(cur, ind, expander, catalogue, area_set)
            log.info("healthcheck run %s: %s in %.2f s", run_id, ind.id, results[ind.id].seconds)
        values, classes = _judge(catalogue, results, area_rows, year)
    # The snapshot ends here (nothing was written in it); the values and the run's close are written
    # in a transaction of their own, so runs side by side never conflict over the data versions
    # their writes bump.
    conn.commit()
    with db.transaction(conn) as cur:
        psycopg2.extras.execute_values(
            cur, "INSERT INTO cim.healthcheck_value (run_id, indicator, area_code, area_name, area_level, parent_code, "
                 "county_code, state, value, numerator, denominator, threshold, op, pass, class_no, color, reason_code, "
                 "reason_zh, reason_en, detail) VALUES %s",
            [(run_id, *v) for v in values], page_size=2000)
        inputs = {"population": area_set.population, "builtup": area_set.builtup,
                  "hazard_ledger": {"table": catalogue.hazard_ledger.table if catalogue.hazard_ledger else None,
                                    "used": present, "note": ledger_note}}
        summary = _summary(catalogue, results, values, time.monotonic() - began)
        summary["parts"] = {"sets": sets_used, "refresh": upkeep}     # their versions are data_versions'
        summary["parts_refresh_s"] = upkeep.get("seconds")
        cur.execute("UPDATE cim.healthcheck_run SET state = 'done', metric_srid = %s, data_versions = %s::jsonb, "
                    "inputs = %s::jsonb, classes = %s::jsonb, summary = %s::jsonb, finished_at = now(), "
                    "elapsed_s = %s WHERE id = %s",
                    (area_set.srid, json.dumps(data_versions), json.dumps(inputs, ensure_ascii=False),
                     json.dumps(classes, ensure_ascii=False), json.dumps(summary, ensure_ascii=False),
                     summary["elapsed_s"], run_id))
    if progress:
        progress(100, f"run {run_id}: done")
    return {"run_id": run_id, **summary}


def _fail(conn, run_id: int, exc: BaseException, began: float) -> None:
    text = f"{exc.zh} / {exc.en}" if isinstance(exc, CimError) else f"{type(exc).__name__}: {exc}"
    try:
        with db.transaction(conn) as cur:
            cur.execute("UPDATE cim.healthcheck_run SET state = 'failed', error = %s, finished_at = now(), "
                        "elapsed_s = %s WHERE id = %s AND state = 'running'",
                        (text[:2000], time.monotonic() - began, run_id))
    except psycopg2.Error:
        log.exception("healthcheck run %s: recording the failure failed", run_id)


def _tables(catalogue: Catalogue, layers: Catalog) -> set[str]:
    """Data-version keys of every layer the catalogue reads, and of the admin areas."""
    keys = {"admin_area", "healthcheck_input"}
    known = {s.id: s for s in layers.public()}
    for ind in catalogue.indicators:
        names = {n for n, _ in _placeholders(ind)} | set(ind.requires.layers) | ({ind.layer} if ind.layer else set())
        for name in names:
            if name in known:
                keys.update(known[name].version_keys)
    return keys


def _placeholders(ind: Indicator) -> list[tuple[str, str | None]]:
    from cimplus.healthcheck.catalog import placeholders
    return placeholders((ind.formula or "") + (ind.features or ""))


def _areas(cur) -> dict[int, dict[str, Any]]:
    cur.execute("SELECT id, code, name, level, parent_code, county_code, population IS NOT NULL, "
                "builtup_m2 IS NOT NULL FROM hc_area")
    return {r[0]: {"code": r[1], "name": r[2], "level": r[3], "parent_code": r[4], "county_code": r[5],
                   "has_population": r[6], "has_builtup": r[7]} for r in cur.fetchall()}


def missing_requirements(cur, ind: Indicator, expander: Expander, catalogue: Catalogue,
                         area_set: areas.AreaSet) -> tuple[str, str, str] | None:
    """Why an indicator cannot be computed at all (reason code, zh, en), or None."""
    for layer in ind.requires.layers:
        probe = expander.expand(f"SELECT EXISTS (SELECT 1 FROM {{{layer}}} x)", ind)
        cur.execute(probe.sql, probe.params)
        if not cur.fetchone()[0]:
            spec = expander.layers.get(layer)
            return ("missing_layer", f"缺少数据：图层“{spec.title_zh}”在体检范围内没有要素",
                    f"missing data: layer {spec.id} ({spec.title_en}) has no features in the checked counties")
    for kind in ind.requires.inputs:
        have = area_set.population.get("areas_with_population") if kind == "population" else \
            len(area_set.builtup.get("counties", []))
        if not have:
            text = catalogue.inputs.get(kind)
            zh, en = (text.zh, text.en) if text else (kind, kind)
            return ("missing_input", f"缺少输入数据：{zh}", f"missing input: {en}")
    return None


def _indicator(cur, ind: Indicator, expander: Expander, catalogue: Catalogue, area_set: areas.AreaSet) -> Outcome:
    """One indicator for every area: one statement (under a savepoint)."""
    t0 = time.monotonic()
    skipped = missing_requirements(cur, ind, expander, catalogue, area_set)
    if skipped:
        return Outcome({}, skipped, time.monotonic() - t0)
    if ind.kind == "count":
        inner = expander.expand(ind.features or "", ind)
        sql = (f"WITH f AS MATERIALIZED (SELECT DISTINCT x.area_id, x.feature_id FROM ({inner.sql}) x), "
               f"n AS MATERIALIZED (SELECT area_id, count(*) AS n FROM f GROUP BY area_id) "
               f"SELECT a.id AS area_id, coalesce(n.n, 0)::float8 AS value "
               f"FROM {expander.expand('{areas}', ind).sql} a LEFT JOIN n ON n.area_id = a.id")
        params, needs = inner.params, inner.needs
    else:
        stmt = expander.expand(ind.formula or "", ind)
        sql, params, needs = stmt.sql, stmt.params, stmt.needs
    area_set.ensure(cur, needs)
    cur.execute("SAVEPOINT hc_indicator")
    try:
        cur.execute(sql, params)
        names = [c.name for c in cur.description]
        if "area_id" not in names or "value" not in names:
            raise psycopg2.ProgrammingError("the formula must return the columns area_id and value")
        rows = {int(r[names.index("area_id")]): dict(zip(names, r, strict=True)) for r in cur.fetchall()}
        cur.execute("RELEASE SAVEPOINT hc_indicator")
    except psycopg2.Error as exc:
        cur.execute("ROLLBACK TO SAVEPOINT hc_indicator")
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("healthcheck indicator %s failed: %s", ind.id, first)
        return Outcome({}, ("formula_error", f"公式执行出错：{first}", f"the formula failed: {first}"),
                       time.monotonic() - t0)
    return Outcome(rows, None, time.monotonic() - t0)


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def _judge(catalogue: Catalogue, results: dict[str, Outcome], area_rows: dict[int, dict[str, Any]],
           year: int) -> tuple[list[tuple], dict[str, Any]]:
    """Value rows (without run id) and the classes per indicator and level."""
    values: list[tuple] = []
    classes: dict[str, Any] = {}
    for ind in catalogue.indicators:
        out = results[ind.id]
        judged = []
        for area_id, area in area_rows.items():
            if area["level"] not in ind.admin_levels:
                continue
            row = out.rows.get(area_id, {})
            value = _num(row.get("value"))
            reason = out.skipped
            if value is None and reason is None:
                code = row.get("reason") or "no_data"
                text = catalogue.reason(code)
                reason = (code, text.zh, text.en)
            if value is not None:
                reason = None
            v = judge.verdict(ind, value, year)
            detail = row.get("detail")
            judged.append((area, value, row, v, reason, detail))
        per_level: dict[str, dict[str, Any]] = {}
        for level in ADMIN_LEVELS:
            level_values = [j[1] for j in judged if j[0]["level"] == level and j[1] is not None]
            spans = judge.classes(ind, level_values, year, catalogue.classes)
            if spans or any(j[0]["level"] == level for j in judged):
                per_level[level] = {"classes": spans, "threshold": judge.verdict(ind, None, year).threshold,
                                    "op": ind.threshold.op if ind.threshold else None,
                                    "not_computed_color": catalogue.classes.not_computed}
        classes[ind.id] = per_level
        for area, value, row, v, reason, detail in judged:
            spans = per_level.get(area["level"], {}).get("classes", [])
            cls = judge.class_of(value, v.passed, spans)
            values.append((
                ind.id, area["code"], area["name"], area["level"], area["parent_code"], area["county_code"],
                "computed" if value is not None else "not_computed", value, _num(row.get("numerator")),
                _num(row.get("denominator")), v.threshold, v.op, v.passed,
                cls["no"] if cls else None, cls["color"] if cls else catalogue.classes.not_computed,
                reason[0] if reason else None, reason[1] if reason else None, reason[2] if reason else None,
                json.dumps(detail, ensure_ascii=False, default=str) if detail is not None else None))
    return values, classes


def _summary(catalogue: Catalogue, results: dict[str, Outcome], values: list[tuple], elapsed: float) -> dict[str, Any]:
    per = {}
    for ind in catalogue.indicators:
        rows = [v for v in values if v[0] == ind.id]
        out = results[ind.id]
        per[ind.id] = {"seconds": round(out.seconds, 3), "computed": sum(r[6] == "computed" for r in rows),
                       "not_computed": sum(r[6] != "computed" for r in rows),
                       "failing": sum(r[12] is False for r in rows),
                       "skipped": {"code": out.skipped[0], "zh": out.skipped[1], "en": out.skipped[2]}
                       if out.skipped else None}
    return {"elapsed_s": round(elapsed, 3), "indicators": per, "values": len(values),
            "computed": sum(v[6] == "computed" for v in values), "failing": sum(v[12] is False for v in values)}
