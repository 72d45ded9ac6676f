"""Alert payloads, webhook signatures and routes (aura_ops.alerts, aura_ops.alert_routes)."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from aura_ops.alert_routes import RouteTable, load_routes
from aura_ops.alerts import (
    Alert,
    PayloadError,
    decode_json,
    parse_alertmanager,
    parse_grafana,
    parse_pagerduty,
    truncated_alerts,
    verify_bearer,
    verify_grafana_signature,
    verify_pagerduty_signature,
)
from aura_ops.errors import ConfigError

from .conftest import write_runbook

FIXTURES = Path(__file__).parent / "fixtures" / "alerts"
REPO = Path(__file__).resolve().parent.parent
ALERTED_PARAMS = (
    'subject = "thing"  # what is judged\n'
    'namespace = "default"  # a namespace\n'
    "retries = 3  # an int\n"
    'window_start = ""  # window start\n'
    "lookback_minutes = 15  # window length\n"
    'run_id = ""  # set by the runner\n'
    'trigger = "manual"  # set by the runner'
)
ALERTED_CELL = (
    "from aura_ops import Finding, show, conclude\n"
    "show(Finding('test.alerted', 'alert', 'WARNING', 'subject is ' + repr(subject),"
    " source='test://alerted'))\nconclude()"
)
ROUTES = """
defaults: {environment: staging, lookback_minutes: 10}
routes:
  - name: echo
    match: {alertname: EchoAlert}
    match_re: {severity: "critical|warning"}
    runbook: alerted
    params:
      subject: labels.subject
      retries: labels.retries
  - name: permissive
    match: {alertname: AnythingGoes}
    runbook: alerted
    environment: labels.env
    params:
      subject: {from: labels.subject, pattern: ".*"}
