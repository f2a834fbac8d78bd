"""Churn definitions on hand-built logs: populations, labels and churn instants worked out by hand.

Every case is one user, named after what it tests; the expected population
and labels are written out literally below (see the comments for why).
"""

from __future__ import annotations

import pandas as pd
import pytest

from churnml.config import utc
from churnml.exceptions import ContractError
from churnml.features import CHURN_TS, LABEL, build_snapshot, churn_definition, label_window_days

from conftest import open_tiny

AS_OF = "2024-03-01T00:00:00Z"  # horizon 14 days: the window is [Mar 1, Mar 15)


def _snapshot(ds, as_of=AS_OF):
    table, _ = build_snapshot(ds, as_of, labels=True)
    return table.to_pandas().set_index("user_id")


def _users(names, signup="2024-01-01T00:00:00Z"):
    return [{"user_id": u, "signup_ts": signup} for u in names]


# --------------------------------------------------------------------------- subscription

SUBS = [
    # ends inside the window, nothing after: churned at Mar 10
    {"user_id": "ends_mar10", "start": "2024-01-01T00:00:00Z", "end": "2024-03-10T00:00:00Z"},
    # ends exactly at as_of + horizon: covered for the whole window, not churned here
    {"user_id": "ends_at_horizon", "start": "2024-01-01T00:00:00Z", "end": "2024-03-15T00:00:00Z"},
    # renewed 2 days after the end (grace 3): one spell, not churned
    {"user_id": "renew_in_grace", "start": "2024-02-01T00:00:00Z", "end": "2024-03-05T00:00:00Z"},
    {"user_id": "renew_in_grace", "start": "2024-03-07T00:00:00Z", "end": None},
    # renewed exactly 3 days after the end: still within the grace
    {"user_id": "renew_at_grace", "start": "2024-02-01T00:00:00Z", "end": "2024-03-05T00:00:00Z"},
    {"user_id": "renew_at_grace", "start": "2024-03-08T00:00:00Z", "end": None},
    # renewed 3 days and 1 second after the end: just past the grace, churned at Mar 5
    {"user_id": "renew_past_grace", "start": "2024-02-01T00:00:00Z", "end": "2024-03-05T00:00:00Z"},
    {"user_id": "renew_past_grace", "start": "2024-03-08T00:00:01Z", "end": None},
    # coverage ends exactly at as_of: covered just before it, churned at as_of itself
    {"user_id": "ends_at_as_of", "start": "2024-01-01T00:00:00Z", "end": "2024-03-01T00:00:00Z"},
    # ended before as_of: not covered, not in the population
    {"user_id": "ended_before", "start": "2024-01-01T00:00:00Z", "end": "2024-02-20T00:00:00Z"},
    # starts exactly at as_of: not yet known, not in the population
    {"user_id": "starts_at_as_of", "start": "2024-03-01T00:00:00Z", "end": None},
    # running, and no event at all: in the population with empty behaviour features
    {"user_id": "running_no_events", "start": "2024-01-15T00:00:00Z", "end": None},
    # ends Mar 3, comes back Mar 10 (gap 7 > grace): churned at Mar 3, the return does not undo it
    {"user_id": "lapse_and_return", "start": "2024-01-01T00:00:00Z", "end": "2024-03-03T00:00:00Z"},
    {"user_id": "lapse_and_return", "start": "2024-03-10T00:00:00Z", "end": None},
    # an overlapping upgrade: coverage is the union, ends Apr 10, not churned
    {"user_id": "overlap", "start": "2024-01-01T00:00:00Z", "end": "2024-03-03T00:00:00Z"},
    {"user_id": "overlap", "start": "2024-02-15T00:00:00Z", "end": "2024-04-10T00:00:00Z"},
]
SUB_USERS = sorted({r["user_id"] for r in SUBS})
POPULATION = {"ends_mar10", "ends_at_horizon", "renew_in_grace", "renew_at_grace", "renew_past_grace",
              "ends_at_as_of", "running_no_events", "lapse_and_return", "overlap"}
CHURNED = {"ends_mar10": "2024-03-10", "renew_past_grace": "2024-03-05", "ends_at_as_of": "2024-03-01",
           "lapse_and_return": "2024-03-03"}


