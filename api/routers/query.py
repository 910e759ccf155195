"""Spatial queries for other platforms and the web map: ``/api/query/…`` (JSON in, GeoJSON out).

Inputs are lon/lat in EPSG:4490 (or 4326/CRS84, identical within a metre) or x/y in a stated
``crs`` (easting/northing for projected CRSs); outputs are GeoJSON in EPSG:4490 lon/lat.
Tolerances and distances are metres. Access: ``Action.query``. Each route validates its body
and makes one call into :mod:`layers.lookup` (identify, spatial, nearest), :mod:`layers.section`
(剖切) or :mod:`layers.stats` (区域统计).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from api import deps
from cim.auth import Action, Principal
from cim.errors import PayloadTooLarge
from layers import features as lf
from layers import lookup
from layers import query as lq
from layers import section as pipe_section
from layers import stats as area_stats
from layers.spec import LayerSpec

# A body of MAX_VERTICES coordinate pairs is ~2 MB of JSON; larger bodies are refused (413) while
# they stream in, before anything is parsed.
MAX_BODY_BYTES = 8 * 1024 * 1024


def _too_large() -> PayloadTooLarge:
    mb = MAX_BODY_BYTES // (1024 * 1024)
    return PayloadTooLarge(f"请求体超过 {mb} MB", f"the request body is larger than {mb} MB")


class _BoundedBodyRoute(APIRoute):
    """Route that reads at most MAX_BODY_BYTES of body (declared or streamed) before parsing."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
                raise _too_large()
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    raise _too_large()
            pending = [{"type": "http.request", "body": bytes(body), "more_body": False}]

            async def replay() -> dict:  # the buffered body once, then the connection's own events
                return pending.pop() if pending else await request.receive()

            return await handler(Request(request.scope, replay))

        return bounded


router = APIRouter(prefix="/api/query", tags=["query / 空间查询"], route_class=_BoundedBodyRoute)
QUERY = Depends(deps.require(Action.query))
GEOJSON = "application/geo+json"
CRS_DOC = "输入坐标系（默认 EPSG:4490；可用 EPSG:4326、CRS84、3857、CGCS2000 高斯-克吕格分带）/ input CRS"

_EX_POLYGON = {"type": "Polygon", "coordinates": [[[111.69, 29.03], [111.71, 29.03], [111.71, 29.05],
                                                   [111.69, 29.05], [111.69, 29.03]]]}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IdentifyRequest(_Body):
    """Identify: every feature of the chosen layers at a point."""

    lon: float = Field(description="经度或 x / longitude or x", ge=-1e8, le=1e8)
    lat: float = Field(description="纬度或 y / latitude or y", ge=-1e8, le=1e8)
    tolerance_m: float = Field(5, ge=0, le=1000, description="容差（米）/ tolerance in metres")
    layers: list[str] | None = Field(None, description="图层 id，缺省为全部公开图层 / layer ids (default: all)")
    limit: int = Field(50, ge=1, le=1000)
    crs: str | None = Field(None, description=CRS_DOC)
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"lon": 111.7012, "lat": 29.0405, "tolerance_m": 5, "layers": ["buildings", "pipeline_segments"]}]})


class SpatialRequest(_Body):
    """Spatial: features that intersect / lie within / lie within a distance of a geometry."""

    geometry: dict[str, Any] = Field(description="GeoJSON 几何 / GeoJSON geometry")
    op: Literal["intersects", "within", "dwithin"] = "intersects"
    distance_m: float | None = Field(None, ge=0, le=50_000, description="dwithin 的距离（米）")
    layers: list[str] | None = Field(None, description="图层 id，缺省为全部公开图层")
    filter: str | None = Field(None, max_length=20_000, description="CQL2 文本过滤（各图层的属性）")
    limit: int = Field(1000, ge=1, le=10_000, description="每个图层最多返回的要素数")
    crs: str | None = Field(None, description=CRS_DOC)
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"geometry": _EX_POLYGON, "op": "intersects", "layers": ["buildings"], "filter": "floors_above >= 6"},
        {"geometry": {"type": "LineString", "coordinates": [[111.69, 29.04], [111.71, 29.04]]}, "op": "dwithin",
         "distance_m": 20, "layers": ["gas_pipes"]}]})


