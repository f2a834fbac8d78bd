"""Multi-arm uplift learners: one uplift per channel against control, from a campaign randomised over arms.

The data are one row per exposure with the *arm* it got: ``control`` or a
channel name. Every learner here follows ``fit(X, y, arm) -> self``,
``predict(X) -> uplift`` of shape ``(n_samples, n_channels)`` (columns in the
order of ``channels_``, the non-control arms sorted by name) and
``predict_outcomes(X) -> (p_control, p_channels)``. They extend the binary
learners where that is natural:

* :class:`MultiArmTLearner`: one outcome model per arm (control included);
  the uplift of a channel is its model's probability minus control's;
* :class:`MultiArmSLearner`: one LightGBM model with the arm as a categorical
  feature, scored with the arm set to each channel and to control;
* :class:`PerArmUplift`: any binary learner (X-learner, interaction logistic,
  doubly robust, ...) fitted once per channel on that channel's rows and the
  control rows.

Per-arm uplift calibration (:func:`arm_calibration`) maps each channel's
predicted uplift linearly onto its doubly robust pseudo-outcome, from
out-of-fold predictions; a fitted learner given ``calibration_`` applies it in
``predict`` and ``predict_outcomes``. Choosing a channel compares uplifts across
channels, so a channel whose model over-states how much users differ (its
ranking is mostly noise) would win users by noise; calibration shrinks it to
what the held-out outcomes support.

As for the binary learners, the arms are assumed randomised: ``fit`` warns
(:class:`~churnml.exceptions.DataWarning`) when a linear propensity model
tells a channel's rows from the control rows.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.utils._param_validation import Interval

from churnml.exceptions import TrainingDataError
from churnml.models.uplift._base import (
    _TREATMENT_COLUMN,
    _check_features,
    _lgbm_classifier,
    _proba,
    _rows,
    _UpliftBase,
    _warn_if_not_random,
)
from churnml.models.uplift.learners import _BASES, _base_model

__all__ = ["CONTROL", "MultiArmSLearner", "MultiArmTLearner", "PerArmUplift", "arm_calibration", "check_arm_data",
           "check_randomised"]

#: The label of the control arm, unless a learner's ``control`` parameter says otherwise.
CONTROL = "control"


def check_arm_data(X, y, arm, caller: str, min_group: int, control: str = CONTROL):
    """Check multi-arm training data; return ``(X, y, codes, channels, categories, feature_names)``.

    ``codes`` holds 0 for control and ``k`` for the ``k``-th channel of
    ``channels`` (the non-control arms, sorted). Each arm needs ``min_group``
    rows and an outcome that varies.

    Raises
    ------
    TrainingDataError
        One line naming what is wrong: lengths, no control rows, no channel,
        an arm too small or with a constant outcome.
    """
    from churnml.models.uplift._base import _binary_vector

    Xc, categories, names = _check_features(X, caller)
    y = _binary_vector(y, "y", caller)
    labels = np.asarray(arm, dtype=object).reshape(-1)
    if not len(Xc) == len(y) == len(labels):
        raise TrainingDataError(f"X, y and arm passed to {caller} must have the same number of rows. "
                                f"Got {len(Xc):,}, {len(y):,} and {len(labels):,}.")
    if pd.isna(labels).any():
        raise TrainingDataError(f"The `arm` passed to {caller} has {int(pd.isna(labels).sum()):,} missing values.")
    labels = labels.astype(str)
    channels = sorted(set(labels.tolist()) - {control})
    n_control = int((labels == control).sum())
    if not n_control:
        raise TrainingDataError(f"{caller} got no control rows (arm == {control!r}) among {len(labels):,} rows: "
                                "there is nothing to compare the channels with.")
    if not channels:
        raise TrainingDataError(f"{caller} got only control rows ({n_control:,}): no channel to learn about.")
    codes = np.zeros(len(labels), dtype=np.int64)
    for k, name in enumerate(channels, start=1):
        codes[labels == name] = k
    sizes = np.bincount(codes, minlength=len(channels) + 1)
    small = [f"{a} {n:,}" for a, n in zip([control, *channels], sizes, strict=True) if n < min_group]
    if small:
        raise TrainingDataError(f"{caller} needs at least min_group={min_group} rows in each arm. "
                                f"Got {', '.join(small)}.")
    for k, name in enumerate([control, *channels]):
        rate = y[codes == k].mean()
        if rate in (0.0, 1.0):
            raise TrainingDataError(f"The outcome `y` is constant ({int(rate)}) in all {int(sizes[k]):,} "
                                    f"{name} rows passed to {caller}; uplift cannot be learned.")
    return Xc, y, codes, channels, categories, names


def check_randomised(X, codes: np.ndarray, channels: list[str], categories: dict, max_auc: float, seed: int,
                     owner: str, control: str = CONTROL) -> dict[str, float]:
    """Warn (DataWarning) for each channel whose rows a propensity model tells from the control rows.

    Returns the cross-validated ROC AUC of each channel against control.
    """
    out = {}
    for k, c in enumerate(channels, start=1):
        pair = (codes == 0) | (codes == k)
        out[c] = _warn_if_not_random(_rows(X, pair), (codes[pair] == k).astype(np.int8), categories, max_auc, seed,
                                     f"{owner} ({c} against {control})")
    return out


class _MultiArmBase(_UpliftBase):
    """Input checks, arm bookkeeping and the randomisation check shared by the multi-arm learners."""

    _parameter_constraints: ClassVar[dict] = {
        "control": [str],
        "min_group": [Interval(Integral, 1, None, closed="left")],
        "max_propensity_auc": [Interval(Real, 0.5, 1, closed="both"), None],
        "random_state": [Interval(Integral, 0, None, closed="left")],
        "n_jobs": [Integral],
    }

    def _fit_arm_inputs(self, X, y, arm):
        """Validate params and data, learn the schema and the arms; return ``(X, y, codes)``."""
        self._validate_params()
        owner = type(self).__name__
        Xc, y, codes, channels, categories, names = check_arm_data(
            X, y, arm, f"{owner}.fit", self.min_group, self.control)
        self._record_schema(Xc, categories, names)
        self.channels_ = channels
        n0 = int((codes == 0).sum())
        # Each channel's share among its own and the control rows: the propensity of its contrast.
        self.propensity_ = {c: float((codes == k).sum() / ((codes == k).sum() + n0))
                            for k, c in enumerate(channels, start=1)}
        self.propensity_auc_ = None
        if self.max_propensity_auc is not None:
            self.propensity_auc_ = check_randomised(Xc, codes, channels, categories, self.max_propensity_auc,
                                                    self.random_state, owner, self.control)
        return Xc, y, codes

    def predict(self, X) -> np.ndarray:
        """Predict each channel's uplift ``P(y=1 | channel) - P(y=1 | control)`` of each row.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Rows with the features seen in ``fit``.

        Returns
        -------
        ndarray of shape (n_samples, n_channels)
            Columns in the order of ``channels_``.

        Raises
        ------
        NotFittedError, SchemaMismatchError
            As for the binary learners.
        """
        X = self._predict_inputs(X)
        if getattr(self, "calibration_", None) is None:
            return self._uplift(X)
        p0, p = self._calibrated(X)
        return p - p0[:, None]

    def predict_outcomes(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Predict the outcome probability of each row without a message and with each channel.

        With ``calibration_`` (see :func:`arm_calibration`), each channel's
        probability is control's plus its calibrated uplift, clipped to [0, 1].

        Returns
        -------
        p_control : ndarray of shape (n_samples,)
        p_channels : ndarray of shape (n_samples, n_channels)
            Columns in the order of ``channels_``.
        """
        return self._calibrated(self._predict_inputs(X))

    def _calibrated(self, X) -> tuple[np.ndarray, np.ndarray]:
        p0, p = self._outcomes(X)
        cal = getattr(self, "calibration_", None)
        if cal is None:
            return p0, p
        up = cal[:, 1] + cal[:, 2] * (p - p0[:, None] - cal[:, 0])
        return p0, np.clip(p0[:, None] + up, 0.0, 1.0)

    def _uplift(self, X) -> np.ndarray:
        p0, p = self._outcomes(X)
        return p - p0[:, None]


