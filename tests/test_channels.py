"""Multi-channel recall: the scoring config's channels, the budgeted assignment and its holdout."""

from __future__ import annotations

import pytest

from churnml.config import load_score_config
from churnml.exceptions import ConfigError


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
