"""Reading runs back: the list, one run with its values, and this year against last year.

Everything here reads what a run stored (values, thresholds, classes, the indicator definitions
it used), never the current catalogue, so a published run reads the same forever.
"""

from __future__ import annotations

from typing import Any

import psycopg2.extensions

from cim.errors import InvalidInput, NotFound

_RUN_COLUMNS = ("id, year, counties, levels, state, task_id, catalogue_sha, metric_srid, data_versions, inputs, "
                "summary, error, created_by, started_at, finished_at, elapsed_s")
_VALUE_COLUMNS = ("indicator, area_code, area_name, area_level, parent_code, county_code, state, value, numerator, "
                  "denominator, threshold, op, pass, class_no, color, reason_code, reason_zh, reason_en, detail")


def _json_safe(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


def _fetch(cur, sql: str, params: Any) -> list[dict[str, Any]]:
    cur.execute(sql, params)
    names = [c.name for c in cur.description]
    return [_json_safe(dict(zip(names, r, strict=True))) for r in cur.fetchall()]


def list_runs(cur: psycopg2.extensions.cursor, *, county: str | None = None, year: int | None = None,
              state: str | None = None, task_id: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Runs, newest first, optionally of one county (its scope includes it), year, state or task."""
    return _fetch(cur, f"SELECT {_RUN_COLUMNS} FROM cim.healthcheck_run "
                       "WHERE (%(county)s::text IS NULL OR %(county)s = ANY(counties)) "
                       "  AND (%(year)s::int IS NULL OR year = %(year)s) "
                       "  AND (%(state)s::text IS NULL OR state = %(state)s) "
                       "  AND (%(task)s::bigint IS NULL OR task_id = %(task)s) "
                       "ORDER BY id DESC LIMIT %(limit)s",
                  {"county": county, "year": year, "state": state, "task": task_id, "limit": limit})


def get_run(cur: psycopg2.extensions.cursor, run_id: int, *, with_catalogue: bool = True) -> dict[str, Any]:
    """One run: scope, state, data versions, inputs, summary (and the definitions and classes it used)."""
    extra = ", catalogue, classes" if with_catalogue else ""
    rows = _fetch(cur, f"SELECT {_RUN_COLUMNS}{extra} FROM cim.healthcheck_run WHERE id = %s", (run_id,))
    if not rows:
        raise NotFound(f"没有体检运行 {run_id}", f"no health-check run {run_id}")
    return rows[0]


def values(cur: psycopg2.extensions.cursor, run_id: int, *, level: str | None = None, indicator: str | None = None,
           area: str | None = None) -> list[dict[str, Any]]:
    """A run's values, filtered by admin level, indicator and area code (any of them)."""
    return _fetch(cur, f"SELECT {_VALUE_COLUMNS} FROM cim.healthcheck_value WHERE run_id = %(run)s "
                       "AND (%(level)s::text IS NULL OR area_level = %(level)s) "
                       "AND (%(ind)s::text IS NULL OR indicator = %(ind)s) "
                       "AND (%(area)s::text IS NULL OR area_code = %(area)s) ORDER BY indicator, area_level, area_code",
                  {"run": run_id, "level": level, "ind": indicator, "area": area})


def previous_run(cur: psycopg2.extensions.cursor, run: dict[str, Any]) -> int | None:
    """The run to compare with: the latest finished run of an earlier year sharing a county."""
    cur.execute("SELECT id FROM cim.healthcheck_run WHERE state = 'done' AND year < %s AND counties && %s::varchar[] "
                "ORDER BY year DESC, id DESC LIMIT 1", (run["year"], run["counties"]))
    row = cur.fetchone()
    return int(row[0]) if row else None


def compare(cur: psycopg2.extensions.cursor, run_id: int, other_id: int | None = None, *, level: str | None = None,
            indicator: str | None = None, area: str | None = None) -> dict[str, Any]:
    """This run against another (default: :func:`previous_run`): per indicator and area the value,
    the earlier value, the change (absolute and relative) and whether it improved (by the
    indicator's direction) or crossed the threshold."""
    run = get_run(cur, run_id)
    if other_id is None:
        other_id = previous_run(cur, run)
    if other_id == run_id:
        raise InvalidInput("不能与自身比较", "a run cannot be compared with itself")
    other = get_run(cur, other_id, with_catalogue=False) if other_id is not None else None
    now = values(cur, run_id, level=level, indicator=indicator, area=area)
    before = {(v["indicator"], v["area_code"]): v for v in values(cur, other_id, level=level, indicator=indicator,
                                                                   area=area)} if other_id else {}
    rows = []
    for v in now:
        b = before.get((v["indicator"], v["area_code"]))
        direction = (run["catalogue"].get(v["indicator"]) or {}).get("direction")
        rows.append({**_compare_row(v, b, direction)})
    return {"run_id": run_id, "year": run["year"], "previous_run_id": other_id,
            "previous_year": other["year"] if other else None, "rows": rows}


def _compare_row(v: dict[str, Any], b: dict[str, Any] | None, direction: str | None) -> dict[str, Any]:
    out = {"indicator": v["indicator"], "area_code": v["area_code"], "area_name": v["area_name"],
           "area_level": v["area_level"], "value": v["value"], "pass": v["pass"], "threshold": v["threshold"],
           "previous_value": b["value"] if b else None, "previous_pass": b["pass"] if b else None,
           "change": None, "change_pct": None, "trend": None}
    if b is None or v["value"] is None or b["value"] is None:
        out["trend"] = "new" if b is None else "not_comparable"
        return out
    change = v["value"] - b["value"]
    out["change"] = change
    out["change_pct"] = (100.0 * change / abs(b["value"])) if b["value"] else None
    if abs(change) <= 1e-9 * max(1.0, abs(b["value"])):
        out["trend"] = "unchanged"
    else:
        better = change > 0 if direction == "higher" else change < 0
        out["trend"] = "improved" if better else "worsened"
    return out


def classes(cur: psycopg2.extensions.cursor, run_id: int, indicator: str | None = None,
            level: str | None = None) -> dict[str, Any]:
    """The choropleth classes the run stored: indicator → level → {classes, threshold, op}."""
    run = get_run(cur, run_id)
    out = run["classes"] or {}
    if indicator is not None:
        if indicator not in out:
            raise NotFound(f"体检运行 {run_id} 没有指标 {indicator}", f"run {run_id} has no indicator {indicator}")
        out = {indicator: out[indicator]}
    if level is not None:
        out = {k: {lv: c for lv, c in v.items() if lv == level} for k, v in out.items()}
    return out
