"""What every uplift learner shares: input checks, the randomisation check, base models, linear features."""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import ClassVar

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import SplineTransformer
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_array

from churnml.exceptions import DataWarning, NotFittedError, SchemaMismatchError, TrainingDataError

#: The LightGBM settings of the Hillstrom reference protocol; ``base_params`` override them.
_LGBM_DEFAULTS = {
    "n_estimators": 200,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 50,
}

#: Rows and folds of the randomisation check. Under random assignment a 2-fold AUC on
#: 5,000 rows has a standard error of about 0.01, plenty for a gross check at 0.6, and
#: the check stays a small part of ``fit`` (it costs two small logistic fits).
_CHECK_ROWS = 5_000
_CHECK_FOLDS = 2

#: The segment labels :func:`segments` returns, in a fixed order.
SEGMENTS = ("persuadable", "sure_thing", "lost_cause", "sleeping_dog")

_TREATMENT_COLUMN = "__treatment__"

#: Numeric columns with more distinct values than this get splines (``spline_knots``).
_SPLINE_MIN_DISTINCT = 10

_COMMON_PARAMS_DOC = """propensity : float in (0, 1) or None, default=None
        The known probability of being treated. None uses the treated fraction of
        the training rows.
    min_group : int, default=50
        The fewest rows the control and the treated group may each have.
    max_propensity_auc : float in [0.5, 1] or None, default=0.6
        ``fit`` warns (:class:`~churnml.exceptions.DataWarning`) when a
        cross-validated linear propensity model (Fisher's discriminant on the
        standardised features) reaches a higher ROC AUC, i.e.
        when treatment does not look randomised. None skips the check.
    random_state : int, default=0
        Seed of every random step (LightGBM, fold splits, the check's subsample).
    n_jobs : int, default=1
        Threads LightGBM may use."""

_COMMON_ATTRS_DOC = """propensity_ : float
        The propensity used (the parameter, or the training treated fraction).
    propensity_auc_ : float or None
        Cross-validated ROC AUC of the randomisation check (None if skipped).
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of str
        Column names seen in ``fit`` (only when ``X`` was a DataFrame).
    categories_ : dict of str to pandas.Index
        Categories of each non-numeric DataFrame column, as seen in ``fit``; string
        columns are converted to these categories (LightGBM uses them natively,
        the logistic learners one-hot encode them)."""


def _fill_doc(cls):
    """Put the parameter and attribute text shared by all learners into a class docstring."""
    cls.__doc__ = cls.__doc__.replace("{common_params}", _COMMON_PARAMS_DOC).replace(
        "{common_attrs}", _COMMON_ATTRS_DOC
    )
    return cls


# --------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------


