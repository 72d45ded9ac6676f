"""The error-rate chart: 5xx ratio over time, change markers, a threshold line."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import matplotlib.dates as mdates
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

__all__ = ["plot_error_rate"]

_LINE = "#c0392b"
_BARS = "#b0bec5"
_CHANGE = "#34495e"


def plot_error_rate(
    timeline_df: pd.DataFrame,
    *,
    changes: Sequence[tuple[datetime, str]] = (),
    threshold: float | None = None,
    title: str = "HTTP 5xx error rate",
) -> Figure:
    """Error ratio per bucket (percent axis, UTC times) over grey request-volume bars.

    ``timeline_df`` is :func:`~aura_ops.logs.error_timeline`'s output; ``changes`` are
    ``(time, label)`` markers such as deploys; ``threshold`` (a ratio, 0.05 = 5 %) is drawn as
    a dashed line. Returns a Figure; nothing is shown or closed.
    """
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.add_subplot()
    vol = ax.twinx()
    ax.set_zorder(vol.get_zorder() + 1)
    ax.patch.set_visible(False)
    tl = timeline_df
    if tl.empty:
        ax.text(
            0.5,
            0.5,
            "no events in the window",
            ha="center",
            va="center",
            transform=ax.transAxes,
            color="grey",
        )
    else:
        _draw(ax, vol, tl)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    top = (
        float(tl["error_ratio"].max()) if not tl.empty and tl["error_ratio"].notna().any() else 0.0
    )
    if threshold is not None:
        ax.axhline(
            threshold,
            color=_LINE,
            linestyle="--",
            linewidth=1,
            alpha=0.7,
            label=f"threshold {threshold:.1%}",
        )
        top = max(top, threshold)
    ax.set_ylim(0, max(top * 1.15, 0.01))
    shown = _in_range(tl, changes)
    for when, label in shown:
        _mark_change(ax, when, label)
    if len(shown) < len(changes):
        n = len(changes) - len(shown)
        ax.text(
            0.99,
            0.98,
            f"{n} change(s) outside the window not shown",
            ha="right",
            va="top",
            transform=ax.transAxes,
            fontsize=8,
            color="grey",
        )
    freq = tl.attrs.get("freq", "")
    ax.set_title(f"{title} (per {freq} bucket)" if freq else title, loc="left", fontsize=12)
    _style(ax, vol)
    return fig


def _draw(ax: Any, vol: Any, tl: pd.DataFrame) -> None:
    x = pd.to_datetime(tl["ts"], utc=True)
    width = (x.iloc[1] - x.iloc[0]) * 0.9 if len(x) > 1 else pd.Timedelta(seconds=1)
    vol.bar(x, tl["requests"], width=width, align="edge", color=_BARS, alpha=0.5, zorder=1)
    vol.set_ylim(0, max(float(tl["requests"].max()), 1.0) * 3)  # keep bars in the lower third
    ax.plot(
        x + width / 2,
        tl["error_ratio"],
        color=_LINE,
        linewidth=2,
        marker="o",
        markersize=3,
        label="5xx ratio",
        zorder=3,
    )


def _in_range(tl: pd.DataFrame, changes: Sequence[tuple[Any, str]]) -> list[tuple[Any, str]]:
    """The changes inside the charted span (all of them when the chart is empty)."""
    if tl.empty:
        return list(changes)
    x = pd.to_datetime(tl["ts"], utc=True)
    pad = max((x.iloc[-1] - x.iloc[0]) * 0.05, pd.Timedelta(seconds=1))
    lo, hi = x.iloc[0] - pad, x.iloc[-1] + pad

    def utc(when: Any) -> pd.Timestamp:
        t = pd.Timestamp(when)
        return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")

    return [(w, label) for w, label in changes if lo <= utc(w) <= hi]


def _mark_change(ax: Any, when: Any, label: str) -> None:
    x = pd.Timestamp(when)
    x = x.tz_localize("UTC") if x.tzinfo is None else x.tz_convert("UTC")
    ax.axvline(x, color=_CHANGE, linestyle=":", linewidth=1.5, zorder=4)
    ax.annotate(
        label,
        xy=(x, 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(3, -3),
        textcoords="offset points",
        rotation=90,
        va="top",
        ha="left",
        fontsize=8,
        color=_CHANGE,
    )


def _style(ax: Any, vol: Any) -> None:
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("5xx / requests (%)")
    vol.set_ylabel("requests per bucket", color="grey")
    vol.tick_params(axis="y", colors="grey")
    locator = mdates.AutoDateLocator(tz="UTC")
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz="UTC"))
    for a in (ax, vol):
        a.spines["top"].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", frameon=False, fontsize=9)
