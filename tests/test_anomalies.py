"""Anomalous-cohort detection: planted dips found, clean data left alone."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from churnml import retention
from churnml.config import load_dataset_config
from churnml.data import open_dataset
from churnml.jobs import simulate_job
from churnml.simulator import SimulationConfig


def test_benjamini_hochberg_by_hand():
    # sorted p: 0.001, 0.01, 0.03, 0.2 (n=4) -> 0.004, 0.02, 0.04, 0.2; monotone from the top
    q = retention.benjamini_hochberg([0.03, 0.2, 0.001, 0.01])
    assert q.round(6).tolist() == [0.04, 0.2, 0.004, 0.02]
    assert retention.benjamini_hochberg([0.05, 0.05]).tolist() == [0.05, 0.05]


def _table(rates, n=400, day=1):
    start = dt.date(2024, 1, 1)
    return pd.DataFrame({
        "cohort": [start + dt.timedelta(days=i) for i in range(len(rates))],
        "day": day, "eligible": n, "rate_nday": rates, "ci_low": np.nan, "ci_high": np.nan,
    })


def test_planted_dip_is_the_only_flag():
    rng = np.random.default_rng(0)
    rates = list(rng.binomial(400, 0.45, 40) / 400)
    rates[30] = 0.30  # 7.5 points below a 45% baseline on 400 users: z ~ -6
    out = retention.anomalous_cohorts(_table(rates), days=[1])
    flagged = out[out.flagged]
    assert flagged.cohort.tolist() == [dt.date(2024, 1, 31)]
    assert flagged.direction.tolist() == ["lower"]
    assert flagged.baseline_rate.iloc[0] == pytest.approx(np.median(rates[16:30]))


def test_pure_noise_is_not_flagged():
    rng = np.random.default_rng(1)
    rates = rng.binomial(300, 0.4, 120) / 300
    assert not retention.anomalous_cohorts(_table(rates, n=300), days=[1]).flagged.any()


def test_too_few_cohorts_means_no_test():
    assert retention.anomalous_cohorts(_table([0.4, 0.1, 0.4]), days=[1]).empty


@pytest.mark.parametrize("promotion", [True, False])
def test_simulator_promotion_found_and_clean_run_quiet(tmp_path, promotion):
    # the default scale: about 500 users per promotion cohort
    sim = SimulationConfig(n_users=20_000, days=80, seed=4, **({} if promotion else {"promotion_days": []}))
    _, cfg = simulate_job(sim, tmp_path, truth=False)
    ds = open_dataset(load_dataset_config(cfg))
    out = retention.anomalous_cohorts(retention.cohort_retention(ds), days=[1, 7])
    flagged = out[out.flagged]
    if promotion:
        promo = {sim.start + dt.timedelta(days=d) for d in sim.promotion_days}
        # each promotion cohort is flagged (on day 1 or day 7), and nothing else is flagged low
        assert set(flagged[flagged.direction == "lower"].cohort) == promo
        mix = retention.cohort_attribute_mix(ds, sorted(promo))
        top = mix.groupby("cohort").head(1)
        assert (top.attribute == "acquisition_channel").all() and (top.value == "promo").all()
    else:
        assert flagged.empty, flagged
