"""The feature pipeline on simulated data agrees with the simulator's ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnml.config import load_dataset_config
from churnml.data import open_dataset
from churnml.features import build_training_set
from churnml.jobs import simulate_job
from churnml.simulator import SimulationConfig


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sim")
    result, cfg_path = simulate_job(SimulationConfig(n_users=6000, days=90, seed=11), folder)
    cfg = load_dataset_config(cfg_path)
    ds = open_dataset(cfg)
    table, _ = build_training_set(ds, cfg.snapshot_instants())
    return result, table.to_pandas()


def test_eligibility_and_labels_match_truth(sim):
    result, train = sim
    truth = pd.read_parquet(result.truth_dir / "churn.parquet")
    keys = ["as_of", "user_id"]
    merged = train.merge(truth, on=keys, how="outer", indicator=True)
    # the same users are eligible at every snapshot, by the pipeline's and the simulator's definition
    assert (merged["_merge"] == "both").all(), merged["_merge"].value_counts()
    # the realised labels are draws from the true probabilities: calibrated overall and per decile
    p, y = merged["p_churn"].to_numpy(), merged["churned"].to_numpy()
    se = np.sqrt((p * (1 - p)).sum()) / len(p)
    assert abs(y.mean() - p.mean()) < 4 * se
    bins = pd.qcut(p, 10, labels=False, duplicates="drop")
    for b in np.unique(bins):
        m = bins == b
        se_b = np.sqrt((p[m] * (1 - p[m])).sum()) / m.sum()
        assert abs(y[m].mean() - p[m].mean()) < 4.5 * se_b + 1e-9, f"decile {b}"


def test_planted_drivers_visible_in_features(sim):
    _, train = sim
    # users at least two weeks old, so the first week is complete
    old = train[train.tenure_days >= 14]
    likes = old.onboard_n_like_7d > 3
    joined = old.communities_joined > 0
    rate = lambda m: old.loc[m, "churned"].mean()  # noqa: E731
    assert rate(likes) < rate(~likes) - 0.05
    assert rate(joined) < rate(~joined) - 0.05
    assert rate(likes & joined) < min(rate(likes & ~joined), rate(~likes & joined))


def test_recency_orders_risk(sim):
    _, train = sim
    recent = train.days_since_last_activity < 2
    stale = train.days_since_last_activity > 10
    assert train.loc[recent, "churned"].mean() + 0.2 < train.loc[stale, "churned"].mean()
