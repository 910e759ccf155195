"""The table model: one description of every feature table of the city information model.

The migrations in ``cim/sql/migrations`` create the tables; this module describes them once
for the code: which tables hold features, their geometry type, their attribute columns with a
value kind (what ingest coerces delivered values to), whether a delivery replaces them per
pipeline network, and the order they are read and written in. ``tests/cim/test_schema.py``
checks it against the migrated database (columns, SQL types, constant defaults, geometry type
and SRID), so the two cannot drift apart; the loader takes its column plan from here instead of
the database's catalogue.

Everything above ``cim`` reads it: ingest (targets, column kinds, geometry types, load order),
the layer catalogue (a spec's table must be one of these or a CIM+ table), the 3D sources (the
data versions a 3D layer depends on) and the CIM+ applications (facility references).

Every feature table also has the lineage columns :data:`LINEAGE_COLUMNS` (filled by the
loader) and the surrogate key ``id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cim.crs import STORAGE_SRID
from cim.errors import NotFound

Kind = Literal["text", "int", "float", "bool", "date"]
GeometryType = Literal["Point", "LineString", "MultiLineString", "MultiPolygon"]

#: Key under which the current DEM's data version is kept in ``cim.data_version``.
DEM_VERSION_KEY = "dem"

# information_schema.columns.data_type of each kind, per declared SQL type
_SQL_TYPES = {"text": "text", "varchar": "character varying", "char": "character", "smallint": "smallint",
              "integer": "integer", "bigint": "bigint", "float": "double precision", "bool": "boolean",
              "date": "date"}
_KIND_OF = {"text": "text", "varchar": "text", "char": "text", "smallint": "int", "integer": "int", "bigint": "int",
            "float": "float", "bool": "bool", "date": "date"}


@dataclass(frozen=True)
class Column:
    """One column: name, declared SQL type and the value kind it holds."""

    name: str
    sql: str   # key of _SQL_TYPES: text, varchar, char, smallint, integer, bigint, float, bool, date
    default: str | None = None   # the DEFAULT of a NOT NULL text column: what an empty delivered value becomes

    @property
    def kind(self) -> Kind:
        """Value kind (text / int / float / bool / date) used to coerce delivered values."""
        return _KIND_OF[self.sql]  # type: ignore[return-value]

    @property
    def data_type(self) -> str:
        """The ``information_schema.columns.data_type`` PostgreSQL reports for it."""
        return _SQL_TYPES[self.sql]


def _cols(spec: str) -> tuple[Column, ...]:
    """``"name:sql name:sql:default …"`` → columns (compact declaration, one table per line block)."""
    return tuple(Column(*item.split(":")) for item in spec.split())


#: Columns every feature table has, filled by the loader (never from a delivery).
LINEAGE_COLUMNS = _cols("county_code:varchar delivery_id:bigint source_layer:text source_row:integer is_current:bool")

#: Names of the lineage columns.
LINEAGE = tuple(c.name for c in LINEAGE_COLUMNS)

# SQL type of the reference columns the loader resolves (another feature table's id)
_RESOLVED_SQL = "bigint"


@dataclass(frozen=True)
class FeatureTable:
    """A feature table of schema ``cim``."""

    name: str
    title_zh: str
    title_en: str
    geometry: GeometryType
    columns: tuple[Column, ...]
    network_scoped: bool = False   # a delivery replaces its rows per (county, network), not per county
    resolved: tuple[str, ...] = ()  # reference columns the loader resolves (never from a delivery)

    @property
    def qualified(self) -> str:
        """``cim.<name>`` (a plain identifier pair: safe to put in SQL text)."""
        return f"cim.{self.name}"

    @property
    def srid(self) -> int:
        """SRID of the geometry column (the storage CRS)."""
        return STORAGE_SRID

    def column(self, name: str) -> Column | None:
        """An attribute column by name."""
        return next((c for c in self.columns if c.name == name), None)

    def kinds(self) -> dict[str, Kind]:
        """Column name → value kind of every attribute column."""
        return {c.name: c.kind for c in self.columns}

    def data_types(self) -> dict[str, str]:
        """Column name → ``information_schema`` data type of every column but ``id`` and ``geom``:
        attributes, the references the loader resolves, lineage."""
        resolved = tuple(Column(name, _RESOLVED_SQL) for name in self.resolved)
        return {c.name: c.data_type for c in (*self.columns, *resolved, *LINEAGE_COLUMNS)}


_TABLES = (
    FeatureTable("admin_area", "行政区划", "Administrative areas", "MultiPolygon", _cols(
        "code:varchar parent_code:varchar name:text level:text area_m2:float")),
    FeatureTable("building", "房屋建筑", "Buildings", "MultiPolygon", _cols(
        "code:text name:text address:text floors_above:smallint floors_below:smallint height_m:float "
        "building_area_m2:float structure_type:text build_year:smallint build_era:text use_code:text "
        "use_subtype:text appraisal_grade:char self_built:bool community_code:varchar ground_z:float has_lift:bool")),
    FeatureTable("green_space", "园林绿地", "Green space", "MultiPolygon", _cols(
        "code:text name:text class_code:text subclass_code:text area_m2:float")),
    FeatureTable("streetlight", "路灯", "Streetlights", "Point", _cols(
        "pole_no:text road_name:text road_class:text pole_type:text pole_height_m:float arm_length_m:float "
        "lamp_count:smallint lamp_type:text wattage_w:float cabinet_no:text circuit_no:text controller_id:text "
        "install_date:date owner:text status:text last_inspection:date")),
    FeatureTable("road", "道路中心线", "Road centre lines", "MultiLineString", _cols(
        "code:text name:text road_class:text width_m:float lanes:smallint")),
    FeatureTable("pipe_point", "管线点", "Pipeline points", "Point", _cols(
        "network:varchar subtype:varchar feature_code:char exp_no:text map_no:text feature:text appurtenance:text "
        "ground_z:float well_depth:float depth:float well_cover:text cover_material:text road:text owner:text "
        "survey_unit:text survey_date:date install_year:smallint status:text rotation:float node_type:text "
        "facility_uid:text system_code:text invert_z:float well_type:text anti_fall_net:bool inlet_form:text "
        "grate_count:smallint receiving_water:text outfall_kind:text outlet_size_mm:float flap_gate:bool "
        "normal_water_z:float flood_water_z:float pump_name:text design_flow_m3s:float installed_kw:float "
        "pump_count:smallint service_area_km2:float"), network_scoped=True),
    FeatureTable("pipe_segment", "管线段", "Pipeline segments", "LineString", _cols(
        "network:varchar subtype:varchar feature_code:char code:text start_exp_no:text end_exp_no:text "
        "start_depth:float end_depth:float start_z:float end_z:float z_ref:text:centre diameter_mm:float width_mm:float "
        "height_mm:float section_shape:text material:text burial_type:text status:text pressure_class:text "
        "design_pressure_mpa:float wall_thickness_mm:float voltage_kv:float cable_count:smallint "
        "duct_total:smallint duct_used:smallint flow_dir:smallint joint_type:text install_year:smallint owner:text "
        "road:text data_source:text length_m:float"), network_scoped=True,
        resolved=("start_point_id", "end_point_id")),
)

#: Feature tables by name, in reading and loading order: pipe points before pipe segments
#: (a segment refers to its end points), segments last.
TABLES: dict[str, FeatureTable] = {t.name: t for t in _TABLES}

#: Names of the feature tables, in reading and loading order.
FEATURE_TABLES: tuple[str, ...] = tuple(TABLES)


def feature_table(name: str) -> FeatureTable:
    """A feature table by name, or :class:`NotFound`."""
    table = TABLES.get(name)
    if table is None:
        raise NotFound(f"没有要素表 {name}", f"no feature table {name}")
    return table


def rank(name: str) -> int:
    """Position of a table in the loading order (unknown names last)."""
    return FEATURE_TABLES.index(name) if name in TABLES else len(FEATURE_TABLES)
