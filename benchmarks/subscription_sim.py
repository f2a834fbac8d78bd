"""Benchmark: subscription churn on the simulator's subscription layer, against the exact oracle (issue #14).

Steps (one process; figures to stdout and ``benchmarks/_data/subscription_sim[_init].json``):

1. ``simulate_job`` with ``SubscriptionConfig()`` (``--users``, ``--days``,
   ``--seed``): the tables, and the exact truth
   ``truth/subscription_churn.parquet`` at the snapshots of the config used.
2. churnml's dataset config: by default the simulator's own (``churn:
   subscription``, ``--horizon`` days, 7-day grace, weekly snapshots). With
   ``--init`` it is written by ``python -m churnml.cli init --events …
   --users … --subscriptions …`` run on the simulated tables as a user would
   (horizon, grace, snapshots, windows all chosen by ``init``; nothing set by
   hand). Init's snapshots differ from the simulator's, so the simulation is
   rerun with the same seed and truth at init's snapshots and horizon
   (computing truth draws no random numbers: the tables are checked to be
   identical).
3. ``build_features_job`` on that config, then ``train_churn_job`` as main
   trains churn now: Optuna (``--trials``) on the history before the earliest
   cut-off, the rolling backtest (each cut-off's fold fit only on snapshots
   whose label window, horizon + grace, closes by the cut-off), the
   production refit. churnml is reported on the **latest cut-off** (the latest
   labelled snapshot) from ``res.backtest.predictions``, and as mean ± sd over
   the cut-offs.
4. The published-style baseline for subscription products: per-account
   monthly metrics (events, active days, plays, likes, posts in each of the
   three 30-day blocks before ``as_of``; account age, acquisition
   attributes; plan, price, discount and whole months since the first
   subscription) and a gradient-boosting classifier (LightGBM with its
   default settings), fit at each cut-off on exactly the snapshots that
   cut-off's fold had (it chooses nothing, so it gets all of them) and scored
   on the same rows. The oracle (``p_churn_observed``: the exact probability
   from the user's parameters and filtered belief) is scored on the same rows.

Targets: churnml's AUC >= 0.97 x the oracle's on the latest labelled
snapshot; ECE <= 0.02.

Usage::

    python benchmarks/subscription_sim.py                    # 40,000 users, 240 days, 30-day horizon
    python benchmarks/subscription_sim.py --users 10000 --days 200 --trials 5
    python benchmarks/subscription_sim.py --users 10000 --days 200 --trials 5 --init
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from churn_scale import machine

MONTHS = 3
TYPES = ("play", "like", "community_post")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def monthly_metrics(data: Path, rows):
    """The baseline's features for the (as_of, user_id) rows: monthly aggregates, computed with DuckDB."""
    import duckdb

    warnings.filterwarnings("ignore", message="The inplace keyword")  # raised inside DuckDB's .df()
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


def baseline(feats, df, window_days: int, cutoffs) -> dict:
    """The monthly-metrics GBM at each cut-off: fit on the snapshots closed by it, scored on its rows.

    Returns cut-off (ISO date) -> (as_of, user_id, score) of that cut-off's
    rows, plus the rows it was fit on.
    """
    import lightgbm as lgb
    import pandas as pd

    from churnml.features import LABEL

    x = feats.drop(columns=["as_of", "user_id"])
    out = {}
    for c in cutoffs:
        cut = pd.Timestamp(c)
        fit_on = (df["as_of"] + pd.Timedelta(days=window_days) <= cut).to_numpy()
        test = (df["as_of"] == cut).to_numpy()
        model = lgb.LGBMClassifier(random_state=0, verbose=-1, n_jobs=2).fit(x[fit_on], df.loc[fit_on, LABEL])
        out[cut.date().isoformat()] = {
            "rows": df.loc[test, ["as_of", "user_id"]].assign(score=model.predict_proba(x[test])[:, 1]),
            "rows_fit": int(fit_on.sum()),
            "snapshots_fit": sorted(d.date().isoformat() for d in df.loc[fit_on, "as_of"].unique())}
    return out


