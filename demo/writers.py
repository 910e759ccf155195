"""Writers that reproduce how survey contractors hand files over, byte for byte deterministic.

Shapefiles: DBF in GBK with no ``.cpg`` and a language-driver byte (offset 29) claiming
Windows ANSI 1252 (0x57), the common state of county deliveries exported from Chinese desktop
GIS; ``.prj`` in ESRI WKT. Zips may carry GBK member names without the UTF-8 flag, as Windows
archivers write them. Every timestamp (DBF header date, zip entries, XLSX properties) is fixed so
that the same seed gives the same bytes and a re-ingest is recognised by its sha256.
"""

from __future__ import annotations

import hashlib
import tempfile
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import rasterio
from rasterio.transform import from_origin

SURVEY_DATE = (2026, 6, 30)
LANGUAGE_DRIVER_ANSI_1252 = 0x57
ZIP_LEVEL = 1                       # fast deflate: benchmark deliveries hold ~100 MB of DBF
_ZIP_TIME = (*SURVEY_DATE, 12, 0, 0)


class _GbkZipInfo(zipfile.ZipInfo):
    """A zip entry whose name is stored as GBK bytes without the UTF-8 flag (Windows archivers)."""

    def _encodeFilenameFlags(self):  # noqa: N802 - overrides zipfile's private hook
        return self.filename.encode("gbk"), self.flag_bits & ~0x800


def _zip_entry(name: str, gbk_names: bool) -> zipfile.ZipInfo:
    cls = _GbkZipInfo if gbk_names and not name.isascii() else zipfile.ZipInfo
    info = cls(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def _fixed_decimal(v: np.ndarray, dec: int) -> np.ndarray:
    """Numbers as decimal text with ``dec`` places, vectorised (numpy string ufuncs)."""
    scaled = np.round(np.abs(v) * 10**dec).astype(np.int64)
    text = (scaled // 10**dec).astype(str)
    if dec:
        text = np.strings.add(np.strings.add(text, "."), np.strings.zfill((scaled % 10**dec).astype(str), dec))
    return np.where((v < 0) & (scaled > 0), np.strings.add("-", text), text)


def _dbf_column(values: pd.Series) -> tuple[bytes, int, int, np.ndarray]:
    """(type, width, decimals, fixed-width cells) of one column, cells already encoded in GBK."""
    if values.dtype.kind in "iuf" and values.dtype != bool:
        v = values.to_numpy(dtype=float)
        ok = ~np.isnan(v)
        integral = bool(np.all(np.mod(v[ok], 1) == 0)) if ok.any() else True
        dec = 0 if integral else 3
        text = np.where(ok, _fixed_decimal(np.where(ok, v, 0), dec), "")
        width = max(1, int(np.strings.str_len(text).max()) if len(text) else 1)
        return b"N", width, dec, np.strings.rjust(text, width).astype(f"S{width}")
    # encode each distinct value once: most survey columns repeat a few code-list values
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    enc = [str(x).encode("gbk") for x in uniques] + [b""]
    width = min(254, max([1, *map(len, enc)]))
    table = np.array([e.ljust(width) for e in enc], dtype=f"S{width}")
    return b"C", width, 0, table[codes]         # NA → code -1 → the trailing blank entry


def write_dbf(path: Path, frame: pd.DataFrame) -> None:
    """A dBase III table in GBK with no code page declared honestly: byte 29 says ANSI 1252.

    Written with numpy (fixed-width records) rather than field by field through OGR, which
    keeps 100k-row layers to a fraction of a second.
    """
    cols = [(str(name), *_dbf_column(frame[name])) for name in frame.columns]
    n = len(frame)
    head_len = 32 + 32 * len(cols) + 1
    rec_len = 1 + sum(c[2] for c in cols)
    header = bytearray(32)
    header[0] = 0x03
    header[1:4] = bytes([SURVEY_DATE[0] - 1900, SURVEY_DATE[1], SURVEY_DATE[2]])
    header[4:8] = n.to_bytes(4, "little")
    header[8:10] = head_len.to_bytes(2, "little")
    header[10:12] = rec_len.to_bytes(2, "little")
    header[29] = LANGUAGE_DRIVER_ANSI_1252
    fields = bytearray()
    for name, typ, width, dec, _ in cols:
        d = bytearray(32)
        raw = name.encode("gbk")
        if len(raw) > 10:
            raise ValueError(f"DBF field name longer than 10 bytes: {name}")
        d[0:len(raw)] = raw
        d[11:12] = typ
        d[16], d[17] = width, dec
        fields += d
    rec = np.zeros(n, dtype=[("del", "S1")] + [(f"f{k}", f"S{c[2]}") for k, c in enumerate(cols)])
    rec["del"] = b" "
    for k, c in enumerate(cols):
        rec[f"f{k}"] = c[4]
    with open(path, "wb") as f:
        f.write(bytes(header) + bytes(fields) + b"\x0d")
        f.write(rec.tobytes())
        f.write(b"\x1a")


def write_shapefile_zip(path: Path, layers: list[tuple[str, gpd.GeoDataFrame]], *, gbk_names: bool = False) -> None:
    """Write each (layer name, frame) as a GBK shapefile set and zip them together.

    GDAL writes the geometry (.shp/.shx) and the ESRI .prj; the attribute table is ours.
    """
    with tempfile.TemporaryDirectory() as tmp:
        members = []
        for name, frame in layers:
            shp = Path(tmp) / f"{name}.shp"
            pyogrio.write_dataframe(frame[["geometry"]], shp, layer=name)
            Path(tmp, f"{name}.cpg").unlink(missing_ok=True)
            write_dbf(Path(tmp) / f"{name}.dbf", pd.DataFrame(frame.drop(columns="geometry")))
            members += [Path(tmp) / f"{name}.{ext}" for ext in ("shp", "shx", "dbf", "prj")]
        with zipfile.ZipFile(path, "w") as zf:
            for m in members:
                zf.writestr(_zip_entry(m.name, gbk_names), m.read_bytes(), compresslevel=ZIP_LEVEL)


_XLSX_PARTS = {
    "[Content_Types].xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '{sheets}'
        '<Override PartName="/docProps/core.xml" ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>'
        '</Types>'),
    "_rels/.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
        'Target="xl/workbook.xml"/>'
        '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties" '
        'Target="docProps/core.xml"/></Relationships>'),
}


