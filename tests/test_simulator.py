"""Tests of churnml.simulator: determinism, schema, exact truth, planted structure."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from churnml.simulator import SimulationConfig, SimulationResult, TruthSpec, simulate

START = dt.date(2024, 1, 1)
T0 = pd.Timestamp(START, tz="UTC")
PROMOTION_DAYS = [40, 41]
# Horizons (14 days) do not overlap, so the residuals y - p of all rows are uncorrelated
# (a martingale argument: each p conditions on everything before its as_of).
SNAPSHOT_DAYS = [20, 34, 48, 62, 76]
# About 130 calibration checks run below; |z| > 3.9 has probability 1e-4 each, so a
# correct simulator fails this file for about 1% of seeds.
Z = 3.9


def _config(**overrides) -> SimulationConfig:
    base = {
        "n_users": 8_000,
        "start": START,
        "days": 90,
        "seed": 11,
        "promotion_days": PROMOTION_DAYS,
        "campaign_days": [50, 64, 78],
        # The single-channel world these tests were written for (tests/test_simulator_channels.py
        # checks the default, multi-channel one).
        "campaign_channels": ["push"],
        "campaign_min_days_inactive": 7,
    }
    return SimulationConfig(**{**base, **overrides})


def _truth_spec(days: list[int] = SNAPSHOT_DAYS) -> TruthSpec:
    midnight = dt.datetime.combine(START, dt.time(0), tzinfo=dt.UTC)
    return TruthSpec(snapshots=[midnight + dt.timedelta(days=d) for d in days])


# A world where hazards, tenure, recall boosts and blocks all move the truth a lot,
# with overlapping campaigns and snapshots on the days around sends and window ends,
# so that an off-by-one anywhere in the truth recursion shows up as miscalibration.
STRESS = {
    "n_users": 8_000,
    "days": 70,
    "promotion_days": [],
    "campaign_days": [20, 24, 30, 40],
    "campaign_min_days_inactive": 3,
    "campaign_max_days_inactive": 40,
    "engagement_mean": 0.3,
    "casual_share": 0.0,
    "hazard_base": 0.06,
    "tenure_hazard_peak": 6.0,
    "tenure_hazard_decay_days": 3.0,
    "like_hazard_multiplier": 0.3,
    "community_hazard_multiplier": 0.3,
    "community_join_rate": 0.3,
    "return_rate_base": 0.05,
    "recall_boost_base": 0.3,
    "block_prob_base": 3.0,
}
STRESS_SNAPSHOT_DAYS = [13, 27, 41, 55]


@dataclass(frozen=True)
class Sim:
    config: SimulationConfig
    result: SimulationResult
    out: Path


def _connect(result: SimulationResult) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    # Day arithmetic on timestamptz follows the session zone: pin it to UTC.
    con.execute("set TimeZone = 'UTC'")
    for name, path in (
        ("events", result.events_path),
        ("users", result.users_path),
        ("campaigns", result.campaigns_path),
        ("exposures", result.truth_dir / "exposures.parquet"),
        ("churn", result.truth_dir / "churn.parquet"),
        ("truth_users", result.truth_dir / "users.parquet"),
    ):
        con.execute(f"create view {name} as select * from read_parquet('{path}')")
    return con


def _df(con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
    """Run a query into pandas through Arrow (keeps tz-aware timestamps as they are)."""
    return con.sql(sql).to_arrow_table().to_pandas()


def _churn_labels(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Truth rows with the realised label (no event in [as_of, as_of + 14 days)).

    Also a few observable facts at ``as_of`` that the truth must be calibrated on:
    tenure in days, and whether a treated response window closes at ``as_of`` or
    is still open.
    """
    return _df(
        con,
        """
        select c.*, not exists (
            select 1 from events e
            where e.user_id = c.user_id and e.ts >= c.as_of and e.ts < c.as_of + interval 14 day
        ) as churned,
        date_diff('day', u.signup_ts, c.as_of) as tenure,
        exists (
            select 1 from campaigns k where k.user_id = c.user_id and k.treated
            and date_trunc('day', k.sent_ts) + interval 7 day = c.as_of
        ) as window_closes,
        exists (
            select 1 from campaigns k where k.user_id = c.user_id and k.treated
            and k.sent_ts < c.as_of and date_trunc('day', k.sent_ts) + interval 7 day > c.as_of
        ) as window_open
        from churn c join users u using (user_id)
        """,
    )


