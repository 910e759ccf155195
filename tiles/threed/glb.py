"""glTF 2.0 binary (GLB) writer for 3D Tiles 1.1 contents, and the 3D Tiles 1.0 b3dm wrapper.

One GLB holds one mesh; each :class:`Primitive` is a triangle list with POSITION, NORMAL,
COLOR_0 (normalised unsigned bytes) and ``_FEATURE_ID_0``; indices are UNSIGNED_SHORT or
UNSIGNED_INT. Per-feature attributes travel in an EXT_structural_metadata property table (one
per primitive) referenced from EXT_mesh_features. The rules the Khronos validator and the
3D Tiles specification check are kept here:

- every accessor of a primitive has the same count; POSITION has exact min/max (glTF 2.0
  §3.7.2.1 / §5.1);
- bufferView offsets are 8-byte aligned (EXT_structural_metadata requires 8 for property
  tables; vertex attributes need 4); the JSON chunk is padded with spaces and the BIN chunk with
  zeros to a multiple of 4 (GLB §4.4); the whole GLB length is a multiple of 8 so it can sit in a
  b3dm unchanged;
- a property's ``values`` bufferView is exactly as long as its data (count × size, or the last
  string offset), and a bufferView is at least 1 byte long (glTF 2.0). A STRING column that is
  empty for every feature of a primitive therefore has no valid encoding: it is left out of that
  property table. The class still declares it, never ``required`` and with ``default: ""``, so
  every tile of a layer has the same class and a client reads "" for an omitted property as for
  an empty one (EXT_structural_metadata: "a default value to use when encountering ... an
  omitted property");
- b3dm (3D Tiles 1.0): 28-byte header, feature table JSON with ``BATCH_LENGTH``, batch table
  JSON, every section padded so the next starts on an 8-byte boundary.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

import numpy as np

ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
FLOAT, UBYTE, USHORT, UINT = 5126, 5121, 5123, 5125

# Property types of the property tables: our column kind → (EXT_structural_metadata type, componentType,
# numpy dtype, noData). Nulls are written as noData (declared in the schema).
_NUMERIC = {
    "float": ("SCALAR", "FLOAT64", "<f8", -9999.0),
    "int": ("SCALAR", "INT32", "<i4", -2147483648),
    "bool": ("SCALAR", "UINT8", "u1", 255),
    "id": ("SCALAR", "UINT32", "<u4", None),
}


@dataclass
class Column:
    """One property of a property table: name, kind (text, float, int, bool, id) and values."""

    name: str
    kind: str
    values: list | np.ndarray
    description: str | None = None


@dataclass
class Primitive:
    """A triangle list with per-vertex feature ids and the property table of its features."""

    positions: np.ndarray          # (n, 3) float32, glTF axes (y up)
    normals: np.ndarray            # (n, 3) float32 unit vectors
    colors: np.ndarray             # (n, 4) uint8 RGBA
    feature_ids: np.ndarray        # (n,) feature index 0..feature_count-1
    indices: np.ndarray            # (m,) triangle vertex indices
    class_name: str
    columns: list[Column] = field(default_factory=list)
    feature_count: int = 0


class _Bin:
    """Binary chunk builder with aligned bufferViews."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.views: list[dict] = []

    def add(self, data: bytes, target: int | None = None, align: int = 8) -> int:
        if not data:   # glTF 2.0: bufferView.byteLength ≥ 1; padding it would misstate the data's length
            raise ValueError("empty bufferView")
        pad = (-self.size) % align
        if pad:
            self.parts.append(b"\0" * pad)
            self.size += pad
        view = {"buffer": 0, "byteOffset": self.size, "byteLength": len(data)}
        if target:
            view["target"] = target
        self.parts.append(data)
        self.size += len(data)
        self.views.append(view)
        return len(self.views) - 1

    def payload(self) -> bytes:
        data = b"".join(self.parts)
        return data + b"\0" * ((-len(data)) % 8)


