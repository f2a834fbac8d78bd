"""Behaviour versus retention: which early behaviours go with users staying, and from how many times.

For every event type ``E`` and threshold ``k`` this compares users who did
``E`` at least ``k`` times in their first days with those who did it fewer
times, on whether they were active again later (by default: in their second
week). It is the "magic number" analysis ("users who like 4 songs in week one
stay"), done so that its numbers can be trusted as far as observational data
allow:

- **One pass over the log.** The events are scanned once, in the engine
  (DuckDB or Spark through ibis), into one row per eligible user with the
  count of every event type in the first days and a bit mask of the days
  with an activity event; only that table is collected.
- **Threshold found on one half, reported on the other.** Users are split
  into a discovery and a holdout half by a hash of ``user_id``
  (:func:`holdout_mask`). The best ``k`` is searched on the discovery half;
  every reported figure comes from the holdout half, so the search does not
  inflate it.
- **Adjusted for how active users were.** Engaged users do everything more
  *and* stay more. Besides the raw difference, each threshold gets a
  Mantel-Haenszel-weighted difference among users with the same number of
  active days in their first days (:func:`stratified_difference`). It is
  still an association: only a randomised test shows that a behaviour
  causes retention (:data:`CONFOUNDING_NOTE`).

Day semantics are those of :mod:`churnml.retention`: UTC calendar days
numbered ``epoch_us(ts) // DAY_US``; a user's day ``N`` is ``signup_day + N``;
the log's complete days end before ``floor(observed_until)``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import ibis
import numpy as np
import pandas as pd

from churnml.data import Dataset
from churnml.features.build import epoch_us, instant_us
from churnml.features.definitions import DAY_US
from churnml.retention import wilson_interval

__all__ = [
    "CONFOUNDING_NOTE",
    "CURVE_COLUMNS",
    "PAIR_COLUMNS",
    "THRESHOLD_COLUMNS",
    "BehaviourCounts",
    "analyse_behaviours",
    "behaviour_counts",
    "behaviour_retention",
    "holdout_mask",
    "retention_curves",
    "stratified_difference",
]

#: Output columns of :func:`retention_curves`, in order.
CURVE_COLUMNS = [
    "event", "k", "n_at_least", "n_below", "retained_at_least", "retained_below", "rate_at_least",
    "rate_below", "ci_low_at_least", "ci_high_at_least", "ci_low_below", "ci_high_below", "share_at_least",
]
#: Output columns of the ``thresholds`` table of :func:`analyse_behaviours`, in order.
THRESHOLD_COLUMNS = [
    "event", "k", "share_at_least", "rate_at_least", "rate_below", "lift_ratio", "diff", "diff_ci_low",
    "diff_ci_high", "adjusted_diff", "adjusted_ci_low", "adjusted_ci_high", "n_at_least", "n_below", "note",
]
_PAIR_GROUPS = ("both", "a_only", "b_only", "neither")
#: Output columns of the ``pairs`` table of :func:`analyse_behaviours`, in order.
PAIR_COLUMNS = ["event_a", "k_a", "event_b", "k_b"] + [
    f"{stat}_{g}" for g in _PAIR_GROUPS for stat in ("n", "rate", "ci_low", "ci_high")
] + ["lift_both_vs_neither"]

#: Why the figures are associations, in plain words (``confounding_note`` of :func:`analyse_behaviours`).
CONFOUNDING_NOTE = (
    "These are associations, not effects. Engaged users do almost everything more often - they like, "
    "search and share more - and they also stay more, so any behaviour that comes with engagement will "
    "look like it 'drives' retention even if it does nothing. The adjusted figure takes out the most "
    "obvious part of this: it compares users who were active on the same number of days in their first "
    "week, and averages those like-for-like differences. It cannot take out what the log does not show "
    "(taste, intent, how much time a user has), so a behaviour can still look good because the kind of "
    "user who does it would have stayed anyway; and if a behaviour really does keep users around, it also "
    "makes them active on more days in that first week, so the adjustment can hide part of a real "
    "effect. Thresholds were chosen on one random half of users and every figure is measured on the "
    "other half, so the search for the best threshold does not inflate them. Only a randomised "
    "test - for example nudging a random half of new users towards the behaviour and comparing "
    "their retention with the other half - shows whether the behaviour causes retention."
)

# Day masks are int64 bit sets of days 0..window-1; bit 63 is the sign bit.
_MAX_WINDOW = 62
_NOBODY = "nobody did this in their first {days} days"
_TOO_SMALL = "groups too small"
_NO_HOLDOUT = "no users with the same active days on both sides in the holdout half"


# --------------------------------------------------------------------------------------------
# The one pass over the events


@dataclass(frozen=True)
class BehaviourCounts:
    """Per-user behaviour counts and outcome: the only table collected from the engine.

    Attributes
    ----------
    users : DataFrame
        One row per eligible user, sorted by ``user_id``: ``user_id``,
        ``signup_day`` (days since 1970-01-01), ``first_week_active_days``
        (days ``0 .. first_days - 1`` with an activity event, ``0 ..
        first_days``) and ``retained`` (bool: an activity event on days
        ``outcome_start .. outcome_end - 1``).
    counts : DataFrame
        Same rows and order (a RangeIndex); one int64 column per event type
        with the number of such events on days ``0 .. first_days - 1``.
    first_days, outcome_start, outcome_end : int
        The windows, in days after the signup day.
    end_day : int
        First day that is not complete (``floor(observed_until)``, in days).
    """

    users: pd.DataFrame
    counts: pd.DataFrame
    first_days: int
    outcome_start: int
    outcome_end: int
    end_day: int

    @property
    def events(self) -> list[str]:
        """The event types counted, in column order."""
        return list(self.counts.columns)


def _check_int(value, name: str, owner: str, low: int, what: str | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(
            f"The `{name}` parameter of `{owner}` must be {what or f'an int >= {low}'}. Got {value!r} instead."
        )


def _check_windows(first_days, outcome_start, outcome_end, owner: str) -> None:
    _check_int(first_days, "first_days", owner, 1)
    _check_int(outcome_start, "outcome_start", owner, first_days,
               f"an int >= first_days ({first_days}), so behaviour and outcome do not overlap")
    _check_int(outcome_end, "outcome_end", owner, outcome_start + 1,
               f"an int > outcome_start ({outcome_start})")
    if outcome_end > _MAX_WINDOW:
        raise ValueError(
            f"The `outcome_end` parameter of `{owner}` must be <= {_MAX_WINDOW}. Got {outcome_end!r} instead."
        )


def _day_bits(mask: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Number of set bits ``start .. stop - 1`` of each int64 day mask."""
    out = np.zeros(len(mask), dtype="int64")
    for b in range(start, stop):
        out += (mask >> b) & 1
    return out


