"""Benchmark: churnml uplift learners against scikit-uplift and causalml on Hillstrom.

Follows the protocol of ``shared/data/README.md`` exactly: outcome ``visit``;
features recency, history, mens, womens, newbie plus one-hot zip_code and
channel; ``train_test_split(test_size=0.3, random_state=seed,
stratify=2*treatment+visit)``; metrics on the test part (``qini_auc_score``,
``uplift_auc_score``, ``uplift_at_k(k=0.3, strategy='by_group')``, identical to
scikit-uplift 0.5.1); LightGBM peers with the reference settings.

Our side is every learner of ``default_candidates`` plus the one
``select_uplift_model`` picks by 5-fold cross-validated Qini on the *training*
part of each split (the test part is never passed to it). Peers are run in the
same process on the same splits, so the differences are paired per seed.

Every method gets the same threads: LightGBM ``n_jobs=--n-jobs`` and BLAS
limited to one thread (threadpoolctl), so timings are comparable on a shared
machine. scikit-uplift and causalml are benchmark-only dependencies; a peer
whose package is missing is skipped and listed as such.

Usage::

    python benchmarks/hillstrom.py --seeds 0 1 2 3 4 --settings womens_vs_none any_vs_none
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from churnml.metrics import qini_auc_score, uplift_at_k, uplift_auc_score
from churnml.models.uplift import default_candidates, select_uplift_model

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_DATA = (REPO / ".." / "shared" / "data" / "hillstrom.csv").resolve()
LGBM_REFERENCE = {
    "n_estimators": 200,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 50,
}
SETTINGS = ("womens_vs_none", "any_vs_none")
SELECTED = "ours: CV-selected"


def load_hillstrom(path: Path, setting: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The README's features, outcome (visit) and treatment for one setting."""
    raw = pd.read_csv(path)
    if setting == "womens_vs_none":
        raw = raw[raw["segment"] != "Mens E-Mail"]
        treatment = (raw["segment"] == "Womens E-Mail").to_numpy(dtype=int)
    elif setting == "any_vs_none":
        treatment = (raw["segment"] != "No E-Mail").to_numpy(dtype=int)
    else:
        raise SystemExit(f"unknown setting {setting!r}; choose from {SETTINGS}")
    numbers = raw[["recency", "history", "mens", "womens", "newbie"]].astype(float)
    onehot = [pd.get_dummies(raw[c], prefix=c, dtype=float) for c in ("zip_code", "channel")]
    X = pd.concat([numbers, *onehot], axis=1).reset_index(drop=True)
    return X, raw["visit"].to_numpy(dtype=int), treatment


def _metrics(y, uplift, t) -> dict:
    return {
        "qini_auc": float(qini_auc_score(y, uplift, t)),
        "uplift_auc": float(uplift_auc_score(y, uplift, t)),
        "uplift_at_30": float(uplift_at_k(y, uplift, t, strategy="by_group", k=0.3)),
    }


def _lgbm(cls, seed: int, n_jobs: int):
    return cls(
        **LGBM_REFERENCE,
        random_state=seed,
        n_jobs=n_jobs,
        verbose=-1,
        deterministic=True,
        force_row_wise=True,
    )


def _logistic():
    # Standardised so lbfgs converges fast; same scores as on raw features (checked: 0.064 / 0.038).
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


