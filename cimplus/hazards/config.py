"""The ledger's two data files, read and checked: ``rules.yaml`` (automatic rules) and
``ledger.yaml`` (codes, labels, the workflow matrix).

Both are validated strictly (unknown keys are errors) so a typo in a bureau's copy fails at
start-up rather than silently switching a rule off. ``CIM_HAZARDS_RULES`` may point at a
bureau's own rules file; engineering limits stay in :mod:`cim.standards` either way.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cim.auth import Action, Role
from cim.errors import ConfigError

HERE = Path(__file__).resolve().parent
RULES_FILE = HERE / "rules.yaml"
LEDGER_FILE = HERE / "ledger.yaml"
RULES_ENV = "CIM_HAZARDS_RULES"
_IDENT = r"^[a-z_][a-z0-9_]*$"


class Strict(BaseModel):
    """Unknown keys are errors; values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Grade(Strict):
    """Override of the class / level for one grade of finding."""

    hazard_class: Literal["general", "major"] | None = None
    risk_level: int | None = Field(None, ge=1, le=4)


class Material(Strict):
    """What makes new evidence differ materially from the evidence of a decided entry."""

    tolerance: float | None = Field(None, ge=0, description="change of the measured value, in its unit")
    keys: list[str] = Field(default_factory=list, description="evidence inputs whose change counts")

    @field_validator("keys")
    @classmethod
    def _keys(cls, v: list[str]) -> list[str]:
        import re
        for k in v:
            if not re.match(_IDENT, k):
                raise ValueError(f"evidence key is not a plain name: {k}")
        return v


class Rule(Strict):
    """One automatic rule."""

    id: str = Field(pattern=r"^[A-Z][0-9A-Z]{1,7}$")
    name_zh: str
    name_en: str
    method: str = Field(pattern=_IDENT)
    facility_type: str = Field(pattern=_IDENT)
    hazard_class: Literal["general", "major"] = "general"
    risk_level: int = Field(3, ge=1, le=4)
    grades: dict[str, Grade] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    clause: str
    tag: str = "I"
    material: Material = Field(default_factory=Material)
    enabled: bool = True

    def grade(self, key: str | None) -> tuple[str, int]:
        """(hazard class, risk level) of a finding of this grade."""
        g = self.grades.get(key or "") or Grade()
        return g.hazard_class or self.hazard_class, g.risk_level or self.risk_level


class Roads(Strict):
    """Where roads are (carriageway cover): polygons, or centre lines with a width."""

    table: str = Field(pattern=_IDENT)
    geometry: str = Field("geom", pattern=_IDENT)
    class_column: str = Field(pattern=_IDENT)
    carriageway_classes: list[str]
    # centre lines: the carriageway is width × carriageway_share wide around the line (the width
    # column holds the red-line width), a road without a width takes its class's default
    width_column: str | None = Field(None, pattern=_IDENT)
    carriageway_share: float = Field(1.0, gt=0, le=1)
    default_width_m: dict[str, float] = Field(default_factory=dict)


class RuleSet(Strict):
    """``rules.yaml``."""

    skip_status: list[str] = Field(default_factory=list)
    roads: Roads | None = None
    rules: dict[str, Rule]

    @model_validator(mode="before")
    @classmethod
    def _ids(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("rules"), dict):
            data = dict(data)
            data["rules"] = {k: {"id": k, **(v or {})} for k, v in data["rules"].items()}
        return data

    def enabled(self) -> list[Rule]:
        """Enabled rules in file order."""
        return [r for r in self.rules.values() if r.enabled]


class Label(Strict):
    """A code's labels."""

    zh: str
    en: str
    open: bool | None = None
    colour_zh: str | None = None
    colour: str | None = None
    hex: str | None = Field(None, pattern=r"^#[0-9a-f]{6}$")


class FieldSpec(Strict):
    """A field people may write."""

    zh: str
    en: str
    type: Literal["text", "code", "level", "money", "date"]
    codes: str | None = None


