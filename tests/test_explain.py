"""SHAP wrappers: contributions worked out by hand, agreement with shap, reason wording, summaries."""

from __future__ import annotations

import io
import math
import warnings

import lightgbm as lgb
import matplotlib
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from churnml.exceptions import SchemaMismatchError
from churnml.explain import (
    cohort_explanation,
    contributions,
    dependence,
    global_importance,
    glossary_from_features,
    glossary_from_schema,
    interaction_table,
    plot_beeswarm,
    plot_dependence,
    plot_interaction,
    reason_codes,
    reason_text,
)

matplotlib.use("Agg")

# One tree, written by hand:
#
#   days_since_last_activity <= 7.5 ?  (100 users)
#     yes -> leaf -1.0   (60 users)
#     no  -> n_play_7d <= 0.5 ?  (40 users)
#              yes -> leaf 2.0  (10 users)
#              no  -> leaf 0.5  (30 users)
#
# Expected value: (-1*60 + 2*10 + 0.5*30) / 100 = -0.25; right node mean 35/40 = 0.875.
# User x (12 days, 0 plays), f(x) = 2:  v({}) = -0.25, v({days}) = 0.875,
#   v({plays}) = 0.6*(-1) + 0.4*2 = 0.2, v({days, plays}) = 2, so
#   phi_days  = ((0.875 + 0.25) + (2 - 0.2)) / 2 = 1.4625
#   phi_plays = ((0.2 + 0.25) + (2 - 0.875)) / 2 = 0.7875
# User y (3 days, 4 plays), f(y) = -1:  v({days}) = -1, v({plays}) = 0.6*(-1) + 0.4*0.5 = -0.4, so
#   phi_days  = ((-1 + 0.25) + (-1 + 0.4)) / 2 = -0.675
#   phi_plays = ((-0.4 + 0.25) + (-1 + 1)) / 2 = -0.075
# Saabas (approximate): x: days 0.875 - (-0.25) = 1.125, plays 2 - 0.875 = 1.125; y: days -0.75, plays 0.
HAND_MODEL = """tree
version=v4
num_class=1
num_tree_per_iteration=1
label_index=0
max_feature_idx=1
objective=binary sigmoid:1
feature_names=days_since_last_activity n_play_7d
feature_infos=[0:60] [0:50]
tree_sizes=0

Tree=0
num_leaves=3
num_cat=0
split_feature=0 1
split_gain=1 1
threshold=7.5 0.5
decision_type=2 2
left_child=-1 -2
right_child=1 -3
leaf_value=-1 2 0.5
leaf_weight=60 10 30
leaf_count=60 10 30
internal_value=0 0
internal_weight=100 40
internal_count=100 40
is_linear=0
shrinkage=1


end of trees

pandas_categorical:null
"""

# Columns as the feature job's schema file writes them (churnml.jobs._schema_doc).
_FEATURES = [
    ("days_since_last_activity", "days since the user's last activity", "recency", None),
    ("days_since_last_like", "days since the user's last 'like' event (empty if never)", "recency", None),
    ("days_since_last_play", "days since the user's last 'play' event (empty if never)", "recency", None),
    ("days_since_first_event", "days since the user's first event", "tenure", None),
    ("n_play_1d", "number of 'play' events in the last 1 days", "frequency", 1),
    ("n_play_7d", "number of 'play' events in the last 7 days", "frequency", 7),
    ("n_play_all", "number of 'play' events so far", "frequency", None),
    ("n_add_to_cart_7d", "number of 'Add to cart' events in the last 7 days", "frequency", 7),
    ("n_events_30d", "number of activity events in the last 30 days", "activity", 30),
    ("active_days_1d", "days with activity among the last 1", "activity", 1),
    ("active_days_7d", "days with activity among the last 7", "activity", 7),
    ("active_days_all", "days with activity so far", "activity", None),
    ("n_events_prev_7d", "activity events 8-14 days ago", "trend", 14),
    ("activity_trend_7d", "log ratio of activity in the last 7 days to the 7 before (below 0 = slowing)",
     "trend", 14),
    ("events_per_active_day_30d", "activity events per active day over the last 30 days", "depth", 30),
    ("communities_joined", "distinct communities joined so far", "distinct", None),
    ("sum_amount_7d", "total amount in the last 7 days", "amount", 7),
    ("onboard_n_like_7d", "'like' events in the first 7 days after signup", "onboarding", 7),
    ("onboard_active_days_7d", "days with activity in the first 7 days after signup", "onboarding", 7),
    ("gap_mean_days", "average gap in days between consecutive active days", "gaps", None),
    ("gap_max_days", "longest gap in days between consecutive active days", "gaps", None),
    ("times_contacted", "recall messages received so far", "campaign", None),
    ("days_since_last_contact", "days since the last recall message (empty if never)", "campaign", None),
    ("responded_last_contact", ("came back within 7 days of the last recall message whose response "
                                "window had closed (1/0, empty if none)"), "campaign", None),
    ("tenure_days", "days since signup", "tenure", None),
    ("platform", "user attribute 'platform' from the users table", "attribute", None),
]
SCHEMA = {"columns": [
    {"name": "user_id", "dtype": "int64", "description": "user id", "family": "id", "window_days": None},
    *({"name": n, "dtype": "double", "description": d, "family": f, "window_days": w}
      for n, d, f, w in _FEATURES),
    {"name": "churned", "dtype": "int8", "description": "1 if no activity in the 14 days from as_of",
     "family": "label", "window_days": 14},
]}
GLOSSARY = glossary_from_schema(SCHEMA)