def behaviour_counts(
    ds: Dataset,
    *,
    first_days: int = 7,
    outcome_start: int = 7,
    outcome_end: int = 14,
) -> BehaviourCounts:
    """Count every event type in each user's first days, and whether they were active later.

    Eligible are users whose signup day ``S`` has its whole window complete
    in the log: ``S + max(first_days, outcome_end) <= floor(observed_until)``
    (in days). The events are read once, in the engine; only one row per
    eligible user is collected.

    Parameters
    ----------
    ds : Dataset
        Validated dataset. Every event type of ``ds.event_types()`` is a
        behaviour; only ``config.activity_events`` (all events if None)
        count as activity for ``first_week_active_days`` and ``retained``.
    first_days : int, default 7
        Behaviours are counted on days ``0 .. first_days - 1`` after the
        signup day (day 0).
    outcome_start, outcome_end : int, default 7 and 14
        A user is retained with an activity event on days ``outcome_start ..
        outcome_end - 1``; ``first_days <= outcome_start < outcome_end <= 62``.

    Returns
    -------
    BehaviourCounts

    Raises
    ------
    ValueError
        If the windows are invalid.

    Examples
    --------
    >>> bc = behaviour_counts(ds)                     # doctest: +SKIP
    >>> bc.counts["like"].ge(4).mean()                # doctest: +SKIP
    """
    _check_windows(first_days, outcome_start, outcome_end, "behaviour_counts")
    window = max(first_days, outcome_end)
    until = ds.observed_until
    end_day = instant_us(until) // DAY_US
    events = ds.event_types()

    u = ds.users.filter(ds.users.signup_ts.notnull() & (ds.users.signup_ts < ibis.literal(until)))
    u = u.select("user_id", signup_day=epoch_us(ds, u.signup_ts) // DAY_US)
    u = u.filter(u.signup_day + window <= end_day)
    ev = ds.events.select("user_id", "event", day=epoch_us(ds, ds.events.ts) // DAY_US)
    keys = u.select(uid="user_id", sday="signup_day")
    j = ev.join(keys, ev.user_id == keys.uid)
    j = j.mutate(rel=j.day - j.sday)
    j = j.filter((j.rel >= 0) & (j.rel < window))
    early = j.rel < first_days
    acts = ds.config.activity_events
    is_act = j.event.isin(list(acts)) if acts else ibis.literal(True)
    # One conditional aggregate per event type and one OR of day bits: a single group-by over the events.
    aggs = {f"_n{i}": j.count(where=early & (j.event == e)) for i, e in enumerate(events)}
    aggs["_mask"] = (ibis.literal(1, "int64") << j.rel.cast("int64")).bit_or(where=is_act)
    per_user = j.group_by(j.user_id).aggregate(**aggs)
    table = u.left_join(per_user, u.user_id == per_user.user_id).select(
        u.user_id, u.signup_day, *[per_user[c] for c in aggs])
    df = table.to_pyarrow().to_pandas()

    df = df.sort_values("user_id", kind="stable").reset_index(drop=True)
    mask = df["_mask"].fillna(0).to_numpy(dtype="int64")
    users = pd.DataFrame({
        "user_id": df["user_id"],
        "signup_day": df["signup_day"].astype("int64"),
        "first_week_active_days": _day_bits(mask, 0, first_days),
        "retained": _day_bits(mask, outcome_start, outcome_end) > 0,
    })
    counts = pd.DataFrame({e: df[f"_n{i}"].fillna(0).to_numpy(dtype="int64") for i, e in enumerate(events)},
                          columns=events)
    return BehaviourCounts(users=users, counts=counts, first_days=first_days, outcome_start=outcome_start,
                           outcome_end=outcome_end, end_day=end_day)


# --------------------------------------------------------------------------------------------
# Statistics


def holdout_mask(user_ids, *, seed: int = 0) -> np.ndarray:
    """Deterministic half split of users: True for the holdout half, False for discovery.

    The split is a hash of ``str(user_id)`` keyed by ``seed``, so a user
    lands in the same half in every run, whatever the row order or the rest
    of the population.

    Parameters
    ----------
    user_ids : array_like
        User ids (any type; compared by their string form).
    seed : int, default 0
        Non-negative; another seed gives another split.

    Returns
    -------
    ndarray of bool

    Examples
    --------
    >>> holdout_mask(["a", "b", "c", "d"], seed=0).tolist() == holdout_mask(["d", "c", "b", "a"])[::-1].tolist()
    True
    """
    _check_int(seed, "seed", "holdout_mask", 0)
    ids = pd.Series(np.asarray(user_ids, dtype=object)).astype(str)
    h = pd.util.hash_pandas_object(ids, index=False, hash_key=f"{seed % 10**16:016d}").to_numpy()
    return (h >> np.uint64(63)).astype(bool)


def _rate(k, n) -> np.ndarray:
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, k / n, np.nan)


def _tables(count: np.ndarray, retained: np.ndarray, strata: np.ndarray, max_k: int, n_strata: int):
    """Users and retained users at least / below each k = 1..max_k, per stratum: arrays (n_strata, max_k)."""
    c = np.minimum(count, max_k)
    cell = strata * (max_k + 1) + c
    size = n_strata * (max_k + 1)
    n = np.bincount(cell, minlength=size).reshape(n_strata, max_k + 1)
    r = np.bincount(cell, weights=retained.astype(float), minlength=size).reshape(n_strata, max_k + 1)
    # At least k <=> clipped count >= k: a reverse cumulative sum over the count axis.
    n1 = np.cumsum(n[:, ::-1], axis=1)[:, ::-1][:, 1:]
    r1 = np.cumsum(r[:, ::-1], axis=1)[:, ::-1][:, 1:]
    n0 = n.sum(axis=1, keepdims=True) - n1
    r0 = r.sum(axis=1, keepdims=True) - r1
    return n1, r1, n0, r0


def _mh(n1, r1, n0, r0, z: float):
    """Mantel-Haenszel risk difference over axis 0 (strata) and its normal interval."""
    n1, r1, n0, r0 = (np.asarray(a, dtype=float) for a in (n1, r1, n0, r0))
    with np.errstate(divide="ignore", invalid="ignore"):
        both = (n1 > 0) & (n0 > 0)
        w = np.where(both, n1 * n0 / np.where(both, n1 + n0, 1.0), 0.0)
        p1 = np.where(n1 > 0, r1 / np.where(n1 > 0, n1, 1.0), 0.0)
        p0 = np.where(n0 > 0, r0 / np.where(n0 > 0, n0, 1.0), 0.0)
        sw = w.sum(axis=0)
        est = np.where(sw > 0, (w * (p1 - p0)).sum(axis=0) / np.where(sw > 0, sw, 1.0), np.nan)
        v = w**2 * (p1 * (1 - p1) / np.where(n1 > 0, n1, 1.0) + p0 * (1 - p0) / np.where(n0 > 0, n0, 1.0))
        se = np.where(sw > 0, np.sqrt(v.sum(axis=0)) / np.where(sw > 0, sw, 1.0), np.nan)
    return est, est - z * se, est + z * se


def stratified_difference(exposed, retained, strata, *, z: float = 1.96) -> tuple[float, float, float]:
    """Mantel-Haenszel difference of retention rates (exposed minus not), adjusted for strata.

    The like-for-like difference ``p1_s - p0_s`` of each stratum ``s`` is
    averaged with weights ``w_s = n1_s * n0_s / (n1_s + n0_s)``; strata where
    either group is empty get no weight. The interval is normal, with
    variance ``sum(w_s^2 * (p1_s (1 - p1_s) / n1_s + p0_s (1 - p0_s) / n0_s)) /
    sum(w_s)^2`` (weights taken as fixed; fine for the few large strata of
    active-day counts).

    Parameters
    ----------
    exposed : array_like of bool
        Did the behaviour (at least k times).
    retained : array_like of bool
    strata : array_like
        Stratum of each user (e.g. active days in the first week).
    z : float, default 1.96
        Normal quantile of the interval (95%).

    Returns
    -------
    estimate, ci_low, ci_high : float
        NaN when no stratum has users in both groups.

    Examples
    --------
    >>> est, lo, hi = stratified_difference([1, 0, 1, 0], [1, 0, 1, 1], [1, 1, 2, 2])
    >>> est
    0.5
    """
    exposed = np.asarray(exposed, dtype=bool)
    retained = np.asarray(retained, dtype=bool)
    codes, levels = pd.factorize(pd.Series(np.asarray(strata)), sort=True)
    m = len(levels)
    n1 = np.bincount(codes[exposed], minlength=m)
    r1 = np.bincount(codes[exposed & retained], minlength=m)
    n0 = np.bincount(codes[~exposed], minlength=m)
    r0 = np.bincount(codes[~exposed & retained], minlength=m)
    est, lo, hi = _mh(n1, r1, n0, r0, z)
    return float(est), float(lo), float(hi)


# --------------------------------------------------------------------------------------------
# Tables


def retention_curves(bc: BehaviourCounts, *, max_k: int = 10) -> pd.DataFrame:
    """Retention of users who did each behaviour at least k times versus fewer, for k = 1..max_k.

    Descriptive: over all eligible users, unadjusted.

    Parameters
    ----------
    bc : BehaviourCounts
    max_k : int, default 10

    Returns
    -------
    DataFrame
        One row per event type (in ``bc.events`` order) and ``k``:
        ``event, k, n_at_least, n_below, retained_at_least, retained_below,
        rate_at_least, rate_below`` (NaN for an empty group),
        ``ci_low_at_least, ci_high_at_least, ci_low_below, ci_high_below``
        (95% Wilson) and ``share_at_least``.

    Raises
    ------
    ValueError
        If ``max_k`` is not an int >= 1.
    """
    _check_int(max_k, "max_k", "retention_curves", 1)
    retained = bc.users["retained"].to_numpy(dtype=bool)
    zero = np.zeros(len(retained), dtype="int64")
    parts = []
    for e in bc.events:
        n1, r1, n0, r0 = (a[0] for a in _tables(bc.counts[e].to_numpy(), retained, zero, max_k, 1))
        parts.append(pd.DataFrame({
            "event": e, "k": np.arange(1, max_k + 1), "n_at_least": n1, "n_below": n0,
            "retained_at_least": r1.round().astype("int64"), "retained_below": r0.round().astype("int64"),
        }))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object if c == "event" else float) for c in CURVE_COLUMNS})
    out = pd.concat(parts, ignore_index=True)
    out["rate_at_least"] = _rate(out["retained_at_least"], out["n_at_least"])
    out["rate_below"] = _rate(out["retained_below"], out["n_below"])
    out["ci_low_at_least"], out["ci_high_at_least"] = wilson_interval(out["retained_at_least"],
                                                                      out["n_at_least"])
    out["ci_low_below"], out["ci_high_below"] = wilson_interval(out["retained_below"], out["n_below"])
    out["share_at_least"] = _rate(out["n_at_least"], out["n_at_least"] + out["n_below"])
    return out[CURVE_COLUMNS]


