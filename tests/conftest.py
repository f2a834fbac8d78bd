"""Shared fixtures: tiny hand-built event logs written as files with a dataset config."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from churnml.config import load_dataset_config
from churnml.data import open_dataset


def write_dataset(
    folder: Path,
    events: list[dict] | pd.DataFrame,
    users: list[dict] | pd.DataFrame | None = None,
    campaigns: list[dict] | pd.DataFrame | None = None,
    *,
    fmt: str = "csv",
    **config,
) -> Path:
    """Write tables (CSV or Parquet) and a dataset.yaml that points at them; return the config path."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = {}
    for name, rows in (("events", events), ("users", users), ("campaigns", campaigns)):
        if rows is None:
            continue
        df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
        path = folder / f"{name}.{fmt}"
        if fmt == "csv":
            df.to_csv(path, index=False)
        else:
            for col in ("ts", "signup_ts", "sent_ts"):
                if col in df and df[col].dtype == object:
                    df = df.assign(**{col: pd.to_datetime(df[col], utc=True)})
            df.to_parquet(path, index=False)
        sources[name] = {"path": path.name}
    doc = {"name": "test", "sources": sources, **config}
    cfg = folder / "dataset.yaml"
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))
    return cfg


def open_tiny(folder: Path, *args, **kwargs):
    """Write a dataset and open (validate) it."""
    return open_dataset(load_dataset_config(write_dataset(folder, *args, **kwargs)))


# A three-user music log whose features are worked out by hand in test_features.py.
TINY_EVENTS = [
    {"user_id": "u1", "ts": "2024-01-01T10:00:00Z", "event": "play", "item_id": 1},
    {"user_id": "u1", "ts": "2024-01-01T11:00:00Z", "event": "like", "item_id": 1},
    {"user_id": "u1", "ts": "2024-01-03T09:00:00Z", "event": "play", "item_id": 2},
    {"user_id": "u2", "ts": "2024-01-02T08:00:00Z", "event": "play", "item_id": 3},
    {"user_id": "u2", "ts": "2024-01-09T08:00:00Z", "event": "play", "item_id": 3},
    {"user_id": "u3", "ts": "2024-01-05T08:00:00Z", "event": "like", "item_id": 4},
    {"user_id": "u3", "ts": "2024-01-06T00:00:00Z", "event": "play", "item_id": 4},
]
TINY_USERS = [
    {"user_id": "u1", "signup_ts": "2024-01-01T09:00:00Z", "channel": "organic"},
    {"user_id": "u2", "signup_ts": "2024-01-02T07:00:00Z", "channel": "paid"},
    {"user_id": "u3", "signup_ts": "2024-01-05T07:00:00Z", "channel": "organic"},
    {"user_id": "u4", "signup_ts": "2024-01-07T07:00:00Z", "channel": "organic"},
]
TINY_CAMPAIGNS = [
    {"user_id": "u1", "campaign_id": "c1", "sent_ts": "2024-01-02T00:00:00Z", "treated": True},
    {"user_id": "u2", "campaign_id": "c1", "sent_ts": "2024-01-02T00:00:00Z", "treated": False},
]


@pytest.fixture
def tiny_dataset(tmp_path):
    """The tiny log, validated, with a 2-day response window and a 3-day horizon."""
    return open_tiny(tmp_path, TINY_EVENTS, TINY_USERS, TINY_CAMPAIGNS,
                     response_window_days=2, horizon_days=3, observed_until="2024-01-12")


@pytest.fixture
def seed() -> int:
    """The seed every randomised test uses."""
    return 20240101


@pytest.fixture(scope="session")
def small_sim(tmp_path_factory):
    """A small simulated app (3,000 users, 120 days) and its labelled training set, built once per run.

    Returns a dict with ``config`` (dataset.yaml), ``training_set`` (Parquet,
    schema beside it), ``truth`` (the truth folder) and ``folder``.
    """
    from churnml.jobs import build_features_job, simulate_job
    from churnml.simulator import SimulationConfig

    folder = tmp_path_factory.mktemp("small_sim")
    result, cfg_path = simulate_job(SimulationConfig(n_users=3000, days=120, seed=5), folder / "data")
    res = build_features_job(cfg_path, folder / "training_set.parquet")
    return {"config": cfg_path, "training_set": res.table_path, "truth": result.truth_dir, "folder": folder}


@pytest.fixture
def settings(tmp_path):
    """Runtime settings with a private MLflow store in the test's folder."""
    from churnml.config import Settings

    return Settings(mlruns_dir=str(tmp_path / "mlruns"), threads=2)


@pytest.fixture(autouse=True)
def _private_mlflow_store(tmp_path, monkeypatch):
    """Every test gets its own MLflow store; nothing is written to the repository's mlruns/."""
    from churnml.config import get_settings

    monkeypatch.setenv("CHURNML_MLRUNS_DIR", str(tmp_path / "mlruns"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def trained_store(small_sim, tmp_path_factory):
    """Churn and uplift champions trained on ``small_sim`` in a private MLflow store (built once per run).

    Small settings (no tuning, one uplift learner) keep it to seconds; the
    models are real LightGBM models registered and promoted through the gate.
    """
    from churnml.config import Settings, TrainConfig, TuningConfig
    from churnml.models.uplift import TLearner
    from churnml.train import promote_job, train_churn_job
    from churnml.train_uplift import train_uplift_job

    folder = tmp_path_factory.mktemp("store")
    settings = Settings(mlruns_dir=str(folder / "mlruns"), threads=2)
    churn = TrainConfig(dataset=small_sim["config"], training_set=small_sim["training_set"],
                        tuning=TuningConfig(trials=0))
    train_churn_job(churn, settings=settings)
    promote_job(churn, settings=settings)
    uplift = TrainConfig(kind="uplift", dataset=small_sim["config"])
    learner = TLearner(base_params={"n_estimators": 60, "num_leaves": 7, "min_child_samples": 100})
    train_uplift_job(uplift, settings=settings, candidates={"t_lightgbm": learner})
    promote_job(uplift, settings=settings)
    return {"settings": settings, "folder": folder, **small_sim}
