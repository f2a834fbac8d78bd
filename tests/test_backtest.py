"""The rolling backtest: no label window crosses a cut-off, choices are walk-forward, figures are honest."""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from churnml.config import utc
from churnml.exceptions import DataWarning, TrainingDataError
from churnml.features import LABEL
from churnml.models import backtest as bt_module
from churnml.models.backtest import _best, backtest_cutoffs, closed_before, run_backtest
from churnml.models.baselines import read_truth
from churnml.models.refit import Recipe, inner_split

D0 = utc("2024-01-01")
TINY = {"learning_rate": 0.3, "num_leaves": 4, "min_child_samples": 5, "min_data_in_bin": 1}


def day(n: int) -> dt.datetime:
    return D0 + dt.timedelta(days=n)


# --------------------------------------------------------------------------- the cut-off rule, by hand

def test_a_label_window_closing_exactly_at_the_cutoff_is_in_one_day_later_is_out():
    # horizon 9: the snapshot of day 11 closes at day 20 (in), the one of day 12 at day 21 (out).
    snaps = [day(d) for d in (2, 11, 12, 20)]
    assert closed_before(snaps, 9, day(20)) == [day(2), day(11)]


def test_cutoffs_by_hand_weekly_snapshots_two_week_horizon():
    # Weekly snapshots on days 0..70. The latest (70) is a cut-off; the latest closed before it is 56,
    # then 42. Each needs a validation snapshot and a training snapshot closed before it: 42's history
    # is 0..28 (validate 28, train 0..14), so all three stand.
    snaps = [day(7 * i) for i in range(11)]
    assert backtest_cutoffs(snaps, 14) == [day(42), day(56), day(70)]
    # Five asked, but the fourth (28: history 0..14, validate 14, train 0) stands and the fifth (14: history
    # 0, no training part) does not.
    assert backtest_cutoffs(snaps, 14, folds=5) == [day(28), day(42), day(56), day(70)]


def test_a_cutoff_whose_history_has_too_few_of_a_class_is_left_out():
    # Same weekly snapshots and cut-offs as above. Each snapshot has 10 users; snapshot k has k churned
    # (day 0: none, day 7: one, ..., at most nine). With min_class_count 3, the cut-off at 42 trains on days 0..14
    # (0 + 1 + 2 = 3 churned: enough) and validates on 28 (4 churned >= 3 // 5 = 0 -> 1: enough);
    # the one at 28 would train on day 0 alone (0 churned): it is left out, and the later ones stay.
    snaps = [day(7 * i) for i in range(11)]
    labels = pd.DataFrame({"as_of": [s for s in snaps for _ in range(10)],
                           "churned": [int(j < min(k, 9)) for k in range(11) for j in range(10)]})
    assert backtest_cutoffs(snaps, 14, folds=5, labels=labels, min_class_count=3) == [day(42), day(56), day(70)]
    # With 4 needed, 42's training part (3 churned) is too thin as well.
    assert backtest_cutoffs(snaps, 14, folds=5, labels=labels, min_class_count=4) == [day(56), day(70)]
    # A latest snapshot with one class only cannot be scored: one line that says so.
    one_class = labels.assign(churned=np.where(labels["as_of"] == day(70), 0, labels["churned"]))
    with pytest.raises(TrainingDataError, match=r"cut-off 2024-03-11 .*the cut-off snapshot has 0 churned"):
        backtest_cutoffs(snaps, 14, labels=one_class, min_class_count=1)


def test_too_short_a_history_for_any_cutoff_says_so():
    with pytest.raises(TrainingDataError, match=r"3 labelled snapshot\(s\) \(2024-01-01, 2024-01-08, "
                                                r"2024-01-15\): a backtest needs"):
        backtest_cutoffs([day(0), day(7), day(14)], 14)


@hsettings(max_examples=200, deadline=None)
@given(days=st.lists(st.integers(0, 300), min_size=3, max_size=30, unique=True),
       horizon=st.integers(1, 40), folds=st.integers(1, 5), n_valid=st.integers(1, 2))
def test_no_label_window_reaches_past_its_cutoff(days, horizon, folds, n_valid):
    snaps = [day(d) for d in days]
    h = dt.timedelta(days=horizon)
    try:
        cuts = backtest_cutoffs(snaps, horizon, folds=folds, valid_snapshots=n_valid)
    except TrainingDataError:
        return
    assert 1 <= len(cuts) <= folds
    assert cuts[-1] == max(snaps)  # the latest labelled snapshot is always a cut-off
    for a, b in zip(cuts, cuts[1:], strict=False):
        assert a + h <= b  # cut-offs' own label windows do not overlap
    for c in cuts:
        history = closed_before(snaps, horizon, c)
        train, valid = inner_split(history, horizon, n_valid)
        assert all(s + h <= c for s in history)  # every row a fold learns from, validation included
        assert set(train) | set(valid) <= set(history)
        assert all(s + h <= min(valid) for s in train)
        assert c not in history


# --------------------------------------------------------------------------- the rule inside run_backtest

def _synthetic(snapshot_days, n=160, seed=0) -> pd.DataFrame:
    """Users per snapshot whose churn follows x (plus noise); features at as_of only."""
    rng = np.random.default_rng(seed)
    parts = []
    for d in snapshot_days:
        x = rng.normal(size=n)
        parts.append(pd.DataFrame({
            "user_id": np.arange(n), "as_of": pd.Timestamp(day(d)), "x": x, "noise": rng.normal(size=n),
            "days_since_last_activity": np.abs(x * 3 + rng.normal(size=n)), "tenure_days": 30.0 + d,
            LABEL: (x + rng.normal(scale=0.8, size=n) > 0.3).astype("int8")}))
    return pd.concat(parts, ignore_index=True)


