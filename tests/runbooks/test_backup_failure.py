"""The backup-failure runbook, drilled against a stale and a truncated pg_dump archive."""

from __future__ import annotations

from pathlib import Path

import pytest

from aura_ops.drill import run_drill
from aura_ops.findings import Status

pytestmark = pytest.mark.slow


def test_stale_backup_is_named(tmp_path: Path) -> None:
    """The newest backup is 74 h old: CRITICAL "stale" (past the 48 h escalation)."""
    result = run_drill(
        "backup-failure", fault="backup-stale", output_root=tmp_path, baseline_s=1.0, fault_s=0.5
    )
    assert result.passed, (result.run.verdict.headline, result.missing)
    assert result.status == Status.CRITICAL
    assert "backup.freshness" == result.run.verdict.top[0].check


def test_truncated_backup_is_named(tmp_path: Path) -> None:
    """Tonight's archive cut short: CRITICAL "unreadable" with pg_restore's error."""
    result = run_drill(
        "backup-failure", fault="backup-corrupt", output_root=tmp_path, baseline_s=1.0, fault_s=0.5
    )
    assert result.passed, (result.run.verdict.headline, result.missing)
    assert result.status == Status.CRITICAL
    assert "backup.readable" == result.run.verdict.top[0].check
    assert "backup.size" in {f.check for f in result.run.verdict.top}


def test_no_fault_is_ok(tmp_path: Path) -> None:
    """Last night's backup is 3 h old and restores in full: OK."""
    result = run_drill(
        "backup-failure", fault=None, output_root=tmp_path, baseline_s=1.0, fault_s=0.5
    )
    assert result.passed, [f.summary for f in result.run.findings if f.status > Status.OK]
