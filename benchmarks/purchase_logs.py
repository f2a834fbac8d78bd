"""Benchmark: churnml configured by `churnml init` alone against BG/NBD and Pareto/NBD on a purchase log.

The log is CDNOW (the full master file shipped with the ``lifetimes``
package: 69,659 purchases of 23,570 customers who first bought in the first
quarter of 1997, 1997-01-01 to 1998-06-30, date-only timestamps), the data
set on which BG/NBD and Pareto/NBD were published.

Protocol of the published baselines: a calibration period up to a cut-off
and a holdout period after it. Churn = no purchase in ``[cut, cut + horizon)``
(90 days asked), among the customers who bought before the cut-off (all of
them). Everything is chosen on calibration data only:

* churnml: ``churnml init --events calibration.csv --horizon-days 90`` on the
  purchases before the cut-off (no dataset-specific code or settings), then
  ``churnml train churn``, ``churnml promote`` and ``churnml score --as-of
  cut`` on the config it wrote, through the command line as a user would.
  Scores are ``p_churn`` of ``scores.parquet``. A customer churnml does not
  score (lapsed for longer than the eligibility window init chose) is one it
  calls already lost: ``p_churn = 1``.
* BG/NBD and Pareto/NBD (``lifetimes``, maximum likelihood, no penalty) on
  each customer's calibration frequency, recency and age ``T`` in days. The
  churn probability is ``P(no purchase in the horizon | history)``: for
  Pareto/NBD ``conditional_probability_of_n_purchases_up_to_time(0, ...)``;
  for BG/NBD, where dropout happens only at a purchase,
  ``1 - P(alive) + P(alive) * ((alpha + T) / (alpha + T + t)) ** (r + x)``.
  ``1 - P(alive)`` is reported too.
* Recency only: days since the last purchase (a rank, no probability).

Reported on the same customers and cut-off: ROC-AUC, PR-AUC (churned
positive, and returners positive), Brier score and ECE (10 quantile bins),
on all customers and on the ones churnml scores.

Usage::

    pip install -e '.[bench]'
    python benchmarks/purchase_logs.py --horizon-days 90 --cut 1998-04-01 --work out/bench_cdnow
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from churnml.metrics import brier_score, expected_calibration_error, pr_auc, roc_auc


def load_cdnow() -> pd.DataFrame:
    """CDNOW's transaction log from the lifetimes package: customer_id, date (ISO date), number_of_cds, dollar_value."""
    import lifetimes

    path = Path(lifetimes.__file__).parent / "datasets" / "CDNOW_master.txt"
    df = pd.read_csv(path, sep=r"\s+")
    df["date"] = pd.to_datetime(df["date"].astype(str), format="%Y%m%d")
    return df


def rfm(tx: pd.DataFrame, cut: pd.Timestamp) -> pd.DataFrame:
    """BG/NBD's summary per customer from purchases before ``cut``: frequency x (repeat purchase days),
    recency t_x and age T in days (T from the first purchase to the cut-off)."""
    cal = tx[tx["date"] < cut]
    g = cal.groupby("customer_id")["date"]
    first, last, n = g.min(), g.max(), g.nunique()
    return pd.DataFrame({"frequency": (n - 1).astype(float), "recency": (last - first).dt.days.astype(float),
                         "T": (cut - first).dt.days.astype(float), "days_since_last": (cut - last).dt.days.astype(float)})


def baselines(summary: pd.DataFrame, horizon: int) -> tuple[pd.DataFrame, dict]:
    """P(no purchase in the horizon) and 1 - P(alive) under BG/NBD and Pareto/NBD fitted on ``summary``."""
    from lifetimes import BetaGeoFitter, ParetoNBDFitter

    f, r, T = (summary[c].to_numpy() for c in ("frequency", "recency", "T"))
    out = pd.DataFrame(index=summary.index)
    fits = {}
    t0 = time.perf_counter()
    bg = BetaGeoFitter(penalizer_coef=0.0).fit(f, r, T)
    fits["bg_nbd"] = {"params": {k: float(v) for k, v in bg.params_.items()}, "seconds": time.perf_counter() - t0}
    p = bg.params_
    alive = np.asarray(bg.conditional_probability_alive(f, r, T), dtype=float)
    stay_silent = ((p["alpha"] + T) / (p["alpha"] + T + horizon)) ** (p["r"] + f)
    out["BG/NBD P(no purchase)"] = 1 - alive + alive * stay_silent
    out["BG/NBD 1 - P(alive)"] = 1 - alive
    t0 = time.perf_counter()
    pn = ParetoNBDFitter(penalizer_coef=0.0).fit(f, r, T)
    fits["pareto_nbd"] = {"params": {k: float(v) for k, v in pn.params_.items()}, "seconds": time.perf_counter() - t0}
    out["Pareto/NBD P(no purchase)"] = np.asarray(pn.conditional_probability_of_n_purchases_up_to_time(0, horizon, f, r, T),
                                                  dtype=float)
    out["Pareto/NBD 1 - P(alive)"] = 1 - np.asarray(pn.conditional_probability_alive(f, r, T), dtype=float)
    return out, fits


