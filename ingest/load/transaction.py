"""The one load path: :func:`open_load` → :meth:`Loading.write` → :meth:`Loading.finish` → :func:`commit`.

Everything happens in one transaction on one connection, so a failure at any point (rows the
database refuses, validation errors, a killed process, a lost connection) leaves the database
exactly as it was:

1. :func:`open_load`: a per-county advisory lock serialises loads and restores of the same
   county; the same file (sha256) already loaded for the county is a no-op (audited,
   committed); else the delivery row is inserted (state ``loading``). It needs only the file
   facts and the county, so it runs while the delivery is still being read;
2. :meth:`Loading.write`: the delivery's rows are streamed with ``COPY … FROM STDIN`` straight
   into the feature tables as current rows (:class:`ingest.load.rows.Copier`), batch by batch
   as the reader hands them over. The staging area is the uncommitted transaction itself: no
   other session sees these rows before the commit. A separate staging table would write every
   row twice (COPY into it, then INSERT … SELECT with all index maintenance after validation).
   Checks: geometries are fitted and refused client-side with their source rows named; the
   database enforces the column types (geometry type and SRID 4490 typmods), NOT NULL, CHECK
   and the references (migration 0050);
3. :meth:`Loading.finish`: pipe segments come last and carry ``start_point_id`` /
   ``end_point_id`` resolved on (network, survey point number) against this delivery's points
   (ids drawn from the sequence before their COPY), else against the county's current points
   of that network; the delivery row is completed (profiles, scopes, CRSs, encodings, archive)
   and the current rows of each scope (:mod:`ingest.load.scope`) get ``is_current = false``;
4. :func:`commit` — only once validation passed — makes the delivery ``current`` with its
   counts and ``finished_at``, marks deliveries left without current rows ``superseded``,
   audits, and commits; :func:`abort` rolls back. Loading and committing are separate so
   validation can run on another connection while the rows are written (:mod:`ingest.threads`).

The statement triggers of migration 0003 bump ``cim.data_version`` of every table the load
touched, inside the same transaction. The caller has authorised the principal to write the
county (:func:`ingest.pipeline.run` does, once per run).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2.extensions

from cim import auth, tiers
from cim.db import fetch_dicts
from cim.errors import IngestRejected, InvalidInput
from cim.schema import FEATURE_TABLES
from ingest.load import rows
from ingest.load.archive import archive
from ingest.load.scope import lock_county, repoint, retire, scopes, settle, split_scope
from ingest.model import Delivery, LayerBatch, Report

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: phase is ``copy`` (rows written) or ``swap`` (commit)."""


@dataclass
class LoadResult:
    """What a load or restore did."""

    delivery_id: int
    state: str                                    # current | duplicate
    counts: dict[str, int] = field(default_factory=dict)
    scopes: list[str] = field(default_factory=list)
    superseded: list[int] = field(default_factory=list)
    archive_path: str | None = None
    message_zh: str = ""
    message_en: str = ""

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return dict(self.__dict__)


def find_duplicate(cur: psycopg2.extensions.cursor, sha256: str, county: str) -> dict | None:
    """The loaded delivery (current or superseded) of this county with the same file hash."""
    found = fetch_dicts(cur, "SELECT id, state, file_name, submitted_at FROM cim.delivery "
                             "WHERE sha256 = %s AND county_code = %s AND state IN ('current', 'superseded') "
                             "ORDER BY id DESC LIMIT 1", (sha256, county))
    return found[0] if found else None


