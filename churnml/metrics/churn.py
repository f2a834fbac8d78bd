"""Churn metrics: ROC and PR areas, Brier, log loss, calibration, lift and capture, AUC by group."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd
from sklearn import metrics as _skm

from churnml.metrics._checks import (
    _check_choice,
    _check_inputs,
    _check_int,
    _check_share,
)

# --------------------------------------------------------------------------- churn


def roc_auc(y_true, y_prob) -> float:
    """Compute the area under the ROC curve.

    A thin wrapper of :func:`sklearn.metrics.roc_auc_score` behind the shared
    input check.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed binary outcome (1 = churned), 0/1 or bool; both classes
        must be present.
    y_prob : array-like of shape (n_samples,)
        Predicted probability of the positive class, in [0, 1].

    Returns
    -------
    float
        ROC AUC, between 0 and 1.

    Raises
    ------
    ValueError
        If the inputs fail the shared input check or ``y_true`` has one class
        only (scikit-learn would warn and return NaN).

    Examples
    --------
    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    y_true, y_prob = _check_inputs(
        "roc_auc", both_classes=("y_true",), y_true=y_true, y_prob=y_prob
    )
    return float(_skm.roc_auc_score(y_true, y_prob))


def pr_auc(y_true, y_prob) -> float:
    """Compute the area under the precision-recall curve as average precision.

    A thin wrapper of :func:`sklearn.metrics.average_precision_score` (the
    step-wise sum, not the trapezoidal area, which is optimistic).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed binary outcome, 0/1 or bool; both classes must be present.
    y_prob : array-like of shape (n_samples,)
        Predicted probability of the positive class, in [0, 1].

    Returns
    -------
    float
        Average precision, between the positive rate and 1.

    Raises
    ------
    ValueError
        If the inputs fail the shared input check or ``y_true`` has one class
        only.

    Examples
    --------
    >>> round(pr_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 4)
    0.8333
    """
    y_true, y_prob = _check_inputs(
        "pr_auc", both_classes=("y_true",), y_true=y_true, y_prob=y_prob
    )
    return float(_skm.average_precision_score(y_true, y_prob))


def brier_score(y_true, y_prob) -> float:
    """Compute the Brier score, the mean squared error of the probabilities.

    A thin wrapper of :func:`sklearn.metrics.brier_score_loss`.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed binary outcome, 0/1 or bool.
    y_prob : array-like of shape (n_samples,)
        Predicted probability of the positive class, in [0, 1].

    Returns
    -------
    float
        The Brier score; lower is better, 0 is perfect.

    Raises
    ------
    ValueError
        If the inputs fail the shared input check.

    Examples
    --------
    >>> round(brier_score([0, 1], [0.2, 0.6]), 4)
    0.1
    """
    y_true, y_prob = _check_inputs("brier_score", both_classes=(), y_true=y_true, y_prob=y_prob)
    return float(_skm.brier_score_loss(y_true, y_prob, labels=[0, 1]))


def log_loss(y_true, y_prob) -> float:
    """Compute the mean binary cross-entropy (log loss).

    A thin wrapper of :func:`sklearn.metrics.log_loss` with ``labels=[0, 1]``,
    so a sample holding one class only is still scored. scikit-learn clips
    probabilities away from 0 and 1 by the float epsilon.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed binary outcome, 0/1 or bool.
    y_prob : array-like of shape (n_samples,)
        Predicted probability of the positive class, in [0, 1].

    Returns
    -------
    float
        The log loss in nats; lower is better.

    Raises
    ------
    ValueError
        If the inputs fail the shared input check.

    Examples
    --------
    >>> round(log_loss([0, 1], [0.5, 0.5]), 4)
    0.6931
    """
    y_true, y_prob = _check_inputs("log_loss", both_classes=(), y_true=y_true, y_prob=y_prob)
    return float(_skm.log_loss(y_true, y_prob, labels=[0, 1]))


def _reliability(y_true, y_prob, n_bins: int, strategy: str) -> pd.DataFrame:
    # The binning of sklearn.calibration.calibration_curve, which returns no
    # counts; the ECE needs them. Empty bins are dropped, as scikit-learn does.
    if strategy == "quantile":
        edges = np.percentile(y_prob, np.linspace(0, 1, n_bins + 1) * 100)
    else:
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    bin_ids = np.searchsorted(edges[1:-1], y_prob)
    total = np.bincount(bin_ids, minlength=n_bins)
    prob_sum = np.bincount(bin_ids, weights=y_prob, minlength=n_bins)
    true_sum = np.bincount(bin_ids, weights=y_true, minlength=n_bins)
    filled = np.flatnonzero(total)
    return pd.DataFrame(
        {
            "bin": filled,
            "n": total[filled],
            "mean_predicted": prob_sum[filled] / total[filled],
            "observed_rate": true_sum[filled] / total[filled],
        }
    )


