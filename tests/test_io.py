"""Atomic writes: a failure never leaves a half-written file or replaces a good one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churnml.io import atomic_dir, atomic_path, leftovers, lock_path, sweep, try_lock, write_parquet


def test_failure_keeps_previous_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "list.parquet"
    write_parquet(pa.table({"user_id": [1, 2]}), target)
    before = target.read_bytes()
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half a parquet file")
            raise RuntimeError("disk on fire")
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.parquet"]


def test_success_replaces(tmp_path):
    target = tmp_path / "sub" / "t.parquet"
    write_parquet(pa.table({"a": [1]}), target)
    write_parquet(pa.table({"a": [2, 3]}), target)
    assert pq.read_table(target).column("a").to_pylist() == [2, 3]


def _publish(target, text, *, replace=False):
    with atomic_dir(target, replace=replace) as tmp:
        (tmp / "list.txt").write_text(text)


@pytest.mark.parametrize("legacy", [False, True], ids=["link", "plain-folder"])
def test_replacing_a_folder_never_leaves_a_moment_without_one(tmp_path, monkeypatch, legacy):
    # After every rename, link or unlink the replacement makes, a reader finds a complete folder:
    # the old one or the new one (#15: --force used to move the old list away before moving the new in).
    # A plain folder (lists written before they were links) is exchanged atomically on Linux.
    if legacy and not sys.platform.startswith("linux"):
        pytest.skip("an atomic exchange of a folder and a link needs Linux's renameat2")
    target = tmp_path / "2024-04-30"
    if legacy:
        target.mkdir()
        (target / "list.txt").write_text("old")
    else:
        _publish(target, "old")
    seen = []

    def watch(fn):
        def call(*args, **kwargs):
            out = fn(*args, **kwargs)
            try:
                seen.append((target / "list.txt").read_text())
            except OSError as exc:
                seen.append(type(exc).__name__)
            return out
        return call

    for name in ("rename", "replace", "symlink", "unlink", "rmdir"):
        monkeypatch.setattr(os, name, watch(getattr(os, name)))
    _publish(target, "new", replace=True)
    monkeypatch.undo()
    assert seen and set(seen) <= {"old", "new"}, seen
    assert seen[-1] == "new" and (target / "list.txt").read_text() == "new"
    assert leftovers(target) == [] and not lock_path(target).exists()


def test_a_folder_written_before_lists_were_links_is_replaced_too(tmp_path):
    target = tmp_path / "2024-04-30"
    target.mkdir()
    (target / "list.txt").write_text("old")
    _publish(target, "new", replace=True)
    assert (target / "list.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, os.readlink(target)])


def test_an_existing_folder_is_not_replaced_without_replace(tmp_path):
    target = tmp_path / "d"
    _publish(target, "old")
    with pytest.raises(FileExistsError):
        _publish(target, "new")
    assert (target / "list.txt").read_text() == "old" and leftovers(target) == []


def test_sweep_removes_what_killed_runs_left_and_keeps_the_list(tmp_path):
    target = tmp_path / "2024-04-30"
    _publish(target, "good")
    # what kill -9 leaves at each step: a folder being written, a written but unpublished version,
    # a half-made link, a replaced version not yet removed, and the old implementation's ".old"
    (tmp_path / ".2024-04-30.abc123.tmp").mkdir()
    (tmp_path / ".2024-04-30.abc123.tmp" / "list.txt").write_text("half")
    (tmp_path / ".2024-04-30.def456").mkdir()
    os.symlink(".2024-04-30.def456", tmp_path / ".2024-04-30.def456.link")
    (tmp_path / ".2024-04-30.x1.old").mkdir()
    other = tmp_path / ".2024-05-01.zzz.tmp"
    other.mkdir()
    assert len(leftovers(target)) == 4
    removed = sweep(target)
    assert len(removed) == 4 and leftovers(target) == []
    assert (target / "list.txt").read_text() == "good"
    assert other.exists()  # another date's: not this sweep's business


def test_lock_is_exclusive_and_released_with_its_file(tmp_path):
    target = tmp_path / "2024-04-30"
    with try_lock(target) as holder:
        assert holder is None and lock_path(target).exists()
        # another process trying now is told who holds it
        code = ("import sys; from churnml.io import try_lock\n"
                "with try_lock(sys.argv[1], wait=0.2) as h: print(h)")
        out = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == f"pid {os.getpid()}"
    assert not lock_path(target).exists()
    out = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"


def test_a_killed_holder_releases_the_lock(tmp_path):
    target = tmp_path / "2024-04-30"
    code = ("import sys, time; from churnml.io import try_lock\n"
            "with try_lock(sys.argv[1]) as h:\n    print(h, flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "None"
        with try_lock(target) as holder:
            assert holder == f"pid {proc.pid}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert lock_path(target).exists()  # kill -9 runs no cleanup, but the system let go of the lock
        with try_lock(target) as holder:
            assert holder is None
        assert not lock_path(target).exists()
    finally:
        proc.kill()
        proc.wait()
