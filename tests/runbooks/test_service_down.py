"""The service-down runbook, drilled against a hung API and a stopped database."""

from __future__ import annotations

from pathlib import Path

import pytest

from aura_ops.drill import run_drill
from aura_ops.findings import Status

pytestmark = pytest.mark.slow


def test_hung_api_is_named(tmp_path: Path) -> None:
    """SIGSTOP: CRITICAL, the API "is hung" and its process "is stopped"."""
    result = run_drill(
        "service-down", fault="api-hung", output_root=tmp_path, baseline_s=2.0, fault_s=1.0
    )
    assert result.passed, (result.run.verdict.headline, result.missing)
    assert result.status == Status.CRITICAL
    assert {"health.endpoint", "availability.process"} <= {f.check for f in result.run.verdict.top}


def test_database_down_is_named(tmp_path: Path) -> None:
    """PostgreSQL stopped: CRITICAL, the verdict leads with the unreachable database."""
    result = run_drill(
        "service-down", fault="database-down", output_root=tmp_path, baseline_s=2.0, fault_s=2.0
    )
    assert result.passed, (result.run.verdict.headline, result.missing)
    assert result.status == Status.CRITICAL
    assert result.run.verdict.headline.startswith("Database unreachable")


def test_no_fault_is_ok(tmp_path: Path) -> None:
    """The API, its process and its database are up: OK."""
    result = run_drill(
        "service-down", fault=None, output_root=tmp_path, baseline_s=2.0, fault_s=1.0
    )
    assert result.passed, [f.summary for f in result.run.findings if f.status > Status.OK]
