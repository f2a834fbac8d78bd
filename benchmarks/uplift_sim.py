"""Benchmark: recall-uplift training on a simulated app with known true uplift (issue #5).

Runs ``train_uplift_job`` on the single-channel simulation of ``churn_scale.py``
(200k users by default, ``--single-channel``: one push campaign arm, as before
issue #17; simulated and its churn champion trained first if missing), with the
simulator's ``truth/exposures.parquet`` so the test campaign's Qini and the
expected incremental returns can be set beside those of the true uplift; then
``promote_job`` for the uplift model. Each phase runs in a child process
(wall time and peak RSS from ``os.wait4``).

Usage::

    python benchmarks/uplift_sim.py
    python benchmarks/uplift_sim.py --no-promote

Figures go to stdout and to ``benchmarks/_data/uplift_sim.json``.
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


def _config(a):
    from churnml.config import TrainConfig

    return TrainConfig(kind="uplift", dataset=a.data / "dataset.yaml", truth=a.data / "truth" / "exposures.parquet")


def _train(a) -> dict:
    import mlflow

    from churnml.train_uplift import train_uplift_job

    t0 = time.perf_counter()
    res = train_uplift_job(_config(a), settings=settings(a.mlruns), log=log)
    job_s = time.perf_counter() - t0
    m = mlflow.get_run(res.run_id).data.metrics
    flat = {k: (v.item() if hasattr(v, "item") else v) for k, v in res.metrics.items()}
    return {"job_s": round(job_s, 1), "seconds_total_logged": m.get("seconds_total"), "selected": res.selected,
            "selection": json.loads(res.selection.to_json(orient="index")),
            "targeting": json.loads(res.targeting.to_json(orient="index")),
            "calibration": json.loads(res.calibration.to_json(orient="index")),
            "metrics": flat, "rows": res.rows, "train_campaigns": res.train_campaigns,
            "test_campaigns": res.test_campaigns, "version": res.version, "run_id": res.run_id}


def _promote(a) -> dict:
    from churnml.train import promote_job

    res = promote_job(_config(a), settings=settings(a.mlruns))
    return {"promoted": res.promoted, "reason": res.reason, "challenger": res.challenger, "champion": res.champion}


PHASES = {"train": _train, "promote": _promote}


def _has_churn_champion(mlruns: Path) -> bool:
    code = ("import sys; from churnml.config import Settings; from churnml import tracking\n"
            f"tracking.resolve('churn-risk', 'champion', Settings(mlruns_dir={str(mlruns)!r}))")
    return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True).returncode == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA / "sim200k_single")
    ap.add_argument("--mlruns", type=Path, default=MLRUNS)
    ap.add_argument("--users", type=int, default=200_000, help="users if the simulation must be made")
    ap.add_argument("--no-promote", dest="promote", action="store_false")
    ap.add_argument("--trials", type=int, default=30, help="Optuna trials of the churn champion if one is trained")
    ap.add_argument("--child", choices=PHASES, help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.data, a.mlruns = a.data.resolve(), a.mlruns.resolve()
    if a.child:
        print(json.dumps(PHASES[a.child](a), default=str))
        return

    # The targeting table's "churn risk" row needs a registered churn model: build one as churn_scale.py does.
    if not has_sim(a.data) or not _has_churn_champion(a.mlruns):
        log("no simulation or churn champion yet: running churn_scale.py first")
        subprocess.run([sys.executable, str(HERE / "churn_scale.py"), "--data", str(a.data), "--mlruns",
                        str(a.mlruns), "--users", str(a.users), "--single-channel", "--trials", str(a.trials),
                        "--phases", "simulate", "build", "train", "promote"], check=True)
    argv = ["--data", str(a.data), "--mlruns", str(a.mlruns)]
    results = {"machine_start": machine(), "args": {k: str(v) for k, v in vars(a).items() if k != "child"}}
    for phase in ["train", "promote"] if a.promote else ["train"]:
        log(f"{phase} ...")
        results[phase] = run_child(__file__, phase, argv)
        r = results[phase]
        log(f"{phase}: {r['wall_s']:.1f}s, peak RSS {r['peak_rss_gb']:.2f} GB")
    results["machine_end"] = machine()
    path = write_results(results_name("uplift_sim", a.data, DATA / "sim200k_single"), results)

    t = results["train"]
    print(f"\nmachine: {results['machine_start']['nproc']} cores, {results['machine_start']['ram_gb']} GB; "
          f"load {results['machine_start']['loadavg']} -> {results['machine_end']['loadavg']}")
    print(f"train_uplift_job: {t['wall_s']:.1f}s in a child (job {t['job_s']:.1f}s), peak RSS {t['peak_rss_gb']:.2f} GB")
    print(f"exposures: {t['rows']}; train campaigns {t['train_campaigns']}; test {t['test_campaigns']}")
    print(f"selected learner: {t['selected']}\n")
    print("| learner | CV Qini mean | std | cv s |\n|---|---|---|---|")
    for name, row in t["selection"].items():
        print(f"| {name} | {row['mean']:.4f} | {row['std']:.4f} | {row.get('cv_seconds', float('nan')):.1f} |")
    print("\n| targeting at 10 % | qini_auc | uplift@10 | returns/1000 expected | returns/1000 observed |")
    print("|---|---|---|---|---|")
    for name in ("random", "churn risk", "model", "true uplift learned from features", "true uplift"):
        row = t["targeting"].get(name)
        if row:
            print(f"| {name} | {row['qini_auc']:.4f} | {row['uplift_at_10']:.4f} | "
                  f"{row.get('returns_per_1000_expected', float('nan')):.1f} | {row['returns_per_1000_observed']:.1f} |")
    m = t["metrics"]
    print(f"\nqini_ratio_to_true = {m.get('qini_ratio_to_true')}; returns_ratio_to_true = "
          f"{m.get('returns_ratio_to_true')}; spearman_to_true = {m.get('spearman_to_true')}")
    print(f"feature ceiling (regressor of the true uplift): returns ratio to true = "
          f"{m.get('ceiling_returns_ratio_to_true')}; model / ceiling = {m.get('returns_ratio_to_ceiling')}")
    if "promote" in results:
        print(f"promote: {results['promote']}")
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
