"""Live connections: WebSocket handshakes with an Origin, and the broker behind them.

Seed 004 "WebSocket Connection Failures" names the usual causes: an Origin the CORS / allowed
origins list does not accept, the pub/sub broker (Redis) being down, a crashed worker, too many
connections. The checks here do what the seed asks an engineer to do by hand:

* :func:`check_websocket` -- a real handshake (HTTP/1.1 ``Upgrade``) with the web app's
  ``Origin`` header and a timeout, then the first frame: rejected (HTTP 403), accepted and
  closed at once (code 1011 ...), or working;
* :func:`check_broker` -- ``redis-cli ping`` over a plain socket: ``+PONG`` or not;
* :func:`check_websocket_logs` -- the service's WebSocket lines: handshakes rejected per
  Origin, connections closed because the broker was unavailable.

The WebSocket endpoint and the broker are the subjects of their checks, so refusing or hanging
is CRITICAL there (as for a health endpoint); unreadable logs are ``UNKNOWN``.
WebSockets are spoken with ``websocket-client`` (a dependency of the kubernetes client).
"""

from __future__ import annotations

import dataclasses
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
import websocket

from aura_ops.findings import Evidence, Finding, Status, unknown
from aura_ops.logs_checks import nothing_read
from aura_ops.prometheus import redact_url

__all__ = [
    "Handshake",
    "check_broker",
    "check_websocket",
    "check_websocket_logs",
    "fetch_handshake",
    "websocket_table",
]


@dataclasses.dataclass(frozen=True)
class Handshake:
    """One WebSocket attempt: HTTP status of the handshake, then the first frame or close."""

    url: str
    origin: str
    status_code: int | None
    latency_ms: float
    message: str | None = None
    close_code: int | None = None
    close_reason: str = ""
    body: str = ""
    error: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status_code == 101


def _first_frame(ws: websocket.WebSocket) -> tuple[str | None, int | None, str]:
    """The first text frame, or the close code and reason if the server closed instead."""
    try:
        opcode, data = ws.recv_data(control_frame=True)
    except websocket.WebSocketTimeoutException:
        return None, None, ""
    except websocket.WebSocketConnectionClosedException:
        return None, 1006, "connection dropped without a close frame"
    if opcode == websocket.ABNF.OPCODE_CLOSE:
        code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
        return None, code, data[2:].decode("utf-8", "replace")
    return data.decode("utf-8", "replace")[:500], None, ""


def fetch_handshake(url: str, *, origin: str = "", timeout_s: float = 5.0) -> Handshake:
    """Open a WebSocket to ``url`` with ``Origin: origin`` and read its first frame.

    Never raises for network or protocol errors: they are in ``error`` (no HTTP answer) or
    ``status_code`` (the handshake was answered but not upgraded).
    """
    ws = websocket.WebSocket()
    t0 = time.perf_counter()
    try:
        ws.connect(url, origin=origin or None, timeout=timeout_s)
        ms = (time.perf_counter() - t0) * 1000
        message, code, reason = _first_frame(ws)
        return Handshake(url, origin, 101, ms, message, code, reason)
    except websocket.WebSocketBadStatusException as exc:
        body = (exc.resp_body or b"")[:300].decode("utf-8", "replace")
        ms = (time.perf_counter() - t0) * 1000
        return Handshake(url, origin, exc.status_code, ms, body=body)
    except (websocket.WebSocketTimeoutException, TimeoutError):
        ms = (time.perf_counter() - t0) * 1000
        return Handshake(url, origin, None, ms, error=f"no answer within {timeout_s:g} s")
    except (OSError, websocket.WebSocketException) as exc:
        ms = (time.perf_counter() - t0) * 1000
        return Handshake(url, origin, None, ms, error=f"{type(exc).__name__}: {exc}")
    finally:
        ws.close(timeout=0.2)


