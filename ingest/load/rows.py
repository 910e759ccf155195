"""Rows of a delivery written into the feature tables with ``COPY … FROM STDIN`` (psycopg2).

The COPY buffer is built column-wise (no per-row Python) and formatted as CSV by Arrow: only
table columns some row of the batch fills, values coerced to the column's SQL type, the lineage columns
(``county_code``, ``delivery_id``, ``source_layer``, ``source_row``) and ``geom`` as hex EWKB
with SRID 4490 (:func:`ewkb_hex`). Geometries are normalised to the column type first
(Polygon → MultiPolygon, single-part Multi* → the part); empty, missing or unfit geometries are
refused with their source rows named. Pipe points get their ids from the table's sequence before
the COPY, so pipe segments can carry ``start_point_id`` / ``end_point_id`` resolved on
(network, survey point number) instead of a second pass over the table.
"""

from __future__ import annotations

import io
import struct
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pandas as pd
import psycopg2.extensions
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import shapely

from cim.crs import STORAGE_SRID
from cim.db import quote_ident
from cim.errors import InvalidInput
from cim.schema import TABLES, feature_table
from ingest.keys import PointIndex
from ingest.model import LayerBatch, arrow_text

CHUNK_ROWS = 25_000
FIRST_CHUNK_ROWS = 4_000
# Columns the loader sets itself (never taken from a batch frame).
LOADER_COLUMNS = frozenset({"id", "county_code", "delivery_id", "is_current",
                            *(c for t in TABLES.values() for c in t.resolved)})
_INT_TYPES = {"smallint", "integer", "bigint"}
_TEXT_TYPES = {"text", "character varying", "character"}
# shapely type ids accepted per target geometry column, and the single-part id of a Multi* type.
_POINT, _LINE, _POLY, _MPOINT, _MLINE, _MPOLY = 0, 1, 3, 4, 5, 6
_KIND_OF_TYPE = {"Point": _POINT, "LineString": _LINE, "MultiLineString": _MLINE, "MultiPolygon": _MPOLY}
GEOM_KIND = {t.name: _KIND_OF_TYPE[t.geometry] for t in TABLES.values()}
_SINGLE_OF = {_MPOLY: _POLY, _MLINE: _LINE}   # a Multi* column also takes its single-part type
_TYPE_NAMES = {-1: "missing", 0: "Point", 1: "LineString", 2: "LinearRing", 3: "Polygon", 4: "MultiPoint",
               5: "MultiLineString", 6: "MultiPolygon", 7: "GeometryCollection"}

Progress = Callable[[int], None]


def table_columns(target: str) -> dict[str, str]:
    """Column name → SQL type (``information_schema`` spelling) of every column of ``cim.<target>`` but
    ``id``, ``geom`` last (the identifier whitelist): the table model's, :mod:`cim.schema`, which
    ``tests/cim/test_schema.py`` checks against the migrations."""
    return {**feature_table(target).data_types(), "geom": "geometry"}


def _defaults(target: str) -> dict[str, object]:
    """Values of the constant defaults of NOT NULL attribute columns (e.g. ``z_ref``), from the table model."""
    return {c.name: c.default for c in feature_table(target).columns if c.default is not None}


def _coerce(series: pd.Series, dtype: str, column: str, layer: str) -> pd.Series:
    """Bring a frame column into a form COPY accepts for the column's SQL type."""
    if dtype in _INT_TYPES:
        num = pd.to_numeric(series, errors="coerce")
        try:
            return num.astype("Int64")
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"图层 {layer} 字段 {column} 含非整数值",
                               f"layer {layer} field {column} has non-integer values") from exc
    if dtype == "double precision":
        return pd.to_numeric(series, errors="coerce")
    if dtype == "date" and pd.api.types.is_datetime64_any_dtype(series):
        return series.dt.strftime("%Y-%m-%d")
    return series


