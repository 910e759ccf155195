"""Shared machinery of the validation rules: the rule table and bulk creation of findings."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
from pydantic import BaseModel, ConfigDict, Field

from cim import standards
from cim.errors import ConfigError
from ingest.data import DATA_DIR, read_yaml
from ingest.mapping.normalize import Dictionaries
from ingest.model import Delivery, Finding, LayerBatch, Report, Severity

RULES_PATH = DATA_DIR / "rules.yaml"


class Rule(BaseModel):
    """One rule of ``ingest/rules.yaml``."""

    model_config = ConfigDict(extra="forbid")

    name_zh: str
    name_en: str
    severity: Severity
    enabled: bool = True
    doc: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


def load_rules(path: str | None = None) -> dict[str, Rule]:
    """The rule table (``ingest/rules.yaml`` unless another file is given), with the
    engineering tables of :mod:`cim.standards` filled in (:func:`with_standards`)."""
    return with_standards(_parse_rules(path))


@lru_cache(maxsize=8)
def _parse_rules(path: str | None) -> dict[str, Rule]:
    p = Path(path) if path else RULES_PATH
    try:
        data = read_yaml(p)
        return {str(k): Rule.model_validate(v) for k, v in data.items()}
    except Exception as exc:
        raise ConfigError(f"规则文件 {p.name} 无效：{exc}", f"invalid rules file {p}: {exc}") from exc


def with_standards(rules: dict[str, Rule]) -> dict[str, Rule]:
    """Give the clearance rules their engineering tables from :mod:`cim.standards`.

    Q19 (cover), Q20 (vertical clearances) and Q21 (horizontal clearances, what a parallel run
    is) take their limits from ``cim/standards/clearances.yaml``, the file the hazard rules
    read too; a value the rules file sets for the rule itself wins.
    """
    c = standards.clearances()
    gas, run = c["gas_horizontal"], c["parallel_run"]
    tables = {
        "Q19": {"min_cover_m": {n: c["cover"][n]["other"] for n in
                                (rules["Q19"].params.get("min_cover_networks") or []) if n in c["cover"]}
                if "Q19" in rules else {}},
        "Q20": {"min_vertical_m": c["vertical"]["default_m"], "pairs": c["vertical"]["pairs"]},
        "Q21": {"classes": c["pressure_classes"], "class_alias": c["class_alias"], "unknown_class": c["unknown_class"],
                "gas": gas["direct"], "gas_conduit": gas["conduit"], "gas_gas": gas["gas_gas"],
                "conduit_burial_types": gas["conduit_burial_types"], "skip_burial_types": gas["skip_burial_types"],
                "pairs": c["other_horizontal"]["pairs"], **standards.without_meta(run)},
    }
    out = dict(rules)
    for rule_id, params in tables.items():
        if rule_id in out:
            out[rule_id] = out[rule_id].model_copy(update={"params": {**params, **out[rule_id].params}})
    return out


def _val(v: Any) -> Any:
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, float) and np.isnan(v):
        return None
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


@dataclass
class Ctx:
    """Everything a rule needs, plus the report it writes to."""

    delivery: Delivery
    rules: dict[str, Rule]
    dicts: Dictionaries
    conn: Any = None
    report: Report = field(init=False)

    def __post_init__(self) -> None:
        self.report = Report(self.delivery)

    def rule(self, rule_id: str) -> Rule | None:
        """The rule when it is enabled, else None."""
        r = self.rules.get(rule_id)
        return r if r is not None and r.enabled else None

    def param(self, rule_id: str, name: str, default: Any = None) -> Any:
        """A rule parameter."""
        r = self.rules.get(rule_id)
        return r.params.get(name, default) if r else default

    def emit(self, rule_id: str, batch: LayerBatch | None, rows, *, zh, en, key=None, field_name=None,
             value=None, severity: Severity | None = None, layer: str | None = None) -> int:
        """Add one finding per row index in ``rows`` (0-based positions in ``batch.frame``).

        ``zh``/``en``/``key``/``field_name``/``value`` are scalars or arrays aligned with rows.
        Locations come from the rows' geometries. Returns the number of findings added.
        """
        rule = self.rule(rule_id)
        if rule is None:
            return 0
        rows = np.asarray(rows, dtype=np.int64) if rows is not None else np.array([-1])
        n = len(rows)
        if n == 0:
            return 0

        def arr(v):
            if isinstance(v, (list, tuple, np.ndarray, pd.Series, pd.Index)):
                a = np.asarray(v, dtype=object)
                return a
            return np.full(n, v, dtype=object)

        zh_a, en_a, key_a, fld_a, val_a = arr(zh), arr(en), arr(key), arr(field_name), arr(value)
        xs = ys = np.full(n, np.nan)
        src_rows = np.full(n, None, dtype=object)
        if batch is not None and rows[0] >= 0:
            g = batch.geometries(rows)
            ok = ~shapely.is_missing(g) & ~shapely.is_empty(g)
            xs, ys = np.full(n, np.nan), np.full(n, np.nan)
            if ok.any():
                pt = shapely.point_on_surface(g[ok])
                xs[ok], ys[ok] = shapely.get_x(pt), shapely.get_y(pt)
            src_rows = batch.frame["source_row"].to_numpy()[rows]
        if batch is not None and batch.field_map:      # name fields as delivered (物探点号, not exp_no)
            fld_a = np.array([batch.field_map.get(f, f) if isinstance(f, str) else f for f in fld_a], dtype=object)
        sev = severity or rule.severity
        name = layer or (batch.source_layer if batch is not None else "")
        for i in range(n):
            self.report.add(Finding(
                rule_id=rule_id, severity=sev, source_layer=name,
                row=_val(src_rows[i]), key=_val(key_a[i]), field=_val(fld_a[i]), value=_val(val_a[i]),
                message_zh=str(zh_a[i]), message_en=str(en_a[i]),
                x=None if np.isnan(xs[i]) else round(float(xs[i]), 8),
                y=None if np.isnan(ys[i]) else round(float(ys[i]), 8)))
        return n


def fmt(template: str, **cols) -> np.ndarray:
    """Format a message template per row: ``fmt("点号 {k}", k=array)``."""
    n = max((len(v) for v in cols.values() if isinstance(v, (np.ndarray, pd.Series, list))), default=1)
    arrays = {k: (np.asarray(v, dtype=object) if isinstance(v, (np.ndarray, pd.Series, list)) else np.full(n, v))
              for k, v in cols.items()}
    return np.array([template.format(**{k: _show(a[i]) for k, a in arrays.items()}) for i in range(n)], dtype=object)


def _show(v: Any) -> Any:
    v = _val(v)
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".")
    return "空" if v is None else v


def key_column(batch: LayerBatch) -> pd.Series | None:
    """The identifying column of a batch (point number, 'start-end' point numbers of a segment,
    pole number, code …)."""
    f = batch.frame
    if batch.target == "pipe_segment" and "start_exp_no" in f:
        key = f["start_exp_no"].fillna("?").astype(str) + "-" + f["end_exp_no"].fillna("?").astype(str)
        return key.where(f["start_exp_no"].notna() | f["end_exp_no"].notna(), f.get("code"))
    for col in ("exp_no", "pole_no", "code", "name"):
        if col in batch.frame.columns and batch.frame[col].notna().any():
            return batch.frame[col]
    return None


def source_field(batch: LayerBatch, column: str) -> str:
    """Delivered field name of a target column (the column name when unmapped)."""
    return batch.field_map.get(column, column)
