"""Benchmark: churn-risk training at scale on a simulated app with known truth (issue #4).

Phases, each in its own child process so its wall time and peak resident memory
are measured separately (``os.wait4`` rusage of the child):

``simulate``
    ``simulate_job`` of ``--users`` users (seed ``--seed``, 120 days, truth on),
    as ``churnml simulate --out <data> --users <users>`` does. Skipped if
    ``<data>/dataset.yaml`` and ``<data>/truth/churn.parquet`` exist.
``build``
    ``build_features_job``: the stacked training set over the config's
    snapshots, to ``<data>/training_set.parquet``. Skipped if present.
``train``
    ``train_churn_job`` with ``TuningConfig(trials=30, timeout_seconds=None)``
    and the simulator's ``truth/churn.parquet`` (oracle baselines); the model
    is registered as ``challenger`` in the MLflow store ``--mlruns``.
``promote``
    ``promote_job``: the challenger becomes ``champion`` (or is gated against it).
``build_big``
    The stacked training set of a larger simulation (default: the 1M-user
    simulation in ``benchmarks/_data/sim`` written by ``features_scale.py``;
    simulated here, without truth, if missing).
``fit_big``
    ``fit_churn_model`` alone with the study's best parameters, on
    ``--fit-rows`` training rows sampled from the big set's training part
    (time split as the job does), early stopping and calibration on its full
    validation snapshot.

Usage::

    python benchmarks/churn_scale.py                       # everything, reusing data already built
    python benchmarks/churn_scale.py --phases train promote

Figures go to stdout and to ``benchmarks/_data/churn_scale.json``.
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

HERE = Path(__file__).resolve().parent
DATA = HERE / "_data"
MLRUNS = DATA / "mlruns"

# --------------------------------------------------------------------------- shared helpers
# (the other model benchmarks import these: uplift_sim.py, drivers_scale.py, nightly_scale.py)


def machine() -> dict:
    """CPU count, RAM, load average and versions, for the results file."""
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return {"node": platform.node(), "nproc": os.cpu_count(), "ram_gb": round(mem_gb, 1), **git_state(),
            "loadavg": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version(),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def git_state() -> dict:
    """The commit the code runs at, and whether churnml/ has uncommitted changes (others edit the tree)."""
    def git(*args):
        r = subprocess.run(["git", *args], cwd=HERE.parent, capture_output=True, text=True, check=False)
        return r.stdout.strip()

    return {"git_revision": git("rev-parse", "--short", "HEAD"),
            "churnml_dirty": bool(git("status", "--porcelain", "churnml"))}


def run_child(script: str, phase: str, argv: list[str], env: dict | None = None) -> dict:
    """Run ``script --child phase argv`` in a fresh process; its JSON result plus wall s, peak RSS and load."""
    load_before, code = os.getloadavg()[0], git_state()  # the code the child imports
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, script, "--child", phase, *argv], stdout=subprocess.PIPE,
                            env={**os.environ, **(env or {})})
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"phase {phase} failed with status {status} after {wall:.0f}s")
    result = json.loads(out.decode().strip().splitlines()[-1])
    # CPU seconds (user + system) of the child: less sensitive than wall time to other work on the machine.
    result.update(wall_s=round(wall, 2), peak_rss_gb=round(usage.ru_maxrss / 1024**2, 3),
                  cpu_s=round(usage.ru_utime + usage.ru_stime, 1),
                  load1_before=round(load_before, 2), load1_after=round(os.getloadavg()[0], 2),
                  measured_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **code)
    return result


def settings(mlruns: Path):
    from churnml.config import Settings

    return Settings(mlruns_dir=str(mlruns))


def log(line: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def has_sim(data: Path, truth: bool = True) -> bool:
    ok = (data / "dataset.yaml").is_file() and (data / "events.parquet").is_file()
    return ok and (not truth or (data / "truth" / "churn.parquet").is_file())


def results_name(stem: str, data: Path, default_data: Path) -> str:
    """``<stem>.json`` for the default data, ``<stem>_<data folder>.json`` otherwise (no clobbering)."""
    return f"{stem}.json" if data.resolve() == default_data.resolve() else f"{stem}_{data.name}.json"


def write_results(name: str, results: dict) -> Path:
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / name
    path.write_text(json.dumps(results, indent=2, default=str))
    return path


def churn_train_config(data: Path, trials: int):
    from churnml.config import TrainConfig, TuningConfig

    return TrainConfig(dataset=data / "dataset.yaml", training_set=data / "training_set.parquet",
                       truth=data / "truth" / "churn.parquet",
                       tuning=TuningConfig(trials=trials, timeout_seconds=None))


# --------------------------------------------------------------------------- phases (child side)

def _simulate(a) -> dict:
    from churnml.jobs import simulate_job
    from churnml.simulator import SimulationConfig

    # --single-channel: the one-channel app of the earlier benchmarks (push campaigns of lapsed users).
    single = {"campaign_channels": ["push"], "campaign_min_days_inactive": 7} if a.single_channel else {}
    res, path = simulate_job(SimulationConfig(n_users=a.users, seed=a.seed, **single), a.data, truth=True)
    return {"users": res.n_users, "events": res.n_events, "exposures": res.n_exposures, "config": str(path)}


def _build_at(data: Path) -> dict:
    from churnml.jobs import build_features_job

    res = build_features_job(data / "dataset.yaml", data / "training_set.parquet")
    return {"rows": res.n_rows, "features": res.n_features, "rows_per_snapshot": res.rows_per_snapshot,
            "churn_rate": res.churn_rate}


def _build(a) -> dict:
    return _build_at(a.data)


def study_states(study_name: str, mlruns: Path) -> dict:
    """Trials of an Optuna study by state (COMPLETE / PRUNED / ...) and the best trial's number."""
    import collections

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = optuna.load_study(study_name=study_name, storage=f"sqlite:///{mlruns / 'optuna.db'}")
    return {"states": dict(collections.Counter(t.state.name for t in st.trials)), "best_trial": st.best_trial.number,
            "best_learning_rate": st.best_trial.params.get("learning_rate"),
            "pruned_learning_rates": sorted(round(t.params["learning_rate"], 3) for t in st.trials
                                            if t.state.name == "PRUNED")}


