"""Workbook sheets (.xlsx, .xlsm) read as a stream of rows, a block of rows at a time.

A sheet's XML is inflated from the workbook in blocks of about ``BLOCK`` bytes cut at a row's
end; each block's cells are found by one RE2 pattern in Arrow (:func:`_cells_fast`, no Python
object per cell) and typed column-wise, so a sheet takes one block's memory however many rows it
has (a reader that loads the whole sheet first holds some 40 bytes a cell and more for text).
Cells written in another attribute order, without their reference or with rich inline text are
parsed one by one (:func:`_cells_slow`), with the same result.

Values come out as calamine gives them: numbers as ``float``; a number whose format is a date as
``date`` (whole days), ``datetime`` (with a time of day) or ``time`` (under one day), and as
``timedelta`` under a duration format (``[h]:mm``); booleans as ``bool``; text (shared strings,
inline strings, formula results) unescaped; errors and formulas without a cached result as ''.
Rows are those that hold a value, each as wide as its block's widest; the first column is the
one the sheet's ``<dimension>`` names. The package's small parts (relationships, workbook,
styles) are parsed with ElementTree; shared strings are kept as one list, as any reader must.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cim.errors import UnreadableInput

BLOCK = 4 << 20                  # bytes of sheet XML inflated and parsed at a time
_GRID_CELLS = 4 << 20            # a block's rows as one array up to this many cells
_MAX_PART = 2 << 30              # a part that claims to inflate to more is refused (a zip bomb)
_NONE, _DATE, _DURATION = 0, 1, 2
# Built-in number formats that are dates or times (ECMA-376 §18.8.30 and the CJK locales' 27–36,
# 50–58), and the one built-in duration ([h]:mm:ss).
_BUILTIN_DATES = {*range(14, 23), *range(27, 37), 45, 47, *range(50, 59), *range(71, 82)}
_BUILTIN_DURATIONS = {46}


@dataclass
class Sheet:
    """One worksheet of a workbook: its name and its part in the package."""
    name: str
    part: str


class Workbook:
    """An .xlsx/.xlsm package opened for streaming its sheets (:meth:`rows`). Raises
    :class:`UnreadableInput` for a file that is not a readable workbook."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.zf = zipfile.ZipFile(path)
            self.sheets, self.date1904 = self._sheets()
            self._kinds = self._number_kinds()
        except UnreadableInput:
            raise
        except (zipfile.BadZipFile, KeyError, ET.ParseError, ValueError, OSError) as exc:
            raise UnreadableInput(f"无法读取 Excel 文件 {path.name}", f"cannot read Excel file {path.name}") from exc
        self._shared: np.ndarray | None = None

    def close(self) -> None:
        self.zf.close()

    def __enter__(self) -> Workbook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the package's small parts ----------------------------------------------------------------

    def _xml(self, part: str) -> ET.Element:
        info = self.zf.getinfo(part)
        if info.file_size > _MAX_PART:
            raise UnreadableInput(f"Excel 文件 {self.path.name} 的 {part} 过大", f"{part} of Excel file "
                                  f"{self.path.name} is too large")
        return ET.fromstring(self.zf.read(info))

    def _rels(self, part: str) -> dict[str, tuple[str, str]]:
        """The relationships of a part: id → (type's last segment, target part)."""
        folder, name = part.rpartition("/")[::2]
        out = {}
        try:
            for rel in self._xml(f"{folder}/_rels/{name}.rels" if folder else f"_rels/{name}.rels"):
                target = rel.get("Target", "")
                path = target.lstrip("/") if target.startswith("/") else f"{folder}/{target}" if folder else target
                out[rel.get("Id", "")] = (rel.get("Type", "").rsplit("/", 1)[-1], _normpath(path))
        except KeyError:              # a package without relationships: the usual part names
            pass
        return out

    def _sheets(self) -> tuple[list[Sheet], bool]:
        """The worksheets in the workbook's order, and whether its dates count from 1904; the
        parts of the styles and the shared strings."""
        main = next((t for kind, t in self._rels("").values() if kind == "officeDocument"), "xl/workbook.xml")
        book = self._xml(main)
        rels = self._rels(main)
        folder = main.rpartition("/")[0]
        self._parts = {kind: target for kind, target in rels.values() if kind in ("styles", "sharedStrings")}
        self._parts.setdefault("styles", f"{folder}/styles.xml")
        self._parts.setdefault("sharedStrings", f"{folder}/sharedStrings.xml")
        sheets = []
        date1904 = False
        for el in book.iter():
            local = _local(el.tag)
            if local == "workbookPr":
                date1904 = el.get("date1904", "0").lower() in ("1", "true")
            elif local == "sheet":
                rid = next((v for k, v in el.attrib.items() if _local(k) == "id"), None)
                if rid in rels and rels[rid][0] == "worksheet":
                    sheets.append(Sheet(el.get("name", ""), rels[rid][1]))
        return sheets, date1904

    def _number_kinds(self) -> np.ndarray:
        """Per cell format (``s`` of a cell): plain number, date or duration."""
        try:
            styles = self._xml(self._parts["styles"])
        except KeyError:
            return np.zeros(1, np.int8)
        codes = {int(el.get("numFmtId", "0")): el.get("formatCode", "")
                 for el in styles.iter() if _local(el.tag) == "numFmt"}
        xfs = next((el for el in styles.iter() if _local(el.tag) == "cellXfs"), None)
        kinds = [_format_kind(int(xf.get("numFmtId", "0")), codes) for xf in (xfs if xfs is not None else [])]
        return np.array(kinds or [_NONE], np.int8)

    def _strings(self) -> np.ndarray:
        """The shared strings, read once, when a sheet first refers to them."""
        if self._shared is None:
            out: list[str] = []
            try:
                info = self.zf.getinfo(self._parts["sharedStrings"])
            except KeyError:
                self._shared = np.array([], object)
                return self._shared
            for block, prefix in _blocks(self.zf, info, b"si"):
                p = prefix.decode()
                items = re.finditer(rf"<{p}si(?:\s*/>|>(.*?)</{p}si>)", block.decode("utf-8"), flags=re.S)
                out.extend(_text(m.group(1) or "", p) for m in items)
            self._shared = np.array(out, dtype=object)
        return self._shared

    # -- the sheets -------------------------------------------------------------------------------

    def rows(self, sheet: Sheet) -> Iterator[list]:
        """The rows of ``sheet``, as lists of values from the sheet's first column on."""
        try:
            info = self.zf.getinfo(sheet.part)
        except KeyError as exc:
            raise UnreadableInput(f"Excel 文件 {self.path.name} 缺少工作表 {sheet.name}",
                                  f"Excel file {self.path.name} lacks sheet {sheet.name}") from exc
        first_col = None
        for block, prefix in _blocks(self.zf, info, b"row"):
            if first_col is None:
                m = re.search(rb"<(?:\w+:)?dimension ref=\"\$?([A-Z]{1,3})", block)
                first_col = _column(m.group(1).decode()) if m else 0
                start = re.search(rb"<(?:\w+:)?sheetData\b", block)
                block = block[start.start():] if start else b""
            end = block.find(b"</" + prefix + b"sheetData>")
            if end >= 0:
                block = block[:end]
            cells = _cells_fast(block, prefix)
            if cells is None:
                cells = _cells_slow(block, prefix)
            if cells.rows.size:
                yield from self._grid(cells, first_col)

    def _grid(self, cells: _Cells, first_col: int) -> list[list]:
        """The block's rows: its cells typed and placed by column ('' where no value is). Rows are
        as wide as the block's widest, unless that would make the block more than ``_GRID_CELLS``
        cells (a stray value far to the right): then each row is as wide as its own last value."""
        cols = cells.cols - first_col
        if (cols < 0).any():
            raise UnreadableInput(f"Excel 文件 {self.path.name} 的工作表范围声明（dimension）与单元格不符",
                                  f"the dimension of a sheet of Excel file {self.path.name} does not cover its cells")
        values = self._values(cells)
        filled = values != ""                           # styled cells without a value take no room
        values, cols, rows = values[filled], cols[filled], cells.rows[filled]
        if not values.size:
            return []
        numbers, index = np.unique(rows, return_inverse=True)
        width = int(cols.max()) + 1
        if numbers.size * width <= _GRID_CELLS:
            grid = np.full((numbers.size, width), "", dtype=object)
            grid[index, cols] = values
            return grid.tolist()
        order = np.lexsort((cols, index))
        ends = np.searchsorted(index[order], np.arange(1, numbers.size + 1))
        out, start = [], 0
        for end in ends.tolist():
            row = [""] * (int(cols[order[end - 1]]) + 1)
            for c, v in zip(cols[order[start:end]].tolist(), values[order[start:end]].tolist(), strict=True):
                row[c] = v
            out.append(row)
            start = end
        return out

    def _values(self, cells: _Cells) -> np.ndarray:
        """Each cell's value by its type (``t``) and number format (``s``)."""
        out = np.full(cells.rows.size, "", dtype=object)
        t, v = cells.types, cells.values
        number = _mask(pc.and_(pc.is_in(t, value_set=pa.array(["", "n"])), pc.not_equal(v, "")))
        if number.any():
            nums = pc.cast(v.filter(number), pa.float64()).to_numpy()
            styles = cells.styles[number]
            kinds = self._kinds[np.where(styles < self._kinds.size, styles, 0)]
            plain = kinds == _NONE
            where = np.flatnonzero(number)
            out[where[plain]] = nums[plain]
            for i, x, k in zip(where[~plain], nums[~plain], kinds[~plain], strict=True):
                out[i] = _date(float(x), int(k), self.date1904)
        shared = _mask(pc.equal(t, "s"))
        if shared.any():
            strings = self._strings()
            idx = pc.cast(v.filter(shared), pa.int64()).to_numpy()
            if idx.min() < 0 or idx.max() >= strings.size:
                raise UnreadableInput(f"Excel 文件 {self.path.name} 引用了不存在的共享字符串",
                                      f"Excel file {self.path.name} refers to a shared string it lacks")
            out[shared] = strings[idx]
        inline = _mask(pc.equal(t, "inlineStr"))
        if inline.any():          # each distinct text decoded once (survey tables repeat theirs)
            texts = pc.dictionary_encode(v.filter(inline))
            distinct = [_unescape(x) for x in texts.dictionary.to_pylist()]
            out[inline] = np.array(distinct, dtype=object)[texts.indices.to_numpy()]
        for i in np.flatnonzero(~number & ~shared & ~inline & ~_mask(pc.is_in(t, value_set=pa.array(["", "n"])))):
            out[i] = _other(t[i].as_py(), v[i].as_py())
        return out


