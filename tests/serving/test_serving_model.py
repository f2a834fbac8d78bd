"""GET /health, GET /model, loading from the registry, and what is served when something is missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest


def test_health_reports_what_is_loaded(client):
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "models_loaded": True, "uplift_loaded": True, "snapshot_loaded": True}


def test_model_describes_versions_aliases_features_and_snapshot(client, scorer, features, store):
    body = client.get("/model").json()
    assert body["models"] == [
        {"name": "churn-risk", "kind": "churn", "version": "1", "alias": "champion",
         "features": len(scorer.churn.features)},
        {"name": "recall-uplift", "kind": "uplift", "version": "1", "alias": "champion",
         "features": len(scorer.uplift.features)},
    ]
    assert body["uplift"] == "served" and body["problems"] == []
    snap = body["snapshot"]
    listed = pd.read_parquet(store["day"] / "recall_list.parquet")
    assert snap == {"date": "2024-04-29", "as_of": "2024-04-29T00:00:00+00:00", "folder": str(store["day"]),
                    "users": len(features), "scores": "nightly", "reasons_cached": len(listed)}


def test_reasons_are_computed_once_per_user_not_on_the_list(client, store, features):
    listed = set(pd.read_parquet(store["day"] / "recall_list.parquet")["user_id"])
    others = [u for u in features["user_id"].tolist() if u not in listed][:4]
    before = client.get("/model").json()["snapshot"]["reasons_cached"]
    client.post("/score", json={"user_ids": others[:3]})
    client.post("/score", json={"user_ids": others})
    assert client.get("/model").json()["snapshot"]["reasons_cached"] == before + 4


def test_startup_loads_the_registry_champions(make_client, nightly, still_serving):
    client = make_client(registry=True)
    assert client.get("/model").json()["models"][0]["version"] == "1"
    uid = int(nightly["user_id"].iloc[9])
    item = client.post("/score", json={"user_ids": [uid]}).json()["scores"][0]
    assert item["p_churn"] == pytest.approx(nightly.loc[uid, "p_churn"], rel=1e-12)


def test_without_an_uplift_champion_churn_risk_is_served(make_client, nightly):
    client = make_client(registry=True, uplift_model="no-such-uplift-model")
    assert client.get("/health").json() == {"status": "degraded", "models_loaded": True,
                                            "uplift_loaded": False, "snapshot_loaded": True}
    body = client.get("/model").json()
    assert [m["name"] for m in body["models"]] == ["churn-risk"]
    assert body["uplift"].startswith("churn risk only: no model 'no-such-uplift-model'")
    # The list was scored with both models: the churn-only service scores the snapshot per request.
    assert body["snapshot"]["scores"] == "live"
    uid = int(nightly["user_id"].iloc[2])
    r = client.post("/score", json={"user_ids": [uid]}).json()
    assert r["models"] == {"churn-risk": "1"}
    item = r["scores"][0]
    assert item["p_churn"] == pytest.approx(nightly.loc[uid, "p_churn"], rel=1e-12)
    assert item["uplift"] is None and item["segment"] is None and item["p_return_if_not"] is None


def test_without_a_churn_champion_the_service_is_unavailable(make_client):
    client = make_client(registry=True, churn_model="no-such-churn-model")
    assert client.get("/health").json()["status"] == "unavailable"
    r = client.post("/score", json={"user_ids": [1]})
    assert r.status_code == 503
    assert "no model 'no-such-churn-model' with alias 'champion'" in r.json()["detail"]


def test_without_a_snapshot_rows_are_still_scored(make_client, tmp_path, features, json_rows):
    client = make_client(lists_dir=tmp_path / "empty")
    assert client.get("/health").json()["snapshot_loaded"] is False
    r = client.post("/score", json={"user_ids": [1]})
    assert r.status_code == 503 and "no nightly list with features.parquet" in r.json()["detail"]
    assert client.post("/score", json={"rows": json_rows(features.iloc[:2])}).status_code == 200


def test_the_newest_dated_list_is_served(make_client, store, tmp_path):
    lists = tmp_path / "lists"
    for name in ("2024-04-29", "2024-05-01", "latest", ".2024-05-02.tmp"):
        shutil.copytree(store["day"], lists / name)
    (lists / "2024-05-03").mkdir()  # no features yet: not a list
    client = make_client(lists_dir=lists)
    assert client.get("/model").json()["snapshot"]["date"] == "2024-05-01"


def test_nightly_scores_that_disagree_with_the_models_are_not_served(make_client, store, tmp_path, nightly):
    # Same versions in the manifest, other numbers (e.g. a registry rebuilt from scratch): score live.
    day = tmp_path / "lists" / "2024-04-29"
    shutil.copytree(store["day"], day)
    scores = pd.read_parquet(day / "scores.parquet")
    scores["p_churn"] = 1 - scores["p_churn"]
    scores.to_parquet(day / "scores.parquet")
    client = make_client(lists_dir=tmp_path / "lists")
    assert client.get("/model").json()["snapshot"]["scores"] == "live"
    uid = int(nightly["user_id"].iloc[0])
    item = client.post("/score", json={"user_ids": [uid]}).json()["scores"][0]
    assert item["p_churn"] == pytest.approx(nightly.loc[uid, "p_churn"], rel=1e-12)


def test_startup_says_what_it_loads(make_client, caplog):
    # Start-up took 44 s without a line (#15): each step now logs what it loads and how long it took.
    import logging

    with caplog.at_level(logging.INFO, logger="churnml.serving"):
        make_client(registry=True)
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "churnml.serving")
    assert "starting: lists in" in text
    assert "loading the models churn-risk@champion and recall-uplift@champion from the MLflow store" in text
    assert "models loaded in" in text and "churn-risk v1, recall-uplift v1" in text
    assert "nightly list of 2024-04-29 loaded in" in text and "users, scores from the list" in text


def test_startup_lines_reach_the_terminal_under_uvicorn(tmp_path):
    # uvicorn configures only its own loggers; without a handler of ours the lines above were dropped.
    import subprocess
    import sys

    code = ("from fastapi.testclient import TestClient\n"
            "from churnml.config import Settings\n"
            "from serving.app import ServeSettings, create_app\n"
            f"s = ServeSettings(lists_dir={str(tmp_path)!r}, runtime=Settings(mlruns_dir={str(tmp_path / 'none')!r}))\n"
            "with TestClient(create_app(s)):\n    pass\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr
    assert "INFO:     loading the models churn-risk@champion" in done.stderr
    assert "no models" in done.stderr  # the closing line says what is (not) served