def _recipe(**kw) -> Recipe:
    return Recipe(**{"features": ("x", "noise", "days_since_last_activity"), "params": TINY,
                     "num_boost_round": 20, "early_stopping_rounds": 5, "min_class_count": 5, "seed": 1, **kw})


def test_each_fold_learns_only_from_labels_closed_by_its_cutoff_and_scores_the_cutoff(monkeypatch):
    # Snapshots every 3 days, horizon 9: at cut-off c, the snapshot of c - 9 may train, c - 6 and c - 3 not.
    frame = _synthetic(range(0, 61, 3))
    seen = []
    real = bt_module.fit_recipe

    def recording(history, recipe, horizon_days, **kw):
        seen.append(sorted(pd.to_datetime(history["as_of"], utc=True).unique()))
        return real(history, recipe, horizon_days, **kw)

    monkeypatch.setattr(bt_module, "fit_recipe", recording)
    cuts = backtest_cutoffs([day(d) for d in range(0, 61, 3)], 9)
    assert cuts == [day(42), day(51), day(60)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        res = run_backtest(frame, {"p": _recipe()}, 9, cuts)
    assert len(seen) == 3
    for c, history in zip(cuts, seen, strict=True):
        assert max(history) == pd.Timestamp(c - dt.timedelta(days=9))  # the boundary snapshot is in
        assert all(s + pd.Timedelta(days=9) <= pd.Timestamp(c) for s in history)
    scored = res.predictions.groupby("cutoff")["as_of"].agg(lambda s: set(pd.to_datetime(s, utc=True)))
    assert {k: v for k, v in scored.items()} == {c.date().isoformat(): {pd.Timestamp(c)} for c in cuts}


def test_the_first_fold_uses_the_default_and_later_folds_the_best_of_the_folds_before():
    idx = pd.MultiIndex.from_product([["f1", "f2", "f3"], ["a, none", "a, sigmoid", "b, none"]],
                                     names=["cutoff", "candidate"])
    cands = pd.DataFrame({"log_loss": [0.30, 0.20, 0.40,    # f1: "a, sigmoid" best
                                       0.30, 0.50, 0.10,    # f2: "b, none" best; mean of f1, f2: b 0.25, a/s 0.35
                                       0.30, 0.30, 0.30]}, index=idx)
    order = ["a, none", "a, sigmoid", "b, none"]
    assert _best(cands, ["f1"], order) == "a, sigmoid"
    assert _best(cands, ["f1", "f2"], order) == "b, none"
    # f3 is a three-way tie on its own: the earlier candidate in the order wins.
    assert _best(cands, ["f3"], order) == "a, none"


def test_walk_forward_choice_never_uses_its_own_fold():
    frame = _synthetic(range(0, 61, 3), seed=3)
    cuts = backtest_cutoffs([day(d) for d in range(0, 61, 3)], 9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        res = run_backtest(frame, {"shallow": _recipe(), "deep": _recipe(params={**TINY, "num_leaves": 15})},
                           9, cuts, default="shallow")
    keys = [c.date().isoformat() for c in cuts]
    assert res.choices[keys[0]].startswith("shallow, ")
    ll = res.candidates["log_loss"]
    for k in range(1, len(keys)):
        earlier = ll[ll.index.get_level_values("cutoff").isin(keys[:k])].groupby(level="candidate").mean()
        assert res.choices[keys[k]] == earlier.idxmin()
        # the model row of that fold is exactly that candidate's figures on the fold
        assert res.folds.loc[(keys[k], "model"), "log_loss"] == ll.loc[(keys[k], res.choices[keys[k]])]
    assert res.chosen == ll.groupby(level="candidate").mean().idxmin()


# --------------------------------------------------------------------------- on the simulator

@pytest.fixture(scope="module")
def sim_backtest(small_sim):
    import json

    df = pd.read_parquet(small_sim["training_set"])
    doc = json.loads(small_sim["training_set"].with_suffix("").with_suffix(".schema.json").read_text())
    df["as_of"] = pd.to_datetime(df["as_of"], utc=True)
    snaps = [x.to_pydatetime() for x in sorted(df["as_of"].unique())]
    cuts = backtest_cutoffs(snaps, doc["horizon_days"])
    recipe = Recipe(features=tuple(doc["feature_columns"]),
                    params={"learning_rate": 0.1, "num_leaves": 15, "min_child_samples": 50},
                    num_boost_round=150, early_stopping_rounds=20, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return run_backtest(df, {"fast": recipe}, doc["horizon_days"], cuts,
                            truth=read_truth(small_sim["truth"] / "churn.parquet"), seed=2)


def test_backtest_on_the_simulator_reaches_the_oracle_and_stays_calibrated(sim_backtest):
    res = sim_backtest
    assert len(res.cutoffs) == 3
    mean = res.mean()
    assert set(mean.index) >= {"model", "logistic regression", "recency only", "oracle"}
    # Known answer: the oracle is the exact churn probability given what the log shows.
    for cutoff, ratio in res.oracle_ratio.items():
        assert ratio > 0.95, cutoff
    assert mean.loc["model", "ece"] < 0.04
    # The oracle's calibration bounds what sampling noise alone gives on these rows.
    assert mean.loc["model", "log_loss"] < mean.loc["oracle", "log_loss"] + 0.05


def test_backtest_figures_are_per_cutoff_with_mean_and_sd(sim_backtest):
    res = sim_backtest
    auc = res.per_cutoff("roc_auc")
    assert list(auc.index) == [c.date().isoformat() for c in res.cutoffs]
    np.testing.assert_allclose(res.mean().loc["model", "roc_auc"], auc["model"].mean())
    np.testing.assert_allclose(res.sd().loc["model", "roc_auc"], auc["model"].std(ddof=1))
