"""Rows of a delivery written into the feature tables with ``COPY … FROM STDIN`` (psycopg2).

The COPY buffer is built column-wise with pandas (no per-row Python): only table columns some
row of the batch fills, values coerced to the column's SQL type, the lineage columns
(``county_code``, ``delivery_id``, ``source_layer``, ``source_row``) and ``geom`` as hex EWKB
with SRID 4490 from ``shapely.to_wkb``. Geometries are normalised to the column type first
(Polygon → MultiPolygon, single-part Multi* → the part); empty, missing or unfit geometries are
refused with their source rows named. Pipe points get their ids from the table's sequence before
the COPY, so pipe segments can carry ``start_point_id`` / ``end_point_id`` resolved in pandas on
(network, survey point number) instead of a second pass over the table.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import psycopg2.extensions
import shapely

from cim.db import quote_ident
from cim.errors import InvalidInput
from ingest.model import LayerBatch

CHUNK_ROWS = 25_000
# Columns the loader sets itself (never taken from a batch frame).
LOADER_COLUMNS = frozenset({"id", "county_code", "delivery_id", "is_current", "start_point_id", "end_point_id"})
_INT_TYPES = {"smallint", "integer", "bigint"}
_TEXT_TYPES = {"text", "character varying", "character"}
# shapely type ids accepted per target geometry column, and the single-part id of a Multi* type.
_POINT, _LINE, _POLY, _MPOINT, _MLINE, _MPOLY = 0, 1, 3, 4, 5, 6
GEOM_KIND = {"admin_area": _MPOLY, "building": _MPOLY, "green_space": _MPOLY, "pipe_point": _POINT,
             "streetlight": _POINT, "pipe_segment": _LINE}
_TYPE_NAMES = {-1: "missing", 0: "Point", 1: "LineString", 2: "LinearRing", 3: "Polygon", 4: "MultiPoint",
               5: "MultiLineString", 6: "MultiPolygon", 7: "GeometryCollection"}

Progress = Callable[[int], None]


def table_columns(cur: psycopg2.extensions.cursor, target: str) -> dict[str, tuple[str, str | None, bool]]:
    """Column name → (SQL type, default expression, nullable) of ``cim.<target>`` (the identifier whitelist)."""
    cur.execute("SELECT column_name, data_type, column_default, is_nullable = 'YES' FROM information_schema.columns "
                "WHERE table_schema = 'cim' AND table_name = %s ORDER BY ordinal_position", (target,))
    return {name: (dtype, default, nullable) for name, dtype, default, nullable in cur.fetchall()}


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


def geometries(batch: LayerBatch, target: str) -> np.ndarray:
    """The batch's geometries fitted to the target column type, SRID 4490; refuse unfit rows."""
    g = np.array(batch.frame["geom"].to_numpy(), dtype=object)
    want = GEOM_KIND[target]
    tid = shapely.get_type_id(g)
    if want == _MPOLY:
        poly = np.flatnonzero(tid == _POLY)
        if len(poly):
            g[poly] = shapely.multipolygons(g[poly], indices=np.arange(len(poly)))
    else:
        multi = np.flatnonzero((tid == want + 4) & (shapely.get_num_geometries(g) == 1))
        if len(multi):
            g[multi] = shapely.get_geometry(g[multi], 0)
    tid = shapely.get_type_id(g)
    empty = (tid >= 0) & shapely.is_empty(g)
    bad = np.flatnonzero((tid != want) | empty)
    if len(bad):
        rows = batch.frame["source_row"].to_numpy()[bad[:5]]
        what = ["empty" if empty[i] else _TYPE_NAMES.get(int(tid[i]), "?") for i in bad[:5]]
        where = "; ".join(f"{batch.source_layer} #{r}: {w}" for r, w in zip(rows, what, strict=True))
        raise InvalidInput(f"{target} 有 {len(bad)} 个几何不可入库（空、缺失或类型不符）：{where}",
                           f"{len(bad)} {target} geometries cannot be stored (empty, missing or wrong type): {where}")
    return shapely.set_srid(g, 4490)


def copy_frame(batch: LayerBatch, target: str, columns: dict[str, tuple[str, str | None, bool]]) -> pd.DataFrame:
    """The frame to COPY: filled table columns, lineage, network, ``geom`` as hex EWKB."""
    df = batch.frame
    out: dict[str, object] = {}
    for col, (dtype, _default, _nullable) in columns.items():
        if col in LOADER_COLUMNS or col == "geom":
            continue
        if col in df.columns and df[col].notna().any():
            out[col] = _coerce(df[col], dtype, col, batch.source_layer)
        elif col == "source_layer":
            out[col] = batch.source_layer
        elif col == "network" and batch.network:
            out[col] = batch.network
        elif col == "subtype" and batch.subtype:
            out[col] = batch.subtype
    out["geom"] = shapely.to_wkb(geometries(batch, target), hex=True, include_srid=True, output_dimension=2)
    return pd.DataFrame(out, index=df.index)


