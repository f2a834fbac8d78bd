"""Benchmark: the refit churn model against the split-trained one, on a later snapshot neither saw (issue 14).

For each simulation seed and each held-out snapshot ``H`` (by default the
latest two labelled snapshots whose label windows do not overlap), both
models are trained on exactly the data a run at ``H`` would have had: the
snapshots whose label windows close by ``H`` (features at a snapshot see only
events before it, so nothing after ``H`` reaches them). Then both score ``H``
beside the simulator's oracle:

``split-trained``
    What ``train_churn_job`` registered before issue 14: the latest of those
    snapshots tests, the one before it validates (early stopping,
    calibration chosen by cross-validation there), the earlier ones train, and
    the model fit on the training part is the one that would score tonight.
``refit``
    ``train_churn_job`` now: the rolling backtest chooses the calibration and
    the registered model is the recipe refit on every one of those snapshots.

Both use the same LightGBM parameters (``training/churn.yaml``'s, no tuning)
so the comparison is about what each is fit on. ``--sweep`` instead fits the
refit with several tree-count exponents (``RefitConfig.tree_exponent``) on
its own seeds, to choose the default on simulations the comparison does not
use.

Usage::

    python benchmarks/refit_sim.py                          # seeds 1 2 3, 20,000 users, 120 days
    python benchmarks/refit_sim.py --sweep --seeds 100 101  # choose tree_exponent on other seeds

Figures go to stdout and to ``benchmarks/_data/refit_sim[_sweep].json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "_data"
sys.path.insert(0, str(HERE))

from churn_scale import machine  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def simulation(seed: int, users: int, days: int) -> Path:
    """Simulate (with truth) and build the labelled training set once per seed; returns the folder."""
    from churnml.jobs import build_features_job, simulate_job
    from churnml.simulator import SimulationConfig

    folder = DATA / f"refit_sim_{users}_{days}_{seed}"
    if not (folder / "training_set.parquet").exists():
        t0 = time.perf_counter()
        _, cfg = simulate_job(SimulationConfig(n_users=users, days=days, seed=seed), folder / "data")
        build_features_job(cfg, folder / "training_set.parquet")
        log(f"seed {seed}: simulated and built in {time.perf_counter() - t0:.0f}s")
    return folder


def history_at(folder: Path, holdout, horizon: int) -> Path:
    """The training set a run at ``holdout`` would have had (label windows closed by it), with its schema."""
    import pandas as pd

    from churnml.models.backtest import closed_before

    out = folder / f"history_{holdout.date()}.parquet"
    if not out.exists():
        df = pd.read_parquet(folder / "training_set.parquet")
        snaps = [x.to_pydatetime() for x in sorted(pd.to_datetime(df["as_of"], utc=True).unique())]
        keep = closed_before(snaps, horizon, holdout)
        df[pd.to_datetime(df["as_of"], utc=True).isin(keep)].to_parquet(out, index=False)
        doc = json.loads((folder / "training_set.schema.json").read_text())
        out.with_suffix("").with_suffix(".schema.json").write_text(json.dumps(doc | {"snapshots": [
            s.isoformat() for s in keep]}))
    return out


def _evaluate(y, scores: dict) -> dict:
    from churnml.evaluation import churn_metrics

    return {k: {m: round(v, 5) for m, v in churn_metrics(y, s).items()
                if m in ("roc_auc", "pr_auc", "brier", "log_loss", "ece")} for k, s in scores.items()}


def compare(folder: Path, holdout, horizon: int, threads: int) -> dict:
    """Split-trained and refit models trained on the history at ``holdout``, both scored on it."""
    import pandas as pd

    from churnml.config import Settings, TrainConfig, TuningConfig
    from churnml.features import LABEL
    from churnml.models.baselines import oracle_scores, read_truth
    from churnml.models.churn import fit_churn_model
    from churnml.models.split import time_split
    from churnml.train import train_churn_job

    hist = history_at(folder, holdout, horizon)
    df = pd.read_parquet(hist)
    df["as_of"] = pd.to_datetime(df["as_of"], utc=True)
    full = pd.read_parquet(folder / "training_set.parquet")
    test = full[pd.to_datetime(full["as_of"], utc=True) == pd.Timestamp(holdout)]
    cfg = TrainConfig(dataset=folder / "data" / "dataset.yaml", training_set=hist, tuning=TuningConfig(trials=0))
    features = [c for c in json.loads(hist.with_suffix("").with_suffix(".schema.json").read_text())["feature_columns"]]
    snaps = [x.to_pydatetime() for x in sorted(df["as_of"].unique())]

    t0 = time.perf_counter()
    split = time_split(snaps, horizon)
    role = df["as_of"].map({pd.Timestamp(s): split.role(s) for s in snaps})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old, old_info = fit_churn_model(
            df[role == "train"], df[role == "valid"], features=features, params=cfg.lightgbm.params,
            calibration="auto", num_boost_round=cfg.lightgbm.num_boost_round,
            early_stopping_rounds=cfg.lightgbm.early_stopping_rounds, seed=cfg.seed, threads=threads)
    old_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    s = Settings(mlruns_dir=str(folder / "mlruns"), threads=threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = train_churn_job(cfg, settings=s, register=False)
    new_s = time.perf_counter() - t0
    truth = oracle_scores(test, read_truth(folder / "data" / "truth" / "churn.parquet"))
    y = test[LABEL].to_numpy()
    scores = {"split-trained": old.predict_proba(test), "refit": res.model.predict_proba(test),
              "oracle": truth["oracle"].to_numpy()}
    return {
        "holdout": holdout.isoformat(), "rows_holdout": len(test),
        "split_trained": {"train_snapshots": [x.date().isoformat() for x in split.train],
                          "valid": [x.date().isoformat() for x in split.valid],
                          "rows": int((role == "train").sum()), "trees": old_info["best_iteration"],
                          "calibration": old_info["calibration"], "seconds": round(old_s, 1)},
        "refit": {"snapshots": [x.date().isoformat() for x in snaps], "rows": res.info["rows_refit"],
                  "trees": res.info["trees"], "trees_early_stopping": res.info["trees_early_stopping"],
                  "calibration": res.recipe.calibration, "seconds_job": round(new_s, 1)},
        "on_holdout": _evaluate(y, scores),
        "backtest": {"cutoffs": [c.date().isoformat() for c in res.cutoffs],
                     "mean": json.loads(res.metrics[["roc_auc", "pr_auc", "brier", "log_loss", "ece"]]
                                        .to_json(orient="index")),
                     "sd": json.loads(res.metrics_sd[["roc_auc", "pr_auc", "brier", "log_loss", "ece"]]
                                      .to_json(orient="index")),
                     "candidates": {k: round(v, 5) for k, v in res.backtest.candidate_means().items()},
                     "chosen": res.backtest.chosen},
    }


def sweep(folder: Path, holdout, horizon: int, threads: int, exponents) -> dict:
    """The refit at ``holdout`` with each tree-count exponent (same recipe otherwise), scored on it."""
    import pandas as pd

    from churnml.config import TrainConfig
    from churnml.features import LABEL
    from churnml.models.refit import Recipe, fit_recipe

    hist = history_at(folder, holdout, horizon)
    df = pd.read_parquet(hist)
    full = pd.read_parquet(folder / "training_set.parquet")
    test = full[pd.to_datetime(full["as_of"], utc=True) == pd.Timestamp(holdout)]
    cfg = TrainConfig(dataset=folder / "data" / "dataset.yaml")
    features = json.loads(hist.with_suffix("").with_suffix(".schema.json").read_text())["feature_columns"]
    out = {}
    for b in exponents:
        recipe = Recipe(features=tuple(features), params=cfg.lightgbm.params, calibration="none",
                        num_boost_round=cfg.lightgbm.num_boost_round,
                        early_stopping_rounds=cfg.lightgbm.early_stopping_rounds, tree_exponent=b, seed=cfg.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fit_recipe(df, recipe, horizon, threads=threads)
        y = test[LABEL].to_numpy()
        out[str(b)] = {"trees": fit.info["trees"], "trees_early_stopping": fit.info["trees_early_stopping"],
                       "rows_ratio": round(fit.info["rows_refit"] / fit.info["rows_early_stopping"], 3),
                       **{f"{k}": v for k, v in _evaluate(y, {"refit": fit.model.predict_proba(test)})["refit"].items()}}
        log(f"  exponent {b}: {out[str(b)]}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--holdouts", type=int, default=2, help="held-out snapshots per seed (latest first)")
    ap.add_argument("--threads", type=int, default=1, help="LightGBM threads (1 is steadier on a shared host)")
    ap.add_argument("--sweep", action="store_true", help="sweep the refit's tree-count exponent instead")
    ap.add_argument("--exponents", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    a = ap.parse_args()

    import pandas as pd

    from churnml.models.backtest import backtest_cutoffs

    DATA.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine(), "args": vars(a), "runs": []}
    for seed in a.seeds:
        folder = simulation(seed, a.users, a.days)
        doc = json.loads((folder / "training_set.schema.json").read_text())
        h = doc["horizon_days"]
        snaps = [pd.Timestamp(s).to_pydatetime() for s in doc["snapshots"]]
        # Later held-out snapshots whose label windows do not overlap; each needs a history a backtest can use.
        holdouts = backtest_cutoffs(snaps, h, folds=a.holdouts + 3)[-a.holdouts:]
        for holdout in holdouts:
            log(f"seed {seed}, held-out snapshot {holdout.date()}")
            run = {"seed": seed, "holdout": holdout.isoformat()}
            if a.sweep:
                run["sweep"] = sweep(folder, holdout, h, a.threads, a.exponents)
            else:
                run |= compare(folder, holdout, h, a.threads)
                log(json.dumps(run["on_holdout"]))
            results["runs"].append(run)
    name = "refit_sim_sweep.json" if a.sweep else "refit_sim.json"
    (DATA / name).write_text(json.dumps(results, indent=2))
    log(f"-> {DATA / name}")


if __name__ == "__main__":
    main()
