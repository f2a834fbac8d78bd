"""Benchmark: subscription churn on the simulator's subscription layer, against the exact oracle (issue #14).

Steps (one process; figures to stdout and ``benchmarks/_data/subscription_sim.json``):

1. ``simulate_job`` with ``SubscriptionConfig()`` (``--users``, ``--days``,
   ``--seed``), ``--horizon`` days: the dataset config uses
   ``churn: subscription`` and the truth is ``truth/subscription_churn.parquet``.
2. ``build_features_job``: churnml's stacked training set (population =
   covered subscribers, label = cancelled at a renewal within the horizon).
3. ``train_churn_job`` (time split, Optuna with ``--trials`` on the
   validation snapshot, calibration chosen there; nothing is chosen on the
   test snapshot), with the oracle baselines: ``oracle`` = the exact
   probability from the user's parameters and filtered belief
   (``p_churn_observed``), ``oracle (latent state)`` = from the true state.
4. The published-style baseline for subscription products: per-account
   monthly metrics (events, active days, plays, likes, posts in each of the
   three 30-day blocks before ``as_of``; account age, acquisition
   attributes; plan, price, discount and whole months since the first
   subscription) and a gradient-boosting classifier (LightGBM with its
   default settings), fit on the same training and validation snapshots
   (it chooses nothing, so it gets both) and scored on the same test rows.

Targets: churnml's test AUC >= 0.97 x the oracle's; ECE <= 0.02.

Usage::

    python benchmarks/subscription_sim.py                    # 40,000 users, 240 days, 30-day horizon
    python benchmarks/subscription_sim.py --users 10000 --days 180 --trials 5
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from churn_scale import machine  # noqa: E402

MONTHS = 3
TYPES = ("play", "like", "community_post")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def monthly_metrics(data: Path, rows):
    """The baseline's features for the (as_of, user_id) rows: monthly aggregates, computed with DuckDB."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.register("snap", rows[["as_of", "user_id"]])
    blocks = ", ".join(
        f"count(*) FILTER (WHERE e.ts >= s.as_of - INTERVAL {30 * (m + 1)} DAY AND e.ts < s.as_of - INTERVAL {30 * m} DAY) AS events_m{m + 1}, "
        f"count(DISTINCT CAST(e.ts AS DATE)) FILTER (WHERE e.ts >= s.as_of - INTERVAL {30 * (m + 1)} DAY AND e.ts < s.as_of - INTERVAL {30 * m} DAY) AS active_days_m{m + 1}, "
        + ", ".join(f"count(*) FILTER (WHERE e.event = '{t}' AND e.ts >= s.as_of - INTERVAL {30 * (m + 1)} DAY "
                    f"AND e.ts < s.as_of - INTERVAL {30 * m} DAY) AS {t}_m{m + 1}" for t in TYPES)
        for m in range(MONTHS))
    activity = con.execute(f"""
        SELECT s.as_of, s.user_id, {blocks}
        FROM snap s LEFT JOIN read_parquet('{data / "events.parquet"}') e
          ON e.user_id = s.user_id AND e.ts < s.as_of AND e.ts >= s.as_of - INTERVAL {30 * MONTHS} DAY
        GROUP BY ALL""").df()
    account = con.execute(f"""
        SELECT s.as_of, s.user_id, date_diff('day', u.signup_ts, s.as_of) AS account_age_days,
               u.acquisition_channel, u.platform, u.region
        FROM snap s JOIN read_parquet('{data / "users.parquet"}') u USING (user_id)""").df()
    # The subscription as known at as_of: the latest row started before it, and the first start.
    subs = con.execute(f"""
        SELECT s.as_of, s.user_id,
               arg_max(r.plan, r.start) AS plan, arg_max(r.price, r.start) AS price,
               arg_max(r.discount, r.start) AS discount,
               floor(date_diff('day', min(r.start), s.as_of) / 30) AS months_subscribed
        FROM snap s JOIN read_parquet('{data / "subscriptions.parquet"}') r
          ON r.user_id = s.user_id AND r.start < s.as_of
        GROUP BY s.as_of, s.user_id""").df()
    out = rows[["as_of", "user_id"]].merge(activity, how="left").merge(account, how="left").merge(subs, how="left")
    for c in ("acquisition_channel", "platform", "region", "plan"):
        out[c] = out[c].astype("category")
    return out


