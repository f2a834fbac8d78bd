"""The input check and the one error shape every metric shares."""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd

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
