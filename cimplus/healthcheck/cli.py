"""``cim healthcheck``: the urban health check from the command line.

``cim healthcheck inputs 常住人口.xlsx`` / ``inputs 建成区.geojson --year 2025`` load inputs;
``run [--county CODE] [--year YYYY] [--level LEVEL ...]`` computes a run; ``list``, ``show RUN``,
``compare RUN [--with RUN]`` read them back; ``report RUN --out 体检报告.xlsx`` (or ``.html``)
writes the report; ``indicators`` lists the catalogue and ``validate`` checks it against the
layer catalogue and the database.

Exit codes: 0 ok; 1 rejected (an input file with bad rows, a catalogue with problems, a run that
is not done); 2 unusable input or environment (unreadable file, unknown run, no database).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from cim import db
from cim.cli import cli_principal
from cim.errors import CimError, CrsError, InvalidInput, UnreadableInput
from cim.settings import load as load_settings
from cimplus.healthcheck.catalog import ADMIN_LEVELS
from cimplus.healthcheck.service import HealthCheck
from layers.catalog import load_catalog

app = typer.Typer(help="城市体检 / urban health check: inputs, runs, reports", no_args_is_help=True,
                  add_completion=False)


def _fail(exc: CimError) -> None:
    code = 1 if isinstance(exc, InvalidInput) and not isinstance(exc, UnreadableInput | CrsError) else 2
    typer.echo(f"错误 / error [{exc.code}]: {exc.zh}\n  {exc.en}", err=True)
    for p in (exc.detail or {}).get("problems", [])[:20]:
        typer.echo(f"  第 {p.get('row')} 行 row {p.get('row')} [{p.get('column')}]: {p['message_zh']} / "
                   f"{p['message_en']}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def _service() -> Iterator[tuple[HealthCheck, Any]]:
    """The service and a connection for one command; a domain error ends the command with its
    exit code and message."""
    try:
        settings = load_settings()
        conn = db.connect(settings.db, application_name="cim-healthcheck")
        try:
            yield HealthCheck(load_catalog()), conn
        finally:
            conn.close()
    except CimError as exc:
        _fail(exc)


def _echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False, default=str))


@app.command("indicators")
def indicators_cmd(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The indicator catalogue in force (CIM_HEALTHCHECK_INDICATORS or the shipped one)."""
    try:
        hc = HealthCheck(load_catalog())
    except CimError as exc:
        _fail(exc)
    rows = hc.indicators()
    if as_json:
        _echo_json(rows)
        return
    for d in rows:
        th = d.get("threshold")
        target = f"{th['op']} {th['value']:g}" if th else "—"
        typer.echo(f"{d['id']:<32} {d['level']:<6} {d['unit']:<7} {target:<8} {d['name_zh']} / {d['name_en']}")


@app.command("validate")
def validate_cmd() -> None:
    """Check the catalogue against the layer catalogue and compile every formula in the database."""
    with _service() as (hc, conn):
        found = hc.problems()
        if not found:
            found = _explain_all(hc, conn)
    for p in found:
        typer.echo(p, err=True)
    if found:
        raise typer.Exit(1)
    typer.echo(f"体检指标有效 / indicator catalogue valid: {len(hc.catalogue.indicators)} indicators "
               f"({hc.catalogue.source})")


def _explain_all(hc: HealthCheck, conn) -> list[str]:
    """EXPLAIN every formula against the first county (planning only, nothing runs)."""
    import psycopg2

    from cimplus.healthcheck import areas
    from cimplus.healthcheck.template import Expander, ledger_present

    out = []
    try:
        with conn.cursor() as cur:
            counties = areas.counties_in_scope(cur, None)[:1]
            area_set = areas.prepare(cur, counties, list(ADMIN_LEVELS), 2025)
            present, _ = ledger_present(cur, hc.catalogue.hazard_ledger)   # its filter is planned too
            expander = Expander(hc.layers, hc.catalogue, area_set.scope(2025, present))
            for ind in hc.catalogue.indicators:
                for text in (ind.formula, ind.features):
                    if not text:
                        continue
                    stmt = expander.expand(text, ind)
                    area_set.ensure(cur, stmt.needs)
                    cur.execute("SAVEPOINT v")
                    try:
                        cur.execute("EXPLAIN " + stmt.sql, stmt.params)
                    except psycopg2.Error as exc:
                        out.append(f"{ind.id}: {str(exc).strip().splitlines()[0]}")
                    cur.execute("ROLLBACK TO SAVEPOINT v")
    finally:
        conn.rollback()
    return out


