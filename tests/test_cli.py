"""The command line as users and schedulers drive it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from churnml.cli import app

from conftest import TINY_EVENTS, TINY_USERS, write_dataset

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sim")
    res = invoke("simulate", "--out", folder, "--users", 800, "--days", 70, "--seed", 5)
    assert res.exit_code == 0, res.output
    return folder


def test_help_explains_every_command():
    res = invoke("--help")
    assert res.exit_code == 0
    for cmd in ("simulate", "validate", "features", "run"):
        assert cmd in res.output
    res = invoke("features", "build", "--help")
    assert res.exit_code == 0 and "--as-of" in res.output and "only events before" in res.output


def test_lightgbm_threads_wait_passively_unless_the_user_says_otherwise():
    # libgomp's spinning waits made 2-thread LightGBM fits 4-17x slower on a busy machine (BENCHMARKS.md).
    code = "import os, churnml; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    for given, expected in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        run_env = env | ({"OMP_WAIT_POLICY": given} if given else {})
        out = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected


def test_simulate_then_build_training_set(simulated, tmp_path):
    assert (simulated / "dataset.yaml").exists() and (simulated / "events.parquet").exists()
    out = tmp_path / "train.parquet"
    res = invoke("features", "build", "--config", simulated / "dataset.yaml", "--out", out)
    assert res.exit_code == 0, res.output
    table = pq.read_table(out)
    schema = json.loads((tmp_path / "train.schema.json").read_text())
    assert [c["name"] for c in schema["columns"]] == table.column_names
    assert schema["label"] == "churned" and "churned" in table.column_names
    assert all(c.get("description") for c in schema["columns"])
    assert len(set(table.column("as_of").to_pylist())) == len(schema["snapshots"]) > 1
    assert "churn rate" in res.output


def test_build_at_explicit_as_of_has_no_label(simulated, tmp_path):
    out = tmp_path / "score.parquet"
    res = invoke("features", "build", "-c", simulated / "dataset.yaml", "--as-of", "2024-03-01", "-o", out)
    assert res.exit_code == 0, res.output
    table = pq.read_table(out)
    assert "churned" not in table.column_names
    assert {a.isoformat() for a in table.column("as_of").to_pylist()} == {"2024-03-01T00:00:00+00:00"}


def test_failed_build_keeps_earlier_output(simulated, tmp_path):
    out = tmp_path / "f.parquet"
    assert invoke("features", "build", "-c", simulated / "dataset.yaml", "--as-of", "2024-03-01", "-o", out).exit_code == 0
    before = out.read_bytes()
    # the label window of the last simulated day is not observed: input error, nothing written
    res = invoke("features", "build", "-c", simulated / "dataset.yaml", "--as-of", "2024-03-09", "--labels", "-o", out)
    assert res.exit_code == 2
    assert "label window of 2024-03-09" in res.output and "Traceback" not in res.output
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("breakage,message", [
    (lambda p: p.write_text("user_id,event\nu1,play\n"), "events.csv: column 'ts': required column missing"),
    (lambda p: p.write_text("user_id,ts,event\nu1,not-a-date,play\n"), "1 unparsable timestamps (e.g. 'not-a-date')"),
    (lambda p: p.write_text("user_id,ts,event\n"), "events.csv: table is empty (no rows)"),
    (lambda p: p.write_bytes(b"\x00\x01garbage"), "events.csv"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, breakage, message):
    cfg = write_dataset(tmp_path, TINY_EVENTS, observed_until="2024-02-01")
    breakage(tmp_path / "events.csv")
    for args in (("validate", "-c", cfg), ("features", "build", "-c", cfg, "--as-of", "2024-01-05", "-o", tmp_path / "x.parquet")):
        res = invoke(*args)
        assert res.exit_code == 2, res.output
        assert message in res.output
        assert "Traceback" not in res.output
        assert len([line for line in res.output.splitlines() if line.startswith("error:")]) == 1
    assert not (tmp_path / "x.parquet").exists()


def test_bad_as_of_and_missing_config(tmp_path):
    cfg = write_dataset(tmp_path, TINY_EVENTS, TINY_USERS, observed_until="2024-02-01")
    res = invoke("features", "build", "-c", cfg, "--as-of", "next tuesday")
    assert res.exit_code == 2 and "--as-of must be a date" in res.output
    res = invoke("validate", "-c", tmp_path / "nope.yaml")
    assert res.exit_code == 2 and "nope.yaml: config file not found" in res.output


def test_duplicates_warned_not_fatal(tmp_path):
    cfg = write_dataset(tmp_path, TINY_EVENTS + TINY_EVENTS[:1], TINY_USERS, observed_until="2024-02-01")
    res = invoke("validate", "-c", cfg)
    assert res.exit_code == 0
    assert "warning: events.csv: 1 exact duplicate events dropped" in res.output
    assert "ok: 7 events, 4 users" in res.output


def _readme_commands() -> list[list[str]]:
    """The commands of the README's command table, as argument lists (without `churnml`)."""
    import re
    import shlex

    text = (Path(__file__).parents[1] / "README.md").read_text()
    table = text[text.index("## Commands"):text.index("Every command has `--help`")]
    return [shlex.split(cmd)[1:] for cmd in re.findall(r"^\| `(churnml [^`]+)` \|", table, re.MULTILINE)]