"""


def fixture(name: str) -> Any:
    """A payload from tests/fixtures/alerts/."""
    return json.loads((FIXTURES / name).read_text())


def add_alerted_runbook(root: Path) -> None:
    """The runbook the routes of these tests point at."""
    write_runbook(root, "alerted", ALERTED_PARAMS, ALERTED_CELL)


@pytest.fixture
def routes(project: Path) -> RouteTable:
    """The test routes over the test project."""
    add_alerted_runbook(project)
    path = project / "parameters" / "routes.yaml"
    path.write_text(ROUTES)
    return load_routes(path, project)


def alert(labels: dict[str, str], **kw: Any) -> Alert:
    """A firing Alertmanager alert with ``labels``."""
    return Alert(
        source=kw.get("source", "alertmanager"),
        status=kw.get("status", "firing"),
        name=labels.get("alertname", ""),
        labels=labels,
        annotations=kw.get("annotations", {}),
        starts_at=kw.get("starts_at", "2026-11-23T10:15:00Z"),
        episode=kw.get("episode", "alertmanager:abc:2026-11-23T10:15:00Z"),
    )


# --- payloads --------------------------------------------------------------------------------


def test_alertmanager_v4_payload() -> None:
    """A real-shaped Alertmanager v4 payload becomes one alert keyed by fingerprint+startsAt."""
    (a,) = parse_alertmanager(fixture("alertmanager-firing.json"))
    expected = "alertmanager:6a3f0c1b2d4e5f67:2026-11-23T10:15:23.123456789Z"
    assert (a.source, a.status, a.name, a.episode) == (
        "alertmanager",
        "firing",
        "AuraHighErrorRatio",
        expected,
    )
    assert a.labels["namespace"] == "production"
    assert a.annotations["runbook"] == "high-error-rate"
    assert a.url.startswith("http://prometheus.example:9090/graph")


def test_resolved_notification_is_the_same_episode() -> None:
    """The resolved notification of an alert carries the same episode key as its firing one."""
    (firing,) = parse_alertmanager(fixture("alertmanager-firing.json"))
    (resolved,) = parse_alertmanager(fixture("alertmanager-resolved.json"))
    assert ("resolved", firing.episode) == (resolved.status, resolved.episode)


def test_grafana_payload() -> None:
    """Grafana's v1 payload (an Alertmanager superset) parses; the episode is Grafana's own."""
    (a,) = parse_grafana(fixture("grafana-firing.json"))
    assert (a.source, a.name, a.episode) == (
        "grafana",
        "AuraHighErrorRatio",
        "grafana:a1b2c3d4e5f60718:2026-11-23T10:15:20Z",
    )


def test_grafana_endpoint_refuses_an_alertmanager_payload_version() -> None:
    """A payload version the endpoint does not speak is refused with 422."""
    with pytest.raises(PayloadError) as err:
        parse_grafana(fixture("alertmanager-firing.json"))
    assert err.value.status == 422


def test_pagerduty_events_share_the_incident_episode() -> None:
    """Triggered, annotated and resolved events of one incident are one episode."""
    (trig,) = parse_pagerduty(fixture("pagerduty-incident-triggered.json"))
    (note,) = parse_pagerduty(fixture("pagerduty-incident-annotated.json"))
    (done,) = parse_pagerduty(fixture("pagerduty-incident-resolved.json"))
    assert [trig.status, note.status, done.status] == ["firing", "update", "resolved"]
    assert {"pagerduty:PGR0VU2"} == {trig.episode, note.episode, done.episode}
    assert (
        trig.name,
        trig.labels["service"],
        trig.labels["priority"],
    ) == ("High error rate on aura-api", "API Service", "P1")


def test_pagerduty_service_event_carries_no_alert() -> None:
    """A service event is valid but starts nothing."""
    assert parse_pagerduty(fixture("pagerduty-service-updated.json")) == []


def test_missing_fingerprint_is_derived_from_labels() -> None:
    """Without a fingerprint, the same label set always gives the same episode."""
    doc = fixture("alertmanager-firing.json")
    del doc["alerts"][0]["fingerprint"]
    first, second = parse_alertmanager(doc)[0], parse_alertmanager(copy.deepcopy(doc))[0]
    assert first.episode == second.episode
    assert len(first.fingerprint) == 16


def test_truncated_alerts_are_reported() -> None:
    """``truncatedAlerts`` from a sender with max_alerts is surfaced."""
    doc = fixture("alertmanager-firing.json")
    doc["truncatedAlerts"] = 7
    assert (truncated_alerts(doc), truncated_alerts({"alerts": []})) == (7, 0)


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"[" * 100000])
def test_malformed_json_is_400(body: bytes) -> None:
    """Bytes that are not JSON are refused with 400."""
    with pytest.raises(PayloadError) as err:
        decode_json(body)
    assert err.value.status == 400


def _am(**alert_changes: Any) -> dict[str, Any]:
    doc = fixture("alertmanager-firing.json")
    doc["alerts"][0].update(alert_changes)
    return doc


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ([1, 2], "JSON object"),
        ({"version": "4"}, "no 'alerts' list"),
        ({"alerts": "x"}, "no 'alerts' list"),
        ({"version": "3", "alerts": []}, "version"),
        ({"alerts": [1]}, "alerts[0] must be an object"),
        (_am(labels={"alertname": 5}), "must be a string"),
        (_am(labels={"bad name": "x"}), "invalid name"),
        (_am(labels={"a": "x" * 5000}), "longer than"),
        (_am(status="pending"), "status"),
        (_am(startsAt="yesterday"), "RFC 3339"),
        (_am(fingerprint="../../x"), "fingerprint"),
        ({"alerts": [{}] * 1001}, "at most 1000"),
    ],
)
def test_wrong_schema_is_422(doc: Any, words: str) -> None:
    """JSON of the wrong shape is refused with 422 and a message naming the problem."""
    with pytest.raises(PayloadError) as err:
        parse_alertmanager(doc)
    assert (err.value.status, words in str(err.value)) == (422, True)


@pytest.mark.parametrize(
    "doc", [{}, {"event": {"event_type": "incident.triggered"}}, {"event": {"data": {}}}]
)
def test_pagerduty_wrong_schema_is_422(doc: Any) -> None:
    """A PagerDuty payload without event type or data is refused with 422."""
    with pytest.raises(PayloadError) as err:
        parse_pagerduty(doc)
    assert err.value.status == 422


# --- signatures ------------------------------------------------------------------------------


def test_bearer_token() -> None:
    """The bearer token must match one of the configured tokens exactly."""
    assert verify_bearer("Bearer s3cret-token", ["s3cret-token"])
    assert verify_bearer("bearer new-token", ["old-token", "new-token"])
    assert not verify_bearer("Bearer s3cret-tokeN", ["s3cret-token"])
    assert not verify_bearer("Basic s3cret-token", ["s3cret-token"])
    assert not verify_bearer("Bearer ", [""])
    assert not verify_bearer("", ["s3cret-token"])


def test_grafana_hmac_signature() -> None:
    """Grafana's hex HMAC-SHA256 of the raw body is verified; any change breaks it."""
    body = (FIXTURES / "grafana-firing.json").read_bytes()
    sig = hmac.new(b"grafana-secret", body, hashlib.sha256).hexdigest()
    assert verify_grafana_signature(body, sig, ["grafana-secret"])
    assert verify_grafana_signature(body, sig.upper(), ["old", "grafana-secret"])
    assert not verify_grafana_signature(body + b" ", sig, ["grafana-secret"])
    assert not verify_grafana_signature(body, sig, ["other-secret"])
    assert not verify_grafana_signature(body, "", ["grafana-secret"])


