"""3D Tiles benchmark: ``cim tiles3d build`` against ``py3dtiles export`` on the same buildings.

For each size (default 20k and 200k buildings) a throwaway PostGIS cluster under /tmp gets the
synthetic county of ``synth.sql`` (buildings plus a pipe network). Ours builds the buildings
layer (3D Tiles 1.1 GLB, 2 worker processes) and the pipelines layer; py3dtiles 12 (its own
venv, ``bench/.venv-py3dtiles``) exports the same footprints extruded in PostGIS with
``ST_Extrude`` (postgis_sfcgal) to the same heights, in a projected CRS (EPSG:4546) as it
requires. Every command runs under ``/usr/bin/time -v`` (wall time of the whole command, Python
start-up included, and peak RSS of the largest process); ours also reports its build time without
start-up (``build.json``). Every GLB (ours) and the GLB inside every b3dm (py3dtiles) goes through the Khronos
glTF validator; py3dtiles's b3dm layout and tileset are checked with the rules of
tests/tiles3d/checks.py. Results: ``bench/results/tiles3d-<stamp>.json`` and a Markdown table.

    .venv/bin/python bench/tiles3d/run.py [--sizes 20000 200000] [--pipes 20000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = ROOT / "bench" / "results"
PY3DTILES = ROOT / "bench" / ".venv-py3dtiles" / "bin" / "py3dtiles"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from tiles3d.checks import b3dm_problems, tileset_problems  # noqa: E402

from bench.common import migrated_cluster, timed  # noqa: E402


def folder_bytes(path: Path, suffix: str) -> tuple[int, int]:
    """(number of content files, total bytes of the folder)."""
    files = list(path.rglob(f"*.{suffix}"))
    return len(files), sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def validate(files: list[Path]) -> dict:
    """gltf-validator totals over files (batched so the argument list stays short)."""
    tot = {"files": 0, "errors": 0, "warnings": 0, "files_with_errors": 0, "codes": {}}
    for i in range(0, len(files), 400):
        res = subprocess.run(["node", str(ROOT / "tests" / "tiles3d" / "validate_gltf.mjs"),
                              *map(str, files[i:i + 400])], capture_output=True, text=True, cwd=ROOT / "web")
        for rep in json.loads(res.stdout):
            tot["files"] += 1
            tot["errors"] += rep["errors"]
            tot["warnings"] += rep["warnings"]
            tot["files_with_errors"] += rep["errors"] > 0
            for msg in rep["messages"]:
                code = msg.split(" ")[1]
                tot["codes"][code] = tot["codes"].get(code, 0) + 1
    return tot


def tileset_report(path: Path, kind: str) -> dict:
    """Tileset rule violations (every tileset.json under path) and b3dm layout problems."""
    probs: dict[str, int] = {}
    for ts in path.rglob("tileset.json"):
        for p in tileset_problems(json.loads(ts.read_text())):
            key = re.sub(r"[\d.\[\], -]+", " ", p).strip()[:60]
            probs[key] = probs.get(key, 0) + 1
    if kind == "b3dm":
        for f in path.rglob("*.b3dm"):
            for p in b3dm_problems(f.read_bytes()):
                key = re.sub(r"\d+", "N", p)
                probs[key] = probs.get(key, 0) + 1
    return probs


def setup(url: str, n: int, pipes: int) -> None:
    """Synthetic data plus the ST_Extrude table py3dtiles reads (footprints are single polygons)."""
    env = dict(os.environ)
    subprocess.run(["psql", url, "-q", "-v", "ON_ERROR_STOP=1", "-v", f"n={n}", "-v", f"p={pipes}",
                    "-f", str(HERE / "synth.sql")], check=True, env=env)
    import psycopg2

    from tiles.threed.build import plan
    conn = psycopg2.connect(url)
    p = plan(conn, "buildings")          # the heights our builder uses, so both extrude the same blocks
    heights = list(zip(p.index.ids.tolist(), (p.index.params["top"] - p.index.params["base"]).tolist(), strict=True))
    with conn, conn.cursor() as cur:
        cur.execute("CREATE EXTENSION IF NOT EXISTS postgis_sfcgal")
        cur.execute("CREATE TEMP TABLE h (id bigint, h float8)")
        psycopg2.extras.execute_values(cur, "INSERT INTO h VALUES %s", heights, page_size=10000)
        cur.execute("CREATE SCHEMA bench")
        cur.execute("CREATE TABLE bench.extruded AS SELECT b.id, ST_Extrude(ST_Force3D(ST_Transform(ST_GeometryN(b.geom, 1), "
                    "4546)), 0, 0, h.h)::geometry(PolyhedralSurfaceZ, 4546) AS geom FROM cim.building b JOIN h USING (id)")
    conn.close()


def run_size(n: int, pipes: int, work: Path) -> dict:
    """One size: fresh cluster, data, both builds, validation."""
    home = work / f"n{n}"
    home.mkdir()
    cluster, url = migrated_cluster(home / "pg")
    try:
        setup(url, n, pipes)
        env = dict(os.environ, CIM_DATABASE_URL=url, CIM_HOME=str(home))
        out = {"buildings": n}
        ours = home / "ours"
        t = timed([str(ROOT / ".venv" / "bin" / "cim"), "tiles3d", "build", "--layer", "buildings", "--out", str(ours)],
                  env)
        tiles, size = folder_bytes(ours / "buildings", "glb")
        inner = json.loads((ours / "buildings" / "build.json").read_text())["seconds"]
        t.pop("stdout")
        out["ours"] = {**t, "buildings_per_s": round(n / t["seconds"]), "tiles": tiles, "bytes": size,
                       "bytes_per_building": round(size / n), "build_seconds": inner,
                       "buildings_per_s_excluding_startup": round(n / inner)}
        t = timed([str(ROOT / ".venv" / "bin" / "cim"), "tiles3d", "build", "--layer", "pipelines", "--out", str(ours)],
                  env)
        inner = json.loads((ours / "pipelines" / "build.json").read_text())["seconds"]
        t.pop("stdout")
        out["ours_pipelines"] = {**t, "segments": pipes - 1, "points": pipes, "build_seconds": inner,
                                 "segments_per_s": round((pipes - 1) / t["seconds"])}
        out["ours"]["validator"] = validate(sorted((ours / "buildings").rglob("*.glb")))
        out["ours"]["pipelines_validator"] = validate(sorted((ours / "pipelines").rglob("*.glb")))
        out["ours"]["tileset_problems"] = tileset_report(ours, "glb")
        print(json.dumps(out), file=sys.stderr, flush=True)
        if PY3DTILES.exists():
            theirs = home / "py3dtiles"
            u = re.match(r"postgresql://([^:]+):([^@]+)@([^:]+):(\d+)/(\w+)", url)
            user, pw, host, port, db = u.groups()
            conninfo = f"dbname={db} host={host} port={port} user={user} password={pw}"
            t = timed([str(PY3DTILES), "export", "-D", conninfo, "-t", "bench.extruded", "-c", "geom", "-i", "id",
                       "-s", str(theirs)], env)
            tiles, size = folder_bytes(theirs, "b3dm")
            t.pop("stdout")
            out["py3dtiles"] = {**t, "buildings_per_s": round(n / t["seconds"]), "tiles": tiles, "bytes": size,
                                "bytes_per_building": round(size / n)}
            out["py3dtiles"]["validator"] = validate(sorted(theirs.rglob("*.b3dm")))
            out["py3dtiles"]["tileset_problems"] = tileset_report(theirs, "b3dm")
            out["ratio_buildings_per_s"] = round(out["ours"]["buildings_per_s"] / out["py3dtiles"]["buildings_per_s"], 2)
        return out
    finally:
        cluster.destroy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    ap.add_argument("--pipes", type=int, default=20_000, help="pipe points (segments = points − 1)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cim-bench-3d-", dir="/tmp"))
    work.chmod(0o755)
    try:
        results = [run_size(n, args.pipes, work) for n in args.sizes]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"tiles3d-{stamp}.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    print("| buildings | tool | wall s | buildings/s | tiles | bytes/building | peak RSS MB | validator errors "
          "(files with errors) | tileset/b3dm problems |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        for tool in ("ours", "py3dtiles"):
            if tool not in r:
                continue
            x = r[tool]
            v = x["validator"]
            probs = sum(x["tileset_problems"].values())
            print(f"| {r['buildings']:,} | {tool} | {x['seconds']:.1f} | {x['buildings_per_s']:,} | {x['tiles']:,} | "
                  f"{x['bytes_per_building']:,} | {x['peak_rss_mb']:.0f} | {v['errors']:,} ({v['files_with_errors']:,}"
                  f"/{v['files']:,}) | {probs:,} |")
        if "ratio_buildings_per_s" in r:
            print(f"| {r['buildings']:,} | ratio ours / py3dtiles | | {r['ratio_buildings_per_s']}× | | | | | |")
        p = r["ours_pipelines"]
        print(f"| {r['buildings']:,} | ours pipelines: {p['segments']:,} segments + {p['points']:,} points | "
              f"{p['seconds']:.1f} | {p['segments_per_s']:,} segments/s | | | {p['peak_rss_mb']:.0f} | "
              f"{r['ours']['pipelines_validator']['errors']} | |")
    print(f"\nresults: {RESULTS / f'tiles3d-{stamp}.json'}")


if __name__ == "__main__":
    main()
