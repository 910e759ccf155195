"""A run checks each batch as it is read and keeps only its residue (``CIM_INGEST_STREAM_ROWS``);
the loader writes pipe segments as soon as their networks' points are written. Neither may
change a finding, a source row or a loaded row."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: make the sibling helpers importable
from fixtures import line_geoms, network, point_geoms, write_shapefile, zip_folder  # noqa: E402
from loadkit import county_code, delivery, points, segments  # noqa: E402

from cim.auth import CLI_PRINCIPAL  # noqa: E402
from cim.settings import DatabaseSettings, IngestSettings, Settings  # noqa: E402
from ingest import load as loader  # noqa: E402
from ingest import pipeline  # noqa: E402
from ingest.validate import Validation, validate  # noqa: E402


def _delivery(tmp: Path) -> Path:
    """Buildings and two drainage networks with planted defects: a repeated point number (Q01),
    a segment whose end point is not delivered (Q05), a building without its floors (Q23)."""
    folder = tmp / "county"
    rng = np.random.default_rng(5)
    n = 40
    i = np.arange(n)
    x, y = 567_000.0 + (i % 10) * 40.0, 3_214_200.0 + (i // 10) * 40.0
    floors = rng.integers(1, 9, n).astype(float)
    floors[7] = np.nan
    frame = pd.DataFrame({"建筑编号": [f"JZ{k:03d}" for k in i], "建筑层数": floors,
                          "建筑结构": rng.choice(["砖混", "框架"], n), "房屋用途": rng.choice(["住宅", "商业"], n)})
    write_shapefile(folder, "JZ_buildings", frame, shapely.box(x, y, x + 20, y + 15))
    for k, prefix in enumerate(("YS", "WS")):
        pts, lines = network(12, prefix=prefix, n0=3_214_000.0 - 100 * k)
        geoms = line_geoms(pts, lines)
        if prefix == "YS":
            pts.loc[5, "物探点号"] = "YS5"            # YS5 twice; YS6 is no longer delivered
        write_shapefile(folder, f"{prefix}_PNT", pts, point_geoms(pts))
        write_shapefile(folder, f"{prefix}_LIN", lines, geoms)
    return zip_folder(folder, tmp / "county.zip")


def _settings(tmp: Path, db_url: str, stream_rows: int) -> Settings:
    return Settings(db=DatabaseSettings(database_url=db_url, home=tmp / "home"),
                    ingest=IngestSettings(archive_dir=tmp / "archive", stream_rows=stream_rows))


def _findings(report) -> list[dict]:
    return [f.to_dict() for f in report.findings]


def test_checked_batches_keep_only_their_residue_with_the_same_findings(tmp_path, conn, db_url):
    path = _delivery(tmp_path)
    county = county_code()
    whole = validate(pipeline.read_delivery(path, county=county, conn=conn), conn=conn)
    streamed = pipeline.run(conn, [path], settings=_settings(tmp_path, db_url, 0), principal=CLI_PRINCIPAL,
                            county=county, dry_run=True)
    kept = pipeline.run(conn, [path], settings=_settings(tmp_path, db_url, 10**9), principal=CLI_PRINCIPAL,
                        county=county, dry_run=True)
    rules = {f.rule_id for f in whole.findings}
    assert {"Q01", "Q05", "Q23"} <= rules
    assert _findings(streamed.report) == _findings(whole) == _findings(kept.report)
    assert streamed.report.delivery.counts() == kept.report.delivery.counts() == {"building": 40, "pipe_point": 24,
                                                                                   "pipe_segment": 22}
    # what stays of a checked batch: the pipe network's columns; of the buildings their source
    # rows, and while no county boundary is known (rule Q24) their geometries and keys, in a file
    by_target = {b.target: b for b in streamed.report.delivery.batches}
    assert list(by_target["building"].frame.columns) == ["source_row"]      # keys and geometries on disk
    assert by_target["building"].frame["source_row"].tolist() == list(range(1, 41))
    assert by_target["building"].raw is None and by_target["pipe_point"].raw is None
    assert {"exp_no", "network", "geom", "source_row"} <= set(by_target["pipe_point"].frame.columns)
    assert "floors_above" in next(b for b in kept.report.delivery.batches if b.target == "building").frame
    # the JSON report (layers and their mappings) is the same too
    assert streamed.report.delivery.notes == kept.report.delivery.notes
    assert [b.mapping for b in streamed.report.delivery.batches] == [b.mapping for b in kept.report.delivery.batches]


def _loaded(conn, county: str) -> dict:
    with conn.cursor() as cur:
        cur.execute("SELECT s.network, s.start_exp_no, s.end_exp_no, a.exp_no, b.exp_no, round(s.length_m::numeric, 3) "
                    "FROM cim.pipe_segment s "
                    "LEFT JOIN cim.pipe_point a ON a.id = s.start_point_id "
                    "LEFT JOIN cim.pipe_point b ON b.id = s.end_point_id "
                    "WHERE s.county_code = %s AND s.is_current ORDER BY 1, 2, 3", (county,))
        segs = cur.fetchall()
        cur.execute("SELECT source_layer, source_row, name, floors_above FROM cim.building "
                    "WHERE county_code = %s AND is_current ORDER BY 1, 2", (county,))
        houses = cur.fetchall()
        cur.execute("SELECT network, exp_no, source_row FROM cim.pipe_point WHERE county_code = %s AND is_current "
                    "ORDER BY 1, 3", (county,))
        pts = cur.fetchall()
    conn.rollback()
    return {"segments": segs, "buildings": houses, "points": pts}


def test_a_streamed_load_writes_the_same_rows(tmp_path, conn, db_url):
    folder = tmp_path / "clean"
    for k, prefix in enumerate(("YS", "WS")):
        pts, lines = network(12, prefix=prefix, n0=3_214_000.0 - 100 * k)
        write_shapefile(folder, f"{prefix}_PNT", pts, point_geoms(pts))
        write_shapefile(folder, f"{prefix}_LIN", lines, line_geoms(pts, lines))
    path = zip_folder(folder, tmp_path / "clean.zip")
    a, b = county_code(), county_code()
    streamed = pipeline.run(conn, [path], settings=_settings(tmp_path, db_url, 0), principal=CLI_PRINCIPAL, county=a)
    kept = pipeline.run(conn, [path], settings=_settings(tmp_path, db_url, 10**9), principal=CLI_PRINCIPAL, county=b)
    assert streamed.state == kept.state == "loaded"
    assert _findings(streamed.report) == _findings(kept.report)
    rows_a, rows_b = _loaded(conn, a), _loaded(conn, b)
    assert rows_a == rows_b and len(rows_a["segments"]) == 22
    assert all(s[1] == s[3] and s[2] == s[4] for s in rows_a["segments"])   # every end resolved to its point


def test_segments_written_before_later_points_of_their_network_get_those_ends(tmp_path, conn):
    """Points of a network in two batches, the segments between them: ends on the second
    batch's points are resolved when the load finishes; the first point of a repeated number wins."""
    county = county_code()
    pts = points(8)
    first, second = (type(pts)(pts.target, pts.source_layer, pts.profile_id, f.reset_index(drop=True),
                               network=pts.network) for f in (pts.frame.iloc[:4].copy(), pts.frame.iloc[4:].copy()))
    segs = segments(8)
    report = delivery(tmp_path, [first, segs, second], county)
    opened = loader.open_load(conn, report.delivery, principal=CLI_PRINCIPAL)
    for batch in report.delivery.batches:
        opened.write(batch)
    assert not opened.segments                     # written at once: the network's points came first
    opened.no_more_batches()                       # the points' lookup is let go before the load finishes
    assert opened.copier.index is None and not opened.copier.points
    loader.commit(opened.finish(report.delivery), report)
    rows = _loaded(conn, county)["segments"]
    assert len(rows) == 7 and all(s[1] == s[3] and s[2] == s[4] for s in rows)
    with conn.cursor() as cur:                     # JS4 … JS7 are the second batch's points
        cur.execute("SELECT count(*) FROM cim.pipe_segment s JOIN cim.pipe_point p ON p.id = s.end_point_id "
                    "WHERE s.county_code = %s AND p.source_row > 0 AND p.exp_no IN ('JS4', 'JS5', 'JS6', 'JS7')",
                    (county,))
        assert cur.fetchone()[0] == 4
    conn.rollback()


