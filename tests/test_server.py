"""The webhook receiver (aura_ops.server, runstore, server_workers) with a fake runner injected.

The app runs in a real uvicorn server on loopback (one ASGITransport test too); only the runner
function is fake, except in the last tests, which execute real notebooks.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import hmac
import json
import sqlite3
import statistics
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aura_ops.alert_routes import load_routes
from aura_ops.errors import ConfigError
from aura_ops.redact import Redactor
from aura_ops.runstore import RunStore
from aura_ops.server import AlertService, ServeOptions, create_app
from aura_ops.server_workers import (
    Job,
    RedactingFilter,
    RunOutcome,
    SlackNotifier,
    lock_database,
    papermill_runner,
)

from .conftest import hanging_server, serve_in_thread
from .test_alerts import FIXTURES, add_alerted_runbook

AM_TOKEN = "am-token-0123456789"
PD_SECRET = "pd-new-secret-456"
GRAFANA_SECRET = "grafana-hmac-secret-789"
ENV = {
    "AURA_OPS_ALERTMANAGER_TOKEN": f"am-old-token-000,{AM_TOKEN}",
    "AURA_OPS_GRAFANA_SECRET": GRAFANA_SECRET,
    "AURA_OPS_PAGERDUTY_SECRETS": PD_SECRET,
}
ROUTES = """
defaults: {environment: staging, lookback_minutes: 10}
routes:
  - name: echo
    match: {alertname: EchoAlert}
    runbook: alerted
    params: {subject: labels.subject}
  - name: permissive
    match: {alertname: AnythingGoes}
    runbook: alerted
    params: {subject: {from: labels.subject, pattern: ".*"}}
  - name: pagerduty
    sources: [pagerduty]
    runbook: alerted
history: {token_env: TEST_HISTORY_TOKEN}
"""


class FakeRunner:
    """Records jobs; optionally blocks until ``gate`` is set; writes a tiny report."""

    def __init__(self, output_root: Path, *, gate: threading.Event | None = None) -> None:
        self.output_root = output_root
        self.gate = gate
        self.jobs: list[Job] = []
        self.error: Exception | None = None
        self._lock = threading.Lock()

    def __call__(self, job: Job) -> RunOutcome:
        with self._lock:
            self.jobs.append(job)
            n = len(self.jobs)
        if self.gate is not None:
            self.gate.wait(20)
        if self.error is not None:
            raise self.error
        run_dir = self.output_root / f"run-{job.run_id}-{n}-{uuid.uuid4().hex[:6]}"
        run_dir.mkdir(parents=True)
        (run_dir / "report.html").write_text(f"<h1>report of run {job.run_id}</h1>")
        return RunOutcome("CRITICAL", f"fake verdict for {job.params.get('subject')}", str(run_dir))


@dataclasses.dataclass
class Receiver:
    """A running receiver and helpers to post to it."""

    url: str
    store: RunStore
    runner: FakeRunner
    app: Starlette
    client: httpx.Client

    def post(
        self, source: str, doc: Any, *, headers: Mapping[str, str] | None = None, sign: bool = True
    ) -> httpx.Response:
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        h = {"Content-Type": "application/json"}
        if sign and source == "alertmanager":
            h["Authorization"] = f"Bearer {AM_TOKEN}"
        if sign and source == "grafana":
            h["X-Grafana-Alerting-Signature"] = _hmac(GRAFANA_SECRET, body)
        if sign and source == "pagerduty":
            h["X-PagerDuty-Signature"] = (
                f"v1={_hmac('pd-old-secret', body)},v1={_hmac(PD_SECRET, body)}"
            )
        return self.client.post(f"/{source}", content=body, headers={**h, **(headers or {})})

    def wait(self, *, done: int, timeout_s: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            runs = self.store.list_runs(limit=1000)
            if sum(r["state"] in ("done", "failed") for r in runs) >= done:
                return runs
            time.sleep(0.05)
        raise AssertionError(f"fewer than {done} finished runs: {self.store.stats()}")


def _hmac(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def am_alert(
    subject: str = "api",
    *,
    name: str = "EchoAlert",
    fingerprint: str = "0123456789abcdef",
    starts_at: str = "2026-11-23T10:15:00Z",
    status: str = "firing",
    **labels: str,
) -> dict[str, Any]:
    """One alert in Alertmanager's webhook shape."""
    return {
        "status": status,
        "labels": {"alertname": name, "subject": subject, **labels},
        "annotations": {"summary": f"{name} on {subject}"},
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": fingerprint,
    }


