"""Data versions: the one reader of ``cim.data_version`` and the watcher that follows it.

A statement trigger bumps the counter of a source table on every change to it (migration
0001; the DEM has its own key, :data:`cim.schema.DEM_VERSION_KEY`), and migration 0030 makes
every bump ``NOTIFY cim_data_version`` at commit. Caches key on these versions (vector tiles,
3D Tiles, layer statistics), so new data makes new keys and nothing is ever purged by hand.

:func:`read` is the synchronous reader (psycopg2: CLIs, builds, batch jobs, the heartbeat). A
statement that needs versions inside itself (comparing stored stamps with the current versions
in one statement) takes the SQL expression :func:`version_sql` instead of spelling out the table.
The server keeps one :class:`VersionWatcher` (``app.state.versions``): it LISTENs on the channel
and re-reads the table about once a second in case the listening connection drops, so a request
that needs the versions of its tables (tiles, 3D Tiles, ``/api/versions``) gets them from memory,
without a database round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import psycopg2.extensions

if TYPE_CHECKING:                   # asyncpg is the server's: CLIs that read versions do not load it
    import asyncpg

    from cim.dbcall import AsyncConn

log = logging.getLogger(__name__)

CHANNEL = "cim_data_version"
_SQL = "SELECT source_table, version FROM cim.data_version"


def read(cur: psycopg2.extensions.cursor, tables: Iterable[str] | None = None) -> dict[str, int]:
    """Current version of every source table (or of ``tables``, 0 for one never bumped)."""
    cur.execute(_SQL)
    found = {str(t): int(v) for t, v in cur.fetchall()}
    if tables is None:
        return found
    return {t: found.get(t, 0) for t in tables}


def version_sql(key: str) -> str:
    """SQL expression for the current version of the source table named by the SQL expression ``key``
    (0 for one never bumped, as :func:`read` gives it), to embed in a larger statement.

    ``key`` is SQL text written in code (a column such as ``s.source_table`` or a quoted literal),
    never a value from a request: values go in as query parameters.
    """
    return f"coalesce((SELECT d.version FROM cim.data_version d WHERE d.source_table = {key}), 0)"


async def read_async(conn: AsyncConn | asyncpg.Pool) -> dict[str, int]:
    """Current version of every source table (asyncpg)."""
    return {r["source_table"]: int(r["version"]) for r in await conn.fetch(_SQL)}


class VersionWatcher:
    """Current data version per source table, pushed by NOTIFY and polled as a fallback."""

    def __init__(self, url: str, poll_s: float = 1.0) -> None:
        self.url = url
        self.poll_s = poll_s
        self.versions: dict[str, int] = {}
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._task: asyncio.Task[Any] | None = None

    async def start(self, pool: asyncpg.Pool) -> None:
        """Read the versions, LISTEN for bumps and start the fallback poll."""
        import asyncpg

        self._pool = pool
        await self.refresh()
        try:
            self._listener = await asyncpg.connect(self.url)
            await self._listener.add_listener(CHANNEL, self._notified)
        except (OSError, asyncpg.PostgresError) as exc:  # polling alone still keeps caches fresh
            log.warning("data versions: LISTEN %s failed (%s); polling only", CHANNEL, exc)
            self._listener = None
        self._task = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        """Stop listening and polling."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()

    def _notified(self, _conn: AsyncConn, _pid: int, _channel: str, payload: object) -> None:
        table, _, version = str(payload).rpartition(":")  # asyncpg passes the payload as str
        with contextlib.suppress(ValueError):
            self._raise(table, int(version))

    def _raise(self, table: str, version: int) -> None:
        if version > self.versions.get(table, 0):
            self.versions[table] = version

    async def refresh(self) -> None:
        """Re-read ``cim.data_version`` (one small table)."""
        if self._pool is None:
            return
        async with self._pool.acquire() as conn:
            found = await read_async(conn)
        for table, version in found.items():
            self._raise(table, version)

    async def _poll(self) -> None:
        import asyncpg

        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.refresh()
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                log.warning("data versions: poll failed: %s", exc)

    def of(self, tables: tuple[str, ...]) -> tuple[int, ...]:
        """Versions of these source tables (0 for a table never seen)."""
        return tuple(self.versions.get(t, 0) for t in tables)

    def mapping(self, tables: Iterable[str]) -> dict[str, int]:
        """``{table: version}`` of these source tables (0 for a table never seen)."""
        return {t: self.versions.get(t, 0) for t in tables}
