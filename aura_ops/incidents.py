"""Incidents: an incident's runs and alerts, grouped from what aura-ops recorded.

Runs (:func:`aura_ops.incident_sources.load_runs`: run directories and the ``aura-ops serve``
database) are grouped into :class:`Incident` objects, in this order:

1. runs recorded with ``aura-ops run --incident ID`` belong to incident ``ID`` (an ``ID`` equal
   to an automatic incident's id joins that incident);
2. alert runs group by **alert group** (alert name plus the labels in ``GROUP_LABELS``) and
   **time**: an alert of the group firing while the incident is open, or less than ``gap_s``
   after it resolved, joins it;
3. any other run joins an incident of its runbook, from the incident's start to ``gap_s``
   after its end; the runs left with a WARNING or CRITICAL verdict group by runbook and time
   the same way (a later OK run of that runbook closes such an incident).

Drill runs (practice) and runs of the ``postmortem`` notebook are never part of an incident.

An incident with alerts is ``resolved`` once all of them resolved (at the last resolution);
one without alerts once its last run is OK (at that run's end). Its severity is the most severe
its runs proposed (:mod:`aura_ops.severity`). Automatic ids are ``YYYYMMDD-HHMM-<alert or
runbook>`` from the start time, so they stay the same as runs are added. Metrics over a period
are :mod:`aura_ops.incident_metrics`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from aura_ops.errors import ConfigError
from aura_ops.findings import Finding, Status, rank
from aura_ops.incident_sources import (
    AlertRecord,
    RunRecord,
    load_runs,
    validate_incident_id,
)

__all__ = [
    "AlertRecord",
    "Incident",
    "RunRecord",
    "find_incident",
    "group_incidents",
    "list_incidents",
    "load_runs",
    "validate_incident_id",
]

_NOT_INCIDENTS = ("postmortem",)  # notebooks that look at incidents rather than systems


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclasses.dataclass(frozen=True)
class Incident:
    """Runs and alerts of one incident, with its times, status and severity."""

    id: str
    group: str
    runs: tuple[RunRecord, ...]
    alerts: tuple[AlertRecord, ...]
    explicit: bool = False

    @property
    def started_at(self) -> dt.datetime:
        """The first alert's ``startsAt`` (or its receipt), else the first run's start."""
        times = [a.starts_at or a.received_at for a in self.alerts] + [r.start for r in self.runs]
        return min(times)

    @property
    def first_run_at(self) -> dt.datetime | None:
        """When the first run started: evidence collection, the acknowledgement."""
        starts = [r.started_at for r in self.runs if r.started_at]
        return min(starts) if starts else None

    @property
    def ended_at(self) -> dt.datetime | None:
        """When it resolved (see module docstring); None while open."""
        if self.alerts:
            if all(a.resolved_at for a in self.alerts):
                return max(a.resolved_at for a in self.alerts if a.resolved_at)
            return None
        last = max(self.runs, key=lambda r: r.start)
        return last.end if last.verdict == "OK" else None

    @property
    def status(self) -> str:
        """``resolved`` or ``open``."""
        return "resolved" if self.ended_at else "open"

    @property
    def duration_s(self) -> float | None:
        """Start to resolution in seconds (None while open)."""
        end = self.ended_at
        return (end - self.started_at).total_seconds() if end else None

    @property
    def detect_s(self) -> float | None:
        """Time to detect: first alert → first run (None without alerts or runs)."""
        first = self.first_run_at
        if not self.alerts or first is None:
            return None
        return max(0.0, (first - self.started_at).total_seconds())

    @property
    def severity(self) -> str:
        """The most severe level proposed by its runs (``SEV-1``..``SEV-4``), '' if none."""
        levels = [str(r.severity.get("level", "")) for r in self.runs if r.severity]
        levels = [lv for lv in levels if re.fullmatch(r"SEV-\d", lv)]
        return min(levels) if levels else ""

    @property
    def priority(self) -> str:
        """The priority (``P0``..``P3``) that goes with :attr:`severity`."""
        for r in self.runs:
            if r.severity and r.severity.get("level") == self.severity:
                return str(r.severity.get("priority", ""))
        return ""

    @property
    def verdict(self) -> Status:
        """The worst verdict of its runs."""
        return max((r.status for r in self.runs if r.verdict), default=Status.UNKNOWN)

    @property
    def name(self) -> str:
        """The alert name, else the runbook title."""
        if self.alerts:
            return self.alerts[0].name
        return self.runs[0].title or self.runs[0].runbook

    @property
    def headline(self) -> str:
        """The headline of its worst run (the first of the worst)."""
        worst = [r for r in self.runs if r.verdict and r.status == self.verdict]
        run = worst[0] if worst else self.runs[0]
        return run.headline or run.error

    @property
    def title(self) -> str:
        """One line: what fired and what the evidence says."""
        return f"{self.name}: {self.headline}" if self.headline else self.name

    def findings(self, *, min_status: Status = Status.OK) -> list[Finding]:
        """Findings of all its runs at ``min_status`` or worse, ranked (causes first)."""
        return rank(f for r in self.runs for f in r.findings if f.status >= min_status)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no findings)."""
        iso = _iso
        return {
            "id": self.id,
            "group": self.group,
            "title": self.title,
            "severity": self.severity,
            "priority": self.priority,
            "status": self.status,
            "verdict": self.verdict.name,
            "explicit": self.explicit,
            "started_at": iso(self.started_at),
            "first_run_at": iso(self.first_run_at),
            "ended_at": iso(self.ended_at),
            "duration_s": self.duration_s,
            "detect_s": self.detect_s,
            "runs": [r.run_id for r in self.runs],
            "alerts": [
                {
                    "name": a.name,
                    "labels": dict(a.labels),
                    "starts_at": iso(a.starts_at),
                    "received_at": iso(a.received_at),
                    "resolved_at": iso(a.resolved_at),
                }
                for a in self.alerts
            ],
        }