def test_grafana_timestamped_signature_has_a_replay_window() -> None:
    """With a timestamp header the signed data is 'ts:body' and old timestamps are refused."""
    body = b'{"alerts": []}'
    sig = hmac.new(b"k3y-value", b"1700000000:" + body, hashlib.sha256).hexdigest()
    assert verify_grafana_signature(body, sig, ["k3y-value"], timestamp="1700000000", now=1.7e9)
    late = 1.7e9 + 301
    assert not verify_grafana_signature(body, sig, ["k3y-value"], timestamp="1700000000", now=late)
    assert not verify_grafana_signature(body, sig, ["k3y-value"], timestamp="abc", now=1.7e9)


def test_pagerduty_signature_with_rotation() -> None:
    """Any v1 signature matching any configured secret is accepted, others are not."""
    body = (FIXTURES / "pagerduty-incident-triggered.json").read_bytes()

    def sign(secret: str) -> str:
        return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()

    rotating = f"{sign('old-secret')},{sign('new-secret')}"
    assert verify_pagerduty_signature(body, rotating, ["new-secret"])
    assert verify_pagerduty_signature(body, sign("old-secret"), ["new-secret", "old-secret"])
    assert not verify_pagerduty_signature(body, sign("other"), ["new-secret"])
    assert not verify_pagerduty_signature(body, sign("new-secret")[3:], ["new-secret"])
    assert not verify_pagerduty_signature(body + b"\n", rotating, ["new-secret"])


# --- routes ----------------------------------------------------------------------------------


def test_shipped_routes_file_is_valid() -> None:
    """parameters/routes.yaml loads against the repository's runbooks and environments."""
    table = load_routes(REPO / "parameters" / "routes.yaml", REPO)
    (firing,) = parse_alertmanager(fixture("alertmanager-firing.json"))
    request = table.resolve(firing)
    assert request is not None
    assert (
        request.runbook,
        request.environment,
        request.route,
    ) == ("high-error-rate", "example", "error-ratio")
    assert {"namespace": "production", "deployment": "aura-api"}.items() <= request.params.items()
    assert request.params["window_start"] == "2026-11-23T10:00:23.123456+00:00"


def test_route_maps_labels_to_typed_parameters(routes: RouteTable) -> None:
    """Labels become parameters of the declared type; the window starts a lookback earlier."""
    a = alert({"alertname": "EchoAlert", "severity": "critical", "subject": "api", "retries": "5"})
    request = routes.resolve(a)
    assert request is not None
    assert dict(request.params) == {
        "subject": "api",
        "retries": 5,
        "window_start": "2026-11-23T10:05:00+00:00",
    }
    assert (request.runbook, request.environment) == ("alerted", "staging")


def test_route_regex_is_anchored(routes: RouteTable) -> None:
    """``match_re`` matches the whole label value, like Alertmanager matchers."""
    assert routes.resolve(alert({"alertname": "EchoAlert", "severity": "critical-ish"})) is None
    assert routes.resolve(alert({"alertname": "EchoAlert"})) is None


def test_unknown_alert_is_unrouted(routes: RouteTable) -> None:
    """An alert matching no route and naming no runbook has no run request."""
    assert routes.resolve(alert({"alertname": "SomethingElse"})) is None


