"""Uplift models persist without pickles and load back to identical predictions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from churnml.exceptions import SchemaMismatchError
from churnml.models.churn import feature_specs, to_matrix
from churnml.models.uplift import default_candidates
from churnml.models.uplift_store import UpliftModel


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    n = 3000
    df = pd.DataFrame({"recency": rng.exponential(10, n), "likes": rng.poisson(2, n).astype(float),
                       "platform": rng.choice(["ios", "android", "web"], n)})
    df.loc[rng.random(n) < 0.05, "likes"] = np.nan
    t = rng.integers(0, 2, n)
    p = 0.2 + 0.15 * t * (df["recency"].to_numpy() < 8)
    y = (rng.random(n) < p).astype(int)
    specs = feature_specs(df, list(df.columns))
    return df, to_matrix(df, specs).reset_index(drop=True), y, t, specs


@pytest.mark.parametrize("name", sorted(default_candidates()))
def test_every_learner_round_trips_as_text_json_and_skops(name, data, tmp_path):
    df, X, y, t, specs = data
    learner = default_candidates(seed=0, n_jobs=1)[name].fit(X, y, t)
    model = UpliftModel(learner, specs)
    folder = model.save(tmp_path / "m")
    assert {p.suffix for p in folder.iterdir()} <= {".json", ".txt", ".skops"}
    loaded = UpliftModel.load(folder)
    pd.testing.assert_frame_equal(loaded.predict_frame(df), model.predict_frame(df))


def test_a_manifest_naming_a_foreign_class_is_refused(data, tmp_path):
    df, X, y, t, specs = data
    folder = UpliftModel(default_candidates()["t_logistic"].fit(X, y, t), specs).save(tmp_path / "m")
    manifest = json.loads((folder / "churnml_model.json").read_text())
    manifest["learner"]["class"] = "os.system"
    (folder / "churnml_model.json").write_text(json.dumps(manifest))
    with pytest.raises(SchemaMismatchError, match="unknown class 'os.system'"):
        UpliftModel.load(folder)
