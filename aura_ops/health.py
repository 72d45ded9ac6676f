"""HTTP health probes: liveness, readiness with dependency detail, component status, providers.

These are the seeds' ``curl`` steps (000 "Quick Health Check", 003 ``/health/readyz``, 004
"Service Down"). For a health endpoint the service *is* the subject: an endpoint that refuses
the connection or does not answer within the timeout is a ``CRITICAL`` finding ("not
answering"), never OK. A body that cannot be understood is ``UNKNOWN``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from aura_ops.errors import SourceTimeoutError, SourceUnavailableError
from aura_ops.findings import Evidence, Finding, Status

__all__ = [
    "Probe",
    "check_components",
    "check_endpoint",
    "check_health",
    "check_providers",
    "check_readiness",
    "fetch_probe",
]

#: Component status words used by the seeds' systems (ASP.NET HealthStatus, ad-hoc JSON).
_COMPONENT_STATUS = {
    "healthy": Status.OK,
    "ok": Status.OK,
    "up": Status.OK,
    "pass": Status.OK,
    "green": Status.OK,
    "degraded": Status.WARNING,
    "warn": Status.WARNING,
    "yellow": Status.WARNING,
    "unhealthy": Status.CRITICAL,
    "down": Status.CRITICAL,
    "fail": Status.CRITICAL,
    "error": Status.CRITICAL,
    "red": Status.CRITICAL,
}


@dataclasses.dataclass(frozen=True)
class Probe:
    """One HTTP request's outcome: status code, latency, body, correlation ID or the error."""

    url: str
    status_code: int | None
    latency_ms: float
    body: Any = None
    correlation_id: str | None = None
    error: str | None = None

    @property
    def answered(self) -> bool:
        return self.status_code is not None


def fetch_probe(
    url: str,
    *,
    timeout_s: float = 5.0,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
) -> Probe:
    """Request ``url`` once with a hard timeout; never raises for HTTP or network errors.

    The body is parsed as JSON when it is JSON, otherwise kept as text (first 4 kB).
    """
    start = time.perf_counter()
    try:
        with httpx.Client(timeout=httpx.Timeout(timeout_s), follow_redirects=False) as client:
            r = client.request(method, url, headers=dict(headers or {}))
    except httpx.TimeoutException:
        return Probe(
            url,
            None,
            (time.perf_counter() - start) * 1000,
            error=f"no answer within {timeout_s:g} s",
        )
    except httpx.HTTPError as exc:
        return Probe(
            url,
            None,
            (time.perf_counter() - start) * 1000,
            error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
        )
    latency = (time.perf_counter() - start) * 1000
    body: Any
    try:
        body = r.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        body = r.text[:4096]
    return Probe(url, r.status_code, latency, body, r.headers.get("x-correlation-id"))


def _json_probe(url: str, timeout_s: float) -> tuple[Probe, Any]:
    probe = fetch_probe(url, timeout_s=timeout_s)
    if not probe.answered:
        raise (SourceTimeoutError if "within" in (probe.error or "") else SourceUnavailableError)(
            f"{url} did not answer: {probe.error}", source=url
        )
    return probe, probe.body