@pytest.fixture
def hand_booster() -> lgb.Booster:
    return lgb.Booster(model_str=HAND_MODEL)


@pytest.fixture
def hand_X() -> pd.DataFrame:
    return pd.DataFrame({"days_since_last_activity": [12.0, 3.0], "n_play_7d": [0, 4]}, index=["x", "y"])


def _random_frame(rng: np.random.Generator, n: int = 600, p: int = 19) -> tuple[pd.DataFrame, np.ndarray]:
    """p numeric features (one with 25% NaN) and a categorical one; the label depends on a few."""
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"f{i}" for i in range(p)])
    X.loc[rng.random(n) < 0.25, "f3"] = np.nan
    X["platform"] = pd.Categorical(rng.choice(["android", "ios", "web"], n))
    logit = X["f0"] - X["f1"] + X["f3"].fillna(2.0) + (X["platform"] == "ios") * 1.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def _train(X: pd.DataFrame, y: np.ndarray, seed: int, rounds: int = 25) -> lgb.Booster:
    params = {"objective": "binary", "num_leaves": 8, "min_data_in_leaf": 5, "verbose": -1, "seed": seed,
              "deterministic": True, "num_threads": 1, "min_data_per_group": 5, "cat_smooth": 1}
    return lgb.train(params, lgb.Dataset(X, y), num_boost_round=rounds)


@pytest.fixture
def random_model(seed):
    X, y = _random_frame(np.random.default_rng(seed))
    return _train(X, y, seed), X


# --------------------------------------------------------------------------- (a) a model worked out by hand


def test_hand_model_contributions(hand_booster, hand_X):
    contrib, base = contributions(hand_booster, hand_X)
    np.testing.assert_allclose(contrib, [[1.4625, 0.7875], [-0.675, -0.075]], atol=1e-12)
    assert base == pytest.approx(-0.25, abs=1e-12)


def test_hand_model_saabas(hand_booster, hand_X):
    contrib, base = contributions(hand_booster, hand_X, approximate=True)
    np.testing.assert_allclose(contrib, [[1.125, 1.125], [-0.75, 0.0]], atol=1e-12)
    assert base == pytest.approx(-0.25, abs=1e-12)


def test_hand_model_reason_codes(hand_booster, hand_X):
    up = reason_codes(hand_booster, hand_X, GLOSSARY, top=2, distinct=False)
    assert list(up.columns) == ["reason_1", "reason_2", "reason_1_feature", "reason_2_feature",
                                "reason_1_contribution", "reason_2_contribution"]
    assert list(up.index) == ["x", "y"]
    assert up.loc["x", "reason_1"] == "no activity for 12 days"
    assert up.loc["x", "reason_2"] == "no 'play' events in the last 7 days"
    assert up.loc["x", "reason_1_feature"] == "days_since_last_activity"
    assert up.loc["x", "reason_1_contribution"] == pytest.approx(1.4625)
    assert up.loc["x", "reason_2_contribution"] == pytest.approx(0.7875)
    # Nothing pushes y's risk up.
    assert up.loc["y"].isna().all()

    down = reason_codes(hand_booster, hand_X, GLOSSARY, top=2, direction="down")
    assert down.loc["y"].tolist()[:4] == ["no activity for 3 days", "4 'play' events in the last 7 days",
                                          "days_since_last_activity", "n_play_7d"]
    assert down.loc["y", "reason_2_contribution"] == pytest.approx(-0.075)
    assert down.loc["x"].isna().all()
    # By default a reason that restates another is left out: 12 days without activity already say
    # that there was no 'play' in the last 7 days.
    distinct = reason_codes(hand_booster, hand_X, GLOSSARY, top=2)
    assert distinct.loc["x", "reason_1"] == "no activity for 12 days" and pd.isna(distinct.loc["x", "reason_2"])


def test_hand_model_min_contribution(hand_booster, hand_X):
    out = reason_codes(hand_booster, hand_X, GLOSSARY, top=2, min_contribution=1.0)
    assert out.loc["x", "reason_1_feature"] == "days_since_last_activity"
    assert pd.isna(out.loc["x", "reason_2"]) and pd.isna(out.loc["x", "reason_2_feature"])


# --------------------------------------------------------------------------- (b, c) agreement with shap, additivity


def test_contributions_match_shap_tree_explainer(random_model):
    shap = pytest.importorskip("shap")
    booster, X = random_model
    contrib, base = contributions(booster, X)
    explainer = shap.TreeExplainer(booster)
    with pytest.warns(UserWarning, match="LightGBM binary classifier"):
        expected = explainer.shap_values(X)
    assert contrib.shape == (len(X), 20)
    np.testing.assert_allclose(contrib, expected, rtol=0, atol=1e-6)
    assert base == pytest.approx(float(np.ravel(explainer.expected_value)[0]), abs=1e-6)
    assert np.abs(contrib[:, X.columns.get_loc("platform")]).max() > 0.1  # the categorical matters