def test_segments_read_before_their_points_keep_the_lookup_until_the_load_finishes(tmp_path, conn):
    """Segments of a network whose points come later wait for the end of the load; the points'
    lookup is kept for them when every batch is in, and their ends are resolved."""
    county = county_code()
    report = delivery(tmp_path, [segments(8), points(8)], county)
    opened = loader.open_load(conn, report.delivery, principal=CLI_PRINCIPAL)
    for batch in report.delivery.batches:
        opened.write(batch)
    assert len(opened.segments) == 1
    opened.no_more_batches()
    assert opened.copier.points                    # still needed by the waiting segments
    loader.commit(opened.finish(report.delivery), report)
    rows = _loaded(conn, county)["segments"]
    assert len(rows) == 7 and all(s[1] == s[3] and s[2] == s[4] for s in rows)


def test_with_a_loaded_county_boundary_buildings_keep_only_their_source_rows(tmp_path, conn, db_url):
    county = county_code()
    with conn.cursor() as cur:     # a box of ±0.02° around the fixtures' town
        cur.execute("INSERT INTO cim.admin_area (code, name, level, county_code, geom) VALUES "
                    "(%s, '测试区', 'county', %s, ST_Multi(ST_MakeEnvelope(111.67, 29.02, 111.71, 29.06, 4490)))",
                    (county, county))
    conn.commit()
    n = 12
    i = np.arange(n)
    x, y = 567_000.0 + i * 40.0, np.full(n, 3_214_200.0)
    x[3] += 8000.0                                  # 8 km east: outside the county
    frame = pd.DataFrame({"建筑编号": [f"JZ{k:03d}" for k in i], "建筑层数": np.full(n, 3.0),
                          "建筑结构": ["砖混"] * n})
    folder = tmp_path / "b"
    write_shapefile(folder, "JZ_buildings", frame, shapely.box(x, y, x + 20, y + 15))
    path = zip_folder(folder, tmp_path / "b.zip")
    whole = validate(pipeline.read_delivery(path, county=county, conn=conn), conn=conn)
    streamed = pipeline.run(conn, [path], settings=_settings(tmp_path, db_url, 0), principal=CLI_PRINCIPAL,
                            county=county, dry_run=True)
    assert [(f.rule_id, f.row) for f in whole.findings if f.rule_id == "Q24"] == [("Q24", 4)]
    assert _findings(streamed.report) == _findings(whole)
    (b,) = streamed.report.delivery.batches
    assert list(b.frame.columns) == ["source_row"] and len(b) == n


