"""Log line formats: one parser per format, all producing the same record shape.

A record is a plain ``dict`` with the canonical keys of :data:`CANONICAL` (any may be ``None``)
plus whatever extra keys the line carried. Formats:

``json``      JSON lines (keys renamed through :data:`ALIASES`; a prefix before the ``{``, such
              as the RFC 3339 timestamp ``kubectl logs --timestamps`` adds, is used as ``ts`` when
              the object has none)
``logfmt``    ``key=value key2="quoted value"``
``text``      the plain-text preset the runbooks grep: ``TS LEVEL LOGGER [CID] MESSAGE``
``combined``  nginx / Apache combined log format (an optional trailing request time in seconds,
              nginx's ``$request_time``, becomes ``duration_ms``)
``raw``       any text: the whole line is the message, a leading timestamp and a level word are
              picked up when present; never malformed (used for ``search`` on arbitrary files)
``regex:...`` a regular expression with named groups (``ts``, ``level``, ``message``, ...), or a
              :class:`LogFormat` built with :meth:`LogFormat.from_regex`

Messages shaped ``HTTP <status> <METHOD> <route> [<ErrorType>: <text>] [Duration <n>ms]`` fill
the request fields a line does not carry itself. Timestamps become timezone-aware UTC
``datetime`` objects; naive ones are taken as UTC. A line that cannot be parsed gives ``None``
(the caller counts it as malformed).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from .errors import ConfigError

try:  # optional: orjson parses JSON lines ~5x faster than the standard library
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - depends on the environment
    from json import loads as _loads

__all__ = [
    "ALIASES",
    "CANONICAL",
    "LogFormat",
    "PRESETS",
    "get_format",
    "parse_ts",
    "sniff_format",
]

#: Columns every events DataFrame has, in this order; extras follow.
CANONICAL = (
    "ts",
    "level",
    "logger",
    "service",
    "message",
    "correlation_id",
    "method",
    "route",
    "status",
    "duration_ms",
    "error_type",
    "source",
)

#: Other spellings of the canonical keys (a canonical key already present wins).
ALIASES = {
    "timestamp": "ts",
    "time": "ts",
    "@timestamp": "ts",
    "datetime": "ts",
    "asctime": "ts",
    "severity": "level",
    "lvl": "level",
    "levelname": "level",
    "log.level": "level",
    "msg": "message",
    "@message": "message",
    "logger_name": "logger",
    "name": "logger",
    "correlationId": "correlation_id",
    "correlation-id": "correlation_id",
    "x_correlation_id": "correlation_id",
    "request_id": "correlation_id",
    "requestId": "correlation_id",
    "status_code": "status",
    "statusCode": "status",
    "http_status": "status",
    "http_method": "method",
    "endpoint": "route",
    "latency_ms": "duration_ms",
    "elapsed_ms": "duration_ms",
    "response_time_ms": "duration_ms",
    "exc_type": "error_type",
    "exception_type": "error_type",
    "errorType": "error_type",
}

_LEVELS = {
    "WARN": "WARNING",
    "ERR": "ERROR",
    "FATAL": "CRITICAL",
    "CRIT": "CRITICAL",
    "EMERG": "CRITICAL",
    "ALERT": "CRITICAL",
    "INFORMATION": "INFO",
    "NOTICE": "INFO",
    "TRACE": "DEBUG",
}
_NUMERIC_LEVELS = {10: "DEBUG", 20: "DEBUG", 30: "INFO", 40: "WARNING", 50: "ERROR", 60: "CRITICAL"}
_ERROR_LEVELS = frozenset({"ERROR", "CRITICAL"})

_HTTP_MSG = re.compile(
    r"HTTP (?P<status>\d{3}) (?P<method>[A-Z]+) (?P<route>\S+)"
    r"(?: (?P<error_type>[A-Za-z_][\w.]*): (?P<error>.*?))?"
    r"(?: Duration (?P<duration_ms>\d+(?:\.\d+)?)ms)?\s*$"
)
_EXC_NAME = re.compile(
    r"\b([A-Z][\w.]*(?:Error|Exception|Exceeded|Timeout|Failure|Fault|Refused))\b"
)
_CLF_TS = re.compile(r"(\d{2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2})(?: ([+-]\d{4}))?")
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {m: i + 1 for i, m in enumerate(_MONTH_NAMES)}


def parse_ts(value: Any) -> datetime | None:
    """A UTC-aware ``datetime`` from ISO 8601 text, CLF text or epoch seconds/ms/µs/ns.

    Naive times are taken as UTC. Returns ``None`` when the value cannot be read.
    """
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _from_epoch(float(value))
    if not isinstance(value, str) or not value:
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        ts = _parse_other(value)
        if ts is None:
            return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _from_epoch(x: float) -> datetime | None:
    for scale in (1.0, 1e3, 1e6, 1e9):  # seconds, ms, µs, ns: pick the one that lands in 1970..2200
        if abs(x / scale) < 7.3e9:
            try:
                return datetime.fromtimestamp(x / scale, UTC)
            except (OverflowError, OSError, ValueError):
                return None
    return None


def _parse_other(text: str) -> datetime | None:
    m = _CLF_TS.match(text)
    if m and m.group(2) in _MONTHS:
        d, mon, y, hh, mm, ss, off = m.groups()
        tz = UTC
        if off:
            sign = -1 if off[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=int(off[1:3]), minutes=int(off[3:5])))
        return datetime(int(y), _MONTHS[mon], int(d), int(hh), int(mm), int(ss), tzinfo=tz)
    if text.replace(".", "", 1).isdigit():
        return _from_epoch(float(text))
    return None


def _norm_level(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return _NUMERIC_LEVELS.get(value - value % 10, "INFO")
    text = str(value).strip().upper()
    return _LEVELS.get(text, text) or None


def _to_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _to_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


_ALIAS_KEYS = frozenset(ALIASES)
_LEVEL_CACHE: dict[str, str | None] = {}


def _level(value: Any) -> str | None:
    if type(value) is str:
        hit = _LEVEL_CACHE.get(value)
        if hit is None and len(_LEVEL_CACHE) < 256:
            hit = _LEVEL_CACHE[value] = _norm_level(value)
        return hit if hit is not None else _norm_level(value)
    return _norm_level(value)


def _ts(value: Any) -> datetime | None:
    if type(value) is str:  # the common case, inlined: ISO 8601 already in UTC
        try:
            ts = datetime.fromisoformat(value)
        except ValueError:
            return parse_ts(value)
        if ts.tzinfo is UTC:
            return ts
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return parse_ts(value)


def finish(rec: dict[str, Any]) -> dict[str, Any] | None:
    """Normalise a raw record in place: aliases, UTC ``ts``, level, request fields, error type.

    Returns ``None`` when the record has a timestamp that cannot be read (malformed).
    """
    if rec.keys() & _ALIAS_KEYS:
        for key in [k for k in rec if k in _ALIAS_KEYS]:
            value = rec.pop(key)
            if rec.get(ALIASES[key]) is None:
                rec[ALIASES[key]] = value
    get = rec.get
    raw_ts = get("ts")
    if raw_ts is not None:
        ts = rec["ts"] = _ts(raw_ts)
        if ts is None:
            return None
    else:
        rec["ts"] = None
    msg = get("message")
    if msg is not None and type(msg) is not str:
        msg = rec["message"] = json.dumps(msg) if isinstance(msg, (dict, list)) else str(msg)
    status = get("status")
    if status is None and msg and "HTTP " in msg:
        _fill_from_message(rec, msg)
        status = get("status")
    if type(status) is not int or status is True or status is False:
        status = rec["status"] = _to_int(status)
    dur = get("duration_ms")
    if dur is not None and type(dur) is not float:
        rec["duration_ms"] = _to_float(dur)
    if get("route") is None and isinstance(get("path"), str):
        rec["route"] = rec["path"].split("?", 1)[0]
    level = rec["level"] = _level(get("level"))
    if level is None and status is not None:
        level = rec["level"] = "ERROR" if status >= 500 else "WARNING" if status >= 400 else "INFO"
    if (
        msg
        and get("error_type") is None
        and (level in _ERROR_LEVELS or (status is not None and status >= 500))
    ):
        m = _EXC_NAME.search(msg)
        if m:
            rec["error_type"] = m.group(1)
    return rec


def _fill_from_message(rec: dict[str, Any], msg: str) -> None:
    m = _HTTP_MSG.search(msg)
    if m:
        for key, val in m.groupdict().items():
            if val is not None and rec.get(key) is None:
                rec[key] = val


# --------------------------------------------------------------------------- line parsers


def _parse_json(line: str) -> dict[str, Any] | None:
    start = line.find("{")
    if start < 0:
        return None
    try:
        obj = _loads(line[start:] if start else line)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    if start and not any(k in obj for k in ("ts", "timestamp", "time", "@timestamp")):
        prefix = line[:start].strip()
        if parse_ts(prefix) is not None:
            obj["ts"] = prefix
    return obj


_LOGFMT_PAIR = re.compile(r'([^\s="]+)=("(?:[^"\\]|\\.)*"|\S*)')


def _parse_logfmt(line: str) -> dict[str, Any] | None:
    pairs = _LOGFMT_PAIR.findall(line)
    if len(pairs) < 2:
        return None
    rec: dict[str, Any] = {}
    for key, val in pairs:
        if val.startswith('"') and len(val) >= 2:
            val = val[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        rec[key] = val if val != "" else None
    return rec


_TEXT = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d\S*)\s+(?P<level>[A-Za-z]+)\s+(?P<logger>\S+)"
    r"\s+(?:\[(?P<correlation_id>[^\]]*)\]\s*)?(?P<message>.*)$"
)
_COMBINED = re.compile(
    r"^(?P<remote_addr>\S+) \S+ (?P<remote_user>\S+) \[(?P<ts>[^\]]+)\] "
    r'"(?P<method>[A-Z]+) (?P<path>[^" ]+)(?: (?P<protocol>[^"]*))?" (?P<status>\d{3}) '
    r'(?P<bytes>\S+)(?: "(?P<referer>[^"]*)" "(?P<user_agent>[^"]*)")?'
    r"(?: (?P<request_time>\d+(?:\.\d+)?))?.*$"
)
_RAW_TS = re.compile(r"^\[?(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d[^\s\]]*)\]?")
_RAW_LEVEL = re.compile(r"\b(DEBUG|INFO|WARN|WARNING|ERROR|CRITICAL|FATAL)\b")


def _regex_parser(pattern: re.Pattern[str]) -> Callable[[str], dict[str, Any] | None]:
    def parse(line: str) -> dict[str, Any] | None:
        m = pattern.match(line)
        return None if m is None else {k: v for k, v in m.groupdict().items() if v is not None}

    return parse


def _parse_combined(line: str) -> dict[str, Any] | None:
    m = _COMBINED.match(line)
    if m is None:
        return None
    rec = {k: v for k, v in m.groupdict().items() if v is not None}
    rec["message"] = f"{rec['method']} {rec['path']} {rec.get('protocol', '')}".rstrip()
    if "request_time" in rec:
        rec["duration_ms"] = float(rec.pop("request_time")) * 1000.0
    return rec


def _parse_raw(line: str) -> dict[str, Any] | None:
    rec: dict[str, Any] = {"message": line}
    m = _RAW_TS.match(line)
    if m and parse_ts(m.group(1)) is not None:
        rec["ts"] = m.group(1)
    lv = _RAW_LEVEL.search(line, 0, 120)
    if lv:
        rec["level"] = lv.group(1)
    return rec


@dataclasses.dataclass(frozen=True)
class LogFormat:
    """A named line parser: ``parse(line)`` gives a normalised record or ``None`` (malformed)."""

    name: str
    parser: Callable[[str], dict[str, Any] | None]
    description: str = ""
    #: A cheap peek at a line's timestamp (``None`` = unsure) so a time window can drop lines
    #: before the full parse; it must never give a time that the full parse would not.
    quick_ts: Callable[[str], datetime | None] | None = None

    @classmethod
    def from_regex(cls, pattern: str | re.Pattern[str], name: str = "") -> LogFormat:
        """A format from a regular expression with named groups (``ts``, ``level``, ...)."""
        try:
            rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        except re.error as exc:
            raise ConfigError(f"bad log regex {pattern!r}: {exc}", hint="fix the pattern") from exc
        if not rx.groupindex:
            raise ConfigError(f"log regex {rx.pattern!r} has no named groups", hint="use (?P<ts>…)")
        return cls(name or f"regex:{rx.pattern}", _regex_parser(rx), "regular expression")

    def parse(self, line: str) -> dict[str, Any] | None:
        """Parse one line (without its newline) into a normalised record, or ``None``."""
        raw = self.parser(line)
        return None if raw is None else finish(raw)


_JSON_TS = re.compile(r'^\s*\{[^{]*?"(?:ts|timestamp|time|@timestamp)"\s*:\s*"([^"\\]+)"')


def _quick_json_ts(line: str) -> datetime | None:
    """The top-level ``"ts"`` of a JSON line when no nested object comes before it."""
    m = _JSON_TS.match(line)
    return None if m is None else _ts(m.group(1))


def _quick_text_ts(line: str) -> datetime | None:
    head = line.split(" ", 1)[0]
    return _ts(head) if head[:4].isdigit() else None


PRESETS: Mapping[str, LogFormat] = {
    "json": LogFormat("json", _parse_json, "JSON lines", _quick_json_ts),
    "logfmt": LogFormat("logfmt", _parse_logfmt, "logfmt key=value pairs"),
    "text": LogFormat(
        "text", _regex_parser(_TEXT), "TS LEVEL LOGGER [CID] MESSAGE", _quick_text_ts
    ),
    "combined": LogFormat("combined", _parse_combined, "nginx/Apache combined log format"),
    "raw": LogFormat("raw", _parse_raw, "any text; the line is the message"),
}
_SYNONYMS = {
    "jsonl": "json",
    "ndjson": "json",
    "plain": "text",
    "nginx": "combined",
    "apache": "combined",
    "clf": "combined",
}


def get_format(fmt: str | LogFormat) -> LogFormat:
    """The :class:`LogFormat` for a preset name, ``"regex:<pattern>"`` or a LogFormat."""
    if isinstance(fmt, LogFormat):
        return fmt
    if fmt.startswith("regex:"):
        return LogFormat.from_regex(fmt[len("regex:") :])
    name = _SYNONYMS.get(fmt, fmt)
    if name not in PRESETS:
        raise ConfigError(
            f"unknown log format {fmt!r}",
            hint=f"use 'auto', 'regex:<pattern>' or one of {sorted(PRESETS)}",
        )
    return PRESETS[name]


def sniff_format(lines: Iterable[str]) -> LogFormat:
    """The preset that parses most of ``lines`` (JSON, text, combined, logfmt); else ``raw``."""
    sample = [ln for ln in lines if ln.strip()]
    best, best_hits = PRESETS["raw"], 0
    for name in ("json", "text", "combined", "logfmt"):
        fmt = PRESETS[name]
        hits = sum(1 for ln in sample if (rec := fmt.parse(ln)) is not None and rec["ts"])
        if hits > best_hits:
            best, best_hits = fmt, hits
    return best
