"""Recent changes (deployments, config changes) as one list of :class:`Change` events.

Sources: a JSON-lines deploy record (what CD pipelines and the sandbox write), git history,
and Kubernetes rollout history (:func:`aura_ops.kube.fetch_rollout_history`, merged with
:func:`merge`). ``check_recent_change`` answers the seeds' question "did errors start after the
last deploy?" (002 Triage, 004 High Error Rate).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aura_ops.errors import SourceTimeoutError, SourceUnavailableError
from aura_ops.findings import Evidence, Finding, Status, unknown

__all__ = [
    "Change",
    "change_markers",
    "check_errors_after_change",
    "check_recent_change",
    "fetch_changes",
    "fetch_git_changes",
    "merge",
    "parse_time",
]


def parse_time(value: str | dt.datetime | float | int) -> dt.datetime:
    """An aware UTC datetime from ISO 8601 (``Z`` allowed), epoch seconds or a datetime."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    text = str(value).strip().replace("Z", "+00:00")
    parsed = dt.datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@dataclasses.dataclass(frozen=True)
class Change:
    """One change to the system: when, what (version), what kind, and where it was recorded."""

    at: dt.datetime
    version: str
    kind: str = "deploy"
    service: str = ""
    description: str = ""
    author: str = ""
    previous: str = ""
    source: str = ""

    @property
    def label(self) -> str:
        """Short label for plots and summaries: ``deploy v2.4.1``."""
        return f"{self.kind} {self.version}".strip()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["at"] = self.at.isoformat()
        return d

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any], *, source: str = "") -> Change:
        return cls(
            at=parse_time(d["at"]),
            version=str(d.get("version") or d.get("revision") or "?"),
            kind=str(d.get("kind", "deploy")),
            service=str(d.get("service", "")),
            description=str(d.get("description") or d.get("cause") or ""),
            author=str(d.get("author", "")),
            previous=str(d.get("previous", "")),
            source=str(d.get("source") or source),
        )


def fetch_changes(path: str | Path) -> list[Change]:
    """Read a JSON-lines change record (``{"at", "version", ...}`` per line), oldest first.

    Malformed lines are skipped. A missing, unreadable or non-regular file (a FIFO would block
    forever), or one where no line is a change, raises :class:`SourceUnavailableError`.
    """
    p = Path(path)
    if p.exists() and not p.is_file():
        raise SourceUnavailableError(f"change record {p} is not a regular file", source=str(p))
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        msg = f"cannot read change record {p}: {why}"
        raise SourceUnavailableError(msg, source=str(p)) from exc
    out = []
    for line in lines:
        try:
            out.append(Change.from_mapping(json.loads(line), source=str(p)))
        except (ValueError, KeyError, TypeError):
            continue
    if not out and any(line.strip() for line in lines):
        raise SourceUnavailableError(
            f"change record {p}: none of its {len(lines)} lines is a JSON change", source=str(p)
        )
    return sorted(out, key=lambda c: c.at)


def fetch_git_changes(
    repo: str | Path, *, since: dt.datetime | None = None, limit: int = 50, timeout_s: float = 10.0
) -> list[Change]:
    """Commits of a git repository as changes (``git log``), oldest first."""
    cmd = ["git", "-C", str(repo), "log", f"-{limit}", "--format=%H%x1f%cI%x1f%an%x1f%s"]
    if since is not None:
        cmd.append(f"--since={since.isoformat()}")
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=True)
    except subprocess.TimeoutExpired as exc:
        raise SourceTimeoutError(
            f"git log did not finish within {timeout_s:g} s", source=" ".join(cmd)
        ) from exc
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise SourceUnavailableError(
            f"git log failed: {detail.strip()}", source=" ".join(cmd)
        ) from exc
    changes = []
    for line in out.stdout.splitlines():
        sha, when, author, subject = (line.split("\x1f") + ["", "", ""])[:4]
        changes.append(
            Change(parse_time(when), sha[:10], "commit", "", subject, author, source=f"git:{repo}")
        )
    return sorted(changes, key=lambda c: c.at)


def merge(*sources: Iterable[Change | Mapping[str, Any]]) -> list[Change]:
    """One time-ordered list from several sources (Change objects or rollout-history dicts)."""
    seen: set[tuple[dt.datetime, str]] = set()
    out = []
    for src in sources:
        for c in src:
            change = c if isinstance(c, Change) else Change.from_mapping(c)
            if (change.at, change.version) not in seen:
                seen.add((change.at, change.version))
                out.append(change)
    return sorted(out, key=lambda c: c.at)