def test_runbook_annotation_is_honoured(routes: RouteTable) -> None:
    """An alert naming its runbook in an annotation runs it, with the default environment."""
    request = routes.resolve(alert({"alertname": "X"}, annotations={"runbook": "alerted"}))
    assert request is not None
    assert (request.runbook, request.environment) == ("alerted", "staging")


@pytest.mark.parametrize("name", ["no-such-runbook", "../../etc/passwd", "__import__('os')"])
def test_annotation_naming_a_missing_runbook_is_refused(routes: RouteTable, name: str) -> None:
    """An alert routed to a runbook that does not exist is refused with 422."""
    with pytest.raises(PayloadError) as err:
        routes.resolve(alert({"alertname": "X"}, annotations={"runbook": name}))
    assert err.value.status == 422


@pytest.mark.parametrize("value", ["__import__('os')", "../../etc/passwd", "a\nb", "x;rm -rf /"])
def test_hostile_label_values_are_refused(routes: RouteTable, value: str) -> None:
    """Code or a path traversal in a mapped label is refused (422), never passed on."""
    a = alert({"alertname": "EchoAlert", "severity": "warning", "subject": value})
    with pytest.raises(PayloadError) as err:
        routes.resolve(a)
    assert err.value.status == 422
    assert "parameter 'subject'" in str(err.value)


def test_values_that_are_not_the_declared_type_are_refused(routes: RouteTable) -> None:
    """A label mapped to an int parameter must be an int."""
    a = alert({"alertname": "EchoAlert", "severity": "warning", "retries": "many"})
    with pytest.raises(PayloadError):
        routes.resolve(a)


def test_a_permissive_pattern_passes_values_as_plain_strings(routes: RouteTable) -> None:
    """With ``pattern: .*`` a hostile-looking value is passed on as the string it is."""
    a = alert({"alertname": "AnythingGoes", "subject": "__import__('os')", "env": "staging"})
    request = routes.resolve(a)
    assert request is not None
    assert request.params["subject"] == "__import__('os')"


def test_environment_from_a_label_must_exist(routes: RouteTable) -> None:
    """An environment taken from a label is checked like any other name."""
    a = alert({"alertname": "AnythingGoes", "env": "../prod"})
    with pytest.raises(PayloadError):
        routes.resolve(a)


def test_storm_group_ignores_fingerprint_and_start(routes: RouteTable) -> None:
    """Two episodes of the same alert with the same parameters share a group key."""
    labels = {"alertname": "EchoAlert", "severity": "warning", "subject": "api"}
    one = routes.resolve(alert(labels, episode="a", starts_at="2026-11-23T10:00:00Z"))
    two = routes.resolve(alert(labels, episode="b", starts_at="2026-11-23T10:01:00Z"))
    other = routes.resolve(alert({**labels, "subject": "db"}))
    assert one is not None and two is not None and other is not None
    assert (one.group_key == two.group_key, one.group_key == other.group_key) == (True, False)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("routes: [{runbook: nope}]", "unknown runbook"),
        ("routes: [{runbook: alerted, params: {missing: labels.x}}]", "no parameter 'missing'"),
        ("routes: [{runbook: alerted, params: {run_id: labels.x}}]", "set by aura-ops"),
        ("routes: [{runbook: alerted, params: {subject: label.x}}]", "labels.NAME"),
        ("routes: [{runbook: alerted, match_re: {a: '('}}]", "bad regex"),
        ("routes: [{runbook: alerted, enviroment: staging}]", "unknown key"),
        ("routes: [{runbook: alerted, environment: prod}]", "unknown environment"),
        ("routes: [{runbook: alerted, set: {retries: lots}}]", "not a valid int"),
        ("receivers: {slack: {}}", "unknown receiver"),
        ("notify: {url: http://x}", "unknown key"),
        ("routes: {a: 1}", "must be a list"),
        ("routes: [", "not valid YAML"),
    ],
)
def test_bad_routes_files_are_refused_at_load(project: Path, text: str, words: str) -> None:
    """Each mistake in a routes file is a ConfigError naming it, before anything is served."""
    add_alerted_runbook(project)
    path = project / "routes.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_routes(path, project)
    assert words in err.value.one_line()
