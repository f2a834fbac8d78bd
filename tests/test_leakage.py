"""Point-in-time correctness: nothing at or after ``as_of`` may change a feature.

Property-based: hypothesis builds a random history, then appends arbitrary
events, users and campaign rows at or after ``as_of`` (new event types and
new users included). The feature table must stay identical, value for value,
both when the snapshot is built alone and when it is built together with an
earlier one from the condensed log (the training-set path), in UTC and in a
time zone whose midnight is not UTC's.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnml.features import build_snapshot
from churnml.features.build import _build, _collect

from conftest import open_tiny

START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
AS_OF = START + dt.timedelta(days=20)
UNTIL = START + dt.timedelta(days=60)
USERS = ["a", "b", "c", "d"]
EVENTS = ["play", "like", "join"]


def _offset(lo: float, hi: float):
    return st.floats(min_value=lo, max_value=hi, allow_nan=False).map(
        lambda x: (START + dt.timedelta(seconds=round(x * 86_400))).isoformat()
    )


past_event = st.fixed_dictionaries({
    "user_id": st.sampled_from(USERS),
    "ts": _offset(2, 19.99999),
    "event": st.sampled_from(EVENTS),
    "item_id": st.integers(1, 5),
})
future_event = st.fixed_dictionaries({
    "user_id": st.sampled_from(USERS + ["new1", "new2"]),
    "ts": _offset(20, 59.9),  # 20.0 days is exactly as_of: must not be seen
    "event": st.sampled_from(EVENTS + ["brand_new_type"]),
    "item_id": st.integers(1, 9),
})
future_campaign = st.fixed_dictionaries({
    "user_id": st.sampled_from(USERS),
    "campaign_id": st.sampled_from(["c1", "late"]),
    "sent_ts": _offset(20, 59.9),
    "treated": st.booleans(),
})


def _users(extra: list[str]) -> list[dict]:
    rows = [{"user_id": u, "signup_ts": (START + dt.timedelta(days=1)).isoformat(), "plan": "free"} for u in USERS]
    rows += [{"user_id": u, "signup_ts": AS_OF.isoformat(), "plan": "paid"} for u in extra]
    return rows


def _features(folder: Path, events, campaigns, extra_users, timezone):
    ds = open_tiny(folder, pd.DataFrame(events), _users(extra_users), pd.DataFrame(campaigns),
                   fmt="parquet", observed_until=UNTIL.isoformat(), response_window_days=3,
                   timezone=timezone, sum_columns=["item_id"],
                   distinct_counts=[{"name": "items_7d", "column": "item_id", "window_days": 7}])
    alone, _ = build_snapshot(ds, AS_OF)
    stacked = _collect(_build(ds, [AS_OF - dt.timedelta(days=6), AS_OF]))
    return alone, stacked


@pytest.mark.filterwarnings("ignore::churnml.exceptions.DataWarning")
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    timezone=st.sampled_from(["UTC", "Europe/Berlin"]),
    past=st.lists(past_event, min_size=1, max_size=25),
    future=st.lists(future_event, min_size=1, max_size=25),
    future_campaigns=st.lists(future_campaign, max_size=5),
    exposed=st.lists(st.tuples(st.sampled_from(USERS), st.floats(2, 19.9), st.booleans()), max_size=4),
)
def test_future_rows_change_no_feature(timezone, past, future, future_campaigns, exposed):
    campaigns = [{"user_id": u, "campaign_id": "c1",
                  "sent_ts": (START + dt.timedelta(days=x)).isoformat(), "treated": t} for u, x, t in exposed]
    if not campaigns:  # keep the campaigns table (and its features) present in both runs
        campaigns = [{"user_id": "a", "campaign_id": "c0",
                      "sent_ts": (START + dt.timedelta(days=3)).isoformat(), "treated": False}]
    new_users = sorted({e["user_id"] for e in future if e["user_id"].startswith("new")})
    with tempfile.TemporaryDirectory() as tmp:
        before, stacked_before = _features(Path(tmp) / "before", past, campaigns, [], timezone)
        after, stacked_after = _features(Path(tmp) / "after", past + future, campaigns + future_campaigns,
                                         new_users, timezone)
    assert before.schema.equals(after.schema)
    assert before.equals(after), "an event at or after as_of changed the feature table"
    assert stacked_before.equals(stacked_after), "an event at or after as_of changed a stacked snapshot"
    # the stacked path gives the single build's table for the same snapshot
    last = stacked_after.filter(pa.compute.equal(stacked_after["as_of"], pa.scalar(AS_OF, after.schema.field("as_of").type)))
    assert last.equals(after), "the stacked build differs from the single build"
