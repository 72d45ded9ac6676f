"""Kubernetes checks against a real HTTP server that serves recorded API objects."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from aura_ops.errors import ConfigError, QueryError, SourceUnavailableError
from aura_ops.findings import Status
from aura_ops.kube import (
    KubeApiClient,
    check_events,
    check_pod_resources,
    check_pods,
    check_rollout_history,
    connect_kube,
    connect_kube_url,
    containers_frame,
    events_frame,
    fetch_events,
    fetch_logs,
    fetch_pod_logs,
    fetch_pods,
    fetch_rollout_history,
    parse_quantity,
    pods_frame,
    rollout_history_frame,
    selector_string,
)
from aura_ops.kube_fixture import (
    KubeFixtureServer,
    load_kube_scenario,
    match_field_selector,
    match_label_selector,
    serve_kube_fixture,
)

from .conftest import closed_port, hanging_server

SCENARIO = Path(__file__).parent / "fixtures" / "kube" / "aura-api-incident"
ROLE = Path(__file__).parent.parent / "deploy" / "rbac" / "aura-ops-readonly-role.yaml"
NS = "aura"
API = "app=aura-api"
OOM_POD, CRASH_POD, HEALTHY_POD = (
    "aura-api-7f6b5c4d98-q8w7e",
    "aura-api-7f6b5c4d98-m4n5b",
    "aura-api-7f6b5c4d98-x2k9p",
)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """The incident scenario, timestamps shifted so that its 'now' is the test's now."""
    with serve_kube_fixture(SCENARIO) as base_url:
        yield base_url


@pytest.fixture
def api(url: str) -> KubeApiClient:
    """A client for the fixture server with a short timeout."""
    return connect_kube_url(url, timeout_s=3.0)


def by_check(findings: list[Any]) -> dict[str, Any]:
    return {f.check: f for f in findings}


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return dict(json.loads(resp.read()))


# -- the fixture server ------------------------------------------------------------------------
def test_fixture_serves_list_shapes_with_label_selectors(url: str) -> None:
    """Lists come back as the API server sends them, filtered by label selector."""
    body = get_json(f"{url}/api/v1/namespaces/{NS}/pods?labelSelector=app%3Daura-api")
    assert (body["kind"], body["apiVersion"]) == ("PodList", "v1")
    assert [i["metadata"]["name"] for i in body["items"]] == [HEALTHY_POD, OOM_POD, CRASH_POD]
    assert "kind" not in body["items"][0]
    both = get_json(
        f"{url}/api/v1/namespaces/{NS}/pods?labelSelector=app+in+%28aura-api%2Caura-worker%29"
    )
    assert len(both["items"]) == 4
    assert len(get_json(f"{url}/api/v1/namespaces/other/pods")["items"]) == 0


def test_fixture_single_object_and_not_found(url: str) -> None:
    """A named object carries kind/apiVersion; a missing one is a 404 Status."""
    dep = get_json(f"{url}/apis/apps/v1/namespaces/{NS}/deployments/aura-api")
    assert (dep["kind"], dep["apiVersion"]) == ("Deployment", "apps/v1")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{url}/apis/apps/v1/namespaces/{NS}/deployments/nope", timeout=5)
    status = json.loads(err.value.read())
    assert (
        status["code"],
        status["reason"],
        status["message"],
    ) == (404, "NotFound", 'deployments.apps "nope" not found')


def test_fixture_objects_are_valid_for_the_client_models(url: str) -> None:
    """The official client's strict models (unknown fields rejected) accept every fixture."""
    api = k8s.ApiClient(k8s.Configuration(host=url))
    core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
    pods = core.list_namespaced_pod(NS, _request_timeout=5)
    events = core.list_namespaced_event(NS, _request_timeout=5)
    rs = apps.list_namespaced_replica_set(NS, _request_timeout=5)
    dep = apps.read_namespaced_deployment("aura-api", NS, _request_timeout=5)
    assert (
        len(pods.items),
        len(events.items),
        len(rs.items),
        dep.metadata.annotations["deployment.kubernetes.io/revision"],
    ) == (4, 8, 5, "3")
    crash = next(p for p in pods.items if p.metadata.name == CRASH_POD)
    assert crash.status.container_statuses[0].state.waiting.reason == "CrashLoopBackOff"


