"""Tests for aura_ops.metrics / prometheus / testing_prometheus against real servers.

A real HTTP server in a thread exposes known counters and histograms with prometheus_client
(its own CollectorRegistry); a real Prometheus scrapes it every second. Baseline traffic:
GET /api/projects 100 × 200 (20 ms), POST /api/render 50 of which 30 × 500 (40 × 0.3 s,
10 × 3 s), GET /api/slow 10 × 200 (20 s, beyond the largest bucket). Every later "tick" adds
traffic in the same proportions, so ratios and quantiles over any window equal the baseline's.
"""

from __future__ import annotations

import contextlib
import http.server
import inspect
import json
import math
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pandas as pd
import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from aura_ops.errors import QueryError, SourceTimeoutError, SourceUnavailableError
from aura_ops.findings import Status
from aura_ops.metrics import (
    bucket_quantile,
    check_error_ratio,
    check_latency_p95,
    duration_s,
    fetch_series,
)
from aura_ops.metrics_resources import check_cpu, check_memory, check_queue_depth, check_restarts
from aura_ops.prometheus import query, query_range, scrape
from aura_ops.prometheus_checks import check_prometheus_up, check_targets
from aura_ops.testing_prometheus import (
    find_alertmanager,
    find_prometheus,
    free_port,
    start_alertmanager,
    start_prometheus,
)

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
#: p95 by Prometheus' interpolation: 0.01 + 0.015 × 0.95 s and 2.5 + 2.5 × 7.5/10 s.
P95_PROJECTS_MS = 24.25
P95_RENDER_MS = 4375.0


def need(binary: str | None, what: str) -> str:
    """The binary's path; skip outside CI when it is missing, fail under CI."""
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} is not installed (CI must install it)")
        pytest.skip(f"{what} is not installed")
    return binary


class App:
    """Known metrics behind a lock, so a scrape never sees half a tick."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.lock = threading.Lock()
        self.requests = Counter(
            "aura_http_requests", "requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "aura_http_request_duration_seconds",
            "latency",
            ["method", "route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.queue = Gauge("aura_queue_depth", "queue", registry=self.registry)
        self.leak = Gauge("leaky_resident_memory_bytes", "a leak", registry=self.registry)
        self.restarts = Counter(
            "kube_pod_container_status_restarts",
            "restarts",
            ["namespace", "pod", "container"],
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)
        self.ticks = 0
        for _ in range(10):
            self.tick()

    def tick(self) -> None:
        """One tenth of the baseline traffic; the queue and the leak grow, a pod restarts."""
        with self.lock:
            self.ticks += 1
            self.queue.set(120 + self.ticks)
            self.leak.set(100 * 2**20 + self.ticks * 2**20)
            if self.ticks % 10 == 0:
                self.restarts.labels("aura", "aura-api-1", "api").inc()
            for _ in range(10):
                self.requests.labels("GET", "/api/projects", "200").inc()
                self.latency.labels("GET", "/api/projects").observe(0.02)
            for status, seconds in (("500", 0.3), ("500", 0.3), ("500", 0.3), ("200", 0.3)):
                self.requests.labels("POST", "/api/render", status).inc()
                self.latency.labels("POST", "/api/render").observe(seconds)
            self.requests.labels("POST", "/api/render", "200").inc()
            self.latency.labels("POST", "/api/render").observe(3.0)
            self.requests.labels("GET", "/api/slow", "200").inc()
            self.latency.labels("GET", "/api/slow").observe(20.0)

    def exposition(self) -> bytes:
        with self.lock:
            return generate_latest(self.registry)


#: errorType → HTTP status, as Prometheus' api.go answers them.
ERROR_STATUS = {"bad_data": 400, "execution": 422, "timeout": 503, "canceled": 499}
ERROR_STATUS |= {"unavailable": 500, "internal": 500, "not_found": 404}


def prometheus3_answer(path: str) -> tuple[int, bytes]:
    """Canned Prometheus 3.x answers: ``query=error:<errorType>`` or a vector with infos."""
    promql = parse_qs(urlsplit(path).query)["query"][0]
    if promql.startswith("error:"):
        kind = promql.removeprefix("error:")
        envelope = {"status": "error", "errorType": kind, "error": f"{kind} happened"}
        return ERROR_STATUS[kind], json.dumps(envelope).encode()
    native = {"count": "3", "sum": "1.5", "buckets": [[0, "0.5", "1", "3"]]}
    result = [
        {"metric": {"le": "1.0", "route": "/a"}, "value": [1767225600.5, "+Inf"]},
        {"metric": {"route": "/b"}, "histogram": [1767225600.5, native]},
    ]
    envelope = {
        "status": "success",
        "data": {"resultType": "vector", "result": result},
        "warnings": ["PromQL warning: be careful"],
        "infos": ["PromQL info: metric might not be a counter"],
    }
    return 200, json.dumps(envelope).encode()


def _handler(app: App) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 -- http.server's name
            routes = {
                "/metrics": (200, app.exposition()),
                "/garbage": (200, b"<html><body>Welcome to nginx!</body></html>"),
                "/fail": (503, b"upstream unavailable"),
            }
            status, body = routes.get(self.path, (404, b"not found"))
            if self.path.startswith("/prom3/api/v1/query?"):
                status, body = prometheus3_answer(self.path)
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def app() -> App:
    """The metrics with the baseline traffic."""
    return App()


@contextlib.contextmanager
def serve(app: App) -> Iterator[str]:
    """Base URL of a real HTTP server in a thread serving the app's /metrics."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(app))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def server(app: App) -> Iterator[str]:
    """The shared app's server (other tests may add traffic to it)."""
    with serve(app) as url:
        yield url


