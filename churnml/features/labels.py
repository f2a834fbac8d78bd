"""Churn definitions: who can churn at ``as_of``, who did within the horizon, and when.

A product says what churn means for it in the dataset config
(``churn: {definition: ...}``, :class:`~churnml.config.ChurnConfig`). Each
definition is a small object with the same interface
(:class:`ChurnDefinition`):

* :meth:`~ChurnDefinition.population` — the users a snapshot at ``as_of``
  holds, decided from what is known before ``as_of`` only;
* :meth:`~ChurnDefinition.outcomes` — the label of those users over
  ``[as_of, as_of + horizon)``;
* :meth:`~ChurnDefinition.event_times` — where the definition has a churn
  *event*, the instant it happened (for time-to-event models), and
  :meth:`~ChurnDefinition.confirmed_until`, up to when the data confirms them;
* :meth:`~ChurnDefinition.label_end` — the instant the data must reach for a
  label to be final.

The three definitions
---------------------
``inactivity`` (the default)
    Population: signed up before ``as_of`` and active (an activity event) in
    ``[as_of - eligibility_days, as_of)``. Churned: no activity event in
    ``[as_of, as_of + horizon_days)``. There is no churn event (returning is
    the event; its absence is the label).
``subscription``
    Population: users *covered* at ``as_of``: a subscription row that started
    before ``as_of`` and had not ended before it (``start < as_of <= end``, or
    no end). A row ending exactly at ``as_of`` covered every instant before
    it, and that it ends is only known from ``as_of`` on, so such a user is in
    the population (and churns at ``as_of`` unless renewed within the grace).
    Churned: the spell of coverage that holds ``as_of`` ends at an instant
    ``E`` with ``as_of <= E < as_of + horizon_days``. A spell continues across
    a gap of at most ``grace_days`` (see
    :func:`churnml.features.subscriptions.spell_rows`), so a renewal starting
    up to ``grace_days`` after ``E`` — even after the horizon — means no
    churn, and a label needs data up to ``as_of + horizon_days + grace_days``.
    The churn event time is ``E``. A subscription ending exactly at
    ``as_of + horizon_days`` covers the whole horizon: not churned in this
    window (it churns in the window that starts there), so every end falls in
    exactly one of a series of back-to-back windows (the issue wrote the
    window as ``(as_of, as_of + horizon]``; with ends exclusive and a
    knowledge-based population that would label a subscription ending at
    ``as_of`` as retained). Returning later (after the grace) does not undo a
    churn: the label is "churned within the horizon", monotone in the horizon.
``event``
    Population: the inactivity population, less users already churned: those
    whose latest event before ``as_of`` is a churn event (``churn.events``;
    ties count as churned). Churned: a churn event in
    ``[as_of, as_of + horizon_days)``; its event time is the first of them.

All windows are half-open like every other window in churnml, so every
instant falls on exactly one side of ``as_of``. Nothing here reads a row at or
after ``as_of`` for the population, and the leakage tests
(``tests/test_leakage.py``) check it for every definition.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import ibis

from churnml.config import DatasetConfig, utc
from churnml.data import Dataset
from churnml.exceptions import ContractError, DataProblem
from churnml.features.subscriptions import coverage_spells
from churnml.subscriptions import as_seen

__all__ = [
    "CHURN_TS",
    "LABEL",
    "ChurnDefinition",
    "EventChurn",
    "InactivityChurn",
    "Population",
    "SubscriptionChurn",
    "check_labelled",
    "churn_definition",
    "churn_labels",
    "is_activity",
    "label_window_days",
]

#: The label column: 1 = churned within the horizon.
LABEL = "churned"
#: The churn event's instant (UTC), for definitions that have one; empty when not churned.
CHURN_TS = "churn_ts"


def is_activity(ds: Dataset, events: ibis.Table) -> ibis.Value:
    """Whether each event counts as activity (``activity_events``; all types if not configured)."""
    acts = ds.config.activity_events
    return events.event.isin(acts) if acts else ibis.literal(True)


@dataclass(frozen=True)
class Population:
    """Who a snapshot holds.

    Attributes
    ----------
    users : ibis.Table or None
        ``user_id`` of the users allowed (None = no restriction of its own).
    requires_activity : bool
        Whether the eligibility rule (active in ``[as_of - eligibility_days,
        as_of)``) applies as well. When false, ``users`` is the whole
        population, users without any event included.
    """

    users: ibis.Table | None
    requires_activity: bool


class ChurnDefinition(ABC):
    """The interface every churn definition implements (see the module docstring).

    Parameters
    ----------
    config : DatasetConfig
    """

    #: The name used in ``churn.definition``.
    name: ClassVar[str]
    #: Whether churn is an event with an instant (:meth:`event_times`).
    has_event_time: ClassVar[bool] = False

    def __init__(self, config: DatasetConfig) -> None:
        self.config = config

    def horizon(self, horizon_days: int | None = None) -> dt.timedelta:
        return dt.timedelta(days=self.config.horizon_days if horizon_days is None else horizon_days)

    def label_end(self, as_of: dt.datetime, horizon_days: int | None = None) -> dt.datetime:
        """The instant the data must reach (``observed_until``) for the label at ``as_of`` to be final."""
        return utc(as_of) + self.horizon(horizon_days)

    def population(self, ds: Dataset, as_of: dt.datetime) -> Population:
        """The snapshot's users, from what is known before ``as_of``."""
        return Population(None, True)

    @abstractmethod
    def outcomes(self, ds: Dataset, as_of: dt.datetime, horizon_days: int | None = None) -> tuple[ibis.Table, int]:
        """The users whose label the data decides, and the label of everyone else.

        Returns
        -------
        listed : ibis.Table
            ``user_id``, ``churned`` (int8) and, if :attr:`has_event_time`,
            ``churn_ts``; at most one row per user, possibly users outside the
            population (join on the population to use it).
        unlisted : int
            The label of population users not in ``listed`` (1 for inactivity:
            no activity found; 0 for the others: no churn found).
        """

    def event_times(self, ds: Dataset, as_of: dt.datetime) -> ibis.Table:
        """The first churn event at or after ``as_of`` of each user who has one the data confirms.

        Returns
        -------
        ibis.Table
            ``user_id, churn_ts``; users without a row had no churn event
            before :meth:`confirmed_until` (censored there).

        Raises
        ------
        ValueError
            The definition has no churn event (``inactivity``).
        """
        raise ValueError(f"The `{self.name}` churn definition has no churn event time; "
                         "use `subscription` or `event`.")

    def confirmed_until(self, ds: Dataset) -> dt.datetime:
        """Churn events before this instant are final (:meth:`event_times` is censored here)."""
        return ds.observed_until

    @abstractmethod
    def describe(self, horizon_days: int | None = None) -> str:
        """One line saying what ``churned = 1`` means, for schema files and reports."""


