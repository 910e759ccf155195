"""3D Tiles 1.1 tileset and content rules, written in Python.

The checks are the ones py3dtiles's PostGIS export failed (reference/peers.md §6), the
structural rules of the 3D Tiles 1.1 schema the builder relies on, and the binary layout rules
of EXT_structural_metadata property tables that the CesiumGS 3d-tiles-validator checks
(``METADATA_INVALID_LENGTH``, ``METADATA_INVALID_ALIGNMENT``, offsets). That validator builds
from its source only, so the suite cannot run it; ``bench/tiles3d/validate.py`` runs it over
full builds.
"""

from __future__ import annotations

import json
import struct

import numpy as np
from pyproj import Transformer

_TO_ECEF = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)
_TO_GEO = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True)


def walk(tile: dict, depth: int = 0, parent: dict | None = None):
    """Yield (tile, depth, parent) for every tile of a tree."""
    yield tile, depth, parent
    for child in tile.get("children", []):
        yield from walk(child, depth + 1, tile)


def region_contains(outer: list[float], inner: list[float], eps: float = 1e-9) -> bool:
    """True when region ``inner`` lies inside ``outer`` (radians and metres)."""
    return (outer[0] - eps <= inner[0] and outer[1] - eps <= inner[1] and inner[2] <= outer[2] + eps
            and inner[3] <= outer[3] + eps and outer[4] - 1e-6 <= inner[4] and inner[5] <= outer[5] + 1e-6)


def tileset_problems(doc: dict) -> list[str]:
    """Every violation of the tileset rules found in a tileset document."""
    out = []
    if doc.get("asset", {}).get("version") not in ("1.0", "1.1"):
        out.append("asset.version must be 1.0 or 1.1")
    root = doc.get("root") or {}
    if "refine" not in root:
        out.append("root.refine is required")
    if doc.get("geometricError", -1) < root.get("geometricError", 0):
        out.append("tileset geometricError below root's")
    for tile, _depth, parent in walk(root):
        ref = tile.get("refine")
        if ref is not None and ref not in ("ADD", "REPLACE"):
            out.append(f"refine must be ADD or REPLACE in capitals, got {ref!r}")
        if "children" in tile and not tile["children"]:
            out.append("empty children array")
        ge = tile.get("geometricError")
        if ge is None or ge < 0:
            out.append("geometricError missing or negative")
        if parent is not None and ge > parent["geometricError"]:
            out.append(f"geometricError increases down the tree ({parent['geometricError']} → {ge})")
        bv = tile.get("boundingVolume", {})
        if "region" not in bv:
            out.append("boundingVolume.region expected")
            continue
        r = bv["region"]
        if not (r[0] <= r[2] and r[1] <= r[3] and r[4] <= r[5]):
            out.append(f"degenerate region {r}")
        if parent is not None and not region_contains(parent["boundingVolume"]["region"], r):
            out.append(f"child region not inside parent: {r}")
        if "content" in tile and "uri" not in tile["content"]:
            out.append("content without uri")
        if "transform" in tile and len(tile["transform"]) != 16:
            out.append("transform must have 16 numbers")
    return out


def parse_glb(data: bytes) -> tuple[dict, bytes]:
    """JSON and BIN chunks of a GLB, checking header length and 4-byte chunk alignment."""
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert magic == b"glTF" and version == 2 and length == len(data)
    jlen, jtype = struct.unpack_from("<I4s", data, 12)
    assert jtype == b"JSON" and jlen % 4 == 0
    gltf = json.loads(data[20:20 + jlen])
    blen, btype = struct.unpack_from("<I4s", data, 20 + jlen)
    assert btype == b"BIN\0" and blen % 4 == 0
    return gltf, data[28 + jlen:28 + jlen + blen]


def positions(gltf: dict, binary: bytes) -> list[np.ndarray]:
    """POSITION arrays (glTF axes) of every primitive."""
    out = []
    for prim in gltf["meshes"][0]["primitives"]:
        acc = gltf["accessors"][prim["attributes"]["POSITION"]]
        view = gltf["bufferViews"][acc["bufferView"]]
        arr = np.frombuffer(binary, "<f4", acc["count"] * 3, view["byteOffset"]).reshape(-1, 3)
        out.append(arr)
    return out


def content_in_region(tile: dict, pts_gltf: np.ndarray, tol_m: float = 0.05) -> bool:
    """True when content vertices, placed by the tile transform, fall inside the tile's region."""
    m = np.array(tile["transform"]).reshape(4, 4).T
    enu = np.column_stack([pts_gltf[:, 0], -pts_gltf[:, 2], pts_gltf[:, 1]]).astype("f8")   # glTF y-up → z-up
    ecef = enu @ m[:3, :3].T + m[:3, 3]
    lon, lat, h = _TO_GEO.transform(ecef[:, 0], ecef[:, 1], ecef[:, 2])
    r = tile["boundingVolume"]["region"]
    tol = tol_m / 6_378_137.0
    return bool(np.all(np.radians(lon) >= r[0] - tol) and np.all(np.radians(lon) <= r[2] + tol)
                and np.all(np.radians(lat) >= r[1] - tol) and np.all(np.radians(lat) <= r[3] + tol)
                and np.all(h >= r[4] - tol_m) and np.all(h <= r[5] + tol_m))


