"""A vectorised dBASE (DBF) attribute reader with full control over the text encoding.

GDAL decodes field names strictly, so a UTF-8 DBF whose Chinese field names were cut at the
10-byte limit (a common occurrence) cannot be read through it. Here the fixed-width records
are viewed as a numpy array and each column is decoded in one call; names lose a trailing
partial character instead of failing.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pandas as pd

from cim.errors import UnreadableInput


def _fields(head: bytes, encoding: str) -> list[tuple[str, str, int, int]]:
    out: list[tuple[str, str, int, int]] = []
    off, seen = 1, set()
    for i in range(32, len(head) - 31, 32):
        d = head[i:i + 32]
        if d[0] == 0x0D:
            break
        raw = d[:11].split(b"\0", 1)[0]
        name = raw.decode(encoding, errors="ignore").strip() or f"FIELD{len(out) + 1}"
        base, k = name, 1
        while name in seen:
            k += 1
            name = f"{base}_{k}"
        seen.add(name)
        out.append((name, chr(d[11]), off, d[16]))
        off += d[16]
    return out


_SEP = 0x1E        # ASCII record separator: never part of a GBK or UTF-8 multi-byte sequence
_SPLIT = re.compile("[ \x00]*\x1e[ \x00]*")


_SAMPLE = 1024     # cells looked at to tell a column of few distinct values


def _text(mat: np.ndarray, encoding: str) -> pd.Series:
    """Decode a character column, each cell stripped of its space/NUL padding, empty as None.

    A column of few distinct values (codes, names of a dictionary, blanks) decodes each
    distinct cell once, its rows sharing one string; any other column is decoded in one call
    (:func:`_joined_text`). Columns that every row leaves blank at the end are cut first (text
    fields are often declared far wider than their values)."""
    used = np.flatnonzero(((mat != 32) & (mat != 0)).any(axis=0))
    mat = mat[:, :used[-1] + 1] if len(used) else mat[:, :1]
    n, w = mat.shape
    if n > _SAMPLE and len(pd.unique(_cell_hashes(mat[:_SAMPLE]))) * 8 > _SAMPLE:
        return _joined_text(mat, encoding)
    mat = np.ascontiguousarray(mat)
    cells = mat.view(f"S{w}").ravel()
    codes, distinct_hashes = pd.factorize(_cell_hashes(mat))
    if len(distinct_hashes) * 8 > max(n, _SAMPLE):
        return _joined_text(mat, encoding)
    first = np.empty(len(distinct_hashes), dtype=np.int64)
    first[codes[::-1]] = np.arange(n - 1, -1, -1)        # the first row of each distinct hash
    distinct = cells[first]
    if not (distinct[codes] == cells).all():             # two cells share a hash: sort instead
        distinct, codes = np.unique(cells, return_inverse=True)
    values = np.array([c.decode(encoding, errors="replace").strip(" \x00") or None for c in distinct.tolist()]
                      + [None], dtype=object)   # (a last None keeps an array of one string one-dimensional)
    return pd.Series(values[codes.ravel()], dtype=object)


_CELL_BASE = np.uint64(0x9E3779B97F4A7C15)


def _cell_hashes(mat: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of a fixed-width byte matrix, from its 8-byte words: equal
    cells hash alike; the caller compares the cells themselves to rule out collisions."""
    n, w = mat.shape
    if w % 8 == 0 and mat.flags.c_contiguous:
        packed = mat.view(np.uint64)
    else:
        words = np.zeros((n, -(-w // 8) * 8), dtype=np.uint8)
        words[:, :w] = mat
        packed = words.view(np.uint64)
    h = np.zeros(n, dtype=np.uint64)
    for k in range(packed.shape[1]):
        h = (h ^ packed[:, k]) * _CELL_BASE
    return h ^ (h >> np.uint64(29))


def _joined_text(mat: np.ndarray, encoding: str) -> pd.Series:
    """Decode a character column in one call: the fixed-width cells are joined with a separator,
    decoded as one buffer and split again (GBK / UTF-8 trail bytes never equal the separator)."""
    n, w = mat.shape
    buf = np.empty((n, w + 1), dtype=np.uint8)
    buf[:, :w] = mat
    buf[:, w] = _SEP
    text = buf.tobytes().decode(encoding, errors="replace")
    parts = _SPLIT.split(text)            # splits and strips the space/NUL padding in one C pass
    if len(parts) != n + 1:               # the data itself holds the separator: decode cell by cell
        col = np.ascontiguousarray(mat).view(f"S{w}").ravel()
        parts = [*np.char.decode(col, encoding, errors="replace").tolist(), ""]
        parts = [p.strip(" \x00") for p in parts]
    parts[0] = parts[0].lstrip(" \x00")
    out = pd.Series(parts[:-1], dtype=object)
    return out.where(out != "", None)


def _numbers(mat: np.ndarray) -> pd.Series:
    """Parse a numeric column; blank cells are NaN. Falls back to a tolerant parse on odd cells."""
    n, w = mat.shape
    blank = ((mat == 32) | (mat == 0)).all(axis=1)
    col = np.ascontiguousarray(mat).view(f"S{w}").ravel().copy()
    col[blank] = b"0"
    try:
        vals = col.astype(np.float64)
    except ValueError:
        txt = pd.Series(np.char.strip(col).astype(str), dtype=object)
        vals = pd.to_numeric(txt, errors="coerce").to_numpy(dtype=np.float64, copy=True)
    vals[blank] = np.nan
    return pd.Series(vals)


def _column(mat: np.ndarray, ftype: str, encoding: str) -> pd.Series:
    if ftype in "CM":
        return _text(mat, encoding)
    if ftype in "NFIOB" or ftype == "+":
        return _numbers(mat)
    col = np.ascontiguousarray(mat).view(f"S{mat.shape[1]}").ravel()
    if ftype == "D":
        txt = pd.Series(np.char.strip(col).astype(str), dtype=object)
        return pd.to_datetime(txt.where(txt.str.len() == 8, None), format="%Y%m%d", errors="coerce")
    if ftype == "L":
        up = np.char.upper(np.char.strip(col))
        # the numpy stubs do not list None as a value, which makes an object array here
        return pd.Series(np.where(np.isin(up, [b"T", b"Y"]), True, np.where(np.isin(up, [b"F", b"N"]), False, None)),  # type: ignore[call-overload]
                         dtype=object)
    return pd.Series(np.char.decode(col, "latin-1"), dtype=object)


def read_dbf_frame(path: Path, encoding: str, start: int = 0, stop: int | None = None) -> tuple[pd.DataFrame, int]:
    """Attribute table of a DBF file decoded with ``encoding``: records ``start:stop`` (all by
    default), deleted ones marked by the second value: the number of deleted records among them."""
    with path.open("rb") as fh:
        first = fh.read(32)
        if len(first) < 32:
            raise UnreadableInput(f"DBF 文件 {path.name} 不完整", f"DBF file {path.name} is truncated")
        nrec, hlen, rlen = struct.unpack("<IHH", first[4:12])
        fh.seek(0)
        fields = _fields(fh.read(hlen), encoding)
        if path.stat().st_size < hlen + nrec * rlen or rlen < 1 or not fields:
            raise UnreadableInput(f"DBF 文件 {path.name} 被截断或已损坏", f"DBF file {path.name} is truncated or corrupt",
                                  file=path.name)
        stop = nrec if stop is None else min(stop, nrec)
        start = min(start, stop)
        fh.seek(hlen + start * rlen)
        data = fh.read((stop - start) * rlen)
    body = np.frombuffer(data, dtype=np.uint8).reshape(stop - start, rlen)
    deleted = int((body[:, 0] == ord("*")).sum()) if len(body) else 0
    cols = {}
    for name, ftype, off, flen in fields:
        cols[name] = _column(body[:, off:off + flen], ftype, encoding)
    return pd.DataFrame(cols), deleted


def dbf_records(path: Path, block: int = 1 << 16) -> tuple[int, int]:
    """Number of records of a DBF file and how many of them are deleted (read ``block`` records
    at a time; the header is checked by :func:`read_dbf_frame`)."""
    with path.open("rb") as fh:
        first = fh.read(32)
        if len(first) < 32:
            return 0, 0
        nrec, hlen, rlen = struct.unpack("<IHH", first[4:12])
        if rlen < 1:
            return nrec, 0
        fh.seek(hlen)
        deleted = done = 0
        while done < nrec:
            n = min(block, nrec - done)
            data = fh.read(n * rlen)
            if len(data) < n * rlen:
                break
            deleted += int((np.frombuffer(data, dtype=np.uint8)[::rlen] == ord("*")).sum())
            done += n
    return nrec, deleted
