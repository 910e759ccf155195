"""Defences for uploaded files, run before an upload becomes a job.

Checks, in order: file names (no paths, no ``..``), the file type sniffed from its first bytes
against its extension, zip archives (not empty, no absolute or ``..`` member paths, no encrypted
members, total and per-member expansion within ``IngestSettings``), shapefile sets (``.shx`` and
``.dbf`` beside every ``.shp``, ``.shp``/``.shx`` lengths equal to the length in their headers,
``.dbf`` header record count matching the file size) and ``.prj`` files (a CRS pyproj knows).
Every refusal is an :class:`UnreadableInput` (or :class:`CrsError`, :class:`PayloadTooLarge`)
with a Chinese and an English message.
"""

from __future__ import annotations

import posixpath
import re
import struct
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from pyproj import CRS
from pyproj.exceptions import CRSError

from cim.errors import CrsError, PayloadTooLarge, UnreadableInput
from cim.settings import IngestSettings

ACCEPTED = (".zip", ".shp", ".shx", ".dbf", ".prj", ".cpg", ".gpkg", ".geojson", ".json", ".csv", ".xlsx",
            ".tif", ".tiff", ".qmd", ".sbn", ".sbx", ".xml")
_SAFE_NAME = re.compile(r"^[^/\\\x00-\x1f]{1,200}$")
_MAGIC = {
    ".zip": (b"PK\x03\x04", b"PK\x05\x06"),
    ".xlsx": (b"PK\x03\x04",),
    ".gpkg": (b"SQLite format 3\x00",),
    ".shp": (b"\x00\x00\x27\x0a",),
    ".shx": (b"\x00\x00\x27\x0a",),
    ".tif": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
    ".tiff": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
}


def safe_name(name: str) -> str:
    """The base name of an uploaded file, refusing path separators, ``..`` and control bytes."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    if base in ("", ".", "..") or not _SAFE_NAME.match(base) or base != name.strip():
        raise UnreadableInput(f"文件名不合法：{name!r}", f"illegal file name: {name!r}")
    if Path(base).suffix.lower() not in ACCEPTED:
        raise UnreadableInput(f"不支持的文件类型：{base}（可用 {' '.join(ACCEPTED[:11])}）",
                              f"unsupported file type: {base} (use {' '.join(ACCEPTED[:11])})")
    return base


def sniff(path: Path) -> None:
    """Refuse a file whose first bytes do not match its extension (e.g. a text file named .zip)."""
    suffix = path.suffix.lower()
    head = path.open("rb").read(64)
    if not head:
        raise UnreadableInput(f"文件为空：{path.name}", f"empty file: {path.name}")
    magic = _MAGIC.get(suffix)
    if magic and not head.startswith(magic):
        raise UnreadableInput(f"文件内容与扩展名不符：{path.name} 不是 {suffix} 文件",
                              f"file content does not match its extension: {path.name} is not a {suffix} file")
    if suffix in (".geojson", ".json") and not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        raise UnreadableInput(f"{path.name} 不是 GeoJSON", f"{path.name} is not GeoJSON")
    if suffix == ".csv" and b"\x00" in path.open("rb").read(65536):
        raise UnreadableInput(f"{path.name} 不是文本 CSV", f"{path.name} is not a text CSV file")


def check_zip(path: Path, settings: IngestSettings) -> list[str]:
    """Zip-bomb and path-traversal checks; return the member names."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnreadableInput(f"{path.name} 不是有效的 zip 压缩包", f"{path.name} is not a valid zip archive") from exc
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if not infos:
            raise UnreadableInput(f"压缩包 {path.name} 是空的", f"the zip archive {path.name} is empty")
        total = 0
        for info in infos:
            name = info.filename.replace("\\", "/")
            parts = PurePosixPath(name).parts
            if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts:
                raise UnreadableInput(f"压缩包含非法路径：{info.filename}",
                                      f"zip member escapes the archive (path traversal): {info.filename}")
            if info.flag_bits & 0x1:
                raise UnreadableInput(f"压缩包含加密文件：{info.filename}", f"encrypted zip member: {info.filename}")
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > (1 << 20) and ratio > settings.max_zip_ratio:
                raise PayloadTooLarge(f"压缩比异常（{ratio:.0f} 倍），疑似压缩炸弹：{info.filename}",
                                      f"suspicious compression ratio ({ratio:.0f}x), zip bomb refused: {info.filename}")
            total += info.file_size
        if total > settings.max_unzipped_mb * (1 << 20):
            raise PayloadTooLarge(f"解压后超过 {settings.max_unzipped_mb} MB 上限",
                                  f"unzipped size exceeds the {settings.max_unzipped_mb} MB limit")
        names = [i.filename for i in infos]
        _check_shapefile_sets(names, lambda n: _zip_head(zf, n), lambda n: zf.getinfo(n).file_size, path.name)
        for n in names:
            if n.lower().endswith(".prj"):
                check_prj(zf.read(n), f"{path.name}/{n}")
    return names


