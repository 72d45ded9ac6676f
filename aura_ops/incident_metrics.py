"""Incident metrics over a period, like seed 002's monthly "Incident Report".

::

    since, until, label = month_period("2026-11")
    metrics = incident_metrics(list_incidents(since=since, until=until), label=label)
    print(format_monthly_report(metrics))
    figure = plot_incident_metrics(metrics)

- **counts** by severity (``SEV-1``..``SEV-4``; ``unassessed`` when no run proposed one), and
  how many are still open;
- **MTTD**: mean of first alert → first run, over incidents with an alert (seed 002: "alert
  fires → incident acknowledged"; the run is the first sign anyone looked);
- **MTTR**: mean of start → resolved over resolved incidents, overall and per severity, against
  seed 002's targets (SEV-2 < 1 hour, SEV-3 < 1 day);
- **top causes**: each incident's top cause (its worst finding, causes first, see
  :func:`aura_ops.findings.rank`) in seed 002's categories (:func:`cause_category`).

The impact figures of one incident (:func:`assess_impact`) come from its findings: the peak
5xx ratio any finding observed; failed and total requests from the run whose evidence counted
the most failures (log tables of ``logs.failing_endpoints`` + ``logs.healthy_endpoints``, else
the ``metrics.error_ratio`` table; runs' windows overlap, so they are not added up); the error
budget spent, estimated as overall 5xx ratio x incident duration / ((1 - SLO) x SLO window).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

from aura_ops.errors import ConfigError
from aura_ops.findings import Finding, Status
from aura_ops.incidents import Incident, RunRecord
from aura_ops.postmortem_render import Block, Strong, render_markdown

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Impact",
    "IncidentMetrics",
    "MTTD_TARGET_S",
    "MTTR_TARGETS_S",
    "SEVERITIES",
    "assess_impact",
    "cause_category",
    "format_duration",
    "format_incident_table",
    "format_monthly_report",
    "incident_metrics",
    "month_period",
    "monthly_report_blocks",
    "plot_incident_metrics",
    "resolve_period",
    "top_cause",
]

SEVERITIES = ("SEV-1", "SEV-2", "SEV-3", "SEV-4")
#: Seed 002 "Monthly Report" targets.
MTTD_TARGET_S = 5 * 60.0
MTTR_TARGETS_S = {"SEV-2": 3600.0, "SEV-3": 86400.0}
_TARGET_TEXT = {"SEV-2": "< 1 hour", "SEV-3": "< 1 day"}
SEVERITY_COLOURS = {
    "SEV-1": "#d93025",
    "SEV-2": "#e8710a",
    "SEV-3": "#e0a100",
    "SEV-4": "#3b7dd8",
    "unassessed": "#8a8f98",
}
#: Seed 002 "Top Incident Causes" categories, by the check of an incident's top cause.
_CATEGORIES = (
    (("providers.", "health.providers"), "Provider API failures"),
    (("metrics.latency", "logs.latency", "database.slow"), "Performance issues"),
    (("database.",), "Database issues"),
    (
        ("system.", "storage.", "kube.", "memory.", "availability.", "backup."),
        "Infrastructure issues",
    ),
)


def format_duration(seconds: float | None) -> str:
    """Seed 002's units: ``42 s``, ``3.2 minutes``, ``45 minutes``, ``4 hours``, ``2 days``."""
    if seconds is None:
        return "-"

    def num(x: float) -> str:
        return f"{x:.1f}".removesuffix(".0")

    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{num(seconds / 60)} minutes"
    if seconds < 48 * 3600:
        return f"{num(seconds / 3600)} hours"
    return f"{num(seconds / 86400)} days"


def cause_category(finding: Finding, *, fallback: str = "Other") -> str:
    """The seed 002 cause category of a finding: one that a change caused (``labels.change``,
    or a ``changes.*`` check) is a deployment bug; otherwise by its check; else ``fallback``."""
    if finding.labels.get("change") or finding.check.startswith("changes."):
        return "Deployment bugs"
    for prefixes, name in _CATEGORIES:
        if finding.check.startswith(prefixes):
            return name
    return fallback


def top_cause(incident: Incident) -> Finding | None:
    """The incident's first root-cause candidate: its worst finding, causes first."""
    found = incident.findings(min_status=Status.WARNING)
    return found[0] if found else None


def month_period(month: str) -> tuple[dt.datetime, dt.datetime, str]:
    """``"2026-11"`` → (2026-11-01 UTC, 2026-12-01 UTC, ``"November 2026"``)."""
    m = re.fullmatch(r"(\d{4})-(\d{2})", month or "")
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ConfigError(f"invalid month {month!r}", hint="use YYYY-MM, e.g. 2026-11")
    since = dt.datetime(int(m.group(1)), int(m.group(2)), 1, tzinfo=dt.UTC)
    until = (since + dt.timedelta(days=32)).replace(day=1)
    return since, until, f"{since:%B %Y}"


