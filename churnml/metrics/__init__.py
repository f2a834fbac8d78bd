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

The functions live in one module per family (:mod:`churnml.metrics.uplift`,
:mod:`churnml.metrics.churn`, :mod:`churnml.metrics.policy` for several channels,
:mod:`churnml.metrics.bootstrap`) and are imported from here.
"""

from churnml.metrics.bootstrap import bootstrap_interval
from churnml.metrics.churn import (
    auc_by_group,
    brier_score,
    capture_at_k,
    expected_calibration_error,
    lift_at_k,
    log_loss,
    pr_auc,
    reliability_table,
    roc_auc,
)
from churnml.metrics.policy import (
    expected_policy_value,
    multiarm_qini_auc_score,
    multiarm_qini_curve,
    policy_value,
    policy_value_interval,
)
from churnml.metrics.uplift import (
    perfect_qini_curve,
    perfect_uplift_curve,
    qini_auc_score,
    qini_curve,
    uplift_at_k,
    uplift_auc_score,
    uplift_by_percentile,
    uplift_calibration,
    uplift_calibration_error,
    uplift_curve,
)

__all__ = [
    "auc_by_group",
    "bootstrap_interval",
    "brier_score",
    "capture_at_k",
    "expected_calibration_error",
    "expected_policy_value",
    "lift_at_k",
    "log_loss",
    "multiarm_qini_auc_score",
    "multiarm_qini_curve",
    "perfect_qini_curve",
    "perfect_uplift_curve",
    "policy_value",
    "policy_value_interval",
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
