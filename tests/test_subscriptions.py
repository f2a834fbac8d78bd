"""The subscriptions source: reading, contract checks (one line each) and point-in-time features.

Feature values are worked out by hand in the comments next to each user.
"""

from __future__ import annotations

import math
import warnings

import duckdb
import pandas as pd
import pytest

from churnml.config import load_dataset_config
from churnml.data import open_dataset
from churnml.exceptions import ContractError, DataWarning
from churnml.features import build_snapshot

from conftest import open_tiny, write_dataset

UNTIL = "2024-04-01"
EVENTS = [{"user_id": u, "ts": "2024-02-25T12:00:00Z", "event": "visit"} for u in "ABCDEF"]
USERS = [{"user_id": u, "signup_ts": "2023-11-01T00:00:00Z"} for u in "ABCDEF"]


def _row(user, start, end, plan="monthly", price=9.99, period=30, discount=0.0):
    return {"user_id": user, "start": start, "end": end, "plan": plan, "price": price,
            "period_days": period, "discount": discount}


SUBS = [
    # A: one row per billing period. At Mar 1 the second row (ends exactly at as_of) is running.
    _row("A", "2024-01-01T00:00:00Z", "2024-01-31T00:00:00Z", discount=0.5),
    _row("A", "2024-01-31T00:00:00Z", "2024-03-01T00:00:00Z"),
    _row("A", "2024-03-01T00:00:00Z", "2024-03-31T00:00:00Z", price=12.99),   # not yet started
    # B: one row for the whole subscription, weekly, renewals implicit.
    _row("B", "2023-12-02T00:00:00Z", None, plan="weekly", price=2.99, period=7),
    # C: lapsed 19 days (more than the 3-day grace), subscribed again at a lower price.
    _row("C", "2023-12-01T00:00:00Z", "2024-01-01T00:00:00Z", period=31),
    _row("C", "2024-01-20T00:00:00Z", None, price=7.99, period=31),
    # D: ended before as_of.
    _row("D", "2024-01-01T00:00:00Z", "2024-02-10T00:00:00Z"),
    # F: running with an end after as_of (not known at as_of).
    _row("F", "2024-02-01T00:00:00Z", "2024-03-20T00:00:00Z"),
    # E has no subscription.
]

EXPECTED = {
    # A: spell from Jan 1 (60 days); renewals: 2 rows - 1, no boundary inside a row; the running row
    # started Jan 31, 30 days ago, period 30: renews now (0 days); terms last changed Jan 31 (discount).
    "A": dict(sub_covered=1, sub_tenure_days=60, sub_days_since_end=None, sub_spells=1, sub_renewals=1,
              sub_days_to_renewal=0, sub_period_days=30, sub_plan="monthly", sub_price=9.99, sub_discount=0,
              sub_discounted_rows=1, sub_days_since_change=30),
    # B: 90 days; ceil(90 / 7) - 1 = 12 implicit renewals; next boundary at 13 * 7 = 91 days: 1 day.
    "B": dict(sub_covered=1, sub_tenure_days=90, sub_days_since_end=None, sub_spells=1, sub_renewals=12,
              sub_days_to_renewal=1, sub_period_days=7, sub_plan="weekly", sub_price=2.99, sub_discount=0,
              sub_discounted_rows=0, sub_days_since_change=90),
    # C: second spell from Jan 20 (41 days); ceil(41 / 31) - 1 = 1 renewal; next at 62: 21 days.
    "C": dict(sub_covered=1, sub_tenure_days=41, sub_days_since_end=None, sub_spells=2, sub_renewals=1,
              sub_days_to_renewal=21, sub_period_days=31, sub_plan="monthly", sub_price=7.99, sub_discount=0,
              sub_discounted_rows=0, sub_days_since_change=41),
    # D: ended Feb 10 (20 days ago) after 40 days: ceil(40 / 30) - 1 = 1 renewal; no next renewal.
    "D": dict(sub_covered=0, sub_tenure_days=60, sub_days_since_end=20, sub_spells=1, sub_renewals=1,
              sub_days_to_renewal=None, sub_period_days=30, sub_plan="monthly", sub_price=9.99, sub_discount=0,
              sub_discounted_rows=0, sub_days_since_change=60),
    # E: never subscribed.
    "E": dict(sub_covered=0, sub_tenure_days=None, sub_days_since_end=None, sub_spells=0, sub_renewals=None,
              sub_days_to_renewal=None, sub_period_days=None, sub_plan=None, sub_price=None, sub_discount=None,
              sub_discounted_rows=0, sub_days_since_change=None),
    # F: started Feb 1 (29 days); its Mar 20 end is not known yet; next boundary at 30: 1 day.
    "F": dict(sub_covered=1, sub_tenure_days=29, sub_days_since_end=None, sub_spells=1, sub_renewals=0,
              sub_days_to_renewal=1, sub_period_days=30, sub_plan="monthly", sub_price=9.99, sub_discount=0,
              sub_discounted_rows=0, sub_days_since_change=29),
}