def am_doc(*alerts: dict[str, Any]) -> dict[str, Any]:
    """An Alertmanager v4 payload around ``alerts``."""
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {
        "version": "4",
        "groupKey": "{}:{}",
        "status": status,
        "receiver": "aura-ops",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am:9093",
        "truncatedAlerts": 0,
        "alerts": list(alerts),
    }


@contextlib.contextmanager
def receiver(
    project: Path,
    *,
    env: Mapping[str, str] = ENV,
    runner: FakeRunner | None = None,
    store: RunStore | None = None,
    options: ServeOptions | None = None,
    **store_kw: Any,
) -> Iterator[Receiver]:
    """A receiver over the test project, with a fake runner unless one is given."""
    add_alerted_runbook(project)
    (project / "routes.yaml").write_text(ROUTES)
    routes = load_routes(project / "routes.yaml", project)
    out = project / "outputs"
    store = store or RunStore(project / "outputs" / "aura-ops.db", **store_kw)
    runner = runner or FakeRunner(out)
    opts = options or ServeOptions(workers=2, run_timeout_s=30, max_body_bytes=64 * 1024)
    opts.output_root = out
    app = create_app(store, routes, runner=runner, options=opts, environ=dict(env))
    try:
        with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as client:
            yield Receiver(url, store, runner, app, client)
    finally:
        store.close()


# --- the happy path --------------------------------------------------------------------------


def test_alert_runs_its_runbook_and_is_listed(project: Path) -> None:
    """A routed alert is answered 202, runs once with its labels, and is listed with a report."""
    with receiver(project) as rx:
        resp = rx.post("alertmanager", am_doc(am_alert("checkout")))
        assert (resp.status_code, resp.json()["runs_queued"]) == (202, 1)
        rx.wait(done=1)
        (job,) = rx.runner.jobs
        assert (job.runbook, job.environment, job.timeout_s) == ("alerted", "staging", 30)
        expected = {"subject": "checkout", "window_start": "2026-11-23T10:05:00+00:00"}
        assert expected == dict(job.params)
        (run,) = rx.client.get("/runs").json()["runs"]
        assert (
            run["state"],
            run["verdict"],
            run["headline"],
            run["alertname"],
        ) == ("done", "CRITICAL", "fake verdict for checkout", "EchoAlert")
        assert run["report_url"].endswith(f"/runs/{run['id']}/report")
        assert "run_dir" not in run
        report = rx.client.get(f"/runs/{run['id']}/report")
        assert (200, f"<h1>report of run {run['id']}</h1>") == (report.status_code, report.text)
        assert "default-src 'none'" in report.headers["content-security-policy"]
        page = rx.client.get("/runs", headers={"Accept": "text/html"})
        assert "text/html" in page.headers["content-type"]
        assert f'href="/runs/{run["id"]}/report"' in page.text


def test_grafana_and_pagerduty_deliveries_run(project: Path) -> None:
    """A signed Grafana delivery and a signed PagerDuty incident each start their run."""
    grafana = json.loads((FIXTURES / "grafana-firing.json").read_text())
    grafana["alerts"][0]["labels"].update(alertname="EchoAlert", subject="grafana")
    with receiver(project) as rx:
        assert rx.post("grafana", grafana).status_code == 202
        body = (FIXTURES / "pagerduty-incident-triggered.json").read_bytes()
        assert rx.post("pagerduty", body).status_code == 202
        runs = rx.wait(done=2)
        assert {("grafana", "EchoAlert"), ("pagerduty", "High error rate on aura-api")} == {
            (r["source"], r["alertname"]) for r in runs
        }


# --- bad input: a clear 4xx, nothing started -----------------------------------------------------


@pytest.mark.parametrize(
    ("source", "headers", "status"),
    [
        ("alertmanager", {}, 401),
        ("alertmanager", {"Authorization": "Bearer wrong-token-123"}, 403),
        ("alertmanager", {"Authorization": f"Basic {AM_TOKEN}"}, 403),
        ("grafana", {}, 401),
        ("grafana", {"X-Grafana-Alerting-Signature": "00" * 32}, 403),
        ("pagerduty", {}, 401),
        ("pagerduty", {"X-PagerDuty-Signature": "v1=" + "ab" * 32}, 403),
    ],
)
def test_bad_or_missing_credentials_start_nothing(
    project: Path, source: str, headers: dict[str, str], status: int
) -> None:
    """A missing credential is 401, a wrong one 403; nothing is run or stored."""
    doc = (
        am_doc(am_alert())
        if source != "pagerduty"
        else json.loads((FIXTURES / "pagerduty-incident-triggered.json").read_text())
    )
    with receiver(project) as rx:
        resp = rx.post(source, doc, headers=headers, sign=False)
        assert status == resp.status_code
        assert "error" in resp.json()
        assert rx.store.stats() == {"runs": {}, "episodes": 0, "deliveries": {}}


