"""LightGBM fit time by OpenMP wait policy and thread count, on an idle and on a busy machine.

churnml sets ``OMP_WAIT_POLICY=PASSIVE`` when it is imported (churnml/__init__.py), unless the user set
it. This measures why: libgomp's default (threads spin while they wait for work) makes a multi-thread
fit fight anything else running on the machine.

Each configuration fits the same booster in a fresh process (libgomp reads the variable when it is
loaded), interleaved over rounds; "busy" starts ``--busy`` CPU-bound processes for the duration.

    python benchmarks/lightgbm_threads.py --rows 20000 --rounds 3 --busy 2
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time

_FIT = """
import time, numpy as np, lightgbm as lgb
rng = np.random.default_rng(0)
X = rng.normal(size=({rows}, 80))
y = (X[:, :5].sum(axis=1) + rng.normal(size={rows}) > 0).astype(int)
ds = lgb.Dataset(X, y)
t = time.perf_counter()
lgb.train({{"objective": "binary", "learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 100,
           "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "verbose": -1,
           "num_threads": {threads}}}, ds, {iterations})
print(time.perf_counter() - t)
"""


def _spin(stop) -> None:
    while not stop.is_set():
        sum(range(10_000))


def _fit(policy: str, threads: int, rows: int, iterations: int) -> float:
    env = {**os.environ, "OMP_WAIT_POLICY": policy}
    code = _FIT.format(rows=rows, threads=threads, iterations=iterations)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--busy", type=int, default=os.cpu_count() or 2,
                    help="CPU-bound processes competing during the busy runs")
    args = ap.parse_args()
    configs = list(itertools.product(("as-is", "busy"), ("ACTIVE", "PASSIVE"), (1, 2)))
    times: dict[tuple, list[float]] = {c: [] for c in configs}
    for r in range(args.rounds):
        for load in ("as-is", "busy"):
            stop = mp.Event()
            spinners = [mp.Process(target=_spin, args=(stop,)) for _ in range(args.busy if load == "busy" else 0)]
            for p in spinners:
                p.start()
            try:
                for load_, policy, threads in configs:
                    if load_ == load:
                        times[(load, policy, threads)].append(_fit(policy, threads, args.rows, args.iterations))
            finally:
                stop.set()
                for p in spinners:
                    p.join()
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    print(f"LightGBM fit, {args.rows:,} rows x 80 features, {args.iterations} iterations, "
          f"{args.rounds} rounds, busy = {args.busy} spinning processes, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')}")
    print(f"{'machine':<6} {'OMP_WAIT_POLICY':<16} {'threads':>7} {'median s':>9} {'range':>17}")
    for c in configs:
        v = times[c]
        print(f"{c[0]:<6} {c[1]:<16} {c[2]:>7} {statistics.median(v):>9.2f} {min(v):>8.2f}-{max(v):<8.2f}")
    for load in ("as-is", "busy"):
        a, p = (statistics.median(times[(load, pol, 2)]) for pol in ("ACTIVE", "PASSIVE"))
        print(f"{load}: 2 threads ACTIVE / PASSIVE = {a / p:.2f}x")


if __name__ == "__main__":
    main()
