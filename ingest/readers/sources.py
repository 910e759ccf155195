"""The delivered files, folders and zips walked and read layer by layer: bytes → :class:`SourceLayer`.

:func:`digest` hashes what was delivered (the delivery's identity: a re-delivery of the same
bytes is recognised); :func:`open_sources` yields every layer of the given files, folders and
zips as soon as it is read, in the order a ``rank`` of the file names asks for. A zip is
extracted safely on a worker thread (:class:`~ingest.readers.archive.Extraction`) in that same
order, so the first layer is read while the rest is still being extracted. Files that are not
data (companions without their ``.shp``, unknown types, unreadable side files) become notes.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from pathlib import Path

from cim.errors import UnreadableInput
from cim.settings import IngestSettings
from ingest.model import Note
from ingest.readers import SourceLayer
from ingest.readers.archive import Extraction, sniff
from ingest.readers.errors import guarded, guarded_items
from ingest.readers.gpkg import read_gpkg
from ingest.readers.table import read_csv, read_xlsx
from ingest.readers.vector import read_dbf, read_geojson, read_shapefile

READABLE = {".shp", ".dbf", ".gpkg", ".geojson", ".json", ".csv", ".txt", ".xlsx", ".xlsm", ".zip"}
LENIENT = {".txt", ".json"}     # in a folder or zip, unreadable files of these types are skipped
COMPANIONS = {".shx", ".prj", ".cpg", ".sbn", ".sbx", ".qix", ".xml", ".qmd", ".qpj", ".fix", ".atx", ".ain",
              ".aih", ".ixs", ".mxs", ".lock"}


def digest(paths: Sequence[Path]) -> tuple[str, int]:
    """sha256 and size in bytes of everything delivered (every file below a folder, in name order).

    Refuses an empty list and paths that do not exist (:class:`UnreadableInput`)."""
    if not paths:
        raise UnreadableInput("未提供交付文件", "no delivery file given")
    for p in paths:
        if not p.exists():
            raise UnreadableInput(f"文件不存在：{p}", f"no such file: {p}")
    h, size = hashlib.sha256(), 0
    for p in (f for path in paths for f in _files_of(path)):
        with p.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
    return h.hexdigest(), size


@contextlib.contextmanager
def open_sources(paths: Sequence[Path], settings: IngestSettings, notes: list[Note],
                 rank: Callable[[Path], int] | None = None) -> Iterator[Iterator[SourceLayer]]:
    """The layers of the delivery, read one by one as they are iterated, with a scratch folder
    for zips; notes about skipped files go to ``notes``. On leaving, the sources close (joining a
    zip's extraction thread) before the folder they extract into is removed."""
    with (tempfile.TemporaryDirectory(prefix="cim-ingest-") as tmp,
          contextlib.closing(_layers(paths, settings, Path(tmp), notes, rank)) as layers):
        yield layers


def _layers(paths: Sequence[Path], settings: IngestSettings, work: Path, notes: list[Note],
            rank: Callable[[Path], int] | None) -> Generator[SourceLayer, None, None]:
    """:func:`iter_sources`, refusing a delivery in which nothing can be read."""
    read_any = False
    with contextlib.closing(iter_sources(paths, settings, work, notes, rank)) as layers:
        for layer in layers:
            read_any = True
            yield layer
    if not read_any:
        raise UnreadableInput("交付中没有可读取的图层或表格", "the delivery holds no readable layer or table")


def _files_of(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [path]


def _expected_type(ext: str) -> set[str]:
    return {".shp": {"shp"}, ".dbf": {"dbf"}, ".gpkg": {"gpkg"}, ".geojson": {"json"}, ".json": {"json"},
            ".csv": {"text"}, ".txt": {"text"}, ".xlsx": {"xlsx"}, ".xlsm": {"xlsx"}, ".zip": {"zip"}}.get(ext, set())


def _read_file(p: Path, rel: str, chunk_rows: int | None = None,
               rank: Callable[[Path], int] | None = None) -> Iterable[SourceLayer]:
    ext = p.suffix.lower()
    if p.stat().st_size == 0:
        raise UnreadableInput(f"文件 {rel} 为空", f"file {rel} is empty", file=rel)
    kind = sniff(p)
    if kind not in _expected_type(ext):
        raise UnreadableInput(f"文件 {rel} 的内容与扩展名 {ext} 不符", f"the content of {rel} does not match "
                              f"its extension {ext}", file=rel, detected=kind)
    if ext == ".shp":
        return [read_shapefile(p, rel, chunk_rows)]
    if ext == ".dbf":
        if p.with_suffix(".shp").exists() or p.with_suffix(".SHP").exists():
            return []
        return [read_dbf(p, rel)]
    if ext == ".gpkg":
        return read_gpkg(p, rel, chunk_rows, rank)
    if ext in (".geojson", ".json"):
        return [read_geojson(p, rel, chunk_rows)]
    if ext in (".csv", ".txt"):
        return [read_csv(p, rel, chunk_rows)]
    return read_xlsx(p, rel, chunk_rows)


def _orphans(files: list[Path], root: Path) -> list[str]:
    """Companion files (.shx, .prj …) without their .shp."""
    stems = {(p.parent, p.stem.lower()) for p in files if p.suffix.lower() == ".shp"}
    return [str(p.relative_to(root)) for p in files if p.suffix.lower() in (".shx", ".prj", ".cpg")
            and (p.parent, p.stem.lower()) not in stems]


def _is_zip(path: Path) -> bool:
    ext = path.suffix.lower()
    return path.is_file() and (ext == ".zip" or (ext not in (".xlsx", ".xlsm") and sniff(path) == "zip"))


def _expand(path: Path, n: int, settings: IngestSettings, work: Path,
            rank: Callable[[Path], int] | None = None) -> tuple[Path, list[Path], Extraction | None]:
    """The root folder and the files of one input: a folder's files, a zip's members (being
    extracted under ``work`` in ``rank`` order), or the file itself."""
    if not path.exists():
        raise UnreadableInput(f"文件不存在：{path}", f"no such file: {path}")
    if path.is_file() and path.suffix.lower() in (".shx", ".prj", ".cpg"):
        raise UnreadableInput(f"{path.name} 不能单独交付，请提交 .shp 及其配套文件",
                              f"{path.name} cannot be delivered alone; deliver the .shp and its companions")
    if _is_zip(path):
        root = work / f"z{n}"
        root.mkdir()
        extraction = Extraction(path, root, settings, rank)
        return root, extraction.files, extraction
    return (path, _files_of(path), None) if path.is_dir() else (path.parent, [path], None)


def iter_sources(paths: Sequence[Path], settings: IngestSettings, work: Path, notes: list[Note],
                 rank: Callable[[Path], int] | None = None) -> Generator[SourceLayer, None, None]:
    """The layers of the given files, folders and zips, each as soon as it is read; notes about
    skipped files are appended to ``notes``. ``rank`` orders the files of each folder or zip
    (stable: equal ranks keep their name order)."""
    queue = list(paths)
    n = 0
    while queue:
        path = queue.pop(0)
        root, files, extraction = _expand(path, n, settings, work, rank)
        n += 1
        with extraction or contextlib.nullcontext():
            yield from _read_files(path, root, files, extraction, notes, rank, queue, settings.chunk_rows)


def _read_files(path: Path, root: Path, files: list[Path], extraction: Extraction | None, notes: list[Note],
                rank: Callable[[Path], int] | None, queue: list[Path],
                chunk_rows: int | None = None) -> Iterator[SourceLayer]:
    for orphan in _orphans(files, root):
        notes.append(Note(orphan, "file", f"{orphan} 没有对应的 .shp，已忽略",
                          f"{orphan} has no matching .shp and was ignored"))
    for p in sorted(files, key=rank) if rank else files:
        ext = p.suffix.lower()
        rel = str(p.relative_to(root)) if p.is_relative_to(root) else p.name
        if ext in COMPANIONS:
            continue
        if ext == ".zip" and path.is_dir():
            queue.append(p)
            continue
        if ext not in READABLE or ext == ".zip":
            notes.append(Note(rel, "file", f"未识别的文件类型，已忽略：{rel}", f"unrecognised file type, ignored: {rel}"))
            continue
        if extraction is not None:   # the file and its companions (same folder and name)
            extraction.wait([f for f in files if f.parent == p.parent and f.stem.lower() == p.stem.lower()])
        try:
            layers = guarded(_read_file, rel, p, rel, chunk_rows, rank)
        except UnreadableInput as exc:
            if ext not in LENIENT or len(files) == 1:
                raise
            # side files (readme.txt, metadata.json) must not sink a delivery
            notes.append(Note(rel, "file", f"{rel} 无法作为数据读取，已忽略：{exc.zh}",
                              f"{rel} cannot be read as data and was ignored: {exc.en}"))
            continue
        yield from guarded_items(iter(layers), rel)   # a workbook reads its sheets as they are iterated
    if extraction is not None:
        extraction.wait([])          # members no reader asked for must have extracted cleanly too

