#!/usr/bin/env bash
# `make bench`: every benchmark of the platform, each side by side with its peer, in one run.
# Each section writes bench/results/<name>-<stamp>.json and prints a Markdown table.
# Sections: append one block per benchmark (keep each run short: the machine has 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

# --- vector tiles + OGC API Features items vs tipg (bench/tiles/vs_tipg.py) ---
# tipg's pins clash with ours, so it lives in its own virtualenv (gitignored).
if [ ! -x bench/.venv-tipg/bin/python ] || ! bench/.venv-tipg/bin/python -c "import tipg, uvloop, httptools" 2>/dev/null; then
  python3 -m venv bench/.venv-tipg
  bench/.venv-tipg/bin/pip install -q tipg 'uvicorn[standard]'
fi
$PY bench/tiles/vs_tipg.py --scales "${BENCH_TILE_SCALES:-10000,1000000}" --seconds "${BENCH_SECONDS:-6}"
# items pages at 8 concurrent clients on 100k buildings: throughput and tail (p50/p95/p99) side by side
$PY bench/tiles/vs_tipg.py --only items --scales "${BENCH_ITEMS_SCALE:-100000}" --seconds "${BENCH_ITEMS_SECONDS:-10}"

# --- 3D Tiles build vs py3dtiles export (bench/tiles3d/run.py); py3dtiles in its own virtualenv (gitignored) ---
if [ ! -x bench/.venv-py3dtiles/bin/py3dtiles ]; then
  python3 -m venv bench/.venv-py3dtiles
  bench/.venv-py3dtiles/bin/pip install -q 'py3dtiles[postgres]'
fi
$PY bench/tiles3d/run.py --sizes ${BENCH_3D_SIZES:-20000 200000} --pipes "${BENCH_3D_PIPES:-20000}"

# --- web map first render on the demo data in headless Chromium (bench/web/first_render.py) ---
$PY bench/web/first_render.py --runs "${BENCH_WEB_RUNS:-3}"

# --- ingest: cim ingest (read + validate + atomic load) vs ogr2ogr PG_USE_COPY (bench/ingest/run.py) ---
$PY bench/ingest/run.py --points "${BENCH_INGEST_POINTS:-100001}" --buildings "${BENCH_INGEST_BUILDINGS:-100000}"

# --- the official 3D Tiles validator over both 3D layers, demo county and 100k buildings (bench/tiles3d/validate.py) ---
# It is built from its source outside the repository; point CIM_3DTILES_VALIDATOR at the built checkout.
if [ -n "${CIM_3DTILES_VALIDATOR:-}" ]; then
  $PY bench/tiles3d/validate.py --buildings "${BENCH_3D_VALIDATE_BUILDINGS:-100000}"
else
  echo "CIM_3DTILES_VALIDATOR 未设置，跳过 3D Tiles 官方校验 / CIM_3DTILES_VALIDATOR unset: skipping the 3D Tiles validator (bench/README.md)" >&2
fi

# --- 城市体检: every indicator of a synthetic county, and three spatial ones vs GeoPandas (bench/healthcheck/run.py) ---
# each side computes the three spatial indicators BENCH_HC_REPEAT times (medians); at 1M buildings
# GeoPandas needs about 4 minutes per park-coverage pass
$PY bench/healthcheck/run.py --buildings "${BENCH_HC_BUILDINGS:-1000000}" --repeat "${BENCH_HC_REPEAT:-1}"
# --- province batch on Dask: the same build on 1 and 2 Dask workers and the single-process path (bench/batch/run.py) ---
# The province scale (4 counties × 250,000 buildings) takes about half an hour on 2 shared cores:
# BENCH_BATCH_BUILDINGS=250000 for it; the default here keeps make bench short.
$PY bench/batch/run.py --counties "${BENCH_BATCH_COUNTIES:-4}" --buildings "${BENCH_BATCH_BUILDINGS:-50000}"

# --- load: 100 concurrent clients for 60 s against cim serve --workers 2 (bench/load/run.py) ---
$PY bench/load/run.py --clients "${BENCH_LOAD_CLIENTS:-100}" --duration "${BENCH_LOAD_SECONDS:-60}"

# --- reports of a 205 000-finding delivery: HTML opened in Chromium, workbook rows (bench/ingest/report_scale.py) ---
$PY bench/ingest/report_scale.py --runs "${BENCH_REPORT_RUNS:-5}"