def peers(seed: int, n_jobs: int) -> tuple[dict, list[str]]:
    """Runners ``(Xtr, ytr, ttr, Xte) -> uplift`` for the peer libraries, and skipped peers."""
    runners, skipped = {}, []
    try:
        from sklift.models import ClassTransformation, SoloModel, TwoModels
    except ImportError:
        skipped.append("scikit-uplift (not installed)")
    else:

        def sklift(make):
            def run(Xtr, ytr, ttr, Xte):
                return make().fit(Xtr, ytr, ttr).predict(Xte)

            return run

        clf = lambda: _lgbm(lgb.LGBMClassifier, seed, n_jobs)
        runners["sklift SoloModel + LightGBM"] = sklift(lambda: SoloModel(clf()))
        runners["sklift TwoModels + LightGBM"] = sklift(
            lambda: TwoModels(clf(), clf(), method="vanilla")
        )
        runners["sklift ClassTransformation + LogReg"] = sklift(
            lambda: ClassTransformation(_logistic())
        )
        runners["sklift TwoModels + LogReg"] = sklift(
            lambda: TwoModels(_logistic(), _logistic(), method="vanilla")
        )
    try:
        from causalml.inference.meta import (
            BaseDRClassifier,
            BaseSClassifier,
            BaseTClassifier,
            BaseXClassifier,
        )
    except ImportError as exc:
        skipped.append(f"causalml meta-learners ({exc})")
    else:
        clf = lambda: _lgbm(lgb.LGBMClassifier, seed, n_jobs)
        reg = lambda: _lgbm(lgb.LGBMRegressor, seed, n_jobs)

        def causal(make, with_p, fit_kw=None):
            def run(Xtr, ytr, ttr, Xte):
                # A randomised experiment: the propensity is the known treated share, as in ours.
                kw = {"p": np.full(len(ttr), ttr.mean())} if with_p else {}
                model = make()
                model.fit(Xtr.to_numpy(), ttr, ytr, **kw, **(fit_kw or {}))
                kw = {"p": np.full(len(Xte), ttr.mean())} if with_p else {}
                return np.ravel(model.predict(Xte.to_numpy(), verbose=False, **kw))

            return run

        runners["causalml BaseS + LightGBM"] = causal(lambda: BaseSClassifier(learner=clf()), False)
        runners["causalml BaseT + LightGBM"] = causal(lambda: BaseTClassifier(learner=clf()), False)
        runners["causalml BaseX + LightGBM"] = causal(
            lambda: BaseXClassifier(outcome_learner=clf(), effect_learner=reg()), True
        )
        runners["causalml BaseDR + LightGBM"] = causal(
            lambda: BaseDRClassifier(
                control_outcome_learner=clf(),
                treatment_outcome_learner=clf(),
                treatment_effect_learner=reg(),
            ),
            True,
            {"seed": seed},  # its cross-fitting folds are otherwise unseeded
        )
    try:
        from causalml.inference.tree import UpliftRandomForestClassifier
    except ImportError as exc:
        skipped.append(f"causalml UpliftRandomForestClassifier ({exc})")
    else:

        def urf(Xtr, ytr, ttr, Xte):
            model = UpliftRandomForestClassifier(
                control_name="control", evaluationFunction="KL", random_state=seed, n_jobs=n_jobs
            )
            model.fit(Xtr.to_numpy(), np.where(ttr == 1, "treatment", "control"), ytr)
            return np.ravel(model.predict(Xte.to_numpy()))

        runners["causalml UpliftRandomForest (KL)"] = urf
    return runners, skipped


