"""`cim ingest` as a subprocess: load, reports, duplicate no-op, dry run, rejection, unreadable
input, list, restore, profiles and the DEM dispatch, with the documented exit codes."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: sibling helpers
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "ingest"))
from loadkit import county_code, snapshot  # noqa: E402
from synth import counts, lines_frame, points_frame, write_delivery  # noqa: E402


@pytest.fixture(scope="module")
def deliveries(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli-deliveries")
    out = {"a": write_delivery(d, points=300, buildings=40, name="a.zip"),
           "b": write_delivery(d, points=120, buildings=0, name="b.zip")}
    # duplicate survey point numbers: an error that rejects the delivery
    pts, lines = points_frame(60), lines_frame(60)
    pts.loc[11, "WTDH"] = pts.loc[10, "WTDH"]
    parts = d / "dup_parts"
    parts.mkdir()
    pts.to_file(parts / "JSPOINT.shp", engine="pyogrio", encoding="GBK")
    lines.to_file(parts / "JSLINE.shp", engine="pyogrio", encoding="GBK")
    out["dup"] = d / "dup.zip"
    with zipfile.ZipFile(out["dup"], "w") as zf:
        for p in parts.iterdir():
            zf.write(p, p.name)
    out["junk"] = d / "junk.zip"
    out["junk"].write_bytes(b"not a zip")
    return out


def _json(res) -> dict:
    assert res.stdout.strip(), res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_load_reports_duplicate_list_and_restore(cli, conn, deliveries, tmp_path):
    county, env = county_code(), {"CIM_HOME": str(tmp_path)}
    reports = [tmp_path / "r.xlsx", tmp_path / "r.json", tmp_path / "r.html"]
    res = cli("ingest", str(deliveries["a"]), "--county", county, "--json",
              *[a for r in reports for a in ("--report", str(r))], env=env)
    assert res.returncode == 0, res.stderr
    out = _json(res)
    assert out["state"] == "loaded" and out["counts"] == counts(300, 40)
    assert "写入" in res.stderr or "loading" in res.stderr  # the progress bar
    assert all(r.stat().st_size > 0 for r in reports)
    assert reports[0].read_bytes()[:2] == b"PK" and json.loads(reports[1].read_text(encoding="utf-8"))
    first = out["delivery_id"]
    assert (tmp_path / "archive" / out["sha256"] / "a.zip").is_file()

    before = snapshot(conn)
    again = cli("ingest", str(deliveries["a"]), "--county", county, "--report", str(tmp_path / "again.json"), env=env)
    assert again.returncode == 0 and "sha256" in again.stdout
    assert snapshot(conn) == before
    notes = json.loads((tmp_path / "again.json").read_text(encoding="utf-8"))["summary"]["notes"]
    assert any(n["topic"] == "duplicate" and f"delivery {first}" in n["message_en"] for n in notes)

    second = _json(cli("ingest", str(deliveries["b"]), "--county", county, "--json", env=env, check=True))
    listed = json.loads(cli("ingest", "list", "--county", county, "--json", check=True).stdout)
    assert [(r["id"], r["state"]) for r in listed] == [(second["delivery_id"], "current"), (first, "current")]
    # b replaced the water network only; the buildings of a stay current
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM cim.building WHERE county_code = %s AND is_current AND delivery_id = %s",
                    (county, first))
        assert cur.fetchone()[0] == 40
    conn.rollback()

    res = cli("ingest", "restore", str(first), check=True)
    assert f"{first}" in res.stdout
    listed = {r["id"]: r["state"] for r in json.loads(cli("ingest", "list", "--county", county, "--json").stdout)}
    assert listed == {first: "current", second["delivery_id"]: "superseded"}


def test_dry_run_writes_nothing(cli, conn, deliveries, tmp_path):
    before = snapshot(conn)
    res = cli("ingest", str(deliveries["a"]), "--county", county_code(), "--dry-run", "--report",
              str(tmp_path / "dry.html"), env={"CIM_HOME": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    assert "dry run" in res.stdout and (tmp_path / "dry.html").stat().st_size > 0
    assert snapshot(conn) == before and not (tmp_path / "archive").exists()


def test_rejected_delivery_exits_1_and_loads_nothing(cli, conn, deliveries, tmp_path):
    county = county_code()
    before = snapshot(conn)
    res = cli("ingest", str(deliveries["dup"]), "--county", county, "--report", str(tmp_path / "r.json"),
              env={"CIM_HOME": str(tmp_path)})
    assert res.returncode == 1, res.stdout + res.stderr
    assert "rejected" in res.stdout
    findings = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["findings"]
    assert any(f["severity"] == "error" and f["key"] == "JS11" for f in findings)
    after = snapshot(conn)
    for t in ("pipe_point", "pipe_segment", "building"):
        assert after[t] == before[t]
    assert after["versions"] == before["versions"]
    listed = json.loads(cli("ingest", "list", "--county", county, "--json").stdout)
    assert [r["state"] for r in listed] == ["rejected"]


def test_unreadable_input_exits_2(cli, conn, deliveries, tmp_path):
    before = snapshot(conn)
    for args in ([str(deliveries["junk"])], [str(tmp_path / "missing.zip")]):
        res = cli("ingest", *args, "--county", county_code(), env={"CIM_HOME": str(tmp_path)})
        assert res.returncode == 2, res.stdout + res.stderr
        assert "错误" in res.stderr and "error" in res.stderr and "Traceback" not in res.stderr
    res = cli("ingest", "restore", "987654321")
    assert res.returncode == 2 and "no delivery" in res.stderr
    assert snapshot(conn) == before


def test_profiles_and_help(cli):
    res = cli("ingest", "profiles", "--json", check=True)
    listed = json.loads(res.stdout)
    assert isinstance(listed["county_mappings"], list)
    ids = {p["id"] for p in listed["profiles"]}
    assert {"cjj61-pipeline", "buildings", "drainage-census", "gas", "green-space", "streetlight"} <= ids
    assert "restore" in cli("ingest", "--help", check=True).stdout


def test_tif_goes_to_the_dem_store(cli, tmp_path):
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import from_origin

    dem = tmp_path / "dem.tif"
    with rasterio.open(dem, "w", driver="GTiff", width=20, height=20, count=1, dtype="float32", crs="EPSG:4490",
                       transform=from_origin(111.68, 29.05, 0.0005, 0.0005), nodata=-9999) as ds:
        ds.write(np.linspace(40, 60, 400, dtype="float32").reshape(1, 20, 20))
    res = cli("ingest", str(dem), env={"CIM_HOME": str(tmp_path / "home")})
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])["dem"] == str(dem)


def test_a_failure_after_layers_were_written_leaves_nothing(cli, conn, deliveries, tmp_path):
    """Layers are COPYed while later ones are read: a member of the zip that turns out corrupt
    after the first layers went in rolls the whole load back (exit 2, database unchanged)."""
    import random

    bad = tmp_path / "late_failure.zip"
    with zipfile.ZipFile(deliveries["a"]) as src, zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
        dst.writestr("zz_notes.txt", random.Random(5).randbytes(200_000))
    blob = bytearray(bad.read_bytes())
    at = blob.find(b"zz_notes.txt") + len("zz_notes.txt")
    for i in range(at + 50_000, at + 50_100):            # damage its deflate stream mid-way
        blob[i] ^= 0x5A
    bad.write_bytes(bytes(blob))
    before = snapshot(conn)
    res = cli("ingest", str(bad), "--county", county_code(), "--json", env={"CIM_HOME": str(tmp_path)})
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "zz_notes.txt" in res.stderr
    assert snapshot(conn) == before


def test_county_taken_from_a_delivered_boundary_loads(cli, conn, tmp_path):
    """Without --county the delivery is read first (the county comes from its boundary) and then
    loaded whole, validated while it is written."""
    import pandas as pd
    import shapely
    from fixtures import E0, N0, write_network_shapefiles, write_shapefile

    county = county_code()
    square = shapely.box(E0 - 500, N0 - 500, E0 + 500, N0 + 500)
    write_shapefile(tmp_path / "d", "县界", pd.DataFrame({"行政区划代码": [county], "名称": ["测试县"]}), [square])
    write_network_shapefiles(tmp_path / "d")
    out = _json(cli("ingest", str(tmp_path / "d"), "--json", env={"CIM_HOME": str(tmp_path / "home")}, check=True))
    assert out["state"] == "loaded" and out["counts"]["admin_area"] == 1 and out["counts"]["pipe_point"] > 0
    with conn.cursor() as cur:
        cur.execute("SELECT county_code, state FROM cim.delivery WHERE id = %s", (out["delivery_id"],))
        assert cur.fetchone() == (county, "current")
        cur.execute("SELECT count(*) FROM cim.pipe_segment WHERE delivery_id = %s AND start_point_id IS NOT NULL",
                    (out["delivery_id"],))
        assert cur.fetchone()[0] == out["counts"]["pipe_segment"]
    conn.rollback()
