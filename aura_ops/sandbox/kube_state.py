"""The sandbox's Kubernetes state: what ``kubectl`` would show for the sandbox's ``aura-api``.

No cluster runs here, so the sandbox serves API-shaped state through
:class:`aura_ops.kube_fixture.KubeFixtureServer`: a Deployment ``aura-api`` in namespace
``aura`` with two pods of the running release, their events and their metrics-server usage.
:func:`healthy_state` is the normal picture; :func:`oom_killed_state` is the same deployment
after its containers hit their 512 MiB limit and were OOM-killed and restarted by the kubelet
(``lastState.terminated.reason = OOMKilled``, exit code 137, restarts, BackOff events, memory
near the limit), as the seeds' ``kubectl get events --field-selector reason=OOMKilled`` and
restart-count steps expect.
"""

from __future__ import annotations

import datetime as dt
import zlib
from typing import Any

__all__ = ["LABELS", "NAMESPACE", "healthy_state", "oom_killed_state"]

NAMESPACE = "default"
LABELS = {"app": "aura-api", "pod-template-hash": "5d8f7c9b6"}
LIMIT = "512Mi"
_PODS = ("aura-api-5d8f7c9b6-h4kzp", "aura-api-5d8f7c9b6-w9rtx")


def _ts(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pod(name: str, version: str, started: dt.datetime, status: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "generateName": "aura-api-5d8f7c9b6-",
            "namespace": NAMESPACE,
            "uid": f"5a1d0000-0000-4000-8000-{zlib.crc32(name.encode()):012d}",
            "creationTimestamp": _ts(started),
            "labels": dict(LABELS),
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "aura-api-5d8f7c9b6",
                    "controller": True,
                }
            ],
        },
        "spec": {
            "nodeName": "node-a",
            "containers": [
                {
                    "name": "api",
                    "image": f"ghcr.io/aura-studio/aura-api:{version}",
                    "resources": {
                        "limits": {"cpu": "1", "memory": LIMIT},
                        "requests": {"cpu": "250m", "memory": "256Mi"},
                    },
                }
            ],
        },
        "status": {
            "phase": "Running",
            "startTime": _ts(started),
            "qosClass": "Burstable",
            "conditions": [{"type": "Ready", "status": "True"}],
            **status,
        },
    }


def _container(
    version: str, running_since: dt.datetime, restarts: int, last: dict[str, Any] | None
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "name": "api",
        "image": f"ghcr.io/aura-studio/aura-api:{version}",
        "ready": True,
        "started": True,
        "restartCount": restarts,
        "state": {"running": {"startedAt": _ts(running_since)}},
        "lastState": {"terminated": last} if last else {},
    }
    return status


def _metrics(now: dt.datetime, memory_mib: tuple[int, ...]) -> list[dict[str, Any]]:
    return [
        {
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": dict(LABELS)},
            "timestamp": _ts(now - dt.timedelta(seconds=8)),
            "window": "15s",
            "containers": [{"name": "api", "usage": {"cpu": "180m", "memory": f"{mib * 1024}Ki"}}],
        }
        for name, mib in zip(_PODS, memory_mib, strict=True)
    ]


def _event(
    now: dt.datetime,
    kind: str,
    obj: str,
    reason: str,
    message: str,
    *,
    ago_s: float,
    count: int = 1,
    first_ago_s: float | None = None,
    component: str = "kubelet",
) -> dict[str, Any]:
    last = now - dt.timedelta(seconds=ago_s)
    first = now - dt.timedelta(seconds=first_ago_s if first_ago_s is not None else ago_s)
    return {
        "metadata": {
            "name": f"{obj}.{zlib.crc32((obj + reason).encode()):012x}",
            "namespace": NAMESPACE,
            "creationTimestamp": _ts(first),
        },
        "involvedObject": {
            "kind": "Pod" if obj != "aura-api" else "Deployment",
            "namespace": NAMESPACE,
            "name": obj,
        },
        "reason": reason,
        "message": message,
        "source": {"component": component},
        "firstTimestamp": _ts(first),
        "lastTimestamp": _ts(last),
        "count": count,
        "type": kind,
    }


def _deployment(started: dt.datetime) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "aura-api",
            "namespace": NAMESPACE,
            "annotations": {"deployment.kubernetes.io/revision": "7"},
            "creationTimestamp": _ts(started - dt.timedelta(days=30)),
        },
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "aura-api"}}},
        "status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2, "updatedReplicas": 2},
    }


def healthy_state(*, version: str = "v2.4.0", now: dt.datetime | None = None) -> dict[str, Any]:
    """Two ready pods, no restarts, no Warning events, memory well under the limit."""
    now = now or dt.datetime.now(dt.UTC)
    started = now - dt.timedelta(hours=6)
    pods = [
        _pod(n, version, started, {"containerStatuses": [_container(version, started, 0, None)]})
        for n in _PODS
    ]
    events = [
        _event(
            now,
            "Normal",
            "aura-api",
            "ScalingReplicaSet",
            "Scaled up replica set aura-api-5d8f7c9b6 to 2",
            ago_s=6 * 3600,
            component="deployment-controller",
        ),
    ]
    return {
        "pods": pods,
        "events": events,
        "deployments": [_deployment(started)],
        "metrics.k8s.io/pods": _metrics(now, (182, 175)),
        "logs": {f"{n}/api": "INFO aura.api service started\n" for n in _PODS},
        "errors": {},
    }


def oom_killed_state(*, version: str = "v2.4.0", now: dt.datetime | None = None) -> dict[str, Any]:
    """Both pods' ``api`` containers OOM-killed at the 512 MiB limit and restarted."""
    now = now or dt.datetime.now(dt.UTC)
    state = healthy_state(version=version, now=now)
    started = now - dt.timedelta(hours=6)
    for pod, restarts, ago in zip(state["pods"], (4, 3), (95, 210), strict=True):
        since = now - dt.timedelta(seconds=ago)
        last = {
            "exitCode": 137,
            "reason": "OOMKilled",
            "startedAt": _ts(since - dt.timedelta(minutes=11)),
            "finishedAt": _ts(since - dt.timedelta(seconds=1)),
        }
        pod["status"]["containerStatuses"] = [_container(version, since, restarts, last)]
        pod["metadata"]["creationTimestamp"] = _ts(started)
    name0, name1 = _PODS
    state["events"] += [
        _event(
            now,
            "Warning",
            name0,
            "OOMKilled",
            "Container api exceeded its memory limit (512Mi) and was OOM-killed (exit code 137)",
            ago_s=95,
            count=4,
            first_ago_s=2700,
        ),
        _event(
            now,
            "Warning",
            name1,
            "OOMKilled",
            "Container api exceeded its memory limit (512Mi) and was OOM-killed (exit code 137)",
            ago_s=210,
            count=3,
            first_ago_s=2400,
        ),
        _event(
            now,
            "Warning",
            name0,
            "BackOff",
            f"Back-off restarting failed container api in pod {name0}",
            ago_s=90,
            count=6,
            first_ago_s=2690,
        ),
    ]
    state["metrics.k8s.io/pods"] = _metrics(now, (489, 431))
    state["logs"] = {
        f"{name0}/api/previous": "INFO aura.api service started\n"
        "WARNING aura.api render cache holds 48213 entries (461 MiB)\n",
        f"{name0}/api": "INFO aura.api service started\n",
        f"{name1}/api/previous": "INFO aura.api service started\n",
        f"{name1}/api": "INFO aura.api service started\n",
    }
    return state