def _csv(frame: pd.DataFrame) -> io.StringIO:
    text = frame.to_csv(header=False, index=False, na_rep="", quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    # PostgreSQL text cannot hold NUL characters: drop them from the whole buffer at once.
    return io.StringIO(text.replace("\x00", "") if "\x00" in text else text)


def _defaults(cur, columns: dict[str, tuple[str, str | None, bool]]) -> dict[str, object]:
    """Values of the constant defaults of NOT NULL columns (e.g. ``z_ref``), from the schema."""
    out: dict[str, object] = {}
    for col, (_dtype, default, nullable) in columns.items():
        if default and not nullable and col != "id" and "nextval" not in default and "now()" not in default:
            cur.execute(f"SELECT {default}")  # schema text from information_schema, not user input
            out[col] = cur.fetchone()[0]
    return out


def _point_ids(cur, n: int) -> np.ndarray:
    """``n`` ids from ``cim.pipe_point``'s sequence (taken inside the load transaction)."""
    cur.execute("SELECT nextval(pg_get_serial_sequence('cim.pipe_point', 'id')) FROM generate_series(1, %s)", (n,))
    return np.fromiter((r[0] for r in cur.fetchall()), dtype=np.int64, count=n)


def _segment_ends(cur, frame: pd.DataFrame, points: pd.DataFrame, county: str) -> None:
    """Fill start/end point ids from this delivery's points, else the county's current points."""
    lookup = points.drop_duplicates(["network", "exp_no"], keep="first")
    missing_nets = sorted(set(frame["network"].dropna()) - set(lookup["network"]))
    if missing_nets:
        cur.execute("SELECT network, exp_no, min(id) FROM cim.pipe_point WHERE county_code = %s AND is_current "
                    "AND network = ANY(%s) GROUP BY 1, 2", (county, missing_nets))
        current = pd.DataFrame(cur.fetchall(), columns=["network", "exp_no", "id"])
        lookup = pd.concat([lookup, current], ignore_index=True)
    index = pd.MultiIndex.from_arrays([lookup["network"].astype(str), lookup["exp_no"].astype(str)])
    ids = lookup["id"].to_numpy()
    for end in ("start", "end"):
        pos = index.get_indexer(pd.MultiIndex.from_arrays([frame["network"].astype(str),
                                                           frame[f"{end}_exp_no"].astype(str)]))
        frame[f"{end}_point_id"] = pd.array(np.where(pos >= 0, ids[pos], 0), dtype="Int64")
        frame.loc[pos < 0, f"{end}_point_id"] = pd.NA


def write_target(cur, target: str, batches: list[LayerBatch], *, county: str, delivery_id: int,
                 progress: Progress | None = None, points: pd.DataFrame | None = None) -> pd.DataFrame:
    """COPY every batch of one target table into ``cim.<target>``.

    Returns the written (network, exp_no, id) of pipe points, to pass as ``points`` when the
    segments of the same load are written; an empty frame for other targets.
    """
    columns = table_columns(cur, target)
    frames = [copy_frame(b, target, columns) for b in batches]
    frame = pd.concat(frames, ignore_index=True, sort=False) if len(frames) > 1 else frames[0]
    frame = frame[[c for c in columns if c in frame.columns]]  # table order, one column set
    for col, value in _defaults(cur, columns).items():
        if col in frame.columns:
            frame[col] = frame[col].fillna(value)
    frame.insert(0, "county_code", county)
    frame.insert(1, "delivery_id", delivery_id)
    written = pd.DataFrame(columns=["network", "exp_no", "id"])
    if target == "pipe_point":
        frame.insert(0, "id", _point_ids(cur, len(frame)))
        written = frame[["network", "exp_no", "id"]]
    if target == "pipe_segment":
        _segment_ends(cur, frame, points if points is not None else written, county)
    sql = f"COPY cim.{quote_ident(target)} ({', '.join(quote_ident(c) for c in frame.columns)}) FROM STDIN WITH (FORMAT csv)"
    chunks = [frame.iloc[start:start + CHUNK_ROWS] for start in range(0, len(frame), CHUNK_ROWS)]
    # Pipeline: a helper thread formats chunk k+1 while the server ingests chunk k (psycopg2
    # releases the GIL while it waits for the server).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cim-copy-csv") as pool:
        pending = pool.submit(_csv, chunks[0]) if chunks else None
        for k, chunk in enumerate(chunks):
            buf = pending.result()
            pending = pool.submit(_csv, chunks[k + 1]) if k + 1 < len(chunks) else None
            cur.copy_expert(sql, buf, size=1 << 20)
            if progress:
                progress(len(chunk))
    return written
