"""Load the layer catalogue and check it against the live database."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2.extensions
import yaml
from pydantic import ValidationError

from cim.errors import ConfigError, InvalidInput, NotFound
from cim.schema import LINEAGE, TABLES
from layers.spec import LayerSpec

CATALOG_DIR = Path(__file__).parent / "catalog"

# PostGIS geometry_columns.type for each spec geometry type
_PG_TYPES = {"Point": "POINT", "LineString": "LINESTRING", "MultiLineString": "MULTILINESTRING",
             "Polygon": "POLYGON", "MultiPolygon": "MULTIPOLYGON"}


@dataclass
class Catalog:
    """All layer specs by id, in draw order."""

    layers: dict[str, LayerSpec] = field(default_factory=dict)

    def get(self, layer_id: str) -> LayerSpec:
        """A public layer by id, or :class:`NotFound`."""
        spec = self.layers.get(layer_id)
        if spec is None or not spec.public:
            raise NotFound(f"没有图层 {layer_id}", f"no layer {layer_id}")
        return spec

    def public(self) -> list[LayerSpec]:
        """Public layers in draw order."""
        return [s for s in self.layers.values() if s.public]

    def select(self, ids: list[str] | None, limit: int | None = None) -> list[LayerSpec]:
        """The requested public layers (each once, in the order asked), all of them for None.

        NotFound for an unknown id; InvalidInput when more than ``limit`` ids are asked for.
        """
        if ids is None:
            return self.public()
        if limit is not None and len(ids) > limit:
            raise InvalidInput(f"layers 最多 {limit} 个图层 id", f"layers may list at most {limit} layer ids")
        return [self.get(i) for i in dict.fromkeys(ids)]

    def versions(self, by_table: Mapping[str, int]) -> dict[str, int]:
        """Data version of every public layer: the sum of the counters of the tables it follows
        (any change to any of them shows)."""
        return {s.id: sum(by_table.get(k, 0) for k in s.version_keys) for s in self.public()}

    def __iter__(self):
        return iter(self.layers.values())

    def __len__(self) -> int:
        return len(self.layers)


def load_catalog(directory: Path = CATALOG_DIR) -> Catalog:
    """Read and validate every ``*.yaml`` spec; ids must be unique."""
    specs: list[LayerSpec] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
            specs.append(LayerSpec.model_validate(raw))
        except (ValidationError, yaml.YAMLError) as exc:
            raise ConfigError(f"图层定义 {path.name} 无效：{exc}", f"layer spec {path.name} is invalid: {exc}") from exc
    for spec in specs:
        problems = model_problems(spec)
        if problems:
            raise ConfigError(f"图层定义 {spec.id} 与数据表模型不符：{'; '.join(problems)}",
                              f"layer spec {spec.id} does not fit the table model: {'; '.join(problems)}")
    ids = [s.id for s in specs]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise ConfigError(f"图层 id 重复：{sorted(dupes)}", f"duplicate layer ids: {sorted(dupes)}")
    specs.sort(key=lambda s: (s.order, s.id))
    return Catalog({s.id: s for s in specs})


def model_problems(spec: LayerSpec) -> list[str]:
    """Differences between a spec on a feature table and the table model (:mod:`cim.schema`).

    Every attribute and filter column must be a column of the table (or a lineage column) with
    the spec's attribute type, and the geometry type must be the table's. Specs on other tables
    (the CIM+ applications' own) are checked against the live database only.
    """
    table = TABLES.get(spec.table_name) if spec.schema_name == "cim" else None
    if table is None:
        return []
    problems = []
    kinds = {**table.kinds(), **{c: "text" for c in LINEAGE}, "delivery_id": "int", "source_row": "int",
             "is_current": "bool", spec.id_column: "int"}
    for attr in spec.attributes:
        kind = kinds.get(attr.name)
        if kind is None:
            problems.append(f"{attr.name} is not a column of cim.{table.name}")
        elif kind != attr.type and not (kind == "date" and attr.type == "text"):
            problems.append(f"{attr.name} is {kind} in cim.{table.name}, the spec says {attr.type}")
    problems += [f"filter column {c} is not a column of cim.{table.name}" for c in spec.where if c not in kinds]
    if spec.geometry.type != table.geometry:
        problems.append(f"geometry is {table.geometry} in cim.{table.name}, the spec says {spec.geometry.type}")
    return problems


def validate_against_db(cur: psycopg2.extensions.cursor, catalog: Catalog) -> list[str]:
    """Problems between the specs and the live schema (empty list when all is well).

    Checks: the table exists, every referenced column exists, and the geometry column is
    registered with the declared type and SRID.
    """
    problems: list[str] = []
    for spec in catalog:
        cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
                    (spec.schema_name, spec.table_name))
        columns = {r[0] for r in cur.fetchall()}
        if not columns:
            problems.append(f"{spec.id}: table {spec.table} does not exist")
            continue
        wanted = {spec.id_column, spec.geometry.column, *spec.where, *(a.name for a in spec.attributes)}
        for col in sorted(wanted - columns):
            problems.append(f"{spec.id}: column {spec.table}.{col} does not exist")
        cur.execute("SELECT type, srid FROM geometry_columns WHERE f_table_schema = %s AND f_table_name = %s "
                    "AND f_geometry_column = %s", (spec.schema_name, spec.table_name, spec.geometry.column))
        row = cur.fetchone()
        if row is None:
            problems.append(f"{spec.id}: {spec.geometry.column} is not a registered geometry column")
            continue
        if row[0] != _PG_TYPES[spec.geometry.type]:
            problems.append(f"{spec.id}: geometry type is {row[0]}, spec says {spec.geometry.type}")
        if row[1] != spec.geometry.srid:
            problems.append(f"{spec.id}: SRID is {row[1]}, spec says {spec.geometry.srid}")
        for attr in spec.attributes:
            if attr.dictionary:
                cur.execute("SELECT to_regclass(%s)", (f"cim.{attr.dictionary}",))
                if cur.fetchone()[0] is None:
                    problems.append(f"{spec.id}.{attr.name}: dictionary cim.{attr.dictionary} does not exist")
    return problems