class NearestRequest(_Body):
    """Nearest: the k nearest features of one layer to a point."""

    lon: float = Field(ge=-1e8, le=1e8)
    lat: float = Field(ge=-1e8, le=1e8)
    layer: str
    k: int = Field(5, ge=1, le=100)
    crs: str | None = Field(None, description=CRS_DOC)
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"lon": 111.7012, "lat": 29.0405, "layer": "streetlights", "k": 5}]})


class SectionRequest(_Body):
    """Section (剖切): pipes crossing a drawn line and the ground profile along it."""

    line: dict[str, Any] = Field(description="GeoJSON LineString")
    layers: list[str] | None = Field(None, description="管线图层 id，缺省为 pipeline_segments")
    samples: int | None = Field(None, ge=2, le=1001, description="地面剖面采样点数（缺省按每 5 米一个，11–201）")
    crs: str | None = Field(None, description=CRS_DOC)
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"line": {"type": "LineString", "coordinates": [[111.7001, 29.0395], [111.7003, 29.0415]]}}]})


class StatsRequest(_Body):
    """Stats: counts, pipe lengths, green and building areas in a polygon or an admin area."""

    geometry: dict[str, Any] | None = Field(None, description="GeoJSON Polygon / MultiPolygon")
    admin_code: str | None = Field(None, max_length=12, pattern=r"^[0-9]{6,12}$", description="行政区划代码")
    crs: str | None = Field(None, description=CRS_DOC)
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"admin_code": "430703"}, {"geometry": _EX_POLYGON}]})


_EX_FEATURE = {"type": "Feature", "id": 3844, "geometry": {"type": "Point", "coordinates": [111.7012, 29.0405]},
               "properties": {"pole_no": "LG00484", "road_name": "人民路"}}
EX_IDENTIFY = {"type": "FeatureCollection", "numberReturned": 1, "features": [
    {**_EX_FEATURE, "layer": "streetlights", "layer_title_zh": "路灯", "distance_m": 1.82}]}
EX_SPATIAL = {"layers": {"streetlights": {"type": "FeatureCollection", "numberReturned": 1, "limitReached": False,
                                         "features": [_EX_FEATURE]}}}
EX_NEAREST = {"type": "FeatureCollection", "numberReturned": 1, "features": [
    {**_EX_FEATURE, "layer": "streetlights", "properties": {**_EX_FEATURE["properties"], "distance_m": 12.246}}]}
EX_SECTION = {"length_m": 118.045, "ground_source": "dem", "ground": [{"distance_m": 0.0, "z": 32.636},
                                                                      {"distance_m": 5.132, "z": 32.657}],
              "pipes": [{"id": 8519, "layer": "pipeline_segments", "network": "PS", "network_zh": "排水", "subtype": "YS",
                         "diameter_mm": 1000.0, "width_mm": None, "height_mm": None, "material": "T-GJ",
                         "material_zh": "钢筋混凝土", "distance_m": 59.022, "z_top": 30.571, "z_centre": 30.071,
                         "z_bottom": 29.571, "depth_m": 3.325, "ground_z": 32.889, "z_ref": "invert",
                         "color": "#4c3926", "lon": 111.6996044, "lat": 29.0342099}]}
EX_STATS = {"area_m2": 46722584.5, "counts": {"buildings": 2356, "pipeline_segments": 5440, "streetlights": 1470},
            "pipe_length_m": {"by_network": {"JS": 34226.11, "PS": 65697.17}, "by_material": {"PE": 33113.03},
                              "by_diameter_class": {"<300": 134731.91, "300-600": 60553.1}, "total": 211818.45},
            "green_area_m2": {"by_class": {"G1": 160008.7}, "total": 160008.7},
            "building_area_m2": {"by_use": {"ZZ": 4798783.3}, "count_by_use": {"ZZ": 1607},
                                 "footprint_total": 997028.9, "total": 4798783.3},
            "diameter_classes": [{"id": "<300", "label_zh": "小于 DN300", "label_en": "below DN300", "max_mm": 300}]}