def baseline(data: Path, df, split) -> dict:
    """Fit the monthly-metrics GBM on the train and validation snapshots; scores on the test snapshot."""
    import lightgbm as lgb
    import numpy as np
    import pandas as pd

    from churnml.features import LABEL

    feats = monthly_metrics(data, df)
    x = feats.drop(columns=["as_of", "user_id"])
    fit_on = df["as_of"].isin([pd.Timestamp(s) for s in split.train + split.valid]).to_numpy()
    test = df["as_of"].isin([pd.Timestamp(s) for s in split.test]).to_numpy()
    model = lgb.LGBMClassifier(random_state=0, verbose=-1).fit(x[fit_on], df.loc[fit_on, LABEL])
    return {"p": model.predict_proba(x[test])[:, 1], "test_mask": test, "features": list(x.columns),
            "rows_fit": int(fit_on.sum()), "rows_test": int(test.sum()), "y": df.loc[test, LABEL].to_numpy(),
            "order": np.flatnonzero(test)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=40_000)
    ap.add_argument("--days", type=int, default=240)
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--horizon", type=int, default=30)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--data", type=Path, default=HERE / "_data" / "subscription_sim")
    ap.add_argument("--out", type=Path, default=HERE / "_data" / "subscription_sim.json")
    a = ap.parse_args(argv)

    import pandas as pd

    from churnml.config import Settings, TrainConfig, TuningConfig
    from churnml.evaluation import churn_metrics
    from churnml.jobs import build_features_job, simulate_job
    from churnml.simulator import SimulationConfig, SubscriptionConfig
    from churnml.train import train_churn_job

    t0 = time.perf_counter()
    sim = SimulationConfig(n_users=a.users, days=a.days, seed=a.seed, subscriptions=SubscriptionConfig())
    if not (a.data / "dataset.yaml").exists():
        result, cfg = simulate_job(sim, a.data, horizon_days=a.horizon)
        log(f"simulated {result.n_users:,} users, {result.n_events:,} events, "
            f"{result.n_subscriptions:,} subscription periods")
    cfg = a.data / "dataset.yaml"
    ts = a.data / "training_set.parquet"
    if not ts.exists():
        res = build_features_job(cfg, ts, progress=lambda s: log(f"built {s.date()}"))
        log(f"training set: {res.n_rows:,} rows, {res.n_features} features; churn rate per snapshot "
            f"{ {k: round(v, 3) for k, v in res.churn_rate.items()} }")
    sim_s = time.perf_counter() - t0

    truth = a.data / "truth" / "subscription_churn.parquet"
    tcfg = TrainConfig(kind="churn", dataset=cfg, training_set=ts, truth=truth, seed=0,
                       tuning=TuningConfig(trials=a.trials, timeout_seconds=None))
    with tempfile.TemporaryDirectory() as mlruns:
        t1 = time.perf_counter()
        res = train_churn_job(tcfg, settings=Settings(mlruns_dir=mlruns, threads=2), register=False, log=log)
        train_s = time.perf_counter() - t1
    table = res.metrics
    log("\n" + table[["roc_auc", "pr_auc", "ece", "brier"]].to_string())

    df = pd.read_parquet(ts)
    df["as_of"] = pd.to_datetime(df["as_of"], utc=True)
    base = baseline(a.data, df, res.split)
    m_base = churn_metrics(base["y"], base["p"])
    # The baseline on exactly the rows the oracle is compared on (all test rows have truth here).
    true = pd.read_parquet(truth)
    test_rows = df.loc[base["test_mask"], ["as_of", "user_id"]].merge(true, how="left")
    assert test_rows["p_churn_observed"].notna().all(), "test rows without truth"

    out = {
        "machine": machine(), "args": {k: str(v) for k, v in vars(a).items()},
        "rows": res.rows, "test_snapshot": res.split.test[-1].isoformat(),
        "test_churners": int(base["y"].sum()), "test_rows": int(len(base["y"])),
        "metrics": json.loads(table.to_json(orient="index")),
        "monthly_metrics_gbm": m_base, "monthly_metrics_features": base["features"],
        "oracle_auc_ratio": res.oracle_ratio,
        "baseline_vs_oracle_auc": m_base["roc_auc"] / table.loc["oracle", "roc_auc"],
        "targets": {"auc_ratio_ge_0.97": bool(res.oracle_ratio >= 0.97),
                    "ece_le_0.02": bool(table.loc["model", "ece"] <= 0.02)},
        "seconds": {"simulate_and_build": round(sim_s, 1), "train": round(train_s, 1)},
        "best_params": res.best_params,
    }
    log(f"model AUC {table.loc['model', 'roc_auc']:.4f}, oracle {table.loc['oracle', 'roc_auc']:.4f} "
        f"(ratio {res.oracle_ratio:.4f}); latent-state oracle {table.loc['oracle (latent state)', 'roc_auc']:.4f}; "
        f"ECE {table.loc['model', 'ece']:.4f}; monthly-metrics GBM AUC {m_base['roc_auc']:.4f} "
        f"ECE {m_base['ece']:.4f}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2, default=float))
    return out


if __name__ == "__main__":
    main()
