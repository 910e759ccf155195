"""``cim ingest``: load survey deliveries, list and restore them, show the spec profiles.

``cim ingest PATH... [--profile ID] [--county CODE] [--dry-run] [--report FILE]`` loads (the
``load`` sub-command is implied when the first argument is not a sub-command name), so
``cim ingest demo.zip`` and ``cim ingest restore 12`` both work. A ``.tif``/``.tiff`` path is a
DEM and goes to :func:`ingest.dem.store_dem`.

Exit codes: 0 loaded / clean dry run / same file again; 1 rejected (validation errors or rows
the database refuses); 2 unusable input (unreadable file, unknown CRS, no database).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup

from cim import db
from cim.cli import cli_principal, keep_until_exit
from cim.errors import CimError, InvalidInput
from cim.settings import load as load_settings
from ingest import pipeline
from ingest.load import list_deliveries, restore
from ingest.mapping import county as county_mapping

DEM_SUFFIXES = (".tif", ".tiff")
_err = Console(stderr=True)


class _LoadByDefault(TyperGroup):
    """A group whose unknown first argument is a path for the ``load`` command."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's click Context (vendored by recent typer)
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["load", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_LoadByDefault, no_args_is_help=True, add_completion=False,
                  help="Ingest survey deliveries / 成果入库: `cim ingest PATH...`, restore, list, profiles")


def _fail(exc: CimError, code: int) -> None:
    _err.print(f"错误 / error [{exc.code}]: {exc.zh}\n  {exc.en}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _connect():
    settings = load_settings()
    return settings, db.connect(settings.db, application_name="cim-ingest")


_PHASES = {"read": "读取 / reading", "validate": "质检 / validating", "copy": "写入 / loading rows",
           "swap": "切换 / swapping"}


class _Bar:
    """Rich progress bar fed by the pipeline's ``progress(phase, done, total)`` callback."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}
        self.spans: dict[str, list[float]] = {}   # phase → [first, last] monotonic time

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        self.spans.setdefault(phase, [now, now])[1] = now
        if phase not in self.tasks:
            self.tasks[phase] = self.progress.add_task(_PHASES.get(phase, phase), total=max(total, 1))
        self.progress.update(self.tasks[phase], completed=done, total=max(total, 1))

    def seconds(self) -> dict[str, float]:
        """Wall time of each phase (validation and row copy overlap)."""
        return {k: round(b - a, 2) for k, (a, b) in self.spans.items()}


def _store_dems(conn, settings, paths: list[Path], county: str | None = None) -> None:
    try:
        from ingest.dem import store_dem
    except ImportError:
        _err.print("错误 / error: 未安装 DEM 支持（ingest.dem）\n  DEM support not installed (ingest.dem)")
        raise typer.Exit(2) from None
    for path in paths:
        row = store_dem(conn, path, principal=cli_principal(), home=settings.db.home_dir, county=county)
        typer.echo(json.dumps({"dem": str(path), **{k: v for k, v in row.items()
                                                    if k in ("id", "sha256", "srid", "county_code")}},
                              ensure_ascii=False, default=str))


@app.command("load")
def load_cmd(
    paths: Annotated[list[Path], typer.Argument(help="delivery files: zip, shp, gpkg, geojson, csv, xlsx; "
                                                     ".tif/.tiff = DEM")],
    profile: Annotated[str | None, typer.Option(help="spec profile id (default: detected)")] = None,
    county: Annotated[str | None, typer.Option(help="county code, e.g. 430521")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="validate and report only")] = False,
    report: Annotated[list[Path] | None, typer.Option(help="write the report (.xlsx, .html, .json, .csv, or .jsonl: "
                                                              "summary and groups)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the outcome as JSON")] = False,
    maps: Annotated[list[str] | None, typer.Option("--map", help="SOURCE_FIELD=COLUMN, e.g. 建筑层数=floors_above; "
                                                                 "SOURCE_FIELD= maps the field to nothing "
                                                                 "(repeatable)")] = None,
    map_values: Annotated[list[str] | None, typer.Option("--map-value", help="COLUMN:VALUE=CODE, e.g. "
                                                                             "structure_type:砖混=QT (repeatable)")] = None,
) -> None:
    """Validate a delivery and load it atomically (exit 0 loaded, 1 rejected, 2 unreadable).

    The county's saved mapping (``cim ingest profiles``) applies; ``--map`` / ``--map-value`` lie over it."""
    dems = [p for p in paths if p.suffix.lower() in DEM_SUFFIXES]
    files = [p for p in paths if p.suffix.lower() not in DEM_SUFFIXES]
    try:
        user = county_mapping.parse_options(maps, map_values) if (maps or map_values) else None
        settings, conn = _connect()
        try:
            if dems:
                _store_dems(conn, settings, dems, county)
            if not files:
                return
            with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                          TimeElapsedColumn(), console=_err, transient=False) as bar:
                phases = _Bar(bar)
                outcome = pipeline.run(conn, files, settings=settings, principal=cli_principal(), profile=profile,
                                       county=county, dry_run=dry_run, reports=report or [], progress=phases,
                                       user=user)
        finally:
            conn.close()
    except CimError as exc:
        _fail(exc, pipeline.exit_code_for(exc))
    _print_outcome(outcome, as_json, phases.seconds())
    keep_until_exit(outcome)
    raise typer.Exit(outcome.exit_code)


