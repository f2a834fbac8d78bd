"""scikit-learn's estimator checks over churnml's ChurnClassifier: all pass, no exceptions claimed."""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from churnml.models.churn import ChurnClassifier


@parametrize_with_checks([ChurnClassifier(n_estimators=20, random_state=0)])
def test_sklearn_compatible(estimator, check):
    check(estimator)
