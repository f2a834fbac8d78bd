"""Point-in-time behavioural features, churn labels and training sets."""

from churnml.features.build import (
    ID_COLUMNS,
    LABEL,
    RESPONSE,
    FeatureSet,
    build_features,
    build_snapshot,
    build_training_set,
    build_uplift_set,
    churn_labels,
)
from churnml.features.definitions import Feature, feature_definitions, safe_name

__all__ = [
    "ID_COLUMNS",
    "LABEL",
    "RESPONSE",
    "Feature",
    "FeatureSet",
    "build_features",
    "build_snapshot",
    "build_training_set",
    "build_uplift_set",
    "churn_labels",
    "feature_definitions",
    "safe_name",
]
