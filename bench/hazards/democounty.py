"""The demo county for the hazard-scan benchmark (``run.py --county demo``): the demo generator
scaled up, with planted gas hazards, loaded through the real ingest path.

``cim demo generate --buildings N --segments M --hazards K`` writes the delivery (the town grows
to hold the segments; ``--hazards`` plants K each of G01, G02 and G03 in 燃气管线.zip, see
:mod:`demo.hazards`), then every file of the manifest's ``ingest_order`` goes through
``cim ingest load`` (read, validate, atomic load), as ``make demo`` (scripts/demo.sh) does. The
DEM is left out: no hazard rule and no health-check indicator reads it. The health-check bench
(``bench/healthcheck/run.py --county demo``) uses the same county without planted hazards and
loads its two health-check inputs (常住人口.xlsx, 建成区.geojson) with ``cim healthcheck inputs``
(:func:`healthcheck_inputs`), as ``make demo`` does.

The re-surveyed gas delivery of the rescan is the same 燃气管线.zip with ``moved`` points of the
gas mains 0.5 m north (their segments' ends with them), ingested the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyogrio
import shapely

ROOT = Path(__file__).resolve().parent.parent.parent
CIM = ROOT / ".venv" / "bin" / "cim"
COUNTY = "430703"
GAS_FILE = "燃气管线.zip"


def _cim(args: list[str], env: dict[str, str]) -> str:
    """Run ``cim``; stop with its output when it fails; return its stdout."""
    res = subprocess.run([str(CIM), *args], env=env, capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        raise SystemExit(f"cim {' '.join(args)} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res.stdout


def environment(url: str, home: Path, chunk_rows: int | None = None) -> dict[str, str]:
    """The environment of the ``cim`` commands: the throwaway cluster and its home (and the
    ingest's chunk size, ``CIM_INGEST_CHUNK_ROWS``, when given)."""
    env = dict(os.environ, CIM_DATABASE_URL=url, CIM_HOME=str(home))
    if chunk_rows:
        env["CIM_INGEST_CHUNK_ROWS"] = str(chunk_rows)
    return env


def generate(out: Path, env: dict[str, str], buildings: int, segments: int, hazards: int = 0) -> dict:
    """``cim demo generate`` into ``out``; its manifest."""
    _cim(["demo", "generate", "--out", str(out), "--buildings", str(buildings), "--segments", str(segments),
          "--hazards", str(hazards)], env)
    return json.loads((out / "demo_manifest.json").read_text(encoding="utf-8"))


def ingest_file(path: Path, env: dict[str, str]) -> dict:
    """``cim ingest load PATH --county … --json``: its outcome and seconds."""
    t0 = time.perf_counter()
    outcome = json.loads(_cim(["ingest", "load", str(path), "--county", COUNTY, "--json"], env))
    outcome["seconds"] = round(time.perf_counter() - t0, 2)
    return outcome


def ingest(out: Path, manifest: dict, env: dict[str, str]) -> dict[str, float]:
    """Every delivery file of the manifest but the DEM, in its order; seconds per file."""
    took = {}
    for name in manifest["ingest_order"]:
        if name.endswith(".tif"):
            continue
        took[name] = ingest_file(out / name, env)["seconds"]
        print(f"#   ingested {name} in {took[name]} s", file=sys.stderr, flush=True)
    return took


def healthcheck_inputs(out: Path, manifest: dict, env: dict[str, str]) -> dict[str, float]:
    """The health-check inputs the generator wrote (the manifest's ``healthcheck_inputs``: resident
    population, built-up area) through ``cim healthcheck inputs … --county``; seconds per file."""
    took = {}
    for name in manifest["healthcheck_inputs"]:
        t0 = time.perf_counter()
        _cim(["healthcheck", "inputs", str(out / name), "--county", COUNTY], env)
        took[name] = round(time.perf_counter() - t0, 2)
        print(f"#   loaded {name} in {took[name]} s", file=sys.stderr, flush=True)
    return took


def rows(url: str) -> dict[str, int]:
    """Current buildings, pipe segments and pipe points of the county."""
    import psycopg2

    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        out = {}
        for key, table in (("buildings", "building"), ("segments", "pipe_segment"), ("points", "pipe_point")):
            cur.execute(f"SELECT count(*) FROM cim.{table} WHERE county_code = %s AND is_current", (COUNTY,))
            out[key] = cur.fetchone()[0]
    return out


def resurveyed_gas(out: Path, dest: Path, moved: int) -> Path:
    """燃气管线.zip again with ``moved`` points of the gas mains 0.5 m north and the ends of their
    segments with them, written as the generator writes it (GBK shapefiles in EPSG:4546)."""
    from demo.writers import write_shapefile_zip

    src = f"/vsizip/{out / GAS_FILE}"
    pts = pyogrio.read_dataframe(f"{src}/RQPOINT.shp", encoding="gbk")
    lines = pyogrio.read_dataframe(f"{src}/RQLINE.shp", encoding="gbk")
    on_main = np.flatnonzero(pts["附属物"].isin(["阀门", "测试桩", "凝水缸"]).to_numpy())
    picks = on_main[np.linspace(0, len(on_main) - 1, moved).round().astype(int)]
    pts.loc[picks, "X"] = pts.loc[picks, "X"] + 0.5          # X = northing in survey tables
    shifted = dict(zip(pts["物探点号"].iloc[picks], shapely.get_coordinates(pts.geometry.iloc[picks]) + [0.0, 0.5],
                       strict=True))
    pts.loc[picks, "geometry"] = shapely.points([shifted[k] for k in pts["物探点号"].iloc[picks]])
    coords = [np.asarray(g.coords) for g in lines.geometry]
    for c, a, b in zip(coords, lines["起点点号"], lines["终点点号"], strict=True):
        if a in shifted:
            c[0] = shifted[a]
        if b in shifted:
            c[-1] = shifted[b]
    lines["geometry"] = shapely.linestrings(coords) if len({len(c) for c in coords}) > 1 else \
        shapely.linestrings(np.stack(coords))
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / GAS_FILE
    write_shapefile_zip(path, [("RQPOINT", pts), ("RQLINE", lines)])
    return path


def redeliver_gas(out: Path, env: dict[str, str], moved: int) -> int:
    """The re-surveyed gas network through ``cim ingest load``; the id of its delivery."""
    path = resurveyed_gas(out, out / "resurvey", moved)
    outcome = ingest_file(path, env)
    return int(outcome["delivery_id"])


def planted_keys(manifest: dict) -> set[tuple[str, frozenset[str]]]:
    """The planted hazards as (rule, facility keys) of the ledger."""
    keys = set()
    for h in manifest.get("hazards") or []:
        a, b = h["segment"].split("-")
        gas = f"pipe_segment:RQ:{a}>{b}"
        if "building" in h:
            keys.add((h["rule_id"], frozenset((gas, f"building:{h['building']}"))))
        else:
            net, seg = h["other"].split(":")
            c, d = seg.split("-")
            keys.add((h["rule_id"], frozenset((gas, f"pipe_segment:{net}:{c}>{d}"))))
    return keys
