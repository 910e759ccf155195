"""Pipeline network rules over all point and segment batches of a delivery (domain.md §2.13).

Points and segments of every batch are gathered into two tables (one row per feature) and
the rules run as pandas merges / groupbys on them. Distances are measured in metres in the
source projected CRS when all pipeline layers share one, else in the local UTM zone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from ingest.mapping.geometry import bounds_metric_epsg, metric_geometry
from ingest.model import LayerBatch, Severity, arrow_text
from ingest.validation.core import Ctx, fmt
from ingest.validation.spill import joined_frames

PCOLS = ["network", "subtype", "exp_no", "feature", "appurtenance", "node_type", "ground_z"]
SCOLS = ["network", "subtype", "start_exp_no", "end_exp_no", "start_depth", "end_depth", "start_z", "end_z",
         "z_ref", "diameter_mm", "width_mm", "height_mm", "material", "burial_type", "flow_dir", "length_m",
         "pressure_class"]


@dataclass
class Net:
    """Points (P) and segments (S) of the delivery with batch index ``bi`` and row ``row``."""

    batches: list[LayerBatch]
    P: pd.DataFrame
    S: pd.DataFrame


def _source_metric(b: LayerBatch) -> bool:
    """The batch has projected source coordinates: as geometries, or as the metric columns of a
    residue (:func:`metric_columns`)."""
    return bool((b.source_geom is not None or b.source_metric) and b.source_unit_m)


def _metric_epsg(batches: list[LayerBatch]) -> int | None:
    """None when every batch has projected source geometry in one CRS, else a shared UTM zone."""
    crs = {(b.source_crs, b.source_unit_m) for b in batches}
    if len(crs) == 1 and all(_source_metric(b) for b in batches):
        return None
    return bounds_metric_epsg(np.concatenate([shapely.bounds(b.geometries()) for b in batches]))


METRIC = {"pipe_point": ["mx", "my"], "pipe_segment": ["sx", "sy", "ex", "ey", "plan_m"]}
"""The metric coordinates the network rules read, per target (:func:`metric_columns`)."""


def metric_columns(target: str, m: np.ndarray) -> dict[str, np.ndarray]:
    """The metric coordinates of geometries ``m`` the rules read: a point's x/y; a segment's
    start and end x/y and plan length (NaN unless it is a non-empty LineString)."""
    if target == "pipe_point":
        xy = _xy(m)
        return {"mx": xy[:, 0], "my": xy[:, 1]}
    n = len(m)
    start = np.full((n, 2), np.nan)
    end = np.full((n, 2), np.nan)
    ok = ~(shapely.is_missing(m) | shapely.is_empty(m)) & (shapely.get_type_id(m) == 1)
    if ok.any():
        coords, index = shapely.get_coordinates(m[ok], return_index=True)
        first = np.searchsorted(index, np.arange(int(ok.sum())))
        last = np.append(first[1:], len(index)) - 1
        start[ok], end[ok] = coords[first], coords[last]
    return {"sx": start[:, 0], "sy": start[:, 1], "ex": end[:, 0], "ey": end[:, 1],
            "plan_m": np.where(ok, shapely.length(m), np.nan)}


def _metric(b: LayerBatch, epsg: int | None) -> pd.DataFrame:
    """:func:`metric_columns` of a batch as a frame: the residue's own columns for the source
    CRS (shared with it, not copied), else computed."""
    if epsg is None and b.source_metric:
        cols = METRIC[b.target]
        return b.frame[[f"metric_{c}" for c in cols]].set_axis(cols, axis=1).astype(float).reset_index(drop=True)
    return pd.DataFrame(metric_columns(b.target, metric_geometry(b, epsg)))


def gather(batches: list[LayerBatch], metric_epsg: int | None = None) -> Net | None:
    """Point and segment tables of all pipeline batches (coordinates in ``metric_epsg`` when
    given, else as :func:`_metric_epsg` decides)."""
    pipe = [b for b in batches if b.target in ("pipe_point", "pipe_segment") and len(b)]
    if not pipe:
        return None
    epsg = metric_epsg or _metric_epsg(pipe)
    ps: list[pd.DataFrame] = []
    ss: list[pd.DataFrame] = []
    for bi, b in enumerate(batches):
        if b not in pipe:
            continue
        # a new frame of the batch's columns (shared, not copied; the batch is left unchanged)
        d = pd.concat([b.frame[PCOLS if b.target == "pipe_point" else SCOLS].reset_index(drop=True), _metric(b, epsg)],
                      axis=1)
        if b.target == "pipe_segment":
            d["built"] = b.geometry_built
        d["bi"], d["row"] = np.int32(bi), np.arange(len(b), dtype=np.int32)
        (ps if b.target == "pipe_point" else ss).append(d)
    P = _joined(ps) if ps else pd.DataFrame(columns=[*PCOLS, "mx", "my", "bi", "row"])
    S = _joined(ss) if ss else pd.DataFrame(columns=[*SCOLS, "sx", "sy", "ex", "ey", "plan_m",
                                                                           "built", "bi", "row"])
    _categorical(P, S)
    return Net(batches, P, S)


# text columns the rules compare with one another: each group shares one set of categories
_SHARED = (("exp_no", (("P", "exp_no"), ("S", "start_exp_no"), ("S", "end_exp_no"))),
           ("network", (("P", "network"), ("S", "network"))),
           ("subtype", (("P", "subtype"), ("S", "subtype"))))


def _categorical(P: pd.DataFrame, S: pd.DataFrame) -> None:
    """The text columns of ``P`` and ``S`` as categoricals, in place: one small integer per
    row instead of a pointer to a text object, and merges and groupings on integer codes.
    Columns compared with one another (point numbers of points and of segment ends, network
    codes, subtypes) share their categories. A column that is not all text keeps its values
    (as objects, and so do the columns of its group)."""
    frames = {"P": P, "S": S}
    groups = [[(frames[f], c) for f, c in cols if c in frames[f].columns] for _, cols in _SHARED]
    shared = {(f, c) for _, cols in _SHARED for f, c in cols}
    groups += [[(frames[f], c)] for f in ("P", "S") for c in frames[f].columns
               if (f, c) not in shared and _is_text(frames[f][c], empty=False)]
    for group in groups:
        if not group:
            continue
        if not all(_is_text(frame[c]) for frame, c in group):
            for frame, c in group:
                frame[c] = frame[c].astype(object)
            continue
        if all(isinstance(frame[c].dtype, pd.CategoricalDtype) for frame, c in group):
            _recoded(group)
            continue
        texts = [arrow_text(frame[c]) for frame, c in group]
        categories = pc.unique(pa.chunked_array([chunk for t in texts for chunk in t.chunks], type=pa.string()))
        categories = categories.drop_null()
        dtype = _text_dtype(categories)
        for (frame, c), t in zip(group, texts, strict=True):
            codes = pc.fill_null(pc.index_in(t, value_set=categories), -1).to_numpy().astype(np.int32)
            frame[c] = pd.Categorical.from_codes(codes, dtype=dtype)


def _recoded(group: list[tuple[pd.DataFrame, str]]) -> None:
    """Categorical text columns given one type of all their categories, in place: their codes
    translated, no value taken out of the categories."""
    union = pd.Index(pd.unique(np.concatenate([frame[c].cat.categories.to_numpy(dtype=object) for frame, c in group])))
    dtype = _text_dtype(pa.array(union.to_numpy(), type=pa.string()))
    for frame, c in group:
        column = frame[c]
        codes = column.cat.codes.to_numpy()
        at = np.append(union.get_indexer(column.cat.categories), -1).astype(np.int32)   # code −1 stays −1
        frame[c] = pd.Categorical.from_codes(at[codes], dtype=dtype)


_FEW = 4096
"""Categories of a text column with at most this many distinct values are Python strings (a
value taken out is a reference to one of them); more (point numbers) stay Arrow text, one
buffer instead of an object per value."""


def _text_dtype(categories: pa.Array) -> pd.CategoricalDtype:
    """The categorical type of distinct texts: Python strings when few (:data:`_FEW`), else
    Arrow text."""
    return _dtype_of_unique(pd.Index(pd.arrays.ArrowExtensionArray(categories)) if len(categories) > _FEW
                            else pd.Index(categories.to_numpy(zero_copy_only=False), dtype=object))


def _dtype_of_unique(categories: pd.Index) -> pd.CategoricalDtype:
    """The categorical type of ``categories`` known to be distinct. pandas checks categories
    for repeats with a hash table of one Python object per value (a third of a million point
    numbers: ~20 MB); distinct values by construction skip that check where pandas allows it."""
    fast = getattr(pd.CategoricalDtype, "_from_fastpath", None)
    return fast(categories, False) if fast is not None else pd.CategoricalDtype(categories)


def _is_text(column: pd.Series, *, empty: bool = True) -> bool:
    """The column holds text: Arrow text, or objects that are all strings (or, with ``empty``,
    nothing at all; a column of missing values alone may as well be numbers)."""
    kinds = ("string", "empty") if empty else ("string",)
    if isinstance(column.dtype, pd.ArrowDtype):
        return pa.types.is_string(column.dtype.pyarrow_dtype) and (empty or bool(column.notna().any()))
    if isinstance(column.dtype, pd.CategoricalDtype):
        return pd.api.types.infer_dtype(column.cat.categories, skipna=True) in kinds
    return column.dtype == object and pd.api.types.infer_dtype(column.to_numpy(), skipna=True) in kinds


def _joined(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The frames one after the other, indexed 0 … n − 1 (one frame is not copied again)."""
    return frames[0].reset_index(drop=True) if len(frames) == 1 else joined_frames(frames)


