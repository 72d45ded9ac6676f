"""The sandbox: a real service on loopback with a real PostgreSQL, logs, metrics and faults."""

from __future__ import annotations

import json

import httpx
import pytest

from aura_ops.errors import ConfigError
from aura_ops.sandbox import FAULTS, Sandbox, faults_for

pytestmark = pytest.mark.slow


def test_health_and_business_endpoints(sandbox: Sandbox) -> None:
    """Health endpoints answer Healthy and business endpoints read PostgreSQL."""
    assert httpx.get(f"{sandbox.base_url}/health/live").json() == {"status": "Healthy"}
    ready = httpx.get(f"{sandbox.base_url}/health/ready").json()
    assert ready["checks"]["database"]["status"] == "Healthy"
    system = httpx.get(f"{sandbox.base_url}/api/health/system").json()
    assert set(system["components"]) >= {"database", "queue", "storage"}
    projects = httpx.get(f"{sandbox.base_url}/api/projects").json()["projects"]
    assert projects[0] == {"id": 1, "name": "project-0000", "owner": "user0"}
    job = httpx.post(f"{sandbox.base_url}/api/render", json={"project_id": 3})
    assert job.status_code == 202


def test_every_response_has_a_correlation_id(sandbox: Sandbox) -> None:
    """The X-Correlation-ID sent is echoed and logged; one is made up when none is sent."""
    r = httpx.get(f"{sandbox.base_url}/api/projects/5", headers={"X-Correlation-ID": "abc123"})
    assert r.headers["x-correlation-id"] == "abc123"
    assert len(httpx.get(f"{sandbox.base_url}/api/projects/5").headers["x-correlation-id"]) == 16
    lines = [json.loads(x) for x in sandbox.log_path.read_text().splitlines()]
    mine = [x for x in lines if x.get("correlation_id") == "abc123"]
    assert mine[0]["route"] == "/api/projects/{project_id}"
    assert mine[0]["status"] == 200


def test_metrics_exposition_counts_requests(sandbox: Sandbox) -> None:
    """/metrics counts requests by method, route and status and exposes process memory."""
    text = httpx.get(f"{sandbox.base_url}/metrics").text
    assert 'aura_http_requests_total{method="GET",route="/api/projects",status="200"}' in text
    assert "aura_http_request_duration_seconds_bucket" in text
    assert "process_resident_memory_bytes" in text
    data = httpx.get(f"{sandbox.base_url}/metrics/json").json()
    assert set(data) >= {"queue_depth", "webhook_failures", "jobs_completed_hourly", "errors"}


def test_bad_deploy_breaks_one_endpoint_only() -> None:
    """After the bad deploy, POST /api/render fails with KeyError and the rest stay healthy."""
    with Sandbox() as sb:
        sb.inject("bad-deploy")
        stats = sb.traffic(2.0, rps=40, seed=3)
        assert stats.by_status[500] > 0
        assert stats.by_status[200] > 0
        lines = [json.loads(x) for x in sb.log_path.read_text().splitlines()]
        errors = [x for x in lines if x["level"] == "ERROR"]
        assert {(e["method"], e["route"], e["error_type"]) for e in errors} == {
            ("POST", "/api/render", "KeyError")}
        deploys = [json.loads(x) for x in sb.changes_path.read_text().splitlines()]
        assert deploys[-1]["version"] == "v2.4.1"
        assert deploys[-1]["at"] < errors[0]["ts"]
        sb.clear()
        assert httpx.post(f"{sb.base_url}/api/render", json={}).status_code == 202


def test_rate_limit_fault_answers_429(sandbox: Sandbox) -> None:
    """The rate-limit fault answers 429 'Rate limit exceeded' and is logged as a WARNING."""
    sandbox.inject("rate-limit")
    try:
        r = httpx.get(f"{sandbox.base_url}/api/projects")
        assert (r.status_code, r.json()["error"]) == (429, "Rate limit exceeded")
    finally:
        sandbox.clear()
    assert httpx.get(f"{sandbox.base_url}/api/projects").status_code == 200


def test_unknown_fault_is_refused(sandbox: Sandbox) -> None:
    """Injecting a fault that is not in the catalogue is a clear error."""
    with pytest.raises(ConfigError, match="unknown fault"):
        sandbox.inject("meteor-strike")
    r = httpx.post(f"{sandbox.base_url}/_sandbox/faults", json={"name": "meteor-strike"})
    assert r.status_code == 400


def test_catalogue_names_its_runbooks() -> None:
    """Every fault names a runbook that exists and what its verdict must say."""
    from aura_ops.runner import resolve_runbook

    for fault in FAULTS.values():
        assert resolve_runbook(fault.runbook).is_file()
        assert fault.expect
    assert [f.name for f in faults_for("high-error-rate")][0] == "bad-deploy"


def test_stop_removes_everything(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Stopping the sandbox stops the service and its database and removes its directory."""
    sb = Sandbox().start()
    url, workdir = sb.base_url, sb.workdir
    sb.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health/live", timeout=2)
    assert not workdir.exists()


def test_ports_taken_before_binding_are_chosen_again() -> None:
    """A port chosen free but taken before the service and the provider bind it: each is
    started again on another port, and the sandbox works (seen once under load as a flake)."""
    import socket

    sb = Sandbox()
    squatters = []
    for port in (sb.port, sb.peers.provider_port):
        s = socket.socket()
        s.bind(("127.0.0.1", port))
        s.listen()
        squatters.append((port, s))
    try:
        with sb:
            assert sb.port != squatters[0][0]
            assert sb.peers.provider_port != squatters[1][0]
            assert 200 == httpx.get(f"{sb.base_url}/health/live", timeout=5).status_code
            modes = httpx.get(f"{sb.peers.provider_url}/_provider/mode", timeout=5)
            assert 200 == modes.status_code
    finally:
        for _, s in squatters:
            s.close()