def _exposure_labels(con: duckdb.DuckDBPyConnection, window: int) -> pd.DataFrame:
    """Exposure truth with the realised response: any event in [sent_ts, sent_ts + W days)."""
    return _df(
        con,
        f"""
        select x.*, u.acquisition_channel,
            date_diff('day', u.signup_ts, x.sent_ts) as tenure,
            exists (
                select 1 from events e where e.user_id = x.user_id
                and e.ts >= x.sent_ts and e.ts < x.sent_ts + interval {window} day
            ) as responded
        from exposures x join users u using (user_id)
        """,
    )


@pytest.fixture(scope="module")
def seed() -> int:
    return 11


@pytest.fixture(scope="module")
def sim(tmp_path_factory, seed) -> Sim:
    config = _config(seed=seed)
    out = tmp_path_factory.mktemp("sim")
    return Sim(config, simulate(config, out, truth=_truth_spec()), out)


@pytest.fixture(scope="module")
def con(sim) -> duckdb.DuckDBPyConnection:
    return _connect(sim.result)


@pytest.fixture(scope="module")
def stress_sim(tmp_path_factory, seed) -> Sim:
    config = _config(seed=seed, **STRESS)
    out = tmp_path_factory.mktemp("stress")
    return Sim(config, simulate(config, out, truth=_truth_spec(STRESS_SNAPSHOT_DAYS)), out)


@pytest.fixture(scope="module")
def stress_con(stress_sim) -> duckdb.DuckDBPyConnection:
    return _connect(stress_sim.result)


@pytest.fixture(scope="module")
def stress_churn(stress_con) -> pd.DataFrame:
    return _churn_labels(stress_con)


@pytest.fixture(scope="module")
def stress_exposures(stress_con, stress_sim) -> pd.DataFrame:
    return _exposure_labels(stress_con, stress_sim.config.response_window_days)


@pytest.fixture(scope="module")
def cohorts(con) -> pd.DataFrame:
    """One row per user: signup day and which tenure days (0, 1, 7, 14) it was active."""
    return _df(
        con,
        f"""
        with days as (
            select distinct e.user_id,
                date_diff('day', timestamptz '{T0}', e.ts)
                    - date_diff('day', timestamptz '{T0}', u.signup_ts) as k
            from events e join users u using (user_id)
        ), week_one as (
            select e.user_id,
                count(*) filter (where e.event = 'like') as likes,
                count(*) filter (where e.event = 'community_join') > 0 as joined
            from events e join users u using (user_id)
            where e.ts < u.signup_ts + interval 7 day
            group by 1
        )
        select u.user_id, u.acquisition_channel,
            date_diff('day', timestamptz '{T0}', u.signup_ts) as signup_day,
            coalesce(w.likes, 0) as likes7, coalesce(w.joined, false) as joined7,
            exists (select 1 from days d where d.user_id = u.user_id and d.k = 1) as d1,
            exists (select 1 from days d where d.user_id = u.user_id and d.k = 14) as d14
        from users u left join week_one w using (user_id)
        """,
    )


def _z(p: pd.Series, y: pd.Series) -> float:
    """Standardised gap between realised and predicted counts of independent Bernoullis."""
    return float((y.sum() - p.sum()) / np.sqrt((p * (1 - p)).sum()))


def _calibration_failures(p: pd.Series, y: pd.Series) -> list[str]:
    """Deciles whose realised count is more than ``Z`` SDs off, and the same overall.

    The realised count of a decile is a sum of independent Bernoullis with the
    predicted probabilities, so its variance is ``sum(p * (1 - p))``.
    """
    failures = []
    bins = pd.qcut(p.rank(method="first"), 10, labels=False)
    for b in range(10):
        pb, yb = p[bins == b], y[bins == b]
        sd = np.sqrt((pb * (1 - pb)).sum())
        if abs(yb.sum() - pb.sum()) > Z * sd + 1:  # +1: continuity at p ~ 0
            failures.append(f"decile {b}: predicted {pb.mean():.4f}, realised {yb.mean():.4f}")
    if abs(_z(p, y)) > Z:
        failures.append(f"overall: predicted {p.mean():.4f}, realised {y.mean():.4f}")
    return failures