def _same(a, b) -> bool:
    if b is None:
        return a is None or (isinstance(a, float) and math.isnan(a))
    if isinstance(b, str):
        return a == b
    return math.isclose(float(a), b, abs_tol=1e-9)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_subscription_features_by_hand(tmp_path, fmt):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # no overlap here: no warning either
        ds = open_tiny(tmp_path, EVENTS, USERS, subscriptions=SUBS, fmt=fmt, observed_until=UNTIL,
                       churn={"definition": "inactivity"})
    table, fs = build_snapshot(ds, "2024-03-01")
    df = table.to_pandas().set_index("user_id")
    assert [f.name for f in fs.features if f.family == "subscription"] == list(EXPECTED["A"])
    got = {u: {k: df.loc[u, k] for k in EXPECTED[u]} for u in EXPECTED}
    wrong = {(u, k): (got[u][k], v) for u in EXPECTED for k, v in EXPECTED[u].items() if not _same(got[u][k], v)}
    assert not wrong


def test_only_the_columns_given_make_features(tmp_path):
    subs = [{"user_id": "A", "start": "2024-01-01T00:00:00Z", "end": None}]
    ds = open_tiny(tmp_path, EVENTS, USERS, subscriptions=subs, observed_until=UNTIL)
    table, fs = build_snapshot(ds, "2024-03-01")
    names = [f.name for f in fs.features if f.family == "subscription"]
    assert names == ["sub_covered", "sub_tenure_days", "sub_days_since_end", "sub_spells", "sub_renewals",
                     "sub_days_to_renewal"]
    row = table.to_pandas().set_index("user_id").loc["A"]
    assert (row.sub_tenure_days, row.sub_renewals) == (60, 0) and math.isnan(row.sub_days_to_renewal)


# ------------------------------------------------------------------------------------ contract

def _problems(tmp_path, subs, users=USERS, **kw):
    with pytest.raises(ContractError) as info:
        open_tiny(tmp_path, EVENTS, users, subscriptions=subs, observed_until=UNTIL, **kw)
    return [str(p) for p in info.value.problems]


