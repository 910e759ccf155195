"""Field rules: mandatory values (Q23), dictionaries (Q22, Q22P), unparsable values (F02),
network codes (F01), point-table consistency (Q02, Q03), duplicate pole numbers (L01, over a
whole layer: :func:`check_poles`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cim.schema import feature_table
from ingest.mapping.normalize import by_unique, clean_text
from ingest.mapping.profile import codelists_for, load_profiles
from ingest.model import LayerBatch, Severity
from ingest.validation.core import Ctx, fmt, key_column, source_field


def _spec(batch: LayerBatch, ctx: Ctx):
    profiles = ctx.__dict__.setdefault("_profiles", load_profiles())
    prof = profiles.get(batch.profile_id)
    if prof is None:
        return None, None
    for spec in prof.layers:
        if spec.id == batch.spec_id:
            return prof, spec
    return prof, None


def check_fields(ctx: Ctx, batch: LayerBatch) -> None:
    """Run every field rule on one batch."""
    prof, spec = _spec(batch, ctx)
    keys = key_column(batch)
    keyv = keys.to_numpy() if keys is not None else None
    if spec is not None:
        _required(ctx, batch, spec, keyv)
        _dictionaries(ctx, batch, prof, spec, keyv)
    _unparsable(ctx, batch, keyv)
    _constraints(ctx, batch, keyv)
    if batch.target in ("pipe_point", "pipe_segment"):
        _network(ctx, batch, keyv)
    if batch.target == "pipe_point":
        _point_rules(ctx, batch)


def check_poles(ctx: Ctx, batch: LayerBatch) -> None:
    """L01: pole numbers that occur more than once in a streetlight layer (all its chunks)."""
    if batch.target != "streetlight" or "pole_no" not in batch.frame:
        return
    dup = batch.frame["pole_no"].notna() & batch.frame["pole_no"].duplicated(keep=False)
    rows = np.flatnonzero(dup.to_numpy())
    v = batch.frame["pole_no"].to_numpy()[rows]
    ctx.emit("L01", batch, rows, key=v, field_name=source_field(batch, "pole_no"), value=v,
             zh=fmt("灯杆编号 {k} 重复", k=v), en=fmt("pole number {k} occurs more than once", k=v))


def _required(ctx: Ctx, batch: LayerBatch, spec, keyv) -> None:
    cond_sev = Severity(ctx.param("Q23", "conditional_severity", "warning"))
    for col, fs in spec.fields.items():
        if fs.required == "O":
            continue
        sev = None if fs.required == "M" else cond_sev
        label = "/".join(fs.aliases[:2]) or col
        if col not in batch.field_map:
            if fs.required == "M" and not batch.chunk:       # said once per layer
                ctx.emit("Q23", batch, None, field_name=label, layer=batch.source_layer,
                         zh=f"图层 {batch.source_layer} 缺少必填字段 {label}",
                         en=f"layer {batch.source_layer} lacks the mandatory field {label} ({col})")
            continue
        missing = _missing(batch.frame, col, fs)
        rows = np.flatnonzero(missing)
        if len(rows):
            k = keyv[rows] if keyv is not None else None
            f = source_field(batch, col)
            ctx.emit("Q23", batch, rows, key=k, field_name=f, severity=sev,
                     zh=fmt("第 {r} 行 {f} 为空", r=batch.frame["source_row"].to_numpy()[rows], f=f),
                     en=fmt("row {r}: {f} is empty", r=batch.frame["source_row"].to_numpy()[rows], f=f))


def _missing(frame: pd.DataFrame, col: str, fs) -> np.ndarray:
    """Rows without a value; a section field is filled by a diameter or by a full W×H pair."""
    missing = frame[col].isna()
    if fs.section and "width_mm" in frame and "height_mm" in frame:
        missing &= frame["width_mm"].isna() | frame["height_mm"].isna()
    return missing.to_numpy()


def _dictionaries(ctx: Ctx, batch: LayerBatch, prof, spec, keyv) -> None:
    lists = codelists_for(prof)
    only = ctx.param("Q22", "only_networks", {}) or {}
    for col, fs in spec.fields.items():
        if not fs.codes or col not in batch.field_map:
            continue
        cl = lists.get(fs.codes)
        if cl is None or not cl.dictionary:
            continue
        valid = ctx.dicts.codes.get(cl.dictionary, set())
        s = batch.frame[col]
        bad = s.notna() & ~s.astype(object).isin(valid)
        if col in only and "network" in batch.frame:
            bad &= batch.frame["network"].isin(only[col])
        rows = np.flatnonzero(bad.to_numpy())
        if not len(rows):
            continue
        raw = batch.raw[col].to_numpy()[rows] if batch.raw is not None and col in batch.raw else s.to_numpy()[rows]
        f = source_field(batch, col)
        ctx.emit("Q22", batch, rows, key=keyv[rows] if keyv is not None else None, field_name=f, value=raw,
                 zh=fmt("{f} 的值“{v}”不在字典 {d} 中", f=f, v=raw, d=cl.dictionary),
                 en=fmt("{f} value '{v}' is not in dictionary {d}", f=f, v=raw, d=cl.dictionary))


def _unparsable(ctx: Ctx, batch: LayerBatch, keyv) -> None:
    if batch.raw is None:
        return
    types = feature_table(batch.target).kinds()
    for col in batch.raw.columns:
        if types.get(col) not in ("float", "int", "date", "bool") or col not in batch.frame:
            continue
        raw = batch.raw[col]
        if pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_datetime64_any_dtype(raw):
            continue                       # typed by the reader: nothing was lost in conversion
        given = by_unique(raw, lambda v: clean_text(v) not in (None, "-", "/", "—")).astype(bool)
        empty = batch.frame[col].isna()
        if col == "diameter_mm" and "width_mm" in batch.frame:
            empty &= batch.frame["width_mm"].isna()      # a W×H section is a parsed value
        bad = (given & empty).to_numpy()
        rows = np.flatnonzero(bad)
        if not len(rows):
            continue
        v = raw.to_numpy()[rows]
        f = source_field(batch, col)
        ctx.emit("F02", batch, rows, key=keyv[rows] if keyv is not None else None, field_name=f, value=v,
                 zh=fmt("{f} 的值“{v}”无法解析，按空值处理", f=f, v=v),
                 en=fmt("{f} value '{v}' cannot be parsed and is stored empty", f=f, v=v))


def _network(ctx: Ctx, batch: LayerBatch, keyv) -> None:
    rows = np.flatnonzero(batch.frame["network"].isna().to_numpy())
    if len(rows):
        ctx.emit("F01", batch, rows, key=keyv[rows] if keyv is not None else None,
                 zh=f"图层 {batch.source_layer} 无法确定管线类别（图层名或类别字段应含 CJJ 61 代号，如 YS、JS）",
                 en=f"layer {batch.source_layer}: the pipeline network is unknown (the layer name or a category "
                    "field must carry a CJJ 61 code such as YS or JS)")


def _point_rules(ctx: Ctx, batch: LayerBatch) -> None:
    f = batch.frame
    exp = f["exp_no"].to_numpy()
    both = (f["feature"].notna() & f["appurtenance"].notna()).to_numpy()
    rows = np.flatnonzero(both)
    ctx.emit("Q03", batch, rows, key=exp[rows], field_name=f"{source_field(batch, 'feature')}/"
             f"{source_field(batch, 'appurtenance')}", value=f["feature"].to_numpy()[rows],
             zh=fmt("点 {k} 同时填写了特征“{a}”和附属物“{b}”", k=exp[rows], a=f["feature"].to_numpy()[rows],
                    b=f["appurtenance"].to_numpy()[rows]),
             en=fmt("point {k} has both a feature ({a}) and an appurtenance ({b})", k=exp[rows],
                    a=f["feature"].to_numpy()[rows], b=f["appurtenance"].to_numpy()[rows]))
    diff = (f["map_no"].notna() & f["exp_no"].notna() & (f["map_no"] != f["exp_no"])).to_numpy()
    rows = np.flatnonzero(diff)
    ctx.emit("Q02", batch, rows, key=exp[rows], field_name=source_field(batch, "map_no"),
             value=f["map_no"].to_numpy()[rows],
             zh=fmt("图上点号 {m} 与物探点号 {k} 不一致", m=f["map_no"].to_numpy()[rows], k=exp[rows]),
             en=fmt("map number {m} differs from survey number {k}", m=f["map_no"].to_numpy()[rows], k=exp[rows]))
    names = set(ctx.dicts.names.get("dict_point_code", {})) | set(ctx.param("Q22P", "extra_names", []) or [])
    for col in ("feature", "appurtenance"):
        s = f[col]
        bad = (s.notna() & ~s.isin(names)).to_numpy()
        rows = np.flatnonzero(bad)
        v = s.to_numpy()[rows]
        fld = source_field(batch, col)
        ctx.emit("Q22P", batch, rows, key=exp[rows], field_name=fld, value=v,
                 zh=fmt("{f}“{v}”不在特征点/附属物字典中", f=fld, v=v),
                 en=fmt("{f} '{v}' is not a known feature or appurtenance name", f=fld, v=v))


def _constraints(ctx: Ctx, batch: LayerBatch, keyv) -> None:
    """F03: values the target table would refuse (length, sign, allowed set)."""
    if ctx.rule("F03") is None:
        return
    f = batch.frame
    checks = []
    for name, limit in (ctx.param("F03", "max_length", {}) or {}).items():
        table, col = name.split(".", 1)
        if table == batch.target and col in f:
            bad = f[col].notna() & (f[col].astype(str).str.len() > int(limit))
            checks.append((col, bad, f"长度超过 {limit}", f"longer than {limit}"))
    for name in ctx.param("F03", "non_negative", []) or []:
        table, col = name.split(".", 1)
        if table == batch.target and col in f:
            checks.append((col, f[col].astype("float64") < 0, "为负数", "is negative"))
    for name, allowed in (ctx.param("F03", "allowed", {}) or {}).items():
        table, col = name.split(".", 1)
        if table == batch.target and col in f:
            checks.append((col, f[col].notna() & ~f[col].isin(allowed), f"不在 {allowed} 中", f"not one of {allowed}"))
    for col, bad, zh, en in checks:
        rows = np.flatnonzero(bad.fillna(False).to_numpy(dtype=bool))
        if not len(rows):
            continue
        v = (batch.raw[col] if batch.raw is not None and col in batch.raw else f[col]).to_numpy()[rows]
        fld = source_field(batch, col)
        ctx.emit("F03", batch, rows, key=keyv[rows] if keyv is not None else None, field_name=fld, value=v,
                 zh=fmt("{f} 的值“{v}”" + zh + "，无法入库", f=fld, v=v),
                 en=fmt("{f} value '{v}' " + en + " and cannot be stored", f=fld, v=v))
