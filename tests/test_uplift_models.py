"""Uplift learners: planted effects are found, inputs are checked, the sklearn contract holds.

The synthetic data plant a known effect: +0.25 on the probability of ``y`` for
rows with ``x0 > 0`` (persuadables), -0.2 for ``x0 < -1`` (sleeping dogs) and
none in between, on a base rate of about 0.3.
"""

from __future__ import annotations

import pickle
import warnings
from functools import lru_cache
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils._param_validation import InvalidParameterError

from churnml.exceptions import DataWarning, NotFittedError, SchemaMismatchError, TrainingDataError
from churnml.metrics import qini_auc_score
from churnml.models.uplift import (
    SEGMENTS,
    ClassTransformation,
    DRLearner,
    InteractionLogistic,
    SLearner,
    TLearner,
    XLearner,
    default_candidates,
    segments,
    select_uplift_model,
)

try:  # MLflow persists models with cloudpickle; test it where it is installed
    import cloudpickle
except ImportError:  # pragma: no cover
    cloudpickle = None

PICKLERS = {"pickle": (pickle.dumps, pickle.loads)}
if cloudpickle is not None:
    PICKLERS["cloudpickle"] = (cloudpickle.dumps, cloudpickle.loads)

HILLSTROM = Path(__file__).resolve().parents[2] / "shared" / "data" / "hillstrom.csv"

# Small trees keep the whole file fast; the planted effect is strong enough for them.
FAST = {"n_estimators": 60, "num_leaves": 7, "min_child_samples": 40}

LEARNERS = {
    "s_lightgbm": lambda seed: SLearner(base_params=FAST, random_state=seed),
    "t_lightgbm": lambda seed: TLearner(base_params=FAST, random_state=seed),
    "t_logistic": lambda seed: TLearner(base="logistic", random_state=seed),
    "x_lightgbm": lambda seed: XLearner(base_params=FAST, effect_params=FAST, random_state=seed),
    "dr_lightgbm": lambda seed: DRLearner(base_params=FAST, effect_params=FAST, random_state=seed),
    "ct_logistic": lambda seed: ClassTransformation(base="logistic", random_state=seed),
    "ct_lightgbm": lambda seed: ClassTransformation(
        base="lightgbm", base_params=FAST, random_state=seed
    ),
    "interaction": lambda seed: InteractionLogistic(interaction_scale=0.3, random_state=seed),
    "interaction_splines": lambda seed: InteractionLogistic(
        interaction_scale=0.3, spline_knots=4, random_state=seed
    ),
}
CLASSES = [SLearner, TLearner, XLearner, DRLearner, ClassTransformation, InteractionLogistic]


def planted_effect(x0: np.ndarray) -> np.ndarray:
    """The true uplift: +0.25 above 0, -0.2 below -1, none in between."""
    return np.where(x0 > 0, 0.25, np.where(x0 < -1, -0.2, 0.0))


def make_data(n: int, seed: int, *, share: float = 0.5):
    """Features, outcome, treatment and true uplift with the planted effect."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    t = (rng.random(n) < share).astype(int)
    tau = planted_effect(X[:, 0])
    p = np.clip(0.3 + 0.1 * np.tanh(X[:, 1]) + t * tau, 0, 1)
    y = (rng.random(n) < p).astype(int)
    return X, y, t, tau


def rank_corr(pred: np.ndarray, truth: np.ndarray) -> float:
    """Spearman correlation; a constant prediction carries no ranking, so it scores 0."""
    return 0.0 if np.ptp(pred) == 0 else float(spearmanr(pred, truth).statistic)


@lru_cache(maxsize=1)
def load_hillstrom() -> pd.DataFrame:
    """The Hillstrom CSV, read once per test run."""
    return pd.read_csv(HILLSTROM)


@pytest.fixture(scope="module")
def module_seed() -> int:
    """The seed of the module-scoped data and fits."""
    return 20240101


@pytest.fixture(scope="module")
def planted(module_seed):
    """Training and test data with the planted effect."""
    X, y, t, _ = make_data(4000, module_seed)
    Xte, _, _, tau_te = make_data(2000, module_seed + 1)
    return {"X": X, "y": y, "t": t, "Xte": Xte, "tau_te": tau_te}


@pytest.fixture(scope="module")
def fitted(planted, module_seed):
    """Every learner fitted once on the planted data."""
    return {
        name: make(module_seed).fit(planted["X"], planted["y"], planted["t"])
        for name, make in LEARNERS.items()
    }


@pytest.fixture(
    params=[
        (200, 3, "float64", "numpy"),
        (300, 5, "float32", "pandas"),
        (250, 2, "int64", "pandas"),
        (220, 3, "bool", "pandas"),
    ],
    ids=lambda p: "-".join(map(str, p)),
)
def shaped(request, seed):
    """Random data of several shapes, dtypes and containers (sklift's shape test)."""
    n, k, dtype, kind = request.param
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, k)) * 3
    X = X > 0 if dtype == "bool" else X.astype(dtype)
    if kind == "pandas":
        X = pd.DataFrame(X, columns=[f"f{i}" for i in range(k)])
    t = rng.integers(0, 2, n)
    y = (rng.random(n) < 0.3 + 0.2 * t).astype(int)
    return X, y, t


