"""Hazard-scan benchmark: a county of 1M buildings and 300k pipe segments with planted hazards.

In one run, against a throwaway PostGIS cluster under a temporary directory:

1. the county: ``--county synth`` (default): ``synth.py`` writes it (COPY, one delivery per
   scope) and ANALYZEs it; ``--county demo``: the demo generator scaled up to ``--buildings`` and
   ``--segments`` with ``--hazards`` planted gas hazards per rule G01–G03, loaded file by file
   through ``cim ingest`` (``democounty.py``), then VACUUM (ANALYZE);
2. **full scan**: every enabled rule over the county, written to the ledger
   (``HazardService.run_scan``, two database connections), then the same scan again (all
   findings unchanged);
3. **G01 + G02 + G03, ours vs GeoPandas**: our dry run of the three rules against
   ``analyst.py`` (read from PostGIS, ``sjoin``, shapely/numpy), best of ``--repeat``; the two
   finding sets are compared key for key;
4. **rescan after one delivery**: a re-surveyed gas network (``synth.redeliver_gas``: every
   segment re-delivered as new rows, ``--moved`` of them 0.5 m off; demo: 燃气管线.zip again
   with ``--moved`` main points 0.5 m north, through ``cim ingest``) and the incremental rescan
   the server would run for it (``incremental=True``).

Results go to ``bench/results/hazards-<county>-<stamp>.json`` and a Markdown table to stdout.
``--chunk-rows`` sets the ingest's chunk size (``CIM_INGEST_CHUNK_ROWS``) for loading the demo county.

    .venv/bin/python bench/hazards/run.py [--blocks 100] [--repeat 2] [--moved 20] [--rotate 30]
    .venv/bin/python bench/hazards/run.py --county demo [--buildings 1000000] [--segments 300000] [--hazards 300] \
        [--chunk-rows 25000]
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
from contextlib import closing
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import analyst  # noqa: E402
import democounty  # noqa: E402
import psycopg2  # noqa: E402
import synth  # noqa: E402

from bench.common import migrated_cluster, settle  # noqa: E402
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


def ledger_keys(url: str, county: str, rules: list[str]) -> set[tuple[str, frozenset[str]]]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT rule_id, facility_keys FROM cim.hazard WHERE county_code = %s AND rule_id = ANY(%s) "
                    "AND is_current", (county, rules))
        return {(r, frozenset(k)) for r, k in cur.fetchall()}


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, round(time.perf_counter() - t0, 2)


class SynthCounty:
    """``synth.py``'s county written by COPY."""

    code = synth.COUNTY

    def __init__(self, args: argparse.Namespace) -> None:
        synth.ROTATE_DEG = args.rotate
        self.blocks, self.moved = args.blocks, args.moved
        self.data: synth.County | None = None

    def load(self, url: str, home: Path, out: dict) -> dict[str, int]:
        self.data, out["generate_s"] = timed(synth.generate, self.blocks)
        with closing(psycopg2.connect(url)) as conn:
            return synth.load(conn, self.data)

    def redeliver(self, url: str) -> int:
        assert self.data is not None
        with closing(psycopg2.connect(url)) as conn:
            return synth.redeliver_gas(conn, self.data, self.moved)

    def planted(self) -> set[tuple[str, frozenset[str]]] | None:
        return None


