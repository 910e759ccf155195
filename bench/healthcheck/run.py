"""城市体检 benchmark: every indicator for every admin area of a county, and the three spatial ones
against the same computation written with GeoPandas (overlay / sjoin), in one run.

    .venv/bin/python bench/healthcheck/run.py [--buildings 1000000] [--year 2025] [--repeat 3]
    .venv/bin/python bench/healthcheck/run.py --county demo [--buildings 1000000] [--segments 300000] [--repeat 3]

A migrated throwaway cluster gets a county and its inputs (population per community, a built-up
area) through ``cim healthcheck inputs`` (``county.py``): ``--county synth`` (default) the
synthetic county of ``synth.sql`` (430599: 1 county, 16 streets, 256 communities, ``--buildings``
buildings, 400 parks, 40,000 pipe segments, 100 roads, 33,400 streetlights); ``--county demo``
the demo generator's county (430703) scaled up to ``--buildings`` and ``--segments``, its streets
and communities from 行政区划.zip, every file through ``cim ingest load`` and its 常住人口.xlsx and
建成区.geojson through ``cim healthcheck inputs`` as ``make demo`` does
(``bench/hazards/democounty.py``). Then:

1. ``cim healthcheck run --county CODE`` (all 24 indicators, three levels): wall seconds; being
   the county's first run, it also builds the stored membership of the features in the areas
   (``cimplus/healthcheck/membership.py``; its seconds are printed); then the same run again with
   nothing changed (the stored sets current);
2. ours, in process: each of ``park_service_coverage``, ``drainage_density_ys`` and
   ``aged_share_drainage`` computed alone as a run computes it, in a transaction of its own (the
   areas prepared, the current stored sets looked up, the temporary structures its statement
   needs, the statement), timed to the last row; one connection for the three, as GeoPandas reads
   through one;
3. GeoPandas: the same three read from PostGIS (``read_postgis``) and computed with ``overlay`` /
   ``sjoin`` / ``union_all`` in the same metric CRS; values compared area by area (0.1 %). Steps 2
   and 3 alternate ``--repeat`` times (default 3); the medians are reported;
4. the maintenance: the pipe table is changed as by a delivery (one row, then every row of the
   drainage network, given new row versions; its data version bumped), and the stored sets each
   indicator reads are brought up to date (in place), timed alone; "first run after it" is that
   plus ours.

Prints a Markdown table, the indicators (and areas) the full run could not compute with their
reasons, and writes bench/results/healthcheck-<stamp>.json (``--county demo``:
healthcheck-demo-<stamp>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import geopandas as gpd
import numpy as np
import psycopg2
import shapely

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.common import ROOT, migrated_cluster, timed  # noqa: E402
from bench.healthcheck.county import DemoCounty, SynthCounty  # noqa: E402
from cim import standards  # noqa: E402
from cimplus.healthcheck import areas, catalog, membership  # noqa: E402
from cimplus.healthcheck.run import RUN_WORK_MEM  # noqa: E402
from cimplus.healthcheck.template import Expander, ledger_present  # noqa: E402
from layers.catalog import load_catalog  # noqa: E402

SPATIAL = ("park_service_coverage", "drainage_density_ys", "aged_share_drainage")


class Clock:
    """Wall seconds, and CPU seconds of this process plus the connection's server backend (read from
    /proc: the cluster runs on this machine), between start() and stop(). The CPU time is what the
    computation itself costs, whatever else the shared machine runs meanwhile."""

    def __init__(self, conn) -> None:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            self.pid = cur.fetchone()[0]
        conn.rollback()
        self.w0 = self.c0 = 0.0

    def _cpu(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return time.process_time() + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def start(self) -> None:
        """Start both clocks."""
        self.w0, self.c0 = time.perf_counter(), self._cpu()

    def stop(self) -> tuple[float, float]:
        """Wall and CPU seconds since start()."""
        return time.perf_counter() - self.w0, self._cpu() - self.c0


def ours(url: str, county: str, year: int) -> tuple[dict[str, dict[str, float]], dict[str, float], dict[str, float], int,
                                       dict[str, float]]:
    """Each of our three indicators computed alone, as a run computes it, in a transaction of its own
    on one connection (as the GeoPandas side reads through one connection: the first indicator of
    each side pays for loading PostGIS / PROJ): the run's settings, the areas prepared, the stored
    membership sets that are current, the structures its statement needs, the statement. Values by
    indicator and area code, seconds each (to the last row), seconds of the preparation within them,
    the metric SRID, CPU seconds each (this process and the server backend)."""
    cat, layers = catalog.load(), load_catalog()
    values: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    prep: dict[str, float] = {}
    cpu: dict[str, float] = {}
    srid = 0
    conn = psycopg2.connect(url)
    clock = Clock(conn)
    for ind in cat.indicators:
        if ind.id not in SPATIAL:
            continue
        t0 = time.perf_counter()
        clock.start()
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("SELECT set_config('statement_timeout', '0', true), set_config('work_mem', %s, true)",
                        (RUN_WORK_MEM,))
            aset = areas.prepare(cur, [county], list(catalog.ADMIN_LEVELS), year)
            present, _ = ledger_present(cur, cat.hazard_ledger)
            part_sets, _ = membership.usable(cur, aset, membership.sources([ind], layers))
            stmt = Expander(layers, cat, aset.scope(year, present, part_sets)).expand(ind.formula or "", ind)
            aset.ensure(cur, stmt.needs)
            prep[ind.id] = time.perf_counter() - t0
            cur.execute(f"SELECT a.code, x.value FROM ({stmt.sql}) x JOIN pg_temp.hc_area a ON a.id = x.area_id",
                        stmt.params)
            got = cur.fetchall()
        conn.rollback()
        seconds[ind.id], cpu[ind.id] = clock.stop()
        values[ind.id] = {code: v for code, v in got if v is not None}
        srid = aset.srid
    conn.close()
    return values, seconds, prep, srid, cpu


#: What the maintenance changes, as a delivery does: one row of the pipe table (a no-op UPDATE gives it
#: a new row version), or every current row of the drainage network (a delivery of the whole network).
CHANGES = {"row": "UPDATE cim.pipe_segment SET install_year = install_year WHERE id = "
                  "(SELECT min(id) FROM cim.pipe_segment WHERE county_code = %s AND is_current)",
           "network": "UPDATE cim.pipe_segment SET install_year = install_year "
                      "WHERE county_code = %s AND is_current AND network = 'PS'"}


def maintenance(url: str, county: str, year: int, change: str) -> dict[str, float]:
    """What the stored membership costs after a delivery: the pipe table is changed (``CHANGES``:
    its data version bumped, so every set over it is stale, and the changed rows have new row
    versions), then the sets each indicator reads are brought up to date (in place), each timed alone
    (connect to commit). Seconds by indicator (0 for one that reads no set)."""
    cat, layers = catalog.load(), load_catalog()
    out: dict[str, float] = {}
    conn = psycopg2.connect(url)
    for ind in cat.indicators:
        if ind.id not in SPATIAL:
            continue
        with conn.cursor() as cur:
            cur.execute(CHANGES[change], (county,))
        conn.commit()
        wanted = membership.sources([ind], layers)
        t0 = time.perf_counter()
        c2 = psycopg2.connect(url)
        done = membership.refresh(c2, [county], year, wanted)
        c2.close()
        out[ind.id] = time.perf_counter() - t0 if done["refreshed"] else 0.0
    # leave every set current again for later runs
    membership.refresh(conn, [county], year, membership.sources(cat.indicators, layers))
    conn.close()
    return out


def _read(sql: str, conn) -> gpd.GeoDataFrame:
    return gpd.read_postgis(sql, conn, geom_col="geom").rename_geometry("geometry")


def geopandas_version(url: str, county: str, year: int,
                      srid: int) -> tuple[dict[str, dict[str, float]], dict[str, float], dict[str, float]]:
    """The same three indicators with GeoPandas: read from PostGIS, then overlay / sjoin in EPSG:srid.
    Values, wall seconds and CPU seconds (this process and the server backend) by indicator."""
    conn = psycopg2.connect(url)
    clock = Clock(conn)
    cpu: dict[str, float] = {}
    values: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    q_areas = (f"SELECT code, geom FROM cim.admin_area WHERE is_current AND county_code = '{county}' "
               "AND level IN ('county', 'street', 'community')")

    # 公园绿地服务半径覆盖率: served residential footprint ÷ residential footprint, homes assigned to areas
    # by the centre of their bounding box
    clock.start()
    area = _read(q_areas, conn)
    parks = _read(f"SELECT geom FROM cim.green_space WHERE is_current AND county_code = '{county}' "
                             "AND (class_code = 'G1' OR subclass_code = 'G1')", conn).to_crs(srid)
    homes = _read(f"SELECT id, geom FROM cim.building WHERE is_current AND county_code = '{county}' "
                             "AND use_code = 'ZZ'", conn)
    parks["a"] = parks.area
    parks = parks[parks["a"] >= 2000]
    served = gpd.GeoDataFrame(geometry=[parks.buffer(np.where(parks["a"] >= 5000, 500.0, 300.0), quad_segs=16)
                                        .union_all()], crs=srid)
    homes_m = homes.to_crs(srid)
    homes_m["m2"] = homes_m.area
    cut = gpd.overlay(homes_m[["id", "geometry"]], served, how="intersection", keep_geom_type=True)
    covered = cut.assign(c=cut.area).groupby("id")["c"].sum()
    b = homes.bounds
    centres = gpd.GeoDataFrame({"id": homes["id"]}, geometry=shapely.points((b.minx + b.maxx) / 2, (b.miny + b.maxy) / 2),
                               crs=homes.crs)
    hit = gpd.sjoin(centres, area, predicate="intersects")
    hit["m2"] = hit["id"].map(homes_m.set_index("id")["m2"])
    hit["cov"] = np.minimum(hit["id"].map(covered).fillna(0.0), hit["m2"])
    per = hit.groupby("code")[["m2", "cov"]].sum()
    values["park_service_coverage"] = (100.0 * per["cov"] / per["m2"]).to_dict()
    seconds["park_service_coverage"], cpu["park_service_coverage"] = clock.stop()

    # 排水管网密度（雨水）: storm-drain length inside each area's built-up part ÷ that part's area
    clock.start()
    area = _read(q_areas, conn).to_crs(srid)
    builtup = gpd.read_postgis(f"SELECT geom FROM cim.healthcheck_builtup WHERE county_code = '{county}' "
                               f"AND year <= {int(year)} ORDER BY year DESC, input_id DESC LIMIT 1", conn,
                               geom_col="geom").rename_geometry("geometry").to_crs(srid)
    pipes = _read(f"SELECT id, geom FROM cim.pipe_segment WHERE is_current AND county_code = '{county}' "
                             "AND network = 'PS' AND subtype = 'YS'", conn).to_crs(srid)
    part = gpd.overlay(area, builtup, how="intersection", keep_geom_type=True)
    part["km2"] = part.area / 1e6
    pieces = gpd.overlay(pipes, part[["code", "geometry"]], how="intersection", keep_geom_type=True)
    km = pieces.assign(km=pieces.length / 1000.0).groupby("code")["km"].sum()
    dens = part.set_index("code")
    values["drainage_density_ys"] = (km.reindex(dens.index).fillna(0.0) / dens["km2"]).to_dict()
    seconds["drainage_density_ys"], cpu["drainage_density_ys"] = clock.stop()

    # 老旧管网比例（排水）: length meeting the 22号 criteria (cim/standards/aging.yaml) ÷ drain length per area
    clock.start()
    rule = standards.aging()["networks"]["PS"]
    area = _read(q_areas, conn).to_crs(srid)
    pipes = _read(f"SELECT id, material, install_year, geom FROM cim.pipe_segment WHERE is_current "
                             f"AND county_code = '{county}' AND network = 'PS'", conn).to_crs(srid)
    aged = pipes["material"].isin(rule.get("always") or [])
    if rule.get("min_years") is not None:
        old = pipes["install_year"].notna() & (year - pipes["install_year"] >= rule["min_years"])
        if rule.get("materials"):
            old &= pipes["material"].isin(rule["materials"])
        aged |= old
    pipes["aged"] = aged
    pieces = gpd.overlay(pipes[["aged", "geometry"]], area, how="intersection", keep_geom_type=True)
    pieces["m"] = pieces.length
    pieces["aged_m"] = pieces["m"].where(pieces["aged"], 0.0)
    per = pieces.groupby("code")[["aged_m", "m"]].sum()
    values["aged_share_drainage"] = (100.0 * per["aged_m"] / per["m"]).to_dict()
    seconds["aged_share_drainage"], cpu["aged_share_drainage"] = clock.stop()
    conn.close()
    return values, seconds, cpu


def compare(a: dict[str, float], b: dict[str, float]) -> tuple[int, int, float]:
    """Areas compared, areas differing by more than 0.1 %, largest relative difference."""
    worst, bad = 0.0, 0
    for code in set(a) | set(b):
        x, y = a.get(code), b.get(code)
        if x is None or y is None:
            bad += 1
            continue
        rel = abs(x - y) / max(abs(y), 1e-9) if abs(x - y) > 1e-9 else 0.0
        worst = max(worst, rel)
        bad += rel > 1e-3
    return len(set(a) | set(b)), bad, worst


def not_computed(url: str, county: str) -> dict[str, dict[str, int]]:
    """Of the county's last run: per indicator, the areas not computed by reason code (with its
    English reason)."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT v.indicator, v.reason_code || ': ' || coalesce(v.reason_en, ''), count(*) "
                    "FROM cim.healthcheck_value v WHERE v.run_id = (SELECT max(id) FROM cim.healthcheck_run "
                    "WHERE %s = ANY(counties) AND state = 'done') AND v.state = 'not_computed' "
                    "GROUP BY 1, 2 ORDER BY 1, 2", (county,))
        out: dict[str, dict[str, int]] = {}
        for ind, reason, n in cur.fetchall():
            out.setdefault(ind, {})[reason] = n
    return out