def open_load(conn: psycopg2.extensions.connection, delivery: Delivery, *, principal: auth.Principal,
              archive_dir: Path | None = None, county: str | None = None, client_addr: str | None = None,
              progress: Progress | None = None, originals: list[Path] | None = None) -> Loading | LoadResult:
    """Start a load: county lock, duplicate check, the delivery row (state ``loading``).

    Needs only the delivery's file facts (name, sha256, size) and county: the batches may
    still be being read. Returns a :class:`LoadResult` with state ``duplicate`` (committed,
    nothing loaded) for a file already loaded for the county, else a :class:`Loading` to
    :meth:`~Loading.write` batches into and :meth:`~Loading.finish`. The principal is recorded
    (``submitted_by``, audit); the caller has authorised it for the county.
    """
    county = county or delivery.county_code
    if not county:
        raise InvalidInput("未指定县级行政区代码（--county）", "no county code given (--county)")
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL statement_timeout = 0")
            # GIN indexes (trigram search) take new entries into their pending list; a large
            # limit keeps the merge of that list out of the load (autovacuum does it afterwards).
            cur.execute("SET LOCAL gin_pending_list_limit = '512MB'")
            lock_county(cur, county)
            tiers.check_writable(cur, county)   # a county replicated from a lower tier is read-only here
            dup = find_duplicate(cur, delivery.sha256, county)
            if dup is not None:
                auth.audit(cur, principal, "ingest.duplicate", target=f"delivery:{dup['id']}", county=county,
                           client_addr=client_addr, detail={"sha256": delivery.sha256, "file": delivery.file_name})
                conn.commit()
                archived = archive(delivery, archive_dir, originals)
                return LoadResult(dup["id"], "duplicate", scopes=scopes(delivery) if delivery.batches else [],
                                  archive_path=str(archived) if archived else None,
                                  message_zh=f"同一文件（sha256 相同）已作为成果 {dup['id']} 入库（{dup['state']}），未重复入库",
                                  message_en=f"the same file (same sha256) was already loaded as delivery {dup['id']} "
                                             f"({dup['state']}); nothing loaded")
            delivery_id = insert_delivery(cur, delivery, county, principal)
    except BaseException:
        conn.rollback()
        raise
    return Loading(conn, county, principal, client_addr, delivery_id, progress, archive_dir, originals)


