"""Every data-contract problem gives one clear line; nothing is dropped silently."""

from __future__ import annotations

import duckdb
import pytest

from churnml.config import load_dataset_config
from churnml.data import open_dataset
from churnml.exceptions import ConfigError, ContractError, DataNote, DataWarning
from churnml.features import build_snapshot

from conftest import TINY_CAMPAIGNS, TINY_EVENTS, TINY_USERS, open_tiny, write_dataset

UNTIL = {"observed_until": "2024-02-01"}


def _problems(tmp_path, events=TINY_EVENTS, users=TINY_USERS, campaigns=TINY_CAMPAIGNS, **kw):
    with pytest.raises(ContractError) as info:
        open_tiny(tmp_path, events, users, campaigns, **{**UNTIL, **kw})
    return [str(p) for p in info.value.problems]


def test_valid_log_passes(tmp_path):
    ds = open_tiny(tmp_path, TINY_EVENTS, TINY_USERS, TINY_CAMPAIGNS, **UNTIL)
    assert (ds.n_events, ds.n_users, ds.n_duplicates) == (7, 4, 0)


@pytest.mark.parametrize("table,column", [("events", "ts"), ("events", "event"), ("events", "user_id"),
                                          ("users", "signup_ts"), ("campaigns", "treated")])
def test_missing_required_column(tmp_path, table, column):
    data = {"events": TINY_EVENTS, "users": TINY_USERS, "campaigns": TINY_CAMPAIGNS}
    data[table] = [{k: v for k, v in r.items() if k != column} for r in data[table]]
    lines = _problems(tmp_path, **data)
    # A campaigns table needs `treated` or `channel`; this one has neither.
    either = ": give `treated` (true/false) or `channel` ('control' or a channel name)" if table == "campaigns" else ""
    assert lines == [f"{table}.csv: column '{column}': required column missing{either} "
                     f"(columns found: {', '.join(data[table][0])})"]


def test_empty_table(tmp_path):
    (tmp_path / "events.csv").parent.mkdir(exist_ok=True)
    cfg = write_dataset(tmp_path, TINY_EVENTS, TINY_USERS, **UNTIL)
    (tmp_path / "events.csv").write_text("user_id,ts,event\n")
    with pytest.raises(ContractError, match=r"^events.csv: table is empty \(no rows\)$"):
        open_dataset(load_dataset_config(cfg))


def test_missing_file(tmp_path):
    cfg = write_dataset(tmp_path, TINY_EVENTS, **UNTIL)
    (tmp_path / "events.csv").unlink()
    with pytest.raises(ContractError, match=r"^events.csv: file not found \(looked for .*events.csv\)$"):
        open_dataset(load_dataset_config(cfg))


def test_bad_values_each_one_line(tmp_path):
    events = TINY_EVENTS + [
        {"user_id": "u1", "ts": "yesterday", "event": "play", "item_id": 1},
        {"user_id": "", "ts": "2024-01-02T00:00:00Z", "event": "play", "item_id": 1},
        {"user_id": "u2", "ts": "2023-12-01T00:00:00Z", "event": "play", "item_id": 1},
        {"user_id": "u9", "ts": "2024-01-02T00:00:00Z", "event": "play", "item_id": 1},
        {"user_id": "u1", "ts": "2024-03-02T00:00:00Z", "event": "play", "item_id": 1},
        {"user_id": "u1", "ts": "2024-01-02T00:00:00Z", "event": "", "item_id": 1},
    ]
    campaigns = TINY_CAMPAIGNS + [
        {"user_id": "u1", "campaign_id": "c2", "sent_ts": "2024-01-03T00:00:00Z", "treated": "perhaps"},
        {"user_id": "ghost", "campaign_id": "c2", "sent_ts": "2024-01-03T00:00:00Z", "treated": True},
    ]
    lines = _problems(tmp_path, events=events, campaigns=campaigns)
    assert lines == [
        "events.csv: column 'ts': 1 unparsable timestamps (e.g. 'yesterday')",
        "events.csv: column 'user_id': 1 null or empty user ids",
        "events.csv: column 'event': 1 null or empty event names",
        "events.csv: column 'ts': 1 events at or after observed_until 2024-02-01T00:00:00+00:00 "
        "(e.g. '2024-03-02 00:00:00+00:00')",
        "events.csv: column 'user_id': 1 events of users missing from users.csv (e.g. 'u9')",
        "events.csv: column 'ts': 1 events before the user's signup_ts (e.g. 'u2 at 2023-12-01 00:00:00+00')",
        "campaigns.csv: column 'treated': 1 values that are not boolean (e.g. 'perhaps')",
        "campaigns.csv: column 'user_id': 1 campaign rows for unknown users (e.g. 'ghost')",
    ]


