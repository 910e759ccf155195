"""Safe extraction of delivered zip archives and file-type sniffing by magic bytes.

Defences: entries with absolute paths or ``..`` components, symbolic links, more
uncompressed bytes than ``IngestSettings.max_unzipped_mb`` or a compression ratio above
``max_zip_ratio`` (zip bombs) are refused before anything is written; the sizes are enforced
again while streaming in case the headers lie. Member names are decoded per the UTF-8 flag
(bit 11) or, without it, from cp437-decoded GBK bytes.
"""

from __future__ import annotations

import stat
import threading
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from cim.errors import UnreadableInput
from cim.settings import IngestSettings
from ingest.readers.encoding import zip_member_name

CHUNK = 1 << 20
RATIO_MIN_BYTES = 1 << 20      # ratios are judged only for members above 1 MiB uncompressed
MAX_DEPTH = 2                  # zips inside zips


def sniff(path: Path) -> str:
    """File type from the first bytes: zip, shp, gpkg, dbf, json, xlsx, text or unknown."""
    with path.open("rb") as fh:
        head = fh.read(512)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        if path.suffix.lower() in (".xlsx", ".xlsm"):
            return "xlsx"
        return "zip"
    if head[:16] == b"SQLite format 3\x00":
        return "gpkg"
    if head[:4] == b"\x00\x00\x27\x0a":
        return "shp"
    if head[:1] in (b"\x02", b"\x03", b"\x30", b"\x31", b"\x83", b"\x8b", b"\xf5") and path.suffix.lower() == ".dbf":
        return "dbf"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] in (b"{", b"["):
        return "json"
    if head and b"\x00" not in head:
        return "text"
    return "unknown"


def _safe_name(name: str) -> PurePosixPath:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnreadableInput(f"压缩包含绝对路径条目：{name}", f"the zip holds an entry with an absolute path: {name}")
    if any(part == ".." for part in p.parts):
        raise UnreadableInput(f"压缩包含路径穿越条目：{name}", f"the zip holds a path-traversal entry: {name}")
    return p


def _check_members(zf: zipfile.ZipFile, settings: IngestSettings, label: str) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    members, total = [], 0
    limit = settings.max_unzipped_mb * (1 << 20)
    for info in zf.infolist():
        name = zip_member_name(info.filename, info.flag_bits)
        rel = _safe_name(name)
        mode = info.external_attr >> 16
        if mode and stat.S_ISLNK(mode):
            raise UnreadableInput(f"压缩包含符号链接：{name}", f"the zip holds a symbolic link: {name}")
        if info.is_dir():
            continue
        total += info.file_size
        if total > limit:
            raise UnreadableInput(f"压缩包解压后超过 {settings.max_unzipped_mb} MB 上限",
                                  f"the zip expands beyond the {settings.max_unzipped_mb} MB limit", file=label)
        if info.file_size > RATIO_MIN_BYTES and info.file_size > settings.max_zip_ratio * max(info.compress_size, 1):
            raise UnreadableInput(f"压缩包条目 {name} 压缩比异常（疑似压缩炸弹）",
                                  f"zip entry {name} has an abnormal compression ratio (zip bomb suspected)",
                                  file=label)
        members.append((info, rel))
    return members


def _copy_limited(src, dst, budget: int, name: str) -> int:
    written = 0
    while chunk := src.read(CHUNK):
        written += len(chunk)
        if written > budget:
            raise UnreadableInput(f"压缩包条目 {name} 解压后超出声明大小或上限",
                                  f"zip entry {name} expands beyond its declared size or the limit")
        dst.write(chunk)
    return written


def extract_zip(path: Path, dest: Path, settings: IngestSettings, depth: int = 0,
                budget: list[int] | None = None) -> list[Path]:
    """Extract a zip safely into ``dest``; nested zips are expanded in place within the same
    uncompressed-size budget. Returns the files."""
    with _open_zip(path) as zf:
        members = _targets(zf, path, dest, settings)
        if budget is None:
            budget = [settings.max_unzipped_mb * (1 << 20)]
        out: list[Path] = []
        for info, rel, target in members:
            _extract_member(zf, info, rel, target, budget)
            if target.suffix.lower() == ".zip" and depth < MAX_DEPTH:
                sub = target.with_suffix("")
                sub.mkdir(exist_ok=True)
                out += extract_zip(target, sub, settings, depth + 1, budget)
                target.unlink()
            else:
                out.append(target)
    return out