def _choose_k(count, retained, strata, n_strata, max_k, min_group) -> int | None:
    """The k with the largest stratified difference, among k with both groups >= min_group."""
    n1, r1, n0, r0 = _tables(count, retained, strata, max_k, n_strata)
    adj, _, _ = _mh(n1, r1, n0, r0, 1.96)
    ok = (n1.sum(axis=0) >= min_group) & (n0.sum(axis=0) >= min_group) & np.isfinite(adj)
    if not ok.any():
        return None
    # Ties go to the smallest k (argmax returns the first maximum).
    return int(np.argmax(np.where(ok, adj, -np.inf))) + 1


def _report(count, retained, strata, n_strata, k: int, z: float) -> dict:
    """Holdout figures of one threshold."""
    n1s, r1s, n0s, r0s = (a[:, k - 1] for a in _tables(count, retained, strata, k, n_strata))
    n1, r1, n0, r0 = n1s.sum(), r1s.sum(), n0s.sum(), r0s.sum()
    p1, p0 = float(_rate(r1, n1)), float(_rate(r0, n0))
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0) if n1 and n0 else np.nan
        lift = p1 / p0 if p0 > 0 else np.nan
    adj, lo, hi = (float(v) for v in _mh(n1s, r1s, n0s, r0s, z))
    return {
        "share_at_least": float(_rate(n1, n1 + n0)), "rate_at_least": p1, "rate_below": p0,
        "lift_ratio": lift, "diff": p1 - p0, "diff_ci_low": p1 - p0 - z * se, "diff_ci_high": p1 - p0 + z * se,
        "adjusted_diff": adj, "adjusted_ci_low": lo, "adjusted_ci_high": hi,
        "n_at_least": int(n1), "n_below": int(n0),
    }


