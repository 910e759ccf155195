"""The reading stage: delivered bytes → :class:`SourceLayer` objects (attributes as delivered,
geometries as shapely arrays in the source coordinates, the declared CRS, the encoding).

- :mod:`ingest.readers.sources` — the files, folders and zips of a delivery walked in reading
  order, each layer yielded as soon as it is read; the delivery's sha256;
- :mod:`ingest.readers.archive` — safe zip extraction (on a worker thread) and type sniffing;
- :mod:`ingest.readers.vector` — shapefile sets, GeoJSON (pyogrio), ``.prj`` parsing;
- :mod:`ingest.readers.shp` — shapefile geometries from the ``.shp``/``.shx`` bytes (numpy), without GDAL;
- :mod:`ingest.readers.gpkg` — GeoPackage tables straight from SQLite (ADBC), without GDAL;
- :mod:`ingest.readers.dbf` — DBF attribute tables (numpy), so the chosen encoding applies;
- :mod:`ingest.readers.table` — CSV and XLSX tables;
- :mod:`ingest.readers.encoding` — encodings of DBF/CSV files and zip member names;
- :mod:`ingest.readers.errors` — library errors on delivered data as bilingual unreadable input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pyproj import CRS


@dataclass
class SourceLayer:
    """One layer, sheet or table of a delivery before it is mapped to a target table."""

    name: str                         # layer name: file stem, GeoPackage layer, sheet name
    file: str                         # file name inside the delivery
    frame: pd.DataFrame               # attribute columns with their delivered names
    geom: np.ndarray | None           # shapely geometries in source coordinates, or None
    geometry_kind: str                # point | line | polygon | none
    crs: CRS | None = None            # declared CRS (.prj, GeoPackage, GeoJSON)
    encoding: str | None = None
    notes: list[tuple[str, str, str]] = field(default_factory=list)   # (topic, zh, en)
    clean_text: bool = False          # text columns already stripped, blanks as None (DBF reader)
    offset: int = 0                   # rows of the layer before these (a layer read in chunks)
    rest: Callable[[], Iterator[SourceLayer]] | None = None   # the later chunks, read as iterated


def geometry_kind(type_name: str | None) -> str:
    """point / line / polygon / none from an OGR geometry type name."""
    t = (type_name or "").lower()
    if "point" in t:
        return "point"
    if "line" in t or "curve" in t and "polygon" not in t:
        return "line"
    if "polygon" in t or "surface" in t:
        return "polygon"
    return "none"


def later_chunks(first: SourceLayer, parts: Iterator[tuple[pd.DataFrame, np.ndarray | None]]
                 ) -> Callable[[], Iterator[SourceLayer]]:
    """A layer's ``rest``: each (attributes, geometries) of ``parts``, read as iterated, as a
    layer like ``first`` (name, file, kind, CRS, encoding), its source rows running on after the
    rows before it; a chunk handed over is not held here. ``parts`` releases what it reads from
    when it ends or is dropped."""
    like = dataclasses.replace(first, frame=pd.DataFrame(), geom=None, notes=[], rest=None)   # no rows kept
    size = len(first.frame)

    def rest() -> Iterator[SourceLayer]:
        offset = size
        for frame, geom in parts:
            yield dataclasses.replace(like, frame=frame, geom=geom, offset=offset)
            offset += len(frame)
            del frame, geom
    return rest
