"""``cim batch``: province-wide builds and county jobs on Dask (a local cluster, or ``--scheduler tcp://host:8786``).

Exit codes: 0 ok; 1 rejected (an empty export, a county without data, a county's job rejected);
2 unusable input or environment (an unreachable scheduler, a bad option, a county's job failing).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cim import db
from cim.cli import cli_principal
from cim.errors import CimError, CrsError, InvalidInput, UnreadableInput
from cim.settings import load
from tiles.threed.cli import Fmt, Layer  # the options of cim tiles3d build

app = typer.Typer(help="Province-wide batch on Dask / 全省批处理（Dask 分布式）", no_args_is_help=True)

Scheduler = Annotated[str | None, typer.Option("--scheduler", help="Dask scheduler address, e.g. tcp://host:8786 "
                                               "(default: a local cluster of --workers processes)")]
Workers = Annotated[int, typer.Option(min=1, max=256, help="processes of the local cluster")]




def _fail(exc: CimError, code: int = 2) -> None:
    typer.echo(f"错误 / error [{exc.code}]: {exc.zh}\n  {exc.en}", err=True)
    raise typer.Exit(code)


def _bar(label: str) -> Progress:
    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn())


@app.command("tiles3d")
def tiles3d(
    layer: Annotated[Layer | None, typer.Option("--layer", help="one layer (default: both)")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="parent folder; each layer goes to OUT/<layer>/ "
                                                "(default $CIM_HOME/3dtiles)")] = None,
    fmt: Annotated[Fmt, typer.Option("--format", help="glb (3D Tiles 1.1) or b3dm (3D Tiles 1.0)")] = Fmt.glb,
    per_tile: Annotated[int | None, typer.Option(min=1, help="max features per tile (default from the layer "
                                                    "spec)")] = None,
    scheduler: Scheduler = None,
    workers: Workers = 2,
) -> None:
    """Build the 3D Tiles of every county, one Dask task per tile block; same folder as `cim tiles3d build`."""
    from batch import engine, threed

    settings = load()
    try:
        url = db.resolve_url(settings.db)
        base = Path(out or settings.tiles.threed_dir or settings.db.home_dir / "3dtiles")
        results = []
        with engine.dask_client(scheduler, workers) as client:
            for name in ([layer.value] if layer else [v.value for v in Layer]):
                with _bar(name) as bar:
                    task = bar.add_task(name, total=None)

                    def advance(done: int, total: int, task: TaskID = task, bar: Progress = bar) -> None:
                        bar.update(task, completed=done, total=total)

                    stats = threed.build(client, url, name, base / name, fmt=fmt.value, per_tile=per_tile,
                                         progress=advance)
                typer.echo(f"{name}: {stats['features']} 要素 / features, {stats['tiles']} 瓦片 / tiles, "
                           f"{stats['bytes'] / 1e6:.1f} MB, {stats['seconds']:.1f} s → {base / name}")
                results.append(stats)
    except CimError as exc:
        _fail(exc)
    typer.echo(json.dumps(results, ensure_ascii=False))


@app.command("pmtiles")
def pmtiles(
    layers: Annotated[str, typer.Option(help="comma-separated layer ids / 图层，逗号分隔")],
    out: Annotated[Path, typer.Option(help="output .pmtiles file / 输出文件")],
    zoom: Annotated[str, typer.Option(help="zoom range, e.g. 10-16 / 缩放范围")] = "10-16",
    scheduler: Scheduler = None,
    workers: Workers = 2,
) -> None:
    """Export a PMTiles pyramid over every county, one Dask task per tile block; same archive as `cim tiles export`."""
    from batch import engine
    from batch import pmtiles as export
    from layers.catalog import load_catalog
    from tiles.pmtiles_export import parse_zoom

    settings = load()
    try:
        zooms = parse_zoom(zoom)
        url = db.resolve_url(settings.db)
        with engine.dask_client(scheduler, workers) as client, _bar("瓦片 / tiles") as bar:
            task = bar.add_task("export", total=None)
            result = export.build(client, url, load_catalog(), settings.tiles, layers, zooms, out,
                                  progress=lambda d, t: bar.update(task, completed=d, total=t))
    except CimError as exc:
        _fail(exc, 1 if exc.code == "invalid_input" and "empty" in exc.en else 2)
    typer.echo(f"已写出 / wrote {result.path}: {result.tiles_written} tiles "
               f"({result.tiles_rendered} rendered, {result.bytes / 1e6:.1f} MB)")


Counties = Annotated[str | None, typer.Option("--counties", help="comma-separated county codes / 县级代码，逗号分隔 "
                                              "(default: every county with data)")]


def _codes(text: str | None) -> list[str] | None:
    return ([c.strip() for c in text.split(",") if c.strip()] or None) if text else None


def _county_bar(label: str, fn: Callable[[Callable[[int, int], None]], list]) -> list:
    with _bar(label) as bar:
        task = bar.add_task(label, total=None)
        return fn(lambda d, t: bar.update(task, completed=d, total=t))


def _failures(results: list, rejected: Callable[[dict], bool]) -> None:
    """Print the counties that failed; exit 1 when every failure is a rejection, else 2."""
    failed = [r for r in results if r.error]
    for r in failed:
        e = r.error
        typer.echo(f"错误 / error {r.county} [{e['code']}]: {e['message_zh']}\n  {e['message_en']}", err=True)
    if failed:
        typer.echo(f"{len(failed)} / {len(results)} 个县失败 / counties failed: {','.join(r.county for r in failed)}",
                   err=True)
        raise typer.Exit(1 if all(rejected(r.error) for r in failed) else 2)


@app.command("hazards")
def hazards(
    counties: Counties = None,
    rule: Annotated[str | None, typer.Option("--rules", help="comma-separated rule ids / 规则编号 (default: every "
                                             "enabled rule)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="只统计，不写入台账 / count only, write nothing")] = False,
    incremental: Annotated[bool, typer.Option("--incremental", help="only what changed since each rule last ran")] = False,
    scheduler: Scheduler = None,
    workers: Workers = 2,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Scan the hazard rules over every county, one Dask task per county; same ledger as `cim hazards scan`."""
    from batch import engine
    from batch import hazards as batch_hazards

    settings = load()
    rule_ids = _codes(rule)
    try:
        codes = batch_hazards.plan(settings.db, _codes(counties), rule_ids)
        with engine.dask_client(scheduler, workers) as client:
            results = _county_bar("隐患排查 / hazard scans", lambda progress: batch_hazards.run(
                client, settings.db, settings.hazards, codes, rule_ids=rule_ids, dry_run=dry_run,
                incremental=incremental, who=cli_principal(), progress=progress))
    except CimError as exc:
        _fail(exc, 1 if exc.code == "not_found" else 2)
    done = [r for r in results if r.value is not None]
    if as_json:
        typer.echo(json.dumps([{"county": r.county, "error": r.error, "report": r.value.to_dict() if r.value else None}
                               for r in results], ensure_ascii=False, default=str))
    else:
        head = f"{'县 / county':<12} {'findings':>9} {'new':>7} {'updated':>8} {'unchanged':>10} {'cleared':>8} {'s':>7}"
        typer.echo(head + ("  （试运行，未写入 / dry run, nothing written）" if dry_run else ""))
        sums = dict.fromkeys(("findings", "new", "updated", "unchanged", "cleared"), 0)
        for r in done:
            t = r.value.totals()
            for k in sums:
                sums[k] += t[k]
            typer.echo(f"{r.county:<12} {t['findings']:>9} {t['new']:>7} {t['updated']:>8} {t['unchanged']:>10} "
                       f"{t['cleared']:>8} {r.value.seconds:>7.1f}")
        typer.echo(f"{'合计 / total':<12} {sums['findings']:>9} {sums['new']:>7} {sums['updated']:>8} "
                   f"{sums['unchanged']:>10} {sums['cleared']:>8}   {len(done)} / {len(results)} 个县 / counties")
    _failures(results, lambda e: e["code"] == "not_found")


