"""Churn probabilities over several horizons, monotone in the horizon, beyond the labelled history too.

A discrete-time hazard model on LightGBM. Each labelled snapshot's user is
expanded into *person-period* rows, one per period of ``period_days`` days
after ``as_of`` while the user is at risk: period ``k`` covers
``[as_of + k·Δ, as_of + (k+1)·Δ)`` and its outcome is 1 if the user's churn
time (:mod:`churnml.features.churn_time`) falls in it. A period counts only
once the data confirms its outcome either way (it ends before
``confirmed_until``); a user whose churn time falls in a later or partly
observed period is censored after the last full one. The booster learns the
hazard ``λ_k(x) = P(churn in period k | no churn before it, x)`` from the
snapshot's features ``x`` and ``k``. Then

    S(h) = Π_{k < h/Δ} (1 − λ_k(x)),   P(churn within h) = 1 − S(h)

(a partial last period counts with its share of the period's log-survival),
which can only grow with ``h``. Beyond the longest follow-up in the data the
trees see no larger ``k``; there each user's hazard continues from its last
estimated value along the decline the population's life table shows,
``λ_k ∝ (k + 1) ** b`` with ``b <= 0`` fitted over the observed periods
(:func:`tail_slope`; ``b = 0`` is a constant hazard). That is an assumption,
stated with the output.

Training follows the churn recipe (:mod:`churnml.models.refit`): an inner
cut-off ``c`` (the latest snapshot the shortest horizon still labels) splits
by time; a booster fit on the periods whose outcomes were confirmed by ``c``
(the data as it stood then: it is what the refit would have been at ``c``)
stops early on the person-periods of snapshots at or after ``c``; per horizon
``h`` that those snapshots label (``as_of + h <= confirmed_until``), its
``P(churn within h)`` is compared with what happened, out of sample, and a
sigmoid map to the observed rate is fit; then the booster is refit on every
confirmed person-period with the tree count scaled to the larger set.

Whether the maps are applied is the churn recipe's calibration choice
(``calibration``): the rolling backtest measures, walk-forward, whether a
correction learned on an older snapshot helps on a newer one for this data.
When it does not (drift that does not persist, e.g. a population maturing and
then settling), a map learned at ``c`` would carry ``c``'s bias to tonight,
and the refit's own probabilities are used. Horizons the data cannot label
carry the map of the nearest labelled horizon as a factor on the cumulative
hazard ``−log S(h)``, which keeps each user's curve non-decreasing; a running
maximum over horizons guards the order where two labelled horizons' maps cross.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd

from churnml.exceptions import DataWarning, TrainingDataError
from churnml.features.churn_time import CHURN_TS
from churnml.models.churn import (
    Calibrator,
    FeatureSpec,
    fit_booster,
    lightgbm_input,
    to_matrix,
)
from churnml.models.refit import scale_trees

__all__ = [
    "PERIOD_DAYS",
    "HazardModel",
    "fit_hazard_model",
    "horizon_column",
    "person_periods",
    "tail_slope",
    "within_horizons",
]

#: Length of one hazard period (days).
PERIOD_DAYS = 7
PERIOD = "period"
EVENT = "event"
HAZARD_FILE = "hazard.txt"


def horizon_column(h: int) -> str:
    """The score column of horizon ``h`` days: ``p_churn_<h>d``."""
    return f"p_churn_{h}d"


def _days(delta: pd.Series | np.ndarray) -> np.ndarray:
    return np.asarray(pd.to_timedelta(delta) / pd.Timedelta(days=1), dtype="float64")


def person_periods(as_of: pd.Series, churn_ts: pd.Series, *, confirmed_until: dt.datetime,
                   period_days: int = PERIOD_DAYS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expand snapshot rows into person-period rows.

    Parameters
    ----------
    as_of, churn_ts : Series
        One entry per snapshot row: the snapshot instant and the confirmed
        churn time (missing = none confirmed).
    confirmed_until : datetime
        Periods that end after it are not used (their outcome is not known
        either way).
    period_days : int

    Returns
    -------
    row : ndarray of int
        Position of the snapshot row each person-period comes from.
    period : ndarray of int
        ``k`` (0 = the first ``period_days`` days after ``as_of``).
    event : ndarray of int8
        1 in the period the churn time falls in.

    Examples
    --------
    >>> import pandas as pd
    >>> from churnml.config import utc
    >>> as_of = pd.Series(pd.to_datetime(["2024-01-01", "2024-01-01"], utc=True))
    >>> churn = pd.Series(pd.to_datetime(["2024-01-10", None], utc=True))
    >>> person_periods(as_of, churn, confirmed_until=utc("2024-01-25"))
    (array([0, 0, 1, 1, 1]), array([0, 1, 0, 1, 2]), array([0, 1, 0, 0, 0], dtype=int8))
    """
    start = pd.to_datetime(as_of, utc=True)
    full = np.floor(_days(pd.Timestamp(confirmed_until) - start) / period_days)
    full = np.maximum(full, 0).astype("int64")
    t = _days(pd.to_datetime(churn_ts, utc=True) - start)
    k_event = np.floor(t / period_days)
    has = ~np.isnan(k_event) & (k_event < full)
    n = np.where(has, np.nan_to_num(k_event, nan=0).astype("int64") + 1, full)
    row = np.repeat(np.arange(len(n)), n)
    period = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    event = (has[row] & (period == np.nan_to_num(k_event, nan=-1)[row].astype("int64"))).astype("int8")
    return row, period, event


