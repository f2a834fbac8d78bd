"""`churnml init`: column mapping and every chosen number, on hand-built logs whose answers are worked out by hand."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from churnml.cli import app
from churnml.config import load_dataset_config, load_score_config, load_train_config
from churnml.exceptions import ContractError, OutputExistsError
from churnml.init import infer_mapping, init_config


def _dates(start: str, gaps: list[int]) -> list[str]:
    d = dt.date.fromisoformat(start)
    out = [d]
    for g in gaps:
        d += dt.timedelta(days=g)
        out.append(d)
    return [x.isoformat() for x in out]


@pytest.fixture
def purchase_log(tmp_path):
    """A date-only purchase log with odd column names and ten known gaps between purchase dates.

    Gaps 5, 10, 10 (u1); 20, 30, 30 (u2); 40, 60, 80 (u3); 150 (u4). u5's only purchase is on the
    last date (2023-12-31), which is incomplete and adds no gap. Sorted: 5 10 10 20 30 30 40 60 80 150,
    so the gap within which a share q of returns happen is: 25% -> 10, 50% -> 30, 75% -> 60,
    90% -> 80, 95% and 99% -> 150. u2's first purchase is bought twice (an identical row).
    """
    rows = []
    for user, start, gaps in (("u1", "2022-01-01", [5, 10, 10]), ("u2", "2022-03-01", [20, 30, 30]),
                              ("u3", "2022-06-01", [40, 60, 80]), ("u4", "2022-02-01", [150]),
                              ("u5", "2023-12-31", [])):
        rows += [{"Customer ID": user, "Order Date": d, "Amount": 10.0} for d in _dates(start, gaps)]
    rows.append({"Customer ID": "u2", "Order Date": "2022-03-01", "Amount": 10.0})
    path = tmp_path / "orders.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_a_date_only_purchase_log_gets_its_mapping_and_numbers_from_the_gaps(purchase_log, tmp_path):
    res = init_config(purchase_log, tmp_path / "dataset.yaml")
    m = res.mapping
    assert m.columns == {"user_id": "Customer ID", "ts": "Order Date", "amount": "Amount"}
    assert m.event_type == "purchase"
    assert res.facts.date_only and res.facts.n_gaps == 10
    assert [res.facts.gaps[q] for q in (0.25, 0.5, 0.75, 0.9, 0.95, 0.99)] == [10, 30, 60, 80, 150, 150]
    ch = {k: c.value for k, c in res.choices.items()}
    # 90% of returns within 80 days -> the round horizon above it: 90; the 729-day log fits it.
    assert ch["horizon_days"] == 90
    # 99% within 150 days -> 150 (whole 30-day months past 8 weeks).
    assert ch["eligibility_days"] == 150
    # from the round window at the median (30) to the one at the 95th percentile (180); the next one
    # (365) is longer than half the 729-day log, so it is not added.
    assert ch["feature_windows_days"] == [30, 60, 90, 180]
    assert ch["onboarding_days"] == 30
    # every 90/4 days in whole weeks = 28; from 2022-01-01 + 90 d = 2022-04-01 to the last instant whose
    # 90-day window ends by the last event (2023-12-31 - 90 d = 2023-10-02), in 28-day steps back: 20.
    assert ch["snapshots"] == {"start": "2022-04-18", "end": "2023-10-02", "every_days": 28}
    assert ch["duplicates"] == "keep"
    assert "90% of 10 returns" in res.choices["horizon_days"].why and "80 days" in res.choices["horizon_days"].why

    text = (tmp_path / "dataset.yaml").read_text()
    lines = text.splitlines()
    at = lines.index("  horizon_days: 90")
    assert lines[at - 1].startswith("  # ") and "horizon 90 d: 90% of 10 returns" in " ".join(lines[at - 3:at])
    cfg = load_dataset_config(tmp_path / "dataset.yaml")  # the dataset section validates ...
    assert cfg.horizon_days == 90 and cfg.sources.events.event_type == "purchase"
    assert cfg.sources.events.columns == {"user_id": "Customer ID", "ts": "Order Date"}
    assert cfg.sum_columns == ["Amount"]
    train = load_train_config(tmp_path / "dataset.yaml")  # ... and so do the training and scoring sections
    assert train.dataset == (tmp_path / "dataset.yaml").resolve()
    score = load_score_config(tmp_path / "dataset.yaml")
    assert score.value_column == "sum_amount_all" and score.ranking == "auto"
    assert (score.eligibility.lapsed_min_days, score.eligibility.lapsed_max_days) == (60, 150)


@pytest.fixture
def event_log(tmp_path):
    """An app's event log with sub-second timestamps.

    u1 is active every day 2024-01-01..10 (9 gaps of 1 day); u2 on 01-01, 01-03 and 01-10 (gaps 2 and 7);
    u3 once on 03-15, u4 once on the last day 03-31 (at 12:00:00.250). Gaps sorted: 1 x9, 2, 7:
    50% and 75% -> 1, 90% -> 2 (10/11 = 0.91), 95% and 99% -> 7. One row is sent twice.
    """
    rows = [{"user": "u1", "event_time": f"2024-01-{d:02d} 10:00:01", "action": "play", "product_id": d}
            for d in range(1, 11)]
    rows += [{"user": "u2", "event_time": f"2024-01-{d:02d} 09:30:00", "action": "like", "product_id": 1}
             for d in (1, 3, 10)]
    rows += [{"user": "u3", "event_time": "2024-03-15 08:00:00", "action": "play", "product_id": 2},
             {"user": "u4", "event_time": "2024-03-31 12:00:00.250", "action": "search", "product_id": None},
             {"user": "u1", "event_time": "2024-01-05 10:00:01", "action": "play", "product_id": 5}]
    df = pd.DataFrame(rows)
    df["event_time"] = pd.to_datetime(df["event_time"], format="ISO8601")
    path = tmp_path / "events.parquet"
    df.to_parquet(path, index=False)
    return path


def test_an_event_log_with_sub_second_timestamps(event_log, tmp_path):
    res = init_config(event_log, tmp_path / "dataset.yaml")
    assert res.mapping.columns == {"user_id": "user", "ts": "event_time", "event": "action", "item_id": "product_id"}
    assert res.mapping.event_type is None
    assert not res.facts.date_only and res.facts.sub_second and res.facts.n_duplicates == 1
    assert res.facts.event_counts == {"play": 11, "like": 3, "search": 1}
    ch = {k: c.value for k, c in res.choices.items()}
    assert ch["horizon_days"] == 7  # 90% within 2 days: the shortest round horizon
    assert ch["eligibility_days"] == 7  # 99% within 7 days
    assert ch["feature_windows_days"] == [1, 7, 14]  # median 1 d .. 95th percentile 7 d, plus 14
    assert ch["onboarding_days"] == 7
    # 2024-01-01 + 28 d = 01-29 .. 03-31 12:00 - 7 d = 03-24, weekly: 03-24, 03-17, ..., 02-04
    assert ch["snapshots"] == {"start": "2024-02-04", "end": "2024-03-24", "every_days": 7}
    assert ch["duplicates"] == "drop"
    cfg = load_dataset_config(tmp_path / "dataset.yaml")
    assert cfg.event_types == ["like", "play", "search"]
    assert [d.column for d in cfg.distinct_counts] == ["product_id"]


def test_csv_with_odd_column_names(tmp_path):
    path = tmp_path / "online_retail.csv"
    pd.DataFrame({
        "InvoiceNo": ["536365", "536366", "536367"], "StockCode": ["85123A", "71053", "84406B"],
        "Description": ["WHITE HANGING HEART", "WHITE LANTERN", "CREAM CUPID"], "Quantity": [6, 6, 8],
        "InvoiceDate": ["2010-12-01 08:26:00", "2010-12-01 08:28:00", "2010-12-01 08:34:00"],
        "UnitPrice": [2.55, 3.39, 2.75], "Customer ID": [17850, 17850, 13047], "Country": ["UK", "UK", "UK"],
    }).to_csv(path, index=False)
    m = infer_mapping(path)
    assert m.columns == {"user_id": "Customer ID", "ts": "InvoiceDate", "amount": "UnitPrice",
                         "quantity": "Quantity", "item_id": "StockCode"}
    assert m.event_type == "purchase"


def test_a_log_without_a_user_column_is_one_line_and_nothing_is_written(tmp_path):
    path = tmp_path / "log.csv"
    pd.DataFrame({"when": ["2024-01-01"], "what": ["x"]}).to_csv(path, index=False)
    with pytest.raises(ContractError, match="no column recognised as the user id .*columns found: when"):
        infer_mapping(path)
    res = CliRunner().invoke(app, ["init", "--events", str(path), "--out", str(tmp_path / "d.yaml")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "no column recognised as the user id" in " ".join(res.output.split())
    assert not (tmp_path / "d.yaml").exists()
    res = CliRunner().invoke(app, ["init", "--events", str(tmp_path / "nope.csv")])
    assert res.exit_code == 2 and "file not found" in res.output


def test_an_existing_config_is_not_overwritten_without_force(purchase_log, tmp_path):
    out = tmp_path / "dataset.yaml"
    out.write_text("mine\n")
    with pytest.raises(OutputExistsError, match="exists; pass --force"):
        init_config(purchase_log, out)
    assert out.read_text() == "mine\n"
    res = CliRunner().invoke(app, ["init", "--events", str(purchase_log), "--out", str(out)])
    assert res.exit_code == 6 and out.read_text() == "mine\n"
    init_config(purchase_log, out, force=True, horizon_days=60)
    assert yaml.safe_load(out.read_text())["dataset"]["horizon_days"] == 60
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def _synthetic_purchases(path, seed: int, n: int = 400):
    """Customers who buy at their own rate until they drop out (a BG/NBD-like world), date-only."""
    rng = np.random.default_rng(seed)
    start, days = dt.date(2023, 1, 1), 365
    rows = []
    for i in range(n):
        t = float(rng.integers(0, 60))
        rate = rng.gamma(2.0, 1 / 20)  # purchases per day
        p_drop = rng.beta(1, 6)
        while t < days:
            rows.append({"customer_id": f"c{i}", "InvoiceDate": (start + dt.timedelta(days=int(t))).isoformat(),
                         "price": round(float(rng.gamma(2, 15)), 2)})
            if rng.random() < p_drop:
                break
            t += rng.exponential(1 / rate)
    pd.DataFrame(rows).to_csv(path, index=False)


def test_init_then_train_then_score_without_hand_tuning(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _synthetic_purchases(tmp_path / "orders.csv", seed=3)
    run = CliRunner().invoke
    res = run(app, ["init", "--events", "orders.csv"])
    assert res.exit_code == 0, res.output
    res = run(app, ["train", "churn", "-c", "dataset.yaml", "--trials", "0"])
    assert res.exit_code == 0, res.output
    assert run(app, ["promote", "-c", "dataset.yaml"]).exit_code == 0
    as_of = (pd.to_datetime(pd.read_csv("orders.csv")["InvoiceDate"]).max() + pd.Timedelta(days=1)).date()
    res = run(app, ["score", "-c", "dataset.yaml", "--as-of", as_of.isoformat()])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "ranked by churn risk x sum_price_all" in text and "warning:" in text
    listed = pd.read_parquet(tmp_path / "lists" / as_of.isoformat() / "recall_list.parquet")
    assert len(listed) > 0 and set(listed["group"]) <= {"contact", "holdout"}


def test_a_users_table_gets_its_own_mapping(event_log, tmp_path):
    users = tmp_path / "accounts.csv"
    pd.DataFrame({"User": ["u1", "u2", "u3", "u4"], "Registered At": ["2023-12-31 08:00:00"] * 4,
                  "Country": ["FR", "DE", "FR", "IT"]}).to_csv(users, index=False)
    res = init_config(event_log, tmp_path / "dataset.yaml", users=users)
    cfg = load_dataset_config(tmp_path / "dataset.yaml")
    assert cfg.sources.users.columns == {"user_id": "User", "signup_ts": "Registered At"}
    assert res.facts.n_users == 4


def test_a_subscription_product_gets_its_horizon_from_billing_and_leaves_room_for_the_grace(tmp_path):
    # Four users active every 2 days (so the return gaps alone would ask for a 7-day horizon), each on
    # a monthly plan: eleven closed 30-day periods, then a running one. The median billing period is
    # 30 days -> a 30-day horizon; labels need 30 + 7 (grace) days, so the last snapshot is the
    # midnight at or before (last event + 1 us) - 37 days = 2023-12-29 12:00 - 37 d = 2023-11-22 12:00.
    day0 = dt.datetime(2023, 1, 1)
    events = [{"user_id": u, "ts": (day0 + dt.timedelta(days=2 * k, hours=12)).isoformat(sep=" "), "event": "visit"}
              for u in range(1, 5) for k in range(182)]  # the last on 2023-12-29 12:00
    subs = []
    for u in range(1, 5):
        for k in range(12):
            start = day0 + dt.timedelta(days=30 * k)
            subs.append({"user_id": u, "start": start.isoformat(sep=" "),
                         "end": (start + dt.timedelta(days=30)).isoformat(sep=" ") if k < 11 else None})
    pd.DataFrame(events).to_csv(tmp_path / "events.csv", index=False)
    pd.DataFrame(subs).to_csv(tmp_path / "subscriptions.csv", index=False)
    res = init_config(tmp_path / "events.csv", tmp_path / "dataset.yaml", subscriptions=tmp_path / "subscriptions.csv")
    assert res.facts.gaps[0.9] == 2
    cfg = load_dataset_config(tmp_path / "dataset.yaml")
    assert cfg.churn.definition == "subscription" and cfg.churn.grace_days == 7
    assert cfg.horizon_days == 30
    assert cfg.snapshot_instants()[-1] == dt.datetime(2023, 11, 22, tzinfo=dt.UTC)
    assert "median billing period is 30 days" in " ".join((tmp_path / "dataset.yaml").read_text().split()).replace("# ", "")
