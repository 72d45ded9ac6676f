"""aura_ops.providers: failed provider calls in logs, and the provider API tested with the key.

The provider is the sandbox's real stand-in (``python -m aura_ops.sandbox.provider``), switched
between its modes the way an outage at the provider would switch it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aura_ops import logs, providers
from aura_ops.findings import Status

KEY_ENV = "AURA_OPS_TEST_PROVIDER_KEY"
KEY = "sk-test-0123456789abcdef0123456789"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    port = _port()
    env = {**os.environ, KEY_ENV: KEY}
    cmd = [
        sys.executable,
        "-m",
        "aura_ops.sandbox.provider",
        "--port",
        str(port),
        "--key-env",
        KEY_ENV,
    ]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/_provider/mode", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)


@pytest.fixture
def mode(provider: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.setenv(KEY_ENV, KEY)

    def switch(name: str, **params: object) -> None:
        r = httpx.post(f"{provider}/_provider/mode", json={"mode": name, "params": params})
        r.raise_for_status()

    yield switch
    switch("ok")


def test_api_answering_the_key_is_ok(provider: str, mode: object) -> None:
    """With the provider healthy the manual test is OK and the key is never shown."""
    findings = providers.check_provider_api(provider, api_key_env=KEY_ENV)
    assert [Status.OK] == [f.status for f in findings]
    assert KEY not in json.dumps([f.to_dict() for f in findings])


def test_revoked_key_is_critical_and_redacted(provider: str, mode: object) -> None:
    """A revoked key gives CRITICAL 401 invalid_api_key; no part of the key leaks."""
    mode("invalid-key")  # type: ignore[operator]
    findings = providers.check_provider_api(provider, api_key_env=KEY_ENV)
    assert Status.CRITICAL == findings[0].status
    assert "401 invalid_api_key" in findings[0].summary
    assert KEY[:12] not in json.dumps([f.to_dict() for f in findings])


def test_rate_limited_key_is_a_warning(provider: str, mode: object) -> None:
    """A key over its quota gives WARNING with the 429 and its Retry-After."""
    mode("rate-limit", per_s=0.01)  # type: ignore[operator]
    providers.check_provider_api(provider, api_key_env=KEY_ENV)  # uses the one token
    findings = providers.check_provider_api(provider, api_key_env=KEY_ENV)
    assert Status.WARNING == findings[0].status
    assert "429 rate_limit_exceeded" in findings[0].summary


def test_provider_outage_is_critical(provider: str, mode: object) -> None:
    """HTTP 503 from the provider is CRITICAL."""
    mode("down")  # type: ignore[operator]
    assert Status.CRITICAL == providers.check_provider_api(provider, api_key_env=KEY_ENV)[0].status


def test_slow_provider_is_a_warning_and_hang_is_critical(provider: str, mode: object) -> None:
    """Slower than the limit is a WARNING; slower than the timeout is CRITICAL, on time."""
    mode("slow", delay_s=0.6)  # type: ignore[operator]
    slow = providers.check_provider_api(provider, api_key_env=KEY_ENV, latency_warn_ms=300)
    assert Status.WARNING == slow[0].status
    t0 = time.monotonic()
    hung = providers.check_provider_api(provider, api_key_env=KEY_ENV, timeout_s=0.3)
    assert Status.CRITICAL == hung[0].status and "not answering" in hung[0].summary
    assert time.monotonic() - t0 < 2


def test_unreachable_provider_is_critical(monkeypatch: pytest.MonkeyPatch) -> None:
    """A closed port is CRITICAL: the provider is the subject of this check."""
    monkeypatch.setenv(KEY_ENV, KEY)
    findings = providers.check_provider_api(f"http://127.0.0.1:{_port()}", api_key_env=KEY_ENV)
    assert Status.CRITICAL == findings[0].status and "unreachable" in findings[0].summary


def test_missing_key_variable_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the key variable nothing is sent: UNKNOWN."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    findings = providers.check_provider_api("http://127.0.0.1:9", api_key_env=KEY_ENV)
    assert [Status.UNKNOWN] == [f.status for f in findings]


def _log(tmp_path: Path, outcomes: list[str]) -> Path:
    path = tmp_path / "api.jsonl"
    lines = []
    for i, outcome in enumerate(outcomes):
        line = {
            "ts": f"2026-11-24T00:00:{i % 60:02d}+00:00",
            "level": "INFO",
            "message": "openai call",
            "provider": "openai",
            "provider_outcome": outcome,
        }
        if outcome != "200":
            line.update(
                level="ERROR",
                error=f"OpenAI API answered {outcome} rate_limit_exceeded: "
                f"Rate limit reached for key {KEY}",
            )
        lines.append(json.dumps(line))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_rate_limited_calls_are_named_as_the_cause(tmp_path: Path) -> None:
    """429s in the logs give a CRITICAL finding naming 429 rate_limit_exceeded, key redacted."""
    path = _log(tmp_path, ["200"] * 10 + ["429"] * 6 + ["circuit_open"] * 4)
    findings = providers.check_provider_calls(logs.load_events(str(path)), source=str(path))
    assert Status.CRITICAL == findings[0].status
    assert "openai: 10 of 20 calls failed" in findings[0].summary
    assert "429 rate_limit_exceeded ×6, circuit open ×4" in findings[0].summary
    assert KEY not in findings[0].summary
    assert "cause" == findings[0].labels["role"]


def test_successful_calls_are_ok(tmp_path: Path) -> None:
    """Only successful calls: OK."""
    path = _log(tmp_path, ["200"] * 8)
    findings = providers.check_provider_calls(logs.load_events(str(path)))
    assert [Status.OK] == [f.status for f in findings]


def test_unreadable_or_empty_logs_are_unknown(tmp_path: Path) -> None:
    """A missing log file, or logs without provider calls, give UNKNOWN."""
    missing = providers.check_provider_calls(logs.load_events(str(tmp_path / "none.jsonl")))
    assert Status.UNKNOWN == missing[0].status
    other = tmp_path / "other.jsonl"
    other.write_text('{"ts": "2026-11-24T00:00:00+00:00", "level": "INFO", "message": "hi"}\n')
    assert Status.UNKNOWN == providers.check_provider_calls(logs.load_events(str(other)))[0].status


def test_api_answering_200_with_an_html_page_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy's or portal's HTML page with 200 is not the provider answering: UNKNOWN."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Portal(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b"<html><body>Welcome to nginx!</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    monkeypatch.setenv(KEY_ENV, KEY)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Portal)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        (finding,) = providers.check_provider_api(url, api_key_env=KEY_ENV)
    finally:
        server.shutdown()
        server.server_close()
    assert Status.UNKNOWN == finding.status
    assert "text/html" in finding.summary
