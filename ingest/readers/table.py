"""Tables without geometry: CSV and XLSX point tables, line tables (survey table form)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd
from openpyxl import load_workbook

from cim.errors import UnreadableInput
from ingest.encoding import text_file_encoding
from ingest.readers import SourceLayer


def read_csv(path: Path, rel: str) -> SourceLayer:
    """A CSV table, all columns as text (types are coerced per target column later)."""
    enc = text_file_encoding(path)
    try:
        with path.open(encoding=enc.encoding, errors="strict", newline="") as fh:
            sample = fh.read(64 << 10)
        try:
            sep = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
        except csv.Error:
            sep = ","
        frame = pd.read_csv(path, encoding=enc.encoding, sep=sep, dtype=str, keep_default_na=False,
                            skipinitialspace=True)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise UnreadableInput(f"无法读取 CSV 文件 {path.name}：{exc}", f"cannot read CSV file {path.name}: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    zh, en = enc.describe()
    layer = SourceLayer(path.stem, rel, frame, None, "none", None, enc.encoding)
    layer.notes.append(("encoding", f"{rel}：{zh}", f"{rel}: {en}"))
    return layer


def _sheet_frame(rows: list[tuple]) -> pd.DataFrame | None:
    """DataFrame from worksheet rows: the first row with two or more filled cells is the header."""
    start = next((i for i, r in enumerate(rows) if sum(v not in (None, "") for v in r) >= 2), None)
    if start is None:
        return None
    header = [str(v).strip() if v not in (None, "") else f"col{j + 1}" for j, v in enumerate(rows[start])]
    body = [r for r in rows[start + 1:] if any(v not in (None, "") for v in r)]
    frame = pd.DataFrame(body, columns=header, dtype=object) if body else pd.DataFrame(columns=header)
    return frame


def read_xlsx(path: Path, rel: str) -> list[SourceLayer]:
    """Every non-empty sheet of a workbook; the sheet name is the layer name."""
    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile/KeyError/InvalidFileException
        raise UnreadableInput(f"无法读取 Excel 文件 {path.name}", f"cannot read Excel file {path.name}") from exc
    out = []
    try:
        for ws in wb.worksheets:
            frame = _sheet_frame(list(ws.iter_rows(values_only=True)))
            if frame is None or frame.empty:
                continue
            generic = re.fullmatch(r"(sheet|工作表)\s*\d*", ws.title.strip(), flags=re.IGNORECASE)
            name = path.stem if generic else ws.title
            out.append(SourceLayer(name, f"{rel}:{ws.title}", frame, None, "none", None, "UTF-8"))
    finally:
        wb.close()
    return out
