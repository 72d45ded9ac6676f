"""The sandbox service's outbound calls: circuit breaker and webhook retries, for real."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from aura_ops.sandbox.peers import WebhookReceiver
from aura_ops.sandbox.upstreams import CircuitBreaker, WebhookDispatcher


class Lines:
    """A log that keeps what is written."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def write(self, **fields: Any) -> None:
        self.lines.append(fields)


def test_breaker_opens_after_consecutive_failures_and_half_opens() -> None:
    """Three failures open the circuit; after reset_s one trial call is let through."""
    breaker = CircuitBreaker(threshold=3, reset_s=0.2)
    for _ in range(3):
        assert breaker.allow()
        breaker.record(False)
    assert "open" == breaker.state
    assert not breaker.allow()
    time.sleep(0.25)
    assert "half-open" == breaker.state
    assert breaker.allow() and not breaker.allow()  # one trial at a time
    breaker.record(True)
    assert "closed" == breaker.state


def _deliver(mode: str) -> tuple[Lines, float]:
    receiver = WebhookReceiver().start()
    receiver.set_mode(mode)
    log, registry = Lines(), CollectorRegistry()
    failures = Counter("aura_webhook_failures", "f", registry=registry)
    hooks = WebhookDispatcher(receiver.url, log, registry, failures, timeout_s=0.3, threads=1)
    hooks.start()
    try:
        hooks.enqueue(7, "cid7")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
            line.get("webhook_outcome") in ("delivered", "exhausted") for line in log.lines
        ):
            time.sleep(0.05)
    finally:
        hooks.stop.set()
        receiver.stop()
    return log, failures._value.get()


def test_webhook_delivered_first_try() -> None:
    """An answering endpoint gets the webhook on the first attempt."""
    log, failed = _deliver("ok")
    assert ["delivered"] == [line["webhook_outcome"] for line in log.lines]
    assert 0 == failed


def test_refused_webhook_exhausts_its_retries() -> None:
    """A refusing endpoint is tried three times, then counted as a failure, with the reason."""
    log, failed = _deliver("refuse")
    outcomes = [line["webhook_outcome"] for line in log.lines]
    assert ["retry", "retry", "retry", "exhausted"] == outcomes
    assert "connection refused" == log.lines[-1]["reason"]
    assert 1 == failed


def test_hanging_webhook_times_out() -> None:
    """An endpoint that never answers times out on every attempt."""
    log, _ = _deliver("hang")
    assert "timed out after 0.3 s" == log.lines[-1]["reason"]
