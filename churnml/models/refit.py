"""The production churn model: a recipe refit on every labelled snapshot, calibrated out of sample.

A :class:`Recipe` is everything about how a churn model is trained except the
data: inputs, LightGBM parameters, calibration, and the rules for the number
of trees. :func:`fit_recipe` applies it to a set of labelled snapshots ``D``:

1. **Inner split by time.** The latest ``valid_snapshots`` snapshots of ``D``
   validate; the snapshots whose label windows close before the first of them
   train (:func:`inner_split`). Snapshots in between are left out of this step
   only.
2. **Early stopping and calibration out of sample.** A booster fit on the
   training part stops early on the validation part; the calibrators (sigmoid
   and isotonic) are fit on its raw scores there, rows it never saw.
3. **Refit on all of ``D``** (every snapshot, gaps and validation included)
   with the tree count of step 2 scaled to the larger set:
   ``trees = best_iteration * (rows(D) / rows(train part)) ** tree_exponent``
   (:func:`scale_trees`). The step-2 calibrator maps the refit booster's raw
   score to a probability.

Reusing the step-2 calibrator is the honest choice among those available: the
refit booster has seen every labelled row, so any calibrator fit on its own
scores would be fit in sample. The step-2 calibrator learned how raw scores of
this recipe turn into churn rates on a snapshot later than everything its
booster was fit on, which is the refit model's situation tonight. The
mismatch (the refit booster has more trees and more data) is not assumed away:
the rolling backtest (:mod:`churnml.models.backtest`) runs exactly this
procedure at each cut-off and measures the calibration that results.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import pandas as pd

from churnml.exceptions import DataWarning, TrainingDataError
from churnml.features import LABEL
from churnml.models.churn import (
    BASE_PARAMS,
    Calibrator,
    ChurnModel,
    choose_calibrator,
    feature_specs,
    fit_booster,
    fit_churn_model,
    to_matrix,
)

__all__ = ["CALIBRATION_KINDS", "Recipe", "RecipeFit", "fit_recipe", "inner_split", "scale_trees"]

#: Calibrations a recipe with ``calibration="auto"`` fits on its validation part (the backtest chooses;
#: ``none`` keeps the booster's own probabilities, which the refit's larger tree count may suit better).
CALIBRATION_KINDS = ("none", "sigmoid", "isotonic")


@dataclass(frozen=True)
class Recipe:
    """How a churn model is trained from labelled snapshots: everything but the data.

    Parameters
    ----------
    features : tuple of str
        Input columns.
    params : dict
        LightGBM parameters.
    calibration : {"auto", "sigmoid", "isotonic", "none"}
        ``auto`` fits every kind of :data:`CALIBRATION_KINDS`; the backtest
        chooses among them (:func:`churnml.models.backtest.run_backtest`),
        and on its own :func:`fit_recipe` takes the sigmoid or isotonic one a
        2-fold cross-validation on the validation part prefers.
    num_boost_round, early_stopping_rounds : int
        Step 2's cap on trees and its early-stopping patience.
    valid_snapshots : int
        Snapshots in step 1's validation part.
    tree_exponent : float
        Step 3's scaling of the tree count with the rows (0 = as many trees
        as early stopping chose, 1 = proportional to the rows).
    min_class_count : int
        Fewer churned or retained training rows than this is an error.
    seed : int
    """

    features: tuple[str, ...]
    params: dict = field(default_factory=dict)
    calibration: str = "auto"
    num_boost_round: int = 1000
    early_stopping_rounds: int = 50
    valid_snapshots: int = 1
    tree_exponent: float = 0.25
    min_class_count: int = 50
    seed: int = 0

    def with_calibration(self, kind: str) -> Recipe:
        """The same recipe with a fixed calibration kind."""
        return Recipe(**{**asdict(self), "calibration": kind})

    def to_dict(self) -> dict:
        return {**asdict(self), "features": list(self.features)}

    @classmethod
    def from_dict(cls, d: dict) -> Recipe:
        return cls(**{**d, "features": tuple(d["features"])})


@dataclass
class RecipeFit:
    """A recipe applied to labelled snapshots: the refit model and what was learned on the way.

    Attributes
    ----------
    model : ChurnModel
        The refit booster with the calibrator of the recipe's kind (for
        ``auto``, the kind the 2-fold cross-validation chose).
    calibrators : dict
        Kind -> calibrator fit on the validation part (out of sample).
    auto_kind : str
        The kind the cross-validation on the validation part prefers.
    info : dict
        Snapshots and rows of each part, early-stopping trees, refit trees.
    """

    model: ChurnModel
    calibrators: dict[str, Calibrator]
    auto_kind: str
    info: dict

    def with_calibration(self, kind: str) -> ChurnModel:
        """The refit model with the calibrator of ``kind``."""
        m = self.model
        return ChurnModel(m.booster, m.features, self.calibrators[kind], m.params, m.metadata)


def inner_split(snapshots: Sequence[dt.datetime], horizon_days: int,
                valid_snapshots: int = 1) -> tuple[list[dt.datetime], list[dt.datetime]]:
    """The latest ``valid_snapshots`` snapshots validate; those whose label windows close before them train.

    Raises
    ------
    TrainingDataError
        If no snapshot's label window closes before the validation part.

    Examples
    --------
    >>> from churnml.config import utc
    >>> weeks = [utc(f"2024-03-{d:02d}") for d in (1, 8, 15, 22)]
    >>> train, valid = inner_split(weeks, 14)
    >>> [x.day for x in train], [x.day for x in valid]
    ([1, 8], [22])
    """
    instants = sorted(set(snapshots))
    h = dt.timedelta(days=horizon_days)
    valid = instants[-valid_snapshots:]
    train = [s for s in instants if valid and s + h <= valid[0]]
    if len(instants) <= valid_snapshots or not train:
        days = ", ".join(s.date().isoformat() for s in instants) or "none"
        raise TrainingDataError(
            f"labelled snapshots {days}: none has a {horizon_days}-day label window that closes before the "
            f"latest {valid_snapshots} (which validate); add earlier snapshots or shorten the horizon")
    return train, valid


def scale_trees(trees: int, rows_from: int, rows_to: int, exponent: float) -> int:
    """Trees for ``rows_to`` rows, given that early stopping chose ``trees`` for ``rows_from``.

    ``trees * (rows_to / rows_from) ** exponent``, rounded, at least 1.

    Examples
    --------
    >>> scale_trees(100, 1000, 4000, 0.5)
    200
    >>> scale_trees(100, 1000, 4000, 0.0)
    100
    """
    return max(1, round(trees * (rows_to / max(rows_from, 1)) ** exponent))


def fit_recipe(
    frame: pd.DataFrame,
    recipe: Recipe,
    horizon_days: int,
    *,
    threads: int | None = None,
    metadata: dict | None = None,
) -> RecipeFit:
    """Apply ``recipe`` to the labelled snapshots of ``frame`` (see the module docstring).

    Parameters
    ----------
    frame : DataFrame
        Stacked labelled snapshots (``as_of``, features, ``churned``). Every
        row is used by the refit.
    recipe : Recipe
    horizon_days : int
        The label horizon (decides which snapshots may train before the
        validation part).
    threads : int, optional
        LightGBM threads.
    metadata : dict, optional
        Stored with the model.

    Returns
    -------
    RecipeFit

    Raises
    ------
    TrainingDataError
        Too few snapshots for the inner split, or too few churned or retained rows.
    """
    as_of = pd.to_datetime(frame["as_of"], utc=True)
    instants = [x.to_pydatetime() for x in sorted(as_of.unique())]
    train_s, valid_s = inner_split(instants, horizon_days, recipe.valid_snapshots)
    tr = frame[as_of.isin(train_s).to_numpy()]
    va = frame[as_of.isin(valid_s).to_numpy()]
    params = dict(recipe.params)
    es_model, es_info = fit_churn_model(
        tr, va, features=recipe.features, params=params, calibration="none",
        num_boost_round=recipe.num_boost_round, early_stopping_rounds=recipe.early_stopping_rounds,
        min_class_count=recipe.min_class_count, seed=recipe.seed, threads=threads)
    raw_v = es_model.raw_score(va, where="validation data")
    y_v = va[LABEL].to_numpy()
    kinds = CALIBRATION_KINDS if recipe.calibration == "auto" else (recipe.calibration,)
    calibrators = {k: Calibrator.fit(raw_v, y_v, k) for k in kinds}
    auto_kind = recipe.calibration
    if recipe.calibration == "auto":
        auto_kind = choose_calibrator(raw_v, y_v, "auto", seed=recipe.seed)[0].kind

    n_es = int(es_info["best_iteration"])
    trees = scale_trees(n_es, len(tr), len(frame), recipe.tree_exponent)
    with warnings.catch_warnings():
        # Columns empty in every row were reported by the early-stopping fit already.
        warnings.simplefilter("ignore", DataWarning)
        specs = feature_specs(frame, recipe.features)
    y = frame[LABEL].to_numpy()
    if min(int((y == 1).sum()), int((y == 0).sum())) < recipe.min_class_count:
        raise TrainingDataError(f"the labelled snapshots have {int((y == 1).sum()):,} churned and "
                                f"{int((y == 0).sum()):,} retained rows; at least {recipe.min_class_count:,} "
                                "of each are needed")
    p = {**params, "seed": recipe.seed, **({"num_threads": threads} if threads else {})}
    booster = fit_booster(to_matrix(frame, specs, where="training data"), y, None, None, p, num_boost_round=trees)
    model = ChurnModel(booster, specs, calibrators[auto_kind], {**BASE_PARAMS, **p}, dict(metadata or {}))
    info = {
        "train_snapshots": [s.isoformat() for s in train_s], "valid_snapshots": [s.isoformat() for s in valid_s],
        "snapshots": [s.isoformat() for s in instants], "rows_early_stopping": len(tr), "rows_valid": len(va),
        "rows_refit": len(frame), "trees_early_stopping": n_es, "trees": trees,
        "tree_exponent": recipe.tree_exponent, "calibration": auto_kind,
        "label_cutoff": (max(instants) + dt.timedelta(days=horizon_days)).isoformat(),
    }
    return RecipeFit(model, calibrators, auto_kind, info)

