"""Reports of a delivery with 200 000+ findings: written by the real report code, the HTML page
opened in headless Chromium, the workbook's rows counted.

What it does:
1. writes a faulty county delivery (``bench/ingest/synth.py``'s water network and buildings,
   GBK shapefiles in EPSG:4546 in one zip) whose every building has a structure type no
   dictionary knows (300 values: Q22), every segment an unknown material (40 values: Q22), and
   one segment in 20 an end point that does not exist (a value per row: Q05, thousands of groups
   of one), so the findings come in big groups and in a long tail of small ones;
2. reads and validates it (``ingest.pipeline.read_delivery``, ``ingest.validate.validate``; no
   database) and writes the HTML, XLSX, CSV, JSON and grouped JSON Lines reports through
   ``ingest.pipeline.write_report``, timing each;
3. serves the folder over HTTP on localhost and opens the HTML report ``--runs`` times in Debian's
   Chromium (/usr/bin/chromium, headless, a fresh context each: empty cache), taking from the
   Navigation Timing and Paint Timing entries the time to first contentful paint,
   DOMContentLoaded and the load event; with ``--baseline-runs N`` also the page the report would
   be if it listed every finding (the report's template with one row per finding: the ungrouped
   baseline), given ``--baseline-timeout`` seconds to load (at 200 000 findings it is a 74 MB page
   whose renderer grows past 9 GB: run it on a machine that can spare that);
4. opens the workbook read-only and counts the rows of every sheet against Excel's 1 048 576.

    .venv/bin/python bench/ingest/report_scale.py [--points 100000] [--buildings 100000] [--runs 5]
        [--baseline-runs 0] [--baseline-timeout 300]

Results: bench/results/report-scale-<stamp>.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import http.server
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
from synth import buildings_frame, lines_frame, points_frame  # noqa: E402

from ingest.pipeline import read_delivery, write_report  # noqa: E402
from ingest.report import COLUMNS, EXCEL_MAX_ROWS, SEVERITY_ZH, TEMPLATES, groups, summary  # noqa: E402
from ingest.validate import validate  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-dev-shm-usage"]
TARGET_MS = 2000


def faulty_delivery(out: Path, points: int, buildings: int) -> Path:
    """The zip of step 1."""
    parts = out / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    pts = points_frame(points)
    lines = lines_frame(points)
    n = len(lines)
    lines["CZ"] = np.char.add("材料", (np.arange(n) % 40).astype(str))
    missing = np.arange(n) % 20 == 7
    lines.loc[missing, "ZDDH"] = np.char.add("JSX", np.arange(int(missing.sum())).astype(str))
    bld = buildings_frame(buildings)
    bld["JGLX"] = np.char.add("结构", (np.arange(buildings) % 300).astype(str))
    for name, frame in (("JSPOINT", pts), ("JSLINE", lines), ("房屋", bld)):
        frame.to_file(parts / f"{name}.shp", engine="pyogrio", encoding="GBK")
    target = out / "faulty_delivery.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for p in sorted(parts.iterdir()):
            zf.write(p, p.name)
    return target


def ungrouped_html(report, path: Path) -> Path:
    """The report's template with every finding as a row and every group: the page as it would be
    without the grouped report's limits (the baseline)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    s = summary(report)
    names = {r["rule_id"]: r["name_zh"] for r in s["by_rule"]}
    rows = [{**f.to_dict(), "rule_name_zh": names.get(f.rule_id, f.rule_id),
             "severity_zh": SEVERITY_ZH.get(f.severity.value, f.severity.value)} for f in report.findings]
    grouped = groups(report)
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    path.write_text(env.get_template("report.html.j2").render(
        s=s, groups=grouped, groups_total=len(grouped), rule_names=names, rows=rows, truncated=0,
        columns=COLUMNS[:10], severity_zh=SEVERITY_ZH), encoding="utf-8")
    return path


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no access log on stdout
        pass


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A static file server for ``folder`` on a free localhost port."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


TIMING_JS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  return {fcp_ms: fcp ? fcp.startTime : null, dcl_ms: nav.domContentLoadedEventEnd, load_ms: nav.loadEventEnd,
          bytes: nav.transferSize, rows: document.querySelectorAll('tr').length};
}"""


def open_page(browser, url: str, runs: int, timeout_s: float = 600.0) -> list[dict]:
    """Open ``url`` ``runs`` times, each in a fresh context; timings of each run (a run that does
    not reach its load event within ``timeout_s`` is recorded as ``{"timeout_s": …}``)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    out: list[dict] = []
    for _ in range(runs):
        ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        page = ctx.new_page()
        try:
            page.goto(url, wait_until="load", timeout=timeout_s * 1000)
            page.wait_for_function("performance.getEntriesByType('navigation')[0].loadEventEnd > 0")
            out.append(page.evaluate(TIMING_JS))
        except PlaywrightTimeout:
            out.append({"timeout_s": timeout_s})
        finally:
            ctx.close()
    return out


