"""Pressure and duct networks of the demo town: water (JS), gas (RQ) and telecom (TX).

All three are looped grids under the pavements with a point at every crossing (弯头, 三通, 四通
by the number of connected pipes, CJJ 61 附录F) and intermediate points at most 65 m apart,
so no segment exceeds the 75 m survey limit. Water has a fire hydrant (消防栓) on a DN100 branch
at every other intermediate point (≤ 120 m apart, GB 50974); gas mains are 中压B with a district
regulator (调压箱) feeding a short 低压 PE line at about every fourth intermediate point.
Depths are to the pipe top; each network keeps its own depth stratum so crossings keep
their vertical clearance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from demo.graph import OFFSETS, Graph, outward, pressure_grid, road_of
from demo.town import Town

TOP_DEPTH = {"TX": 0.70, "RQ": 1.10, "JS": 1.50}
OWNER = {"JS": "鼎城区供水有限公司", "RQ": "鼎城区天然气有限公司", "TX": "中国电信常德鼎城分公司"}


def build(town: Town, net: str, rng: np.random.Generator) -> Graph:
    """Grid plus the network's service branches (hydrants, regulators)."""
    g, _ = pressure_grid(town, net, 65.0, rng)
    mids = [k for k, r in enumerate(g.role) if r == "mid"]
    for n_mid, k in enumerate(mids):
        road = road_of(town, g.road[k])
        side = np.sign(OFFSETS[net][road.road_class])
        if net == "JS" and n_mid % 2 == 0:
            hx, hy = outward(g, k, road, town, abs(OFFSETS[net][road.road_class]) + 1.5, side)
            g.edge(k, g.node(hx, hy, "hydrant", road), road, "stub")
        elif net == "RQ" and n_mid % 4 == 1:
            rx, ry = outward(g, k, road, town, road.width / 2 + 1.5, side)
            reg = g.node(rx, ry, "regulator", road)
            g.edge(k, reg, road, "stub")
            lx, ly = (rx, ry + 25.0) if road.axis == "ns" else (rx + 25.0, ry)
            g.edge(reg, g.node(lx, ly, "lp_end", road), road, "lp")
    return g


