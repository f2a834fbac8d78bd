"""Scoring at cluster scale: MLflow's spark_udf over the registered churnml models, on a local Spark session."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pandas as pd
import pytest

from churnml import tracking
from churnml.batch import FEATURES_FILE, score_job
from churnml.config import ScoreConfig
from churnml.scoring import Scorer

pytestmark = [
    pytest.mark.spark,
    pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs a Java runtime (none on PATH)"),
]


@pytest.fixture(scope="module")
def spark():
    pytest.importorskip("pyspark", reason="install churnml[spark] for Spark")
    from pyspark.sql import SparkSession

    # Python workers must run this interpreter (the one with churnml, pandas and LightGBM).
    os.environ["PYSPARK_PYTHON"] = sys.executable
    s = (SparkSession.builder.master("local[2]").appName("churnml-udf").config("spark.ui.enabled", "false")
         .config("spark.sql.session.timeZone", "UTC").config("spark.sql.shuffle.partitions", "2").getOrCreate())
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()


def test_spark_udf_scores_equal_the_scorer(trained_store, spark, tmp_path):
    settings = trained_store["settings"]
    day = score_job(ScoreConfig(dataset=trained_store["config"], output=tmp_path), "2024-04-30", settings=settings)
    features = pd.read_parquet(day.folder / FEATURES_FILE).head(400)
    expected = Scorer.from_registry(settings=settings).score(features, reasons=0)

    tracking.configure(settings)
    churn = tracking.resolve("churn-risk", "champion", settings)
    uplift = tracking.resolve("recall-uplift", "champion", settings)
    sdf = spark.createDataFrame(features.drop(columns=["as_of"]))
    cols = [c for c in sdf.columns if c != "user_id"]
    churn_udf = tracking.spark_udf(spark, churn, "double")
    uplift_udf = tracking.spark_udf(spark, uplift, "uplift double, p_control double, p_treated double, segment string")
    from pyspark.sql import functions as F

    got = (sdf.withColumn("p_churn", churn_udf(F.struct(*cols)))
           .withColumn("u", uplift_udf(F.struct(*cols)))
           .select("user_id", "p_churn", "u.uplift", "u.segment").toPandas())
    got = got.set_index("user_id").loc[expected["user_id"]]
    np.testing.assert_allclose(got["p_churn"].to_numpy(), expected["p_churn"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(got["uplift"].to_numpy(), expected["uplift"].to_numpy(), rtol=1e-9, atol=1e-12)
    assert list(got["segment"]) == list(expected["segment"])
