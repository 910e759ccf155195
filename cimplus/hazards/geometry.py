"""Geometries people send: GeoJSON in CGCS2000 longitude/latitude (EPSG:4490, the storage CRS;
CRS84 coordinates are taken as equal to it, the difference being below survey accuracy)."""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely
from shapely.geometry import shape

from cim.errors import InvalidInput

TYPES = ("Point", "LineString", "Polygon", "MultiPoint", "MultiLineString", "MultiPolygon")
MAX_VERTICES = 10_000
CHINA = (73.0, 3.0, 136.0, 54.0)   # lon/lat box every geometry must fall in


def parse_geometry(value: Any) -> str:
    """A GeoJSON geometry object → WKT, refused (bilingual 400) unless a valid, finite geometry
    of a known type within China with at most :data:`MAX_VERTICES` vertices."""
    if not isinstance(value, dict) or value.get("type") not in TYPES or "coordinates" not in value:
        raise InvalidInput(f"geometry 须为 GeoJSON 几何对象（{', '.join(TYPES)}）",
                           f"geometry must be a GeoJSON geometry ({', '.join(TYPES)})")
    try:
        geom = shape(value)
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, shapely.errors.GEOSException) as exc:
        raise InvalidInput("geometry 坐标无法解析", "geometry coordinates cannot be read") from exc
    coords = shapely.get_coordinates(geom)
    if geom.is_empty or not len(coords):
        raise InvalidInput("geometry 为空", "geometry is empty")
    if len(coords) > MAX_VERTICES:
        raise InvalidInput(f"geometry 顶点超过 {MAX_VERTICES}", f"geometry has more than {MAX_VERTICES} vertices")
    if not np.isfinite(coords).all() or not shapely.is_valid(geom):
        raise InvalidInput("geometry 无效（自相交或坐标非有限数）", "geometry is invalid (self-intersecting or not finite)")
    x0, y0, x1, y1 = geom.bounds
    if x0 < CHINA[0] or y0 < CHINA[1] or x1 > CHINA[2] or y1 > CHINA[3]:
        raise InvalidInput("geometry 不在中国范围内（经度 73–136，纬度 3–54）",
                           "geometry is outside China (longitude 73–136, latitude 3–54)")
    return geom.wkt
