"""The churn-risk model: a LightGBM booster, a calibrator and the feature schema it was fit on.

Functions do the work (:func:`fit_booster`, :func:`tune`, :func:`fit_churn_model`);
:class:`ChurnModel` holds the result and :class:`ChurnClassifier` is the thin
scikit-learn facade for notebooks.

Persistence is deliberately pickle-free: :meth:`ChurnModel.save` writes the
booster in LightGBM's own text format and everything else (feature schema,
calibration, metadata) as JSON, so loading a registered model never runs code
from the artifact store.
"""

from __future__ import annotations

import typing
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import validate_data

from churnml.exceptions import DataWarning, SchemaMismatchError, TrainingDataError
from churnml.models.store import read_manifest, write_manifest

__all__ = [
    "Calibrator",
    "ChurnClassifier",
    "ChurnModel",
    "FeatureSpec",
    "check_class_counts",
    "choose_calibrator",
    "feature_specs",
    "fit_booster",
    "fit_churn_model",
    "lightgbm_input",
    "search_space",
    "to_matrix",
    "tune",
]

FORMAT_VERSION = 1
BOOSTER_FILE = "booster.txt"

BASE_PARAMS = {
    "objective": "binary",
    "metric": "binary_logloss",
    "verbosity": -1,
    "deterministic": True,
    "force_row_wise": True,
    "feature_pre_filter": False,
}


# --------------------------------------------------------------------------- the input schema

@dataclass(frozen=True)
class FeatureSpec:
    """One model input: its name, kind and (for categoricals) the levels seen in training."""

    name: str
    kind: Literal["numeric", "categorical"]
    categories: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "categories": list(self.categories)}

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        return cls(d["name"], d["kind"], tuple(d.get("categories") or ()))


def _is_categorical(s: pd.Series) -> bool:
    return isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(s.dtype) \
        or s.dtype == object


def feature_specs(df: pd.DataFrame, columns: Sequence[str]) -> list[FeatureSpec]:
    """Describe ``columns`` of a training frame as model inputs.

    Text and categorical columns become categorical inputs with their observed
    levels (sorted); everything else is numeric. Columns that are empty in every
    row are left out with a :class:`~churnml.exceptions.DataWarning` naming
    them: they carry no signal and LightGBM would ignore them anyway.

    Raises
    ------
    SchemaMismatchError
        If a column is missing from ``df``.
    """
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SchemaMismatchError(f"training data lacks feature column(s): {', '.join(missing)}")
    specs, empty = [], []
    for c in columns:
        s = df[c]
        if s.isna().all():
            empty.append(c)
            continue
        if _is_categorical(s):
            levels = sorted(str(v) for v in pd.unique(s.dropna()))
            specs.append(FeatureSpec(c, "categorical", tuple(levels)))
        else:
            specs.append(FeatureSpec(c, "numeric"))
    if empty:
        warnings.warn(
            f"{len(empty)} feature column(s) are empty in every training row and are left out of the "
            f"model: {', '.join(empty)}", DataWarning, stacklevel=2,
        )
    if not specs:
        raise TrainingDataError("no usable feature columns: every column is empty")
    return specs


def _as_text(v: pd.Series) -> np.ndarray:
    """A categorical feature's values as an object array of str (missing as None), as training saw them."""
    values = v.to_numpy(dtype=object, na_value=None)
    if pd.api.types.is_string_dtype(v.dtype) and not isinstance(v.dtype, pd.CategoricalDtype) and (
            v.dtype != object or all(isinstance(x, str) or x is None for x in values)):
        return values
    # Numbers, booleans or mixed objects: their text, as pandas' string conversion writes it.
    return v.astype("string").to_numpy(dtype=object, na_value=None)


