"""The ``cim`` command line.

The root program owns ``cim db``, ``cim token``, ``cim tier`` (:mod:`cim.tier_cli`), ``cim backup`` and
``cim restore``; every other group (``layers``, ``ingest``,
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
from pathlib import Path
from typing import Annotated, Any

import typer

from cim import auth, db, migrate
from cim.embedded import EmbeddedCluster
from cim.errors import BackupRejected, CimError
from cim.settings import DatabaseSettings, load

log = logging.getLogger(__name__)

app = typer.Typer(name="cim", help="CIM 一张图 platform / city information model one-map platform.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database: embedded cluster and migrations / 数据库", no_args_is_help=True)
token_app = typer.Typer(help="API tokens / 访问令牌", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")
_CORE_COMMANDS = frozenset({"db", "token", "tier", "backup", "restore"})


def fail(exc: CimError, code: int = 2) -> None:
    """Print a domain error bilingually on stderr and exit."""
    typer.echo(f"错误 / error [{exc.code}]: {exc.zh}\n  {exc.en}", err=True)
    raise typer.Exit(code)


def cli_principal() -> auth.Principal:
    """The local operator running the CLI (audited under the OS user name)."""
    return auth.Principal(name=f"cli:{getpass.getuser()}", role=auth.Role.admin)


def _cluster(settings: DatabaseSettings) -> EmbeddedCluster:
    return EmbeddedCluster(settings.home_dir, settings.pg_bindir, settings.db_os_user, listen=settings.db_listen)


@db_app.command("up")
def db_up(migrate_schema: Annotated[bool, typer.Option("--migrate/--no-migrate")] = True) -> None:
    """Start the embedded cluster (create it first if needed) and apply migrations."""
    settings = DatabaseSettings()
    try:
        if settings.database_url:
            typer.echo("CIM_DATABASE_URL 已设置，使用外部数据库 / using the external database from CIM_DATABASE_URL")
        else:
            cluster = _cluster(settings)
            info = cluster.start()
            typer.echo(f"本地数据库已启动 / local database running on {cluster.listen}:{info.port}")
            if cluster.restart_needed():
                typer.echo("CIM_DB_LISTEN 已更改，重启后生效（cim db down && cim db up） / CIM_DB_LISTEN changed: "
                           "restart the database to apply it", err=True)
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
    out: dict[str, Any] = {"external": bool(settings.database_url)}
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
                    row = cur.fetchone()
                    assert row is not None
                    out["postgis"], out["postgres"] = row
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


@app.command("backup")
def backup_cmd(
    out: Annotated[Path, typer.Argument(help="new or empty directory for the backup / 备份目录（新建或空目录）")],
    as_json: Annotated[bool, typer.Option("--json", help="print the manifest summary as JSON")] = False,
) -> None:
    """Back up the database (pg_dump, one consistent snapshot), the delivery archive and the DEMs / 备份数据库与成果文件。"""
    from cim import backup

    say = (lambda _m: None) if as_json else (lambda m: typer.echo(m, err=True))
    try:
        manifest = backup.backup(load(), out, principal=cli_principal(), progress=say)
    except BackupRejected as exc:
        fail(exc, 1)
    except CimError as exc:
        fail(exc)
    for w in manifest["warnings"]:
        typer.echo(f"警告 / warning: {w}", err=True)
    summary = {"out": str(Path(out).expanduser().resolve()), "tables": len(manifest["tables"]),
               "rows": sum(t["rows"] for t in manifest["tables"].values()),
               "files": {k: len(v["files"]) for k, v in manifest["file_sets"].items()},
               "dump_bytes": manifest["database"]["size"], "snapshot_at": manifest["source"]["snapshot_at"],
               "migrations": len(manifest["migrations"]), "warnings": manifest["warnings"]}
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False))
    else:
        typer.echo(f"备份完成 / backup written: {summary['out']}  {summary['tables']} 张表 / tables, "
                   f"{summary['rows']} 行 / rows, 文件 / files {summary['files']}")


@app.command("restore")
def restore_cmd(
    src: Annotated[Path, typer.Argument(metavar="IN", help="backup directory written by `cim backup`")],
    force: Annotated[bool, typer.Option("--force", help="replace a non-empty database (drops the cim schemas)")] = False,
    check: Annotated[bool, typer.Option("--check", help="only verify the backup's files; touch no database")] = False,
    migrate_after: Annotated[bool, typer.Option("--migrate/--no-migrate",
                                                help="apply newer migrations after the restore")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Restore a backup into an empty database (the embedded cluster is created when needed) / 从备份恢复。"""
    from cim import restore

    say = (lambda _m: None) if as_json else (lambda m: typer.echo(m, err=True))
    warn = lambda m: typer.echo(m, err=True)  # noqa: E731
    try:
        if check:
            res = restore.check(src, progress=say)
            result = {"ok": True, "bytes_checked": res["bytes_checked"], "created_at": res["manifest"]["created_at"]}
        else:
            result = restore.restore(load(), src, force=force, run_migrations=migrate_after,
                                     principal=cli_principal(), progress=say, warn=warn)
    except BackupRejected as exc:
        fail(exc, 1)
    except CimError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, default=str))
    elif check:
        typer.echo(f"备份完好 / backup verified: {result['bytes_checked']} bytes")
    else:
        typer.echo(f"恢复完成 / restored: {result['tables']} 张表 / tables, {result['rows']} 行 / rows, "
                   f"文件 / files {result['files']}; 迁移 / migrations applied: "
                   f"{', '.join(result.get('migrations_applied') or []) or '-'}")
        for removed in result["stale_3d_builds_removed"]:
            typer.echo(f"已作废三维瓦片构建 / 3D Tiles build marked stale: {removed} (cim tiles3d build)", err=True)


def _add_tier_commands() -> None:
    from cim.tier_cli import app as tier_app
    app.add_typer(tier_app, name="tier")


_add_tier_commands()


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
    except Exception as exc:  # a defect of the platform, not of the input: said plainly, exit 70
        log.debug("internal error", exc_info=True)
        typer.echo(f"内部错误 / internal error: {type(exc).__name__}: {exc}\n"
                   "  请报告此问题（CIM_LOG_LEVEL=DEBUG 显示调用栈）/ please report it "
                   "(CIM_LOG_LEVEL=DEBUG shows the traceback)", err=True)
        sys.exit(70)
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