def test_missing_timestamps(tmp_path):
    events = TINY_EVENTS + [{"user_id": "u1", "ts": None, "event": "play", "item_id": 1}]
    users = TINY_USERS[:3] + [dict(TINY_USERS[3], signup_ts=None)]
    lines = _problems(tmp_path, events=events, users=users, campaigns=None)
    assert lines == ["events.csv: column 'ts': 1 missing timestamps",
                     "users.csv: column 'signup_ts': 1 missing timestamps"]
    lines = _problems(tmp_path / "pq", events=events, users=TINY_USERS, campaigns=None, fmt="parquet")
    assert lines == ["events.parquet: column 'ts': 1 missing timestamps"]


def test_mixed_timezones(tmp_path):
    events = [dict(TINY_EVENTS[0], ts="2024-01-01 10:00:00")] + TINY_EVENTS[1:]
    lines = _problems(tmp_path, events=events)
    assert lines == ["events.csv: column 'ts': 1 timestamps without a timezone mixed with 6 that have one "
                     "(mixed timezones; give every value an offset, or none for times in the dataset's timezone) "
                     "(e.g. '2024-01-01 10:00:00')"]


def test_offsets_are_converted_to_utc(tmp_path):
    events = [dict(r, ts=r["ts"].replace("T10:00:00Z", "T12:00:00+02:00")) for r in TINY_EVENTS]
    ds = open_tiny(tmp_path, events, TINY_USERS, **UNTIL)
    first = ds.events.order_by("ts").limit(1).to_pyarrow().to_pylist()[0]
    assert first["ts"].isoformat() == "2024-01-01T10:00:00+00:00"


def test_future_events_without_observed_until(tmp_path):
    events = TINY_EVENTS + [{"user_id": "u1", "ts": "2999-01-01T00:00:00Z", "event": "play", "item_id": 1}]
    with pytest.raises(ContractError, match=r"1 events in the future \(after now"):
        open_tiny(tmp_path, events, TINY_USERS)


def test_repeated_user_ids(tmp_path):
    lines = _problems(tmp_path, users=TINY_USERS + [TINY_USERS[0]], campaigns=None)
    assert lines == ["users.csv: column 'user_id': 1 repeated user ids (e.g. 'u1')"]


def test_numeric_treated_accepted(tmp_path):
    campaigns = [dict(c, treated=int(c["treated"])) for c in TINY_CAMPAIGNS]
    ds = open_tiny(tmp_path, TINY_EVENTS, TINY_USERS, campaigns, **UNTIL)
    assert ds.campaigns.treated.to_pyarrow().to_pylist() == [True, False]


def _arms(ds) -> list[tuple]:
    c = ds.campaigns.order_by(["campaign_id", "user_id"]).select("user_id", "treated", "channel")
    return [tuple(r.values()) for r in c.to_pyarrow().to_pylist()]


def _camp(user, cid, **arm):
    return {"user_id": user, "campaign_id": cid, "sent_ts": "2024-01-02T00:00:00Z", **arm}


def test_treated_alone_is_one_channel(tmp_path):
    ds = open_tiny(tmp_path, TINY_EVENTS, TINY_USERS, TINY_CAMPAIGNS, **UNTIL)
    assert _arms(ds) == [("u1", True, "treated"), ("u2", False, "control")]


