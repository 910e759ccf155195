"""Gravity drainage rules (network PS): reverse slope (Q15), smaller pipe downstream (Q16),
flow-direction conflicts (Q17), storm/sewer cross-connections (Q18), drains not ending at a
drainage node (Q26). Flow runs start → end unless 流向 says −1."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ingest.validation.core import Ctx, fmt
from ingest.validation.network import Ends, Net, emit, seg_key


def flow_table(S: pd.DataFrame) -> pd.DataFrame:
    """Drainage segments with upstream/downstream point numbers and elevations."""
    D = S[S["network"] == "PS"].copy()
    rev = (D["flow_dir"].astype("float64") == -1).to_numpy()
    D["up"] = np.where(rev, D["end_exp_no"], D["start_exp_no"])
    D["down"] = np.where(rev, D["start_exp_no"], D["end_exp_no"])
    D["z_up"] = np.where(rev, D["end_z"], D["start_z"]).astype(float)
    D["z_down"] = np.where(rev, D["start_z"], D["end_z"]).astype(float)
    return D


def check_drainage(ctx: Ctx, net: Net, ends: Ends) -> None:
    """Run Q15–Q18 and Q26 on the drainage segments of the delivery (``ends``: the segment ends
    with their points, :func:`ingest.validation.network.check_network`)."""
    D = flow_table(net.S)
    if not len(D):
        return
    drains = ends.twice((net.S["network"] == "PS").to_numpy(dtype=bool))
    E = ends.frame(ends.found & drains, ["network", "subtype", "exp_no", "p_subtype", "node_type", "appurtenance",
                                         "feature"])
    tol = float(ctx.param("Q15", "tolerance_m", 0.01))
    rise = (D["z_down"] - D["z_up"]).to_numpy(dtype=float)
    bad = np.isfinite(rise) & (rise > tol) & (D["z_ref"] == "invert").to_numpy()
    sel = D[bad]
    emit(ctx, net, "Q15", sel, key=seg_key(sel), value=np.round(rise[bad], 3),
         zh=fmt("倒坡：沿水流方向管底高程升高 {r} m（{a} {za} → {b} {zb}）", r=rise[bad], a=sel["up"],
                za=sel["z_up"], b=sel["down"], zb=sel["z_down"]),
         en=fmt("reverse slope: the invert rises {r} m along the flow ({a} {za} -> {b} {zb})", r=rise[bad],
                a=sel["up"], za=sel["z_up"], b=sel["down"], zb=sel["z_down"]))
    _smaller_downstream(ctx, net, D)
    _sinks(ctx, net, D)
    _cross_connections(ctx, net, D, E)
    _node_kinds(ctx, net, E)


def _smaller_downstream(ctx: Ctx, net: Net, D: pd.DataFrame) -> None:
    tol = float(ctx.param("Q16", "tolerance_mm", 0.5))
    size = D["diameter_mm"].where(D["diameter_mm"].notna(),
                                  np.sqrt(4 * D["width_mm"] * D["height_mm"] / np.pi))  # equivalent round size
    D = D.assign(size=size)
    inflow = D.groupby("down")["size"].max().rename("in_max")
    out = D.merge(inflow, left_on="up", right_index=True, how="inner")
    bad = out["size"].notna() & (out["size"] < out["in_max"] - tol)
    sel = out[bad]
    emit(ctx, net, "Q16", sel, key=seg_key(sel), value=sel["size"],
         zh=fmt("点 {n} 下游管径 {d} mm 小于上游最大管径 {u} mm", n=sel["up"], d=sel["size"], u=sel["in_max"]),
         en=fmt("at {n} the downstream pipe ({d} mm) is smaller than the largest inflow ({u} mm)", n=sel["up"],
                d=sel["size"], u=sel["in_max"]))


def _sinks(ctx: Ctx, net: Net, D: pd.DataFrame) -> None:
    """Q17: nodes that only receive flow but are neither outfalls nor pump stations."""
    ups = set(D["up"].dropna().unique())
    terminal_nodes = set(ctx.param("Q17", "terminal_node_types", []) or [])
    terminal_app = set(ctx.param("Q17", "terminal_appurtenances", []) or [])
    P = net.P[net.P["network"] == "PS"]
    terminal = set(P.loc[P["node_type"].isin(terminal_nodes) | P["appurtenance"].isin(terminal_app) |
                         P["feature"].isin(terminal_app), "exp_no"])
    sinks = D[D["down"].notna() & ~D["down"].isin(ups) & ~D["down"].isin(terminal)]
    sel = sinks.drop_duplicates("down")
    emit(ctx, net, "Q17", sel, key=sel["down"],
         zh=fmt("点 {k} 只有来水没有出水，且不是排放口或泵站（流向或高程有误？）", k=sel["down"]),
         en=fmt("point {k} only receives flow and is neither an outfall nor a pump station (wrong flow "
                "direction or elevations?)", k=sel["down"]))


def _cross_connections(ctx: Ctx, net: Net, D: pd.DataFrame, E: pd.DataFrame) -> None:
    """Q18: a storm (YS) segment meeting a sewer (WS) point or segment, or vice versa; HS is allowed."""
    ends = E[(E["network"] == "PS") & E["subtype"].isin(["YS", "WS"])]
    if not len(ends):
        return
    kinds = ends.groupby("exp_no")["subtype"].nunique()
    mixed_nodes = set(kinds[kinds > 1].index)
    wrong_point = ends["p_subtype"].isin(["YS", "WS"]) & (ends["p_subtype"] != ends["subtype"])
    sel = ends[ends["exp_no"].isin(mixed_nodes) | wrong_point].drop_duplicates(["bi", "row"])
    other = np.where(sel["subtype"] == "YS", "污水", "雨水")
    emit(ctx, net, "Q18", sel, key=sel["exp_no"], value=sel["subtype"],
         zh=fmt("{s} 管段在点 {k} 与{o}系统相接（雨污混接）", s=sel["subtype"], k=sel["exp_no"], o=other),
         en=fmt("{s} segment meets the other system at point {k} (storm/sewer cross-connection)",
                s=sel["subtype"], k=sel["exp_no"]))


def _node_kinds(ctx: Ctx, net: Net, E: pd.DataFrame) -> None:
    """Q26: drainage segment ends must sit on a manhole, inlet, outfall or pump station."""
    allowed = set(ctx.param("Q26", "allowed_features", []) or [])
    ends = E[E["network"] == "PS"]
    bad = ends["node_type"].isna() & ends["appurtenance"].isna() & ~ends["feature"].isin(allowed)
    sel = ends[bad]
    emit(ctx, net, "Q26", sel, key=sel["exp_no"],
         zh=fmt("排水管段端点 {k} 不是检查井、雨水口、排放口或泵站", k=sel["exp_no"]),
         en=fmt("drain end {k} is not a manhole, inlet, outfall or pump station", k=sel["exp_no"]))