def test_main_job_end_to_end(tmp_path):
    res = invoke("run", "--out", tmp_path, "--users", 600, "--trials", 2)
    assert res.exit_code == 0, res.output
    assert "registered churn-risk version 1 as 'challenger'" in res.output
    assert "promoted: no champion yet" in res.output
    text = " ".join(res.output.split())  # rich wraps long table titles
    # The default app is multi-channel: one uplift per channel, and a list with a channel per user.
    assert "learner choice: 5-fold cross-validated multi-arm Qini" in text
    assert res.output.count("✓") == 1  # exactly one uplift learner is marked as chosen
    assert "channels on the list" in text and "why this channel" in text
    assert (tmp_path / "features" / "training_set.parquet").exists()
    assert (tmp_path / "data" / "truth" / "churn.parquet").exists()
    assert (tmp_path / "retention" / "retention_report.html").exists()
    assert "done" in res.output
    # The README's command table works on what `churnml run` wrote (#15: it named dataset.yaml,
    # data/sim and out/lists, which do not exist after the run). The quick steps run; the slow ones
    # (tested on their own elsewhere) must find their config and every file it names.
    from churnml.config import load_train_config

    commands = [[a.replace("runs/demo", str(tmp_path)) for a in c] for c in _readme_commands()
                if c[0] not in ("run", "simulate")]
    assert len(commands) == 10
    for args in commands:
        if args[:2] == ["train", "uplift"] or args[0] == "explain" or (
                args[:2] == ["features", "build"] and "--as-of" not in args):
            config = Path(args[args.index("-c") + 1])
            assert config.is_file(), args
            if args[0] == "train":
                cfg = load_train_config(config)
                assert cfg.dataset.is_file() and cfg.truth.is_file(), args
            continue
        step = invoke(*args)
        assert step.exit_code == 0, (args, step.output)
    assert (tmp_path / "features" / "2024-04-01.parquet").exists()
    assert (tmp_path / "lists" / "2024-04-30" / "manifest.json").exists()


def test_a_rerun_says_what_it_replaces_and_adds(trained_store, tmp_path, monkeypatch):
    # Re-running `churnml run` registered and promoted new versions and replaced the list silently (#15).
    from churnml.cli import _rerun_notes
    from churnml.config import get_settings

    monkeypatch.setenv("CHURNML_MLRUNS_DIR", trained_store["settings"].mlruns_dir)
    get_settings.cache_clear()
    (tmp_path / "demo" / "data").mkdir(parents=True)
    (tmp_path / "demo" / "lists" / "2024-04-30").mkdir(parents=True)
    notes = _rerun_notes(tmp_path / "demo")
    assert notes[0].endswith("its data, reports and features are rewritten, and the recall list of 2024-04-30 "
                             "replaced")
    assert notes[1] == ("the MLflow store has champions (churn-risk v1, recall-uplift v1): this run registers new "
                        "versions and promotes each only if the gate finds it not worse")
    monkeypatch.setenv("CHURNML_MLRUNS_DIR", str(tmp_path / "empty"))
    get_settings.cache_clear()
    assert _rerun_notes(tmp_path / "fresh") == []


