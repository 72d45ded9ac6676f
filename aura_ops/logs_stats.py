"""Aggregations over log events, in memory (pandas) and streamed (:func:`summarize_file`).

The two paths give the same tables: errors by type, requests/5xx/4xx/429 by endpoint, exact
latency percentiles (linear interpolation, as ``Series.quantile``) and the error timeline.
Streaming keeps counters per error type, endpoint and time bucket, the set of correlation IDs
seen with an error, and the request durations -- as 8-byte floats in the Python engine (~8 MB
per million requests), as (distinct value, count) histograms in the DuckDB engine (exact all
the same: :func:`hist_quantiles`); no line or record is kept.
"""

from __future__ import annotations

import dataclasses
import math
import re
from array import array
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from .logs_engine import ReadStats, iter_events, resolve_sources, to_utc
from .logs_formats import LogFormat

__all__ = [
    "LogSummary",
    "auto_freq",
    "endpoint_table",
    "error_table",
    "error_timeline",
    "fmt_delay",
    "fmt_ts",
    "hist_quantiles",
    "latency_percentiles",
    "summarize_file",
    "with_error_keys",
]

_ERROR_LEVELS = ("ERROR", "CRITICAL")
_MASK = re.compile(r"0x[0-9a-fA-F]+|\b[0-9a-fA-F-]{8,}\b|\d+")
_STEPS_S = (
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
    172800,
    604800,
)


def fmt_ts(ts: Any) -> str:
    """``2026-11-23 23:30:01Z`` (UTC, seconds)."""
    if ts is None or pd.isna(ts):
        return "?"
    return pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%SZ")


def fmt_delay(seconds: float) -> str:
    """``4 s``, ``2 min 5 s``, ``3 h 10 min``."""
    s = int(round(seconds))
    if abs(s) < 60:
        return f"{s} s"
    if abs(s) < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {(s % 3600) // 60} min"


def mask_message(message: Any) -> str:
    """A message with numbers and hex IDs masked, as an error type for untyped errors."""
    if message is None or (isinstance(message, float) and math.isnan(message)):
        return "(no message)"
    return _MASK.sub("N", str(message))[:80]


def auto_freq(start: Any, end: Any, *, target: int = 60) -> str:
    """A bucket size giving at most ``target`` (and usually > target/2.5) buckets, >= 1 s."""
    span = (pd.Timestamp(end) - pd.Timestamp(start)).total_seconds() if start is not None else 0
    step = next((s for s in _STEPS_S if span / s <= target), _STEPS_S[-1])
    if step % 86400 == 0:
        return f"{step // 86400}D"
    if step % 3600 == 0:
        return f"{step // 3600}h"
    return f"{step // 60}min" if step % 60 == 0 else f"{step}s"


def _is_error(df: pd.DataFrame) -> pd.Series:
    lvl = df["level"].isin(_ERROR_LEVELS)
    st = (df["status"] >= 500).fillna(False).astype(bool)
    return (lvl | st).astype(bool)


def with_error_keys(events: pd.DataFrame) -> pd.DataFrame:
    """The error rows of ``events`` with an ``error_key`` column (type, or masked message)."""
    err = events[_is_error(events)].copy()
    keys = [
        et if isinstance(et, str) and et else mask_message(msg)
        for et, msg in zip(err["error_type"], err["message"], strict=True)
    ]
    err["error_key"] = pd.Series(keys, index=err.index, dtype="object")
    return err


def _endpoint(df: pd.DataFrame) -> pd.Series:
    return df["method"].fillna("?").astype(str) + " " + df["route"].fillna("?").astype(str)


def _route_text(counts: Counter[str]) -> str:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(ranked) == 1:
        return ranked[0][0]
    return ", ".join(f"{k} ×{n}" for k, n in ranked[:3]) + (" …" if len(ranked) > 3 else "")


_ERR_COLS = ["error_type", "count", "lines", "routes", "first_seen", "last_seen"]


def error_table(events: pd.DataFrame) -> pd.DataFrame:
    """Errors by type: ``count`` (one per correlation ID), ``lines``, ``routes``, first/last."""
    err = with_error_keys(events)
    if err.empty:
        return pd.DataFrame(columns=_ERR_COLS)
    occ = err["correlation_id"].where(err["correlation_id"].notna(), "#" + err.index.astype(str))
    dedup = err.assign(_occ=occ).drop_duplicates(["error_key", "_occ"])
    routed = err[err["route"].notna()]
    route_counts = _endpoint(routed).groupby(routed["error_key"]).agg(lambda s: Counter(s))
    g = err.groupby("error_key")
    table = pd.DataFrame(
        {
            "count": dedup.groupby("error_key").size(),
            "lines": g.size(),
            "first_seen": g["ts"].min(),
            "last_seen": g["ts"].max(),
        }
    )
    table["routes"] = [_route_text(route_counts.get(k, Counter())) for k in table.index]
    return _rank_errors(table.rename_axis("error_type").reset_index())


def _text_cols(table: pd.DataFrame, cols: Sequence[str]) -> None:
    for col in cols:
        table[col] = table[col].astype("str")


def _rank_errors(table: pd.DataFrame) -> pd.DataFrame:
    _text_cols(table, ("error_type", "routes"))
    table = table.sort_values(["count", "error_type"], ascending=[False, True], kind="stable")
    table[["count", "lines"]] = table[["count", "lines"]].astype("int64")
    return table[_ERR_COLS].reset_index(drop=True)


_EP_COLS = [
    "endpoint",
    "method",
    "route",
    "requests",
    "errors_5xx",
    "error_ratio",
    "errors_4xx",
    "rate_limited",
    "ratio_4xx",
    "top_error",
]


def _top_error(counts: Counter[str]) -> str:
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0] if counts else ""


