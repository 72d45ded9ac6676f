"""The memory-leak runbook, drilled against the sandbox: a real leak, OOM kills, and no fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from aura_ops.drill import run_drill
from aura_ops.findings import Status

pytestmark = pytest.mark.slow


def test_leak_is_named(tmp_path: Path) -> None:
    """With a per-request leak, the verdict is CRITICAL and calls the climb a memory leak."""
    result = run_drill("memory-leak", fault="memory-leak", output_root=tmp_path, fault_s=3.0)
    assert result.passed, (result.run.verdict.headline, result.missing)
    assert result.status == Status.CRITICAL


def test_oom_kills_are_named(tmp_path: Path) -> None:
    """With OOM-killed containers in the Kubernetes state, the verdict names OOMKilled."""
    result = run_drill("memory-leak", fault="oom-killed", output_root=tmp_path, fault_s=2.0)
    assert result.passed, (result.run.verdict.headline, result.missing)
    assert result.status >= Status.WARNING


def test_no_fault_is_ok(tmp_path: Path) -> None:
    """Without a fault, memory is steady, no pod restarts and the verdict is OK."""
    result = run_drill("memory-leak", fault=None, output_root=tmp_path)
    assert result.passed, [f.summary for f in result.run.findings if f.status > Status.OK]