def check_geometries(batch: LayerBatch, target: str) -> np.ndarray:
    """The batch's geometries, refused with their source rows named unless each fits the target
    column type once :func:`fit_geometries` has run (Polygon → MultiPolygon, LineString →
    MultiLineString, a single-part Multi* → its part). Cheap: types and emptiness only, nothing is converted."""
    g = np.asarray(batch.frame["geom"].to_numpy(), dtype=object)
    want = GEOM_KIND[target]
    tid = shapely.get_type_id(g)
    fitted = tid.copy()
    if want in _SINGLE_OF:
        fitted[tid == _SINGLE_OF[want]] = want
    else:
        fitted[(tid == want + 4) & (shapely.get_num_geometries(g) == 1)] = want
    empty = (tid >= 0) & shapely.is_empty(g)
    bad = np.flatnonzero((fitted != want) | empty)
    if len(bad):
        rows = batch.frame["source_row"].to_numpy()[bad[:5]]
        what = ["empty" if empty[i] else _TYPE_NAMES.get(int(fitted[i]), "?") for i in bad[:5]]
        where = "; ".join(f"{batch.source_layer} #{r}: {w}" for r, w in zip(rows, what, strict=True))
        raise InvalidInput(f"{target} 有 {len(bad)} 个几何不可入库（空、缺失或类型不符）：{where}",
                           f"{len(bad)} {target} geometries cannot be stored (empty, missing or wrong type): {where}")
    return g


def fit_geometries(g: np.ndarray, target: str) -> np.ndarray:
    """Geometries (checked by :func:`check_geometries`) in the target column's type."""
    want = GEOM_KIND[target]
    tid = shapely.get_type_id(g)
    if want in _SINGLE_OF:
        fix = np.flatnonzero(tid == _SINGLE_OF[want])
        if len(fix):
            g = g.copy()
            make = shapely.multipolygons if want == _MPOLY else shapely.multilinestrings
            g[fix] = make(g[fix], indices=np.arange(len(fix)))
    else:
        fix = np.flatnonzero(tid == want + 4)
        if len(fix):
            g = g.copy()
            g[fix] = shapely.get_geometry(g[fix], 0)
    return g


def geometries(batch: LayerBatch, target: str) -> np.ndarray:
    """The batch's geometries fitted to the target column type; refuse unfit rows."""
    return fit_geometries(check_geometries(batch, target), target)


class _Part:
    """One batch prepared for COPY: geometries fitted and checked, the column plan fixed.

    Chunks of it are formatted one by one (:meth:`frame`), so formatting overlaps the COPY.
    """

    def __init__(self, batch: LayerBatch, target: str, columns: dict[str, str], defaults: dict[str, object]) -> None:
        self.batch, self.target, self.defaults = batch, target, defaults
        self.geom = check_geometries(batch, target)       # refuses unfit rows before anything is written
        df = batch.frame
        self.filled: dict[str, str] = {}                  # column → SQL type, taken from the frame
        self.constant: dict[str, object] = {}             # column → one value for every row
        for col, dtype in columns.items():
            if col in LOADER_COLUMNS or col == "geom":
                continue
            if col in df.columns and df[col].notna().any():
                self.filled[col] = dtype
            elif col == "source_layer":
                self.constant[col] = batch.source_layer
            elif col == "network" and batch.network:
                self.constant[col] = batch.network
            elif col == "subtype" and batch.subtype:
                self.constant[col] = batch.subtype
        self.extra: dict[str, object] = {}                # loader columns: county, delivery, ids
        order = {c: i for i, c in enumerate(columns)}
        self.columns = sorted([*self.filled, *self.constant, "geom"], key=order.__getitem__)

    def __len__(self) -> int:
        return len(self.batch)

    def frame(self, start: int, stop: int) -> pd.DataFrame:
        """Rows ``start:stop`` as COPY wants them: SQL-typed values, lineage, hex EWKB."""
        df = self.batch.frame.iloc[start:stop]
        out: dict[str, object] = {}
        for col, value in self.extra.items():
            out[col] = value[start:stop] if isinstance(value, (np.ndarray, pd.api.extensions.ExtensionArray)) else value
        for col in self.columns:
            if col == "geom":
                fitted = fit_geometries(self.geom[start:stop], self.target)
                out[col] = pd.arrays.ArrowExtensionArray(ewkb_hex(fitted, STORAGE_SRID))
            elif col in self.constant:
                out[col] = self.constant[col]
            else:
                s = _coerce(df[col], self.filled[col], col, self.batch.source_layer)
                out[col] = s.fillna(self.defaults[col]) if col in self.defaults else s
        return pd.DataFrame(out, index=df.index)