# --------------------------------------------------------------------------------------
# The planted effect is recovered
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(LEARNERS))
def test_uplift_ranks_like_the_true_effect_far_above_a_shuffled_control(
    name, planted, fitted, module_seed
):
    rho = rank_corr(fitted[name].predict(planted["Xte"]), planted["tau_te"])
    shuffled_t = np.random.default_rng(module_seed).permutation(planted["t"])
    control = LEARNERS[name](module_seed).fit(planted["X"], planted["y"], shuffled_t)
    rho_control = rank_corr(control.predict(planted["Xte"]), planted["tau_te"])
    assert rho > 0.5
    assert rho > rho_control + 0.35


@pytest.mark.parametrize("name", list(LEARNERS))
def test_sleeping_dogs_get_negative_uplift_and_their_segment(name, planted, fitted):
    model = fitted[name]
    dogs = planted["Xte"][:, 0] < -1.3
    persuadable = planted["Xte"][:, 0] > 0.3
    uplift = model.predict(planted["Xte"])
    seg = segments(*model.predict_outcomes(planted["Xte"]))
    assert np.median(uplift[dogs]) < 0
    assert np.mean(seg[dogs] == "sleeping_dog") > 0.6
    assert np.mean(seg[persuadable] == "persuadable") > 0.8


@pytest.mark.parametrize("name", list(LEARNERS))
def test_predict_outcomes_agree_with_predict(name, planted, fitted):
    model = fitted[name]
    p0, p1 = model.predict_outcomes(planted["Xte"])
    uplift = model.predict(planted["Xte"])
    assert ((p0 >= 0) & (p0 <= 1) & (p1 >= 0) & (p1 <= 1)).all()
    inside = (p0 + uplift > 0) & (p0 + uplift < 1)  # clipping aside, the difference is the uplift
    np.testing.assert_allclose((p1 - p0)[inside], uplift[inside], atol=1e-9)


def test_class_transformation_is_reweighted_for_an_unequal_treatment_share(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(6000, 2))
    t = (rng.random(6000) < 0.8).astype(int)
    y = (rng.random(6000) < 0.3 + 0.1 * t).astype(int)  # a constant effect of +0.1
    uplift = ClassTransformation(base="logistic").fit(X, y, t).predict(X)
    # Unweighted, 2 P(Z=1) - 1 would be 0.8 * 0.4 + 0.2 * 0.7 - ... = -0.08 here.
    assert abs(uplift.mean() - 0.1) < 0.03


def test_x_learner_weights_its_effect_models_by_the_propensity(planted, fitted):
    model = fitted["x_lightgbm"]
    Xte = planted["Xte"]
    e = model.propensity_
    expected = e * model.effect_control_.predict(Xte) + (1 - e) * model.effect_treated_.predict(Xte)
    np.testing.assert_allclose(model.predict(Xte), expected)
    assert model.propensity_ == pytest.approx(planted["t"].mean())


def test_propensity_parameter_overrides_the_training_share(planted):
    model = XLearner(base_params=FAST, effect_params=FAST, propensity=0.25)
    assert model.fit(planted["X"], planted["y"], planted["t"]).propensity_ == 0.25


def test_hillstrom_interaction_logistic_beats_random(seed):
    if not HILLSTROM.exists():
        pytest.skip(f"no {HILLSTROM}")
    raw = load_hillstrom()
    raw = raw[raw["segment"] != "Mens E-Mail"]
    X = pd.get_dummies(
        raw[["recency", "history", "mens", "womens", "newbie", "zip_code", "channel"]], dtype=float
    )
    t = (raw["segment"] == "Womens E-Mail").to_numpy(dtype=int)
    y = raw["visit"].to_numpy()
    Xtr, Xte, ytr, yte, ttr, tte = train_test_split(
        X, y, t, test_size=0.3, random_state=0, stratify=2 * t + y
    )
    uplift = InteractionLogistic(interaction_scale=0.1).fit(Xtr, ytr, ttr).predict(Xte)
    assert qini_auc_score(yte, uplift, tte) > 0.04  # random scores: 0.002 ± 0.011


# --------------------------------------------------------------------------------------
# Segments
# --------------------------------------------------------------------------------------


