"""Churn and uplift metrics as pure functions.

Two families share one module and one input check (:func:`_check_inputs`):

* uplift metrics, ``metric(y_true, uplift, treatment, *, ...)``, whose
  definitions reproduce scikit-uplift 0.5.1 (``sklift.metrics``) exactly,
  including its normalisation and its tie handling;
* churn metrics, ``metric(y_true, y_prob, *, ...)`` or
  ``metric(y_true, y_score, *, ...)``, which wrap scikit-learn wherever it
  already has the metric.

:func:`bootstrap_interval` puts a percentile interval around any scalar metric
of this module.

Conventions shared by every function:

* ``y_true`` and ``treatment`` are 1-D arrays of 0/1 (int, float or bool);
  ``treatment`` must hold both arms.
* Every array is 1-D, has the same length as the others and holds no NaN.
* Invalid input raises :class:`ValueError` reading "The `<name>` parameter of
  `<function>` must be `<allowed>`. Got `<value>` instead."

Where scikit-uplift would divide by zero (an arm missing from a bin or from the
top k) the result is NaN, as in scikit-uplift, but without its RuntimeWarning.
Unlike scikit-uplift, the uplift metrics accept a ``y_true`` holding one class,
and the normalised areas return NaN where scikit-uplift raises
ZeroDivisionError (a perfect curve without area).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn import metrics as _skm

__all__ = [
    "auc_by_group",
    "bootstrap_interval",
    "brier_score",
    "capture_at_k",
    "expected_calibration_error",
    "lift_at_k",
    "log_loss",
    "perfect_qini_curve",
    "perfect_uplift_curve",
    "pr_auc",
    "qini_auc_score",
    "qini_curve",
    "reliability_table",
    "roc_auc",
    "uplift_at_k",
    "uplift_auc_score",
    "uplift_by_percentile",
    "uplift_calibration",
    "uplift_calibration_error",
    "uplift_curve",
]

# How _check_inputs treats an array, by parameter name; other names are plain labels.
_BINARY = frozenset({"y_true", "treatment"})
_SCORES = frozenset({"uplift", "y_score", "y_prob"})
_PROBABILITIES = frozenset({"y_prob"})


# --------------------------------------------------------------------------- checks


def _error(owner: str, name: str, allowed: str, got: object) -> ValueError:
    """Build the one error shape every check in this module raises."""
    return ValueError(
        f"The `{name}` parameter of `{owner}` must be `{allowed}`. Got `{got}` instead."
    )


def _show_values(values: np.ndarray, limit: int = 5) -> str:
    """Render the distinct values of an array briefly, for an error message."""
    shown = ", ".join(str(v) for v in values[:limit].tolist())
    return f"[{shown}, ...]" if len(values) > limit else f"[{shown}]"


def _check_inputs(
    owner: str,
    *,
    both_classes: tuple[str, ...] = ("treatment",),
    **arrays: Any,
) -> tuple[np.ndarray, ...]:
    """Validate and convert the array arguments of a metric.

    The role of each array follows from its parameter name: ``y_true`` and
    ``treatment`` must be 0/1 or bool (returned as int64); ``uplift``,
    ``y_score`` and ``y_prob`` must be finite numbers (returned as float64),
    ``y_prob`` within [0, 1]; any other name (``groups``, ``stratify``) may
    hold any labels. Every array must be 1-D, non-empty, free of NaN and as
    long as the first one.

    Parameters
    ----------
    owner : str
        Name of the public function, used in error messages.
    both_classes : tuple of str, default=("treatment",)
        Binary arrays that must contain both 0 and 1 (every uplift metric
        needs both arms; some churn metrics need both classes).
    **arrays : array-like
        The arrays to check, keyed by their parameter names, in signature order.

    Returns
    -------
    tuple of ndarray
        The converted arrays, in the order given.

    Raises
    ------
    ValueError
        If any array breaks one of the rules above.
    """
    out: list[np.ndarray] = []
    first_name: str | None = None
    n_rows = 0
    for name, value in arrays.items():
        arr = value.to_numpy() if isinstance(value, pd.Series | pd.Index) else np.asarray(value)
        if arr.ndim != 1:
            raise _error(owner, name, "a 1-D array", f"an array of shape {arr.shape}")
        if first_name is None:
            if arr.size == 0:
                raise _error(owner, name, "a non-empty array", "an empty array")
            first_name, n_rows = name, arr.size
        elif arr.size != n_rows:
            raise _error(
                owner, name, f"an array as long as {first_name} ({n_rows})", f"length {arr.size}"
            )
        n_missing = int(pd.isna(arr).sum())
        if n_missing:
            raise _error(owner, name, "an array without NaN", f"{n_missing} NaN values")
        if name in _BINARY:
            arr = _as_binary(owner, name, arr, need_both=name in both_classes)
        elif name in _SCORES:
            arr = _as_scores(owner, name, arr, probabilities=name in _PROBABILITIES)
        out.append(arr)
    return tuple(out)


def _as_binary(owner: str, name: str, arr: np.ndarray, *, need_both: bool) -> np.ndarray:
    """Return a 0/1 int64 copy of ``arr`` or raise the shared error."""
    if arr.dtype.kind not in "biuf":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise _error(owner, name, "0/1 or bool", f"dtype {arr.dtype}") from None
    values = np.unique(arr)
    if not np.isin(values, (0, 1)).all():
        raise _error(owner, name, "0/1 or bool", f"values {_show_values(values)}")
    if need_both and values.size < 2:
        raise _error(owner, name, "an array holding both 0 and 1", f"only {int(values[0])}")
    return arr.astype(np.int64)


def _as_scores(owner: str, name: str, arr: np.ndarray, *, probabilities: bool) -> np.ndarray:
    """Return a float64 copy of ``arr`` or raise the shared error."""
    if arr.dtype.kind not in "biuf":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise _error(owner, name, "an array of numbers", f"dtype {arr.dtype}") from None
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise _error(owner, name, "an array of finite numbers", f"{arr[bad][0]}")
    if probabilities and (arr.min() < 0 or arr.max() > 1):
        outside = arr[(arr < 0) | (arr > 1)][0]
        raise _error(owner, name, "probabilities in [0, 1]", f"{outside}")
    return arr


def _check_choice(owner: str, name: str, value: object, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise _error(owner, name, " or ".join(repr(c) for c in choices), repr(value))


def _check_int(owner: str, name: str, value: object, *, low: int, high: float = math.inf) -> None:
    ok = isinstance(value, Integral) and not isinstance(value, bool) and low <= value <= high
    if not ok:
        upper = "" if high == math.inf else f" and at most {high}"
        raise _error(owner, name, f"an int at least {low}{upper}", repr(value))


def _check_bool(owner: str, name: str, value: object) -> None:
    if not isinstance(value, bool | np.bool_):
        raise _error(owner, name, "True or False", repr(value))


def _check_share(owner: str, name: str, value: object) -> None:
    ok = isinstance(value, Real) and not isinstance(value, bool) and 0 < value <= 1
    if not ok:
        raise _error(owner, name, "a float in (0, 1]", repr(value))


# --------------------------------------------------------------------------- uplift


def _sklift_order(uplift: np.ndarray) -> np.ndarray:
    """Descending order as scikit-uplift builds it: a stable ascending sort, reversed.

    Reversing a stable ascending sort puts tied scores in *reverse* row order
    (the last row comes first). That matters wherever a cut falls inside a
    tie (``uplift_at_k``, ``uplift_by_percentile``, ``uplift_calibration``);
    the curves only step at distinct scores and are unaffected.
    """
    return np.argsort(uplift, kind="stable")[::-1]


def _cumulative_counts(
    y_true: np.ndarray, uplift: np.ndarray, treatment: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Cumulative counts at each distinct score, scores descending (scikit-uplift's curve core).

    Returns ``(num_all, num_trmnt, num_ctrl, y_trmnt, y_ctrl)`` evaluated at
    the last row of each run of equal scores.
    """
    order = _sklift_order(uplift)
    y, t, u = y_true[order], treatment[order], uplift[order]
    thresholds = np.r_[np.flatnonzero(np.diff(u)), u.size - 1]
    num_trmnt = np.cumsum(t, dtype=np.float64)[thresholds]
    y_trmnt = np.cumsum(y * t, dtype=np.float64)[thresholds]
    y_ctrl = np.cumsum(y * (1 - t), dtype=np.float64)[thresholds]
    num_all = thresholds + 1
    return num_all, num_trmnt, num_all - num_trmnt, y_trmnt, y_ctrl


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den`` is 0, as scikit-uplift's curves do."""
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den != 0)