def test_channel_alone_gives_the_arms(tmp_path):
    campaigns = [_camp("u1", "c1", channel="sms"), _camp("u2", "c1", channel=" Control "),
                 _camp("u3", "c1", channel="e-mail")]
    ds = open_tiny(tmp_path, TINY_EVENTS, TINY_USERS, campaigns, **UNTIL)
    assert _arms(ds) == [("u1", True, "sms"), ("u2", False, "control"), ("u3", True, "e-mail")]


def test_control_channel_is_configurable(tmp_path):
    campaigns = [_camp("u1", "c1", channel="push"), _camp("u2", "c1", channel="holdout")]
    ds = open_tiny(tmp_path, TINY_EVENTS, TINY_USERS, campaigns, control_channel="holdout", **UNTIL)
    assert _arms(ds) == [("u1", True, "push"), ("u2", False, "control")]


def test_treated_decides_when_both_columns_are_given(tmp_path):
    # The channel column may name the campaign's channel on control rows too (as older exports do).
    campaigns = [_camp("u1", "c1", treated=True, channel="push"), _camp("u2", "c1", treated=False, channel="push")]
    ds = open_tiny(tmp_path, TINY_EVENTS, TINY_USERS, campaigns, **UNTIL)
    assert _arms(ds) == [("u1", True, "push"), ("u2", False, "control")]


def test_arm_problems_get_one_line_each(tmp_path):
    both = [_camp("u1", "c1", treated=True, channel="control"), _camp("u2", "c1", treated=True, channel=None),
            _camp("u3", "c1", treated=False, channel="sms")]
    assert _problems(tmp_path / "both", campaigns=both) == [
        "campaigns.csv: column 'channel': 2 treated rows whose channel is missing or 'control' (e.g. 'control')"]
    alone = [_camp("u1", "c1", channel=""), _camp("u2", "c1", channel="sms")]
    assert _problems(tmp_path / "alone", campaigns=alone) == [
        "campaigns.csv: column 'channel': 1 rows without a channel (give 'control' for the control group)"]


def test_duplicates_counted_dropped_and_warned(tmp_path):
    events = TINY_EVENTS + TINY_EVENTS[:2] + TINY_EVENTS[:1]
    with pytest.warns(DataWarning, match="3 exact duplicate events dropped"):
        ds = open_tiny(tmp_path, events, TINY_USERS, **UNTIL)
    assert ds.n_duplicates == 3 and ds.n_events == len(TINY_EVENTS)
    assert ds.events.count().to_pyarrow().as_py() == len(TINY_EVENTS)


def test_duplicates_kept_when_configured(tmp_path):
    # u1's play and like of 2024-01-01 twice more, and the play once more: 3 extra copies.
    events = TINY_EVENTS + TINY_EVENTS[:2] + TINY_EVENTS[:1]
    with pytest.warns(DataNote, match="3 exact duplicate events kept as separate events"):
        ds = open_tiny(tmp_path, events, TINY_USERS, duplicates="keep", **UNTIL)
    assert ds.n_duplicates == 3 and ds.n_events == len(TINY_EVENTS) + 3
    rows = {r["user_id"]: r for r in build_snapshot(ds, "2024-01-06")[0].to_pylist()}
    # plays: 01-01 10:00 three times and 01-03; likes: 01-01 11:00 twice
    assert rows["u1"]["n_play_all"] == 4 and rows["u1"]["n_like_all"] == 2
    dropped = open_tiny(tmp_path / "drop", events, TINY_USERS, **UNTIL)
    rows = {r["user_id"]: r for r in build_snapshot(dropped, "2024-01-06")[0].to_pylist()}
    assert rows["u1"]["n_play_all"] == 2 and rows["u1"]["n_like_all"] == 1