def test_contributions_match_shaps_own_algorithm(seed):
    """shap's C++ TreeSHAP on its own parse of the trees: an implementation independent of LightGBM's.

    shap cannot parse LightGBM's categorical splits, so this model is numeric (with NaNs).
    """
    shap = pytest.importorskip("shap")
    X, y = _random_frame(np.random.default_rng(seed))
    X = X.drop(columns="platform")
    booster = _train(X, y, seed)
    explainer = shap.TreeExplainer(booster)
    explainer.model.model_type = "internal"  # skip shap's shortcut to pred_contrib
    for approximate in (False, True):
        contrib, base = contributions(booster, X, approximate=approximate)
        expected = explainer.shap_values(X.to_numpy(), approximate=approximate)
        np.testing.assert_allclose(contrib, expected, rtol=0, atol=1e-6)
        assert base == pytest.approx(float(np.ravel(explainer.expected_value)[0]), abs=1e-6)


@pytest.mark.parametrize("approximate", [False, True])
def test_contributions_add_up_to_raw_prediction(random_model, approximate):
    booster, X = random_model
    contrib, base = contributions(booster, X, approximate=approximate, chunk_size=97)
    np.testing.assert_allclose(base + contrib.sum(axis=1), booster.predict(X, raw_score=True), atol=1e-9)


def test_contributions_follow_booster_column_order(random_model):
    booster, X = random_model
    shuffled = X[X.columns[::-1]].assign(user_id=np.arange(len(X)))
    np.testing.assert_array_equal(contributions(booster, shuffled)[0], contributions(booster, X)[0])


def test_contributions_of_no_rows(random_model):
    booster, X = random_model
    contrib, base = contributions(booster, X.iloc[:0])
    assert contrib.shape == (0, 20)
    assert base == pytest.approx(contributions(booster, X.iloc[:3])[1])


def test_contributions_reject_missing_feature(random_model):
    booster, X = random_model
    with pytest.raises(SchemaMismatchError, match=r"missing 1: f5"):
        contributions(booster, X.drop(columns="f5"))


# --------------------------------------------------------------------------- (b2) exact TreeSHAP, deduplicated per tree


def _count_frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Integer counts with many zeros and ties, missing recencies, and a categorical attribute."""
    X = pd.DataFrame({f"n_{i}": rng.poisson(rng.uniform(0.2, 3.0), n).astype(float) for i in range(6)})
    X["days_since"] = np.where(rng.random(n) < 0.3, np.nan, rng.exponential(5.0, n).round(1))
    X["trend"] = rng.normal(size=n)
    X["platform"] = pd.Categorical(rng.choice(["android", "ios", "web", "tv"], n, p=[0.4, 0.3, 0.2, 0.1]))
    return X


@pytest.mark.parametrize("params", [{}, {"zero_as_missing": True}, {"use_missing": False},
                                    {"max_cat_to_onehot": 8}])
def test_deduplicated_path_equals_lightgbm(seed, params, monkeypatch):
    """Above the size threshold the exact path explains each tree's distinct patterns once."""
    rng = np.random.default_rng(seed)
    X = _count_frame(rng, 6_500)  # three row blocks of 2,000+ rows when three cores are there
    logit = 0.4 * X["n_0"] - 0.3 * X["n_1"] + X["days_since"].fillna(20) / 10 - (X["platform"] == "ios")
    y = (rng.random(len(X)) < 1 / (1 + np.exp(-logit + 1))).astype(int)
    booster = lgb.train({"objective": "binary", "num_leaves": 15, "min_data_in_leaf": 10, "verbose": -1,
                         "seed": seed, "num_threads": 1, "min_data_per_group": 10, **params},
                        lgb.Dataset(X, y), num_boost_round=30)
    # Scored rows: categories in another order than in training, a level seen in no training row.
    scored = X.copy()
    scored["platform"] = scored["platform"].cat.reorder_categories(["web", "tv", "ios", "android"])
    expected = booster.predict(X, pred_contrib=True)
    explained: list[int] = []
    real = lgb.Booster.predict

    def spy(self, data, *args, **kwargs):
        if kwargs.get("pred_contrib"):
            explained.append(len(data))
        return real(self, data, *args, **kwargs)

    monkeypatch.setattr(lgb.Booster, "predict", spy)
    for cores in (1, 2, 3):
        monkeypatch.setattr("churnml.explain._cpu_count", lambda cores=cores: cores)
        explained.clear()
        contrib, base = contributions(booster, scored)
        np.testing.assert_allclose(contrib, expected[:, :-1], rtol=0, atol=1e-10)
        assert base == pytest.approx(expected[0, -1], abs=1e-12)
        # One one-tree call per tree, on far fewer rows than trees x users.
        assert len(explained) == 30
        assert sum(explained) < 0.5 * 30 * len(X)


