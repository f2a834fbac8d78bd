"""Benchmark: churn within 30/90/270 days against what really happened, on a long simulation (issue 14).

The simulation runs ``--days`` days. The multi-horizon model is trained on the
data as it stood at day ``--train-until`` (snapshots whose labels had closed,
churn times confirmed by then), when the history is too short to label the
longer horizons, and scored at that day. The rest of the simulation says what
really happened: for each horizon the run reports the out-of-sample ROC-AUC,
the expected calibration error, the mean prediction against the observed rate,
and whether the training data could label that horizon (``labelled``) or the
model extrapolated it (the constant-hazard tail), for the model's own
probabilities and with the per-horizon calibration maps applied. A population baseline beside
it: the same weekly hazards without features (a life table of the training
person-weeks, its last hazard held constant), one probability for everybody.

Usage::

    python benchmarks/horizons_sim.py                       # 10,000 users, 420 days, trained at day 126

Figures go to stdout and to ``benchmarks/_data/horizons_sim.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=420)
    ap.add_argument("--train-until", type=int, default=126, help="day the training data ends")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--horizons", type=int, nargs="+", default=[30, 90, 270])
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    import numpy as np
    import pandas as pd

    from churnml.config import TrainConfig, load_dataset_config, utc
    from churnml.data import open_dataset
    from churnml.evaluation import churn_metrics
    from churnml.features.churn_time import CHURN_TS, churn_times_frame, confirmation_lag, confirmed_until
    from churnml.jobs import build_features_job, simulate_job
    from churnml.models.churn import feature_specs
    from churnml.models.horizons import fit_hazard_model, person_periods, within_horizons
    from churnml.simulator import SimulationConfig

    folder = DATA / f"horizons_sim_{a.users}_{a.days}_{a.seed}"
    t0 = time.perf_counter()
    if not (folder / "dataset.yaml").exists():
        simulate_job(SimulationConfig(n_users=a.users, days=a.days, seed=a.seed), folder, truth=False)
        log(f"simulated in {time.perf_counter() - t0:.0f}s")
    ds = open_dataset(load_dataset_config(folder / "dataset.yaml"))
    start = utc(ds.config.snapshot_instants()[0]) - dt.timedelta(days=35)
    until = start + dt.timedelta(days=a.train_until)
    horizon = ds.config.horizon_days
    snaps = [start + dt.timedelta(days=d) for d in range(35, a.train_until - horizon + 1, 7)] + [until]
    path = folder / f"set_{a.train_until}.parquet"
    if not path.exists():
        build_features_job(folder / "dataset.yaml", path, as_of=snaps, labels=True, dataset=ds)
    df = pd.read_parquet(path)
    df["as_of"] = pd.to_datetime(df["as_of"], utc=True).astype("datetime64[us, UTC]")
    doc = json.loads(path.with_suffix("").with_suffix(".schema.json").read_text())
    train = df[df["as_of"] < pd.Timestamp(until)].reset_index(drop=True)
    test = df[df["as_of"] == pd.Timestamp(until)].reset_index(drop=True)

    def times(frame, until_):
        t = churn_times_frame(ds, sorted(frame["as_of"].unique()), until=until_).astype(
            {"as_of": "datetime64[us, UTC]"})
        return frame[["as_of", "user_id"]].merge(t, on=["as_of", "user_id"], how="left")[CHURN_TS]

    seen = times(train, until)  # what the data showed at training time
    cu = confirmed_until(ds, until)
    params = TrainConfig(dataset=folder / "dataset.yaml").lightgbm
    t1 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        specs = feature_specs(train, doc["feature_columns"])
        model = fit_hazard_model(train, seen, specs=specs, horizons=a.horizons, confirmed_until=cu,
                                 lag=confirmation_lag(ds.config), params=params.params,
                                 num_boost_round=params.num_boost_round,
                                 early_stopping_rounds=params.early_stopping_rounds, threads=a.threads)
        pred = model.predict_frame(test)
        raw_pred = model.predict_frame(test, calibrated=False)
    fit_s = time.perf_counter() - t1
    log(f"fit in {fit_s:.0f}s: {json.dumps({k: v for k, v in model.info.items() if k != 'out_of_sample'})}")

    # The population baseline: weekly hazards of the training person-weeks, without features.
    _, period, event = person_periods(train["as_of"], seen, confirmed_until=cu)
    rates = pd.Series(event).groupby(period).mean().sort_index().to_numpy()
    pop = within_horizons(rates[None, :], a.horizons)[0]

    real = times(test, None)  # what really happened (the whole simulation)
    cu_full = confirmed_until(ds)
    out = {"machine": machine(), "args": vars(a), "train_rows": len(train), "test_rows": len(test),
           "model_info": model.info, "seconds_fit": round(fit_s, 1), "horizons": {}}
    monotone = bool((np.diff(pred.to_numpy(), axis=1) >= 0).all())
    for h in a.horizons:
        col = f"p_churn_{h}d"
        if pd.Timestamp(until) + pd.Timedelta(days=h) > pd.Timestamp(cu_full):
            out["horizons"][str(h)] = {"evaluable": False}
            continue
        y = (real < test["as_of"] + pd.Timedelta(days=h)).fillna(False).to_numpy().astype(int)
        p, q = pred[col].to_numpy(), raw_pred[col].to_numpy()
        m, r = churn_metrics(y, p), churn_metrics(y, q)
        out["horizons"][str(h)] = {
            "evaluable": True, "labelled_at_training": h in model.info["labelled_horizons"],
            "observed_rate": float(y.mean()), "population_baseline": float(pop[a.horizons.index(h)]),
            "own_probabilities": {"mean_predicted": float(q.mean()),
                                  **{k: round(r[k], 4) for k in ("roc_auc", "pr_auc", "brier", "log_loss", "ece")}},
            "with_calibration_map": {"mean_predicted": float(p.mean()),
                                     **{k: round(m[k], 4) for k in ("roc_auc", "pr_auc", "brier", "log_loss",
                                                                    "ece")}}}
        log(f"{h}d: {out['horizons'][str(h)]}")
    out["monotone"] = monotone
    (DATA / "horizons_sim.json").write_text(json.dumps(out, indent=2, default=str))
    log(f"monotone for every user: {monotone}; -> {DATA / 'horizons_sim.json'}")


if __name__ == "__main__":
    main()
