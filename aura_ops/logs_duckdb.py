"""Optional DuckDB engine behind :func:`aura_ops.logs.summarize_file` for big log files.

The pure-Python reader parses every line into a dict (~10 s per 200 MB). DuckDB parses JSON
lines and splits text lines in C++ on every core; one scan per file grouped four ways
(:mod:`aura_ops.logs_duckdb_sql`) gives everything a summary needs, no event kept:

- the *exact* rows (values SQL reads as Python does), errors included, become counters per
  time bucket and per endpoint, a histogram of exact durations per endpoint (numpy's
  ``quantile`` over the expanded histogram is exactly the answer of the Python path, which
  keeps every duration), and per error type its lines, first and last time, endpoints and
  distinct correlation IDs -- the error type taken from the message and the masked message
  computed in SQL with the Python path's own regular expressions, on ASCII text;
- every other row (non-ASCII errors, odd values, rows the normaliser would fill in, such as a
  status taken from an ``HTTP 503 ...`` message in JSON) comes back -- its fields for JSON,
  its line for text -- and goes through the same Python code as the pure-Python path
  (:func:`aura_ops.logs_formats.finish`, the streaming aggregator).

Answers are identical to the pure-Python path by construction, and tested to be. A file this
engine cannot reproduce exactly is read by the pure-Python path instead, whole: gzip; JSON
with a malformed line, a line that is not an object, invalid UTF-8, duplicate keys, an alias
key (``timestamp``, ``msg``, ...) or a value of an unusual type (a numeric level, ``true`` as
a status, an object as a message); text with carriage returns or invalid UTF-8; sub-second
buckets. ``duckdb`` is an optional dependency (``pip install duckdb``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError
from .logs_duckdb_sql import FIELDS, json_query, text_query
from .logs_engine import LogLines, ReadStats, iter_events
from .logs_formats import LogFormat, finish, get_format, sniff_format

__all__ = [
    "AUTO_MIN_BYTES",
    "Done",
    "ENGINES",
    "available",
    "engine_for",
    "format_of",
    "summarize_source",
]

#: Values of ``summarize_file(engine=...)``.
ENGINES = ("auto", "duckdb", "python")
#: ``engine="auto"`` leaves smaller files to Python: DuckDB's start costs ~0.1 s a file.
AUTO_MIN_BYTES = 4 * 2**20
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SAMPLES = 5  # malformed lines kept as samples, as the Python reader does


@dataclasses.dataclass
class Done:
    """What one file added: its lines, events and malformed lines (with samples)."""

    lines: int
    events: int
    malformed: int = 0
    samples: list[str] = dataclasses.field(default_factory=list)


def available() -> bool:
    """Whether the ``duckdb`` package is installed."""
    return importlib.util.find_spec("duckdb") is not None


def engine_for(engine: str) -> Any:
    """This module when ``engine`` asks for DuckDB and it is installed, else None.

    ``"duckdb"`` without the package raises ConfigError; an unknown name too.
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}", hint=f"use one of {', '.join(ENGINES)}")
    if engine == "python":
        return None
    if not available():
        if engine == "duckdb":
            raise ConfigError("engine='duckdb' needs the duckdb package", hint="pip install duckdb")
        return None
    return sys.modules[__name__]


def format_of(src: Any, fmt: str | LogFormat, *, min_bytes: int = 0) -> LogFormat | None:
    """The format of file source ``src`` when this engine reads it (JSON or text, at least
    ``min_bytes`` long), else None."""
    try:
        if src.path is None or src.path.stat().st_size < max(1, min_bytes):
            return None
    except OSError:
        return None  # the Python reader reports it
    if isinstance(fmt, str) and fmt == "auto":
        head = src.opener()
        try:
            lf = sniff_format([line for _, line in zip(range(20), head, strict=False)])
        finally:
            head.close()
    else:
        lf = get_format(fmt)
    return lf if lf.name in ("json", "text") else None


