"""Read Prometheus data: direct ``/metrics`` scrapes and the Prometheus HTTP API.

Everything here does I/O, returns pandas DataFrames and raises typed errors
(:mod:`aura_ops.errors`); judging the numbers is :mod:`aura_ops.metrics`' job.

* :func:`scrape` -- GET a ``/metrics`` exposition, one row per sample.
* :func:`query`, :func:`query_range` -- ``/api/v1/query`` and ``/api/v1/query_range``, one row
  per sample (``ts``, ``value`` as float incl. NaN/±Inf, one column per label);
  ``df.attrs`` keeps ``query``, ``result_type``, ``warnings`` and ``infos``.
* :func:`fetch_targets`, :func:`fetch_buildinfo`, :func:`fetch_ready` -- server state.

Works with Prometheus 2.42 (Debian 12) and 3.x. How failures map to errors::

    refused, DNS, reset, TLS                       SourceUnavailableError
    no answer within timeout_s                     SourceTimeoutError
    HTTP 401/403/429/5xx, an answer that is not Prometheus JSON     SourceUnavailableError
    other HTTP 4xx; errorType bad_data/execution/not_found/...      QueryError
    errorType timeout                              SourceTimeoutError
    errorType canceled/unavailable/internal        SourceUnavailableError
    an exposition that does not parse              QueryError
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import time as _time
from collections.abc import Mapping
from typing import Any

import httpx
import pandas as pd
from prometheus_client.parser import text_string_to_metric_families

from aura_ops.errors import ConfigError, QueryError, SourceTimeoutError, SourceUnavailableError

__all__ = [
    "fetch_buildinfo",
    "fetch_ready",
    "fetch_targets",
    "parse_exposition",
    "query",
    "query_range",
    "redact_url",
    "scrape",
]

_MAX_BODY_BYTES = 64 * 1024 * 1024
_SCRAPE_ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
_QUERY_ERRORS = {"bad_data", "execution", "not_found", "not_acceptable"}
_UNAVAILABLE_ERRORS = {"canceled", "unavailable", "internal"}
_RESERVED_COLUMNS = {"name", "labels", "value", "type", "ts"}

TimeLike = dt.datetime | float | int | str


def redact_url(url: str) -> str:
    """``url`` without a password: ``http://user:pw@host`` → ``http://***@host``."""
    return re.sub(r"//[^/@\s]+@", "//***@", str(url))


def _snippet(body: bytes, limit: int = 200) -> str:
    text = body[:limit].decode("utf-8", errors="replace").strip().replace("\n", " ")
    return text + ("…" if len(body) > limit else "")


def _http_get(
    url: str, *, params: Mapping[str, str] | None = None, timeout_s: float, accept: str = "*/*"
) -> tuple[int, bytes]:
    """GET ``url`` within ``timeout_s`` (connect, each read, and the whole body)."""
    shown = redact_url(url)
    deadline = _time.monotonic() + timeout_s
    try:
        with (
            httpx.Client(timeout=timeout_s, follow_redirects=True) as client,
            client.stream("GET", url, params=params, headers={"Accept": accept}) as resp,
        ):
            chunks: list[bytes] = []
            size = 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if _time.monotonic() > deadline:
                    raise httpx.ReadTimeout("body not complete within the timeout")
                if size > _MAX_BODY_BYTES:
                    raise SourceUnavailableError(
                        f"{shown} answered more than {_MAX_BODY_BYTES} bytes", source=shown
                    )
                chunks.append(chunk)
            return resp.status_code, b"".join(chunks)
    except httpx.TimeoutException as exc:
        raise SourceTimeoutError(
            f"{shown} did not answer within {timeout_s:g} s ({type(exc).__name__})",
            source=shown,
            hint="The endpoint is hanging or overloaded; check the process and the network path.",
        ) from exc
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise ConfigError(f"bad URL {shown!r}: {exc}", source=shown) from exc
    except httpx.HTTPError as exc:
        raise SourceUnavailableError(
            f"{shown} unreachable: {type(exc).__name__}: {exc or 'no detail'}",
            source=shown,
            hint="Is the process running and listening on that address?",
        ) from exc


def _status_error(status: int, shown: str, body: bytes, what: str) -> Exception:
    """The typed error for an HTTP answer that is not the expected document."""
    detail = f"{shown} answered HTTP {status}: {_snippet(body)!r}"
    if status in (401, 403):
        return SourceUnavailableError(
            f"{detail} (forbidden)", source=shown, hint="Check the credentials / network policy."
        )
    if status == 429 or status >= 500 or status < 400:
        hint = f"Is this really {what}?" if status < 400 else "The source is failing or overloaded."
        return SourceUnavailableError(detail, source=shown, hint=hint)
    if status == 404:
        return SourceUnavailableError(detail, source=shown, hint=f"Is the URL right for {what}?")
    return QueryError(detail, source=shown)


# --------------------------------------------------------------------------- direct scrape


