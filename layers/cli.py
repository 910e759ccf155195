"""``cim layers``: list the catalogue and validate it against the database."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cim import db
from cim.errors import CimError
from cim.settings import DatabaseSettings
from layers.catalog import load_catalog, validate_against_db

app = typer.Typer(help="Layer catalogue / 图层目录", no_args_is_help=True)


def _fail(exc: CimError) -> None:
    typer.echo(f"错误 / error [{exc.code}]: {exc.zh}\n  {exc.en}", err=True)
    raise typer.Exit(2)


@app.command("list")
def list_layers(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List every layer spec."""
    try:
        catalog = load_catalog()
    except CimError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps([s.model_dump() for s in catalog], ensure_ascii=False))
        return
    for s in catalog:
        typer.echo(f"{s.id:<18} {s.geometry.type:<12} z{s.minzoom}-{s.maxzoom:<3} {s.table:<18} {s.title_zh} / {s.title_en}")


@app.command("validate")
def validate() -> None:
    """Check every spec against the live database (tables, columns, geometry type, SRID)."""
    try:
        catalog = load_catalog()
        conn = db.connect(DatabaseSettings())
        with conn.cursor() as cur:
            problems = validate_against_db(cur, catalog)
        conn.close()
    except CimError as exc:
        _fail(exc)
    for p in problems:
        typer.echo(f"✗ {p}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"✓ {len(catalog)} 个图层全部有效 / all {len(catalog)} layers valid")
