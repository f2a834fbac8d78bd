"""Windows are ``[as_of - w days, as_of)`` and days are calendar dates in the dataset's time zone.

Every expected value is worked out by hand in the comments.
"""

from __future__ import annotations

import datetime as dt

import pytest

from churnml.config import load_dataset_config
from churnml.exceptions import ContractError
from churnml.features import build_snapshot

from conftest import open_tiny, write_dataset


def _rows(ds, as_of, **kw):
    table, _ = build_snapshot(ds, as_of, **kw)
    return {r["user_id"]: r for r in table.to_pylist()}


def test_date_only_data_a_week_is_seven_dates(tmp_path):
    # One play a day at 00:00, 2024-01-01 .. 2024-01-10; as_of 2024-01-08 00:00.
    events = [{"user_id": "a", "ts": f"2024-01-{d:02d}", "event": "play"} for d in range(1, 11)]
    ds = open_tiny(tmp_path, events, observed_until="2024-02-01")
    a = _rows(ds, "2024-01-08")["a"]
    # [01-01, 01-08): the 7 dates 01-01 .. 01-07, including the event exactly 7 days before.
    assert a["n_play_7d"] == 7 and a["active_days_7d"] == 7
    # [01-07, 01-08): one date. [2023-12-25, 01-08): all 7 events so far.
    assert a["n_play_1d"] == 1 and a["active_days_1d"] == 1
    assert a["n_play_14d"] == 7 and a["active_days_all"] == 7
    # the last event is one day before; the event at as_of itself is not seen
    assert a["days_since_last_activity"] == 1.0 and a["n_play_all"] == 7
    # trend: last 7 days 7 events, the 7 before none -> ln(8 / 1)
    assert a["n_events_prev_7d"] == 0
    assert a["gap_mean_days"] == 1.0 and a["gap_max_days"] == 1.0


def test_event_exactly_w_days_before_is_inside(tmp_path):
    # as_of 2024-01-08 12:00. Exactly 7 days before (01-01 12:00): inside; one second earlier: outside.
    events = [
        {"user_id": "a", "ts": "2024-01-01T11:59:59Z", "event": "play"},
        {"user_id": "a", "ts": "2024-01-01T12:00:00Z", "event": "play"},
        {"user_id": "a", "ts": "2024-01-08T11:00:00Z", "event": "like"},
        {"user_id": "a", "ts": "2024-01-08T12:00:00Z", "event": "like"},  # at as_of: not seen
    ]
    ds = open_tiny(tmp_path, events, observed_until="2024-02-01")
    a = _rows(ds, "2024-01-08T12:00")["a"]
    assert a["n_play_7d"] == 1 and a["n_like_7d"] == 1 and a["n_events_7d"] == 2
    # the events in the window fall on the dates 01-01 and 01-08
    assert a["active_days_7d"] == 2
    # [01-07 12:00, 01-08 12:00): the like only, on one date
    assert a["n_events_1d"] == 1 and a["active_days_1d"] == 1
    # all history: two dates (01-01 twice, 01-08)
    assert a["active_days_all"] == 2 and a["gap_max_days"] == 7
    assert a["days_since_last_play"] == 7.0  # 01-01 12:00 -> 01-08 12:00
    assert a["days_since_last_activity"] == pytest.approx(1 / 24)


def test_eligibility_uses_the_same_window(tmp_path):
    # eligibility_days 30: active in [as_of - 30 days, as_of). Exactly 30 days before is in.
    events = [{"user_id": "in", "ts": "2024-01-01T00:00:00Z", "event": "x"},
              {"user_id": "out", "ts": "2023-12-31T23:59:59Z", "event": "x"}]
    ds = open_tiny(tmp_path, events, eligibility_days=30, observed_until="2024-03-01")
    assert set(_rows(ds, "2024-01-31")) == {"in"}


def test_days_are_calendar_dates_in_the_time_zone(tmp_path):
    # Two plays, 3 hours apart: 2024-01-02 03:00 and 06:00 UTC, which in New York (UTC-5) are
    # 2024-01-01 22:00 and 2024-01-02 01:00: one UTC date, two New York dates.
    events = [{"user_id": "a", "ts": "2024-01-02T03:00:00Z", "event": "play"},
              {"user_id": "a", "ts": "2024-01-02T06:00:00Z", "event": "play"}]
    utc = _rows(open_tiny(tmp_path / "utc", events, observed_until="2024-02-01"), "2024-01-03")["a"]
    assert utc["active_days_all"] == 1 and utc["gap_mean_days"] is None
    ny = open_tiny(tmp_path / "ny", events, observed_until="2024-02-01", timezone="America/New_York")
    a = _rows(ny, "2024-01-03")["a"]  # midnight in New York = 05:00 UTC
    assert a["as_of"] == dt.datetime(2024, 1, 3, 5, tzinfo=dt.UTC)
    assert a["active_days_all"] == 2 and a["gap_mean_days"] == 1.0
    # [01-02 00:00, 01-03 00:00) New York time holds the 01:00 play only
    assert a["n_play_1d"] == 1 and a["active_days_1d"] == 1
    assert a["days_since_last_activity"] == pytest.approx(23 / 24)