def _print_outcome(outcome: pipeline.Outcome, as_json: bool, seconds: dict[str, float]) -> None:
    s = outcome.summary() | {"seconds": seconds}
    if as_json:
        typer.echo(json.dumps(s, ensure_ascii=False, default=str))
        return
    f = s["findings"]
    typer.echo(f"{s['file']}: {f['error']} 错误 / errors, {f['warning']} 警告 / warnings, {f['info']} 提示 / notes")
    if outcome.state == "rejected":
        typer.echo("质检未通过，成果未入库 / rejected: validation errors, nothing loaded"
                   + (f" (delivery {outcome.delivery_id})" if outcome.delivery_id else ""))
    elif outcome.state == "dry_run":
        typer.echo("试运行：质检通过，未入库 / dry run clean: nothing loaded")
    else:
        typer.echo(f"{s['message_zh']}\n{s['message_en']}")


@app.command("restore")
def restore_cmd(delivery_id: Annotated[int, typer.Argument(help="delivery id (see `cim ingest list`)")]) -> None:
    """Make an earlier delivery current again for its layers (one transaction, audited)."""
    try:
        _, conn = _connect()
        try:
            res = restore(conn, delivery_id, principal=cli_principal())
        finally:
            conn.close()
    except CimError as exc:
        _fail(exc, 1 if exc.code == "conflict" else 2)
    typer.echo(f"{res.message_zh} / {res.message_en}; superseded: {res.superseded or '-'}")


