"""``cim tiles``: pre-generate vector tiles into a PMTiles archive."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cim import db
from cim.errors import CimError
from cim.settings import DatabaseSettings, TileSettings
from layers.catalog import load_catalog
from tiles.pmtiles_export import export, parse_zoom, tile_sizes

app = typer.Typer(help="Vector tiles / 矢量瓦片", no_args_is_help=True)


def _fail(exc: CimError, code: int = 2) -> None:
    typer.echo(f"错误 / error [{exc.code}]: {exc.zh}\n  {exc.en}", err=True)
    raise typer.Exit(code)


@app.command("export")
def export_cmd(
    layers: Annotated[str, typer.Option(help="comma-separated layer ids / 图层，逗号分隔")],
    out: Annotated[Path, typer.Option(help="output .pmtiles file / 输出文件")],
    zoom: Annotated[str, typer.Option(help="zoom range, e.g. 10-16 / 缩放范围")] = "10-16",
    workers: Annotated[int, typer.Option(min=1, max=64, help="worker processes / 进程数")] = 2,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress bar")] = False,
) -> None:
    """Render every tile covering the layers' data into a PMTiles v3 archive (gzip MVT)."""
    try:
        zooms = parse_zoom(zoom)
        url = db.resolve_url(DatabaseSettings())
        catalog = load_catalog()
        with Progress(TextColumn("瓦片 / tiles"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      disable=quiet) as bar:
            task = bar.add_task("export", total=None)
            result = export(url, catalog, TileSettings(), layers, zooms, out, workers=workers,
                            progress=lambda done, total: bar.update(task, completed=done, total=total))
    except CimError as exc:
        _fail(exc, 1 if exc.code == "invalid_input" and "empty" in exc.en else 2)
    typer.echo(f"已写出 / wrote {result.path}: {result.tiles_written} tiles "
               f"({result.tiles_rendered} rendered, {result.bytes / 1e6:.1f} MB)")


@app.command("sizes")
def sizes_cmd(
    zoom: Annotated[str, typer.Option(help="zoom range / 缩放范围")] = "10-18",
    layers: Annotated[str | None, typer.Option(help="layer ids (default: every public layer)")] = None,
) -> None:
    """Largest tile per zoom over the data extent (all layers in one tile by default); exit 1 above the budget."""
    try:
        settings = TileSettings()
        result = tile_sizes(db.resolve_url(DatabaseSettings()), load_catalog(), settings, layers, parse_zoom(zoom))
    except CimError as exc:
        _fail(exc)
    over = False
    for z, row in sorted(result.items()):
        typer.echo(f"z{z:<2} {row['tiles']:>6} tiles, {row['non_empty']:>6} with features, "
                   f"largest {row['largest'] / 1024:8.1f} KB {row['largest_tile'] or ''}")
        over |= row["largest"] > settings.max_tile_kb * 1024
    if over:
        typer.echo(f"超过 {settings.max_tile_kb} KB / above the {settings.max_tile_kb} KB budget", err=True)
        raise typer.Exit(1)
