"""A Kubernetes-API-shaped HTTP server that serves recorded objects, for tests and drills.

No cluster can run on a developer laptop or in CI here, so the Kubernetes checks in
:mod:`aura_ops.kube` are tested against this server instead: a real HTTP server on 127.0.0.1
(stdlib ``ThreadingHTTPServer`` in a thread) that answers the read-only API paths those checks
call with the response shapes kube-apiserver and metrics-server produce::

    GET /api/v1/namespaces/{ns}/pods[/{name}]          PodList / Pod
    GET /api/v1/namespaces/{ns}/pods/{name}/log        text (container, previous, tailLines,
                                                       sinceSeconds, timestamps, limitBytes)
    GET /api/v1/namespaces/{ns}/events                 EventList
    GET /apis/apps/v1/namespaces/{ns}/replicasets      ReplicaSetList
    GET /apis/apps/v1/namespaces/{ns}/deployments[/{name}]
    GET /apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods[/{name}]   PodMetricsList
    GET /version

``labelSelector`` (equality- and set-based) and ``fieldSelector`` (``a.b=c``, ``!=``) filter
lists as the API server does; unknown paths, missing objects and refused requests answer with
``Status`` objects (404, 400, 401, 403, 500).

A *scenario* is a directory (or the equivalent dict)::

    scenario.json       {"now": "<RFC 3339>", "errors": {"pods": 403}, "description": "..."}
                        errors: resource ("pods", "pods/log", "events", "replicasets",
                        "deployments", "metrics.k8s.io/pods") -> HTTP status, or "hang"
    pods.json           a PodList as the API returns it (or `kubectl get pods -o json`)
    events.json         an EventList;  replicasets.json, deployments.json;
    pod-metrics.json    a metrics.k8s.io PodMetricsList (absent: metrics API not served)
    logs/<pod>/<container>.log, logs/<pod>/<container>.previous.log
                        kubelet log lines, each prefixed with its RFC 3339 timestamp

When the scenario names its ``now``, every timestamp in it is shifted so that ``now`` is the
moment the server starts: "OOMKilled 4 minutes ago" stays 4 minutes ago whenever the test runs.

    with serve_kube_fixture("tests/fixtures/kube/memory-leak") as url:
        findings = check_pods(connect_kube_url(url), "aura", label_selector="app=aura-api")
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "KubeFixtureServer",
    "load_kube_scenario",
    "match_field_selector",
    "match_label_selector",
    "serve_kube_fixture",
]

#: resource key -> (file name, API group, apiVersion, list kind, item kind)
RESOURCES: dict[str, tuple[str, str, str, str, str]] = {
    "pods": ("pods.json", "", "v1", "PodList", "Pod"),
    "events": ("events.json", "", "v1", "EventList", "Event"),
    "replicasets": ("replicasets.json", "apps", "apps/v1", "ReplicaSetList", "ReplicaSet"),
    "deployments": ("deployments.json", "apps", "apps/v1", "DeploymentList", "Deployment"),
    "metrics.k8s.io/pods": (
        "pod-metrics.json",
        "metrics.k8s.io",
        "metrics.k8s.io/v1beta1",
        "PodMetricsList",
        "PodMetrics",
    ),
}

_ROUTES = [
    (re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)/log$"), "pods/log"),
    (re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods(?:/(?P<name>[^/]+))?$"), "pods"),
    (re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/events(?:/(?P<name>[^/]+))?$"), "events"),
    (re.compile(r"^/api/v1/(?P<res>pods|events)$"), ""),
    (
        re.compile(r"^/apis/apps/v1/namespaces/(?P<ns>[^/]+)/replicasets(?:/(?P<name>[^/]+))?$"),
        "replicasets",
    ),
    (
        re.compile(r"^/apis/apps/v1/namespaces/(?P<ns>[^/]+)/deployments(?:/(?P<name>[^/]+))?$"),
        "deployments",
    ),
    (
        re.compile(
            r"^/apis/metrics\.k8s\.io/v1beta1/namespaces/(?P<ns>[^/]+)/pods(?:/(?P<name>[^/]+))?$"
        ),
        "metrics.k8s.io/pods",
    ),
]

_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z$")
_LOG_TS = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z) ?(.*)$")


def _parse_ts(value: str) -> dt.datetime:
    head, _, frac = value.rstrip("Z").partition(".")
    stamp = dt.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
    return stamp + dt.timedelta(microseconds=int((frac + "000000")[:6])) if frac else stamp


def _format_ts(value: dt.datetime, *, fraction: bool) -> str:
    value = value.astimezone(dt.UTC)
    if fraction:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _shift(value: Any, offset: dt.timedelta) -> Any:
    """Every RFC 3339 timestamp string inside ``value``, moved by ``offset``."""
    if isinstance(value, dict):
        return {k: _shift(v, offset) for k, v in value.items()}
    if isinstance(value, list):
        return [_shift(v, offset) for v in value]
    if isinstance(value, str) and _TS.match(value):
        return _format_ts(_parse_ts(value) + offset, fraction="." in value)
    return value


def _shift_log(text: str, offset: dt.timedelta) -> str:
    lines = []
    for line in text.splitlines():
        m = _LOG_TS.match(line)
        if m:
            line = f"{_format_ts(_parse_ts(m.group(1)) + offset, fraction=True)} {m.group(2)}"
        lines.append(line)
    return "\n".join(lines) + ("\n" if lines else "")


def load_kube_scenario(scenario: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A scenario directory (see the module docstring) or dict, as one plain dict.

    Keys: the resource keys of :data:`RESOURCES` (lists of items), ``logs``
    (``{"pod/container": text, "pod/container/previous": text}``), ``now``, ``errors``.
    """
    if isinstance(scenario, Mapping):
        data = copy.deepcopy(dict(scenario))
        if "pod-metrics" in data:
            data["metrics.k8s.io/pods"] = data.pop("pod-metrics")
    else:
        root = Path(scenario)
        if not root.is_dir():
            raise FileNotFoundError(f"no Kubernetes fixture scenario at {root}")
        meta = root / "scenario.json"
        data = json.loads(meta.read_text()) if meta.exists() else {}
        for key, (file_name, *_rest) in RESOURCES.items():
            if (root / file_name).exists():
                data[key] = json.loads((root / file_name).read_text())
        logs: dict[str, str] = {}
        for path in sorted((root / "logs").glob("*/*.log")):
            container, previous = path.name[: -len(".log")], ""
            if container.endswith(".previous"):
                container, previous = container[: -len(".previous")], "/previous"
            logs[f"{path.parent.name}/{container}{previous}"] = path.read_text()
        data["logs"] = logs
    for key in RESOURCES:
        if isinstance(data.get(key), Mapping):  # a *List object: keep its items
            data[key] = list(data[key].get("items") or [])
    return data


