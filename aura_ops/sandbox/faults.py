"""The fault catalogue: what each drill breaks, and what its runbook's verdict must name."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from aura_ops.sandbox import db_faults, gpu, host_faults, peers, tracing

__all__ = ["FAULTS", "SERVICE_FAULTS", "Fault", "faults_for"]

#: Switches the sandbox service understands (``POST /_sandbox/faults``).
SERVICE_FAULTS = frozenset({"bad-deploy", "memory-leak", "rate-limit", "worker-stall", "ws-origin"})


@dataclasses.dataclass(frozen=True)
class Fault:
    """One injectable fault.

    ``service`` names the switch flipped inside the sandbox service (with ``params``);
    ``deploy`` records a deployment just before the switch, as a real bad release would;
    ``expect`` lists the words the runbook's verdict must contain for the drill to pass.
    ``apply`` / ``revert`` are control-side actions on the running ``Sandbox`` (stopping a
    dependency, changing the provider, the Kubernetes state), run after the service switch.
    """

    name: str
    runbook: str
    summary: str
    service: str | None = None
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    deploy: Mapping[str, str] | None = None
    expect: tuple[str, ...] = ()
    apply: Callable[[Any], None] | None = None
    revert: Callable[[Any], None] | None = None


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault(
            name="bad-deploy",
            runbook="high-error-rate",
            summary="deploy v2.4.1 makes POST /api/render fail with KeyError (HTTP 500)",
            service="bad-deploy",
            params={"missing_key": "output_codec"},
            deploy={
                "version": "v2.4.1",
                "previous": "v2.4.0",
                "author": "release-bot",
                "description": "render: read output codec from new template settings",
            },
            expect=("/api/render", "KeyError", "v2.4.1"),
        ),
        Fault(
            name="rate-limit",
            runbook="high-error-rate",
            summary="GET /api/projects rejected with HTTP 429 'Rate limit exceeded'",
            service="rate-limit",
            params={"prefix": "/api/projects"},
            expect=("/api/projects", "429"),
        ),
        Fault(
            name="memory-leak",
            runbook="memory-leak",
            summary="deploy v2.4.2 keeps every request's payload in a cache that is never "
            "evicted: the API's resident memory climbs with traffic",
            service="memory-leak",
            params={"kib_per_request": 256},
            deploy={
                "version": "v2.4.2",
                "previous": "v2.4.0",
                "author": "release-bot",
                "description": "api: cache rendered payloads per request",
            },
            expect=("resident memory", "memory-leak"),
        ),
        Fault(
            name="oom-killed",
            runbook="memory-leak",
            summary="aura-api containers OOM-killed at their 512 MiB limit and restarted "
            "(Kubernetes state)",
            apply=peers.fault_kube_oom,
            revert=peers.fault_kube_healthy,
            expect=("OOMKilled",),
        ),
        Fault(
            name="worker-stall",
            runbook="queue-backup",
            summary="the workers hang while a customer submits 150 renders: the queue climbs",
            service="worker-stall",
            apply=peers.fault_render_burst(150),
            expect=("queue depth", "workers"),
        ),
        Fault(
            name="provider-outage",
            runbook="provider-failures",
            summary="the OpenAI provider takes 2.5 s a call, longer than the 1 s timeout: "
            "calls time out and the circuit breaker opens",
            apply=peers.fault_provider("slow", delay_s=2.5),
            revert=peers.fault_provider_ok,
            expect=("openai", "circuit open"),
        ),
        Fault(
            name="provider-rate-limit",
            runbook="provider-failures",
            summary="the OpenAI key's quota drops to 1 request a second: HTTP 429 "
            "rate_limit_exceeded",
            apply=peers.fault_provider("rate-limit", per_s=1.0),
            revert=peers.fault_provider_ok,
            expect=("openai", "429"),
        ),
        Fault(
            name="provider-invalid-key",
            runbook="provider-failures",
            summary="the OpenAI API key is revoked: HTTP 401 invalid_api_key",
            apply=peers.fault_provider("invalid-key"),
            revert=peers.fault_provider_ok,
            expect=("openai", "401"),
        ),
        Fault(
            name="webhook-refused",
            runbook="webhook-failures",
            summary="the customer's webhook endpoint refuses connections: retries exhausted",
            apply=peers.fault_webhook("refuse"),
            revert=peers.fault_webhook_ok,
            expect=("Webhook", "refused"),
        ),
        Fault(
            name="webhook-timeout",
            runbook="webhook-failures",
            summary="the customer's webhook endpoint accepts connections and never answers: "
            "every attempt times out, retries exhausted",
            apply=peers.fault_webhook("hang"),
            revert=peers.fault_webhook_ok,
            expect=("Webhook", "timed out"),
        ),
        Fault(
            name="websocket-origin",
            runbook="websocket-failures",
            summary="a config change drops https://app.aura.studio from the allowed WebSocket "
            "origins (HTTP 403) while the broker behind /ws/jobs is down",
            service="ws-origin",
            params={"allowed_origins": ["https://app.aura-studio.com"]},
            apply=peers.fault_broker_down,
            revert=peers.fault_broker_up,
            expect=("Origin", "403", "broker"),
        ),
        Fault(
            name="idle-transactions",
            runbook="database-connections",
            summary="a leaking export worker (app 'aura-export') leaves transactions open: "
            "sessions idle in transaction take 88 % of max_connections",
            apply=db_faults.fault_idle_transactions,
            revert=db_faults.fault_release_idle,
            expect=("idle in transaction", "aura-export"),
        ),
        Fault(
            name="lock-blocking",
            runbook="database-connections",
            summary="a migration (app 'aura-migrate') stops inside its transaction holding "
            "ACCESS EXCLUSIVE on jobs: reports and API queries on jobs wait behind it",
            apply=db_faults.fault_hold_lock,
            revert=db_faults.fault_release_lock,
            expect=("blocked", "aura-migrate"),
        ),
        Fault(
            name="missing-index",
            runbook="slow-performance",
            summary="job_events is backfilled with history and has no index on job_id: "
            "GET /api/projects/{project_id} scans it once per job (~2 s a request)",
            apply=db_faults.fault_backfill_events,
            revert=db_faults.fault_clear_backfill,
            expect=("/api/projects/{project_id}",),
        ),
        Fault(
            name="api-hung",
            runbook="service-down",
            summary="the API process is stopped (SIGSTOP): its port accepts connections, "
            "nothing answers",
            apply=host_faults.fault_api_stop,
            revert=host_faults.fault_api_continue,
            expect=("hung", "stopped"),
        ),
        Fault(
            name="database-down",
            runbook="service-down",
            summary="PostgreSQL is stopped: the API is up but every query fails",
            apply=db_faults.fault_stop_postgres,
            revert=db_faults.fault_start_postgres,
            expect=("database", "unreachable"),
        ),
        Fault(
            name="backup-stale",
            runbook="backup-failure",
            summary="the nightly backup job stopped three nights ago: the newest archive is "
            "74 h old",
            apply=host_faults.fault_stale_backups,
            revert=host_faults.fault_fresh_backups,
            expect=("stale",),
        ),
        Fault(
            name="backup-corrupt",
            runbook="backup-failure",
            summary="tonight's pg_dump archive was cut short when the job was killed: "
            "pg_restore cannot read it",
            apply=host_faults.fault_corrupt_backup,
            revert=host_faults.fault_fresh_backups,
            expect=("unreadable", "pg_restore"),
        ),
        Fault(
            name="disk-full",
            runbook="storage-space",
            summary="temporary files of crashed render jobs fill the data directory to 94 % of "
            "its volume (render-cache/)",
            apply=host_faults.fault_fill_data_dir,
            revert=host_faults.fault_clear_data_dir,
            expect=("render-cache", "over 80 %"),
        ),
        Fault(
            name="gpu-oom",
            runbook="gpu-oom",
            summary="a finished job's python3 process still holds 75 GiB of the H100: the next "
            "job's 20 GiB allocation fails with CUDA out of memory (real nvidia-smi captures)",
            apply=gpu.fault_gpu_oom,
            revert=gpu.fault_gpu_idle,
            expect=("CUDA OOM", "NVIDIA H100", "python3"),
        ),
        Fault(
            name="poison-job",
            runbook="request-trace",
            summary="project 13's render settings are corrupt (fps '24fps'): a user's render "
            "is accepted (202), then fails in the worker on a PostgreSQL error; the user "
            "reports its correlation ID",
            apply=tracing.fault_poison_project,
            revert=tracing.fault_heal_project,
            expect=("worker", "InvalidTextRepresentation"),
        ),
    )
}


def faults_for(runbook: str) -> list[Fault]:
    """The faults whose drill exercises ``runbook``, in catalogue order."""
    return [f for f in FAULTS.values() if f.runbook == runbook]