def _chunked_delivery(tmp: Path) -> Path:
    """Shapefiles of 12 points, 11 segments, 10 streetlights and 10 buildings: read in chunks of
    4 rows, the repeated point number YS2 (rows 2 and 10) and pole number L2 (rows 2 and 9) fall
    in different chunks, and segments join points of different chunks."""
    folder = tmp / "chunked"
    pts, lines = network(12, prefix="YS")
    geoms = line_geoms(pts, lines)
    pts.loc[9, "物探点号"] = "YS2"
    write_shapefile(folder, "YS_PNT", pts, point_geoms(pts))
    write_shapefile(folder, "YS_LIN", lines, geoms)
    poles = pd.DataFrame({"灯杆编号": [f"L{k + 1}" for k in range(10)], "道路名称": ["人民路"] * 10})
    poles.loc[8, "灯杆编号"] = "L2"
    e = 567_000.0 + np.arange(10) * 30.0
    write_shapefile(folder, "路灯", poles, shapely.points(e, np.full(10, 3_214_050.0)))
    i = np.arange(10)
    floors = np.full(10, 3.0)
    floors[6] = np.nan
    houses = pd.DataFrame({"建筑编号": [f"JZ{k:03d}" for k in i], "建筑层数": floors, "建筑结构": ["砖混"] * 10})
    x = 567_000.0 + i * 40.0
    write_shapefile(folder, "JZ_buildings", houses, shapely.box(x, 3_214_200.0, x + 20, 3_214_215.0))
    return zip_folder(folder, tmp / "chunked.zip")


def _chunk_settings(tmp: Path, db_url: str, chunk_rows: int) -> Settings:
    return Settings(db=DatabaseSettings(database_url=db_url, home=tmp / "home"),
                    ingest=IngestSettings(archive_dir=tmp / "archive", chunk_rows=chunk_rows))


def test_a_layer_read_in_chunks_gives_the_same_findings_rows_and_report(tmp_path, conn, db_url):
    path = _chunked_delivery(tmp_path)
    county = county_code()
    one = pipeline.run(conn, [path], settings=_chunk_settings(tmp_path, db_url, 50_000), principal=CLI_PRINCIPAL,
                       county=county, dry_run=True)
    many = pipeline.run(conn, [path], settings=_chunk_settings(tmp_path, db_url, 4), principal=CLI_PRINCIPAL,
                        county=county, dry_run=True)
    found = {(f.rule_id, f.source_layer, f.row) for f in one.report.findings}
    assert {("Q01", "YS_PNT", 2), ("Q01", "YS_PNT", 10), ("L01", "路灯", 2), ("L01", "路灯", 9),
            ("Q23", "JZ_buildings", 7)} <= found
    assert _findings(many.report) == _findings(one.report)
    # one batch per layer in the report, as many rows, the same mapping (its sample values are
    # taken from the first chunk); source rows run on
    a, b = many.report.delivery.batches, one.report.delivery.batches

    def mapping(x):
        return x.source_layer, len(x), dataclasses.replace(x.mapping, samples=())
    assert [mapping(x) for x in a] == [mapping(x) for x in b]
    assert all(x.frame["source_row"].tolist() == list(range(1, len(x) + 1)) for x in a)
    assert many.report.delivery.notes == one.report.delivery.notes
    # read without a loader, the chunks of a layer come back joined: the same batches
    joined = pipeline.read_delivery(path, county=county, settings=IngestSettings(chunk_rows=4))
    whole = pipeline.read_delivery(path, county=county)
    for x, y in zip(joined.batches, whole.batches, strict=True):
        assert x.chunk is None and (x.source_layer, x.network, x.source_crs) == (y.source_layer, y.network,
                                                                                 y.source_crs)
        pd.testing.assert_frame_equal(x.frame.drop(columns="geom"), y.frame.drop(columns="geom")[x.frame.columns
                                                                                                  .drop("geom")])
        assert shapely.equals_exact(x.frame["geom"].to_numpy(), y.frame["geom"].to_numpy(), 1e-9).all()


