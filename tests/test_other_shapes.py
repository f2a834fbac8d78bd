"""Event logs of other shapes work by configuration alone (nothing assumes the simulator's events)."""

from __future__ import annotations

import pytest

from churnml.features import build_snapshot, build_training_set

from churnml.config import load_dataset_config
from churnml.data import open_dataset

from conftest import open_tiny, write_dataset

# An e-commerce purchase log: renamed columns, amounts, no users table, no campaigns.
SHOP = [
    {"customer": "c1", "time": "2024-03-01T12:00:00Z", "action": "view", "sku": "A", "amount": None},
    {"customer": "c1", "time": "2024-03-01T12:05:00Z", "action": "purchase", "sku": "A", "amount": 20.0},
    {"customer": "c1", "time": "2024-03-08T09:00:00Z", "action": "purchase", "sku": "B", "amount": 5.5},
    {"customer": "c2", "time": "2024-03-05T18:00:00Z", "action": "view", "sku": "C", "amount": None},
    {"customer": "c2", "time": "2024-03-09T18:00:00Z", "action": "add to cart", "sku": "C", "amount": None},
    {"customer": "c2", "time": "2024-03-12T18:00:00Z", "action": "purchase", "sku": "C", "amount": 12.0},
]


@pytest.fixture
def shop(tmp_path):
    cfg = write_dataset(tmp_path, SHOP, observed_until="2024-04-01", horizon_days=14,
                        activity_events=["purchase", "add to cart"], sum_columns=["amount"],
                        distinct_counts=[{"name": "distinct_skus_30d", "column": "sku", "window_days": 30}])
    cfg.write_text(cfg.read_text().replace(
        "path: events.csv}", "path: events.csv, columns: {user_id: customer, ts: time, event: action}}"))
    return open_dataset(load_dataset_config(cfg))


def test_ecommerce_log(shop):
    assert shop.signup_inferred  # no users table: signup = first event
    table, fs = build_snapshot(shop, "2024-03-10", labels=False)
    rows = {r["user_id"]: r for r in table.to_pylist()}
    c1, c2 = rows["c1"], rows["c2"]
    assert c1["sum_amount_7d"] == pytest.approx(5.5) and c1["sum_amount_all"] == pytest.approx(25.5)
    assert c2["sum_amount_all"] == 0  # nothing bought yet
    assert c1["n_purchase_all"] == 2 and c2["n_add_to_cart_7d"] == 1
    assert c1["distinct_skus_30d"] == 2
    # only purchases and add-to-cart count as activity: c2's view on 03-05 does not
    assert c2["days_since_last_activity"] == pytest.approx(0.25)  # 03-09 18:00 -> 03-10 00:00
    assert c2["active_days_30d"] == 1
    assert c1["tenure_days"] == pytest.approx(8.5)  # first event 03-01 12:00
    assert not any(name.startswith(("n_play", "n_like", "onboard_n_visit")) for name in fs.columns)


def test_ecommerce_training_set_labels(shop):
    table, _ = build_training_set(shop, ["2024-03-09"])
    rows = {r["user_id"]: r["churned"] for r in table.to_pylist()}
    # c1 last purchase 03-08, nothing after: churned. c2's view (03-05) is not activity, so c2 is
    # not eligible at 03-09 (no activity before it)
    assert rows == {"c1": 1}


SOCIAL = [
    {"user_id": 1, "ts": "2024-05-01T08:00:00Z", "event": "post"},
    {"user_id": 1, "ts": "2024-05-02T08:00:00Z", "event": "friend"},
    {"user_id": 2, "ts": "2024-05-01T09:00:00Z", "event": "message"},
    {"user_id": 2, "ts": "2024-05-03T09:00:00Z", "event": "like"},
    {"user_id": 2, "ts": "2024-05-06T09:00:00Z", "event": "message"},
]


def test_social_network_log(tmp_path):
    users = [{"user_id": 1, "signup_ts": "2024-04-30T00:00:00Z", "country": "DE"},
             {"user_id": 2, "signup_ts": "2024-05-01T00:00:00Z", "country": "FR"}]
    ds = open_tiny(tmp_path, SOCIAL, users, fmt="parquet", observed_until="2024-06-01", horizon_days=3,
                   feature_windows_days=[3, 7])
    table, fs = build_snapshot(ds, "2024-05-04", labels=True)
    rows = {r["user_id"]: r for r in table.to_pylist()}
    assert {"n_friend_3d", "n_message_7d", "n_post_all", "onboard_n_like_7d"} <= set(fs.columns)
    assert rows[1]["n_friend_3d"] == 1 and rows[2]["n_message_7d"] == 1
    # user 1 is silent after 05-02: churned; user 2 messages on 05-06, inside [05-04, 05-07)
    assert rows[1]["churned"] == 1 and rows[2]["churned"] == 0
    assert rows[1]["country"] == "DE" and rows[2]["onboard_active_days_7d"] == 2
