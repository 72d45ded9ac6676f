"""Memory leaks: resident memory sampled over a short interval, and OOM kills in Kubernetes.

Seed 000 "Memory Leak" watches ``kubectl top pods`` every 10 s and looks for OOM kills and
restarts. Without Prometheus there is no history to fit a ``deriv()`` to, so
:func:`load_gauge_samples` scrapes a gauge (``process_resident_memory_bytes``) from the
service's ``/metrics`` a few times, :func:`fit_trend` fits a least-squares line through the
samples, and :func:`check_memory_growth` calls a *steady* climb (a good fit, and more than a
noise floor of growth) the memory-leak signal::

    rss = load_gauge_samples(metrics_url, "process_resident_memory_bytes", samples=6)
    show(check_memory_growth(rss))
    show(check_oom_kills(kube_url, namespace="aura", label_selector="app=aura-api"))

:func:`check_oom_kills` connects to the Kubernetes API (a URL or the kubeconfig) and runs the
pod, event and pod-memory checks of :mod:`aura_ops.kube`. A source that cannot be read gives
an ``UNKNOWN`` finding naming the reason; nothing here raises except the ``fetch_*`` function.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from aura_ops import kube
from aura_ops.errors import AuraOpsError, QueryError
from aura_ops.findings import Evidence, Finding, Status, unknown
from aura_ops.prometheus import redact_url, scrape

__all__ = [
    "check_memory_growth",
    "check_oom_kills",
    "fetch_gauge_samples",
    "fit_trend",
    "load_gauge_samples",
    "plot_gauge_samples",
]

_MIB = 1024**2
_GIB = 1024**3
_COLUMNS = ["series", "t_s", "value"]


def _series(df: pd.DataFrame, url: str) -> pd.Series:
    """``series → value`` for one metric: its labels as ``k=v``, or the URL when it has none."""
    labels = [c for c in df.columns if c not in ("name", "labels", "value", "type", "ts")]

    def name(row: Any) -> str:
        parts = [f"{k}={row[k]}" for k in labels if isinstance(row[k], str) and row[k]]
        return ", ".join(parts) or redact_url(url)

    return pd.Series(df["value"].to_numpy(dtype=float), index=[name(r) for _, r in df.iterrows()])


def fetch_gauge_samples(
    metrics_url: str,
    metric: str,
    *,
    samples: int = 6,
    interval_s: float = 1.0,
    timeout_s: float = 5.0,
) -> pd.DataFrame:
    """Scrape ``metric`` from ``metrics_url`` ``samples`` times, ``interval_s`` apart.

    Returns one row per series and sample: ``series``, ``t_s`` (seconds since the first
    scrape) and ``value``. Raises :class:`~aura_ops.errors.SourceUnavailableError` when the
    endpoint cannot be read and :class:`~aura_ops.errors.QueryError` when the metric is absent.
    """
    rows: list[dict[str, Any]] = []
    t0 = time.monotonic()
    for i in range(max(2, samples)):
        if i:
            time.sleep(max(0.0, t0 + i * interval_s - time.monotonic()))
        at = time.monotonic() - t0
        df = scrape(metrics_url, timeout_s=timeout_s)
        df = df[df["name"] == metric] if len(df) else df
        if df.empty:
            raise QueryError(
                f"no {metric} samples at {redact_url(metrics_url)}", source=redact_url(metrics_url)
            )
        rows += [{"series": k, "t_s": at, "value": v} for k, v in _series(df, metrics_url).items()]
    out = pd.DataFrame(rows, columns=_COLUMNS)
    out.attrs.update(metric=metric, source=f"GET {redact_url(metrics_url)}")
    return out


def load_gauge_samples(
    metrics_url: str,
    metric: str = "process_resident_memory_bytes",
    *,
    samples: int = 6,
    interval_s: float = 1.0,
    timeout_s: float = 5.0,
) -> pd.DataFrame:
    """:func:`fetch_gauge_samples` for notebooks: never raises.

    On failure the frame is empty and ``attrs["error"]`` holds the reason, which
    :func:`check_memory_growth` reports as an ``UNKNOWN`` finding.
    """
    call = (
        f"load_gauge_samples({redact_url(metrics_url)!r}, {metric!r}, samples={samples}, "
        f"interval_s={interval_s:g})"
    )
    try:
        df = fetch_gauge_samples(
            metrics_url, metric, samples=samples, interval_s=interval_s, timeout_s=timeout_s
        )
    except AuraOpsError as exc:
        df = pd.DataFrame(columns=_COLUMNS)
        df.attrs.update(error=exc.one_line(), source=f"GET {redact_url(metrics_url)}")
    df.attrs.update(metric=metric, reproduce=call)
    return df


def fit_trend(samples: pd.DataFrame) -> pd.DataFrame:
    """Per series: ``samples``, ``span_s``, ``first``, ``last``, least-squares ``slope_per_s``
    and the fit's ``r2`` (1.0 = a straight climb, near 0 = noise). Pure."""
    rows = []
    for series, part in samples.groupby("series", sort=True):
        t = part["t_s"].to_numpy(dtype=float)
        v = part["value"].to_numpy(dtype=float)
        slope, r2 = float("nan"), float("nan")
        if len(t) >= 2 and np.ptp(t) > 0:
            slope, intercept = np.polyfit(t, v, 1)
            residual = float(np.sum((v - (slope * t + intercept)) ** 2))
            total = float(np.sum((v - v.mean()) ** 2))
            r2 = 1.0 - residual / total if total > 0 else 0.0
        rows.append(
            {
                "series": series,
                "samples": len(t),
                "span_s": float(np.ptp(t)) if len(t) else 0.0,
                "first": float(v[0]),
                "last": float(v[-1]),
                "slope_per_s": float(slope),
                "r2": float(r2),
            }
        )
    columns = ["series", "samples", "span_s", "first", "last", "slope_per_s", "r2"]
    return pd.DataFrame(rows, columns=columns)


