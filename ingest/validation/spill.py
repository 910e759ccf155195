"""Residues kept on disk: what a rule at the end of a run reads of a layer, written chunk by chunk
to a temporary file and read back at the end, so memory does not grow with the delivery while
it is read.

:class:`Spill` writes each chunk's frame to one file per layer in a temporary directory. Two
uses read it back differently:

- the county-boundary rule (Q24) needs the geometries and keys of every feature; while no
  county boundary is known (none loaded, none delivered yet) a run cannot check a chunk when it
  is read, and keeps them for the end, read back chunk by chunk (:meth:`Spill.chunks`);
- the rules across batches (network, drainage, clearances) read the residues of every chunk of
  a layer as one frame (:meth:`Spill.joined`), built once reading is over: the residues do not
  accumulate beside the chunk being read, and the joined columns are allocated whole, after
  the memory of the chunks is freed, instead of growing chunk by chunk among it.

The frames are pickled: values come back exactly as delivered (text, numbers or a mix of both),
which the findings name. The directory is removed by :meth:`Spill.close`, or when the object is
collected or the process ends.

:class:`MappedWkb` keeps the residues' geometries (WKB) in Arrow IPC files and gives each
layer's back memory-mapped: the rules decode only the rows of their findings (all rows only
when the pipelines are measured in a UTM zone), so only those pages come from the file.
"""

from __future__ import annotations

import pickle
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc
from pandas.api.types import union_categoricals


class _Files:
    """One temporary file per layer key, in a directory made on first use and removed by
    :meth:`close`, or when the object is collected or the process ends."""

    prefix = "cim-ingest-residue-"
    suffix = ".pickle"

    def __init__(self) -> None:
        self.dir: Path | None = None
        self.files: dict[tuple, Path] = {}
        self.made = 0                                  # files named so far (names are not reused)
        self._cleanup: weakref.finalize | None = None

    def __contains__(self, key: tuple) -> bool:
        return key in self.files

    def _path(self, key: tuple) -> Path:
        """The file of ``key`` (named, not created)."""
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix=self.prefix))
            self._cleanup = weakref.finalize(self, shutil.rmtree, self.dir, ignore_errors=True)
        if key not in self.files:
            self.files[key] = self.dir / f"{self.made}{self.suffix}"
            self.made += 1
        return self.files[key]

    def close(self) -> None:
        """Remove the files."""
        if self._cleanup is not None:
            self._cleanup()
        self.files.clear()


class Spill(_Files):
    """Frames of the chunks of some layers, in temporary files (one per layer key, or one per
    column of a layer key with :meth:`put_columns`)."""

    def __init__(self) -> None:
        super().__init__()
        self.layout: dict[tuple, list[tuple]] = {}      # key → the columns of each chunk put_columns wrote

    def __contains__(self, key: tuple) -> bool:
        return key in self.files or key in self.layout

    def close(self) -> None:
        super().close()
        self.layout.clear()

    def put(self, key: tuple, frame: pd.DataFrame) -> None:
        """Append one chunk's frame to the layer's file."""
        with self._path(key).open("ab") as f:
            pickle.dump(frame, f, protocol=pickle.HIGHEST_PROTOCOL)

    def chunks(self, key: tuple) -> Iterator[pd.DataFrame]:
        """The frames written for ``key``, in the order they were put."""
        with self.files[key].open("rb") as f:
            while True:
                try:
                    yield pickle.load(f)   # noqa: S301 - a file this process wrote itself
                except EOFError:
                    return

    def put_columns(self, key: tuple, frame: pd.DataFrame) -> None:
        """Append one chunk's frame to the layer's residue as separate columns, each column to
        a file of its own (for :meth:`joined`)."""
        self.layout.setdefault(key, []).append(tuple(frame.columns))
        for c in frame.columns:
            self.put((key, c), frame[c])

    def joined(self, key: tuple) -> pd.DataFrame:
        """The frames written for ``key`` by :meth:`put_columns`, one after the other, indexed
        0 … n − 1 (as ``pd.concat(frames, ignore_index=True)``), built a column at a time from
        its own file: only one column's chunks are in memory beside the joined columns. Arrow
        columns are joined into one contiguous array."""
        layout = self.layout.pop(key)
        names = list(layout[0])
        if any(list(cols) != names for cols in layout):     # chunks that differ: as pandas joins them
            readers = {c: self.chunks((key, c)) for cols in layout for c in cols}
            frames = [pd.DataFrame({c: next(readers[c]) for c in cols}, copy=False) for cols in layout]
            return joined_frames(frames)
        out = {}
        for c in names:
            out[c] = joined_column(list(self.chunks((key, c))))
            self.files.pop((key, c)).unlink()
        return pd.DataFrame(out, copy=False)