def _zip_head(zf: zipfile.ZipFile, name: str) -> bytes:
    with zf.open(name) as fh:
        return fh.read(100)


def _check_shapefile_sets(names: Iterable[str], head, size, where: str) -> None:
    """Every .shp needs a .shx and a .dbf; .shp/.shx/.dbf must not be truncated."""
    by_stem: dict[str, dict[str, str]] = {}
    for n in names:
        stem, ext = posixpath.splitext(n.replace("\\", "/"))
        by_stem.setdefault(stem.lower(), {})[ext.lower()] = n
    for parts in by_stem.values():
        if ".shp" not in parts:
            continue
        label = posixpath.basename(parts[".shp"])
        for need in (".shx", ".dbf"):
            if need not in parts:
                raise UnreadableInput(f"{where}：{label} 缺少 {need} 文件", f"{where}: {label} has no {need} file")
        for ext in (".shp", ".shx"):
            h = head(parts[ext])
            if len(h) < 100 or not h.startswith(b"\x00\x00\x27\x0a"):
                raise UnreadableInput(f"{where}：{parts[ext]} 文件头损坏", f"{where}: {parts[ext]} has a broken header")
            declared = struct.unpack(">i", h[24:28])[0] * 2
            if size(parts[ext]) < declared:
                raise UnreadableInput(f"{where}：{parts[ext]} 文件被截断（应为 {declared} 字节，实为 {size(parts[ext])}）",
                                      f"{where}: {parts[ext]} is truncated ({size(parts[ext])} of {declared} bytes)")
        h = head(parts[".dbf"])
        if len(h) < 32:
            raise UnreadableInput(f"{where}：{parts['.dbf']} 文件头损坏", f"{where}: {parts['.dbf']} has a broken header")
        records, header_len, record_len = struct.unpack("<IHH", h[4:12])
        if size(parts[".dbf"]) < header_len + records * record_len:
            raise UnreadableInput(f"{where}：{parts['.dbf']} 文件被截断", f"{where}: {parts['.dbf']} is truncated")


def check_prj(data: bytes, where: str) -> None:
    """A .prj must hold a coordinate reference system pyproj recognises."""
    text = data.decode("utf-8", errors="replace").strip()
    try:
        CRS.from_wkt(text) if text else CRS.from_user_input("")
    except CRSError as exc:
        raise CrsError(f"{where}：无法识别的坐标系（.prj）", f"{where}: unknown coordinate reference system (.prj)") from exc


def preflight(paths: list[Path], settings: IngestSettings) -> None:
    """Run every check on the files of one upload (loose files are checked as one set)."""
    if not paths:
        raise UnreadableInput("没有上传文件", "no file was uploaded")
    for p in paths:
        sniff(p)
        if p.suffix.lower() in (".zip", ".xlsx"):  # a workbook is a zip archive too
            check_zip(p, settings)
        elif p.suffix.lower() == ".prj":
            check_prj(p.read_bytes(), p.name)
    loose = {p.name: p for p in paths if p.suffix.lower() in (".shp", ".shx", ".dbf")}
    if loose:
        _check_shapefile_sets(loose, lambda n: loose[n].open("rb").read(100), lambda n: loose[n].stat().st_size,
                              "upload")
