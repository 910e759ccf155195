"""Geometries of delivered layers: source coordinates to EPSG:4490, target geometry types,
repairs, and metric coordinates for distance rules. All operations are shapely 2 array calls."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import shapely

from cim.schema import feature_table
from ingest.mapping.crsdetect import ResolvedCrs, to_storage, transformer_from_pipeline
from ingest.mapping.normalize import as_float
from ingest.mapping.profile import Match, norm_name
from ingest.model import LayerBatch
from ingest.readers import SourceLayer


def _swap(geom: np.ndarray) -> np.ndarray:
    return shapely.transform(geom, lambda c: c[:, ::-1])


def prepare_geometry(layer: SourceLayer, match: Match, resolved: ResolvedCrs | None,
                     frame: pd.DataFrame) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Source-CRS geometries (axes fixed) and EPSG:4490 geometries of a layer, 2D.

    Point tables get points from their coordinate columns; line tables without geometry get
    None here (built later from the point layers).
    """
    geom: Any = layer.geom
    if geom is None and match.spec.coords is not None:
        east, north = table_coordinates(layer.frame, match)
        geom = shapely.points(np.column_stack([east, north]))
        geom[~(np.isfinite(east) & np.isfinite(north))] = None
    if geom is None or resolved is None:
        return None, None
    if shapely.has_z(geom).any():
        geom = shapely.force_2d(geom)
    if resolved.swapped:
        geom = _swap(geom)

    def fwd(c: np.ndarray) -> np.ndarray:
        if resolved.pipeline:   # a configured datum shift (Xian 1980 / Beijing 1954 → CGCS2000)
            lon, lat = transformer_from_pipeline(resolved.pipeline).transform(c[:, 0], c[:, 1])
        else:
            lon, lat = to_storage(c[:, 0], c[:, 1], resolved.crs)
        return np.column_stack([lon, lat])

    return geom, shapely.transform(geom, fwd)


def table_coordinates(frame: pd.DataFrame, match: Match) -> tuple[np.ndarray, np.ndarray]:
    """Easting and northing arrays from a point table's X/Y columns (X = northing by default)."""
    cs = match.spec.coords
    assert cs is not None, "only point tables have coordinate columns"
    by_norm = {norm_name(c): c for c in frame.columns}
    xcol = next((by_norm[norm_name(a)] for a in cs.x if norm_name(a) in by_norm), None)
    ycol = next((by_norm[norm_name(a)] for a in cs.y if norm_name(a) in by_norm), None)
    if xcol is None or ycol is None:
        nan = np.full(len(frame), np.nan)
        return nan, nan
    x = as_float(frame[xcol]).to_numpy()
    y = as_float(frame[ycol]).to_numpy()
    return (y, x) if cs.x_is_northing else (x, y)


def fit_geometry_type(geom: np.ndarray, target: str) -> tuple[np.ndarray, np.ndarray]:
    """Cast to the target's geometry type (Polygon and MultiPolygon both fit a MultiPolygon
    column) and repair invalid geometries with make_valid.

    Returns the geometries and a bool array of repaired rows.
    """
    kind = feature_table(target).geometry
    repaired = np.zeros(len(geom), dtype=bool)
    present = ~shapely.is_missing(geom)
    if kind == "Point":
        multi = present & (shapely.get_type_id(geom) == 4)
        if multi.any():
            geom[multi] = shapely.get_geometry(geom[multi], 0)
    elif kind == "LineString":
        multi = present & (shapely.get_type_id(geom) == 5)
        if multi.any():
            geom[multi] = shapely.line_merge(geom[multi])
    elif kind == "MultiLineString":
        pass                    # any line fits: LineStrings become MultiLineStrings at load
    else:
        invalid = present & ~shapely.is_valid(geom)
        if invalid.any():
            fixed = shapely.make_valid(geom[invalid])
            polys = [shapely.union_all(shapely.get_parts(g)[shapely.get_type_id(shapely.get_parts(g)) >= 3])
                     if shapely.get_type_id(g) == 7 else g for g in fixed]  # only the invalid rows
            geom[invalid] = np.array(polys, dtype=object)
            repaired = invalid
        # Polygons stay Polygons here: the loader stores them as MultiPolygons chunk by chunk
        # (ingest.load.rows.fit_geometries), off the reading thread.
    return geom, repaired


DEG_PER_M = 1 / 111_000.0      # rough degrees per metre, for padding lon/lat search boxes


@lru_cache(maxsize=32)
def utm_transformer(epsg: int):
    """Cached transformer from EPSG:4490 lon/lat to a metric CRS (x = easting)."""
    from pyproj import Transformer

    from cim.crs import STORAGE_SRID, crs_from_epsg
    return Transformer.from_crs(crs_from_epsg(STORAGE_SRID), crs_from_epsg(epsg), always_xy=True)


def local_metric_epsg(geom: np.ndarray) -> int:
    """UTM zone (WGS 84, metres) around the centre of EPSG:4490 geometries."""
    return bounds_metric_epsg(shapely.bounds(geom))


def bounds_metric_epsg(b: np.ndarray) -> int:
    """:func:`local_metric_epsg` from the geometries' bounds (``shapely.bounds``), which can be
    taken batch by batch."""
    ok = np.isfinite(b).all(axis=1)
    lon = float(np.mean((b[ok, 0] + b[ok, 2]) / 2)) if ok.any() else 111.0
    lat = float(np.mean((b[ok, 1] + b[ok, 3]) / 2)) if ok.any() else 30.0
    return _utm_epsg(lon, lat)


def _utm_epsg(lon: float, lat: float) -> int:
    zone = int((lon + 180) // 6) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


class Extent:
    """The bounding box of geometries and the mean of their bounds' centres, gathered chunk by
    chunk (:meth:`add`) instead of from all the geometries at the end."""

    def __init__(self) -> None:
        self.box = np.array([np.inf, np.inf, -np.inf, -np.inf])
        self.centres = np.zeros(2)
        self.n = 0

    def add(self, b: np.ndarray) -> None:
        """Add geometries by their bounds (``shapely.bounds``; empty ones are NaN and left out)."""
        b = b[np.isfinite(b).all(axis=1)]
        if not len(b):
            return
        self.box = np.concatenate([np.minimum(self.box[:2], b[:, :2].min(axis=0)),
                                   np.maximum(self.box[2:], b[:, 2:].max(axis=0))])
        self.centres += ((b[:, :2] + b[:, 2:]) / 2).sum(axis=0)
        self.n += len(b)

    def metric_epsg(self) -> int:
        """:func:`bounds_metric_epsg` of every geometry added."""
        return _utm_epsg(*(self.centres / self.n)) if self.n else _utm_epsg(111.0, 30.0)


def to_metric(geom: np.ndarray, epsg: int) -> np.ndarray:
    """EPSG:4490 geometries projected to a metric CRS."""
    tr = utm_transformer(epsg)

    def fwd(c: np.ndarray) -> np.ndarray:
        x, y = tr.transform(c[:, 0], c[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geom, fwd)


def metric_geometry(batch: LayerBatch, epsg: int | None = None) -> np.ndarray:
    """Geometries in metres: the projected source coordinates when there are some (distances as
    the surveyor measured them), else EPSG:4490 projected to the local UTM zone (or ``epsg``)."""
    if epsg is None and batch.source_geom is not None and batch.source_unit_m:
        f = batch.source_unit_m
        src = batch.source_geometries()
        assert src is not None  # source_geom is set
        return src if f == 1.0 else shapely.transform(src, lambda c: c * f)
    geom = batch.geometries()
    return to_metric(geom, epsg or local_metric_epsg(geom))
