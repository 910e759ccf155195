"""The command line: `cim tiles3d build` (both layers, exit codes) and `cim ingest dem.tif`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tiles3d.checks import tileset_problems
from tiles3d.conftest import ROOT, write_dem

CIM = Path(sys.executable).parent / "cim"


def run(args: list[str], url: str, home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, CIM_DATABASE_URL=url, CIM_HOME=str(home))
    return subprocess.run([str(CIM), *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def test_build_both_layers(t3d_url, tmp_path):
    res = run(["tiles3d", "build", "--out", str(tmp_path / "out"), "--per-tile", "60"], t3d_url, tmp_path)
    assert res.returncode == 0, res.stderr
    stats = json.loads(res.stdout.strip().splitlines()[-1])
    assert [s["layer"] for s in stats] == ["buildings", "pipelines"]
    for s in stats:
        folder = tmp_path / "out" / s["layer"]
        doc = json.loads((folder / "tileset.json").read_text())
        assert tileset_problems(doc) == []
        assert len(list((folder / "content").rglob("*.glb"))) == s["tiles"] > 1
        assert json.loads((folder / "build.json").read_text())["versions"] == s["versions"]


def test_build_default_folder_and_b3dm(t3d_url, tmp_path):
    res = run(["tiles3d", "build", "--layer", "buildings", "--format", "b3dm", "--workers", "1"], t3d_url, tmp_path)
    assert res.returncode == 0, res.stderr
    assert list((tmp_path / "3dtiles" / "buildings" / "content").rglob("*.b3dm"))


def test_bad_arguments_and_database(t3d_url, tmp_path):
    res = run(["tiles3d", "build", "--layer", "roads"], t3d_url, tmp_path)
    assert res.returncode == 2
    res = run(["tiles3d", "build", "--layer", "buildings"], "postgresql://nobody:x@127.0.0.1:1/none", tmp_path)
    assert res.returncode == 2
    assert "错误" in res.stderr and "error" in res.stderr and "Traceback" not in res.stderr


def test_ingest_dem_tif(t3d_url, tmp_path):
    import psycopg2
    res = run(["ingest", str(write_dem(tmp_path / "dem.tif"))], t3d_url, tmp_path)
    try:
        assert res.returncode == 0, res.stderr
        assert len(list((tmp_path / "dem").glob("*.tif"))) == 1
    finally:
        conn = psycopg2.connect(t3d_url)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM cim.dem WHERE is_current AND file_path LIKE %s", (str(tmp_path) + "%",))
            current = cur.fetchone()[0]
            cur.execute("DELETE FROM cim.dem WHERE file_path LIKE %s", (str(tmp_path) + "%",))
            cur.execute("UPDATE cim.dem SET is_current = true WHERE id = (SELECT max(id) FROM cim.dem)")
        conn.close()
    assert current == 1
