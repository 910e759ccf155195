"""The mapping assistant: proposals for the layers and fields a profile does not recognise.

A profile is where mapping starts, not a gate. For a layer the profile's rules leave open, the
assistant looks at

- **layer names**: a network code or name and a geometry role (``YS_LIN``, ``YSX``, ``雨水线``,
  ``WS_PNT``) → the pipeline point or line spec with that network;
- **field names**: similarity of the characters, pinyin initials (建筑层数 ↔ JZCS), shared
  suffixes (建筑层数 ends like 地上层数 / 层数; 建筑结构 like 房屋结构), the meanings of the words
  of English names (UPSTRUCT, INVERT_DN, SIZE1), and administrative levels in the names of a
  boundary dataset (市名/市代码 beside 县名/县代码: the layer's own level and its parent);
- **values**: four-digit integers in the year range → a year column; values that are a
  dictionary's names or codes → that coded column; numbers in a plausible range → depth,
  diameter, elevation (weak alone).

Each proposal carries a confidence and its reason; those at or above ``accept`` in
``ingest/assistant.yaml`` are used in the run and reported as ``proposed``, so a dry run shows
the mapping to confirm instead of drowning in "mandatory field missing". A year delivered under
an era field fills the year column (the era is derived from it). Values close to a dictionary
entry (砖混结 ~ 砖混结构) are proposed as value mappings, never applied. Mappings the user gives
(:class:`~ingest.model.UserMapping`: ``--map``, the upload form, a county's saved mapping) win
over everything and are reported as ``user``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from cim.schema import feature_table
from ingest.data import DATA_DIR, read_yaml
from ingest.mapping.normalize import Dictionaries, as_text, clean_text
from ingest.mapping.profile import CodeList, FieldSpec, LayerSpec, Match, Profile, codelists_for, map_fields, norm_name
from ingest.model import UNMAPPED, FieldMapping, UserMapping, ValueMapping

_HAN = re.compile(r"[\u4e00-\u9fff]")
SAMPLE_ROWS = 500          # rows looked at per field (head and tail)
SAMPLES_SHOWN = 3          # distinct sample values reported per field


@lru_cache(maxsize=1)
def settings() -> dict[str, Any]:
    """The assistant's tuning data (``ingest/assistant.yaml``)."""
    return read_yaml(DATA_DIR / "assistant.yaml")


@dataclass(frozen=True)
class Proposal:
    """A delivered field proposed for a target column."""

    source: str
    column: str
    confidence: float
    reason: str


# ---------------------------------------------------------------- names

@lru_cache(maxsize=4096)
def initials(name: str) -> str:
    """Pinyin initials of the Chinese characters of a name, other characters kept (建筑层数 → jzcs)."""
    from pypinyin import Style, lazy_pinyin

    return "".join(p[0] for p in lazy_pinyin(norm_name(name), style=Style.FIRST_LETTER, errors="default") if p)


def _common_suffix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return a[len(a) - n:]


@lru_cache(maxsize=1)
def _vocabulary() -> dict[str, str]:
    """English word (upper case) → its meaning (``""`` for the words that carry none)."""
    cfg = settings()["english"]
    words = {str(w).upper(): "" for w in cfg.get("ignore", [])}
    for meaning, forms in cfg["meanings"].items():
        words.update({str(w).upper(): meaning for w in forms})
    return words


_WORD_BREAK = re.compile(r"[^A-Za-z]+|(?<=[a-z])(?=[A-Z])")


def _segment(token: str, vocab: dict[str, str]) -> list[str] | None:
    """The meanings of a run-together token (UPINVERT → start, invert) split into the fewest
    known words, or None when it cannot be split into known words."""
    n = len(token)
    best: list[list[str] | None] = [None] * (n + 1)       # best[i]: meanings of token[:i]
    best[0] = []
    for i in range(n):
        head = best[i]
        if head is None:
            continue
        for j in range(i + 1, n + 1):
            meaning = vocab.get(token[i:j])
            cur = best[j]
            if meaning is not None and (cur is None or len(head) + 1 < len(cur)):
                best[j] = [*head, meaning]
    return best[n]


