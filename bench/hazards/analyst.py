"""G01, G02 and G03 written the way an analyst would with GeoPandas: read the county's layers
from PostGIS, project them to a metric CRS, ``sjoin`` with ``intersects`` / ``dwithin``, then
measure the candidate pairs with vectorised shapely and numpy.

Same definitions as the platform's rules (cimplus/hazards/detect/gas.py) and the same limits
(cim/standards/clearances.yaml, read through :mod:`cim.standards`), the same metric frame
(the county's transverse Mercator of ``cim.metric_frame``) and the same millimetre rounding, so
the two finding sets can be compared key for key.
"""

from __future__ import annotations

import math
import time

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from sqlalchemy import create_engine, text

from cim import standards
from cimplus.hazards import config
from cimplus.hazards.detect.gas import building_limits, horizontal_tables, reduction_columns

SEG_COLS = "id, network, start_exp_no, end_exp_no, pressure_class, diameter_mm, width_mm, burial_type, status"


def load(url: str, county: str) -> dict[str, gpd.GeoDataFrame]:
    """The current gas segments (with the columns G02's reductions read), other segments and
    buildings of the county."""
    reductions = "".join(f", {name}" for name, _ in reduction_columns(config.rules().rules["G02"]).values())
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
    nets = sorted({str(n) for n in config.rules().rules["G03"].params["networks"]} - {"RQ"})
    with engine.connect() as conn:
        gas = gpd.read_postgis(text(f"SELECT {SEG_COLS}{reductions}, geom FROM cim.pipe_segment WHERE county_code = :c "
                                    "AND is_current AND network = 'RQ'"), conn, params={"c": county})
        other = gpd.read_postgis(text(f"SELECT {SEG_COLS}, geom FROM cim.pipe_segment WHERE county_code = :c "
                                      "AND is_current AND network = ANY(:n)"), conn, params={"c": county, "n": nets})
        bld = gpd.read_postgis(text("SELECT id, code, geom FROM cim.building WHERE county_code = :c AND is_current"),
                               conn, params={"c": county})
    engine.dispose()
    return {"gas": gas, "other": other, "building": bld}


def _cls(pc: pd.Series, clear: dict) -> np.ndarray:
    alias, classes = clear.get("class_alias") or {}, set(clear["pressure_classes"])
    return np.array([alias.get(v, v if v in classes else clear.get("unknown_class")) for v in pc], dtype=object)


def _seg_key(df: pd.DataFrame) -> np.ndarray:
    return ("pipe_segment:" + df["network"] + ":" + df["start_exp_no"] + ">" + df["end_exp_no"]).to_numpy(dtype=object)


def _in_service(df: pd.DataFrame, skip_status: list[str]) -> pd.Series:
    return df["status"].isna() | ~df["status"].isin(skip_status)


