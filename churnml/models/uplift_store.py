"""The recall-uplift model as registered: a fitted learner, its input schema and metadata, stored without pickles.

:class:`UpliftModel` wraps any learner of :mod:`churnml.models.uplift` with
the feature schema it was fit on (the same :class:`FeatureSpec` checks as the
churn model) and the segment thresholds. :meth:`UpliftModel.save` writes

* every LightGBM model inside the learner as LightGBM's own text format,
* every scikit-learn part (scalers, one-hot encoders, logistic regressions) with
  ``skops``, whose loader only builds scikit-learn and numpy types it trusts,
* everything else (learner class and parameters, propensity, categories) as JSON.

:meth:`UpliftModel.load` rebuilds the learner from a fixed list of churnml
classes; nothing in the folder can make it run other code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline

from churnml.exceptions import SchemaMismatchError
from churnml.models import uplift as learners
from churnml.models.churn import FeatureSpec, lightgbm_input, to_matrix
from churnml.models.store import read_manifest, write_manifest

__all__ = ["UpliftModel", "uplift_column"]


def uplift_column(channel: str) -> str:
    """The column of a multi-channel model's predictions holding ``channel``'s uplift."""
    return f"uplift_{channel}"

FORMAT_VERSION = 1
#: The churnml classes a stored model may contain; rebuilt from their parameters and fitted attributes.
OBJECTS = {c.__name__: c for c in (learners.SLearner, learners.TLearner, learners.XLearner,
                                    learners.DRLearner, learners.ClassTransformation,
                                    learners.InteractionLogistic, learners._LinearFeatures,
                                    learners.MultiArmTLearner, learners.MultiArmSLearner,
                                    learners.PerArmUplift)}


_TRUSTED_PACKAGES = ("sklearn", "numpy", "scipy")


class _BoosterModel:
    """A LightGBM model read back from text, answering ``predict_proba``/``predict`` like the sklearn wrapper."""

    def __init__(self, booster: lgb.Booster, classes=None):
        self.booster_ = booster
        self.classes_ = None if classes is None else np.asarray(classes)

    def _predict(self, X) -> np.ndarray:
        if isinstance(X, pd.DataFrame):
            X = lightgbm_input(self.booster_, X)
        return self.booster_.predict(X)

    def predict_proba(self, X) -> np.ndarray:
        p = self._predict(X)
        return np.column_stack([1 - p, p])

    def predict(self, X) -> np.ndarray:
        if self.classes_ is not None:
            return self.classes_[(self._predict(X) >= 0.5).astype(int)]
        return self._predict(X)


def _dump(value, folder: Path, key: str):
    """Describe ``value`` as JSON, writing models to files under ``folder``."""
    if isinstance(value, lgb.LGBMModel | _BoosterModel):
        booster = value.booster_
        file = f"{key}.txt"
        booster.save_model(str(folder / file))
        classes = getattr(value, "classes_", None) if isinstance(value, lgb.LGBMClassifier | _BoosterModel) else None
        return {"type": "lightgbm", "file": file,
                "classes": None if classes is None else np.asarray(classes).tolist()}
    if isinstance(value, BaseEstimator) and type(value).__name__ in OBJECTS:
        fitted = {k: v for k, v in vars(value).items() if k.endswith("_") and not k.startswith("_")}
        return {"type": "object", "class": type(value).__name__,
                "params": _dump(value.get_params(deep=False), folder, f"{key}_param"),
                "fitted": {k: _dump(v, folder, f"{key}_{k.rstrip('_')}") for k, v in fitted.items()}}
    if isinstance(value, Pipeline):
        return {"type": "pipeline",
                "steps": [[name, _dump(step, folder, f"{key}_{name}")] for name, step in value.steps]}
    if isinstance(value, BaseEstimator):
        import skops.io as sio

        file = f"{key}.skops"
        sio.dump(value, folder / file)
        return {"type": "skops", "file": file}
    if isinstance(value, list | tuple):
        return {"type": "list", "items": [_dump(v, folder, f"{key}_{i}") for i, v in enumerate(value)]}
    if isinstance(value, dict):
        return {"type": "dict", "items": {str(k): _dump(v, folder, f"{key}_{k}") for k, v in value.items()}}
    if isinstance(value, pd.Index):
        return {"type": "index", "values": value.tolist()}
    if isinstance(value, np.ndarray):
        return {"type": "array", "values": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return {"type": "value", "value": value.item()}
    if value is None or isinstance(value, bool | int | float | str):
        return {"type": "value", "value": value}
    raise TypeError(f"cannot store a {type(value).__name__} in an uplift model folder")


def _load(desc: dict, folder: Path):
    kind = desc["type"]
    if kind == "lightgbm":
        return _BoosterModel(lgb.Booster(model_file=str(folder / desc["file"])), desc.get("classes"))
    if kind == "skops":
        import skops.io as sio

        file = folder / desc["file"]
        # Only scikit-learn, numpy and scipy types may be built; anything else in the file is refused.
        types = sio.get_untrusted_types(file=file)
        foreign = [t for t in types if t.split(".")[0] not in _TRUSTED_PACKAGES]
        if foreign:
            raise SchemaMismatchError(f"{file} holds types churnml does not load: {', '.join(foreign)}")
        return sio.load(file, trusted=types)
    if kind == "object":
        if desc["class"] not in OBJECTS:
            raise SchemaMismatchError(f"{folder}: a stored model names an unknown class {desc['class']!r}")
        obj = OBJECTS[desc["class"]](**_load(desc["params"], folder))
        for k, d in desc["fitted"].items():
            setattr(obj, k, _load(d, folder))
        return obj
    if kind == "pipeline":
        return Pipeline([(name, _load(d, folder)) for name, d in desc["steps"]])
    if kind == "list":
        return [_load(d, folder) for d in desc["items"]]
    if kind == "dict":
        return {k: _load(d, folder) for k, d in desc["items"].items()}
    if kind == "index":
        return pd.Index(desc["values"])
    if kind == "array":
        return np.asarray(desc["values"], dtype=desc["dtype"])
    if kind == "value":
        return desc["value"]
    raise SchemaMismatchError(f"unknown stored value type {kind!r}")


@dataclass
class UpliftModel:
    """A fitted uplift learner with its input schema; predicts uplift, both outcome probabilities and segments.

    Parameters
    ----------
    learner : estimator
        A fitted learner from :mod:`churnml.models.uplift` (fit on the matrix
        from :func:`~churnml.models.churn.to_matrix`).
    features : list of FeatureSpec
    segment_threshold : float
        Uplift (probability units) beyond which a user counts as affected.
    response_threshold : float
        ``p_return_if_not`` at and above which a user returns anyway.
    metadata : dict
    """

    learner: object
    features: list[FeatureSpec]
    segment_threshold: float = 0.01
    response_threshold: float = 0.5
    metadata: dict = field(default_factory=dict)

    kind = "uplift"

    @property
    def feature_names(self) -> list[str]:
        return [s.name for s in self.features]

    @property
    def channels(self) -> list[str] | None:
        """The channels of a multi-channel model (one uplift each), in order; None for one channel."""
        return getattr(self.learner, "channels_", None)

    def matrix(self, df: pd.DataFrame, *, where: str = "scoring data") -> pd.DataFrame:
        return to_matrix(df, self.features, where=where).reset_index(drop=True)

    def predict_frame(self, df: pd.DataFrame, *, where: str = "scoring data") -> pd.DataFrame:
        """``uplift``, ``p_control``, ``p_treated`` and ``segment`` per row of a feature frame."""
        return self.predict_matrix(self.matrix(df, where=where)).set_axis(df.index)

    def predict_matrix(self, X: pd.DataFrame) -> pd.DataFrame:
        """:meth:`predict_frame` of an input matrix already built by :func:`to_matrix` with these features.

        A multi-channel model adds ``uplift_<channel>`` for each channel and
        ``best_channel`` (the largest uplift); ``uplift``, ``p_treated`` and
        ``segment`` are then those of the best channel.
        """
        p0, p1 = self.learner.predict_outcomes(X.reset_index(drop=True))
        extra = {}
        if self.channels is not None:
            per = p1 - p0[:, None]
            best = per.argmax(axis=1)
            extra = {uplift_column(c): per[:, k] for k, c in enumerate(self.channels)}
            extra["best_channel"] = np.asarray(self.channels, dtype=object)[best]
            p1 = p1[np.arange(len(p1)), best]
        seg = learners.segments(p0, p1, threshold=self.segment_threshold,
                                response_threshold=self.response_threshold)
        return pd.DataFrame({"uplift": p1 - p0, "p_control": p0, "p_treated": p1, "segment": seg, **extra},
                            index=X.index)

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        return self.predict_frame(df)["uplift"].to_numpy()

    def save(self, path: str | Path) -> Path:
        """Write the model into folder ``path`` (LightGBM text, skops, JSON)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format": FORMAT_VERSION, "kind": self.kind, "learner": _dump(self.learner, path, "learner"),
            "features": [s.to_dict() for s in self.features],
            "segment_threshold": self.segment_threshold, "response_threshold": self.response_threshold,
            "metadata": self.metadata,
        }
        return write_manifest(path, manifest)

    @classmethod
    def load(cls, path: str | Path) -> UpliftModel:
        """Read a model written by :meth:`save`."""
        path = Path(path)
        m = read_manifest(path, cls.kind)
        learner = _load(m["learner"], path)
        return cls(learner, [FeatureSpec.from_dict(d) for d in m["features"]], m["segment_threshold"],
                   m["response_threshold"], m.get("metadata", {}))
