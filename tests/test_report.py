"""The retention job: tables in two formats and one self-contained HTML report."""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser

import pandas as pd
import pytest
from typer.testing import CliRunner

from churnml.cli import app
from churnml.jobs import retention_job, simulate_job
from churnml.simulator import SimulationConfig

from conftest import write_dataset

SECTIONS = ("headlines", "cohorts", "anomalies", "behaviours", "activity", "churn-window", "campaigns")


class _Checker(HTMLParser):
    """Collects section ids, images and tag balance; rejects external resources."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.ids, self.images, self.external = [], set(), [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("src", "href"):
            if attrs.get(key, "").startswith(("http:", "https:", "//")):
                self.external.append(attrs[key])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}>"
        self.stack.pop()


def _check_html(path):
    checker = _Checker()
    checker.feed(path.read_text())
    assert checker.stack == [], f"unclosed tags {checker.stack}"
    assert not checker.external, "the report must open offline"
    return checker


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sim")
    sim = SimulationConfig(n_users=4000, days=80, seed=2)
    _, cfg = simulate_job(sim, folder, truth=False)
    return sim, cfg, folder


def test_report_on_simulator(simulated, tmp_path):
    sim, cfg, _ = simulated
    res = retention_job(cfg, tmp_path)
    checker = _check_html(res.report_path)
    assert set(SECTIONS) <= checker.ids
    assert len(checker.images) == 5 and all(src.startswith("data:image/png;base64,") for src in checker.images)
    # the planted promotion cohort is named as the weakest day-1 cohort
    promo = {str(sim.start + dt.timedelta(days=d)) for d in sim.promotion_days}
    weakest = [h for h in res.headlines if h.startswith("The weakest day-1 retention")]
    assert weakest and re.search(r"the (\d{4}-\d\d-\d\d) cohort", weakest[0]).group(1) in promo
    assert any(h.startswith("Recall campaign") for h in res.headlines)
    for name, path in res.tables.items():
        csv = pd.read_csv(path.with_suffix(".csv"))
        assert len(csv) == len(pd.read_parquet(path)), name


def test_report_without_users_or_campaigns(tmp_path):
    events = [{"user_id": f"u{i % 5}", "ts": f"2024-01-{1 + i % 20:02d}T{10 + i // 20}:00:00Z", "event": "buy"}
              for i in range(60)]
    cfg = write_dataset(tmp_path / "data", events, observed_until="2024-01-25")
    res = retention_job(cfg, tmp_path / "out")
    checker = _check_html(res.report_path)
    assert set(SECTIONS) <= checker.ids
    text = res.report_path.read_text()
    assert "signup is taken to be their first event" in text
    assert "No campaigns table was given" in text


def test_cli_retention(simulated, tmp_path):
    _, cfg, _ = simulated
    res = CliRunner().invoke(app, ["retention", "-c", str(cfg), "-o", str(tmp_path), "--period", "week"])
    assert res.exit_code == 0, res.output
    assert "Retention headlines" in res.output and (tmp_path / "retention_report.html").exists()
    bad = CliRunner().invoke(app, ["retention", "-c", str(cfg), "--period", "fortnight"])
    assert bad.exit_code == 2 and "--period must be day, week or month" in bad.output


def test_anomalies_section_names_the_promotion(simulated, tmp_path):
    sim, cfg, _ = simulated  # 4,000 users: about 100 per promotion cohort
    res = retention_job(cfg, tmp_path)
    lines = [h for h in res.headlines if "retained abnormally badly" in h]
    named = {d for h in lines for d in re.findall(r"\d{4}-\d\d-\d\d", h.split(":")[0])}
    promo = {str(sim.start + dt.timedelta(days=d)) for d in sim.promotion_days}
    assert named and named <= promo
    assert all("acquisition_channel = 'promo'" in h for h in lines)
    flagged = pd.read_parquet(res.tables["anomalous_cohorts"]).query("flagged and direction == 'lower'")
    assert {str(pd.Timestamp(c).date()) for c in flagged.cohort} == named
    assert 'id="anomalies"' in res.report_path.read_text()


def test_report_on_a_single_day_and_a_one_user_cohort(tmp_path):
    events = [{"user_id": "a", "ts": "2024-01-01T10:00:00Z", "event": "open"},
              {"user_id": "b", "ts": "2024-01-01T11:00:00Z", "event": "open"}]
    users = [{"user_id": "a", "signup_ts": "2024-01-01T09:00:00Z"},
             {"user_id": "b", "signup_ts": "2024-01-01T09:30:00Z"}]
    cfg = write_dataset(tmp_path / "data", events, users, observed_until="2024-01-02")
    res = retention_job(cfg, tmp_path / "out")
    checker = _check_html(res.report_path)
    assert set(SECTIONS) <= checker.ids
    text = res.report_path.read_text()
    assert "too young" in text and "too few cohorts" in text.lower()
    assert "No behaviour could be compared with retention" in text


def test_partly_observed_cohort_cells_say_how_many_users_they_cover(tmp_path):
    # Weekly cohort of 2024-01-01: u1 signs up on Monday (day 7 = 01-08, observed), u2 on Sunday
    # (day 7 = 01-14, after the log ends on 01-10). Its D7 is over 1 of its 2 users.
    users = [{"user_id": "u1", "signup_ts": "2024-01-01T09:00:00Z"},
             {"user_id": "u2", "signup_ts": "2024-01-07T09:00:00Z"}]
    events = [{"user_id": "u1", "ts": "2024-01-01T09:30:00Z", "event": "play"},
              {"user_id": "u1", "ts": "2024-01-08T09:30:00Z", "event": "play"},
              {"user_id": "u2", "ts": "2024-01-07T09:30:00Z", "event": "play"}]
    cfg = write_dataset(tmp_path / "data", events, users, observed_until="2024-01-10")
    res = retention_job(cfg, tmp_path / "out", period="week")
    text = res.report_path.read_text()
    assert "1 of 2 users observed so far" in text
