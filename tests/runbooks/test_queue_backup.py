"""The queue-backup runbook, drilled against the sandbox: workers stalled under a burst."""

from __future__ import annotations

from pathlib import Path

import pytest

from aura_ops.drill import run_drill
from aura_ops.findings import Status

pytestmark = pytest.mark.slow


def test_stalled_workers_are_named(tmp_path: Path) -> None:
    """With the workers hung and 150 renders queued, the verdict is CRITICAL and names both."""
    result = run_drill("queue-backup", fault="worker-stall", output_root=tmp_path, fault_s=3.0)
    assert result.passed, (result.run.verdict.headline, result.missing)
    assert result.status == Status.CRITICAL
    assert "stalled" in result.run.verdict.headline


def test_no_fault_is_ok(tmp_path: Path) -> None:
    """Without a fault the queue drains as fast as it fills and the verdict is OK."""
    result = run_drill("queue-backup", fault=None, output_root=tmp_path, fault_s=2.0)
    assert result.passed, [f.summary for f in result.run.findings if f.status > Status.OK]
