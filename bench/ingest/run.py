"""Ingest benchmark: our full `cim ingest` (read, validate, load) against `ogr2ogr -f PostgreSQL`.

Both load the same files (``synth.py``: 100k pipe points, ~100k pipe segments, 100k buildings
as zipped shapefiles in EPSG:4546) in the same run into a throwaway PostGIS cluster created
under a temporary directory: ours into the ``cim`` tables (validation, atomic versioned load),
ogr2ogr with ``--config PG_USE_COPY YES`` into a scratch schema, reprojected to EPSG:4490 like
ours, without validation. Each command runs under ``/usr/bin/time -v`` for wall time and peak
memory (maximum resident set size). Results go to ``bench/results/ingest-<stamp>.json`` and a
Markdown table to stdout.

    .venv/bin/python bench/ingest/run.py [--points 100001] [--buildings 100000] [--repeat 1]
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
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from synth import counts, write_delivery  # noqa: E402

from cim.embedded import EmbeddedCluster  # noqa: E402
from cim.migrate import migrate  # noqa: E402


def timed(cmd: list[str], env: dict[str, str]) -> dict:
    """Run under GNU time -v; return wall seconds, peak RSS (MB) and the exit code."""
    res = subprocess.run(["/usr/bin/time", "-v", *cmd], env=env, capture_output=True, text=True, cwd=ROOT)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", res.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr)
    if res.returncode != 0 or not wall:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}")
    h, m, s = wall.groups()
    return {"seconds": int(h or 0) * 3600 + int(m) * 60 + float(s), "peak_rss_mb": int(rss.group(1)) / 1024,
            "stdout": res.stdout[-2000:]}


def pg_conninfo(url: str) -> str:
    """libpq key=value form of a postgresql:// URL, for GDAL's PG: prefix."""
    u = urlparse(url)
    parts = {"host": u.hostname, "port": u.port, "dbname": u.path.lstrip("/"), "user": u.username,
             "password": u.password}
    return " ".join(f"{k}={v}" for k, v in parts.items() if v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=100_001, help="pipe points (segments = points - 1)")
    ap.add_argument("--buildings", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each tool; the best time is kept")
    ap.add_argument("--data", type=Path, default=RESULTS / "ingest-data")
    args = ap.parse_args()

    delivery = write_delivery(args.data, points=args.points, buildings=args.buildings,
                              name=f"bench_{args.points}_{args.buildings}.zip")
    rows = counts(args.points, args.buildings)
    total = sum(rows.values())
    home = Path(tempfile.mkdtemp(prefix="cim-bench-ingest-", dir="/tmp"))
    home.chmod(0o755)
    cluster = EmbeddedCluster(home / "pg")
    try:
        url = cluster.start().url
        import psycopg2
        conn = psycopg2.connect(url)
        conn.cursor().execute("CREATE EXTENSION IF NOT EXISTS postgis")
        conn.commit()
        migrate(conn)
        conn.cursor().execute("CREATE SCHEMA ogr_scratch")
        conn.commit()
        env = dict(os.environ, CIM_DATABASE_URL=url, CIM_HOME=str(home), CIM_LOG_LEVEL="WARNING")
        ours, theirs = [], []
        for i in range(args.repeat):
            county = f"43{i:04d}"
            ours.append(timed([str(ROOT / ".venv" / "bin" / "cim"), "ingest", str(delivery), "--county", county,
                               "--json"], env))
            out = json.loads(ours[-1]["stdout"].strip().splitlines()[-1])
            assert out["state"] == "loaded" and out["counts"] == rows, out
            theirs.append(timed(["ogr2ogr", "--config", "PG_USE_COPY", "YES", "-f", "PostgreSQL",
                                 f"PG:{pg_conninfo(url)}", f"/vsizip/{delivery}", "-lco", "SCHEMA=ogr_scratch",
                                 "-lco", "SPATIAL_INDEX=GIST", "-nlt", "PROMOTE_TO_MULTI", "-t_srs", "EPSG:4490",
                                 "-overwrite", "-gt", "65536"], env))
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM ogr_scratch.jspoint")
            assert cur.fetchone()[0] == rows["pipe_point"]
        conn.close()
    finally:
        cluster.destroy()
        shutil.rmtree(home, ignore_errors=True)

    best_ours = min(ours, key=lambda r: r["seconds"])
    best_ogr = min(theirs, key=lambda r: r["seconds"])
    result = {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "delivery": str(delivery), "size_mb": round(delivery.stat().st_size / 2**20, 1), "rows": rows,
        "cim_ingest": {k: round(v, 2) for k, v in best_ours.items() if k != "stdout"},
        "ogr2ogr": {k: round(v, 2) for k, v in best_ogr.items() if k != "stdout"},
        "ratio": round(best_ours["seconds"] / best_ogr["seconds"], 2),
        "rows_per_s": {"cim_ingest": round(total / best_ours["seconds"]),
                       "ogr2ogr": round(total / best_ogr["seconds"])},
        "cpus": os.cpu_count(), "repeat": args.repeat,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"ingest-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"| tool | rows | time s | rows/s | peak RSS MB |\n|---|---|---|---|---|\n"
          f"| cim ingest (read + validate + load) | {total} | {best_ours['seconds']:.1f} | "
          f"{result['rows_per_s']['cim_ingest']} | {best_ours['peak_rss_mb']:.0f} |\n"
          f"| ogr2ogr PG_USE_COPY (no validation) | {total} | {best_ogr['seconds']:.1f} | "
          f"{result['rows_per_s']['ogr2ogr']} | {best_ogr['peak_rss_mb']:.0f} |\n\n"
          f"ratio cim/ogr2ogr = {result['ratio']} (target ≤ 1.5); results: {out}")


if __name__ == "__main__":
    main()
