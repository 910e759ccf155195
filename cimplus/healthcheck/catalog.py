"""The indicator catalogue: ``indicators.yaml`` read into typed, validated specs.

Every indicator is data: its names, 体检 level and dimension, unit, direction, threshold with
its source, the inputs it needs, its parameters (radii, size classes, reach) and its formula, a
set-based SQL template over the layer catalogue (:mod:`cimplus.healthcheck.template`). A bureau
adjusts or adds indicators in a copy of the file named by ``CIM_HEALTHCHECK_INDICATORS``; no code
changes. Unknown keys are errors, so a typo fails loudly.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cim.errors import ConfigError, NotFound

HERE = Path(__file__).resolve().parent
DEFAULT_FILE = HERE / "indicators.yaml"
ENV_VAR = "CIM_HEALTHCHECK_INDICATORS"
AdminLevel = Literal["county", "street", "community"]
ADMIN_LEVELS: tuple[AdminLevel, ...] = ("county", "street", "community")
_ID = r"^[a-z][a-z0-9_]*$"
ParamValue = str | int | float | bool | list[str] | list[int] | list[float] | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Text(_Strict):
    """A bilingual text."""

    zh: str
    en: str


class Threshold(_Strict):
    """The target an indicator is judged against: ``value op threshold`` passes."""

    op: Literal[">", ">=", "<", "<="]
    value: float
    by_year: dict[int, float] = Field(default_factory=dict, description="year → target (a yearly plan); the "
                                      "target of the latest listed year not after the run's year, else `value`")
    source: str = Field(description="the standard or policy the target comes from")
    tag: Literal["C", "C2", "I"] = Field(description="C confirmed, C2 second-hand, I inferred (domain digest)")

    def for_year(self, year: int) -> float:
        """The target that applies in ``year``."""
        years = sorted(y for y in self.by_year if y <= year)
        return float(self.by_year[years[-1]]) if years else float(self.value)

    def passes(self, value: float, year: int) -> bool:
        """Whether ``value`` meets the target of ``year``."""
        t = self.for_year(year)
        return {">": value > t, ">=": value >= t, "<": value < t, "<=": value <= t}[self.op]


class Requires(_Strict):
    """What must be present for an indicator to be computed at all."""

    layers: list[str] = Field(default_factory=list, description="catalogue layers that must hold current rows")
    inputs: list[Literal["population", "builtup"]] = Field(default_factory=list)


class Indicator(_Strict):
    """One indicator of the health check."""

    id: str = Field(pattern=_ID)
    name_zh: str
    name_en: str
    level: Literal["住房", "小区/社区", "街区", "城区"]
    dimension: str
    unit: str
    direction: Literal["higher", "lower"]
    threshold: Threshold | None = None
    threshold_note: str | None = Field(None, description="why there is no threshold")
    definition: str = Field(description="what is counted or measured, in words (Chinese and English)")
    source: str = Field(description="where the definition comes from")
    kind: Literal["count", "measure"] = "measure"
    layer: str | None = Field(None, description="count: the catalogue layer whose features are counted")
    features: str | None = Field(None, description="SQL template: (area_id, feature_id) of the features behind "
                                 "the value; the value of a count is their number per area")
    formula: str | None = Field(None, description="SQL template: (area_id, value[, numerator, denominator, reason, "
                                "detail]) per area")
    requires: Requires = Field(default_factory=Requires)
    params: dict[str, ParamValue] = Field(default_factory=dict)
    cql2: str | None = Field(None, description="attribute part of the count as a CQL2 text filter on `layer`")
    admin_levels: list[AdminLevel] = Field(default_factory=lambda: list(ADMIN_LEVELS))

    @model_validator(mode="after")
    def _shape(self) -> Indicator:
        if self.kind == "count" and not (self.features and self.layer):
            raise ValueError(f"{self.id}: a count needs `layer` and `features`")
        if self.kind == "measure" and not self.formula:
            raise ValueError(f"{self.id}: a measure needs `formula`")
        if self.features and not self.layer:
            raise ValueError(f"{self.id}: `features` needs the `layer` they belong to")
        if self.threshold is None and not self.threshold_note:
            raise ValueError(f"{self.id}: give a threshold or say why there is none (threshold_note)")
        return self


class Palette(_Strict):
    """Choropleth colours: classes failing / passing the threshold, and of indicators without one."""

    count: int = Field(5, ge=2, le=9, description="classes per indicator and level (quantiles)")
    fail: list[str]
    passing: list[str]
    neutral: list[str]
    not_computed: str = "#d9d9d9"


class Ledger(_Strict):
    """Where open entries of the hazard ledger are read (used only when the table exists at run time).

    The table, the geometry column and the filter's columns are plain names (they are quoted into
    the statement); the filter's values are bound parameters.
    """

    table: str = Field(pattern=r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")
    geometry: str = Field("geom", pattern=_ID)
    where: dict[str, str | list[str]] = Field(default_factory=dict, description="column → value(s), bound, ANDed")

    @model_validator(mode="after")
    def _columns(self) -> Ledger:
        bad = sorted(c for c in self.where if not re.match(_ID, c))
        if bad:
            raise ValueError(f"hazard_ledger.where: not plain column names: {bad}")
        return self

    @property
    def version_key(self) -> str:
        """The table's key in ``cim.data_version`` (its name without the schema)."""
        return self.table.split(".", 1)[1]


