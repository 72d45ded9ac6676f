"""Kubernetes checks for the runbooks: pods, restarts, OOMKilled, CrashLoopBackOff, events,
rollout history, pod memory against limits, pod logs.

The seeds ask the on-call engineer to run ``kubectl get pods -l app=aura-api``, ``kubectl
rollout history deployment/aura-api``, ``kubectl get events``, ``kubectl top pods`` and
``kubectl logs -l app=aura-api --previous``; the ``check_*`` functions here do that looking
and judge it::

    api = connect_kube("prod")                                   # or connect_kube_url(url)
    show(check_pods(api, "aura", label_selector="app=aura-api"))
    show(check_rollout_history(api, "aura-api", "aura"))

This module is the one to import from. Behind it: :mod:`aura_ops.kube_client` builds the
client (``connect_kube`` from a kubeconfig context or the in-cluster service account,
``connect_kube_url`` from a plain URL) with its timeout; :mod:`aura_ops.kube_api` holds the
``fetch_*`` reads, one GET each with a timeout, raising typed errors;
:mod:`aura_ops.kube_frames` turns API JSON into DataFrames shaped like kubectl's tables. The
``check_*`` functions here judge and never raise: an unreachable, hanging or forbidden API
server gives an ``UNKNOWN`` finding naming the reason (for a 403, the missing RBAC verb and
resource: see ``deploy/rbac/aura-ops-readonly-role.yaml``). Tests and drills run them against
:mod:`aura_ops.kube_fixture`, a real HTTP server serving recorded API objects.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import pandas as pd
from kubernetes import client as k8s

from aura_ops.errors import AuraOpsError, SourceTimeoutError
from aura_ops.findings import Evidence, Finding, Status, unknown
from aura_ops.kube_api import (
    fetch_deployment,
    fetch_events,
    fetch_logs,
    fetch_pod_logs,
    fetch_pod_metrics,
    fetch_pods,
    fetch_replica_sets,
    fetch_rollout_history,
    selector_string,
)
from aura_ops.kube_client import (
    CHANGE_CAUSE_ANNOTATION,
    REVISION_ANNOTATION,
    KubeApiClient,
    connect_kube,
    connect_kube_url,
    parse_quantity,
    parse_time,
)
from aura_ops.kube_frames import (
    containers_frame,
    events_frame,
    pod_metrics_frame,
    pods_frame,
    rollout_history_frame,
)

__all__ = [
    "CHANGE_CAUSE_ANNOTATION",
    "KubeApiClient",
    "REVISION_ANNOTATION",
    "check_events",
    "check_pod_resources",
    "check_pods",
    "check_rollout_history",
    "connect_kube",
    "connect_kube_url",
    "containers_frame",
    "events_frame",
    "fetch_deployment",
    "fetch_events",
    "fetch_logs",
    "fetch_pod_logs",
    "fetch_pod_metrics",
    "fetch_pods",
    "fetch_replica_sets",
    "fetch_rollout_history",
    "parse_quantity",
    "parse_time",
    "pod_metrics_frame",
    "pods_frame",
    "rollout_history_frame",
    "selector_string",
]

#: Waiting reasons that mean a container cannot run (CrashLoopBackOff and its cousins).
STUCK_WAITING = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "InvalidImageName",
        "RunContainerError",
    }
)


def _now(now: dt.datetime | None) -> dt.datetime:
    return (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = max(0, int(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min" if s < 172800 else f"{s // 86400} d"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _num(value: Any) -> str:
    """``1.0`` → ``1``, NaN/None → ``?``: numbers from pandas columns, for summaries."""
    return "?" if value is None or pd.isna(value) else f"{float(value):g}"


def _repro(api: k8s.ApiClient, name: str, *args: Any, **kwargs: Any) -> str:
    parts = [getattr(api, "origin", "connect_kube()"), *(repr(a) for a in args)]
    parts += [f"{k}={v!r}" for k, v in kwargs.items() if v is not None]
    return f"{name}({', '.join(parts)})"


def _where(namespace: str, label_selector: str | None) -> str:
    return f"{namespace}/{label_selector}" if label_selector else f"{namespace}/*"


def _guarded(
    check: str, subject: str, reproduce: str, source: str, run: Callable[[], list[Finding]]
) -> list[Finding]:
    """Run ``run``; any failure becomes one UNKNOWN finding instead of an exception."""
    try:
        return run()
    except AuraOpsError as exc:
        hint = exc.hint or ""
        return [
            unknown(
                check,
                subject,
                exc.message,
                source=exc.source or source,
                hint=hint,
                reproduce=reproduce,
            )
        ]
    except Exception as exc:  # a check never raises: report what broke instead
        return [unknown(check, subject, exc, source=source, reproduce=reproduce)]


@dataclasses.dataclass
class _PodContext:
    """What the pod findings share: where they looked and how to read crashed logs."""

    api: k8s.ApiClient
    namespace: str
    base: dict[str, Any]
    pod_count: int
    tail_lines: int
    timeout_s: float | None
    stalled: bool = False  # after one log read timed out, do not wait for more

    def logs(self, rows: pd.DataFrame) -> list[Evidence]:
        """The crashed instances' last log lines (``kubectl logs --previous``), up to 3."""
        out = []
        for row in rows.head(3).itertuples():
            text = "(previous log skipped: the API server stopped answering)"
            if not self.stalled:
                try:
                    text = fetch_pod_logs(
                        self.api,
                        str(row.pod),
                        self.namespace,
                        container=str(row.container),
                        previous=True,
                        tail_lines=self.tail_lines,
                        timeout_s=self.timeout_s,
                    )
                except AuraOpsError as exc:
                    self.stalled = isinstance(exc, SourceTimeoutError)
                    text = f"(previous log unavailable: {exc.message})"
            title = f"{row.pod}/{row.container} previous log, last {self.tail_lines} lines"
            out.append(Evidence.text(text or "(empty log)", title))
        return out


