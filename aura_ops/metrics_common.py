"""Shared plumbing for :mod:`aura_ops.metrics` and :mod:`aura_ops.metrics_resources`.

Pure helpers (durations, Prometheus' histogram interpolation, formatting) and the two ways of
reading a counter: its ``increase()`` in Prometheus, or the difference between two direct
scrapes. :func:`from_sources` turns every failure into an UNKNOWN finding.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ParamSpec

import numpy as np
import pandas as pd

from aura_ops import prometheus as prom
from aura_ops.errors import AuraOpsError, ConfigError, QueryError
from aura_ops.findings import Evidence, Finding, Status, unknown
from aura_ops.prometheus import redact_url, scrape

__all__ = ["bucket_quantile", "duration_s", "histogram_quantile"]

_DURATION_RE = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_DURATION_UNITS_S = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)
_LABEL_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --------------------------------------------------------------------------- small pure helpers


def duration_s(window: str) -> float:
    """Seconds in a Prometheus duration (``"5m"`` → 300.0, ``"1h30m"``); ConfigError if bad."""
    match = _DURATION_RE.match(str(window).strip())
    if not match or not any(match.groups()):
        raise ConfigError(f"bad duration {window!r}", hint='Use a Prometheus duration like "5m".')
    return float(
        sum(int(g or 0) * u for g, u in zip(match.groups(), _DURATION_UNITS_S, strict=True))
    )


def _pct(ratio: float) -> str:
    value = ratio * 100
    if value >= 9.5 or value == round(value):
        return f"{value:.0f} %"
    return f"{value:.1f} %"


def _ms(value_ms: float) -> str:
    return f"{value_ms:.0f} ms" if value_ms >= 100 else f"{value_ms:.1f} ms"


def _count(value: float, estimated: bool) -> str:
    return f"≈{value:.0f}" if estimated else f"{value:.0f}"


def _reproduce(func: Callable[..., Any], **kwargs: Any) -> str:
    """A one-line call with the arguments that differ from the defaults (URLs redacted)."""
    params = inspect.signature(func).parameters
    parts = []
    for key, value in kwargs.items():
        if key in params and params[key].default == value:
            continue
        shown = redact_url(value) if isinstance(value, str) and "://" in value else value
        parts.append(f"{key}={shown!r}")
    return f"{func.__name__}({', '.join(parts)})"


def _selector(name: str, *matchers: str) -> str:
    inner = ",".join(m.strip().strip("{}") for m in matchers if m and m.strip().strip("{}"))
    return f"{name}{{{inner}}}" if inner else name


def _check_label(name: str) -> str:
    if not _LABEL_NAME_RE.match(name):
        raise ConfigError(f"bad label name {name!r}")
    return name


def _endpoint(row: Any, keys: Sequence[str]) -> str:
    return " ".join(str(row[k]) for k in keys if str(row[k]) not in ("", "nan")) or "(no labels)"


def bucket_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> tuple[float, bool]:
    """Prometheus' ``histogram_quantile`` over ``(upper_bound, cumulative_count)`` pairs.

    Returns ``(value, in_top_bucket)``; when the quantile falls in the ``+Inf`` bucket the value
    is the largest finite bound and the truth is "≥ value". NaN for no observations, fewer than
    two buckets or a missing ``+Inf`` bucket, as Prometheus does.
    """
    pairs = sorted((float(b), float(c)) for b, c in buckets)
    if len(pairs) < 2 or not math.isinf(pairs[-1][0]) or not 0 <= q <= 1:
        return math.nan, False
    counts = []
    for _, c in pairs:  # force monotonic cumulative counts, like Prometheus
        counts.append(max(c, counts[-1]) if counts else c)
    total = counts[-1]
    if total <= 0:
        return math.nan, False
    rank = q * total
    b = next(i for i, c in enumerate(counts) if c >= rank)
    if b == len(pairs) - 1:
        return pairs[-2][0], True
    if b == 0 and pairs[0][0] <= 0:
        return pairs[0][0], False
    start = 0.0 if b == 0 else pairs[b - 1][0]
    below = 0.0 if b == 0 else counts[b - 1]
    in_bucket = counts[b] - below
    return start + (pairs[b][0] - start) * ((rank - below) / in_bucket), False


def histogram_quantile(df: pd.DataFrame, q: float, by: Sequence[str]) -> pd.DataFrame:
    """Quantile per group from bucket rows (columns ``by``, ``le``, ``value`` = cumulative).

    Returns ``by`` + ``quantile`` (same unit as ``le``), ``observations`` and ``top_bucket``.
    """
    rows = []
    keys = list(by)
    groups = df.groupby(keys, sort=True, dropna=False) if keys else [((), df)]
    for key, part in groups:
        pairs = [(float(le), float(v)) for le, v in zip(part["le"], part["value"], strict=True)]
        value, top = bucket_quantile(q, pairs)
        total = max((v for le, v in pairs if math.isinf(le)), default=math.nan)
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(keys, key, strict=True)), "quantile": value})
        rows[-1].update(observations=total, top_bucket=top)
    return pd.DataFrame(rows, columns=[*keys, "quantile", "observations", "top_bucket"])


# --------------------------------------------------------------------------- reading counters


def _sum_by(
    df: pd.DataFrame, name: str, keys: Sequence[str], shown: str, optional: Sequence[str] = ()
) -> pd.DataFrame:
    """Sum the scraped samples called ``name`` by label ``keys``; QueryError if absent.

    A key in ``optional`` that no sample carries is an empty string instead of an error.
    """
    part = df[df["name"] == name] if len(df) else df
    if part.empty:
        names = sorted({str(n) for n in df.get("name", ())})
        close = [n for n in names if name.split("_")[0] in n][:8] or names[:8]
        raise QueryError(f"no {name} samples at {shown} (found e.g. {close})", source=shown)
    missing = [k for k in keys if k not in part.columns and k not in optional]
    if missing:
        labels = sorted({k for d in part["labels"] for k in d})
        raise QueryError(f"{name} at {shown} has no label {missing} (labels: {labels})")
    part = part.assign(**{k: part[k].fillna("").astype(str) if k in part else "" for k in keys})
    return part.groupby(list(keys), as_index=False)["value"].sum() if keys else part[["value"]]


def _scrape_increase(
    url: str,
    name: str,
    keys: Sequence[str],
    *,
    interval_s: float,
    timeout_s: float,
    optional: Sequence[str] = (),
) -> tuple[pd.DataFrame, str, str, bool]:
    """Per-``keys`` increase of a counter between two scrapes ``interval_s`` apart.

    Returns ``(frame, scope, source, cumulative)``; when nothing moved between the scrapes (or
    ``interval_s`` is 0) the frame holds the counters since process start and ``scope`` says so.
    """
    shown = redact_url(url)
    first = scrape(url, timeout_s=timeout_s) if interval_s > 0 else None
    if first is not None:
        time.sleep(interval_s)
    after = _sum_by(scrape(url, timeout_s=timeout_s), name, keys, shown, optional)
    if first is None:
        return after, "since process start", f"GET {shown}", True
    source = f"GET {shown} twice, {interval_s:g} s apart"
    has_name = (first["name"] == name).any()
    before = _sum_by(first, name, keys, shown, optional) if has_name else None
    merged = after.assign(before=0.0)
    if before is not None and keys:
        merged = after.merge(before, on=list(keys), how="left", suffixes=("", "_b"))
        merged["before"] = merged.pop("value_b").fillna(0.0)
    elif before is not None:
        merged["before"] = float(before["value"].sum())
    inc = merged["value"] - merged["before"]
    inc = inc.where(inc >= 0, merged["value"])  # a counter reset: the process restarted
    if float(inc.sum()) <= 0:
        scope = f"since process start, as nothing moved in the {interval_s:g} s between scrapes"
        return after, scope, source, True
    return merged.assign(value=inc).drop(columns="before"), f"in {interval_s:g} s", source, False


def _prom_increase(
    prom_url: str,
    name: str,
    keys: Sequence[str],
    *,
    selector: str,
    window: str,
    timeout_s: float,
    optional: Sequence[str] = (),
) -> tuple[pd.DataFrame, str]:
    """``sum by (keys) (increase(name{selector}[window]))`` as a frame.

    QueryError when there is no series, or when no series has a key not in ``optional`` (a
    wrong label name must not read as "no errors").
    """
    duration_s(window)
    promql = f"sum by ({', '.join(keys)}) (increase({_selector(name, selector)}[{window}]))"
    df = prom.query(prom_url, promql, timeout_s=timeout_s)
    df = df[df["value"].notna()]
    if df.empty:
        raise QueryError(
            f"no {_selector(name, selector)} series in Prometheus over the last {window}",
            source=promql,
            hint="Is the service scraped (check_targets) and the metric name right?",
        )
    missing = [
        k for k in keys if k not in optional and (k not in df or (df[k].fillna("") == "").all())
    ]
    if missing:
        raise QueryError(
            f"{_selector(name, selector)} series have no label {missing}",
            source=promql,
            hint="Pass the label names your instrumentation uses (route_label=, status_label=).",
        )
    return df.assign(**{k: df[k].fillna("").astype(str) if k in df else "" for k in keys}), promql


Runner = Callable[[dict[str, Any], str], list[Finding]]


def _run(
    check: str,
    func: Callable[..., Any],
    args: dict[str, Any],
    from_prometheus: Runner,
    from_scrape: Runner | None,
    *,
    reproduce: str | None = None,
) -> list[Finding]:
    """Run a check's Prometheus and/or scrape variant with its arguments ``args``."""
    reproduce = reproduce if reproduce is not None else _reproduce(func, **args)
    return _from_sources(
        check,
        reproduce,
        prometheus_url=args.get("prometheus_url"),
        metrics_url=args.get("metrics_url"),
        from_prometheus=lambda: from_prometheus(args, reproduce),
        from_scrape=(lambda: from_scrape(args, reproduce)) if from_scrape else None,
    )


