"""Map a source layer onto its target table with a profile: columns, types, units, code lists.

Everything here works on whole columns (pandas / numpy / shapely 2); nothing loops over rows.
Values that cannot be converted become NULL and stay visible in ``LayerBatch.raw`` so the
validation can name them (rules F02, Q22).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from cim.migrate import SEED_FILE
from cim.schema import feature_table
from ingest.data import read_yaml
from ingest.mapping.profile import CodeList, Match, Profile, codelists_for

UNIT_M = {"mm": 0.001, "cm": 0.01, "m": 1.0, "km": 1000.0, "in": 0.0254, "ft": 0.3048}
_NULLS = {"", "nan", "NaN", "None", "NULL", "null", "<NA>", "NaT"}


@dataclass
class Dictionaries:
    """Valid codes and Chinese names of the cim.dict_* tables."""

    codes: dict[str, set[str]]                 # table → codes
    names: dict[str, dict[str, str]]           # table → zh name → code
    parents: dict[str, dict[str, str | None]]  # table → code → parent code

    def network_of(self, code: str | None) -> str | None:
        """CJJ 61 大类 of a 大类 or 小类 code."""
        if code is None:
            return None
        par = self.parents.get("dict_network", {})
        if code not in par:
            return None
        return par[code] or code


@lru_cache(maxsize=1)
def _seed_dictionaries() -> Dictionaries:
    data = read_yaml(SEED_FILE)
    codes, names, parents = {}, {}, {}
    for table, spec in data.items():
        rows = spec.get("codes", [])
        codes[table] = {str(r["code"]) for r in rows}
        names[table] = {str(r["zh"]): str(r["code"]) for r in rows}
        parents[table] = {str(r["code"]): (str(r["parent"]) if r.get("parent") else None) for r in rows}
    return Dictionaries(codes, names, parents)


def load_dictionaries(conn=None) -> Dictionaries:
    """Dictionaries from the database when a connection is given, else from the seed file."""
    if conn is None:
        return _seed_dictionaries()
    seed = _seed_dictionaries()
    codes, names, parents = {}, {}, {}
    with conn.cursor() as cur:
        for table in seed.codes:
            cur.execute(f"SELECT code, name_zh, parent_code FROM cim.{table}")  # table names from the seed file
            rows = cur.fetchall()
            codes[table] = {r[0] for r in rows}
            names[table] = {r[1]: r[0] for r in rows}
            parents[table] = {r[0]: r[2] for r in rows}
    return Dictionaries(codes, names, parents)


# ---------------------------------------------------------------- value conversion (columns)

def as_text(s: pd.Series) -> pd.Series:
    """Text column: integral floats without '.0', stripped, NULL-like strings → None."""
    if pd.api.types.is_float_dtype(s):
        out = s.astype(object)
        ok = s.notna()
        integral = ok & (np.floor(s.fillna(0)) == s.fillna(0)) & (s.abs() < 1e15)
        out[integral] = s[integral].astype("int64").astype(str)
        out[ok & ~integral] = s[ok & ~integral].astype(str)
        return out.where(ok, None)
    if pd.api.types.is_integer_dtype(s) or pd.api.types.is_bool_dtype(s):
        return s.astype(str).astype(object)
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.dt.strftime("%Y-%m-%d").astype(object).where(s.notna(), None)
    return by_unique(s, clean_text)


def clean_text(v) -> str | None:
    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
        return None
    t = (v if isinstance(v, str) else str(v)).strip()
    return None if t in _NULLS else t


def by_unique(s: pd.Series, fn) -> pd.Series:
    """Apply a scalar function to the distinct values of a column only (:func:`per_value`):
    delivered columns repeat a few values many times."""
    return per_value(s, lambda col: pd.Series([fn(v) for v in col.astype(object)], index=col.index, dtype=object))


def per_value(s: pd.Series, fn):
    """``fn`` (a column → a column, or a tuple of columns) of the distinct values of ``s`` only,
    spread back to its rows: for parsing that runs a regular expression or a converter per value."""
    codes, uniques = pd.factorize(s.astype(object), use_na_sentinel=True)
    if len(uniques) * 2 > len(s):                 # mostly distinct: the column as it is
        return fn(s)
    at = np.where(codes < 0, len(uniques), codes)  # a missing value: the result of the added None
    parsed = fn(pd.Series([*uniques, None], dtype=object))

    def spread(col: pd.Series) -> pd.Series:
        return pd.Series(col.array.take(at), index=s.index, name=col.name)

    return tuple(spread(c) for c in parsed) if isinstance(parsed, tuple) else spread(parsed)


def as_float(s: pd.Series) -> pd.Series:
    """Numeric column; unparsable values become NaN."""
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return s.astype("float64")
    return per_value(as_text(s), _parsed_float)


def _parsed_float(t: pd.Series) -> pd.Series:
    t = t.str.replace(",", "", regex=False).str.replace("，", "", regex=False)
    return pd.to_numeric(t, errors="coerce").astype("float64")


def as_year(s: pd.Series) -> pd.Series:
    """Year from a year number, a date or a text such as '2005年' / '2005-03-01'."""
    if pd.api.types.is_datetime64_any_dtype(s):
        y = s.dt.year.astype("float64")
    elif pd.api.types.is_numeric_dtype(s):
        y = s.astype("float64")
        y = y.where(y < 10000, np.floor(y / 10000))          # 20050301 → 2005
    else:
        y = per_value(as_text(s), _parsed_year)
    return y.where((y >= 1800) & (y <= 2100)).astype("Int64")


def _parsed_year(t: pd.Series) -> pd.Series:
    return pd.to_numeric(t.str.extract(r"((?:1[89]|20)\d\d)", expand=False), errors="coerce").astype("float64")


def as_date(s: pd.Series) -> pd.Series:
    """Date column (object of datetime.date / None)."""
    if pd.api.types.is_datetime64_any_dtype(s):
        d = s
    else:
        t = as_text(s).str.replace(r"[年月/.]", "-", regex=True).str.replace("日", "", regex=False)
        d = pd.to_datetime(t, errors="coerce", format="mixed")
    return d.dt.date.astype(object).where(d.notna(), None)


def translate(s: pd.Series, cl: CodeList, dicts: Dictionaries) -> pd.Series:
    """Delivered values → codes through a code list; untranslated values are kept as delivered."""
    table: dict[str, object] = {}
    if cl.dictionary:
        for code in dicts.codes.get(cl.dictionary, ()):
            table[code.upper()] = code
        for name, code in dicts.names.get(cl.dictionary, {}).items():
            table[name.upper()] = code
    for k, v in cl.map.items():
        table[str(k).strip().upper()] = v
    def tr(v):
        v = clean_text(v)
        if v is None:
            return None
        hit = table.get(v.upper())
        return v if hit is None else hit

    return by_unique(s, tr)


def _bools(v: pd.Series) -> pd.Series:
    """Keep translated booleans; anything else (untranslated text) becomes NULL."""
    return v.where(v.isin([True, False]), None).astype(object)   # translated values are bool, str or None


def _unit_factor(unit: str | None, column: str) -> float:
    if unit is None:
        return 1.0
    target = "mm" if column.endswith("_mm") else "m"
    return UNIT_M[unit] / UNIT_M[target]


def _section(text: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Diameter, width, height (numbers) from texts like '300', 'DN300', 'Φ300', '1200×800'."""
    wh = text.str.extract(r"(\d+(?:\.\d+)?)\s*[xX×*＊]\s*(\d+(?:\.\d+)?)")
    single = text.str.extract(r"(\d+(?:\.\d+)?)", expand=False)
    w = pd.to_numeric(wh[0], errors="coerce")
    h = pd.to_numeric(wh[1], errors="coerce")
    d = pd.to_numeric(single, errors="coerce").where(w.isna())
    return d.astype("float64"), w.astype("float64"), h.astype("float64")


