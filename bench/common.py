"""Plumbing shared by the benchmarks: a migrated throwaway cluster and GNU time measurements."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from cim.embedded import EmbeddedCluster
from cim.migrate import prepare_database

ROOT = Path(__file__).resolve().parent.parent


def migrated_cluster(home: Path) -> tuple[EmbeddedCluster, str]:
    """Start an embedded cluster under ``home`` with PostGIS and the platform schema; return it and its URL."""
    cluster = EmbeddedCluster(home)
    url = cluster.start().url
    prepare_database(url)
    return cluster, url


def timed(cmd: list[str], env: dict[str, str], cwd: Path = ROOT) -> dict:
    """Run ``cmd`` under GNU ``time -v``: wall seconds, peak RSS (MB) and the tail of stdout."""
    busy0 = _busy_seconds()
    res = subprocess.run(["/usr/bin/time", "-v", *cmd], env=env, capture_output=True, text=True, cwd=cwd)
    busy = _busy_seconds() - busy0
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", res.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr)
    cpu = sum(float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", res.stderr))
    if res.returncode != 0 or not wall:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}")
    h, m, s = wall.groups()
    return {"seconds": int(h or 0) * 3600 + int(m) * 60 + float(s),
            "peak_rss_mb": round(int(rss.group(1)) / 1024, 1), "cpu_s": round(cpu, 1),
            "machine_busy_s": round(busy, 1), "stdout": res.stdout[-2000:]}


def settle(url: str, tables: list[str]) -> float:
    """The upkeep a load leaves to the server, done before the next timed command: ``VACUUM
    (ANALYZE)`` of the loaded ``tables`` (statistics, visibility map, a GIN index's pending list
    merged), then ``CHECKPOINT`` and the kernel's ``sync`` to write its pages out. Left to
    autovacuum (up to a minute after the commit) and the checkpointer, that work would share the
    CPUs and the disk with whichever command runs next. Returns the seconds of the VACUUM."""
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            t0 = time.monotonic()
            cur.execute(f"VACUUM (ANALYZE) {', '.join(tables)}")
            took = time.monotonic() - t0
            cur.execute("CHECKPOINT")
    finally:
        conn.close()
    os.sync()
    return round(took, 2)


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores, /proc/stat): with the command's
    own CPU time, shows how much its database server worked beside it."""
    fields = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
