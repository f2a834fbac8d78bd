"""Multi-channel recall end to end on the simulator: train by channel, choose a channel per user, serve it.

One session store (a 6,000-user multi-channel simulation, churn and uplift
champions, the nightly list of 2024-04-29) serves every test here. The channel
names reach the pipeline only through the data and the scoring config: a copy
of the data with other names (and another name for control) gives the same
model under those names.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import SERVE_AS_OF, SMALL_BOOSTER
from fastapi.testclient import TestClient

from churnml.batch import CAMPAIGN_ROWS_FILE, LIST_FILE, MANIFEST_FILE, score_job
from churnml.config import PolicyConfig, Settings, TrainConfig, TuningConfig, load_score_config
from churnml.models.uplift import MultiArmTLearner
from churnml.train import promote_job, train_churn_job
from churnml.train_uplift import train_uplift_job

TREES = {"n_estimators": 60, "learning_rate": 0.1, "num_leaves": 7, "min_child_samples": 100}
RENAMED = {"sms": "text", "email": "mail", "push": "notify", "control": "holdout"}


def _train(config, folder, truth=None, policy=None):
    """Churn and multi-channel uplift champions for a simulated dataset config, in a store under ``folder``."""
    from churnml.jobs import build_features_job

    weeks = [f"2024-{d}" for d in ("03-11", "03-18", "03-25", "04-01", "04-08", "04-15")]
    training_set = build_features_job(config, folder / "training_set.parquet", as_of=weeks, labels=True).table_path
    settings = Settings(mlruns_dir=str(folder / "mlruns"), threads=1)
    churn = TrainConfig(dataset=config, training_set=training_set, tuning=TuningConfig(trials=0), lightgbm=SMALL_BOOSTER)
    train_churn_job(churn, settings=settings)
    promote_job(churn, settings=settings)
    uplift = TrainConfig(kind="uplift", dataset=config, truth=truth, policy=policy or PolicyConfig())
    res = train_uplift_job(uplift, settings=settings, candidates={"t": MultiArmTLearner(base_params=TREES)})
    promote_job(uplift, settings=settings)
    return settings, res


@pytest.fixture(scope="session")
def channel_store(tmp_path_factory):
    from churnml.jobs import simulate_job
    from churnml.simulator import SimulationConfig

    folder = tmp_path_factory.mktemp("channels")
    sim, config = simulate_job(SimulationConfig(n_users=6000, days=120, seed=5), folder / "data")
    score_cfg = load_score_config(folder / "data" / "scoring.yaml").model_copy(update={"output": folder / "lists"})
    policy = PolicyConfig(value_per_user=score_cfg.value_per_user, channels=score_cfg.channels)
    settings, res = _train(config, folder, sim.truth_dir / "exposures.parquet", policy)
    job = score_job(score_cfg, SERVE_AS_OF, settings=settings)
    return {"config": config, "folder": folder, "settings": settings, "uplift": res, "list": job,
            "score_cfg": score_cfg, "day": folder / "lists" / SERVE_AS_OF}


def test_the_uplift_job_learns_one_uplift_per_channel_from_the_data(channel_store):
    res = channel_store["uplift"]
    assert res.channels == ["email", "push", "sms"]
    assert res.model.channels == ["email", "push", "sms"] and res.model.metadata["channels"] == res.channels
    t = res.targeting
    assert list(t.index) == res.channels and (t["qini_auc_low"] <= t["qini_auc_high"]).all()
    # The simulator's SMS and push effects depend on observable traits: the model ranks them.
    assert t.loc["sms", "spearman_to_true"] > 0.2 and t.loc["push", "spearman_to_true"] > 0.2
    p = res.policies
    assert {"learned assignment", "everyone by sms", "random channel", "true optimal assignment",
            "true uplifts learned from features"} <= set(p.index)
    assert p.loc["learned assignment", "value_true"] > p.loc["random channel", "value_true"] + 0.005
    assert p.loc["true optimal assignment", "value_true"] >= p["value_true"].max() - 1e-12
    # Every policy spends the same number of contacts at most (same budget).
    assert p["contacted"].max() <= round(0.3 * res.rows["test"])
    # Intervals of the off-policy estimates cover the true value for most policies.
    covered = ((p["value_ipw_low"] <= p["value_true"]) & (p["value_true"] <= p["value_ipw_high"])).mean()
    assert covered >= 0.6


def test_the_nightly_list_gives_each_user_one_channel_within_budget(channel_store):
    lst = pd.read_parquet(channel_store["day"] / LIST_FILE)
    cfg = channel_store["score_cfg"]
    assert len(lst) > 100 and lst["user_id"].is_unique
    assert set(lst["channel"]) <= {"control", *cfg.channels} and set(lst["model_channel"]) <= set(cfg.channels)
    sent = lst[lst["channel"] != "control"]
    assert (sent["cost"] == sent["channel"].map(cfg.channel_cost)).all()
    assert sent["cost"].sum() <= cfg.budget.max_cost + 1e-9 and len(lst) <= cfg.budget.max_contacts
    for name, ch in cfg.channels.items():
        if ch.max_contacts is not None:
            assert (lst["channel"] == name).sum() <= ch.max_contacts
    # The model's channel never has a negative expected uplift, and neither does an explored one.
    up = lambda row, c: row[f"uplift_{c}"]  # noqa: E731
    assert all(up(r, r["model_channel"]) > 0 for _, r in lst.iterrows())
    assert all(up(r, r["channel"]) >= 0 for _, r in sent.iterrows())
    manifest = json.loads((channel_store["day"] / MANIFEST_FILE).read_text())
    assert set(manifest["counts"]["channels"]) == set(cfg.channels)
    # The list comes back as campaign rows that the data contract accepts.
    rows = pd.read_parquet(channel_store["day"] / CAMPAIGN_ROWS_FILE)
    assert rows[["user_id", "channel"]].equals(lst[["user_id", "channel"]])
    assert (rows["treated"] == (rows["channel"] != "control")).all() and rows["randomised"].sum() > 0


def test_score_readout_shows_the_channels(channel_store, tmp_path, monkeypatch):
    from test_cli import invoke

    monkeypatch.setenv("CHURNML_MLRUNS_DIR", channel_store["settings"].mlruns_dir)
    cfg = channel_store["score_cfg"]
    path = tmp_path / "batch.yaml"
    path.write_text(yaml.safe_dump(cfg.model_copy(update={"output": tmp_path / "lists"}).model_dump(mode="json")))
    res = invoke("score", "-c", path, "--as-of", SERVE_AS_OF)
    assert res.exit_code == 0, res.output
    for text in ("channels on the list", "control (holdout)", "why this channel", *cfg.channels):
        assert text in res.output
    assert "Downloading artifacts" not in res.output  # MLflow's per-artifact bars cluttered the readout


def test_the_api_returns_each_channels_uplift_and_the_chosen_channel(channel_store, monkeypatch):
    from serving.app import ServeSettings, create_app

    for name in ("API_TOKEN", "UPLIFT_MODEL"):
        monkeypatch.delenv(f"CHURNML_SERVE_{name}", raising=False)
    settings = ServeSettings(lists_dir=channel_store["folder"] / "lists", runtime=channel_store["settings"],
                             warm_reasons=False, reasons=0)
    lst = pd.read_parquet(channel_store["day"] / LIST_FILE)
    contacted = lst[lst["group"] == "contact"].head(5)
    with TestClient(create_app(settings)) as client:
        body = client.post("/score", json={"user_ids": contacted["user_id"].tolist()}).json()
        for item, (_, row) in zip(body["scores"], contacted.iterrows(), strict=True):
            assert set(item["uplift_by_channel"]) == {"email", "push", "sms"}
            assert item["uplift_by_channel"]["sms"] == pytest.approx(row["uplift_sms"])
            # Without a budget the API's choice is the list's unless the list's budget moved the user.
            best = max(item["uplift_by_channel"], key=lambda c: item["uplift_by_channel"][c]
                       - channel_store["score_cfg"].channel_cost(c))
            assert item["channel"] == best
        # Feature rows sent in the request get the same answer.
        features = pd.read_parquet(channel_store["day"] / "features.parquet")
        row = features[features["user_id"] == contacted["user_id"].iloc[0]]
        rows = json.loads(row.to_json(orient="records"))
        again = client.post("/score", json={"rows": rows}).json()["scores"][0]
        assert again["channel"] == body["scores"][0]["channel"]
        assert again["uplift_by_channel"] == pytest.approx(body["scores"][0]["uplift_by_channel"])


def test_channel_names_and_the_control_label_come_from_data_and_config(channel_store, tmp_path):
    """The same campaigns with other channel names and 'holdout' for control: the same model, renamed."""
    data = channel_store["config"].parent
    doc = yaml.safe_load(channel_store["config"].read_text())
    for name in ("events", "users"):
        doc["sources"][name]["path"] = str((data / doc["sources"][name]["path"]).resolve())
    camp = pd.read_parquet(data / "campaigns.parquet").drop(columns=["treated"])
    camp["channel"] = camp["channel"].map(RENAMED)
    camp.to_parquet(tmp_path / "campaigns.parquet", index=False)
    doc["sources"]["campaigns"]["path"] = str(tmp_path / "campaigns.parquet")
    doc["control_channel"] = "holdout"
    (tmp_path / "dataset.yaml").write_text(yaml.safe_dump(doc))
    settings = Settings(mlruns_dir=str(tmp_path / "mlruns"), threads=1)
    uplift = TrainConfig(kind="uplift", dataset=tmp_path / "dataset.yaml",
                         policy=PolicyConfig(channels={"text": {"cost": 0.05}}))
    res = train_uplift_job(uplift, settings=settings, candidates={"t": MultiArmTLearner(base_params=TREES)},
                           register=False)
    assert res.channels == ["mail", "notify", "text"]
    original = channel_store["uplift"]
    np.testing.assert_allclose(res.targeting["qini_auc"].to_numpy(),
                               original.targeting.loc[["email", "push", "sms"], "qini_auc"].to_numpy())
    assert res.policies.loc["everyone by text", "cost"] == pytest.approx(
        0.05 * res.policies.loc["everyone by text", "n_text"])


def test_the_drivers_report_says_who_responds_to_which_channel(channel_store, tmp_path):
    """SMS works by region and push by acquisition channel and platform in the simulator: the report finds it."""
    from churnml.drivers import drivers_job

    res = drivers_job(channel_store["config"], tmp_path / "d.html", settings=channel_store["settings"])
    assert set(res.channel_drivers) == {"email", "push", "sms"}
    sms = list(res.channel_drivers["sms"]["feature"])
    assert "region" in sms[:3], sms
    push = list(res.channel_drivers["push"]["feature"])
    assert {"acquisition_channel", "platform"} & set(push[:4]), push
    html = (tmp_path / "d.html").read_text()
    assert "Which channel for whom" in html and html.count("SHAP beeswarm of the uplift of") == 3
    assert any(h.startswith("Channel sms:") and "region" in h for h in res.headlines), res.headlines
