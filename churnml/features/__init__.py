"""Point-in-time behavioural and subscription features, churn labels (by definition) and training sets."""

from churnml.features.build import (
    ID_COLUMNS,
    LABEL,
    RESPONSE,
    FeatureSet,
    build_features,
    build_snapshot,
    build_training_set,
    build_uplift_set,
)
from churnml.features.labels import CHURN_TS, ChurnDefinition, churn_definition, churn_labels, label_window_days
from churnml.features.definitions import Feature, feature_definitions, safe_name

__all__ = [
    "CHURN_TS",
    "ChurnDefinition",
    "ID_COLUMNS",
    "LABEL",
    "RESPONSE",
    "Feature",
    "FeatureSet",
    "build_features",
    "build_snapshot",
    "build_training_set",
    "build_uplift_set",
    "churn_definition",
    "churn_labels",
    "feature_definitions",
    "label_window_days",
    "safe_name",
]