@app.command("healthcheck")
def healthcheck(
    year: Annotated[int | None, typer.Option(help="year of the check / 体检年份 (default: this year)")] = None,
    counties: Counties = None,
    levels: Annotated[str | None, typer.Option("--levels", help="admin levels: county,street,community "
                                               "(default: the catalogue's)")] = None,
    scheduler: Scheduler = None,
    workers: Workers = 2,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One health-check run per county as Dask tasks; each the run of `cim healthcheck run --county C`."""
    from batch import engine
    from batch import healthcheck as batch_hc
    from cimplus.healthcheck.service import HealthCheck
    from layers.catalog import load_catalog

    settings = load()
    try:
        hc = HealthCheck(load_catalog())
        codes, year_, levels_ = batch_hc.plan(settings.db, hc, _codes(counties), year, _codes(levels))
        with engine.dask_client(scheduler, workers) as client:
            results = _county_bar("城市体检 / health check", lambda progress: batch_hc.run(
                client, settings.db, hc, codes, year=year_, levels=levels_, who=cli_principal(), progress=progress))
    except CimError as exc:
        _fail(exc, 1 if isinstance(exc, InvalidInput) and not isinstance(exc, UnreadableInput | CrsError) else 2)
    done = [r for r in results if r.value is not None]
    if as_json:
        typer.echo(json.dumps([{"county": r.county, "error": r.error, "summary": r.value} for r in results],
                              ensure_ascii=False, default=str))
    else:
        typer.echo(f"体检 / health check {year_}, {','.join(levels_)}")
        for r in done:
            s = r.value
            typer.echo(f"{r.county:<8} run {s['run_id']:>5}: {s['values']:>6} values, {s['computed']:>6} computed, "
                       f"{s['failing']:>5} below target, {s['elapsed_s']:.1f} s")
        typer.echo(f"合计 / total: {len(done)} / {len(results)} 个县 / counties, "
                   f"{sum(r.value['values'] for r in done)} values, {sum(r.value['failing'] for r in done)} below target")
    _failures(results, lambda e: e["code"] == "invalid_input")
