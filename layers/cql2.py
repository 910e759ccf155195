"""CQL2 (OGC 21-065) filters: text and JSON encodings → a bound SQL condition.

The text encoding is parsed by :mod:`layers.cql2_text` into the JSON encoding, so one
compiler serves both. Supported (conformance classes Basic CQL2, Advanced Comparison
Operators, Case-insensitive Comparison, Basic Spatial Functions, Spatial Functions):
``= <> < > <= >=``, ``LIKE``, ``IN``, ``BETWEEN``, ``IS [NOT] NULL``, ``AND OR NOT``, ``CASEI``,
``S_INTERSECTS S_EQUALS S_DISJOINT S_TOUCHES S_WITHIN S_OVERLAPS S_CROSSES S_CONTAINS`` and
the extension ``S_DWITHIN(geom, literal, metres)``; literals: strings, numbers, booleans,
``DATE('…')``, ``TIMESTAMP('…')``, WKT geometries and ``BBOX(…)``.

Property names are checked against the layer's exposed attributes (the whitelist), values are
bound, and geometry literals are moved from ``filter-crs`` into the storage CRS — the column
is never transformed, so the GiST index serves spatial predicates (OGC 19-079r2 §8,
``filter-crs``; the literal's axis order is that of the filter CRS).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
import shapely.errors
import shapely.geometry
import shapely.ops
from shapely.geometry.base import BaseGeometry

from cim.crs import STORAGE_SRID
from cim.errors import InvalidInput
from layers.cql2_text import BIGINT_MAX, MAX_DEPTH, bad_filter, parse_json, parse_text
from layers.cql2_text import COMPARE as _COMPARE
from layers.spec import LayerSpec
from layers.sqlbuild import PG_TYPE, Params, coerce, col, geom_col

_SPATIAL = {"s_intersects": "ST_Intersects", "s_equals": "ST_Equals", "s_disjoint": "ST_Disjoint",
            "s_touches": "ST_Touches", "s_within": "ST_Within", "s_overlaps": "ST_Overlaps",
            "s_crosses": "ST_Crosses", "s_contains": "ST_Contains"}
GEOMETRY_NAMES = ("geometry", "geom")


# --------------------------------------------------------------------------- compiler


@dataclass
class FilterContext:
    """What a filter may refer to and how its geometry literals are read."""

    spec: LayerSpec
    params: Params
    srid: int = 4326          # filter-crs (CRS84 → 4326, identical to storage within 1 m)
    flip: bool = False        # literals are in lat/lon (north/east) axis order
    alias: str = "t"


@dataclass
class _Expr:
    sql: str
    kind: str  # 'bool' | 'text' | 'int' | 'float' | 'date' | 'timestamp' | 'geometry' | 'null' | 'any'


def compile_filter(node: Any, ctx: FilterContext) -> str:
    """SQL condition for a CQL2 JSON tree; every value is bound through ``ctx.params``."""
    expr = _compile(node, ctx, 0)
    if expr.kind != "bool":
        raise bad_filter("结果不是布尔条件", "the expression is not a boolean condition")
    return expr.sql


def _compile(node: Any, ctx: FilterContext, depth: int) -> _Expr:
    if depth > MAX_DEPTH:
        raise bad_filter("嵌套过深", "nesting too deep")
    if isinstance(node, dict):
        if "op" in node:
            return _op(node, ctx, depth)
        if "property" in node:
            return _property(node["property"], ctx)
        if "date" in node or "timestamp" in node:
            return _temporal(node, ctx)
        if "bbox" in node:
            return _geometry_literal(node, ctx)
        if "type" in node and "coordinates" in node or node.get("type") == "GeometryCollection":
            return _geometry_literal(node, ctx)
        raise bad_filter(f"无法识别的节点：{json.dumps(node, ensure_ascii=False)[:80]}",
                   f"unrecognised node: {json.dumps(node)[:80]}")
    if isinstance(node, bool):
        return _Expr(ctx.params.add(node, "boolean"), "bool")
    if isinstance(node, int):
        return _Expr(ctx.params.add(node, "bigint"), "int")
    if isinstance(node, float):
        return _Expr(ctx.params.add(node, "float8"), "float")
    if isinstance(node, str):
        return _Expr(ctx.params.add(node, "text"), "text")
    if node is None:
        return _Expr("NULL", "null")
    raise bad_filter(f"无法识别的值：{str(node)[:80]}", f"unrecognised value: {str(node)[:80]}")


def _property(name: Any, ctx: FilterContext) -> _Expr:
    if not isinstance(name, str):
        raise bad_filter("属性名必须是字符串", "property names must be strings")
    spec = ctx.spec
    if name in GEOMETRY_NAMES or name == spec.geometry.column:
        return _Expr(geom_col(spec, ctx.alias), "geometry")
    if name == spec.id_column or name == "id":
        return _Expr(col(spec, spec.id_column, ctx.alias), "int")
    attr = spec.attribute(name)
    if attr is None:
        allowed = ", ".join(a.name for a in spec.attributes)
        raise bad_filter(f"图层 {spec.id} 没有可查询属性 {name}（可用：{allowed}）",
                   f"layer {spec.id} has no queryable {name} (queryables: {allowed})", property=name)
    return _Expr(col(spec, attr.name, ctx.alias), attr.type)


def _temporal(node: dict[str, Any], ctx: FilterContext) -> _Expr:
    if "date" in node:
        try:
            return _Expr(ctx.params.add(dt.date.fromisoformat(str(node["date"])), "date"), "date")
        except ValueError as exc:
            raise bad_filter(f"日期无效：{node['date']}", f"invalid date: {node['date']}") from exc
    try:
        value = dt.datetime.fromisoformat(str(node["timestamp"]).replace("Z", "+00:00"))
    except ValueError as exc:
        raise bad_filter(f"时间戳无效：{node['timestamp']}", f"invalid timestamp: {node['timestamp']}") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return _Expr(ctx.params.add(value, "timestamptz"), "timestamp")


def _swap_xy(x: Any, y: Any, z: Any = None) -> tuple[Any, Any]:
    return y, x


def _geometry_literal(node: dict[str, Any], ctx: FilterContext) -> _Expr:
    geom: BaseGeometry | None
    try:
        if "bbox" in node:
            b = [float(v) for v in node["bbox"]]
            if len(b) == 6:
                b = [b[0], b[1], b[3], b[4]]
            if len(b) != 4:
                raise ValueError("bbox needs 4 or 6 numbers")
            geom = shapely.box(b[0], b[1], b[2], b[3])
        else:
            geom = shapely.geometry.shape(node)
    except (ValueError, TypeError, KeyError, AttributeError, shapely.errors.ShapelyError) as exc:
        raise bad_filter("几何字面量无效", "invalid geometry literal") from exc
    # NaN, ±Infinity and absurd values (shapely.box of NaN corners gives None)
    if geom is None or geom.is_empty or not bool(np.all(np.abs(shapely.get_coordinates(geom)) < 1e9)):
        raise bad_filter("几何字面量为空或坐标超出范围", "geometry literal is empty or its coordinates are out of range")
    if ctx.flip:
        geom = shapely.ops.transform(_swap_xy, geom)
    if not geom.is_valid:
        try:
            geom = shapely.make_valid(geom)
        except shapely.errors.GEOSException as exc:
            raise bad_filter("几何字面量无效且无法修复", "invalid geometry literal that cannot be repaired") from exc
    wkb = ctx.params.add(shapely.to_wkb(geom, include_srid=False), "bytea")
    srid = ctx.params.add(ctx.srid, "int")
    return _Expr(f"ST_Transform(ST_SetSRID(ST_GeomFromWKB({wkb}), {srid}), {STORAGE_SRID})", "geometry")


_NUMERIC = {"int", "float"}


def _typed_pair(a: Any, b: Any, ctx: FilterContext, depth: int) -> tuple[_Expr, _Expr]:
    """Compile two operands, binding a literal with the type of the property it meets."""
    left_prop, right_prop = _prop_kind(a, ctx), _prop_kind(b, ctx)
    left = _literal_as(a, right_prop, ctx) if left_prop is None and right_prop else _compile(a, ctx, depth + 1)
    right = _literal_as(b, left_prop, ctx) if right_prop is None and left_prop else _compile(b, ctx, depth + 1)
    if {left.kind, right.kind} <= _NUMERIC or left.kind == right.kind or "null" in (left.kind, right.kind) \
            or "any" in (left.kind, right.kind) or {left.kind, right.kind} == {"date", "timestamp"}:
        return left, right
    raise bad_filter(f"类型不匹配：{left.kind} 与 {right.kind}", f"type mismatch: {left.kind} and {right.kind}")


def _prop_kind(node: Any, ctx: FilterContext) -> str | None:
    """Attribute type of a property node (also inside CASEI), or None for literals."""
    if isinstance(node, dict) and "property" in node:
        return _property(node["property"], ctx).kind
    if isinstance(node, dict) and str(node.get("op", "")).lower() in ("casei", "accenti"):
        return "text"
    return None


def _literal_as(node: Any, kind: str, ctx: FilterContext) -> _Expr:
    """Bind a plain literal converted to ``kind`` (e.g. '12' compared with an int property)."""
    if isinstance(node, (dict, list)) or node is None or kind not in PG_TYPE:
        return _compile(node, ctx, 1)
    try:
        value = coerce(kind, node)
    except (ValueError, TypeError) as exc:
        raise bad_filter(f"值 {node!r} 不能与 {kind} 类型属性比较", f"value {node!r} cannot be compared with a {kind} property") from exc
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > BIGINT_MAX:
        raise bad_filter(f"值 {node!r} 超出整数范围", f"value {node!r} is out of the integer range")
    return _Expr(ctx.params.add(value, PG_TYPE[kind]), kind)


def _args(node: dict[str, Any], count: int | tuple[int, ...]) -> list[Any]:
    args = node.get("args")
    counts = (count,) if isinstance(count, int) else count
    if not isinstance(args, list) or len(args) not in counts:
        raise bad_filter(f"运算 {node.get('op')} 的参数个数不对", f"wrong number of arguments for {node.get('op')}")
    return args


def _op(node: dict[str, Any], ctx: FilterContext, depth: int) -> _Expr:
    op = str(node["op"]).lower()
    if op in ("and", "or"):
        args = node.get("args")
        if not isinstance(args, list) or len(args) < 2:
            raise bad_filter(f"{op} 至少需要两个条件", f"{op} needs at least two conditions")
        parts = [_bool(a, ctx, depth) for a in args]
        return _Expr("(" + f" {op.upper()} ".join(parts) + ")", "bool")
    if op == "not":
        return _Expr(f"(NOT {_bool(_args(node, 1)[0], ctx, depth)})", "bool")
    if op in _COMPARE:
        a, b = _args(node, 2)
        left, right = _typed_pair(a, b, ctx, depth)
        if "geometry" in (left.kind, right.kind):
            raise bad_filter("几何不能用比较运算符", "geometries cannot be compared with comparison operators")
        return _Expr(f"({left.sql} {op} {right.sql})", "bool")
    if op == "like":
        a, b = _args(node, 2)
        left, right = _compile(a, ctx, depth + 1), _literal_as(b, "text", ctx)
        if left.kind != "text" or right.kind != "text":
            raise bad_filter("LIKE 只能用于文本", "LIKE applies to text only")
        return _Expr(f"({left.sql} LIKE {right.sql})", "bool")
    if op == "between":
        a, low, high = _args(node, 3)
        left, lo = _typed_pair(a, low, ctx, depth)
        _, hi = _typed_pair(a, high, ctx, depth)
        if left.kind not in _NUMERIC | {"date", "timestamp", "any"}:
            raise bad_filter("BETWEEN 只能用于数值或日期", "BETWEEN applies to numbers and dates")
        return _Expr(f"({left.sql} BETWEEN {lo.sql} AND {hi.sql})", "bool")
    if op == "in":
        a, items = _args(node, 2)
        if not isinstance(items, list) or not items or len(items) > 10_000:
            raise bad_filter("IN 需要 1–10000 个值的列表", "IN needs a list of 1 to 10000 values")
        left = _compile(a, ctx, depth + 1)
        kind = left.kind if left.kind in PG_TYPE else None
        if kind is None:
            raise bad_filter("IN 的左侧必须是属性", "the left side of IN must be a property")
        try:
            values = [coerce(kind, v) for v in items]
        except (ValueError, TypeError) as exc:
            raise bad_filter(f"IN 列表中的值不是 {kind} 类型", f"IN list values are not of type {kind}") from exc
        return _Expr(f"({left.sql} = ANY({ctx.params.add(values, PG_TYPE[kind] + '[]')}))", "bool")
    if op == "isnull":
        return _Expr(f"({_compile(_args(node, 1)[0], ctx, depth + 1).sql} IS NULL)", "bool")
    if op in ("casei", "accenti"):
        if op == "accenti":
            raise bad_filter("不支持 ACCENTI", "ACCENTI is not supported")
        inner = _compile(_args(node, 1)[0], ctx, depth + 1)
        if inner.kind != "text":
            raise bad_filter("CASEI 只能用于文本", "CASEI applies to text only")
        return _Expr(f"lower({inner.sql})", "text")
    if op in _SPATIAL:
        a, b = (_compile(x, ctx, depth + 1) for x in _args(node, 2))
        if a.kind != "geometry" or b.kind != "geometry":
            raise bad_filter(f"{op.upper()} 需要两个几何参数", f"{op.upper()} needs two geometry arguments")
        return _Expr(f"{_SPATIAL[op]}({a.sql}, {b.sql})", "bool")
    if op == "s_dwithin":
        a, b, dist = _args(node, 3)
        ga, gb = _compile(a, ctx, depth + 1), _compile(b, ctx, depth + 1)
        if ga.kind != "geometry" or gb.kind != "geometry" or isinstance(dist, bool) or not isinstance(dist, (int, float)) \
                or not 0 <= dist <= 100_000:
            raise bad_filter("S_DWITHIN(几何, 几何, 米数 0–100000)", "S_DWITHIN(geometry, geometry, metres 0–100000)")
        d = ctx.params.add(float(dist), "float8")
        # expand in degrees first (index), then the exact geodesic test
        deg = f"({d} / 111000.0 / greatest(cos(radians(least(greatest(abs(ST_YMax({gb.sql})), abs(ST_YMin({gb.sql}))), 89))), 0.01))"
        return _Expr(f"({ga.sql} && ST_Expand({gb.sql}, {deg}) AND ST_DWithin({ga.sql}::geography, {gb.sql}::geography, {d}))",
                     "bool")
    raise bad_filter(f"不支持的运算：{node['op']}", f"unsupported operator: {node['op']}")


def _bool(node: Any, ctx: FilterContext, depth: int) -> str:
    expr = _compile(node, ctx, depth + 1)
    if expr.kind != "bool":
        raise bad_filter("AND/OR/NOT 的参数必须是条件", "AND/OR/NOT arguments must be conditions")
    return expr.sql


def compile_request(spec: LayerSpec, params: Params, text: str, lang: str | None, srid: int, flip: bool) -> str:
    """Parse and compile a ``filter`` query parameter in ``filter-lang`` (default cql2-text)."""
    lang = (lang or "cql2-text").lower()
    if lang == "cql2-text":
        tree = parse_text(text)
    elif lang == "cql2-json":
        tree = parse_json(text)
    else:
        raise InvalidInput(f"不支持的 filter-lang：{lang}（可用 cql2-text、cql2-json）",
                           f"unsupported filter-lang: {lang} (use cql2-text or cql2-json)")
    return compile_filter(tree, FilterContext(spec, params, srid, flip))