@pytest.fixture
def quiet_server() -> Iterator[str]:
    """A server of a fresh app with the baseline traffic only, which nothing else touches."""
    with serve(App()) as url:
        yield url


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def hanging() -> Iterator[str]:
    """URL of a socket that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(sock.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    sock.close()


@contextlib.contextmanager
def traffic(app: App, every_s: float = 0.2) -> Iterator[None]:
    """Keep ticking the app in a background thread."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every_s):
            app.tick()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(2)


RULES = Path(__file__).parent / "fixtures" / "metrics" / "rules.yml"


@pytest.fixture(scope="module")
def alertmanager() -> Iterator[str]:
    """URL of a real Alertmanager (clustering off) that receives the test rules' alerts."""
    binary = need(find_alertmanager(), "alertmanager")
    with start_alertmanager(binary=binary) as am:
        yield am.url


@pytest.fixture(scope="module")
def prometheus(app: App, server: str, alertmanager: str) -> Iterator[str]:
    """URL of a real Prometheus scraping the server every second, with 6 s of data."""
    binary = need(find_prometheus(), "prometheus")
    targets = {"aura": [f"{server}/metrics"], "dead": [f"127.0.0.1:{free_port()}"]}
    with (
        start_prometheus(
            targets, rule_files=[RULES], alertmanager_urls=[alertmanager], binary=binary
        ) as prom,
        traffic(app),
    ):
        deadline = time.monotonic() + 25
        promql = 'count_over_time(up{job="aura"}[1m]) >= 6'  # 6 s of data: rate(), trends
        while time.monotonic() < deadline:
            if len(query(prom.url, promql)):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"Prometheus never had six scrapes:\n{prom.log_tail()}")
        yield prom.url


def by_subject(findings: list) -> dict:
    return {f.subject: f for f in findings}


# --------------------------------------------------------------------------- pure helpers


def test_bucket_quantile_interpolates_like_prometheus() -> None:
    """The interpolation matches Prometheus' histogram_quantile, incl. the top bucket."""
    buckets = [(0.01, 0), (0.025, 100), (math.inf, 100)]
    assert pytest.approx(bucket_quantile(0.95, buckets)) == (0.02425, False)
    assert bucket_quantile(0.95, [(1, 0), (10, 0), (math.inf, 5)]) == (10.0, True)
    assert math.isnan(bucket_quantile(0.95, [(1, 0), (math.inf, 0)])[0])


def test_duration_s_parses_prometheus_durations() -> None:
    """Prometheus durations become seconds."""
    assert [duration_s("5m"), duration_s("1h30m"), duration_s("500ms")] == [300.0, 5400.0, 0.5]


# --------------------------------------------------------------------------- direct scrape