def reliability_table(
    y_true, y_prob, *, n_bins: int = 10, strategy: Literal["quantile", "uniform"] = "quantile"
) -> pd.DataFrame:
    """Tabulate predicted against observed churn rates in bins of probability.

    The bins are those of :func:`sklearn.calibration.calibration_curve`:
    ``"quantile"`` cuts at the percentiles of ``y_prob`` (tied probabilities
    can leave some bins empty), ``"uniform"`` cuts [0, 1] into equal widths.
    Each edge belongs to the bin above it. Empty bins are left out, so
    ``mean_predicted`` and ``observed_rate`` equal scikit-learn's
    ``prob_pred`` and ``prob_true``; this table adds the counts.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed binary outcome, 0/1 or bool.
    y_prob : array-like of shape (n_samples,)
        Predicted probability of the positive class, in [0, 1].
    n_bins : int, default=10
        Number of bins, at least 1.
    strategy : {"quantile", "uniform"}, default="quantile"
        How the bin edges are chosen.

    Returns
    -------
    pandas.DataFrame
        One row per non-empty bin with columns ``bin`` (0-based bin number),
        ``n``, ``mean_predicted`` and ``observed_rate``.

    Raises
    ------
    ValueError
        If the inputs fail the shared input check, ``n_bins`` is not a
        positive int or ``strategy`` is unknown.

    Examples
    --------
    >>> table = reliability_table([0, 1, 1, 1], [0.1, 0.2, 0.8, 0.9], n_bins=2,
    ...                           strategy="uniform")
    >>> table[["n", "observed_rate"]].values.tolist()
    [[2.0, 0.5], [2.0, 1.0]]
    """
    owner = "reliability_table"
    y_true, y_prob = _check_inputs(owner, both_classes=(), y_true=y_true, y_prob=y_prob)
    _check_int(owner, "n_bins", n_bins, low=1)
    _check_choice(owner, "strategy", strategy, ("quantile", "uniform"))
    return _reliability(y_true, y_prob, n_bins, strategy)


def expected_calibration_error(
    y_true, y_prob, *, n_bins: int = 10, strategy: Literal["quantile", "uniform"] = "quantile"
) -> float:
    """Compute the expected calibration error (ECE).

    ``sum_b n_b / n * |observed_rate_b - mean_predicted_b|`` over the bins of
    :func:`reliability_table`. With few rows per bin the ECE is biased upward
    by sampling noise (about ``sqrt(p(1-p) / n_b)`` per bin), so compare it
    only between models scored on the same rows and bins.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed binary outcome, 0/1 or bool.
    y_prob : array-like of shape (n_samples,)
        Predicted probability of the positive class, in [0, 1].
    n_bins : int, default=10
        Number of bins, at least 1.
    strategy : {"quantile", "uniform"}, default="quantile"
        How the bin edges are chosen, as in :func:`reliability_table`.

    Returns
    -------
    float
        The ECE, between 0 and 1.

    Raises
    ------
    ValueError
        If the inputs fail the shared input check, ``n_bins`` is not a
        positive int or ``strategy`` is unknown.

    Examples
    --------
    >>> round(expected_calibration_error([0, 1, 1, 1], [0.1, 0.2, 0.8, 0.9], n_bins=2,
    ...                                  strategy="uniform"), 4)
    0.25
    """
    owner = "expected_calibration_error"
    y_true, y_prob = _check_inputs(owner, both_classes=(), y_true=y_true, y_prob=y_prob)
    _check_int(owner, "n_bins", n_bins, low=1)
    _check_choice(owner, "strategy", strategy, ("quantile", "uniform"))
    table = _reliability(y_true, y_prob, n_bins, strategy)
    gap = (table["observed_rate"] - table["mean_predicted"]).abs()
    return float(np.average(gap, weights=table["n"]))


def _top_k(owner: str, y_true, y_score, k) -> tuple[np.ndarray, np.ndarray]:
    """Checked ``y_true`` and the outcomes of its top ``ceil(k * n)`` rows by score."""
    y_true, y_score = _check_inputs(
        owner, both_classes=("y_true",), y_true=y_true, y_score=y_score
    )
    _check_share(owner, "k", k)
    # round() first so that float noise cannot push 0.3 * 10 up to 4 rows.
    n_top = max(1, math.ceil(round(k * y_true.size, 9)))
    # A stable sort of the negated score: ties keep row order, earlier rows first.
    order = np.argsort(-y_score, kind="stable")
    return y_true, y_true[order[:n_top]]


