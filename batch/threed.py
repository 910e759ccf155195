"""3D Tiles builds as Dask tasks, one per tile block (a subtree of the layer's quadtree).

The client plans the layer exactly as :func:`tiles.threed.build.build_folder` does (one index
query, the same quadtree and tileset document), groups the leaves into blocks under a common
ancestor cell (neighbouring tiles, so a worker's queries stay local), ships each block to
:func:`tiles.threed.build.render_block` and writes the contents it gets back: the folder is the
single-process folder, file for file (only ``build.json``'s timing differs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from batch import engine
from tiles.threed.build import TileJob, build_folder, render_block

BLOCKS_PER_WORKER = 6


def tile_blocks(jobs: list[TileJob], target: int) -> list[list[TileJob]]:
    """Group tile jobs (keys ``level/x/y``) under the shallowest quadtree level that gives at
    least ``target`` blocks; the blocks with most features first."""
    levels = [tuple(int(v) for v in job[0].split("/")) for job in jobs]
    deepest = max((lv[0] for lv in levels), default=0)
    for top in range(deepest + 1):
        groups: dict[tuple, list[TileJob]] = {}
        for job, (level, x, y) in zip(jobs, levels, strict=True):
            shift = max(0, level - top)
            groups.setdefault((min(level, top), x >> shift, y >> shift), []).append(job)
        if len(groups) >= target or top == deepest:
            break
    blocks = sorted(groups.values(), key=lambda b: -sum(len(j[1]) for j in b))
    return blocks


def build(client: Any, url: str, layer: str, out: Path, *, fmt: str = "glb", per_tile: int | None = None,
          progress: Callable[[int, int], None] | None = None) -> dict:
    """Build a 3D layer into ``out`` with the cluster of ``client``; returns the build's stats."""
    def render_map(jobs: list[TileJob]) -> Iterator[tuple[str, bytes, int]]:
        blocks = tile_blocks(jobs, engine.worker_count(client) * BLOCKS_PER_WORKER)
        return engine.flatten(engine.map_unordered(client, render_block, blocks, url))

    stats = build_folder(url, layer, out, fmt=fmt, per_tile=per_tile, progress=progress, render_map=render_map)
    stats["engine"] = "dask"
    return stats