def _pair_row(a: str, ka: int, b: str, kb: int, bc: BehaviourCounts, hold: np.ndarray) -> dict:
    ya = bc.counts[a].to_numpy()[hold] >= ka
    yb = bc.counts[b].to_numpy()[hold] >= kb
    ret = bc.users["retained"].to_numpy(dtype=bool)[hold]
    row: dict = {"event_a": a, "k_a": ka, "event_b": b, "k_b": kb}
    for g, m in zip(_PAIR_GROUPS, (ya & yb, ya & ~yb, ~ya & yb, ~ya & ~yb), strict=True):
        n, r = int(m.sum()), int(ret[m].sum())
        low, high = wilson_interval(r, n)
        row.update({f"n_{g}": n, f"rate_{g}": float(_rate(r, n)), f"ci_low_{g}": float(low),
                    f"ci_high_{g}": float(high)})
    both, neither = row["rate_both"], row["rate_neither"]
    row["lift_both_vs_neither"] = both / neither if neither > 0 else np.nan
    return row


def _outcome_phrase(bc: BehaviourCounts) -> str:
    if (bc.outcome_start, bc.outcome_end) == (7, 14):
        return "active in their second week"
    return f"active on days {bc.outcome_start}-{bc.outcome_end - 1} after signup"


def _times(k: int) -> str:
    return "at least once" if k == 1 else f"at least {k} times"