class ActionSpec(Strict):
    """One transition (or in-place change) of the workflow."""

    zh: str
    en: str
    from_: list[str] = Field(alias="from")
    to: str | None = None
    permission: Literal["report", "accept", "oversee"]
    comment: Literal["required", "optional"] = "optional"
    fields: list[str] = Field(default_factory=list)
    require: list[str] | Literal["six_fixed"] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def action(self) -> Action:
        """The access action of :mod:`cim.auth` it needs."""
        return Action(self.permission)


class Registration(Strict):
    """Manual registration."""

    permission: Literal["report", "accept"]
    status: str
    sources: list[str]
    require: list[str]
    fields: list[str]


class Ledger(Strict):
    """``ledger.yaml``."""

    statuses: dict[str, Label]
    sources: dict[str, Label]
    facility_types: dict[str, Label]
    hazard_classes: dict[str, Label]
    risk_levels: dict[int, Label]
    supervision: dict[str, Label]
    supervision_by_role: dict[Role, list[str]]
    attachment_kinds: dict[str, Label]
    fields: dict[str, FieldSpec]
    six_fixed: list[str]
    actions: dict[str, ActionSpec]
    registration: Registration

    @model_validator(mode="after")
    def _consistent(self) -> Ledger:
        for name, a in self.actions.items():
            for s in [*a.from_, *([a.to] if a.to else [])]:
                if s not in self.statuses:
                    raise ValueError(f"action {name}: unknown status {s}")
            for f in [*a.fields, *(a.require if isinstance(a.require, list) else self.six_fixed)]:
                if f not in self.fields:
                    raise ValueError(f"action {name}: unknown field {f}")
        for levels in self.supervision_by_role.values():
            for lv in levels:
                if lv not in self.supervision:
                    raise ValueError(f"unknown supervision level {lv}")
        if self.registration.status not in self.statuses:
            raise ValueError("registration status unknown")
        return self

    @property
    def open_statuses(self) -> list[str]:
        """Codes of the open states (逾期 can apply, rescans update)."""
        return [k for k, v in self.statuses.items() if v.open]

    def required(self, action: ActionSpec) -> list[str]:
        """Fields an action requires to be set once it is done."""
        return list(self.six_fixed) if action.require == "six_fixed" else list(action.require)

    def vocabulary(self) -> dict[str, Any]:
        """Every code list with labels (for clients)."""
        return self.model_dump(mode="json", by_alias=True)


def _read(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"隐患台账配置 {path.name} 无法读取：{exc}", f"hazard ledger file {path} cannot be read: {exc}") from exc


@lru_cache(maxsize=4)
def _rules(path: str) -> RuleSet:
    try:
        rs = RuleSet.model_validate(_read(Path(path)))
    except ValidationError as exc:
        raise ConfigError(f"隐患规则文件 {Path(path).name} 无效：{exc}", f"hazard rules file {path} is invalid: {exc}") from exc
    led = ledger()
    for r in rs.rules.values():
        if r.facility_type not in led.facility_types:
            raise ConfigError(f"规则 {r.id} 的设施类型 {r.facility_type} 未定义",
                              f"rule {r.id}: unknown facility type {r.facility_type}")
    return rs


def rules(path: Path | None = None) -> RuleSet:
    """The rule set (``path``, ``$CIM_HAZARDS_RULES`` or the packaged ``rules.yaml``)."""
    p = path or Path(os.environ.get(RULES_ENV) or RULES_FILE)
    return _rules(str(p))


@lru_cache(maxsize=1)
def ledger() -> Ledger:
    """The vocabulary and workflow (``ledger.yaml``)."""
    try:
        return Ledger.model_validate(_read(LEDGER_FILE))
    except ValidationError as exc:
        raise ConfigError(f"隐患台账配置 ledger.yaml 无效：{exc}", f"ledger.yaml is invalid: {exc}") from exc
