"""One request followed across the API, worker and database logs by its correlation ID.

Seed 000 *Using Correlation IDs*: ``kubectl logs ... | grep "$CORRELATION_ID"`` should show the
request received, the provider calls, the database queries, the response and any error.
:func:`fetch_trace` reads every line carrying the ID from the application logs (JSON lines,
text, ...) and from the PostgreSQL server log (:data:`POSTGRES_LOG`: the ID travels there as
the session's ``application_name`` -- ``log_line_prefix`` with ``%a`` -- and as a
sqlcommenter-style comment in the statement), in time order, with a ``component`` column.
:func:`check_trace` judges it: did the request fail, where first, how long did it take, and
where did it wait.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from datetime import datetime
from typing import Any

import pandas as pd

from aura_ops.errors import AuraOpsError
from aura_ops.findings import Evidence, Finding, Status, unknown
from aura_ops.logs_engine import describe_paths, resolve_sources
from aura_ops.logs_formats import LogFormat
from aura_ops.logs_stats import fmt_delay, fmt_ts

__all__ = ["POSTGRES_LOG", "check_trace", "fetch_trace"]

_PG_LINE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)(?: (?P<tz>[A-Z]{2,5}|[+-]\d\d(?::?\d\d)?))?"
    r" \[(?P<pid>\d+)\]\s+(?:(?P<app>[^\s:]+) +)?"
    r"(?P<level>LOG|ERROR|FATAL|PANIC|WARNING|NOTICE|INFO|DEBUG\d?|STATEMENT|DETAIL|HINT|"
    r"CONTEXT|QUERY|LOCATION):  ?(?P<message>.*)$"
)
_PG_LEVELS = {"FATAL": "CRITICAL", "PANIC": "CRITICAL", "LOG": "INFO"}
_ERROR_LEVELS = ("ERROR", "CRITICAL")
_COLUMNS = ["ts", "component", "level", "message", "status", "duration_ms", "source"]


def _parse_postgres(line: str) -> dict[str, Any] | None:
    m = _PG_LINE.match(line)
    if m is None:
        return None
    tz = m["tz"] or "UTC"
    offset = "+00:00" if tz in ("UTC", "GMT") else (tz if tz[0] in "+-" else "")
    if not offset:  # a named zone other than UTC: the server's log_timezone, unknown here
        return None
    app = m["app"] or ""
    service, _, cid = app.partition("/")
    return {
        "ts": m["ts"].replace(" ", "T") + offset,
        "level": _PG_LEVELS.get(m["level"], m["level"]),
        "logger": "postgres",
        "service": service or None,
        "correlation_id": cid or None,
        "message": m["message"],
        "pid": int(m["pid"]),
    }


#: The PostgreSQL server log with ``log_line_prefix = '%m [%p] %q%a '`` (the default
#: ``'%m [%p] '`` parses too). An ``application_name`` of ``service/correlation-id`` fills
#: ``service`` and ``correlation_id``.
POSTGRES_LOG = LogFormat("postgres", _parse_postgres, "PostgreSQL server log (%m [%p] %q%a)")


def _read(paths: Any, cid: str, fmt: Any, since: Any, until: Any) -> pd.DataFrame:
    from aura_ops.logs import read_events  # logs re-exports this module: import late

    return read_events(paths, fmt=fmt, since=since, until=until, pattern=cid)


def _component(df: pd.DataFrame) -> pd.Series:
    comp = df["logger"].astype("object").where(df["logger"].notna(), df["service"])
    return comp.where(comp.notna(), df["source"]).astype("object")


def fetch_trace(
    paths: Any,
    correlation_id: str,
    *,
    db_log_paths: Any = "",
    since: datetime | str | None = None,
    until: datetime | str | None = None,
) -> pd.DataFrame:
    """Every line carrying ``correlation_id`` in the application logs and the database log,
    in time order, with a ``component`` column (logger, else service, else file).

    Raises SourceUnavailableError when a log cannot be read.
    """
    frames = [_read(paths, correlation_id, "auto", since, until)]
    if db_log_paths:
        frames.append(_read(db_log_paths, correlation_id, POSTGRES_LOG, since, until))
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=_COLUMNS)
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    df = df.sort_values("ts", kind="stable").reset_index(drop=True)
    df.insert(1, "component", _component(df))
    return df


def _is_error(df: pd.DataFrame) -> pd.Series:
    status = pd.to_numeric(df["status"], errors="coerce")
    level = df["level"].astype("object").isin(_ERROR_LEVELS)
    return (level | (status >= 500).fillna(False)).astype(bool)


def _request_line(df: pd.DataFrame) -> pd.Series | None:
    """The API's access line: the first with an HTTP status and a method."""
    hits = df[df["status"].notna() & df["method"].notna()] if "method" in df else df.iloc[0:0]
    return None if hits.empty else hits.iloc[0]