def resolve_period(
    month: str | None = None, since: str | None = None, until: str | None = None
) -> tuple[dt.datetime | None, dt.datetime | None, str]:
    """(since, until, label) from ``--month YYYY-MM`` or ``--since``/``--until`` dates."""
    if month:
        return month_period(month)
    from aura_ops.incident_sources import parse_when

    bounds = []
    for name, value in (("since", since), ("until", until)):
        when = parse_when(value) if value else None
        if value and when is None:
            raise ConfigError(f"--{name}: {value!r} is not a date", hint="e.g. 2026-11-01")
        bounds.append(when)
    start, end = bounds
    label = " to ".join(f"{b:%Y-%m-%d %H:%M}" if b else "…" for b in (start, end))
    return start, end, label if (start or end) else ""


@dataclasses.dataclass(frozen=True)
class IncidentMetrics:
    """Seed 002's incident metrics over one period."""

    label: str
    incidents: tuple[Incident, ...]
    by_severity: Mapping[str, int]
    open: int
    mttd_s: float | None
    mttr_s: float | None
    mttr_by_severity_s: Mapping[str, float]
    top_causes: tuple[tuple[str, int], ...]

    @property
    def total(self) -> int:
        """How many incidents started in the period."""
        return len(self.incidents)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (incidents by id)."""
        return {
            "label": self.label,
            "total": self.total,
            "by_severity": dict(self.by_severity),
            "open": self.open,
            "mttd_s": self.mttd_s,
            "mttr_s": self.mttr_s,
            "mttr_by_severity_s": dict(self.mttr_by_severity_s),
            "top_causes": [list(c) for c in self.top_causes],
            "incidents": [i.id for i in self.incidents],
        }


def _mean(values: Iterable[float | None]) -> float | None:
    items = [v for v in values if v is not None]
    return sum(items) / len(items) if items else None


def _category(incident: Incident) -> str:
    cause = top_cause(incident)
    if cause is None:
        return "Unknown"
    return cause_category(cause, fallback=incident.runs[0].title or incident.runs[0].runbook)


def incident_metrics(
    incidents: Iterable[Incident],
    *,
    label: str = "",
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> IncidentMetrics:
    """Counts by severity, MTTD, MTTR (overall and by severity) and top causes of the
    incidents that started in ``[since, until)`` (all when omitted)."""
    items = tuple(
        i
        for i in incidents
        if (since is None or i.started_at >= since) and (until is None or i.started_at < until)
    )
    by_severity = {s: 0 for s in SEVERITIES}
    for i in items:
        key = i.severity or "unassessed"
        by_severity[key] = by_severity.get(key, 0) + 1
    per_sev: dict[str, list[float]] = {}
    for i in items:
        if i.duration_s is not None:
            per_sev.setdefault(i.severity or "unassessed", []).append(i.duration_s)
    causes = Counter(_category(i) for i in items)
    return IncidentMetrics(
        label=label,
        incidents=items,
        by_severity=by_severity,
        open=sum(1 for i in items if i.status == "open"),
        mttd_s=_mean(i.detect_s for i in items),
        mttr_s=_mean(i.duration_s for i in items),
        mttr_by_severity_s={k: sum(v) / len(v) for k, v in sorted(per_sev.items())},
        top_causes=tuple(sorted(causes.items(), key=lambda kv: (-kv[1], kv[0]))),
    )


def _target(seconds: float | None, target_s: float | None, text: str) -> str:
    if seconds is None or target_s is None:
        return format_duration(seconds)
    return f"{format_duration(seconds)} (target: {text})"


def monthly_report_blocks(metrics: IncidentMetrics) -> list[Block]:
    """The seed 002 "Monthly Report" as a document (:mod:`aura_ops.postmortem_render`)."""
    m = metrics
    sevs = [f"{sev}: {n}" for sev, n in m.by_severity.items()]
    mttr = [
        f"{sev}: {_target(s, MTTR_TARGETS_S.get(sev), _TARGET_TEXT.get(sev, ''))}"
        for sev, s in m.mttr_by_severity_s.items()
    ]
    causes = [f"{name} ({count})" for name, count in m.top_causes]
    rows = []
    for i in m.incidents:
        cause = top_cause(i)
        rows.append(
            [
                i.id,
                i.severity or "-",
                i.status,
                f"{i.started_at:%Y-%m-%d %H:%M}",
                format_duration(i.duration_s),
                (cause.summary if cause else i.headline)[:160],
            ]
        )
    return [
        ("h2", f"Incident Report: {m.label or 'all recorded incidents'}"),
        ("bullets", [
            ([Strong("Total Incidents"), f": {m.total}"], sevs),
            [Strong("Open"), f": {m.open}"],
            [Strong("MTTD"), f": {_target(m.mttd_s, MTTD_TARGET_S, '< 5 min')}"],
            ([Strong("MTTR"), f": {format_duration(m.mttr_s)}"], mttr),
            [Strong("SLO Compliance"), ": (to fill from the SLO dashboard)"],
            ([Strong("Top Incident Causes"), ":"], causes, "numbered"),
            [Strong("Action Items"), ": (to fill from the post-mortems)"],
        ]),
        ("h3", "Incidents"),
        ("table", (["ID", "Severity", "Status", "Start (UTC)", "Duration", "Top cause"], rows)),
    ]  # fmt: skip


def format_monthly_report(metrics: IncidentMetrics) -> str:
    """The seed 002 "Monthly Report" as markdown. SLO compliance and action items are left for
    a person: aura-ops does not know them."""
    return render_markdown(monthly_report_blocks(metrics))


def plot_incident_metrics(metrics: IncidentMetrics) -> Figure:
    """Incidents by severity, and each resolved incident's time to resolve with the targets
    that fit the scale."""
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(1, 2))
    names = list(metrics.by_severity)
    colours = [SEVERITY_COLOURS.get(k, "#8a8f98") for k in names]
    left.bar(names, [metrics.by_severity[k] for k in names], color=colours)
    left.set_title("Incidents by severity")
    left.set_ylabel("incidents")
    left.yaxis.get_major_locator().set_params(integer=True)
    _plot_resolve_times(right, [i for i in metrics.incidents if i.duration_s is not None])
    right.set_title(f"Time to resolve (MTTR {format_duration(metrics.mttr_s)})")
    fig.suptitle(f"Incident metrics: {metrics.label or 'all'}")
    return fig


def _plot_resolve_times(ax: Any, done: Sequence[Incident]) -> None:
    if not done:
        ax.text(0.5, 0.5, "no resolved incident", ha="center", va="center",
                transform=ax.transAxes)  # fmt: skip
        ax.set_axis_off()
        return
    minutes = [(i.duration_s or 0) / 60 for i in done]
    ax.barh(range(len(done)), minutes,
            color=[SEVERITY_COLOURS.get(i.severity or "unassessed") for i in done])  # fmt: skip
    ax.set_yticks(range(len(done)), [i.id for i in done], fontsize=7)
    top = max(minutes) * 1.15 + 1
    for sev, target in MTTR_TARGETS_S.items():
        if target / 60 <= top * 1.5:
            ax.axvline(target / 60, color=SEVERITY_COLOURS[sev], ls="--", lw=1,
                       label=f"{sev} target {_TARGET_TEXT[sev]}")  # fmt: skip
            top = max(top, target / 60 * 1.05)
    ax.set_xlim(0, top)
    ax.invert_yaxis()
    ax.set_xlabel("minutes")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)


def format_incident_table(incidents: Sequence[Incident]) -> str:
    """The plain-text list ``aura-ops incidents`` prints."""
    head = ("ID", "SEVERITY", "STATUS", "START (UTC)", "END (UTC)", "DURATION", "RUNS", "TITLE")
    rows = [
        (
            i.id,
            i.severity or "-",
            i.status,
            f"{i.started_at:%Y-%m-%d %H:%M:%S}",
            f"{i.ended_at:%Y-%m-%d %H:%M:%S}" if i.ended_at else "-",
            format_duration(i.duration_s),
            str(len(i.runs)),
            i.title[:80],
        )
        for i in incidents
    ]
    widths = [max(len(r[c]) for r in [head, *rows]) for c in range(len(head))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [head, *rows]
    )


# --- impact figures of one incident ---------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Impact:
    """Impact figures from the findings (see module docstring); None where nothing measured."""

    peak_error_ratio: float | None = None
    peak_endpoint: str = ""
    requests_failed: int | None = None
    requests_total: int | None = None
    counted_by: str = ""
    budget_spent: float | None = None
    slo_target: float = 0.999
    slo_window_days: float = 30.0

    @property
    def overall_error_ratio(self) -> float | None:
        """Failed / total requests in the counting run's window."""
        if not self.requests_total or self.requests_failed is None:
            return None
        return self.requests_failed / self.requests_total

    def line(self) -> str:
        """One sentence for the summary and the messages; '' when nothing was measured."""
        parts = []
        if self.peak_error_ratio is not None:
            parts.append(
                f"{self.peak_error_ratio:.0%} of {self.peak_endpoint or 'requests'} "
                "failed at the peak"
            )
        if self.overall_error_ratio is not None:
            parts.append(
                f"{self.requests_failed} of {self.requests_total} requests failed "
                f"({self.overall_error_ratio:.1%}) in the observed window"
            )
        if self.budget_spent is not None:
            parts.append(
                f"about {self.budget_spent:.1%} of the {self.slo_window_days:g}-day "
                f"error budget (SLO {self.slo_target:.2%}) spent"
            )
        return "; ".join(parts)

    def rows(self) -> list[tuple[str, str, str]]:
        """(figure, value, where it comes from) for the impact table."""
        peak, failed, ratio, budget = "-", "-", "-", "-"
        if self.peak_error_ratio is not None:
            peak = f"{self.peak_error_ratio:.1%} ({self.peak_endpoint})"
        if self.requests_failed is not None:
            failed = f"{self.requests_failed} of {self.requests_total}"
        if self.overall_error_ratio is not None:
            ratio = f"{self.overall_error_ratio:.2%}"
        if self.budget_spent is not None:
            budget = f"{self.budget_spent:.1%} of {self.slo_window_days:g} days"
            budget += f" at {self.slo_target:.2%}"
        how = self.counted_by or "-"
        return [
            ("Peak 5xx ratio", peak, "the worst error-ratio finding"),
            ("Requests failed", failed, how),
            ("Overall 5xx ratio", ratio, how),
            ("SLO error budget spent", budget, "5xx ratio x duration / ((1 - SLO) x window)"),
        ]

    def to_frame(self) -> pd.DataFrame:
        """:meth:`rows` as a DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.rows(), columns=["figure", "value", "from"])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {**dataclasses.asdict(self), "overall_error_ratio": self.overall_error_ratio}


def _table_counts(f: Finding, failed_col: str) -> dict[str, tuple[int, int]]:
    """{endpoint: (failed, requests)} from a finding's evidence tables."""
    out: dict[str, tuple[int, int]] = {}
    for e in f.evidence:
        cols = e.data.get("columns", []) if e.kind == "table" and isinstance(e.data, dict) else []
        if not {"endpoint", "requests", failed_col} <= set(cols):
            continue
        at = {c: cols.index(c) for c in ("endpoint", "requests", failed_col)}
        for row in e.data.get("rows", []):
            try:
                out[str(row[at["endpoint"]])] = (
                    round(float(row[at[failed_col]] or 0)),
                    round(float(row[at["requests"]] or 0)),
                )
            except (TypeError, ValueError, IndexError):
                continue
    return out