def rules(data: dict[str, gpd.GeoDataFrame], proj: str) -> set[tuple[str, frozenset[str]]]:
    """Findings of G01, G02 and G03 as (rule, facility keys)."""
    clear = standards.clearances()
    rs = config.rules()
    skip_status = list(rs.skip_status)
    gas = data["gas"].to_crs(proj)
    gas = gas[_in_service(gas, skip_status)].reset_index(drop=True)
    bld = data["building"].to_crs(proj)
    other = data["other"].to_crs(proj)
    other = other[_in_service(other, skip_status)].reset_index(drop=True)
    gas["r"] = gas["diameter_mm"].fillna(gas["width_mm"]).fillna(0).to_numpy() / 2000.0
    gas["cls"] = _cls(gas["pressure_class"], clear)
    gas["key"] = _seg_key(gas)
    bld["key"] = "building:" + bld["code"]
    found: set[tuple[str, frozenset[str]]] = set()

    # G01: gas (not aerial) crossing under a footprint
    skip1 = set(rs.rules["G01"].params.get("skip_burial_types") or [])
    g1 = gas[~gas["burial_type"].isin(skip1)]
    pairs = gpd.sjoin(g1, bld, predicate="intersects", how="inner")
    if len(pairs):
        part = shapely.intersection(g1.geometry.loc[pairs.index].to_numpy(),
                                    bld.geometry.to_numpy()[pairs["index_right"].to_numpy()])
        lines = shapely.get_parts(part, return_index=True)
        length = np.zeros(len(pairs))
        kinds = shapely.get_type_id(lines[0])
        keep = np.isin(kinds, [1, 2])
        np.add.at(length, lines[1][keep], shapely.length(lines[0][keep]))
        hit = np.round(length, 3) > 0
        for gk, bk in zip(pairs["key_left"].to_numpy()[hit], pairs["key_right"].to_numpy()[hit], strict=True):
            found.add(("G01", frozenset((gk, bk))))

    # G02: outer wall closer to a footprint than the class allows; a reduced distance only where the
    # segment meets the step's condition through the column rules.yaml G02 reduction_columns maps it
    # to (a minimum: the column at least the value; a flag: the column true), the smallest of the
    # steps met; a condition without a column is never met
    skip2 = set(rs.rules["G02"].params.get("skip_burial_types") or [])
    limits = building_limits(clear)
    columns = reduction_columns(rs.rules["G02"])
    g2 = gas[~gas["burial_type"].isin(skip2) & gas["cls"].isin(list(limits))].reset_index(drop=True)
    std = g2["cls"].map(lambda c: limits[c]["std"]).to_numpy(float)
    red = np.full(len(g2), np.inf)
    for cls, lim in limits.items():
        of_cls = (g2["cls"] == cls).to_numpy()
        for step in lim["steps"]:
            if step["cond"] not in columns:
                continue
            name, flag = columns[step["cond"]]
            # NULL meets no condition (SQL: IS TRUE, NULL >= value)
            met = g2[name].eq(True).to_numpy(bool) if flag else g2[name].to_numpy(float) >= float(step["value"])
            red = np.where(of_cls & met, np.minimum(red, step["distance"]), red)
    g2["required"] = np.where(np.isfinite(red), red, std)
    g2["reach"] = g2["required"].to_numpy() + g2["r"].to_numpy()
    pairs = gpd.sjoin(g2, bld, predicate="dwithin", distance=g2["reach"].to_numpy(), how="inner")
    if len(pairs):
        gg = g2.geometry.loc[pairs.index].to_numpy()
        bb = bld.geometry.to_numpy()[pairs["index_right"].to_numpy()]
        touching = shapely.intersects(gg, bb)
        clear_m = np.round(shapely.distance(gg, bb) - pairs["r"].to_numpy(), 3)
        bad = ~touching & (clear_m < pairs["required"].to_numpy())
        for gk, bk in zip(pairs["key_left"].to_numpy()[bad], pairs["key_right"].to_numpy()[bad], strict=True):
            found.add(("G02", frozenset((gk, bk))))

    found |= _g03(gas, other, clear, rs)
    return found


