"""Server-side tile cache keyed by data versions, so an ingest never serves a stale tile.

The key of a tile is ``(layers, the layers' data versions, z, x, y)``. The versions come from
the server's one :class:`cim.versions.VersionWatcher` (NOTIFY-driven, polled as a fallback), so a
cache hit costs no database round trip and a new version simply makes new keys: old entries age
out of the LRU, nothing is ever purged by hand.

Entries are stored gzip-compressed once; the ETag is derived from the key, so a conditional
request (``If-None-Match``) is answered with 304 before any tile is looked up or rendered.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass

from isal import igzip

log = logging.getLogger(__name__)

_ENTRY_OVERHEAD = 200  # bytes of bookkeeping per entry, counted against the budget


@dataclass(frozen=True)
class TileEntry:
    """One cached tile: gzip body (empty for an empty tile), its ETag and raw length."""

    gz: bytes
    etag: str
    raw_len: int

    @property
    def empty(self) -> bool:
        """True for a tile without features (served as 204)."""
        return self.raw_len == 0

    def raw(self) -> bytes:
        """Uncompressed MVT bytes (for clients that do not accept gzip)."""
        return gunzip(self.gz)


def gunzip(gz: bytes) -> bytes:
    """Inflate a gzip body (ISA-L); empty stays empty."""
    return igzip.decompress(gz) if gz else b""


def make_etag(fingerprint: str, key: tuple) -> str:
    """Strong ETag of a tile key (the key fixes the content for a given catalogue and settings)."""
    digest = hashlib.blake2b(repr((fingerprint, key)).encode(), digest_size=12).hexdigest()
    return f'"{digest}"'


# ISA-L's deflate (python-isal) at level 2 compresses a 70 KB MVT in ~0.1 ms where zlib level 3
# takes ~0.65 ms, for the same size within 1 %; any gzip reader inflates it.
GZIP_LEVEL = 2


def make_entry(raw: bytes, etag: str) -> TileEntry:
    """Compress a rendered tile once (deterministic gzip: mtime 0)."""
    gz = igzip.compress(raw, compresslevel=GZIP_LEVEL, mtime=0) if raw else b""
    return TileEntry(gz, etag, len(raw))


class TileCache:
    """In-memory LRU of :class:`TileEntry`, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self._data: OrderedDict[tuple, TileEntry] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple) -> TileEntry | None:
        """Entry for ``key`` (marked most recently used) or None."""
        entry = self._data.get(key)
        if entry is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return entry

    def put(self, key: tuple, entry: TileEntry) -> None:
        """Store an entry, evicting least recently used ones beyond the byte budget."""
        size = len(entry.gz) + _ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        old = self._data.pop(key, None)
        if old is not None:
            self.bytes -= len(old.gz) + _ENTRY_OVERHEAD
        self._data[key] = entry
        self.bytes += size
        while self.bytes > self.max_bytes and self._data:
            _, gone = self._data.popitem(last=False)
            self.bytes -= len(gone.gz) + _ENTRY_OVERHEAD

    def __len__(self) -> int:
        return len(self._data)

    def stats(self) -> dict:
        """Counters for monitoring."""
        return {"entries": len(self._data), "bytes": self.bytes, "max_bytes": self.max_bytes,
                "hits": self.hits, "misses": self.misses}
