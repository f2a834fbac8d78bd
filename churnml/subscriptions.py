"""The ``subscriptions`` table of the data contract: its columns, its checks, its time semantics.

One row is one stretch of paid coverage of one user::

    user_id  start                 end                   plan     price  period_days  discount
    u1       2024-01-01T00:00:00Z  2024-02-01T00:00:00Z  monthly  9.99   31           0
    u1       2024-02-01T00:00:00Z                        monthly  9.99   31           0

``start`` is inclusive and ``end`` exclusive (the user is covered on
``[start, end)``); an empty ``end`` means the subscription is still running.
Both shapes of export work: one row per billing period (a renewal is a new
row starting where the last one ended) or one row per subscription (renewals
are implicit, every ``period_days``). ``plan`` (text), ``price``,
``period_days`` (the billing period in days, e.g. 30 or 365) and ``discount``
(a non-negative amount or share off the list price; 0 = none) are optional.

Time: at an instant ``as_of`` a row is known once it has started
(``start < as_of``), and its ``end`` only once it has passed
(``end < as_of``). A row whose end lies at or after ``as_of`` is seen as
*running*: nothing downstream may know when (or whether) it ends.
:func:`as_seen` is that view; every feature reads it.

Rows of one user may overlap (an upgrade that starts before the old plan's
last day): coverage is their union, and the overlap is reported as a warning,
not refused.
"""

from __future__ import annotations

import datetime as dt

import ibis

from churnml.exceptions import DataProblem

__all__ = ["NUMERIC_COLUMNS", "REQUIRED", "as_seen", "check_subscriptions"]

#: Required columns; ``end`` may be empty (running).
REQUIRED = ("user_id", "start", "end")
#: Optional numeric columns and the smallest valid value (``period_days`` must be positive).
NUMERIC_COLUMNS = {"price": "non-negative", "period_days": "positive", "discount": "non-negative"}


def as_seen(rows: ibis.Table, as_of: dt.datetime) -> ibis.Table:
    """The subscription rows as they are known at ``as_of``.

    Rows that start at or after ``as_of`` are left out; a row whose ``end`` is
    at or after ``as_of`` gets an empty ``end`` (running, end unknown).

    Parameters
    ----------
    rows : ibis.Table
        A validated subscriptions table (``Dataset.subscriptions``).
    as_of : datetime
        An aware instant.

    Returns
    -------
    ibis.Table
        Same columns, fewer rows.
    """
    cut = ibis.literal(as_of)
    known = rows.filter(rows.start < cut)
    return known.mutate(end=ibis.ifelse(known.end < cut, known.end, ibis.null(known.end.type())))


def _scalar(expr):
    return expr.to_pyarrow().as_py()


def _first(t: ibis.Table, pred, value) -> str | None:
    rows = t.filter(pred).select(v=value).limit(1).to_pyarrow().column("v").to_pylist()
    return str(rows[0]) if rows else None


def _row_text(t: ibis.Table) -> ibis.Value:
    end = t.end.cast("string").fill_null("running")
    return t.user_id.cast("string") + " from " + t.start.cast("string") + " to " + end


def _numbers(t: ibis.Table, label: str, problems: list[DataProblem]) -> ibis.Table:
    """Cast the optional numeric columns to float64, recording text and out-of-range values."""
    out = {}
    for col, rule in NUMERIC_COLUMNS.items():
        if col not in t.columns:
            continue
        raw = t[col]
        value = raw.cast("float64") if t.schema()[col].is_numeric() else raw.cast("string").strip().try_cast("float64")
        text = raw.notnull() & value.isnull()
        bad = (value <= 0) if rule == "positive" else (value < 0)
        bad = value.notnull() & bad
        n_text, n_bad = _scalar(text.sum()), _scalar(bad.sum())
        if n_text:
            problems.append(DataProblem(label, col, n_text, "values that are not numbers", _first(t, text, raw)))
        if n_bad:
            problems.append(DataProblem(label, col, n_bad, f"values that are not {rule}", _first(t, bad, raw)))
        out[col] = value
    if "plan" in t.columns and not t.schema()["plan"].is_string():
        out["plan"] = t.plan.cast("string")
    return t.mutate(**out) if out else t


