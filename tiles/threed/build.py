"""Build 3D Tiles: plan a layer (index + quadtree + tileset JSON) and render its tiles.

:func:`plan` reads the index in one query per table and partitions it; :func:`render` makes
one tile's content. :func:`build_folder` writes a whole layer with a process pool (one database
connection per worker), publishing the folder atomically (written beside, then renamed) with a
``build.json`` recording the data versions it was built from, so the API serves it only while
the data have not changed. A caller may hand the tile jobs to another engine (``render_map``:
the province batch runs them as Dask tasks, :mod:`batch.threed`); :func:`render_block` is the
unit of work it ships, and the folder written is the same file for file.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import psycopg2.extensions

from cim import versions as data_versions
from cim.db import connect
from layers.catalog import Catalog, load_catalog
from tiles.threed import sources
from tiles.threed.glb import build_b3dm, build_glb
from tiles.threed.tileset import Node, frame_of, leaves, partition, tileset_json

FORMATS = ("glb", "b3dm")


@dataclass
class Plan:
    """A planned layer: its index, quadtree, tileset document and the data versions behind it."""

    layer: str
    index: sources.Index
    root: Node
    tileset: dict
    versions: dict[str, int]
    fmt: str = "glb"

    @property
    def version_key(self) -> str:
        """Short digest of the data versions (used as tilesetVersion and in ETags)."""
        raw = json.dumps([self.layer, self.fmt, sorted(self.versions.items())])
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


def layer_versions(cur: psycopg2.extensions.cursor, layer: str, catalog: Catalog) -> dict[str, int]:
    """Data versions of the tables a 3D layer is made from."""
    return data_versions.read(cur, sources.source_tables(layer, catalog))


def max_per_tile(catalog: Catalog, layer: str) -> int:
    """Feature cap per tile from the layer spec (``threed.max_features_per_tile``)."""
    spec = catalog.get(sources.SPEC_IDS[layer][0])
    return spec.threed.max_features_per_tile if spec.threed else 1000


def plan(conn: psycopg2.extensions.connection, layer: str, catalog: Catalog | None = None, *,
         fmt: str = "glb", per_tile: int | None = None) -> Plan | None:
    """Index and partition a layer; None when it has no current features.

    ``per_tile`` overrides the spec's ``threed.max_features_per_tile``.
    """
    if layer not in sources.LAYERS:
        raise ValueError(layer)
    catalog = catalog or load_catalog()
    with conn.cursor() as cur:  # versions first: data changed meanwhile only make the next plan newer
        versions = layer_versions(cur, layer, catalog)
    index = sources.load_index(conn, layer, catalog)
    if not conn.autocommit:
        conn.rollback()
    if len(index) == 0:
        return None
    cx = (index.bbox[:, 0] + index.bbox[:, 2]) / 2
    cy = (index.bbox[:, 1] + index.bbox[:, 3]) / 2
    root, _ = partition(cx, cy, per_tile or max_per_tile(catalog, layer))
    p = Plan(layer, index, root, {}, versions, fmt)
    extras = {"cim:layer": layer, "cim:features": int(len(index)), "cim:dataVersions": versions,
              "cim:heights": "orthometric heights written as ellipsoidal heights (see docs/3dtiles.md)"}
    p.tileset = tileset_json(root, index, ext=fmt, version=p.version_key, max_extra=extras)
    return p


def render(conn, index: sources.Index, region: list[float], catalog: Catalog, fmt: str = "glb") -> bytes:
    """Content of one tile: GLB (3D Tiles 1.1, EXT_mesh_features) or b3dm (3D Tiles 1.0)."""
    prims = sources.primitives(conn, index, frame_of(region), catalog)
    if not conn.autocommit:
        conn.rollback()
    if fmt == "b3dm":
        return build_b3dm(prims)
    return build_glb(prims)


# ------------------------------------------------------------------ parallel folder build

_W: dict = {}


def _worker_init(url: str) -> None:
    _W["conn"] = connect(url, application_name="cim-tiles3d")
    _W["conn"].autocommit = True
    if "catalog" not in _W:          # inherited from the parent when the pool forks
        _W["catalog"] = load_catalog()


def _worker_render(job: tuple) -> tuple[str, int, int]:
    key, index, region, fmt, out = job
    data = render(_W["conn"], index, region, _W["catalog"], fmt)
    path = Path(out) / "content" / f"{key}.{fmt}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return key, len(data), len(index)


TileJob = tuple[str, sources.Index, list[float], str]          # key, features, region, format
RenderMap = Callable[[list[TileJob]], Iterable[tuple[str, bytes, int]]]

_LOCAL = threading.local()


def render_block(url: str, jobs: list[TileJob]) -> list[tuple[str, bytes, int]]:
    """Render a block of tiles in this process: ``[(key, content, features)]``.

    Keeps one connection and the catalogue per thread of the calling process (a Dask worker
    renders many blocks), so it may run anywhere that reaches the database.
    """
    state = getattr(_LOCAL, "state", None)
    if state is None or state[0] != url or state[1].closed:
        conn = connect(url, application_name="cim-tiles3d")
        conn.autocommit = True
        state = _LOCAL.state = (url, conn, load_catalog())
    _, conn, catalog = state
    return [(key, render(conn, index, region, catalog, fmt), len(index)) for key, index, region, fmt in jobs]


def build_folder(url: str, layer: str, out: Path, *, workers: int = 2, fmt: str = "glb",
                 per_tile: int | None = None, progress: Callable[[int, int], None] | None = None,
                 render_map: RenderMap | None = None) -> dict:
    """Build a layer into ``out`` (replaced atomically); returns counts, bytes and timings.

    ``render_map(jobs)`` (optional) renders the tile jobs elsewhere and yields ``(key, content,
    features)`` in any order; by default a local process pool of ``workers`` renders them.
    """
    t0 = time.perf_counter()
    catalog = _W["catalog"] = load_catalog()
    conn = connect(url, application_name="cim-tiles3d")
    try:
        p = plan(conn, layer, catalog, fmt=fmt, per_tile=per_tile)
    finally:
        conn.close()
    out = Path(out)
    tmp = out.parent / f".{out.name}.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    stats: dict[str, Any] = {"layer": layer, "features": 0, "tiles": 0, "bytes": 0, "format": fmt}
    if p is not None:
        jobs = [(leaf.key, p.index.subset(leaf.members), leaf.region, fmt, str(tmp))
                for leaf in leaves(p.root) if leaf.members is not None]  # leaves() yields only cells with members
        jobs.sort(key=lambda j: -len(j[1]))          # big tiles first keeps both workers busy to the end
        done = 0
        if render_map is not None:
            for key, data, nfeat in render_map([cast(TileJob, j[:4]) for j in jobs]):   # leaves with members have a region
                path = tmp / "content" / f"{key}.{fmt}"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                done += 1
                stats["bytes"] += len(data)
                stats["features"] += nfeat
                if progress:
                    progress(done, len(jobs))
        elif workers > 1:
            ctx = mp.get_context("fork")
            with ctx.Pool(workers, initializer=_worker_init, initargs=(url,)) as pool:
                for _key, nbytes, nfeat in pool.imap_unordered(_worker_render, jobs):
                    done += 1
                    stats["bytes"] += nbytes
                    stats["features"] += nfeat
                    if progress:
                        progress(done, len(jobs))
        else:
            _worker_init(url)
            try:
                for job in jobs:
                    key, nbytes, nfeat = _worker_render(job)
                    done += 1
                    stats["bytes"] += nbytes
                    stats["features"] += nfeat
                    if progress:
                        progress(done, len(jobs))
            finally:
                _W.pop("conn").close()
        stats["tiles"] = len(jobs)
        doc = json.dumps(p.tileset, separators=(",", ":")).encode()
        (tmp / "tileset.json").write_bytes(doc)
        stats["bytes"] += len(doc)
    stats["versions"] = p.versions if p else {}
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    (tmp / "build.json").write_text(json.dumps(stats, indent=1))
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return stats