def spatial_rows(mine: dict, gp: dict, samples: dict[str, list[dict[str, float]]],
                 upkeep: dict[str, float], upkeep_network: dict[str, float]) -> list[dict]:
    """The table rows of the three spatial indicators: medians, ratios, the comparison of values."""
    rows = []
    for ind in SPATIAL:
        n, bad, worst = compare(mine[ind], gp[ind])
        ours_s, gp_med = median(x[ind] for x in samples["ours"]), median(x[ind] for x in samples["geopandas"])
        first, first_network = ours_s + upkeep[ind], ours_s + upkeep_network[ind]
        ours_cpu, gp_cpu = median(x[ind] for x in samples["ours_cpu"]), median(x[ind] for x in samples["geopandas_cpu"])
        rows.append({"indicator": ind, "ours_s": round(ours_s, 3),
                     "of_which_prepare_s": round(median(x[ind] for x in samples["prepare"]), 3),
                     "ours_samples_s": [round(x[ind], 3) for x in samples["ours"]],
                     "geopandas_samples_s": [round(x[ind], 3) for x in samples["geopandas"]],
                     "geopandas_s": round(gp_med, 2), "ratio": round(gp_med / ours_s, 1),
                     "ours_cpu_s": round(ours_cpu, 3), "geopandas_cpu_s": round(gp_cpu, 2),
                     "cpu_ratio": round(gp_cpu / ours_cpu, 1),
                     "maintenance_s": round(upkeep[ind], 2), "after_delivery_s": round(first, 2),
                     "after_delivery_ratio": round(gp_med / first, 2),
                     "maintenance_network_s": round(upkeep_network[ind], 2),
                     "after_network_delivery_s": round(first_network, 2),
                     "after_network_delivery_ratio": round(gp_med / first_network, 2), "areas": n,
                     "differing_over_0.1pct": bad, "max_rel_diff": worst})
    return rows