def test_bad_rows_each_one_line(tmp_path):
    subs = [
        _row("A", "2024-01-01T00:00:00Z", "2023-12-01T00:00:00Z"),           # end before start
        _row("B", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"),           # end == start: empty
        _row("ghost", "2024-01-01T00:00:00Z", None),                         # unknown user
        _row("C", "2023-10-01T00:00:00Z", None),                             # before signup
        _row("D", "2024-04-02T00:00:00Z", None),                             # after observed_until
        _row("E", "not a date", None),                                       # bad start
        _row("E", "2024-01-01T00:00:00Z", "soon"),                           # bad end
        _row("F", "2024-01-01T00:00:00Z", None, price=-1, period=0, discount="half"),
        _row("F", "2024-02-01T00:00:00Z", None, price="free"),
    ]
    lines = _problems(tmp_path, subs)
    expected = [
        "subscriptions.csv: column 'start': 1 unparsable timestamps (e.g. 'not a date')",
        "subscriptions.csv: column 'end': 1 unparsable timestamps (e.g. 'soon')",
        "subscriptions.csv: column 'price': 1 values that are not numbers (e.g. 'free')",
        "subscriptions.csv: column 'price': 1 values that are not non-negative (e.g. '-1')",
        "subscriptions.csv: column 'period_days': 1 values that are not positive (e.g. '0')",
        "subscriptions.csv: column 'discount': 1 values that are not numbers (e.g. 'half')",
        "subscriptions.csv: column 'end': 2 rows whose end is not after their start",
        "subscriptions.csv: column 'start': 1 subscriptions starting at or after observed_until",
        "subscriptions.csv: column 'user_id': 1 subscription rows of users missing from users.csv (e.g. 'ghost')",
        "subscriptions.csv: column 'start': 1 subscriptions starting before the user's signup_ts",
    ]
    for want in expected:
        assert any(line.startswith(want) for line in lines), (want, lines)
    assert len(lines) == len(expected)
    assert all("\n" not in line for line in lines)


def test_validate_command_exits_2_with_one_line_each(tmp_path):
    from typer.testing import CliRunner

    from churnml.cli import app

    cfg = write_dataset(tmp_path, EVENTS, USERS, subscriptions=[_row("ghost", "2024-01-01T00:00:00Z", None),
                                                                _row("A", "2024-01-01T00:00:00Z", "x")],
                        observed_until=UNTIL)
    res = CliRunner().invoke(app, ["validate", "-c", str(cfg)])
    assert res.exit_code == 2
    assert "users missing from users.csv" in res.output and "'end': 1 unparsable timestamps" in res.output
    assert "Traceback" not in res.output


def test_missing_required_column_and_empty_end_is_running(tmp_path):
    lines = _problems(tmp_path / "a", [{"user_id": "A", "start": "2024-01-01T00:00:00Z"}])
    assert lines == ["subscriptions.csv: column 'end': required column missing (columns found: user_id, start)"]
    ds = open_tiny(tmp_path / "b", EVENTS, USERS, subscriptions=[_row("A", "2024-01-01T00:00:00Z", "")],
                   observed_until=UNTIL)
    assert ds.subscriptions.end.isnull().sum().to_pyarrow().as_py() == 1


def test_overlapping_rows_are_a_warning(tmp_path):
    subs = [_row("A", "2024-01-01T00:00:00Z", "2024-02-10T00:00:00Z"),
            _row("A", "2024-02-01T00:00:00Z", None, plan="annual")]
    with pytest.warns(DataWarning, match=r"subscriptions.csv: 1 subscription rows start before an earlier row "
                                         r"of the same user ends \(e.g. 'A from 2024-02-01"):
        ds = open_tiny(tmp_path, EVENTS, USERS, subscriptions=subs, observed_until=UNTIL)
    table, _ = build_snapshot(ds, "2024-03-01")
    a = table.to_pandas().set_index("user_id").loc["A"]
    assert (a.sub_covered, a.sub_spells, a.sub_plan, a.sub_tenure_days) == (1, 1, "annual", 60)


def test_without_users_table_subscribers_are_users(tmp_path):
    # "Z" has a subscription but no event: a user all the same, signed up at the subscription's start.
    subs = [_row("A", "2024-01-01T00:00:00Z", None), _row("Z", "2023-12-15T00:00:00Z", None)]
    ds = open_tiny(tmp_path, EVENTS, None, subscriptions=subs, churn="subscription",
                   observed_until=UNTIL)
    users = ds.users.to_pandas().set_index("user_id")
    assert users.loc["Z", "signup_ts"] == pd.Timestamp("2023-12-15", tz="UTC")
    assert users.loc["A", "signup_ts"] == pd.Timestamp("2024-01-01", tz="UTC")   # before its first event
    table, _ = build_snapshot(ds, "2024-03-01")
    assert table.column("user_id").to_pylist() == ["A", "Z"]


def test_observed_until_defaults_past_the_latest_start(tmp_path):
    subs = [_row("A", "2024-01-01T00:00:00Z", None), _row("B", "2024-02-28T00:00:00Z", None)]
    ds = open_tiny(tmp_path, EVENTS, USERS, subscriptions=subs)
    assert ds.observed_until == pd.Timestamp("2024-02-28T00:00:00.000001", tz="UTC").to_pydatetime()


def test_duckdb_table_and_query_sources(tmp_path):
    open_tiny(tmp_path / "pq", EVENTS, USERS, subscriptions=SUBS, fmt="parquet", observed_until=UNTIL)
    db = tmp_path / "app.duckdb"
    with duckdb.connect(str(db)) as con:
        for name in ("events", "users", "subscriptions"):
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM read_parquet('{tmp_path / 'pq' / f'{name}.parquet'}')")
        con.execute("CREATE TABLE subs2 AS SELECT user_id AS customer, start AS began, \"end\" AS stopped, plan "
                    "FROM subscriptions")
    for i, src in enumerate((
            f"{{database: {db}, table: subscriptions}}",
            f"{{database: {db}, query: \"SELECT * FROM subscriptions WHERE user_id <> 'B'\"}}",
            f"{{database: {db}, table: subs2, columns: {{user_id: customer, start: began, end: stopped}}}}")):
        cfg = tmp_path / f"db{i}.yaml"
        cfg.write_text(f"sources:\n  events: {{database: {db}, table: events}}\n  users: {{database: {db}, table: users}}\n"
                       f"  subscriptions: {src}\nobserved_until: {UNTIL}\nchurn: subscription\n")
        ds = open_dataset(load_dataset_config(cfg))
        table, _ = build_snapshot(ds, "2024-03-01")
        covered = ["A", "C", "F"] + ([] if i == 1 else ["B"])
        assert sorted(table.column("user_id").to_pylist()) == sorted(covered)


# ------------------------------------------------------------------------------------ retention

def test_subscription_retention_by_start_cohort(tmp_path):
    from churnml.retention_subscriptions import subscription_retention

    subs = [
        _row("s1", "2024-01-01T00:00:00Z", "2024-01-20T00:00:00Z"),   # 19 days: gone by day 30
        _row("s2", "2024-01-10T00:00:00Z", "2024-02-15T00:00:00Z"),   # 36 days: day 30 yes, day 60 no
        _row("s3", "2024-01-15T00:00:00Z", None),                     # running: both
        _row("s4", "2024-01-20T00:00:00Z", "2024-02-10T00:00:00Z"),   # renewed 2 days late (grace 3): both
        _row("s4", "2024-02-12T00:00:00Z", None),
        _row("s5", "2024-05-10T00:00:00Z", None),                     # May 10 + 30 + 3 > Jun 1: not observed
        _row("s6", "2024-02-05T00:00:00Z", "2024-02-25T00:00:00Z"),   # back after 4 days (> grace): first spell 20 days
        _row("s6", "2024-03-01T00:00:00Z", None),
        _row("s7", "2024-02-01T00:00:00Z", "2024-03-02T00:00:00Z"),   # ends exactly at day 30: not covered then
    ]
    users = [{"user_id": u, "signup_ts": "2023-12-01T00:00:00Z"} for u in sorted({r["user_id"] for r in subs})]
    events = [{"user_id": u["user_id"], "ts": "2024-05-20T00:00:00Z", "event": "visit"} for u in users]
    ds = open_tiny(tmp_path, events, users, subscriptions=subs, observed_until="2024-06-01",
                   churn={"definition": "subscription", "grace_days": 3})
    t = subscription_retention(ds, period="month", days=(30, 60))
    got = {(str(r.cohort), r.day): (r.cohort_size, r.eligible, r.retained_nday) for r in t.itertuples()}
    assert got == {("2024-01-01", 30): (4, 4, 3), ("2024-01-01", 60): (4, 4, 2),
                   ("2024-02-01", 30): (2, 2, 0), ("2024-02-01", 60): (2, 2, 0),
                   ("2024-05-01", 30): (1, 0, 0), ("2024-05-01", 60): (1, 0, 0)}
    may = t[t["cohort"].astype(str) == "2024-05-01"]
    assert may["rate_nday"].isna().all() and may["ci_low"].isna().all() and not may["complete"].any()
    jan30 = t.iloc[0]
    assert jan30.rate_nday == 0.75 and jan30.ci_low < 0.75 < jan30.ci_high and jan30.complete

    # The retention job puts it in the report and the tables, first among the headlines for this definition.
    from churnml.jobs import retention_job

    res = retention_job(ds.config, tmp_path / "out", period="month", dataset=ds)
    html = res.report_path.read_text()
    assert "Subscription retention by start cohort" in html
    # 30 days: 3 of 6 observed subscribers (Jan 3 of 4, Feb 0 of 2); 90 days: Jan 2 of 4, Feb 0 of 2.
    assert res.headlines[0] == ("Of all subscribers, these shares were still covered by their first "
                                "subscription: 50% after 30 days, 33% after 90 days (a gap of up to 3 days "
                                "counts as covered).")
    assert "subscription_retention" in res.tables and res.tables["subscription_retention"].exists()