def test_fixture_shifts_timestamps_to_now(url: str) -> None:
    """The scenario's 'now' becomes the real now; unshifted it keeps the file's times."""
    newest = max(
        e["lastTimestamp"] for e in get_json(f"{url}/api/v1/namespaces/{NS}/events")["items"]
    )
    age = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(newest)
    assert dt.timedelta(seconds=40) < age < dt.timedelta(seconds=120)
    with serve_kube_fixture(SCENARIO, shift_to_now=False) as raw_url:
        items = get_json(f"{raw_url}/api/v1/namespaces/{NS}/events")["items"]
    assert max(e["lastTimestamp"] for e in items) == "2026-11-23T23:29:10Z"


def test_selector_matching() -> None:
    """Equality, inequality, set-based and existence selectors match as the API server does."""
    labels = {"app": "aura-api", "tier": "web"}
    cases = {
        "app=aura-api": True,
        "app==aura-api,tier=web": True,
        "app!=aura-api": False,
        "app in (aura-api, x)": True,
        "app notin (aura-api)": False,
        "tier": True,
        "!tier": False,
        "track": False,
        "": True,
    }
    assert cases == {sel: match_label_selector(labels, sel) for sel in cases}
    event = {"type": "Warning", "involvedObject": {"name": "p1"}}
    assert [
        match_field_selector(event, "involvedObject.name=p1"),
        match_field_selector(event, "type!=Warning"),
        match_field_selector(event, "reason="),
    ] == [True, False, True]
    assert (
        selector_string(
            {
                "matchLabels": {"app": "aura-api"},
                "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["a", "b"]},
                    {"key": "legacy", "operator": "DoesNotExist"},
                ],
            }
        )
        == "app=aura-api,env in (a,b),!legacy"
    )


# -- pods --------------------------------------------------------------------------------------
def test_check_pods_finds_crashloop_oomkilled_and_restarts(api: KubeApiClient) -> None:
    """The incident: one pod crash-looping, one OOMKilled 4 times, 1 of 3 not ready."""
    found = by_check(check_pods(api, NS, label_selector=API))
    assert {k: f.status for k, f in found.items()} == {
        "kube.pods_ready": Status.WARNING,
        "kube.crashloop": Status.CRITICAL,
        "kube.oomkilled": Status.WARNING,
        "kube.restarts": Status.WARNING,
    }
    assert (
        f"1 of 3 pods not ready: {CRASH_POD} (CrashLoopBackOff)" == found["kube.pods_ready"].summary
    )
    assert found["kube.crashloop"].summary == (
        f"1 container crash-looping: {CRASH_POD}/api "
        "(CrashLoopBackOff, 7 restarts, last exit 1 Error)"
    )
    assert f"1 container OOMKilled: {OOM_POD}/api (limit 512 MiB, 4 restarts)" == (
        found["kube.oomkilled"].summary
    )
    crash_log = found["kube.crashloop"].evidence[1]
    assert "No space left on device" in crash_log.data
    assert "Render cache holds 21504 frames" in found["kube.oomkilled"].evidence[1].data
    host = api.configuration.host
    expected = (
        f"check_pods(connect_kube_url('{host}', timeout_s=3.0), 'aura', label_selector='{API}')"
    )
    assert found["kube.restarts"].reproduce == expected
    assert found["kube.restarts"].observed == 7
    assert found["kube.pods_ready"].source.startswith("GET /api/v1/namespaces/aura/pods")