@lru_cache(maxsize=4096)
def meanings(name: str) -> tuple[frozenset[str], int] | None:
    """The meanings of an English field name's words and the number of its words that are not
    known (``english`` in ``ingest/assistant.yaml``); None for a name that is not ASCII."""
    if not name.isascii():
        return None
    vocab = _vocabulary()
    found: set[str] = set()
    unknown = 0
    for token in filter(None, _WORD_BREAK.split(name)):
        parts = _segment(token.upper(), vocab)
        if parts is None:
            unknown += 1
        else:
            found.update(m for m in parts if m)
    return frozenset(found), unknown


def word_evidence(source: str, column: str) -> tuple[float, str] | None:
    """How an English field name's word meanings fit a column: (confidence, why), (0, "") when
    they do not, None when the name says a direction opposite to every meaning set of the column
    (no spelling similarity may then map it)."""
    cfg = settings()["english"]
    m = meanings(source)
    alts = [frozenset(a) for a in cfg["columns"].get(column, [])]
    if m is None or not m[0] or not alts:
        return 0.0, ""
    found, unknown = m
    for pair in cfg.get("opposites", []):
        for a, b in (pair, pair[::-1]):
            if a in found and b not in found and all(b in alt and a not in alt for alt in alts):
                return None
    if found in alts:
        conf = cfg["confidence"] if unknown == 0 else cfg["partial"]
        return conf, f"英文字段名 {source} 的词义（{'+'.join(sorted(found))}）对应 {column}"
    return 0.0, ""


def name_evidence(source: str, column: str, fs: FieldSpec) -> tuple[float, str]:
    """How well a delivered field name fits a target column (0–1) and why."""
    s = norm_name(source)
    s_han = bool(_HAN.search(s))
    words = word_evidence(source, column)
    if words is None:
        return 0.0, ""
    best: tuple[float, str] = words
    for end in settings().get("endings", {}).get(column, []):
        e = norm_name(end)
        if s.endswith(e) and s != e and (_HAN.search(e) or len(s) > len(e)):
            best = max(best, (settings()["ending_confidence"], f"字段名以“{end}”结尾"))
    for alias in [*fs.aliases, column]:
        a = norm_name(alias)
        if not a or a == s:
            continue
        cands: list[tuple[float, str]] = []
        a_han = bool(_HAN.search(a))
        if a_han and not s_han and s == initials(a):
            cands.append((0.85, f"拼音首字母 {alias} → {s.upper()}"))
        if s_han and not a_han and initials(s) == a:
            cands.append((0.8, f"拼音首字母 {source} → {alias}"))
        suffix = _common_suffix(s, a)
        if _HAN.search(suffix) and len(suffix) >= 2:
            if suffix == a:
                cands.append((0.8, f"字段名以“{alias}”结尾"))
            elif suffix != s:
                cands.append((0.55 + 0.25 * len(suffix) / max(len(s), len(a)), f"与“{alias}”同后缀“{suffix}”"))
        ratio = difflib.SequenceMatcher(None, s, a).ratio()
        if ratio >= 0.75:
            cands.append((0.85 * ratio, f"与“{alias}”名称相近"))
        for c in cands:
            if c[0] > best[0]:
                best = c
    return best


@dataclass(frozen=True)
class Hierarchy:
    """Administrative levels named in a layer's field names (市名/市代码, 县名/县代码 …)."""

    level: str                         # the layer's own level (the most detailed one present)
    zh: str
    fields: dict[str, str]             # name / code → its delivered field
    parent_code: str | None            # the code field of the next level up present, if any


