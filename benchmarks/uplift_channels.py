"""Benchmark: recall by the right channel on the simulator (issue #17).

Simulates the default multi-channel app (200k users; campaigns randomised over
control, SMS, e-mail and push; exact per-arm truth), trains a quick churn
champion (for the churn-risk baselines) and runs ``train_uplift_job``, which
learns one uplift per channel (learner chosen by cross-validated multi-arm Qini
on the training campaigns) and values assignments on the latest campaign:

* the learned assignment (each user's channel by predicted net value),
* one channel for everyone (each channel, targeted by its predicted uplift),
* random channels, churn-risk ranking on each channel,
* a model taught the true per-channel uplifts from the same features (the
  ceiling) and the true optimal assignment,

all with the same costs and budget (``--contact-share`` of the test exposures,
``--cost-per-user`` money per exposure), by the simulator's exact truth and by
the off-policy estimates (IPW, doubly robust) with intervals. Each phase runs in
a child process (wall time and peak RSS).

Usage::

    python benchmarks/uplift_channels.py                    # 200k users
    python benchmarks/uplift_channels.py --users 50000 --data benchmarks/_data/channels50k

Figures go to stdout and to ``benchmarks/_data/uplift_channels.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from churn_scale import DATA, log, machine, results_name, run_child, write_results  # noqa: E402

SNAPSHOTS = ["2024-03-11", "2024-03-18", "2024-03-25", "2024-04-01", "2024-04-08", "2024-04-15"]


def _settings(a):
    from churnml.config import Settings

    return Settings(mlruns_dir=str(a.mlruns), threads=a.threads)


def _simulate(a) -> dict:
    from churnml.jobs import simulate_job
    from churnml.simulator import SimulationConfig

    res, path = simulate_job(SimulationConfig(n_users=a.users, seed=a.seed), a.data, truth=True)
    return {"users": res.n_users, "events": res.n_events, "exposures": res.n_exposures, "config": str(path)}


def _churn(a) -> dict:
    """A churn champion from six weekly snapshots, no tuning: the churn-risk baselines need one."""
    from churnml.config import TrainConfig, TuningConfig
    from churnml.jobs import build_features_job
    from churnml.train import promote_job, train_churn_job

    ts = build_features_job(a.data / "dataset.yaml", a.data / "training_set_churn.parquet", as_of=SNAPSHOTS,
                            labels=True).table_path
    cfg = TrainConfig(dataset=a.data / "dataset.yaml", training_set=ts, tuning=TuningConfig(trials=0))
    res = train_churn_job(cfg, settings=_settings(a), log=log)
    promote_job(cfg, settings=_settings(a))
    return {"version": res.version, "rows": res.rows}


def _policy(a):
    from churnml.config import PolicyConfig, load_score_config

    score = load_score_config(a.data / "scoring.yaml")
    return PolicyConfig(value_per_user=score.value_per_user, channels=score.channels,
                        contact_share=a.contact_share, cost_per_user=a.cost_per_user)


def _train(a) -> dict:
    from churnml.config import TrainConfig
    from churnml.train_uplift import train_uplift_job

    cfg = TrainConfig(kind="uplift", dataset=a.data / "dataset.yaml", truth=a.data / "truth" / "exposures.parquet",
                      policy=_policy(a))
    t0 = time.perf_counter()
    res = train_uplift_job(cfg, settings=_settings(a), log=log)
    flat = {k: (v.item() if hasattr(v, "item") else v) for k, v in res.metrics.items()}
    return {"job_s": round(time.perf_counter() - t0, 1), "selected": res.selected, "channels": res.channels,
            "selection": json.loads(res.selection.to_json(orient="index")),
            "per_channel": json.loads(res.targeting.to_json(orient="index")),
            "policies": json.loads(res.policies.to_json(orient="index")), "metrics": flat, "rows": res.rows,
            "policy": cfg.policy.model_dump(mode="json"), "test_campaigns": res.test_campaigns}


PHASES = {"simulate": _simulate, "churn": _churn, "train": _train}


def _has_churn_champion(a) -> bool:
    from churnml import tracking

    if not (a.mlruns / "mlflow.db").is_file():
        return False
    try:
        tracking.load_model("churn-risk", "champion", _settings(a))
    except LookupError:
        return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA / "channels200k")
    ap.add_argument("--mlruns", type=Path, default=None, help="MLflow store (default <data>/mlruns)")
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--contact-share", type=float, default=0.3, help="budget: share of test exposures messaged")
    ap.add_argument("--cost-per-user", type=float, default=None, help="budget: money per test exposure")
    ap.add_argument("--phases", nargs="+", choices=list(PHASES), default=list(PHASES))
    ap.add_argument("--threads", type=int, default=None,
                    help="LightGBM threads (default 2); 1 on a machine others load: spinning threads crawl there")
    ap.add_argument("--child", choices=PHASES, help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.data = a.data.resolve()
    a.mlruns = (a.mlruns or a.data / "mlruns").resolve()
    if a.child:
        print(json.dumps(PHASES[a.child](a), default=str))
        return
    argv = ["--data", str(a.data), "--mlruns", str(a.mlruns), "--users", str(a.users), "--seed", str(a.seed),
            "--contact-share", str(a.contact_share), *(["--threads", str(a.threads)] if a.threads else []),
            *(["--cost-per-user", str(a.cost_per_user)] if a.cost_per_user is not None else [])]
    results = {"machine_start": machine(), "args": {k: str(v) for k, v in vars(a).items() if k != "child"}}
    for phase in a.phases:
        if phase == "simulate" and (a.data / "dataset.yaml").is_file():
            log("simulation exists: reused")
            continue
        if phase == "churn" and _has_churn_champion(a):
            log("a churn champion is registered in the store: reused (it only feeds the churn-risk baselines)")
            continue
        log(f"{phase} ...")
        results[phase] = run_child(__file__, phase, argv)
        r = results[phase]
        log(f"{phase}: {r['wall_s']:.1f}s, peak RSS {r['peak_rss_gb']:.2f} GB")
    results["machine_end"] = machine()
    path = write_results(results_name("uplift_channels", a.data, DATA / "channels200k"), results)
    if "train" not in results:
        return
    t = results["train"]
    print(f"\nmachine: {results['machine_start']['nproc']} cores; load {results['machine_start']['loadavg']} -> "
          f"{results['machine_end']['loadavg']}")
    print(f"train_uplift_job: {t['wall_s']:.1f}s in a child, peak RSS {t['peak_rss_gb']:.2f} GB; exposures {t['rows']}")
    print(f"channels {t['channels']}; selected {t['selected']}; policy {t['policy']}\n")
    print("| learner | CV multi-arm Qini | std | gain over default ± SE |\n|---|---|---|---|")
    for name, r in t["selection"].items():
        print(f"| {name}{' (chosen)' if r['chosen'] else ''} | {r['mean']:.4f} | {r['std']:.4f} | "
              f"{r['gain_over_default']:+.4f} ± {r['gain_se']:.4f} |")
    print("\n| channel | Qini [95% CI] | Qini of true uplift | Spearman to true | observed uplift | calibration error |")
    print("|---|---|---|---|---|---|")
    for c, r in t["per_channel"].items():
        print(f"| {c} | {r['qini_auc']:.3f} [{r['qini_auc_low']:.3f}, {r['qini_auc_high']:.3f}] | "
              f"{r.get('qini_auc_true_uplift', float('nan')):.3f} | {r.get('spearman_to_true', float('nan')):.2f} | "
              f"{100 * r['observed_uplift']:+.1f} pts | {100 * r['calibration_error']:.1f} pts |")
    print("\n| policy (same budget) | contacted | cost | net value / 1,000, truth | IPW [95% CI] | DR [95% CI] |")
    print("|---|---|---|---|---|---|")
    for name, r in t["policies"].items():
        print(f"| {name} | {r['contacted']:,} | {r['cost']:.1f} | {1000 * r['value_true']:.1f} | "
              f"{1000 * r['value_ipw']:.1f} [{1000 * r['value_ipw_low']:.1f}, {1000 * r['value_ipw_high']:.1f}] | "
              f"{1000 * r['value_dr']:.1f} [{1000 * r['value_dr_low']:.1f}, {1000 * r['value_dr_high']:.1f}] |")
    m = t["metrics"]
    print(f"\nlearned / ceiling = {m.get('ratio_to_ceiling')} (target >= 0.9); learned / best single channel "
          f"({m.get('best_single_channel')}) = {m.get('ratio_to_best_single_channel')} (target >= 1.2); "
          f"learned / true optimum = {m.get('ratio_to_optimal')}")
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
