"""The simulated music app's subscription layer (opt-in), with exact churn truth.

Turned on by ``SimulationConfig(subscriptions=SubscriptionConfig())`` (``churnml
simulate --subscriptions``); off by default, and then nothing here runs and
the simulator's outputs are the same as without this module.

The process
-----------
Each user's coverage is a chain of billing periods. On each simulated day,
in this order relative to the base world's steps (see
:mod:`churnml.simulator.world`):

1. **Renewals** (before the day's activity). A subscription whose period ends
   on day ``t`` (at the same time of day as it started; never a midnight) is
   renewed or cancelled. The cancellation probability depends on the user's
   latent state at the start of day ``t`` and observable things:

   - alive: ``cancel_monthly`` (or ``cancel_yearly``) times
     ``exp(-cancel_engagement_slope * (e - engagement_mean))`` — engaged
     listeners cancel less;
   - lapsed or blocked: ``cancel_lapsed`` (they stopped listening);
   - times ``discount_end_multiplier`` at the end of a discounted first period
     (the price goes up); capped at 0.95.

   A renewal is a new row starting where the last ended (undiscounted); a
   cancellation ends coverage at the period's end, and the user cannot
   subscribe again for ``cooldown_days``.
2. **New subscriptions** (after the day's events). An active user who is not
   covered (and not cooling down) subscribes with probability
   ``subscribe_at_signup`` on the signup day, else ``subscribe_rate * (0.3 +
   1.5 e)``, at a random instant after the day's earliest allowed event time;
   yearly with probability ``yearly_share``, with a first-period discount of
   ``discount`` (share of the price) with probability ``discount_share``.

Subscribers are never sent recall campaigns (from their first subscription
on): the app retains them by other means. This keeps every truth exact: on a
path without activity nobody subscribes, so campaign eligibility stays a
deterministic function of the state at the start of a horizon, as the base
world's truth needs; and a covered user's future is free of campaigns.

Ground truth
------------
``truth/subscription_churn.parquet``: for each snapshot ``as_of`` (a
midnight) and each user covered at ``as_of``, ``p_churn`` is the exact
probability that the subscription is cancelled at a renewal in
``[as_of, as_of + horizon_days)`` — the ``subscription`` churn definition's
label, since nobody comes back within ``cooldown_days`` (more than the
``grace_days`` of the dataset config) — given the full latent state at
``as_of``. It is computed by a forward recursion over (latent state,
community membership, capped early like count), the only things that change
the hazard between now and the last renewal in the horizon;
``p_churn_observed`` starts the same recursion from the filtered belief over
the latent state (the best any model that knew the user's parameters could
do from the log).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import factorial

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["SUBSCRIPTION_SCHEMA", "SUBSCRIPTION_TRUTH_README", "SUBSCRIPTION_TRUTH_SCHEMA", "SubscriptionConfig"]

_DAY_US = 86_400_000_000
PLANS = ("monthly", "yearly")

SUBSCRIPTION_SCHEMA = pa.schema([
    ("user_id", pa.int64()),
    ("start", pa.timestamp("us", tz="UTC")),
    ("end", pa.timestamp("us", tz="UTC")),
    ("plan", pa.string()),
    ("price", pa.float64()),
    ("period_days", pa.int64()),
    ("discount", pa.float64()),
])
SUBSCRIPTION_TRUTH_SCHEMA = pa.schema([
    ("as_of", pa.timestamp("us", tz="UTC")),
    ("user_id", pa.int64()),
    ("p_churn", pa.float64()),
    ("p_churn_observed", pa.float64()),
    ("state", pa.string()),
    ("plan", pa.string()),
    ("renewals_in_horizon", pa.int64()),
])

SUBSCRIPTION_TRUTH_README = """
- `subscription_churn.parquet` (subscription layer on, snapshots requested): for each
  `as_of` and each user covered by a subscription at it: `p_churn` = P(the subscription
  is cancelled at a renewal in [as_of, as_of + horizon_days) | latent state at as_of),
  which is the `subscription` churn label (nobody resubscribes within the cooldown,
  longer than the dataset config's grace); `p_churn_observed` = the same from the
  filtered belief; `state` = latent state at as_of; `plan`; `renewals_in_horizon` =
  renewal instants inside the window (0 = cannot churn in it).
"""


class SubscriptionConfig(BaseModel):
    """Parameters of the subscription layer (see the module docstring for the process).

    Parameters
    ----------
    subscribe_at_signup, subscribe_rate : float
        Probability of subscribing on the signup day; per later active day,
        ``subscribe_rate * (0.3 + 1.5 e)``.
    yearly_share : float
        Share of new subscriptions on the yearly plan.
    monthly_days, yearly_days : int
        Billing periods.
    monthly_price, yearly_price : float
        List prices.
    discount_share, discount : float
        Share of new subscriptions with a discounted first period, and the
        discount (a share of the price).
    cancel_monthly, cancel_yearly : float
        Cancellation probability at a renewal of an alive user of mean
        engagement, per plan.
    cancel_engagement_slope : float
        ``exp(-slope * (e - engagement_mean))`` scales the alive users' probability.
    cancel_lapsed : float
        Cancellation probability at a renewal of a lapsed (or blocked) user.
    discount_end_multiplier : float
        Factor at the end of a discounted first period.
    cooldown_days : int
        Days after a cancellation before the user can subscribe again.
    grace_days : int
        The grace the written dataset config uses (``churn.grace_days``);
        must be below ``cooldown_days`` so the truth is the label.
    """

    model_config = ConfigDict(extra="forbid")

    subscribe_at_signup: float = Field(0.08, ge=0, le=1)
    subscribe_rate: float = Field(0.012, ge=0, le=0.5)
    yearly_share: float = Field(0.25, ge=0, le=1)
    monthly_days: int = Field(30, gt=0)
    yearly_days: int = Field(365, gt=0)
    monthly_price: float = Field(9.99, ge=0)
    yearly_price: float = Field(99.0, ge=0)
    discount_share: float = Field(0.3, ge=0, le=1)
    discount: float = Field(0.5, ge=0, le=1)
    cancel_monthly: float = Field(0.05, ge=0, le=1)
    cancel_yearly: float = Field(0.15, ge=0, le=1)
    cancel_engagement_slope: float = 4.0
    cancel_lapsed: float = Field(0.6, ge=0, le=1)
    discount_end_multiplier: float = Field(2.0, ge=0)
    cooldown_days: int = Field(30, ge=1)
    grace_days: int = Field(7, ge=0)

    @model_validator(mode="after")
    def _grace_below_cooldown(self) -> SubscriptionConfig:
        if self.grace_days >= self.cooldown_days:
            raise ValueError(
                "The `grace_days` parameter of `SubscriptionConfig` must be < cooldown_days="
                f"{self.cooldown_days} (a comeback within the grace would not be churn). "
                f"Got {self.grace_days} instead.")
        return self


def _world():
    from churnml.simulator import world  # the base world (imported lazily: it imports this module)

    return world


def _poisson_step(lam: np.ndarray, cap: int) -> np.ndarray:
    """Per user, the transition matrix of a count capped at ``cap`` after adding Poisson(lam)."""
    n = len(lam)
    pmf = np.stack([np.exp(-lam) * lam**j / factorial(j) for j in range(cap + 1)], axis=1)
    t = np.zeros((n, cap + 1, cap + 1))
    for a in range(cap + 1):
        for b in range(a, cap):
            t[:, a, b] = pmf[:, b - a]
        t[:, a, cap] = 1.0 - t[:, a, :cap].sum(axis=1)
    return t


@dataclass
class SubscriptionLayer:
    """The mutable subscription state of one simulation run (private to :func:`~churnml.simulator.simulate`)."""

    config: object  # SimulationConfig
    t0: int  # epoch microseconds of the first simulated day
    rng: np.random.Generator = field(init=False)
    rows: list = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        n = self.config.n_users
        self.sub = self.config.subscriptions
        # A stream of its own: the base world's five streams draw exactly what they draw without it.
        self.rng = np.random.default_rng(np.random.SeedSequence(self.config.seed).spawn(6)[5])
        self.covered = np.zeros(n, dtype=bool)
        self.start_us = np.zeros(n, dtype=np.int64)  # current row's start (epoch us)
        self.period = np.ones(n, dtype=np.int64)
        self.plan = np.zeros(n, dtype=np.int8)
        self.discounted = np.zeros(n, dtype=bool)
        self.cooldown_until = np.full(n, -1, dtype=np.int64)

    # ------------------------------------------------------------------ process

    def _renewal_day(self, idx: np.ndarray) -> np.ndarray:
        """Day index of the current period's end of users ``idx``."""
        return (self.start_us[idx] + self.period[idx] * _DAY_US - self.t0) // _DAY_US

    def cancel_prob(self, world, idx: np.ndarray, first_discounted: np.ndarray) -> np.ndarray:
        """(n, 3) cancellation probability at a renewal, per latent state (alive, lapsed, blocked)."""
        cfg, sub = self.config, self.sub
        e = world.users.engagement[idx]
        base = np.where(self.plan[idx] == 1, sub.cancel_yearly, sub.cancel_monthly)
        alive = base * np.exp(-sub.cancel_engagement_slope * (e - cfg.engagement_mean))
        out = np.column_stack([alive, np.full(len(idx), sub.cancel_lapsed), np.full(len(idx), sub.cancel_lapsed)])
        out = out * np.where(first_discounted, sub.discount_end_multiplier, 1.0)[:, None]
        return np.minimum(out, 0.95)

    def renew(self, world, day: int) -> None:
        """Step 1: renew or cancel every subscription whose period ends today."""
        idx = np.flatnonzero(self.covered)
        idx = idx[self._renewal_day(idx) == day]
        if not len(idx):
            return
        pc = self.cancel_prob(world, idx, self.discounted[idx])
        cancel = self.rng.random(len(idx)) < pc[np.arange(len(idx)), world.state[idx]]
        end = self.start_us[idx] + self.period[idx] * _DAY_US
        self.rows.append(self._rows(idx, end))
        gone = idx[cancel]
        self.covered[gone] = False
        self.cooldown_until[gone] = day + self.sub.cooldown_days
        kept = idx[~cancel]
        self.start_us[kept] = end[~cancel]
        self.discounted[kept] = False

    def _rows(self, idx: np.ndarray, end: np.ndarray | None) -> tuple:
        """The current rows of users ``idx``, ending at ``end`` (None = running), as column arrays."""
        sub = self.sub
        price = np.where(self.plan[idx] == 1, sub.yearly_price, sub.monthly_price)
        return (idx + 1, self.start_us[idx].copy(), None if end is None else end.copy(),
                self.plan[idx].copy(), price * np.where(self.discounted[idx], 1.0 - sub.discount, 1.0),
                self.period[idx].copy(), np.where(self.discounted[idx], sub.discount, 0.0))

    def subscribe(self, world, day: int, idx: np.ndarray, earliest: np.ndarray) -> None:
        """Step 2: active users ``idx`` (with their earliest allowed offsets today) may subscribe."""
        sub, users = self.sub, world.users
        free = ~self.covered[idx] & (self.cooldown_until[idx] <= day)
        cand, lo = idx[free], earliest[free]
        p = np.where(users.signup_day[cand] == day, sub.subscribe_at_signup,
                     sub.subscribe_rate * (0.3 + 1.5 * users.engagement[cand]))
        draw = self.rng.random((len(cand), 4))
        new = draw[:, 0] < p
        cand, lo, draw = cand[new], lo[new], draw[new]
        self.covered[cand] = True
        world.excluded[cand] = True
        self.start_us[cand] = self.t0 + day * _DAY_US + lo + (draw[:, 1] * (_DAY_US - lo)).astype(np.int64)
        yearly = draw[:, 2] < sub.yearly_share
        self.plan[cand] = yearly.astype(np.int8)
        self.period[cand] = np.where(yearly, sub.yearly_days, sub.monthly_days)
        self.discounted[cand] = draw[:, 3] < sub.discount_share

    def table(self) -> pa.Table:
        """Every subscription row: closed periods, then the running ones (empty end)."""
        running = np.flatnonzero(self.covered)
        parts = self.rows + ([self._rows(running, None)] if len(running) else [])
        if not parts:
            return SUBSCRIPTION_SCHEMA.empty_table()
        cols = [np.concatenate([p[k] for p in parts]) for k in (0, 1, 3, 4, 5, 6)]
        ends = [pa.array(p[2], type=pa.int64()) if p[2] is not None else pa.nulls(len(p[0]), pa.int64())
                for p in parts]
        end = pa.concat_arrays(ends).cast(pa.timestamp("us", tz="UTC"))
        t = pa.Table.from_arrays([
            pa.array(cols[0]), pa.array(cols[1], type=pa.timestamp("us", tz="UTC")), end,
            pa.array(PLANS).take(pa.array(cols[2])), pa.array(cols[3]), pa.array(cols[4]), pa.array(cols[5]),
        ], schema=SUBSCRIPTION_SCHEMA)
        return t.sort_by([("user_id", "ascending"), ("start", "ascending")])

    # ------------------------------------------------------------------ truth

    def truth(self, world, day: int, horizon: int) -> pa.Table:
        """Exact P(cancelled at a renewal in days ``[day, day + horizon)``) of every covered user."""
        idx = np.flatnonzero(self.covered)
        # Clipped: the products leave rounding residue of order 1e-15 around 0 and 1.
        p_true = np.clip(1.0 - self._no_cancel(world, idx, day, horizon, np.eye(3)[world.state[idx]]), 0.0, 1.0)
        p_obs = np.clip(1.0 - self._no_cancel(world, idx, day, horizon, world.belief[idx]), 0.0, 1.0)
        first = self._renewal_day(idx)
        n_ren = np.where(first < day + horizon, (day + horizon - 1 - first) // self.period[idx] + 1, 0)
        w = _world()
        return pa.Table.from_arrays([
            pa.array(np.full(len(idx), self.t0 + day * _DAY_US), type=pa.timestamp("us", tz="UTC")),
            pa.array(idx + 1), pa.array(p_true), pa.array(p_obs),
            pa.array(w.STATES).take(pa.array(world.state[idx])), pa.array(PLANS).take(pa.array(self.plan[idx])),
            pa.array(n_ren.astype(np.int64)),
        ], schema=SUBSCRIPTION_TRUTH_SCHEMA)

    def _no_cancel(self, world, idx: np.ndarray, day: int, horizon: int, init: np.ndarray) -> np.ndarray:
        """P(no cancellation at any renewal in the horizon), from state probabilities ``init`` (n, 3).

        A forward recursion over (state, community member, early likes capped at
        threshold + 1): exactly the quantities that can change a covered user's
        hazard before the last renewal (no campaign reaches a subscriber).
        """
        w, cfg, users = _world(), self.config, world.users
        n = len(idx)
        cap = cfg.like_habit_threshold + 1
        first = self._renewal_day(idx)
        period = self.period[idx]
        last = day + horizon - 1
        if not n or not (first <= last).any():
            return np.ones(n)
        m = np.zeros((n, 3, 2, cap + 1))
        c0 = (world.home_community[idx] > 0).astype(int)
        l0 = np.minimum(world.early_likes[idx], cap)
        m[np.arange(n)[:, None], np.arange(3)[None, :], c0[:, None], l0[:, None]] = init
        pc_first = self.cancel_prob(world, idx, self.discounted[idx])
        pc_later = self.cancel_prob(world, idx, np.zeros(n, dtype=bool))
        e, r = users.engagement[idx], users.return_rate[idx]
        boost = np.where(world.window_end[idx] > day, world.boost[idx], 0.0)
        boost_days = np.maximum(world.window_end[idx] - day, 0)
        join = cfg.community_join_rate * users.social[idx]
        likes = _poisson_step(cfg.play_rate * (0.3 + 1.5 * e) * users.like_taste[idx], cap)
        habit = np.arange(cap + 1) == cap
        mult = np.stack([w._behaviour_multiplier(cfg, habit[None, :], np.full((1, cap + 1), c == 1))[0]
                         for c in (0, 1)])  # (2, cap + 1)
        # The last renewal day inside the horizon, over all users: nothing after it matters.
        stop = int(np.where(first <= last, first + (last - first) // period * period, day).max())
        for d in range(day, stop + 1):
            k = d - day
            due = (d >= first) & ((d - first) % period == 0)
            if due.any():
                pc = np.where((d == first)[:, None], pc_first, pc_later)
                m[due] *= (1.0 - pc[due])[:, :, None, None]
            if d == stop:
                break
            alive, lapsed, blocked = m[:, 0], m[:, 1], m[:, 2]
            p_ret = w._return_prob(r, np.where(k < boost_days, boost, 0.0))
            active = alive * e[:, None, None] + lapsed * p_ret[:, None, None]
            quiet_alive = alive * (1.0 - e)[:, None, None]
            quiet_lapsed = lapsed * (1.0 - p_ret)[:, None, None]
            joined = active[:, 0] * join[:, None]
            active = np.stack([active[:, 0] - joined, active[:, 1] + joined], axis=1)
            early = d - users.signup_day[idx] < cfg.like_habit_days
            if early.any():
                active[early] = np.einsum("ncl,nlm->ncm", active[early], likes[early])
            alive = active + quiet_alive
            tenure = (d - users.signup_day[idx]).astype(np.float64)
            hazard0 = users.hazard_base[idx][:, None, None] * mult[None, :, :]
            hz = w._hazard(hazard0, w._tenure_factor(cfg, tenure)[:, None, None])
            m = np.stack([alive * (1.0 - hz), quiet_lapsed + alive * hz, blocked], axis=1)
        return m.sum(axis=(1, 2, 3))
