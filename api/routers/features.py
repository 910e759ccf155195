"""OGC API – Features Parts 1–3 at ``/ogc`` (OGC 17-069r4, 18-058r1, 19-079r2 with CQL2 21-065).

Collections are the public layers of the catalogue (collection id = layer id). Each items
page is one SQL round trip (prepared by asyncpg, stable SQL text per request shape); the
features' GeoJSON is built in PostgreSQL and spliced into the response without re-encoding.
``numberMatched`` is exact up to :data:`layers.features.EXACT_COUNT_CAP` matches and an
estimate above (the layer's planner row estimate scaled by the bbox's share of its extent).
Parsing and links are here; the statements and the counting rules in :mod:`layers.items`.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response

from api import deps, encoding, ogc_html
from cim.auth import Action, Principal
from cim.errors import InvalidInput, NotFound
from layers import features as lf
from layers import items as layer_items
from layers.spec import LayerSpec

router = APIRouter(prefix="/ogc", tags=["OGC API Features / 要素服务"])
READ = Depends(deps.require(Action.read))
GEOJSON = "application/geo+json"

# The API definition at /openapi.json is OpenAPI 3.1 (what FastAPI writes), so the OpenAPI 3.0
# requirements classes (…/conf/oas30) are not claimed; the landing page links it as version=3.1.
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-common-2/1.0/conf/collections",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/ogcapi-features-5/1.0/conf/sortables",
    "http://www.opengis.net/spec/ogcapi-features-8/1.0/conf/sorting",
    "http://www.opengis.net/spec/ogcapi-features-6/1.0/conf/property-selection",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/case-insensitive-comparison",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
    "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
    # OGC API – Tiles classes served by api/routers/tiles.py
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tileset",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tilesets-list",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/geodata-tilesets",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/mvt",
]

ITEM_PARAMS = {"bbox", "bbox-crs", "limit", "offset", "sortby", "properties", "crs", "filter", "filter-lang",
               "filter-crs", "f", "datetime"}


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _json(body: dict, media_type: str = "application/json", headers: dict | None = None) -> Response:
    return Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")), media_type=media_type,
                    headers=headers)


def _check_f(value: str | None) -> None:
    if value not in (None, "", "json", "geojson", "html", "application/json", GEOJSON):
        raise InvalidInput(f"不支持的输出格式 f={value}（可用 json、html）", f"unsupported output format f={value} (use json or html)")


@router.get("/", include_in_schema=False)
@router.get("", summary="服务首页 / landing page")
async def landing(request: Request, f: str | None = None, who: Principal = READ) -> Response:
    """Landing page with links to the API description, conformance and collections."""
    _check_f(f)
    b = _base(request)
    doc = {
        "title": "CIM 一张图 要素服务 / CIM one-map features",
        "description": "城市信息模型一张图的 OGC API – Features（含 CRS 与 CQL2 过滤）/ "
                       "OGC API – Features (with CRS and CQL2 filters) of the CIM one-map",
        "links": [
            {"href": f"{b}/ogc", "rel": "self", "type": "application/json", "title": "本页 / this document"},
            {"href": f"{b}/openapi.json", "rel": "service-desc", "type": "application/vnd.oai.openapi+json;version=3.1",
             "title": "OpenAPI 定义 / API definition"},
            {"href": f"{b}/docs", "rel": "service-doc", "type": "text/html", "title": "接口文档 / API documentation"},
            {"href": f"{b}/ogc/conformance", "rel": "conformance", "type": "application/json",
             "title": "符合性声明 / conformance"},
            {"href": f"{b}/ogc/collections", "rel": "data", "type": "application/json", "title": "图层集合 / collections"},
            {"href": f"{b}/ogc/tileMatrixSets", "rel": "http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes",
             "type": "application/json", "title": "瓦片矩阵集 / tile matrix sets"},
        ],
    }
    return ogc_html.landing(doc) if ogc_html.wants_html(request) else _json(doc)


@router.get("/conformance", summary="符合性声明 / conformance classes")
async def conformance(request: Request, f: str | None = None, who: Principal = READ) -> Response:
    """Conformance classes of Features Parts 1–3, CQL2 and the Tiles classes served here."""
    _check_f(f)
    doc = {"conformsTo": CONFORMANCE}
    return ogc_html.conformance(doc) if ogc_html.wants_html(request) else _json(doc)


async def _layer_stats(request: Request, spec: LayerSpec) -> dict:
    """Row estimate and CRS84 extent of a layer (kept a minute)."""
    return await request.app.state.features_stats.get(deps.pool(request), spec)


def _collection(spec: LayerSpec, stats: dict, b: str) -> dict:
    base = f"{b}/ogc/collections/{spec.id}"
    out = {
        "id": spec.id,
        "title": spec.title_zh,
        "description": f"{spec.title_en}（{spec.group_zh}）",
        "itemType": "feature",
        "crs": list(lf.offered_crs()),
        "storageCrs": "http://www.opengis.net/def/crs/EPSG/0/4490",
        "links": [
            {"href": base, "rel": "self", "type": "application/json", "title": spec.title_zh},
            {"href": f"{base}/items", "rel": "items", "type": GEOJSON, "title": f"{spec.title_zh} 要素 / items"},
            {"href": f"{base}/queryables", "rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables",
             "type": "application/schema+json", "title": "可查询属性 / queryables"},
            {"href": f"{base}/sortables", "rel": "http://www.opengis.net/def/rel/ogc/1.0/sortables",
             "type": "application/schema+json", "title": "可排序属性 / sortables"},
            {"href": f"{base}/tiles", "rel": "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector",
             "type": "application/json", "title": "矢量瓦片 / vector tilesets"},
        ],
    }
    if stats.get("bbox"):
        out["extent"] = {"spatial": {"bbox": [stats["bbox"]], "crs": lf.CRS84}}
    return out


@router.get("/collections/", include_in_schema=False)
@router.get("/collections", summary="图层集合列表 / collections")
async def collections(request: Request, f: str | None = None, who: Principal = READ) -> Response:
    """Every public layer of the catalogue as a collection."""
    _check_f(f)
    b = _base(request)
    cols = [_collection(spec, await _layer_stats(request, spec), b) for spec in deps.catalog(request).public()]
    doc = {"links": [{"href": f"{b}/ogc/collections", "rel": "self", "type": "application/json"}], "collections": cols}
    return ogc_html.collections(doc) if ogc_html.wants_html(request) else _json(doc)


@router.get("/collections/{collection_id}", summary="图层集合 / one collection")
async def collection(request: Request, collection_id: str, f: str | None = None, who: Principal = READ) -> Response:
    """One collection: extent, CRSs, links to items, queryables and tiles."""
    _check_f(f)
    spec = deps.catalog(request).get(collection_id)
    doc = _collection(spec, await _layer_stats(request, spec), _base(request))
    return ogc_html.collection(doc) if ogc_html.wants_html(request) else _json(doc)


@router.get("/collections/{collection_id}/sortables", summary="可排序属性 / sortables")
async def sortables(request: Request, collection_id: str, f: str | None = None, who: Principal = READ) -> Response:
    """JSON Schema of the properties usable in ``sortby``."""
    _check_f(f)
    spec = deps.catalog(request).get(collection_id)
    return _json(lf.sortables(spec, _base(request)), media_type="application/schema+json")


@router.get("/collections/{collection_id}/queryables", summary="可查询属性 / queryables")
async def queryables(request: Request, collection_id: str, f: str | None = None, who: Principal = READ) -> Response:
    """JSON Schema of the properties usable in ``filter``, equality filters and ``sortby``."""
    _check_f(f)
    spec = deps.catalog(request).get(collection_id)
    return _json(lf.queryables(spec, _base(request)), media_type="application/schema+json")


def _parse_items(request: Request, spec: LayerSpec) -> lf.ItemsRequest:
    q = request.query_params
    for key in q:
        if key not in ITEM_PARAMS and spec.attribute(key) is None:
            raise InvalidInput(f"未知的查询参数：{key}", f"unknown query parameter: {key}",
                               allowed=sorted(ITEM_PARAMS) + [a.name for a in spec.attributes])
    for key in ITEM_PARAMS:
        if len(q.getlist(key)) > 1:
            raise InvalidInput(f"查询参数 {key} 重复", f"query parameter {key} is repeated")
    _check_f(q.get("f"))
    req = lf.ItemsRequest(spec=spec)
    # 17-069r4 /req/core/fc-limit-response-1 C: a limit above the maximum is no error, the maximum applies
    limit = q.get("limit")
    digits = limit.lstrip("0") if limit and limit.isascii() and limit.isdigit() else ""
    if digits and (len(digits) > 9 or int(digits) > lf.MAX_LIMIT):
        limit = str(lf.MAX_LIMIT)
    req.limit = lf.parse_int(limit, "limit", lf.DEFAULT_LIMIT, 1, lf.MAX_LIMIT)
    req.offset = lf.parse_int(q.get("offset"), "offset", 0, 0, 100_000_000)
    req.crs = lf.parse_crs(q.get("crs"), "crs")
    req.bbox_crs = lf.parse_crs(q.get("bbox-crs"), "bbox-crs")
    if q.get("bbox-crs") and not q.get("bbox"):
        raise InvalidInput("给出了 bbox-crs 却没有 bbox", "bbox-crs given without bbox")
    if q.get("bbox") is not None:
        req.bbox = lf.parse_bbox(q["bbox"], req.bbox_crs)
    req.filter_crs = lf.parse_crs(q.get("filter-crs"), "filter-crs")
    req.filter = q.get("filter")
    req.filter_lang = q.get("filter-lang")
    if req.filter is not None and not req.filter.strip():
        raise InvalidInput("filter 为空", "filter is empty")
    if req.filter_lang and req.filter_lang.lower() not in ("cql2-text", "cql2-json"):
        raise InvalidInput(f"不支持的 filter-lang：{req.filter_lang}", f"unsupported filter-lang: {req.filter_lang}")
    if q.get("datetime") is not None:
        _check_datetime(q["datetime"])
    req.sortby = lf.parse_sortby(q.get("sortby"), spec)
    req.properties = lf.parse_properties(q.get("properties"), spec) if "properties" in q else None
    req.equals = {k: v for k, v in q.items() if k not in ITEM_PARAMS}
    return req


def _check_datetime(value: str) -> None:
    """Validate ``datetime`` (RFC 3339 instant or interval, ``..`` open ends).

    The layers carry no temporal property, so a valid value selects every feature (OGC 17-069
    §7.15.4 leaves features without temporal information to the server); a malformed one is a 400.
    """
    parts = value.split("/")
    if len(parts) > 2 or not value:
        raise InvalidInput(f"datetime 无效：{value[:40]}", f"invalid datetime: {value[:40]}")
    for part in parts:
        if part in ("..", "") and len(parts) == 2:
            continue
        try:
            dt.datetime.fromisoformat(part.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidInput(f"datetime 无效：{value[:40]}", f"invalid datetime: {value[:40]}") from exc


@router.get("/collections/{collection_id}/items", summary="要素查询 / features",
            response_class=Response, responses={200: {"content": {GEOJSON: {}}}})
async def items(
    request: Request,
    collection_id: str,
    bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy（轴序按 bbox-crs）", examples=["111.6,29.0,111.8,29.1"])] = None,
    bbox_crs: Annotated[str | None, Query(alias="bbox-crs", description="bbox 的坐标系（默认 CRS84）")] = None,
    limit: Annotated[int, Query(ge=1, json_schema_extra={"maximum": lf.MAX_LIMIT},
                                description="每页要素数，默认 10，最大 10000（更大的值按 10000 处理）")] = lf.DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, le=100_000_000, description="跳过的要素数")] = 0,
    sortby: Annotated[str | None, Query(description="排序，如 -height_m,code")] = None,
    properties: Annotated[str | None, Query(description="返回的属性，逗号分隔")] = None,
    crs: Annotated[str | None, Query(description="输出坐标系 URI，如 http://www.opengis.net/def/crs/EPSG/0/4549")] = None,
    filter: Annotated[str | None, Query(description="CQL2 过滤，如 height_m > 20 AND use_code = 'ZZ'")] = None,
    filter_lang: Annotated[str | None, Query(alias="filter-lang", description="cql2-text（默认）或 cql2-json")] = None,
    filter_crs: Annotated[str | None, Query(alias="filter-crs", description="CQL2 几何字面量的坐标系（默认 CRS84）")] = None,
    who: Principal = READ,
) -> Response:
    """Features of a layer as a GeoJSON FeatureCollection with paging links.

    Any exposed attribute may also be given as ``<attribute>=<value>`` (equality filter).
    """
    spec = deps.catalog(request).get(collection_id)
    req = _parse_items(request, spec)
    page = await layer_items.page(deps.pool(request), req, request.app.state.features_stats)
    returned, matched = page.returned, page.matched
    links = [{"href": str(request.url), "rel": "self", "type": GEOJSON, "title": "本页 / this page"},
             {"href": f"{_base(request)}/ogc/collections/{spec.id}", "rel": "collection", "type": "application/json"}]
    if page.has_next and returned:
        links.append({"href": str(request.url.include_query_params(offset=req.offset + returned, limit=req.limit)),
                      "rel": "next", "type": GEOJSON, "title": "下一页 / next page"})
    if req.offset > 0:
        links.append({"href": str(request.url.include_query_params(offset=max(0, req.offset - req.limit), limit=req.limit)),
                      "rel": "prev", "type": GEOJSON, "title": "上一页 / previous page"})
    head = {"type": "FeatureCollection", "numberMatched": matched, "numberReturned": returned,
            "timeStamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "links": links}
    body = json.dumps(head, ensure_ascii=False, separators=(",", ":"))[:-1] + ',"features":[' + page.features + "]}"
    if ogc_html.wants_html(request):
        return ogc_html.items(body, f"{spec.title_zh} ({spec.id})")
    return await encoding.gzip_response(request, body.encode(), GEOJSON, {"Content-Crs": f"<{req.crs.uri}>"})


@router.get("/collections/{collection_id}/items/{feature_id}", summary="单个要素 / one feature",
            response_class=Response, responses={200: {"content": {GEOJSON: {}}}})
async def item(request: Request, collection_id: str, feature_id: str,
               crs: Annotated[str | None, Query(description="输出坐标系 URI")] = None,
               properties: Annotated[str | None, Query(description="返回的属性，逗号分隔")] = None,
               f: str | None = None, who: Principal = READ) -> Response:
    """One feature by id; 404 when the layer has no current feature with that id."""
    spec = deps.catalog(request).get(collection_id)
    _check_f(f)
    out = lf.parse_crs(crs, "crs")
    attrs = lf.parse_properties(properties, spec) if properties is not None else None
    try:
        fid = int(feature_id)
        if not -2**63 <= fid < 2**63:
            raise ValueError
    except ValueError:
        fid = None
    text = await layer_items.item(deps.pool(request), spec, fid, out, attrs) if fid is not None else None
    if text is None:
        raise NotFound(f"图层 {spec.id} 中没有要素 {feature_id}", f"no feature {feature_id} in {spec.id}")
    b = _base(request)
    links = json.dumps([{"href": f"{b}/ogc/collections/{spec.id}/items/{fid}", "rel": "self", "type": GEOJSON},
                        {"href": f"{b}/ogc/collections/{spec.id}", "rel": "collection", "type": "application/json"}])
    body = text[:-1] + ',"links":' + links + "}"
    if ogc_html.wants_html(request):
        return ogc_html.items('{"features":[' + text + '],"numberReturned":1,"links":' + links + "}",
                              f"{spec.title_zh} ({spec.id}) #{fid}")
    return Response(body, media_type=GEOJSON, headers={"Content-Crs": f"<{out.uri}>"})


def register(app: FastAPI) -> None:
    """Mount this router."""
    app.state.features_stats = layer_items.LayerStats()
    app.include_router(router)