def _ready_finding(
    pods: list[dict[str, Any]], base: dict[str, Any], namespace: str, selector: str | None
) -> Finding:
    frame = pods_frame(pods)
    where = f"{selector} in namespace {namespace}" if selector else f"namespace {namespace}"
    if frame.empty:
        return Finding(
            **base,
            check="kube.pods_ready",
            status=Status.CRITICAL,
            summary=f"No pods match {where}" if selector else f"No pods in {where}",
            observed=0,
            expected="≥ 1 ready pod",
            hint="All pods are gone: check the Deployment, its events and the selector",
        )
    ready = frame["ready"].map(lambda r: r.split("/")[0] == r.split("/")[1] and r != "0/0")
    bad = frame[~ready]
    names = ", ".join(f"{r.pod} ({r.status})" for r in bad.head(5).itertuples())
    if bad.empty:
        status, summary = Status.OK, f"{len(frame)} of {len(frame)} pods ready ({where})"
    elif len(bad) == len(frame):
        status, summary = Status.CRITICAL, f"0 of {len(frame)} pods ready: {names}"
    else:
        status, summary = Status.WARNING, f"{len(bad)} of {len(frame)} pods not ready: {names}"
    return Finding(
        **base,
        check="kube.pods_ready",
        status=status,
        summary=summary,
        observed=int(ready.sum()),
        expected=f"{len(frame)} ready",
        evidence=(Evidence.table(frame, "pods"),),
    )


def _names(rows: pd.DataFrame, fmt: Callable[[Any], str]) -> str:
    return ", ".join(fmt(r) for r in rows.head(5).itertuples())


def _crashloop_finding(ctx: _PodContext, cf: pd.DataFrame) -> Finding:
    stuck = cf[(cf["state"] == "waiting") & cf["reason"].isin(STUCK_WAITING)]
    if stuck.empty:
        summary = f"No container in CrashLoopBackOff among {_n(ctx.pod_count, 'pod')}"
        return Finding(**ctx.base, check="kube.crashloop", status=Status.OK, summary=summary)
    text = _names(
        stuck,
        lambda r: (
            f"{r.pod}/{r.container} ({r.reason}, {r.restarts} restarts, "
            f"last exit {_num(r.last_exit_code)} {r.last_reason})"
        ),
    )
    return Finding(
        **ctx.base,
        check="kube.crashloop",
        status=Status.CRITICAL,
        summary=f"{_n(len(stuck), 'container')} crash-looping: {text}",
        observed=len(stuck),
        expected=0,
        evidence=(Evidence.table(stuck, "crash-looping containers"), *ctx.logs(stuck)),
        hint="Read the crashed instance's log (kubectl logs --previous) for the cause; "
        "if it began with the latest rollout, roll back",
    )


