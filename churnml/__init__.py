"""churnml: churn risk, recall uplift and retention analysis from a product's event log.

The flow runs one way: contract (:mod:`churnml.data`) -> features
(:mod:`churnml.features`) -> models -> explanations -> scoring. Job functions
live in :mod:`churnml.jobs`; the command line in :mod:`churnml.cli`.
"""

import importlib
import os

# LightGBM's OpenMP threads spin while they wait for work (libgomp's default). On a machine shared with
# anything else (a scheduler's other jobs, DuckDB, the API's request threads) the spinning threads fight
# the working ones: a 2-thread fit ran 10-25x slower than a 1-thread fit at load 8 (BENCHMARKS.md,
# "LightGBM threads on a busy machine"). Passive waiting removes that. libgomp reads the variable once,
# when it is loaded, which happens after this (LightGBM is imported lazily); a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Public names and the modules they live in. They are imported on first use (PEP 562), so that
# `import churnml` -- which every command, `churnml --help` included, does -- does not load ibis,
# DuckDB and pandas before they are needed.
_EXPORTS = {
    "DatasetConfig": "churnml.config", "Settings": "churnml.config", "get_settings": "churnml.config",
    "load_dataset_config": "churnml.config",
    "Dataset": "churnml.data", "connect": "churnml.data", "open_dataset": "churnml.data",
    "ChurnmlError": "churnml.exceptions", "ConfigError": "churnml.exceptions",
    "ContractError": "churnml.exceptions", "DataProblem": "churnml.exceptions",
    "DataWarning": "churnml.exceptions", "NotFittedError": "churnml.exceptions",
    "SchemaMismatchError": "churnml.exceptions",
    "build_features": "churnml.features", "build_snapshot": "churnml.features",
    "build_training_set": "churnml.features", "churn_labels": "churnml.features",
}

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


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'churnml' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
