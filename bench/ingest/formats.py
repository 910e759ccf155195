"""Peak memory and time of `cim ingest` for the same network delivered in every format it reads.

The synthetic water-supply network of ``synth.py`` (``--points`` points, one segment fewer)
written five ways, each loaded by ``cim ingest`` (read, every rule, the atomic load) into a
throwaway PostGIS cluster under ``/usr/bin/time -v``:

- ``shp``: zipped GBK shapefiles (EPSG:4546, ``.prj``);
- ``gpkg``: one GeoPackage of both tables (EPSG:4546);
- ``geojson``: zipped GeoJSON files of both tables (EPSG:4546 named in the files);
- ``csv``: zipped GBK CSV tables, the points with X (northing) / Y (easting with its zone
  prefix: a table has no ``.prj``), the segments without geometry (起点 / 终点 point numbers:
  their lines come from the point table);
- ``xlsx``: the same two tables as two sheets of one workbook (``--xlsx-points`` points, a
  workbook being slow to write).

``ogr2ogr`` loads the GeoPackage and the GeoJSON files in the same run (no validation; it cannot
build lines from a point table) for comparison. After each load the server's upkeep (VACUUM
ANALYZE, CHECKPOINT) is done before the next (``bench.common.settle``), and the first delivery
is loaded once untimed beforehand (a fresh cluster creates its WAL files during its first large
load). Results go to
``bench/results/ingest-formats-<stamp>.json`` and a Markdown table to stdout.

``--elevations`` gives every segment end a pipe elevation (ground minus depth), so the elevation
rules (Q10 closure, Q11 one elevation per point, Q20 vertical clearance) measure every segment.

    .venv/bin/python bench/ingest/formats.py [--points 500001] [--xlsx-points 200001] [--only csv,xlsx] [--elevations]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import pandas as pd
import shapely

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from run import _scratch_tables, pg_conninfo  # noqa: E402
from synth import lines_frame, points_frame  # noqa: E402

from bench.common import migrated_cluster, settle, timed  # noqa: E402

ZONE = 37_000_000          # the zone prefix of EPSG:4546 eastings (3° GK zone 37, CM 111E)


def _zip(out: Path, files: list[Path]) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(f, f.name)
    return out


def _tables(points: int, elevations: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The point table (X northing, Y easting with its zone prefix) and the line table."""
    pts, lines = points_frame(points), lines_frame(points, elevations=elevations)
    xy = shapely.get_coordinates(pts.geometry.to_numpy())
    table = pd.DataFrame(pts.drop(columns="geometry"))
    table.insert(1, "X", xy[:, 1].round(3))
    table.insert(2, "Y", (xy[:, 0] + ZONE).round(3))
    return table, pd.DataFrame(lines.drop(columns="geometry"))


