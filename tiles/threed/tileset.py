"""Quadtree partition and the 3D Tiles 1.1 tileset JSON.

Partition (pg2b3dm's rule): each feature belongs to exactly one tile, the one whose cell holds
the centre of the feature's bounding box; cells are half-open ``[x0, x1) × [y0, y1)`` so a centre
on a split line goes to exactly one child. A cell is split while it holds more than
``max_per_tile`` features (and is not at ``MAX_LEVEL``). Features live in the leaves only.

Tree (3D Tiles 1.1 §Tiles): ``refine: "ADD"`` because the quadtree partitions features rather
than simplifying them: a parent has no content, opening it adds its children's buildings, and
nothing is ever replaced. ``geometricError`` is the root error halved per level and 0 for leaves
(content is exact), so it never increases down the tree. Bounding volumes are ``region``s
(radians, ellipsoidal heights), which tile transforms do not affect; a leaf's region is the
union of its features' footprints and height ranges padded by a metre, a parent's the union of
its children's, so every volume contains its content and its children. Leaves carry the ENU
``transform`` of their content; inner tiles have none, so transforms never compose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tiles.threed.geometry import Frame

MAX_LEVEL = 20
PAD_M = 1.0
M_PER_DEG = 111_320.0


@dataclass
class Node:
    """A quadtree cell: level, x, y, its features (leaves) or children (inner cells)."""

    level: int
    x: int
    y: int
    members: np.ndarray | None = None
    children: list[Node] = field(default_factory=list)
    region: list[float] | None = None

    @property
    def key(self) -> str:
        """``level/x/y``, also the content path."""
        return f"{self.level}/{self.x}/{self.y}"


def partition(cx: np.ndarray, cy: np.ndarray, max_per_tile: int) -> tuple[Node, tuple[float, float, float, float]]:
    """Quadtree over bbox centres; returns the root and its bounds (w, s, e, n) in degrees."""
    n = len(cx)
    if n == 0:
        return Node(0, 0, 0, members=np.zeros(0, "i8")), (0.0, 0.0, 0.0, 0.0)
    w, s = float(cx.min()), float(cy.min())
    lat = np.radians((cy.min() + cy.max()) / 2)
    side_m = max((cx.max() - w) * np.cos(lat), cy.max() - s) * M_PER_DEG * 1.0001 + 1.0
    dx, dy = side_m / (M_PER_DEG * np.cos(lat)), side_m / M_PER_DEG
    root = Node(0, 0, 0)
    stack = [(root, np.arange(n), w, s)]
    while stack:
        node, members, x0, y0 = stack.pop()
        size = 2.0 ** -node.level
        if len(members) <= max_per_tile or node.level >= MAX_LEVEL:
            node.members = members
            continue
        mx, my = x0 + dx * size / 2, y0 + dy * size / 2
        east = cx[members] >= mx
        north = cy[members] >= my
        for qx in (0, 1):
            for qy in (0, 1):
                sel = members[(east == bool(qx)) & (north == bool(qy))]
                if len(sel):
                    child = Node(node.level + 1, node.x * 2 + qx, node.y * 2 + qy)
                    node.children.append(child)
                    stack.append((child, sel, x0 + qx * dx * size / 2, y0 + qy * dy * size / 2))
    return root, (w, s, w + dx, s + dy)


def leaves(root: Node) -> list[Node]:
    """All leaves (tiles with content), depth first."""
    out, stack = [], [root]
    while stack:
        node = stack.pop()
        if node.children:
            stack.extend(node.children)
        elif node.members is not None and len(node.members):
            out.append(node)
    return out


def leaf_region(bbox: np.ndarray, zmin: np.ndarray, zmax: np.ndarray) -> list[float]:
    """Region [w, s, e, n (radians), min h, max h] of a set of features, padded by ``PAD_M``."""
    lat = np.radians((bbox[:, 1].min() + bbox[:, 3].max()) / 2)
    px, py = PAD_M / (M_PER_DEG * max(np.cos(lat), 1e-6)), PAD_M / M_PER_DEG
    return [float(np.radians(bbox[:, 0].min() - px)), float(np.radians(bbox[:, 1].min() - py)),
            float(np.radians(bbox[:, 2].max() + px)), float(np.radians(bbox[:, 3].max() + py)),
            float(zmin.min() - PAD_M), float(zmax.max() + PAD_M)]


def frame_of(region: list[float]) -> Frame:
    """The ENU frame at the centre of a region (height 0)."""
    return Frame(float(np.degrees((region[0] + region[2]) / 2)), float(np.degrees((region[1] + region[3]) / 2)), 0.0)


def _union(regions: list[list[float]]) -> list[float]:
    r = np.array(regions)
    return [float(r[:, 0].min()), float(r[:, 1].min()), float(r[:, 2].max()), float(r[:, 3].max()),
            float(r[:, 4].min()), float(r[:, 5].max())]


def tileset_json(root: Node, index, *, ext: str = "glb", version: str = "", max_extra: dict | None = None) -> dict:
    """The tileset document; sets ``region`` on every node (leaves from the index)."""

    def visit(node: Node) -> dict:
        if not node.children:
            m = node.members
            node.region = leaf_region(index.bbox[m], index.zmin[m], index.zmax[m])
            return {"boundingVolume": {"region": node.region}, "geometricError": 0.0,
                    "transform": frame_of(node.region).transform(),
                    "content": {"uri": f"content/{node.key}.{ext}"}}
        kids = [visit(c) for c in sorted(node.children, key=lambda c: (c.x, c.y))]
        node.region = _union([k["boundingVolume"]["region"] for k in kids])
        return {"boundingVolume": {"region": node.region}, "geometricError": 0.0, "refine": "ADD",
                "children": kids}

    body = visit(root) if (root.children or (root.members is not None and len(root.members))) else None
    if body is None:
        raise ValueError("empty layer")
    reg = body["boundingVolume"]["region"]
    lat = (reg[1] + reg[3]) / 2
    diag = float(np.hypot((reg[2] - reg[0]) * np.cos(lat), reg[3] - reg[1]) * 6_378_137.0)
    root_error = max(diag / 16.0, 20.0)

    def errors(tile: dict, level: int) -> None:
        if "children" in tile:
            tile["geometricError"] = root_error / 2 ** level
            for c in tile["children"]:
                errors(c, level + 1)

    errors(body, 0)
    body["refine"] = "ADD"
    doc: dict[str, Any] = {"asset": {"version": "1.1", "generator": "cim-onemap"}, "geometricError": root_error * 2,
                           "root": body}
    if version:
        doc["asset"]["tilesetVersion"] = version
    if max_extra:
        doc["extras"] = max_extra
    return doc


def find(root: Node, key: str) -> Node | None:
    """The leaf with key ``level/x/y``."""
    try:
        level, x, y = (int(v) for v in key.split("/"))
    except ValueError:
        return None
    node = root
    while node.level < level:
        shift = level - node.level - 1
        qx, qy = (x >> shift) & 1, (y >> shift) & 1
        child = next((c for c in node.children if c.x == node.x * 2 + qx and c.y == node.y * 2 + qy), None)
        if child is None:
            return None
        node = child
    return node if (node.level, node.x, node.y) == (level, x, y) and not node.children else None
