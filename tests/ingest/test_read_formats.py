"""Readers: shapefile sets (loose, folder, zip), GeoPackage, GeoJSON, CSV, XLSX, DBF tables and
the survey table form (lines built from the point table)."""

from __future__ import annotations

import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: sibling helpers
from fixtures import (  # noqa: E402
    E0,
    N0,
    line_geoms,
    network,
    point_geoms,
    write_network_shapefiles,
    write_shapefile,
    write_xlsx,
    zip_folder,
)

from cim.errors import UnreadableInput  # noqa: E402
from ingest.pipeline import read_deliveries, read_delivery  # noqa: E402


def _batch(delivery, target):
    found = [b for b in delivery.batches if b.target == target]
    assert found, f"no {target} batch in {[b.target for b in delivery.batches]}"
    return found[0]


def _near_demo(geom) -> None:
    """Geometries land around 111.69E 29.04N in EPSG:4490."""
    b = shapely.total_bounds(geom)
    assert 111.6 < b[0] < b[2] < 111.8 and 29.0 < b[1] < b[3] < 29.1


def test_shapefile_folder_maps_fields_and_transforms(tmp_path):
    write_network_shapefiles(tmp_path / "d")
    d = read_delivery(tmp_path / "d", county="430702")
    pts, segs = _batch(d, "pipe_point"), _batch(d, "pipe_segment")
    assert list(pts.frame["exp_no"]) == [f"YS{i}" for i in range(1, 7)]
    assert pts.network == "PS" and pts.subtype == "YS" and pts.source_crs == "EPSG:4546"
    assert set(pts.frame["node_type"].dropna()) == {"manhole"}
    assert list(segs.frame["material"].unique()) == ["T-GJ"]           # 钢筋混凝土 → dictionary code
    assert list(segs.frame["burial_type"].unique()) == ["ZM"]           # 直埋
    assert (segs.frame["z_ref"] == "invert").all()                      # drainage: invert elevations
    assert segs.frame["length_m"].between(29.9, 30.1).all()
    _near_demo(pts.frame["geom"].to_numpy())
    assert list(segs.frame["source_row"]) == [1, 2, 3, 4, 5]
    assert d.sha256 and d.size_bytes > 0


def test_loose_shp_and_zip_give_the_same_rows(tmp_path):
    p, _ = write_network_shapefiles(tmp_path / "d")
    loose = read_delivery(p, county="430702")
    assert [b.target for b in loose.batches] == ["pipe_point"]
    z = zip_folder(tmp_path / "d", tmp_path / "delivery.zip")
    zipped = read_delivery(z, county="430702")
    assert sorted(b.source_layer for b in zipped.batches) == ["YSLINE", "YSPOINT"]
    a = _batch(zipped, "pipe_point").frame["geom"].to_numpy()
    assert shapely.equals_exact(a, loose.batches[0].frame["geom"].to_numpy(), 1e-9).all()


def test_gpkg_and_geojson(tmp_path):
    pts, lines = network()
    g = gpd.GeoDataFrame(pts, geometry=list(point_geoms(pts)), crs=4546)
    gl = gpd.GeoDataFrame(lines, geometry=list(line_geoms(pts, lines)), crs=4546)
    g.to_file(tmp_path / "d.gpkg", layer="WSPOINT", engine="pyogrio")
    gl.to_file(tmp_path / "d.gpkg", layer="WSLINE", engine="pyogrio")
    d = read_delivery(tmp_path / "d.gpkg")
    assert {(b.source_layer, b.target, b.subtype) for b in d.batches} == {
        ("WSPOINT", "pipe_point", "WS"), ("WSLINE", "pipe_segment", "WS")}
    assert _batch(d, "pipe_point").source_crs == "EPSG:4546"
    g.to_crs(4326).to_file(tmp_path / "JSPOINT.geojson", engine="pyogrio")
    j = read_delivery(tmp_path / "JSPOINT.geojson")
    b = _batch(j, "pipe_point")
    assert b.network == "JS" and b.subtype is None
    _near_demo(b.frame["geom"].to_numpy())