def write_formats(work: Path, points: int, xlsx_points: int, only: set[str],
                  elevations: bool = False) -> dict[str, Path]:
    """The network written in each format asked for; returns format → delivery path."""
    out: dict[str, Path] = {}
    pts, lines = points_frame(points), lines_frame(points, elevations=elevations)
    if "shp" in only:
        folder = work / "shp"
        folder.mkdir()
        for name, frame in (("JSPOINT", pts), ("JSLINE", lines)):
            frame.to_file(folder / f"{name}.shp", encoding="gbk", engine="pyogrio")
            (folder / f"{name}.cpg").write_text("GBK")
        out["shp"] = _zip(work / "shp.zip", sorted(folder.iterdir()))
    if "gpkg" in only:
        for name, frame in (("JSPOINT", pts), ("JSLINE", lines)):
            frame.to_file(work / "net.gpkg", layer=name, engine="pyogrio")
        out["gpkg"] = work / "net.gpkg"
    if "geojson" in only:
        files = []
        for name, frame in (("JSPOINT", pts), ("JSLINE", lines)):
            frame.to_file(work / f"{name}.geojson", driver="GeoJSON", engine="pyogrio")
            files.append(work / f"{name}.geojson")
        out["geojson"] = _zip(work / "geojson.zip", files)
    if "csv" in only:
        table, line_table = _tables(points, elevations)
        table.to_csv(work / "JSPOINT.csv", index=False, encoding="gbk")
        line_table.to_csv(work / "JSLINE.csv", index=False, encoding="gbk")
        out["csv"] = _zip(work / "csv.zip", [work / "JSPOINT.csv", work / "JSLINE.csv"])
    if "xlsx" in only:
        table, line_table = _tables(xlsx_points, elevations)
        with pd.ExcelWriter(work / "给水.xlsx", engine="openpyxl") as xw:
            table.to_excel(xw, sheet_name="JSPOINT", index=False)
            line_table.to_excel(xw, sheet_name="JSLINE", index=False)
        out["xlsx"] = work / "给水.xlsx"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=500_001, help="pipe points (segments = points - 1)")
    ap.add_argument("--xlsx-points", type=int, default=200_001, help="pipe points of the workbook")
    ap.add_argument("--only", default="shp,gpkg,geojson,csv,xlsx", help="formats, comma-separated")
    ap.add_argument("--elevations", action="store_true",
                    help="segment ends carry pipe elevations (QDGC/ZDGC): the elevation rules run on every segment")
    args = ap.parse_args()
    only = set(args.only.split(","))

    home = Path(tempfile.mkdtemp(prefix="cim-bench-formats-", dir="/tmp"))
    home.chmod(0o755)
    rows: list[dict] = []
    try:
        deliveries = write_formats(home, args.points, args.xlsx_points, only, args.elevations)
        cluster, url = migrated_cluster(home / "pg")
        try:
            import psycopg2
            conn = psycopg2.connect(url)
            env = dict(os.environ, CIM_DATABASE_URL=url, CIM_HOME=str(home), CIM_LOG_LEVEL="WARNING")
            # an untimed first load: a fresh cluster creates its WAL files during its first large load
            first = next(iter(deliveries.values()))
            timed([str(ROOT / ".venv" / "bin" / "cim"), "ingest", str(first), "--county", "439999", "--json"], env)
            settle(url, ["cim.pipe_point", "cim.pipe_segment"])
            for i, (fmt, path) in enumerate(deliveries.items()):
                ours = timed([str(ROOT / ".venv" / "bin" / "cim"), "ingest", str(path), "--county", f"43{i:04d}",
                              "--json"], env)
                out = json.loads(ours["stdout"].strip().splitlines()[-1])
                assert out["state"] == "loaded", out
                settle(url, ["cim.pipe_point", "cim.pipe_segment"])
                row = {"format": fmt, "size_mb": round(path.stat().st_size / 2**20, 1), "rows": sum(out["counts"].values()),
                       "cim_s": ours["seconds"], "cim_peak_rss_mb": ours["peak_rss_mb"], "cim_cpu_s": ours["cpu_s"]}
                if fmt in ("gpkg", "geojson"):
                    with conn.cursor() as cur:
                        cur.execute("DROP SCHEMA IF EXISTS ogr_scratch CASCADE; CREATE SCHEMA ogr_scratch")
                    conn.commit()
                    sources = ([str(path)] if fmt == "gpkg"       # one run per GeoJSON file of the zip
                               else [f"/vsizip/{path}/{n}.geojson" for n in ("JSPOINT", "JSLINE")])
                    theirs = [timed(["ogr2ogr", "--config", "PG_USE_COPY", "YES", "-f", "PostgreSQL",
                                     f"PG:{pg_conninfo(url)}", source, "-lco", "SCHEMA=ogr_scratch",
                                     "-lco", "SPATIAL_INDEX=GIST", "-t_srs", "EPSG:4490", "-overwrite",
                                     "-gt", "65536"], env) for source in sources]
                    settle(url, [f"ogr_scratch.{t}" for t in _scratch_tables(conn)])
                    seconds = round(sum(t["seconds"] for t in theirs), 2)
                    row.update(ogr2ogr_s=seconds, ogr2ogr_peak_rss_mb=max(t["peak_rss_mb"] for t in theirs),
                               ratio=round(ours["seconds"] / seconds, 2))
                rows.append(row)
                print(row, flush=True)
            conn.close()
        finally:
            cluster.destroy()
    finally:
        shutil.rmtree(home, ignore_errors=True)

    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "points": args.points,
              "xlsx_points": args.xlsx_points, "elevations": args.elevations, "runs": rows, "cpus": os.cpu_count(), "load_avg": os.getloadavg()}
    out_path = RESULTS / f"ingest-formats-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out_path.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print("| format | size MB | rows | cim ingest s | peak RSS MB | ogr2ogr s | ogr2ogr MB | ratio |\n"
          "|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['format']} | {r['size_mb']} | {r['rows']} | {r['cim_s']:.1f} | {r['cim_peak_rss_mb']:.0f} | "
              f"{r.get('ogr2ogr_s', '–')} | {r.get('ogr2ogr_peak_rss_mb', '–')} | {r.get('ratio', '–')} |")
    print(f"results: {out_path}")


if __name__ == "__main__":
    main()