def _timed(fn, *args, repeats: int = 1):
    """``fn(*args)`` and its fastest wall time over ``repeats`` runs (the machine is shared)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - start)
    return out, best


def run_split(
    X, y, t, seed: int, n_jobs: int, cv: int, repeats: int, test_size: float = 0.3
) -> dict:
    """All methods on one split; returns {method: metrics + seconds} and the selection record."""
    Xtr, Xte, ytr, yte, ttr, tte = train_test_split(
        X, y, t, test_size=test_size, random_state=seed, stratify=2 * t + y
    )
    rows: dict[str, dict] = {}
    rng = np.random.default_rng(seed)
    rows["random scores"] = {**_metrics(yte, rng.random(len(yte)), tte), "seconds": 0.0}

    candidates = default_candidates(seed=seed, n_jobs=n_jobs)
    ours_uplift = {}
    for name, model in candidates.items():

        def fit_predict(model=model):
            return model.fit(Xtr, ytr, ttr).predict(Xte)

        uplift, seconds = _timed(fit_predict, repeats=repeats)
        ours_uplift[name] = uplift
        rows[f"ours: {name}"] = {**_metrics(yte, uplift, tte), "seconds": seconds}

    # Selection sees the training part only; the test part is scored afterwards.
    (best, fitted, table), select_seconds = _timed(
        lambda: select_uplift_model(Xtr, ytr, ttr, candidates, cv=cv, seed=seed)
    )
    uplift = fitted.predict(Xte)
    # The refit on all training rows is the same model as the candidate run above.
    assert np.allclose(uplift, ours_uplift[best]), "selected refit differs from the candidate run"
    rows[SELECTED] = {
        **_metrics(yte, uplift, tte),
        "seconds": rows[f"ours: {best}"]["seconds"],
        "selection_seconds": select_seconds,
        "chosen": best,
    }

    runners, skipped = peers(seed, n_jobs)
    for name, run in runners.items():
        uplift, seconds = _timed(run, Xtr, ytr, ttr, Xte, repeats=repeats)
        rows[name] = {**_metrics(yte, uplift, tte), "seconds": seconds, "peer": True}
    selection = {"chosen": best, "cv_table": table.reset_index().to_dict(orient="records")}
    return {"methods": rows, "selection": selection, "skipped": skipped}


def summarise(per_seed: list[dict]) -> dict:
    """Mean and sample std over seeds of every metric; paired difference to the best peer."""
    methods = list(per_seed[0]["methods"])
    summary = {}
    for m in methods:
        runs = [s["methods"][m] for s in per_seed]
        entry = {"peer": bool(runs[0].get("peer", False))}
        for key in ("qini_auc", "uplift_auc", "uplift_at_30", "seconds"):
            vals = np.array([r[key] for r in runs])
            entry[key] = {
                "mean": float(vals.mean()),
                "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                "per_seed": vals.tolist(),
            }
        summary[m] = entry
    peer_names = [m for m in methods if summary[m]["peer"]]
    out = {"methods": summary}
    if peer_names:
        best_peer = max(peer_names, key=lambda m: summary[m]["qini_auc"]["mean"])
        ours = np.array(summary[SELECTED]["qini_auc"]["per_seed"])
        diff = ours - np.array(summary[best_peer]["qini_auc"]["per_seed"])
        # "Comparable quality": a peer whose mean Qini is at least 90% of the selected learner's.
        ours_mean = summary[SELECTED]["qini_auc"]["mean"]
        comparable = [m for m in peer_names if summary[m]["qini_auc"]["mean"] >= 0.9 * ours_mean]
        fastest = (
            min(comparable, key=lambda m: summary[m]["seconds"]["mean"]) if comparable else None
        )
        out["paired_vs_best_peer"] = {
            "best_peer": best_peer,
            "per_seed": diff.tolist(),
            "mean": float(diff.mean()),
            "std": float(diff.std(ddof=1)) if len(diff) > 1 else 0.0,
            "seeds_not_worse": int((diff >= 0).sum()),
        }
        if fastest:
            ratio = summary[SELECTED]["seconds"]["mean"] / summary[fastest]["seconds"]["mean"]
            out["time_vs_fastest_comparable_peer"] = {"peer": fastest, "ratio": float(ratio)}
    out["chosen_per_seed"] = [s["methods"][SELECTED]["chosen"] for s in per_seed]
    return out


def markdown(setting: str, summary: dict) -> str:
    """One markdown table per setting, best qini first, plus the paired line."""

    def pm(v, fmt=".3f"):
        return f"{v['mean']:{fmt}} ± {v['std']:{fmt}}"

    lines = [
        f"### {setting}",
        "",
        "| method | qini_auc | uplift_auc | uplift@30% | fit+predict s (min of runs) |",
        "|---|---|---|---|---|",
    ]
    ordered = sorted(summary["methods"].items(), key=lambda kv: -kv[1]["qini_auc"]["mean"])
    for name, s in ordered:
        label = f"**{name}**" if name == SELECTED else name
        lines.append(
            f"| {label} | {pm(s['qini_auc'])} | {pm(s['uplift_auc'])} | "
            f"{pm(s['uplift_at_30'])} | {pm(s['seconds'], '.2f')} |"
        )
    lines.append("")
    lines.append(f"chosen per seed: {', '.join(summary['chosen_per_seed'])}")
    paired = summary.get("paired_vs_best_peer")
    if paired:
        lines.append(
            f"paired qini_auc difference, selected − best peer ({paired['best_peer']}): "
            f"{paired['mean']:+.4f} ± {paired['std']:.4f} "
            f"(per seed {', '.join(f'{d:+.4f}' for d in paired['per_seed'])}; "
            f"not worse on {paired['seeds_not_worse']}/{len(paired['per_seed'])} seeds)"
        )
    timing = summary.get("time_vs_fastest_comparable_peer")
    if timing:
        lines.append(
            f"fit+predict time / fastest comparable peer ({timing['peer']}): {timing['ratio']:.2f}×"
        )
    return "\n".join(lines)


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("lightgbm", "scikit-learn", "numpy", "pandas", "scikit-uplift", "causalml"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="hillstrom.csv of the protocol")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                    help="split seeds (the protocol's are 0-4)")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    ap.add_argument("--n-jobs", type=int, default=1, help="LightGBM threads for every method (≤ 2)")
    ap.add_argument("--cv", type=int, default=5, help="folds of the model selection")
    ap.add_argument(
        "--test-size",
        type=float,
        default=0.3,
        help="share of each split held out for testing (the protocol's is 0.3)",
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="fit+predict runs per method and split; the fastest is reported",
    )
    ap.add_argument("--out", type=Path, default=HERE / "_data" / "hillstrom_results.json",
                    help="JSON file for every figure")
    args = ap.parse_args()
    if not args.data.exists():
        raise SystemExit(f"no data at {args.data}; give the path of hillstrom.csv with --data")
    # scikit-uplift 0.5.1 calls sklearn's deprecated stable_cumsum on every metric call.
    warnings.filterwarnings("ignore", category=FutureWarning)

    started = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()
    results = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started_utc": started.isoformat(timespec="seconds"),
        "protocol": "shared/data/README.md",
        "test_size": args.test_size,
        "n_jobs": args.n_jobs,
        "blas_threads": 1,
        "timing": f"fastest of {args.repeats} fit+predict runs, wall seconds",
        "versions": _versions(),
        "settings": {},
    }
    with threadpool_limits(1):
        for setting in args.settings:
            X, y, t = load_hillstrom(args.data, setting)
            per_seed = []
            for seed in args.seeds:
                t0 = time.perf_counter()
                per_seed.append({
                    "seed": seed,
                    **run_split(X, y, t, seed, args.n_jobs, args.cv, args.repeats, args.test_size),
                })
                sel = per_seed[-1]["methods"][SELECTED]
                print(
                    f"[{setting} seed {seed}] chose {sel['chosen']} qini={sel['qini_auc']:.4f} "
                    f"({time.perf_counter() - t0:.0f}s)",
                    file=sys.stderr,
                    flush=True,
                )
            summary = summarise(per_seed)
            results["settings"][setting] = {
                "rows": len(y),
                "summary": summary,
                "per_seed": per_seed,
                "skipped": per_seed[0]["skipped"],
            }
            print(markdown(setting, summary) + "\n", flush=True)
    results["finished_utc"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    # Other jobs share the machine; the 1-minute load average says how much.
    results["load_average_1min"] = {"start": load_before[0], "end": os.getloadavg()[0]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
