"""Load: 100 concurrent clients for 60 s against ``cim serve --workers 2``, mixing request types.

A throwaway PostGIS cluster holds a synthetic area (``bench/batch/synth.sql``: COUNTIES counties of
BUILDINGS buildings and PIPES pipe points each); ``cim serve --workers 2`` (uvicorn's supervisor,
two server processes on one port) serves it with public reads. CLIENTS asyncio clients (httpx, one
connection each, kept alive) then send requests back to back for DURATION seconds, each request
drawn at random from this mix (fixed seed):

- ``tile cached``    (35 %) one of 24 composite tiles at z14–z16 that a warm-up pass already rendered
                     in both processes (``/tiles/buildings,pipeline_segments,pipeline_points/z/x/y.mvt``);
- ``tile uncached``  (20 %) a z17 / z18 tile over the data never requested before (rendered on demand);
- ``items``          (20 %) ``/ogc/collections/buildings/items?bbox=…&limit=100`` at a random ~300 m box;
- ``identify``       (15 %) ``POST /api/query/identify`` at a random point, every layer, 5 m;
- ``search``         (10 %) ``/api/search?q=B<county>-<n>&limit=20``.

An error is a transport failure or a status other than 200 / 204. Prints per request type the count,
errors, throughput and p50 / p95 / p99 latency, and writes ``bench/results/load-<stamp>.json``. Exit 1
when any request failed.

    .venv/bin/python bench/load/run.py [--clients 100] [--duration 60] [--workers 2]
                                       [--counties 2] [--buildings 50000] [--pipes 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import ROOT, migrated_cluster  # noqa: E402

from cim.embedded import free_port  # noqa: E402

CIM = str(Path(sys.executable).parent / "cim")
LAYERS = "buildings,pipeline_segments,pipeline_points"
MIX = (("tile cached", 35), ("tile uncached", 20), ("items", 20), ("identify", 15), ("search", 10))


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2 ** z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def tiles_over(box: tuple[float, float, float, float], z: int) -> list[tuple[int, int, int]]:
    x0, y0 = tile_of(box[0], box[3], z)
    x1, y1 = tile_of(box[2], box[1], z)
    return [(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]


class Plan:
    """The request generator (fixed seed) over the data's county boxes."""

    def __init__(self, boxes: list[tuple[float, float, float, float]], per_county: int, seed: int = 15) -> None:
        self.rng = random.Random(seed)
        self.boxes, self.per_county = boxes, per_county
        self.cached = [t for b in boxes for z in (14, 15, 16) for t in self.rng.sample(tiles_over(b, z), 4)][:24]
        fresh = [t for b in boxes for z in (17, 18) for t in tiles_over(b, z)]
        self.rng.shuffle(fresh)
        self.fresh = fresh

    def point(self) -> tuple[float, float]:
        b = self.rng.choice(self.boxes)
        return self.rng.uniform(b[0], b[2]), self.rng.uniform(b[1], b[3])

    def next(self) -> tuple[str, str, str, dict | None]:
        kind = self.rng.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
        if kind == "tile cached":
            z, x, y = self.rng.choice(self.cached)
            return kind, "GET", f"/tiles/{LAYERS}/{z}/{x}/{y}.mvt", None
        if kind == "tile uncached":
            z, x, y = self.fresh.pop()
            return kind, "GET", f"/tiles/{LAYERS}/{z}/{x}/{y}.mvt", None
        lon, lat = self.point()
        if kind == "items":
            return kind, "GET", (f"/ogc/collections/buildings/items?bbox={lon:.6f},{lat:.6f},{lon + 0.003:.6f},"
                                 f"{lat + 0.003:.6f}&limit=100"), None
        if kind == "identify":
            return kind, "POST", "/api/query/identify", {"lon": lon, "lat": lat, "tolerance_m": 5}
        county = self.rng.randrange(len(self.boxes))
        return kind, "GET", f"/api/search?q=B{county}-{self.rng.randrange(self.per_county)}&limit=20", None


async def client_loop(base: str, plan: Plan, until: float, out: dict[str, list], errors: dict[str, list]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=60, headers={"Accept-Encoding": "gzip"},
                                 limits=httpx.Limits(max_connections=1)) as c:
        while time.monotonic() < until:
            kind, method, path, body = plan.next()
            t0 = time.perf_counter()
            try:
                res = await c.request(method, path, json=body)
                await res.aread()
                ok = res.status_code in (200, 204)
                detail = f"{res.status_code} {path}"
            except httpx.HTTPError as exc:
                ok, detail = False, f"{type(exc).__name__} {path}"
            out[kind].append((time.perf_counter() - t0) * 1000)
            if not ok:
                errors[kind].append(detail)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else float("nan")


