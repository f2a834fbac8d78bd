"""The churn-risk model: learns the planted signal, calibrates, reproduces, splits honestly, fails clearly."""

from __future__ import annotations

import datetime as dt
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from churnml.config import TrainConfig, utc
from churnml.exceptions import DataWarning, SchemaMismatchError, TrainingDataError
from churnml.features import LABEL
from churnml.metrics import expected_calibration_error, roc_auc
from churnml.models.churn import (
    ChurnClassifier,
    ChurnModel,
    FeatureSpec,
    feature_specs,
    fit_churn_model,
    to_matrix,
    tune,
)
from churnml.models.split import time_split

FAST = {"learning_rate": 0.1, "num_leaves": 15, "min_child_samples": 50}


@pytest.fixture(scope="module")
def frames(small_sim):
    df = pd.read_parquet(small_sim["training_set"])
    doc = json.loads(small_sim["training_set"].with_suffix("").with_suffix(".schema.json").read_text())
    instants = sorted(df["as_of"].unique())
    split = time_split([utc(pd.Timestamp(x).to_pydatetime()) for x in instants], doc["horizon_days"])
    role = df["as_of"].map({pd.Timestamp(s): split.role(s) for s in split.train + split.valid + split.test + split.gap})
    parts = {r: df[role == r].reset_index(drop=True) for r in ("train", "valid", "test")}
    return parts, doc["feature_columns"]


def _fit(parts, features, **kw):
    kw = {"params": FAST, "num_boost_round": 300, "seed": 1, "threads": 2} | kw
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return fit_churn_model(parts["train"], parts["valid"], features=features, **kw)


def test_learns_planted_signal_far_above_shuffled_labels(frames, seed):
    parts, features = frames
    model, _ = _fit(parts, features)
    y = parts["test"][LABEL].to_numpy()
    auc = roc_auc(y, model.predict_proba(parts["test"]))
    # One shuffle's model is a noise fit of strong features whose AUC on the real labels scatters
    # (0.43-0.62 over four shuffles of this set): the control is the mean over five shuffles.
    controls = []
    for i in range(5):
        rng = np.random.default_rng(seed + i)
        shuffled = {k: v.assign(**{LABEL: rng.permutation(v[LABEL].to_numpy())}) for k, v in parts.items()}
        control, _ = _fit(shuffled, features)
        controls.append(roc_auc(y, control.predict_proba(parts["test"])))
    auc_control = float(np.mean(controls))
    assert auc > 0.85
    assert abs(auc_control - 0.5) < 0.06
    assert auc - max(controls) > 0.2


def test_calibration_repairs_a_deliberately_biased_booster(frames):
    parts, features = frames
    # Weighting churners 4x pushes the booster's raw probabilities far above the real rates.
    biased = FAST | {"scale_pos_weight": 4.0}
    raw_model, _ = _fit(parts, features, params=biased, calibration="none")
    cal_model, info = _fit(parts, features, params=biased, calibration="auto")
    y = parts["test"][LABEL].to_numpy()
    ece_raw = expected_calibration_error(y, raw_model.predict_proba(parts["test"]))
    ece_cal = expected_calibration_error(y, cal_model.predict_proba(parts["test"]))
    assert ece_raw > 0.08
    assert ece_cal < 0.03
    assert info["calibration"] in ("isotonic", "sigmoid")


def test_same_data_config_and_seed_give_the_same_model(frames):
    parts, features = frames
    parts = parts | {"train": parts["train"].sample(5000, random_state=0)}
    params = FAST | {"bagging_fraction": 0.7, "bagging_freq": 1, "feature_fraction": 0.7}
    a, _ = _fit(parts, features, params=params, num_boost_round=40)
    b, _ = _fit(parts, features, params=params, num_boost_round=40)
    c, _ = _fit(parts, features, params=params, num_boost_round=40, seed=2)
    assert a.booster.model_to_string() == b.booster.model_to_string()
    assert a.calibrator == b.calibrator
    assert a.booster.model_to_string() != c.booster.model_to_string()


def test_seeded_study_is_reproducible_and_resumable(frames, tmp_path):
    parts, features = frames
    specs = feature_specs(parts["train"], features)
    tr = parts["train"].sample(3000, random_state=0)
    args = (to_matrix(tr, specs), tr[LABEL].to_numpy(), to_matrix(parts["valid"], specs),
            parts["valid"][LABEL].to_numpy(), {"seed": 3, "num_threads": 2})
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    s1 = tune(*args, n_trials=3, seed=7, storage=storage, study_name="one", num_boost_round=40)
    s2 = tune(*args, n_trials=3, seed=7, storage=storage, study_name="two", num_boost_round=40)
    assert [t.params for t in s1.trials] == [t.params for t in s2.trials]
    resumed = tune(*args, n_trials=2, seed=7, storage=storage, study_name="one", num_boost_round=40)
    assert len(resumed.trials) == 5


instants = st.lists(st.integers(0, 200), min_size=3, max_size=25, unique=True)


