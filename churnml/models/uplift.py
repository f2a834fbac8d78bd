"""Uplift (heterogeneous treatment effect) learners with scikit-uplift's shape.

Every learner follows ``fit(X, y, treatment) -> self`` and ``predict(X) -> uplift``,
where uplift is the estimated change in the probability of the outcome
(``y == 1``, e.g. "the customer comes back") caused by the treatment (e.g. a
recall e-mail). ``predict_outcomes(X)`` returns the two probabilities behind the
uplift, ``(p_control, p_treated)``, which :func:`segments` turns into the four
classic groups (persuadable, sure thing, lost cause, sleeping dog).

The learners are the standard meta-learners over LightGBM
(:class:`SLearner`, :class:`TLearner`, :class:`XLearner`, :class:`DRLearner`),
the class-transformation approach (:class:`ClassTransformation`) and a
regularised logistic regression with treatment interactions
(:class:`InteractionLogistic`). :func:`select_uplift_model` picks one of several
candidates by cross-validated Qini on the data it is given, and
:func:`default_candidates` returns a sensible set to pick from.

The learners assume a randomised experiment: the propensity (the probability of
being treated) is the known randomisation share, by default the treated
fraction of the training rows. ``fit`` warns with
:class:`~churnml.exceptions.DataWarning` when a cross-validated linear propensity
model (Fisher's discriminant) can tell treated rows from control rows (AUC above
``max_propensity_auc``).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from numbers import Integral, Real
from typing import ClassVar

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import SplineTransformer
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array

from churnml.exceptions import DataWarning, NotFittedError, SchemaMismatchError, TrainingDataError
from churnml.metrics import qini_auc_score

__all__ = [
    "SEGMENTS",
    "ClassTransformation",
    "DRLearner",
    "InteractionLogistic",
    "SLearner",
    "TLearner",
    "XLearner",
    "default_candidates",
    "segments",
    "select_uplift_model",
]

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


def _check_fit_data(X, y, treatment, caller: str, min_group: int):
    """Check the training data; return ``(X, y, t, categories, feature_names)``.

    ``X`` comes back as a new DataFrame (string columns as categoricals) or a
    float array; the caller's objects are never modified.
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
        Xc = _encode(Xc, categories)
        feature_names = np.asarray(names, dtype=object)
    else:
        Xc = check_array(X, dtype="numeric", ensure_all_finite="allow-nan")
        categories, feature_names = {}, None
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
        self.n_features_in_ = Xc.shape[1]
        self.categories_ = categories
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.propensity_ = float(self.propensity if self.propensity is not None else t.mean())
        self.propensity_auc_ = None
        if self.max_propensity_auc is not None:
            self.propensity_auc_ = _warn_if_not_random(
                Xc, t, categories, self.max_propensity_auc, self.random_state, owner
            )
        return Xc, y, t

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


# --------------------------------------------------------------------------------------
# Learners
# --------------------------------------------------------------------------------------


@_fill_doc
class SLearner(_UpliftBase):
    """S-learner: one LightGBM classifier with the treatment as a feature.

    The uplift of a row is the model's probability with the treatment set to 1
    minus that with it set to 0.

    Parameters
    ----------
    base_params : dict or None, default=None
        Parameters of :class:`lightgbm.LGBMClassifier`, over the reference
        settings (200 trees, learning rate 0.05, 31 leaves, 50 rows per leaf).
        ``random_state`` and ``n_jobs`` are always taken from this learner.
    {common_params}

    Attributes
    ----------
    model_ : lightgbm.LGBMClassifier
        The fitted classifier; its last feature is the treatment.
    {common_attrs}

    Examples
    --------
    >>> import numpy as np
    >>> from churnml.models.uplift import SLearner
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(2000, 3)); t = rng.integers(0, 2, 2000)
    >>> y = (rng.random(2000) < 0.3 + 0.2 * t * (X[:, 0] > 0)).astype(int)
    >>> SLearner(base_params={"n_estimators": 20}).fit(X, y, t).predict(X[:2]).shape
    (2,)
    """

    _parameter_constraints: ClassVar[dict] = {
        **_UpliftBase._parameter_constraints,
        "base_params": [dict, None],
    }

    def __init__(
        self,
        *,
        base_params=None,
        propensity=None,
        min_group=50,
        max_propensity_auc=0.6,
        random_state=0,
        n_jobs=1,
    ):
        self.base_params = base_params
        self.propensity = propensity
        self.min_group = min_group
        self.max_propensity_auc = max_propensity_auc
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y, treatment):
        """Fit the learner.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Features; pandas categorical and string columns are used as categories.
        y : array-like of shape (n_samples,)
            Binary outcome (1 = the response we want, e.g. a visit).
        treatment : array-like of shape (n_samples,)
            Binary treatment flag (1 = treated, 0 = control).

        Returns
        -------
        self : object
            The fitted learner.

        Raises
        ------
        TrainingDataError
            If treatment or y is not binary, a group is missing or smaller than
            ``min_group``, or y is constant in a group.
        """
        X, y, t = self._fit_inputs(X, y, treatment)
        self.model_ = _lgbm_classifier(self).fit(_with_treatment(X, t), y)
        return self

    def _outcomes(self, X):
        n = len(X)
        return (
            _proba(self.model_, _with_treatment(X, np.zeros(n))),
            _proba(self.model_, _with_treatment(X, np.ones(n))),
        )


