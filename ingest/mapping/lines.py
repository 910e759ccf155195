"""Pipe segments that need the point tables: lines built from their start and end points, lengths.

A survey line table often has no geometry: its rows name their ends by 起点点号 / 终点点号, and
the lines come from the point table (the same workbook, another sheet, another file). Such a
batch is complete only once every layer of the delivery is read; every other batch is complete
on its own (:func:`needs_point_lines`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import shapely

from ingest.keys import PointIndex
from ingest.mapping.geometry import metric_geometry
from ingest.model import Delivery, LayerBatch, Note, arrow_text


def needs_point_lines(batch: LayerBatch) -> bool:
    """A pipe-segment table without geometry: its lines come from the point tables."""
    return batch.target == "pipe_segment" and len(batch) > 0 and bool(batch.frame["geom"].isna().all())


def lines_from_points(delivery: Delivery, batches: Iterable[LayerBatch]) -> Iterator[LayerBatch]:
    """The ``batches``, those that need it given lines from their start and end points
    (vectorised), each yielded as soon as it has them: the points' lookup is built once, from
    the point batches in ``delivery.batches``, when the first batch needs it.

    Points are looked up by (network, 物探点号), else by 物探点号 alone; segments whose points
    are missing keep an empty geometry (rules Q05 and G02 report them).
    """
    points: _EndPoints | None = None
    for b in batches:
        if needs_point_lines(b):
            points = points or _EndPoints(delivery)
            points.connect(b)
        yield b


class _EndPoints:
    """The coordinates of a delivery's pipe points (EPSG:4490 and, where kept, source), found by
    (network, 物探点号), else by 物探点号 alone (the first point of each number): Arrow keys and
    float arrays, a few tens of bytes a point."""

    def __init__(self, delivery: Delivery) -> None:
        batches = [b for b in delivery.batches if b.target == "pipe_point" and len(b)]
        tables, xy, sxy, crs = [], [], [], set()
        for b in batches:
            g, s = _points_xy(b), _source_xy(b)
            usable = b.frame["exp_no"].notna().to_numpy() & np.isfinite(g[0])
            network, exp_no = arrow_text(b.frame["network"]), arrow_text(b.frame["exp_no"])
            if not usable.all():                 # else the arrays as they are (a residue's shared)
                keep = pa.array(usable)
                network, exp_no = network.filter(keep), exp_no.filter(keep)
                g = (g[0][usable], g[1][usable])
                s = (s[0][usable], s[1][usable]) if s is not None else None
            tables.append(pa.table({"network": network, "exp_no": exp_no}))
            xy.append(g)
            n = int(usable.sum())
            sxy.append(s if s is not None else (np.full(n, np.nan), np.full(n, np.nan)))
            if s is not None and b.source_crs is not None and usable.any():
                crs.add(b.source_crs)
        self.n = sum(len(x) for x, _y in xy)
        if not self.n:
            return
        self.xy = _joined(xy)
        self.source = _joined(sxy) if len(crs) == 1 else None   # source x, y in the one source CRS
        self.keys = pa.concat_tables(tables).append_column("id", pa.array(np.arange(self.n, dtype=np.int32)))
        self.by_key = PointIndex(self.keys)
        self.by_no: PointIndex | None = None   # by the number alone: made when a lookup by key first fails
        self.crs = crs
        self.unit_m = batches[0].source_unit_m
        self.notes, self.noted = delivery.notes, set[str]()

    def connect(self, b: LayerBatch) -> None:
        """Lines for the pipe-segment batch ``b`` from the points its ends name."""
        if not self.n:              # no usable point: the lines stay without geometry (G02, Q05)
            return
        ends = []
        for col in ("start_exp_no", "end_exp_no"):
            numbers = b.frame[col].to_numpy(dtype=object)
            row = self.by_key.ids(b.frame["network"].to_numpy(dtype=object), numbers)
            miss = np.flatnonzero(row < 0)           # by the number alone where the network has none
            if len(miss):
                if self.by_no is None:
                    self.by_no = PointIndex(self.keys.drop_columns(["network"]))
                row[miss] = self.by_no.ids(None, numbers[miss])
            ends.append(row)
        b.frame["geom"] = _lines(self.xy, ends)
        b.geometry_built = True
        if self.source is not None:
            b.source_geom = _lines(self.source, ends)
            b.source_crs = next(iter(self.crs))
            b.source_unit_m = self.unit_m
        if b.source_layer not in self.noted:       # once per layer, not per chunk
            self.noted.add(b.source_layer)
            self.notes.append(Note(b.source_layer, "geometry", f"图层 {b.source_layer} 的管线由起止点号连接点表生成",
                                   f"layer {b.source_layer}: lines built from the point table by start/end point numbers"))


Coords = tuple[np.ndarray, np.ndarray]
"""x and y of points, two arrays."""


def _joined(parts: list[Coords]) -> Coords:
    """The coordinates of several batches one after the other (one batch's as they are)."""
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([x for x, _y in parts]), np.concatenate([y for _x, y in parts])


def _lines(coords: Coords, ends: list[np.ndarray]) -> np.ndarray:
    """Lines from the points at rows ``ends`` (start rows, end rows; −1: none) of ``coords``,
    None where an end has no point or no coordinates."""
    x, y = coords
    at = [np.maximum(row, 0) for row in ends]
    ok = (ends[0] >= 0) & (ends[1] >= 0)
    for a in at:
        ok &= np.isfinite(x[a]) & np.isfinite(y[a])
    built = np.full(len(ends[0]), None, dtype=object)
    if ok.any():
        start, end = at[0][ok], at[1][ok]
        built[ok] = shapely.linestrings(np.stack([np.column_stack([x[start], y[start]]),
                                                  np.column_stack([x[end], y[end]])], axis=1))
    return built


_SLICE = 1 << 16
"""Points decoded from WKB at a time (their shapely objects are not all made at once)."""


def _points_xy(b: LayerBatch) -> Coords:
    """EPSG:4490 coordinates of a point batch (NaN where missing), a slice of rows at a time
    when its points are held as WKB (a residue)."""
    if not b.packed:
        g = _xy(b.geometries())
        return g[:, 0], g[:, 1]
    x, y = np.empty(len(b)), np.empty(len(b))
    for start in range(0, len(b), _SLICE):
        g = _xy(b.geometries(np.arange(start, min(start + _SLICE, len(b)))))
        x[start:start + len(g)], y[start:start + len(g)] = g[:, 0], g[:, 1]
    return x, y


def _source_xy(b: LayerBatch) -> Coords | None:
    """Source-CRS coordinates of a point batch, None when it has none: its source geometries,
    or the metric source coordinates a residue keeps of them instead (shared, not copied)."""
    if b.source_metric:
        return b.frame["metric_mx"].to_numpy(dtype=float), b.frame["metric_my"].to_numpy(dtype=float)
    src = b.source_geometries()
    if src is None:
        return None
    g = _xy(src)
    return g[:, 0], g[:, 1]


def _xy(g: np.ndarray) -> np.ndarray:
    """Nx2 coordinates of an array of points (NaN where missing)."""
    out = np.full((len(g), 2), np.nan)
    ok = ~shapely.is_missing(g)
    if ok.any():
        out[ok, 0] = shapely.get_x(g[ok])
        out[ok, 1] = shapely.get_y(g[ok])
    return out


def fill_length(b: LayerBatch) -> None:
    """Compute pipe-segment lengths (m, 3D when both end elevations are known) when not delivered."""
    if b.target != "pipe_segment" or not len(b):
        return
    missing = b.frame["length_m"].isna().to_numpy()
    if not missing.any():
        return
    metric = metric_geometry(b)
    plan = shapely.length(metric)
    dz = (b.frame["end_z"] - b.frame["start_z"]).to_numpy(dtype=float)
    length = np.where(np.isfinite(dz), np.sqrt(plan ** 2 + np.nan_to_num(dz) ** 2), plan)
    b.frame.loc[missing, "length_m"] = np.round(length[missing], 3)
