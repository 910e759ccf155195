"""GeoPackage tables read straight from SQLite as Arrow record batches (ADBC), without GDAL.

A GeoPackage is an SQLite database: its feature and attribute tables are listed in
``gpkg_contents``, each feature table's geometry column and CRS in ``gpkg_geometry_columns`` and
``gpkg_spatial_ref_sys`` (OGC 12-128r18 §1.1). The ADBC SQLite driver returns a query's rows as
Arrow record batches in C, as fast as GDAL's Arrow stream, while loading GDAL would make some
50 MB resident (the library and what it links) for a read SQLite does alone.

Geometries are GeoPackage binary: a header (``GP``, version, flags, SRS id, an optional
envelope of 0, 32, 48 or 64 bytes as the flags say) before standard WKB. The query strips the
header in SQLite (the flags byte found by its position in a table of all 256 bytes), so each
geometry comes out as WKB; a blob that is not GeoPackage binary, or is its extended form
(geometry types outside the standard), comes out as one byte no WKB parser accepts, and the
layer is refused as unreadable.

Columns come out with the types GDAL gives them (the ``tests/ingest/test_gpkg_reader.py``
oracle compares the two): ``INTEGER`` 64-bit, ``INT``/``MEDIUMINT`` 32-bit,
``SMALLINT``/``TINYINT`` 16-bit, ``BOOLEAN``, ``FLOAT`` 32-bit, ``REAL``/``DOUBLE``, ``DATE``
as dates and ``DATETIME`` as UTC times where every value parses (else their text), the rest as
text. Every value is cast to its column's type in the query, and the driver, which infers a
column's type from the first batch, is shown a typed first row that the reader drops: a column
empty in its first rows would otherwise be inferred as integers and refused at its first text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyproj import CRS
from shapely.errors import GEOSException

from cim.errors import CimError, UnreadableInput
from ingest.readers import SourceLayer, geometry_kind, later_chunks
from ingest.readers.errors import library_message
from ingest.readers.vector import arrow_frame, parse_prj

_ALL_BYTES = "X'" + bytes(range(256)).hex() + "'"
"""A blob of the bytes 0 … 255 in order: ``instr`` of a byte in it is that byte's value + 1."""

_ENVELOPE = "CASE ((_f >> 1) & 7) WHEN 0 THEN 0 WHEN 1 THEN 32 WHEN 2 THEN 48 WHEN 3 THEN 48 WHEN 4 THEN 64 END"
"""Envelope bytes of a GeoPackage binary header from its flags byte ``_f`` (bits 1-3)."""

# declared type → (SQL cast, sentinel value of the typed first row, Arrow type GDAL gives it)
_TYPES: dict[str, tuple[str, str, pa.DataType]] = {
    "INTEGER": ("INTEGER", "0", pa.int64()), "INT": ("INTEGER", "0", pa.int32()),
    "MEDIUMINT": ("INTEGER", "0", pa.int32()), "SMALLINT": ("INTEGER", "0", pa.int16()),
    "TINYINT": ("INTEGER", "0", pa.int16()), "BOOLEAN": ("INTEGER", "0", pa.bool_()),
    "FLOAT": ("REAL", "0.0", pa.float32()), "DOUBLE": ("REAL", "0.0", pa.float64()),
    "REAL": ("REAL", "0.0", pa.float64()), "DATE": ("TEXT", "''", pa.date32()),
    "DATETIME": ("TEXT", "''", pa.timestamp("ms", tz="UTC")), "BLOB": ("BLOB", "X''", pa.binary()),
}
_TEXT = ("TEXT", "''", pa.string())