def to_matrix(df: pd.DataFrame, specs: Sequence[FeatureSpec], *, where: str = "scoring data") -> pd.DataFrame:
    """The model's input matrix from a feature frame, checked against the training schema.

    Numeric columns become float64; categorical columns become pandas
    categoricals with exactly the training levels, so LightGBM maps codes the
    same way as in training. A level never seen in training is scored as
    missing and reported with a :class:`~churnml.exceptions.DataWarning`
    (column, rows, an example); it is never silently mapped to another level.

    Raises
    ------
    SchemaMismatchError
        If a feature is missing, or a numeric feature holds text.
    """
    missing = [s.name for s in specs if s.name not in df.columns]
    if missing:
        raise SchemaMismatchError(
            f"{where} lacks {len(missing)} feature(s) the model was trained on: {', '.join(missing[:10])}"
            + (" ..." if len(missing) > 10 else "")
        )
    cols = {}
    numeric = [s.name for s in specs if s.kind == "numeric"]
    if numeric and all(pd.api.types.is_numeric_dtype(t) or pd.api.types.is_bool_dtype(t)
                       for t in df[numeric].dtypes):
        # The common case in one step: per-column conversion costs ~10 ms a call, which an API feels.
        block = df[numeric].to_numpy(dtype="float64", na_value=np.nan)
        cols = {name: block[:, i] for i, name in enumerate(numeric)}
    for s in specs:
        if s.name in cols:
            continue
        v = df[s.name]
        if s.kind == "numeric":
            if _is_categorical(v) and not v.isna().all():
                raise SchemaMismatchError(
                    f"{where}: feature '{s.name}' holds text ({v.dropna().iloc[0]!r}) but the model "
                    "was trained on numbers")
            cols[s.name] = pd.to_numeric(v, errors="coerce").astype("float64").to_numpy()
        else:
            text = _as_text(v)
            missing = pd.isna(text)
            # Hash lookup of each value among the training levels (-1: missing or never seen).
            codes = pd.Index(list(s.categories), dtype=object).get_indexer(text)
            codes[missing] = -1
            unseen = ~missing & (codes < 0)
            cat = pd.Categorical.from_codes(codes, categories=list(s.categories))
            if unseen.any():
                example = text[unseen][0]
                warnings.warn(
                    f"{where}: feature '{s.name}' has {int(unseen.sum()):,} row(s) with levels never seen "
                    f"in training (e.g. {example!r}); they are scored as missing", DataWarning,
                    stacklevel=2,
                )
            cols[s.name] = cat
    return pd.DataFrame({s.name: cols[s.name] for s in specs}, index=df.index)


def lightgbm_input(booster: lgb.Booster, chunk: pd.DataFrame) -> np.ndarray:
    """The float64 matrix LightGBM itself builds from a frame: categoricals as training codes, -1 as NaN.

    Columns are taken by position, as LightGBM does. Predicting on this array
    gives what predicting on the frame gives, without LightGBM's per-call
    frame conversion (about 1 ms a call, which an API answering single users feels).
    """
    dtypes = list(chunk.dtypes)
    categorical = [i for i, t in enumerate(dtypes) if isinstance(t, pd.CategoricalDtype)]
    if not categorical:
        return chunk.to_numpy(dtype=np.float64, na_value=np.nan)
    out = np.empty(chunk.shape, dtype=np.float64)
    numeric = [i for i, t in enumerate(dtypes) if not isinstance(t, pd.CategoricalDtype)]
    if numeric:
        out[:, numeric] = chunk.iloc[:, numeric].to_numpy(dtype=np.float64, na_value=np.nan)
    levels = booster.pandas_categorical or []
    for k, i in enumerate(categorical):
        s = chunk.iloc[:, i]
        if k < len(levels) and list(s.cat.categories) != list(levels[k]):
            s = s.cat.set_categories(levels[k])
        code = s.cat.codes.to_numpy().astype(np.float64)
        code[code < 0] = np.nan
        out[:, i] = code
    return out


# --------------------------------------------------------------------------- calibration