def check_websocket(url: str, *, origin: str = "", timeout_s: float = 5.0) -> list[Finding]:
    """A real handshake with ``Origin: origin``: OK only when upgraded and not closed at once."""
    shown = redact_url(url)
    hs = fetch_handshake(url, origin=origin, timeout_s=timeout_s)
    who = f" for Origin {origin}" if origin else ""
    common: dict[str, Any] = dict(
        check="realtime.websocket",
        subject=shown,
        source=f"GET {shown} (Upgrade: websocket, Origin: {origin or '-'})",
        reproduce=f"check_websocket({shown!r}, origin={origin!r})",
        expected="HTTP 101 Switching Protocols, then messages",
        evidence=(Evidence.json(dataclasses.asdict(hs), "handshake"),),
    )
    if hs.status_code is None:
        summary = f"WebSocket endpoint {shown} not answering{who}: {hs.error}"
        return [Finding(status=Status.CRITICAL, summary=summary, **common)]
    if not hs.accepted:
        summary = f"WebSocket handshake to {shown} rejected{who}: HTTP {hs.status_code}"
        hint = (
            f"The server refuses this Origin: add {origin} to the allowed origins (CORS) and reload"
            if hs.status_code == 403
            else "Read the service's WebSocket logs for the rejection"
        )
        return [
            Finding(
                status=Status.CRITICAL,
                summary=summary,
                observed=hs.status_code,
                hint=hint,
                labels={"role": "cause"},
                **common,
            )
        ]
    if hs.close_code not in (None, 1000):
        reason = f" ({hs.close_reason})" if hs.close_reason else ""
        summary = f"WebSocket {shown} accepted{who} then closed {hs.close_code}{reason}"
        return [
            Finding(
                status=Status.CRITICAL,
                summary=summary,
                observed=hs.close_code,
                hint="The server gave up after accepting: check its backing broker",
                **common,
            )
        ]
    first = f"; first message {hs.message[:80]}" if hs.message else ""
    summary = f"WebSocket handshake OK{who} (101 in {hs.latency_ms:.0f} ms{first})"
    return [Finding(status=Status.OK, summary=summary, observed=101, **common)]


def _ping(url: str, timeout_s: float) -> bytes:
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "", parts.port or 6379), timeout_s) as s:
        s.settimeout(timeout_s)
        if parts.password:
            auth = [
                b"AUTH",
                *([parts.username.encode()] if parts.username else []),
                parts.password.encode(),
            ]
            s.sendall(
                b"".join(
                    [f"*{len(auth)}\r\n".encode()] + [b"$%d\r\n%s\r\n" % (len(a), a) for a in auth]
                )
            )
            s.recv(256)
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        return s.recv(256)


def check_broker(url: str, *, timeout_s: float = 5.0) -> list[Finding]:
    """``redis-cli ping``: the broker must answer ``PONG`` within ``timeout_s`` (seed 004)."""
    shown = redact_url(url)
    common: dict[str, Any] = dict(
        check="realtime.broker",
        subject=shown,
        source=f"PING {shown} (redis-cli ping)",
        reproduce=f"check_broker({shown!r})",
        expected="+PONG",
    )
    t0 = time.perf_counter()
    try:
        answer = _ping(url, timeout_s)
    except TimeoutError:
        summary = f"The broker {shown} is not answering PING within {timeout_s:g} s"
        return [
            Finding(
                status=Status.CRITICAL,
                summary=summary,
                labels={"role": "cause"},
                hint="Restart the broker or fall back to in-memory pub/sub",
                **common,
            )
        ]
    except OSError as exc:
        what = "connection refused" if isinstance(exc, ConnectionRefusedError) else str(exc)
        summary = f"The broker {shown} is down: {what}"
        return [
            Finding(
                status=Status.CRITICAL,
                summary=summary,
                labels={"role": "cause"},
                hint="Restart the broker (seed 004) or fall back to in-memory pub/sub",
                **common,
            )
        ]
    ms = (time.perf_counter() - t0) * 1000
    text = answer.decode("utf-8", "replace").strip()
    if text.startswith("+PONG"):
        return [
            Finding(
                status=Status.OK,
                summary=f"The broker {shown} answered PONG in {ms:.0f} ms",
                observed=text,
                **common,
            )
        ]
    if text.startswith("-"):
        return [
            Finding(
                status=Status.CRITICAL,
                summary=f"The broker {shown} answered {text[:80]}",
                observed=text,
                **common,
            )
        ]
    return [
        unknown(
            "realtime.broker",
            shown,
            f"answer not understood: {text[:60]!r}",
            source=common["source"],
            reproduce=common["reproduce"],
        )
    ]


