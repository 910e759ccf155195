"""Tables without geometry: CSV and XLSX point tables, line tables (survey table form)."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

try:  # calamine (Rust) reads workbooks about ten times faster than openpyxl
    from python_calamine import CalamineWorkbook
except ImportError:  # pragma: no cover - optional speed-up
    CalamineWorkbook = None  # type: ignore[assignment,misc]  # the optional import's fallback

from cim.errors import UnreadableInput
from ingest.readers import SourceLayer
from ingest.readers.encoding import text_file_encoding


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
        layer.rest = _csv_rest(reader, path, rel, frame.columns, enc.encoding, chunk_rows)
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


def _csv_rest(reader, path: Path, rel: str, columns: pd.Index, encoding: str, size: int
              ) -> Callable[[], Iterator[SourceLayer]]:
    """A CSV layer's ``rest``: the chunks after the first, parsed one at a time as iterated (a
    chunk handed over is not held here); the file is closed at the end or when abandoned."""
    def rest() -> Iterator[SourceLayer]:
        offset = size
        try:
            while True:
                try:
                    part = reader.get_chunk()
                except StopIteration:
                    return
                except (UnicodeDecodeError, pd.errors.ParserError) as exc:
                    raise UnreadableInput(f"无法读取 CSV 文件 {path.name}：{exc}",
                                          f"cannot read CSV file {path.name}: {exc}", file=rel) from exc
                part.columns = columns
                yield SourceLayer(path.stem, rel, part, None, "none", None, encoding, offset=offset)
                offset += len(part)
                del part
        finally:
            reader.close()
    return rest


def _sheet_frame(rows: list[list]) -> pd.DataFrame | None:
    """DataFrame from worksheet rows: the first row with two or more filled cells is the header
    (title rows above it are skipped); fully empty rows are dropped."""
    start = next((i for i, r in enumerate(rows[:50]) if sum(v not in (None, "") for v in r) >= 2), None)
    if start is None:
        return None
    header = [str(v).strip() if v not in (None, "") else f"col{j + 1}" for j, v in enumerate(rows[start])]
    body = rows[start + 1:]
    if not body:
        return pd.DataFrame(columns=header)
    width = len(header)
    frame = pd.DataFrame([r[:width] for r in body], dtype=object)
    frame = frame.reindex(columns=range(width))
    frame.columns = header
    frame = frame.replace("", None)
    return frame.dropna(how="all").reset_index(drop=True)


def _is_generic(title: str) -> bool:
    return re.fullmatch(r"(sheet|工作表)\s*\d*", title.strip(), flags=re.IGNORECASE) is not None


def read_xlsx(path: Path, rel: str) -> list[SourceLayer]:
    """Every non-empty sheet of a workbook; the sheet name is the layer name (a generic name such
    as Sheet1 gives way to the file name). Read with calamine (Rust), else openpyxl."""
    sheets = _calamine_sheets(path) if CalamineWorkbook is not None else _openpyxl_sheets(path)
    out = []
    for title, rows in sheets:
        frame = _sheet_frame(rows)
        if frame is None or frame.empty:
            continue
        name = path.stem if _is_generic(title) else title
        out.append(SourceLayer(name, f"{rel}:{title}", frame, None, "none", None, "UTF-8"))
    return out


def _calamine_sheets(path: Path) -> list[tuple[str, list[list]]]:
    try:
        wb = CalamineWorkbook.from_path(str(path))
        return [(name, wb.get_sheet_by_name(name).to_python()) for name in wb.sheet_names]
    except Exception as exc:  # calamine raises its own error types for broken workbooks
        raise UnreadableInput(f"无法读取 Excel 文件 {path.name}", f"cannot read Excel file {path.name}") from exc


def _openpyxl_sheets(path: Path) -> list[tuple[str, list[list]]]:
    from openpyxl import load_workbook  # only without calamine; imported here to keep start-up short

    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile/KeyError/InvalidFileException
        raise UnreadableInput(f"无法读取 Excel 文件 {path.name}", f"cannot read Excel file {path.name}") from exc
    try:
        return [(ws.title, [list(r) for r in ws.iter_rows(values_only=True)]) for ws in wb.worksheets]
    finally:
        wb.close()
