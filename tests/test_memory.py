"""aura_ops.memory: sampled resident-memory growth and OOM kills, against real servers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pandas as pd
import pytest
from matplotlib.figure import Figure
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from aura_ops import memory
from aura_ops.findings import Status
from aura_ops.kube_fixture import KubeFixtureServer
from aura_ops.sandbox import kube_state

MIB = 1024**2


class Exposition:
    """A /metrics endpoint whose resident-memory gauge moves by ``step_bytes`` per scrape."""

    def __init__(self, start_bytes: float, step_bytes: float, status: int = 200) -> None:
        self.registry = CollectorRegistry()
        self.gauge = Gauge("process_resident_memory_bytes", "RSS", registry=self.registry)
        self.value, self.step, self.status = start_bytes, step_bytes, status

    def body(self) -> bytes:
        self.gauge.set(self.value)
        self.value += self.step
        return generate_latest(self.registry)


def _serve(expo: Exposition) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            body = expo.body() if expo.status == 200 else b"upstream exploded"
            self.send_response(expo.status)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/metrics"


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []

    def start(expo: Exposition) -> str:
        httpd, url = _serve(expo)
        servers.append(httpd)
        return url

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
    """A socket that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/metrics"
    sock.close()


def test_fit_trend_finds_a_straight_climb() -> None:
    """A straight line has its slope and R² 1; flat noise has R² near 0."""
    rows = [{"series": "a", "t_s": t, "value": 100 + 3 * t} for t in range(5)]
    rows += [{"series": "b", "t_s": t, "value": 50 + (t % 2) * 0.1} for t in range(5)]
    trend = memory.fit_trend(pd.DataFrame(rows)).set_index("series")
    assert 3.0 == pytest.approx(trend.loc["a", "slope_per_s"])
    assert 1.0 == pytest.approx(trend.loc["a", "r2"])
    assert trend.loc["b", "r2"] < 0.5


def test_steady_climb_is_the_memory_leak_signal(serve: Any) -> None:
    """Memory rising 20 MiB per scrape is CRITICAL, names the climb and is marked the cause."""
    url = serve(Exposition(200 * MIB, 20 * MIB))
    samples = memory.load_gauge_samples(url, samples=4, interval_s=0.2)
    findings = memory.check_memory_growth(samples)
    assert [Status.CRITICAL] == [f.status for f in findings]
    assert "memory-leak signal" in findings[0].summary
    assert "resident memory" in findings[0].summary
    assert "cause" == findings[0].labels["role"]
    assert "load_gauge_samples(" in findings[0].reproduce


def test_flat_memory_is_ok(serve: Any) -> None:
    """Memory moving by a few kilobytes is steady: OK, not a leak."""
    url = serve(Exposition(300 * MIB, 4096))
    findings = memory.check_memory_growth(memory.load_gauge_samples(url, samples=4, interval_s=0.1))
    assert [Status.OK] == [f.status for f in findings]
    assert "steady" in findings[0].summary


def test_level_above_the_limit_is_critical(serve: Any) -> None:
    """A flat 3 GiB is above the 2 GiB default: CRITICAL even without growth."""
    url = serve(Exposition(3 * 1024 * MIB, 0))
    findings = memory.check_memory_growth(memory.load_gauge_samples(url, samples=3, interval_s=0.1))
    assert Status.CRITICAL == findings[0].status


def test_unreachable_metrics_is_unknown(closed_port: int) -> None:
    """A closed port gives UNKNOWN naming the reason, never OK."""
    url = f"http://127.0.0.1:{closed_port}/metrics"
    findings = memory.check_memory_growth(memory.load_gauge_samples(url, samples=2))
    assert [Status.UNKNOWN] == [f.status for f in findings]


def test_refusing_metrics_is_unknown(serve: Any) -> None:
    """HTTP 500 from /metrics gives UNKNOWN."""
    url = serve(Exposition(0, 0, status=500))
    findings = memory.check_memory_growth(memory.load_gauge_samples(url, samples=2))
    assert [Status.UNKNOWN] == [f.status for f in findings]
    assert "500" in findings[0].summary


def test_hanging_metrics_is_unknown_within_timeout(hanging: str) -> None:
    """A socket that never answers gives UNKNOWN within the timeout."""
    t0 = time.monotonic()
    samples = memory.load_gauge_samples(hanging, samples=3, timeout_s=0.5)
    findings = memory.check_memory_growth(samples)
    assert [Status.UNKNOWN] == [f.status for f in findings]
    assert time.monotonic() - t0 < 3


def test_missing_metric_is_unknown(serve: Any) -> None:
    """An exposition without the gauge gives UNKNOWN naming the metric."""
    url = serve(Exposition(1, 0))
    findings = memory.check_memory_growth(memory.load_gauge_samples(url, "no_such_metric"))
    assert Status.UNKNOWN == findings[0].status
    assert "no_such_metric" in findings[0].summary


def test_plot_returns_a_figure(serve: Any) -> None:
    """The samples plot is a matplotlib Figure, also for an empty frame."""
    url = serve(Exposition(100 * MIB, MIB))
    assert isinstance(memory.plot_gauge_samples(memory.load_gauge_samples(url, samples=2)), Figure)
    assert isinstance(
        memory.plot_gauge_samples(pd.DataFrame(columns=["series", "t_s", "value"])), Figure
    )


def test_oom_killed_containers_are_the_cause() -> None:
    """The OOM-killed state gives a WARNING naming OOMKilled, marked as the cause."""
    with KubeFixtureServer(kube_state.oom_killed_state(), shift_to_now=False) as kube:
        findings = memory.check_oom_kills(kube.url, label_selector="app=aura-api")
    by_check = {f.check: f for f in findings}
    assert Status.WARNING == by_check["kube.oomkilled"].status
    assert "OOMKilled" in by_check["kube.oomkilled"].summary
    assert "cause" == by_check["kube.oomkilled"].labels["role"]
    assert Status.CRITICAL == by_check["kube.pod_memory"].status
    assert Status.WARNING == by_check["kube.events"].status


def test_healthy_pods_are_ok() -> None:
    """The healthy state gives only OK findings."""
    with KubeFixtureServer(kube_state.healthy_state(), shift_to_now=False) as kube:
        findings = memory.check_oom_kills(kube.url, label_selector="app=aura-api")
    assert {Status.OK} == {f.status for f in findings}


def test_unreachable_kube_is_unknown(closed_port: int) -> None:
    """A closed Kubernetes API port gives UNKNOWN findings, never OK."""
    findings = memory.check_oom_kills(f"http://127.0.0.1:{closed_port}", timeout_s=1)
    assert {Status.UNKNOWN} == {f.status for f in findings}


def test_forbidden_kube_is_unknown() -> None:
    """A 403 from the API server gives UNKNOWN for the pods."""
    state = {**kube_state.healthy_state(), "errors": {"pods": 403}}
    with KubeFixtureServer(state, shift_to_now=False) as kube:
        findings = memory.check_oom_kills(kube.url, timeout_s=2)
    assert Status.UNKNOWN == next(f for f in findings if f.check.startswith("kube.pod")).status


def test_hanging_kube_is_unknown_within_timeout(hanging: str) -> None:
    """An API server that never answers gives UNKNOWN within the timeouts."""
    t0 = time.monotonic()
    findings = memory.check_oom_kills(hanging.removesuffix("/metrics"), timeout_s=0.5)
    assert {Status.UNKNOWN} == {f.status for f in findings}
    assert time.monotonic() - t0 < 5