def test_csv_point_table_x_is_northing(tmp_path):
    pts, _ = network(prefix="LD")
    path = tmp_path / "路灯.csv"
    frame = pts.rename(columns={"物探点号": "灯杆编号"})[["灯杆编号", "X", "Y"]]
    frame.to_csv(path, index=False, encoding="gbk")
    d = read_delivery(path, county="430702")
    b = _batch(d, "streetlight")
    assert list(b.frame["pole_no"])[:2] == ["LD1", "LD2"]
    _near_demo(b.frame["geom"].to_numpy())
    assert any(n.topic == "encoding" and "GBK" in n.message_en for n in d.notes)


def test_survey_xlsx_two_sheets_builds_lines(tmp_path):
    pts, lines = network(prefix="JS", n_points=5)
    path = write_xlsx(tmp_path / "给水成果表.xlsx", {"JSPOINT": pts, "JSLINE": lines})
    d = read_delivery(path, county="430702")
    segs = _batch(d, "pipe_segment")
    assert segs.geometry_built
    ends = shapely.get_coordinates(segs.frame["geom"].to_numpy())
    pgeo = shapely.get_coordinates(_batch(d, "pipe_point").frame["geom"].to_numpy())
    assert np.allclose(ends[0], pgeo[0]) and np.allclose(ends[1], pgeo[1])
    assert segs.source_crs == "EPSG:4546"          # inferred from the county (no .prj in a workbook)
    assert any("推断" in n.message_zh for n in d.notes)


def test_survey_two_workbooks_and_dbf_tables(tmp_path):
    pts, lines = network(prefix="RQ", n_points=4)
    a = write_xlsx(tmp_path / "RQPOINT.xlsx", {"Sheet1": pts})
    b = write_xlsx(tmp_path / "RQLINE.xlsx", {"Sheet1": lines})
    d = read_deliveries([a, b], county="430702")
    segs = _batch(d, "pipe_segment")
    assert segs.frame["geom"].notna().all() and segs.network == "RQ"
    # DBF-only tables: a point .dbf with X/Y and a line .dbf
    folder = tmp_path / "dbf"
    write_shapefile(folder, "RQPOINT", pts, point_geoms(pts))
    write_shapefile(folder, "RQLINE", lines, line_geoms(pts, lines))
    for stem in ("RQPOINT", "RQLINE"):
        for ext in (".shp", ".shx", ".prj"):
            (folder / f"{stem}{ext}").unlink()
    d2 = read_delivery(folder, county="430702")
    segs2 = _batch(d2, "pipe_segment")
    assert segs2.geometry_built and segs2.frame["geom"].notna().all()
    assert list(_batch(d2, "pipe_point").frame["exp_no"]) == ["RQ1", "RQ2", "RQ3", "RQ4"]


def test_missing_points_leave_lines_empty(tmp_path):
    pts, lines = network(prefix="YS", n_points=4)
    lines.loc[1, "终点点号"] = "YS99"
    d = read_delivery(write_xlsx(tmp_path / "t.xlsx", {"YSPOINT": pts, "YSLINE": lines}), county="430702")
    geom = _batch(d, "pipe_segment").frame["geom"]
    assert geom.isna().tolist() == [False, True, False]


@pytest.mark.parametrize("case", ["missing_shx", "missing_dbf", "truncated", "empty_file", "not_a_shp"])
def test_broken_shapefiles_are_refused(tmp_path, case):
    p, _ = write_network_shapefiles(tmp_path / "d")
    if case == "missing_shx":
        p.with_suffix(".shx").unlink()
    elif case == "missing_dbf":
        p.with_suffix(".dbf").unlink()
    elif case == "truncated":
        data = p.read_bytes()
        p.write_bytes(data[: len(data) - 30])
    elif case == "empty_file":
        p.write_bytes(b"")
    else:
        p.write_bytes(b"hello world, not a shapefile at all" * 10)
    with pytest.raises(UnreadableInput) as exc:
        read_delivery(tmp_path / "d", county="430702")
    assert exc.value.zh and exc.value.en and exc.value.code == "unreadable_input"


