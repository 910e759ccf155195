"""Spatial queries for other platforms and the web map: ``/api/query/…`` (JSON in, GeoJSON out).

Inputs are lon/lat in EPSG:4490 (or 4326/CRS84, identical within a metre) or x/y in a stated
``crs`` (easting/northing for projected CRSs); outputs are GeoJSON in EPSG:4490 lon/lat.
Tolerances and distances are metres. Access: ``Action.query``.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from api import dbcall, deps
from cim import db, raster
from cim.auth import Action, Principal
from cim.errors import InvalidInput, NotFound, PayloadTooLarge
from layers import features as lf
from layers import query as lq
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
    cat = deps.catalog(request)
    if ids is None:
        return cat.public()
    if len(ids) > 50:
        raise InvalidInput("layers 最多 50 个图层 id", "layers may list at most 50 layer ids")
    return [cat.get(i) for i in dict.fromkeys(ids)]


def _check_lonlat(x: float, y: float, srid: int) -> None:
    if srid == 4490 and not (-180 <= x <= 180 and -90 <= y <= 90):
        raise InvalidInput("经纬度超出范围", "longitude/latitude out of range")


def _with_members(feature_text: str, **members: Any) -> str:
    """Append top-level members to a Feature's JSON text."""
    extra = ",".join(f"{json.dumps(k)}:{json.dumps(v, ensure_ascii=False)}" for k, v in members.items())
    return feature_text[:-1] + "," + extra + "}"


def _fc(features: list[str], **members: Any) -> str:
    head = json.dumps({"type": "FeatureCollection", **members}, ensure_ascii=False)
    return head[:-1] + ',"features":[' + ",".join(features) + "]}"


async def _run(request: Request, method: str, sql: str, args: list) -> Any:
    async with request.app.state.pool.acquire() as conn:
        return await dbcall.run(conn, method, sql, *args)


@router.post("/identify", summary="点查询 / identify at a point", response_class=Response,
             responses=_example(EX_IDENTIFY, GEOJSON))
async def identify(body: IdentifyRequest, request: Request, who: Principal = QUERY) -> Response:
    """Every feature of the chosen layers within ``tolerance_m`` metres of the point, nearest first.

    Each feature carries top-level ``layer``, ``layer_title_zh`` and ``distance_m``.
    """
    srid = _srid(body.crs)
    _check_lonlat(body.lon, body.lat, srid)
    specs = _layers(request, body.layers)
    rows = []
    if specs:  # an empty layer list (nothing visible on the map) finds nothing
        sql, args = lq.identify_sql(specs, body.lon, body.lat, srid, body.tolerance_m, body.limit)
        rows = await _run(request, "fetch", sql, args)
    by_id = {s.id: s for s in specs}
    # a row in two requested layers (a drainage pipe is also a pipeline segment) is listed once,
    # under the more specific layer (one with a `where`)
    rows = sorted(rows, key=lambda r: (r["d"], not by_id[r["layer"]].where, r["layer"]))
    seen: set[tuple[str, int]] = set()
    feats = []
    for r in rows:
        key = (by_id[r["layer"]].table, r["id"])
        if key in seen:
            continue
        seen.add(key)
        feats.append(_with_members(r["f"], layer=r["layer"], layer_title_zh=by_id[r["layer"]].title_zh,
                                   distance_m=round(r["d"], 3)))
    return Response(_fc(feats, numberReturned=len(feats)), media_type=GEOJSON)


@router.post("/spatial", summary="空间关系查询 / features by spatial relation", response_class=Response,
             responses=_example(EX_SPATIAL))
async def spatial(body: SpatialRequest, request: Request, who: Principal = QUERY) -> Response:
    """Per layer, the features that intersect / lie within / lie within ``distance_m`` of the geometry.

    Response: ``{"layers": {"<id>": FeatureCollection}}``; each collection has ``numberReturned``
    and ``limitReached`` (true when more features matched than ``limit``).
    """
    if body.op == "dwithin" and body.distance_m is None:
        raise InvalidInput("op=dwithin 需要 distance_m", "op=dwithin needs distance_m")
    srid = _srid(body.crs)
    wkb = lq.input_geometry(body.geometry)
    specs = _layers(request, body.layers)
    parts = []
    async with request.app.state.pool.acquire() as conn:
        for spec in specs:
            sql, args = lq.spatial_sql(spec, body.op, wkb, srid, body.distance_m, body.filter, body.limit)
            rows = await dbcall.run(conn, "fetch", sql, *args)
            feats = [r["f"] for r in rows[:body.limit]]
            parts.append(f"{json.dumps(spec.id)}:" + _fc(feats, numberReturned=len(feats),
                                                         limitReached=len(rows) > body.limit))
    return Response('{"layers":{' + ",".join(parts) + "}}", media_type="application/json")


