"""aura_ops.webhooks: failure rate from real counters, retries in logs, the customer endpoint."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from aura_ops import logs, webhooks
from aura_ops.findings import Status
from aura_ops.sandbox.peers import WebhookReceiver


class Hooks:
    """Webhook counters that move by ``delivered``/``failed`` per scrape."""

    def __init__(self, delivered: int, failed: int, status: int = 200) -> None:
        self.registry = CollectorRegistry()
        self.failures = Counter("aura_webhook_failures", "f", registry=self.registry)
        self.deliveries = Counter(
            "aura_webhook_deliveries", "d", ["outcome"], registry=self.registry
        )
        self.delivered, self.failed, self.status = delivered, failed, status

    def body(self) -> bytes:
        self.failures.inc(self.failed)
        self.deliveries.labels("delivered").inc(self.delivered)
        self.deliveries.labels("exhausted").inc(self.failed)
        return generate_latest(self.registry)


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []

    def start(app: Hooks) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                body = app.body() if app.status == 200 else b"no"
                self.send_response(app.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}/metrics"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def hanging() -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/hooks"
    sock.close()


def test_high_failure_rate_is_critical(serve: Any) -> None:
    """All deliveries between the scrapes failing is CRITICAL, 100 %."""
    findings = webhooks.check_webhook_failures(serve(Hooks(0, 3)), interval_s=0.2)
    assert Status.CRITICAL == findings[0].status
    assert "Webhook failure rate 100%" in findings[0].summary


def test_low_failure_rate_is_ok(serve: Any) -> None:
    """1 failure in 20 deliveries is 5 %, below seed 003's 20 %: OK."""
    findings = webhooks.check_webhook_failures(serve(Hooks(19, 1)), interval_s=0.2)
    assert Status.OK == findings[0].status


def test_quarter_failing_is_a_warning(serve: Any) -> None:
    """25 % failing is above 20 %: WARNING."""
    findings = webhooks.check_webhook_failures(serve(Hooks(3, 1)), interval_s=0.2)
    assert Status.WARNING == findings[0].status


def test_unreachable_refusing_hanging_metrics_are_unknown(
    serve: Any, closed_port: int, hanging: str
) -> None:
    """Closed port, HTTP 500 and a silent socket each give UNKNOWN within the timeout."""
    for url in (f"http://127.0.0.1:{closed_port}/metrics", serve(Hooks(0, 0, status=500)), hanging):
        t0 = time.monotonic()
        findings = webhooks.check_webhook_failures(url, interval_s=0.1, timeout_s=0.5)
        assert [Status.UNKNOWN] == [f.status for f in findings], url
        assert time.monotonic() - t0 < 3


def _log(tmp_path: Path, outcomes: list[tuple[str, str]]) -> str:
    path = tmp_path / "worker.jsonl"
    rows = [
        {
            "ts": f"2026-11-24T00:01:{i:02d}+00:00",
            "level": "INFO",
            "message": "webhook",
            "webhook_outcome": outcome,
            "webhook_url": "https://hooks.example/aura",
            "reason": reason,
        }
        for i, (outcome, reason) in enumerate(outcomes)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_exhausted_retries_name_endpoint_and_reason(tmp_path: Path) -> None:
    """Exhausted deliveries are named with their endpoint and reason, as the cause."""
    refused = ("exhausted", "connection refused")
    path = _log(
        tmp_path, [("delivered", "")] * 2 + [("retry", "connection refused")] * 6 + [refused] * 3
    )
    findings = webhooks.check_webhook_logs(logs.load_events(path), source=path)
    assert Status.CRITICAL == findings[0].status
    assert "retries exhausted for 3 of 5 deliveries" in findings[0].summary
    assert "connection refused" in findings[0].summary
    assert "cause" == findings[0].labels["role"]


def test_one_exhausted_delivery_is_never_ok(tmp_path: Path) -> None:
    """One exhausted delivery among many is still a WARNING: a customer missed it."""
    path = _log(tmp_path, [("delivered", "")] * 20 + [("exhausted", "timed out after 1 s")])
    assert Status.WARNING == webhooks.check_webhook_logs(logs.load_events(path))[0].status


def test_delivered_webhooks_are_ok_and_unreadable_logs_unknown(tmp_path: Path) -> None:
    """All delivered: OK; a missing log file: UNKNOWN."""
    path = _log(tmp_path, [("delivered", "")] * 4)
    assert Status.OK == webhooks.check_webhook_logs(logs.load_events(path))[0].status
    missing = webhooks.check_webhook_logs(logs.load_events(str(tmp_path / "nope.jsonl")))
    assert Status.UNKNOWN == missing[0].status


def test_endpoint_answering_is_ok_refusing_and_hanging_are_critical(
    closed_port: int, hanging: str
) -> None:
    """curl -I: an answering endpoint is OK; refused and silent ones are CRITICAL, on time."""
    receiver = WebhookReceiver().start()
    try:
        assert Status.OK == webhooks.check_webhook_endpoint(receiver.url)[0].status
    finally:
        receiver.stop()
    refused = webhooks.check_webhook_endpoint(f"http://127.0.0.1:{closed_port}/hooks")
    assert Status.CRITICAL == refused[0].status and "connection refused" in refused[0].summary
    t0 = time.monotonic()
    silent = webhooks.check_webhook_endpoint(hanging, timeout_s=0.5)
    assert Status.CRITICAL == silent[0].status and "timed out" in silent[0].summary
    assert time.monotonic() - t0 < 3
    assert Status.UNKNOWN == webhooks.check_webhook_endpoint("")[0].status


def test_log_of_which_no_line_could_be_read_is_unknown(tmp_path: Path) -> None:
    """A corrupt log (binary, an HTML page) read in a window is UNKNOWN, never OK."""
    path = tmp_path / "worker.jsonl"
    path.write_bytes(b"\x00\x1f\x8b\x08garbage\xff\xfe\n<html><body>nginx</body></html>\n")
    events = logs.load_events(str(path), since="2026-11-24T00:00:00Z")  # as the runbook reads
    findings = webhooks.check_webhook_logs(events, source=str(path))
    assert [Status.UNKNOWN] == [f.status for f in findings]
    assert "none of the" in findings[0].summary