def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p.strip() for p in [*parts, cur] if p.strip()]


_SET_REQ = re.compile(r"^(?P<key>[^\s!=]+)\s+(?P<op>in|notin)\s*\((?P<values>[^)]*)\)$")
_EQ_REQ = re.compile(r"^(?P<key>[^\s!=]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s]*)$")


def match_label_selector(labels: Mapping[str, str] | None, selector: str | None) -> bool:
    """Whether ``labels`` match a Kubernetes label selector (``a=b,c!=d,e in (x,y),!f``)."""
    labels = labels or {}
    for req in _split_top(selector or ""):
        if m := _SET_REQ.match(req):
            values = {v.strip() for v in m["values"].split(",")}
            inside = m["key"] in labels and labels[m["key"]] in values
            if inside != (m["op"] == "in"):
                return False
        elif m := _EQ_REQ.match(req):
            equal = labels.get(m["key"]) == m["value"]
            if equal != (m["op"] != "!="):
                return False
        elif req.startswith("!"):
            if req[1:].strip() in labels:
                return False
        elif req not in labels:
            return False
    return True


def _lookup(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj.get(part) if isinstance(obj, Mapping) else None
    return obj


def match_field_selector(obj: Mapping[str, Any], selector: str | None) -> bool:
    """Whether ``obj`` matches a field selector (``involvedObject.name=x,type!=Normal``)."""
    for req in _split_top(selector or ""):
        m = _EQ_REQ.match(req)
        if not m:
            raise ValueError(f"unsupported field selector requirement {req!r}")
        value = _lookup(obj, m["key"])
        equal = ("" if value is None else str(value)) == m["value"]
        if equal != (m["op"] != "!="):
            return False
    return True


def _status(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timed out) is normal here; anything else is printed."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Refusal(Exception):
    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body["message"])
        self.body = body


