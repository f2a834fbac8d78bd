"""Retention analysis: hand-worked tiny logs, then the simulator's planted structure."""

from __future__ import annotations

import datetime as dt
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from churnml.config import load_dataset_config
from churnml.data import open_dataset
from churnml.retention import (
    CAMPAIGN_COLUMNS,
    activity_gaps,
    activity_series,
    analyse_retention,
    campaign_readout,
    cohort_retention,
    condense_activity,
    retention_headline,
    wilson_interval,
)

from conftest import open_tiny, write_dataset

D = dt.date

# ---------------------------------------------------------------------------------------------
# Log A: the log ends mid-day (2024-01-10 12:00), so complete days are 01-01 .. 01-09.
# Only play and like count as activity; notification_open does not.
#   a  signup 01-01 08:00, active 01-01 (D0), 01-02 (D1), 01-08 (D7)
#   b  signup 01-01 20:00, active 01-01 (D0), 01-05 (D4); a notification_open on 01-02 (not D1)
#   c  signup 01-01 09:00, only a notification_open on 01-03: never active
#   d  signup 01-05 10:00 (a cohort of one), active 01-06 (D1) and 01-10 03:00 (partial day, unseen)
#   e  signup 01-08 10:00 (too young for D7), active 01-08 (D0), 01-09 (D1)
LOG_A_EVENTS = [
    {"user_id": "a", "ts": "2024-01-01T08:30:00Z", "event": "play"},
    {"user_id": "a", "ts": "2024-01-01T09:00:00Z", "event": "like"},
    {"user_id": "a", "ts": "2024-01-02T23:59:59Z", "event": "play"},
    {"user_id": "a", "ts": "2024-01-08T00:00:00Z", "event": "play"},
    {"user_id": "b", "ts": "2024-01-01T21:00:00Z", "event": "play"},
    {"user_id": "b", "ts": "2024-01-02T10:00:00Z", "event": "notification_open"},
    {"user_id": "b", "ts": "2024-01-05T10:00:00Z", "event": "like"},
    {"user_id": "c", "ts": "2024-01-03T10:00:00Z", "event": "notification_open"},
    {"user_id": "d", "ts": "2024-01-06T10:00:00Z", "event": "play"},
    {"user_id": "d", "ts": "2024-01-10T03:00:00Z", "event": "play"},
    {"user_id": "e", "ts": "2024-01-08T11:00:00Z", "event": "play"},
    {"user_id": "e", "ts": "2024-01-09T11:00:00Z", "event": "play"},
]
LOG_A_USERS = [
    {"user_id": "a", "signup_ts": "2024-01-01T08:00:00Z"},
    {"user_id": "b", "signup_ts": "2024-01-01T20:00:00Z"},
    {"user_id": "c", "signup_ts": "2024-01-01T09:00:00Z"},
    {"user_id": "d", "signup_ts": "2024-01-05T10:00:00Z"},
    {"user_id": "e", "signup_ts": "2024-01-08T10:00:00Z"},
]


@pytest.fixture
def log_a(tmp_path):
    return open_tiny(tmp_path, LOG_A_EVENTS, LOG_A_USERS, observed_until="2024-01-10T12:00:00Z",
                     activity_events=["play", "like"])


def _cell(table, cohort, day):
    rows = table[(table.cohort == cohort) & (table.day == day)]
    assert len(rows) == 1, (cohort, day)
    return rows.iloc[0]


# --------------------------------------------------------------------------------------------- Wilson


def test_wilson_interval_hand_values():
    low, high = wilson_interval([0, 5, 10, 3], [10, 10, 10, 0])
    # k=0,n=10: centre = half = (1.96^2/20) / (1 + 1.96^2/10) = 0.19208 / 1.38416 = 0.13877
    np.testing.assert_allclose(low[:3], [0.0, 0.2366, 0.7225], atol=5e-5)
    np.testing.assert_allclose(high[:3], [0.2775, 0.7634, 1.0], atol=5e-5)
    assert math.isnan(low[3]) and math.isnan(high[3])  # n = 0: no interval, not (0, 0)
    lo, hi = wilson_interval(1, 1)
    assert lo.shape == () and 0.2 < float(lo) < 0.21 and float(hi) == 1.0


