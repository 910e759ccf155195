"""What linking tiers costs the ingest: the same `cim ingest` on four embedded clusters, interleaved.

1. ``minimal``     wal_level = minimal, no WAL senders (the embedded cluster's former settings);
2. ``logical``     wal_level = logical with the replication slots and workers of cim/embedded.py
                   (the default now), no identity, nothing published;
3. ``published``   2 + ``cim tier init`` (the (id, county_code) replica-identity indexes) and
                   ``cim tier publish``, no subscriber connected;
4. ``subscribed``  3 + a province cluster subscribed and streaming while the county ingests (its
                   walsender decodes the WAL on the same two cores).

Each run ingests a fresh delivery of the synthetic county (``bench/ingest/synth.py``) for a new
county under the publishing city's prefix 4307, so every configuration loads the same rows and
the published ones carry them. The configurations take turns for ``--repeat`` rounds (the machine
is shared; interleaving spreads its load over all four); the median wall time and the WAL written
per run are reported, with the ratio to ``minimal``. In ``subscribed`` the time until the last
row is at the province is reported too.

    .venv/bin/python bench/tiers/ingest_cost.py [--points 20001] [--buildings 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "ingest"))

import psycopg2  # noqa: E402
from synth import counts, write_delivery  # noqa: E402

from bench.common import timed  # noqa: E402
from cim import tiers  # noqa: E402
from cim.auth import CLI_PRINCIPAL  # noqa: E402
from cim.embedded import EmbeddedCluster  # noqa: E402
from cim.migrate import prepare_database  # noqa: E402

SMALL = {"shared_buffers": "'256MB'"}
MINIMAL = {"wal_level": "minimal", "max_wal_senders": "0", "max_replication_slots": "0",
           "max_logical_replication_workers": "0"}
CONFIGS = ("minimal", "logical", "published", "subscribed")


def _cluster(root: Path, name: str, conf: dict) -> tuple[EmbeddedCluster, str]:
    home = root / name
    home.mkdir()
    home.chmod(0o755)
    cluster = EmbeddedCluster(home, extra_conf={**SMALL, **conf})
    url = cluster.start().url
    prepare_database(url)
    return cluster, url


def _scalar(url: str, sql: str, params: tuple = ()):
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchone()[0]
    finally:
        conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=20_001)
    ap.add_argument("--buildings", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data", type=Path, default=RESULTS / "ingest-data")
    args = ap.parse_args()

    delivery = write_delivery(args.data, points=args.points, buildings=args.buildings,
                              name=f"bench_{args.points}_{args.buildings}.zip")
    total = sum(counts(args.points, args.buildings).values())
    root = Path(tempfile.mkdtemp(prefix="cim-bench-tiers-", dir="/tmp"))
    root.chmod(0o755)
    clusters: dict[str, tuple[EmbeddedCluster, str]] = {}
    runs: dict[str, list[dict]] = {c: [] for c in CONFIGS}
    arrival: list[float] = []
    try:
        clusters["minimal"] = _cluster(root, "minimal", MINIMAL)
        for name in ("logical", "published", "subscribed", "province"):
            clusters[name] = _cluster(root, name, {})
        for name in ("published", "subscribed"):
            conn = psycopg2.connect(clusters[name][1])
            tiers.init(conn, "430700", "常德市", principal=CLI_PRINCIPAL)
            pub = tiers.publish(conn, principal=CLI_PRINCIPAL)
            conn.close()
            if name == "subscribed":
                port = clusters[name][0].info().port
                url = tiers.subscriber_url(pub["password"], "127.0.0.1", port, pub["database"])
                conn = psycopg2.connect(clusters["province"][1])
                tiers.init(conn, "430000", "湖南省", principal=CLI_PRINCIPAL)
                tiers.subscribe(conn, url, "430700", principal=CLI_PRINCIPAL)
                conn.close()
        for i in range(args.repeat):
            county = f"4307{i + 1:02d}"
            for name in CONFIGS:
                url = clusters[name][1]
                lsn0 = _scalar(url, "SELECT pg_current_wal_lsn()::text")
                env = dict(os.environ, CIM_DATABASE_URL=url, CIM_HOME=str(root / name), CIM_LOG_LEVEL="WARNING")
                run = timed([str(ROOT / ".venv" / "bin" / "cim"), "ingest", str(delivery), "--county", county,
                             "--json"], env)
                out = json.loads(run["stdout"].strip().splitlines()[-1])
                assert out["state"] == "loaded", out
                run["wal_mb"] = float(_scalar(url, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (lsn0,))) / 2**20
                runs[name].append(run)
                if name == "subscribed":
                    did = out["delivery_id"]
                    t = time.monotonic()
                    while _scalar(clusters["province"][1], "SELECT count(*) FROM cim.delivery WHERE id = %s "
                                  "AND state = 'current'", (did,)) == 0:
                        time.sleep(0.05)
                    arrival.append(time.monotonic() - t)
    finally:
        for cluster, _ in reversed(list(clusters.values())):
            cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)

    med = {c: statistics.median(r["seconds"] for r in runs[c]) for c in CONFIGS}
    wal = {c: statistics.median(r["wal_mb"] for r in runs[c]) for c in CONFIGS}
    result = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "rows": total, "repeat": args.repeat,
              "median_s": med, "ratio_to_minimal": {c: round(med[c] / med["minimal"], 3) for c in CONFIGS},
              "wal_mb": {c: round(w, 1) for c, w in wal.items()},
              "runs_s": {c: [round(r["seconds"], 2) for r in runs[c]] for c in CONFIGS},
              "province_lag_after_ingest_s": [round(a, 2) for a in arrival],
              "cpus": os.cpu_count(), "load_avg": os.getloadavg()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"tiers-ingest-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    print("| configuration | median s | × minimal | WAL MB per delivery | runs s |\n|---|---|---|---|---|")
    for c in CONFIGS:
        print(f"| {c} | {med[c]:.2f} | {result['ratio_to_minimal'][c]:.2f} | {wal[c]:.1f} | "
              f"{', '.join(f'{s:.2f}' for s in result['runs_s'][c])} |")
    print(f"\n{total} rows per delivery; after the county's commit, the delivery was current at the province "
          f"in {', '.join(f'{a:.2f}' for a in arrival)} s; load average {result['load_avg'][0]:.1f} on "
          f"{result['cpus']} CPUs\nresults: {path}")


if __name__ == "__main__":
    main()