_ARM_PARAMS_DOC = """control : str, default="control"
        The label of the control arm in ``arm``.
    min_group : int, default=50
        The fewest rows each arm may have.
    max_propensity_auc : float in [0.5, 1] or None, default=0.6
        ``fit`` warns when a cross-validated linear propensity model tells a
        channel's rows from the control rows with a higher ROC AUC. None skips it.
    random_state : int, default=0
    n_jobs : int, default=1
        Threads LightGBM may use."""

_ARM_ATTRS_DOC = """channels_ : list of str
        The channels, in the order of the uplift columns.
    propensity_ : dict of str to float
        Each channel's share among its rows and the control rows.
    propensity_auc_ : dict of str to float or None
        Cross-validated ROC AUC of the randomisation check per channel.
    n_features_in_, feature_names_in_, categories_
        The fitted schema, as for the binary learners."""


def _fill_arm_doc(cls):
    cls.__doc__ = cls.__doc__.replace("{arm_params}", _ARM_PARAMS_DOC).replace("{arm_attrs}", _ARM_ATTRS_DOC)
    return cls


@_fill_arm_doc
class MultiArmTLearner(_MultiArmBase):
    """T-learner over arms: one outcome model per arm, control included.

    Parameters
    ----------
    base : {"lightgbm", "logistic"}, default="lightgbm"
        The outcome model of each arm.
    base_params : dict or None, default=None
        LightGBM parameters over the reference settings (``base="lightgbm"`` only).
    C : float > 0, default=1.0
        Inverse L2 strength of the logistic regression (``base="logistic"`` only).
    {arm_params}

    Attributes
    ----------
    models_ : list of estimator
        The outcome model of control, then of each channel.
    {arm_attrs}

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(3000, 2)); arm = rng.choice(["control", "a", "b"], 3000)
    >>> p = 0.2 + 0.2 * (arm == "a") * (X[:, 0] > 0) + 0.2 * (arm == "b") * (X[:, 0] < 0)
    >>> up = MultiArmTLearner(base="logistic").fit(X, rng.random(3000) < p, arm).predict([[2, 0], [-2, 0]])
    >>> up.argmax(axis=1).tolist()  # channels_ == ["a", "b"]
    [0, 1]
    """

    _parameter_constraints: ClassVar[dict] = {
        **_MultiArmBase._parameter_constraints,
        "base": _BASES,
        "base_params": [dict, None],
        "C": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, *, base="lightgbm", base_params=None, C=1.0, control=CONTROL, min_group=50,
                 max_propensity_auc=0.6, random_state=0, n_jobs=1):
        self.base = base
        self.base_params = base_params
        self.C = C
        self.control = control
        self.min_group = min_group
        self.max_propensity_auc = max_propensity_auc
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y, arm):
        """Fit one outcome model per arm.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Binary outcome.
        arm : array-like of shape (n_samples,)
            ``control`` or the channel of each row.

        Returns
        -------
        self : object

        Raises
        ------
        TrainingDataError
            See :func:`check_arm_data`.
        """
        X, y, codes = self._fit_arm_inputs(X, y, arm)
        self.models_ = [_base_model(self).fit(_rows(X, codes == k), y[codes == k])
                        for k in range(len(self.channels_) + 1)]
        return self

    def _outcomes(self, X):
        p = np.column_stack([_proba(m, X) for m in self.models_])
        return p[:, 0], p[:, 1:]