def test_segments_follow_the_documented_rule():
    p_control = [0.10, 0.80, 0.10, 0.60, 0.70, 0.20, 0.40]
    p_treated = [0.40, 0.90, 0.12, 0.20, 0.70, 0.18, 0.60]
    got = segments(p_control, p_treated, threshold=0.05)
    assert got.tolist() == [
        "persuadable",
        "sure_thing",
        "lost_cause",
        "sleeping_dog",
        "sure_thing",
        "lost_cause",
        "persuadable",
    ]
    assert set(got) <= set(SEGMENTS)


def test_segments_response_threshold_moves_the_line_between_sure_things_and_lost_causes():
    assert segments([0.2], [0.2], response_threshold=0.1).tolist() == ["sure_thing"]
    assert segments([0.2], [0.2], response_threshold=0.5).tolist() == ["lost_cause"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"p_treated": [0.1, 0.2]}, "same length. Got 1 and 2"),
        ({"threshold": -0.1}, "`threshold` parameter of segments must be >= 0"),
        ({"response_threshold": 1.0}, "`response_threshold` parameter of segments must be in"),
    ],
)
def test_segments_reject_bad_input(kwargs, match):
    args = {"p_control": [0.1], "p_treated": [0.2], **kwargs}
    with pytest.raises(ValueError, match=match):
        segments(args.pop("p_control"), args.pop("p_treated"), **args)


# --------------------------------------------------------------------------------------
# Shapes and input types
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(LEARNERS))
def test_shape_classification(name, shaped, seed):
    X, y, t = shaped
    model = LEARNERS[name](seed).fit(X, y, t)
    uplift = model.predict(X)
    p0, p1 = model.predict_outcomes(X)
    assert uplift.shape == p0.shape == p1.shape == (len(y),)
    assert np.isfinite(uplift).all()
    assert (np.abs(uplift) <= 1).all()
    assert model.n_features_in_ == X.shape[1]


@pytest.mark.parametrize(
    "name", ["s_lightgbm", "t_logistic", "interaction", "interaction_splines", "ct_lightgbm"]
)
def test_string_and_categorical_columns_are_used_without_touching_the_callers_frame(name, seed):
    rng = np.random.default_rng(seed)
    n = 3000
    plan = rng.choice(["free", "plus", "pro"], n)
    t = rng.integers(0, 2, n)
    y = (rng.random(n) < 0.3 + 0.3 * t * (plan == "pro")).astype(int)
    X = pd.DataFrame(
        {
            "plan": pd.Series(plan, dtype="str"),
            "age": rng.normal(40, 10, n),
            "region": pd.Categorical(rng.choice(["n", "s"], n)),
        }
    )
    before = X.copy()
    model = LEARNERS[name](seed).fit(X, y, t)
    pd.testing.assert_frame_equal(X, before)
    assert list(model.categories_) == ["plan", "region"]
    # Columns in another order and an unseen category still score; "pro" is the persuadable plan.
    new = pd.DataFrame(
        {"region": ["n", "s", "n", "s"], "age": [40.0] * 4, "plan": ["pro", "free", "plus", "gold"]}
    )
    uplift = model.predict(new)
    assert uplift[0] > max(uplift[1], uplift[2]) + 0.1


def test_lightgbm_sees_pandas_categoricals_natively(seed):
    X, y, t, _ = make_data(1000, seed)
    frame = pd.DataFrame(X, columns=list("abcd")).assign(
        plan=pd.Categorical(np.random.default_rng(seed).choice(["x", "y"], 1000))
    )
    model = SLearner(base_params=FAST).fit(frame, y, t)
    assert model.model_.booster_.pandas_categorical == [["x", "y"]]


def test_predict_checks_the_columns(planted, fitted, seed):
    frame = pd.DataFrame(planted["X"], columns=list("abcd"))
    model = SLearner(base_params=FAST).fit(frame, planted["y"], planted["t"])
    with pytest.raises(SchemaMismatchError, match=r"lacks the fitted columns \['d'\]"):
        model.predict(frame.drop(columns="d"))
    with pytest.raises(SchemaMismatchError, match="fitted on a DataFrame"):
        model.predict(planted["X"])
    with pytest.raises(SchemaMismatchError, match="fitted on 4 features; X has 3"):
        fitted["t_logistic"].predict(planted["X"][:, :3])


def test_works_as_the_last_step_of_a_pipeline_with_treatment_routed_by_step_name(planted):
    pipe = Pipeline([("prep", FunctionTransformer()), ("uplift", InteractionLogistic())])
    pipe.fit(planted["X"], planted["y"], uplift__treatment=planted["t"])
    direct = InteractionLogistic().fit(planted["X"], planted["y"], planted["t"])
    np.testing.assert_allclose(pipe.predict(planted["Xte"]), direct.predict(planted["Xte"]))


# --------------------------------------------------------------------------------------
# Input errors and warnings
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", CLASSES)
def test_no_control_group_is_an_error(cls, planted):
    with pytest.raises(TrainingDataError, match=r"no control rows \(treatment == 0\): all 4,000"):
        cls().fit(planted["X"], planted["y"], np.ones(4000, dtype=int))