def _g03(gas: gpd.GeoDataFrame, other: gpd.GeoDataFrame, clear: dict, rs: config.RuleSet) -> set:
    """G03: parallel runs closer than the horizontal table (the definitions of ingest rule Q21)."""
    t = horizontal_tables(clear)
    nets = {str(n) for n in rs.rules["G03"].params["networks"]}
    g = gas[~gas["burial_type"].isin(t["skip_types"])].reset_index(drop=True)
    o = pd.concat([g.assign(network="RQ").drop(columns=["r", "cls"]),
                   other[other["network"].isin(nets) & ~other["burial_type"].isin(t["skip_types"])]],
                  ignore_index=True)
    o = gpd.GeoDataFrame(o, geometry="geom", crs=gas.crs)
    o["key"] = _seg_key(o)
    o["r"] = o["diameter_mm"].fillna(o["width_mm"]).fillna(0).to_numpy() / 2000.0
    o["dn"] = o["diameter_mm"].fillna(o["width_mm"])
    classes = list(clear["pressure_classes"])
    reach = {c: max([float(v[c]) for tab in (t["direct"], t["conduit"]) for v in tab.values() if c in v] + [t["large"]])
             for c in classes}
    g["reach"] = g["cls"].map(reach).to_numpy(float) + g["r"].to_numpy() + o["r"].max()
    pairs = gpd.sjoin(g, o, predicate="dwithin", distance=g["reach"].to_numpy(), how="inner")
    i = pairs.index.to_numpy()
    j = pairs["index_right"].to_numpy()
    same = g["id"].to_numpy()[i] == o["id"].to_numpy()[j]
    ogas = o["network"].to_numpy()[j] == "RQ"
    keep = ~same & (~ogas | (o["id"].to_numpy()[j] > g["id"].to_numpy()[i]))
    i, j = i[keep], j[keep]
    gg, oo = g.geometry.to_numpy()[i], o.geometry.to_numpy()[j]
    keep = ~shapely.intersects(gg, oo)
    i, j, gg, oo = i[keep], j[keep], gg[keep], oo[keep]
    a0, a1 = shapely.get_coordinates(shapely.get_point(gg, 0)), shapely.get_coordinates(shapely.get_point(gg, -1))
    b0, b1 = shapely.get_coordinates(shapely.get_point(oo, 0)), shapely.get_coordinates(shapely.get_point(oo, -1))
    d = a1 - a0
    len_i = np.hypot(d[:, 0], d[:, 1])
    len_j = np.hypot(*(b1 - b0).T)
    ok = (len_i > 0) & (len_j > 0)
    u = d / np.where(len_i > 0, len_i, 1)[:, None]
    cos = np.abs((u * (b1 - b0)).sum(1)) / np.where(len_j > 0, len_j, 1)
    t0 = ((b0 - a0) * u).sum(1)
    t1 = ((b1 - a0) * u).sum(1)
    n0 = u[:, 0] * (b0 - a0)[:, 1] - u[:, 1] * (b0 - a0)[:, 0]
    n1 = u[:, 0] * (b1 - a0)[:, 1] - u[:, 1] * (b1 - a0)[:, 0]
    lo, hi = np.maximum(0.0, np.minimum(t0, t1)), np.minimum(len_i, np.maximum(t0, t1))
    ok &= (cos >= math.cos(math.radians(t["max_angle_deg"]))) & (t1 != t0) & (hi - lo >= t["min_run_m"])
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (n1 - n0) / (t1 - t0)
        o_lo, o_hi = np.abs(n0 + (lo - t0) * slope), np.abs(n0 + (hi - t0) * slope)
    ri, rj = g["r"].to_numpy()[i], o["r"].to_numpy()[j]
    onet = o["network"].to_numpy()[j]
    oburial = o["burial_type"].to_numpy()[j]
    cls = g["cls"].to_numpy()[i]
    dn = np.fmax(g["diameter_mm"].fillna(g["width_mm"]).to_numpy(float)[i], o["dn"].to_numpy(float)[j])
    limit = np.full(len(i), np.nan)
    for k in np.flatnonzero(ok):
        if onet[k] == "RQ":
            limit[k] = t["large"] if dn[k] > t["cut"] else t["small"]
            continue
        if oburial[k] in t["conduit_types"] and cls[k] in (t["conduit"].get(onet[k]) or {}):
            limit[k] = float(t["conduit"][onet[k]][cls[k]])
        elif cls[k] in (t["direct"].get(onet[k]) or {}):
            limit[k] = float(t["direct"][onet[k]][cls[k]])
    ok &= ~np.isnan(limit)
    c_lo, c_hi = np.round(o_lo - ri - rj, 3), np.round(o_hi - ri - rj, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        close = np.where(np.maximum(c_lo, c_hi) < limit, hi - lo,
                         np.where(np.minimum(c_lo, c_hi) >= limit, 0.0,
                                  (hi - lo) * (limit + ri + rj - np.minimum(o_lo, o_hi)) / np.abs(o_hi - o_lo)))
    ok &= np.minimum(c_lo, c_hi) < limit
    ok &= close >= t["min_run_m"]
    k = np.flatnonzero(ok)
    straight_i = shapely.linestrings(np.stack([a0[k], a1[k]], axis=1))
    straight_j = shapely.linestrings(np.stack([b0[k], b1[k]], axis=1))
    k = k[shapely.distance(straight_i, straight_j) > t["touch_m"]]
    return {("G03", frozenset((gk, ok_))) for gk, ok_ in zip(g["key"].to_numpy()[i[k]], o["key"].to_numpy()[j[k]],
                                                                strict=True)}


def run(url: str, county: str, proj: str) -> tuple[set, dict[str, float]]:
    """Findings and seconds (load from PostGIS, rules)."""
    t0 = time.perf_counter()
    data = load(url, county)
    t1 = time.perf_counter()
    found = rules(data, proj)
    t2 = time.perf_counter()
    return found, {"load_s": round(t1 - t0, 2), "rules_s": round(t2 - t1, 2), "total_s": round(t2 - t0, 2)}
