"""Benchmark: the scoring API under load (uvicorn, one worker, loopback), driven by ``wrk``.

Builds a store with real champion models and one nightly list (simulated app,
3,000 users; reused if ``--store`` already holds one), starts
``uvicorn --factory serving.app:create_app`` exactly as ``serving/README.md``
says, and runs bounded ``wrk`` scenarios against it:

* one user by id, 16 connections (the interactive case; target p99 <= 50 ms, no errors): first
  every user not on the recall list once, on a fresh server started without the background
  warm-up ("cold": each request words its user's reasons, exact TreeSHAP, batched with concurrent
  requests'), then every user for ``--duration`` seconds on the server as documented, once its
  warm-up has worded every snapshot user's reasons ("warm");
* one user by feature rows, 16 connections (scored per request by ``Scorer.score``);
* 1,000 users by id, one connection (target <= 300 ms): cold (on a fresh server without warm-up,
  1,000 users not on the list, then the last 1,000 users of the snapshot) and warm;
* 1,000 users by feature rows, one connection (scored per request, reasons included).

Usage::

    apt-get install -y wrk
    python benchmarks/api_load.py                       # builds benchmarks/_data/api_store once
    python benchmarks/api_load.py --duration 20 --connections 16
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
AS_OF = "2024-04-29"

# wrk prints this table from done(); latencies are in microseconds.
_LUA_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %d, "seconds": %.3f, "p50_us": %d, "p90_us": %d, '
    .. '"p99_us": %d, "max_us": %d, "errors": %d, "non_2xx": %d}\\n', summary.requests,
    summary.duration / 1e6, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def build_store(folder: Path) -> None:
    """Simulate, train both models with the training defaults (no tuning), promote, score the nightly list."""
    from churnml.batch import score_job
    from churnml.config import ScoreConfig, Settings, TrainConfig, TuningConfig
    from churnml.jobs import build_features_job, simulate_job
    from churnml.models.uplift import default_candidates
    from churnml.simulator import SimulationConfig
    from churnml.train import promote_job, train_churn_job
    from churnml.train_uplift import train_uplift_job

    _, config = simulate_job(SimulationConfig(n_users=3000, days=120, seed=5), folder / "data")
    training_set = build_features_job(config, folder / "training_set.parquet").table_path
    settings = Settings(mlruns_dir=str(folder / "mlruns"))
    churn = TrainConfig(dataset=config, training_set=training_set, tuning=TuningConfig(trials=0))
    train_churn_job(churn, settings=settings)
    promote_job(churn, settings=settings)
    uplift = TrainConfig(kind="uplift", dataset=config)
    train_uplift_job(uplift, settings=settings, candidates={"t": default_candidates()["t_lightgbm"]})
    promote_job(uplift, settings=settings)
    score_job(ScoreConfig(dataset=config, output=folder / "lists"), AS_OF, settings=settings)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(store: Path, port: int, log_file, *, warm: bool = True) -> subprocess.Popen:
    """uvicorn with the README's command, from the repository root, waiting until models are loaded."""
    env = {**os.environ, "CHURNML_SERVE_LISTS_DIR": str(store / "lists"),
           "CHURNML_MLRUNS_DIR": str(store / "mlruns"), "OMP_NUM_THREADS": "1",
           "CHURNML_SERVE_WARM_REASONS": "true" if warm else "false"}
    env.pop("CHURNML_SERVE_API_TOKEN", None)
    cmd = [str(Path(sys.executable).with_name("uvicorn")), "--factory", "serving.app:create_app",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"uvicorn exited with {proc.returncode}; see {log_file.name}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                health = json.load(r)
            if health["models_loaded"] and health["snapshot_loaded"]:
                return proc
        except OSError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit("uvicorn did not load the models within 180 s")


def _lua(bodies: list[str]) -> str:
    quoted = ",\n".join(f"[==[{b}]==]" for b in bodies)
    return (f"local bodies = {{\n{quoted}\n}}\nlocal n = 0\n"
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            "request = function()\n  n = n + 1\n"
            "  return wrk.format(nil, '/score', nil, bodies[((n - 1) % #bodies) + 1])\nend\n" + _LUA_DONE)


# Stop once every body has been answered (a few more may be in flight on other connections).
_LUA_ONCE = """
local answered = 0
response = function(status, headers, body)
  answered = answered + 1
  if answered >= #bodies then wrk.thread:stop() end
end
"""


def run_wrk(url: str, bodies: list[str], *, connections: int, seconds: int, tmp: Path,
            once: bool = False) -> dict:
    """One bounded wrk run (one wrk thread) over request bodies taken in turn (``once``: each body once)."""
    script = tmp / f"wrk_{len(bodies)}_{connections}_{time.monotonic_ns()}.lua"
    script.write_text(_lua(bodies) + (_LUA_ONCE if once else ""))
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
                          "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    r = json.loads(line.removeprefix("RESULT "))
    r["rps"] = r["requests"] / r["seconds"]
    return r


def time_requests(url: str, bodies: list[str]) -> list[float]:
    """Milliseconds of each request, sent one after the other on one connection."""
    from http.client import HTTPConnection

    host, port = url.removeprefix("http://").split(":")
    conn, out = HTTPConnection(host, int(port), timeout=60), []
    for body in bodies:
        t0 = time.perf_counter()
        conn.request("POST", "/score", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"POST /score answered {response.status}")
        out.append((time.perf_counter() - t0) * 1e3)
    conn.close()
    return out


def _rows(frame) -> list[dict]:
    out = []
    for row in frame.astype(object).to_dict("records"):
        out.append({k: (v.isoformat() if hasattr(v, "isoformat") else
                        None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=HERE / "_data" / "api_store")
    ap.add_argument("--duration", type=int, default=20, help="seconds of each single-user run")
    ap.add_argument("--batch-duration", type=int, default=15, help="seconds of each 1,000-user run")
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    if not (args.store / "lists" / AS_OF / "features.parquet").is_file():
        print(f"building the store in {args.store} (simulate, train, promote, score) ...", flush=True)
        t0 = time.perf_counter()
        build_store(args.store)
        print(f"  built in {time.perf_counter() - t0:.0f} s", flush=True)

    import pandas as pd

    features = pd.read_parquet(args.store / "lists" / AS_OF / "features.parquet")
    ids = features["user_id"].tolist()
    listed = set(pd.read_parquet(args.store / "lists" / AS_OF / "recall_list.parquet")["user_id"])
    unlisted = [u for u in ids if u not in listed]
    cold_single = [json.dumps({"user_ids": [u]}) for u in unlisted]
    single_ids = [json.dumps({"user_ids": [u]}) for u in ids]
    cold_batch = [json.dumps({"user_ids": unlisted[:1000]}), json.dumps({"user_ids": ids[-1000:]})]
    cold_in_second = len(set(ids[-1000:]) - listed - set(unlisted[:1000]))
    single_rows = [json.dumps({"rows": [r]}) for r in _rows(features.iloc[:200])]
    batch_ids = [json.dumps({"user_ids": ids[i:i + 1000]}) for i in (0, 1000, len(ids) - 1000)]
    batch_rows = [json.dumps({"rows": _rows(features.iloc[i:i + 1000])}) for i in (0, len(ids) - 1000)]

    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "uvicorn.log", "w+") as log_file:
        load_before = os.getloadavg()
        # Fresh servers without the background warm-up for the cold cases: every first-time user's
        # reasons are computed by the request (batched with concurrent requests').
        port = _free_port()
        proc = start_server(args.store, port, log_file, warm=False)
        try:
            cold_batches = time_requests(f"http://127.0.0.1:{port}", cold_batch)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        port = _free_port()
        proc = start_server(args.store, port, log_file, warm=False)
        try:
            cold = run_wrk(f"http://127.0.0.1:{port}", cold_single, connections=args.connections,
                           seconds=args.duration * 3, tmp=Path(tmp), once=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        # The server as documented: reasons of every snapshot user worded in the background at start.
        port = _free_port()
        t0 = time.perf_counter()
        proc = start_server(args.store, port, log_file)
        startup = time.perf_counter() - t0
        url = f"http://127.0.0.1:{port}"
        try:
            while True:
                with urllib.request.urlopen(f"{url}/model", timeout=5) as r:
                    model = json.load(r)
                if model["snapshot"]["reasons_cached"] >= model["snapshot"]["users"]:
                    break
                time.sleep(0.1)
            warmed = time.perf_counter() - t0 - startup
            results = {
                "1 user by id, cold": cold,
                "1 user by id, warm": run_wrk(url, single_ids, connections=args.connections,
                                              seconds=args.duration, tmp=Path(tmp)),
                "1 user by rows": run_wrk(url, single_rows, connections=args.connections,
                                          seconds=args.duration, tmp=Path(tmp)),
                "1,000 by id, warm": run_wrk(url, batch_ids, connections=1, seconds=args.batch_duration,
                                             tmp=Path(tmp)),
                "1,000 by rows": run_wrk(url, batch_rows, connections=1, seconds=args.batch_duration,
                                         tmp=Path(tmp)),
            }
            load_after = os.getloadavg()
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    print(f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores; "
          f"Python {platform.python_version()}; load average before/after "
          f"{load_before[0]:.1f}/{load_after[0]:.1f}")
    print(f"server: uvicorn 1 worker, OMP_NUM_THREADS=1, started and loaded in {startup:.1f} s; models "
          + ", ".join(f"{m['name']} v{m['version']} ({m['features']} features)" for m in model["models"])
          + f"; snapshot {model['snapshot']['date']}, {model['snapshot']['users']:,} users, "
          f"scores {model['snapshot']['scores']}; every user's reasons in memory {warmed:.1f} s after that")
    print("'cold': a server started without the warm-up (CHURNML_SERVE_WARM_REASONS=false), each user asked "
          "for once, so each request words its user's reasons")
    print(f"{'scenario':<22}{'conns':>6}{'requests':>10}{'req/s':>9}{'p50 ms':>9}{'p90 ms':>9}"
          f"{'p99 ms':>9}{'max ms':>9}{'errors':>8}")
    for name, r in results.items():
        conns = 1 if name.startswith("1,000") else args.connections
        print(f"{name:<22}{conns:>6}{r['requests']:>10}{r['rps']:>9.1f}{r['p50_us'] / 1e3:>9.1f}"
              f"{r['p90_us'] / 1e3:>9.1f}{r['p99_us'] / 1e3:>9.1f}{r['max_us'] / 1e3:>9.1f}"
              f"{r['errors'] + r['non_2xx']:>8}")
    print(f"1,000 by id, cold, one connection, fresh server: 1,000 users off the list {cold_batches[0]:.0f} ms; "
          f"then the last 1,000 users ({cold_in_second} of them never asked for) {cold_batches[1]:.0f} ms")


if __name__ == "__main__":
    main()
