"""Residues kept on disk: what a rule at the end of a run reads of a layer, written chunk by chunk
to a temporary file and read back chunk by chunk, so memory does not grow with the delivery.

The county-boundary rule (Q24) needs the geometries and keys of every feature; while no county
boundary is known (none loaded, none delivered yet) a run cannot check a chunk when it is read,
and keeps them for the end. :class:`Spill` writes each chunk's frame (source rows, key column,
geometries as WKB) to one file per layer in a temporary directory and gives the chunks back in
order. The frames are pickled: the key values come back exactly as delivered (text, numbers or
a mix of both), which the findings name. The directory is removed by :meth:`Spill.close`, or
when the object is collected or the process ends.
"""

from __future__ import annotations

import pickle
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path

import pandas as pd


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

    def close(self) -> None:
        """Remove the files."""
        if self._cleanup is not None:
            self._cleanup()
        self.files.clear()