def _qini_curve(y_true, uplift, treatment):
    num_all, num_trmnt, num_ctrl, y_trmnt, y_ctrl = _cumulative_counts(y_true, uplift, treatment)
    values = y_trmnt - y_ctrl * _safe_divide(num_trmnt, num_ctrl)
    return np.r_[0, num_all], np.r_[0.0, values]


def _uplift_curve(y_true, uplift, treatment):
    num_all, num_trmnt, num_ctrl, y_trmnt, y_ctrl = _cumulative_counts(y_true, uplift, treatment)
    values = (_safe_divide(y_trmnt, num_trmnt) - _safe_divide(y_ctrl, num_ctrl)) * num_all
    return np.r_[0, num_all], np.r_[0.0, values]


def _perfect_qini_curve(y_true, treatment, negative_effect, owner):
    if negative_effect:
        return _qini_curve(y_true, (y_true * treatment - y_true * (1 - treatment)), treatment)
    treated, control = treatment == 1, treatment == 0
    gain = y_true[treated].sum() - treated.sum() * y_true[control].sum() / control.sum()
    if gain < 0:
        # scikit-uplift builds x = [0, gain, n], which is not monotonic, and
        # sklearn.metrics.auc fails on it; a net harmful treatment has negative
        # effects by definition, so say that instead.
        raise _error(
            owner, "negative_effect", "True when the treatment's overall effect is negative",
            "False",
        )
    return np.array([0.0, gain, y_true.size]), np.array([0.0, gain, gain])


