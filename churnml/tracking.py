"""MLflow: runs, the model registry and model loading. The only module that imports ``mlflow``.

Models are logged as MLflow ``pyfunc`` models whose loader is this module
(``loader_module="churnml.tracking"``) and whose data is a churnml model
folder: LightGBM boosters as text and JSON manifests. Loading a registered
model therefore imports code from the installed churnml package, never from
the artifact store, and unpickles nothing.

The default store is local: ``sqlite:///mlruns/mlflow.db`` with artifacts in
``mlruns/artifacts``. ``CHURNML_MLFLOW_TRACKING_URI`` or the standard
``MLFLOW_TRACKING_URI`` point it elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from churnml.config import Settings, get_settings
from churnml.exceptions import ModelNotFoundError

__all__ = [
    "ModelRef",
    "configure",
    "download_model",
    "git_revision",
    "load_model",
    "load_version",
    "log_artifact",
    "log_dataset",
    "log_dict",
    "log_figure",
    "log_metrics",
    "log_model",
    "log_params",
    "log_report",
    "resolve",
    "set_alias",
    "set_tags",
    "start_run",
]

DATA_DIR = "churnml_model"


def configure(settings: Settings | None = None) -> str:
    """Point MLflow at the configured store and return its URI."""
    import logging

    import mlflow

    # Database migrations on a new store and the check of a model's input example are MLflow's
    # business, not the user's.
    for name in ("mlflow.store.db.utils", "alembic", "mlflow.pyfunc", "mlflow.models"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # A database error is raised to the caller as well, which reports it once (one line for a
    # read-only store); MLflow's own copy would add a traceback to the log.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    # Loading a model printed one "Downloading artifacts" bar per artifact folder (eight lines and more
    # in `score` and `run`); the jobs show their own progress. A user's setting wins.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    s = settings or get_settings()
    uri = s.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        root = Path(s.mlruns_dir).absolute()
        root.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{root / 'mlflow.db'}"
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # MLflow exports the URI to the environment; put the environment back, so that the variable only
    # ever holds the user's choice and a later call with other settings is not sent to this store.
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
    return uri


def _experiment_id(name: str, settings: Settings | None = None) -> str:
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    s = settings or get_settings()
    location = None
    if not (s.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")):
        location = (Path(s.mlruns_dir).absolute() / "artifacts").as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


@contextlib.contextmanager
def start_run(experiment: str, *, run_name: str | None = None, tags: dict | None = None,
              settings: Settings | None = None) -> Iterator[str]:
    """Open a run in ``experiment`` (created if needed); yields the run id. Failed runs are marked FAILED."""
    import mlflow

    configure(settings)
    eid = _experiment_id(experiment, settings)
    with mlflow.start_run(experiment_id=eid, run_name=run_name, tags=tags) as run:
        yield run.info.run_id


def git_revision(path: str | Path = ".") -> str:
    """The git commit of the code that runs (``unknown`` outside a repository)."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5, check=False).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def log_params(params: dict) -> None:
    """Log parameters (values turned into short strings; MLflow caps them at 6,000 characters)."""
    import mlflow

    mlflow.log_params({k: (json.dumps(v, default=str) if isinstance(v, (dict, list)) else v)
                       for k, v in params.items()})


def log_metrics(metrics: dict, step: int | None = None) -> None:
    """Log numeric metrics; NaN and missing values are skipped."""
    import mlflow

    clean = {k: float(v) for k, v in metrics.items() if v is not None and not math.isnan(v)}
    if clean:
        mlflow.log_metrics(clean, step=step)


def set_tags(tags: dict) -> None:
    import mlflow

    mlflow.set_tags({k: str(v) for k, v in tags.items()})


def log_dict(obj, artifact_file: str) -> None:
    import mlflow

    mlflow.log_dict(obj, artifact_file)


def log_figure(fig, artifact_file: str) -> None:
    import mlflow

    mlflow.log_figure(fig, artifact_file)


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    import mlflow

    mlflow.log_artifact(str(path), artifact_path)


def log_dataset(df: pd.DataFrame, *, name: str, source: str, context: str, targets: str | None = None) -> str:
    """Log a dataset's fingerprint (MLflow's digest of its content and schema); returns the digest."""
    import warnings

    import mlflow

    with warnings.catch_warnings():
        # MLflow warns that a plain path is not a known dataset source type; the path is still recorded.
        warnings.simplefilter("ignore")
        ds = mlflow.data.from_pandas(df, source=source, name=name, targets=targets)
        mlflow.log_input(ds, context=context)
    return ds.digest


