"""3D Tiles on demand, for the API: a built folder when it is current, else plan and render lazily.

Per layer the service keeps the plan of the current data versions (index + quadtree + tileset,
a single index query and a numpy partition) and an LRU byte cache of rendered contents. When
the data version of a source table changes (an ingest), the next request plans again and
contents are rendered as they are asked for, so only tiles a viewer actually loads are rebuilt.
A folder written by ``cim tiles3d build`` whose ``build.json`` versions equal the current ones is
served as is. Blocking work runs in the caller's thread pool (the API uses ``run_in_threadpool``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections import OrderedDict
from pathlib import Path

import psycopg2.pool

from cim.errors import NotFound
from layers.catalog import Catalog
from tiles.threed import sources
from tiles.threed.build import Plan, plan, render
from tiles.threed.tileset import find

_CONNECTIONS = 2   # rendering is CPU-bound; more parallel renders than cores only add latency
MEDIA = {"glb": "model/gltf-binary", "b3dm": "application/octet-stream", "json": "application/json"}
TILESET = "tileset"  # the key of a layer's tileset.json (contents are keyed "level/x/y")


class ThreeDService:
    """Tilesets and contents of the 3D layers for the HTTP layer."""

    def __init__(self, url: str, folder: Path, catalog: Catalog, *, cache_mb: int = 64,
                 per_tile: int | None = None) -> None:
        self.url = url
        self.folder = Path(folder)
        self.catalog = catalog
        self.per_tile = per_tile
        self.cache_bytes = cache_mb * 1024 * 1024
        self._pool: psycopg2.pool.ThreadedConnectionPool | None = None
        self._pool_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(_CONNECTIONS)
        self._plans: dict[str, Plan] = {}
        self._locks = {layer: threading.Lock() for layer in sources.LAYERS}
        self._cache: OrderedDict[tuple, bytes] = OrderedDict()
        self._cache_size = 0
        self._cache_lock = threading.Lock()

    # -------------------------------------------------------------- connections
    @contextlib.contextmanager
    def _conn(self):
        """A pooled connection; callers beyond the pool size wait (the pool itself would raise)."""
        with self._slots:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = psycopg2.pool.ThreadedConnectionPool(0, _CONNECTIONS, self.url,
                                                                      application_name="cim-3dtiles")
            conn = self._pool.getconn()
            try:
                conn.autocommit = True
                yield conn
            finally:
                self._pool.putconn(conn)

    def close(self) -> None:
        """Close pooled connections."""
        if self._pool is not None:
            self._pool.closeall()
            self._pool = None

    def source_tables(self, layer: str) -> tuple[str, ...]:
        """The data-version keys of a 3D layer (look them up in the server's version watcher)."""
        check_layer(layer)
        return sources.source_tables(layer, self.catalog)

    # -------------------------------------------------------------- built folders
    def _built(self, layer: str, versions: dict[str, int]) -> Path | None:
        meta = self.folder / layer / "build.json"
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError):
            return None
        if info.get("versions") == versions and info.get("format") == "glb" and info.get("tiles"):
            return self.folder / layer
        return None

    def _plan(self, layer: str, versions: dict[str, int]) -> Plan:
        with self._locks[layer]:
            current = self._plans.get(layer)
            if current is not None and current.versions == versions:
                return current
            with self._conn() as conn:
                p = plan(conn, layer, self.catalog, per_tile=self.per_tile)
            if p is None:
                raise NotFound(f"三维图层 {layer} 没有要素", f"3D layer {layer} has no features")
            # versions read again by plan(); the caller's snapshot is what the ETag promises
            self._plans[layer] = p
            return p

    # -------------------------------------------------------------- public
    def etag(self, layer: str, versions: dict[str, int], key: str = TILESET, ext: str = "glb") -> str:
        """ETag of the tileset (``key`` = :data:`TILESET`) or of one content under these data
        versions, known before anything is planned, read or rendered (so a 304 costs nothing).

        NotFound for an unknown layer or content format.
        """
        check_layer(layer)
        if key != TILESET:
            check_format(ext)
        return _etag(layer, versions, key)

    def tileset(self, layer: str, versions: dict[str, int]) -> bytes | Path:
        """Tileset JSON (bytes, or the built file)."""
        check_layer(layer)
        built = self._built(layer, versions)
        if built is not None:
            return built / "tileset.json"
        return json.dumps(self._plan(layer, versions).tileset, separators=(",", ":")).encode()

    def content(self, layer: str, versions: dict[str, int], key: str, ext: str) -> bytes | Path:
        """One tile's content (bytes, or the built file); NotFound for unknown tiles."""
        check_layer(layer)
        check_format(ext)
        built = self._built(layer, versions)
        if built is not None:
            path = built / "content" / f"{key}.{ext}"
            if path.is_file():
                return path
            raise NotFound(f"三维瓦片不存在：{key}", f"no such 3D tile: {key}")
        p = self._plan(layer, versions)
        leaf = find(p.root, key)
        if leaf is None:
            raise NotFound(f"三维瓦片不存在：{key}", f"no such 3D tile: {key}")
        ckey = (layer, p.version_key, key)
        with self._cache_lock:
            hit = self._cache.get(ckey)
            if hit is not None:
                self._cache.move_to_end(ckey)
                return hit
        with self._conn() as conn:
            data = render(conn, p.index.subset(leaf.members), leaf.region, self.catalog)
        with self._cache_lock:
            self._cache[ckey] = data
            self._cache_size += len(data)
            while self._cache_size > self.cache_bytes and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._cache_size -= len(old)
        return data


def check_layer(layer: str) -> None:
    """NotFound unless ``layer`` is a 3D layer."""
    if layer not in sources.LAYERS:
        raise NotFound(f"没有三维图层 {layer[:40]}（可用：buildings、pipelines）",
                       f"no 3D layer {layer[:40]} (available: buildings, pipelines)")


def check_format(ext: str) -> None:
    """NotFound unless ``ext`` is a content format served (GLB)."""
    if ext != "glb":
        raise NotFound(f"不支持的三维瓦片格式：{ext}", f"unsupported 3D tile format: {ext}")


def _etag(layer: str, versions: dict[str, int], key: str) -> str:
    raw = json.dumps([layer, sorted(versions.items()), key])
    return '"' + hashlib.sha256(raw.encode()).hexdigest()[:20] + '"'
