"""Point-in-time correctness: nothing at or after ``as_of`` may change a feature.

Property-based: hypothesis builds a random history, then appends arbitrary
events, users and campaign rows at or after ``as_of`` (new event types and
new users included), subscription rows starting at or after ``as_of``, and
rewrites the ``end`` of every subscription row whose end lies at or after
``as_of`` (a running subscription's end is not known at ``as_of``). The
feature table must stay identical, value for value, under every churn
definition (each has its own population rule), both when the snapshot is
built alone and when it is built together with an earlier one from the
condensed log (the training-set path), in UTC and in a time zone whose
midnight is not UTC's.
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
EVENTS = ["play", "like", "join", "cancel"]
DEFINITIONS = [{"definition": "inactivity"}, {"definition": "subscription", "grace_days": 2},
               {"definition": "event", "events": ["cancel"]}]


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


def _day(x: float) -> str:
    return (START + dt.timedelta(seconds=round(x * 86_400))).isoformat()


# A subscription row started before as_of: its end is known (before as_of), or not (at or after
# as_of, including exactly at it, or running). `terms` are known from the start.
past_subscription = st.fixed_dictionaries({
    "user_id": st.sampled_from(USERS),
    "start": st.floats(1, 19.99),
    "known_end": st.one_of(st.none(), st.floats(0.01, 18.9)),
    "plan": st.sampled_from(["monthly", "yearly"]),
    "price": st.sampled_from([4.99, 9.99]),
    "period_days": st.sampled_from([7, 30]),
    "discount": st.sampled_from([0.0, 0.5]),
})
unknown_end = st.one_of(st.none(), st.just(20.0), st.floats(20, 70))
future_subscription = st.fixed_dictionaries({
    "user_id": st.sampled_from(USERS),
    "start": st.floats(20, 59.9),
    "end": st.one_of(st.none(), st.floats(60, 80)),
    "plan": st.sampled_from(["monthly", "yearly", "new_plan"]),
    "price": st.sampled_from([4.99, 19.99]),
    "period_days": st.sampled_from([7, 30, 365]),
    "discount": st.sampled_from([0.0, 0.25]),
})


def _subscriptions(past: list[dict], ends: list, future: list[dict]) -> list[dict]:
    """Past rows (a known end stays, an unknown one takes the next of ``ends``) and future rows."""
    rows = []
    for r, end in zip(past, ends, strict=True):
        known = r["known_end"] is not None and r["start"] + r["known_end"] < 20
        stop = r["start"] + r["known_end"] if known else end
        rows.append({**{k: v for k, v in r.items() if k != "known_end"},
                     "start": _day(r["start"]), "end": None if stop is None else _day(stop)})
    rows += [{**r, "start": _day(r["start"]), "end": None if r["end"] is None else _day(r["end"])} for r in future]
    return rows


def _users(extra: list[str]) -> list[dict]:
    rows = [{"user_id": u, "signup_ts": (START + dt.timedelta(days=1)).isoformat(), "plan": "free"} for u in USERS]
    rows += [{"user_id": u, "signup_ts": AS_OF.isoformat(), "plan": "paid"} for u in extra]
    return rows


def _features(folder: Path, events, campaigns, extra_users, subscriptions, churn, timezone, *, alone=True):
    ds = open_tiny(folder, pd.DataFrame(events), _users(extra_users), pd.DataFrame(campaigns),
                   fmt="parquet", observed_until=UNTIL.isoformat(), response_window_days=3,
                   subscriptions=pd.DataFrame(subscriptions), churn=churn,
                   timezone=timezone, sum_columns=["item_id"],
                   distinct_counts=[{"name": "items_7d", "column": "item_id", "window_days": 7}])
    single = build_snapshot(ds, AS_OF)[0] if alone else None
    stacked = _collect(_build(ds, [AS_OF - dt.timedelta(days=6), AS_OF]))
    return single, stacked


@pytest.mark.filterwarnings("ignore::churnml.exceptions.DataWarning")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    timezone=st.sampled_from(["UTC", "Europe/Berlin"]),
    past=st.lists(past_event, min_size=1, max_size=25),
    future=st.lists(future_event, min_size=1, max_size=25),
    future_campaigns=st.lists(future_campaign, max_size=5),
    exposed=st.lists(st.tuples(st.sampled_from(USERS), st.floats(2, 19.9), st.booleans()), max_size=4),
    subs=st.lists(past_subscription, min_size=1, max_size=6).flatmap(
        lambda rows: st.tuples(st.just(rows), st.lists(unknown_end, min_size=len(rows), max_size=len(rows)),
                               st.lists(unknown_end, min_size=len(rows), max_size=len(rows)))),
    future_subs=st.lists(future_subscription, max_size=4),
    churn=st.sampled_from(DEFINITIONS),
)
def test_future_rows_change_no_feature(timezone, past, future, future_campaigns, exposed, subs, future_subs,
                                       churn):
    campaigns = [{"user_id": u, "campaign_id": "c1",
                  "sent_ts": (START + dt.timedelta(days=x)).isoformat(), "treated": t} for u, x, t in exposed]
    if not campaigns:  # keep the campaigns table (and its features) present in both runs
        campaigns = [{"user_id": "a", "campaign_id": "c0",
                      "sent_ts": (START + dt.timedelta(days=3)).isoformat(), "treated": False}]
    new_users = sorted({e["user_id"] for e in future if e["user_id"].startswith("new")})
    # The event definition needs a churn event in the log; an early one, before as_of.
    past = past + [{"user_id": "d", "ts": _day(1.5), "event": "cancel", "item_id": 1}]
    rows, ends_before, ends_after = subs
    with tempfile.TemporaryDirectory() as tmp:
        # Three builds, not four: the single build on the log with future rows must equal the stacked
        # build's snapshot on the log without them, and the stacked build is compared with and without.
        _, stacked_before = _features(Path(tmp) / "before", past, campaigns, [],
                                      _subscriptions(rows, ends_before, []), churn, timezone, alone=False)
        after, stacked_after = _features(Path(tmp) / "after", past + future, campaigns + future_campaigns,
                                         new_users, _subscriptions(rows, ends_after, future_subs), churn, timezone)
    assert stacked_before.equals(stacked_after), "a row at or after as_of changed a stacked snapshot"
    last = stacked_before.filter(pa.compute.equal(stacked_before["as_of"],
                                                  pa.scalar(AS_OF, after.schema.field("as_of").type)))
    assert last.schema.equals(after.schema)
    assert last.equals(after), ("a row at or after as_of (or an end not yet passed) changed the single build's "
                                "table, or the single build differs from the stacked one")