@_fill_arm_doc
class MultiArmSLearner(_MultiArmBase):
    """S-learner over arms: one LightGBM classifier with the arm as a categorical feature.

    Parameters
    ----------
    base_params : dict or None, default=None
        Parameters of :class:`lightgbm.LGBMClassifier` over the reference settings.
    {arm_params}

    Attributes
    ----------
    model_ : lightgbm.LGBMClassifier
        The fitted classifier; its last feature is the arm (0 = control, k = k-th channel).
    {arm_attrs}
    """

    _parameter_constraints: ClassVar[dict] = {
        **_MultiArmBase._parameter_constraints,
        "base_params": [dict, None],
    }

    def __init__(self, *, base_params=None, control=CONTROL, min_group=50, max_propensity_auc=0.6,
                 random_state=0, n_jobs=1):
        self.base_params = base_params
        self.control = control
        self.min_group = min_group
        self.max_propensity_auc = max_propensity_auc
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y, arm):
        """Fit the classifier on the features and the arm.

        Parameters, Returns and Raises are those of :meth:`MultiArmTLearner.fit`.
        """
        X, y, codes = self._fit_arm_inputs(X, y, arm)
        self.model_ = _lgbm_classifier(self).fit(self._with_arm(X, codes), y,
                                                 categorical_feature=[self.n_features_in_])
        return self

    def _with_arm(self, X, codes) -> pd.DataFrame | np.ndarray:
        if isinstance(X, pd.DataFrame):
            arms = pd.Categorical(codes, categories=range(len(self.channels_) + 1))
            return X.assign(**{_TREATMENT_COLUMN: arms})
        return np.column_stack([X, np.asarray(codes, dtype=float)])

    def _outcomes(self, X):
        n = len(X)
        p = np.column_stack([_proba(self.model_, self._with_arm(X, np.full(n, k)))
                             for k in range(len(self.channels_) + 1)])
        return p[:, 0], p[:, 1:]


