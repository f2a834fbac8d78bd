"""Churn within several horizons: churn times by hand, person-periods, survival, and the simulator."""

from __future__ import annotations

import datetime as dt
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnml.config import utc
from churnml.exceptions import DataWarning
from churnml.features.churn_time import CHURN_TS, churn_times_frame, confirmation_lag, confirmed_until
from churnml.models.horizons import _calibrate, fit_hazard_model, person_periods, within_horizons

from conftest import open_tiny

START = utc("2024-01-01")


def at(days: float) -> str:
    return (START + dt.timedelta(days=days)).isoformat()


# --------------------------------------------------------------------------- churn times by hand

def _times(tmp_path, events, as_of_days, until_days=40, horizon=5, **kw):
    users = sorted({e[0] for e in events})
    ds = open_tiny(tmp_path, [{"user_id": u, "ts": at(t), "event": ev} for u, t, ev in events],
                   [{"user_id": u, "signup_ts": at(0)} for u in users],
                   horizon_days=horizon, observed_until=at(until_days), **kw)
    snaps = [START + dt.timedelta(days=d) for d in as_of_days]
    got = churn_times_frame(ds, snaps)
    return ds, {(r.as_of.to_pydatetime(), r.user_id): r.churn_ts.to_pydatetime() for r in got.itertuples()}


def test_churn_time_is_the_start_of_the_first_long_inactivity_spell(tmp_path):
    # Spell length 5 days, as_of day 10, data until day 40 (churn times confirmed until day 35).
    events = [
        ("a", 9, "play"), ("a", 16, "play"),                  # nothing in [10, 15): churned at as_of
        ("b", 9, "play"), ("b", 11, "play"), ("b", 14, "play"), ("b", 22, "play"),  # 14 -> 22 is 8 days
        ("c", 9, "play"), ("c", 12, "play"), ("c", 15, "play"), ("c", 19, "play"),
        ("c", 23, "play"), ("c", 27, "play"), ("c", 31, "play"), ("c", 35.5, "play"),  # never 5 days apart
        ("d", 9, "play"), ("d", 12, "play"), ("d", 31, "play"),  # 12 -> 31: the spell starts at 12
        *[("e", t, "play") for t in (9, 12, 15, 19, 23, 27, 31, 35, 36)],  # a spell from 36 ends after day 40
        ("f", 5, "play"), ("f", 12, "play"),                  # gap 5 -> 12 spans as_of but [10, 15) holds 12
    ]
    _, got = _times(tmp_path, events, [10])
    a10 = START + dt.timedelta(days=10)
    assert got == {(a10, "a"): a10, (a10, "b"): START + dt.timedelta(days=14),
                   (a10, "d"): START + dt.timedelta(days=12), (a10, "f"): START + dt.timedelta(days=12)}
    # e: censored (no spell confirmed before day 35), c: no spell at all.


def test_a_gap_of_exactly_the_spell_length_is_a_spell_and_only_activity_events_count(tmp_path):
    events = [("a", 9, "play"), ("a", 11, "play"), ("a", 16, "play"),        # 11 -> 16: exactly 5 days
              ("b", 9, "play"), ("b", 11, "play"), ("b", 13, "open_ad"), ("b", 20, "play")]
    _, got = _times(tmp_path, events, [10], activity_events=["play"])
    a10 = START + dt.timedelta(days=10)
    assert got == {(a10, "a"): START + dt.timedelta(days=11), (a10, "b"): START + dt.timedelta(days=11)}