# --------------------------------------------------------------------------------------------- cohorts


def test_daily_cohorts_by_hand(log_a):
    t = cohort_retention(log_a, period="day", days=(1, 7), max_day=9)
    assert list(t.columns[:6]) == ["cohort", "day", "cohort_size", "eligible", "retained_nday", "retained_rolling"]
    assert sorted(t.cohort.unique()) == [D(2024, 1, 1), D(2024, 1, 5), D(2024, 1, 8)]
    jan1 = D(2024, 1, 1)
    # Cohort 01-01 = {a, b, c}. D0: a, b. Rolling D0: a, b (c is never active).
    c = _cell(t, jan1, 0)
    assert (c.cohort_size, c.eligible, c.retained_nday, c.retained_rolling) == (3, 3, 2, 2)
    # D1 (01-02): only a; b's notification_open is not activity. Rolling D1: a (01-02, 01-08) and b (01-05).
    c = _cell(t, jan1, 1)
    assert (c.eligible, c.retained_nday, c.retained_rolling) == (3, 1, 2)
    assert c.rate_nday == pytest.approx(1 / 3) and c.rate_rolling == pytest.approx(2 / 3)
    lo, hi = wilson_interval(1, 3)
    assert (c.ci_low, c.ci_high) == pytest.approx((float(lo), float(hi)))
    assert c.complete
    # D7 (01-08): a only; rolling D7 looks at 01-08 .. 01-09: a only.
    c = _cell(t, jan1, 7)
    assert (c.eligible, c.retained_nday, c.retained_rolling, c.complete) == (3, 1, 1, True)
    # D9 is 01-10, the partial day: nobody has reached it -> eligible 0, NaN (not 0), not complete.
    c = _cell(t, jan1, 9)
    assert c.eligible == 0 and math.isnan(c.rate_nday) and math.isnan(c.ci_low) and not c.complete


def test_cohort_of_one_and_partial_last_day(log_a):
    t = cohort_retention(log_a, period="day", max_day=7)
    jan5 = D(2024, 1, 5)
    # d: not active on its signup day; rolling D0 counts the later 01-06.
    c = _cell(t, jan5, 0)
    assert (c.cohort_size, c.retained_nday, c.retained_rolling, c.rate_nday) == (1, 0, 1, 0.0)
    assert _cell(t, jan5, 1).rate_nday == 1.0
    assert _cell(t, jan5, 4).eligible == 1  # D4 = 01-09, the last complete day
    # D5 = 01-10 is partial: d's event at 03:00 that day is not counted, and the cell is unobserved.
    c = _cell(t, jan5, 5)
    assert c.eligible == 0 and c.retained_nday == 0 and math.isnan(c.rate_nday)


def test_cohort_too_young_for_d7_is_nan_not_zero(log_a):
    t = cohort_retention(log_a, period="day", days=(1, 7), max_day=7)
    jan8 = D(2024, 1, 8)
    assert _cell(t, jan8, 1).rate_nday == 1.0  # e active 01-09
    c = _cell(t, jan8, 7)
    assert c.eligible == 0 and math.isnan(c.rate_nday) and math.isnan(c.rate_rolling)
    head = retention_headline(t, days=(1, 7)).set_index("cohort")
    assert head.loc[jan8, "d1"] == 1.0 and math.isnan(head.loc[jan8, "d7"])
    assert head.loc[jan8, "d7_eligible"] == 0 and not head.loc[jan8, "d7_complete"]
    assert head.loc[D(2024, 1, 1), "d1"] == pytest.approx(1 / 3)
    assert head.loc[D(2024, 1, 1), "cohort_size"] == 3
    with pytest.raises(ValueError, match="`days` parameter of `retention_headline`"):
        retention_headline(t, days=(1, 30))


