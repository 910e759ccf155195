"""Folder builds of both 3D layers: valid glTF, valid tileset, correct placement and heights."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tiles.threed.build import build_folder, plan
from tiles3d.checks import (
    b3dm_problems,
    content_in_region,
    glb_alignment_problems,
    parse_glb,
    positions,
    property_table_problems,
    read_strings,
    tileset_problems,
    walk,
)
from tiles3d.conftest import validate_gltf


@pytest.fixture(scope="module")
def built(t3d_url, tmp_path_factory):
    out = tmp_path_factory.mktemp("t3d-build")
    stats = {layer: build_folder(t3d_url, layer, out / layer, workers=2, per_tile=60) for layer in ("buildings", "pipelines")}
    return out, stats


def test_every_feature_in_exactly_one_tile(built, t3d_conn):
    out, stats = built
    with t3d_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM cim.building WHERE is_current")
        buildings = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM cim.pipe_segment WHERE is_current")
        segments = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM cim.pipe_point WHERE is_current AND (appurtenance IS NOT NULL "
                    "OR node_type IS NOT NULL OR well_depth IS NOT NULL OR invert_z IS NOT NULL)")
        points = cur.fetchone()[0]
    assert stats["buildings"]["features"] == buildings == 261
    assert stats["pipelines"]["features"] == segments + points
    ids = []
    for path in (out / "buildings" / "content").rglob("*.glb"):
        gltf, binary = parse_glb(path.read_bytes())
        table = gltf["extensions"]["EXT_structural_metadata"]["propertyTables"][0]
        view = gltf["bufferViews"][table["properties"]["id"]["values"]]
        ids += np.frombuffer(binary, "<u4", table["count"], view["byteOffset"]).tolist()
    assert len(ids) == len(set(ids)) == buildings
    assert stats["buildings"]["tiles"] > 1, "max_features_per_tile must split the seeded buildings"


def test_gltf_validator_zero_errors(built):
    out, _ = built
    files = sorted(out.rglob("*.glb"))
    assert len(files) >= 3
    reports = validate_gltf(files)
    bad = [r for r in reports if r["errors"]]
    assert not bad, json.dumps(bad[:3], ensure_ascii=False, indent=1)
    assert len(reports) == len(files)
    for f in files:
        data = f.read_bytes()
        assert glb_alignment_problems(data) == []
        gltf, _ = parse_glb(data)
        assert all(v["byteOffset"] % 8 == 0 for v in gltf["bufferViews"])
        for prim in gltf["meshes"][0]["primitives"]:
            counts = {gltf["accessors"][a]["count"] for a in prim["attributes"].values()}
            assert len(counts) == 1, "accessor counts of a primitive must be equal"
            fids = prim["extensions"]["EXT_mesh_features"]["featureIds"]
            assert fids[0]["attribute"] == 0 and "_FEATURE_ID_0" in prim["attributes"]


def test_property_tables_have_exact_lengths_and_one_class_per_layer(built):
    """Every content's property tables pass the EXT_structural_metadata layout rules (the 3D Tiles
    validator's METADATA_INVALID_LENGTH among them); a STRING column empty for every feature of a tile
    is left out of that tile's table, and each class is declared identically in every content."""
    out, _ = built
    omitted = 0
    for layer in ("buildings", "pipelines"):
        classes: dict[str, dict] = {}
        for path in sorted((out / layer / "content").rglob("*.glb")):
            gltf, binary = parse_glb(path.read_bytes())
            assert property_table_problems(gltf, binary) == [], path
            meta = gltf["extensions"]["EXT_structural_metadata"]
            for name, cls in meta["schema"]["classes"].items():
                assert cls == classes.setdefault(name, cls), (path, name)
                assert not any(p.get("required") for p in cls["properties"].values())
            for table in meta["propertyTables"]:
                declared = meta["schema"]["classes"][table["class"]]["properties"]
                for name in set(declared) - set(table["properties"]):
                    assert declared[name] == {**declared[name], "type": "STRING", "default": ""}
                    assert read_strings(gltf, binary, table, name) == [""] * table["count"]
                    omitted += 1
        assert set(classes) == ({"building"} if layer == "buildings" else {"pipe_segment", "pipe_point"})
    assert omitted > 0, "the seed must give some tile a STRING column that is empty for all its features"


def test_tileset_rules_and_placement(built):
    out, _ = built
    for layer in ("buildings", "pipelines"):
        doc = json.loads((out / layer / "tileset.json").read_text())
        assert tileset_problems(doc) == []
        assert doc["root"]["refine"] == "ADD"
        contents = [t for t, _, _ in walk(doc["root"]) if "content" in t]
        assert contents
        for tile in contents:
            gltf, binary = parse_glb((out / layer / tile["content"]["uri"]).read_bytes())
            for pts in positions(gltf, binary):
                assert content_in_region(tile, pts), f"{layer} {tile['content']['uri']} outside its region"


def test_pipes_below_ground_and_buildings_on_dem(built):
    out, _ = built
    pipes = json.loads((out / "pipelines" / "tileset.json").read_text())
    assert pipes["root"]["boundingVolume"]["region"][4] < 48.0   # invert 47 m, wells to ~47.5
    assert pipes["root"]["boundingVolume"]["region"][5] <= 53.0  # ground ≤ 51.8 plus markers
    blds = json.loads((out / "buildings" / "tileset.json").read_text())
    lo, hi = blds["root"]["boundingVolume"]["region"][4:6]
    assert 49.0 < lo < 56.0 and hi > lo + 40   # DEM 50–60 m (or stored 52.5 m), tallest ~ 18 × 3.9 m