def test_naive_timestamps_are_wall_clock_time_of_the_zone(tmp_path):
    # The same two plays written as New York wall-clock times without an offset.
    naive = [{"user_id": "a", "ts": "2024-01-01 22:00:00", "event": "play"},
             {"user_id": "a", "ts": "2024-01-02 01:00:00", "event": "play"}]
    aware = [{"user_id": "a", "ts": "2024-01-02T03:00:00Z", "event": "play"},
             {"user_id": "a", "ts": "2024-01-02T06:00:00Z", "event": "play"}]
    kw = {"observed_until": "2024-02-01", "timezone": "America/New_York"}
    t1, _ = build_snapshot(open_tiny(tmp_path / "naive", naive, **kw), "2024-01-03")
    t2, _ = build_snapshot(open_tiny(tmp_path / "aware", aware, **kw), "2024-01-03")
    assert t1.equals(t2)
    ds = open_tiny(tmp_path / "naive2", naive, **kw)
    first = ds.events.order_by("ts").limit(1).to_pyarrow().column("ts")[0].as_py()
    assert first == dt.datetime(2024, 1, 2, 3, tzinfo=dt.UTC)


def test_a_week_across_daylight_saving_is_seven_calendar_dates(tmp_path):
    # New York moves to summer time on 2024-03-10. as_of 2024-03-12 00:00 local = 04:00 UTC; its
    # 7-day window starts 2024-03-05 00:00 local = 05:00 UTC (winter time), 6 days 23 hours earlier.
    events = [{"user_id": "a", "ts": "2024-03-05T04:59:59Z", "event": "play"},  # 03-04 23:59:59 local
              {"user_id": "a", "ts": "2024-03-05T05:00:00Z", "event": "like"},  # 03-05 00:00 local
              {"user_id": "a", "ts": "2024-03-11T12:00:00Z", "event": "like"}]
    ds = open_tiny(tmp_path, events, observed_until="2024-04-01", timezone="America/New_York")
    a = _rows(ds, "2024-03-12")["a"]
    assert a["n_like_7d"] == 2 and a["n_play_7d"] == 0 and a["active_days_7d"] == 2
    assert a["days_since_last_play"] == pytest.approx(7 + 1 / 86_400)
    assert a["days_since_first_event"] == pytest.approx(7 + 1 / 86_400)
    # weekly snapshots of the config stay at local midnight across the change
    cfg = load_dataset_config(write_dataset(
        tmp_path / "rule", events, observed_until="2024-04-01", timezone="America/New_York",
        snapshots={"start": "2024-03-05", "end": "2024-03-19", "every_days": 7}))
    assert [s.hour for s in cfg.snapshot_instants()] == [5, 4, 4]


def test_ambiguous_local_as_of_is_refused(tmp_path):
    events = [{"user_id": "a", "ts": "2024-11-01T12:00:00Z", "event": "play"}]
    ds = open_tiny(tmp_path, events, observed_until="2024-12-01", timezone="America/New_York")
    # 2024-11-03 01:30 happens twice in New York (clocks go back at 02:00)
    with pytest.raises(ContractError, match="daylight saving repeats or skips"):
        build_snapshot(ds, "2024-11-03T05:30:00+00:00")


def test_onboarding_is_the_first_calendar_dates_from_signup(tmp_path):
    # signup 2024-01-01 23:00: onboarding covers the dates 01-01 .. 01-07 (7 dates), so the play on
    # 01-08 00:30 is outside it although it is only 6 days 1.5 hours after the signup.
    users = [{"user_id": "a", "signup_ts": "2024-01-01T23:00:00Z"}]
    events = [{"user_id": "a", "ts": "2024-01-01T23:30:00Z", "event": "play"},
              {"user_id": "a", "ts": "2024-01-07T23:30:00Z", "event": "play"},
              {"user_id": "a", "ts": "2024-01-08T00:30:00Z", "event": "play"}]
    ds = open_tiny(tmp_path, events, users, observed_until="2024-02-01")
    a = _rows(ds, "2024-01-10")["a"]
    assert a["onboard_n_play_7d"] == 2 and a["onboard_active_days_7d"] == 2
    assert a["tenure_days"] == pytest.approx(8 + 1 / 24)
    # before the onboarding ends, only what happened before as_of counts
    early = _rows(ds, "2024-01-05")["a"]
    assert early["onboard_n_play_7d"] == 1 and early["onboard_active_days_7d"] == 1


