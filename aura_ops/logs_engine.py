"""Log sources and the streaming reader behind :mod:`aura_ops.logs`.

Sources: a file path, a glob (``logs/app.log*``), several of them comma-separated in one
string (a notebook parameter), rotated siblings (``app.log.1``,
``app.log.2.gz``; gzip is recognised by its magic bytes), ``"-"`` for stdin, an open text
stream, an iterator of lines (pod logs fetched elsewhere), a :class:`LogLines`, a mapping
``{name: lines-or-text}``, or a sequence of any of these.

Files are read line by line and never held whole: selective reads drop lines early (a plain
substring pre-filter on the raw line before any parsing, ``grep -F`` style; a time window on
the parsed timestamp). File modification times are not trusted to skip files: copied or
synthetic logs break that. Malformed lines are counted in :class:`ReadStats` and skipped,
never fatal. An unreadable source raises :class:`~aura_ops.errors.SourceUnavailableError`.
"""

from __future__ import annotations

import dataclasses
import glob as globmod
import gzip
import io
import os
import re
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import ConfigError, SourceUnavailableError
from .logs_formats import CANONICAL, LogFormat, get_format, parse_ts, sniff_format
from .logs_scan import ScanCounter, can_scan, matching_lines

__all__ = [
    "LogLines",
    "ReadStats",
    "describe_paths",
    "iter_events",
    "records_to_frame",
    "resolve_sources",
    "to_utc",
]

_SNIFF_LINES = 20
_ROTATED = re.compile(r"^(?P<base>.+?)(?:[.-](?P<n>\d+))?(?P<gz>\.gz)?$")


@dataclasses.dataclass
class LogLines:
    """Lines already in memory or streamed from elsewhere (e.g. Kubernetes pod logs).

    ``lines`` is an iterable of lines (str or bytes) or one string holding the whole text.
    """

    lines: Iterable[str | bytes] | str | bytes
    name: str = "<lines>"


@dataclasses.dataclass
class _Source:
    name: str
    opener: Callable[[], Iterator[str]]
    path: Path | None = None  # a file: fast paths (raw-byte search, DuckDB) may read it


@dataclasses.dataclass
class ReadStats:
    """What a read saw: lines, events kept, malformed lines (with a few samples), formats."""

    lines: int = 0
    events: int = 0
    malformed: int = 0
    dropped: int = 0
    malformed_samples: list[str] = dataclasses.field(default_factory=list)
    formats: dict[str, str] = dataclasses.field(default_factory=dict)
    sources: list[str] = dataclasses.field(default_factory=list)

    def as_attrs(self) -> dict[str, Any]:
        """The stats as plain values for ``DataFrame.attrs``."""
        return {
            "lines": self.lines,
            "malformed": self.malformed,
            "malformed_samples": list(self.malformed_samples),
            "dropped": self.dropped,
            "formats": dict(self.formats),
            "sources": list(self.sources),
        }


def to_utc(value: datetime | str | None, *, name: str = "time") -> datetime | None:
    """``since``/``until`` as an aware UTC datetime; accepts ISO text and ``"15m"``-style ages."""
    if value is None:
        return None
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*", value)
        if m:
            unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
            return datetime.now(UTC) - timedelta(**{unit: float(m.group(1))})
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    ts = parse_ts(value)
    if ts is None:
        raise ConfigError(
            f"cannot read {name}={value!r}", hint="use ISO 8601, e.g. 2026-11-23T23:30Z"
        )
    return ts


# --------------------------------------------------------------------------- sources


def _open_lines(path: Path) -> Iterator[str]:
    try:
        with open(path, "rb") as probe:
            is_gz = probe.read(2) == b"\x1f\x8b"
        raw = gzip.open(path, "rb") if is_gz else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise SourceUnavailableError.from_exception(exc, source=str(path)) from exc
    with raw, io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="") as text:
        try:
            for line in text:
                yield line.rstrip("\r\n")
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise SourceUnavailableError.from_exception(exc, source=str(path)) from exc


def _rotation_key(path: Path) -> tuple[str, int]:
    m = _ROTATED.match(path.name)
    n = int(m.group("n")) if m and m.group("n") else 0
    base = m.group("base") if m else path.name
    return (str(path.parent / base), -n)  # oldest rotation (highest number) first