def test_a_load_read_in_chunks_writes_the_same_rows(tmp_path, conn, db_url):
    folder = tmp_path / "net"
    pts, lines = network(12, prefix="YS")
    write_shapefile(folder, "YS_PNT", pts, point_geoms(pts))
    write_shapefile(folder, "YS_LIN", lines, line_geoms(pts, lines))
    _loads_alike_in_chunks(zip_folder(folder, tmp_path / "net.zip"), tmp_path, conn, db_url)


def _loads_alike_in_chunks(path: Path, tmp_path: Path, conn, db_url: str) -> None:
    """``path`` (12 YS points, 11 segments) loaded in chunks of 4 rows and whole: the same
    findings and rows, every segment end resolved (also to points of other chunks)."""
    a, b = county_code(), county_code()
    many = pipeline.run(conn, [path], settings=_chunk_settings(tmp_path, db_url, 4), principal=CLI_PRINCIPAL, county=a)
    one = pipeline.run(conn, [path], settings=_chunk_settings(tmp_path, db_url, 50_000), principal=CLI_PRINCIPAL,
                       county=b)
    assert many.state == one.state == "loaded" and _findings(many.report) == _findings(one.report)
    assert many.load.counts == one.load.counts == {"pipe_point": 12, "pipe_segment": 11}
    rows_a, rows_b = _loaded(conn, a), _loaded(conn, b)
    assert rows_a == rows_b and [p[2] for p in rows_a["points"]] == list(range(1, 13))
    assert all(s[1] == s[3] and s[2] == s[4] for s in rows_a["segments"])   # ends in other chunks too
    assert all(s[5] is not None and s[5] > 0 for s in rows_a["segments"])    # lengths measured either way


def _gpkg(path: Path, pts: pd.DataFrame, lines: pd.DataFrame, geoms: np.ndarray) -> Path:
    """A GeoPackage of a point and a line table, the line table first in the file."""
    import geopandas as gpd

    for name, frame, g in (("YS_LIN", lines, geoms), ("YS_PNT", pts, point_geoms(pts))):
        gpd.GeoDataFrame(frame, geometry=list(g), crs=4546).to_file(path, layer=name, engine="pyogrio")
    return path


def test_a_geopackage_read_in_chunks_gives_the_same_findings_and_rows(tmp_path, conn, db_url):
    """A GeoPackage table larger than a chunk is read a chunk at a time, as a shapefile is, and
    its tables in the order a loader wants (points before segments, whatever the file's order)."""
    from ingest.readers.gpkg import read_gpkg

    pts, lines = network(12, prefix="YS")
    clean = _gpkg(tmp_path / "net.gpkg", pts, lines, line_geoms(pts, lines))
    layers = list(read_gpkg(clean, "net.gpkg", 4, rank=lambda p: 0 if p.stem == "YS_PNT" else 1))
    assert [layer.name for layer in layers] == ["YS_PNT", "YS_LIN"] and len(layers[0].frame) == 4
    assert layers[0].rest is not None
    chunks = list(layers[0].rest())
    assert [(c.offset, len(c.frame)) for c in chunks] == [(4, 4), (8, 4)]
    assert chunks[1].frame["物探点号"].tolist() == pts["物探点号"].tolist()[8:]
    _loads_alike_in_chunks(clean, tmp_path, conn, db_url)
    twice = pts.copy()
    twice.loc[9, "物探点号"] = "YS1"                 # a point number repeated in another chunk (Q01)
    flawed = _gpkg(tmp_path / "flawed.gpkg", twice, lines, line_geoms(pts, lines))
    runs = [pipeline.run(conn, [flawed], settings=_chunk_settings(tmp_path, db_url, rows), principal=CLI_PRINCIPAL,
                         county=county_code(), dry_run=True) for rows in (4, 50_000)]
    assert ("Q01", "YS_PNT", 10) in {(f.rule_id, f.source_layer, f.row) for f in runs[1].report.findings}
    assert _findings(runs[0].report) == _findings(runs[1].report)