def _train(a) -> dict:
    import mlflow

    from churnml.train import train_churn_job

    cfg = churn_train_config(a.data, a.trials)
    s = settings(a.mlruns)
    t0 = time.perf_counter()
    res = train_churn_job(cfg, settings=s, log=log,
                          on_trial=lambda n, v: log(f"trial {n}: {v if v is not None else 'pruned'}"))
    job_s = time.perf_counter() - t0
    run = mlflow.get_run(res.run_id)
    m = run.data.metrics
    metrics = res.metrics
    best = {k: (v.item() if hasattr(v, "item") else v) for k, v in res.best_params.items()}
    (a.data / "churn_best_params.json").write_text(json.dumps(best, indent=2))
    return {
        "job_s": round(job_s, 1), "seconds_build": m.get("seconds_build"), "seconds_tune": m.get("seconds_tune"),
        "seconds_backtest": m.get("seconds_backtest"), "seconds_fit": m.get("seconds_refit"), "trials": res.trials,
        "study": res.study_name, "rows": res.rows, "best_iteration": res.info.get("trees"),
        "calibration": res.info.get("calibration"), "backtest_cutoffs": [c.isoformat() for c in res.cutoffs],
        "oracle_ratio": res.oracle_ratio,
        "metrics": json.loads(metrics.to_json(orient="index")), "best_params": best,
        "version": res.version, "run_id": res.run_id, "n_features": len(res.model.features),
        "study_trials": study_states(res.study_name, a.mlruns) if res.study_name else None,
    }


def _promote(a) -> dict:
    from churnml.train import promote_job

    res = promote_job(churn_train_config(a.data, a.trials), settings=settings(a.mlruns))
    return {"promoted": res.promoted, "reason": res.reason, "challenger": res.challenger, "champion": res.champion}


