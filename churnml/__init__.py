"""churnml: churn risk, recall uplift and retention analysis from a product's event log.

The flow runs one way: contract (:mod:`churnml.data`) -> features
(:mod:`churnml.features`) -> models -> explanations -> scoring. Job functions
live in :mod:`churnml.jobs`; the command line in :mod:`churnml.cli`.
"""

from churnml.config import DatasetConfig, Settings, get_settings, load_dataset_config
from churnml.data import Dataset, connect, open_dataset
from churnml.exceptions import (
    ChurnmlError,
    ConfigError,
    ContractError,
    DataProblem,
    DataWarning,
    NotFittedError,
    SchemaMismatchError,
)
from churnml.features import build_features, build_snapshot, build_training_set, churn_labels

__version__ = "0.1.0"

__all__ = [
    "ChurnmlError",
    "ConfigError",
    "ContractError",
    "DataProblem",
    "DataWarning",
    "Dataset",
    "DatasetConfig",
    "NotFittedError",
    "SchemaMismatchError",
    "Settings",
    "__version__",
    "build_features",
    "build_snapshot",
    "build_training_set",
    "churn_labels",
    "connect",
    "get_settings",
    "load_dataset_config",
    "open_dataset",
]
