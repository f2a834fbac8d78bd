"""`churnml train churn` and `churnml promote` as a data scientist drives them."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from churnml.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _config(tmp_path, small_sim, **extra):
    doc = {"kind": "churn", "dataset": str(small_sim["config"]), "training_set": str(small_sim["training_set"]),
           "truth": str(small_sim["truth"] / "churn.parquet"),
           "tuning": {"trials": 1, "timeout_seconds": 60}} | extra
    path = tmp_path / "churn.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_train_then_promote(tmp_path, small_sim):
    import mlflow

    from churnml import tracking
    from churnml.config import get_settings

    cfg = _config(tmp_path, small_sim)
    res = invoke("train", "churn", "--config", cfg)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    for part in ("backtest: 3 cut-off(s)", "cut-off 2024-04-15: refit on", "rolling backtest: mean ± sd over 3",
                 "logistic regression", "recency only", "oracle", "of the oracle's", "ROC-AUC per cut-off",
                 "chosen by the backtest", "registered model: refit on 11 snapshots",
                 "registered churn-risk version 1 as 'challenger'"):
        assert part in text, part
    # The reported metrics are the backtest's; none is measured on the refit's own rows.
    tracking.configure(get_settings())
    run = mlflow.search_runs(experiment_names=["churn-risk"], output_format="list")[0]
    keys = set(run.data.metrics)
    assert {"backtest_roc_auc", "backtest_roc_auc_sd", "backtest_ece", "backtest_oracle_auc_ratio",
            "backtest_baseline_logistic_regression_roc_auc", "backtest_baseline_recency_only_roc_auc"} <= keys
    assert not [k for k in keys if k.startswith(("test_", "train_", "valid_"))]
    # One step per cut-off for the per-fold figures.
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "backtest_fold_roc_auc")
    assert sorted(m.step for m in history) == [0, 1, 2]
    model, _ = tracking.load_model("churn-risk", "challenger")
    assert model.metadata["label_cutoff"] == "2024-04-29T00:00:00+00:00"  # the latest snapshot + 14 days
    assert {s.name for s in model.features} <= set(model.metadata["recipe"]["features"])
    res = invoke("promote", "--config", cfg)
    assert res.exit_code == 0, res.output
    assert "promoted: no champion yet" in res.output
    res = invoke("promote", "--config", cfg)
    assert "already is the champion" in res.output


def test_training_config_errors_are_one_line_and_exit_2(tmp_path, small_sim):
    res = invoke("train", "churn", "--config", tmp_path / "nope.yaml")
    assert res.exit_code == 2
    assert "nope.yaml: config file not found" in res.output
    bad = _config(tmp_path, small_sim, tuning={"trials": -1})
    res = invoke("train", "churn", "--config", bad)
    assert res.exit_code == 2 and "tuning.trials" in res.output and "Traceback" not in res.output


def test_promote_without_a_model_says_what_to_do(tmp_path, small_sim):
    res = invoke("promote", "--config", _config(tmp_path, small_sim))
    assert res.exit_code == 3
    assert "no model 'churn-risk' with alias 'challenger'" in res.output


def test_no_register_registers_nothing(tmp_path, small_sim):
    # `--no-register` used to be ignored: a smoke model became 'challenger' and could be promoted (#15).
    import mlflow

    from churnml import tracking

    # What is tested is registration, not the model: one cut-off and a small booster keep it quick.
    quick = _config(tmp_path, small_sim, backtest={"folds": 1},
                    lightgbm={"num_boost_round": 60, "early_stopping_rounds": 10, "params": {"learning_rate": 0.1}})
    res = invoke("train", "churn", "--config", quick, "--trials", 0, "--no-register")
    assert res.exit_code == 0, res.output
    assert "not registered" in res.output and "registered churn-risk" not in res.output
    tracking.configure()
    assert mlflow.MlflowClient().search_registered_models() == []
    res = invoke("promote", "--config", _config(tmp_path, small_sim))
    assert res.exit_code == 3 and "no model 'churn-risk' with alias 'challenger'" in res.output


def test_no_register_reaches_the_uplift_job(tmp_path, small_sim, monkeypatch):
    # The uplift job itself honours register=False (tests/test_uplift_job.py); here: the flag gets there.
    import churnml.train_uplift

    seen = []

    def job(cfg, *, register=True, **kwargs):
        seen.append(register)
        raise churnml.train_uplift.TrainingDataError("stop here")

    monkeypatch.setattr(churnml.train_uplift, "train_uplift_job", job)
    cfg = _config(tmp_path, small_sim, kind="uplift")
    for flag, expected in (("--no-register", False), ("--register", True)):
        res = invoke("train", "uplift", "--config", cfg, flag)
        assert res.exit_code == 2 and "stop here" in res.output, res.output
        assert seen.pop() is expected


def test_uplift_help_names_the_uplift_config():
    res = invoke("train", "uplift", "--help")
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    assert "training/uplift.yaml" in text and "training/churn.yaml" not in text


def test_a_data_error_prints_no_trial_counter_and_bars_know_their_total(tmp_path):
    # "Optuna trials 0/30" was printed before a data error, and the snapshot bar read "11/?" (#15).
    from conftest import TINY_EVENTS, TINY_USERS, write_dataset

    data = write_dataset(tmp_path / "data", TINY_EVENTS, TINY_USERS, observed_until="2024-01-12",
                         horizon_days=3, snapshots={"start": "2024-01-04", "end": "2024-01-08", "every_days": 2})
    cfg = tmp_path / "churn.yaml"
    cfg.write_text(yaml.safe_dump({"kind": "churn", "dataset": str(data), "tuning": {"trials": 30}}))
    res = invoke("train", "churn", "--config", cfg)
    assert res.exit_code == 2, res.output
    assert "building snapshots" in res.output and "3/3" in res.output and "/?" not in res.output
    assert "Optuna" not in res.output


def test_the_main_job_tunes_a_fixed_number_of_trials():
    # A 120 s cap made the number of trials, and so the model, depend on the machine's load (#15).
    from pathlib import Path

    from churnml.cli import _demo_train_config

    cfg = _demo_train_config(Path("d.yaml"), Path("t.parquet"), Path("truth"), 10)
    assert cfg.tuning.trials == 10 and cfg.tuning.timeout_seconds is None