@pytest.mark.parametrize("cls", CLASSES)
def test_tiny_control_group_names_both_counts(cls, planted):
    t = np.ones(4000, dtype=int)
    t[:20] = 0
    with pytest.raises(
        ValueError,
        match=r"at least min_group=50 rows in each group\. "
        r"Got 20 control rows and 3,980 treated rows",
    ):
        cls().fit(planted["X"], planted["y"], t)


@pytest.mark.parametrize("cls", CLASSES)
def test_non_binary_treatment_is_an_error(cls, planted):
    t = planted["t"].copy()
    t[:7] = 2
    with pytest.raises(
        ValueError,
        match=r"must be binary \(0/1\)\. Got 3 distinct values "
        r"\(.*\); 7 rows are neither 0 nor 1",
    ):
        cls().fit(planted["X"], planted["y"], t)


@pytest.mark.parametrize("cls", CLASSES)
def test_constant_outcome_in_an_arm_is_an_error(cls, planted):
    y = np.where(planted["t"] == 0, 0, planted["y"])
    n_control = int((planted["t"] == 0).sum())
    with pytest.raises(ValueError, match=rf"constant \(0\) in all {n_control:,} control rows"):
        cls().fit(planted["X"], y, planted["t"])


def test_rows_must_line_up(planted):
    with pytest.raises(ValueError, match="same number of rows. Got 4,000, 3,999 and 4,000"):
        SLearner().fit(planted["X"], planted["y"][:-1], planted["t"])


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (InteractionLogistic(C=-1), "The 'C' parameter of InteractionLogistic must be a float"),
        (TLearner(base="forest"), "The 'base' parameter of TLearner must be a str among"),
        (SLearner(min_group=0), "The 'min_group' parameter of SLearner must be an int"),
        (DRLearner(n_folds=1), "The 'n_folds' parameter of DRLearner must be an int"),
    ],
)
def test_bad_parameters_are_reported_in_fit_in_the_house_shape(model, match, planted):
    with pytest.raises(InvalidParameterError, match=match):
        model.fit(planted["X"], planted["y"], planted["t"])


def test_base_params_with_a_logistic_base_is_an_error(planted):
    with pytest.raises(ValueError, match="only applies to base='lightgbm'"):
        TLearner(base="logistic", base_params={"num_leaves": 3}).fit(
            planted["X"], planted["y"], planted["t"]
        )


def test_non_random_treatment_warns_with_the_auc(seed):
    X, _, _, _ = make_data(3000, seed)
    rng = np.random.default_rng(seed)
    t = (X[:, 2] + 0.5 * rng.normal(size=3000) > 0).astype(int)  # assignment follows a feature
    y = (rng.random(3000) < 0.3 + 0.1 * t).astype(int)
    with pytest.warns(DataWarning, match=r"Treatment looks non-random: .* ROC AUC 0\.9\d\d"):
        model = InteractionLogistic().fit(X, y, t)
    assert model.propensity_auc_ > 0.9


def test_randomised_treatment_does_not_warn_and_the_check_can_be_skipped(planted):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        model = TLearner(base="logistic").fit(planted["X"], planted["y"], planted["t"])
    assert 0.4 < model.propensity_auc_ < 0.6
    skipped = TLearner(base="logistic", max_propensity_auc=None)
    assert skipped.fit(planted["X"], planted["y"], planted["t"]).propensity_auc_ is None


@pytest.mark.parametrize("cls", CLASSES)
def test_predict_before_fit_raises_not_fitted(cls, planted):
    with pytest.raises(NotFittedError, match=f"This {cls.__name__} instance is not fitted yet"):
        cls().predict(planted["X"])
    with pytest.raises(NotFittedError, match="not fitted yet"):
        cls().predict_outcomes(planted["X"])


# --------------------------------------------------------------------------------------
# The sklearn contract and persistence
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(LEARNERS))
def test_clone_and_params_round_trip(name, seed):
    model = LEARNERS[name](seed)
    params = model.get_params()
    cloned = clone(model)
    assert cloned is not model
    assert cloned.get_params() == params
    again = type(model)().set_params(**params)
    assert again.get_params() == params
    assert "propensity_" not in vars(cloned)


def test_constructor_stores_and_fit_does_not_modify_params(planted):
    base = {"num_leaves": 5, "n_estimators": 30}
    model = SLearner(base_params=base, random_state=3)
    assert model.base_params is base
    model.fit(planted["X"], planted["y"], planted["t"])
    assert base == {"num_leaves": 5, "n_estimators": 30}
    assert model.model_.get_params()["num_leaves"] == 5
    assert model.model_.get_params()["random_state"] == 3
    assert model.model_.get_params()["deterministic"] is True