@pytest.fixture(scope="module")
def churn(con) -> pd.DataFrame:
    return _churn_labels(con)


@pytest.fixture(scope="module")
def exposures(con, sim) -> pd.DataFrame:
    return _exposure_labels(con, sim.config.response_window_days)


# ------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_files(sim, tmp_path):
    again = simulate(sim.config, tmp_path, truth=_truth_spec())
    for name in ("events.parquet", "users.parquet", "campaigns.parquet"):
        assert (tmp_path / name).read_bytes() == (sim.out / name).read_bytes(), name
    for name in ("users.parquet", "exposures.parquet", "churn.parquet"):
        assert (again.truth_dir / name).read_bytes() == (sim.result.truth_dir / name).read_bytes()


def test_truth_does_not_change_the_data(sim, tmp_path):
    simulate(sim.config, tmp_path)
    for name in ("events.parquet", "users.parquet", "campaigns.parquet"):
        assert (tmp_path / name).read_bytes() == (sim.out / name).read_bytes(), name
    assert not (tmp_path / "truth" / "churn.parquet").exists()


def test_other_seed_gives_other_data(sim, tmp_path):
    other = simulate(sim.config.model_copy(update={"seed": sim.config.seed + 1}), tmp_path)
    a = pq.read_table(sim.result.events_path, columns=["user_id", "ts"]).to_pandas()
    b = pq.read_table(other.events_path, columns=["user_id", "ts"]).to_pandas()
    assert len(a) != len(b) or not a.equals(b)
    assert not pq.read_table(sim.result.users_path).equals(pq.read_table(other.users_path))


def test_progress_is_called_after_each_day(tmp_path):
    calls = []
    config = _config(n_users=300, days=20, promotion_days=[], campaign_days=[15])
    simulate(config, tmp_path, progress=lambda day, n: calls.append((day, n)))
    assert calls == [(day, 20) for day in range(20)]


# ----------------------------------------------------------------------- schema


def test_events_schema(sim):
    schema = pq.read_schema(sim.result.events_path)
    assert schema.field("user_id").type == pa.int64()
    assert schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert schema.field("event").type == pa.string()
    assert schema.field("item_id").type == pa.int64()
    assert schema.field("community_id").type == pa.int64()
    assert pq.ParquetFile(sim.result.events_path).metadata.num_rows == sim.result.n_events


def test_users_and_campaigns_schema(sim):
    users = pq.read_table(sim.result.users_path)
    assert users.schema.field("user_id").type == pa.int64()
    assert users.schema.field("signup_ts").type == pa.timestamp("us", tz="UTC")
    df = users.to_pandas()
    assert len(df) == sim.result.n_users == df.user_id.nunique()
    assert set(df.acquisition_channel) == {
        "organic",
        "search_ads",
        "paid_social",
        "referral",
        "promo",
    }
    assert set(df.platform) == {"ios", "android", "web"}
    assert df.region.nunique() >= 3
    assert df.signup_ts.min() >= T0
    assert df.signup_ts.max() < T0 + pd.Timedelta(days=sim.config.days)

    campaigns = pq.read_table(sim.result.campaigns_path)
    assert campaigns.schema.field("sent_ts").type == pa.timestamp("us", tz="UTC")
    assert campaigns.schema.field("treated").type == pa.bool_()
    c = campaigns.to_pandas()
    assert len(c) == sim.result.n_exposures > 0
    assert set(c.campaign_id) == {
        f"recall-{START + dt.timedelta(days=d):%Y-%m-%d}" for d in sim.config.campaign_days
    }
    assert (c.sent_ts.dt.hour == 10).all() and (c.sent_ts.dt.minute == 0).all()
    # The arm: the control group or the one channel.
    assert set(c.channel) == {"control", "push"} and (c.treated == (c.channel == "push")).all()
    assert c.user_id.isin(df.user_id).all()
    assert not c.duplicated(["user_id", "campaign_id"]).any()
    assert 0.45 < c.treated.mean() < 0.55


