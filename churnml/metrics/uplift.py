"""Uplift metrics: Qini and uplift curves and areas, uplift@k, by percentile, calibration.

Definitions reproduce scikit-uplift 0.5.1 (``sklift.metrics``) exactly, including its
normalisation and tie handling; see :mod:`churnml.metrics`.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Literal

import numpy as np
import pandas as pd

from churnml.metrics._checks import (
    _check_bool,
    _check_choice,
    _check_inputs,
    _check_int,
    _error,
)

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