def _simulate_big(a) -> dict:
    from churnml.jobs import simulate_job
    from churnml.simulator import SimulationConfig

    res, path = simulate_job(SimulationConfig(n_users=a.big_users, seed=1), a.big_data, truth=False)
    return {"users": res.n_users, "events": res.n_events, "config": str(path)}


def _build_big(a) -> dict:
    return _build_at(a.big_data)


def _fit_big(a) -> dict:
    import pandas as pd

    from churnml.config import utc
    from churnml.features import LABEL
    from churnml.models.churn import fit_churn_model
    from churnml.models.split import time_split

    params = json.loads((a.data / "churn_best_params.json").read_text())
    path = a.big_data / "training_set.parquet"
    t0 = time.perf_counter()
    df = pd.read_parquet(path)
    doc = json.loads(path.with_suffix("").with_suffix(".schema.json").read_text())
    df["as_of"] = pd.to_datetime(df["as_of"], utc=True)
    instants = [utc(x.to_pydatetime()) for x in sorted(df["as_of"].unique())]
    split = time_split(instants, doc.get("horizon_days") or 14, valid_snapshots=1, test_snapshots=1)
    role = df["as_of"].map({pd.Timestamp(s): split.role(s) for s in instants})
    train, valid = df[role == "train"], df[role == "valid"]
    train_rows_all = len(train)
    if a.fit_rows and len(train) > a.fit_rows:
        train = train.sample(n=a.fit_rows, random_state=42).sort_index()
    features = [c for c in doc["feature_columns"] if c not in ("user_id", "as_of", LABEL)]
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model, info = fit_churn_model(train, valid, features=features, params=params, calibration="auto",
                                  num_boost_round=1000, early_stopping_rounds=50, seed=42)
    fit_s = time.perf_counter() - t0
    return {"fit_s": round(fit_s, 1), "load_split_s": round(load_s, 1), "rows_total": len(df),
            "rows_train_available": train_rows_all, "rows_train": len(train), "rows_valid": len(valid),
            "train_snapshots": [d.date().isoformat() for d in split.train],
            "valid_snapshot": split.valid[-1].date().isoformat(), "features": len(model.features),
            "best_iteration": info["best_iteration"], "calibration": info["calibration"]}


PHASES = {"simulate": _simulate, "build": _build, "train": _train, "promote": _promote,
          "simulate_big": _simulate_big, "build_big": _build_big, "fit_big": _fit_big}


