"""Service-level indicators from Prometheus or from a direct ``/metrics`` scrape, as Findings.

Each ``check_*`` takes ``prometheus_url=`` (windowed PromQL, the better source) and/or
``metrics_url=`` (the service's own ``/metrics``, when no Prometheus is there: two scrapes
``interval_s`` apart, or counters since process start when nothing moved in between). With both,
Prometheus is asked first; if it cannot answer, an UNKNOWN finding says so and the direct
scrape still runs. A source that is down, hanging or answering garbage is an UNKNOWN finding,
never OK, never an exception.

* :func:`check_error_ratio` -- 5xx share per endpoint (``aura_http_requests_total``).
* :func:`check_latency_p95` / :func:`check_latency_p99` / :func:`check_latency_quantile` --
  from the request-duration histogram, Prometheus' ``histogram_quantile`` interpolation.
* :func:`fetch_series` -- a range query shaped for plotting.
* Memory, CPU, restarts, queue depth, and whether Prometheus and its targets are up:
  :mod:`aura_ops.metrics_resources`.

The data access (scrape, PromQL, typed errors) lives in :mod:`aura_ops.prometheus`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pandas as pd

from aura_ops import prometheus as prom
from aura_ops.findings import Evidence, Finding, Status
from aura_ops.metrics_common import (
    _check_label,
    _count,
    _endpoint,
    _guarded,
    _ms,
    _pct,
    _prom_increase,
    _reproduce,
    _run,
    _scrape_increase,
    _selector,
    bucket_quantile,
    duration_s,
    histogram_quantile,
)
from aura_ops.prometheus import scrape

__all__ = [
    "bucket_quantile",
    "check_cpu",
    "check_error_ratio",
    "check_latency_p95",
    "check_latency_p99",
    "check_latency_quantile",
    "check_memory",
    "check_prometheus_up",
    "check_queue_depth",
    "check_restarts",
    "check_targets",
    "duration_s",
    "fetch_series",
    "histogram_quantile",
    "query",
    "query_range",
    "scrape",
]

# --------------------------------------------------------------------------- error ratio


def _judge_error_ratio(
    table: pd.DataFrame, *, scope: str, source: str, estimated: bool, reproduce: str, opts: Any
) -> list[Finding]:
    """One finding per endpoint above ``warn_ratio`` (worst first) and an OK for the rest."""
    table = table.sort_values(["ratio", "requests"], ascending=False, na_position="last")
    judged = table["requests"] >= opts["min_requests"]
    evidence = Evidence.table(table, f"5xx ratio per endpoint ({scope})")
    findings: list[Finding] = []
    for _, row in table[judged & (table["ratio"] > opts["warn_ratio"])].iterrows():
        status = Status.CRITICAL if row["ratio"] > opts["crit_ratio"] else Status.WARNING
        counts = f"{_count(row['errors'], estimated)} of {_count(row['requests'], estimated)}"
        findings.append(
            Finding(
                check="metrics.error_ratio",
                subject=row["endpoint"],
                status=status,
                summary=f"{row['endpoint']}: {_pct(row['ratio'])} of requests failed with 5xx "
                f"({counts} {scope})",
                observed=round(float(row["ratio"]), 4),
                expected=f"≤ {_pct(opts['warn_ratio'])}",
                evidence=(evidence,),
                source=source,
                hint="Group this endpoint's 5xx log lines by error type and compare with the "
                "last deploy.",
                reproduce=reproduce,
                labels={"endpoint": row["endpoint"]},
            )
        )
    healthy = table[~table["endpoint"].isin([f.subject for f in findings])]
    if healthy.empty:
        return findings
    low = healthy[healthy["requests"] < opts["min_requests"]]
    listed = ", ".join(
        f"{r.endpoint} {_pct(r.ratio) if r.requests else 'no requests'}"
        for r in healthy[healthy["requests"] >= opts["min_requests"]].head(6).itertuples()
    )
    summary = f"No other endpoint above {_pct(opts['warn_ratio'])} 5xx {scope}"
    summary = summary if findings else summary.replace("No other", "No")
    summary += f": {listed}" if listed else ""
    summary += f"; {len(low)} with < {opts['min_requests']} requests not judged" if len(low) else ""
    if not findings and (healthy["requests"] < opts["min_requests"]).all():
        total = _count(float(healthy["requests"].sum()), estimated)
        summary = f"Too little traffic to judge the 5xx ratio {scope}: {total} requests in all"
    ok = Finding(
        check="metrics.error_ratio",
        subject=opts["counter"],
        status=Status.OK if len(low) < len(healthy) else Status.INFO,
        summary=summary,
        observed=round(float(healthy["ratio"].max()), 4)
        if healthy["ratio"].notna().any()
        else None,
        expected=f"≤ {_pct(opts['warn_ratio'])}",
        evidence=(evidence,),
        source=source,
        reproduce=reproduce,
    )
    return [*findings, ok]


def _error_table(counts: pd.DataFrame, keys: Sequence[str], status_label: str) -> pd.DataFrame:
    """``counts`` per (endpoint keys, status) → endpoint, requests, errors, ratio."""
    is_5xx = counts[status_label].str.fullmatch(r"5\d\d")
    frame = counts.assign(errors=counts["value"].where(is_5xx, 0.0))
    table = frame.groupby(list(keys), as_index=False).agg(
        requests=("value", "sum"), errors=("errors", "sum")
    )
    table["ratio"] = (table["errors"] / table["requests"]).where(table["requests"] > 0)
    table.insert(0, "endpoint", [_endpoint(r, keys) for _, r in table.iterrows()])
    return table.drop(columns=list(keys))


@_guarded("metrics.error_ratio")
def check_error_ratio(
    *,
    metrics_url: str | None = None,
    prometheus_url: str | None = None,
    window: str = "5m",
    interval_s: float = 5.0,
    counter: str = "aura_http_requests_total",
    route_label: str = "route",
    status_label: str = "status",
    method_label: str | None = "method",
    selector: str = "",
    warn_ratio: float = 0.01,
    crit_ratio: float = 0.05,
    min_requests: int = 5,
    timeout_s: float = 5.0,
) -> list[Finding]:
    """5xx share of requests per endpoint: one finding per failing endpoint, worst first.

    From Prometheus: ``increase()`` of ``counter`` over ``window`` by endpoint and status. From
    ``metrics_url``: two scrapes ``interval_s`` apart (counters since process start if nothing
    moved). Endpoints with fewer than ``min_requests`` requests are listed, not judged.
    ``selector`` adds label matchers in PromQL (``'job="aura-api"'``).
    """
    return _run(
        "metrics.error_ratio", check_error_ratio, dict(locals()), _ratio_prom, _ratio_scrape
    )


def _endpoint_keys(a: dict[str, Any]) -> list[str]:
    return [_check_label(k) for k in (a["method_label"], a["route_label"]) if k]


def _ratio_prom(a: dict[str, Any], reproduce: str) -> list[Finding]:
    """The error ratio from ``increase()`` in Prometheus."""
    keys = _endpoint_keys(a)
    counter, selector, window, status = a["counter"], a["selector"], a["window"], a["status_label"]
    counts, promql = _prom_increase(
        a["prometheus_url"],
        counter,
        [*keys, _check_label(status)],
        selector=selector,
        window=window,
        timeout_s=a["timeout_s"],
        optional=[a["method_label"]],
    )
    five_xx, every = _selector(counter, selector, status + '=~"5.."'), _selector(counter, selector)
    by = a["route_label"]
    ratio_q = f"sum by ({by}) (rate({five_xx}[{window}])) / sum by ({by}) (rate({every}[{window}]))"
    found = _judge_error_ratio(
        _error_table(counts, keys, status),
        scope=f"in the last {window}",
        source=promql,
        estimated=True,
        reproduce=reproduce,
        opts=a,
    )
    graph = Evidence.text(ratio_q, "the same ratio as one PromQL expression, to graph")
    return [f.replace(evidence=(*f.evidence, graph)) for f in found]


def _ratio_scrape(a: dict[str, Any], reproduce: str) -> list[Finding]:
    """The error ratio from two direct scrapes (or the counters since process start)."""
    keys = _endpoint_keys(a)
    counts, scope, source, _ = _scrape_increase(
        a["metrics_url"],
        a["counter"],
        [*keys, _check_label(a["status_label"])],
        interval_s=a["interval_s"],
        timeout_s=a["timeout_s"],
        optional=[a["method_label"]],
    )
    table = _error_table(counts, keys, a["status_label"])
    return _judge_error_ratio(
        table, scope=scope, source=source, estimated=False, reproduce=reproduce, opts=a
    )


# --------------------------------------------------------------------------- latency


def _latency_table(buckets: pd.DataFrame, q: float, keys: Sequence[str]) -> pd.DataFrame:
    """Bucket increases per (keys, le) → endpoint, observations, quantile_ms, top_bucket."""
    frame = buckets.assign(le=buckets["le"].astype(float))
    table = histogram_quantile(frame, q, keys)
    table.insert(0, "endpoint", [_endpoint(r, keys) for _, r in table.iterrows()])
    table["quantile_ms"] = table.pop("quantile") * 1000.0
    return table.drop(columns=list(keys))


def _judge_latency(
    table: pd.DataFrame, *, q: float, scope: str, source: str, reproduce: str, opts: Any
) -> list[Finding]:
    """One finding per endpoint whose quantile is above ``warn_ms``, then an OK for the rest."""
    name = f"p{q * 100:g}"
    table = table.sort_values("quantile_ms", ascending=False, na_position="last")
    evidence = Evidence.table(table, f"{name} latency per endpoint ({scope})")
    judged = (table["observations"] >= opts["min_requests"]) & table["quantile_ms"].notna()
    findings: list[Finding] = []
    for _, row in table[judged].iterrows():
        value, top = float(row["quantile_ms"]), bool(row["top_bucket"])
        status = Status.OK
        if value > opts["crit_ms"]:
            status = Status.CRITICAL
        elif value > opts["warn_ms"] or top:  # "≥ value": the histogram cannot rule it out
            status = Status.WARNING
        if status == Status.OK:
            continue
        shown = f"≥ {_ms(value)} (above the largest bucket)" if top else _ms(value)
        findings.append(
            Finding(
                check=f"metrics.latency_{name}",
                subject=row["endpoint"],
                status=status,
                summary=f"{row['endpoint']}: {name} latency {shown} over "
                f"{row['observations']:.0f} requests {scope} (limit {_ms(opts['warn_ms'])})",
                observed=round(value, 1),
                expected=f"≤ {_ms(opts['warn_ms'])}",
                evidence=(evidence,),
                source=source,
                hint="Find the slow dependency: DB locks and slow queries, provider latency, "
                "CPU saturation.",
                reproduce=reproduce,
                labels={"endpoint": row["endpoint"], "top_bucket": top},
            )
        )
    rest = table[~table["endpoint"].isin([f.subject for f in findings])]
    if rest.empty:
        return findings
    fast = rest[(rest["observations"] >= opts["min_requests"]) & rest["quantile_ms"].notna()]
    listed = ", ".join(f"{r.endpoint} {_ms(r.quantile_ms)}" for r in fast.head(6).itertuples())
    summary = f"{name} latency ≤ {_ms(opts['warn_ms'])} {scope}" + (f": {listed}" if listed else "")
    if len(fast) < len(rest):
        summary += f"; {len(rest) - len(fast)} with < {opts['min_requests']} requests not judged"
    ok = Finding(
        check=f"metrics.latency_{name}",
        subject=opts["histogram"],
        status=Status.OK if len(fast) else Status.INFO,
        summary=summary,
        observed=round(float(fast["quantile_ms"].max()), 1) if len(fast) else None,
        expected=f"≤ {_ms(opts['warn_ms'])}",
        evidence=(evidence,),
        source=source,
        reproduce=reproduce,
    )
    return [*findings, ok]


@_guarded("metrics.latency")
def check_latency_quantile(
    *,
    quantile: float = 0.95,
    metrics_url: str | None = None,
    prometheus_url: str | None = None,
    window: str = "5m",
    interval_s: float = 5.0,
    histogram: str = "aura_http_request_duration_seconds",
    route_label: str = "route",
    method_label: str | None = "method",
    selector: str = "",
    warn_ms: float = 500.0,
    crit_ms: float = 1000.0,
    min_requests: int = 5,
    timeout_s: float = 5.0,
) -> list[Finding]:
    """Latency quantile per endpoint from a seconds histogram (``<histogram>_bucket``).

    From Prometheus: ``histogram_quantile(q, sum by (method, route, le) (rate(...[window])))``
    plus the bucket increases (observation counts, "≥ X" when the quantile is in the ``+Inf``
    bucket). From ``metrics_url``: the same interpolation over the scraped buckets.
    """
    args = dict(locals())
    check = f"metrics.latency_p{quantile * 100:g}"
    short = {0.95: check_latency_p95, 0.99: check_latency_p99}.get(quantile)
    if short is not None:  # reproduce with the short name
        reproduce = _reproduce(short, **{k: v for k, v in args.items() if k != "quantile"})
        return _run(check, short, args, _latency_prom, _latency_scrape, reproduce=reproduce)
    return _run(check, check_latency_quantile, args, _latency_prom, _latency_scrape)


def _latency_prom(a: dict[str, Any], reproduce: str) -> list[Finding]:
    """``histogram_quantile`` in Prometheus, plus bucket increases for counts and "≥ X"."""
    keys, q = _endpoint_keys(a), a["quantile"]
    bucket, window = f"{a['histogram']}_bucket", a["window"]
    counts, counts_q = _prom_increase(
        a["prometheus_url"],
        bucket,
        [*keys, "le"],
        selector=a["selector"],
        window=window,
        timeout_s=a["timeout_s"],
        optional=[a["method_label"]],
    )
    table = _latency_table(counts, q, keys)
    by = ", ".join([*keys, "le"])
    promql = f"histogram_quantile({q:g}, sum by ({by}) "
    promql += f"(rate({_selector(bucket, a['selector'])}[{window}])))"
    server = prom.query(a["prometheus_url"], promql, timeout_s=a["timeout_s"])
    server = server.assign(**{k: server[k].fillna("") if k in server else "" for k in keys})
    by_endpoint = {_endpoint(r, keys): r["value"] * 1000.0 for _, r in server.iterrows()}
    table["quantile_ms"] = [
        by_endpoint.get(e, v) for e, v in zip(table["endpoint"], table["quantile_ms"], strict=True)
    ]
    return _judge_latency(
        table,
        q=q,
        scope=f"in the last {window}",
        source=f"{promql}\n{counts_q}",
        reproduce=reproduce,
        opts=a,
    )


def _latency_scrape(a: dict[str, Any], reproduce: str) -> list[Finding]:
    """The same interpolation over directly scraped buckets."""
    keys, q = _endpoint_keys(a), a["quantile"]
    counts, scope, source, _ = _scrape_increase(
        a["metrics_url"],
        f"{a['histogram']}_bucket",
        [*keys, "le"],
        interval_s=a["interval_s"],
        timeout_s=a["timeout_s"],
        optional=[a["method_label"]],
    )
    table = _latency_table(counts, q, keys)
    return _judge_latency(table, q=q, scope=scope, source=source, reproduce=reproduce, opts=a)


@_guarded("metrics.latency_p95")
def check_latency_p95(
    *,
    metrics_url: str | None = None,
    prometheus_url: str | None = None,
    window: str = "5m",
    interval_s: float = 5.0,
    histogram: str = "aura_http_request_duration_seconds",
    route_label: str = "route",
    method_label: str | None = "method",
    selector: str = "",
    warn_ms: float = 500.0,
    crit_ms: float = 1000.0,
    min_requests: int = 5,
    timeout_s: float = 5.0,
) -> list[Finding]:
    """p95 latency per endpoint (see :func:`check_latency_quantile`); > 1000 ms is CRITICAL."""
    return check_latency_quantile(quantile=0.95, **_locals_except(locals()))


@_guarded("metrics.latency_p99")
def check_latency_p99(
    *,
    metrics_url: str | None = None,
    prometheus_url: str | None = None,
    window: str = "5m",
    interval_s: float = 5.0,
    histogram: str = "aura_http_request_duration_seconds",
    route_label: str = "route",
    method_label: str | None = "method",
    selector: str = "",
    warn_ms: float = 1000.0,
    crit_ms: float = 2500.0,
    min_requests: int = 5,
    timeout_s: float = 5.0,
) -> list[Finding]:
    """p99 latency per endpoint (see :func:`check_latency_quantile`); > 2500 ms is CRITICAL."""
    return check_latency_quantile(quantile=0.99, **_locals_except(locals()))


def _locals_except(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if not k.startswith("_")}


def fetch_series(
    prom_url: str,
    promql: str,
    *,
    window: str = "1h",
    end: dt.datetime | None = None,
    step_s: float | None = None,
    timeout_s: float = 10.0,
) -> pd.DataFrame:
    """A range query shaped for plotting: ``ts``, ``value``, ``series`` (a label string), labels.

    The range is ``window`` back from ``end`` (default now); ``step_s`` defaults to about 240
    points. Raises the typed errors of :func:`aura_ops.prometheus.query_range`.
    """
    end = end or dt.datetime.now(dt.UTC)
    start = end - dt.timedelta(seconds=duration_s(window))
    step = step_s or max(1.0, round(duration_s(window) / 240.0))
    df = prom.query_range(prom_url, promql, start, end, step, timeout_s=timeout_s)
    labels = [c for c in df.columns if c not in ("ts", "value", "histogram")]
    series = (
        [
            ", ".join(f"{k}={row[k]}" for k in labels if isinstance(row[k], str) and row[k])
            for _, row in df[labels].iterrows()
        ]
        if labels
        else [promql] * len(df)
    )
    df.insert(2, "series", pd.Series(series, index=df.index, dtype=object) if len(df) else [])
    return df.sort_values(["series", "ts"], kind="stable").reset_index(drop=True)


# The rest of the metrics surface lives in smaller modules; notebooks reach it all here.
from aura_ops.metrics_resources import (  # noqa: E402
    check_cpu,
    check_memory,
    check_queue_depth,
    check_restarts,
)
from aura_ops.prometheus import query, query_range  # noqa: E402
from aura_ops.prometheus_checks import check_prometheus_up, check_targets  # noqa: E402
