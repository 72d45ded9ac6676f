"""The gpu-oom runbook, drilled against the sandbox's GPU worker: real H100 captures, a real
CUDA out-of-memory traceback in its log, and no fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from aura_ops.drill import run_drill
from aura_ops.findings import Status

pytestmark = pytest.mark.slow


def test_cuda_oom_and_full_gpu_are_named(tmp_path: Path) -> None:
    """A leftover process holds 94 % of the H100: CRITICAL, naming the OOM, the GPU and python3."""
    result = run_drill(
        "gpu-oom", fault="gpu-oom", output_root=tmp_path, baseline_s=1.0, fault_s=1.0
    )
    assert result.passed, (result.run.verdict.headline, result.missing)
    assert Status.CRITICAL == result.status
    checks = {f.check: f.status for f in result.run.findings}
    assert {"system.cuda_oom": Status.CRITICAL, "system.gpu_memory": Status.WARNING} == checks


def test_no_fault_is_ok(tmp_path: Path) -> None:
    """An idle GPU and a worker log without errors: OK."""
    result = run_drill("gpu-oom", fault=None, output_root=tmp_path, baseline_s=1.0, fault_s=1.0)
    assert result.passed, [f.summary for f in result.run.findings if f.status > Status.OK]