@dataclass(frozen=True)
class Calibrator:
    """Maps the booster's raw score (log-odds) to a calibrated probability.

    ``kind="sigmoid"`` is Platt scaling, ``p = 1 / (1 + exp(-(a * raw + b)))``;
    ``kind="isotonic"`` is a monotone step function stored as its knots and
    applied by linear interpolation; ``kind="none"`` is the booster's own
    sigmoid. All three are plain numbers, stored as JSON.
    """

    kind: Literal["sigmoid", "isotonic", "none"] = "none"
    a: float = 1.0
    b: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    @classmethod
    def fit(cls, raw: np.ndarray, y: np.ndarray, kind: str) -> Calibrator:
        """Fit a calibrator of ``kind`` on raw scores and 0/1 outcomes."""
        raw = np.asarray(raw, dtype="float64")
        y = np.asarray(y, dtype="float64")
        if kind == "sigmoid":
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=1e6, max_iter=1000).fit(raw.reshape(-1, 1), y)
            return cls("sigmoid", a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))
        if kind == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
            return cls("isotonic", x=tuple(map(float, iso.X_thresholds_)),
                       y=tuple(map(float, iso.y_thresholds_)))
        if kind == "none":
            return cls("none")
        raise ValueError(f"The `kind` parameter of `Calibrator.fit` must be one of 'sigmoid', 'isotonic', "
                         f"'none'. Got {kind!r} instead.")

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for raw scores."""
        raw = np.asarray(raw, dtype="float64")
        if self.kind == "isotonic":
            return np.interp(raw, np.asarray(self.x), np.asarray(self.y))
        a, b = (self.a, self.b) if self.kind == "sigmoid" else (1.0, 0.0)
        return 1.0 / (1.0 + np.exp(-(a * raw + b)))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "a": self.a, "b": self.b, "x": list(self.x), "y": list(self.y)}

    @classmethod
    def from_dict(cls, d: dict) -> Calibrator:
        return cls(d["kind"], d.get("a", 1.0), d.get("b", 0.0), tuple(d.get("x", ())), tuple(d.get("y", ())))


def choose_calibrator(raw: np.ndarray, y: np.ndarray, kind: str = "auto", *, seed: int = 0) -> tuple[Calibrator, dict]:
    """Fit the calibrator; with ``kind="auto"`` pick isotonic or sigmoid by 2-fold cross-validated Brier score.

    Isotonic regression needs more data than Platt scaling to beat it; the
    cross-validation on the calibration set decides rather than a rule of
    thumb. Returns the calibrator fit on all rows and the cross-validated
    scores (empty unless ``kind="auto"``).
    """
    if kind != "auto":
        return Calibrator.fit(raw, y, kind), {}
    from sklearn.model_selection import StratifiedKFold

    raw, y = np.asarray(raw, dtype="float64"), np.asarray(y)
    scores = {}
    for k in ("sigmoid", "isotonic"):
        err = 0.0
        for a, b in StratifiedKFold(2, shuffle=True, random_state=seed).split(raw, y):
            p = Calibrator.fit(raw[a], y[a], k).apply(raw[b])
            err += float(np.sum((p - y[b]) ** 2))
        scores[k] = err / len(y)
    best = min(scores, key=scores.get)
    return Calibrator.fit(raw, y, best), {f"calibration_cv_brier_{k}": v for k, v in scores.items()}


# --------------------------------------------------------------------------- the model

@dataclass
class ChurnModel:
    """A fitted churn-risk model: booster, input schema, calibrator and metadata.

    Parameters
    ----------
    booster : lightgbm.Booster
    features : list of FeatureSpec
        The inputs, in the booster's order.
    calibrator : Calibrator
    params : dict
        LightGBM parameters of the final fit.
    metadata : dict
        Anything worth carrying with the model (horizon, snapshots, label).
    horizons : HazardModel, optional
        Churn probabilities over several horizons (``p_churn_<h>d``; see
        :mod:`churnml.models.horizons`), saved in the same folder.
    """

    booster: lgb.Booster
    features: list[FeatureSpec]
    calibrator: Calibrator = field(default_factory=Calibrator)
    params: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    horizons: object | None = None

    kind = "churn"

    @property
    def feature_names(self) -> list[str]:
        return [s.name for s in self.features]

    def matrix(self, df: pd.DataFrame, *, where: str = "scoring data") -> pd.DataFrame:
        """The checked input matrix for ``df`` (see :func:`to_matrix`)."""
        return to_matrix(df, self.features, where=where)

    def raw_score(self, df: pd.DataFrame, *, where: str = "scoring data") -> np.ndarray:
        """The booster's log-odds for each row."""
        return self.raw_score_matrix(self.matrix(df, where=where))

    def raw_score_matrix(self, X: pd.DataFrame) -> np.ndarray:
        """:meth:`raw_score` of an input matrix already built by :meth:`matrix`."""
        return self.booster.predict(lightgbm_input(self.booster, X), raw_score=True)

    def predict_proba(self, df: pd.DataFrame, *, where: str = "scoring data") -> np.ndarray:
        """Calibrated churn probability for each row of a feature frame."""
        return self.calibrator.apply(self.raw_score(df, where=where))

    def contributions(self, df: pd.DataFrame) -> np.ndarray:
        """TreeSHAP contributions in log-odds (last column: the expected value)."""
        return self.booster.predict(self.matrix(df), pred_contrib=True)

    def save(self, path: str | Path) -> Path:
        """Write the model as LightGBM text plus a JSON manifest into folder ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(path / BOOSTER_FILE))
        manifest = {
            "format": FORMAT_VERSION, "kind": self.kind, "booster": BOOSTER_FILE,
            "features": [s.to_dict() for s in self.features], "calibrator": self.calibrator.to_dict(),
            "params": self.params, "metadata": self.metadata,
        }
        if self.horizons is not None:
            manifest["horizons"] = self.horizons.to_dict()
            self.horizons.booster.save_model(str(path / manifest["horizons"]["booster"]))
        return write_manifest(path, manifest)

    @classmethod
    def load(cls, path: str | Path) -> ChurnModel:
        """Read a model written by :meth:`save` (no unpickling)."""
        path = Path(path)
        m = read_manifest(path, cls.kind)
        booster = lgb.Booster(model_file=str(path / m["booster"]))
        horizons = None
        if m.get("horizons"):
            from churnml.models.horizons import HazardModel

            h = m["horizons"]
            horizons = HazardModel.from_dict(h, lgb.Booster(model_file=str(path / h["booster"])))
        return cls(booster, [FeatureSpec.from_dict(d) for d in m["features"]],
                   Calibrator.from_dict(m["calibrator"]), m.get("params", {}), m.get("metadata", {}), horizons)


# --------------------------------------------------------------------------- training

def check_class_counts(y_train: np.ndarray, y_valid: np.ndarray, min_class_count: int) -> None:
    """Raise :class:`TrainingDataError` unless both parts hold enough churned and retained rows.

    The training part needs ``min_class_count`` of each class, the validation
    part a fifth of it (at least one).
    """
    _check_classes(y_train, "the training part", min_class_count)
    _check_classes(y_valid, "the validation part", max(1, min_class_count // 5))


def _check_classes(y: np.ndarray, where: str, minimum: int) -> None:
    pos = int(np.sum(y == 1))
    neg = int(np.sum(y == 0))
    if pos < minimum or neg < minimum:
        raise TrainingDataError(
            f"{where} has {pos:,} churned and {neg:,} retained rows; at least {minimum:,} of each are "
            "needed (add snapshots or users, or lower min_class_count)"
        )


def _dataset(X: pd.DataFrame, y: np.ndarray, params: dict, reference: lgb.Dataset | None = None) -> lgb.Dataset:
    return lgb.Dataset(X, label=y, reference=reference, categorical_feature="auto",
                       params={"max_bin": params.get("max_bin", 255), "verbosity": -1},
                       free_raw_data=True)


def fit_booster(
    X_train: pd.DataFrame,
    y_train: np.ndarray,
    X_valid: pd.DataFrame | None,
    y_valid: np.ndarray | None,
    params: dict,
    *,
    num_boost_round: int = 1000,
    early_stopping_rounds: int = 50,
    callbacks: Sequence[Callable] = (),
) -> lgb.Booster:
    """Train a LightGBM binary booster with early stopping on the validation rows.

    Parameters
    ----------
    X_train, X_valid : DataFrame
        Input matrices from :func:`to_matrix` (categoricals as pandas categoricals).
        Without validation rows (``X_valid=None``) exactly ``num_boost_round``
        trees are grown: the refit on all labelled rows (see
        :mod:`churnml.models.refit`), whose tree count was decided beforehand.
    y_train, y_valid : array of 0/1
    params : dict
        LightGBM parameters; merged over safe deterministic defaults. Not modified.
    num_boost_round, early_stopping_rounds : int
    callbacks : sequence of callable
        Extra LightGBM callbacks (e.g. :func:`churnml.callbacks.optuna_pruning`),
        run in their declared ``order``.

    Returns
    -------
    lightgbm.Booster
        Trimmed to the best iteration.
    """
    p = {**BASE_PARAMS, **params}
    dtrain = _dataset(X_train, y_train, p)
    if X_valid is None:
        return lgb.train(p, dtrain, num_boost_round=num_boost_round, callbacks=list(callbacks))
    dvalid = _dataset(X_valid, y_valid, p, reference=dtrain)
    cbs = [lgb.early_stopping(early_stopping_rounds, verbose=False), *callbacks]
    booster = lgb.train(p, dtrain, num_boost_round=num_boost_round, valid_sets=[dvalid],
                        valid_names=["valid"], callbacks=cbs)
    best = booster.best_iteration or booster.current_iteration()
    # Keep only the trees up to the best iteration, so the saved text is the model that was evaluated.
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))


def search_space(trial) -> dict:
    """The Optuna search space over LightGBM's parameters that matter for tabular churn data."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 8, 255, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 10, 1000, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "bagging_freq": 1,
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 30.0, log=True),
        "min_sum_hessian_in_leaf": trial.suggest_float("min_sum_hessian_in_leaf", 1e-3, 10.0, log=True),
    }