def _mask(array: pa.Array) -> np.ndarray:
    return array.to_numpy(zero_copy_only=False)


def _other(kind: str, raw: str) -> object:
    """The value of a formula's text result, a boolean, an ISO date, an error ('')."""
    if kind == "str":
        return _unescape(raw)
    if kind == "b":
        return raw.strip() in ("1", "true")
    if kind == "d" and raw:
        return dt.datetime.fromisoformat(raw.rstrip("Z"))
    return ""            # errors (#DIV/0!, #N/A …) and unknown types


# -- cells of a block ------------------------------------------------------------------------------


@dataclass
class _Cells:
    """The cells of a block, column-wise: row number, column index, format index (numpy), type and
    raw value (Arrow strings; an inline string's text still escaped); ``prefix``: the sheet's
    namespace prefix (``x:``)."""
    rows: np.ndarray
    cols: np.ndarray
    styles: np.ndarray
    types: pa.StringArray
    values: pa.StringArray
    prefix: str


_FAST: dict[str, str] = {}
_SLOW: dict[str, tuple[re.Pattern[str], ...]] = {}
_ATTR = re.compile(r'([\w:]+)="([^"]*)"')


def _cells_fast(block: bytes, p: bytes) -> _Cells | None:
    """The cells of a block whose every cell is written ``<c r=".." s=".." t="..">`` (the order
    Excel, LibreOffice, openpyxl and most writers use) and whose inline strings are one run,
    found by Arrow's regular expressions (RE2) without a Python object per cell; None when some
    cell is written otherwise."""
    ps = p.decode()
    if b"<" + p + b"c>" in block:
        return None
    pattern = _FAST.get(ps)
    if pattern is None:
        f, v, t, c = (f"{ps}{tag}" for tag in ("f", "v", "t", "c"))
        pattern = _FAST[ps] = (     # an inline string's one <t> run in the value group
            r'^r="(?P<col>[A-Z]{1,3})(?P<row>[0-9]+)"(?: s="(?P<s>[0-9]+)")?(?: t="(?P<t>[a-zA-Z]+)")?'
            r"(?P<tail>[^>/]*)(?:/>|>(?:<" + f + r"\b[^>]*?(?:/>|>[^<]*</" + f + r">))?"
            r"(?:(?:<" + v + r">|<" + ps + r"is><" + t + r'(?: xml:space="preserve")?>)(?P<v>[^<]*)<|<' + v
            + r"/>|</" + c + r">))")
    pieces = pc.split_pattern(pa.array([block.decode("utf-8")], pa.string()), f"<{ps}c ")[0].values[1:]
    found = pc.extract_regex(pieces, pattern)
    if found.null_count:
        return None
    if any(re.search(r"\s[rst]=", x) for x in pc.unique(found.field("tail")).to_pylist() if x):
        return None
    style = found.field("s")
    return _Cells(pc.cast(found.field("row"), pa.int64()).to_numpy(), _columns(found.field("col")),
                  pc.cast(pc.if_else(pc.equal(style, ""), "0", style), pa.int64()).to_numpy(),
                  found.field("t"), found.field("v"), ps)