def test_weekly_and_monthly_cohorts(log_a):
    # 2024-01-01 is a Monday: a, b, c, d (01-05) share the ISO week 01-01; e (Mon 01-08) starts the next.
    w = cohort_retention(log_a, period="week", max_day=7)
    assert sorted(w.cohort.unique()) == [D(2024, 1, 1), D(2024, 1, 8)]
    c = _cell(w, D(2024, 1, 1), 1)
    assert (c.cohort_size, c.eligible, c.retained_nday, c.complete) == (4, 4, 2, True)  # a and d
    # D5: d's day 5 is the partial 01-10, so only a, b, c are eligible; none active on 01-06.
    c = _cell(w, D(2024, 1, 1), 5)
    assert (c.eligible, c.retained_nday, c.rate_nday, c.complete) == (3, 0, 0.0, False)
    # D7: a, b, c eligible (d's D7 is 01-12), a active on 01-08: the partly-young cohort's rate is 1/3.
    c = _cell(w, D(2024, 1, 1), 7)
    assert (c.eligible, c.retained_nday, c.complete) == (3, 1, False)
    assert c.rate_nday == pytest.approx(1 / 3)
    m = cohort_retention(log_a, period="month", max_day=1)
    assert list(m.cohort.unique()) == [D(2024, 1, 1)]
    c = _cell(m, D(2024, 1, 1), 1)
    assert (c.cohort_size, c.eligible, c.retained_nday) == (5, 5, 3)  # a, d, e
    with pytest.raises(ValueError, match="`period` parameter of `cohort_retention`"):
        cohort_retention(log_a, period="year")


# An e-commerce log: renamed columns, no users table (signup = first event of any type),
# and only purchases and add-to-cart count as activity.
#   c1 first event 03-01 12:00 (view), purchases 03-01 (D0) and 03-08 (D7)
#   c2 first event 03-05 18:00 (view, not activity), add to cart 03-09 (D4), purchase 03-12 (D7)
SHOP = [
    {"customer": "c1", "time": "2024-03-01T12:00:00Z", "action": "view"},
    {"customer": "c1", "time": "2024-03-01T12:05:00Z", "action": "purchase"},
    {"customer": "c1", "time": "2024-03-08T09:00:00Z", "action": "purchase"},
    {"customer": "c2", "time": "2024-03-05T18:00:00Z", "action": "view"},
    {"customer": "c2", "time": "2024-03-09T18:00:00Z", "action": "add to cart"},
    {"customer": "c2", "time": "2024-03-12T18:00:00Z", "action": "purchase"},
]


@pytest.fixture
def shop(tmp_path):
    cfg = write_dataset(tmp_path, SHOP, observed_until="2024-04-01",
                        activity_events=["purchase", "add to cart"])
    cfg.write_text(cfg.read_text().replace(
        "path: events.csv}", "path: events.csv, columns: {user_id: customer, ts: time, event: action}}"))
    return open_dataset(load_dataset_config(cfg))


def test_ecommerce_log_without_users_table(shop):
    assert shop.signup_inferred
    t = cohort_retention(shop, period="day", max_day=7)
    c1, c2 = D(2024, 3, 1), D(2024, 3, 5)
    assert (_cell(t, c1, 0).retained_nday, _cell(t, c1, 1).retained_nday, _cell(t, c1, 7).retained_nday) == (1, 0, 1)
    # c2's signup-day view is not activity: D0 not retained, but rolling D0 and D1 are (03-09, 03-12).
    c = _cell(t, c2, 0)
    assert (c.retained_nday, c.retained_rolling) == (0, 1)
    assert (_cell(t, c2, 1).retained_nday, _cell(t, c2, 1).retained_rolling) == (0, 1)
    assert _cell(t, c2, 7).retained_nday == 1
    # ISO weeks: Friday 03-01 belongs to the week of Monday 02-26, Tuesday 03-05 to the week of 03-04.
    w = cohort_retention(shop, period="week", max_day=7)
    assert sorted(w.cohort.unique()) == [D(2024, 2, 26), D(2024, 3, 4)]
    m = cohort_retention(shop, period="month", max_day=7)
    c = _cell(m, D(2024, 3, 1), 7)
    assert (c.cohort_size, c.retained_nday, c.rate_nday) == (2, 2, 1.0)
    assert _cell(m, D(2024, 3, 1), 0).rate_nday == 0.5
    s = activity_series(shop).set_index("date")
    # The first activity day is 03-01; c1 is new then. On 03-09 c2 is active for the first time
    # (not its signup day) with nothing in the 7 days before: resurrected.
    assert (s.loc[D(2024, 3, 1), "dau"], s.loc[D(2024, 3, 1), "new"]) == (1, 1)
    assert (s.loc[D(2024, 3, 9), "resurrected"], s.loc[D(2024, 3, 9), "returning"]) == (1, 0)
    assert s.index.max() == D(2024, 3, 31)


