"""The GeoPackage reader (:mod:`ingest.readers.gpkg`, SQLite through ADBC, no GDAL) against GDAL's
own reading of the same files (pyogrio's Arrow stream, the reader it replaces): every field type
GDAL writes, empty values, a text column empty for a whole first chunk, Z points, polygons with
holes, multi-lines, missing geometries, attribute tables, CRS by EPSG code and by WKT only; the
geometry headers GDAL does not write (big-endian, 48- and 64-byte envelopes); chunked reads; and
its refusals."""

from __future__ import annotations

import datetime as dt
import sqlite3
import struct
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pyogrio.raw
import pytest
import shapely

from cim.errors import UnreadableInput
from ingest.readers.gpkg import read_gpkg
from ingest.readers.vector import _crs_of, arrow_frame

N = 23


def _write(path: Path) -> Path:
    i = np.arange(N)
    pts = gpd.GeoDataFrame({
        "物探点号": [f"JS{k}" for k in i],
        "i16": (i % 7).astype(np.int16), "i32": (i * 1000).astype(np.int32), "i64": i.astype(np.int64) * 2**33,
        "f32": (i / 4).astype(np.float32), "地面高程": np.where(i % 5 == 0, np.nan, 45.0 + i / 8),
        "ok": i % 3 == 0,
        "备注": [None] * 10 + [f"第{k}号 ' \" 引号" for k in range(N - 10)],        # empty for the first chunks
        "when": [dt.datetime(2020, 1, 2, 3, 4, 5) + dt.timedelta(days=int(k)) if k % 4 else None for k in i],
        "n": pd.array([int(k) if k % 2 else None for k in i], dtype="Int64"),
    }, geometry=[shapely.Point(560000 + k, 3205000 + k, 40 + k) if k % 6 else None for k in i], crs="EPSG:4546")
    pts.to_file(path, layer="JSPOINT", engine="pyogrio")
    lines = gpd.GeoDataFrame({"管径": [200, 300, 400]}, geometry=[
        shapely.LineString([(0, 0), (1, 1), (2, 0)]),
        shapely.MultiLineString([[(0, 0), (1, 0)], [(2, 2), (3, 3)]]),
        shapely.LineString([(5, 5), (6, 6)])], crs="EPSG:4546")
    lines.to_file(path, layer="JSLINE", engine="pyogrio", geometry_type="MultiLineString")
    polys = gpd.GeoDataFrame({"名称": ["有洞", "无洞"]}, geometry=[
        shapely.Polygon([(0, 0), (10, 0), (10, 10), (0, 10)], [[(2, 2), (4, 2), (4, 4), (2, 4)]]),
        shapely.box(20, 20, 30, 30)],
        crs="+proj=tmerc +lat_0=0 +lon_0=111 +k=1 +x_0=500000 +y_0=0 +ellps=GRS80 +units=m +no_defs")
    polys.to_file(path, layer="房屋", engine="pyogrio")
    pyogrio.write_dataframe(pd.DataFrame({"编号": ["a", None], "数量": [1, 2]}), path, layer="属性表")
    return path


def _gdal(path: Path, layer: str) -> tuple[pd.DataFrame, np.ndarray | None, object]:
    with pyogrio.raw.open_arrow(path, layer=layer, use_pyarrow=True) as (meta, reader):
        batches = list(reader)
    frames = [arrow_frame(b, meta) for b in batches]
    frame = pd.concat([f for f, _ in frames], ignore_index=True)
    geoms = None if frames[0][1] is None else np.concatenate([g for _, g in frames])
    return frame, geoms, _crs_of(meta)


def _whole(layer):
    parts = [layer, *(layer.rest() if layer.rest else [])]
    frame = pd.concat([p.frame for p in parts], ignore_index=True)
    geoms = None if layer.geom is None else np.concatenate([p.geom for p in parts])
    return frame, geoms


@pytest.mark.parametrize("chunk", [None, 4, 10, 1000])
def test_every_table_reads_as_gdal_reads_it(tmp_path, chunk):
    path = _write(tmp_path / "d.gpkg")
    layers = list(read_gpkg(path, "d.gpkg", chunk))
    assert [(ly.name, ly.geometry_kind) for ly in layers] == [
        ("JSPOINT", "point"), ("JSLINE", "line"), ("房屋", "polygon"), ("属性表", "none")]
    for ly in layers:
        want_frame, want_geoms, want_crs = _gdal(path, ly.name)
        frame, geoms = _whole(ly)
        pd.testing.assert_frame_equal(frame, want_frame)
        if ly.name == "JSPOINT":
            assert frame["备注"].isna().sum() == 10 and frame["备注"].iloc[-1] == f"第{N - 11}号 ' \" 引号"
        assert ly.crs == want_crs
        assert ly.file == f"d.gpkg:{ly.name}"
        if want_geoms is None or ly.name == "属性表":
            assert ly.geom is None
            continue
        assert len(geoms) == len(want_geoms)
        assert (shapely.is_missing(geoms) == shapely.is_missing(want_geoms)).all()
        ok = ~shapely.is_missing(geoms)
        assert shapely.equals_exact(geoms[ok], want_geoms[ok], tolerance=0).all()
        assert (shapely.has_z(geoms[ok]) == shapely.has_z(want_geoms[ok])).all()
    assert layers[1].crs.to_epsg() == 4546 and layers[2].crs.to_epsg() is None   # the WKT of a CRS with no code


def test_chunks_have_the_size_asked_for(tmp_path):
    path = _write(tmp_path / "d.gpkg")
    first = next(iter(read_gpkg(path, "d.gpkg", 5)))
    sizes = [(first.offset, len(first.frame))] + [(c.offset, len(c.frame)) for c in first.rest()]
    assert sizes == [(0, 5), (5, 5), (10, 5), (15, 5), (20, 3)]


