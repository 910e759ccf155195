"""The counties of the health-check benchmark (``run.py --county synth|demo``), each built into a
migrated throwaway cluster with its two health-check inputs (resident population, built-up area).

* ``synth``: ``synth.sql``'s grid county 430599 (16 streets, 256 communities), written by SQL;
  the inputs made here and loaded with ``cim healthcheck inputs``;
* ``demo``: the demo generator's county 430703 scaled up (``cim demo generate --buildings N
  --segments M``: its streets and communities from 行政区划.zip, parks, roads, streetlights and
  four pipe networks), every file loaded through ``cim ingest load`` and its 常住人口.xlsx and
  建成区.geojson through ``cim healthcheck inputs``, as ``make demo`` does
  (``bench/hazards/democounty.py``, shared with the hazard bench), then ``VACUUM (ANALYZE)``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
from openpyxl import Workbook

from bench.common import ROOT, settle
from bench.hazards import democounty

HERE = Path(__file__).resolve().parent
LOADED = ["cim.admin_area", "cim.building", "cim.pipe_segment", "cim.pipe_point", "cim.green_space", "cim.road",
          "cim.streetlight"]


def _inputs(paths: list[Path], county: str, env: dict[str, str]) -> None:
    for f in paths:
        res = subprocess.run([str(ROOT / ".venv/bin/cim"), "healthcheck", "inputs", str(f), "--county", county],
                             env=env, capture_output=True, text=True)
        if res.returncode:
            raise SystemExit(f"cim healthcheck inputs {f.name} failed: {res.stdout[-1000:]} {res.stderr[-2000:]}")


class SynthCounty:
    """``synth.sql``'s county, then population (1,000–6,000 per community, summed upwards) and a
    built-up rectangle."""

    code = "430599"
    label = "1 county, 16 streets, 256 communities"

    def __init__(self, buildings: int) -> None:
        self.buildings = buildings

    def build(self, url: str, home: Path, env: dict[str, str], year: int) -> dict:
        """Seed the cluster; what was built (seconds)."""
        t0 = time.perf_counter()
        res = subprocess.run(["psql", url, "-q", "-v", "ON_ERROR_STOP=1", "-v", f"n={self.buildings}", "-f",
                              str(HERE / "synth.sql")], capture_output=True, text=True)
        if res.returncode:
            raise SystemExit(f"synth.sql failed: {res.stderr[-2000:]}")
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("SELECT code, name, level, parent_code FROM cim.admin_area WHERE county_code = %s "
                        "ORDER BY code", (self.code,))
            rows = cur.fetchall()
        pop: dict[str, int] = {}
        parent = {r[0]: r[3] for r in rows}
        for code, _, level, _ in rows:
            if level == "community":
                p = 1000 + (int(code[-3:]) * 37 + int(code[6:9]) * 11) % 5000
                pop[code] = p
                pop[parent[code]] = pop.get(parent[code], 0) + p
                pop[self.code] = pop.get(self.code, 0) + p
        wb = Workbook()
        ws = wb.active
        ws.append(["行政区划代码", "名称", "常住人口", "年份"])
        for code, name, _, _ in rows:
            ws.append([code, name, pop[code], year])
        wb.save(home / "常住人口.xlsx")
        ring = [[111.401, 27.151], [111.489, 27.151], [111.489, 27.243], [111.401, 27.243], [111.401, 27.151]]
        (home / "建成区.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {"年份": year}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
        _inputs([home / "常住人口.xlsx", home / "建成区.geojson"], self.code, env)
        return {"seed_s": round(time.perf_counter() - t0, 1)}


class DemoCounty:
    """The demo generator's county scaled up, through ``cim ingest`` and ``cim healthcheck inputs``."""

    code = democounty.COUNTY
    label = "the demo county"

    def __init__(self, buildings: int, segments: int, chunk_rows: int | None) -> None:
        self.buildings, self.segments, self.chunk_rows = buildings, segments, chunk_rows

    def build(self, url: str, home: Path, env: dict[str, str], year: int) -> dict:
        """Generate, ingest, load the inputs, VACUUM (ANALYZE); what was built (counts, seconds)."""
        env = democounty.environment(env["CIM_DATABASE_URL"], home, self.chunk_rows)
        out = home / "demo"
        info: dict = {}
        t0 = time.perf_counter()
        manifest = democounty.generate(out, env, self.buildings, self.segments)
        info["generate_s"] = round(time.perf_counter() - t0, 1)
        info["manifest_counts"] = manifest["counts"]
        if manifest.get("healthcheck_year") != year:
            print(f"# the demo's inputs are of {manifest.get('healthcheck_year')}, the run is of {year}",
                  file=sys.stderr)
        print(f"# generated {manifest['counts']} in {info['generate_s']} s", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        info["ingest_files_s"] = democounty.ingest(out, manifest, env)
        info["ingest_s"] = round(time.perf_counter() - t0, 1)
        info["inputs_files_s"] = democounty.healthcheck_inputs(out, manifest, env)
        info["settle_s"] = settle(url, LOADED)
        info["seed_s"] = round(info["generate_s"] + info["ingest_s"] + sum(info["inputs_files_s"].values())
                               + info["settle_s"], 1)
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            counts = {}
            for table in LOADED:
                cur.execute(f"SELECT count(*) FROM {table} WHERE county_code = %s AND is_current", (self.code,))
                counts[table.split(".")[1]] = cur.fetchone()[0]
            cur.execute("SELECT level, count(*) FROM cim.admin_area WHERE county_code = %s AND is_current "
                        "GROUP BY level", (self.code,))
            info["admin_levels"] = dict(cur.fetchall())
        info["rows"] = counts
        return info
