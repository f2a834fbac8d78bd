"""POST /reload: a newly promoted champion is swapped in without a restart; a failed reload keeps the old one."""

from __future__ import annotations

import shutil

import pytest


def test_reload_swaps_in_a_newly_promoted_version(make_client, store, features, nightly, train_new_champion):
    from churnml.scoring import Scorer

    client = make_client(registry=True)
    ids = features["user_id"].iloc[:20].tolist()
    assert client.get("/model").json()["models"][0]["version"] == "1"
    new = train_new_champion()
    assert new == "2"
    # Until /reload the service keeps the models it loaded.
    assert client.post("/score", json={"user_ids": ids}).json()["models"]["churn-risk"] == "1"

    r = client.post("/reload")
    assert r.status_code == 200, r.text
    assert r.json()["previous"] == {"churn-risk": "1", "recall-uplift": "1"}
    assert r.json()["current"] == {"churn-risk": "2", "recall-uplift": "1"}
    body = client.get("/model").json()
    assert body["models"][0]["version"] == "2"
    assert body["snapshot"]["scores"] == "live"  # the list was scored by version 1

    scored = client.post("/score", json={"user_ids": ids}).json()
    assert scored["models"] == {"churn-risk": "2", "recall-uplift": "1"}
    expected = Scorer.from_registry(settings=store["settings"]).score(features.iloc[:20])
    got = [s["p_churn"] for s in scored["scores"]]
    assert got == pytest.approx(expected["p_churn"].tolist(), rel=1e-12)
    assert got != pytest.approx(nightly.loc[ids, "p_churn"].tolist(), rel=1e-6)


def test_a_failed_reload_keeps_serving_the_old_models(make_client, store, tmp_path, still_serving):
    lists = tmp_path / "lists"
    shutil.copytree(store["day"], lists / "2024-04-29")
    client = make_client(registry=True, lists_dir=lists)
    before = client.get("/model").json()
    # A newer list whose features file is not Parquet.
    (lists / "2024-04-30").mkdir()
    (lists / "2024-04-30" / "features.parquet").write_bytes(b"not parquet")

    r = client.post("/reload")
    assert r.status_code == 503
    assert r.json()["detail"].startswith("reload failed, still serving {'churn-risk': '1', 'recall-uplift': '1'}: "
                                         "snapshot: ")
    after = client.get("/model").json()
    assert after["snapshot"] == before["snapshot"] and after["models"] == before["models"]
    still_serving(client)

    shutil.rmtree(lists / "2024-04-30")
    assert client.post("/reload").status_code == 200
