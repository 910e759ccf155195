"""The GLB/b3dm writer on its own: empty contents stay valid, layouts are aligned, property tables
have the exact byte lengths the 3D Tiles validator checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tiles.threed.geometry import CIRCLE, Frame, Mesh, tubes
from tiles.threed.glb import Column, Primitive, build_b3dm, build_glb
from tiles3d.checks import b3dm_problems, glb_alignment_problems, parse_glb, property_table_problems, read_strings
from tiles3d.conftest import validate_gltf


def test_empty_content_is_valid(tmp_path):
    glb = build_glb([])
    assert glb[:4] == b"glTF" and len(glb) % 8 == 0
    assert json.loads(glb[20:])["asset"]["version"] == "2.0"
    (tmp_path / "e.glb").write_bytes(glb)
    (tmp_path / "e.b3dm").write_bytes(build_b3dm([]))
    reports = validate_gltf([tmp_path / "e.glb", tmp_path / "e.b3dm"])
    assert [r["errors"] for r in reports] == [0, 0]
    assert b3dm_problems((tmp_path / "e.b3dm").read_bytes()) == []


def test_one_tube_with_nulls_in_every_column_kind(tmp_path):
    frame = Frame(111.5, 27.2)
    p0 = frame.enu([111.5], [27.2], [48.0])
    p1 = frame.enu([111.5003], [27.2001], [47.5])
    mesh = Mesh()
    tubes(mesh, p0, p1, np.array([0.15]), np.array([0.15]), CIRCLE, np.array([[255, 0, 255, 255]], "u1"),
          np.array([0]))
    cols = [Column("id", "id", np.array([7], "u4")), Column("name", "text", [None]),
            Column("d", "float", [None]), Column("n", "int", [None]), Column("b", "bool", [None])]
    glb = build_glb([Primitive(*mesh.arrays(), "pipe_segment", cols, 1)])
    assert glb_alignment_problems(glb) == []
    gltf, _ = parse_glb(glb)
    props = gltf["extensions"]["EXT_structural_metadata"]["schema"]["classes"]["pipe_segment"]["properties"]
    assert props["n"]["noData"] == -2147483648 and props["b"]["noData"] == 255
    assert property_table_problems(gltf, _) == []
    (tmp_path / "t.glb").write_bytes(glb)
    assert validate_gltf([tmp_path / "t.glb"])[0]["errors"] == 0


def _two_tubes() -> Mesh:
    frame = Frame(111.5, 27.2)
    p0 = frame.enu([111.5, 111.5002], [27.2, 27.2], [48.0, 48.0])
    p1 = frame.enu([111.5003, 111.5005], [27.2001, 27.2001], [47.5, 47.5])
    mesh = Mesh()
    tubes(mesh, p0, p1, np.array([0.15, 0.1]), np.array([0.15, 0.1]), CIRCLE,
          np.array([[255, 0, 255, 255], [0, 0, 255, 255]], "u1"), np.array([0, 1]))
    return mesh


def _table(glb: bytes) -> tuple[dict, bytes, dict, dict]:
    gltf, binary = parse_glb(glb)
    meta = gltf["extensions"]["EXT_structural_metadata"]
    table = meta["propertyTables"][0]
    return gltf, binary, table, meta["schema"]["classes"][table["class"]]["properties"]


def test_string_column_empty_for_every_feature_is_left_out_of_the_table(tmp_path):
    """No values bufferView can hold 0 bytes (glTF: byteLength ≥ 1) and the 3D Tiles validator wants the
    values view exactly as long as the last string offset: an all-empty STRING column is omitted from
    the tile's property table; the class still declares it (not required, default "")."""
    mesh = _two_tubes()
    cols = [Column("id", "id", np.array([7, 8], "u4")), Column("name", "text", ["甲", None]),
            Column("note", "text", ["", ""]), Column("remark", "text", [None, None]),
            Column("mixed", "text", ["", None]), Column("d", "float", [1.5, None])]
    glb = build_glb([Primitive(*mesh.arrays(), "pipe_segment", cols, 2)])
    gltf, binary, table, cls = _table(glb)
    assert property_table_problems(gltf, binary) == []
    assert set(table["properties"]) == {"id", "name", "d"}
    for name in ("name", "note", "remark", "mixed"):
        assert cls[name] == {"type": "STRING", "default": ""}     # never "required"
    assert read_strings(gltf, binary, table, "name") == ["甲", ""]
    assert read_strings(gltf, binary, table, "note") == read_strings(gltf, binary, table, "remark") == ["", ""]
    # the written name column: values view exactly 3 bytes (甲 in UTF-8), offsets 0, 3, 3
    name = table["properties"]["name"]
    assert gltf["bufferViews"][name["values"]]["byteLength"] == 3
    offs = gltf["bufferViews"][name["stringOffsets"]]
    assert np.frombuffer(binary, "<u4", 3, offs["byteOffset"]).tolist() == [0, 3, 3]
    assert all(v["byteLength"] >= 1 for v in gltf["bufferViews"])
    (tmp_path / "empty-strings.glb").write_bytes(glb)
    assert validate_gltf([tmp_path / "empty-strings.glb"])[0]["errors"] == 0

    # a tile where the same columns have values declares the very same class
    cols2 = [Column("id", "id", np.array([9, 10], "u4")), Column("name", "text", ["乙", "丙"]),
             Column("note", "text", ["x", ""]), Column("remark", "text", [None, "备注"]),
             Column("mixed", "text", ["", "y"]), Column("d", "float", [None, 2.0])]
    gltf2, binary2, table2, cls2 = _table(build_glb([Primitive(*mesh.arrays(), "pipe_segment", cols2, 2)]))
    assert cls2 == cls
    assert property_table_problems(gltf2, binary2) == []
    assert set(table2["properties"]) == {"id", "name", "note", "remark", "mixed", "d"}
    assert read_strings(gltf2, binary2, table2, "remark") == ["", "备注"]


def test_property_table_problems_flags_a_padded_empty_string_column():
    """The rule check itself: the layout the 3D Tiles validator rejected (a 1-byte values view where the
    offsets say 0 bytes) is reported."""
    mesh = _two_tubes()
    glb = build_glb([Primitive(*mesh.arrays(), "pipe_segment",
                               [Column("id", "id", np.array([1, 2], "u4")), Column("s", "text", ["ab", ""])], 2)])
    gltf, binary, table, _cls = _table(glb)
    assert property_table_problems(gltf, binary) == []
    prop = table["properties"]["s"]
    offs = gltf["bufferViews"][prop["stringOffsets"]]
    zeros = bytearray(binary)
    zeros[offs["byteOffset"]:offs["byteOffset"] + 12] = np.zeros(3, "<u4").tobytes()   # offsets 0, 0, 0
    problems = property_table_problems(gltf, bytes(zeros))
    assert problems == ["table 0 property 's': values byteLength 2 != last string offset 0"]
    del table["properties"]["id"]
    gltf["extensions"]["EXT_structural_metadata"]["schema"]["classes"]["pipe_segment"]["properties"]["id"]["required"] = True
    assert "table 0: required property 'id' missing" in property_table_problems(gltf, binary)


def test_empty_buffer_view_is_refused():
    """A zero-length bufferView is invalid glTF; the writer refuses it rather than padding it to 1 byte."""
    from tiles.threed.glb import _Bin

    with pytest.raises(ValueError, match="empty bufferView"):
        _Bin().add(b"")