# --------------------------------------------------------------------------------------------- series

# Log B: 40 complete days, 01-01 .. 02-09 (observed_until is the midnight 02-10).
#   p  signup 01-01, active 01-01, 01-02, 01-20, 02-09
#   q  signup 01-01, active 01-01, 01-31
#   r  signup 01-15, active every day 01-15 .. 02-09 (26 days)
#   s  signup 01-03, active 01-03 only
#   v  signup 01-01, active 01-10 and 01-17 (exactly 7 days apart: still "returning")
def _log_b_events():
    rows = [("p", "2024-01-01"), ("p", "2024-01-02"), ("p", "2024-01-20"), ("p", "2024-02-09"),
            ("q", "2024-01-01"), ("q", "2024-01-31"), ("s", "2024-01-03"),
            ("v", "2024-01-10"), ("v", "2024-01-17")]
    rows += [("r", str(D(2024, 1, 15) + dt.timedelta(days=i))) for i in range(26)]
    return [{"user_id": u, "ts": f"{day}T12:00:00Z", "event": "play"} for u, day in rows]


LOG_B_USERS = [
    {"user_id": "p", "signup_ts": "2024-01-01T10:00:00Z"},
    {"user_id": "q", "signup_ts": "2024-01-01T10:00:00Z"},
    {"user_id": "r", "signup_ts": "2024-01-15T10:00:00Z"},
    {"user_id": "s", "signup_ts": "2024-01-03T10:00:00Z"},
    {"user_id": "v", "signup_ts": "2024-01-01T10:00:00Z"},
]


@pytest.fixture
def log_b(tmp_path):
    return open_tiny(tmp_path, _log_b_events(), LOG_B_USERS, observed_until="2024-02-10")


def test_activity_series_by_hand(log_b):
    s = activity_series(log_b)
    assert list(s.columns) == ["date", "dau", "wau", "mau", "stickiness", "new", "returning", "resurrected"]
    assert s.date.iloc[0] == D(2024, 1, 1) and s.date.iloc[-1] == D(2024, 2, 9) and len(s) == 40
    s = s.set_index("date")

    def row(m, d):
        return s.loc[D(2024, m, d)]

    assert (row(1, 1).dau, row(1, 1).new) == (2, 2)
    assert row(1, 11).dau == 0  # nobody active: the day is there, with zeros
    # WAU needs 7 days of log: NaN up to 01-06. 01-07: p, q, s; 01-08: p (01-02), s; 01-09: s;
    # 01-10: v; 01-11 (01-05 .. 01-11): v.
    assert s.loc[:D(2024, 1, 6), "wau"].isna().all()
    assert [row(1, d).wau for d in (7, 8, 9, 10, 11)] == [3, 2, 1, 1, 1]
    assert row(2, 9).wau == 2  # 02-03 .. 02-09: p (02-09) and r
    # MAU needs 30 days: first on 01-30 (01-01 .. 01-30: all five). s (01-03) leaves after 02-01.
    assert s.loc[:D(2024, 1, 29), "mau"].isna().all()
    assert [row(1, 30).mau, row(2, 1).mau, row(2, 2).mau] == [5, 5, 4]
    assert row(2, 2).stickiness == pytest.approx(1 / 4)  # only r active on 02-02
    # Returning / resurrected need the 7 days before: NaN before 01-08.
    assert s.loc[:D(2024, 1, 7), "returning"].isna().all()
    assert (row(1, 15).new, row(1, 15).returning, row(1, 15).resurrected) == (1, 0, 0)  # r signs up
    assert (row(1, 16).returning, row(1, 16).resurrected) == (1, 0)
    # v: first activity 01-10 is not its signup day and has nothing before: resurrected;
    # on 01-17 its previous active day is exactly 7 days back: returning (with r).
    assert (row(1, 10).new, row(1, 10).returning, row(1, 10).resurrected) == (0, 0, 1)
    assert (row(1, 17).dau, row(1, 17).returning, row(1, 17).resurrected) == (2, 2, 0)
    # 01-20: r returning; p last active 01-02 (18 days before): resurrected.
    assert (row(1, 20).dau, row(1, 20).returning, row(1, 20).resurrected) == (2, 1, 1)
    assert (row(1, 31).returning, row(1, 31).resurrected) == (1, 1)  # r; q back after 30 days
    assert (row(2, 9).returning, row(2, 9).resurrected) == (1, 1)  # r; p back after 20 days
    assert (s.dau == s.new + s.returning + s.resurrected).loc[D(2024, 1, 8):].all()


