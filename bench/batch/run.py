"""Province-scale batch on Dask: the same build on 1 and on 2 Dask workers, and the single-process path.

A throwaway PostGIS cluster holds a synthetic province (``synth.sql``: COUNTIES counties side by side,
each with BUILDINGS buildings and PIPES pipe points). Under ``/usr/bin/time -v``, in one run:

- 3D Tiles of the buildings: ``cim tiles3d build --workers 1`` (single process), then
  ``cim batch tiles3d --workers 1`` and ``--workers 2`` (a LocalCluster of 1 / 2 processes);
- the PMTiles pyramid of the buildings: ``cim tiles export --workers 1``, then ``cim batch pmtiles``
  on 1 and 2 workers.

Every output is hashed: the Dask folders and archives must equal the single-process ones (exit 1
otherwise). Prints a Markdown table and writes ``bench/results/batch-<stamp>.json``.

    .venv/bin/python bench/batch/run.py [--counties 4] [--buildings 250000] [--pipes 20000] [--zoom 10-15]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import ROOT, migrated_cluster, timed  # noqa: E402

CIM = str(Path(sys.executable).parent / "cim")


def digest(path: Path) -> str:
    """sha256 over a file, or over a folder's files (relative names and bytes; build.json aside)."""
    h = hashlib.sha256()
    if path.is_file():
        h.update(path.read_bytes())
        return h.hexdigest()[:16]
    for p in sorted(p for p in path.rglob("*") if p.is_file() and p.name != "build.json"):
        h.update(str(p.relative_to(path)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--counties", type=int, default=4)
    ap.add_argument("--buildings", type=int, default=250_000, help="per county")
    ap.add_argument("--pipes", type=int, default=20_000, help="pipe points per county")
    ap.add_argument("--zoom", default="10-15")
    ap.add_argument("--skip-pmtiles", action="store_true")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="cim-bench-batch-", dir="/tmp"))
    home.chmod(0o755)
    cluster, url = migrated_cluster(home)
    rows: list[dict] = []
    try:
        t0 = time.perf_counter()
        conn = psycopg2.connect(url)
        with conn, conn.cursor() as cur:
            cur.execute((Path(__file__).parent / "synth.sql").read_text(encoding="utf-8"),
                        {"counties": args.counties, "n": args.buildings, "p": args.pipes})
            cur.execute("SELECT count(*), count(DISTINCT county_code) FROM cim.building")
            total, counties = cur.fetchone()
        conn.close()
        print(f"synthetic province: {total:,} buildings in {counties} counties, "
              f"{time.perf_counter() - t0:.0f} s to generate", flush=True)
        env = dict(os.environ, CIM_DATABASE_URL=url, CIM_HOME=str(home))
        out = home / "out"
        runs = [("3D Tiles buildings", "single process", [CIM, "tiles3d", "build", "--layer", "buildings",
                                                         "--workers", "1", "--out", str(out / "t3d-single")],
                 out / "t3d-single" / "buildings")]
        for w in (1, 2):
            runs.append(("3D Tiles buildings", f"Dask, {w} worker{'s' if w > 1 else ''}",
                         [CIM, "batch", "tiles3d", "--layer", "buildings", "--workers", str(w),
                          "--out", str(out / f"t3d-dask{w}")], out / f"t3d-dask{w}" / "buildings"))
        if not args.skip_pmtiles:
            runs.append((f"PMTiles buildings z{args.zoom}", "single process",
                         [CIM, "tiles", "export", "--layers", "buildings", "--zoom", args.zoom, "--workers", "1",
                          "--quiet", "--out", str(out / "single.pmtiles")], out / "single.pmtiles"))
            for w in (1, 2):
                runs.append((f"PMTiles buildings z{args.zoom}", f"Dask, {w} worker{'s' if w > 1 else ''}",
                             [CIM, "batch", "pmtiles", "--layers", "buildings", "--zoom", args.zoom,
                              "--workers", str(w), "--out", str(out / f"dask{w}.pmtiles")], out / f"dask{w}.pmtiles"))
        for job, engine, cmd, result in runs:
            print(f"{job}: {engine} …", flush=True)
            m = timed(cmd, env)
            rows.append({"job": job, "engine": engine, "seconds": round(m["seconds"], 1),
                         "peak_rss_mb": m["peak_rss_mb"], "digest": digest(result),
                         "command": " ".join(Path(c).name if c == CIM else c for c in cmd)})
            print(f"  {rows[-1]['seconds']} s, digest {rows[-1]['digest']}", flush=True)
    finally:
        cluster.destroy()
        shutil.rmtree(home, ignore_errors=True)
    ok = True
    print("\n| job | engine | wall s | speed-up vs 1 Dask worker | same output as single process |")
    print("|---|---|---|---|---|")
    for r in rows:
        base = next(x for x in rows if x["job"] == r["job"] and x["engine"] == "single process")
        one = next(x for x in rows if x["job"] == r["job"] and x["engine"].startswith("Dask, 1"))
        same = r["digest"] == base["digest"]
        ok &= same
        speed = f"{one['seconds'] / r['seconds']:.2f}×" if r["engine"].startswith("Dask") else ""
        print(f"| {r['job']} | {r['engine']} | {r['seconds']} | {speed} | {'yes' if same else 'NO'} |")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / f"batch-{stamp}.json").write_text(json.dumps(
        {"counties": args.counties, "buildings_per_county": args.buildings, "pipes_per_county": args.pipes,
         "cores": os.cpu_count(), "load_before": os.getloadavg(), "runs": rows}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