@dataclass(frozen=True)
class ModelRef:
    """A registered model version."""

    name: str
    version: str
    run_id: str | None
    aliases: tuple[str, ...] = ()

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def log_model(model, *, registered_name: str, input_example: pd.DataFrame,
              alias: str | None = "challenger") -> ModelRef:
    """Log a churnml model in the active run, register it and give the new version ``alias``.

    ``model`` is any churnml model with ``save(folder)`` and
    ``predict_frame(frame)`` / ``predict_proba(frame)``; the signature is
    inferred from ``input_example`` and its predictions.
    """
    import mlflow
    from mlflow.models import infer_signature

    with tempfile.TemporaryDirectory() as tmp:
        folder = model.save(Path(tmp) / DATA_DIR)
        prediction = _predict(model, input_example)
        info = mlflow.pyfunc.log_model(
            name="model", loader_module="churnml.tracking", data_path=str(folder),
            signature=infer_signature(input_example, prediction), input_example=input_example,
            registered_model_name=registered_name, pip_requirements=[f"churnml=={_version()}"],
        )
    version = str(info.registered_model_version)
    if alias:
        set_alias(registered_name, alias, version)
    return ModelRef(registered_name, version, mlflow.active_run().info.run_id, (alias,) if alias else ())


def _version() -> str:
    from importlib.metadata import version

    try:
        return version("churnml")
    except LookupError:  # pragma: no cover - running from a source tree
        return "0"


def log_report(path: str | Path, ref: ModelRef, artifact_path: str = "reports") -> None:
    """Attach a report file to the MLflow run that produced a registered model version."""
    import mlflow

    if ref.run_id:
        mlflow.MlflowClient().log_artifact(ref.run_id, str(path), artifact_path)


def set_alias(name: str, alias: str, version: str) -> None:
    """Point ``alias`` of registered model ``name`` at ``version``."""
    import mlflow

    mlflow.MlflowClient().set_registered_model_alias(name, alias, str(version))


def set_version_tags(name: str, version: str, tags: dict) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    for k, v in tags.items():
        client.set_model_version_tag(name, str(version), k, str(v))


def resolve(name: str, alias: str, settings: Settings | None = None) -> ModelRef:
    """The version behind ``name@alias``.

    Raises
    ------
    ModelNotFoundError
        If the model or the alias does not exist.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    s = settings or get_settings()
    if not (s.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")):
        db = Path(s.mlruns_dir).absolute() / "mlflow.db"
        if not db.exists():  # looking a model up must not create an empty store where there was none
            raise ModelNotFoundError(
                f"no model '{name}' with alias '{alias}': there is no MLflow store at {db}; train one "
                "first (churnml train ...) or set CHURNML_MLRUNS_DIR / MLFLOW_TRACKING_URI to the store")
    uri = configure(s)
    try:
        mv = mlflow.MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        raise ModelNotFoundError(
            f"no model '{name}' with alias '{alias}' in the MLflow store {uri}; train one first "
            f"(churnml train ...) or promote a version (churnml promote --config <its training config>)") from None
    return ModelRef(name, str(mv.version), mv.run_id, tuple(mv.aliases))


def download_model(ref: ModelRef, dst: str | Path) -> Path:
    """Copy the churnml model files of a registered version into the folder ``dst``; returns their folder.

    Always into a folder of the caller's: without a destination MLflow hands back the store's own
    artifact folder and writes ``registered_model_meta`` into it, which fails on a read-only store
    (a common production mount) and changes the store as a side effect of reading it.
    """
    import mlflow

    root = Path(mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=str(dst)))
    found = list(root.rglob("churnml_model.json"))
    if not found:
        raise ModelNotFoundError(f"{ref.uri} is not a churnml model (no churnml_model.json in its artifacts)")
    return found[0].parent


def load_model(name: str, alias: str = "champion", settings: Settings | None = None):
    """Load ``name@alias`` as a churnml model object; returns ``(model, ModelRef)``.

    The store is only read (see :func:`load_version`).
    """
    ref = resolve(name, alias, settings)
    return load_version(ref), ref


def load_version(ref: ModelRef):
    """Load a registered version as a churnml model object, reading the store only.

    The files are copied to a temporary folder, read into memory and removed.
    """
    from churnml.models.store import load_model_dir

    with tempfile.TemporaryDirectory(prefix="churnml-model-") as tmp:
        return load_model_dir(download_model(ref, tmp))


def _predict(model, frame: pd.DataFrame):
    if hasattr(model, "predict_frame"):
        return model.predict_frame(frame)
    return pd.Series(model.predict_proba(frame), index=frame.index, name="p_churn")


class _PyFuncModel:
    """What ``mlflow.pyfunc.load_model`` returns for a churnml model (and what ``spark_udf`` calls)."""

    def __init__(self, model):
        self.model = model

    def predict(self, model_input: pd.DataFrame, params: dict | None = None):
        return _predict(self.model, model_input)


def _load_pyfunc(data_path: str) -> _PyFuncModel:
    """MLflow's hook for ``loader_module``: read the model folder (JSON + LightGBM text)."""
    from churnml.models.store import load_model_dir

    return _PyFuncModel(load_model_dir(data_path))


def spark_udf(spark, ref: ModelRef, result_type: str = "double"):
    """A Spark UDF over a registered model version (MLflow's ``spark_udf``)."""
    import mlflow

    return mlflow.pyfunc.spark_udf(spark, ref.uri, result_type=result_type, env_manager="local")