def _oom_finding(ctx: _PodContext, cf: pd.DataFrame) -> Finding:
    oom = cf[(cf["last_reason"] == "OOMKilled") | (cf["reason"] == "OOMKilled")]
    if oom.empty:
        summary = f"No OOMKilled container among {_n(ctx.pod_count, 'pod')}"
        return Finding(**ctx.base, check="kube.oomkilled", status=Status.OK, summary=summary)
    text = _names(
        oom,
        lambda r: (
            f"{r.pod}/{r.container} (limit {_num(r.memory_limit_mib)} MiB, {r.restarts} restarts)"
        ),
    )
    return Finding(
        **ctx.base,
        check="kube.oomkilled",
        status=Status.WARNING,
        summary=f"{_n(len(oom), 'container')} OOMKilled: {text}",
        observed=len(oom),
        expected=0,
        evidence=(Evidence.table(oom, "OOMKilled containers"), *ctx.logs(oom)),
        hint="Memory leak or limit too low: compare usage with check_pod_resources; "
        "a rolling restart (kubectl rollout restart) buys time",
    )


def _restarts_finding(ctx: _PodContext, cf: pd.DataFrame, restarts_warn: int) -> Finding:
    restarted = cf[cf["restarts"] >= restarts_warn].sort_values("restarts", ascending=False)
    top = int(cf["restarts"].max()) if not cf.empty else 0
    if restarted.empty:
        status, summary = Status.OK, f"Most restarts of any container: {top}"
    else:
        text = _names(restarted, lambda r: f"{r.pod}/{r.container} {r.restarts}×")
        count = _n(len(restarted), "container")
        status, summary = Status.WARNING, f"{count} restarted ≥ {restarts_warn} times: {text}"
    by_restarts = cf.sort_values("restarts", ascending=False)
    return Finding(
        **ctx.base,
        check="kube.restarts",
        status=status,
        summary=summary,
        observed=top,
        expected=f"< {restarts_warn}",
        evidence=(Evidence.table(by_restarts, "containers by restarts"),),
    )


def check_pods(
    api: k8s.ApiClient,
    namespace: str = "default",
    *,
    label_selector: str | None = None,
    restarts_warn: int = 3,
    log_tail_lines: int = 20,
    timeout_s: float | None = None,
) -> list[Finding]:
    """Pods ready, containers crash-looping, OOMKilled and restarting (``kubectl get pods``).

    Four findings: ``kube.pods_ready`` (CRITICAL when none is ready or none matches),
    ``kube.crashloop`` (CRITICAL; CrashLoopBackOff, ImagePullBackOff, …),
    ``kube.oomkilled`` (WARNING; last termination OOMKilled) and ``kube.restarts`` (WARNING
    from ``restarts_warn``). Crashed instances' logs are attached (up to 3).
    """
    subject = f"pods {_where(namespace, label_selector)}"
    reproduce = _repro(
        api,
        "check_pods",
        namespace,
        label_selector=label_selector,
        restarts_warn=restarts_warn if restarts_warn != 3 else None,
    )
    kubectl = f"kubectl get pods -n {namespace}" + (
        f" -l {label_selector}" if label_selector else ""
    )
    source = f"GET /api/v1/namespaces/{namespace}/pods · {kubectl}"

    def run() -> list[Finding]:
        pods = fetch_pods(api, namespace, label_selector=label_selector, timeout_s=timeout_s)
        base: dict[str, Any] = {"subject": subject, "source": source, "reproduce": reproduce}
        findings = [_ready_finding(pods, base, namespace, label_selector)]
        if pods:
            ctx = _PodContext(api, namespace, base, len(pods), log_tail_lines, timeout_s)
            cf = containers_frame(pods)
            findings += [_crashloop_finding(ctx, cf), _oom_finding(ctx, cf)]
            findings.append(_restarts_finding(ctx, cf, restarts_warn))
        return findings

    return _guarded("kube.pods_ready", subject, reproduce, source, run)


