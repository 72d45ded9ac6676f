"""Webhook delivery: failure rate, what the retries logged, and the customer's endpoint.

Seed 003 "Webhook Delivery Failures" in three steps, each a check here:

1. :func:`check_webhook_failures` -- the failure rate from the service's counters
   (``aura_webhook_failures_total`` over ``aura_webhook_deliveries_total``), two scrapes
   ``interval_s`` apart (seed 003 alert: failure rate > 20 % is a warning);
2. :func:`check_webhook_logs` -- the worker's webhook lines (``grep -i webhook``): which endpoints
   exhausted their retries, and why (connection refused, timed out, HTTP 5xx);
3. :func:`check_webhook_endpoint` -- ``curl -I`` the customer's endpoint from here.

``/metrics`` or logs that cannot be read give ``UNKNOWN``; the customer endpoint is the subject
of step 3, so an endpoint that refuses or hangs is CRITICAL there.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pandas as pd

from aura_ops.errors import AuraOpsError
from aura_ops.findings import Evidence, Finding, Status, unknown
from aura_ops.logs_checks import nothing_read
from aura_ops.prometheus import redact_url, scrape

__all__ = [
    "check_webhook_endpoint",
    "check_webhook_failures",
    "check_webhook_logs",
    "webhook_table",
]


def _sum(df: pd.DataFrame, name: str) -> float | None:
    rows = df[df["name"] == name] if len(df) else df
    return float(rows["value"].sum()) if len(rows) else None


def _ratio_status(ratio: float, warn: float, crit: float) -> Status:
    return Status.CRITICAL if ratio > crit else Status.WARNING if ratio > warn else Status.OK


def check_webhook_failures(
    metrics_url: str,
    *,
    interval_s: float = 5.0,
    failure_ratio_warn: float = 0.2,
    failure_ratio_crit: float = 0.5,
    failures_counter: str = "aura_webhook_failures_total",
    deliveries_counter: str = "aura_webhook_deliveries_total",
    timeout_s: float = 5.0,
) -> list[Finding]:
    """Share of webhook deliveries that exhausted their retries, between two scrapes.

    When no delivery finished between the scrapes the counters' totals since the process
    started are judged instead. Without a deliveries counter, any new failure is a WARNING.
    """
    shown = redact_url(metrics_url)
    reproduce = f"check_webhook_failures({shown!r}, interval_s={interval_s:g})"
    source = f"GET {shown} twice, {interval_s:g} s apart ({failures_counter}, {deliveries_counter})"
    try:
        first = scrape(metrics_url, timeout_s=timeout_s)
        t0 = time.monotonic()
        time.sleep(interval_s)
        second = scrape(metrics_url, timeout_s=timeout_s)
        span = time.monotonic() - t0
    except AuraOpsError as exc:
        return [
            unknown("webhooks.failures", shown, exc.one_line(), source=source, reproduce=reproduce)
        ]
    f0, f1 = _sum(first, failures_counter), _sum(second, failures_counter)
    d0, d1 = _sum(first, deliveries_counter), _sum(second, deliveries_counter)
    if f1 is None:
        reason = f"no {failures_counter} at {shown}"
        return [unknown("webhooks.failures", shown, reason, source=source, reproduce=reproduce)]
    failed, scope = f1 - (f0 or 0.0), f"in {span:.1f} s"
    done = None if d1 is None else d1 - (d0 or 0.0)
    if done == 0:
        failed, done, scope = f1, d1, "since the process started"
    readings = [
        {"scrape": i, failures_counter: f, deliveries_counter: d}
        for i, (f, d) in enumerate(((f0, d0), (f1, d1)), 1)
    ]
    common: dict[str, Any] = dict(
        check="webhooks.failures",
        subject=failures_counter,
        expected=f"≤ {failure_ratio_warn:.0%} of deliveries failing (seed 003)",
        evidence=(Evidence.table(readings, "the two scrapes"),),
        source=source,
        reproduce=reproduce,
    )
    if not done:
        status = Status.WARNING if failed > 0 else Status.OK
        text = f"{failed:.0f} webhook deliveries failed {scope} (no delivery count to compare)"
        return [Finding(status=status, summary=text, observed=failed, **common)]
    ratio = failed / done
    status = _ratio_status(ratio, failure_ratio_warn, failure_ratio_crit)
    summary = (
        f"Webhook failure rate {ratio:.0%}: {failed:.0f} of {done:.0f} deliveries exhausted "
        f"their retries {scope}"
    )
    return [Finding(status=status, summary=summary, observed=round(ratio, 4), **common)]


def webhook_table(events: pd.DataFrame) -> pd.DataFrame:
    """Webhook deliveries per endpoint: ``delivered``, ``exhausted``, failed ``attempts``, the
    most frequent failure ``reason`` and first/last failure. Pure."""
    columns = [
        "webhook_url",
        "delivered",
        "exhausted",
        "failed_attempts",
        "reason",
        "first",
        "last",
    ]
    if events.empty or "webhook_outcome" not in events:
        return pd.DataFrame(columns=columns)
    hooks = events[events["webhook_outcome"].notna()]
    rows = []
    for url, part in hooks.groupby("webhook_url", sort=True):
        bad = part[part["webhook_outcome"] != "delivered"]
        reasons = bad["reason"].dropna() if "reason" in bad else pd.Series(dtype=str)
        rows.append(
            {
                "webhook_url": redact_url(str(url)),
                "delivered": int((part["webhook_outcome"] == "delivered").sum()),
                "exhausted": int((part["webhook_outcome"] == "exhausted").sum()),
                "failed_attempts": int((part["webhook_outcome"] == "retry").sum()),
                "reason": reasons.value_counts().index[0] if len(reasons) else "",
                "first": bad["ts"].min() if len(bad) else None,
                "last": bad["ts"].max() if len(bad) else None,
            }
        )
    return pd.DataFrame(rows, columns=columns)


def check_webhook_logs(
    events: pd.DataFrame,
    *,
    source: str = "",
    failure_ratio_warn: float = 0.2,
    failure_ratio_crit: float = 0.5,
) -> list[Finding]:
    """Retries exhausted per webhook endpoint in the worker's logs, with the reason.

    ``events`` is a :func:`aura_ops.logs.load_events` frame; webhook lines carry
    ``webhook_outcome`` (``delivered``, ``retry``, ``exhausted``), ``webhook_url`` and
    ``reason``. Any exhausted delivery is a WARNING (a customer missed a notification);
    above ``failure_ratio_warn`` / ``failure_ratio_crit`` of finished deliveries, WARNING /
    CRITICAL.
    """
    where = source or events.attrs.get("query", "") or "events"
    src = f"{where} (lines with webhook_outcome=…)"
    reproduce = f"check_webhook_logs(load_events({source!r}))"
    subject = f"webhook deliveries in {events.attrs.get('subject', 'logs')}"
    if events.attrs.get("error"):
        return [
            unknown(
                "webhooks.logs", subject, events.attrs["error"], source=src, reproduce=reproduce
            )
        ]
    if events.empty:  # nothing read is no evidence of healthy deliveries
        return [
            unknown("webhooks.logs", subject, nothing_read(events), source=src, reproduce=reproduce)
        ]
    table = webhook_table(events)
    if table.empty:
        return [
            Finding(
                "webhooks.logs",
                subject,
                Status.OK,
                f"No webhook deliveries in {len(events)} log lines",
                source=src,
                reproduce=reproduce,
            )
        ]
    evidence = Evidence.table(table, "webhook deliveries per endpoint")
    common = dict(evidence=(evidence,), source=src, reproduce=reproduce)
    findings = [
        _endpoint_finding(row, failure_ratio_warn, failure_ratio_crit, common)
        for row in table.itertuples()
    ]
    return sorted(findings, key=lambda f: -int(f.status))


_REPLAY_HINT = (
    "Verify the customer's endpoint (DNS, TLS, firewall), then replay the failed deliveries; "
    "raise retries only for transient failures (seed 003)"
)


def _endpoint_finding(row: Any, warn: float, crit: float, common: dict[str, Any]) -> Finding:
    """One endpoint's row of :func:`webhook_table`, judged."""
    finished = row.delivered + row.exhausted
    ratio = row.exhausted / finished if finished else 0.0
    status = _ratio_status(ratio, warn, crit)
    if row.exhausted:  # a customer missed notifications: never OK
        status = max(status, Status.WARNING)
        summary = (
            f"Webhook retries exhausted for {row.exhausted} of {finished} deliveries to "
            f"{row.webhook_url} ({ratio:.0%}): {row.reason}"
        )
    elif row.failed_attempts:
        status = max(status, Status.WARNING) if not row.delivered else status
        summary = (
            f"{row.failed_attempts} webhook attempts to {row.webhook_url} failed "
            f"({row.reason}), retried; {row.delivered} delivered"
        )
    else:
        summary = f"All {row.delivered} webhooks to {row.webhook_url} delivered"
    return Finding(
        check="webhooks.logs",
        subject=row.webhook_url,
        status=status,
        summary=summary,
        observed=round(ratio, 4),
        expected=f"≤ {warn:.0%} of deliveries exhausted",
        hint=_REPLAY_HINT if status > Status.OK else "",
        labels={"role": "cause"} if status > Status.OK else {},
        **common,
    )


