"""Benchmark: the full retention job (validation, analysis, tables, HTML report) on a large simulated log.

Runs in a child process so its wall time and peak resident memory are measured
on their own (``os.wait4`` rusage). Reuses the data simulated by
``features_scale.py`` (``--data``), or simulates it first.

Usage::

    python benchmarks/features_scale.py --users 1000000     # simulate once (and the feature benchmark)
    python benchmarks/retention_scale.py                     # then this
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _child(data: Path, out: Path) -> dict:
    from churnml.config import load_dataset_config
    from churnml.data import open_dataset
    from churnml.jobs import retention_job

    cfg = load_dataset_config(data / "dataset.yaml")
    t0 = time.perf_counter()
    ds = open_dataset(cfg)
    validate_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = retention_job(cfg, out, dataset=ds)
    return {"events": ds.n_events, "validate_s": validate_s, "retention_s": time.perf_counter() - t0,
            "headlines": len(res.headlines)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=HERE / "_data" / "sim")
    ap.add_argument("--out", type=Path, default=HERE / "_data" / "retention")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.data, args.out)))
        return
    if not (args.data / "events.parquet").exists():
        raise SystemExit(f"no simulated data in {args.data}: run benchmarks/features_scale.py first")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", "--data", str(args.data), "--out", str(args.out)],
                            stdout=subprocess.PIPE)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"retention job failed with status {status}")
    r = json.loads(out.decode().strip().splitlines()[-1])
    print(f"events={r['events']:,} validate_s={r['validate_s']:.1f} retention_s={r['retention_s']:.1f} "
          f"wall_s={time.perf_counter() - t0:.1f} peak_rss_gb={usage.ru_maxrss / 1024**2:.2f} "
          f"headlines={r['headlines']}")


if __name__ == "__main__":
    main()
