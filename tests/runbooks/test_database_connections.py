"""The database-connections runbook, drilled against leaked transactions and a held lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from aura_ops.drill import run_drill
from aura_ops.findings import Status

pytestmark = pytest.mark.slow


def test_idle_transactions_are_named(tmp_path: Path) -> None:
    """Sessions idle in transaction at 88 % of max_connections: WARNING naming the leaking app."""
    result = run_drill(
        "database-connections", fault="idle-transactions", output_root=tmp_path,
        baseline_s=2.0, fault_s=1.0,
    )  # fmt: skip
    assert result.passed, (result.run.verdict.headline, result.missing)
    assert result.status == Status.WARNING
    assert "database.connections" == result.run.verdict.top[0].check


def test_blocking_lock_is_named(tmp_path: Path) -> None:
    """A migration idle in its transaction blocks others: the root blocker is named."""
    result = run_drill(
        "database-connections", fault="lock-blocking", output_root=tmp_path,
        baseline_s=2.0, fault_s=4.0,
    )  # fmt: skip
    assert result.passed, (result.run.verdict.headline, result.missing)
    top = result.run.verdict.top[0]
    assert "database.blocking_locks" == top.check
    assert "ALTER TABLE jobs" in top.summary


def test_no_fault_is_ok(tmp_path: Path) -> None:
    """A healthy database under normal traffic: every check OK."""
    result = run_drill(
        "database-connections", fault=None, output_root=tmp_path, baseline_s=2.0, fault_s=1.0
    )
    assert result.passed, [f.summary for f in result.run.findings if f.status > Status.OK]
