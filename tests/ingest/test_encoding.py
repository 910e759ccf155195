"""Encodings: .cpg honoured, the DBF language byte never trusted, UTF-8 vs GBK detected from
the bytes, Chinese names in zips; no mojibake reaches the batches."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import (  # noqa: E402
    E0,
    LDID_CP1252,
    N0,
    dbf_language_byte,
    network,
    point_geoms,
    write_network_shapefiles,
    write_shapefile,
    zip_folder,
    zip_raw_names,
)

from cim.errors import UnreadableInput  # noqa: E402
from ingest.pipeline import read_delivery  # noqa: E402
from ingest.readers.encoding import dbf_encoding, detect_bytes, normalise_cpg, zip_member_name  # noqa: E402


def _chinese_point_frame():
    pts, _ = network(n_points=3)
    pts["所在道路"] = ["人民路", "建设路", "解放西路"]
    return pts


def test_gbk_with_lying_language_byte_and_no_cpg(tmp_path):
    pts = _chinese_point_frame()
    shp = write_shapefile(tmp_path, "YSPOINT", pts, point_geoms(pts), encoding="GBK")
    assert dbf_language_byte(shp.with_suffix(".dbf")) == LDID_CP1252
    assert not shp.with_suffix(".cpg").exists()
    choice = dbf_encoding(shp.with_suffix(".dbf"))
    assert choice.encoding == "GBK" and choice.reason == "detected" and choice.declared == "CP1252"
    d = read_delivery(shp)
    b = d.batches[0]
    assert b.field_map["exp_no"] == "物探点号" and b.field_map["road"] == "所在道路"   # Chinese field names
    assert list(b.frame["road"]) == ["人民路", "建设路", "解放西路"]                  # Chinese values
    assert b.encoding == "GBK"
    note = next(n for n in d.notes if n.topic == "encoding")
    assert "GBK" in note.message_zh and "CP1252" in note.message_en


def test_utf8_without_cpg_is_detected(tmp_path):
    pts = _chinese_point_frame()
    shp = write_shapefile(tmp_path, "YSPOINT", pts, point_geoms(pts), encoding="UTF-8", ldid=0)
    assert dbf_encoding(shp.with_suffix(".dbf")).encoding == "UTF-8"
    b = read_delivery(shp).batches[0]
    assert list(b.frame["road"]) == ["人民路", "建设路", "解放西路"]


def test_cpg_wins_over_the_bytes(tmp_path):
    pts = _chinese_point_frame()
    shp = write_shapefile(tmp_path, "YSPOINT", pts, point_geoms(pts), encoding="GBK", cpg=True)
    shp.with_suffix(".cpg").write_text("936")
    choice = dbf_encoding(shp.with_suffix(".dbf"))
    assert (choice.encoding, choice.reason) == ("GBK", "cpg")
    assert list(read_delivery(shp).batches[0].frame["road"])[0] == "人民路"
    shp.with_suffix(".cpg").write_text("KLINGON-42")
    with pytest.raises(UnreadableInput):
        dbf_encoding(shp.with_suffix(".dbf"))


@pytest.mark.parametrize(("text", "enc"), [("人民路", "GBK"), ("人民路", "UTF-8"), ("𠮷野家", "GB18030")])
def test_detect_bytes(text, enc):
    assert detect_bytes(text.encode(enc)) == enc


def test_ascii_is_undecided():
    assert detect_bytes(b"YS1 YS2") is None


@pytest.mark.parametrize(("cpg", "codec"), [("UTF-8", "UTF-8"), ("65001", "UTF-8"), ("936", "GBK"),
                                            ("ANSI 936", "GBK"), ("GB18030", "GB18030")])
def test_normalise_cpg(cpg, codec):
    assert normalise_cpg(cpg) == codec


def test_chinese_file_names_in_zip_without_utf8_flag(tmp_path):
    folder = tmp_path / "d"
    p, q = write_network_shapefiles(folder)
    for f in list(folder.iterdir()):               # rename to Chinese layer names: 雨水管点 / 雨水管线
        stem = "雨水管点" if f.stem == "YSPOINT" else "雨水管线"
        f.rename(f.with_name(stem + f.suffix))
    z = zip_folder(folder, tmp_path / "成果.zip", utf8_names=False)
    with zipfile.ZipFile(z) as zf:
        assert all(not (i.flag_bits & 0x800) for i in zf.infolist())
        raw = zf.infolist()[0].filename
    assert zip_member_name(raw, 0).startswith("雨水")
    d = read_delivery(z, county="430702")
    assert sorted(b.source_layer for b in d.batches) == ["雨水管点", "雨水管线"]
    assert {b.subtype for b in d.batches} == {"YS"}


def test_utf8_names_with_and_without_flag(tmp_path):
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("给水管点.csv", "物探点号,X,Y\nJS1,3214000,567000\n")   # zipfile sets the UTF-8 flag
    with zipfile.ZipFile(z) as zf:
        info = zf.infolist()[0]
    assert info.flag_bits & 0x800 and zip_member_name(info.filename, info.flag_bits) == "给水管点.csv"
    z2 = zip_raw_names(tmp_path / "b.zip", {"污水管点.csv".encode(): b"a,b\n1,2\n"})  # UTF-8 bytes, no flag
    with zipfile.ZipFile(z2) as zf:
        info = zf.infolist()[0]
    assert not info.flag_bits & 0x800
    assert zip_member_name(info.filename, info.flag_bits) == "污水管点.csv"


def test_gbk_csv(tmp_path):
    frame = pd.DataFrame({"灯杆编号": ["LD1"], "道路名称": ["人民路"], "X": [3214000.0], "Y": [567000.0]})
    frame.to_csv(tmp_path / "路灯.csv", index=False, encoding="gbk")
    d = read_delivery(tmp_path / "路灯.csv", county="430702")
    assert d.batches[0].frame["road_name"].tolist() == ["人民路"]


@pytest.mark.parametrize(("encoding", "collide"), [("GBK", False), ("UTF-8", False), ("GBK", True)])
def test_dbf_columns_of_few_values_decode_as_the_whole_column_does(tmp_path, monkeypatch, encoding, collide):
    """A text column of few distinct values decodes each distinct cell once (its rows share one
    string); the values are those of decoding the whole column in one call, also when every
    cell hashes alike (the cells are compared, and sorted instead)."""
    from ingest.readers import dbf

    if collide:
        monkeypatch.setattr(dbf, "_cell_hashes", lambda mat: np.zeros(len(mat), dtype=np.uint64))
    n = 3000
    frame = pd.DataFrame({"CZ": (["铸铁", "PE", "", "钢", "聚乙烯（PE）"] * n)[:n],      # 材质, 物探点号, 备注
                          "WTDH": [f"JS{i:05d}" for i in range(n)],
                          "BZ": ([" 左侧 ", None, "x"] * n)[:n]})
    pts = pd.DataFrame({"x": np.linspace(E0, E0 + 100, n), "y": np.full(n, N0)})
    shp = write_shapefile(tmp_path, "JSPOINT", frame, shapely.points(pts.to_numpy()), encoding=encoding)
    path = shp.with_suffix(".dbf")
    few, _ = dbf.read_dbf_frame(path, encoding)
    monkeypatch.setattr(dbf, "_text", dbf._joined_text)
    whole, _ = dbf.read_dbf_frame(path, encoding)
    pd.testing.assert_frame_equal(few, whole)
    assert few["CZ"].tolist()[:5] == ["铸铁", "PE", None, "钢", "聚乙烯（PE）"]
    assert few["BZ"].tolist()[:3] == ["左侧", None, "x"]
    assert len({id(v) for v in few["CZ"]}) <= 5 and few["WTDH"].nunique() == n