def _cell_xml(ref: str, value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        number = repr(float(value)) if isinstance(value, (float, np.floating)) else str(int(value))
        return f'<c r="{ref}"><v>{number}</v></c>'
    return f'<c r="{ref}" t="inlineStr"><is><t>{escape(str(value))}</t></is></c>'


def _col_letters(n: int) -> str:
    out = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        out = chr(65 + r) + out
    return out


def write_xlsx(path: Path, sheets: list[tuple[str, list[str], list[list]]]) -> None:
    """A minimal Office Open XML workbook, one sheet per (name, header, rows), inline strings.

    Written directly as SpreadsheetML: deterministic bytes (fixed document dates) and fast for
    the 100k-row benchmark deliveries, where cell-by-cell writers dominate the run time.
    """
    n = len(sheets)
    overrides = "".join(f'<Override PartName="/xl/worksheets/sheet{k}.xml" '
                        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
                        for k in range(1, n + 1))
    stamp = "{:04d}-{:02d}-{:02d}T12:00:00Z".format(*SURVEY_DATE)
    parts = {
        "[Content_Types].xml": _XLSX_PARTS["[Content_Types].xml"].replace("{sheets}", overrides),
        "_rels/.rels": _XLSX_PARTS["_rels/.rels"],
        "docProps/core.xml": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<cp:coreProperties '
            'xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><dc:creator>演示镇管线探测项目部</dc:creator>'
            f'<dcterms:created xsi:type="dcterms:W3CDTF">{stamp}</dcterms:created>'
            f'<dcterms:modified xsi:type="dcterms:W3CDTF">{stamp}</dcterms:modified></cp:coreProperties>'),
        "xl/workbook.xml": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
            'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>'
            + "".join(f'<sheet name="{escape(name)}" sheetId="{k}" r:id="rId{k}"/>'
                      for k, (name, _, _) in enumerate(sheets, 1)) + "</sheets></workbook>"),
        "xl/_rels/workbook.xml.rels": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            + "".join(f'<Relationship Id="rId{k}" '
                      'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
                      f'Target="worksheets/sheet{k}.xml"/>' for k in range(1, n + 1)) + "</Relationships>"),
    }
    for k, (_, header, rows) in enumerate(sheets, 1):
        cols = [_col_letters(c) for c in range(len(header))]
        body = []
        for r, row in enumerate([header, *rows], 1):
            body.append(f'<row r="{r}">' + "".join(_cell_xml(f"{c}{r}", v) for c, v in zip(cols, row, strict=True))
                        + "</row>")
        parts[f"xl/worksheets/sheet{k}.xml"] = (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
            + "".join(body) + "</sheetData></worksheet>")
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in parts.items():
            zf.writestr(_zip_entry(name, False), text.encode("utf-8"), compresslevel=ZIP_LEVEL)


def write_dem(path: Path, ground, to_local, bounds: tuple[float, float, float, float], epsg: int,
              cell: float = 5.0, max_cells: int = 6_000_000) -> dict:
    """A float32 GeoTIFF DEM over ``bounds`` (world metres) sampled from ``ground(local x, y)``."""
    x0, y0, x1, y1 = bounds
    while ((x1 - x0) / cell) * ((y1 - y0) / cell) > max_cells:
        cell *= 2
    w, h = int(np.ceil((x1 - x0) / cell)), int(np.ceil((y1 - y0) / cell))
    cols = x0 + (np.arange(w) + 0.5) * cell
    z = np.empty((h, w), dtype=np.float32)
    for r0 in range(0, h, 512):
        rows = y1 - (np.arange(r0, min(h, r0 + 512)) + 0.5) * cell
        gx, gy = np.meshgrid(cols, rows)
        loc = to_local(np.c_[gx.ravel(), gy.ravel()])
        z[r0:r0 + len(rows)] = ground(loc[:, 0], loc[:, 1]).reshape(gx.shape)
    profile = {"driver": "GTiff", "width": w, "height": h, "count": 1, "dtype": "float32",
               "crs": f"EPSG:{epsg}", "transform": from_origin(x0, y1, cell, cell), "compress": "deflate",
               "predictor": 3, "tiled": True, "blockxsize": 256, "blockysize": 256, "nodata": -9999.0}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(z, 1)
        dst.update_tags(AREA_OR_POINT="Area", VERTICAL_DATUM="1985 国家高程基准")
    return {"width": w, "height": h, "cell_m": cell}


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