def _binary_vector(values, name: str, caller: str) -> np.ndarray:
    """Return ``values`` as a 0/1 int array or raise a TrainingDataError naming the bad rows."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        arr = arr.reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr
    if arr.ndim != 1:
        raise TrainingDataError(
            f"The `{name}` passed to {caller} must be one-dimensional. Got shape {arr.shape}."
        )
    if arr.dtype == bool:
        return arr.astype(np.int8)
    try:
        num = pd.to_numeric(pd.Series(arr), errors="coerce").to_numpy(dtype=float)
    except TypeError:
        num = np.full(len(arr), np.nan)
    bad = ~np.isin(num, (0.0, 1.0))
    if bad.any():
        distinct = pd.unique(pd.Series(arr))
        shown = ", ".join(repr(v) for v in list(distinct)[:5]) + (
            ", ..." if len(distinct) > 5 else ""
        )
        raise TrainingDataError(
            f"The `{name}` passed to {caller} must be binary (0/1). Got {len(distinct)} "
            f"distinct values ({shown}); {int(bad.sum()):,} rows are neither 0 nor 1."
        )
    return num.astype(np.int8)


def _is_categorical(dtype) -> bool:
    """True for dtypes LightGBM must see as categories (category, string, object)."""
    return isinstance(dtype, pd.CategoricalDtype) or not (
        pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
    )


def _learn_categories(X: pd.DataFrame) -> dict[str, pd.Index]:
    """The categories of each non-numeric column, so predict can encode them the same way."""
    cats = {}
    for col in X.columns:
        dtype = X[col].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            cats[col] = dtype.categories
        elif _is_categorical(dtype):
            cats[col] = pd.Index(sorted(X[col].dropna().astype(str).unique()))
    return cats


def _encode(X: pd.DataFrame, categories: dict[str, pd.Index]) -> pd.DataFrame:
    """A copy of ``X`` whose non-numeric columns are categoricals with the fit-time categories.

    Boolean columns become 0/1 floats (missing values stay missing), which both
    LightGBM and the linear learners' imputer accept.
    """
    new = {
        col: X[col].astype(float)
        for col, dtype in X.dtypes.items()
        if col not in categories and pd.api.types.is_bool_dtype(dtype)
    }
    for col, cats in categories.items():
        values = X[col]
        if not isinstance(values.dtype, pd.CategoricalDtype):
            values = values.astype("string").astype(object)
        # Categories unseen in fit become missing, as LightGBM treats them.
        values = pd.Series(values).where(pd.Series(values).isin(cats))
        new[col] = pd.Categorical(values, categories=cats)
    return X.assign(**new) if new else X


def _check_features(X, caller: str):
    """The training features as a new DataFrame (strings as categoricals) or a float array.

    Returns ``(X, categories, feature_names)``; the caller's object is never modified.
    """
    if isinstance(X, pd.DataFrame):
        names = [str(c) for c in X.columns]
        if len(set(names)) != len(names):
            raise SchemaMismatchError(f"{caller} got a DataFrame with duplicate column names.")
        if _TREATMENT_COLUMN in names:
            raise SchemaMismatchError(
                f"{caller}: the column name {_TREATMENT_COLUMN!r} is reserved."
            )
        Xc = X.set_axis(names, axis=1).reset_index(drop=True)
        categories = _learn_categories(Xc)
        return _encode(Xc, categories), categories, np.asarray(names, dtype=object)
    return check_array(X, dtype="numeric", ensure_all_finite="allow-nan"), {}, None


def _check_fit_data(X, y, treatment, caller: str, min_group: int):
    """Check the training data; return ``(X, y, t, categories, feature_names)``.

    ``X`` comes back as a new DataFrame (string columns as categoricals) or a
    float array; the caller's objects are never modified.
    """
    Xc, categories, feature_names = _check_features(X, caller)
    y = _binary_vector(y, "y", caller)
    t = _binary_vector(treatment, "treatment", caller)
    if not len(Xc) == len(y) == len(t):
        raise TrainingDataError(
            f"X, y and treatment passed to {caller} must have the same number of rows. "
            f"Got {len(Xc):,}, {len(y):,} and {len(t):,}."
        )
    n_treated = int(t.sum())
    n_control = len(t) - n_treated
    if n_control == 0:
        raise TrainingDataError(
            f"{caller} got no control rows (treatment == 0): all {n_treated:,} rows are "
            "treated, so there is nothing to compare the treatment with."
        )
    if n_treated == 0:
        raise TrainingDataError(
            f"{caller} got no treated rows (treatment == 1): all {n_control:,} rows are "
            "control rows."
        )
    if min(n_control, n_treated) < min_group:
        raise TrainingDataError(
            f"{caller} needs at least min_group={min_group} rows in each group. "
            f"Got {n_control:,} control rows and {n_treated:,} treated rows."
        )
    for arm, label in ((0, "control"), (1, "treated")):
        rate = y[t == arm].mean()
        if rate in (0.0, 1.0):
            raise TrainingDataError(
                f"The outcome `y` is constant ({int(rate)}) in all {int((t == arm).sum()):,} "
                f"{label} rows passed to {caller}; uplift cannot be learned."
            )
    return Xc, y, t, categories, feature_names


def _warn_if_not_random(X, t, categories, max_auc: float, seed: int, owner: str) -> float:
    """Warn (DataWarning) if a propensity model separates the arms; return its AUC."""
    auc = _propensity_auc(X, t, categories, seed)
    if auc > max_auc:
        warnings.warn(
            DataWarning(
                f"Treatment looks non-random: a cross-validated propensity model tells "
                f"treated from control rows with ROC AUC {auc:.3f} (> {max_auc}). {owner} "
                "assumes a randomised experiment; its uplift estimates may be confounded."
            ),
            stacklevel=4,
        )
    return auc


class _UpliftBase(BaseEstimator):
    """Input checks, propensity and the randomisation check shared by all learners."""

    _parameter_constraints: ClassVar[dict] = {
        "propensity": [Interval(Real, 0, 1, closed="neither"), None],
        "min_group": [Interval(Integral, 1, None, closed="left")],
        "max_propensity_auc": [Interval(Real, 0.5, 1, closed="both"), None],
        "random_state": [Interval(Integral, 0, None, closed="left")],
        "n_jobs": [Integral],
    }

    # -- fit-time checks ---------------------------------------------------------------

    def _fit_inputs(self, X, y, treatment):
        """Validate params and data, learn the feature schema; return (X, y, t) ready to use."""
        self._validate_params()
        owner = type(self).__name__
        Xc, y, t, categories, names = _check_fit_data(
            X, y, treatment, f"{owner}.fit", self.min_group
        )
        self._record_schema(Xc, categories, names)
        self.propensity_ = float(self.propensity if self.propensity is not None else t.mean())
        self.propensity_auc_ = None
        if self.max_propensity_auc is not None:
            self.propensity_auc_ = _warn_if_not_random(
                Xc, t, categories, self.max_propensity_auc, self.random_state, owner
            )
        return Xc, y, t

    def _record_schema(self, Xc, categories: dict, names) -> None:
        """Remember the fitted features: their number, names and categories."""
        self.n_features_in_ = Xc.shape[1]
        self.categories_ = categories
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_

    # -- predict-time checks -----------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "propensity_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call `fit` with "
                "training data before using it."
            )

    def _predict_inputs(self, X):
        """Check ``X`` against the fit-time schema and encode it the same way (no writes)."""
        self._check_fitted()
        owner = type(self).__name__
        names = getattr(self, "feature_names_in_", None)
        if names is not None:
            if not isinstance(X, pd.DataFrame):
                raise SchemaMismatchError(
                    f"{owner} was fitted on a DataFrame with columns {list(names)}; pass a "
                    f"DataFrame with these columns, not {type(X).__name__}."
                )
            Xs = X.set_axis([str(c) for c in X.columns], axis=1)
            missing = [c for c in names if c not in Xs.columns]
            if missing:
                raise SchemaMismatchError(f"{owner}.predict: X lacks the fitted columns {missing}.")
            return _encode(Xs[list(names)].reset_index(drop=True), self.categories_)
        Xa = check_array(X, dtype="numeric", ensure_all_finite="allow-nan")
        if Xa.shape[1] != self.n_features_in_:
            raise SchemaMismatchError(
                f"{owner} was fitted on {self.n_features_in_} features; X has {Xa.shape[1]}."
            )
        return Xa

    # -- the public surface ------------------------------------------------------------

    def predict(self, X) -> np.ndarray:
        """Predict the uplift ``P(y=1 | treated) - P(y=1 | control)`` of each row.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Rows with the features seen in ``fit``.

        Returns
        -------
        ndarray of shape (n_samples,)
            Estimated uplift, in probability units (between -1 and 1).

        Raises
        ------
        NotFittedError
            If the learner is not fitted.
        SchemaMismatchError
            If ``X`` lacks the fitted columns or has another number of features.
        """
        return self._uplift(self._predict_inputs(X))

    def predict_outcomes(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Predict the outcome probability of each row without and with treatment.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Rows with the features seen in ``fit``.

        Returns
        -------
        p_control, p_treated : ndarray of shape (n_samples,)
            ``P(y=1)`` if not treated and if treated; ``p_treated - p_control`` is
            the uplift of :meth:`predict` (up to clipping to [0, 1] for learners
            that model the effect directly). Feed them to :func:`segments`.

        Raises
        ------
        NotFittedError
            If the learner is not fitted.
        """
        return self._outcomes(self._predict_inputs(X))

    def _uplift(self, X) -> np.ndarray:
        p0, p1 = self._outcomes(X)
        return p1 - p0