def _described(row: pd.Series | None) -> str:
    if row is None:
        return "no API line"
    return f"{row['method']} {row['route']} answered {int(row['status'])}"


def _failure(
    df: pd.DataFrame, errors: pd.DataFrame, cid: str, req: pd.Series | None, where: str
) -> tuple[str, str]:
    """Where the request failed: the first application error (the database's own lines say
    why a statement failed, the application line says which step)."""
    in_app = errors[errors["component"] != "postgres"]
    first = (in_app if not in_app.empty else errors).iloc[0]
    after = max(0.0, (first["ts"] - df["ts"].iloc[0]).total_seconds())
    etype, msg = first.get("error_type"), str(first["message"])
    if isinstance(etype, str) and etype and etype not in msg:
        msg = f"{etype}: {msg}"
    db = errors[errors["component"] == "postgres"]
    said = (
        "; postgres logged the error with the failing statement"
        if (len(db) and first["component"] != "postgres")
        else ""
    )
    summary = (
        f"Request {cid} failed in {first['component']}, {after:.2f} s after it arrived "
        f"({_described(req)}): {msg[:240]}{said}; {where}"
    )
    hint = (
        f"Fix what {first['component']} tripped on (its line in the evidence), then check "
        "whether other requests fail the same way"
    )
    return summary, hint


def _path_finding(df: pd.DataFrame, cid: str, base: dict[str, Any]) -> Finding:
    comps = " → ".join(dict.fromkeys(str(c) for c in df["component"]))
    span = (df["ts"].iloc[-1] - df["ts"].iloc[0]).total_seconds()
    where = f"{len(df)} lines in {comps} over {span:.2f} s"
    req = _request_line(df)
    errors = df[_is_error(df)]
    evidence = [Evidence.table(df[[c for c in _COLUMNS if c in df]], f"request {cid}, in order")]
    if not errors.empty:
        summary, hint = _failure(df, errors, cid, req, where)
        status = Status.WARNING
        evidence.append(Evidence.table(errors[[c for c in _COLUMNS if c in errors]], "errors"))
    elif req is not None and int(req["status"]) >= 400:
        summary = f"Request {cid} was rejected: {_described(req)}; {where}"
        status, hint = Status.WARNING, "A 4xx is the request's own fault or a limit: see its line"
    else:
        summary = f"Request {cid} succeeded: {_described(req)}; {where}; no errors"
        status, hint = Status.OK, ""
    return Finding(
        **base,
        status=status,
        summary=summary,
        observed=len(errors),
        expected=0,
        evidence=tuple(evidence),
        hint=hint,
        labels={"role": "cause"} if status > Status.OK else {},
    )


def _timing_finding(
    df: pd.DataFrame, cid: str, base: dict[str, Any], gap_warn_s: float, slow_ms: float
) -> Finding:
    ts = df["ts"].reset_index(drop=True)
    gaps = ts.diff().dt.total_seconds().fillna(0.0)
    i = int(gaps.idxmax())
    gap = float(gaps.iloc[i])
    between = f"{df['component'].iloc[max(i - 1, 0)]} → {df['component'].iloc[i]}"
    total = (ts.iloc[-1] - ts.iloc[0]).total_seconds()
    req = _request_line(df)
    api_ms = float(req["duration_ms"]) if req is not None and pd.notna(req["duration_ms"]) else 0
    age = (dt.datetime.now(dt.UTC) - ts.iloc[-1].to_pydatetime()).total_seconds()
    waiting = req is not None and int(req["status"]) == 202 and df["ts"].iloc[-1] == req["ts"]
    if api_ms > slow_ms:
        status, summary = Status.WARNING, f"Request {cid} took {api_ms / 1000:.1f} s in the API"
    elif gap > gap_warn_s:
        summary = f"Request {cid} waited {fmt_delay(gap)} between {between}"
        status = Status.WARNING
    elif waiting and age > gap_warn_s:
        summary = f"Request {cid} was accepted {fmt_delay(age)} ago and nothing has handled it"
        status = Status.WARNING
    else:
        status = Status.OK
        summary = (
            f"Request {cid}: {total:.2f} s from first to last line"
            + (f", API {api_ms:.0f} ms" if req is not None else "")
            + (f"; longest wait {gap:.2f} s ({between})" if len(df) > 1 else "")
        )
    return Finding(
        **base,
        status=status,
        summary=summary,
        observed=round(max(gap, total), 3),
        expected=f"gaps < {gap_warn_s:g} s, API < {slow_ms:g} ms",
        evidence=(
            Evidence.table(
                pd.DataFrame(
                    {"ts": ts.map(fmt_ts), "component": df["component"], "gap_s": gaps.round(3)}
                ),
                "gaps",
            ),
        ),
        hint="A long wait before the worker is queueing: see queue-backup"
        if status > Status.OK
        else "",
    )