def test_scrape_parses_samples_with_label_columns(quiet_server: str) -> None:
    """A scrape gives one row per sample with name, labels dict, value and label columns."""
    df = scrape(f"{quiet_server}/metrics")
    rows = df[(df["name"] == "aura_http_requests_total") & (df["route"] == "/api/render")]
    assert dict(zip(rows["status"], rows["value"], strict=True)) == {"200": 20.0, "500": 30.0}
    assert {"method": "POST", "route": "/api/render", "status": "500"} in list(rows["labels"])


def test_direct_error_ratio_uses_cumulative_counters_without_traffic(quiet_server: str) -> None:
    """Without traffic between scrapes the counters since start are judged, and said so."""
    server = quiet_server
    findings = check_error_ratio(metrics_url=f"{server}/metrics", interval_s=0.3)
    render = by_subject(findings)["POST /api/render"]
    assert render.status == Status.CRITICAL
    assert "POST /api/render: 60 % of requests failed with 5xx (30 of 50" in render.summary
    assert "since process start" in render.summary
    assert findings[-1].status == Status.OK
    assert "GET /api/projects 0 %" in findings[-1].summary
    assert findings[-1].source.startswith(f"GET {server}/metrics")
    assert "check_error_ratio(metrics_url=" in render.reproduce


def test_direct_error_ratio_uses_deltas_with_traffic(app: App, server: str) -> None:
    """With traffic between the two scrapes the ratio is computed from the deltas."""
    with traffic(app, every_s=0.05):
        findings = check_error_ratio(metrics_url=f"{server}/metrics", interval_s=0.5)
    render = by_subject(findings)["POST /api/render"]
    assert pytest.approx(render.observed, abs=0.01) == 0.6
    assert "in 0.5 s" in render.summary


def test_direct_latency_p95(quiet_server: str) -> None:
    """p95 per endpoint from the scraped buckets, '≥' when beyond the largest bucket."""
    url = f"{quiet_server}/metrics"
    findings = by_subject(check_latency_p95(metrics_url=url, interval_s=0))
    assert findings["POST /api/render"].status == Status.CRITICAL
    assert pytest.approx(findings["POST /api/render"].observed, rel=1e-3) == P95_RENDER_MS
    assert "≥ 10000 ms (above the largest bucket)" in findings["GET /api/slow"].summary
    ok = findings["aura_http_request_duration_seconds"]
    assert ok.status == Status.OK
    assert "GET /api/projects 24.2 ms" in ok.summary


# --------------------------------------------------------------------------- failing sources


ALL_CHECKS = [
    check_error_ratio,
    check_latency_p95,
    check_memory,
    check_cpu,
    check_restarts,
    check_queue_depth,
]


def call(check: Any, **kwargs: Any) -> list:
    """Call a check with interval_s=0 where it takes one."""
    if "interval_s" in inspect.signature(check).parameters:
        kwargs.setdefault("interval_s", 0)
    return check(**kwargs)


@pytest.mark.parametrize("check", ALL_CHECKS)
def test_unreachable_metrics_is_unknown(check: Any, closed_port: int) -> None:
    """A closed port gives one UNKNOWN finding naming the URL, from every check."""
    url = f"http://127.0.0.1:{closed_port}/metrics"
    findings = call(check, metrics_url=url, timeout_s=2)
    assert [f.status for f in findings] == [Status.UNKNOWN]
    assert url in findings[0].summary and "unreachable" in findings[0].summary


@pytest.mark.parametrize("check", ALL_CHECKS)
def test_unreachable_prometheus_is_unknown(check: Any, closed_port: int) -> None:
    """A closed Prometheus port gives one UNKNOWN finding, from every check."""
    findings = call(check, prometheus_url=f"http://127.0.0.1:{closed_port}", timeout_s=2)
    assert [f.status for f in findings] == [Status.UNKNOWN]
    assert "Prometheus" in findings[0].subject and "unreachable" in findings[0].summary


@pytest.mark.parametrize("check", ALL_CHECKS)
def test_refusing_metrics_is_unknown(check: Any, server: str) -> None:
    """An HTTP 503 gives UNKNOWN with the status code, from every check."""
    findings = call(check, metrics_url=f"{server}/fail")
    assert [f.status for f in findings] == [Status.UNKNOWN]
    assert "HTTP 503" in findings[0].summary


