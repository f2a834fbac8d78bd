"""Time-based splits of stacked snapshots: train on the past, choose on later data, report on the latest.

A snapshot's label looks ``horizon`` days ahead of it, so two snapshots less
than ``horizon`` apart share label days: a model fit on the earlier one has
seen outcomes of the later one. :func:`time_split` leaves such snapshots out
(they are reported as ``gap``), so the label window of every validation and
test snapshot starts after every label window used for fitting has ended.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from churnml.exceptions import TrainingDataError

__all__ = ["TimeSplit", "time_split"]


@dataclass(frozen=True)
class TimeSplit:
    """Which snapshots fit, validate and test a model, and which were left out as gaps."""

    train: list[dt.datetime]
    valid: list[dt.datetime]
    test: list[dt.datetime]
    gap: list[dt.datetime]
    horizon_days: int

    def role(self, as_of: dt.datetime) -> str:
        """``train``, ``valid``, ``test`` or ``gap`` for a snapshot instant."""
        for name in ("train", "valid", "test", "gap"):
            if as_of in getattr(self, name):
                return name
        raise KeyError(as_of)

    def describe(self) -> list[str]:
        """One line per role, for the terminal and the run log."""
        def days(xs):
            return ", ".join(x.date().isoformat() for x in xs) or "-"
        return [f"train: {days(self.train)}", f"valid: {days(self.valid)}", f"test:  {days(self.test)}",
                f"gap (label windows overlap the next part, not used): {days(self.gap)}"]

    def to_dict(self) -> dict:
        return {k: [x.isoformat() for x in getattr(self, k)] for k in ("train", "valid", "test", "gap")} | {
            "horizon_days": self.horizon_days}


def time_split(
    snapshots: Sequence[dt.datetime], horizon_days: int, *, valid_snapshots: int = 1, test_snapshots: int = 1
) -> TimeSplit:
    """Split snapshot instants into train, validation and test by time, without label overlap.

    The latest ``test_snapshots`` snapshots are the test part. Going back, the
    latest ``valid_snapshots`` whose label windows end before the first test
    snapshot form the validation part, and every earlier snapshot whose label
    window ends before the first validation snapshot trains. Snapshots in
    between are gaps.

    Parameters
    ----------
    snapshots : sequence of datetime
        Fully labelled snapshot instants.
    horizon_days : int
        The label horizon.
    valid_snapshots, test_snapshots : int

    Returns
    -------
    TimeSplit

    Raises
    ------
    TrainingDataError
        If there are not enough snapshots for all three parts.

    Examples
    --------
    >>> from churnml.config import utc
    >>> weeks = [utc(f"2024-03-{d:02d}") for d in (1, 8, 15, 22, 29)]
    >>> s = time_split(weeks, 14)
    >>> [x.day for x in s.train], [x.day for x in s.valid], [x.day for x in s.test], [x.day for x in s.gap]
    ([1], [15], [29], [8, 22])
    """
    instants = sorted(set(snapshots))
    need = f"valid_snapshots={valid_snapshots} and test_snapshots={test_snapshots} with a {horizon_days}-day horizon"
    if len(instants) < 3:
        raise TrainingDataError(
            f"{len(instants)} labelled snapshot(s) ({', '.join(i.date().isoformat() for i in instants) or 'none'}): "
            "a time-based split needs at least 3 (train, then validation, then test), spaced so "
            f"label windows do not overlap; configure more snapshots ({need})")
    h = dt.timedelta(days=horizon_days)
    test = instants[-test_snapshots:]
    before_test = [s for s in instants if s + h <= test[0]]
    valid = before_test[-valid_snapshots:] if len(before_test) > valid_snapshots else []
    train = [s for s in before_test if valid and s + h <= valid[0]]
    if not valid or not train:
        raise TrainingDataError(
            f"{len(instants)} snapshots from {instants[0].date()} to {instants[-1].date()} are too few or too "
            f"close for train, validation and test parts whose label windows do not overlap ({need}); "
            "add earlier snapshots or shorten the horizon")
    gap = [s for s in instants if s not in set(train) | set(valid) | set(test)]
    return TimeSplit(train, valid, test, gap, horizon_days)
