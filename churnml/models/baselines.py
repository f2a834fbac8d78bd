"""Baselines every churn model is reported beside: recency only, logistic regression, the oracle.

Each baseline learns only from the rows it is given to fit on (the same
labelled history as the model it is compared with) and scores other rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from churnml.features import LABEL
from churnml.models.churn import Calibrator, FeatureSpec, to_matrix

__all__ = ["logistic_baseline", "oracle_scores", "read_truth", "recency_baseline"]

RECENCY = "days_since_last_activity"


def _sample(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    return df if n is None or len(df) <= n else df.sample(n=n, random_state=seed).sort_index()


def logistic_baseline(fit_rows: pd.DataFrame, score_rows: pd.DataFrame, specs: list[FeatureSpec], *,
                      seed: int = 0, max_rows: int = 200_000) -> np.ndarray:
    """Logistic regression on the model's inputs: median-imputed with missing flags, scaled, one-hot categoricals.

    Parameters
    ----------
    fit_rows, score_rows : DataFrame
        Labelled rows to learn from (at most ``max_rows``, a seeded sample) and rows to score.
    specs : list of FeatureSpec
        The inputs, as the model being compared uses them.

    Returns
    -------
    ndarray
        Churn probabilities of ``score_rows``.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    num = [s.name for s in specs if s.kind == "numeric"]
    cat = [s.name for s in specs if s.kind == "categorical"]
    prep = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), num),
        ("cat", OneHotEncoder(handle_unknown="ignore"), cat),
    ])
    lr = make_pipeline(prep, LogisticRegression(C=1.0, max_iter=300))
    rows = _sample(fit_rows, max_rows, seed)

    def matrix(df):
        m = to_matrix(df, specs, where="baseline data")
        for c in cat:
            m[c] = m[c].astype("object").where(m[c].notna(), "missing")
        return m

    lr.fit(matrix(rows), rows[LABEL].to_numpy())
    return lr.predict_proba(matrix(score_rows))[:, 1]


def recency_baseline(fit_rows: pd.DataFrame, score_rows: pd.DataFrame) -> np.ndarray:
    """Days since last activity, made a probability by isotonic regression on ``fit_rows``."""
    def days(df):
        return df[RECENCY].fillna(df[RECENCY].max()).to_numpy()

    cal = Calibrator.fit(days(fit_rows), fit_rows[LABEL].to_numpy(), "isotonic")
    d = days(score_rows)
    # Tiny tie-breaker so the ranking inside a flat isotonic step still follows recency (stays in [0, 1]).
    return cal.apply(d) * (1 - 1e-6) + 1e-7 * d / (np.nanmax(d) + 1)


def read_truth(path: str | Path) -> pd.DataFrame:
    """The simulator's ``truth/churn.parquet``: ``as_of``, ``user_id``, ``p_churn``, ``p_churn_observed``."""
    t = pd.read_parquet(path, columns=["as_of", "user_id", "p_churn", "p_churn_observed"])
    t["as_of"] = pd.to_datetime(t["as_of"], utc=True)
    return t


def oracle_scores(rows: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """The simulator's true churn probabilities for ``rows`` (same index; NaN where it has none).

    ``oracle`` is ``p_churn_observed``: the exact probability given the user's
    true parameters and everything observable up to ``as_of`` (the best any
    model of the event log could do). ``oracle (latent state)`` is ``p_churn``,
    which also knows whether the user has already silently lapsed, something no
    event log shows; it is an upper bound, not a target.
    """
    key = rows[["as_of", "user_id"]].assign(as_of=lambda d: pd.to_datetime(d["as_of"], utc=True))
    both = key.merge(truth, on=["as_of", "user_id"], how="left").set_axis(rows.index)
    return both.rename(columns={"p_churn_observed": "oracle", "p_churn": "oracle (latent state)"})[
        ["oracle", "oracle (latent state)"]]