@router.post("/nearest", summary="最近要素 / k nearest features", response_class=Response,
             responses=_example(EX_NEAREST, GEOJSON))
async def nearest(body: NearestRequest, request: Request, who: Principal = QUERY) -> Response:
    """The ``k`` nearest features of a layer, nearest first, with ``properties.distance_m``."""
    srid = _srid(body.crs)
    _check_lonlat(body.lon, body.lat, srid)
    spec = deps.catalog(request).get(body.layer)
    sql, args = lq.nearest_sql(spec, body.lon, body.lat, srid, body.k)
    rows = await _run(request, "fetch", sql, args)
    feats = []
    for r in rows:
        f = json.loads(r["f"])
        f["properties"]["distance_m"] = round(r["d"], 3)
        f["layer"] = spec.id
        feats.append(json.dumps(f, ensure_ascii=False))
    return Response(_fc(feats, numberReturned=len(feats)), media_type=GEOJSON)


def _hex(color: str | None) -> str | None:
    """'r,g,b' from the network dictionary → '#rrggbb'."""
    if not color:
        return None
    try:
        r, g, b = (int(v) for v in color.split(","))
        return f"#{r:02x}{g:02x}{b:02x}"
    except ValueError:
        return color if color.startswith("#") else None


def _lerp(a: float | None, b: float | None, t: float) -> float | None:
    if a is None and b is None:
        return None
    if a is None or b is None:
        return a if b is None else b
    return a + (b - a) * t


def _crossing(row, ground_dem: float | None) -> dict:
    """Elevations of one crossing, interpolated along the pipe at the crossing.

    ``z_ref`` says which part of the section the recorded elevations and depths refer to
    (top / centre / invert); the section height is ``height_mm`` or ``diameter_mm``.
    ``depth_m`` is the recorded depth interpolated at the crossing (same reference).
    """
    t = float(row["t_seg"] or 0)
    z = _lerp(row["start_z"], row["end_z"], t)
    depth = _lerp(row["start_depth"], row["end_depth"], t)
    ground = ground_dem
    if ground is None:
        g0 = row["ground_start"] if row["ground_start"] is not None else (
            row["start_z"] + row["start_depth"] if None not in (row["start_z"], row["start_depth"]) else None)
        g1 = row["ground_end"] if row["ground_end"] is not None else (
            row["end_z"] + row["end_depth"] if None not in (row["end_z"], row["end_depth"]) else None)
        ground = _lerp(g0, g1, t)
    if z is None and depth is not None and ground is not None:
        z = ground - depth
    if depth is None and z is not None and ground is not None:
        depth = ground - z
    size = (row["height_mm"] or row["diameter_mm"] or 0) / 1000.0
    top = centre = bottom = None
    if z is not None:
        offsets = {"top": (0, -size / 2, -size), "invert": (size, size / 2, 0), "centre": (size / 2, 0, -size / 2)}
        o = offsets.get(row["z_ref"], offsets["centre"])
        top, centre, bottom = (round(z + d, 3) for d in o)
    r3 = lambda v: None if v is None else round(v, 3)  # noqa: E731
    return {"id": row["id"], "layer": row["layer"], "network": row["network"], "network_zh": row["network_zh"],
            "subtype": row["subtype"], "diameter_mm": row["diameter_mm"], "width_mm": row["width_mm"],
            "height_mm": row["height_mm"], "material": row["material"], "material_zh": row["material_zh"],
            "distance_m": r3(row["along_m"]), "z_top": top, "z_centre": centre, "z_bottom": bottom,
            "depth_m": r3(depth), "ground_z": r3(ground), "z_ref": row["z_ref"], "color": _hex(row["color"]),
            "lon": round(row["lon"], 8), "lat": round(row["lat"], 8)}


async def _dem_sample(request: Request, lons: list[float], lats: list[float]) -> list[float | None] | None:
    """Ground elevations from the current DEMs (each point from the newest DEM covering it), or
    None when no DEM is loaded."""
    if not lons:
        return None

    def sample():
        conn = db.connect(request.app.state.settings.db, application_name="cim-api")
        try:
            return raster.sample_dem(conn, lons, lats)
        finally:
            conn.close()

    try:
        values = await asyncio.to_thread(sample)
    except OSError:
        return None
    if values is None:
        return None
    return [None if math.isnan(v) else float(v) for v in values]


