"""Budgeted channel assignment: at most one channel per user, the largest expected net value first.

:func:`assign_channels` turns per-channel expected net values (``value_per_user
* uplift - cost``) into one channel or none per user, within a count budget, a
money budget and per-channel caps. It is the decision step of the nightly
multi-channel list (:func:`churnml.scoring.recall_list`) and of every policy
the uplift job evaluates, so that all are judged by the same rules:

* a channel with non-positive expected uplift or net value is never chosen;
* without a money budget each user gets the channel with the largest net
  value, the users with the largest values first, and a channel that is full
  sends its lowest-value users to their next-best channel (deferred
  acceptance: users propose their channels in order of value, channels keep
  their best proposals);
* with a money budget the values are priced: each user compares ``net value
  - lam * cost`` across channels, and the smallest ``lam >= 0`` whose
  assignment fits the budget is found by bisection (the Lagrangian of the
  budget constraint), so a cheap channel wins where the dear one's extra
  value does not pay for the money it takes from others;
* what still does not fit (the last users of the count budget, rounding of
  the money budget) is cut in order of value.
"""

from __future__ import annotations

import numpy as np

__all__ = ["NONE", "assign_channels"]

#: The channel index of a user who gets no message.
NONE = -1


def _deferred_acceptance(score: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Each user's channel (or NONE): users propose channels by descending score, channels keep their best.

    ``score`` is (n, K) with -inf where a channel is not allowed; ``caps`` the
    most users per channel (inf = no cap).
    """
    n, k = score.shape
    choice = np.full(n, NONE)
    prefs = np.argsort(-score, axis=1, kind="stable")
    nxt = np.zeros(n, dtype=np.int64)  # the next preference each user would propose
    held = np.zeros(n, dtype=bool)
    for _ in range(k):
        free = ~held & (nxt < k)
        if not free.any():
            break
        users = np.flatnonzero(free)
        prop = prefs[users, nxt[users]]
        ok = np.isfinite(score[users, prop])
        nxt[users] += 1
        users, prop = users[ok], prop[ok]
        choice[users] = prop
        held[users] = True
        for c in range(k):
            if not np.isfinite(caps[c]):
                continue
            mine = np.flatnonzero(held & (choice == c))
            if mine.size > caps[c]:
                # Keep the best; ties by user order so the result never depends on chance.
                order = np.lexsort((mine, -score[mine, c]))
                drop = mine[order[int(caps[c]):]]
                choice[drop], held[drop] = NONE, False
    return choice


def _cut(choice: np.ndarray, value: np.ndarray, cost: np.ndarray, max_contacts, max_cost) -> np.ndarray:
    """Keep the highest-value assignments within the count and money budgets (ties by user order)."""
    chosen = np.flatnonzero(choice != NONE)
    if not chosen.size:
        return choice
    order = chosen[np.lexsort((chosen, -value[chosen, choice[chosen]]))]
    keep = np.ones(order.size, dtype=bool)
    if max_contacts is not None:
        keep[int(max_contacts):] = False
    if max_cost is not None:
        spent = np.cumsum(np.where(keep, cost[choice[order]], 0.0))
        keep &= spent <= max_cost * (1 + 1e-12)
    out = choice.copy()
    out[order[~keep]] = NONE
    return out


def assign_channels(net_value, cost, *, uplift=None, max_contacts: int | None = None,
                    max_cost: float | None = None, caps=None, iterations: int = 40) -> np.ndarray:
    """Give each user at most one channel, maximising the summed net value within the budgets.

    Parameters
    ----------
    net_value : array-like of shape (n_users, n_channels)
        Expected net value of messaging each user by each channel, e.g.
        ``value_per_user * uplift - cost``. NaN marks a channel not allowed.
    cost : array-like of shape (n_channels,)
        Cost of one message by each channel (>= 0).
    uplift : array-like of shape (n_users, n_channels), optional
        Expected uplift; channels where it is not positive are never chosen,
        whatever their net value.
    max_contacts : int, optional
        Most users messaged.
    max_cost : float, optional
        Most money spent on messages.
    caps : array-like of shape (n_channels,), optional
        Most users per channel (None or NaN entries: no cap).
    iterations : int, default=40
        Bisection steps for the money budget's price.

    Returns
    -------
    ndarray of int, shape (n_users,)
        The chosen channel's column, or ``NONE`` (-1).

    Raises
    ------
    ValueError
        If shapes disagree or a cost, cap or budget is negative.

    Examples
    --------
    Two channels, the second dearer; one message of the second fits the money:

    >>> net = [[0.30, 0.50], [0.20, 0.10], [-0.1, 0.05]]
    >>> assign_channels(net, [0.0, 1.0]).tolist()
    [1, 0, 1]
    >>> assign_channels(net, [0.0, 1.0], max_cost=0.0).tolist()
    [0, 0, -1]
    >>> assign_channels(net, [0.0, 1.0], caps=[None, 1]).tolist()
    [1, 0, -1]
    """
    net = np.asarray(net_value, dtype=float)
    if net.ndim != 2:
        raise ValueError(f"The `net_value` parameter of assign_channels must be a 2-D array. Got shape {net.shape} instead.")
    n, k = net.shape
    cost = np.asarray(cost, dtype=float).reshape(-1)
    if cost.shape != (k,) or (cost < 0).any() or not np.isfinite(cost).all():
        raise ValueError(f"The `cost` parameter of assign_channels must be {k} finite costs >= 0. Got {cost.tolist()} instead.")
    allowed = np.isfinite(net) & (net > 0)
    if uplift is not None:
        up = np.asarray(uplift, dtype=float)
        if up.shape != net.shape:
            raise ValueError(f"The `uplift` parameter of assign_channels must have shape {net.shape}. Got {up.shape} instead.")
        allowed &= np.nan_to_num(up, nan=0.0) > 0
    cap = np.full(k, np.inf)
    if caps is not None:
        given = np.asarray([np.nan if c is None else c for c in caps], dtype=float)
        if given.shape != (k,) or (given < 0).any():
            raise ValueError(f"The `caps` parameter of assign_channels must be {k} counts >= 0 or None. Got {list(caps)} instead.")
        cap = np.where(np.isnan(given), np.inf, given)
    for name, v in (("max_contacts", max_contacts), ("max_cost", max_cost)):
        if v is not None and not v >= 0:
            raise ValueError(f"The `{name}` parameter of assign_channels must be >= 0 or None. Got {v!r} instead.")
    value = np.where(allowed, net, -np.inf)

    def solve(lam: float) -> np.ndarray:
        priced = np.where(allowed, net - lam * cost, -np.inf)
        priced[priced <= 0] = -np.inf
        choice = _deferred_acceptance(priced, cap)
        # The count budget goes to the best priced values, the money budget is then cut in value order.
        return _cut(choice, np.where(np.isfinite(priced), priced, -np.inf), cost, max_contacts, None)

    choice = solve(0.0)
    if max_cost is not None and cost[choice[choice != NONE]].sum() > max_cost:
        # Spending falls as the price of money rises; find the smallest price that fits.
        ratio = np.where(allowed & (cost > 0), net / np.where(cost > 0, cost, 1), 0.0)
        lo, hi = 0.0, float(ratio.max()) + 1.0
        best = solve(hi)
        for _ in range(iterations):
            mid = (lo + hi) / 2
            trial = solve(mid)
            if cost[trial[trial != NONE]].sum() <= max_cost:
                hi, best = mid, trial
            else:
                lo = mid
        choice = _fill(best, value, cost, cap, max_contacts, max_cost)
    return _cut(choice, value, cost, max_contacts, max_cost)


def _fill(choice: np.ndarray, value: np.ndarray, cost: np.ndarray, cap: np.ndarray, max_contacts,
          max_cost: float) -> np.ndarray:
    """Spend what the priced assignment left of the money on the best remaining (user, channel) pairs."""
    choice = choice.copy()
    left = max_cost - cost[choice[choice != NONE]].sum()
    count = int((choice != NONE).sum())
    used = np.bincount(choice[choice != NONE], minlength=len(cost)).astype(float)
    users = np.flatnonzero(choice == NONE)
    dear = np.flatnonzero(cost > 0)
    u = np.concatenate([users[np.isfinite(value[users, c])] for c in dear] or [np.empty(0, dtype=np.int64)])
    c = np.concatenate([np.full(np.isfinite(value[users, k]).sum(), k) for k in dear] or [np.empty(0, dtype=np.int64)])
    if not u.size:
        return choice
    order = np.lexsort((u, -value[u, c]))
    cheapest = cost[cost > 0].min()
    for i in order:
        if left < cheapest or (max_contacts is not None and count >= max_contacts):
            break
        if choice[u[i]] != NONE or used[c[i]] >= cap[c[i]] or cost[c[i]] > left:
            continue
        choice[u[i]] = c[i]
        left -= cost[c[i]]
        used[c[i]] += 1
        count += 1
    return choice