def start_server(url: str, home: Path, workers: int) -> tuple[subprocess.Popen, str, set[str]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, CIM_DATABASE_URL=url, CIM_HOME=str(home), CIM_PUBLIC_READ="true")
    proc = subprocess.Popen([CIM, "serve", "--workers", str(workers), "--port", str(port)], env=env, cwd=ROOT,
                            stdout=(home / "serve.log").open("w"), stderr=subprocess.STDOUT)
    seen: set[str] = set()
    deadline = time.monotonic() + 120
    while len(seen) < workers and time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit((home / "serve.log").read_text()[-3000:])
        try:
            seen.add(httpx.get(base + "/health", timeout=5).json()["process"])
        except httpx.HTTPError:
            time.sleep(0.3)
    if len(seen) < workers:
        raise SystemExit(f"only {len(seen)} server processes answered")
    return proc, base, seen


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--counties", type=int, default=2)
    ap.add_argument("--buildings", type=int, default=50_000, help="per county")
    ap.add_argument("--pipes", type=int, default=10_000, help="pipe points per county")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="cim-bench-load-", dir="/tmp"))
    home.chmod(0o755)
    cluster, url = migrated_cluster(home)
    proc = None
    try:
        conn = psycopg2.connect(url)
        with conn, conn.cursor() as cur:
            cur.execute((ROOT / "bench" / "batch" / "synth.sql").read_text(encoding="utf-8"),
                        {"counties": args.counties, "n": args.buildings, "p": args.pipes})
            cur.execute("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                        "(SELECT ST_Extent(geom) e FROM cim.building GROUP BY county_code ORDER BY county_code) s")
            boxes = [tuple(r) for r in cur.fetchall()]
        conn.close()
        proc, base, processes = start_server(url, home, args.workers)
        plan = Plan(boxes, args.buildings)
        with httpx.Client(base_url=base, timeout=60) as c:          # warm-up: every cached tile in each process
            for _ in range(6):
                for z, x, y in plan.cached:
                    with httpx.Client(base_url=base, timeout=60) as fresh:
                        assert fresh.get(f"/tiles/{LAYERS}/{z}/{x}/{y}.mvt").status_code in (200, 204)
            c.get("/api/search?q=B0-1")
        out: dict[str, list] = {k: [] for k, _ in MIX}
        errors: dict[str, list] = {k: [] for k, _ in MIX}
        load_before = os.getloadavg()
        t0 = time.monotonic()

        async def run() -> None:
            until = time.monotonic() + args.duration
            await asyncio.gather(*(client_loop(base, plan, until, out, errors) for _ in range(args.clients)))

        asyncio.run(run())
        wall = time.monotonic() - t0
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        cluster.destroy()
        shutil.rmtree(home, ignore_errors=True)
    rows = []
    for kind, _ in MIX + (("all", 0),):
        vals = [v for k in out for v in out[k]] if kind == "all" else out[kind]
        errs = sum(len(e) for e in errors.values()) if kind == "all" else len(errors[kind])
        rows.append({"type": kind, "requests": len(vals), "errors": errs, "per_s": round(len(vals) / wall, 1),
                     "p50_ms": round(pct(vals, 50), 1), "p95_ms": round(pct(vals, 95), 1),
                     "p99_ms": round(pct(vals, 99), 1)})
    print(f"\n{args.clients} clients, {wall:.0f} s, {args.workers} server processes ({len(processes)} answered), "
          f"{args.counties} × {args.buildings:,} buildings, load average before {load_before[0]:.1f}\n")
    print("| request type | requests | errors | req/s | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['type']} | {r['requests']:,} | {r['errors']} | {r['per_s']} | {r['p50_ms']} | {r['p95_ms']} | "
              f"{r['p99_ms']} |")
    for kind, errs in errors.items():
        for e in errs[:5]:
            print(f"error ({kind}): {e}")
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / f"load-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(
        {"args": vars(args), "cores": os.cpu_count(), "load_before": load_before, "rows": rows,
         "errors": {k: v[:50] for k, v in errors.items()}}, indent=1))
    return 0 if not any(errors.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