def test_events_follow_signup_and_have_the_right_ids(con):
    bad = con.sql(
        """
        select
            count(*) filter (where e.ts <= u.signup_ts) as before_signup,
            count(*) filter (where u.user_id is null) as unknown_user,
            count(*) filter (where (e.item_id is not null)
                <> (e.event in ('play', 'like', 'playlist_add'))) as item_mismatch,
            count(*) filter (where (e.community_id is not null)
                <> (e.event in ('community_join', 'community_post'))) as community_mismatch,
            count(*) filter (where epoch_us(e.ts) % 86400000000 = 0) as on_midnight
        from events e left join users u using (user_id)
        """
    ).fetchone()
    assert bad == (0, 0, 0, 0, 0)
    events = {row[0] for row in con.sql("select distinct event from events").fetchall()}
    assert events == {
        "visit",
        "play",
        "like",
        "search",
        "share",
        "playlist_add",
        "community_join",
        "community_post",
    }


def test_posts_come_after_a_join(con):
    orphans = con.sql(
        """
        select count(*) from events p
        where p.event = 'community_post' and not exists (
            select 1 from events j where j.user_id = p.user_id and j.event = 'community_join'
            and j.community_id = p.community_id and j.ts < p.ts)
        """
    ).fetchone()[0]
    assert orphans == 0


def test_truth_tables(sim, con):
    users = _df(con, "select * from truth_users")
    assert len(users) == sim.result.n_users
    for col in (
        "engagement",
        "hazard_base",
        "return_rate",
        "recall_boost",
        "block_prob",
        "like_taste",
        "social",
    ):
        assert users[col].between(0, 1).all(), col
    x = _df(con, "select * from exposures")
    assert len(x) == sim.result.n_exposures
    assert np.allclose(x.uplift, x.p_treated - x.p_control)
    assert set(x.segment) <= {"persuadable", "sure_thing", "lost_cause", "sleeping_dog"}
    c = _df(con, "select * from churn")
    assert sorted(c.as_of.unique()) == [T0 + pd.Timedelta(days=d) for d in SNAPSHOT_DAYS]
    assert c.p_churn.between(0, 1).all() and c.p_churn_observed.between(0, 1).all()
    assert (sim.result.truth_dir / "README.md").read_text().startswith("# Simulator ground truth")


# ------------------------------------------------------------------- exact truth


@pytest.mark.parametrize("labels", ["churn", "stress_churn"])
@pytest.mark.parametrize("column", ["p_churn", "p_churn_observed"])
def test_churn_truth_is_calibrated(request, labels, column):
    rows = request.getfixturevalue(labels)
    assert len(rows) > 10_000
    assert _calibration_failures(rows[column], rows.churned) == []


@pytest.mark.parametrize("labels", ["exposures", "stress_exposures"])
@pytest.mark.parametrize("arm,column", [(True, "p_treated"), (False, "p_control")])
@pytest.mark.parametrize("observed", [False, True])
def test_exposure_truth_is_calibrated(request, labels, arm, column, observed):
    rows = request.getfixturevalue(labels)
    rows = rows[rows.treated == arm]
    p = rows[f"{column}_observed" if observed else column]
    assert len(rows) > 1_000
    assert _calibration_failures(p, rows.responded) == []


@pytest.mark.parametrize("subgroup", ["tenure <= 3", "tenure > 20", "window_closes", "window_open"])
@pytest.mark.parametrize("column", ["p_churn", "p_churn_observed"])
def test_churn_truth_is_calibrated_in_subgroups(stress_churn, subgroup, column):
    """Exact truth is calibrated on every subset chosen from information at ``as_of``."""
    rows = stress_churn.query(subgroup)
    assert len(rows) > 300
    assert abs(_z(rows[column], rows.churned)) < Z


@pytest.mark.parametrize("state", ["alive", "lapsed"])
def test_churn_truth_is_calibrated_given_the_latent_state(stress_churn, state):
    rows = stress_churn[stress_churn.state == state]
    assert abs(_z(rows.p_churn, rows.churned)) < Z


def _flags(sim: Sim, at: str) -> str:
    """Return SQL for the like habit and community membership of ``x.user_id`` before ``at``."""
    cfg = sim.config
    return f"""
        (select count(*) from events e where e.user_id = x.user_id and e.event = 'like'
            and e.ts < {at}
            and date_diff('day', u.signup_ts, e.ts) < {cfg.like_habit_days})
            > {cfg.like_habit_threshold} as habit,
        exists (select 1 from events e where e.user_id = x.user_id
            and e.event = 'community_join' and e.ts < {at}) as member
    """