def test_tables_come_in_the_order_asked_for(tmp_path):
    path = _write(tmp_path / "d.gpkg")
    names = [ly.name for ly in read_gpkg(path, "d.gpkg", None, rank=lambda p: 0 if p.stem == "JSLINE" else 1)]
    assert names == ["JSLINE", "JSPOINT", "房屋", "属性表"]


def _update(path: Path, table: str, fid: int, blob: bytes) -> None:
    """Set one feature's geometry blob by hand (GDAL's R-tree triggers need its SQL functions:
    dropped first)."""
    with sqlite3.connect(path) as db:
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            db.execute(f'DROP TRIGGER "{name}"')
        db.execute(f'UPDATE "{table}" SET geom = ? WHERE fid = ?', (blob, fid))


def _header(flags: int, envelope: bytes, big: bool) -> bytes:
    return b"GP\x00" + bytes([flags]) + struct.pack(">i" if big else "<i", 4546) + envelope


@pytest.mark.parametrize(("flags", "envelope"), [
    (0x00, b""),                                  # big-endian header, no envelope
    (0x03, struct.pack("<4d", 0, 1, 0, 1)),       # x/y envelope (what GDAL writes for lines)
    (0x05, struct.pack("<6d", 0, 1, 0, 1, 0, 1)),  # x/y/z
    (0x07, struct.pack("<6d", 0, 1, 0, 1, 0, 1)),  # x/y/m
    (0x09, struct.pack("<8d", 0, 1, 0, 1, 0, 1, 0, 1)),   # x/y/z/m
    (0x11, b""),                                  # the empty-geometry flag
])
def test_every_header_form_of_the_standard(tmp_path, flags, envelope):
    path = _write(tmp_path / "d.gpkg")
    line = shapely.LineString([(1, 2), (3, 4)]) if flags != 0x11 else shapely.from_wkt("LINESTRING EMPTY")
    blob = _header(flags, envelope, big=not flags & 1) + shapely.to_wkb(line)
    _update(path, "JSLINE", 3, blob)
    layer = next(ly for ly in read_gpkg(path, "d.gpkg", None) if ly.name == "JSLINE")
    assert shapely.equals_exact(layer.geom[2], line, tolerance=0) or (line.is_empty and layer.geom[2].is_empty)


@pytest.mark.parametrize("blob", [
    shapely.to_wkb(shapely.Point(1, 2)),                                   # plain WKB, no GeoPackage header
    _header(0x21, b"", big=False) + shapely.to_wkb(shapely.Point(1, 2)),   # the extended (non-standard) form
    _header(0x01, b"", big=False) + b"\x01\x02",                           # a truncated WKB
])
def test_geometries_that_are_not_standard_geopackage_binary_are_refused(tmp_path, blob):
    path = _write(tmp_path / "d.gpkg")
    _update(path, "JSPOINT", 2, blob)
    with pytest.raises(UnreadableInput) as err:
        list(read_gpkg(path, "d.gpkg", None))
    assert "JSPOINT" in err.value.en and "GeoPackage" in err.value.zh


def test_a_later_chunk_with_a_bad_geometry_is_refused(tmp_path):
    path = _write(tmp_path / "d.gpkg")
    _update(path, "JSPOINT", 20, b"\x00\x01")
    first = next(iter(read_gpkg(path, "d.gpkg", 5)))
    with pytest.raises(UnreadableInput):
        list(first.rest())


def test_files_that_are_not_geopackages_are_refused(tmp_path):
    plain = tmp_path / "plain.gpkg"
    with sqlite3.connect(plain) as db:
        db.execute("CREATE TABLE t (a INTEGER)")
    with pytest.raises(UnreadableInput) as err:
        list(read_gpkg(plain, "plain.gpkg", None))
    assert "plain.gpkg" in err.value.zh and "GeoPackage" in err.value.en
    good = _write(tmp_path / "d.gpkg").read_bytes()
    cut = tmp_path / "cut.gpkg"
    cut.write_bytes(good[: len(good) // 3])
    with pytest.raises(UnreadableInput):
        list(read_gpkg(cut, "cut.gpkg", None))
    text = tmp_path / "text.gpkg"
    text.write_text("not a database")
    with pytest.raises(UnreadableInput):
        list(read_gpkg(text, "text.gpkg", None))


def test_a_path_with_characters_a_uri_escapes(tmp_path):
    folder = tmp_path / "成果 #1 ?a=b %20"
    folder.mkdir()
    path = _write(folder / "管线 数据.gpkg")
    assert [ly.name for ly in read_gpkg(path, "x.gpkg", None)][:1] == ["JSPOINT"]


def test_a_crs_without_a_code(tmp_path):
    """A spatial reference row with no EPSG code: its WKT is read; the standard's placeholder
    ``undefined`` is no CRS; WKT that cannot be understood is a CRS error, not a crash."""
    from cim.errors import CrsError

    path = _write(tmp_path / "d.gpkg")
    with sqlite3.connect(path) as db:
        srs = db.execute("SELECT srs_id FROM gpkg_geometry_columns WHERE table_name = '房屋'").fetchone()[0]
        db.execute("UPDATE gpkg_spatial_ref_sys SET definition = 'undefined' WHERE srs_id = ?", (srs,))
    layer = next(ly for ly in read_gpkg(path, "d.gpkg", None) if ly.name == "房屋")
    assert layer.crs is None and layer.geometry_kind == "polygon"
    with sqlite3.connect(path) as db:
        db.execute("UPDATE gpkg_spatial_ref_sys SET definition = 'PROJCS[broken' WHERE srs_id = ?", (srs,))
    with pytest.raises(CrsError):
        list(read_gpkg(path, "d.gpkg", None))
