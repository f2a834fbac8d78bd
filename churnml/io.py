"""Atomic file output: a failed run never leaves a half-written file or clobbers a good one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["atomic_dir", "atomic_path", "write_json", "write_parquet", "write_text"]


@contextmanager
def atomic_path(target: str | Path):
    """Yield a temporary path beside ``target``; move it onto ``target`` only on success.

    The temporary file lives in the same folder so the final ``os.replace`` is
    atomic on POSIX filesystems. On any exception it is removed and ``target``
    is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    # mkstemp creates the file 0600; give the output the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write(target: str | Path, writer: Callable[[Path], None]) -> Path:
    with atomic_path(target) as tmp:
        writer(tmp)
    return Path(target)


def write_parquet(table: pa.Table, target: str | Path) -> Path:
    """Write ``table`` to ``target`` atomically (zstd-compressed Parquet)."""
    return _write(target, lambda p: pq.write_table(table, p, compression="zstd"))


def write_text(text: str, target: str | Path) -> Path:
    """Write ``text`` to ``target`` atomically."""
    return _write(target, lambda p: p.write_text(text))


def write_json(obj, target: str | Path) -> Path:
    """Write ``obj`` as indented JSON to ``target`` atomically."""
    return write_text(json.dumps(obj, indent=2, default=str) + "\n", target)


@contextmanager
def atomic_dir(target: str | Path, *, replace: bool = False):
    """Yield a temporary folder beside ``target``; it becomes ``target`` only if the block succeeds.

    Readers see either the old folder or the complete new one, never a mix:
    the new folder is renamed into place in one step. With ``replace`` an
    existing ``target`` is swapped out and removed after the new one is in
    place; without it an existing ``target`` raises ``FileExistsError`` before
    anything is written. On any exception the temporary folder is removed and
    ``target`` is left as it was.
    """
    import shutil

    target = Path(target)
    if target.exists() and not replace:
        raise FileExistsError(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    try:
        yield tmp
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / "previous")
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
