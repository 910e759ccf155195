"""A small builder for pipe networks laid along the demo town's street grid.

Each network keeps its own offset from the road centreline per road class, so the network's
north-south and east-west lines meet at one junction node per crossing and different networks
never share a trench. Offsets and depth strata follow usual municipal practice [I]: sewers under
the carriageway, pressure pipes and ducts under the pavements, from top to bottom power ducts,
telecom ducts, gas, water, then drainage, so that crossing pipes keep their vertical clearance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from demo.town import Road, Town

# Signed offset from the road centreline (m): negative = west of a north-south road / south of an
# east-west road.
OFFSETS: dict[str, dict[str, float]] = {
    "YS": {"次干路": -3.5, "主干路": -6.0},
    "WS": {"次干路": 3.5, "主干路": 6.0},
    "RQ": {"次干路": -9.0, "主干路": -14.0},
    "JS": {"次干路": 9.0, "主干路": 14.0},
    "TX": {"次干路": -10.8, "主干路": -16.5},
}
KERB = {"次干路": 7.0, "主干路": 12.0}     # kerb line of the carriageway from the centreline (m)


@dataclass
class Graph:
    """Nodes and directed edges of one network in the local frame."""

    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    role: list[str] = field(default_factory=list)      # junction | mid | outfall | pump | inlet | stub …
    road: list[str] = field(default_factory=list)
    road_class: list[str] = field(default_factory=list)
    u: list[int] = field(default_factory=list)
    v: list[int] = field(default_factory=list)
    e_road: list[str] = field(default_factory=list)
    e_class: list[str] = field(default_factory=list)
    e_kind: list[str] = field(default_factory=list)    # main | inlet | stub | lp

    def node(self, x: float, y: float, role: str, road: Road) -> int:
        """Add a node and return its index."""
        self.x.append(float(x))
        self.y.append(float(y))
        self.role.append(role)
        self.road.append(road.name)
        self.road_class.append(road.road_class)
        return len(self.x) - 1

    def edge(self, u: int, v: int, road: Road, kind: str = "main") -> None:
        """Add an edge u → v (for gravity networks: flow direction)."""
        self.u.append(u)
        self.v.append(v)
        self.e_road.append(road.name)
        self.e_class.append(road.road_class)
        self.e_kind.append(kind)

    def mids(self, a: int, b: int, max_len: float, road: Road, rng: np.random.Generator) -> list[int]:
        """Intermediate nodes strictly between nodes a and b, at most ``max_len`` apart."""
        ax, ay, bx, by = self.x[a], self.y[a], self.x[b], self.y[b]
        n = max(1, math.ceil(math.hypot(bx - ax, by - ay) / max_len))
        t = (np.arange(1, n) + rng.uniform(-0.03, 0.03, n - 1)) / n
        return [self.node(ax + (bx - ax) * s, ay + (by - ay) * s, "mid", road) for s in t]

    def path(self, nodes: list[int], road: Road, kind: str = "main") -> None:
        """Edges along consecutive nodes."""
        for a, b in zip(nodes[:-1], nodes[1:], strict=True):
            self.edge(a, b, road, kind)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, u, v) as numpy arrays."""
        return (np.array(self.x), np.array(self.y), np.array(self.u, dtype=np.int64),
                np.array(self.v, dtype=np.int64))

    def lengths(self) -> np.ndarray:
        """Plan length of every edge (m)."""
        x, y, u, v = self.arrays()
        return np.hypot(x[v] - x[u], y[v] - y[u])

    def degree(self) -> np.ndarray:
        """Number of edges at each node."""
        _, _, u, v = self.arrays()
        return np.bincount(np.concatenate([u, v]), minlength=len(self.x))


def junctions(town: Town, g: Graph, net: str) -> list[list[int]]:
    """One junction node per road crossing, J[i][j] for north-south road i and east-west road j."""
    out = []
    for ns in town.ns_roads:
        col = []
        for ew in town.ew_roads:
            col.append(g.node(ns.pos + OFFSETS[net][ns.road_class], ew.pos + OFFSETS[net][ew.road_class],
                              "junction", ns))
        out.append(col)
    return out


def topo_order(n: int, u: np.ndarray, v: np.ndarray) -> list[int]:
    """Nodes ordered so that every edge's start comes before its end (Kahn)."""
    indeg = np.bincount(v, minlength=n).tolist()
    out_edges: list[list[int]] = [[] for _ in range(n)]
    for e, a in enumerate(u.tolist()):
        out_edges[a].append(e)
    vl = v.tolist()
    stack = [k for k in range(n) if indeg[k] == 0]
    order = []
    while stack:
        k = stack.pop()
        order.append(k)
        for e in out_edges[k]:
            w = vl[e]
            indeg[w] -= 1
            if indeg[w] == 0:
                stack.append(w)
    if len(order) != n:
        raise ValueError("network has a cycle")
    return order


def pressure_grid(town: Town, net: str, max_len: float, rng: np.random.Generator) -> tuple[Graph, list[list[int]]]:
    """A looped pressure network (water, gas, telecom) along every road."""
    g = Graph()
    J = junctions(town, g, net)
    for i, ns in enumerate(town.ns_roads):
        for j in range(len(town.ew_roads) - 1):
            g.path([J[i][j], *g.mids(J[i][j], J[i][j + 1], max_len, ns, rng), J[i][j + 1]], ns)
    for j, ew in enumerate(town.ew_roads):
        for i in range(len(town.ns_roads) - 1):
            g.path([J[i][j], *g.mids(J[i][j], J[i + 1][j], max_len, ew, rng), J[i + 1][j]], ew)
    return g, J


def outward(g: Graph, k: int, road: Road, town: Town, dist: float, sign: float) -> tuple[float, float]:
    """The point ``dist`` metres from the centreline of ``road`` on side ``sign``, abreast node k."""
    if road.axis == "ns":
        return road.pos + sign * dist, g.y[k]
    return g.x[k], road.pos + sign * dist


def road_of(town: Town, name: str) -> Road:
    """Road by name."""
    for r in town.ns_roads + town.ew_roads:
        if r.name == name:
            return r
    raise KeyError(name)
