"""The loading stage: a validated delivery replaces, atomically and versioned, the previous one of its scope.

One path, in one transaction (:mod:`ingest.load.transaction`)::

    loading = open_load(conn, delivery, principal=…)      # lock, duplicate check, delivery row
    loading.write(batch) …                                 # COPY each batch as it comes (pump() between)
    pending = loading.finish(delivery)                     # pipe segments, delivery row, retired rows
    result = commit(pending, report)                       # only a clean report; else abort(pending)

- :mod:`ingest.load.transaction` — that path, and the duplicate check;
- :mod:`ingest.load.rows` — the COPY buffers (column-wise, Arrow CSV, hex EWKB) and point ids;
- :mod:`ingest.load.scope` — layer scopes, retiring and re-pointing the current rows;
- :mod:`ingest.load.archive` — the uploaded originals kept under their sha256;
- :mod:`ingest.load.history` — rejected deliveries recorded, :func:`restore`, :func:`list_deliveries`.
"""

from ingest.load.history import list_deliveries, record_rejected, restore
from ingest.load.transaction import (
    Loading,
    LoadResult,
    OnCommit,
    Pending,
    abort,
    commit,
    find_duplicate,
    open_load,
)

__all__ = ["LoadResult", "Loading", "OnCommit", "Pending", "abort", "commit", "find_duplicate", "list_deliveries",
           "open_load", "record_rejected", "restore"]
