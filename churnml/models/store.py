"""Read any churnml model folder, whatever its kind, from the ``kind`` in its JSON manifest."""

from __future__ import annotations

import json
from pathlib import Path

from churnml.exceptions import ModelNotFoundError

__all__ = ["load_model_dir", "read_manifest", "write_manifest"]

MANIFEST_FILE = "churnml_model.json"


def write_manifest(path: Path, manifest: dict) -> Path:
    """Write a model folder's JSON manifest (the last file of a save)."""
    (Path(path) / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str))
    return Path(path)


def read_manifest(path: Path, kind: str) -> dict:
    """A model folder's manifest, checked to hold a model of ``kind``.

    Raises
    ------
    SchemaMismatchError
        If the folder holds another kind of model.
    """
    from churnml.exceptions import SchemaMismatchError

    m = json.loads((Path(path) / MANIFEST_FILE).read_text())
    if m.get("kind") != kind:
        raise SchemaMismatchError(f"{path} holds a {m.get('kind')!r} model, not a {kind} model")
    return m


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