def test_check_pods_healthy_is_ok(api: KubeApiClient) -> None:
    """A healthy workload gives four OK findings, each saying what was looked at."""
    findings = check_pods(api, NS, label_selector="app=aura-worker")
    assert [f.status for f in findings] == [Status.OK] * 4
    assert findings[0].summary == "1 of 1 pods ready (app=aura-worker in namespace aura)"


def test_check_pods_without_pods_is_critical(api: KubeApiClient) -> None:
    """No pod matching the selector is an outage (or a wrong selector), never OK."""
    (finding,) = check_pods(api, NS, label_selector="app=aura-nothing")
    assert (
        finding.status,
        finding.summary,
    ) == (Status.CRITICAL, "No pods match app=aura-nothing in namespace aura")


def test_frames_read_like_kubectl(api: KubeApiClient) -> None:
    """pods_frame is `kubectl get pods`; containers_frame shows last terminations."""
    pods = fetch_pods(api, NS, label_selector=API)
    frame = pods_frame(pods)
    assert (frame[["ready", "status", "restarts"]].values.tolist()) == [
        ["1/1", "Running", 0],
        ["1/1", "Running", 4],
        ["0/1", "CrashLoopBackOff", 7],
    ]
    oom = containers_frame(pods).set_index("pod").loc[OOM_POD]
    assert (
        oom["state"],
        oom["last_reason"],
        oom["last_exit_code"],
        oom["memory_limit_mib"],
    ) == ("running", "OOMKilled", 137, 512.0)


# -- events ------------------------------------------------------------------------------------
def test_check_events_warns_about_recent_warnings(api: KubeApiClient) -> None:
    """Warnings of the last hour are named by count; the 2-hour-old one is left out."""
    (finding,) = check_events(api, NS)
    assert finding.status == Status.WARNING
    assert finding.summary == (
        "2 Warning events in the last 60 min: BackOff ×31 on pod/aura-api-7f6b5c4d98-m4n5b, "
        "Unhealthy ×12 on pod/aura-api-7f6b5c4d98-q8w7e"
    )
    rows = finding.evidence[0].data["rows"]
    assert [r[0] for r in rows[:3]] == ["Warning", "Warning", "Normal"]


def test_check_events_for_a_quiet_object_is_ok(api: KubeApiClient) -> None:
    """A field selector narrows to one pod; no Warnings there is OK."""
    (finding,) = check_events(api, NS, field_selector=f"involvedObject.name={HEALTHY_POD}")
    assert (
        finding.status,
        finding.summary,
    ) == (Status.OK, "No Warning events in the last 60 min (0 Normal)")


def test_events_frame_orders_warning_first(api: KubeApiClient) -> None:
    """events_frame puts Warnings first, newest first."""
    frame = events_frame(fetch_events(api, NS))
    assert frame["reason"].head(3).tolist() == ["BackOff", "Unhealthy", "FailedScheduling"]


# -- rollout history ---------------------------------------------------------------------------
def test_fetch_rollout_history_lists_the_three_revisions(api: KubeApiClient) -> None:
    """Revisions come from ReplicaSets the Deployment controls; the canary's is not among them."""
    changes = fetch_rollout_history(api, "aura-api", NS)
    assert [(c["revision"], c["version"], c["cause"], c["current"]) for c in changes] == [
        (1, "1.4.0", None, False),
        (2, "1.4.1", "Release 1.4.1: provider retry backoff", False),
        (3, "1.5.0", "Release 1.5.0: render pipeline cache", True),
    ]
    assert {"kubernetes"} == {c["source"] for c in changes}
    assert all(isinstance(c["at"], dt.datetime) and c["at"].tzinfo for c in changes)
    assert changes[-1]["image"] == "ghcr.io/aura-studio/aura-api:1.5.0"
    assert (rollout_history_frame(changes)["change_cause"].head(2).tolist()) == [
        "<none>",
        "Release 1.4.1: provider retry backoff",
    ]


