"""MLflow tracking, the registry and the champion/challenger gate, on a private local store."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from churnml import tracking
from churnml.config import TrainConfig
from churnml.exceptions import DataWarning, ModelNotFoundError
from churnml.features import LABEL
from churnml.models.churn import fit_churn_model
from churnml.train import gate, promote_job

FAST = {"learning_rate": 0.1, "num_leaves": 15, "min_child_samples": 50}


@pytest.fixture(scope="module")
def parts(small_sim):
    df = pd.read_parquet(small_sim["training_set"])
    doc = json.loads(small_sim["training_set"].with_suffix("").with_suffix(".schema.json").read_text())
    snaps = sorted(df["as_of"].unique())
    return df[df["as_of"] <= snaps[-5]], df[df["as_of"] == snaps[-3]], doc["feature_columns"]


def _register(parts, settings, *, shuffle=False, seed=1):
    train, valid, features = parts
    if shuffle:  # a model that learned nothing
        rng = np.random.default_rng(seed)
        train = train.assign(**{LABEL: rng.permutation(train[LABEL].to_numpy())})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        model, _ = fit_churn_model(train, valid, features=features, params=FAST, num_boost_round=40, seed=seed)
    with tracking.start_run("churn-risk", settings=settings):
        return tracking.log_model(model, registered_name="churn-risk", input_example=valid[features].head(3)), model


def test_gate_rule_respects_direction_and_margin():
    assert gate(0.80, 0.80, "roc_auc", 0.0)
    assert not gate(0.79, 0.80, "roc_auc", 0.0)
    assert gate(0.79, 0.80, "roc_auc", 0.02)
    assert gate(0.30, 0.31, "log_loss", 0.0)
    assert not gate(0.32, 0.31, "log_loss", 0.0)


def test_gate_accepts_better_refuses_worse_and_logs_each_decision(small_sim, parts, settings):
    import mlflow

    cfg = TrainConfig(dataset=small_sim["config"])
    first, _ = _register(parts, settings)
    res = promote_job(cfg, settings=settings)
    assert res.promoted and res.reason == "no champion yet"
    assert tracking.resolve("churn-risk", "champion", settings).version == first.version

    _worse, _ = _register(parts, settings, shuffle=True)
    res = promote_job(cfg, settings=settings)
    assert not res.promoted
    assert res.challenger_score < res.champion_score
    assert tracking.resolve("churn-risk", "champion", settings).version == first.version

    better, _ = _register(parts, settings, seed=2)
    res = promote_job(cfg, settings=settings, margin=0.01)
    assert res.promoted, res.reason
    assert tracking.resolve("churn-risk", "champion", settings).version == better.version

    runs = mlflow.search_runs(experiment_names=["churn-risk"], filter_string="tags.kind = 'promotion'")
    assert sorted(runs["tags.decision"]) == ["kept", "promoted", "promoted"]


def test_registered_model_loads_through_pyfunc_without_pickles(parts, settings, tmp_path):
    import mlflow

    ref, model = _register(parts, settings)
    _, valid, features = parts
    folder = tracking.download_model(ref, tmp_path / "copy")
    root = folder.parents[1]
    assert not [p for p in root.rglob("*") if p.suffix in (".pkl", ".pickle", ".joblib", ".cloudpickle")]
    loaded, got = tracking.load_model("churn-risk", "challenger", settings)
    assert got.version == ref.version
    expected = model.predict_proba(valid)
    np.testing.assert_array_equal(loaded.predict_proba(valid), expected)
    pyfunc = mlflow.pyfunc.load_model(ref.uri)
    np.testing.assert_array_equal(pyfunc.predict(valid[features]).to_numpy(), expected)


def test_missing_alias_names_the_model_and_what_to_do(settings):
    with pytest.raises(ModelNotFoundError, match="no model 'churn-risk' with alias 'champion'.*churnml train"):
        tracking.resolve("churn-risk", "champion", settings)


def test_a_missing_store_is_reported_not_created(settings, tmp_path):
    s = settings.model_copy(update={"mlruns_dir": str(tmp_path / "nowhere"), "mlflow_tracking_uri": None})
    with pytest.raises(ModelNotFoundError, match=r"there is no MLflow store at .*nowhere/mlflow.db"):
        tracking.resolve("churn-risk", "champion", s)
    assert not (tmp_path / "nowhere").exists()


# --------------------------------------------------------------------------- the gate on refit models

def _register_refit(frame: pd.DataFrame, features, settings, *, horizon=14, shuffle=False, seed=1):
    """A refit model as train_churn_job registers it (recipe and label cut-off in its metadata)."""
    from churnml.models.refit import Recipe, fit_recipe

    if shuffle:  # a recipe that learns nothing
        frame = frame.assign(**{LABEL: np.random.default_rng(seed).permutation(frame[LABEL].to_numpy())})
    recipe = Recipe(features=tuple(features), params=FAST, num_boost_round=40, early_stopping_rounds=10,
                    seed=seed, calibration="sigmoid")
    snaps = sorted(pd.to_datetime(frame["as_of"], utc=True).unique())
    meta = {"recipe": recipe.to_dict(), "horizon_days": horizon,
            "label_cutoff": (snaps[-1] + pd.Timedelta(days=horizon)).isoformat()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        model = fit_recipe(frame, recipe, horizon, metadata=meta).model
    with tracking.start_run("churn-risk", settings=settings):
        return tracking.log_model(model, registered_name="churn-risk", input_example=frame[features].head(3))


@pytest.fixture(scope="module")
def labelled(small_sim):
    df = pd.read_parquet(small_sim["training_set"])
    doc = json.loads(small_sim["training_set"].with_suffix("").with_suffix(".schema.json").read_text())
    return df, doc["feature_columns"]


def test_refit_models_are_judged_by_their_backtest_twins_never_on_rows_they_saw(small_sim, labelled, settings):
    df, features = labelled
    cfg = TrainConfig(dataset=small_sim["config"], training_set=small_sim["training_set"], backtest={"folds": 2})
    good = _register_refit(df, features, settings)
    assert promote_job(cfg, settings=settings).promoted
    # Both models were fit on every labelled snapshot: no snapshot is newer than their labels. The
    # challenger's recipe reads tenure alone.
    _register_refit(df, ["tenure_days"], settings)
    res = promote_job(cfg, settings=settings)
    assert res.holdout == "backtest twins at 2024-04-01, 2024-04-15"
    assert not res.promoted and res.challenger_score < res.champion_score - 0.1
    assert tracking.resolve("churn-risk", "champion", settings).version == good.version
    # The same recipe refit again ties its twin and is promoted (margin 0: not worse).
    again = _register_refit(df, features, settings)
    res = promote_job(cfg, settings=settings)
    assert res.promoted and res.challenger_score == res.champion_score
    assert tracking.resolve("churn-risk", "champion", settings).version == again.version


def test_models_trained_on_older_labels_are_compared_on_a_snapshot_newer_than_both(small_sim, labelled, settings):
    df, features = labelled
    cfg = TrainConfig(dataset=small_sim["config"], training_set=small_sim["training_set"])
    early = df[pd.to_datetime(df["as_of"], utc=True) <= pd.Timestamp("2024-03-25", tz="UTC")]
    _register_refit(early, features, settings)
    promote_job(cfg, settings=settings)
    _register_refit(early, features, settings, shuffle=True)
    res = promote_job(cfg, settings=settings)
    # Labels of 2024-03-25 close on 04-08; the latest labelled snapshot, 04-15, is newer than both models'.
    assert res.holdout == "snapshot 2024-04-15, newer than both models' training labels"
    assert not res.promoted and res.challenger_score < res.champion_score - 0.1
