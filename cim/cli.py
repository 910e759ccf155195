"""The ``cim`` command line.

The root program owns ``cim db`` and ``cim token``; every other group (``layers``, ``ingest``,
``demo``, ``tiles``, ``tiles3d``, ``serve`` ...) is contributed by its package through the
``cim.commands`` entry-point group in ``pyproject.toml``, so ``cim`` never imports a package
above it. Exit codes: 0 ok, 1 rejected / failed check, 2 unusable input or environment.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import sys
from importlib.metadata import entry_points
from typing import Annotated

import typer

from cim import auth, db, migrate
from cim.embedded import EmbeddedCluster
from cim.errors import CimError
from cim.settings import DatabaseSettings

log = logging.getLogger(__name__)

app = typer.Typer(name="cim", help="CIM 一张图 platform / city information model one-map platform.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database: embedded cluster and migrations / 数据库", no_args_is_help=True)
token_app = typer.Typer(help="API tokens / 访问令牌", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")
_CORE_COMMANDS = frozenset({"db", "token"})


def fail(exc: CimError, code: int = 2) -> None:
    """Print a domain error bilingually on stderr and exit."""
    typer.echo(f"错误 / error [{exc.code}]: {exc.zh}\n  {exc.en}", err=True)
    raise typer.Exit(code)


def cli_principal() -> auth.Principal:
    """The local operator running the CLI (audited under the OS user name)."""
    return auth.Principal(name=f"cli:{getpass.getuser()}", role=auth.Role.admin)


def _cluster(settings: DatabaseSettings) -> EmbeddedCluster:
    return EmbeddedCluster(settings.home_dir, settings.pg_bindir, settings.db_os_user)


@db_app.command("up")
def db_up(migrate_schema: Annotated[bool, typer.Option("--migrate/--no-migrate")] = True) -> None:
    """Start the embedded cluster (create it first if needed) and apply migrations."""
    settings = DatabaseSettings()
    try:
        if settings.database_url:
            typer.echo("CIM_DATABASE_URL 已设置，使用外部数据库 / using the external database from CIM_DATABASE_URL")
        else:
            info = _cluster(settings).start()
            typer.echo(f"本地数据库已启动 / local database running on 127.0.0.1:{info.port}")
        if migrate_schema:
            _migrate(settings)
    except CimError as exc:
        fail(exc)


def _migrate(settings: DatabaseSettings) -> None:
    conn = db.connect(settings)
    try:
        done = migrate.migrate(conn)
    finally:
        conn.close()
    if done:
        typer.echo("已应用迁移 / applied: " + ", ".join(m.path.name for m in done))
    else:
        typer.echo("数据库结构已是最新 / schema up to date")


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending migrations and re-seed dictionaries."""
    try:
        _migrate(DatabaseSettings())
    except CimError as exc:
        fail(exc)


@db_app.command("down")
def db_down() -> None:
    """Stop the embedded cluster."""
    settings = DatabaseSettings()
    if settings.database_url:
        typer.echo("使用外部数据库，无需停止 / external database in use; nothing to stop")
        return
    try:
        stopped = _cluster(settings).stop()
    except CimError as exc:
        fail(exc)
    typer.echo("已停止 / stopped" if stopped else "未在运行 / not running")