def check_events(
    api: k8s.ApiClient,
    namespace: str = "default",
    *,
    field_selector: str | None = None,
    since_s: float = 3600,
    now: dt.datetime | None = None,
    timeout_s: float | None = None,
) -> list[Finding]:
    """Warning events of the last ``since_s`` seconds (``kubectl get events``): WARNING if any.

    Events expire after an hour by default (kube-apiserver ``--event-ttl``): read them early.
    """
    subject = f"events {namespace}" + (f" ({field_selector})" if field_selector else "")
    since = since_s if since_s != 3600 else None
    reproduce = _repro(api, "check_events", namespace, field_selector=field_selector, since_s=since)
    source = f"GET /api/v1/namespaces/{namespace}/events · kubectl get events -n {namespace}" + (
        f" --field-selector {field_selector}" if field_selector else ""
    )

    def run() -> list[Finding]:
        events = fetch_events(api, namespace, field_selector=field_selector, timeout_s=timeout_s)
        frame = events_frame(events)
        cutoff = _now(now) - dt.timedelta(seconds=since_s)
        recent = frame[frame["last_seen"] >= cutoff] if not frame.empty else frame
        warnings = recent[recent["type"] == "Warning"]
        window = f"the last {_age(since_s)}"
        top = warnings.sort_values("count", ascending=False).head(3)
        listed = ", ".join(f"{r.reason} ×{r.count} on {r.object}" for r in top.itertuples())
        return [
            Finding(
                check="kube.events",
                subject=subject,
                status=Status.WARNING if len(warnings) else Status.OK,
                summary=f"{_n(len(warnings), 'Warning event')} in {window}: {listed}"
                if len(warnings)
                else f"No Warning events in {window} ({len(recent)} Normal)",
                observed=len(warnings),
                expected=0,
                evidence=(Evidence.table(recent, f"events in {window}, Warning first"),),
                source=source,
                reproduce=reproduce,
                hint="Each Warning names its object: follow it with check_pods and the logs"
                if len(warnings)
                else "",
            )
        ]

    return _guarded("kube.events", subject, reproduce, source, run)


def _history_summary(
    changes: list[dict[str, Any]], deployment: str, now: dt.datetime, recent_s: float
) -> tuple[Status, str]:
    current = next((c for c in changes if c["current"]), changes[-1])
    previous = [c for c in changes if c["revision"] < current["revision"]]
    age = (now - current["at"]).total_seconds() if current["at"] else None
    revision = f"revision {current['revision']} ({current['version']})"
    if age is None or age > recent_s:
        text = f"at {revision} for {_age(age)}; no rollout in the last {_age(recent_s)}"
        return Status.OK, f"deployment/{deployment} {text}"
    cause = current["cause"] or "no change-cause recorded"
    back = (
        f"; revision {previous[-1]['revision']} ran {previous[-1]['version']}" if previous else ""
    )
    return (
        Status.INFO,
        f"deployment/{deployment} rolled out {revision} {_age(age)} ago: {cause}{back}",
    )


def check_rollout_history(
    api: k8s.ApiClient,
    deployment: str,
    namespace: str = "default",
    *,
    recent_s: float = 3600,
    now: dt.datetime | None = None,
    timeout_s: float | None = None,
) -> list[Finding]:
    """The Deployment's revisions (``kubectl rollout history``); INFO if one is recent.

    A rollout within ``recent_s`` seconds is the first suspect of a new failure, so the
    finding names it, its image and change-cause, and the revision before it.
    """
    subject = f"deployment/{deployment} ({namespace})"
    recent = recent_s if recent_s != 3600 else None
    reproduce = _repro(api, "check_rollout_history", deployment, namespace, recent_s=recent)
    source = (
        f"GET /apis/apps/v1/namespaces/{namespace}/deployments/{deployment} + replicasets · "
        f"kubectl rollout history deployment/{deployment} -n {namespace}"
    )

    def run() -> list[Finding]:
        changes = fetch_rollout_history(api, deployment, namespace, timeout_s=timeout_s)
        base: dict[str, Any] = {
            "check": "kube.rollout_history",
            "subject": subject,
            "source": source,
        }
        if not changes:
            summary = f"deployment/{deployment} has no revisions"
            return [Finding(**base, status=Status.INFO, summary=summary, reproduce=reproduce)]
        status, summary = _history_summary(changes, deployment, _now(now), recent_s)
        undo = f"If the trouble began after it: kubectl rollout undo deployment/{deployment}"
        return [
            Finding(
                **base,
                status=status,
                summary=summary,
                observed=max(c["revision"] for c in changes),
                evidence=(Evidence.table(rollout_history_frame(changes), "rollout history"),),
                reproduce=reproduce,
                hint=f"{undo} -n {namespace}" if status == Status.INFO else "",
            )
        ]

    return _guarded("kube.rollout_history", subject, reproduce, source, run)