def test_churn_truth_matches_a_hand_written_recursion(sim, con):
    """Without campaigns in the horizon, p_churn follows from the documented formulas."""
    cfg = sim.config
    campaign_days = ", ".join(str(d) for d in cfg.campaign_days)
    rows = _df(
        con,
        f"""
        select x.p_churn, x.state, t.engagement, t.hazard_base, t.return_rate,
            date_diff('day', u.signup_ts, x.as_of) as tenure, {_flags(sim, "x.as_of")}
        from churn x join users u using (user_id) join truth_users t using (user_id)
        where not exists (
            select 1 from unnest([{campaign_days}]) as c(day)
            where c.day between date_diff('day', timestamptz '{T0}', x.as_of) - 6
                and date_diff('day', timestamptz '{T0}', x.as_of) + 13
        )
        """,
    )
    assert len(rows) > 1_000 and set(rows.state) >= {"alive", "lapsed"}
    multiplier = (
        np.where(rows.habit, cfg.like_hazard_multiplier, 1.0)
        * np.where(rows.member, cfg.community_hazard_multiplier, 1.0)
        * np.where(rows.habit & rows.member, cfg.like_community_synergy, 1.0)
    )
    alive = (rows.state == "alive").to_numpy(float)
    lapsed = (rows.state == "lapsed").to_numpy(float)
    blocked = (rows.state == "blocked").to_numpy(float)
    for k in range(14):
        tenure = rows.tenure.to_numpy() + k
        tenure_factor = 1 + (cfg.tenure_hazard_peak - 1) * np.exp(
            -tenure / cfg.tenure_hazard_decay_days
        )
        hazard = np.minimum(rows.hazard_base * multiplier * tenure_factor, 1.0)
        quiet = alive * (1 - rows.engagement)
        alive, lapsed = quiet * (1 - hazard), lapsed * (1 - rows.return_rate) + quiet * hazard
    np.testing.assert_allclose(rows.p_churn, alive + lapsed + blocked, rtol=0, atol=1e-12)


def test_exposure_truth_matches_closed_forms(sim, con):
    """For users lapsed or blocked at the send, p and the effects have closed forms."""
    cfg = sim.config
    w = cfg.response_window_days
    rows = _df(
        con,
        f"""
        select x.*, t.return_rate, t.recall_boost as rho_base, t.block_prob as block_base,
            date_diff('day', u.signup_ts, x.sent_ts) as tenure,
            date_diff('day', (select max(e.ts) from events e
                              where e.user_id = x.user_id and e.ts < x.sent_ts),
                      x.sent_ts) as recency,
            {_flags(sim, "x.sent_ts")}
        from exposures x join users u using (user_id) join truth_users t using (user_id)
        """,
    )
    rho = (
        rows.rho_base
        * np.where(rows.member, cfg.recall_community_multiplier, 1.0)
        * np.where(rows.habit, cfg.recall_like_multiplier, 1.0)
        * np.exp(-(rows.recency - cfg.campaign_min_days_inactive) / cfg.recall_recency_days)
    )
    block = np.minimum(
        rows.block_base
        * np.where(rows.tenure < cfg.block_short_tenure_days, cfg.block_short_tenure_multiplier, 1),
        0.9,
    )
    np.testing.assert_allclose(rows.recall_boost, rho, rtol=1e-12)
    np.testing.assert_allclose(rows.block_prob, block, rtol=1e-12)

    lapsed = rows[rows.state_at_send == "lapsed"]
    stay = (1 - lapsed.return_rate) ** w
    stay_treated = (1 - np.minimum(lapsed.return_rate + lapsed.recall_boost, 1)) ** w
    np.testing.assert_allclose(lapsed.p_control, 1 - stay, atol=1e-12)
    np.testing.assert_allclose(
        lapsed.p_treated, (1 - lapsed.block_prob) * (1 - stay_treated), atol=1e-12
    )
    blocked = rows[rows.state_at_send == "blocked"]
    assert len(blocked) > 0 and (blocked[["p_treated", "p_control"]] == 0).all(axis=None)