def check_webhook_endpoint(url: str, *, timeout_s: float = 5.0) -> list[Finding]:
    """``curl -I`` the customer's webhook endpoint: does it accept connections and answer?

    Any HTTP answer below 500 means it is reachable (a webhook URL may refuse ``HEAD``);
    refused, timed out or 5xx is CRITICAL.
    """
    shown = redact_url(url)
    common: dict[str, Any] = dict(
        check="webhooks.endpoint",
        subject=shown,
        source=f"HEAD {shown} (curl -I)",
        reproduce=f"check_webhook_endpoint({shown!r}, timeout_s={timeout_s:g})",
        expected=f"an HTTP answer below 500 within {timeout_s:g} s",
    )
    if not url:
        return [
            unknown(
                "webhooks.endpoint",
                "webhook endpoint",
                "no webhook URL given",
                reproduce=common["reproduce"],
            )
        ]
    t0 = time.perf_counter()
    try:
        with httpx.Client(timeout=timeout_s) as client:
            resp = client.head(url)
    except httpx.TimeoutException:
        text = f"timed out after {timeout_s:g} s (it accepts connections but does not answer)"
        return [
            Finding(
                status=Status.CRITICAL,
                summary=f"Webhook endpoint {shown} {text}",
                hint="The customer's server hangs: tell the customer",
                **common,
            )
        ]
    except httpx.ConnectError as exc:
        text = "connection refused" if "refused" in str(exc).lower() else f"cannot connect: {exc}"
        return [
            Finding(
                status=Status.CRITICAL,
                summary=f"Webhook endpoint {shown}: {text}",
                hint="Check DNS and the customer's server; tell the customer",
                **common,
            )
        ]
    except httpx.HTTPError as exc:
        return [
            Finding(
                status=Status.CRITICAL,
                summary=f"Webhook endpoint {shown}: {type(exc).__name__}",
                **common,
            )
        ]
    ms = (time.perf_counter() - t0) * 1000
    status = Status.CRITICAL if resp.status_code >= 500 else Status.OK
    summary = f"Webhook endpoint {shown} answered {resp.status_code} in {ms:.0f} ms"
    return [Finding(status=status, summary=summary, observed=resp.status_code, **common)]
