"""The production refit: every labelled snapshot, a scaled tree count, an out-of-sample calibrator."""

from __future__ import annotations

import datetime as dt
import json
import warnings

import numpy as np
import pandas as pd
import pytest

from churnml.config import utc
from churnml.exceptions import DataWarning, TrainingDataError
from churnml.features import LABEL
from churnml.metrics import roc_auc
from churnml.models.churn import fit_churn_model
from churnml.models.refit import Recipe, fit_recipe, inner_split, scale_trees

D0 = utc("2024-01-01")
TINY = {"learning_rate": 0.3, "num_leaves": 4, "min_child_samples": 5, "min_data_in_bin": 1}


def day(n: int) -> dt.datetime:
    return D0 + dt.timedelta(days=n)


def _frame(days, *, signal_from: int, n=300, seed=0) -> pd.DataFrame:
    """Snapshots whose churn follows x, and from day ``signal_from`` on x + 2w (w has no effect before)."""
    rng = np.random.default_rng(seed)
    parts = []
    for d in days:
        x, w = rng.normal(size=n), rng.normal(size=n)
        y = (x + 2 * w > 0) if d >= signal_from else (x > 0)
        parts.append(pd.DataFrame({"user_id": np.arange(n), "as_of": pd.Timestamp(day(d)), "x": x, "w": w,
                                   LABEL: y.astype("int8")}))
    return pd.concat(parts, ignore_index=True)


def _recipe(**kw) -> Recipe:
    return Recipe(**{"features": ("x", "w"), "params": TINY, "num_boost_round": 30, "early_stopping_rounds": 5,
                     "min_class_count": 5, "seed": 1, **kw})


def test_inner_split_by_hand():
    weeks = [day(7 * i) for i in range(5)]  # days 0, 7, 14, 21, 28
    assert inner_split(weeks, 14) == ([day(0), day(7), day(14)], [day(28)])
    assert inner_split(weeks, 14, valid_snapshots=2) == ([day(0), day(7)], [day(21), day(28)])
    with pytest.raises(TrainingDataError, match="none has a 30-day label window that closes before the latest 1"):
        inner_split(weeks, 30)


def test_scale_trees_by_hand():
    assert scale_trees(100, 1000, 4000, 0.5) == 200
    assert scale_trees(100, 1000, 4000, 1.0) == 400
    assert scale_trees(100, 1000, 4000, 0.0) == 100
    assert scale_trees(1, 1000, 1001, 0.0) == 1


def test_the_refit_learns_what_only_the_latest_snapshots_show():
    # Weekly snapshots, horizon 14. The inner split trains on days 0..28 and validates on 42; the refit
    # adds 35 and 42. From day 35 churn also follows w: the split-trained booster cannot have learned
    # that, the refit must have.
    frame = _frame(range(0, 43, 7), signal_from=35)
    fresh = _frame([49], signal_from=0, seed=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        fit = fit_recipe(frame, _recipe(), 14)
        train = frame[pd.to_datetime(frame["as_of"], utc=True) <= pd.Timestamp(day(28))]
        valid = frame[pd.to_datetime(frame["as_of"], utc=True) == pd.Timestamp(day(42))]
        split_model, _ = fit_churn_model(train, valid, features=["x", "w"], params=TINY, num_boost_round=30,
                                         early_stopping_rounds=5, min_class_count=5, seed=1)
    y = fresh[LABEL].to_numpy()
    refit_auc, split_auc = roc_auc(y, fit.model.predict_proba(fresh)), roc_auc(y, split_model.predict_proba(fresh))
    assert split_auc < 0.75  # x alone
    assert refit_auc > split_auc + 0.1


def test_the_refit_grows_the_early_stopping_tree_count_scaled_by_the_rows():
    # Seven equal snapshots; the inner training part is days 0..28 (5 snapshots): rows ratio 7/5.
    frame = _frame(range(0, 43, 7), signal_from=0, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        flat = fit_recipe(frame, _recipe(tree_exponent=0.0), 14)
        linear = fit_recipe(frame, _recipe(tree_exponent=1.0), 14)
    n = flat.model.booster.num_trees()
    assert n >= 2  # early stopping found something to learn
    assert linear.model.booster.num_trees() == round(n * 7 / 5)


def test_the_calibrator_comes_from_the_validation_part_not_the_refit_rows():
    # Churn follows x (and w) everywhere, but the validation snapshot's churn rate is shifted far up. A calibrator
    # fit on the refit's own rows would predict the pooled rate (about 0.5); the one fit out of sample on
    # the validation snapshot predicts its rate.
    frame = _frame(range(0, 43, 7), signal_from=0, seed=5)
    last = pd.to_datetime(frame["as_of"], utc=True) == pd.Timestamp(day(42))
    rng = np.random.default_rng(0)
    frame.loc[last, LABEL] = ((frame.loc[last, "x"] > 0) | (rng.random(int(last.sum())) < 0.8)).astype("int8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        fit = fit_recipe(frame, _recipe(calibration="sigmoid"), 14)
    p = fit.model.predict_proba(frame[last])
    assert abs(p.mean() - frame.loc[last, LABEL].mean()) < 0.05
    assert p.mean() > 0.8


def test_a_recipe_survives_json():
    r = _recipe(calibration="isotonic", tree_exponent=0.7)
    assert Recipe.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    assert r.with_calibration("none").calibration == "none"
