"""Vector tiles and OGC API Features items: our server side by side with tipg (PyPI), one run.

What it does, in one process tree, against a throwaway PostGIS cluster it creates and removes:
1. generates synthetic data with SQL in CGCS2000 (EPSG:4490): buildings on a 20 m grid (a
   100 × 100 core, i.e. 10k rows, then grown to 1000 × 1000 = 1M rows around the same core, at the
   same density) and pipe segments along every other grid line (half as many as buildings);
2. starts ours (uvicorn, one worker, uvloop + httptools) twice — tile cache off (uncached figures)
   and on (hot tile) — and tipg (bench/.venv-tipg, one worker, same uvicorn extras), tipg set to the
   same buffer (64), feature cap (20000) and exposed properties;
3. samples tiles z12–z17 over the core with a fixed seed (same list for both servers), one hot
   tile, and bbox queries (items, limit=100);
4. runs wrk (-t1 -c8, after one warm-up pass, in A-B-B-A order so load drift on the shared
   machine falls on both) with bench/tiles/cycle.lua cycling the list; reports req/s, p50, p95
   per zoom and the ratio ours/tipg, and for the items p99 and bytes per answer too;
5. at z >= 16 decodes every sampled tile from both servers and compares feature ids.

    .venv/bin/python bench/tiles/vs_tipg.py [--scales 10000,1000000] [--seconds 5]
    .venv/bin/python bench/tiles/vs_tipg.py --only items --scales 100000 --seconds 10   # items tail

Results: bench/results/tiles-<stamp>.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import mapbox_vector_tile
import psycopg2

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import migrated_cluster  # noqa: E402
from cim.embedded import free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TIPG = ROOT / "bench" / ".venv-tipg" / "bin" / "python"
W0, S0, STEP = 111.40, 27.20, 0.0002  # grid origin and 20 m spacing (lon/lat degrees ≈ 20–22 m)
CORE = 100  # the 10k core is CORE × CORE buildings
BUILDING_PROPS = ["code", "name", "address", "floors_above", "floors_below", "height_m", "building_area_m2",
                  "structure_type", "build_year", "build_era", "use_code", "use_subtype", "appraisal_grade",
                  "self_built", "county_code"]
PIPE_PROPS = ["network", "subtype", "code", "start_exp_no", "end_exp_no", "start_depth", "end_depth", "start_z",
              "end_z", "z_ref", "diameter_mm", "width_mm", "height_mm", "material", "burial_type", "status",
              "install_year", "owner", "road", "length_m", "county_code", "pressure_class", "design_pressure_mpa",
              "wall_thickness_mm", "voltage_kv", "cable_count", "duct_total", "duct_used", "flow_dir"]


def grid_sql(side: int) -> str:
    """Buildings and pipes on a side × side grid centred on the core (same density at every scale)."""
    off = (side - CORE) // 2
    return f"""
    INSERT INTO cim.building (code, name, address, floors_above, height_m, building_area_m2, use_code,
                              appraisal_grade, self_built, build_year, county_code, geom)
    SELECT 'B' || i, '楼' || i, '测试路' || i || '号', 1 + i % 30, 3.0 * (1 + i % 30), 200 + i % 500,
           (ARRAY['ZZ','JY','SC','BG'])[1 + i % 4], (ARRAY['A','B','C','D'])[1 + i % 4], i % 2 = 0, 1980 + i % 40,
           '430521',
           ST_Multi(ST_MakeEnvelope({W0} + (i % {side} - {off}) * {STEP}, {S0} + (i / {side} - {off}) * {STEP},
                                    {W0} + (i % {side} - {off}) * {STEP} + 0.00012,
                                    {S0} + (i / {side} - {off}) * {STEP} + 0.00010, 4490))
    FROM generate_series(0, {side * side - 1}) i;
    INSERT INTO cim.pipe_segment (network, start_exp_no, end_exp_no, diameter_mm, material, county_code, length_m, geom)
    SELECT (ARRAY['JS','PS','RQ','DL'])[1 + i % 4], 'P' || i, 'P' || (i + 1), (ARRAY[200,300,400,600])[1 + i % 4],
           'PE', '430521', 20,
           ST_SetSRID(ST_MakeLine(
             ST_MakePoint({W0} + (i % {side} - {off}) * {STEP} - 0.00004,
                          {S0} + (2 * (i / {side}) - {off}) * {STEP} - 0.00003),
             ST_MakePoint({W0} + (i % {side} - {off} + 1) * {STEP} - 0.00004,
                          {S0} + (2 * (i / {side}) - {off}) * {STEP} - 0.00003)),
             4490)
    FROM generate_series(0, {side * side // 2 - 1}) i;
    """


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 1 << z
    return (int((lon + 180) / 360 * n),
            int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n))


def core_bounds() -> tuple[float, float, float, float]:
    return W0, S0, W0 + CORE * STEP, S0 + CORE * STEP


def sample_tiles(z: int, count: int, rng: random.Random) -> list[tuple[int, int, int]]:
    """Fixed-seed sample of tiles over the core: wholly inside it where tiles are small enough
    (z ≥ 15), so their content is the same at every scale; overlapping it at lower zooms."""
    w, s, e, n = core_bounds()
    x0, y0 = tile_of(w, n, z)
    x1, y1 = tile_of(e, s, z)
    inner = (x0 + 1, y0 + 1, x1 - 1, y1 - 1)
    if inner[0] <= inner[2] and inner[1] <= inner[3]:
        x0, y0, x1, y1 = inner
    tiles = [(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]
    rng.shuffle(tiles)
    return sorted(tiles[:count])


def sample_bboxes(count: int, rng: random.Random) -> list[tuple[float, float, float, float]]:
    w, s, e, n = core_bounds()
    out = []
    for _ in range(count):
        lon, lat = rng.uniform(w, e - 0.003), rng.uniform(s, n - 0.003)
        out.append((round(lon, 6), round(lat, 6), round(lon + 0.003, 6), round(lat + 0.003, 6)))
    return out


def start(cmd: list[str], env: dict, port: int, probe: str, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT,
                            start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {' '.join(cmd)}\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{probe}", timeout=5).status_code < 500:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def servers(url: str, work: Path) -> dict[str, tuple[subprocess.Popen, int]]:
    """Ours uncached, ours cached, tipg; each one uvicorn worker with uvloop + httptools."""
    uv = ["-m", "uvicorn", "--host", "127.0.0.1", "--workers", "1", "--loop", "uvloop", "--http", "httptools",
          "--log-level", "warning", "--no-access-log"]
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("CIM_", "TIPG_"))}
    out = {}
    for name, cache_mb in (("ours", "0"), ("ours_cached", "256")):
        port = free_port()
        env = dict(base_env, CIM_DATABASE_URL=url, CIM_PUBLIC_READ="true", CIM_TILES_CACHE_MB=cache_mb,
                   CIM_API_WEB_ROOT=str(work))
        out[name] = (start([str(ROOT / ".venv/bin/python"), *uv, "--port", str(port), "--factory", "api.app:factory"],
                           env, port, "/health", work / f"{name}.log"), port)
    port = free_port()
    env = dict(base_env, DATABASE_URL=url, TIPG_DB_SCHEMAS='["cim"]',
               TIPG_DB_TABLES='["cim.building","cim.pipe_segment"]', TIPG_TILE_BUFFER="64",
               TIPG_MAX_FEATURES_PER_TILE="20000", TIPG_DB_SPATIAL_EXTENT="false", TIPG_DB_DATETIME_EXTENT="false",
               TIPG_TABLE_CONFIG__cim_building__properties=json.dumps(["id", *BUILDING_PROPS]),
               TIPG_TABLE_CONFIG__cim_pipe_segment__properties=json.dumps(["id", *PIPE_PROPS]))
    out["tipg"] = (start([str(TIPG), *uv, "--port", str(port), "tipg.main:app"], env, port, "/collections",
                         work / "tipg.log"), port)
    return out


def paths(server: str, kind: str, items: list) -> list[str]:
    if kind == "items":
        coll = "buildings" if server.startswith("ours") else "cim.building"
        prefix = "/ogc/collections" if server.startswith("ours") else "/collections"
        return [f"{prefix}/{coll}/items?bbox={','.join(map(str, b))}&limit=100" for b in items]
    layer, tiles = kind, items
    if server.startswith("ours"):
        return [f"/tiles/{layer}/{z}/{x}/{y}.mvt" for z, x, y in tiles]
    coll = {"buildings": "cim.building", "pipeline_segments": "cim.pipe_segment"}[layer]
    return [f"/collections/{coll}/tiles/WebMercatorQuad/{z}/{x}/{y}" for z, x, y in tiles]


def _warm(port: int, urls: list[str]) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
        for u in urls:
            client.get(u, headers={"Accept-Encoding": "gzip"})


def _wrk_once(port: int, urls: list[str], seconds: int, work: Path) -> dict:
    listing = work / f"urls-{port}.txt"
    listing.write_text("\n".join(urls) + "\n")
    res = subprocess.run(["wrk", "-t1", "-c8", f"-d{seconds}s", "--timeout", "30s", "-s", str(HERE / "cycle.lua"),
                          f"http://127.0.0.1:{port}"], capture_output=True, text=True,
                         env=dict(os.environ, WRK_URLS=str(listing)))
    m = re.search(r"WRKJSON (\{.*\})", res.stdout)
    if not m:
        raise RuntimeError(f"wrk failed: {res.stdout}\n{res.stderr}")
    return json.loads(m.group(1))


def compare(a: tuple[int, list[str]], b: tuple[int, list[str]], seconds: int, work: Path) -> dict:
    """Ours (a) and tipg (b) on their URL lists: warm-up pass each, then wrk in A-B-B-A order.

    Each wrk run lasts seconds/2, so both servers get the same total time and any drift in the
    load of the shared machine falls on both alike; req/s is summed over the two runs, the
    percentiles are the mean of the two runs'.
    """
    _warm(*a)
    _warm(*b)
    runs: dict[str, list[dict]] = {"ours": [], "tipg": []}
    for name, (port, urls) in (("ours", a), ("tipg", b), ("tipg", b), ("ours", a)):
        runs[name].append(_wrk_once(port, urls, max(1, seconds // 2), work))
    out = {}
    for name, rs in runs.items():
        total = {k: sum(r[k] for r in rs) for k in ("requests", "duration_us", "socket_errors", "bad_status", "bytes")}
        total["rps"] = total["requests"] / (total["duration_us"] / 1e6)
        total["p50_us"] = sum(r["p50_us"] for r in rs) / len(rs)
        total["p95_us"] = sum(r["p95_us"] for r in rs) / len(rs)
        total["p99_us"] = sum(r.get("p99_us", 0) for r in rs) / len(rs)
        total["bytes_per_answer"] = total["bytes"] / max(total["requests"], 1)
        out[name] = total
    out["ratio"] = out["ours"]["rps"] / out["tipg"]["rps"] if out["tipg"]["rps"] else float("inf")
    return out


def _coords(geom: dict) -> list:
    out, stack = [], [geom["coordinates"]]
    while stack:
        item = stack.pop()
        if item and isinstance(item[0], (int, float)):
            out.append(item)
        else:
            stack.extend(item)
    return out


def _interior(feature: dict, extent: int = 4096) -> bool:
    """True when the feature reaches at least one unit into the tile proper (not only its buffer)."""
    pts = _coords(feature["geometry"])
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return max(xs) > 1 and min(xs) < extent - 1 and max(ys) > 1 and min(ys) < extent - 1


def _rings(geom: dict) -> list[list[tuple]]:
    """Rings / lines of a decoded geometry; closed rings rotated to start at their smallest vertex."""
    parts = []
    kind, coords = geom["type"], geom["coordinates"]
    if kind == "Polygon":
        coords = [coords]
    if kind in ("Polygon", "MultiPolygon"):
        for poly in coords:
            for ring in poly:
                pts = [tuple(p) for p in ring[:-1]]
                i = pts.index(min(pts))
                parts.append(pts[i:] + pts[:i])
    elif kind == "LineString":
        parts.append([tuple(p) for p in coords])
    elif kind == "MultiLineString":
        parts.extend([tuple(p) for p in line] for line in coords)
    else:
        parts.append([tuple(coords)] if kind == "Point" else [tuple(p) for p in coords])
    return sorted(parts)


def _same_geometry(a: dict, b: dict, tol: int = 1) -> bool:
    """Same parts and vertices, each coordinate within ``tol`` tile units (4096 per tile)."""
    ra, rb = _rings(a), _rings(b)
    if len(ra) != len(rb):
        return False
    for pa, pb in zip(ra, rb, strict=True):
        if len(pa) != len(pb):
            return False
        if any(abs(x1 - x2) > tol or abs(y1 - y2) > tol for (x1, y1), (x2, y2) in zip(pa, pb, strict=True)):
            return False
    return True


def _same_value(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return b is not None and a is not None and abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)))
    return a == b


def parity(ours_port: int, tipg_port: int, layer: str, tiles: list) -> dict:
    """Compare the decoded features of every tile: ids, properties and geometry.

    Ids: ours carry the row id as MVT feature id, tipg as its ``id`` property. tipg selects rows
    by the tile itself, ours by the tile plus its 64-unit buffer (what MapLibre needs to draw
    strokes and labels across tile edges), so ours may hold extra buffer-only features; a tile's
    ids count as equal when tipg's ids ⊆ ours and every feature of ours that reaches into the
    tile proper is also in tipg's. Every feature in both is then compared: the same properties
    (tipg's without its ``id``) and the same geometry, vertex by vertex within one tile unit
    (ours maps lon/lat linearly onto the tile from z14, tipg projects each vertex; a ring may
    start at another vertex).
    """
    same = differ = 0
    extra_buffer = 0
    compared = props_equal = geom_equal = 0
    examples = []
    with httpx.Client(timeout=120) as c:
        for (z, x, y), (po, pt) in zip(tiles, zip(paths("ours", layer, tiles), paths("tipg", layer, tiles),
                                                  strict=True), strict=True):
            a = c.get(f"http://127.0.0.1:{ours_port}{po}")
            b = c.get(f"http://127.0.0.1:{tipg_port}{pt}")
            fa = [f for lay in (mapbox_vector_tile.decode(a.content) if a.content else {}).values()
                  for f in lay["features"]]
            fb = [f for lay in (mapbox_vector_tile.decode(b.content) if b.content else {}).values()
                  for f in lay["features"]]
            ida = {f["id"] for f in fa}
            inner = {f["id"] for f in fa if _interior(f)}
            idb = {f.get("properties", {}).get("id", f.get("id")) for f in fb}
            if idb <= ida and inner <= idb:
                same += 1
                extra_buffer += len(ida - idb)
            else:
                differ += 1
                examples.append({"tile": [z, x, y], "ours": len(ida), "tipg": len(idb),
                                 "only_ours_in_tile": len(inner - idb), "only_tipg": len(idb - ida)})
            by_id = {f["id"]: f for f in fa}
            for g in fb:
                props = dict(g.get("properties", {}))
                fid = props.pop("id", g.get("id"))
                f = by_id.get(fid)
                if f is None:
                    continue
                compared += 1
                mine = f.get("properties", {})
                if mine.keys() == props.keys() and all(_same_value(mine[k], props[k]) for k in props):
                    props_equal += 1
                elif len(examples) < 10:
                    examples.append({"tile": [z, x, y], "id": fid, "ours": mine, "tipg": props})
                if _same_geometry(f["geometry"], g["geometry"]):
                    geom_equal += 1
                elif len(examples) < 10:
                    examples.append({"tile": [z, x, y], "id": fid, "ours_geom": f["geometry"],
                                     "tipg_geom": g["geometry"]})
    return {"tiles_equal": same, "tiles_different": differ, "buffer_only_extra_in_ours": extra_buffer,
            "features_compared": compared, "properties_equal": props_equal, "geometry_equal": geom_equal,
            "examples": examples[:5]}


def run_scale(url: str, side: int, seconds: int, work: Path, per_zoom: int, only: str = "all") -> dict:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("TRUNCATE cim.building, cim.pipe_segment CASCADE")
        t0 = time.monotonic()
        cur.execute(grid_sql(side))
        cur.execute("VACUUM ANALYZE cim.building")
        cur.execute("VACUUM ANALYZE cim.pipe_segment")
        cur.execute("SELECT count(*) FROM cim.building")
        rows = cur.fetchone()[0]
    conn.close()
    print(f"## {rows} buildings (seeded in {time.monotonic() - t0:.0f} s), load average {os.getloadavg()[0]:.1f}",
          flush=True)
    rng = random.Random(20261122)
    zoom_tiles = {z: sample_tiles(z, per_zoom, rng) for z in range(12, 18)}
    hot = [tile_of(W0 + CORE * STEP / 2, S0 + CORE * STEP / 2, 16)]
    hot = [(16, *hot[0])]
    bboxes = sample_bboxes(per_zoom, rng)
    procs = servers(url, work)
    out: dict = {"buildings": rows, "zooms": {}, "parity": {}, "loadavg_start": os.getloadavg()[0]}
    try:
        ports = {k: v[1] for k, v in procs.items()}
        tile_layers = (("buildings", range(13, 18)), ("pipeline_segments", range(12, 18))) if only != "items" else ()
        for layer, zooms in tile_layers:
            for z in zooms:
                row = compare((ports["ours"], paths("ours", layer, zoom_tiles[z])),
                              (ports["tipg"], paths("tipg", layer, zoom_tiles[z])), seconds, work)
                out["zooms"][f"{layer} z{z}"] = row
                print(f"{layer} z{z}: ours {row['ours']['rps']:.0f} req/s, tipg {row['tipg']['rps']:.0f} req/s, "
                      f"×{row['ratio']:.1f}", flush=True)
            for z in (16, 17):
                out["parity"][f"{layer} z{z}"] = parity(ports["ours"], ports["tipg"], layer, zoom_tiles[z])
        if only != "items":
            hot_row = compare((ports["ours_cached"], paths("ours", "buildings", hot)),
                              (ports["tipg"], paths("tipg", "buildings", hot)), seconds, work)
            out["hot"] = hot_row
            print(f"hot tile: ×{hot_row['ratio']:.1f}", flush=True)
        if only == "tiles":
            out["loadavg_end"] = os.getloadavg()[0]
            return out
        items = compare((ports["ours"], paths("ours", "items", bboxes)),
                        (ports["tipg"], paths("tipg", "items", bboxes)), seconds, work)
        out["items"] = items
        print(f"items: ×{items['ratio']:.1f}", flush=True)
        out["loadavg_end"] = os.getloadavg()[0]
    finally:
        for proc, _ in procs.values():
            stop(proc)
    return out


def table(results: dict) -> str:
    lines = []
    for res in results["scales"].values():
        lines += [f"\n### {res['buildings']:,} buildings (1-min load average of the shared 2-core machine: "
                  f"{res['loadavg_start']:.1f} at start, {res.get('loadavg_end', 0):.1f} at end)\n"]
        rows = list(res["zooms"].items()) + ([("hot tile z16 (ours cached)", res["hot"])] if "hot" in res else [])
        if rows:
            lines += ["| request | ours req/s | tipg req/s | ours/tipg | ours p50 / p95 ms | tipg p50 / p95 ms |",
                      "|---|---|---|---|---|---|"]
        for name, row in rows:
            o, t = row["ours"], row["tipg"]
            lines.append(f"| {name} | {o['rps']:.0f} | {t['rps']:.0f} | **×{row['ratio']:.1f}** | "
                         f"{o['p50_us'] / 1000:.1f} / {o['p95_us'] / 1000:.1f} | "
                         f"{t['p50_us'] / 1000:.1f} / {t['p95_us'] / 1000:.1f} |")
        if "items" in res:
            o, t = res["items"]["ours"], res["items"]["tipg"]
            lines += ["", "| items bbox limit=100, 8 clients | req/s | p50 ms | p95 ms | p99 ms | bytes / answer |",
                      "|---|---|---|---|---|---|"]
            for name, r in (("ours", o), ("tipg", t)):
                lines.append(f"| {name} | {r['rps']:.0f} | {r['p50_us'] / 1000:.1f} | {r['p95_us'] / 1000:.1f} | "
                             f"{r['p99_us'] / 1000:.1f} | {r['bytes_per_answer']:.0f} |")
            lines.append(f"| **ours / tipg** | **×{o['rps'] / t['rps']:.1f}** | ×{o['p50_us'] / t['p50_us']:.2f} | "
                         f"**×{o['p95_us'] / t['p95_us']:.2f}** | ×{o['p99_us'] / max(t['p99_us'], 1):.2f} | "
                         f"×{o['bytes_per_answer'] / t['bytes_per_answer']:.2f} |")
        if res["parity"]:
            lines.append("\nParity at z ≥ 16 (decoded tiles, ours vs tipg; ours also keeps buffer-zone features): " +
                         "; ".join(f"{k}: ids equal in {v['tiles_equal']} tiles, different in {v['tiles_different']} "
                                   f"(+{v.get('buffer_only_extra_in_ours', 0)} buffer-only in ours), of "
                                   f"{v.get('features_compared', 0)} features in both {v.get('properties_equal', 0)} "
                                   f"with equal properties and {v.get('geometry_equal', 0)} with equal geometry "
                                   "(±1 unit)" for k, v in res["parity"].items()))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="10000,1000000", help="building counts (squares of the grid side)")
    ap.add_argument("--seconds", type=int, default=6, help="wrk seconds per server and measurement, split in two runs (≤ 10)")
    ap.add_argument("--tiles-per-zoom", type=int, default=50, help="tiles per zoom and bboxes for items")
    ap.add_argument("--only", choices=("all", "tiles", "items"), default="all",
                    help="measure only the tiles or only the items (OGC API Features) rows")
    args = ap.parse_args()
    if not TIPG.exists():
        sys.exit("bench/.venv-tipg is missing: bench/run.sh creates it (pip install tipg 'uvicorn[standard]')")
    work = Path(tempfile.mkdtemp(prefix="cim-bench-tiles-", dir="/tmp"))
    work.chmod(0o755)  # the database OS user must traverse it
    results: dict = {"started": dt.datetime.now(dt.UTC).isoformat(), "scales": {}}
    cluster, url = migrated_cluster(work / "pg")
    try:
        conn = psycopg2.connect(url)
        with conn.cursor() as cur:
            cur.execute("SELECT postgis_full_version()")
            results["postgis"] = cur.fetchone()[0]
        conn.close()
        results["tipg"] = subprocess.run([str(TIPG), "-c", "import tipg; print(tipg.__version__)"],
                                         capture_output=True, text=True).stdout.strip()
        for n in (int(s) for s in args.scales.split(",")):
            side = max(CORE, int(round(math.sqrt(n))))
            results["scales"][f"{side * side}"] = run_scale(url, side, min(args.seconds, 10), work,
                                                            args.tiles_per_zoom, args.only)
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"tiles-{stamp}.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    print(table(results))


if __name__ == "__main__":
    main()