# --------------------------------------------------------------------------- driver

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0, help="simulation seed (the CLI's default is 0)")
    ap.add_argument("--data", type=Path, default=DATA / "sim200k")
    ap.add_argument("--mlruns", type=Path, default=MLRUNS)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--single-channel", action="store_true",
                    help="simulate the single-channel app (push only), as before issue #17")
    ap.add_argument("--big-data", type=Path, default=DATA / "sim",
                    help="larger simulation whose training set the final fit alone runs on")
    ap.add_argument("--big-users", type=int, default=1_000_000, help="users if --big-data must be simulated")
    ap.add_argument("--fit-rows", type=int, default=1_000_000, help="training rows for the fit alone (0 = all)")
    ap.add_argument("--phases", nargs="+", default=["simulate", "build", "train", "promote", "build_big", "fit_big"],
                    choices=[p for p in PHASES if p != "simulate_big"])
    ap.add_argument("--child", choices=PHASES, help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.data, a.big_data, a.mlruns = a.data.resolve(), a.big_data.resolve(), a.mlruns.resolve()
    if a.child:
        print(json.dumps(PHASES[a.child](a), default=str))
        return

    if ("fit_big" in a.phases and "train" not in a.phases
            and not (a.data / "churn_best_params.json").is_file()):
        ap.error(f"fit_big needs the study's best parameters ({a.data / 'churn_best_params.json'}): add the train phase")
    argv = ["--users", str(a.users), "--seed", str(a.seed), "--data", str(a.data), "--mlruns", str(a.mlruns),
            "--trials", str(a.trials), "--big-data", str(a.big_data), "--big-users", str(a.big_users),
            "--fit-rows", str(a.fit_rows), *(["--single-channel"] if a.single_channel else [])]
    results = {"machine_start": machine(), "args": {k: str(v) for k, v in vars(a).items() if k != "child"}}
    out_name = results_name("churn_scale", a.data, DATA / "sim200k")
    prev = DATA / out_name
    if prev.is_file():  # keep the figures of phases not rerun this time (each carries its own date)
        old = json.loads(prev.read_text())
        results |= {k: v for k, v in old.items() if k in PHASES}
        results |= {k: v for k, v in old.get("earlier", {}).items() if k not in results}
    for phase in a.phases:
        if phase == "simulate" and has_sim(a.data):
            log(f"simulate: reusing {a.data}")
            continue
        if phase == "build" and (a.data / "training_set.parquet").is_file():
            log(f"build: reusing {a.data / 'training_set.parquet'}")
            continue
        if phase == "build_big":
            if not has_sim(a.big_data, truth=False):
                log(f"simulate_big: {a.big_users:,} users -> {a.big_data}")
                results["simulate_big"] = run_child(__file__, "simulate_big", argv)
            if (a.big_data / "training_set.parquet").is_file():
                log(f"build_big: reusing {a.big_data / 'training_set.parquet'}")
                continue
        log(f"{phase} ...")
        results[phase] = run_child(__file__, phase, argv)
        r = results[phase]
        log(f"{phase}: {r['wall_s']:.1f}s, peak RSS {r['peak_rss_gb']:.2f} GB, load {r['load1_before']}->{r['load1_after']}")
        write_results(out_name, results)
    results["machine_end"] = machine()
    path = write_results(out_name, results)

    print(f"\nmachine: {results['machine_start']['nproc']} cores, {results['machine_start']['ram_gb']} GB, "
          f"python {platform.python_version()}; load {results['machine_start']['loadavg']} -> "
          f"{results['machine_end']['loadavg']}")
    print("| phase | wall s | CPU s | peak RSS GB | load 1m before/after |\n|---|---|---|---|---|")
    for k, r in results.items():
        if k in PHASES:
            print(f"| {k} | {r['wall_s']:.1f} | {r.get('cpu_s', float('nan')):.1f} | {r['peak_rss_gb']:.2f} | "
                  f"{r['load1_before']}/{r['load1_after']} |")
    t = results.get("train")
    if t:
        m = t["metrics"]
        print(f"\nrows: {t['rows']}; {t['n_features']} features; test snapshot {t['test_snapshot']}")
        print(f"study + final fit (seconds_tune + seconds_fit): {t['seconds_tune'] + t['seconds_fit']:.1f}s "
              f"(tune {t['seconds_tune']:.1f}, fit {t['seconds_fit']:.1f}, load {t['seconds_build']:.1f}); "
              f"job {t['job_s']:.1f}s; {t['trials']} trials; best iteration {t['best_iteration']}, "
              f"{t['calibration']} calibration")
        print("| scorer | roc_auc | pr_auc | brier | log_loss | ece |\n|---|---|---|---|---|---|")
        for name, row in m.items():
            print(f"| {name} | " + " | ".join(f"{row.get(c):.4f}" if row.get(c) is not None else "-"
                                              for c in ("roc_auc", "pr_auc", "brier", "log_loss", "ece")) + " |")
        print(f"oracle ratio: {t['oracle_ratio']:.4f}")
        if t.get("study_trials"):
            print(f"study trials by state: {t['study_trials']}")
    if "fit_big" in results:
        f = results["fit_big"]
        print(f"\nfit alone on {f['rows_train']:,} train rows (+{f['rows_valid']:,} valid): {f['fit_s']:.1f}s, "
              f"{f['best_iteration']} trees, peak RSS {f['peak_rss_gb']:.2f} GB")
    if "promote" in results:
        print(f"promote: {results['promote']}")
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