# --------------------------------------------------------------------------------------
# Base models
# --------------------------------------------------------------------------------------


def _lgbm_params(base_params: dict | None, random_state: int, n_jobs: int) -> dict:
    """The reference settings, overridden by ``base_params`` (copied), then seed and threads."""
    params = {**_LGBM_DEFAULTS, "deterministic": True, "force_row_wise": True, "verbose": -1}
    params.update(base_params or {})
    params.update(random_state=random_state, n_jobs=n_jobs)
    return params


def _lgbm_classifier(est, params: dict | None = None) -> lgb.LGBMClassifier:
    base = est.base_params if params is None else params
    return lgb.LGBMClassifier(**_lgbm_params(base, est.random_state, est.n_jobs))


def _lgbm_regressor(est, params: dict | None) -> lgb.LGBMRegressor:
    return lgb.LGBMRegressor(**_lgbm_params(params, est.random_state, est.n_jobs))


class _LinearFeatures(TransformerMixin, BaseEstimator):
    """Turn ``X`` into standardised numbers for the linear learners.

    Numeric columns are median-imputed (all-missing columns become 0);
    categorical DataFrame columns (already encoded with the fit-time categories,
    see :func:`_encode`) are one-hot encoded, missing or unseen values being all
    zeros; with ``spline_knots``, numeric columns with more than
    ``_SPLINE_MIN_DISTINCT`` distinct values are replaced by cubic B-splines
    with knots at quantiles. Everything is then standardised. ``transform``
    first clips every column to its range in the fitted rows: a count that was
    almost always 0 in training would otherwise stand hundreds of standard
    deviations out when scored, and a linear model would extrapolate to uplifts
    of ±1.

    Written in plain numpy because ``ColumnTransformer``'s per-call overhead was
    most of the fit time of a logistic regression on 30,000 rows.
    """

    def __init__(self, categories=None, spline_knots=None):
        self.categories = categories
        self.spline_knots = spline_knots

    def _split(self, X):
        cats = self.categories or {}
        if isinstance(X, pd.DataFrame):
            names = [c for c in X.columns if c not in cats]
            num = X[names].to_numpy(dtype=float)
            codes = [X[c].cat.codes.to_numpy() for c in cats]
        else:
            num, codes = np.asarray(X, dtype=float), []
            names = list(range(num.shape[1] if num.ndim == 2 else 0))
        infinite = np.isinf(num).any(axis=0) if num.size else []
        if np.any(infinite):
            bad = [str(n) for n, inf in zip(names, infinite, strict=True) if inf]
            raise ValueError(
                f"Input X contains infinity in column(s) {', '.join(bad)}; the linear uplift "
                "learners need finite values (missing values are imputed)."
            )
        return num, codes

    def fit(self, X, y=None):
        self.fit_transform(X)
        return self

    def fit_transform(self, X, y=None):
        # The assembled (splined, one-hot) matrix is built once and scaled in place.
        num, codes = self._split(X)
        if np.isnan(num).any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns become 0
                self.medians_ = np.nan_to_num(np.nanmedian(num, axis=0))
        else:  # nanmedian is twice as slow even without missing values
            self.medians_ = np.median(num, axis=0) if num.size else np.zeros(num.shape[1])
        num = self._impute(num)
        self.spline_columns_ = []
        if self.spline_knots:
            self.spline_columns_ = [
                j for j in range(num.shape[1]) if len(np.unique(num[:, j])) > _SPLINE_MIN_DISTINCT
            ]
        self.splines_ = None
        if self.spline_columns_:
            self.splines_ = SplineTransformer(
                n_knots=self.spline_knots, degree=3, knots="quantile"
            ).fit(num[:, self.spline_columns_])
        assembled = self._assemble(num, codes)
        # The training range of every column: transform clips to it, so a linear model never
        # extrapolates beyond what it was fitted on (like trees, and the splines' constant ends).
        self.lower_, self.upper_ = assembled.min(axis=0), assembled.max(axis=0)
        # StandardScaler's statistics in plain numpy (its validation took a quarter of this fit);
        # constant columns keep scale 1, as there.
        self.mean_ = assembled.mean(axis=0)
        std = assembled.std(axis=0)
        self.scale_ = np.where(
            std > 10 * np.finfo(float).eps * np.maximum(np.abs(self.mean_), 1), std, 1.0
        )
        return self._standardise(assembled)

    def transform(self, X):
        num, codes = self._split(X)
        assembled = self._assemble(self._impute(num), codes)
        if hasattr(self, "lower_"):  # fitted before 2026-11-25: no clipping
            np.clip(assembled, self.lower_, self.upper_, out=assembled)
        return self._standardise(assembled)

    def _standardise(self, assembled: np.ndarray) -> np.ndarray:
        if not hasattr(self, "mean_"):  # fitted before 2026-11-25: a StandardScaler did this
            return self.scaler_.transform(assembled)
        assembled -= self.mean_
        assembled /= self.scale_
        return assembled

    def _impute(self, num):
        missing = np.isnan(num)
        return np.where(missing, self.medians_, num) if missing.any() else num

    def _assemble(self, num, codes):
        blocks = [num]
        if self.splines_ is not None:
            keep = np.setdiff1d(np.arange(num.shape[1]), self.spline_columns_)
            blocks = [num[:, keep], self.splines_.transform(num[:, self.spline_columns_])]
        for code, cats in zip(codes, (self.categories or {}).values(), strict=True):
            blocks.append((code[:, None] == np.arange(len(cats))[None, :]).astype(float))
        return np.hstack(blocks)