def b3dm_problems(data: bytes) -> list[str]:
    """b3dm layout rules: header, 8-byte aligned sections, BATCH_LENGTH in the feature table."""
    out = []
    magic, version, length, ftj, ftb, btj, btb = struct.unpack_from("<4sIIIIII", data, 0)
    if magic != b"b3dm" or version != 1:
        out.append("bad b3dm header")
    if length != len(data):
        out.append("byteLength differs from the file length")
    offsets = [28 + ftj, 28 + ftj + ftb, 28 + ftj + ftb + btj, 28 + ftj + ftb + btj + btb]
    out += [f"section at {o} not 8-byte aligned" for o in offsets if o % 8]
    if len(data) % 8:
        out.append("file length not a multiple of 8")
    try:
        ft = json.loads(data[28:28 + ftj]) if ftj else {}
    except ValueError:
        ft = {}
        out.append("feature table JSON unreadable")
    if "BATCH_LENGTH" not in ft:
        out.append("feature table lacks BATCH_LENGTH")
    return out


def glb_alignment_problems(data: bytes) -> list[str]:
    """BIN data and total length of a GLB on 8-byte boundaries (FLOAT64 columns, b3dm embedding)."""
    jlen = struct.unpack_from("<I", data, 12)[0]
    out = []
    if (28 + jlen) % 8:
        out.append("BIN chunk data not 8-byte aligned")
    if len(data) % 8:
        out.append("GLB length not a multiple of 8")
    return out


_COMPONENT_BYTES = {"INT8": 1, "UINT8": 1, "INT16": 2, "UINT16": 2, "INT32": 4, "UINT32": 4, "INT64": 8,
                    "UINT64": 8, "FLOAT32": 4, "FLOAT64": 8}
_TYPE_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}


def property_table_problems(gltf: dict, binary: bytes) -> list[str]:
    """EXT_structural_metadata property-table layout rules (non-array properties).

    Every bufferView is at least 1 byte long (glTF 2.0); a property's ``values`` view is exactly
    count × component size (BOOLEAN: ⌈count / 8⌉), a STRING's ``stringOffsets`` view exactly
    (count + 1) × offset size, its offsets start at 0, never decrease and end at the ``values``
    view's byteLength, and the strings are UTF-8; views are aligned to their component size; every
    table property is declared by the class and every ``required`` class property is present.
    """
    out = [f"bufferView {i} has byteLength {v['byteLength']}" for i, v in enumerate(gltf.get("bufferViews", []))
           if v["byteLength"] < 1]
    meta = gltf.get("extensions", {}).get("EXT_structural_metadata")
    if not meta:
        return out
    views = gltf["bufferViews"]
    classes = meta["schema"]["classes"]
    for t, table in enumerate(meta.get("propertyTables", [])):
        cls = classes.get(table["class"], {}).get("properties")
        if cls is None:
            out.append(f"table {t}: class {table['class']!r} not in the schema")
            continue
        n = table["count"]
        props = table.get("properties", {})
        out += [f"table {t}: required property {name!r} missing" for name, cp in cls.items()
                if cp.get("required") and name not in props]
        for name, prop in props.items():
            where = f"table {t} property {name!r}"
            cp = cls.get(name)
            if cp is None:
                out.append(f"{where}: not declared by the class")
                continue
            if cp.get("array"):
                out.append(f"{where}: array properties are not checked here")
                continue
            values = views[prop["values"]]
            if cp["type"] == "STRING":
                kind = prop.get("stringOffsetType", "UINT32")
                size = _COMPONENT_BYTES[kind]
                offs_view = views[prop["stringOffsets"]]
                if offs_view["byteLength"] != (n + 1) * size:
                    out.append(f"{where}: stringOffsets byteLength {offs_view['byteLength']} != {(n + 1) * size}")
                    continue
                if offs_view["byteOffset"] % size:
                    out.append(f"{where}: stringOffsets misaligned")
                dtype = {"UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8"}[kind]
                offs = np.frombuffer(binary, dtype, n + 1, offs_view["byteOffset"]).astype(np.int64)
                if offs[0] != 0 or np.any(np.diff(offs) < 0):
                    out.append(f"{where}: string offsets do not start at 0 and increase")
                if offs[-1] != values["byteLength"]:
                    out.append(f"{where}: values byteLength {values['byteLength']} != last string offset {offs[-1]}")
                    continue
                try:
                    binary[values["byteOffset"]:values["byteOffset"] + values["byteLength"]].decode("utf-8")
                except UnicodeDecodeError:
                    out.append(f"{where}: strings are not UTF-8")
            elif cp["type"] == "BOOLEAN":
                if values["byteLength"] != (n + 7) // 8:
                    out.append(f"{where}: values byteLength {values['byteLength']} != {(n + 7) // 8}")
            else:
                size = _COMPONENT_BYTES[cp["componentType"]]
                expected = n * size * _TYPE_COMPONENTS[cp["type"]]
                if values["byteLength"] != expected:
                    out.append(f"{where}: values byteLength {values['byteLength']} != {expected}")
                if values["byteOffset"] % size:
                    out.append(f"{where}: values misaligned")
    return out


def read_strings(gltf: dict, binary: bytes, table: dict, name: str) -> list[str]:
    """A STRING property of a property table as a client reads it: the class default when omitted."""
    prop = table["properties"].get(name)
    if prop is None:
        cp = gltf["extensions"]["EXT_structural_metadata"]["schema"]["classes"][table["class"]]["properties"][name]
        return [cp["default"]] * table["count"]
    vals, offs = gltf["bufferViews"][prop["values"]], gltf["bufferViews"][prop["stringOffsets"]]
    o = np.frombuffer(binary, "<u4", table["count"] + 1, offs["byteOffset"])
    raw = binary[vals["byteOffset"]:vals["byteOffset"] + vals["byteLength"]]
    return [raw[o[i]:o[i + 1]].decode("utf-8") for i in range(table["count"])]