@pytest.mark.parametrize("name", list(LEARNERS))
def test_predict_only_reads(name, planted, fitted):
    model = fitted[name]
    before = dict(vars(model))
    model.predict(planted["Xte"])
    model.predict_outcomes(planted["Xte"])
    after = vars(model)
    assert after.keys() == before.keys()
    assert all(after[k] is before[k] for k in before)


@pytest.mark.parametrize("name", list(LEARNERS))
@pytest.mark.parametrize("pickler", list(PICKLERS))
def test_pickle_round_trip_predicts_identically(name, pickler, planted, fitted):
    dumps, loads = PICKLERS[pickler]
    restored = loads(dumps(fitted[name]))
    np.testing.assert_array_equal(
        restored.predict(planted["Xte"]), fitted[name].predict(planted["Xte"])
    )


def test_joblib_round_trip_predicts_identically(tmp_path, planted, fitted):
    path = tmp_path / "model.joblib"
    joblib.dump(fitted["dr_lightgbm"], path)
    np.testing.assert_array_equal(
        joblib.load(path).predict(planted["Xte"]), fitted["dr_lightgbm"].predict(planted["Xte"])
    )


def test_fits_are_deterministic_given_the_seed(planted):
    a = LEARNERS["dr_lightgbm"](1).fit(planted["X"], planted["y"], planted["t"])
    b = LEARNERS["dr_lightgbm"](1).fit(planted["X"], planted["y"], planted["t"])
    c = LEARNERS["dr_lightgbm"](2).fit(planted["X"], planted["y"], planted["t"])
    np.testing.assert_array_equal(a.predict(planted["Xte"]), b.predict(planted["Xte"]))
    assert not np.array_equal(a.predict(planted["Xte"]), c.predict(planted["Xte"]))


# --------------------------------------------------------------------------------------
# Model selection
# --------------------------------------------------------------------------------------

_SEEN: dict[str, list[np.ndarray]] = {}


class _Spy(BaseEstimator):
    """Records the row ids (column 0) it is fitted on and asked about; predicts noise or a feature."""

    def __init__(self, tag="spy", column=None):
        self.tag = tag
        self.column = column

    def fit(self, X, y, treatment):
        _SEEN.setdefault(self.tag, []).append(np.asarray(X)[:, 0].copy())
        self.fitted_ = True
        return self

    def predict(self, X):
        X = np.asarray(X)
        _SEEN.setdefault(self.tag, []).append(X[:, 0].copy())
        if self.column is None:
            return np.random.default_rng(int(X[:, 0].sum()) % 2**32).random(len(X))
        return X[:, self.column]


def test_selection_only_uses_the_rows_passed_and_refits_on_all_of_them(seed):
    X, y, t, _ = make_data(3000, seed)
    ids = np.arange(3000, dtype=float)
    Xid = np.column_stack([ids, X])
    train, test = train_test_split(np.arange(3000), test_size=0.3, random_state=seed)
    _SEEN.clear()
    _, model, _ = select_uplift_model(
        Xid[train], y[train], t[train], {"a": _Spy(tag="a")}, cv=4, seed=seed
    )
    seen = np.concatenate(_SEEN["a"])
    assert set(seen) <= set(train)
    assert not set(seen) & set(test)
    # 4 x (fit on 3 folds, predict the 4th), then the refit on every row passed.
    calls = _SEEN["a"]
    assert len(calls) == 9
    for fit_rows, held_rows in zip(calls[0:8:2], calls[1:8:2], strict=True):
        assert not set(fit_rows) & set(held_rows)
        assert set(fit_rows) | set(held_rows) == set(train)
    assert sorted(calls[-1]) == sorted(train)
    assert model.fitted_


def test_selection_picks_the_informative_candidate_and_reports_mean_and_std(seed):
    X, y, t, _ = make_data(3000, seed)
    # Feature 1 (x0 after the id column) ranks like the planted effect; the spy "noise" does not.
    Xid = np.column_stack([np.arange(3000.0), X])
    cands = {
        "noise": _Spy(tag="noise"),
        "x0": _Spy(tag="x0", column=1),
        "interaction": InteractionLogistic(),
    }
    best, model, table = select_uplift_model(Xid, y, t, cands, cv=3, seed=seed)
    assert best in {"x0", "interaction"}
    assert table.index[-1] == "noise"
    assert list(table.columns[:2]) == ["mean", "std"]
    assert table.loc["noise", "mean"] < 0.1 < table.loc[best, "mean"]
    assert (table["std"] > 0).all()
    assert model is not cands[best]
    assert not hasattr(cands[best], "fitted_") and not hasattr(cands["interaction"], "model_")


