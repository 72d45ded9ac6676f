"""Remediation gating: every mitigation is dry-run by default, refused without a named
approver, refused outright in alert-triggered runs, and audited with who, what, when and the
evidence -- whatever the outcome.

The mitigations' programs (``kubectl``, ``psql``, ``pg_dump``, ``find``) are replaced on
``PATH`` by shims that only record their argv, so "nothing was executed" is observed, not
assumed. Runbooks run with ``trigger="alert"`` never execute their ``skip-execution`` cells,
and a remediation that is not in such a cell is still refused there.
"""

from __future__ import annotations

import datetime as dt
import getpass
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest

from aura_ops import remediate
from aura_ops.errors import RemediationRefused
from aura_ops.findings import Finding, Status
from aura_ops.runner import run_runbook
from tests.conftest import write_runbook

ROOT = Path(__file__).resolve().parents[2]
PLANS = sorted(n for n in remediate.__all__ if n.startswith("plan_"))
EVIDENCE = [
    Finding("kube.oomkilled", "pods aura", Status.CRITICAL, "aura-api OOMKilled 4 times"),
    Finding("logs.error_types", "api", Status.WARNING, "412 TimeoutError since deploy v2.4.1"),
]
#: values for the required arguments of the plan_* functions
ARGS: dict[str, Any] = {
    "deployment": "aura-api", "replicas": 6, "pid": 4121, "dsn_env": "AURA_DB_DSN",
    "table": "job_events", "columns": "job_id", "older_than_days": 30,
    "env": {"OFFLINE_MODE": "true"},
}  # fmt: skip
PROGRAMS = ("kubectl", "psql", "pg_dump", "find")


@pytest.fixture
def gated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Shimmed programs on PATH, a fresh audit log, a manual (not alert) context."""
    bin_dir, ran = tmp_path / "bin", tmp_path / "ran.log"
    bin_dir.mkdir()
    for prog in PROGRAMS:
        shim = bin_dir / prog
        shim.write_text(f'#!/bin/sh\necho "{prog} $*" >> "{ran}"\necho done\n')
        shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("AURA_OPS_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("AURA_DB_DSN", "postgresql:///aura")
    monkeypatch.delenv("AURA_OPS_TRIGGER", raising=False)
    monkeypatch.setenv("AURA_OPS_RUN_ID", "101523-test-run")
    return {"ran": ran, "audit": tmp_path / "audit.jsonl", "dir": tmp_path}


def plan(name: str, tmp: Path) -> remediate.Mitigation:
    """``name``'s mitigation with test arguments and the evidence it acts on."""
    fn: Callable[..., remediate.Mitigation] = getattr(remediate, name)
    args, kwargs = [], {"findings": EVIDENCE}
    for p in inspect.signature(fn).parameters.values():
        if p.default is not inspect.Parameter.empty or p.name == "findings":
            continue
        value = tmp if p.name in ("backup_dir", "directory") else ARGS.get(p.name)
        assert value is not None, f"add a test value for {name}({p.name}=...) to ARGS"
        if p.kind is inspect.Parameter.KEYWORD_ONLY:
            kwargs[p.name] = value
        else:
            args.append(value)
    return fn(*args, **kwargs)


def audit(paths: dict[str, Path]) -> list[dict[str, Any]]:
    log = paths["audit"]
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def ran(paths: dict[str, Path]) -> list[str]:
    return paths["ran"].read_text().splitlines() if paths["ran"].exists() else []


def assert_audited(record: dict[str, Any], m: remediate.Mitigation, outcome: str, who: str) -> None:
    """One audit line says who, what, when, why and on what evidence."""
    at = dt.datetime.fromisoformat(record["at"])
    assert abs((dt.datetime.now(dt.UTC) - at).total_seconds()) < 60
    assert (record["action"], record["command"], record["outcome"]) == (m.name, m.command_line,
                                                                       outcome)  # fmt: skip
    assert (record["approver"], record["user"]) == (who, getpass.getuser())
    assert record["run_id"] == "101523-test-run"
    assert [f"[{f.status.name}] {f.summary}" for f in EVIDENCE] == record["evidence"]


def test_every_plan_is_covered() -> None:
    """The gating tests run over every mitigation remediate offers."""
    assert len(PLANS) >= 9
    assert {"plan_rollback", "plan_restart", "plan_scale", "plan_terminate_backend"} <= set(PLANS)


