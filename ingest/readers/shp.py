"""Shapefile geometries read from the ``.shp`` and ``.shx`` bytes with numpy, without GDAL.

The format (ESRI Shapefile Technical Description, 1998) is a fixed header and one record per
feature, found through the index (``.shx``: offset and length of each record). A range of
records is read in one ``read`` of the bytes that hold it; the record headers, part and point
counts and coordinates are gathered for all its records at once (the doubles at any byte offset,
through eight views of the buffer shifted by 0-7 bytes), and shapely builds the geometries from
the coordinate arrays (``from_ragged_array``), as GDAL would give them:

- Point, PointZ, PointM → Point (with z for PointZ);
- MultiPoint(Z/M) → MultiPoint;
- PolyLine(Z/M) → LineString, or MultiLineString for a record of several parts;
- Polygon(Z/M) → Polygon, or for a record of several rings: its clockwise rings are outer rings,
  each counter-clockwise ring a hole of the outer ring that contains it (of the only outer ring,
  when there is one), and a record with several outer rings a MultiPolygon;
- a null shape → None.

Measures (M) are not read: no rule uses them. A MultiPatch file, which this reader does not
build, is left to GDAL (:func:`readable`, of the type :func:`file_type` reads). A record whose lengths do not fit the file is refused
as unreadable input.

Loading GDAL (libgdal and what it links) makes some 50 MB resident; a delivery of shapefiles
of points and lines, the usual pipeline survey, no longer loads it at all.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import shapely
from shapely import GeometryType

from cim.errors import UnreadableInput

_POINT, _LINE, _POLYGON, _MULTIPOINT = 1, 3, 5, 8
_NAMES = {_POINT: "Point", _LINE: "LineString", _POLYGON: "Polygon", _MULTIPOINT: "MultiPoint"}


def _base(shape_type: int) -> int | None:
    """The 2D shape type of a type code (PointZ 11 → Point 1, PolyLineM 23 → PolyLine 3), None
    for a null shape, a MultiPatch or an unknown code."""
    if shape_type == 0:
        return None
    base = shape_type % 10
    return base if base in _NAMES and shape_type in (base, base + 10, base + 20) else None


def file_type(shp: Path) -> int:
    """The shape type of the file's header."""
    with shp.open("rb") as fh:
        head = fh.read(36)
    return struct.unpack("<i", head[32:36])[0]


def readable(shape_type: int) -> bool:
    """Whether this reader builds a file of this shape type (every type but MultiPatch)."""
    return shape_type == 0 or _base(shape_type) is not None


def geometry_type(shape_type: int) -> str | None:
    """The OGR geometry type name of a file of this shape type (``Point``, ``LineString``,
    ``3D Polygon`` …), None for a file of null shapes."""
    base = _base(shape_type)
    if base is None:
        return None
    return ("3D " if 10 < shape_type < 20 else "") + _NAMES[base]


def count(shx: Path) -> int:
    """Number of records, from the index's length."""
    with shx.open("rb") as fh:
        head = fh.read(100)
    return (struct.unpack(">i", head[24:28])[0] * 2 - 100) // 8


class _Bytes:
    """A buffer read from the file, with gathers of little-endian numbers at any byte offsets:
    each read from the view of the buffer shifted by its offset modulo the number's size."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def _at(self, at: np.ndarray, dtype: str) -> np.ndarray:
        width = np.dtype(dtype).itemsize
        out = np.empty(len(at), dtype=dtype)
        shift = at % width
        for s in np.unique(shift):
            view = np.frombuffer(self.data, dtype=dtype, offset=int(s), count=(self.size - int(s)) // width)
            pick = shift == s
            out[pick] = view[(at[pick] - s) // width]
        return out

    def i32(self, at: np.ndarray) -> np.ndarray:
        return self._at(at, "<i4").astype(np.int64)

    def f64(self, at: np.ndarray) -> np.ndarray:
        return self._at(at, "<f8")


def _runs(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For runs of ``counts`` items one after the other: each item's run and its place in it."""
    owner = np.repeat(np.arange(len(counts)), counts)
    return owner, np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)


def read_shapes(shp: Path, shx: Path, start: int, stop: int) -> np.ndarray:
    """The geometries of records ``start:stop`` (None for null shapes), in the file's CRS."""
    n = stop - start
    if n <= 0:
        return np.empty(0, dtype=object)
    with shx.open("rb") as fh:
        fh.seek(100 + 8 * start)
        index = np.frombuffer(fh.read(8 * n), dtype=">i4").reshape(-1, 2).astype(np.int64) * 2
    if len(index) != n:
        raise _damaged(shx, "index shorter than its header says")
    offset, length = index[:, 0], index[:, 1]
    lo, hi = int(offset.min()), int((offset + 8 + length).max())
    if lo < 100 or hi > shp.stat().st_size or (length < 4).any():
        raise _damaged(shp, "records outside the file")
    with shp.open("rb") as fh:
        fh.seek(lo)
        buf = _Bytes(fh.read(hi - lo))
    if buf.size != hi - lo:
        raise _damaged(shp, "records outside the file")
    at = offset - lo + 8                       # each record's content
    types = buf.i32(at)
    out = np.full(n, None, dtype=object)
    for t in np.unique(types):
        rows = np.flatnonzero(types == t)
        base = _base(int(t))
        if base is None:
            if t == 0:
                continue
            raise _damaged(shp, f"shape type {int(t)} is not read")
        z = 10 < t < 20
        if base == _POINT:
            need = 20 if not z else 28
            _fits(shp, length[rows], need)
            cols = [buf.f64(at[rows] + 4), buf.f64(at[rows] + 12)] + ([buf.f64(at[rows] + 20)] if z else [])
            out[rows] = shapely.points(np.column_stack(cols))
        else:
            out[rows] = _parts(shp, buf, at[rows], length[rows], base, z)
    return out


