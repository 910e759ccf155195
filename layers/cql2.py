"""CQL2 (OGC 21-065) filters: text and JSON encodings → a bound SQL condition.

The text encoding is parsed by a small recursive-descent parser into the JSON encoding, so one
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
import re
from dataclasses import dataclass
from typing import Any

import shapely
import shapely.errors
import shapely.geometry
import shapely.ops
import shapely.wkt

from cim.crs import STORAGE_SRID
from cim.errors import InvalidInput
from layers.spec import LayerSpec
from layers.sqlbuild import PG_TYPE, Params, coerce, col, geom_col

MAX_FILTER_LEN = 20_000
MAX_DEPTH = 50

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>'(?:[^']|'')*')
  | (?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
  | (?P<qid>"(?:[^"]|"")+")
  | (?P<id>[A-Za-z_\u4e00-\u9fff][A-Za-z0-9_:.\u4e00-\u9fff]*)
  | (?P<op><>|<=|>=|=|<|>|\(|\)|,|\[|\]|-|\+|\*|/)
""", re.VERBOSE)

_WKT = {"POINT", "LINESTRING", "POLYGON", "MULTIPOINT", "MULTILINESTRING", "MULTIPOLYGON", "GEOMETRYCOLLECTION"}
_COMPARE = {"=", "<>", "<", ">", "<=", ">="}
_SPATIAL = {"s_intersects": "ST_Intersects", "s_equals": "ST_Equals", "s_disjoint": "ST_Disjoint",
            "s_touches": "ST_Touches", "s_within": "ST_Within", "s_overlaps": "ST_Overlaps",
            "s_crosses": "ST_Crosses", "s_contains": "ST_Contains"}
GEOMETRY_NAMES = ("geometry", "geom")


def _bad(zh: str, en: str, **detail: Any) -> InvalidInput:
    return InvalidInput(f"过滤条件无效：{zh}", f"invalid filter: {en}", **detail)


# --------------------------------------------------------------------------- text parser


@dataclass
class _Tok:
    kind: str
    value: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise _bad(f"第 {pos + 1} 个字符处无法识别：{text[pos:pos + 10]!r}",
                       f"unexpected character at position {pos + 1}: {text[pos:pos + 10]!r}")
        kind = m.lastgroup
        if kind == "id" and m.group().upper() in _WKT:
            end = _wkt_end(text, m.end())
            toks.append(_Tok("wkt", text[m.start():end], m.start()))
            pos = end
            continue
        if kind != "ws":
            toks.append(_Tok(kind, m.group(), m.start()))
        pos = m.end()
    toks.append(_Tok("eof", "", len(text)))
    return toks


