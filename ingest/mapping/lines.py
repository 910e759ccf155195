"""Pipe segments that need the point tables: lines built from their start and end points, lengths.

A survey line table often has no geometry: its rows name their ends by 起点点号 / 终点点号, and
the lines come from the point table (the same workbook, another sheet, another file). Such a
batch is complete only once every layer of the delivery is read; every other batch is complete
on its own (:func:`needs_point_lines`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd
import shapely

from ingest.mapping.geometry import metric_geometry
from ingest.model import Delivery, LayerBatch, Note


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
    """The coordinates of a delivery's pipe points (EPSG:4490 and, where kept, source), by
    (network, 物探点号) and by 物探点号 alone (the first point of each number)."""

    def __init__(self, delivery: Delivery) -> None:
        batches = [b for b in delivery.batches if b.target == "pipe_point" and len(b)]
        frames = []
        for b in batches:
            xy, src = _xy(b.geometries()), b.source_geometries()
            sxy = _xy(src) if src is not None else np.full((len(b), 2), np.nan)
            frames.append(pd.DataFrame({"network": b.frame["network"].to_numpy(dtype=object),
                                        "exp_no": b.frame["exp_no"].to_numpy(dtype=object),
                                        "x": xy[:, 0], "y": xy[:, 1], "sx": sxy[:, 0], "sy": sxy[:, 1],
                                        "crs": b.source_crs}))
        pts = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["network", "exp_no", "x"])
        pts = pts[pts["exp_no"].notna() & np.isfinite(pts["x"].to_numpy(dtype=float))]
        self.pts = pts.drop_duplicates(["network", "exp_no"]).reset_index(drop=True)
        self.first = self.pts.drop_duplicates("exp_no").reset_index(drop=True)
        self.by_key = pd.MultiIndex.from_arrays([self.pts["network"], self.pts["exp_no"]])
        self.by_no = pd.Index(self.first["exp_no"])
        self.crs = set(self.pts["crs"].dropna()) if len(self.pts) else set()
        self.unit_m = batches[0].source_unit_m if batches else None
        self.notes, self.noted = delivery.notes, set[str]()

    def connect(self, b: LayerBatch) -> None:
        """Lines for the pipe-segment batch ``b`` from the points its ends name."""
        if self.pts.empty:          # no usable point: the lines stay without geometry (G02, Q05)
            return
        ends = []
        for col in ("start_exp_no", "end_exp_no"):
            numbers = b.frame[col].to_numpy(dtype=object)
            key = pd.MultiIndex.from_arrays([b.frame["network"].to_numpy(dtype=object), numbers])
            ends.append((self.by_key.get_indexer(key), self.by_no.get_indexer(numbers)))
        lines = []
        for x, y in (("x", "y"), ("sx", "sy")):
            xy = [np.stack([self._coord(x, idx, alt), self._coord(y, idx, alt)], axis=1) for idx, alt in ends]
            ok = np.isfinite(xy[0]).all(axis=1) & np.isfinite(xy[1]).all(axis=1)
            built = np.full(len(b), None, dtype=object)
            if ok.any():
                built[ok] = shapely.linestrings(np.stack([xy[0][ok], xy[1][ok]], axis=1))
            lines.append(built)
        b.frame["geom"] = lines[0]
        b.geometry_built = True
        if len(self.crs) == 1:
            b.source_geom = lines[1]
            b.source_crs = next(iter(self.crs))
            b.source_unit_m = self.unit_m
        if b.source_layer not in self.noted:       # once per layer, not per chunk
            self.noted.add(b.source_layer)
            self.notes.append(Note(b.source_layer, "geometry", f"图层 {b.source_layer} 的管线由起止点号连接点表生成",
                                   f"layer {b.source_layer}: lines built from the point table by start/end point numbers"))

    def _coord(self, name: str, idx: np.ndarray, alt: np.ndarray) -> np.ndarray:
        """One coordinate of each end: of the point of its (network, number), else of the first
        point of its number, else NaN."""
        by_key = self.pts[name].to_numpy(dtype=float)
        by_no = self.first[name].to_numpy(dtype=float)
        return np.where(idx >= 0, by_key[np.maximum(idx, 0)], np.where(alt >= 0, by_no[np.maximum(alt, 0)], np.nan))


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