def _perfect_uplift_curve(y_true, treatment):
    control_responders = np.sum((y_true == 1) & (treatment == 0))
    treated_non_responders = np.sum((y_true == 0) & (treatment == 1))
    summand = y_true if control_responders > treated_non_responders else treatment
    return _uplift_curve(y_true, 2 * (y_true == treatment) + summand, treatment)


def _normalised_area(actual, perfect) -> float:
    """Area between a curve and the random diagonal, over the same for the perfect curve."""
    (x_actual, y_actual), (x_perfect, y_perfect) = actual, perfect
    baseline = np.trapezoid([0.0, y_perfect[-1]], [0.0, x_perfect[-1]])
    perfect_area = np.trapezoid(y_perfect, x_perfect) - baseline
    actual_area = np.trapezoid(y_actual, x_actual) - baseline
    if perfect_area == 0:  # no responders, or no gain possible: the ratio is undefined
        return math.nan
    return float(actual_area / perfect_area)


def qini_curve(y_true, uplift, treatment) -> tuple[np.ndarray, np.ndarray]:
    """Compute the Qini curve.

    At each distinct predicted uplift, taken in descending order, the curve
    gives the number of treated responders minus the control responders
    scaled to the treated group size: ``Y_t - Y_c * N_t / N_c`` (0 where no
    control row has been reached yet). Same as ``sklift.metrics.qini_curve``.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed binary outcome, 0/1 or bool.
    uplift : array-like of shape (n_samples,)
        Predicted uplift.
    treatment : array-like of shape (n_samples,)
        Treatment flag, 0/1 or bool; both arms must be present.

    Returns
    -------
    x : ndarray of int
        Number of targeted rows at each point, starting at 0.
    y : ndarray of float
        Incremental responders at each point, starting at 0.

    Raises
    ------
    ValueError
        If the inputs fail the shared input check.

    Examples
    --------
    >>> x, y = qini_curve([1, 0, 1, 0], [0.9, 0.5, 0.4, 0.1], [1, 1, 0, 0])
    >>> x.tolist(), y.tolist()
    ([0, 1, 2, 3, 4], [0.0, 1.0, 1.0, -1.0, 0.0])
    """
    y_true, uplift, treatment = _check_inputs(
        "qini_curve", y_true=y_true, uplift=uplift, treatment=treatment
    )
    return _qini_curve(y_true, uplift, treatment)


def perfect_qini_curve(y_true, treatment, *, negative_effect: bool = True):
    """Compute the perfect (optimum) Qini curve.

    With ``negative_effect=True`` this is the Qini curve of an oracle that
    ranks treated responders first and control responders last. With
    ``negative_effect=False`` scikit-uplift uses a three-point curve that
    rises with slope 1 to the total incremental gain ``G`` and stays flat:
    ``x = [0, G, n]``, ``y = [0, G, G]``. Same as
    ``sklift.metrics.perfect_qini_curve``.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed binary outcome, 0/1 or bool.
    treatment : array-like of shape (n_samples,)
        Treatment flag, 0/1 or bool; both arms must be present.
    negative_effect : bool, default=True
        Whether the optimum may contain negative effects (control responders
        ranked last, pulling the curve down at the end).

    Returns
    -------
    x : ndarray
        Number of targeted rows at each point.
    y : ndarray of float
        Incremental responders at each point.

    Raises
    ------
    ValueError
        If the inputs fail the shared input check, ``negative_effect`` is not
        a bool, or it is False while the treatment's overall effect is
        negative (scikit-uplift fails there inside ``sklearn.metrics.auc``).

    Examples
    --------
    >>> x, y = perfect_qini_curve([1, 0, 1, 0], [1, 1, 0, 0], negative_effect=False)
    >>> x.tolist(), y.tolist()
    ([0.0, 0.0, 4.0], [0.0, 0.0, 0.0])
    """
    y_true, treatment = _check_inputs("perfect_qini_curve", y_true=y_true, treatment=treatment)
    _check_bool("perfect_qini_curve", "negative_effect", negative_effect)
    return _perfect_qini_curve(y_true, treatment, negative_effect, "perfect_qini_curve")