def endpoint_table(events: pd.DataFrame) -> pd.DataFrame:
    """Requests by endpoint with 5xx, 4xx, 429 counts and ratios, worst (most 5xx) first."""
    req = events[events["status"].notna()]
    if req.empty:
        return pd.DataFrame(columns=_EP_COLS)
    st = req["status"].astype("int64")
    ep = _endpoint(req)
    e5 = req[st >= 500]
    kinds = e5["error_type"].where(e5["error_type"].notna(), "HTTP " + st[st >= 500].astype(str))
    tops = kinds.groupby(ep[st >= 500]).agg(lambda s: _top_error(Counter(s)))
    table = pd.DataFrame(
        {
            "method": req["method"].fillna("?").groupby(ep).first(),
            "route": req["route"].fillna("?").groupby(ep).first(),
            "requests": ep.groupby(ep).size(),
            "errors_5xx": (st >= 500).groupby(ep).sum(),
            "errors_4xx": ((st >= 400) & (st < 500)).groupby(ep).sum(),
            "rate_limited": (st == 429).groupby(ep).sum(),
        }
    )
    table["top_error"] = [tops.get(k, "") for k in table.index]
    return _rank_endpoints(table.rename_axis("endpoint").reset_index())


def _rank_endpoints(table: pd.DataFrame) -> pd.DataFrame:
    _text_cols(table, ("endpoint", "method", "route", "top_error"))
    for col in ("requests", "errors_5xx", "errors_4xx", "rate_limited"):
        table[col] = table[col].astype("int64")
    table["error_ratio"] = table["errors_5xx"] / table["requests"]
    table["ratio_4xx"] = table["errors_4xx"] / table["requests"]
    table = table.sort_values(
        ["errors_5xx", "error_ratio", "endpoint"], ascending=[False, False, True], kind="stable"
    )
    return table[_EP_COLS].reset_index(drop=True)


def _qname(q: float) -> str:
    return f"p{q * 100:g}_ms"


def latency_percentiles(
    events: pd.DataFrame,
    by: Sequence[str] = ("method", "route"),
    q: Sequence[float] = (0.5, 0.95, 0.99),
) -> pd.DataFrame:
    """Exact latency percentiles (ms) per group: ``count``, ``p50_ms`` ..., ``max_ms``.

    Rows without ``duration_ms`` are ignored; sorted slowest (highest last quantile) first.
    """
    by = list(by)
    rows = events[events["duration_ms"].notna()]
    cols = [*by, "count", *[_qname(x) for x in q], "max_ms"]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    keys = [rows[c].fillna("?").astype(str) for c in by]
    g = rows["duration_ms"].astype("float64").groupby(keys)
    table = pd.DataFrame({"count": g.size()})
    for x in q:
        table[_qname(x)] = g.quantile(x)
    table["max_ms"] = g.max()
    return _rank_latency(table.reset_index(), cols)


