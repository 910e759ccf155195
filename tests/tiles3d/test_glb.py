"""The GLB/b3dm writer on its own: empty contents stay valid, layouts are aligned."""

from __future__ import annotations

import json

import numpy as np

from tiles.threed.geometry import CIRCLE, Frame, Mesh, tubes
from tiles.threed.glb import Column, Primitive, build_b3dm, build_glb
from tiles3d.checks import b3dm_problems, glb_alignment_problems, parse_glb
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
    (tmp_path / "t.glb").write_bytes(glb)
    assert validate_gltf([tmp_path / "t.glb"])[0]["errors"] == 0
