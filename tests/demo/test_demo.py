"""The demo county delivery (`cim demo generate`): files exactly as a survey contractor hands them
over, and the engineering of the networks inside them. Read back with pyogrio/openpyxl directly,
independently of the platform's readers."""

from __future__ import annotations

import json
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from openpyxl import load_workbook
from pyproj import CRS, Transformer
from typer.testing import CliRunner

from demo import app
from demo.generate import generate

SHAPE_ZIPS = ["行政区划.zip", "排水管线.zip", "给水管线.zip", "燃气管线.zip", "路灯管线.zip", "房屋建筑调查.zip",
              "园林绿地.zip", "路灯设施.zip", "道路中心线.zip"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo")
    return out, generate(out, seed=7)


def _members(path: Path) -> dict[str, bytes]:
    """Zip members by name, decoding GBK names written without the UTF-8 flag."""
    out = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name = info.filename if info.flag_bits & 0x800 else info.filename.encode("cp437").decode("gbk")
            out[name] = zf.read(info)
    return out


def _read(demo_dir: Path, zname: str, layer: str):
    """A layer of a delivered zip through GDAL, told the real encoding (the file does not say it)."""
    with zipfile.ZipFile(demo_dir / zname) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(".shp")
                    and (i.filename if i.flag_bits & 0x800 else i.filename.encode("cp437").decode("gbk"))
                    == f"{layer}.shp")
    return pyogrio.read_dataframe(f"/vsizip/{demo_dir / zname}/{info.filename}", encoding="GBK")


def test_manifest_lists_every_file_with_its_hash(demo):
    out, manifest = demo
    names = {f["name"] for f in manifest["files"]}
    assert names == set(SHAPE_ZIPS) | {"通信管线成果表.xlsx", "dem.tif"}
    assert json.loads((out / "demo_manifest.json").read_text(encoding="utf-8"))["files"] == manifest["files"]
    import hashlib
    for f in manifest["files"]:
        assert hashlib.sha256((out / f["name"]).read_bytes()).hexdigest() == f["sha256"]
    c = manifest["counts"]
    assert 1500 <= c["buildings"] <= 3000
    assert 3000 <= c["pipe_segments"] <= 8000 and c["streetlights"] >= 300


@pytest.mark.parametrize("zname", SHAPE_ZIPS)
def test_shapefiles_are_gbk_without_cpg_and_claim_ansi_1252(demo, zname):
    out, _ = demo
    members = _members(out / zname)
    assert not [n for n in members if n.lower().endswith(".cpg")]
    dbfs = [n for n in members if n.endswith(".dbf")]
    assert dbfs
    for n in dbfs:
        data = members[n]
        assert data[29] == 0x57                       # language driver: Windows ANSI 1252 (a lie)
        assert data[1:4] == bytes([126, 6, 30])       # fixed header date 2026-06-30
        header_len = int.from_bytes(data[8:10], "little")
        names = [data[k:k + 11].split(b"\0")[0] for k in range(32, header_len - 1, 32)]
        raw = b"".join(names)
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")
        decoded = [x.decode("gbk") for x in names]
        assert all(any("\u4e00" <= ch <= "\u9fff" for ch in d) or d in ("X", "Y") for d in decoded)


def test_chinese_field_names_decode(demo):
    out, _ = demo
    pts = _read(out, "排水管线.zip", "YSPOINT")
    lines = _read(out, "排水管线.zip", "YSLINE")
    for f in ("物探点号", "特征", "附属物", "地面高程", "井深", "井底高程", "井盖规格", "防坠网", "受纳水体", "拍门", "所在道路"):
        assert f in pts.columns
    for f in ("起点点号", "终点点号", "起点埋深", "终点埋深", "管径", "材质", "埋设方式", "建设年代", "权属单位", "所在道路"):
        assert f in lines.columns
    assert set(pts["附属物"].dropna()) <= {"检修井", "沉泥井", "雨水箅"}
    assert (pts["物探点号"].str.match(r"^YS\d{4}$")).all()
    assert pts["点符号代码"].dropna().str.match(r"^5201\d{4}$").all()
    gas = _read(out, "燃气管线.zip", "RQLINE")
    assert set(gas["压力"]) == {"中压B", "低压"} and set(gas["材质"]) <= {"PE", "钢"}
    bld = _read(out, "房屋建筑调查.zip", "房屋建筑")
    for f in ("建筑编号", "名称", "地址", "地上层数", "地下层数", "建筑高度", "建筑面积", "结构类型", "建成年份", "用途",
              "鉴定等级", "是否自建房", "社区代码"):
        assert f in bld.columns
    assert bld["建筑高度"].isna().any() and bld["建筑高度"].notna().mean() > 0.8


