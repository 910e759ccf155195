"""One ingest run, shared by ``cim ingest`` and the upload service: read → map → validate → load.

The stages, in the order a delivery goes through them:

- :mod:`ingest.readers` — delivered bytes → source layers (frames, declared CRS, encoding);
- :mod:`ingest.mapping` — each source layer → a :class:`~ingest.model.LayerBatch` of its target
  table (profile, columns and codes, CRS, geometry in EPSG:4490);
- :mod:`ingest.validate` — the delivery → a :class:`~ingest.model.Report` of findings;
- :mod:`ingest.load` — open → write → finish → commit, in one transaction.

:func:`read_deliveries` runs the first two, handing each batch on as soon as it is mapped;
:func:`run` runs all four. With a county given, writing overlaps reading and validation; the
threads and connections that takes are in :mod:`ingest.threads`.

Exit codes (docs/contributing.md): 0 loaded, a clean dry run or the same file again; 1 rejected
(validation errors, or rows the database refuses); 2 unusable input (unreadable file, unknown
CRS, no database).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import pickle
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg2.extensions

from cim import auth
from cim.errors import CimError, IngestRejected, InvalidInput, UnreadableInput
from cim.settings import IngestSettings, Settings
from ingest.load import LoadResult, OnCommit, Pending, abort, commit, find_duplicate, record_rejected
from ingest.mapping import county as county_mapping
from ingest.mapping.layer import Mapper
from ingest.mapping.lines import needs_point_lines
from ingest.memory import bound_allocator, release_free_memory
from ingest.model import Delivery, LayerBatch, Note, Report, Severity, UserMapping, merge_chunks
from ingest.readers.sources import digest, open_sources
from ingest.report import read_groups, write_csv, write_groups, write_html, write_json, write_xlsx
from ingest.threads import LoadWhileReading
from ingest.validate import Validation, validate

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)`` with phase ``read``, ``validate``, ``copy`` or ``swap``."""

REPORT_SUFFIXES = (".json", ".html", ".xlsx", ".csv", ".jsonl")   # .jsonl: summary and groups only


@dataclass
class Outcome:
    """Result of one run."""

    state: str                                   # loaded | duplicate | dry_run | rejected
    report: Report
    load: LoadResult | None = None
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


def run(conn: psycopg2.extensions.connection, paths: Sequence[Path], *, settings: Settings,
        principal: auth.Principal, profile: str | None = None, county: str | None = None, dry_run: bool = False,
        reports: Sequence[Path] = (), progress: Progress | None = None, client_addr: str | None = None,
        delivery: Delivery | None = None, on_commit: OnCommit | None = None,
        user: UserMapping | None = None) -> Outcome:
    """Read and map (unless ``delivery`` is given), validate, write the reports, and load unless
    rejected or a dry run. Raises :class:`CimError` subclasses for unusable input.
    ``on_commit(cur, result)`` runs inside the load transaction just before it commits.
    ``user``: field and value mappings given for this run; they are laid over the county's saved
    mapping (:mod:`ingest.mapping.county`), which applies whenever the county is known."""
    _batch_session(conn)
    bound_allocator(settings.ingest.malloc_arenas, settings.ingest.mmap_threshold_kb,
                    settings.ingest.arrow_system_pool)
    read = functools.partial(_read, user=user)
    if delivery is None and not county:          # the county comes from a delivered county boundary
        delivery = read(paths, profile=profile, county=None, conn=conn, settings=settings, progress=progress)
    county = county or (delivery.county_code if delivery else None)
    if not county:
        raise InvalidInput("未指定县级行政区代码（--county），且无法从成果中识别",
                           "no county code given (--county) and none found in the delivery")
    auth.authorize(principal, auth.Action.write, county=county)     # the one access check of a run
    if delivery is not None:
        delivery.county_code = county
    if dry_run:
        if delivery is None:                     # each batch is checked as soon as it is read
            checks = _Checks(conn, settings.ingest)
            delivery = read(paths, profile=profile, county=county, conn=conn, settings=settings, progress=progress,
                            on_start=checks.start, on_batch=checks.add, before_lines=checks.points_back)
            return _dry_run(conn, delivery, reports=reports, report=checks.finish(progress))
        return _dry_run(conn, delivery, reports=reports, report=_validated(delivery, conn, progress))
    with LoadWhileReading(conn, settings, principal=principal, county=county, archive_dir=archive_dir(settings),
                          client_addr=client_addr, progress=progress,
                          originals=[Path(p) for p in paths] or None) as work:
        if delivery is None:                     # each batch is written and checked while the next is read
            checks = _Checks(work.validation_conn, settings.ingest)

            def start(d: Delivery) -> None:
                work.start(d)
                checks.start(d)

            def batch_ready(b: LayerBatch) -> None:
                work.write(for_loader(b))        # what validation alone reads is not kept for the COPY
                checks.add(b)                    # (what a chunk frees is reused by the next one)

            delivery = read(paths, profile=profile, county=county, conn=work.validation_conn, settings=settings,
                            progress=progress, on_start=start, on_batch=batch_ready, before_lines=checks.points_back)
            work.reading_done()
            work.wait_let_go()
            report = checks.finish(progress)     # the rules across batches, while the rest is written
        else:
            work.hand_over(delivery)
            work.reading_done()
            report = _validated(delivery, work.validation_conn, progress)   # while the pipe segments are written
        written, refused = work.written()
    result = _commit(written, report, refused, progress, on_commit)
    return _outcome(conn, report, result, reports=reports, principal=principal, client_addr=client_addr)