@app.command("inputs")
def inputs_cmd(
    path: Annotated[Path | None, typer.Argument(help="常住人口 .xlsx/.csv or 建成区 .geojson/.gpkg/.shp/.zip")] = None,
    kind: Annotated[str | None, typer.Option(help="population | builtup (default: from the suffix)")] = None,
    year: Annotated[int | None, typer.Option(help="year of the data when the file has no year column")] = None,
    county: Annotated[str | None, typer.Option(help="built-up area: its county (default: found)")] = None,
    list_: Annotated[bool, typer.Option("--list", help="list the uploads instead")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Load an input (resident population per admin area, or the built-up area of a county)."""
    with _service() as (hc, conn):
        if list_ or path is None:
            with conn.cursor() as cur:
                rows = hc.inputs(cur, kind)
            conn.rollback()
            if as_json:
                _echo_json(rows)
            else:
                for r in rows:
                    typer.echo(f"{r['id']:>4}  {r['kind']:<10} {r['years']} {r['county_code'] or '-':<8} "
                               f"{r['rows']:>6} rows  {r['loaded_at']:%Y-%m-%d %H:%M}  {r['file_name']}")
            return
        if kind not in (None, "population", "builtup"):
            raise InvalidInput(f"--kind 只能是 population 或 builtup：{kind}", f"--kind must be population or builtup: {kind}")
        if not path.exists():
            raise UnreadableInput(f"文件不存在：{path}", f"no such file: {path}")
        loaded = hc.load_input(conn, path, principal=cli_principal(), kind=kind, year=year, county=county)
    if as_json:
        _echo_json(loaded.to_dict())
        return
    typer.echo(f"已入库 / loaded input {loaded.input_id} ({loaded.kind}): {loaded.rows} rows, years {loaded.years}"
               + (f", county {loaded.county}" if loaded.county else ""))
    for w in loaded.warnings:
        typer.echo(f"  注意 / note: {w.zh} / {w.en}", err=True)


def _levels(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


@app.command("run")
def run_cmd(
    county: Annotated[str | None, typer.Option(help="county code (default: every county loaded)")] = None,
    year: Annotated[int | None, typer.Option(help="year of the check (default: this year)")] = None,
    level: Annotated[list[str] | None, typer.Option(help="admin levels: county, street, community (repeatable or "
                                                         "comma-separated; default: all)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Compute every indicator for every admin area of the chosen levels and store the run."""
    def progress(pct: int, message: str) -> None:
        if not as_json:
            typer.echo(f"[{pct:3d}%] {message}", err=True)

    with _service() as (hc, conn):
        summary = hc.run(conn, county=county, year=year, levels=_levels(level), principal=cli_principal(),
                         progress=progress)
    if as_json:
        _echo_json(summary)
        return
    typer.echo(f"体检运行 / run {summary['run_id']}: {summary['values']} values, {summary['computed']} computed, "
               f"{summary['failing']} below target, {summary['elapsed_s']:.1f} s")
    for ind_id, s in summary["indicators"].items():
        note = f"  未计算 / not computed: {s['skipped']['zh']}" if s["skipped"] else ""
        typer.echo(f"  {ind_id:<32} {s['seconds']:7.2f} s  computed {s['computed']:>4}  failing {s['failing']:>4}{note}")


@app.command("list")
def list_cmd(
    county: Annotated[str | None, typer.Option(help="runs covering this county")] = None,
    year: Annotated[int | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option()] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Runs, newest first."""
    with _service() as (hc, conn):
        with conn.cursor() as cur:
            rows = hc.runs(cur, county=county, year=year, limit=limit)
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        s = r["summary"] or {}
        typer.echo(f"{r['id']:>4}  {r['year']}  {r['state']:<8} {','.join(r['counties']):<14} "
                   f"{','.join(r['levels']):<24} values {s.get('values', '-'):>5}  failing {s.get('failing', '-'):>4}  "
                   f"{(r['elapsed_s'] or 0):6.1f} s  {r['started_at'][:16]}  {r['created_by']}")


@app.command("show")
def show_cmd(
    run_id: Annotated[int, typer.Argument(help="run id (see `cim healthcheck list`)")],
    level: Annotated[str | None, typer.Option()] = None,
    indicator: Annotated[str | None, typer.Option()] = None,
    area: Annotated[str | None, typer.Option(help="admin area code")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A run's values (filtered), with last year's value where an earlier run exists."""
    with _service() as (hc, conn):
        with conn.cursor() as cur:
            out = hc.values(cur, run_id, level=level, indicator=indicator, area=area)
    if as_json:
        _echo_json(out)
        return
    for v in out["values"]:
        value = "未计算 " + (v["reason_zh"] or "") if v["state"] != "computed" else f"{v['value']:.4g}"
        mark = "" if v["pass"] is None else ("  达标 pass" if v["pass"] else "  未达标 FAIL")
        typer.echo(f"{v['indicator']:<32} {v['area_level']:<10} {v['area_code']:<13} {v['area_name'] or '':<10} "
                   f"{value}{mark}")


@app.command("compare")
def compare_cmd(
    run_id: Annotated[int, typer.Argument()],
    other: Annotated[int | None, typer.Option("--with", help="run to compare with (default: the latest run of an "
                                                             "earlier year)")] = None,
    level: Annotated[str | None, typer.Option()] = None,
    indicator: Annotated[str | None, typer.Option()] = None,
    area: Annotated[str | None, typer.Option()] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """This run against an earlier one: value, previous value, change and trend per area and indicator."""
    with _service() as (hc, conn):
        with conn.cursor() as cur:
            out = hc.compare(cur, run_id, other, level=level, indicator=indicator, area=area)
    if as_json:
        _echo_json(out)
        return
    typer.echo(f"运行 {out['run_id']}（{out['year']}）对比 / against run {out['previous_run_id']} ({out['previous_year']})")
    for r in out["rows"]:
        change = "" if r["change"] is None else f"{r['change']:+.4g}"
        typer.echo(f"{r['indicator']:<32} {r['area_code']:<13} {r['previous_value']!s:>12} → {r['value']!s:<12} "
                   f"{change:>10}  {r['trend']}")


@app.command("report")
def report_cmd(
    run_id: Annotated[int, typer.Argument()],
    out: Annotated[Path, typer.Option("--out", help="体检报告.xlsx or .html")],
) -> None:
    """Write the report of a run: an Excel workbook or a printable HTML page (by the suffix)."""
    try:
        with _service() as (hc, conn):
            path = hc.report(conn, run_id, out)
    except OSError as exc:
        typer.echo(f"错误 / error: 无法写入 {out} / cannot write {out}: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"已写出 / written {path}")


if __name__ == "__main__":  # pragma: no cover
    app(sys.argv[1:])