def tune(
    X_train: pd.DataFrame,
    y_train: np.ndarray,
    X_valid: pd.DataFrame,
    y_valid: np.ndarray,
    base_params: dict,
    *,
    n_trials: int,
    timeout: float | None = None,
    seed: int = 0,
    storage: str | None = None,
    study_name: str | None = None,
    pruning: bool = True,
    num_boost_round: int = 1000,
    early_stopping_rounds: int = 50,
    on_trial: Callable[[object, object], None] | None = None,
):
    """Search LightGBM parameters with Optuna's seeded TPE, minimising validation log loss.

    The study lives in ``storage`` (an Optuna storage URL such as
    ``sqlite:///mlruns/optuna.db``) under ``study_name``, so an interrupted or
    finished study can be resumed or extended by calling again with the same
    name. Unpromising trials are pruned by a median rule on the validation
    loss. One trial runs at a time, which with a seeded sampler makes a fresh
    study reproducible.

    Returns
    -------
    optuna.Study
    """
    import optuna

    from churnml.callbacks import optuna_pruning

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=30)
              if pruning else optuna.pruners.NopPruner())
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner, storage=storage,
                                study_name=study_name, load_if_exists=True)
    p0 = dict(base_params)
    dtrain = _dataset(X_train, y_train, p0)
    dvalid = _dataset(X_valid, y_valid, p0, reference=dtrain)

    def objective(trial):
        p = {**BASE_PARAMS, **p0, **search_space(trial)}
        cbs = [lgb.early_stopping(early_stopping_rounds, verbose=False)]
        if pruning:
            cbs.append(optuna_pruning(trial, "valid", "binary_logloss", period=10))
        booster = lgb.train(p, dtrain, num_boost_round=num_boost_round, valid_sets=[dvalid],
                            valid_names=["valid"], callbacks=cbs)
        trial.set_user_attr("best_iteration", booster.best_iteration)
        return float(booster.best_score["valid"]["binary_logloss"])

    callbacks = [on_trial] if on_trial else None
    study.optimize(objective, n_trials=n_trials, timeout=timeout, callbacks=callbacks,
                   gc_after_trial=False, show_progress_bar=False)
    return study