_HEX = np.frombuffer(b"".join(f"{i:02X}".encode() for i in range(256)), dtype=np.uint16)  # byte → 2 hex digits


def ewkb_hex(geoms: np.ndarray, srid: int) -> pa.Array:
    """Hex EWKB (2D, little-endian, with ``srid``) of each geometry, as an Arrow string array.

    GEOS writes plain WKB; the SRID flag and the four SRID bytes are put into the buffer and the
    buffer hex-encoded with numpy, so no Python string is made per geometry (and no geometry is
    copied to carry an SRID). Equal to ``shapely.to_wkb(hex=True, include_srid=True)``.
    """
    wkb = shapely.to_wkb(geoms, hex=False, output_dimension=2, byte_order=1, flavor="extended")
    n = len(wkb)
    lens = np.fromiter(map(len, wkb), dtype=np.int64, count=n)
    data = np.frombuffer(b"".join(wkb), dtype=np.uint8)
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    # after the byte-order byte and the 4-byte type: the SRID; the type gets the EWKB SRID flag
    srid_bytes = np.frombuffer(struct.pack("<I", srid), dtype=np.uint8)
    out = np.insert(data, np.repeat(starts + 5, 4), np.tile(srid_bytes, n))
    out[starts + 4 * np.arange(n) + 4] |= 0x20
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum((lens + 4) * 2, out=offsets[1:])
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(_HEX[out]))


def copy_frame(batch: LayerBatch, target: str, columns: dict[str, str]) -> pd.DataFrame:
    """The frame to COPY for a whole batch: filled table columns, lineage, network, ``geom`` as hex EWKB."""
    return _Part(batch, target, columns, {}).frame(0, len(batch))


def _arrow(series: pd.Series) -> pa.Array:
    """One frame column as an Arrow array (missing values null); mixed Python objects as text."""
    try:
        return pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # e.g. a text column holding str and int
        return pa.array(series.map(str, na_action="ignore"), type=pa.string(), from_pandas=True)


def _csv(frame: pd.DataFrame) -> io.BytesIO:
    """The frame as PostgreSQL CSV, formatted by Arrow's C++ writer (which releases the GIL).

    Arrow quotes every text value and leaves missing values empty and unquoted, which is exactly
    PostgreSQL's CSV rule for '' versus NULL; numbers and booleans are written as is.
    """
    table = pa.Table.from_arrays([_arrow(frame[c]) for c in frame.columns], names=[str(c) for c in frame.columns])
    out = io.BytesIO()
    pa_csv.write_csv(table, out, pa_csv.WriteOptions(include_header=False, batch_size=8192))
    data = out.getvalue()
    # PostgreSQL text cannot hold NUL characters; in UTF-8 only U+0000 itself has a zero byte.
    return io.BytesIO(data.replace(b"\x00", b"") if b"\x00" in data else data)


def _point_ids(cur, n: int) -> np.ndarray:
    """``n`` ids from ``cim.pipe_point``'s sequence (taken inside the load transaction).

    They come back as their first value when consecutive (the usual case), else as an array.
    """
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    cur.execute("SELECT pg_get_serial_sequence('cim.pipe_point', 'id')")
    seq = cur.fetchone()[0]
    cur.execute("WITH s AS MATERIALIZED (SELECT nextval(%s::regclass) AS id FROM generate_series(1, %s)), "
                "r AS (SELECT min(id) AS lo, max(id) AS hi, count(*) AS n FROM s) "
                "SELECT lo, CASE WHEN hi - lo + 1 = n THEN NULL ELSE (SELECT array_agg(id ORDER BY id) FROM s) END "
                "FROM r", (seq, n))
    lo, ids = cur.fetchone()
    return np.arange(lo, lo + n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)


def current_points(cur, county: str, networks: list[str]) -> pd.DataFrame:
    """(network, exp_no, id) of the county's current points of ``networks``, the first id of a
    repeated point number."""
    cur.execute("SELECT network, exp_no, min(id) FROM cim.pipe_point WHERE county_code = %s AND is_current "
                "AND network = ANY(%s) GROUP BY 1, 2", (county, networks))
    return pd.DataFrame(cur.fetchall(), columns=["network", "exp_no", "id"])


