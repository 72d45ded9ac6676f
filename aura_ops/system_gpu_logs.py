"""CUDA out-of-memory errors in worker log files: seed 003's
``docker-compose logs worker --tail=100 | grep -i "memory\\|cuda\\|oom"``, with a time window.

A worker's traceback spans several lines and only the first carries a timestamp
(``2026-11-22 10:39:11,918 ERROR worker job 42 failed`` then ``Traceback ...`` and the
``torch.OutOfMemoryError: CUDA out of memory. ...`` line). :func:`fetch_log_records` keeps
such continuation lines with the line they follow, so a window on the timestamps keeps or
drops the whole record; :func:`check_cuda_oom_logs` judges the records in the window with
:func:`aura_ops.system_gpu.check_cuda_oom`. Plain text and JSON lines are both read; files
may be rotated or gzipped (``aura_ops.logs_engine`` opens them).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from aura_ops.errors import AuraOpsError, SourceUnavailableError
from aura_ops.findings import Evidence, Finding, unknown
from aura_ops.logs_engine import describe_paths, resolve_sources, to_utc
from aura_ops.logs_formats import parse_ts
from aura_ops.system_gpu import check_cuda_oom

__all__ = ["check_cuda_oom_logs", "fetch_log_records"]

_LEADING_TS = re.compile(
    r"^\s*\[?(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:\s?(?:Z|UTC|[+-]\d\d:?\d\d))?)"
)
_JSON_TS = re.compile(r'"(?:ts|timestamp|time|@timestamp|asctime)"\s*:\s*"([^"]+)"')


def _line_ts(line: str) -> datetime | None:
    m = _JSON_TS.search(line) if line.lstrip().startswith("{") else _LEADING_TS.match(line)
    if m is None:
        return None
    text = m.group(1).replace(",", ".").replace(" UTC", "+00:00").replace("UTC", "+00:00")
    return parse_ts(text)


def fetch_log_records(
    paths: Any,
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    include_rotated: bool = False,
) -> list[tuple[datetime | None, str]]:
    """Log records ``(timestamp, text)`` in the window; a record is a timestamped line plus
    the untimestamped lines after it (a traceback). Raises SourceUnavailableError, also when
    a window is asked for and no line of the logs carries a timestamp (corrupt or not a log:
    everything would be dropped silently)."""
    start, end = to_utc(since, name="since"), to_utc(until, name="until")
    records: list[tuple[datetime | None, list[str]]] = []
    seen = stamped = 0
    for source in resolve_sources(paths, include_rotated=include_rotated):
        current: tuple[datetime | None, list[str]] | None = None
        for line in source.opener():
            ts = _line_ts(line)
            seen, stamped = seen + 1, stamped + (ts is not None)
            if ts is not None or current is None:
                current = (ts, [line])
                records.append(current)
            else:
                current[1].append(line)
    if seen and not stamped and (start or end):  # a window over lines with no time: blind
        raise SourceUnavailableError(
            f"none of the {seen} lines of {describe_paths(paths)} starts with a timestamp: "
            "not a log this can read (binary, or another format)",
            hint="check the path: the window cannot be applied to lines without a time",
        )
    kept = []
    for ts, lines in records:
        if ts is None and (start or end):
            continue
        if ts is not None and ((start and ts < start) or (end and ts > end)):
            continue
        kept.append((ts, "\n".join(lines)))
    return kept


def check_cuda_oom_logs(
    paths: Any,
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    include_rotated: bool = False,
) -> list[Finding]:
    """CRITICAL when the worker logs hold a ``CUDA out of memory`` error in the window.

    The finding gives the figures of the last one (asked for, free, capacity, which process
    held the rest) and the failing job's whole record as evidence; no error is OK; a log that
    cannot be read is UNKNOWN.
    """
    where = describe_paths(paths)
    window = {k: v for k, v in (("since", since), ("until", until)) if v}
    shown = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in window.items()}
    reproduce = (
        "check_cuda_oom_logs(" + ", ".join([where, *(f"{k}={v!r}" for k, v in shown.items())]) + ")"
    )
    source = f"grep -i 'CUDA out of memory' {where}" + (
        f" between {shown.get('since', '…')} and {shown.get('until', 'now')}" if shown else ""
    )
    try:
        records = fetch_log_records(
            paths, since=since, until=until, include_rotated=include_rotated
        )
    except (AuraOpsError, OSError, UnicodeError, ValueError) as exc:
        reason = exc.one_line() if isinstance(exc, AuraOpsError) else exc
        return [unknown("system.cuda_oom", f"worker log {where}", reason, source=source,
                        reproduce=reproduce)]  # fmt: skip
    failing = [text for _, text in records if "CUDA out of memory" in text]
    text = "\n".join(failing) if failing else "\n".join(t for _, t in records)
    findings = check_cuda_oom(text, subject=f"worker log {where}")
    lines = sum(t.count("\n") + 1 for _, t in records)
    out = []
    for f in findings:
        extra: tuple[Evidence, ...] = ()
        summary = f.summary
        if failing:
            extra = (Evidence.text("\n\n".join(failing[-3:]), "failing job records"),)
        else:
            summary = f"No CUDA out-of-memory error in {lines} lines of worker log {where}" + (
                " in the window" if window else ""
            )
        out.append(
            f.replace(
                summary=summary,
                source=source,
                reproduce=reproduce,
                evidence=f.evidence + extra,
                labels={**f.labels, "role": "cause"} if failing else f.labels,
            )
        )
    return out