def within_horizons(hazards: np.ndarray, horizons: Sequence[int], period_days: int = PERIOD_DAYS) -> np.ndarray:
    """``P(churn within h)`` for each row and horizon from per-period hazards.

    ``hazards`` has one column per period ``k = 0, 1, …``; periods past the
    last column use the last column's hazard (the constant-hazard tail).

    Examples
    --------
    >>> import numpy as np
    >>> within_horizons(np.array([[0.1, 0.2]]), [7, 14, 21, 3.5]).round(4)
    array([[0.1   , 0.28  , 0.424 , 0.0513]])
    """
    lam = np.clip(np.asarray(hazards, dtype="float64"), 0.0, 1.0 - 1e-12)
    log_s = np.log1p(-lam)
    out = np.empty((lam.shape[0], len(horizons)))
    n = lam.shape[1]
    cum = np.concatenate([np.zeros((lam.shape[0], 1)), np.cumsum(log_s, axis=1)], axis=1)
    for j, h in enumerate(horizons):
        whole, frac = divmod(h / period_days, 1.0)
        whole = int(whole)
        inside = min(whole, n)
        total = cum[:, inside] + max(whole - n, 0) * log_s[:, -1]
        total = total + frac * log_s[:, min(whole, n - 1)]
        out[:, j] = -np.expm1(total)
    return out


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p) - np.log1p(-p)


def _calibrate(p: np.ndarray, horizons: Sequence[int], calibrators: dict[int, Calibrator]) -> np.ndarray:
    """Per-horizon calibration; unlabelled horizons scale the cumulative hazard like the nearest labelled one."""
    if not calibrators:
        return np.maximum.accumulate(p, axis=1)
    out = p.copy()
    labelled = sorted(calibrators)
    for j, h in enumerate(horizons):
        if h in calibrators:
            out[:, j] = calibrators[h].apply(_logit(p[:, j]))
    cum = -np.log1p(-np.clip(p, 0, 1 - 1e-12))
    for j, h in enumerate(horizons):
        if h in calibrators:
            continue
        below = [x for x in labelled if x < h]
        ref = list(horizons).index(below[-1] if below else labelled[0])
        raw, cal = cum[:, ref], -np.log1p(-np.clip(out[:, ref], 0, 1 - 1e-12))
        factor = np.divide(cal, raw, out=np.ones_like(raw), where=raw > 0)
        out[:, j] = -np.expm1(-cum[:, j] * factor)
    return np.maximum.accumulate(np.clip(out, 0.0, 1.0), axis=1)