def _network_delivery(tmp: Path, *, geographic: bool) -> Path:
    """Two drainage networks with planted network defects: a point 0.5 m off its segment ends
    (Q09), a wrong ground level (Q10), an invert that rises along the flow (Q15), a segment from
    a point to itself (Q07), two points at one place (Q04). With ``geographic`` the second
    network is delivered in EPSG:4490 degrees, so distances are measured in the UTM zone."""
    folder = tmp / ("geo" if geographic else "net")
    for k, prefix in enumerate(("YS", "WS")):
        pts, lines = network(12, prefix=prefix, n0=3_214_000.0 - 100 * k)
        geoms = line_geoms(pts, lines)
        pts.loc[4, "Y"] += 0.5
        pts.loc[3, "地面高程"] += 0.4
        lines.loc[6, "终点高程"] += 0.3
        pts.loc[8, ["X", "Y"]] = pts.loc[7, ["X", "Y"]].to_numpy()
        loop = lines.iloc[[2]].assign(终点点号=lines.loc[2, "起点点号"])
        lines = pd.concat([lines, loop], ignore_index=True)
        geoms = np.append(geoms, shapely.linestrings([[pts.loc[2, "Y"], pts.loc[2, "X"]],
                                                      [pts.loc[2, "Y"] + 1.0, pts.loc[2, "X"]]]))
        pgeoms = point_geoms(pts)
        epsg = 4546
        if geographic and prefix == "WS":
            pgeoms, geoms = _to_degrees(pgeoms), _to_degrees(geoms)
            epsg = 4490
        write_shapefile(folder, f"{prefix}_PNT", pts, pgeoms, epsg=epsg)
        write_shapefile(folder, f"{prefix}_LIN", lines, geoms, epsg=epsg)
    return zip_folder(folder, tmp / f"{folder.name}.zip")


def _to_degrees(geoms: np.ndarray) -> np.ndarray:
    """EPSG:4546 geometries in EPSG:4490 degrees."""
    from pyproj import Transformer
    tr = Transformer.from_crs(4546, 4490, always_xy=True)
    return shapely.transform(geoms, lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1])))


def test_network_residues_give_the_same_network_findings(tmp_path, conn, db_url):
    """The residue of a pipe chunk keeps its metric source coordinates and WKB, not its source
    geometries: the network and drainage rules find the same, in the source CRS and in UTM."""
    for geographic in (False, True):
        path = _network_delivery(tmp_path, geographic=geographic)
        county = county_code()
        whole = validate(pipeline.read_delivery(path, county=county, conn=conn), conn=conn)
        settings = Settings(db=DatabaseSettings(database_url=db_url, home=tmp_path / "home"),
                            ingest=IngestSettings(archive_dir=tmp_path / "archive", chunk_rows=5, stream_rows=0))
        streamed = pipeline.run(conn, [path], settings=settings, principal=CLI_PRINCIPAL, county=county,
                                dry_run=True)
        assert {"Q04", "Q07", "Q09", "Q10", "Q15"} <= {f.rule_id for f in whole.findings}
        assert _findings(streamed.report) == _findings(whole)
        pipes = [b for b in streamed.report.delivery.batches if b.target.startswith("pipe")]
        assert pipes and all(b.packed and b.source_geom is None for b in pipes)
        assert [b.source_metric for b in pipes] == [not geographic or b.source_crs != "EPSG:4490" for b in pipes]


