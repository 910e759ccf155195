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
import pyarrow as pa
import shapely

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

    ``rule`` says what decided: a rule of the profile (``alias``, a field name the profile lists;
    ``column``, the target column's own name; ``dbf_cut``, a listed name cut at a DBF field
    name's 10 bytes), the mapping assistant (``proposed``, from the field name and the values,
    with its ``confidence`` and ``reason``) or the user (``user``: a ``--map`` option or the
    county's saved mapping). A rule of the profile and the user decide with confidence 1.
    """

    column: str                     # target column of cim.<target>
    source: str                     # delivered field name
    rule: str                       # alias | column | dbf_cut | proposed | user
    confidence: float = 1.0
    reason: str = ""                # why (proposals and user mappings)

    @property
    def how(self) -> str:
        """``alias`` (a rule of the profile), ``proposed`` or ``user``."""
        return self.rule if self.rule in ("proposed", "user") else "alias"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class ValueMapping:
    """A delivered value of a coded column and the dictionary code it stands for.

    ``how`` is ``user`` (given, applied) or ``proposed`` (a near miss of a dictionary entry:
    shown for confirmation, not applied).
    """

    column: str
    value: str
    code: str
    how: str                        # user | proposed
    confidence: float = 1.0
    reason: str = ""
    count: int = 0                  # rows holding the value

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
    decided_by: str                 # given | detected (scored against every profile) | proposed (assistant)
    score: float                    # detection score (layer-name match 10, fields 1 or 2, geometry 3)
    fields: tuple[FieldMapping, ...] = ()
    source_fields: tuple[str, ...] = ()          # every delivered field, in delivered order
    samples: tuple[tuple[str, tuple[str, ...]], ...] = ()   # delivered field → a few distinct values
    values: tuple[ValueMapping, ...] = ()        # value mappings: given (applied) and proposed
    reason: str = ""                             # why the layer maps here (proposals)
    refused: tuple[tuple[str, str], ...] = ()    # delivered fields the user mapped to nothing, and by what

    @property
    def columns(self) -> dict[str, str]:
        """Target column → delivered field name."""
        return {f.column: f.source for f in self.fields}

    def rows(self) -> list[dict[str, Any]]:
        """The mapping table: per delivered field its target, how it was decided (``alias``,
        ``proposed``, ``user`` or ``unmapped``), confidence, reason and sample values. A field the
        user mapped to nothing has no target and ``how`` ``user``."""
        by_source = {f.source: f for f in self.fields}
        refused = dict(self.refused)
        samples = dict(self.samples)
        order = list(self.source_fields) + [f.source for f in self.fields if f.source not in self.source_fields]
        out = []
        for src in order:
            f = by_source.get(src)
            if f is None and src in refused:
                out.append({"source_field": src, "target": None, "how": "user", "confidence": 1.0,
                            "reason": f"不导入（{refused[src]}）", "samples": list(samples.get(src, ()))})
                continue
            out.append({"source_field": src, "target": f.column if f else None, "how": f.how if f else "unmapped",
                        "confidence": round(f.confidence, 2) if f else 0.0, "reason": f.reason if f else "",
                        "samples": list(samples.get(src, ()))})
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**{k: v for k, v in self.__dict__.items() if k not in ("fields", "samples", "values",
                                                                         "source_fields")},
                "fields": [f.to_dict() for f in self.fields], "values": [v.to_dict() for v in self.values]}


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
    chunk: int | None = None             # index among the chunks of a layer read in chunks, else None
    packed: bool = False                 # 'geom' and source_geom hold WKB (a validation residue)
    source_metric: bool = False          # a residue: the frame holds the metric source coordinates
                                         # the network rules read (ingest.validation.network.METRIC)

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"unknown target table {self.target}")
        if "source_row" not in self.frame.columns:
            self.frame["source_row"] = np.arange(1, len(self.frame) + 1, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.frame)

    def geometries(self, rows: np.ndarray | None = None) -> np.ndarray:
        """The EPSG:4490 geometries (of ``rows``) as shapely objects, also when held as WKB."""
        if self.packed:               # WKB, an Arrow binary column: only the rows asked for are decoded
            col = self.frame["geom"] if rows is None else self.frame["geom"].iloc[rows]
            return shapely.from_wkb(col.to_numpy(dtype=object, na_value=None))
        g = self.frame["geom"].to_numpy()
        return g if rows is None else g[rows]

    def source_geometries(self) -> np.ndarray | None:
        """The geometries in the source CRS as shapely objects (None when there are none)."""
        if self.source_geom is None:
            return None
        return shapely.from_wkb(self.source_geom) if self.packed else self.source_geom


def merge_chunks(chunks: list[LayerBatch]) -> LayerBatch:
    """The batches of the chunks of one layer joined into one batch of the whole layer."""
    first = chunks[0]
    if len(chunks) == 1:
        first.chunk = None
        return first

    def joined(arrays: list) -> np.ndarray | None:
        return None if any(a is None for a in arrays) else np.concatenate(arrays)

    def flags(b: LayerBatch, name: str) -> np.ndarray:
        v = getattr(b, name)
        return v if v is not None else np.zeros(len(b), dtype=bool)

    outliers = np.concatenate([flags(b, "outliers") for b in chunks])
    same = {(b.network, b.subtype) for b in chunks}
    network, subtype = next(iter(same)) if len(same) == 1 else (None, None)
    return LayerBatch(
        target=first.target, source_layer=first.source_layer, profile_id=first.profile_id,
        frame=pd.concat([b.frame for b in chunks], ignore_index=True), source_crs=first.source_crs,
        encoding=first.encoding, network=network, subtype=subtype,
        raw=None if any(b.raw is None for b in chunks) else pd.concat([b.raw for b in chunks], ignore_index=True),
        field_map=first.field_map, source_geom=joined([b.source_geom for b in chunks]),
        source_unit_m=first.source_unit_m, repaired=np.concatenate([flags(b, "repaired") for b in chunks]),
        file=first.file, spec_id=first.spec_id, outliers=outliers if outliers.any() else None,
        geometry_built=first.geometry_built, mapping=first.mapping)


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


UNMAPPED = ""          # the target of a delivered field the user mapped to nothing
LAYER_SEP = "::"       # LAYER::FIELD, a user's field mapping for one source layer


@dataclass
class UserMapping:
    """Mappings a user gave (``--map``, ``--map-value``, the upload form) or a county saved.

    ``fields``: delivered field name → target column, for every layer that holds the field and
    whose table has the column, or ``LAYER::FIELD`` → column for that layer only (a boundary
    dataset whose 市代码 is the city layer's code and the county layer's parent code); an empty
    column (:data:`UNMAPPED`) says the field maps to nothing, whatever the profile's aliases or
    the assistant would make of it (``--map 字段=``).
    ``values``: target column → delivered value → dictionary code.
    ``source`` names where the mapping came from for the report (e.g. ``county 430702 v3``).
    """

    fields: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    source: str = "user"

    def __bool__(self) -> bool:
        return bool(self.fields or self.values)

    def over(self, base: UserMapping | None) -> UserMapping:
        """This mapping laid over ``base`` (this one wins where both map a field or a value)."""
        if base is None:
            return self
        values = {c: dict(v) for c, v in base.values.items()}
        for col, vmap in self.values.items():
            values.setdefault(col, {}).update(vmap)
        source = self.source if not base else f"{self.source}; {base.source}"
        return UserMapping({**base.fields, **self.fields}, values, source)

    def for_layer(self, layer: str) -> UserMapping:
        """The mapping as it applies to one source layer: its ``LAYER::FIELD`` entries (as plain
        field names) over the plain ones, other layers' entries left out."""
        plain = {k: v for k, v in self.fields.items() if LAYER_SEP not in k}
        own = {k.split(LAYER_SEP, 1)[1]: v for k, v in self.fields.items() if k.startswith(layer + LAYER_SEP)}
        return UserMapping({**plain, **own}, self.values, self.source)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``fields``, ``values``)."""
        return {"fields": dict(self.fields), "values": {c: dict(v) for c, v in self.values.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, source: str = "user") -> UserMapping:
        """From :meth:`to_dict`'s form; unknown keys are ignored."""
        data = data or {}
        return cls({str(k): UNMAPPED if v is None else str(v) for k, v in (data.get("fields") or {}).items()},
                   {str(c): {str(k): str(v) for k, v in (m or {}).items()} for c, m in (data.get("values") or {}).items()},
                   source)


def arrow_text(values: Any) -> pa.ChunkedArray:
    """Values (a pandas column, an array or Arrow) as Arrow text, null where missing; a value
    that is not text by its ``str``. Held this way, a column keeps no Python object per value."""
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.ArrowDtype):
        values = values.array._pa_array
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return pa.chunked_array([values] if isinstance(values, pa.Array) else values.chunks,
                                type=values.type).cast(pa.string())
    series = pd.Series(values, dtype=object)
    return pa.chunked_array([pa.array(series.map(str, na_action="ignore"), type=pa.string(), from_pandas=True)])