def _cells_slow(block: bytes, p: bytes) -> _Cells:
    """The cells of a block parsed one by one: any attribute order, rows and cells without their
    reference (the next row, the next column)."""
    ps = p.decode()
    pats = _SLOW.get(ps)
    if pats is None:
        pats = _SLOW[ps] = tuple(re.compile(x, re.S) for x in (
            rf"<{ps}row\b([^>]*?)(?:/>|>(.*?)</{ps}row>)", rf"<{ps}c\b([^>]*?)(?:/>|>(.*?)</{ps}c>)",
            rf"<{ps}v>([^<]*)</{ps}v>", rf"<{ps}is>(.*?)</{ps}is>"))
    row_rx, cell_rx, value_rx, inline_rx = pats
    rows, cols, styles, types, values = [], [], [], [], []
    r = 0
    for row in row_rx.finditer(block.decode("utf-8")):
        attrs = dict(_ATTR.findall(row.group(1)))
        r = int(attrs["r"]) if "r" in attrs else r + 1
        c = -1
        for cell in cell_rx.finditer(row.group(2) or ""):
            a = dict(_ATTR.findall(cell.group(1)))
            ref = re.match(r"\$?([A-Z]{1,3})\$?[0-9]*$", a.get("r", ""))
            c = _column(ref.group(1)) if ref else c + 1
            body = cell.group(2) or ""
            v = value_rx.search(body)
            s = inline_rx.search(body)
            rows.append(r)
            cols.append(c)
            styles.append(int(a.get("s", "0") or 0))
            types.append(a.get("t", ""))
            values.append(_runs(s.group(1), ps) if s else v.group(1) if v else "")
    return _Cells(np.array(rows, np.int64), np.array(cols, np.int64), np.array(styles, np.int64),
                  pa.array(types, pa.string()), pa.array(values, pa.string()), ps)


