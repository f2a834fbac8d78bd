"""Recall lists before any campaign: ranked by churn risk (x value) when there is no uplift model (issue 14, item 6)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from churnml.batch import LIST_FILE, MANIFEST_FILE, score_job
from churnml.cli import app
from churnml.config import ScoreConfig, get_settings
from churnml.exceptions import ConfigError, DataWarning, ModelNotFoundError, SchemaMismatchError
from churnml.scoring import holdout_draw, recall_list

AS_OF = "2024-04-30"


def _case():
    """Seven users scored by a churn model only, whose places on the list are worked out by hand."""
    scored = pd.DataFrame({
        "user_id": ["a", "b", "c", "d", "e", "f", "g"],
        "p_churn": [0.30, 0.80, 0.90, 0.60, 0.70, 0.20, 0.95],
    })
    features = pd.DataFrame({
        "user_id": scored["user_id"],
        # a, b, d, e, f lapsed 7-60 days; c active and at risk (p 0.9 >= 0.5); g lapsed 90 days (not eligible)
        "days_since_last_activity": [10.0, 20.0, 2.0, 8.0, 30.0, 14.0, 90.0],
        "days_since_last_contact": [np.nan, np.nan, np.nan, 3.0, np.nan, np.nan, np.nan],
        "sum_amount_all": [100.0, 10.0, 20.0, 500.0, np.nan, 50.0, 1000.0],
    })
    return scored, features


def test_without_uplift_the_list_is_ranked_by_churn_risk():
    scored, features = _case()
    cfg = ScoreConfig(dataset="x", holdout_share=0.0, budget={"max_contacts": None}, contact_cost=5.0)
    lst, counts = recall_list(scored, features, cfg, campaign_id="c1", opt_out={"f"})
    # eligible: a b c d e f (g lapsed too long); d contacted 3 days ago, f opted out;
    # by p_churn: c 0.9, b 0.8, e 0.7, a 0.3. The contact cost is not weighed against risk.
    assert list(lst["user_id"]) == ["c", "b", "e", "a"]
    np.testing.assert_allclose(lst["priority"], [0.9, 0.8, 0.7, 0.3])
    assert counts["ranked_by"] == "churn_risk"
    assert counts["eligible"] == 6 and counts["eligible_at_risk"] == 1
    assert counts["excluded"] == {"contacted_recently": 1, "opted_out": 1, "no_value_at_risk": 0}
    assert "uplift" not in lst and "segment" not in lst
    assert counts["expected_churners_contacted"] == pytest.approx(0.9 + 0.8 + 0.7 + 0.3)


def test_a_value_column_ranks_by_risk_times_value_and_leaves_out_users_with_nothing_at_stake():
    scored, features = _case()
    cfg = ScoreConfig(dataset="x", holdout_share=0.0, budget={"max_contacts": 3}, value_column="sum_amount_all")
    lst, counts = recall_list(scored, features, cfg, campaign_id="c1")
    # a 0.3*100=30, b 0.8*10=8, c 0.9*20=18, f 0.2*50=10; e has no spend (value 0): left out; d contacted
    assert list(lst["user_id"]) == ["a", "c", "f"]
    np.testing.assert_allclose(lst["priority"], [30.0, 18.0, 10.0])
    np.testing.assert_allclose(lst["value"], [100.0, 20.0, 50.0])
    assert counts["excluded"]["no_value_at_risk"] == 1


def test_the_holdout_of_a_risk_ranked_list_is_the_deterministic_draw():
    scored = pd.DataFrame({"user_id": [f"u{i}" for i in range(400)], "p_churn": np.linspace(0.99, 0.6, 400)})
    features = pd.DataFrame({"user_id": scored["user_id"], "days_since_last_activity": 10.0})
    cfg = ScoreConfig(dataset="x", holdout_share=0.2, budget={"max_contacts": None})
    lst, counts = recall_list(scored, features, cfg, campaign_id="recall-2024-04-30")
    again, _ = recall_list(scored.sample(frac=1, random_state=1), features.sample(frac=1, random_state=1),
                           cfg, campaign_id="recall-2024-04-30")
    pd.testing.assert_frame_equal(lst, again)
    expected = np.where(holdout_draw(lst["user_id"], "recall-2024-04-30") < 0.2, "holdout", "contact")
    np.testing.assert_array_equal(lst["group"], expected)
    assert 40 < counts["holdout"] < 120  # about 20% of 400
    other, _ = recall_list(scored, features, cfg, campaign_id="recall-2024-05-01")
    assert (other["group"] != lst["group"]).any()  # a new campaign draws a new holdout


def test_ranking_risk_ignores_an_uplift_model_and_ranking_uplift_requires_one():
    scored, features = _case()
    scored = scored.assign(uplift=[0.5, -0.1, 0.0, 0.0, 0.01, 0.2, 0.0], segment="persuadable")
    cfg = ScoreConfig(dataset="x", holdout_share=0.0, ranking="risk", budget={"max_contacts": 2})
    lst, counts = recall_list(scored, features, cfg, campaign_id="c1")
    assert list(lst["user_id"]) == ["c", "b"] and counts["ranked_by"] == "churn_risk"
    with pytest.raises(SchemaMismatchError, match="ranking: uplift needs an uplift model"):
        recall_list(scored.drop(columns=["uplift", "segment"]), features,
                    cfg.model_copy(update={"ranking": "uplift"}), campaign_id="c1")
    with pytest.raises(ValueError, match="ranking: uplift needs an uplift_model"):
        ScoreConfig(dataset="x", ranking="uplift", uplift_model=None)


def test_a_value_column_that_is_not_there_is_a_config_error():
    scored, features = _case()
    cfg = ScoreConfig(dataset="x", value_column="spend")
    with pytest.raises(ConfigError, match="value_column 'spend' is not a feature column.*sum_amount_all"):
        recall_list(scored, features, cfg, campaign_id="c1")


def test_with_no_uplift_model_registered_the_nightly_job_writes_a_risk_ranked_list(trained_store, tmp_path):
    s = trained_store["settings"]
    cfg = ScoreConfig(dataset=trained_store["config"], output=tmp_path / "lists", budget={"max_contacts": 200},
                      uplift_model="recall-uplift-never-trained")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        res = score_job(cfg, AS_OF, settings=s)
    said = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert any("ranked by churn risk" in m and "recall-uplift-never-trained" in m for m in said)
    manifest = json.loads((res.folder / MANIFEST_FILE).read_text())
    assert manifest["ranking"]["by"] == "churn_risk" and manifest["ranking"]["why"] == "auto_no_uplift_model"
    assert manifest["counts"]["ranked_by"] == "churn_risk"
    assert list(manifest["models"]) == ["churn-risk"]
    lst = pd.read_parquet(res.folder / LIST_FILE)
    assert len(lst) == 200 and lst["p_churn"].is_monotonic_decreasing
    np.testing.assert_array_equal(lst["group"], np.where(holdout_draw(lst["user_id"], res.campaign_id) < 0.1,
                                                         "holdout", "contact"))
    with pytest.raises(ModelNotFoundError, match="recall-uplift-never-trained"):
        score_job(cfg.model_copy(update={"ranking": "uplift"}), AS_OF, settings=s, force=True)


def test_cli_says_the_list_is_risk_ranked_and_warns(trained_store, tmp_path, monkeypatch):
    monkeypatch.setenv("CHURNML_MLRUNS_DIR", trained_store["settings"].mlruns_dir)
    get_settings.cache_clear()
    cfg = tmp_path / "batch.yaml"
    cfg.write_text(yaml.safe_dump({"dataset": str(trained_store["config"]), "output": str(tmp_path / "lists"),
                                   "uplift_model": "recall-uplift-never-trained", "budget": {"max_contacts": 50}}))
    res = CliRunner().invoke(app, ["score", "--config", str(cfg), "--as-of", AS_OF])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "warning:" in text and "ranked by churn risk x value_per_user 1" in text
    assert "50 users selected" in text and "expected churners among the contacts" in text