@pytest.mark.parametrize("zname", SHAPE_ZIPS)
def test_prj_is_cgcs2000_gk_cm111(demo, zname):
    out, _ = demo
    prjs = [v for n, v in _members(out / zname).items() if n.endswith(".prj")]
    assert prjs
    for p in prjs:
        assert CRS.from_wkt(p.decode()).to_epsg(min_confidence=70) == 4546


def test_coordinates_fall_around_29_04n_111_69e(demo):
    out, manifest = demo
    to_ll = Transformer.from_crs(4546, 4490, always_xy=True)
    for zname, layer in (("排水管线.zip", "YSPOINT"), ("房屋建筑调查.zip", "房屋建筑"), ("路灯设施.zip", "路灯")):
        b = _read(out, zname, layer).total_bounds
        lon, lat = to_ll.transform([b[0], b[2]], [b[1], b[3]])
        assert 111.64 < min(lon) and max(lon) < 111.74 and 29.0 < min(lat) and max(lat) < 29.08
        assert abs((lon[0] + lon[1]) / 2 - 111.69) < 0.02 and abs((lat[0] + lat[1]) / 2 - 29.04) < 0.02
    admin = _read(out, "行政区划.zip", "行政区划")
    assert set(admin["级别"]) == {"区", "街道", "乡镇", "社区"}
    assert admin.loc[admin["级别"] == "区", "区划代码"].tolist() == ["430703"]
    assert admin.loc[admin["级别"].isin(["街道", "乡镇"]), "区划代码"].str.match(r"^430703\d{3}$").all()
    assert admin.loc[admin["级别"] == "社区", "区划代码"].str.match(r"^430703\d{6}$").all()
    county = admin.loc[admin["级别"] == "区"].geometry.iloc[0]
    assert county.contains(shapely.box(*_read(out, "房屋建筑调查.zip", "房屋建筑").total_bounds))


def _network(out: Path, net: str):
    pts = _read(out, "排水管线.zip", f"{net}POINT").set_index("物探点号")
    lines = _read(out, "排水管线.zip", f"{net}LINE")
    return pts, lines


def _planted(manifest: dict, rule: str) -> set[str]:
    return {d["key"] for d in manifest["defects"] if d["rule_id"] == rule}


@pytest.mark.parametrize("net", ["YS", "WS"])
def test_gravity_drainage_inverts_fall_downstream(demo, net):
    out, manifest = demo
    pts, lines = _network(out, net)
    key = lines["起点点号"] + "-" + lines["终点点号"]
    rising = lines[lines["起点高程"] <= lines["终点高程"]]
    planted = _planted(manifest, "Q15") | _planted(manifest, "Q18")
    assert set(key[rising.index]) <= planted
    if net == "YS":
        assert set(key[rising.index]) == _planted(manifest, "Q15")
    # point and line tables agree: 地面高程 − 埋深 = 管底高程 at both ends, depths plausible
    own = lines[lines["终点点号"].isin(pts.index)]
    ground = pts.loc[own["起点点号"], "地面高程"].to_numpy()
    assert np.allclose(ground - own["起点埋深"].to_numpy(), own["起点高程"].to_numpy(), atol=0.02)
    manholes = pts[pts["附属物"].isin(["检修井", "沉泥井"])]
    assert manholes["井深"].between(2.0, 5.5).all()
    assert np.allclose(manholes["地面高程"] - manholes["井深"], manholes["井底高程"], atol=0.02)
    outfalls = pts[pts["设施类型"] == "排放口"]
    if net == "YS":
        assert len(outfalls) >= 3 and (outfalls["井底高程"] > outfalls["常水位"]).all()
        assert set(outfalls["受纳水体"]) == {"清水河"}
    else:
        assert (pts["设施类型"] == "泵站").sum() >= 1


@pytest.mark.parametrize("net", ["YS", "WS"])
def test_diameters_never_shrink_downstream_except_the_planted_defect(demo, net):
    out, manifest = demo
    _, lines = _network(out, net)
    dn = lines["管径"].astype(float)
    largest_in = defaultdict(float)
    for end, d in zip(lines["终点点号"], dn, strict=True):
        largest_in[end] = max(largest_in[end], d)
    shrinking = {f"{a}-{b}" for a, b, d in zip(lines["起点点号"], lines["终点点号"], dn, strict=True)
                 if d < largest_in.get(a, 0)}
    assert shrinking == (_planted(manifest, "Q16") if net == "YS" else set())
    assert {300, 400, 600, 800} <= set(dn.astype(int)) if net == "YS" else {300, 400, 500} <= set(dn.astype(int))


def test_manholes_every_30_to_60_m(demo):
    out, _ = demo
    pts, lines = _network(out, "YS")
    kind = pts["设施类型"]
    between = lines[lines["起点点号"].map(kind).eq("检查井") & lines["终点点号"].map(kind).eq("检查井")]
    length = between.geometry.length
    assert len(between) > 300 and length.between(30, 60).all()