def test_explaining_never_changes_concurrent_predictions_on_the_same_booster(seed):
    """One-tree TreeSHAP calls run on private copies: a score computed meanwhile is the full model's."""
    import threading

    rng = np.random.default_rng(seed)
    X = _count_frame(rng, 3_000)
    y = (X["n_0"] + rng.normal(size=len(X)) > 1).astype(int)
    booster = lgb.train({"objective": "binary", "num_leaves": 15, "verbose": -1, "num_threads": 1, "seed": seed},
                        lgb.Dataset(X, y), num_boost_round=40)
    small = X.iloc[:400]
    want_raw = booster.predict(X.iloc[:50], raw_score=True)
    want_small = booster.predict(small, pred_contrib=True)[:, :-1]
    stop = threading.Event()
    wrong: list[str] = []

    def explain_big() -> None:
        while not stop.is_set():
            contributions(booster, X)  # the deduplicated path, one tree at a time

    worker = threading.Thread(target=explain_big)
    worker.start()
    try:
        for _ in range(30):
            if not np.allclose(booster.predict(X.iloc[:50], raw_score=True), want_raw, atol=1e-12):
                wrong.append("raw score")
            if not np.allclose(contributions(booster, small)[0], want_small, atol=1e-10):
                wrong.append("contributions")
    finally:
        stop.set()
        worker.join()
    assert wrong == []


def test_caches_go_with_the_booster(seed):
    import gc
    import weakref

    from churnml import explain

    X, y = _random_frame(np.random.default_rng(seed), n=2_400)  # the deduplicated path and its caches
    booster = _train(X, y, seed)
    contributions(booster, X)
    assert booster in explain._DEDUP and booster in explain._COPIES
    ref = weakref.ref(booster)
    del booster
    gc.collect()
    assert ref() is None


def test_values_within_lightgbms_zero_threshold_count_as_zero(seed):
    """LightGBM's zero is |x| <= 1e-35f (1.00000002e-35 as a double), not 1e-35."""
    rng = np.random.default_rng(seed)
    n = 3_000
    x = np.where(rng.random(n) < 0.3, 0.0, rng.uniform(0.01, 10, n))
    y = ((x == 0) | (x > 5)).astype(int) ^ (rng.random(n) < 0.05)
    X = pd.DataFrame({"x": x, "z": rng.normal(size=n)})
    booster = lgb.train({"objective": "binary", "zero_as_missing": True, "verbose": -1, "num_threads": 1,
                         "num_leaves": 4}, lgb.Dataset(X, y), 3)
    tiny = 1.0000000001e-35
    scored = pd.DataFrame({"x": np.r_[np.full(1500, tiny), np.full(1500, -tiny), np.full(1000, 0.02)], "z": 0.0})
    want = booster.predict(scored, pred_contrib=True)[:, :-1]
    np.testing.assert_allclose(contributions(booster, scored)[0], want, rtol=0, atol=1e-10)


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_deduplicated_path_equals_lightgbm_on_any_small_log(data, monkeypatch):
    """Property: on any small table of few distinct values (and NaNs), dedup equals pred_contrib."""
    monkeypatch.setattr("churnml.explain._DEDUP_MIN_ROWS", 1)
    seed = data.draw(st.integers(0, 10_000))
    n = data.draw(st.integers(20, 120))
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.integers(0, data.draw(st.integers(2, 6)), size=(n, 4)).astype(float),
                     columns=list("abcd"))
    X = X.mask(rng.random(X.shape) < data.draw(st.floats(0, 0.4)))
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    booster = lgb.train({"objective": "binary", "num_leaves": 6, "min_data_in_leaf": 2, "verbose": -1,
                         "num_threads": 1, "min_data_in_bin": 1, "seed": seed,
                         "zero_as_missing": data.draw(st.booleans())},
                        lgb.Dataset(X, y), num_boost_round=5)
    contrib, _ = contributions(booster, X)
    np.testing.assert_allclose(contrib, booster.predict(X, pred_contrib=True)[:, :-1], rtol=0, atol=1e-10)


# --------------------------------------------------------------------------- (d) wording, family by family