class InactivityChurn(ChurnDefinition):
    """No activity event in the horizon (the default); see the module docstring."""

    name = "inactivity"

    def outcomes(self, ds, as_of, horizon_days=None):
        as_of = utc(as_of)
        ev = ds.events
        fut = ev.filter((ev.ts >= ibis.literal(as_of)) & (ev.ts < ibis.literal(as_of + self.horizon(horizon_days)))
                        & is_activity(ds, ev))
        return fut.select("user_id").distinct().mutate(**{LABEL: ibis.literal(0, "int8")}), 1

    def describe(self, horizon_days=None):
        h = self.horizon(horizon_days).days
        return f"1 if no activity in the {h} days from as_of"


class SubscriptionChurn(ChurnDefinition):
    """Coverage ends in the horizon and does not resume within the grace; see the module docstring."""

    name = "subscription"
    has_event_time = True

    @property
    def grace(self) -> dt.timedelta:
        return dt.timedelta(days=self.config.churn.grace_days)

    def label_end(self, as_of, horizon_days=None):
        return super().label_end(as_of, horizon_days) + self.grace

    def confirmed_until(self, ds):
        return ds.observed_until - self.grace

    def population(self, ds, as_of):
        seen = as_seen(ds.subscriptions, utc(as_of))
        return Population(seen.filter(seen.end.isnull()).select("user_id").distinct(), False)

    def _current_spell(self, ds: Dataset, as_of: dt.datetime) -> ibis.Table:
        """Per user covered at ``as_of``, the spell holding it (over all the data): ``user_id, end``."""
        sp = coverage_spells(ds.subscriptions, self.config.churn.grace_days)
        cut = ibis.literal(as_of)
        return sp.filter((sp.start < cut) & (sp.end.isnull() | (sp.end >= cut))).select("user_id", "end")

    def outcomes(self, ds, as_of, horizon_days=None):
        as_of = utc(as_of)
        cur = self._current_spell(ds, as_of)
        ended = cur.filter(cur.end.notnull() & (cur.end < ibis.literal(as_of + self.horizon(horizon_days))))
        return ended.select("user_id", **{LABEL: ibis.literal(1, "int8"), CHURN_TS: ended.end}), 0

    def event_times(self, ds, as_of):
        cur = self._current_spell(ds, utc(as_of))
        done = cur.filter(cur.end.notnull() & (cur.end <= ibis.literal(self.confirmed_until(ds))))
        return done.select("user_id", **{CHURN_TS: done.end})

    def describe(self, horizon_days=None):
        h, g = self.horizon(horizon_days).days, self.config.churn.grace_days
        return (f"1 if the subscription covering as_of ends within the {h} days from as_of and no new one "
                f"starts within {g} days of the end")