def _us(dt: datetime | None) -> int | None:
    if dt is None:
        return None
    delta = dt - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _connect() -> Any:
    import duckdb

    con = duckdb.connect(config={"threads": max(1, os.cpu_count() or 1)})
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET memory_limit = '768MB'")
    con.execute("SET enable_progress_bar = false")  # no bar on stderr / in notebooks
    return con


def summarize_source(
    src: Any,
    lf: LogFormat,
    agg: Any,
    *,
    step_s: float,
    since: datetime | None,
    until: datetime | None,
) -> Done | None:
    """Aggregate file source ``src`` into ``agg`` (the streaming aggregator of
    :mod:`aura_ops.logs_stats`). ``None`` -- ``agg`` untouched -- when this engine cannot
    give the exact answer for this file and the Python reader must."""
    import duckdb

    from .logs_scan import count_lines

    path: Path = src.path
    step_us = int(round(step_s * 1_000_000))
    if step_us <= 0 or step_us % 1_000_000 or step_us / 1_000_000 != step_s:
        return None  # sub-second or fractional buckets: float bucketing, left to Python
    with path.open("rb") as probe:
        if probe.read(2) == b"\x1f\x8b" or path.stat().st_size == 0:
            return None  # gzip (rotated files) and empty files: the Python reader
    counted = count_lines(path)
    if counted.cr and lf.name == "text":
        return None  # DuckDB's CSV reader splits carriage returns its own way
    build = json_query if lf.name == "json" else text_query
    con = _connect()
    try:
        rows = con.execute(build(path, step_us, _us(since), _us(until))).fetchall()
    except duckdb.Error:
        return None  # malformed JSON, not an object, invalid UTF-8, duplicate key, ...
    finally:
        con.close()
    plan = _plan(rows, lf, src.name, since, until)
    if plan is None:
        return None
    done = _apply(plan, agg)
    done.lines = counted.lines
    if done.malformed:
        done.samples = _samples(src, plan.malformed_lines, done.malformed)
    return done


@dataclasses.dataclass
class _Plan:
    buckets: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    endpoints: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    hist: dict[tuple[str, str], tuple[list[float], list[int]]] = dataclasses.field(
        default_factory=dict
    )
    errors: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    others: list[tuple[dict[str, Any], int]] = dataclasses.field(default_factory=list)
    malformed: int = 0
    malformed_lines: set[str] = dataclasses.field(default_factory=set)


_TAIL = 8  # n, requests, c5xx, c4xx, c429, cerr, tmin, tmax


def _plan(
    rows: list[tuple[Any, ...]],
    lf: LogFormat,
    name: str,
    since: datetime | None,
    until: datetime | None,
) -> _Plan | None:
    """Sort the grouped rows into what :func:`_apply` adds; ``None`` if Python must read."""
    plan = _Plan()
    texts: list[tuple[str, int]] = []
    for row in rows:
        gb, gd, gk, ge, cls, b, m, r, d, k, routed, kind, cid = row[:13]
        tail = row[-_TAIL:]
        n = tail[0]
        if cls == 2:
            return None  # a value DuckDB reads differently from Python
        if cls == 0 and not gb:  # per bucket and endpoint
            plan.buckets.append((b, *tail))
            if tail[1]:
                plan.endpoints.append(((m, r), *tail[1:5]))
        elif cls == 0 and not gd:
            if d is not None:
                values, counts = plan.hist.setdefault((m, r), ([], []))
                values.append(d)
                counts.append(n)
        elif cls == 0 and not gk:
            if k is not None:
                plan.errors.append((k, m, r, routed, kind, cid, n, *tail[6:]))
        elif cls == 1 and not ge:
            if lf.name == "text":
                texts.append((row[13], n))
            elif not _json_other(plan, row[13], n, since, until):
                return None  # a malformed JSON record: the Python reader reports its text
    if texts:
        _text_others(plan, texts, lf, name, since, until)
    return plan