class DemoCounty:
    """The demo generator's county scaled up, with planted gas hazards, through ``cim ingest``."""

    code = democounty.COUNTY

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.env: dict[str, str] = {}
        self.out = Path()
        self.manifest: dict = {}

    def load(self, url: str, home: Path, out: dict) -> dict[str, int]:
        a = self.args
        self.env, self.out = democounty.environment(url, home, a.chunk_rows), home / "demo"
        self.manifest, out["generate_s"] = timed(democounty.generate, self.out, self.env, a.buildings, a.segments,
                                                 a.hazards)
        out["manifest_counts"] = self.manifest["counts"]
        print(f"# generated {self.manifest['counts']} in {out['generate_s']} s", file=sys.stderr, flush=True)
        out["ingest_files_s"], out["ingest_s"] = timed(democounty.ingest, self.out, self.manifest, self.env)
        out["settle_s"] = settle(url, ["cim.building", "cim.pipe_segment", "cim.pipe_point"])
        return democounty.rows(url)

    def redeliver(self, url: str) -> int:
        return democounty.redeliver_gas(self.out, self.env, self.args.moved)

    def planted(self) -> set[tuple[str, frozenset[str]]] | None:
        return democounty.planted_keys(self.manifest)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--county", choices=["synth", "demo"], default="synth",
                    help="synth: synth.py's grid by COPY; demo: cim demo generate + cim ingest")
    ap.add_argument("--blocks", type=int, default=100, help="synth: blocks per side (100: 1M buildings, 300k segments)")
    ap.add_argument("--buildings", type=int, default=1_000_000, help="demo: buildings")
    ap.add_argument("--segments", type=int, default=300_000, help="demo: at least about this many pipe segments")
    ap.add_argument("--hazards", type=int, default=300, help="demo: planted gas hazards per rule G01, G02, G03")
    ap.add_argument("--chunk-rows", type=int, default=None,
                    help="demo: CIM_INGEST_CHUNK_ROWS of the ingest (default: the setting's, 25 000)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--moved", type=int, default=20, help="gas segments (demo: gas main points) the re-delivery moves")
    ap.add_argument("--rotate", type=float, default=0.0,
                    help="synth: turn the county by this many degrees (streets no longer run east-west / north-south)")
    ap.add_argument("--keep", action="store_true", help="keep the cluster (prints its URL)")
    args = ap.parse_args()
    county = DemoCounty(args) if args.county == "demo" else SynthCounty(args)
    home = Path(tempfile.mkdtemp(prefix="cim-bench-hazards-", dir="/tmp"))
    home.chmod(0o755)
    cluster, url = migrated_cluster(home)
    out: dict = {"run": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "county": args.county,
                 "load_avg_start": os.getloadavg()[0]}
    out.update({"blocks": args.blocks, "rotate_deg": args.rotate} if args.county == "synth" else
               {"buildings_asked": args.buildings, "segments_asked": args.segments, "hazards_per_rule": args.hazards,
                "ingest_chunk_rows": args.chunk_rows})
    try:
        out["versions"] = versions(url)
        out["rows"], out["load_s"] = timed(county.load, url, home, out)
        print(f"# county {county.code}: {out['rows']} in {out['load_s']} s", file=sys.stderr, flush=True)
        settings = Settings(db=DatabaseSettings(database_url=url, home=home), hazards=HazardSettings(scan_workers=2))
        svc = HazardService(settings)

        report, out["full_scan_s"] = timed(svc.run_scan, county.code)
        out["full_scan"] = {k: {"findings": c.findings, "seconds": c.seconds} for k, c in report.rules.items()}
        out["full_scan_phases"] = report.phases
        out["findings"] = report.totals()["findings"]
        print(f"# full scan phases {report.phases}", file=sys.stderr)
        again, out["full_rescan_s"] = timed(svc.run_scan, county.code)
        out["full_rescan_phases"] = again.phases
        out["full_rescan"] = {k: c.seconds for k, c in again.rules.items()}
        print(f"# full rescan phases {again.phases}", file=sys.stderr)
        assert again.totals()["new"] == 0 and again.totals()["updated"] == 0, again.totals()
        print(f"# full scan {out['full_scan_s']} s ({out['findings']} findings), again {out['full_rescan_s']} s",
              file=sys.stderr, flush=True)

        with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
            proj = county_frame(cur, county.code).proj
        ours_keys = ledger_keys(url, county.code, PAIR_RULES)
        ours_s, theirs_s, theirs_parts, theirs_keys = [], [], [], set()
        for _ in range(args.repeat):
            _, s = timed(svc.run_scan, county.code, rule_ids=PAIR_RULES, dry_run=True)
            ours_s.append(s)
            theirs_keys, parts = analyst.run(url, county.code, proj)
            theirs_s.append(parts["total_s"])
            theirs_parts.append(parts)
        out["pair_rules"] = {"ours_s": min(ours_s), "geopandas_s": min(theirs_s),
                             "geopandas_parts": min(theirs_parts, key=lambda p: p["total_s"]),
                             "ratio": round(min(theirs_s) / min(ours_s), 1),
                             "ratio_rules_only": round(min(p["rules_s"] for p in theirs_parts) / min(ours_s), 1),
                             "findings_ours": len(ours_keys), "findings_geopandas": len(theirs_keys),
                             "by_rule": {r: sum(k[0] == r for k in ours_keys) for r in PAIR_RULES},
                             "identical": ours_keys == theirs_keys,
                             "only_ours": sorted(map(str, ours_keys - theirs_keys))[:10],
                             "only_geopandas": sorted(map(str, theirs_keys - ours_keys))[:10]}
        planted = county.planted()
        if planted is not None:
            out["pair_rules"]["planted"] = len(planted)
            out["pair_rules"]["planted_found"] = len(planted & ours_keys)
            out["pair_rules"]["planted_missed"] = sorted(map(str, planted - ours_keys))[:10]
        print(f"# G01-G03: {out['pair_rules']}", file=sys.stderr, flush=True)

        delivery, out["redeliver_s"] = timed(county.redeliver, url)
        report, out["rescan_after_delivery_s"] = timed(svc.run_scan, county.code, incremental=True,
                                                        delivery_id=delivery)
        out["rescan"] = {k: {"mode": c.mode, "new": c.new, "updated": c.updated, "cleared": c.cleared,
                             "seconds": c.seconds} for k, c in report.rules.items()}
        out["rescan_phases"] = report.phases
        print(f"# rescan after a gas delivery {out['rescan_after_delivery_s']} s: {report.totals()}", file=sys.stderr)
        svc.close()
    finally:
        out["load_avg_end"] = os.getloadavg()[0]
        if args.keep:
            print(f"# kept: {url}", file=sys.stderr)
        else:
            cluster.destroy()
            shutil.rmtree(home, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"hazards-{args.county}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, ensure_ascii=False, indent=1, default=str))
    pr = out["pair_rules"]
    print("| run (UTC) | county | load avg | buildings | segments | full scan s | full rescan s | rescan after delivery s "
          "| G01–G03 ours s | GeoPandas s (load + rules) | ratio | identical findings |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {out['run'][11:16]} | {args.county} | {out['load_avg_start']:.1f}–{out['load_avg_end']:.1f} "
          f"| {out['rows']['buildings']} | {out['rows']['segments']} | {out['full_scan_s']} | {out['full_rescan_s']} "
          f"| {out['rescan_after_delivery_s']} | {pr['ours_s']} "
          f"| {pr['geopandas_s']} ({pr['geopandas_parts']['load_s']} + {pr['geopandas_parts']['rules_s']}) "
          f"| **{pr['ratio']}** ({pr['ratio_rules_only']} rules only) "
          f"| {'yes' if pr['identical'] else 'NO'}, {pr['findings_ours']} = {pr['findings_geopandas']} |")
    print(f"# results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