def test_activity_gaps_by_hand(log_b):
    dist, summary = activity_gaps(log_b)
    # gaps: p 1, 18, 20; q 30; r 25 x 1; s none; v 7 -> 30 gaps: 26 of 1, one each of 7, 18, 20, 30.
    assert dist.gap.tolist() == [1, 7, 18, 20, 30]
    assert dist["count"].tolist() == [26, 1, 1, 1, 1]
    np.testing.assert_allclose(dist.cumulative_share, [26 / 30, 27 / 30, 28 / 30, 29 / 30, 1.0])
    # 27/30 reaches 0.90 exactly, so p90 is 7; 28/30 = 0.933 < 0.95, so p95 is 20; p99 30.
    assert (summary["gap_p90"], summary["gap_p95"], summary["gap_p99"]) == (7, 20, 30)
    assert summary["recommended_horizon_days"] == 20
    # Active days per week over tenure inside the log (to 02-10): p 4*7/40 = 0.7, q 2*7/40 = 0.35,
    # r 26*7/26 = 7, s 1*7/38 = 0.18, v 2*7/40 = 0.35; median 0.35 < 1 -> monthly.
    assert summary["n_users_for_median"] == 5
    assert summary["median_active_days_per_week"] == pytest.approx(0.35)
    assert summary["recommended_metric"] == "monthly"
    assert "less than once a week" in summary["reasoning"] and "at most 20 days" in summary["reasoning"]


def test_daily_product_gets_daily_metric(tmp_path):
    # x signs up 01-01, y long before the log starts (01-01); both play daily, y skips 01-05.
    events = [{"user_id": u, "ts": f"2024-01-{d:02d}T12:00:00Z", "event": "play"}
              for u in ("x", "y") for d in range(1, 11) if not (u == "y" and d == 5)]
    users = [{"user_id": "x", "signup_ts": "2024-01-01T00:00:00Z"},
             {"user_id": "y", "signup_ts": "2023-12-01T00:00:00Z"}]
    ds = open_tiny(tmp_path, events, users, observed_until="2024-01-11")
    dist, summary = activity_gaps(ds)
    # x: 9 gaps of 1; y: 7 of 1 and one of 2 (day 5 missing): 16/17 = 0.941 -> p90 1, p95 2.
    assert dist.set_index("gap")["count"].to_dict() == {1: 16, 2: 1}
    assert (summary["gap_p90"], summary["gap_p95"]) == (1, 2)
    # Tenure counts from the log's first day: x active 10/10 days -> 7 a week, y 9/10 -> 6.3
    # (not 9 of its 41 days since signup): median 6.65.
    assert summary["median_active_days_per_week"] == pytest.approx(6.65)
    assert summary["recommended_metric"] == "daily"


# --------------------------------------------------------------------------------------------- campaigns