def test_refusing_prometheus_is_unknown(server: str) -> None:
    """A Prometheus URL answering HTTP 503 gives UNKNOWN."""
    findings = check_error_ratio(prometheus_url=f"{server}/fail")
    assert [f.status for f in findings] == [Status.UNKNOWN]
    assert "HTTP" in findings[0].summary


def test_hanging_metrics_is_unknown_within_timeout(hanging: str) -> None:
    """A socket that never answers gives UNKNOWN after about timeout_s."""
    started = time.monotonic()
    findings = check_latency_p95(metrics_url=f"{hanging}/metrics", interval_s=0, timeout_s=1)
    assert time.monotonic() - started < 3
    assert [f.status for f in findings] == [Status.UNKNOWN]
    assert "did not answer within 1 s" in findings[0].summary
    with pytest.raises(SourceTimeoutError):
        scrape(f"{hanging}/metrics", timeout_s=0.5)


def test_garbage_exposition_is_unknown(server: str) -> None:
    """An HTML page where /metrics was expected gives UNKNOWN, and scrape raises QueryError."""
    findings = check_error_ratio(metrics_url=f"{server}/garbage", interval_s=0)
    assert [f.status for f in findings] == [Status.UNKNOWN]
    assert "not a Prometheus exposition" in findings[0].summary
    with pytest.raises(QueryError):
        scrape(f"{server}/garbage")


def test_wrong_counter_name_is_unknown(server: str) -> None:
    """A counter that the endpoint does not expose is UNKNOWN, never OK."""
    findings = check_error_ratio(metrics_url=f"{server}/metrics", interval_s=0, counter="nope")
    assert [f.status for f in findings] == [Status.UNKNOWN]
    assert "no nope samples" in findings[0].summary


def test_label_names_are_parameters(quiet_server: str) -> None:
    """A missing method label is tolerated; a wrong status label is UNKNOWN, never OK."""
    url = f"{quiet_server}/metrics"
    findings = by_subject(check_error_ratio(metrics_url=url, interval_s=0, method_label="verb"))
    assert findings["/api/render"].status == Status.CRITICAL
    wrong = check_error_ratio(metrics_url=url, interval_s=0, status_label="code")
    assert [f.status for f in wrong] == [Status.UNKNOWN]
    assert "has no label ['code']" in wrong[0].summary


def test_no_source_is_unknown() -> None:
    """Calling a check without any URL is UNKNOWN, not an exception."""
    assert [f.status for f in check_error_ratio()] == [Status.UNKNOWN]


def test_prometheus_api_errors_are_typed(server: str, closed_port: int, hanging: str) -> None:
    """Unreachable, non-Prometheus and hanging API endpoints raise the matching errors."""
    with pytest.raises(SourceUnavailableError, match="unreachable"):
        query(f"http://127.0.0.1:{closed_port}", "up", timeout_s=1)
    with pytest.raises(SourceUnavailableError, match="HTTP 404"):
        query(server, "up", timeout_s=1)
    with pytest.raises(SourceTimeoutError):
        query(hanging, "up", timeout_s=0.5)
    assert check_prometheus_up(hanging, timeout_s=0.5)[0].status == Status.UNKNOWN


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("bad_data", QueryError),
        ("execution", QueryError),
        ("not_found", QueryError),
        ("timeout", SourceTimeoutError),
        ("canceled", SourceUnavailableError),
        ("unavailable", SourceUnavailableError),
        ("internal", SourceUnavailableError),
    ],
)
def test_api_error_types_map_to_typed_errors(server: str, kind: str, error: type) -> None:
    """Each Prometheus errorType raises the matching aura-ops error."""
    with pytest.raises(error, match=f"{kind} happened") as info:
        query(f"{server}/prom3", f"error:{kind}")
    assert type(info.value) is error


def test_prometheus3_shapes_are_read(server: str) -> None:
    """Prometheus 3.x answers: float-form le, ±Inf strings, native histograms, infos."""
    df = query(f"{server}/prom3", "anything")
    assert df.attrs["infos"] == ["PromQL info: metric might not be a counter"]
    assert df.attrs["warnings"] == ["PromQL warning: be careful"]
    assert df["value"][0] == math.inf and df["le"][0] == "1.0"
    assert math.isnan(df["value"][1]) and df["histogram"][1]["count"] == "3"
    assert str(df["ts"][0]) == "2026-01-01 00:00:00.500000+00:00"