def _logistic(categories: dict, C: float) -> Pipeline:
    """A standardised, L2-regularised logistic regression with one-hot categoricals."""
    return Pipeline(
        [
            ("features", _LinearFeatures(categories)),
            (
                "logisticregression",
                LogisticRegression(C=C, solver="newton-cholesky", max_iter=1000),
            ),
        ]
    )


def _propensity_auc(X, t: np.ndarray, categories: dict, seed: int) -> float:
    """Cross-validated ROC AUC of a linear discriminant telling treated from control rows.

    The discriminant is Fisher's: the direction ``(S + λI)⁻¹ (mean_treated - mean_control)``
    with ``S`` the pooled within-arm covariance of the standardised features, fitted on one
    fold and scored on the other. Under random assignment it separates nothing (AUC ≈ 0.5);
    when assignment follows the features linearly it finds the same direction as a logistic
    propensity model, in closed form (a few times cheaper than fitting one per fold).
    """
    idx = np.arange(len(t))
    if len(t) > _CHECK_ROWS:
        idx = np.sort(np.random.default_rng(seed).choice(len(t), _CHECK_ROWS, replace=False))
    Xs = X.iloc[idx] if isinstance(X, pd.DataFrame) else X[idx]
    ts = t[idx]
    folds = int(min(_CHECK_FOLDS, np.bincount(ts, minlength=2).min()))
    if folds < 2:
        return float("nan")
    # Standardising on all sampled rows before splitting leaks only means and scales into
    # the held-out folds, which cannot make random assignment look predictable.
    z = _LinearFeatures(categories).fit_transform(Xs)
    scores = np.empty(len(ts))
    for train, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(z, ts):
        zt, tt = z[train], ts[train]
        treated, control = zt[tt == 1], zt[tt == 0]
        centred = np.vstack([treated - treated.mean(axis=0), control - control.mean(axis=0)])
        pooled = centred.T @ centred / max(len(zt) - 2, 1)
        ridge = 1e-3 * np.eye(z.shape[1])  # one-hot levels are collinear with their sum
        direction = np.linalg.solve(pooled + ridge, treated.mean(axis=0) - control.mean(axis=0))
        scores[held] = z[held] @ direction
    return float(roc_auc_score(ts, scores))


def _with_treatment(X, t) -> pd.DataFrame | np.ndarray:
    """``X`` plus the treatment as its last column (a new object; ``X`` is untouched)."""
    if isinstance(X, pd.DataFrame):
        return X.assign(**{_TREATMENT_COLUMN: np.asarray(t, dtype=np.int8)})
    return np.column_stack([X, np.asarray(t, dtype=float)])


def _rows(X, mask):
    return X[mask] if not isinstance(X, pd.DataFrame) else X.loc[mask].reset_index(drop=True)


def _proba(model, X) -> np.ndarray:
    return model.predict_proba(X)[:, 1]