@pytest.mark.parametrize(("feature", "value", "expected"), [
    ("days_since_last_activity", 12.0, "no activity for 12 days"),
    ("days_since_last_activity", 12.9, "no activity for 12 days"),
    ("days_since_last_activity", 1.2, "no activity for 1 day"),
    ("days_since_last_activity", 0.3, "active in the last day"),
    ("days_since_last_like", np.nan, "never did 'like'"),
    ("days_since_last_play", 3.4, "last 'play' event 3 days ago"),
    ("days_since_first_event", 90.5, "first event 90 days ago"),
    ("tenure_days", 40.2, "signed up 40 days ago"),
    ("n_play_7d", 2, "2 'play' events in the last 7 days"),
    ("n_play_7d", 1, "1 'play' event in the last 7 days"),
    ("n_play_1d", 0, "no 'play' events in the last day"),
    ("n_play_all", 1200, "1,200 'play' events so far"),
    ("n_add_to_cart_7d", 3, "3 'Add to cart' events in the last 7 days"),
    ("n_events_30d", 0, "no activity events in the last 30 days"),
    ("active_days_7d", 2, "active on 2 of the last 7 days"),
    ("active_days_7d", 0, "not active on any of the last 7 days"),
    ("active_days_1d", 0, "not active in the last day"),
    ("active_days_all", 1, "active on 1 day so far"),
    ("onboard_n_like_7d", 0, "no 'like' events in the first 7 days after signup"),
    ("onboard_active_days_7d", 3, "active on 3 of the first 7 days after signup"),
    ("onboard_active_days_7d", 0, "not active on any of the first 7 days after signup"),
    ("n_events_prev_7d", 5, "5 activity events 8-14 days ago"),
    ("activity_trend_7d", math.log(0.5), "activity down 50% in the last 7 days vs the 7 days before"),
    ("activity_trend_7d", math.log(3.0), "activity up 200% in the last 7 days vs the 7 days before"),
    ("activity_trend_7d", 0.0, "activity unchanged in the last 7 days vs the 7 days before"),
    ("events_per_active_day_30d", 2.5, "2.5 activity events per active day over the last 30 days"),
    ("events_per_active_day_30d", np.nan, "no active days in the last 30 days"),
    ("communities_joined", 0, "distinct communities joined so far: 0"),
    ("sum_amount_7d", 12.5, "total amount in the last 7 days: 12.5"),
    ("gap_max_days", 12, "longest gap of 12 days between consecutive active days"),
    ("gap_mean_days", 3.5, "average gap of 3.5 days between consecutive active days"),
    ("gap_mean_days", np.nan, "average gap between consecutive active days: none yet"),
    ("times_contacted", 2, "recall messages received so far: 2"),
    ("days_since_last_contact", 12.0, "last recall message 12 days ago"),
    ("days_since_last_contact", np.nan, "no recall message so far"),
    ("responded_last_contact", 0,
     "came back within 7 days of the last recall message whose response window had closed: no"),
    ("platform", "ios", "platform: ios"),
    ("platform", None, "platform: unknown"),
    ("not_in_glossary", 3, "not_in_glossary: 3"),
])
def test_reason_text(feature, value, expected):
    assert reason_text(feature, value, GLOSSARY) == expected


def test_reason_text_glossary_overrides():
    glossary = {"onboard_n_like_7d": {**GLOSSARY["onboard_n_like_7d"],
                                      "phrase_zero": "liked no song in the first 7 days after signup"}}
    assert reason_text("onboard_n_like_7d", 0, glossary) == "liked no song in the first 7 days after signup"
    assert reason_text("onboard_n_like_7d", 2, glossary) == "2 'like' events in the first 7 days after signup"


def test_reason_text_vectorised_matches_scalar():
    values = pd.Series([0, 1, 2, np.nan, 2, 0.4, 12.9])
    many = reason_text("days_since_last_like", values, GLOSSARY)
    assert list(many) == [reason_text("days_since_last_like", v, GLOSSARY) for v in values]
    assert many[3] == "never did 'like'" and many[1] == "last 'like' event 1 day ago"


def test_glossaries_from_schema_and_features():
    from churnml.features.definitions import Feature

    assert "user_id" not in GLOSSARY and "churned" not in GLOSSARY
    assert GLOSSARY["n_play_7d"] == {"description": "number of 'play' events in the last 7 days",
                                     "family": "frequency", "window_days": 7}
    feats = [Feature("n_play_7d", "number of 'play' events in the last 7 days", "frequency", "per_event",
                     lambda t: t, 7)]
    assert glossary_from_features(feats) == {"n_play_7d": GLOSSARY["n_play_7d"]}
    with pytest.raises(ValueError, match=r"`schema_doc` parameter of `glossary_from_schema`"):
        glossary_from_schema({"feature_columns": []})


# --------------------------------------------------------------------------- (e) direction, order and ties


@pytest.fixture
def four_feature_model(seed):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"days_since_last_activity": rng.uniform(0, 30, 200), "n_play_7d": rng.poisson(3, 200),
                      "communities_joined": rng.poisson(1, 200), "active_days_7d": rng.integers(0, 8, 200)})
    booster = _train(X, (X["days_since_last_activity"] > 10).astype(int).to_numpy(), seed, rounds=2)
    rows = pd.DataFrame({"days_since_last_activity": [20.0, 1.0, 5.0], "n_play_7d": [0, 9, 2],
                         "communities_joined": [0, 2, 1], "active_days_7d": [1, 7, 4]}, index=[10, 11, 12])
    return booster, rows


def test_direction_signs_order_and_ties(four_feature_model):
    booster, X = four_feature_model
    contrib = np.array([[0.5, -0.2, 0.5, 0.1],     # tie between columns 0 and 2: column 0 first
                        [0.0, 0.0, 0.0, 0.0],      # no reasons either way
                        [-0.3, -0.3, 0.2, -0.1]])  # tie on the way down
    up = reason_codes(booster, X, GLOSSARY, contrib=contrib)
    assert up.loc[10, ["reason_1_feature", "reason_2_feature", "reason_3_feature"]].tolist() == [
        "days_since_last_activity", "communities_joined", "active_days_7d"]
    assert up.loc[10, ["reason_1", "reason_2", "reason_3"]].tolist() == [
        "no activity for 20 days", "distinct communities joined so far: 0", "active on 1 of the last 7 days"]
    assert up.loc[10, ["reason_1_contribution", "reason_2_contribution", "reason_3_contribution"]].tolist() \
        == [0.5, 0.5, 0.1]
    assert up.loc[11].isna().all()
    assert up.loc[12, "reason_1_feature"] == "communities_joined" and pd.isna(up.loc[12, "reason_2"])

    down = reason_codes(booster, X, GLOSSARY, contrib=contrib, direction="down")
    assert down.loc[12, ["reason_1_feature", "reason_2_feature", "reason_3_feature"]].tolist() == [
        "days_since_last_activity", "n_play_7d", "active_days_7d"]
    assert down.loc[12, ["reason_1_contribution", "reason_2_contribution", "reason_3_contribution"]].tolist() \
        == [-0.3, -0.3, -0.1]
    assert down.loc[10, "reason_1"] == "no 'play' events in the last 7 days"
    assert pd.isna(down.loc[10, "reason_2"])

    strict = reason_codes(booster, X, GLOSSARY, contrib=contrib, min_contribution=0.1)
    assert pd.isna(strict.loc[10, "reason_3"])  # 0.1 does not exceed 0.1


