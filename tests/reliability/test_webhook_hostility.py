"""Webhook hostility: property-based tests (hypothesis) of the receiver with random and
adversarial bodies and headers, through ``httpx.ASGITransport``.

Invariants, whatever arrives:

- never a 5xx (the receiver answers every request, and never "could not persist");
- unauthenticated or forged deliveries store nothing at all and start nothing;
- authenticated garbage is a 4xx recorded as a refused delivery (so nothing is silent), and
  starts nothing;
- authenticated, well-formed alerts with hostile label values queue a run only when the route
  accepts them, with exactly the route's runbook and parameters that match its pattern;
- no secret of the receiver (token, HMAC keys) is persisted.

The app runs without its lifespan (no workers): a queued run stays visible as ``queued``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aura_ops.alert_routes import load_routes
from aura_ops.runstore import RunStore
from aura_ops.server import ServeOptions, create_app
from aura_ops.server_workers import Job, RunOutcome
from tests.conftest import write_runbook

AM_TOKEN = "am-hostile-token-5f2e9c1d"
GRAFANA_KEY = "grafana-hostile-key-8a1b"
PD_KEY = "pd-hostile-key-3c4d"
ENV = {
    "HOSTILE_AM_TOKEN": AM_TOKEN,
    "HOSTILE_GRAFANA_KEY": GRAFANA_KEY,
    "HOSTILE_PD_KEYS": PD_KEY,
}
ROUTES = """
version: 1
defaults: {environment: ""}
routes:
  - name: hostile
    match: {alertname: HostileAlert}
    runbook: target
    params: {subject: {from: labels.service, pattern: "^[a-z][a-z0-9-]{0,30}$"}}
receivers:
  alertmanager: {bearer_token_env: HOSTILE_AM_TOKEN}
  grafana: {hmac_secret_env: HOSTILE_GRAFANA_KEY, signature_header: X-Grafana-Alerting-Signature}
  pagerduty: {signature_secrets_env: HOSTILE_PD_KEYS}
