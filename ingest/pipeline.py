"""One ingest run, shared by ``cim ingest`` and the upload API: read → validate → report → load.

Exit codes (docs/contributing.md): 0 loaded, a clean dry run or the same file again; 1 rejected
(validation errors, or rows the database refuses); 2 unusable input (unreadable file, unknown
CRS, no database).
"""

from __future__ import annotations

import importlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg2.extensions

from cim import auth, db
from cim.errors import CimError, ConfigError, IngestRejected, InvalidInput, UnreadableInput
from cim.settings import Settings
from ingest import load as loader
from ingest.model import Delivery, LayerBatch, Note, Report, Severity

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)`` with phase ``read``, ``validate``, ``copy`` or ``swap``."""

REPORT_SUFFIXES = (".json", ".html", ".xlsx")


@dataclass
class Outcome:
    """Result of one run."""

    state: str                                   # loaded | duplicate | dry_run | rejected
    report: Report
    load: loader.LoadResult | None = None
    delivery_id: int | None = None

    @property
    def exit_code(self) -> int:
        """0 for loaded / duplicate / dry run, 1 for rejected."""
        return 1 if self.state == "rejected" else 0

    def summary(self) -> dict:
        """Counts of findings by severity and rows by target."""
        sev = {s.value: 0 for s in Severity}
        for f in self.report.findings:
            sev[f.severity.value] += 1
        return {"state": self.state, "delivery_id": self.delivery_id, "file": self.report.delivery.file_name,
                "sha256": self.report.delivery.sha256, "counts": self.report.delivery.counts(), "findings": sev,
                "message_zh": self.load.message_zh if self.load else None,
                "message_en": self.load.message_en if self.load else None}


def archive_dir(settings: Settings) -> Path:
    """``CIM_INGEST_ARCHIVE_DIR`` or ``$CIM_HOME/archive``."""
    return settings.archive_dir


def _function(module: str, name: str) -> Callable:
    """A function of a sibling ingest module, or a bilingual error when it is not installed."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ModuleNotFoundError, AttributeError) as exc:
        raise ConfigError(f"入库组件 {module}.{name} 未安装", f"ingest component {module}.{name} is not installed") from exc


def read(paths: Sequence[Path], *, profile: str | None, county: str | None,
         conn: psycopg2.extensions.connection | None, settings: Settings | None = None,
         on_start: Callable[[Delivery], None] | None = None,
         on_batch: Callable[[LayerBatch], None] | None = None) -> Delivery:
    """Read one delivery from one file (zip, GeoPackage, …) or from several loose files
    (``on_start`` / ``on_batch``: see :func:`ingest.read.read_deliveries`)."""
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        names = ", ".join(str(p) for p in missing)
        raise UnreadableInput(f"文件不存在：{names}", f"no such file: {names}")
    return _function("ingest.read", "read_deliveries")(_main_files(paths), profile=profile, county=county,
                                                        conn=conn, settings=settings.ingest if settings else None,
                                                        on_start=on_start, on_batch=on_batch)


def _main_files(paths: Sequence[Path]) -> list[Path]:
    """Loose files without the companions of an uploaded ``.shp`` (the reader finds those itself)."""
    paths = [Path(p) for p in paths]
    shp = {p.with_suffix("").as_posix().casefold() for p in paths if p.suffix.lower() == ".shp"}
    return [p for p in paths if p.suffix.lower() == ".shp" or p.with_suffix("").as_posix().casefold() not in shp]