def _sub_dataset(tmp_path, *, until="2024-04-01", grace=3, **kw):
    events = [{"user_id": u, "ts": "2024-02-10T12:00:00Z", "event": "visit"}
              for u in SUB_USERS if u != "running_no_events"]
    return open_tiny(tmp_path, events, _users(SUB_USERS), subscriptions=SUBS, horizon_days=14,
                     observed_until=until, churn={"definition": "subscription", "grace_days": grace}, **kw)


@pytest.mark.filterwarnings("ignore::churnml.exceptions.DataWarning")
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_subscription_population_and_labels(tmp_path, fmt):
    df = _snapshot(_sub_dataset(tmp_path, fmt=fmt))
    assert set(df.index) == POPULATION
    assert {u for u in df.index if df.loc[u, LABEL] == 1} == set(CHURNED)
    for u in POPULATION:
        ts = df.loc[u, CHURN_TS]
        if u in CHURNED:
            assert ts == pd.Timestamp(CHURNED[u], tz="UTC"), u
        else:
            assert pd.isna(ts), u
    # A subscriber without any event keeps a row: counts filled with 0, recency unknown.
    assert pd.isna(df.loc["running_no_events", "days_since_last_activity"])
    assert df.loc["running_no_events", "n_visit_7d"] == 0


@pytest.mark.filterwarnings("ignore::churnml.exceptions.DataWarning")
def test_subscription_label_needs_the_grace_after_the_horizon(tmp_path):
    # The window [Mar 1, Mar 15) plus a 3-day grace needs data up to Mar 18.
    with pytest.raises(ContractError, match=r"label window of 2024-03-01 \(horizon and 3-day grace\) ends 2024-03-18"):
        _snapshot(_sub_dataset(tmp_path / "short", until="2024-03-17T23:59:59Z"))
    assert len(_snapshot(_sub_dataset(tmp_path / "enough", until="2024-03-18"))) == len(POPULATION)


@pytest.mark.filterwarnings("ignore::churnml.exceptions.DataWarning")
def test_subscription_grace_zero_makes_any_gap_a_churn(tmp_path):
    df = _snapshot(_sub_dataset(tmp_path, grace=0))
    # The two renewals 2 and 3 days late are now churns at Mar 5.
    assert {u for u in df.index if df.loc[u, LABEL] == 1} == set(CHURNED) | {"renew_in_grace", "renew_at_grace"}
    assert df.loc["renew_in_grace", CHURN_TS] == pd.Timestamp("2024-03-05", tz="UTC")


@pytest.mark.filterwarnings("ignore::churnml.exceptions.DataWarning")
def test_subscription_event_times_and_label_window(tmp_path):
    ds = _sub_dataset(tmp_path)
    d = churn_definition(ds.config)
    assert label_window_days(ds.config) == 17
    assert d.confirmed_until(ds) == utc("2024-03-29")
    times = d.event_times(ds, utc(AS_OF)).to_pandas().set_index("user_id")[CHURN_TS]
    # Beyond the horizon too: the end of ends_at_horizon (Mar 15) is an event time; the running
    # subscriptions and the overlap (ends Apr 10, after the data is confirmed) have none.
    expected = {**CHURNED, "ends_at_horizon": "2024-03-15"}
    assert {u: t.date().isoformat() for u, t in times.items()} == expected


@pytest.mark.filterwarnings("ignore::churnml.exceptions.DataWarning")
def test_next_snapshot_labels_the_end_at_its_start(tmp_path):
    # ends_at_horizon (end Mar 15) is covered just before Mar 15, so it churns in the window from Mar 15.
    df = _snapshot(_sub_dataset(tmp_path, until="2024-04-10"), "2024-03-15T00:00:00Z")
    assert df.loc["ends_at_horizon", LABEL] == 1
    assert df.loc["ends_at_horizon", CHURN_TS] == pd.Timestamp("2024-03-15", tz="UTC")


# ------------------------------------------------------------------------------------ event