"""
SUBJECT = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# --- strategies ------------------------------------------------------------------------------

HOSTILE_TEXT = st.sampled_from(
    [
        "", " ", "../../../../etc/passwd", "$(rm -rf /)", "`id`", "{{7*7}}", "${jndi:ldap://x}",
        "'; DROP TABLE runs; --", "<script>alert(1)</script>", "\x00", "\r\nX-Injected: 1",
        "a" * 100_000, "é" * 5000, "\u202e\u0000\ud7ff", "%00%0d%0a", "checkout\n", "CHECKOUT",
        "checkout --force", "-rf", "__import__('os').system('id')", "null", "1e309",
    ]
)  # fmt: skip
TEXT = st.one_of(HOSTILE_TEXT, st.text(max_size=200))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(TEXT, inner, max_size=5),
    max_leaves=30,
)
HEADER_NAME = st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,30}\Z", fullmatch=True).filter(
    lambda h: h.lower() not in {"content-length", "transfer-encoding", "host", "connection"}
)
HEADER_VALUE = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=300),
    st.sampled_from(["Bearer ", "Bearer " + "A" * 5000, "Basic Og==", f"bearer {AM_TOKEN}x",
                     "v1=", "v1=" + "0" * 64, "sha256=deadbeef", f"Bearer {AM_TOKEN[:-1]}"]),
)  # fmt: skip
HEADERS = st.dictionaries(
    st.one_of(HEADER_NAME, st.sampled_from(["Authorization", "X-Grafana-Alerting-Signature",
                                            "X-PagerDuty-Signature", "Content-Type",
                                            "X-Webhook-Id"])),
    HEADER_VALUE, max_size=6,
)  # fmt: skip
BODY = st.one_of(
    st.binary(max_size=2048),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.integers(64 * 1024, 80 * 1024).map(lambda n: b"[" * n),  # over the size cap
    st.sampled_from([b"", b"{", b"null", b'{"alerts": null}', b'{"alerts": [null]}',
                     b'{"version": "4", "alerts": [{}]}', b"\xff\xfe\x00\x00",
                     b'{"a":' * 5000 + b"1" + b"}" * 5000]),
)  # fmt: skip


@st.composite
def alert_docs(draw: st.DrawFn) -> dict[str, Any]:
    """Alertmanager payloads that parse, with hostile values where a sender controls them."""
    alerts = []
    for _ in range(draw(st.integers(0, 4))):
        labels = {
            "alertname": draw(st.sampled_from(["HostileAlert", "Other", ""]) | TEXT),
            "service": draw(st.sampled_from(["checkout", "api-2"]) | TEXT),
        }
        labels.update(draw(st.dictionaries(TEXT, TEXT, max_size=3)))
        alerts.append({
            "status": draw(st.sampled_from(["firing", "resolved"]) | TEXT),
            "labels": labels,
            "annotations": draw(st.dictionaries(TEXT, TEXT, max_size=3)),
            "startsAt": draw(st.sampled_from(["2026-11-23T10:15:00Z"]) | TEXT),
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": draw(st.from_regex(r"\A[0-9a-f]{16}\Z") | TEXT),
            "generatorURL": draw(TEXT),
        })  # fmt: skip
    return {"version": "4", "groupKey": draw(TEXT), "status": "firing", "receiver": "aura-ops",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": draw(TEXT), "truncatedAlerts": draw(st.integers(-5, 5)),
            "alerts": alerts}  # fmt: skip


# --- the receiver ----------------------------------------------------------------------------


class Receiver:
    """The app over a fresh store, posted to through ASGITransport (no lifespan, no workers)."""

    def __init__(self, tmp: Path) -> None:
        write_runbook(tmp, "target", 'subject = "x"  # what\n')
        (tmp / "routes.yaml").write_text(ROUTES)
        self.db = tmp / "aura-ops.db"
        self.store = RunStore(self.db)
        self.started: list[Job] = []
        opts = ServeOptions(workers=1, max_body_bytes=64 * 1024, output_root=tmp / "outputs")
        self.app = create_app(self.store, load_routes(tmp / "routes.yaml", tmp),
                              runner=self._run, options=opts, environ=ENV)  # fmt: skip

    def _run(self, job: Job) -> RunOutcome:
        self.started.append(job)
        return RunOutcome("OK", "never expected here")

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://rx") as client:
                return await client.post(path, content=body, headers=headers)

        return asyncio.run(go())

    def db_bytes(self) -> bytes:
        return b"".join(p.read_bytes() for p in self.db.parent.glob(self.db.name + "*"))


@pytest.fixture
def rx(tmp_path: Path) -> Any:
    receiver = Receiver(tmp_path)
    yield receiver
    receiver.store.close()


def _sign(body: bytes, key: str) -> str:
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def _no_secret_persisted(rx: Receiver) -> None:
    blob = rx.db_bytes()
    assert not any(s.encode() in blob for s in (AM_TOKEN, GRAFANA_KEY, PD_KEY))


# --- properties ------------------------------------------------------------------------------


def test_a_valid_alert_queues_exactly_one_run(rx: Receiver) -> None:
    """The harness can start a run: the properties below are not vacuously true."""
    doc = {"version": "4", "status": "firing", "alerts": [{
        "status": "firing", "labels": {"alertname": "HostileAlert", "service": "checkout"},
        "annotations": {}, "startsAt": "2026-11-23T10:15:00Z", "fingerprint": "00ff00ff00ff00ff",
    }]}  # fmt: skip
    auth = {"Authorization": f"Bearer {AM_TOKEN}"}
    resp = rx.post("/alertmanager", json.dumps(doc).encode(), auth)
    assert (202, {"queued": 1}) == (resp.status_code, rx.store.stats()["runs"])


@EXAMPLES
@given(path=st.sampled_from(["/alertmanager", "/grafana", "/pagerduty"]), body=BODY,
       headers=HEADERS)  # fmt: skip
def test_unauthenticated_anything_stores_and_starts_nothing(
    rx: Receiver, path: str, body: bytes, headers: dict[str, str]
) -> None:
    """Any body with any headers but no valid credential: a 4xx, nothing stored or started."""
    resp = rx.post(path, body, headers)
    assert resp.status_code in (401, 403, 413), resp.text[:200]
    assert {"runs": {}, "episodes": 0, "deliveries": {}} == rx.store.stats()
    assert [] == rx.started


@EXAMPLES
@given(body=BODY, headers=HEADERS, how=st.sampled_from(["bearer", "grafana", "pagerduty"]))
def test_authenticated_garbage_is_refused_and_starts_nothing(
    rx: Receiver, body: bytes, headers: dict[str, str], how: str
) -> None:
    """Authentic but malformed deliveries: a 4xx (or 202 for an empty alert list), no run."""
    path, auth = {
        "bearer": ("/alertmanager", {"Authorization": f"Bearer {AM_TOKEN}"}),
        "grafana": ("/grafana", {"X-Grafana-Alerting-Signature": _sign(body, GRAFANA_KEY)}),
        "pagerduty": ("/pagerduty", {"X-PagerDuty-Signature": f"v1={_sign(body, PD_KEY)}"}),
    }[how]
    headers = {k: v for k, v in headers.items() if k.lower() not in {a.lower() for a in auth}}
    before = rx.store.stats()
    resp = rx.post(path, body, {**headers, **auth})
    assert resp.status_code < 500, resp.text[:300]
    after = rx.store.stats()
    assert {} == after["runs"] and [] == rx.started
    if resp.status_code >= 400:  # refused: recorded as such, nothing else
        assert before["episodes"] == after["episodes"]
        refused = after["deliveries"].get("refused", 0) - before["deliveries"].get("refused", 0)
        assert (1 if resp.status_code != 413 else 0) == refused
    _no_secret_persisted(rx)


@EXAMPLES
@given(doc=alert_docs())
def test_hostile_alerts_queue_only_what_the_route_accepts(
    rx: Receiver, doc: dict[str, Any]
) -> None:
    """Well-formed alerts with hostile values: runs only for routed, firing alerts whose
    values match the route's pattern, with the route's runbook and nothing else."""
    body = json.dumps(doc).encode()
    before = sum(rx.store.stats()["runs"].values())
    resp = rx.post("/alertmanager", body, {"Authorization": f"Bearer {AM_TOKEN}"})
    assert resp.status_code in (202, 400, 413, 422), resp.text[:300]
    for run in rx.store.list_runs(limit=10_000):
        assert ("target", "HostileAlert") == (run["runbook"], run["alertname"])
        assert set(run["params"]) <= {"subject", "window_start", "lookback_minutes"}
        assert SUBJECT.match(run["params"]["subject"]), run["params"]
    expected_max = sum(
        1 for a in doc["alerts"]
        if a["status"] == "firing" and a["labels"].get("alertname") == "HostileAlert"
        and SUBJECT.match(str(a["labels"].get("service")))
    )  # fmt: skip
    assert sum(rx.store.stats()["runs"].values()) - before <= expected_max
    assert [] == rx.started  # no worker without the lifespan: queued, never run here
    _no_secret_persisted(rx)