def fit_churn_model(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    *,
    features: Sequence[str],
    label: str = "churned",
    params: dict | None = None,
    calibration: str = "auto",
    num_boost_round: int = 1000,
    early_stopping_rounds: int = 50,
    min_class_count: int = 50,
    seed: int = 0,
    threads: int | None = None,
    metadata: dict | None = None,
    callbacks: Sequence[Callable] = (),
) -> tuple[ChurnModel, dict]:
    """Fit the booster on ``train``, stop early and calibrate on ``valid``.

    Parameters
    ----------
    train, valid : DataFrame
        Feature frames with the label column; ``valid`` must be later in time
        (see :func:`churnml.models.split.time_split`).
    features : sequence of str
        Input columns. Empty columns are left out with a warning.
    params : dict, optional
        LightGBM parameters (e.g. the best of :func:`tune`).
    calibration : {"auto", "isotonic", "sigmoid", "none"}

    Returns
    -------
    model : ChurnModel
    info : dict
        ``best_iteration`` and the calibration choice and scores.

    Raises
    ------
    TrainingDataError
        Too few churned or retained rows in either part.
    """
    y_tr = train[label].to_numpy()
    y_va = valid[label].to_numpy()
    check_class_counts(y_tr, y_va, min_class_count)
    specs = feature_specs(train, features)
    X_tr = to_matrix(train, specs, where="training data")
    X_va = to_matrix(valid, specs, where="validation data")
    p = {**(params or {}), "seed": seed}
    if threads:
        p["num_threads"] = threads
    booster = fit_booster(X_tr, y_tr, X_va, y_va, p, num_boost_round=num_boost_round,
                          early_stopping_rounds=early_stopping_rounds, callbacks=callbacks)
    raw_va = booster.predict(X_va, raw_score=True)
    calibrator, scores = choose_calibrator(raw_va, y_va, calibration, seed=seed)
    model = ChurnModel(booster, specs, calibrator, {**BASE_PARAMS, **p}, dict(metadata or {}))
    info = {"best_iteration": booster.current_iteration(), "calibration": calibrator.kind, **scores}
    return model, info