@pytest.mark.parametrize("name", PLANS)
def test_dry_run_by_default(name: str, gated: dict[str, Path]) -> None:
    """Without approval nothing runs; the command is shown and audited as a dry run."""
    m = plan(name, gated["dir"])
    result = remediate.execute(m)
    assert ("dry-run", f"would run: {m.command_line}") == (result.outcome, result.output)
    assert [] == ran(gated)
    (record,) = audit(gated)
    assert_audited(record, m, "dry-run", "")


@pytest.mark.parametrize("name", PLANS)
def test_refused_without_an_approver(name: str, gated: dict[str, Path]) -> None:
    """approve=True without naming who approves is refused, and the refusal is audited."""
    m = plan(name, gated["dir"])
    with pytest.raises(RemediationRefused, match="approver"):
        remediate.execute(m, approve=True)
    assert [] == ran(gated)
    (record,) = audit(gated)
    assert_audited(record, m, "refused", "")
    assert "no approver named" == record["reason"]


@pytest.mark.parametrize("name", PLANS)
def test_refused_in_alert_triggered_runs_even_when_approved(
    name: str, gated: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside a run started by an alert, an approved mitigation is refused and audited."""
    monkeypatch.setenv("AURA_OPS_TRIGGER", "alert")
    m = plan(name, gated["dir"])
    with pytest.raises(RemediationRefused, match="alert"):
        remediate.execute(m, approve=True, approver="alice", reason="on-call approved")
    assert [] == ran(gated)
    (record,) = audit(gated)
    assert_audited(record, m, "refused", "alice")
    assert ("alert", "alert-triggered run") == (record["trigger"], record["reason"])


@pytest.mark.parametrize("name", PLANS)
def test_approved_runs_once_and_is_audited(name: str, gated: dict[str, Path]) -> None:
    """Approved by a named person in a manual run: the exact command runs once, audited."""
    m = plan(name, gated["dir"])
    result = remediate.execute(m, approve=True, approver="alice", reason="INC-42 mitigation")
    assert "executed" == result.outcome
    expanded = [a.replace("$AURA_DB_DSN", "postgresql:///aura") for a in m.command]
    assert [" ".join(expanded)] == ran(gated)
    (record,) = audit(gated)
    assert_audited(record, m, "executed", "alice")
    assert ("manual", "INC-42 mitigation") == (record["trigger"], record["reason"])


def test_runbook_remediations_live_in_skip_execution_cells() -> None:
    """In every runbook, each cell that calls remediate.execute is tagged skip-execution."""
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code" and "remediate.execute" in cell.source:
                assert "skip-execution" in cell.metadata.get("tags", []), (path.name, cell.source)


def test_alert_run_never_executes_a_skip_execution_cell(
    gated: dict[str, Path], tmp_path: Path
) -> None:
    """An alert-triggered run skips its remediation cells; one left untagged is refused."""
    marker = tmp_path / "remediation-cell-ran"
    root = tmp_path / "project"
    nb = write_runbook(
        root, "gated", 'deployment = "aura-api"  # target\n',
        "from aura_ops import remediate",
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "remediate.execute(remediate.plan_restart(deployment), approve=True, approver='bot')",
        "remediate.execute(remediate.plan_rollback(deployment), approve=True, approver='bot')",
    )  # fmt: skip
    doc = nbformat.read(nb, as_version=4)
    doc.cells[3].metadata["tags"] = ["skip-execution"]
    nbformat.write(doc, nb)
    run = run_runbook("gated", output_root=tmp_path / "out", root=root, trigger="alert",
                      timeout_s=120)  # fmt: skip
    executed = nbformat.read(run.run_dir / "notebook.ipynb", as_version=4)
    (skipped,) = [c for c in executed.cells if "skip-execution" in c.metadata.get("tags", [])]
    assert (skipped.execution_count, skipped.outputs, marker.exists()) == (None, [], False)
    assert "RemediationRefused" in run.record["execution"].get("error", "")  # the untagged cell
    assert [] == ran(gated)
    assert [("rollback", "refused", "alert")] == [
        (r["action"], r["outcome"], r["trigger"]) for r in audit(gated)
    ]
