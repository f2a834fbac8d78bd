"""Benchmark: simulate a large music app, then time feature building against a DuckDB scan floor.

Each phase runs in its own child process so its wall time and peak resident
memory are measured separately (``os.wait4`` rusage). The floor is one DuckDB
grouped scan of the same file (``user_id, event -> count``): the least any
feature build must do. Phases run side by side in one invocation so the ratio
is measured under the same machine load.

Usage::

    python benchmarks/features_scale.py --users 1000000            # everything
    python benchmarks/features_scale.py --users 1000000 --reuse    # keep the simulated data
    python benchmarks/features_scale.py --reuse --bound            # the passes any build needs

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


def _phase_simulate(data: Path, users: int) -> dict:
    from churnml.jobs import simulate_job
    from churnml.simulator import SimulationConfig

    res, _ = simulate_job(SimulationConfig(n_users=users, seed=1), data, truth=False)
    return {"events": res.n_events, "users": res.n_users}


def _phase_floor(data: Path) -> dict:
    import duckdb

    con = duckdb.connect()
    rows = con.execute(
        f"SELECT count(*) FROM (SELECT user_id, event, count(*) FROM read_parquet('{data}/events.parquet') GROUP BY ALL)"
    ).fetchone()[0]
    return {"groups": rows}


def _phase_features(data: Path) -> dict:
    from churnml.config import load_dataset_config
    from churnml.data import open_dataset
    from churnml.features import build_snapshot

    cfg = load_dataset_config(data / "dataset.yaml")
    t0 = time.perf_counter()
    ds = open_dataset(cfg)  # reading + contract validation, as `churnml features build` does
    validate_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    table, fs = build_snapshot(ds, cfg.snapshot_instants()[-1], labels=True)
    return {"rows": table.num_rows, "features": len(fs.columns), "validate_s": validate_s,
            "build_only_s": time.perf_counter() - t0}


def _phase_bound(data: Path) -> dict:
    """Lower bounds for this feature set: the few hash passes any build of it must make.

    Each query is materialised (``CREATE TEMP TABLE ... AS``), as the build's are: wrapping it in
    ``count(*)`` would let DuckDB drop the aggregates and time only the grouping. The floor runs
    first and last in the same process, so every part is a ratio to it under the same load.
    """
    import duckdb

    from churnml.config import load_dataset_config

    cfg = load_dataset_config(data / "dataset.yaml")
    as_of = cfg.snapshot_instants()[-1]
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.execute("SET memory_limit='3GB'")
    con.execute("SET preserve_insertion_order=false")
    con.execute(f"CREATE VIEW ev AS SELECT * FROM read_parquet('{data}/events.parquet')")
    cut = f"TIMESTAMPTZ '{as_of.isoformat()}'"
    ep = f"epoch_us({cut})"
    day = "86400000000"
    windows = ", ".join(f"count(*) FILTER (WHERE d < {w}) AS n_{w}" for w in cfg.feature_windows_days)
    before = f"SELECT *, epoch_us(ts) AS us, ({ep} - epoch_us(ts)) // {day} AS d FROM ev WHERE ts < {cut}"
    queries = {
        "floor": "SELECT user_id, event, count(*) FROM ev GROUP BY ALL",
        # Counts per window, first and last event: the per-event features, nothing else.
        "user x event, windows, first/last": f"SELECT user_id, event, count(*) AS n, {windows}, "
        f"min(us) AS first_us, max(us) AS last_us FROM ({before}) GROUP BY ALL",
        # Active days and gaps need the set of active days of each user.
        "user x active day (distinct)": f"SELECT DISTINCT user_id, d FROM ({before})",
        "distinct items, last 30 days": f"SELECT user_id, count(DISTINCT item_id) FROM ev WHERE ts < {cut} "
        f"AND ts > {cut} - INTERVAL 30 DAY GROUP BY ALL",
        # The one-pass alternative: condense to user x event x day, derive everything from that.
        "fused: user x event x day": f"SELECT user_id, event, d, count(*) AS n, min(us) AS first_us, "
        f"max(us) AS last_us FROM ({before}) GROUP BY ALL",
        "floor again": "SELECT user_id, event, count(*) FROM ev GROUP BY ALL",
    }
    out = {}
    for i, (name, sql) in enumerate(queries.items()):
        t0 = time.perf_counter()
        con.execute(f"CREATE TEMP TABLE part{i} AS {sql}")
        out[name] = time.perf_counter() - t0
        con.execute(f"DROP TABLE part{i}")
    return {"parts": out}


PHASES = {"simulate": _phase_simulate, "floor": _phase_floor, "features": _phase_features,
          "bound": _phase_bound}


def _run_child(phase: str, data: Path, users: int) -> dict:
    return run_child(__file__, phase, ["--data", str(data), "--users", str(users)])


def _note(value) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--data", type=Path, default=HERE / "_data" / "sim")
    ap.add_argument("--reuse", action="store_true", help="reuse simulated data already in --data")
    ap.add_argument("--bound", action="store_true",
                    help="only time the passes any build of this feature set needs, as ratios to the floor")
    ap.add_argument("--child", choices=PHASES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kwargs = {"users": args.users} if args.child == "simulate" else {}
        print(json.dumps(PHASES[args.child](args.data, **kwargs)))
        return

    if args.bound:
        r = _run_child("bound", args.data, args.users)
        parts = r.pop("parts")
        floor = min(parts["floor"], parts["floor again"])
        print(", ".join(f"{k}={_note(v)}" for k, v in r.items()))
        print("| query (materialised) | wall s | / floor |\n|---|---|---|")
        for name, s in parts.items():
            print(f"| {name} | {s:.2f} | {s / floor:.2f} |")
        return

    results = {}
    phases = ["floor", "features", "floor"]
    if not (args.reuse and (args.data / "events.parquet").exists()):
        phases.insert(0, "simulate")
    for phase in phases:
        key = phase if phase not in results else f"{phase}_again"
        results[key] = _run_child(phase, args.data, args.users)
        print(f"{key}: {results[key]}", file=sys.stderr)
    floor = min(results["floor"]["wall_s"], results["floor_again"]["wall_s"])
    print(f"\nmachine: {platform.node()} {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"users: {args.users:,}\n")
    print("| phase | wall s | peak RSS GB | notes |\n|---|---|---|---|")
    for key, r in results.items():
        notes = ", ".join(f"{k}={_note(v)}" for k, v in r.items() if k not in ("wall_s", "peak_rss_gb"))
        print(f"| {key} | {r['wall_s']:.1f} | {r['peak_rss_gb']:.2f} | {notes} |")
    print(f"\nfeature build / floor = {results['features']['wall_s'] / floor:.2f} "
          f"(build only: {results['features']['build_only_s'] / floor:.2f})")


if __name__ == "__main__":
    main()