def _open_zip(path: Path) -> zipfile.ZipFile:
    if sniff(path) != "zip":
        raise UnreadableInput(f"{path.name} 不是有效的 zip 压缩包", f"{path.name} is not a valid zip archive")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnreadableInput(f"{path.name} 不是有效的 zip 压缩包", f"{path.name} is not a valid zip archive") from exc


def _targets(zf: zipfile.ZipFile, path: Path, dest: Path,
             settings: IngestSettings) -> list[tuple[zipfile.ZipInfo, PurePosixPath, Path]]:
    """Checked members with the paths they extract to (refused before anything is written)."""
    members = _check_members(zf, settings, path.name)
    if not members:
        raise UnreadableInput(f"压缩包 {path.name} 为空", f"the zip archive {path.name} is empty")
    out = []
    for info, rel in members:
        target = dest.joinpath(*rel.parts)
        if not target.resolve().is_relative_to(dest.resolve()):
            raise UnreadableInput(f"压缩包含路径穿越条目：{rel}", f"the zip holds a path-traversal entry: {rel}")
        out.append((info, rel, target))
    return out


def _extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, rel: PurePosixPath, target: Path,
                    budget: list[int]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zf.open(info) as src, target.open("wb") as dst:
            budget[0] -= _copy_limited(src, dst, min(budget[0], info.file_size), str(rel))
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error, ValueError) as exc:
        raise UnreadableInput(f"压缩包条目 {rel} 损坏", f"zip entry {rel} is corrupt") from exc
    except (NotImplementedError, RuntimeError) as exc:  # unsupported method, encryption
        raise UnreadableInput(f"压缩包条目 {rel} 使用了不支持的压缩方式或已加密",
                              f"zip entry {rel} uses an unsupported compression method or is encrypted") from exc


class Extraction:
    """A zip extracted on a worker thread, members in the order the reader will want them.

    The members are checked (names, links, sizes, ratios) before the thread starts, so
    :attr:`files` is known at once; :meth:`wait` blocks until given files are on disk (zlib and
    file writes run outside the GIL, so reading the first files overlaps extracting the rest).
    A zip holding zips is extracted at once instead, by :func:`extract_zip`. Use it as a context
    manager: leaving it stops and joins the thread.
    """

    def __init__(self, path: Path, dest: Path, settings: IngestSettings,
                 order: Callable[[Path], int] | None = None) -> None:
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        with _open_zip(path) as zf:
            members = _targets(zf, path, dest, settings)
        if any(t.suffix.lower() == ".zip" for _, _, t in members):
            self.files = extract_zip(path, dest, settings)
            self.ready = {f: threading.Event() for f in self.files}
            for event in self.ready.values():
                event.set()
            return
        if order is not None:
            members.sort(key=lambda m: order(m[2]))
        self.files = [t for _, _, t in members]
        self.ready = {t: threading.Event() for t in self.files}
        budget = [settings.max_unzipped_mb * (1 << 20)]
        self.thread = threading.Thread(target=self._run, args=(path, members, budget), name="cim-unzip", daemon=True)
        self.thread.start()

    def _run(self, path: Path, members: list, budget: list[int]) -> None:
        try:
            with zipfile.ZipFile(path) as zf:
                for info, rel, target in members:
                    if self.stop.is_set():
                        return
                    _extract_member(zf, info, rel, target, budget)
                    self.ready[target].set()
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread by wait()
            self.error = exc
        finally:
            for event in self.ready.values():
                event.set()

    def wait(self, files: list[Path]) -> None:
        """Block until ``files`` are extracted; raise what the extraction raised."""
        for f in files:
            if f in self.ready:
                self.ready[f].wait()
        if self.error is not None:
            raise self.error

    def __enter__(self) -> Extraction:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