def test_rotated_secrets_are_accepted(project: Path) -> None:
    """The old bearer token still works during a rotation; PagerDuty's second signature too."""
    with receiver(project) as rx:
        old = rx.post(
            "alertmanager",
            am_doc(am_alert("a", fingerprint="aaaa")),
            headers={"Authorization": "Bearer am-old-token-000"},
        )
        body = (FIXTURES / "pagerduty-incident-triggered.json").read_bytes()
        pd = rx.post(
            "pagerduty",
            body,
            headers={
                "X-PagerDuty-Signature": f"v1={_hmac('retired', body)}, v1={_hmac(PD_SECRET, body)}"
            },
        )
        assert (old.status_code, pd.status_code) == (202, 202)


def test_receiver_without_its_secret_is_disabled(project: Path) -> None:
    """An endpoint whose secret is not set answers 404 naming the variable to set."""
    env = {k: v for k, v in ENV.items() if k != "AURA_OPS_GRAFANA_SECRET"}
    with receiver(project, env=env) as rx:
        resp = rx.post("grafana", am_doc(am_alert()))
        assert (resp.status_code, "AURA_OPS_GRAFANA_SECRET" in resp.json()["error"]) == (404, True)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b'{"alerts": [', 400, "not JSON"),
        (b'{"version": "4", "alerts": {}}', 422, "no 'alerts' list"),
        (json.dumps(am_doc({**am_alert(), "status": "pending"})).encode(), 422, "status"),
        (json.dumps(am_doc({**am_alert(), "labels": {"alertname": 1}})).encode(), 422, "string"),
    ],
)
def test_malformed_or_wrong_schema_is_4xx(
    project: Path, body: bytes, status: int, words: str
) -> None:
    """Bodies that are not JSON (400) or not the schema (422) are refused, recorded, not run."""
    with receiver(project) as rx:
        resp = rx.post("alertmanager", body)
        assert (status, True) == (resp.status_code, words in resp.json()["error"])
        assert rx.store.stats()["runs"] == {}
        (refused,) = rx.client.get("/runs").json()["not_run"]
        assert ("refused", status) == (refused["outcome"], refused["http_status"])


def test_oversized_body_is_413_without_reading_it_all(project: Path) -> None:
    """Over the cap: 413 from Content-Length alone, and while streaming a chunked body."""
    with receiver(project) as rx:
        big = json.dumps(am_doc(am_alert(x="y" * 100_000))).encode()
        assert rx.post("alertmanager", big).status_code == 413
        sent = 0

        def chunks() -> Iterator[bytes]:
            nonlocal sent
            for _ in range(1000):  # up to 64 MB if the server kept reading
                sent += 65536
                yield b" " * 65536

        headers = {"Authorization": f"Bearer {AM_TOKEN}"}
        with contextlib.suppress(httpx.HTTPError):
            resp = rx.client.post("/alertmanager", content=chunks(), headers=headers)
            assert resp.status_code == 413
        assert sent < 8 * 1024 * 1024
        assert rx.store.stats() == {"runs": {}, "episodes": 0, "deliveries": {}}


@pytest.mark.parametrize("value", ["__import__('os')", "../../etc/passwd"])
def test_hostile_label_value_is_422(project: Path, value: str) -> None:
    """A label carrying code or a path, mapped to a parameter, is refused and starts nothing."""
    with receiver(project) as rx:
        resp = rx.post("alertmanager", am_doc(am_alert(value)))
        assert resp.status_code == 422
        assert "subject" in resp.json()["error"]
        time.sleep(0.2)
        assert (rx.runner.jobs, rx.store.stats()["runs"]) == ([], {})