def test_labels_use_the_same_window(tmp_path):
    # horizon 3 days from 2024-01-10: [01-10, 01-13). A return exactly at 01-13 00:00 is too late.
    events = [{"user_id": "a", "ts": "2024-01-09T00:00:00Z", "event": "x"},
              {"user_id": "a", "ts": "2024-01-13T00:00:00Z", "event": "x"},
              {"user_id": "b", "ts": "2024-01-09T00:00:00Z", "event": "x"},
              {"user_id": "b", "ts": "2024-01-12T23:59:59Z", "event": "x"}]
    ds = open_tiny(tmp_path, events, horizon_days=3, observed_until="2024-02-01")
    rows = _rows(ds, "2024-01-10", labels=True)
    assert rows["a"]["churned"] == 1 and rows["b"]["churned"] == 0


def test_date_only_column_is_read_as_dates(tmp_path):
    # A Parquet DATE column: each value is midnight of that date in the dataset's zone.
    import pyarrow as pa
    import pyarrow.parquet as pq

    cfg = write_dataset(tmp_path, [{"user_id": "a", "ts": "2024-01-01", "event": "buy"}], fmt="parquet",
                        observed_until="2024-02-01")
    pq.write_table(pa.table({"user_id": ["a", "a"], "ts": pa.array([dt.date(2024, 1, 1), dt.date(2024, 1, 7)]),
                             "event": ["buy", "buy"]}), tmp_path / "events.parquet")
    from churnml.data import open_dataset

    ds = open_dataset(load_dataset_config(cfg))
    assert ds.wall.events.schema()["_raw_ts"].is_date() if "_raw_ts" in ds.wall.events.columns else True
    a = _rows(ds, "2024-01-08")["a"]
    assert a["n_buy_7d"] == 2 and a["active_days_7d"] == 2 and a["days_since_last_buy"] == 1.0


