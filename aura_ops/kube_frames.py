"""Kubernetes API JSON → DataFrames shaped like kubectl's tables (pure, no I/O).

``pods_frame`` is ``kubectl get pods -o wide``, ``containers_frame`` one row per container
status, ``events_frame`` ``kubectl get events`` with Warnings first, ``rollout_history_frame``
``kubectl rollout history``, ``pod_metrics_frame`` ``kubectl top pods --containers`` plus each
container's memory limit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from aura_ops.kube_client import parse_quantity, parse_time

__all__ = [
    "containers_frame",
    "events_frame",
    "pod_metrics_frame",
    "pods_frame",
    "rollout_history_frame",
]

MIB = 1024 * 1024


def _now(now: dt.datetime | None) -> dt.datetime:
    return (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)


def _pod_status(pod: dict[str, Any]) -> str:
    """The STATUS column of ``kubectl get pods``."""
    status = pod.get("status", {})
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for init in status.get("initContainerStatuses") or []:
        term = (init.get("state") or {}).get("terminated") or {}
        waiting = (init.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") not in (None, "PodInitializing") or term.get("exitCode", 0):
            return f"Init:{waiting.get('reason') or term.get('reason') or 'Error'}"
    for cs in reversed(status.get("containerStatuses") or []):
        state = cs.get("state") or {}
        term = state.get("terminated")
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif term is not None:
            reason = term.get("reason") or (
                f"Signal:{term['signal']}"
                if term.get("signal")
                else f"ExitCode:{term.get('exitCode')}"
            )
    return "Terminating" if pod.get("metadata", {}).get("deletionTimestamp") else reason


def pods_frame(pods: Iterable[dict[str, Any]], *, now: dt.datetime | None = None) -> pd.DataFrame:
    """``kubectl get pods -o wide`` as a DataFrame: pod, ready, status, restarts, age_s, node."""
    rows = []
    for pod in pods:
        statuses = pod.get("status", {}).get("containerStatuses") or []
        created = parse_time(pod.get("metadata", {}).get("creationTimestamp"))
        rows.append(
            {
                "pod": pod.get("metadata", {}).get("name"),
                "ready": f"{sum(bool(c.get('ready')) for c in statuses)}/"
                f"{len(pod.get('spec', {}).get('containers') or statuses)}",
                "status": _pod_status(pod),
                "restarts": sum(int(c.get("restartCount") or 0) for c in statuses),
                "age_s": (_now(now) - created).total_seconds() if created else None,
                "node": pod.get("spec", {}).get("nodeName"),
                "phase": pod.get("status", {}).get("phase"),
            }
        )
    columns = ["pod", "ready", "status", "restarts", "age_s", "node", "phase"]
    return pd.DataFrame(rows, columns=columns)


def _limit_mib(pod: dict[str, Any], container: str) -> float | None:
    for c in pod.get("spec", {}).get("containers") or []:
        limit = ((c.get("resources") or {}).get("limits") or {}).get("memory")
        if c.get("name") == container and limit:
            return round(parse_quantity(limit) / MIB, 1)
    return None


def containers_frame(pods: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per container status: state, reason, restarts, last termination, memory limit."""
    rows = []
    for pod in pods:
        status = pod.get("status", {})
        tagged = [(True, c) for c in status.get("initContainerStatuses") or []]
        for init, cs in tagged + [(False, c) for c in status.get("containerStatuses") or []]:
            state, last = cs.get("state") or {}, (cs.get("lastState") or {}).get("terminated") or {}
            kind = next(iter(state), "unknown")
            detail = state.get(kind) or {}
            rows.append(
                {
                    "pod": pod.get("metadata", {}).get("name"),
                    "container": cs.get("name"),
                    "init": init,
                    "image": cs.get("image"),
                    "ready": bool(cs.get("ready")),
                    "restarts": int(cs.get("restartCount") or 0),
                    "state": kind,
                    "reason": detail.get("reason"),
                    "exit_code": detail.get("exitCode"),
                    "last_reason": last.get("reason"),
                    "last_exit_code": last.get("exitCode"),
                    "last_finished": parse_time(last.get("finishedAt")),
                    "memory_limit_mib": _limit_mib(pod, str(cs.get("name"))),
                }
            )
    columns = [
        "pod",
        "container",
        "init",
        "image",
        "ready",
        "restarts",
        "state",
        "reason",
        "exit_code",
        "last_reason",
        "last_exit_code",
        "last_finished",
        "memory_limit_mib",
    ]
    return pd.DataFrame(rows, columns=columns)


def events_frame(events: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Events Warning first, then most recent first: type, reason, object, count, times, message."""
    rows = []
    for ev in events:
        obj = ev.get("involvedObject") or ev.get("regarding") or {}
        last = (
            parse_time(ev.get("lastTimestamp"))
            or parse_time(ev.get("eventTime"))
            or parse_time(ev.get("metadata", {}).get("creationTimestamp"))
        )
        rows.append(
            {
                "type": ev.get("type") or "Normal",
                "reason": ev.get("reason"),
                "object": f"{str(obj.get('kind', '')).lower()}/{obj.get('name', '')}",
                "count": int(ev.get("count") or (ev.get("series") or {}).get("count") or 1),
                "first_seen": parse_time(ev.get("firstTimestamp")) or last,
                "last_seen": last,
                "message": ev.get("message") or ev.get("note") or "",
            }
        )
    columns = ["type", "reason", "object", "count", "first_seen", "last_seen", "message"]
    frame = pd.DataFrame(rows, columns=columns)
    if frame.empty:
        return frame
    frame["_warn"] = frame["type"] != "Warning"
    frame = frame.sort_values(["_warn", "last_seen"], ascending=[True, False], na_position="last")
    return frame.drop(columns="_warn").reset_index(drop=True)


def rollout_history_frame(changes: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """``kubectl rollout history`` columns plus time and image: revision, change_cause, …"""
    rows = [
        {
            "revision": c["revision"],
            "change_cause": c.get("cause") or "<none>",
            "at": c.get("at"),
            "image": c.get("image"),
            "replicaset": c.get("replicaset"),
            "replicas": c.get("replicas"),
            "current": c.get("current"),
        }
        for c in changes
    ]
    columns = ["revision", "change_cause", "at", "image", "replicaset", "replicas", "current"]
    return pd.DataFrame(rows, columns=columns)


def pod_metrics_frame(
    metrics: Iterable[dict[str, Any]], pods: Iterable[dict[str, Any]] = ()
) -> pd.DataFrame:
    """``kubectl top pods --containers`` plus the memory limit and the % of it in use."""
    by_name = {p.get("metadata", {}).get("name"): p for p in pods}
    rows = []
    for item in metrics:
        name = item.get("metadata", {}).get("name")
        for c in item.get("containers") or []:
            usage = c.get("usage") or {}
            memory = round(parse_quantity(usage.get("memory", "0")) / MIB, 1)
            limit = _limit_mib(by_name[name], c.get("name", "")) if name in by_name else None
            rows.append(
                {
                    "pod": name,
                    "container": c.get("name"),
                    "cpu_m": round(parse_quantity(usage.get("cpu", "0")) * 1000, 1),
                    "memory_mib": memory,
                    "memory_limit_mib": limit,
                    "memory_pct_of_limit": round(100 * memory / limit, 1) if limit else None,
                    "timestamp": parse_time(item.get("timestamp")),
                }
            )
    columns = [
        "pod",
        "container",
        "cpu_m",
        "memory_mib",
        "memory_limit_mib",
        "memory_pct_of_limit",
        "timestamp",
    ]
    return pd.DataFrame(rows, columns=columns)