def _headline(row, bc: BehaviourCounts) -> str:
    p1, p0 = row["rate_at_least"], row["rate_below"]
    ratio = f"{row['lift_ratio']:.1f}× as often" if np.isfinite(row["lift_ratio"]) else "more often"
    if np.isfinite(row["lift_ratio"]) and row["lift_ratio"] < 1:
        ratio = f"only {row['lift_ratio']:.1f}× as often"
    text = (f"Users who did '{row['event']}' {_times(int(row['k']))} in their first {bc.first_days} days "
            f"({row['share_at_least']:.0%} of users) were {_outcome_phrase(bc)} {ratio} "
            f"({p1:.0%} vs {p0:.0%})")
    adj = row["adjusted_diff"]
    if np.isfinite(adj):
        lo, hi = row["adjusted_ci_low"], row["adjusted_ci_high"]
        text += (f"; among users with the same number of active days in their first {bc.first_days} days "
                 f"the difference is {100 * adj:+.1f} points (95% CI {100 * lo:+.1f} to {100 * hi:+.1f})")
        if lo <= 0 <= hi:
            text += ", not distinguishable from no difference"
    return text + "."


def _summary(bc: BehaviourCounts, thresholds: pd.DataFrame, n_hold: int, seed: int, top: int = 5) -> list[str]:
    n = len(bc.users)
    if n == 0:
        return [f"No user has a complete {bc.outcome_end}-day window in the log yet, "
                "so there is nothing to compare."]
    days = bc.users["signup_day"]
    first, last = (pd.Timestamp(int(d), unit="D").date().isoformat() for d in (days.min(), days.max()))
    lines = [f"{n:,} users signed up between {first} and {last} with a complete {bc.outcome_end}-day window; "
             f"{bc.users['retained'].mean():.0%} were {_outcome_phrase(bc)}."]
    valid = thresholds[thresholds["adjusted_diff"].notna()]
    lines += [_headline(row, bc) for _, row in valid.head(top).iterrows()]
    nobody = thresholds.loc[thresholds["note"].str.startswith("nobody", na=False), "event"].tolist()
    if nobody:
        lines.append(f"Nobody did {', '.join(repr(e) for e in nobody)} in their first {bc.first_days} days.")
    lines.append(
        f"Each threshold ('at least k times') was chosen on a random half of users (seed {seed}) "
        f"and every figure above is measured on the other half ({n_hold:,} users). These are associations: engaged users do "
        "everything more, so they do not show that a behaviour causes retention (see the confounding note).")
    return lines