def hierarchy(columns: list[str], target: str) -> Hierarchy | None:
    """The levels of ``hierarchy`` in ``ingest/assistant.yaml`` that the field names of a layer
    of ``target`` hold, or None."""
    cfg = settings().get("hierarchy")
    if not cfg or target != cfg["target"]:
        return None
    endings = {role: {norm_name(e) for e in settings()["endings"][role]} for role in ("name", "code")}
    found: dict[int, dict[str, str]] = {}
    for c in columns:
        n = norm_name(c)
        hit = None
        for idx, lv in enumerate(cfg["levels"]):
            for w in sorted((norm_name(w) for w in lv["words"]), key=len, reverse=True):
                rest = n[len(w):] if n.startswith(w) else None
                role = next((r for r, ends in endings.items() if rest in ends), None)
                if role is not None:
                    hit = (idx, role)
                    break
            if hit:
                break
        if hit:
            found.setdefault(hit[0], {}).setdefault(hit[1], str(c))
    own = max((i for i, f in found.items() if "code" in f or "name" in f), default=None)
    if own is None:
        return None
    parent = max((i for i, f in found.items() if i < own and "code" in f), default=None)
    lv = cfg["levels"][own]
    return Hierarchy(lv["level"], lv["zh"], found[own], found[parent]["code"] if parent is not None else None)


def _hierarchy_proposals(h: Hierarchy | None, taken: set[str], filled: set[str]) -> list[Proposal]:
    if h is None:
        return []
    cfg = settings()["hierarchy"]
    cols, conf = cfg["columns"], cfg["confidence"]
    out = [Proposal(src, cols[role], conf, f"字段名带层级“{h.zh}”，本图层最细的一级（{h.level}）的{'名称' if role == 'name' else '代码'}")
           for role, src in h.fields.items()]
    if h.parent_code:
        out.append(Proposal(h.parent_code, cols["parent"], conf, "上一级的代码"))
    return [p for p in out if p.source not in taken and p.column not in filled]


# ---------------------------------------------------------------- values

