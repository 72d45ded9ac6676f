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
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aura_ops.errors import RemediationRefused
from aura_ops.findings import Finding

__all__ = [
    "ActionResult",
    "Mitigation",
    "audit_log_path",
    "execute",
    "plan_restart",
    "plan_rollback",
    "plan_scale",
    "plan_terminate_backend",
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
    """Where mitigations are audited (``AURA_OPS_AUDIT_LOG`` or ``outputs/audit.jsonl``)."""
    return Path(os.environ.get("AURA_OPS_AUDIT_LOG") or Path("outputs") / "audit.jsonl")


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