@hsettings(max_examples=200, deadline=None)
@given(days=instants, horizon=st.integers(1, 30), n_valid=st.integers(1, 3), n_test=st.integers(1, 2))
def test_split_label_windows_never_overlap(days, horizon, n_valid, n_test):
    snaps = [utc("2024-01-01") + dt.timedelta(days=d) for d in days]
    h = dt.timedelta(days=horizon)
    try:
        s = time_split(snaps, horizon, valid_snapshots=n_valid, test_snapshots=n_test)
    except TrainingDataError:
        return
    assert s.train and s.valid and s.test
    assert max(s.train) + h <= min(s.valid)
    assert max(s.valid) + h <= min(s.test)
    assert sorted(s.train + s.valid + s.test + s.gap) == sorted(snaps)
    assert s.test == sorted(snaps)[-n_test:]


def test_a_single_snapshot_is_refused_with_counts():
    with pytest.raises(TrainingDataError, match=r"1 labelled snapshot\(s\) \(2024-03-01\).*at least 3"):
        time_split([utc("2024-03-01")], 14)


def test_too_few_churners_is_refused_with_counts(frames):
    parts, features = frames
    few = dict(parts)
    tr = parts["train"]
    few["train"] = pd.concat([tr[tr[LABEL] == 0], tr[tr[LABEL] == 1].head(7)])
    with pytest.raises(TrainingDataError, match=r"training part has 7 churned and [\d,]+ retained rows; at least 50"):
        _fit(few, features, min_class_count=50)


def test_missing_feature_at_scoring_is_a_schema_error(frames):
    parts, features = frames
    model, _ = _fit(parts, features, num_boost_round=20)
    with pytest.raises(SchemaMismatchError, match="lacks 1 feature.*days_since_last_activity"):
        model.predict_proba(parts["test"].drop(columns=["days_since_last_activity"]))


def test_unseen_category_is_reported_and_scored_as_missing():
    rng = np.random.default_rng(0)
    n = 2000
    df = pd.DataFrame({"x": rng.normal(size=n), "platform": rng.choice(["ios", "android"], n)})
    df[LABEL] = (df.x + (df.platform == "ios") + rng.normal(size=n) > 0.5).astype(int)
    model, _ = fit_churn_model(df[:1500], df[1500:], features=["x", "platform"], params=FAST, num_boost_round=30)
    assert model.features[1].categories == ("android", "ios")
    new = df[:3].assign(platform=["tv", "ios", "tv"])
    with pytest.warns(DataWarning, match="'platform' has 2 row\\(s\\) with levels never seen in training \\(e.g. 'tv'\\)"):
        p = model.predict_proba(new)
    as_missing = model.predict_proba(new.assign(platform=[None, "ios", None]))
    np.testing.assert_allclose(p, as_missing)


@pytest.mark.parametrize("kind", ["str", "object", "categorical", "mixed objects"])
def test_categorical_inputs_of_any_pandas_type_map_to_the_same_codes(kind):
    specs = [FeatureSpec("platform", "categorical", ("android", "ios", "1"))]
    values = ["ios", None, "android", "tv", "ios", "1"]
    column = {"str": pd.Series(values, dtype="str"), "object": pd.Series(values, dtype=object),
              "categorical": pd.Series(values, dtype="category"),
              "mixed objects": pd.Series(["ios", None, "android", "tv", "ios", 1], dtype=object)}[kind]
    with pytest.warns(DataWarning, match="1 row\\(s\\) with levels never seen in training \\(e.g. 'tv'\\)"):
        got = to_matrix(pd.DataFrame({"platform": column}), specs)["platform"]
    assert got.cat.codes.tolist() == [1, -1, 0, -1, 1, 2]
    assert list(got.cat.categories) == ["android", "ios", "1"]


def test_all_empty_columns_are_left_out_with_a_warning():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"x": rng.normal(size=600), "never": np.nan})
    df[LABEL] = (df.x > 0).astype(int)
    with pytest.warns(DataWarning, match="empty in every training row.*never"):
        model, _ = fit_churn_model(df[:400], df[400:], features=["x", "never"], params=FAST, num_boost_round=10)
    assert model.feature_names == ["x"]


def test_saved_model_is_text_and_json_and_loads_identically(frames, tmp_path):
    parts, features = frames
    model, _ = _fit(parts, features, num_boost_round=30)
    folder = model.save(tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == ["booster.txt", "churnml_model.json"]
    loaded = ChurnModel.load(folder)
    np.testing.assert_array_equal(loaded.predict_proba(parts["test"]), model.predict_proba(parts["test"]))


def test_churn_classifier_facade_learns(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(3000, 4))
    y = (X[:, 0] - X[:, 1] + rng.normal(size=3000) > 0).astype(int)
    clf = ChurnClassifier(n_estimators=60, learning_rate=0.1, random_state=0).fit(X[:2000], y[:2000])
    assert roc_auc(y[2000:], clf.predict_proba(X[2000:])[:, 1]) > 0.8
    assert set(clf.predict(X[:10])) <= {0, 1}


def test_train_config_defaults_name_the_registry_entries():
    assert TrainConfig(dataset="x").model_name == "churn-risk"
    assert TrainConfig(dataset="x", kind="uplift").experiment_name == "recall-uplift"