# Log C: everyone signs up 01-01; only plays are activity; 2-day response window.
# k1 sent 01-05 10:00 -> window [01-05 10:00, 01-07 10:00):
#   t1 treated: plays 01-05 09:00 (before the send) and 01-07 10:00 (the window's open end): no
#   t2 treated: play 01-05 10:00 exactly at the send: yes
#   t3 treated: play 01-07 09:59: yes
#   t4 treated: a notification_open on 01-06 (not activity): no
#   c1 control: play 01-06 12:00: yes;  c2 control: play 01-02 only: no;  c3 control: nothing: no
# k2 sent 01-19 00:00 -> window [01-19, 01-21), past observed_until 01-20:
#   t1 treated: play 01-19 05:00: yes;  c1 control: no
LOG_C_EVENTS = [
    {"user_id": "t1", "ts": "2024-01-05T09:00:00Z", "event": "play"},
    {"user_id": "t1", "ts": "2024-01-07T10:00:00Z", "event": "play"},
    {"user_id": "t1", "ts": "2024-01-19T05:00:00Z", "event": "play"},
    {"user_id": "t2", "ts": "2024-01-05T10:00:00Z", "event": "play"},
    {"user_id": "t3", "ts": "2024-01-07T09:59:00Z", "event": "play"},
    {"user_id": "t4", "ts": "2024-01-06T10:00:00Z", "event": "notification_open"},
    {"user_id": "c1", "ts": "2024-01-06T12:00:00Z", "event": "play"},
    {"user_id": "c2", "ts": "2024-01-02T12:00:00Z", "event": "play"},
]
LOG_C_USERS = [{"user_id": u, "signup_ts": "2024-01-01T00:00:00Z"} for u in ("t1", "t2", "t3", "t4", "c1", "c2", "c3")]
LOG_C_CAMPAIGNS = (
    [{"user_id": u, "campaign_id": "k1", "sent_ts": "2024-01-05T10:00:00Z", "treated": True}
     for u in ("t1", "t2", "t3", "t4")]
    + [{"user_id": u, "campaign_id": "k1", "sent_ts": "2024-01-05T10:00:00Z", "treated": False}
       for u in ("c1", "c2", "c3")]
    + [{"user_id": "t1", "campaign_id": "k2", "sent_ts": "2024-01-19T00:00:00Z", "treated": True},
       {"user_id": "c1", "campaign_id": "k2", "sent_ts": "2024-01-19T00:00:00Z", "treated": False}]
)


@pytest.fixture
def log_c(tmp_path):
    return open_tiny(tmp_path, LOG_C_EVENTS, LOG_C_USERS, LOG_C_CAMPAIGNS, observed_until="2024-01-20",
                     activity_events=["play"], response_window_days=2)


def test_campaign_readout_by_hand(log_c):
    r = campaign_readout(log_c)
    assert list(r.columns) == CAMPAIGN_COLUMNS and r.campaign_id.tolist() == ["k1", "k2"]
    k1, k2 = r.iloc[0], r.iloc[1]
    assert (k1.n_treated, k1.n_control, k1.returned_treated, k1.returned_control) == (4, 3, 2, 1)
    assert (k1.rate_treated, k1.rate_control) == pytest.approx((0.5, 1 / 3))
    # lift 1/2 - 1/3 = 1/6; se = sqrt(.25/4 + (2/9)/3) = sqrt(0.136574) = 0.369559
    assert k1.lift_abs == pytest.approx(1 / 6)
    assert (k1.lift_abs_ci_low, k1.lift_abs_ci_high) == pytest.approx((1 / 6 - 0.72432, 1 / 6 + 0.72432), abs=1e-4)
    assert k1.lift_rel == pytest.approx(0.5) and k1.incremental_returns == pytest.approx(4 / 6)
    assert k1.window_complete and k1.sent_from == pd.Timestamp("2024-01-05T10:00:00Z")
    # k2: the window runs past the end of the log: provisional; control rate 0 -> no relative lift.
    assert (k2.returned_treated, k2.returned_control, k2.lift_abs) == (1, 0, 1.0)
    assert not k2.window_complete and math.isnan(k2.lift_rel)


def test_campaign_readout_window_override(log_c):
    # 1-day windows: k1 [01-05 10:00, 01-06 10:00) keeps t2 only (t3 01-07, c1 01-06 12:00 fall out);
    # k2 [01-19, 01-20) ends exactly at observed_until, so it is complete.
    r = campaign_readout(log_c, window_days=1).set_index("campaign_id")
    assert (r.loc["k1", "returned_treated"], r.loc["k1", "returned_control"]) == (1, 0)
    assert r.loc["k2", "returned_treated"] == 1 and r.loc["k2", "window_complete"]
    with pytest.raises(ValueError, match="`window_days` parameter of `campaign_readout`"):
        campaign_readout(log_c, window_days=0)


