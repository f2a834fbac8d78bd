"""Benchmark: SHAP contributions and reason codes for many users on a synthetic churn model.

Builds a synthetic feature frame shaped like the feature job's output (recency,
frequency, onboarding, activity, trend, gaps, campaign, tenure and a
categorical attribute, named and described as the schema file does) and a
LightGBM booster trained on a sample of it, then times each phase in its own
child process so its wall time and peak resident memory are measured
separately (``os.wait4`` rusage):

``contrib_exact``
    :func:`churnml.explain.contributions`: exact TreeSHAP (LightGBM's
    ``pred_contrib``, explaining each tree's distinct decision patterns once).
``reasons_exact``
    :func:`churnml.explain.reason_codes` end to end, exact.
``lightgbm_sample``
    LightGBM's ``pred_contrib`` called directly on ``--sample`` users, for
    the side-by-side rate, and the largest difference from ``contributions``
    on the same users.
``contrib_approx``
    The same with ``approximate=True`` (Saabas, via ``pred_leaf``).
``reasons_given_contrib``
    :func:`churnml.explain.reason_codes` with the contributions passed in:
    choosing and wording the reasons alone (contributions computed untimed),
    each reason a different fact (the default, ``distinct=True``).
``reasons_given_contrib_plain``
    The same with ``distinct=False`` (the plain top contributions), for the
    cost of de-duplicating reasons side by side; both report how many users
    got a reason that restates another (``repeated``).
``reasons_approx``
    ``reason_codes(approximate=True)`` end to end, contributions chunked inside.
``agreement``
    On a sample, how often exact and approximate reasons agree.

``--champion`` replaces the synthetic frame and model by the registered
``churn-risk@champion`` of ``benchmarks/_data/mlruns`` (trained by
``churn_scale.py`` on the 200k-user simulation) and the latest 1,000,000
user-snapshots of the 1M-user simulation's training set (``features_scale.py``
/ ``churn_scale.py`` write it): the model and features the product runs on.

Usage::

    python benchmarks/reason_codes_scale.py --champion
    python benchmarks/reason_codes_scale.py --users 1000000 --features 80 --trees 300
    python benchmarks/reason_codes_scale.py --users 1000000 --reuse --phases contrib_approx

Figures go to stdout as a Markdown table; copy them to BENCHMARKS.md with the
machine, date and command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from churn_scale import run_child

HERE = Path(__file__).resolve().parent
EVENTS = ["play", "like", "search", "share", "playlist_add", "community_join", "community_post", "visit"]
PHASES = ["lightgbm_sample", "contrib_exact", "reasons_exact", "contrib_approx", "reasons_given_contrib",
          "reasons_given_contrib_plain", "reasons_approx", "agreement"]


def _schema_columns(n_features: int) -> list[dict]:
    """Feature columns as the schema file describes them, cut to ``n_features``."""
    cols = [
        ("days_since_last_activity", "days since the user's last activity", "recency", None),
        ("tenure_days", "days since signup", "tenure", None),
        ("active_days_7d", "days with activity among the last 7", "activity", 7),
        ("active_days_30d", "days with activity among the last 30", "activity", 30),
        ("n_events_7d", "number of activity events in the last 7 days", "activity", 7),
        ("n_events_30d", "number of activity events in the last 30 days", "activity", 30),
        ("n_events_prev_7d", "activity events 8-14 days ago", "trend", 14),
        ("activity_trend_7d",
         "log ratio of activity in the last 7 days to the 7 before (below 0 = slowing)", "trend", 14),
        ("gap_mean_days", "average gap in days between consecutive active days", "gaps", None),
        ("gap_max_days", "longest gap in days between consecutive active days", "gaps", None),
        ("times_contacted", "recall messages received so far", "campaign", None),
        ("communities_joined", "distinct communities joined so far", "distinct", None),
        ("platform", "user attribute 'platform' from the users table", "attribute", None),
    ]
    i = 0
    while len(cols) < n_features:
        ev = EVENTS[i % len(EVENTS)] + ("" if i < len(EVENTS) else f"_{i // len(EVENTS)}")
        cols += [
            (f"days_since_last_{ev}", f"days since the user's last '{ev}' event (empty if never)",
             "recency", None),
            (f"n_{ev}_7d", f"number of '{ev}' events in the last 7 days", "frequency", 7),
            (f"n_{ev}_30d", f"number of '{ev}' events in the last 30 days", "frequency", 30),
            (f"n_{ev}_all", f"number of '{ev}' events so far", "frequency", None),
            (f"onboard_n_{ev}_7d", f"'{ev}' events in the first 7 days after signup", "onboarding", 7),
        ]
        i += 1
    return [{"name": n, "dtype": "double", "description": d, "family": f, "window_days": w}
            for n, d, f, w in cols[:n_features]]


def _synthetic(users: int, columns: list[dict], seed: int):
    """A feature frame with plausible values and a churn label driven by a few of them."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    engage = rng.gamma(1.0, 1.0, users)  # events per day
    tenure = rng.uniform(7, 365, users)
    idle = rng.exponential(3.0 / (engage + 0.05))
    data: dict[str, np.ndarray] = {}
    for c in columns:
        name, w = c["name"], c["window_days"]
        rate = engage * rng.uniform(0.05, 1.0)
        if name == "days_since_last_activity":
            v = idle
        elif name == "tenure_days":
            v = tenure
        elif name.startswith("active_days_"):
            v = rng.binomial(w, 1 - np.exp(-engage))
        elif name.startswith("days_since_last_"):
            v = idle + rng.exponential(10.0 / (rate + 0.01))
            v[rng.random(users) < np.exp(-3 * rate)] = np.nan  # never did it
        elif name == "activity_trend_7d":
            v = np.log((rng.poisson(7 * engage) + 1) / (rng.poisson(7 * engage * 1.1) + 1))
        elif name.startswith("gap_"):
            v = rng.exponential(2.0 / (engage + 0.1))
            v[engage < 0.05] = np.nan
        elif name == "platform":
            v = pd.Categorical(rng.choice(["android", "ios", "web"], users, p=[0.5, 0.4, 0.1]))
        elif name.startswith("onboard_"):
            v = rng.poisson(rate * 7).astype(np.float64)
        else:
            v = rng.poisson(rate * (w or tenure)).astype(np.float64)
        data[name] = v
    X = pd.DataFrame(data)
    logit = (0.12 * X["days_since_last_activity"].clip(upper=40) - 0.6 * np.log1p(X["n_events_7d"])
             - 0.4 * np.log1p(X.filter(like="onboard_").iloc[:, :2].sum(axis=1)) - 0.5)
    y = (rng.random(users) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return X, y


def _prepare(data: Path, users: int, n_features: int, trees: int, leaves: int, train_rows: int,
             seed: int) -> dict:
    import lightgbm as lgb

    data.mkdir(parents=True, exist_ok=True)
    columns = _schema_columns(n_features)
    t0 = time.perf_counter()
    X, y = _synthetic(users, columns, seed)
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = min(train_rows, users)
    params = {"objective": "binary", "num_leaves": leaves, "learning_rate": 0.05, "verbose": -1,
              "seed": seed, "deterministic": True}
    booster = lgb.train(params, lgb.Dataset(X.iloc[:n], y[:n]), num_boost_round=trees)
    train_s = time.perf_counter() - t0
    X.to_parquet(data / "features.parquet")
    booster.save_model(str(data / "model.txt"))
    (data / "features.schema.json").write_text(json.dumps({"columns": columns}))
    depth = _mean_depth(booster)
    return {"gen_s": gen_s, "train_s": train_s, "trees": booster.num_trees(), "mean_depth": depth}


def _prepare_champion(data: Path, mlruns: Path, frame: Path, rows: int) -> dict:
    """Write the champion churn model, its input matrix for the latest ``rows`` rows and the schema."""
    import shutil

    import pandas as pd

    from churnml import tracking
    from churnml.config import Settings

    data.mkdir(parents=True, exist_ok=True)
    model, ref = tracking.load_model("churn-risk", "champion",
                                     Settings(mlflow_tracking_uri=f"sqlite:///{mlruns / 'mlflow.db'}"))
    table = pd.read_parquet(frame)
    table = table.iloc[-rows:]
    model.matrix(table).reset_index(drop=True).to_parquet(data / "features.parquet")
    model.booster.save_model(str(data / "model.txt"))
    shutil.copy(frame.with_name(frame.stem + ".schema.json"), data / "features.schema.json")
    return {"model": f"{ref.name} v{ref.version}", "trees": model.booster.num_trees(),
            "mean_depth": _mean_depth(model.booster), "rows": len(table),
            "snapshots": sorted(str(d)[:10] for d in table["as_of"].unique())}


def _mean_depth(booster) -> float:
    def depth(node: dict) -> int:
        if "split_feature" not in node:
            return 0
        return 1 + max(depth(node["left_child"]), depth(node["right_child"]))

    trees = booster.dump_model()["tree_info"]
    return sum(depth(t["tree_structure"]) for t in trees) / max(len(trees), 1)


def _load(data: Path, rows: int | None = None):
    import lightgbm as lgb
    import pandas as pd

    from churnml.explain import glossary_from_schema

    X = pd.read_parquet(data / "features.parquet")
    if rows is not None:
        X = X.iloc[:rows]
    booster = lgb.Booster(model_file=str(data / "model.txt"))
    glossary = glossary_from_schema(json.loads((data / "features.schema.json").read_text()))
    return X, booster, glossary


def _child(phase: str, data: Path, exact_users: int | None, sample: int) -> dict:
    from churnml.explain import contributions, reason_codes

    t0 = time.perf_counter()
    X, booster, glossary = _load(data, exact_users if phase in ("contrib_exact", "reasons_exact") else None)
    out: dict = {"rows": len(X), "load_s": time.perf_counter() - t0}
    t0 = time.perf_counter()
    if phase == "contrib_exact":
        contributions(booster, X)
    elif phase == "reasons_exact":
        reasons = reason_codes(booster, X, glossary)
        out["example"] = " | ".join(str(r) for r in reasons.iloc[0, :3])
    elif phase == "lightgbm_sample":
        import numpy as np

        S = X.iloc[:sample]
        direct = booster.predict(S, pred_contrib=True)
        out["lightgbm_users_per_s"] = round(len(S) / (time.perf_counter() - t0))
        t1 = time.perf_counter()
        ours, _ = contributions(booster, S)
        out["contributions_users_per_s"] = round(len(S) / (time.perf_counter() - t1))
        out["max_abs_diff"] = float(np.abs(ours - direct[:, :-1]).max())
        out["rows"] = len(S)
    elif phase == "contrib_approx":
        contributions(booster, X, approximate=True)
    elif phase in ("reasons_given_contrib", "reasons_given_contrib_plain"):
        contrib, _ = contributions(booster, X, approximate=True)
        t0 = time.perf_counter()
        reasons = reason_codes(booster, X, glossary, contrib=contrib, distinct=phase == "reasons_given_contrib")
        out["phase_s"] = time.perf_counter() - t0
        out["example"] = " | ".join(str(r) for r in reasons.iloc[0, :3])
        out["repeated"] = _repeated(reasons)
        return out
    elif phase == "reasons_approx":
        reason_codes(booster, X, glossary, approximate=True)
    elif phase == "agreement":
        S = X.iloc[:sample]
        exact = reason_codes(booster, S, glossary)
        approx = reason_codes(booster, S, glossary, approximate=True)
        feats = [f"reason_{j}_feature" for j in (1, 2, 3)]
        same_first = (exact[feats[0]] == approx[feats[0]]).mean()
        overlap = [len(set(a) & set(b)) / 3 for a, b in zip(exact[feats].itertuples(index=False),
                                                           approx[feats].itertuples(index=False),
                                                           strict=True)]
        out.update(rows=len(S), same_reason_1=round(float(same_first), 3),
                   top3_overlap=round(sum(overlap) / len(overlap), 3))
    out["phase_s"] = time.perf_counter() - t0
    return out


def _repeated(reasons) -> int:
    """Users two of whose reasons state one fact: the same moment twice ("no activity for 9 days",
    "last 'visit' event 9 days ago"), or a window that the inactivity shown already empties."""
    import re

    repeated = 0
    for texts in reasons[["reason_1", "reason_2", "reason_3"]].itertuples(index=False):
        words = [t for t in texts if isinstance(t, str)]
        moments = [int(m.group(1) or m.group(2)) for t in words if (m := re.fullmatch(
            r"no activity for (\d+) days?|last '[^']+' event (\d+) days? ago", t))]
        inactive = [int(m.group(1)) for t in words if (m := re.fullmatch(r"no activity for (\d+) days?", t))]
        empty = [int(m.group(1)) for t in words
                 if (m := re.fullmatch(r"(?:no .+ events? in|not active on any of) the last (\d+) days", t))]
        repeated += len(moments) != len(set(moments)) or any(w <= d for w in empty for d in inactive)
    return repeated


def _run_child(args: argparse.Namespace, phase: str) -> dict:
    argv = ["--data", str(args.data), "--sample", str(args.sample)]
    if args.exact_users:
        argv += ["--exact-users", str(args.exact_users)]
    return run_child(__file__, phase, argv)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=80)
    ap.add_argument("--trees", type=int, default=300)
    ap.add_argument("--leaves", type=int, default=31)
    ap.add_argument("--train-rows", type=int, default=100_000, help="rows the booster is trained on")
    ap.add_argument("--exact-users", type=int, default=None,
                    help="explain only this many users in contrib_exact (default: all)")
    ap.add_argument("--sample", type=int, default=20_000, help="users in the agreement phase")
    ap.add_argument("--phases", nargs="+", choices=PHASES, default=PHASES)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data", type=Path, default=HERE / "_data" / "reasons")
    ap.add_argument("--reuse", action="store_true", help="reuse the frame and model already in --data")
    ap.add_argument("--champion", action="store_true",
                    help="the registered champion and simulated features instead of a synthetic model")
    ap.add_argument("--mlruns", type=Path, default=HERE / "_data" / "mlruns")
    ap.add_argument("--frame", type=Path, default=HERE / "_data" / "sim" / "training_set.parquet",
                    help="--champion: the feature table whose latest --users rows are explained")
    ap.add_argument("--child", choices=PHASES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.data, args.exact_users, args.sample)))
        return

    results = {}
    if args.champion and args.data == HERE / "_data" / "reasons":
        args.data = HERE / "_data" / "reasons_champion"
    if args.champion and not (args.reuse and (args.data / "model.txt").exists()):
        t0 = time.perf_counter()
        results["prepare"] = _prepare_champion(args.data, args.mlruns.resolve(), args.frame.resolve(), args.users)
        results["prepare"]["wall_s"] = time.perf_counter() - t0
        print(f"prepare: {results['prepare']}", file=sys.stderr)
    elif not (args.reuse and (args.data / "model.txt").exists()):
        t0 = time.perf_counter()
        results["prepare"] = _prepare(args.data, args.users, args.features, args.trees, args.leaves,
                                      args.train_rows, args.seed)
        results["prepare"]["wall_s"] = time.perf_counter() - t0
        print(f"prepare: {results['prepare']}", file=sys.stderr)
    for phase in args.phases:
        results[phase] = _run_child(args, phase)
        print(f"{phase}: {results[phase]}", file=sys.stderr)
    print(f"\nmachine: {platform.node()} {os.cpu_count()} cores, python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    if args.champion:
        print(f"users: {args.users:,}, model: the registered churn champion ({args.data})\n")
    else:
        print(f"users: {args.users:,}, features: {args.features}, trees: {args.trees}, leaves: {args.leaves}\n")
    print("| phase | phase s | wall s | peak RSS GB | notes |\n|---|---|---|---|---|")
    for key, r in results.items():
        notes = ", ".join(f"{k}={v:,}" if isinstance(v, int) and not isinstance(v, bool) else f"{k}={v:.2g}" if isinstance(v, float) and abs(v) < 0.01
                          else f"{k}={v:.2f}" if isinstance(v, float)
                          else f"{k}={v}" for k, v in r.items()
                          if k not in ("wall_s", "peak_rss_gb", "phase_s"))
        print(f"| {key} | {r.get('phase_s', float('nan')):.1f} | {r['wall_s']:.1f} | "
              f"{r.get('peak_rss_gb', float('nan')):.2f} | {notes} |")


if __name__ == "__main__":
    main()
