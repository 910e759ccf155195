"""``cim batch``: province-wide builds on Dask (a local cluster, or ``--scheduler tcp://host:8786``)."""

from __future__ import annotations

import json
from enum import StrEnum
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
from cim.errors import CimError
from cim.settings import load

app = typer.Typer(help="Province-wide batch on Dask / 全省批处理（Dask 分布式）", no_args_is_help=True)

Scheduler = Annotated[str | None, typer.Option("--scheduler", help="Dask scheduler address, e.g. tcp://host:8786 "
                                               "(default: a local cluster of --workers processes)")]
Workers = Annotated[int, typer.Option(min=1, max=256, help="processes of the local cluster")]


class Layer(StrEnum):
    """3D layers."""

    buildings = "buildings"
    pipelines = "pipelines"


class Fmt(StrEnum):
    """3D content formats."""

    glb = "glb"
    b3dm = "b3dm"


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
