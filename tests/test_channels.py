"""Multi-channel recall: the scoring config's channels, the budgeted assignment and its holdout."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linprog
from scipy.sparse import csr_matrix, eye, kron, vstack

from churnml.assignment import NONE, assign_channels
from churnml.config import ScoreConfig, load_score_config
from churnml.exceptions import ConfigError
from churnml.scoring import recall_list


def _score_yaml(tmp_path, text: str):
    path = tmp_path / "batch.yaml"
    path.write_text("dataset: dataset.yaml\n" + text)
    return path


def test_channel_costs_and_caps_come_from_the_scoring_config(tmp_path):
    cfg = load_score_config(_score_yaml(tmp_path, "contact_cost: 0.1\nbudget: {max_cost: 7.5}\n"
                                                  "channels:\n  letter: {cost: 0.5, max_contacts: 3}\n  chat: {}\n"))
    assert cfg.channel_cost("letter") == 0.5 and cfg.channels["letter"].max_contacts == 3
    # A channel without its own cost, listed or not, costs contact_cost.
    assert cfg.channel_cost("chat") == 0.1 and cfg.channel_cost("other") == 0.1
    assert cfg.channels["chat"].max_contacts is None and cfg.budget.max_cost == 7.5


@pytest.mark.parametrize("name", ["control", " Control", ""])
def test_a_channel_named_control_or_nothing_is_refused_in_one_line(tmp_path, name):
    path = _score_yaml(tmp_path, f"channels:\n  '{name}': {{cost: 1}}\n")
    with pytest.raises(ConfigError) as info:
        load_score_config(path)
    assert len(str(info.value).splitlines()) == 1
    assert "channels" in str(info.value) and "not 'control'" in str(info.value)


@pytest.mark.parametrize("bad", ["{cost: -1}", "{max_contacts: -2}", "{price: 1}"])
def test_bad_channel_settings_are_refused(tmp_path, bad):
    with pytest.raises(ConfigError, match=r"channels\.push\."):
        load_score_config(_score_yaml(tmp_path, f"channels:\n  push: {bad}\n"))


# --------------------------------------------------------------------------- the assignment


def _value(net, choice):
    on = choice != NONE
    return float(net[np.flatnonzero(on), choice[on]].sum())


def test_without_budgets_each_user_gets_the_best_positive_channel():
    net = np.array([[0.30, 0.50, 0.10], [0.20, 0.10, -0.5], [-0.1, -0.2, -0.3], [0.0, 0.0, 0.01]])
    # The last user's third channel pays but its uplift is negative: never contacted by it.
    uplift = np.array([[0.3, 0.6, 0.2], [0.2, 0.2, 0.1], [0.1, 0.1, 0.1], [0.05, 0.05, -0.01]])
    got = assign_channels(net, [0.0, 0.1, 0.1], uplift=uplift)
    assert got.tolist() == [1, 0, NONE, NONE]


def test_a_full_channel_sends_its_weakest_users_to_their_next_channel():
    net = np.array([[0.9, 0.5], [0.8, 0.7], [0.7, 0.1], [0.6, -1.0]])
    got = assign_channels(net, [0.0, 0.0], caps=[2, None])
    # Channel 0 keeps its two best (users 0 and 1); user 2 moves to channel 1, user 3 has nowhere to go.
    assert got.tolist() == [0, 0, 1, NONE]


def test_the_count_budget_keeps_the_largest_values():
    net = np.array([[0.1], [0.4], [0.3], [0.2]])
    assert assign_channels(net, [0.0], max_contacts=2).tolist() == [NONE, 0, 0, NONE]


@pytest.mark.parametrize("trial", range(40))
def test_small_problems_are_feasible_and_near_the_best_possible(trial):
    """Against every possible assignment of six users: never breaks a rule, reaches 80% of the best."""
    rng = np.random.default_rng(trial)
    n, k = 6, 3
    uplift = rng.normal(0.05, 0.1, (n, k))
    cost = np.array([0.0, 0.02, 0.08])
    net = uplift - cost
    max_cost, max_contacts = [None, 0.05, 0.1, 0.2][trial % 4], [None, 2, 4][trial % 3]
    caps = rng.choice(np.array([None, 1, 2], dtype=object), size=k).tolist()

    def feasible(c):
        on = c != NONE
        cols = np.maximum(c, 0)
        return not ((on & ((uplift[np.arange(n), cols] <= 0) | (net[np.arange(n), cols] <= 0))).any()
                    or (max_contacts is not None and on.sum() > max_contacts)
                    or (max_cost is not None and cost[c[on]].sum() > max_cost + 1e-12)
                    or any(cp is not None and (c == j).sum() > cp for j, cp in enumerate(caps)))

    best = max(_value(net, np.array(c)) for c in itertools.product(range(-1, k), repeat=n) if feasible(np.array(c)))
    got = assign_channels(net, cost, uplift=uplift, max_contacts=max_contacts, max_cost=max_cost, caps=caps)
    assert feasible(got)
    assert _value(net, got) >= 0.8 * best - 1e-12


def test_large_problems_reach_the_linear_programming_bound():
    """2,000 users, three channels, money, count and channel budgets: within 1% of the LP relaxation's optimum."""
    rng = np.random.default_rng(3)
    n, k = 2000, 3
    uplift = rng.normal(0.03, 0.06, (n, k)) + rng.normal(0, 0.03, (n, 1))
    cost = np.array([0.0, 0.01, 0.05])
    net = uplift - cost
    ok = (uplift > 0) & (net > 0)
    max_cost, max_contacts, caps = 15.0, 800, [300, None, 200]
    rows = [kron(eye(n), np.ones((1, k))), csr_matrix(np.tile(cost, n)[None, :]), csr_matrix(np.ones((1, n * k)))]
    bounds = [1.0] * n + [max_cost, max_contacts]
    for j, cp in enumerate(caps):
        if cp is not None:
            row = np.zeros((1, n * k))
            row[0, j::k] = 1
            rows.append(csr_matrix(row))
            bounds.append(cp)
    lp = linprog(-np.where(ok, net, 0).reshape(-1), A_ub=vstack(rows), b_ub=bounds,
                 bounds=[(0, float(o)) for o in ok.reshape(-1)], method="highs")
    got = assign_channels(net, cost, uplift=uplift, max_contacts=max_contacts, max_cost=max_cost, caps=caps)
    on = got != NONE
    assert cost[got[on]].sum() <= max_cost and on.sum() <= max_contacts and (got == 0).sum() <= 300
    assert _value(net, got) >= 0.99 * -lp.fun


