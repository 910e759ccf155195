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
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup

from cim import db
from cim.cli import cli_principal, keep_until_exit
from cim.errors import CimError
from cim.settings import load as load_settings
from ingest import pipeline
from ingest.load import list_deliveries, restore

DEM_SUFFIXES = (".tif", ".tiff")
_err = Console(stderr=True)


class _LoadByDefault(TyperGroup):
    """A group whose unknown first argument is a path for the ``load`` command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
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
        self.tasks: dict[str, int] = {}
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


def _store_dems(conn, settings, paths: list[Path]) -> None:
    try:
        from ingest.dem import store_dem
    except ImportError:
        _err.print("错误 / error: 未安装 DEM 支持（ingest.dem）\n  DEM support not installed (ingest.dem)")
        raise typer.Exit(2) from None
    for path in paths:
        row = store_dem(conn, path, principal=cli_principal(), home=settings.db.home_dir)
        typer.echo(json.dumps({"dem": str(path), **{k: v for k, v in row.items() if k in ("id", "sha256", "srid")}},
                              ensure_ascii=False, default=str))


@app.command("load")
def load_cmd(
    paths: Annotated[list[Path], typer.Argument(help="delivery files: zip, shp, gpkg, geojson, csv, xlsx; "
                                                     ".tif/.tiff = DEM")],
    profile: Annotated[str | None, typer.Option(help="spec profile id (default: detected)")] = None,
    county: Annotated[str | None, typer.Option(help="county code, e.g. 430521")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="validate and report only")] = False,
    report: Annotated[list[Path] | None, typer.Option(help="write the report (.xlsx, .html or .json)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the outcome as JSON")] = False,
) -> None:
    """Validate a delivery and load it atomically (exit 0 loaded, 1 rejected, 2 unreadable)."""
    dems = [p for p in paths if p.suffix.lower() in DEM_SUFFIXES]
    files = [p for p in paths if p.suffix.lower() not in DEM_SUFFIXES]
    try:
        settings, conn = _connect()
        try:
            if dems:
                _store_dems(conn, settings, dems)
            if not files:
                return
            with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                          TimeElapsedColumn(), console=_err, transient=False) as bar:
                phases = _Bar(bar)
                outcome = pipeline.run(conn, files, settings=settings, principal=cli_principal(), profile=profile,
                                       county=county, dry_run=dry_run, reports=report or [], progress=phases)
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


@app.command("profiles")
def profiles_cmd(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The delivery spec profiles available (built in and from CIM_INGEST_PROFILES)."""
    from ingest.mapping.profile import load_profiles

    try:
        profiles = load_profiles()
    except CimError as exc:
        _fail(exc, 2)
    rows = [{"id": p.id, "title_zh": p.title_zh, "title_en": p.title_en, "standard": p.standard,
             "layers": [spec.id for spec in p.layers]} for p in profiles.values()]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    for r in rows:
        typer.echo(f"{r['id']:<22} {r['title_zh']} / {r['title_en']}  ({r['standard'] or '-'})")
