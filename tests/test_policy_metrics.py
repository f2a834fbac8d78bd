"""Multi-arm Qini and off-policy value: hand-worked answers, the one-channel special case, known truths."""

from __future__ import annotations

import numpy as np
import pytest

from churnml import metrics as M


def test_multiarm_qini_by_hand():
    # Ranked by best predicted uplift: row 1 (b, got b, no), row 0 (a, got a, yes),
    # row 3 (b, control, no), row 2 (a, control, yes): a's treated and control responders cancel at the end.
    x, q = M.multiarm_qini_curve([1, 0, 1, 0], [[0.3, 0.1], [0.2, 0.4], [0.1, 0.0], [0.0, 0.2]],
                                 ["a", "b", "control", "control"])
    assert x.tolist() == [0, 1, 2, 3, 4] and q.tolist() == [0.0, 0.0, 1.0, 1.0, 0.0]
    auc = M.multiarm_qini_auc_score([1, 0, 1, 0], [[0.3, 0.1], [0.2, 0.4], [0.1, 0.0], [0.0, 0.2]],
                                    ["a", "b", "control", "control"])
    # Trapezoids of width 1/4 under the curve divided by 4: 0, 1/8, 1/4, 1/8.
    assert auc == pytest.approx(0.25 * (0 + 0.125 + 0.25 + 0.125))


def test_one_channel_multiarm_qini_is_the_qini_curve(seed):
    rng = np.random.default_rng(seed)
    y, t = rng.integers(0, 2, 500), rng.integers(0, 2, 500)
    u = np.round(rng.normal(size=500), 1)  # ties, which both must treat alike
    x1, q1 = M.qini_curve(y, u, t)
    x2, q2 = M.multiarm_qini_curve(y, u[:, None], np.where(t == 1, "push", "control"))
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_allclose(q1, q2, rtol=0, atol=1e-9)


def test_recommending_the_right_channel_scores_higher(seed):
    """Channel a works for x > 0, b for x < 0: the model that knows it beats the one that has them swapped."""
    rng = np.random.default_rng(seed)
    n = 6000
    x = rng.normal(size=n)
    arm = rng.choice(["control", "a", "b"], n)
    p = 0.2 + 0.25 * (arm == "a") * (x > 0) + 0.25 * (arm == "b") * (x < 0)
    y = rng.random(n) < p
    right = np.column_stack([0.25 * (x > 0), 0.25 * (x < 0)]) + 0.01 * np.abs(x)[:, None]
    swapped = right[:, ::-1]
    assert M.multiarm_qini_auc_score(y, right, arm) > M.multiarm_qini_auc_score(y, swapped, arm) + 0.02


def test_policy_value_by_hand():
    y = [1, 0, 1, 1, 0, 0]
    arm = ["a", "a", "control", "control", "a", "control"]
    policy = ["a", "a", "a", "control", "control", "control"]
    # Shares 1/2 each. Under the policy: rows 0, 1 (a, got a) and 3, 5 (control, got control), weight 2
    # each: (1 + 0 + 1 + 0) / 4 = 0.5. Everyone control: rows 2, 3, 5: 2/3. Cost: 3 messages of 0.1 over 6.
    assert M.policy_value(y, arm, policy, costs={"a": 0.1}) == pytest.approx(0.5 - 2 / 3 - 0.05)
    # Doubly robust with an outcome model that is exactly right on these rows adds nothing to it.
    outcome = np.array([[0.5, 0.25]] * 6)
    dr = M.policy_value(y, arm, policy, costs={"a": 0.1}, outcome=outcome, method="dr")
    # m(policy) averages 3 * 0.25 + 3 * 0.5 over 6; the corrections: rows 0,1 (y - 0.25) * 2, rows 3,5 (y - 0.5) * 2.
    under_policy = (3 * 0.25 + 3 * 0.5 + 2 * (0.75 - 0.25) + 2 * (1 - 0.5 + 0 - 0.5)) / 6
    under_control = (6 * 0.5 + 2 * ((1 - 0.5) + (1 - 0.5) + (0 - 0.5))) / 6
    assert dr == pytest.approx(under_policy - under_control - 0.05)


def _world(rng, n, spread: float = 0.05):
    """Randomised data over control, a and b with known return probabilities under every arm.

    ``spread`` is how much the return probability varies with x[:, 1] in every arm.
    """
    x = rng.normal(size=(n, 2))
    base = spread * np.tanh(x[:, 1])[:, None]
    p = (base + np.column_stack([np.full(n, 0.4),
                                 0.45 + 0.15 * (x[:, 0] > 0),
                                 0.42 + 0.2 * (x[:, 0] < -0.5)])).clip(0.01, 0.99)
    arm = rng.choice(np.array(["control", "a", "b"]), n, p=[0.4, 0.3, 0.3])
    got = np.select([arm == "control", arm == "a"], [p[:, 0], p[:, 1]], p[:, 2])
    y = rng.random(n) < got
    policy = np.where(x[:, 0] > 0, "a", np.where(x[:, 0] < -0.5, "b", "control"))
    return x, p, arm, y, policy