# --------------------------------------------------------------------------- real Prometheus


def test_prometheus_error_ratio_agrees_with_the_counters(prometheus: str) -> None:
    """Prometheus' windowed 5xx ratio per endpoint equals the server's own counters."""
    findings = by_subject(check_error_ratio(prometheus_url=prometheus, window="15s"))
    render = findings["POST /api/render"]
    assert render.status == Status.CRITICAL
    assert pytest.approx(render.observed, abs=0.01) == 0.6
    assert "in the last 15s" in render.summary
    assert "increase(aura_http_requests_total[15s])" in render.source
    assert findings["aura_http_requests_total"].status == Status.OK


def test_prometheus_wrong_status_label_is_unknown(prometheus: str) -> None:
    """A status label that the series do not carry is UNKNOWN, not a 0 % error ratio."""
    findings = check_error_ratio(prometheus_url=prometheus, window="15s", status_label="code")
    assert [f.status for f in findings] == [Status.UNKNOWN]
    assert "have no label ['code']" in findings[0].summary


def test_prometheus_latency_p95_agrees_with_the_histogram(prometheus: str) -> None:
    """histogram_quantile in Prometheus gives the same p95 as the local interpolation."""
    findings = by_subject(check_latency_p95(prometheus_url=prometheus, window="15s"))
    assert pytest.approx(findings["POST /api/render"].observed, rel=0.01) == P95_RENDER_MS
    assert findings["GET /api/slow"].summary.startswith("GET /api/slow: p95 latency ≥ 10000 ms")
    assert findings["POST /api/render"].source.startswith("histogram_quantile(0.95, sum by (")
    ok = findings["aura_http_request_duration_seconds"]
    assert "GET /api/projects 24.2 ms" in ok.summary


def test_query_shapes_and_errors(prometheus: str) -> None:
    """Values are floats incl. NaN/Inf, labels are columns, bad PromQL is a QueryError."""
    df = query(prometheus, 'label_replace(vector(1) / 0, "who", "x", "", "")')
    assert (math.inf, "x") == (df["value"][0], df["who"][0])
    assert math.isnan(query(prometheus, "vector(0) / 0")["value"][0])
    assert query(prometheus, "scalar(vector(2))").attrs["result_type"] == "scalar"
    with pytest.raises(QueryError, match="bad_data"):
        query(prometheus, "sum(rate(up[5m]")
    end = pd.Timestamp.now(tz="UTC")
    rng = query_range(prometheus, "up", end - pd.Timedelta("5s"), end, 1)
    assert {"instance", "job"} <= set(rng.columns) and len(rng) >= 2
    assert isinstance(rng.attrs["warnings"], list)


def test_fetch_series_for_plotting(prometheus: str) -> None:
    """fetch_series gives ts/value/series rows sorted for plotting."""
    df = fetch_series(prometheus, "sum by (route) (aura_http_requests_total)", window="10s")
    assert list(df.columns[:3]) == ["ts", "value", "series"]
    assert {"route=/api/projects", "route=/api/render", "route=/api/slow"} == set(df["series"])


def test_prometheus_up_and_targets(prometheus: str, closed_port: int) -> None:
    """Prometheus reports ready, its service target is up, and a dead target is CRITICAL."""
    up = check_prometheus_up(prometheus)
    assert [f.status for f in up] == [Status.OK] and "is ready" in up[0].summary
    assert [f.status for f in check_targets(prometheus, job="aura")] == [Status.OK]
    deadline = time.monotonic() + 5
    while (findings := check_targets(prometheus))[0].status != Status.CRITICAL:
        assert time.monotonic() < deadline, findings
        time.sleep(0.2)
    assert findings[0].summary.startswith("job dead: 1 of 1 scrape targets down")
    assert [f.status for f in findings] == [Status.CRITICAL, Status.OK]
    assert check_targets(f"http://127.0.0.1:{closed_port}")[0].status == Status.UNKNOWN


def test_prometheus_down_falls_back_to_scrape(server: str, closed_port: int) -> None:
    """With both sources, a dead Prometheus is UNKNOWN and the direct scrape still judges."""
    findings = check_error_ratio(
        prometheus_url=f"http://127.0.0.1:{closed_port}",
        metrics_url=f"{server}/metrics",
        interval_s=0,
        timeout_s=1,
    )
    assert findings[0].status == Status.UNKNOWN and "Prometheus" in findings[0].subject
    assert Status.CRITICAL in [f.status for f in findings[1:]]


