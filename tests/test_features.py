"""Feature and label values on a tiny log, worked out by hand."""

from __future__ import annotations

import datetime as dt

import pytest

from churnml.exceptions import ContractError
from churnml.features import build_snapshot, build_training_set

from conftest import TINY_EVENTS, TINY_USERS, open_tiny

AS_OF = "2024-01-06"


def _rows(ds, as_of=AS_OF, **kw):
    table, fs = build_snapshot(ds, as_of, **kw)
    return {r["user_id"]: r for r in table.to_pylist()}, fs


def test_recency_counts_and_windows(tiny_dataset):
    rows, _ = _rows(tiny_dataset)
    u1 = rows["u1"]
    # last event 2024-01-03 09:00 -> 2 days 15 hours before 2024-01-06 00:00
    assert u1["days_since_last_activity"] == pytest.approx(2.625)
    assert u1["days_since_last_like"] == pytest.approx(4 + 13 / 24)
    assert u1["n_play_7d"] == 2 and u1["n_like_7d"] == 1 and u1["n_play_1d"] == 0
    assert u1["active_days_7d"] == 2 and u1["n_events_7d"] == 3
    assert u1["tenure_days"] == pytest.approx(4 + 15 / 24)
    # active "days" are 24h buckets counted back from as_of: d=2 and d=4 -> one gap of 2
    assert u1["gap_mean_days"] == 2 and u1["gap_max_days"] == 2
    assert u1["events_per_active_day_30d"] == pytest.approx(1.5)
    assert u1["activity_trend_7d"] == pytest.approx(__import__("math").log(4 / 1))
    assert u1["channel"] == "organic"
    # u2 never liked: recency of likes is empty, not zero
    assert rows["u2"]["days_since_last_like"] is None
    assert rows["u2"]["gap_mean_days"] is None


def test_event_at_as_of_is_label_side_not_feature_side(tiny_dataset):
    rows, _ = _rows(tiny_dataset, labels=True)
    u3 = rows["u3"]  # u3 plays at exactly 2024-01-06 00:00
    assert u3["n_play_all"] == 0 and u3["days_since_last_play"] is None
    assert u3["churned"] == 0
    # u2's next event is 2024-01-09 08:00, outside [01-06, 01-09): churned
    assert rows["u2"]["churned"] == 1
    assert rows["u1"]["churned"] == 1


def test_onboarding_window(tiny_dataset):
    rows, _ = _rows(tiny_dataset, as_of="2024-01-10")
    assert rows["u1"]["onboard_n_like_7d"] == 1 and rows["u1"]["onboard_n_play_7d"] == 2
    # u2 signed up 01-02 07:00; the 01-09 08:00 play is 7 days 1 hour later: outside week one
    assert rows["u2"]["onboard_n_play_7d"] == 1 and rows["u2"]["n_play_all"] == 2
    assert rows["u2"]["onboard_active_days_7d"] == 1


def test_campaign_history(tiny_dataset):
    rows, _ = _rows(tiny_dataset)
    assert rows["u1"]["times_contacted"] == 1
    assert rows["u1"]["days_since_last_contact"] == pytest.approx(4.0)
    assert rows["u1"]["responded_last_contact"] == 1  # played 01-03, inside [01-02, 01-04)
    assert rows["u2"]["times_contacted"] == 0  # control rows are not contacts
    assert rows["u2"]["responded_last_contact"] is None
    # at 2024-01-03 the response window is still open: not judged yet
    early, _ = _rows(tiny_dataset, as_of="2024-01-03")
    assert early["u1"]["responded_last_contact"] is None and early["u1"]["times_contacted"] == 1


def test_eligibility(tiny_dataset):
    rows, _ = _rows(tiny_dataset)
    assert set(rows) == {"u1", "u2", "u3"}  # u4 signs up after as_of
    later, _ = _rows(tiny_dataset, as_of="2024-01-10")
    assert "u4" not in later  # signed up but never active: not eligible


