"""The documents: the post-mortem, the messages, the incident report, as the seeds lay them out.

:func:`postmortem_document` follows seed 002's "Post-Mortem Template" (summary, timeline, root
cause, impact, what went well / wrong, action items, lessons, questions, related incidents) with
seed 004's "Incident Report" additions (root cause in the summary, a resolution section), and
adds what aura-ops holds: root-cause candidates with links to their evidence, the attached
runs, and the communication drafts. Sections only people can write are left as tables and
lists marked *(to fill)*.

:func:`communication_drafts` fills seed 002's "Communication Template", "Update Template" and
"Resolution Template" and seed 000's "Escalation Message Template" from the evidence.

:func:`write_incident_report` writes the monthly metrics (:mod:`aura_ops.incident_metrics`) as
markdown, as HTML with the plot embedded, and the plot as a PNG.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aura_ops.display import format_finding
from aura_ops.findings import Status
from aura_ops.incident_metrics import (
    IncidentMetrics,
    format_duration,
    monthly_report_blocks,
    plot_incident_metrics,
)
from aura_ops.incidents import Incident
from aura_ops.postmortem_render import Block, Link, map_text, render_html, render_markdown

if TYPE_CHECKING:
    from aura_ops.postmortem import Candidate, Impact

__all__ = [
    "communication_drafts",
    "correlation_ids",
    "due_date",
    "format_communications",
    "postmortem_document",
    "write_incident_report",
]

_CID = re.compile(r"\[([0-9A-Fa-f][0-9A-Fa-f-]{7,35})\]")

TO_FILL = "(to fill)"


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _report_link(run_id: str, attachments: Sequence[Mapping[str, Any]]) -> Any:
    for a in attachments:
        if a["run_id"] == run_id and a["files"].get("report"):
            return Link("report", a["files"]["report"])
    return ""


def _summary(incident: Incident, impact: Any, cands: Sequence[Any], due: str) -> list[Block]:
    start, end = incident.started_at, incident.ended_at
    duration = (
        f"{format_duration(incident.duration_s)} ({start:%H:%M:%S} → {end:%H:%M:%S} UTC)"
        if end
        else f"ongoing: open since {start:%Y-%m-%d %H:%M:%S} UTC"
    )
    worst = next(
        (r for r in incident.runs if r.severity and r.severity.get("level") == incident.severity),
        None,
    )
    severity = (
        f"{incident.severity} / {incident.priority} ({worst.severity.get('reason', '')})"
        if worst and worst.severity
        else "SEV-? (to fill: no run proposed one)"
    )
    detect = (
        f"evidence collected {format_duration(incident.detect_s)} after the alert fired"
        if incident.detect_s is not None
        else "-"
    )
    return [
        ("h2", "Incident Summary"),
        (
            "kv",
            [
                ("Incident", incident.id),
                ("Date", f"{start:%Y-%m-%d}"),
                ("Duration", duration),
                ("Severity", severity),
                ("Impact", impact.line() or f"{TO_FILL} users affected, functionality impaired"),
                (
                    "Root Cause",
                    (cands[0].finding.summary + " (candidate: confirm below)")
                    if cands
                    else TO_FILL,
                ),
                ("Status", incident.status),
                ("Detection", detect),
                ("Post-mortem due", due),
            ],
        ),
    ]


def _timeline(events: Sequence[Any], attachments: Sequence[Mapping[str, Any]]) -> list[Block]:
    one_day = len({e.at.date() for e in events}) <= 1
    fmt = "%H:%M:%S" if one_day else "%Y-%m-%d %H:%M:%S"
    rows = [
        [
            e.at.strftime(fmt),
            e.text,
            _report_link(e.run_id, attachments) if e.kind == "run-finished" else "",
        ]
        for e in events
    ]
    note = "Alert times are the sender's startsAt and the receiver's clock; run times the runner's."
    return [
        ("h2", "Timeline"),
        ("table", (["Time (UTC)", "Event", "Evidence"], rows)),
        ("note", note),
    ]


def _root_cause(cands: Sequence[Any], attachments: Sequence[Mapping[str, Any]]) -> list[Block]:
    out: list[Block] = [
        ("h2", "Root Cause"),
        ("p", f"{TO_FILL} What went wrong and why, confirmed by a person."),
    ]
    if not cands:
        return [*out, ("p", "No finding of the runs was WARNING or worse.")]
    rows = [
        [
            str(n),
            c.finding.status.name,
            c.finding.summary,
            c.category,
            f"{c.finding.check} · {c.finding.subject}",
            _report_link(c.run.run_id, attachments),
        ]
        for n, c in enumerate(cands, 1)
    ]
    out += [
        ("h3", "Root-cause candidates (from the findings: causes first)"),
        ("table", (["#", "Status", "Finding", "Category", "Check · subject", "Evidence"], rows)),
    ]
    for n, c in enumerate(cands, 1):
        f = c.finding
        items = [
            f"run {c.run.run_id} ({c.run.runbook}, {c.run.start:%H:%M:%S} UTC)",
            f"observed {_value(f.observed)} (expected {_value(f.expected)})",
        ]
        items += [f"source: {f.source}"] if f.source else []
        items += [f"re-run: {f.reproduce}"] if f.reproduce else []
        items += [f"next step: {f.hint}"] if f.hint else []
        items += [f"evidence: {', '.join(e.title for e in f.evidence)}"] if f.evidence else []
        out += [("h3", f"{n}. {f.summary}"), ("bullets", items)]
        out.append(
            (
                "html",
                f"<details><summary>finding card with its evidence</summary>"
                f"{format_finding(f, open_evidence=True)}</details>",
            )
        )
    return out


def _impact(impact: Any) -> list[Block]:
    return [
        ("h2", "Impact Assessment"),
        ("table", (["Figure", "Value", "From"], [list(r) for r in impact.rows()])),
        (
            "kv",
            [
                ("Users Affected", TO_FILL),
                ("Financial Impact", TO_FILL),
                ("Reputation Impact", f"{TO_FILL} support tickets, posts"),
            ],
        ),
    ]


def _people(incident: Incident, related: Sequence[Incident]) -> list[Block]:
    steps = list(dict.fromkeys(s for r in incident.runs for _, s in r.next_steps))
    well = (
        [
            [
                "✅",
                f"Evidence collected {format_duration(incident.detect_s)} after the alert "
                "fired (aura-ops serve)",
            ]
        ]
        if incident.detect_s is not None
        else []
    )
    others = [
        f"{i.id} ({i.severity or 'SEV-?'}, {i.started_at:%Y-%m-%d}): {i.title}"
        for i in related
        if i.id != incident.id and i.group == incident.group
    ] or ["None found in aura-ops' records for this alert group"]
    todo = [TO_FILL, "@", "", "📋 To Do"]
    return [
        ("h2", "Resolution"),
        ("p", f"{TO_FILL} How it was mitigated and fixed."),
        ("p", "What the runbooks suggested:"),
        ("bullets", steps or ["no next step was recorded"]),
        ("h2", "What Went Well"),
        ("table", (["", "What"], [*well, ["✅", TO_FILL]])),
        ("h2", "What Went Wrong"),
        ("table", (["", "What"], [["❌", TO_FILL]])),
        ("h2", "Action Items"),
        ("table", (["Action", "Owner", "Due Date", "Status"], [todo, todo, todo])),
        ("h2", "Lessons Learned"),
        ("numbered", [TO_FILL]),
        ("h2", "Questions Raised"),
        ("numbered", [TO_FILL]),
        ("h2", "Related Incidents"),
        ("bullets", others),
    ]


def _attachments(attachments: Sequence[Mapping[str, Any]]) -> list[Block]:
    def link(a: Mapping[str, Any], kind: str) -> Any:
        path = a["files"].get(kind)
        return Link(path.rsplit("/", 1)[-1], path) if path else "missing"

    rows = [
        [
            a["run_id"],
            a["runbook"],
            a["verdict"],
            a["started_at"][:19].replace("T", " "),
            link(a, "notebook"),
            link(a, "report"),
            link(a, "findings"),
        ]
        for a in attachments
    ]
    out: list[Block] = [("h2", "Attachments")]
    out.append(
        (
            "table",
            (
                ["Run", "Runbook", "Verdict", "Started (UTC)", "Notebook", "Report", "Findings"],
                rows,
            ),
        )
    )
    missing = [f"{a['run_id']}: {a['missing']}" for a in attachments if a.get("missing")]
    return out + ([("p", "Not attached:"), ("bullets", missing)] if missing else [])


def postmortem_document(
    incident: Incident,
    events: Sequence[Any],
    candidates: Sequence[Any],
    impact: Any,
    attachments: Sequence[Mapping[str, Any]],
    comms: Mapping[str, str],
    related: Sequence[Incident] = (),
    *,
    due: str = "",
) -> list[Block]:
    """The post-mortem draft as blocks (see :mod:`aura_ops.postmortem_render`); ``due`` says
    when the post-mortem is due."""
    now = dt.datetime.now(dt.UTC)
    blocks: list[Block] = [
        ("h1", f"Incident Post-Mortem: {incident.title}"),
        (
            "note",
            f"Drafted by aura-ops at {now:%Y-%m-%d %H:%M} UTC from {len(incident.runs)} "
            "run(s) and their alerts. Parts marked (to fill) are for people; the rest "
            "comes from the evidence attached below.",
        ),
        *_summary(incident, impact, candidates, due or TO_FILL),
        *_timeline(events, attachments),
        *_root_cause(candidates, attachments),
        *_impact(impact),
        *_people(incident, related),
        *_attachments(attachments),
        ("h2", "Communication drafts"),
        (
            "p",
            [
                "Ready to paste (also in ",
                Link("communications.md", "communications.md"),
                "); <...> marks what only a person can fill in.",
            ],
        ),
    ]
    for name, text in comms.items():
        blocks += [("h3", name.capitalize()), ("code", text)]
    return blocks


def write_incident_report(metrics: IncidentMetrics, dest: str | Path) -> Path:
    """Write ``incident-report.md``, ``incident-report.html`` (plot embedded) and
    ``incident-metrics.png`` into ``dest``; returns the markdown's path. Text from the evidence
    passes through the redactor of secret-looking env vars and secret shapes."""
    from aura_ops.redact import Redactor

    redactor = Redactor.from_environment()
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    fig = plot_incident_metrics(metrics)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96)
    (out / "incident-metrics.png").write_bytes(buf.getvalue())
    png = base64.b64encode(buf.getvalue()).decode("ascii")
    blocks = map_text(monthly_report_blocks(metrics), redactor.text)
    blocks.append(("image", (png, "incident metrics", "incident-metrics.png")))
    title = f"Incident Report: {metrics.label or 'all'}"
    for name, text in (
        ("incident-report.html", render_html(blocks, title=title)),
        ("incident-report.md", render_markdown(blocks)),
    ):
        (out / name).write_text(redactor.text(text), encoding="utf-8")
    return out / "incident-report.md"


# --- messages -------------------------------------------------------------------------------
def correlation_ids(incident: Incident, *, limit: int = 5) -> list[str]:
    """Correlation IDs named in the evidence of WARNING and worse findings (``[id]`` in log
    samples, ``correlation_id`` table columns)."""
    out: list[str] = []
    for f in incident.findings(min_status=Status.WARNING):
        for e in f.evidence:
            if e.kind == "text":
                out += _CID.findall(str(e.data))
            elif e.kind == "table" and isinstance(e.data, dict):
                cols = e.data.get("columns", [])
                if "correlation_id" in cols:
                    i = cols.index("correlation_id")
                    out += [str(r[i]) for r in e.data.get("rows", []) if r[i]]
    return list(dict.fromkeys(out))[:limit]


def due_date(incident: Incident) -> str:
    """When the post-mortem is due (seed 002: SEV-1 within 48 hours, SEV-2 within 1 week)."""
    days = {"SEV-1": 2, "SEV-2": 7}.get(incident.severity)
    if days is None:
        return "optional for " + (incident.severity or "an unassessed incident")
    when = incident.started_at + dt.timedelta(days=days)
    return f"{when:%Y-%m-%d} ({incident.severity}: within {'48 hours' if days == 2 else '1 week'})"


def _current_status(incident: Incident) -> str:
    if incident.status == "resolved":
        return "Resolved"
    done = [r for r in incident.runs if r.verdict]
    return "Mitigating" if done and done[-1].status < incident.verdict else "Investigating"


def _when(value: dt.datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S} UTC" if value else "<Timestamp>"


def format_communications(drafts: Mapping[str, str]) -> str:
    """The drafts as one markdown page of fenced blocks, ready to copy."""
    parts = ["# Communication drafts", "", "`<...>` marks what only a person can fill in.", ""]
    for name, text in drafts.items():
        parts += [f"## {name.capitalize()}", "", "```", text, "```", ""]
    return "\n".join(parts)


def communication_drafts(
    incident: Incident, impact: Impact, candidates: Sequence[Candidate]
) -> dict[str, str]:
    """Messages ready to paste: ``detected``, ``update``, ``resolved`` (seed 002 templates) and
    ``escalation`` (seed 000). ``<...>`` marks what only a person can fill in."""
    sev = incident.severity or "SEV-?"
    what = impact.line() or "<What's broken and for whom>"
    done = [r for r in incident.runs if r.verdict]
    actions = [
        f"Ran the {r.runbook} runbook at {r.start:%H:%M} UTC ({r.trigger}): {r.verdict}: "
        f"{r.headline}"
        for r in done
    ] or ["<What we've done>"]
    steps = [s for r in reversed(done) for _, s in r.next_steps][:2] or ["<What we're doing next>"]
    last = max(r.end for r in incident.runs)
    end, status = incident.ended_at, _current_status(incident)
    cause = candidates[0].finding.summary if candidates else "<Why it happened>"
    every = {"SEV-1": 15, "SEV-2": 30}.get(incident.severity, 60)
    return {
        "detected": f"🚨 INCIDENT DETECTED\n\nSeverity: {sev}\nSummary: {incident.title}\n"
        f"Impact: {what}\nDetected: {_when(incident.started_at)}\nStatus: Investigating\n\n"
        f"Updates will be posted every {every} minutes.",
        "update": f"⏰ UPDATE [{last:%H:%M}]\n\nCurrent Status: {status}\n"
        f"Actions Taken: {'; '.join(actions)}\nNext Steps: {'; '.join(steps)}\n"
        "ETA: <Best estimate>",
        "resolved": f"✅ RESOLVED [{f'{end:%H:%M}' if end else '<HH:MM>'}]\n\n"
        f"Summary: {incident.title}\nRoot Cause: {cause}\nResolution: <How we fixed it>\n"
        f"Duration: {format_duration(incident.duration_s) if end else '<Total incident time>'}"
        f"\n\nPost-mortem will be completed by: {due_date(incident)}",
        "escalation": f"Subject: [{sev.replace('-', '')}] {incident.title[:120]}\n\n"
        f"Issue: {incident.headline or '<What is broken>'}\nImpact: {what}\n"
        f"Started: {_when(incident.started_at)}\nActions Taken:\n"
        + "".join(f"  - {a}\n" for a in actions)
        + f"Current Status: {status}\n"
        f"Correlation IDs: {', '.join(correlation_ids(incident)) or '<Relevant correlation IDs>'}"
        "\n\nRequest: <What help you need>",
    }
