"""Runs and alerts as aura-ops recorded them: the raw material of incidents.

Two records are read, nothing is written:

- run directories under the output root (``<date>/<run-id>/findings.json``): every run, whatever
  started it -- an alert, ``aura-ops run``, a notebook;
- the ``aura-ops serve`` database (:mod:`aura_ops.runstore`, opened read-only): each alert's
  name, labels and ``startsAt``, when it reached the receiver, when it resolved, and its run.

:func:`load_runs` joins them: a serve run is its ``findings.json`` plus the alerts that started
it; a run the database knows but that left no directory (failed, dropped) is kept with what the
database says. Grouping the runs into incidents is :mod:`aura_ops.incidents`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aura_ops.errors import ConfigError
from aura_ops.findings import Finding, Status

__all__ = [
    "AlertRecord",
    "GROUP_LABELS",
    "INCIDENT_ID",
    "RunRecord",
    "default_db",
    "load_runs",
    "parse_when",
    "validate_incident_id",
]

#: Labels that, with the alert name, make an alert group (Alertmanager's ``group_by``).
GROUP_LABELS = ("job", "service", "namespace")
#: What an incident id may look like: it names a directory under outputs/incidents/.
INCIDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
_DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclasses.dataclass(frozen=True)
class AlertRecord:
    """One alert occurrence as ``aura-ops serve`` received it."""

    key: str
    name: str
    source: str
    labels: Mapping[str, str]
    starts_at: dt.datetime | None  # the sender's startsAt
    received_at: dt.datetime  # first delivery to the receiver
    resolved_at: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One run: what its ``findings.json`` says, plus the alerts that started it (serve)."""

    run_id: str
    runbook: str
    title: str = ""
    trigger: str = "manual"
    environment: str = ""
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    queued_at: dt.datetime | None = None
    verdict: str = ""  # OK..CRITICAL; '' when the run never finished (see state)
    headline: str = ""
    severity: Mapping[str, str] | None = None
    findings: tuple[Finding, ...] = ()
    next_steps: tuple[tuple[str, str], ...] = ()
    run_dir: Path | None = None
    incident: str = ""
    alerts: tuple[AlertRecord, ...] = ()
    state: str = "done"  # serve's run state: done, failed, dropped, queued, running
    error: str = ""
    parameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    window: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def status(self) -> Status:
        """The verdict as a :class:`Status` (UNKNOWN when the run has none)."""
        try:
            return Status.parse(self.verdict)
        except ValueError:
            return Status.UNKNOWN

    @property
    def start(self) -> dt.datetime:
        """When the run began (queued time for a run that never started)."""
        when = self.started_at or self.queued_at or self.finished_at
        return when or dt.datetime.fromtimestamp(0, dt.UTC)

    @property
    def end(self) -> dt.datetime:
        """When the run ended (its start while it has not)."""
        return self.finished_at or self.start

    @property
    def begin(self) -> dt.datetime:
        """When this run's story begins: its first alert's ``startsAt`` (or receipt), else its
        start."""
        return min([self.start] + [a.starts_at or a.received_at for a in self.alerts])

    @property
    def group(self) -> str:
        """The alert group (``alertname=...,job=...``), or ``runbook=NAME`` without alerts."""
        if not self.alerts:
            return f"runbook={self.runbook}"
        first = self.alerts[0]
        parts = [f"alertname={first.name}"]
        parts += [f"{k}={first.labels[k]}" for k in GROUP_LABELS if first.labels.get(k)]
        return ",".join(parts)


def parse_when(value: Any) -> dt.datetime | None:
    """An aware UTC datetime from ISO 8601 or epoch seconds; None when absent or malformed."""
    if value in (None, ""):
        return None
    from aura_ops.changes import parse_time

    try:
        when = parse_time(value)
    except (ValueError, TypeError, OverflowError):
        return None
    return None if when.year < 1971 else when.astimezone(dt.UTC)


def validate_incident_id(value: str) -> str:
    """``value`` if it is a usable incident id (a safe directory name), else ConfigError."""
    if not INCIDENT_ID.match(value or "") or ".." in value:
        raise ConfigError(
            f"invalid incident id {value!r}",
            hint="letters, digits, '.', '_' and '-', at most 80, e.g. 2026-11-23-render-500s",
        )
    return value


def _from_record(record: Mapping[str, Any], run_dir: Path | None) -> RunRecord:
    """A run from its ``findings.json``."""
    try:
        findings = tuple(Finding.from_dict(d) for d in record.get("findings") or ())
    except (KeyError, ValueError, TypeError):
        findings = ()
    verdict = record.get("verdict") or {}
    incident = str(record.get("incident") or "")
    valid = bool(INCIDENT_ID.match(incident)) and ".." not in incident
    return RunRecord(
        run_id=str(record.get("run_id") or (run_dir.name if run_dir else "")),
        runbook=str(record.get("runbook", "")),
        title=str(record.get("title", "")),
        trigger=str(record.get("trigger", "manual")),
        environment=str(record.get("environment", "")),
        started_at=parse_when(record.get("started_at")),
        finished_at=parse_when(record.get("finished_at")),
        verdict=str(verdict.get("status", "")),
        headline=str(verdict.get("headline", "")),
        severity=record.get("severity") if isinstance(record.get("severity"), Mapping) else None,
        findings=findings,
        next_steps=tuple(
            (str(s[0]), str(s[1])) for s in record.get("next_steps") or () if len(s) == 2
        ),
        run_dir=run_dir,
        incident=incident if valid else "",
        parameters=dict(record.get("parameters") or {}),
        window=dict(record.get("window") or {}),
    )