class Loading:
    """A load whose delivery row is written and whose batches are COPYed as they come.

    :meth:`write` queues a batch with the load's :class:`ingest.load.rows.Copier`; :meth:`pump`
    COPYs one chunk, so a caller can queue the next batch as soon as it arrives while earlier
    ones are still being written; a batch is dropped once COPYed. Pipe segments are queued as
    soon as points of their networks are (points are read first), their ends resolved against
    the points queued so far; segments of a network without points yet wait for :meth:`finish`,
    and ends that only points queued later match are resolved there. The transaction stays open
    throughout; any failure rolls it back.
    """

    def __init__(self, conn: psycopg2.extensions.connection, county: str, principal: auth.Principal,
                 client_addr: str | None, delivery_id: int, progress: Progress | None,
                 archive_dir: Path | None, originals: list[Path] | None) -> None:
        self.conn, self.county, self.principal, self.client_addr = conn, county, principal, client_addr
        self.delivery_id, self.progress = delivery_id, progress
        self.archive_dir, self.originals = archive_dir, originals
        self.counts: dict[str, int] = {}
        self.segments: list[LayerBatch] = []      # pipe segments kept for finish()
        self.point_networks: set[str] = set()      # networks of the pipe points queued so far
        self.early_networks: set[str] = set()      # networks of the pipe segments queued before finish()
        self.late_points = False                   # points of those networks came after their segments
        self.done = self.total = 0
        self.cur = conn.cursor()
        self.copier = rows.Copier(self.cur, county=county, delivery_id=delivery_id, progress=self._step)

    def _step(self, n: int) -> None:
        self.done += n
        if self.progress:
            self.progress("copy", self.done, self.total)

    def _guarded(self, fn: Callable[[], object]) -> object:
        try:
            return fn()
        except (psycopg2.DataError, psycopg2.IntegrityError) as exc:
            self.abort()
            raise _constraint_error(exc) from exc
        except BaseException:
            self.abort()
            raise

    @property
    def busy(self) -> bool:
        """Queued chunks are waiting for :meth:`pump`."""
        return self.copier.busy

    def write(self, batch: LayerBatch) -> None:
        """Queue one batch. Pipe segments are queued at once when every network they belong to
        has points queued already (their ends resolve against those), else kept for :meth:`finish`."""
        self.total += len(batch)
        self.counts[batch.target] = self.counts.get(batch.target, 0) + len(batch)
        if self.progress:
            self.progress("copy", self.done, self.total)
        nets = rows.networks_of(batch)
        if batch.target == "pipe_segment":
            if nets and nets <= self.point_networks:
                self.early_networks |= nets
                self._guarded(lambda: self.copier.add(batch.target, batch))
            else:
                self.segments.append(batch)
            return
        if batch.target == "pipe_point":
            self.point_networks |= nets
            self.late_points |= bool(nets & self.early_networks)
        self._guarded(lambda: self.copier.add(batch.target, batch))

    def no_more_batches(self) -> None:
        """Every batch is written or queued: what only later batches would need is let go (the
        lookup of the points for segment ends, unless segments wait for :meth:`finish`)."""
        if not self.segments:
            self.copier.no_more_segments()

    @property
    def backlog(self) -> int:
        """COPY chunks queued and not yet written."""
        return self.copier.backlog

    def pump(self) -> bool:
        """COPY one queued chunk; False when nothing is queued."""
        return bool(self._guarded(self.copier.pump))

    def finish(self, delivery: Delivery) -> Pending:
        """Write the rest (pipe segments last), complete the delivery row, retire the rows the
        delivery replaces: the :class:`Pending` load, ready for :func:`commit` once validation passed."""
        if not delivery.batches:
            self.abort()
            raise InvalidInput("成果中没有可入库的图层", "the delivery contains no loadable layer")
        try:
            scope_list = scopes(delivery)
        except BaseException:
            self.abort()
            raise
        result: dict[str, object] = {}

        def complete() -> None:
            for batch in self.segments:
                self.copier.add("pipe_segment", batch)
            self.copier.no_more_segments()
            self.copier.drain()
            self.copier.close()
            if self.late_points:
                rows.resolve_late_ends(self.cur, self.delivery_id)
            archived = archive(delivery, self.archive_dir, self.originals)
            describe_delivery(self.cur, delivery, self.delivery_id, scope_list, archived)
            retired: set[int] = set()
            replaced_points: list[str] = []
            for scope in scope_list:
                target, network = split_scope(scope)
                gone = retire(self.cur, target, self.county, network, self.delivery_id)
                retired.update(gone)
                if target == "pipe_point" and gone:
                    replaced_points.append(network)
            if replaced_points:   # segments of other deliveries now meet this delivery's points
                repoint(self.cur, self.county, replaced_points, exclude=self.delivery_id)
            result.update(archived=archived, retired=retired)
        self._guarded(complete)
        counts = {t: self.counts[t] for t in FEATURE_TABLES if t in self.counts}
        return Pending(self.conn, delivery, self.county, self.principal, self.client_addr, self.delivery_id,
                       scope_list, counts, result["retired"], result["archived"])

    def abort(self) -> None:
        """Roll the load back: nothing of it remains."""
        self.copier.close()
        self.conn.rollback()


@dataclass
class Pending:
    """A load whose rows are written but not committed (:meth:`Loading.finish`), ready for :func:`commit` or :func:`abort`."""

    conn: psycopg2.extensions.connection
    delivery: Delivery
    county: str
    principal: auth.Principal
    client_addr: str | None
    delivery_id: int
    scopes: list[str]
    counts: dict[str, int]
    retired_from: set[int]
    archived: Path | None


def abort(pending: Pending) -> None:
    """Roll a pending load back: nothing of it remains."""
    pending.conn.rollback()


OnCommit = Callable[[psycopg2.extensions.cursor, "LoadResult"], None]
"""Called inside the load transaction just before COMMIT (e.g. to mark an upload job done)."""


