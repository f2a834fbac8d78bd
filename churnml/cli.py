"""The ``churnml`` command line: one Typer app for people and schedulers.

Exit codes: 0 success; 2 bad input (data contract, config, arguments); 3 no
registered model with the alias asked for; 4 stale data; 5 features that
differ from the model's; 6 an output that exists and is not overwritten (or
that another run is writing); 7 an output that could not be written (disk
full, read-only, no permission); 130 and 143 stopped by Ctrl-C or SIGTERM.
Each error is one line per problem on stderr, with no traceback; any other
exit code is a bug.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from churnml.exceptions import ChurnmlError, DataNote, DataWarning, storage_problem

app = typer.Typer(
    name="churnml",
    help="Churn risk, recall uplift and retention analysis from a product's event log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
features_app = typer.Typer(help="Point-in-time behavioural features and labelled training sets.",
                           no_args_is_help=True)
app.add_typer(features_app, name="features")
train_app = typer.Typer(help="Train, evaluate and register models (tracked in MLflow).", no_args_is_help=True)
app.add_typer(train_app, name="train")

# Piped output (a scheduler's log) is not squeezed into 80 columns.
_WIDTH = None if sys.stdout.isatty() else 120
out = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)

INPUT_ERROR = 2
CANNOT_WRITE = 7

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Dataset config (YAML).")]
TrainConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Training config (YAML), e.g. training/churn.yaml.")]
UpliftConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Training config (YAML), e.g. training/uplift.yaml.")]


def _input_errors(fn):
    """Turn churnml's input errors into one line each on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DataWarning)
            try:
                result = fn(*args, **kwargs)
            except ChurnmlError as exc:
                for line in str(exc).splitlines():
                    err.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
                raise typer.Exit(_exit_code(exc)) from None
            except Exception as exc:
                # Ctrl-C inside a DuckDB query surfaces as DuckDB's InterruptException: an interrupt,
                # not a bug, so it ends like Ctrl-C anywhere else.
                if type(exc).__name__ == "InterruptException":
                    raise KeyboardInterrupt from None
                problem = storage_problem(exc)
                if problem is None:
                    raise
                # A full disk or a read-only folder is the machine's state, not a bug: one line.
                err.print(f"[bold red]error:[/] cannot write the output: {problem}; nothing was replaced",
                          highlight=False, soft_wrap=True)
                raise typer.Exit(CANNOT_WRITE) from None
            finally:
                for w in caught:
                    if issubclass(w.category, DataNote):
                        err.print(f"info: {w.message}", highlight=False, soft_wrap=True)
                    elif issubclass(w.category, DataWarning):
                        err.print(f"[yellow]warning:[/] {w.message}", highlight=False, soft_wrap=True)
        return result

    return wrapper


def _exit_code(exc: ChurnmlError) -> int:
    """The documented exit code of an error (see churnml.batch.EXIT_CODES)."""
    from churnml.batch import EXIT_CODES
    from churnml.exceptions import (
        ModelNotFoundError,
        OutputExistsError,
        OutputWriteError,
        SchemaMismatchError,
        StaleDataError,
    )

    for kind, name in ((OutputExistsError, "list_exists"), (ModelNotFoundError, "model_not_found"),
                       (StaleDataError, "stale_data"), (SchemaMismatchError, "schema_mismatch"),
                       (OutputWriteError, "cannot_write")):
        if isinstance(exc, kind):
            return EXIT_CODES[name]
    return INPUT_ERROR


def _parse_instants(values: list[str] | None) -> list[dt.datetime] | None:
    from churnml.config import utc

    if not values:
        return None
    out = []
    for v in values:
        try:
            # Naive values stay naive: the dataset's time zone decides what they mean.
            utc(v)
            out.append(dt.datetime.fromisoformat(v))
        except ValueError:
            err.print(f"[bold red]error:[/] --as-of must be a date or ISO datetime such as 2024-04-15, "
                      f"got {v!r}")
            raise typer.Exit(INPUT_ERROR) from None
    return out


def _table(**kwargs):
    from rich.table import Table  # imported when a command prints one, not on every start (--help)

    return Table(**kwargs)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err,
    )