def test_selection_keeps_the_default_unless_another_candidate_beats_it_clearly(seed):
    X, y, t, _ = make_data(3000, seed)
    Xid = np.column_stack([np.arange(3000.0), X])
    cands = {"noise": _Spy(tag="noise"), "x0": _Spy(tag="x0", column=1)}
    # The planted effect beats random scores by many standard errors: the default goes.
    chosen, model, table = select_uplift_model(Xid, y, t, cands, cv=3, seed=seed)
    assert chosen == "x0" and model.column == 1
    assert table["chosen"].tolist() == [True, False]
    assert table["default"].tolist() == [False, True]
    assert table.loc["noise", "gain_over_default"] == 0.0
    folds = ["fold_0", "fold_1", "fold_2"]
    diffs = table.loc["x0", folds].to_numpy(float) - table.loc["noise", folds].to_numpy(float)
    assert table.loc["x0", "gain_over_default"] == pytest.approx(diffs.mean())
    assert table.loc["x0", "gain_se"] == pytest.approx(diffs.std(ddof=1) / np.sqrt(3))
    # Asked for a margin no fold noise could reach, the default stays, whatever the scores.
    kept, model, table = select_uplift_model(Xid, y, t, cands, cv=3, seed=seed, margin_se=1e9)
    assert kept == "noise" and model.column is None and table.loc["noise", "chosen"]
    # Named explicitly, the better candidate is the default and beats nothing.
    chosen, _, _ = select_uplift_model(Xid, y, t, cands, cv=3, seed=seed, default="x0")
    assert chosen == "x0"


def test_selection_is_deterministic_per_seed(planted):
    cands = {
        "t": TLearner(base="logistic"),
        "i": InteractionLogistic(),
        "ct": ClassTransformation(),
    }
    args = (planted["X"], planted["y"], planted["t"], cands)
    best1, m1, tab1 = select_uplift_model(*args, cv=3, seed=1)
    best2, m2, tab2 = select_uplift_model(*args, cv=3, seed=1)
    _, _, tab3 = select_uplift_model(*args, cv=3, seed=2)
    assert best1 == best2
    pd.testing.assert_frame_equal(tab1.drop(columns="cv_seconds"), tab2.drop(columns="cv_seconds"))
    np.testing.assert_array_equal(m1.predict(planted["Xte"]), m2.predict(planted["Xte"]))
    assert not np.allclose(tab1.sort_index()["fold_0"], tab3.sort_index()["fold_0"])


def test_selection_warns_once_for_non_random_treatment(seed):
    X, _, _, _ = make_data(2000, seed)
    rng = np.random.default_rng(seed)
    t = (X[:, 2] + 0.5 * rng.normal(size=2000) > 0).astype(int)
    y = (rng.random(2000) < 0.3 + 0.1 * t).astype(int)
    with pytest.warns(DataWarning, match="non-random") as record:
        select_uplift_model(
            X, y, t, {"t": TLearner(base="logistic"), "i": InteractionLogistic()}, cv=3
        )
    assert sum(issubclass(w.category, DataWarning) for w in record) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"candidates": {}}, "non-empty dict"),
        ({"cv": 1}, "`cv` parameter of select_uplift_model"),
        ({"default": "x"}, "`default` parameter of select_uplift_model must be one of"),
        ({"margin_se": -1}, "`margin_se` parameter of select_uplift_model"),
    ],
)
def test_selection_rejects_bad_arguments(kwargs, match, planted):
    args = {"candidates": {"t": TLearner()}, **kwargs}
    with pytest.raises(ValueError, match=match):
        select_uplift_model(planted["X"], planted["y"], planted["t"], **args)


def test_default_candidates_are_unfitted_and_seeded():
    cands = default_candidates(seed=7, n_jobs=2)
    assert {
        "s_lightgbm",
        "t_lightgbm",
        "x_lightgbm",
        "dr_lightgbm",
        "t_logistic",
        "class_transformation_logistic",
        "interaction_logistic",
    } <= set(cands)
    for model in cands.values():
        assert model.get_params()["random_state"] == 7
        assert model.get_params()["n_jobs"] == 2
        assert not hasattr(model, "propensity_")
    assert default_candidates(seed=7, n_jobs=2).keys() == cands.keys()


def test_linear_features_impute_encode_and_standardise_without_touching_the_input():
    from churnml.models.uplift import _LinearFeatures

    X = pd.DataFrame(
        {
            "a": [1.0, np.nan, 3.0, 5.0],  # median of the present values is 3
            "const": [7.0, 7.0, 7.0, 7.0],
            "c": pd.Categorical(["x", "y", None, "x"], categories=["x", "y"]),
        }
    )
    before = X.copy()
    features = _LinearFeatures({"c": pd.Index(["x", "y"])})
    z = features.fit_transform(X)
    pd.testing.assert_frame_equal(X, before)
    # Columns: a (imputed), const, c == x, c == y; worked out by hand before standardising.
    raw = np.array([[1, 7, 1, 0], [3, 7, 0, 1], [3, 7, 0, 0], [5, 7, 1, 0]], dtype=float)
    expected = (raw - raw.mean(axis=0)) / np.where(raw.std(axis=0) > 0, raw.std(axis=0), 1.0)
    np.testing.assert_allclose(z, expected)
    np.testing.assert_array_equal(z[:, 1], 0.0)  # a constant column is centred, not divided by 0
    np.testing.assert_allclose(features.transform(X), z)
    arr = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 9.0]])
    kept = arr.copy()
    _LinearFeatures().fit(arr).transform(arr)
    np.testing.assert_array_equal(arr, kept)


