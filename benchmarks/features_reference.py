"""Benchmark: churnml's feature build against a hand-written DuckDB query of the same features.

On a synthetic log churnml did not generate (``synthetic_log.py``: 8 event
types, item ids, naive or tz-aware timestamps), one snapshot at day 94 of 120:

* **floor**: one grouped count (``user_id, event -> count``), the least any build does;
* **reference**: one hand-written DuckDB SQL query of a fixed subset of churnml's features
  (per-type counts over 7/14/30 days, active days per window, days since the last event and per type,
  tenure, distinct items in 30 days, first-week counts per type) for the same population;
* **churnml**: ``open_dataset`` (reading + every contract check) then ``build_snapshot`` (every
  feature of the config, no labels), timed apart.

Each runs in a child process (wall time, peak RSS from ``wait4``), interleaved over rounds, so the
ratios are measured side by side on a shared machine. ``--check`` compares the reference's columns
with churnml's, value by value. ``--stacked`` times 13 weekly labelled snapshots
(``build_training_set``) against one labelled snapshot's build. ``--spark`` times the Spark engine.

Usage::

    python benchmarks/features_reference.py --events 10000000 --users 100000 --rounds 3
    python benchmarks/features_reference.py --events 10000000 --users 100000 --check
    python benchmarks/features_reference.py --events 10000000 --users 100000 --stacked --rounds 2
    python benchmarks/features_reference.py --stacked --baseline /tmp/churnml-main   # before/after in one run
    python benchmarks/features_reference.py --events 100000000 --users 1000000 --rounds 1 --logs naive tz
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from churn_scale import run_child  # noqa: E402
from synthetic_log import DAYS, START, generate  # noqa: E402

HERE = Path(__file__).resolve().parent
AS_OF = START + dt.timedelta(days=94)
WINDOWS = (7, 14, 30)
DAY_US = 86_400_000_000


def _folder(events: int, users: int) -> Path:
    return HERE / "_data" / f"syn_{events}_{users}"


def _config(data: Path, kind: str, engine: str = "duckdb") -> Path:
    """The dataset config churnml reads the synthetic log with (written beside the data)."""
    import yaml

    end = START + dt.timedelta(days=DAYS)
    doc = {
        "name": f"synthetic-{kind}",
        "sources": {"events": {"path": f"events_{kind}.parquet"}, "users": {"path": f"users_{kind}.parquet"}},
        "eligibility_days": 30,
        "horizon_days": 14,
        "feature_windows_days": list(WINDOWS),
        "onboarding_days": 7,
        "distinct_counts": [{"name": "distinct_items_30d", "column": "item_id", "window_days": 30}],
        "snapshots": {"start": (AS_OF - dt.timedelta(weeks=12)).date().isoformat(),
                      "end": AS_OF.date().isoformat(), "every_days": 7},
        "observed_until": end.isoformat(),
        "engine": engine,
    }
    path = data / f"dataset_{kind}_{engine}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def reference_sql(types: list[str], kind: str) -> str:
    """The hand-written query: what a person would write in DuckDB for these features."""
    t = "TIMESTAMP" if kind == "naive" else "TIMESTAMPTZ"
    a = f"{t} '{AS_OF:%Y-%m-%d %H:%M:%S}'"
    piv = []
    for e in types:
        piv += [f"sum(n{w}) FILTER (WHERE event = '{e}') AS n_{e}_{w}d" for w in WINDOWS]
        piv.append(f"max(last_ts) FILTER (WHERE event = '{e}') AS last_{e}")
        piv.append(f"sum(onb) FILTER (WHERE event = '{e}') AS onboard_n_{e}_7d")
    windows = ", ".join(f"count(*) FILTER (WHERE e.ts >= {a} - INTERVAL {w} DAY) AS n{w}" for w in WINDOWS)
    active = ", ".join(f"count(*) FILTER (WHERE d >= CAST({a} AS DATE) - {w}) AS active_days_{w}d" for w in WINDOWS)
    days_since = ", ".join(f"(epoch_us({a}) - epoch_us(last_{e})) / 86400000000.0 AS days_since_last_{e}" for e in types)
    counts = ", ".join([f"coalesce(n_{e}_{w}d, 0) AS n_{e}_{w}d" for e in types for w in WINDOWS]
                       + [f"coalesce(onboard_n_{e}_7d, 0) AS onboard_n_{e}_7d" for e in types])
    return f"""
WITH u AS (SELECT user_id, signup_ts FROM users WHERE signup_ts < {a}),
e AS (SELECT user_id, event, ts, item_id FROM events WHERE ts < {a}),
per_event AS (
  SELECT e.user_id, e.event, {windows}, max(e.ts) AS last_ts,
         count(*) FILTER (WHERE CAST(e.ts AS DATE) < CAST(u.signup_ts AS DATE) + 7) AS onb
  FROM e JOIN u USING (user_id) GROUP BY ALL),
per_user AS (
  SELECT user_id, max(last_ts) AS last_ts, {', '.join(piv)}
  FROM per_event GROUP BY user_id HAVING max(last_ts) >= {a} - INTERVAL 30 DAY),