@db_app.command("status")
def db_status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show where the database is, whether it runs, and the migration state."""
    settings = DatabaseSettings()
    out: dict = {"external": bool(settings.database_url)}
    try:
        if not settings.database_url:
            cluster = _cluster(settings)
            info = cluster.info()
            out.update(home=str(cluster.root), created=cluster.exists(), running=cluster.is_running(),
                       port=info.port if info else None, listen=cluster.listen_addresses() if info else [])
        if out.get("running", True):
            conn = db.connect(settings)
            try:
                out["migrations"] = {m.path.name: ok for m, ok in migrate.status(conn)}
                with conn.cursor() as cur:
                    cur.execute("SELECT postgis_lib_version(), current_setting('server_version')")
                    out["postgis"], out["postgres"] = cur.fetchone()
            finally:
                conn.close()
    except CimError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(out, ensure_ascii=False))
    else:
        for k, v in out.items():
            typer.echo(f"{k}: {v}")
    if out.get("running") is False:
        raise typer.Exit(1)


@db_app.command("url")
def db_url() -> None:
    """Print the database URL (contains the password of the local cluster)."""
    try:
        typer.echo(db.resolve_url(DatabaseSettings()))
    except CimError as exc:
        fail(exc)


@db_app.command("psql", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def db_psql(ctx: typer.Context) -> None:
    """Open psql on the database (extra arguments are passed through)."""
    try:
        url = db.resolve_url(DatabaseSettings())
    except CimError as exc:
        fail(exc)
    os.execvp("psql", ["psql", url, *ctx.args])


@token_app.command("create")
def token_create(
    role: Annotated[auth.Role, typer.Option(help="admin | uploader | viewer | client | inspector | supervisor | city | province")],
    county: Annotated[list[str] | None, typer.Option(help="county code (repeatable; scope of uploader, inspector, supervisor; city / province code for city, province)")] = None,
    expires: Annotated[int | None, typer.Option(help="days until expiry")] = None,
    name: Annotated[str, typer.Option(help="label shown in `cim token list`")] = "",
) -> None:
    """Create a token and print it once."""
    try:
        conn = db.connect(DatabaseSettings())
        with db.transaction(conn) as cur:
            tok = auth.create_token(cur, name=name or role.value, role=role, counties=county or [],
                                    expires_days=expires)
            auth.audit(cur, cli_principal(), "token.create", target=f"token:{tok.id}",
                       detail={"role": role.value, "counties": county or [], "expires_days": expires})
        conn.close()
    except CimError as exc:
        fail(exc)
    typer.echo(tok.secret)
    typer.echo(f"# id={tok.id} role={tok.role.value} 仅显示一次 / shown once", err=True)


@token_app.command("revoke")
def token_revoke(token_id: int) -> None:
    """Revoke a token by id."""
    try:
        conn = db.connect(DatabaseSettings())
        with db.transaction(conn) as cur:
            auth.revoke_token(cur, token_id)
            auth.audit(cur, cli_principal(), "token.revoke", target=f"token:{token_id}")
        conn.close()
    except CimError as exc:
        fail(exc, 1)
    typer.echo(f"已吊销 / revoked {token_id}")


@token_app.command("list")
def token_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List tokens (never their secrets)."""
    try:
        conn = db.connect(DatabaseSettings())
        with conn.cursor() as cur:
            rows = auth.list_tokens(cur)
        conn.close()
    except CimError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(rows, default=str, ensure_ascii=False))
        return
    for r in rows:
        state = "revoked" if r["revoked_at"] else "active"
        typer.echo(f"{r['id']:>4}  {r['role']:<8} {state:<8} cim_{r['token_prefix']}_…  "
                   f"{','.join(r['counties'] or []) or '-':<14} expires={r['expires_at'] or '-'}  {r['name']}")


def _load_plugins(argv: list[str]) -> None:
    """Attach the command groups other packages register under ``cim.commands``.

    ``cim <plugin> …`` loads only that plugin (each pulls in its own libraries, so a command
    starts faster); ``cim --help`` and unknown commands load them all.
    """
    plugins = sorted(entry_points(group="cim.commands"), key=lambda e: e.name)
    first = next((a for a in argv[1:] if not a.startswith("-")), None)
    chosen = [ep for ep in plugins if ep.name == first]
    if not chosen and first in _CORE_COMMANDS:
        return
    for ep in chosen or plugins:
        obj = ep.load()
        if isinstance(obj, typer.Typer):
            app.add_typer(obj, name=ep.name)
        else:
            app.command(ep.name)(obj)


_KEPT: list[object] = []


def keep_until_exit(obj: object) -> None:
    """Let the process end without freeing ``obj`` (and without tearing the interpreter down).

    A command that held a whole delivery in memory would otherwise spend a noticeable share of
    its run freeing millions of small objects after its work is done (mypy exits the same way
    for the same reason). Only :func:`main`, the console entry point, honours this; a command
    run in-process (tests) frees as usual.
    """
    _KEPT.append(obj)


def main() -> None:
    """Console entry point."""
    logging.basicConfig(level=os.environ.get("CIM_LOG_LEVEL", "WARNING"),
                        format="%(levelname)s %(name)s: %(message)s")
    _load_plugins(sys.argv)
    try:
        app()
    except CimError as exc:
        typer.echo(f"错误 / error [{exc.code}]: {exc.zh}\n  {exc.en}", err=True)
        sys.exit(2)
    except SystemExit as exc:
        if not _KEPT:
            raise
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)


if __name__ == "__main__":
    main()
