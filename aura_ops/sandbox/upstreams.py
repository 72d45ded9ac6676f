"""What the sandbox service calls out to: the LLM provider, customer webhooks, the broker.

Used inside the sandbox service process (:mod:`aura_ops.sandbox.service`); every call has a
timeout and every outcome is logged and counted, so the runbooks can find failures the way the
seeds do (``/api/health/providers``, ``grep webhook``, ``redis-cli ping``):

* :class:`ProviderClient` -- calls the provider's ``/v1/chat/completions`` through a
  :class:`CircuitBreaker`; ``/api/health/providers`` reports the breaker's real state and the
  error rate and latency of the last minute of calls.
* :class:`WebhookDispatcher` -- delivers ``job.completed`` webhooks from a queue with retries;
  exhausted retries increment ``aura_webhook_failures_total``.
* :func:`ping_broker` and :func:`serve_job_updates` -- the ``/ws/jobs`` WebSocket: the Origin
  check, then a ``PING`` to the broker that backs live updates.

Where each part lives comes from environment variables the sandbox sets
(:data:`PROVIDER_URL_ENV`, :data:`PROVIDER_KEY_ENV`, :data:`WEBHOOK_URL_ENV`,
:data:`BROKER_URL_ENV`); a part that is not configured is simply not called.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import hmac
import json
import os
import queue
import socket
import threading
import time
from typing import Any, Protocol
from urllib.parse import urlsplit

import anyio
import httpx
from prometheus_client import CollectorRegistry, Counter
from starlette.websockets import WebSocket, WebSocketDisconnect

__all__ = [
    "ALLOWED_ORIGINS",
    "BROKER_URL_ENV",
    "PROVIDER_KEY_ENV",
    "PROVIDER_URL_ENV",
    "WEBHOOK_URL_ENV",
    "CircuitBreaker",
    "CircuitOpenError",
    "ProviderClient",
    "ProviderError",
    "Upstreams",
    "WebhookDispatcher",
    "ping_broker",
    "serve_job_updates",
]

PROVIDER_URL_ENV = "AURA_SANDBOX_PROVIDER_URL"
PROVIDER_KEY_ENV = "AURA_SANDBOX_PROVIDER_KEY_ENV"  # holds the NAME of the key's variable
WEBHOOK_URL_ENV = "AURA_SANDBOX_WEBHOOK_URL"
BROKER_URL_ENV = "AURA_SANDBOX_BROKER_URL"
WEBHOOK_SECRET = b"sandbox-webhook-signing-secret"
#: Origins the live page is served from; the ``ws-origin`` fault replaces them.
ALLOWED_ORIGINS = ("https://app.aura.studio", "https://studio.aura.studio")


class Log(Protocol):
    def write(self, **fields: Any) -> None: ...


class ProviderError(Exception):
    """A provider call failed; ``kind`` is ``timeout``, ``unreachable`` or the HTTP status."""

    def __init__(self, provider: str, kind: str, message: str, http_status: int | None) -> None:
        super().__init__(message)
        self.provider, self.kind, self.http_status = provider, kind, http_status


class CircuitOpenError(ProviderError):
    """The breaker is open: the call was not even tried."""


class CircuitBreaker:
    """Closed → open after ``threshold`` consecutive failures → half-open after ``reset_s``."""

    def __init__(self, *, threshold: int = 3, reset_s: float = 15.0) -> None:
        self.threshold, self.reset_s = threshold, reset_s
        self.failures = 0
        self.opened_at: float | None = None
        self.trial = False
        self.lock = threading.Lock()

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if time.monotonic() - self.opened_at >= self.reset_s else "open"

    def allow(self) -> bool:
        with self.lock:
            state = self.state
            if state == "closed":
                return True
            if state == "half-open" and not self.trial:
                self.trial = True  # one trial call at a time
                return True
            return False

    def record(self, ok: bool) -> None:
        with self.lock:
            self.trial = False
            if ok:
                self.failures, self.opened_at = 0, None
                return
            self.failures += 1
            if self.opened_at is not None or self.failures >= self.threshold:
                self.opened_at = time.monotonic()


class ProviderClient:
    """Calls one provider through a breaker; remembers the last minute of outcomes."""

    def __init__(
        self,
        name: str,
        base_url: str,
        key: str,
        log: Log,
        calls: Counter,
        *,
        timeout_s: float = 1.0,
    ) -> None:
        self.name, self.base_url, self.key, self.log = name, base_url.rstrip("/"), key, log
        self.calls = calls
        self.timeout_s = timeout_s
        self.breaker = CircuitBreaker()
        self.recent: collections.deque[tuple[float, str, float]] = collections.deque(maxlen=5000)
        self.last_error = ""
        self.client = httpx.Client(timeout=timeout_s)

    def _outcome(self, outcome: str, ms: float, cid: str, error: ProviderError | None) -> None:
        self.recent.append((time.monotonic(), outcome, ms))
        self.calls.labels(self.name, outcome).inc()
        if error is None:
            self.log.write(
                level="INFO",
                logger="aura.providers",
                service="aura-api",
                message=f"{self.name} call ok in {ms:.0f}ms",
                correlation_id=cid,
                provider=self.name,
                provider_outcome=outcome,
                provider_ms=round(ms, 1),
            )
            return
        self.last_error = str(error)
        self.log.write(
            level="ERROR",
            logger="aura.providers",
            service="aura-api",
            message=f"{self.name} call failed: {error}",
            correlation_id=cid,
            provider=self.name,
            provider_outcome=outcome,
            provider_ms=round(ms, 1),
            provider_status=error.http_status,
            error_type=type(error).__name__,
            error=str(error),
        )

    def complete(self, prompt: str, cid: str) -> str:
        """One chat completion; raises :class:`ProviderError` (or the open breaker's)."""
        if not self.breaker.allow():
            error = CircuitOpenError(
                self.name, "circuit_open", f"circuit breaker open for {self.name}", None
            )
            self._outcome("circuit_open", 0.0, cid, error)
            raise error
        t0 = time.perf_counter()
        try:
            r = self.client.post(
                f"{self.base_url}/v1/chat/completions",
                headers={"Authorization": f"Bearer {self.key}"},
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]},
            )
        except httpx.TimeoutException:
            error = ProviderError(
                self.name, "timeout", f"OpenAI API timed out after {self.timeout_s:g} s", None
            )
        except httpx.HTTPError as exc:
            error = ProviderError(
                self.name, "unreachable", f"OpenAI API unreachable: {type(exc).__name__}", None
            )
        else:
            if r.status_code == 200:
                self.breaker.record(True)
                self._outcome("200", (time.perf_counter() - t0) * 1000, cid, None)
                return str(r.json()["choices"][0]["message"]["content"])
            error = _status_error(self.name, r)
        self.breaker.record(False)
        self._outcome(error.kind, (time.perf_counter() - t0) * 1000, cid, error)
        raise error

    def health(self, *, window_s: float = 60.0) -> dict[str, Any]:
        """The ``/api/health/providers`` entry: breaker state and the last minute of calls."""
        cutoff = time.monotonic() - window_s
        recent = [r for r in list(self.recent) if r[0] >= cutoff]
        tried = [r for r in recent if r[1] != "circuit_open"]
        failed = [r for r in tried if r[1] != "200"]
        circuit = self.breaker.state
        rate = len(failed) / len(tried) if tried else 0.0
        status = "Unhealthy" if circuit == "open" else "Healthy"
        if status == "Healthy" and (circuit == "half-open" or rate >= 0.05):
            status = "Degraded"
        return {
            "name": self.name,
            "status": status,
            "circuit": circuit,
            "latency_ms": round(sum(r[2] for r in tried) / len(tried), 1) if tried else 0.0,
            "error_rate": round(rate, 3),
            "calls_last_minute": len(tried),
            "rejected_by_circuit": len(recent) - len(tried),
            "consecutive_failures": self.breaker.failures,
            "last_error": self.last_error if failed or circuit != "closed" else "",
            "url": self.base_url,
        }


