"""The official 3D Tiles validator (CesiumGS ``3d-tiles-validator``) over our 3D Tiles builds.

In throwaway PostGIS clusters under /tmp it builds, with ``cim tiles3d build``:

- **demo**: the demo county (``cim demo generate``, then ``cim ingest`` of every delivery and the
  DEM, as ``make demo`` does): the ``buildings`` and ``pipelines`` layers;
- **synth**: the synthetic county of ``synth.sql`` with ``--buildings`` buildings (default 100,000)
  and ``--pipes`` pipe points: both layers;

each in every ``--formats`` (default ``glb``, 3D Tiles 1.1, and ``b3dm``, 3D Tiles 1.0), and runs
the validator on every ``tileset.json`` (default options: contents validated, glTF through the
Khronos validator, EXT_mesh_features / EXT_structural_metadata by the 3D Tiles validator). It
prints a Markdown table of errors, warnings and infos per tileset (the validator's totals, plus
the leaf issues by type), writes ``bench/results/tiles3d-validator-<stamp>.json`` with the
validator's version and every error message, and exits 1 when any tileset has an error.

The validator is not installed from a package registry: point ``--validator`` (or the
``CIM_3DTILES_VALIDATOR`` environment variable) at a checkout that has been built (``npm
install`` and ``npx tsc`` in it, giving ``build/main.js``); this script neither fetches nor builds it.

    .venv/bin/python bench/tiles3d/validate.py --validator /path/to/3d-tiles-validator \\
        [--buildings 100000] [--pipes 20000] [--formats glb b3dm] [--skip-demo] [--skip-synth]
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = ROOT / "bench" / "results"
CIM = ROOT / ".venv" / "bin" / "cim"
DEMO_COUNTY = "430703"
sys.path.insert(0, str(ROOT))

from bench.common import migrated_cluster  # noqa: E402


def validator_entry(path: Path) -> Path:
    """The validator's built entry point (``build/main.js``) from a checkout folder or the file itself."""
    path = path.expanduser().resolve()
    if path.is_file():
        return path
    for cand in (path / "build" / "main.js", path / "build" / "src" / "main.js"):
        if cand.is_file():
            return cand
    raise SystemExit(f"no built validator in {path}: expected build/main.js (run `npm install` and `npx tsc` "
                     "in the checkout first)")