def _end_lookup(cur, networks: set, points: pa.Table, county: str) -> pa.Table:
    """(network, exp_no, id) to resolve segment ends: this delivery's points first, then, for
    networks without points in this delivery, the county's current points."""
    missing_nets = sorted(networks - _networks(points))
    if missing_nets:
        current = current_points(cur, county, missing_nets)
        return pa.concat_tables([points, pa.table({
            "network": arrow_text(current["network"]), "exp_no": arrow_text(current["exp_no"]),
            "id": pa.array(current["id"].to_numpy(dtype=np.int64))})])
    return points


def _networks(points: pa.Table) -> set[str]:
    """The distinct network codes of a lookup table."""
    return {n for n in pc.unique(points["network"]).to_pylist() if n is not None}


def _resolve_ends(part: _Part, lookup: PointIndex) -> None:
    """Start/end point ids of the segments of ``part`` (NULL where no point matches)."""
    network = _batch_networks(part.batch)
    for end in ("start", "end"):
        found = lookup.ids(network, part.batch.frame[f"{end}_exp_no"].to_numpy(dtype=object))
        # the numpy stubs do not list None as a value, which makes an object array here
        part.extra[f"{end}_point_id"] = pd.array(np.where(found >= 0, found, None), dtype="Int64")  # type: ignore[call-overload]


def _network_column(batch: LayerBatch) -> pd.Series | None:
    """The frame's network column when some row fills it, else None (the batch's one network
    applies to every row)."""
    if "network" in batch.frame.columns and batch.frame["network"].notna().any():
        return batch.frame["network"]
    return None


def _batch_networks(batch: LayerBatch) -> np.ndarray:
    """The network code of every row: the frame's column, else the batch's one network."""
    column = _network_column(batch)
    return column.to_numpy(dtype=object) if column is not None else np.full(len(batch), batch.network, dtype=object)


def networks_of(batch: LayerBatch) -> set[str]:
    """The network codes of a pipe batch's rows (empty for other targets), from the distinct
    values of its column."""
    if batch.target not in ("pipe_point", "pipe_segment") or not len(batch):
        return set()
    column = _network_column(batch)
    if column is not None:
        return {str(n) for n in column.dropna().unique()}
    return {str(batch.network)} if batch.network is not None else set()


def resolve_late_ends(cur, delivery_id: int) -> None:
    """Segment ends of a delivery left NULL when written, resolved against the delivery's points
    queued after them: the first point (lowest id) of each (network, point number)."""
    for end in ("start", "end"):
        cur.execute(f"UPDATE cim.pipe_segment s SET {end}_point_id = p.id "
                    "FROM (SELECT network, exp_no, min(id) AS id FROM cim.pipe_point WHERE delivery_id = %s "
                    "GROUP BY 1, 2) p "
                    f"WHERE s.delivery_id = %s AND s.{end}_point_id IS NULL AND s.network = p.network "
                    f"AND s.{end}_exp_no = p.exp_no", (delivery_id, delivery_id))