def test_check_rollout_history_names_a_recent_rollout(api: KubeApiClient) -> None:
    """A rollout 25 minutes ago is INFO with its cause and the revision before it."""
    (finding,) = check_rollout_history(api, "aura-api", NS)
    assert finding.status == Status.INFO
    assert finding.summary.startswith("deployment/aura-api rolled out revision 3 (1.5.0) 2")
    assert finding.summary.endswith(
        "ago: Release 1.5.0: render pipeline cache; revision 2 ran 1.4.1"
    )
    assert "kubectl rollout undo deployment/aura-api -n aura" in finding.hint


def test_check_rollout_history_old_rollout_is_ok(api: KubeApiClient) -> None:
    """Two days later the same history is OK."""
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    (finding,) = check_rollout_history(api, "aura-api", NS, now=later)
    assert (finding.status, finding.observed) == (Status.OK, 3)
    assert "no rollout in the last 60 min" in finding.summary


def test_check_rollout_history_unknown_deployment(api: KubeApiClient) -> None:
    """A deployment that does not exist is UNKNOWN, naming the API's answer."""
    (finding,) = check_rollout_history(api, "aura-nope", NS)
    assert finding.status == Status.UNKNOWN
    assert 'deployments.apps "aura-nope" not found' in finding.summary


# -- metrics and logs --------------------------------------------------------------------------
def test_check_pod_resources_memory_against_limit(api: KubeApiClient) -> None:
    """470 MiB of a 512 MiB limit is CRITICAL (91.8 %); the worker at 35 % is OK."""
    (leak,) = check_pod_resources(api, NS, label_selector=API)
    assert (leak.status, leak.observed) == (Status.CRITICAL, 91.8)
    assert f"{OOM_POD}/api uses 470 MiB of its 512 MiB limit (91.8 %)" == leak.summary
    (worker,) = check_pod_resources(api, NS, label_selector="app=aura-worker")
    assert (worker.status, worker.observed) == (Status.OK, 35.0)


def test_parse_quantity() -> None:
    """CPU and memory quantities in base units."""
    assert [parse_quantity(q) for q in ["250m", "512Mi", "1Gi", "212483917n", "215040Ki", "2"]] == [
        0.25,
        536870912.0,
        1073741824.0,
        0.212483917,
        220200960.0,
        2.0,
    ]
    with pytest.raises(ValueError):
        parse_quantity("lots")


def test_fetch_pod_logs_current_previous_tail_and_since(api: KubeApiClient) -> None:
    """Logs honour previous, tail_lines and since_seconds like kubectl logs."""
    previous = fetch_pod_logs(api, OOM_POD, NS, previous=True, tail_lines=1)
    assert (
        previous.endswith("HTTP 200 POST /api/render Duration 1890ms\n")
        and previous.count("\n") == 1
    )
    recent = fetch_pod_logs(api, OOM_POD, NS, since_seconds=60).splitlines()
    assert ["Render cache holds 19968 frames (436 MiB)" in ln for ln in recent] == [True]
    with pytest.raises(QueryError, match="previous terminated container"):
        fetch_pod_logs(api, HEALTHY_POD, NS, previous=True)


def test_fetch_logs_by_selector(api: KubeApiClient) -> None:
    """kubectl logs -l app=aura-api --previous: only containers that restarted."""
    logs = fetch_logs(api, NS, label_selector=API, previous=True)
    assert [f"{OOM_POD}/api", f"{CRASH_POD}/api"] == sorted(logs, reverse=True)
    assert "ERROR" in logs[f"{CRASH_POD}/api"]


def test_metrics_api_not_served_is_unknown() -> None:
    """Without metrics-server the memory check is UNKNOWN and says why."""
    scenario = load_kube_scenario(SCENARIO)
    del scenario["metrics.k8s.io/pods"]
    with serve_kube_fixture(scenario) as base:
        (finding,) = check_pod_resources(connect_kube_url(base), NS, label_selector=API)
    assert finding.status == Status.UNKNOWN
    assert "metrics.k8s.io API is not served (is metrics-server installed?)" in finding.summary


