"""The drivers report: what drives churn risk and recall response, for operators, in one HTML file.

:func:`drivers_job` explains the registered models on the current data:

* **churn drivers** (observational): mean |SHAP| ranking, beeswarm, dependence
  curves of the top behaviours, the interaction of the top behaviour pair,
  and why anomalous signup cohorts (from the retention analysis) churn more;
* **recall-response drivers** (learned from randomised campaigns): which users
  the uplift model expects to respond to a message, explained through a
  LightGBM surrogate of the predicted uplift whose fidelity (R²) is stated;
* a glossary of every feature shown, the model versions and the data window.

The report says plainly that churn drivers are associations: a behaviour that
goes with staying is a candidate lever to test, not proof.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from churnml import explain, report, retention
from churnml.config import DatasetConfig, Settings, load_dataset_config
from churnml.data import Dataset, open_dataset
from churnml.features import build_snapshot
from churnml.io import write_text

__all__ = ["DriversResult", "drivers_job", "uplift_surrogate"]

SAMPLE = 20_000  # users explained for the report: exact TreeSHAP costs ~2 ms each on 2 cores
TOP = 15
PAIR_FAMILIES = ("onboarding", "distinct", "frequency")


@dataclass(frozen=True)
class DriversResult:
    """What the drivers report found, and where it is."""

    report_path: Path
    headlines: list[str]
    churn_drivers: pd.DataFrame
    uplift_drivers: pd.DataFrame | None
    cohorts: list[dict]
    versions: dict
    channel_drivers: dict[str, pd.DataFrame] | None = None


def _sample(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    return df if len(df) <= n else df.sample(n=n, random_state=seed).sort_index()


def _direction(dep: pd.DataFrame) -> str:
    """'higher' if the contribution rises with the feature's value, else 'lower' (Spearman over bins)."""
    d = dep.dropna(subset=["value_mean", "shap_mean"])
    if len(d) < 2:
        return "flat"
    rho = d["value_mean"].rank().corr(d["shap_mean"].rank())
    return "flat" if pd.isna(rho) or abs(rho) < 0.3 else ("higher" if rho > 0 else "lower")


def _describe(name: str, glossary: dict) -> str:
    return explain.one_day((glossary.get(name) or {}).get("description") or name)


def _pair(ranked: list[str], glossary: dict, X: pd.DataFrame) -> tuple[str, str] | None:
    """The top two behaviour features (not recency or tenure) that are numeric, for the interaction view."""
    cands = [f for f in ranked if (glossary.get(f) or {}).get("family") in PAIR_FAMILIES
             and pd.api.types.is_numeric_dtype(X[f])]
    return (cands[0], cands[1]) if len(cands) >= 2 else None


def uplift_surrogate(uplift_model, frame: pd.DataFrame, *, seed: int = 0, threads: int | None = None,
                     column: str = "uplift"):
    """Fit a LightGBM regressor to the uplift model's predictions; returns ``(booster, X, r2)``.

    Meta-learners combine several models, so their uplift has no single tree
    ensemble to explain. A surrogate tree model of the predicted uplift does;
    its R² on held-out rows says how faithfully it stands in. ``column`` picks
    the prediction explained: ``uplift``, or one channel's ``uplift_<channel>``.
    """
    X = uplift_model.matrix(frame)
    target = uplift_model.predict_frame(frame)[column].to_numpy()
    rng = np.random.default_rng(seed)
    hold = rng.random(len(X)) < 0.2
    params = {"objective": "regression", "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 50,
              "verbosity": -1, "deterministic": True, "force_row_wise": True, "seed": seed,
              **({"num_threads": threads} if threads else {})}
    booster = lgb.train(params, lgb.Dataset(X[~hold], target[~hold]), num_boost_round=300)
    pred = booster.predict(X[hold])
    r2 = 1 - np.sum((target[hold] - pred) ** 2) / max(np.sum((target[hold] - target[hold].mean()) ** 2), 1e-12)
    return booster, X, float(r2)


