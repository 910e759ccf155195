"""Text keys looked up many times: (network, point number) → id.

The loader resolves segment ends against the points it wrote, and the mapping builds lines of
line tables from the points they name; both look up hundreds of thousands of keys, a batch at a
time, in one set built once. The keys stay Arrow text (no Python object per key) and are found
through a sorted array of 64-bit hashes computed with numpy from the Arrow buffers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ingest.model import arrow_text


def point_ids(lookup: pd.DataFrame, network, exp_no) -> np.ndarray:
    """The ``lookup`` id of each (network, point number), -1 where there is none; the first
    row of ``lookup`` wins for a repeated key."""
    return PointIndex(lookup).ids(network, exp_no)


class PointIndex:
    """(network, point number) → id of a lookup table, built once for many segment batches.

    The keys are held as one Arrow text column; a sorted array of their 64-bit hashes
    (:func:`text_hashes`) finds each query's candidate by binary search, and the candidate's key
    is compared with the query's, so a hash collision costs a slower exact lookup, never a wrong
    id. Built once, the lookup answers a batch in time proportional to the batch (Arrow's
    ``index_in`` hashes the whole value set on every call) and keeps no Python object per point."""

    def __init__(self, lookup: pd.DataFrame | pa.Table) -> None:
        if isinstance(lookup, pd.DataFrame):
            lookup = pa.table({"network": arrow_text(lookup["network"]), "exp_no": arrow_text(lookup["exp_no"]),
                               "id": pa.array(lookup["id"].to_numpy(dtype=np.int64))})
        self.keys = text_keys(lookup["network"], lookup["exp_no"]).combine_chunks()
        self.first_ids = lookup["id"].to_numpy()
        hashes = text_hashes(self.keys)
        rows = np.flatnonzero(self.keys.is_valid().to_numpy(zero_copy_only=False))
        # stable: among equal hashes the earlier row comes first, so the first row of a key wins
        self.order = rows[np.argsort(hashes[rows], kind="stable")]
        self.sorted_hashes = hashes[self.order]

    def ids(self, network, exp_no) -> np.ndarray:
        """The id of each (network, point number), -1 where there is none; the first row of the
        lookup wins for a repeated key; a missing network or point number matches nothing."""
        query = text_keys(arrow_text(network), arrow_text(exp_no)).combine_chunks()
        if not len(self.order) or not len(query):
            return np.full(len(query), -1, dtype=np.int64)
        hashes = text_hashes(query)
        at = np.minimum(np.searchsorted(self.sorted_hashes, hashes), len(self.order) - 1)
        candidate = self.order[at]
        hit = (self.sorted_hashes[at] == hashes) & query.is_valid().to_numpy(zero_copy_only=False)
        same = pc.fill_null(pc.equal(query, self.keys.take(pa.array(candidate))), False).to_numpy(zero_copy_only=False)
        pos = np.where(hit & same, candidate, -1)
        collided = np.flatnonzero(hit & ~same)   # another key with the same hash came first
        if collided.size:
            exact = pc.index_in(query.take(pa.array(collided)), value_set=self.keys, skip_nulls=True)
            pos[collided] = pc.fill_null(exact, -1).to_numpy(zero_copy_only=False)
        return np.where(pos >= 0, self.first_ids[np.maximum(pos, 0)], -1)


_HASH_BASE = np.uint64(0x100000001B3)
_HASH_SLICE = 1 << 16


def text_hashes(values: pa.Array) -> np.ndarray:
    """A 64-bit hash of each text of ``values`` (unspecified for nulls), computed from the Arrow
    buffers with numpy: a polynomial over the UTF-8 bytes and the length, then mixed
    (splitmix64's finaliser). Work and memory are bounded per slice of texts."""
    values = values.cast(pa.large_string())
    out = np.empty(len(values), dtype=np.uint64)
    for start in range(0, len(values), _HASH_SLICE):
        part = values.slice(start, _HASH_SLICE)
        buffers = part.buffers()
        offsets = np.frombuffer(buffers[1], dtype=np.int64)[part.offset:part.offset + len(part) + 1]
        lengths = np.diff(offsets)
        first, last = int(offsets[0]), int(offsets[-1])
        data = (np.frombuffer(buffers[2], dtype=np.uint8)[first:last] if buffers[2] is not None and last > first
                else np.zeros(0, dtype=np.uint8))
        within = np.arange(last - first, dtype=np.int64) - np.repeat(offsets[:-1] - first, lengths)
        powers = np.cumprod(np.full(int(lengths.max(initial=0)) + 1, _HASH_BASE, dtype=np.uint64))
        sums = np.concatenate([np.zeros(1, np.uint64), np.cumsum(data.astype(np.uint64) * powers[within])])
        h = (sums[offsets[1:] - first] - sums[offsets[:-1] - first]) ^ lengths.astype(np.uint64)
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
        out[start:start + len(part)] = h
    return out


def text_keys(network: pa.ChunkedArray, exp_no: pa.ChunkedArray) -> pa.ChunkedArray:
    """One text key per (network, point number) (U+001F never occurs in either), null where
    either is missing: a missing value matches nothing."""
    return pc.binary_join_element_wise(network, exp_no, "\x1f")