def test_features_build_refuses_a_snapshot_after_the_data(tmp_path):
    cfg = write_dataset(tmp_path, TINY_EVENTS, TINY_USERS, observed_until="2024-02-01")
    res = invoke("features", "build", "-c", cfg, "--as-of", "2025-01-01", "--out", tmp_path / "f.parquet")
    assert res.exit_code == 2, res.output
    assert "snapshots: 1 as_of 2025-01-01T00:00:00+00:00 is after the data ends (2024-02-01" in res.output
    assert not (tmp_path / "f.parquet").exists()
    res = invoke("features", "build", "-c", cfg, "--as-of", "2024-01-06", "--as-of", "yesterday")
    assert res.exit_code == 2 and "got 'yesterday'" in res.output


def test_bad_config_value_is_one_line(tmp_path):
    events = [{**r, "amount": "abc" if i == 2 else "3"} for i, r in enumerate(TINY_EVENTS)]
    cfg = write_dataset(tmp_path, events, TINY_USERS, observed_until="2024-02-01", sum_columns=["amount"])
    for args in (("validate", "-c", cfg), ("features", "build", "-c", cfg, "--out", tmp_path / "f.parquet")):
        res = invoke(*args)
        assert res.exit_code == 2, res.output
        assert "events.csv: column 'amount': 1 sum_columns needs numbers" in res.output
        assert "Traceback" not in res.output
    res = invoke("validate", "-c", tmp_path)
    assert res.exit_code == 2 and "is a folder; give the config file" in res.output


def test_simulating_too_few_users_for_a_campaign_leaves_campaigns_out(tmp_path):
    res = invoke("simulate", "--out", tmp_path, "--users", 1, "--days", 30, "--no-truth")
    assert res.exit_code == 0, res.output
    assert "campaigns" not in (tmp_path / "dataset.yaml").read_text()
    assert not (tmp_path / "campaigns.parquet").exists()
    res = invoke("validate", "-c", tmp_path / "dataset.yaml")
    assert res.exit_code == 0, res.output


def test_main_job_stops_before_registering_when_campaigns_are_too_small(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = invoke("run", "--out", tmp_path / "out", "--users", 100, "--trials", 1)
    assert res.exit_code == 2, res.output
    assert "(at least 25 of each are needed) among 100 simulated users" in " ".join(res.output.split())
    assert "use more --users" in res.output
    assert "registered" not in res.output and not (tmp_path / "mlruns").exists()


def test_validate_says_where_the_log_ends(tmp_path):
    cfg = write_dataset(tmp_path / "a", TINY_EVENTS, TINY_USERS)
    res = invoke("validate", "-c", cfg)
    assert res.exit_code == 0, res.output
    assert "last event at 2024-01-09T08:00:00+00:00 (set observed_until" in res.output
    cfg = write_dataset(tmp_path / "b", TINY_EVENTS, TINY_USERS, observed_until="2024-02-01")
    assert "data until 2024-02-01T00:00:00+00:00" in invoke("validate", "-c", cfg).output


def test_sigterm_unwinds_so_atomic_outputs_clean_up(tmp_path):
    # A scheduler's SIGTERM must not leave a half-built list folder behind: the handler the
    # console entry point installs turns it into SystemExit, and atomic_dir removes its folder.
    import os
    import signal

    from churnml.cli import _terminate
    from churnml.io import atomic_dir

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with pytest.raises(SystemExit) as info, atomic_dir(tmp_path / "2024-04-30") as tmp:
            (tmp / "recall_list.parquet").write_text("half")
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs at the next bytecode boundary
                pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert info.value.code == 143
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_duckdb_query_ends_like_ctrl_c(monkeypatch):
    import duckdb

    import churnml.cli as cli

    def interrupted(*args, **kwargs):
        raise duckdb.InterruptException("Query interrupted")

    with pytest.raises(KeyboardInterrupt):
        cli._input_errors(interrupted)()
