"""Self-contained HTML reports for operators: plots inline, no network, one file.

Plots are drawn with matplotlib and embedded as base64 PNG data URIs; the page
is assembled from a Jinja2 template shipped in ``churnml/templates``.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display: reports are built by jobs and tests

import jinja2  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

__all__ = [
    "figure_uri",
    "plot_activity",
    "plot_behaviour_curves",
    "plot_cohort_heatmap",
    "plot_gaps",
    "plot_retention_curves",
    "render",
]

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("churnml", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    undefined=jinja2.StrictUndefined,
)
_ENV.filters["pct"] = lambda v, digits=1: "–" if v is None or pd.isna(v) else f"{100 * v:.{digits}f}%"
_ENV.filters["num"] = lambda v: "–" if v is None or pd.isna(v) else f"{v:,.0f}"


def render(template: str, **context) -> str:
    """Render a report template (e.g. ``"retention.html.j2"``) to an HTML string."""
    return _ENV.get_template(template).render(**context)


def figure_uri(fig) -> str:
    """Encode a matplotlib figure as a PNG data URI and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def plot_cohort_heatmap(table: pd.DataFrame, *, value: str = "rate_nday", max_day: int = 30) -> str:
    """The cohort triangle: cohorts down, day since signup across; unobserved cells left blank."""
    # Day 0 (the signup day) is 100% by construction and would flatten the colour scale.
    t = table[(table["day"] >= 1) & (table["day"] <= max_day)]
    grid = t.pivot(index="cohort", columns="day", values=value).sort_index()
    values = grid.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(10, min(12, max(3, 0.12 * len(grid) + 1.5))))
    vmax = np.nanmax(values) if np.isfinite(values).any() else 1.0
    im = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap="viridis", vmin=0, vmax=max(0.01, vmax),
                   extent=(0.5, grid.shape[1] + 0.5, len(grid) - 0.5, -0.5))
    ax.set_xlabel("day since signup")
    ax.set_ylabel("signup cohort")
    step = max(1, len(grid) // 25)
    ax.set_yticks(range(0, len(grid), step))
    ax.set_yticklabels([str(pd.Timestamp(c).date()) for c in grid.index[::step]], fontsize=7)
    fig.colorbar(im, ax=ax, label="share of the cohort active")
    ax.set_title("Retention by signup cohort (blank = not observed yet)")
    return figure_uri(fig)


def plot_retention_curves(table: pd.DataFrame, *, max_day: int = 30) -> str:
    """Pooled N-day and rolling retention curves (all observed users)."""
    t = table[table["day"] <= max_day].groupby("day")[["eligible", "retained_nday", "retained_rolling"]].sum()
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(t.index, t.retained_nday / t.eligible, marker="o", ms=3, label="active on day N")
    ax.plot(t.index, t.retained_rolling / t.eligible, marker="o", ms=3, label="active on day N or later")
    ax.set_xlabel("day since signup")
    ax.set_ylabel("share of users")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Retention curves")
    return figure_uri(fig)


def plot_activity(series: pd.DataFrame) -> str:
    """DAU, WAU and MAU over time, with stickiness (DAU/MAU) on a second axis."""
    fig, ax = plt.subplots(figsize=(10, 4))
    for col in ("dau", "wau", "mau"):
        ax.plot(series["date"], series[col], label=col.upper())
    ax.set_ylabel("active users")
    ax2 = ax.twinx()
    ax2.plot(series["date"], series["stickiness"], color="grey", ls="--", label="DAU/MAU")
    ax2.set_ylabel("stickiness (DAU/MAU)")
    ax2.set_ylim(0, 1)
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [h.get_label() for h in lines], loc="upper left")
    ax.grid(alpha=0.3)
    ax.set_title("Daily, weekly and monthly active users")
    fig.autofmt_xdate()
    return figure_uri(fig)


def plot_gaps(dist: pd.DataFrame, marks: Sequence[tuple[str, float]] = ()) -> str:
    """Distribution of gaps between active days, with percentile marks (``None`` marks are skipped)."""
    marks = [(label, v) for label, v in marks if v is not None]
    d = dist[dist["gap"] <= max(30, max((v for _, v in marks), default=0) + 5)]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(d["gap"], d["share"], color="#4c72b0")
    if d.empty:
        ax.text(0.5, 0.5, "no user has come back after a gap yet", ha="center", transform=ax.transAxes)
    for label, v in marks:
        ax.axvline(v, color="crimson", ls="--", lw=1)
        ax.text(v, ax.get_ylim()[1] * 0.9, f" {label}", color="crimson", fontsize=8)
    ax.set_xlabel("days between consecutive active days")
    ax.set_ylabel("share of gaps")
    ax.set_title("How long users stay away before coming back")
    return figure_uri(fig)


def plot_behaviour_curves(curves: pd.DataFrame, events: Sequence[str]) -> str:
    """Second-week retention of users who did a behaviour at least k times, against k."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for ev in events:
        c = curves[curves["event"] == ev]
        ax.plot(c["k"], c["rate_at_least"], marker="o", ms=3, label=f"'{ev}' at least k times")
    if len(events):
        c = curves[curves["event"] == events[0]]
        ax.plot(c["k"], c["rate_below"], color="grey", ls=":", label=f"fewer than k '{events[0]}'")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no behaviour could be compared", ha="center", transform=ax.transAxes)
    ax.set_xlabel("k (times in the first week)")
    ax.set_ylabel("active in the second week")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title("Retention by how often users did a behaviour in their first week")
    return figure_uri(fig)