def websocket_table(events: pd.DataFrame) -> pd.DataFrame:
    """WebSocket attempts per ``ws_outcome`` and Origin, with first/last time and a sample. Pure."""
    columns = ["ws_outcome", "ws_origin", "count", "first", "last", "sample"]
    if events.empty or "ws_outcome" not in events:
        return pd.DataFrame(columns=columns)
    ws = events[events["ws_outcome"].notna()].assign(
        ws_origin=lambda d: d.get("ws_origin", pd.Series("", index=d.index)).fillna("")
    )
    rows = [
        {
            "ws_outcome": outcome,
            "ws_origin": origin,
            "count": len(part),
            "first": part["ts"].min(),
            "last": part["ts"].max(),
            "sample": str(part["message"].iloc[-1])[:200],
        }
        for (outcome, origin), part in ws.groupby(["ws_outcome", "ws_origin"], sort=True)
    ]
    return pd.DataFrame(rows, columns=columns).sort_values(
        "count", ascending=False, ignore_index=True
    )


def check_websocket_logs(
    events: pd.DataFrame, *, source: str = "", failed_ratio_crit: float = 0.5
) -> list[Finding]:
    """Rejected handshakes and broker failures in the service's WebSocket log lines.

    Lines carry ``ws_outcome`` (``connected``, ``rejected``, ``broker_unavailable``) and
    ``ws_origin``. Any failure is a WARNING, CRITICAL when it is at least ``failed_ratio_crit``
    of all attempts.
    """
    src = f"{source or events.attrs.get('query', '') or 'events'} (lines with ws_outcome=…)"
    reproduce = f"check_websocket_logs(load_events({source!r}))"
    subject = f"WebSocket connections in {events.attrs.get('subject', 'logs')}"
    if events.attrs.get("error"):
        return [
            unknown(
                "realtime.logs", subject, events.attrs["error"], source=src, reproduce=reproduce
            )
        ]
    if events.empty:  # nothing read is no evidence of healthy connections
        return [
            unknown("realtime.logs", subject, nothing_read(events), source=src, reproduce=reproduce)
        ]
    table = websocket_table(events)
    total = int(table["count"].sum()) if len(table) else 0
    evidence = (Evidence.table(table, "WebSocket attempts by outcome and Origin"),)
    failed = table[table["ws_outcome"] != "connected"]
    if failed.empty:
        return [
            Finding(
                "realtime.logs",
                subject,
                Status.OK,
                f"{total} WebSocket connections, none rejected or dropped",
                evidence=evidence,
                source=src,
                reproduce=reproduce,
            )
        ]
    findings = []
    for row in failed.itertuples():
        status = Status.CRITICAL if row.count / total >= failed_ratio_crit else Status.WARNING
        what = {
            "rejected": f"WebSocket handshakes rejected for Origin {row.ws_origin or '(none)'}",
            "broker_unavailable": "WebSocket connections closed: broker unavailable",
        }.get(str(row.ws_outcome), f"WebSocket attempts {row.ws_outcome}")
        findings.append(
            Finding(
                "realtime.logs",
                subject,
                status,
                f"{row.count} of {total} {what} (since {row.first:%H:%M:%S})",
                observed=row.count,
                evidence=evidence,
                source=src,
                reproduce=reproduce,
                hint=str(row.sample),
            )
        )
    return sorted(findings, key=lambda f: -int(f.status))