def _simulate(out_dir: Path, users: int, days: int, seed: int, promotion: bool, truth: bool,
              subscriptions: bool = False, horizons=None):
    from churnml.jobs import simulate_job
    from churnml.simulator import SimulationConfig, SubscriptionConfig

    sim = SimulationConfig(n_users=users, days=days, seed=seed,
                           **({} if promotion else {"promotion_days": []}),
                           **({"subscriptions": SubscriptionConfig()} if subscriptions else {}))
    with _progress() as bar:
        task = bar.add_task("simulating days", total=days)
        result, cfg_path = simulate_job(sim, out_dir, truth=truth, horizons_days=horizons,
                                        progress=lambda d, n: bar.update(task, completed=d + 1))
    out.print(f"simulated [bold]{result.n_users:,}[/] users, [bold]{result.n_events:,}[/] events, "
              f"{result.n_exposures:,} campaign exposures"
              + (f", {result.n_subscriptions:,} subscription periods" if subscriptions else "") + f" -> {out_dir}")
    out.print(f"dataset config: {cfg_path}")
    return result, cfg_path


@app.command()
@_input_errors
def simulate(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for the simulated tables.")] = Path("data/sim"),
    users: Annotated[int, typer.Option(help="Users who sign up over the period.", min=1)] = 20_000,
    days: Annotated[int, typer.Option(help="Days simulated.", min=14)] = 120,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 0,
    promotion: Annotated[bool, typer.Option(help="Plant the 2-day low-intent signup promotion.")] = True,
    truth: Annotated[bool, typer.Option(help="Write ground-truth churn probabilities per snapshot.")] = True,
    subscriptions: Annotated[bool, typer.Option(
        help="Add the subscription layer (monthly and yearly plans); the dataset.yaml then uses "
             "churn: subscription.")] = False,
):
    """Simulate a music-streaming app with known ground truth.

    Writes events, users and campaigns as Parquet, the ground truth under
    truth/, and a dataset.yaml that the other commands take with --config.
    """
    _simulate(out_dir, users, days, seed, promotion, truth, subscriptions)