def test_streetlights_every_25_to_35_m(demo):
    out, _ = demo
    lights = _read(out, "路灯设施.zip", "路灯")
    assert 300 <= len(lights) and lights["灯杆编号"].is_unique
    for _, run in lights.groupby(["控制箱编号", "回路号"]):
        xy = np.c_[run.geometry.x, run.geometry.y]
        axis = xy[-1] - xy[0]
        order = np.argsort(xy @ axis)
        gaps = np.hypot(*np.diff(xy[order], axis=0).T)
        assert ((gaps >= 25) & (gaps <= 35)).all(), gaps
    for f in ("道路名称", "道路等级", "灯杆类型", "杆高", "光源类型", "功率", "控制箱编号", "回路号", "单灯控制器", "安装日期",
              "状态", "最近巡检"):
        assert f in lights.columns


def test_xlsx_point_and_line_tables_are_consistent(demo):
    out, _ = demo
    wb = load_workbook(out / "通信管线成果表.xlsx", read_only=True)
    assert wb.sheetnames == ["TXPOINT", "TXLINE"]
    prow = list(wb["TXPOINT"].values)
    lrow = list(wb["TXLINE"].values)
    ph, pts = prow[0], prow[1:]
    lh, lines = lrow[0], lrow[1:]
    for f in ("物探点号", "X", "Y", "地面高程"):
        assert f in ph
    assert "起点点号" in lh and "终点点号" in lh and not {"X", "Y", "geometry"} & set(lh)
    nos = {r[ph.index("物探点号")] for r in pts}
    assert len(nos) == len(pts)
    assert all(r[lh.index("起点点号")] in nos and r[lh.index("终点点号")] in nos for r in lines)
    x = np.array([r[ph.index("X")] for r in pts])
    y = np.array([r[ph.index("Y")] for r in pts])
    assert (x > 3_000_000).all() and ((y > 400_000) & (y < 700_000)).all()      # X = northing, Y = easting


def test_dem_matches_ground_elevations(demo):
    out, _ = demo
    pts = _read(out, "排水管线.zip", "YSPOINT")
    with rasterio.open(out / "dem.tif") as src:
        assert src.crs.to_epsg() == 4546 and abs(src.res[0] - 5.0) < 1e-9
        z = np.array([v[0] for v in src.sample(zip(pts.geometry.x, pts.geometry.y, strict=True))])
    assert np.abs(z - pts["地面高程"].to_numpy()).max() < 0.2
    north = pts.geometry.y.to_numpy() > np.median(pts.geometry.y)
    assert pts["地面高程"][north].mean() > pts["地面高程"][~north].mean() + 2      # slopes down to the river


def test_same_seed_same_bytes_other_seed_other_town(demo, tmp_path):
    _, manifest = demo
    again = generate(tmp_path / "a", seed=7)
    other = generate(tmp_path / "b", seed=8)
    assert [f["sha256"] for f in again["files"]] == [f["sha256"] for f in manifest["files"]]
    assert [f["sha256"] for f in other["files"]] != [f["sha256"] for f in manifest["files"]]


def test_defect_modes(tmp_path):
    errors = generate(tmp_path / "e", seed=3, defects="errors")
    rules = {d["rule_id"]: d["severity"] for d in errors["defects"]}
    assert {"Q01", "Q05", "Q07"} <= set(rules) and rules["Q01"] == "error"
    clean = generate(tmp_path / "n", seed=3, defects="none")
    assert clean["defects"] == []
    warn = generate(tmp_path / "w", seed=3)
    assert {d["severity"] for d in warn["defects"]} == {"warning"}
    assert {d["rule_id"] for d in warn["defects"]} == {"Q06", "Q15", "Q16", "Q18", "B01", "G01"}


def test_cli_generates_and_rejects_bad_options(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["generate", "--out", str(tmp_path / "d"), "--seed", "5", "--buildings", "800"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "d" / "demo_manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["buildings"] == 800 and manifest["seed"] == 5
    bad = runner.invoke(app, ["generate", "--out", str(tmp_path / "x"), "--defects", "many"])
    assert bad.exit_code == 2 and "must be one of" in bad.output
    neg = runner.invoke(app, ["generate", "--out", str(tmp_path / "y"), "--scale", "-1"])
    assert neg.exit_code == 2 and "must be positive" in neg.output


def test_scaled_delivery_for_benchmarks(tmp_path):
    m = generate(tmp_path / "big", seed=1, buildings=20_000, segments=20_000, points=20_000)
    c = m["counts"]
    assert c["buildings"] == 20_000
    assert c["pipe_segments"] >= 19_000 and c["pipe_points"] >= 19_000
