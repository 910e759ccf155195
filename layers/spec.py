"""The layer spec: one declarative, validated description per public layer.

Specs are YAML files in ``layers/catalog/``; unknown keys are rejected so a typo fails CI.
Everything SQL-facing in a spec (table, columns, filter) is an identifier or a bound value,
never SQL text: the tile and feature builders quote identifiers and bind filter values.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_IDENT = r"^[a-z_][a-z0-9_]*$"
GeometryType = Literal["Point", "LineString", "MultiLineString", "Polygon", "MultiPolygon"]
AttrType = Literal["text", "int", "float", "bool", "date"]


class Strict(BaseModel):
    """Base: unknown keys are errors, values are frozen after load."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Attribute(Strict):
    """One exposed attribute (column) with its labels."""

    name: str = Field(pattern=_IDENT)
    label_zh: str
    label_en: str
    type: AttrType = "text"
    dictionary: str | None = Field(None, pattern=r"^dict_[a-z_]+$", description="cim.dict_* table for code labels")
    searchable: bool = False
    unit: str | None = None


class GeometrySpec(Strict):
    """Geometry column, type and SRID."""

    column: str = Field("geom", pattern=_IDENT)
    type: GeometryType
    srid: int = 4490


class Generalisation(Strict):
    """Per-zoom generalisation for vector tiles."""

    simplify_below: int | None = Field(None, ge=0, le=24, description="simplify geometries below this zoom")
    min_area_px: float | None = Field(None, ge=0, description="drop polygons smaller than this many square px")
    min_length_px: float | None = Field(None, ge=0, description="drop lines shorter than this many px")
    centroid_below: int | None = Field(None, ge=0, le=24, description="polygons as points below this zoom")
    attributes_below: int | None = Field(None, ge=0, le=24, description="below this zoom, tiles carry only the "
                                         "attributes the style uses (colour, label)")


class Style(Strict):
    """Default MapLibre style of the layer."""

    kind: Literal["fill", "line", "circle", "fill-extrusion"]
    color: str = Field("#888888", pattern=r"^#[0-9a-fA-F]{6}$")
    color_by: str | None = Field(None, pattern=_IDENT, description="attribute whose value picks the colour")
    colors: dict[str, str] = Field(default_factory=dict, description="value → #rrggbb")
    outline_color: str | None = Field(None, pattern=r"^#[0-9a-fA-F]{6}$")
    width: float = 1.5
    radius: float = 3.0
    opacity: float = Field(0.8, ge=0, le=1)
    label: str | None = Field(None, pattern=_IDENT, description="attribute used as the text label")
    label_minzoom: int | None = Field(None, ge=0, le=24)

    @field_validator("colors")
    @classmethod
    def _hex(cls, v: dict[str, str]) -> dict[str, str]:
        for key, col in v.items():
            if not re.match(r"^#[0-9a-fA-F]{6}$", col):
                raise ValueError(f"colour for {key!r} is not #rrggbb: {col}")
        return v


class ThreeD(Strict):
    """How the layer is shown in 3D Tiles."""

    kind: Literal["extrude", "tube", "cylinder", "marker"]
    height_attr: str | None = Field(None, pattern=_IDENT)
    floors_attr: str | None = Field(None, pattern=_IDENT)
    max_features_per_tile: int = Field(1000, ge=10)


class LayerSpec(Strict):
    """A public layer of the one-map."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title_zh: str
    title_en: str
    group: str = Field(description="layer-tree group id, e.g. pipelines")
    group_zh: str
    table: str = Field(pattern=r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")
    id_column: str = Field("id", pattern=_IDENT)
    where: dict[str, str | int | list[str] | list[int]] = Field(
        default_factory=dict, description="column → value or list of values (bound, ANDed)")
    geometry: GeometrySpec
    attributes: list[Attribute]
    minzoom: int = Field(10, ge=0, le=24)
    maxzoom: int = Field(22, ge=0, le=24)
    generalisation: Generalisation = Field(default_factory=Generalisation)
    max_features: int | None = Field(None, ge=1, description="feature cap per tile (default from settings)")
    style: Style
    threed: ThreeD | None = None
    public: bool = True
    order: int = Field(100, description="draw order, low first")
    versions: list[str] | None = Field(None, description="data-version keys (cim.data_version.source_table) the "
                                       "layer's content follows; default: its table. A view names the tables "
                                       "it reads, so caches follow them")

    @field_validator("where")
    @classmethod
    def _where_columns(cls, v: dict[str, Any]) -> dict[str, Any]:
        for col in v:
            if not re.match(_IDENT, col):
                raise ValueError(f"filter column is not a plain identifier: {col}")
        return v

    @model_validator(mode="after")
    def _checks(self) -> LayerSpec:
        if self.minzoom > self.maxzoom:
            raise ValueError("minzoom must not exceed maxzoom")
        names = [a.name for a in self.attributes]
        if len(names) != len(set(names)):
            raise ValueError("duplicate attribute names")
        for ref in (self.style.color_by, self.style.label):
            if ref and ref not in names:
                raise ValueError(f"style refers to unexposed attribute {ref}")
        return self

    @property
    def schema_name(self) -> str:
        """Schema part of ``table``."""
        return self.table.split(".", 1)[0]

    @property
    def table_name(self) -> str:
        """Table part of ``table``."""
        return self.table.split(".", 1)[1]

    @property
    def version_keys(self) -> tuple[str, ...]:
        """Data-version keys of the layer (``versions``, else its table)."""
        return tuple(self.versions) if self.versions else (self.table_name,)

    def attribute(self, name: str) -> Attribute | None:
        """Exposed attribute by name (the whitelist for filters and sorting)."""
        return next((a for a in self.attributes if a.name == name), None)
