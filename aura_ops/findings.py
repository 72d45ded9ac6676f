"""The one record that flows through aura-ops: ``Finding``.

Everything a check learns becomes a :class:`Finding`: a status, a one-line summary, what was
observed against what was expected, the evidence (tables, text, images) and the exact query,
URL or API call that produced it. This module does no I/O.

``Status`` is ordered ``OK < INFO < UNKNOWN < WARNING < CRITICAL``; a run's verdict is the worst
status among its findings. A data source that is down, slow or refusing yields ``UNKNOWN`` with
the reason -- never ``OK`` (see :func:`unknown`).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from enum import IntEnum
from typing import Any

__all__ = [
    "Evidence",
    "Finding",
    "Status",
    "Verdict",
    "explains",
    "jsonable",
    "rank",
    "roll_up",
    "unknown",
]

#: Version of the JSON shape written by :meth:`Finding.to_dict` (MIME outputs, findings.json).
SCHEMA_VERSION = 1


class Status(IntEnum):
    """How bad a finding is. Ordered, so ``max()`` gives the worst."""

    OK = 0
    INFO = 1
    UNKNOWN = 2
    WARNING = 3
    CRITICAL = 4

    @property
    def exit_code(self) -> int:
        """The monitoring-plugin exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."""
        return {0: 0, 1: 0, 2: 3, 3: 1, 4: 2}[int(self)]

    @classmethod
    def parse(cls, value: str | int | Status) -> Status:
        """``Status.parse("critical")`` → ``Status.CRITICAL``; accepts names and ints."""
        if isinstance(value, Status):
            return value
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[str(value).strip().upper()]
        except KeyError:
            names = [s.name for s in cls]
            raise ValueError(f"unknown status {value!r}; expected one of {names}") from None

    def __str__(self) -> str:
        return self.name


def jsonable(value: Any) -> Any:
    """Turn numpy/pandas scalars, timestamps, NaN and tuples into plain JSON values."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Status):
        return value.name
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    # numpy / pandas scalars without importing them here
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return jsonable(item())
        except (TypeError, ValueError):
            pass
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        try:
            return isoformat()
        except (TypeError, ValueError):  # pandas NaT
            return None
    return str(value)


@dataclasses.dataclass(frozen=True)
class Evidence:
    """One piece of evidence behind a finding.

    ``kind`` is ``"table"`` (``data = {"columns", "rows", "total_rows"}``), ``"text"``
    (a string, e.g. log lines), ``"json"`` (any JSON value) or ``"image"`` (base64 PNG).
    Build them with the alternative constructors, which keep evidence bounded in size.
    """

    kind: str
    title: str
    data: Any
    note: str = ""

    @classmethod
    def table(cls, rows: Any, title: str, *, max_rows: int = 50, note: str = "") -> Evidence:
        """A table from a pandas DataFrame or a sequence of mappings, truncated to ``max_rows``."""
        columns: list[str]
        records: list[list[Any]]
        if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # DataFrame
            frame = (
                rows.reset_index(drop=True)
                if getattr(rows.index, "name", None) is None
                else (rows.reset_index())
            )
            columns = [str(c) for c in frame.columns]
            total = len(frame)
            records = [
                [jsonable(v) for v in row] for row in frame.head(max_rows).itertuples(index=False)
            ]
        else:
            seq = list(rows)
            total = len(seq)
            columns = []
            for r in seq:
                for k in r:
                    if str(k) not in columns:
                        columns.append(str(k))
            records = [[jsonable(r.get(c)) for c in columns] for r in seq[:max_rows]]
        data = {"columns": columns, "rows": records, "total_rows": total}
        return cls("table", title, data, note)

    @classmethod
    def text(cls, text: str | Iterable[str], title: str, *, max_chars: int = 8000) -> Evidence:
        """Plain text (log lines, a response body), truncated to ``max_chars``."""
        body = text if isinstance(text, str) else "\n".join(text)
        note = ""
        if len(body) > max_chars:
            note = f"truncated: showing {max_chars} of {len(body)} characters"
            body = body[:max_chars]
        return cls("text", title, body, note)

    @classmethod
    def json(cls, value: Any, title: str) -> Evidence:
        """A JSON value, e.g. a health endpoint's body."""
        return cls("json", title, jsonable(value))

    @classmethod
    def image(cls, figure_or_png: Any, title: str, *, dpi: int = 96) -> Evidence:
        """A PNG from a matplotlib Figure or raw PNG bytes."""
        if isinstance(figure_or_png, (bytes, bytearray)):
            png = bytes(figure_or_png)
        else:
            buf = io.BytesIO()
            figure_or_png.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
            png = buf.getvalue()
        return cls("image", title, base64.b64encode(png).decode("ascii"))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "title": self.title, "data": self.data, "note": self.note}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Evidence:
        return cls(str(d["kind"]), str(d.get("title", "")), d.get("data"), str(d.get("note", "")))


