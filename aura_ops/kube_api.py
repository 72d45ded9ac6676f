"""The ``fetch_*`` reads behind ``kubectl get pods``, ``get events``, ``rollout history``,
``top pods`` and ``logs``, returning the API's JSON as plain dicts.

Each read is one request through the official client with a timeout (see
:mod:`aura_ops.kube_client`) and raises typed errors from :mod:`aura_ops.errors`;
:mod:`aura_ops.kube` re-exports these and judges what they return.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes import client as k8s

from aura_ops.errors import QueryError, SourceUnavailableError
from aura_ops.kube_client import (
    CHANGE_CAUSE_ANNOTATION,
    REVISION_ANNOTATION,
    _Call,
    _items,
    _request,
    parse_time,
)

__all__ = [
    "fetch_deployment",
    "fetch_events",
    "fetch_logs",
    "fetch_pod_logs",
    "fetch_pod_metrics",
    "fetch_pods",
    "fetch_replica_sets",
    "fetch_rollout_history",
    "selector_string",
]


def _get(
    api: k8s.ApiClient,
    verb: str,
    resource: str,
    namespace: str,
    path: str,
    query: Mapping[str, Any],
    timeout_s: float | None,
) -> Any:
    group = "" if path.startswith("/api/") else path.split("/")[2]  # /apis/<group>/<version>/…
    call = _Call(verb, resource, group, namespace, path, query)
    body = _request(api, call, timeout_s, text=resource == "pods/log")
    if resource == "pods/log":
        return body
    if not isinstance(body, dict):
        raise SourceUnavailableError(f"unexpected answer: {str(body)[:80]}", source=call.url(api))
    return _items(body, call, api) if verb == "list" else body


def fetch_pods(
    api: k8s.ApiClient,
    namespace: str = "default",
    *,
    label_selector: str | None = None,
    field_selector: str | None = None,
    timeout_s: float | None = None,
) -> list[dict[str, Any]]:
    """Pods as API JSON dicts (``kubectl get pods -n NS -l SELECTOR -o json``)."""
    query = {"labelSelector": label_selector, "fieldSelector": field_selector}
    path = f"/api/v1/namespaces/{namespace}/pods"
    return list(_get(api, "list", "pods", namespace, path, query, timeout_s))


def fetch_events(
    api: k8s.ApiClient,
    namespace: str = "default",
    *,
    field_selector: str | None = None,
    timeout_s: float | None = None,
) -> list[dict[str, Any]]:
    """core/v1 Events (``kubectl get events``); e.g. ``field_selector="type=Warning"``."""
    path = f"/api/v1/namespaces/{namespace}/events"
    query = {"fieldSelector": field_selector}
    return list(_get(api, "list", "events", namespace, path, query, timeout_s))


def fetch_deployment(
    api: k8s.ApiClient, name: str, namespace: str = "default", *, timeout_s: float | None = None
) -> dict[str, Any]:
    """One Deployment (``kubectl get deployment NAME -o json``)."""
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
    return dict(_get(api, "get", "deployments", namespace, path, {}, timeout_s))


def fetch_replica_sets(
    api: k8s.ApiClient,
    namespace: str = "default",
    *,
    label_selector: str | None = None,
    timeout_s: float | None = None,
) -> list[dict[str, Any]]:
    """ReplicaSets (``kubectl get replicasets -l SELECTOR -o json``)."""
    path = f"/apis/apps/v1/namespaces/{namespace}/replicasets"
    query = {"labelSelector": label_selector}
    return list(_get(api, "list", "replicasets", namespace, path, query, timeout_s))


def fetch_pod_metrics(
    api: k8s.ApiClient,
    namespace: str = "default",
    *,
    label_selector: str | None = None,
    timeout_s: float | None = None,
) -> list[dict[str, Any]]:
    """metrics.k8s.io PodMetrics items (what ``kubectl top pods`` reads)."""
    path = f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods"
    query = {"labelSelector": label_selector}
    return list(_get(api, "list", "pods", namespace, path, query, timeout_s))


def fetch_pod_logs(
    api: k8s.ApiClient,
    pod: str,
    namespace: str = "default",
    *,
    container: str | None = None,
    previous: bool = False,
    since_seconds: int | None = None,
    tail_lines: int | None = None,
    timestamps: bool = False,
    limit_bytes: int | None = None,
    timeout_s: float | None = None,
) -> str:
    """One container's log (``kubectl logs POD [-c C] [--previous] --since=… --tail=…``).

    ``previous=True`` reads the crashed instance. A missing previous container is a
    :class:`QueryError` (HTTP 400 from the API server).
    """
    query = {
        "container": container,
        "previous": previous,
        "sinceSeconds": since_seconds,
        "tailLines": tail_lines,
        "timestamps": timestamps,
        "limitBytes": limit_bytes,
    }
    path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
    return str(_get(api, "get", "pods/log", namespace, path, query, timeout_s))


def fetch_logs(
    api: k8s.ApiClient,
    namespace: str = "default",
    *,
    label_selector: str,
    container: str | None = None,
    previous: bool = False,
    since_seconds: int | None = None,
    tail_lines: int | None = None,
    timestamps: bool = False,
    max_pods: int = 20,
    timeout_s: float | None = None,
) -> dict[str, str]:
    """Logs of every container of the selected pods, keyed ``"pod/container"``.

    The equivalent of ``kubectl logs -l SELECTOR --all-containers --since=…`` (without
    kubectl's default ``--tail=10`` for selectors). Containers whose log the API server
    refuses with HTTP 400 (not started yet; with ``previous=True``, never restarted) are
    skipped. At most ``max_pods`` pods are read.
    """
    logs: dict[str, str] = {}
    pods = fetch_pods(api, namespace, label_selector=label_selector, timeout_s=timeout_s)
    for pod in pods[:max_pods]:
        name = pod["metadata"]["name"]
        names = [c["name"] for c in pod.get("spec", {}).get("containers", [])]
        for cname in [container] if container else names:
            try:
                logs[f"{name}/{cname}"] = fetch_pod_logs(
                    api,
                    name,
                    namespace,
                    container=cname,
                    previous=previous,
                    since_seconds=since_seconds,
                    tail_lines=tail_lines,
                    timestamps=timestamps,
                    timeout_s=timeout_s,
                )
            except QueryError:
                continue
    return logs


def selector_string(selector: Mapping[str, Any] | None) -> str:
    """A ``LabelSelector`` object (``matchLabels``/``matchExpressions``) as a selector string."""
    selector = selector or {}
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op in ("In", "NotIn"):
            parts.append(f"{key} {op.lower()} ({','.join(values)})")
        else:
            parts.append(key if op == "Exists" else f"!{key}")
    return ",".join(parts)


def _image_version(image: str) -> str:
    """``ghcr.io/a/api:1.5.0`` → ``1.5.0``; a digest-only image gives its short digest."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.split(":", 1)[1]
    return digest[:19] if digest else "latest"


def _revision_change(rs: dict[str, Any], deployment: dict[str, Any]) -> dict[str, Any] | None:
    meta = rs.get("metadata", {})
    annotations = meta.get("annotations") or {}
    try:
        revision = int(annotations[REVISION_ANNOTATION])
    except (KeyError, ValueError):
        return None
    containers = rs.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    images = [str(c.get("image", "")) for c in containers]
    dep_meta = deployment.get("metadata", {})
    current = str(revision) == str((dep_meta.get("annotations") or {}).get(REVISION_ANNOTATION))
    at = parse_time(meta.get("creationTimestamp"))
    if current and annotations.get("deployment.kubernetes.io/revision-history"):  # rolled back to
        for cond in deployment.get("status", {}).get("conditions") or []:
            if cond.get("type") == "Progressing" and cond.get("lastUpdateTime"):
                at = parse_time(cond["lastUpdateTime"])
    return {
        "at": at,
        "revision": revision,
        "version": ", ".join(_image_version(i) for i in images),
        "image": ", ".join(images),
        "cause": annotations.get(CHANGE_CAUSE_ANNOTATION),
        "source": "kubernetes",
        "deployment": dep_meta.get("name"),
        "namespace": meta.get("namespace"),
        "replicaset": meta.get("name"),
        "replicas": int(rs.get("status", {}).get("replicas") or 0),
        "current": current,
    }


def fetch_rollout_history(
    api: k8s.ApiClient,
    deployment: str,
    namespace: str = "default",
    *,
    timeout_s: float | None = None,
) -> list[dict[str, Any]]:
    """``kubectl rollout history deployment/NAME`` as change events, oldest revision first.

    Reads the Deployment, lists the ReplicaSets its selector matches, keeps those it
    *controls* (ownerReference ``controller: true`` with its uid) and maps each
    ``deployment.kubernetes.io/revision`` to a dict: ``at`` (the ReplicaSet's creation time,
    or the rollout time for a revision rolled back to), ``revision``, ``version`` (image tag),
    ``image``, ``cause`` (``kubernetes.io/change-cause`` or None), ``source="kubernetes"``,
    ``deployment``, ``namespace``, ``replicaset``, ``replicas``, ``current``.
    """
    dep = fetch_deployment(api, deployment, namespace, timeout_s=timeout_s)
    uid = dep.get("metadata", {}).get("uid")
    selector = selector_string(dep.get("spec", {}).get("selector"))
    changes = []
    for rs in fetch_replica_sets(
        api, namespace, label_selector=selector or None, timeout_s=timeout_s
    ):
        owners = rs.get("metadata", {}).get("ownerReferences") or []
        if any(o.get("controller") and o.get("uid") == uid for o in owners):
            change = _revision_change(rs, dep)
            if change is not None:
                changes.append(change)
    return sorted(changes, key=lambda c: c["revision"])
