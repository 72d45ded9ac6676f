"""The slow-performance runbook, drilled against a query slowed by a missing index."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aura_ops.drill import DrillResult, run_drill
from aura_ops.findings import Finding, Status
from aura_ops.sandbox.db_faults import POSTGRES_ENV
from aura_ops.sandbox.postgres import system_postgres_bindir

pytestmark = pytest.mark.slow

HAS_PSS = system_postgres_bindir() is not None  # the Debian server: pg_stat_statements


def _need_pss() -> None:
    """pg_stat_statements needs the Debian server; a laptop without it skips, CI fails."""
    if not HAS_PSS:
        reason = "pg_stat_statements needs the Debian server: apt-get install postgresql"
        if os.environ.get("CI") == "true":
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


def _by_check(result: DrillResult, check: str) -> list[Finding]:
    return [f for f in result.run.findings if f.check == check]


def test_missing_index_is_named(tmp_path: Path) -> None:
    """The slow endpoint is named from p95, and pg_stat_statements names the statement."""
    _need_pss()
    result = run_drill(
        "slow-performance", fault="missing-index", output_root=tmp_path, baseline_s=2.0,
        fault_s=4.0,
    )  # fmt: skip
    assert result.passed, (result.run.verdict.headline, result.missing)
    (statements,) = _by_check(result, "database.slow_statements")
    assert statements.status >= Status.WARNING and "job_events" in statements.summary


def test_without_pg_stat_statements(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On pgserver (no extension) the statements step is UNKNOWN with the fix, and the slow
    endpoint is still named from p95 latency."""
    monkeypatch.setenv(POSTGRES_ENV, "pgserver")
    result = run_drill(
        "slow-performance", fault="missing-index", output_root=tmp_path, baseline_s=2.0,
        fault_s=4.0,
    )  # fmt: skip
    assert result.passed, (result.run.verdict.headline, result.missing)
    (statements,) = _by_check(result, "database.slow_statements")
    assert Status.UNKNOWN == statements.status
    assert "shared_preload_libraries" in statements.hint
    assert "CREATE EXTENSION pg_stat_statements" in statements.hint


def test_no_fault_is_ok(tmp_path: Path) -> None:
    """Fast endpoints, fast statements, a quiet pool: OK (needs pg_stat_statements)."""
    _need_pss()
    result = run_drill(
        "slow-performance", fault=None, output_root=tmp_path, baseline_s=2.0, fault_s=1.0
    )
    assert result.passed, [f.summary for f in result.run.findings if f.status > Status.OK]