def _rank_latency(table: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    _text_cols(table, cols[: cols.index("count")])
    table["count"] = table["count"].astype("int64")
    last = cols[-2]
    table = table.sort_values(
        [last, *cols[: cols.index("count")]],
        ascending=[False] + [True] * cols.index("count"),
        kind="stable",
    )
    return table[cols].reset_index(drop=True)


_TL_COLS = ["ts", "events", "requests", "errors", "errors_4xx", "error_lines", "error_ratio"]


def error_timeline(events: pd.DataFrame, *, freq: str | None = None) -> pd.DataFrame:
    """Per time bucket: events, requests, errors (5xx), 4xx, ERROR lines and the 5xx ratio.

    ``freq`` (``"1min"``, ``"10s"``) defaults to :func:`auto_freq` of the window (30–60
    buckets, at least 1 s). Empty buckets are kept (zero counts, ratio NaN); ``attrs["freq"]``.
    """
    rows = events[events["ts"].notna()]
    if rows.empty:
        out = pd.DataFrame(columns=_TL_COLS)
        out.attrs["freq"] = freq or "1min"
        return out
    freq = freq or auto_freq(rows["ts"].min(), rows["ts"].max())
    bucket = rows["ts"].dt.floor(freq)
    st = rows["status"]
    parts = (
        pd.DataFrame(
            {
                "events": 1,
                "requests": st.notna().astype("int64"),
                "errors": (st >= 500).fillna(False).astype("int64"),
                "errors_4xx": ((st >= 400) & (st < 500)).fillna(False).astype("int64"),
                "error_lines": rows["level"].isin(_ERROR_LEVELS).astype("int64"),
            },
            index=rows.index,
        )
        .groupby(bucket)
        .sum()
    )
    return _finish_timeline(parts, freq)


def _finish_timeline(parts: pd.DataFrame, freq: str) -> pd.DataFrame:
    full = pd.date_range(parts.index.min(), parts.index.max(), freq=freq)
    parts = parts.reindex(full, fill_value=0).astype("int64")
    parts["error_ratio"] = parts["errors"] / parts["requests"].where(parts["requests"] > 0)
    out = parts.rename_axis("ts").reset_index()[_TL_COLS]
    out.attrs["freq"] = freq
    return out


# --------------------------------------------------------------------------- streaming


@dataclasses.dataclass
class LogSummary:
    """What :func:`summarize_file` found; the tables match the in-memory helpers'."""

    error_types: pd.DataFrame
    endpoints: pd.DataFrame
    latency: pd.DataFrame
    timeline: pd.DataFrame
    lines: int
    events: int
    malformed: int
    formats: dict[str, str]
    first_seen: datetime | None
    last_seen: datetime | None
    #: which reader aggregated the sources: "python", "duckdb" or "mixed" (see ``engine=``)
    engine: str = "python"


class _Agg:
    """Per-record counters; memory grows with error types, endpoints, buckets and requests."""

    def __init__(self, step_s: float) -> None:
        self.step_s = step_s
        self.err: dict[str, list[Any]] = {}  # key -> [count, lines, first, last, routes, cids]
        self.ep: dict[tuple[str, str], list[Any]] = {}  # -> [req, 5xx, 4xx, 429, Counter]
        self.dur: dict[tuple[str, str], array[float]] = {}
        #: durations as (distinct values, counts) -- the DuckDB engine's histograms: memory
        #: grows with distinct durations, not with requests
        self.hist: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]] = {}
        self.tl: dict[int, list[int]] = {}  # bucket -> events, requests, 5xx, 4xx, error lines
        self.first: datetime | None = None
        self.last: datetime | None = None

    def add(self, r: dict[str, Any]) -> None:
        get = r.get
        ts, status, level = r["ts"], get("status"), get("level")
        key = (get("method") or "?", get("route") or "?")
        err_line = level in _ERROR_LEVELS
        if err_line or (status is not None and status >= 500):
            self._add_error(r, ts, key)
        if status is not None:
            e = self.ep.get(key)
            if e is None:
                e = self.ep[key] = [0, 0, 0, 0, Counter()]
            e[0] += 1
            if status >= 500:
                e[1] += 1
                e[4][get("error_type") or f"HTTP {status}"] += 1
            elif status >= 400:
                e[2] += 1
                e[3] += status == 429
        dur = get("duration_ms")
        if dur is not None:
            d = self.dur.get(key)
            if d is None:
                d = self.dur[key] = array("d")
            d.append(dur)
        if ts is not None:
            self._add_bucket(ts, status, err_line)

    def _add_error(self, r: dict[str, Any], ts: Any, endpoint: tuple[str, str]) -> None:
        key = r.get("error_type") or mask_message(r.get("message"))
        e = self.err.get(key)
        if e is None:
            e = self.err[key] = [0, 0, ts, ts, Counter(), set()]
        cid = r.get("correlation_id")
        if not cid or cid not in e[5]:
            e[0] += 1
            if cid:
                e[5].add(cid)
        e[1] += 1
        if ts is not None:
            e[2] = ts if e[2] is None or ts < e[2] else e[2]
            e[3] = ts if e[3] is None or ts > e[3] else e[3]
        if r.get("route") is not None:
            e[4][f"{endpoint[0]} {endpoint[1]}"] += 1

    def _add_bucket(self, ts: datetime, status: int | None, err_line: bool) -> None:
        if self.first is None or ts < self.first:
            self.first = ts
        if self.last is None or ts > self.last:
            self.last = ts
        b = int(ts.timestamp() // self.step_s)
        t = self.tl.get(b)
        if t is None:
            t = self.tl[b] = [0, 0, 0, 0, 0]
        t[0] += 1
        if status is not None:
            t[1] += 1
            t[2] += status >= 500
            t[3] += 400 <= status < 500
        t[4] += err_line


def _histogram(
    raw: array[float] | None, parts: list[tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values (ascending) and their counts, from raw values and histograms."""
    values = [np.asarray(v, dtype=np.float64) for v, _ in parts]
    counts = [np.asarray(c, dtype=np.int64) for _, c in parts]
    if raw is not None and len(raw):
        v, c = np.unique(np.frombuffer(raw, dtype=np.float64), return_counts=True)
        values.append(v)
        counts.append(c)
    merged, inverse = np.unique(np.concatenate(values), return_inverse=True)
    return merged, np.bincount(inverse, weights=np.concatenate(counts)).astype(np.int64)


def hist_quantiles(values: np.ndarray, counts: np.ndarray, q: Sequence[float]) -> list[float]:
    """``np.quantile(np.repeat(values, counts), q)`` (linear, bit for bit) without repeating:
    ``values`` ascending and distinct, ``counts`` positive. Memory grows with distinct values."""
    cum = np.cumsum(counts)
    n = int(cum[-1])
    out = []
    for x in np.asarray(q, dtype=np.float64):
        v = (n - 1) * x  # numpy's virtual index for "linear", and its interpolation below
        lo = int(np.floor(v))
        t = v - lo
        lo, hi = (n - 1, n - 1) if v >= n - 1 else (max(lo, 0), max(lo, 0) + 1)
        a = values[np.searchsorted(cum, lo, side="right")]
        b = values[np.searchsorted(cum, hi, side="right")]
        diff = b - a
        out.append(float(b - diff * (1 - t) if t >= 0.5 else a + diff * t))
    return out


def _agg_tables(agg: _Agg, freq: str, q: Sequence[float]) -> dict[str, pd.DataFrame]:
    err = pd.DataFrame(
        [(k, e[0], e[1], _route_text(e[4]), e[2], e[3]) for k, e in agg.err.items()],
        columns=["error_type", "count", "lines", "routes", "first_seen", "last_seen"],
    )
    for col in ("first_seen", "last_seen"):
        err[col] = pd.to_datetime(err[col], utc=True)
    ep = pd.DataFrame(
        [
            (f"{m} {r}", m, r, e[0], e[1], e[2], e[3], _top_error(e[4]))
            for (m, r), e in agg.ep.items()
        ],
        columns=[
            "endpoint",
            "method",
            "route",
            "requests",
            "errors_5xx",
            "errors_4xx",
            "rate_limited",
            "top_error",
        ],
    )
    cols = ["method", "route", "count", *[_qname(x) for x in q], "max_ms"]
    rows = []
    for key in {**agg.dur, **agg.hist}:
        values, counts = _histogram(agg.dur.get(key), agg.hist.get(key, []))
        rows.append((*key, int(counts.sum()), *hist_quantiles(values, counts, q), values[-1]))
    lat = pd.DataFrame(rows, columns=cols)
    tables = {
        "error_types": _rank_errors(err) if len(err) else error_table(_EMPTY),
        "endpoints": _rank_endpoints(ep) if len(ep) else endpoint_table(_EMPTY),
        "latency": _rank_latency(lat, cols) if len(lat) else pd.DataFrame(columns=cols),
    }
    if agg.tl:
        idx = pd.to_datetime([b * agg.step_s for b in agg.tl], unit="s", utc=True)
        parts = pd.DataFrame(
            list(agg.tl.values()),
            index=idx,
            columns=["events", "requests", "errors", "errors_4xx", "error_lines"],
        )
        tables["timeline"] = _finish_timeline(parts.sort_index(), freq)
    else:
        tables["timeline"] = error_timeline(_EMPTY, freq=freq)
    return tables


_EMPTY = pd.DataFrame(
    {
        c: pd.Series(dtype="object")
        for c in ("level", "message", "error_type", "correlation_id", "method", "route")
    }
).assign(
    ts=pd.Series(dtype="datetime64[us, UTC]"),
    status=pd.Series(dtype="Int64"),
    duration_ms=pd.Series(dtype="float64"),
)


def summarize_file(
    paths: Any,
    *,
    fmt: str | LogFormat = "auto",
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    freq: str = "1min",
    q: Sequence[float] = (0.5, 0.95, 0.99),
    include_rotated: bool = False,
    engine: str = "auto",
) -> LogSummary:
    """Stream logs of any size once into errors by type, endpoints, latency and timeline.

    Nothing is materialised: memory grows with the number of error types, endpoints, time
    buckets and requests (8 bytes each, for exact percentiles), not with the file size.
    ``engine="auto"`` reads JSON-lines and plain-text files of 4 MiB or more with DuckDB when
    it is installed (several times faster; :mod:`aura_ops.logs_duckdb`, same answers), the
    rest in Python;
    ``"python"`` never uses DuckDB; ``"duckdb"`` requires it. ``LogSummary.engine`` says which
    ran. Raises SourceUnavailableError when a source cannot be read.
    """
    step = pd.Timedelta(freq).total_seconds()
    if step <= 0:
        raise ValueError(f"freq must be positive, got {freq!r}")
    from .logs_duckdb import AUTO_MIN_BYTES, engine_for

    duck = engine_for(engine)
    min_bytes = AUTO_MIN_BYTES if engine == "auto" else 0
    start, end = to_utc(since), to_utc(until)
    stats = ReadStats()
    agg = _Agg(step)
    used: set[str] = set()
    for src in resolve_sources(paths, include_rotated=include_rotated):
        lf = duck.format_of(src, fmt, min_bytes=min_bytes) if duck is not None else None
        if lf is not None:
            done = duck.summarize_source(src, lf, agg, step_s=step, since=start, until=end)
            if done is not None:
                stats.sources.append(src.name)
                stats.formats[src.name] = lf.name
                stats.lines += done.lines
                stats.events += done.events
                stats.malformed += done.malformed
                stats.malformed_samples += done.samples[: 5 - len(stats.malformed_samples)]
                used.add("duckdb")
                continue
        for rec in iter_events(src, fmt=fmt, since=start, until=end, stats=stats):
            agg.add(rec)
        used.add("python")
    tables = _agg_tables(agg, freq, q)
    return LogSummary(
        **tables,
        lines=stats.lines,
        events=stats.events,
        malformed=stats.malformed,
        formats=stats.formats,
        first_seen=agg.first,
        last_seen=agg.last,
        engine=used.pop() if len(used) == 1 else "mixed" if used else "python",
    )
