"""EXPLAIN ANALYZE one or every indicator of the catalogue on a loaded county (tuning aid).

    .venv/bin/python bench/healthcheck/explain.py --county 430703 [--year 2025] [--only ID ...] [--plan] [--refresh]

Prepares the run's areas exactly as a run does (with the stored membership sets that are current;
``--refresh`` first brings them up to date as a run does), then times each indicator's statement,
with the temporary structures it needs, in a transaction that is rolled back. Prints seconds per
indicator, and the plan with --plan.
"""

from __future__ import annotations

import argparse
import os
import time

from cim import db
from cim.settings import load
from cimplus.healthcheck import areas, catalog, membership
from cimplus.healthcheck.run import missing_requirements
from cimplus.healthcheck.template import Expander, ledger_present
from layers.catalog import load_catalog


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the backend process has used (the machine may be shared)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--county", required=True)
    ap.add_argument("--year", type=int, default=2025)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--plan", action="store_true", help="EXPLAIN ANALYZE and print the plan")
    ap.add_argument("--estimate", action="store_true", help="EXPLAIN only (plan without running)")
    ap.add_argument("--refresh", action="store_true", help="refresh the stored membership sets first")
    args = ap.parse_args()
    cat, layers = catalog.load(), load_catalog()
    conn = db.connect(load().db, application_name="cim-hc-explain")
    if args.refresh:
        done = membership.refresh(conn, [args.county], args.year, membership.sources(cat.indicators, layers))
        print(f"refresh: {done['seconds']} s, " + ", ".join(f"{d['table']}/{d['kind']} {d['parts']} parts "
                                                             f"{d['seconds']} s" for d in done["refreshed"]))
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
        cur.execute("SET statement_timeout = 0")
        cur.execute("SET max_parallel_workers_per_gather = 0")
        cur.execute("SET work_mem = '256MB'")
        t0, c0 = time.monotonic(), cpu_s(pid)
        aset = areas.prepare(cur, [args.county], list(catalog.ADMIN_LEVELS), args.year)
        print(f"areas: {aset.count} in {time.monotonic() - t0:.2f} s, cpu {cpu_s(pid) - c0:.2f} s (EPSG:{aset.srid})")
        present, _ = ledger_present(cur, cat.hazard_ledger)
        part_sets, used = membership.usable(cur, aset, membership.sources(cat.indicators, layers))
        names = ", ".join(f"{d['table']}/{d['kind']}" for d in used)
        print(f"stored parts used: {names or 'none'}")
        ex = Expander(layers, cat, aset.scope(args.year, present, part_sets))
        total = total_cpu = 0.0
        for ind in cat.indicators:
            if args.only and ind.id not in args.only:
                continue
            if missing_requirements(cur, ind, ex, cat, aset):
                print(f"{ind.id:<32} skipped (missing data)")
                continue
            text = ind.formula if ind.kind == "measure" else (
                "WITH f AS MATERIALIZED (SELECT DISTINCT x.area_id, x.feature_id FROM (" + ind.features + ") x), "
                "n AS MATERIALIZED (SELECT area_id, count(*) AS n FROM f GROUP BY area_id) "
                "SELECT a.id AS area_id, coalesce(n.n, 0) FROM {areas} a LEFT JOIN n ON n.area_id = a.id")
            stmt = ex.expand(text, ind)
            t0, c0 = time.monotonic(), cpu_s(pid)
            aset.ensure(cur, stmt.needs)      # the structures this statement reads, charged to it
            prefix = "EXPLAIN " if args.estimate else "EXPLAIN (ANALYZE, BUFFERS) " if args.plan else ""
            cur.execute(prefix + stmt.sql, stmt.params)
            rows = cur.fetchall()
            dt, dc = time.monotonic() - t0, cpu_s(pid) - c0
            total += dt
            total_cpu += dc
            print(f"{ind.id:<32} {dt:8.2f} s  cpu {dc:7.2f} s")
            if args.plan or args.estimate:
                print("\n".join(r[0] for r in rows))
        print(f"{'total':<32} {total:8.2f} s  cpu {total_cpu:7.2f} s")
    conn.rollback()
    conn.close()


if __name__ == "__main__":
    main()
