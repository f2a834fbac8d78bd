"""Benchmark: the drivers report (``drivers_job``) on the 200k-user simulation with the champions (issue #6).

Runs ``drivers_job`` in a child process (wall time and peak RSS from
``os.wait4``): validation of the dataset, the churn snapshot, SHAP on a 50k
sample, dependence and interaction views, anomalous cohorts with their own
snapshots, the uplift surrogate on the latest campaign, the HTML report.
Reuses the simulation and the champions of ``churn_scale.py`` and
``uplift_sim.py`` (runs them first if missing).

Usage::

    python benchmarks/drivers_scale.py

Figures go to stdout and to ``benchmarks/_data/drivers_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from churn_scale import (
    DATA,
    MLRUNS,
    has_sim,
    log,
    machine,
    results_name,
    run_child,
    settings,
    write_results,
)


def has_champions(mlruns: Path) -> bool:
    code = ("from churnml.config import Settings; from churnml import tracking\n"
            f"s = Settings(mlruns_dir={str(mlruns)!r})\n"
            "tracking.resolve('churn-risk', 'champion', s); tracking.resolve('recall-uplift', 'champion', s)")
    return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True).returncode == 0


def ensure_champions(data: Path, mlruns: Path, users: int = 200_000) -> None:
    """Train and promote both models on ``data`` (as the benchmarks of issues #4 and #5 do) if missing."""
    if has_sim(data) and has_champions(mlruns):
        return
    log("no champions yet: running churn_scale.py and uplift_sim.py first")
    subprocess.run([sys.executable, str(HERE / "churn_scale.py"), "--data", str(data), "--mlruns", str(mlruns),
                    "--users", str(users), "--phases", "simulate", "build", "train", "promote"], check=True)
    subprocess.run([sys.executable, str(HERE / "uplift_sim.py"), "--data", str(data), "--mlruns", str(mlruns),
                    "--users", str(users)], check=True)


def _drivers(a) -> dict:
    from churnml.drivers import drivers_job

    t0 = time.perf_counter()
    res = drivers_job(a.data / "dataset.yaml", a.out, settings=settings(a.mlruns), log=log)
    return {"job_s": round(time.perf_counter() - t0, 1), "report": str(res.report_path),
            "report_mb": round(res.report_path.stat().st_size / 1e6, 2), "versions": res.versions,
            "headlines": res.headlines, "cohort_sections": len(res.cohorts),
            "top_churn_drivers": list(res.churn_drivers["feature"].head(5)),
            "top_uplift_drivers": (list(res.uplift_drivers["feature"].head(5))
                                   if res.uplift_drivers is not None else None)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA / "sim200k")
    ap.add_argument("--mlruns", type=Path, default=MLRUNS)
    ap.add_argument("--users", type=int, default=200_000, help="users if the simulation must be made")
    ap.add_argument("--out", type=Path, default=DATA / "drivers" / "drivers_report.html")
    ap.add_argument("--repeat", type=int, default=1, help="runs (the fastest is reported beside each)")
    ap.add_argument("--child", choices=["drivers"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.data, a.mlruns, a.out = a.data.resolve(), a.mlruns.resolve(), a.out.resolve()
    if a.child:
        print(json.dumps(_drivers(a), default=str))
        return

    ensure_champions(a.data, a.mlruns, a.users)
    results = {"machine_start": machine(), "args": {k: str(v) for k, v in vars(a).items() if k != "child"},
               "runs": []}
    for i in range(a.repeat):
        log(f"drivers_job run {i + 1} ...")
        r = run_child(__file__, "drivers", ["--data", str(a.data), "--mlruns", str(a.mlruns), "--out", str(a.out)])
        results["runs"].append(r)
        log(f"run {i + 1}: {r['wall_s']:.1f}s wall, {r['cpu_s']:.0f} CPU s, peak RSS {r['peak_rss_gb']:.2f} GB, "
            f"load {r['load1_before']}->{r['load1_after']}")
    results["machine_end"] = machine()
    path = write_results(results_name("drivers_scale", a.data, DATA / "sim200k"), results)
    print(f"\nmachine: {results['machine_start']['nproc']} cores, {results['machine_start']['ram_gb']} GB; "
          f"load {results['machine_start']['loadavg']} -> {results['machine_end']['loadavg']}")
    print("| run | wall s (child) | job s | CPU s | peak RSS GB | load 1m before/after |\n|---|---|---|---|---|---|")
    for i, r in enumerate(results["runs"], 1):
        print(f"| {i} | {r['wall_s']:.1f} | {r['job_s']:.1f} | {r['cpu_s']:.0f} | {r['peak_rss_gb']:.2f} | "
              f"{r['load1_before']}/{r['load1_after']} |")
    r = results["runs"][-1]
    print(f"\nversions {r['versions']}; report {r['report']} ({r['report_mb']} MB); cohort sections {r['cohort_sections']}")
    print(f"top churn drivers: {r['top_churn_drivers']}\ntop uplift drivers: {r['top_uplift_drivers']}")
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