def run_init(data: Path, work: Path) -> Path:
    """``churnml init`` on the simulated tables, as a user would run it; the config path."""
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "dataset.yaml"
    before = cfg.read_text() if cfg.exists() else None
    args = [sys.executable, "-m", "churnml.cli", "init", "--events", str(data / "events.parquet"),
            "--users", str(data / "users.parquet"), "--subscriptions", str(data / "subscriptions.parquet"),
            "--out", str(cfg), "--force"]
    log("$ churnml " + " ".join(args[3:]))
    res = subprocess.run(args, check=False, capture_output=True, text=True, env=os.environ)
    print(res.stdout + res.stderr, flush=True)
    if res.returncode != 0:
        raise SystemExit(f"churnml init failed (exit {res.returncode})")
    if cfg.read_text() != before:  # new choices: the training set built from the old ones is stale
        (work / "training_set.parquet").unlink(missing_ok=True)
    return cfg


def truth_for(cfg_path: Path, sim, data: Path, work: Path) -> Path:
    """The exact truth at the config's snapshots and horizon: the same simulation rerun with that truth spec."""
    import pandas as pd

    from churnml import simulator
    from churnml.config import load_dataset_config

    ds = load_dataset_config(cfg_path)
    snaps = ds.snapshot_instants()
    meta = {"snapshots": [s.isoformat() for s in snaps], "horizon_days": ds.horizon_days}
    done = work / "sim" / "truth.json"
    if done.exists() and json.loads(done.read_text()) == meta:
        return work / "sim" / "truth" / "subscription_churn.parquet"
    log(f"re-simulating (same seed) for the truth at init's {len(snaps)} snapshots, {ds.horizon_days}-day horizon")
    spec = simulator.TruthSpec(snapshots=snaps, horizon_days=ds.horizon_days)
    simulator.simulate(sim, work / "sim", truth=spec)
    for name in ("events.parquet", "subscriptions.parquet", "users.parquet"):
        a, b = pd.read_parquet(data / name), pd.read_parquet(work / "sim" / name)
        if not a.equals(b):
            raise SystemExit(f"the rerun's {name} differs from the first run's: the truth would not match")
    done.write_text(json.dumps(meta))
    return work / "sim" / "truth" / "subscription_churn.parquet"


