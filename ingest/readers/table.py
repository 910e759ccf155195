"""Tables without geometry: CSV and XLSX point tables, line tables (survey table form)."""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from cim.errors import UnreadableInput
from ingest.readers import SourceLayer, later_chunks
from ingest.readers.encoding import text_file_encoding
from ingest.readers.xlsx import Workbook


def read_csv(path: Path, rel: str, chunk_rows: int | None = None) -> SourceLayer:
    """A CSV table, all columns as text (types are coerced per target column later). A table of
    more than ``chunk_rows`` rows is read in chunks: the layer holds the first, and its ``rest``
    yields the others, each parsed when its turn comes."""
    enc = text_file_encoding(path)
    try:
        with path.open(encoding=enc.encoding, errors="strict", newline="") as fh:
            sample = fh.read(64 << 10)
        try:
            sep = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
        except csv.Error:
            sep = ","
        reader = pd.read_csv(path, encoding=enc.encoding, sep=sep, dtype=str, keep_default_na=False,
                             skipinitialspace=True, chunksize=chunk_rows or None, iterator=True)
        frame = _csv_chunk(reader, path)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise UnreadableInput(f"无法读取 CSV 文件 {path.name}：{exc}", f"cannot read CSV file {path.name}: {exc}") from exc
    zh, en = enc.describe()
    layer = SourceLayer(path.stem, rel, frame, None, "none", None, enc.encoding)
    layer.notes.append(("encoding", f"{rel}：{zh}", f"{rel}: {en}"))
    if chunk_rows and len(frame) == chunk_rows:
        layer.rest = later_chunks(layer, _csv_chunks(reader, frame.columns))
    else:
        reader.close()
    return layer


def _csv_chunk(reader, path: Path) -> pd.DataFrame:
    """The next chunk of a CSV reader (all rows without chunks), its column names stripped."""
    try:
        frame = reader.get_chunk() if reader.chunksize else reader.read()
    except StopIteration:
        frame = pd.DataFrame(columns=reader.orig_names or [], dtype=str)
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _csv_chunks(reader, columns: pd.Index) -> Iterator[tuple[pd.DataFrame, None]]:
    """The remaining chunks of a CSV reader, under the first chunk's ``columns``; the file is
    closed at the end."""
    with reader:
        for part in reader:
            part.columns = columns
            yield part, None


_HEADER_ROWS = 50    # rows searched for a sheet's header (title rows may come first)


def _header(rows: Iterator[list]) -> list[str] | None:
    """The header of a sheet: the first of its first rows with two or more filled cells (title
    rows above it are skipped; the rows read are consumed); None without one."""
    for _, r in zip(range(_HEADER_ROWS), rows, strict=False):
        if sum(v not in (None, "") for v in r) >= 2:
            return [str(v).strip() if v not in (None, "") else f"col{j + 1}" for j, v in enumerate(r)]
    return None


def _body_frame(body: list[list], header: list[str]) -> pd.DataFrame:
    """DataFrame of sheet rows under ``header``; fully empty rows are dropped."""
    if not body:
        return pd.DataFrame(columns=header)
    width = len(header)    # rows come as wide as their block of the sheet, or as their last value
    frame = pd.DataFrame([r[:width] if len(r) >= width else r + [""] * (width - len(r)) for r in body],
                         dtype=object)
    frame = frame.reindex(columns=range(width))
    frame.columns = header
    frame = frame.replace("", None)
    return frame.dropna(how="all").reset_index(drop=True)


def _is_generic(title: str) -> bool:
    return re.fullmatch(r"(sheet|工作表)\s*\d*", title.strip(), flags=re.IGNORECASE) is not None


def read_xlsx(path: Path, rel: str, chunk_rows: int | None = None) -> Iterator[SourceLayer]:
    """Every non-empty sheet of a workbook, each read when the one before it is done with; the
    sheet name is the layer name (a generic name such as Sheet1 gives way to the file name). A
    sheet is streamed (:mod:`ingest.readers.xlsx`): one of more than ``chunk_rows`` rows becomes
    frames a chunk at a time, the layer holding the first and its ``rest`` yielding the others as
    iterated, each read from the workbook when its turn comes."""
    for title, rows in _sheets(path):
        header = _header(rows)
        first = _next_chunk(rows, header, chunk_rows) if header is not None else None
        if header is None or first is None or first.empty:
            continue
        name = path.stem if _is_generic(title) else title
        layer = SourceLayer(name, f"{rel}:{title}", first, None, "none", None, "UTF-8")
        if chunk_rows and len(first) == chunk_rows:
            layer.rest = later_chunks(layer, _sheet_chunks(rows, header, chunk_rows))
        del first, rows                            # the next sheet is not read beside this one
        yield layer


def _next_chunk(rows: Iterator[list], header: list[str], size: int | None) -> pd.DataFrame:
    """The next ``size`` non-empty rows (all without ``size``) as a frame."""
    if not size:
        return _body_frame(list(rows), header)
    parts, n = [], 0
    while n < size:
        body = list(itertools.islice(rows, size - n))
        if not body:
            break
        part = _body_frame(body, header)
        parts.append(part)
        n += len(part)
    if not parts:
        return pd.DataFrame(columns=header)
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def _sheet_chunks(rows: Iterator[list], header: list[str], size: int) -> Iterator[tuple[pd.DataFrame, None]]:
    """The remaining rows of a sheet as frames of ``size`` non-empty rows."""
    while not (part := _next_chunk(rows, header, size)).empty:
        yield part, None


def _sheets(path: Path) -> Iterator[tuple[str, Iterator[list]]]:
    """Each sheet's name and rows, streamed from the workbook when its turn comes."""
    with Workbook(path) as wb:
        for sheet in wb.sheets:
            yield sheet.name, wb.rows(sheet)