def measure(url: str, county: str, year: int, repeat: int, env: dict[str, str]) -> dict:
    """Steps 1–4 of the module docstring on a built county; the figures."""
    cmd = [str(ROOT / ".venv/bin/cim"), "healthcheck", "run", "--county", county, "--year", str(year), "--json"]
    run = timed(cmd, env)
    listed = subprocess.run([str(ROOT / ".venv/bin/cim"), "healthcheck", "list", "--json", "--limit", "1"], env=env,
                            capture_output=True, text=True, check=True)
    summary = json.loads(listed.stdout)[0]["summary"] or {}
    print(f"full run: {run['seconds']:.1f} s wall, {summary.get('values')} values, "
          f"{summary.get('parts_refresh_s')} s of it building the stored membership", flush=True)
    missing = not_computed(url, county)
    again = timed(cmd, env)       # nothing changed since: the stored sets are current
    print(f"full run again: {again['seconds']:.1f} s wall", flush=True)
    samples: dict[str, list[dict[str, float]]] = {"ours": [], "prepare": [], "geopandas": [], "ours_cpu": [],
                                                  "geopandas_cpu": []}
    mine: dict = {}
    gp: dict = {}
    for _ in range(repeat):      # alternately, so a change of the machine's load hits both sides
        mine, mine_s, prep_s, srid, mine_cpu = ours(url, county, year)
        gp, gp_s, gp_cpu = geopandas_version(url, county, year, srid)
        samples["ours"].append(mine_s)
        samples["prepare"].append(prep_s)
        samples["geopandas"].append(gp_s)
        samples["ours_cpu"].append(mine_cpu)
        samples["geopandas_cpu"].append(gp_cpu)
    upkeep = maintenance(url, county, year, "row")
    upkeep_network = maintenance(url, county, year, "network")
    return {"run_wall_s": round(run["seconds"], 1), "run_again_wall_s": round(again["seconds"], 1),
            "run_peak_rss_mb": run["peak_rss_mb"], "values": summary.get("values"),
            "computed": summary.get("computed"), "run_parts_refresh_s": summary.get("parts_refresh_s"),
            "run_parts_refreshed": [{k: d.get(k) for k in ("table", "kind", "parts", "seconds")}
                                    for d in ((summary.get("parts") or {}).get("refresh") or {}).get("refreshed") or []],
            "spatial": spatial_rows(mine, gp, samples, upkeep, upkeep_network), "not_computed": missing,
            "indicator_s": {k: v.get("seconds") for k, v in (summary.get("indicators") or {}).items()}}