def parse_exposition(text: str, *, source: str = "") -> pd.DataFrame:
    """Parse a Prometheus text exposition into one row per sample.

    Columns: ``name`` (sample name, e.g. ``x_total``, ``x_bucket``), ``labels`` (dict),
    ``value`` (float), ``type`` (the family's type), then one column per label name (a label
    named like one of those columns stays only in ``labels``). Raises :class:`QueryError` when
    the text does not parse.
    """
    rows: list[dict[str, Any]] = []
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = dict(sample.labels)
                row: dict[str, Any] = {
                    "name": sample.name,
                    "labels": labels,
                    "value": float(sample.value),
                    "type": family.type,
                }
                row.update({k: v for k, v in labels.items() if k not in _RESERVED_COLUMNS})
                rows.append(row)
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise QueryError(
            f"{source or 'the answer'} is not a Prometheus exposition: {exc}",
            source=source,
            hint="Point the URL at the service's /metrics endpoint.",
        ) from exc
    if not rows:
        return pd.DataFrame({"name": [], "labels": [], "value": [], "type": []})
    return pd.DataFrame(rows)


def scrape(url: str, *, timeout_s: float = 5.0) -> pd.DataFrame:
    """GET a ``/metrics`` exposition and parse it (see :func:`parse_exposition` for columns).

    ``df.attrs`` holds ``url`` (password redacted) and ``scraped_at`` (UTC). Raises
    :class:`SourceUnavailableError` (down, refusing, HTTP error), :class:`SourceTimeoutError`
    (hanging) or :class:`QueryError` (an answer that is not an exposition).
    """
    shown = redact_url(url)
    status, body = _http_get(url, timeout_s=timeout_s, accept=_SCRAPE_ACCEPT)
    if status != 200:
        raise _status_error(status, shown, body, "a /metrics endpoint")
    text = body.decode("utf-8", errors="replace")
    if text.lstrip().startswith(("<", "{", "[")):  # HTML or JSON, not an exposition
        raise QueryError(
            f"{shown} is not a Prometheus exposition: starts with {_snippet(body, 60)!r}",
            source=shown,
            hint="Point the URL at the service's /metrics endpoint.",
        )
    df = parse_exposition(text, source=shown)
    df.attrs.update(url=shown, scraped_at=dt.datetime.now(dt.UTC))
    return df


# --------------------------------------------------------------------------- HTTP API


