"""Time the read and validation stages of the ingest on the synthetic 100k delivery.

    .venv/bin/python bench/ingest/read_validate.py [--points 100000] [--buildings 100000]

Writes (or reuses) the delivery of ``bench/ingest/synth.py`` and prints the seconds spent in
``ingest.pipeline.read_delivery`` and ``ingest.validate.validate`` (no database: the county
boundary and loaded-duplicate checks need one and are skipped), plus the peak RSS. CPU seconds are printed too: on a shared machine the wall clock includes
time spent waiting for a core.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from synth import write_delivery  # noqa: E402

from ingest.pipeline import read_delivery  # noqa: E402
from ingest.validate import validate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--buildings", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "cim-bench-ingest")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    z = write_delivery(args.out, points=args.points, buildings=args.buildings)
    t0, c0 = time.perf_counter(), time.process_time()
    d = read_delivery(z, county="430702")
    t1, c1 = time.perf_counter(), time.process_time()
    r = validate(d)
    t2, c2 = time.perf_counter(), time.process_time()
    rows = sum(len(b) for b in d.batches)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"rows {rows}  ({d.counts()})")
    print(f"read      {t1 - t0:6.2f} s wall  {c1 - c0:6.2f} s CPU")
    print(f"validate  {t2 - t1:6.2f} s wall  {c2 - c1:6.2f} s CPU   findings {len(r.findings)} (errors {sum(f.severity.value == 'error' for f in r.findings)})")
    print(f"total     {t2 - t0:6.2f} s wall  {c2 - c0:6.2f} s CPU   {rows / (t2 - t0):,.0f} rows/s   peak RSS {peak:,.0f} MB")


if __name__ == "__main__":
    main()