SCORERS = ("model", "model uncalibrated", "logistic regression", "recency only", "monthly metrics + GBM",
           "oracle", "oracle (latent state)")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=40_000)
    ap.add_argument("--days", type=int, default=240)
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--horizon", type=int, default=30, help="the simulator config's horizon (not with --init)")
    ap.add_argument("--trials", type=int, default=20, help="Optuna trials (a budget; also with --init)")
    ap.add_argument("--init", action="store_true", help="churnml's dataset config written by `churnml init`")
    ap.add_argument("--folds", type=int, default=None,
                    help="backtest cut-offs (default: the training config's, 3); not with --init")
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.init and a.folds:
        ap.error("--folds is a hand setting: with --init, churnml trains with init's config as written")
    a.data = a.data or HERE / "_data" / f"subscription_sim_{a.users}_{a.days}_{a.seed}"
    a.out = a.out or HERE / "_data" / f"subscription_sim{'_init' if a.init else ''}.json"

    import numpy as np
    import pandas as pd
    import yaml

    from churnml.config import (
        BacktestConfig,
        Settings,
        TrainConfig,
        TuningConfig,
        load_train_config,
    )
    from churnml.evaluation import compare_scores
    from churnml.features import LABEL
    from churnml.jobs import build_features_job, simulate_job
    from churnml.simulator import SimulationConfig, SubscriptionConfig
    from churnml.train import train_churn_job

    t0 = time.perf_counter()
    sim = SimulationConfig(n_users=a.users, days=a.days, seed=a.seed, subscriptions=SubscriptionConfig())
    if not (a.data / "dataset.yaml").exists():
        result, _ = simulate_job(sim, a.data, horizon_days=a.horizon)
        log(f"simulated {result.n_users:,} users, {result.n_events:,} events, "
            f"{result.n_subscriptions:,} subscription periods")
    if a.init:
        work = a.data / "init"
        cfg = run_init(a.data, work)
        truth = truth_for(cfg, sim, a.data, work)
        ts = work / "training_set.parquet"
    else:
        cfg = a.data / "dataset.yaml"
        truth = a.data / "truth" / "subscription_churn.parquet"
        ts = a.data / "training_set.parquet"
    if not ts.exists():
        res = build_features_job(cfg, ts, progress=lambda s: log(f"built {s.date()}"))
        log(f"training set: {res.n_rows:,} rows, {res.n_features} features; churn rate per snapshot "
            f"{ {k: round(v, 3) for k, v in res.churn_rate.items()} }")
    sim_s = time.perf_counter() - t0

    tuning = TuningConfig(trials=a.trials, timeout_seconds=None)
    if a.init:  # init's training section as written, with the training set built from it and the truth
        base = load_train_config(cfg)
        tcfg = base.model_copy(update={"training_set": ts, "truth": truth,
                                       "tuning": base.tuning.model_copy(update={"trials": a.trials})})
    else:
        tcfg = TrainConfig(kind="churn", dataset=cfg, training_set=ts, truth=truth, seed=0, tuning=tuning,
                           **({"backtest": BacktestConfig(folds=a.folds)} if a.folds else {}))
    with tempfile.TemporaryDirectory() as mlruns:
        t1 = time.perf_counter()
        res = train_churn_job(tcfg, settings=Settings(mlruns_dir=mlruns, threads=2), register=False, log=log)
        train_s = time.perf_counter() - t1
    bt = res.backtest
    window = bt.horizon_days  # horizon + grace: the days a label needs after its snapshot

    df = pd.read_parquet(ts)
    df["as_of"] = pd.to_datetime(df["as_of"], utc=True).astype("datetime64[us, UTC]")
    t2 = time.perf_counter()
    base_scores = baseline(monthly_metrics(a.data, df), df, window, bt.cutoffs)
    base_s = time.perf_counter() - t2

    preds = bt.predictions.copy()
    preds["as_of"] = pd.to_datetime(preds["as_of"], utc=True).astype("datetime64[us, UTC]")
    preds = preds.merge(pd.concat([b["rows"] for b in base_scores.values()]).rename(
        columns={"score": "monthly metrics + GBM"}), on=["as_of", "user_id"], how="left", validate="1:1")
    assert preds["monthly metrics + GBM"].notna().all(), "baseline rows missing"
    tables = {}
    for key, p in preds.groupby("cutoff", sort=True):
        if p["oracle"].isna().any():
            raise SystemExit(f"cut-off {key}: {int(p['oracle'].isna().sum())} rows without truth")
        scores = {s: p[s].to_numpy() for s in SCORERS if s in p}
        tables[key] = compare_scores(p[LABEL].to_numpy(), scores, set(scores) - {"recency only"})
        # Same rows, same scores as the backtest's own table for this cut-off.
        assert np.isclose(tables[key].loc["model", "roc_auc"], bt.folds.loc[(key, "model"), "roc_auc"])
    latest = max(tables)
    cols = ["roc_auc", "pr_auc", "ece", "brier", "log_loss"]
    folds = pd.concat(tables, names=["cutoff", "scorer"])[cols]
    mean = folds.groupby(level="scorer", sort=False).mean()
    sd = folds.groupby(level="scorer", sort=False).std(ddof=1)
    last = tables[latest][cols]
    ratio = {k: float(t.loc["model", "roc_auc"] / t.loc["oracle", "roc_auc"]) for k, t in tables.items()}
    base_ratio = {k: float(t.loc["monthly metrics + GBM", "roc_auc"] / t.loc["oracle", "roc_auc"])
                  for k, t in tables.items()}
    n_last = preds[preds["cutoff"] == latest]

    pd.set_option("display.width", 200)
    log(f"latest cut-off {latest} ({len(n_last):,} covered subscribers, {int(n_last[LABEL].sum()):,} churned); "
        f"churnml's fold fit on {bt.fits[latest][bt.choices[latest].split(', ')[0]].get('rows_refit', '?')} rows, "
        f"the baseline on {base_scores[latest]['rows_fit']:,} rows ({', '.join(base_scores[latest]['snapshots_fit'])})"
        f"\n{last.round(4).to_string()}")
    log(f"mean ± sd over cut-offs {', '.join(tables)}:\n"
        + pd.DataFrame({c: [f"{m:.4f} ± {d:.4f}" for m, d in zip(mean[c], sd[c], strict=True)] for c in cols},
                       index=mean.index).to_string())
    cands = bt.candidates.loc[latest, ["roc_auc", "pr_auc", "ece", "log_loss"]]
    log(f"every candidate at {latest} (chosen there on these labels, so not a test figure; the model row above is "
        f"{bt.choices[latest]!r}, chosen by earlier cut-offs or the default):\n{cands.round(4).to_string()}")
    log(f"oracle ratio (churnml) per cut-off {ratio}; monthly-metrics GBM {base_ratio}")

    ds_doc = yaml.safe_load(Path(cfg).read_text())
    ds_doc = ds_doc.get("dataset", ds_doc)
    out = {
        "machine": machine(), "args": {k: str(v) for k, v in vars(a).items()},
        "config": {k: ds_doc.get(k) for k in ("horizon_days", "churn", "eligibility_days", "snapshots",
                                             "feature_windows_days", "onboarding_days")},
        "label_window_days": window, "cutoffs": list(tables), "latest_cutoff": latest,
        "choices": bt.choices, "chosen": bt.chosen, "rows": res.rows,
        "candidates_latest": json.loads(cands.to_json(orient="index")),
        "latest_rows": len(n_last), "latest_churners": int(n_last[LABEL].sum()),
        "baseline_fit": {k: {"rows": b["rows_fit"], "snapshots": b["snapshots_fit"]} for k, b in base_scores.items()},
        "latest": json.loads(last.to_json(orient="index")),
        "mean": json.loads(mean.to_json(orient="index")), "sd": json.loads(sd.to_json(orient="index")),
        "per_cutoff": {k: json.loads(t[cols].to_json(orient="index")) for k, t in tables.items()},
        "oracle_auc_ratio": {"latest": ratio[latest], "mean": float(np.mean(list(ratio.values()))),
                             "per_cutoff": ratio},
        "baseline_oracle_auc_ratio": {"latest": base_ratio[latest], "per_cutoff": base_ratio},
        "targets": {"auc_ratio_ge_0.97_latest": bool(ratio[latest] >= 0.97),
                    "ece_le_0.02_latest": bool(last.loc["model", "ece"] <= 0.02),
                    "beats_monthly_metrics_gbm_latest": bool(last.loc["model", "roc_auc"]
                                                             > last.loc["monthly metrics + GBM", "roc_auc"])},
        "seconds": {"simulate_and_build": round(sim_s, 1), "train": round(train_s, 1),
                    "baseline": round(base_s, 1)},
        "best_params": res.best_params, "optuna_trials": res.trials,
    }
    log(f"latest cut-off {latest}: churnml AUC {last.loc['model', 'roc_auc']:.4f}, oracle "
        f"{last.loc['oracle', 'roc_auc']:.4f} (ratio {ratio[latest]:.4f}); ECE {last.loc['model', 'ece']:.4f}; "
        f"monthly-metrics GBM AUC {last.loc['monthly metrics + GBM', 'roc_auc']:.4f} "
        f"ECE {last.loc['monthly metrics + GBM', 'ece']:.4f}; targets {out['targets']}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2, default=float))
    return out


if __name__ == "__main__":
    main()