def _example(example: dict, media: str = "application/json") -> dict:
    return {200: {"content": {media: {"example": example}}}}


def _srid(value: str | None) -> int:
    """Input SRID: storage-equivalent geographic CRSs map to 4490 (no transform)."""
    return lf.parse_crs(value, "crs").srid if value else 4490


def _layers(request: Request, ids: list[str] | None) -> list[LayerSpec]:
    return deps.catalog(request).select(ids, limit=lookup.MAX_LAYERS)


@router.post("/identify", summary="点查询 / identify at a point", response_class=Response,
             responses=_example(EX_IDENTIFY, GEOJSON))
async def identify(body: IdentifyRequest, request: Request, who: Principal = QUERY) -> Response:
    """Every feature of the chosen layers within ``tolerance_m`` metres of the point, nearest first.

    Each feature carries top-level ``layer``, ``layer_title_zh`` and ``distance_m``.
    """
    srid = _srid(body.crs)
    specs = _layers(request, body.layers)
    text = await lookup.identify(deps.pool(request), specs, body.lon, body.lat, srid, body.tolerance_m, body.limit)
    return Response(text, media_type=GEOJSON)


@router.post("/spatial", summary="空间关系查询 / features by spatial relation", response_class=Response,
             responses=_example(EX_SPATIAL))
async def spatial(body: SpatialRequest, request: Request, who: Principal = QUERY) -> Response:
    """Per layer, the features that intersect / lie within / lie within ``distance_m`` of the geometry.

    Response: ``{"layers": {"<id>": FeatureCollection}}``; each collection has ``numberReturned``
    and ``limitReached`` (true when more features matched than ``limit``).
    """
    srid = _srid(body.crs)
    wkb = lq.input_geometry(body.geometry)
    specs = _layers(request, body.layers)
    text = await lookup.spatial(deps.pool(request), specs, body.op, wkb, srid, body.distance_m, body.filter, body.limit)
    return Response(text, media_type="application/json")


@router.post("/nearest", summary="最近要素 / k nearest features", response_class=Response,
             responses=_example(EX_NEAREST, GEOJSON))
async def nearest(body: NearestRequest, request: Request, who: Principal = QUERY) -> Response:
    """The ``k`` nearest features of a layer, nearest first, with ``properties.distance_m``."""
    srid = _srid(body.crs)
    spec = deps.catalog(request).get(body.layer)
    text = await lookup.nearest(deps.pool(request), spec, body.lon, body.lat, srid, body.k)
    return Response(text, media_type=GEOJSON)


@router.post("/section", summary="管线剖切 / pipe cross-section along a line", responses=_example(EX_SECTION))
async def section(body: SectionRequest, request: Request, who: Principal = QUERY) -> dict:
    """Pipes crossing the line with network, size, material, distance along the line, top / centre /
    bottom elevations and depth, plus the ground profile (DEM when loaded, else interpolated from
    the ground elevations of nearby pipe points)."""
    srid = _srid(body.crs)
    wkb = lq.input_geometry(body.line, allowed=("LineString",))
    specs = _layers(request, body.layers or ["pipeline_segments"])
    return await pipe_section.section(deps.pool(request), specs, wkb, srid, body.samples)


@router.post("/stats", summary="区域统计 / statistics in a polygon or admin area", responses=_example(EX_STATS))
async def stats(body: StatsRequest, request: Request, who: Principal = QUERY) -> dict:
    """Counts per layer, pipe lengths by network / material / diameter class, green area by
    class and building floor area by use, inside a polygon or an administrative area."""
    area_stats.check_area(body.geometry is not None, body.admin_code)
    srid = _srid(body.crs)
    wkb = lq.input_geometry(body.geometry, allowed=("Polygon", "MultiPolygon")) if body.geometry else None
    return await area_stats.stats(deps.pool(request), deps.catalog(request).public(), wkb, srid, body.admin_code)


def register(app: FastAPI) -> None:
    """Mount this router."""
    app.include_router(router)
