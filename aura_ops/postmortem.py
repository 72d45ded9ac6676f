"""Post-mortem bundles: an incident's evidence, timeline and communications, drafted.

``write_postmortem(find_incident("20261123-1015-aurahigherrorratio"))`` writes::

    outputs/incidents/<id>/
      postmortem.md          seed 002 "Post-Mortem Template" + 004 "Incident Report", drafted
      postmortem.html        the same to read, with the candidates' finding cards and evidence
      communications.md      incident detected / update / resolved (002), escalation (000)
      incident.json          incident, timeline, candidates, impact: machine-readable
      attachments/index.json the attached runs
      attachments/<run-id>/  notebook.ipynb, report.html, findings.json of each run

What the evidence knows is filled in: date, duration, severity, the timeline (alert fired,
delivered, each run with its verdict, resolved), root-cause candidates (worst first, causes
before symptoms), impact figures. What only people know -- what went well or wrong, action
items, lessons, users affected -- is left as tables marked *(to fill)*.

**Impact figures** come from the findings' observed values and evidence tables
(:func:`aura_ops.incident_metrics.assess_impact`): peak 5xx ratio, requests failed, error
budget spent.

**Nothing secret leaves**: every file of the bundle passes through one
:class:`~aura_ops.redact.Redactor` (values of the env vars named by the runs' ``*_env``
parameters and of secret-looking env vars, secret shapes, values under secret-looking JSON
keys such as a parameter named ``password``, and assignments to secret-looking names in
parameters cells such as ``db_password = "..."``). Reports are rendered again from the
redacted notebook and findings, never copied.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat

from aura_ops.errors import ConfigError
from aura_ops.findings import Finding, Status
from aura_ops.incident_metrics import Impact, assess_impact, cause_category, format_duration
from aura_ops.incidents import Incident, RunRecord
from aura_ops.postmortem_doc import (
    communication_drafts,
    due_date,
    format_communications,
    postmortem_document,
)
from aura_ops.redact import Redactor

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Candidate",
    "Impact",
    "TimelineEvent",
    "assess_impact",
    "bundle_redactor",
    "check_incident",
    "communication_drafts",
    "format_communications",
    "redact_incident",
    "root_cause_candidates",
    "safe_name",
    "timeline",
    "timeline_frame",
    "write_postmortem",
]

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_KINDS = "alert-fired alert-received run-started run-finished run-failed alert-resolved resolved"
_ORDER = {k: n for n, k in enumerate(_KINDS.split())}


@dataclasses.dataclass(frozen=True)
class TimelineEvent:
    """One row of the timeline."""

    at: dt.datetime
    kind: str
    text: str
    run_id: str = ""

    def to_dict(self) -> dict[str, str]:
        """A JSON-ready copy."""
        return {
            "at": self.at.isoformat(),
            "kind": self.kind,
            "text": self.text,
            "run_id": self.run_id,
        }


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A root-cause candidate: a finding, the run that found it, its seed 002 category."""

    finding: Finding
    run: RunRecord
    category: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (the finding without its evidence, which is in the attachment)."""
        f = self.finding.to_dict()
        f.pop("evidence")
        return {"run_id": self.run.run_id, "category": self.category, "finding": f}


def safe_name(run_id: str) -> str:
    """A run id as a directory name."""
    return _SAFE.sub("-", run_id).strip(".-")[:100] or "run"


def timeline(incident: Incident) -> list[TimelineEvent]:
    """Alert times, run times with verdicts and the resolution, in time order."""
    ev: list[TimelineEvent] = []
    for a in incident.alerts:
        where = ", ".join(f"{k}={v}" for k, v in a.labels.items() if k in ("job", "service"))
        if a.starts_at:
            ev.append(
                TimelineEvent(
                    a.starts_at,
                    "alert-fired",
                    f"Alert fired: {a.name}" + (f" ({where})" if where else ""),
                )
            )
        ev.append(
            TimelineEvent(
                a.received_at, "alert-received", f"{a.source} delivered {a.name} to aura-ops serve"
            )
        )
        if a.resolved_at:
            ev.append(TimelineEvent(a.resolved_at, "alert-resolved", f"Alert resolved: {a.name}"))
    for r in incident.runs:
        how = f"{r.trigger}" + (f", incident {r.incident}" if r.incident else "")
        if r.started_at:
            ev.append(
                TimelineEvent(
                    r.started_at, "run-started", f"Runbook {r.runbook} started ({how})", r.run_id
                )
            )
        if r.verdict and r.finished_at:
            ev.append(
                TimelineEvent(
                    r.finished_at,
                    "run-finished",
                    f"{r.runbook}: {r.verdict}: {r.headline}",
                    r.run_id,
                )
            )
        elif r.state in ("failed", "dropped"):
            ev.append(
                TimelineEvent(
                    r.finished_at or r.start,
                    "run-failed",
                    f"Run of {r.runbook} {r.state}: {r.error}",
                    r.run_id,
                )
            )
    if incident.ended_at and not incident.alerts:
        ev.append(
            TimelineEvent(
                incident.ended_at, "resolved", "Resolved: the runbook's verdict is back to OK"
            )
        )
    return sorted(ev, key=lambda e: (e.at, _ORDER.get(e.kind, 9)))


def root_cause_candidates(incident: Incident, *, top_n: int = 5) -> list[Candidate]:
    """WARNING and worse findings of all runs, worst first and causes first, one per check
    and subject (the earliest run that found it)."""
    runs = {id(f): r for r in incident.runs for f in r.findings}
    seen: set[tuple[str, str]] = set()
    out: list[Candidate] = []
    for f in incident.findings(min_status=Status.WARNING):
        if (f.check, f.subject) in seen:
            continue
        seen.add((f.check, f.subject))
        run = runs[id(f)]
        out.append(Candidate(f, run, cause_category(f, fallback=run.title or run.runbook)))
    return out[:top_n]


def timeline_frame(incident: Incident) -> pd.DataFrame:
    """The timeline as a DataFrame: time (UTC), kind, event, run."""
    import pandas as pd

    rows = [(e.at, e.kind, e.text, e.run_id) for e in timeline(incident)]
    return pd.DataFrame(rows, columns=["time", "kind", "event", "run"])


def check_incident(incident: Incident, *, top_n: int = 5) -> list[Finding]:
    """The incident as findings: an INFO summary (id, severity, status, duration, runs) and
    its root-cause candidates, as a post-mortem notebook shows them."""
    how = (
        f"resolved after {format_duration(incident.duration_s)}"
        if incident.ended_at
        else f"open since {incident.started_at:%Y-%m-%d %H:%M} UTC"
    )
    summary = Finding(
        check="postmortem.incident",
        subject=incident.id,
        status=Status.INFO,
        summary=f"{incident.id} ({incident.severity or 'SEV-?'}) {how}: {len(incident.runs)} "
        f"run(s), {len(incident.alerts)} alert(s), worst verdict {incident.verdict.name}",
        observed=incident.status,
        source=f"runs: {', '.join(r.run_id for r in incident.runs)}",
        reproduce=f"find_incident({incident.id!r})",
    )
    return [summary, *(c.finding for c in root_cause_candidates(incident, top_n=top_n))]


# --- the bundle -----------------------------------------------------------------------------
def bundle_redactor(incident: Incident) -> Redactor:
    """One redactor for a whole bundle: env vars named by any run's ``*_env`` parameters,
    secret-looking env vars, and secret shapes."""
    names = {
        str(v) for r in incident.runs for k, v in r.parameters.items() if k.endswith("_env") and v
    }
    return Redactor.from_environment(sorted(names))


def _clean(value: Any, redactor: Redactor) -> Any:
    return redactor.obj(value)


def redact_incident(incident: Incident, redactor: Redactor) -> Incident:
    """A copy of ``incident`` whose every string (findings, headlines, labels, parameters,
    errors) went through ``redactor``: the documents are rendered from it."""

    def run(r: RunRecord) -> RunRecord:
        return dataclasses.replace(
            r,
            headline=redactor.text(r.headline),
            error=redactor.text(r.error),
            findings=tuple(Finding.from_dict(_clean(f.to_dict(), redactor)) for f in r.findings),
            next_steps=tuple(tuple(_clean(list(s), redactor)) for s in r.next_steps),
            parameters=_clean(dict(r.parameters), redactor),
            severity=_clean(dict(r.severity), redactor) if r.severity else None,
            alerts=tuple(
                dataclasses.replace(a, labels=_clean(dict(a.labels), redactor)) for a in r.alerts
            ),
        )

    runs = tuple(run(r) for r in incident.runs)
    alerts = {a.key: a for r in runs for a in r.alerts}
    return dataclasses.replace(
        incident, runs=runs, alerts=tuple(alerts.get(a.key, a) for a in incident.alerts)
    )


def _attach(run: RunRecord, dest: Path, redactor: Redactor) -> dict[str, Any]:
    """Copy one run's notebook and findings into ``dest``, redacted, and render its report
    again from those redacted copies."""
    from aura_ops.report import render_report

    entry: dict[str, Any] = {
        "run_id": run.run_id,
        "runbook": run.runbook,
        "verdict": run.verdict or run.state.upper(),
        "started_at": run.start.isoformat(),
        "files": {},
    }
    if run.run_dir is None or not run.run_dir.is_dir():
        entry["missing"] = "the run left no directory" if run.run_dir is None else "deleted"
        return entry
    sub = dest / "attachments" / safe_name(run.run_id)
    sub.mkdir(parents=True, exist_ok=True)
    rel, src, problems = f"attachments/{sub.name}", run.run_dir, []
    nb = record = None
    try:
        raw = nbformat.read(src / "notebook.ipynb", as_version=4)
        nb = nbformat.from_dict(_clean(raw, redactor))
        nbformat.write(nb, sub / "notebook.ipynb")
        entry["files"]["notebook"] = f"{rel}/notebook.ipynb"
    except (OSError, ValueError) as exc:
        problems.append(f"notebook.ipynb unreadable ({type(exc).__name__})")
    try:
        record = _clean(json.loads((src / "findings.json").read_text(encoding="utf-8")), redactor)
        _dump(sub / "findings.json", record, redactor)
        entry["files"]["findings"] = f"{rel}/findings.json"
    except (OSError, ValueError) as exc:
        problems.append(f"findings.json unreadable ({type(exc).__name__})")
    if nb is not None and isinstance(record, dict):
        try:
            html = render_report(nb, record)
        except (KeyError, ValueError, TypeError) as exc:
            problems.append(f"report not rendered ({type(exc).__name__})")
        else:
            (sub / "report.html").write_text(redactor.text(html), encoding="utf-8")
            entry["files"]["report"] = f"{rel}/report.html"
    if problems:
        entry["missing"] = "; ".join(problems)
    return entry


def _dump(path: Path, doc: Any, redactor: Redactor) -> None:
    text = json.dumps(_clean(doc, redactor), indent=2, ensure_ascii=False, default=str)
    path.write_text(redactor.text(text), encoding="utf-8")


def write_postmortem(
    incident: Incident,
    *,
    dest: str | Path | None = None,
    output_root: str | Path | None = None,
    slo_target: float = 0.999,
    slo_window_days: float = 30.0,
    related: Sequence[Incident] = (),
    force: bool = False,
) -> Path:
    """Write the bundle (see module docstring) to ``dest`` (default
    ``<output root>/incidents/<id>``) and return that directory. An existing ``postmortem.md``
    may hold its author's edits: it is only replaced with ``force=True``."""
    from aura_ops.config import project_root
    from aura_ops.postmortem_render import map_text, render_html, render_markdown

    root = Path(output_root or project_root() / "outputs")
    out = Path(dest) if dest else root / "incidents" / safe_name(incident.id)
    if (out / "postmortem.md").exists() and not force:
        raise ConfigError(
            f"{out / 'postmortem.md'} exists (it may hold edits)",
            hint="pass --force to write it again, or --dest elsewhere",
        )
    out.mkdir(parents=True, exist_ok=True)
    redactor = bundle_redactor(incident)
    incident = redact_incident(incident, redactor)
    related = [redact_incident(i, redactor) for i in related]
    attachments = [_attach(r, out, redactor) for r in incident.runs]
    impact = assess_impact(incident, slo_target=slo_target, slo_window_days=slo_window_days)
    cands = root_cause_candidates(incident)
    comms = communication_drafts(incident, impact, cands)
    events = timeline(incident)
    blocks = postmortem_document(
        incident, events, cands, impact, attachments, comms, related, due=due_date(incident)
    )
    blocks = map_text(blocks, redactor.text)
    title = f"Incident Post-Mortem: {incident.title}"
    (out / "attachments").mkdir(exist_ok=True)
    texts = {
        "postmortem.md": render_markdown(blocks),
        "postmortem.html": render_html(blocks, title=title),
        "communications.md": format_communications(comms),
    }
    for name, text in texts.items():
        (out / name).write_text(redactor.text(text), encoding="utf-8")
    _dump(out / "attachments" / "index.json", attachments, redactor)
    _dump(
        out / "incident.json",
        {
            "incident": incident.to_dict(),
            "timeline": [e.to_dict() for e in events],
            "root_cause_candidates": [c.to_dict() for c in cands],
            "impact": impact.to_dict(),
            "communications": comms,
            "attachments": attachments,
        },
        redactor,
    )
    return out
