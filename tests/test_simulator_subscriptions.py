"""The simulator's subscription layer: off changes nothing, on gives data churnml reads and exact truth."""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from churnml.config import load_dataset_config, utc
from churnml.data import open_dataset
from churnml.features import LABEL, churn_definition, churn_labels
from churnml.jobs import simulate_job
from churnml.simulator import SimulationConfig, SubscriptionConfig, simulate

BASE = dict(n_users=1500, days=90, seed=3)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_off_by_default_and_on_changes_only_what_it_owns(tmp_path):
    assert SimulationConfig().subscriptions is None
    # Without campaigns the layer can change nothing of the base world: same files, byte for byte.
    off = simulate(SimulationConfig(**BASE, campaign_days=[]), tmp_path / "off")
    on = simulate(SimulationConfig(**BASE, campaign_days=[], subscriptions=SubscriptionConfig()), tmp_path / "on")
    assert off.subscriptions_path is None and not (tmp_path / "off" / "subscriptions.parquet").exists()
    assert on.n_subscriptions > 0
    for name in ("events.parquet", "users.parquet", "campaigns.parquet", "truth/users.parquet"):
        assert _sha(tmp_path / "off" / name) == _sha(tmp_path / "on" / name), name
    # With campaigns, subscribers get none, so the worlds part at the first campaign and not before.
    off = simulate(SimulationConfig(**BASE), tmp_path / "off2")
    on = simulate(SimulationConfig(**BASE, subscriptions=SubscriptionConfig()), tmp_path / "on2")
    first = utc(SimulationConfig().start) + dt.timedelta(days=min(SimulationConfig(**BASE).campaign_days))

    def before(folder):
        ev = pq.read_table(folder / "events.parquet").to_pandas()
        return ev[ev.ts < first].sort_values(["user_id", "ts", "event"]).reset_index(drop=True)

    pd.testing.assert_frame_equal(before(tmp_path / "off2"), before(tmp_path / "on2"))
    subscribers = set(pq.read_table(tmp_path / "on2" / "subscriptions.parquet").column("user_id").to_pylist())
    camp = pq.read_table(tmp_path / "on2" / "campaigns.parquet").to_pandas()
    subs = pq.read_table(tmp_path / "on2" / "subscriptions.parquet").to_pandas()
    first_start = subs.groupby("user_id").start.min()
    late = camp.merge(first_start.rename("first_start"), left_on="user_id", right_index=True)
    assert (late.sent_ts < late.first_start).all(), "a subscriber was sent a recall campaign"
    assert subscribers  # the check above had subscribers to look at


@pytest.fixture(scope="module")
def sub_sim(tmp_path_factory):
    """A simulated app with the layer on (4,000 users, 150 days) and its dataset config."""
    folder = tmp_path_factory.mktemp("sub_sim")
    sim = SimulationConfig(n_users=4000, days=150, seed=11, subscriptions=SubscriptionConfig())
    result, cfg = simulate_job(sim, folder / "data")
    ds = open_dataset(load_dataset_config(cfg))
    truth = pq.read_table(result.truth_dir / "subscription_churn.parquet").to_pandas()
    d = churn_definition(ds.config)
    rows = []
    for as_of in ds.config.snapshot_instants():
        pop = d.population(ds, as_of).users
        rows.append(churn_labels(ds, as_of, pop).mutate(as_of=as_of).to_pandas())
    labels = pd.concat(rows, ignore_index=True)
    labels["as_of"] = pd.to_datetime(labels["as_of"], utc=True)
    return {"ds": ds, "truth": truth, "labels": labels, "result": result}


def test_written_config_uses_the_subscription_definition(sub_sim):
    cfg = sub_sim["ds"].config
    assert cfg.churn.definition == "subscription" and cfg.sources.subscriptions is not None
    # Label windows (horizon + grace) fit in the period.
    assert max(cfg.snapshot_instants()) + dt.timedelta(days=cfg.horizon_days + cfg.churn.grace_days) \
        <= sub_sim["ds"].observed_until


def test_truth_covers_exactly_churnml_population(sub_sim):
    truth, labels = sub_sim["truth"], sub_sim["labels"]
    assert len(truth) > 1000
    key = lambda df: set(zip(df["as_of"], df["user_id"], strict=True))  # noqa: E731
    assert key(truth) == key(labels)


def _z(y: np.ndarray, p: np.ndarray) -> float:
    return float((y.sum() - p.sum()) / np.sqrt((p * (1 - p)).sum()))


@pytest.mark.parametrize("column", ["p_churn", "p_churn_observed"])
def test_truth_is_calibrated_against_churnml_labels(sub_sim, column):
    both = sub_sim["labels"].merge(sub_sim["truth"], on=["as_of", "user_id"])
    y, p = both[LABEL].to_numpy(), both[column].to_numpy()
    assert y.sum() > 100
    assert abs(_z(y, p)) < 3.5
    for key in ("state", "plan", "renewals_in_horizon"):
        for value, g in both.groupby(key):
            if g[column].sum() > 20:
                assert abs(_z(g[LABEL].to_numpy(), g[column].to_numpy())) < 3.5, (key, value)
    # The check can fail: the same labels against probabilities 30% too high are far off.
    assert abs(_z(y, np.minimum(p * 1.3, 1))) > 3.5


