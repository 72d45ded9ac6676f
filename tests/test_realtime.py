"""aura_ops.realtime: real WebSocket handshakes with an Origin, and a real broker PING.

The WebSocket server is the sandbox's ``/ws/jobs`` handler served by uvicorn in a thread; the
broker is the sandbox's Redis-protocol stand-in.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from aura_ops import logs, realtime
from aura_ops.findings import Status
from aura_ops.sandbox.peers import Broker
from aura_ops.sandbox.upstreams import serve_job_updates

APP_ORIGIN = "https://app.aura.studio"


class Service:
    """What ``serve_job_updates`` needs of the service: fault switches and a log."""

    def __init__(self, broker_url: str) -> None:
        self.faults: dict[str, dict[str, Any]] = {}
        self.lines: list[dict[str, Any]] = []
        self.upstreams = type("Upstreams", (), {"broker_url": broker_url})()

    def active(self, name: str) -> dict[str, Any] | None:
        return self.faults.get(name)

    @property
    def log(self) -> Service:
        return self

    def write(self, **fields: Any) -> None:
        self.lines.append(fields)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    b = Broker().start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def served(broker: Broker) -> Iterator[tuple[str, Service]]:
    svc = Service(broker.url)

    async def jobs(ws: WebSocket) -> None:
        await serve_job_updates(ws, svc, svc.upstreams)

    port = _port()
    app = Starlette(routes=[WebSocketRoute("/ws/jobs", jobs)])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"ws://127.0.0.1:{port}/ws/jobs", svc
    server.should_exit = True
    thread.join(timeout=5)


def test_allowed_origin_handshake_is_ok(served: tuple[str, Service]) -> None:
    """With the app's Origin the handshake upgrades and the first message arrives: OK."""
    url, _ = served
    findings = realtime.check_websocket(url, origin=APP_ORIGIN)
    assert [Status.OK] == [f.status for f in findings]
    assert "hello" in findings[0].summary


def test_foreign_origin_is_rejected_with_403(served: tuple[str, Service]) -> None:
    """An Origin outside the allowed list is answered HTTP 403: CRITICAL naming the Origin."""
    url, svc = served
    svc.faults["ws-origin"] = {"allowed_origins": ["https://elsewhere.example"]}
    try:
        findings = realtime.check_websocket(url, origin=APP_ORIGIN)
    finally:
        svc.faults.clear()
    assert Status.CRITICAL == findings[0].status
    assert f"rejected for Origin {APP_ORIGIN}: HTTP 403" in findings[0].summary


def test_broker_down_closes_after_accept(served: tuple[str, Service], broker: Broker) -> None:
    """With the broker stopped the server accepts, then closes with 1011: CRITICAL."""
    url, _ = served
    broker.stop()
    try:
        findings = realtime.check_websocket(url, origin=APP_ORIGIN)
        down = realtime.check_broker(broker.url)
    finally:
        broker.start()
    assert Status.CRITICAL == findings[0].status
    assert "closed 1011 (broker unavailable)" in findings[0].summary
    assert Status.CRITICAL == down[0].status and "connection refused" in down[0].summary
    assert Status.OK == realtime.check_broker(broker.url)[0].status


def test_unreachable_and_hanging_websocket_are_critical_on_time() -> None:
    """A closed port and a socket that never answers the Upgrade are CRITICAL within timeout."""
    closed = realtime.check_websocket(f"ws://127.0.0.1:{_port()}/ws", origin=APP_ORIGIN)
    assert Status.CRITICAL == closed[0].status and "not answering" in closed[0].summary
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        t0 = time.monotonic()
        url = f"ws://127.0.0.1:{sock.getsockname()[1]}/ws"
        hung = realtime.check_websocket(url, origin=APP_ORIGIN, timeout_s=0.5)
        assert Status.CRITICAL == hung[0].status
        assert time.monotonic() - t0 < 3
        t0 = time.monotonic()
        silent = realtime.check_broker(url.replace("ws://", "redis://"), timeout_s=0.5)
        assert Status.CRITICAL == silent[0].status and "not answering" in silent[0].summary
        assert time.monotonic() - t0 < 3


def _one_answer_server(answer: bytes) -> tuple[socket.socket, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)

    def serve() -> None:
        conn, _ = sock.accept()
        with conn:
            conn.recv(64)
            conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return sock, f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


def test_broker_refusing_is_critical_and_garbage_unknown() -> None:
    """A Redis error answer (-NOAUTH) is CRITICAL; an answer that is not Redis is UNKNOWN."""
    sock, url = _one_answer_server(b"-NOAUTH Authentication required.\r\n")
    with sock:
        findings = realtime.check_broker(url)
    assert Status.CRITICAL == findings[0].status and "NOAUTH" in findings[0].summary
    sock, url = _one_answer_server(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    with sock:
        assert Status.UNKNOWN == realtime.check_broker(url)[0].status


def test_logs_name_rejected_origins(tmp_path: Path) -> None:
    """Rejected handshakes in the logs are counted per Origin; all connected is OK."""
    path = tmp_path / "api.jsonl"
    rows = [
        {
            "ts": f"2026-11-24T00:02:{i:02d}+00:00",
            "level": "INFO",
            "message": "ws",
            "ws_outcome": "connected",
            "ws_origin": APP_ORIGIN,
        }
        for i in range(3)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert Status.OK == realtime.check_websocket_logs(logs.load_events(str(path)))[0].status
    rows += [
        {
            "ts": f"2026-11-24T00:03:{i:02d}+00:00",
            "level": "WARNING",
            "message": "rejected",
            "ws_outcome": "rejected",
            "ws_origin": APP_ORIGIN,
        }
        for i in range(5)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    events = logs.load_events(str(path), since="2026-11-24T00:00:00Z")  # as the runbook reads
    findings = realtime.check_websocket_logs(events)
    assert Status.CRITICAL == findings[0].status
    assert f"5 of 8 WebSocket handshakes rejected for Origin {APP_ORIGIN}" in findings[0].summary
    missing = realtime.check_websocket_logs(logs.load_events(str(tmp_path / "none.jsonl")))
    assert Status.UNKNOWN == missing[0].status


def test_log_of_which_no_line_could_be_read_is_unknown(tmp_path: Path) -> None:
    """A corrupt log gives UNKNOWN ("none of the lines read could be parsed"), not "0 OK"."""
    path = tmp_path / "api.jsonl"
    path.write_bytes(b"\x00\x1f\x8b\x08garbage\xff\xfe\n<html><body>nginx</body></html>\n")
    events = logs.load_events(str(path), since="2026-11-24T00:00:00Z")  # as the runbook reads
    findings = realtime.check_websocket_logs(events)
    assert [Status.UNKNOWN] == [f.status for f in findings]
    assert "none of the" in findings[0].summary