def test_spilled_residues_give_the_same_county_findings(tmp_path):
    """While no county boundary is known, the keys and geometries of checked building chunks
    wait in a temporary file; a county area delivered after them finds the same buildings
    outside (Q24), keyed as the whole layer keys them, and the file is removed."""
    folder = tmp_path / "county"
    write_shapefile(folder, "县界", pd.DataFrame({"行政区划代码": ["430702"], "名称": ["武陵区"]}),
                    [shapely.box(566_500.0, 3_213_500.0, 568_000.0, 3_214_500.0)])
    n = 10
    i = np.arange(n)
    x = 567_000.0 + i * 40.0
    x[[1, 6]] += 5_000.0                              # outside, in the first and the second chunk
    houses = pd.DataFrame({"建筑编号": [None] * 4 + [f"JZ{k:03d}" for k in i[4:]],
                           "建筑名称": [f"楼{k}" for k in i], "建筑层数": np.full(n, 3.0), "建筑结构": ["砖混"] * n})
    write_shapefile(folder, "JZ_buildings", houses, shapely.box(x, 3_214_200.0, x + 20, 3_214_215.0))
    whole = validate(pipeline.read_delivery(folder, county="430702"))
    got: list = []
    read = pipeline.read_deliveries([folder], county="430702", settings=IngestSettings(chunk_rows=4),
                                    on_batch=got.append)
    later = dataclasses.replace(read, batches=[])
    validation = Validation(later, slim_rows=0)
    for b in sorted(got, key=lambda b: b.target == "admin_area"):   # the county area last
        later.batches.append(b)
        validation.add(b)
    spilled = validation.spill.dir
    assert spilled is not None and any(spilled.iterdir())
    houses_left = next(b for b in later.batches if b.target == "building")
    assert list(houses_left.frame.columns) == ["source_row"] and len(houses_left) == 0   # the rows wait on disk
    stored = validation.stored.dir
    assert stored is not None and any(stored.iterdir())
    validation.join_stored()
    houses_left = next(b for b in later.batches if b.target == "building")
    assert list(houses_left.frame.columns) == ["source_row"] and len(houses_left) == n
    assert houses_left.frame["source_row"].tolist() == list(range(1, n + 1))
    assert not stored.exists()
    report = validation.finish()
    assert [(f.rule_id, f.row, f.key) for f in whole.findings if f.rule_id == "Q24"] == [("Q24", 2, None),
                                                                                         ("Q24", 7, "JZ006")]
    assert _findings(report) == _findings(whole)
    assert not spilled.exists()


