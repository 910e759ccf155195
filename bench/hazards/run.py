"""Hazard-scan benchmark: a county of 1M buildings and 300k pipe segments with planted hazards.

In one run, against a throwaway PostGIS cluster under a temporary directory:

1. ``synth.py`` writes the county (COPY, one delivery per scope) and ANALYZEs it;
2. **full scan**: every enabled rule over the county, written to the ledger
   (``HazardService.run_scan``, two database connections), then the same scan again (all
   findings unchanged);
3. **G01 + G02 + G03, ours vs GeoPandas**: our dry run of the three rules against
   ``analyst.py`` (read from PostGIS, ``sjoin``, shapely/numpy), best of ``--repeat``; the two
   finding sets are compared key for key;
4. **rescan after one delivery**: a re-surveyed gas network (``synth.redeliver_gas``: every
   segment re-delivered as new rows, ``--moved`` of them 0.5 m off) and the incremental rescan
   the server would run for it (``incremental=True``).

Results go to ``bench/results/hazards-<stamp>.json`` and a Markdown table to stdout.

    .venv/bin/python bench/hazards/run.py [--blocks 100] [--repeat 2] [--moved 20] [--rotate 30]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import analyst  # noqa: E402
import psycopg2  # noqa: E402
import synth  # noqa: E402

from bench.common import migrated_cluster  # noqa: E402
from cim.settings import DatabaseSettings, HazardSettings, Settings  # noqa: E402
from cimplus.hazards.facility import county_frame  # noqa: E402
from cimplus.hazards.service import HazardService  # noqa: E402

PAIR_RULES = ["G01", "G02", "G03"]


def versions(url: str) -> dict[str, str]:
    import geopandas
    import shapely
    import sqlalchemy

    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_setting('server_version'), postgis_lib_version(), postgis_geos_version()")
        pg, postgis, geos = cur.fetchone()
    return {"python": platform.python_version(), "postgres": pg, "postgis": postgis, "geos_postgis": geos,
            "geopandas": geopandas.__version__, "shapely": shapely.__version__, "geos_shapely": shapely.geos_version_string,
            "sqlalchemy": sqlalchemy.__version__, "cpus": str(os.cpu_count())}


def ledger_keys(url: str, rules: list[str]) -> set[tuple[str, frozenset[str]]]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT rule_id, facility_keys FROM cim.hazard WHERE county_code = %s AND rule_id = ANY(%s) "
                    "AND is_current", (synth.COUNTY, rules))
        return {(r, frozenset(k)) for r, k in cur.fetchall()}


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, round(time.perf_counter() - t0, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--blocks", type=int, default=100, help="blocks per side (100: 1M buildings, 300k segments)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--moved", type=int, default=20, help="gas segments the re-delivery moves")
    ap.add_argument("--rotate", type=float, default=0.0,
                    help="turn the county by this many degrees (streets no longer run east-west / north-south)")
    ap.add_argument("--keep", action="store_true", help="keep the cluster (prints its URL)")
    args = ap.parse_args()
    synth.ROTATE_DEG = args.rotate
    home = Path(tempfile.mkdtemp(prefix="cim-bench-hazards-", dir="/tmp"))
    home.chmod(0o755)
    cluster, url = migrated_cluster(home)
    out: dict = {"run": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "blocks": args.blocks,
                 "rotate_deg": args.rotate, "load_avg_start": os.getloadavg()[0]}
    try:
        out["versions"] = versions(url)
        county, out["generate_s"] = timed(synth.generate, args.blocks)
        conn = psycopg2.connect(url)
        out["rows"], out["load_s"] = timed(synth.load, conn, county)
        print(f"# county {synth.COUNTY}: {out['rows']} in {out['load_s']} s", file=sys.stderr)
        settings = Settings(db=DatabaseSettings(database_url=url, home=home), hazards=HazardSettings(scan_workers=2))
        svc = HazardService(settings)

        report, out["full_scan_s"] = timed(svc.run_scan, synth.COUNTY)
        out["full_scan"] = {k: {"findings": c.findings, "seconds": c.seconds} for k, c in report.rules.items()}
        out["full_scan_phases"] = report.phases
        out["findings"] = report.totals()["findings"]
        print(f"# full scan phases {report.phases}", file=sys.stderr)
        again, out["full_rescan_s"] = timed(svc.run_scan, synth.COUNTY)
        out["full_rescan_phases"] = again.phases
        out["full_rescan"] = {k: c.seconds for k, c in again.rules.items()}
        print(f"# full rescan phases {again.phases}", file=sys.stderr)
        assert again.totals()["new"] == 0 and again.totals()["updated"] == 0, again.totals()
        print(f"# full scan {out['full_scan_s']} s ({out['findings']} findings), again {out['full_rescan_s']} s",
              file=sys.stderr)

        with conn.cursor() as cur:
            proj = county_frame(cur, synth.COUNTY).proj
        conn.rollback()
        ours_keys = ledger_keys(url, PAIR_RULES)
        ours_s, theirs_s, theirs_parts, theirs_keys = [], [], [], set()
        for _ in range(args.repeat):
            _, s = timed(svc.run_scan, synth.COUNTY, rule_ids=PAIR_RULES, dry_run=True)
            ours_s.append(s)
            theirs_keys, parts = analyst.run(url, synth.COUNTY, proj)
            theirs_s.append(parts["total_s"])
            theirs_parts.append(parts)
        out["pair_rules"] = {"ours_s": min(ours_s), "geopandas_s": min(theirs_s),
                             "geopandas_parts": min(theirs_parts, key=lambda p: p["total_s"]),
                             "ratio": round(min(theirs_s) / min(ours_s), 1),
                             "ratio_rules_only": round(min(p["rules_s"] for p in theirs_parts) / min(ours_s), 1),
                             "findings_ours": len(ours_keys), "findings_geopandas": len(theirs_keys),
                             "identical": ours_keys == theirs_keys,
                             "only_ours": sorted(map(str, ours_keys - theirs_keys))[:10],
                             "only_geopandas": sorted(map(str, theirs_keys - ours_keys))[:10]}
        print(f"# G01-G03: {out['pair_rules']}", file=sys.stderr)

        delivery, out["redeliver_s"] = timed(synth.redeliver_gas, conn, county, args.moved)
        report, out["rescan_after_delivery_s"] = timed(svc.run_scan, synth.COUNTY, incremental=True,
                                                        delivery_id=delivery)
        out["rescan"] = {k: {"mode": c.mode, "new": c.new, "updated": c.updated, "cleared": c.cleared,
                             "seconds": c.seconds} for k, c in report.rules.items()}
        out["rescan_phases"] = report.phases
        print(f"# rescan after a gas delivery {out['rescan_after_delivery_s']} s: {report.totals()}", file=sys.stderr)
        svc.close()
        conn.close()
    finally:
        out["load_avg_end"] = os.getloadavg()[0]
        if args.keep:
            print(f"# kept: {url}", file=sys.stderr)
        else:
            cluster.destroy()
            shutil.rmtree(home, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"hazards-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, ensure_ascii=False, indent=1, default=str))
    pr = out["pair_rules"]
    print("| run (UTC) | load avg | buildings | segments | full scan s | full rescan s | rescan after delivery s "
          "| G01–G03 ours s | GeoPandas s (load + rules) | ratio | identical findings |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {out['run'][11:16]} | {out['load_avg_start']:.1f}–{out['load_avg_end']:.1f} | {out['rows']['buildings']} "
          f"| {out['rows']['segments']} | {out['full_scan_s']} | {out['full_rescan_s']} | {out['rescan_after_delivery_s']} "
          f"| {pr['ours_s']} | {pr['geopandas_s']} ({pr['geopandas_parts']['load_s']} + {pr['geopandas_parts']['rules_s']}) "
          f"| **{pr['ratio']}** ({pr['ratio_rules_only']} rules only) | {'yes' if pr['identical'] else 'NO'} |")
    print(f"# results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