@dataclass
class HazardModel:
    """A fitted discrete-time hazard model and the horizons it answers.

    Attributes
    ----------
    booster : lightgbm.Booster
        Inputs: ``features`` then ``period``.
    features : list of FeatureSpec
    horizons : tuple of int
    period_days : int
    max_period : int
        The largest period index seen in training.
    tail_slope : float
        Beyond ``max_period`` each user's hazard follows the population's
        fitted decline: ``λ_k = λ_max · ((k + 1) / (max_period + 1)) ** tail_slope``
        (0 = held constant); see :func:`tail_slope`.
    calibrators : dict
        Horizon -> sigmoid calibrator on the logit of ``P(churn within h)``
        (labelled horizons only).
    info : dict
        How it was fit, and its out-of-sample figures per labelled horizon.
    """

    booster: lgb.Booster
    features: list[FeatureSpec]
    horizons: tuple[int, ...]
    period_days: int = PERIOD_DAYS
    max_period: int = 0
    calibrators: dict[int, Calibrator] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    tail_slope: float = 0.0

    @property
    def columns(self) -> list[str]:
        return [horizon_column(h) for h in self.horizons]

    def hazards_matrix(self, X: pd.DataFrame, n_periods: int) -> np.ndarray:
        """Per-period hazards (rows x ``n_periods``) of an input matrix from :func:`to_matrix`.

        Periods up to ``max_period`` come from the booster (one prediction
        pass each); later ones extend the last along the fitted tail.
        """
        base = lightgbm_input(self.booster, X.assign(**{PERIOD: 0.0}))
        cols = []
        for k in range(min(n_periods, self.max_period + 1)):
            base[:, -1] = k
            cols.append(self.booster.predict(base))
        last = cols[-1]
        cols += [last * ((k + 1) / (self.max_period + 1)) ** self.tail_slope
                 for k in range(self.max_period + 1, n_periods)]
        return np.column_stack(cols)

    def predict_matrix(self, X: pd.DataFrame, *, calibrated: bool = True) -> pd.DataFrame:
        """``p_churn_<h>d`` for each horizon, from an input matrix built by :func:`to_matrix`."""
        n = int(np.ceil(max(self.horizons) / self.period_days)) + 1
        p = within_horizons(self.hazards_matrix(X, n), self.horizons, self.period_days)
        p = _calibrate(p, self.horizons, self.calibrators if calibrated else {})
        return pd.DataFrame(p, columns=self.columns, index=X.index)

    def predict_frame(self, df: pd.DataFrame, *, where: str = "scoring data", calibrated: bool = True) -> pd.DataFrame:
        """``p_churn_<h>d`` for each horizon, for a feature frame."""
        return self.predict_matrix(to_matrix(df, self.features, where=where), calibrated=calibrated)

    def to_dict(self) -> dict:
        return {"features": [s.to_dict() for s in self.features], "horizons": list(self.horizons),
                "period_days": self.period_days, "max_period": self.max_period, "tail_slope": self.tail_slope,
                "calibrators": {str(h): c.to_dict() for h, c in self.calibrators.items()},
                "booster": HAZARD_FILE, "info": self.info}

    @classmethod
    def from_dict(cls, d: dict, booster: lgb.Booster) -> HazardModel:
        return cls(booster, [FeatureSpec.from_dict(x) for x in d["features"]], tuple(d["horizons"]),
                   d["period_days"], d["max_period"],
                   {int(h): Calibrator.from_dict(c) for h, c in d.get("calibrators", {}).items()}, d.get("info", {}),
                   d.get("tail_slope", 0.0))


def tail_slope(period: np.ndarray, event: np.ndarray, *, min_rows: int = 200) -> float:
    """The population's hazard decline over periods, for extrapolating past the longest follow-up.

    A weighted least-squares fit of ``log λ̄_k = a + b · log(k + 1)`` over the
    periods ``k >= 1`` with at least ``min_rows`` person-periods at risk and one
    churn (period 0 holds the churns already under way at ``as_of``, a different
    thing); ``λ̄_k`` is the share of person-periods at ``k`` that churn (a life
    table), weighted by the rows at risk. Returns ``b`` clipped to ``[-2, 0]``:
    a hazard extrapolated past the data may fall, never grow (0 with fewer than
    three usable periods).

    Examples
    --------
    >>> import numpy as np
    >>> k = np.repeat(np.arange(1, 6), 1000)
    >>> ev = np.concatenate([np.r_[np.ones(int(1000 * 0.2 * (j + 1) ** -1.0)), np.zeros(1000)][:1000]
    ...                      for j in range(1, 6)])
    >>> round(tail_slope(k, ev), 1)
    -1.0
    """
    table = pd.DataFrame({"k": period, "e": event}).groupby("k")["e"].agg(["mean", "size"])
    table = table[(table.index >= 1) & (table["size"] >= min_rows) & (table["mean"] > 0)]
    if len(table) < 3:
        return 0.0
    x, y, w = np.log(table.index.to_numpy() + 1.0), np.log(table["mean"].to_numpy()), table["size"].to_numpy()
    slope = np.polyfit(x, y, 1, w=np.sqrt(w))[0]
    return float(np.clip(slope, -2.0, 0.0))