def test_eligibility_window_boundary(tmp_path):
    events = [{"user_id": "a", "ts": "2024-01-01T00:00:00Z", "event": "x"},
              {"user_id": "b", "ts": "2024-01-01T00:00:01Z", "event": "x"}]
    ds = open_tiny(tmp_path, events, eligibility_days=30, observed_until="2024-03-01")
    rows, _ = _rows(ds, as_of="2024-01-31T00:00:00")
    assert set(rows) == {"a", "b"}  # exactly 30 days ago is still "within the last 30 days"
    rows, _ = _rows(ds, as_of="2024-01-31T00:00:01")
    assert set(rows) == {"b"}


def test_activity_events_config(tmp_path):
    events = [{"user_id": "a", "ts": "2024-01-01T00:00:00Z", "event": "login"},
              {"user_id": "a", "ts": "2024-01-02T00:00:00Z", "event": "push_received"},
              {"user_id": "b", "ts": "2024-01-01T00:00:00Z", "event": "login"},
              {"user_id": "b", "ts": "2024-01-05T00:00:00Z", "event": "push_received"}]
    ds = open_tiny(tmp_path, events, activity_events=["login"], horizon_days=7,
                   observed_until="2024-02-01")
    rows, _ = _rows(ds, as_of="2024-01-02T12:00", labels=True)
    assert rows["a"]["days_since_last_activity"] == pytest.approx(1.5)  # the push does not count
    assert rows["a"]["n_events_7d"] == 1 and rows["a"]["n_push_received_7d"] == 1
    assert rows["b"]["churned"] == 1  # a received push is not activity


def test_incomplete_label_window_is_refused(tiny_dataset):
    with pytest.raises(ContractError, match="label window of 2024-01-10 ends 2024-01-13"):
        build_snapshot(tiny_dataset, "2024-01-10", labels=True)


def test_training_set_stacks_snapshots(tiny_dataset):
    table, fs = build_training_set(tiny_dataset, [dt.datetime(2024, 1, 6), dt.datetime(2024, 1, 4)])
    df = table.to_pandas()
    assert list(df["as_of"].dt.day.unique()) == [4, 6]
    assert set(df[df.as_of.dt.day == 4].user_id) == {"u1", "u2"}
    # u1 at 01-04: next activity none until data end -> churned; u2 plays 01-09 > 01-07 -> churned
    assert df.set_index(["as_of", "user_id"]).churned.notna().all()
    assert fs.columns == [c for c in df.columns if c not in ("user_id", "as_of", "churned")]


def test_event_types_come_from_before_as_of(tmp_path):
    events = TINY_EVENTS + [{"user_id": "u1", "ts": "2024-01-08T00:00:00Z", "event": "share", "item_id": 1}]
    ds = open_tiny(tmp_path, events, TINY_USERS, observed_until="2024-01-12")
    _, fs = build_snapshot(ds, AS_OF)
    assert not any("share" in c for c in fs.columns)
    _, fs = build_snapshot(ds, "2024-01-09")
    assert "n_share_7d" in fs.columns


