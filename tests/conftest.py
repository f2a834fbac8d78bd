"""Shared fixtures: tiny hand-built event logs written as files with a dataset config."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient

from churnml.config import (
    BoosterConfig,
    ScoreConfig,
    Settings,
    TrainConfig,
    TuningConfig,
    load_dataset_config,
)
from churnml.data import open_dataset


def write_dataset(
    folder: Path,
    events: list[dict] | pd.DataFrame,
    users: list[dict] | pd.DataFrame | None = None,
    campaigns: list[dict] | pd.DataFrame | None = None,
    *,
    fmt: str = "csv",
    subscriptions: list[dict] | pd.DataFrame | None = None,
    **config,
) -> Path:
    """Write tables (CSV or Parquet) and a dataset.yaml that points at them; return the config path."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = {}
    for name, rows in (("events", events), ("users", users), ("campaigns", campaigns),
                       ("subscriptions", subscriptions)):
        if rows is None:
            continue
        df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
        path = folder / f"{name}.{fmt}"
        if fmt == "csv":
            df.to_csv(path, index=False)
        else:
            for col in ("ts", "signup_ts", "sent_ts", "start", "end"):
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


#: The simulator's single-channel world (one push campaign arm and a control group), which the tests of
#: the binary uplift model, its recall list and the API were written for; the default is multi-channel.
SINGLE_CHANNEL = {"campaign_channels": ["push"], "campaign_min_days_inactive": 7}


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
    result, cfg_path = simulate_job(SimulationConfig(n_users=3000, days=120, seed=5, **SINGLE_CHANNEL),
                                    folder / "data")
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


# --- the API (tests/serving): a store of its own, because those tests promote new champions ---------
# (kept here rather than in tests/serving/conftest.py: two conftest modules would shadow each other
# for the tests that import helpers from this one)

SERVE_AS_OF = "2024-04-29"
# A small booster keeps the session fixture fast; the API does not care how good the model is.
SMALL_BOOSTER = BoosterConfig(num_boost_round=60, early_stopping_rounds=10,
                              params={"learning_rate": 0.1, "num_leaves": 15, "min_child_samples": 50})


def train_churn(store: dict, *, leaves: int = 15, margin: float | None = None) -> str:
    """Train, register and promote a churn model in the store; return the challenger's version."""
    from churnml.train import promote_job, train_churn_job

    booster = SMALL_BOOSTER.model_copy(update={"params": SMALL_BOOSTER.params | {"num_leaves": leaves}})
    cfg = TrainConfig(dataset=store["config"], training_set=store["training_set"],
                      tuning=TuningConfig(trials=0), lightgbm=booster)
    train_churn_job(cfg, settings=store["settings"])
    return promote_job(cfg, margin=margin, settings=store["settings"]).challenger


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> dict:
    """Champion churn and uplift models and the nightly list of 2024-04-29.

    Returns ``config`` (dataset.yaml), ``training_set``, ``settings`` (churnml
    Settings of the private store), ``lists`` (the lists folder) and ``day``
    (the list's folder).
    """
    from churnml.batch import score_job
    from churnml.jobs import build_features_job, simulate_job
    from churnml.models.uplift import TLearner
    from churnml.simulator import SimulationConfig
    from churnml.train import promote_job
    from churnml.train_uplift import train_uplift_job

    folder = tmp_path_factory.mktemp("serving")
    _, config = simulate_job(SimulationConfig(n_users=3000, days=120, seed=5, **SINGLE_CHANNEL), folder / "data")
    # Six weekly snapshots are enough for the time split (two train, gap, valid, gap, test).
    weeks = [f"2024-{d}" for d in ("03-11", "03-18", "03-25", "04-01", "04-08", "04-15")]
    training_set = build_features_job(config, folder / "training_set.parquet", as_of=weeks, labels=True).table_path
    # One LightGBM thread: on two shared cores OpenMP's spinning threads double the training time.
    settings = Settings(mlruns_dir=str(folder / "mlruns"), threads=1)
    out = {"config": config, "training_set": training_set, "settings": settings, "lists": folder / "lists",
           "day": folder / "lists" / SERVE_AS_OF}
    train_churn(out)
    uplift = TrainConfig(kind="uplift", dataset=config)
    trees = {"n_estimators": 60, "learning_rate": 0.1, "num_leaves": 7, "min_child_samples": 200}
    train_uplift_job(uplift, settings=settings, candidates={"t": TLearner(base_params=trees)})
    promote_job(uplift, settings=settings)
    score_job(ScoreConfig(dataset=config, output=out["lists"]), SERVE_AS_OF, settings=settings)
    return out


