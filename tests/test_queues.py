"""aura_ops.queues: are the workers consuming? Against a real /metrics server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from aura_ops import queues
from aura_ops.findings import Status


class Worker:
    """A service's worker metrics: ``per_scrape`` jobs complete between scrapes."""

    def __init__(self, workers: int, depth: int, per_scrape: int, status: int = 200) -> None:
        self.registry = CollectorRegistry()
        self.workers = Gauge("aura_workers_active", "w", registry=self.registry)
        self.depth = Gauge("aura_queue_depth", "q", registry=self.registry)
        self.done = Counter("aura_jobs_completed", "c", registry=self.registry)
        self.workers.set(workers)
        self.depth.set(depth)
        self.per_scrape, self.status = per_scrape, status

    def body(self) -> bytes:
        self.done.inc(self.per_scrape)
        return generate_latest(self.registry)


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []

    def start(app: Worker) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                body = app.body() if app.status == 200 else b"forbidden"
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


def test_stalled_workers_are_the_cause(serve: Any) -> None:
    """No worker active and nothing completed while 120 jobs wait: CRITICAL, the cause."""
    findings = queues.check_workers(serve(Worker(0, 120, 0)), interval_s=0.2)
    assert [Status.CRITICAL] == [f.status for f in findings]
    assert "stalled" in findings[0].summary and "120 jobs wait" in findings[0].summary
    assert "cause" == findings[0].labels["role"]


def test_active_workers_completing_nothing_are_stuck(serve: Any) -> None:
    """Two workers report active but complete nothing while jobs wait: CRITICAL."""
    findings = queues.check_workers(serve(Worker(2, 40, 0)), interval_s=0.2)
    assert Status.CRITICAL == findings[0].status
    assert "completed 0 jobs" in findings[0].summary


def test_consuming_workers_are_ok(serve: Any) -> None:
    """Workers completing jobs with a short queue: OK, with the count."""
    findings = queues.check_workers(serve(Worker(2, 3, 7)), interval_s=0.2)
    assert [Status.OK] == [f.status for f in findings]
    assert "7 jobs completed" in findings[0].summary


def test_unreachable_metrics_is_unknown() -> None:
    """A closed port gives UNKNOWN."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    findings = queues.check_workers(f"http://127.0.0.1:{port}/metrics", interval_s=0.1)
    assert [Status.UNKNOWN] == [f.status for f in findings]


def test_refusing_metrics_is_unknown(serve: Any) -> None:
    """HTTP 403 gives UNKNOWN naming the status."""
    findings = queues.check_workers(serve(Worker(1, 0, 0, status=403)), interval_s=0.1)
    assert [Status.UNKNOWN] == [f.status for f in findings]
    assert "403" in findings[0].summary


def test_hanging_metrics_is_unknown_within_timeout() -> None:
    """A socket that accepts and never answers gives UNKNOWN within the timeout."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        t0 = time.monotonic()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/metrics"
        findings = queues.check_workers(url, interval_s=0.1, timeout_s=0.5)
    assert [Status.UNKNOWN] == [f.status for f in findings]
    assert time.monotonic() - t0 < 3


def test_metrics_without_worker_series_are_unknown(serve: Any) -> None:
    """An exposition with neither the workers gauge nor the completed counter is UNKNOWN."""
    findings = queues.check_workers(
        serve(Worker(1, 0, 1)), interval_s=0.1, workers_gauge="x", completed_counter="y_total"
    )
    assert Status.UNKNOWN == findings[0].status