def test_distinct_counts_window_and_event_filter(tmp_path):
    # Distinct counts read only their window's events (a filter on the raw timestamp, so the
    # engine can skip the rest of the log); the window boundary must match the other windows':
    # an event exactly 30 days before as_of is outside "the last 30 days".
    ev = [
        {"user_id": "a", "ts": "2024-01-01T00:00:00Z", "event": "play", "item_id": 1, "community_id": None},
        {"user_id": "a", "ts": "2024-01-01T00:00:01Z", "event": "play", "item_id": 5, "community_id": None},
        {"user_id": "a", "ts": "2024-01-20T00:00:00Z", "event": "play", "item_id": 2, "community_id": None},
        {"user_id": "a", "ts": "2024-01-21T00:00:00Z", "event": "play", "item_id": 2, "community_id": None},
        {"user_id": "a", "ts": "2024-01-25T00:00:00Z", "event": "like", "item_id": 3, "community_id": None},
        {"user_id": "a", "ts": "2024-01-26T00:00:00Z", "event": "play", "item_id": None, "community_id": None},
        {"user_id": "a", "ts": "2024-01-02T00:00:00Z", "event": "join", "item_id": None, "community_id": 7},
        {"user_id": "a", "ts": "2024-01-28T00:00:00Z", "event": "join", "item_id": None, "community_id": 8},
        {"user_id": "a", "ts": "2024-01-29T00:00:00Z", "event": "post", "item_id": None, "community_id": 9},
        {"user_id": "a", "ts": "2024-01-31T00:00:00Z", "event": "join", "item_id": None, "community_id": 10},
        {"user_id": "b", "ts": "2024-01-30T00:00:00Z", "event": "play", "item_id": 1, "community_id": None},
    ]
    distinct = [{"name": "communities_joined", "column": "community_id", "events": ["join"]},
                {"name": "items_30d", "column": "item_id", "window_days": 30}]
    ds = open_tiny(tmp_path, ev, distinct_counts=distinct, observed_until="2024-03-01")
    rows, fs = _rows(ds, as_of="2024-01-31T00:00:00")
    # items 5 (one second inside the window), 2 (twice) and 3; item 1 at exactly 30 days before
    # is out, the null item is not counted
    assert rows["a"]["items_30d"] == 3
    # communities 7 and 8 (9 was a post, 10 is at as_of: not before it)
    assert rows["a"]["communities_joined"] == 2
    assert rows["b"]["items_30d"] == 1 and rows["b"]["communities_joined"] == 0
    assert {f.name: f.window_days for f in fs.features if f.family == "distinct"} == {
        "communities_joined": None, "items_30d": 30}


def test_trend_uses_the_window_count_and_no_copy_of_it(tiny_dataset, tmp_path):
    rows, fs = _rows(tiny_dataset)
    names = [f.name for f in fs.features]
    # 7 is a configured window: the last week's count is n_events_7d, not a duplicate column
    assert "n_events_7d" in names and "n_events_last_7d" not in names
    assert rows["u1"]["activity_trend_7d"] == pytest.approx(__import__("math").log((3 + 1) / (0 + 1)))
    # without a 7-day window the trend brings its own count of the last week
    ds = open_tiny(tmp_path, TINY_EVENTS, TINY_USERS, feature_windows_days=[1, 30], observed_until="2024-01-12")
    rows, fs = _rows(ds)
    assert "n_events_last_7d" in [f.name for f in fs.features]
    assert rows["u1"]["n_events_last_7d"] == 3
    assert rows["u1"]["activity_trend_7d"] == pytest.approx(__import__("math").log(4))


def test_purchase_log_ratios_in_the_bg_nbd_sense(tmp_path):
    # BG/NBD's frequency, recency and age as ratios, and spend per active day (issue 14).
    ds = open_tiny(tmp_path, TINY_EVENTS, TINY_USERS, observed_until="2024-01-12", sum_columns=["item_id"])
    rows, _ = _rows(ds)
    u1, u2 = rows["u1"], rows["u2"]
    # u1: first event 01-01 10:00 = 4 d 14 h before 01-06; last 2.625 d before; 2 active days, one gap of 2
    age = 4 + 14 / 24
    assert u1["active_day_rate"] == pytest.approx(2 / age)
    assert u1["lapse_in_usual_gaps"] == pytest.approx(2.625 / 2)
    assert u1["active_span_ratio"] == pytest.approx((age - 2.625) / age)
    assert u1["mean_item_id_per_active_day"] == pytest.approx((1 + 1 + 2) / 2)
    # u2: one active day before 01-06 (01-02 08:00): no gap yet, and its history ends at its last activity
    assert u2["lapse_in_usual_gaps"] is None
    assert u2["active_span_ratio"] == 0
    assert u2["active_day_rate"] == pytest.approx(1 / (3 + 16 / 24))