@pytest.mark.parametrize("world", ["", "stress_"])
def test_recall_boost_ends_with_the_window(request, world):
    """Lapsed treated users who did not respond come back on day t+W at the plain rate.

    Given no response, such a user is blocked with probability
    ``d / (d + (1 - d) * (1 - r - rho)**W)``; otherwise returns with probability ``r``
    (not ``r + rho``: the boost is over).
    """
    sim, con = request.getfixturevalue(f"{world}sim"), request.getfixturevalue(f"{world}con")
    w = sim.config.response_window_days
    rows = _df(
        con,
        f"""
        select x.block_prob, x.recall_boost, t.return_rate,
            exists (select 1 from events e where e.user_id = x.user_id
                    and e.ts >= date_trunc('day', x.sent_ts) + interval {w} day
                    and e.ts < date_trunc('day', x.sent_ts) + interval {w + 1} day) as returned
        from exposures x join truth_users t using (user_id)
        where x.treated and x.state_at_send = 'lapsed' and not exists (
            select 1 from events e where e.user_id = x.user_id
            and e.ts >= x.sent_ts and e.ts < x.sent_ts + interval {w} day)
        """,
    )
    stay = (1 - np.minimum(rows.return_rate + rows.recall_boost, 1)) ** w
    d = rows.block_prob
    p = rows.return_rate * (1 - d) * stay / ((1 - d) * stay + d)
    assert len(rows) > 500
    assert abs(_z(p, rows.returned)) < Z


def test_calibration_check_can_fail(churn, exposures):
    """The checks above reject probabilities that are off by a few points."""
    shifted = (churn.p_churn + 0.03).clip(0, 1)
    assert _calibration_failures(shifted, churn.churned) != []
    treated = exposures[exposures.treated]
    # Using the control probability for treated users misses the campaign effect.
    assert abs(_z(treated.p_control, treated.responded)) > Z


def test_response_window_is_day_aligned(con, sim):
    """[sent_ts, sent_ts + W days) holds exactly the events of days t .. t+W-1."""
    w = sim.config.response_window_days
    mismatches = con.sql(
        f"""
        select count(*) from exposures x
        where exists (select 1 from events e where e.user_id = x.user_id
                      and e.ts >= x.sent_ts and e.ts < x.sent_ts + interval {w} day)
           <> exists (select 1 from events e where e.user_id = x.user_id
                      and e.ts >= date_trunc('day', x.sent_ts)
                      and e.ts < date_trunc('day', x.sent_ts) + interval {w} day)
        """
    ).fetchone()[0]
    assert mismatches == 0


def test_blocked_users_never_return(con):
    blocked_after = con.sql(
        """
        select count(*) from churn c
        where c.state = 'blocked' and c.p_churn < 1 - 1e-12
        """
    ).fetchone()[0]
    assert blocked_after == 0


# ------------------------------------------------------------- planted structure


def test_promotion_cohorts_retain_worse(cohorts):
    by_day = cohorts.groupby("signup_day").agg(n=("user_id", "size"), d1=("d1", "mean"))
    promo = cohorts[cohorts.signup_day.isin(PROMOTION_DAYS)]
    near = cohorts[
        cohorts.signup_day.between(PROMOTION_DAYS[0] - 7, PROMOTION_DAYS[-1] + 7)
        & ~cohorts.signup_day.isin(PROMOTION_DAYS)
    ]
    assert by_day.n[PROMOTION_DAYS].min() > 2 * by_day.n.drop(PROMOTION_DAYS).mean()
    assert promo.d1.mean() < near.d1.mean() - 0.1
    assert (promo.acquisition_channel == "promo").mean() > 0.5


def test_no_promotion_means_no_surge(tmp_path):
    result = simulate(_config(n_users=3_000, promotion_days=[]), tmp_path)
    users = pq.read_table(result.users_path).to_pandas()
    day = (users.signup_ts - T0).dt.days
    counts = day.value_counts().reindex(range(90), fill_value=0)
    assert "promo" not in set(users.acquisition_channel)
    assert counts[PROMOTION_DAYS].max() < 1.8 * counts.mean()


def test_week_one_likes_and_community_improve_retention(cohorts):
    mature = cohorts[cohorts.signup_day < 90 - 15]
    habit = mature.likes7 > 3
    assert 0.15 < habit.mean() < 0.6
    assert mature.d14[habit].mean() > mature.d14[~habit].mean() + 0.2
    assert mature.d14[mature.joined7].mean() > mature.d14[~mature.joined7].mean() + 0.1