@_fill_arm_doc
class PerArmUplift(_MultiArmBase):
    """Any binary uplift learner, fitted once per channel on that channel's rows and the control rows.

    The uplift of channel ``c`` is what ``learner`` fitted on ``c`` against
    control predicts. ``predict_outcomes`` gives the mean of the per-channel
    models' control probability and, for each channel, that plus its uplift
    (clipped to [0, 1]).

    Parameters
    ----------
    learner : estimator
        An unfitted binary learner of :mod:`churnml.models.uplift` (e.g.
        :class:`~churnml.models.uplift.XLearner`); it is cloned per channel.
    {arm_params}

    Attributes
    ----------
    learners_ : list of estimator
        The fitted learner of each channel, in the order of ``channels_``.
    {arm_attrs}
    """

    _parameter_constraints: ClassVar[dict] = {
        **_MultiArmBase._parameter_constraints,
        "learner": [BaseEstimator, None],
    }

    def __init__(self, learner=None, *, control=CONTROL, min_group=50, max_propensity_auc=0.6,
                 random_state=0, n_jobs=1):
        self.learner = learner
        self.control = control
        self.min_group = min_group
        self.max_propensity_auc = max_propensity_auc
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y, arm):
        """Fit the binary learner once per channel (its rows and the control rows).

        Parameters, Returns and Raises are those of :meth:`MultiArmTLearner.fit`.
        """
        if self.learner is None:
            raise ValueError("The `learner` parameter of PerArmUplift must be a binary uplift learner. "
                             "Got None instead.")
        X, y, codes = self._fit_arm_inputs(X, y, arm)
        fitted = []
        for k in range(1, len(self.channels_) + 1):
            pair = (codes == 0) | (codes == k)
            model = clone(self.learner)
            # The randomisation check ran above, per channel; the seed and threads are this learner's.
            model.set_params(**{k_: v for k_, v in (("max_propensity_auc", None), ("min_group", 1),
                                                     ("random_state", self.random_state), ("n_jobs", self.n_jobs))
                                if k_ in model.get_params(deep=False)})
            fitted.append(model.fit(_rows(X, pair), y[pair], (codes[pair] == k).astype(np.int8)))
        self.learners_ = fitted
        return self

    def _parts(self, X) -> tuple[np.ndarray, np.ndarray]:
        """The mean control probability and the uplift of every channel's learner."""
        p0, uplift = [], []
        for model in self.learners_:
            Xm = model._predict_inputs(X)
            p0.append(model._outcomes(Xm)[0])
            uplift.append(model._uplift(Xm))
        return np.mean(p0, axis=0), np.column_stack(uplift)

    def _uplift(self, X):
        return self._parts(X)[1]

    def _outcomes(self, X):
        p0, uplift = self._parts(X)
        return p0, np.clip(p0[:, None] + uplift, 0.0, 1.0)



