"""Tests for churnml.metrics.

Hand-worked cases pin the definitions; cross-checks pin equality with
scikit-uplift 0.5.1 (skipped when it is not installed) and scikit-learn;
simulations with a known truth check the calibration metrics.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn import calibration as skcal
from sklearn import metrics as skm

from churnml import metrics as M

UPLIFT_METRICS = [
    "qini_curve",
    "qini_auc_score",
    "uplift_curve",
    "uplift_auc_score",
    "uplift_at_k",
    "uplift_by_percentile",
    "uplift_calibration",
    "uplift_calibration_error",
]
CHURN_METRICS = [
    "roc_auc",
    "pr_auc",
    "brier_score",
    "log_loss",
    "reliability_table",
    "expected_calibration_error",
    "lift_at_k",
    "capture_at_k",
]


@pytest.fixture
def rng(seed):
    return np.random.default_rng(seed)


def _simulate_uplift(rng, n, *, decimals=None, effect=0.1, base=0.2):
    """Randomised trial with a positive average effect; rounded scores make ties."""
    treatment = rng.integers(0, 2, n)
    score = rng.normal(size=n)
    p = np.clip(base + effect * treatment * (score > 0), 0, 1)
    y = rng.binomial(1, p)
    uplift = score if decimals is None else np.round(score, decimals)
    return y, uplift, treatment


# --------------------------------------------------------------------------- hand-worked: uplift

# Four rows, already sorted by uplift: treated responder, treated non-responder,
# control responder, control non-responder.
Y4, U4, T4 = [1, 0, 1, 0], [0.9, 0.5, 0.4, 0.1], [1, 1, 0, 0]


def test_qini_curve_by_hand():
    # Y_t - Y_c * N_t / N_c after 1..4 rows: 1, 1, 1 - 1 * 2/1, 1 - 1 * 2/2.
    x, y = M.qini_curve(Y4, U4, T4)
    assert x.tolist() == [0, 1, 2, 3, 4]
    assert y.tolist() == [0.0, 1.0, 1.0, -1.0, 0.0]


def test_uplift_curve_by_hand():
    # (Y_t/N_t - Y_c/N_c) * N after 1..4 rows: 1, 1/2*2, (1/2 - 1)*3, 0.
    x, y = M.uplift_curve(Y4, U4, T4)
    assert x.tolist() == [0, 1, 2, 3, 4]
    assert y.tolist() == [0.0, 1.0, 1.0, -1.5, 0.0]


def test_curves_step_only_at_distinct_scores():
    x, _ = M.qini_curve(Y4, [1, 1, 0, 0], T4)
    assert x.tolist() == [0, 2, 4]


def test_qini_auc_score_by_hand():
    # Actual area 0.5 + 1 + 0 - 0.5 = 1; the perfect curve (0,0),(1,1),(3,1),(4,0)
    # has area 3; the diagonal ends at 0, so the score is 1/3.
    assert M.qini_auc_score(Y4, U4, T4) == pytest.approx(1 / 3)


def test_qini_auc_score_worst_ranking_is_minus_one():
    # One treated responder ranked last: the curve is 0 until x=4 (area 0.5);
    # the perfect curve (0,0),(1,1),(4,1) has area 3.5; the diagonal area 2.
    y, t, u = [1, 0, 0, 0], [1, 1, 0, 0], [0.1, 0.5, 0.4, 0.9]
    assert M.qini_auc_score(y, u, t) == pytest.approx(-1.0)
    assert M.qini_auc_score(y, u, t, negative_effect=False) == pytest.approx(-1.0)


def test_qini_auc_score_perfect_ranking_is_one():
    y, t = [1, 0, 0, 1, 0, 0], [1, 1, 1, 0, 0, 0]
    assert M.qini_auc_score(y, [3, 2, 2, 0, 1, 1], t) == pytest.approx(1.0)


def test_qini_auc_score_is_nan_when_no_gain_is_possible():
    # negative_effect=False: total gain 1 - 2 * 1/2 = 0, so the perfect curve has
    # no area (scikit-uplift raises ZeroDivisionError here).
    assert math.isnan(M.qini_auc_score(Y4, U4, T4, negative_effect=False))


def test_perfect_qini_curve_without_negative_effect_by_hand():
    # Gain = Y_t - N_t * Y_c / N_c = 2 - 3 * 1/3 = 1.
    y, t = [1, 1, 0, 1, 0, 0], [1, 1, 1, 0, 0, 0]
    x, curve = M.perfect_qini_curve(y, t, negative_effect=False)
    assert x.tolist() == [0, 1, 6]
    assert curve.tolist() == [0, 1, 1]


def test_perfect_uplift_curve_when_control_responders_dominate():
    # 2 control responders > 1 treated non-responder, so the oracle score is
    # 2 * (y == t) + y: rows 0 (3), 4 (2), 1 and 2 (1, tied), 3 (0).
    x, y = M.perfect_uplift_curve([1, 1, 1, 0, 0], [1, 0, 0, 1, 0])
    assert x.tolist() == [0, 1, 2, 4, 5]
    # (Y_t/N_t - Y_c/N_c) * N: 1, (1 - 0) * 2, (1 - 2/3) * 4, (1/2 - 2/3) * 5.
    assert y.tolist() == pytest.approx([0, 1, 2, 4 / 3, -5 / 6])


def test_uplift_auc_score_by_hand():
    # Actual area 0.5 + 1 - 0.25 - 0.75 = 0.5. Perfect score 2*(y == t) + t
    # ranks rows 0, 3, 1, 2: curve 1, 2, 1.5, 0, area 4.5. Diagonal ends at 0.
    assert M.uplift_auc_score(Y4, U4, T4) == pytest.approx(0.5 / 4.5)


# Eight rows sorted by uplift: the top half treated responders and control
# non-responders, the bottom half the other way round.
Y8 = [1, 1, 0, 0, 0, 0, 1, 0]
T8 = [1, 1, 0, 0, 1, 1, 0, 0]
U8 = [8, 7, 6, 5, 4, 3, 2, 1]


@pytest.mark.parametrize(
    ("strategy", "k", "expected"),
    [
        ("overall", 0.5, 1.0),  # rows 0-3: treated 1, 1; control 0, 0
        ("overall", 4, 1.0),  # an int k counts rows
        ("by_group", 0.5, 1.0),  # treated rows 0, 1; control rows 2, 3
        ("by_group", 0.75, 1 / 3),  # int(4 * 0.75) = 3 per arm: 2/3 - 1/3
        ("overall", 0.25, math.nan),  # rows 0, 1 are both treated: no control
    ],
)
def test_uplift_at_k_by_hand(strategy, k, expected):
    got = M.uplift_at_k(Y8, U8, T8, strategy=strategy, k=k)
    assert got == pytest.approx(expected, nan_ok=True)


def test_uplift_at_k_breaks_ties_like_sklift():
    # All scores tie. scikit-uplift reverses a stable ascending sort, so the
    # top half is rows 7, 6, 5, 4: treated rows 6, 4 (0, 0), control 7, 5 (1, 0).
    y = [1, 0, 0, 0, 0, 0, 0, 1]
    t = [1, 0, 1, 0, 1, 0, 1, 0]
    assert M.uplift_at_k(y, np.zeros(8), t, strategy="overall", k=0.5) == -0.5


def test_uplift_at_k_default_strategy_is_by_group():
    y, t, u = [1, 0, 0, 0, 1, 0], [1, 1, 0, 1, 0, 0], [6, 5, 4, 3, 2, 1]
    # overall: rows 0-2, treated 1, 0 against control 0.
    assert M.uplift_at_k(y, u, t, strategy="overall", k=0.5) == 0.5
    # by_group: int(3 * 0.5) = 1 row per arm, treated row 0 (1) against control row 2 (0).
    assert M.uplift_at_k(y, u, t, k=0.5) == 1.0


def test_uplift_by_percentile_by_hand():
    table = M.uplift_by_percentile(Y8, U8, T8, bins=2)
    assert table.index.tolist() == ["0-50", "50-100"]
    assert table["n_treatment"].tolist() == [2, 2]
    assert table["n_control"].tolist() == [2, 2]
    assert table["response_rate_treatment"].tolist() == [1.0, 0.0]
    assert table["response_rate_control"].tolist() == [0.0, 0.5]
    assert table["uplift"].tolist() == [1.0, -0.5]
    # sqrt(0 + 0.5 * 0.5 / 2)
    assert table["std"].tolist() == pytest.approx([0.0, math.sqrt(0.125)])


def test_uplift_by_percentile_uneven_bins_and_labels():
    # array_split gives the extra rows to the first bins: 3, 3, 2.
    table = M.uplift_by_percentile(Y8, U8, T8, bins=3)
    assert table.index.tolist() == ["0-33", "33-67", "67-100"]
    assert (table["n_treatment"] + table["n_control"]).tolist() == [3, 3, 2]


def test_uplift_calibration_by_hand():
    u = [0.7, 0.4, 0.4, 0.3, 0.0, 0.0, 0.0, -0.4]
    table = M.uplift_calibration(Y8, u, T8, bins=2)
    assert table["n"].tolist() == [4, 4]
    assert table["n_treatment"].tolist() == [2, 2]
    assert table["mean_predicted"].tolist() == pytest.approx([0.45, -0.1])
    assert table["observed_uplift"].tolist() == [1.0, -0.5]
    # sqrt(0 + 0) and sqrt(0 + 0.5 * 0.5 / 2)
    assert table["std_error"].tolist() == pytest.approx([0.0, math.sqrt(0.125)])
    # |0.45 - 1| and |-0.1 + 0.5| with equal weights.
    assert M.uplift_calibration_error(Y8, u, T8, bins=2) == pytest.approx((0.55 + 0.4) / 2)


def test_uplift_calibration_error_weights_bins_by_count():
    # Bins of 4 and 3 rows. Rows 0-3: treated 1, 0 vs control 0, 0 -> 0.5,
    # predicted 0.4. Rows 4-6: treated 1 vs control 0, 1 -> 0.5, predicted 0.1.
    y, t = [1, 0, 0, 0, 1, 0, 1], [1, 1, 0, 0, 1, 0, 0]
    u = [0.4, 0.4, 0.4, 0.4, 0.1, 0.1, 0.1]
    assert M.uplift_calibration_error(y, u, t, bins=2) == pytest.approx((4 * 0.1 + 3 * 0.4) / 7)


def test_uplift_calibration_error_skips_bins_missing_an_arm():
    # All scores tie, so rows are taken in reverse: bins 7-5, 4-2, 1-0. The last
    # bin is all treated (NaN uplift); the others observe -0.5 and 0.
    table = M.uplift_calibration(Y8, np.zeros(8), T8, bins=3)
    assert table["observed_uplift"].tolist() == pytest.approx([-0.5, 0.0, math.nan], nan_ok=True)
    assert M.uplift_calibration_error(Y8, np.zeros(8), T8, bins=3) == pytest.approx(0.25)


# --------------------------------------------------------------------------- uplift calibration, simulated


def _known_uplift(rng, n):
    x = rng.uniform(size=n)
    tau = 0.3 * x - 0.05  # true uplift from -0.05 to 0.25
    treatment = rng.integers(0, 2, n)
    y = rng.binomial(1, 0.3 + treatment * tau)
    return y, tau, treatment


def test_uplift_calibration_recovers_known_uplift(rng):
    y, tau, t = _known_uplift(rng, 100_000)
    table = M.uplift_calibration(y, tau, t)
    gap = (table["observed_uplift"] - table["mean_predicted"]).abs()
    assert (gap < 4 * table["std_error"]).all()
    assert table["mean_predicted"].is_monotonic_decreasing
    assert M.uplift_calibration_error(y, tau, t) < 0.02


def test_uplift_calibration_error_measures_known_offset(rng):
    y, tau, t = _known_uplift(rng, 100_000)
    assert M.uplift_calibration_error(y, tau + 0.1, t) == pytest.approx(0.1, abs=0.015)


# --------------------------------------------------------------------------- cross-check with scikit-uplift


@pytest.fixture
def sklift_metrics():
    module = pytest.importorskip("sklift.metrics")
    # sklift 0.5.1 calls sklearn's deprecated stable_cumsum, pandas' deprecated
    # set_index(inplace=...) and takes means of empty slices: not our warnings.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.filterwarnings("ignore", message="The inplace keyword")
        yield module


@pytest.fixture(
    params=[
        (300, None, "int", 0.2),
        (1_000, 1, "int", 0.2),  # many ties
        (2_000, 0, "bool", 0.2),  # a handful of distinct scores
        (5_000, 2, "pandas", 0.2),
        # Control responders outnumber treated non-responders: the other branch
        # of sklift's perfect uplift curve.
        (1_000, 1, "int", 0.7),
    ],
    ids=["300-no-ties", "1000-ties", "2000-bool", "5000-pandas", "1000-high-response"],
)
def uplift_data(request, rng):
    """(ours, theirs): the same data, given to churnml in several dtypes and to sklift as int."""
    n, decimals, kind, base = request.param
    y, u, t = _simulate_uplift(rng, n, decimals=decimals, base=base)
    theirs = (y, u, t)
    if kind == "bool":
        ours = (y.astype(bool), u, t.astype(bool))
    elif kind == "pandas":
        index = rng.permutation(n) + 10  # a shuffled index must not matter
        ours = tuple(pd.Series(a, index=index) for a in (y, u, t))
    else:
        ours = theirs
    return ours, theirs


@pytest.mark.parametrize("name", ["qini_curve", "uplift_curve"])
def test_curves_equal_sklift(sklift_metrics, uplift_data, name):
    ours, theirs = uplift_data
    x1, y1 = getattr(M, name)(*ours)
    x2, y2 = getattr(sklift_metrics, name)(*theirs)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)


def test_perfect_curves_equal_sklift(sklift_metrics, uplift_data):
    (y, _, t), (y0, _, t0) = uplift_data
    for ours, theirs in [
        (M.perfect_uplift_curve(y, t), sklift_metrics.perfect_uplift_curve(y0, t0)),
        (M.perfect_qini_curve(y, t), sklift_metrics.perfect_qini_curve(y0, t0)),
        (
            M.perfect_qini_curve(y, t, negative_effect=False),
            sklift_metrics.perfect_qini_curve(y0, t0, negative_effect=False),
        ),
    ]:
        np.testing.assert_array_equal(ours[0], theirs[0])
        np.testing.assert_array_equal(ours[1], theirs[1])


@pytest.mark.parametrize("negative_effect", [True, False])
def test_qini_auc_score_equals_sklift(sklift_metrics, uplift_data, negative_effect):
    ours, theirs = uplift_data
    assert M.qini_auc_score(*ours, negative_effect=negative_effect) == (
        sklift_metrics.qini_auc_score(*theirs, negative_effect=negative_effect)
    )


def test_uplift_auc_score_equals_sklift(sklift_metrics, uplift_data):
    ours, theirs = uplift_data
    assert M.uplift_auc_score(*ours) == sklift_metrics.uplift_auc_score(*theirs)


@pytest.mark.parametrize("strategy", ["overall", "by_group"])
# 0.333 leaves a fraction of a row; 0.57 * 300 == 170.99999999999997 (sklift truncates).
@pytest.mark.parametrize("k", [0.05, 0.3, 0.333, 0.57, 7, 100])
def test_uplift_at_k_equals_sklift(sklift_metrics, uplift_data, strategy, k):
    ours, theirs = uplift_data
    expected = sklift_metrics.uplift_at_k(*theirs, strategy=strategy, k=k)
    got = M.uplift_at_k(*ours, strategy=strategy, k=k)
    assert got == expected or (math.isnan(got) and math.isnan(expected))


@pytest.mark.parametrize("strategy", ["overall", "by_group"])
@pytest.mark.parametrize("bins", [1, 3, 10, 17])
def test_uplift_by_percentile_equals_sklift(sklift_metrics, uplift_data, strategy, bins):
    ours, theirs = uplift_data
    got = M.uplift_by_percentile(*ours, bins=bins, strategy=strategy)
    expected = sklift_metrics.uplift_by_percentile(*theirs, bins=bins, strategy=strategy, std=True)
    expected = expected.rename(columns={"std_uplift": "std"})[got.columns]
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_exact=True)


def test_uplift_calibration_bins_equal_sklift(sklift_metrics, uplift_data):
    ours, theirs = uplift_data
    got = M.uplift_calibration(*ours, bins=10)
    expected = sklift_metrics.uplift_by_percentile(*theirs, bins=10, std=True)
    np.testing.assert_array_equal(got["observed_uplift"], expected["uplift"])
    np.testing.assert_array_equal(got["std_error"], expected["std_uplift"])
    np.testing.assert_array_equal(got["n_treatment"], expected["n_treatment"])
    np.testing.assert_array_equal(got["n_control"], expected["n_control"])


# --------------------------------------------------------------------------- churn: hand-worked and scikit-learn


def test_churn_scores_by_hand():
    assert M.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    # Precision at each positive: 1/1 at 0.8, 2/3 at 0.35; mean 5/6.
    assert M.pr_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(5 / 6)
    assert M.brier_score([0, 1], [0.2, 0.6]) == pytest.approx((0.04 + 0.16) / 2)
    assert M.log_loss([0, 1], [0.5, 0.5]) == pytest.approx(math.log(2))


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (M.roc_auc, skm.roc_auc_score),
        (M.pr_auc, skm.average_precision_score),
        (M.brier_score, skm.brier_score_loss),
        (M.log_loss, skm.log_loss),
    ],
)
def test_churn_scores_equal_sklearn(rng, ours, theirs):
    p = rng.uniform(size=2_000)
    y = rng.binomial(1, p)
    assert ours(y, p) == theirs(y, p)


@pytest.mark.parametrize("strategy", ["quantile", "uniform"])
@pytest.mark.parametrize("n_bins", [1, 5, 10, 30])
def test_reliability_table_equals_sklearn_calibration_curve(rng, strategy, n_bins):
    p = np.round(rng.beta(2, 5, size=3_000), 2)  # ties leave some quantile bins empty
    y = rng.binomial(1, p)
    table = M.reliability_table(y, p, n_bins=n_bins, strategy=strategy)
    prob_true, prob_pred = skcal.calibration_curve(y, p, n_bins=n_bins, strategy=strategy)
    np.testing.assert_allclose(table["observed_rate"], prob_true, rtol=0, atol=1e-12)
    np.testing.assert_allclose(table["mean_predicted"], prob_pred, rtol=0, atol=1e-12)
    assert table["n"].sum() == len(y)


def test_reliability_table_by_hand():
    table = M.reliability_table([0, 1, 1, 1], [0.1, 0.2, 0.8, 0.9], n_bins=2, strategy="uniform")
    assert table["bin"].tolist() == [0, 1]
    assert table["n"].tolist() == [2, 2]
    assert table["mean_predicted"].tolist() == pytest.approx([0.15, 0.85])
    assert table["observed_rate"].tolist() == [0.5, 1.0]


def test_reliability_table_keeps_bin_numbers_of_empty_bins():
    table = M.reliability_table([0, 1, 1], [0.05, 0.15, 0.95], n_bins=10, strategy="uniform")
    assert table["bin"].tolist() == [0, 1, 9]


def test_expected_calibration_error_by_hand():
    # Bins {0.1, 0.2} and {0.8, 0.9}: |0.5 - 0.15| and |1 - 0.85|, equal weights.
    got = M.expected_calibration_error(
        [0, 1, 1, 1], [0.1, 0.2, 0.8, 0.9], n_bins=2, strategy="uniform"
    )
    assert got == pytest.approx(0.25)


def test_expected_calibration_error_weights_bins_by_count():
    # Bin {0.1, 0.2, 0.3}: |1/3 - 0.2|, weight 3/4; bin {0.9}: |1 - 0.9|, weight 1/4.
    got = M.expected_calibration_error(
        [0, 0, 1, 1], [0.1, 0.2, 0.3, 0.9], n_bins=2, strategy="uniform"
    )
    assert got == pytest.approx(0.75 * (1 / 3 - 0.2) + 0.25 * 0.1)


def test_expected_calibration_error_of_a_constant_forecast():
    # Every row predicted 0.3, half of them churn: one bin, error 0.2.
    assert M.expected_calibration_error([0, 1] * 50, [0.3] * 100) == pytest.approx(0.2)


@pytest.mark.parametrize("strategy", ["quantile", "uniform"])
def test_expected_calibration_error_is_near_zero_when_calibrated(rng, strategy):
    p = rng.uniform(size=200_000)
    y = rng.binomial(1, p)
    assert M.expected_calibration_error(y, p, strategy=strategy) < 0.01


@pytest.mark.parametrize("strategy", ["quantile", "uniform"])
def test_expected_calibration_error_measures_known_miscalibration(rng, strategy):
    # Predicting half the true probability: every bin is off by mean(p) / 2, and
    # E[p / 2] = 0.25 for p ~ U(0, 1).
    p = rng.uniform(size=200_000)
    y = rng.binomial(1, p)
    got = M.expected_calibration_error(y, p / 2, strategy=strategy)
    assert got == pytest.approx(0.25, abs=0.01)


# Ten rows; rows 1-3 tie at 0.8 and rows 4-5 at 0.5. Positives: rows 0, 1, 5
# (base rate 0.3).
Y10 = [1, 1, 0, 0, 0, 1, 0, 0, 0, 0]
S10 = [0.9, 0.8, 0.8, 0.8, 0.5, 0.5, 0.3, 0.2, 0.1, 0.1]


@pytest.mark.parametrize(
    ("k", "lift", "capture"),
    [
        (0.1, 1 / 0.3, 1 / 3),  # row 0
        (0.25, (2 / 3) / 0.3, 2 / 3),  # ceil(2.5) = 3 rows: 0, 1, 2
        (0.3, (2 / 3) / 0.3, 2 / 3),  # rows 0, 1, 2: tied rows 1, 2 before row 3
        (0.5, (2 / 5) / 0.3, 2 / 3),  # rows 0-4: row 4 beats tied row 5 by coming first
        (0.6, (3 / 6) / 0.3, 1.0),
        (1.0, 1.0, 1.0),
    ],
)
def test_lift_and_capture_at_k_by_hand(k, lift, capture):
    assert M.lift_at_k(Y10, S10, k=k) == pytest.approx(lift)
    assert M.capture_at_k(Y10, S10, k=k) == pytest.approx(capture)


def test_lift_at_k_is_not_fooled_by_float_noise():
    # 0.07 * 100 == 7.000000000000001: a bare ceil would take 8 rows and
    # catch the positive in row 7.
    y = np.zeros(100, dtype=int)
    y[[0, 7, 50, 99]] = 1
    score = np.arange(100, 0, -1)
    assert M.capture_at_k(y, score, k=0.07) == 0.25
    assert M.lift_at_k(y, score, k=0.07) == pytest.approx((1 / 7) / 0.04)


def test_lift_at_k_ties_follow_row_order():
    # Moving positive row 5 ahead of its tie partner (row 4) brings it into the top 5.
    y = [1, 1, 0, 0, 1, 0, 0, 0, 0, 0]
    s = [0.9, 0.8, 0.8, 0.8, 0.5, 0.5, 0.3, 0.2, 0.1, 0.1]
    assert M.capture_at_k(y, s, k=0.5) == 1.0
    assert M.capture_at_k(Y10, S10, k=0.5) == pytest.approx(2 / 3)


def test_auc_by_group_by_hand():
    y = [0, 1, 0, 1, 1, 0, 0]
    s = [0.1, 0.9, 0.3, 0.2, 0.8, 0.5, 0.6]
    g = ["a", "a", "b", "b", "c", "d", "d"]
    table = M.auc_by_group(y, s, g, min_count=2)
    assert table["group"].tolist() == ["a", "b", "c", "d"]
    assert table["n"].tolist() == [2, 2, 1, 2]
    assert table["positives"].tolist() == [1, 1, 1, 0]
    # a ranks right, b ranks wrong, c is too small, d has one class.
    assert table["roc_auc"].tolist() == pytest.approx([1.0, 0.0, math.nan, math.nan], nan_ok=True)


def test_auc_by_group_equals_sklearn_per_group(rng):
    n = 3_000
    g = rng.choice(np.array(["email", "organic", "paid", "tiny"]), size=n, p=[0.3, 0.3, 0.39, 0.01])
    p = rng.uniform(size=n)
    y = rng.binomial(1, p)
    table = M.auc_by_group(y, p, g, min_count=50).set_index("group")
    for label in ["email", "organic", "paid"]:
        mask = g == label
        assert table.loc[label, "roc_auc"] == skm.roc_auc_score(y[mask], p[mask])
        assert table.loc[label, "n"] == mask.sum()
    assert table.loc["tiny", "n"] < 50
    assert math.isnan(table.loc["tiny", "roc_auc"])


# --------------------------------------------------------------------------- input checks


@pytest.mark.parametrize("name", UPLIFT_METRICS)
def test_every_uplift_metric_checks_lengths(name):
    with pytest.raises(
        ValueError,
        match=rf"^The `uplift` parameter of `{name}` must be `an array as long as y_true \(3\)`\. "
        r"Got `length 2` instead\.$",
    ):
        getattr(M, name)([0, 1, 0], [0.1, 0.2], [0, 1, 1])


@pytest.mark.parametrize("name", CHURN_METRICS)
def test_every_churn_metric_checks_lengths(name):
    with pytest.raises(ValueError, match=rf"parameter of `{name}` must be `an array as long as"):
        getattr(M, name)([0, 1, 0], [0.1, 0.2])


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([0, 1], [[0.1], [0.2]], [0, 1]), r"`uplift` .* must be `a 1-D array`\. Got `an array of shape \(2, 1\)`"),
        (([], [], []), r"`y_true` .* must be `a non-empty array`\. Got `an empty array`"),
        (([0, 1, 0], [0.1, np.nan, 0.3], [0, 1, 1]), r"`uplift` .* must be `an array without NaN`\. Got `1 NaN values`"),
        (([0, 1, 0], [0.1, np.inf, 0.3], [0, 1, 1]), r"`uplift` .* must be `an array of finite numbers`\. Got `inf`"),
        (([0, 1, 2], [0.1, 0.2, 0.3], [0, 1, 1]), r"`y_true` .* must be `0/1 or bool`\. Got `values \[0, 1, 2\]`"),
        (([0, 1, 1], [0.1, 0.2, 0.3], ["a", "b", "b"]), r"`treatment` .* must be `0/1 or bool`\. Got `dtype <U1`"),
        (([0, 1, 1], [0.1, 0.2, 0.3], [1, 1, 1]), r"`treatment` .* must be `an array holding both 0 and 1`\. Got `only 1`"),
        (([0, 1, 1], ["x", "y", "z"], [0, 1, 1]), r"`uplift` .* must be `an array of numbers`\. Got `dtype <U1`"),
    ],
)
def test_shared_input_check_errors(args, match):
    with pytest.raises(ValueError, match=match):
        M.qini_auc_score(*args)


def test_input_check_names_the_function():
    with pytest.raises(ValueError, match=r"^The `y_prob` parameter of `brier_score` must be "
                       r"`probabilities in \[0, 1\]`\. Got `1\.5` instead\.$"):
        M.brier_score([0, 1], [0.5, 1.5])


def test_one_class_is_rejected_where_it_has_no_answer():
    with pytest.raises(ValueError, match=r"`y_true` parameter of `roc_auc` must be `an array "
                       r"holding both 0 and 1`\. Got `only 0`"):
        M.roc_auc([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"`y_true` parameter of `lift_at_k`"):
        M.lift_at_k([0, 0, 0], [0.1, 0.2, 0.3])
    # One class is fine for scores that are still defined.
    assert M.brier_score([0, 0], [0.0, 0.5]) == pytest.approx(0.125)


def test_bool_and_float_binaries_are_accepted():
    as_int = M.qini_auc_score(Y4, U4, T4)
    assert M.qini_auc_score(np.array(Y4, bool), U4, np.array(T4, bool)) == as_int
    assert M.qini_auc_score(np.array(Y4, float), U4, np.array(T4, float)) == as_int


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: M.uplift_at_k(Y8, U8, T8, strategy="top"),
         r"`strategy` parameter of `uplift_at_k` must be `'by_group' or 'overall'`\. Got `'top'`"),
        (lambda: M.uplift_at_k(Y8, U8, T8, k=1.0),
         r"`k` parameter of `uplift_at_k` must be `a float in \(0, 1\) or an int in \[1, 7\]`"),
        (lambda: M.uplift_at_k(Y8, U8, T8, k=8), r"`k` parameter of `uplift_at_k`.*Got `8`"),
        (lambda: M.uplift_at_k(Y8, U8, T8, k=True), r"`k` parameter of `uplift_at_k`.*Got `True`"),
        (lambda: M.uplift_at_k(Y8, U8, T8, strategy="by_group", k=5),
         r"`k` parameter of `uplift_at_k` must be `at most the control group size \(4\)`"),
        (lambda: M.qini_auc_score(Y4, U4, T4, negative_effect=1),
         r"`negative_effect` parameter of `qini_auc_score` must be `True or False`\. Got `1`"),
        (lambda: M.qini_auc_score([0, 0, 1, 0], U4, T4, negative_effect=False),
         (r"`negative_effect` parameter of `qini_auc_score` must be `True when the treatment's "
          r"overall effect is negative`")),
        (lambda: M.uplift_by_percentile(Y8, U8, T8, bins=8),
         r"`bins` parameter of `uplift_by_percentile` must be `an int at least 1 and at most 7`"),
        (lambda: M.uplift_calibration(Y8, U8, T8, bins=0), r"`bins` parameter of `uplift_calibration`"),
        (lambda: M.reliability_table(Y4, U4, strategy="equal"),
         r"`strategy` parameter of `reliability_table` must be `'quantile' or 'uniform'`"),
        (lambda: M.expected_calibration_error(Y4, U4, n_bins=2.5),
         r"`n_bins` parameter of `expected_calibration_error` must be `an int at least 1`"),
        (lambda: M.lift_at_k(Y4, U4, k=0), r"`k` parameter of `lift_at_k` must be `a float in \(0, 1\]`"),
        (lambda: M.capture_at_k(Y4, U4, k=1.5), r"`k` parameter of `capture_at_k`"),
        (lambda: M.auc_by_group(Y4, U4, ["a", "b", None, "a"]),
         r"`groups` parameter of `auc_by_group` must be `an array without NaN`"),
        (lambda: M.auc_by_group(Y4, U4, list("abba"), min_count=0),
         r"`min_count` parameter of `auc_by_group` must be `an int at least 1`"),
    ],
)
def test_parameter_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_interval_contains_the_estimate(rng):
    y, u, t = _simulate_uplift(rng, 5_000)
    ci = M.bootstrap_interval(M.qini_auc_score, y, u, t, n_boot=100)
    assert ci["estimate"] == M.qini_auc_score(y, u, t)
    assert ci["low"] < ci["estimate"] < ci["high"]
    assert ci["std"] > 0


def test_bootstrap_interval_matches_normal_theory_for_a_rate(rng):
    # For a rate p on n rows the bootstrap distribution is close to normal with
    # sd sqrt(p(1-p)/n), so a 90% interval spans about 1.645 sd each side.
    n = 10_000
    y = rng.binomial(1, 0.3, size=n)

    def positive_rate(y_true):
        return float(y_true.mean())

    ci = M.bootstrap_interval(positive_rate, y, n_boot=2_000, alpha=0.1)
    se = math.sqrt(0.3 * 0.7 / n)
    assert ci["std"] == pytest.approx(se, rel=0.08)
    assert ci["high"] - ci["estimate"] == pytest.approx(1.645 * se, rel=0.12)
    assert ci["estimate"] - ci["low"] == pytest.approx(1.645 * se, rel=0.12)


def test_bootstrap_interval_narrows_with_more_rows(rng):
    small = M.bootstrap_interval(M.roc_auc, *_simulated_churn(rng, 1_000), n_boot=100)
    large = M.bootstrap_interval(M.roc_auc, *_simulated_churn(rng, 16_000), n_boot=100)
    # The width shrinks like 1 / sqrt(n): a quarter, with room for noise.
    assert (large["high"] - large["low"]) < 0.4 * (small["high"] - small["low"])
    assert large["std"] < 0.4 * small["std"]


def _simulated_churn(rng, n):
    p = rng.uniform(size=n)
    return rng.binomial(1, p), p


def test_bootstrap_interval_keeps_arm_sizes_for_uplift_metrics(rng):
    y, u, t = _simulate_uplift(rng, 500)
    seen = []

    def treated_count(y_true, uplift, treatment):
        seen.append(int(treatment.sum()))
        return 0.0

    M.bootstrap_interval(treated_count, y, u, t, n_boot=20)
    assert seen == [int(t.sum())] * 21  # the estimate plus 20 resamples

    seen.clear()
    M.bootstrap_interval(treated_count, y, u, t, n_boot=20, stratify=np.zeros(500))
    assert len(set(seen[1:])) > 1  # without strata the arm sizes vary


def test_bootstrap_interval_stratifies_by_given_labels(rng):
    y, p = _simulated_churn(rng, 500)
    seen = []

    def positives(y_true, y_prob):
        seen.append(int(y_true.sum()))
        return 0.0

    M.bootstrap_interval(positives, y, p, n_boot=20, stratify=y)
    assert seen == [int(y.sum())] * 21
    seen.clear()
    M.bootstrap_interval(positives, y, p, n_boot=20)
    assert len(set(seen[1:])) > 1  # churn metrics are not stratified by default


def test_bootstrap_interval_passes_keyword_arguments(rng):
    y, u, t = _simulate_uplift(rng, 2_000)
    ci = M.bootstrap_interval(M.uplift_at_k, y, u, t, n_boot=20, strategy="overall", k=0.2)
    assert ci["estimate"] == M.uplift_at_k(y, u, t, strategy="overall", k=0.2)
    assert ci["estimate"] != M.uplift_at_k(y, u, t)


def test_bootstrap_interval_is_reproducible(rng):
    y, p = _simulated_churn(rng, 1_000)
    first = M.bootstrap_interval(M.brier_score, y, p, n_boot=30, seed=1)
    assert M.bootstrap_interval(M.brier_score, y, p, n_boot=30, seed=1) == first
    assert M.bootstrap_interval(M.brier_score, y, p, n_boot=30, seed=2) != first


def test_bootstrap_interval_is_fast_enough(rng):
    y, u, t = _simulate_uplift(rng, 20_000)
    start = time.perf_counter()
    M.bootstrap_interval(M.qini_auc_score, y, u, t, n_boot=200)
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: M.bootstrap_interval(M.uplift_by_percentile, Y8, U8, T8, bins=2),
         (r"`metric` parameter of `bootstrap_interval` must be `a function returning a number`\. "
          r"Got `uplift_by_percentile`")),
        (lambda: M.bootstrap_interval(M.roc_auc, Y4, U4[:3]),
         r"`y_prob` parameter of `bootstrap_interval` must be `an array as long as y_true \(4\)`"),
        (lambda: M.bootstrap_interval(M.roc_auc, Y4, U4, n_boot=1),
         r"`n_boot` parameter of `bootstrap_interval` must be `an int at least 2`"),
        (lambda: M.bootstrap_interval(M.roc_auc, Y4, U4, alpha=1.0),
         r"`alpha` parameter of `bootstrap_interval` must be `a float in \(0, 1\)`"),
        (lambda: M.bootstrap_interval(M.roc_auc, Y4, U4, T4),
         r"`arrays` parameter of `bootstrap_interval` must be `1 to 2 arrays"),
    ],
)
def test_bootstrap_interval_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_public_names():
    assert sorted(M.__all__) == sorted(
        [*UPLIFT_METRICS, *CHURN_METRICS, "perfect_qini_curve", "perfect_uplift_curve",
         "auc_by_group", "bootstrap_interval",
         # several channels (tests/test_policy_metrics.py)
         "expected_policy_value", "multiarm_qini_auc_score", "multiarm_qini_curve", "policy_value",
         "policy_value_interval"]
    )
    assert all(callable(getattr(M, name)) for name in M.__all__)