def convert_columns(frame: pd.DataFrame, match: Match, dicts: Dictionaries, *,
                    clean_text: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Target columns (typed, translated, in target units) and the raw delivered values.

    ``clean_text``: the frame's text columns are already stripped with blanks as None (the DBF
    reader), so text targets take them as they are.
    """
    spec, prof = match.spec, match.profile
    types = feature_table(spec.target).kinds()
    lists = codelists_for(prof)
    out: dict[str, pd.Series] = {}
    raw: dict[str, pd.Series] = {}
    for col, src in match.columns.items():
        fs = spec.fields[col]
        s = frame[src]
        raw[col] = s
        kind = types.get(col, "text")
        if fs.codes:
            v = translate(s, lists[fs.codes], dicts) if fs.codes in lists else as_text(s)
            if kind == "float":
                v = pd.to_numeric(v, errors="coerce").astype("float64")
            elif kind == "int":
                v = pd.to_numeric(v, errors="coerce").round().astype("Int64")
            elif kind == "bool":
                v = _bools(v)
            out[col] = v
        elif fs.section:
            d, w, h = per_value(as_text(s), _section)
            f = _unit_factor(fs.unit, "x_mm")
            out[col] = d * f
            out.setdefault("width_mm", w * f)
            out.setdefault("height_mm", h * f)
        elif fs.year or (kind == "int" and col.endswith("year")):
            out[col] = as_year(s)
        elif kind == "float":
            out[col] = as_float(s) * _unit_factor(fs.unit, col)
        elif kind == "int":
            out[col] = as_float(s).round().astype("Int64")
        elif kind == "date":
            out[col] = as_date(s)
        elif kind == "bool":
            out[col] = _bools(translate(s, lists["bool"], dicts))
        elif clean_text and s.dtype == object:
            out[col] = s
        else:
            out[col] = as_text(s)
    result = pd.DataFrame(out, index=frame.index) if out else pd.DataFrame(index=frame.index)
    for col, kind in types.items():
        if col not in result.columns:
            result[col] = _missing(kind, frame.index)
    rawf = pd.DataFrame(raw, index=frame.index)
    return result.reset_index(drop=True), rawf.reset_index(drop=True)


def _missing(kind: str, index: pd.Index) -> pd.Series:
    """A column of missing values of a target column's kind: NaN floats, NA integers, else None
    (filled at once, not converted value by value)."""
    if kind == "float":
        return pd.Series(np.nan, index=index, dtype="float64")
    if kind == "int":
        return pd.Series(pd.NA, index=index, dtype="Int64")
    return pd.Series(np.full(len(index), None, dtype=object), index=index, dtype=object)


# ---------------------------------------------------------------- derived columns

def _fill(frame: pd.DataFrame, col: str, value) -> None:
    s = frame[col]
    if pd.api.types.is_float_dtype(s) or pd.api.types.is_integer_dtype(s):
        frame[col] = s.fillna(value)
    elif s.dtype == object:                      # one reference to ``value``, not a new object per row
        out = s.to_numpy(copy=True)
        out[s.isna().to_numpy()] = value
        frame[col] = pd.Series(out, index=s.index, dtype=object)
    else:
        frame[col] = s.where(s.notna(), value)


def derive(frame: pd.DataFrame, match: Match, dicts: Dictionaries) -> tuple[str | None, str | None]:
    """Fill defaults, network/subtype, z reference, node type, green class and build era.

    Returns the layer-level network and subtype (None when they vary per row or are unknown).
    """
    spec = match.spec
    for col, value in spec.defaults.items():
        if col in frame.columns:
            _fill(frame, col, value)
    net = sub = None
    if spec.target in ("pipe_point", "pipe_segment"):
        net, sub = _layer_network(match, dicts)
        if sub is not None:
            _fill(frame, "subtype", sub)
        if frame["subtype"].notna().any():
            par = dicts.parents.get("dict_network", {})
            net_of = {c: (p or c) for c, p in par.items()}          # 小类 → 大类, 大类 → itself
            by_sub = frame["subtype"].map(net_of)
            frame["network"] = frame["network"].where(frame["network"].notna(), by_sub)
            # a 大类 code in the subtype column is the network, not a subtype
            is_sub = frame["subtype"].map({c: p is not None for c, p in par.items()}).fillna(False).astype(bool)
            frame["subtype"] = frame["subtype"].where(is_sub, None)
        if net is not None:
            _fill(frame, "network", net)
    if spec.target == "pipe_segment":
        zr = spec.z_ref or {}
        z = frame["subtype"].map(zr, na_action="ignore")
        z = z.where(z.notna(), frame["network"].map(zr, na_action="ignore"))
        frame["z_ref"] = z.where(z.notna(), zr.get("default", "centre")).astype(object)
    if spec.target == "pipe_point":
        lists = codelists_for(match.profile)
        node = translate(frame["appurtenance"], lists["drainage_node"], dicts)
        node = node.where(node.isin(dicts.codes.get("dict_drainage_node", set())) & (frame["network"] == "PS"))
        frame["node_type"] = frame["node_type"].where(frame["node_type"].notna(), node)
    if spec.target == "green_space":
        _green_classes(frame, dicts)
    if spec.target == "building":
        _build_era(frame, match.profile)
    return (net, sub)


def _layer_network(match: Match, dicts: Dictionaries) -> tuple[str | None, str | None]:
    code = match.spec.network or match.name_groups.get("code")
    if code is None and "name" in match.name_groups:
        lists = codelists_for(match.profile)
        code = lists["network"].map.get(match.name_groups["name"]) or dicts.names.get(
            "dict_network", {}).get(match.name_groups["name"])
    if code is None:
        return None, None
    code = code.upper()
    net = dicts.network_of(code)
    if net is None:
        return None, None
    return net, (code if code != net else None)


def _green_classes(frame: pd.DataFrame, dicts: Dictionaries) -> None:
    par = dicts.parents.get("dict_green_class", {})

    def root(code):
        seen = 0
        while code in par and par[code] and seen < 5:
            code, seen = par[code], seen + 1
        return code if code in par else None

    roots = frame["subclass_code"].map({c: root(c) for c in par})
    frame["class_code"] = frame["class_code"].where(frame["class_code"].notna(), roots)


def _build_era(frame: pd.DataFrame, prof: Profile) -> None:
    buckets = sorted((int(k), v) for k, v in codelists_for(prof)["build_era_by_year"].map.items())
    years = frame["build_year"].astype("float64")
    bounds = np.array([b for b, _ in buckets], dtype=float)
    idx = np.searchsorted(bounds, years.fillna(0).to_numpy(), side="left").clip(0, len(buckets) - 1)
    codes = np.array([code for _, code in buckets], dtype=object)
    era = pd.Series(codes[idx], index=frame.index, dtype=object).where(years.notna(), None)
    frame["build_era"] = frame["build_era"].where(frame["build_era"].notna(), era)