def lift_at_k(y_true, y_score, *, k: float = 0.1) -> float:
    """Compute the lift in the top k share of rows by score.

    The positive rate among the top ``ceil(k * n)`` rows divided by the
    positive rate of all rows. Rows are ranked by a stable sort on descending
    score, so when the cutoff falls inside a run of tied scores the rows that
    come first in the input are taken: the result is deterministic but
    depends on row order within ties.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed binary outcome, 0/1 or bool; both classes must be present.
    y_score : array-like of shape (n_samples,)
        Score to rank by, higher meaning more likely positive.
    k : float, default=0.1
        Share of rows to take, in (0, 1]; at least one row is taken.

    Returns
    -------
    float
        The lift; 1 is no better than random.

    Raises
    ------
    ValueError
        If the inputs fail the shared input check, ``y_true`` has one class
        only, or ``k`` is not in (0, 1].

    Examples
    --------
    >>> lift_at_k([1, 0, 1, 0, 0, 0, 0, 0, 0, 0], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0], k=0.2)
    2.5
    """
    y_true, top = _top_k("lift_at_k", y_true, y_score, k)
    return float(top.mean() / y_true.mean())


def capture_at_k(y_true, y_score, *, k: float = 0.1) -> float:
    """Compute the share of all positives found in the top k share of rows.

    Rows are ranked and cut exactly as in :func:`lift_at_k` (top
    ``ceil(k * n)`` rows, stable sort on descending score, earlier rows first
    among ties).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed binary outcome, 0/1 or bool; both classes must be present.
    y_score : array-like of shape (n_samples,)
        Score to rank by, higher meaning more likely positive.
    k : float, default=0.1
        Share of rows to take, in (0, 1]; at least one row is taken.

    Returns
    -------
    float
        Positives in the top k over all positives, between 0 and 1.

    Raises
    ------
    ValueError
        If the inputs fail the shared input check, ``y_true`` has one class
        only, or ``k`` is not in (0, 1].

    Examples
    --------
    >>> capture_at_k([1, 0, 1, 0, 0, 0, 0, 0, 0, 0], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0], k=0.2)
    0.5
    """
    y_true, top = _top_k("capture_at_k", y_true, y_score, k)
    return float(top.sum() / y_true.sum())


def auc_by_group(y_true, y_score, groups, *, min_count: int = 50) -> pd.DataFrame:
    """Compute ROC AUC separately within each group.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed binary outcome, 0/1 or bool.
    y_score : array-like of shape (n_samples,)
        Score to rank by, higher meaning more likely positive.
    groups : array-like of shape (n_samples,)
        Group label of each row (e.g. acquisition channel), without NaN.
    min_count : int, default=50
        Groups with fewer rows get NaN instead of a noisy AUC.

    Returns
    -------
    pandas.DataFrame
        One row per group, sorted by group label, with columns ``group``,
        ``n``, ``positives`` and ``roc_auc`` (NaN where the group has fewer
        than ``min_count`` rows or only one class).

    Raises
    ------
    ValueError
        If the inputs fail the shared input check or ``min_count`` is not a
        positive int.

    Examples
    --------
    >>> table = auc_by_group([0, 1, 0, 1, 1], [0.1, 0.9, 0.2, 0.3, 0.8],
    ...                      ["a", "a", "b", "b", "c"], min_count=2)
    >>> table["roc_auc"].tolist()
    [1.0, 1.0, nan]
    """
    owner = "auc_by_group"
    y_true, y_score, groups = _check_inputs(
        owner, both_classes=(), y_true=y_true, y_score=y_score, groups=groups
    )
    _check_int(owner, "min_count", min_count, low=1)
    rows = []
    frame = pd.DataFrame({"y": y_true, "score": y_score})
    for label, part in frame.groupby(groups, sort=True):
        n, positives = len(part), int(part["y"].sum())
        scorable = n >= min_count and 0 < positives < n
        auc = float(_skm.roc_auc_score(part["y"], part["score"])) if scorable else math.nan
        rows.append({"group": label, "n": n, "positives": positives, "roc_auc": auc})
    return pd.DataFrame(rows, columns=["group", "n", "positives", "roc_auc"])
