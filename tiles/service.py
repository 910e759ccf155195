"""The tile service: compiled SQL + version-keyed cache + byte budget, independent of HTTP.

``TileService.tile(layers, z, x, y)`` returns a :class:`tiles.cache.TileEntry` (gzip body,
ETag, raw length). A cache hit touches no database; a miss runs the layer set's one prepared
statement on a pooled asyncpg connection. A tile larger than ``TileSettings.max_tile_kb`` is
rendered again with smaller feature caps until it fits (tippecanoe keeps tiles under 500 KB the
same way, by dropping features).
"""

from __future__ import annotations

import asyncio
import hashlib
import json

import asyncpg

from cim.settings import TileSettings
from cim.versions import VersionWatcher
from layers.catalog import Catalog
from tiles.cache import TileCache, TileEntry, make_entry, make_etag
from tiles.mvt import TileCompiler, bounds_query, cap_for_budget, check_tile, layer_stats

_MAX_SHRINK = 4  # at most this many re-renders, each with a lower feature cap


def fingerprint(catalog: Catalog, settings: TileSettings) -> str:
    """Hash of everything besides the data that fixes tile content (specs, extent, buffer, caps)."""
    doc = {"specs": [s.model_dump(mode="json") for s in catalog.public()],
           "tiles": settings.model_dump(mode="json", include={"extent", "buffer", "max_features", "max_tile_kb"})}
    return hashlib.blake2b(json.dumps(doc, sort_keys=True).encode(), digest_size=8).hexdigest()


class TileService:
    """Everything the tile routes need, created at app start-up."""

    def __init__(self, catalog: Catalog, settings: TileSettings, url: str, watcher: VersionWatcher) -> None:
        self.catalog = catalog
        self.settings = settings
        self.url = url
        self.compiler = TileCompiler.from_catalog(catalog, settings)
        self.cache = TileCache(settings.cache_mb * 1024 * 1024)
        self.watcher = watcher
        self.fingerprint = fingerprint(catalog, settings)
        self.budget = settings.max_tile_kb * 1024
        self.pool: asyncpg.Pool | None = None
        self._bounds: dict[tuple, list[float]] = {}

    async def start(self, statement_timeout_ms: int, pool_max: int) -> None:
        """Open the tile pool (the data versions come from the server's shared watcher).

        Tiles get a pool of their own so a burst of map traffic cannot starve the other
        endpoints; its sessions run without parallel workers (on a small server, concurrent
        tile requests already use every core), with generic plans (planned once per connection)
        and with the shared statement timeout.
        """
        async def init(conn: asyncpg.Connection) -> None:
            # generic plans: a tile statement is planned once per connection, not per tile (the
            # index on the column is usable whatever the tile, see tests/tiles/test_tile_sql.py)
            await conn.execute(f"SET statement_timeout = {int(statement_timeout_ms)}; SET jit = off; "
                               "SET max_parallel_workers_per_gather = 0; SET plan_cache_mode = force_generic_plan")

        self.pool = await asyncpg.create_pool(self.url, min_size=1, max_size=pool_max, init=init,
                                              command_timeout=max(statement_timeout_ms / 1000 * 2, 5))

    async def stop(self) -> None:
        """Close the tile pool."""
        if self.pool is not None:
            await self.pool.close()

    def key(self, layer_ids: tuple[str, ...], z: int, x: int, y: int) -> tuple:
        """Cache key: layers, their data versions, tile address."""
        keys = tuple(k for i in layer_ids for k in self.compiler.layers[i].spec.version_keys)
        return (layer_ids, self.watcher.of(keys), z, x, y)

    async def bounds(self, layer_ids: tuple[str, ...]) -> list[float] | None:
        """Lon/lat bounds ``[w, s, e, n]`` of the current data of these layers (None when they
        hold no features), read once per data version."""
        key = self.key(layer_ids, 0, 0, 0)[:2]
        cached = self._bounds.get(key)
        if cached is None:
            boxes = []
            async with self.pool.acquire() as conn:
                for lid in layer_ids:
                    sql, args = bounds_query(self.compiler.layers[lid].spec)
                    row = await conn.fetchrow(sql, *args)
                    if row and row["xmin"] is not None:
                        boxes.append([row["xmin"], row["ymin"], row["xmax"], row["ymax"]])
            cached = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
                      max(b[3] for b in boxes)] if boxes else []
            if len(self._bounds) > 1000:
                self._bounds.clear()
            self._bounds[key] = cached
        return cached or None

    def etag(self, key: tuple) -> str:
        """ETag of a key (no rendering needed)."""
        return make_etag(self.fingerprint, key)

    async def tile(self, layer_ids: tuple[str, ...], z: int, x: int, y: int) -> TileEntry:
        """The tile (cached or rendered now)."""
        check_tile(z, x, y)
        key = self.key(layer_ids, z, x, y)
        entry = self.cache.get(key)
        if entry is None:
            raw = await self.render(layer_ids, z, x, y)
            if len(raw) > 1 << 20:  # ISA-L releases the GIL: only big tiles are worth a thread hop
                entry = await asyncio.to_thread(make_entry, raw, self.etag(key))
            else:
                entry = make_entry(raw, self.etag(key))
            self.cache.put(key, entry)
        return entry

    async def render(self, layer_ids: tuple[str, ...], z: int, x: int, y: int) -> bytes:
        """Render one tile on a pooled connection."""
        async with self.pool.acquire() as conn:
            return await render_tile(conn, self.compiler, layer_ids, z, x, y, self.budget)


async def render_tile(conn: asyncpg.Connection, compiler: TileCompiler, layer_ids: tuple[str, ...],
                      z: int, x: int, y: int, budget: int) -> bytes:
    """Run the composite statement; lower the feature cap while the tile exceeds ``budget`` bytes."""
    cap = None
    raw = b""
    for _ in range(_MAX_SHRINK + 1):
        q = compiler.query(layer_ids, z, x, y, cap=cap)
        if q is None:
            return b""
        raw = await conn.fetchval(q.sql, *q.args) or b""
        if len(raw) <= budget:
            return raw
        # aim 10 % under the budget from the measured bytes per feature of each layer
        new_cap = cap_for_budget(layer_stats(raw), int(budget * 0.9))
        cap = min(new_cap, cap - 1) if cap is not None else new_cap
        if cap < 1:
            break
    return raw
