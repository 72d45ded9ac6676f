"""Is the monitoring itself working: Prometheus readiness and scrape-target health.

* :func:`check_prometheus_up` -- ``/-/ready`` and the build info.
* :func:`check_targets` -- ``/api/v1/targets``: a job with targets down is a finding (all down
  CRITICAL, some WARNING); a Prometheus that cannot be read is UNKNOWN.
"""

from __future__ import annotations

import pandas as pd

from aura_ops import prometheus as prom
from aura_ops.errors import AuraOpsError
from aura_ops.findings import Evidence, Finding, Status, unknown
from aura_ops.metrics_common import _guarded, _reproduce
from aura_ops.prometheus import redact_url

__all__ = ["check_prometheus_up", "check_targets"]

# --------------------------------------------------------------------------- the monitoring itself


@_guarded("prometheus.up")
def check_prometheus_up(prom_url: str, *, timeout_s: float = 5.0) -> list[Finding]:
    """Is Prometheus answering and ready (``/-/ready``, build info)? UNKNOWN when it is not."""
    shown = redact_url(prom_url)
    reproduce = _reproduce(check_prometheus_up, prom_url=prom_url, timeout_s=timeout_s)
    source = f"GET {shown.rstrip('/')}/-/ready"
    try:
        ready = prom.fetch_ready(prom_url, timeout_s=timeout_s)
        info = prom.fetch_buildinfo(prom_url, timeout_s=timeout_s)
    except AuraOpsError as exc:
        return [unknown("prometheus.up", shown, exc.one_line(), source=source, reproduce=reproduce)]
    except Exception as exc:
        return [unknown("prometheus.up", shown, exc, source=source, reproduce=reproduce)]
    version = info.get("version", "?")
    return [
        Finding(
            check="prometheus.up",
            subject=shown,
            status=Status.OK,
            summary=f"Prometheus {version} at {shown} is ready",
            observed=ready,
            expected="ready",
            evidence=(Evidence.json(info, "build info"),),
            source=f"{source}; GET /api/v1/status/buildinfo",
            reproduce=reproduce,
        )
    ]


def _target_finding(job: str, part: pd.DataFrame, source: str, reproduce: str) -> Finding:
    down = part[part["health"] == "down"]
    status = Status.CRITICAL if len(down) == len(part) else Status.WARNING
    first = down.iloc[0]
    return Finding(
        check="prometheus.targets",
        subject=f"job {job}",
        status=status,
        summary=f"job {job}: {len(down)} of {len(part)} scrape targets down "
        f"({first['instance']}: {first['last_error'] or 'no error text'})",
        observed=len(down),
        expected="0 targets down",
        evidence=(Evidence.table(part, f"targets of job {job}"),),
        source=source,
        hint="Prometheus cannot read the service's /metrics: is the process up and listening?",
        reproduce=reproduce,
        labels={"job": job, "instances": list(down["instance"])},
    )


@_guarded("prometheus.targets")
def check_targets(
    prom_url: str, *, job: str | None = None, timeout_s: float = 5.0
) -> list[Finding]:
    """Scrape-target health from ``/api/v1/targets``: a finding per job with targets down.

    All of a job's targets down is CRITICAL, some WARNING; the healthy ones are listed in one OK
    finding. ``job`` restricts the check to one job (UNKNOWN when it has no target).
    """
    shown = redact_url(prom_url)
    reproduce = _reproduce(check_targets, prom_url=prom_url, job=job, timeout_s=timeout_s)
    source = f"GET {shown.rstrip('/')}/api/v1/targets?state=active"
    try:
        targets = prom.fetch_targets(prom_url, timeout_s=timeout_s)
    except AuraOpsError as exc:
        return [
            unknown("prometheus.targets", shown, exc.one_line(), source=source, reproduce=reproduce)
        ]
    except Exception as exc:
        return [unknown("prometheus.targets", shown, exc, source=source, reproduce=reproduce)]
    if job is not None:
        targets = targets[targets["job"] == job]
    if targets.empty:
        what = f"no scrape target for job {job!r}" if job else "no active scrape targets"
        return [unknown("prometheus.targets", shown, what, source=source, reproduce=reproduce)]
    findings = [
        _target_finding(name, part, source, reproduce)
        for name, part in targets.groupby("job", sort=True)
        if (part["health"] == "down").any()
    ]
    up = targets[targets["health"] == "up"]
    listed = ", ".join(f"{r.job}/{r.instance}" for r in up.head(6).itertuples())
    pending = int((targets["health"] == "unknown").sum())
    summary = f"{len(up)} of {len(targets)} scrape targets up" + (f": {listed}" if listed else "")
    summary += f"; {pending} not scraped yet" if pending else ""
    ok = Finding(
        check="prometheus.targets",
        subject=shown if job is None else f"job {job}",
        status=Status.OK if len(up) else Status.INFO,
        summary=summary,
        observed=len(up),
        expected="all targets up",
        evidence=(Evidence.table(targets, "active scrape targets"),),
        source=source,
        reproduce=reproduce,
    )
    return [*findings, ok]