def test_interaction_logistic_outcomes_are_its_regressions_probabilities_at_both_arms(planted):
    model = InteractionLogistic(interaction_scale=0.3, spline_knots=4)
    model.fit(planted["X"], planted["y"], planted["t"])
    z = model.features_.transform(planted["Xte"])
    n = len(z)
    p0, p1 = model.predict_outcomes(planted["Xte"])
    np.testing.assert_allclose(p0, model.model_.predict_proba(model._design(z, np.zeros(n)))[:, 1])
    np.testing.assert_allclose(p1, model.model_.predict_proba(model._design(z, np.ones(n)))[:, 1])


def test_linear_features_fitted_by_the_earlier_scaler_still_transform():
    # Models saved before the features standardised themselves hold a fitted StandardScaler.
    from sklearn.preprocessing import StandardScaler

    from churnml.models.uplift import _LinearFeatures

    X = np.random.default_rng(3).normal(size=(50, 3))
    features = _LinearFeatures().fit(X)
    expected = features.transform(X)
    features.scaler_ = StandardScaler().fit(X)
    del features.mean_, features.scale_, features.lower_, features.upper_
    np.testing.assert_allclose(features.transform(X), expected, atol=1e-12)


@pytest.mark.parametrize("learner", [InteractionLogistic(), TLearner(base="logistic")])
def test_infinite_inputs_are_refused_naming_the_column(learner, planted):
    X = pd.DataFrame(planted["X"]).add_prefix("x")
    bad = X.copy()
    bad.loc[3, "x1"] = np.inf
    with pytest.raises(ValueError, match=r"infinity in column\(s\) x1;"):
        clone(learner).fit(bad, planted["y"], planted["t"])
    fitted = clone(learner).fit(X, planted["y"], planted["t"])
    with pytest.raises(ValueError, match=r"infinity in column\(s\) x1;"):
        fitted.predict(bad)


class _Const(BaseEstimator):
    """Predicts its constant first, so a scoring function can tell the candidates apart.

    The other rows get a tiny ramp: a prediction that is exactly constant ranks
    nobody, and selection never chooses it (tested below with ``flat=True``).
    """

    def __init__(self, value=0.0, flat=False):
        self.value = value
        self.flat = flat

    def fit(self, X, y, treatment):
        return self

    def predict(self, X):
        ramp = 0.0 if self.flat else np.arange(len(X)) * 1e-12
        return np.full(len(X), float(self.value)) + ramp


def _designed_scores(table: dict[float, list[float]]):
    """A scoring function returning hand-set fold scores per candidate (keyed by its constant)."""
    calls: dict[float, int] = {}

    def score(y, uplift, t):
        key = float(uplift[0])
        i = calls.get(key, 0)
        calls[key] = i + 1
        return table[key][i]

    return score


def test_a_challenger_ahead_by_less_than_a_standard_error_does_not_replace_the_default(planted):
    args = (planted["X"], planted["y"], planted["t"])
    cands = {"default": _Const(1.0), "challenger": _Const(2.0)}
    # Fold differences +0.03, -0.02, +0.02: mean +0.01, standard error 0.0153.
    folds = {1.0: [0.10, 0.10, 0.10], 2.0: [0.13, 0.08, 0.12]}
    chosen, _, table = select_uplift_model(*args, cands, cv=3, scoring=_designed_scores(folds))
    assert chosen == "default"
    assert table.loc["challenger", "gain_over_default"] == pytest.approx(0.01)
    assert table.loc["challenger", "gain_se"] == pytest.approx(np.std([0.03, -0.02, 0.02], ddof=1) / np.sqrt(3))
    chosen, _, _ = select_uplift_model(*args, cands, cv=3, scoring=_designed_scores(folds), margin_se=0)
    assert chosen == "challenger"
    # Fold differences +0.02, +0.02, +0.01: five standard errors ahead.
    folds = {1.0: [0.10, 0.10, 0.10], 2.0: [0.12, 0.12, 0.11]}
    chosen, _, _ = select_uplift_model(*args, cands, cv=3, scoring=_designed_scores(folds))
    assert chosen == "challenger"