def check_trace(
    paths: Any,
    correlation_id: str,
    *,
    db_log_paths: Any = "",
    until: datetime | str | None = None,
    search_minutes: float = 120,
    gap_warn_s: float = 30.0,
    slow_ms: float = 5000.0,
) -> list[Finding]:
    """Trace one request and judge it: errors along its path (WARNING, naming where it failed
    first), its time and its longest wait (WARNING above ``gap_warn_s`` or an API time above
    ``slow_ms``, seed 003's 5 s). Logs are searched ``search_minutes`` back from ``until``.

    No line with the ID is UNKNOWN (nothing was traced); an unreadable log is UNKNOWN.
    """
    end = pd.Timestamp(until or dt.datetime.now(dt.UTC))
    end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    start = end - pd.Timedelta(minutes=search_minutes)
    where = describe_paths(paths) + (f" + {describe_paths(db_log_paths)}" if db_log_paths else "")
    reproduce = (
        f"check_trace({describe_paths(paths)}, {correlation_id!r}"
        + (f", db_log_paths={describe_paths(db_log_paths)}" if db_log_paths else "")
        + f", until={end.isoformat()!r}, search_minutes={search_minutes:g})"
    )
    source = f"grep -F {correlation_id!r} {where} ({fmt_ts(start)} to {fmt_ts(end)})"
    subject = f"request {correlation_id}"
    if not correlation_id:
        return [
            unknown(
                "logs.trace",
                "request",
                "no correlation ID given",
                source=source,
                hint="Ask the user for the X-Correlation-ID of the failing response",
            )
        ]
    try:
        df = fetch_trace(
            paths,
            correlation_id,
            db_log_paths=db_log_paths,
            since=start.to_pydatetime(),
            until=end.to_pydatetime(),
        )
    except (AuraOpsError, OSError, ValueError) as exc:
        reason = exc.one_line() if isinstance(exc, AuraOpsError) else exc
        return [unknown("logs.trace", subject, reason, source=source, reproduce=reproduce)]
    if df.empty:
        return [
            unknown(
                "logs.trace",
                subject,
                f"no line carries it in {where} in the last {search_minutes:g} min",
                source=source,
                reproduce=reproduce,
                hint="Check the ID (X-Correlation-ID of the response) and widen search_minutes",
            )
        ]
    blind: list[Finding] = []
    if db_log_paths and not (df["component"] == "postgres").any():
        why = _unreadable_db_log(db_log_paths)
        if why:  # judge the application side alone, and say the database side is missing
            db = describe_paths(db_log_paths)
            span = f"({fmt_ts(start)} to {fmt_ts(end)})"
            source = f"grep -F {correlation_id!r} {describe_paths(paths)} {span}"
            blind.append(
                unknown(
                    "logs.trace_db",
                    f"PostgreSQL log {db}",
                    why,
                    reproduce=reproduce,
                    source=f"head -n {_PROBE_LINES} {db}",
                    hint="the trace below is the application side only; check db_log_paths "
                    "and log_line_prefix = '%m [%p] %q%a '",
                )
            )
    base = {"check": "logs.trace", "subject": subject, "source": source, "reproduce": reproduce}
    timing = {**base, "check": "logs.trace_timing"}
    try:
        return blind + [
            _path_finding(df, correlation_id, base),
            _timing_finding(df, correlation_id, timing, gap_warn_s, slow_ms),
        ]
    except (KeyError, TypeError, ValueError) as exc:  # lines in a shape not understood
        return blind + [unknown("logs.trace", subject, exc, source=source, reproduce=reproduce)]


_PROBE_LINES = 200


def _unreadable_db_log(db_log_paths: Any) -> str:
    """Why the PostgreSQL log cannot be part of a trace ("" when its lines parse): a request
    absent from a readable database log is normal, from a corrupt or foreign one unknowable."""
    seen = parsed = 0
    try:
        for source in resolve_sources(db_log_paths):
            for line in itertools.islice(source.opener(), _PROBE_LINES):
                seen, parsed = seen + 1, parsed + (POSTGRES_LOG.parse(line) is not None)
    except (AuraOpsError, OSError, UnicodeError, ValueError) as exc:
        return f"it cannot be read: {exc.one_line() if isinstance(exc, AuraOpsError) else exc}"
    if not seen:
        return "it is empty: the database side of the request cannot be traced"
    if not parsed:
        return (f"none of its first {seen} lines is a PostgreSQL log line (corrupt, or another "
                "format): the database side of the request cannot be traced")  # fmt: skip
    return ""
