"""Data versions: the one reader of ``cim.data_version`` and the watcher that follows it.

A statement trigger bumps the counter of a source table on every change to it (migration
0001; the DEM has its own key, :data:`cim.schema.DEM_VERSION_KEY`), and migration 0030 makes
every bump ``NOTIFY cim_data_version`` at commit. Caches key on these versions (vector tiles,
3D Tiles, layer statistics), so new data makes new keys and nothing is ever purged by hand.

:func:`read` is the synchronous reader (psycopg2: CLIs, builds, batch jobs). The server keeps
one :class:`VersionWatcher` (``app.state.versions``): it LISTENs on the channel and re-reads the
table about once a second in case the listening connection drops, so a request that needs the
versions of its tables gets them from memory, without a database round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

import asyncpg
import psycopg2.extensions

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


async def read_async(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, int]:
    """Current version of every source table (asyncpg)."""
    return {r["source_table"]: int(r["version"]) for r in await conn.fetch(_SQL)}


class VersionWatcher:
    """Current data version per source table, pushed by NOTIFY and polled as a fallback."""

    def __init__(self, url: str, poll_s: float = 1.0) -> None:
        self.url = url
        self.poll_s = poll_s
        self.versions: dict[str, int] = {}
        self.refreshed_at = 0.0
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._task: asyncio.Task | None = None

    async def start(self, pool: asyncpg.Pool) -> None:
        """Read the versions, LISTEN for bumps and start the fallback poll."""
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

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        table, _, version = payload.rpartition(":")
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
        self.refreshed_at = time.monotonic()

    async def _poll(self) -> None:
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
