"""OGC API – Tiles documents (OGC 20-057 Part 1) and the WebMercatorQuad tile matrix set (OGC 17-083r4).

Only WebMercatorQuad is offered: the tiles are built in EPSG:3857 by ``ST_AsMVTGeom``.
"""

from __future__ import annotations

import math
from typing import Any

from layers.spec import LayerSpec

TMS_URI = "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad"
CRS_3857 = "http://www.opengis.net/def/crs/EPSG/0/3857"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
REL_SCHEME = "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme"
MVT = "application/vnd.mapbox-vector-tile"
ORIGIN = 20037508.3427892
MAX_ZOOM = 24
_GEOM_DIM = {"Point": 0, "LineString": 1, "MultiLineString": 1, "Polygon": 2, "MultiPolygon": 2}


def web_mercator_quad() -> dict:
    """Tile matrix set definition (2D TMS 2.0 JSON encoding), zooms 0–24, 256 px tiles."""
    matrices = []
    for z in range(MAX_ZOOM + 1):
        n = 1 << z
        matrices.append({"id": str(z), "scaleDenominator": 559082264.0287178 / n,
                         "cellSize": 156543.03392804097 / n, "cornerOfOrigin": "topLeft",
                         "pointOfOrigin": [-ORIGIN, ORIGIN], "tileWidth": 256, "tileHeight": 256,
                         "matrixWidth": n, "matrixHeight": n})
    return {"id": "WebMercatorQuad", "title": "Google Maps Compatible for the World", "uri": TMS_URI,
            "crs": CRS_3857, "orderedAxes": ["X", "Y"], "wellKnownScaleSet":
            "http://www.opengis.net/def/wkss/OGC/1.0/GoogleMapsCompatible", "tileMatrices": matrices}


def tile_matrix_sets(base: str) -> dict:
    """List of tile matrix sets."""
    return {"tileMatrixSets": [{
        "id": "WebMercatorQuad", "title": "Google Maps Compatible for the World", "uri": TMS_URI,
        "links": [{"rel": "self", "type": "application/json", "title": "WebMercatorQuad",
                   "href": f"{base}/ogc/tileMatrixSets/WebMercatorQuad"}]}]}


def tile_xy(lon: float, lat: float, z: int) -> tuple[int, int]:
    lat = max(-85.05112878, min(85.05112878, lat))
    n = 1 << z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def limits(spec: LayerSpec, bounds: list[float] | None) -> list[dict]:
    """tileMatrixSetLimits of the layer's zooms, narrowed to the data bounds when known."""
    out = []
    for z in range(spec.minzoom, spec.maxzoom + 1):
        n = 1 << z
        if bounds:
            x0, y0 = tile_xy(bounds[0], bounds[3], z)
            x1, y1 = tile_xy(bounds[2], bounds[1], z)
        else:
            x0, y0, x1, y1 = 0, 0, n - 1, n - 1
        out.append({"tileMatrix": str(z), "minTileRow": y0, "maxTileRow": y1, "minTileCol": x0, "maxTileCol": x1})
    return out


def _links(spec: LayerSpec, base: str) -> list[dict]:
    here = f"{base}/ogc/collections/{spec.id}/tiles/WebMercatorQuad"
    return [{"rel": "self", "type": "application/json", "title": f"{spec.title_zh} 瓦片集", "href": here},
            {"rel": REL_SCHEME, "type": "application/json", "title": "WebMercatorQuad",
             "href": f"{base}/ogc/tileMatrixSets/WebMercatorQuad"},
            {"rel": "item", "type": MVT, "title": "Mapbox Vector Tile", "templated": True,
             "href": here + "/{tileMatrix}/{tileRow}/{tileCol}"},
            {"rel": "collection", "type": "application/json", "href": f"{base}/ogc/collections/{spec.id}"}]


def tilesets(spec: LayerSpec, base: str) -> dict:
    """Tilesets list of a collection."""
    ts = {"title": f"{spec.title_zh} / {spec.title_en}", "dataType": "vector", "crs": CRS_3857,
          "tileMatrixSetURI": TMS_URI, "links": _links(spec, base)[:2]}
    return {"tilesets": [ts], "links": [{"rel": "self", "type": "application/json",
                                         "href": f"{base}/ogc/collections/{spec.id}/tiles"}]}


def tileset(spec: LayerSpec, base: str, bounds: list[float] | None) -> dict:
    """Tileset metadata of a collection in WebMercatorQuad."""
    fields = {a.name: {"type": {"int": "integer", "float": "number", "bool": "boolean"}.get(a.type, "string"),
                       "title": a.label_zh, "description": a.label_en} for a in spec.attributes}
    doc: dict[str, Any] = {
        "title": f"{spec.title_zh} / {spec.title_en}", "dataType": "vector", "crs": CRS_3857,
        "tileMatrixSetURI": TMS_URI, "links": _links(spec, base),
        "tileMatrixSetLimits": limits(spec, bounds),
        "layers": [{"id": spec.id, "title": spec.title_zh, "dataType": "vector",
                    "geometryDimension": _GEOM_DIM[spec.geometry.type],
                    "minTileMatrix": str(spec.minzoom), "maxTileMatrix": str(spec.maxzoom),
                    "propertiesSchema": {"type": "object", "properties": fields}}],
    }
    if bounds:
        doc["boundingBox"] = {"lowerLeft": bounds[:2], "upperRight": bounds[2:], "crs": CRS84}
    return doc