def _read(paths: Sequence[Path], *, profile: str | None, county: str | None,
          conn: psycopg2.extensions.connection | None, settings: Settings, progress: Progress | None = None,
          on_start: Callable[[Delivery], None] | None = None,
          on_batch: Callable[[LayerBatch], None] | None = None, before_lines: Callable[[], None] | None = None,
          user: UserMapping | None = None) -> Delivery:
    """Read one delivery from one file (zip, GeoPackage, …) or from several loose files (the
    companions of an uploaded ``.shp`` are found by the reader); see :func:`read_deliveries`.
    The county's saved mapping, when there is one, lies under ``user``."""
    if progress:
        progress("read", 0, 1)
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        names = ", ".join(str(p) for p in missing)
        raise UnreadableInput(f"文件不存在：{names}", f"no such file: {names}")
    if county and conn is not None:
        with conn.cursor() as cur:
            saved = county_mapping.latest(cur, county)
        user = user.over(saved) if user else saved
    delivery = read_deliveries(_main_files(paths), profile=profile, county=county, conn=conn,
                               settings=settings.ingest, on_start=on_start, on_batch=on_batch,
                               before_lines=before_lines, user=user)
    if progress:
        progress("read", 1, 1)
    return delivery


def read_deliveries(paths: Sequence[Path | str], *, profile: str | None = None, county: str | None = None,
                    conn=None, settings: IngestSettings | None = None,
                    profile_dirs: Sequence[Path | str] = (), on_start: Callable[[Delivery], None] | None = None,
                    on_batch: Callable[[LayerBatch], None] | None = None,
                    before_lines: Callable[[], None] | None = None,
                    user: UserMapping | None = None) -> Delivery:
    """Read and map several files or folders as one delivery (e.g. a point workbook and a line workbook).

    ``on_start(delivery)`` is called once the files are hashed, before any layer is read;
    ``on_batch(batch)`` with every mapped batch, as soon as it is complete: a loader can write
    one layer while the next is read. A large shapefile is read in chunks of
    ``settings.chunk_rows`` rows, each handed over as a batch of its own; without ``on_batch``
    the chunks of a layer are joined into one batch. Pipe segments whose lines are built from the point
    tables come last, once every layer is read; ``before_lines()`` is called first, for the
    consumer of the batches to put the points it set aside back in ``delivery.batches``. A batch
    handed over is not changed afterwards.
    Raises :class:`cim.errors.UnreadableInput` or :class:`cim.errors.CrsError` (bilingual).
    """
    paths = [Path(p) for p in paths]
    settings = settings or IngestSettings()
    sha, size = digest(paths)
    delivery = Delivery(path=paths[0], file_name=", ".join(p.name for p in paths), sha256=sha, size_bytes=size,
                        county_code=county)
    if on_start:
        on_start(delivery)
    mapper = Mapper(profile=profile, county=county, conn=conn, settings=settings, profile_dirs=profile_dirs, user=user)
    held = _Waiting(delivery, on_disk=on_batch is not None)   # batches that need every layer first
    with open_sources(paths, settings, delivery.notes, mapper.reading_rank()) as layers:
        for layer in layers:                     # read …
            batch = mapper.map_layer(layer, delivery.notes)          # … and map
            if batch is None:
                continue
            later = mapper.map_rest(layer, batch)
            layer.frame, layer.geom = layer.frame.iloc[:0].copy(), None   # mapped: not held while the rest is read
            if on_batch is None:                 # the caller wants whole layers
                whole = merge_chunks([batch, *later])
                delivery.batches.append(whole)
                held.add(whole)
                continue
            chunks = _handed_over(batch, later)
            del batch
            for chunk in chunks:
                delivery.batches.append(chunk)
                if mapper.complete_alone(chunk):
                    on_batch(chunk)
                else:
                    held.add(chunk)
                del chunk                        # not held while the next chunk is read
    if before_lines is not None and held.lines:
        before_lines()
    completed = mapper.complete(delivery, iter(held))
    for batch in completed:
        if on_batch:
            on_batch(batch)
        del batch                                # a batch handed over is not held here
    return delivery


