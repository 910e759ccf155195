"""The province batch on Dask gives the files of the single-process paths: a two-county fixture,
3D Tiles folders file for file and a PMTiles archive byte for byte; the CLI on a local cluster and
on a running scheduler (``--scheduler``), and a clear error for an unreachable one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from batch import pmtiles as batch_pmtiles
from batch import threed as batch_threed
from cim.settings import TileSettings
from layers.catalog import load_catalog
from tiles.pmtiles_export import export
from tiles.threed.build import build_folder

ROOT = Path(__file__).resolve().parents[2]
CIM = Path(sys.executable).parent / "cim"


@pytest.fixture(scope="module")
def province(make_database):
    """Two counties (430521, 430522) of 600 buildings and 150 pipe points each."""
    url = make_database("cim_batch")
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute((ROOT / "bench" / "batch" / "synth.sql").read_text(encoding="utf-8"),
                    {"counties": 2, "n": 600, "p": 150})
        cur.execute("SELECT county_code, count(*) FROM cim.building GROUP BY 1 ORDER BY 1")
        assert cur.fetchall() == [("430521", 600), ("430522", 600)]
    conn.close()
    return url


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "build.json"}


@pytest.mark.parametrize("layer", ["buildings", "pipelines"])
def test_tiles3d_on_dask_equals_single_process(province, client, tmp_path, layer):
    single = build_folder(province, layer, tmp_path / "single", workers=1, per_tile=60)
    dask = batch_threed.build(client, province, layer, tmp_path / "dask", per_tile=60)
    assert single["tiles"] > 8 and dask["engine"] == "dask"
    a, b = _files(tmp_path / "single"), _files(tmp_path / "dask")
    assert len(a) == single["tiles"] + 1 and "tileset.json" in a
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a), "same files, same bytes"
    for key in ("features", "tiles", "bytes", "versions"):
        assert single[key] == dask[key]
    stamped = json.loads((tmp_path / "dask" / "build.json").read_text())
    assert stamped["versions"] == single["versions"] and stamped["features"] == single["features"]


def test_tile_blocks_group_neighbours_and_cover_every_tile():
    jobs = [(f"{lv}/{x}/{y}", [0] * (1 + x), None, "glb") for lv, x, y in
            [(3, 0, 0), (3, 1, 0), (3, 6, 7), (3, 7, 7), (2, 0, 3), (3, 2, 2)]]
    blocks = batch_threed.tile_blocks(jobs, 3)
    assert sorted(j[0] for b in blocks for j in b) == sorted(j[0] for j in jobs)
    assert len(blocks) >= 3
    keys = [{j[0] for j in b} for b in blocks]
    def block(key):
        return next(k for k in keys if key in k)
    assert block("3/6/7") == {"3/6/7", "3/7/7"}                  # neighbours share a block, far tiles do not
    assert {"3/0/0", "3/1/0"} <= block("3/0/0") and "3/6/7" not in block("3/0/0")
    assert sum(len(j[1]) for j in blocks[0]) >= sum(len(j[1]) for j in blocks[-1])


def test_pmtiles_on_dask_is_byte_identical(province, client, tmp_path):
    catalog, settings = load_catalog(), TileSettings()
    single = export(province, catalog, settings, "buildings,pipeline_segments", (12, 15), tmp_path / "single.pmtiles",
                    workers=1)
    seen: list[tuple[int, int]] = []
    dask = batch_pmtiles.build(client, province, catalog, settings, "buildings,pipeline_segments", (12, 15),
                               tmp_path / "dask.pmtiles", progress=lambda d, t: seen.append((d, t)))
    assert single.tiles_written > 10 and dask.tiles_written == single.tiles_written
    assert (tmp_path / "single.pmtiles").read_bytes() == (tmp_path / "dask.pmtiles").read_bytes()
    assert seen and seen[-1] == (single.tiles_rendered, single.tiles_rendered)


def _cim(url: str, *args: str) -> subprocess.CompletedProcess:
    import os
    return subprocess.run([str(CIM), "batch", *args], capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env=dict(os.environ, CIM_DATABASE_URL=url))


def test_cli_on_a_running_scheduler_and_locally(province, client, tmp_path):
    address = client.scheduler.address           # the module's cluster stands in for a real one
    res = _cim(province, "tiles3d", "--layer", "buildings", "--per-tile", "60", "--out", str(tmp_path / "remote"),
               "--scheduler", address)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])[0]["engine"] == "dask"
    res = _cim(province, "pmtiles", "--layers", "buildings", "--zoom", "12-14", "--out", str(tmp_path / "b.pmtiles"),
               "--workers", "1")
    assert res.returncode == 0, res.stderr
    assert "wrote" in res.stdout and (tmp_path / "b.pmtiles").stat().st_size > 0
    single = build_folder(province, "buildings", tmp_path / "single", workers=1, per_tile=60)
    assert _files(tmp_path / "single") == _files(tmp_path / "remote" / "buildings") and single["tiles"] > 8


def test_cli_unreachable_scheduler_is_a_clear_error(province, tmp_path):
    res = _cim(province, "tiles3d", "--layer", "buildings", "--out", str(tmp_path / "x"), "--scheduler",
               "tcp://127.0.0.1:9")
    assert res.returncode == 2
    assert "Dask" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "x").exists()
