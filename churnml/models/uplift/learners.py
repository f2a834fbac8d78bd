"""The binary uplift learners: S, T, X, doubly robust, class transformation, interaction logistic."""

from __future__ import annotations

from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.utils._param_validation import Interval, StrOptions

from churnml.models.uplift._base import (
    _fill_doc,
    _lgbm_classifier,
    _lgbm_regressor,
    _LinearFeatures,
    _logistic,
    _proba,
    _rows,
    _UpliftBase,
    _with_treatment,
)

__all__ = ["ClassTransformation", "DRLearner", "InteractionLogistic", "SLearner", "TLearner", "XLearner"]

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