def test_non_causal_behaviours_track_engagement(con):
    corr = con.sql(
        """
        with n as (
            select user_id, count(*) filter (where event = 'search') as searches,
                count(*) filter (where event = 'visit') as visits
            from events group by 1
        )
        select corr(t.engagement, n.searches / n.visits), corr(t.search_rate, n.searches / n.visits)
        from truth_users t join n using (user_id)
        """
    ).fetchone()
    assert corr[0] > 0.2 and corr[1] > 0.4


def test_all_four_segments_are_present(exposures):
    shares = exposures.segment.value_counts(normalize=True)
    assert set(shares.index) == {"persuadable", "sure_thing", "lost_cause", "sleeping_dog"}
    assert shares.min() >= 0.05, shares.to_dict()


def test_sleeping_dogs_are_hurt_and_observable(exposures):
    dogs = exposures[exposures.segment == "sleeping_dog"]
    assert (dogs.p_treated < dogs.p_control).all()
    # Observable heterogeneity: paid-social users in their first weeks.
    paid = exposures.acquisition_channel == "paid_social"
    assert (dogs.acquisition_channel == "paid_social").mean() > 2 * paid.mean()
    assert dogs.tenure.median() < exposures.tenure.median()
    # Randomised contrast agrees: treatment lowers the response of would-be sleeping dogs.
    treated, control = dogs[dogs.treated], dogs[~dogs.treated]
    assert treated.responded.mean() < control.responded.mean()


def test_persuadables_gain_from_treatment(exposures):
    pers = exposures[exposures.segment == "persuadable"]
    assert pers[pers.treated].responded.mean() > pers[~pers.treated].responded.mean() + 0.05


# ----------------------------------------------------------------- configuration


def test_config_rejects_unknown_and_out_of_range_fields():
    with pytest.raises(ValidationError, match="extra"):
        SimulationConfig(n_user=10)
    with pytest.raises(ValidationError, match="The `campaign_days` parameter"):
        SimulationConfig(campaign_days=[-1])
    with pytest.raises(ValidationError, match="The `campaign_min_days_inactive` parameter"):
        SimulationConfig(campaign_min_days_inactive=30, campaign_max_days_inactive=20)


def test_config_does_not_share_mutable_defaults():
    a, b = SimulationConfig(), SimulationConfig()
    a.campaign_days.append(1)
    assert b.campaign_days == [56, 77, 98]


@pytest.mark.parametrize(
    "snapshot,match",
    [
        (dt.datetime(2024, 2, 1), "timezone-aware UTC"),
        (dt.datetime(2024, 2, 1, 12, tzinfo=dt.UTC), "midnights"),
    ],
)
def test_truth_spec_rejects_bad_snapshots(snapshot, match):
    with pytest.raises(ValidationError, match=match):
        TruthSpec(snapshots=[snapshot])


def test_snapshot_must_leave_room_for_the_horizon(tmp_path):
    config = _config(n_users=100, days=30, promotion_days=[], campaign_days=[])
    late = TruthSpec(snapshots=[dt.datetime(2024, 1, 25, tzinfo=dt.UTC)])
    with pytest.raises(ValueError, match="The `snapshots` parameter of `TruthSpec`"):
        simulate(config, tmp_path, truth=late)


@pytest.mark.parametrize("campaign_days", [[], [0]])
def test_campaigns_without_recipients_give_empty_tables(tmp_path, campaign_days):
    config = _config(n_users=50, days=20, promotion_days=[], campaign_days=campaign_days)
    result = simulate(config, tmp_path, truth=_truth_spec([1]))
    campaigns = pq.read_table(result.campaigns_path)
    exposures = pq.read_table(result.truth_dir / "exposures.parquet")
    assert result.n_exposures == campaigns.num_rows == exposures.num_rows == 0
    assert campaigns.schema.field("sent_ts").type == pa.timestamp("us", tz="UTC")
    assert "uplift" in exposures.schema.names
    assert pq.read_table(result.truth_dir / "churn.parquet").num_rows > 0


def test_days_after_the_period_are_ignored(tmp_path):
    config = SimulationConfig(n_users=300, days=30, seed=1)  # default days 45, 46, 56, ...
    result = simulate(config, tmp_path)
    users = pq.read_table(result.users_path).to_pandas()
    assert "promo" not in set(users.acquisition_channel)
    assert result.n_exposures == 0