def test_undefined_fold_scores_are_left_out_with_a_warning(planted):
    args = (planted["X"], planted["y"], planted["t"])
    cands = {"default": _Const(1.0), "challenger": _Const(2.0)}
    folds = {1.0: [np.nan, 0.10, 0.10, 0.10], 2.0: [0.50, 0.12, 0.12, 0.11]}
    with pytest.warns(DataWarning, match=r"'default' is undefined on 1 of 4 folds"):
        chosen, _, table = select_uplift_model(*args, cands, cv=4, scoring=_designed_scores(folds))
    assert chosen == "challenger"  # compared on the three folds both have: five SE ahead
    assert table.loc["default", "mean"] == pytest.approx(0.10)
    assert table.loc["challenger", "gain_over_default"] == pytest.approx(np.mean([0.02, 0.02, 0.01]))
    assert table.loc["challenger", "gain_se"] == pytest.approx(np.std([0.02, 0.02, 0.01], ddof=1) / np.sqrt(3))


def test_linear_features_clip_scoring_values_to_the_training_range():
    from churnml.models.uplift import _LinearFeatures

    # A count that is almost always 0 in training, and far larger when scored.
    train = pd.DataFrame({"posts": [0.0] * 98 + [1.0, 2.0], "const": 21.0})
    features = _LinearFeatures().fit(train)
    scored = features.transform(pd.DataFrame({"posts": [500.0, -3.0, 1.0], "const": [63.0, 0.0, 21.0]}))
    at_bounds = features.transform(pd.DataFrame({"posts": [2.0, 0.0, 1.0], "const": 21.0}))
    np.testing.assert_allclose(scored, at_bounds)
    np.testing.assert_array_equal(scored[:, 1], 0.0)  # constant in training: no signal when scored


def test_interaction_logistic_does_not_extrapolate_beyond_its_training_rows(planted):
    X = pd.DataFrame(planted["X"]).add_prefix("x")
    rng = np.random.default_rng(0)
    X["rare"] = (rng.random(len(X)) < 0.01).astype(float)  # almost always 0
    model = InteractionLogistic(interaction_scale=1.0, C=100.0).fit(X, planted["y"], planted["t"])
    far = X.head(50).assign(rare=1_000.0)
    np.testing.assert_allclose(model.predict(far), model.predict(X.head(50).assign(rare=1.0)))


def test_selection_takes_the_best_of_the_candidates_that_beat_the_default(planted):
    args = (planted["X"], planted["y"], planted["t"])
    cands = {"default": _Const(1.0), "noisy": _Const(2.0), "steady": _Const(3.0)}
    folds = {
        1.0: [0.10, 0.10, 0.10],
        2.0: [0.20, 0.05, 0.14],  # highest mean (0.13), but within noise of the default
        3.0: [0.12, 0.12, 0.11],  # lower mean (0.117), ahead on every fold: five standard errors
    }
    chosen, _, table = select_uplift_model(*args, cands, cv=3, scoring=_designed_scores(folds))
    assert table.index[0] == "noisy"
    assert chosen == "steady"


def test_a_candidate_that_ranks_nobody_is_never_chosen(planted):
    # A learner that predicts one value for every row (e.g. trees whose leaves need more rows
    # than a small campaign has) scores 0 or less on Qini-like metrics only by luck of ties;
    # here it is given the best fold scores and must still not be chosen.
    args = (planted["X"], planted["y"], planted["t"])
    cands = {"default": _Const(1.0), "flat": _Const(2.0, flat=True), "other": _Const(3.0)}
    folds = {1.0: [0.10, 0.10, 0.10], 2.0: [0.50, 0.50, 0.50], 3.0: [0.30, 0.31, 0.29]}
    with pytest.warns(DataWarning, match="'flat' predicted one uplift for every held-out row on all 3 folds"):
        chosen, _, table = select_uplift_model(*args, cands, cv=3, scoring=_designed_scores(folds))
    assert chosen == "other"
    assert table["constant"].to_dict() == {"flat": True, "other": False, "default": False}
    # A flat default is replaced by the best candidate that ranks, even without a clear gain.
    cands = {"default": _Const(2.0, flat=True), "weak": _Const(1.0), "other": _Const(3.0)}
    folds = {2.0: [0.50, 0.50, 0.50], 1.0: [0.10, 0.12, 0.11], 3.0: [0.09, 0.10, 0.12]}
    with pytest.warns(DataWarning):
        chosen, _, _ = select_uplift_model(*args, cands, cv=3, scoring=_designed_scores(folds))
    assert chosen == "weak"


def test_selection_reports_progress(planted):
    args = (planted["X"], planted["y"], planted["t"])
    seen = []
    folds = {1.0: [0.1, 0.2, 0.3], 3.0: [0.3, 0.3, 0.3]}
    select_uplift_model(*args, {"a": _Const(1.0), "b": _Const(3.0)}, cv=3, scoring=_designed_scores(folds),
                        progress=lambda name, score, sec: seen.append((name, round(score, 6), sec >= 0)))
    assert seen == [("a", 0.2, True), ("b", 0.3, True)]