@app.command()
@_input_errors
def init(
    events: Annotated[Path, typer.Option("--events", help="The event log: Parquet or CSV (a glob is fine).")],
    users: Annotated[Path | None, typer.Option("--users", help="The users table (signup times, attributes).")] = None,
    subscriptions: Annotated[Path | None, typer.Option("--subscriptions", help="A subscriptions table.")] = None,
    output: Annotated[Path, typer.Option("--out", "-o", help="The config file to write.")] = Path("dataset.yaml"),
    horizon_days: Annotated[int | None, typer.Option(
        "--horizon-days", min=1, help="The churn horizon you are asked about (default: chosen from the return gaps).")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing config file.")] = False,
):
    """Write a commented config chosen from the data: column mapping, eligibility, horizon, windows, snapshots.

    Reads the log with DuckDB, infers which column is the user, the time, the
    event type, amounts and items, checks the data contract, and chooses every
    window from the gaps between users' active days, the span of the log and
    its timestamp granularity; each choice is explained in a comment. The file
    has dataset, training and scoring sections: `churnml train churn -c FILE`
    and `churnml score -c FILE` read it as it is.
    """
    from churnml.init import init_config

    with err.status("reading the log and measuring it"):
        res = init_config(events, output, users=users, subscriptions=subscriptions, horizon_days=horizon_days,
                          force=force, log=lambda line: err.print(line, highlight=False))
    for key in ("horizon_days", "eligibility_days", "feature_windows_days", "snapshots"):
        out.print(f"  • {res.choices[key].why}", highlight=False)
    if horizon_days is None:
        out.print("  (asked about a given horizon? run init again with --horizon-days N --force)", highlight=False)
    out.print(f"wrote {res.path}; next: [bold]churnml train churn -c {res.path}[/]")


@app.command()
@_input_errors
def validate(config: ConfigOpt):
    """Check the sources of a dataset config against the data contract.

    Prints one line per problem (file, column, count, example) and exits 2 if
    there is any.
    """
    _, ds = _open(config)
    out.print(f"[green]ok[/]: {ds.n_events:,} events, {ds.n_users:,} users"
              + (f", {ds.campaigns.count().to_pyarrow().as_py():,} campaign rows" if ds.campaigns is not None else "")
              + (f", {ds.subscriptions.count().to_pyarrow().as_py():,} subscription rows"
                 if ds.subscriptions is not None else "")
              + f"; churn: {ds.config.churn.definition}"
              + (f"; data until {ds.observed_until.isoformat()}" if ds.config.observed_until else
                 f"; last event at {(ds.observed_until - dt.timedelta(microseconds=1)).isoformat()} "
                 "(set observed_until in the config if the log runs later)"))


@features_app.command("build")
@_input_errors
def features_build(
    config: ConfigOpt,
    as_of: Annotated[list[str] | None, typer.Option(
        "--as-of", help="Snapshot date/instant (without an offset: in the dataset's timezone); repeat for several. Default: the config's snapshots.")] = None,
    output: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write.")] = Path("out/features.parquet"),
    labels: Annotated[bool | None, typer.Option(
        "--labels/--no-labels", help="Add the churn label (default: yes for config snapshots, no for --as-of).")] = None,
):
    """Build one row per eligible user per snapshot, using only events before each snapshot.

    Writes the table as Parquet and its documented schema beside it
    (<name>.schema.json). Output is written atomically.
    """
    instants = _parse_instants(as_of)  # bad arguments fail before the data is read
    _report_features(_build(*_open(config), output, instants, labels))


def _open(config):
    """Load a dataset config and validate its sources (once per command)."""
    from churnml.config import load_dataset_config
    from churnml.data import open_dataset

    cfg = load_dataset_config(config)
    t0 = time.perf_counter()
    with err.status("checking the sources against the data contract"):
        ds = open_dataset(cfg)
    err.print(f"validated {ds.n_events:,} events of {ds.n_users:,} users in {time.perf_counter() - t0:.1f}s")
    return cfg, ds


def _build(cfg, ds, output, instants, labels):
    from churnml.jobs import build_features_job

    n = len(instants) if instants else len(cfg.snapshot_instants())
    with _progress() as bar:
        task = bar.add_task("building snapshots", total=n)
        return build_features_job(cfg, output, as_of=instants, labels=labels, dataset=ds,
                                  progress=lambda s: bar.advance(task))


def _report_features(res) -> None:
    tab = _table(title="feature table", show_edge=False)
    tab.add_column("as_of")
    tab.add_column("eligible users", justify="right")
    if res.churn_rate:
        tab.add_column("churn rate", justify="right")
    for day, n in res.rows_per_snapshot.items():
        row = [day, f"{n:,}"]
        if res.churn_rate:
            row.append(f"{res.churn_rate[day]:.1%}")
        tab.add_row(*row)
    out.print(tab)
    out.print(f"{res.n_rows:,} rows x {res.n_features} features -> {res.table_path}")
    out.print(f"schema: {res.schema_path}")


@app.command()
@_input_errors
def retention(
    config: ConfigOpt,
    output: Annotated[Path, typer.Option("--out", "-o", help="Folder for the report and tables.")] = Path("out/retention"),
    period: Annotated[str, typer.Option(help="Signup cohorts by day, week or month.")] = "day",
):
    """Retention analysis: cohort retention, active users, churn window, campaign readout.

    Writes an HTML report (plots inline, opens offline) and the tables behind
    it as Parquet and CSV, and prints the headlines.
    """
    if period not in ("day", "week", "month"):
        err.print(f"[bold red]error:[/] --period must be day, week or month, got {period!r}")
        raise typer.Exit(INPUT_ERROR)
    _report_retention(_retention(*_open(config), output, period))


def _retention(cfg, ds, output, period):
    from churnml.jobs import retention_job

    with err.status("computing retention"):
        return retention_job(cfg, output, period=period, dataset=ds)


def _report_retention(res) -> None:
    out.print("[bold]Retention headlines[/]")
    for h in res.headlines:
        out.print(f"  • {h}", highlight=False)
    for n in res.notes:
        out.print(f"  [yellow]note:[/] {n}", highlight=False)
    out.print(f"report: {res.report_path}")


@train_app.command("churn")
@_input_errors
def train_churn(
    config: TrainConfigOpt = Path("training/churn.yaml"),
    trials: Annotated[int | None, typer.Option(help="Optuna trials (overrides the config; 0 = no tuning).", min=0)] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds after which no new trial starts.", min=1)] = None,
    study: Annotated[str | None, typer.Option(help="Resume or extend this Optuna study (same storage).")] = None,
    register: Annotated[bool, typer.Option(help="Register the model as the 'challenger'.")] = True,
):
    """Train the churn-risk model: time split, Optuna, calibration, test beside baselines, MLflow.

    Trains on earlier snapshots, tunes and calibrates on a later one, reports on
    the latest fully labelled one, logs the run to MLflow and registers the
    model as 'challenger'. Promote it with `churnml promote`.
    """
    from churnml.config import load_train_config

    cfg = _with_tuning(load_train_config(config), trials, timeout, study)
    _report_churn(_train_churn(cfg, None, register))


def _with_tuning(cfg, trials, timeout, study):
    tuning = cfg.tuning.model_copy(update={k: v for k, v in (("trials", trials), ("timeout_seconds", timeout),
                                                             ("study_name", study)) if v is not None})
    return cfg.model_copy(update={"tuning": tuning})


def _train_churn(cfg, ds, register: bool = True):
    from churnml.config import load_dataset_config
    from churnml.train import train_churn_job

    with _progress() as bar:
        snaps = None
        if cfg.training_set is None:  # built from the dataset config's snapshots, one step each
            total = len((ds.config if ds is not None else load_dataset_config(cfg.dataset)).snapshot_instants())
            snaps = bar.add_task("building snapshots", total=total)
        # Shown once they start, so that nothing about trials or folds is printed before a data error.
        trials = bar.add_task("Optuna trials", total=cfg.tuning.trials, visible=False)
        folds = bar.add_task("backtest cut-offs", total=cfg.backtest.folds, visible=False)

        def on_trial(n, value):
            bar.update(trials, visible=True, advance=1)

        def on_fold(cutoff, metrics):
            bar.update(folds, visible=True, advance=1)

        res = train_churn_job(cfg, dataset=ds, register=register, log=lambda line: bar.console.print(line),
                              on_snapshot=lambda s: bar.advance(snaps) if snaps is not None else None,
                              on_trial=on_trial, on_fold=on_fold)
        bar.update(folds, total=len(res.cutoffs))  # a short history has fewer cut-offs than asked
        return res


def _report_churn(res) -> None:
    cols = ["roc_auc", "pr_auc", "brier", "log_loss", "ece", "lift_at_10", "capture_at_10"]
    bt = res.backtest
    tab = _table(title=f"churn model, rolling backtest: mean ± sd over {len(res.cutoffs)} cut-off(s) "
                       f"({', '.join(str(c.date()) for c in res.cutoffs)}; {res.rows['backtest']:,} rows), "
                       "each fit only on labels closed before its cut-off", show_edge=False)
    tab.add_column("scorer")
    for c in cols:
        tab.add_column(c, justify="right")
    for name, row in res.metrics.iterrows():
        sd = res.metrics_sd.loc[name]
        tab.add_row(name, *(("-" if c not in row or row[c] != row[c] else
                             f"{row[c]:.3f}" + (f"±{sd[c]:.3f}" if sd[c] == sd[c] else "")) for c in cols))
    out.print(tab)
    auc = bt.per_cutoff("roc_auc")
    shown = [c for c in ("model", "logistic regression", "recency only", "oracle") if c in auc]
    out.print("ROC-AUC per cut-off (" + " / ".join(shown) + "): "
              + "; ".join(f"{k} " + "/".join(f"{r[c]:.3f}" for c in shown) for k, r in auc.iterrows()))
    if res.oracle_ratio is not None:
        out.print(f"model AUC = {res.oracle_ratio:.1%} of the oracle's, mean over cut-offs (the simulator's exact "
                  "churn probability given everything observable; 'latent state' also sees silent lapses, "
                  "which no log shows)")
    i = res.info
    out.print(f"chosen by the backtest: {bt.chosen} (best mean log loss); registered model: refit on "
              f"{len(i['snapshots'])} snapshots ({i['rows_refit']:,} rows), {i['trees']} trees "
              f"({i['trees_early_stopping']} by early stopping on {i['rows_early_stopping']:,} rows, "
              f"scaled by the rows ratio^{i['tree_exponent']:g}); its metrics above are the backtest's")
    where = f"registered churn-risk version {res.version} as 'challenger'" if res.version else "not registered"
    out.print(f"MLflow run {res.run_id}; {where}")


@train_app.command("uplift")
@_input_errors
def train_uplift(
    config: UpliftConfigOpt = Path("training/uplift.yaml"),
    register: Annotated[bool, typer.Option(help="Register the model as the 'challenger'.")] = True,
):
    """Train the recall-uplift model on randomised campaigns: who returns because they were contacted.

    Trains on earlier campaigns, tests on the latest, chooses the learner by
    cross-validated Qini on the training campaigns, compares targeting by
    predicted uplift with random, churn-risk and (simulated data) true-uplift
    targeting, logs to MLflow and registers 'recall-uplift' as 'challenger'.
    """
    from churnml.config import load_train_config

    cfg = load_train_config(config)
    if cfg.kind != "uplift":
        raise _config_error(f"{config}: kind is '{cfg.kind}', expected 'uplift'")
    _report_uplift(_train_uplift(cfg, None, register))


def _config_error(message):
    from churnml.exceptions import ConfigError

    return ConfigError(message)


def _train_uplift(cfg, ds, register: bool = True):
    from churnml.train_uplift import train_uplift_job

    with err.status("building exposures and choosing the uplift learner by cross-validated Qini"):
        return train_uplift_job(cfg, dataset=ds, register=register, log=lambda line: err.print(line))


def _report_uplift(res) -> None:
    sel = res.selection
    default = sel.index[sel["default"]][0]
    pick = _table(title="learner choice: 5-fold cross-validated Qini on the training campaigns (the default, "
                       f"{default}, is kept unless beaten by more than one standard error)", show_edge=False)
    for c in ("learner", "Qini mean ± std", "gain over default ± SE", "chosen"):
        pick.add_column(c, justify="left" if c == "learner" else "right")
    for name, row in sel.iterrows():
        pick.add_row(name, f"{row['mean']:.4f} ± {row['std']:.4f}",
                     f"{row['gain_over_default']:+.4f} ± {row['gain_se']:.4f}",
                     "✓" if row["chosen"] else ("constant: ranks nobody" if row.get("constant", False) else ""))
    out.print(pick)
    cols = ["qini_auc", "uplift_auc", "uplift_at_10", "uplift_at_30", "returns_per_1000_observed",
            "returns_per_1000_expected"]
    tab = _table(title=f"targeting the test campaign {', '.join(res.test_campaigns)} ({res.rows['test']:,} exposures)",
                show_edge=False)
    tab.add_column("targeting by")
    for c in cols:
        if c in res.targeting:
            tab.add_column(c.replace("returns_per_1000_", "returns/1000 "), justify="right")
    for name, row in res.targeting.iterrows():
        ci = f" [{row['qini_auc_low']:.3f}, {row['qini_auc_high']:.3f}]" if "qini_auc_low" in row else ""
        cells = [f"{row['qini_auc']:.3f}{ci}"] + [f"{row[c]:.3f}" if "returns" not in c else f"{row[c]:.0f}"
                                                  for c in cols[1:] if c in res.targeting]
        tab.add_row(name, *cells)
    out.print(tab)
    m = res.metrics
    if "qini_ratio_to_true" in m:
        out.print(f"predicted uplift reaches {m['qini_ratio_to_true']:.0%} of the true uplift's Qini and "
                  f"{m['returns_ratio_to_true']:.0%} of its incremental returns at a 10% budget")
    if "returns_ratio_to_ceiling" in m:
        out.print(f"a model taught the true uplift from the same features reaches "
                  f"{m['ceiling_returns_ratio_to_true']:.0%} of those returns: the rest depends on what no "
                  f"feature shows; the predicted uplift reaches {m['returns_ratio_to_ceiling']:.0%} of that ceiling")
    where = f"registered recall-uplift version {res.version} as 'challenger'" if res.version else "not registered"
    out.print(f"learner: {res.selected}; MLflow run {res.run_id}; {where}")


@app.command()
@_input_errors
def promote(
    config: TrainConfigOpt = Path("training/churn.yaml"),
    margin: Annotated[float | None, typer.Option(help="Allowed shortfall of the challenger (overrides the config).", min=0)] = None,
):
    """Champion/challenger gate: make the challenger champion if it is not worse on the latest holdout.

    Both versions are scored on the same rows (the latest fully labelled
    snapshot of the current data); the decision is logged to MLflow either way.
    Exit code 0 whether or not the champion changed.
    """
    from churnml.config import load_train_config

    _report_promotion(_promote(load_train_config(config), None, margin))


def _promote(cfg, ds, margin=None):
    from churnml.train import promote_job

    with err.status("scoring challenger and champion on the latest holdout"):
        return promote_job(cfg, margin=margin, dataset=ds)


def _report_promotion(res) -> None:
    verdict = "[bold green]promoted[/]" if res.promoted else "[yellow]kept the champion[/]"
    out.print(f"{res.name}: challenger v{res.challenger} vs champion "
              f"{'v' + res.champion if res.champion else '(none)'}: {verdict}: {res.reason}")


@app.command()
@_input_errors
def score(
    config: Annotated[Path, typer.Option("--config", "-c", help="Scoring config (YAML).")] = Path("serving/batch.yaml"),
    as_of: Annotated[str, typer.Option("--as-of", help="Score as of this date/instant (UTC), e.g. 2024-04-30 (usually today's date).")] = ...,
    force: Annotated[bool, typer.Option(help="Replace an existing list for the date.")] = False,
):
    """Nightly scoring: the day's ranked recall list by expected incremental returns.

    Without a registered uplift model (no randomised campaign yet) the list is
    ranked by churn risk (x value), with a warning, and says so. Writes <output>/<date>/ atomically: recall_list.parquet and .csv, scores,
    features and a manifest. Exit codes: 0 written; 2 bad input; 3 no champion
    model; 4 stale data; 5 features differ from the models'; 6 list exists
    (use --force).
    """
    from churnml.config import load_score_config

    instant = _parse_instants([as_of])[0]
    _report_list(_score(load_score_config(config), None, instant, force))


def _score(cfg, ds, instant, force):
    from churnml.batch import score_job

    with err.status(f"scoring as of {instant.date()}"):
        return score_job(cfg, instant, force=force, dataset=ds, log=lambda line: err.print(line))


def _report_list(res) -> None:
    c = res.counts
    out.print(f"[bold]recall list {res.campaign_id}[/] ({res.as_of.date()}): {c['selected']:,} users selected "
              f"({c['contact']:,} to contact, {c['holdout']:,} random holdout) of {c['eligible']:,} eligible "
              f"({c['eligible_lapsed']:,} lapsed, {c['eligible_at_risk']:,} at risk) among {c['scored']:,} scored")
    if res.ranking:
        out.print(f"{res.ranking['note']}", highlight=False)
    out.print("excluded: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in c["excluded"].items()))
    by_uplift = c.get("ranked_by", "uplift") == "uplift"
    if not c["selected"]:
        err.print("[yellow]warning:[/] the list is empty: no eligible user is worth contacting under these "
                  "exclusions and costs (see 'excluded' above)", highlight=False)
    else:
        if by_uplift:
            out.print("segments on the list: "
                      + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in c["segments"].items()))
            out.print(f"expected incremental returns from the contacts: {c['expected_incremental_returns']:.0f} users")
        else:
            out.print(f"expected churners among the contacts: {c['expected_churners_contacted']:.0f} users")
        cols = ("rank", "user_id", "group") + (("uplift", "p_churn", "segment") if by_uplift else ("priority", "p_churn"))
        tab = _table(title="top of the list", show_edge=False)
        for col in (*cols, "reason_1"):
            tab.add_column(col)
        for _, r in res.top.head(5).iterrows():
            cells = [f"{r[k]:+.3f}" if k == "uplift" else f"{r[k]:.2f}" if k in ("p_churn", "priority") else str(r[k])
                     for k in cols]
            tab.add_row(*cells, str(r.get("reason_1", "")))
        out.print(tab)
        horizons = [c for c in res.top.columns if c.startswith("p_churn_") and c.endswith("d")]
        if horizons:
            out.print(f"churn within {', '.join(c[8:] for c in horizons)} (top of the list): " + "; ".join(
                "/".join(f"{r[c]:.2f}" for c in horizons) for _, r in res.top.head(5).iterrows()))
    out.print(f"models: {', '.join(f'{k} v{v}' for k, v in res.versions.items())}; list: {res.folder}")


@app.command()
@_input_errors
def explain(
    config: ConfigOpt,
    output: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path("out/drivers_report.html"),
    alias: Annotated[str, typer.Option(help="Registered model alias to explain.")] = "champion",
    uplift: Annotated[bool, typer.Option(help="Also explain the recall-uplift model.")] = True,
):
    """Drivers report: what drives churn risk and recall response, for operators (one HTML file).

    Global drivers with SHAP, where risk changes, behaviours in combination,
    why flagged signup cohorts churn more, who responds to recall messages, and
    a glossary. The report is also attached to the model's MLflow run.
    """
    _report_drivers(_explain(config, None, output, alias, uplift))


def _explain(config, ds, output, alias="champion", uplift=True):
    from churnml.drivers import drivers_job

    with _progress() as bar:
        task = bar.add_task("drivers report", total=None)

        def step(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, total=total, description=what)

        return drivers_job(config, output, alias=alias, uplift_model="recall-uplift" if uplift else None, ds=ds,
                           log=lambda line: bar.console.print(line), progress=step)


def _report_drivers(res) -> None:
    out.print("[bold]Drivers headlines[/]")
    for h in res.headlines:
        out.print(f"  • {h}", highlight=False)
    out.print(f"drivers report: {res.report_path}")


@app.command()
@_input_errors
def run(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for everything the job writes.")] = Path("runs/demo"),
    users: Annotated[int, typer.Option(
        help="Simulated users (a few hundred at least, so that recall campaigns can be learned from).",
        min=100)] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    trials: Annotated[int, typer.Option(help="Optuna trials for the churn model.", min=0)] = 10,
):
    """The main job, end to end on the embedded default.

    Simulates a music app, validates it against the data contract, writes the
    retention report, builds point-in-time features and a labelled training
    set over weekly snapshots, trains, evaluates and registers the churn model
    and the recall-uplift model (MLflow, local store in mlruns/), promotes both
    through the gate, writes the drivers report (SHAP) and the day's ranked
    recall list.
    """
    from churnml.jobs import compare_with_truth

    t0 = time.perf_counter()
    for line in _rerun_notes(out_dir):
        out.print(f"[yellow]note:[/] {line}", highlight=False)
    sim, cfg_path = _simulate(out_dir / "data", users, 120, seed, True, True, horizons=[30, 90, 270])
    cfg, ds = _open(cfg_path)  # validated once, used by both steps
    _report_retention(_retention(cfg, ds, out_dir / "retention", "day"))
    res = _build(cfg, ds, out_dir / "features" / "training_set.parquet", None, None)
    _report_features(res)
    check = compare_with_truth(res.table_path, sim.truth_dir / "churn.parquet")
    out.print(f"ground truth check: {check['rows']:,} rows; observed churn rate {check['observed']:.1%}, "
              f"simulator's true mean probability {check['expected']:.1%} "
              f"(difference {check['z']:+.1f} standard errors); "
              f"{check['unmatched']:,} eligible rows without truth")
    train_cfg = _demo_train_config(cfg_path, res.table_path, sim.truth_dir, trials)
    # Fail before anything is registered if the uplift step could not learn from the campaigns.
    _check_campaign_sizes(ds, max(10, train_cfg.min_class_count // 2), users)
    churn = _train_churn(train_cfg, ds)
    _report_churn(churn)
    _report_promotion(_promote(train_cfg, ds))
    uplift_cfg = train_cfg.model_copy(update={"kind": "uplift", "truth": sim.truth_dir / "exposures.parquet",
                                              "training_set": None})
    _report_uplift(_train_uplift(uplift_cfg, ds))
    _report_promotion(_promote(uplift_cfg, ds))
    from churnml.config import ScoreConfig

    _report_drivers(_explain(cfg_path, ds, out_dir / "drivers_report.html"))
    score_cfg = ScoreConfig(dataset=cfg_path, output=out_dir / "lists", channel="push")
    replaced = (out_dir / "lists" / ds.observed_until.date().isoformat()).exists()
    _report_list(_score(score_cfg, ds, ds.observed_until, True))
    if replaced:
        out.print(f"(replaced the earlier list of {ds.observed_until.date()})")
    configs = _write_demo_configs(out_dir, train_cfg, uplift_cfg, score_cfg)
    out.print(f"[bold green]done[/] in {time.perf_counter() - t0:.0f}s; outputs under {out_dir}; the configs of "
              f"each step, to rerun it alone: {', '.join(str(c) for c in configs)}; MLflow runs and models: "
              "`mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db`")


def _rerun_notes(out_dir: Path) -> list[str]:
    """What a run over an earlier one replaces (its outputs, the list) and adds (model versions)."""
    from churnml import tracking
    from churnml.exceptions import ModelNotFoundError

    notes = []
    lists = sorted(p.name for p in (out_dir / "lists").glob("[0-9]*")) if (out_dir / "lists").is_dir() else []
    if (out_dir / "data").exists() or lists:
        notes.append(f"{out_dir} holds an earlier run: its data, reports and features are rewritten"
                     + (f", and the recall list of {', '.join(lists)} replaced" if lists else ""))
    champions = []
    for name in ("churn-risk", "recall-uplift"):
        try:
            champions.append(f"{name} v{tracking.resolve(name, 'champion').version}")
        except ModelNotFoundError:
            pass
    if champions:
        notes.append(f"the MLflow store has champions ({', '.join(champions)}): this run registers new versions "
                     "and promotes each only if the gate finds it not worse")
    return notes


def _write_demo_configs(out_dir: Path, churn, uplift, score) -> list[Path]:
    """The training and scoring configs the run used, beside its outputs (paths relative to them), so
    that each step can be rerun alone (the README's command table uses them)."""
    import yaml

    from churnml.io import write_text

    base = out_dir.absolute()

    def rel(path: Path | None):
        return None if path is None else os.path.relpath(Path(path).absolute(), base)

    docs = {
        "churn.yaml": {"kind": "churn", "dataset": rel(churn.dataset), "training_set": rel(churn.training_set),
                       "truth": rel(churn.truth), "tuning": {"trials": churn.tuning.trials, "timeout_seconds": None}},
        "uplift.yaml": {"kind": "uplift", "dataset": rel(uplift.dataset), "truth": rel(uplift.truth)},
        "batch.yaml": {"dataset": rel(score.dataset), "output": rel(score.output), "channel": score.channel},
    }
    paths = []
    for name, doc in docs.items():
        text = "# Written by `churnml run`: the config of this step, to rerun it alone.\n" + yaml.safe_dump(
            doc, sort_keys=False)
        paths.append(write_text(text, out_dir / name))
    return paths


def _check_campaign_sizes(ds, min_group: int, users: int) -> None:
    from churnml.exceptions import TrainingDataError
    from churnml.train_uplift import small_campaigns

    if ds.campaigns is None:
        raise TrainingDataError(f"{users:,} simulated users received no recall message; use more --users")
    c = ds.campaigns
    sizes = c.group_by("campaign_id").aggregate(n1=c.treated.cast("int64").sum(), n0=(~c.treated).cast("int64").sum())
    rows = sizes.order_by("campaign_id").to_pyarrow().to_pylist()
    problems = small_campaigns([(r["campaign_id"], r["n1"], r["n0"]) for r in rows], min_group)
    if problems:
        raise TrainingDataError(f"{problems[0]} among {users:,} simulated users: the uplift step could not "
                                "learn from it; use more --users")


def _demo_train_config(dataset, training_set, truth_dir, trials):
    from churnml.config import TrainConfig, TuningConfig

    # A fixed number of trials and no time limit: the same seed gives the same model on any machine
    # and under any load (a time limit made the number of trials depend on both).
    return TrainConfig(dataset=dataset, training_set=training_set, truth=truth_dir / "churn.parquet",
                       tuning=TuningConfig(trials=trials, timeout_seconds=None))


def _terminate(signum, frame) -> None:
    """SIGTERM (a scheduler's timeout or stop) unwinds like an exception, so that atomic outputs
    remove their temporary files and folders; the default action would kill the process as is."""
    raise SystemExit(128 + signum)


def main() -> None:
    """The console script ``churnml`` (pyproject ``[project.scripts]``): the Typer app, with SIGTERM and
    SIGHUP unwinding like exceptions (exit 128 + signal), so that nothing half-written stays behind."""
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
