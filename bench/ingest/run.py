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
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from synth import counts, write_delivery  # noqa: E402

from bench.common import migrated_cluster, settle, timed  # noqa: E402


def pg_conninfo(url: str) -> str:
    """libpq key=value form of a postgresql:// URL, for GDAL's PG: prefix."""
    u = urlparse(url)
    parts = {"host": u.hostname, "port": u.port, "dbname": u.path.lstrip("/"), "user": u.username,
             "password": u.password}
    return " ".join(f"{k}={v}" for k, v in parts.items() if v)


def index_cost(url: str, delivery: Path) -> dict[str, dict[str, float]]:
    """Seconds to COPY each target's rows into ``cim.<target>`` with all its indexes (rolled
    back) against an index-free copy of the table plus a bulk GiST build afterwards (what
    ogr2ogr does): the share of the load that is index maintenance on the live tables."""
    import io

    import psycopg2

    from ingest.load import rows
    from ingest.pipeline import read_delivery

    conn = psycopg2.connect(url)
    cur = conn.cursor()
    cur.execute("INSERT INTO cim.delivery (county_code, file_name, sha256, submitted_by) "
                "VALUES ('439999', 'bench', repeat('0', 64), 'bench') RETURNING id")
    did = cur.fetchone()[0]
    conn.commit()
    out: dict[str, dict[str, float]] = {}
    delivery = read_delivery(delivery, county="439999")
    for b in delivery.batches:
        frame = rows.copy_frame(b, b.target, rows.table_columns(b.target))
        frame.insert(0, "county_code", "439999")
        frame.insert(1, "delivery_id", did)
        if b.target == "pipe_segment":  # ends unresolved here: no foreign-key lookups to time
            frame = frame.drop(columns=[c for c in ("start_point_id", "end_point_id") if c in frame])
        text = rows._csv(frame).getvalue()
        cols = ", ".join(rows.quote_ident(c) for c in frame.columns)
        cur.execute("SET LOCAL gin_pending_list_limit = '512MB'")
        t = time.monotonic()
        cur.copy_expert(f"COPY cim.{b.target} ({cols}) FROM STDIN WITH (FORMAT csv)", io.BytesIO(text))
        indexed = time.monotonic() - t
        conn.rollback()
        cur.execute(f"CREATE TEMP TABLE bare (LIKE cim.{b.target} INCLUDING DEFAULTS)")
        t = time.monotonic()
        cur.copy_expert(f"COPY bare ({cols}) FROM STDIN WITH (FORMAT csv)", io.BytesIO(text))
        bare = time.monotonic() - t
        t = time.monotonic()
        cur.execute("CREATE INDEX ON bare USING gist (geom)")
        gist = time.monotonic() - t
        conn.rollback()
        out[b.target] = {"all_indexes_s": round(indexed, 2), "no_index_s": round(bare, 2),
                         "bulk_gist_s": round(gist, 2)}
    conn.close()
    return out


def _scratch_tables(conn) -> list[str]:
    """The tables ogr2ogr created in the scratch schema."""
    with conn.cursor() as cur:
        cur.execute("SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'ogr_scratch' ORDER BY 1")
        names = [r[0] for r in cur.fetchall()]
    conn.commit()
    return names


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=100_001, help="pipe points (segments = points - 1)")
    ap.add_argument("--buildings", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each tool; the best time is kept")
    ap.add_argument("--data", type=Path, default=RESULTS / "ingest-data")
    ap.add_argument("--no-explain", action="store_true", help="skip the index-maintenance measurement")
    args = ap.parse_args()

    delivery = write_delivery(args.data, points=args.points, buildings=args.buildings,
                              name=f"bench_{args.points}_{args.buildings}.zip")
    rows = counts(args.points, args.buildings)
    total = sum(rows.values())
    home = Path(tempfile.mkdtemp(prefix="cim-bench-ingest-", dir="/tmp"))
    home.chmod(0o755)
    cluster, url = migrated_cluster(home / "pg")
    try:
        import psycopg2
        conn = psycopg2.connect(url)
        env = dict(os.environ, CIM_DATABASE_URL=url, CIM_HOME=str(home), CIM_LOG_LEVEL="WARNING")
        ours, theirs = [], []
        for i in range(args.repeat):
            county = f"43{i:04d}"
            ours.append(timed([str(ROOT / ".venv" / "bin" / "cim"), "ingest", str(delivery), "--county", county,
                               "--json"], env))
            out = json.loads(ours[-1]["stdout"].strip().splitlines()[-1])
            assert out["state"] == "loaded" and out["counts"] == rows, out
            ours[-1]["vacuum_s"] = settle(url, [f"cim.{t}" for t in rows])
            with conn.cursor() as cur:  # a fresh scratch schema for every ogr2ogr run
                cur.execute("DROP SCHEMA IF EXISTS ogr_scratch CASCADE; CREATE SCHEMA ogr_scratch")
            conn.commit()
            theirs.append(timed(["ogr2ogr", "--config", "PG_USE_COPY", "YES", "-f", "PostgreSQL",
                                 f"PG:{pg_conninfo(url)}", f"/vsizip/{delivery}", "-lco", "SCHEMA=ogr_scratch",
                                 "-lco", "SPATIAL_INDEX=GIST", "-nlt", "PROMOTE_TO_MULTI", "-t_srs", "EPSG:4490",
                                 "-overwrite", "-gt", "65536"], env))
            theirs[-1]["vacuum_s"] = settle(url, [f"ogr_scratch.{t}" for t in _scratch_tables(conn)])
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM ogr_scratch.jspoint")
            assert cur.fetchone()[0] == rows["pipe_point"]
        conn.close()
        explain = None if args.no_explain else index_cost(url, delivery)
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
        "cim_phases_s": json.loads(best_ours["stdout"].strip().splitlines()[-1]).get("seconds"),
        "index_maintenance": explain,
        "cpus": os.cpu_count(), "load_avg": os.getloadavg(), "repeat": args.repeat,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"ingest-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"| tool | rows | time s | rows/s | peak RSS MB |\n|---|---|---|---|---|\n"
          f"| cim ingest (read + validate + load) | {total} | {best_ours['seconds']:.1f} | "
          f"{result['rows_per_s']['cim_ingest']} | {best_ours['peak_rss_mb']:.0f} |\n"
          f"| ogr2ogr PG_USE_COPY (no validation) | {total} | {best_ogr['seconds']:.1f} | "
          f"{result['rows_per_s']['ogr2ogr']} | {best_ogr['peak_rss_mb']:.0f} |\n\n"
          f"ratio cim/ogr2ogr = {result['ratio']} (target ≤ 1.5); cim phases (s, validate and copy overlap): "
          f"{result['cim_phases_s']}; load average {result['load_avg'][0]:.1f} on {result['cpus']} CPUs\n"
          f"upkeep after each load (VACUUM ANALYZE of the loaded tables, untimed above): cim "
          f"{', '.join(str(r['vacuum_s']) for r in ours)} s, ogr2ogr {', '.join(str(r['vacuum_s']) for r in theirs)} s; "
          f"all runs cim {', '.join(str(r['seconds']) for r in ours)} s, ogr2ogr {', '.join(str(r['seconds']) for r in theirs)} s")
    for target, t in (explain or {}).items():
        print(f"COPY {target}: {t['all_indexes_s']} s into the live table (all indexes) vs {t['no_index_s']} s "
              f"into an index-free table + {t['bulk_gist_s']} s bulk GiST")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
