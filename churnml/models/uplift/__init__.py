"""Uplift (heterogeneous treatment effect) learners with scikit-uplift's shape.

Every learner follows ``fit(X, y, treatment) -> self`` and ``predict(X) -> uplift``,
where uplift is the estimated change in the probability of the outcome
(``y == 1``, e.g. "the customer comes back") caused by the treatment (e.g. a
recall e-mail). ``predict_outcomes(X)`` returns the two probabilities behind the
uplift, ``(p_control, p_treated)``, which :func:`segments` turns into the four
classic groups (persuadable, sure thing, lost cause, sleeping dog).

The learners are the standard meta-learners over LightGBM
(:class:`SLearner`, :class:`TLearner`, :class:`XLearner`, :class:`DRLearner`),
the class-transformation approach (:class:`ClassTransformation`) and a
regularised logistic regression with treatment interactions
(:class:`InteractionLogistic`). :func:`select_uplift_model` picks one of several
candidates by cross-validated Qini on the data it is given, and
:func:`default_candidates` returns a sensible set to pick from.

The learners assume a randomised experiment: the propensity (the probability of
being treated) is the known randomisation share, by default the treated
fraction of the training rows. ``fit`` warns with
:class:`~churnml.exceptions.DataWarning` when a cross-validated linear propensity
model (Fisher's discriminant) can tell treated rows from control rows (AUC above
``max_propensity_auc``).

With several channels (a campaign randomised over control and, say, SMS,
e-mail and push), the multi-arm learners of :mod:`churnml.models.uplift.multiarm`
predict one uplift per channel, and :func:`select_multiarm_model` chooses among
them by cross-validated multi-arm Qini.

The code lives in one module per family: :mod:`churnml.models.uplift.learners`
(the binary learners), :mod:`churnml.models.uplift.multiarm` (the multi-arm
learners), :mod:`churnml.models.uplift.selection` (segments, cross-validated
choice, default candidates) and a private module of what they share; every
public name is imported from here.
"""

from churnml.models.uplift._base import (
    SEGMENTS,
    _LinearFeatures,  # noqa: F401  (stored models and tests name it here)
)
from churnml.models.uplift.learners import (
    ClassTransformation,
    DRLearner,
    InteractionLogistic,
    SLearner,
    TLearner,
    XLearner,
)
from churnml.models.uplift.multiarm import (
    MultiArmSLearner,
    MultiArmTLearner,
    PerArmUplift,
    arm_calibration,
)
from churnml.models.uplift.selection import (
    default_candidates,
    default_multiarm_candidates,
    segments,
    select_multiarm_model,
    select_uplift_model,
)

__all__ = [
    "SEGMENTS",
    "ClassTransformation",
    "DRLearner",
    "InteractionLogistic",
    "MultiArmSLearner",
    "MultiArmTLearner",
    "PerArmUplift",
    "SLearner",
    "TLearner",
    "XLearner",
    "arm_calibration",
    "default_candidates",
    "default_multiarm_candidates",
    "segments",
    "select_multiarm_model",
    "select_uplift_model",
]
