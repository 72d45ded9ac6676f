"""The triage sweep: every area looked at once, fast, before deciding which runbook is next.

Seed 000 step 1-2 ("check system status ... error rate, response times, resource
utilisation, error logs, recent changes"), seed 002 *Gather Initial Data* and seed 004's
*Initial Response Checklist*, as a few calls that each cover one area with short timeouts:

- :func:`sweep_service` -- health endpoints (liveness, readiness, components, providers);
- :func:`sweep_logs` -- one read of the window's logs: error types, failing endpoints and rate
  limiting, latency, provider calls, webhook deliveries, WebSocket handshakes, errors after
  a change;
- :func:`sweep_database` -- connectivity, then connections, idle transactions, locks, long
  queries (skipped when the database does not answer: one finding says so);
- :func:`sweep_workers` -- workers consuming the queue and the API's memory growth, measured
  at the same time;
- :func:`sweep_dependencies` -- provider API, customer webhook endpoint, WebSocket handshake,
  broker, Kubernetes OOM kills, in parallel;
- :func:`sweep_host` -- data directory, backups, GPU memory and CUDA OOM in worker logs;
- :func:`sweep_request` -- one reported request traced by its correlation ID.

A source whose parameter is empty is not configured here: an INFO finding says it was
skipped (INFO never raises the verdict). Every finding keeps its status, summary and
provenance; its ``role`` becomes ``"signal"`` (in triage the one cause-ranked finding is the
proposal of :func:`aura_ops.triage.check_triage`). Nothing here raises.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from aura_ops import (
    backup,
    changes,
    database,
    health,
    logs,
    memory,
    providers,
    queues,
    realtime,
    storage,
    system,
    webhooks,
)
from aura_ops.findings import Finding, Status, unknown

__all__ = [
    "sweep_database",
    "sweep_dependencies",
    "sweep_host",
    "sweep_logs",
    "sweep_request",
    "sweep_service",
    "sweep_workers",
]

Check = Callable[[], list[Finding]]


def _signals(findings: list[Finding]) -> list[Finding]:
    """Findings as triage signals: the cause ranking is left to the proposal."""
    return [
        f.replace(labels={**f.labels, "role": "signal"}) if f.labels.get("role") else f
        for f in findings
    ]


def _skipped(check: str, what: str, param: str) -> Finding:
    return Finding(
        check=check,
        subject=what,
        status=Status.INFO,
        summary=f"{what[0].upper()}{what[1:]} not checked: no {param} given",
        hint=f"set {param} to include it in the sweep",
    )


def _run(checks: list[tuple[str, str, Check]]) -> list[Finding]:
    """Run ``(check id, subject, call)`` in parallel threads; findings in the given order."""
    if not checks:
        return []
    with ThreadPoolExecutor(max_workers=len(checks)) as pool:
        futures = [(check, what, pool.submit(call)) for check, what, call in checks]
    out: list[Finding] = []
    for check, what, fut in futures:
        try:
            out += fut.result()
        except Exception as exc:  # a check that broke its contract: still UNKNOWN, never raised
            out.append(unknown(check, what, exc))
    return _signals(out)


def sweep_service(base_url: str, *, timeout_s: float = 2.0) -> list[Finding]:
    """Liveness, readiness, system components and providers (seed 000 *Quick Health Check*)."""
    if not base_url:
        return [_skipped("health.endpoint", "the API", "base_url")]
    return _run(
        [("health.endpoint", base_url, lambda: health.check_health(base_url, timeout_s=timeout_s))]
    )


def sweep_logs(
    log_paths: str,
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    changes_path: str = "",
    error_ratio_warn: float = 0.01,
    error_ratio_crit: float = 0.05,
    p95_warn_ms: float = 1000,
    p95_crit_ms: float = 5000,
) -> list[Finding]:
    """One read of the window's logs, judged for errors, latency, providers, webhooks and
    WebSockets, and against the last change (seed 000 step 2 *Error logs*, *Recent changes*)."""
    if not log_paths:
        return [_skipped("logs.errors", "the logs", "log_paths")]
    events = logs.load_events(log_paths, since=since, until=until)
    ratios = {"error_ratio_warn": error_ratio_warn, "error_ratio_crit": error_ratio_crit}
    checks: list[tuple[str, str, Check]] = [
        ("logs.error_types", "logs", lambda: logs.check_error_types(events, source=log_paths)),
        (
            "logs.failing_endpoints",
            "logs",
            lambda: logs.check_failing_endpoints(events, source=log_paths, **ratios),
        ),
        (
            "logs.latency",
            "logs",
            lambda: logs.check_latency(
                events, p95_max_ms=p95_warn_ms, p95_crit_ms=p95_crit_ms, source=log_paths
            ),
        ),
        (
            "providers.calls",
            "logs",
            lambda: providers.check_provider_calls(events, source=log_paths, **ratios),
        ),
        ("webhooks.logs", "logs", lambda: webhooks.check_webhook_logs(events, source=log_paths)),
        ("realtime.logs", "logs", lambda: realtime.check_websocket_logs(events, source=log_paths)),
    ]
    if changes_path:
        checks.append(
            (
                "changes.errors_after",
                "changes",
                lambda: changes.check_errors_after_change(
                    events, changes_path, window_end=until, source=log_paths
                ),
            )
        )
    return _run(checks)


def sweep_database(
    dsn_env: str,
    *,
    timeout_s: float = 2.0,
    connections_warn_pct: float = 80,
    connections_crit_pct: float = 95,
    idle_in_transaction_warn_s: float = 60,
    lock_wait_warn_s: float = 5,
    lock_wait_crit_s: float = 30,
    long_query_warn_s: float = 60,
) -> list[Finding]:
    """Connectivity first; when it answers, connections, idle transactions, blocking locks and
    long-running queries (seed 003/004 *Database Connection Issues*)."""
    if not dsn_env:
        return [_skipped("database.connectivity", "the database", "dsn_env")]
    first = _run(
        [
            (
                "database.connectivity",
                dsn_env,
                lambda: database.check_connectivity(dsn_env, timeout_s=timeout_s),
            )
        ]
    )
    if any(f.status >= Status.UNKNOWN for f in first):
        return first  # the others would only repeat that it does not answer
    t = {"timeout_s": timeout_s}
    return first + _run(
        [
            (
                "database.connections",
                dsn_env,
                lambda: database.check_connections(
                    dsn_env, warn_pct=connections_warn_pct, crit_pct=connections_crit_pct, **t
                ),
            ),
            (
                "database.idle_in_transaction",
                dsn_env,
                lambda: database.check_idle_in_transaction(
                    dsn_env, warn_s=idle_in_transaction_warn_s, **t
                ),
            ),
            (
                "database.blocking_locks",
                dsn_env,
                lambda: database.check_blocking_locks(
                    dsn_env, min_wait_s=lock_wait_warn_s, crit_wait_s=lock_wait_crit_s, **t
                ),
            ),
            (
                "database.long_running_queries",
                dsn_env,
                lambda: database.check_long_running_queries(dsn_env, warn_s=long_query_warn_s, **t),
            ),
        ]
    )


def sweep_workers(
    metrics_url: str,
    *,
    interval_s: float = 1.5,
    min_workers: int = 1,
    memory_samples: int = 4,
    growth_warn_pct_per_h: float = 10.0,
    growth_crit_pct_per_h: float = 50.0,
    min_growth_mib: float = 8.0,
    timeout_s: float = 2.0,
) -> list[Finding]:
    """Workers consuming the queue (two scrapes ``interval_s`` apart) and the API's resident
    memory growth (``memory_samples`` scrapes over the same interval), measured together."""
    if not metrics_url:
        return [_skipped("queues.workers", "the workers and memory", "metrics_url")]
    step = interval_s / max(memory_samples - 1, 1)

    def growth() -> list[Finding]:
        rss = memory.load_gauge_samples(
            metrics_url, samples=memory_samples, interval_s=step, timeout_s=timeout_s
        )
        return memory.check_memory_growth(
            rss,
            growth_warn_pct_per_h=growth_warn_pct_per_h,
            growth_crit_pct_per_h=growth_crit_pct_per_h,
            min_growth_mib=min_growth_mib,
        )

    return _run(
        [
            (
                "queues.workers",
                metrics_url,
                lambda: queues.check_workers(
                    metrics_url, interval_s=interval_s, min_workers=min_workers, timeout_s=timeout_s
                ),
            ),
            ("memory.growth", metrics_url, growth),
        ]
    )


def sweep_dependencies(
    *,
    provider_url: str = "",
    api_key_env: str = "",
    provider_name: str = "openai",
    webhook_url: str = "",
    ws_url: str = "",
    ws_origin: str = "",
    broker_url: str = "",
    kube_url: str = "",
    kube_context: str = "",
    namespace: str = "default",
    app_label: str = "aura-api",
    timeout_s: float = 2.0,
) -> list[Finding]:
    """What the service depends on, in parallel: the provider API with its key, the customer
    webhook endpoint, a WebSocket handshake, the broker, and OOM kills in Kubernetes."""
    t = {"timeout_s": timeout_s}
    sources: list[tuple[str, str, str, str, Check]] = [
        (
            "providers.api",
            "the provider API",
            "provider_url",
            provider_url,
            lambda: providers.check_provider_api(
                provider_url, api_key_env=api_key_env, name=provider_name, **t
            ),
        ),
        (
            "webhooks.endpoint",
            "the webhook endpoint",
            "webhook_url",
            webhook_url,
            lambda: webhooks.check_webhook_endpoint(webhook_url, **t),
        ),
        (
            "realtime.websocket",
            "WebSockets",
            "ws_url",
            ws_url,
            lambda: realtime.check_websocket(ws_url, origin=ws_origin, **t),
        ),
        (
            "realtime.broker",
            "the broker",
            "broker_url",
            broker_url,
            lambda: realtime.check_broker(broker_url, **t),
        ),
        (
            "kube.oomkilled",
            "Kubernetes",
            "kube_url",
            kube_url or kube_context,
            lambda: memory.check_oom_kills(
                kube_url,
                kube_context=kube_context,
                namespace=namespace,
                label_selector=f"app={app_label}",
                **t,
            ),
        ),
    ]
    skipped = [_skipped(c, what, p) for c, what, p, value, _ in sources if not value]
    return _run([(c, what, call) for c, what, _, value, call in sources if value]) + skipped


def sweep_host(
    *,
    data_dir: str = "",
    data_quota_gib: float = 0,
    backup_dir: str = "",
    backup_pattern: str = "*.dump,*.sql,*.sql.gz,*.gpg",
    nvidia_smi: str = "",
    worker_log_paths: str = "",
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    timeout_s: float = 2.0,
) -> list[Finding]:
    """Host resources: the data directory, the newest backups, GPU memory and CUDA OOM errors
    in the GPU workers' logs (seed 001 disk checks, 003 storage and GPU, 004 backups)."""
    sources: list[tuple[str, str, str, str, Check]] = [
        (
            "storage.directory_usage",
            "the data directory",
            "data_dir",
            data_dir,
            lambda: storage.check_directory_usage(
                data_dir, quota_gib=data_quota_gib, budget_s=timeout_s
            ),
        ),
        (
            "backup.freshness",
            "the backups",
            "backup_dir",
            backup_dir,
            lambda: backup.check_backup_freshness(backup_dir, pattern=backup_pattern),
        ),
        (
            "backup.readable",
            "the newest backup",
            "backup_dir",
            backup_dir,
            lambda: backup.check_backup_readable(
                backup_dir, pattern=backup_pattern, timeout_s=5 * timeout_s
            ),
        ),
        (
            "system.gpu_memory",
            "the GPUs",
            "nvidia_smi",
            nvidia_smi,
            lambda: system.check_gpu_memory(nvidia_smi=nvidia_smi, timeout_s=timeout_s),
        ),
        (
            "system.cuda_oom",
            "the GPU worker logs",
            "worker_log_paths",
            worker_log_paths,
            lambda: system.check_cuda_oom_logs(worker_log_paths, since=since, until=until),
        ),
    ]
    skipped = [_skipped(c, what, p) for c, what, p, value, _ in sources if not value]
    skipped = list({f.subject: f for f in skipped}.values())
    return _run([(c, what, call) for c, what, _, value, call in sources if value]) + skipped


def sweep_request(
    log_paths: str,
    correlation_id: str,
    *,
    db_log_paths: str = "",
    until: datetime | str | None = None,
    search_minutes: float = 120,
) -> list[Finding]:
    """The request a user reported, traced by its correlation ID (seed 000)."""
    if not correlation_id:
        return [_skipped("logs.trace", "a reported request", "correlation_id")]
    kwargs: dict[str, Any] = {
        "db_log_paths": db_log_paths,
        "until": until,
        "search_minutes": search_minutes,
    }
    return _run(
        [
            (
                "logs.trace",
                correlation_id,
                lambda: logs.check_trace(log_paths, correlation_id, **kwargs),
            )
        ]
    )
