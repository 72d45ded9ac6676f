"""Process and queue resources, judged into Findings.

* :func:`check_memory` -- resident memory per process and its growth over the window
  (the ``deriv()`` slope, a steady climb is the memory-leak signal); a scrape gives the level.
* :func:`check_cpu` -- CPU cores used (``rate(process_cpu_seconds_total)`` or two scrapes).
* :func:`check_restarts` -- ``kube_pod_container_status_restarts_total`` when kube-state-metrics
  is scraped, else changes of ``process_start_time_seconds``; a scrape gives the uptime.
* :func:`check_queue_depth` -- a queue gauge above its threshold, and whether it is rising.

Sources and failure handling as in :mod:`aura_ops.metrics`: ``prometheus_url=`` and/or
``metrics_url=``; a source that cannot be read is an UNKNOWN finding, never OK. Each check has
a ``_<name>_prom`` and a ``_<name>_scrape`` variant taking the check's arguments as a dict.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pandas as pd

from aura_ops.errors import QueryError
from aura_ops.findings import Finding, Status
from aura_ops.metrics_common import (
    _GIB,
    Judge,
    _bytes,
    _guarded,
    _level,
    _prom_optional,
    _prom_trend,
    _prom_values,
    _run,
    _scraped,
    _selector,
    _series_findings,
    _table,
    duration_s,
)
from aura_ops.prometheus import redact_url

__all__ = ["check_cpu", "check_memory", "check_queue_depth", "check_restarts"]

A = dict[str, Any]

# --------------------------------------------------------------------------- memory


@_guarded("metrics.memory")
def check_memory(
    *,
    metrics_url: str | None = None,
    prometheus_url: str | None = None,
    window: str = "30m",
    metric: str = "process_resident_memory_bytes",
    selector: str = "",
    rss_warn_bytes: float | None = 1 * _GIB,
    rss_crit_bytes: float | None = 2 * _GIB,
    growth_warn_pct_per_h: float = 10.0,
    growth_crit_pct_per_h: float = 50.0,
    timeout_s: float = 5.0,
) -> list[Finding]:
    """Resident memory per process, and its growth per hour over ``window`` (Prometheus).

    The growth is the least-squares slope over ``window`` (what ``deriv(metric[window])``
    computes, from one range query) relative to the current size: a steady climb above
    ``growth_warn_pct_per_h`` is the memory-leak signal. It is not judged when less than half
    the window has data. A direct scrape judges the level only.
    """
    return _run("metrics.memory", check_memory, dict(locals()), _memory_prom, _memory_scrape)


def _memory_judge(a: A) -> Judge:
    def judge(row: Any) -> tuple[Status, str]:
        status = _level(row["bytes"], a["rss_warn_bytes"], a["rss_crit_bytes"])
        text = f"resident memory {_bytes(row['bytes'])}"
        growth = row.get("growth_pct_per_h", math.nan)
        if not pd.isna(growth):
            text += f", {_bytes(row['growth_bytes_per_h'])}/h ({growth:+.0f} %/h over "
            text += f"{a['window']})"
            grow = _level(growth, a["growth_warn_pct_per_h"], a["growth_crit_pct_per_h"])
            if grow > Status.OK:
                text += ": a steady climb, the memory-leak signal"
            status = max(status, grow)
        elif not pd.isna(row.get("coverage", math.nan)):
            text += f", growth not judged (data for {row['coverage']:.0%} of {a['window']})"
        return status, text

    return judge


def _memory_common(a: A, reproduce: str, source: str) -> A:
    level = f"≤ {_bytes(a['rss_warn_bytes'])}, " if a["rss_warn_bytes"] else ""
    return dict(
        expected=f"{level}growth ≤ {a['growth_warn_pct_per_h']:g} %/h",
        subject=a["metric"],
        reproduce=reproduce,
        source=source,
        hint="Compare with the last deploy; restart to mitigate, then profile the leak.",
    )


def _memory_prom(a: A, reproduce: str) -> list[Finding]:
    sel = _selector(a["metric"], a["selector"])
    trend, source = _prom_trend(a["prometheus_url"], sel, a["window"], a["timeout_s"])
    slopes = trend["slope_per_s"] * 3600
    table = trend.rename(columns={"last": "bytes"})
    table = table.assign(growth_bytes_per_h=slopes, growth_pct_per_h=slopes / table["bytes"] * 100)
    return _series_findings(
        "metrics.memory",
        table.assign(observed=table["bytes"]),
        _memory_judge(a),
        title=f"resident memory and growth over {a['window']}",
        ok_text="Memory steady",
        common=_memory_common(a, reproduce, source),
    )


def _memory_scrape(a: A, reproduce: str) -> list[Finding]:
    table = _table(bytes=_scraped(a["metrics_url"], a["metric"], a["timeout_s"]))
    source = f"GET {redact_url(a['metrics_url'])} (level only: growth needs Prometheus)"
    return _series_findings(
        "metrics.memory",
        table.assign(observed=table["bytes"]),
        _memory_judge(a),
        title="resident memory (one scrape)",
        ok_text="Memory below the limit (growth not measured)",
        common=_memory_common(a, reproduce, source),
    )


# --------------------------------------------------------------------------- CPU


@_guarded("metrics.cpu")
def check_cpu(
    *,
    metrics_url: str | None = None,
    prometheus_url: str | None = None,
    window: str = "5m",
    interval_s: float = 5.0,
    metric: str = "process_cpu_seconds_total",
    selector: str = "",
    warn_cores: float = 0.8,
    crit_cores: float = 0.95,
    timeout_s: float = 5.0,
) -> list[Finding]:
    """CPU cores used per process: ``rate(metric[window])`` or two scrapes ``interval_s`` apart.

    A Python worker near one core is saturated: the defaults warn at 0.8 and page at 0.95. With
    ``interval_s=0`` a scrape gives the average since process start.
    """
    return _run("metrics.cpu", check_cpu, dict(locals()), _cpu_prom, _cpu_scrape)


def _cpu_findings(a: A, reproduce: str, cores: pd.Series, scope: str, source: str) -> list[Finding]:
    def judge(row: Any) -> tuple[Status, str]:
        status = _level(row["cores"], a["warn_cores"], a["crit_cores"])
        return status, f"{row['cores']:.2f} CPU cores {scope}"

    table = _table(cores=cores)
    return _series_findings(
        "metrics.cpu",
        table.assign(observed=table["cores"].round(3)),
        judge,
        title=f"CPU cores used ({scope})",
        ok_text="CPU below the limit",
        common=dict(
            expected=f"≤ {a['warn_cores']:g} cores",
            subject=a["metric"],
            reproduce=reproduce,
            source=source,
            hint="Find the hot path: request rate, a runaway job, GC; scale out to mitigate.",
        ),
    )


def _cpu_prom(a: A, reproduce: str) -> list[Finding]:
    duration_s(a["window"])
    promql = f"rate({_selector(a['metric'], a['selector'])}[{a['window']}])"
    cores = _prom_values(a["prometheus_url"], promql, a["timeout_s"])
    return _cpu_findings(a, reproduce, cores, f"over {a['window']}", promql)


def _cpu_scrape(a: A, reproduce: str) -> list[Finding]:
    url, name, timeout_s = a["metrics_url"], a["metric"], a["timeout_s"]
    if a["interval_s"] <= 0:
        total = _scraped(url, name, timeout_s)
        started = _scraped(url, "process_start_time_seconds", timeout_s)
        cores, scope = total / (time.time() - started.reindex(total.index)), "since start"
    else:
        first, t0 = _scraped(url, name, timeout_s), time.monotonic()
        time.sleep(a["interval_s"])
        second, t1 = _scraped(url, name, timeout_s), time.monotonic()
        cores, scope = (second - first.reindex(second.index)) / (t1 - t0), f"over {t1 - t0:.1f} s"
    return _cpu_findings(a, reproduce, cores, scope, f"GET {redact_url(url)} ({scope})")


# --------------------------------------------------------------------------- restarts


@_guarded("metrics.restarts")
def check_restarts(
    *,
    metrics_url: str | None = None,
    prometheus_url: str | None = None,
    window: str = "1h",
    selector: str = "",
    warn_restarts: int = 1,
    crit_restarts: int = 3,
    timeout_s: float = 5.0,
) -> list[Finding]:
    """Restarts in ``window`` per container or process.

    From Prometheus: kube-state-metrics' ``kube_pod_container_status_restarts_total`` if it is
    there, else changes of ``process_start_time_seconds``. A direct scrape can only tell whether
    the process started within ``window`` (counted as one restart).
    """
    return _run(
        "metrics.restarts", check_restarts, dict(locals()), _restarts_prom, _restarts_scrape
    )


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _restarts_findings(a: A, reproduce: str, table: pd.DataFrame, source: str) -> list[Finding]:
    def judge(row: Any) -> tuple[Status, str]:
        n = int(row["restarts"])
        status = Status.OK
        if n >= a["crit_restarts"]:
            status = Status.CRITICAL
        elif n >= a["warn_restarts"]:
            status = Status.WARNING
        if pd.isna(row.get("uptime_s", math.nan)):
            return status, f"{n} restart{'s' if n != 1 else ''} in the last {a['window']}"
        if n:
            ago = _age(row["uptime_s"])
            return status, f"started {ago} ago, within {a['window']}: restarted or redeployed"
        return status, f"up for {_age(row['uptime_s'])}"

    return _series_findings(
        "metrics.restarts",
        table.assign(observed=table["restarts"]),
        judge,
        title=f"restarts in the last {a['window']}",
        ok_text="No restarts",
        common=dict(
            expected=f"< {a['warn_restarts']} restart(s) in {a['window']}",
            subject="restarts",
            reproduce=reproduce,
            source=source,
            hint="Read the previous container's logs and the exit reason (OOMKilled?).",
        ),
    )


def _restarts_prom(a: A, reproduce: str) -> list[Finding]:
    window, selector, url, timeout_s = (
        a["window"],
        a["selector"],
        a["prometheus_url"],
        a["timeout_s"],
    )
    duration_s(window)
    kube = _selector("kube_pod_container_status_restarts_total", selector)
    kube_q = f"sum by (namespace, pod, container) (increase({kube}[{window}]))"
    found = _prom_optional(url, kube_q, timeout_s).round()
    if len(found):
        return _restarts_findings(a, reproduce, _table(restarts=found), kube_q)
    start_q = f"changes({_selector('process_start_time_seconds', selector)}[{window}])"
    found = _prom_optional(url, start_q, timeout_s)
    if len(found):
        return _restarts_findings(a, reproduce, _table(restarts=found), start_q)
    raise QueryError(
        "neither kube_pod_container_status_restarts_total nor process_start_time_seconds "
        f"in Prometheus for the last {window}",
        source=f"{kube_q}\n{start_q}",
        hint="Is kube-state-metrics or the service itself scraped? (check_targets)",
    )


def _restarts_scrape(a: A, reproduce: str) -> list[Finding]:
    url = a["metrics_url"]
    uptime = time.time() - _scraped(url, "process_start_time_seconds", a["timeout_s"])
    restarts = (uptime < duration_s(a["window"])).astype(int)
    table = _table(restarts=restarts, uptime_s=uptime.round(1))
    source = f"GET {redact_url(url)} (process_start_time_seconds)"
    return _restarts_findings(a, reproduce, table, source)


# --------------------------------------------------------------------------- queue depth


@_guarded("metrics.queue_depth")
def check_queue_depth(
    *,
    metrics_url: str | None = None,
    prometheus_url: str | None = None,
    window: str = "10m",
    interval_s: float = 5.0,
    gauge: str = "aura_queue_depth",
    selector: str = "",
    warn_depth: float = 50,
    crit_depth: float = 100,
    timeout_s: float = 5.0,
) -> list[Finding]:
    """Queue depth now and its trend (the ``deriv()`` slope over ``window``, or two scrapes).

    Above ``crit_depth`` and not draining is CRITICAL, above ``warn_depth`` WARNING (seed 003:
    healthy < 50 jobs, backed up > 100).
    """
    return _run(
        "metrics.queue_depth", check_queue_depth, dict(locals()), _queue_prom, _queue_scrape
    )


def _queue_findings(a: A, reproduce: str, table: pd.DataFrame, source: str) -> list[Finding]:
    def judge(row: Any) -> tuple[Status, str]:
        depth, slope = float(row["depth"]), float(row["per_min"])
        trend = "trend unknown" if math.isnan(slope) else "flat"
        if slope > 0:
            trend = f"rising {slope:+.1f}/min"
        elif slope < 0:
            trend = f"draining {slope:+.1f}/min"
        status = _level(depth, a["warn_depth"], a["crit_depth"])
        if status == Status.CRITICAL and slope < 0:
            status = Status.WARNING  # above the limit but recovering
        return status, f"queue depth {depth:.0f} (limit {a['warn_depth']:g}), {trend}"

    return _series_findings(
        "metrics.queue_depth",
        table.assign(observed=table["depth"]),
        judge,
        title=f"queue depth and trend ({source.split(' ')[0]})",
        ok_text="Queue below the limit",
        common=dict(
            expected=f"≤ {a['warn_depth']:g}",
            subject=a["gauge"],
            reproduce=reproduce,
            source=source,
            hint="Are the workers alive and consuming? Scale workers or shed load.",
        ),
    )


def _queue_prom(a: A, reproduce: str) -> list[Finding]:
    sel = _selector(a["gauge"], a["selector"])
    trend, source = _prom_trend(a["prometheus_url"], sel, a["window"], a["timeout_s"])
    table = trend.rename(columns={"last": "depth"})
    table["per_min"] = trend["slope_per_s"] * 60
    return _queue_findings(a, reproduce, table, source)


def _queue_scrape(a: A, reproduce: str) -> list[Finding]:
    url, gauge, timeout_s, interval_s = (
        a["metrics_url"],
        a["gauge"],
        a["timeout_s"],
        a["interval_s"],
    )
    source = f"GET {redact_url(url)}"
    if interval_s <= 0:
        depth = _scraped(url, gauge, timeout_s)
        return _queue_findings(a, reproduce, _table(depth=depth, per_min=depth * math.nan), source)
    first, t0 = _scraped(url, gauge, timeout_s), time.monotonic()
    time.sleep(interval_s)
    depth = _scraped(url, gauge, timeout_s)
    per_min = (depth - first.reindex(depth.index)) / (time.monotonic() - t0) * 60
    source += f" twice, {interval_s:g} s apart"
    return _queue_findings(a, reproduce, _table(depth=depth, per_min=per_min), source)