def _columns(letters: pa.StringArray) -> np.ndarray:
    """Column indices (A = 0) of column letters, each distinct letter computed once."""
    codes = pc.dictionary_encode(letters)
    return np.array([_column(x) for x in codes.dictionary.to_pylist()], np.int64)[codes.indices.to_numpy()]


def _column(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n - 1


# -- text, dates, formats -------------------------------------------------------------------------


def _blocks(zf: zipfile.ZipFile, info: zipfile.ZipInfo, element: bytes) -> Iterator[tuple[bytes, bytes]]:
    """A part's XML in blocks of about ``BLOCK`` bytes, each ending after a closing ``element``
    tag (the last block: the rest), with the document's namespace prefix (``b'x:'`` or b'')."""
    if info.file_size > _MAX_PART:
        raise UnreadableInput(f"Excel 文件中的 {info.filename} 过大", f"{info.filename} of an Excel file is too large")
    prefix = None
    tail = b""
    with zf.open(info) as fh:
        while True:
            try:
                chunk = fh.read(BLOCK)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:     # damaged deflate data, bad CRC
                raise UnreadableInput(f"Excel 文件中的 {info.filename} 已损坏", f"{info.filename} of an Excel "
                                      f"file is damaged: {exc}") from exc
            data = tail + chunk
            if prefix is None:                 # the root element's prefix, once it has been read
                m = re.search(rb"<(\w+:)?(?:worksheet|sst)\b", data)
                if m is None and chunk:
                    tail = data
                    continue
                prefix = (m.group(1) or b"") if m else b""
                close = b"</" + prefix + element + b">"
            if chunk:
                cut = data.rfind(close)
                if cut < 0:
                    tail = data
                    continue
                cut += len(close)
                tail, data = data[cut:], data[:cut]
            yield data, prefix
            if not chunk:
                return


def _text(rich: str, p: str) -> str:
    """The text of a string item (``<t>``, or rich text runs ``<r><t>``; phonetic runs left out)."""
    return _unescape(_runs(rich, p))


def _runs(rich: str, p: str) -> str:
    """The text runs of a string item joined, still escaped."""
    if rich.startswith(f"<{p}t>") and rich.endswith(f"</{p}t>") and rich.count("<") == 2:
        return rich[len(p) + 3:-(len(p) + 4)]
    rich = re.sub(rf"<{p}rPh\b.*?</{p}rPh>", "", rich, flags=re.S)
    return "".join(re.findall(rf"<{p}t(?:\s[^>]*)?>([^<]*)</{p}t>", rich))


_OOXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def _unescape(text: str) -> str:
    """XML entities and OOXML's ``_xHHHH_`` escapes of control characters undone."""
    if "&" in text:
        text = html.unescape(text)
    if "_x" in text:
        text = _OOXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    return text


def _format_kind(num_fmt: int, codes: dict[int, str]) -> int:
    if num_fmt in _BUILTIN_DURATIONS:
        return _DURATION
    if num_fmt in _BUILTIN_DATES:
        return _DATE
    code = codes.get(num_fmt)
    if not code:
        return _NONE
    code = re.sub(r'"[^"]*"|\\.|_.|\*.', "", code)          # literal text, escapes, padding
    if re.search(r"\[(?:h+|m+|s+)\]", code, re.I):
        return _DURATION
    code = re.sub(r"\[[^\]]*\]", "", code.split(";")[0])     # colours, conditions, locales
    return _DATE if re.search(r"[dmyhs]", code, re.I) and code.lower() != "general" else _NONE


_EPOCH_1900 = dt.datetime(1899, 12, 30)
_EPOCH_1904 = dt.datetime(1904, 1, 1)


def _date(serial: float, kind: int, date1904: bool) -> object:
    """A date-formatted number as calamine gives it (Excel's 1900 leap-year bug included)."""
    if kind == _DURATION:
        return dt.timedelta(milliseconds=round(serial * 86_400_000))
    if serial < 0 or serial > 2_958_465:             # beyond 9999-12-31: left a number
        return serial
    if serial < 1 and not date1904:
        ms = round(serial * 86_400_000)
        return (dt.datetime.min + dt.timedelta(milliseconds=ms)).time() if ms < 86_400_000 else dt.time(0)
    if date1904:
        base = _EPOCH_1904
    elif serial < 60:
        base = _EPOCH_1900 + dt.timedelta(days=1)
    elif serial < 61:
        base, serial = dt.datetime(1900, 2, 28), serial - 60
    else:
        base = _EPOCH_1900
    value = base + dt.timedelta(milliseconds=round(serial * 86_400_000))
    return value.date() if value.time() == dt.time(0) else value


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _normpath(part: str) -> str:
    out: list[str] = []
    for seg in part.split("/"):
        if seg == "..":
            if out:
                out.pop()
        elif seg not in ("", "."):
            out.append(seg)
    return "/".join(out)