def test_churned_label_is_churn_time_at_as_of(small_sim):
    from churnml.config import load_dataset_config
    from churnml.data import open_dataset

    ds = open_dataset(load_dataset_config(small_sim["config"]))
    df = pd.read_parquet(small_sim["training_set"], columns=["as_of", "user_id", "churned"])
    df["as_of"] = pd.to_datetime(df["as_of"], utc=True).astype("datetime64[us, UTC]")
    times = churn_times_frame(ds, sorted(df["as_of"].unique())).astype({"as_of": "datetime64[us, UTC]"})
    both = df.merge(times, on=["as_of", "user_id"], how="left")
    assert len(both) == len(df)
    np.testing.assert_array_equal((both[CHURN_TS] == both["as_of"]).to_numpy(), both["churned"].to_numpy() == 1)


@pytest.mark.filterwarnings("ignore::churnml.exceptions.DataWarning")
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seen=st.lists(st.tuples(st.sampled_from("abc"), st.floats(2, 29.9).map(lambda d: round(d, 3))),
                     min_size=1, max_size=20),
       unseen=st.lists(st.tuples(st.sampled_from("abcd"), st.floats(30, 59.9).map(lambda d: round(d, 3))),
                       min_size=1, max_size=15))
def test_churn_times_as_the_data_stood_ignore_everything_after(seen, unseen):
    # Churn times computed "until day 30" on the full log equal those of the log that ends at day 30.
    until = START + dt.timedelta(days=30)
    snaps = [START + dt.timedelta(days=d) for d in (5, 10, 15)]
    rows = [{"user_id": u, "ts": at(t), "event": "play"} for u, t in seen]
    users = [{"user_id": u, "signup_ts": at(1)} for u in "abcd"]
    with tempfile.TemporaryDirectory() as tmp:
        cut = open_tiny(Path(tmp) / "cut", rows, users, fmt="parquet", horizon_days=4, observed_until=at(30))
        full = open_tiny(Path(tmp) / "full", rows + [{"user_id": u, "ts": at(t), "event": "play"} for u, t in unseen],
                         users, fmt="parquet", horizon_days=4, observed_until=at(60))
        a = churn_times_frame(cut, snaps)
        b = churn_times_frame(full, snaps, until=until)
    key = ["as_of", "user_id"]
    pd.testing.assert_frame_equal(a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True))
    assert confirmed_until(full, until) == until - dt.timedelta(days=4)


# --------------------------------------------------------------------------- person-periods and survival

def test_person_periods_by_hand():
    as_of = pd.Series(pd.to_datetime([at(0), at(0), at(0), at(14)], utc=True))
    churn = pd.Series(pd.to_datetime([at(9), None, at(0), at(30)], utc=True))
    # Confirmed until day 24: three full weeks after day 0, one after day 14.
    row, period, event = person_periods(as_of, churn, confirmed_until=utc(at(24)))
    assert row.tolist() == [0, 0, 1, 1, 1, 2, 3]
    assert period.tolist() == [0, 1, 0, 1, 2, 0, 0]
    assert event.tolist() == [0, 1, 0, 0, 0, 1, 0]  # the churn at day 30 lies in an unconfirmed week


def test_within_horizons_by_hand():
    # Hazards 0.1 then 0.2 per week; beyond week 2 the last hazard holds.
    p = within_horizons(np.array([[0.1, 0.2], [0.0, 0.0]]), [7, 14, 28, 3.5])
    np.testing.assert_allclose(p[0], [0.1, 1 - 0.9 * 0.8, 1 - 0.9 * 0.8 ** 3, 1 - 0.9 ** 0.5])
    np.testing.assert_allclose(p[1], 0.0)