def seg_key(sel: pd.DataFrame) -> pd.Series:
    """'start-end' point numbers of segments."""
    a, b = sel["start_exp_no"].astype(object), sel["end_exp_no"].astype(object)
    return a.fillna("?").astype(str) + "-" + b.fillna("?").astype(str)


def _xy(g: np.ndarray) -> np.ndarray:
    out = np.full((len(g), 2), np.nan)
    ok = ~shapely.is_missing(g) & ~shapely.is_empty(g)
    if ok.any():
        out[ok, 0] = shapely.get_x(g[ok])
        out[ok, 1] = shapely.get_y(g[ok])
    return out


def emit(ctx: Ctx, net: Net, rule_id: str, sel: pd.DataFrame, *, severity: Severity | None = None, **kw) -> None:
    """Emit findings for rows of P or S (``sel`` keeps its bi/row columns); kw arrays align with sel."""
    if not len(sel):
        return
    bis = sel["bi"].to_numpy()
    for bi in np.unique(bis):
        mask = bis == bi
        args = {k: (np.asarray(v, dtype=object)[mask] if isinstance(v, (np.ndarray, pd.Series, list)) else v)
                for k, v in kw.items()}
        ctx.emit(rule_id, net.batches[int(bi)], sel["row"].to_numpy()[mask], severity=severity, **args)


