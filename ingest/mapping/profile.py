"""Delivery specification profiles: YAML data that maps delivered layers onto target tables.

A profile (``ingest/profiles/*.yaml``) describes one delivery specification: which source
layer names it covers (regular expressions), which delivered field names (Chinese names and
pinyin abbreviations) feed each database column, code-list translations, units and the
M/C/O (mandatory / conditional / optional) status of each field. Users add profiles for
unfamiliar deliveries by dropping YAML files into a directory listed in the environment
variable ``CIM_INGEST_PROFILES`` (colon-separated); no code changes are needed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cim.errors import ConfigError, InvalidInput
from cim.schema import FEATURE_TABLES
from ingest.data import DATA_DIR, read_yaml
from ingest.model import FieldMapping, LayerMapping, ValueMapping

PROFILE_DIR = DATA_DIR / "profiles"
ENV_VAR = "CIM_INGEST_PROFILES"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldSpec(_Strict):
    """How one target column is filled from the delivered fields."""

    aliases: list[str] = Field(default_factory=list)   # delivered field names, first match wins
    required: Literal["M", "C", "O"] = "O"              # CJJ 61 / census M/C/O status
    unit: Literal["mm", "cm", "m", "km", "in", "ft"] | None = None  # unit of the delivered value
    codes: str | None = None                            # code list (a key of codelists)
    section: bool = False                               # value may be "W×H": fills width/height too
    year: bool = False                                  # value may be a date or a year: keep the year


class CoordSpec(_Strict):
    """Coordinate columns of a point table (Chinese tables: X = northing, Y = easting)."""

    x: list[str] = Field(default_factory=lambda: ["X", "X坐标", "XZB", "纵坐标", "北坐标", "纬度", "LAT", "LATITUDE"])
    y: list[str] = Field(default_factory=lambda: ["Y", "Y坐标", "YZB", "横坐标", "东坐标", "经度", "LON", "LNG",
                                                  "LONGITUDE"])
    x_is_northing: bool = True


class CodeList(_Strict):
    """Translation of delivered values (names, synonyms, foreign codes) to our codes."""

    dictionary: str | None = None                      # cim.dict_* table holding the valid codes
    map: dict[str, Any] = Field(default_factory=dict)  # delivered value → code


class LayerSpec(_Strict):
    """One kind of delivered layer and its target table."""

    id: str
    target: str                                        # a feature table (cim.schema)
    names: list[str]                                   # regexes, full match, case-insensitive
    geometry: Literal["point", "line", "polygon", "none"]
    coords: CoordSpec | None = None                    # point tables without geometry
    lines_from_points: bool = False                    # line tables: build lines from start/end points
    network: str | None = None                         # fixed CJJ 61 大类 or 小类 code
    fields: dict[str, FieldSpec]
    defaults: dict[str, Any] = Field(default_factory=dict)  # constant column values
    z_ref: dict[str, str] = Field(default_factory=dict)     # per network (大类 or 小类), key "default"

    @model_validator(mode="after")
    def _check(self) -> LayerSpec:
        if self.target not in FEATURE_TABLES:
            raise ValueError(f"target {self.target!r} is not a feature table ({', '.join(FEATURE_TABLES)})")
        for pat in self.names:
            re.compile(pat)
        if self.lines_from_points and self.target != "pipe_segment":
            raise ValueError("lines_from_points is only for pipe_segment layers")
        return self


class Profile(_Strict):
    """A delivery specification."""

    id: str
    title_zh: str
    title_en: str
    standard: str | None = None
    description: str | None = None
    codelists: dict[str, CodeList] = Field(default_factory=dict)
    layers: list[LayerSpec]
    source: str | None = None                          # file the profile was read from

    def layer(self, layer_id: str) -> LayerSpec:
        """The layer spec with this id."""
        for spec in self.layers:
            if spec.id == layer_id:
                return spec
        raise KeyError(layer_id)


def norm_name(name: str) -> str:
    """Canonical form of a field or layer name for matching: case-folded, without _ - space."""
    return re.sub(r"[\s_\-.（）()]+", "", str(name)).casefold()


def profile_dirs(extra_dirs: Iterable[Path | str] = ()) -> list[Path]:
    """The built-in profile directory, then ``CIM_INGEST_PROFILES`` dirs, then ``extra_dirs``."""
    dirs = [PROFILE_DIR]
    env = os.environ.get(ENV_VAR, "")
    dirs += [Path(p) for p in env.split(os.pathsep) if p.strip()]
    dirs += [Path(p) for p in extra_dirs]
    return dirs


@lru_cache(maxsize=256)
def _read_profile_cached(path: str, mtime_ns: int) -> Profile:
    p = Path(path)
    try:
        prof = Profile.model_validate(read_yaml(p))
    except (yaml.YAMLError, ValidationError, TypeError) as exc:
        raise ConfigError(f"交付规范文件 {p.name} 无效：{exc}", f"invalid delivery profile {p}: {exc}") from exc
    prof.source = path
    return prof


def _read_profile(path: Path) -> Profile:
    """A profile file, parsed once per modification time."""
    return _read_profile_cached(str(path.resolve()), path.stat().st_mtime_ns)


def load_profiles(extra_dirs: Sequence[Path | str] = ()) -> dict[str, Profile]:
    """Every profile by id; later directories override earlier ones with the same id."""
    out: dict[str, Profile] = {}
    for d in profile_dirs(extra_dirs):
        if not d.is_dir():
            if d != PROFILE_DIR:
                raise ConfigError(f"交付规范目录不存在：{d}", f"profile directory does not exist: {d}")
            continue
        for path in sorted(d.glob("*.y*ml")):
            prof = _read_profile(path)
            out[prof.id] = prof
    return out


@lru_cache(maxsize=1)
def shared_codelists() -> dict[str, CodeList]:
    """Code lists shared by all profiles (``ingest/codelists.yaml``)."""
    data = read_yaml(DATA_DIR / "codelists.yaml")
    return {k: CodeList.model_validate(v) for k, v in data.items()}


def codelists_for(profile: Profile) -> dict[str, CodeList]:
    """Shared code lists extended (map entries merged) by the profile's own."""
    out = dict(shared_codelists())
    for name, cl in profile.codelists.items():
        base = out.get(name)
        if base is None:
            out[name] = cl
        else:
            out[name] = CodeList(dictionary=cl.dictionary or base.dictionary, map={**base.map, **cl.map})
    return out


