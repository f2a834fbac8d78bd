"""Rolling backtest of the churn training recipe: several cut-offs, each fit only on labels closed before it.

A cut-off ``c`` is a labelled snapshot. Its fold applies the training recipe
(:func:`churnml.models.refit.fit_recipe`: early stopping and calibration on an
inner validation snapshot, then the refit on everything) to the snapshots
whose label windows close by ``c`` (``as_of + horizon <= c``) and scores the
snapshot ``c`` itself, beside the baselines fit on the same history. So no
row a fold learns from, validation and calibration rows included, has a label
window that reaches past its cut-off, and every fold is what the production
refit would have been had the data ended at ``c``.

By default the cut-offs are the latest 3 labelled snapshots whose label
windows do not overlap one another (:func:`backtest_cutoffs`). Metrics are
reported per cut-off and as mean ± standard deviation over cut-offs.

**Model choice.** Several candidate configurations (parameter sets, times
sigmoid or isotonic calibration) are run in every fold; the one with the best
mean log loss over all folds is the configuration the production model is
refit with. The ``model`` row a fold reports is chosen *walk-forward*: by the
folds before it (the first fold uses the default parameters and the
calibration its own validation snapshot prefers). A reported figure therefore
never comes from a choice made on its own labels.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from churnml.evaluation import compare_scores
from churnml.exceptions import TrainingDataError
from churnml.features import LABEL
from churnml.models.baselines import logistic_baseline, oracle_scores, recency_baseline
from churnml.models.churn import check_class_counts
from churnml.models.refit import Recipe, RecipeFit, fit_recipe, inner_split

__all__ = ["Backtest", "backtest_cutoffs", "closed_before", "run_backtest"]

#: The proper score candidates are compared on (lower is better).
CHOICE_METRIC = "log_loss"
MODEL, UNCALIBRATED, LOGISTIC, RECENCY = "model", "model uncalibrated", "logistic regression", "recency only"


def closed_before(snapshots: Sequence[dt.datetime], horizon_days: int, cutoff: dt.datetime) -> list[dt.datetime]:
    """Snapshots whose label windows ``[as_of, as_of + horizon)`` close by ``cutoff``.

    Examples
    --------
    >>> from churnml.config import utc
    >>> weeks = [utc(f"2024-03-{d:02d}") for d in (1, 8, 15, 22)]
    >>> [s.day for s in closed_before(weeks, 14, utc("2024-03-22"))]
    [1, 8]
    """
    h = dt.timedelta(days=horizon_days)
    return sorted(s for s in set(snapshots) if s + h <= cutoff)


def backtest_cutoffs(snapshots: Sequence[dt.datetime], horizon_days: int, *, folds: int = 3,
                     valid_snapshots: int = 1, labels: pd.DataFrame | None = None,
                     min_class_count: int = 0) -> list[dt.datetime]:
    """The latest ``folds`` snapshots whose label windows do not overlap, each with enough history before it.

    Going back from the latest snapshot, each next cut-off is the latest
    snapshot whose label window closes by the previous cut-off. A cut-off is
    kept only if the snapshots closed before it allow the recipe's inner split
    (a validation part and a training part before it) and, when ``labels``
    are given, only if that training part holds ``min_class_count`` churned
    and retained rows (the validation part a fifth of it, at least one) and
    the cut-off snapshot both classes: the model fit there could not be fit
    otherwise. Fewer than ``folds`` cut-offs are returned when the history is
    short.

    Parameters
    ----------
    labels : DataFrame, optional
        ``as_of`` and ``churned`` of the stacked training set.
    min_class_count : int
        As :attr:`churnml.config.TrainConfig.min_class_count`.

    Raises
    ------
    TrainingDataError
        If not even the latest snapshot has enough labelled history before it.

    Examples
    --------
    >>> from churnml.config import utc
    >>> weeks = [utc("2024-01-01") + dt.timedelta(days=7 * i) for i in range(11)]
    >>> [c.date().isoformat() for c in backtest_cutoffs(weeks, 14)]
    ['2024-02-12', '2024-02-26', '2024-03-11']
    """
    instants = sorted(set(snapshots))
    out: list[dt.datetime] = []
    cutoff = instants[-1] if instants else None
    thin = None
    while cutoff is not None and len(out) < folds:
        history = closed_before(instants, horizon_days, cutoff)
        try:
            train, valid = inner_split(history, horizon_days, valid_snapshots)
        except TrainingDataError:
            break  # an earlier cut-off has even less history
        if labels is not None and (thin := _too_few(labels, train, valid, cutoff, min_class_count)):
            break
        out.append(cutoff)
        cutoff = history[-1] if history else None
    if not out and thin:
        raise TrainingDataError(f"the backtest cut-off {cutoff.date()} (the latest labelled snapshot): {thin}")
    if not out:
        days = ", ".join(s.date().isoformat() for s in instants) or "none"
        raise TrainingDataError(
            f"{len(instants)} labelled snapshot(s) ({days}): a backtest needs, before its latest snapshot, "
            f"a validation snapshot and a training snapshot whose {horizon_days}-day label windows close in "
            "turn before it (at least 3 snapshots, spaced so label windows do not overlap); "
            "add earlier snapshots or shorten the horizon")
    return sorted(out)


def _too_few(labels: pd.DataFrame, train, valid, cutoff: dt.datetime, minimum: int) -> str | None:
    """Why a fold at ``cutoff`` cannot be fit or scored for want of one class, or None."""
    as_of = pd.to_datetime(labels["as_of"], utc=True)

    def y(snaps) -> np.ndarray:
        return labels.loc[as_of.isin(pd.to_datetime(snaps, utc=True)).to_numpy(), LABEL].to_numpy()

    try:
        check_class_counts(y(train), y(valid), minimum)  # the checks the fold's fit makes
    except TrainingDataError as e:
        return str(e)
    scored = y([cutoff])
    pos = int((scored == 1).sum())
    if not pos or pos == len(scored):
        return f"the cut-off snapshot has {pos:,} churned and {len(scored) - pos:,} retained rows (AUC is undefined there)"
    return None


@dataclass
class Backtest:
    """Per-cut-off metrics of the model (walk-forward choice) and the baselines, and the choices made.

    Attributes
    ----------
    horizon_days : int
    cutoffs : list of datetime
    folds : DataFrame
        Index ``(cutoff, scorer)`` (cut-off as an ISO date), one column per metric.
    candidates : DataFrame
        Index ``(cutoff, candidate)``: every candidate configuration's metrics.
    choices : dict
        Cut-off -> the candidate its ``model`` row reports (chosen by earlier folds).
    chosen : str
        The candidate with the best mean log loss over every fold.
    default : str
        The first fold's parameter set.
    predictions : DataFrame
        Every fold's scored rows: ``cutoff``, ``as_of``, ``user_id``,
        ``tenure_days``, ``churned`` and one column per scorer.
    fits : dict
        Cut-off -> parameter set -> what :func:`~churnml.models.refit.fit_recipe` did.
    oracle_ratio : dict
        Cut-off -> model ROC-AUC / oracle ROC-AUC on the same rows (simulated data only).
    """

    horizon_days: int
    cutoffs: list[dt.datetime]
    folds: pd.DataFrame
    candidates: pd.DataFrame
    choices: dict[str, str]
    chosen: str
    default: str
    predictions: pd.DataFrame
    fits: dict[str, dict] = field(default_factory=dict)
    oracle_ratio: dict[str, float] = field(default_factory=dict)

    @property
    def chosen_params(self) -> str:
        """The parameter set of :attr:`chosen`."""
        return self.chosen.split(", ")[0]

    @property
    def chosen_calibration(self) -> str:
        """The calibration kind of :attr:`chosen`."""
        return self.chosen.split(", ")[1]

    def mean(self) -> pd.DataFrame:
        """Scorer x metric: the mean over cut-offs (scorers in first-seen order)."""
        order = list(dict.fromkeys(self.folds.index.get_level_values("scorer")))
        return self.folds.groupby(level="scorer", sort=False).mean().reindex(order)

    def sd(self) -> pd.DataFrame:
        """Scorer x metric: the standard deviation over cut-offs (NaN with one cut-off)."""
        return self.folds.groupby(level="scorer", sort=False).std(ddof=1).reindex(self.mean().index)

    def per_cutoff(self, metric: str) -> pd.DataFrame:
        """Cut-off x scorer: one metric."""
        return self.folds[metric].unstack("scorer")[list(self.mean().index)]

    def candidate_means(self) -> pd.Series:
        """Mean log loss of each candidate over every fold."""
        return self.candidates[CHOICE_METRIC].groupby(level="candidate", sort=False).mean()

    def to_dict(self) -> dict:
        """Everything as plain JSON-able values (for MLflow)."""
        def table(df):
            return [{**dict(zip(df.index.names, k, strict=True)), **row} for k, row in
                    zip(df.index, df.to_dict("records"), strict=True)]
        return {"horizon_days": self.horizon_days, "cutoffs": [c.isoformat() for c in self.cutoffs],
                "chosen": self.chosen, "default": self.default, "choices": self.choices,
                "folds": table(self.folds), "candidates": table(self.candidates),
                "fits": self.fits, "oracle_ratio": self.oracle_ratio}


def _best(candidates: pd.DataFrame, cutoffs: list[str], order: list[str]) -> str:
    """The candidate with the lowest mean log loss over ``cutoffs`` (ties: the earlier in ``order``)."""
    rows = candidates.loc[candidates.index.get_level_values("cutoff").isin(cutoffs), CHOICE_METRIC]
    means = rows.groupby(level="candidate").mean()
    return min(order, key=lambda c: (means.get(c, np.inf), order.index(c)))


def run_backtest(
    frame: pd.DataFrame,
    recipes: dict[str, Recipe],
    horizon_days: int,
    cutoffs: Sequence[dt.datetime],
    *,
    default: str | None = None,
    truth: pd.DataFrame | None = None,
    baselines: bool = True,
    threads: int | None = None,
    seed: int = 0,
    on_fold: Callable[[dt.datetime, dict], None] | None = None,
) -> Backtest:
    """Run every recipe at every cut-off and score the cut-off snapshot beside the baselines.

    Parameters
    ----------
    frame : DataFrame
        Stacked labelled snapshots (``as_of``, ``user_id``, features,
        ``churned``; ``tenure_days`` and ``days_since_last_activity`` for the
        reports and the recency baseline).
    recipes : dict
        Parameter-set name -> :class:`~churnml.models.refit.Recipe`. A recipe
        with ``calibration="auto"`` contributes a sigmoid and an isotonic
        candidate, else one candidate of its kind.
    horizon_days : int
    cutoffs : sequence of datetime
        From :func:`backtest_cutoffs`.
    default : str, optional
        The parameter set the first fold reports (default: the first recipe).
    truth : DataFrame, optional
        :func:`~churnml.models.baselines.read_truth` of a simulation: adds the oracles.
    baselines : bool
        Fit and score the logistic-regression and recency baselines.
    threads, seed : int
    on_fold : callable, optional
        Called after each fold with the cut-off and its model metrics.

    Returns
    -------
    Backtest

    Raises
    ------
    TrainingDataError
        A fold without enough history or with one class only at its cut-off.
    """
    if not recipes:
        raise ValueError("The `recipes` parameter of `run_backtest` must name at least one recipe. Got {} instead.")
    default = default or next(iter(recipes))
    h = dt.timedelta(days=horizon_days)
    as_of = pd.to_datetime(frame["as_of"], utc=True)
    order: list[str] = []
    fold_tables, cand_tables, preds = [], [], []
    choices: dict[str, str] = {}
    fits_info: dict[str, dict] = {}
    ratios: dict[str, float] = {}
    for k, cutoff in enumerate(sorted(cutoffs)):
        key = cutoff.date().isoformat()
        history = frame[(as_of + h <= cutoff).to_numpy()]
        test = frame[(as_of == cutoff).to_numpy()]
        y = test[LABEL].to_numpy()
        if len(y) == 0 or y.min() == y.max():
            raise TrainingDataError(f"the backtest snapshot {key} has only "
                                    f"{'churned' if len(y) and y[0] else 'retained'} users ({len(y):,} rows); "
                                    "AUC is undefined there")
        fits: dict[str, RecipeFit] = {}
        raw: dict[str, np.ndarray] = {}
        cand_scores: dict[str, np.ndarray] = {}
        for name, recipe in recipes.items():
            fit = fit_recipe(history, recipe, horizon_days, threads=threads)
            fits[name], raw[name] = fit, fit.model.raw_score(test, where=f"backtest snapshot {key}")
            for kind, cal in fit.calibrators.items():
                cand_scores[f"{name}, {kind}"] = cal.apply(raw[name])
        order = order or list(cand_scores)
        cands = compare_scores(y, cand_scores, set(cand_scores))
        cand_tables.append(cands.set_axis(pd.MultiIndex.from_product([[key], cands.index],
                                                                     names=["cutoff", "candidate"])))
        done = [c.date().isoformat() for c in sorted(cutoffs)[:k]]
        choice = _best(pd.concat(cand_tables[:-1]), done, order) if done else \
            f"{default}, {fits[default].auto_kind}"
        choices[key] = choice
        pname = choice.split(", ")[0]
        fit = fits[pname]
        valid = history[pd.to_datetime(history["as_of"], utc=True).isin(
            pd.to_datetime(fit.info["valid_snapshots"], utc=True)).to_numpy()]
        scores = {MODEL: cand_scores[choice], UNCALIBRATED: 1 / (1 + np.exp(-raw[pname]))}
        if baselines:
            scores |= {LOGISTIC: logistic_baseline(history, test, fit.model.features, seed=seed),
                       RECENCY: recency_baseline(valid, test)}
        table = compare_scores(y, scores, set(scores))
        if truth is not None:
            oracle = oracle_scores(test, truth)
            matched = oracle.notna().all(axis=1).to_numpy()
            on = {n: s[matched] for n, s in scores.items()} | {c: oracle[c].to_numpy()[matched] for c in oracle}
            both = compare_scores(y[matched], on, set(on))
            table = both if matched.all() else pd.concat([table, both.loc[list(oracle.columns)]])
            ratios[key] = float(both.loc[MODEL, "roc_auc"] / both.loc["oracle", "roc_auc"])
            scores |= {c: oracle[c].to_numpy() for c in oracle}
        fold_tables.append(table.set_axis(pd.MultiIndex.from_product([[key], table.index],
                                                                     names=["cutoff", "scorer"])))
        preds.append(pd.DataFrame({"cutoff": key, "as_of": test["as_of"].to_numpy(),
                                   "user_id": test["user_id"].to_numpy(),
                                   "tenure_days": test["tenure_days"].to_numpy() if "tenure_days" in test else np.nan,
                                   LABEL: y, **scores}))
        fits_info[key] = {n: f.info for n, f in fits.items()}
        if on_fold:
            on_fold(cutoff, table.loc[MODEL].to_dict())
    candidates = pd.concat(cand_tables)
    chosen = _best(candidates, list(choices), order)
    return Backtest(horizon_days, sorted(cutoffs), pd.concat(fold_tables), candidates, choices, chosen, default,
                    pd.concat(preds, ignore_index=True), fits_info, ratios)