def test_alert_naming_a_missing_runbook_is_422(project: Path) -> None:
    """An alert routed by its annotation to a runbook that does not exist is refused."""
    alert = am_alert(name="Other")
    alert["annotations"]["runbook"] = "no-such-runbook"
    with receiver(project) as rx:
        resp = rx.post("alertmanager", am_doc(alert))
        assert (resp.status_code, "no-such-runbook" in resp.json()["error"]) == (422, True)
        assert rx.store.stats()["runs"] == {}


def test_one_bad_alert_does_not_lose_the_others(project: Path) -> None:
    """In a mixed delivery the good alert runs and the bad one is recorded as refused."""
    with receiver(project) as rx:
        resp = rx.post(
            "alertmanager",
            am_doc(
                am_alert("ok", fingerprint="aa01"), am_alert("../x/../../y", fingerprint="aa02")
            ),
        )
        assert resp.status_code == 202
        assert [a["outcome"] for a in resp.json()["alerts"]] == ["queued", "refused"]
        rx.wait(done=1)
        assert [j.params["subject"] for j in rx.runner.jobs] == ["ok"]


def test_unknown_alert_is_recorded_and_answered(project: Path) -> None:
    """An alert no route matches is answered 202, recorded as unrouted, and runs nothing."""
    with receiver(project) as rx:
        resp = rx.post("alertmanager", am_doc(am_alert(name="NobodyKnowsMe")))
        assert (resp.status_code, resp.json()["alerts"][0]["outcome"]) == (202, "unrouted")
        not_run = rx.client.get("/runs").json()["not_run"]
        assert [(e["alertname"], e["outcome"]) for e in not_run] == [("NobodyKnowsMe", "unrouted")]
        assert rx.runner.jobs == []


def test_asgi_transport_refuses_bad_token(project: Path) -> None:
    """The app refuses a wrong token when driven in-process through httpx.ASGITransport."""
    add_alerted_runbook(project)
    (project / "routes.yaml").write_text(ROUTES)
    store = RunStore(project / "asgi.db")
    app = create_app(
        store,
        load_routes(project / "routes.yaml", project),
        runner=FakeRunner(project),
        environ=ENV,
    )

    async def go() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://aura") as client:
            resp = await client.post(
                "/alertmanager",
                json=am_doc(am_alert()),
                headers={"Authorization": "Bearer nope-nope"},
            )
            return resp.status_code

    assert asyncio.run(go()) == 403
    store.close()


def test_grafana_timestamp_header_gives_a_replay_window(project: Path) -> None:
    """With a timestamp header configured, it is required, signed, and must be recent."""
    add_alerted_runbook(project)
    (project / "routes.yaml").write_text(
        ROUTES + "receivers: {grafana: {timestamp_header: X-Grafana-Alerting-Timestamp}}\n"
    )
    now = 1_800_000_000.0
    store = RunStore(project / "ts.db")
    service = AlertService(
        store,
        load_routes(project / "routes.yaml", project),
        runner=FakeRunner(project),
        clock=lambda: now,
        environ=ENV,
    )
    body = b'{"version": "1", "alerts": []}'

    def answer(ts: int | None) -> int:
        headers = {"x-grafana-alerting-signature": _hmac(GRAFANA_SECRET, f"{ts}:".encode() + body)}
        if ts is not None:
            headers["x-grafana-alerting-timestamp"] = str(ts)
        denied = service.authenticate("grafana", body, headers)
        return 0 if denied is None else denied.status_code

    assert [answer(None), answer(int(now) - 10), answer(int(now) - 3600)] == [401, 0, 403]
    store.close()


# --- deduplication, resolution, storms ------------------------------------------------------


def test_repeats_start_one_run(project: Path) -> None:
    """The same alert delivered five times (at-least-once senders) runs once; repeats count."""
    with receiver(project) as rx:
        doc = am_doc(am_alert())
        with ThreadPoolExecutor(5) as pool:
            codes = list(pool.map(lambda _: rx.post("alertmanager", doc).status_code, range(5)))
        assert codes == [202] * 5
        (run,) = rx.wait(done=1)
        time.sleep(0.2)
        assert (len(rx.runner.jobs), rx.store.get_run(run["id"])["repeats"]) == (1, 4)


