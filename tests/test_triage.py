"""Triage: routing findings to the next runbook with a severity, and the sweeps' fast, honest
answers when sources are missing, closed, refusing or hanging."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from aura_ops.findings import Finding, Status
from aura_ops.sandbox import FAULTS
from aura_ops.triage import ROUTES, check_triage, propose_runbook, route_for
from aura_ops.triage_sweep import (
    sweep_database,
    sweep_dependencies,
    sweep_host,
    sweep_request,
    sweep_service,
    sweep_workers,
)

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def finding(check: str, status: Status, summary: str = "", **kw: Any) -> Finding:
    return Finding(check=check, subject="s", status=status, summary=summary or check, **kw)


# -- routing -----------------------------------------------------------------------------------
def test_every_route_and_fault_names_a_runbook_that_exists() -> None:
    """Each route's runbook, and each fault's, is a notebook in notebooks/."""
    names = {p.stem for p in NOTEBOOKS.glob("*.ipynb")}
    assert set() == {r.runbook for r in ROUTES} - names
    assert set() == {f.runbook for f in FAULTS.values()} - names


def test_causes_win_over_the_errors_they_cause() -> None:
    """Blocked sessions and the 5xx they produce: the database runbook, not high-error-rate."""
    findings = [
        finding(
            "logs.failing_endpoints", Status.CRITICAL, "POST /api/render 40 % 5xx", observed=0.4
        ),
        finding("database.blocking_locks", Status.WARNING, "3 sessions blocked by aura-migrate"),
        finding("logs.latency", Status.WARNING),
    ]
    (proposal,) = check_triage(findings)
    assert "database-connections" == proposal.labels["runbook"]
    assert Status.CRITICAL == proposal.status  # as bad as the worst signal
    assert proposal.summary.startswith(
        "Run database-connections next -- database sessions: connections, idle transactions, "
        "locks: 3 sessions blocked by aura-migrate"
    )
    assert ("SEV-1", "P0") == (proposal.labels["severity"], proposal.labels["priority"])
    assert ["high-error-rate", "slow-performance"] == proposal.labels["also"]


def test_service_down_needs_a_critical_signal() -> None:
    """A slow liveness probe (WARNING) is not an outage; a dead one (CRITICAL) is."""
    slow = [finding("health.endpoint", Status.WARNING, "liveness answered in 1.4 s")]
    assert "high-error-rate" == route_for(slow).runbook  # type: ignore[union-attr]
    dead = [finding("health.endpoint", Status.CRITICAL, "liveness not answering")]
    assert "service-down" == route_for(dead).runbook  # type: ignore[union-attr]


def test_a_failing_reported_request_is_traced() -> None:
    """One failing request and its one error in the logs: request-trace, SEV-3."""
    findings = [
        finding("logs.error_types", Status.WARNING, "1 errors of 1 type"),
        finding("logs.trace", Status.WARNING, "Request abc failed in aura.worker"),
    ]
    proposal = propose_runbook(findings)
    assert ("request-trace", "SEV-3") == (proposal.labels["runbook"], proposal.labels["severity"])


def test_nothing_wrong_proposes_nothing() -> None:
    """OK and INFO findings: OK, no runbook, SEV-4; unreadable sources are named."""
    findings = [
        finding("health.endpoint", Status.OK),
        finding("logs.client_errors", Status.INFO),
        Finding(check="backup.freshness", subject="backups", status=Status.UNKNOWN, summary="?"),
    ]
    proposal = propose_runbook(findings)
    assert Status.OK == proposal.status
    assert "runbook" not in proposal.labels
    expected = "No incident signal in 3 checks: no runbook to run (SEV-4); 1 could not be read"
    assert proposal.summary.startswith(expected)


def test_a_previous_proposal_is_not_a_signal() -> None:
    """Re-running the proposal cell ignores the proposal already shown."""
    old = finding("triage.next_runbook", Status.CRITICAL, labels={"runbook": "gpu-oom"})
    assert route_for([old]) is None


# -- sweeps: missing, closed, refusing, hanging ------------------------------------------------
@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A socket that accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(srv.getsockname()[1])
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    srv.close()


@pytest.fixture
def refusing_url() -> Iterator[str]:
    """An HTTP server answering every request with 500."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"boom")

        do_HEAD = do_POST = do_GET  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def test_unset_sources_are_skipped_as_info() -> None:
    """Empty parameters: INFO findings naming the parameter; nothing is called."""
    found = [
        *sweep_service(""),
        *sweep_database(""),
        *sweep_workers(""),
        *sweep_dependencies(),
        *sweep_host(),
        *sweep_request("", ""),
    ]
    assert {Status.INFO} == {f.status for f in found}
    assert "The backups not checked: no backup_dir given" in {f.summary for f in found}
    assert None is route_for(found)


def test_closed_port_is_service_down_at_once(closed_port: int) -> None:
    """Nothing listening: liveness CRITICAL within the timeout, routed to service-down."""
    t0 = time.monotonic()
    found = sweep_service(f"http://127.0.0.1:{closed_port}", timeout_s=1.0)
    assert time.monotonic() - t0 < 3.0
    assert Status.CRITICAL == found[0].status
    assert "service-down" == propose_runbook(found).labels["runbook"]


def test_hanging_dependencies_answer_within_the_timeout(hanging_port: int) -> None:
    """Provider, webhook endpoint, WebSocket and broker all hang: checked in parallel, each
    ends within its 1 s timeout, none is OK."""
    url = f"127.0.0.1:{hanging_port}"
    t0 = time.monotonic()
    found = sweep_dependencies(
        provider_url=f"http://{url}",
        api_key_env="NO_SUCH_KEY_VAR",
        webhook_url=f"http://{url}/hook",
        ws_url=f"ws://{url}/ws",
        broker_url=f"redis://{url}/0",
        timeout_s=1.0,
    )
    assert time.monotonic() - t0 < 4.0
    checked = [f for f in found if f.status != Status.INFO]
    assert 4 == len(checked)
    assert all(f.status >= Status.UNKNOWN for f in checked), [f.summary for f in checked]


def test_refusing_metrics_are_unknown(refusing_url: str) -> None:
    """/metrics answering 500: the workers and the memory growth are UNKNOWN, never OK."""
    found = sweep_workers(f"{refusing_url}/metrics", interval_s=0.3, timeout_s=1.0)
    assert [Status.UNKNOWN, Status.UNKNOWN] == [f.status for f in found]


def test_unreachable_database_is_one_finding(
    monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    """A database that refuses connections: one CRITICAL/UNKNOWN finding, routed to
    service-down when CRITICAL, the session checks not repeated."""
    monkeypatch.setenv("TRIAGE_TEST_DSN", f"postgresql://u@127.0.0.1:{closed_port}/db")
    found = sweep_database("TRIAGE_TEST_DSN", timeout_s=1.0)
    assert ["database.connectivity"] == [f.check for f in found]
    assert found[0].status >= Status.UNKNOWN
    assert "u@" not in found[0].summary + found[0].source  # no DSN in the finding