def _run_counts(run: RunRecord) -> tuple[int, int, str] | None:
    """(failed, total, how) from one run's log tables, else its metrics table."""
    for checks, col, what in (
        (("logs.failing_endpoints", "logs.healthy_endpoints"), "errors_5xx", "application logs"),
        (("metrics.error_ratio",), "errors", "request counters"),
    ):
        table: dict[str, tuple[int, int]] = {}
        for f in run.findings:
            if f.check in checks:
                table.update(_table_counts(f, col))
        if table:
            failed, total = (sum(v[i] for v in table.values()) for i in (0, 1))
            window = run.window.get("start", "")[11:19] + "→" + run.window.get("end", "")[11:19]
            return failed, total, f"{what} of run {run.run_id} ({window} UTC)"
    return None


def assess_impact(
    incident: Incident, *, slo_target: float = 0.999, slo_window_days: float = 30.0
) -> Impact:
    """Impact figures from the incident's findings (see module docstring)."""
    from aura_ops.severity import worst_error_ratio

    findings = [f for r in incident.runs for f in r.findings]
    peak = worst_error_ratio(findings)
    endpoint = next(
        (
            str(f.labels.get("endpoint") or f.subject)
            for f in findings
            if f.observed == peak and f.check.endswith(("error_ratio", "failing_endpoints"))
        ),
        "",
    )
    counts = [c for c in (_run_counts(r) for r in incident.runs) if c]
    failed, total, how = max(counts, key=lambda c: (c[0], c[1])) if counts else (None, None, "")
    budget = None
    end = incident.ended_at or max(r.end for r in incident.runs)
    if failed is not None and total and 0 < slo_target < 1:
        seconds = max(0.0, (end - incident.started_at).total_seconds())
        budget = (failed / total) * seconds / ((1 - slo_target) * slo_window_days * 86400)
    return Impact(peak, endpoint, failed, total, how, budget, slo_target, slo_window_days)