def _features(net: str, role: np.ndarray, deg: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """(特征, 附属物, 8-digit code) per node from its role and connection count (CJJ 61 Q14)."""
    n = len(role)
    feat = np.full(n, None, dtype=object)
    appt = np.full(n, None, dtype=object)
    code = np.full(n, None, dtype=object)
    prefix = {"JS": "5104", "RQ": "5303", "TX": "5603"}[net]
    by_degree = {1: ("盖堵", "13" if net == "JS" else "06"), 2: ("弯头", "01"), 3: ("三通", "02"), 4: ("四通", "03")}
    if net == "TX":
        appt[:] = np.where(role == "junction", "人孔", "手孔")
        code[:] = np.where(role == "junction", prefix + "2201", prefix + "2202")
        return feat, appt, code
    fitting = (role == "junction") | (deg >= 3)
    for d, (name, num) in by_degree.items():
        sel = fitting & (deg == d)
        feat[sel] = name
        code[sel] = prefix + "21" + num
    inline = ~fitting & (role == "mid")
    if net == "JS":
        choice = rng.choice(["阀门", "排气阀", "阀门井"], n, p=[0.6, 0.15, 0.25])
        nums = {"阀门": "04", "排气阀": "09", "阀门井": "05"}
        appt[role == "hydrant"], code[role == "hydrant"] = "消防栓", prefix + "2202"
    else:
        choice = rng.choice(["阀门", "测试桩", "凝水缸", "转折点"], n, p=[0.3, 0.3, 0.1, 0.3])
        nums = {"阀门": "01", "测试桩": "06", "凝水缸": "03"}
        appt[role == "regulator"], code[role == "regulator"] = "调压箱", prefix + "2204"
        feat[role == "lp_end"], code[role == "lp_end"] = "预留口", prefix + "2105"
    for name, num in nums.items():
        sel = inline & (choice == name)
        appt[sel], code[sel] = name, prefix + "22" + num
    sel = inline & (choice == "转折点")
    feat[sel], code[sel] = "转折点", prefix + "2108"
    return feat, appt, code


def tables(town: Town, g: Graph, net: str, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CJJ 61 point and line tables of one pressure network, local coordinates."""
    x, y, u, v = g.arrays()
    n, m = len(x), len(u)
    role = np.array(g.role)
    exp = np.array([f"{net}{k:04d}" for k in range(1, n + 1)], dtype=object)
    ground = np.round(town.ground(x, y) + rng.normal(0, 0.01, n), 2)
    feat, appt, code = _features(net, role, g.degree(), rng)
    pts = pd.DataFrame({"物探点号": exp, "图上点号": exp, "x": x, "y": y, "地面高程": ground,
                        "点符号代码": code, "特征": feat, "附属物": appt})
    pts["井深"] = np.where(np.isin(appt, ["阀门井", "人孔", "手孔"]), TOP_DEPTH[net] + 0.6, np.nan)
    pts["所在道路"] = g.road
    pts["权属单位"] = OWNER[net]

    kind = np.array(g.e_kind)
    main = np.array(g.e_class) == "主干路"
    top = TOP_DEPTH[net] + rng.uniform(0.0, 0.03, n)
    sd, ed = np.round(top[u], 2), np.round(top[v], 2)
    lines = pd.DataFrame({"起点点号": exp[u], "终点点号": exp[v], "起点埋深": sd, "终点埋深": ed,
                          "起点高程": np.round(ground[u] - sd, 3), "终点高程": np.round(ground[v] - ed, 3)})
    years = _years(g.e_road, rng, {"JS": (1995, 2022), "RQ": (2006, 2023), "TX": (2010, 2024)}[net])
    if net == "JS":
        steel = rng.random(m) < 0.7
        lines["管径"] = np.where(kind == "stub", "100", np.where(main, np.where(rng.random(m) < 0.5, "400", "300"),
                                                                np.where(rng.random(m) < 0.5, "200", "150")))
        lines["材质"] = np.where((kind == "stub") | main | steel, "球墨铸铁", "PE")
        lines["埋设方式"] = "直埋"
    elif net == "RQ":
        lines["管径"] = np.where(kind == "lp", "110", np.where(kind == "stub", "63", np.where(main, "200", "160")))
        lines["材质"] = np.where(main & (kind == "main"), "钢", "PE")
        lines["压力"] = np.where(kind == "lp", "低压", "中压B")
        lines["设计压力"] = np.where(kind == "lp", 0.005, 0.2)
        lines["埋设方式"] = "直埋"
    else:
        lines["管径"] = "110"                      # Φ110 PVC ducts in a 管块 (总孔数 per block)
        lines["材质"] = "PVC"
        lines["埋设方式"] = "管块"
        lines["总孔数"] = np.where(main, 12, 6)
        lines["已用孔数"] = np.where(main, rng.integers(4, 10, m), rng.integers(1, 5, m))
        lines["电缆条数"] = lines["已用孔数"]
    lines["建设年代"] = years
    lines["权属单位"] = OWNER[net]
    lines["所在道路"] = g.e_road
    lines["状态"] = "在用"
    lines["点符号代码"] = {"JS": "51041000", "RQ": "53031000", "TX": "56031000"}[net]
    lines["_u"], lines["_v"] = u, v
    return pts, lines


def _years(roads: list[str], rng: np.random.Generator, span: tuple[int, int]) -> np.ndarray:
    names = sorted(set(roads))
    year = dict(zip(names, rng.integers(span[0], span[1] + 1, len(names)).tolist(), strict=True))
    return np.array([year[r] for r in roads])