def qini_auc_score(y_true, uplift, treatment, *, negative_effect: bool = True) -> float:
    """Compute the normalised area under the Qini curve (Qini coefficient).

    The area between the model's Qini curve and the random diagonal (the
    straight line from the origin to the curve's end point), divided by the
    same area for the perfect curve of :func:`perfect_qini_curve`. 1 is a
    perfect ranking, 0 is random. Same as ``sklift.metrics.qini_auc_score``,
    except that it returns NaN instead of dividing by zero when the perfect
    curve has no area (e.g. no responders at all).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed binary outcome, 0/1 or bool.
    uplift : array-like of shape (n_samples,)
        Predicted uplift.
    treatment : array-like of shape (n_samples,)
        Treatment flag, 0/1 or bool; both arms must be present.
    negative_effect : bool, default=True
        Passed to :func:`perfect_qini_curve` to build the denominator.

    Returns
    -------
    float
        The Qini coefficient.

    Raises
    ------
    ValueError
        If the inputs fail the shared input check, ``negative_effect`` is not
        a bool, or it is False while the treatment's overall effect is
        negative.

    Examples
    --------
    >>> y, t = [1, 0, 0, 1, 0, 0], [1, 1, 1, 0, 0, 0]
    >>> qini_auc_score(y, [3, 2, 2, 0, 1, 1], t)
    1.0
    """
    y_true, uplift, treatment = _check_inputs(
        "qini_auc_score", y_true=y_true, uplift=uplift, treatment=treatment
    )
    _check_bool("qini_auc_score", "negative_effect", negative_effect)
    return _normalised_area(
        _qini_curve(y_true, uplift, treatment),
        _perfect_qini_curve(y_true, treatment, negative_effect, "qini_auc_score"),
    )


def uplift_curve(y_true, uplift, treatment) -> tuple[np.ndarray, np.ndarray]:
    """Compute the uplift curve.

    At each distinct predicted uplift, taken in descending order, the curve
    gives ``(Y_t / N_t - Y_c / N_c) * N``: the difference of the response
    rates among the targeted rows, times the number targeted (a rate is 0
    while its arm is still empty). Same as ``sklift.metrics.uplift_curve``.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed binary outcome, 0/1 or bool.
    uplift : array-like of shape (n_samples,)
        Predicted uplift.
    treatment : array-like of shape (n_samples,)
        Treatment flag, 0/1 or bool; both arms must be present.

    Returns
    -------
    x : ndarray of int
        Number of targeted rows at each point, starting at 0.
    y : ndarray of float
        Uplift times the number targeted, starting at 0.

    Raises
    ------
    ValueError
        If the inputs fail the shared input check.

    Examples
    --------
    >>> x, y = uplift_curve([1, 0, 1, 0], [0.9, 0.5, 0.4, 0.1], [1, 1, 0, 0])
    >>> x.tolist(), y.tolist()
    ([0, 1, 2, 3, 4], [0.0, 1.0, 1.0, -1.5, 0.0])
    """
    y_true, uplift, treatment = _check_inputs(
        "uplift_curve", y_true=y_true, uplift=uplift, treatment=treatment
    )
    return _uplift_curve(y_true, uplift, treatment)


def perfect_uplift_curve(y_true, treatment) -> tuple[np.ndarray, np.ndarray]:
    """Compute the perfect (optimum) uplift curve.

    The uplift curve of the oracle score scikit-uplift uses:
    ``2 * (y_true == treatment) + s``, where ``s`` is ``y_true`` if control
    responders outnumber treated non-responders and ``treatment`` otherwise.
    Same as ``sklift.metrics.perfect_uplift_curve``.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed binary outcome, 0/1 or bool.
    treatment : array-like of shape (n_samples,)
        Treatment flag, 0/1 or bool; both arms must be present.

    Returns
    -------
    x : ndarray of int
        Number of targeted rows at each point, starting at 0.
    y : ndarray of float
        Uplift times the number targeted, starting at 0.

    Raises
    ------
    ValueError
        If the inputs fail the shared input check.

    Examples
    --------
    >>> x, y = perfect_uplift_curve([1, 0, 1, 0], [1, 1, 0, 0])
    >>> x.tolist()
    [0, 1, 2, 3, 4]
    """
    y_true, treatment = _check_inputs("perfect_uplift_curve", y_true=y_true, treatment=treatment)
    return _perfect_uplift_curve(y_true, treatment)