def test_heights_follow_the_rules(t3d_conn):
    p = plan(t3d_conn, "buildings")
    idx = p.index
    with t3d_conn.cursor() as cur:
        cur.execute("SELECT id, height_m, floors_above, use_code, ground_z FROM cim.building WHERE is_current")
        rows = {r[0]: r for r in cur.fetchall()}
    storey = {"ZZ": 3.0, "ZZ-DL": 3.0, "JY": 3.6, "YL": 3.9, "BG": 3.6, "SC": 5.0}
    for i, fid in enumerate(idx.ids.tolist()):
        _, height, floors, use, ground = rows[fid]
        h = idx.params["top"][i] - idx.params["base"][i]
        if height:
            assert h == pytest.approx(height)
        elif floors:
            assert h == pytest.approx(floors * storey.get(use, 3.0))
        else:
            assert h == pytest.approx(3.0)
        if ground is not None:
            assert idx.params["base"][i] == pytest.approx(ground)
        else:
            assert 50.0 <= idx.params["base"][i] <= 60.0          # sampled from the DEM slope


def test_pipe_centre_line_from_z_ref(t3d_conn):
    p = plan(t3d_conn, "pipelines")
    idx = p.index
    seg = idx.kind == 0
    with t3d_conn.cursor() as cur:
        cur.execute("SELECT s.id, s.start_z, s.start_depth, s.z_ref, s.diameter_mm, s.height_mm, a.ground_z "
                    "FROM cim.pipe_segment s JOIN cim.pipe_point a ON a.id = s.start_point_id")
        rows = {r[0]: r for r in cur.fetchall()}
    for i in np.nonzero(seg)[0]:
        _, start_z, depth, z_ref, dia, hei, ground = rows[int(idx.ids[i])]
        half = (dia or hei) / 2000.0
        ref = start_z if start_z is not None else (ground - depth if depth is not None else None)
        if ref is None:
            expected = ground - 1.0 - half
        else:
            expected = {"top": ref - half, "invert": ref + half, "centre": ref}[z_ref]
        assert idx.params["z0"][i] == pytest.approx(expected)


def test_b3dm_layout(t3d_url, tmp_path):
    stats = build_folder(t3d_url, "buildings", tmp_path / "b", workers=1, fmt="b3dm", per_tile=60)
    files = sorted((tmp_path / "b").rglob("*.b3dm"))
    assert len(files) == stats["tiles"] > 0
    for f in files:
        assert b3dm_problems(f.read_bytes()) == []
    reports = validate_gltf(files)
    assert all(r["errors"] == 0 for r in reports), reports[:2]


def test_property_tables_carry_the_database_values(built, t3d_conn):
    out, _ = built
    path = sorted((out / "buildings" / "content").rglob("*.glb"))[0]
    gltf, binary = parse_glb(path.read_bytes())
    meta = gltf["extensions"]["EXT_structural_metadata"]
    table = meta["propertyTables"][0]
    cls = meta["schema"]["classes"][table["class"]]["properties"]
    assert cls["height_m"]["noData"] == -9999.0 and cls["code"]["type"] == "STRING"
    view = gltf["bufferViews"][table["properties"]["id"]["values"]]
    ids = np.frombuffer(binary, "<u4", table["count"], view["byteOffset"]).tolist()
    codes = read_strings(gltf, binary, table, "code")
    uses = read_strings(gltf, binary, table, "use_code_zh")
    hv = gltf["bufferViews"][table["properties"]["height_m"]["values"]]
    heights = np.frombuffer(binary, "<f8", table["count"], hv["byteOffset"])
    with t3d_conn.cursor() as cur:
        cur.execute("SELECT b.id, b.code, coalesce(u.name_zh, ''), coalesce(b.height_m, -9999) FROM cim.building b "
                    "LEFT JOIN cim.dict_building_use u ON u.code = b.use_code WHERE b.id = ANY(%s)", (ids,))
        db = {r[0]: r[1:] for r in cur.fetchall()}
    for i, fid in enumerate(ids):
        assert (codes[i], uses[i]) == db[fid][:2]
        assert heights[i] == pytest.approx(db[fid][2])


def test_triangles_face_outwards(built):
    out, _ = built
    for path in sorted(out.rglob("*.glb"))[:6]:
        gltf, binary = parse_glb(path.read_bytes())
        for prim in gltf["meshes"][0]["primitives"]:
            acc = gltf["accessors"]
            pos = positions({"meshes": [{"primitives": [prim]}], "accessors": acc,
                             "bufferViews": gltf["bufferViews"]}, binary)[0]
            na = acc[prim["attributes"]["NORMAL"]]
            nor = np.frombuffer(binary, "<f4", na["count"] * 3, gltf["bufferViews"][na["bufferView"]]["byteOffset"])
            nor = nor.reshape(-1, 3)
            ia = acc[prim["indices"]]
            dtype = "<u2" if ia["componentType"] == 5123 else "<u4"
            tri = np.frombuffer(binary, dtype, ia["count"], gltf["bufferViews"][ia["bufferView"]]["byteOffset"])
            tri = tri.reshape(-1, 3).astype(np.int64)
            a, b, c = pos[tri[:, 0]], pos[tri[:, 1]], pos[tri[:, 2]]
            geo = np.cross(b - a, c - a)
            big = np.linalg.norm(geo, axis=1) > 1e-6
            agree = np.einsum("ij,ij->i", geo, nor[tri[:, 0]] + nor[tri[:, 1]] + nor[tri[:, 2]])
            assert (agree[big] > 0).all()
            assert np.allclose(np.linalg.norm(nor, axis=1), 1.0, atol=1e-5)
