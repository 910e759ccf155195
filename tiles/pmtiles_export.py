"""Pre-generated tiles: write a PMTiles v3 archive from the live database, and serve archives.

``export`` renders every tile covering the chosen layers' data at the chosen zooms with the
same compiled SQL and byte budget as the server, in worker processes (one asyncpg connection
each), and writes them in tile-id order with the ``pmtiles`` writer (clustered archive, gzip
tiles, TileJSON-style metadata with ``vector_layers``). :class:`ArchiveSet` reads archives for
``/pmtiles/{name}/{z}/{x}/{y}.mvt``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import mmap
import multiprocessing as mp
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from pmtiles.reader import Reader
from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import Writer

from cim.errors import InvalidInput, NotFound
from cim.settings import TileSettings
from layers.catalog import Catalog
from tiles.mvt import TileCompiler, bounds_query
from tiles.ogc import tile_xy
from tiles.style import tilejson

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")
CHUNK = 32  # tiles per work unit handed to a worker


def parse_zoom(text: str) -> tuple[int, int]:
    """``10-16`` or ``14`` → (min, max)."""
    m = re.match(r"^(\d{1,2})(?:-(\d{1,2}))?$", text.strip())
    if not m:
        raise InvalidInput(f"缩放范围格式应为 10-16：{text}", f"zoom range must look like 10-16: {text}")
    lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
    if lo > hi or hi > 24:
        raise InvalidInput(f"缩放范围无效：{text}", f"invalid zoom range: {text}")
    return lo, hi


@dataclass
class ExportResult:
    """Summary of an export run."""

    path: Path
    tiles_rendered: int
    tiles_written: int
    bytes: int


async def _layer_bounds(url: str, compiler: TileCompiler, ids: tuple[str, ...]) -> list[float] | None:
    conn = await asyncpg.connect(url)
    try:
        boxes = []
        for lid in ids:
            sql, args = bounds_query(compiler.layers[lid].spec)
            row = await conn.fetchrow(sql, *args)
            if row and row["xmin"] is not None:
                boxes.append((row["xmin"], row["ymin"], row["xmax"], row["ymax"]))
    finally:
        await conn.close()
    if not boxes:
        return None
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


def tile_list(compiler: TileCompiler, ids: tuple[str, ...], bounds: list[float], zmin: int, zmax: int) -> list[tuple]:
    """Every (z, x, y) covering ``bounds`` where at least one layer is drawn, in tile-id order."""
    out = []
    for z in range(zmin, zmax + 1):
        if not any(compiler.layers[i].in_range(z) for i in ids):
            continue
        x0, y0 = tile_xy(bounds[0], bounds[3], z)
        x1, y1 = tile_xy(bounds[2], bounds[1], z)
        out += [(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]
    out.sort(key=lambda t: zxy_to_tileid(*t))
    return out


# ---- worker processes: each owns one event loop and one database connection ----
_worker: dict = {}


def _init_worker(url: str, catalog: Catalog, settings: TileSettings) -> None:
    loop = asyncio.new_event_loop()
    _worker.update(loop=loop, compiler=TileCompiler.from_catalog(catalog, settings),
                   budget=settings.max_tile_kb * 1024, conn=loop.run_until_complete(asyncpg.connect(url)))


def _render_chunk(job: tuple[tuple[str, ...], list[tuple]], state: dict | None = None) -> list[tuple[int, bytes]]:
    from tiles.service import render_tile

    ids, tiles = job
    state = state if state is not None else _worker
    loop, conn, compiler = state["loop"], state["conn"], state["compiler"]
    out = []
    for z, x, y in tiles:
        raw = loop.run_until_complete(render_tile(conn, compiler, ids, z, x, y, state["budget"]))
        out.append((zxy_to_tileid(z, x, y), gzip.compress(raw, 6, mtime=0) if raw else b""))
    return out


_LOCAL = threading.local()


def render_chunks(url: str, catalog: Catalog, settings: TileSettings,
                  jobs: list[tuple[tuple[str, ...], list[tuple]]]) -> list[list[tuple[int, bytes]]]:
    """Render chunks of tiles in this process (one loop and connection per thread, kept between
    calls): for each chunk, ``[(tile_id, gzip MVT or b"")]``. The unit of work the province
    batch ships to Dask workers (:mod:`batch.pmtiles`)."""
    state = getattr(_LOCAL, "state", None)
    if state is None or state[0] != (url, settings.model_dump_json()):
        loop = asyncio.new_event_loop()
        state = _LOCAL.state = ((url, settings.model_dump_json()), {
            "loop": loop, "compiler": TileCompiler.from_catalog(catalog, settings),
            "budget": settings.max_tile_kb * 1024, "conn": loop.run_until_complete(asyncpg.connect(url))})
    return [_render_chunk(job, state[1]) for job in jobs]


def export(url: str, catalog: Catalog, settings: TileSettings, layers: str, zooms: tuple[int, int], out: Path,
           workers: int = 2, progress: Callable[[int, int], None] | None = None,
           render_map: Callable[[list], Iterator[list[tuple[int, bytes]]]] | None = None) -> ExportResult:
    """Write the archive; ``progress(done, total)`` is called after each chunk.

    ``render_map(chunks)`` (optional) renders the chunks elsewhere and yields each chunk's result
    **in the order given** (the archive is written in tile-id order); by default a local process
    pool of ``workers`` renders them.
    """
    compiler = TileCompiler.from_catalog(catalog, settings)
    ids = compiler.parse_layers(layers)
    bounds = asyncio.run(_layer_bounds(url, compiler, ids))
    if bounds is None:
        raise InvalidInput("所选图层没有数据，无法导出", "the chosen layers hold no data; nothing to export")
    tiles = tile_list(compiler, ids, bounds, *zooms)
    chunks = [(ids, tiles[i:i + CHUNK]) for i in range(0, len(tiles), CHUNK)]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    written = done = 0
    ctx = mp.get_context("fork")
    results: Iterator[list[tuple[int, bytes]]]
    with open(tmp, "wb") as f, contextlib.ExitStack() as stack:
        if render_map is None:
            pool = stack.enter_context(ctx.Pool(max(1, workers), _init_worker, (url, catalog, settings)))
            results = pool.imap(_render_chunk, chunks)  # ordered: tiles arrive in tile-id order
        else:
            results = render_map(chunks)
        writer = Writer(f)
        for result in results:
            for tile_id, data in result:
                if data:
                    writer.write_tile(tile_id, data)
                    written += 1
            done += len(result)
            if progress:
                progress(done, len(tiles))
        if written == 0:
            raise InvalidInput("所有瓦片均为空，未生成归档", "every tile is empty; no archive written")
        header = {"tile_type": TileType.MVT, "tile_compression": Compression.GZIP,
                  "min_lon_e7": int(bounds[0] * 1e7), "min_lat_e7": int(bounds[1] * 1e7),
                  "max_lon_e7": int(bounds[2] * 1e7), "max_lat_e7": int(bounds[3] * 1e7),
                  "center_zoom": zooms[0]}
        specs = [compiler.layers[i].spec for i in ids]
        meta = tilejson(specs, "", bounds)
        meta.pop("tiles", None)
        meta.update(format="pbf", generator="cim tiles export")
        writer.finalize(header, meta)
    tmp.replace(out)
    return ExportResult(out, len(tiles), written, out.stat().st_size)


def tile_sizes(url: str, catalog: Catalog, settings: TileSettings, layers: str | None,
               zooms: tuple[int, int]) -> dict[int, dict]:
    """Per zoom: tiles covering the layers' data, how many hold features, the largest in bytes.

    Every tile goes through the same renderer as the server (byte budget included), so this is
    what clients receive; ``layers=None`` means every public layer (the one-map composite).
    """
    compiler = TileCompiler.from_catalog(catalog, settings)
    ids = compiler.parse_layers(layers) if layers else tuple(compiler.layers)
    bounds = asyncio.run(_layer_bounds(url, compiler, ids))
    if bounds is None:
        raise InvalidInput("所选图层没有数据", "the chosen layers hold no data")
    tiles = tile_list(compiler, ids, bounds, *zooms)

    async def run() -> dict[int, dict]:
        from tiles.service import render_tile

        out: dict[int, dict] = {}
        conn = await asyncpg.connect(url)
        try:
            for z, x, y in tiles:
                raw = await render_tile(conn, compiler, ids, z, x, y, settings.max_tile_kb * 1024)
                row = out.setdefault(z, {"tiles": 0, "non_empty": 0, "largest": 0, "largest_tile": None})
                row["tiles"] += 1
                row["non_empty"] += bool(raw)
                if len(raw) > row["largest"]:
                    row["largest"], row["largest_tile"] = len(raw), [z, x, y]
        finally:
            await conn.close()
        return out

    return asyncio.run(run())


class ArchiveSet:
    """PMTiles archives in a directory (or one file), opened on first use and memory-mapped."""

    def __init__(self, location: Path) -> None:
        self.location = Path(location)
        self._open: dict[str, tuple[float, Reader, str]] = {}
        self._lock = threading.Lock()

    def path(self, name: str) -> Path:
        """File of an archive by name (``name.pmtiles``), or NotFound."""
        if not _NAME.match(name):
            raise InvalidInput(f"归档名称无效：{name[:40]}", f"invalid archive name: {name[:40]}")
        loc = self.location
        path = loc if loc.is_file() and loc.stem == name else loc / f"{name}.pmtiles"
        if not path.is_file():
            raise NotFound(f"没有瓦片归档 {name}", f"no tile archive {name}")
        return path

    def _reader(self, name: str) -> tuple[Reader, str]:
        path = self.path(name)
        mtime = path.stat().st_mtime
        with self._lock:
            hit = self._open.get(name)
            if hit is None or hit[0] != mtime:
                with open(path, "rb") as f:
                    mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                tag = hashlib.blake2b(f"{path}:{mtime}".encode(), digest_size=8).hexdigest()
                hit = (mtime, Reader(lambda off, ln, m=mapping: m[off:off + ln]), tag)
                self._open[name] = hit
        return hit[1], hit[2]

    def etag(self, name: str, z: int, x: int, y: int) -> str:
        """ETag of a tile of an archive (file and modification time; no tile is read)."""
        return f'"{self._reader(name)[1]}-{z}-{x}-{y}"'

    def tile(self, name: str, z: int, x: int, y: int) -> bytes | None:
        """Stored (gzip) tile bytes, or None when the archive has no such tile."""
        return self._reader(name)[0].get(z, x, y)

    def names(self) -> Iterator[str]:
        """Archive names available."""
        if self.location.is_file():
            yield self.location.stem
        elif self.location.is_dir():
            yield from sorted(p.stem for p in self.location.glob("*.pmtiles"))