def _property_table(bin_: _Bin, prim: Primitive, class_props: dict) -> dict:
    """Write a property table's columns into the buffer and describe them in the schema class."""
    props: dict = {}
    for col in prim.columns:
        if col.kind == "text":
            encoded = [("" if v is None else str(v)).encode("utf-8") for v in col.values]
            class_props[col.name] = {"type": "STRING", "default": ""}
            data = b"".join(encoded)
            if data:   # all empty (or null): omitted from the table, read as the default ""
                offsets = np.zeros(len(encoded) + 1, dtype="<u4")
                offsets[1:] = np.cumsum([len(b) for b in encoded], dtype=np.int64)
                props[col.name] = {"values": bin_.add(data), "stringOffsets": bin_.add(offsets.tobytes()),
                                   "stringOffsetType": "UINT32"}
        else:
            type_, comp, dtype, nodata = _NUMERIC[col.kind]
            if isinstance(col.values, np.ndarray):
                arr = col.values.astype(dtype)
            else:  # None → noData in one vectorised pass (float64 holds every int32 exactly)
                raw = np.array(col.values, dtype="f8") if col.values else np.zeros(0)
                arr = np.where(np.isnan(raw), nodata, raw).astype(dtype)
            view = bin_.add(arr.tobytes())
            desc = {"type": type_, "componentType": comp}
            if nodata is not None:
                desc["noData"] = nodata
            class_props[col.name] = desc
            props[col.name] = {"values": view}
        if col.description:
            class_props[col.name]["description"] = col.description
    return props


def _accessor(accessors: list, view: int, comp: int, count: int, type_: str, **extra) -> int:
    accessors.append({"bufferView": view, "componentType": comp, "count": int(count), "type": type_, **extra})
    return len(accessors) - 1