def test_duplicates_are_judged_on_normalised_values(tmp_path):
    # The same instant written with two offsets is the same event; a different item is not.
    events = TINY_EVENTS + [dict(TINY_EVENTS[0], ts="2024-01-01T11:00:00+01:00"),
                            dict(TINY_EVENTS[1], item_id=99)]
    with pytest.warns(DataWarning, match="1 exact duplicate events dropped"):
        ds = open_tiny(tmp_path, events, TINY_USERS, **UNTIL)
    assert ds.n_duplicates == 1 and ds.n_events == len(TINY_EVENTS) + 1


def test_date_only_repeated_purchases_can_be_kept(tmp_path):
    # Two equal purchases on one date (date-only timestamps) are two purchases when kept.
    events = [{"user_id": "a", "ts": "2024-01-02", "event": "buy", "amount": 5.0}] * 2 + [
        {"user_id": "a", "ts": "2024-01-03", "event": "buy", "amount": 5.0}]
    with pytest.warns(DataNote):
        ds = open_tiny(tmp_path, events, duplicates="keep", sum_columns=["amount"], **UNTIL)
    row = build_snapshot(ds, "2024-01-04")[0].to_pylist()[0]
    assert row["n_buy_all"] == 3 and row["sum_amount_all"] == 15.0 and row["active_days_all"] == 2


def test_parquet_and_duckdb_sources_agree(tmp_path):
    ds_csv = open_tiny(tmp_path / "csv", TINY_EVENTS, TINY_USERS, **UNTIL)
    ds_pq = open_tiny(tmp_path / "pq", TINY_EVENTS, TINY_USERS, fmt="parquet", **UNTIL)
    db = tmp_path / "log.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute(f"CREATE TABLE ev AS SELECT * FROM read_parquet('{tmp_path / 'pq' / 'events.parquet'}')")
        con.execute(f"CREATE TABLE us AS SELECT * FROM read_parquet('{tmp_path / 'pq' / 'users.parquet'}')")
    cfg = tmp_path / "db.yaml"
    cfg.write_text(
        "sources:\n"
        f"  events: {{database: {db}, query: \"SELECT user_id, ts, event FROM ev WHERE event <> 'x'\"}}\n"
        f"  users: {{database: {db}, table: us}}\n"
        "observed_until: 2024-02-01\n"
    )
    ds_db = open_dataset(load_dataset_config(cfg))
    cols = ["user_id", "ts", "event"]
    sort = lambda ds: ds.events.select(*cols).order_by(cols).to_pyarrow()  # noqa: E731
    assert sort(ds_csv).equals(sort(ds_pq)) and sort(ds_pq).equals(sort(ds_db))


def test_column_mapping(tmp_path):
    events = [{"customer": r["user_id"], "when": r["ts"], "action": r["event"]} for r in TINY_EVENTS]
    cfg = write_dataset(tmp_path, events, **UNTIL)
    text = cfg.read_text().replace(
        "path: events.csv}", "path: events.csv, columns: {user_id: customer, ts: when, event: action}}")
    cfg.write_text(text)
    ds = open_dataset(load_dataset_config(cfg))
    assert ds.signup_inferred and ds.n_users == 3


@pytest.mark.parametrize("text,match", [
    ("sources: {}", r"sources.events: Field required"),
    ("sources: {events: {path: a.csv}}\nhorizon_days: -3", r"horizon_days: Input should be greater than 0"),
    ("sources: {events: {path: a.csv, table: t}}", r"must name exactly one of path, table or query"),
    ("sources: {events: {path: a.csv}}\nwindows: [1]", r"windows: unknown key"),
    ("- just a list", r"expected a mapping of settings, got list"),
])
def test_bad_config(tmp_path, text, match):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_dataset_config(cfg)


