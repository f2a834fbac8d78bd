"""Diagnosis: how far each multi-arm learner is from the ceiling, on the training campaigns alone.

The channel benchmark (``uplift_channels.py``) reports on the latest campaign;
this script never reads it. It takes the earlier (training) campaigns of a
simulation written by that benchmark, fits on a fixed random 60 % of their
exposures and values each learner's assignment on the other 40 % by the
simulator's exact per-arm truth (same costs and 30 % contact budget), beside
the ceiling (LightGBM taught the true uplifts from the same features) and the
true optimum. Each learner is shown raw and with per-channel calibration
(:func:`churnml.models.uplift.arm_calibration` on 5-fold out-of-fold
predictions inside the 60 %). Per channel: Spearman correlation with the true
uplift and the slope of the true uplift on the predicted one (1 = calibrated,
below 1 = the prediction over-states how users differ).

Usage::

    python benchmarks/uplift_channels_split.py --data benchmarks/_data/channels50k
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    from churnml import metrics
    from churnml.assignment import NONE, assign_channels
    from churnml.config import load_dataset_config, load_score_config
    from churnml.data import open_dataset
    from churnml.features import RESPONSE
    from churnml.models.churn import feature_specs, to_matrix
    from churnml.models.uplift import arm_calibration, default_multiarm_candidates
    from churnml.train_channels import _ceiling, arm_truth, channels_of
    from churnml.train_uplift import uplift_frames

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a folder written by uplift_channels.py")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--share", type=float, default=0.3, help="contact budget: share of the valued rows")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    df, info = uplift_frames(open_dataset(load_dataset_config(a.data / "dataset.yaml")))
    sends = df.groupby("campaign_id")["as_of"].min().sort_values()
    train = df[df["campaign_id"].isin(sends.index[:-1])].reset_index(drop=True)  # never the latest campaign
    chans = channels_of(df)
    truth = arm_truth(train, a.data / "truth" / "exposures.parquet", chans)
    costs = load_score_config(a.data / "scoring.yaml")
    cost = np.array([costs.channels[c].cost if c in costs.channels else 0.0 for c in chans])
    value = costs.value_per_user
    ev = np.random.default_rng(1).random(len(train)) < 0.4
    X = to_matrix(train, feature_specs(train, info["feature_columns"]), where="training exposures")
    X = X.reset_index(drop=True)
    y, arm = train[RESPONSE].to_numpy(), train["channel"].astype(str).to_numpy()
    Xf, yf, af = X[~ev].reset_index(drop=True), y[~ev], arm[~ev]
    Xe, te = X[ev].reset_index(drop=True), truth[ev]
    true_up = te[:, 1:] - te[:, [0]]
    print(f"training campaigns {list(sends.index[:-1])}: fit {len(Xf):,} rows, valued {len(Xe):,}; "
          f"channels {chans}, costs {cost.tolist()}\n")
    print("| assignment | net value / 1,000, truth | Spearman to true | slope true~predicted | s |")
    print("|---|---|---|---|---|")

    def show(name: str, up: np.ndarray, sec: float) -> None:
        choice = assign_channels(value * up - cost, cost, uplift=up, max_contacts=round(a.share * len(up)))
        labels = np.asarray([*chans, "control"], dtype=object)[np.where(choice == NONE, len(chans), choice)]
        v = metrics.expected_policy_value(te, labels, channels=chans, costs=dict(zip(chans, cost, strict=True)),
                                          value_per_user=value)
        sp = [pd.Series(up[:, j]).corr(pd.Series(true_up[:, j]), method="spearman") for j in range(len(chans))]
        sl = [np.polyfit(up[:, j], true_up[:, j], 1)[0] if np.ptp(up[:, j]) > 0 else float("nan")
              for j in range(len(chans))]
        print(f"| {name} | {1000 * v:.1f} | {', '.join(f'{x:.2f}' for x in sp)} | "
              f"{', '.join(f'{x:.2f}' for x in sl)} | {sec:.0f} |", flush=True)

    show("true optimum", true_up, 0.0)
    t0 = time.perf_counter()
    show("ceiling (true uplifts learned from features)",
         _ceiling(Xf, truth[~ev], Xe, seed=0, threads=a.threads), time.perf_counter() - t0)
    codes = pd.Categorical(af, categories=["control", *chans]).codes
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(len(yf)), 2 * codes + yf))
    for name, learner in default_multiarm_candidates(seed=0, n_jobs=a.threads).items():
        t0 = time.perf_counter()
        learner.set_params(max_propensity_auc=None)
        model = clone(learner).fit(Xf, yf, af)
        show(name, model.predict(Xe), time.perf_counter() - t0)
        p0, p = np.empty(len(yf)), np.empty((len(yf), len(chans)))
        for fit, held in folds:
            p0[held], p[held] = clone(learner).fit(Xf.iloc[fit], yf[fit], af[fit]).predict_outcomes(Xf.iloc[held])
        model.calibration_ = arm_calibration(yf, af, p0, p, chans)
        show(f"{name}, calibrated (slopes {', '.join(f'{b:.2f}' for b in model.calibration_[:, 2])})",
             model.predict(Xe), time.perf_counter() - t0)


if __name__ == "__main__":
    main()