def test_unrecognised_layers_are_noted_and_nothing_readable_is_refused(tmp_path):
    write_network_shapefiles(tmp_path / "d")
    gpd.GeoDataFrame({"foo": [1]}, geometry=[shapely.Point(E0, N0)], crs=4546).to_file(
        tmp_path / "d" / "annotation.shp", engine="pyogrio")
    d = read_delivery(tmp_path / "d", county="430702")
    assert any(n.topic == "profile" and "annotation" in n.message_en for n in d.notes)
    only = tmp_path / "only"
    only.mkdir()
    gpd.GeoDataFrame({"foo": [1]}, geometry=[shapely.Point(E0, N0)], crs=4546).to_file(
        only / "annotation.shp", engine="pyogrio")
    with pytest.raises(UnreadableInput):
        read_delivery(only)


def test_missing_path_is_unreadable(tmp_path):
    with pytest.raises(UnreadableInput):
        read_delivery(tmp_path / "nope.zip")


def test_county_code_taken_from_a_delivered_county_boundary(tmp_path):
    sq = shapely.box(E0 - 500, N0 - 500, E0 + 500, N0 + 500)
    write_shapefile(tmp_path / "d", "县界", pd.DataFrame({"行政区划代码": ["430702"], "名称": ["武陵区"]}), [sq])
    write_network_shapefiles(tmp_path / "d")
    d = read_delivery(tmp_path / "d")
    assert d.county_code == "430702" and any(n.topic == "county" for n in d.notes)
    assert read_delivery(tmp_path / "d", county="430703").county_code == "430703"


def test_deleted_dbf_records_are_skipped(tmp_path):
    p, _ = write_network_shapefiles(tmp_path / "d")
    dbf = p.with_suffix(".dbf")
    data = bytearray(dbf.read_bytes())
    hlen = int.from_bytes(data[8:10], "little")
    data[hlen] = ord("*")                      # first record marked deleted
    dbf.write_bytes(bytes(data))
    b = read_delivery(p, county="430702").batches[0]
    assert b.frame["exp_no"].tolist() == ["YS2", "YS3", "YS4", "YS5", "YS6"]
    assert len(b.frame["geom"].dropna()) == 5


def test_xlsx_title_row(tmp_path):
    from openpyxl import Workbook

    pts, _ = network(n_points=3)
    wb = Workbook()
    ws = wb.active
    ws.title = "YSPOINT"
    ws.append(["雨水管线点成果表"])                     # a title row above the header
    ws.append(list(pts.columns))
    for row in pts.itertuples(index=False):
        ws.append(list(row))
    ws.append([None] * len(pts.columns))               # trailing empty row
    wb.save(tmp_path / "t.xlsx")
    d = read_delivery(tmp_path / "t.xlsx", county="430702")
    b = _batch(d, "pipe_point")
    assert b.frame["exp_no"].tolist() == ["YS1", "YS2", "YS3"] and b.frame["geom"].notna().all()


def test_csv_with_longitude_latitude_columns(tmp_path):
    frame = pd.DataFrame({"灯杆编号": ["L1", "L2"], "经度": [111.69, 111.6903], "纬度": [29.04, 29.04]})
    frame.to_csv(tmp_path / "路灯.csv", index=False)
    d = read_delivery(tmp_path / "路灯.csv")
    b = _batch(d, "streetlight")
    assert b.source_crs == "EPSG:4490"
    assert (b.frame["geom"].iloc[0].x, b.frame["geom"].iloc[0].y) == (111.69, 29.04)