def _json_other(
    plan: _Plan, fields: list[Any], n: int, since: datetime | None, until: datetime | None
) -> bool:
    """Normalise one JSON row the Python way; False when it is malformed."""
    rec = finish({k: v for k, v in zip(FIELDS, fields, strict=True) if v is not None})
    if rec is None:
        return False
    ts = rec["ts"]
    if (since is not None or until is not None) and ts is None:
        return True
    if (since is not None and ts < since) or (until is not None and ts >= until):
        return True
    plan.others.append((rec, n))
    return True


def _text_others(
    plan: _Plan,
    texts: list[tuple[str, int]],
    lf: LogFormat,
    name: str,
    since: datetime | None,
    until: datetime | None,
) -> None:
    """Parse the other text lines with the Python reader itself (window, blank, malformed)."""
    for line, n in texts:
        stats = ReadStats()
        recs = list(iter_events(LogLines([line], name), fmt=lf, since=since, until=until,
                                stats=stats))  # fmt: skip
        if stats.malformed:
            plan.malformed += n
            plan.malformed_lines.add(line)
        plan.others.extend((rec, n) for rec in recs)


def _when(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _apply(plan: _Plan, agg: Any) -> Done:
    """Add the planned counters to the aggregator (SQL groups first, then the other rows
    through the aggregator itself, which merges with them: same sets of correlation IDs)."""
    events = 0
    for b, n, requests, c5xx, c4xx, _c429, cerr, tmin, tmax in plan.buckets:
        t = agg.tl.setdefault(int(b), [0, 0, 0, 0, 0])
        t[0] += n
        t[1] += requests
        t[2] += c5xx
        t[3] += c4xx
        t[4] += cerr
        events += n
        first, last = _when(tmin), _when(tmax)
        agg.first = first if agg.first is None or first < agg.first else agg.first
        agg.last = last if agg.last is None or last > agg.last else agg.last
    for key, requests, c5xx, c4xx, c429 in plan.endpoints:
        e = agg.ep.get(key)
        if e is None:
            e = agg.ep[key] = [0, 0, 0, 0, Counter()]
        e[0] += requests
        e[1] += c5xx
        e[2] += c4xx
        e[3] += c429
    _apply_errors(plan.errors, agg)
    for key, (values, counts) in plan.hist.items():  # kept as a histogram: exact, and small
        part = (np.asarray(values, dtype=np.float64), np.asarray(counts, dtype=np.int64))
        agg.hist.setdefault(key, []).append(part)
    for rec, n in plan.others:
        for _ in range(n):
            agg.add(rec)
        events += n
    return Done(lines=0, events=events, malformed=plan.malformed)


def _apply_errors(errors: list[tuple[Any, ...]], agg: Any) -> None:
    """Errors per type as ``_Agg._add_error`` keeps them: lines, one per correlation ID (or
    per line without one), first and last time, endpoints; 5xx kinds per endpoint. Each
    group is one (type, endpoint, 5xx kind, correlation ID)."""
    for key, m, r, routed, kind, cid, n, tmin, tmax in errors:
        first, last = _when(tmin), _when(tmax)
        e = agg.err.get(key)
        if e is None:
            e = agg.err[key] = [0, 0, first, last, Counter(), set()]
        if not cid:
            e[0] += n
        elif cid not in e[5]:
            e[0] += 1
            e[5].add(cid)
        e[1] += n
        e[2] = first if e[2] is None or first < e[2] else e[2]
        e[3] = last if e[3] is None or last > e[3] else e[3]
        if routed:
            e[4][f"{m} {r}"] += n
        if kind is not None:
            agg.ep[(m, r)][4][kind] += n


def _samples(src: Any, malformed: set[str], count: int) -> list[str]:
    """The first malformed lines in file order, as the Python reader reports them."""
    want = min(count, _SAMPLES)
    out: list[str] = []
    for line in src.opener():
        if line in malformed:
            out.append(f"{src.name}: {line[:300]}")
            if len(out) >= want:
                break
    return out