def test_stored_residues_join_as_pandas_joins_them_and_geometries_come_back_mapped():
    """Residue chunks written to disk come back as one frame equal to ``pd.concat`` of the
    chunks (Arrow columns as one contiguous array each, categoricals as one categorical of all
    their categories), chunks whose columns differ as pandas joins them, and geometries from a memory-mapped file that outlives the removal of its name."""
    import pyarrow as pa

    from ingest.validation.spill import MappedWkb, Spill

    def chunk(start: int, n: int) -> pd.DataFrame:
        return pd.DataFrame({
            "exp_no": pd.array([f"YS{i}" if i % 3 else None for i in range(start, start + n)],
                               dtype=pd.ArrowDtype(pa.string())),
            "depth": np.arange(start, start + n, dtype=float) / 10, "flow_dir": pd.array([1, None] * (n // 2), "Int64"),
            "source_row": np.arange(start + 1, start + n + 1, dtype=np.int64)})

    frames = [chunk(0, 6), chunk(6, 4), chunk(10, 8)]
    spill = Spill()
    for f in frames:
        spill.put_columns(("a",), f)
    spill.put_columns(("b",), frames[0])
    spill.put_columns(("b",), frames[1].drop(columns="flow_dir"))
    joined = spill.joined(("a",))
    pd.testing.assert_frame_equal(joined, pd.concat(frames, ignore_index=True))
    assert joined["exp_no"].array.__arrow_array__().num_chunks == 1
    pd.testing.assert_frame_equal(spill.joined(("b",)),
                                  pd.concat([frames[0], frames[1].drop(columns="flow_dir")], ignore_index=True))
    for values in (["JS", "PS", None], ["RQ", "JS"]):   # categoricals of different categories
        codes = pd.Categorical(values, categories=pd.Index(sorted(v for v in set(values) if v), dtype=object))
        spill.put_columns(("c",), pd.DataFrame({"network": codes}))
    network = spill.joined(("c",))["network"]
    assert isinstance(network.dtype, pd.CategoricalDtype) and set(network.cat.categories) == {"JS", "PS", "RQ"}
    assert [None if pd.isna(v) else v for v in network.astype(object)] == ["JS", "PS", None, "RQ", "JS"]
    # a chunk whose column is empty throughout (categories: no values, objects) beside chunks of
    # pandas' text categories
    for codes in (pd.Categorical([None, None], categories=pd.Index([], dtype=object)), pd.Categorical(["出水口", None]),
                  pd.Categorical(["检查井"])):
        spill.put_columns(("e",), pd.DataFrame({"feature": codes}))
    feature = spill.joined(("e",))["feature"]
    assert isinstance(feature.dtype, pd.CategoricalDtype) and set(feature.cat.categories) == {"出水口", "检查井"}
    assert [None if pd.isna(v) else v for v in feature.astype(object)] == [None, None, "出水口", None, "检查井"]
    for n in (4, 3):                               # optional columns no row fills
        spill.put_columns(("d",), pd.DataFrame({"width_mm": np.full(n, np.nan), "flow_dir": pd.array([None] * n, "Int64"),
                                                "depth": np.r_[np.full(n - 1, np.nan), 1.5]}))
    empty = spill.joined(("d",))
    pd.testing.assert_frame_equal(empty, pd.DataFrame({"width_mm": np.full(7, np.nan),
                                                       "flow_dir": pd.array([None] * 7, "Int64"),
                                                       "depth": [np.nan] * 3 + [1.5] + [np.nan] * 2 + [1.5]}))
    assert empty["width_mm"].to_numpy().strides == (0,) and empty["flow_dir"].array._data.strides == (0,)
    assert empty["depth"].to_numpy().strides == (8,)   # a column with a value is joined as it is
    changed = empty.copy()
    changed.loc[2, "width_mm"] = 300.0                  # the shared missing value is copied, not changed
    assert changed["width_mm"].iloc[2] == 300.0 and np.isnan(changed["width_mm"].iloc[1])
    assert empty["width_mm"].isna().all()
    folder = spill.dir
    spill.close()
    assert folder is not None and not folder.exists()

    wkb = MappedWkb()
    geoms = [shapely.points(np.arange(n), np.arange(n)) for n in (5, 3)]
    for g in geoms:
        wkb.put(("p",), pd.Series(pd.arrays.ArrowExtensionArray(pa.array(shapely.to_wkb(g), type=pa.binary()))))
    column = wkb.column(("p",))
    folder = wkb.dir
    wkb.close()
    assert folder is not None and not folder.exists()
    back = shapely.from_wkb(column.to_numpy(dtype=object))
    assert shapely.equals(back, np.concatenate(geoms)).all() and len(back) == 8
    assert shapely.equals(shapely.from_wkb(column.iloc[[6]].to_numpy(dtype=object)), geoms[1][1:2]).all()


def test_csv_point_and_line_tables_read_in_chunks_give_the_same_findings_and_rows(tmp_path, conn, db_url):
    """A CSV table larger than a chunk is parsed a chunk at a time; the segments of a line table
    without geometry get their lines from the point table's chunks (set aside by validation
    until every layer is read), one chunk at a time, with one note per layer."""
    from ingest.readers.table import read_csv

    pts, lines = network(12, prefix="YS")
    pts["Y"] += 37_000_000                           # no .prj beside a table: eastings with their zone
    folder = tmp_path / "tables"
    folder.mkdir()
    pts.to_csv(folder / "YS_PNT.csv", index=False, encoding="gbk")
    lines.to_csv(folder / "YS_LIN.csv", index=False, encoding="gbk")
    first = read_csv(folder / "YS_PNT.csv", "YS_PNT.csv", 5)
    assert len(first.frame) == 5 and first.rest is not None
    chunks = list(first.rest())
    assert [(c.offset, len(c.frame)) for c in chunks] == [(5, 5), (10, 2)]
    assert chunks[1].frame["物探点号"].tolist() == pts["物探点号"].astype(str).tolist()[10:]
    exact = read_csv(folder / "YS_PNT.csv", "YS_PNT.csv", 12)   # a chunk's worth: a last read finds no more
    assert exact.rest is not None and list(exact.rest()) == []
    assert read_csv(folder / "YS_PNT.csv", "YS_PNT.csv", 13).rest is None
    path = zip_folder(folder, tmp_path / "tables.zip")
    _loads_alike_in_chunks(path, tmp_path, conn, db_url)
    run = pipeline.run(conn, [path], settings=_chunk_settings(tmp_path, db_url, 4), principal=CLI_PRINCIPAL,
                       county=county_code(), dry_run=True)
    built = [n for n in run.report.delivery.notes if n.topic == "geometry" and n.source_layer == "YS_LIN"]
    assert len(built) == 1 and not [f for f in run.report.findings if f.rule_id == "G02"]
    # lines from points checked in chunks are measured in the source CRS as lines from a whole
    # table are: a 200 m jump makes the segment across it too long (Q12)
    pts.loc[5:, "X"] += 200.0
    pts.to_csv(folder / "YS_PNT.csv", index=False, encoding="gbk")
    path = zip_folder(folder, tmp_path / "jump.zip")
    runs = [pipeline.run(conn, [path], settings=_chunk_settings(tmp_path, db_url, rows), principal=CLI_PRINCIPAL,
                         county=county_code(), dry_run=True) for rows in (4, 50_000)]
    assert _findings(runs[0].report) == _findings(runs[1].report)
    assert [(f.rule_id, f.row) for f in runs[0].report.findings] == [("Q12", 5)]


def test_workbook_sheets_read_in_chunks_give_the_same_findings_and_rows(tmp_path, conn, db_url):
    """A worksheet larger than a chunk becomes frames a chunk at a time (title rows above the
    header skipped, empty rows dropped in every chunk), and loads as the whole sheet does."""
    from openpyxl import Workbook

    from ingest.readers.table import read_xlsx

    pts, lines = network(12, prefix="YS")
    pts["Y"] += 37_000_000                           # no .prj beside a table: eastings with their zone
    wb = Workbook()
    wb.remove(wb.active)
    for title, frame in (("雨水管点", pts), ("雨水管线", lines)):
        ws = wb.create_sheet(title)
        ws.append([f"{title}成果表"])                 # a title row above the header
        ws.append(list(frame.columns))
        for k, row in enumerate(frame.itertuples(index=False)):
            if k == 6:
                ws.append([])                        # an empty row inside the table
            ws.append(list(row))
    path = tmp_path / "雨水.xlsx"
    wb.save(path)
    layers = list(read_xlsx(path, "雨水.xlsx", 5))
    assert [layer.name for layer in layers] == ["雨水管点", "雨水管线"] and len(layers[0].frame) == 5
    assert layers[0].rest is not None
    chunks = list(layers[0].rest())
    assert [(c.offset, len(c.frame)) for c in chunks] == [(5, 5), (10, 2)]
    assert chunks[1].frame["物探点号"].tolist() == pts["物探点号"].tolist()[10:]
    assert [len(layer.frame) for layer in read_xlsx(path, "雨水.xlsx")] == [12, 11]
    _loads_alike_in_chunks(path, tmp_path, conn, db_url)


def test_geojson_read_in_chunks_gives_the_same_findings_and_rows(tmp_path, conn, db_url):
    """A GeoJSON file larger than a chunk is streamed (GDAL's Arrow stream, one pass): the
    chunks hold the features in order, and the delivery loads as the whole files do."""
    import geopandas as gpd

    from ingest.readers.vector import read_geojson

    pts, lines = network(12, prefix="YS")
    folder = tmp_path / "geojson"
    folder.mkdir()
    for name, frame, g in (("YS_PNT", pts, point_geoms(pts)), ("YS_LIN", lines, line_geoms(pts, lines))):
        gpd.GeoDataFrame(frame, geometry=list(g), crs=4546).to_file(folder / f"{name}.geojson", driver="GeoJSON",
                                                                    engine="pyogrio")
    first = read_geojson(folder / "YS_PNT.geojson", "YS_PNT.geojson", 5)
    assert len(first.frame) == 5 and first.rest is not None and first.crs.to_epsg() == 4546
    chunks = list(first.rest())
    assert [(c.offset, len(c.frame)) for c in chunks] == [(5, 5), (10, 2)]
    assert chunks[1].frame["物探点号"].tolist() == pts["物探点号"].tolist()[10:]
    whole = read_geojson(folder / "YS_PNT.geojson", "YS_PNT.geojson")
    assert shapely.equals(np.concatenate([first.geom, *[c.geom for c in chunks]]), whole.geom).all()
    assert read_geojson(folder / "YS_PNT.geojson", "YS_PNT.geojson", 13).rest is None
    _loads_alike_in_chunks(zip_folder(folder, tmp_path / "geojson.zip"), tmp_path, conn, db_url)


def test_a_later_chunk_that_cannot_be_read_is_unreadable_input(tmp_path, conn, db_url, monkeypatch):
    """A library error while reading a later chunk (here the third record batch of a GeoJSON
    file) is refused as unreadable input naming the file, as one in the first chunk is, and
    nothing is loaded."""
    import geopandas as gpd

    from cim.errors import UnreadableInput
    from ingest.readers import vector

    pts, _lines = network(12, prefix="YS")
    path = tmp_path / "YS_PNT.geojson"
    gpd.GeoDataFrame(pts, geometry=list(point_geoms(pts)), crs=4546).to_file(path, driver="GeoJSON", engine="pyogrio")
    calls = []
    real = vector.arrow_frame

    def failing(batch, meta):
        calls.append(1)
        if len(calls) == 3:
            raise ValueError("corrupt batch")
        return real(batch, meta)

    monkeypatch.setattr(vector, "arrow_frame", failing)
    county = county_code()
    with pytest.raises(UnreadableInput) as err:
        pipeline.run(conn, [path], settings=_chunk_settings(tmp_path, db_url, 4), principal=CLI_PRINCIPAL, county=county)
    assert "YS_PNT.geojson" in err.value.en and "ValueError" in err.value.en and len(calls) == 3
    assert _loaded(conn, county)["points"] == []
