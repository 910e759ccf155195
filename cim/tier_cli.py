"""``cim tier …``: link this instance with the other tiers (省 ← 市 ← 县), see docs/tiers.md.

- ``cim tier init CODE --name N``   give this instance its identity and id block (once; moves
  existing rows into the block);
- ``cim tier publish``              on a county (or city): create or refresh the publication and the
  replication role; prints what a subscriber needs (the password once);
- ``cim tier subscribe URL --county CODE [--name N]`` on a city or province;
- ``cim tier list``                 identity, publication, subscribers, subscriptions, lower-tier status;
- ``cim tier drop NAME [--purge]`` / ``cim tier drop --publication``;
- ``cim tier refresh``              after an upgrade: new tables published and subscribed;
- ``cim tier beat``                 write this instance's heartbeat now (for a timer when no server runs).

Exit codes: 0 done, 1 refused (conflict, forbidden), 2 unusable input or environment.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Annotated, Any, NoReturn

import psycopg2.extensions
import typer

from cim import auth, db, heartbeat, tiers
from cim.embedded import LOOPBACK, EmbeddedCluster
from cim.errors import CimError, Conflict, Forbidden, NotFound
from cim.settings import Settings, load

app = typer.Typer(help="Linked tiers: county → city → province / 省市县平台级联", no_args_is_help=True)


def _principal() -> auth.Principal:
    from cim.cli import cli_principal
    return cli_principal()


def _fail(exc: CimError) -> NoReturn:
    code = 1 if isinstance(exc, (Conflict, Forbidden, NotFound)) else 2
    typer.echo(f"错误 / error [{exc.code}]: {exc.zh}\n  {exc.en}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def _database(settings: Settings) -> Iterator[psycopg2.extensions.connection]:
    """The connection of one command; a domain error ends the command with its exit code and message."""
    try:
        conn = db.connect(settings.db)
        try:
            yield conn
        finally:
            conn.close()
    except CimError as exc:
        _fail(exc)


def _cluster(settings: Settings) -> EmbeddedCluster | None:
    if settings.db.database_url:
        return None
    return EmbeddedCluster(settings.db.home_dir, settings.db.pg_bindir, settings.db.db_os_user,
                           listen=settings.db.db_listen)


def _echo(data: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, default=str))
    else:
        for line in lines:
            typer.echo(line)


@app.command("init")
def init_cmd(
    code: Annotated[str, typer.Argument(help="GB/T 2260 code of this platform, e.g. 430703 / 430700 / 430000")],
    name: Annotated[str, typer.Option(help="platform name, e.g. 鼎城区")],
    level: Annotated[str | None, typer.Option(help="province | city | county (default: from the code)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Give this instance its tier identity and id block (rows numbered before move into it once)."""
    settings = load()
    with _database(settings) as conn:
        res = tiers.init(conn, code, name, level=level, dem_dir=settings.db.home_dir / "dem", principal=_principal())
    moved = ", ".join(f"{k} {v}" for k, v in res["renumbered"].items()) or "-"
    _echo(res, as_json, [f"本平台 / this instance: {res['code']} {res['name']} ({res['level']})",
                         f"编号区间 / id block: {res['id_base'] + 1} … {res['id_max']}",
                         f"已移入区间的行 / rows moved into the block: {moved}"])


