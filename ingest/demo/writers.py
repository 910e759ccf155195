"""Writers that reproduce how survey contractors hand files over, byte for byte deterministic.

Shapefiles: DBF in GBK with no ``.cpg`` and a language-driver byte (offset 29) claiming
Windows ANSI 1252 (0x57), the common state of county deliveries exported from Chinese desktop
GIS; ``.prj`` in ESRI WKT. Zips may carry GBK member names without the UTF-8 flag, as Windows
archivers write them. Every timestamp (DBF header date, zip entries, XLSX properties) is fixed so
that the same seed gives the same bytes and a re-ingest is recognised by its sha256.
"""

from __future__ import annotations

import hashlib
import io
import re
import tempfile
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import rasterio
from openpyxl import Workbook
from rasterio.transform import from_origin

SURVEY_DATE = (2026, 6, 30)
LANGUAGE_DRIVER_ANSI_1252 = 0x57
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


def _dbf_column(values: pd.Series) -> tuple[bytes, int, int, np.ndarray]:
    """(type, width, decimals, fixed-width cells) of one column, cells already encoded in GBK."""
    if values.dtype.kind in "iuf" and values.dtype != bool:
        v = values.to_numpy(dtype=float)
        ok = ~np.isnan(v)
        integral = bool(np.all(np.mod(v[ok], 1) == 0)) if ok.any() else True
        dec = 0 if integral else 3
        text = np.where(ok, np.char.mod(f"%.{dec}f", np.where(ok, v, 0)), "")
        width = max(1, int(np.char.str_len(text).max()) if len(text) else 1)
        cells = np.char.rjust(text, width).astype(f"S{width}")
        return b"N", width, dec, cells
    missing = values.isna().to_numpy()
    enc = [b"" if m else str(x).encode("gbk") for x, m in zip(values.to_numpy(dtype=object), missing, strict=True)]
    width = min(254, max([1, *map(len, enc)]))
    return b"C", width, 0, np.array([e.ljust(width) for e in enc], dtype=f"S{width}")


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
                zf.writestr(_zip_entry(m.name, gbk_names), m.read_bytes())


def write_xlsx(path: Path, sheets: list[tuple[str, list[str], list[list]]]) -> None:
    """A workbook with one sheet per (name, header, rows), with fixed document timestamps."""
    wb = Workbook(write_only=True)
    for name, header, rows in sheets:
        ws = wb.create_sheet(name)
        ws.append(header)
        for r in rows:
            ws.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    _normalise_zip(buf.getvalue(), path)


def _normalise_zip(data: bytes, path: Path) -> None:
    """Rewrite an OOXML package with fixed entry times and fixed core-property dates."""
    stamp = "{:04d}-{:02d}-{:02d}T12:00:00Z".format(*SURVEY_DATE)
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            body = src.read(item.filename)
            if item.filename == "docProps/core.xml":
                body = re.sub(rb"(<dcterms:(created|modified)[^>]*>)[^<]*", lambda m: m.group(1) + stamp.encode(), body)
            dst.writestr(_zip_entry(item.filename, False), body)


def write_dem(path: Path, ground, to_local, bounds: tuple[float, float, float, float], epsg: int,
              cell: float = 5.0, max_cells: int = 16_000_000) -> dict:
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
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