P = ParamSpec("P")


def _guarded(check: str) -> Callable[[Callable[P, list[Finding]]], Callable[P, list[Finding]]]:
    """Make a ``check_*`` total: anything it raises becomes one UNKNOWN finding.

    Wrong arguments (a ``TypeError`` from binding them) still raise: that is a bug to see.
    """

    def decorate(func: Callable[P, list[Finding]]) -> Callable[P, list[Finding]]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> list[Finding]:
            bound = inspect.signature(func).bind(*args, **kwargs)
            try:
                return func(*args, **kwargs)
            except Exception as exc:
                reason: str | Exception = exc.one_line() if isinstance(exc, AuraOpsError) else exc
                reproduce = _reproduce(func, **bound.arguments)
                return [unknown(check, "arguments", reason, reproduce=reproduce)]

        return wrapper

    return decorate


def _from_sources(
    check: str,
    reproduce: str,
    *,
    prometheus_url: str | None,
    metrics_url: str | None,
    from_prometheus: Callable[[], list[Finding]],
    from_scrape: Callable[[], list[Finding]] | None,
) -> list[Finding]:
    """Ask Prometheus, else/also the direct scrape; every failure becomes an UNKNOWN finding."""
    attempts: list[tuple[str, Callable[[], list[Finding]]]] = []
    if prometheus_url:
        attempts.append((f"Prometheus {redact_url(prometheus_url)}", from_prometheus))
    if metrics_url and from_scrape is not None:
        attempts.append((redact_url(metrics_url), from_scrape))
    if not attempts:
        reason = "no source given: pass prometheus_url= or metrics_url="
        return [unknown(check, "metrics", reason, reproduce=reproduce)]
    findings: list[Finding] = []
    for subject, attempt in attempts:
        try:
            return findings + attempt()
        except AuraOpsError as exc:
            reason = exc.one_line()
            findings.append(unknown(check, subject, reason, source=exc.source, reproduce=reproduce))
        except Exception as exc:  # an unexpected shape must not stop the runbook
            findings.append(unknown(check, subject, exc, reproduce=reproduce))
    return findings