class KubeFixtureServer:
    """The fixture API server; ``scenario`` stays mutable while it runs (drills change it)."""

    def __init__(
        self,
        scenario: str | Path | Mapping[str, Any],
        *,
        token: str | None = None,
        shift_to_now: bool = True,
        user: str = "system:serviceaccount:aura:aura-ops",
    ) -> None:
        data = load_kube_scenario(scenario)
        if shift_to_now and data.get("now"):
            offset = dt.datetime.now(dt.UTC) - _parse_ts(str(data["now"]))
            logs = {k: _shift_log(v, offset) for k, v in (data.pop("logs", None) or {}).items()}
            data = _shift(data, offset)
            data["logs"] = logs
        self.scenario: dict[str, Any] = data
        self.token = token
        self.user = user
        self.requests: list[str] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` once started."""
        if self._httpd is None:
            raise RuntimeError("the fixture server is not running; call start() first")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> KubeFixtureServer:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        fixture = self
        self._stopping.clear()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                fixture._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="kube-fixture", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> KubeFixtureServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling ---------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        self.requests.append(handler.path)
        try:
            self._authorize(handler.headers.get("Authorization", ""))
            code, body = self._route(parts.path, query)
        except _Refusal as refusal:
            code, body = refusal.body["code"], refusal.body
        payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        handler.send_response(code)
        ctype = "text/plain" if isinstance(body, str) else "application/json"
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _authorize(self, header: str) -> None:
        if self.token is not None and header != f"Bearer {self.token}":
            raise _Refusal(_status(401, "Unauthorized", "Unauthorized"))

    def _refuse_if_configured(
        self, resource: str, verb: str, ns: str | None, name: str | None
    ) -> None:
        error = (self.scenario.get("errors") or {}).get(resource, 0)
        if error == "hang":  # accept, then never answer (until the server stops)
            self._stopping.wait(300)
            raise _Refusal(_status(503, "ServiceUnavailable", "fixture server stopping"))
        code = int(error)
        if not code:
            return
        if code != 403:
            raise _Refusal(_status(code, "InternalError", f"Internal error occurred: {resource}"))
        group = RESOURCES[resource][1] if resource in RESOURCES else ""
        rbac_resource = resource.split("/", 1)[1] if group else resource  # "pods", "pods/log"
        plural = rbac_resource.split("/")[0]
        ref = (f"{plural}.{group}" if group else plural) + (f' "{name}"' if name else "")
        where = f' in the namespace "{ns}"' if ns else " at the cluster scope"
        msg = (
            f'{ref} is forbidden: User "{self.user}" cannot {verb} resource '
            f'"{rbac_resource}" in API group "{group}"{where}'
        )
        raise _Refusal(
            _status(403, "Forbidden", msg, kind=plural, **({"name": name} if name else {}))
        )

    def _route(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        if path == "/version":
            return 200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0-aura-ops-fixture"}
        for pattern, resource in _ROUTES:
            m = pattern.match(path)
            if not m:
                continue
            groups = m.groupdict()
            resource = resource or groups["res"]
            ns, name = groups.get("ns"), groups.get("name")
            verb = "get" if name else "list"
            self._refuse_if_configured(resource, verb, ns, name)
            if resource == "pods/log":
                return 200, self._log(str(ns), str(name), query)
            return 200, self._objects(resource, ns, name, query)
        raise _Refusal(_status(404, "NotFound", "the server could not find the requested resource"))

    def _objects(
        self, resource: str, ns: str | None, name: str | None, query: dict[str, str]
    ) -> Any:
        _file, group, api_version, list_kind, kind = RESOURCES[resource]
        if resource not in self.scenario:
            if group == "metrics.k8s.io":  # metrics-server not installed: API not served
                raise _Refusal(
                    _status(404, "NotFound", "the server could not find the requested resource")
                )
            items: list[dict[str, Any]] = []
        else:
            items = [copy.deepcopy(i) for i in self.scenario[resource]]
        if ns is not None:
            items = [i for i in items if i.get("metadata", {}).get("namespace", ns) == ns]
        if name is not None:
            for item in items:
                if item.get("metadata", {}).get("name") == name:
                    return {"kind": kind, "apiVersion": api_version, **item}
            plural = resource.split("/")[-1]
            ref = f"{plural}.{group}" if group else plural
            raise _Refusal(
                _status(404, "NotFound", f'{ref} "{name}" not found', name=name, kind=plural)
            )
        try:
            items = [
                i
                for i in items
                if match_label_selector(
                    i.get("metadata", {}).get("labels"), query.get("labelSelector")
                )
                and match_field_selector(i, query.get("fieldSelector"))
            ]
        except ValueError as exc:
            raise _Refusal(_status(400, "BadRequest", str(exc))) from exc
        for item in items:  # list responses carry no per-item kind/apiVersion
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return {
            "kind": list_kind,
            "apiVersion": api_version,
            "metadata": {"resourceVersion": "4242"},
            "items": items,
        }

    def _log(self, ns: str, pod_name: str, query: dict[str, str]) -> str:
        pod = self._objects("pods", ns, pod_name, {})
        names = [c["name"] for c in pod.get("spec", {}).get("containers", [])]
        container = query.get("container") or (names[0] if len(names) == 1 else "")
        if not container:
            raise _Refusal(
                _status(
                    400,
                    "BadRequest",
                    f"a container name must be specified for pod {pod_name}, "
                    f"choose one of: [{' '.join(names)}]",
                )
            )
        previous = query.get("previous") == "true"
        key = f"{pod_name}/{container}" + ("/previous" if previous else "")
        logs = self.scenario.get("logs") or {}
        if key not in logs:
            what = "previous terminated container" if previous else "container"
            raise _Refusal(
                _status(400, "BadRequest", f'{what} "{container}" in pod "{pod_name}" not found')
            )
        return _filter_log(logs[key], query)


def _filter_log(text: str, query: Mapping[str, str]) -> str:
    """Apply sinceSeconds, tailLines, timestamps and limitBytes as the kubelet does."""
    lines = text.splitlines()
    if query.get("sinceSeconds"):
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=int(query["sinceSeconds"]))
        kept = []
        for line in lines:
            m = _LOG_TS.match(line)
            if m is None or _parse_ts(m.group(1)) >= cutoff:
                kept.append(line)
        lines = kept
    if query.get("tailLines"):
        lines = lines[-int(query["tailLines"]) :] if int(query["tailLines"]) else []
    if query.get("timestamps") != "true":
        lines = [m.group(2) if (m := _LOG_TS.match(line)) else line for line in lines]
    out = "".join(line + "\n" for line in lines)
    if query.get("limitBytes"):
        out = out.encode()[: int(query["limitBytes"])].decode(errors="ignore")
    return out


@contextlib.contextmanager
def serve_kube_fixture(
    scenario: str | Path | Mapping[str, Any],
    *,
    token: str | None = None,
    shift_to_now: bool = True,
) -> Iterator[str]:
    """Serve ``scenario`` on 127.0.0.1 for the duration of the block; yields the base URL."""
    with KubeFixtureServer(scenario, token=token, shift_to_now=shift_to_now) as server:
        yield server.url
