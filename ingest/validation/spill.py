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
"""

from __future__ import annotations

import pickle
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa


class Spill:
    """Frames of the chunks of some layers, in temporary files (one per layer key)."""

    def __init__(self) -> None:
        self.dir: Path | None = None
        self.files: dict[tuple, Path] = {}
        self._cleanup: weakref.finalize | None = None

    def __contains__(self, key: tuple) -> bool:
        return key in self.files

    def put(self, key: tuple, frame: pd.DataFrame) -> None:
        """Append one chunk's frame to the layer's file."""
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix="cim-ingest-residue-"))
            self._cleanup = weakref.finalize(self, shutil.rmtree, self.dir, ignore_errors=True)
        path = self.files.setdefault(key, self.dir / f"{len(self.files)}.pickle")
        with path.open("ab") as f:
            pickle.dump(frame, f, protocol=pickle.HIGHEST_PROTOCOL)

    def chunks(self, key: tuple) -> Iterator[pd.DataFrame]:
        """The frames written for ``key``, in the order they were put."""
        with self.files[key].open("rb") as f:
            while True:
                try:
                    yield pickle.load(f)   # noqa: S301 - a file this process wrote itself
                except EOFError:
                    return

    def joined(self, key: tuple) -> pd.DataFrame:
        """The frames written for ``key`` one after the other, indexed 0 … n − 1 (as
        ``pd.concat(frames, ignore_index=True)``), built a column at a time: each column's chunks
        are freed once it is joined. Arrow columns are joined into one contiguous array."""
        frames = list(self.chunks(key))
        names = list(frames[0].columns)
        if any(list(f.columns) != names for f in frames):     # chunks that differ: as pandas joins them
            return _contiguous(pd.concat(frames, ignore_index=True))
        parts = {c: [f[c] for f in frames] for c in names}
        del frames
        out = {}
        for c in names:
            out[c] = _contiguous_column(pd.concat(parts.pop(c), ignore_index=True))
        return pd.DataFrame(out, copy=False)

    def close(self) -> None:
        """Remove the files."""
        if self._cleanup is not None:
            self._cleanup()
        self.files.clear()


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