def _prom_time(value: TimeLike) -> str:
    """A Prometheus API time parameter: unix seconds or RFC3339 (strings pass through)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return f"{value.timestamp():.3f}"
    if isinstance(value, (int, float)):
        return f"{float(value):.3f}"
    return str(value)


def _api_error(payload: Mapping[str, Any], status: int, shown: str, promql: str) -> Exception:
    kind = str(payload.get("errorType") or "")
    text = str(payload.get("error") or "no error text")
    msg = f"Prometheus {shown} rejected {promql or 'the request'!r}: {kind or status}: {text}"
    if kind == "timeout":
        return SourceTimeoutError(msg, source=promql, hint="Narrow the query or the window.")
    if kind in _UNAVAILABLE_ERRORS or (not kind and status >= 500):
        return SourceUnavailableError(msg, source=promql, hint="Prometheus is unhealthy.")
    if kind in _QUERY_ERRORS or 400 <= status < 500:
        return QueryError(msg, source=promql, hint="Check the PromQL syntax and label names.")
    return SourceUnavailableError(msg, source=promql, hint=f"Unexpected errorType {kind!r}.")


def _api_get(
    prom_url: str, path: str, params: Mapping[str, str], *, timeout_s: float
) -> dict[str, Any]:
    """GET a Prometheus API path and return the success envelope, or raise a typed error."""
    url = prom_url.rstrip("/") + path
    shown = redact_url(url)
    status, body = _http_get(url, params=params, timeout_s=timeout_s, accept="application/json")
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict) or "status" not in payload:
        raise _status_error(status, shown, body, "the Prometheus base URL")
    if payload["status"] != "success":
        raise _api_error(payload, status, shown, params.get("query", ""))
    return payload


def _sample_rows(result_type: str, result: Any) -> list[dict[str, Any]]:
    """Flatten a ``data.result`` into one dict per sample (``ts``, ``value``, labels...)."""
    if result_type in ("scalar", "string"):
        t, v = result
        return [{"ts": float(t), "value": float(v) if result_type == "scalar" else v}]
    rows: list[dict[str, Any]] = []
    for item in result or ():
        labels = dict(item.get("metric") or {})
        if "value" in item or "histogram" in item:
            points = [item["value"]] if "value" in item else []
            hists = [item["histogram"]] if "histogram" in item else []
        else:
            points, hists = item.get("values") or [], item.get("histograms") or []
        for t, v in points:
            rows.append({"ts": float(t), "value": float(v), **labels})
        for t, h in hists:  # native histograms: no float value, keep the object
            rows.append({"ts": float(t), "value": math.nan, "histogram": h, **labels})
    return rows


def _result_frame(payload: Mapping[str, Any], promql: str, shown: str) -> pd.DataFrame:
    data = payload.get("data") or {}
    result_type = str(data.get("resultType", ""))
    try:
        rows = _sample_rows(result_type, data.get("result"))
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise SourceUnavailableError(
            f"{shown} answered an unreadable {result_type or 'result'}: {exc}", source=promql
        ) from exc
    if rows:
        df = pd.DataFrame(rows)
        df["ts"] = pd.to_datetime((df["ts"] * 1000).round().astype("int64"), unit="ms", utc=True)
        labels = sorted(c for c in df.columns if c not in ("ts", "value", "histogram"))
        extra = ["histogram"] if "histogram" in df.columns else []
        df = df[["ts", "value", *labels, *extra]]
    else:
        df = pd.DataFrame({"ts": pd.Series([], dtype="datetime64[ns, UTC]"), "value": []})
        df["value"] = df["value"].astype(float)
    df.attrs.update(
        query=promql,
        url=shown,
        result_type=result_type,
        warnings=list(payload.get("warnings") or []),
        infos=list(payload.get("infos") or []),
    )
    return df


def _timeout_param(timeout_s: float) -> str:
    """Ask Prometheus to give up a little before we do, so its own error comes back."""
    return f"{max(timeout_s * 0.9, 0.1):.3f}"


def query(
    prom_url: str, promql: str, *, time: TimeLike | None = None, timeout_s: float = 10.0
) -> pd.DataFrame:
    """Run an instant query (``/api/v1/query``): one row per sample.

    Columns ``ts`` (UTC), ``value`` (float; NaN/±Inf kept), then one column per label.
    ``df.attrs``: ``query``, ``url``, ``result_type``, ``warnings``, ``infos``.
    """
    params = {"query": promql, "timeout": _timeout_param(timeout_s)}
    if time is not None:
        params["time"] = _prom_time(time)
    payload = _api_get(prom_url, "/api/v1/query", params, timeout_s=timeout_s)
    return _result_frame(payload, promql, redact_url(prom_url))


def query_range(
    prom_url: str,
    promql: str,
    start: TimeLike,
    end: TimeLike,
    step: str | float,
    *,
    timeout_s: float = 10.0,
) -> pd.DataFrame:
    """Run a range query (``/api/v1/query_range``): one row per (series, timestamp).

    Same columns and attrs as :func:`query`; ``step`` is seconds or a duration (``"15s"``).
    """
    params = {
        "query": promql,
        "start": _prom_time(start),
        "end": _prom_time(end),
        "step": f"{step:g}" if isinstance(step, (int, float)) else str(step),
        "timeout": _timeout_param(timeout_s),
    }
    payload = _api_get(prom_url, "/api/v1/query_range", params, timeout_s=timeout_s)
    return _result_frame(payload, promql, redact_url(prom_url))


def fetch_targets(prom_url: str, *, timeout_s: float = 5.0) -> pd.DataFrame:
    """Active scrape targets from ``/api/v1/targets``: one row per target.

    Columns: ``job``, ``instance``, ``health`` (``up``/``down``/``unknown``), ``last_error``,
    ``last_scrape``, ``last_scrape_duration_s``, ``scrape_url``, ``scrape_pool``.
    """
    payload = _api_get(prom_url, "/api/v1/targets", {"state": "active"}, timeout_s=timeout_s)
    rows = []
    for t in (payload.get("data") or {}).get("activeTargets") or ():
        labels = t.get("labels") or {}
        rows.append(
            {
                "job": labels.get("job", ""),
                "instance": labels.get("instance", ""),
                "health": t.get("health", "unknown"),
                "last_error": t.get("lastError", ""),
                "last_scrape": pd.to_datetime(t.get("lastScrape"), utc=True, errors="coerce"),
                "last_scrape_duration_s": float(t.get("lastScrapeDuration") or 0.0),
                "scrape_url": redact_url(t.get("scrapeUrl", "")),
                "scrape_pool": t.get("scrapePool", ""),
            }
        )
    columns = ["job", "instance", "health", "last_error", "last_scrape"]
    columns += ["last_scrape_duration_s", "scrape_url", "scrape_pool"]
    return pd.DataFrame(rows, columns=columns)


def fetch_buildinfo(prom_url: str, *, timeout_s: float = 5.0) -> dict[str, Any]:
    """``/api/v1/status/buildinfo``: ``{"version": "2.42.0", "revision": ..., ...}``."""
    payload = _api_get(prom_url, "/api/v1/status/buildinfo", {}, timeout_s=timeout_s)
    return dict(payload.get("data") or {})


def fetch_ready(prom_url: str, *, timeout_s: float = 5.0) -> str:
    """GET ``/-/ready``; returns its text when ready, raises SourceUnavailableError if not."""
    url = prom_url.rstrip("/") + "/-/ready"
    status, body = _http_get(url, timeout_s=timeout_s)
    if status != 200:
        raise _status_error(status, redact_url(url), body, "Prometheus")
    return body.decode("utf-8", errors="replace").strip()
