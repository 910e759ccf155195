"""CQL2 text encoding (OGC 21-065 Annex A) → the CQL2 JSON tree.

A tokenizer and a recursive-descent parser; WKT literals become GeoJSON geometries, DATE /
TIMESTAMP / BBOX become their JSON forms, so :mod:`layers.cql2` compiles one tree for both
encodings. Errors are :class:`InvalidInput` with the character position.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import shapely.geometry
import shapely.wkt

from cim.errors import InvalidInput

MAX_FILTER_LEN = 20_000
MAX_DEPTH = 50
BIGINT_MAX = 2**63 - 1
COMPARE = {"=", "<>", "<", ">", "<=", ">="}

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>'(?:[^']|'')*')
  | (?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
  | (?P<qid>"(?:[^"]|"")+")
  | (?P<id>[A-Za-z_\u4e00-\u9fff][A-Za-z0-9_:.\u4e00-\u9fff]*)
  | (?P<op><>|<=|>=|=|<|>|\(|\)|,|\[|\]|-|\+|\*|/)
""", re.VERBOSE)

_WKT = {"POINT", "LINESTRING", "POLYGON", "MULTIPOINT", "MULTILINESTRING", "MULTIPOLYGON", "GEOMETRYCOLLECTION"}


def bad_filter(zh: str, en: str, **detail: Any) -> InvalidInput:
    """The bilingual 400 of a malformed filter."""
    return InvalidInput(f"过滤条件无效：{zh}", f"invalid filter: {en}", **detail)


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
            raise bad_filter(f"第 {pos + 1} 个字符处无法识别：{text[pos:pos + 10]!r}",
                       f"unexpected character at position {pos + 1}: {text[pos:pos + 10]!r}")
        kind = m.lastgroup
        assert kind is not None  # every alternative of the token pattern is a named group
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
    assert m is not None  # the pattern matches the empty string
    pos = m.end()
    if text[pos:pos + 5].upper() == "EMPTY":
        return pos + 5
    if pos >= len(text) or text[pos] != "(":
        raise bad_filter(f"几何字面量不完整（第 {pos + 1} 个字符）", f"incomplete geometry literal at position {pos + 1}")
    depth = 0
    for i in range(pos, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i + 1
    raise bad_filter("几何字面量括号不匹配", "unbalanced parentheses in a geometry literal")


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
            raise bad_filter(f"第 {t.pos + 1} 个字符处应为 {value!r}，实为 {t.value or '结尾'!r}",
                       f"expected {value!r} at position {t.pos + 1}, found {t.value or 'end of text'!r}")

    def parse(self) -> Any:
        node = self.or_expr()
        t = self.peek()
        if t.kind != "eof":
            raise bad_filter(f"第 {t.pos + 1} 个字符处有多余内容：{t.value!r}", f"unexpected {t.value!r} at position {t.pos + 1}")
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
            raise bad_filter("嵌套过深", "nesting too deep")
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
            elif depth >= 1 and (t.kind == "op" and t.value in COMPARE
                                 or t.kind == "id" and t.value.upper() in ("AND", "OR", "NOT", "LIKE", "IN",
                                                                           "BETWEEN", "IS")):
                return True
            j += 1
        return False

    def after_scalar(self, left: Any) -> Any:
        t = self.peek()
        if t.kind == "op" and t.value in COMPARE:
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
            value = _number(self.take())
            return -value if t.value == "-" else value
        if t.kind == "num":
            return _number(t)
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
                raise bad_filter(f"第 {t.pos + 1} 个字符处不应出现关键字 {t.value}", f"unexpected keyword {t.value} at position {t.pos + 1}")
            return {"property": t.value}
        raise bad_filter(f"第 {t.pos + 1} 个字符处应为值或属性名，实为 {t.value or '结尾'!r}",
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


def _number(tok: _Tok) -> int | float:
    """A numeric literal: an integer within PostgreSQL bigint, or a finite double."""
    if not re.search(r"[.eE]", tok.value):
        if len(tok.value) <= 19 and int(tok.value) <= BIGINT_MAX:
            return int(tok.value)
    value = float(tok.value)
    if not math.isfinite(value):
        raise bad_filter(f"第 {tok.pos + 1} 个字符处的数值超出范围", f"number out of range at position {tok.pos + 1}")
    return value


def _one_string(args: list[Any], name: str) -> str:
    if len(args) != 1 or not isinstance(args[0], str):
        raise bad_filter(f"{name}() 需要一个字符串参数", f"{name}() takes one string argument")
    return args[0]


def _wkt_to_geojson(text: str) -> dict[str, Any]:
    try:
        geom = shapely.wkt.loads(text)
    except Exception as exc:  # shapely raises GEOSException / ShapelyError
        raise bad_filter(f"WKT 几何无效：{text[:60]}", f"invalid WKT geometry: {text[:60]}") from exc
    return shapely.geometry.mapping(geom)


def parse_text(text: str) -> Any:
    """Parse CQL2 text into the CQL2 JSON tree (raises :class:`InvalidInput`)."""
    if len(text) > MAX_FILTER_LEN:
        raise bad_filter("过长", f"longer than {MAX_FILTER_LEN} characters")
    if not text.strip():
        raise bad_filter("为空", "empty")
    try:
        return _Parser(text).parse()
    except RecursionError as exc:
        raise bad_filter("嵌套过深", "nesting too deep") from exc


def parse_json(text: str | dict[str, Any]) -> Any:
    """Parse the CQL2 JSON encoding (a string or an already decoded object)."""
    if isinstance(text, str):
        if len(text) > MAX_FILTER_LEN * 5:
            raise bad_filter("过长", "too long")
        try:
            return json.loads(text)
        except RecursionError as exc:
            raise bad_filter("嵌套过深", "nesting too deep") from exc
        except ValueError as exc:
            raise bad_filter("不是有效的 JSON", "not valid JSON") from exc
    return text
