# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # churnml walkthrough: simulate → retention → train → explain → score
#
# A data scientist's tour of churnml on the embedded simulator. Every step calls the library
# (`churnml.*`); nothing here re-implements it. Stored as a jupytext "percent" script so diffs stay
# readable: open it in Jupyter with jupytext installed, or run `jupytext --to ipynb`.
#
# `CHURNML_NOTEBOOK_USERS` sets the number of simulated users (the test suite runs it small).

# %%
import os
import tempfile
from pathlib import Path

import pandas as pd

from churnml.config import BudgetConfig, Settings, TrainConfig, TuningConfig, load_dataset_config
from churnml.data import open_dataset
from churnml.jobs import build_features_job, retention_job, simulate_job
from churnml.simulator import SimulationConfig

USERS = int(os.environ.get("CHURNML_NOTEBOOK_USERS", "20000"))
work = Path(os.environ.get("CHURNML_NOTEBOOK_DIR") or tempfile.mkdtemp(prefix="churnml-nb-"))
settings = Settings(mlruns_dir=str(work / "mlruns"))  # a private MLflow store for this walkthrough
pd.set_option("display.width", 160)

# %% [markdown]
# ## 1. Simulate a music app with known ground truth

# %%
sim, cfg_path = simulate_job(SimulationConfig(n_users=USERS, days=120, seed=0), work / "data")
ds = open_dataset(load_dataset_config(cfg_path))  # validated against the data contract
print(f"{ds.n_users:,} users, {ds.n_events:,} events, data until {ds.observed_until:%Y-%m-%d}")

# %% [markdown]
# ## 2. Retention: cohorts, activity, anomalous cohorts, behaviours

# %%
ret = retention_job(cfg_path, work / "retention", dataset=ds)
for line in ret.headlines[:6]:
    print("•", line)

# %% [markdown]
# ## 3. Point-in-time features and a stacked, labelled training set

# %%
features = build_features_job(cfg_path, work / "training_set.parquet", dataset=ds)
pd.Series(features.churn_rate, name="churn rate").to_frame().T

# %% [markdown]
# ## 4. The churn model: rolling backtest, refit on all labelled history, baselines, MLflow
#
# The figures are the backtest's (mean over cut-offs; each fold fit only on labels closed before its
# cut-off); the registered model is the chosen recipe refit on every labelled snapshot.
# `tuning.trials=0` keeps the walkthrough quick; `training/churn.yaml` runs 30 Optuna trials.

# %%
from churnml.train import promote_job, train_churn_job

churn_cfg = TrainConfig(dataset=cfg_path, training_set=features.table_path,
                        truth=sim.truth_dir / "churn.parquet", tuning=TuningConfig(trials=0))
churn = train_churn_job(churn_cfg, dataset=ds, settings=settings, log=print)
print(promote_job(churn_cfg, dataset=ds, settings=settings).reason)
churn.metrics[["roc_auc", "pr_auc", "brier", "ece", "lift_at_10"]].round(3)

# %% [markdown]
# ## 5. The recall-uplift model, learned from the randomised campaigns
#
# The campaigns randomised users over control, SMS, e-mail and push, so the model learns one uplift
# per channel. The simulation's `scoring.yaml` says what a message by each channel costs; the job
# compares choosing the channel per user with one channel for everyone at the same budget.

# %%
from churnml.config import PolicyConfig, load_score_config
from churnml.train_uplift import train_uplift_job

scoring = load_score_config(cfg_path.parent / "scoring.yaml")
uplift_cfg = TrainConfig(kind="uplift", dataset=cfg_path, truth=sim.truth_dir / "exposures.parquet",
                         policy=PolicyConfig(channels=scoring.channels))
uplift = train_uplift_job(uplift_cfg, dataset=ds, settings=settings, log=print)
print(promote_job(uplift_cfg, dataset=ds, settings=settings).reason)
uplift.targeting[["qini_auc", "qini_auc_low", "qini_auc_high", "observed_uplift", "calibration_error"]].round(3)

# %%
uplift.policies[["contacted", "cost", "value_ipw", "value_dr", "value_true"]].mul(
    [1, 1, 1000, 1000, 1000]).round(1)  # net value per 1,000 exposures

# %% [markdown]
# ## 6. What drives churn and response (SHAP)

# %%
from churnml.drivers import drivers_job

drivers = drivers_job(cfg_path, work / "drivers_report.html", ds=ds, settings=settings)
for line in drivers.headlines:
    print("•", line)
drivers.churn_drivers[["feature", "mean_abs_shap", "risk_with_more"]].head(10)

# %% [markdown]
# ## 7. Tonight's recall list

# %%
from churnml.batch import score_job

score_cfg = scoring.model_copy(update={"output": work / "lists", "budget": BudgetConfig(max_contacts=200, max_cost=5.0)})
day = score_job(score_cfg, ds.observed_until, dataset=ds, settings=settings, force=True)
print({c: v["contact"] + v["explore"] for c, v in day.counts["channels"].items()}, f"-> {day.folder}")
day.top[["rank", "user_id", "group", "channel", "uplift", "p_churn", "channel_reason"]]
