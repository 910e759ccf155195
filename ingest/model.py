"""The in-memory form of a delivery between the stages: read → map → validate → load.

The readers turn delivered files into source layers (:class:`ingest.readers.SourceLayer`); the
mapping stage turns each into a :class:`LayerBatch` whose columns are already the database
columns of the target table (``cim.<target>``), with geometries as a shapely array in
EPSG:4490, and records how it decided in a :class:`LayerMapping`. Validation adds
:class:`Finding` rows to a :class:`Report`; the loader commits only when the report has no errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cim.schema import FEATURE_TABLES

TARGETS = FEATURE_TABLES


class Severity(str, Enum):
    """Finding severity (domain.md §2.13): error rejects the delivery, warning loads and flags."""

    error = "error"
    warning = "warning"
    info = "info"


@dataclass
class Finding:
    """One validation finding, precise enough for a county team to fix the source."""

    rule_id: str                    # Q01 … Q27, or F/G/C/B rule ids for fields, geometry, CRS, buildings
    severity: Severity
    source_layer: str
    row: int | None                 # 1-based row in the source layer
    key: str | None                 # survey point number or feature id
    field: str | None
    value: Any
    message_zh: str
    message_en: str
    x: float | None = None          # lon/lat (EPSG:4490) to locate the finding on the map
    y: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        d = self.__dict__.copy()
        d["severity"] = self.severity.value
        if isinstance(d["value"], (np.generic,)):
            d["value"] = d["value"].item()
        return d


@dataclass
class Note:
    """A decision the reader took that the report must state (encoding, CRS, swapped axes …)."""

    source_layer: str
    topic: str                      # encoding | crs | axes | profile | geometry
    message_zh: str
    message_en: str


@dataclass(frozen=True)
class FieldMapping:
    """One target column and the delivered field that fills it, with how that was decided.

    ``rule`` says which of the profile's rules matched: ``alias`` (a field name the profile lists),
    ``column`` (the target column's own name) or ``dbf_cut`` (a listed name cut at a DBF field
    name's 10 bytes). A rule of the profile decides with ``confidence`` 1; a decision taken
    otherwise (a suggestion to confirm) carries its own.
    """

    column: str                     # target column of cim.<target>
    source: str                     # delivered field name
    rule: str                       # alias | column | dbf_cut
    confidence: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class LayerMapping:
    """How one source layer maps onto its target table: the mapping stage's decision, reportable."""

    source_layer: str
    profile_id: str
    spec_id: str                    # layer spec of the profile
    target: str                     # feature table of cim.schema
    decided_by: str                 # given (a profile was named) | detected (scored against every profile)
    score: float                    # detection score (layer-name match 10, fields 1 or 2, geometry 3)
    fields: tuple[FieldMapping, ...] = ()

    @property
    def columns(self) -> dict[str, str]:
        """Target column → delivered field name."""
        return {f.column: f.source for f in self.fields}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**{k: v for k, v in self.__dict__.items() if k != "fields"},
                "fields": [f.to_dict() for f in self.fields]}


@dataclass
class LayerBatch:
    """Rows of one source layer mapped onto one target table."""

    target: str                     # a feature table of cim.schema
    source_layer: str
    profile_id: str
    frame: pd.DataFrame             # DB column names; 'geom' holds shapely geometries (EPSG:4490)
    source_crs: str | None = None   # as declared or inferred, e.g. "EPSG:4546"
    encoding: str | None = None
    network: str | None = None      # CJJ 61 大类 for pipeline batches
    subtype: str | None = None
    # Added by the mapping stage for validation (not loaded): delivered values of the mapped columns
    # (target column → delivered field name in field_map), the geometries in the source CRS
    # (after any axis swap) with the metres per source unit, and rows whose geometry was repaired.
    raw: pd.DataFrame | None = None
    field_map: dict[str, str] = field(default_factory=dict)
    source_geom: np.ndarray | None = None
    source_unit_m: float | None = None   # None when the source CRS is geographic
    repaired: np.ndarray | None = None   # bool per row
    file: str | None = None              # file (and layer) inside the delivery
    spec_id: str | None = None           # layer spec of the profile that matched
    outliers: np.ndarray | None = None   # bool per row: coordinates far from the rest (rule G04)
    geometry_built: bool = False         # lines built from the point table (no delivered geometry)
    mapping: LayerMapping | None = None  # how the layer was mapped (profile, fields, rules)

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"unknown target table {self.target}")
        if "source_row" not in self.frame.columns:
            self.frame["source_row"] = np.arange(1, len(self.frame) + 1, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.frame)


@dataclass
class Delivery:
    """Everything read from one uploaded file (a zip, a GeoPackage, a workbook …)."""

    path: Path
    file_name: str
    sha256: str
    size_bytes: int
    county_code: str | None
    batches: list[LayerBatch] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Rows per target table."""
        out: dict[str, int] = {}
        for b in self.batches:
            out[b.target] = out.get(b.target, 0) + len(b)
        return out


@dataclass
class Report:
    """Validation result of a delivery."""

    delivery: Delivery
    findings: list[Finding] = field(default_factory=list)

    @property
    def has_errors(self) -> bool:
        """True when any finding rejects the delivery."""
        return any(f.severity is Severity.error for f in self.findings)

    def add(self, finding: Finding) -> None:
        """Append one finding."""
        self.findings.append(finding)