def test_reason_codes_reject_bad_arguments(four_feature_model):
    booster, X = four_feature_model
    with pytest.raises(ValueError, match=r"The `direction` parameter of `reason_codes` must be"):
        reason_codes(booster, X, GLOSSARY, direction="sideways")
    with pytest.raises(ValueError, match=r"`top` parameter of `reason_codes` must be `an int >= 1`"):
        reason_codes(booster, X, GLOSSARY, top=0)
    with pytest.raises(ValueError, match=r"`contrib` parameter of `reason_codes`"):
        reason_codes(booster, X, GLOSSARY, contrib=np.zeros((3, 5)))


def test_reason_codes_on_random_model_are_largest_positive(random_model):
    booster, X = random_model
    contrib, _ = contributions(booster, X)
    out = reason_codes(booster, X, {}, top=3)
    names = booster.feature_name()
    expected = -np.sort(np.where(contrib > 0, -contrib, np.nan), axis=1)[:, :3]  # NaN sorts last
    got = out[["reason_1_contribution", "reason_2_contribution", "reason_3_contribution"]].to_numpy()
    np.testing.assert_allclose(got, expected)
    first = out["reason_1_feature"].dropna()
    rows = X.index.get_indexer(first.index)
    np.testing.assert_array_equal(contrib[rows, [names.index(f) for f in first]],
                                  out.loc[first.index, "reason_1_contribution"])


# --------------------------------------------------------------------------- (f) population summaries


def test_cohort_explanation_recovers_planted_difference(seed):
    rng = np.random.default_rng(seed)
    contrib = rng.normal(0, 0.5, size=(4000, 6))
    cohort = np.zeros(4000, dtype=bool)
    cohort[:1000] = True
    contrib[cohort, 3] += 1.0
    names = [f"f{i}" for i in range(6)]
    X = pd.DataFrame(contrib, columns=names)
    table = cohort_explanation(contrib, names, cohort, ~cohort, X=X)
    assert table.loc[0, "feature"] == "f3"
    assert table.loc[0, "difference"] == pytest.approx(1.0, abs=0.1)
    assert table["difference"].iloc[1:].abs().max() < 0.15
    gap = contrib[cohort].sum(axis=1).mean() - contrib[~cohort].sum(axis=1).mean()
    assert table["difference"].sum() == pytest.approx(gap)
    assert table.loc[0, "mean_value_cohort"] == pytest.approx(table.loc[0, "mean_shap_cohort"])
    with pytest.raises(ValueError, match=r"`baseline` parameter of `cohort_explanation`"):
        cohort_explanation(contrib, names, cohort, np.zeros(4000, dtype=bool))


def test_cohort_means_skip_missing_values_without_warning():
    contrib = np.zeros((4, 2))
    X = pd.DataFrame({"a": [1.0, np.nan, 3.0, 5.0], "b": [np.nan, np.nan, 2.0, 4.0]})
    cohort = np.array([True, True, False, False])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = cohort_explanation(contrib, ["a", "b"], cohort, ~cohort, X=X).set_index("feature")
    assert table.loc["a", "mean_value_cohort"] == 1.0 and table.loc["a", "mean_value_baseline"] == 4.0
    assert np.isnan(table.loc["b", "mean_value_cohort"]) and table.loc["b", "mean_value_baseline"] == 3.0


def test_global_importance_by_hand():
    contrib = np.array([[1.0, -0.5, 0.0], [-1.0, -0.5, 0.2], [0.5, -0.5, 0.0]])
    table = global_importance(contrib, ["a", "b", "c"])
    assert table["feature"].tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(table["mean_abs_shap"], [2.5 / 3, 0.5, 0.2 / 3])
    np.testing.assert_allclose(table["mean_shap"], [0.5 / 3, -0.5, 0.2 / 3])
    assert table["rank"].tolist() == [1, 2, 3]
    assert global_importance(contrib[:, ::-1], ["c", "b", "a"])["feature"].tolist() == ["a", "b", "c"]


