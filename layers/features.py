"""OGC API – Features SQL for one layer (no HTTP here).

Rules the builders follow:
- the filtered column is never transformed: bbox and CQL2 geometry literals are moved into the
  storage CRS (EPSG:4490) so the GiST index serves them; only the *output* geometry is
  transformed when a ``crs`` other than the storage equivalent is asked for (OGC 18-058 Part 2);
- every read applies ``is_current`` and the spec's ``where``;
- attribute filters, ``sortby`` and ``properties`` accept only the spec's exposed attributes;
- values are bound, so the SQL text depends only on the request's shape.

Axis order (OGC 18-058 §6.2): CRS84 and the default output are lon/lat; CRSs whose EPSG axis
order is north/east (EPSG:4490 and EPSG:4326 given as EPSG URIs, the CGCS2000 Gauss-Krüger
zones) are written northing/latitude first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from cim import crs as cimcrs
from cim.errors import CrsError, InvalidInput
from layers import cql2
from layers.spec import Attribute, LayerSpec
from layers.sqlbuild import PG_TYPE, Params, base_where, coerce, col, feature_sql, geom_col, table_sql

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EXACT_COUNT_CAP = 2000  # numberMatched is exact below this many matches, an estimate above
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 10


@dataclass(frozen=True)
class CrsChoice:
    """A CRS named in a request: its SRID, URI and how coordinates are written."""

    srid: int          # 4326 stands for CRS84 / storage-equivalent lon/lat (no transform)
    uri: str
    flip: bool         # axis order north/east (lat/lon, northing/easting)
    transform: bool    # needs ST_Transform from storage

    @property
    def digits(self) -> int:
        """Decimal digits of GeoJSON output: ~1 cm in degrees or in metres."""
        return 3 if self.transform else 8


DEFAULT_CRS = CrsChoice(cimcrs.WGS84, CRS84, False, False)


@lru_cache(maxsize=1)
def offered_crs() -> tuple[str, ...]:
    """URIs of every CRS the features API offers (``crs`` list of each collection)."""
    uris = [CRS84]
    for epsg in cimcrs.output_crs_list():
        uris.append(f"http://www.opengis.net/def/crs/EPSG/0/{epsg}")
    return tuple(dict.fromkeys(uris))


def parse_crs(value: str | None, what: str = "crs") -> CrsChoice:
    """Parse a ``crs`` / ``bbox-crs`` / ``filter-crs`` value; only offered CRSs are accepted."""
    if value is None or value == "":
        return DEFAULT_CRS
    v = value.strip().strip("[]")
    if len(v) > 200:
        raise CrsError("坐标参考系参数过长", f"{what} is too long")
    if v.lower().endswith(("crs84", "crs84h")):
        return DEFAULT_CRS
    try:
        epsg = cimcrs.parse_crs_uri(v)
    except CrsError as exc:
        raise CrsError(f"{what} 无法识别：{value}", f"{what}: unrecognised CRS {value!r}") from exc
    if epsg not in cimcrs.output_crs_list():
        raise CrsError(f"{what} 不受支持：{value}（支持 CRS84、EPSG:4490、4326、3857 及 CGCS2000 高斯-克吕格分带）",
                       f"{what}: unsupported CRS {value!r} (supported: CRS84, EPSG:4490, 4326, 3857 and the "
                       "CGCS2000 Gauss-Krüger zones)")
    crs = cimcrs.crs_from_epsg(epsg)
    flip = crs.axis_info[0].direction in ("north", "south")
    geographic_same = epsg in (cimcrs.STORAGE_SRID, cimcrs.WGS84)
    return CrsChoice(cimcrs.STORAGE_SRID if geographic_same else epsg,
                     f"http://www.opengis.net/def/crs/EPSG/0/{epsg}", flip, not geographic_same)


def parse_bbox(value: str, crs: CrsChoice) -> tuple[float, float, float, float]:
    """``bbox`` → (minx, miny, maxx, maxy) in the CRS's x/y (lon/lat, easting/northing) order."""
    parts = value.split(",")
    try:
        nums = [float(p) for p in parts]
    except ValueError as exc:
        raise InvalidInput(f"bbox 必须是逗号分隔的 4 个数：{value[:80]}", f"bbox must be 4 comma-separated numbers: {value[:80]}") from exc
    if len(nums) == 6:
        nums = [nums[0], nums[1], nums[3], nums[4]]
    if len(nums) != 4 or any(n != n or abs(n) == float("inf") for n in nums):
        raise InvalidInput(f"bbox 必须是 4 个（或 6 个）有限数：{value[:80]}", f"bbox must be 4 (or 6) finite numbers: {value[:80]}")
    if crs.flip:
        nums = [nums[1], nums[0], nums[3], nums[2]]
    minx, miny, maxx, maxy = nums
    if miny > maxy:
        raise InvalidInput("bbox 下边界大于上边界", "bbox lower bound is greater than its upper bound")
    if not crs.transform:
        if not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= 90 and -90 <= maxy <= 90):
            raise InvalidInput("bbox 经纬度超出范围", "bbox longitude/latitude out of range")
        if minx > maxx:  # crosses the antimeridian: not within China, treat as the whole width
            minx, maxx = -180.0, 180.0
    elif minx > maxx or max(abs(n) for n in nums) > 1e8:
        raise InvalidInput("bbox 坐标无效", "bbox coordinates are invalid")
    return minx, miny, maxx, maxy


