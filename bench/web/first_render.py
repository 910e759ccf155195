"""First render of the web map on the demo data in headless Chromium: time, tile requests, bytes.

What it does:
1. uses the database of ``--database-url`` (default: ``CIM_DATABASE_URL``, else the project-local
   cluster of ``cim db url``); when it holds no buildings, loads the demo county the way
   ``scripts/demo.sh`` does (``cim demo generate`` + ``cim ingest`` of each file);
2. serves the API and ``web/dist`` in-process (uvicorn, public reads on) on a free port;
3. for each view, opens a fresh browser context (empty HTTP cache) in Debian's Chromium
   (/usr/bin/chromium, SwiftShader WebGL, never a downloaded browser) at ``/#zoom/lat/lon`` and
   takes the time from navigation start until MapLibre is idle with every tile of the view
   loaded and drawn; counts the vector-tile (and hillshade) requests and their bytes on the wire
   plus every byte of the page (HTML, JS, CSS, style, TileJSON, fonts);
4. repeats each view ``--runs`` times: run 1 finds the server's tile cache cold, later runs warm.

Views: the whole data extent (fitted from the TileJSON bounds), the town centre at z15 and at z17.

    .venv/bin/python bench/web/first_render.py [--runs 3] [--database-url URL]

Results: bench/results/web-first-render-<stamp>.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psycopg2

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
CIM = Path(sys.executable).parent / "cim"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1280, "height": 800}
MAP_SIZE = (1030, 737)  # the #map element inside that viewport (sidebar 250 px, bars)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url(given: str | None) -> str:
    """The database to measure on, with the demo county loaded."""
    url = given or os.environ.get("CIM_DATABASE_URL")
    if not url:
        subprocess.run([str(CIM), "db", "up"], check=True, cwd=ROOT, capture_output=True)
        url = subprocess.run([str(CIM), "db", "url"], check=True, cwd=ROOT, capture_output=True, text=True).stdout.strip()
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM cim.building WHERE is_current")
        n = cur.fetchone()[0]
    if n == 0:
        load_demo(url)
    return url


def load_demo(url: str) -> None:
    """Generate the demo county and ingest it file by file (as scripts/demo.sh)."""
    env = dict(os.environ, CIM_DATABASE_URL=url)
    out = Path(tempfile.mkdtemp(prefix="cim-bench-demo-"))
    subprocess.run([str(CIM), "demo", "generate", "--out", str(out)], check=True, cwd=ROOT, env=env)
    manifest = json.loads((out / "demo_manifest.json").read_text(encoding="utf-8"))
    county = str(manifest.get("county", "430703"))
    for name in manifest["ingest_order"]:
        subprocess.run([str(CIM), "ingest", str(out / name), "--county", county], check=True, cwd=ROOT, env=env)


class Server:
    """create_app under uvicorn in a thread, serving web/dist."""

    def __init__(self, url: str) -> None:
        import uvicorn

        from api.app import create_app
        from cim.settings import ApiSettings, AuthSettings, DatabaseSettings, Settings

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = Settings(db=DatabaseSettings(database_url=url), auth=AuthSettings(public_read=True),
                            api=ApiSettings(web_root=ROOT / "web" / "dist", port=self.port))
        self.server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        for _ in range(300):
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def fit_zoom(bounds: list[float]) -> tuple[float, float, float]:
    """Centre and zoom that frame a lon/lat box in the map element (512 px Web Mercator tiles)."""
    w, s, e, n = bounds

    def merc_y(lat: float) -> float:
        return math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))

    dx = math.radians(e - w) / (2 * math.pi)
    dy = (merc_y(n) - merc_y(s)) / (2 * math.pi)
    zoom = min(math.log2(MAP_SIZE[0] / 512 / dx), math.log2(MAP_SIZE[1] / 512 / dy)) - 0.1
    return (w + e) / 2, (s + n) / 2, round(zoom, 2)


def views(base: str) -> list[tuple[str, str]]:
    """(name, hash) of the measured views, from the data extent in the TileJSON."""
    style = httpx.get(base + "/styles/onemap.json", timeout=30).json()
    src = next(s for s in style["sources"].values() if s.get("type") == "vector")
    tj = httpx.get(src["url"] if src["url"].startswith("http") else base + src["url"], timeout=30).json()
    lon, lat, zoom = fit_zoom(tj["bounds"])
    return [("extent", f"{zoom}/{lat:.5f}/{lon:.5f}"), ("town z15", f"15/{lat:.5f}/{lon:.5f}"),
            ("town z17", f"17/{lat:.5f}/{lon:.5f}")]


def measure(browser, base: str, view: str) -> dict:
    """One cold-browser-cache load of a view: ms to idle, tile requests, bytes."""
    context = browser.new_context(viewport=VIEWPORT, locale="zh-CN")
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Performance.enable")  # main-thread busy time, independent of waiting for a core
    responses = []
    page.on("response", lambda r: responses.append(r))
    page.goto(f"{base}/#{view}")
    page.wait_for_function("!!(window.cim && window.cim.map)", timeout=120_000, polling=10)  # a boolean: returning the map would make Playwright serialise it on every poll
    # 'load': the style and the first frame; 'idle': every tile of the view loaded and drawn.
    times = page.evaluate("""() => new Promise((resolve) => {
        const m = window.cim.map, t = {};
        if (m.loaded()) t.load = performance.now(); else m.once('load', () => { t.load = performance.now(); });
        const done = () => { t.idle = performance.now(); t.load = t.load || t.idle; resolve(t); };
        if (m.loaded() && m.areTilesLoaded() && !m.isMoving()) done(); else m.once('idle', done);
    })""")
    ms = times["idle"]
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    page.wait_for_timeout(300)  # let the last response bodies finish for the size count
    tiles = [r for r in responses if "/tiles/" in r.url and (r.url.endswith(".mvt") or r.url.endswith(".png"))]

    def size(r) -> int:
        try:
            s = r.request.sizes()
            return s["responseBodySize"] + s["responseHeadersSize"]
        except Exception:  # noqa: BLE001 - a response without a body (204) has no sizes
            return 0

    vector = [r for r in tiles if r.url.endswith(".mvt")]
    out = {"ms_to_idle": round(ms, 1), "ms_to_load": round(times["load"], 1),
           "main_thread_task_ms": round(metrics.get("TaskDuration", 0) * 1000, 1),
           "script_ms": round(metrics.get("ScriptDuration", 0) * 1000, 1), "tile_requests": len(tiles),
           "tile_204": sum(1 for r in tiles if r.status == 204), "tile_bytes": sum(size(r) for r in tiles),
           "vector_tiles": len(vector), "vector_bytes": sum(size(r) for r in vector),
           "requests": len(responses), "bytes": sum(size(r) for r in responses)}
    context.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--database-url")
    args = ap.parse_args()
    if not (ROOT / "web" / "dist" / "index.html").exists():
        subprocess.run(["npm", "run", "build"], cwd=ROOT / "web", check=True)
    url = database_url(args.database_url)
    from playwright.sync_api import sync_playwright

    rows = []
    with Server(url) as srv, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        for name, view in views(srv.url):
            runs = [measure(browser, srv.url, view) for _ in range(args.runs)]
            rows.append({"view": name, "hash": view, "runs": runs})
        browser.close()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    doc = {"benchmark": "web first render", "chromium": CHROMIUM, "viewport": VIEWPORT,
           "load_average": os.getloadavg(), "cpus": os.cpu_count(), "views": rows}
    (RESULTS / f"web-first-render-{stamp}.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"Chromium {CHROMIUM} (SwiftShader WebGL), {os.cpu_count()} CPUs, load average {load}\n")
    print("| view | idle ms, run 1 (cold tile cache) | idle ms, later runs (median) | 'load' ms (median) | "
          "main-thread busy ms (median) | tile requests (204) | tile KiB | of which vector tiles, KiB | "
          "all requests | all KiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        first, later = r["runs"][0], r["runs"][1:] or r["runs"]
        print(f"| {r['view']} `#{r['hash']}` | {first['ms_to_idle']:.0f} | "
              f"{statistics.median(x['ms_to_idle'] for x in later):.0f} | "
              f"{statistics.median(x['ms_to_load'] for x in r['runs']):.0f} | "
              f"{statistics.median(x['main_thread_task_ms'] for x in r['runs']):.0f} | {first['tile_requests']} ({first['tile_204']}) | "
              f"{first['tile_bytes'] / 1024:.0f} | {first['vector_tiles']}, {first['vector_bytes'] / 1024:.0f} | "
              f"{first['requests']} | {first['bytes'] / 1024:.0f} |")


if __name__ == "__main__":
    main()
