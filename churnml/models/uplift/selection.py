"""Segments, cross-validated choice among uplift learners, and the default candidates."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold

from churnml.exceptions import DataWarning
from churnml.metrics import qini_auc_score
from churnml.models.uplift._base import _check_fit_data, _warn_if_not_random
from churnml.models.uplift.learners import (
    ClassTransformation,
    DRLearner,
    InteractionLogistic,
    SLearner,
    TLearner,
    XLearner,
)

__all__ = ["default_candidates", "default_multiarm_candidates", "segments", "select_multiarm_model",
           "select_uplift_model"]

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
    default = _check_selection_args("select_uplift_model", candidates, cv, default, margin_se)
    # The randomisation check runs once on all rows, not once per fold and candidate.
    threshold = _check_threshold(candidates)
    Xc, y, t, categories, _ = _check_fit_data(X, y, treatment, "select_uplift_model", 1)
    if threshold is not None:
        _warn_if_not_random(Xc, t, categories, threshold, seed, "select_uplift_model")
    return _choose(X, y, t, 2 * t + y, candidates, cv=cv, seed=seed, scoring=scoring, default=default,
                   margin_se=margin_se, progress=progress, owner="select_uplift_model")


def _check_selection_args(owner: str, candidates: dict, cv, default, margin_se) -> str:
    """Check the arguments every selection shares; return the default candidate's name."""
    if not candidates:
        raise ValueError(f"The `candidates` parameter of {owner} must be a non-empty dict.")
    if not (isinstance(cv, Integral) and cv >= 2):
        raise ValueError(f"The `cv` parameter of {owner} must be an int >= 2. Got {cv!r} instead.")
    if default is None:
        default = next(iter(candidates))
    if default not in candidates:
        raise ValueError(
            f"The `default` parameter of {owner} must be one of the candidates "
            f"{list(candidates)}. Got {default!r} instead."
        )
    if not (isinstance(margin_se, Real) and margin_se >= 0):
        raise ValueError(
            f"The `margin_se` parameter of {owner} must be a number >= 0. Got {margin_se!r} instead."
        )
    return default


def _check_threshold(candidates: dict) -> float | None:
    """The strictest randomisation-check threshold among the candidates (None if none checks)."""
    thresholds = [
        m.get_params(deep=False)["max_propensity_auc"]
        for m in candidates.values()
        if "max_propensity_auc" in m.get_params(deep=False)
    ]
    thresholds = [a for a in thresholds if a is not None]
    return min(thresholds) if thresholds else None


def _choose(X, y, treatment, strata, candidates: dict, *, cv: int, seed: int, scoring: Callable,
            default: str, margin_se: float, progress, owner: str, out_of_fold: dict | None = None):
    """Cross-validate every candidate on folds stratified by ``strata``, choose, refit; see select_uplift_model.

    With ``out_of_fold`` (a dict), each candidate's out-of-fold ``predict_outcomes``
    are stored in it under its name, as ``(p_control, p_channels)``.
    """
    folds = StratifiedKFold(cv, shuffle=True, random_state=seed)
    split = list(folds.split(np.zeros(len(y)), strata))
    rows = []
    for name in candidates:
        scores, seconds, flat = [], 0.0, 0
        held_out = []
        for train, held in split:
            model = _quiet_clone(candidates[name])
            start = time.perf_counter()
            model.fit(_take(X, train), y[train], treatment[train])
            uplift = model.predict(_take(X, held))
            if out_of_fold is not None:
                held_out.append((held, *model.predict_outcomes(_take(X, held))))
            seconds += time.perf_counter() - start
            scores.append(float(scoring(y[held], uplift, treatment[held])))
            flat += bool(np.ptp(uplift) == 0)
        if flat == cv:
            warnings.warn(
                DataWarning(
                    f"{owner}: '{name}' predicted one uplift for every held-out row on "
                    f"all {cv} folds (too few rows for its settings?); it ranks nobody and is not "
                    "chosen."
                ),
                stacklevel=3,
            )
        undefined = int(np.isnan(scores).sum())
        if undefined:
            warnings.warn(
                DataWarning(
                    f"{owner}: the score of '{name}' is undefined on {undefined} of "
                    f"{cv} folds; they are left out of its mean and of its comparison."
                ),
                stacklevel=3,
            )
        if progress is not None:
            progress(name, float(np.nanmean(scores)) if undefined < cv else float("nan"), seconds)
        if out_of_fold is not None:
            p0 = np.empty(len(y))
            p = np.empty((len(y), *held_out[0][2].shape[1:]))
            for held, a, b in held_out:
                p0[held], p[held] = a, b
            out_of_fold[name] = (p0, p)
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
    fitted = _quiet_clone(candidates[chosen]).fit(X, y, treatment)
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


