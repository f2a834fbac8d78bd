"""Bad input as a new user writes it: one line naming what and where, exit 2, no traceback (#15).

Each case breaks one thing in a small, otherwise valid setup (the tiny log of conftest, a scoring
config and a training config that point at it) and runs the command that reads it.
"""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from churnml.cli import app

from conftest import TINY_EVENTS, TINY_USERS, write_dataset

runner = CliRunner()

INT_EVENTS = [{**e, "user_id": int(e["user_id"][1:])} for e in TINY_EVENTS]
INT_USERS = [{**u, "user_id": int(u["user_id"][1:])} for u in TINY_USERS]


def _run(*args):
    res = runner.invoke(app, [str(a) for a in args])
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    return res, errors


def _expect_one_line(res, errors, message):
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert len(errors) == 1, res.output
    assert message in " ".join(errors[0].split()), errors[0]


def _dataset(tmp_path, **extra):
    return write_dataset(tmp_path, TINY_EVENTS, TINY_USERS, observed_until="2024-02-01", **extra)


def _with(cfg, text):
    cfg.write_text(cfg.read_text() + text)
    return cfg


@pytest.mark.parametrize("text,message", [
    ("horizon_days: true\n", "horizon_days: must be a number, got the boolean true"),
    ("eligibility_days: false\n", "eligibility_days: must be a number, got the boolean false"),
    ("feature_windows_days: [7, true]\n", "feature_windows_days: must be a number, got a boolean in [7, true]"),
    ("distinct_counts: [{name: n, column: item_id, window_days: true}]\n",
     "distinct_counts.0.window_days: must be a number"),
    ("snapshots: {start: 2024-01-05, end: true}\n", "snapshots.end: expected a date or an ISO datetime"),
    ("snapshots: [2024-01-05T00:00:00+15:00]\n", "snapshots: UTC offset +15:00 of 2024-01-05T00:00:00+15:00 is "
                                                 "outside ±14:00"),
    ("horizn_days: 3\n", "horizn_days: unknown key"),
    ("horizon_days: 3\nhorizon_days: 4\n", "not valid YAML at line"),
    ("horizon_days: [3\n", "not valid YAML at line"),
])
def test_dataset_config_errors(tmp_path, text, message):
    cfg = _dataset(tmp_path)
    # the tiny config ends with observed_until; a duplicate of a key it has is tested with horizon_days
    _expect_one_line(*_run("validate", "-c", _with(cfg, text)), message)


def test_an_unknown_nested_key_is_named(tmp_path):
    cfg = _dataset(tmp_path)
    cfg.write_text(cfg.read_text().replace("path: events.csv", "path: events.csv, colums: {}"))
    _expect_one_line(*_run("validate", "-c", cfg), "sources.events.colums: unknown key")


def test_a_config_that_is_not_utf8(tmp_path):
    cfg = _dataset(tmp_path)
    cfg.write_bytes(cfg.read_bytes().replace(b"name: test", b"name: caf\xe9"))
    _expect_one_line(*_run("validate", "-c", cfg), "not UTF-8 text (byte 0xe9")


def test_text_ids_in_an_integer_id_column(tmp_path):
    events = [*INT_EVENTS, {"user_id": "abc", "ts": "2024-01-06T00:00:00Z", "event": "play", "item_id": 4}]
    cfg = write_dataset(tmp_path, events, INT_USERS, observed_until="2024-02-01")
    for args in (("validate", "-c", cfg),
                 ("features", "build", "-c", cfg, "--as-of", "2024-01-08", "-o", tmp_path / "f.parquet")):
        _expect_one_line(*_run(*args), "events.csv: column 'user_id': 1 user ids that are not integers, while "
                                       "users.csv's are integers (e.g. 'abc')")
    assert not (tmp_path / "f.parquet").exists()


def test_integer_ids_stored_as_text_match_integer_ids(tmp_path):
    # A Parquet export with text ids "1", "2" beside a CSV users table with numbers: the same users.
    events = [{**e, "user_id": str(e["user_id"])} for e in INT_EVENTS]
    cfg = write_dataset(tmp_path, events, fmt="parquet", observed_until="2024-02-01")
    (tmp_path / "users.csv").write_text("user_id,signup_ts\n" + "".join(
        f"{u['user_id']},{u['signup_ts']}\n" for u in INT_USERS))
    doc = yaml.safe_load(cfg.read_text())
    doc["sources"]["users"] = {"path": "users.csv"}
    cfg.write_text(yaml.safe_dump(doc))
    res, errors = _run("validate", "-c", cfg)
    assert res.exit_code == 0 and not errors, res.output
    assert "7 events, 4 users" in res.output


