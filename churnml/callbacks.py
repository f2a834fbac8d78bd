"""Training hooks: small callables passed to LightGBM's ``train`` (``callbacks=[...]``).

Each factory returns a function of LightGBM's ``CallbackEnv`` with an
``order`` attribute (LightGBM runs callbacks sorted by it). A hook stops
training by raising: :func:`optuna_pruning` raises ``optuna.TrialPruned``,
LightGBM's own early stopping raises ``EarlyStopException``.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["metric_logger", "optuna_pruning"]


def _value(env, dataset: str, metric: str) -> float | None:
    for name, m, value, _ in env.evaluation_result_list:
        if name == dataset and m == metric:
            return float(value)
    return None


def optuna_pruning(trial, dataset: str = "valid", metric: str = "binary_logloss", *, period: int = 10) -> Callable:
    """Report ``metric`` on ``dataset`` to an Optuna trial every ``period`` rounds; prune if told to.

    Parameters
    ----------
    trial : optuna.Trial
    dataset, metric : str
        Which evaluation result to report (as named in ``valid_names``).
    period : int
        Report every ``period`` boosting rounds (reporting costs a storage write).

    Raises
    ------
    optuna.TrialPruned
        From inside training, when the pruner says the trial is unpromising.
    """
    import optuna

    def _callback(env) -> None:
        step = env.iteration + 1
        if step % period:
            return
        value = _value(env, dataset, metric)
        if value is None:
            raise ValueError(f"no evaluation result '{metric}' on '{dataset}' to report to Optuna")
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at round {step} ({metric}={value:.5f})")

    _callback.order = 25  # after evaluation is recorded, before early stopping (30)
    return _callback


def metric_logger(log: Callable[[dict, int], None], *, period: int = 25) -> Callable:
    """Send every evaluation result to ``log(metrics, step)`` every ``period`` rounds.

    ``log`` is typically :func:`churnml.tracking.log_metrics`, so learning
    curves show up in the MLflow run without this module importing MLflow.
    """

    def _callback(env) -> None:
        step = env.iteration + 1
        if step % period and step != env.end_iteration:
            return
        log({f"{d}_{m}": float(v) for d, m, v, _ in env.evaluation_result_list}, step)

    _callback.order = 20
    return _callback