def _expand(frame: pd.DataFrame, X: pd.DataFrame, churn_ts: pd.Series, until: dt.datetime,
            period_days: int) -> tuple[pd.DataFrame, np.ndarray]:
    row, period, event = person_periods(frame["as_of"], churn_ts, confirmed_until=until, period_days=period_days)
    out = X.iloc[row].reset_index(drop=True)
    out[PERIOD] = period.astype("float64")
    return out, event


def _ece(y, p):
    from churnml.metrics import expected_calibration_error

    return float(expected_calibration_error(y, p))


def fit_hazard_model(
    frame: pd.DataFrame,
    churn_ts: pd.Series,
    *,
    specs: list[FeatureSpec],
    horizons: Sequence[int],
    confirmed_until: dt.datetime,
    lag: dt.timedelta,
    params: dict,
    period_days: int = PERIOD_DAYS,
    num_boost_round: int = 1000,
    early_stopping_rounds: int = 50,
    tree_exponent: float = 0.25,
    calibration: str = "sigmoid",
    min_calibration_rows: int = 200,
    max_rows: int | None = 300_000,
    seed: int = 0,
    threads: int | None = None,
) -> HazardModel:
    """Fit the hazard model on labelled snapshots (see the module docstring).

    Parameters
    ----------
    frame : DataFrame
        Stacked snapshots: ``as_of`` and the feature columns of ``specs``.
    churn_ts : Series
        Each row's confirmed churn time (missing = none confirmed), same index
        as ``frame`` (:func:`churnml.features.churn_time.churn_times_frame`).
    specs : list of FeatureSpec
        The inputs (the churn model's).
    horizons : sequence of int
        Days.
    confirmed_until : datetime
        Churn times before it are final.
    lag : timedelta
        How long after a churn time it is confirmed (``observed_until -
        confirmed_until``); with it the inner cut-off sees the data as it stood.
    params : dict
        LightGBM parameters (the churn model's).
    period_days, num_boost_round, early_stopping_rounds, tree_exponent, seed, threads
    calibration : {"sigmoid", "none"}
        Whether labelled horizons get their calibration map. The maps are
        fit either way, and their out-of-sample effect reported.
    min_calibration_rows : int
        A horizon is calibrated only with at least this many labelled rows
        (and 10 of each outcome) after the inner cut-off.
    max_rows : int, optional
        At most about this many person-periods: beyond it, a seeded sample of
        the snapshot rows (each kept with all its periods) is expanded.

    Returns
    -------
    HazardModel

    Raises
    ------
    TrainingDataError
        No snapshot leaves a full period before ``confirmed_until``, or no churn at all.
    """
    horizons = tuple(sorted(set(int(h) for h in horizons)))
    cu = pd.Timestamp(confirmed_until)
    if max_rows is not None:
        n = len(person_periods(frame["as_of"], churn_ts, confirmed_until=cu, period_days=period_days)[0])
        if n > max_rows:
            keep = np.random.default_rng(seed).random(len(frame)) < max_rows / n
            frame, churn_ts = frame[keep], churn_ts[keep]
    as_of = pd.to_datetime(frame["as_of"], utc=True)
    snaps = sorted(as_of.unique())
    labelable = [h for h in horizons if any(s + pd.Timedelta(days=h) <= cu for s in snaps)]
    # The inner cut-off: the latest snapshot the shortest horizon still labels (as much history before it
    # as possible); longer horizons are calibrated if snapshots after it label them, else extrapolated.
    reach = pd.Timedelta(days=min(labelable)) if labelable else pd.Timedelta(days=period_days)
    after = [s for s in snaps if s + reach <= cu]
    if not after:
        raise TrainingDataError(f"no snapshot is followed by a full {period_days}-day period before churn times "
                                f"are confirmed ({cu.isoformat()}); the multi-horizon model needs a longer history")
    cut = after[-1]
    X = to_matrix(frame, specs, where="training data")
    ts = pd.to_datetime(churn_ts, utc=True)
    early = (as_of < cut).to_numpy()
    X_tr, y_tr = _expand(frame[early], X[early], ts[early], cut - pd.Timedelta(lag), period_days)
    X_va, y_va = _expand(frame[~early], X[~early], ts[~early], cu, period_days)
    X_all, y_all = _expand(frame, X, ts, cu, period_days)
    for name, y in (("the person-periods before the inner cut-off", y_tr), ("the later person-periods", y_va)):
        if len(y) == 0 or y.min() == y.max():
            raise TrainingDataError(f"{name} ({len(y):,}) hold {int(y.sum()):,} churns: the multi-horizon model "
                                    "needs churns and survivals on both sides of its inner cut-off "
                                    f"({cut.date()}); add earlier snapshots or users")
    p = {**params, "seed": seed, **({"num_threads": threads} if threads else {})}
    es = fit_booster(X_tr, y_tr, X_va, y_va, p, num_boost_round=num_boost_round,
                     early_stopping_rounds=early_stopping_rounds)
    es_model = HazardModel(es, specs, horizons, period_days, int(X_tr[PERIOD].max()),
                           tail_slope=tail_slope(X_tr[PERIOD].to_numpy(), y_tr))
    n_periods = int(np.ceil(max(horizons) / period_days)) + 1

    calibrators, report = {}, {}
    for h in labelable:
        rows = (~early & (as_of + pd.Timedelta(days=h) <= cu)).to_numpy()
        y = (ts[rows] < as_of[rows] + pd.Timedelta(days=h)).fillna(False).to_numpy().astype("int8")
        if rows.sum() < min_calibration_rows or min(y.sum(), len(y) - y.sum()) < 10:
            continue
        raw = within_horizons(es_model.hazards_matrix(X[rows], n_periods), [h], period_days)[:, 0]
        if calibration != "none":
            calibrators[h] = Calibrator.fit(_logit(raw), y, "sigmoid")
        report[str(h)] = _out_of_sample(frame[rows], raw, y, seed)
    trees = scale_trees(es.current_iteration(), len(y_tr), len(y_all), tree_exponent)
    booster = fit_booster(X_all, y_all, None, None, p, num_boost_round=trees)
    slope = tail_slope(X_all[PERIOD].to_numpy(), y_all)
    info = {"period_days": period_days, "inner_cutoff": cut.isoformat(), "confirmed_until": cu.isoformat(),
            "rows_early_stopping": len(y_tr), "rows_valid": len(y_va), "rows_refit": len(y_all),
            "trees_early_stopping": es.current_iteration(), "trees": trees,
            "max_period": int(X_all[PERIOD].max()), "tail_slope": slope, "calibration": calibration,
            "labelled_horizons": sorted(int(h) for h in report),
            "extrapolated_horizons": [h for h in horizons if str(h) not in report],
            "out_of_sample": report}
    return HazardModel(booster, specs, horizons, period_days, int(X_all[PERIOD].max()), calibrators, info, slope)


def _out_of_sample(rows: pd.DataFrame, raw: np.ndarray, y: np.ndarray, seed: int) -> dict:
    """Figures of a horizon on rows after the inner cut-off: raw, and calibrated by 2-fold cross-fitting over users."""
    from churnml.metrics import roc_auc

    users = rows["user_id"].astype(str).to_numpy()
    fold = (pd.util.hash_array(users, hash_key=f"{seed:016d}"[:16]) % 2).astype(bool)
    cross = np.empty(len(y))
    for part in (fold, ~fold):
        if part.all() or not part.any() or y[~part].min() == y[~part].max():
            cross[part] = raw[part]
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            cross[part] = Calibrator.fit(_logit(raw[~part]), y[~part], "sigmoid").apply(_logit(raw[part]))
    return {"rows": int(len(y)), "snapshots": sorted({pd.Timestamp(t).date().isoformat() for t in rows["as_of"]}),
            "churn_rate": float(y.mean()), "mean_predicted_raw": float(raw.mean()),
            "roc_auc": float(roc_auc(y, raw)), "ece_raw": _ece(y, raw), "ece_calibrated_cross_fit": _ece(y, cross),
            "mean_predicted_calibrated_cross_fit": float(cross.mean())}

