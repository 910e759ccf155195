"""Small SQL building blocks shared by the feature and query builders.

Identifiers come only from the layer catalogue (quoted with :func:`cim.db.quote_ident`);
every value becomes an asyncpg ``$n`` parameter through :class:`Params`, so the SQL text of a
request depends only on its *shape* (which filters are present), never on its values, and the
driver's prepared-statement cache hits on every repeat.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from cim.db import quote_ident
from layers.spec import Attribute, LayerSpec

# PostgreSQL type used for a bound value of each attribute type (explicit casts keep the
# statement typed even when both sides of a comparison are parameters).
PG_TYPE = {"text": "text", "int": "bigint", "float": "float8", "bool": "boolean", "date": "date"}


class Params:
    """Collects bound values and hands out their ``$n`` placeholders."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any, pg_type: str | None = None) -> str:
        """Bind ``value``; returns ``$n`` (with ``::pg_type`` when given)."""
        self.values.append(value)
        ref = f"${len(self.values)}"
        return f"{ref}::{pg_type}" if pg_type else ref


def table_sql(spec: LayerSpec) -> str:
    """``"schema"."table"`` of a layer."""
    return f"{quote_ident(spec.schema_name)}.{quote_ident(spec.table_name)}"


def col(spec: LayerSpec, name: str, alias: str = "t") -> str:
    """Qualified, quoted column reference (``name`` must come from the catalogue)."""
    return f"{alias}.{quote_ident(name)}"


def geom_col(spec: LayerSpec, alias: str = "t") -> str:
    """The layer's geometry column."""
    return col(spec, spec.geometry.column, alias)


Bind = Callable[[Any, str], str]
"""``bind(value, pg_type) -> placeholder``: binds a value in the caller's driver style
(``$n`` for asyncpg, ``%s`` for psycopg2) and returns the SQL text that stands for it."""


def where_conditions(spec: LayerSpec, alias: str | None, bind: Bind) -> list[str]:
    """The one builder of a spec's fixed filter (``where``): ``column = value`` for a value,
    ``column = ANY(values)`` for a list, the column quoted (from the catalogue), every value bound.

    Every reader of a layer (features, queries, search, vector tiles, 3D Tiles, the CIM+
    applications) filters through this function, so a spec's ``where`` means the same
    everywhere. ``alias`` qualifies the column (None: bare column names).
    """
    conds = []
    for column, value in spec.where.items():
        ref = f"{alias}.{quote_ident(column)}" if alias else quote_ident(column)
        if isinstance(value, list):
            kind = "bigint[]" if value and isinstance(value[0], int) else "text[]"
            conds.append(f"{ref} = ANY({bind(list(value), kind)})")
        else:
            conds.append(f"{ref} = {bind(value, 'bigint' if isinstance(value, int) else 'text')}")
    return conds


def base_where(spec: LayerSpec, params: Params, alias: str = "t") -> list[str]:
    """Conditions every public read applies: current rows and the spec's ``where``."""
    return [f"{alias}.is_current", *where_conditions(spec, alias, params.add)]


def coerce(attr_type: str, value: Any) -> Any:
    """Convert a request value to the Python type of an attribute; ValueError when impossible."""
    if value is None:
        return None
    if attr_type == "text":
        if isinstance(value, bool):
            raise ValueError("boolean for a text attribute")
        return value if isinstance(value, str) else str(value)
    if attr_type == "int":
        if isinstance(value, bool):
            raise ValueError("boolean for an integer attribute")
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError("not an integer")
            return int(value)
        return int(str(value).strip())
    if attr_type == "float":
        if isinstance(value, bool):
            raise ValueError("boolean for a number attribute")
        out = float(value)
        if out != out or out in (float("inf"), float("-inf")):
            raise ValueError("not a finite number")
        return out
    if attr_type == "bool":
        if isinstance(value, bool):
            return value
        low = str(value).strip().lower()
        if low in ("true", "1", "t", "yes", "是"):
            return True
        if low in ("false", "0", "f", "no", "否"):
            return False
        raise ValueError("not a boolean")
    if attr_type == "date":
        if isinstance(value, dt.date):
            return value
        return dt.date.fromisoformat(str(value).strip()[:10])
    raise ValueError(f"unknown attribute type {attr_type}")


def properties_sql(spec: LayerSpec, attrs: list[Attribute], alias: str = "t") -> str:
    """A ``json`` object expression of the given attributes, in catalogue order."""
    if not attrs:
        return "'{}'::json"
    parts = []
    for i in range(0, len(attrs), 50):  # json_build_object takes at most 100 arguments
        chunk = attrs[i:i + 50]
        parts.append("json_build_object(" + ", ".join(f"'{a.name}', {col(spec, a.name, alias)}" for a in chunk) + ")")
    if len(parts) == 1:
        return parts[0]
    return "(" + " || ".join(p.replace("json_build_object", "jsonb_build_object") for p in parts) + ")::json"


def feature_sql(spec: LayerSpec, geom_expr: str, attrs: list[Attribute], digits: int = 8,
                alias: str = "t", extra_members: str = "") -> str:
    """Text of one GeoJSON Feature built in SQL (no JSON round trip through Python).

    ``extra_members`` is SQL text producing ``,"key":value`` members added at the top level.
    """
    id_ref = col(spec, spec.id_column, alias)
    geo = f"coalesce(ST_AsGeoJSON({geom_expr}, {int(digits)}, 0), 'null')"
    return (f"""('{{"type":"Feature","id":' || {id_ref} || ',"geometry":' || {geo} """
            f"""|| ',"properties":' || {properties_sql(spec, attrs, alias)}::text{extra_members} || '}}')""")