def check_recent_change(
    changes_path: str | Path | Sequence[Change],
    *,
    window_start: dt.datetime,
    window_end: dt.datetime | None = None,
) -> list[Finding]:
    """Was there a change shortly before or during the incident window? (seed 002 Triage).

    A change inside the window is a ``WARNING`` lead (suspect it first); none is ``OK``.
    """
    source = str(changes_path) if isinstance(changes_path, (str, Path)) else "changes"
    reproduce = f"check_recent_change({source!r}, window_start={window_start.isoformat()!r})"
    try:
        changes = (
            fetch_changes(changes_path)
            if isinstance(changes_path, (str, Path))
            else list(changes_path)
        )
    except SourceUnavailableError as exc:
        return [unknown("changes.recent", source, exc, source=source, reproduce=reproduce)]
    end = window_end or dt.datetime.now(dt.UTC)
    recent = [c for c in changes if window_start <= c.at <= end]
    table = Evidence.table([c.to_dict() for c in changes[-10:]], "latest changes")
    if not recent:
        last = changes[-1] if changes else None
        summary = (
            f"No change during the window; last was {last.label} at {last.at:%Y-%m-%d %H:%M:%S} UTC"
            if last
            else "No changes recorded"
        )
        return [
            Finding(
                "changes.recent",
                source,
                Status.OK,
                summary,
                evidence=(table,),
                source=source,
                reproduce=reproduce,
            )
        ]
    last = recent[-1]
    return [
        Finding(
            "changes.recent",
            last.service or source,
            Status.WARNING,
            f"{last.label} deployed at {last.at:%H:%M:%S} UTC, inside the incident window "
            f"({last.description})"
            if last.description
            else f"{last.label} deployed at {last.at:%H:%M:%S} UTC, inside the incident window",
            observed=last.to_dict(),
            evidence=(table,),
            source=source,
            reproduce=reproduce,
            hint="If the errors started after it, roll back to "
            f"{last.previous or 'the previous version'}.",
            labels={"version": last.version, "at": last.at.isoformat()},
        )
    ]


def change_markers(changes_path: str | Path | Sequence[Change]) -> list[tuple[dt.datetime, str]]:
    """``(time, label)`` pairs for plots; an unreadable record gives no markers, not an error."""
    try:
        changes = (
            fetch_changes(changes_path)
            if isinstance(changes_path, (str, Path))
            else list(changes_path)
        )
    except SourceUnavailableError:
        return []
    return [(c.at, c.label) for c in changes]


def check_errors_after_change(
    events: Any,
    changes_path: str | Path | Sequence[Change],
    *,
    window_end: dt.datetime | None = None,
    source: str = "",
) -> list[Finding]:
    """Did errors start after the most recent change? (seeds 000/004: "Check recent deployments").

    Takes the latest change before ``window_end`` and compares the errors in ``events``
    before and after it (:func:`aura_ops.logs.check_errors_since`). Without a change record the
    answer is ``UNKNOWN``: nothing is known about changes.
    """
    from aura_ops.logs import check_errors_since

    where = str(changes_path) if isinstance(changes_path, (str, Path)) else "changes"
    reproduce = f"check_errors_after_change(events, {where!r})"
    if not where or where == ".":
        return [
            unknown(
                "changes.errors_after",
                "changes",
                "no change record configured",
                hint="set changes_path to the deploy record",
                reproduce=reproduce,
            )
        ]
    try:
        changes = (
            fetch_changes(changes_path)
            if isinstance(changes_path, (str, Path))
            else list(changes_path)
        )
    except SourceUnavailableError as exc:
        return [unknown("changes.errors_after", where, exc, source=where, reproduce=reproduce)]
    end = window_end or dt.datetime.now(dt.UTC)
    before_end = [c for c in changes if c.at <= end]
    if not before_end:
        return [
            Finding(
                "changes.errors_after",
                where,
                Status.INFO,
                "No change recorded before the window end",
                source=where,
                reproduce=reproduce,
            )
        ]
    last = before_end[-1]
    findings = check_errors_since(events, last.at, label=last.label, source=source or where)
    target = last.previous or "the previous version"
    service = last.service or "aura-api"
    hint = f"Roll back {service} to {target}: kubectl rollout undo deployment/{service}"
    # errors that appeared only after the change point at it as the cause
    return [
        f.replace(hint=hint, labels={**f.labels, "change": last.to_dict(), "role": "cause"})
        if f.status >= Status.WARNING
        else f
        for f in findings
    ]
