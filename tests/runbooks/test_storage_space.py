"""The storage-space runbook, drilled against a data directory filled by a render cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from aura_ops.drill import run_drill
from aura_ops.findings import Status

pytestmark = pytest.mark.slow


def test_full_data_directory_names_the_offender(tmp_path: Path) -> None:
    """94 % of the data volume: CRITICAL, the render cache named as the largest offender."""
    result = run_drill(
        "storage-space", fault="disk-full", output_root=tmp_path, baseline_s=1.0, fault_s=0.5
    )
    assert result.passed, (result.run.verdict.headline, result.missing)
    assert result.status == Status.CRITICAL
    assert "largest: render-cache/" in result.run.verdict.headline


def test_no_fault_is_ok(tmp_path: Path) -> None:
    """A few MiB of renders and uploads in a 256 MiB volume: OK."""
    result = run_drill(
        "storage-space", fault=None, output_root=tmp_path, baseline_s=1.0, fault_s=0.5
    )
    assert result.passed, [f.summary for f in result.run.findings if f.status > Status.OK]
