"""Mitigations, gated: dry-run by default, refused without approval, never in alert-triggered runs.

A mitigation is planned as a :class:`Mitigation` (the exact command, what it does, the evidence
it acts on) and carried out by :func:`execute`::

    m = plan_rollback("aura-api", namespace="prod", to_revision=41)
    execute(m)                                   # dry-run: prints the command, audits it
    execute(m, approve=True, approver="alice")   # runs it, audits who, what, when, evidence

Every call, dry-run or real, refused or not, appends one JSON line to the audit log
(``AURA_OPS_AUDIT_LOG``, default ``outputs/audit.jsonl``). Inside a run started by an alert
(``AURA_OPS_TRIGGER=alert``) a real execution is refused outright, approval or not.
In runbooks these calls live in cells tagged ``skip-execution``, which papermill never runs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import json
import os
import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aura_ops.errors import ConfigError, RemediationRefused
from aura_ops.findings import Finding

__all__ = [
    "ActionResult",
    "Mitigation",
    "audit_log_path",
    "execute",
    "plan_backup",
    "plan_create_index",
    "plan_delete_old_files",
    "plan_restart",
    "plan_rollback",
    "plan_scale",
    "plan_set_env",
    "plan_terminate_backend",
    "plan_terminate_idle",
]


@dataclasses.dataclass(frozen=True)
class Mitigation:
    """A planned action: its name, exact command, and why."""

    name: str
    command: tuple[str, ...]
    description: str
    evidence: tuple[str, ...] = ()  # summaries of the findings that justify it

    @property
    def command_line(self) -> str:
        return shlex.join(self.command)


@dataclasses.dataclass(frozen=True)
class ActionResult:
    """What :func:`execute` did: ``dry-run``, ``executed`` or ``failed``, with the output."""

    mitigation: Mitigation
    outcome: str
    output: str = ""

    def _repr_html_(self) -> str:
        import html

        return (
            f"<div><b>{html.escape(self.outcome.upper())}</b> "
            f"<code>{html.escape(self.mitigation.command_line)}</code>"
            f"<pre>{html.escape(self.output)}</pre></div>"
        )


def audit_log_path() -> Path:
    """Where mitigations are audited: ``AURA_OPS_AUDIT_LOG``, else ``outputs/audit.jsonl`` of
    the project (not of the kernel's working directory, which is ``notebooks/``)."""
    from aura_ops.config import project_root

    return Path(os.environ.get("AURA_OPS_AUDIT_LOG") or project_root() / "outputs" / "audit.jsonl")


def _audit(m: Mitigation, outcome: str, approver: str, reason: str, output: str = "") -> None:
    from aura_ops.redact import default_redactor

    record = {
        "at": dt.datetime.now(dt.UTC).isoformat(),
        "action": m.name,
        "command": m.command_line,
        "outcome": outcome,
        "approver": approver,
        "user": getpass.getuser(),
        "trigger": os.environ.get("AURA_OPS_TRIGGER", "manual"),
        "run_id": os.environ.get("AURA_OPS_RUN_ID", ""),
        "reason": reason,
        "evidence": list(m.evidence),
        "output": output[-2000:],
    }
    path = audit_log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(default_redactor().obj(record))
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def _evidence(findings: Sequence[Finding]) -> tuple[str, ...]:
    return tuple(f"[{f.status.name}] {f.summary}" for f in findings)


def plan_rollback(
    deployment: str,
    *,
    namespace: str = "default",
    to_revision: int | None = None,
    findings: Sequence[Finding] = (),
) -> Mitigation:
    """``kubectl rollout undo`` (seed 000 Step 4 "Rollback if caused by recent deployment")."""
    cmd = ["kubectl", "rollout", "undo", f"deployment/{deployment}", "-n", namespace]
    if to_revision is not None:
        cmd.append(f"--to-revision={int(to_revision)}")
    return Mitigation(
        "rollback",
        tuple(cmd),
        f"Roll deployment {deployment} back to "
        f"{'revision ' + str(to_revision) if to_revision else 'its previous revision'}",
        _evidence(findings),
    )


def plan_restart(
    deployment: str, *, namespace: str = "default", findings: Sequence[Finding] = ()
) -> Mitigation:
    """``kubectl rollout restart`` (seed 000 "Restart pods if memory leak or stale state")."""
    return Mitigation(
        "restart",
        ("kubectl", "rollout", "restart", f"deployment/{deployment}", "-n", namespace),
        f"Rolling restart of {deployment}",
        _evidence(findings),
    )


def plan_scale(
    deployment: str, replicas: int, *, namespace: str = "default", findings: Sequence[Finding] = ()
) -> Mitigation:
    """``kubectl scale`` (seed 000 "Scale up if resource constrained")."""
    return Mitigation(
        "scale",
        (
            "kubectl",
            "scale",
            f"deployment/{deployment}",
            f"--replicas={int(replicas)}",
            "-n",
            namespace,
        ),
        f"Scale {deployment} to {int(replicas)} replicas",
        _evidence(findings),
    )


def plan_terminate_backend(
    pid: int, *, dsn_env: str, findings: Sequence[Finding] = ()
) -> Mitigation:
    """``pg_terminate_backend(pid)`` through psql (seed 004 "Kill idle connections")."""
    sql = f"SELECT pg_terminate_backend({int(pid)})"
    return Mitigation(
        "terminate_backend",
        ("psql", f"${dsn_env}", "-c", sql),
        f"Terminate PostgreSQL backend {int(pid)}",
        _evidence(findings),
    )


# --- database and file mitigations (runbooks database-connections, slow-performance,
# backup-failure, storage-space) ------------------------------------------------------------
_SQL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")


def _sql_name(name: str, what: str) -> str:
    if not _SQL_NAME.fullmatch(name.strip()):
        raise ConfigError(f"{what} {name!r} is not a plain SQL identifier")
    return name.strip()


def plan_terminate_idle(
    dsn_env: str,
    *,
    state: str = "idle",
    older_than_s: float = 600,
    application: str = "",
    findings: Sequence[Finding] = (),
) -> Mitigation:
    """Terminate sessions in ``state`` for ``older_than_s`` (seed 004 "Kill idle connections").

    ``state`` is ``"idle"`` or ``"idle in transaction"``; ``application`` narrows it to one
    ``application_name`` (the leaking pool).
    """
    if state not in ("idle", "idle in transaction", "idle in transaction (aborted)"):
        raise ConfigError(f"state must be an idle state, not {state!r}")
    where = (
        f"state = '{state}' AND state_change < now() - interval '{int(older_than_s)} seconds' "
        "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )
    if application:
        where += " AND application_name = '" + application.replace("'", "''") + "'"
    sql = f"SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE {where}"
    return Mitigation(
        "terminate_idle",
        ("psql", f"${dsn_env}", "-c", sql),
        f"Terminate sessions {state} for more than {int(older_than_s)} s"
        + (f" from {application}" if application else ""),
        _evidence(findings),
    )


def plan_create_index(
    table: str,
    columns: str | Sequence[str],
    *,
    dsn_env: str,
    findings: Sequence[Finding] = (),
) -> Mitigation:
    """``CREATE INDEX CONCURRENTLY`` (seed 004 "Add database index"; 004's post-mortem: always
    CONCURRENTLY on a live table, it does not block writes)."""
    cols = [c.strip() for c in (columns.split(",") if isinstance(columns, str) else columns)]
    cols = [_sql_name(c, "column") for c in cols if c]
    if not cols:
        raise ConfigError("name the column(s) to index")
    table = _sql_name(table, "table")
    name = f"{table.split('.')[-1]}_{'_'.join(cols)}_idx"
    sql = f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} ({', '.join(cols)})"
    return Mitigation(
        "create_index",
        ("psql", f"${dsn_env}", "-c", sql),
        f"Create index {name} on {table} ({', '.join(cols)}) without blocking writes",
        _evidence(findings),
    )


def plan_backup(
    dsn_env: str, backup_dir: str | Path, *, findings: Sequence[Finding] = ()
) -> Mitigation:
    """A manual ``pg_dump -Fc`` into ``backup_dir`` (seed 004 "Run manual backup")."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    path = Path(backup_dir) / f"manual-{stamp}.dump"
    return Mitigation(
        "backup",
        ("pg_dump", "--format=custom", f"--file={path}", f"${dsn_env}"),
        f"Back up the database now to {path}",
        _evidence(findings),
    )


def plan_delete_old_files(
    directory: str | Path,
    *,
    older_than_days: int,
    pattern: str = "*",
    findings: Sequence[Finding] = (),
) -> Mitigation:
    """``find DIR -type f -name PATTERN -mtime +N -delete`` (seed 004 "Clean up old backups",
    seed 003 storage cleanup). Dry-run shows the command; approve only after reviewing."""
    days = int(older_than_days)
    if days < 1:
        raise ConfigError("older_than_days must be at least 1")
    return Mitigation(
        "delete_old_files",
        ("find", str(directory), "-type", "f", "-name", pattern, "-mtime", f"+{days}", "-delete"),
        f"Delete files matching {pattern} older than {days} days under {directory}",
        _evidence(findings),
    )


def plan_set_env(
    deployment: str,
    env: Mapping[str, str],
    *,
    namespace: str = "default",
    findings: Sequence[Finding] = (),
) -> Mitigation:
    """``kubectl set env`` (seed 000 "Enable offline mode": ``OFFLINE_MODE=true``); the pods
    roll out again with the new values. Never put a secret value here: name a Secret instead."""
    pairs = [f"{k}={v}" for k, v in env.items()]
    if not pairs:
        raise ConfigError("plan_set_env needs at least one variable")
    return Mitigation(
        "set_env",
        ("kubectl", "set", "env", f"deployment/{deployment}", *pairs, "-n", namespace),
        f"Set {', '.join(pairs)} on {deployment} (rolls its pods)",
        _evidence(findings),
    )


def execute(
    m: Mitigation,
    *,
    approve: bool = False,
    approver: str = "",
    reason: str = "",
    timeout_s: float = 60.0,
) -> ActionResult:
    """Carry out ``m`` -- only with ``approve=True`` and an ``approver``, never in alert runs.

    Without approval this is a dry run: nothing is executed; the command is returned and audited.
    """
    if os.environ.get("AURA_OPS_TRIGGER") == "alert":
        _audit(m, "refused", approver, "alert-triggered run")
        raise RemediationRefused(
            f"{m.name} refused: runs started by an alert never remediate",
            hint="open the run interactively (aura-ops open) and approve there",
        )
    if not approve:
        _audit(m, "dry-run", approver, reason)
        return ActionResult(m, "dry-run", f"would run: {m.command_line}")
    if not approver:
        _audit(m, "refused", approver, "no approver named")
        raise RemediationRefused(
            f"{m.name} refused: approval needs an approver name",
            hint="execute(m, approve=True, approver='your-name')",
        )
    env = dict(os.environ)
    argv = [os.path.expandvars(a) if a.startswith("$") else a for a in m.command]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, env=env)
        outcome = "executed" if proc.returncode == 0 else "failed"
        output: Any = (proc.stdout + proc.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        outcome, output = "failed", f"{type(exc).__name__}: {exc}"
    _audit(m, outcome, approver, reason, str(output))
    return ActionResult(m, outcome, str(output))
