"""Database access: URL resolution, connections, identifier quoting, transactions.

Values always travel as bound parameters; identifiers only through :func:`quote_ident` after
they were checked against a whitelist (the layer catalogue or the schema).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from cim.embedded import EmbeddedCluster
from cim.errors import DatabaseUnavailable
from cim.settings import DatabaseSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def quote_ident(name: str) -> str:
    """Quote a whitelisted SQL identifier; refuse anything that is not a plain name."""
    if not _IDENT.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return '"' + name + '"'


def qualified(table: str) -> str:
    """Quote ``schema.table`` (or a bare table, which then lives in schema ``cim``)."""
    schema, _, name = table.rpartition(".")
    return f"{quote_ident(schema or 'cim')}.{quote_ident(name)}"


def resolve_url(settings: DatabaseSettings) -> str:
    """The URL to connect to: ``CIM_DATABASE_URL`` or the running embedded cluster."""
    if settings.database_url:
        return settings.database_url
    cluster = EmbeddedCluster(settings.home_dir, settings.pg_bindir, settings.db_os_user)
    info = cluster.info()
    if info is None:
        raise DatabaseUnavailable(
            "本地数据库尚未创建，请运行 `cim db up`（或设置 CIM_DATABASE_URL）",
            "the local database does not exist yet; run `cim db up` (or set CIM_DATABASE_URL)",
        )
    return info.url


def connect(settings: DatabaseSettings | str, *, autocommit: bool = False,
            application_name: str = "cim") -> psycopg2.extensions.connection:
    """Open a psycopg2 connection with the statement timeout applied."""
    if isinstance(settings, str):
        url, timeout = settings, 0
    else:
        url, timeout = resolve_url(settings), settings.statement_timeout_ms
    try:
        conn = psycopg2.connect(url, application_name=application_name, connect_timeout=10)
    except psycopg2.OperationalError as exc:
        log.warning("database connection failed: %s", exc)
        raise DatabaseUnavailable(
            "无法连接数据库；若使用本地数据库请运行 `cim db up`",
            "cannot connect to the database; run `cim db up` if you use the local one",
        ) from exc
    conn.autocommit = autocommit
    if timeout:
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('statement_timeout', %s, false)", (str(timeout),))
        if not autocommit:
            conn.commit()
    return conn


@contextlib.contextmanager
def transaction(conn: psycopg2.extensions.connection) -> Iterator[psycopg2.extensions.cursor]:
    """Run a block in one transaction: commit on success, roll back on any exception."""
    try:
        with conn.cursor() as cur:
            yield cur
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def fetch_dicts(cur: psycopg2.extensions.cursor, sql: str, params: tuple | dict = ()) -> list[dict]:
    """Execute and return rows as dicts keyed by column name."""
    cur.execute(sql, params)
    cols = [c.name for c in cur.description]
    return [dict(zip(cols, row, strict=False)) for row in cur.fetchall()]


def with_cursor(settings: DatabaseSettings | str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(cursor, *args, **kwargs)`` on a connection of its own, in one transaction, then closed.

    For callers without a connection of their own (an API route handing a psycopg2 reader to a
    worker thread): the connection never outlives the call.
    """
    conn = connect(settings, application_name="cim-api")
    try:
        with transaction(conn) as cur:
            return fn(cur, *args, **kwargs)
    finally:
        conn.close()