class EventChurn(ChurnDefinition):
    """A churn event (``churn.events``) in the horizon; see the module docstring."""

    name = "event"
    has_event_time = True

    def _is_churn(self, events: ibis.Table) -> ibis.Value:
        return events.event.isin(list(self.config.churn.events))

    def population(self, ds, as_of):
        ev = ds.events
        past = ev.filter(ev.ts < ibis.literal(utc(as_of)))
        churn = self._is_churn(past)
        last = past.group_by("user_id").aggregate(c=past.ts.max(where=churn), o=past.ts.max(where=~churn))
        alive = last.filter(last.c.isnull() | (last.o.notnull() & (last.o > last.c)))
        return Population(alive.select("user_id"), True)

    def _first(self, ds: Dataset, start: dt.datetime, end: dt.datetime) -> ibis.Table:
        ev = ds.events
        hits = ev.filter(self._is_churn(ev) & (ev.ts >= ibis.literal(start)) & (ev.ts < ibis.literal(end)))
        return hits.group_by("user_id").aggregate(**{CHURN_TS: hits.ts.min()})

    def outcomes(self, ds, as_of, horizon_days=None):
        as_of = utc(as_of)
        first = self._first(ds, as_of, as_of + self.horizon(horizon_days))
        return first.mutate(**{LABEL: ibis.literal(1, "int8")}).select("user_id", LABEL, CHURN_TS), 0

    def event_times(self, ds, as_of):
        return self._first(ds, utc(as_of), self.confirmed_until(ds))

    def describe(self, horizon_days=None):
        h = self.horizon(horizon_days).days
        return f"1 if a churn event ({', '.join(self.config.churn.events)}) occurs in the {h} days from as_of"


_DEFINITIONS: dict[str, type[ChurnDefinition]] = {
    c.name: c for c in (InactivityChurn, SubscriptionChurn, EventChurn)}


def churn_definition(config: DatasetConfig) -> ChurnDefinition:
    """The churn definition a dataset config chooses (``churn.definition``)."""
    return _DEFINITIONS[config.churn.definition](config)


def label_window_days(config: DatasetConfig) -> int:
    """Days after a snapshot its label needs (horizon, plus the grace for ``subscription``).

    Two snapshots closer than this share label days; :func:`~churnml.models.split.time_split`
    keeps them apart.
    """
    as_of = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    return (churn_definition(config).label_end(as_of) - as_of).days


def check_labelled(ds: Dataset, as_of: dt.datetime, *, horizon_days: int | None = None) -> None:
    """Raise unless the data reaches the label end of ``as_of`` (see :meth:`ChurnDefinition.label_end`).

    Raises
    ------
    ContractError
        One line naming the snapshot, where its label window ends and where the data ends.
    """
    d = churn_definition(ds.config)
    end = d.label_end(as_of, horizon_days)
    if end > ds.observed_until:
        extra = f" (horizon and {ds.config.churn.grace_days}-day grace)" if d.name == "subscription" else ""
        raise ContractError([DataProblem(
            "snapshots", None, 0,
            f"label window of {utc(as_of).date()}{extra} ends {end.date()}, after the data ends "
            f"({ds.observed_until.isoformat()}); use an earlier snapshot or a shorter horizon",
        )])


def churn_labels(
    ds: Dataset, as_of: dt.datetime, users: ibis.Table, *, horizon_days: int | None = None
) -> ibis.Table:
    """The churn label of ``users`` at ``as_of``, by the dataset's churn definition.

    Parameters
    ----------
    ds : Dataset
    as_of : datetime
    users : ibis.Table
        The population: a table with ``user_id`` (e.g. a snapshot's feature table).
    horizon_days : int, optional
        Another horizon than the config's (for multi-horizon models).

    Returns
    -------
    ibis.Table
        ``users`` with ``churned`` (int8) added and, for definitions with a
        churn event, ``churn_ts`` (empty when not churned).

    Raises
    ------
    ContractError
        If the data does not reach :meth:`ChurnDefinition.label_end`.
    """
    as_of = utc(as_of)
    check_labelled(ds, as_of, horizon_days=horizon_days)
    d = churn_definition(ds.config)
    listed, unlisted = d.outcomes(ds, as_of, horizon_days)
    listed = listed.rename(_label=LABEL)
    t = users.left_join(listed, "user_id").drop("user_id_right")
    return t.mutate(**{LABEL: t._label.fill_null(unlisted).cast("int8")}).drop("_label")
