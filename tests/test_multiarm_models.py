"""Multi-arm uplift learners: the right channel for each user on data whose answer is known, storage, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from churnml.exceptions import DataWarning, TrainingDataError
from churnml.models.churn import FeatureSpec
from churnml.models.uplift import (
    InteractionLogistic,
    MultiArmSLearner,
    MultiArmTLearner,
    PerArmUplift,
    XLearner,
    default_multiarm_candidates,
    select_multiarm_model,
)
from churnml.models.uplift_store import UpliftModel, uplift_column

TREES = {"n_estimators": 60, "num_leaves": 7, "min_child_samples": 60}


def _learners() -> dict:
    return {
        "t_lightgbm": MultiArmTLearner(base_params=TREES),
        "t_logistic": MultiArmTLearner(base="logistic"),
        "s_lightgbm": MultiArmSLearner(base_params=TREES),
        "x_per_arm": PerArmUplift(XLearner(base_params=TREES, effect_params=TREES)),
        "interaction_per_arm": PerArmUplift(InteractionLogistic(spline_knots=4)),
    }


def _channel_data(seed: int, n: int = 6000) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Channel 'email' brings back web users, 'sms' users with x > 0, 'push' hurts everyone a little.

    Returns features (a numeric and a categorical column), outcome, arm and the true uplift per channel
    (columns email, push, sms: the learners' sorted order).
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    web = rng.random(n) < 0.4
    X = pd.DataFrame({"x": x, "platform": np.where(web, "web", "app")})
    base = 0.25 + 0.05 * np.tanh(x)
    true = np.column_stack([0.25 * web, np.full(n, -0.05), 0.25 * (x > 0)])
    arm = rng.choice(np.array(["control", "email", "push", "sms"]), n)
    k = np.select([arm == "email", arm == "push", arm == "sms"], [0, 1, 2], -1)
    p = base + np.where(k >= 0, true[np.arange(n), np.maximum(k, 0)], 0.0)
    return X, (rng.random(n) < p).astype(int), arm, true


@pytest.mark.parametrize("name", list(_learners()))
def test_each_learner_finds_each_users_channel(name, seed):
    X, y, arm, true = _channel_data(seed)
    model = _learners()[name].fit(X, y, arm)
    assert model.channels_ == ["email", "push", "sms"]
    Xt, _, _, true_t = _channel_data(seed + 1, 2000)
    up = model.predict(Xt)
    assert up.shape == (2000, 3)
    # Users who gain from a channel (web users, x > 0) are sent to it; push is judged harmful on average.
    helped = true_t.max(axis=1) > 0
    chosen = up[helped].argmax(axis=1)
    agree = true_t[helped][np.arange(helped.sum()), chosen] == true_t[helped].max(axis=1)
    assert agree.mean() > 0.8, agree.mean()
    assert up[:, 1].mean() < 0 < up[:, 0][Xt.platform == "web"].mean() - up[:, 0][Xt.platform == "app"].mean()
    p0, p = model.predict_outcomes(Xt)
    assert p0.shape == (2000,) and p.shape == (2000, 3) and ((p >= 0) & (p <= 1)).all()


@pytest.mark.parametrize("name", list(_learners()))
def test_a_stored_multiarm_model_predicts_the_same_without_pickles(name, seed, tmp_path):
    X, y, arm, _ = _channel_data(seed, 3000)
    learner = _learners()[name].fit(X, y, arm)
    specs = [FeatureSpec("x", "numeric"), FeatureSpec("platform", "categorical", ("app", "web"))]
    model = UpliftModel(learner, specs)
    model.save(tmp_path / "m")
    assert not list((tmp_path / "m").glob("*.pkl"))
    back = UpliftModel.load(tmp_path / "m")
    assert back.channels == ["email", "push", "sms"]
    a, b = model.predict_frame(X.head(200)), back.predict_frame(X.head(200))
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, atol=1e-12)
    # The best channel, its uplift and every channel's uplift are in the frame.
    assert (a["uplift"] == a[[uplift_column(c) for c in model.channels]].max(axis=1)).all()
    assert set(a["best_channel"]) <= {"email", "push", "sms"}


def test_selection_keeps_the_default_unless_clearly_beaten(seed):
    X, y, arm, _ = _channel_data(seed, 4000)
    cands = {"t_logistic": MultiArmTLearner(base="logistic"), "t_lightgbm": MultiArmTLearner(base_params=TREES)}
    name, model, table = select_multiarm_model(X, y, arm, cands, cv=3, seed=seed, margin_se=1e9)
    assert name == "t_logistic" and table.loc["t_logistic", "chosen"] and model.channels_ == ["email", "push", "sms"]
    assert {"mean", "std", "gain_over_default", "gain_se", "fold_0", "fold_2"} <= set(table.columns)


def test_selection_prefers_a_learner_that_sees_the_channels_over_one_that_cannot(seed):
    """A model given only a feature of pure noise cannot rank users or choose channels."""
    X, y, arm, _ = _channel_data(seed, 6000)
    X2 = X.assign(noise=np.random.default_rng(seed + 99).normal(size=len(X)))

    class Blind(MultiArmTLearner):  # sees only the noise column
        def fit(self, X, y, arm):
            return super().fit(X[["noise"]], y, arm)

        def predict(self, X):
            return super().predict(X[["noise"]])

    name, _, table = select_multiarm_model(X2, y, arm, {"blind": Blind(base="logistic"), "sees": MultiArmTLearner(base="logistic")}, cv=4,
                                           seed=seed)
    assert name == "sees", table


def test_default_candidates_are_the_binary_families_over_arms():
    cands = default_multiarm_candidates(seed=3, n_jobs=2)
    assert list(cands) == ["interaction_logistic_splines", "s_lightgbm", "t_lightgbm", "x_lightgbm", "t_logistic"]
    assert all(c.get_params()["random_state"] == 3 for c in cands.values())


@pytest.mark.parametrize("arm_of,match", [
    (lambda a: np.where(a == "control", "sms", a), r"no control rows \(arm == 'control'\)"),
    (lambda a: np.full(a.size, "control"), "got only control rows"),
    (lambda a: np.where((a == "push") & (np.arange(a.size) > 40), "sms", a), "at least min_group=50 rows in each arm. Got push"),
])
def test_unusable_arms_are_refused_with_one_line(arm_of, match, seed):
    X, y, arm, _ = _channel_data(seed, 1200)
    with pytest.raises(TrainingDataError, match=match):
        MultiArmTLearner(base="logistic").fit(X, y, arm_of(arm))


def test_a_constant_outcome_in_one_arm_is_refused(seed):
    X, y, arm, _ = _channel_data(seed, 1200)
    with pytest.raises(TrainingDataError, match=r"constant \(0\) in all [\d,]+ push rows"):
        MultiArmTLearner(base="logistic").fit(X, np.where(arm == "push", 0, y), arm)


def test_a_channel_given_by_the_features_is_flagged_as_not_randomised(seed):
    X, y, arm, _ = _channel_data(seed, 3000)
    # SMS went to users with x > 0 only: its rows are not comparable with the control rows.
    arm = np.where((arm == "sms") & (X.x < 0), "control", arm)
    arm = np.where((arm == "control") & (X.x > 0.5), "sms", arm)
    with pytest.warns(DataWarning, match=r"sms against control"):
        MultiArmTLearner(base="logistic").fit(X, y, arm)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        MultiArmTLearner(base="logistic").fit(*_channel_data(seed, 3000)[:3])


def test_arm_calibration_shrinks_noise_and_keeps_a_true_ranking(seed):
    """Known truth: email's uplift is 0.2 for web users, push's is 0.05 for everyone.

    The 'predictions' give email twice the true spread (slope 1/2 recovers it) and push a spread that is
    pure noise (slope 0: push gets its mean uplift for everyone).
    """
    from churnml.models.uplift import arm_calibration

    rng = np.random.default_rng(seed)
    n = 60_000
    web = rng.random(n) < 0.5
    arm = rng.choice(np.array(["control", "email", "push"]), n)
    true = np.column_stack([0.2 * web, np.full(n, 0.05)])
    p0 = np.full(n, 0.3)
    k = np.select([arm == "email", arm == "push"], [0, 1], -1)
    y = (rng.random(n) < p0 + np.where(k >= 0, true[np.arange(n), np.maximum(k, 0)], 0.0)).astype(int)
    pred = np.column_stack([p0 + 0.4 * web, p0 + 0.05 + rng.normal(0, 0.1, n)])
    cal = arm_calibration(y, arm, p0, pred, ["email", "push"])
    centre, intercept, slope = cal.T
    assert abs(slope[0] - 0.5) < 0.1, slope
    assert slope[1] < 0.15, slope
    calibrated = intercept + slope * (pred - p0[:, None] - centre)
    # Web users' e-mail uplift back near 0.2, others near 0; push near its true 0.05 whatever the noise.
    assert abs(calibrated[web, 0].mean() - 0.2) < 0.03 and abs(calibrated[~web, 0].mean()) < 0.03
    assert np.abs(calibrated[:, 1] - 0.05).max() < 0.03


def test_selection_calibrates_the_choice_from_its_out_of_fold_predictions(seed, tmp_path):
    X, y, arm, true = _channel_data(seed, 6000)
    cands = {"t_lightgbm": MultiArmTLearner(base_params=TREES)}
    _, model, _ = select_multiarm_model(X, y, arm, cands, cv=3, seed=seed)
    cal = model.calibration_
    assert cal.shape == (3, 3)
    # email and sms have real heterogeneity (slope near 1); push hurts everyone alike, its spread is noise.
    assert 0.5 < cal[0, 2] < 1.6 and 0.5 < cal[2, 2] < 1.6 and cal[1, 2] < 0.5, cal
    raw = model._uplift(model._predict_inputs(X))
    up = model.predict(X)
    np.testing.assert_allclose(up[:, 1].std(), cal[1, 2] * raw[:, 1].std(), rtol=1e-6, atol=1e-9)
    p0, p = model.predict_outcomes(X)
    np.testing.assert_allclose(p - p0[:, None], up)
    # Calibrated push is closer to its true uplift (-0.05) than the raw model was, user by user.
    assert np.abs(up[:, 1] - true[:, 1]).mean() < np.abs(raw[:, 1] - true[:, 1]).mean()
    # The calibration is stored with the model and read back.
    specs = [FeatureSpec("x", "numeric"), FeatureSpec("platform", "categorical", ("app", "web"))]
    UpliftModel(model, specs).save(tmp_path / "m")
    back = UpliftModel.load(tmp_path / "m")
    pd.testing.assert_frame_equal(UpliftModel(model, specs).predict_frame(X.head(100)),
                                  back.predict_frame(X.head(100)), check_exact=False, rtol=1e-12, atol=1e-12)
    _, plain, _ = select_multiarm_model(X, y, arm, cands, cv=3, seed=seed, calibrate=False)
    assert getattr(plain, "calibration_", None) is None