def parse_sortby(value: str | None, spec: LayerSpec) -> list[tuple[str, bool]]:
    """``sortby=+a,-b`` → [(column, descending)], exposed attributes (and ``id``) only."""
    out: list[tuple[str, bool]] = []
    if not value:
        return out
    for raw in value.split(","):
        item = raw.strip()
        desc = item.startswith("-")
        name = item.lstrip("+-").strip()
        if name.lower().endswith((" desc", " asc")):
            desc = name.lower().endswith(" desc")
            name = name.rsplit(" ", 1)[0].strip()
        if name in ("id", spec.id_column):
            out.append((spec.id_column, desc))
        elif spec.attribute(name) is not None:
            out.append((name, desc))
        else:
            raise InvalidInput(f"sortby 中的 {name!r} 不是图层 {spec.id} 的属性", f"sortby: {name!r} is not a property of {spec.id}",
                               allowed=[a.name for a in spec.attributes])
    if len(out) > 5:
        raise InvalidInput("sortby 最多 5 个属性", "sortby takes at most 5 properties")
    return out


def parse_properties(value: str | None, spec: LayerSpec) -> list[Attribute]:
    """``properties=a,b`` → the attributes to return (all when absent, none when empty)."""
    if value is None:
        return list(spec.attributes)
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if spec.attribute(n) is None]
    if unknown:
        raise InvalidInput(f"properties 中有未知属性：{', '.join(unknown)}", f"properties: unknown {', '.join(unknown)}",
                           allowed=[a.name for a in spec.attributes])
    return [a for a in spec.attributes if a.name in names]


def parse_int(value: str | None, name: str, default: int, low: int, high: int) -> int:
    """A bounded integer query parameter (400 when malformed or out of range)."""
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError as exc:
        raise InvalidInput(f"{name} 必须是整数：{value[:40]}", f"{name} must be an integer: {value[:40]}") from exc
    if not low <= n <= high:
        raise InvalidInput(f"{name} 必须在 {low} 到 {high} 之间", f"{name} must be between {low} and {high}")
    return n


@dataclass
class ItemsRequest:
    """A parsed items request of one layer."""

    spec: LayerSpec
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    bbox: tuple[float, float, float, float] | None = None
    bbox_crs: CrsChoice = DEFAULT_CRS
    equals: dict[str, str] = field(default_factory=dict)
    filter: str | None = None
    filter_lang: str | None = None
    filter_crs: CrsChoice = DEFAULT_CRS
    sortby: list[tuple[str, bool]] = field(default_factory=list)
    properties: list[Attribute] | None = None
    crs: CrsChoice = DEFAULT_CRS


def output_geometry(spec: LayerSpec, out: CrsChoice, params: Params, alias: str = "t") -> str:
    """Geometry expression of the output: transform (and axis flip) only here, never in filters."""
    g = geom_col(spec, alias)
    if out.transform:
        g = f"ST_Transform({g}, {params.add(out.srid, 'int')})"
    if out.flip:
        g = f"ST_FlipCoordinates({g})"
    return g


def where_clause(req: ItemsRequest, params: Params) -> str:
    """WHERE conditions of an items request (base, bbox, equality, CQL2)."""
    spec = req.spec
    conds = base_where(spec, params)
    if req.bbox is not None:
        b = [params.add(float(v), "float8") for v in req.bbox]
        if req.bbox_crs.transform:
            srid = params.add(req.bbox_crs.srid, "int")
            envelope = f"ST_Transform(ST_MakeEnvelope({b[0]}, {b[1]}, {b[2]}, {b[3]}, {srid}), {cimcrs.STORAGE_SRID})"
        else:
            # CRS84 / EPSG:4326 / EPSG:4490 coordinates are storage coordinates (PROJ's WGS 84 →
            # CGCS2000 operation is a null "ballpark" offset), so the envelope is made in the storage
            # SRID directly: no PROJ set-up on a fresh connection, no transform per statement.
            envelope = f"ST_MakeEnvelope({b[0]}, {b[1]}, {b[2]}, {b[3]}, {cimcrs.STORAGE_SRID})"
        conds.append(f"{geom_col(spec)} && {envelope}")
    for name, raw in req.equals.items():
        attr = spec.attribute(name)
        try:
            value = coerce(attr.type, raw)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"属性 {name} 的值 {raw!r} 不是 {attr.type} 类型", f"{name}: {raw!r} is not a valid {attr.type}") from exc
        conds.append(f"{col(spec, name)} = {params.add(value, PG_TYPE[attr.type])}")
    if req.filter:
        conds.append(cql2.compile_request(spec, params, req.filter, req.filter_lang,
                                          req.filter_crs.srid, req.filter_crs.flip))
    return " AND ".join(conds)


