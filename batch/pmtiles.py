"""PMTiles pyramid exports as Dask tasks, one per block of consecutive tile-id chunks.

:func:`tiles.pmtiles_export.export` lists the tiles over the layers' data (in tile-id order, so a
run of them is a compact block of one zoom) and cuts them into chunks; here runs of chunks are
Dask tasks of :func:`tiles.pmtiles_export.render_chunks`, and their results come back in order,
so the writer receives the same tiles in the same order as the single-process export: the
archive is byte-identical.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from batch import engine
from cim.settings import TileSettings
from layers.catalog import Catalog
from tiles.pmtiles_export import ExportResult, export, render_chunks

BLOCKS_PER_WORKER = 8


def build(client: Any, url: str, catalog: Catalog, settings: TileSettings, layers: str, zooms: tuple[int, int],
          out: Path, progress: Callable[[int, int], None] | None = None) -> ExportResult:
    """Export the archive with the cluster of ``client``."""
    def render_map(chunks: list) -> Iterator[list[tuple[int, bytes]]]:
        size = max(1, len(chunks) // (engine.worker_count(client) * BLOCKS_PER_WORKER))
        shared = client.scatter(catalog, broadcast=True)
        results = engine.map_ordered(client, render_chunks, engine.blocks_of(chunks, size), url, shared, settings)
        return engine.flatten(results)

    return export(url, catalog, settings, layers, zooms, out, progress=progress, render_map=render_map)