def test_no_campaigns_table_gives_empty_readout(log_a):
    r = campaign_readout(log_a)
    assert r.empty and list(r.columns) == CAMPAIGN_COLUMNS


def test_analyses_share_one_condensed_log(log_c):
    act = condense_activity(log_c)
    try:
        shared = campaign_readout(log_c, activity=act)
        again = cohort_retention(log_c, activity=act)
    finally:
        act.release()
    pd.testing.assert_frame_equal(shared, campaign_readout(log_c))
    pd.testing.assert_frame_equal(again, cohort_retention(log_c))


# --------------------------------------------------------------------------------------------- simulator


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from churnml.jobs import simulate_job
    from churnml.simulator import SimulationConfig

    folder = tmp_path_factory.mktemp("retention_sim")
    config = SimulationConfig(n_users=5000, days=90, seed=7)
    _, cfg_path = simulate_job(config, folder, truth=False)
    ds = open_dataset(load_dataset_config(cfg_path))
    return config, folder, ds, analyse_retention(ds, period="day", max_day=7)


def test_promotion_cohorts_retain_worse(sim):
    config, _, _, out = sim
    head = out["headline"].set_index("cohort")
    promo = [config.start + dt.timedelta(days=d) for d in config.promotion_days if d < config.days]
    assert len(promo) == 2
    others = head.drop(index=promo)
    others = others[others.d1_eligible > 0]
    median_d1 = others.d1.median()
    for day in promo:
        # the whole interval lies below the typical cohort
        assert head.loc[day, "d1_ci_high"] < median_d1, (day, head.loc[day, "d1"], median_d1)


def _events_and_signups(folder):
    ev = pd.read_parquet(folder / "events.parquet", columns=["user_id", "ts"])
    users = pd.read_parquet(folder / "users.parquet", columns=["user_id", "signup_ts"])
    ev["date"] = ev.ts.dt.tz_convert("UTC").dt.floor("D")
    users["signup_date"] = users.signup_ts.dt.tz_convert("UTC").dt.floor("D")
    return ev, users


def test_cohorts_and_dau_match_pandas_on_simulator(sim):
    config, folder, ds, out = sim
    ev, users = _events_and_signups(folder)
    days = ev[["user_id", "date"]].drop_duplicates().merge(users, on="user_id")
    end = pd.Timestamp(config.start, tz="UTC") + pd.Timedelta(days=config.days)
    cohorts = out["cohorts"].set_index(["cohort", "day"])
    for n in (1, 7):
        hit = days[days.date == days.signup_date + pd.Timedelta(days=n)]
        expected = hit.groupby(hit.signup_date.dt.date).size()
        eligible = users[users.signup_date + pd.Timedelta(days=n) < end].groupby(
            users.signup_date.dt.date).size()
        got = cohorts.xs(n, level="day")
        got_retained = got.loc[got.eligible > 0, "retained_nday"]
        assert (got_retained == expected.reindex(got_retained.index, fill_value=0)).all()
        assert (got.loc[got.eligible > 0, "eligible"] == eligible.reindex(got_retained.index)).all()
        assert (got.loc[got.eligible == 0, "rate_nday"].isna()).all()
    dau = days.groupby(days.date.dt.date).user_id.nunique()
    series = out["series"].set_index("date")
    assert (series.dau == dau.reindex(series.index, fill_value=0)).all()
    # WAU on a few days, by brute force
    for day in series.index[[10, 40, 89]]:
        lo = pd.Timestamp(day, tz="UTC") - pd.Timedelta(days=6)
        window = days[(days.date >= lo) & (days.date <= pd.Timestamp(day, tz="UTC"))]
        assert series.loc[day, "wau"] == window.user_id.nunique()