# -- refusing, unreachable, hanging ------------------------------------------------------------
def test_forbidden_names_the_missing_rbac_permission() -> None:
    """A 403 is UNKNOWN naming the verb, resource and API group the role lacks."""
    scenario = load_kube_scenario(SCENARIO)
    scenario["errors"] = {"pods": 403, "metrics.k8s.io/pods": 403}
    with serve_kube_fixture(scenario) as base:
        api = connect_kube_url(base)
        (pods,) = check_pods(api, NS, label_selector=API)
        (metrics,) = check_pod_resources(api, NS, label_selector=API)
    assert pods.status == Status.UNKNOWN
    assert "forbidden: RBAC does not allow 'list' on 'pods' (API group core) in namespace aura" in (
        pods.summary
    )
    assert "aura-ops-readonly-role.yaml" in pods.hint
    assert "'list' on 'pods' (API group metrics.k8s.io)" in metrics.summary


def test_forbidden_logs_still_judge_the_pods() -> None:
    """Without pods/log the crash is still CRITICAL; the evidence says the log was refused."""
    scenario = load_kube_scenario(SCENARIO)
    scenario["errors"] = {"pods/log": 403}
    with serve_kube_fixture(scenario) as base:
        found = by_check(check_pods(connect_kube_url(base), NS, label_selector=API))
    assert found["kube.crashloop"].status == Status.CRITICAL
    assert "'get' on 'pods/log'" in found["kube.crashloop"].evidence[1].data


def test_hanging_log_reads_do_not_add_up() -> None:
    """When pods/log hangs, one read times out and the others are skipped, not waited for."""
    scenario = load_kube_scenario(SCENARIO)
    scenario["errors"] = {"pods/log": "hang"}
    with serve_kube_fixture(scenario) as base:
        start = time.monotonic()
        found = by_check(check_pods(connect_kube_url(base, timeout_s=1), NS, label_selector=API))
        elapsed = time.monotonic() - start
    assert elapsed < 2.5
    assert found["kube.crashloop"].status == Status.CRITICAL
    assert "did not answer within 1 s" in found["kube.crashloop"].evidence[1].data
    assert "skipped" in found["kube.oomkilled"].evidence[1].data


def test_server_error_is_unknown() -> None:
    """An HTTP 500 from the API server is UNKNOWN, never OK."""
    with serve_kube_fixture({"errors": {"events": 500}}) as base:
        (finding,) = check_events(connect_kube_url(base), NS)
    assert finding.status == Status.UNKNOWN
    assert "HTTP 500" in finding.summary


def test_unreachable_is_unknown_at_once() -> None:
    """A closed port gives UNKNOWN 'connection refused' for every check, quickly."""
    api = connect_kube_url(f"http://127.0.0.1:{closed_port()}", timeout_s=2)
    start = time.monotonic()
    findings = [
        *check_pods(api, NS),
        *check_events(api, NS),
        *check_rollout_history(api, "aura-api", NS),
        *check_pod_resources(api, NS),
    ]
    assert [f.status for f in findings] == [Status.UNKNOWN] * 4
    assert all("unreachable: connection refused" in f.summary for f in findings)
    assert time.monotonic() - start < 2


def test_hanging_api_server_is_unknown_within_the_timeout() -> None:
    """A server that accepts and never answers gives UNKNOWN after timeout_s, not a hang."""
    with hanging_server() as port:
        api = connect_kube_url(f"http://127.0.0.1:{port}", timeout_s=0.5)
        start = time.monotonic()
        (finding,) = check_pods(api, NS, label_selector=API)
        elapsed = time.monotonic() - start
    assert finding.status == Status.UNKNOWN
    assert (
        f"the Kubernetes API at http://127.0.0.1:{port} did not answer within 0.5 s"
        in finding.summary
    )
    assert elapsed < 1.5


