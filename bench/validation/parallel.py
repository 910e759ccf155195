"""Time rule Q21 (parallel horizontal clearances) on a mixed-network delivery of ~100k segments.

    .venv/bin/python bench/validation/parallel.py [--segments 100000] [--repeat 3]

Writes (or reuses) a demo county with ``demo.generate`` enlarged to about ``--segments``
pipe segments of six networks along the street grid (drainage, water, gas, streetlight cable,
telecom: gas mains share the pavement with telecom ducts and lighting cables 1.5–2.5 m away),
reads its pipeline files as one delivery, and prints the CPU seconds of the whole validation
with Q21 switched off and on, and of ``check_parallel`` alone (best of ``--repeat``): with the
rules as shipped (the demo keeps its clearances: no finding) and with every gas limit raised to
3 m (thousands of findings, so the cost of writing them is included). No database.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

import yaml

from demo.generate import MANIFEST, generate
from ingest.mapping.normalize import load_dictionaries
from ingest.pipeline import read_deliveries
from ingest.validate import validate
from ingest.validation.clearance import check_parallel
from ingest.validation.core import RULES_PATH, Ctx, load_rules
from ingest.validation.network import gather

PIPE_FILES = ["排水管线.zip", "给水管线.zip", "燃气管线.zip", "路灯管线.zip", "通信管线成果表.xlsx"]


def best(fn, repeat: int) -> tuple[float, object]:
    """Least CPU seconds of ``repeat`` calls, and the last result."""
    times, out = [], None
    for _ in range(repeat):
        c0 = time.process_time()
        out = fn()
        times.append(time.process_time() - c0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--segments", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "cim-bench-q21")
    args = ap.parse_args()
    out = args.out / str(args.segments)
    if not (out / MANIFEST).exists():
        generate(out, segments=args.segments, buildings=100)
    delivery = read_deliveries([out / n for n in PIPE_FILES], county="430703")
    segs = sum(len(b) for b in delivery.batches if b.target == "pipe_segment")
    nets = collections.Counter(n for b in delivery.batches if b.target == "pipe_segment" for n in b.frame["network"])

    rules = yaml.safe_load(RULES_PATH.read_text(encoding="utf-8"))
    off, wide = yaml.safe_load(yaml.safe_dump(rules)), yaml.safe_load(yaml.safe_dump(rules))
    off["Q21"]["enabled"] = False
    for table in ("gas", "gas_conduit"):
        wide["Q21"]["params"][table] = {n: {c: 3.0 for c in row} for n, row in rules["Q21"]["params"][table].items()}
    paths = {"off": out / "rules-no-q21.yaml", "wide": out / "rules-q21-3m.yaml"}
    for name, data in (("off", off), ("wide", wide)):
        paths[name].write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    t_off, _ = best(lambda: validate(delivery, rules_path=paths["off"]), args.repeat)
    t_on, report = best(lambda: validate(delivery), args.repeat)

    net = gather(delivery.batches)
    dicts = load_dictionaries()

    def alone(path: Path | None) -> int:
        ctx = Ctx(delivery, load_rules(str(path) if path else None), dicts)
        check_parallel(ctx, net)
        return len(ctx.report.findings)

    t_rule, n_rule = best(lambda: alone(None), args.repeat)
    t_wide, n_wide = best(lambda: alone(paths["wide"]), args.repeat)
    print(f"segments {segs}  ({dict(nets)})")
    print(f"validate without Q21           {t_off:6.3f} s CPU")
    print(f"validate with Q21              {t_on:6.3f} s CPU   Q21 findings "
          f"{sum(f.rule_id == 'Q21' for f in report.findings)}")
    print(f"check_parallel alone           {t_rule:6.3f} s CPU   findings {n_rule}")
    print(f"check_parallel, gas limits 3 m {t_wide:6.3f} s CPU   findings {n_wide}")


if __name__ == "__main__":
    main()
