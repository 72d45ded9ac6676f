"""The provider-failures runbook, drilled against the sandbox's own LLM provider service."""

from __future__ import annotations

from pathlib import Path

import pytest

from aura_ops.drill import run_drill
from aura_ops.findings import Status

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("fault", "fault_s"),
    [("provider-outage", 8.0), ("provider-rate-limit", 4.0), ("provider-invalid-key", 4.0)],
)
def test_provider_fault_is_named(tmp_path: Path, fault: str, fault_s: float) -> None:
    """Each provider failure gives a CRITICAL verdict naming the provider and how it fails."""
    result = run_drill("provider-failures", fault=fault, output_root=tmp_path, fault_s=fault_s)
    assert result.passed, (result.run.verdict.headline, result.missing)
    assert result.status == Status.CRITICAL


def test_no_fault_is_ok(tmp_path: Path) -> None:
    """With the provider healthy the circuit is closed, calls succeed and the verdict is OK."""
    result = run_drill("provider-failures", fault=None, output_root=tmp_path, fault_s=2.0)
    assert result.passed, [f.summary for f in result.run.findings if f.status > Status.OK]