def test_alertmanager_starts_and_receives_alerts(prometheus: str, alertmanager: str) -> None:
    """start_alertmanager gives a ready Alertmanager that gets the rule file's alert."""
    assert httpx.get(f"{alertmanager}/-/ready", timeout=5).status_code == 200
    assert alertmanager.startswith("http://127.0.0.1:")
    deadline = time.monotonic() + 15
    names: list[str] = []
    while "AuraHighErrorRate" not in names:
        assert time.monotonic() < deadline, f"no alert in Alertmanager: {names}"
        time.sleep(0.3)
        alerts = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()
        names = [a["labels"]["alertname"] for a in alerts]
    render = [a for a in alerts if a["labels"].get("route") == "/api/render"]
    assert render[0]["labels"]["runbook"] == "high-error-rate"


def test_alertmanager_process_is_gone_after_exit(tmp_path: Path) -> None:
    """Leaving the context manager stops Alertmanager; a given work_dir keeps config and log."""
    binary = need(find_alertmanager(), "alertmanager")
    with start_alertmanager(binary=binary, work_dir=tmp_path) as am:
        assert httpx.get(f"{am.url}/-/ready", timeout=5).status_code == 200
    assert am.process.poll() is not None
    assert (tmp_path / "alertmanager.yml").exists() and am.log_path.read_text()


# --------------------------------------------------------------------------- resources


def test_direct_resources(server: str) -> None:
    """Memory, CPU, uptime and queue depth from one scrape of the real process metrics."""
    url = f"{server}/metrics"
    memory = check_memory(metrics_url=url)
    assert [f.status for f in memory] == [Status.OK]
    assert "growth not measured" in memory[0].summary
    cpu = check_cpu(metrics_url=url, interval_s=0.3)
    assert [f.status for f in cpu] == [Status.OK] and "CPU cores over 0." in cpu[0].summary
    restarted = check_restarts(metrics_url=url, window="1h")[0]
    assert restarted.status == Status.WARNING and "restarted or redeployed" in restarted.summary
    assert "up for" in check_restarts(metrics_url=url, window="1s")[0].summary
    queue = check_queue_depth(metrics_url=url, interval_s=0)
    assert queue[0].status == Status.CRITICAL
    assert re.search(r"queue depth \d+ \(limit 50\), trend unknown", queue[0].summary)


def test_direct_queue_depth_rising(app: App, server: str) -> None:
    """Two scrapes with the queue growing in between report it rising."""
    with traffic(app, every_s=0.05):
        queue = check_queue_depth(metrics_url=f"{server}/metrics", interval_s=0.5)
    assert queue[0].status == Status.CRITICAL and "rising" in queue[0].summary


def test_prometheus_memory_leak(prometheus: str) -> None:
    """A steadily climbing resident-memory gauge is CRITICAL with the leak signal named."""
    findings = check_memory(
        prometheus_url=prometheus, metric="leaky_resident_memory_bytes", window="10s"
    )
    assert findings[0].status == Status.CRITICAL
    assert "memory-leak signal" in findings[0].summary
    assert "deriv(leaky_resident_memory_bytes[10s])" in findings[0].source
    assert [f.status for f in check_memory(prometheus_url=prometheus)] == [Status.OK]


def test_prometheus_cpu_queue_and_restarts(prometheus: str) -> None:
    """CPU rate, a rising queue and kube-state-metrics restarts come from PromQL."""
    cpu = check_cpu(prometheus_url=prometheus, window="10s")
    assert [f.status for f in cpu] == [Status.OK] and cpu[0].source.startswith("rate(")
    queue = check_queue_depth(prometheus_url=prometheus, window="10s")
    assert queue[0].status == Status.CRITICAL and "rising" in queue[0].summary
    restarts = check_restarts(prometheus_url=prometheus, window="15s")
    assert restarts[0].status == Status.CRITICAL
    assert restarts[0].subject.startswith("container=api, namespace=aura, pod=aura-api-1")
    assert "kube_pod_container_status_restarts_total" in restarts[0].source
