"""Job functions: each reads its inputs, calls the library, writes outputs atomically.

The CLI, the nightly scheduler and notebooks all go through these, so what a
data scientist runs by hand is what production runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import yaml

from churnml.config import DatasetConfig, load_dataset_config, utc
from churnml.data import Dataset, open_dataset
from churnml.exceptions import ContractError, DataProblem
from churnml.features import CHURN_TS, LABEL, FeatureSet, build_snapshot, build_training_set, churn_definition
from churnml.features import label_window_days
from churnml.io import write_json, write_parquet, write_text
from churnml.simulator import EVENT_TYPES

__all__ = [
    "FeatureJobResult",
    "RetentionJobResult",
    "SIMULATOR_EVENT_TYPES",
    "build_features_job",
    "compare_with_truth",
    "retention_job",
    "simulate_job",
    "simulation_dataset_config",
    "simulation_scoring_config",
]

#: Event types the embedded simulator emits. Only the simulator's own dataset
#: config names them; the pipeline reads event types from configuration.
SIMULATOR_EVENT_TYPES = list(EVENT_TYPES)


def simulation_dataset_config(sim, data_dir: str | Path = ".", *, horizon_days: int = 14,
                              eligibility_days: int = 30, every_days: int = 7,
                              horizons_days: list[int] | None = None) -> dict:
    """The dataset config (as a dict) that fits a simulation's output.

    Snapshots run weekly from day 35 (so users have history) to the last day
    whose label window still fits in the simulated period. With the
    subscription layer on, the config reads ``subscriptions.parquet`` and
    uses the ``subscription`` churn definition (its label window adds the
    grace). ``horizons_days`` adds multi-horizon churn probabilities.
    """
    start = utc(sim.start)
    end = start + dt.timedelta(days=sim.days)
    first = start + dt.timedelta(days=35 if sim.days >= 70 else max(sim.days // 4, 1))
    subs = getattr(sim, "subscriptions", None)
    last = end - dt.timedelta(days=horizon_days + (subs.grace_days if subs is not None else 0))
    data_dir = Path(data_dir)
    sources = {
        "events": {"path": str(data_dir / "events.parquet")},
        "users": {"path": str(data_dir / "users.parquet")},
        "campaigns": {"path": str(data_dir / "campaigns.parquet")},
    }
    extra = {}
    if subs is not None:
        sources["subscriptions"] = {"path": str(data_dir / "subscriptions.parquet")}
        extra = {"churn": {"definition": "subscription", "grace_days": subs.grace_days}}
    return {
        "name": "music-sim",
        "sources": sources,
        "event_types": SIMULATOR_EVENT_TYPES,
        "activity_events": None,
        "eligibility_days": eligibility_days,
        "horizon_days": horizon_days,
        "snapshots": {"start": first.date().isoformat(), "end": last.date().isoformat(),
                      "every_days": every_days},
        "feature_windows_days": [1, 7, 14, 30],
        "onboarding_days": 7,
        "response_window_days": sim.response_window_days,
        "distinct_counts": [
            {"name": "communities_joined", "column": "community_id", "events": ["community_join"],
             "description": "distinct communities joined so far"},
            {"name": "distinct_items_30d", "column": "item_id", "window_days": 30,
             "description": "distinct songs played, liked or saved in the last 30 days"},
        ],
        "observed_until": end.isoformat(),
        **extra,
        **({"horizons_days": list(horizons_days)} if horizons_days else {}),
    }


def simulate_job(sim, out_dir: str | Path, *, truth: bool = True,
                 progress: Callable[[int, int], None] | None = None, horizon_days: int = 14,
                 horizons_days: list[int] | None = None):
    """Simulate the music app into ``out_dir`` and write ``dataset.yaml`` and ``scoring.yaml`` beside the data.

    Ground truth is computed for the snapshots of that dataset config, with
    its ``horizon_days``.

    Returns
    -------
    result : churnml.simulator.SimulationResult
    config_path : Path
    """
    from churnml import simulator

    out_dir = Path(out_dir)
    raw = simulation_dataset_config(sim, ".", horizon_days=horizon_days, horizons_days=horizons_days)
    cfg_path = out_dir / "dataset.yaml"
    spec = None
    if truth:
        ds_cfg = DatasetConfig.model_validate(raw)
        spec = simulator.TruthSpec(
            snapshots=ds_cfg.snapshot_instants(),
            horizon_days=ds_cfg.horizon_days,
            eligibility_days=ds_cfg.eligibility_days,
        )
    result = simulator.simulate(sim, out_dir, truth=spec, progress=progress)
    if not result.n_exposures:
        # Too few users for any recall campaign to reach someone: an empty campaigns table would
        # fail every later command's contract check, so the config leaves it out.
        raw["sources"].pop("campaigns", None)
        (out_dir / "campaigns.parquet").unlink(missing_ok=True)
    if result.subscriptions_path is not None and not result.n_subscriptions:
        # Likewise for a subscription layer nobody subscribed in: the config falls back to inactivity.
        raw["sources"].pop("subscriptions", None)
        raw.pop("churn", None)
        result.subscriptions_path.unlink(missing_ok=True)
    header = (
        f"# Dataset config for a simulated music app (seed {sim.seed}, {sim.n_users:,} users, "
        f"{sim.days} days).\n# Written by `churnml simulate`; paths are relative to this file.\n"
    )
    if "subscriptions" in raw["sources"]:
        header += ("# Subscription layer on: churn is a subscription cancelled at a renewal; the exact truth is "
                   "truth/subscription_churn.parquet.\n")
    write_text(header + yaml.safe_dump(raw, sort_keys=False), cfg_path)
    write_text("# Nightly scoring config for the simulated app: churnml score -c scoring.yaml --as-of <date>\n"
               "# Written by `churnml simulate`: the channels its campaigns used, with what a message costs.\n"
               + yaml.safe_dump(simulation_scoring_config(sim), sort_keys=False), out_dir / "scoring.yaml")
    return result, cfg_path


def simulation_scoring_config(sim) -> dict:
    """The scoring config (as a dict) of a simulated app: its channels and their costs, and a budget.

    One channel: that channel's name on every row (a single-channel list).
    Several: each channel's cost, a cap on the dearest and a money budget, so
    that the list has to choose.
    """
    from churnml.simulator.channels import COSTS

    doc = {"dataset": "dataset.yaml", "output": "../lists", "eligibility": {"lapsed_min_days": 7},
           "budget": {"max_contacts": 1000}}
    if len(sim.campaign_channels) == 1:
        return doc | {"channel": sim.campaign_channels[0]}
    dearest = max(sim.campaign_channels, key=lambda c: COSTS[c])
    channels = {c: {"cost": COSTS[c], **({"max_contacts": 300} if c == dearest else {})}
                for c in sim.campaign_channels}
    return doc | {"budget": {"max_contacts": 1000, "max_cost": 15.0}, "channels": channels}


@dataclass(frozen=True)
class FeatureJobResult:
    """What a feature build wrote and a summary of it."""

    table_path: Path
    schema_path: Path
    n_rows: int
    n_features: int
    snapshots: list[dt.datetime]
    rows_per_snapshot: dict[str, int]
    churn_rate: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _schema_doc(ds: Dataset, fs: FeatureSet, table: pa.Table, snapshots, labelled: bool) -> dict:
    described = {f.name: f for f in fs.features}
    definition = churn_definition(ds.config)
    cols = []
    for name in table.column_names:
        f = described.get(name)
        entry = {"name": name, "dtype": str(table.schema.field(name).type)}
        if f is not None:
            entry.update(description=f.description, family=f.family, window_days=f.window_days)
        elif name == "tenure_days":
            entry.update(description="days since signup", family="tenure", window_days=None)
        elif name in fs.attributes:
            entry.update(description=f"user attribute '{name}' from the users table", family="attribute",
                         window_days=None)
        elif name == LABEL:
            entry.update(description=definition.describe(), family="label", window_days=ds.config.horizon_days)
        elif name == CHURN_TS:
            entry.update(description="instant of the churn event (UTC), empty if not churned; not a feature",
                         family="label", window_days=ds.config.horizon_days)
        else:
            entry.update(description={"user_id": "user id", "as_of": "snapshot instant (UTC)"}[name],
                         family="id", window_days=None)
        cols.append(entry)
    return {
        "dataset": ds.config.name,
        "snapshots": [s.isoformat() for s in sorted(snapshots)],
        "label": LABEL if labelled else None,
        "horizon_days": ds.config.horizon_days,
        "churn_definition": definition.name,
        "label_window_days": label_window_days(ds.config),
        "eligibility_days": ds.config.eligibility_days,
        "signup_inferred_from_first_event": ds.signup_inferred,
        "feature_columns": fs.columns,
        "columns": cols,
    }


def build_features_job(
    config: DatasetConfig | str | Path,
    out: str | Path,
    *,
    as_of: Sequence[dt.datetime | str] | None = None,
    labels: bool | None = None,
    dataset: Dataset | None = None,
    progress: Callable[[dt.datetime], None] | None = None,
) -> FeatureJobResult:
    """Build features (and labels) for snapshots and write Parquet plus a schema file.

    Parameters
    ----------
    config : DatasetConfig or path
    out : path
        The Parquet file to write; the schema goes to ``<out stem>.schema.json``.
    as_of : sequence of datetime, optional
        Snapshot instants; the config's snapshots if omitted.
    labels : bool, optional
        Add the churn label. Defaults to True for the config's snapshots (a
        training set) and False for explicit ``as_of`` (scoring features).
    dataset : Dataset, optional
        An already validated dataset (skips reading and validation).
    progress : callable, optional
        Called with each snapshot instant once built.

    Returns
    -------
    FeatureJobResult

    Raises
    ------
    ContractError, ConfigError
        On bad input; nothing is written.
    """
    cfg = config if isinstance(config, DatasetConfig) else load_dataset_config(config)
    ds = dataset or open_dataset(cfg)
    instants = [ds.clock.instant(a) for a in as_of] if as_of else cfg.snapshot_instants()
    if not instants:
        from churnml.exceptions import ConfigError

        raise ConfigError("no snapshots: give --as-of or configure `snapshots` in the dataset config")
    late = [a for a in instants if a > ds.observed_until]
    if late:
        raise ContractError([DataProblem(
            "snapshots", None, len(late),
            f"as_of {late[0].isoformat()} is after the data ends ({ds.observed_until.isoformat()}); "
            "no user would be active before it")])
    labels = (not as_of) if labels is None else labels
    # Fixed once so every snapshot has the same columns (and the schema file says which).
    types = ds.event_types(before=max(instants))
    if labels:
        table, fs = build_training_set(ds, instants, event_types=types, progress=progress)
    else:
        parts = []
        for s in sorted(instants):
            t, fs = build_snapshot(ds, s, event_types=types)
            parts.append(t)
            if progress:
                progress(s)
        table = pa.concat_tables(parts)
    out = Path(out)
    schema_path = out.with_suffix("").with_suffix(".schema.json")
    doc = _schema_doc(ds, fs, table, instants, labels)
    doc["event_types"] = types
    doc["content_sha256"] = hashlib.sha256(
        json.dumps([c["name"] + c["dtype"] for c in doc["columns"]]).encode()
    ).hexdigest()
    write_parquet(table, out)
    write_json(doc, schema_path)
    counts = table.group_by("as_of").aggregate([("user_id", "count")])
    per = {a.date().isoformat(): n for a, n in zip(counts["as_of"].to_pylist(), counts["user_id_count"].to_pylist(), strict=True)}
    rates = {}
    if labels:
        agg = table.group_by("as_of").aggregate([(LABEL, "mean")])
        rates = {a.date().isoformat(): float(r) for a, r in zip(agg["as_of"].to_pylist(), agg[f"{LABEL}_mean"].to_pylist(), strict=True)}
    return FeatureJobResult(
        table_path=out, schema_path=schema_path, n_rows=table.num_rows, n_features=len(fs.columns),
        snapshots=sorted(instants), rows_per_snapshot=dict(sorted(per.items())),
        churn_rate=dict(sorted(rates.items())), warnings=list(ds.warnings),
    )



def compare_with_truth(training_set: str | Path, truth: str | Path) -> dict:
    """Compare a simulated training set's churn labels with the simulator's true probabilities.

    Returns the number of matched rows, the observed label rate, the mean true
    probability, their difference in standard errors (``z``) and the number of
    eligible rows the simulator has no truth for (0 when eligibility agrees).
    """
    import numpy as np
    import pandas as pd

    train = pd.read_parquet(training_set, columns=["as_of", "user_id", LABEL])
    true = pd.read_parquet(truth, columns=["as_of", "user_id", "p_churn"])
    both = train.merge(true, on=["as_of", "user_id"], how="left")
    matched = both.dropna(subset=["p_churn"])
    p = matched["p_churn"].to_numpy()
    se = float(np.sqrt((p * (1 - p)).sum()) / max(len(p), 1))
    observed, expected = float(matched[LABEL].mean()), float(p.mean())
    return {"rows": len(matched), "observed": observed, "expected": expected,
            "z": (observed - expected) / se if se else 0.0, "unmatched": int(len(both) - len(matched))}


@dataclass(frozen=True)
class RetentionJobResult:
    """What the retention job wrote, and the headlines it printed."""

    report_path: Path
    tables: dict[str, Path]
    headlines: list[str]
    notes: list[str]


def _headlines(table, headline, series, gap_summary, readout, days, horizon_days=None) -> list[str]:
    import pandas as pd

    out = []
    pooled = table[table["day"].isin(days)].groupby("day")[["eligible", "retained_nday"]].sum()
    rates = {d: pooled.loc[d, "retained_nday"] / pooled.loc[d, "eligible"]
             for d in days if d in pooled.index and pooled.loc[d, "eligible"] > 0}
    if rates:
        parts = ", ".join(f"D{d} {r:.0%}" for d, r in rates.items())
        out.append(f"Of all users who signed up, these shares were active on day N after signup: {parts}.")
    d1 = headline.dropna(subset=["d1"]) if "d1" in headline else pd.DataFrame()
    d1 = d1[d1["cohort_size"] >= 30] if len(d1) else d1
    if len(d1) >= 3:
        worst = d1.loc[d1["d1"].idxmin()]
        rest = d1.drop(worst.name)
        others = (rest["d1"] * rest["cohort_size"]).sum() / rest["cohort_size"].sum()
        out.append(f"The weakest day-1 retention was the {pd.Timestamp(worst['cohort']).date()} cohort: "
                   f"{worst['d1']:.0%} ({int(worst['cohort_size']):,} users) against {others:.0%} for the "
                   "other cohorts.")
    full = series.dropna(subset=["mau"])
    if len(full):
        last = full.iloc[-1]
        out.append(f"On {last['date']}, {int(last['dau']):,} users were active that day and "
                   f"{int(last['mau']):,} in the last 30 days (stickiness {last['stickiness']:.0%}).")
    if gap_summary.get("gap_p95") is not None:
        rec = gap_summary["recommended_horizon_days"]
        now = (f" (the dataset config uses {horizon_days} days: `horizon_days`)"
               if horizon_days is not None and horizon_days != rec else "")
        out.append(f"95% of returns happen within {gap_summary['gap_p95']} days: a churn horizon of "
                   f"{rec} days fits this product{now}, and "
                   f"{gap_summary['recommended_metric']} retention is the metric to watch.")
    for r in readout.itertuples():
        if r.window_complete and r.n_control > 0:
            out.append(f"Recall campaign {r.campaign_id} brought back about {r.incremental_returns:,.0f} extra users: "
                       f"{r.rate_treated:.1%} of those messaged returned against {r.rate_control:.1%} of the "
                       f"holdout ({100 * r.lift_abs:+.1f} points, 95% interval {100 * r.lift_abs_ci_low:+.1f} "
                       f"to {100 * r.lift_abs_ci_high:+.1f}).")
    return out


def _records(df) -> list[dict]:
    """DataFrame rows as dicts for a template: dates as ISO strings, NaN as None."""
    import pandas as pd

    rows = df.to_dict("records")
    for r in rows:
        for k, v in r.items():
            if isinstance(v, float) and v != v:
                r[k] = None
            elif isinstance(v, (dt.date, pd.Timestamp)):
                r[k] = str(pd.Timestamp(v).date())
    return rows


def _anomaly_headlines(flagged, mix) -> list[str]:
    import pandas as pd

    out = []
    for (direction, day), g in sorted(flagged.groupby(["direction", "day"]), key=lambda kv: (kv[0][0] != "lower", kv[0][1])):
        dates = ", ".join(str(pd.Timestamp(c).date()) for c in sorted(g["cohort"]))
        worst = g.iloc[0]
        line = (f"{len(g)} cohort{'s' if len(g) > 1 else ''} retained abnormally {'badly' if direction == 'lower' else 'well'} "
                f"on day {day} ({dates}): e.g. {worst['rate']:.0%} against {worst['baseline_rate']:.0%} for the "
                "cohorts before them")
        top = mix[mix["cohort"].isin(g["cohort"]) & (mix["ratio"] >= 2)]
        if len(top):
            t = top.sort_values("ratio", ascending=False).iloc[0]
            line += (f"; {t['share_in_cohort']:.0%} of them have {t['attribute']} = '{t['value']}' "
                     f"against {t['share_elsewhere']:.0%} of other users")
        out.append(line + ".")
    return out


def _subscription_retention(ds: Dataset, period: str) -> dict | None:
    """Retention by subscription start cohort, its headline and plot (None without a subscriptions table)."""
    if ds.subscriptions is None:
        return None
    from churnml.retention import retention_headline
    from churnml.retention_subscriptions import plot_subscription_retention, subscription_retention

    table = subscription_retention(ds, period=period, days=(30, 90, 180, 365))
    seen = table.groupby("day")[["eligible", "retained_nday"]].sum()
    days = [int(d) for d in seen.index if seen.loc[d, "eligible"] > 0] or [int(seen.index.min())]
    table = table[table["day"].isin(days)].reset_index(drop=True)
    rates = ", ".join(f"{seen.loc[d, 'retained_nday'] / seen.loc[d, 'eligible']:.0%} after {d} days"
                      for d in days if seen.loc[d, "eligible"] > 0)
    grace = ds.config.churn.grace_days
    line = (f"Of all subscribers, these shares were still covered by their first subscription: {rates} "
            f"(a gap of up to {grace} days counts as covered)." if rates else
            "No subscriber has been subscribed long enough to measure subscription retention yet.")
    return {"table": table, "rows": retention_headline(table, days=days), "days": days, "headline": line,
            "grace_days": grace, "plot": plot_subscription_retention(table)}


def retention_job(
    config: DatasetConfig | str | Path,
    out_dir: str | Path,
    *,
    period: str = "day",
    days: Sequence[int] = (1, 7, 30),
    min_group: int = 100,
    dataset: Dataset | None = None,
) -> RetentionJobResult:
    """Compute the retention analysis, write its tables (Parquet and CSV) and the HTML report.

    Parameters
    ----------
    config : DatasetConfig or path
    out_dir : path
        Folder for ``retention_report.html`` and ``tables/``.
    period : {"day", "week", "month"}
        Signup cohort granularity.
    days : sequence of int
        Headline retention days.
    min_group : int
        Smallest group (on each half of the users) a behaviour threshold may
        be chosen for; small groups make thresholds in the tails that do not
        replicate.
    dataset : Dataset, optional
        An already validated dataset.

    Returns
    -------
    RetentionJobResult
    """

    import churnml
    from churnml import behaviours, report, retention

    cfg = config if isinstance(config, DatasetConfig) else load_dataset_config(config)
    ds = dataset or open_dataset(cfg)
    out_dir = Path(out_dir)
    res = retention.analyse_retention(ds, period=period, days=tuple(days), max_day=max(30, *days))
    table, headline, series = res["cohorts"], res["headline"], res["series"]
    dist, gap_summary, readout = res["gaps"], res["gap_summary"], res["campaigns"]
    anomalies = retention.anomalous_cohorts(table, days=[d for d in days if d <= 7] or list(days)[:1])
    flagged = anomalies[anomalies["flagged"]]
    mix = retention.cohort_attribute_mix(ds, flagged["cohort"].unique(), period=period)
    beh = behaviours.behaviour_retention(ds, min_group=min_group)

    notes = []
    if ds.signup_inferred:
        notes.append("There is no users table: each user's signup is taken to be their first event.")
    if ds.campaigns is None:
        notes.append("No campaigns table was given: there is no campaign readout.")
    young = headline[[f"d{d}" for d in days]].isna().any(axis=1).sum()
    if young:
        notes.append(f"{young} cohorts are too young for some of D{', D'.join(map(str, days))}; "
                     "those cells are left blank, not counted as zero.")
    ranked = beh["thresholds"].dropna(subset=["adjusted_diff"])
    beh_lines = beh["summary"][1:3] if len(ranked) else []
    headlines = (_anomaly_headlines(flagged, mix) + beh_lines
                 + _headlines(table, headline, series, gap_summary, readout, tuple(days), cfg.horizon_days))
    if not len(ranked):
        notes.append("No behaviour could be compared with retention: too few users have a complete "
                     "first week and second week in the log, or the groups are too small.")
    if gap_summary.get("gap_p95") is None:
        notes.append("No user has come back after a gap yet, so the churn window cannot be estimated; "
                     "the recommended horizon and metric below are defaults.")
    if not len(anomalies):
        notes.append("Too few cohorts with enough users to compare each against a trailing baseline: "
                     "no anomaly test was run.")

    subs = _subscription_retention(ds, period)
    if subs is not None:
        headlines = [subs["headline"]] + headlines if cfg.churn.definition == "subscription" else (
            headlines + [subs["headline"]])

    tables = {"cohort_retention": table, "retention_headline": headline, "anomalous_cohorts": anomalies,
              "anomaly_attributes": mix, "behaviour_thresholds": beh["thresholds"],
              "behaviour_curves": beh["curves"], "behaviour_pairs": beh["pairs"], "activity": series,
              "activity_gaps": dist, "campaign_readout": readout}
    if subs is not None:
        tables.update(subscription_retention=subs["table"], subscription_retention_headline=subs["rows"])
    paths = {}
    for name, df in tables.items():
        paths[name] = write_parquet(pa.Table.from_pandas(df, preserve_index=False), out_dir / "tables" / f"{name}.parquet")
        write_text(df.to_csv(index=False), out_dir / "tables" / f"{name}.csv")
    rows = _records(headline)
    latest = series.dropna(subset=["mau"]).iloc[-1].to_dict() if series["mau"].notna().any() else None
    html = report.render(
        "retention.html.j2",
        dataset=cfg.name, version=churnml.__version__,
        built=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        data_from=str(series["date"].min()) if len(series) else "–",
        data_to=str(series["date"].max()) if len(series) else "–",
        n_users=ds.n_users, n_events=ds.n_events, period=period,
        headlines=headlines, notes=notes,
        heatmap=report.plot_cohort_heatmap(table), curves=report.plot_retention_curves(table),
        headline_days=list(days), headline_rows=rows,
        activity=report.plot_activity(series), latest=latest,
        gaps=report.plot_gaps(dist, [("p90", gap_summary["gap_p90"]), ("p95", gap_summary["gap_p95"]),
                                     ("p99", gap_summary["gap_p99"])]),
        gap_summary=gap_summary, campaigns=readout.to_dict("records"),
        anomalies=_records(flagged), n_tests=len(anomalies), mix=_records(mix), baseline_cohorts=14,
        behaviour_summary=beh["summary"], confounding_note=beh["confounding_note"],
        thresholds=_records(beh["thresholds"]), pairs=_records(beh["pairs"]),
        behaviour_plot=report.plot_behaviour_curves(beh["curves"], list(ranked["event"][:4])),
        subscriptions=None if subs is None else {**subs, "rows": _records(subs["rows"])},
    )
    report_path = write_text(html, out_dir / "retention_report.html")
    return RetentionJobResult(report_path=report_path, tables=paths, headlines=headlines, notes=notes)
