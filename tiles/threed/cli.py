"""``cim tiles3d``: build 3D Tiles folders of the buildings and the underground pipelines."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cim.db import resolve_url
from cim.errors import CimError
from cim.settings import load
from tiles.threed.build import FORMATS, build_folder
from tiles.threed.sources import LAYERS

app = typer.Typer(help="3D Tiles (buildings, underground pipelines) / 三维瓦片", no_args_is_help=True)


class Layer(StrEnum):
    """3D layers."""

    buildings = "buildings"
    pipelines = "pipelines"


class Fmt(StrEnum):
    """Content formats."""

    glb = "glb"
    b3dm = "b3dm"


@app.command("build")
def build(
    layer: Annotated[Layer | None, typer.Option("--layer", help="one layer (default: both)")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="parent folder; each layer goes to OUT/<layer>/ "
                                                "(default $CIM_HOME/3dtiles)")] = None,
    fmt: Annotated[Fmt, typer.Option("--format", help="glb (3D Tiles 1.1) or b3dm (3D Tiles 1.0)")] = Fmt.glb,
    workers: Annotated[int, typer.Option(min=1, max=64, help="worker processes")] = 2,
    per_tile: Annotated[int | None, typer.Option(min=1, help="max features per tile (default from the "
                                                    "layer spec)")] = None,
) -> None:
    """Build tileset.json and contents of each layer into a folder (replaced atomically)."""
    settings = load()
    try:
        url = resolve_url(settings.db)
    except CimError as exc:
        typer.echo(f"错误 / error [{exc.code}]: {exc.zh}\n  {exc.en}", err=True)
        raise typer.Exit(2) from None
    base = out or settings.tiles.threed_dir or settings.db.home_dir / "3dtiles"
    assert fmt.value in FORMATS
    results = []
    for name in ([layer.value] if layer else list(LAYERS)):
        with Progress(TextColumn(f"[bold]{name}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      transient=False) as bar:
            task = bar.add_task(name, total=None)

            def tick(done: int, total: int, task=task, bar=bar) -> None:
                bar.update(task, completed=done, total=total)

            try:
                stats = build_folder(url, name, Path(base) / name, workers=workers, fmt=fmt.value,
                                     per_tile=per_tile, progress=tick)
            except CimError as exc:
                typer.echo(f"错误 / error [{exc.code}]: {exc.zh}\n  {exc.en}", err=True)
                raise typer.Exit(2) from None
        rate = stats["features"] / stats["seconds"] if stats["seconds"] else 0
        typer.echo(f"{name}: {stats['features']} 要素 / features, {stats['tiles']} 瓦片 / tiles, "
                   f"{stats['bytes'] / 1e6:.1f} MB, {stats['seconds']:.1f} s ({rate:.0f}/s) → {Path(base) / name}")
        results.append(stats)
    typer.echo(json.dumps(results, ensure_ascii=False))