@app.command("publish")
def publish_cmd(
    host: Annotated[str | None, typer.Option(help="address subscribers reach this database at "
                                                  "(default: the first address of CIM_DB_LISTEN)")] = None,
    allow: Annotated[list[str] | None, typer.Option(help="network a subscriber connects from, e.g. 10.2.0.0/24 "
                                                         "(repeatable; adds a pg_hba entry for the replication role)")] = None,
    ssl: Annotated[bool, typer.Option("--ssl", help="require TLS for the replication role (hostssl, sslmode=require)")] = False,
    new_password: Annotated[bool, typer.Option("--new-password", help="give the replication role a new password")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create or refresh this instance's publication and replication role; print what a subscriber needs."""
    settings = load()
    cluster = _cluster(settings)
    warnings: list[str] = []
    with _database(settings) as conn:
        res = tiers.publish(conn, principal=_principal(), new_password=new_password)
        hba = tiers.hba_lines(res["database"], allow or [], ssl=ssl)
        if cluster is not None:
            merged = list(dict.fromkeys([*cluster.hba_block(), *hba]))
            if hba:
                cluster.set_hba_block(merged)
            info = cluster.info()
            port = info.port if info else 5432
            listen = [a for a in cluster.listen.split(",") if a not in (LOOPBACK, "*")]
            host = host or (listen[0] if listen else LOOPBACK)
            if cluster.listen == LOOPBACK:
                warnings.append("本地数据库只监听 127.0.0.1：其他机器上的订阅方无法连接，请设置 CIM_DB_LISTEN 后重启（cim db down && cim db up） / "
                                "the embedded database listens on 127.0.0.1 only: subscribers on other machines "
                                "cannot connect until CIM_DB_LISTEN is set and the database restarted")
            elif cluster.restart_needed():
                warnings.append("CIM_DB_LISTEN 已更改，请重启本地数据库使其生效（cim db down && cim db up） / "
                                "CIM_DB_LISTEN changed: restart the embedded database to apply it")
            res["pg_hba"] = {"applied": merged}
        else:
            port = conn.info.port
            host = host or (conn.info.host if conn.info.host and not conn.info.host.startswith("/") else LOOPBACK)
            res["pg_hba"] = {"to_add": hba}
            if hba:
                warnings.append("外部数据库：请把以下行加入 pg_hba.conf 并重新加载 / external database: add these lines "
                                "to its pg_hba.conf and reload it")
    res.update(host=host, port=port, warnings=warnings,
               url=tiers.subscriber_url(res["password"], host, port, res["database"], ssl=ssl))
    lines = [f"发布 / publication: {res['publication']}  ({len(res['tables'])} 张表 / tables, {res['row_filter']})",
             f"主机 / host: {host}", f"端口 / port: {port}", f"数据库 / database: {res['database']}",
             f"角色 / role: {res['role']}"]
    if res["password"]:
        lines.append(f"口令 / password: {res['password']}   （仅显示一次 / shown once）")
        lines.append(f"订阅方运行 / on the subscriber run:\n  cim tier subscribe '{res['url']}' "
                     f"--county {res['identity']['code']}")
    else:
        lines.append("口令未变（--new-password 可更换） / password unchanged (--new-password rotates it)")
    for line in res["pg_hba"].get("applied") or res["pg_hba"].get("to_add") or []:
        lines.append(f"pg_hba: {line}")
    lines += [f"警告 / warning: {w}" for w in warnings]
    _echo(res, as_json, lines)


@app.command("subscribe")
def subscribe_cmd(
    url: Annotated[str, typer.Argument(help="postgresql://cim_replicator:PASSWORD@host:port/cim (from `cim tier publish`)")],
    county: Annotated[str, typer.Option(help="code of the lower-tier instance, e.g. 430703")],
    name: Annotated[str | None, typer.Option(help="subscription name (default cim_<this>_from_<county>)")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="delete rows of that county held here before copying")] = False,
    wait: Annotated[float, typer.Option(help="seconds to wait for the initial copy (0: do not wait)")] = 120.0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Subscribe to a lower-tier instance: its rows replicate here, read-only."""
    settings = load()
    with _database(settings) as conn:
        res = tiers.subscribe(conn, url, county, principal=_principal(), name=name, replace=replace)
        res["copied"] = _wait_copied(conn, res["name"], wait) if wait > 0 else None
    state = {True: "初始同步完成 / initial copy done", False: "初始同步仍在进行（cim tier list 查看） / initial copy "
             "still running (see cim tier list)", None: "初始同步在后台进行 / initial copy runs in the background"}
    _echo(res, as_json, [f"已订阅 / subscribed: {res['name']} ← {res['publisher']} ({res['publication']})",
                         state[res["copied"]]])


def _wait_copied(conn: psycopg2.extensions.connection, name: str, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while True:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) > 0 AND bool_and(r.srsubstate IN ('r', 's')) FROM pg_subscription_rel r "
                        "JOIN pg_subscription s ON s.oid = r.srsubid WHERE s.subname = %s", (name,))
            row = cur.fetchone()
            assert row is not None
            done = bool(row[0])
        conn.rollback()
        if done or time.monotonic() > deadline:
            return done
        time.sleep(0.5)


@app.command("list")
def list_cmd(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Identity, publication, downstream subscribers, subscriptions and the lower-tier status."""
    settings = load()
    with _database(settings) as conn:
        out = tiers.describe(conn)
        with conn.cursor() as cur:
            out["status"] = heartbeat.status(cur, settings.tier)
        conn.rollback()
    ident = out["identity"]
    lines = [f"本平台 / this instance: {ident['code']} {ident['name']} ({ident['level']})" if ident
             else "本平台未设置级联身份 / no tier identity (cim tier init)"]
    if out["publication"]:
        lines.append(f"发布 / publication: {out['publication']['name']} ({len(out['publication']['tables'])} tables)")
    for d in out["downstream"]:
        lines.append(f"  下游 / subscriber slot {d['slot_name']}: {'active' if d['active'] else 'INACTIVE'}, "
                     f"WAL retained {d['retained_wal_bytes'] or 0} B, lag {d['replay_lag_s'] or 0:.1f} s")
    for s in out["subscriptions"]:
        lines.append(f"订阅 / subscription {s['name']} ← {s['county_code']} {s['publisher']}: "
                     f"{'running' if s['running'] else 'NOT RUNNING'}, tables {s['tables_ready']}/{s['tables']}, "
                     f"apply errors {s['apply_errors']}")
    for i in out["status"]["instances"]:
        age = f"{i['age_s']:.0f} s" if i.get("age_s") is not None else "-"
        lines.append(f"  [{i['status']}] {i['code']} {i.get('name') or ''} ({i['level']}): heartbeat age {age}; "
                     + "; ".join(r["en"] for r in i["reasons"]))
    _echo(out, as_json, lines)


@app.command("drop")
def drop_cmd(
    name: Annotated[str | None, typer.Argument(help="subscription to drop (see `cim tier list`)")] = None,
    purge: Annotated[bool, typer.Option("--purge", help="also delete the rows the subscription brought")] = False,
    publication: Annotated[bool, typer.Option("--publication", help="drop this instance's publication, its "
                                                                   "replication role and its unused slots")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Drop a subscription (optionally with its rows), or this instance's publication."""
    if bool(name) == publication:
        typer.echo("请给出订阅名，或使用 --publication / give a subscription name or --publication", err=True)
        raise typer.Exit(2)
    settings = load()
    with _database(settings) as conn:
        if publication:
            res = tiers.drop_publication(conn, principal=_principal())
            cluster = _cluster(settings)
            if cluster is not None and cluster.hba_block():
                cluster.set_hba_block([])
        else:
            assert name is not None  # checked above: a name is given unless --publication
            res = tiers.drop_subscription(conn, name, principal=_principal(), purge_rows=purge)
    if publication:
        lines = [f"已删除发布 / dropped publication {res['publication']}; slots: {', '.join(res['slots_dropped']) or '-'}"]
    else:
        lines = [f"已删除订阅 / dropped subscription {res['name']}; rows deleted: {res['purged'] or '-'}"]
        if res["slot_left_on_publisher"]:
            lines.append(f"警告 / warning: 下级平台不可达，其复制槽 {res['slot_left_on_publisher']} 仍保留 WAL，请在对方运行 "
                         f"cim tier drop --publication 或 SELECT pg_drop_replication_slot('{res['slot_left_on_publisher']}') / "
                         "the publisher was unreachable: drop its slot there, it retains WAL")
    _echo(res, as_json, lines)


@app.command("refresh")
def refresh_cmd(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """After an upgrade: prepare new tables, re-publish, and copy tables new to the subscriptions."""
    settings = load()
    with _database(settings) as conn:
        res = tiers.refresh(conn, principal=_principal())
    lines = [f"已准备 / prepared: {len(res['tables'])} 张表 / tables; 已重新发布 / republished: {res['republished']}; "
             f"已刷新订阅 / subscriptions refreshed: {', '.join(n for n in res['subscriptions'] if n not in res['failed']) or '-'}"]
    lines += [f"警告 / warning: {n}: {m}" for n, m in res["failed"].items()]
    _echo(res, as_json, lines)
    if res["failed"]:
        raise typer.Exit(1)


@app.command("beat")
def beat_cmd() -> None:
    """Write this instance's heartbeat now (skipped when a server process wrote one just now)."""
    settings = load()
    with _database(settings) as conn:
        wrote = heartbeat.beat(conn, interval_s=settings.tier.heartbeat_s)
    typer.echo("已写入心跳 / heartbeat written" if wrote else "未写入（无身份或刚写过） / not written (no identity, "
               "or a fresh one exists)")