def items_sql(req: ItemsRequest) -> tuple[str, list]:
    """One statement returning (capped exact count, rows returned, features joined as JSON text)."""
    spec = req.spec
    params = Params()
    attrs = req.properties if req.properties is not None else list(spec.attributes)
    geom = output_geometry(spec, req.crs, params)
    where = where_clause(req, params)
    keys = [f"{col(spec, c)} {'DESC' if d else 'ASC'}{' NULLS LAST' if not d else ' NULLS FIRST'}" for c, d in req.sortby]
    if spec.id_column not in [c for c, _ in req.sortby]:
        keys.append(f"{col(spec, spec.id_column)} ASC")
    order = ", ".join(keys)
    table = table_sql(spec)
    cap = params.add(EXACT_COUNT_CAP, "bigint")
    limit = params.add(req.limit, "bigint")
    offset = params.add(req.offset, "bigint")
    sql = (f"SELECT (SELECT count(*) FROM (SELECT 1 FROM {table} t WHERE {where} LIMIT {cap}) c) AS n, "
           f"count(p.f) AS returned, string_agg(p.f, ',' ORDER BY p.ord) AS features "
           f"FROM (SELECT {feature_sql(spec, geom, attrs, req.crs.digits)} AS f, row_number() OVER (ORDER BY {order}) AS ord "
           f"FROM {table} t WHERE {where} ORDER BY {order} LIMIT {limit} OFFSET {offset}) p")
    return sql, params.values


def item_sql(spec: LayerSpec, fid: int, out: CrsChoice, attrs: list[Attribute] | None = None) -> tuple[str, list]:
    """One feature by id (current rows of the layer only)."""
    params = Params()
    geom = output_geometry(spec, out, params)
    where = " AND ".join(base_where(spec, params))
    attrs = attrs if attrs is not None else list(spec.attributes)
    sql = (f"SELECT {feature_sql(spec, geom, attrs, out.digits)} FROM {table_sql(spec)} t "
           f"WHERE {where} AND {col(spec, spec.id_column)} = {params.add(fid, 'bigint')}")
    return sql, params.values


def layer_stats_sql(spec: LayerSpec) -> tuple[str, str, list]:
    """(planner-estimate SQL, exact-count-and-extent SQL, params) of a layer's current rows.

    The estimate is ``EXPLAIN`` of the unfiltered layer query (reltuples scaled by the
    selectivity of ``is_current`` and the spec's ``where``); the exact form is used for small
    layers and for the extent when ``ST_EstimatedExtent`` has no statistics yet.
    """
    params = Params()
    where = " AND ".join(base_where(spec, params))
    table = table_sql(spec)
    explain = f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {table} t WHERE {where}"
    exact = (f"SELECT n, ST_XMin(e) AS w, ST_YMin(e) AS s, ST_XMax(e) AS e, ST_YMax(e) AS n_ FROM "
             f"(SELECT count(*) AS n, ST_Extent({geom_col(spec)}) AS e FROM {table} t WHERE {where}) x")
    return explain, exact, params.values


def queryables(spec: LayerSpec, base_url: str) -> dict:
    """JSON Schema of a layer's queryables (OGC 19-079r2 §6.2)."""
    types = {"text": {"type": "string"}, "int": {"type": "integer"}, "float": {"type": "number"},
             "bool": {"type": "boolean"}, "date": {"type": "string", "format": "date"}}
    props: dict[str, dict] = {
        "geometry": {"format": f"geometry-{spec.geometry.type.lower()}",
                     "$ref": f"https://geojson.org/schema/{spec.geometry.type}.json", "x-ogc-role": "primary-geometry"},
        "id": {"title": "编号 / id", "type": "integer", "x-ogc-role": "id"},
    }
    for a in spec.attributes:
        entry = {"title": f"{a.label_zh} / {a.label_en}", **types[a.type]}
        if a.unit:
            entry["x-unit"] = a.unit
        if a.dictionary:
            entry["description"] = f"代码见 /api/dictionaries/{a.dictionary} / codes in /api/dictionaries/{a.dictionary}"
        props[a.name] = entry
    return {"$schema": "https://json-schema.org/draft/2019-09/schema",
            "$id": f"{base_url}/ogc/collections/{spec.id}/queryables",
            "type": "object", "title": spec.title_zh, "description": spec.title_en,
            "properties": props, "additionalProperties": False}


def sortables(spec: LayerSpec, base_url: str) -> dict:
    """JSON Schema of the properties ``sortby`` accepts (OGC API – Features Part 5 sortables)."""
    schema = queryables(spec, base_url)
    schema["$id"] = f"{base_url}/ogc/collections/{spec.id}/sortables"
    schema["properties"] = {k: v for k, v in schema["properties"].items() if k != "geometry"}
    return schema