def _status_error(provider: str, r: httpx.Response) -> ProviderError:
    try:
        err = r.json().get("error") or {}
    except ValueError:
        err = {}
    code = err.get("code") or err.get("type") or "error"
    text = str(err.get("message", r.text[:120]))
    return ProviderError(
        provider,
        str(r.status_code),
        f"OpenAI API answered {r.status_code} {code}: {text}",
        r.status_code,
    )


class WebhookDispatcher:
    """``job.completed`` webhooks from a queue, ``attempts`` tries each, ``timeout_s`` a try."""

    def __init__(
        self,
        url: str,
        log: Log,
        registry: CollectorRegistry,
        failures: Counter,
        *,
        attempts: int = 3,
        timeout_s: float = 1.0,
        threads: int = 4,
    ) -> None:
        self.url, self.log, self.failures = url, log, failures
        self.deliveries = Counter(
            "aura_webhook_deliveries",
            "Webhook deliveries by outcome (delivered, exhausted)",
            ["outcome"],
            registry=registry,
        )
        self.attempts, self.timeout_s, self.threads = attempts, timeout_s, threads
        self.queue: queue.Queue[tuple[int, str]] = queue.Queue(maxsize=2000)
        self.stop = threading.Event()

    def start(self) -> None:
        for i in range(self.threads):
            threading.Thread(target=self._run, name=f"webhooks-{i}", daemon=True).start()

    def enqueue(self, job_id: int, cid: str) -> None:
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait((job_id, cid))

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            while not self.stop.is_set():
                try:
                    job_id, cid = self.queue.get(timeout=0.5)
                except queue.Empty:
                    continue
                self._deliver(client, job_id, cid)

    def _deliver(self, client: httpx.Client, job_id: int, cid: str) -> None:
        body = json.dumps({"event": "job.completed", "job_id": job_id, "correlation_id": cid})
        signature = hmac.new(WEBHOOK_SECRET, body.encode(), hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Aura-Signature": f"sha256={signature}"}
        common = dict(logger="aura.webhooks", service="aura-worker", correlation_id=cid)
        reason = ""
        for attempt in range(1, self.attempts + 1):
            try:
                r = client.post(self.url, content=body, headers=headers)
                if r.status_code < 300:
                    self.deliveries.labels("delivered").inc()
                    self.log.write(
                        level="INFO",
                        message=f"Webhook delivered for job {job_id} to {self.url} "
                        f"(answer {r.status_code}, attempt {attempt})",
                        job_id=job_id,
                        webhook_url=self.url,
                        webhook_outcome="delivered",
                        attempt=attempt,
                        **common,
                    )
                    return
                reason = f"answered {r.status_code}"
            except httpx.TimeoutException:
                reason = f"timed out after {self.timeout_s:g} s"
            except httpx.ConnectError:
                reason = "connection refused"
            except httpx.HTTPError as exc:
                reason = type(exc).__name__
            self.log.write(
                level="WARNING",
                message=f"Webhook delivery for job {job_id} to {self.url} failed "
                f"(attempt {attempt}/{self.attempts}): {reason}",
                job_id=job_id,
                webhook_url=self.url,
                webhook_outcome="retry",
                attempt=attempt,
                reason=reason,
                **common,
            )
            if attempt < self.attempts:
                self.stop.wait(0.2 * 2 ** (attempt - 1))
        self.failures.inc()
        self.deliveries.labels("exhausted").inc()
        self.log.write(
            level="ERROR",
            message=f"Webhook retries exhausted for job {job_id} to {self.url} after "
            f"{self.attempts} attempts: {reason}",
            job_id=job_id,
            webhook_url=self.url,
            webhook_outcome="exhausted",
            attempt=self.attempts,
            reason=reason,
            error_type="WebhookDeliveryError",
            **common,
        )


def ping_broker(url: str, *, timeout_s: float = 1.0) -> None:
    """Send the broker a Redis ``PING``; raises ``OSError`` unless it answers ``+PONG``."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "", parts.port or 6379), timeout_s) as s:
        s.settimeout(timeout_s)
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        answer = s.recv(64)
    if not answer.startswith(b"+PONG"):
        raise OSError(f"broker answered {answer[:40]!r} to PING")


async def serve_job_updates(ws: WebSocket, svc: Any, upstreams: Upstreams) -> None:
    """``/ws/jobs``: reject a foreign Origin (HTTP 403), check the broker, then stream updates."""
    origin = ws.headers.get("origin", "")
    fault = svc.active("ws-origin")
    allowed = tuple(fault.get("allowed_origins", ())) if fault else ALLOWED_ORIGINS
    common = dict(logger="aura.realtime", service="aura-api", ws_route="/ws/jobs", ws_origin=origin)
    if origin not in allowed:
        svc.log.write(
            level="WARNING",
            message=f"WebSocket /ws/jobs rejected: Origin {origin or '(none)'} not allowed "
            f"(allowed: {', '.join(allowed)})",
            ws_outcome="rejected",
            ws_answer=403,
            **common,
        )
        await ws.close(code=1008)  # before accept(): the server answers the handshake with 403
        return
    if upstreams.broker_url:
        try:
            await anyio.to_thread.run_sync(lambda: ping_broker(upstreams.broker_url))
        except OSError as exc:
            svc.log.write(
                level="ERROR",
                message=f"WebSocket /ws/jobs closed 1011: broker {upstreams.broker_url} "
                f"unavailable: {type(exc).__name__}: {exc}",
                ws_outcome="broker_unavailable",
                error_type="BrokerUnavailable",
                error=f"{type(exc).__name__}: {exc}",
                **common,
            )
            await ws.accept()
            await ws.close(code=1011, reason="broker unavailable")
            return
    await ws.accept()
    svc.log.write(
        level="INFO", message="WebSocket /ws/jobs connected", ws_outcome="connected", **common
    )
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await ws.send_json({"type": "hello", "queue_depth": None})
        with anyio.move_on_after(10):
            await ws.receive_text()
        await ws.close()


class Upstreams:
    """Everything the service calls, built from the environment the sandbox gives it."""

    def __init__(self, log: Log, registry: CollectorRegistry, webhook_failures: Counter) -> None:
        self.log = log
        self.provider_calls = Counter(
            "aura_provider_calls",
            "Calls to external providers by outcome (200, 429, 401, timeout, circuit_open, ...)",
            ["provider", "outcome"],
            registry=registry,
        )
        url, key_env = os.environ.get(PROVIDER_URL_ENV), os.environ.get(PROVIDER_KEY_ENV)
        key = os.environ.get(key_env or "", "")
        self.llm = ProviderClient("openai", url, key, log, self.provider_calls) if url else None
        hook = os.environ.get(WEBHOOK_URL_ENV)
        self.webhooks = WebhookDispatcher(hook, log, registry, webhook_failures) if hook else None
        self.broker_url = os.environ.get(BROKER_URL_ENV, "")

    def start(self) -> None:
        if self.webhooks:
            self.webhooks.start()

    def stop(self) -> None:
        if self.webhooks:
            self.webhooks.stop.set()

    def providers(self) -> list[dict[str, Any]]:
        return [self.llm.health()] if self.llm else []

    def job_completed(self, job_id: int, cid: str) -> None:
        if self.webhooks:
            self.webhooks.enqueue(job_id, cid)