def test_dependence_steps_by_value_and_quantile_bins():
    likes = np.array([0, 0, 1, 2, 3, 3, 4, 5, np.nan, 5])
    X = pd.DataFrame({"likes": likes, "other": np.zeros(10)})
    shap_likes = np.where(np.nan_to_num(likes, nan=0) < 3, 0.5, -0.5)
    contrib = np.column_stack([shap_likes, np.zeros(10)])
    table = dependence(contrib, X, "likes")
    assert table["bin"].tolist() == ["0", "1", "2", "3", "4", "5", "missing"]
    assert table["n"].tolist() == [2, 1, 1, 2, 1, 2, 1]
    assert table["shap_mean"].tolist() == [0.5, 0.5, 0.5, -0.5, -0.5, -0.5, 0.5]
    assert table["value_mean"].iloc[:6].tolist() == [0, 1, 2, 3, 4, 5]

    X2 = pd.DataFrame({"x": np.arange(10.0)})
    table2 = dependence(np.arange(10.0)[:, None], X2, "x", bins=2)
    assert table2["bin"].tolist() == ["[0, 4.5)", "[4.5, 9]"]
    assert table2["n"].tolist() == [5, 5]
    assert table2["shap_mean"].tolist() == [2.0, 7.0]


def test_interaction_table_by_hand(four_feature_model):
    booster, _ = four_feature_model
    X = pd.DataFrame({"days_since_last_activity": [1.0, 1.0, 2.0, 2.0, 2.0], "n_play_7d": [0, 1, 0, 1, 1],
                      "communities_joined": [0] * 5, "active_days_7d": [0] * 5})
    contrib = np.array([[0.1, 0.2, 0, 0], [0.3, 0.0, 0, 0], [0.5, 0.1, 0, 0], [0.7, 0.2, 0, 0],
                        [0.9, 0.0, 0, 0]])
    table = interaction_table(booster, X, "days_since_last_activity", "n_play_7d", contrib=contrib,
                              base_value=-1.0)
    assert table[["a_bin", "b_bin"]].values.tolist() == [["1", "0"], ["1", "1"], ["2", "0"], ["2", "1"]]
    assert table["n"].tolist() == [1, 1, 1, 2]
    np.testing.assert_allclose(table["shap_a"], [0.1, 0.3, 0.5, 0.8])
    np.testing.assert_allclose(table["shap_ab"], [0.3, 0.3, 0.6, 0.9])
    np.testing.assert_allclose(table["mean_raw"], [-0.7, -0.7, -0.4, -0.1])
    risk_last = (1 / (1 + np.exp(-(-1 + 0.9))) + 1 / (1 + np.exp(-(-1 + 0.9)))) / 2
    assert table["mean_risk"].iloc[-1] == pytest.approx(risk_last)
    assert table.attrs == {"a": "days_since_last_activity", "b": "n_play_7d"}
    sparse = interaction_table(booster, X, "days_since_last_activity", "n_play_7d", contrib=contrib,
                               base_value=-1.0, min_count=2)
    assert sparse["n"].tolist() == [1, 1, 1, 2]
    assert sparse["shap_a"].isna().tolist() == [True, True, True, False]
    with pytest.raises(ValueError, match=r"`base_value` parameter of `interaction_table`"):
        interaction_table(booster, X, "days_since_last_activity", "n_play_7d", contrib=contrib)


# --------------------------------------------------------------------------- (g) chunking


@pytest.mark.parametrize("approximate", [False, True])
def test_chunking_gives_the_same_result(random_model, approximate, monkeypatch):
    booster, X = random_model
    glossary = {"f0": {"description": "number of 'play' events in the last 7 days", "family": "frequency"}}
    one, base_one = contributions(booster, X, approximate=approximate)
    reasons_one = reason_codes(booster, X, glossary, approximate=approximate)
    many, base_many = contributions(booster, X, approximate=approximate, chunk_size=7)
    np.testing.assert_array_equal(one, many)
    assert base_one == base_many
    pd.testing.assert_frame_equal(reasons_one, reason_codes(booster, X, glossary, approximate=approximate,
                                                            chunk_size=7))
    # The approximate path also splits a chunk by its leaf-matrix size: 40 rows at a time here.
    monkeypatch.setattr("churnml.explain._SAABAS_CELLS", 1_000)
    np.testing.assert_array_equal(one, contributions(booster, X, approximate=approximate)[0])
    pd.testing.assert_frame_equal(reasons_one, reason_codes(booster, X, glossary, approximate=approximate))


# --------------------------------------------------------------------------- plots


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def test_plots_return_figures(random_model):
    booster, X = random_model
    contrib, base = contributions(booster, X)
    fig = plot_beeswarm(contrib, X, base_value=base, feature_names=booster.feature_name(), max_display=5,
                        max_points=200)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    top = global_importance(contrib, booster.feature_name())["feature"].iloc[0]
    assert top in labels
    assert _png(fig).startswith(b"\x89PNG")

    fig = plot_dependence(dependence(contrib, X, "f0", bins=8), feature="f0")
    assert fig.axes[0].get_xlabel() == "f0" and _png(fig)

    grid = interaction_table(booster, X, "f0", "platform", contrib=contrib, base_value=base, bins=4)
    fig = plot_interaction(grid, value="mean_risk")
    assert fig.axes[0].get_ylabel() == "f0" and fig.axes[0].get_xlabel() == "platform"
    assert _png(fig).startswith(b"\x89PNG")
    with pytest.raises(ValueError, match=r"`value` parameter of `plot_interaction`"):
        plot_interaction(grid, value="n")


# --------------------------------------------------------------------------- (f) three different facts

