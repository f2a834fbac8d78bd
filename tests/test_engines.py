"""Engine parity: the same feature definitions give the same table on DuckDB and on Spark."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from churnml.config import load_dataset_config
from churnml.data import connect, open_dataset
from churnml.features import build_snapshot

from conftest import TINY_CAMPAIGNS, TINY_EVENTS, TINY_USERS, write_dataset

pytestmark = [
    pytest.mark.spark,
    pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs a Java runtime (none on PATH)"),
]


@pytest.fixture(scope="module")
def spark_con():
    pytest.importorskip("pyspark", reason="install churnml[spark] for the Spark engine")
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]").appName("churnml-tests")
             .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false")
             .config("spark.sql.shuffle.partitions", "4").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    yield connect("pyspark", spark=spark)
    spark.stop()


def _both(cfg_path, spark_con, as_of, **kw):
    cfg = load_dataset_config(cfg_path)
    duck, _ = build_snapshot(open_dataset(cfg), as_of, **kw)
    spark, _ = build_snapshot(open_dataset(cfg, con=spark_con), as_of, **kw)
    return duck.to_pandas(), spark.to_pandas()


def test_parity_on_hand_built_log(tmp_path, spark_con):
    cfg = write_dataset(tmp_path, TINY_EVENTS, TINY_USERS, TINY_CAMPAIGNS, fmt="parquet",
                        observed_until="2024-01-12", response_window_days=2, horizon_days=3)
    duck, spark = _both(cfg, spark_con, "2024-01-06", labels=True)
    assert len(duck) == 3
    pd.testing.assert_frame_equal(duck, spark, check_dtype=False)


def test_parity_on_simulated_log(tmp_path, spark_con):
    from churnml.jobs import simulate_job
    from churnml.simulator import SimulationConfig

    _, cfg_path = simulate_job(SimulationConfig(n_users=600, days=70, seed=3), tmp_path, truth=False)
    cfg = load_dataset_config(cfg_path)
    as_of = cfg.snapshot_instants()[-1]
    duck, spark = _both(cfg_path, spark_con, as_of, labels=True)
    assert len(duck) > 100 and duck["churned"].between(0, 1).all()
    pd.testing.assert_frame_equal(duck, spark, check_dtype=False, rtol=1e-12)


@pytest.mark.parametrize("churn", [{"definition": "subscription", "grace_days": 3},
                                   {"definition": "event", "events": ["cancel"]}])
def test_parity_with_subscriptions_and_churn_definitions(tmp_path, spark_con, churn):
    from test_subscriptions import EVENTS, SUBS, USERS, _row

    # B cancels on Mar 5 (event churn); E's subscription ends on Mar 10 (subscription churn).
    events = EVENTS + [{"user_id": "B", "ts": "2024-03-05T00:00:00Z", "event": "cancel"}]
    subs = SUBS + [_row("E", "2024-02-01T00:00:00Z", "2024-03-10T00:00:00Z")]
    cfg = write_dataset(tmp_path, events, USERS, subscriptions=subs, fmt="parquet", observed_until="2024-04-01",
                        horizon_days=14, churn=churn)
    duck, spark = _both(cfg, spark_con, "2024-03-01", labels=True)
    assert len(duck) >= 5 and duck["churned"].sum() == 1
    pd.testing.assert_frame_equal(duck, spark, check_dtype=False, rtol=1e-12)


def test_stacked_parity_and_distinct_counts_by_hand(tmp_path, spark_con):
    # Several snapshots take the shared path (one bit mask per event for distinct counts, active dates
    # computed once per user); Spark must give the same table, and the counts are worked out by hand.
    import datetime as dt

    from churnml.features import build_training_set

    cfg = write_dataset(tmp_path, TINY_EVENTS, TINY_USERS, fmt="parquet", observed_until="2024-01-16",
                        horizon_days=3, distinct_counts=[{"name": "items_all", "column": "item_id"},
                                                         {"name": "items_3d", "column": "item_id", "window_days": 3}])
    instants = [dt.datetime(2024, 1, d) for d in (4, 6, 10)]
    duck = build_training_set(open_dataset(load_dataset_config(cfg)), instants)[0].to_pandas()
    spark = build_training_set(open_dataset(load_dataset_config(cfg), con=spark_con), instants)[0].to_pandas()
    pd.testing.assert_frame_equal(duck, spark, check_dtype=False, rtol=1e-12)
    got = {(r.user_id, r.as_of.day): (r.items_all, r.items_3d) for r in duck.itertuples()}
    # u1: items 1, 1 (Jan 1), 2 (Jan 3); u2: item 3 on Jan 2 and Jan 9; u3: item 4 on Jan 5 and at Jan 6 00:00.
    assert got[("u1", 4)] == (2, 2) and got[("u1", 6)] == (2, 1) and got[("u1", 10)] == (2, 0)
    assert got[("u2", 4)] == (1, 1) and got[("u2", 10)] == (1, 1)
    assert got[("u3", 6)] == (1, 1) and got[("u3", 10)] == (1, 0)