# --------------------------------------------------------------------------- scikit-learn facade



class ChurnClassifier(ClassifierMixin, BaseEstimator):
    """A scikit-learn classifier around :func:`fit_churn_model`, for notebooks and pipelines.

    ``fit`` holds out a stratified ``validation_fraction`` of the rows for early
    stopping and calibration (time-based splits are the job's business, see
    :func:`churnml.train.train_churn_job`); with too few rows for that, it
    fits all rows for ``n_estimators`` rounds and leaves the probabilities
    uncalibrated.

    Parameters
    ----------
    n_estimators : int
        Maximum boosting rounds.
    learning_rate, num_leaves, min_child_samples, feature_fraction, lambda_l2
        LightGBM parameters.
    early_stopping_rounds : int
    validation_fraction : float
    calibration : {"auto", "isotonic", "sigmoid", "none"}
    random_state : int
    n_jobs : int, optional

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(600, 3)); y = (X[:, 0] + rng.normal(size=600) > 0).astype(int)
    >>> clf = ChurnClassifier(n_estimators=50).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    """

    _parameter_constraints: typing.ClassVar[dict] = {
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "num_leaves": [Interval(Integral, 2, None, closed="left")],
        "min_child_samples": [Interval(Integral, 1, None, closed="left")],
        "feature_fraction": [Interval(Real, 0, 1, closed="right")],
        "lambda_l2": [Interval(Real, 0, None, closed="left")],
        "early_stopping_rounds": [Interval(Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "calibration": [StrOptions({"auto", "isotonic", "sigmoid", "none"})],
        "random_state": ["random_state"],
        "n_jobs": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(self, *, n_estimators=500, learning_rate=0.05, num_leaves=31, min_child_samples=20,
                 feature_fraction=1.0, lambda_l2=0.0, early_stopping_rounds=50, validation_fraction=0.2,
                 calibration="auto", random_state=0, n_jobs=None):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.feature_fraction = feature_fraction
        self.lambda_l2 = lambda_l2
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.calibration = calibration
        self.random_state = random_state
        self.n_jobs = n_jobs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.classifier_tags.multi_class = False
        return tags

    def _frame(self, X, *, reset: bool, y=None):
        """The input as a frame (pandas input keeps its dtypes, e.g. categoricals), checked by scikit-learn."""
        kw = {"ensure_all_finite": "allow-nan", "reset": reset}
        if isinstance(X, pd.DataFrame):
            checked = validate_data(self, X, y, dtype=None, **kw) if y is not None else \
                validate_data(self, X, dtype=None, **kw)
            frame = X.copy().set_axis([str(c) for c in X.columns], axis=1).reset_index(drop=True)
        else:
            checked = validate_data(self, X, y, **kw) if y is not None else validate_data(self, X, **kw)
            arr = checked[0] if y is not None else checked
            frame = pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])
        return (frame, checked[1]) if y is not None else frame

    def fit(self, X, y):
        """Fit on features ``X`` and binary labels ``y``; returns ``self``."""
        from sklearn.model_selection import train_test_split
        from sklearn.utils.multiclass import check_classification_targets, type_of_target

        self._validate_params()
        if y is None:
            raise ValueError("requires y to be passed, but the target y is None")
        frame, y = self._frame(X, reset=True, y=y)
        check_classification_targets(y)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"y has only one class ({classes[0]!r}); a churn model needs churned and retained rows")
        if type_of_target(y, input_name="y", raise_unknown=True) != "binary":
            raise ValueError(f"Only binary classification is supported. y has {len(classes)} classes.")
        self.classes_ = classes
        yi = (y == self.classes_[1]).astype("int8")
        frame = frame.assign(_label=yi)
        features = [c for c in frame.columns if c != "_label"]
        n_val = round(self.validation_fraction * len(frame))
        params = {"learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
                  "min_child_samples": self.min_child_samples, "feature_fraction": self.feature_fraction,
                  "lambda_l2": self.lambda_l2, "min_data_in_bin": 1}
        enough = n_val >= 20 and np.bincount(yi, minlength=2).min() >= 10
        if enough:
            tr, va = train_test_split(frame, test_size=n_val, stratify=yi, random_state=self.random_state)
            calibration, rounds = self.calibration, self.early_stopping_rounds
        else:  # too small to hold anything out: no early stopping, no calibration
            tr, va, calibration, rounds = frame, frame, "none", self.n_estimators
        seed = int(np.random.RandomState(self.random_state).randint(0, 2**31 - 1)) \
            if not isinstance(self.random_state, Integral) else int(self.random_state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            self.model_, self.fit_info_ = fit_churn_model(
                tr, va, features=features, label="_label", params=params, calibration=calibration,
                num_boost_round=self.n_estimators, early_stopping_rounds=rounds, min_class_count=1,
                seed=seed, threads=self.n_jobs)
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        if not hasattr(self, "model_"):
            from churnml.exceptions import NotFittedError

            raise NotFittedError("This ChurnClassifier instance is not fitted yet. Call 'fit' first.")
        frame = self._frame(X, reset=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            p = self.model_.predict_proba(frame.reindex(columns=self.model_.feature_names))
        return np.column_stack([1 - p, p])

    def predict(self, X) -> np.ndarray:
        """The more likely class of each row."""
        proba = self.predict_proba(X)
        return self.classes_[(proba[:, 1] >= 0.5).astype(int)]