def _ident(name: str) -> str:
    """An SQLite identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def _connect(path: Path) -> Any:
    """A read-only ADBC connection to the GeoPackage (UnreadableInput when it cannot be opened)."""
    import adbc_driver_sqlite.dbapi

    try:
        return adbc_driver_sqlite.dbapi.connect(f"file:{quote(str(path))}?mode=ro")
    except Exception as exc:  # the driver reports a damaged or foreign file with assorted error types
        raise UnreadableInput(f"无法读取 GeoPackage {path.name}", f"cannot read GeoPackage {path.name}",
                              file=path.name) from exc


def _rows(conn: Any, sql: str, params: tuple = ()) -> list[tuple]:
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        return list(cur.fetchall())
    finally:
        cur.close()


class _Table:
    """A table of ``gpkg_contents``: its columns with their declared types, its geometry column,
    geometry type name and CRS (None for an attribute table)."""

    def __init__(self, conn: Any, name: str, geom: str | None, gtype: str | None, z: int | None,
                 crs: CRS | None) -> None:
        info = _rows(conn, f"SELECT name, type, pk FROM pragma_table_info({_quote_text(name)})")
        self.name, self.geom, self.crs = name, geom, crs
        self.gtype = None if gtype is None else f"{'3D ' if z else ''}{gtype}"
        self.fields = [(str(n), str(t or "").upper()) for n, t, pk in info
                       if not pk and str(n) != geom]

    def query(self) -> str:
        """A typed first row (``_k`` = 0) then the table's rows (``_k`` = 1) in the order SQLite
        stores them (a GeoPackage's integer primary key: its feature ids, the order GDAL reads),
        every column cast to its type, the geometry as WKB (``_f``: its flags byte; a table's
        column of that name would be shadowed, a name no GeoPackage writer uses)."""
        casts, sentinels = ["1 AS _k"], ["0 AS _k"]
        for name, declared in self.fields:
            cast, sentinel, _ = _type_of(declared)
            casts.append(f"CAST({_ident(name)} AS {cast}) AS {_ident(name)}")
            sentinels.append(f"{sentinel} AS {_ident(name)}")
        inner = _ident(self.name)
        if self.geom is not None:
            g = _ident(self.geom)
            casts.append(f"CASE WHEN {g} IS NULL THEN NULL WHEN substr({g}, 1, 2) = X'4750' AND (_f & 32) = 0 "
                         f"THEN substr(CAST({g} AS BLOB), 9 + {_ENVELOPE}) ELSE X'00' END AS {g}")
            sentinels.append(f"X'' AS {g}")
            inner = f"(SELECT *, instr({_ALL_BYTES}, substr(CAST({g} AS BLOB), 4, 1)) - 1 AS _f FROM {inner})"
        return f"SELECT {', '.join(sentinels)} UNION ALL SELECT {', '.join(casts)} FROM {inner}"


def _quote_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _type_of(declared: str) -> tuple[str, str, pa.DataType]:
    base = declared.split("(", 1)[0].strip()
    return _TYPES.get(base, _TEXT)


def _crs(conn: Any, srs_id: int | None) -> CRS | None:
    """The CRS of ``gpkg_spatial_ref_sys`` row ``srs_id`` (None for the undefined 0 and −1)."""
    if srs_id is None or srs_id in (0, -1):
        return None
    found = _rows(conn, "SELECT organization, organization_coordsys_id, definition FROM gpkg_spatial_ref_sys "
                        "WHERE srs_id = ?", (srs_id,))
    if not found:
        return None
    org, code, definition = found[0]
    if str(org or "").upper() == "EPSG" and code is not None:
        with contextlib.suppress(Exception):
            return CRS.from_epsg(int(code))
    text = str(definition or "").strip()
    if not text or text.lower() == "undefined":          # the standard's placeholder: no CRS declared
        return None
    return parse_prj(text)


def tables(path: Path) -> list[_Table]:
    """The feature and attribute tables of a GeoPackage, in the order of ``gpkg_contents``."""
    conn = _connect(path)
    try:
        found = _rows(conn, "SELECT c.table_name, g.column_name, g.geometry_type_name, g.z, g.srs_id "
                            "FROM gpkg_contents c LEFT JOIN gpkg_geometry_columns g ON g.table_name = c.table_name "
                            "WHERE c.data_type IN ('features', 'attributes') ORDER BY c.rowid")
        return [_Table(conn, str(name), geom, gtype, z, _crs(conn, srs) if geom else None)
                for name, geom, gtype, z, srs in found]
    except CimError:                      # a CRS that cannot be understood
        raise
    except Exception as exc:  # not a GeoPackage: no gpkg_contents, or a damaged database
        raise UnreadableInput(f"无法读取 GeoPackage {path.name}：{library_message(exc, path)}",
                              f"cannot read GeoPackage {path.name}: {library_message(exc, path)}",
                              file=path.name) from exc
    finally:
        conn.close()


def read_gpkg(path: Path, rel: str, chunk_rows: int | None = None,
              rank: Callable[[Path], int] | None = None) -> Iterator[SourceLayer]:
    """Every feature and attribute table of a GeoPackage, in ``rank`` order of their names (the
    order a loader wants: pipe points before pipe segments) when given, each opened when the one
    before it is done with. With ``chunk_rows``, a table is streamed: the layer holds the first
    ``chunk_rows`` rows, its ``rest`` yields the others as iterated."""
    found = tables(path)
    if rank is not None:
        found.sort(key=lambda t: rank(Path(f"{t.name}.gpkg")))     # ranked by the whole name, as a file stem
    for table in found:                   # a table is opened when the one before it is done with
        yield _layer(path, rel, table, chunk_rows)


def _layer(path: Path, rel: str, table: _Table, chunk_rows: int | None) -> SourceLayer:
    """The first chunk of a table as a layer (the whole table without ``chunk_rows``), its
    ``rest`` the later ones (the connection stays open until the last is read, or the rest is
    dropped)."""
    stack = contextlib.ExitStack()
    what = f"{path.name}:{table.name}"
    try:
        conn = stack.enter_context(contextlib.closing(_connect(path)))
        cur = stack.enter_context(contextlib.closing(conn.cursor()))
        size = chunk_rows or 65_536
        cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(size)})
        cur.execute(table.query())
        batches = _batches(cur.fetch_record_batch(), size, table, what)
        first = next(batches, None)
        if chunk_rows is None and first is not None:
            first = _one([first, *batches])
        frame, geom = _frame(first, table, what)
    except UnreadableInput:
        stack.close()
        raise
    except Exception as exc:  # the driver reports a damaged database or query with assorted error types
        stack.close()
        why = library_message(exc, path)
        raise UnreadableInput(f"无法读取 {what}：文件已损坏，或不是可识别的 GeoPackage",
                              f"cannot read {what}: {why}", file=path.name, reason=why) from exc
    kind = geometry_kind(table.gtype) if geom is not None else "none"
    layer = SourceLayer(table.name, f"{rel}:{table.name}", frame, geom, kind, table.crs, "UTF-8")
    if chunk_rows is None or first is None or first.num_rows < chunk_rows:
        stack.close()
        return layer
    layer.rest = later_chunks(layer, _chunks(stack, batches, table, what))
    return layer


def _batches(reader: pa.RecordBatchReader, size: int, table: _Table, what: str) -> Iterator[pa.RecordBatch]:
    """The table's rows, ``size`` a batch (the last fewer), each column typed as GDAL types it:
    the driver's batches without the query's typed first row (``_k`` = 0) and ``_k``, one row
    short after it is dropped, joined up. A damaged page is unreadable input."""
    held: list[pa.RecordBatch] = []
    rows = 0
    while True:
        try:
            batch = next(reader, None)
        except Exception as exc:  # the driver reports damaged pages with assorted error types
            why = library_message(exc, Path(what))
            raise UnreadableInput(f"无法读取 {what}：文件已损坏", f"cannot read {what}: {why}", file=what,
                                  reason=why) from exc
        if batch is None:
            break
        k = batch.column(0)
        if pc.any(pc.equal(k, 0)).as_py():
            batch = batch.filter(pc.not_equal(k, 0))
        batch = batch.drop_columns([batch.schema.names[0]])
        while batch.num_rows:
            take = batch.slice(0, size - rows)
            held.append(take)
            rows += take.num_rows
            batch = batch.slice(take.num_rows)
            if rows == size:
                yield _typed(_one(held), table)
                held, rows = [], 0
    if rows:
        yield _typed(_one(held), table)


def _one(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    """Record batches of one schema as one."""
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def _chunks(stack: contextlib.ExitStack, batches: Iterator[pa.RecordBatch], table: _Table, what: str
            ) -> Iterator[tuple[pd.DataFrame, np.ndarray | None]]:
    """The attributes and geometries of the remaining record batches; the connection
    (``stack``) is closed at the end."""
    with stack:
        for batch in batches:
            yield _frame(batch, table, what)


def _typed(batch: pa.RecordBatch, table: _Table) -> pa.RecordBatch:
    """The batch with each attribute column as GDAL types it (:data:`_TYPES`)."""
    columns = [_typed_column(batch.column(name), declared) for name, declared in table.fields]
    names = [name for name, _ in table.fields]
    if table.geom is not None:
        columns.append(batch.column(table.geom))
        names.append(table.geom)
    return pa.RecordBatch.from_arrays(columns, names=names)


def _typed_column(values: pa.Array, declared: str) -> pa.Array:
    """A column as GDAL types it; dates and times whose text does not parse stay text, as do
    integers out of their declared range."""
    target = _type_of(declared)[2]
    if values.type == target:
        return values
    try:
        if pa.types.is_timestamp(target):
            text = pc.replace_substring_regex(values, r"Z$", "")
            return pc.cast(pc.cast(text, pa.timestamp("ms")), target)
        if pa.types.is_boolean(target):
            return pc.not_equal(values, 0)
        return pc.cast(values, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return values


def _frame(batch: pa.RecordBatch | None, table: _Table, what: str) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Attributes and geometries of one typed record batch, as GDAL's Arrow stream gives them
    (:func:`ingest.readers.vector.arrow_frame`); geometries that are not WKB are unreadable."""
    try:
        return arrow_frame(batch, {"fields": [name for name, _ in table.fields]})
    except GEOSException as exc:
        raise UnreadableInput(f"{what} 含有无法解析的几何（不是 GeoPackage 标准几何编码）",
                              f"{what} holds geometries that are not standard GeoPackage binary: "
                              f"{library_message(exc, Path(what))}", file=what) from exc