class _Waiting:
    """The batches that wait for every layer to be read (pipe segments whose lines come from the
    point tables), in the order they came, each taken out as it is iterated. ``on_disk``: each
    is pickled to a temporary file as it comes, an empty stand-in keeping its place in
    ``delivery.batches`` until it is read back, so a large line table does not stay in memory
    while the rest of the delivery is read."""

    def __init__(self, delivery: Delivery, *, on_disk: bool) -> None:
        self.delivery = delivery
        self.kept: list[LayerBatch] = []          # in memory, or the stand-ins of those on disk
        self.file = tempfile.TemporaryFile(prefix="cim-ingest-waiting-") if on_disk else None
        self.lines = False                        # a batch waits for lines from the point tables

    def add(self, batch: LayerBatch) -> None:
        """Set ``batch`` (already in ``delivery.batches``) aside."""
        self.lines = self.lines or needs_point_lines(batch)
        if self.file is None:
            self.kept.append(batch)
            return
        pickle.dump(batch, self.file, protocol=pickle.HIGHEST_PROTOCOL)
        stand_in = dataclasses.replace(batch, frame=batch.frame.iloc[:0].copy(), raw=None, source_geom=None)
        _replace(self.delivery.batches, batch, stand_in)
        self.kept.append(stand_in)

    def __iter__(self) -> Iterator[LayerBatch]:
        if self.file is not None:
            self.file.seek(0)
        try:
            while self.kept:
                batch = self.kept.pop(0)
                if self.file is not None:
                    stand_in, batch = batch, pickle.load(self.file)   # noqa: S301 - written by this process
                    _replace(self.delivery.batches, stand_in, batch)
                yield batch
                del batch
        finally:
            if self.file is not None:
                self.file.close()


def _replace(batches: list[LayerBatch], old: LayerBatch, new: LayerBatch) -> None:
    """``new`` in the place of ``old`` (the same object) in ``batches``."""
    batches[next(i for i, b in enumerate(batches) if b is old)] = new


def _handed_over(first: LayerBatch, later: Iterator[LayerBatch]) -> Iterator[LayerBatch]:
    """``first``, then the batches of ``later``; a batch yielded is not held here."""
    box = [first]
    del first
    yield box.pop()
    yield from later


def read_delivery(path: Path | str, *, profile: str | None = None, county: str | None = None, conn=None,
                  settings: IngestSettings | None = None, profile_dirs: Sequence[Path | str] = (),
                  user: UserMapping | None = None) -> Delivery:
    """Read and map one delivered file or folder: .zip, folder, .shp, .gpkg, .geojson/.json, .csv,
    .xlsx, .dbf (see :func:`read_deliveries`)."""
    return read_deliveries([path], profile=profile, county=county, conn=conn, settings=settings,
                           profile_dirs=profile_dirs, user=user)


def archive_dir(settings: Settings) -> Path:
    """``CIM_INGEST_ARCHIVE_DIR`` or ``$CIM_HOME/archive``."""
    return settings.archive_dir


def write_report(report: Report, path: Path) -> Path:
    """Write the report as JSON, HTML, XLSX, CSV or grouped JSON Lines, chosen by the file suffix."""
    suffix = path.suffix.lower()
    if suffix not in REPORT_SUFFIXES:
        raise InvalidInput(f"报告格式须为 {'/'.join(REPORT_SUFFIXES)}：{path.name}",
                           f"report must be one of {'/'.join(REPORT_SUFFIXES)}: {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    {".json": write_json, ".html": write_html, ".xlsx": write_xlsx, ".csv": write_csv,
     ".jsonl": write_groups}[suffix](report, path)
    return path


def read_report_groups(path: Path, offset: int, limit: int) -> dict:
    """A page of a grouped report written by :func:`write_report` as ``.jsonl``: the summary and
    groups ``offset`` … ``offset + limit - 1`` (:func:`ingest.report.read_groups`)."""
    return read_groups(path, offset, limit)


def exit_code_for(exc: CimError) -> int:
    """CLI exit code of a domain error raised during a run: 1 rejected, 2 unusable input."""
    return 1 if isinstance(exc, IngestRejected) else 2


def _main_files(paths: Sequence[Path]) -> list[Path]:
    """Loose files without the companions of an uploaded ``.shp`` (the reader finds those itself)."""
    paths = [Path(p) for p in paths]
    shp = {p.with_suffix("").as_posix().casefold() for p in paths if p.suffix.lower() == ".shp"}
    return [p for p in paths if p.suffix.lower() == ".shp" or p.with_suffix("").as_posix().casefold() not in shp]


