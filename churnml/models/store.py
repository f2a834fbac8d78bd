"""Read any churnml model folder, whatever its kind, from the ``kind`` in its JSON manifest."""

from __future__ import annotations

import json
from pathlib import Path

from churnml.exceptions import ModelNotFoundError

__all__ = ["load_model_dir"]

MANIFEST_FILE = "churnml_model.json"


def load_model_dir(path: str | Path):
    """Load the churnml model in ``path`` (a folder written by the model's ``save``).

    Raises
    ------
    ModelNotFoundError
        If the folder holds no churnml model.
    """
    path = Path(path)
    if not (path / MANIFEST_FILE).is_file():
        found = list(path.rglob(MANIFEST_FILE))
        if not found:
            raise ModelNotFoundError(f"{path} holds no churnml model ({MANIFEST_FILE} not found)")
        path = found[0].parent
    kind = json.loads((path / MANIFEST_FILE).read_text())["kind"]
    if kind == "churn":
        from churnml.models.churn import ChurnModel

        return ChurnModel.load(path)
    if kind == "uplift":
        from churnml.models.uplift_store import UpliftModel

        return UpliftModel.load(path)
    raise ModelNotFoundError(f"{path} holds a model of unknown kind {kind!r}")