@router.post("/section", summary="管线剖切 / pipe cross-section along a line", responses=_example(EX_SECTION))
async def section(body: SectionRequest, request: Request, who: Principal = QUERY) -> dict:
    """Pipes crossing the line with network, size, material, distance along the line, top / centre /
    bottom elevations and depth, plus the ground profile (DEM when loaded, else interpolated from
    the ground elevations of nearby pipe points)."""
    srid = _srid(body.crs)
    wkb = lq.input_geometry(body.line, allowed=("LineString",))
    specs = _layers(request, body.layers or ["pipeline_segments"])
    bad = [s.id for s in specs if s.table != "cim.pipe_segment"]
    if bad:
        raise InvalidInput(f"剖切只适用于管段图层：{', '.join(bad)}", f"section applies to pipe segment layers only: {', '.join(bad)}")
    async with request.app.state.pool.acquire() as conn:
        sql, args = lq.line_samples_sql(wkb, srid, 2)
        length = (await dbcall.run(conn, "fetch", sql, *args))[0]["len"]
        if length > 20_000:
            raise InvalidInput("剖切线长度超过 20 公里", "the section line is longer than 20 km")
        n = body.samples or int(min(201, max(11, length / 5 + 1)))
        sql, args = lq.line_samples_sql(wkb, srid, n)
        samples = await dbcall.run(conn, "fetch", sql, *args)
        sql, args = lq.section_sql(specs, wkb, srid)
        rows = await dbcall.run(conn, "fetch", sql, *args)
        dem = await _dem_sample(request, [s["lon"] for s in samples] + [r["lon"] for r in rows],
                                [s["lat"] for s in samples] + [r["lat"] for r in rows])
    dem_ground = dem[:len(samples)] if dem else [None] * len(samples)
    dem_cross = dem[len(samples):] if dem else [None] * len(rows)
    ground = []
    for s, zd in zip(samples, dem_ground, strict=True):
        z = zd if zd is not None else s["idw_z"]
        ground.append({"distance_m": round(s["f"] * length, 3), "z": None if z is None else round(z, 3)})
    pipes = [_crossing(r, zd) for r, zd in zip(rows, dem_cross, strict=True)]
    return {"length_m": round(length, 3), "ground_source": "dem" if any(v is not None for v in dem_ground) else "pipe_points",
            "ground": ground, "pipes": pipes}


@router.post("/stats", summary="区域统计 / statistics in a polygon or admin area", responses=_example(EX_STATS))
async def stats(body: StatsRequest, request: Request, who: Principal = QUERY) -> dict:
    """Counts per layer, pipe lengths by network / material / diameter class, green area by
    class and building floor area by use, inside a polygon or an administrative area."""
    if (body.geometry is None) == (body.admin_code is None):
        raise InvalidInput("须给出 geometry 或 admin_code 之一", "give exactly one of geometry or admin_code")
    srid = _srid(body.crs)
    wkb = lq.input_geometry(body.geometry, allowed=("Polygon", "MultiPolygon")) if body.geometry else None
    specs = deps.catalog(request).public()
    stmts = lq.stats_sql(specs, wkb, srid, body.admin_code)
    out: dict[str, Any] = {}
    async with request.app.state.pool.acquire() as conn:
        area = await dbcall.run(conn, "fetchrow", *_flat(stmts["area"]))
        if not area["found"]:
            raise NotFound(f"没有行政区划 {body.admin_code}", f"no administrative area {body.admin_code}")
        out["area_m2"] = round(area["area_m2"], 1)
        counts = await dbcall.run(conn, "fetch", *_flat(stmts["counts"]))
        pipes = await dbcall.run(conn, "fetch", *_flat(stmts["pipes"]))
        green = await dbcall.run(conn, "fetch", *_flat(stmts["green"]))
        buildings = await dbcall.run(conn, "fetch", *_flat(stmts["buildings"]))
    out["counts"] = {r["layer"]: r["n"] for r in counts}
    by: dict[str, dict[str, float]] = {"by_network": {}, "by_material": {}, "by_diameter_class": {}}
    for r in pipes:
        for key, value in (("by_network", r["network"]), ("by_material", r["material"]),
                           ("by_diameter_class", r["dia_class"])):
            by[key][value] = by[key].get(value, 0.0) + (r["length_m"] or 0.0)
    out["pipe_length_m"] = {k: {c: round(v, 2) for c, v in sorted(d.items())} for k, d in by.items()}
    out["pipe_length_m"]["total"] = round(sum(by["by_network"].values()), 2)
    out["green_area_m2"] = {"by_class": {r["class_code"]: round(r["area_m2"], 1) for r in green}}
    out["green_area_m2"]["total"] = round(sum(r["area_m2"] for r in green), 1)
    out["building_area_m2"] = {"by_use": {r["use_code"]: round(r["area_m2"], 1) for r in buildings},
                               "count_by_use": {r["use_code"]: r["n"] for r in buildings},
                               "footprint_total": round(sum(r["footprint_m2"] for r in buildings), 1)}
    out["building_area_m2"]["total"] = round(sum(r["area_m2"] for r in buildings), 1)
    out["diameter_classes"] = lq.classes()["diameter_classes"]
    return out


def _flat(stmt: tuple[str, list]) -> tuple:
    return (stmt[0], *stmt[1])


def register(app: FastAPI) -> None:
    """Mount this router."""
    app.include_router(router)