@pytest.mark.parametrize("kwargs,match", [
    ({"net_value": [0.1, 0.2]}, "must be a 2-D array"),
    ({"cost": [0.0, -1.0]}, "`cost` parameter of assign_channels must be 2 finite costs >= 0"),
    ({"caps": [1]}, "`caps` parameter of assign_channels must be 2 counts"),
    ({"max_cost": -1.0}, "`max_cost` parameter of assign_channels must be >= 0"),
])
def test_bad_arguments_are_named(kwargs, match):
    args = {"net_value": [[0.1, 0.2]], "cost": [0.0, 0.0], **kwargs}
    with pytest.raises(ValueError, match=match):
        assign_channels(args.pop("net_value"), args.pop("cost"), **args)


# --------------------------------------------------------------------------- the multi-channel list

CH = ["app", "mail", "text"]


def _channel_case():
    """Six users whose channel can be worked out by hand (costs: app 0, mail 0.01, text 0.1)."""
    scored = pd.DataFrame({
        "user_id": ["u1", "u2", "u3", "u4", "u5", "u6"],
        "p_churn": [0.9, 0.8, 0.7, 0.9, 0.9, 0.2],
        "p_return_if_not": [0.1] * 6,
        "uplift_app": [0.10, -0.05, 0.02, -0.10, 0.03, 0.30],
        "uplift_mail": [0.05, 0.06, 0.03, -0.01, 0.035, 0.30],
        "uplift_text": [0.30, 0.10, 0.02, -0.20, 0.04, 0.30],
        "segment": ["persuadable"] * 5 + ["sure_thing"],
    })
    scored["uplift"] = scored[["uplift_app", "uplift_mail", "uplift_text"]].max(axis=1)
    features = pd.DataFrame({"user_id": scored["user_id"], "days_since_last_activity": [10, 12, 20, 15, 9, 1]})
    return scored, features


def _cfg(**kw):
    channels = {"app": {"cost": 0.0}, "mail": {"cost": 0.01}, "text": {"cost": 0.1}}
    return ScoreConfig(**{"dataset": "x", "holdout_share": 0.0, "channels": channels, **kw})


