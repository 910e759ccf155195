"""The atomic, versioned loader: a validated delivery replaces the previous one of its scope.

Layer scope
    A delivery replaces, for its county, every *scope* it contains. The scope of a pipeline
    batch is ``(county, target table, network)`` (``pipe_point:PS``, ``pipe_segment:RQ``): a
    gas delivery never retires the water network. Every other target is scoped by
    ``(county, target table)`` (``building``, ``green_space`` …). The scopes of a delivery are
    kept in ``cim.delivery.layers``.

One transaction
    Everything happens in one transaction on one connection, so a failure at any point (rows
    the database refuses, validation errors, a killed process, a lost connection) leaves the
    database exactly as it was:

    1. a per-county advisory lock serialises loads and restores of the same county;
    2. the same file (sha256) already loaded for the county is a no-op (audited, committed);
    3. the delivery row is inserted (state ``loading``) — :func:`open_load` needs only the
       file facts and the county, so it runs while the delivery is still being read;
    4. the delivery's rows are streamed with ``COPY … FROM STDIN`` straight into the feature
       tables as current rows (:class:`Loading` and :class:`ingest.rows.Copier`), batch by
       batch as the reader hands them over. The staging area is the uncommitted transaction
       itself: no other session sees these rows before the commit. A separate staging table
       would write every row twice (COPY into it, then INSERT … SELECT with all index
       maintenance after validation). Checks: geometries are fitted and refused client-side
       with their source rows named; the database enforces the column types (geometry type
       and SRID 4490 typmods), NOT NULL, CHECK and the references (migration 0050);
    5. pipe segments come last and carry ``start_point_id`` / ``end_point_id`` resolved on
       (network, survey point number) against this delivery's points (ids drawn from the
       sequence before their COPY), else against the county's current points of that network;
    6. :meth:`Loading.finish` completes the delivery row (profiles, scopes, CRSs, encodings,
       archive) and gives the current rows of each scope ``is_current = false``;
    7. :func:`commit` — only once validation passed — makes the delivery ``current`` with its
       counts and ``finished_at``, marks deliveries left without current rows ``superseded``,
       audits, and commits. Loading and committing are separate so validation can run on
       another connection while the rows are written (``ingest.pipeline``).

    The statement triggers of migration 0003 bump ``cim.data_version`` of every table the load
    touched, inside the same transaction.

History and restore
    Rows of earlier deliveries stay with ``is_current = false``; :func:`restore` makes one
    delivery current again for its scopes in one transaction (audited, versions bumped).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg2.extensions

from cim import auth
from cim.db import fetch_dicts, quote_ident
from cim.errors import Conflict, IngestRejected, InvalidInput, NotFound
from cim.schema import FEATURE_TABLES, TABLES
from ingest import rows
from ingest.model import Delivery, LayerBatch, Report

log = logging.getLogger(__name__)

NETWORK_SCOPED = frozenset(t.name for t in TABLES.values() if t.network_scoped)
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


# --- archive -------------------------------------------------------------------------------

def archive_original(path: Path, sha256: str, archive_dir: Path) -> Path:
    """Keep the original upload under ``<archive_dir>/<sha256>/<file name>`` (idempotent).

    The copy is written beside its final name and renamed, so a crash never leaves a partial
    archive under the final name.
    """
    dest_dir = archive_dir / sha256
    dest = dest_dir / path.name
    if dest.exists():
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=dest_dir)) / path.name
    if path.is_dir():
        shutil.copytree(path, tmp)
    else:
        shutil.copyfile(path, tmp)
    os.replace(tmp, dest)
    shutil.rmtree(tmp.parent, ignore_errors=True)
    return dest


# --- scopes --------------------------------------------------------------------------------

def _networks(batch: LayerBatch) -> list[str]:
    if "network" in batch.frame.columns:
        vals = batch.frame["network"].dropna().unique().tolist()
        if vals:
            return sorted(str(v) for v in vals)
    if batch.network:
        return [batch.network]
    raise InvalidInput(f"管线图层 {batch.source_layer} 未给出管线类别（network）",
                       f"pipeline layer {batch.source_layer} has no network code")


def scopes(delivery: Delivery) -> list[str]:
    """Every scope the delivery replaces, sorted (e.g. ``building``, ``pipe_point:JS``)."""
    out: set[str] = set()
    for b in delivery.batches:
        if b.target in NETWORK_SCOPED:
            out.update(f"{b.target}:{n}" for n in _networks(b))
        else:
            out.add(b.target)
    return sorted(out)


def _split_scope(scope: str) -> tuple[str, str | None]:
    target, _, network = scope.partition(":")
    if target not in TABLES:
        raise InvalidInput(f"未知的图层范围 {scope}", f"unknown layer scope {scope}")
    return target, network or None


# --- the load --------------------------------------------------------------------------------

def _lock_county(cur: psycopg2.extensions.cursor, county: str) -> None:
    cur.execute("SELECT pg_advisory_xact_lock(hashtext('cim.ingest'), hashtext(%s))", (county,))


def find_duplicate(cur: psycopg2.extensions.cursor, sha256: str, county: str) -> dict | None:
    """The loaded delivery (current or superseded) of this county with the same file hash."""
    rows = fetch_dicts(cur, "SELECT id, state, file_name, submitted_at FROM cim.delivery "
                            "WHERE sha256 = %s AND county_code = %s AND state IN ('current', 'superseded') "
                            "ORDER BY id DESC LIMIT 1", (sha256, county))
    return rows[0] if rows else None


@dataclass
class Pending:
    """A load whose rows are written but not committed (see :func:`begin` / :func:`commit`)."""

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


def begin(conn: psycopg2.extensions.connection, delivery: Delivery, *, principal: auth.Principal,
          archive_dir: Path | None = None, county: str | None = None, client_addr: str | None = None,
          progress: Progress | None = None, originals: list[Path] | None = None) -> Pending | LoadResult:
    """Archive the originals and write the delivery's rows in a transaction left open.

    Returns a :class:`LoadResult` with state ``duplicate`` (committed, nothing loaded) when the
    same file was already loaded for the county, else a :class:`Pending` to :func:`commit` or
    :func:`abort`. Validation may run meanwhile on another connection: until the commit, no
    other session sees any of these rows. :func:`open_load` does the same batch by batch, for
    a reader that hands batches over while it is still reading.
    """
    if not delivery.batches:
        raise InvalidInput("成果中没有可入库的图层", "the delivery contains no loadable layer")
    scopes(delivery)  # a pipeline batch without a network is refused before anything is written
    loading = open_load(conn, delivery, principal=principal, archive_dir=archive_dir, county=county,
                        client_addr=client_addr, progress=progress, originals=originals)
    if isinstance(loading, LoadResult):
        return loading
    for batch in delivery.batches:      # segments wait inside Loading until every point is in
        loading.write(batch)
    return loading.finish(delivery)


def open_load(conn: psycopg2.extensions.connection, delivery: Delivery, *, principal: auth.Principal,
              archive_dir: Path | None = None, county: str | None = None, client_addr: str | None = None,
              progress: Progress | None = None, originals: list[Path] | None = None) -> Loading | LoadResult:
    """Start a load: county lock, duplicate check, the delivery row (state ``loading``).

    Needs only the delivery's file facts (name, sha256, size) and county: the batches may
    still be being read. Returns a :class:`LoadResult` with state ``duplicate`` (committed,
    nothing loaded) for a file already loaded for the county, else a :class:`Loading` to
    :meth:`~Loading.write` batches into and :meth:`~Loading.finish`.
    """
    county = county or delivery.county_code
    if not county:
        raise InvalidInput("未指定县级行政区代码（--county）", "no county code given (--county)")
    auth.authorize(principal, auth.Action.write, county=county)
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL statement_timeout = 0")
            # GIN indexes (trigram search) take new entries into their pending list; a large
            # limit keeps the merge of that list out of the load (autovacuum does it afterwards).
            cur.execute("SET LOCAL gin_pending_list_limit = '512MB'")
            _lock_county(cur, county)
            dup = find_duplicate(cur, delivery.sha256, county)
            if dup is not None:
                auth.audit(cur, principal, "ingest.duplicate", target=f"delivery:{dup['id']}", county=county,
                           client_addr=client_addr, detail={"sha256": delivery.sha256, "file": delivery.file_name})
                conn.commit()
                archived = _archive(delivery, archive_dir, originals)
                return LoadResult(dup["id"], "duplicate", scopes=scopes(delivery) if delivery.batches else [],
                                  archive_path=str(archived) if archived else None,
                                  message_zh=f"同一文件（sha256 相同）已作为成果 {dup['id']} 入库（{dup['state']}），未重复入库",
                                  message_en=f"the same file (same sha256) was already loaded as delivery {dup['id']} "
                                             f"({dup['state']}); nothing loaded")
            delivery_id = _insert_delivery(cur, delivery, county, principal)
    except BaseException:
        conn.rollback()
        raise
    return Loading(conn, county, principal, client_addr, delivery_id, progress, archive_dir, originals)


def _archive(delivery: Delivery, archive_dir: Path | None, originals: list[Path] | None) -> Path | None:
    archived = None
    if archive_dir:
        for original in originals or [delivery.path]:
            archived = archived or archive_original(original, delivery.sha256, archive_dir)
    return archived


class Loading:
    """A load whose delivery row is written and whose batches are COPYed as they come.

    :meth:`write` queues a batch with the load's :class:`ingest.rows.Copier`; :meth:`pump`
    COPYs one chunk, so a caller can queue the next batch as soon as it arrives while earlier
    ones are still being written. Pipe segments wait for :meth:`finish`, when every pipe point
    of the delivery is queued and their ends can be resolved. The transaction stays open
    throughout; any failure rolls it back.
    """

    def __init__(self, conn: psycopg2.extensions.connection, county: str, principal: auth.Principal,
                 client_addr: str | None, delivery_id: int, progress: Progress | None,
                 archive_dir: Path | None, originals: list[Path] | None) -> None:
        self.conn, self.county, self.principal, self.client_addr = conn, county, principal, client_addr
        self.delivery_id, self.progress = delivery_id, progress
        self.archive_dir, self.originals = archive_dir, originals
        self.counts: dict[str, int] = {}
        self.segments: list[LayerBatch] = []
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
        """Queue one batch (pipe segments are kept for :meth:`finish`)."""
        self.total += len(batch)
        self.counts[batch.target] = self.counts.get(batch.target, 0) + len(batch)
        if self.progress:
            self.progress("copy", self.done, self.total)
        if batch.target == "pipe_segment":
            self.segments.append(batch)
            return
        self._guarded(lambda: self.copier.add(batch.target, batch))

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
            self.copier.drain()
            self.copier.close()
            archived = _archive(delivery, self.archive_dir, self.originals)
            _describe_delivery(self.cur, delivery, self.delivery_id, scope_list, archived)
            retired: set[int] = set()
            replaced_points: list[str] = []
            for scope in scope_list:
                target, network = _split_scope(scope)
                gone = _retire(self.cur, target, self.county, network, self.delivery_id)
                retired.update(gone)
                if target == "pipe_point" and gone:
                    replaced_points.append(network)
            if replaced_points:   # segments of other deliveries now meet this delivery's points
                _repoint(self.cur, self.county, replaced_points, exclude=self.delivery_id)
            result.update(archived=archived, retired=retired)
        self._guarded(complete)
        counts = {t: self.counts[t] for t in FEATURE_TABLES if t in self.counts}
        return Pending(self.conn, delivery, self.county, self.principal, self.client_addr, self.delivery_id,
                       scope_list, counts, result["retired"], result["archived"])

    def abort(self) -> None:
        """Roll the load back: nothing of it remains."""
        self.copier.close()
        self.conn.rollback()


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
                        "message = NULL WHERE id = %s", (_json(p.counts), p.delivery_id))
            superseded = _settle(cur, p.retired_from - {p.delivery_id})
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


def load(conn: psycopg2.extensions.connection, report: Report, *, principal: auth.Principal,
         archive_dir: Path | None = None, county: str | None = None, client_addr: str | None = None,
         progress: Progress | None = None, originals: list[Path] | None = None) -> LoadResult:
    """Load a validated delivery atomically: :func:`begin` then :func:`commit`.

    ``originals`` are the uploaded files (default: ``delivery.path``); each is archived under
    ``<archive_dir>/<sha256 of the delivery>/``. Raises :class:`IngestRejected` when the report
    has errors and :class:`InvalidInput` when the rows do not fit the tables; in both cases
    nothing is written.
    """
    county = county or report.delivery.county_code
    if county:
        auth.authorize(principal, auth.Action.write, county=county)
    if report.has_errors:
        raise IngestRejected("质检发现错误，成果未入库", "validation found errors; the delivery was not loaded",
                             errors=sum(f.severity.value == "error" for f in report.findings))
    pending = begin(conn, report.delivery, principal=principal, archive_dir=archive_dir, county=county,
                    client_addr=client_addr, progress=progress, originals=originals)
    if isinstance(pending, LoadResult):
        return pending
    return commit(pending, report, progress)


def _constraint_error(exc: psycopg2.Error) -> InvalidInput:
    """A bilingual error naming the column or constraint the rows violate (no server text)."""
    diag = exc.diag
    what = diag.constraint_name or diag.column_name or (diag.message_primary or "").split(":")[0]
    log.warning("load refused by the database: %s", exc)
    return InvalidInput(f"数据不符合数据库约束（{what}），成果未入库",
                        f"rows violate a database constraint ({what}); nothing was loaded",
                        table=diag.table_name, column=diag.column_name, constraint=diag.constraint_name)


def _json(obj: object) -> str:
    import json
    return json.dumps(obj, ensure_ascii=False, default=str)


def _joined(values: list[str | None]) -> str | None:
    vals = sorted({v for v in values if v})
    return ", ".join(vals) or None


def _insert_delivery(cur, delivery: Delivery, county: str, principal: auth.Principal) -> int:
    """The delivery row, state ``loading``; :func:`_describe_delivery` completes it once read."""
    cur.execute(
        "INSERT INTO cim.delivery (county_code, file_name, sha256, size_bytes, state, submitted_by) "
        "VALUES (%s, %s, %s, %s, 'loading', %s) RETURNING id",
        (county, delivery.file_name, delivery.sha256, delivery.size_bytes, principal.name))
    return cur.fetchone()[0]


def _describe_delivery(cur, delivery: Delivery, delivery_id: int, scope_list: list[str],
                       archived: Path | None) -> None:
    """Profiles, scopes, source CRSs, encodings and archive path of a read delivery."""
    cur.execute(
        "UPDATE cim.delivery SET archive_path = %s, profile = %s, layers = %s, source_crs = %s, encoding = %s "
        "WHERE id = %s",
        (str(archived) if archived else None, _joined([b.profile_id for b in delivery.batches]), scope_list,
         _joined([b.source_crs for b in delivery.batches]), _joined([b.encoding for b in delivery.batches]),
         delivery_id))


def _retire(cur, target: str, county: str, network: str | None, keep: int) -> list[int]:
    """Mark the current rows of one scope not current; return the deliveries they belonged to."""
    table = f"cim.{quote_ident(target)}"
    net_sql, params = ("AND network = %s", (county, keep, network)) if network else ("", (county, keep))
    cur.execute(f"WITH u AS (UPDATE {table} SET is_current = false WHERE county_code = %s AND is_current "
                f"AND delivery_id IS DISTINCT FROM %s {net_sql} RETURNING delivery_id) "
                f"SELECT DISTINCT delivery_id FROM u WHERE delivery_id IS NOT NULL", params)
    return [r[0] for r in cur.fetchall()]


def _repoint(cur, county: str, networks: list[str], *, exclude: int | None = None,
             include: int | None = None) -> int:
    """Make the county's current segments of ``networks`` refer to the current point of each of
    their point numbers (the first by id when a number repeats), where they refer to another.

    Needed when the points of a network change without its segments: a point-only delivery, or
    a restore. Segments whose point numbers have no current point keep their reference (the
    point of their own survey). Only segments of the current deliveries holding those scopes
    are read (index on ``delivery_id``; ``exclude`` a delivery whose segments are resolved
    already, ``include`` one being restored); the new ids are worked out in pandas and written
    by primary key, so no plan depends on the statistics of rows written in this transaction.
    Returns the number of segments changed.
    """
    scopes_ = [f"pipe_segment:{n}" for n in networks]
    cur.execute("SELECT id FROM cim.delivery WHERE county_code = %s AND (state = 'current' OR id = %s) "
                "AND id IS DISTINCT FROM %s AND layers && %s::text[]", (county, include, exclude, scopes_))
    holders = [r[0] for r in cur.fetchall()]
    if not holders:
        return 0
    cur.execute("SELECT id, network, start_exp_no, end_exp_no, start_point_id, end_point_id FROM cim.pipe_segment "
                "WHERE delivery_id = ANY(%s) AND is_current AND network = ANY(%s)", (holders, networks))
    seg = pd.DataFrame(cur.fetchall(), columns=["id", "network", "start_exp_no", "end_exp_no", "sp", "ep"])
    if seg.empty:
        return 0
    pts = rows.current_points(cur, county, networks)
    old, new = {}, {}
    for end in ("start", "end"):
        old[end] = seg[f"{end[0]}p"].fillna(-1).to_numpy(dtype=np.int64)      # -1: no reference
        found = rows.point_ids(pts, seg["network"].to_numpy(dtype=object), seg[f"{end}_exp_no"].to_numpy(dtype=object))
        new[end] = np.where(found >= 0, found, old[end])
    changed = np.flatnonzero((new["start"] != old["start"]) | (new["end"] != old["end"]))
    if not len(changed):
        return 0
    refs = [[int(v) if v >= 0 else None for v in new[end][changed]] for end in ("start", "end")]
    cur.execute("UPDATE cim.pipe_segment s SET start_point_id = v.sp, end_point_id = v.ep "
                "FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS v(id, sp, ep) WHERE s.id = v.id",
                ([int(i) for i in seg["id"].to_numpy()[changed]], *refs))
    return len(changed)


def _settle(cur, delivery_ids: set[int]) -> list[int]:
    """Deliveries among ``delivery_ids`` left without current rows become ``superseded``."""
    if not delivery_ids:
        return []
    alive = " OR ".join(f"EXISTS (SELECT 1 FROM cim.{quote_ident(t)} x WHERE x.delivery_id = d.id AND x.is_current)"
                        for t in FEATURE_TABLES)
    cur.execute(f"UPDATE cim.delivery d SET state = 'superseded' WHERE d.id = ANY(%s) AND d.state = 'current' "
                f"AND NOT ({alive}) RETURNING d.id", (sorted(delivery_ids),))
    return sorted(r[0] for r in cur.fetchall())


# --- rejected deliveries, restore, listing --------------------------------------------------------

def record_rejected(conn: psycopg2.extensions.connection, report: Report, *, principal: auth.Principal,
                    county: str | None = None, client_addr: str | None = None) -> int:
    """Keep a rejected delivery in the history (state ``rejected``, no feature rows); audited."""
    d = report.delivery
    county = county or d.county_code or "000000"
    errors = sum(f.severity.value == "error" for f in report.findings)
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO cim.delivery (county_code, file_name, sha256, size_bytes, profile, layers, source_crs, "
            "encoding, counts, state, submitted_by, finished_at, message) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, 'rejected', %s, now(), %s) RETURNING id",
            (county, d.file_name, d.sha256, d.size_bytes, _joined([b.profile_id for b in d.batches]),
             sorted({b.target for b in d.batches}), _joined([b.source_crs for b in d.batches]),
             _joined([b.encoding for b in d.batches]), _json(d.counts()), principal.name,
             f"{errors} errors / 个错误"))
        did = cur.fetchone()[0]
        auth.audit(cur, principal, "ingest.reject", target=f"delivery:{did}", county=county,
                   client_addr=client_addr, detail={"file": d.file_name, "sha256": d.sha256, "errors": errors})
    conn.commit()
    return did


def restore(conn: psycopg2.extensions.connection, delivery_id: int, *, principal: auth.Principal,
            client_addr: str | None = None) -> LoadResult:
    """Make an earlier delivery current again for its scopes, in one transaction (audited)."""
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL statement_timeout = 0")
            rows = fetch_dicts(cur, "SELECT id, county_code, state, layers, counts FROM cim.delivery WHERE id = %s",
                               (delivery_id,))
            if not rows:
                raise NotFound(f"没有成果 {delivery_id}", f"no delivery {delivery_id}")
            d = rows[0]
            auth.authorize(principal, auth.Action.write, county=d["county_code"])
            if d["state"] not in ("current", "superseded"):
                raise Conflict(f"成果 {delivery_id} 状态为 {d['state']}，无法恢复",
                               f"delivery {delivery_id} is {d['state']} and cannot be restored")
            _lock_county(cur, d["county_code"])
            touched: set[int] = set()
            for scope in d["layers"]:
                target, network = _split_scope(scope)
                touched.update(_retire(cur, target, d["county_code"], network, delivery_id))
                net_sql, params = ("AND network = %s", (delivery_id, network)) if network else ("", (delivery_id,))
                cur.execute(f"UPDATE cim.{quote_ident(target)} SET is_current = true "
                            f"WHERE delivery_id = %s AND NOT is_current {net_sql}", params)
            cur.execute("UPDATE cim.delivery SET state = 'current' WHERE id = %s", (delivery_id,))
            pipe_nets = sorted({n for t, n in map(_split_scope, d["layers"]) if n and t in NETWORK_SCOPED})
            if pipe_nets:
                _repoint(cur, d["county_code"], pipe_nets, include=delivery_id)
            superseded = _settle(cur, touched - {delivery_id})
            auth.audit(cur, principal, "ingest.restore", target=f"delivery:{delivery_id}",
                       county=d["county_code"], client_addr=client_addr,
                       detail={"scopes": d["layers"], "superseded": superseded})
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return LoadResult(delivery_id, "current", dict(d["counts"] or {}), list(d["layers"]), superseded, None,
                      f"已恢复成果 {delivery_id}", f"restored delivery {delivery_id}")


def list_deliveries(cur: psycopg2.extensions.cursor, county: str | None = None, limit: int = 100) -> list[dict]:
    """Deliveries, newest first (optionally of one county)."""
    return fetch_dicts(
        cur, "SELECT id, county_code, file_name, sha256, state, layers, counts, profile, source_crs, encoding, "
             "submitted_by, submitted_at, finished_at, message FROM cim.delivery "
             "WHERE %(county)s::text IS NULL OR county_code = %(county)s ORDER BY id DESC LIMIT %(limit)s",
        {"county": county, "limit": limit})