def _cohort_sections(ds: Dataset, churn, anomalies: pd.DataFrame, glossary: dict, seed: int) -> list[dict]:
    """Mean SHAP difference between each flagged (lower) cohort group and the cohorts just before it."""
    flagged = anomalies[anomalies["flagged"] & (anomalies["direction"] == "lower")]
    if flagged.empty:
        return []
    days = sorted({pd.Timestamp(c).date() for c in flagged["cohort"]})
    groups, cur = [], [days[0]]
    for d in days[1:]:
        if (d - cur[-1]).days <= 1:
            cur.append(d)
        else:
            groups.append(cur)
            cur = [d]
    groups.append(cur)
    onboarding = ds.config.onboarding_days
    snaps = ds.config.snapshot_instants()
    sections = []
    for g in groups[:3]:
        first, last = g[0], g[-1]
        ready = [s for s in snaps if s.date() >= last + dt.timedelta(days=onboarding)]
        if not ready:
            continue
        as_of = ready[0]
        table, _ = build_snapshot(ds, as_of, event_types=churn.metadata.get("event_types"))
        df = table.to_pandas()
        signup = (pd.Timestamp(as_of) - pd.to_timedelta(df["tenure_days"], unit="D")).dt.date
        in_cohort = signup.between(first, last).to_numpy()
        base = signup.between(first - dt.timedelta(days=14), first - dt.timedelta(days=1)).to_numpy()
        if in_cohort.sum() < 20 or base.sum() < 20:
            continue
        keep = in_cohort | base
        X = churn.matrix(df[keep])
        contrib, _ = explain.contributions(churn.booster, X)
        table_ = explain.cohort_explanation(contrib, churn.feature_names, in_cohort[keep], base[keep], X=X)
        top = table_.head(6).copy()
        top["description"] = [_describe(f, glossary) for f in top["feature"]]
        risk_in = churn.predict_proba(df[in_cohort]).mean()
        risk_base = churn.predict_proba(df[base]).mean()
        label = str(first) if first == last else f"{first} to {last}"
        sections.append({"cohort": label, "as_of": str(as_of.date()), "n": int(in_cohort.sum()),
                         "n_base": int(base.sum()), "risk": risk_in, "risk_base": risk_base,
                         "rows": report_records(top)})
    return sections


def report_records(df: pd.DataFrame) -> list[dict]:
    from churnml.jobs import _records

    return _records(df)


