"""Secrets never leave: canaries planted in every input channel are found in no output byte.

Canaries: a DSN password (the env var named by ``dsn_env``, pointing at a real PostgreSQL that
rejects it), an API token (the env var named by ``api_key_env``, sent as a bearer header to a
provider that echoes the header back), log lines carrying ``Authorization: Bearer <canary>``
and ``password=<canary>``, and health endpoints whose bodies echo secrets -- in shapes
(DSN userinfo, ``token=``, ``Authorization:``) and the env-var secrets verbatim. Two runbooks
run over them; then every byte of every run directory (notebook, report, findings.json), the
audit log, a post-mortem bundle of those runs, and the receiver's database, log and run
history is searched for every canary.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest

from aura_ops import remediate
from aura_ops.errors import RemediationRefused
from aura_ops.findings import Finding, Status
from aura_ops.runner import RunResult, run_runbook
from tests.reliability.conftest import ScramPostgres

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DSN_ENV = "AURA_OPS_CANARY_DSN"
KEY_ENV = "AURA_OPS_CANARY_API_KEY"
AM_TOKEN_ENV = "AURA_OPS_CANARY_AM_TOKEN"


def _canary(name: str) -> str:
    return f"cnry{name}{secrets.token_hex(10)}"  # [a-z0-9] only: no escaping can disguise it


CANARIES = {
    name: _canary(name.replace("_", ""))
    for name in (
        "dsn_password", "api_token", "log_bearer", "log_password", "body_dsn", "body_token",
        "body_bearer", "alert_dsn", "alert_token", "am_token", "outcome_password", "extra_env",
    )
}  # fmt: skip
C = CANARIES


def find_canaries(paths: list[Path], extra: Mapping[str, bytes] = {}) -> dict[str, list[str]]:
    """{canary name: [where it was found]} over every file under ``paths`` and ``extra``."""
    blobs = dict(extra)
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        blobs.update({str(p): p.read_bytes() for p in files})
    return {
        name: hits
        for name, value in CANARIES.items()
        if (hits := [where for where, blob in blobs.items() if value.encode() in blob])
    }


@contextlib.contextmanager
def http_server(respond: Callable[[BaseHTTPRequestHandler], tuple[int, Any]]) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 answering every GET with ``respond(handler)`` as JSON."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            code, body = respond(self)
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def leaky_health(handler: BaseHTTPRequestHandler) -> tuple[int, Any]:
    """Health endpoints that echo secrets, as misconfigured services do."""
    path = handler.path.split("?")[0]
    if path == "/health/live":
        return 200, {"status": "Healthy", "debug": f"token={C['body_token']}"}
    if path == "/health/ready":
        db = f"connect postgresql://app:{C['body_dsn']}@db:5432/aura failed"
        return 503, {"status": "Unhealthy", "entries": {"database": {
            "status": "Unhealthy", "description": db,
            "error": f"password {C['dsn_password']} rejected"}}}  # fmt: skip
    if path == "/api/health/system":
        return 200, {"components": [
            {"name": "database", "status": "unhealthy", "message": f"token={C['body_token']}"},
            {"name": "provider", "status": "degraded",
             "message": f"Authorization: Bearer {C['body_bearer']} refused; key {C['api_token']}"},
        ]}  # fmt: skip
    if path == "/api/health/providers":
        return 200, {"providers": {"openai": {
            "status": "unhealthy", "error": f"401 for key {C['api_token']}",
            "authorization": f"Bearer {C['body_bearer']}"}}}  # fmt: skip
    return 404, {"error": f"no route {path}; dsn postgresql://app:{C['body_dsn']}@db/aura"}


def echo_provider(handler: BaseHTTPRequestHandler) -> tuple[int, Any]:
    """A provider that refuses the key and echoes the whole Authorization header back."""
    sent = handler.headers.get("Authorization", "")
    return 401, {"error": {"message": f"Incorrect API key provided: {sent}", "code": "bad_key"}}


def canary_log(path: Path) -> Path:
    """A JSON-lines API log, inside the last minutes, whose errors carry secrets."""
    now = dt.datetime.now(dt.UTC)

    def line(ago_s: float, level: str, status: int, message: str, **extra: Any) -> str:
        ts = (now - dt.timedelta(seconds=ago_s)).isoformat()
        return json.dumps({"ts": ts, "level": level, "logger": "aura.api", "service": "aura-api",
                           "message": message, "method": "POST", "route": "/api/render",
                           "path": "/api/render", "status": status, "duration_ms": 40.0,
                           "correlation_id": f"c{int(ago_s):015d}", **extra})  # fmt: skip

    lines = [line(300 - i, "INFO", 200, "HTTP 200 POST /api/render Duration 40ms")
             for i in range(20)]  # fmt: skip
    lines += [
        line(120, "ERROR", 500, f"HTTP 500 POST /api/render upstream said 401 to "
             f"Authorization: Bearer {C['log_bearer']}", error_type="AuthError",
             error=f"Authorization: Bearer {C['log_bearer']}"),
        line(90, "ERROR", 500, f"HTTP 500 POST /api/render OperationalError: connect host=db "
             f"user=app password={C['log_password']} dbname=aura failed",
             error_type="OperationalError", error=f"password={C['log_password']}"),
        line(60, "ERROR", 503, "HTTP 503 GET /api/providers provider openai failed",
             provider="openai", error_type="AuthError",
             error=f"Authorization: Bearer {C['log_bearer']}"),
    ]  # fmt: skip
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _run(runbook: str, params: dict[str, Any], out: Path) -> RunResult:
    return run_runbook(runbook, params=params, output_root=out, timeout_s=150)


@pytest.fixture(scope="module")
def canary_runs(
    scram_pg: ScramPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, list[RunResult]]]:
    """service-down and provider-failures run over the planted canaries (output root, runs)."""
    tmp = tmp_path_factory.mktemp("secrets")
    mp = pytest.MonkeyPatch()
    mp.setenv(DSN_ENV, f"postgresql://aura_canary:{C['dsn_password']}@127.0.0.1:"
                       f"{scram_pg.tcp_port}/postgres?connect_timeout=5")  # fmt: skip
    mp.setenv(KEY_ENV, C["api_token"])
    mp.setenv("AURA_OPS_AUDIT_LOG", str(tmp / "audit.jsonl"))
    log = canary_log(tmp / "api.jsonl")
    changes = tmp / "deploys.jsonl"
    changes.write_text(json.dumps({"at": "2026-11-23T09:00:00+00:00", "version": "v2.4.0"}) + "\n")
    out = tmp / "outputs"
    try:
        with http_server(leaky_health) as health, http_server(echo_provider) as provider:
            jobs = {
                "service-down": {"base_url": health, "dsn_env": DSN_ENV, "log_paths": str(log),
                                 "changes_path": str(changes), "probe_timeout_s": 3},
                "provider-failures": {"base_url": health, "log_paths": str(log),
                                      "provider_url": provider, "api_key_env": KEY_ENV},
            }  # fmt: skip
            with ThreadPoolExecutor(2) as pool:
                runs = list(pool.map(lambda kv: _run(*kv, out), jobs.items()))
        yield out, runs
    finally:
        mp.undo()


def test_runs_read_the_canaries(canary_runs: tuple[Path, list[RunResult]]) -> None:
    """The planted secrets were really read: the runs completed and judged the leaky sources."""
    _, runs = canary_runs
    assert ["completed", "completed"] == [r.record["execution"]["status"] for r in runs]
    checks = {f.check for r in runs for f in r.findings if f.status >= Status.WARNING}
    assert {"providers.api", "health.readiness"} <= checks
    assert any(f.check.startswith("logs.") and f.status >= Status.WARNING
               for r in runs for f in r.findings)  # fmt: skip


def test_no_canary_in_any_run_output(canary_runs: tuple[Path, list[RunResult]]) -> None:
    """notebook.ipynb, report.html and findings.json of both runs hold no canary."""
    out, _ = canary_runs
    assert {} == find_canaries([out])


def test_papermill_parameters_carry_env_var_names_only(
    canary_runs: tuple[Path, list[RunResult]],
) -> None:
    """The parameters papermill records (metadata and injected cell) name env vars, no values."""
    _, runs = canary_runs
    for run in runs:
        nb = nbformat.read(run.run_dir / "notebook.ipynb", as_version=4)
        recorded = nb.metadata["papermill"]["parameters"]
        assert {k: v for k, v in recorded.items() if k.endswith("_env")} == {
            k: v for k, v in {"dsn_env": DSN_ENV, "api_key_env": KEY_ENV}.items() if k in recorded
        }
        injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert 1 == len(injected)
        for value in [*map(str, recorded.values()), injected[0].source]:
            assert not any(v in value for v in CANARIES.values())
            assert "://" not in value or "@" not in value.split("://", 1)[1].split("/")[0]


def test_postmortem_bundle_holds_no_canary(canary_runs: tuple[Path, list[RunResult]]) -> None:
    """A post-mortem bundle of the canary runs (documents and attachments) holds no canary."""
    from aura_ops.incidents import find_incident
    from aura_ops.postmortem import write_postmortem

    out, _ = canary_runs
    bundle = write_postmortem(find_incident("latest", out), output_root=out, force=True)
    assert (bundle / "postmortem.md").is_file() and list((bundle / "attachments").iterdir())
    assert {} == find_canaries([bundle])


def test_audit_log_holds_no_canary(
    scram_pg: ScramPostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dry-run, refused and executed mitigations over secret-bearing evidence audit no canary."""
    monkeypatch.setenv("AURA_OPS_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv(DSN_ENV, scram_pg.dsn(("aura_canary", C["dsn_password"])))
    monkeypatch.delenv("AURA_OPS_TRIGGER", raising=False)
    evidence = [Finding("logs.error_types", "api", Status.CRITICAL,
                        f"OperationalError password={C['log_password']} and "
                        f"Authorization: Bearer {C['log_bearer']}")]  # fmt: skip
    m = remediate.plan_terminate_backend(4121, dsn_env=DSN_ENV, findings=evidence)
    remediate.execute(m)  # dry-run
    with pytest.raises(RemediationRefused):
        remediate.execute(m, approve=True)  # no approver
    done = remediate.execute(m, approve=True, approver="alice", timeout_s=20)  # psql is refused
    assert "failed" == done.outcome and not any(v in done.output for v in CANARIES.values())
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert ["dry-run", "refused", "failed"] == [json.loads(x)["outcome"] for x in lines]
    assert {} == find_canaries([tmp_path / "audit.jsonl"])


# --- the receiver: database, log, run history ------------------------------------------------

ROUTES = """
version: 1
defaults: {environment: ""}
routes:
  - name: canary
    match: {alertname: CanaryAlert}
    runbook: canary
    params: {subject: {from: labels.service, pattern: "^[a-z-]+$"}}
receivers:
  alertmanager: {bearer_token_env: AURA_OPS_CANARY_AM_TOKEN}
"""


def _alert_doc() -> dict[str, Any]:
    alert = {
        "status": "firing",
        "labels": {"alertname": "CanaryAlert", "service": "checkout",
                   "dsn": f"postgresql://app:{C['alert_dsn']}@db:5432/aura"},
        "annotations": {"summary": "checkout failing",
                        "description": f"db login failed: password={C['alert_dsn']} "
                                       f"api_key={C['alert_token']}"},
        "startsAt": "2026-11-23T10:15:00Z", "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": f"http://prom:9090/graph?token={C['alert_token']}",
        "fingerprint": "c4a7000000000001",
    }  # fmt: skip
    return {"version": "4", "groupKey": "{}:{}", "status": "firing", "receiver": "aura-ops",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://am:9093", "truncatedAlerts": 0, "alerts": [alert]}  # fmt: skip


@pytest.fixture(scope="module")
def receiver_leaks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Canaries found after one authentic and one forged delivery through a real receiver."""
    from aura_ops.alert_routes import load_routes
    from aura_ops.runstore import RunStore
    from aura_ops.server import ServeOptions, create_app
    from aura_ops.server_workers import Job, RedactingFilter, RunOutcome
    from tests.conftest import serve_in_thread, write_runbook

    tmp = tmp_path_factory.mktemp("receiver")
    write_runbook(tmp, "canary", 'subject = "x"  # what\nrun_id = ""  # runner\n')
    (tmp / "routes.yaml").write_text(ROUTES)

    def runner(job: Job) -> RunOutcome:
        return RunOutcome("CRITICAL", f"login failed password={C['outcome_password']} "
                                      f"for {job.params.get('subject')}")  # fmt: skip

    store = RunStore(tmp / "aura-ops.db")
    opts = ServeOptions(workers=1, run_timeout_s=30, output_root=tmp / "outputs")
    app = create_app(store, load_routes(tmp / "routes.yaml", tmp), runner=runner, options=opts,
                     environ={AM_TOKEN_ENV: C["am_token"]})  # fmt: skip
    records: list[logging.LogRecord] = []
    handler = _ListHandler(records)  # as `aura-ops serve` logs: through the RedactingFilter
    handler.addFilter(RedactingFilter(app.state.service.redactor))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    pages: dict[str, bytes] = {}
    try:
        with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as client:
            for token, status in ((C["am_token"], 202), (C["alert_token"], 403)):
                headers = {"Authorization": f"Bearer {token}"}  # authentic, then forged
                answer = client.post("/alertmanager", json=_alert_doc(), headers=headers)
                assert status == answer.status_code
            _wait_done(store)
            for page in ("/runs", "/runs/1", "/healthz"):
                pages[page] = client.get(page).content
            pages["/runs (html)"] = client.get("/runs", headers={"Accept": "text/html"}).content
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        store.close()
    server_log = "\n".join(
        r.getMessage() for r in records if r.name.startswith(("aura_ops", "uvicorn"))
    )
    assert "accepted" in server_log
    return find_canaries([tmp / "outputs", *tmp.glob("aura-ops.db*")],
                         {**pages, "server log": server_log.encode()})  # fmt: skip


class _ListHandler(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_receiver_keeps_no_secret(receiver_leaks: dict[str, list[str]]) -> None:
    """The receiver's token, a forged token, secrets in annotations, labels, URLs and run
    headlines: in no log, page or database byte."""
    assert {} == receiver_leaks


def _wait_done(store: Any, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(r["state"] in ("done", "failed") for r in store.list_runs()):
            return
        time.sleep(0.05)
    raise AssertionError(f"no finished run: {store.stats()}")


def test_secret_given_only_through_extra_env_is_redacted(tmp_path: Path) -> None:
    """A secret handed to the kernel through ``extra_env`` is masked like one in os.environ."""
    from tests.conftest import write_runbook

    write_runbook(tmp_path, "echo-secret", 'token_env = "AURA_OPS_CANARY_EXTRA"  # env var\n',
                  "import os\nprint('the token is', os.environ[token_env])")  # fmt: skip
    run = run_runbook("echo-secret", output_root=tmp_path / "out", root=tmp_path, timeout_s=120,
                      extra_env={"AURA_OPS_CANARY_EXTRA": C["extra_env"]})  # fmt: skip
    assert "completed" == run.record["execution"]["status"]
    assert {} == find_canaries([run.run_dir])
