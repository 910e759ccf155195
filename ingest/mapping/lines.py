"""Pipe segments that need the point tables: lines built from their start and end points, lengths.

A survey line table often has no geometry: its rows name their ends by 起点点号 / 终点点号, and
the lines come from the point table (the same workbook, another sheet, another file). Such a
batch is complete only once every layer of the delivery is read; every other batch is complete
on its own (:func:`needs_point_lines`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely

from ingest.mapping.geometry import metric_geometry
from ingest.model import Delivery, LayerBatch, Note


def needs_point_lines(batch: LayerBatch) -> bool:
    """A pipe-segment table without geometry: its lines come from the point tables."""
    return batch.target == "pipe_segment" and len(batch) > 0 and bool(batch.frame["geom"].isna().all())


def build_lines_from_points(delivery: Delivery) -> None:
    """Give pipe segments without geometry a line from their start and end points (vectorised).

    Points are looked up by (network, 物探点号) among the delivery's point batches; segments
    whose points are missing keep an empty geometry (rules Q05 and G02 report them).
    """
    todo = [b for b in delivery.batches if needs_point_lines(b)]
    points = [b for b in delivery.batches if b.target == "pipe_point" and len(b)]
    if not todo or not points:
        return
    pts = pd.concat([pd.DataFrame({"network": b.frame["network"].to_numpy(), "exp_no": b.frame["exp_no"].to_numpy(),
                                   "geom": b.geometries(),
                                   "src": src if (src := b.source_geometries()) is not None else np.full(len(b), None),
                                   "crs": b.source_crs}) for b in points], ignore_index=True)
    pts = pts[pts["exp_no"].notna() & pts["geom"].notna()].drop_duplicates(["network", "exp_no"])
    if pts.empty:          # no usable point: the lines stay without geometry (G02, Q05 report it)
        return
    by_key = pd.MultiIndex.from_arrays([pts["network"].astype(object), pts["exp_no"].astype(object)])
    by_no = pd.Index(pts.drop_duplicates("exp_no")["exp_no"].astype(object))
    first = pts.drop_duplicates("exp_no")
    crs_set = set(pts["crs"].dropna())
    for b in todo:
        ends = []
        for col in ("start_exp_no", "end_exp_no"):
            key = pd.MultiIndex.from_arrays([b.frame["network"].astype(object), b.frame[col].astype(object)])
            idx = by_key.get_indexer(key)
            alt = by_no.get_indexer(b.frame[col].astype(object))
            ends.append((idx, alt))
        geoms: list[np.ndarray] = []
        srcs: list[np.ndarray] = []
        for which in ("geom", "src"):
            xy = []
            for idx, alt in ends:
                g = np.where(idx >= 0, pts[which].to_numpy()[np.maximum(idx, 0)],
                             np.where(alt >= 0, first[which].to_numpy()[np.maximum(alt, 0)], None))
                g[(idx < 0) & (alt < 0)] = None
                xy.append(_xy(g))
            ok = np.isfinite(xy[0]).all(axis=1) & np.isfinite(xy[1]).all(axis=1)
            lines = np.full(len(b), None, dtype=object)
            if ok.any():
                lines[ok] = shapely.linestrings(np.stack([xy[0][ok], xy[1][ok]], axis=1))
            (geoms if which == "geom" else srcs).append(lines)
        b.frame["geom"] = geoms[0]
        b.geometry_built = True
        if len(crs_set) == 1:
            b.source_geom = srcs[0]
            b.source_crs = next(iter(crs_set))
            src_batch = points[0]
            b.source_unit_m = src_batch.source_unit_m
        delivery.notes.append(Note(b.source_layer, "geometry", f"图层 {b.source_layer} 的管线由起止点号连接点表生成",
                                   f"layer {b.source_layer}: lines built from the point table by start/end point numbers"))


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