def arm_calibration(y, arm, p_control, p_channels, channels: list[str], control: str = CONTROL) -> np.ndarray:
    """Per-channel linear uplift calibration from out-of-fold outcome predictions.

    For channel ``k`` with predicted uplift ``u = p_k - p_control``, the doubly
    robust pseudo-outcome ``z = u + 1[arm=k] (y - p_k) / e_k - 1[arm=control]
    (y - p_control) / e_0`` (``e`` the arms' shares of the rows) has the true
    uplift as its expectation in a randomised campaign. An ordinary least
    squares line ``z ~ a + b (u - mean(u))`` gives the calibrated uplift
    ``a + b (u - mean(u))``; ``b`` is kept at 0 or above (a channel whose
    ranking is not supported by held-out outcomes gets its mean uplift for
    everyone). The predictions must be out-of-fold: in-sample ones over-state ``b``.

    Parameters
    ----------
    y : array-like of shape (n,)
        Binary outcome.
    arm : array-like of shape (n,)
        ``control`` or the channel of each row.
    p_control : array-like of shape (n,)
    p_channels : array-like of shape (n, n_channels)
        Out-of-fold predicted outcome probabilities, columns in the order of ``channels``.
    channels : list of str
    control : str, default="control"

    Returns
    -------
    ndarray of shape (n_channels, 3)
        Per channel: the centre ``mean(u)``, the intercept ``a`` and the slope ``b``;
        set it as ``calibration_`` of a fitted multi-arm learner.

    Examples
    --------
    Predictions twice as spread out as the outcomes support are halved:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> n = 40000; x = rng.normal(size=n); arm = rng.choice(["control", "a"], n)
    >>> y = (rng.random(n) < 0.3 + 0.1 * (arm == "a") * (x > 0)).astype(int)
    >>> p0 = np.full(n, 0.3); p1 = 0.3 + 0.2 * (x > 0)[:, None]
    >>> cal = arm_calibration(y, arm, p0, p1, ["a"])
    >>> bool(0.4 < cal[0, 2] < 0.6)
    True
    """
    y = np.asarray(y, dtype=float).reshape(-1)
    labels = np.asarray(arm, dtype=object).astype(str).reshape(-1)
    p0 = np.asarray(p_control, dtype=float).reshape(-1)
    p = np.asarray(p_channels, dtype=float).reshape(len(y), len(channels))
    is0 = labels == control
    e0 = is0.mean()
    out = np.zeros((len(channels), 3))
    for k, c in enumerate(channels):
        isk = labels == c
        u = p[:, k] - p0
        z = u + isk * (y - p[:, k]) / max(isk.mean(), 1e-12) - is0 * (y - p0) / max(e0, 1e-12)
        centre = u.mean()
        d = u - centre
        var = float(d @ d)
        slope = max(float(d @ (z - z.mean())) / var, 0.0) if var > 0 else 0.0
        out[k] = centre, z.mean(), slope
    return out