class Copier:
    """COPYs batches into the feature tables on one cursor, keeping the server busy.

    A formatting thread prepares each batch (geometries fitted and checked, segment ends
    resolved) and formats its chunks, at most ``LOOKAHEAD`` chunks ahead of the COPY, across
    batch boundaries: while the server ingests the last chunk of one batch, the first chunk of
    the next is ready. Work that needs the connection (point ids from the sequence, current
    points of other deliveries) is done by the caller's thread between two COPYs.

    :meth:`add` queues batches (pipe points before the segments that refer to them);
    :meth:`pump` COPYs one chunk; :meth:`drain` COPYs everything queued.
    """

    LOOKAHEAD = 2

    def __init__(self, cur: psycopg2.extensions.cursor, *, county: str, delivery_id: int,
                 progress: Progress | None = None) -> None:
        self.cur, self.county, self.delivery_id, self.progress = cur, county, delivery_id, progress
        self.meta: dict[str, tuple[dict, dict]] = {}
        self.points: list[pa.Table] = []                 # (network, exp_no, id) of the queued points
        self.index: tuple[int, tuple, PointIndex] | None = None   # segment-end lookup of the last segment batch
        self.todo: deque = deque()                        # (part future, start, stop) not yet formatting
        self.inflight: deque[Future] = deque()            # formatted chunks, in COPY order
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cim-copy-format")

    def _columns(self, target: str) -> tuple[dict, dict]:
        if target not in self.meta:
            self.meta[target] = (table_columns(target), _defaults(target))
        return self.meta[target]

    def add(self, target: str, batch: LayerBatch) -> None:
        """Queue one batch of ``target`` (queries the connection: call it between COPYs)."""
        columns, defaults = self._columns(target)
        extra: dict[str, object] = {"county_code": self.county, "delivery_id": self.delivery_id}
        lookup = None
        if target == "pipe_point":
            extra["id"] = _point_ids(self.cur, len(batch))
            self.points.append(pa.table({"network": arrow_text(_batch_networks(batch)),
                                         "exp_no": arrow_text(batch.frame["exp_no"].to_numpy(dtype=object)),
                                         "id": pa.array(extra["id"], type=pa.int64())}))
        elif target == "pipe_segment":
            nets = networks_of(batch)
            points = self.written_points()
            missing = tuple(sorted(nets - _networks(points)))
            if self.index is None or self.index[:2] != (len(self.points), missing):   # new points, other networks
                self.index = (len(self.points), missing,
                              PointIndex(_end_lookup(self.cur, nets, points, self.county)))
            lookup = self.index[2]

        def prepare() -> _Part:
            part = _Part(batch, target, columns, defaults)
            part.extra.update(extra)
            if lookup is not None:
                _resolve_ends(part, lookup)
            return part

        future = self.pool.submit(prepare)
        n = len(batch)
        starts = [0, *range(FIRST_CHUNK_ROWS, n, CHUNK_ROWS)] if n else []
        for start, stop in zip(starts, [*starts[1:], n], strict=True):
            self.todo.append((future, start, stop, target))
        self._fill()

    def no_more_segments(self) -> None:
        """Every segment batch is queued: the points' lookup is let go (each queued batch holds
        it until its ends are resolved)."""
        self.points, self.index = [], None

    def written_points(self) -> pa.Table:
        """(network, exp_no, id) of every pipe point queued so far, in order (Arrow)."""
        if not self.points:
            return pa.table({"network": pa.array([], pa.string()), "exp_no": pa.array([], pa.string()),
                             "id": pa.array([], pa.int64())})
        if len(self.points) > 1:                  # joined once, so later lookups find one table
            self.points = [pa.concat_tables(self.points).combine_chunks()]
        return self.points[0]

    def _fill(self) -> None:
        while self.todo and len(self.inflight) < self.LOOKAHEAD:
            future, start, stop, target = self.todo.popleft()
            self.inflight.append(self.pool.submit(_format, future, start, stop, target))

    @property
    def backlog(self) -> int:
        """Chunks queued for COPY (formatting or waiting)."""
        return len(self.inflight) + len(self.todo)

    @property
    def busy(self) -> bool:
        """Chunks are queued for COPY."""
        return bool(self.inflight or self.todo)

    def pump(self) -> bool:
        """COPY the next chunk; False when nothing is queued."""
        self._fill()
        if not self.inflight:
            return False
        sql, buf, n = self.inflight.popleft().result()
        self._fill()
        self.cur.copy_expert(sql, buf, size=1 << 20)
        if self.progress:
            self.progress(n)
        return True

    def drain(self) -> None:
        """COPY everything queued."""
        while self.pump():
            pass

    def close(self) -> None:
        """Stop the formatting thread (queued work is dropped)."""
        self.todo.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)


def _format(part_future: Future, start: int, stop: int, target: str) -> tuple[str, io.BytesIO, int]:
    frame = part_future.result().frame(start, stop)
    sql = (f"COPY cim.{quote_ident(target)} ({', '.join(quote_ident(c) for c in frame.columns)}) "
           "FROM STDIN WITH (FORMAT csv)")
    return sql, _csv(frame), stop - start