def _read_record(run_dir: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((run_dir / "findings.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _scan_outputs(root: Path) -> dict[Path, dict[str, Any]]:
    """Every ``<date>/<run>/findings.json`` under the output root, by resolved run directory."""
    out: dict[Path, dict[str, Any]] = {}
    if not root.is_dir():
        return out
    for path in sorted(root.glob("*/*/findings.json")):
        if not _DATE_DIR.match(path.parent.parent.name):
            continue
        record = _read_record(path.parent)
        if record is not None:
            out[path.parent.resolve()] = record
    return out


def _read_store(db_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Runs and the episodes (alerts) that started them, from the serve database (read-only)."""
    try:
        con = sqlite3.connect(db_path.resolve().as_uri() + "?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot open the serve database {db_path}: {exc}") from exc
    con.row_factory = sqlite3.Row
    try:
        runs = con.execute(
            "SELECT id, state, source, alertname, labels, runbook, environment, created_at,"
            " started_at, finished_at, resolved_at, verdict, headline, run_dir, error FROM runs"
        ).fetchall()
        episodes = con.execute(
            "SELECT key, source, alertname, labels, starts_at, first_seen, resolved_at, run_id"
            " FROM episodes WHERE run_id IS NOT NULL ORDER BY first_seen"
        ).fetchall()
    except sqlite3.Error as exc:
        raise ConfigError(
            f"cannot read the serve database {db_path}: {exc}",
            hint="is it an aura-ops serve database (--db)?",
        ) from exc
    finally:
        con.close()
    return [dict(r) for r in runs], [dict(e) for e in episodes]


def _labels(text: Any) -> dict[str, str]:
    try:
        doc = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}


def _alert(ep: Mapping[str, Any]) -> AlertRecord:
    received = parse_when(ep["first_seen"]) or dt.datetime.fromtimestamp(0, dt.UTC)
    return AlertRecord(
        key=str(ep["key"]),
        name=str(ep["alertname"]),
        source=str(ep["source"]),
        labels=_labels(ep["labels"]),
        starts_at=parse_when(ep["starts_at"]),
        received_at=received,
        resolved_at=parse_when(ep["resolved_at"]),
    )


def _store_run(row: Mapping[str, Any], alerts: Sequence[AlertRecord], record: Any) -> RunRecord:
    """A serve run: its findings.json when it left one, else what the database knows."""
    run_dir = Path(row["run_dir"]) if row["run_dir"] else None
    base = (
        _from_record(record, run_dir)
        if isinstance(record, Mapping)
        else RunRecord(
            run_id=f"serve-run-{row['id']}",
            runbook=str(row["runbook"]),
            trigger="alert",
            environment=str(row["environment"] or ""),
            started_at=parse_when(row["started_at"]),
            finished_at=parse_when(row["finished_at"]),
            verdict=str(row["verdict"] or ""),
            headline=str(row["headline"] or ""),
            run_dir=run_dir,
        )
    )
    if not alerts:  # its episodes were pruned: the run row still names the alert
        alerts = [
            AlertRecord(
                key=f"run-{row['id']}",
                name=str(row["alertname"]),
                source=str(row["source"]),
                labels=_labels(row["labels"]),
                starts_at=None,
                received_at=parse_when(row["created_at"]) or base.start,
                resolved_at=parse_when(row["resolved_at"]),
            )
        ]
    return dataclasses.replace(
        base,
        queued_at=parse_when(row["created_at"]),
        alerts=tuple(alerts),
        state=str(row["state"]),
        error=str(row["error"] or ""),
    )


def default_db(output_root: Path) -> Path:
    """The serve database a plain ``aura-ops serve`` writes: ``<output root>/aura-ops.db``."""
    return output_root / "aura-ops.db"


def load_runs(
    output_root: str | Path | None = None, db_path: str | Path | None = None
) -> list[RunRecord]:
    """Every run under ``output_root`` (default ``outputs/``) and in the serve database
    (default ``<output root>/aura-ops.db`` when it exists), oldest first."""
    from aura_ops.config import project_root

    root = Path(output_root or project_root() / "outputs")
    db = Path(db_path) if db_path else default_db(root)
    if db_path and not db.is_file():
        raise ConfigError(f"no serve database at {db}", hint="pass the --db of aura-ops serve")
    records = _scan_outputs(root)
    runs: list[RunRecord] = []
    if db.is_file():
        rows, episodes = _read_store(db)
        by_run: dict[int, list[AlertRecord]] = {}
        for ep in episodes:
            by_run.setdefault(int(ep["run_id"]), []).append(_alert(ep))
        for row in rows:
            run_dir = Path(row["run_dir"]).resolve() if row["run_dir"] else None
            record = records.pop(run_dir, None) if run_dir else None
            if record is None and run_dir is not None:
                record = _read_record(run_dir)
            runs.append(_store_run(row, by_run.get(int(row["id"]), []), record))
    runs += [_from_record(rec, path) for path, rec in records.items()]
    return sorted(runs, key=lambda r: r.start)
