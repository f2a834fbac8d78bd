"""Faults an operator meets, injected into the nightly job as cron runs it (the installed `churnml`).

Each ends in a documented exit code (README, serving/README.md), with the earlier list untouched and no
leftovers once the next run is through: SIGTERM and kill -9 while the list is being written, several
runs for one date at once, a full disk (injected and, where this process may mount one, a real
tmpfs), and a read-only MLflow store.

The processes are made to stop at a known point by a `sitecustomize` module put on their
PYTHONPATH (see `_HARNESS`): it wraps `churnml.io.write_json`, which the job calls last inside the
temporary list folder, so a signal arrives while that folder exists and the date's lock is held.
Nothing in churnml knows about it.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from churnml.batch import LIST_FILE, MANIFEST_FILE, score_job
from churnml.cli import app
from churnml.config import ScoreConfig, get_settings
from churnml.io import leftovers, lock_path

AS_OF = "2024-04-30"
CHURNML = Path(sys.executable).with_name("churnml")  # the console script pip installed

_HARNESS = '''
import os

_mode = os.environ.get("CHURNML_FAULT")
if _mode:
    import pathlib
    import time

    import churnml.io as _io

    def _in_temporary_list(target):
        return pathlib.Path(target).parent.name.endswith(".tmp")

    if _mode == "pause":  # stop inside the temporary list folder until told to go on
        _write_json = _io.write_json

        def write_json(obj, target):
            if _in_temporary_list(target):
                pathlib.Path(os.environ["CHURNML_FAULT_READY"]).write_text(str(os.getpid()))
                go = pathlib.Path(os.environ["CHURNML_FAULT_GO"])
                for _ in range(3000):
                    if go.exists():
                        break
                    time.sleep(0.02)
            return _write_json(obj, target)

        _io.write_json = write_json
'''


@pytest.fixture
def job(trained_store, tmp_path):
    """A batch config over the trained store, its lists folder, and the environment cron would give."""
    harness = tmp_path / "harness"
    harness.mkdir()
    (harness / "sitecustomize.py").write_text(_HARNESS)
    lists = tmp_path / "lists"
    cfg = tmp_path / "batch.yaml"
    cfg.write_text(yaml.safe_dump({"dataset": str(trained_store["config"]), "output": str(lists),
                                   "budget": {"max_contacts": 100}, "reasons": 1}))
    env = {**os.environ, "CHURNML_MLRUNS_DIR": trained_store["settings"].mlruns_dir,
           "PYTHONPATH": os.pathsep.join([str(harness), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "CHURNML_FAULT_READY": str(tmp_path / "ready"),
           "CHURNML_FAULT_GO": str(tmp_path / "go")}
    env.pop("CHURNML_FAULT", None)
    return {"config": cfg, "lists": lists, "day": lists / AS_OF, "env": env, "tmp": tmp_path,
            "score_config": ScoreConfig(dataset=trained_store["config"], output=lists,
                                        budget={"max_contacts": 100}, reasons=1),
            "settings": trained_store["settings"]}


def _start(job, *args, fault=None):
    env = dict(job["env"], **({"CHURNML_FAULT": fault} if fault else {}))
    return subprocess.Popen([str(CHURNML), "score", "--config", str(job["config"]), "--as-of", AS_OF, *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, procs, timeout=240.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if all(p.poll() is not None for p in procs) and not path.exists():
            out, err = procs[-1].communicate()
            raise AssertionError(f"every run exited before writing, the last with {procs[-1].returncode}:\n{err}")
        assert time.monotonic() < deadline, "no run reached the writing of its list"
        time.sleep(0.05)


def _snapshot(day: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(day.iterdir())}


def _earlier_list(job) -> dict:
    score_job(job["score_config"], AS_OF, settings=job["settings"])
    return _snapshot(job["day"])


@pytest.mark.skipif(not CHURNML.exists(), reason="needs the installed console script (pip install -e .)")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "kill-9"])
def test_a_run_stopped_while_writing_keeps_the_earlier_list(job, sig):
    before = _earlier_list(job)
    proc = _start(job, "--force", fault="pause")
    try:
        _wait_for(job["tmp"] / "ready", [proc])
        assert leftovers(job["day"]), "the run should be inside its temporary folder"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert _snapshot(job["day"]) == before
    if sig == signal.SIGTERM:
        # main() turns SIGTERM into an exception: the temporary folder and the lock go with it.
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert "Traceback" not in err
        assert leftovers(job["day"]) == [] and not lock_path(job["day"]).exists()
    else:
        assert proc.returncode == -signal.SIGKILL
        assert leftovers(job["day"])  # kill -9 runs nothing: the next run cleans up
    lines = []
    score_job(job["score_config"], AS_OF, settings=job["settings"], force=True, log=lines.append)
    assert leftovers(job["day"]) == [] and not lock_path(job["day"]).exists()
    assert sorted(p.name for p in job["lists"].iterdir()) == sorted([AS_OF, os.readlink(job["day"])])
    if sig == signal.SIGKILL:
        assert any("removed 1 leftover(s) of interrupted runs" in line for line in lines), lines


@pytest.mark.skipif(not CHURNML.exists(), reason="needs the installed console script (pip install -e .)")
def test_concurrent_runs_for_one_date_one_wins_the_others_exit_6(job):
    procs = [_start(job, fault="pause") for _ in range(3)]
    try:
        # One run holds the date's lock, paused inside its temporary folder; the other two meet the lock.
        _wait_for(job["tmp"] / "ready", procs)
        winner = int((job["tmp"] / "ready").read_text())
        losers = [p for p in procs if p.pid != winner]
        results = [p.communicate(timeout=240) for p in losers]
        (job["tmp"] / "go").write_text("")
        won = next(p for p in procs if p.pid == winner)
        out, err = won.communicate(timeout=240)
    finally:
        for p in procs:
            p.kill()
    assert won.returncode == 0, err
    for p, (_, lerr) in zip(losers, results, strict=True):
        assert p.returncode == 6, lerr
        assert "Traceback" not in lerr
        assert f"is writing the recall list for {AS_OF}" in " ".join(lerr.split())
    assert (job["day"] / MANIFEST_FILE).is_file() and (job["day"] / LIST_FILE).is_file()
    assert leftovers(job["day"]) == [] and not lock_path(job["day"]).exists()


def test_a_full_disk_is_one_line_exit_7_and_changes_nothing(job, monkeypatch):
    before = _earlier_list(job)

    def full(table, target):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("churnml.batch.write_parquet", full)
    monkeypatch.setenv("CHURNML_MLRUNS_DIR", job["settings"].mlruns_dir)
    get_settings.cache_clear()
    res = CliRunner().invoke(app, ["score", "--config", str(job["config"]), "--as-of", AS_OF, "--force"])
    assert res.exit_code == 7, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], res.output
    assert "earlier lists are untouched" in " ".join(res.output.split())
    assert "Traceback" not in res.output
    assert _snapshot(job["day"]) == before
    assert leftovers(job["day"]) == [] and not lock_path(job["day"]).exists()


def _mount_tmpfs(where: Path, size: int) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True)
    return done.returncode == 0


@pytest.mark.skipif(not CHURNML.exists(), reason="needs the installed console script (pip install -e .)")
def test_a_really_full_disk_keeps_the_earlier_list(job):
    # A tmpfs with room for one list, not two: --force must fail to write the second, not remove the first.
    lists = job["tmp"] / "small_disk"
    before = _earlier_list(job)
    pages = sum(-(-len(b) // 4096) for b in before.values()) + 2  # tmpfs counts whole pages
    if not _mount_tmpfs(lists, (pages + pages // 2) * 4096):
        pytest.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN); the injected full disk is tested above")
    try:
        shutil.copytree(job["lists"], lists, symlinks=True, dirs_exist_ok=True)
        cfg = job["tmp"] / "small.yaml"
        cfg.write_text(yaml.safe_dump({**yaml.safe_load(job["config"].read_text()), "output": str(lists)}))
        done = subprocess.run([str(CHURNML), "score", "--config", str(cfg), "--as-of", AS_OF, "--force"],
                              env=job["env"], capture_output=True, text=True, timeout=240)
        assert done.returncode == 7, done.stderr
        assert "No space left on device" in done.stderr and "Traceback" not in done.stderr
        assert _snapshot(lists / AS_OF) == before
        assert leftovers(lists / AS_OF) == [] and not lock_path(lists / AS_OF).exists()
    finally:
        subprocess.run(["umount", str(lists)], check=False)


def _tree(folder: Path) -> dict:
    """Every file and folder under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_loading_models_never_writes_into_the_store(trained_store, job):
    # MLflow writes `registered_model_meta` into the store's artifact folder when asked to download a
    # registered version without a destination: a read-only store then fails (#15).
    from churnml.scoring import Scorer
    from serving.app import ServeSettings, load_service

    store = Path(trained_store["settings"].mlruns_dir)
    _earlier_list(job)
    before = _tree(store)
    Scorer.from_registry(settings=trained_store["settings"])
    service = load_service(ServeSettings(lists_dir=job["lists"], runtime=trained_store["settings"],
                                         warm_reasons=False))
    assert service.problems == () and service.scorer is not None
    assert _tree(store) == before


