"""Benchmark: the nightly scoring job end to end on 1M simulated users (issue #7).

``score_job`` (validation, freshness check, champion models from the registry,
features as of the last instant of the data, churn and uplift scores for every
user, the recall list, exact reasons for the listed users, atomic writing of
list, scores, features and manifest) runs in a fresh child process, once per
``CHURNML_DUCKDB_MEMORY_LIMIT`` variant ("default" = the variable unset). Wall
time and peak RSS come from ``os.wait4`` on the child, so they include the
interpreter start and imports.

The champions are the models trained on the 200k-user simulation by
``churn_scale.py`` and ``uplift_sim.py`` (same simulator, event types and
windows, so the same feature schema); those scripts run first if the
champions are missing. The 1M-user log is the one ``features_scale.py``
simulated into ``benchmarks/_data/sim`` (simulated here if missing).

With ``--profile auto`` (the default) a missed target triggers one more child
that runs the job's steps one by one with timers (the same calls as
``churnml.batch.score_job``, written to a scratch folder).

Usage::

    python benchmarks/nightly_scale.py
    python benchmarks/nightly_scale.py --memory-limits default 2GB --profile always

Figures go to stdout and to ``benchmarks/_data/nightly_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from churn_scale import (
    DATA,
    MLRUNS,
    has_sim,
    log,
    machine,
    results_name,
    run_child,
    settings,
    write_results,
)
from drivers_scale import ensure_champions

TARGET_S, TARGET_GB = 120.0, 6.0
_T0 = time.perf_counter()  # the child's own start (imports of churnml come after)


def _cfg(a):
    from churnml.config import ScoreConfig

    return ScoreConfig(dataset=a.data / "dataset.yaml", output=a.out)


def _as_of(a):
    from churnml.config import load_dataset_config

    return load_dataset_config(a.data / "dataset.yaml").observed_until


def _score(a) -> dict:
    from churnml.batch import score_job

    t0 = time.perf_counter()
    res = score_job(_cfg(a), _as_of(a), force=True, settings=settings(a.mlruns), log=log)
    job_s = time.perf_counter() - t0
    sizes = {p.name: round(p.stat().st_size / 1e6, 1) for p in res.folder.iterdir()}
    return {"job_s": round(job_s, 1), "startup_s": round(t0 - _T0, 1), "folder": str(res.folder),
            "as_of": res.as_of.isoformat(), "counts": res.counts, "versions": res.versions, "files_mb": sizes,
            "duckdb_memory_limit": os.environ.get("CHURNML_DUCKDB_MEMORY_LIMIT", "default (3GB)")}


def _profile(a) -> dict:
    """The steps of ``score_job``, one by one, with a timer and the peak RSS so far around each."""
    import resource

    import pandas as pd
    import pyarrow as pa

    from churnml.batch import (
        FEATURES_FILE,
        LIST_CSV,
        LIST_FILE,
        MANIFEST_FILE,
        SCORES_FILE,
        _check_fresh,
        _sha256,
    )
    from churnml.config import load_dataset_config
    from churnml.data import open_dataset
    from churnml.features import build_features
    from churnml.io import write_json, write_parquet
    from churnml.scoring import Scorer, recall_list

    steps: dict[str, dict] = {}
    clock = [time.perf_counter()]

    def mark(name: str) -> None:
        now = time.perf_counter()
        steps[name] = {"s": round(now - clock[0], 2),
                       "peak_rss_gb_so_far": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2)}
        log(f"{name}: {steps[name]['s']:.1f}s (peak RSS so far {steps[name]['peak_rss_gb_so_far']:.2f} GB)")
        clock[0] = now

    steps["python start and imports"] = {"s": round(clock[0] - _T0, 2)}
    cfg, as_of = _cfg(a), _as_of(a)
    ds = open_dataset(load_dataset_config(cfg.dataset))
    mark("open_dataset (contract validation)")
    _check_fresh(ds, as_of, cfg.max_staleness_hours)
    mark("freshness check")
    scorer = Scorer.from_registry(churn_model=cfg.churn_model, uplift_model=cfg.uplift_model, alias=cfg.alias,
                                  settings=settings(a.mlruns))
    mark("load models from the registry")
    fs = build_features(ds, as_of, event_types=scorer.event_types, max_inactive_days=cfg.eligibility.lapsed_max_days)
    try:
        table = fs.table.to_pyarrow().sort_by("user_id")
    finally:
        fs.release()
    mark("features (build_features, to Arrow, sort)")
    features = table.to_pandas()
    mark("features to pandas")
    where = "features"
    scorer.check_schema(features.columns)
    scored = pd.DataFrame({"user_id": features["user_id"].to_numpy()}, index=features.index)
    X = scorer.churn.matrix(features, where=where)
    mark("churn: input matrix")
    scored["p_churn"] = scorer.churn.calibrator.apply(scorer.churn.booster.predict(X, raw_score=True))
    mark("churn: predict + calibrate")
    up = scorer.uplift.predict_frame(features)
    scored["p_return_if_contacted"] = up["p_treated"].to_numpy()
    scored["p_return_if_not"] = up["p_control"].to_numpy()
    scored["uplift"] = up["uplift"].to_numpy()
    scored["segment"] = up["segment"].to_numpy()
    mark("uplift: predict_frame")
    campaign_id = cfg.campaign_id.format(as_of=as_of.date().isoformat())
    lst, counts = recall_list(scored, features, cfg, campaign_id=campaign_id, opt_out=set())
    mark("recall list")
    rows = features.set_index("user_id").loc[lst["user_id"]].reset_index()
    lst = pd.concat([lst, scorer.reasons(rows, top=cfg.reasons, where=where).set_axis(lst.index)], axis=1)
    lst.insert(2, "as_of", pd.Timestamp(as_of))
    mark(f"reasons ({len(lst):,} listed users)")
    tmp = a.out.parent / (a.out.name + "_profile")
    tmp.mkdir(parents=True, exist_ok=True)
    write_parquet(pa.Table.from_pandas(lst, preserve_index=False), tmp / LIST_FILE)
    lst.to_csv(tmp / LIST_CSV, index=False, float_format="%.6f")
    mark("write list (Parquet + CSV)")
    write_parquet(pa.Table.from_pandas(scored.reset_index(drop=True), preserve_index=False), tmp / SCORES_FILE)
    mark("write scores.parquet")
    write_parquet(table, tmp / FEATURES_FILE)
    mark("write features.parquet")
    files = {n: _sha256(tmp / n) for n in (LIST_FILE, LIST_CSV, SCORES_FILE, FEATURES_FILE)}
    write_json({"counts": counts, "files": files}, tmp / MANIFEST_FILE)
    mark("SHA-256 of the files + manifest")
    return {"steps": steps, "total_s": round(time.perf_counter() - _T0, 1), "users_scored": len(features),
            "listed": len(lst)}


PHASES = {"score": _score, "profile": _profile}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA / "sim", help="folder of the 1M-user simulation")
    ap.add_argument("--users", type=int, default=1_000_000, help="users if --data must be simulated")
    ap.add_argument("--train-data", type=Path, default=DATA / "sim200k", help="simulation the champions train on")
    ap.add_argument("--train-users", type=int, default=200_000, help="users if --train-data must be simulated")
    ap.add_argument("--mlruns", type=Path, default=MLRUNS)
    ap.add_argument("--out", type=Path, default=DATA / "lists")
    ap.add_argument("--memory-limits", nargs="+", default=["default", "2GB"],
                    help="CHURNML_DUCKDB_MEMORY_LIMIT values, one run each ('default' = unset)")
    ap.add_argument("--profile", choices=["auto", "always", "never"], default="auto")
    ap.add_argument("--child", choices=PHASES, help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.data, a.mlruns, a.out, a.train_data = a.data.resolve(), a.mlruns.resolve(), a.out.resolve(), a.train_data.resolve()
    if a.child:
        print(json.dumps(PHASES[a.child](a), default=str))
        return

    if not has_sim(a.data, truth=False):
        from churnml.jobs import simulate_job
        from churnml.simulator import SimulationConfig

        log(f"simulating {a.users:,} users into {a.data}")
        simulate_job(SimulationConfig(n_users=a.users, seed=1), a.data, truth=False)
    ensure_champions(a.train_data, a.mlruns, a.train_users)
    argv = ["--data", str(a.data), "--mlruns", str(a.mlruns), "--out", str(a.out)]
    os.environ.pop("CHURNML_DUCKDB_MEMORY_LIMIT", None)  # "default" means unset
    results = {"machine_start": machine(), "args": {k: str(v) for k, v in vars(a).items() if k != "child"},
               "runs": {}}
    for limit in a.memory_limits:
        log(f"score_job, CHURNML_DUCKDB_MEMORY_LIMIT={limit} ...")
        r = run_child(__file__, "score", argv, env=None if limit == "default" else {"CHURNML_DUCKDB_MEMORY_LIMIT": limit})
        results["runs"][limit] = r
        log(f"{limit}: {r['wall_s']:.1f}s wall ({r['job_s']:.1f}s job, {r['startup_s']:.1f}s start), "
            f"{r['cpu_s']:.0f} CPU s, peak RSS {r['peak_rss_gb']:.2f} GB, load {r['load1_before']}->{r['load1_after']}")
        write_results(results_name("nightly_scale", a.data, DATA / "sim"), results)
    missed = any(r["wall_s"] > TARGET_S or r["peak_rss_gb"] > TARGET_GB for r in results["runs"].values())
    if a.profile == "always" or (a.profile == "auto" and missed):
        log("profiling the job's steps ...")
        results["profile"] = run_child(__file__, "profile", argv)
    results["machine_end"] = machine()
    path = write_results(results_name("nightly_scale", a.data, DATA / "sim"), results)

    print(f"\nmachine: {results['machine_start']['nproc']} cores, {results['machine_start']['ram_gb']} GB; "
          f"load {results['machine_start']['loadavg']} -> {results['machine_end']['loadavg']}")
    print("| DuckDB memory limit | wall s (child) | job s | CPU s | peak RSS GB | load 1m before/after | "
          f"≤ {TARGET_S:.0f} s | ≤ {TARGET_GB:.0f} GB |\n|---|---|---|---|---|---|---|---|")
    for limit, r in results["runs"].items():
        print(f"| {limit} | {r['wall_s']:.1f} | {r['job_s']:.1f} | {r['cpu_s']:.0f} | {r['peak_rss_gb']:.2f} | "
              f"{r['load1_before']}/{r['load1_after']} | {'yes' if r['wall_s'] <= TARGET_S else 'no'} | "
              f"{'yes' if r['peak_rss_gb'] <= TARGET_GB else 'no'} |")
    r = next(iter(results["runs"].values()))
    print(f"\ncounts: {json.dumps(r['counts'])}\nversions: {r['versions']}; files MB: {r['files_mb']}")
    if "profile" in results:
        p = results["profile"]
        print(f"\nprofile ({p['users_scored']:,} users scored, {p['listed']:,} listed; {p['wall_s']:.1f}s wall, "
              f"peak RSS {p['peak_rss_gb']:.2f} GB):\n| step | s | peak RSS so far GB |\n|---|---|---|")
        for name, s in p["steps"].items():
            print(f"| {name} | {s['s']:.1f} | {s.get('peak_rss_gb_so_far', '')} |")
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
