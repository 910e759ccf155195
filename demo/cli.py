"""``cim demo``: generate the demo county delivery."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from demo.defects import MODES

app = typer.Typer(help="Demo county / 演示区县数据", no_args_is_help=True)


@app.callback()
def main() -> None:
    """Demo county / 演示区县数据 (鼎城区 430703)."""


@app.command("generate")
def generate_cmd(
    out: Annotated[Path, typer.Option("--out", help="Output directory / 输出目录")],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same bytes")] = 7,
    scale: Annotated[float, typer.Option(help="Town area multiplier (1.0 ≈ 5 km²)")] = 1.0,
    buildings: Annotated[int | None, typer.Option(help="Exact number of buildings")] = None,
    segments: Annotated[int | None, typer.Option(help="At least about this many pipe segments")] = None,
    points: Annotated[int | None, typer.Option(help="At least about this many pipe points")] = None,
    defects: Annotated[str, typer.Option(help="Planted defects: warnings (loads), errors (rejected), none")] = "warnings",
    hazards: Annotated[int, typer.Option(help="Gas hazards to plant per rule G01, G02, G03 (hazard benchmark)")] = 0,
) -> None:
    """Write a synthetic county survey delivery (鼎城区 430703) into OUT."""
    from demo.generate import generate

    if defects not in MODES:
        typer.echo(f"错误 / error: --defects 只能是 / must be one of {', '.join(MODES)}", err=True)
        raise typer.Exit(2)
    if hazards < 0:
        typer.echo("错误 / error: --hazards 不能小于 0 / must not be negative", err=True)
        raise typer.Exit(2)
    for name, value in (("scale", scale), ("buildings", buildings), ("segments", segments), ("points", points)):
        if value is not None and value <= 0:
            typer.echo(f"错误 / error: --{name} 必须大于 0 / must be positive", err=True)
            raise typer.Exit(2)
    try:
        manifest = generate(out, seed=seed, scale=scale, buildings=buildings, segments=segments, points=points,
                            defects=defects, echo=typer.echo, hazards=hazards)
    except OSError as exc:
        typer.echo(f"错误 / error: 无法写入 {out} / cannot write {out}: {exc}", err=True)
        raise typer.Exit(2) from exc
    c = manifest["counts"]
    typer.echo(f"已生成 / generated {out}: {c['pipe_segments']} 管段 segments, {c['pipe_points']} 管点 points, "
               f"{c['buildings']} 建筑 buildings, {c['streetlights']} 路灯 lights, "
               f"{len(manifest['defects'])} 预置缺陷 planted defects")
