"""Latency of the features, query and search endpoints at two table sizes (is the cost flat?).

Against a throwaway PostGIS cluster it creates and removes: buildings on a 20 m grid (side ×
side), pipe points and segments along the grid lines, streetlights, one admin polygon; then one
uvicorn worker of ours and, per endpoint, sequential requests at fixed-seed random places in
the same 600 m × 600 m core at every scale; reports p50 / p95 in ms.

    .venv/bin/python bench/features/query_latency.py [--sides 100,500] [--requests 40]

Results: bench/results/features-<stamp>.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg2

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
from cim.embedded import EmbeddedCluster, free_port  # noqa: E402
from cim.migrate import migrate  # noqa: E402

W0, S0, STEP = 111.40, 27.20, 0.0002
CORE = 30  # the sampled area: CORE × CORE grid cells (about 600 m × 660 m) in the middle


def data_sql(side: int) -> str:
    """Grid data centred on the core (same density at every size)."""
    off = (side - CORE) // 2
    x = f"({W0} + (i % {side} - {off}) * {STEP})"
    y = f"({S0} + (i / {side} - {off}) * {STEP})"
    return f"""
    INSERT INTO cim.building (code, name, address, floors_above, height_m, building_area_m2, use_code, county_code, geom)
    SELECT 'B' || i, '楼' || i, '测试路' || i || '号', 1 + i % 30, 3.0 * (1 + i % 30), 200 + i % 500,
           (ARRAY['ZZ','JY','SC','BG'])[1 + i % 4], '430521',
           ST_Multi(ST_MakeEnvelope({x}, {y}, {x} + 0.00012, {y} + 0.00010, 4490))
    FROM generate_series(0, {side * side - 1}) i;
    INSERT INTO cim.pipe_point (network, exp_no, ground_z, depth, county_code, geom)
    SELECT (ARRAY['JS','PS','RQ','DL'])[1 + i % 4], 'P' || i, 100 + (i % 7) * 0.1, 1.2, '430521',
           ST_SetSRID(ST_MakePoint({x} - 0.00004, {y} - 0.00003), 4490)
    FROM generate_series(0, {side * side - 1}) i;
    INSERT INTO cim.pipe_segment (network, start_exp_no, end_exp_no, start_z, end_z, start_depth, end_depth,
                                  diameter_mm, material, county_code, length_m, geom)
    SELECT (ARRAY['JS','PS','RQ','DL'])[1 + i % 4], 'P' || i, 'P' || (i + 1), 99, 98.8, 1.2, 1.4,
           (ARRAY[200,300,400,600])[1 + i % 4], 'PE', '430521', 20,
           ST_SetSRID(ST_MakeLine(ST_MakePoint({x} - 0.00004, {y} - 0.00003),
                                  ST_MakePoint({x} + {STEP} - 0.00004, {y} - 0.00003)), 4490)
    FROM generate_series(0, {side * side - 1}) i;
    INSERT INTO cim.streetlight (pole_no, road_name, county_code, geom)
    SELECT 'LD' || i, '测试路', '430521', ST_SetSRID(ST_MakePoint({x} + 0.00015, {y} + 0.00015), 4490)
    FROM generate_series(0, {side * side - 1}, 4) i;
    INSERT INTO cim.admin_area (code, name, level, county_code, geom)
    VALUES ('430521001', '测试街道', 'street', '430521',
            ST_Multi(ST_MakeEnvelope({W0}, {S0}, {W0} + {CORE * STEP}, {S0} + {CORE * STEP}, 4490)));
    ANALYZE;
    """


def requests_for(rng: random.Random, n: int) -> dict[str, list[tuple[str, str, dict | None]]]:
    """Fixed-seed requests per endpoint inside the core."""
    span = CORE * STEP

    def pt():
        return W0 + rng.uniform(0, span), S0 + rng.uniform(0, span)

    out: dict[str, list] = {k: [] for k in ("items bbox limit=100", "items CQL2 + bbox", "identify (all layers)",
                                            "nearest k=5", "spatial 100 m buffer", "section 200 m",
                                            "stats 300 m square", "search")}
    for _ in range(n):
        lon, lat = pt()
        bbox = f"{lon - 0.0015:.6f},{lat - 0.0015:.6f},{lon + 0.0015:.6f},{lat + 0.0015:.6f}"
        out["items bbox limit=100"].append(("GET", f"/ogc/collections/buildings/items?bbox={bbox}&limit=100", None))
        out["items CQL2 + bbox"].append(("GET", f"/ogc/collections/buildings/items?bbox={bbox}&limit=100"
                                                "&filter=height_m%20%3E%2030%20AND%20use_code%20%3D%20%27ZZ%27", None))
        out["identify (all layers)"].append(("POST", "/api/query/identify", {"lon": lon, "lat": lat, "tolerance_m": 5}))
        out["nearest k=5"].append(("POST", "/api/query/nearest", {"lon": lon, "lat": lat, "layer": "streetlights", "k": 5}))
        out["spatial 100 m buffer"].append(("POST", "/api/query/spatial", {
            "geometry": {"type": "Point", "coordinates": [lon, lat]}, "op": "dwithin", "distance_m": 100,
            "layers": ["buildings", "pipeline_segments"]}))
        out["section 200 m"].append(("POST", "/api/query/section", {
            "line": {"type": "LineString", "coordinates": [[lon, lat - 0.0009], [lon, lat + 0.0009]]}}))
        d = 0.0015
        out["stats 300 m square"].append(("POST", "/api/query/stats", {"geometry": {"type": "Polygon", "coordinates": [[
            [lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d], [lon - d, lat - d]]]}}))
        out["search"].append(("GET", f"/api/search?q=B{rng.randint(1, 900)}&limit=20", None))
    return out


def measure(base: str, reqs: list[tuple[str, str, dict | None]]) -> dict:
    with httpx.Client(base_url=base, timeout=60) as c:
        method, path, body = reqs[0]
        c.request(method, path, json=body)  # warm-up (prepares the statement)
        times = []
        for method, path, body in reqs:
            t = time.perf_counter()
            r = c.request(method, path, json=body)
            times.append((time.perf_counter() - t) * 1000)
            if r.status_code != 200:
                raise RuntimeError(f"{path}: {r.status_code} {r.text[:300]}")
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2), "p95_ms": round(times[int(len(times) * 0.95) - 1], 2),
            "n": len(times)}


def run_scale(side: int, nreq: int, work: Path) -> dict:
    cluster = EmbeddedCluster(work / f"pg{side}")
    url = cluster.start().url
    try:
        conn = psycopg2.connect(url)
        conn.autocommit = True
        conn.cursor().execute("CREATE EXTENSION IF NOT EXISTS postgis")
        migrate(conn)
        conn.autocommit = True  # migrate() leaves the connection transactional
        t = time.perf_counter()
        conn.cursor().execute(data_sql(side))
        load_s = time.perf_counter() - t
        conn.close()
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CIM_")}
        env.update(CIM_DATABASE_URL=url, CIM_PUBLIC_READ="true", CIM_API_WEB_ROOT=str(work))
        log = (work / f"server{side}.log").open("w")
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "api.app:factory", "--port", str(port),
                                 "--workers", "1", "--log-level", "warning", "--no-access-log"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(200):
                try:
                    if httpx.get(base + "/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.3)
            with httpx.Client(base_url=base, timeout=60) as c:  # the data is there
                probe = c.get("/ogc/collections/buildings/items", params={"limit": 1}).json()
                assert probe["numberMatched"] >= side * side, probe
            reqs = requests_for(random.Random(42), nreq)
            return {"buildings": side * side, "load_s": round(load_s, 1),
                    "endpoints": {name: measure(base, r) for name, r in reqs.items()}}
        finally:
            proc.terminate()
            proc.wait(10)
    finally:
        cluster.destroy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sides", default="100,500", help="grid sides (buildings = side²)")
    ap.add_argument("--requests", type=int, default=40)
    args = ap.parse_args()
    out = {"started": dt.datetime.now(dt.UTC).isoformat(), "scales": {}}
    with tempfile.TemporaryDirectory(prefix="cim-bench-features-", dir="/tmp") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        for side in (int(s) for s in args.sides.split(",")):
            out["scales"][str(side * side)] = run_scale(side, args.requests, work)
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"features-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False))
    scales = list(out["scales"])
    print("| endpoint | " + " | ".join(f"{int(s):,} buildings p50 / p95 ms" for s in scales) + " |")
    print("|---|" + "---|" * len(scales))
    for name in out["scales"][scales[0]]["endpoints"]:
        cells = [f"{out['scales'][s]['endpoints'][name]['p50_ms']} / {out['scales'][s]['endpoints'][name]['p95_ms']}"
                 for s in scales]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\n{path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