def check_network(ctx: Ctx, net: Net) -> Ends | None:
    """Q01 Q04 Q05 Q06 Q07 Q08 Q09 Q10 Q11 Q12 Q13 Q14 Q19 Q27. Returns the segment ends with
    their points (:class:`Ends`) for the drainage rules."""
    P, S = net.P, net.S
    keys = _pairs(P["network"], P["exp_no"])
    _points(ctx, net, P, keys)
    if not len(S):
        return None
    _segments(ctx, net, S)
    _depths(ctx, net, S)
    first = _first_points(P, keys)
    index = _point_index(keys, first)
    ends = _link(ctx, net, P, S, first, index)
    _closure(ctx, net, S, ends)
    _degrees(ctx, net, P, ends, first, index, keys)
    return ends


def _points(ctx: Ctx, net: Net, P: pd.DataFrame, keys: np.ndarray | pd.Index) -> None:
    """Q01 repeated point numbers of a network, Q04 repeated coordinates (``keys``: the
    (network, point number) pairs of ``P``, :func:`_pairs`)."""
    dup = P["exp_no"].notna().to_numpy() & _repeated([keys])
    sel = P[dup]
    emit(ctx, net, "Q01", sel, key=sel["exp_no"], field_name="exp_no", value=sel["exp_no"],
         zh=fmt("物探点号 {k} 在 {n} 管线中重复", k=sel["exp_no"], n=sel["network"]),
         en=fmt("survey point number {k} occurs more than once in network {n}", k=sel["exp_no"], n=sel["network"]))
    if ctx.rule("Q04") is not None:
        tol = float(ctx.param("Q04", "tolerance_m", 0.001))
        gx = np.round(P["mx"].to_numpy(dtype=float) / tol)
        gy = np.round(P["my"].to_numpy(dtype=float) / tol)
        dupc = np.isfinite(gx) & _repeated([value_codes(P["network"])[0], gx, gy]) & ~dup
        del gx, gy
        sel = P[dupc]
        emit(ctx, net, "Q04", sel, key=sel["exp_no"],
             zh=fmt("点 {k} 与同类管线的其他点坐标重复", k=sel["exp_no"]),
             en=fmt("point {k} has the same coordinates as another point of its network", k=sel["exp_no"]))