def _write_typed(folder, kind: str, zone: str = "UTC"):
    """The tiny log with every timestamp stored as ``kind``; instants equal across kinds (``zone`` = naive's zone)."""
    import zoneinfo

    import pyarrow as pa
    import pyarrow.parquet as pq

    from conftest import TINY_CAMPAIGNS, TINY_EVENTS, TINY_USERS

    folder.mkdir(parents=True, exist_ok=True)
    z = dt.UTC if zone == "UTC" else zoneinfo.ZoneInfo(zone)
    sources = {}
    for name, rows, col in (("events", TINY_EVENTS, "ts"), ("users", TINY_USERS, "signup_ts"),
                            ("campaigns", TINY_CAMPAIGNS, "sent_ts")):
        inst = [dt.datetime.fromisoformat(r[col]) for r in rows]
        wall = [t.astimezone(z).replace(tzinfo=None) for t in inst]
        us = [int((t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) / dt.timedelta(microseconds=1)) for t in inst]
        values = {
            "naive": pa.array(wall, pa.timestamp("us")),
            "aware": pa.array(inst, pa.timestamp("us", tz="UTC")),
            "aware_tokyo": pa.array(inst, pa.timestamp("ms", tz="Asia/Tokyo")),
            "text_offset": pa.array([t.astimezone(dt.timezone(dt.timedelta(hours=-3))).isoformat() for t in inst]),
            "text_naive": pa.array([w.isoformat(sep=" ") for w in wall]),
            "epoch_s": pa.array([u // 1_000_000 for u in us], pa.int64()),
            "epoch_ms": pa.array([u // 1_000 for u in us], pa.int64()),
            "epoch_us": pa.array(us, pa.int64()),
            "epoch_ns": pa.array([u * 1_000 for u in us], pa.int64()),
        }[kind]
        others = {k: pa.array([r[k] for r in rows]) for k in rows[0] if k != col}
        pq.write_table(pa.table({**others, col: values}), folder / f"{name}.parquet")
        sources[name] = {"path": f"{name}.parquet"}
    import yaml

    cfg = folder / "dataset.yaml"
    cfg.write_text(yaml.safe_dump({"name": "t", "sources": sources, "observed_until": "2024-01-12T00:00:00+00:00",
                                   "timezone": zone, "response_window_days": 2, "horizon_days": 3}))
    return cfg


_KINDS = ("naive", "aware", "aware_tokyo", "text_offset", "text_naive", "epoch_s", "epoch_ms", "epoch_us", "epoch_ns")


@pytest.mark.parametrize("zone,kinds", [("UTC", _KINDS), ("Europe/Berlin", ("naive", "aware", "text_naive", "epoch_ms"))])
def test_same_features_from_every_timestamp_type(tmp_path, zone, kinds):
    from churnml.data import open_dataset

    tables = {}
    for kind in kinds:
        ds = open_dataset(load_dataset_config(_write_typed(tmp_path / kind, kind, zone)))
        tables[kind], _ = build_snapshot(ds, dt.datetime(2024, 1, 6, tzinfo=dt.UTC), labels=True)
    ref = tables["aware"]
    assert ref.num_rows == 3
    for kind, t in tables.items():
        assert t.equals(ref), f"{kind} timestamps give other features than tz-aware ones"


def test_label_horizon_across_daylight_saving_is_calendar_days(tmp_path):
    # New York moves to summer time on 2024-03-10. as_of 2024-03-05 00:00 local = 05:00 UTC; a 7-day
    # horizon ends 2024-03-12 00:00 local = 04:00 UTC, 6 days 23 hours later.
    events = [{"user_id": "a", "ts": "2024-03-04T12:00:00Z", "event": "x"},
              {"user_id": "a", "ts": "2024-03-12T04:30:00Z", "event": "x"},  # 03-12 00:30 local: too late
              {"user_id": "b", "ts": "2024-03-04T12:00:00Z", "event": "x"},
              {"user_id": "b", "ts": "2024-03-12T03:59:59Z", "event": "x"}]  # 03-11 23:59:59 local: inside
    ds = open_tiny(tmp_path, events, horizon_days=7, observed_until="2024-04-01", timezone="America/New_York")
    as_of = dt.datetime(2024, 3, 5, 5, tzinfo=dt.UTC)
    rows = _rows(ds, "2024-03-05", labels=True)
    assert rows["a"]["churned"] == 1 and rows["b"]["churned"] == 0
    # the churn definitions' own labels (the gate, the simulator checks) follow the same rule
    from churnml.features import churn_labels

    users = ds.events.select("user_id").distinct()
    lab = {r["user_id"]: r["churned"] for r in churn_labels(ds, as_of, users).to_pyarrow().to_pylist()}
    assert lab == {"a": 1, "b": 0}
    # and so do the hazard model's churn times: a churns at as_of (no activity in the 7 calendar days);
    # b's first 7-day spell starts at its last event (nothing follows it until observed_until)
    from churnml.features.churn_time import churn_times_frame

    times = churn_times_frame(ds, [as_of]).set_index("user_id")["churn_ts"]
    assert times["a"] == as_of
    assert times["b"] == dt.datetime(2024, 3, 12, 3, 59, 59, tzinfo=dt.UTC)


def test_subscription_times_are_wall_clock_times_of_the_zone(tmp_path):
    # Tokyo is UTC+9. The row ends 2024-01-10 00:00 local = 2024-01-09 15:00 UTC (read as UTC it would
    # end 9 hours later). At 2024-01-10 05:00 local the end has passed: not covered, not in the
    # subscription population; at 2024-01-09 23:00 local it is still running.
    events = [{"user_id": "e", "ts": "2024-01-02 10:00:00", "event": "play"}]
    subs = [{"user_id": "s", "start": "2024-01-01 00:00:00", "end": "2024-01-10 00:00:00"}]
    ds = open_tiny(tmp_path, events, subscriptions=subs, horizon_days=3, observed_until="2024-02-01",
                   timezone="Asia/Tokyo", churn={"definition": "subscription", "grace_days": 2})
    assert ds.subscriptions.to_pyarrow().column("end").to_pylist()[0] == dt.datetime(2024, 1, 9, 15, tzinfo=dt.UTC)
    late = _rows(ds, "2024-01-10T05:00")
    assert "s" not in late
    early = _rows(ds, "2024-01-09T23:00", labels=True)
    # covered, and the coverage ends one hour later, inside the horizon, with no renewal: churned
    assert early["s"]["sub_covered"] == 1 and early["s"]["churned"] == 1
    assert early["s"]["churn_ts"] == dt.datetime(2024, 1, 9, 15, tzinfo=dt.UTC)
    # users are inferred from events and subscription starts: s signed up at its start (local midnight)
    assert early["s"]["tenure_days"] == pytest.approx(8 + 23 / 24)