def _file_sources(spec: str | Path, include_rotated: bool) -> list[_Source]:
    text = str(spec)
    if any(c in text for c in "*?["):
        matches = [Path(p) for p in globmod.glob(os.path.expanduser(text))]
        if not matches:
            raise SourceUnavailableError(
                f"no log files match {text!r}", source=text, hint="check the path and glob"
            )
    else:
        path = Path(os.path.expanduser(text))
        if not path.exists() and (text.lstrip().startswith("{") or "\n" in text or len(text) > 300):
            raise ConfigError(
                "that looks like log text, not a path",
                hint="wrap lines in LogLines(lines) to read them",
            )
        if not path.exists():
            raise SourceUnavailableError(
                f"log file not found: {text}",
                source=text,
                hint="check the path (and the host you run on)",
            )
        if path.is_dir():
            raise SourceUnavailableError(
                f"{text} is a directory",
                source=text,
                hint="pass a file or a glob such as dir/*.log",
            )
        if not path.is_file():  # a FIFO or device could block forever on open()
            raise SourceUnavailableError(
                f"{text} is not a regular file",
                source=text,
                hint="use '-' (stdin) or LogLines for streams",
            )
        matches = [path]
        if include_rotated:
            matches += [Path(p) for p in globmod.glob(globmod.escape(str(path)) + ".*")]
    files = sorted({p for p in matches if p.is_file()}, key=_rotation_key)
    return [_Source(p.name, lambda p=p: _open_lines(p), p) for p in files]


def _lines_source(lines: Iterable[str | bytes] | str | bytes, name: str) -> _Source:
    def opener() -> Iterator[str]:
        it = lines.splitlines() if isinstance(lines, (str, bytes)) else lines
        for line in it:
            if isinstance(line, bytes):  # a binary stream or bytes from an API client
                line = line.decode("utf-8", errors="replace")
            yield line.rstrip("\r\n")

    return _Source(name, opener)


def resolve_sources(paths: Any, *, include_rotated: bool = False) -> list[_Source]:
    """Turn the ``paths`` argument into sources; raises SourceUnavailableError if none exist."""
    if isinstance(paths, _Source):  # one source already resolved (the per-file fast paths)
        return [paths]
    if isinstance(paths, (str, Path)):
        if str(paths) == "-":
            return [_lines_source(sys.stdin, "<stdin>")]
        if isinstance(paths, str) and "," in paths and not os.path.exists(paths):
            parts = [p.strip() for p in paths.split(",") if p.strip()]
            return resolve_sources(parts, include_rotated=include_rotated)
        return _file_sources(paths, include_rotated)
    if isinstance(paths, LogLines):
        return [_lines_source(paths.lines, paths.name)]
    if isinstance(paths, io.IOBase) or hasattr(paths, "readline"):
        return [_lines_source(paths, getattr(paths, "name", "<stream>"))]
    if isinstance(paths, Mapping):
        return [_lines_source(v, str(k)) for k, v in paths.items()]
    if isinstance(paths, Sequence):
        out: list[_Source] = []
        for item in paths:
            out += resolve_sources(item, include_rotated=include_rotated)
        return out
    if isinstance(paths, Iterable):  # a generator / iterator of lines
        return [_lines_source(paths, "<lines>")]
    raise ConfigError(
        f"cannot read logs from {type(paths).__name__}",
        hint="pass a path, a glob, '-', a list of them or an iterable of lines",
    )


def describe_paths(paths: Any) -> str:
    """A short, secret-free text naming the sources (for ``source=`` and ``reproduce=``)."""
    if isinstance(paths, (str, Path)):
        return repr(str(paths))
    if isinstance(paths, LogLines):
        return f"LogLines(name={paths.name!r})"
    if isinstance(paths, Mapping):
        return repr({str(k): "<lines>" for k in paths})
    if isinstance(paths, Sequence):
        return "[" + ", ".join(describe_paths(p) for p in paths) + "]"
    return "<lines>"


# --------------------------------------------------------------------------- reading


def _sniffed(src: _Source, fmt: str | LogFormat) -> tuple[LogFormat, Iterator[str]]:
    lines = src.opener()
    if not (isinstance(fmt, str) and fmt == "auto"):
        return get_format(fmt), lines
    head: list[str] = []
    for line in lines:
        head.append(line)
        if len(head) >= _SNIFF_LINES:
            break
    return sniff_format(head), _chain(head, lines)


