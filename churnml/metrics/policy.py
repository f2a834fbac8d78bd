"""Multi-arm uplift and policy-value metrics: which channel, for whom, and what it is worth.

The data are a randomised campaign over *arms*: ``control`` (no message) and
one or more channels. An uplift model predicts one uplift per channel (an
``(n, K)`` matrix, columns in the order of ``channels``); a *policy* gives each
user one arm.

* :func:`multiarm_qini_curve` and :func:`multiarm_qini_auc_score` rank users by
  their best predicted uplift and recommend that channel; at each cut-off the
  curve counts, channel by channel, the treated responders among users who got
  the recommended channel minus the control responders scaled to their number
  (the Qini curve of Zhao & Harinen, 2019). With one channel it is
  :func:`churnml.metrics.qini_curve` exactly.
* :func:`policy_value` estimates what a policy brings: the expected extra returns
  per user over contacting nobody, times ``value_per_user``, minus the cost of
  the messages, from the randomised data alone (inverse propensity weighting,
  self-normalised) or with outcome models too (doubly robust).
  :func:`policy_value_interval` adds a bootstrap interval and
  :func:`expected_policy_value` gives the true value when the per-arm return
  probabilities are known (a simulator).

Invalid input raises :class:`ValueError` in the shape of every metric of
:mod:`churnml.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from churnml.metrics._checks import _check_inputs, _check_int, _error
from churnml.metrics.bootstrap import _percentile_bootstrap
from churnml.metrics.uplift import _safe_divide, _sklift_order

__all__ = [
    "expected_policy_value",
    "multiarm_qini_auc_score",
    "multiarm_qini_curve",
    "policy_value",
    "policy_value_interval",
]

CONTROL = "control"


# --------------------------------------------------------------------------- checks


def _labels(owner: str, name: str, values, n: int | None = None) -> np.ndarray:
    arr = values.to_numpy() if isinstance(values, pd.Series | pd.Index) else np.asarray(values)
    if arr.ndim != 1:
        raise _error(owner, name, "a 1-D array", f"an array of shape {arr.shape}")
    if n is not None and arr.size != n:
        raise _error(owner, name, f"an array as long as y_true ({n})", f"length {arr.size}")
    if pd.isna(arr).any():
        raise _error(owner, name, "an array without missing values", f"{int(pd.isna(arr).sum())} missing values")
    return arr.astype(str)


def _arms(owner: str, arm: np.ndarray, channels, control: str) -> list[str]:
    """The channels (columns of uplift): given, or the non-control arms found, sorted."""
    found = sorted(set(arm.tolist()) - {control})
    if channels is None:
        channels = found
    channels = [str(c) for c in channels]
    if control in channels or len(set(channels)) != len(channels) or not channels:
        raise _error(owner, "channels", f"distinct channel names other than {control!r}", channels)
    unknown = sorted(set(found) - set(channels))
    if unknown:
        raise _error(owner, "arm", f"{control!r} or one of the channels {channels}", f"arms {unknown}")
    return channels


def _matrix(owner: str, name: str, values, n: int, k: int) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1 and k == 1:
        arr = arr[:, None]
    if arr.shape != (n, k):
        raise _error(owner, name, f"an array of shape ({n}, {k})", f"shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise _error(owner, name, "finite numbers", f"{int((~np.isfinite(arr)).sum())} values that are not")
    return arr


def _propensities(owner: str, propensity, arm: np.ndarray, arms: list[str]) -> np.ndarray:
    """Per-row probability of each arm, shape (n, len(arms)): the arm shares if ``propensity`` is None."""
    n = arm.size
    if propensity is None:
        shares = np.array([(arm == a).mean() for a in arms])
        p = np.broadcast_to(shares, (n, len(arms)))
    elif isinstance(propensity, Mapping):
        missing = [a for a in arms if a not in propensity]
        if missing:
            raise _error(owner, "propensity", f"a probability for every arm {arms}", f"none for {missing}")
        p = np.broadcast_to(np.array([float(propensity[a]) for a in arms]), (n, len(arms)))
    else:
        p = _matrix(owner, "propensity", propensity, n, len(arms))
    given = p[np.arange(n), _index(arm, arms)]
    if not ((p >= 0).all() and (p <= 1).all() and (given > 0).all()):
        raise _error(owner, "propensity", "probabilities in [0, 1], positive for the arm each row got",
                     "values outside")
    return p


def _index(labels: np.ndarray, arms: list[str]) -> np.ndarray:
    lookup = {a: i for i, a in enumerate(arms)}
    return np.fromiter((lookup[v] for v in labels), dtype=np.int64, count=labels.size)


def _costs(owner: str, costs, channels: list[str]) -> np.ndarray:
    """Cost of each arm ``[control, *channels]``; control costs nothing, unlisted channels 0."""
    costs = dict(costs or {})
    unknown = sorted(set(costs) - set(channels) - {CONTROL})
    if unknown:
        raise _error(owner, "costs", f"costs of the channels {channels}", f"costs of {unknown}")
    out = np.array([0.0, *(float(costs.get(c, 0.0)) for c in channels)])
    if not (np.isfinite(out).all() and (out >= 0).all()):
        raise _error(owner, "costs", "finite costs >= 0", dict(zip(channels, out[1:].tolist(), strict=True)))
    return out


# --------------------------------------------------------------------------- multi-arm Qini


def multiarm_qini_curve(y_true, uplift, arm, *, channels=None, control: str = CONTROL):
    """Compute the multi-arm Qini curve of per-channel uplift predictions.

    Users are ranked by their best predicted uplift, and each is recommended
    the channel it comes from. At each distinct score (descending) the curve
    is ``sum over channels j of (R_j - C_j * N_j / M_j)``, where among the
    users ranked so far and recommended ``j``, ``N_j`` got channel ``j``, ``R_j``
    of them responded, and ``M_j`` got control, ``C_j`` of them responded: the
    incremental responders among users who got what the model recommends.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Binary outcome (1 = responded).
    uplift : array-like of shape (n_samples, n_channels)
        Predicted uplift of each channel; a 1-D array with one channel.
    arm : array-like of shape (n_samples,)
        The arm each row got: ``control`` or a channel name.
    channels : list of str, optional
        The channel of each uplift column; default the non-control arms, sorted.
    control : str, default="control"
        The label of the control arm.

    Returns
    -------
    x : ndarray
        Number of users ranked, starting at 0.
    qini : ndarray
        Incremental responders, starting at 0.

    Raises
    ------
    ValueError
        If the arrays disagree in length or shape, ``arm`` holds an arm that is
        neither control nor a channel, or a value is missing.

    Examples
    --------
    >>> x, q = multiarm_qini_curve([1, 0, 1, 0], [[0.3, 0.1], [0.2, 0.4], [0.1, 0.0], [0.0, 0.2]],
    ...                            ["a", "b", "control", "control"])
    >>> x.tolist(), q.tolist()
    ([0, 1, 2, 3, 4], [0.0, 0.0, 1.0, 1.0, 0.0])
    """
    owner = "multiarm_qini_curve"
    (y,) = _check_inputs(owner, both_classes=(), y_true=y_true)
    arm = _labels(owner, "arm", arm, y.size)
    channels = _arms(owner, arm, channels, control)
    u = _matrix(owner, "uplift", uplift, y.size, len(channels))
    return _multiarm_qini(y, u, arm, channels, control)


def _multiarm_qini(y, u, arm, channels, control):
    score, rec = u.max(axis=1), u.argmax(axis=1)
    order = _sklift_order(score)
    y, rec, arm, s = y[order], rec[order], arm[order], score[order]
    cut = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    is_control = arm == control
    total = np.zeros(cut.size)
    for j, name in enumerate(channels):
        mine = rec == j
        treated, ctrl = mine & (arm == name), mine & is_control
        n_t = np.cumsum(treated, dtype=np.float64)[cut]
        r_t = np.cumsum(treated & (y == 1), dtype=np.float64)[cut]
        n_c = np.cumsum(ctrl, dtype=np.float64)[cut]
        r_c = np.cumsum(ctrl & (y == 1), dtype=np.float64)[cut]
        total += r_t - r_c * _safe_divide(n_t, n_c)
    return np.r_[0, cut + 1], np.r_[0.0, total]


def multiarm_qini_auc_score(y_true, uplift, arm, *, channels=None, control: str = CONTROL) -> float:
    """Area under the multi-arm Qini curve, per user and per share ranked (higher is better).

    The curve of :func:`multiarm_qini_curve` with both axes divided by the
    number of rows, integrated by the trapezoid rule. Unlike the single-arm
    ``qini_auc_score`` it is not taken relative to a random line or a perfect
    curve: the level matters, because recommending a worse channel lowers the
    curve everywhere, including at the end. Compare models on the same rows.

    Parameters and Raises are those of :func:`multiarm_qini_curve`.

    Returns
    -------
    float

    Examples
    --------
    >>> round(multiarm_qini_auc_score([1, 0, 1, 0], [[0.3, 0.1], [0.2, 0.4], [0.1, 0.0], [0.0, 0.2]],
    ...                               ["a", "b", "control", "control"]), 4)
    0.125
    """
    owner = "multiarm_qini_auc_score"
    (y,) = _check_inputs(owner, both_classes=(), y_true=y_true)
    arm = _labels(owner, "arm", arm, y.size)
    channels = _arms(owner, arm, channels, control)
    u = _matrix(owner, "uplift", uplift, y.size, len(channels))
    x, q = _multiarm_qini(y, u, arm, channels, control)
    return float(np.trapezoid(q / y.size, x / y.size))


# --------------------------------------------------------------------------- policy value


def _policy_inputs(owner, y_true, arm, policy, propensity, outcome, costs, channels, control):
    (y,) = _check_inputs(owner, both_classes=(), y_true=y_true)
    arm = _labels(owner, "arm", arm, y.size)
    policy = _labels(owner, "policy", policy, y.size)
    arm = np.where(arm == control, CONTROL, arm)
    policy = np.where(policy == control, CONTROL, policy)
    channels = _arms(owner, np.r_[arm, policy], channels, CONTROL)
    arms = [CONTROL, *channels]
    p = _propensities(owner, propensity, arm, arms)
    m = None if outcome is None else _matrix(owner, "outcome", outcome, y.size, len(arms))
    return y, _index(arm, arms), _index(policy, arms), p, m, _costs(owner, costs, channels)


def _value(y, a, pi, p, m, cost, value_per_user, method) -> float:
    """v * (mean outcome under pi - under all control) - mean cost of pi, per row."""
    rows = np.arange(y.size)

    def mean_outcome(target: np.ndarray) -> float:
        hit = (a == target) / p[rows, target]
        if method == "ipw":
            total = hit.sum()
            return float((hit * y).sum() / total) if total > 0 else math.nan
        return float(np.mean(m[rows, target] + hit * (y - m[rows, a])))

    lift = mean_outcome(pi) - mean_outcome(np.zeros_like(pi))
    return value_per_user * lift - float(cost[pi].mean())


def policy_value(y_true, arm, policy, *, propensity=None, outcome=None, value_per_user: float = 1.0,
                 costs: Mapping[str, float] | None = None, channels=None, control: str = CONTROL,
                 method: str = "ipw") -> float:
    """Estimate the net value per user of giving each user the arm ``policy`` says, from randomised data.

    The value is ``value_per_user * (P(return | policy) - P(return | nobody
    contacted)) - mean cost of the policy's messages``, averaged over the rows:
    expected incremental returns net of cost, per user.

    * ``method="ipw"``: inverse propensity weighting, self-normalised (Hájek):
      the mean outcome under a policy is ``sum(w * y) / sum(w)`` with
      ``w = 1[arm == policy] / propensity(arm)``. Unbiased as the sample grows,
      needs only the randomisation.
    * ``method="dr"``: doubly robust: ``mean(m(x, policy) + w * (y - m(x, arm)))``
      with ``outcome`` the predicted return probability under each arm.
      Unbiased if either the propensities or the outcome model are right;
      lower variance when the outcome model is good.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Binary outcome (1 = returned).
    arm : array-like of shape (n_samples,)
        The arm each row got in the randomised campaign.
    policy : array-like of shape (n_samples,)
        The arm the policy gives each row (``control`` = no message).
    propensity : None, dict or array-like of shape (n_samples, 1 + n_channels)
        Probability of each arm (columns ``[control, *channels]``), per row or
        as a dict of constants; None uses each arm's share of the rows.
    outcome : array-like of shape (n_samples, 1 + n_channels), optional
        Predicted return probability under each arm (columns ``[control,
        *channels]``); needed for ``method="dr"``.
    value_per_user : float, default=1.0
        Value of one return, in the unit of the costs.
    costs : dict of str to float, optional
        Cost of one message by each channel (control and unlisted channels: 0).
    channels : list of str, optional
        The channels, in the order of the columns of ``propensity`` and
        ``outcome``; default the non-control labels in ``arm`` and ``policy``, sorted.
    control : str, default="control"
        The label of the control arm in ``arm`` and ``policy``.
    method : {"ipw", "dr"}, default="ipw"

    Returns
    -------
    float
        Net value per user (NaN if no row got the arm a policy needs, under IPW).

    Raises
    ------
    ValueError
        On arrays of the wrong shape, unknown arms, propensities outside [0, 1]
        or zero for an arm a row got, negative costs, or ``method="dr"``
        without ``outcome``.

    Examples
    --------
    Two rows per arm; the policy gives ``a`` to the first half and nothing to the rest:

    >>> y = [1, 0, 1, 1, 0, 0]
    >>> arm = ["a", "a", "control", "control", "a", "control"]
    >>> policy = ["a", "a", "a", "control", "control", "control"]
    >>> round(policy_value(y, arm, policy, costs={"a": 0.1}), 4)
    -0.2167
    """
    owner = "policy_value"
    if method not in ("ipw", "dr"):
        raise _error(owner, "method", "'ipw' or 'dr'", repr(method))
    if method == "dr" and outcome is None:
        raise _error(owner, "outcome", "predicted probabilities of every arm with method='dr'", None)
    y, a, pi, p, m, cost = _policy_inputs(owner, y_true, arm, policy, propensity, outcome, costs, channels, control)
    return _value(y, a, pi, p, m, cost, float(value_per_user), method)


def policy_value_interval(y_true, arm, policy, *, n_boot: int = 200, alpha: float = 0.05, seed=0,
                          **kwargs) -> dict[str, float]:
    """:func:`policy_value` with a bootstrap percentile interval (rows resampled within each arm).

    Parameters
    ----------
    y_true, arm, policy
        As in :func:`policy_value`.
    n_boot : int, default=200
    alpha : float, default=0.05
        One minus the coverage.
    seed : int or numpy.random.Generator, default=0
    **kwargs
        ``propensity``, ``outcome``, ``value_per_user``, ``costs``,
        ``channels``, ``control``, ``method`` of :func:`policy_value`.

    Returns
    -------
    dict
        ``estimate``, ``low``, ``high``, ``std``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> arm = rng.choice(["control", "a"], 2000); y = rng.random(2000) < np.where(arm == "a", 0.3, 0.2)
    >>> ci = policy_value_interval(y, arm, np.full(2000, "a"), n_boot=100)
    >>> ci["low"] < 0.1 < ci["high"]
    True
    """
    owner = "policy_value_interval"
    _check_int(owner, "n_boot", n_boot, low=2)
    method = kwargs.pop("method", "ipw")
    if method not in ("ipw", "dr"):
        raise _error(owner, "method", "'ipw' or 'dr'", repr(method))
    outcome, value = kwargs.get("outcome"), float(kwargs.pop("value_per_user", 1.0))
    if method == "dr" and outcome is None:
        raise _error(owner, "outcome", "predicted probabilities of every arm with method='dr'", None)
    args = (kwargs.get(k) for k in ("propensity", "outcome", "costs", "channels"))
    y, a, pi, p, m, cost = _policy_inputs(owner, y_true, arm, policy, *args, kwargs.get("control", CONTROL))
    estimate = _value(y, a, pi, p, m, cost, value, method)

    def resampled(rows: np.ndarray) -> float:
        return _value(y[rows], a[rows], pi[rows], p[rows], None if m is None else m[rows], cost, value, method)

    return {"estimate": estimate, **_percentile_bootstrap(resampled, a, n_boot=n_boot, alpha=alpha, seed=seed)}


def expected_policy_value(p_return, policy, *, channels, value_per_user: float = 1.0,
                          costs: Mapping[str, float] | None = None, control: str = CONTROL) -> float:
    """The true net value per user of a policy when every arm's return probability is known.

    ``value_per_user * mean(p(x, policy) - p(x, control)) - mean cost``; on
    simulated data, where ``p_return`` is the exact truth.

    Parameters
    ----------
    p_return : array-like of shape (n_samples, 1 + n_channels)
        Return probability under each arm, columns ``[control, *channels]``.
    policy : array-like of shape (n_samples,)
        The arm given to each row.
    channels : list of str
    value_per_user, costs, control
        As in :func:`policy_value`.

    Returns
    -------
    float

    Examples
    --------
    >>> p = [[0.1, 0.3], [0.2, 0.1]]
    >>> round(expected_policy_value(p, ["a", "control"], channels=["a"], costs={"a": 0.05}), 4)
    0.075
    """
    owner = "expected_policy_value"
    policy = _labels(owner, "policy", policy)
    policy = np.where(policy == control, CONTROL, policy)
    channels = _arms(owner, policy, channels, CONTROL)
    arms = [CONTROL, *channels]
    p = _matrix(owner, "p_return", p_return, policy.size, len(arms))
    pi = _index(policy, arms)
    rows = np.arange(policy.size)
    cost = _costs(owner, costs, channels)
    return float(value_per_user * (p[rows, pi] - p[:, 0]).mean() - cost[pi].mean())