def write_report(report: Report, path: Path) -> Path:
    """Write the report as JSON, HTML or XLSX, chosen by the file suffix."""
    suffix = path.suffix.lower()
    if suffix not in REPORT_SUFFIXES:
        raise InvalidInput(f"报告格式须为 {'/'.join(REPORT_SUFFIXES)}：{path.name}",
                           f"report must be one of {'/'.join(REPORT_SUFFIXES)}: {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    _function("ingest.report", "write_" + suffix[1:])(report, path)
    return path


def run(conn: psycopg2.extensions.connection, paths: Sequence[Path], *, settings: Settings,
        principal: auth.Principal, profile: str | None = None, county: str | None = None, dry_run: bool = False,
        reports: Sequence[Path] = (), progress: Progress | None = None, client_addr: str | None = None,
        delivery: Delivery | None = None, on_commit: loader.OnCommit | None = None) -> Outcome:
    """Read (unless ``delivery`` is given), validate, write the reports, and load unless
    rejected or a dry run. Raises :class:`CimError` subclasses for unusable input.
    ``on_commit(cur, result)`` runs inside the load transaction just before it commits."""
    if county:
        auth.authorize(principal, auth.Action.write, county=county)
    _batch_session(conn)
    if delivery is None and county and not dry_run:
        delivery, report, result = _read_load_validate(conn, paths, settings=settings, principal=principal,
                                                       profile=profile, county=county, progress=progress,
                                                       client_addr=client_addr, on_commit=on_commit)
        return _outcome(conn, report, result, reports=reports, principal=principal, client_addr=client_addr)
    if delivery is None:
        if progress:
            progress("read", 0, 1)
        delivery = read(paths, profile=profile, county=county, conn=conn, settings=settings)
    if county:
        delivery.county_code = county
    if not delivery.county_code:
        raise InvalidInput("未指定县级行政区代码（--county），且无法从成果中识别",
                           "no county code given (--county) and none found in the delivery")
    auth.authorize(principal, auth.Action.write, county=delivery.county_code)
    if progress:
        progress("read", 1, 1)
    if dry_run:
        report = _validated(_function("ingest.validate", "validate"), delivery, conn, progress)
        with conn.cursor() as cur:
            dup = loader.find_duplicate(cur, delivery.sha256, delivery.county_code)
        conn.rollback()  # validation only reads
        if dup:
            _note_duplicate(delivery, dup["id"], dup["state"])
        _write_reports(report, reports)
        return Outcome("rejected" if report.has_errors else "dry_run", report)
    _, report, result = _read_load_validate(conn, paths, settings=settings, principal=principal, profile=profile,
                                            county=delivery.county_code, progress=progress, client_addr=client_addr,
                                            on_commit=on_commit, delivery=delivery)
    return _outcome(conn, report, result, reports=reports, principal=principal, client_addr=client_addr)


def _outcome(conn, report: Report, result: loader.LoadResult | None, *, reports: Sequence[Path],
             principal: auth.Principal, client_addr: str | None) -> Outcome:
    """Write the reports; keep a rejected delivery in the history."""
    if result is not None and result.state == "duplicate":
        _note_duplicate(report.delivery, result.delivery_id, None)
    _write_reports(report, reports)
    if result is None:
        did = loader.record_rejected(conn, report, principal=principal, client_addr=client_addr)
        return Outcome("rejected", report, delivery_id=did)
    return Outcome("duplicate" if result.state == "duplicate" else "loaded", report, result, result.delivery_id)


def _batch_session(conn) -> None:
    """An ingest is a batch job: no statement timeout (the API's interactive limit does not apply)."""
    with conn.cursor() as cur:
        cur.execute("SET statement_timeout = 0")
    conn.commit()


def _note_duplicate(delivery: Delivery, delivery_id: int, state: str | None) -> None:
    """Say in the report that this file (same sha256, same county) is already loaded."""
    extra_zh, extra_en = (f"（{state}）", f" ({state})") if state else ("", "")
    delivery.notes.append(Note(
        delivery.file_name, "duplicate",
        f"同一文件（sha256 {delivery.sha256[:12]}…）已作为成果 {delivery_id}{extra_zh} 入库：本次不重复入库",
        f"the same file (sha256 {delivery.sha256[:12]}…) is already loaded as delivery {delivery_id}{extra_en}: "
        "nothing is loaded again"))


def _validated(validate: Callable, delivery: Delivery, conn, progress: Progress | None) -> Report:
    if progress:
        progress("validate", 0, 1)
    report = validate(delivery, conn=conn)
    if progress:
        progress("validate", 1, 1)
    return report


def _write_reports(report: Report, paths: Sequence[Path]) -> None:
    for path in paths:
        write_report(report, Path(path))


_END = object()


class _Feed:
    """Hands read batches to a loader thread that COPYs them on the load connection.

    The thread opens the load (:func:`ingest.load.open_load`) as soon as the reader has hashed
    the files, writes each batch as it arrives and, after :meth:`close`, finishes the load
    (pipe segments, delivery row, retired rows). What it raised is kept for :meth:`result`;
    by then it has rolled its transaction back.
    """

    def __init__(self, conn: psycopg2.extensions.connection, **load_args) -> None:
        self.conn, self.load_args = conn, load_args
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.cancelled = threading.Event()
        self.thread: threading.Thread | None = None
        self.delivery: Delivery | None = None
        self.outcome: loader.Pending | loader.LoadResult | None = None
        self.error: BaseException | None = None

    def start(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self.thread = threading.Thread(target=self._run, name="cim-load", daemon=True)
        self.thread.start()

    def put(self, batch: LayerBatch) -> None:
        self.queue.put(batch)

    def close(self) -> None:
        self.queue.put(_END)

    def cancel(self) -> None:
        """Stop writing and roll back (the reader or the validation failed)."""
        self.cancelled.set()
        self.queue.put(_END)
        if self.thread is not None:
            self.thread.join()
        if isinstance(self.outcome, loader.Pending):
            loader.abort(self.outcome)

    def _run(self) -> None:
        try:
            opened = loader.open_load(self.conn, self.delivery, **self.load_args)
            if isinstance(opened, loader.LoadResult):   # the same file again: nothing to write
                self.outcome = opened
                return
            while not self.cancelled.is_set():
                # COPY queued chunks while no batch is waiting; queue each batch on arrival
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
            self.outcome = opened.finish(self.delivery)
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread by result()
            self.error = exc

    def result(self) -> loader.Pending | loader.LoadResult | None:
        """Wait for the loader; re-raise what it raised."""
        if self.thread is None:
            return None
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.outcome


def _read_load_validate(conn, paths: Sequence[Path], *, settings: Settings, principal: auth.Principal,
                        profile: str | None, county: str, progress: Progress | None, client_addr: str | None,
                        on_commit: loader.OnCommit | None,
                        delivery: Delivery | None = None) -> tuple[Delivery, Report, loader.LoadResult | None]:
    """Read, write and validate a delivery at the same time; commit only a clean report.

    A loader thread COPYs each layer on ``conn`` as soon as it is read, while the reader goes
    on with the next (the database ingests on one core while Python reads on the other). Once
    the read is complete, validation runs on a second connection while the loader writes the
    pipe segments and completes the delivery row. Validation sees committed data only (never
    this load's rows) and does not change the delivery. A ``delivery`` read beforehand is
    handed to the loader whole. Returns the delivery, the report and the load result, or
    ``None`` as result when the delivery is rejected (rolled back).
    """
    validate = _function("ingest.validate", "validate")
    vconn = db.connect(settings.db, application_name="cim-ingest-validate")
    feed = _Feed(conn, principal=principal, archive_dir=archive_dir(settings), county=county,
                 client_addr=client_addr, progress=progress, originals=[Path(p) for p in paths] or None)
    try:
        _batch_session(vconn)
        try:
            if delivery is None:
                if progress:
                    progress("read", 0, 1)
                delivery = read(paths, profile=profile, county=county, conn=vconn, settings=settings,
                                on_start=feed.start, on_batch=feed.put)
                delivery.county_code = county
                if progress:
                    progress("read", 1, 1)
            else:
                feed.start(delivery)
                for batch in delivery.batches:
                    feed.put(batch)
            feed.close()
            report = _validated(validate, delivery, vconn, progress)
        except BaseException:
            feed.cancel()
            raise
        refused: InvalidInput | None = None
        try:
            pending = feed.result()
        except InvalidInput as exc:  # rows the database refuses; the report may say why
            pending, refused = None, exc
    finally:
        vconn.close()
    if isinstance(pending, loader.LoadResult):  # the same file again: nothing was loaded
        return delivery, report, pending
    if report.has_errors:
        if isinstance(pending, loader.Pending):
            loader.abort(pending)
        return delivery, report, None
    if refused is not None:
        raise IngestRejected(refused.zh, refused.en, **refused.detail) from refused
    return delivery, report, loader.commit(pending, report, progress, on_commit)


def exit_code_for(exc: CimError) -> int:
    """CLI exit code of a domain error raised during a run: 1 rejected, 2 unusable input."""
    return 1 if isinstance(exc, IngestRejected) else 2
