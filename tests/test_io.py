"""Atomic writes: a failure never leaves a half-written file or replaces a good one."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churnml.io import atomic_path, write_parquet


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