def test_resolved_annotates_the_run_and_never_starts_one(project: Path) -> None:
    """'resolved' marks the episode's run resolved; a resolved alert never seen runs nothing."""
    with receiver(project) as rx:
        rx.post("alertmanager", am_doc(am_alert()))
        (run,) = rx.wait(done=1)
        resp = rx.post("alertmanager", am_doc(am_alert(status="resolved")))
        assert resp.json()["alerts"][0]["outcome"] == "resolved"
        assert rx.store.get_run(run["id"])["resolved_at"] is not None
        only = rx.post(
            "alertmanager", am_doc(am_alert("db", fingerprint="ffff", status="resolved"))
        )
        assert only.json()["alerts"][0]["outcome"] == "resolved-only"
        time.sleep(0.2)
        assert len(rx.runner.jobs) == 1


def test_pagerduty_redelivery_and_updates(project: Path) -> None:
    """A repeated X-Webhook-Id is a no-op; later incident events annotate the same run."""
    trig = (FIXTURES / "pagerduty-incident-triggered.json").read_bytes()
    with receiver(project) as rx:
        first = rx.post("pagerduty", trig, headers={"X-Webhook-Id": "wh-1"})
        again = rx.post("pagerduty", trig, headers={"X-Webhook-Id": "wh-1"})
        assert (first.status_code, again.status_code, again.json()["duplicate"]) == (202, 200, True)
        note = rx.post("pagerduty", (FIXTURES / "pagerduty-incident-annotated.json").read_bytes())
        done = rx.post("pagerduty", (FIXTURES / "pagerduty-incident-resolved.json").read_bytes())
        assert [
            note.json()["alerts"][0]["outcome"],
            done.json()["alerts"][0]["outcome"],
        ] == ["repeat", "resolved"]
        (run,) = rx.wait(done=1)
        assert len(rx.runner.jobs) == 1
        assert rx.store.get_run(run["id"])["resolved_at"] is not None


def test_storm_is_grouped_and_the_queue_bounded(project: Path) -> None:
    """40 episodes of one group share a run; past max_queue new groups are dropped, visibly."""
    gate = threading.Event()
    runner = FakeRunner(project / "outputs", gate=gate)
    with receiver(
        project, runner=runner, max_queue=3, options=ServeOptions(workers=1, run_timeout_s=30)
    ) as rx:
        for i in range(40):
            rx.post("alertmanager", am_doc(am_alert("api", fingerprint=f"{i:04x}")))
        deadline = time.monotonic() + 5
        while not runner.jobs and time.monotonic() < deadline:
            time.sleep(0.02)
        outcomes = [
            rx.post("alertmanager", am_doc(am_alert(f"svc{i}", fingerprint=f"b{i:03x}"))).json()[
                "alerts"
            ][0]["outcome"]
            for i in range(6)
        ]
        assert outcomes == ["queued"] * 3 + ["dropped"] * 3
        runs = rx.client.get("/runs").json()["runs"]
        storm = next(r for r in runs if r["labels"]["subject"] == "api")
        assert (storm["alerts"], storm["state"]) == (40, "running")
        dropped = [r for r in runs if r["state"] == "dropped"]
        assert len(dropped) == 3 and all("queue full" in r["note"] for r in dropped)
        gate.set()
        rx.wait(done=4)
        assert len(runner.jobs) == 4


def test_storm_window_expires(project: Path) -> None:
    """After the storm window a new episode of the same group gets its own run."""
    now = [1_800_000_000.0]
    with receiver(project, clock=lambda: now[0], storm_window_s=60) as rx:
        rx.post("alertmanager", am_doc(am_alert(fingerprint="c001")))
        now[0] += 30
        merged = rx.post("alertmanager", am_doc(am_alert(fingerprint="c002")))
        now[0] += 61
        fresh = rx.post("alertmanager", am_doc(am_alert(fingerprint="c003")))
        assert [
            merged.json()["alerts"][0]["outcome"],
            fresh.json()["alerts"][0]["outcome"],
        ] == ["merged", "queued"]
        rx.wait(done=2)


# --- durability ------------------------------------------------------------------------------


def test_restart_picks_up_an_interrupted_run(project: Path) -> None:
    """A run left 'running' by a crash is queued again at start and completes exactly once."""
    db = project / "outputs" / "aura-ops.db"
    gate = threading.Event()
    with receiver(
        project,
        runner=FakeRunner(project / "outputs", gate=gate),
        options=ServeOptions(workers=1, shutdown_grace_s=0.1),
    ) as rx:
        rx.post("alertmanager", am_doc(am_alert("crashy")))
        deadline = time.monotonic() + 5
        while not rx.runner.jobs and time.monotonic() < deadline:
            time.sleep(0.02)
    gate.set()  # the old worker wakes up to a closed database, like a dead process
    # the first server went away mid-run (its worker never finished): the row says running
    after_crash = RunStore(db)
    assert [r["state"] for r in after_crash.list_runs()] == ["running"]
    after_crash.close()
    with receiver(project, store=RunStore(db)) as rx:
        (run,) = rx.wait(done=1)
        assert (
            run["state"],
            run["attempts"],
            [j.params["subject"] for j in rx.runner.jobs],
        ) == ("done", 2, ["crashy"])


