"""Triage: from a broad sweep's findings to the affected area, a severity and the next runbook.

Seed 002 *Triage* ("What functionality is broken? ... Determine severity"), seed 004's
*Initial Response Checklist* and seed 000 steps 1-2 (check status, gather information) end in
a decision: which runbook next, at which severity. :func:`propose_runbook` makes it from the
findings of a sweep (:mod:`aura_ops.triage_sweep`): :data:`ROUTES` are tried in order and the
first whose checks reported WARNING or worse names the runbook -- specific causes (database
sessions, service down, disk, backups, GPU, queue, memory, providers, webhooks, realtime)
before the symptoms they produce everywhere else (slow requests, one failing request,
errors in general). The severity comes from ``parameters/severity.yaml``
(:func:`aura_ops.severity.assess`).

The proposal is one finding (``triage.next_runbook``) whose status is the worst of the sweep,
ranked as the cause, so the verdict's headline is the next step::

    show(check_triage(collected()))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from aura_ops.errors import ConfigError
from aura_ops.findings import Evidence, Finding, Status
from aura_ops.severity import Severity, assess

__all__ = ["ROUTES", "Route", "check_triage", "propose_runbook", "route_for"]


@dataclasses.dataclass(frozen=True)
class Route:
    """A runbook and the checks whose WARNING or CRITICAL findings point to it.

    ``checks`` are check ids or prefixes ending in ``.`` (``"backup."``); ``min_status`` is the
    least status that counts (``CRITICAL`` for signals that only mean "down" when critical).
    """

    runbook: str
    area: str
    checks: tuple[str, ...]
    min_status: Status = Status.WARNING

    def matches(self, finding: Finding) -> bool:
        """Whether ``finding`` is a signal for this route."""
        hit = any(
            finding.check == c or (c.endswith(".") and finding.check.startswith(c))
            for c in self.checks
        )
        return hit and finding.status >= self.min_status


#: Tried in order; the first route with a signal wins. Causes first, symptoms last: a lock
#: held on a hot table makes the API hang too, so database sessions come before service-down
#: (a database that does not answer at all has no session findings: the sweep stops there).
ROUTES: tuple[Route, ...] = (
    Route(
        "database-connections",
        "database sessions: connections, idle transactions, locks",
        ("database.connections", "database.idle_in_transaction", "database.blocking_locks"),
    ),
    Route(
        "service-down",
        "service down: the API or its database does not answer",
        ("availability.", "health.endpoint", "health.readiness", "database.connectivity"),
        Status.CRITICAL,
    ),
    Route(
        "storage-space",
        "storage: disk or data directory full",
        ("storage.", "system.disk_usage", "system.largest"),
    ),
    Route("backup-failure", "backups: stale or unreadable", ("backup.",)),
    Route("gpu-oom", "GPU workers: CUDA out of memory", ("system.cuda_oom", "system.gpu_memory")),
    Route("queue-backup", "job queue: backlog and workers", ("queues.", "metrics.queue_depth")),
    Route(
        "memory-leak",
        "memory: growth, OOM kills and restarts",
        ("memory.", "kube.oomkilled", "kube.restarts", "kube.pod_memory", "metrics.memory"),
    ),
    Route(
        "provider-failures",
        "external providers: errors, limits, circuit breakers",
        ("providers.", "health.providers"),
    ),
    Route("webhook-failures", "webhook deliveries to customers", ("webhooks.",)),
    Route("websocket-failures", "live updates: WebSocket handshakes and broker", ("realtime.",)),
    Route(
        "slow-performance",
        "latency: slow endpoints and queries",
        (
            "logs.latency",
            "metrics.latency",
            "database.slow_statements",
            "database.long_running_queries",
        ),
    ),
    Route("request-trace", "one request failing along its path", ("logs.trace",)),
    Route(
        "high-error-rate",
        "errors: failing endpoints, rate limiting, new errors",
        ("logs.", "metrics.error_ratio", "changes.errors_after", "health.", "changes."),
    ),
)


def route_for(findings: Iterable[Finding], routes: tuple[Route, ...] = ROUTES) -> Route | None:
    """The first route with a signal among ``findings`` (None: nothing WARNING or worse)."""
    items = [f for f in findings if f.check != "triage.next_runbook"]
    return next((r for r in routes if any(r.matches(f) for f in items)), None)


def _signals(items: list[Finding], routes: tuple[Route, ...]) -> list[dict[str, Any]]:
    rows = []
    for f in sorted(items, key=lambda f: -int(f.status)):
        if f.status < Status.WARNING:
            continue
        points = next((r.runbook for r in routes if r.matches(f)), "")
        rows.append(
            {"status": f.status.name, "check": f.check, "runbook": points, "summary": f.summary}
        )
    return rows


def propose_runbook(
    findings: Iterable[Finding],
    *,
    routes: tuple[Route, ...] = ROUTES,
    policy: Mapping[str, Any] | None = None,
) -> Finding:
    """The triage decision as a finding: the next runbook, the area and a severity.

    Its status is the worst of the findings (OK when nothing is WARNING or worse), its labels
    carry ``runbook``, ``area``, ``severity`` and ``priority``.
    """
    items = [f for f in findings if f.check != "triage.next_runbook"]
    try:
        sev = assess(items, policy)
    except ConfigError as exc:
        sev = Severity("?", "?", f"no severity policy: {exc}")
    route = route_for(items, routes)
    base: dict[str, Any] = {
        "check": "triage.next_runbook",
        "subject": "incident",
        "source": f"{len(items)} findings of the triage sweep, routed by aura_ops.triage.ROUTES",
        "reproduce": "propose_runbook(collected())",
        "evidence": (Evidence.table(_signals(items, routes), "signals, worst first"),),
    }
    if route is None:
        unread = [f.subject for f in items if f.status == Status.UNKNOWN]
        summary = f"No incident signal in {len(items)} checks: no runbook to run ({sev.level})"
        if unread:
            summary += f"; {len(unread)} could not be read: {', '.join(unread[:3])}"
        labels = {"severity": sev.level, "priority": sev.priority}
        return Finding(**base, status=Status.OK, summary=summary, labels=labels)
    lead = next(f for f in sorted(items, key=lambda f: -int(f.status)) if route.matches(f))
    others = sorted({r.runbook for r in routes for f in items if r.matches(f)} - {route.runbook})
    summary = (
        f"Run {route.runbook} next -- {route.area}: {lead.summary}"
        f" (proposed {sev.level} / {sev.priority})"
    )
    return Finding(
        **base,
        status=max(f.status for f in items),
        summary=summary,
        observed=route.runbook,
        expected="no signal",
        hint=f"aura-ops run {route.runbook} with the same parameters"
        + (f"; other runbooks with signals: {', '.join(others)}" if others else "")
        + f". Severity: {sev.reason}",
        labels={
            "role": "cause",
            "runbook": route.runbook,
            "area": route.area,
            "severity": sev.level,
            "priority": sev.priority,
            "also": others,
        },
    )


def check_triage(findings: Iterable[Finding], **kwargs: Any) -> list[Finding]:
    """:func:`propose_runbook` as a check (a one-element list, for ``show``)."""
    return [propose_runbook(findings, **kwargs)]