def build_glb(primitives: list[Primitive], *, metadata: bool = True, batch_attribute: str = "_FEATURE_ID_0",
              generator: str = "cim-onemap") -> bytes:
    """Encode primitives as one GLB (glTF 2.0 binary).

    With ``metadata`` the features carry EXT_mesh_features ids and EXT_structural_metadata
    property tables (3D Tiles 1.1). Without it the feature ids are written as ``batch_attribute``
    (``_BATCHID`` for b3dm) and the attributes belong in the b3dm batch table.
    """
    if not primitives:
        return _empty_glb(generator)
    bin_ = _Bin()
    accessors: list[dict] = []
    gl_prims: list[dict] = []
    classes: dict = {}
    tables: list[dict] = []
    materials: list[dict] = []
    for prim in primitives:
        n = len(prim.positions)
        pos = np.ascontiguousarray(prim.positions, dtype="<f4")
        nor = np.ascontiguousarray(prim.normals, dtype="<f4")
        col = np.ascontiguousarray(prim.colors, dtype="u1")
        fid = np.ascontiguousarray(prim.feature_ids, dtype="<f4")
        idx_type, idx_dtype = (USHORT, "<u2") if n < 65536 else (UINT, "<u4")
        idx = np.ascontiguousarray(prim.indices, dtype=idx_dtype)
        a_pos = _accessor(accessors, bin_.add(pos.tobytes(), ARRAY_BUFFER), FLOAT, n, "VEC3",
                          min=[float(v) for v in pos.min(axis=0)], max=[float(v) for v in pos.max(axis=0)])
        a_nor = _accessor(accessors, bin_.add(nor.tobytes(), ARRAY_BUFFER), FLOAT, n, "VEC3")
        a_col = _accessor(accessors, bin_.add(col.tobytes(), ARRAY_BUFFER), UBYTE, n, "VEC4", normalized=True)
        a_fid = _accessor(accessors, bin_.add(fid.tobytes(), ARRAY_BUFFER), FLOAT, n, "SCALAR")
        a_idx = _accessor(accessors, bin_.add(idx.tobytes(), ELEMENT_ARRAY_BUFFER), idx_type, len(idx), "SCALAR")
        materials.append({"pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1], "metallicFactor": 0.0,
                                                   "roughnessFactor": 0.9}})
        gl_prim = {"attributes": {"POSITION": a_pos, "NORMAL": a_nor, "COLOR_0": a_col, batch_attribute: a_fid},
                   "indices": a_idx, "material": len(materials) - 1, "mode": 4}
        if metadata:
            class_props: dict = {}
            table = {"class": prim.class_name, "count": int(prim.feature_count),
                     "properties": _property_table(bin_, prim, class_props)}
            classes[prim.class_name] = {"properties": class_props}
            tables.append(table)
            gl_prim["extensions"] = {"EXT_mesh_features": {"featureIds": [
                {"featureCount": int(prim.feature_count), "attribute": 0, "propertyTable": len(tables) - 1}]}}
        gl_prims.append(gl_prim)
    payload = bin_.payload()
    gltf: dict = {
        "asset": {"version": "2.0", "generator": generator},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": gl_prims}], "materials": materials,
        "accessors": accessors, "bufferViews": bin_.views, "buffers": [{"byteLength": len(payload)}],
    }
    if metadata:
        gltf["extensionsUsed"] = ["EXT_mesh_features", "EXT_structural_metadata"]
        gltf["extensions"] = {"EXT_structural_metadata": {
            "schema": {"id": "cim", "classes": classes}, "propertyTables": tables}}
    js = json.dumps(gltf, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    # Pad the JSON chunk (spaces, a multiple of 4) so that the BIN data, at 28 + len(json), starts on an
    # 8-byte boundary and the whole GLB is a multiple of 8 bytes long (FLOAT64 property columns).
    js += b" " * ((4 - len(js)) % 8)
    total = 12 + 8 + len(js) + 8 + len(payload)
    return b"".join([struct.pack("<4sII", b"glTF", 2, total), struct.pack("<I4s", len(js), b"JSON"), js,
                     struct.pack("<I4s", len(payload), b"BIN\0"), payload])


def _empty_glb(generator: str) -> bytes:
    """A valid glTF without geometry (every feature of a tile was degenerate): JSON chunk only."""
    js = json.dumps({"asset": {"version": "2.0", "generator": generator}, "scene": 0, "scenes": [{}]},
                    separators=(",", ":")).encode()
    js += b" " * ((4 - len(js)) % 8)
    return struct.pack("<4sII", b"glTF", 2, 20 + len(js)) + struct.pack("<I4s", len(js), b"JSON") + js


def build_b3dm(primitives: list[Primitive]) -> bytes:
    """3D Tiles 1.0 Batched 3D Model: feature table with BATCH_LENGTH, batch table, embedded GLB.

    All primitives must share one feature numbering (the batch); the batch table is the columns
    of the first primitive. Sections are padded to 8 bytes (3D Tiles 1.0 b3dm §Padding).
    """
    glb = build_glb(primitives, metadata=False, batch_attribute="_BATCHID")
    glb += b"\0" * ((-len(glb)) % 8)
    first = primitives[0] if primitives else Primitive(*([np.zeros(0)] * 5), class_name="none")
    batch_length = int(first.feature_count)
    ft = json.dumps({"BATCH_LENGTH": batch_length}, separators=(",", ":")).encode()
    bt_obj = {c.name: [None if (isinstance(v, float) and v != v) else
                       (v.item() if hasattr(v, "item") else v) for v in c.values] for c in first.columns}
    bt = json.dumps(bt_obj, ensure_ascii=False, separators=(",", ":")).encode()
    ft += b" " * ((-(28 + len(ft))) % 8)
    bt += b" " * ((-(28 + len(ft) + len(bt))) % 8)
    total = 28 + len(ft) + len(bt) + len(glb)
    header = struct.pack("<4sIIIIII", b"b3dm", 1, total, len(ft), 0, len(bt), 0)
    return header + ft + bt + glb