class Catalogue(_Strict):
    """The whole file."""

    version: int = 1
    levels: list[AdminLevel] = Field(default_factory=lambda: list(ADMIN_LEVELS))
    params: dict[str, ParamValue] = Field(default_factory=dict, description="parameters every formula may use")
    reasons: dict[str, Text] = Field(default_factory=dict, description="why a value was not computed")
    inputs: dict[Literal["population", "builtup"], Text] = Field(default_factory=dict)
    hazard_ledger: Ledger | None = None
    classes: Palette
    indicators: list[Indicator]
    source: str | None = Field(None, description="file it was read from")

    @model_validator(mode="after")
    def _unique(self) -> Catalogue:
        ids = [i.id for i in self.indicators]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate indicator ids: {dupes}")
        return self

    def get(self, indicator_id: str) -> Indicator:
        """An indicator by id, or :class:`NotFound`."""
        for ind in self.indicators:
            if ind.id == indicator_id:
                return ind
        raise NotFound(f"没有体检指标 {indicator_id}", f"no health-check indicator {indicator_id}")

    def reason(self, code: str) -> Text:
        """The bilingual text of a reason code (the code itself when unknown)."""
        return self.reasons.get(code) or Text(zh=code, en=code)

    def params_of(self, ind: Indicator) -> dict[str, Any]:
        """Shared parameters overlaid with the indicator's own."""
        return {**self.params, **ind.params}

    def snapshot(self) -> dict[str, Any]:
        """Indicator id → definition as used by a run (stored with the run)."""
        out = {}
        for ind in self.indicators:
            d = ind.model_dump(mode="json")
            d["params"] = self.params_of(ind)
            out[ind.id] = d
        return out

    def sha256(self) -> str:
        """Digest of the definitions (two runs with the same digest used the same formulas)."""
        text = json.dumps({"indicators": self.snapshot(), "hazard_ledger": self.hazard_ledger and
                           self.hazard_ledger.model_dump()}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()


PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)(?::([A-Za-z0-9_:]+))?\}")


def placeholders(template: str) -> list[tuple[str, str | None]]:
    """``{name}`` / ``{name:arg}`` placeholders of a template, in order."""
    return [(m.group(1), m.group(2)) for m in PLACEHOLDER.finditer(template)]


def path() -> Path:
    """The catalogue file in force: ``CIM_HEALTHCHECK_INDICATORS`` or the shipped one."""
    override = os.environ.get(ENV_VAR)
    return Path(override) if override else DEFAULT_FILE


def load(file: Path | None = None) -> Catalogue:
    """Read and validate a catalogue file (default: :func:`path`)."""
    p = Path(file) if file else path()
    return _load(str(p.resolve()), p.stat().st_mtime_ns if p.exists() else 0)


@lru_cache(maxsize=8)
def _load(file: str, _mtime: int) -> Catalogue:
    p = Path(file)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
        cat = Catalogue.model_validate({**(raw or {}), "source": str(p)})
    except OSError as exc:
        raise ConfigError(f"体检指标文件无法读取：{p}", f"indicator catalogue {p} cannot be read: {exc}") from exc
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"体检指标文件 {p.name} 无效：{exc}", f"indicator catalogue {p.name} is invalid: {exc}") from exc
    return cat