def _wkt_end(text: str, pos: int) -> int:
    """End of a WKT literal starting before ``pos`` (balanced parentheses or EMPTY)."""
    m = re.compile(r"\s*(?:ZM|Z|M)?\s*").match(text, pos)
    pos = m.end()
    if text[pos:pos + 5].upper() == "EMPTY":
        return pos + 5
    if pos >= len(text) or text[pos] != "(":
        raise _bad(f"几何字面量不完整（第 {pos + 1} 个字符）", f"incomplete geometry literal at position {pos + 1}")
    depth = 0
    for i in range(pos, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i + 1
    raise _bad("几何字面量括号不匹配", "unbalanced parentheses in a geometry literal")


class _Parser:
    """Recursive descent over CQL2 text producing the CQL2 JSON tree."""

    def __init__(self, text: str) -> None:
        self.toks = _tokenize(text)
        self.i = 0
        self.depth = 0

    # helpers
    def peek(self, k: int = 0) -> _Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def kw(self, *words: str, k: int = 0) -> bool:
        t = self.peek(k)
        return t.kind == "id" and t.value.upper() in words

    def take(self) -> _Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def expect(self, value: str) -> None:
        t = self.take()
        if t.value.upper() != value:
            raise _bad(f"第 {t.pos + 1} 个字符处应为 {value!r}，实为 {t.value or '结尾'!r}",
                       f"expected {value!r} at position {t.pos + 1}, found {t.value or 'end of text'!r}")

    def parse(self) -> Any:
        node = self.or_expr()
        t = self.peek()
        if t.kind != "eof":
            raise _bad(f"第 {t.pos + 1} 个字符处有多余内容：{t.value!r}", f"unexpected {t.value!r} at position {t.pos + 1}")
        return node

    # boolean structure
    def or_expr(self) -> Any:
        args = [self.and_expr()]
        while self.kw("OR"):
            self.take()
            args.append(self.and_expr())
        return args[0] if len(args) == 1 else {"op": "or", "args": args}

    def and_expr(self) -> Any:
        args = [self.not_expr()]
        while self.kw("AND"):
            self.take()
            args.append(self.not_expr())
        return args[0] if len(args) == 1 else {"op": "and", "args": args}

    def not_expr(self) -> Any:
        if self.kw("NOT"):
            self.take()
            return {"op": "not", "args": [self.not_expr()]}
        return self.predicate()

    def predicate(self) -> Any:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _bad("嵌套过深", "nesting too deep")
        try:
            if self.peek().value == "(" and self._group_is_boolean():
                self.take()
                node = self.or_expr()
                self.expect(")")
                return node
            left = self.scalar()
            return self.after_scalar(left)
        finally:
            self.depth -= 1

    def _group_is_boolean(self) -> bool:
        """Whether a '(' opens a boolean group (rather than a parenthesised scalar)."""
        depth, j = 0, self.i
        while j < len(self.toks):
            t = self.toks[j]
            if t.value == "(":
                depth += 1
            elif t.value == ")":
                depth -= 1
                if depth == 0:
                    break
            elif depth >= 1 and (t.kind == "op" and t.value in _COMPARE
                                 or t.kind == "id" and t.value.upper() in ("AND", "OR", "NOT", "LIKE", "IN",
                                                                           "BETWEEN", "IS")):
                return True
            j += 1
        return False

    def after_scalar(self, left: Any) -> Any:
        t = self.peek()
        if t.kind == "op" and t.value in _COMPARE:
            self.take()
            return {"op": t.value, "args": [left, self.scalar()]}
        negate = False
        if self.kw("NOT") and self.kw("LIKE", "BETWEEN", "IN", k=1):
            self.take()
            negate = True
        if self.kw("LIKE"):
            self.take()
            node = {"op": "like", "args": [left, self.scalar()]}
        elif self.kw("BETWEEN"):
            self.take()
            low = self.scalar()
            self.expect("AND")
            node = {"op": "between", "args": [left, low, self.scalar()]}
        elif self.kw("IN"):
            self.take()
            self.expect("(")
            items = [self.scalar()]
            while self.peek().value == ",":
                self.take()
                items.append(self.scalar())
            self.expect(")")
            node = {"op": "in", "args": [left, items]}
        elif self.kw("IS"):
            self.take()
            if self.kw("NOT"):
                self.take()
                negate = True
            self.expect("NULL")
            node = {"op": "isNull", "args": [left]}
        else:
            # a bare boolean: a function returning a boolean, a boolean property or literal
            return left
        return {"op": "not", "args": [node]} if negate else node

    # scalars
    def scalar(self) -> Any:
        t = self.take()
        if t.kind == "op" and t.value in ("-", "+") and self.peek().kind == "num":
            num = self.take()
            value = float(num.value) if re.search(r"[.eE]", num.value) else int(num.value)
            return -value if t.value == "-" else value
        if t.kind == "num":
            return float(t.value) if re.search(r"[.eE]", t.value) else int(t.value)
        if t.kind == "str":
            return t.value[1:-1].replace("''", "'")
        if t.kind == "qid":
            return {"property": t.value[1:-1].replace('""', '"')}
        if t.kind == "wkt":
            return _wkt_to_geojson(t.value)
        if t.value == "(":
            inner = self.scalar()
            self.expect(")")
            return inner
        if t.kind == "id":
            word = t.value.upper()
            if word in ("TRUE", "FALSE"):
                return word == "TRUE"
            if self.peek().value == "(":
                return self.function(t)
            if word in ("AND", "OR", "NOT", "LIKE", "IN", "BETWEEN", "IS", "NULL"):
                raise _bad(f"第 {t.pos + 1} 个字符处不应出现关键字 {t.value}", f"unexpected keyword {t.value} at position {t.pos + 1}")
            return {"property": t.value}
        raise _bad(f"第 {t.pos + 1} 个字符处应为值或属性名，实为 {t.value or '结尾'!r}",
                   f"expected a value or property at position {t.pos + 1}, found {t.value or 'end of text'!r}")

    def function(self, name_tok: _Tok) -> Any:
        name = name_tok.value.lower()
        self.expect("(")
        args: list[Any] = []
        if self.peek().value != ")":
            args.append(self.scalar())
            while self.peek().value == ",":
                self.take()
                args.append(self.scalar())
        self.expect(")")
        if name == "date":
            return {"date": _one_string(args, "DATE")}
        if name == "timestamp":
            return {"timestamp": _one_string(args, "TIMESTAMP")}
        if name in ("bbox", "envelope"):
            return {"bbox": args}
        return {"op": name, "args": args}


def _one_string(args: list, name: str) -> str:
    if len(args) != 1 or not isinstance(args[0], str):
        raise _bad(f"{name}() 需要一个字符串参数", f"{name}() takes one string argument")
    return args[0]


def _wkt_to_geojson(text: str) -> dict:
    try:
        geom = shapely.wkt.loads(text)
    except Exception as exc:  # shapely raises GEOSException / ShapelyError
        raise _bad(f"WKT 几何无效：{text[:60]}", f"invalid WKT geometry: {text[:60]}") from exc
    return shapely.geometry.mapping(geom)


def parse_text(text: str) -> Any:
    """Parse CQL2 text into the CQL2 JSON tree (raises :class:`InvalidInput`)."""
    if len(text) > MAX_FILTER_LEN:
        raise _bad("过长", f"longer than {MAX_FILTER_LEN} characters")
    if not text.strip():
        raise _bad("为空", "empty")
    try:
        return _Parser(text).parse()
    except RecursionError as exc:
        raise _bad("嵌套过深", "nesting too deep") from exc


def parse_json(text: str | dict) -> Any:
    """Parse the CQL2 JSON encoding (a string or an already decoded object)."""
    if isinstance(text, str):
        if len(text) > MAX_FILTER_LEN * 5:
            raise _bad("过长", "too long")
        try:
            return json.loads(text)
        except RecursionError as exc:
            raise _bad("嵌套过深", "nesting too deep") from exc
        except ValueError as exc:
            raise _bad("不是有效的 JSON", "not valid JSON") from exc
    return text


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
        raise _bad("结果不是布尔条件", "the expression is not a boolean condition")
    return expr.sql


def _compile(node: Any, ctx: FilterContext, depth: int) -> _Expr:
    if depth > MAX_DEPTH:
        raise _bad("嵌套过深", "nesting too deep")
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
        raise _bad(f"无法识别的节点：{json.dumps(node, ensure_ascii=False)[:80]}",
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
    raise _bad(f"无法识别的值：{str(node)[:80]}", f"unrecognised value: {str(node)[:80]}")


def _property(name: Any, ctx: FilterContext) -> _Expr:
    if not isinstance(name, str):
        raise _bad("属性名必须是字符串", "property names must be strings")
    spec = ctx.spec
    if name in GEOMETRY_NAMES or name == spec.geometry.column:
        return _Expr(geom_col(spec, ctx.alias), "geometry")
    if name == spec.id_column or name == "id":
        return _Expr(col(spec, spec.id_column, ctx.alias), "int")
    attr = spec.attribute(name)
    if attr is None:
        allowed = ", ".join(a.name for a in spec.attributes)
        raise _bad(f"图层 {spec.id} 没有可查询属性 {name}（可用：{allowed}）",
                   f"layer {spec.id} has no queryable {name} (queryables: {allowed})", property=name)
    return _Expr(col(spec, attr.name, ctx.alias), attr.type)


def _temporal(node: dict, ctx: FilterContext) -> _Expr:
    if "date" in node:
        try:
            return _Expr(ctx.params.add(dt.date.fromisoformat(str(node["date"])), "date"), "date")
        except ValueError as exc:
            raise _bad(f"日期无效：{node['date']}", f"invalid date: {node['date']}") from exc
    try:
        value = dt.datetime.fromisoformat(str(node["timestamp"]).replace("Z", "+00:00"))
    except ValueError as exc:
        raise _bad(f"时间戳无效：{node['timestamp']}", f"invalid timestamp: {node['timestamp']}") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return _Expr(ctx.params.add(value, "timestamptz"), "timestamp")


def _geometry_literal(node: dict, ctx: FilterContext) -> _Expr:
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
        raise _bad("几何字面量无效", "invalid geometry literal") from exc
    if ctx.flip:
        geom = shapely.ops.transform(lambda x, y, z=None: (y, x), geom)
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    if not all(map(lambda v: abs(v) < 1e9, geom.bounds or (0,))):
        raise _bad("几何字面量坐标超出范围", "geometry literal coordinates out of range")
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
    raise _bad(f"类型不匹配：{left.kind} 与 {right.kind}", f"type mismatch: {left.kind} and {right.kind}")


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
        raise _bad(f"值 {node!r} 不能与 {kind} 类型属性比较", f"value {node!r} cannot be compared with a {kind} property") from exc
    return _Expr(ctx.params.add(value, PG_TYPE[kind]), kind)


def _args(node: dict, count: int | tuple[int, ...]) -> list:
    args = node.get("args")
    counts = (count,) if isinstance(count, int) else count
    if not isinstance(args, list) or len(args) not in counts:
        raise _bad(f"运算 {node.get('op')} 的参数个数不对", f"wrong number of arguments for {node.get('op')}")
    return args


def _op(node: dict, ctx: FilterContext, depth: int) -> _Expr:
    op = str(node["op"]).lower()
    if op in ("and", "or"):
        args = node.get("args")
        if not isinstance(args, list) or len(args) < 2:
            raise _bad(f"{op} 至少需要两个条件", f"{op} needs at least two conditions")
        parts = [_bool(a, ctx, depth) for a in args]
        return _Expr("(" + f" {op.upper()} ".join(parts) + ")", "bool")
    if op == "not":
        return _Expr(f"(NOT {_bool(_args(node, 1)[0], ctx, depth)})", "bool")
    if op in _COMPARE:
        a, b = _args(node, 2)
        left, right = _typed_pair(a, b, ctx, depth)
        if "geometry" in (left.kind, right.kind):
            raise _bad("几何不能用比较运算符", "geometries cannot be compared with comparison operators")
        return _Expr(f"({left.sql} {op} {right.sql})", "bool")
    if op == "like":
        a, b = _args(node, 2)
        left, right = _compile(a, ctx, depth + 1), _literal_as(b, "text", ctx)
        if left.kind != "text" or right.kind != "text":
            raise _bad("LIKE 只能用于文本", "LIKE applies to text only")
        return _Expr(f"({left.sql} LIKE {right.sql})", "bool")
    if op == "between":
        a, low, high = _args(node, 3)
        left, lo = _typed_pair(a, low, ctx, depth)
        _, hi = _typed_pair(a, high, ctx, depth)
        if left.kind not in _NUMERIC | {"date", "timestamp", "any"}:
            raise _bad("BETWEEN 只能用于数值或日期", "BETWEEN applies to numbers and dates")
        return _Expr(f"({left.sql} BETWEEN {lo.sql} AND {hi.sql})", "bool")
    if op == "in":
        a, items = _args(node, 2)
        if not isinstance(items, list) or not items or len(items) > 10_000:
            raise _bad("IN 需要 1–10000 个值的列表", "IN needs a list of 1 to 10000 values")
        left = _compile(a, ctx, depth + 1)
        kind = left.kind if left.kind in PG_TYPE else None
        if kind is None:
            raise _bad("IN 的左侧必须是属性", "the left side of IN must be a property")
        try:
            values = [coerce(kind, v) for v in items]
        except (ValueError, TypeError) as exc:
            raise _bad(f"IN 列表中的值不是 {kind} 类型", f"IN list values are not of type {kind}") from exc
        return _Expr(f"({left.sql} = ANY({ctx.params.add(values, PG_TYPE[kind] + '[]')}))", "bool")
    if op == "isnull":
        return _Expr(f"({_compile(_args(node, 1)[0], ctx, depth + 1).sql} IS NULL)", "bool")
    if op in ("casei", "accenti"):
        if op == "accenti":
            raise _bad("不支持 ACCENTI", "ACCENTI is not supported")
        inner = _compile(_args(node, 1)[0], ctx, depth + 1)
        if inner.kind != "text":
            raise _bad("CASEI 只能用于文本", "CASEI applies to text only")
        return _Expr(f"lower({inner.sql})", "text")
    if op in _SPATIAL:
        a, b = (_compile(x, ctx, depth + 1) for x in _args(node, 2))
        if a.kind != "geometry" or b.kind != "geometry":
            raise _bad(f"{op.upper()} 需要两个几何参数", f"{op.upper()} needs two geometry arguments")
        return _Expr(f"{_SPATIAL[op]}({a.sql}, {b.sql})", "bool")
    if op == "s_dwithin":
        a, b, dist = _args(node, 3)
        ga, gb = _compile(a, ctx, depth + 1), _compile(b, ctx, depth + 1)
        if ga.kind != "geometry" or gb.kind != "geometry" or isinstance(dist, bool) or not isinstance(dist, (int, float)) \
                or not 0 <= dist <= 100_000:
            raise _bad("S_DWITHIN(几何, 几何, 米数 0–100000)", "S_DWITHIN(geometry, geometry, metres 0–100000)")
        d = ctx.params.add(float(dist), "float8")
        # expand in degrees first (index), then the exact geodesic test
        deg = f"({d} / 111000.0 / greatest(cos(radians(least(greatest(abs(ST_YMax({gb.sql})), abs(ST_YMin({gb.sql}))), 89))), 0.01))"
        return _Expr(f"({ga.sql} && ST_Expand({gb.sql}, {deg}) AND ST_DWithin({ga.sql}::geography, {gb.sql}::geography, {d}))",
                     "bool")
    raise _bad(f"不支持的运算：{node['op']}", f"unsupported operator: {node['op']}")


def _bool(node: Any, ctx: FilterContext, depth: int) -> str:
    expr = _compile(node, ctx, depth + 1)
    if expr.kind != "bool":
        raise _bad("AND/OR/NOT 的参数必须是条件", "AND/OR/NOT arguments must be conditions")
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