@pytest.mark.parametrize("method", ["ipw", "dr"])
def test_estimates_cover_the_known_value(method):
    """Over 40 randomised data sets the 90% interval covers the true value about 90% of the time."""
    costs = {"a": 0.02, "b": 0.05}
    covered, errors = 0, []
    for r in range(40):
        rng = np.random.default_rng(1000 + r)
        _, p, arm, y, policy = _world(rng, 3000)
        truth = M.expected_policy_value(p, policy, channels=["a", "b"], costs=costs)
        noisy = np.clip(p + rng.normal(0, 0.05, p.shape), 0.01, 0.99)  # an imperfect outcome model
        ci = M.policy_value_interval(y, arm, policy, costs=costs, channels=["a", "b"], n_boot=150, alpha=0.1,
                                     seed=r, method=method, outcome=noisy if method == "dr" else None,
                                     propensity={"control": 0.4, "a": 0.3, "b": 0.3})
        covered += ci["low"] <= truth <= ci["high"]
        errors.append(ci["estimate"] - truth)
    assert 31 <= covered <= 40, covered
    assert abs(np.mean(errors)) < 3 * np.std(errors) / np.sqrt(40)  # no bias


def test_doubly_robust_with_a_good_outcome_model_is_tighter_and_survives_a_bad_one(seed):
    # Who returns depends a lot on x: an outcome model that knows it removes most of the noise.
    rng = np.random.default_rng(seed)
    _, p, arm, y, policy = _world(rng, 4000, spread=0.38)
    truth = M.expected_policy_value(p, policy, channels=["a", "b"])
    kw = {"channels": ["a", "b"], "n_boot": 200, "seed": 1}
    ipw = M.policy_value_interval(y, arm, policy, **kw)
    good = M.policy_value_interval(y, arm, policy, outcome=p, method="dr", **kw)
    assert good["std"] < 0.92 * ipw["std"]
    # A constant outcome model is wrong, but the known randomisation keeps the estimate right.
    bad = M.policy_value_interval(y, arm, policy, outcome=np.full(p.shape, 0.5), method="dr", **kw)
    assert abs(bad["estimate"] - truth) < 4 * bad["std"]


def test_per_row_propensities_weight_an_unequal_logging_policy(seed):
    """Data logged by an epsilon-greedy policy (arm depends on x): only the given propensities make it right."""
    rng = np.random.default_rng(seed)
    n = 20000
    x, p, _, _, target = _world(rng, n)
    favourite = np.where(x[:, 1] > 0, "a", "control")  # the logging policy's choice
    e = np.where(np.array(["control", "a", "b"])[None, :] == favourite[:, None], 0.8, 0.1)
    arm = np.array([rng.choice(["control", "a", "b"], p=row) for row in e])
    got = np.select([arm == "control", arm == "a"], [p[:, 0], p[:, 1]], p[:, 2])
    y = rng.random(n) < got
    truth = M.expected_policy_value(p, target, channels=["a", "b"])
    right = M.policy_value_interval(y, arm, target, propensity=e, channels=["a", "b"], n_boot=100)
    assert abs(right["estimate"] - truth) < 4 * right["std"]


@pytest.mark.parametrize("call,match", [
    (lambda: M.policy_value([1, 0], ["a"], ["a", "a"]), r"`arm` parameter of `policy_value` must be `an array as long"),
    (lambda: M.policy_value([1, 0], ["a", "c"], ["a", "x"], channels=["a", "c"]),
     r"`arm` parameter of `policy_value` must be `'control' or one of the channels"),
    (lambda: M.policy_value([1, 0], ["a", "control"], ["a", "a"], costs={"a": -1}), r"`costs` parameter"),
    (lambda: M.policy_value([1, 0], ["a", "control"], ["a", "a"], method="dr"), r"`outcome` parameter"),
    (lambda: M.policy_value([1, 0], ["a", "control"], ["a", "a"], propensity={"a": 1.0}),
     r"`propensity` parameter of `policy_value` must be `a probability for every arm"),
    (lambda: M.multiarm_qini_curve([1, 0], [[0.1], [0.2]], ["a", "b"], channels=["a"]),
     r"`arm` parameter of `multiarm_qini_curve`"),
    (lambda: M.multiarm_qini_curve([1, 0], [[0.1, 0.2]], ["a", "control"]), r"`uplift` parameter .* shape \(2, 1\)"),
])
def test_bad_inputs_get_the_shared_message(call, match):
    with pytest.raises(ValueError, match=match):
        call()
