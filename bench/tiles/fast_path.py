"""Tile requests with and without the ASGI tile adapter (``api.routers.tiles.TileFastPath``), and tipg.

Answers one question: what does the adapter that takes tile GETs past the framework buy, on
the rows where the server's own per-request cost matters most — the hot (cached) tile and
uncached high-zoom tiles? Same protocol as :mod:`bench.tiles.vs_tipg` (throwaway cluster, the
10k-building grid, uvicorn with uvloop + httptools, ``wrk -t1 -c8`` cycling a fixed tile list
with ``Accept-Encoding: gzip``), but every server is measured in the same rounds, each round in
a rotated order, so load drift on the shared machine falls on all of them alike.

Servers (``--variants``, each ``name=source_root:mode``; the source root defaults to this checkout):

- ``adapter``: the app as built (adapter outermost);
- ``routes``: the same app with the adapter taken out of the middleware list (framework routes only);
- ``inner``: the adapter moved innermost (inside CORS, gzip and HEAD handling);

each started twice (tile cache off for the uncached rows, on for the hot tile), plus tipg
(``bench/.venv-tipg``). A source root other than this checkout (e.g. an export of an older
commit) lets a before/after comparison run in one go.

    .venv/bin/python bench/tiles/fast_path.py [--rounds 3] [--seconds 3] \\
        [--variants adapter=.:adapter,routes=.:routes]

Results: bench/results/fast-path-<stamp>.json and a Markdown table on stdout (median req/s,
p50/p95 over the rounds, ratio to tipg's median).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg2

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import migrated_cluster  # noqa: E402
from bench.tiles import vs_tipg as vt  # noqa: E402
from cim.embedded import free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"
# uvicorn factory for the three modes: the app as built, or its middleware list edited before it
# is built into a stack (Starlette builds the stack on the first request)
FACTORY = '''
import os
from api.app import factory as _factory

def app():
    application = _factory()
    mode = os.environ["CIM_BENCH_ADAPTER"]
    middleware = [m for m in application.user_middleware if m.cls.__name__ != "TileFastPath"]
    adapter = [m for m in application.user_middleware if m.cls.__name__ == "TileFastPath"]
    if mode == "routes":
        application.user_middleware[:] = middleware
    elif mode == "inner":
        application.user_middleware[:] = middleware + adapter
    return application
'''


def start_ours(name: str, root: Path, mode: str, url: str, cache_mb: str, work: Path) -> tuple:
    """One uvicorn worker of the app in ``root`` (its own source tree first on the path)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CIM_", "TIPG_"))}
    env.update(CIM_DATABASE_URL=url, CIM_PUBLIC_READ="true", CIM_TILES_CACHE_MB=cache_mb, CIM_API_WEB_ROOT=str(work),
               CIM_BENCH_ADAPTER=mode, PYTHONPATH=f"{root}:{work}")
    cmd = [str(ROOT / ".venv/bin/python"), "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--workers",
           "1", "--loop", "uvloop", "--http", "httptools", "--log-level", "warning", "--no-access-log", "--factory",
           "cim_bench_factory:app"]
    proc = vt.start(cmd, env, port, "/health", work / f"{name}-{cache_mb}.log")
    return proc, port


