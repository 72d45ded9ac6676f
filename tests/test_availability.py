"""Outage classification against real sockets, real processes and a real database."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aura_ops import availability
from aura_ops.findings import Status
from tests.conftest import closed_port, hanging_server


@contextlib.contextmanager
def answering(status: int) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 that answers every GET with ``status``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            body = b'{"error": "refused"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def sleeper() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A real process with a unique tag on its command line, and a pattern matching it."""
    tag = f"aura-test-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", tag])
    try:
        yield proc, tag
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.wait(timeout=10)


def test_healthy_api_is_ok(sandbox: Any) -> None:
    """The sandbox answers liveness, readiness, components and providers: all OK."""
    findings = availability.check_api(sandbox.base_url)
    assert {Status.OK} == {f.status for f in findings}
    assert all(f.reproduce.startswith("check_api(") for f in findings)


def test_closed_port_is_down(sandbox: Any) -> None:
    """Nothing listening: CRITICAL "is down ... connection refused", the cause."""
    (finding,) = availability.check_api(f"http://127.0.0.1:{closed_port()}", timeout_s=2)
    assert Status.CRITICAL == finding.status
    assert "is down: nothing is listening" in finding.summary
    assert "cause" == finding.labels["role"]


def test_silent_port_is_hung() -> None:
    """A port that accepts and never answers: CRITICAL "is hung", within the timeout."""
    with hanging_server() as port:
        t0 = time.monotonic()
        (finding,) = availability.check_api(f"http://127.0.0.1:{port}", timeout_s=1)
        assert time.monotonic() - t0 < 4
    assert Status.CRITICAL == finding.status
    assert "is hung" in finding.summary and "accepts TCP connections" in finding.summary


def test_refusing_api_is_critical() -> None:
    """An API answering HTTP 503 is up but refusing: CRITICAL naming the status."""
    with answering(503) as url:
        findings = availability.check_api(url, timeout_s=2)
    assert Status.CRITICAL == findings[0].status
    assert "answered HTTP 503" in findings[0].summary


def test_unreachable_address_is_classified() -> None:
    """A TCP connect that errors out (no route) or times out is "unreachable", not "hung"."""
    assert availability.fetch_tcp("127.0.0.1", closed_port(), timeout_s=1) == "refused"
    assert availability.fetch_tcp("host.invalid.", 80, timeout_s=1) in ("unresolved", "timeout")


def test_process_states_are_read() -> None:
    """Running is OK; stopped (SIGSTOP) is CRITICAL naming state T; exited is CRITICAL."""
    with sleeper() as (proc, tag):
        time.sleep(0.2)
        (ok,) = availability.check_service_process(tag)
        assert Status.OK == ok.status and f"pid {proc.pid}" in ok.summary
        proc.send_signal(signal.SIGSTOP)
        time.sleep(0.2)
        (stopped,) = availability.check_service_process(tag)
        assert Status.CRITICAL == stopped.status and "is stopped (state T" in stopped.summary
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        time.sleep(0.3)  # killed, not reaped yet: a zombie has no command line left to match
        (zombie,) = availability.check_service_process(tag)
        assert Status.CRITICAL == zombie.status
        proc.wait(timeout=5)
        (gone,) = availability.check_service_process(tag)
        assert Status.CRITICAL == gone.status and "No process matching" in gone.summary


def test_process_pattern_edge_cases() -> None:
    """No pattern: INFO (nothing looked at); an invalid regex: UNKNOWN."""
    (info,) = availability.check_service_process("")
    assert Status.INFO == info.status
    (bad,) = availability.check_service_process("([")
    assert Status.UNKNOWN == bad.status


def test_database_reachable_and_not(sandbox: Any) -> None:
    """The sandbox database is OK; a closed port is CRITICAL and marked as the cause."""
    (ok,) = availability.check_database(sandbox.dsn)
    assert Status.OK == ok.status
    dsn = f"postgresql://aura@127.0.0.1:{closed_port()}/aura"
    (down,) = availability.check_database(dsn, timeout_s=2)
    assert Status.CRITICAL == down.status and "unreachable" in down.summary
    assert "cause" == down.labels["role"]


def test_hanging_database_is_critical_within_timeout() -> None:
    """A database port that accepts and never answers is CRITICAL within the timeout."""
    with hanging_server() as port:
        t0 = time.monotonic()
        (finding,) = availability.check_database(f"postgresql://a@127.0.0.1:{port}/a", timeout_s=2)
        assert time.monotonic() - t0 < 6
    assert Status.CRITICAL == finding.status