def _mib(n: float) -> str:
    return f"{n / _GIB:.2f} GiB" if abs(n) >= _GIB else f"{n / _MIB:.0f} MiB"


def _level(value: float, warn: float | None, crit: float | None) -> Status:
    if crit is not None and value > crit:
        return Status.CRITICAL
    if warn is not None and value > warn:
        return Status.WARNING
    return Status.OK


def _judge_growth(row: Any, a: dict[str, Any]) -> tuple[Status, str]:
    status = _level(row["last"], a["rss_warn_bytes"], a["rss_crit_bytes"])
    text = f"resident memory {_mib(row['last'])}"
    grown = row["slope_per_s"] * row["span_s"]
    steady = grown >= a["min_growth_mib"] * _MIB and row["r2"] >= a["min_r2"]
    if not steady:
        return status, f"{text}, steady ({grown / _MIB:+.1f} MiB over {row['span_s']:.0f} s)"
    pct_per_h = row["slope_per_s"] * 3600 / max(row["first"], 1.0) * 100
    text += (
        f", climbing {row['slope_per_s'] / _MIB:.1f} MiB/s for {row['span_s']:.0f} s "
        f"(+{grown / _MIB:.0f} MiB, R² {row['r2']:.2f}, {pct_per_h:+.0f} %/h)"
    )
    grow = _level(pct_per_h, a["growth_warn_pct_per_h"], a["growth_crit_pct_per_h"])
    if grow > Status.OK:
        text += ": a steady climb, the memory-leak signal"
    return max(status, grow), text


