"""Subscription coverage and point-in-time subscription features.

Coverage is built from the ``subscriptions`` table (see
:mod:`churnml.subscriptions` for the contract) in two steps that every user
of it shares (features, the ``subscription`` churn definition, the retention
report):

* :func:`spell_rows` numbers each user's rows into *spells*: rows ordered by
  start, a row starting more than ``grace_days`` after all earlier rows'
  coverage has ended begins a new spell; otherwise it continues (a renewal, a
  renewal paid late, a plan switch, an overlapping upgrade);
* :func:`coverage_spells` condenses them to one row per spell: its start and
  its end (empty while running).

Features at ``as_of`` (:func:`subscription_features`) read only
:func:`churnml.subscriptions.as_seen` of the table: rows started before
``as_of``, and an ``end`` only if it is before ``as_of``. All are about the
user's *current* spell (the latest one) unless said otherwise:

=========================== ==========================================================
``sub_covered``             1 if a row is running at ``as_of`` (as far as is known)
``sub_tenure_days``         days since the current spell started
``sub_days_since_end``      days since the current spell ended (empty while covered)
``sub_spells``              spells so far (2 = subscribed again after a lapse)
``sub_renewals``            billing periods begun after the first in the current spell:
                            rows that continue it, plus ``period_days`` boundaries
                            passed inside a row
``sub_days_to_renewal``     days to the running row's next ``period_days`` boundary
``sub_period_days``         billing period of the latest row (if the column exists)
``sub_plan``                plan of the latest row (if the column exists)
``sub_price``               price of the latest row (if the column exists)
``sub_discount``            discount of the latest row (if the column exists)
``sub_discounted_rows``     rows with a discount so far (if the column exists)
``sub_days_since_change``   days since the latest row whose plan, price, period or
                            discount differs from the row before it (or that starts a
                            spell); only if one of those columns exists
=========================== ==========================================================

The latest row is the one that started last (ties: the running one, then the
one ending last).
"""

from __future__ import annotations

import datetime as dt

import ibis

from churnml.features.definitions import DAY_US, Feature
from churnml.subscriptions import as_seen

__all__ = ["FAR_FUTURE", "coverage_spells", "spell_rows", "subscription_features"]

#: Stands for "no end yet" where an end must be compared or maximised.
FAR_FUTURE = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
_TERMS = ("plan", "price", "period_days", "discount")


def _far() -> ibis.Value:
    return ibis.literal(FAR_FUTURE)


def spell_rows(rows: ibis.Table, grace_days: int) -> ibis.Table:
    """Number every user's subscription rows into spells of continuous coverage.

    Parameters
    ----------
    rows : ibis.Table
        ``user_id, start, end`` (``end`` null = running) and any other columns.
    grace_days : int
        A row starting at most this many days after the coverage of all
        earlier rows ended continues the spell.

    Returns
    -------
    ibis.Table
        ``rows`` plus ``spell`` (1, 2, ... per user, in time order).
    """
    end = rows.end.fill_null(_far())
    before = ibis.window(group_by="user_id", order_by=[rows.start, end], rows=(None, -1))
    r = rows.mutate(_reach=end.max().over(before))
    new = r._reach.isnull() | (r.start > r._reach + ibis.interval(days=grace_days))
    r = r.mutate(_new=new.cast("int64"))
    upto = ibis.window(group_by="user_id", order_by=[r.start, r.end.fill_null(_far())], rows=(None, 0))
    return r.mutate(spell=r._new.sum().over(upto)).drop("_reach", "_new")


def coverage_spells(rows: ibis.Table, grace_days: int) -> ibis.Table:
    """One row per spell of continuous coverage: ``user_id, spell, start, end`` (``end`` null = running).

    See :func:`spell_rows`; ``end`` is the latest end of the spell's rows.
    """
    r = spell_rows(rows.select("user_id", "start", "end"), grace_days)
    s = r.group_by("user_id", "spell").aggregate(start=r.start.min(), end=r.end.fill_null(_far()).max())
    return s.mutate(end=ibis.ifelse(s.end == _far(), ibis.null(s.end.type()), s.end))


def _definitions(columns: tuple[str, ...]) -> list[Feature]:
    def f(name, description, fill=None):
        return Feature(name, description, "subscription", "subscriptions", lambda t, n=name: t[n], fill=fill)

    out = [
        f("sub_covered", "has a running subscription (1/0)", fill=0),
        f("sub_tenure_days", "days since the current subscription started"),
        f("sub_days_since_end", "days since the last subscription ended"),
        f("sub_spells", "separate subscriptions so far (a gap longer than the grace starts a new one)", fill=0),
        f("sub_renewals", "renewals in the current subscription so far"),
        f("sub_days_to_renewal", "days to the next renewal of the running subscription"),
    ]
    if "period_days" in columns:
        out.append(f("sub_period_days", "billing period in days of the latest subscription"))
    if "plan" in columns:
        out.append(f("sub_plan", "plan of the latest subscription"))
    if "price" in columns:
        out.append(f("sub_price", "price of the latest subscription"))
    if "discount" in columns:
        out.append(f("sub_discount", "discount of the latest subscription"))
        out.append(f("sub_discounted_rows", "subscription periods with a discount so far", fill=0))
    if any(c in columns for c in _TERMS):
        out.append(f("sub_days_since_change",
                     "days since the last change of plan, price, billing period or discount"))
    return out