def churnml_scores(calibration_csv: Path, work: Path, cut: pd.Timestamp, horizon: int, trials: int,
                   reuse: bool = False) -> tuple[pd.Series, dict]:
    """Run churnml as a user would: init, train churn, promote, score at the cut-off; p_churn per customer."""
    env = {**os.environ, "CHURNML_MLRUNS_DIR": str(work / "mlruns")}
    exe = [sys.executable, "-m", "churnml.cli"]
    cfg = work / "dataset.yaml"
    steps = [
        ("init", ["init", "--events", str(calibration_csv), "--horizon-days", str(horizon), "--out", str(cfg), "--force"]),
        ("train", ["train", "churn", "-c", str(cfg), "--trials", str(trials)]),
        ("promote", ["promote", "-c", str(cfg)]),
        ("score", ["score", "-c", str(cfg), "--as-of", cut.date().isoformat(), "--force"]),
    ]
    seconds, logs = {}, {}
    if reuse and (work / "lists" / cut.date().isoformat() / "scores.parquet").exists():
        steps = []  # the scores of an earlier run with the same work folder
    for name, args in steps:
        t0 = time.perf_counter()
        res = subprocess.run(exe + args, env=env, capture_output=True, text=True)
        seconds[name] = round(time.perf_counter() - t0, 1)
        logs[name] = res.stdout + res.stderr
        (work / f"{name}.log").write_text(logs[name])
        if res.returncode != 0:
            raise SystemExit(f"churnml {name} failed (exit {res.returncode}):\n{logs[name]}")
        print(f"churnml {name}: {seconds[name]} s", file=sys.stderr)
    import yaml

    chosen = yaml.safe_load(cfg.read_text())["dataset"]
    scores = pd.read_parquet(work / "lists" / cut.date().isoformat() / "scores.parquet")
    p = scores.set_index(scores["user_id"].astype("int64"))["p_churn"]
    info = {"seconds": seconds, "config": {k: chosen[k] for k in ("eligibility_days", "horizon_days", "snapshots",
                                                                   "feature_windows_days", "onboarding_days")},
            "train_log_tail": (work / "train.log").read_text().splitlines()[-12:]}
    return p, info


def evaluate(y: np.ndarray, scores: dict[str, np.ndarray]) -> pd.DataFrame:
    """ROC-AUC, PR-AUC, Brier and ECE of each score (Brier and ECE only for probabilities)."""
    rows = {}
    for name, s in scores.items():
        # With most customers churning, PR-AUC of the churners is near its floor for any score; the
        # returners' PR-AUC (1 - score ranks them) shows the difference.
        rank = (pd.Series(s).rank(method="average").to_numpy() - 1) / max(len(s) - 1, 1)  # AUCs depend on ranks only
        row = {"roc_auc": roc_auc(y, rank), "pr_auc": pr_auc(y, rank), "pr_auc_returners": pr_auc(1 - y, 1 - rank)}
        if s.min() >= 0 and s.max() <= 1 and "recency" not in name:
            row |= {"brier": brier_score(y, s), "ece": expected_calibration_error(y, s)}
        rows[name] = row
    return pd.DataFrame(rows).T


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cut", default="1998-04-01", help="calibration/holdout cut-off (holdout = [cut, cut + horizon))")
    ap.add_argument("--horizon-days", type=int, default=90)
    ap.add_argument("--trials", type=int, default=30, help="Optuna trials for churnml (init's default: 30)")
    ap.add_argument("--work", type=Path, default=Path("out/bench_cdnow"))
    ap.add_argument("--json", type=Path, help="write the figures here as JSON")
    ap.add_argument("--reuse", action="store_true", help="reuse churnml's scores from an earlier run in --work")
    args = ap.parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    cut = pd.Timestamp(args.cut)
    end = cut + pd.Timedelta(days=args.horizon_days)

    tx = load_cdnow()
    if end > tx["date"].max() + pd.Timedelta(days=1):
        raise SystemExit(f"the holdout window [{cut.date()}, {end.date()}) runs past the log's end ({tx['date'].max().date()})")
    cal = tx[tx["date"] < cut].assign(date=lambda d: d["date"].dt.date.astype(str))
    calibration_csv = work / "calibration.csv"
    cal.to_csv(calibration_csv, index=False)  # the churnml side sees the calibration period only

    summary = rfm(tx, cut)
    bought = tx[(tx["date"] >= cut) & (tx["date"] < end)]["customer_id"].unique()
    y = (~summary.index.isin(bought)).astype(int)
    print(f"{len(summary):,} customers bought before {cut.date()}; {y.mean():.1%} made no purchase in "
          f"[{cut.date()}, {end.date()})", file=sys.stderr)

    base, fits = baselines(summary, args.horizon_days)
    p_churnml, info = churnml_scores(calibration_csv, work, cut, args.horizon_days, args.trials, args.reuse)
    scored = summary.index.isin(p_churnml.index)
    ours = p_churnml.reindex(summary.index).fillna(1.0).to_numpy()  # not scored = lapsed past eligibility = lost
    scores = {"churnml (init alone)": ours, **{c: base[c].to_numpy() for c in base},
              "recency only (days since last purchase)": summary["days_since_last"].to_numpy()}
    all_customers = evaluate(y, scores)
    eligible = evaluate(y[scored], {k: v[scored] for k, v in scores.items()})
    pd.set_option("display.width", 160)
    print(f"\nall {len(y):,} customers (churn rate {y.mean():.3f}):\n{all_customers.round(4)}")
    print(f"\nthe {scored.sum():,} customers churnml scores (churn rate {y[scored].mean():.3f}):\n{eligible.round(4)}")
    print(f"\nchurnml config chosen by init: {json.dumps(info['config'])}")
    print(f"seconds: {info['seconds']}; BG/NBD fit {fits['bg_nbd']['seconds']:.1f} s, "
          f"Pareto/NBD fit {fits['pareto_nbd']['seconds']:.1f} s")
    doc = {"date": dt.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "cut": str(cut.date()), "horizon_days": args.horizon_days, "trials": args.trials,
           "n_customers": int(len(y)), "churn_rate": float(y.mean()), "n_scored_by_churnml": int(scored.sum()),
           "all": all_customers.to_dict("index"), "scored": eligible.to_dict("index"), "fits": fits, "churnml": info}
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