def test_truth_matches_a_closed_form(tmp_path):
    # No behaviour effects on the hazard, no returns, no campaigns: an alive subscriber whose period
    # ends j days after as_of is still alive then with probability a = prod_k (1 - h0 * f(tenure_k))
    # over the j days before (f = the tenure factor), so p_churn = a * c_alive + (1 - a) * c_lapsed,
    # where c_alive = base(plan) * exp(-slope (e - mean)) (times the discount factor at the end of a
    # discounted first period).
    sub = SubscriptionConfig()
    sim = SimulationConfig(n_users=2000, days=100, seed=2, campaign_days=[], return_rate_base=0.0,
                           like_hazard_multiplier=1.0, community_hazard_multiplier=1.0,
                           like_community_synergy=1.0, subscriptions=sub)
    result, cfg = simulate_job(sim, tmp_path)
    truth = pq.read_table(result.truth_dir / "subscription_churn.parquet").to_pandas()
    users = pq.read_table(result.truth_dir / "users.parquet").to_pandas().set_index("user_id")
    signup = pq.read_table(tmp_path / "users.parquet").to_pandas().set_index("user_id").signup_ts.dt.normalize()
    rows = pq.read_table(result.subscriptions_path).to_pandas()
    horizon = load_dataset_config(cfg).horizon_days
    checked = 0
    for t in truth.itertuples():
        cur = rows[(rows.user_id == t.user_id) & (rows.start < t.as_of)].iloc[-1]
        first_end = cur.start + pd.Timedelta(days=int(cur.period_days))
        j = (first_end.normalize() - t.as_of).days
        u = users.loc[t.user_id]
        base = sub.cancel_yearly if cur.plan == "yearly" else sub.cancel_monthly
        factor = sub.discount_end_multiplier if cur.discount > 0 else 1.0
        c_alive = min(base * np.exp(-sub.cancel_engagement_slope * (u.engagement - sim.engagement_mean)) * factor, 0.95)
        c_lapsed = min(sub.cancel_lapsed * factor, 0.95)
        if j >= horizon:
            want = 0.0
        elif t.state == "lapsed":
            want = c_lapsed
        else:
            tenure0 = (t.as_of - signup.loc[t.user_id]).days
            f = [1 + (sim.tenure_hazard_peak - 1) * np.exp(-(tenure0 + k) / sim.tenure_hazard_decay_days)
                 for k in range(j)]
            alive = np.prod([1 - min(u.hazard_base * fk, 1.0) for fk in f])
            want = alive * c_alive + (1 - alive) * c_lapsed
        assert t.p_churn == pytest.approx(want, abs=1e-12), (t, j)
        checked += 1
    assert checked > 200 and (truth.p_churn > 0).sum() > 50


def test_cli_simulate_with_subscriptions(tmp_path):
    from typer.testing import CliRunner

    from churnml.cli import app

    res = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path), "--users", "800", "--days", "90",
                                   "--subscriptions"])
    assert res.exit_code == 0, res.output
    assert "subscription periods" in res.output
    ds = open_dataset(load_dataset_config(tmp_path / "dataset.yaml"))
    assert ds.config.churn.definition == "subscription" and ds.subscriptions is not None
    assert (tmp_path / "truth" / "subscription_churn.parquet").exists()


def test_churn_training_runs_on_the_subscription_definition(sub_sim, tmp_path):
    # The whole training job on subscription labels: the backtest's cut-off sees only label windows
    # (horizon + grace) closed before it, the model uses the subscription features, and it ranks close
    # to the exact oracle. One cut-off: the short simulated history leaves the earlier ones too few rows.
    from churnml.config import BacktestConfig, BoosterConfig, Settings, TrainConfig, TuningConfig
    from churnml.train import train_churn_job

    ds = sub_sim["ds"]
    cfg = TrainConfig(kind="churn", dataset=ds.config.sources.events.path.replace("events.parquet", "dataset.yaml"),
                      truth=sub_sim["result"].truth_dir / "subscription_churn.parquet", tuning=TuningConfig(trials=0),
                      lightgbm=BoosterConfig(num_boost_round=200, early_stopping_rounds=20), min_class_count=20,
                      backtest=BacktestConfig(folds=1))
    res = train_churn_job(cfg, dataset=ds, settings=Settings(mlruns_dir=str(tmp_path / "mlruns"), threads=2),
                          register=False)
    window = ds.config.horizon_days + ds.config.churn.grace_days
    assert res.model.metadata["label_window_days"] == window
    assert res.backtest.horizon_days == window  # folds keep whole label windows (grace included) apart
    assert set(pd.to_datetime(res.backtest.predictions["as_of"], utc=True)) == {pd.Timestamp(res.cutoffs[-1])}
    assert any(f.name == "sub_days_to_renewal" for f in res.model.features)
    auc = res.metrics["roc_auc"]
    assert auc["model"] > auc["recency only"] + 0.1
    assert res.oracle_ratio > 0.9