def _mount_read_only(folder: Path) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    if subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode:
        return False
    if subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True).returncode:
        subprocess.run(["umount", str(folder)], check=False)
        return False
    return True


@pytest.mark.skipif(not CHURNML.exists(), reason="needs the installed console script (pip install -e .)")
def test_a_read_only_store_scores_and_refuses_to_promote_in_one_line(trained_store, job, tmp_path):
    store = Path(trained_store["settings"].mlruns_dir)
    if not _mount_read_only(store):
        pytest.skip("a read-only bind mount needs root (CAP_SYS_ADMIN); no writes on load are tested above")
    try:
        assert subprocess.run(["touch", str(store / "probe")], capture_output=True).returncode != 0
        done = subprocess.run([str(CHURNML), "score", "--config", str(job["config"]), "--as-of", AS_OF],
                              env=job["env"], capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr
        assert (job["day"] / LIST_FILE).is_file()
        train = tmp_path / "churn.yaml"
        train.write_text(yaml.safe_dump({"kind": "churn", "dataset": str(trained_store["config"])}))
        done = subprocess.run([str(CHURNML), "promote", "--config", str(train)], env=job["env"],
                              capture_output=True, text=True, timeout=240)
        assert done.returncode == 7, done.stderr
        assert "Traceback" not in done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "read-only" in errors[0], done.stderr
    finally:
        subprocess.run(["umount", str(store)], check=False)