def test_a_run_interrupted_too_often_is_failed(tmp_path: Path) -> None:
    """A run that crashed the server max_attempts times is failed, not retried forever."""
    from aura_ops.alert_routes import RunRequest
    from aura_ops.alerts import parse_alertmanager

    store = RunStore(tmp_path / "db.sqlite", max_attempts=2)
    (alert,) = parse_alertmanager(am_doc(am_alert()))
    store.record_delivery("alertmanager", [(alert, RunRequest("r", "", {}, "x", "g"), "")])
    assert store.claim() is not None
    assert store.recover() == (1, 0)
    assert store.claim() is not None
    assert store.recover() == (0, 1)
    (run,) = store.list_runs()
    assert (run["state"], "interrupted 2 times" in run["error"]) == ("failed", True)
    store.close()


def test_one_server_per_database(tmp_path: Path) -> None:
    """A second server on the same database is refused while the first holds it."""
    first = lock_database(tmp_path / "db.sqlite")
    with pytest.raises(ConfigError):
        lock_database(tmp_path / "db.sqlite")
    first.close()
    lock_database(tmp_path / "db.sqlite").close()


def test_log_records_are_redacted() -> None:
    """Messages, arguments and tracebacks pass through the redactor before any handler."""
    import logging

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    handler.addFilter(RedactingFilter(Redactor(["hunter2-secret-value"])))
    logger = logging.getLogger("aura_ops.test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("token %s", "hunter2-secret-value")
        try:
            raise RuntimeError("with hunter2-secret-value inside")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    assert len(records) == 2
    assert all("hunter2" not in r for r in records)
    assert "RuntimeError" in records[1]


def test_serve_refuses_bad_configuration(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing routes file, or no receiver secret set, stops `aura-ops serve` with exit 64."""
    from aura_ops.cli import main

    add_alerted_runbook(project)
    (project / "routes.yaml").write_text(ROUTES)
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    db = str(project / "cli.db")
    missing = main(["serve", "--routes", str(project / "nope.yaml"), "--db", db])
    no_secret = main(["serve", "--routes", str(project / "routes.yaml"), "--db", db])
    err = capsys.readouterr().err
    assert (missing, no_secret) == (64, 64)
    assert "cannot read routes file" in err
    assert "no webhook receiver is enabled (export AURA_OPS_ALERTMANAGER_TOKEN" in err


def test_unpersistable_delivery_is_503(project: Path) -> None:
    """When the delivery cannot be committed the answer is 503, so the sender retries."""

    class BrokenStore(RunStore):
        def record_delivery(self, *args: Any, **kw: Any) -> Any:
            raise sqlite3.OperationalError("disk I/O error")

    store = BrokenStore(project / "broken.db")
    with receiver(project, store=store) as rx:
        assert rx.post("alertmanager", am_doc(am_alert())).status_code == 503


def test_failing_runner_marks_the_run_failed_with_a_redacted_error(project: Path) -> None:
    """A runner exception fails the run; a secret in its message is not stored."""
    runner = FakeRunner(project / "outputs")
    runner.error = RuntimeError(f"could not reach http://user:{AM_TOKEN}@db:5432")
    with receiver(project, runner=runner) as rx:
        rx.post("alertmanager", am_doc(am_alert()))
        (run,) = rx.wait(done=1)
        assert (run["state"], AM_TOKEN in (run["error"] or "")) == ("failed", False)
        assert "RuntimeError" in run["error"]


# --- history ---------------------------------------------------------------------------------


def test_retention_by_count_and_age(tmp_path: Path) -> None:
    """Old finished runs and their directories are deleted; running ones and outside dirs stay."""
    from aura_ops.alert_routes import RunRequest
    from aura_ops.alerts import parse_alertmanager

    now = [1_800_000_000.0]
    out = tmp_path / "outputs"
    store = RunStore(tmp_path / "db.sqlite", clock=lambda: now[0], storm_window_s=0)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for i in range(5):
        (alert,) = parse_alertmanager(am_doc(am_alert(fingerprint=f"d{i:03x}")))
        store.record_delivery("alertmanager", [(alert, RunRequest("r", "", {}, "x", f"g{i}"), "")])
        run = store.claim()
        assert run is not None
        run_dir = out / f"run{i}" if i else outside
        run_dir.mkdir(parents=True, exist_ok=True)
        store.finish(run["id"], state="done", run_dir=str(run_dir))
        now[0] += 3600
    (alert,) = parse_alertmanager(am_doc(am_alert(fingerprint="e000")))
    store.record_delivery("alertmanager", [(alert, RunRequest("r", "", {}, "x", "live"), "")])
    assert store.claim() is not None  # running: never pruned
    gone = store.prune(max_age_s=86400 * 30, max_runs=3, output_root=out)
    assert (gone["runs"], gone["dirs"]) == (2, 1)
    assert outside.is_dir() and not (out / "run1").exists() and (out / "run2").is_dir()
    now[0] += 86400 * 31
    gone = store.prune(max_age_s=86400 * 30, max_runs=3, output_root=out)
    assert (gone["runs"], [r["state"] for r in store.list_runs()]) == (3, ["running"])
    assert list(out.iterdir()) == []
    store.close()


def test_history_page_escapes_alert_text(project: Path) -> None:
    """Label values shown on the HTML page are escaped."""
    with receiver(project) as rx:
        rx.post("alertmanager", am_doc(am_alert(team="<script>alert(1)</script>")))
        rx.wait(done=1)
        page = rx.client.get("/runs", headers={"Accept": "text/html"}).text
        assert ("<script>alert" in page, "&lt;script&gt;alert(1)" in page) == (False, True)


def test_reports_are_served_only_for_known_runs_inside_outputs(project: Path) -> None:
    """Unknown ids, path tricks and a run directory outside the output root give 404."""
    with receiver(project) as rx:
        rx.post("alertmanager", am_doc(am_alert()))
        (run,) = rx.wait(done=1)
        with rx.store._tx() as db:
            db.execute("UPDATE runs SET run_dir='/etc' WHERE id=?", (run["id"],))
        for path in (
            "/runs/999/report",
            "/runs/abc/report",
            "/runs/%2e%2e/%2e%2e/etc/passwd",
            "/runs/1/..%2f..%2fetc%2fpasswd",
            f"/runs/{run['id']}/report",
        ):
            assert rx.client.get(path).status_code == 404, path


def test_history_token(project: Path) -> None:
    """With a history token set, /runs needs it as bearer or as basic-auth password."""
    with receiver(project, env={**ENV, "TEST_HISTORY_TOKEN": "hist-token-42"}) as rx:
        basic = base64.b64encode(b"oncall:hist-token-42").decode()
        assert [
            rx.client.get("/runs").status_code,
            rx.client.get("/runs", headers={"Authorization": "Bearer wrong-token"}).status_code,
            rx.client.get("/runs", headers={"Authorization": "Bearer hist-token-42"}).status_code,
            rx.client.get("/runs", headers={"Authorization": f"Basic {basic}"}).status_code,
        ] == [401, 401, 200, 200]
        assert rx.client.get("/healthz").status_code == 200


# --- notifications -----------------------------------------------------------------------------


def test_notification_posts_verdict_and_link(project: Path) -> None:
    """A finished run is announced to a Slack-compatible webhook with its report link."""
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> JSONResponse:
        received.append(await request.json())
        return JSONResponse({"ok": True})

    with serve_in_thread(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as url:
        add_alerted_runbook(project)
        (project / "routes.yaml").write_text(ROUTES)
        store = RunStore(project / "n.db")
        notifier = SlackNotifier(f"{url}/hook", public_url="https://aura.example")
        app = create_app(
            store,
            load_routes(project / "routes.yaml", project),
            runner=FakeRunner(project / "outputs"),
            environ=ENV,
            notifier=notifier,
        )
        with serve_in_thread(app) as base:
            httpx.post(
                f"{base}/alertmanager",
                json=am_doc(am_alert("pay")),
                headers={"Authorization": f"Bearer {AM_TOKEN}"},
            )
            deadline = time.monotonic() + 10
            while not received and time.monotonic() < deadline:
                time.sleep(0.05)
        store.close()
    (msg,) = received
    assert "*CRITICAL* alerted for alert EchoAlert: fake verdict for pay" in msg["text"]
    assert "<https://aura.example/runs/1/report|evidence report>" in msg["text"]


def test_notification_failure_is_never_fatal() -> None:
    """A hanging or absent webhook costs at most the timeout and reports False."""
    run = {"id": 1, "runbook": "r", "verdict": "OK", "headline": "fine"}
    with hanging_server() as port:
        t0 = time.monotonic()
        assert not SlackNotifier(f"http://127.0.0.1:{port}/", timeout_s=0.5)(run)
        assert time.monotonic() - t0 < 3
    assert not SlackNotifier("http://127.0.0.1:9/")(run)


# --- a burst -------------------------------------------------------------------------------------


def test_burst_acknowledgement_latency(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """300 deliveries (60 episodes in 12 groups, each sent 5 times) are all acknowledged fast
    and start one run per group."""
    docs = [am_doc(am_alert(f"svc{e % 12}", fingerprint=f"{e:04x}")) for e in range(60)] * 5
    with receiver(project) as rx:
        rx.post("alertmanager", am_doc(am_alert("warmup", fingerprint="ffff")))

        def send(doc: dict[str, Any]) -> tuple[int, float]:
            t0 = time.perf_counter()
            code = rx.post("alertmanager", doc).status_code
            return code, time.perf_counter() - t0

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(send, docs))
        rx.wait(done=13)
        latencies = sorted(s for _, s in results)
        p50, p99 = statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]
        with capsys.disabled():
            print(
                f"\nburst: {len(docs)} deliveries, ack p50 {p50 * 1000:.1f} ms, "
                f"p99 {p99 * 1000:.1f} ms, runs started {len(rx.runner.jobs)}"
            )
        assert {202} == {c for c, _ in results}
        assert len(rx.runner.jobs) == 13
        assert p99 < 1.0


# --- real notebook runs --------------------------------------------------------------------------


@pytest.mark.slow
def test_label_values_reach_the_notebook_as_inert_strings(project: Path) -> None:
    """With a permissive pattern, ``__import__('os')`` arrives as that string and runs nothing."""
    out = project / "outputs"
    runner = papermill_runner(output_root=out, root=project)
    with receiver(project, runner=runner) as rx:  # type: ignore[arg-type]
        value = "__import__('os').system('touch PWNED')"
        rx.post("alertmanager", am_doc(am_alert(value, name="AnythingGoes")))
        (run,) = rx.wait(done=1, timeout_s=90)
        record = json.loads(next(out.rglob("findings.json")).read_text())
    assert (run["state"], run["verdict"]) == ("done", "WARNING")
    assert value == record["parameters"]["subject"]
    assert f"subject is {value!r}" == record["findings"][0]["summary"]
    assert record["parameters"]["trigger"] == "alert"
    assert list(project.rglob("PWNED")) == []


@pytest.mark.slow
def test_run_wall_clock_limit(project: Path) -> None:
    """A runbook that overruns the per-run limit is stopped and reported UNKNOWN."""
    out = project / "outputs"
    runner = papermill_runner(output_root=out, root=project)
    alert = am_alert(name="Sleepy")
    alert["annotations"]["runbook"] = "sleepy"
    options = ServeOptions(workers=1, run_timeout_s=3)
    with receiver(project, runner=runner, options=options) as rx:  # type: ignore[arg-type]
        t0 = time.monotonic()
        rx.post("alertmanager", am_doc(alert))
        (run,) = rx.wait(done=1, timeout_s=60)
    assert (run["state"], run["verdict"]) == ("done", "UNKNOWN")
    assert "deadline" in run["headline"] and time.monotonic() - t0 < 30


def test_serve_keeps_warm_kernels_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """One warm kernel per worker unless AURA_OPS_WARM_KERNELS or --warm-kernels says
    otherwise; 0 turns them off; a value that is not a number is refused."""
    monkeypatch.delenv("AURA_OPS_WARM_KERNELS", raising=False)
    assert 3 == ServeOptions(workers=3).warm_size()
    assert 0 == ServeOptions(workers=3).warm_size({"AURA_OPS_WARM_KERNELS": "0"})
    assert 1 == ServeOptions(workers=3, warm_kernels=1).warm_size({"AURA_OPS_WARM_KERNELS": "4"})
    with pytest.raises(ConfigError, match="not a number"):
        ServeOptions().warm_size({"AURA_OPS_WARM_KERNELS": "lots"})
