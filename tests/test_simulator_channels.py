"""The simulator's recall channels: arms, exact per-arm truth, channel-specific responders and sleeping dogs."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from churnml.simulator import SimulationConfig, simulate
from churnml.simulator.channels import arm_shares, assign_arms

from test_simulator import START, Z, _calibration_failures, _df, _z

CHANNELS = ["sms", "email", "push"]


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    """The default multi-channel world, 12,000 users, three campaigns."""
    config = SimulationConfig(n_users=12_000, start=START, days=90, seed=13, promotion_days=[40, 41],
                              campaign_days=[50, 64, 78])
    out = tmp_path_factory.mktemp("multi")
    result = simulate(config, out)
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    for name, path in (("events", result.events_path), ("users", result.users_path),
                       ("campaigns", result.campaigns_path),
                       ("exposures", result.truth_dir / "exposures.parquet"),
                       ("arms", result.truth_dir / "exposure_arms.parquet"),
                       ("truth_users", result.truth_dir / "users.parquet")):
        con.execute(f"create view {name} as select * from read_parquet('{path}')")
    return config, result, con


@pytest.fixture(scope="module")
def arms(multi) -> pd.DataFrame:
    """Every exposure under every arm, with the arm it got and the realised response."""
    config, _, con = multi
    w = config.response_window_days
    return _df(con, f"""
        select a.*, x.channel as given, x.state_at_send, u.platform, u.region, u.acquisition_channel,
            date_diff('day', u.signup_ts, x.sent_ts) as tenure,
            exists (select 1 from events e where e.user_id = a.user_id
                    and e.ts >= a.sent_ts and e.ts < a.sent_ts + interval {w} day) as responded
        from arms a join exposures x using (user_id, campaign_id) join users u using (user_id)
    """)


def test_arms_are_randomised_in_equal_shares(multi):
    config, result, con = multi
    c = _df(con, "select * from campaigns")
    shares = c.channel.value_counts(normalize=True)
    assert set(shares.index) == {"control", *CHANNELS} and len(c) == result.n_exposures > 10_000
    assert (shares - 0.25).abs().max() < 0.02
    assert (c.treated == (c.channel != "control")).all()
    # Arm shares do not depend on anything observable: the same in every region.
    by_region = _df(con, "select region, avg((channel = 'sms')::int) as sms from campaigns join users "
                         "using (user_id) group by 1")
    assert by_region.sms.between(0.2, 0.3).all()


def test_single_channel_arms_follow_the_treated_share():
    one = SimulationConfig(campaign_channels=["push"], campaign_treated_share=0.3)
    assert arm_shares(one).tolist() == [0.7, 0.3]
    three = SimulationConfig(campaign_treated_share=0.6)
    np.testing.assert_allclose(arm_shares(three), [0.4, 0.2, 0.2, 0.2])
    # The same uniform draw decides the arm as the single-channel rule `u < share` did.
    draws = np.random.default_rng(0).random(1000)
    got = assign_arms(one, np.random.default_rng(0), 1000)
    assert ((got == 1) == (draws < 0.3)).all()


def test_every_exposure_has_every_arm_and_consistent_truth(multi, arms):
    _, result, con = multi
    x = _df(con, "select * from exposures")
    assert len(arms) == 4 * len(x) == 4 * result.n_exposures
    control = arms[arms.channel == "control"].set_index(["campaign_id", "user_id"])
    key = x.set_index(["campaign_id", "user_id"])
    np.testing.assert_allclose(control.loc[key.index, "p_return"], key.p_control, rtol=0, atol=0)
    assert (control.uplift == 0).all() and (control.block_prob == 0).all()
    given = arms[arms.channel == arms.given].set_index(["campaign_id", "user_id"])
    treated = key[key.treated]
    np.testing.assert_allclose(given.loc[treated.index, "p_return"], treated.p_treated, atol=0)
    np.testing.assert_allclose(given.loc[treated.index, "recall_boost"], treated.recall_boost, atol=0)
    # With several channels a control row has no "treated" probability.
    assert key[~key.treated].p_treated.isna().all() and key[~key.treated].segment.isna().all()


@pytest.mark.parametrize("arm", ["control", *CHANNELS])
@pytest.mark.parametrize("column", ["p_return", "p_return_observed"])
def test_truth_of_every_arm_is_calibrated(arms, arm, column):
    rows = arms[(arms.channel == arm) & (arms.given == arm)]
    assert len(rows) > 3_000
    assert _calibration_failures(rows[column], rows.responded) == []


def test_calibration_check_can_fail_on_another_arms_truth(arms):
    # Users messaged by SMS do not respond as the e-mail truth of the same users says.
    sms = arms[arms.given == "sms"]
    email_truth = sms[sms.channel == "email"].set_index(["campaign_id", "user_id"])
    realised = sms[sms.channel == "sms"].set_index(["campaign_id", "user_id"]).responded
    assert abs(_z(email_truth.p_return, realised.loc[email_truth.index])) > Z


def test_lapsed_users_truth_has_the_closed_form_under_every_channel(multi, arms):
    """A user lapsed at the send returns with (1 - d_c) * (1 - (1 - min(r + rho_c, 1)) ** W)."""
    config, _, con = multi
    r = _df(con, "select user_id, return_rate from truth_users").set_index("user_id").return_rate
    lapsed = arms[arms.state_at_send == "lapsed"]
    w = config.response_window_days
    stay = (1 - np.minimum(lapsed.user_id.map(r) + lapsed.recall_boost, 1)) ** w
    np.testing.assert_allclose(lapsed.p_return, (1 - lapsed.block_prob) * (1 - stay), atol=1e-12)


def test_each_channel_reaches_its_own_users(arms):
    """Observable traits decide who responds to which channel, in the truth and in the randomised data."""
    up = arms.pivot_table(index=["campaign_id", "user_id", "platform", "region", "acquisition_channel",
                                 "tenure"], columns="channel", values="uplift").reset_index()
    by_platform = up.groupby("platform")[CHANNELS].mean()
    assert by_platform.loc["web", "email"] > 2 * by_platform.loc["ios", "email"]
    assert by_platform.loc["web", "push"] < by_platform.loc["ios", "push"]
    by_region = up.groupby("region")[CHANNELS].mean()
    assert by_region.loc[["latam", "mea"], "sms"].min() > 4 * by_region.loc[["na", "eu"], "sms"].max()
    best = up[CHANNELS].idxmax(axis=1)
    assert best.value_counts(normalize=True).min() > 0.15  # no channel is best for everyone
    # The randomised data agree: among web users e-mail beats push; in Latin America SMS beats e-mail.
    given = arms[arms.channel == arms.given]
    rate = given.groupby(["platform", "channel"]).responded.mean()
    assert rate[("web", "email")] > rate[("web", "push")] + 0.03
    rate = given.groupby(["region", "channel"]).responded.mean()
    assert rate[("latam", "sms")] > rate[("latam", "email")] + 0.03


def test_push_puts_off_users_an_email_would_bring_back(multi, arms):
    """Push sleeping dogs (paid-social users in their first weeks) respond to e-mail."""
    up = arms.pivot_table(index=["campaign_id", "user_id", "acquisition_channel", "tenure"], columns="channel",
                          values="uplift").reset_index()
    dogs = up[up.push < -0.02]
    assert len(dogs) > 300
    assert (dogs.acquisition_channel == "paid_social").mean() > 2 * (up.acquisition_channel == "paid_social").mean()
    assert dogs.tenure.median() < up.tenure.median()
    assert (dogs.email > dogs.push + 0.02).mean() > 0.9 and dogs.email.mean() > 0.005
    # In the data: push lowers their response, e-mail does not.
    keys = dogs.set_index(["campaign_id", "user_id"]).index
    given = arms[arms.channel == arms.given].set_index(["campaign_id", "user_id"])
    g = given[given.index.isin(keys)]
    assert g[g.given == "push"].responded.mean() < g[g.given == "control"].responded.mean()
    assert g[g.given == "email"].responded.mean() > g[g.given == "push"].responded.mean()


def test_unknown_or_repeated_channels_are_refused():
    with pytest.raises(ValidationError, match="The `campaign_channels` parameter"):
        SimulationConfig(campaign_channels=["fax"])
    with pytest.raises(ValidationError, match="The `campaign_channels` parameter"):
        SimulationConfig(campaign_channels=["sms", "sms"])
    with pytest.raises(ValidationError, match="The `campaign_channels` parameter"):
        SimulationConfig(campaign_channels=[])



def test_the_cli_simulates_the_channels_asked_for(tmp_path):
    from test_cli import invoke

    res = invoke("simulate", "--out", tmp_path / "two", "--users", 1500, "--days", 70, "--seed", 3,
                 "--channel", "email", "--channel", "push")
    assert res.exit_code == 0, res.output
    arms = pd.read_parquet(tmp_path / "two" / "campaigns.parquet").channel
    assert set(arms) == {"control", "email", "push"}
    res = invoke("simulate", "--out", tmp_path / "bad", "--users", 100, "--channel", "fax")
    assert res.exit_code == 2 and "The `campaign_channels` parameter" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()
