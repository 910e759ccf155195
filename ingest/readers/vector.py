"""Vector sources: ESRI Shapefile sets (geometries by :mod:`ingest.readers.shp`, attributes by
:mod:`ingest.readers.dbf`) and GeoJSON read with pyogrio (GDAL); GeoPackage: :mod:`ingest.readers.gpkg`.

Reads are vectorised: pyogrio returns attribute columns as numpy arrays and geometries as WKB,
converted in one call by shapely 2. pyogrio is imported by the functions that read with it:
loading GDAL makes about 30 MB resident, which a delivery of CSV tables or workbooks never needs.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError as PyprojCRSError
from shapely.errors import GEOSException

from cim.errors import CrsError, UnreadableInput
from ingest.readers import SourceLayer, geometry_kind, later_chunks
from ingest.readers import shp as shapes
from ingest.readers.dbf import dbf_records, read_dbf_frame
from ingest.readers.encoding import dbf_encoding
from ingest.readers.errors import library_message


def _sibling(path: Path, ext: str) -> Path | None:
    for cand in (path.with_suffix(ext), path.with_suffix(ext.upper())):
        if cand.exists():
            return cand
    return None


def parse_prj(text: str) -> CRS:
    """pyproj CRS from a .prj (OGC or ESRI WKT); CrsError when it cannot be understood."""
    try:
        return CRS.from_wkt(text.strip())
    except PyprojCRSError:
        try:
            return CRS.from_user_input(text.strip())
        except PyprojCRSError as exc:
            raise CrsError("无法识别 .prj 中的坐标参考系", "the coordinate reference system in the .prj "
                           "file cannot be understood", prj=text[:200]) from exc


def _read(path: Path, layer: str | int | None = None, encoding: str | None = None, columns=None,
          rows: tuple[int, int] | None = None):
    """pyogrio read with bilingual errors (``rows``: features ``start:stop`` only)."""
    import pyogrio.raw

    try:
        kw: dict = {"layer": layer} if layer is not None else {}
        if rows is not None:
            kw.update(skip_features=rows[0], max_features=rows[1] - rows[0])
        if columns is not None:
            kw["columns"] = columns
        if encoding:
            kw["encoding"] = encoding
        meta, _fids, wkb, fields = pyogrio.raw.read(path, **kw)
    except Exception as exc:  # GDAL/pyogrio report damaged files with assorted exception types
        why = library_message(exc, path)
        raise UnreadableInput(f"无法读取文件 {path.name}：文件已损坏，或不是可识别的空间数据格式",
                              f"cannot read {path.name}: {why}", file=path.name, reason=why) from exc
    frame = pd.DataFrame({name: col for name, col in zip(meta["fields"], fields, strict=True)})
    geom = shapely.from_wkb(wkb) if wkb is not None else None
    return meta, frame, geom


def check_shapefile(shp: Path) -> None:
    """Refuse a shapefile set with a missing .shx/.dbf or a truncated .shp (UnreadableInput)."""
    for ext, zh in ((".shx", "索引文件"), (".dbf", "属性文件")):
        if _sibling(shp, ext) is None:
            raise UnreadableInput(f"Shapefile {shp.name} 缺少{zh} {shp.stem}{ext}",
                                  f"shapefile {shp.name} is missing its {ext} file", file=shp.name)
    size = shp.stat().st_size
    with shp.open("rb") as fh:
        head = fh.read(100)
    if len(head) < 100 or head[:4] != b"\x00\x00\x27\x0a":
        raise UnreadableInput(f"{shp.name} 不是有效的 .shp 文件", f"{shp.name} is not a valid .shp file")
    declared = struct.unpack(">i", head[24:28])[0] * 2
    if declared > size:
        raise UnreadableInput(f"{shp.name} 文件被截断（应为 {declared} 字节，实为 {size} 字节）",
                              f"{shp.name} is truncated ({size} of {declared} bytes)", file=shp.name)
    shx = _sibling(shp, ".shx")
    assert shx is not None  # checked above
    shx_size = shx.stat().st_size
    with shx.open("rb") as fh:
        shx_head = fh.read(100)
    if len(shx_head) < 100 or struct.unpack(">i", shx_head[24:28])[0] * 2 > shx_size:
        raise UnreadableInput(f"{shx.name} 文件被截断", f"{shx.name} is truncated", file=shx.name)


def read_shapefile(shp: Path, rel: str, chunk_rows: int | None = None) -> SourceLayer:
    """One shapefile set: encoding from .cpg or the bytes, CRS from .prj (None without one).

    Geometries come from :mod:`ingest.readers.shp` (numpy, no GDAL), or from GDAL for what that
    reader leaves to it (a MultiPatch file, shapes GEOS will not build as they are); attributes
    from :mod:`ingest.readers.dbf` so that the chosen encoding applies to field names and values
    alike (GDAL reads both when records are deleted). A set of more than ``chunk_rows`` records
    (none deleted) is read in chunks: the layer holds the first, and its ``rest`` yields the
    others, each read when its turn comes.
    """
    check_shapefile(shp)
    prj = _sibling(shp, ".prj")
    crs = parse_prj(prj.read_text(errors="replace")) if prj is not None else None
    dbf, shx = _sibling(shp, ".dbf"), _sibling(shp, ".shx")
    assert dbf is not None and shx is not None  # check_shapefile refuses a set without them
    enc = dbf_encoding(dbf)
    nrec, deleted = dbf_records(dbf) if chunk_rows else (0, 0)
    stop = chunk_rows if chunk_rows and not deleted and nrec > chunk_rows else None
    frame, deleted = read_dbf_frame(dbf, enc.encoding, 0, stop)
    if deleted:
        meta, frame, geom = _read(shp, encoding=enc.encoding)
        gtype = meta.get("geometry_type")
    else:
        total = shapes.count(shx)
        rows = nrec if stop else len(frame)
        if total != rows:
            raise UnreadableInput(f"{shp.name} 的几何数（{total}）与属性行数（{rows}）不一致",
                                  f"{shp.name}: {total} geometries but {rows} attribute rows", file=rel)
        shape_type = shapes.file_type(shp)
        geom, gtype = _shapes(shp, shx, shape_type, 0, stop or total)
    zh, en = enc.describe()
    layer = SourceLayer(shp.stem, rel, frame, geom, geometry_kind(gtype), crs, enc.encoding, clean_text=not deleted)
    layer.notes.append(("encoding", f"{rel}：{zh}", f"{rel}: {en}"))
    if stop:
        layer.rest = later_chunks(layer, _shapefile_chunks(shp, shx, shape_type, dbf, enc.encoding, stop, nrec))
    return layer


def _shapes(shp: Path, shx: Path, shape_type: int, start: int, stop: int) -> tuple[np.ndarray | None, str | None]:
    """Geometries of records ``start:stop`` and the file's geometry type name (``shape_type``:
    its header's): from the shapefile reader, else (a MultiPatch, or shapes GEOS will not build
    as they are, such as a one-point line) as GDAL gives them."""
    if shapes.readable(shape_type):
        with contextlib.suppress(GEOSException):
            return shapes.read_shapes(shp, shx, start, stop), shapes.geometry_type(shape_type)
    meta, _empty, geom = _read(shp, encoding="ISO-8859-1", columns=[], rows=(start, stop))
    return geom, meta.get("geometry_type")


def _shapefile_chunks(shp: Path, shx: Path, shape_type: int, dbf: Path, encoding: str, size: int, total: int
                      ) -> Iterator[tuple[pd.DataFrame, np.ndarray | None]]:
    """The attributes and geometries of a shapefile's records after the first ``size``, ``size``
    at a time."""
    for start in range(size, total, size):
        end = min(start + size, total)
        part, _ = read_dbf_frame(dbf, encoding, start, end)
        yield part, _shapes(shp, shx, shape_type, start, end)[0]


def read_dbf(dbf: Path, rel: str) -> SourceLayer:
    """A DBF table without geometry (survey table form)."""
    enc = dbf_encoding(dbf)
    frame, deleted = read_dbf_frame(dbf, enc.encoding)
    if deleted:
        _meta, frame, _geom = _read(dbf, encoding=enc.encoding)
    zh, en = enc.describe()
    layer = SourceLayer(dbf.stem, rel, frame, None, "none", None, enc.encoding, clean_text=not deleted)
    layer.notes.append(("encoding", f"{rel}：{zh}", f"{rel}: {en}"))
    return layer


def _crs_of(meta) -> CRS | None:
    text = meta.get("crs")
    if not text:
        return None
    try:
        return CRS.from_user_input(text)
    except Exception:
        return parse_prj(text)


def kind_from_geoms(geom: np.ndarray | None) -> str:
    """point / line / polygon from the first non-empty geometry (mixed-type GeoJSON)."""
    if geom is None or not len(geom):
        return "none"
    ids = shapely.get_type_id(geom)
    ids = ids[ids >= 0]
    if not len(ids):
        return "none"
    return {0: "point", 4: "point", 1: "line", 2: "line", 5: "line", 3: "polygon", 6: "polygon"}.get(int(ids[0]), "none")


def read_geojson(path: Path, rel: str, chunk_rows: int | None = None) -> SourceLayer:
    """A GeoJSON file (RFC 7946: lon/lat WGS 84 unless it names another CRS). With
    ``chunk_rows``, features are streamed (:func:`_streamed`): the layer holds the first chunk,
    and its ``rest`` yields the others as iterated."""
    if not chunk_rows:
        meta, frame, geom = _read(path)
        return _geojson_layer(path, rel, meta, frame, geom)
    return _streamed(path, None, chunk_rows, lambda meta, frame, geom: _geojson_layer(path, rel, meta, frame, geom))


def _streamed(path: Path, name: str | None, chunk_rows: int,
              make: Callable[[dict, pd.DataFrame, np.ndarray | None], SourceLayer]) -> SourceLayer:
    """A layer (``name``, else the file's only one) read through GDAL's Arrow stream in one pass,
    ``chunk_rows`` features at a time: ``make(meta, frame, geometries)`` makes the layer of the
    first chunk, whose ``rest`` yields the later ones as iterated (the file stays open until
    the last is read, or the rest is dropped)."""
    import pyogrio.raw

    stack = contextlib.ExitStack()
    try:
        kw = {"layer": name} if name is not None else {}
        meta, reader = stack.enter_context(pyogrio.raw.open_arrow(path, batch_size=chunk_rows, use_pyarrow=True,
                                                                  **kw))
        batches = iter(reader)
        first = next(batches, None)
    except Exception as exc:  # GDAL/pyogrio report damaged files with assorted exception types
        stack.close()
        why = library_message(exc, path)
        raise UnreadableInput(f"无法读取文件 {path.name}：文件已损坏，或不是可识别的空间数据格式",
                              f"cannot read {path.name}: {why}", file=path.name, reason=why) from exc
    frame, geom = arrow_frame(first, meta)
    layer = make(meta, frame, geom)
    if first is None or first.num_rows < chunk_rows:
        stack.close()
        return layer
    layer.rest = later_chunks(layer, _arrow_chunks(stack, batches, meta, spatial=layer.geom is not None))
    return layer


def _arrow_chunks(stack: contextlib.ExitStack, batches: Iterator[pa.RecordBatch], meta: dict, *, spatial: bool
                  ) -> Iterator[tuple[pd.DataFrame, np.ndarray | None]]:
    """The attributes and geometries (of a ``spatial`` layer) of the remaining record batches;
    the stream (``stack``) is closed at the end."""
    with stack:
        for batch in batches:
            part, g = arrow_frame(batch, meta)
            yield part, g if spatial else None


def _column(values: pa.Array) -> np.ndarray | pd.Series:
    """One attribute column of an Arrow batch: text as pandas text sharing the Arrow buffers,
    anything else as numpy."""
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return pd.Series(values.to_pandas())
    return values.to_numpy(zero_copy_only=False)


def _geojson_layer(path: Path, rel: str, meta: dict, frame: pd.DataFrame, geom: np.ndarray | None) -> SourceLayer:
    kind = geometry_kind(meta.get("geometry_type"))
    if kind == "none":
        kind = kind_from_geoms(geom)
    return SourceLayer(path.stem, rel, frame, geom, kind, _crs_of(meta) or CRS.from_epsg(4326), "UTF-8")


def arrow_frame(batch: pa.RecordBatch | None, meta: dict) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Attributes and geometries of one record batch of GDAL's Arrow stream: numbers as numpy
    columns, text as pandas text on the Arrow buffers (as a CSV table's text comes; no Python
    object per value)."""
    names = [str(n) for n in meta["fields"]]
    if batch is None:
        return pd.DataFrame({n: np.array([], dtype=object) for n in names}), None
    cols = {n: _column(batch.column(n)) for n in names}
    gname = next((n for n in batch.schema.names if n not in cols), None)
    geom = shapely.from_wkb(batch.column(gname).to_numpy(zero_copy_only=False)) if gname else None
    return pd.DataFrame(cols), geom