def commit(pending: Pending, report: Report, progress: Progress | None = None,
           on_commit: OnCommit | None = None) -> LoadResult:
    """Make a pending load current if ``report`` has no errors (else roll back and raise
    :class:`IngestRejected`): delivery state and counts, superseded deliveries, audit,
    ``on_commit(cur, result)``, COMMIT."""
    conn, p = pending.conn, pending
    if report.has_errors:
        conn.rollback()
        raise IngestRejected("质检发现错误，成果未入库", "validation found errors; the delivery was not loaded",
                             errors=sum(f.severity.value == "error" for f in report.findings))
    try:
        if progress:
            progress("swap", 0, 1)
        with conn.cursor() as cur:
            cur.execute("UPDATE cim.delivery SET state = 'current', counts = %s::jsonb, finished_at = now(), "
                        "message = NULL WHERE id = %s", (json_text(p.counts), p.delivery_id))
            superseded = settle(cur, p.retired_from - {p.delivery_id})
            auth.audit(cur, p.principal, "ingest.load", target=f"delivery:{p.delivery_id}", county=p.county,
                       client_addr=p.client_addr,
                       detail={"file": p.delivery.file_name, "sha256": p.delivery.sha256, "counts": p.counts,
                               "scopes": p.scopes, "superseded": superseded})
            result = LoadResult(
                p.delivery_id, "current", p.counts, p.scopes, superseded, str(p.archived) if p.archived else None,
                f"已入库成果 {p.delivery_id}：" + "，".join(f"{k} {v} 条" for k, v in p.counts.items()),
                f"loaded delivery {p.delivery_id}: " + ", ".join(f"{v} {k}" for k, v in p.counts.items()))
            if on_commit:
                on_commit(cur, result)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    if progress:
        progress("swap", 1, 1)
    return result


def _constraint_error(exc: psycopg2.Error) -> InvalidInput:
    """A bilingual error naming the column or constraint the rows violate (no server text)."""
    diag = exc.diag
    what = diag.constraint_name or diag.column_name or (diag.message_primary or "").split(":")[0]
    log.warning("load refused by the database: %s", exc)
    return InvalidInput(f"数据不符合数据库约束（{what}），成果未入库",
                        f"rows violate a database constraint ({what}); nothing was loaded",
                        table=diag.table_name, column=diag.column_name, constraint=diag.constraint_name)


def json_text(obj: object) -> str:
    """JSON for a jsonb parameter (Chinese kept as is)."""
    return json.dumps(obj, ensure_ascii=False, default=str)


def joined(values: list[str | None]) -> str | None:
    """The distinct non-empty values, sorted and comma-separated (None when there are none)."""
    vals = sorted({v for v in values if v})
    return ", ".join(vals) or None


def insert_delivery(cur, delivery: Delivery, county: str, principal: auth.Principal) -> int:
    """The delivery row, state ``loading``; :func:`describe_delivery` completes it once read."""
    cur.execute(
        "INSERT INTO cim.delivery (county_code, file_name, sha256, size_bytes, state, submitted_by) "
        "VALUES (%s, %s, %s, %s, 'loading', %s) RETURNING id",
        (county, delivery.file_name, delivery.sha256, delivery.size_bytes, principal.name))
    return cur.fetchone()[0]


def describe_delivery(cur, delivery: Delivery, delivery_id: int, scope_list: list[str],
                      archived: Path | None) -> None:
    """Profiles, scopes, source CRSs, encodings and archive path of a read delivery."""
    cur.execute(
        "UPDATE cim.delivery SET archive_path = %s, profile = %s, layers = %s, source_crs = %s, encoding = %s "
        "WHERE id = %s",
        (str(archived) if archived else None, joined([b.profile_id for b in delivery.batches]), scope_list,
         joined([b.source_crs for b in delivery.batches]), joined([b.encoding for b in delivery.batches]),
         delivery_id))