def xlsx_rows(path: Path) -> dict[str, int]:
    """Rows per sheet of a workbook (counted, not taken from its dimension record)."""
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True)
    try:
        return {ws.title: sum(1 for _ in ws.iter_rows(values_only=True)) for ws in wb.worksheets}
    finally:
        wb.close()


def med(runs: list[dict], key: str) -> float | None:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(vals), 1) if vals else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--buildings", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--baseline-runs", type=int, default=0,
                    help="opens of the ungrouped page (default 0: skipped; it takes minutes and GBs of renderer memory)")
    ap.add_argument("--baseline-timeout", type=float, default=300.0, help="seconds the ungrouped page may take to load")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "cim-bench-report-scale")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")

    z = faulty_delivery(args.out, args.points, args.buildings)
    t0 = time.perf_counter()
    report = validate(read_delivery(z, county="430702"))
    t_validate = time.perf_counter() - t0
    findings = len(report.findings)
    print(f"delivery {z.name}: {findings:,} findings, read + validate {t_validate:.1f} s", file=sys.stderr)

    written: dict[str, dict] = {}
    for name in ("report.html", "report.xlsx", "report.csv", "report.json", "groups.jsonl"):
        t0 = time.perf_counter()
        path = write_report(report, args.out / name)
        written[name] = {"seconds": round(time.perf_counter() - t0, 2), "bytes": path.stat().st_size}
    if args.baseline_runs:
        t0 = time.perf_counter()
        path = ungrouped_html(report, args.out / "ungrouped.html")
        written["ungrouped.html"] = {"seconds": round(time.perf_counter() - t0, 2), "bytes": path.stat().st_size}
    n_groups = len(groups(report))

    rows = xlsx_rows(args.out / "report.xlsx")

    from playwright.sync_api import sync_playwright

    httpd, base = serve(args.out)
    pages: dict[str, list[dict]] = {}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                pages["report.html"] = open_page(browser, f"{base}/report.html", args.runs)
                print(f"report.html: {pages['report.html']}", file=sys.stderr)
                if args.baseline_runs:
                    pages["ungrouped.html"] = open_page(browser, f"{base}/ungrouped.html", args.baseline_runs,
                                                        args.baseline_timeout)
            finally:
                browser.close()
    finally:
        httpd.shutdown()

    result = {"stamp": stamp, "load_avg": load, "findings": findings, "groups": n_groups,
              "read_validate_s": round(t_validate, 1), "written": written, "xlsx_rows": rows,
              "xlsx_max_sheet_rows": max(rows.values()), "excel_limit": EXCEL_MAX_ROWS, "pages": pages}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"report-scale-{stamp}.json").write_text(json.dumps(result, indent=1), encoding="utf-8")

    print(f"\n{findings:,} findings in {n_groups:,} groups; load average {load:.1f}; "
          f"read + validate {t_validate:.1f} s (no database)\n")
    print("| page | size | written in | rows in page | first contentful paint ms (median) | DOMContentLoaded ms | "
          "load event ms (median) | load event ms (max) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, runs in pages.items():
        w = written[name]
        done = [r for r in runs if "load_ms" in r]
        if not done:
            print(f"| {name} | {w['bytes'] / 1e6:.2f} MB | {w['seconds']} s | {len(report.findings):,}+ | "
                  f"no load event within {runs[0]['timeout_s']:.0f} s | | | |")
            continue
        print(f"| {name} | {w['bytes'] / 1e6:.2f} MB | {w['seconds']} s | {done[0]['rows']:,} | {med(done, 'fcp_ms')} | "
              f"{med(done, 'dcl_ms')} | {med(done, 'load_ms')} | {max(r['load_ms'] for r in done):.1f} |")
    ok = med(pages["report.html"], "load_ms") or 0
    print(f"\nreport.html load event {'under' if ok < TARGET_MS else 'OVER'} {TARGET_MS} ms (median of {args.runs})")
    print("\n| file | size | written in |\n|---|---|---|")
    for name, w in written.items():
        if not name.endswith(".html"):
            print(f"| {name} | {w['bytes'] / 1e6:.1f} MB | {w['seconds']} s |")
    print(f"\nreport.xlsx rows per sheet: {rows} (largest {max(rows.values()):,}; Excel's limit {EXCEL_MAX_ROWS:,})")


if __name__ == "__main__":
    main()
