"""Health probes against the real sandbox, and against servers that fail in each way."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from aura_ops import health
from aura_ops.findings import Status
from aura_ops.sandbox import free_port

from .conftest import closed_port, hanging_server


def _app() -> Starlette:
    async def degraded(request):  # type: ignore[no-untyped-def]
        return JSONResponse({"status": "Degraded", "components": {"llm": "Healthy",
                                                                  "tts": "Degraded",
                                                                  "storage": "Unhealthy"}})

    async def providers(request):  # type: ignore[no-untyped-def]
        return JSONResponse({"providers": [
            {"name": "openai", "status": "Healthy", "circuit": "open", "error_rate": 0.4},
            {"name": "local", "status": "Healthy", "circuit": "closed"}]})

    async def broken(request):  # type: ignore[no-untyped-def]
        return PlainTextResponse("upstream connect error", status_code=503)

    async def garbage(request):  # type: ignore[no-untyped-def]
        return PlainTextResponse("<html>login</html>")

    async def slow(request):  # type: ignore[no-untyped-def]
        import asyncio

        await asyncio.sleep(5)
        return JSONResponse({})

    return Starlette(routes=[Route("/system", degraded), Route("/providers", providers),
                             Route("/broken", broken), Route("/garbage", garbage),
                             Route("/slow", slow)])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(_app(), host="127.0.0.1", port=port, log_level="error"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    while not srv.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    t.join(5)


@pytest.mark.slow
def test_healthy_sandbox_is_all_ok(sandbox) -> None:  # type: ignore[no-untyped-def]
    """Against the healthy sandbox every health finding is OK and records its URL."""
    findings = health.check_health(sandbox.base_url)
    assert {f.status for f in findings} == {Status.OK}
    assert {f.check for f in findings} == {"health.endpoint", "health.readiness",
                                           "health.components", "health.providers"}
    assert all(f.source.startswith("GET http://127.0.0.1") for f in findings)
    live = findings[0]
    assert live.evidence[0].data["x-correlation-id"]


def test_components_name_the_unhealthy_ones(server: str) -> None:
    """Degraded components are WARNING and unhealthy ones CRITICAL, each named."""
    findings = health.check_components(f"{server}/system")
    assert {(f.summary, f.status) for f in findings} == {
        ("Component tts is Degraded", Status.WARNING),
        ("Component storage is Unhealthy", Status.CRITICAL)}


def test_open_circuit_is_critical(server: str) -> None:
    """A provider with an open circuit breaker is CRITICAL, with its error rate."""
    findings = health.check_providers(f"{server}/providers")
    assert [(f.subject, f.status) for f in findings] == [("provider/openai", Status.CRITICAL)]
    assert "circuit open" in findings[0].summary and "40%" in findings[0].summary


def test_refused_connection_is_not_answering() -> None:
    """A closed port is CRITICAL 'not answering' for a health endpoint, never OK."""
    (f,) = health.check_endpoint(f"http://127.0.0.1:{closed_port()}/health/live")
    assert f.status == Status.CRITICAL and "not answering" in f.summary


def test_hanging_server_times_out() -> None:
    """A server that accepts and never answers is reported within the timeout."""
    with hanging_server() as port:
        t0 = time.monotonic()
        (f,) = health.check_endpoint(f"http://127.0.0.1:{port}/health/live", timeout_s=1.0)
        assert time.monotonic() - t0 < 3
    assert f.status == Status.CRITICAL and "no answer within 1 s" in f.summary


def test_slow_answer_times_out(server: str) -> None:
    """A slow endpoint is cut off at the timeout."""
    (f,) = health.check_endpoint(f"{server}/slow", timeout_s=0.5)
    assert f.status == Status.CRITICAL and "within 0.5 s" in f.summary


def test_error_status_is_critical(server: str) -> None:
    """HTTP 503 from a health endpoint is CRITICAL with the body as evidence."""
    (f,) = health.check_endpoint(f"{server}/broken")
    assert f.status == Status.CRITICAL and "503" in f.summary
    assert f.evidence[0].data["body"] == "upstream connect error"


def test_garbage_body_is_unknown(server: str) -> None:
    """A body that is not a component list is UNKNOWN, not OK."""
    (f,) = health.check_components(f"{server}/garbage")
    assert f.status == Status.UNKNOWN


def test_providers_unreachable_is_unknown() -> None:
    """An unreachable provider-health endpoint is UNKNOWN with the reason."""
    (f,) = health.check_providers(f"http://127.0.0.1:{closed_port()}/providers")
    assert f.status == Status.UNKNOWN and "did not answer" in f.summary