def _batch_session(conn) -> None:
    """An ingest is a batch job: no statement timeout (the API's interactive limit does not apply)."""
    with conn.cursor() as cur:
        cur.execute("SET statement_timeout = 0")
    conn.commit()


def _validated(delivery: Delivery, conn, progress: Progress | None) -> Report:
    if progress:
        progress("validate", 0, 1)
    report = validate(delivery, conn=conn)
    if progress:
        progress("validate", 1, 1)
    return report


def for_loader(batch: LayerBatch) -> LayerBatch:
    """The batch as the loader needs it: the same frame (not copied, never changed), without the
    delivered values and source-CRS geometries only validation reads."""
    return dataclasses.replace(batch, raw=None, source_geom=None, repaired=None, outliers=None)


class _Checks:
    """The validation of a delivery fed batch by batch while it is read (:class:`Validation`):
    each batch is checked as it is handed over, and of a batch of ``CIM_INGEST_STREAM_ROWS``
    rows or more only its residue stays in the delivery."""

    def __init__(self, conn, settings: IngestSettings) -> None:
        self.conn, self.slim_rows = conn, settings.stream_rows
        self.validation: Validation | None = None

    def start(self, delivery: Delivery) -> None:
        self.validation = Validation(delivery, self.conn, slim_rows=self.slim_rows)

    def add(self, batch: LayerBatch) -> None:
        assert self.validation is not None  # start() comes first (read_deliveries' on_start)
        self.validation.add(batch)

    def points_back(self) -> None:
        """The pipe points checked so far back in the delivery (their residues joined from
        disk), for the lines built from them."""
        assert self.validation is not None
        self.validation.join_stored({"pipe_point"})

    def finish(self, progress: Progress | None) -> Report:
        assert self.validation is not None
        if progress:
            progress("validate", 0, 1)
        release_free_memory()                    # what reading and loading freed, before the residues are joined
        self.validation.join_stored()
        release_free_memory()                    # before the rules across batches build their tables
        report = self.validation.finish()
        if progress:
            progress("validate", 1, 1)
        return report


def _dry_run(conn, delivery: Delivery, *, reports: Sequence[Path], report: Report) -> Outcome:
    """Report a validated delivery; write nothing (a file already loaded is named in the report)."""
    with conn.cursor() as cur:
        dup = find_duplicate(cur, delivery.sha256, delivery.county_code)
    conn.rollback()  # validation only reads
    if dup:
        _note_duplicate(delivery, dup["id"], dup["state"])
    _write_reports(report, reports)
    return Outcome("rejected" if report.has_errors else "dry_run", report)


def _commit(written: Pending | LoadResult | None, report: Report, refused: InvalidInput | None, progress: Progress | None,
            on_commit: OnCommit | None) -> LoadResult | None:
    """Commit a written load whose report is clean; None when the report rejects it (rolled back).

    ``written`` is the pending load, or the :class:`LoadResult` of the same file loaded before
    (nothing written); ``refused`` the rows the database refused, which the report may explain."""
    if isinstance(written, LoadResult):
        return written
    if report.has_errors:
        if written is not None:
            abort(written)
        return None
    if refused is not None:
        raise IngestRejected(refused.zh, refused.en, **refused.detail) from refused
    return commit(written, report, progress, on_commit)


def _outcome(conn, report: Report, result: LoadResult | None, *, reports: Sequence[Path],
             principal: auth.Principal, client_addr: str | None) -> Outcome:
    """Write the reports; keep a rejected delivery in the history."""
    if result is not None and result.state == "duplicate":
        _note_duplicate(report.delivery, result.delivery_id, None)
    _write_reports(report, reports)
    if result is None:
        did = record_rejected(conn, report, principal=principal, client_addr=client_addr)
        return Outcome("rejected", report, delivery_id=did)
    return Outcome("duplicate" if result.state == "duplicate" else "loaded", report, result, result.delivery_id)


def _note_duplicate(delivery: Delivery, delivery_id: int, state: str | None) -> None:
    """Say in the report that this file (same sha256, same county) is already loaded."""
    extra_zh, extra_en = (f"（{state}）", f" ({state})") if state else ("", "")
    delivery.notes.append(Note(
        delivery.file_name, "duplicate",
        f"同一文件（sha256 {delivery.sha256[:12]}…）已作为成果 {delivery_id}{extra_zh} 入库：本次不重复入库",
        f"the same file (sha256 {delivery.sha256[:12]}…) is already loaded as delivery {delivery_id}{extra_en}: "
        "nothing is loaded again"))


def _write_reports(report: Report, paths: Sequence[Path]) -> None:
    for path in paths:
        write_report(report, Path(path))