@pytest.fixture(scope="session")
def features(store) -> pd.DataFrame:
    """The nightly feature rows of every scored user."""
    return pd.read_parquet(store["day"] / "features.parquet")


@pytest.fixture(scope="session")
def nightly(store) -> pd.DataFrame:
    """The nightly scores of every user, by user id."""
    return pd.read_parquet(store["day"] / "scores.parquet").set_index("user_id", drop=False)


@pytest.fixture
def serve_settings(store, monkeypatch):
    """Build ServeSettings for the session store from keyword overrides (the environment is cleared)."""
    from serving.app import ServeSettings

    for name in ("LISTS_DIR", "API_TOKEN", "MAX_BATCH", "UPLIFT_MODEL", "REASONS", "WARM_REASONS"):
        monkeypatch.delenv(f"CHURNML_SERVE_{name}", raising=False)

    def make(**overrides) -> ServeSettings:
        # No background warm-up unless a test asks: the reason cache then fills only as requests ask.
        return ServeSettings(**{"lists_dir": store["lists"], "runtime": store["settings"], "warm_reasons": False,
                                **overrides})

    return make


@pytest.fixture(scope="session")
def scorer(store):
    """The champion models of the session store, loaded once."""
    from churnml.scoring import Scorer

    return Scorer.from_registry(settings=store["settings"])


@pytest.fixture
def make_client(serve_settings, scorer):
    """Start the API (lifespan run) on the session store; ``registry=True`` loads models as production does."""
    from serving.app import create_app

    started = []

    def make(*, registry: bool = False, **overrides) -> TestClient:
        client = TestClient(create_app(serve_settings(**overrides), None if registry else scorer))
        started.append(client.__enter__())
        return client

    yield make
    for client in started:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    """The API on the session store, no token required."""
    return make_client()


@pytest.fixture
def token() -> str:
    """A bearer token that is not a placeholder."""
    return "f3c9a1d27b4e8c6a0d5f1e2b3c4d5e6f"


@pytest.fixture
def train_new_champion(store):
    """Train another churn version and promote it whatever its score (margin 1.0); returns its version.

    The previous champion gets the alias back after the test, so other tests see the session's models.
    """
    from churnml import tracking

    before = tracking.resolve("churn-risk", "champion", store["settings"]).version
    yield lambda: train_churn(store, leaves=7, margin=1.0)
    tracking.configure(store["settings"])
    tracking.set_alias("churn-risk", "champion", before)


@pytest.fixture
def still_serving(features):
    """Check that a client still answers a good request (after a bad one)."""
    def check(client: TestClient, headers: dict | None = None) -> None:
        uid = features["user_id"].iloc[0].item()
        r = client.post("/score", json={"user_ids": [uid]}, headers=headers or {})
        assert r.status_code == 200, r.text
        assert r.json()["scores"][0]["user_id"] == uid

    return check


@pytest.fixture
def json_rows():
    """Turn feature rows into what a JSON client sends: NaN as null, timestamps as text."""
    def convert(frame: pd.DataFrame) -> list[dict]:
        out = frame.copy()
        for col in out.columns:
            if isinstance(out[col].dtype, pd.DatetimeTZDtype):
                out[col] = out[col].map(lambda t: t.isoformat())
        return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                for row in out.astype(object).to_dict("records")]

    return convert