@dataclass(frozen=True)
class Match:
    """A source layer matched to a profile layer spec."""

    profile: Profile
    spec: LayerSpec
    score: float
    name_groups: dict[str, str]       # named groups captured from the layer-name pattern
    fields: tuple[FieldMapping, ...]  # target column ← delivered field, and the rule that matched
    given: bool = False               # the profile was named, not detected
    reason: str = ""                  # set when the mapping assistant proposed the layer
    values: tuple[ValueMapping, ...] = ()   # value mappings: given (applied) and proposed
    refused: tuple[tuple[str, str], ...] = ()   # delivered fields the user mapped to nothing, and by what

    @property
    def columns(self) -> dict[str, str]:
        """Target column → delivered field name."""
        return {f.column: f.source for f in self.fields}

    def mapping(self, source_layer: str, source_fields: Sequence[str] = (),
                samples: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> LayerMapping:
        """The decision as a reportable record (with the delivered fields and a few of their values)."""
        decided = "proposed" if self.reason else "given" if self.given else "detected"
        return LayerMapping(source_layer, self.profile.id, self.spec.id, self.spec.target, decided, self.score,
                            self.fields, tuple(str(c) for c in source_fields), samples, self.values, self.reason,
                            self.refused)


def map_fields(spec: LayerSpec, columns: Sequence[str]) -> tuple[FieldMapping, ...]:
    """The delivered field of each target column the spec can fill, and the rule that found it:
    the spec's aliases in order, then the column's own name, then those names cut at a DBF
    field name's 10 bytes. Each delivered field fills one column at most."""
    by_norm: dict[str, str] = {}
    for c in columns:
        by_norm.setdefault(norm_name(c), c)
    out: list[FieldMapping] = []
    used: set[str] = set()
    for col, fs in spec.fields.items():
        names = [(a, "alias") for a in fs.aliases] + [(col, "column")]
        # DBF field names hold 10 bytes: UTF-8 Chinese names arrive cut (物探点号 → 物探点)
        names += [(t, "dbf_cut") for a, _ in names for t in _dbf_truncated(a)]
        for alias, rule in names:
            hit = by_norm.get(norm_name(alias))
            if hit is not None and hit not in used:
                out.append(FieldMapping(col, hit, rule))
                used.add(hit)
                break
    return tuple(out)


def match_columns(spec: LayerSpec, columns: Sequence[str]) -> dict[str, str]:
    """Target column → delivered column name, using the spec's aliases."""
    return {f.column: f.source for f in map_fields(spec, columns)}


def _dbf_truncated(alias: str) -> list[str]:
    """The alias cut to a DBF field name's 10 bytes in UTF-8 and in GBK (物探点号 → 物探点 in
    UTF-8; 行政区划代码 → 行政区划代 in GBK), when that differs from the alias."""
    out = []
    for enc in ("utf-8", "gbk"):
        raw = alias.encode(enc, errors="ignore")
        if len(raw) > 10:
            cut = raw[:10].decode(enc, errors="ignore")
            if len(cut) >= 2:
                out.append(cut)
    return out


def _name_match(spec: LayerSpec, layer_name: str) -> dict[str, str] | None:
    base = Path(layer_name).stem if "." in layer_name else layer_name
    for pat in spec.names:
        m = re.fullmatch(pat, base.strip(), flags=re.IGNORECASE)
        if m:
            return {k: v for k, v in m.groupdict().items() if v}
    return None


def name_targets(layer_name: str, profiles: dict[str, Profile]) -> set[str]:
    """Target tables whose profile layers match a layer name (the name only, no fields read)."""
    return {spec.target for prof in profiles.values() for spec in prof.layers if _name_match(spec, layer_name) is not None}


def detect(layer_name: str, columns: Sequence[str], geometry: str, profiles: dict[str, Profile], *,
           profile: str | None = None) -> Match | None:
    """Best profile layer for a source layer from its name, its fields and its geometry kind.

    Score: a layer-name match counts 10, each recognised field 1 (mandatory fields 2), a
    matching geometry kind 3. A spec needs a name match or at least three recognised fields
    including all its mandatory ones.
    """
    if profile is not None and profile not in profiles:
        raise InvalidInput(f"未知的交付规范：{profile}", f"unknown delivery profile: {profile}",
                           known=sorted(profiles))
    cands = [profiles[profile]] if profile else list(profiles.values())
    best: Match | None = None
    for prof in cands:
        for spec in prof.layers:
            groups = _name_match(spec, layer_name)
            fields = map_fields(spec, columns)
            cols = {f.column for f in fields}
            mand = [c for c, f in spec.fields.items() if f.required == "M"]
            has_mand = all(c in cols for c in mand)
            if groups is None and (len(cols) < 3 or not has_mand):
                continue
            if not geometry_fits(spec, geometry):
                continue
            score: float = (10 if groups is not None else 0) + sum(2 if c in mand else 1 for c in cols) + 3
            score += 0.5 * has_mand
            if best is None or score > best.score:
                best = Match(prof, spec, score, groups or {}, fields, given=bool(profile))
    return best


def geometry_fits(spec: LayerSpec, geometry: str) -> bool:
    """A source geometry kind fits a spec; tables without geometry fit point tables with
    coordinate columns and line tables built from points."""
    if geometry == spec.geometry:
        return True
    if geometry == "none":
        return (spec.geometry == "point" and spec.coords is not None) or (
            spec.geometry == "line" and spec.lines_from_points)
    return False