def check_endpoint(
    url: str,
    *,
    name: str = "",
    timeout_s: float = 5.0,
    latency_warn_ms: float = 1000.0,
    expect_status: int = 200,
) -> list[Finding]:
    """Is ``url`` answering ``expect_status`` quickly? (``curl -I .../health/live``)."""
    label = name or url
    probe = fetch_probe(url, timeout_s=timeout_s)
    reproduce = f"check_endpoint({url!r}, timeout_s={timeout_s:g})"
    common = {
        "check": "health.endpoint",
        "subject": url,
        "source": f"GET {url}",
        "reproduce": reproduce,
        "expected": f"HTTP {expect_status} within {latency_warn_ms:g} ms",
    }
    if not probe.answered:
        return [
            Finding(
                status=Status.CRITICAL,
                summary=f"{label} is not answering: {probe.error}",
                observed=probe.error,
                hint="Check that the process is running and "
                "listening (pod status, container logs) before anything else.",
                **common,
            )
        ]
    evidence = (
        Evidence.json(
            {
                "status_code": probe.status_code,
                "latency_ms": round(probe.latency_ms, 1),
                "x-correlation-id": probe.correlation_id,
                "body": probe.body,
            },
            f"GET {url}",
        ),
    )
    observed = f"HTTP {probe.status_code} in {probe.latency_ms:.0f} ms"
    if probe.status_code != expect_status:
        status = Status.CRITICAL if probe.status_code >= 500 else Status.WARNING
        return [
            Finding(
                status=status,
                summary=f"{label} answered HTTP {probe.status_code}",
                observed=observed,
                evidence=evidence,
                **common,
            )
        ]
    if probe.latency_ms > latency_warn_ms:
        return [
            Finding(
                status=Status.WARNING,
                summary=f"{label} is slow: {probe.latency_ms:.0f} ms",
                observed=observed,
                evidence=evidence,
                **common,
            )
        ]
    return [
        Finding(
            status=Status.OK,
            summary=f"{label} OK ({probe.latency_ms:.0f} ms)",
            observed=observed,
            evidence=evidence,
            **common,
        )
    ]


def _component_status(value: Any) -> Status:
    if isinstance(value, Mapping):
        value = value.get("status", value.get("state"))
    return _COMPONENT_STATUS.get(str(value).strip().lower(), Status.UNKNOWN)


def check_components(url: str, *, timeout_s: float = 5.0) -> list[Finding]:
    """Parse a ``/api/health/system``-style body: one finding per component that is not healthy.

    Accepts ``{"status", "components": {name: "Healthy" | {"status": ...}}}`` and
    ``{"checks": {...}}`` / ``{"entries": {...}}`` (ASP.NET) shapes.
    """
    reproduce = f"check_components({url!r})"
    try:
        probe, body = _json_probe(url, timeout_s)
    except SourceUnavailableError as exc:
        return [
            Finding(
                "health.components",
                url,
                Status.CRITICAL,
                f"{url} is not answering: {exc}",
                source=f"GET {url}",
                reproduce=reproduce,
            )
        ]
    parts = None
    if isinstance(body, Mapping):
        parts = body.get("components") or body.get("checks") or body.get("entries")
    if not isinstance(parts, Mapping):
        return [
            Finding(
                "health.components",
                url,
                Status.UNKNOWN,
                f"{url} answered HTTP {probe.status_code} without a component list",
                evidence=(Evidence.json(body, "body"),),
                source=f"GET {url}",
                reproduce=reproduce,
            )
        ]
    rows = [
        {
            "component": k,
            "status": v.get("status") if isinstance(v, Mapping) else v,
            "judged": _component_status(v).name,
        }
        for k, v in parts.items()
    ]
    table = Evidence.table(rows, "components")
    bad = [r for r in rows if r["judged"] != "OK"]
    if not bad:
        return [
            Finding(
                "health.components",
                url,
                Status.OK,
                f"All {len(rows)} components healthy",
                observed=len(rows),
                evidence=(table,),
                source=f"GET {url}",
                reproduce=reproduce,
            )
        ]
    return [
        Finding(
            "health.components",
            f"{url}#{r['component']}",
            Status[r["judged"]],
            f"Component {r['component']} is {r['status']}",
            observed=r["status"],
            expected="Healthy",
            evidence=(table,),
            source=f"GET {url}",
            reproduce=reproduce,
        )
        for r in bad
    ]