def _lines_for(
    src: _Source, fmt: str | LogFormat, needle: str | None, filtered: bool
) -> tuple[LogFormat, Iterator[str], ScanCounter | None]:
    """The format and the lines to look at; for a literal search in a file, only the lines
    holding the needle (found in raw bytes, :mod:`aura_ops.logs_scan`) with a line counter."""
    if needle is None or filtered or src.path is None or not can_scan(needle):
        return (*_sniffed(src, fmt), None)
    if isinstance(fmt, str) and fmt == "auto":
        head = src.opener()
        try:
            lf = sniff_format([line for _, line in zip(range(_SNIFF_LINES), head, strict=False)])
        finally:
            head.close()  # type: ignore[attr-defined]
    else:
        lf = get_format(fmt)
    counter = ScanCounter()
    return lf, matching_lines(src.path, needle, counter), counter


def _chain(head: list[str], rest: Iterator[str]) -> Iterator[str]:
    yield from head
    yield from rest


def iter_events(
    paths: Any,
    *,
    fmt: str | LogFormat = "auto",
    since: datetime | None = None,
    until: datetime | None = None,
    needle: str | None = None,
    line_filter: Callable[[str], bool] | None = None,
    keep: Callable[[dict[str, Any]], bool] | None = None,
    include_rotated: bool = False,
    stats: ReadStats | None = None,
) -> Iterator[dict[str, Any]]:
    """Stream normalised records from ``paths`` in file order, filtering while reading.

    ``needle`` is a literal substring every kept raw line must contain (checked before
    parsing); ``line_filter`` a further raw-line test; ``keep`` a test on the parsed record.
    Lines without a timestamp are dropped when a window is given.
    """
    stats = stats if stats is not None else ReadStats()
    for src in resolve_sources(paths, include_rotated=include_rotated):
        stats.sources.append(src.name)
        lf, lines, scanned = _lines_for(src, fmt, needle, line_filter is not None)
        stats.formats[src.name] = lf.name
        parse = lf.parse
        peek = lf.quick_ts if since is not None or until is not None else None
        for line in lines:
            stats.lines += 1
            if needle is not None and needle not in line:
                continue
            if line_filter is not None and not line_filter(line):
                continue
            if peek is not None and _outside(peek(line), since, until):
                continue
            if not line.strip():
                continue
            rec = parse(line)
            if rec is None:
                stats.malformed += 1
                if len(stats.malformed_samples) < 5:
                    stats.malformed_samples.append(f"{src.name}: {line[:300]}")
                continue
            ts = rec["ts"]
            if (since is not None or until is not None) and ts is None:
                continue
            if (since is not None and ts < since) or (until is not None and ts >= until):
                continue
            if keep is not None and not keep(rec):
                continue
            rec["source"] = src.name
            stats.events += 1
            yield rec
        if scanned is not None:  # lines the raw-byte search skipped were read all the same
            stats.lines += scanned.lines - scanned.kept


def _outside(ts: datetime | None, since: datetime | None, until: datetime | None) -> bool:
    if ts is None:
        return False
    return (since is not None and ts < since) or (until is not None and ts >= until)


def records_to_frame(
    records: Iterable[dict[str, Any]], stats: ReadStats, *, max_events: int | None = None
) -> pd.DataFrame:
    """Records → an events DataFrame (canonical columns first, UTC ``ts``, time order).

    With ``max_events`` only the most recent ``max_events`` records (in read order) are kept;
    the number left out is ``attrs["dropped"]``.
    """
    if max_events is not None:
        buf: deque[dict[str, Any]] | list[dict[str, Any]] = deque(maxlen=max(0, max_events))
        total = 0
        for rec in records:
            buf.append(rec)
            total += 1
        stats.dropped = total - len(buf)
    else:
        buf = list(records)
    df = pd.DataFrame.from_records(list(buf)) if buf else pd.DataFrame()
    for col in CANONICAL:
        if col not in df.columns:
            df[col] = None
    df["ts"] = pd.to_datetime(df["ts"], utc=True).astype("datetime64[us, UTC]")
    df["status"] = pd.array(pd.to_numeric(df["status"], errors="coerce"), dtype="Int64")
    df["duration_ms"] = pd.to_numeric(df["duration_ms"], errors="coerce").astype("float64")
    for col in (
        "level",
        "logger",
        "service",
        "message",
        "correlation_id",
        "method",
        "route",
        "error_type",
        "source",
    ):
        df[col] = df[col].astype("object").where(df[col].notna(), None)
    extras = [c for c in df.columns if c not in CANONICAL]
    df = df[list(CANONICAL) + extras]
    df = df.sort_values("ts", kind="stable", na_position="first").reset_index(drop=True)
    df.attrs.update(stats.as_attrs())
    return df