def report(out: dict, label: str, repeat: int) -> None:
    """The figures as text and a Markdown table on stdout."""
    load_start = out["load_average_start"]
    print(f"\n城市体检 on {out['buildings']:,} buildings ({label}): "
          f"full run {out['run_wall_s']} s wall ({out['values']} values, {out['computed']} computed; of it "
          f"{out['run_parts_refresh_s']} s building the stored membership; again, with nothing changed: "
          f"{out['run_again_wall_s']} s), seeding {out['seed_s']} s, load average (1, 5, 15 min) at start "
          f"{' '.join(f'{x:.1f}' for x in load_start)}, at end {' '.join(f'{x:.1f}' for x in out['load_average'])}\n")
    print("stored membership built by the full run (s): " + ", ".join(
        f"{d['table']}/{d['kind']} {d['parts']} parts {d['seconds']}" for d in out["run_parts_refreshed"]))
    slow = sorted(out["indicator_s"].items(), key=lambda kv: -(kv[1] or 0))[:6]
    print("slowest indicators of the full run (s): " + ", ".join(f"{k} {v}" for k, v in slow) + "\n")
    print("not computed in the full run (areas by reason): " + ("; ".join(
        f"{ind} " + ", ".join(f"{n} × {why}" for why, n in reasons.items())
        for ind, reasons in out["not_computed"].items()) or "none") + "\n")
    print(f"medians of {repeat} (ours and GeoPandas alternately)\n")
    print("| indicator | ours (s) | of it preparing | GeoPandas (s) | ratio | CPU: ours / GeoPandas (s) | CPU ratio "
          "| maintenance after a delivery: one row / the drainage network (s) | first run after it (s) | its ratio "
          "| areas | >0.1 % apart | max rel. diff |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in out["spatial"]:
        print(f"| {r['indicator']} | {r['ours_s']} | {r['of_which_prepare_s']} | {r['geopandas_s']} | "
              f"**{r['ratio']}×** | {r['ours_cpu_s']} / {r['geopandas_cpu_s']} | {r['cpu_ratio']}× | "
              f"{r['maintenance_s']} / {r['maintenance_network_s']} | {r['after_delivery_s']} / "
              f"{r['after_network_delivery_s']} | {r['after_delivery_ratio']}× / {r['after_network_delivery_ratio']}× | "
              f"{r['areas']} | {r['differing_over_0.1pct']} | {r['max_rel_diff']:.2e} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--county", choices=["synth", "demo"], default="synth",
                    help="synth: synth.sql's grid county; demo: cim demo generate + cim ingest (as make demo)")
    ap.add_argument("--buildings", type=int, default=1_000_000)
    ap.add_argument("--segments", type=int, default=300_000, help="demo: at least about this many pipe segments")
    ap.add_argument("--chunk-rows", type=int, default=None,
                    help="demo: CIM_INGEST_CHUNK_ROWS of the ingest (default: the setting's)")
    ap.add_argument("--year", type=int, default=2025)
    ap.add_argument("--repeat", type=int, default=3, help="times each side computes the three (medians are reported)")
    ap.add_argument("--keep", action="store_true", help="keep the cluster's directory (prints it)")
    args = ap.parse_args()
    county = (DemoCounty(args.buildings, args.segments, args.chunk_rows) if args.county == "demo"
              else SynthCounty(args.buildings))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))     # stop the cluster when killed
    load_start = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    home = Path(tempfile.mkdtemp(prefix="cim-bench-hc-", dir="/tmp"))
    home.chmod(0o755)           # the cluster runs as the postgres OS user
    cluster, url = migrated_cluster(home / "pg")
    try:
        env = {**os.environ, "CIM_DATABASE_URL": url, "CIM_HOME": str(home)}
        built = county.build(url, home, env, args.year)
        print(f"# county {county.code} built: {built}", file=sys.stderr, flush=True)
        figures = measure(url, county.code, args.year, args.repeat, env)
    finally:
        cluster.stop()
        if args.keep:
            print(f"# kept: {home}", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)
    out = {"county": args.county, "county_code": county.code, "started": started, "buildings": args.buildings,
           **built, **figures, "load_average_start": load_start, "load_average": os.getloadavg()}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    name = f"healthcheck-{stamp}.json" if args.county == "synth" else f"healthcheck-{args.county}-{stamp}.json"
    (results / name).write_text(json.dumps(out, ensure_ascii=False, indent=2))
    label = county.label
    if args.county == "demo":
        lv = built["admin_levels"]
        label = (f"the demo county: {lv.get('county', 0)} county, {lv.get('street', 0)} streets/towns, "
                 f"{lv.get('community', 0)} communities; {built['rows']}")
    report(out, label, args.repeat)
    print(f"# results: {results / name}", file=sys.stderr)


if __name__ == "__main__":
    main()
