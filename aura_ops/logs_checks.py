"""Judging log events: error types, failing endpoints, new errors since a change, latency.

Every ``check_*`` here takes an events DataFrame (from :func:`aura_ops.logs.read_events`) and
returns ``list[Finding]``; provenance (``source``, ``reproduce``) comes from the frame's
``attrs["query"]`` unless ``source`` is given. No events to judge is UNKNOWN, never OK.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import pandas as pd

from .findings import Evidence, Finding, Status, unknown
from .logs_engine import describe_paths, to_utc
from .logs_stats import (
    endpoint_table,
    error_table,
    fmt_delay,
    fmt_ts,
    latency_percentiles,
    with_error_keys,
)

__all__ = [
    "check_error_types",
    "check_errors_since",
    "check_failing_endpoints",
    "check_latency",
    "nothing_read",
]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


@dataclasses.dataclass(frozen=True)
class _Ctx:
    """What every finding of one check call shares: subject, provenance, reproduce."""

    subject: str
    source: str
    reproduce: str

    @classmethod
    def of(cls, events: pd.DataFrame, source: str, call: str) -> _Ctx:
        query = str(events.attrs.get("query", "events"))
        subject = str(events.attrs.get("subject", "log events"))
        where = source if isinstance(source, str) else describe_paths(source)
        return cls(subject, where or query, call.replace("{q}", query))

    def finding(self, check: str, status: Status, summary: str, **kw: Any) -> Finding:
        return Finding(
            check, self.subject, status, summary, source=self.source, reproduce=self.reproduce, **kw
        )

    def nothing(self, check: str, events: pd.DataFrame, what: str) -> list[Finding]:
        """UNKNOWN: nothing to judge (never OK), naming a read error or malformed lines."""
        hint = "Nothing to judge: widen the window or check the path/format."
        bad = int(events.attrs.get("malformed", 0))
        extra = f" ({bad} malformed lines skipped: wrong fmt?)" if bad else ""
        reason = f"no {what} in the logs read{extra}" if len(events) else nothing_read(events)
        if events.attrs.get("error"):
            hint = "Fix the path or access."
        return [
            unknown(
                check,
                self.subject,
                reason,
                source=self.source,
                reproduce=self.reproduce,
                hint=hint,
            )
        ]


def nothing_read(events: pd.DataFrame) -> str:
    """Why an events frame holds nothing to judge: the read error, the malformed lines (a
    corrupt log or the wrong format), or an empty window -- the reason of an UNKNOWN."""
    if events.attrs.get("error"):
        return f"logs unreadable: {events.attrs['error']}"
    bad = int(events.attrs.get("malformed", 0))
    if bad:
        return f"none of the lines read could be parsed ({bad} malformed: corrupt, or wrong fmt?)"
    lines = int(events.attrs.get("lines", 0))
    if lines:
        return (f"none of the {lines} lines read has a readable time in the window (an old, "
                "corrupt or foreign-format log?)")  # fmt: skip
    return "no log lines to judge (an empty log, or the wrong path?)"


def _samples(rows: pd.DataFrame, n: int = 5) -> list[str]:
    out = []
    for r in rows.head(n).itertuples(index=False):
        cid = f" [{r.correlation_id}]" if r.correlation_id else ""
        out.append(f"{fmt_ts(r.ts)} {r.level or '-'} {r.source or '-'}{cid} {r.message}")
    return out


def _malformed(events: pd.DataFrame) -> tuple[Evidence, ...]:
    """Evidence of skipped lines, so a wrong format or corrupt log is visible."""
    bad = int(events.attrs.get("malformed", 0))
    if not bad:
        return ()
    samples = events.attrs.get("malformed_samples") or []
    return (Evidence.text(samples, f"{bad} malformed lines skipped (first {len(samples)})"),)


def _span(events: pd.DataFrame) -> str:
    ts = events["ts"].dropna()
    return "no timestamps" if ts.empty else f"{fmt_ts(ts.min())} – {fmt_ts(ts.max())}"


def check_error_types(
    events: pd.DataFrame,
    *,
    source: str = "",
    top: int = 10,
    warn_count: int = 1,
    crit_count: int = 20,
) -> list[Finding]:
    """Errors ranked by type (seed 000's ``grep ERROR | cut | sort | uniq -c | sort -rn``).

    The summary names the top type, its count, the routes it hits and first/last seen; the
    evidence holds the ranking and sample lines. Status from the total number of errors.
    """
    ctx = _Ctx.of(
        events,
        source,
        f"check_error_types({{q}}, top={top}, warn_count={warn_count}, crit_count={crit_count})",
    )
    if events.empty:
        return ctx.nothing("logs.error_types", events, "log events")
    table = error_table(events)
    total = int(table["count"].sum())
    expected = f"< {warn_count} errors"
    if total == 0:
        summary = f"No errors in {len(events)} log events ({_span(events)})"
        return [ctx.finding("logs.error_types", Status.OK, summary, observed=0, expected=expected)]
    t = table.iloc[0]
    where = f" on {t['routes']}" if t["routes"] else ""
    summary = (
        f"{total} errors of {len(table)} type{'s' if len(table) != 1 else ''}; "
        f"top: {t['error_type']} ×{t['count']}"
        f"{where} (first {fmt_ts(t['first_seen'])}, last {fmt_ts(t['last_seen'])})"
    )
    rows = with_error_keys(events)
    evidence = (
        Evidence.table(table.head(top), f"errors by type (top {top})"),
        Evidence.text(
            _samples(rows[rows["error_key"] == t["error_type"]]), f"sample {t['error_type']} lines"
        ),
        *_malformed(events),
    )
    status = Status.CRITICAL if total >= crit_count else Status.WARNING
    return [
        ctx.finding(
            "logs.error_types",
            status if total >= warn_count else Status.OK,
            summary,
            observed=total,
            expected=expected,
            evidence=evidence,
            labels={"top_type": t["error_type"]},
            hint="trace() one correlation ID of the top type to see where it fails",
        )
    ]


def _endpoint_status(row: Any, warn: float, crit: float, min_requests: int) -> Status:
    if row.errors_5xx == 0 or row.error_ratio < warn:
        return Status.OK
    st = Status.CRITICAL if row.error_ratio >= crit else Status.WARNING
    return min(st, Status.WARNING) if row.requests < min_requests else st


def check_failing_endpoints(
    events: pd.DataFrame,
    *,
    source: str = "",
    error_ratio_warn: float = 0.01,
    error_ratio_crit: float = 0.05,
    min_requests: int = 5,
) -> list[Finding]:
    """Endpoints (method + route) ranked by HTTP 5xx, with 4xx and 429 rate limiting apart.

    One finding for the failing endpoints (naming the worst, its 5xx ratio and dominant error
    type), one for client errors / rate limiting when present, one OK finding listing the
    healthy endpoints. Endpoints under ``min_requests`` requests are at most WARNING.
    """
    ctx = _Ctx.of(
        events,
        source,
        f"check_failing_endpoints({{q}}, error_ratio_warn="
        f"{error_ratio_warn}, error_ratio_crit={error_ratio_crit}, "
        f"min_requests={min_requests})",
    )
    table = endpoint_table(events)
    if table.empty:
        return ctx.nothing("logs.failing_endpoints", events, "HTTP request lines (status)")
    table["status"] = [
        _endpoint_status(r, error_ratio_warn, error_ratio_crit, min_requests)
        for r in table.itertuples()
    ]
    failing = table[table["status"] > Status.OK]
    out = _failing_finding(ctx, events, table, failing, error_ratio_warn) if len(failing) else []
    out += _client_error_findings(ctx, table, error_ratio_warn, min_requests)
    healthy = table[table["status"] == Status.OK].drop(columns="status")
    if not healthy.empty:
        names = ", ".join(healthy["endpoint"].head(8)) + (" …" if len(healthy) > 8 else "")
        summary = f"{len(healthy)} endpoint(s) under {error_ratio_warn:.0%} 5xx: {names}"
        out.append(
            ctx.finding(
                "logs.healthy_endpoints",
                Status.OK,
                summary,
                observed=len(healthy),
                evidence=(Evidence.table(healthy, "healthy endpoints"),),
            )
        )
    return out


def _failing_finding(
    ctx: _Ctx, events: pd.DataFrame, table: pd.DataFrame, failing: pd.DataFrame, warn: float
) -> list[Finding]:
    w = failing.sort_values(["status", "errors_5xx", "error_ratio"], ascending=False).iloc[0]
    overall = table["errors_5xx"].sum() / table["requests"].sum()
    summary = (
        f"{w['endpoint']} fails {w['errors_5xx']}/{w['requests']} requests "
        f"({w['error_ratio']:.1%}), mostly {w['top_error']}; {len(failing)} failing "
        f"endpoint(s), overall 5xx ratio {overall:.1%}"
    )
    rows = events[(events["status"] >= 500).fillna(False).astype(bool)]
    rows = rows[(rows["method"].fillna("?") + " " + rows["route"].fillna("?")) == w["endpoint"]]
    evidence = (
        Evidence.table(failing.drop(columns="status"), "failing endpoints"),
        Evidence.text(_samples(rows), f"sample 5xx lines of {w['endpoint']}"),
    )
    return [
        ctx.finding(
            "logs.failing_endpoints",
            Status(int(failing["status"].max())),
            summary,
            observed=float(w["error_ratio"]),
            expected=f"5xx ratio < {warn:.0%}",
            evidence=evidence,
            hint=f"trace() a correlation ID of a failing {w['endpoint']} request",
            labels={"endpoint": w["endpoint"], "error_type": w["top_error"]},
        )
    ]


def _client_error_findings(
    ctx: _Ctx, table: pd.DataFrame, warn: float, min_requests: int
) -> list[Finding]:
    c4 = table[table["errors_4xx"] > 0].sort_values(["rate_limited", "errors_4xx"], ascending=False)
    if c4.empty:
        return []
    cols = ["endpoint", "requests", "errors_4xx", "rate_limited", "ratio_4xx"]
    ev = (Evidence.table(c4[cols], "endpoints with HTTP 4xx"),)
    limited = c4[c4["rate_limited"] > 0]
    if limited.empty:
        w = c4.iloc[0]
        summary = (
            f"{int(c4['errors_4xx'].sum())} HTTP 4xx (client errors) on {len(c4)} "
            f"endpoint(s); most on {w['endpoint']} ({w['errors_4xx']}/{w['requests']})"
        )
        return [
            ctx.finding(
                "logs.client_errors",
                Status.INFO,
                summary,
                observed=int(c4["errors_4xx"].sum()),
                evidence=ev,
            )
        ]
    w = limited.iloc[0]
    ratio = w["rate_limited"] / w["requests"]
    judged = limited[limited["requests"] >= min_requests]
    worst = (judged["rate_limited"] / judged["requests"]).max() if not judged.empty else 0.0
    summary = (
        f"Rate limiting: {int(limited['rate_limited'].sum())} HTTP 429 on "
        f"{len(limited)} endpoint(s); worst {w['endpoint']} {w['rate_limited']}/"
        f"{w['requests']} ({ratio:.1%})"
    )
    return [
        ctx.finding(
            "logs.rate_limited",
            Status.WARNING if worst >= warn else Status.INFO,
            summary,
            observed=float(ratio),
            expected=f"429 ratio < {warn:.0%}",
            evidence=ev,
            hint="Raise the rate limit or scale API instances (seed 000)",
        )
    ]


def _per_type(err: pd.DataFrame) -> pd.DataFrame:
    """Occurrences (one per correlation ID), first seen and dominant endpoint per error key."""
    if err.empty:
        return pd.DataFrame(columns=["n", "first", "endpoint"])
    occ = err["correlation_id"].where(err["correlation_id"].notna(), "#" + err.index.astype(str))
    d = err.assign(_occ=occ).drop_duplicates(["error_key", "_occ"])
    routed = d[d["route"].notna()]
    top_ep = (routed["method"].fillna("?") + " " + routed["route"]).groupby(routed["error_key"])
    top_ep = top_ep.agg(lambda s: s.value_counts().sort_index().idxmax())
    g = d.groupby("error_key")
    out = pd.DataFrame({"n": g.size(), "first": g["ts"].min()})
    out["endpoint"] = [top_ep.get(k, "") for k in out.index]
    return out


def _before_after(
    events: pd.DataFrame, at: datetime, rate_factor: float, warn_count: int
) -> tuple[pd.DataFrame, bool]:
    """Per error type after ``at``: counts after/before, first seen, and whether it is new."""
    ts = events["ts"].dropna()
    span_before = max((at - ts.min()).total_seconds(), 0.0)
    span_after = max((ts.max() - at).total_seconds(), 1.0)
    err = with_error_keys(events)
    before, after = _per_type(err[err["ts"] < at]), _per_type(err[err["ts"] >= at])
    rows = []
    for key, a in after.sort_values("n", ascending=False, kind="stable").iterrows():
        nb = int(before["n"].get(key, 0))
        rate_b = nb / span_before if span_before > 0 else 0.0
        new = nb == 0 or (a["n"] / span_after) >= rate_factor * rate_b
        rows.append(
            {
                "error_type": key,
                "endpoint": a["endpoint"],
                "after": int(a["n"]),
                "before": nb,
                "first_after": a["first"],
                "new": bool(new and a["n"] >= warn_count),
            }
        )
    cols = ["error_type", "endpoint", "after", "before", "first_after", "new"]
    return pd.DataFrame(rows, columns=cols), span_before <= 0


def check_errors_since(
    events: pd.DataFrame,
    since: datetime | str,
    *,
    label: str = "",
    rate_factor: float = 5.0,
    warn_count: int = 1,
    crit_count: int = 20,
    top: int = 5,
    source: str = "",
) -> list[Finding]:
    """Errors new since a change (a deploy): types absent, or ``rate_factor`` x rarer, before.

    One finding per new type (the top ``top``), naming type, endpoint, delay and ``label``:
    "KeyError on POST /api/render started 4 s after deploy v2.4.1: 57 errors, 0 before".
    Types that occurred at a similar rate before give one INFO finding (not caused by it);
    no errors after the change is OK.
    """
    at = to_utc(since, name="since")
    if at is None:
        raise ValueError("check_errors_since() needs the time of the change")
    what = label or f"the change at {fmt_ts(at)}"
    ctx = _Ctx.of(
        events,
        source,
        f"check_errors_since({{q}}, {_iso(at)!r}, label={label!r}, rate_factor={rate_factor})",
    )
    ts = events["ts"].dropna()
    if ts.empty or ts.max() < at:
        return ctx.nothing("logs.errors_since", events, f"log events after {what}")
    table, no_baseline = _before_after(events, at, rate_factor, warn_count)
    if table.empty:
        summary = f"No errors after {what} ({int((ts >= at).sum())} events since {fmt_ts(at)})"
        return [
            ctx.finding(
                "logs.errors_since", Status.OK, summary, observed=0, expected="no new error types"
            )
        ]
    ev = Evidence.table(table, f"errors before/after {what}")
    out = [
        _new_error_finding(ctx, r, at, what, crit_count, no_baseline, ev)
        for r in table[table["new"]].head(top).to_dict("records")
    ]
    old = table[~table["new"]]
    if not old.empty:
        out.append(_old_errors_finding(ctx, old, what, ev))
    return out


def _old_errors_finding(ctx: _Ctx, old: pd.DataFrame, what: str, ev: Evidence) -> Finding:
    o = old.iloc[0]
    on = f" on {o['endpoint']}" if o["endpoint"] else ""
    more = f" (+{len(old) - 1} more types)" if len(old) > 1 else ""
    summary = (
        f"{o['error_type']}{on} already occurred before {what} "
        f"({o['before']} before, {o['after']} after){more}: not caused by it"
    )
    observed = int(old["after"].sum())
    return ctx.finding("logs.errors_since", Status.INFO, summary, observed=observed, evidence=(ev,))


def _new_error_finding(
    ctx: _Ctx,
    r: dict[str, Any],
    at: datetime,
    what: str,
    crit: int,
    no_baseline: bool,
    ev: Evidence,
) -> Finding:
    on = f" on {r['endpoint']}" if r["endpoint"] else ""
    seconds = (r["first_after"] - at).total_seconds()
    delay = "within a second" if seconds < 1 else f"{fmt_delay(seconds)}"
    verb = "started" if r["before"] == 0 else "surged"
    base = "; no log lines before it to compare with" if no_baseline else ""
    summary = (
        f"{r['error_type']}{on} {verb} {delay}{'' if seconds < 1 else ' after'}"
        f"{' of' if seconds < 1 else ''} {what}: "
        f"{r['after']} errors, {r['before']} before{base}"
    )
    return ctx.finding(
        "logs.errors_since",
        Status.CRITICAL if r["after"] >= crit else Status.WARNING,
        summary,
        observed=r["after"],
        expected=f"{r['before']} (as before {what})",
        evidence=(ev,),
        hint=f"Compare with {what}; roll back if it introduced {r['error_type']}",
        labels={"error_type": r["error_type"], "endpoint": r["endpoint"], "change": what},
    )


def check_latency(
    events: pd.DataFrame,
    *,
    p95_max_ms: float = 1000,
    p95_crit_ms: float | None = None,
    min_requests: int = 5,
    source: str = "",
) -> list[Finding]:
    """Endpoints whose p95 latency exceeds ``p95_max_ms`` (CRITICAL above ``p95_crit_ms``,
    default twice the maximum); an OK finding lists the others. Needs ``duration_ms``."""
    crit = p95_crit_ms if p95_crit_ms is not None else 2 * p95_max_ms
    ctx = _Ctx.of(
        events,
        source,
        f"check_latency({{q}}, p95_max_ms={p95_max_ms}, "
        f"p95_crit_ms={crit}, min_requests={min_requests})",
    )
    lat = latency_percentiles(events, q=(0.5, 0.95, 0.99))
    if lat.empty:
        return ctx.nothing("logs.latency", events, "request durations (duration_ms)")
    lat.insert(0, "endpoint", lat["method"] + " " + lat["route"])
    judged = lat[lat["count"] >= min_requests]
    slow = judged[judged["p95_ms"] > p95_max_ms].sort_values("p95_ms", ascending=False)
    expected = f"p95 <= {p95_max_ms:g} ms"
    out: list[Finding] = []
    if not slow.empty:
        out.append(_slow_finding(ctx, events, slow, p95_max_ms, crit))
    fine = lat[~lat.index.isin(slow.index)]
    if not fine.empty:
        few = int((fine["count"] < min_requests).sum())
        note = f" ({few} with < {min_requests} requests not judged)" if few else ""
        summary = f"{len(fine)} endpoint(s) with p95 <= {p95_max_ms:g} ms{note}"
        out.append(
            ctx.finding(
                "logs.latency_ok",
                Status.OK,
                summary,
                observed=float(fine["p95_ms"].max()),
                expected=expected,
                evidence=(Evidence.table(fine, "endpoint latency (ms)"),),
            )
        )
    return out


def _slow_finding(
    ctx: _Ctx, events: pd.DataFrame, slow: pd.DataFrame, max_ms: float, crit_ms: float
) -> Finding:
    w = slow.iloc[0]
    over = int((events["duration_ms"] > max_ms).sum())
    summary = (
        f"{w['endpoint']} p95 {w['p95_ms']:.0f} ms (p99 {w['p99_ms']:.0f} ms, "
        f"{w['count']} requests) > {max_ms:g} ms; {len(slow)} slow endpoint(s), "
        f"{over} requests over {max_ms:g} ms"
    )
    status = Status.CRITICAL if w["p95_ms"] > crit_ms else Status.WARNING
    evidence = (Evidence.table(slow, "slow endpoints (ms)"),)
    return ctx.finding(
        "logs.latency",
        status,
        summary,
        observed=float(w["p95_ms"]),
        expected=f"p95 <= {max_ms:g} ms",
        evidence=evidence,
    )
