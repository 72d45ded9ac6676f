"""Application logs → events DataFrames → findings (the runbooks' ``grep | sort | uniq -c``).

Read: :func:`read_events` (a window or a filter, into memory), :func:`search` (pattern in a
window), :func:`trace` (one correlation ID across every source, in time order; with the
database server's log and judged: :func:`fetch_trace`, :func:`check_trace`). Judge:
:func:`check_error_types`, :func:`check_failing_endpoints`, :func:`check_errors_since`,
:func:`check_latency`, and :func:`check_log_errors` (reads and judges; a source that cannot be
read becomes an UNKNOWN finding). Helpers: :func:`error_timeline`, :func:`latency_percentiles`,
:func:`plot_error_rate`. Files too big for memory: :func:`summarize_file` streams them once.

Sources, formats and streaming live in :mod:`aura_ops.logs_engine` and
:mod:`aura_ops.logs_formats`, the aggregations shared by the in-memory and streaming paths in
:mod:`aura_ops.logs_stats`, the judging in :mod:`aura_ops.logs_checks`, the chart in
:mod:`aura_ops.logs_plot`.

An *error* is a line at level ERROR/CRITICAL or with an HTTP status >= 500. Its type is
``error_type`` (given, or the exception name found in the message), else the message with
numbers masked. Lines that share a correlation ID and an error type count as one error (a
request's access line and its traceback line are one failure); ``lines`` counts them all.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pandas as pd

from .errors import AuraOpsError, ConfigError
from .findings import Finding, unknown
from .logs_checks import (
    check_error_types,
    check_errors_since,
    check_failing_endpoints,
    check_latency,
    nothing_read,
)
from .logs_engine import LogLines, ReadStats, describe_paths, iter_events, records_to_frame, to_utc
from .logs_formats import LogFormat
from .logs_plot import plot_error_rate
from .logs_stats import (
    LogSummary,
    auto_freq,
    error_timeline,
    latency_percentiles,
    summarize_file,
)
from .logs_trace import POSTGRES_LOG, check_trace, fetch_trace

__all__ = [
    "LogFormat",
    "LogLines",
    "LogSummary",
    "POSTGRES_LOG",
    "auto_freq",
    "check_error_types",
    "check_errors_since",
    "check_failing_endpoints",
    "check_latency",
    "check_log_errors",
    "check_trace",
    "error_timeline",
    "fetch_trace",
    "latency_percentiles",
    "load_events",
    "nothing_read",
    "plot_error_rate",
    "read_events",
    "search",
    "summarize_file",
    "trace",
]

Paths = Any  # str | Path | Sequence | LogLines | Mapping | iterable of lines


def _call(name: str, paths: Paths, **kwargs: Any) -> str:
    args = [describe_paths(paths)]
    args += [f"{k}={v!r}" for k, v in kwargs.items() if v is not None and v != "auto"]
    return f"{name}({', '.join(args)})"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def read_events(
    paths: Paths,
    *,
    fmt: str | LogFormat = "auto",
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    pattern: str | None = None,
    max_events: int | None = None,
    regex: bool = False,
    include_rotated: bool = False,
) -> pd.DataFrame:
    """Read log events into a DataFrame, filtering while reading.

    ``pattern`` keeps lines containing that literal text (or matching it with ``regex=True``);
    ``since``/``until`` (datetime, ISO text or an age such as ``"15m"``) keep a window.
    Columns: :data:`~aura_ops.logs_formats.CANONICAL` then extras, sorted by ``ts`` (UTC).
    ``attrs``: ``malformed`` (count of skipped lines), ``lines``, ``formats``, ``query``.
    Raises SourceUnavailableError when a source cannot be read.
    """
    start, end = to_utc(since, name="since"), to_utc(until, name="until")
    needle, line_filter = _pattern_filter(pattern, regex)
    stats = ReadStats()
    records = iter_events(
        paths,
        fmt=fmt,
        since=start,
        until=end,
        needle=needle,
        line_filter=line_filter,
        include_rotated=include_rotated,
        stats=stats,
    )
    df = records_to_frame(records, stats, max_events=max_events)
    fmt_name = fmt.name if isinstance(fmt, LogFormat) else fmt
    df.attrs["query"] = _call(
        "read_events",
        paths,
        fmt=fmt_name,
        since=_iso(start),
        until=_iso(end),
        pattern=pattern,
        regex=regex or None,
    )
    df.attrs["subject"] = f"logs {describe_paths(paths)}"
    return df


def load_events(
    paths: Paths,
    *,
    fmt: str | LogFormat = "auto",
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    pattern: str | None = None,
    max_events: int | None = 2_000_000,
    include_rotated: bool = False,
) -> pd.DataFrame:
    """:func:`read_events` for notebooks: a source that cannot be read never raises.

    On failure it returns an empty events frame whose ``attrs["error"]`` holds the reason;
    every ``check_*`` given that frame answers UNKNOWN with it, so the run goes on.
    """
    try:
        return read_events(
            paths,
            fmt=fmt,
            since=since,
            until=until,
            pattern=pattern,
            max_events=max_events,
            include_rotated=include_rotated,
        )
    except AuraOpsError as exc:
        error = exc.one_line()
    except (OSError, UnicodeError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    df = records_to_frame([], ReadStats())
    df.attrs.update(
        error=error,
        subject=f"logs {describe_paths(paths)}",
        query=_call("read_events", paths, since=_text(since), until=_text(until)),
    )
    return df


def _text(value: datetime | str | None) -> str | None:
    return value if value is None or isinstance(value, str) else _iso(value)


def _pattern_filter(pattern: str | None, regex: bool) -> tuple[str | None, Any]:
    if pattern is None or pattern == "":
        return None, None
    if not regex:
        return pattern, None
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"bad search regex {pattern!r}: {exc}", hint="fix the pattern") from exc
    return None, lambda line: rx.search(line) is not None


def search(
    paths: Paths,
    pattern: str,
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    regex: bool = False,
    fmt: str | LogFormat = "auto",
    max_events: int | None = 10_000,
) -> pd.DataFrame:
    """Lines containing ``pattern`` (literal, or a regex with ``regex=True``) in a time window.

    The ``grep`` of the runbooks, streamed: only matching lines are parsed. Keeps the most
    recent ``max_events`` matches (``attrs["dropped"]`` says how many more there were).
    """
    return read_events(
        paths,
        fmt=fmt,
        since=since,
        until=until,
        pattern=pattern,
        max_events=max_events,
        regex=regex,
    )


def trace(
    paths_or_events: Paths | pd.DataFrame, correlation_id: str, *, fmt: str | LogFormat = "auto"
) -> pd.DataFrame:
    """Every line of one correlation ID across all sources (api, worker, ...), in time order.

    From files, any line containing the ID is kept (``grep -F`` semantics, pre-filtered before
    parsing); from a DataFrame, rows whose ``correlation_id`` is the ID or whose message holds it.
    """
    if not correlation_id:
        raise ConfigError("trace() needs a correlation ID", hint="e.g. from X-Correlation-ID")
    if isinstance(paths_or_events, pd.DataFrame):
        df = paths_or_events
        hit = (df["correlation_id"] == correlation_id) | df["message"].astype(
            "string"
        ).str.contains(correlation_id, regex=False).fillna(False)
        out = df[hit.astype(bool)].sort_values("ts", kind="stable").reset_index(drop=True)
        out.attrs = dict(df.attrs)
        return out
    return read_events(paths_or_events, fmt=fmt, pattern=correlation_id)


def check_log_errors(
    paths: Paths,
    *,
    fmt: str | LogFormat = "auto",
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    error_ratio_warn: float = 0.01,
    error_ratio_crit: float = 0.05,
    crit_count: int = 20,
    max_events: int | None = 2_000_000,
) -> list[Finding]:
    """Read logs and run :func:`check_error_types` and :func:`check_failing_endpoints`.

    A source that cannot be read (missing file, no glob match, permission, bad gzip) gives an
    UNKNOWN finding naming it; no exception escapes.
    """
    rep = _call(
        "check_log_errors",
        paths,
        fmt=fmt if isinstance(fmt, str) else fmt.name,
        since=_text(since),
        until=_text(until),
    )
    try:
        events = read_events(paths, fmt=fmt, since=since, until=until, max_events=max_events)
    except AuraOpsError as exc:
        where = exc.source or describe_paths(paths)
        return [
            unknown(
                "logs.errors",
                f"logs {describe_paths(paths)}",
                exc.one_line(),
                source=f"read {where}",
                reproduce=rep,
            )
        ]
    except (OSError, UnicodeError, ValueError) as exc:
        return [
            unknown(
                "logs.errors",
                f"logs {describe_paths(paths)}",
                exc,
                source=describe_paths(paths),
                reproduce=rep,
            )
        ]
    return check_error_types(events, crit_count=crit_count) + check_failing_endpoints(
        events, error_ratio_warn=error_ratio_warn, error_ratio_crit=error_ratio_crit
    )