def test_each_user_gets_the_channel_with_the_largest_net_value():
    scored, features = _channel_case()
    lst, counts = recall_list(scored, features, _cfg(), campaign_id="c", channels=CH)
    got = dict(zip(lst["user_id"], lst["channel"], strict=True))
    # u1: text 0.30-0.1=0.20 beats app 0.10; u2: mail 0.05 beats text 0.10-0.1=0; u3: mail 0.02 beats app 0.02 (tie:
    # first) -> app 0.02 vs mail 0.03-0.01=0.02: app listed first wins; u5: mail 0.025 vs app 0.03 -> app;
    # u4 is put off by every channel; u6 is active and not at risk (not eligible).
    assert got == {"u1": "text", "u2": "mail", "u3": "app", "u5": "app"}
    assert lst["user_id"].tolist() == ["u1", "u2", "u5", "u3"]  # by net value: 0.20, 0.05, 0.03, 0.02
    assert counts["excluded"]["hurt_by_every_channel"] == 1
    assert (lst["group"] == "contact").all() and lst["treated"].all() and not lst["randomised"].any()
    assert {"uplift_app", "uplift_mail", "uplift_text", "channel_reason", "cost", "model_channel"} <= set(lst.columns)
    assert lst.loc[lst.user_id == "u2", "channel_reason"].item().startswith("mail +6.0 pts for 0.01")
    assert counts["channels"]["text"]["cost"] == pytest.approx(0.1) and counts["cost"] == pytest.approx(0.11)


def test_caps_money_and_configured_channels_bind():
    scored, features = _channel_case()
    # Text capped at zero: u1 falls back to app (0.10); u2 to mail.
    lst, _ = recall_list(scored, features, _cfg(channels={"app": {}, "mail": {"cost": 0.01}, "text": {"cost": 0.1,
                                                                                                     "max_contacts": 0}}),
                         campaign_id="c", channels=CH)
    assert dict(zip(lst["user_id"], lst["channel"], strict=True))["u1"] == "app"
    # No money for text: the same.
    lst, counts = recall_list(scored, features, _cfg(budget={"max_contacts": None, "max_cost": 0.05}),
                              campaign_id="c", channels=CH)
    assert "text" not in set(lst["channel"]) and counts["cost"] <= 0.05
    # Only the channels configured are used; a configured channel the model lacks is an error.
    lst, _ = recall_list(scored, features, _cfg(channels={"mail": {"cost": 0.01}}), campaign_id="c", channels=CH)
    assert set(lst["channel"]) == {"mail"}
    with pytest.raises(ConfigError, match=r"channels: 'fax' not among the channels the uplift model was trained on"):
        recall_list(scored, features, _cfg(channels={"fax": {}}), campaign_id="c", channels=CH)


def test_the_holdout_randomises_over_control_and_channels_that_do_no_harm():
    rng = np.random.default_rng(0)
    n = 6000
    scored = pd.DataFrame({"user_id": np.arange(n), "p_churn": 0.9, "p_return_if_not": 0.1,
                           "uplift_app": rng.normal(0.05, 0.05, n), "uplift_mail": rng.normal(0.05, 0.05, n),
                           "uplift_text": rng.normal(0.05, 0.05, n), "segment": "persuadable"})
    scored["uplift"] = scored[["uplift_app", "uplift_mail", "uplift_text"]].max(axis=1)
    features = pd.DataFrame({"user_id": scored["user_id"], "days_since_last_activity": 10})
    cfg = _cfg(holdout_share=0.3, channels={}, budget={"max_contacts": None})
    lst, counts = recall_list(scored, features, cfg, campaign_id="c1", channels=CH)
    held = lst[lst["randomised"]]
    assert abs(len(held) / len(lst) - 0.3) < 0.03
    # Never the model's own channel, never one the model expects to hurt the user.
    up = held[[f"uplift_{c}" for c in CH]].to_numpy()
    given = held["channel"].to_numpy()
    for c_idx, c in enumerate(CH):
        assert (up[given == c, c_idx] >= 0).all()
    assert (held["channel"] != held["model_channel"]).all()
    assert set(held.loc[held["channel"] == "control", "group"]) == {"holdout"}
    # Each user's options are equally likely: control takes about a third of those with three options.
    three = (up >= 0).sum(axis=1) == 3
    assert abs((given[three] == "control").mean() - 1 / 3) < 0.05
    assert counts["holdout"] + counts["explore"] == len(held)
    # Deterministic per user and campaign; another campaign draws again.
    again, _ = recall_list(scored, features, cfg, campaign_id="c1", channels=CH)
    pd.testing.assert_frame_equal(lst, again)
    other, _ = recall_list(scored, features, cfg, campaign_id="c2", channels=CH)
    assert (other.set_index("user_id")["randomised"] != lst.set_index("user_id")["randomised"]).mean() > 0.2