def test_campaign_lift_positive_and_matches_pandas(sim):
    config, folder, ds, out = sim
    r = out["campaigns"]
    assert len(r) == sum(d < config.days for d in config.campaign_days)
    pooled_t = r.returned_treated.sum() / r.n_treated.sum()
    pooled_c = r.returned_control.sum() / r.n_control.sum()
    assert pooled_t > pooled_c + 0.02
    # Direct computation from the files: any event in [sent_ts, sent_ts + W) per exposure.
    ev = pd.read_parquet(folder / "events.parquet", columns=["user_id", "ts"])
    camp = pd.read_parquet(folder / "campaigns.parquet")
    camp = camp.reset_index(names="row")
    j = camp.merge(ev, on="user_id")
    window = pd.Timedelta(days=ds.config.response_window_days)
    hit_rows = j.loc[(j.ts >= j.sent_ts) & (j.ts < j.sent_ts + window), "row"].unique()
    camp["returned"] = camp.row.isin(hit_rows)
    expected = camp.groupby(["campaign_id", "treated"]).agg(n=("row", "size"), k=("returned", "sum"))
    got = r.set_index("campaign_id")
    for cid in got.index:
        assert got.loc[cid, "n_treated"] == expected.loc[(cid, True), "n"]
        assert got.loc[cid, "n_control"] == expected.loc[(cid, False), "n"]
        assert got.loc[cid, "returned_treated"] == expected.loc[(cid, True), "k"]
        assert got.loc[cid, "returned_control"] == expected.loc[(cid, False), "k"]
    assert got.window_complete.all()


def test_simulator_gap_summary_is_consistent(sim):
    _, _, _, out = sim
    dist, summary = out["gaps"], out["gap_summary"]
    assert dist["count"].sum() == summary["n_gaps"] > 0
    assert 1 <= summary["gap_p90"] <= summary["gap_p95"] <= summary["gap_p99"]
    assert summary["recommended_horizon_days"] == summary["gap_p95"]
    assert summary["recommended_metric"] in {"daily", "weekly", "monthly"}
    assert f"{summary['median_active_days_per_week']:.1f}" in summary["reasoning"]


# --------------------------------------------------------------------------------------------- Spark


@pytest.mark.spark
@pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs a Java runtime (none on PATH)")
def test_spark_parity_on_hand_log(tmp_path):
    pytest.importorskip("pyspark", reason="install churnml[spark] for the Spark engine")
    from pyspark.sql import SparkSession

    from churnml.data import connect

    spark = (SparkSession.builder.master("local[2]").appName("churnml-tests")
             .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false")
             .config("spark.sql.shuffle.partitions", "4").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    cfg = load_dataset_config(write_dataset(
        tmp_path, LOG_C_EVENTS + LOG_A_EVENTS, LOG_C_USERS + LOG_A_USERS, LOG_C_CAMPAIGNS, fmt="parquet",
        observed_until="2024-01-20", activity_events=["play", "like"], response_window_days=2))
    duck = analyse_retention(open_dataset(cfg), period="week", max_day=8)
    try:
        spk = analyse_retention(open_dataset(cfg, con=connect("pyspark", spark=spark)), period="week", max_day=8)
    finally:
        spark.stop()
    for key in ("cohorts", "headline", "series", "gaps", "campaigns"):
        pd.testing.assert_frame_equal(duck[key], spk[key], check_dtype=False)
    assert duck["gap_summary"] == spk["gap_summary"]


def test_horizon_headline_names_the_configured_horizon_when_it_differs():
    from churnml.jobs import _headlines

    empty_table = pd.DataFrame({"day": [], "eligible": [], "retained_nday": []})
    args = (empty_table, pd.DataFrame(), pd.DataFrame({"mau": []}),
            {"gap_p95": 5, "recommended_horizon_days": 6, "recommended_metric": "D7"}, pd.DataFrame(), (1, 7))
    differs = [line for line in _headlines(*args, horizon_days=14) if "churn horizon" in line]
    assert differs == ["95% of returns happen within 5 days: a churn horizon of 6 days fits this product "
                       "(the dataset config uses 14 days: `horizon_days`), and D7 retention is the metric to watch."]
    same = [line for line in _headlines(*args, horizon_days=6) if "churn horizon" in line]
    assert same == ["95% of returns happen within 5 days: a churn horizon of 6 days fits this product, "
                    "and D7 retention is the metric to watch."]