def test_shipped_job_config_matches_the_simulator(tmp_path):
    """features/config.yaml validates and describes what `churnml simulate` writes by default."""
    from pathlib import Path

    from churnml.jobs import simulation_dataset_config
    from churnml.simulator import SimulationConfig

    shipped = load_dataset_config(Path(__file__).parents[1] / "features" / "config.yaml")
    written = simulation_dataset_config(SimulationConfig(), tmp_path)
    (tmp_path / "sim.yaml").write_text(__import__("yaml").safe_dump(written))
    sim = load_dataset_config(tmp_path / "sim.yaml")
    assert shipped.snapshot_instants() == sim.snapshot_instants()
    same = ("event_types", "activity_events", "eligibility_days", "horizon_days", "feature_windows_days",
            "onboarding_days", "response_window_days", "distinct_counts", "observed_until")
    assert {k: getattr(shipped, k) for k in same} == {k: getattr(sim, k) for k in same}
    assert shipped.sources.events.path.endswith("data/sim/events.parquet")


def test_zero_byte_file(tmp_path):
    cfg = write_dataset(tmp_path, TINY_EVENTS, TINY_USERS, **UNTIL)
    (tmp_path / "events.csv").write_text("")
    with pytest.raises(ContractError, match=r"^events.csv: file is empty \(0 bytes\)$"):
        open_dataset(load_dataset_config(cfg))


def test_column_mapping_to_an_absent_column(tmp_path):
    # The mapping names a column the file lacks: it must not fall back on the file's own 'ts'.
    cfg = write_dataset(tmp_path, TINY_EVENTS, TINY_USERS, **UNTIL)
    doc = load_dataset_config(cfg).model_dump(mode="json", exclude_none=True)
    doc["sources"]["events"]["columns"] = {"ts": "event_time"}
    (tmp_path / "dataset.yaml").write_text(__import__("yaml").safe_dump(doc))
    with pytest.raises(ContractError) as info:
        open_dataset(load_dataset_config(tmp_path / "dataset.yaml"))
    assert [str(p) for p in info.value.problems] == [
        "events.csv: column 'event_time': named in 'columns' (as 'ts') but not in the table "
        "(columns found: user_id, ts, event, item_id)"]


def test_sum_column_must_exist_and_be_numeric(tmp_path):
    events = [{**r, "amount": "12.5"} for r in TINY_EVENTS]
    events[2] = {**events[2], "amount": "abc"}
    lines = _problems(tmp_path / "a", events, sum_columns=["amount"])
    assert lines == ["events.csv: column 'amount': 1 sum_columns needs numbers; values that are not "
                     "(e.g. 'abc')"]
    lines = _problems(tmp_path / "b", sum_columns=["amout"],
                      distinct_counts=[{"name": "dx", "column": "nosuch"}])
    assert lines == [
        "events.csv: column 'amout': named in sum_columns but not in the table "
        "(columns found: user_id, ts, event, item_id)",
        "events.csv: column 'nosuch': named in distinct_counts 'dx' but not in the table "
        "(columns found: user_id, ts, event, item_id)"]


def test_event_names_in_the_config_are_checked(tmp_path):
    lines = _problems(tmp_path / "a", activity_events=["plya"])
    assert lines == ["events.csv: column 'event': none of the activity_events ['plya'] occurs "
                     "(event types found: like, play)"]
    with pytest.warns(DataWarning) as record:
        ds = open_tiny(tmp_path / "b", TINY_EVENTS, TINY_USERS, TINY_CAMPAIGNS, **UNTIL,
                       activity_events=["play", "add_to_cart"], event_types=["play", "like", "veiw"])
    said = [str(w.message) for w in record]
    assert "events.csv: activity event 'add_to_cart' never occurs (event types found: like, play)" in said
    assert any("event type 'veiw' in event_types never occurs" in m for m in said)
    assert len(ds.warnings) == 2


def test_config_path_is_a_folder(tmp_path):
    with pytest.raises(ConfigError, match="is a folder; give the config file"):
        load_dataset_config(tmp_path)


def test_snapshot_range_must_be_ordered(tmp_path):
    cfg = write_dataset(tmp_path, TINY_EVENTS, TINY_USERS, **UNTIL,
                        snapshots={"start": "2024-04-01", "end": "2024-02-01", "every_days": 7})
    with pytest.raises(ConfigError, match=r"dataset.yaml: snapshots: start 2024-04-01 is after end 2024-02-01$"):
        load_dataset_config(cfg)