def test_the_tail_follows_the_life_tables_decline_and_never_rises():
    from churnml.models.horizons import HazardModel, tail_slope

    k = np.repeat(np.arange(0, 8), 2000)
    rate = np.where(k == 0, 0.5, 0.3 * (k + 1.0) ** -0.5)  # period 0 (churn under way) is left out
    event = (np.random.default_rng(1).random(len(k)) < rate).astype(int)
    assert tail_slope(k, event) == pytest.approx(-0.5, abs=0.1)
    assert tail_slope(k, (np.random.default_rng(2).random(len(k)) < 0.02 * (k + 1)).astype(int)) == 0.0
    assert tail_slope(np.array([1, 2]), np.array([1, 1])) == 0.0  # too few periods to fit
    # Past the last trained period, each user's hazard continues from its own last value along the slope.
    m = HazardModel(booster=None, features=[], horizons=(7,), max_period=3, tail_slope=-1.0)
    m.booster = type("B", (), {"predict": lambda self, x: np.full(len(x), 0.2), "pandas_categorical": None})()
    h = m.hazards_matrix(pd.DataFrame({"x": [1.0, 2.0]}), 6)
    np.testing.assert_allclose(h[0], [0.2, 0.2, 0.2, 0.2, 0.2 * 4 / 5, 0.2 * 4 / 6])


def test_calibration_keeps_every_users_curve_non_decreasing():
    from churnml.models.churn import Calibrator

    rng = np.random.default_rng(0)
    hazards = rng.uniform(0.0, 0.3, size=(500, 6))
    raw = within_horizons(hazards, [7, 30, 90, 270])
    # A steep map at 30 days and a flat one at 90: calibrated alone, 30 would overtake 90 for many users.
    cals = {30: Calibrator("sigmoid", a=3.0, b=1.0), 90: Calibrator("sigmoid", a=0.2, b=-1.0)}
    out = _calibrate(raw, [7, 30, 90, 270], cals)
    assert (np.diff(out, axis=1) >= 0).all()
    np.testing.assert_allclose(out[:, 1], cals[30].apply(np.log(raw[:, 1] / (1 - raw[:, 1]))))


# --------------------------------------------------------------------------- on the simulator

@pytest.fixture(scope="module")
def long_sim(tmp_path_factory):
    """1,500 users over 210 days, labelled snapshots every two weeks."""
    from churnml.config import load_dataset_config
    from churnml.data import open_dataset
    from churnml.jobs import build_features_job, simulate_job
    from churnml.simulator import SimulationConfig

    folder = tmp_path_factory.mktemp("long_sim")
    _, cfg_path = simulate_job(SimulationConfig(n_users=1500, days=210, seed=3), folder, truth=False)
    snaps = [START + dt.timedelta(days=d) for d in range(14, 197, 14)]
    res = build_features_job(cfg_path, folder / "set.parquet", as_of=snaps, labels=True)
    ds = open_dataset(load_dataset_config(cfg_path))
    df = pd.read_parquet(res.table_path)
    df["as_of"] = pd.to_datetime(df["as_of"], utc=True).astype("datetime64[us, UTC]")
    return ds, df