def subscription_features(
    rows: ibis.Table, as_of: dt.datetime, *, grace_days: int, epoch_us
) -> tuple[list[Feature], ibis.Table]:
    """Subscription features at ``as_of``, one row per user with a subscription row before it.

    Parameters
    ----------
    rows : ibis.Table
        The validated subscriptions table (``Dataset.subscriptions``).
    as_of : datetime
        Aware snapshot instant; only :func:`~churnml.subscriptions.as_seen` rows are read.
    grace_days : int
        Spell rule (see :func:`spell_rows`).
    epoch_us : callable
        ``epoch_us(ts) -> int64`` microseconds of a timestamp column on the
        dataset's backend.

    Returns
    -------
    features : list of Feature
        In column order; stage ``subscriptions``, family ``subscription``.
    table : ibis.Table
        ``user_id`` and the features. Users without a row before ``as_of`` are
        absent (the build fills ``sub_covered``, ``sub_spells`` and
        ``sub_discounted_rows`` with 0 and leaves the rest empty).
    """
    feats = _definitions(tuple(rows.columns))
    terms = [c for c in _TERMS if c in rows.columns]
    now_us = ibis.literal(int(as_of.timestamp()) * 1_000_000 + as_of.microsecond)
    seen = as_seen(rows.select("user_id", "start", "end", *terms), as_of)
    r = spell_rows(seen, grace_days)
    end_f = r.end.fill_null(_far())
    # Latest row first: the latest start, then the running one, then the latest end.
    order = [ibis.desc(r.start), ibis.desc(end_f)] + [ibis.asc(r[c]) for c in terms]
    in_time = ibis.window(group_by="user_id", order_by=[r.start, end_f] + [r[c] for c in terms])
    mutations = {
        "_last_spell": r.spell.max().over(group_by="user_id"),
        "_rank": ibis.row_number().over(group_by="user_id", order_by=order),
        "_start_us": epoch_us(r.start),
        "_stop_us": epoch_us(r.end.fill_null(ibis.literal(as_of))),
    }
    if terms:
        same = ibis.and_(*[r[c].identical_to(r[c].lag().over(in_time)) for c in terms])
        first_of_spell = r.spell != r.spell.lag().over(in_time)
        mutations["_changed"] = (~same) | first_of_spell.fill_null(True)
    r = r.mutate(**mutations)
    if "period_days" in terms:
        # Period boundaries strictly inside the row's known coverage are implicit renewals.
        elapsed = (r._stop_us - r._start_us) / DAY_US
        r = r.mutate(_implicit=ibis.greatest((elapsed / r.period_days).ceil() - 1, 0).fill_null(0))
    else:
        r = r.mutate(_implicit=ibis.literal(0))
    cur = r.filter(r.spell == r._last_spell)
    per_user = cur.group_by("user_id").aggregate(
        _spell_start_us=cur._start_us.min(),
        _spell_stop_us=cur._stop_us.max(),
        sub_covered=cur.end.isnull().any().cast("int8"),
        _rows=cur.count(),
        _implicit=cur._implicit.sum(),
        sub_spells=cur.spell.max(),
    )
    latest = r.filter(r._rank == 0)  # ibis numbers rows from 0
    latest_cols = {"_latest_start_us": latest._start_us, "_latest_running": latest.end.isnull()}
    latest_cols.update({f"sub_{c}": latest[c] for c in terms})
    latest = latest.select("user_id", **latest_cols)
    t = per_user.join(latest, "user_id")
    if terms:
        hist = r.group_by("user_id").aggregate(
            _change_us=r._start_us.max(where=r._changed),
            **({"sub_discounted_rows": (r.discount > 0).sum()} if "discount" in terms else {}),
        )
        t = t.join(hist, "user_id")
    days = {
        "sub_tenure_days": (now_us - t._spell_start_us) / DAY_US,
        "sub_days_since_end": ibis.ifelse(t.sub_covered == 1, ibis.null("float64"),
                                          (now_us - t._spell_stop_us) / DAY_US),
        "sub_renewals": (t._rows - 1 + t._implicit).cast("int64"),
    }
    if "period_days" in terms:
        since = (now_us - t._latest_start_us) / DAY_US
        k = ibis.greatest((since / t.sub_period_days).ceil(), 1)
        days["sub_days_to_renewal"] = ibis.ifelse(t._latest_running, k * t.sub_period_days - since,
                                                  ibis.null("float64"))
    else:
        days["sub_days_to_renewal"] = ibis.null("float64")
    if terms:
        days["sub_days_since_change"] = (now_us - t._change_us) / DAY_US
    t = t.mutate(**days)
    return feats, t.select("user_id", *[f.name for f in feats])
