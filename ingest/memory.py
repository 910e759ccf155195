"""The process's memory during a run: glibc's allocator bounded, freed memory handed back.

A run allocates on several threads and frees large arrays stage after stage (reading, loading,
the rules across batches); these keep the resident size near what is live
(docs/ingest.md "Memory").
"""

from __future__ import annotations

import ctypes

import pyarrow as pa

_M_ARENA_MAX, _M_MMAP_THRESHOLD = -8, -3      # mallopt parameters (malloc.h)


def _libc() -> ctypes.CDLL | None:
    """The C library when it is glibc (mallopt and malloc_trim), else None."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def bound_allocator(arenas: int, mmap_threshold_kb: int, arrow_system_pool: bool = True) -> None:
    """Keep freed memory from staying in the process (``CIM_INGEST_MALLOC_ARENAS``,
    ``CIM_INGEST_MMAP_THRESHOLD_KB``; 0 leaves glibc's choice; ``CIM_INGEST_ARROW_SYSTEM_POOL``).

    A run allocates on several threads (reader, loader, COPY formatter, zip extraction); glibc
    gives threads arenas of their own, and memory one thread frees stays in its arena where the
    others cannot reuse it. Large arrays freed are kept on the heap once glibc has raised its
    mmap threshold (it does after the first such free). Fewer arenas and a fixed threshold keep
    the resident size near what is live. Arrow's own pool (mimalloc) keeps what it frees for
    reuse, hash tables of Arrow's lookups and text columns included; with
    ``arrow_system_pool`` Arrow allocates from the C library's malloc instead, under the same bounds.
    """
    if arrow_system_pool:
        pa.set_memory_pool(pa.system_memory_pool())
    libc = _libc()
    if libc is None:
        return
    if arenas:
        libc.mallopt(_M_ARENA_MAX, arenas)
    if mmap_threshold_kb:
        libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold_kb * 1024)


def release_free_memory() -> None:
    """Hand free memory back to the system: the free pages of every malloc arena
    (``malloc_trim``) and what Arrow's allocator keeps for reuse (text columns, COPY chunks)."""
    pa.default_memory_pool().release_unused()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