def analyse_behaviours(
    bc: BehaviourCounts,
    *,
    max_k: int = 10,
    min_group: int = 30,
    seed: int = 0,
    top_pairs: int = 4,
    z: float = 1.96,
) -> dict:
    """Behaviour-versus-retention tables from collected counts (pure; see :func:`behaviour_retention`).

    Parameters
    ----------
    bc : BehaviourCounts
        From :func:`behaviour_counts`.
    max_k : int, default 10
        Thresholds ``k = 1..max_k`` are considered.
    min_group : int, default 30
        On the discovery half, a ``k`` is a candidate only if both groups
        (at least k, below k) have at least this many users.
    seed : int, default 0
        Seed of the discovery/holdout split (:func:`holdout_mask`).
    top_pairs : int, default 4
        Pairs are formed among this many top behaviours.
    z : float, default 1.96
        Normal quantile of the difference intervals (95%).

    Returns
    -------
    dict
        ``curves`` (:data:`CURVE_COLUMNS`, all eligible users),
        ``thresholds`` (:data:`THRESHOLD_COLUMNS`, holdout half),
        ``pairs`` (:data:`PAIR_COLUMNS`, holdout half), ``summary`` (list
        of str), ``confounding_note`` (str), and ``n_users``,
        ``n_discovery``, ``n_holdout`` (int).

    Raises
    ------
    ValueError
        If a parameter is invalid.
    """
    owner = "analyse_behaviours"
    _check_int(max_k, "max_k", owner, 1)
    _check_int(min_group, "min_group", owner, 1)
    _check_int(seed, "seed", owner, 0)
    _check_int(top_pairs, "top_pairs", owner, 0)
    users = bc.users
    retained = users["retained"].to_numpy(dtype=bool)
    strata = users["first_week_active_days"].to_numpy(dtype="int64")
    n_strata = bc.first_days + 1
    hold = holdout_mask(users["user_id"].to_numpy(), seed=seed)
    disc = ~hold

    rows = []
    for e in bc.events:
        count = bc.counts[e].to_numpy()
        row = {"event": e, "k": np.nan}
        if not (count > 0).any():
            row["note"] = _NOBODY.format(days=bc.first_days)
        else:
            k = _choose_k(count[disc], retained[disc], strata[disc], n_strata, max_k, min_group)
            if k is None:
                row["note"] = _TOO_SMALL
            else:
                row.update(k=k, **_report(count[hold], retained[hold], strata[hold], n_strata, k, z))
                row["note"] = "" if np.isfinite(row["adjusted_diff"]) else _NO_HOLDOUT
        rows.append(row)
    thresholds = pd.DataFrame(rows, columns=THRESHOLD_COLUMNS)
    thresholds["k"] = thresholds["k"].astype("Int64")
    for c in ("n_at_least", "n_below"):
        thresholds[c] = thresholds[c].astype("Int64")
    thresholds = thresholds.sort_values("adjusted_diff", ascending=False, na_position="last", kind="stable")
    thresholds = thresholds.reset_index(drop=True)

    ranked = thresholds[thresholds["adjusted_diff"].notna()].head(top_pairs)
    picks = list(zip(ranked["event"], ranked["k"].astype(int), strict=True))
    pairs = pd.DataFrame(
        [_pair_row(a, ka, b, kb, bc, hold) for (a, ka), (b, kb) in itertools.combinations(picks, 2)],
        columns=PAIR_COLUMNS)

    return {
        "curves": retention_curves(bc, max_k=max_k),
        "thresholds": thresholds,
        "pairs": pairs,
        "summary": _summary(bc, thresholds, int(hold.sum()), seed),
        "confounding_note": CONFOUNDING_NOTE,
        "n_users": len(users),
        "n_discovery": int(disc.sum()),
        "n_holdout": int(hold.sum()),
    }