def drivers_job(
    dataset: DatasetConfig | str | Path,
    out: str | Path,
    *,
    churn_model: str = "churn-risk",
    uplift_model: str | None = "recall-uplift",
    alias: str = "champion",
    ds: Dataset | None = None,
    anomalies: pd.DataFrame | None = None,
    settings: Settings | None = None,
    seed: int = 0,
    log: Callable[[str], None] = lambda _: None,
    progress: Callable[[int, int, str], None] = lambda done, total, what: None,
) -> DriversResult:
    """Explain the registered models on the data and write the drivers report (HTML, self-contained).

    Parameters
    ----------
    dataset : DatasetConfig or path
    out : path
        The HTML file to write (atomically).
    churn_model, uplift_model, alias : str
        Registered models to explain (``uplift_model=None`` skips the response section).
    ds : Dataset, optional
        An already validated dataset.
    anomalies : DataFrame, optional
        :func:`churnml.retention.anomalous_cohorts` output; computed if omitted.
    log : callable, optional
        Receives notes for the user.
    progress : callable, optional
        ``progress(done, total, what)`` as each step starts: ``what`` is about
        to run, ``done`` of ``total`` steps are finished.

    Returns
    -------
    DriversResult
    """
    from churnml import tracking

    total = 7 if uplift_model else 6
    cfg = dataset if isinstance(dataset, DatasetConfig) else load_dataset_config(dataset)
    progress(0, total, "checking the data")
    ds = ds or open_dataset(cfg)
    progress(1, total, f"loading {churn_model}@{alias}")
    churn, ref = tracking.load_model(churn_model, alias, settings)
    versions = {churn_model: ref.version}
    glossary = dict(churn.metadata.get("glossary", {}))
    h = dt.timedelta(days=cfg.horizon_days)
    snaps = [s for s in cfg.snapshot_instants() if s <= ds.observed_until] or [ds.observed_until - h]
    as_of = max(snaps)
    progress(2, total, f"features as of {as_of.date()}")
    table, _ = build_snapshot(ds, as_of, event_types=churn.metadata.get("event_types"))
    frame = _sample(table.to_pandas(), SAMPLE, seed)
    log(f"explaining churn risk for {len(frame):,} users as of {as_of.date()}")
    progress(3, total, f"SHAP values of {len(frame):,} users, drivers and plots")
    X = churn.matrix(frame)
    contrib, base_value = explain.contributions(churn.booster, X)
    ranking = explain.global_importance(contrib, churn.feature_names).head(TOP).copy()
    ranked = list(ranking["feature"])
    deps, directions = [], {}
    for f in ranked:
        if not pd.api.types.is_numeric_dtype(X[f]):
            continue
        dep = explain.dependence(contrib, X, f, bins=12, feature_names=churn.feature_names)
        directions[f] = _direction(dep)
        if len(deps) < 6:
            deps.append({"feature": f, "description": _describe(f, glossary),
                         "plot": report.figure_uri(explain.plot_dependence(dep, feature=f))})
    ranking["description"] = [_describe(f, glossary) for f in ranked]
    ranking["family"] = [(glossary.get(f) or {}).get("family", "") for f in ranked]
    ranking["risk_with_more"] = [directions.get(f, "") for f in ranked]
    beeswarm = report.figure_uri(explain.plot_beeswarm(contrib, X, base_value=base_value,
                                                       feature_names=churn.feature_names, max_display=TOP))
    interaction = None
    pair = _pair(list(explain.global_importance(contrib, churn.feature_names)["feature"]), glossary, X)
    if pair:
        it = explain.interaction_table(churn.booster, X, pair[0], pair[1], bins=4, contrib=contrib,
                                       base_value=base_value)
        interaction = {"a": pair[0], "b": pair[1], "a_text": _describe(pair[0], glossary),
                       "b_text": _describe(pair[1], glossary),
                       "plot": report.figure_uri(explain.plot_interaction(it, value="mean_risk"))}

    progress(4, total, "signup cohorts that churn more")
    if anomalies is None:
        table_r = retention.cohort_retention(ds, period="day", days=(1, 7))
        anomalies = retention.anomalous_cohorts(table_r, days=(1, 7))
    cohorts = _cohort_sections(ds, churn, anomalies, glossary, seed)

    # --- recall response ----------------------------------------------------------------------
    uplift_rows, uplift_plot, uplift_info, channel_sections = None, None, {}, []
    if uplift_model:
        from churnml.train_uplift import uplift_frames

        progress(5, total, f"loading and explaining {uplift_model}@{alias}")
        up, uref = tracking.load_model(uplift_model, alias, settings)
        versions[uplift_model] = uref.version
        glossary |= {k: v for k, v in up.metadata.get("glossary", {}).items() if k not in glossary}
        exposures, _ = uplift_frames(ds)
        last = exposures.groupby("campaign_id")["as_of"].min().idxmax()
        camp = _sample(exposures[exposures["campaign_id"] == last], SAMPLE, seed)
        sur, Xu, r2 = uplift_surrogate(up, camp, seed=seed, threads=getattr(settings, "threads", None))
        cu, bu = explain.contributions(sur, Xu)
        urank = explain.global_importance(cu, up.feature_names).head(10).copy()
        udirs = {}
        for f in urank["feature"]:
            if pd.api.types.is_numeric_dtype(Xu[f]):
                udirs[f] = _direction(explain.dependence(cu, Xu, f, bins=10, feature_names=up.feature_names))
        urank["description"] = [_describe(f, glossary) for f in urank["feature"]]
        urank["response_with_more"] = [udirs.get(f, "") for f in urank["feature"]]
        uplift_rows = urank
        uplift_plot = report.figure_uri(explain.plot_beeswarm(cu, Xu, base_value=bu, feature_names=up.feature_names,
                                                              max_display=10))
        pred = up.predict_frame(camp)
        uplift_info = {"campaign": last, "n": len(camp), "r2": r2, "learner": up.metadata.get("selected", ""),
                       "segments": pred["segment"].value_counts().to_dict(),
                       "mean_uplift": float(pred["uplift"].mean())}
        if up.channels is not None:
            log(f"explaining the uplift of each channel ({', '.join(up.channels)}) on {len(camp):,} exposures")
            channel_sections = _channel_sections(up, camp, pred, glossary, seed, getattr(settings, "threads", None))

    progress(total - 1, total, "writing the report")
    headlines = _headlines(ranking, directions, cohorts, uplift_rows, uplift_info) + _channel_headlines(channel_sections)
    shown = set(ranked) | ({f for c in cohorts for f in (r["feature"] for r in c["rows"])}) | (
        set(uplift_rows["feature"]) if uplift_rows is not None else set()) | {
        r["feature"] for s in channel_sections for r in s["rows"]}
    gloss = [{"feature": f, "description": _describe(f, glossary), "family": (glossary.get(f) or {}).get("family", ""),
              "window_days": (glossary.get(f) or {}).get("window_days")} for f in sorted(shown)]
    html = report.render(
        "drivers.html.j2", dataset=cfg.name, as_of=str(as_of.date()), versions=versions,
        data_to=ds.observed_until.isoformat(), n_users=len(frame), headlines=headlines,
        ranking=report_records(ranking), beeswarm=beeswarm, dependence=deps, interaction=interaction,
        cohorts=cohorts, uplift=report_records(uplift_rows) if uplift_rows is not None else None,
        uplift_plot=uplift_plot, uplift_info=uplift_info, channels=channel_sections, glossary=gloss,
        trained=churn.metadata.get("split", {}).get("train", []),
    )
    path = write_text(html, out)
    try:
        from churnml import tracking as _t

        _t.log_report(path, ref)
    except Exception as exc:  # noqa: BLE001 - the report stands without the MLflow copy
        log(f"note: could not attach the report to the model's MLflow run ({exc.__class__.__name__})")
    progress(total, total, "drivers report written")
    return DriversResult(Path(out), headlines, ranking, uplift_rows, cohorts, versions,
                         {s["channel"]: pd.DataFrame(s["rows"]) for s in channel_sections} or None)