class _Garbage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = b"<html>502 Bad Gateway from some proxy</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_garbage_answer_is_unknown() -> None:
    """An answer that is not JSON (a proxy's HTML page) is UNKNOWN."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        (finding,) = check_pods(
            connect_kube_url(f"http://127.0.0.1:{server.server_address[1]}"), NS
        )
    finally:
        server.shutdown()
        server.server_close()
    assert finding.status == Status.UNKNOWN
    assert "not JSON" in finding.summary


# -- connecting --------------------------------------------------------------------------------
def write_kubeconfig(path: Path, server: str, token: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fixture", "cluster": {"server": server}}],
        "users": [{"name": "aura-ops", "user": {"token": token}}],
        "contexts": [{"name": "fixture", "context": {"cluster": "fixture", "user": "aura-ops"}}],
        "current-context": "fixture",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_connect_kube_from_kubeconfig_sends_the_token(tmp_path: Path) -> None:
    """A kubeconfig context authenticates; the token never appears in a finding."""
    token = "s3cr3t-token-value"
    with KubeFixtureServer(SCENARIO, token=token) as server:
        config = write_kubeconfig(tmp_path / "config", server.url, token)
        api = connect_kube("fixture", kubeconfig=config, timeout_s=2)
        findings = check_pods(api, NS, label_selector="app=aura-worker")
        wrong = write_kubeconfig(tmp_path / "wrong", server.url, "not-the-token")
        (refused,) = check_pods(connect_kube("fixture", kubeconfig=wrong), NS)
    assert [f.status for f in findings] == [Status.OK] * 4
    assert findings[0].reproduce.startswith(
        f"check_pods(connect_kube('fixture', kubeconfig='{config}'"
    )
    assert token not in json.dumps([f.to_dict() for f in findings])
    assert (refused.status, "unauthorized" in refused.summary) == (Status.UNKNOWN, True)


def test_connect_kube_url_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """connect_kube_url reads the token from the named env var and names only the var."""
    monkeypatch.setenv("AURA_TEST_KUBE_TOKEN", "t0k3n")
    with KubeFixtureServer({}, token="t0k3n") as server:
        base = server.url
        api = connect_kube_url(base, token_env="AURA_TEST_KUBE_TOKEN")
        assert fetch_pods(api, NS) == []
    assert f"connect_kube_url('{base}', token_env='AURA_TEST_KUBE_TOKEN')" == api.origin
    monkeypatch.delenv("AURA_TEST_KUBE_TOKEN")
    with pytest.raises(ConfigError, match="AURA_TEST_KUBE_TOKEN is not set"):
        connect_kube_url(base, token_env="AURA_TEST_KUBE_TOKEN")


def test_connect_kube_without_credentials_is_a_config_error(tmp_path: Path) -> None:
    """A missing kubeconfig or service account raises ConfigError with a hint."""
    with pytest.raises(ConfigError, match="cannot load Kubernetes credentials") as err:
        connect_kube(kubeconfig=tmp_path / "missing")
    assert "kubeconfig" in err.value.hint
    with pytest.raises(ConfigError, match="in-cluster service account"):
        connect_kube(in_cluster=True)


def test_fetch_raises_typed_errors() -> None:
    """fetch_* raise SourceUnavailableError (not urllib3's exceptions) when the API is down."""
    with pytest.raises(SourceUnavailableError, match="connection refused"):
        fetch_pods(connect_kube_url(f"http://127.0.0.1:{closed_port()}"), NS)


def test_rbac_role_is_read_only_and_covers_every_read() -> None:
    """The shipped Role grants get/list/watch on exactly what the checks read."""
    docs = list(yaml.safe_load_all(ROLE.read_text()))
    role = next(d for d in docs if d["kind"] == "Role")
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert {
        ("", "pods"),
        ("", "pods/log"),
        ("", "events"),
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("metrics.k8s.io", "pods"),
    } == set(granted)
    assert all(verbs == {"get", "list", "watch"} for verbs in granted.values())