@dataclasses.dataclass
class _Cluster:
    runs: list[RunRecord]
    group: str

    @property
    def alerts(self) -> list[AlertRecord]:
        seen: dict[str, AlertRecord] = {}
        for r in self.runs:
            for a in r.alerts:
                seen.setdefault(a.key, a)
        return list(seen.values())

    def start(self) -> dt.datetime:
        return min(r.begin for r in self.runs)

    def horizon(self) -> dt.datetime | None:
        """Until when a later run may join (before ``gap_s``); None while an alert fires."""
        alerts = self.alerts
        if alerts and not all(a.resolved_at for a in alerts):
            return None
        resolved = [a.resolved_at for a in alerts if a.resolved_at]
        return max([*resolved, *(r.end for r in self.runs)])

    def accepts(self, run: RunRecord, gap: dt.timedelta, *, same_runbook: bool) -> bool:
        """Whether ``run`` belongs here: it begins after this started and before ``gap``
        after this ended (and, with ``same_runbook``, ran one of its runbooks)."""
        if same_runbook and run.runbook not in {r.runbook for r in self.runs}:
            return False
        horizon = self.horizon()
        return run.begin >= self.start() and (horizon is None or run.begin <= horizon + gap)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "incident"


def group_incidents(runs: Iterable[RunRecord], *, gap_s: float = 1800.0) -> list[Incident]:
    """Group runs into incidents (see module docstring); oldest first."""
    gap = dt.timedelta(seconds=gap_s)
    pool = sorted(
        (r for r in runs if r.trigger != "drill" and r.runbook not in _NOT_INCIDENTS),
        key=lambda r: r.begin,
    )
    auto: list[_Cluster] = []
    for run in (r for r in pool if r.alerts and not r.incident):
        mine = [c for c in auto if c.group == run.group]
        if mine and mine[-1].accepts(run, gap, same_runbook=False):
            mine[-1].runs.append(run)
        else:
            auto.append(_Cluster([run], run.group))
    explicit: dict[str, _Cluster] = {}
    for run in (r for r in pool if r.incident):
        explicit.setdefault(run.incident, _Cluster([], f"incident={run.incident}"))
        explicit[run.incident].runs.append(run)
    for run in (r for r in pool if not r.alerts and not r.incident):
        homes = [*auto, *explicit.values()]
        home = next((c for c in homes if c.accepts(run, gap, same_runbook=True)), None)
        if home is not None:
            home.runs.append(run)
        elif run.status >= Status.WARNING:
            auto.append(_Cluster([run], run.group))
    return _name(auto, explicit)


def _name(auto: list[_Cluster], explicit: dict[str, _Cluster]) -> list[Incident]:
    """Give automatic incidents their ids; an explicit id equal to one joins it."""
    auto.sort(key=lambda c: (c.start(), c.group))
    named: dict[str, _Cluster] = {}
    for c in auto:
        first = c.alerts[0].name if c.alerts else c.runs[0].runbook
        base = f"{c.start():%Y%m%d-%H%M}-{_slug(first)}"
        cid, n = base, 1
        while cid in named:
            n += 1
            cid = f"{base}-{n}"
        named[cid] = c
    explicit_ids = set()
    for cid, c in explicit.items():
        if cid in named:
            named[cid].runs.extend(c.runs)
        else:
            named[cid] = c
            explicit_ids.add(cid)
    out = [
        Incident(
            id=cid,
            group=c.group,
            runs=tuple(sorted(c.runs, key=lambda r: r.start)),
            alerts=tuple(sorted(c.alerts, key=lambda a: a.starts_at or a.received_at)),
            explicit=cid in explicit_ids,
        )
        for cid, c in named.items()
        if c.runs
    ]
    return sorted(out, key=lambda i: (i.started_at, i.id))


def list_incidents(
    output_root: str | Path | None = None,
    db_path: str | Path | None = None,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    gap_s: float = 1800.0,
) -> list[Incident]:
    """Incidents that started in ``[since, until)`` (all when omitted), oldest first."""
    found = group_incidents(load_runs(output_root, db_path), gap_s=gap_s)
    return [
        i
        for i in found
        if (since is None or i.started_at >= since) and (until is None or i.started_at < until)
    ]


def find_incident(
    incident_id: str,
    output_root: str | Path | None = None,
    db_path: str | Path | None = None,
    *,
    gap_s: float = 1800.0,
    incidents: Sequence[Incident] | None = None,
) -> Incident:
    """The incident ``incident_id`` (``''`` or ``latest``: the most recent) among
    ``incidents`` (default: all recorded); ConfigError when there is none."""
    found = list_incidents(output_root, db_path, gap_s=gap_s) if incidents is None else incidents
    if not found:
        raise ConfigError(
            "no incidents recorded",
            hint="incidents come from alert runs (aura-ops serve) and `aura-ops run --incident ID`",
        )
    if incident_id in ("", "latest"):
        return found[-1]
    for incident in found:
        if incident.id == incident_id:
            return incident
    recent = ", ".join(i.id for i in found[-5:])
    raise ConfigError(f"unknown incident {incident_id!r}", hint=f"recent: {recent}")