def _channel_sections(up, camp: pd.DataFrame, pred: pd.DataFrame, glossary: dict, seed: int,
                      threads: int | None) -> list[dict]:
    """Per channel: what makes a user respond to it (SHAP of a surrogate of that channel's predicted uplift)."""
    from churnml.models.uplift_store import uplift_column

    sections = []
    for c in up.channels:
        col = uplift_column(c)
        sur, X, r2 = uplift_surrogate(up, camp, seed=seed, threads=threads, column=col)
        contrib, base = explain.contributions(sur, X)
        rank = explain.global_importance(contrib, up.feature_names).head(6).copy()
        dirs = {f: _direction(explain.dependence(contrib, X, f, bins=10, feature_names=up.feature_names))
                for f in rank["feature"] if pd.api.types.is_numeric_dtype(X[f])}
        rank["description"] = [_describe(f, glossary) for f in rank["feature"]]
        rank["response_with_more"] = [dirs.get(f, "") for f in rank["feature"]]
        rank["top_levels"] = [_top_levels(contrib, X, f, up.feature_names) for f in rank["feature"]]
        plot = report.figure_uri(explain.plot_beeswarm(contrib, X, base_value=base, feature_names=up.feature_names,
                                                       max_display=6))
        sections.append({"channel": c, "r2": r2, "rows": report_records(rank), "plot": plot,
                         "mean_uplift": float(pred[col].mean()),
                         "best_share": float((pred["best_channel"] == c).mean()),
                         "put_off_share": float((pred[col] < -up.segment_threshold).mean())})
    return sections


def _top_levels(contrib: np.ndarray, X: pd.DataFrame, feature: str, names: list[str]) -> str:
    """For a categorical feature, the level with the highest mean contribution (who responds most)."""
    if pd.api.types.is_numeric_dtype(X[feature]):
        return ""
    j = names.index(feature)
    means = pd.Series(contrib[:, j]).groupby(X[feature].astype(str).to_numpy()).mean()
    return f"{means.idxmax()} most, {means.idxmin()} least"


def _channel_headlines(sections: list[dict]) -> list[str]:
    lines = []
    for s in sections:
        if not s["rows"]:
            continue
        top = s["rows"][0]
        how = top["top_levels"] or (f"more of it, {'more' if top['response_with_more'] == 'higher' else 'less'} "
                                    "response" if top["response_with_more"] in ("higher", "lower") else "")
        lines.append(f"Channel {s['channel']}: “{top['description']}” matters most for who responds"
                     + (f" ({how})" if how else "") + f"; best channel for {s['best_share']:.0%} of the users, "
                     f"puts off {s['put_off_share']:.0%}.")
    return lines


def _headlines(ranking, directions, cohorts, uplift_rows, info) -> list[str]:
    lines = []
    beh = [r for _, r in ranking.iterrows() if r["family"] not in ("recency", "tenure", "attribute")]
    rec = [r for _, r in ranking.iterrows() if r["family"] == "recency"]
    if rec:
        lines.append(f"Recency leads churn risk: “{rec[0]['description']}” is among the strongest signals; "
                     "users who have gone quiet are the ones about to leave.")
    for r in beh[:3]:
        d = directions.get(r["feature"])
        if d in ("higher", "lower"):
            verb = "less" if d == "lower" else "more"
            lines.append(f"Users with more “{r['description']}” are {verb} likely to churn "
                         "(an association in the data, not proof: test it before acting).")
    for c in cohorts[:2]:
        top = c["rows"][0] if c["rows"] else None
        if top:
            lines.append(f"Signup cohort {c['cohort']} carries {c['risk']:.0%} mean churn risk against "
                         f"{c['risk_base']:.0%} for the cohorts before it; the biggest difference is "
                         f"“{top['description']}”.")
    if uplift_rows is not None and len(uplift_rows):
        top = uplift_rows.iloc[0]
        segs = info.get("segments", {})
        lines.append(f"Recall response (learned from randomised campaigns): “{top['description']}” matters most "
                     f"for who comes back because of a message; in campaign {info['campaign']} the model sees "
                     f"{segs.get('persuadable', 0):,} persuadable users and {segs.get('sleeping_dog', 0):,} "
                     "sleeping dogs (never contact those).")
    return lines
