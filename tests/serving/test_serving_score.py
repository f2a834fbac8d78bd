"""POST /score: by id and by rows, the same numbers as the nightly list and Scorer.score, and bad requests."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

FIELDS = ("p_churn", "uplift", "p_return_if_contacted", "p_return_if_not")


def assert_scores(item: dict, expected: pd.Series) -> None:
    """One response item has the numbers of one row of Scorer.score output (or scores.parquet)."""
    assert item["user_id"] == expected["user_id"]
    for name in FIELDS:
        assert item[name] == pytest.approx(expected[name], rel=1e-12, abs=1e-15), name
    assert item["segment"] == expected["segment"]


def assert_reasons(item: dict, expected: pd.Series, reasons: int = 3) -> None:
    """One response item has the reasons of one row of Scorer.score output (or the recall list)."""
    want = [expected[f"reason_{i}"] for i in range(1, reasons + 1)]
    assert item["reasons"] == [r for r in want if isinstance(r, str)]
    assert len(item["reasons"]) == reasons


@pytest.fixture(scope="module")
def expected(scorer, features) -> pd.DataFrame:
    """Scorer.score with 3 reasons on every snapshot row, by user id."""
    return scorer.score(features, reasons=3).set_index("user_id", drop=False)


def test_score_by_ids_equals_the_nightly_list(client, nightly, expected):
    ids = nightly["user_id"].iloc[[7, 3, 1500, 42]].tolist()
    r = client.post("/score", json={"user_ids": ids})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["as_of"] == "2024-04-29T00:00:00+00:00"
    assert body["models"] == {"churn-risk": "1", "recall-uplift": "1"}
    assert body["unknown_ids"] == []
    assert [s["user_id"] for s in body["scores"]] == ids
    for item in body["scores"]:
        assert_scores(item, nightly.loc[item["user_id"]])
        assert_reasons(item, expected.loc[item["user_id"]])


def test_reasons_equal_the_recall_lists(client, store, expected):
    listed = pd.read_parquet(store["day"] / "recall_list.parquet").set_index("user_id", drop=False)
    ids = listed["user_id"].iloc[:40].tolist()
    items = client.post("/score", json={"user_ids": ids}).json()["scores"]
    for item in items:
        assert_reasons(item, listed.loc[item["user_id"]])
        assert_reasons(item, expected.loc[item["user_id"]])
        assert_scores(item, listed.loc[item["user_id"]])


def test_repeated_and_reordered_ids_keep_their_own_reasons(client, features, expected):
    ids = features["user_id"].iloc[[5, 6, 7]].tolist()
    first = client.post("/score", json={"user_ids": ids[:2]}).json()["scores"]
    again = client.post("/score", json={"user_ids": [ids[2], ids[1], ids[0], ids[1]]}).json()["scores"]
    assert [s["user_id"] for s in again] == [ids[2], ids[1], ids[0], ids[1]]
    assert again[1] == again[3] == first[1] and again[2] == first[0]
    for item in again:
        assert_reasons(item, expected.loc[item["user_id"]])


def test_score_by_rows_equals_scorer_and_nightly_list(client, features, nightly, expected, json_rows):
    frame = features.iloc[100:130]
    r = client.post("/score", json={"rows": json_rows(frame)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["as_of"] is None and body["unknown_ids"] == []
    assert [s["user_id"] for s in body["scores"]] == frame["user_id"].tolist()
    for item in body["scores"]:
        assert_scores(item, expected.loc[item["user_id"]])
        assert_reasons(item, expected.loc[item["user_id"]])
        assert_scores(item, nightly.loc[item["user_id"]])


def test_ids_are_scored_live_without_usable_nightly_scores(make_client, store, tmp_path, features, nightly,
                                                           expected):
    # A list without scores.parquet: the snapshot rows are scored per request by Scorer.score.
    shutil.copytree(store["day"], tmp_path / "lists" / "2024-04-29")
    (tmp_path / "lists" / "2024-04-29" / "scores.parquet").unlink()
    client = make_client(lists_dir=tmp_path / "lists")
    snapshot = client.get("/model").json()["snapshot"]
    assert (snapshot["scores"], snapshot["reasons_cached"]) == ("live", 0)
    ids = features["user_id"].iloc[[10, 2000, 11]].tolist()
    items = client.post("/score", json={"user_ids": ids}).json()["scores"]
    assert [s["user_id"] for s in items] == ids
    for item in items:
        assert_scores(item, nightly.loc[item["user_id"]])
        assert_reasons(item, expected.loc[item["user_id"]])
    assert client.post("/score", json={"user_ids": ["nobody"]}).json()["unknown_ids"] == ["nobody"]


@pytest.mark.parametrize("reasons", [0, 1])
def test_fewer_reasons(make_client, nightly, expected, reasons):
    client = make_client(reasons=reasons)
    assert client.get("/model").json()["snapshot"]["scores"] == "nightly"
    uid = int(nightly["user_id"].iloc[5])
    item = client.post("/score", json={"user_ids": [uid]}).json()["scores"][0]
    assert_scores(item, nightly.loc[uid])
    assert_reasons(item, expected.loc[uid], reasons)


def test_unknown_ids_are_reported_not_fatal(client, nightly):
    known = int(nightly["user_id"].iloc[0])
    r = client.post("/score", json={"user_ids": ["nobody", known, 99_999_999]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [s["user_id"] for s in body["scores"]] == [known]
    assert body["unknown_ids"] == ["nobody", 99_999_999]
    only_unknown = client.post("/score", json={"user_ids": [-1]}).json()
    assert only_unknown["scores"] == [] and only_unknown["unknown_ids"] == [-1]


def test_ids_given_as_text_find_the_same_users(client, nightly):
    uid = int(nightly["user_id"].iloc[3])
    by_text = client.post("/score", json={"user_ids": [str(uid)]}).json()["scores"]
    by_int = client.post("/score", json={"user_ids": [uid]}).json()["scores"]
    assert by_text == by_int and len(by_int) == 1


def test_malformed_json_is_rejected(client, still_serving):
    r = client.post("/score", content=b'{"user_ids": [1, 2', headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["type"] == "json_invalid"
    still_serving(client)


@pytest.mark.parametrize(("body", "message"), [
    ({"user_ids": "17"}, "Input should be a valid list"),
    ({"user_ids": [1.5]}, "Input should be a valid"),
    ({"user_ids": [[17]]}, "Input should be a valid"),
    ({"user_ids": [True]}, "Input should be a valid"),
    ({"user_ids": []}, "at least 1 item"),
    ({"rows": [{"user_id": 1, "tenure_days": [3]}]}, "Input should be a valid"),
    ({"rows": [{"tenure_days": 3}]}, "rows[0] has no user_id"),
    ({"rows": {"user_id": 1}}, "Input should be a valid list"),
    ({}, "give exactly one of `user_ids`"),
    ({"user_ids": [1], "rows": [{"user_id": 1}]}, "give exactly one of `user_ids`"),
    ({"ids": [1]}, "Extra inputs are not permitted"),
    ([1, 2], "Input should be a valid dictionary"),
])
def test_wrong_types_are_422_with_a_clear_error(client, still_serving, body, message):
    r = client.post("/score", json=body)
    assert r.status_code == 422, r.text
    assert any(message in e["msg"] for e in r.json()["detail"]), r.json()
    still_serving(client)


def test_text_in_a_numeric_feature_is_422(client, features, json_rows, still_serving):
    row = json_rows(features.iloc[:1])[0] | {"tenure_days": "long"}
    r = client.post("/score", json={"rows": [row]})
    assert r.status_code == 422
    assert "feature 'tenure_days' holds text" in r.json()["detail"]
    still_serving(client)


def test_infinite_numbers_are_422_naming_them(client, features, json_rows, still_serving):
    rows = json_rows(features.iloc[:3])
    rows[2]["tenure_days"] = "__INF__"
    # 1e309 is valid JSON that parses to infinity; the test client's encoder would refuse inf itself.
    body = json.dumps({"rows": rows}).replace('"__INF__"', "1e309")
    r = client.post("/score", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == ("rows 2: infinite value in tenure_days; send a finite number, "
                                  "or null for missing")
    still_serving(client)


def test_missing_features_are_422_naming_them(client, features, json_rows, still_serving):
    rows = json_rows(features.iloc[:3])
    del rows[1]["tenure_days"], rows[1]["days_since_last_activity"]
    r = client.post("/score", json={"rows": rows})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail.startswith("rows 1: ")
    assert "days_since_last_activity" in detail and "tenure_days" in detail
    still_serving(client)


def test_null_features_are_scored_as_missing(client, features, scorer, json_rows):
    frame = features.iloc[:1].copy()
    frame["days_since_last_share"] = float("nan")
    row = json_rows(frame)[0]
    assert row["days_since_last_share"] is None
    item = client.post("/score", json={"rows": [row]}).json()["scores"][0]
    assert item["p_churn"] == pytest.approx(scorer.score(frame)["p_churn"].iloc[0], rel=1e-12)


@pytest.mark.parametrize("kind", ["user_ids", "rows"])
def test_batches_over_max_batch_are_413(make_client, features, json_rows, still_serving, kind):
    client = make_client(max_batch=5)
    frame = features.iloc[:6]
    payload = frame["user_id"].tolist() if kind == "user_ids" else json_rows(frame)
    r = client.post("/score", json={kind: payload})
    assert r.status_code == 413
    assert r.json()["detail"] == "6 users in one request; at most 5 (CHURNML_SERVE_MAX_BATCH): split the batch"
    ok = client.post("/score", json={kind: payload[:5]})
    assert ok.status_code == 200 and len(ok.json()["scores"]) == 5
    still_serving(client)


def test_a_full_batch_of_1000_ids(client, nightly, expected):
    ids = nightly["user_id"].iloc[:1000].tolist()
    body = client.post("/score", json={"user_ids": ids}).json()
    assert [s["user_id"] for s in body["scores"]] == ids
    got = pd.DataFrame(body["scores"]).set_index("user_id")
    for name in FIELDS:
        assert got[name].to_numpy() == pytest.approx(nightly.loc[ids, name].to_numpy(), rel=1e-12)
    want = expected.loc[ids, ["reason_1", "reason_2", "reason_3"]].to_numpy().tolist()
    assert got["reasons"].tolist() == want


def test_concurrent_requests_get_their_own_scores(client, features, expected, json_rows):
    from concurrent.futures import ThreadPoolExecutor

    frames = [features.iloc[i:i + 3] for i in range(0, 48, 3)]

    def post(frame):
        return client.post("/score", json={"rows": json_rows(frame)}).json()["scores"]

    def post_ids(frame):
        return client.post("/score", json={"user_ids": frame["user_id"].tolist()}).json()["scores"]

    # Overlapping id requests fill the reason cache concurrently.
    frames += [features.iloc[i:i + 5] for i in range(200, 240, 2)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(post, frames[:16])) + list(pool.map(post_ids, frames[16:]))
    for frame, items in zip(frames, results, strict=True):
        assert [s["user_id"] for s in items] == frame["user_id"].tolist()
        for item in items:
            assert_scores(item, expected.loc[item["user_id"]])
            assert_reasons(item, expected.loc[item["user_id"]])


@pytest.mark.parametrize("uid", ["1.5", "NaN", "Infinity", "-Infinity", "1e400", "true", "{}", '""', '"  "'])
def test_a_row_whose_user_id_is_not_an_id_is_422(client, features, json_rows, still_serving, uid):
    # A non-integer or NaN user_id in feature rows used to end in a 500 (#15).
    row = json_rows(features.iloc[:1])[0]
    body = json.dumps({"rows": [row]}).replace(f'"user_id": {row["user_id"]}', f'"user_id": {uid}', 1)
    r = client.post("/score", content=body.encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert "user_id" in r.text
    still_serving(client)
