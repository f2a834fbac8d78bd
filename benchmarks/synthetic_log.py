"""A synthetic event log that churnml did not generate, for the feature-build benchmarks.

Not churnml's simulator: plain numpy, written day by day to Parquet in time
order (as an appended log is). Users sign up over the period, each with their
own activity rate (lognormal) and a lifetime after which they are silent;
each active day brings them a Poisson number of events of 8 types (skewed
frequencies) on items drawn from a Zipf-like catalogue. Timestamps are
microsecond-precise; the same instants are written either as a naive
``TIMESTAMP`` (UTC wall time) or as a tz-aware one (``isAdjustedToUTC``).

Usage::

    python benchmarks/synthetic_log.py --events 10000000 --users 100000 --out benchmarks/_data/syn10m
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["EVENT_TYPES", "START", "DAYS", "generate"]

EVENT_TYPES = ["view", "play", "like", "search", "share", "add_to_cart", "purchase", "comment"]
_P_TYPE = np.array([0.40, 0.25, 0.12, 0.08, 0.06, 0.04, 0.03, 0.02])
START = dt.datetime(2024, 1, 1)
DAYS = 120
DAY_US = 86_400_000_000
N_ITEMS = 200_000


def _epoch_us(t: dt.datetime) -> int:
    return int((t - dt.datetime(1970, 1, 1)).total_seconds()) * 1_000_000


def generate(out: Path, n_events: int, n_users: int, *, seed: int = 7, row_group: int = 1_000_000) -> dict:
    """Write ``events_naive.parquet``, ``events_tz.parquet``, ``users_naive.parquet`` and ``users_tz.parquet``.

    Returns a summary (events written, users, period).
    """
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t0 = _epoch_us(START)
    # Signups from 30 days before the log starts to 20 days before it ends; lifetimes exponential.
    signup_us = t0 + rng.integers(-30 * DAY_US, (DAYS - 20) * DAY_US, size=n_users)
    life_days = rng.exponential(60.0, size=n_users)
    end_us = signup_us + (life_days * DAY_US).astype(np.int64)
    rate = rng.lognormal(0.0, 1.0, size=n_users)
    p_active = rng.uniform(0.2, 0.9, size=n_users)  # share of days a user shows up while alive
    # Scale the rates so the expected total is n_events.
    lo = np.maximum(signup_us, t0)
    alive_days = np.clip((np.minimum(end_us, t0 + DAYS * DAY_US) - lo) / DAY_US, 0, None)
    rate *= n_events / float((rate * p_active * alive_days).sum())
    item_w = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.8
    item_cdf = np.cumsum(item_w) / item_w.sum()
    types = pa.array(EVENT_TYPES)

    writers = {}
    total = 0
    try:
        for day in range(DAYS):
            d0 = t0 + day * DAY_US
            alive = np.flatnonzero((signup_us < d0 + DAY_US) & (end_us > d0))
            alive = alive[rng.random(alive.size) < p_active[alive]]
            k = rng.poisson(rate[alive])
            users = np.repeat(alive, k)
            n = users.size
            if n == 0:
                continue
            start = np.maximum(signup_us[users], d0)  # never before the user's signup
            ts = start + (rng.random(n) * (d0 + DAY_US - start)).astype(np.int64)
            order = np.argsort(ts, kind="stable")
            users, ts = users[order], ts[order]
            event = pa.DictionaryArray.from_arrays(
                pa.array(rng.choice(len(EVENT_TYPES), size=n, p=_P_TYPE).astype(np.int32)), types)
            item = np.searchsorted(item_cdf, rng.random(n)).astype(np.int64) + 1
            for tz in ("naive", "tz"):
                typ = pa.timestamp("us", tz="UTC" if tz == "tz" else None)
                batch = pa.table({"user_id": pa.array(users.astype(np.int64)), "ts": pa.array(ts, typ),
                                  "event": event.cast(pa.string()), "item_id": pa.array(item)})
                if tz not in writers:
                    writers[tz] = pq.ParquetWriter(out / f"events_{tz}.parquet", batch.schema, compression="zstd")
                writers[tz].write_table(batch, row_group_size=row_group)
            total += n
    finally:
        for w in writers.values():
            w.close()
    countries = np.array(["DE", "FR", "US", "BR", "IN", "JP"])
    for tz in ("naive", "tz"):
        typ = pa.timestamp("us", tz="UTC" if tz == "tz" else None)
        pq.write_table(pa.table({
            "user_id": pa.array(np.arange(n_users, dtype=np.int64)),
            "signup_ts": pa.array(signup_us, typ),
            "country": pa.array(countries[rng.integers(0, len(countries), n_users)]),
        }), out / f"users_{tz}.parquet", compression="zstd")
    return {"events": int(total), "users": n_users, "start": START.isoformat(), "days": DAYS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    print(generate(args.out, args.events, args.users, seed=args.seed))


if __name__ == "__main__":
    main()
