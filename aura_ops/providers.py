"""External providers (LLM, TTS): which calls fail, how, and does the API key still work?

Seed 000 "Circuit Breakers Tripped" and 004 "OpenAI API Failure". The breaker state itself is
read from ``/api/health/providers`` by :func:`aura_ops.health.check_providers`; this module adds
the two steps that name the cause:

* :func:`check_provider_calls` -- the service's log lines for provider calls (the seed's
  ``grep -i "rate_limit\\|quota"``), grouped per provider and outcome: HTTP 429
  ``rate_limit_exceeded``, 401 ``invalid_api_key``, timeouts, 5xx, rejected by an open circuit;
* :func:`check_provider_api` -- the seed's manual test, ``curl $PROVIDER/v1/models -H
  "Authorization: Bearer $OPENAI_API_KEY"``, with the key read from an environment variable
  whose *name* is the parameter. The key never appears in a finding.

For the provider API the provider is the subject: not answering is CRITICAL, like a health
endpoint. A missing key variable or unreadable logs give ``UNKNOWN``.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import httpx
import pandas as pd

from aura_ops.findings import Evidence, Finding, Status, unknown

__all__ = ["check_provider_api", "check_provider_calls", "provider_calls_table"]

_KEY = re.compile(r"sk-[A-Za-z0-9_*\-]+")
_CODE = re.compile(r"\b(\d{3}) ([a-z_]+)\b")
_CALLS_HINT = (
    "429: back off and reduce concurrency or raise the quota; 401: rotate the key; "
    "timeouts/5xx: provider outage, switch provider or enable offline mode (seed 004)"
)
_LABELS = {"circuit_open": "circuit open", "timeout": "timed out", "unreachable": "unreachable"}


def _redact(text: str) -> str:
    return _KEY.sub("sk-***", str(text))


def _label(outcome: str, error: str) -> str:
    if outcome in _LABELS:
        return _LABELS[outcome]
    m = _CODE.search(error or "")
    return f"{m.group(1)} {m.group(2)}" if m and m.group(1) == outcome else f"HTTP {outcome}"


def provider_calls_table(
    events: pd.DataFrame,
    *,
    provider_field: str = "provider",
    outcome_field: str = "provider_outcome",
) -> pd.DataFrame:
    """Provider calls per ``provider`` and outcome: ``calls``, ``first``/``last`` seen and a
    sample error. Outcome ``"200"`` is success. Pure."""
    columns = ["provider", "outcome", "label", "calls", "first", "last", "sample"]
    if events.empty or provider_field not in events or outcome_field not in events:
        return pd.DataFrame(columns=columns)
    calls = events[events[provider_field].notna()].copy()
    calls["outcome"] = calls[outcome_field].astype(str)
    err = calls["error"] if "error" in calls else calls["message"]
    calls["sample"] = err.fillna(calls["message"]).astype(str).map(_redact)
    rows = []
    for (provider, outcome), part in calls.groupby([provider_field, "outcome"], sort=True):
        sample = str(part["sample"].iloc[-1]) if outcome != "200" else ""
        rows.append(
            {
                "provider": provider,
                "outcome": outcome,
                "label": "ok" if outcome == "200" else _label(str(outcome), sample),
                "calls": len(part),
                "first": part["ts"].min(),
                "last": part["ts"].max(),
                "sample": sample[:240],
            }
        )
    return pd.DataFrame(rows, columns=columns).sort_values(
        ["provider", "calls"], ascending=[True, False], ignore_index=True
    )


def _provider_finding(
    provider: str, part: pd.DataFrame, a: dict[str, Any], evidence: Evidence
) -> Finding:
    total = int(part["calls"].sum())
    failed = part[part["outcome"] != "200"]
    # the provider's own answers first (the cause), then calls the open circuit refused
    failed = failed.assign(_open=failed["outcome"] == "circuit_open").sort_values(
        ["_open", "calls"], ascending=[True, False]
    )
    bad = int(failed["calls"].sum())
    ratio = bad / total if total else 0.0
    status = Status.OK
    if total >= a["min_calls"] and ratio >= a["error_ratio_crit"]:
        status = Status.CRITICAL
    elif total >= a["min_calls"] and ratio >= a["error_ratio_warn"]:
        status = Status.WARNING
    if bad:
        kinds = ", ".join(f"{r.label} ×{r.calls}" for r in failed.itertuples())
        first = failed.iloc[0]
        summary = f"{provider}: {bad} of {total} calls failed ({ratio:.0%}): {kinds}"
        if first["sample"]:
            summary += f" -- {first['sample'][:140]}"
    else:
        summary = f"{provider}: all {total} calls succeeded"
    return Finding(
        check="providers.calls",
        subject=f"provider/{provider}",
        status=status,
        summary=summary,
        observed=round(ratio, 4),
        expected=f"< {a['error_ratio_warn']:.0%} of calls failing",
        evidence=(evidence,),
        source=a["source"],
        reproduce=a["reproduce"],
        hint=_CALLS_HINT if status > Status.OK else "",
        labels={"role": "cause"} if status > Status.OK else {},
    )


def check_provider_calls(
    events: pd.DataFrame,
    *,
    source: str = "",
    provider_field: str = "provider",
    outcome_field: str = "provider_outcome",
    error_ratio_warn: float = 0.01,
    error_ratio_crit: float = 0.05,
    min_calls: int = 5,
) -> list[Finding]:
    """Failed provider calls in the logs, per provider, naming how they failed.

    ``events`` is a :func:`aura_ops.logs.load_events` frame; lines with a ``provider`` field
    are provider calls, ``provider_outcome`` is ``"200"``, the HTTP status, ``timeout``,
    ``unreachable`` or ``circuit_open``. The share of failed calls is judged against
    ``error_ratio_warn`` / ``error_ratio_crit`` (seed 004: error rate > 5 % is P0).
    """
    a = dict(locals())
    where = source or events.attrs.get("query", "") or "events"
    a["source"] = f"{where} (lines with {provider_field}=…)"
    a["reproduce"] = f"check_provider_calls(load_events({source!r}))"
    subject = f"provider calls in {events.attrs.get('subject', 'logs')}"
    if events.attrs.get("error"):
        return [
            unknown(
                "providers.calls",
                subject,
                events.attrs["error"],
                source=a["source"],
                reproduce=a["reproduce"],
            )
        ]
    table = provider_calls_table(events, provider_field=provider_field, outcome_field=outcome_field)
    if table.empty:
        reason = f"no provider calls ({provider_field}=…) in {len(events)} log lines"
        return [
            unknown(
                "providers.calls", subject, reason, source=a["source"], reproduce=a["reproduce"]
            )
        ]
    evidence = Evidence.table(table, "provider calls by outcome")
    findings = [
        _provider_finding(str(p), part, a, evidence)
        for p, part in table.groupby("provider", sort=True)
    ]
    return sorted(findings, key=lambda f: -int(f.status))


def _api_error(resp: httpx.Response) -> str:
    try:
        err = resp.json().get("error") or {}
    except (ValueError, AttributeError):
        err = {}
    if not isinstance(err, dict):  # {"error": "upstream unavailable"}
        err = {"message": str(err)}
    code = err.get("code") or err.get("type") or ""
    return _redact(f"{resp.status_code} {code}: {err.get('message', resp.text[:160])}".strip())


def _judge_api(
    resp: httpx.Response, latency_ms: float, name: str, key_env: str, latency_warn_ms: float
) -> tuple[Status, str]:
    if resp.status_code == 401:
        return Status.CRITICAL, f"{name} rejects the API key in ${key_env}: {_api_error(resp)}"
    if resp.status_code == 429:
        retry = resp.headers.get("retry-after")
        after = f" (Retry-After {retry} s)" if retry else ""
        return Status.WARNING, f"{name} is rate limiting the key in ${key_env}: " + _api_error(
            resp
        ) + after
    if resp.status_code >= 400:
        return Status.CRITICAL, f"{name} API failing: {_api_error(resp)}"
    if "json" not in resp.headers.get("content-type", ""):  # a proxy's or portal's HTML page
        ctype = resp.headers.get("content-type", "no content type")
        return Status.UNKNOWN, f"{name} API answered HTTP {resp.status_code} with {ctype}, not JSON"
    if latency_ms > latency_warn_ms:
        return Status.WARNING, f"{name} API slow: answered in {latency_ms:.0f} ms"
    return Status.OK, f"{name} API answers with the key in ${key_env} ({latency_ms:.0f} ms)"


def check_provider_api(
    provider_url: str,
    *,
    api_key_env: str = "OPENAI_API_KEY",
    name: str = "openai",
    path: str = "/v1/models",
    latency_warn_ms: float = 2000.0,
    timeout_s: float = 5.0,
) -> list[Finding]:
    """Call the provider with the key from ``$api_key_env`` (seed 004 "Test API manually").

    401 → CRITICAL (rotate the key), 429 → WARNING (rate limited, with Retry-After), other
    errors or no answer within ``timeout_s`` → CRITICAL, slower than ``latency_warn_ms`` →
    WARNING. A key that does not start with ``sk-`` is reported too (seed 004's check).
    """
    url = provider_url.rstrip("/") + path
    reproduce = f"check_provider_api({provider_url!r}, api_key_env={api_key_env!r})"
    common: dict[str, Any] = {
        "check": "providers.api",
        "subject": f"provider/{name}",
        "source": f"GET {url} -H 'Authorization: Bearer ${api_key_env}'",
        "reproduce": reproduce,
    }
    key = os.environ.get(api_key_env, "")
    if not key:
        return [
            unknown(
                "providers.api",
                f"provider/{name}",
                f"${api_key_env} is not set",
                source=common["source"],
                reproduce=reproduce,
            )
        ]
    t0 = time.perf_counter()
    try:
        with httpx.Client(timeout=timeout_s) as client:
            resp = client.get(url, headers={"Authorization": f"Bearer {key}"})
    except httpx.TimeoutException:
        summary = f"{name} API not answering within {timeout_s:g} s ({url})"
        return [Finding(status=Status.CRITICAL, summary=summary, **common)]
    except httpx.HTTPError as exc:
        summary = f"{name} API unreachable: {type(exc).__name__}: {_redact(str(exc))} ({url})"
        return [Finding(status=Status.CRITICAL, summary=summary, **common)]
    latency_ms = (time.perf_counter() - t0) * 1000
    status, summary = _judge_api(resp, latency_ms, name, api_key_env, latency_warn_ms)
    if not key.startswith("sk-"):
        status = max(status, Status.WARNING)
        summary += f"; ${api_key_env} does not start with sk-"
    return [
        Finding(
            status=status,
            summary=summary,
            observed=resp.status_code,
            expected=f"HTTP 200 within {latency_warn_ms:g} ms",
            evidence=(_answer_evidence(resp, latency_ms, url),),
            hint="Rotate the key and update the secret" if resp.status_code == 401 else "",
            **common,
        )
    ]


def _answer_evidence(resp: httpx.Response, latency_ms: float, url: str) -> Evidence:
    """The provider's answer: status, latency, rate-limit headers and the body, key redacted."""
    headers = {k: v for k, v in resp.headers.items() if k.startswith(("x-ratelimit", "retry"))}
    return Evidence.json(
        {
            "status_code": resp.status_code,
            "latency_ms": round(latency_ms, 1),
            "headers": headers,
            "body": _redact(resp.text[:600]),
        },
        f"GET {url}",
    )