def _fits(shp: Path, length: np.ndarray, need: np.ndarray | int) -> None:
    if (length < need).any():
        raise _damaged(shp, "a record shorter than its shape")


def _damaged(path: Path, why: str) -> UnreadableInput:
    return UnreadableInput(f"{path.name} 已损坏（{why}）", f"{path.name} is damaged: {why}", file=path.name,
                           reason=why)


def _parts(shp: Path, buf: _Bytes, at: np.ndarray, length: np.ndarray, base: int, z: bool) -> np.ndarray:
    """Multi-points, lines and polygons of records at content offsets ``at``."""
    _fits(shp, length, 40 if base == _MULTIPOINT else 44)
    if base == _MULTIPOINT:
        npts = buf.i32(at + 36)
        nparts = np.zeros(len(at), dtype=np.int64)
        first_point = at + 40
    else:
        nparts, npts = buf.i32(at + 36), buf.i32(at + 40)
        first_point = at + 44 + 4 * nparts
    if (npts < 0).any() or (nparts < 0).any():
        raise _damaged(shp, "negative counts")
    _fits(shp, length, (first_point - at) + 16 * npts + (16 + 8 * npts if z else 0))
    rec, k = _runs(npts)                                               # each point's record and place in it
    pat = first_point[rec] + 16 * k
    coords = [buf.f64(pat), buf.f64(pat + 8)]
    if z:
        coords.append(buf.f64((first_point + 16 * npts + 16)[rec] + 8 * k))
    xy = np.column_stack(coords)
    del rec, k, pat
    ends = np.r_[0, np.cumsum(npts)]
    if base == _MULTIPOINT:
        return shapely.from_ragged_array(GeometryType.MULTIPOINT, xy, (ends,))
    # part starts, as offsets into all points
    prec, pk = _runs(nparts)                                           # each part's record and place in it
    starts = buf.i32(at[prec] + 44 + 4 * pk)
    if ((starts < 0) | (starts >= npts[prec]) | ((pk == 0) & (starts != 0))).any():
        raise _damaged(shp, "part indexes outside their record")
    part_off = np.r_[ends[prec] + starts, len(xy)]
    if (np.diff(part_off) < 0).any():
        raise _damaged(shp, "parts out of order")
    geom_off = np.r_[0, np.cumsum(nparts)]
    if base == _LINE:
        lines = shapely.from_ragged_array(GeometryType.MULTILINESTRING, xy, (part_off, geom_off))
        single = nparts == 1
        lines[single] = shapely.get_geometry(lines[single], 0)
        lines[nparts == 0] = None
        return lines
    return _polygons(xy, part_off, geom_off, nparts)


def _polygons(xy: np.ndarray, part_off: np.ndarray, geom_off: np.ndarray, nparts: np.ndarray) -> np.ndarray:
    """Polygons from rings (records of one ring at once; records of several organised by
    orientation and containment)."""
    one = shapely.from_ragged_array(GeometryType.MULTIPOLYGON, xy, (part_off, np.arange(len(part_off)), geom_off))
    out = np.full(len(nparts), None, dtype=object)
    single = nparts == 1
    out[single] = shapely.get_geometry(shapely.get_geometry(one[single], 0), 0)
    for r in np.flatnonzero(nparts > 1):
        rings = [shapely.get_exterior_ring(p) for p in shapely.get_parts(one[r])]
        out[r] = _organised(rings)
    return out


def _organised(rings: list) -> object:
    """One record's rings as a Polygon or MultiPolygon: clockwise rings outer, each other ring a
    hole of the first outer ring that contains it (a ring no outer ring contains is an outer ring)."""
    ccw = shapely.is_ccw(np.array(rings, dtype=object))
    outers = [r for r, c in zip(rings, ccw, strict=True) if not c]
    holes: list[list] = [[] for _ in outers]
    for r, c in zip(rings, ccw, strict=True):
        if not c:
            continue
        if len(outers) == 1:
            holes[0].append(r)
            continue
        probe = shapely.Point(shapely.get_coordinates(r)[0])
        home = next((i for i, o in enumerate(outers) if shapely.Polygon(o).contains(probe)), None)
        if home is None:
            outers.append(r)
            holes.append([])
        else:
            holes[home].append(r)
    polys = [shapely.Polygon(o, h) for o, h in zip(outers, holes, strict=True)]
    return polys[0] if len(polys) == 1 else shapely.MultiPolygon(polys)