def sample(s: pd.Series) -> pd.Series:
    """Non-empty values of a column, head and tail (as text)."""
    n = len(s)
    part = s if n <= SAMPLE_ROWS else pd.concat([s.iloc[:SAMPLE_ROWS // 2], s.iloc[-SAMPLE_ROWS // 2:]])
    t = as_text(part)
    return t[t.notna()]


def year_share(values: pd.Series) -> float:
    """Share of the values that are four-digit years in the configured range."""
    if values.empty:
        return 0.0
    y = settings()["years"]
    num = pd.to_numeric(values.str.replace("年", "", regex=False).str.strip(), errors="coerce")
    ok = num.notna() & (num == np.floor(num.fillna(0))) & (num >= y["min"]) & (num <= y["max"])
    return float(ok.mean())


def code_table(cl: CodeList, dicts: Dictionaries) -> dict[str, str]:
    """Upper-cased delivered value → code for a code list (dictionary codes and names, its map)."""
    table: dict[str, str] = {}
    if cl.dictionary:
        for code in dicts.codes.get(cl.dictionary, ()):
            table[code.upper()] = code
        for name, code in dicts.names.get(cl.dictionary, {}).items():
            table[name.upper()] = code
    for k, v in cl.map.items():
        table[str(k).strip().upper()] = str(v)
    return table


@dataclass(frozen=True)
class ValueProfile:
    """What the values of one delivered field look like (from a sample)."""

    empty: bool
    years: float                    # share of four-digit years in range
    uniques: frozenset[str]         # distinct values, upper-cased
    numbers: np.ndarray | None      # the values as numbers, None when some are not numbers

    @classmethod
    def of(cls, values: pd.Series) -> ValueProfile:
        """The profile of a sample (:func:`sample`)."""
        num = pd.to_numeric(values, errors="coerce")
        numbers = num.to_numpy(dtype="float64") if len(num) and num.isna().mean() <= 0.05 else None
        if numbers is not None:
            numbers = numbers[np.isfinite(numbers)]
        return cls(values.empty, year_share(values), frozenset(values.str.upper().unique()), numbers)


def value_evidence(vp: ValueProfile, column: str, fs: FieldSpec, kind: str, lists: dict[str, CodeList],
                   tables: dict[str, dict[str, str]]) -> tuple[float, str]:
    """How well the delivered values (their profile) fit a target column (0–1) and why
    (``tables``: :func:`code_table` of each code list)."""
    if vp.empty:
        return 0.0, ""
    cfg = settings()
    if fs.year or (kind == "int" and column.endswith("year")):
        if vp.years >= cfg["years"]["share"]:
            return cfg["year_confidence"], f"{vp.years:.0%} 的值为 {cfg['years']['min']}–{cfg['years']['max']} 的年份"
        return 0.0, ""
    if fs.codes and fs.codes in lists:
        if not vp.uniques or all(u.isdigit() for u in vp.uniques):
            return 0.0, ""                     # bare numbers fit too many code lists
        table = tables[fs.codes]
        share = sum(u in table for u in vp.uniques) / len(vp.uniques)
        if share >= cfg["dictionary"]["share"]:
            conf = cfg["dictionary"]["confidence"] * (0.5 if len(vp.uniques) == 1 else 1.0)  # a constant says little
            return conf, f"{share:.0%} 的取值属于 {lists[fs.codes].dictionary or fs.codes}"
        return 0.0, ""
    if kind in ("float", "int") and vp.numbers is not None and len(vp.numbers):
        for r in cfg["ranges"]:
            if re.fullmatch(r["column"], column):
                num = vp.numbers
                ok = (num >= r["min"]) & (num <= r["max"])
                if r.get("integers"):
                    ok &= num == np.floor(num)
                if ok.mean() >= 0.95:
                    return cfg["range_confidence"], f"数值在{r['zh']}的合理范围 {r['min']}–{r['max']}"
                return 0.0, ""
    return 0.0, ""


# ---------------------------------------------------------------- fields

def propose_fields(spec: LayerSpec, profile: Profile, frame: pd.DataFrame, taken: set[str], filled: set[str],
                   dicts: Dictionaries, *, skip: AbstractSet[str] = frozenset()) -> list[Proposal]:
    """Proposals for the delivered fields not ``taken`` onto the spec's columns not ``filled``,
    best first, each field and each column at most once."""
    kinds = feature_table(spec.target).kinds()
    lists = codelists_for(profile)
    tables = {name: code_table(cl, dicts) for name, cl in lists.items()}
    pairs: list[Proposal] = []
    sources = [c for c in frame.columns if c not in taken and c not in skip and c != "geometry"]
    profiles = {c: ValueProfile.of(sample(frame[c])) for c in sources}
    for col, fs in spec.fields.items():
        if col in filled:
            continue
        for src in sources:
            n, n_why = name_evidence(src, col, fs)
            v, v_why = value_evidence(profiles[src], col, fs, kinds.get(col, "text"), lists, tables)
            if n == 0 and v == 0:
                continue
            conf = 1 - (1 - n) * (1 - v)
            pairs.append(Proposal(src, col, round(conf, 3), "；".join(w for w in (n_why, v_why) if w)))
    h = hierarchy([str(c) for c in frame.columns if c != "geometry"], spec.target)
    pairs += [p for p in _hierarchy_proposals(h, taken | set(skip), filled) if p.column in spec.fields]
    pairs.sort(key=lambda p: -p.confidence)
    out: list[Proposal] = []
    used_src: set[str] = set()
    used_col: set[str] = set()
    for p in pairs:
        if p.source in used_src or p.column in used_col:
            continue
        out.append(p)
        used_src.add(p.source)
        used_col.add(p.column)
    return out


def _coords_fields(spec: LayerSpec, frame: pd.DataFrame) -> set[str]:
    if spec.coords is None:
        return set()
    names = {norm_name(a) for a in (*spec.coords.x, *spec.coords.y)}
    return {c for c in frame.columns if norm_name(c) in names}


def _years_in_coded(frame: pd.DataFrame, match: Match) -> list[FieldMapping]:
    """Coded fields (an era) that hold years, moved onto the spec's empty year column."""
    out = []
    year_cols = [c for c, fs in match.spec.fields.items() if fs.year and c not in match.columns]
    for f in match.fields:
        fs = match.spec.fields.get(f.column)
        if not year_cols or fs is None or not fs.codes or fs.year:
            continue
        share = year_share(sample(frame[f.source]))
        if share >= settings()["years"]["share"]:
            out.append(FieldMapping(year_cols.pop(0), f.source, "proposed", round(share, 2),
                                    f"{f.source} 的值为年份（{share:.0%}）：填入年份并推导{f.column}"))
    return out


def assist(match: Match, frame: pd.DataFrame, dicts: Dictionaries, user: UserMapping | None = None) -> Match:
    """The match with the user's mappings laid over the profile's and proposals for the rest; a
    field the user mapped to nothing (:data:`~ingest.model.UNMAPPED`) is left out of both.

    The returned match carries its own copies of the spec and profile when user mappings add a
    column or value translations; ``match.values`` lists the value mappings (given and proposed).
    """
    match = _with_level(match, frame)
    spec, profile = match.spec, match.profile
    kinds = feature_table(spec.target).kinds()
    fields = {f.column: f for f in match.fields}
    extra_specs: dict[str, FieldSpec] = {}
    refused: dict[str, str] = {}
    if user:
        for src, col in user.fields.items():
            if src in frame.columns and col == UNMAPPED:     # the field is not what the profile or a proposal says
                for c in [c for c, f in fields.items() if f.source == src]:
                    del fields[c]
                refused[src] = user.source
                continue
            if src not in frame.columns or col not in kinds or col == "geom":
                continue
            for c in [c for c, f in fields.items() if f.source == src or c == col]:
                del fields[c]
            fields[col] = FieldMapping(col, src, "user", 1.0, user.source)
            if col not in spec.fields:
                extra_specs[col] = FieldSpec(aliases=[src])
    for moved in _years_in_coded(frame, replace(match, fields=tuple(fields.values()))):
        old = next(c for c, f in fields.items() if f.source == moved.source)
        if fields[old].rule != "user":
            del fields[old]
            fields[moved.column] = moved
    taken = {f.source for f in fields.values()} | set(refused)
    for p in propose_fields(spec, profile, frame, taken, set(fields), dicts, skip=_coords_fields(spec, frame)):
        if p.confidence >= settings()["accept"]:
            fields[p.column] = FieldMapping(p.column, p.source, "proposed", p.confidence, p.reason)
    spec, profile = _with_user_values(spec, profile, extra_specs, user)
    ordered = tuple(sorted(fields.values(), key=lambda f: list(frame.columns).index(f.source)
                           if f.source in frame.columns else 0))
    out = replace(match, spec=spec, profile=profile, fields=ordered, refused=tuple(refused.items()))
    return replace(out, values=tuple(_value_mappings(out, frame, dicts, user)))


def _with_level(match: Match, frame: pd.DataFrame) -> Match:
    """The match with the level its field names show (:func:`hierarchy`) as the level column's
    value, when no field fills that column and the profile's names did not fix it (a layer the
    assistant placed, or a spec without a level)."""
    h = hierarchy([str(c) for c in frame.columns if c != "geometry"], match.spec.target)
    if h is None:
        return match
    spec, col = match.spec, settings()["hierarchy"]["columns"]["level"]
    if col in match.columns or spec.defaults.get(col) == h.level or (col in spec.defaults and not match.reason):
        return match
    spec = spec.model_copy(update={"defaults": {**spec.defaults, col: h.level}})
    profile = match.profile.model_copy(update={"layers": [spec if s.id == spec.id else s for s in match.profile.layers]})
    why = f"字段名显示本图层为{h.zh}级：{col} = {h.level}"
    return replace(match, spec=spec, profile=profile, reason=f"{match.reason}；{why}" if match.reason else why)


def _with_user_values(spec: LayerSpec, profile: Profile, extra: dict[str, FieldSpec],
                      user: UserMapping | None) -> tuple[LayerSpec, Profile]:
    """Copies of the spec and profile with the user's columns and value translations."""
    values = (user.values if user else {}) or {}
    if not extra and not any(c in spec.fields or c in extra for c in values):
        return spec, profile
    fields = {**spec.fields, **extra}
    codelists = dict(profile.codelists)
    base = codelists_for(profile)
    for col, vmap in values.items():
        fs = fields.get(col)
        if fs is None:
            continue
        name = fs.codes or f"user_{col}"
        prev = base.get(name) or CodeList()
        codelists[name] = CodeList(dictionary=prev.dictionary, map={**prev.map, **vmap})
        if fs.codes is None:
            fields[col] = fs.model_copy(update={"codes": name})
    spec = spec.model_copy(update={"fields": fields})
    layers = [spec if s.id == spec.id else s for s in profile.layers]
    return spec, profile.model_copy(update={"codelists": codelists, "layers": layers})


def _value_mappings(match: Match, frame: pd.DataFrame, dicts: Dictionaries,
                    user: UserMapping | None) -> list[ValueMapping]:
    """The user's value mappings for mapped columns, then near misses of dictionary entries."""
    out: list[ValueMapping] = []
    given = (user.values if user else {}) or {}
    lists = codelists_for(match.profile)
    cutoff = settings()["near_miss"]
    for f in match.fields:
        fs = match.spec.fields.get(f.column)
        counts = _value_counts(frame[f.source]) if f.column in given or (fs is not None and fs.codes) else {}
        for value, code in given.get(f.column, {}).items():
            out.append(ValueMapping(f.column, value, code, "user", 1.0, user.source if user else "",
                                    int(counts.get(value, 0))))
        if fs is None or not fs.codes or fs.codes not in lists or fs.year or not counts:
            continue
        if pd.api.types.is_numeric_dtype(frame[f.source]):
            continue
        table = code_table(lists[fs.codes], dicts)
        keys = [k for k in table if not k.isdigit()]
        for value, n in sorted(counts.items(), key=lambda kv: -kv[1])[:200]:
            v = str(value)
            if v.upper() in table or v.isdigit():
                continue
            close = difflib.get_close_matches(v.upper(), keys, n=1, cutoff=cutoff)
            contained = [k for k in keys if len(k) >= 2 and (k in v.upper() or v.upper() in k)]
            hit = close[0] if close else (max(contained, key=len) if contained else None)
            if hit is None:
                continue
            conf = difflib.SequenceMatcher(None, v.upper(), hit).ratio()
            out.append(ValueMapping(f.column, v, table[hit], "proposed", round(conf, 2),
                                    f"与字典项“{hit}”相近（未采用，请确认）", int(n)))
    return out


# ---------------------------------------------------------------- layers

def _role_pattern() -> re.Pattern[str]:
    roles = settings()["roles"]
    alt = {r: "|".join(sorted((re.escape(w) for w in words), key=len, reverse=True)) for r, words in roles.items()}
    return re.compile(rf"^(?:.*[_\-\s])?(?P<net>[A-Za-z]{{2}}|[\u4e00-\u9fff]{{2,4}}?)(?:管)?[_\-\s]?"
                      rf"(?:(?P<point>{alt['point']})|(?P<line>{alt['line']}))(?:表)?$", re.IGNORECASE)


def layer_hint(layer_name: str, dicts: Dictionaries, network_names: dict[str, Any]) -> tuple[str, str, str] | None:
    """(network code, ``point`` | ``line``, reason) read from a layer name such as ``YS_LIN``,
    ``YSX``, ``雨水线`` or ``WS_PNT``; None when the name says neither."""
    base = layer_name.rsplit("/", 1)[-1]
    base = base.rsplit(".", 1)[0] if "." in base else base
    m = _role_pattern().match(base.strip())
    if not m:
        return None
    net = m.group("net")
    codes = dicts.parents.get("dict_network", {})
    code = net.upper() if net.upper() in codes else network_names.get(net) or dicts.names.get("dict_network", {}).get(net)
    if code is None or code not in codes:
        return None
    role = "point" if m.group("point") else "line"
    word = m.group("point") or m.group("line")
    return code, role, f"图层名 {base}：管线类别 {net} → {code}，“{word}”表示{'管点' if role == 'point' else '管线'}"


def propose_layer(layer_name: str, frame: pd.DataFrame, geometry: str, profiles: dict[str, Profile],
                  dicts: Dictionaries, *, fits, prefer: str | None = None) -> Match | None:
    """A spec for a layer no profile rule matched: by the layer name's network and role, else by
    the fields the assistant can map (``fits(spec, geometry)`` says whether a geometry kind fits).
    ``prefer``: a profile id tried first."""
    order = sorted(profiles.values(), key=lambda p: p.id != prefer)
    hint = layer_hint(layer_name, dicts, codelists_for(order[0]).get("network", CodeList()).map if order else {})
    best: tuple[float, Match] | None = None
    accept = settings()["accept"]
    for prof in order:
        for spec in prof.layers:
            if not fits(spec, geometry):
                continue
            by_hint = hint is not None and spec.target == ("pipe_point" if hint[1] == "point" else "pipe_segment")
            if hint is not None and (not by_hint or (spec.network and spec.network not in (
                    hint[0], dicts.network_of(hint[0])))):
                continue                       # the name says the network: a spec fixing another one is out
            props = [p for p in propose_fields(spec, prof, frame, set(), set(), dicts,
                                               skip=_coords_fields(spec, frame))
                     if p.confidence >= accept or norm_name(p.source) == norm_name(p.column)]
            exact = _exact_fields(spec, frame)
            cols = {p.column for p in props} | set(exact)
            mand = [c for c, f in spec.fields.items() if f.required == "M"]
            if not by_hint and (len(cols) < settings()["layer_min_fields"] or not all(c in cols for c in mand)):
                continue
            missing = sum(c not in cols for c in mand)
            # fields the spec's own names recognise count a little more than proposals: of two
            # specs that could take a layer, the one written for such deliveries wins
            score = (len(cols) + 0.25 * len(exact) + sum(c in cols for c in mand) - 3 * missing
                     + (10 if by_hint else 0) + (0.5 if prof.id == prefer else 0) + _level_fit(spec, frame))
            if best is None or score > best[0]:
                reason = hint[2] if hint is not None and by_hint else (
                    f"按字段识别：{len(cols)} 个字段可对应 {spec.target}（其中 {len(exact)} 个为规范 {prof.id} 的字段名）")
                best = (score, Match(prof, spec, score, {"code": hint[0]} if hint is not None and by_hint else {},
                                     map_fields(spec, list(frame.columns)), reason=reason))
    return best[1] if best else None


def _level_fit(spec: LayerSpec, frame: pd.DataFrame) -> float:
    """A small preference, among specs of a boundary table, for the one whose level is the level
    the field names show (else for one without a fixed level)."""
    h = hierarchy([str(c) for c in frame.columns if c != "geometry"], spec.target)
    if h is None:
        return 0.0
    fixed = spec.defaults.get(settings()["hierarchy"]["columns"]["level"])
    return 0.25 if fixed == h.level else 0.1 if fixed is None else 0.0


def _exact_fields(spec: LayerSpec, frame: pd.DataFrame) -> dict[str, str]:
    return {f.column: f.source for f in map_fields(spec, list(frame.columns))}


def _value_counts(s: pd.Series) -> dict[str, int]:
    """Rows per distinct delivered value (cleaned text), counted on the column's distinct values."""
    out: dict[str, int] = {}
    for value, n in s.value_counts(dropna=True).items():
        t = clean_text(value)
        if t is not None:
            out[t] = out.get(t, 0) + int(n)
    return out


def samples_of(frame: pd.DataFrame) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """A few distinct values of every delivered field, for the mapping table."""
    out = []
    for c in frame.columns:
        if c == "geometry":
            continue
        vals = sample(frame[c]).drop_duplicates().head(SAMPLES_SHOWN)
        out.append((str(c), tuple(str(v) for v in vals)))
    return tuple(out)