@app.command("list")
def list_cmd(
    county: Annotated[str | None, typer.Option(help="only this county")] = None,
    limit: Annotated[int, typer.Option(help="newest N deliveries")] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Deliveries, newest first: id, county, state, rows, file."""
    try:
        _, conn = _connect()
        try:
            with conn.cursor() as cur:
                rows = list_deliveries(cur, county, limit)
        finally:
            conn.close()
    except CimError as exc:
        _fail(exc, 2)
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, default=str))
        return
    for r in rows:
        rows_n = sum((r["counts"] or {}).values())
        typer.echo(f"{r['id']:>5}  {r['county_code']:<8} {r['state']:<10} {rows_n:>8} rows  "
                   f"{r['submitted_at']:%Y-%m-%d %H:%M}  {r['file_name']}  [{', '.join(r['layers'] or [])}]")


profiles_app = typer.Typer(no_args_is_help=False, add_completion=False, invoke_without_command=True,
                           help="Delivery spec profiles and county mappings / 交付规范与县级映射")
app.add_typer(profiles_app, name="profiles")


@profiles_app.callback()
def profiles_cmd(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False,
                 county: Annotated[str | None, typer.Option(help="county mappings of this county only")] = None) -> None:
    """The delivery spec profiles (built in and from CIM_INGEST_PROFILES) and the counties' saved
    mappings with their versions."""
    if ctx.invoked_subcommand is not None:
        return
    from ingest.mapping.profile import load_profiles

    try:
        profiles = load_profiles()
        mappings = _county_mappings(county)
    except CimError as exc:
        _fail(exc, 2)
    rows = [{"id": p.id, "title_zh": p.title_zh, "title_en": p.title_en, "standard": p.standard,
             "layers": [spec.id for spec in p.layers]} for p in profiles.values()]
    if as_json:
        typer.echo(json.dumps({"profiles": rows, "county_mappings": mappings}, ensure_ascii=False, default=str))
        return
    for r in rows:
        typer.echo(f"{r['id']:<22} {r['title_zh']} / {r['title_en']}  ({r['standard'] or '-'})")
    if mappings:
        typer.echo("\n县级映射 / county mappings:")
    for m in mappings:
        fields = ", ".join(f"{k}→{v or '（不导入 / not mapped）'}" for k, v in m["mapping"].get("fields", {}).items())
        values = ", ".join(f"{c}:{k}→{v}" for c, vm in m["mapping"].get("values", {}).items() for k, v in vm.items())
        typer.echo(f"{m['county']} v{m['version']}  {m['created_at']:%Y-%m-%d %H:%M}  {m['created_by']}"
                   f"{'  job ' + m['source_job'] if m['source_job'] else ''}\n    {fields}"
                   + (f"\n    {values}" if values else ""))


def _county_mappings(county: str | None) -> list[dict]:
    """Saved county mappings; none (and no error) when no database is configured or reachable."""
    try:
        _, conn = _connect()
    except CimError:
        return []
    try:
        with conn.cursor() as cur:
            return county_mapping.listing(cur, county)
    finally:
        conn.close()


@profiles_app.command("save")
def profiles_save_cmd(
    county: Annotated[str, typer.Option(help="county code, e.g. 430702")],
    from_job: Annotated[str | None, typer.Option("--from-job", help="upload job whose mapping to keep")] = None,
    maps: Annotated[list[str] | None, typer.Option("--map", help="SOURCE_FIELD=COLUMN, or SOURCE_FIELD= for not "
                                                                 "mapped (repeatable)")] = None,
    map_values: Annotated[list[str] | None, typer.Option("--map-value", help="COLUMN:VALUE=CODE (repeatable)")] = None,
    note: Annotated[str | None, typer.Option(help="a note kept with the version")] = None,
) -> None:
    """Save a county mapping as its next version (audited): the mapping an upload job used
    (fields proposed or given, values given) and/or --map / --map-value; used for the county's
    next delivery."""
    try:
        given = county_mapping.parse_options(maps, map_values)
        _, conn = _connect()
        try:
            with conn, conn.cursor() as cur:
                mapping = given
                if from_job:
                    job_county, path = county_mapping.job_report(cur, from_job)
                    if job_county != county:
                        raise InvalidInput(f"任务 {from_job} 属于县 {job_county}，不是 {county}",
                                           f"job {from_job} belongs to county {job_county}, not {county}")
                    mapping = given.over(county_mapping.from_report_file(path))
                version = county_mapping.save(cur, county, mapping, principal=cli_principal(), source_job=from_job,
                                              note=note)
        finally:
            conn.close()
    except CimError as exc:
        _fail(exc, 1 if exc.code in ("conflict", "forbidden") else 2)
    typer.echo(f"县级映射已保存 / county mapping saved: {county} v{version} "
               f"({len(mapping.fields)} fields, {sum(len(v) for v in mapping.values.values())} values)")