def _memory_finding(
    frame: pd.DataFrame, base: dict[str, Any], warn_pct: float, crit_pct: float
) -> Finding:
    frame = frame.sort_values("memory_pct_of_limit", ascending=False, na_position="last")
    evidence = (Evidence.table(frame, "memory and CPU per container"),)
    worst = frame.iloc[0]
    if pd.isna(worst["memory_pct_of_limit"]):
        top = frame.sort_values("memory_mib", ascending=False).iloc[0]
        name = f"{top['pod']}/{top['container']}"
        summary = f"No memory limits set; highest: {name} {_num(top['memory_mib'])} MiB"
        return Finding(**base, status=Status.INFO, summary=summary, evidence=evidence)
    pct = float(worst["memory_pct_of_limit"])
    status = (
        Status.CRITICAL if pct >= crit_pct else Status.WARNING if pct >= warn_pct else Status.OK
    )
    name = f"{worst['pod']}/{worst['container']}"
    used, limit = _num(worst["memory_mib"]), _num(worst["memory_limit_mib"])
    hint = (
        "Near the limit the kernel OOM-kills the container: look for a leak (growth since "
        "the last restart) before raising the limit"
    )
    return Finding(
        **base,
        status=status,
        summary=f"{name} uses {used} MiB of its {limit} MiB limit ({pct:.1f} %)",
        observed=pct,
        expected=f"< {warn_pct:g} % of the limit",
        evidence=evidence,
        hint=hint if status > Status.OK else "",
    )


def check_pod_resources(
    api: k8s.ApiClient,
    namespace: str = "default",
    *,
    label_selector: str | None = None,
    memory_warn_pct: float = 80,
    memory_crit_pct: float = 90,
    timeout_s: float | None = None,
) -> list[Finding]:
    """Container memory against its limit (``kubectl top pods --containers``).

    WARNING from ``memory_warn_pct`` % of the limit, CRITICAL from ``memory_crit_pct`` %; the
    kernel OOM-kills the container at 100 %. Containers without a limit are shown, not judged.
    """
    subject = f"pod memory {_where(namespace, label_selector)}"
    thresholds = {
        "memory_warn_pct": memory_warn_pct if memory_warn_pct != 80 else None,
        "memory_crit_pct": memory_crit_pct if memory_crit_pct != 90 else None,
    }
    reproduce = _repro(
        api, "check_pod_resources", namespace, label_selector=label_selector, **thresholds
    )
    source = (
        f"GET /apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods · kubectl top pods "
        f"-n {namespace} --containers" + (f" -l {label_selector}" if label_selector else "")
    )

    def run() -> list[Finding]:
        sel, t = label_selector, timeout_s
        metrics = fetch_pod_metrics(api, namespace, label_selector=sel, timeout_s=t)
        frame = pod_metrics_frame(
            metrics, fetch_pods(api, namespace, label_selector=sel, timeout_s=t)
        )
        if frame.empty:
            what = label_selector or "the namespace"
            reason = f"metrics-server returned no pod metrics for {what}"
            return [unknown("kube.pod_memory", subject, reason, source=source, reproduce=reproduce)]
        base: dict[str, Any] = {
            "check": "kube.pod_memory",
            "subject": subject,
            "source": source,
            "reproduce": reproduce,
        }
        return [_memory_finding(frame, base, memory_warn_pct, memory_crit_pct)]

    return _guarded("kube.pod_memory", subject, reproduce, source, run)