def select_multiarm_model(
    X,
    y,
    arm,
    candidates: dict,
    *,
    cv: int = 5,
    seed: int = 0,
    scoring: Callable | None = None,
    default: str | None = None,
    margin_se: float = 1.0,
    control: str = "control",
    calibrate: bool = True,
    progress: Callable[[str, float, float], None] | None = None,
):
    """Choose among multi-arm uplift learners by cross-validated multi-arm Qini, then refit the choice.

    The same champion/challenger rule as :func:`select_uplift_model`: folds
    stratified by arm and outcome; the ``default`` candidate is kept unless
    another beats it by more than ``margin_se`` standard errors of the paired
    fold differences. Only the rows passed in are used. With ``calibrate``, the
    refitted choice gets per-channel uplift calibration
    (:func:`~churnml.models.uplift.multiarm.arm_calibration`) from its own
    out-of-fold predictions on these folds: no extra fits, no other rows.

    Parameters
    ----------
    X : DataFrame or array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
        Binary outcome.
    arm : array-like of shape (n_samples,)
        ``control`` or the channel of each row.
    candidates : dict of str to estimator
        Named multi-arm learners (:mod:`churnml.models.uplift.multiarm`).
    cv, seed, default, margin_se, progress
        As in :func:`select_uplift_model`.
    scoring : callable, optional
        ``scoring(y_true, uplift, arm) -> float`` with ``uplift`` of shape
        ``(n, n_channels)``, columns in the channels' sorted order; default
        :func:`churnml.metrics.multiarm_qini_auc_score`.
    control : str, default="control"
        The label of the control arm.
    calibrate : bool, default=True
        Set ``calibration_`` of the refitted choice.

    Returns
    -------
    chosen_name, fitted_chosen, table
        As in :func:`select_uplift_model`.

    Raises
    ------
    ValueError
        As in :func:`select_uplift_model`.
    TrainingDataError
        If the arms are unusable (see :func:`churnml.models.uplift.multiarm.check_arm_data`).
    """
    from churnml.metrics import multiarm_qini_auc_score
    from churnml.models.uplift.multiarm import arm_calibration, check_arm_data, check_randomised

    default = _check_selection_args("select_multiarm_model", candidates, cv, default, margin_se)
    Xc, y, codes, channels, categories, _ = check_arm_data(X, y, arm, "select_multiarm_model", 1, control)
    threshold = _check_threshold(candidates)
    if threshold is not None:
        check_randomised(Xc, codes, channels, categories, threshold, seed, "select_multiarm_model", control)
    labels = np.asarray([control, *channels], dtype=object)[codes]
    if scoring is None:
        def scoring(y_true, uplift, arms):
            return multiarm_qini_auc_score(y_true, uplift, arms, channels=channels, control=control)
    oof = {} if calibrate else None
    chosen, fitted, table = _choose(X, y, labels, 2 * codes + y, candidates, cv=cv, seed=seed, scoring=scoring,
                                    default=default, margin_se=margin_se, progress=progress,
                                    owner="select_multiarm_model", out_of_fold=oof)
    if calibrate:
        fitted.calibration_ = arm_calibration(y, labels, *oof[chosen], channels, control)
    return chosen, fitted, table


def default_multiarm_candidates(seed: int = 0, n_jobs: int = 1) -> dict:
    """The multi-arm learners to choose from with :func:`select_multiarm_model`.

    The binary candidates of :func:`default_candidates` where they extend to
    arms: the spline interaction model per channel (listed first: the default
    kept unless clearly beaten, as for one channel), the T-learner over arms
    with LightGBM and with logistic regression, the S-learner with the arm as a
    feature, and the X-learner per channel, with the same regularised trees.
    The doubly robust and class-transformation learners also run per channel
    (:class:`~churnml.models.uplift.multiarm.PerArmUplift`) but are left out:
    they cost the most and were never chosen on one channel's simulated campaigns.

    Parameters
    ----------
    seed : int, default=0
    n_jobs : int, default=1

    Returns
    -------
    dict of str to estimator

    Examples
    --------
    >>> list(default_multiarm_candidates())[0]
    'interaction_logistic_splines'
    """
    from churnml.models.uplift.multiarm import MultiArmSLearner, MultiArmTLearner, PerArmUplift

    binary = default_candidates(seed=seed, n_jobs=n_jobs)
    trees = binary["t_lightgbm"].base_params
    common = {"random_state": seed, "n_jobs": n_jobs}
    return {
        "interaction_logistic_splines": PerArmUplift(binary["interaction_logistic_splines"], **common),
        "s_lightgbm": MultiArmSLearner(base_params=trees, **common),
        "t_lightgbm": MultiArmTLearner(base="lightgbm", base_params=trees, **common),
        "x_lightgbm": PerArmUplift(binary["x_lightgbm"], **common),
        "t_logistic": MultiArmTLearner(base="logistic", **common),
    }