def measure(servers: dict[str, tuple[int, list[str]]], rounds: int, seconds: int, work: Path) -> dict:
    """wrk on every server, ``rounds`` times, each round in a rotated order; medians per server."""
    for port, urls in servers.values():
        vt._warm(port, urls)
    names = list(servers)
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            runs[name].append(vt._wrk_once(*servers[name], seconds, work))
    out = {}
    for name, rs in runs.items():
        for run in rs:
            run["rps"] = run["requests"] / (run["duration_us"] / 1e6)
        out[name] = {"rps": statistics.median(x["rps"] for x in rs),
                     "p50_us": statistics.median(x["p50_us"] for x in rs),
                     "p95_us": statistics.median(x["p95_us"] for x in rs),
                     "errors": sum(x["socket_errors"] + x["bad_status"] for x in rs), "runs": rs}
    tipg = out.get("tipg", {}).get("rps")
    for name in names:
        out[name]["ratio_to_tipg"] = out[name]["rps"] / tipg if tipg else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="adapter=.:adapter,routes=.:routes")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3, help="wrk seconds per server per round")
    ap.add_argument("--rows", default="hot,buildings:16,pipeline_segments:17",
                    help="hot and/or layer:zoom rows of uncached tiles")
    args = ap.parse_args()
    variants = {}
    for item in args.variants.split(","):
        name, spec = item.split("=")
        root, mode = spec.rsplit(":", 1)
        variants[name] = ((ROOT / root).resolve(), mode)
    work = Path(tempfile.mkdtemp(prefix="cim-bench-fastpath-", dir="/tmp"))
    work.chmod(0o755)
    (work / "cim_bench_factory.py").write_text(FACTORY)
    cluster, url = migrated_cluster(work / "pg")
    procs = []
    results: dict = {"started": dt.datetime.now(dt.UTC).isoformat(), "variants": {k: [str(v[0]), v[1]] for k, v in
                                                                                  variants.items()}, "rows": {}}
    try:
        conn = psycopg2.connect(url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(vt.grid_sql(vt.CORE))
            cur.execute("VACUUM ANALYZE cim.building")
            cur.execute("VACUUM ANALYZE cim.pipe_segment")
        conn.close()
        rng = random.Random(20261122)
        zoom_tiles = {z: vt.sample_tiles(z, 50, rng) for z in range(12, 18)}  # the same lists as vs_tipg
        hot = [(16, *vt.tile_of(vt.W0 + vt.CORE * vt.STEP / 2, vt.S0 + vt.CORE * vt.STEP / 2, 16))]
        ports: dict[str, dict[str, int]] = {}
        for name, (root, mode) in variants.items():
            for cache in ("0", "256"):
                proc, port = start_ours(name, root, mode, url, cache, work)
                procs.append(proc)
                ports.setdefault(name, {})[cache] = port
        tipg_port = free_port()  # configured as in vs_tipg (same buffer, feature cap and properties)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CIM_", "TIPG_"))}
        env.update(DATABASE_URL=url, TIPG_DB_SCHEMAS='["cim"]', TIPG_DB_TABLES='["cim.building","cim.pipe_segment"]',
                   TIPG_TILE_BUFFER="64", TIPG_MAX_FEATURES_PER_TILE="20000", TIPG_DB_SPATIAL_EXTENT="false",
                   TIPG_DB_DATETIME_EXTENT="false",
                   TIPG_TABLE_CONFIG__cim_building__properties=json.dumps(["id", *vt.BUILDING_PROPS]),
                   TIPG_TABLE_CONFIG__cim_pipe_segment__properties=json.dumps(["id", *vt.PIPE_PROPS]))
        uv = ["-m", "uvicorn", "--host", "127.0.0.1", "--workers", "1", "--loop", "uvloop", "--http", "httptools",
              "--log-level", "warning", "--no-access-log"]
        procs.append(vt.start([str(vt.TIPG), *uv, "--port", str(tipg_port), "tipg.main:app"], env, tipg_port,
                              "/collections", work / "tipg.log"))
        results["loadavg_start"] = os.getloadavg()[0]
        for row in args.rows.split(","):
            if row == "hot":
                layer, tiles, cache = "buildings", hot, "256"
                label = "hot tile z16 (cached)"
            else:
                layer, z = row.split(":")
                tiles, cache = zoom_tiles[int(z)], "0"
                label = f"{layer} z{z} (uncached)"
            servers = {name: (p[cache], vt.paths("ours", layer, tiles)) for name, p in ports.items()}
            servers["tipg"] = (tipg_port, vt.paths("tipg", layer, tiles))
            t0 = time.monotonic()
            results["rows"][label] = measure(servers, args.rounds, args.seconds, work)
            print(f"{label}: " + ", ".join(f"{n} {v['rps']:.0f} req/s" for n, v in results["rows"][label].items())
                  + f" ({time.monotonic() - t0:.0f} s)", flush=True)
        results["loadavg_end"] = os.getloadavg()[0]
    finally:
        for proc in procs:
            vt.stop(proc)
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"fast-path-{stamp}.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    print(f"\n1-min load average {results['loadavg_start']:.1f} at start, {results['loadavg_end']:.1f} at end; "
          f"{args.rounds} rounds of {args.seconds} s per server\n")
    print("| request | server | req/s | p50 / p95 ms | ours/tipg |\n|---|---|---|---|---|")
    for label, row in results["rows"].items():
        for name, v in row.items():
            ratio = f"×{v['ratio_to_tipg']:.1f}" if name != "tipg" else ""
            print(f"| {label} | {name} | {v['rps']:.0f} | {v['p50_us'] / 1000:.1f} / {v['p95_us'] / 1000:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