def check_subscriptions(
    t: ibis.Table,
    users: ibis.Table,
    label: str,
    *,
    users_label: str | None,
    until: dt.datetime,
    until_configured: bool,
) -> tuple[ibis.Table, list[DataProblem], list[str]]:
    """Check a subscriptions table (``user_id``, ``start`` already read and typed) against the contract.

    Parameters
    ----------
    t : ibis.Table
        The table after renaming, with ``start`` normalised to UTC.
    users : ibis.Table
        The users table (given or inferred).
    label : str
        The source's name, for messages.
    users_label : str or None
        The users source's name; ``None`` when users are inferred from the log
        (then no user is unknown and there is no signup to start before).
    until : datetime
        Exclusive end of the observed period; rows may not start at or after it.
    until_configured : bool
        Whether ``until`` came from the config (``observed_until``) or is now.

    Returns
    -------
    table : ibis.Table
        ``end`` as UTC timestamps (null = running), numeric columns as float64,
        ``plan`` as text; rows with a missing ``start`` removed (they are reported).
    problems : list of DataProblem
        One per kind of problem: bad ids, unparsable ends, ends not after the
        start, rows starting at or after ``until``, unknown users, rows starting
        before the user's signup, non-numeric or out-of-range prices, periods
        and discounts.
    notes : list of str
        Warnings that do not stop a run (overlapping rows).
    """
    from churnml.data import _bad_ids, _normalise_ts  # the same value rules as the other tables

    problems: list[DataProblem] = []
    ends: list[DataProblem] = []
    t = _normalise_ts(t, "end", label, ends)
    # An empty end is a running subscription, not a missing value.
    problems += [p for p in ends if p.message != "missing timestamps"]
    if any("expected timestamps" in p.message for p in problems):
        return t, problems, []
    t = _numbers(t, label, problems)
    t = t.filter(t.start.notnull())

    bad_id = _bad_ids(t)
    backwards = t.end.notnull() & (t.end <= t.start)
    future = t.start >= ibis.literal(until)
    stats = t.aggregate(bad_id=bad_id.sum(), backwards=backwards.sum(), future=future.sum()).to_pyarrow().to_pylist()[0]
    if stats["bad_id"]:
        problems.append(DataProblem(label, "user_id", stats["bad_id"], "null or empty user ids"))
    if stats["backwards"]:
        problems.append(DataProblem(label, "end", stats["backwards"], "rows whose end is not after their start",
                                    _first(t, backwards, _row_text(t))))
    if stats["future"]:
        when = (f"at or after observed_until {until.isoformat()}" if until_configured
                else f"in the future (after now, {until.isoformat(timespec='seconds')})")
        problems.append(DataProblem(label, "start", stats["future"], f"subscriptions starting {when}",
                                    _first(t, future, t.start)))
    if users_label is not None:
        known = users.select(uid="user_id", signup_ts="signup_ts")
        j = t.left_join(known, t.user_id == known.uid)
        unknown = j.uid.isnull() & j.user_id.notnull()
        early = j.start < j.signup_ts
        s = j.aggregate(unknown=unknown.sum(), early=early.sum()).to_pyarrow().to_pylist()[0]
        if s["unknown"]:
            problems.append(DataProblem(label, "user_id", s["unknown"], f"subscription rows of users missing from "
                                        f"{users_label}", _first(j, unknown, j.user_id)))
        if s["early"]:
            problems.append(DataProblem(label, "start", s["early"], "subscriptions starting before the user's "
                                        "signup_ts", _first(j, early, _row_text(j))))
    if problems:
        return t, problems, []

    notes = []
    far = ibis.literal(dt.datetime(9999, 1, 1, tzinfo=dt.UTC))
    w = ibis.window(group_by="user_id", order_by=[t.start, t.end.fill_null(far)], rows=(None, -1))
    o = t.mutate(reach=t.end.fill_null(far).max().over(w))
    overlap = o.reach.notnull() & (o.start < o.reach)
    n_overlap = _scalar(overlap.sum())
    if n_overlap:
        notes.append(f"{label}: {n_overlap:,} subscription rows start before an earlier row of the same user "
                     f"ends (e.g. {_first(o, overlap, _row_text(o))!r}); coverage is their union")
    return t, problems, notes
