"""The thread hand-offs of a run, all in one place: write while reading, validate on a second connection.

:class:`LoadWhileReading` is what :func:`ingest.pipeline.run` loads through. Three things overlap:

- the calling thread reads and maps the delivery and hands each complete batch over
  (:meth:`~LoadWhileReading.write`);
- a loader thread owns the load connection: it opens the load (:func:`ingest.load.open_load`)
  as soon as the files are hashed (:meth:`~LoadWhileReading.start`) and COPYs each batch as it
  arrives, while the next layer is read (the database ingests on one core while Python reads on
  the other); after :meth:`~LoadWhileReading.reading_done` it finishes the load (pipe segments,
  delivery row, retired rows) and leaves it uncommitted;
- meanwhile validation runs on a second connection (:attr:`~LoadWhileReading.validation_conn`):
  it sees committed data only, never this load's rows, and does not change the delivery.

Leaving the ``with`` block on an exception stops the loader and rolls its transaction back.
The stages have workers of their own, each inside its module: a zip is extracted on a thread
(:class:`ingest.readers.archive.Extraction`) in reading order, and COPY chunks are formatted on
a thread (:class:`ingest.load.rows.Copier`) at most two chunks ahead of the COPY.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

import psycopg2.extensions

from cim import auth, db
from cim.errors import InvalidInput
from cim.settings import Settings
from ingest.load import Loading, LoadResult, Pending, abort, open_load
from ingest.model import Delivery, LayerBatch

_END = object()
WAITING_BATCHES = 1      # batches handed over but not yet taken by the loader; the reader waits beyond
QUEUED_CHUNKS = 2        # COPY chunks the loader queues ahead (ingest.load.rows.CHUNK_ROWS rows each)


class _LoadArgs(TypedDict):
    """The keyword arguments of :func:`ingest.load.open_load` a run passes on."""

    principal: auth.Principal
    county: str
    archive_dir: Path | None
    client_addr: str | None
    progress: Callable[[str, int, int], None] | None
    originals: list[Path] | None


class LoadWhileReading:
    """A load written on a loader thread while the delivery is read, validated on a second connection.

    ``conn`` is the load connection (the loader thread's from :meth:`start` on); the other
    arguments are those of :func:`ingest.load.open_load`.
    """

    def __init__(self, conn: psycopg2.extensions.connection, settings: Settings, *, principal: auth.Principal,
                 county: str, archive_dir: Path | None, client_addr: str | None = None,
                 progress: Callable[[str, int, int], None] | None = None, originals: list[Path] | None = None) -> None:
        self.conn, self.settings = conn, settings
        self.load_args: _LoadArgs = {"principal": principal, "county": county, "archive_dir": archive_dir,
                          "client_addr": client_addr, "progress": progress, "originals": originals}
        self.validation_conn: psycopg2.extensions.connection | None = None
        self.queue: queue.Queue = queue.Queue(maxsize=WAITING_BATCHES)
        self.cancelled = threading.Event()
        self.all_handed = threading.Event()      # every batch is queued (set by reading_done)
        self.let_go = threading.Event()          # the loader holds nothing only later batches need
        self.thread: threading.Thread | None = None
        self.delivery: Delivery | None = None
        self.outcome: Pending | LoadResult | None = None
        self.error: BaseException | None = None

    def __enter__(self) -> LoadWhileReading:
        self.validation_conn = db.connect(self.settings.db, application_name="cim-ingest-validate")
        try:
            with self.validation_conn.cursor() as cur:   # a batch job: no statement timeout
                cur.execute("SET statement_timeout = 0")
            self.validation_conn.commit()
        except BaseException:
            self.validation_conn.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.validation_conn is not None  # opened by __enter__
        try:
            if exc_type is not None:
                self.cancel()
        finally:
            self.validation_conn.close()

    # --- the reading thread's side ------------------------------------------------------------

    def start(self, delivery: Delivery) -> None:
        """Start the loader thread on a delivery whose files are hashed (its batches may follow)."""
        self.delivery = delivery
        self.thread = threading.Thread(target=self._load, name="cim-load", daemon=True)
        self.thread.start()

    def write(self, batch: LayerBatch) -> None:
        """Hand a complete batch to the loader thread (it is not changed afterwards); waits while
        the loader is behind, so no more than a few batches are held for it."""
        self._put(batch)

    def _put(self, item: object) -> None:
        """Queue ``item`` for the loader thread, waiting for room while it runs (a stopped loader
        takes nothing more: the item is dropped and :meth:`written` reports why it stopped)."""
        while True:
            try:
                self.queue.put(item, timeout=0.2)
                return
            except queue.Full:
                if self.thread is None or not self.thread.is_alive():
                    return

    def hand_over(self, delivery: Delivery) -> None:
        """Start the loader on a delivery read beforehand and hand it every batch."""
        self.start(delivery)
        for batch in delivery.batches:
            self.write(batch)

    def reading_done(self) -> None:
        """No more batches: the loader writes the rest and finishes the load."""
        self._put(_END)
        self.all_handed.set()

    def wait_let_go(self) -> None:
        """After :meth:`reading_done`: wait until the loader has let go of what only later
        batches would need (the points' lookup: a few tens of MB for a large network), at most
        the time it takes to COPY the chunk in hand, so the rules across batches do not build
        their tables beside it."""
        while self.thread is not None and self.thread.is_alive() and not self.let_go.wait(0.05):
            pass

    def written(self) -> tuple[Pending | LoadResult | None, InvalidInput | None]:
        """Wait for the loader: the finished, uncommitted load (or the :class:`LoadResult` of the
        same file loaded before), and the rows the database refused (then nothing is pending).
        Re-raises anything else the loader raised (its transaction is rolled back)."""
        if self.thread is None:
            return None, None
        self.thread.join()
        if isinstance(self.error, InvalidInput):
            return None, self.error
        if self.error is not None:
            raise self.error
        return self.outcome, None

    def cancel(self) -> None:
        """Stop writing and roll back (the reader or the validation failed)."""
        self.cancelled.set()
        self._put(_END)
        if self.thread is not None:
            self.thread.join()
        if isinstance(self.outcome, Pending):
            abort(self.outcome)

    # --- the loader thread ----------------------------------------------------------------------

    def _let_go(self, opened: Loading) -> None:
        """Once every batch is in: let go of what only later batches would need, once."""
        if not self.let_go.is_set():
            opened.no_more_batches()
            self.let_go.set()

    def _load(self) -> None:
        delivery = self.delivery
        assert delivery is not None  # set by start() before the thread starts
        try:
            opened = open_load(self.conn, delivery, **self.load_args)
            if isinstance(opened, LoadResult):   # the same file again: nothing to write
                self.outcome = opened
                return
            while not self.cancelled.is_set():
                if self.all_handed.is_set() and self.queue.qsize() <= 1:
                    self._let_go(opened)         # all that is left in the queue is the end
                # COPY queued chunks while no batch is waiting; queue each batch on arrival
                # unless enough chunks are queued already
                if opened.busy and opened.backlog >= QUEUED_CHUNKS:
                    opened.pump()
                    continue
                if opened.busy:
                    try:
                        batch = self.queue.get_nowait()
                    except queue.Empty:
                        opened.pump()
                        continue
                else:
                    batch = self.queue.get()
                if batch is _END:
                    break
                opened.write(batch)
            if self.cancelled.is_set():
                opened.abort()
                return
            self._let_go(opened)                 # the end may have come while the loader waited for a batch
            self.outcome = opened.finish(delivery)
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread by written()
            self.error = exc
        finally:
            self.let_go.set()
