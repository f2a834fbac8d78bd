"""Bootstrap percentile intervals around any scalar metric of :mod:`churnml.metrics`."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from numbers import Real

import numpy as np
import pandas as pd

from churnml.metrics._checks import _check_inputs, _check_int, _error

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
    >>> from churnml.metrics import roc_auc
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
    resampled = _percentile_bootstrap(
        lambda rows: metric(*(col[rows] for col in columns), **kwargs), labels, n_boot=n_boot, alpha=alpha,
        seed=seed)
    return {"estimate": float(estimate), **resampled}


def _percentile_bootstrap(statistic: Callable[[np.ndarray], float], labels: np.ndarray, *, n_boot: int,
                          alpha: float, seed) -> dict[str, float]:
    """``low``, ``high`` and ``std`` of ``statistic(rows)`` over resamples of rows drawn within each label.

    Resamples on which the statistic is NaN are ignored.
    """
    strata = [np.flatnonzero(labels == value) for value in pd.unique(labels)]
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    for b in range(n_boot):
        # Per-resample index draws keep memory at O(n) for large tables; the
        # metric, not the draw, dominates the cost.
        rows = np.concatenate([s[rng.integers(0, s.size, s.size)] for s in strata])
        values[b] = statistic(rows)

    valid = values[~np.isnan(values)]
    if valid.size < 2:
        low = high = std = math.nan
    else:
        low, high = np.quantile(valid, [alpha / 2, 1 - alpha / 2])
        std = valid.std(ddof=1)
    return {"low": float(low), "high": float(high), "std": float(std)}
