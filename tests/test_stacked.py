"""Stacked snapshots: built together in shared scans, the table equals K separate builds."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from churnml.config import load_dataset_config
from churnml.data import open_dataset
from churnml.features import build_snapshot, build_training_set


@pytest.fixture(scope="module")
def sim_config(tmp_path_factory):
    from churnml.jobs import simulate_job
    from churnml.simulator import SimulationConfig

    folder = tmp_path_factory.mktemp("stacked")
    _, cfg_path = simulate_job(SimulationConfig(n_users=600, days=70, seed=11), folder, truth=False)
    return cfg_path


def _separate(ds, instants, types):
    parts = [build_snapshot(ds, s, labels=True, event_types=types)[0] for s in instants]
    return pa.concat_tables(parts)


def test_training_set_equals_separate_builds(sim_config):
    ds = open_dataset(load_dataset_config(sim_config))
    instants = ds.config.snapshot_instants()
    assert len(instants) >= 4
    types = ds.event_types(before=instants[-1])
    stacked, fs = build_training_set(ds, instants, event_types=types)
    separate = _separate(ds, instants, types)
    assert stacked.num_rows > 500 and stacked.column("churned").to_pylist().count(1) > 0
    assert stacked.schema.equals(separate.schema)
    assert stacked.equals(separate)


def test_equal_off_midnight_and_in_another_time_zone(sim_config, tmp_path):
    # Snapshots at 06:00 in Berlin: windows start mid-date, so the condensed log is split there.
    cfg = load_dataset_config(sim_config).model_copy(update={"timezone": "Europe/Berlin"})
    ds = open_dataset(cfg)
    last = ds.config.snapshot_instants()[-1]
    instants = [ds.clock.instant(dt.datetime.combine(last.date() - dt.timedelta(days=d), dt.time(6)))
                for d in (17, 10, 3)]
    types = ds.event_types(before=instants[-1])
    stacked, _ = build_training_set(ds, instants, event_types=types)
    separate = _separate(ds, instants, types)
    assert stacked.num_rows > 200
    assert stacked.equals(separate)
    # snapshots at different times of day are built in groups, and still stack in order
    mixed = [instants[0], instants[1] + dt.timedelta(hours=5)]
    stacked, _ = build_training_set(ds, mixed, event_types=types)
    assert stacked.equals(_separate(ds, mixed, types))