days AS (SELECT DISTINCT user_id, CAST(ts AS DATE) AS d FROM e WHERE ts >= {a} - INTERVAL 30 DAY),
active AS (SELECT user_id, {active} FROM days GROUP BY user_id),
items AS (SELECT user_id, count(DISTINCT item_id) AS distinct_items_30d
          FROM e WHERE ts >= {a} - INTERVAL 30 DAY GROUP BY user_id)
SELECT p.user_id,
       (epoch_us({a}) - epoch_us(p.last_ts)) / 86400000000.0 AS days_since_last_activity,
       {days_since}, {counts},
       a.* EXCLUDE (user_id),
       coalesce(i.distinct_items_30d, 0) AS distinct_items_30d,
       (epoch_us({a}) - epoch_us(u.signup_ts)) / 86400000000.0 AS tenure_days
FROM per_user p JOIN u USING (user_id) JOIN active a USING (user_id) LEFT JOIN items i USING (user_id)
"""


def _duckdb(data: Path, kind: str):
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.execute("SET memory_limit='3GB'")
    con.execute("SET preserve_insertion_order=false")
    con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{data}/events_{kind}.parquet')")
    con.execute(f"CREATE VIEW users AS SELECT * FROM read_parquet('{data}/users_{kind}.parquet')")
    return con


# --- phases (each in its own process) -----------------------------------------------------------
def _phase_generate(data: Path, kind: str, events: int, users: int) -> dict:
    return generate(data, events, users)


def _phase_floor(data: Path, kind: str, **_) -> dict:
    con = _duckdb(data, kind)
    t0 = time.perf_counter()
    n = con.execute("SELECT user_id, event, count(*) FROM events GROUP BY ALL").to_arrow_table().num_rows
    return {"s": time.perf_counter() - t0, "groups": n}


def _types(con) -> list[str]:
    return [r[0] for r in con.execute("SELECT DISTINCT event FROM events ORDER BY 1").fetchall()]


def _phase_reference(data: Path, kind: str, **_) -> dict:
    con = _duckdb(data, kind)
    sql = reference_sql(_types(con), kind)  # the event types are known to the person writing it
    t0 = time.perf_counter()
    n = con.execute(sql).to_arrow_table().num_rows
    return {"s": time.perf_counter() - t0, "rows": n}


def _phase_churnml(data: Path, kind: str, engine: str = "duckdb", **_) -> dict:
    from churnml.config import load_dataset_config
    from churnml.data import open_dataset
    from churnml.features import build_snapshot

    cfg = load_dataset_config(_config(data, kind, engine))
    t0 = time.perf_counter()
    ds = open_dataset(cfg)
    t1 = time.perf_counter()
    table, fs = build_snapshot(ds, AS_OF)
    t2 = time.perf_counter()
    return {"s": t2 - t0, "validate_s": t1 - t0, "build_s": t2 - t1, "rows": table.num_rows,
            "features": len(fs.columns), "duplicates": ds.n_duplicates}


def _phase_stacked(data: Path, kind: str, **_) -> dict:
    from churnml.config import load_dataset_config
    from churnml.data import open_dataset
    from churnml.features import build_snapshot, build_training_set

    cfg = load_dataset_config(_config(data, kind))
    ds = open_dataset(cfg)
    instants = cfg.snapshot_instants()
    types = ds.event_types(before=instants[-1])
    out = {"snapshots": len(instants)}
    t0 = time.perf_counter()
    one, _ = build_snapshot(ds, instants[-1], labels=True, event_types=types)
    out["one_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    stacked, _ = build_training_set(ds, instants, event_types=types)
    out["stacked_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    build_snapshot(ds, instants[-1], labels=True, event_types=types)
    out["one_again_s"] = time.perf_counter() - t0
    import pyarrow.compute as pc

    last = stacked.filter(pc.equal(stacked["as_of"], stacked["as_of"][stacked.num_rows - 1]))
    out.update(rows=stacked.num_rows, last_equals_one=last.equals(one))
    return out


def _phase_check(data: Path, kind: str, **_) -> dict:
    """The reference's columns against churnml's, value by value (exact, floats included)."""
    import math

    from churnml.config import load_dataset_config
    from churnml.data import open_dataset
    from churnml.features import build_snapshot

    con = _duckdb(data, kind)
    ref = con.execute(reference_sql(_types(con), kind)).to_arrow_table().sort_by("user_id")
    ds = open_dataset(load_dataset_config(_config(data, kind)))
    mine, _ = build_snapshot(ds, AS_OF)
    assert ref.column("user_id").to_pylist() == mine.column("user_id").to_pylist(), "different users"
    cols = [c for c in ref.column_names if c != "user_id"]
    bad = {}
    for c in cols:
        a, b = ref.column(c).to_pylist(), mine.column(c).to_pylist()
        diff = sum(1 for x, y in zip(a, b, strict=True)
                   if not (x == y or (x is None and y is None)
                           or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))))
        if diff:
            bad[c] = diff
    return {"rows": ref.num_rows, "columns_compared": len(cols), "columns_differing": bad}


PHASES = {"generate": _phase_generate, "floor": _phase_floor, "reference": _phase_reference,
          "churnml": _phase_churnml, "stacked": _phase_stacked, "check": _phase_check}


def _child(phase: str, data: Path, kind: str, extra: list[str] | None = None, baseline: Path | None = None) -> dict:
    env = None if baseline is None else {"PYTHONPATH": str(baseline)}  # the older churnml package first
    return run_child(__file__, phase, ["--data", str(data), "--kind", kind, *(extra or [])], env=env)


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--logs", nargs="+", default=["naive", "tz"], choices=["naive", "tz"])
    ap.add_argument("--check", action="store_true", help="only compare the reference's columns with churnml's")
    ap.add_argument("--stacked", action="store_true", help="13 weekly snapshots against one snapshot's build")
    ap.add_argument("--spark", action="store_true", help="add the Spark engine (local[2]) to the rounds")
    ap.add_argument("--baseline", type=Path,
                    help="a folder holding an older churnml package (`git archive REV churnml | tar -x -C DIR`), "
                         "timed in the same interleaved rounds: before and after in one run")
    ap.add_argument("--child", choices=PHASES, help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--kind", default="naive", help=argparse.SUPPRESS)
    ap.add_argument("--engine", default="duckdb", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kw = {"events": args.events, "users": args.users} if args.child == "generate" else {"engine": args.engine}
        print(json.dumps(PHASES[args.child](args.data, args.kind, **kw), default=str))
        return

    data = _folder(args.events, args.users)
    if not (data / "events_tz.parquet").exists():
        r = _child("generate", data, "naive", ["--events", str(args.events), "--users", str(args.users)])
        print(f"generated: {r}", file=sys.stderr)
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, python {platform.python_version()}; "
          f"load {os.getloadavg()[0]:.1f} at start; log {data.name}")
    if args.check:
        for kind in args.logs:
            print(kind, _child("check", data, kind))
        return
    if args.stacked:
        codes = ["current"] + (["baseline"] if args.baseline else [])
        runs = []
        for rnd in range(args.rounds):
            for kind in args.logs:
                for code in codes[rnd % len(codes):] + codes[:rnd % len(codes)]:
                    r = dict(_child("stacked", data, kind, baseline=args.baseline if code == "baseline" else None),
                             kind=kind, code=code)
                    runs.append(r)
                    print(json.dumps(r), file=sys.stderr, flush=True)
        print("\n| log | code | one snapshot s, median (range) | 13 weekly snapshots s | ratio | peak RSS GB | "
              "last = one build |\n|---|---|---|---|---|---|---|")
        for kind in args.logs:
            for code in codes:
                rs = [r for r in runs if r["kind"] == kind and r["code"] == code]
                ones = [min(r["one_s"], r["one_again_s"]) for r in rs]
                ratio = statistics.median(r["stacked_s"] / min(r["one_s"], r["one_again_s"]) for r in rs)
                print(f"| {kind} | {code} | {_summary(ones)} | {_summary([r['stacked_s'] for r in rs])} | "
                      f"{ratio:.2f} | {max(r['peak_rss_gb'] for r in rs):.2f} | "
                      f"{all(r['last_equals_one'] for r in rs)} |")
        return

    phases = ["floor", "reference", "churnml"] + (["spark"] if args.spark else []) + \
        (["baseline"] if args.baseline else [])
    results: dict[tuple[str, str], list[dict]] = {}
    for rnd in range(args.rounds):
        for kind in args.logs:
            order = phases[rnd % len(phases):] + phases[:rnd % len(phases)]  # rotate who goes first
            for phase in order:
                extra = ["--engine", "pyspark"] if phase == "spark" else []
                r = _child("churnml" if phase in ("spark", "baseline") else phase, data, kind, extra,
                           baseline=args.baseline if phase == "baseline" else None)
                results.setdefault((kind, phase), []).append(r)
                print(f"  round {rnd} {kind} {phase}: {r}", file=sys.stderr, flush=True)
    print("\n| log | phase | wall s, median (range) | in-phase s | / reference | peak RSS GB | load |\n|---|---|---|---|---|---|---|")
    for kind in args.logs:
        ref = statistics.median(r["s"] for r in results[(kind, "reference")])
        for phase in phases:
            rs = results[(kind, phase)]
            s = [r["s"] for r in rs]
            print(f"| {kind} | {phase} | {_summary([r['wall_s'] for r in rs])} | {_summary(s)} | "
                  f"{statistics.median(s) / ref:.2f} | {max(r['peak_rss_gb'] for r in rs):.2f} | "
                  f"{statistics.median(r['load1_before'] for r in rs):.1f} |")
            if phase in ("churnml", "spark", "baseline"):
                for part in ("validate_s", "build_s"):
                    v = [r[part] for r in rs]
                    print(f"| {kind} | {phase}: {part[:-2]} | | {_summary(v)} | {statistics.median(v) / ref:.2f} | | |")
    print(json.dumps({f"{k[0]}/{k[1]}": v for k, v in results.items()}, default=str), file=sys.stderr)


if __name__ == "__main__":
    main()
