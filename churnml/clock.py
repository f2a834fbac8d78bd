"""Wall-clock time in the dataset's time zone.

churnml measures every window and every "day" on the product's calendar: the
calendar dates of :attr:`churnml.config.DatasetConfig.timezone` (UTC by
default). A :class:`Clock` converts between instants (aware datetimes, Unix
microseconds) and *wall microseconds*: the local date and time of the zone
written as if it were UTC, so that ``wall_us // DAY_US`` is the local calendar
date and ``wall_us % DAY_US`` the local time of day. In UTC both are the Unix
microseconds themselves.

Columns are converted once per source with :meth:`Clock.to_wall` and
:meth:`Clock.to_instant`, integer expressions that work on every engine: the
zone's offset is piecewise constant between its transitions (daylight saving),
so it is a ``CASE`` over the few transitions in the data's span, and a constant
for UTC and fixed-offset zones.
"""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import ibis
import ibis.expr.datatypes as dtypes

__all__ = ["DAY_US", "Clock", "int_div"]

DAY_US = 86_400_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_NAIVE = dt.datetime(1970, 1, 1)


@ibis.udf.scalar.builtin(name="divide")
def _duckdb_int_div(a: dtypes.int64, b: dtypes.int64) -> dtypes.int64:  # type: ignore[empty-body]
    """DuckDB's integer division (ibis's ``//`` goes through a float ``floor``)."""


def int_div(x: ibis.Value, y: int, engine: str = "duckdb") -> ibis.Value:
    """``x // y`` for non-negative integers, with the engine's integer division where it has one."""
    if engine == "duckdb":
        return _duckdb_int_div(x, ibis.literal(y, "int64"))
    return x // y


def _us(t: dt.datetime) -> int:
    """Unix microseconds of an aware datetime, exactly."""
    d = t - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


class Clock:
    """Conversions between instants and wall-clock time in one IANA time zone.

    Parameters
    ----------
    timezone : str
        IANA name, e.g. ``"UTC"`` or ``"Europe/Berlin"``.

    Raises
    ------
    ValueError
        If the zone is unknown.

    Examples
    --------
    >>> c = Clock("Europe/Berlin")
    >>> c.instant("2024-07-01")  # midnight in Berlin
    datetime.datetime(2024, 6, 30, 22, 0, tzinfo=datetime.timezone.utc)
    >>> c.wall_us(c.instant("2024-07-01")) // DAY_US == (dt.date(2024, 7, 1) - dt.date(1970, 1, 1)).days
    True
    """

    def __init__(self, timezone: str = "UTC"):
        self.name = timezone
        if timezone == "UTC":
            self.zone = dt.UTC
            return
        try:
            self.zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError(
                "The `timezone` parameter of `DatasetConfig` must be an IANA time zone name such as "
                f"'UTC' or 'Europe/Berlin'. Got {timezone!r} instead."
            ) from None

    def __repr__(self) -> str:
        return f"Clock({self.name!r})"

    @cached_property
    def is_utc(self) -> bool:
        """True when wall time equals UTC (so conversions cost nothing)."""
        return self.zone is dt.UTC

    # --- single values --------------------------------------------------------------------
    def localize(self, value: dt.datetime | dt.date | str) -> dt.datetime:
        """``value`` as an aware datetime: naive values and dates are wall-clock times of the zone.

        A wall time that occurs twice (the hour repeated when clocks go back)
        is the first of the two; one that does not exist is read with the
        offset before the change (Python's ``fold=0``).
        """
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if not isinstance(value, dt.datetime):
            value = dt.datetime(value.year, value.month, value.day)
        if value.tzinfo is None:
            value = value.replace(tzinfo=self.zone)
        return value

    def instant(self, value: dt.datetime | dt.date | str) -> dt.datetime:
        """``value`` as an aware UTC datetime (naive values and dates are in the zone)."""
        return self.localize(value).astimezone(dt.UTC)

    def wall_us(self, instant: dt.datetime) -> int:
        """Wall microseconds of an instant (an aware datetime; naive = in the zone)."""
        local = self.localize(instant).astimezone(self.zone)
        return _us(local.replace(tzinfo=dt.UTC))

    def from_wall_us(self, wall: int) -> dt.datetime:
        """The instant (aware, UTC) whose wall time is ``wall`` microseconds (``fold=0``)."""
        naive = _EPOCH_NAIVE + dt.timedelta(microseconds=int(wall))
        return self.instant(naive)

    def is_ambiguous(self, instant: dt.datetime) -> bool:
        """True if the wall time of ``instant`` occurs twice or not at all in the zone."""
        if self.is_utc:
            return False
        naive = _EPOCH_NAIVE + dt.timedelta(microseconds=self.wall_us(instant))
        a = naive.replace(tzinfo=self.zone, fold=0).utcoffset()
        b = naive.replace(tzinfo=self.zone, fold=1).utcoffset()
        return a != b

    def offset_us(self, instant: dt.datetime) -> int:
        """The zone's offset from UTC at ``instant``, in microseconds."""
        off = self.localize(instant).astimezone(self.zone).utcoffset()
        return (off.days * 86_400 + off.seconds) * 1_000_000 + off.microseconds

    # --- transitions and column expressions ------------------------------------------------
    def transitions(self, lo_us: int, hi_us: int) -> tuple[int, list[tuple[int, int, int]]]:
        """Offset changes between two instants (Unix microseconds).

        Returns the offset at ``lo_us`` and a list of ``(instant_us, offset
        before, offset after)``, in order. Offsets are in microseconds.
        """
        def off(u: int) -> int:
            return self.offset_us(_EPOCH + dt.timedelta(microseconds=u))

        start = off(lo_us)
        if self.is_utc:
            return start, []
        out, step = [], DAY_US
        t, o = lo_us, start
        while t < hi_us:
            nxt = min(t + step, hi_us)
            o2 = off(nxt)
            if o2 != o:
                a, b = t, nxt  # off(a) == o, off(b) != o: bisect to the second
                while b - a > 1_000_000:
                    m = (a + b) // 2 // 1_000_000 * 1_000_000
                    m = m if m > a else a + 1_000_000
                    if off(m) == o:
                        a = m
                    else:
                        b = m
                out.append((b, o, off(b)))
                o = off(b)
                t = b
                continue
            t = nxt
        return start, out

    def to_wall(self, us: ibis.Value, lo_us: int, hi_us: int) -> ibis.Value:
        """Wall microseconds of a column of Unix microseconds whose values lie in ``[lo_us, hi_us]``."""
        start, changes = self.transitions(lo_us, hi_us)
        if not changes:
            return us if start == 0 else us + start
        branches = []
        prev = start
        for t, _, after in changes:
            branches.append((us < t, prev))
            prev = after
        return us + ibis.cases(*branches, else_=prev)

    def to_instant(self, wall: ibis.Value, lo_us: int, hi_us: int) -> ibis.Value:
        """Unix microseconds of a column of wall microseconds (values within ``[lo_us, hi_us]``, as wall time).

        Repeated wall times are the first occurrence; missing ones (the hour
        skipped when clocks go forward) are read with the offset before the
        change, as :meth:`localize` does.
        """
        # The instant range that covers the wall range, with a day's margin for the offset.
        start, changes = self.transitions(lo_us - DAY_US, hi_us + DAY_US)
        if not changes:
            return wall if start == 0 else wall - start
        branches = []
        prev = start
        for t, before, after in changes:
            # Wall times below t + max(before, after) still use the old offset (fold=0).
            branches.append((wall < t + max(before, after), prev))
            prev = after
        return wall - ibis.cases(*branches, else_=prev)