EVENTS = [
    # active, cancels inside the window: churned at Mar 5
    ("cancels_mar5", "2024-02-20T00:00:00Z", "visit"), ("cancels_mar5", "2024-03-05T00:00:00Z", "cancel"),
    # cancels exactly at as_of + horizon: outside the window
    ("cancels_at_horizon", "2024-02-20T00:00:00Z", "visit"), ("cancels_at_horizon", "2024-03-15T00:00:00Z", "cancel"),
    # already cancelled before as_of and silent since: not in the population
    ("already_gone", "2024-02-10T00:00:00Z", "visit"), ("already_gone", "2024-02-25T00:00:00Z", "cancel"),
    # cancelled, then came back: in the population, no churn
    ("came_back", "2024-02-05T00:00:00Z", "cancel"), ("came_back", "2024-02-25T00:00:00Z", "visit"),
    # last active more than 30 days before as_of: not eligible
    ("inactive", "2024-01-10T00:00:00Z", "visit"), ("inactive", "2024-03-02T00:00:00Z", "cancel"),
    # cancels exactly at as_of: inside the window
    ("cancels_at_as_of", "2024-02-28T00:00:00Z", "visit"), ("cancels_at_as_of", "2024-03-01T00:00:00Z", "cancel"),
    # a cancel at the same instant as its last visit counts as already churned
    ("tie", "2024-02-20T00:00:00Z", "visit"), ("tie", "2024-02-20T00:00:00Z", "cancel"),
    # two churn event types: the first one is the churn instant
    ("two_kinds", "2024-02-20T00:00:00Z", "visit"), ("two_kinds", "2024-03-03T00:00:00Z", "uninstall"),
    ("two_kinds", "2024-03-02T00:00:00Z", "cancel"),
]


def test_event_population_and_labels(tmp_path):
    rows = [{"user_id": u, "ts": t, "event": e} for u, t, e in EVENTS]
    names = sorted({u for u, _, _ in EVENTS})
    ds = open_tiny(tmp_path, rows, _users(names), horizon_days=14, eligibility_days=30,
                   observed_until="2024-04-01", churn={"definition": "event", "events": ["cancel", "uninstall"]})
    df = _snapshot(ds)
    assert set(df.index) == {"cancels_mar5", "cancels_at_horizon", "came_back", "cancels_at_as_of", "two_kinds"}
    churned = {u: df.loc[u, CHURN_TS].isoformat() for u in df.index if df.loc[u, LABEL] == 1}
    assert churned == {"cancels_mar5": "2024-03-05T00:00:00+00:00", "cancels_at_as_of": "2024-03-01T00:00:00+00:00",
                       "two_kinds": "2024-03-02T00:00:00+00:00"}


def test_event_definition_needs_a_churn_event_in_the_log(tmp_path):
    rows = [{"user_id": "a", "ts": "2024-02-20T00:00:00Z", "event": "visit"}]
    with pytest.raises(ContractError, match=r"none of the churn.events \['cancel'\] occurs"):
        open_tiny(tmp_path, rows, observed_until="2024-04-01", churn={"definition": "event", "events": ["cancel"]})


# ------------------------------------------------------------------------------- inactivity

def test_inactivity_labels_and_no_event_time(tmp_path):
    rows = [{"user_id": u, "ts": "2024-02-20T00:00:00Z", "event": "visit"} for u in ("at_as_of", "at_horizon", "none")]
    rows += [{"user_id": "at_as_of", "ts": "2024-03-01T00:00:00Z", "event": "visit"},   # inside: returned
             {"user_id": "at_horizon", "ts": "2024-03-15T00:00:00Z", "event": "visit"}]  # outside: churned
    ds = open_tiny(tmp_path, rows, observed_until="2024-04-01", horizon_days=14)
    df = _snapshot(ds)
    assert df[LABEL].to_dict() == {"at_as_of": 0, "at_horizon": 1, "none": 1}
    assert CHURN_TS not in df.columns
    with pytest.raises(ValueError, match="has no churn event time"):
        churn_definition(ds.config).event_times(ds, utc(AS_OF))
    assert label_window_days(ds.config) == 14


def test_churn_config_is_checked(tmp_path):
    from churnml.exceptions import ConfigError
    from churnml.config import load_dataset_config

    from conftest import write_dataset

    rows = [{"user_id": "a", "ts": "2024-02-20T00:00:00Z", "event": "visit"}]
    for churn, msg in ((
            {"definition": "event"}, "definition `event` needs `events`"),
            ({"definition": "subscription"}, "definition `subscription` needs a `subscriptions` source"),
            ({"definition": "inactivity", "events": ["cancel"]}, "`events` is only used by definition `event`")):
        path = write_dataset(tmp_path / msg[:5], rows, churn=churn)
        with pytest.raises(ConfigError, match=msg):
            load_dataset_config(path)
    # The bare name is accepted.
    path = write_dataset(tmp_path / "bare", rows, churn="inactivity")
    assert load_dataset_config(path).churn.definition == "inactivity"
