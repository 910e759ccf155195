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
    """(network, point number) → id of a lookup table, built once for many segment batches;
    a lookup table without a ``network`` column finds ids by point number alone.

    A sorted array of the keys' 64-bit hashes (:func:`pair_hashes`) finds each query's
    candidate by binary search, and the candidate's network and point number are compared with
    the query's, so a hash collision costs a slower exact lookup, never a wrong id. The index
    holds the hashes and the order of the rows (twelve bytes a point) beside the lookup's own
    Arrow columns, which it shares, not copies. Built once, it answers a batch in time
    proportional to the batch (Arrow's ``index_in`` hashes the whole value set on every call)
    and keeps no Python object per point."""

    def __init__(self, lookup: pd.DataFrame | pa.Table) -> None:
        if isinstance(lookup, pd.DataFrame):
            lookup = pa.table({"network": arrow_text(lookup["network"]), "exp_no": arrow_text(lookup["exp_no"]),
                               "id": pa.array(lookup["id"].to_numpy(dtype=np.int64))})
        self.network = _one(arrow_text(lookup["network"])) if "network" in lookup.column_names else None
        self.exp_no = _one(arrow_text(lookup["exp_no"]))
        self.first_ids = lookup["id"].to_numpy()
        self._keys: pa.Array | None = None
        hashes = pair_hashes(self.network, self.exp_no)
        rows = np.flatnonzero(_valid(self.network, self.exp_no))
        # stable: among equal hashes the earlier row comes first, so the first row of a key wins
        order = rows[np.argsort(hashes[rows], kind="stable")]
        self.sorted_hashes = hashes[order]
        self.order = order.astype(np.int32) if len(hashes) < 2**31 else order

    def ids(self, network, exp_no) -> np.ndarray:
        """The id of each (network, point number) (of each point number, ``network`` unused, when
        the lookup has no network), -1 where there is none; the first row of the lookup wins for
        a repeated key; a missing network or point number matches nothing."""
        qe = _one(arrow_text(exp_no))
        qn = _one(arrow_text(network)) if self.network is not None else None
        if not len(self.order) or not len(qe):
            return np.full(len(qe), -1, dtype=np.int64)
        hashes = pair_hashes(qn, qe)
        at = np.minimum(np.searchsorted(self.sorted_hashes, hashes), len(self.order) - 1)
        candidate = self.order[at]
        hit = (self.sorted_hashes[at] == hashes) & _valid(qn, qe)
        take = pa.array(candidate)
        same = pc.fill_null(pc.equal(qe, self.exp_no.take(take)), False).to_numpy(zero_copy_only=False)
        if qn is not None and self.network is not None:
            same &= pc.fill_null(pc.equal(qn, self.network.take(take)), False).to_numpy(zero_copy_only=False)
        pos = np.where(hit & same, candidate, -1)
        collided = np.flatnonzero(hit & ~same)   # another key with the same hash came first
        if collided.size:
            rows = pa.array(collided)
            query = qe.take(rows) if qn is None else text_keys(qn.take(rows), qe.take(rows))
            exact = pc.index_in(query, value_set=self._exact_keys(), skip_nulls=True)
            pos[collided] = pc.fill_null(exact, -1).to_numpy(zero_copy_only=False)
        return np.where(pos >= 0, self.first_ids[np.maximum(pos, 0)], -1)

    def _exact_keys(self) -> pa.Array:
        """The lookup's keys as one text each, made when a collision first needs them."""
        if self._keys is None:
            self._keys = self.exp_no if self.network is None else _one(text_keys(self.network, self.exp_no))
        return self._keys


def _one(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One array of Arrow values (a single chunk as it is, not copied)."""
    if isinstance(values, pa.ChunkedArray):
        return values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()
    return values


def _valid(network: pa.Array | None, exp_no: pa.Array) -> np.ndarray:
    """Rows with a point number (and a network, when there is one)."""
    ok = exp_no.is_valid().to_numpy(zero_copy_only=False)
    if network is not None:
        ok &= network.is_valid().to_numpy(zero_copy_only=False)
    return ok


def pair_hashes(network: pa.Array | None, exp_no: pa.Array) -> np.ndarray:
    """A 64-bit hash of each (network, point number) (of each point number when ``network`` is
    None) from :func:`text_hashes` of both, mixed (unspecified where either is missing)."""
    h = text_hashes(exp_no)
    if network is None:
        return h
    h ^= text_hashes(network) * np.uint64(0x9E3779B97F4A7C15)
    return _mixed(h)


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
        out[start:start + len(part)] = _mixed(h)
    return out


def _mixed(h: np.ndarray) -> np.ndarray:
    """``h`` mixed in place by splitmix64's finaliser (every input bit moves every output bit)."""
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


def text_keys(network: pa.ChunkedArray, exp_no: pa.ChunkedArray) -> pa.ChunkedArray:
    """One text key per (network, point number) (U+001F never occurs in either), null where
    either is missing: a missing value matches nothing."""
    return pc.binary_join_element_wise(network, exp_no, "\x1f")