class Ends:
    """The ends of the segments ``S``, start ends then end ends (2 × n positions), each with the
    row of ``P`` it lies on (:attr:`at`, −1 where no point has its number): a table of ends by
    its columns, each built when a rule reads it and only for the ends it selects, not held."""

    def __init__(self, P: pd.DataFrame, S: pd.DataFrame, at: np.ndarray) -> None:
        self.P, self.S, self.at = P, S, at
        self.n = len(S)
        self.found = at >= 0

    def __len__(self) -> int:
        return 2 * self.n

    def twice(self, values: np.ndarray) -> np.ndarray:
        """A per-segment array for both ends."""
        return np.concatenate([values, values])

    def given(self, name: str) -> np.ndarray:
        """Whether each end has a value of the paired column ``name`` (:data:`_PAIRED`)."""
        a, b = _PAIRED[name]
        return np.concatenate([self.S[a].notna().to_numpy(), self.S[b].notna().to_numpy()])

    def column(self, name: str, pos: np.ndarray) -> pd.Series:
        """Column ``name`` of the ends at positions ``pos``, indexed by position."""
        S, n = self.S, self.n
        second = pos >= n
        rows = np.where(second, pos - n, pos)
        if name in _OF_POINT:
            return _taken(self.P[_OF_POINT[name]], self.at[pos]).set_axis(pos)
        if name == "end":
            return pd.Series(pd.Categorical.from_codes(second.astype(np.int8), categories=["start", "end"]), index=pos)
        a, b = _PAIRED.get(name, (name, name))
        if a == b:
            return S[a].iloc[rows].set_axis(pos)
        return _picked(S[a], S[b], rows, second).set_axis(pos)

    def beyond(self, tol: float, measure: Callable[[int, np.ndarray, np.ndarray], np.ndarray],
               skip: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ends whose ``measure`` is finite and beyond ``tol`` (either sign), as a mask, and
        their measures in the order of the mask. ``measure(half, rows, points)`` measures the
        start ends (half 0) or the end ends (half 1) of the segments ``rows`` against the rows
        ``points`` of ``P`` they lie on; only ends that lie on a point, and not on a segment
        where ``skip`` holds, are measured, a half at a time."""
        n = self.n
        mask = np.zeros(len(self), dtype=bool)
        kept: list[np.ndarray] = []
        for half in (0, 1):
            on = self.at[half * n:(half + 1) * n]
            rows = np.flatnonzero(on >= 0 if skip is None else (on >= 0) & ~skip)
            value = measure(half, rows, on[rows])
            out = np.isfinite(value) & (np.abs(value) > tol)
            mask[half * n + rows[out]] = True
            kept.append(value[out])
        return mask, np.concatenate(kept)

    def frame(self, mask: np.ndarray, columns: list[str]) -> pd.DataFrame:
        """The ends where ``mask`` holds, with ``columns`` (``bi`` and ``row`` for :func:`emit`
        always), indexed by their positions."""
        pos = np.flatnonzero(mask)
        names = list(dict.fromkeys(["bi", "row", *columns]))
        return pd.DataFrame({c: self.column(c, pos) for c in names}, index=pos, copy=False)


_OF_POINT = {"ground_z": "ground_z", "feature": "feature", "appurtenance": "appurtenance",
             "node_type": "node_type", "p_subtype": "subtype"}
"""Columns of the ends taken from the point each lies on (``p_subtype``: the point's subtype)."""
_PAIRED = {"exp_no": ("start_exp_no", "end_exp_no"), "depth": ("start_depth", "end_depth"),
           "z": ("start_z", "end_z")}
"""Columns of the ends from the start column of a segment at its start, the end column at its end."""


def _either(va: np.ndarray, vb: np.ndarray, rows: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``va`` at ``rows``, ``vb`` where ``second``: one array of the result's size (not both
    gathers and a third for the choice)."""
    out = va[rows]
    out[second] = vb[rows[second]]
    return out


def _picked(a: pd.Series, b: pd.Series, rows: np.ndarray, second: np.ndarray) -> pd.Series:
    """``a`` at ``rows`` where ``second`` is false, ``b`` where it is true (indexed 0 … k − 1)."""
    codes = _same_codes(a, b)
    if codes is not None:
        ca, cb = codes
        return pd.Series(pd.Categorical.from_codes(_either(ca, cb, rows, second), dtype=a.dtype))
    va, vb = a.to_numpy(), b.to_numpy()
    if va.dtype.kind in "fiub" and vb.dtype == va.dtype:
        return pd.Series(_either(va, vb, rows, second))
    out = a.iloc[rows].reset_index(drop=True).astype(object)
    out[second] = b.iloc[rows[second]].to_numpy(dtype=object)
    return out


def _link(ctx: Ctx, net: Net, P: pd.DataFrame, S: pd.DataFrame, first: np.ndarray, index: _Sorted | pd.Index) -> Ends:
    """Segment ends with the points they lie on (:class:`Ends`). Emits Q05 and Q09.

    Each end finds its point in ``index``, the (network, point number) pairs of the rows
    ``first`` of ``P`` (:func:`_point_index`: the first point of a repeated number)."""
    n = len(S)
    at: np.ndarray = np.full(2 * n, -1, dtype=np.int32 if len(P) < 2**31 else np.intp)   # the rows of P
    for half, col in enumerate(("start_exp_no", "end_exp_no")):
        pos = index.get_indexer(_pairs(S["network"], S[col]))
        hit = pos >= 0
        at[half * n:(half + 1) * n][hit] = first[pos[hit]]
        del pos, hit
    ends = Ends(P, S, at)
    nets_with_points = set(P["network"].iloc[first].dropna().unique())
    missing = ~ends.found & ends.given("exp_no")
    has_table = ends.twice(S["network"].isin(nets_with_points).to_numpy())
    sel = ends.frame(missing & has_table, ["exp_no", "end"])
    emit(ctx, net, "Q05", sel, key=sel["exp_no"], field_name=np.where(sel["end"] == "start", "起点点号", "终点点号"),
         value=sel["exp_no"], zh=fmt("管段引用的点号 {k} 不在点表中", k=sel["exp_no"]),
         en=fmt("the segment refers to point {k}, which is not in the point table", k=sel["exp_no"]))
    no_table = ends.frame(missing & ~has_table, ["network"]).drop_duplicates("bi")
    sev = Severity(ctx.param("Q05", "no_point_table_severity", "warning"))
    emit(ctx, net, "Q05", no_table, severity=sev, key=None,
         zh=fmt("交付中没有 {n} 管线的点表，无法核对管段起止点", n=no_table["network"]),
         en=fmt("the delivery has no point table for network {n}; segment ends cannot be checked",
                n=no_table["network"]))
    if ctx.rule("Q09") is not None:
        tol = float(ctx.param("Q09", "tolerance_m", 0.01))
        mx, my = P["mx"].to_numpy(dtype=float), P["my"].to_numpy(dtype=float)

        def distance(half: int, rows: np.ndarray, points: np.ndarray) -> np.ndarray:
            xc, yc = ("sx", "sy") if half == 0 else ("ex", "ey")
            return np.hypot(S[xc].to_numpy(dtype=float)[rows] - mx[points],
                            S[yc].to_numpy(dtype=float)[rows] - my[points])

        off, d = ends.beyond(tol, distance, skip=S["built"].to_numpy(dtype=bool))
        sel = ends.frame(off, ["exp_no", "end"])
        emit(ctx, net, "Q09", sel, key=sel["exp_no"], value=np.round(d, 3),
             zh=fmt("管段{e}端点与点 {k} 相距 {d} m（限差 {t} m）", e=np.where(sel["end"] == "start", "起", "终"),
                    k=sel["exp_no"], d=d, t=tol),
             en=fmt("the segment {e} lies {d} m from point {k} (tolerance {t} m)", e=sel["end"], k=sel["exp_no"],
                    d=d, t=tol))
    return ends


def _same_codes(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray] | None:
    """The codes of two categoricals of one type (−1 where missing), else None: compared,
    ordered or picked by code, no value is taken out of the categories."""
    if isinstance(a.dtype, pd.CategoricalDtype) and a.dtype is b.dtype:
        return a.cat.codes.to_numpy(), b.cat.codes.to_numpy()
    return None


def _equal(a: pd.Series, b: pd.Series) -> pd.Series:
    """``a == b`` row by row (missing equals nothing)."""
    codes = _same_codes(a, b)
    if codes is None:
        return a == b
    ca, cb = codes
    return pd.Series((ca == cb) & (ca >= 0), index=a.index)


def _pairs(network: pd.Series, exp_no: pd.Series) -> np.ndarray | pd.MultiIndex:
    """(network, point number) pairs: of the shared categories (:func:`_categorical`) one
    integer per pair made of the two codes (a missing value has a code of its own, so two
    missing networks are equal, as in a pandas merge), else a ``MultiIndex`` of the values."""
    if isinstance(network.dtype, pd.CategoricalDtype) and isinstance(exp_no.dtype, pd.CategoricalDtype):
        width = len(exp_no.cat.categories) + 1
        codes = (network.cat.codes.to_numpy().astype(np.int64) + 1) * width
        codes += exp_no.cat.codes.to_numpy()
        codes += 1
        return codes
    return pd.MultiIndex.from_arrays([network.astype(object), exp_no.astype(object)])


def value_codes(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """An integer per row, equal for equal values (−1 for a missing value), and the distinct
    values: a categorical's own codes and categories (unused categories do no harm), else
    factorised."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.codes.to_numpy(), values.cat.categories.to_numpy(dtype=object)
    found, uniques = pd.factorize(values.to_numpy(dtype=object))
    return found, np.asarray(uniques, dtype=object)


def _repeated(keys: list[np.ndarray | pd.Index], *, first: bool = False) -> np.ndarray:
    """Whether the combination of ``keys`` (arrays of one length, row by row) of each row occurs
    in another row too; with ``first``, whether the row is the first of its combination.
    Numeric keys are sorted together (an array of row numbers and one key at a time: no hash
    table of the rows), and a NaN equals nothing; keys that are not all numbers are left to
    pandas, where missing values equal one another."""
    n = len(keys[0])
    if not all(isinstance(k, np.ndarray) and k.dtype.kind in "iuf" for k in keys):
        index = keys[0] if len(keys) == 1 and isinstance(keys[0], pd.Index) else \
            pd.MultiIndex.from_arrays([np.asarray(k, dtype=object) for k in keys])
        return ~index.duplicated(keep="first") if first else index.duplicated(keep=False)
    out = np.zeros(n, dtype=bool)
    if n == 0:
        return out
    order = np.lexsort(keys[::-1])               # stable: equal rows keep their order
    same = np.ones(n - 1, dtype=bool)            # each sorted row equals the one before it
    for k in keys:
        ks = k[order]
        same &= ks[1:] == ks[:-1]
        del ks
    if first:
        out[order[0]] = True
        out[order[1:][~same]] = True
        return out
    out[order[1:][same]] = True
    out[order[:-1][same]] = True
    return out


def _first_points(P: pd.DataFrame, keys: np.ndarray | pd.Index) -> np.ndarray:
    """Rows of ``P`` that are the first point of their (network, point number) ``keys``, numbered ones only."""
    return np.flatnonzero(P["exp_no"].notna().to_numpy() & _repeated([keys], first=True))


class _Sorted:
    """Integer keys, distinct, to look up many at a time (``get_indexer`` as of a ``pd.Index``):
    the keys sorted and their positions, no hash table."""

    def __init__(self, keys: np.ndarray) -> None:
        order = np.argsort(keys, kind="stable")
        self.sorted = keys[order]
        self.order = order.astype(np.int32) if len(keys) < 2**31 else order

    def get_indexer(self, query: np.ndarray) -> np.ndarray:
        """The position of each of ``query`` among the keys, −1 where it is none of them."""
        if not len(self.sorted):
            return np.full(len(query), -1, dtype=np.intp)
        at = np.searchsorted(self.sorted, query)
        np.minimum(at, len(self.sorted) - 1, out=at)
        return np.where(self.sorted[at] == query, self.order[at], -1)


def _point_index(keys: np.ndarray | pd.Index, first: np.ndarray) -> _Sorted | pd.Index:
    """The (network, point number) ``keys`` of the rows ``first`` of ``P``, for ``get_indexer``:
    a position in it is a position in ``first``."""
    return _Sorted(keys[first]) if isinstance(keys, np.ndarray) else keys[first]


def _taken(column: pd.Series, pos: np.ndarray) -> pd.Series:
    """The values of a point column at positions ``pos``, missing where ``pos`` is −1."""
    found = pos >= 0
    at = np.where(found, pos, 0)                 # of an empty column nothing is found, nothing taken
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = np.full(len(pos), -1, dtype=column.cat.codes.dtype)
        codes[found] = column.cat.codes.to_numpy()[at[found]]
        return pd.Series(pd.Categorical.from_codes(codes, dtype=column.dtype))
    if isinstance(column.dtype, pd.ArrowDtype):    # Arrow stays Arrow (no Python object per value)
        taken = pc.take(column.array.__arrow_array__(), pa.array(at, mask=~found))
        return pd.Series(pd.arrays.ArrowExtensionArray(taken))
    values = column.to_numpy()
    if values.dtype.kind == "f":
        out = np.full(len(pos), np.nan)
        out[found] = values[at[found]]
        return pd.Series(out)
    out = np.full(len(pos), np.nan, dtype=object)
    out[found] = values[at[found]]
    return pd.Series(out, dtype=object)


def _segments(ctx: Ctx, net: Net, S: pd.DataFrame) -> None:
    same = S["start_exp_no"].notna() & _equal(S["start_exp_no"], S["end_exp_no"])
    sel = S[same]
    emit(ctx, net, "Q07", sel, key=sel["start_exp_no"], value=sel["start_exp_no"],
         zh=fmt("管段起点与终点同为 {k}", k=sel["start_exp_no"]),
         en=fmt("segment starts and ends at the same point {k}", k=sel["start_exp_no"]))
    a, b = S["start_exp_no"], S["end_exp_no"]
    codes = _same_codes(a, b)
    if codes is not None:                         # one segment whichever way it runs
        lo, hi = np.minimum(*codes), np.maximum(*codes)
    else:
        a, b = a.astype(object), b.astype(object)
        first = (a.fillna("") <= b.fillna("")).to_numpy()
        lo, hi = np.where(first, a, b), np.where(first, b, a)
    dup = a.notna().to_numpy() & b.notna().to_numpy() & ~same.to_numpy() & _repeated([value_codes(S["network"])[0], lo, hi])
    del lo, hi
    sel = S[dup]
    emit(ctx, net, "Q08", sel, key=seg_key(sel),
         zh=fmt("管段 {a}→{b} 重复（含反向）", a=sel["start_exp_no"], b=sel["end_exp_no"]),
         en=fmt("segment {a}->{b} is duplicated (either direction)", a=sel["start_exp_no"], b=sel["end_exp_no"]))
    length = S["length_m"].where(S["length_m"].notna(), S["plan_m"]).to_numpy(dtype=float)
    lo_m, hi_m = float(ctx.param("Q12", "min_m", 0.05)), float(ctx.param("Q12", "max_m", 75.0))
    bad = np.isfinite(length) & ((length < lo_m) | (length > hi_m)) & ~same.to_numpy()
    sel = S[bad]
    emit(ctx, net, "Q12", sel, key=seg_key(sel), value=np.round(length[bad], 3),
         zh=fmt("管段长度 {l} m 超出 [{a}, {b}] m", l=length[bad], a=lo_m, b=hi_m),
         en=fmt("segment length {l} m outside [{a}, {b}] m", l=length[bad], a=lo_m, b=hi_m))
    # Q13: slope of pressure pipes (everything except gravity drainage)
    dz = (S["end_z"] - S["start_z"]).abs().to_numpy(dtype=float)
    plan = S["plan_m"].to_numpy(dtype=float)
    with np.errstate(all="ignore"):
        deg = np.degrees(np.arctan2(dz, plan))
    steep = np.isfinite(deg) & (plan > 0) & (deg > float(ctx.param("Q13", "max_deg", 30.0))) & \
        (S["network"] != "PS").to_numpy()
    sel = S[steep]
    emit(ctx, net, "Q13", sel, key=seg_key(sel), value=np.round(deg[steep], 1),
         zh=fmt("压力管段坡角 {d}° 过大", d=deg[steep]), en=fmt("pressure pipe inclined {d} degrees", d=deg[steep]))
    # Q27: diameter vs material
    limits = ctx.param("Q27", "max_diameter_mm", {}) or {}
    lim = S["material"].map(limits).astype("float64")
    over = (S["diameter_mm"] > lim).to_numpy() & lim.notna().to_numpy()
    sel = S[over]
    emit(ctx, net, "Q27", sel, key=seg_key(sel), value=sel["diameter_mm"],
         zh=fmt("材质 {m} 的圆管管径 {d} mm 不合常理", m=sel["material"], d=sel["diameter_mm"]),
         en=fmt("a round {m} pipe of {d} mm is implausible", m=sel["material"], d=sel["diameter_mm"]))


def _closure(ctx: Ctx, net: Net, S: pd.DataFrame, ends: Ends) -> None:
    """Q10: ground − depth = line elevation at each end; Q11: one point, different elevations."""
    tol = float(ctx.param("Q10", "tolerance_m", 0.02))
    ground_z = net.P["ground_z"].to_numpy(dtype=float)

    def closure(half: int, rows: np.ndarray, points: np.ndarray) -> np.ndarray:
        dc, zc = ("start_depth", "start_z") if half == 0 else ("end_depth", "end_z")
        return ground_z[points] - S[dc].to_numpy(dtype=float)[rows] - S[zc].to_numpy(dtype=float)[rows]

    bad, diff = ends.beyond(tol, closure)
    sel = ends.frame(bad, ["exp_no", "ground_z", "depth", "z"])
    emit(ctx, net, "Q10", sel, key=sel["exp_no"], value=np.round(diff, 3),
         zh=fmt("点 {k}：地面高程 {g} − 埋深 {d} 与管线高程 {z} 相差 {x} m", k=sel["exp_no"], g=sel["ground_z"],
                d=sel["depth"], z=sel["z"], x=diff),
         en=fmt("point {k}: ground {g} - depth {d} differs from the line elevation {z} by {x} m", k=sel["exp_no"],
                g=sel["ground_z"], d=sel["depth"], z=sel["z"], x=diff))
    if ctx.rule("Q11") is None:
        return
    t11 = float(ctx.param("Q11", "tolerance_m", 0.01))
    pos = np.flatnonzero(ends.found & ends.given("z"))
    spread_out = np.zeros(len(ends), dtype=bool)
    spread_out[pos[_spread(ends, pos, t11)]] = True
    sel = ends.frame(spread_out, ["network", "exp_no"]).drop_duplicates(["network", "exp_no"])
    emit(ctx, net, "Q11", sel, key=sel["exp_no"],
         zh=fmt("点 {k} 在相连同径管段中的高程不一致", k=sel["exp_no"]),
         en=fmt("point {k} has different elevations in its connected segments of equal diameter", k=sel["exp_no"]))


_SPREAD_PARTS = 4
"""Parts of the points :func:`_spread` groups at a time: its per-end arrays are a quarter of the
ends' size each (a few MB of a million-end network, not some 40 MB)."""


def _spread(ends: Ends, pos: np.ndarray, tol: float) -> np.ndarray:
    """For each end at ``pos``, whether the elevations of the ends that lie on its point with its
    elevation reference and diameter spread (max − min) beyond ``tol``; the points' rows taken in
    :data:`_SPREAD_PARTS` ranges (the ends of a point always in one)."""
    out = np.zeros(len(pos), dtype=bool)
    at = ends.at[pos]
    codes = [value_codes(ends.S["z_ref"])[0], pd.factorize(ends.S["diameter_mm"].to_numpy(dtype=float))[0]]
    cuts = np.linspace(0, len(ends.P), _SPREAD_PARTS + 1).astype(np.int64)
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        part = np.flatnonzero((at >= lo) & (at < hi))
        out[part] = _spread_part(ends, pos[part], codes, tol)
    return out


def _spread_part(ends: Ends, pos: np.ndarray, codes: list[np.ndarray], tol: float) -> np.ndarray:
    """:func:`_spread` for the ends at ``pos``, every end of their points among them (``codes``:
    the segments' reference and diameter codes): grouped on one integer
    key (the point's row, the reference's code, the diameter's code) sorted once, not on the
    point numbers' texts; the reference and diameter coded once per segment, not per end, and
    the per-end arrays built in place where they can be."""
    second = pos >= ends.n                                       # an end end, not a start end
    rows = pos - ends.n * second                                 # the segment of each end
    key = ends.at[pos].astype(np.int64)                          # (rows of P as int32: a key of three can pass 2**31)
    for c in codes:
        key *= int(c.max(initial=0)) + 2
        key += c[rows]                                           # a missing value (−1) is a code of its own
        key += 1
    order = np.argsort(key, kind="stable")
    key = key[order]
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    del key
    rows, second = rows[order], second[order]
    za, zb = _PAIRED["z"]
    z = _either(ends.S[za].to_numpy(dtype=float), ends.S[zb].to_numpy(dtype=float), rows, second)   # in key order
    del rows, second
    out = np.zeros(len(pos), dtype=bool)
    if len(z):
        wide = np.maximum.reduceat(z, first) - np.minimum.reduceat(z, first) > tol
        out[order] = np.repeat(wide, np.diff(np.r_[first, len(z)]))
    return out


def _degrees(ctx: Ctx, net: Net, P: pd.DataFrame, ends: Ends, first: np.ndarray, index: _Sorted | pd.Index,
             keys: np.ndarray | pd.Index) -> None:
    """Q06 orphan points; Q14 connection counts of tees, crosses, bends, caps (``first`` and
    ``index`` as for :func:`_link`, ``keys`` the pairs of ``P``)."""
    counts = np.bincount(ends.at[ends.found], minlength=len(P)).astype(np.int32)   # the ends on each (first) point
    slot = index.get_indexer(keys)                                   # each point's first point, by position
    deg = np.zeros(len(P), dtype=np.int64)
    ok = slot >= 0
    deg[ok] = counts[first[slot[ok]]]
    Pd = P.assign(deg=deg)
    exempt_a = set(ctx.param("Q06", "exempt_appurtenances", []) or [])
    exempt_n = set(ctx.param("Q06", "exempt_node_types", []) or [])
    segs_nets = set(net.S["network"].dropna().unique())
    orphan = (Pd["deg"] == 0) & Pd["network"].isin(segs_nets) & ~Pd["appurtenance"].isin(exempt_a) & \
        ~Pd["node_type"].isin(exempt_n)
    sel = Pd[orphan]
    emit(ctx, net, "Q06", sel, key=sel["exp_no"], zh=fmt("点 {k} 未被任何管段使用", k=sel["exp_no"]),
         en=fmt("point {k} is not used by any segment", k=sel["exp_no"]))
    expected = ctx.param("Q14", "expected", {}) or {}
    want = Pd["feature"].map(expected).astype("float64")
    bad = want.notna() & (Pd["deg"] > 0) & (Pd["deg"] != want)
    sel = Pd[bad]
    emit(ctx, net, "Q14", sel, key=sel["exp_no"], field_name="feature", value=sel["feature"],
         zh=fmt("{f}点 {k} 连接 {n} 条管段，应为 {w} 条", f=sel["feature"], k=sel["exp_no"], n=sel["deg"],
                w=want[bad].astype(int)),
         en=fmt("{f} point {k} connects {n} segments; expected {w}", f=sel["feature"], k=sel["exp_no"], n=sel["deg"],
                w=want[bad].astype(int)))


def _depths(ctx: Ctx, net: Net, S: pd.DataFrame) -> None:
    """Q19: depth ≤ 0 for buried pipes, depth > max, cover below the network's minimum."""
    aerial = set(ctx.param("Q19", "aerial_burial_types", []) or [])
    dmax = float(ctx.param("Q19", "max_m", 10.0))
    cover = ctx.param("Q19", "min_cover_m", {}) or {}
    for col, label in (("start_depth", "起点埋深"), ("end_depth", "终点埋深")):
        d = S[col].to_numpy(dtype=float)
        buried = ~S["burial_type"].isin(aerial).to_numpy()
        minc = S["network"].map(cover).astype("float64").to_numpy()
        nonpos = np.isfinite(d) & buried & (d <= 0)
        deep = np.isfinite(d) & (d > dmax)
        shallow = np.isfinite(d) & np.isfinite(minc) & (d > 0) & (d < minc)
        for mask, zh, en in ((nonpos, "{l} {d} m 不大于 0（非架空管线）", "{l} {d} m is not positive for a buried pipe"),
                             (deep, "{l} {d} m 超过 " + f"{dmax:g} m", "{l} {d} m exceeds " + f"{dmax:g} m"),
                             (shallow, "{l} {d} m 小于最小覆土", "{l} {d} m is below the minimum cover")):
            sel = S[mask]
            emit(ctx, net, "Q19", sel, key=seg_key(sel), field_name=label,
                 value=d[mask], zh=fmt(zh, l=label, d=d[mask]), en=fmt(en, l=col, d=d[mask]))