def joined_column(parts: list[pd.Series]) -> pd.Series:
    """Columns one after the other, indexed 0 … n − 1: categoricals as one categorical of all
    their categories (pandas would join categoricals of different categories as objects),
    Arrow columns as one contiguous array, numbers missing throughout as :func:`missing_column`."""
    absent = _all_missing(parts)
    if absent is not None:
        return absent
    if len(parts) > 1 and all(isinstance(p.dtype, pd.CategoricalDtype) for p in parts):
        return pd.Series(union_categoricals(_same_category_type(parts)), name=parts[0].name)
    return _contiguous_column(pd.concat(parts, ignore_index=True))


def _same_category_type(parts: list[pd.Series]) -> list[pd.Categorical]:
    """The categoricals of ``parts`` with categories of one type, as ``union_categoricals``
    needs: the type of the non-empty categories when they agree, else objects. A chunk whose
    column is empty throughout has no categories, and their type (objects, or pandas' text) says
    nothing of the other chunks' values."""
    types = {p.cat.categories.dtype for p in parts if len(p.cat.categories)}
    target = types.pop() if len(types) == 1 else np.dtype(object)
    return [p.array if p.cat.categories.dtype == target
            else pd.Categorical.from_codes(p.cat.codes.to_numpy(), categories=p.cat.categories.astype(target))
            for p in parts]


_MASKED = (pd.arrays.IntegerArray, pd.arrays.FloatingArray, pd.arrays.BooleanArray)


def missing_column(dtype, n: int, name=None) -> pd.Series:
    """A column of ``n`` missing numbers of ``dtype`` (NumPy float, or pandas' nullable
    integer, float or boolean) that takes no memory: one value seen ``n`` times (a read-only
    view with stride 0; pandas copies it before any change). The delivery's optional columns
    left empty (widths and heights of round pipes, a flow direction, …) cost nothing in the
    rules across batches."""
    if isinstance(dtype, pd.api.extensions.ExtensionDtype):
        array = dtype.construct_array_type()(np.broadcast_to(np.zeros(1, dtype=dtype.numpy_dtype), n),
                                             np.broadcast_to(np.True_, n))
        return pd.Series(array, name=name, copy=False)
    return pd.Series(np.broadcast_to(np.array(np.nan, dtype=dtype), n), name=name, copy=False)


def _all_missing(parts: list[pd.Series]) -> pd.Series | None:
    """:func:`missing_column` of the joined length when ``parts`` are numbers of one type,
    all missing; else None."""
    first = parts[0]
    numbers = isinstance(first.array, _MASKED) if isinstance(first.dtype, pd.api.extensions.ExtensionDtype) \
        else first.dtype.kind == "f"
    if not numbers or any(p.dtype != first.dtype or p.notna().any() for p in parts):
        return None
    return missing_column(first.dtype, sum(len(p) for p in parts), first.name)


def joined_frames(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Frames one after the other, indexed 0 … n − 1 (as ``pd.concat(frames, ignore_index=True)``),
    each column as :func:`joined_column` joins it."""
    names = list(dict.fromkeys(c for f in frames for c in f.columns))
    if any(list(f.columns) != names for f in frames):   # columns some frames lack: as pandas joins them
        return _contiguous(pd.concat(frames, ignore_index=True))
    return pd.DataFrame({c: joined_column([f[c] for f in frames]) for c in names}, copy=False)


def _contiguous_column(column: pd.Series) -> pd.Series:
    """An Arrow column as one array (its chunks joined); any other column as it is."""
    if not isinstance(column.dtype, pd.ArrowDtype):
        return column
    values = column.array.__arrow_array__()
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return pd.Series(pd.arrays.ArrowExtensionArray(values), index=column.index, name=column.name)


def _contiguous(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`_contiguous_column` of every column of ``frame``."""
    return pd.DataFrame({c: _contiguous_column(frame[c]) for c in frame.columns}, copy=False)


class MappedWkb(_Files):
    """One WKB column per layer key, written chunk by chunk to an Arrow IPC file and read back
    memory-mapped (zero-copy, one Arrow chunk per chunk written)."""

    prefix = "cim-ingest-wkb-"
    suffix = ".arrow"

    def __init__(self) -> None:
        super().__init__()
        self.writers: dict[tuple, pa.ipc.RecordBatchFileWriter] = {}

    def put(self, key: tuple, column: pd.Series) -> None:
        """Append one chunk's geometries (an Arrow binary column) to the layer's file."""
        values = column.array.__arrow_array__()
        chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
        writer = self.writers.get(key)
        if writer is None:
            writer = self.writers[key] = pa.ipc.new_file(str(self._path(key)), pa.schema([("geom", pa.binary())]))
        for chunk in chunks:
            writer.write_batch(pa.record_batch([chunk.cast(pa.binary())], names=["geom"]))

    def column(self, key: tuple) -> pd.Series:
        """The layer's geometries, indexed 0 … n − 1, backed by the memory-mapped file."""
        writer = self.writers.pop(key, None)
        if writer is not None:
            writer.close()
        with pa.memory_map(str(self.files[key])) as source:
            table = pa.ipc.open_file(source).read_all()
        return pd.Series(pd.arrays.ArrowExtensionArray(table.column("geom")), name="geom")

    def close(self) -> None:
        """Remove the files (columns read back stay readable: the mappings outlive the names)."""
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()
        super().close()