def behaviour_retention(
    ds: Dataset,
    *,
    first_days: int = 7,
    outcome_start: int = 7,
    outcome_end: int = 14,
    max_k: int = 10,
    min_group: int = 30,
    seed: int = 0,
    top_pairs: int = 4,
) -> dict:
    """Which early behaviours go with users staying, and the threshold that best separates them.

    Reads the log once (:func:`behaviour_counts`), then searches each
    behaviour's threshold on a discovery half of users and reports it on
    the holdout half (:func:`analyse_behaviours`).

    Parameters
    ----------
    ds : Dataset
    first_days, outcome_start, outcome_end : int, default 7, 7, 14
        Behaviours are counted on days ``0 .. first_days - 1`` after signup;
        a user is retained if active on days ``outcome_start ..
        outcome_end - 1`` (by default: in their second week).
    max_k, min_group, seed, top_pairs
        As in :func:`analyse_behaviours`.

    Returns
    -------
    dict
        ``curves``, ``thresholds``, ``pairs`` (DataFrames), ``summary``
        (list of str), ``confounding_note`` (str), ``n_users``,
        ``n_discovery``, ``n_holdout``; see :func:`analyse_behaviours`.

    Raises
    ------
    ValueError
        If a parameter is invalid.

    Examples
    --------
    >>> res = behaviour_retention(ds)                          # doctest: +SKIP
    >>> res["thresholds"][["event", "k", "adjusted_diff"]]     # doctest: +SKIP
    >>> print("\\n".join(res["summary"]))                      # doctest: +SKIP
    """
    # Check the cheap parameters before the scan of the log.
    owner = "behaviour_retention"
    _check_windows(first_days, outcome_start, outcome_end, owner)
    for name, value, low in (("max_k", max_k, 1), ("min_group", min_group, 1), ("seed", seed, 0),
                             ("top_pairs", top_pairs, 0)):
        _check_int(value, name, owner, low)
    bc = behaviour_counts(ds, first_days=first_days, outcome_start=outcome_start, outcome_end=outcome_end)
    return analyse_behaviours(bc, max_k=max_k, min_group=min_group, seed=seed, top_pairs=top_pairs)
