"""The shapefile geometry reader (:mod:`ingest.readers.shp`, numpy, no GDAL) against GDAL's
reading of the same files: points with and without z, multi-points, lines of one and of several
parts with and without z, polygons with holes and several outer rings, null shapes; any range
of records; the layer read through :func:`ingest.readers.vector.read_shapefile` in chunks; and
damaged files refused."""

from __future__ import annotations

import struct
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely

from cim.errors import UnreadableInput
from ingest.readers import shp as shapes
from ingest.readers.vector import read_shapefile

POLYGONS = [
    shapely.Polygon([(0, 0), (10, 0), (10, 10), (0, 10)], [[(2, 2), (4, 2), (4, 4), (2, 4)], [(6, 6), (8, 6), (8, 8)]]),
    shapely.box(20, 20, 30, 30),
    shapely.MultiPolygon([shapely.box(40, 40, 50, 50), shapely.Polygon(
        [(60, 60), (70, 60), (70, 70), (60, 70)], [[(62, 62), (64, 62), (64, 64)]])]),
    None,
    shapely.Polygon([(0, 0), (0, 5), (5, 5), (5, 0)]),           # given counter-clockwise
]
LINES = [
    shapely.LineString([(0, 0), (1, 1), (2, 0)]),
    shapely.MultiLineString([[(0, 0), (1, 0)], [(2, 2), (3, 3), (4, 3)]]),
    None,
    shapely.LineString([(5, 5), (6, 6)]),
]


def _write(folder: Path, name: str, geoms: list, **kw) -> Path:
    folder.mkdir(exist_ok=True)
    frame = gpd.GeoDataFrame({"编号": [f"{name}{i}" for i in range(len(geoms))]}, geometry=geoms, crs="EPSG:4546")
    frame.to_file(folder / f"{name}.shp", engine="pyogrio", encoding="GBK", **kw)
    return folder / f"{name}.shp"


def _cases(tmp: Path) -> dict[str, Path]:
    rng = np.random.default_rng(7)
    xy = rng.uniform(0, 1000, (257, 3))
    return {
        "points": _write(tmp, "points", [shapely.Point(x, y) if i % 9 else None for i, (x, y, _z) in enumerate(xy)]),
        "points_z": _write(tmp, "points_z", list(shapely.points(xy))),
        "multipoints": _write(tmp, "multipoints", [shapely.MultiPoint(xy[i:i + 3, :2]) for i in range(0, 30, 3)]),
        "lines": _write(tmp, "lines", LINES * 5, geometry_type="MultiLineString"),
        "lines_z": _write(tmp, "lines_z", [shapely.LineString(xy[i:i + 2 + i % 4]) for i in range(0, 120, 6)]),
        "polygons": _write(tmp, "polygons", POLYGONS * 3, geometry_type="MultiPolygon"),
    }


def _gdal(path: Path, start: int = 0, stop: int | None = None) -> np.ndarray:
    kw = {"skip_features": start, "max_features": stop - start} if stop is not None else {}
    _meta, _fids, wkb, _fields = pyogrio.raw.read(path, columns=[], **kw)
    return shapely.from_wkb(wkb)


def _same(ours: np.ndarray, gdal: np.ndarray) -> None:
    assert len(ours) == len(gdal)
    missing = shapely.is_missing(gdal) | shapely.is_empty(gdal)
    assert (shapely.is_missing(ours) == missing).all()
    ok = ~missing
    a, b = ours[ok], gdal[ok]
    assert (shapely.get_type_id(a) == shapely.get_type_id(b)).all()
    assert (shapely.has_z(a) == shapely.has_z(b)).all()
    assert shapely.equals(a, b).all()
    lines = shapely.get_type_id(a) < 3            # points and lines: the same coordinates in the same order
    assert shapely.equals_exact(shapely.force_3d(a[lines]), shapely.force_3d(b[lines]), tolerance=0).all()


def test_every_shape_type_reads_as_gdal_reads_it(tmp_path):
    for name, path in _cases(tmp_path).items():
        ours = shapes.read_shapes(path, path.with_suffix(".shx"), 0, shapes.count(path.with_suffix(".shx")))
        _same(ours, _gdal(path))
        assert shapes.readable(shapes.file_type(path)), name
    poly = shapes.read_shapes(tmp_path / "polygons.shp", tmp_path / "polygons.shx", 0, 5)
    assert [g.geom_type if g is not None else None for g in poly] == [
        "Polygon", "Polygon", "MultiPolygon", None, "Polygon"]
    assert len(poly[0].interiors) == 2 and len(poly[2].geoms[1].interiors) == 1
    assert shapes.geometry_type(shapes.file_type(tmp_path / "points_z.shp")) == "3D Point"
    assert shapes.geometry_type(shapes.file_type(tmp_path / "lines.shp")) == "LineString"


@pytest.mark.parametrize(("start", "stop"), [(0, 1), (3, 17), (100, 257), (256, 257), (5, 5)])
def test_any_range_of_records(tmp_path, start, stop):
    path = _cases(tmp_path)["points"]
    ours = shapes.read_shapes(path, path.with_suffix(".shx"), start, stop)
    if start == stop:                              # (GDAL reads every feature when asked for none)
        assert len(ours) == 0
        return
    _same(ours, _gdal(path, start, stop))


def test_a_layer_read_in_chunks(tmp_path):
    path = _cases(tmp_path)["lines_z"]
    layer = read_shapefile(path, "lines_z.shp", chunk_rows=6)
    parts = [layer, *layer.rest()]
    assert [len(p.geom) for p in parts] == [6, 6, 6, 2]
    assert layer.geometry_kind == "line" and layer.crs.to_epsg() == 4546
    _same(np.concatenate([p.geom for p in parts]), _gdal(path))
    assert np.concatenate([p.frame["编号"].to_numpy() for p in parts]).tolist() == [f"lines_z{i}" for i in range(20)]


def _corrupt(path: Path, at: int, data: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[at:at + len(data)] = data
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(("target", "at", "data"), [
    (".shx", 100 + 8 * 3, struct.pack(">ii", 10_000_000, 20)),       # a record beyond the end of the .shp
    (".shx", 100 + 8 * 3, struct.pack(">ii", 2, 20)),                # a record inside the file header
    (".shp", 100 + 8 + 36, struct.pack("<i", -4)),                   # a negative part count
    (".shp", 100 + 8 + 40, struct.pack("<i", 1_000_000)),            # more points than the record holds
    (".shp", 100 + 8 + 44, struct.pack("<i", 2)),                    # a first part that does not start at 0
    (".shp", 100 + 8, struct.pack("<i", 77)),                        # an unknown shape type
])
def test_damaged_files_are_refused(tmp_path, target, at, data):
    path = _cases(tmp_path)["lines"]
    _corrupt(path.with_suffix(target), at, data)
    with pytest.raises(UnreadableInput) as err:
        shapes.read_shapes(path, path.with_suffix(".shx"), 0, shapes.count(path.with_suffix(".shx")))
    assert "lines" in err.value.zh and "damaged" in err.value.en
