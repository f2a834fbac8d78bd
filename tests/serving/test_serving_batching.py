"""Dynamic batching of concurrent row requests, and the background warm-up of the reason cache."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

from serving.app import _Batcher


def _slow_double(calls: list, delay: float = 0.05):
    def score(rows: list) -> list:
        calls.append(len(rows))
        if any(r == "bad" for r in rows):
            raise ValueError("bad row")
        time.sleep(delay)
        return [2 * r for r in rows]

    return score


def _concurrently(batcher: _Batcher, parts: list[list], score) -> list:
    results: list = [None] * len(parts)
    start = threading.Barrier(len(parts))

    def ask(i: int) -> None:
        start.wait()
        try:
            results[i] = batcher.run(parts[i], "k", score)
        except ValueError as exc:
            results[i] = exc

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(parts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_concurrent_requests_share_model_calls_and_get_their_own_rows():
    calls: list[int] = []
    parts = [[10 * i + j for j in range(i % 3 + 1)] for i in range(12)]
    results = _concurrently(_Batcher(), parts, _slow_double(calls))
    assert results == [[2 * r for r in part] for part in parts]
    # Twelve requests arrived together: while the first call ran, the others queued up and were
    # scored together.
    assert len(calls) < 6
    assert sum(calls) == sum(len(p) for p in parts)


def test_a_bad_request_fails_alone():
    calls: list[int] = []
    parts = [[1], [2, "bad"], [3], [4, 5]]
    results = _concurrently(_Batcher(), parts, _slow_double(calls))
    assert isinstance(results[1], ValueError)
    assert [results[0], results[2], results[3]] == [[2], [6], [8, 10]]


def test_batches_respect_max_rows_and_big_requests_go_alone():
    calls: list[int] = []
    batcher = _Batcher(max_rows=4)
    parts = [[i, i] for i in range(6)] + [list(range(9))]
    results = _concurrently(batcher, parts, _slow_double(calls))
    assert results == [[2 * r for r in p] for p in parts]
    assert max(calls) == 9 and sorted(calls)[-2] <= 4


def test_the_worker_stops_when_idle_and_starts_again():
    batcher = _Batcher(idle_seconds=0.05)
    assert batcher.run([1], "k", lambda rows: rows) == [1]
    deadline = time.monotonic() + 5
    while batcher._running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not batcher._running
    assert batcher.run([2], "k", lambda rows: rows) == [2]


def test_warm_up_words_every_users_reasons_in_the_background(make_client, features, store, scorer):
    client = make_client(warm_reasons=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        snap = client.get("/model").json()["snapshot"]
        if snap["reasons_cached"] == len(features):
            break
        time.sleep(0.2)
    assert snap["reasons_cached"] == len(features)
    listed = set(pd.read_parquet(store["day"] / "recall_list.parquet")["user_id"])
    others = features[~features["user_id"].isin(listed)].iloc[::97]
    want = scorer.reasons(others, top=3)
    items = client.post("/score", json={"user_ids": others["user_id"].tolist()}).json()["scores"]
    for item, (_, row) in zip(items, want.iterrows(), strict=True):
        assert item["reasons"] == [r for r in row.tolist() if isinstance(r, str)]
    # Asking did not word anyone again.
    assert client.get("/model").json()["snapshot"]["reasons_cached"] == len(features)


@pytest.mark.parametrize("reasons", [0])
def test_no_warm_up_without_reasons(make_client, reasons):
    client = make_client(warm_reasons=True, reasons=reasons)
    time.sleep(0.3)
    assert client.get("/model").json()["snapshot"]["reasons_cached"] == 0


def test_rows_beyond_the_batchers_size_are_scored_in_one_call(make_client, features, json_rows, scorer):
    client = make_client(max_batch=2000)
    frame = features.iloc[:1100]
    assert len(frame) == 1100
    r = client.post("/score", json={"rows": json_rows(frame)})
    assert r.status_code == 200, r.text
    items = r.json()["scores"]
    want = scorer.score(frame, reasons=3)
    assert [s["user_id"] for s in items] == frame["user_id"].tolist()
    assert [s["p_churn"] for s in items] == pytest.approx(want["p_churn"].tolist(), rel=1e-12)
    assert [s["reasons"] for s in items] == [[t for t in row if isinstance(t, str)] for row in
                                             want[["reason_1", "reason_2", "reason_3"]].itertuples(index=False)]


def test_a_request_given_up_does_not_stop_the_batcher():
    """A cancelled future (client gone, server stopping) is skipped; later requests are still answered."""
    started, release = threading.Event(), threading.Event()

    def score(rows: list) -> list:
        started.set()
        release.wait(5)
        return [2 * r for r in rows]

    batcher = _Batcher()
    first = batcher.submit([1], "k", score)
    assert started.wait(5)
    given_up = batcher.submit([2], "k", score)  # queued behind the running batch
    kept = batcher.submit([3], "k", score)
    assert given_up.cancel()
    release.set()
    assert first.result(5) == [2] and kept.result(5) == [6]
    assert batcher.run([4], "k", score) == [8]


def test_a_categorical_level_keeps_its_type_whatever_else_is_in_the_batch(client, features, json_rows):
    service = client.app.state.service
    name = service._categorical[0]
    level = features[name].dropna().iloc[0]
    row = json_rows(features.iloc[:1])[0]
    alone = service._score_records([{**row, name: level}], 3)
    mixed = service._score_records([{**row, name: level}, {**row, name: None}, {**row, name: 2.5}], 3)
    assert mixed[0] == alone[0]
    # A level never seen, and a missing one, are scored alike; neither changes the first row.
    assert mixed[1]["p_churn"] == pytest.approx(mixed[2]["p_churn"], rel=1e-12)


def test_request_rows_keep_each_categorical_values_own_type():
    from churnml.models.churn import FeatureSpec, to_matrix
    from serving.app import _request_frame

    rows = [{"tier": 1, "x": 0.5}, {"tier": 2.5, "x": 1}, {"tier": None, "x": 2}]
    spec = [FeatureSpec("tier", "categorical", ("1", "2.5")), FeatureSpec("x", "numeric")]
    X = to_matrix(_request_frame(rows, ["tier"]), spec)
    assert X["tier"].cat.codes.tolist() == [0, 1, -1]
    assert X["x"].tolist() == [0.5, 1.0, 2.0]