# --------------------------------------------------------------------------- per-series checks

_GIB = 1024**3
_MIB = 1024**2
_NOT_LABELS = {"ts", "value", "histogram", "__name__", "name", "labels", "type"}

Judge = Callable[[Any], tuple[Status, str]]


def _bytes(n: float) -> str:
    if abs(n) >= _GIB:
        return f"{n / _GIB:.2f} GiB"
    return f"{n / _MIB:.0f} MiB"


def _with_series(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``series``: ``job/instance`` when present, else the labels as ``k=v``."""
    labels = sorted(c for c in df.columns if c not in _NOT_LABELS)

    def name(row: Any) -> str:
        values = {k: row[k] for k in labels if isinstance(row[k], str) and row[k]}
        if "job" in values and "instance" in values:
            rest = [f"{k}={v}" for k, v in values.items() if k not in ("job", "instance")]
            return " ".join([f"{values['job']}/{values['instance']}", *rest])
        return ", ".join(f"{k}={v}" for k, v in values.items()) or "(no labels)"

    return df.assign(series=[name(r) for _, r in df.iterrows()] if len(df) else [])


def _prom_values(prom_url: str, promql: str, timeout_s: float) -> pd.Series:
    """An instant query as ``series → value``; QueryError when empty."""
    df = prom.query(prom_url, promql, timeout_s=timeout_s)
    df = df[df["value"].notna()]
    if df.empty:
        raise QueryError(f"no series for {promql!r} in Prometheus", source=promql)
    return _with_series(df).groupby("series")["value"].sum()


def _scraped(url: str, name: str, timeout_s: float) -> pd.Series:
    """A scraped metric as ``series → value`` (series = its labels, or the URL)."""
    df = scrape(url, timeout_s=timeout_s)
    df = df[df["name"] == name] if len(df) else df
    if df.empty:
        raise QueryError(f"no {name} samples at {redact_url(url)}", source=redact_url(url))
    df = _with_series(df.drop(columns=["labels"]))
    df["series"] = df["series"].replace("(no labels)", redact_url(url))
    return df.groupby("series")["value"].sum()


def _series_findings(
    check: str, table: pd.DataFrame, judge: Judge, *, title: str, ok_text: str, common: Any
) -> list[Finding]:
    """``judge(row) → (status, text)`` per series: a finding per bad series, one OK for the rest."""
    evidence = Evidence.table(table, title)
    bad: list[Finding] = []
    fine: list[str] = []
    for _, row in table.iterrows():
        status, text = judge(row)
        if status <= Status.INFO:
            fine.append(f"{row['series']} {text}")
            continue
        bad.append(
            Finding(
                check=check,
                subject=row["series"],
                status=status,
                summary=f"{row['series']}: {text}",
                observed=row.get("observed"),
                expected=common["expected"],
                evidence=(evidence,),
                source=common["source"],
                hint=common["hint"],
                reproduce=common["reproduce"],
            )
        )
    bad.sort(key=lambda f: -int(f.status))
    if fine:
        more = f" (+{len(fine) - 5} more)" if len(fine) > 5 else ""
        bad.append(
            Finding(
                check=check,
                subject=common["subject"],
                status=Status.OK,
                summary=f"{ok_text}: {'; '.join(fine[:5])}{more}",
                expected=common["expected"],
                evidence=(evidence,),
                source=common["source"],
                reproduce=common["reproduce"],
            )
        )
    return bad


def _level(value: float, warn: float | None, crit: float | None) -> Status:
    if crit is not None and value > crit:
        return Status.CRITICAL
    if warn is not None and value > warn:
        return Status.WARNING
    return Status.OK


def _prom_optional(prom_url: str, promql: str, timeout_s: float) -> pd.Series:
    try:
        return _prom_values(prom_url, promql, timeout_s)
    except QueryError as exc:
        if "no series" in str(exc):
            return pd.Series(dtype=float)
        raise


def _table(**columns: pd.Series) -> pd.DataFrame:
    """Align ``series → value`` Series into one table with a ``series`` column."""
    frame = pd.DataFrame(columns)
    frame.index.name = "series"
    return frame.reset_index()


_MIN_COVERAGE = 0.5


def _prom_trend(prom_url: str, sel: str, window: str, timeout_s: float) -> tuple[pd.DataFrame, str]:
    """Per series over ``window``: ``last`` value, least-squares ``slope_per_s`` and ``coverage``.

    One range query (about 120 points). The slope is what ``deriv()`` computes; it is NaN when
    the data covers less than half the window (a young series would extrapolate wildly).
    """
    window_s = duration_s(window)
    end = time.time()
    step = max(1.0, round(window_s / 120))
    source = f"query_range({sel}, last {window}, step {step:g}s) -- slope as deriv({sel}[{window}])"
    df = prom.query_range(prom_url, sel, end - window_s, end, step, timeout_s=timeout_s)
    df = _with_series(df[df["value"].notna()])
    if df.empty:
        raise QueryError(
            f"no series for {sel!r} in Prometheus over the last {window}", source=source
        )
    rows = []
    for series, part in df.groupby("series", sort=True):
        t = (part["ts"] - part["ts"].min()).dt.total_seconds().to_numpy()
        v = part["value"].to_numpy(dtype=float)
        coverage = float(t.max()) / window_s if len(t) else 0.0
        slope = float(np.polyfit(t, v, 1)[0]) if len(t) >= 3 else math.nan
        rows.append(
            {
                "series": series,
                "last": float(v[-1]),
                "min": float(v.min()),
                "max": float(v.max()),
                "slope_per_s": slope if coverage >= _MIN_COVERAGE else math.nan,
                "coverage": round(min(coverage, 1.0), 2),
            }
        )
    return pd.DataFrame(rows), source