_BASES = [StrOptions({"lightgbm", "logistic"})]


def _base_model(est):
    """The unfitted outcome model of ``est.base``; ``base_params`` only apply to LightGBM."""
    if est.base == "logistic":
        if est.base_params:
            raise ValueError(
                f"The `base_params` parameter of {type(est).__name__} only applies to "
                f"base='lightgbm'. Got {est.base_params!r} with base='logistic'; use `C`."
            )
        return _logistic(est.categories_, est.C)
    return _lgbm_classifier(est)


@_fill_doc
class TLearner(_UpliftBase):
    """T-learner: one outcome model per arm.

    The uplift of a row is the treated-arm model's probability minus the
    control-arm model's.

    Parameters
    ----------
    base : {"lightgbm", "logistic"}, default="lightgbm"
        The outcome model: :class:`lightgbm.LGBMClassifier`, or a standardised
        L2 logistic regression with one-hot encoded categoricals.
    base_params : dict or None, default=None
        LightGBM parameters over the reference settings (``base="lightgbm"`` only).
    C : float > 0, default=1.0
        Inverse L2 strength of the logistic regression (``base="logistic"`` only).
    {common_params}

    Attributes
    ----------
    model_control_, model_treated_ : estimator
        The fitted outcome models of the control and the treated arm.
    {common_attrs}

    Examples
    --------
    >>> import numpy as np
    >>> from churnml.models.uplift import TLearner
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(2000, 3)); t = rng.integers(0, 2, 2000)
    >>> y = (rng.random(2000) < 0.3 + 0.2 * t * (X[:, 0] > 0)).astype(int)
    >>> uplift = TLearner(base="logistic").fit(X, y, t).predict(X)
    >>> bool(uplift[X[:, 0] > 0].mean() > uplift[X[:, 0] < 0].mean())
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        **_UpliftBase._parameter_constraints,
        "base": _BASES,
        "base_params": [dict, None],
        "C": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        *,
        base="lightgbm",
        base_params=None,
        C=1.0,
        propensity=None,
        min_group=50,
        max_propensity_auc=0.6,
        random_state=0,
        n_jobs=1,
    ):
        self.base = base
        self.base_params = base_params
        self.C = C
        self.propensity = propensity
        self.min_group = min_group
        self.max_propensity_auc = max_propensity_auc
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y, treatment):
        """Fit one outcome model per arm.

        Parameters, Returns and Raises are those of :meth:`SLearner.fit`.
        """
        X, y, t = self._fit_inputs(X, y, treatment)
        self.model_control_ = _base_model(self).fit(_rows(X, t == 0), y[t == 0])
        self.model_treated_ = _base_model(self).fit(_rows(X, t == 1), y[t == 1])
        return self

    def _outcomes(self, X):
        return _proba(self.model_control_, X), _proba(self.model_treated_, X)


@_fill_doc
class XLearner(_UpliftBase):
    """X-learner (Künzel et al., 2019) over LightGBM.

    Outcome models ``mu0`` and ``mu1`` are fitted per arm; each arm's imputed
    effects (treated: ``y - mu0(x)``; control: ``mu1(x) - y``) are regressed on
    ``X`` with :class:`lightgbm.LGBMRegressor`, giving ``tau1`` and ``tau0``; the
    uplift is ``e * tau0(x) + (1 - e) * tau1(x)`` with ``e`` the propensity.

    Parameters
    ----------
    base_params : dict or None, default=None
        Parameters of the outcome classifiers, over the reference settings.
    effect_params : dict or None, default=None
        Parameters of the effect regressors, over the reference settings.
    {common_params}

    Attributes
    ----------
    model_control_, model_treated_ : lightgbm.LGBMClassifier
        Outcome models ``mu0`` and ``mu1``.
    effect_control_, effect_treated_ : lightgbm.LGBMRegressor
        Effect models ``tau0`` (fitted on control rows) and ``tau1`` (treated rows).
    {common_attrs}

    Notes
    -----
    ``predict_outcomes`` returns ``mu0(x)`` and ``mu0(x) + uplift`` clipped to
    [0, 1], so its difference agrees with :meth:`predict`.
    """

    _parameter_constraints: ClassVar[dict] = {
        **_UpliftBase._parameter_constraints,
        "base_params": [dict, None],
        "effect_params": [dict, None],
    }

    def __init__(
        self,
        *,
        base_params=None,
        effect_params=None,
        propensity=None,
        min_group=50,
        max_propensity_auc=0.6,
        random_state=0,
        n_jobs=1,
    ):
        self.base_params = base_params
        self.effect_params = effect_params
        self.propensity = propensity
        self.min_group = min_group
        self.max_propensity_auc = max_propensity_auc
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y, treatment):
        """Fit the outcome and effect models.

        Parameters, Returns and Raises are those of :meth:`SLearner.fit`.
        """
        X, y, t = self._fit_inputs(X, y, treatment)
        X0, X1 = _rows(X, t == 0), _rows(X, t == 1)
        self.model_control_ = _lgbm_classifier(self).fit(X0, y[t == 0])
        self.model_treated_ = _lgbm_classifier(self).fit(X1, y[t == 1])
        imputed_treated = y[t == 1] - _proba(self.model_control_, X1)
        imputed_control = _proba(self.model_treated_, X0) - y[t == 0]
        self.effect_treated_ = _lgbm_regressor(self, self.effect_params).fit(X1, imputed_treated)
        self.effect_control_ = _lgbm_regressor(self, self.effect_params).fit(X0, imputed_control)
        return self

    def _uplift(self, X):
        e = self.propensity_
        return e * self.effect_control_.predict(X) + (1 - e) * self.effect_treated_.predict(X)

    def _outcomes(self, X):
        p0 = _proba(self.model_control_, X)
        return p0, np.clip(p0 + self._uplift(X), 0.0, 1.0)


@_fill_doc
class DRLearner(_UpliftBase):
    """Doubly robust learner (Kennedy, 2023) with cross-fitting, over LightGBM.

    The rows are split into ``n_folds`` folds; outcome models fitted on the other
    folds give each row out-of-fold ``mu0(x)``, ``mu1(x)`` and the pseudo-outcome
    ``mu1 - mu0 + t (y - mu1) / e - (1 - t) (y - mu0) / (1 - e)`` (``e`` the
    propensity), which :class:`lightgbm.LGBMRegressor` regresses on ``X``.

    Parameters
    ----------
    base_params : dict or None, default=None
        Parameters of the outcome classifiers, over the reference settings.
    effect_params : dict or None, default=None
        Parameters of the pseudo-outcome regressor, over the reference settings.
    n_folds : int >= 2, default=3
        Cross-fitting folds.
    {common_params}

    Attributes
    ----------
    outcome_models_ : list of (LGBMClassifier, LGBMClassifier)
        The control and treated outcome models of each fold; their mean gives
        ``p_control`` in :meth:`predict_outcomes`.
    effect_model_ : lightgbm.LGBMRegressor
        The pseudo-outcome regression, i.e. the uplift model.
    {common_attrs}

    Notes
    -----
    ``predict_outcomes`` returns the fold-averaged ``mu0(x)`` and ``mu0(x) +
    uplift`` clipped to [0, 1].
    """

    _parameter_constraints: ClassVar[dict] = {
        **_UpliftBase._parameter_constraints,
        "base_params": [dict, None],
        "effect_params": [dict, None],
        "n_folds": [Interval(Integral, 2, None, closed="left")],
    }

    def __init__(
        self,
        *,
        base_params=None,
        effect_params=None,
        n_folds=3,
        propensity=None,
        min_group=50,
        max_propensity_auc=0.6,
        random_state=0,
        n_jobs=1,
    ):
        self.base_params = base_params
        self.effect_params = effect_params
        self.n_folds = n_folds
        self.propensity = propensity
        self.min_group = min_group
        self.max_propensity_auc = max_propensity_auc
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y, treatment):
        """Cross-fit the outcome models, then regress the pseudo-outcomes.

        Parameters, Returns and Raises are those of :meth:`SLearner.fit`.
        """
        X, y, t = self._fit_inputs(X, y, treatment)
        e = self.propensity_
        pseudo = np.empty(len(y))
        models = []
        folds = StratifiedKFold(self.n_folds, shuffle=True, random_state=self.random_state)
        for train, held in folds.split(np.zeros(len(y)), 2 * t + y):
            Xtr, ytr, ttr = _rows(X, _mask(train, len(y))), y[train], t[train]
            m0 = _lgbm_classifier(self).fit(_rows(Xtr, ttr == 0), ytr[ttr == 0])
            m1 = _lgbm_classifier(self).fit(_rows(Xtr, ttr == 1), ytr[ttr == 1])
            Xh = _rows(X, _mask(held, len(y)))
            mu0, mu1 = _proba(m0, Xh), _proba(m1, Xh)
            th, yh = t[held], y[held]
            pseudo[held] = mu1 - mu0 + th * (yh - mu1) / e - (1 - th) * (yh - mu0) / (1 - e)
            models.append((m0, m1))
        self.outcome_models_ = models
        self.effect_model_ = _lgbm_regressor(self, self.effect_params).fit(X, pseudo)
        return self

    def _uplift(self, X):
        return self.effect_model_.predict(X)

    def _outcomes(self, X):
        p0 = np.mean([_proba(m0, X) for m0, _ in self.outcome_models_], axis=0)
        return p0, np.clip(p0 + self._uplift(X), 0.0, 1.0)


def _mask(idx: np.ndarray, n: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[idx] = True
    return mask


@_fill_doc
class ClassTransformation(_UpliftBase):
    """Class transformation (Jaskowski & Jaroszewicz, 2012), reweighted for any treatment share.

    One classifier learns ``Z = y t + (1 - y)(1 - t)`` ("treated and responded, or
    control and did not"). With a 50/50 split ``P(Z=1 | x) = (p1(x) + 1 - p0(x)) / 2``,
    so ``uplift = 2 P(Z=1 | x) - 1``. With another share ``e`` the rows are
    weighted ``1 / (2e)`` (treated) and ``1 / (2(1 - e))`` (control), which gives
    both arms equal weight and keeps the identity exact; the unweighted form
    (scikit-uplift's) is biased towards the larger arm's outcome rate.

    Parameters
    ----------
    base : {"lightgbm", "logistic"}, default="logistic"
        The classifier of ``Z`` (and of the control outcome, see Notes).
    base_params : dict or None, default=None
        LightGBM parameters over the reference settings (``base="lightgbm"`` only).
    C : float > 0, default=1.0
        Inverse L2 strength of the logistic regression (``base="logistic"`` only).
    {common_params}

    Attributes
    ----------
    model_ : estimator
        The classifier of ``Z``.
    model_control_ : estimator
        An outcome model of the control arm, used only by ``predict_outcomes``.
    {common_attrs}

    Notes
    -----
    Class transformation gives no outcome probabilities, so ``fit`` also fits the
    control arm's outcome; ``predict_outcomes`` returns it and it plus the
    uplift, clipped to [0, 1].
    """

    _parameter_constraints: ClassVar[dict] = {
        **_UpliftBase._parameter_constraints,
        "base": _BASES,
        "base_params": [dict, None],
        "C": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        *,
        base="logistic",
        base_params=None,
        C=1.0,
        propensity=None,
        min_group=50,
        max_propensity_auc=0.6,
        random_state=0,
        n_jobs=1,
    ):
        self.base = base
        self.base_params = base_params
        self.C = C
        self.propensity = propensity
        self.min_group = min_group
        self.max_propensity_auc = max_propensity_auc
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y, treatment):
        """Fit the classifier of the transformed class (and the control outcome model).

        Parameters, Returns and Raises are those of :meth:`SLearner.fit`.
        """
        X, y, t = self._fit_inputs(X, y, treatment)
        e = self.propensity_
        z = (y * t + (1 - y) * (1 - t)).astype(np.int8)
        weight = np.where(t == 1, 0.5 / e, 0.5 / (1 - e))
        model = _base_model(self)
        key = "logisticregression__sample_weight" if self.base == "logistic" else "sample_weight"
        self.model_ = model.fit(X, z, **{key: weight})
        self.model_control_ = _base_model(self).fit(_rows(X, t == 0), y[t == 0])
        return self

    def _uplift(self, X):
        return 2.0 * _proba(self.model_, X) - 1.0

    def _outcomes(self, X):
        p0 = _proba(self.model_control_, X)
        return p0, np.clip(p0 + self._uplift(X), 0.0, 1.0)


@_fill_doc
class InteractionLogistic(_UpliftBase):
    """Logistic regression on standardised ``[x, t, t * x]`` (Lo, 2002), L2-regularised.

    The features are median-imputed, one-hot encoded, optionally splined (see
    ``spline_knots``) and standardised into ``z``; the treatment is centred and
    scaled, ``s = (t - e) / sd(t)``. One
    logistic regression learns ``y`` from ``[z, s, interaction_scale * s * z]``,
    and the uplift is its probability at ``t = 1`` minus that at ``t = 0``.

    Shrinking ``interaction_scale`` below 1 multiplies the L2 penalty on the
    interaction (effect-heterogeneity) terms by ``1 / interaction_scale**2``
    relative to the main effects, pulling the model towards a constant
    treatment effect. Heterogeneity is usually much weaker than the baseline
    signal, so a value below 1 tends to rank better.

    Parameters
    ----------
    C : float > 0, default=1.0
        Inverse L2 strength of the logistic regression.
    interaction_scale : float > 0, default=1.0
        Multiplier of the interaction columns before the penalty (see above).
    spline_knots : int >= 2 or None, default=None
        If set, numeric columns with more than 10 distinct values enter as cubic
        B-splines with this many knots at quantiles (a smooth, non-linear effect
        of e.g. spend or recency); None keeps them linear.
    {common_params}

    Attributes
    ----------
    features_ : transformer
        The fitted imputation / one-hot / spline / standardisation of ``X``.
    model_ : sklearn.linear_model.LogisticRegression
        The fitted logistic regression on ``[z, s, interaction_scale * s * z]``.
    treatment_scale_ : float
        ``sd(t)`` in the training rows.
    {common_attrs}

    Examples
    --------
    >>> import numpy as np
    >>> from churnml.models.uplift import InteractionLogistic
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(2000, 3)); t = rng.integers(0, 2, 2000)
    >>> y = (rng.random(2000) < 0.3 + 0.2 * t * (X[:, 0] > 0)).astype(int)
    >>> p_control, p_treated = InteractionLogistic().fit(X, y, t).predict_outcomes(X[:3])
    >>> p_control.shape, p_treated.shape
    ((3,), (3,))
    """

    _parameter_constraints: ClassVar[dict] = {
        **_UpliftBase._parameter_constraints,
        "C": [Interval(Real, 0, None, closed="neither")],
        "interaction_scale": [Interval(Real, 0, None, closed="neither")],
        "spline_knots": [Interval(Integral, 2, None, closed="left"), None],
    }

    def __init__(
        self,
        *,
        C=1.0,
        interaction_scale=1.0,
        spline_knots=None,
        propensity=None,
        min_group=50,
        max_propensity_auc=0.6,
        random_state=0,
        n_jobs=1,
    ):
        self.C = C
        self.interaction_scale = interaction_scale
        self.spline_knots = spline_knots
        self.propensity = propensity
        self.min_group = min_group
        self.max_propensity_auc = max_propensity_auc
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y, treatment):
        """Fit the interaction model.

        Parameters, Returns and Raises are those of :meth:`SLearner.fit`.
        """
        X, y, t = self._fit_inputs(X, y, treatment)
        self.features_ = _LinearFeatures(self.categories_, self.spline_knots)
        z = self.features_.fit_transform(X)
        self.treatment_scale_ = float(t.std())
        self.model_ = LogisticRegression(C=self.C, solver="newton-cholesky", max_iter=1000).fit(
            self._design(z, t), y
        )
        return self

    def _design(self, z: np.ndarray, t: np.ndarray) -> np.ndarray:
        s = ((np.asarray(t, dtype=float) - self.propensity_) / self.treatment_scale_)[:, None]
        return np.hstack([z, s, self.interaction_scale * s * z])

    def _outcomes(self, X):
        # The model's linear predictor at t = 0 and t = 1, from its coefficients on
        # [z, s, scale * s * z]: one product per block instead of two designs to score.
        z = self.features_.transform(X)
        k = z.shape[1]
        coef = self.model_.coef_[0]
        base = z @ coef[:k] + self.model_.intercept_[0]
        slope = coef[k] + self.interaction_scale * (z @ coef[k + 1 :])
        s0, s1 = (np.array([0.0, 1.0]) - self.propensity_) / self.treatment_scale_
        return expit(base + s0 * slope), expit(base + s1 * slope)


# --------------------------------------------------------------------------------------
# Segments, selection, candidates
# --------------------------------------------------------------------------------------


def segments(p_control, p_treated, *, threshold: float = 0.0, response_threshold: float = 0.5):
    """Put each row into one of the four uplift segments.

    With ``uplift = p_treated - p_control`` (the outcome ``y = 1`` being the
    response we want), the rule is, in this order:

    1. ``uplift < -threshold``: **sleeping_dog**, treating them lowers the response;
    2. ``uplift > threshold`` and ``p_control < response_threshold``:
       **persuadable**, unlikely to respond unless treated and treatment helps;
    3. otherwise (no effect beyond ``threshold``, or a positive effect on people
       who respond anyway): **sure_thing** if ``p_control >= response_threshold``,
       else **lost_cause**.

    Parameters
    ----------
    p_control, p_treated : array-like of shape (n_samples,)
        Outcome probabilities without and with treatment, e.g. from
        ``predict_outcomes``.
    threshold : float >= 0, default=0.0
        Uplift (in probability units) a row must exceed to count as affected.
    response_threshold : float in (0, 1), default=0.5
        Probability at and above which a row "responds" anyway. Set it to the
        base rate for rare outcomes.

    Returns
    -------
    ndarray of str, shape (n_samples,)
        One of :data:`SEGMENTS` per row.

    Raises
    ------
    ValueError
        If the arrays differ in length or a threshold is out of range.

    Examples
    --------
    >>> segments([0.1, 0.8, 0.1, 0.6], [0.4, 0.9, 0.1, 0.2], threshold=0.05).tolist()
    ['persuadable', 'sure_thing', 'lost_cause', 'sleeping_dog']
    """
    p0 = np.asarray(p_control, dtype=float).reshape(-1)
    p1 = np.asarray(p_treated, dtype=float).reshape(-1)
    if p0.shape != p1.shape:
        raise ValueError(
            f"`p_control` and `p_treated` must have the same length. Got {len(p0)} and {len(p1)}."
        )
    if not threshold >= 0:
        raise ValueError(
            f"The `threshold` parameter of segments must be >= 0. Got {threshold!r} instead."
        )
    if not 0 < response_threshold < 1:
        raise ValueError(
            "The `response_threshold` parameter of segments must be in (0, 1). "
            f"Got {response_threshold!r} instead."
        )
    uplift = p1 - p0
    responds = p0 >= response_threshold
    return np.select(
        [uplift < -threshold, (uplift > threshold) & ~responds, responds],
        ["sleeping_dog", "persuadable", "sure_thing"],
        default="lost_cause",
    )


def select_uplift_model(
    X,
    y,
    treatment,
    candidates: dict,
    *,
    cv: int = 5,
    seed: int = 0,
    scoring: Callable = qini_auc_score,
    default: str | None = None,
    margin_se: float = 1.0,
    progress: Callable[[str, float, float], None] | None = None,
):
    """Choose among uplift learners by cross-validated score, then refit the choice.

    The rows given are split into ``cv`` folds stratified by ``2 * treatment + y``
    (shuffled with ``seed``); each candidate is cloned, fitted on all but one fold
    and scored on the held-out fold. Only the rows passed in are used: pass the
    training part and keep test rows out.

    The choice is a champion/challenger rule on the folds (the one-standard-error
    rule): the ``default`` candidate is kept unless another beats it by more than
    ``margin_se`` standard errors of their paired fold differences; of those that
    do, the one with the highest mean score is chosen.
    Uplift scores of good learners usually differ by less than their fold noise,
    and always taking the highest mean then picks noise: on 30 Hillstrom splits
    it lost to keeping a fixed default in both settings (``BENCHMARKS.md``).

    Parameters
    ----------
    X : DataFrame or array-like of shape (n_samples, n_features)
        Training features.
    y, treatment : array-like of shape (n_samples,)
        Binary outcome and binary treatment.
    candidates : dict of str to estimator
        Named uplift learners (anything with ``fit(X, y, treatment)`` and
        ``predict(X)``). They are cloned, never fitted themselves.
    cv : int >= 2, default=5
        Number of folds.
    seed : int, default=0
        Seed of the fold split; the choice is deterministic given it.
    scoring : callable, default=:func:`churnml.metrics.qini_auc_score`
        ``scoring(y_true, uplift, treatment) -> float``, higher is better.
    default : str or None, default=None
        The candidate kept unless clearly beaten; None means the first listed.
    margin_se : float >= 0, default=1.0
        How clearly: the mean paired fold difference must exceed this many of its
        standard errors. 0 takes the highest mean score (the default on ties).
    progress : callable, optional
        Called as ``progress(name, mean_score, seconds)`` after each candidate
        is cross-validated (for logs of long selections).

    Returns
    -------
    chosen_name : str
        The best-scoring candidate among those that beat the default clearly, or
        the default if none does.
    fitted_chosen : estimator
        A clone of it fitted on all rows given.
    table : pandas.DataFrame
        One row per candidate, best mean first: ``mean`` and ``std`` (sample) of
        the fold scores, ``gain_over_default`` and ``gain_se`` (mean paired fold
        difference to the default and its standard error), ``chosen`` and
        ``default`` (flags), the scores ``fold_0 ...``, and ``cv_seconds`` (fit
        and predict time summed over folds), ``constant`` (the candidate predicted
        one value for all held-out rows on every fold: it ranks nobody and is
        never chosen while another candidate ranks).

    Raises
    ------
    ValueError
        If ``candidates`` is empty, ``cv`` is below 2, ``default`` is not a
        candidate or ``margin_se`` is negative.

    Notes
    -----
    The randomisation check runs once here, on all given rows, and is turned
    off (``max_propensity_auc=None``) in the clones fitted on folds.

    Examples
    --------
    >>> import numpy as np
    >>> from churnml.models.uplift import TLearner, InteractionLogistic, select_uplift_model
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(3000, 3)); t = rng.integers(0, 2, 3000)
    >>> y = (rng.random(3000) < 0.3 + 0.2 * t * (X[:, 0] > 0)).astype(int)
    >>> cands = {"t": TLearner(base="logistic"), "i": InteractionLogistic()}
    >>> name, model, table = select_uplift_model(X, y, t, cands, cv=3)
    >>> sorted(table.index) == ["i", "t"]
    True
    """
    if not candidates:
        raise ValueError(
            "The `candidates` parameter of select_uplift_model must be a non-empty dict."
        )
    if not (isinstance(cv, Integral) and cv >= 2):
        raise ValueError(
            f"The `cv` parameter of select_uplift_model must be an int >= 2. Got {cv!r} instead."
        )
    if default is None:
        default = next(iter(candidates))
    if default not in candidates:
        raise ValueError(
            f"The `default` parameter of select_uplift_model must be one of the candidates "
            f"{list(candidates)}. Got {default!r} instead."
        )
    if not (isinstance(margin_se, Real) and margin_se >= 0):
        raise ValueError(
            f"The `margin_se` parameter of select_uplift_model must be a number >= 0. "
            f"Got {margin_se!r} instead."
        )
    # The randomisation check runs once on all rows, not once per fold and candidate.
    thresholds = [
        m.get_params(deep=False)["max_propensity_auc"]
        for m in candidates.values()
        if "max_propensity_auc" in m.get_params(deep=False)
    ]
    thresholds = [a for a in thresholds if a is not None]
    Xc, y, t, categories, _ = _check_fit_data(X, y, treatment, "select_uplift_model", 1)
    if thresholds:
        _warn_if_not_random(Xc, t, categories, min(thresholds), seed, "select_uplift_model")
    names = list(candidates)

    folds = StratifiedKFold(cv, shuffle=True, random_state=seed)
    split = list(folds.split(np.zeros(len(y)), 2 * t + y))
    rows = []
    for name in names:
        scores, seconds, flat = [], 0.0, 0
        for train, held in split:
            model = _quiet_clone(candidates[name])
            start = time.perf_counter()
            model.fit(_take(X, train), y[train], t[train])
            uplift = model.predict(_take(X, held))
            seconds += time.perf_counter() - start
            scores.append(float(scoring(y[held], uplift, t[held])))
            flat += bool(np.ptp(uplift) == 0)
        if flat == cv:
            warnings.warn(
                DataWarning(
                    f"select_uplift_model: '{name}' predicted one uplift for every held-out row on "
                    f"all {cv} folds (too few rows for its settings?); it ranks nobody and is not "
                    "chosen."
                ),
                stacklevel=2,
            )
        undefined = int(np.isnan(scores).sum())
        if undefined:
            warnings.warn(
                DataWarning(
                    f"select_uplift_model: the score of '{name}' is undefined on {undefined} of "
                    f"{cv} folds; they are left out of its mean and of its comparison."
                ),
                stacklevel=2,
            )
        if progress is not None:
            progress(name, float(np.nanmean(scores)) if undefined < cv else float("nan"), seconds)
        folds_of = {f"fold_{i}": s for i, s in enumerate(scores)}
        rows.append({"candidate": name, **folds_of, "cv_seconds": seconds, "constant": flat == cv})
    table = pd.DataFrame(rows).set_index("candidate")
    folds_only = table[[f"fold_{i}" for i in range(cv)]]
    # Folds where a score is undefined (NaN) are skipped, and standard errors count only the rest.
    gains = folds_only - folds_only.loc[default]
    table.insert(0, "mean", folds_only.mean(axis=1))
    table.insert(1, "std", folds_only.std(axis=1, ddof=1))
    table.insert(2, "gain_over_default", gains.mean(axis=1))
    table.insert(3, "gain_se", gains.std(axis=1, ddof=1) / np.sqrt(gains.count(axis=1)))
    # A stable sort keeps the listed order on ties, so the choice depends only on the scores.
    table = table.sort_values("mean", ascending=False, kind="stable", na_position="last")
    # The highest mean among the candidates that beat the default clearly, else the default.
    # NaN comparisons are False: without two comparable folds a candidate cannot beat it.
    gain, se = table["gain_over_default"], table["gain_se"]
    ranks = ~table["constant"]
    clear = table.index[(gain > 0) & (gain > margin_se * se) & ranks]
    chosen = str(clear[0]) if len(clear) else default
    if table.loc[chosen, "constant"] and ranks.any():
        # A default that ranks nobody is no default: the best mean among those that rank.
        chosen = str(table.index[ranks][0])
    table.insert(4, "chosen", table.index == chosen)
    table.insert(5, "default", table.index == default)
    fitted = _quiet_clone(candidates[chosen]).fit(X, y, t)
    return chosen, fitted, table


def _quiet_clone(estimator):
    """A clone with the randomisation check off when the estimator has one."""
    model = clone(estimator)
    if "max_propensity_auc" in model.get_params(deep=False):
        model.set_params(max_propensity_auc=None)
    return model


def _take(X, idx):
    return X.iloc[idx] if isinstance(X, pd.DataFrame) else np.asarray(X)[idx]


def default_candidates(seed: int = 0, n_jobs: int = 1) -> dict:
    """A sensible set of uplift learners to choose from with :func:`select_uplift_model`.

    The LightGBM learners use shallow, heavily regularised trees (7 leaves, at
    least 200 rows per leaf, 100 trees at rate 0.05, column and row subsampling):
    uplift is a small difference between two noisy probabilities and the
    reference settings over-fit it. The linear learners are standardised L2
    logistic regressions; the interaction models shrink the heterogeneity terms
    (``interaction_scale=0.1``), one of them with splines of the continuous
    columns. These settings were compared by cross-validated Qini on the
    training parts of the Hillstrom benchmark splits (``benchmarks/hillstrom.py``).

    The spline interaction model is listed first, so it is the default that
    :func:`select_uplift_model` keeps unless another candidate beats it by more
    than a standard error: over 30 Hillstrom splits it was the best single learner
    in both settings, while on the simulator's campaigns the LightGBM learners beat
    it by several standard errors and are chosen.

    Parameters
    ----------
    seed : int, default=0
        ``random_state`` of every candidate.
    n_jobs : int, default=1
        LightGBM threads of every candidate.

    Returns
    -------
    dict of str to estimator
        Unfitted learners, keyed by a short name.

    Examples
    --------
    >>> sorted(default_candidates())[:3]
    ['class_transformation_logistic', 'dr_lightgbm', 'interaction_logistic']
    """
    trees = {
        "n_estimators": 100,
        "learning_rate": 0.05,
        "num_leaves": 7,
        "min_child_samples": 200,
        "subsample": 0.8,
        "subsample_freq": 1,
        "colsample_bytree": 0.8,
        "reg_lambda": 10.0,
    }
    effect = {**trees, "min_child_samples": 400}
    common = {"random_state": seed, "n_jobs": n_jobs}
    return {
        # First listed: the default that select_uplift_model keeps unless clearly beaten.
        "interaction_logistic_splines": InteractionLogistic(
            interaction_scale=0.1, spline_knots=4, **common
        ),
        "s_lightgbm": SLearner(base_params=trees, **common),
        "t_lightgbm": TLearner(base="lightgbm", base_params=trees, **common),
        "x_lightgbm": XLearner(base_params=trees, effect_params=effect, **common),
        "dr_lightgbm": DRLearner(base_params=trees, effect_params=effect, **common),
        "class_transformation_logistic": ClassTransformation(base="logistic", **common),
        "t_logistic": TLearner(base="logistic", **common),
        "interaction_logistic": InteractionLogistic(interaction_scale=0.1, **common),
    }
