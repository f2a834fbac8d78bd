"""Benchmark: how long `churnml --help` takes to start, and what the import time goes to.

Runs, interleaved in one loop so that the machine's load hits every variant alike:

``python -c pass``
    The interpreter alone: the floor.
``churnml --help``
    The installed console script (what a user and cron run).
``help, this tree`` / ``help, <ref>``
    ``churnml.cli.main()`` with ``--help`` from this checkout and, with ``--baseline REF``,
    from the churnml package of git revision REF (exported with ``git archive``), both by
    ``python -c`` with the package first on ``PYTHONPATH``: the speed-up, side by side.

Then ``python -X importtime -c "import churnml.cli"`` once, summed per top-level package: which
imports the start-up still pays for (the target is that scikit-learn, LightGBM, MLflow, pandas,
ibis and DuckDB are imported only by the commands that use them).

Usage::

    python benchmarks/cli_startup.py                       # 15 rounds
    python benchmarks/cli_startup.py --baseline 6022ed0    # against the code before issue #15

Figures go to stdout as Markdown; copy them to BENCHMARKS.md with the machine, date and command.
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HELP = "import sys; sys.argv = ['churnml', '--help']; from churnml.cli import main; main()"
HEAVY = ("sklearn", "lightgbm", "mlflow", "pandas", "ibis", "duckdb", "scipy", "pyarrow", "optuna", "shap")


def _export(ref: str, into: Path) -> Path:
    """The churnml package of git revision ``ref``, written under ``into``."""
    archive = into / "src.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", "-o", str(archive), ref, "churnml"],
                   check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / ref, filter="data")
    return into / ref


def _time(argv: list[str], env: dict | None = None) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one run.

    On a busy machine the wall time includes waiting for a core; the CPU time
    does not, and is about what the wall time is on an idle machine (start-up
    runs on one thread).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # From a neutral folder: `python -c` puts the working folder first on sys.path.
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          cwd=tempfile.gettempdir())
    took = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{argv} failed: {done.stderr[-2000:]}")
    return took, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _import_breakdown(env: dict) -> tuple[float, list[tuple[str, float]]]:
    """Total import time of churnml.cli and the cumulative time per top-level package (seconds)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import churnml.cli"], env=env,
                          capture_output=True, text=True, check=True, cwd=tempfile.gettempdir())
    per_package: dict[str, float] = collections.defaultdict(float)
    total = 0.0
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        try:
            us = int(cumulative)
        except ValueError:
            continue  # the header line
        depth = (len(name) - len(name.lstrip())) // 2
        module = name.strip()
        if module == "churnml.cli":
            total = us / 1e6
        if depth == 0 or (depth == 1 and module.split(".")[0] != "churnml"):
            # top-level imports, and what churnml's own modules pull in directly
            per_package[module.split(".")[0]] += us / 1e6
    ranked = sorted(per_package.items(), key=lambda kv: -kv[1])
    return total, ranked


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--baseline", help="a git revision to compare with (its churnml package)")
    args = ap.parse_args()
    script = Path(sys.executable).with_name("churnml")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    variants = {"python -c pass": ([sys.executable, "-c", "pass"], None),
                "help, this tree": ([sys.executable, "-c", HELP], env)}
    if script.exists():
        variants["churnml --help"] = ([str(script), "--help"], None)
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline:
            old = _export(args.baseline, Path(tmp))
            variants[f"help, {args.baseline}"] = ([sys.executable, "-c", HELP], dict(os.environ, PYTHONPATH=str(old)))
        for argv, e in variants.values():  # warm the file cache
            _time(argv, e)
        times: dict[str, list[float]] = {k: [] for k in variants}
        cpu: dict[str, list[float]] = {k: [] for k in variants}
        load = [os.getloadavg()[0]]
        for _ in range(args.repeat):
            for name, (argv, e) in variants.items():
                wall, used = _time(argv, e)
                times[name].append(wall)
                cpu[name].append(used)
        load.append(os.getloadavg()[0])
        heavy_now = subprocess.run([sys.executable, "-c", "import sys, churnml.cli; print(' '.join(sorted("
                                    f"m for m in {HEAVY!r} if m in sys.modules)))"], env=env, capture_output=True,
                                   text=True, check=True, cwd=tempfile.gettempdir()).stdout.strip()
        total, ranked = _import_breakdown(env)

    print(f"machine: {platform.node()} {os.cpu_count()} cores, python {platform.python_version()}, "
          f"load average {load[0]:.1f} -> {load[1]:.1f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"rounds: {args.repeat}, interleaved\n")
    print("| variant | wall median s | wall min s | wall max s | CPU median s |\n|---|---|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.3f} | {min(ts):.3f} | {max(ts):.3f} | "
              f"{statistics.median(cpu[name]):.3f} |")
    if args.baseline:
        old, new = f"help, {args.baseline}", "help, this tree"
        print(f"\n{args.baseline} / this tree (medians): wall {statistics.median(times[old]) / statistics.median(times[new]):.1f}x, "
              f"CPU {statistics.median(cpu[old]) / statistics.median(cpu[new]):.1f}x")
    print(f"\nheavy libraries imported by `import churnml.cli`: {heavy_now or 'none'}")
    print(f"import churnml.cli: {total:.3f} s (one run, -X importtime); by top-level package:\n")
    print("| package | cumulative s |\n|---|---|")
    for name, s in ranked[:10]:
        print(f"| {name} | {s:.3f} |")


if __name__ == "__main__":
    main()
