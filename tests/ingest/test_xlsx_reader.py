"""The streaming workbook reader (:mod:`ingest.readers.xlsx`) on a workbook written by hand to
hold every kind of cell (shared and inline strings, rich text, entities, booleans, errors, formula
results, dates, times, durations, Excel's 1900 leap day), with and without a namespace prefix, in
another attribute order, and in blocks of a few bytes; checked against known values and against
calamine (a reader that loads the whole sheet) where it is installed; and its refusals."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import pytest

from cim.errors import UnreadableInput
from ingest.readers import xlsx
from ingest.readers.xlsx import Workbook

EXPECTED = [
    ["编号", "日期", "布尔", "时长", "备注"],
    ["JS1", dt.datetime(1998, 7, 24, 12, 0), True, dt.timedelta(days=1, hours=6), "富 文本 & <x>"],
    ["a&x", dt.date(1998, 7, 24), "", dt.time(18, 0)],
    [-12.5, "", 0.001, False, "  两端空格  "],
    ["a'b\"c", "", 44000.0, dt.date(1900, 3, 1), dt.date(1900, 2, 28)],
    ["直线点\r换行", 3205000.0],
]


def _craft(path: Path, prefix: str = "", order_ts: bool = False) -> Path:
    P = prefix + ":" if prefix else ""
    ns = 'xmlns' + (":" + prefix if prefix else "") + '="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    def c(tag): return P + tag
    sheet1 = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><{c("worksheet")} {ns}>'
              f'<{c("dimension")} ref="B2:F9"/><{c("cols")}><{c("col")} min="1" max="3" width="9"/></{c("cols")}>'
              f'<{c("sheetData")}>'
              f'<{c("row")} r="2"><{c("c")} r="B2" t="s"><{c("v")}>0</{c("v")}></{c("c")}><{c("c")} r="C2" t="s"><{c("v")}>1</{c("v")}></{c("c")}>'
              f'<{c("c")} r="D2" t="s"><{c("v")}>2</{c("v")}></{c("c")}><{c("c")} r="E2" t="s"><{c("v")}>3</{c("v")}></{c("c")}><{c("c")} r="F2" t="inlineStr"><{c("is")}><{c("t")}>备注</{c("t")}></{c("is")}></{c("c")}></{c("row")}>'
              f'<{c("row")} r="3"><{c("c")} r="B3" t="s"><{c("v")}>4</{c("v")}></{c("c")}><{c("c")} r="C3" s="1"><{c("v")}>36000.5</{c("v")}></{c("c")}>'
              f'<{c("c")} r="D3" t="b"><{c("v")}>1</{c("v")}></{c("c")}><{c("c")} r="E3" s="2"><{c("v")}>1.25</{c("v")}></{c("c")}>'
              f'<{c("c")} r="F3" t="inlineStr"><{c("is")}><{c("r")}><{c("rPr")}><{c("b")}/></{c("rPr")}><{c("t")}>富</{c("t")}></{c("r")}><{c("r")}><{c("t")} xml:space="preserve"> 文本 &amp; &lt;x&gt;</{c("t")}></{c("r")}></{c("is")}></{c("c")}></{c("row")}>'
              f'<{c("row")} r="4"><{c("c")} r="B4" t="str"><{c("f")}>A1&amp;"x"</{c("f")}><{c("v")}>a&amp;x</{c("v")}></{c("c")}><{c("c")} r="C4" s="3"><{c("v")}>36000</{c("v")}></{c("c")}>'
              f'<{c("c")} r="D4" t="e"><{c("v")}>#DIV/0!</{c("v")}></{c("c")}><{c("c")} r="E4" s="4"><{c("v")}>0.75</{c("v")}></{c("c")}><{c("c")} r="F4" t="s"><{c("v")}>5</{c("v")}></{c("c")}></{c("row")}>'
              f'<{c("row")} r="6" spans="2:6"><{c("c")} r="B6"><{c("v")}>-12.5</{c("v")}></{c("c")}><{c("c")} r="C6" s="1"/><{c("c")} r="D6" t="n"><{c("v")}>1E-3</{c("v")}></{c("c")}>'
              f'<{c("c")} r="E6" t="b"><{c("v")}>0</{c("v")}></{c("c")}><{c("c")} r="F6" t="inlineStr"><{c("is")}><{c("t")} xml:space="preserve">  两端空格  </{c("t")}></{c("is")}></{c("c")}></{c("row")}>'
              f'<{c("row")} r="7"><{c("c")} r="B7" t="s"><{c("v")}>6</{c("v")}></{c("c")}><{c("c")} r="C7"><{c("f")}>1/0</{c("f")}><{c("v")}/></{c("c")}><{c("c")} r="D7" s="5"><{c("v")}>44000</{c("v")}></{c("c")}>'
              f'<{c("c")} r="E7" s="6"><{c("v")}>61</{c("v")}></{c("c")}><{c("c")} r="F7" s="6"><{c("v")}>59</{c("v")}></{c("c")}></{c("row")}>'
              f'<{c("row")} r="9"><{c("c")} r="B9" t="inlineStr"><{c("is")}><{c("t")}>&#30452;&#32447;&#28857;_x000D_换行</{c("t")}></{c("is")}></{c("c")}><{c("c")} r="C9"><{c("v")}>3205000</{c("v")}></{c("c")}></{c("row")}>'
              f'</{c("sheetData")}><{c("mergeCells")} count="1"><{c("mergeCell")} ref="A1:B1"/></{c("mergeCells")}></{c("worksheet")}>')
    if order_ts:   # attributes in another order, cells and rows without references
        sheet1 = sheet1.replace(f'<{c("c")} r="C3" s="1">', f'<{c("c")} s="1" r="C3">').replace(
            f'<{c("c")} r="B4" t="str">', f'<{c("c")} t="str" r="B4">').replace(
            f'<{c("row")} r="9"><{c("c")} r="B9" t="inlineStr">', f'<{c("row")}><{c("c")} t="inlineStr" r="B9">').replace(
            f'<{c("c")} r="C9">', f'<{c("c")}>')
    sst = (f'<{c("sst")} {ns} count="7" uniqueCount="7">'
           f'<{c("si")}><{c("t")}>编号</{c("t")}></{c("si")}><{c("si")}><{c("t")}>日期</{c("t")}></{c("si")}>'
           f'<{c("si")}><{c("t")}>布尔</{c("t")}></{c("si")}><{c("si")}><{c("t")}>时长</{c("t")}></{c("si")}>'
           f'<{c("si")}><{c("r")}><{c("t")}>JS</{c("t")}></{c("r")}><{c("r")}><{c("t")}>1</{c("t")}></{c("r")}><{c("rPh")} sb="0" eb="1"><{c("t")}>ジェイ</{c("t")}></{c("rPh")}></{c("si")}>'
           f'<{c("si")}/><{c("si")}><{c("t")}>a&apos;b&quot;c</{c("t")}></{c("si")}></{c("sst")}>')
    styles = (f'<{c("styleSheet")} {ns}><{c("numFmts")} count="2"><{c("numFmt")} numFmtId="164" formatCode="yyyy&quot;年&quot;m&quot;月&quot;d&quot;日&quot;"/>'
              f'<{c("numFmt")} numFmtId="165" formatCode="[h]:mm"/><{c("numFmt")} numFmtId="166" formatCode="0.00&quot;m&quot;"/></{c("numFmts")}>'
              f'<{c("cellXfs")} count="7"><{c("xf")} numFmtId="0"/><{c("xf")} numFmtId="22"/><{c("xf")} numFmtId="165"/>'
              f'<{c("xf")} numFmtId="164"/><{c("xf")} numFmtId="20"/><{c("xf")} numFmtId="166"/><{c("xf")} numFmtId="14"/></{c("cellXfs")}></{c("styleSheet")}>')
    book = (f'<{c("workbook")} {ns} xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
            f'<{c("workbookPr")}/><{c("sheets")}><{c("sheet")} name="管线点" sheetId="1" r:id="rId1"/>'
            f'<{c("sheet")} name="空表" sheetId="2" r:id="rId2"/></{c("sheets")}></{c("workbook")}>')
    rels = ('<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>'
            '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="/xl/worksheets/sheet2.xml"/>'
            '<Relationship Id="rId3" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/>'
            '<Relationship Id="rId4" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>'
            '</Relationships>')
    ct = ('<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
          '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
          '<Default Extension="xml" ContentType="application/xml"/>'
          '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
          '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
          '<Override PartName="/xl/worksheets/sheet2.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
          '<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
          '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
          '</Types>')
    root_rels = ('<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                 '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>')
    sheet2 = f'<{c("worksheet")} {ns}><{c("sheetData")}/></{c("worksheet")}>'
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in [("[Content_Types].xml", ct), ("_rels/.rels", root_rels), ("xl/workbook.xml", book),
                           ("xl/_rels/workbook.xml.rels", rels), ("xl/worksheets/sheet1.xml", sheet1),
                           ("xl/worksheets/sheet2.xml", sheet2), ("xl/styles.xml", styles), ("xl/sharedStrings.xml", sst)]:
            z.writestr(name, text)
    return path


def _rows(path: Path) -> dict[str, list[list]]:
    with Workbook(path) as wb:
        return {s.name: _filled(wb.rows(s)) for s in wb.sheets}


def _filled(rows) -> list[list]:
    """Rows with a value, without their empty trailing cells (a block's rows are as wide as its
    widest; a whole-sheet reader's as wide as the sheet)."""
    out = []
    for r in rows:
        r = list(r)
        while r and r[-1] == "":
            r.pop()
        if r:
            out.append(r)
    return out


@pytest.mark.parametrize("prefix", ["", "x"])
@pytest.mark.parametrize("order_ts", [False, True])
@pytest.mark.parametrize("block", [xlsx.BLOCK, 64])
def test_every_kind_of_cell(tmp_path, monkeypatch, prefix, order_ts, block):
    monkeypatch.setattr(xlsx, "BLOCK", block)
    sheets = _rows(_craft(tmp_path / "c.xlsx", prefix, order_ts))
    assert list(sheets) == ["管线点", "空表"]
    assert sheets["管线点"] == EXPECTED
    assert sheets["空表"] == []


def test_same_values_as_a_whole_sheet_reader(tmp_path):
    calamine = pytest.importorskip("python_calamine")
    path = _craft(tmp_path / "c.xlsx", "x")
    book = calamine.CalamineWorkbook.from_path(str(path))
    theirs = {name: _filled(book.get_sheet_by_name(name).iter_rows()) for name in book.sheet_names}
    assert _rows(path) == theirs


@pytest.mark.parametrize("block", [xlsx.BLOCK, 64])      # whole sheet by cell; a row a block, by RE2
def test_a_stray_value_far_right_makes_one_long_row(tmp_path, monkeypatch, block):
    monkeypatch.setattr(xlsx, "_GRID_CELLS", 20)
    monkeypatch.setattr(xlsx, "BLOCK", block)
    path = _rewrite(_craft(tmp_path / "c.xlsx"), "xl/worksheets/sheet1.xml",
                    lambda s: s.replace('<row r="9">', '<row r="8"><c r="XFD8" t="inlineStr"><is><t>远</t></is></c>'
                                                       '</row><row r="9">'))
    rows = _rows(path)["管线点"]
    assert [len(r) for r in rows] == [5, 5, 4, 5, 5, 16383, 2]     # from column B on
    assert rows[5][-1] == "远" and rows[6] == ["直线点\r换行", 3205000.0]


def test_rows_start_at_the_dimension_first_column(tmp_path):
    path = _craft(tmp_path / "c.xlsx")
    with Workbook(path) as wb:
        first = next(wb.rows(wb.sheets[0]))
    assert first[0] == "编号"                     # column B, the dimension's first, comes first


def _rewrite(path: Path, part: str, edit) -> Path:
    out = path.with_name("edited.xlsx")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, edit(data.decode()) if info.filename == part else data)
    return out


@pytest.mark.parametrize("case", ["not a zip", "no workbook", "missing shared string", "cell left of dimension",
                                  "damaged sheet data"])
def test_broken_workbooks_are_refused(tmp_path, case):
    path = _craft(tmp_path / "c.xlsx")
    if case == "not a zip":
        path.write_bytes(b"PK\x03\x04 truncated")
    elif case == "no workbook":
        path = _rewrite(path, "xl/workbook.xml", lambda s: "<nope")
    elif case == "missing shared string":
        path = _rewrite(path, "xl/worksheets/sheet1.xml", lambda s: s.replace("<v>6</v>", "<v>60</v>"))
    elif case == "cell left of dimension":
        path = _rewrite(path, "xl/worksheets/sheet1.xml", lambda s: s.replace('r="B6"', 'r="A6"'))
    else:                                             # the sheet's deflate stream overwritten midway
        with zipfile.ZipFile(path) as z:
            info = z.getinfo("xl/worksheets/sheet1.xml")
        data = bytearray(path.read_bytes())
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        data[start + 40:start + 140] = bytes(range(100))
        path.write_bytes(bytes(data))
    with pytest.raises(UnreadableInput) as err:
        _rows(path)
    assert "Excel" in err.value.zh and "Excel" in err.value.en