def test_on_the_simulator_monotone_and_calibrated_where_labels_exist(long_sim):
    from churnml.metrics import roc_auc
    from churnml.models.churn import feature_specs

    ds, df = long_sim
    # Train on the data as it stood at day 154; judge the 30-day probabilities at day 154 with the full log.
    until = START + dt.timedelta(days=154)
    h = dt.timedelta(days=ds.config.horizon_days)
    train = df[df["as_of"] + h <= pd.Timestamp(until)].reset_index(drop=True)
    test = df[df["as_of"] == pd.Timestamp(until)].reset_index(drop=True)
    seen = churn_times_frame(ds, sorted(train["as_of"].unique()), until=until).astype({"as_of": "datetime64[us, UTC]"})
    ts = train[["as_of", "user_id"]].merge(seen, on=["as_of", "user_id"], how="left")[CHURN_TS]
    features = [c for c in df.columns if c not in ("user_id", "as_of", "churned")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        specs = feature_specs(train, features)
        model = fit_hazard_model(train, ts, specs=specs, horizons=[30, 90, 270],
                                 confirmed_until=confirmed_until(ds, until), lag=confirmation_lag(ds.config),
                                 params={"learning_rate": 0.1, "num_leaves": 15, "min_child_samples": 50},
                                 num_boost_round=200, early_stopping_rounds=20, seed=1, threads=1)
        p = model.predict_frame(test)
    assert model.info["labelled_horizons"] == [30]
    assert model.info["extrapolated_horizons"] == [90, 270]
    assert (np.diff(p.to_numpy(), axis=1) >= 0).all()
    assert (p["p_churn_270d"] < 1).mean() > 0.5  # the tail is a hazard, not a certainty
    later = churn_times_frame(ds, [until]).astype({"as_of": "datetime64[us, UTC]"})
    t = test[["as_of", "user_id"]].merge(later, on=["as_of", "user_id"], how="left")[CHURN_TS]
    y = (t < test["as_of"] + pd.Timedelta(days=30)).fillna(False).to_numpy().astype(int)
    q = p["p_churn_30d"].to_numpy()
    assert roc_auc(y, q) > 0.75
    # Calibrated: overall and in each third of the predictions, the observed rate lies within 3 standard
    # errors (of a calibrated forecast) of the mean prediction.
    for part in [np.ones(len(q), bool)] + [b == k for b in [pd.qcut(q, 3, labels=False)] for k in range(3)]:
        se = np.sqrt((q[part] * (1 - q[part])).sum()) / part.sum()
        assert abs(y[part].mean() - q[part].mean()) < 3 * se, (part.sum(), y[part].mean(), q[part].mean())


# --------------------------------------------------------------------------- the job, the registry, the API

def test_the_registered_model_serves_monotone_horizon_probabilities(small_sim, tmp_path, settings):
    import yaml

    from churnml import tracking
    from churnml.config import BoosterConfig, TrainConfig, TuningConfig, load_dataset_config
    from churnml.scoring import Scorer
    from churnml.train import train_churn_job
    from serving.app import _columns, _records
    from serving.schemas import ScoreItem

    doc = load_dataset_config(small_sim["config"]).model_dump(mode="json") | {"horizons_days": [90, 30, 270]}
    (tmp_path / "dataset.yaml").write_text(yaml.safe_dump(doc))
    booster = BoosterConfig(num_boost_round=60, early_stopping_rounds=10,
                            params={"learning_rate": 0.1, "num_leaves": 15, "min_child_samples": 50})
    cfg = TrainConfig(dataset=tmp_path / "dataset.yaml", training_set=small_sim["training_set"],
                      tuning=TuningConfig(trials=0), lightgbm=booster, backtest={"folds": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        res = train_churn_job(cfg, settings=settings)
    assert res.model.horizons.horizons == (30, 90, 270)
    model, _ = tracking.load_model("churn-risk", "challenger", settings)
    rows = pd.read_parquet(small_sim["training_set"]).tail(400)
    scored = Scorer(model).score(rows, reasons=0)
    cols = ["p_churn_30d", "p_churn_90d", "p_churn_270d"]
    assert list(scored.columns) == ["user_id", "p_churn", *cols]
    p = scored[cols].to_numpy()
    assert ((p >= 0) & (p <= 1)).all() and (np.diff(p, axis=1) >= 0).all()
    np.testing.assert_array_equal(p, res.model.horizons.predict_frame(rows).to_numpy())  # survives the registry
    items = [ScoreItem(**r) for r in _records(_columns(scored, 0), range(3))]
    assert items[0].p_churn_horizons == dict(zip(cols, p[0], strict=True))
    # The nightly list (risk-ranked: no uplift model yet) carries them, for every user on it.
    from churnml.batch import score_job
    from churnml.config import ScoreConfig
    from churnml.train import promote_job

    promote_job(cfg, settings=settings)
    res = score_job(ScoreConfig(dataset=tmp_path / "dataset.yaml", output=tmp_path / "lists", reasons=0),
                    "2024-04-29", settings=settings)
    listed = pd.read_parquet(res.folder / "recall_list.parquet")
    assert len(listed) > 0 and (np.diff(listed[cols].to_numpy(), axis=1) >= 0).all()