def check_readiness(url: str, *, timeout_s: float = 5.0) -> list[Finding]:
    """Readiness with dependency detail (seed 003 ``/health/readyz``).

    Names the failing dependency (``Component database is Unhealthy``)."""
    findings = [
        f.replace(check="health.readiness", reproduce=f"check_readiness({url!r})")
        for f in check_components(url, timeout_s=timeout_s)
    ]
    if all(f.status == Status.OK for f in findings):
        return [
            f.replace(summary="Ready: " + f.summary[0].lower() + f.summary[1:]) for f in findings
        ]
    return findings


def check_providers(
    url: str,
    *,
    timeout_s: float = 5.0,
    error_rate_warn: float = 0.05,
    latency_warn_ms: float = 5000.0,
) -> list[Finding]:
    """External providers and their circuit breakers (seed 000 "Circuit Breakers Tripped")."""
    reproduce = f"check_providers({url!r})"
    try:
        probe, body = _json_probe(url, timeout_s)
    except SourceUnavailableError as exc:
        return [
            Finding(
                "health.providers",
                url,
                Status.UNKNOWN,
                f"Could not read providers: {exc}",
                source=f"GET {url}",
                reproduce=reproduce,
            )
        ]
    providers: Sequence[Any] = []
    if isinstance(body, Mapping):
        raw = body.get("providers", body)
        providers = list(raw.values()) if isinstance(raw, Mapping) else list(raw)
    if not providers or not all(isinstance(p, Mapping) for p in providers):
        return [
            Finding(
                "health.providers",
                url,
                Status.UNKNOWN,
                "Provider health body not understood",
                evidence=(Evidence.json(body, "body"),),
                source=f"GET {url}",
                reproduce=reproduce,
            )
        ]
    table = Evidence.table(providers, "providers")
    findings = []
    for p in providers:
        name = str(p.get("name", "?"))
        circuit = str(p.get("circuit", p.get("circuitState", "closed"))).lower()
        status = _component_status(p)
        reasons = []
        if circuit == "open":
            status, reasons = Status.CRITICAL, [*reasons, "circuit open"]
        elif circuit in ("half-open", "half_open", "halfopen"):
            status, reasons = max(status, Status.WARNING), [*reasons, "circuit half-open"]
        rate = float(p.get("error_rate", 0) or 0)
        if rate >= error_rate_warn:
            status, reasons = max(status, Status.WARNING), [*reasons, f"error rate {rate:.0%}"]
        latency = float(p.get("latency_ms", 0) or 0)
        if latency >= latency_warn_ms:
            status, reasons = max(status, Status.WARNING), [*reasons, f"latency {latency:.0f} ms"]
        if status != Status.OK:
            detail = ", ".join(reasons) or str(p.get("status"))
            findings.append(
                Finding(
                    "health.providers",
                    f"provider/{name}",
                    status,
                    f"Provider {name}: {detail}",
                    observed=p,
                    evidence=(table,),
                    source=f"GET {url}",
                    reproduce=reproduce,
                    hint="Enable fallback providers or offline mode (seed 000).",
                )
            )
    if not findings:
        names = ", ".join(str(p.get("name")) for p in providers)
        findings.append(
            Finding(
                "health.providers",
                url,
                Status.OK,
                f"All providers healthy ({names})",
                evidence=(table,),
                source=f"GET {url}",
                reproduce=reproduce,
            )
        )
    return findings


def check_health(base_url: str, *, timeout_s: float = 5.0) -> list[Finding]:
    """The seeds' quick health check: liveness, readiness, system components and providers."""
    base = base_url.rstrip("/")
    live = check_endpoint(f"{base}/health/live", name="Liveness", timeout_s=timeout_s)
    if live[0].status == Status.CRITICAL and "not answering" in live[0].summary:
        return live  # nothing else will answer either; say it once
    return [
        *live,
        *check_readiness(f"{base}/health/ready", timeout_s=timeout_s),
        *check_components(f"{base}/api/health/system", timeout_s=timeout_s),
        *check_providers(f"{base}/api/health/providers", timeout_s=timeout_s),
    ]