FACT_SCHEMA = {"feature_columns": ["days_since_last_activity", "days_since_last_visit", "days_since_last_play",
                                   "n_visit_7d", "active_days_7d", "tenure_days", "n_play_30d"],
               "columns": [
    {"name": "days_since_last_activity", "description": "days since the user's last activity", "family": "recency"},
    {"name": "days_since_last_visit", "description": "days since the user's last 'visit' event (empty if never)",
     "family": "recency"},
    {"name": "days_since_last_play", "description": "days since the user's last 'play' event (empty if never)",
     "family": "recency"},
    {"name": "n_visit_7d", "description": "number of 'visit' events in the last 7 days", "family": "frequency",
     "window_days": 7},
    {"name": "active_days_7d", "description": "days with activity among the last 7", "family": "activity",
     "window_days": 7},
    {"name": "tenure_days", "description": "days since signup", "family": "tenure"},
    {"name": "n_play_30d", "description": "number of 'play' events in the last 30 days", "family": "frequency",
     "window_days": 30}]}


@pytest.fixture
def fact_model(seed):
    names = FACT_SCHEMA["feature_columns"]
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.uniform(0, 30, (200, len(names))), columns=names)
    booster = _train(X, (X["days_since_last_activity"] > 10).astype(int).to_numpy(), seed, rounds=2)
    rows = pd.DataFrame([
        # a: last seen 9 days ago, on a visit; last play 12 days ago
        [9.2, 9.6, 12.5, 0, 0, 40.0, 2],
        # b: the visit was 9 days ago but the user played 2 days ago: the visit is not the last activity
        [2.5, 9.1, 2.5, 0, 3, 40.0, 5],
        # c: no play in the last 30 days, and the last play 31 days ago: one fact (the user stopped playing)
        [0.5, 0.5, 31.0, 4, 6, 40.0, 0],
        # d: nothing restates anything
        [0.5, 0.5, 3.0, 4, 6, 40.0, 9],
    ], columns=names, index=["a", "b", "c", "d"])
    contrib = np.array([
        [0.8, 0.9, 0.5, 0.7, 0.6, 0.4, 0.1],
        [0.8, 0.9, 0.1, 0.7, 0.05, 0.4, 0.2],
        [0.1, 0.05, 0.3, 0.0, 0.0, 0.9, 0.5],
        [0.1, 0.05, 0.3, 0.0, 0.0, 0.9, 0.5],
    ])
    return booster, rows, contrib, glossary_from_schema(FACT_SCHEMA)


def test_reasons_state_three_different_facts(fact_model):
    # In 993 of 1,000 list rows reason_1 and reason_2 said one thing twice ("no activity for 9 days" /
    # "last 'visit' event 9 days ago"), and a zero window often a third time (#15).
    booster, X, contrib, glossary = fact_model
    plain = reason_codes(booster, X, glossary, contrib=contrib, distinct=False)
    assert plain.loc["a", ["reason_1", "reason_2", "reason_3"]].tolist() == [
        "last 'visit' event 9 days ago", "no activity for 9 days", "no 'visit' events in the last 7 days"]
    out = reason_codes(booster, X, glossary, contrib=contrib)
    # a: one moment (the last visit is the last activity) implies no visit and no active day in the
    # last 7 days; the next facts are the older last play and the signup
    assert out.loc["a", ["reason_1", "reason_2", "reason_3"]].tolist() == [
        "last 'visit' event 9 days ago", "last 'play' event 12 days ago", "signed up 40 days ago"]
    assert out.loc["a", "reason_2_contribution"] == 0.5
    # b: the user was active 2 days ago, so the old visit says nothing about activity, and the visit
    # window at 0 is implied by the visit 9 days ago
    assert out.loc["b", ["reason_1", "reason_2", "reason_3"]].tolist() == [
        "last 'visit' event 9 days ago", "no activity for 2 days", "signed up 40 days ago"]
    # c: the window at 0 came first; the recency that says the same is skipped
    assert plain.loc["c", "reason_3"] == "last 'play' event 31 days ago"
    assert out.loc["c", ["reason_1", "reason_2", "reason_3"]].tolist() == [
        "signed up 40 days ago", "no 'play' events in the last 30 days", "active in the last day"]
    # d: the same as without de-duplication
    pd.testing.assert_series_equal(out.loc["d"], plain.loc["d"])


def test_distinct_reasons_on_a_random_model_never_repeat_a_moment(random_model):
    # Many users, chunked: no two recency reasons of one user show the same day count.
    booster, X = random_model
    names = booster.feature_name()
    glossary = {n: {"description": f"days since the user's last '{n}' event", "family": "recency"}
                for n in names if pd.api.types.is_numeric_dtype(X[n])}
    out = reason_codes(booster, X, glossary, chunk_size=97)
    days = {}
    for j in (1, 2, 3):
        feat = out[f"reason_{j}_feature"]
        days[j] = [np.floor(max(X.at[i, f], 0)) if f in glossary and not pd.isna(X.at[i, f]) else np.nan
                   for i, f in feat.items()]
    for a, b in ((1, 2), (1, 3), (2, 3)):
        assert not any(x == y for x, y in zip(days[a], days[b], strict=True))
    plain = reason_codes(booster, X, glossary, distinct=False)
    assert (out["reason_1_feature"] == plain["reason_1_feature"]).all()  # the strongest reason is kept