def uplift_auc_score(y_true, uplift, treatment) -> float:
    """Compute the normalised area under the uplift curve.

    The area between the model's uplift curve and the random diagonal,
    divided by the same area for :func:`perfect_uplift_curve`. Same as
    ``sklift.metrics.uplift_auc_score``, except that it returns NaN instead
    of dividing by zero when the perfect curve has no area.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed binary outcome, 0/1 or bool.
    uplift : array-like of shape (n_samples,)
        Predicted uplift.
    treatment : array-like of shape (n_samples,)
        Treatment flag, 0/1 or bool; both arms must be present.

    Returns
    -------
    float
        The normalised area under the uplift curve.

    Raises
    ------
    ValueError
        If the inputs fail the shared input check.

    Examples
    --------
    >>> y, t = [1, 0, 0, 1, 0, 0], [1, 1, 1, 0, 0, 0]
    >>> round(uplift_auc_score(y, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], t), 3)
    -0.4
    """
    y_true, uplift, treatment = _check_inputs(
        "uplift_auc_score", y_true=y_true, uplift=uplift, treatment=treatment
    )
    return _normalised_area(
        _uplift_curve(y_true, uplift, treatment), _perfect_uplift_curve(y_true, treatment)
    )


def _mean_or_nan(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


def uplift_at_k(
    y_true,
    uplift,
    treatment,
    *,
    strategy: Literal["by_group", "overall"] = "by_group",
    k: float = 0.3,
) -> float:
    """Compute the observed uplift among the top k rows by predicted uplift.

    Same as ``sklift.metrics.uplift_at_k`` (which has no default strategy):

    * ``"overall"`` takes the first ``int(n * k)`` rows of the whole sample
      and returns treated response rate minus control response rate there.
    * ``"by_group"`` takes the first ``int(n_treated * k)`` treated rows and
      the first ``int(n_control * k)`` control rows separately.

    Rows are sorted the way scikit-uplift sorts them: a stable ascending sort
    reversed, so among tied scores the *later* row comes first. The counts
    use ``int()``, which truncates (``int(100 * 0.29) == 28``). An arm with
    no rows in the top k gives NaN.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed binary outcome, 0/1 or bool.
    uplift : array-like of shape (n_samples,)
        Predicted uplift.
    treatment : array-like of shape (n_samples,)
        Treatment flag, 0/1 or bool; both arms must be present.
    strategy : {"by_group", "overall"}, default="by_group"
        How the top k is taken, see above.
    k : float or int, default=0.3
        A float in (0, 1) is a share of the rows; an int in [1, n_samples) is
        a number of rows (per arm with ``"by_group"``).

    Returns
    -------
    float
        Treated minus control response rate among the top k.

    Raises
    ------
    ValueError
        If the inputs fail the shared input check, ``strategy`` is unknown,
        ``k`` is out of range, or (``"by_group"``, int ``k``) an arm has fewer
        than ``k`` rows.

    Examples
    --------
    >>> y = [1, 0, 1, 0, 0, 0, 1, 0]
    >>> t = [1, 1, 0, 0, 1, 1, 0, 0]
    >>> u = [8, 7, 6, 5, 4, 3, 2, 1]
    >>> uplift_at_k(y, u, t, strategy="overall", k=0.5)
    0.0
    >>> uplift_at_k(y, u, t, strategy="by_group", k=0.5)
    0.0
    """
    owner = "uplift_at_k"
    y_true, uplift, treatment = _check_inputs(
        owner, y_true=y_true, uplift=uplift, treatment=treatment
    )
    _check_choice(owner, "strategy", strategy, ("by_group", "overall"))
    n_samples = y_true.size
    is_int = isinstance(k, Integral) and not isinstance(k, bool)
    is_float = isinstance(k, Real) and not isinstance(k, bool | Integral)
    if not ((is_int and 0 < k < n_samples) or (is_float and 0 < k < 1)):
        raise _error(
            owner, "k", f"a float in (0, 1) or an int in [1, {n_samples - 1}]", repr(k)
        )
    order = _sklift_order(uplift)
    y_sorted, t_sorted = y_true[order], treatment[order]
    if strategy == "overall":
        n_top = int(n_samples * k) if is_float else int(k)
        y_top, t_top = y_sorted[:n_top], t_sorted[:n_top]
        return _mean_or_nan(y_top[t_top == 1]) - _mean_or_nan(y_top[t_top == 0])
    n_arm = {arm: int((treatment == arm).sum()) for arm in (0, 1)}
    n_top = {arm: int(n_arm[arm] * k) if is_float else int(k) for arm in (0, 1)}
    for arm, label in ((0, "control"), (1, "treated")):
        if n_top[arm] > n_arm[arm]:
            raise _error(
                owner, "k", f"at most the {label} group size ({n_arm[arm]})", repr(k)
            )
    top = {arm: y_sorted[t_sorted == arm][: n_top[arm]] for arm in (0, 1)}
    return _mean_or_nan(top[1]) - _mean_or_nan(top[0])


def _check_bins(owner: str, bins: object, n_samples: int) -> None:
    _check_int(owner, "bins", bins, low=1, high=n_samples - 1)


def _percentile_labels(bins: int) -> list[str]:
    """scikit-uplift's string labels for equal-count bins: "0-10", "10-20", ..."""
    edges = [round(p * 100 / bins) for p in range(1, bins + 1)]
    return [f"0-{edges[0]}"] + [f"{edges[i]}-{edges[i + 1]}" for i in range(bins - 1)]


def _rates(y_bins: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Size, response rate and variance of the rate for each bin of outcomes."""
    n = np.array([b.size for b in y_bins], dtype=np.int64)
    rate = np.array([_mean_or_nan(b) for b in y_bins])
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = rate * ((1 - rate) / n)  # scikit-uplift's order of operations, bit for bit
    return n, rate, variance


def _arm_bins(y_true, uplift, treatment, *, strategy: str, bins: int):
    """Per-arm outcome bins of scikit-uplift's ``response_rate_by_percentile``.

    Returns a dict ``{arm: list of outcome arrays}`` for arms 1 and 0, and,
    for ``"overall"``, the list of row-index bins (in sorted order) used.
    """
    order = _sklift_order(uplift)
    y_sorted, t_sorted = y_true[order], treatment[order]
    if strategy == "overall":
        index_bins = np.array_split(order, bins)
        split_y = np.array_split(y_sorted, bins)
        split_t = np.array_split(t_sorted, bins)
        arms = {arm: [y[t == arm] for y, t in zip(split_y, split_t)] for arm in (1, 0)}
        return arms, index_bins
    arms = {arm: np.array_split(y_sorted[t_sorted == arm], bins) for arm in (1, 0)}
    return arms, None


def uplift_by_percentile(
    y_true,
    uplift,
    treatment,
    *,
    bins: int = 10,
    strategy: Literal["overall", "by_group"] = "overall",
) -> pd.DataFrame:
    """Compute group sizes, response rates and uplift in each percentile bin.

    Rows are sorted by predicted uplift (descending, ties as in
    :func:`uplift_at_k`) and split into ``bins`` nearly equal parts with
    ``numpy.array_split`` (the first ``n % bins`` bins get one extra row).
    With ``"overall"`` all rows are split together; with ``"by_group"`` each
    arm is split on its own. Same as ``sklift.metrics.uplift_by_percentile``
    with ``std=True`` (``std`` here is its ``std_uplift``,
    ``sqrt(r_t(1-r_t)/n_t + r_c(1-r_c)/n_c)``). A bin without one of the arms
    has NaN rates.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed binary outcome, 0/1 or bool.
    uplift : array-like of shape (n_samples,)
        Predicted uplift.
    treatment : array-like of shape (n_samples,)
        Treatment flag, 0/1 or bool; both arms must be present.
    bins : int, default=10
        Number of bins, at least 1 and smaller than ``n_samples``.
    strategy : {"overall", "by_group"}, default="overall"
        Whether bins are cut over all rows or within each arm.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``percentile`` ("0-10", "10-20", ... from the highest
        predicted uplift down), with columns ``n_treatment``, ``n_control``,
        ``response_rate_treatment``, ``response_rate_control``, ``uplift`` and
        ``std``.

    Raises
    ------
    ValueError
        If the inputs fail the shared input check, ``bins`` is out of range or
        ``strategy`` is unknown.

    Examples
    --------
    >>> y = [1, 0, 1, 0, 0, 0, 1, 0]
    >>> t = [1, 1, 0, 0, 1, 1, 0, 0]
    >>> table = uplift_by_percentile(y, [8, 7, 6, 5, 4, 3, 2, 1], t, bins=2)
    >>> table["uplift"].tolist()
    [0.0, -0.5]
    """
    owner = "uplift_by_percentile"
    y_true, uplift, treatment = _check_inputs(
        owner, y_true=y_true, uplift=uplift, treatment=treatment
    )
    _check_bins(owner, bins, y_true.size)
    _check_choice(owner, "strategy", strategy, ("overall", "by_group"))
    arms, _ = _arm_bins(y_true, uplift, treatment, strategy=strategy, bins=bins)
    n_t, rate_t, var_t = _rates(arms[1])
    n_c, rate_c, var_c = _rates(arms[0])
    return pd.DataFrame(
        {
            "n_treatment": n_t,
            "n_control": n_c,
            "response_rate_treatment": rate_t,
            "response_rate_control": rate_c,
            "uplift": rate_t - rate_c,
            "std": np.sqrt(var_t + var_c),
        },
        index=pd.Index(_percentile_labels(bins), name="percentile"),
    )


def uplift_calibration(y_true, uplift, treatment, *, bins: int = 10) -> pd.DataFrame:
    """Compare predicted with observed uplift in bins of predicted uplift.

    The bins are those of :func:`uplift_by_percentile` with
    ``strategy="overall"``: rows sorted by predicted uplift, highest first,
    split into ``bins`` nearly equal parts. In each bin the observed uplift is
    the treated response rate minus the control response rate, with standard
    error ``sqrt(r_t(1-r_t)/n_t + r_c(1-r_c)/n_c)``. A bin without one of the
    arms has NaN observed uplift.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed binary outcome, 0/1 or bool.
    uplift : array-like of shape (n_samples,)
        Predicted uplift.
    treatment : array-like of shape (n_samples,)
        Treatment flag, 0/1 or bool; both arms must be present.
    bins : int, default=10
        Number of bins, at least 1 and smaller than ``n_samples``.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``percentile`` as in :func:`uplift_by_percentile`, with
        columns ``n``, ``n_treatment``, ``n_control``, ``mean_predicted``,
        ``observed_uplift`` and ``std_error``.

    Raises
    ------
    ValueError
        If the inputs fail the shared input check or ``bins`` is out of range.

    Examples
    --------
    >>> y = [1, 0, 1, 0, 0, 0, 1, 0]
    >>> t = [1, 1, 0, 0, 1, 1, 0, 0]
    >>> u = [0.4, 0.4, 0.4, 0.4, 0.0, 0.0, 0.0, 0.0]
    >>> uplift_calibration(y, u, t, bins=2)[["mean_predicted", "observed_uplift"]].values.tolist()
    [[0.4, 0.0], [0.0, -0.5]]
    """
    owner = "uplift_calibration"
    y_true, uplift, treatment = _check_inputs(
        owner, y_true=y_true, uplift=uplift, treatment=treatment
    )
    _check_bins(owner, bins, y_true.size)
    return _uplift_calibration(y_true, uplift, treatment, bins)


def _uplift_calibration(y_true, uplift, treatment, bins: int) -> pd.DataFrame:
    arms, index_bins = _arm_bins(y_true, uplift, treatment, strategy="overall", bins=bins)
    n_t, rate_t, var_t = _rates(arms[1])
    n_c, rate_c, var_c = _rates(arms[0])
    return pd.DataFrame(
        {
            "n": n_t + n_c,
            "n_treatment": n_t,
            "n_control": n_c,
            "mean_predicted": [float(uplift[idx].mean()) for idx in index_bins],
            "observed_uplift": rate_t - rate_c,
            "std_error": np.sqrt(var_t + var_c),
        },
        index=pd.Index(_percentile_labels(bins), name="percentile"),
    )


def uplift_calibration_error(y_true, uplift, treatment, *, bins: int = 10) -> float:
    """Summarise :func:`uplift_calibration` as one number.

    The count-weighted mean of ``|mean_predicted - observed_uplift|`` over
    the bins. Bins whose observed uplift is NaN (an arm missing) are left
    out of both the sum and the weights.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed binary outcome, 0/1 or bool.
    uplift : array-like of shape (n_samples,)
        Predicted uplift.
    treatment : array-like of shape (n_samples,)
        Treatment flag, 0/1 or bool; both arms must be present.
    bins : int, default=10
        Number of bins, at least 1 and smaller than ``n_samples``.

    Returns
    -------
    float
        The uplift calibration error, in units of uplift (a rate difference).

    Raises
    ------
    ValueError
        If the inputs fail the shared input check or ``bins`` is out of range.

    Examples
    --------
    >>> y = [1, 0, 1, 0, 0, 0, 1, 0]
    >>> t = [1, 1, 0, 0, 1, 1, 0, 0]
    >>> u = [0.4, 0.4, 0.4, 0.4, 0.0, 0.0, 0.0, 0.0]
    >>> round(uplift_calibration_error(y, u, t, bins=2), 3)
    0.45
    """
    owner = "uplift_calibration_error"
    y_true, uplift, treatment = _check_inputs(
        owner, y_true=y_true, uplift=uplift, treatment=treatment
    )
    _check_bins(owner, bins, y_true.size)
    table = _uplift_calibration(y_true, uplift, treatment, bins).dropna(subset="observed_uplift")
    if table.empty:
        return math.nan
    gap = (table["mean_predicted"] - table["observed_uplift"]).abs()
    return float(np.average(gap, weights=table["n"]))


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


# --------------------------------------------------------------------------- bootstrap


def bootstrap_interval(
    metric: Callable[..., float],
    *arrays,
    n_boot: int = 200,
    alpha: float = 0.05,
    seed: int | np.random.Generator | None = 0,
    stratify=None,
    **kwargs,
) -> dict[str, float]:
    """Put a bootstrap percentile interval around a scalar metric.

    Rows are resampled with replacement ``n_boot`` times and the metric is
    recomputed on each resample. For an uplift metric (one that takes a
    ``treatment`` argument) rows are resampled within each arm by default,
    so both arms keep their sizes and stay present. The interval is the
    ``alpha / 2`` and ``1 - alpha / 2`` quantiles of the resampled values;
    resamples on which the metric is NaN are ignored, and a resample on which
    it raises (e.g. :func:`roc_auc` drawing one class only) stops the run.

    Parameters
    ----------
    metric : callable
        A function of this module returning a number, e.g.
        :func:`qini_auc_score` or :func:`roc_auc`.
    *arrays : array-like of shape (n_samples,)
        The metric's positional arrays, in its order (e.g. ``y_true, uplift,
        treatment``). They pass the shared input check under the metric's
        parameter names.
    n_boot : int, default=200
        Number of resamples, at least 2.
    alpha : float, default=0.05
        One minus the interval's coverage, in (0, 1).
    seed : int, numpy.random.Generator or None, default=0
        Seed of the resampling.
    stratify : array-like of shape (n_samples,), optional
        Labels to resample within. By default the ``treatment`` array for
        uplift metrics and no stratification otherwise.
    **kwargs
        Keyword arguments passed to the metric (e.g. ``k=0.2``).

    Returns
    -------
    dict
        ``estimate`` (the metric on all rows), ``low`` and ``high`` (the
        interval) and ``std`` (standard deviation of the resampled values),
        all floats.

    Raises
    ------
    ValueError
        If the arrays fail the shared input check, ``n_boot`` or ``alpha`` is
        out of range, or the metric does not return a number.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y, p = rng.integers(0, 2, 500), rng.uniform(size=500)
    >>> ci = bootstrap_interval(roc_auc, y, p, n_boot=50)
    >>> ci["low"] <= ci["estimate"] <= ci["high"]
    True
    """
    owner = "bootstrap_interval"
    if not callable(metric):
        raise _error(owner, "metric", "a callable", repr(metric))
    names = [
        p.name
        for p in inspect.signature(metric).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if not arrays or len(arrays) > len(names):
        raise _error(
            owner, "arrays", f"1 to {len(names)} arrays for {names}", f"{len(arrays)} arrays"
        )
    named = dict(zip(names, arrays))
    if stratify is not None:
        named["stratify"] = stratify
    checked = _check_inputs(owner, **named)
    columns = checked[: len(arrays)]
    _check_int(owner, "n_boot", n_boot, low=2)
    if not (isinstance(alpha, Real) and not isinstance(alpha, bool) and 0 < alpha < 1):
        raise _error(owner, "alpha", "a float in (0, 1)", repr(alpha))

    estimate = metric(*columns, **kwargs)
    if not (np.ndim(estimate) == 0 and isinstance(estimate, Real | np.number)):
        raise _error(owner, "metric", "a function returning a number",
                     getattr(metric, "__name__", repr(metric)))

    if stratify is not None:
        labels = checked[-1]
    elif "treatment" in named:
        labels = checked[names.index("treatment")]
    else:
        labels = np.zeros(columns[0].size, dtype=np.int8)
    strata = [np.flatnonzero(labels == value) for value in pd.unique(labels)]

    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    for b in range(n_boot):
        # Per-resample index draws keep memory at O(n) for large tables; the
        # metric, not the draw, dominates the cost.
        rows = np.concatenate([s[rng.integers(0, s.size, s.size)] for s in strata])
        values[b] = metric(*(col[rows] for col in columns), **kwargs)

    valid = values[~np.isnan(values)]
    if valid.size < 2:
        low = high = std = math.nan
    else:
        low, high = np.quantile(valid, [alpha / 2, 1 - alpha / 2])
        std = valid.std(ddof=1)
    return {"estimate": float(estimate), "low": float(low), "high": float(high),
            "std": float(std)}