@dataclasses.dataclass(frozen=True)
class Finding:
    """What one check concluded about one subject.

    ``check`` is a stable id (``"logs.error_types"``), ``subject`` what was looked at
    (``"http://api/health/ready"``, ``"postgres/aura"``), ``source`` the exact query, URL,
    PromQL or API call, and ``reproduce`` a one-line call that re-runs this check alone.
    """

    check: str
    subject: str
    status: Status
    summary: str
    observed: Any = None
    expected: Any = None
    evidence: tuple[Evidence, ...] = ()
    source: str = ""
    hint: str = ""
    reproduce: str = ""
    labels: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status.parse(self.status))
        object.__setattr__(self, "evidence", tuple(self.evidence))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (schema :data:`SCHEMA_VERSION`)."""
        return {
            "check": self.check,
            "subject": self.subject,
            "status": self.status.name,
            "summary": self.summary,
            "observed": jsonable(self.observed),
            "expected": jsonable(self.expected),
            "evidence": [e.to_dict() for e in self.evidence],
            "source": self.source,
            "hint": self.hint,
            "reproduce": self.reproduce,
            "labels": jsonable(dict(self.labels)),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Finding:
        return cls(
            check=str(d["check"]),
            subject=str(d.get("subject", "")),
            status=Status.parse(d["status"]),
            summary=str(d.get("summary", "")),
            observed=d.get("observed"),
            expected=d.get("expected"),
            evidence=tuple(Evidence.from_dict(e) for e in d.get("evidence", ())),
            source=str(d.get("source", "")),
            hint=str(d.get("hint", "")),
            reproduce=str(d.get("reproduce", "")),
            labels=dict(d.get("labels") or {}),
        )

    def replace(self, **changes: Any) -> Finding:
        return dataclasses.replace(self, **changes)


def unknown(
    check: str,
    subject: str,
    reason: str | BaseException,
    *,
    source: str = "",
    hint: str = "",
    reproduce: str = "",
) -> Finding:
    """The finding for a source that could not be read: ``UNKNOWN`` with the reason, never OK."""
    if isinstance(reason, BaseException):
        text = str(reason) or type(reason).__name__
        reason = (
            text if text.startswith(type(reason).__name__) else f"{type(reason).__name__}: {text}"
        )
    return Finding(
        check=check,
        subject=subject,
        status=Status.UNKNOWN,
        summary=f"Could not check {subject}: {reason}",
        source=source,
        hint=hint or "The source did not answer; this is not evidence that it is healthy.",
        reproduce=reproduce,
    )


def rank(findings: Iterable[Finding]) -> list[Finding]:
    """Findings worst first; among equals, causes (``labels["role"] == "cause"``) before
    symptoms; otherwise the original order is kept."""
    items = list(findings)
    return sorted(items, key=lambda f: (-int(f.status), f.labels.get("role") != "cause"))


def explains(causes: Iterable[Finding], symptoms: Iterable[Finding]) -> list[Finding]:
    """``causes`` with each problem among them marked as the cause of the worst of
    ``symptoms`` and raised to its status: a lock held by a migration (WARNING) while the API's
    readiness probe hangs (CRITICAL) is what the verdict should lead with, not the probe.

    Only a cause that is itself a problem (WARNING or worse) is raised; OK, INFO and UNKNOWN
    findings are returned unchanged, as are all of them when no symptom is worse than OK.
    """
    out, worst = list(causes), max(symptoms, key=lambda f: int(f.status), default=None)
    if worst is None or worst.status < Status.WARNING:
        return out
    note = f"; meanwhile {worst.subject} is {worst.status.name}, likely because of this"
    return [
        f.replace(status=max(f.status, worst.status), summary=f.summary + note,
                  labels={**f.labels, "role": "cause", "explains": worst.check})
        if f.status >= Status.WARNING else f
        for f in out
    ]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A run's roll-up: the worst status, counts per status and the findings that decide it."""

    status: Status
    counts: Mapping[str, int]
    top: tuple[Finding, ...]
    headline: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.name,
            "counts": dict(self.counts),
            "headline": self.headline,
            "top": [f.to_dict() for f in self.top],
        }


def roll_up(findings: Sequence[Finding] | Iterable[Finding], *, top_n: int = 3) -> Verdict:
    """The verdict of a set of findings: the worst status wins.

    INFO findings inform; they never raise the verdict above OK. No findings at all is
    ``UNKNOWN``: nothing was looked at, so nothing can be called healthy.
    When anything is wrong the headline is the top finding (a cause before its symptoms) and
    how many more share the worst status.
    """
    items = list(findings)
    counts = {s.name: 0 for s in Status}
    for f in items:
        counts[f.status.name] += 1
    if not items:
        return Verdict(Status.UNKNOWN, counts, (), "No checks ran: nothing is known.")
    worst = max(f.status for f in items)
    ranked = [f for f in rank(items) if f.status >= Status.UNKNOWN]
    top = tuple(ranked[:top_n])
    if worst <= Status.INFO:  # informational findings never make a verdict
        worst, headline = Status.OK, f"All {len(items)} checks OK."
    else:
        headline = top[0].summary
        more = counts[worst.name] - 1
        if more:
            headline += f" (+{more} more {worst.name})"
    return Verdict(worst, counts, top, headline)
