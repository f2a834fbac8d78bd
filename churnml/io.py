"""Atomic file output: a failed run never leaves a half-written file or clobbers a good one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["atomic_dir", "atomic_path", "leftovers", "lock_path", "sweep", "try_lock", "write_json", "write_parquet",
           "write_text"]


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

    ``target`` is published as a symbolic link to a hidden folder beside it
    (``.<name>.<version>``): the link is swapped in one ``rename``, so readers
    see the old folder or the complete new one, never a mix and never nothing,
    even when ``replace`` swaps out an existing folder (the previous version is
    removed after the swap). Without ``replace`` an existing ``target`` raises
    ``FileExistsError`` before anything is written. On any exception (SIGTERM
    included, once it is turned into ``SystemExit``) what was written is
    removed and ``target`` is left as it was; what a ``kill -9`` leaves behind
    is removed by :func:`sweep`. Callers that may run concurrently for the same
    ``target`` hold :func:`try_lock` around this.
    """
    import shutil

    target = Path(target)
    if _exists(target) and not replace:
        raise FileExistsError(target)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    version = parent / f".{target.name}.{tmp.name[len(target.name) + 2:-4]}"
    link = parent / f"{version.name}.link"
    published = False
    try:
        yield tmp
        _fsync_tree(tmp)
        os.rename(tmp, version)
        if replace:  # relative link: the lists folder can be moved or mounted elsewhere
            os.symlink(version.name, link)
        previous = _version_of(target)
        if replace:
            _swap(link, target)
        else:
            os.symlink(version.name, target)  # fails if a run we did not see published meanwhile
        published = True
        _fsync_dir(parent)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
    finally:
        if not published:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(version, ignore_errors=True)
        if os.path.lexists(link):
            _remove(link)


def _exists(path: Path) -> bool:
    return os.path.lexists(path)


def _version_of(target: Path) -> Path | None:
    """What ``target`` holds now: the hidden folder its link points at (None if it does not exist)."""
    if target.is_symlink():
        dest = target.parent / os.readlink(target)
        return dest if dest.parent == target.parent and dest.name.startswith(f".{target.name}.") else None
    return None


def _swap(link: Path, target: Path) -> None:
    """Put the symbolic link ``link`` in ``target``'s place in one step.

    Over a link (or nothing) this is one ``rename``. A plain folder (a list
    written before lists were links) cannot be replaced by a rename: Linux
    exchanges the two atomically (``renameat2(RENAME_EXCHANGE)``); elsewhere
    the folder is moved aside first, a moment without ``target``.
    """
    import shutil

    if not (target.is_dir() and not target.is_symlink()):
        os.replace(link, target)
        return
    if _exchange(link, target):  # the old folder now sits at `link`
        shutil.rmtree(link, ignore_errors=True)
        return
    aside = link.with_name(link.name + ".old")
    os.rename(target, aside)
    os.replace(link, target)
    shutil.rmtree(aside, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2``); False where the system cannot."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    return False


def _remove(path: Path) -> None:
    import shutil

    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _fsync_tree(folder: Path) -> None:
    """Flush the files of ``folder`` to disk, so that a crash after publishing cannot leave them empty."""
    for p in folder.rglob("*"):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - systems without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def leftovers(target: str | Path) -> list[Path]:
    """What interrupted :func:`atomic_dir` runs for ``target`` left beside it.

    Temporary folders, unpublished or replaced versions and half-made links:
    every hidden ``.<name>.*`` entry except the version ``target`` points at
    and the lock file of :func:`try_lock`.
    """
    target = Path(target)
    if not target.parent.is_dir():
        return []
    keep = {_version_of(target), lock_path(target)}
    prefix = f".{target.name}."
    return sorted(p for p in target.parent.iterdir() if p.name.startswith(prefix) and p not in keep)


def sweep(target: str | Path) -> list[Path]:
    """Remove the :func:`leftovers` of ``target``; returns what was removed.

    Only call it while holding :func:`try_lock` for ``target``: a run writing
    ``target`` at the same time would lose its temporary folder.
    """
    gone = leftovers(target)
    for p in gone:
        _remove(p)
    return gone


def lock_path(target: str | Path) -> Path:
    """The lock file of ``target`` (``.<name>.lock`` beside it)."""
    target = Path(target)
    return target.parent / f".{target.name}.lock"


@contextmanager
def try_lock(target: str | Path, *, wait: float = 0.0) -> Iterator[str | None]:
    """Hold the exclusive lock of ``target`` for the block, waiting at most ``wait`` seconds for it.

    Yields None if the lock was taken, else a description of the holder
    (``"pid 1234"``). The lock is an advisory ``flock`` on ``.<name>.lock``
    beside ``target``: the system releases it when its process ends in any way
    (``kill -9`` included), and the file is removed on release.
    """
    import fcntl
    import time

    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip()
            os.close(fd)
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            yield f"pid {holder}" if holder.isdigit() else "another process"
            return
        # The previous holder removes the file as it lets go: a lock on a file no longer at `path`
        # protects nothing, so take it again on the file that is there now.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield None
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)