def check_memory_growth(
    samples: pd.DataFrame,
    *,
    growth_warn_pct_per_h: float = 10.0,
    growth_crit_pct_per_h: float = 50.0,
    min_growth_mib: float = 8.0,
    min_r2: float = 0.8,
    rss_warn_bytes: float | None = 1 * _GIB,
    rss_crit_bytes: float | None = 2 * _GIB,
) -> list[Finding]:
    """Judge sampled resident memory: its level, and whether it climbs steadily.

    Growth counts only when the fitted line rises by at least ``min_growth_mib`` over the
    sampling span with ``r2 >= min_r2`` (a steady climb, not allocator noise); it is then
    expressed per hour relative to the first sample and judged against
    ``growth_warn_pct_per_h`` / ``growth_crit_pct_per_h`` (as :func:`metrics.check_memory`).
    """
    a = dict(locals())
    metric = samples.attrs.get("metric", "process_resident_memory_bytes")
    source = samples.attrs.get("source", "")
    reproduce = samples.attrs.get("reproduce", "")
    if samples.attrs.get("error"):
        return [
            unknown(
                "memory.growth", metric, samples.attrs["error"], source=source, reproduce=reproduce
            )
        ]
    if samples.empty:
        return [unknown("memory.growth", metric, "no samples", source=source, reproduce=reproduce)]
    trend = fit_trend(samples)
    evidence = (
        Evidence.table(trend, f"{metric}: least-squares trend of the samples"),
        Evidence.table(samples, f"{metric} samples"),
    )
    expected = f"≤ {_mib(rss_warn_bytes)}, " if rss_warn_bytes else ""
    expected += f"growth ≤ {growth_warn_pct_per_h:g} %/h"
    findings = []
    for _, row in trend.iterrows():
        status, text = _judge_growth(row, a)
        findings.append(
            Finding(
                check="memory.growth",
                subject=row["series"],
                status=status,
                summary=f"{row['series']}: {text}",
                observed=round(row["slope_per_s"] / _MIB, 3),
                expected=expected,
                evidence=evidence,
                source=f"{source} × {int(row['samples'])} over {row['span_s']:.0f} s ({metric})",
                hint="Compare with the last deploy; restart to mitigate, then capture a heap "
                "profile and look for caches that never evict (seed 000)"
                if status > Status.OK
                else "",
                reproduce=reproduce,
                labels={"role": "cause"} if status > Status.OK else {},
            )
        )
    return sorted(findings, key=lambda f: -int(f.status))


def plot_gauge_samples(samples: pd.DataFrame, *, title: str = "", unit: str = "MiB") -> Any:
    """The samples over time, one line per series (MiB by default), as a Figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 2.6))
    ax = fig.add_subplot()
    scale = {"MiB": _MIB, "GiB": _GIB}.get(unit, 1)
    for series, part in samples.groupby("series", sort=True):
        ax.plot(part["t_s"], part["value"] / scale, marker="o", label=str(series))
    ax.set_xlabel("seconds since the first sample")
    ax.set_ylabel(unit)
    ax.set_title(title or samples.attrs.get("metric", ""), fontsize=10)
    if samples.empty:
        ax.text(
            0.5, 0.5, samples.attrs.get("error", "no samples"), ha="center", transform=ax.transAxes
        )
    else:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def check_oom_kills(
    kube_url: str = "",
    *,
    kube_context: str = "",
    namespace: str = "default",
    label_selector: str | None = None,
    restarts_warn: int = 3,
    memory_warn_pct: float = 80,
    memory_crit_pct: float = 90,
    timeout_s: float = 5.0,
) -> list[Finding]:
    """OOMKilled containers, restarts, Warning events and memory against limits (Kubernetes).

    Connects to ``kube_url`` (``kubectl proxy``, an API-shaped fixture) or, when it is empty,
    the kubeconfig context ``kube_context``; then ``kubectl get pods``, ``kubectl get events``
    and ``kubectl top pods`` as :func:`kube.check_pods`, :func:`kube.check_events` and
    :func:`kube.check_pod_resources`. OOMKilled findings are marked as the cause.
    """
    try:
        api = (
            kube.connect_kube_url(kube_url, timeout_s=timeout_s)
            if kube_url
            else kube.connect_kube(kube_context or None, timeout_s=timeout_s)
        )
    except AuraOpsError as exc:
        reason = exc.one_line()
        call = f"check_oom_kills(kube_context={kube_context!r}, namespace={namespace!r})"
        return [unknown("kube.oomkilled", f"pods {namespace}", reason, reproduce=call)]
    sel = label_selector or None
    findings = kube.check_pods(
        api, namespace, label_selector=sel, restarts_warn=restarts_warn, timeout_s=timeout_s
    )
    findings += kube.check_events(api, namespace, timeout_s=timeout_s)
    findings += kube.check_pod_resources(
        api,
        namespace,
        label_selector=sel,
        memory_warn_pct=memory_warn_pct,
        memory_crit_pct=memory_crit_pct,
        timeout_s=timeout_s,
    )
    return [
        f.replace(labels={**f.labels, "role": "cause"})
        if f.check == "kube.oomkilled" and f.status > Status.OK
        else f
        for f in findings
    ]