def validator_versions(entry: Path) -> dict:
    """Validator version and commit, and the versions of the libraries it validates with."""
    root = entry.parent.parent if entry.parent.name == "build" else entry.parent
    out: dict = {"node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()}
    for key, pkg in (("3d-tiles-validator", root / "package.json"),
                     ("3d-tiles-tools", root / "node_modules" / "3d-tiles-tools" / "package.json"),
                     ("gltf-validator", root / "node_modules" / "gltf-validator" / "package.json")):
        if pkg.is_file():
            out[key] = json.loads(pkg.read_text()).get("version")
    rev = subprocess.run(["git", "-C", str(root), "describe", "--tags", "--always", "--dirty"],
                         capture_output=True, text=True)
    if rev.returncode == 0:
        out["commit"] = rev.stdout.strip()
    return out


def leaf_issues(issues: list[dict]) -> list[dict]:
    """The innermost issues of a report (a content's issues are nested under one per-content issue)."""
    out = []
    for issue in issues:
        causes = issue.get("causes") or []
        out += leaf_issues(causes) if causes else [issue]
    return out


def run_validator(entry: Path, tileset: Path, report: Path) -> dict:
    """Validate one tileset; the validator's totals, leaf issues by severity and type, and the errors."""
    t0 = time.perf_counter()
    res = subprocess.run(["node", str(entry), "--tilesetFile", str(tileset), "--reportFile", str(report)],
                         capture_output=True, text=True)
    seconds = round(time.perf_counter() - t0, 1)
    if not report.is_file():
        raise SystemExit(f"the validator wrote no report for {tileset} (exit {res.returncode}):\n"
                         f"{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    doc = json.loads(report.read_text())
    leaves = leaf_issues(doc.get("issues", []))
    by_type = collections.Counter(issue_kind(i) for i in leaves)
    return {"errors": doc["numErrors"], "warnings": doc["numWarnings"], "infos": doc["numInfos"],
            "leaf_issues": dict(sorted(by_type.items())),
            "error_messages": [f"{i['path']}: {i['message']}" for i in leaves if i["severity"] == "ERROR"][:50],
            "warning_messages": [f"{i['path']}: {i['message']}" for i in leaves if i["severity"] == "WARNING"][:50],
            "validator_seconds": seconds}


def issue_kind(issue: dict) -> str:
    """Severity and type of a leaf issue; for a content's glTF validator issues (CONTENT_VALIDATION_*,
    whose type says nothing) the kind of message, e.g. "This object may be unused"."""
    kind = f"{issue['severity']} {issue['type']}"
    if issue["type"].startswith("CONTENT_VALIDATION_"):
        kind += ": " + issue["message"].split(":")[0].rstrip(".")[:70]
    return kind


def cim(args: list[str], env: dict) -> str:
    """Run ``cim`` and return its stdout; stop with its output when it fails."""
    res = subprocess.run([str(CIM), *args], env=env, capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        raise SystemExit(f"cim {' '.join(args)} failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    return res.stdout


def load_demo(env: dict, home: Path) -> str:
    """The demo county through the real ingest path (every delivery, then the DEM)."""
    demo = home / "demo"
    cim(["demo", "generate", "--out", str(demo)], env)
    order = json.loads((demo / "demo_manifest.json").read_text())["ingest_order"]
    for name in order:
        cim(["ingest", str(demo / name), "--county", DEMO_COUNTY], env)
    return f"demo county {DEMO_COUNTY} ({len(order)} files)"


def load_synth(url: str, buildings: int, pipes: int) -> str:
    """The synthetic county of the 3D Tiles benchmark."""
    subprocess.run(["psql", url, "-q", "-v", "ON_ERROR_STOP=1", "-v", f"n={buildings}", "-v", f"p={pipes}",
                    "-f", str(HERE / "synth.sql")], check=True)
    return f"synthetic: {buildings:,} buildings, {pipes:,} pipe points"


def run_dataset(name: str, work: Path, entry: Path, formats: list[str], load) -> list[dict]:
    """Fresh cluster, data, a build per format, the validator on every tileset."""
    home = work / name
    home.mkdir()
    cluster, url = migrated_cluster(home / "pg")
    rows = []
    try:
        env = dict(os.environ, CIM_DATABASE_URL=url, CIM_HOME=str(home), CIM_PUBLIC_READ="true")
        what = load(env, home, url)
        for fmt in formats:
            out = home / "3dtiles" / fmt
            cim(["tiles3d", "build", "--out", str(out), "--format", fmt], env)
            for layer in ("buildings", "pipelines"):
                folder = out / layer
                stats = json.loads((folder / "build.json").read_text())
                contents = sorted(folder.rglob(f"*.{fmt}"))
                result = run_validator(entry, folder / "tileset.json", home / f"report-{fmt}-{layer}.json")
                row = {"data": name, "description": what, "layer": layer, "format": fmt,
                       "features": stats["features"], "contents": len(contents), "build_seconds": stats["seconds"],
                       **result}
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if not k.endswith("messages")}, ensure_ascii=False),
                      file=sys.stderr, flush=True)
    finally:
        cluster.destroy()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--validator", type=Path, default=os.environ.get("CIM_3DTILES_VALIDATOR"),
                    help="built 3d-tiles-validator checkout (or its build/main.js); env CIM_3DTILES_VALIDATOR")
    ap.add_argument("--buildings", type=int, default=100_000, help="synthetic buildings")
    ap.add_argument("--pipes", type=int, default=20_000, help="synthetic pipe points (segments = points − 1)")
    ap.add_argument("--formats", nargs="+", choices=["glb", "b3dm"], default=["glb", "b3dm"])
    ap.add_argument("--skip-demo", action="store_true", help="leave out the demo county")
    ap.add_argument("--skip-synth", action="store_true", help="leave out the synthetic county")
    args = ap.parse_args()
    if args.validator is None:
        ap.error("give --validator PATH or set CIM_3DTILES_VALIDATOR")
    entry = validator_entry(Path(args.validator))
    versions = validator_versions(entry)
    work = Path(tempfile.mkdtemp(prefix="cim-bench-3dval-", dir="/tmp"))
    work.chmod(0o755)
    started = dt.datetime.now(dt.UTC)
    rows: list[dict] = []
    try:
        if not args.skip_demo:
            rows += run_dataset("demo", work, entry, args.formats, lambda env, home, url: load_demo(env, home))
        if not args.skip_synth:
            rows += run_dataset(f"synth-{args.buildings}", work, entry, args.formats,
                                lambda env, home, url: load_synth(url, args.buildings, args.pipes))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"tiles3d-validator-{stamp}.json"
    path.write_text(json.dumps({"started_utc": started.isoformat(timespec="seconds"), "validator": versions,
                                "results": rows}, indent=1, ensure_ascii=False))
    print(f"3d-tiles-validator {versions.get('3d-tiles-validator')} ({versions.get('commit', '?')}), "
          f"3d-tiles-tools {versions.get('3d-tiles-tools')}, gltf-validator {versions.get('gltf-validator')}, "
          f"node {versions['node']}; {started:%Y-%m-%d %H:%M} UTC\n")
    print("| data | layer | format | features | contents | errors | warnings | infos | leaf issues by type |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        kinds = ", ".join(f"{k} ×{v}" for k, v in r["leaf_issues"].items()) or "none"
        print(f"| {r['data']} | {r['layer']} | {r['format']} | {r['features']:,} | {r['contents']:,} | "
              f"{r['errors']} | {r['warnings']} | {r['infos']} | {kinds} |")
    for r in rows:
        for msg in r["error_messages"][:5]:
            print(f"ERROR {r['data']}/{r['layer']}/{r['format']}: {msg}")
    print(f"\nresults: {path}")
    sys.exit(1 if any(r["errors"] for r in rows) else 0)


if __name__ == "__main__":
    main()