@pytest.mark.parametrize("ts,message", [
    ("2024-01-06T00:00:00-99:00", "1 timestamps with a UTC offset beyond ±14:00"),
    ("2024-01-06T00:00:00+15:00", "1 timestamps with a UTC offset beyond ±14:00"),
    ("2024-01-06T00:00:00+14:30", "1 timestamps with a UTC offset beyond ±14:00"),
])
def test_timestamp_offsets_beyond_14_hours(tmp_path, ts, message):
    events = [*TINY_EVENTS[:-1], {**TINY_EVENTS[-1], "ts": ts}]
    cfg = write_dataset(tmp_path, events, TINY_USERS, observed_until="2024-02-01")
    _expect_one_line(*_run("validate", "-c", cfg), message)


def test_offsets_within_14_hours_are_fine(tmp_path):
    events = [*TINY_EVENTS[:-2], {**TINY_EVENTS[-2], "ts": "2024-01-05T20:00:00+12:00"},
              {**TINY_EVENTS[-1], "ts": "2024-01-05T23:00:00-01:00"}]
    cfg = write_dataset(tmp_path, events, TINY_USERS, observed_until="2024-02-01")
    res, errors = _run("validate", "-c", cfg)
    assert res.exit_code == 0 and not errors, res.output


@pytest.mark.parametrize("row,fields", [("u1,2024-01-03T09:00:00Z,play,7,extra", 5),
                                        ("u1,2024-01-03T09:00:00Z", 2)], ids=["long", "short"])
def test_a_ragged_csv_row_is_reported_as_such(tmp_path, row, fields):
    cfg = _dataset(tmp_path)
    lines = (tmp_path / "events.csv").read_text().splitlines()
    lines.insert(3, row)
    (tmp_path / "events.csv").write_text("\n".join(lines) + "\n")
    _expect_one_line(*_run("validate", "-c", cfg),
                     f"events.csv: 1 rows with another number of fields than the header's 4 (the first at line 4 "
                     f"has {fields})")


def test_a_ragged_row_far_into_a_large_csv(tmp_path):
    # Beyond the rows DuckDB samples to detect the format: the read fails only when the file is scanned.
    events = [{"user_id": f"u{i % 50}", "ts": f"2024-01-0{1 + i % 9}T10:00:00Z", "event": "play", "item_id": 1}
              for i in range(30_000)]
    cfg = write_dataset(tmp_path, events, observed_until="2024-02-01")
    with (tmp_path / "events.csv").open("a") as f:
        f.write("u1,2024-01-03T09:00:00Z,play,1,extra\n")
    _expect_one_line(*_run("validate", "-c", cfg),
                     "events.csv: 1 rows with another number of fields than the header's 4 (the first at line 30002 "
                     "has 5)")


def _score_config(tmp_path, **extra):
    cfg = tmp_path / "batch.yaml"
    cfg.write_text(yaml.safe_dump({"dataset": str(_dataset(tmp_path / "data")), "output": str(tmp_path / "lists"),
                                   **extra}))
    return cfg


@pytest.mark.parametrize("extra,message", [
    ({"campaign_id": "recall-{date}"}, "campaign_id: unknown placeholder {date} in 'recall-{date}'; the only "
                                       "placeholder is {as_of}"),
    ({"campaign_id": "recall-{as_of:%Y}"}, "cannot be filled in with the date"),
    ({"budget": {"max_contacts": True}}, "budget.max_contacts: must be a number, got the boolean true"),
    ({"holdout_share": False}, "holdout_share: must be a number, got the boolean false"),
    ({"reasons": True}, "reasons: must be a number"),
    ({"eligibility": {"lapsed_min_dayz": 3}}, "eligibility.lapsed_min_dayz: unknown key"),
])
def test_scoring_config_errors_stop_before_any_work(tmp_path, extra, message):
    _expect_one_line(*_run("score", "-c", _score_config(tmp_path, **extra), "--as-of", "2024-01-10"), message)
    assert not (tmp_path / "lists").exists()


@pytest.mark.parametrize("extra,message", [
    ({"tuning": {"trials": True}}, "tuning.trials: must be a number, got the boolean true"),
    ({"seed": True}, "seed: must be a number"),
    ({"min_class_count": True}, "min_class_count: must be a number"),
    ({"tunning": {"trials": 3}}, "tunning: unknown key"),
])
def test_training_config_errors(tmp_path, extra, message):
    cfg = tmp_path / "churn.yaml"
    cfg.write_text(yaml.safe_dump({"kind": "churn", "dataset": str(_dataset(tmp_path / "data")), **extra}))
    _expect_one_line(*_run("train", "churn", "-c", cfg), message)


@pytest.mark.parametrize("value", ["2024-01-10T00:00:00+20:00", "2024-01-10T00:00:00-14:01", "soon"])
def test_as_of_beyond_any_time_zone(tmp_path, value):
    cfg = _dataset(tmp_path)
    _expect_one_line(*_run("features", "build", "-c", cfg, "--as-of", value, "-o", tmp_path / "f.parquet"),
                     f"--as-of must be a date or ISO datetime such as 2024-04-15, got {value!r}")
