"""The recall-uplift job on simulated campaigns: learns the true effect, refuses unusable campaigns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from churnml.config import TrainConfig
from churnml.exceptions import TrainingDataError
from churnml.jobs import simulate_job
from churnml.models.uplift import TLearner, default_candidates
from churnml.simulator import SimulationConfig
from churnml.train_uplift import CEILING, train_uplift_job

from conftest import SINGLE_CHANNEL

SMALL = {"n_estimators": 60, "num_leaves": 7, "min_child_samples": 100}


def _learner():
    return {"t_lightgbm": TLearner(base_params=SMALL)}


@pytest.fixture(scope="module")
def campaign_sim(tmp_path_factory):
    """Enough campaign exposures (about 9,000) for uplift to be learnable; 3,000 users give too few."""
    folder = tmp_path_factory.mktemp("campaign_sim")
    result, cfg_path = simulate_job(SimulationConfig(n_users=12_000, days=120, seed=9, **SINGLE_CHANNEL), folder)
    return {"config": cfg_path, "truth": result.truth_dir}


def _s_learner():
    return {"s_lightgbm": default_candidates(seed=0, n_jobs=2)["s_lightgbm"]}


def test_predicted_uplift_follows_the_simulators_true_uplift(campaign_sim, settings):
    cfg = TrainConfig(kind="uplift", dataset=campaign_sim["config"], truth=campaign_sim["truth"] / "exposures.parquet")
    res = train_uplift_job(cfg, settings=settings, candidates=_s_learner(), register=False)
    assert res.test_campaigns == ["recall-2024-04-08"]
    assert res.train_campaigns == ["recall-2024-02-26", "recall-2024-03-18"]
    assert res.metrics["spearman_to_true"] > 0.45
    t = res.targeting
    assert t.loc["model", "returns_per_1000_expected"] > 2 * t.loc["random", "returns_per_1000_expected"]
    assert res.version is None
    # The ceiling, a regressor taught the true uplift, ranks better than random but well short of the
    # truth: the simulated effect depends on per-user traits and states no feature shows.
    ceiling = t.loc[CEILING, "returns_per_1000_expected"]
    assert 2 * t.loc["random", "returns_per_1000_expected"] < ceiling
    assert res.metrics["ceiling_returns_ratio_to_true"] < 0.9


def test_shuffled_treatment_learns_nothing_about_the_truth(campaign_sim, settings, tmp_path, seed):
    camp = pd.read_parquet(campaign_sim["config"].parent / "campaigns.parquet")
    rng = np.random.default_rng(seed)
    camp["treated"] = camp.groupby("campaign_id")["treated"].transform(lambda s: rng.permutation(s.to_numpy()))
    cfg_path = _variant(campaign_sim, tmp_path, camp)
    cfg = TrainConfig(kind="uplift", dataset=cfg_path, truth=campaign_sim["truth"] / "exposures.parquet")
    res = train_uplift_job(cfg, settings=settings, candidates=_s_learner(), register=False)
    assert abs(res.metrics["spearman_to_true"]) < 0.25


def _variant(small_sim, tmp_path, campaigns: pd.DataFrame):
    """The small simulation with another campaigns table."""
    doc = yaml.safe_load(small_sim["config"].read_text())
    for name in ("events", "users"):
        doc["sources"][name]["path"] = str((small_sim["config"].parent / doc["sources"][name]["path"]).resolve())
    if "channel" in campaigns:  # the arm follows the edited treated flags (treated and control contradict otherwise)
        campaigns = campaigns.assign(channel=np.where(campaigns["treated"], "push", "control"))
    campaigns.to_parquet(tmp_path / "campaigns.parquet", index=False)
    doc["sources"]["campaigns"]["path"] = str(tmp_path / "campaigns.parquet")
    path = tmp_path / "dataset.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_campaign_without_control_group_is_named_with_counts(small_sim, settings, tmp_path):
    camp = pd.read_parquet(small_sim["config"].parent / "campaigns.parquet")
    camp.loc[camp["campaign_id"] == "recall-2024-03-18", "treated"] = True
    cfg = TrainConfig(kind="uplift", dataset=_variant(small_sim, tmp_path, camp))
    with pytest.raises(TrainingDataError, match=r"campaign 'recall-2024-03-18' has [\d,]+ treated and 0 control"):
        train_uplift_job(cfg, settings=settings, candidates=_learner())


def test_a_single_campaign_cannot_be_split(small_sim, settings, tmp_path):
    camp = pd.read_parquet(small_sim["config"].parent / "campaigns.parquet")
    cfg = TrainConfig(kind="uplift", dataset=_variant(small_sim, tmp_path, camp[camp.campaign_id == "recall-2024-03-18"]))
    with pytest.raises(TrainingDataError, match="1 campaign.*recall-2024-03-18.*earlier campaigns and a later one"):
        train_uplift_job(cfg, settings=settings, candidates=_learner())


def test_an_outcome_that_never_varies_names_the_campaigns_and_counts():
    from churnml.features import RESPONSE
    from churnml.train_uplift import _check_campaigns

    df = pd.DataFrame({
        "campaign_id": ["a"] * 4 + ["b"] * 6,
        "treated": [1, 0, 1, 0, 1, 0, 1, 0, 1, 0],
        RESPONSE: [0] * 10,
    })
    with pytest.raises(TrainingDataError, match=r"always 0 over all 10 exposures of campaigns 'a' \(4\), 'b' \(6\)"):
        _check_campaigns(df, min_group=2)
    df.loc[0, RESPONSE] = 1
    _check_campaigns(df, min_group=2)  # one response is enough to learn from
    with pytest.raises(TrainingDataError, match=r"campaign 'a' has 2 treated and 2 control exposures \(at least 3"):
        _check_campaigns(df, min_group=3)
